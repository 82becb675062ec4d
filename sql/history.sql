/*
 * history.sql — what happened to each delivery, as users query it: the
 * delivery_history view (on a Citus coordinator, with every node's rows),
 * delivery_history_of() for one call, and forget_call(), which erases a
 * call's content and keeps the facts.
 *
 * Re-runnable, like every file of sql/ (see sql/README.md).
 */

-- The other nodes' deliveries (of one call, or all), for delivery_history
-- and delivery_history_of() on the coordinator (nothing elsewhere).  A
-- node that does not answer is named in a warning.
CREATE OR REPLACE FUNCTION aloro_webhook._other_nodes_history(of_call text DEFAULT NULL,
	OUT id bigint, OUT webhook_id bigint, OUT webhook_name text, OUT url text,
	OUT call_id text, OUT event text, OUT test boolean, OUT status text, OUT attempts integer,
	OUT last_http_status integer, OUT last_error text, OUT created_at timestamptz,
	OUT finished_at timestamptz, OUT next_attempt_at timestamptz, OUT time_to_success interval)
RETURNS SETOF record LANGUAGE plpgsql VOLATILE ROWS 1
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	v_where text := '';
BEGIN
	IF NOT aloro_webhook._citus_coordinator() THEN
		RETURN;
	END IF;
	IF of_call IS NOT NULL THEN
		v_where := pg_catalog.format(' WHERE h.call_id OPERATOR(pg_catalog.=) %L', of_call);
	END IF;
	FOR r IN EXECUTE
		'SELECT w.nodename, w.nodeport, w.success, w.result FROM pg_catalog.run_command_on_workers($1) w'
		USING 'SELECT COALESCE(pg_catalog.json_agg(h), ''[]'') FROM aloro_webhook._local_history h' || v_where
	LOOP
		IF NOT r.success THEN
			RAISE WARNING 'the deliveries of node %:% are not shown: %', r.nodename, r.nodeport, r.result;
			CONTINUE;
		END IF;
		RETURN QUERY
		SELECT x.id, x.webhook_id, x.webhook_name, x.url, x.call_id, x.event, x.test, x.status,
			   x.attempts, x.last_http_status, x.last_error, x.created_at, x.finished_at,
			   x.next_attempt_at, x.time_to_success
		  FROM pg_catalog.json_to_recordset(r.result::json) AS x(
			   id bigint, webhook_id bigint, webhook_name text, url text, call_id text,
			   event text, test boolean, status text, attempts integer, last_http_status integer,
			   last_error text, created_at timestamptz, finished_at timestamptz,
			   next_attempt_at timestamptz, time_to_success interval);
	END LOOP;
END
$$;

-- One row per delivery of this node, with its webhook and how long it took
-- to succeed (on Citus, what the coordinator asks each node for).
CREATE OR REPLACE VIEW aloro_webhook._local_history AS
SELECT d.id, d.webhook_id, w.name AS webhook_name, w.url, d.call_id, d.event, d.test,
	   d.status, d.attempts, d.last_http_status, d.last_error, d.created_at, d.finished_at,
	   d.next_attempt_at,
	   CASE WHEN d.status = 'succeeded' THEN d.finished_at - d.created_at END AS time_to_success
  FROM aloro_webhook.deliveries d
  LEFT JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id;

-- One row per delivery, with its webhook and how long it took to succeed.
CREATE OR REPLACE VIEW aloro_webhook.delivery_history AS
SELECT * FROM aloro_webhook._local_history
UNION ALL
SELECT * FROM aloro_webhook._other_nodes_history() o;
COMMENT ON VIEW aloro_webhook.delivery_history IS
	'One row per delivery: its webhook, where it stands, and the time from queuing to success (on a Citus coordinator: of every node).';

-- The rows of delivery_history for one call.  The same as
-- "SELECT * FROM delivery_history WHERE call_id = $1", but on a Citus
-- coordinator each node is asked for that call's rows only, not for all.
CREATE OR REPLACE FUNCTION aloro_webhook.delivery_history_of(call_id text)
RETURNS SETOF aloro_webhook.delivery_history LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
	SELECT h.* FROM aloro_webhook._local_history h
	 WHERE h.call_id OPERATOR(pg_catalog.=) delivery_history_of.call_id
	UNION ALL
	SELECT o.* FROM aloro_webhook._other_nodes_history(delivery_history_of.call_id) o
$$;

-- Erases what the extension keeps of a call's content: its delivery bodies
-- and the receivers' response bodies.  The facts stay (deliveries, attempts,
-- statuses, times, the ended mark, so that the call never fires again); a
-- pending delivery of it is failed, never sent.  Returns how many
-- deliveries it erased.
CREATE OR REPLACE FUNCTION aloro_webhook.forget_call(call_id text)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_ids		bigint[];
	v_payloads	bigint[];
	v_elsewhere	bigint;
BEGIN
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	-- on a Citus coordinator, every node forgets what it holds (all of them must answer)
	v_elsewhere := coalesce((SELECT pg_catalog.sum(r::bigint) FROM aloro_webhook._on_nodes(
		pg_catalog.format('SELECT aloro_webhook.forget_call(%L)', forget_call.call_id)) r), 0);
	SELECT array_agg(d.id), array_agg(DISTINCT d.payload_id) FILTER (WHERE d.payload_id IS NOT NULL)
	  INTO v_ids, v_payloads
	  FROM aloro_webhook.delivery_log d
	 WHERE d.call_id = forget_call.call_id AND NOT d.test;
	IF v_ids IS NULL THEN
		RETURN v_elsewhere;
	END IF;
	UPDATE aloro_webhook.payloads p SET body = NULL WHERE p.id = ANY (v_payloads);
	UPDATE aloro_webhook.delivery_log d SET body = NULL WHERE d.id = ANY (v_ids) AND d.body IS NOT NULL;
	UPDATE aloro_webhook.delivery_attempts a SET response_body = NULL
	 WHERE a.delivery_id = ANY (v_ids) AND a.response_body IS NOT NULL;
	-- waiting ones are failed now (one already in flight finishes as its receiver answers)
	PERFORM aloro_webhook._fail_waiting(v_ids,
		'payload erased: forget_call() erased the body of this delivery, so it is never sent');
	RETURN cardinality(v_ids) + v_elsewhere;
END
$$;
