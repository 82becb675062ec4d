/*
 * operations.sql — what operators watch and what keeps the history in
 * bounds: the circuit breaker's counts (webhook_state), per-minute
 * statistics (webhook_stats) and the webhook_health view over them, and
 * retention pruning.  See doc/operations.md.
 *
 * Re-runnable, like every file of sql/ (see sql/README.md).
 */

-- Per webhook: what the circuit breaker counts, and when it last succeeded.
-- Written by the worker only.
CREATE TABLE IF NOT EXISTS aloro_webhook.webhook_state (
	webhook_id			bigint PRIMARY KEY,
	consecutive_failures integer NOT NULL DEFAULT 0,	-- failed deliveries since the last success
	last_success_at		timestamptz,
	last_failure_at		timestamptz
);
COMMENT ON TABLE aloro_webhook.webhook_state IS
	'Per webhook: consecutive failed deliveries and the last success (written by the worker).';
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.webhook_state', '');

-- Per webhook and minute: what finished, and a histogram of attempt
-- durations (bucket upper bounds in _duration_bounds()).  Written by the
-- worker about once a second; kept two days; what webhook_health and the
-- metrics read, so that neither scans the history.
CREATE TABLE IF NOT EXISTS aloro_webhook.webhook_stats (
	webhook_id			bigint NOT NULL,
	minute				timestamptz NOT NULL,
	succeeded			integer NOT NULL DEFAULT 0,	-- deliveries that succeeded
	failed				integer NOT NULL DEFAULT 0,	-- deliveries that finally failed
	attempts			integer NOT NULL DEFAULT 0,
	failed_attempts		integer NOT NULL DEFAULT 0,
	duration_ms_sum		bigint NOT NULL DEFAULT 0,
	duration_hist		integer[] NOT NULL,
	PRIMARY KEY (webhook_id, minute)
);
COMMENT ON TABLE aloro_webhook.webhook_stats IS
	'Per webhook and minute: deliveries finished, attempts made and their durations (written by the worker, kept two days).';
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.webhook_stats', '');

-- the upper bounds, in ms, of the duration histogram's buckets (the last is open)
CREATE OR REPLACE FUNCTION aloro_webhook._duration_bounds()
RETURNS integer[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 2147483647];

-- elementwise sum of two histograms
CREATE OR REPLACE FUNCTION aloro_webhook._hist_add(a integer[], b integer[])
RETURNS integer[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT COALESCE(x, 0) + COALESCE(y, 0)
			   FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) ORDER BY i);

-- the q-quantile (0..1) of a duration histogram, in ms, interpolated within
-- its bucket; NULL when it is empty
CREATE OR REPLACE FUNCTION aloro_webhook._hist_quantile(hist integer[], q double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH b AS (
		SELECT i, n,
			   sum(n) OVER (ORDER BY i) AS upto,
			   COALESCE((aloro_webhook._duration_bounds())[i - 1], 0) AS lo,
			   LEAST((aloro_webhook._duration_bounds())[i], 120000) AS hi
		  FROM unnest(hist) WITH ORDINALITY AS t(n, i)),
	total AS (SELECT sum(n) AS total FROM b)
	SELECT round((b.lo + (b.hi - b.lo) *
				  (q * total.total - (b.upto - b.n)) / b.n)::numeric, 1)::double precision
	  FROM b, total
	 WHERE total.total > 0 AND b.n > 0 AND b.upto >= q * total.total
	 ORDER BY b.i
	 LIMIT 1;
END;


-- One row per webhook: is it sending, how far behind, how well.
CREATE OR REPLACE VIEW aloro_webhook.webhook_health AS
SELECT w.id AS webhook_id, w.name, w.url, w.enabled, w.disabled_reason, w.disabled_at,
	   qp.pending + COALESCE(st.pending, 0) AS pending,
	   now() - LEAST(o.created_at, st.oldest_at) AS oldest_pending_age,
	   COALESCE(h.succeeded_1h, 0) AS succeeded_last_hour,
	   COALESCE(h.failed_1h, 0) AS failed_last_hour,
	   COALESCE(h.succeeded_1d, 0) AS succeeded_last_day,
	   COALESCE(h.failed_1d, 0) AS failed_last_day,
	   COALESCE(h.attempts_1h, 0) AS attempts_last_hour,
	   COALESCE(h.failed_attempts_1h, 0) AS failed_attempts_last_hour,
	   aloro_webhook._hist_quantile(h.hist_1h, 0.5) AS p50_attempt_ms_last_hour,
	   aloro_webhook._hist_quantile(h.hist_1h, 0.95) AS p95_attempt_ms_last_hour,
	   COALESCE(s.consecutive_failures, 0) AS consecutive_failures,
	   s.last_success_at
  FROM aloro_webhook.webhooks w
 CROSS JOIN LATERAL (SELECT count(*) AS pending, min(q.delivery_id) AS oldest
					   FROM aloro_webhook.queue q WHERE q.webhook_id = w.id) qp
  LEFT JOIN aloro_webhook.delivery_log o ON o.id = qp.oldest
  -- and those of the stream: not read yet, waiting for room, or in flight
  LEFT JOIN (SELECT sp.webhook_id, count(*) AS pending, min(sp.created_at) AS oldest_at
			   FROM aloro_webhook._stream_pending() sp GROUP BY sp.webhook_id) st
		 ON st.webhook_id = w.id
  LEFT JOIN aloro_webhook.webhook_state s ON s.webhook_id = w.id
  LEFT JOIN LATERAL (
	SELECT sum(st.succeeded) FILTER (WHERE st.minute > now() - interval '1 hour') AS succeeded_1h,
		   sum(st.failed) FILTER (WHERE st.minute > now() - interval '1 hour') AS failed_1h,
		   sum(st.succeeded) AS succeeded_1d,
		   sum(st.failed) AS failed_1d,
		   sum(st.attempts) FILTER (WHERE st.minute > now() - interval '1 hour') AS attempts_1h,
		   sum(st.failed_attempts) FILTER (WHERE st.minute > now() - interval '1 hour') AS failed_attempts_1h,
		   -- the last hour's histograms, added bucket by bucket
		   (SELECT array_agg(b.n ORDER BY b.i)
			  FROM (SELECT u.i, sum(u.n)::integer AS n
					  FROM aloro_webhook.webhook_stats s1,
						   unnest(s1.duration_hist) WITH ORDINALITY AS u(n, i)
					 WHERE s1.webhook_id = w.id AND s1.minute > now() - interval '1 hour'
					 GROUP BY u.i) b) AS hist_1h
	  FROM aloro_webhook.webhook_stats st
	 WHERE st.webhook_id = w.id AND st.minute > now() - interval '1 day') h ON true;
COMMENT ON VIEW aloro_webhook.webhook_health IS
	'One row per webhook: enabled or why disabled, backlog, successes and failures, attempt latency, consecutive failures.';

-- One batch of retention pruning (the worker's, src/upkeep.c): of the next
-- `batch` deliveries after after_id in id order, deletes the succeeded ones
-- finished before succeeded_before and the failed ones finished before
-- failed_before, with their attempts and the bodies nothing else uses.
-- Returns the last id looked at, how many were deleted, and whether the
-- walk reached deliveries too young to prune (then it starts over).
-- Only the rows it deletes are read twice; the id walk never rescans what
-- it passed, so a pass costs what it prunes plus what it keeps of the old.
CREATE OR REPLACE FUNCTION aloro_webhook._prune(after_id bigint, batch integer,
									 succeeded_before timestamptz, failed_before timestamptz,
									 OUT last_id bigint, OUT pruned bigint, OUT pass_done boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_ids bigint[];
	v_payloads bigint[];
	v_young timestamptz := GREATEST(succeeded_before, failed_before);
	v_seen integer;
	v_young_seen boolean;
BEGIN
	SELECT array_agg(s.id) FILTER (WHERE s.prunable), max(s.id), count(*),
		   COALESCE(bool_or(s.created_at >= v_young), false)
	  INTO v_ids, last_id, v_seen, v_young_seen
	  FROM (SELECT d.id, d.created_at,
				   (d.status = 'succeeded' AND d.finished_at < succeeded_before) OR
				   (d.status = 'failed' AND d.finished_at < failed_before) AS prunable
			  FROM aloro_webhook.deliveries d
			 WHERE d.id > after_id
			 ORDER BY d.id
			 LIMIT batch) s;
	pass_done := v_young_seen OR v_seen < batch;
	last_id := COALESCE(last_id, after_id);
	pruned := 0;
	IF v_ids IS NULL THEN
		RETURN;
	END IF;
	-- a delivery put back in line meanwhile (replay) has a queue row: kept
	WITH gone AS (
		DELETE FROM aloro_webhook.delivery_log d
		 WHERE d.id = ANY (v_ids)
		   AND NOT EXISTS (SELECT 1 FROM aloro_webhook.queue q WHERE q.delivery_id = d.id)
		   AND NOT EXISTS (SELECT 1 FROM aloro_webhook.delivery_state s
							WHERE s.delivery_id = d.id AND s.status = 'pending')
		RETURNING d.id, d.payload_id),
	att AS (
		DELETE FROM aloro_webhook.delivery_attempts a
		 USING gone WHERE a.delivery_id = gone.id),
	st AS (
		DELETE FROM aloro_webhook.delivery_state s
		 USING gone WHERE s.delivery_id = gone.id)
	SELECT array_agg(DISTINCT gone.payload_id) FILTER (WHERE gone.payload_id IS NOT NULL), count(*)
	  INTO v_payloads, pruned
	  FROM gone;
	-- a shared body goes with the last of its call's deliveries (deliveries_once
	-- finds them); a test request's is its own
	DELETE FROM aloro_webhook.payloads p
	 WHERE p.id = ANY (v_payloads)
	   AND (p.call_id IS NULL OR NOT EXISTS (
			SELECT 1 FROM aloro_webhook.delivery_log d
			 WHERE d.call_id = p.call_id AND d.payload_id = p.id));
END
$$;
