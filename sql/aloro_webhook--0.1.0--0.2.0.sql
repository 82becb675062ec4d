/*
 * aloro_webhook--0.1.0--0.2.0.sql — from 0.1.0 to 0.2.0.
 *
 * Also how 0.2.0 is installed: CREATE EXTENSION runs 0.1.0's script and then
 * this one (there is no separate 0.2.0 script), so every definition is
 * written once and a fresh install equals an upgraded one.
 */

\echo Use "ALTER EXTENSION aloro_webhook UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------------
-- 0.1.0 granted aloro_webhook_admin ALL on every table, TRIGGER included, and
-- a trigger on one of the extension's tables runs its code with the owner's
-- (a superuser's) rights.  The grants are redone at the end of this script;
-- triggers that someone added through that grant would keep running as the
-- owner: drop them, saying so.
------------------------------------------------------------------------------

DO $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgname, tg.tgrelid::regclass AS rel, tg.tgfoid::regprocedure AS fn
		  FROM pg_catalog.pg_trigger tg
		  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
		 WHERE c.relnamespace = 'aloro_webhook'::regnamespace
		   AND NOT tg.tgisinternal
		   AND tg.tgname NOT IN ('aloro_webhook_not_null', 'aloro_webhook_call_ended',
								 'aloro_webhook_call_forgotten', 'aloro_webhook_calls_truncated',
								 'aloro_webhook_wake', 'aloro_webhook_deleted')
	LOOP
		RAISE WARNING 'dropping trigger % on %, which runs % with the extension owner''s rights',
			t.tgname, t.rel, t.fn
			USING HINT = 'Triggers on the extension''s tables are not supported; put yours on your own tables.';
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
	END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Webhook rows: NULLs refused by name for every NOT NULL column (id
-- included), and a password in the URL kept apart from it
------------------------------------------------------------------------------

DROP TRIGGER aloro_webhook_not_null ON aloro_webhook.webhooks;
DROP FUNCTION aloro_webhook._webhook_not_null();

-- The URL's password (https://user:PASSWORD@host/...), kept where only admins
-- see it; url shows it as ***.  The worker puts it back when it connects.
ALTER TABLE aloro_webhook.webhooks ADD COLUMN url_password text;
COMMENT ON COLUMN aloro_webhook.webhooks.url_password IS
	'the password of url''s userinfo, which url shows as ***; admins only';

CREATE FUNCTION aloro_webhook._check_webhook()
RETURNS trigger
AS 'MODULE_PATHNAME', 'aloro_webhook_check_webhook'
LANGUAGE C;

CREATE TRIGGER aloro_webhook_check
	BEFORE INSERT OR UPDATE ON aloro_webhook.webhooks
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._check_webhook();

-- passwords already in URLs move out of them
UPDATE aloro_webhook.webhooks SET url = url;

------------------------------------------------------------------------------
-- SECURITY DEFINER paths that evaluate nothing the table owner chose
------------------------------------------------------------------------------

-- was plpgsql evaluating OLD.id::text (a cast the owner of the id's type may define)
CREATE OR REPLACE FUNCTION aloro_webhook._call_forgotten()
RETURNS trigger
AS 'MODULE_PATHNAME', 'aloro_webhook_call_forgotten'
LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION aloro_webhook._text_of(value anyelement)
RETURNS text
AS 'MODULE_PATHNAME', 'aloro_webhook_text_of'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION aloro_webhook.call_payload(call_id text, include_recording boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_rel	regclass;
	v_pred	text;
	v_body	text;
	v_ended	timestamptz;
BEGIN
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	-- an ended call's body carries the time it ended (as queued), not now; on
	-- a Citus coordinator, the node that holds its shard knows that time
	v_ended := aloro_webhook._ended_at(call_payload.call_id);
	-- the default table first, then every table that watch() attached to
	FOR v_rel IN
		SELECT t.tgrelid::regclass
		  FROM pg_trigger t
		 WHERE t.tgname = 'aloro_webhook_call_ended'
		   AND t.tgfoid = 'aloro_webhook._call_ended()'::regprocedure
		 ORDER BY t.tgrelid <> 'aloro_webhook.calls'::regclass, t.tgrelid
	LOOP
		-- the id compared as the text the triggers read (never through a
		-- cast of the table owner's): an index helps text ids
		SELECT CASE WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype)
					THEN 'c.id::text = $1'
					ELSE 'aloro_webhook._text_of(c.id) = $1' END
		  INTO v_pred
		  FROM pg_attribute a
		 WHERE a.attrelid = v_rel AND a.attname = 'id' AND NOT a.attisdropped;
		EXECUTE format('SELECT aloro_webhook._payload(c, $2, $3) FROM %s c WHERE %s', v_rel, v_pred)
		   INTO v_body
		  USING call_payload.call_id, coalesce(call_payload.include_recording, true), v_ended;
		IF v_body IS NOT NULL THEN
			RETURN v_body;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'call "%" does not exist', call_id
		USING ERRCODE = 'no_data_found',
			  HINT = 'call_payload() looks in aloro_webhook.calls and in every table passed to aloro_webhook.watch().';
END
$$;

------------------------------------------------------------------------------
-- The queue apart from the history, and each body stored once.
--
-- 0.1.0 kept everything in one wide table, deliveries: every delivery carried
-- its own copy of the body (a call with a 1 MB transcript and 100 webhooks
-- stored and compressed 100 MB while the call's row was held), and the
-- worker's claim and record each rewrote the wide row in all six indexes.
-- Now:
--   payloads      each distinct body once (a call makes at most two: with
--                 and without the recording)
--   delivery_log  one row per delivery: where it stands (no body)
--   queue         the pending deliveries only, narrow: what the worker claims
--   deliveries    a view joining them, with the columns it always had
------------------------------------------------------------------------------

DROP TRIGGER aloro_webhook_wake ON aloro_webhook.deliveries;
DROP INDEX aloro_webhook.deliveries_due;
DROP INDEX aloro_webhook.deliveries_claimed;
DROP INDEX aloro_webhook.deliveries_by_call;

CREATE TABLE aloro_webhook.payloads (
	id					bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	call_id				text,			-- NULL for test requests
	body				text,			-- the exact bytes sent; NULL once erased
	bytes				integer NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aloro_webhook.payloads IS
	'The bodies deliveries carry, each distinct body once.';
ALTER TABLE aloro_webhook.payloads ALTER COLUMN body SET COMPRESSION lz4;

ALTER TABLE aloro_webhook.deliveries RENAME TO delivery_log;
ALTER SEQUENCE aloro_webhook.deliveries_id_seq RENAME TO delivery_log_id_seq;
COMMENT ON TABLE aloro_webhook.delivery_log IS
	'One row per (webhook, call, event) and per test request: where the delivery stands (its body is in payloads).';
ALTER TABLE aloro_webhook.delivery_log ADD COLUMN payload_id bigint;

-- the bodies move: one payload per delivery that was queued under 0.1.0
INSERT INTO aloro_webhook.payloads (id, call_id, body, bytes, created_at)
SELECT d.id, d.call_id, d.body, pg_catalog.octet_length(d.body), d.created_at
  FROM aloro_webhook.delivery_log d;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('aloro_webhook.payloads', 'id'),
						 GREATEST((SELECT pg_catalog.max(id) FROM aloro_webhook.payloads), 1));
UPDATE aloro_webhook.delivery_log SET payload_id = id;

-- the hot part of a pending delivery; claimed_by names the worker holding it
CREATE TABLE aloro_webhook.queue (
	delivery_id			bigint PRIMARY KEY,
	webhook_id			bigint NOT NULL,
	due_at				timestamptz NOT NULL,
	claimed_by			bigint,
	claimed_at			timestamptz,
	bytes				integer NOT NULL DEFAULT 0	-- of the body: the worker bounds bytes in flight
) WITH (fillfactor = 70);
COMMENT ON TABLE aloro_webhook.queue IS
	'The pending deliveries, when each is due, and which worker has it in flight.';
-- what the worker claims: per webhook, earliest due first; a claim changes
-- no indexed column, so it is a HOT update
CREATE INDEX queue_due ON aloro_webhook.queue (webhook_id, due_at, delivery_id);

-- Makes the deliveries held by workers that no longer run -- claims whose
-- token is not in live -- due again at once.  The cut-off attempt goes
-- into the history (it may or may not have reached the receiver), without
-- using up the attempt budget: it is retried as the same step of the
-- schedule.  The worker calls this at start-up and in its sweep.  Returns
-- how many.
CREATE FUNCTION aloro_webhook._release_claims(live bigint[])
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH c AS (
		SELECT q.delivery_id, q.claimed_at FROM aloro_webhook.queue q
		 WHERE q.claimed_by IS NOT NULL AND q.claimed_by <> ALL (live)
		   FOR UPDATE),
	u AS (
		UPDATE aloro_webhook.queue q
		   SET claimed_by = NULL, claimed_at = NULL, due_at = now()
		  FROM c WHERE q.delivery_id = c.delivery_id
		RETURNING q.delivery_id, c.claimed_at),
	l AS (
		UPDATE aloro_webhook.delivery_log d
		   SET next_attempt_at = now(), attempts = d.attempts + 1,
			   budget_start = d.budget_start + 1, last_http_status = NULL,
			   last_error = 'interrupted: the worker stopped (crash, kill or shutdown) before the response was recorded; it is sent again'
		  FROM u WHERE d.id = u.delivery_id
		RETURNING d.id, d.attempts, u.claimed_at, d.last_error),
	a AS (
		INSERT INTO aloro_webhook.delivery_attempts
			   (delivery_id, attempt, started_at, duration_ms, http_status, error)
		SELECT l.id, l.attempts, coalesce(l.claimed_at, now()), NULL, NULL, l.last_error FROM l
		ON CONFLICT (delivery_id, attempt) DO NOTHING)
	SELECT count(*) FROM l
$$;

-- what was pending under 0.1.0, in the queue; what was in flight then was
-- cut off (no worker has token 0), as at a worker start
INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes, claimed_by, claimed_at)
SELECT d.id, d.webhook_id, d.next_attempt_at, p.bytes,
	   CASE WHEN d.claimed_at IS NOT NULL THEN 0 END, d.claimed_at
  FROM aloro_webhook.delivery_log d JOIN aloro_webhook.payloads p ON p.id = d.payload_id
 WHERE d.status = 'pending';
SELECT aloro_webhook._release_claims('{}');

ALTER TABLE aloro_webhook.delivery_log DROP COLUMN body, DROP COLUMN claimed_at;
-- Only the extension's own code writes these tables (no role is granted it),
-- and its CHECK constraints cost every statement that ends a call a parse of
-- each expression: the rules move into the view's INSTEAD OF trigger below,
-- the one way to write a delivery by hand, and the worker bounds-checks what
-- it reads.
ALTER TABLE aloro_webhook.delivery_log
	DROP CONSTRAINT deliveries_status_check,
	DROP CONSTRAINT deliveries_attempts_check,
	DROP CONSTRAINT deliveries_pending_due,
	DROP CONSTRAINT deliveries_budget;
ALTER TABLE aloro_webhook.delivery_log ALTER COLUMN next_attempt_at DROP DEFAULT;
-- the record of an attempt changes no indexed column: room on the page keeps it HOT
ALTER TABLE aloro_webhook.delivery_log SET (fillfactor = 80);
-- a webhook's deliveries in a time window (replay()): rows arrive in time
-- order, so a BRIN index serves, at a fraction of a btree's cost per insert
DROP INDEX aloro_webhook.deliveries_by_webhook;
CREATE INDEX delivery_log_created ON aloro_webhook.delivery_log USING brin (created_at);
-- a call ends once per webhook, and "what happened to call X?" uses the same index
DROP INDEX aloro_webhook.deliveries_once;
CREATE UNIQUE INDEX deliveries_once ON aloro_webhook.delivery_log (call_id, webhook_id, event)
	WHERE NOT test;

SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.payloads', '');
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.payloads_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.queue', '');

-- The history as users query it, with the columns 0.1.0's table had.
CREATE VIEW aloro_webhook.deliveries AS
SELECT d.id, d.webhook_id, d.call_id, d.event, d.test, p.body, d.status, d.attempts,
	   d.next_attempt_at, d.last_http_status, d.last_error, d.created_at, d.finished_at,
	   d.budget_start, q.claimed_at
  FROM aloro_webhook.delivery_log d
  LEFT JOIN aloro_webhook.payloads p ON p.id = d.payload_id
  LEFT JOIN aloro_webhook.queue q ON q.delivery_id = d.id;
COMMENT ON VIEW aloro_webhook.deliveries IS
	'One row per (webhook, call, event) and per test request: the exact body sent and where it stands.';

-- Writing the view by hand (owners only: no role is granted it) keeps the
-- three tables consistent.
CREATE FUNCTION aloro_webhook._deliveries_write()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_payload	bigint;
	v_broken	text;
BEGIN
	IF TG_OP = 'DELETE' THEN
		DELETE FROM aloro_webhook.queue q WHERE q.delivery_id = OLD.id;
		DELETE FROM aloro_webhook.delivery_log d WHERE d.id = OLD.id;
		RETURN OLD;
	END IF;
	IF TG_OP = 'INSERT' THEN
		NEW.id := coalesce(NEW.id, nextval('aloro_webhook.delivery_log_id_seq'));
		NEW.event := coalesce(NEW.event, 'call.ended');
		NEW.test := coalesce(NEW.test, false);
		NEW.status := coalesce(NEW.status, 'pending');
		NEW.attempts := coalesce(NEW.attempts, 0);
		NEW.budget_start := coalesce(NEW.budget_start, 0);
		NEW.created_at := coalesce(NEW.created_at, now());
		IF NEW.status = 'pending' THEN
			NEW.next_attempt_at := coalesce(NEW.next_attempt_at, now());
		END IF;
	END IF;
	-- the rules a delivery keeps (they were CHECK constraints in 0.1.0)
	v_broken := CASE
		WHEN NEW.status IS NULL OR NEW.status NOT IN ('pending', 'succeeded', 'failed') THEN 'deliveries_status_check'
		WHEN NEW.attempts IS NULL OR NEW.attempts < 0 OR NEW.attempts >= 1000000 THEN 'deliveries_attempts_check'
		WHEN NEW.status = 'pending' AND NEW.next_attempt_at IS NULL THEN 'deliveries_pending_due'
		WHEN NEW.budget_start IS NULL OR NEW.budget_start < 0 OR NEW.budget_start > NEW.attempts THEN 'deliveries_budget'
	END;
	IF v_broken IS NOT NULL THEN
		RAISE EXCEPTION 'new row for deliveries violates check constraint "%"', v_broken
			USING ERRCODE = 'check_violation', CONSTRAINT = v_broken,
				  DETAIL = 'status is pending, succeeded or failed; 0 <= budget_start <= attempts < 1000000; a pending delivery has a next_attempt_at.';
	END IF;
	IF TG_OP = 'INSERT' OR NEW.body IS DISTINCT FROM OLD.body THEN
		IF NEW.body IS NOT NULL THEN
			v_payload := aloro_webhook._store_payload(NEW.call_id, NEW.body);
		END IF;
	ELSE
		SELECT d.payload_id INTO v_payload FROM aloro_webhook.delivery_log d WHERE d.id = OLD.id;
	END IF;
	IF TG_OP = 'INSERT' THEN
		INSERT INTO aloro_webhook.delivery_log
			(id, webhook_id, call_id, event, test, payload_id, status, attempts, next_attempt_at,
			 last_http_status, last_error, created_at, finished_at, budget_start)
		VALUES (NEW.id, NEW.webhook_id, NEW.call_id, NEW.event, NEW.test, v_payload, NEW.status,
				NEW.attempts, NEW.next_attempt_at, NEW.last_http_status, NEW.last_error,
				NEW.created_at, NEW.finished_at, NEW.budget_start);
	ELSE
		UPDATE aloro_webhook.delivery_log d
		   SET id = NEW.id, webhook_id = NEW.webhook_id, call_id = NEW.call_id, event = NEW.event,
			   test = NEW.test, payload_id = v_payload, status = NEW.status, attempts = NEW.attempts,
			   next_attempt_at = NEW.next_attempt_at, last_http_status = NEW.last_http_status,
			   last_error = NEW.last_error, created_at = NEW.created_at,
			   finished_at = NEW.finished_at, budget_start = NEW.budget_start
		 WHERE d.id = OLD.id;
		DELETE FROM aloro_webhook.queue q WHERE q.delivery_id = OLD.id;
	END IF;
	IF NEW.status = 'pending' THEN
		INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, claimed_at, bytes)
		VALUES (NEW.id, NEW.webhook_id, NEW.next_attempt_at, NEW.claimed_at,
				coalesce(octet_length(NEW.body), 0));
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER aloro_webhook_write
	INSTEAD OF INSERT OR UPDATE OR DELETE ON aloro_webhook.deliveries
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._deliveries_write();

-- Statement triggers: wake the worker when the transaction commits, and tell
-- it the earliest due time the statement gave a row (the worker's scans of
-- the due index start after what it claimed last: see src/cursor.c).
CREATE TRIGGER aloro_webhook_wake_insert
	AFTER INSERT ON aloro_webhook.queue
	REFERENCING NEW TABLE AS due
	FOR EACH STATEMENT
	EXECUTE FUNCTION aloro_webhook._wake_at_commit();
CREATE TRIGGER aloro_webhook_wake_update
	AFTER UPDATE ON aloro_webhook.queue
	REFERENCING NEW TABLE AS due
	FOR EACH STATEMENT
	EXECUTE FUNCTION aloro_webhook._wake_at_commit();

-- Deleting a webhook resolves its waiting deliveries: nothing can send them.
-- (One in flight is resolved when its attempt is recorded.)  SECURITY
-- DEFINER: the admin deleting the webhook has no write access to the queue.
CREATE OR REPLACE FUNCTION aloro_webhook._webhook_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	WITH gone AS (
		DELETE FROM aloro_webhook.queue q
		 WHERE q.webhook_id = OLD.id AND q.claimed_by IS NULL
		RETURNING q.delivery_id)
	UPDATE aloro_webhook.delivery_log d
	   SET status = 'failed',
		   next_attempt_at = NULL,
		   finished_at = now(),
		   last_error = aloro_webhook._webhook_deleted_message(OLD.id, NULL)
	  FROM gone WHERE d.id = gone.delivery_id;
	RETURN NULL;
END
$$;

-- "webhook N was deleted", written by the worker too (queue.c uses this).
CREATE FUNCTION aloro_webhook._webhook_deleted_message(webhook_id bigint, last_error text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN last_error IS NULL
				THEN format('webhook %s was deleted', webhook_id)
				ELSE format('webhook %s was deleted; last attempt: %s', webhook_id, last_error) END
$$;

-- Every call that ended is recorded under the watched table itself, not the
-- partition its row was in (a row may move between partitions).
UPDATE aloro_webhook.ended_calls e
   SET source = pg_catalog.pg_partition_root(e.source)
 WHERE pg_catalog.pg_partition_root(e.source) IS DISTINCT FROM e.source
   AND pg_catalog.pg_partition_root(e.source) IS NOT NULL;

-- Every status a call may have, and which of them are terminal, as the
-- library defines them (statuses.c); the trigger on aloro_webhook.calls
-- spells the terminal ones in its WHEN clause, and a test compares the two.
CREATE FUNCTION aloro_webhook._call_statuses(OUT status text, OUT terminal boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'aloro_webhook_call_statuses'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The call-ended trigger switches to the owner itself, only for the
-- statements that write the extension's tables (src/enqueue.c), which are
-- prepared with search_path pinned: as a SECURITY DEFINER function it paid
-- for a user switch and a search_path change on every row of every
-- statement on a calls table.
ALTER FUNCTION aloro_webhook._call_ended() SECURITY INVOKER RESET search_path;

-- The trigger fires for every row and decides itself whether the call ended
-- (src/statuses.c holds the statuses): a WHEN clause was compiled again for
-- every statement on a calls table.  Recreated on the default table and on
-- every table watch() attached it to.
DO $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgrelid::regclass AS rel
		  FROM pg_catalog.pg_trigger tg
		 WHERE tg.tgname = 'aloro_webhook_call_ended' AND tg.tgparentid = 0
		   AND tg.tgfoid = 'aloro_webhook._call_ended()'::pg_catalog.regprocedure
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER aloro_webhook_call_ended ON %s', t.rel);
		EXECUTE pg_catalog.format('CREATE TRIGGER aloro_webhook_call_ended '
								  'AFTER INSERT OR UPDATE ON %s FOR EACH ROW '
								  'EXECUTE FUNCTION aloro_webhook._call_ended()', t.rel);
	END LOOP;
END
$$;

-- Each backend keeps a copy of the webhooks that calls match
-- (src/webhook_cache.c); a commit that changed them makes every copy stale.
CREATE FUNCTION aloro_webhook._webhooks_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'aloro_webhook_webhooks_changed'
LANGUAGE C;

CREATE TRIGGER aloro_webhook_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aloro_webhook.webhooks
	FOR EACH STATEMENT
	EXECUTE FUNCTION aloro_webhook._webhooks_changed();

------------------------------------------------------------------------------
-- The functions that queue: test requests, redeliveries, replays
------------------------------------------------------------------------------

-- Puts finished deliveries back in line: same bodies, a fresh attempt
-- budget, history kept.  Returns how many.
CREATE OR REPLACE FUNCTION aloro_webhook._requeue(delivery_ids bigint[])
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH r AS (
		UPDATE aloro_webhook.delivery_log d
		   SET status = 'pending',
			   budget_start = d.attempts,
			   next_attempt_at = now() + coalesce(aloro_webhook._retry_delay(1), '0'),
			   finished_at = NULL
		 WHERE d.id = ANY (delivery_ids)
		   AND d.status <> 'pending'
		   AND d.payload_id IS NOT NULL
		RETURNING d.id, d.webhook_id, d.next_attempt_at, d.payload_id),
	q AS (
		INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes)
		SELECT r.id, r.webhook_id, r.next_attempt_at, coalesce(p.bytes, 0)
		  FROM r LEFT JOIN aloro_webhook.payloads p ON p.id = r.payload_id
		ON CONFLICT (delivery_id) DO NOTHING)
	SELECT count(*) FROM r
$$;

-- Stores a body; returns the payloads row that holds it.  (The call-ended
-- trigger stores its bodies with the same statement, prepared in C.)
CREATE FUNCTION aloro_webhook._store_payload(call_id text, body text)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO aloro_webhook.payloads (call_id, body, bytes)
	VALUES (call_id, body, octet_length(body))
	RETURNING id
$$;

-- Refuses a NULL argument of a public function, naming it, the same way
-- everywhere.
CREATE FUNCTION aloro_webhook._arg_required(missing boolean, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF missing THEN
		RAISE EXCEPTION '% must not be NULL', what
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
END
$$;

-- A delivery whose body could not be built when its call ended gets it built
-- now, from the call as it is (fixed, say), stamped with the time it ended.
-- Raises when it still cannot be built.
CREATE FUNCTION aloro_webhook._rebuild_payload(delivery_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_call		text;
	v_rec		boolean;
	v_payload	bigint;
BEGIN
	SELECT d.call_id, w.include_recording INTO v_call, v_rec
	  FROM aloro_webhook.delivery_log d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
	 WHERE d.id = _rebuild_payload.delivery_id AND d.payload_id IS NULL AND NOT d.test;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	v_payload := aloro_webhook._store_payload(v_call, aloro_webhook.call_payload(v_call, v_rec));
	UPDATE aloro_webhook.delivery_log d SET payload_id = v_payload
	 WHERE d.id = _rebuild_payload.delivery_id;
END
$$;

CREATE OR REPLACE FUNCTION aloro_webhook.test_webhook(webhook_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_id		bigint;
	v_payload	bigint;
	v_body		text;
	v_due		timestamptz := now() + coalesce(aloro_webhook._retry_delay(1), '0');
BEGIN
	PERFORM aloro_webhook._arg_required(webhook_id IS NULL, 'webhook_id');
	PERFORM aloro_webhook._webhook_must_exist(test_webhook.webhook_id);
	v_id := nextval('aloro_webhook.delivery_log_id_seq');
	v_body := aloro_webhook._test_payload(v_id, clock_timestamp());
	v_payload := aloro_webhook._store_payload(NULL, v_body);
	INSERT INTO aloro_webhook.delivery_log
		(id, webhook_id, call_id, event, test, payload_id, next_attempt_at)
	VALUES (v_id, test_webhook.webhook_id, NULL, 'call.ended', true, v_payload, v_due);
	INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes)
	VALUES (v_id, test_webhook.webhook_id, v_due, octet_length(v_body));
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION aloro_webhook.redeliver(delivery_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_status	text;
	v_hook		bigint;
	v_node		integer;
BEGIN
	PERFORM aloro_webhook._arg_required(delivery_id IS NULL, 'delivery_id');
	-- on a Citus coordinator, a delivery another node queued is redelivered there
	v_node := aloro_webhook._node_of(redeliver.delivery_id);
	IF v_node IS NOT NULL THEN
		RETURN (SELECT r::bigint FROM aloro_webhook._on_nodes(
					pg_catalog.format('SELECT aloro_webhook.redeliver(%s)', redeliver.delivery_id),
					ARRAY[v_node]) r);
	END IF;
	SELECT d.status, d.webhook_id INTO v_status, v_hook
	  FROM aloro_webhook.delivery_log d
	 WHERE d.id = redeliver.delivery_id
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'delivery % does not exist', delivery_id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM aloro_webhook.webhooks w WHERE w.id = v_hook) THEN
		RAISE EXCEPTION 'the webhook of delivery % was deleted', delivery_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'A delivery can only be sent to the webhook it was queued for.';
	END IF;
	IF v_status = 'pending' THEN
		RAISE EXCEPTION 'delivery % is still pending', delivery_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Only a delivery that has succeeded or failed can be sent again.',
				  HINT = 'Wait for it to finish; its attempts are in aloro_webhook.delivery_attempts.';
	END IF;
	BEGIN
		PERFORM aloro_webhook._rebuild_payload(redeliver.delivery_id);
	EXCEPTION WHEN OTHERS THEN
		RAISE EXCEPTION 'the body of delivery % still cannot be built: %', delivery_id, SQLERRM
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Fix the call''s data, then redeliver it again.';
	END;
	PERFORM aloro_webhook._requeue(ARRAY[redeliver.delivery_id]);
	RETURN delivery_id;
END
$$;

CREATE OR REPLACE FUNCTION aloro_webhook.replay(webhook_id bigint,
									 since timestamptz,
									 until timestamptz DEFAULT now(),
									 only_failed boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_ids	bigint[];
	v_id	bigint;
BEGIN
	PERFORM aloro_webhook._arg_required(webhook_id IS NULL OR since IS NULL OR until IS NULL,
										'webhook_id, since and until');
	IF since > until THEN
		RAISE EXCEPTION 'replay window is empty: since is after until'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM aloro_webhook._webhook_must_exist(replay.webhook_id);
	v_ids := ARRAY(
		SELECT d.id FROM aloro_webhook.delivery_log d
		 WHERE d.webhook_id = replay.webhook_id
		   AND d.created_at >= replay.since
		   AND d.created_at < replay.until
		   AND d.status <> 'pending'
		   AND (d.status = 'failed' OR NOT coalesce(replay.only_failed, true)));
	-- bodies that could not be built are built now; those that still
	-- cannot be stay as they are
	FOR v_id IN
		SELECT d.id FROM aloro_webhook.delivery_log d
		 WHERE d.id = ANY (v_ids) AND d.payload_id IS NULL AND NOT d.test
	LOOP
		BEGIN
			PERFORM aloro_webhook._rebuild_payload(v_id);
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
	-- like redeliver(): same bodies, a fresh attempt budget, history kept;
	-- on a Citus coordinator, every node replays its own
	RETURN aloro_webhook._requeue(v_ids)
		+ coalesce((SELECT pg_catalog.sum(r::bigint) FROM aloro_webhook._on_nodes(
			pg_catalog.format('SELECT aloro_webhook.replay(%s, %L::pg_catalog.timestamptz, '
							  '%L::pg_catalog.timestamptz, %L)', replay.webhook_id,
							  aloro_webhook._time_text(replay.since),
							  aloro_webhook._time_text(replay.until),
							  coalesce(replay.only_failed, true)), NULL, true) r), 0);
END
$$;

------------------------------------------------------------------------------
-- Operations: circuit breaking, signature schemes, secret rotation, health,
-- retention.  See README "Operations".
------------------------------------------------------------------------------

ALTER TABLE aloro_webhook.webhooks
	ADD COLUMN signature_scheme text NOT NULL DEFAULT 'aloro',
	ADD COLUMN disabled_reason text,
	ADD COLUMN disabled_at timestamptz,
	ADD COLUMN previous_secret text,
	ADD COLUMN previous_secret_until timestamptz;
COMMENT ON COLUMN aloro_webhook.webhooks.signature_scheme IS
	'aloro (X-Aloro-Signature) or standard (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature)';
COMMENT ON COLUMN aloro_webhook.webhooks.disabled_reason IS
	'why the extension disabled this webhook (410 Gone, consecutive failed deliveries); its deliveries are kept until it is enabled again';
COMMENT ON COLUMN aloro_webhook.webhooks.previous_secret IS
	'the secret before rotate_secret(), also signed with until previous_secret_until; admins only';

-- Per webhook: what the circuit breaker counts, and when it last succeeded.
-- Written by the worker only.
CREATE TABLE aloro_webhook.webhook_state (
	webhook_id			bigint PRIMARY KEY,
	consecutive_failures integer NOT NULL DEFAULT 0,	-- failed deliveries since the last success
	last_success_at		timestamptz,
	last_failure_at		timestamptz
);
COMMENT ON TABLE aloro_webhook.webhook_state IS
	'Per webhook: consecutive failed deliveries and the last success (written by the worker).';

-- Per webhook and minute: what finished, and a histogram of attempt
-- durations (bucket upper bounds in _duration_bounds()).  Written by the
-- worker about once a second; kept two days; what webhook_health and the
-- metrics read, so that neither scans the history.
CREATE TABLE aloro_webhook.webhook_stats (
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

-- the upper bounds, in ms, of the duration histogram's buckets (the last is open)
CREATE FUNCTION aloro_webhook._duration_bounds()
RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 2147483647];

-- elementwise sum of two histograms
CREATE FUNCTION aloro_webhook._hist_add(a integer[], b integer[])
RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT COALESCE(x, 0) + COALESCE(y, 0)
			   FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) ORDER BY i);

-- the q-quantile (0..1) of a duration histogram, in ms, interpolated within
-- its bucket; NULL when it is empty
CREATE FUNCTION aloro_webhook._hist_quantile(hist integer[], q double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
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

SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.webhook_state', '');
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.webhook_stats', '');

-- Signs with the new secret from now on, and with the current one too until
-- the overlap ends; rotating again during an overlap drops the oldest.
CREATE FUNCTION aloro_webhook.rotate_secret(webhook_id bigint, new_secret text,
											overlap interval DEFAULT '24 hours')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_found bigint;
BEGIN
	PERFORM aloro_webhook._arg_required(webhook_id IS NULL, 'webhook_id');
	PERFORM aloro_webhook._arg_required(new_secret IS NULL, 'new_secret');
	PERFORM aloro_webhook._arg_required(overlap IS NULL, 'overlap');
	IF overlap < interval '0' THEN
		RAISE EXCEPTION 'rotate_secret() overlap must not be negative: %', overlap
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give how long the old secret stays valid, such as ''24 hours'', or ''0'' to stop using it at once.';
	END IF;
	UPDATE aloro_webhook.webhooks w
	   SET previous_secret = CASE WHEN overlap > interval '0' AND w.secret IS NOT NULL THEN w.secret END,
		   previous_secret_until = CASE WHEN overlap > interval '0' AND w.secret IS NOT NULL THEN now() + overlap END,
		   secret = new_secret
	 WHERE w.id = rotate_secret.webhook_id
	RETURNING w.id INTO v_found;
	IF v_found IS NULL THEN
		RAISE EXCEPTION 'webhook % does not exist', webhook_id
			USING ERRCODE = 'no_data_found';
	END IF;
END
$$;

-- Is webhook_config a Citus reference table here (watch() on the
-- coordinator makes it one, and Citus tells every node)?
CREATE FUNCTION aloro_webhook._citus_config_shared()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_yes boolean;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p '
			'WHERE p.logicalrelid OPERATOR(pg_catalog.=) ''aloro_webhook.webhook_config''::pg_catalog.regclass)'
		INTO v_yes;
	RETURN v_yes;
END
$$;

-- Is this database the coordinator of a Citus cluster whose webhook_config
-- is shared?
CREATE FUNCTION aloro_webhook._citus_coordinator()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_yes boolean;
BEGIN
	IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL
	   OR NOT aloro_webhook._citus_config_shared() THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v_yes;
	RETURN v_yes;
END
$$;

-- When a call ended (NULL if it has not): on a Citus coordinator, the node
-- that holds its shard knows.  SECURITY DEFINER: the other nodes are asked
-- in the extension owner's name, for call_payload() in a reader's.
CREATE FUNCTION aloro_webhook._ended_at(call_id text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_ended timestamptz;
BEGIN
	SELECT e.ended_at INTO v_ended FROM aloro_webhook.ended_calls e
	 WHERE e.call_id OPERATOR(pg_catalog.=) _ended_at.call_id;
	IF NOT FOUND THEN
		SELECT pg_catalog.max(r::timestamptz) INTO v_ended FROM aloro_webhook._on_nodes(
			pg_catalog.format('SELECT aloro_webhook._time_text(e.ended_at) FROM aloro_webhook.ended_calls e '
							  'WHERE e.call_id OPERATOR(pg_catalog.=) %L', _ended_at.call_id), NULL, true) r;
	END IF;
	RETURN v_ended;
END
$$;

-- The other nodes' deliveries (of one call, or all), for delivery_history
-- and delivery_history_of() on the coordinator (nothing elsewhere).  A
-- node that does not answer is named in a warning.
CREATE FUNCTION aloro_webhook._other_nodes_history(of_call text DEFAULT NULL,
	OUT id bigint, OUT webhook_id bigint, OUT webhook_name text, OUT url text,
	OUT call_id text, OUT event text, OUT test boolean, OUT status text, OUT attempts integer,
	OUT last_http_status integer, OUT last_error text, OUT created_at timestamptz,
	OUT finished_at timestamptz, OUT next_attempt_at timestamptz, OUT time_to_success interval)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE ROWS 1
SET search_path = pg_catalog, pg_temp
AS $$
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
CREATE VIEW aloro_webhook._local_history AS
SELECT d.id, d.webhook_id, w.name AS webhook_name, w.url, d.call_id, d.event, d.test,
	   d.status, d.attempts, d.last_http_status, d.last_error, d.created_at, d.finished_at,
	   d.next_attempt_at,
	   CASE WHEN d.status = 'succeeded' THEN d.finished_at - d.created_at END AS time_to_success
  FROM aloro_webhook.delivery_log d
  LEFT JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id;

-- One row per delivery, with its webhook and how long it took to succeed.
CREATE VIEW aloro_webhook.delivery_history AS
SELECT * FROM aloro_webhook._local_history
UNION ALL
SELECT * FROM aloro_webhook._other_nodes_history() o;
COMMENT ON VIEW aloro_webhook.delivery_history IS
	'One row per delivery: its webhook, where it stands, and the time from queuing to success (on a Citus coordinator: of every node).';

-- The rows of delivery_history for one call.  The same as
-- "SELECT * FROM delivery_history WHERE call_id = $1", but on a Citus
-- coordinator each node is asked for that call's rows only, not for all.
CREATE FUNCTION aloro_webhook.delivery_history_of(call_id text)
RETURNS SETOF aloro_webhook.delivery_history
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT h.* FROM aloro_webhook._local_history h
	 WHERE h.call_id OPERATOR(pg_catalog.=) delivery_history_of.call_id
	UNION ALL
	SELECT o.* FROM aloro_webhook._other_nodes_history(delivery_history_of.call_id) o
$$;

-- One row per webhook: is it sending, how far behind, how well.
CREATE VIEW aloro_webhook.webhook_health AS
SELECT w.id AS webhook_id, w.name, w.url, w.enabled, w.disabled_reason, w.disabled_at,
	   q.pending,
	   now() - o.created_at AS oldest_pending_age,
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
					   FROM aloro_webhook.queue q WHERE q.webhook_id = w.id) q
  LEFT JOIN aloro_webhook.delivery_log o ON o.id = q.oldest
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
CREATE FUNCTION aloro_webhook._prune(after_id bigint, batch integer,
									 succeeded_before timestamptz, failed_before timestamptz,
									 OUT last_id bigint, OUT pruned bigint, OUT pass_done boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
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
			  FROM aloro_webhook.delivery_log d
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
		 WHERE d.id = ANY (v_ids) AND d.status <> 'pending'
		   AND NOT EXISTS (SELECT 1 FROM aloro_webhook.queue q WHERE q.delivery_id = d.id)
		RETURNING d.id, d.payload_id),
	att AS (
		DELETE FROM aloro_webhook.delivery_attempts a
		 USING gone WHERE a.delivery_id = gone.id)
	SELECT array_agg(DISTINCT gone.payload_id) FILTER (WHERE gone.payload_id IS NOT NULL), count(*)
	  INTO v_payloads, pruned
	  FROM gone;
	-- a call's body is shared by its webhooks' deliveries (deliveries_once
	-- finds them); a test request's is its own
	DELETE FROM aloro_webhook.payloads p
	 WHERE p.id = ANY (v_payloads)
	   AND (p.call_id IS NULL OR NOT EXISTS (
			SELECT 1 FROM aloro_webhook.delivery_log d
			 WHERE d.call_id = p.call_id AND NOT d.test AND d.payload_id = p.id));
END
$$;

------------------------------------------------------------------------------
-- Endpoint controls: extra headers, rate limits, payload filters, erasure.
-- See README "Endpoint controls".
------------------------------------------------------------------------------

ALTER TABLE aloro_webhook.webhooks
	ADD COLUMN headers jsonb NOT NULL DEFAULT '{}',
	ADD COLUMN rate_limit integer,
	ADD COLUMN filter jsonpath;
COMMENT ON COLUMN aloro_webhook.webhooks.headers IS
	'extra request headers, {"Name": "value"}; they carry credentials: admins only';
COMMENT ON COLUMN aloro_webhook.webhooks.rate_limit IS
	'most requests per second to this webhook; NULL = no limit';
COMMENT ON COLUMN aloro_webhook.webhooks.filter IS
	'queue only calls whose body matches (jsonb_path_match, silent); NULL = every call';

-- Would this webhook's filter queue this call?  For trying a filter out
-- before saving it: the body is the one the call's delivery would carry.
CREATE FUNCTION aloro_webhook.filter_matches(filter jsonpath, call_id text,
											  include_recording boolean DEFAULT true)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT CASE WHEN filter IS NULL THEN true
				ELSE COALESCE(jsonb_path_match(aloro_webhook.call_payload(call_id, include_recording)::jsonb,
											   filter, '{}', true), false)
		   END;
END;

-- The same for a saved webhook.
CREATE FUNCTION aloro_webhook.matches(webhook_id bigint, call_id text)
RETURNS boolean
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_filter	jsonpath;
	v_rec		boolean;
BEGIN
	PERFORM aloro_webhook._arg_required(webhook_id IS NULL, 'webhook_id');
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	SELECT w.filter, w.include_recording INTO v_filter, v_rec
	  FROM aloro_webhook.webhooks w WHERE w.id = matches.webhook_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook % does not exist', webhook_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN aloro_webhook.filter_matches(v_filter, call_id, v_rec);
END
$$;

-- Erases what the extension keeps of a call's content: its delivery bodies
-- and the receivers' response bodies.  The facts stay (deliveries, attempts,
-- statuses, times, the ended mark, so that the call never fires again); a
-- pending delivery of it is failed, never sent.  Returns how many
-- deliveries it erased.
CREATE FUNCTION aloro_webhook.forget_call(call_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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
	UPDATE aloro_webhook.delivery_attempts a SET response_body = NULL
	 WHERE a.delivery_id = ANY (v_ids) AND a.response_body IS NOT NULL;
	-- waiting ones are failed now (one already in flight finishes as its receiver answers)
	WITH gone AS (
		DELETE FROM aloro_webhook.queue q
		 WHERE q.delivery_id = ANY (v_ids) AND q.claimed_by IS NULL
		RETURNING q.delivery_id)
	UPDATE aloro_webhook.delivery_log d
	   SET status = 'failed', next_attempt_at = NULL, finished_at = now(),
		   last_error = 'payload erased: forget_call() erased the body of this delivery, so it is never sent'
	  FROM gone WHERE d.id = gone.delivery_id;
	RETURN cardinality(v_ids) + v_elsewhere;
END
$$;

------------------------------------------------------------------------------
-- Citus.  On a sharded call database every node runs the extension: the
-- call-ended trigger fires on the node that holds the call's shard, in the
-- same transaction, and queues there; that node's worker sends.  What is
-- shared comes from the coordinator:
--   - the webhooks: each write on the coordinator is copied, in the same
--     (two-phase) transaction, into webhook_config, a reference table that
--     Citus keeps on every node, and from there into each node's webhooks;
--   - delivery ids: each node numbers its deliveries from its Citus group
--     id times 2^48, so an id names one delivery in the whole cluster (and
--     the node that holds it);
--   - the history: delivery_history on the coordinator adds every other
--     node's (_other_nodes_history, defined with the view).
-- Without Citus none of this does anything.  See README "Scaling".
------------------------------------------------------------------------------

CREATE TABLE aloro_webhook.webhook_config (
	id					bigint PRIMARY KEY,
	config				jsonb NOT NULL		-- the webhooks row, as to_jsonb() gives it
);
COMMENT ON TABLE aloro_webhook.webhook_config IS
	'On Citus: the coordinator''s webhooks, as a reference table that every node applies to its own webhooks.';

-- On the coordinator: a webhook written goes to every node.
CREATE FUNCTION aloro_webhook._webhook_to_cluster()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT aloro_webhook._citus_coordinator() THEN
		RETURN NULL;
	END IF;
	IF TG_OP = 'DELETE' THEN
		DELETE FROM aloro_webhook.webhook_config c WHERE c.id OPERATOR(pg_catalog.=) OLD.id;
	ELSE
		INSERT INTO aloro_webhook.webhook_config AS c (id, config)
		VALUES (NEW.id, pg_catalog.to_jsonb(NEW))
		ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config;
		IF TG_OP = 'UPDATE' AND OLD.id OPERATOR(pg_catalog.<>) NEW.id THEN
			DELETE FROM aloro_webhook.webhook_config c WHERE c.id OPERATOR(pg_catalog.=) OLD.id;
		END IF;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER aloro_webhook_to_cluster
	AFTER INSERT OR UPDATE OR DELETE ON aloro_webhook.webhooks
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._webhook_to_cluster();

-- Makes this node's webhook what the coordinator's is (config: its row as
-- jsonb).  Every column is taken, read from the catalog, so a column added
-- to webhooks later is carried too.  Returns whether it wrote.
CREATE FUNCTION aloro_webhook._webhook_apply(config jsonb)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_set text;
BEGIN
	IF EXISTS (SELECT 1 FROM aloro_webhook.webhooks h
				WHERE h.id OPERATOR(pg_catalog.=) (config OPERATOR(pg_catalog.->>) 'id')::bigint
				  AND pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.=) config) THEN
		RETURN false;
	END IF;
	SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = EXCLUDED.%1$I', a.attname), ', '
								 ORDER BY a.attnum)
	  INTO v_set
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid OPERATOR(pg_catalog.=) 'aloro_webhook.webhooks'::pg_catalog.regclass
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
	   AND a.attname OPERATOR(pg_catalog.<>) 'id';
	EXECUTE 'INSERT INTO aloro_webhook.webhooks AS h '
			'SELECT (pg_catalog.jsonb_populate_record(NULL::aloro_webhook.webhooks, $1)).* '
			'ON CONFLICT (id) DO UPDATE SET ' || v_set
		USING config;
	RETURN true;
END
$$;

-- On every node (Citus runs it on the reference table's copy there): the
-- coordinator's webhook becomes this node's.  The coordinator's own copy
-- finds its row already as it is, and writes nothing.
CREATE FUNCTION aloro_webhook._webhook_from_cluster()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		DELETE FROM aloro_webhook.webhooks h WHERE h.id OPERATOR(pg_catalog.=) OLD.id;
	ELSE
		PERFORM aloro_webhook._webhook_apply(NEW.config);
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER aloro_webhook_from_cluster
	AFTER INSERT OR UPDATE OR DELETE ON aloro_webhook.webhook_config
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._webhook_from_cluster();

-- This node's share of delivery ids: from its Citus group id times 2^48
-- (the coordinator, group 0, keeps 1 ..).  Returns the group id (0 without
-- Citus).  Run when the extension is created (Citus creates it on a node
-- as the node joins), when Citus places the webhooks on a node, and by the
-- worker (_citus_node_setup), so that a node added later needs no step.
CREATE FUNCTION aloro_webhook._citus_node_ids()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_group integer;
	v_low bigint;
	v_high bigint;
	v_last bigint;
	v_min bigint;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
		RETURN 0;
	END IF;
	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO v_group;
	IF v_group IS NULL OR v_group <= 0 OR v_group >= 32767 THEN
		RETURN coalesce(v_group, 0);
	END IF;
	v_low := (v_group::bigint OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.+) 1;
	v_high := ((v_group::bigint OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.-) 1;
	SELECT s.min_value, s.last_value INTO v_min, v_last
	  FROM pg_catalog.pg_sequences s
	 WHERE s.schemaname = 'aloro_webhook' AND s.sequencename = 'delivery_log_id_seq';
	IF v_min IS DISTINCT FROM v_low THEN
		EXECUTE pg_catalog.format('ALTER SEQUENCE aloro_webhook.delivery_log_id_seq '
								  'MINVALUE %s MAXVALUE %s START WITH %s RESTART WITH %s',
								  v_low, v_high, v_low,
								  CASE WHEN v_last >= v_low AND v_last < v_high
									   THEN v_last OPERATOR(pg_catalog.+) 1 ELSE v_low END);
	END IF;
	RETURN v_group;
END
$$;

-- What the worker checks every few seconds on a Citus node: on the
-- coordinator, whether a watched table was distributed after watch(); on
-- the others, their range of delivery ids, and their webhooks as the
-- coordinator has them (for a node
-- that missed a change: it was added later, or restored; each change
-- reaches every node in its own transaction anyway).  A webhook this node's
-- breaker disabled stays so until the coordinator's row changes.  Returns
-- the group id (0 without Citus).
CREATE FUNCTION aloro_webhook._citus_node_setup()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_group integer;
	v_coordinator boolean;
	v_watched regclass;
	v_configs jsonb[];
	v_breaker text[] := ARRAY['enabled', 'disabled_reason', 'disabled_at'];
BEGIN
	v_group := aloro_webhook._citus_node_ids();
	IF v_group = 0 AND pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL
	   AND NOT aloro_webhook._citus_coordinator() THEN
		-- a coordinator whose watched table was distributed after watch()
		-- (which had no cluster to set up then): set the nodes up now
		EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v_coordinator;
		IF v_coordinator THEN
			EXECUTE 'SELECT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t '
					'  JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) t.tgrelid '
					' WHERE t.tgname OPERATOR(pg_catalog.=) ''aloro_webhook_call_ended'' '
					'   AND t.tgfoid OPERATOR(pg_catalog.=) ''aloro_webhook._call_ended()''::pg_catalog.regprocedure '
					' LIMIT 1'
				INTO v_watched;
			IF v_watched IS NOT NULL THEN
				RAISE LOG 'aloro_webhook: % was distributed after watch(): sending the webhooks to every node', v_watched;
				PERFORM aloro_webhook._citus_setup(v_watched);
			END IF;
		END IF;
	END IF;
	IF v_group <= 0 THEN
		RETURN v_group;
	END IF;
	IF aloro_webhook._citus_config_shared() THEN
		-- read apart from the writes: Citus plans no statement that mixes
		-- its reference table with this node's own tables
		SELECT coalesce(pg_catalog.array_agg(c.config), '{}') INTO v_configs
		  FROM aloro_webhook.webhook_config c;
		PERFORM aloro_webhook._webhook_apply(c.config)
		   FROM pg_catalog.unnest(v_configs) AS c(config)
		   LEFT JOIN aloro_webhook.webhooks h
				  ON h.id OPERATOR(pg_catalog.=) (c.config OPERATOR(pg_catalog.->>) 'id')::bigint
		  WHERE h.id IS NULL
			 OR (pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.<>) c.config
				 AND NOT (h.disabled_reason IS NOT NULL AND NOT h.enabled
						  AND (pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.-) v_breaker)
							  OPERATOR(pg_catalog.=) (c.config OPERATOR(pg_catalog.-) v_breaker)));
		DELETE FROM aloro_webhook.webhooks h
		 WHERE NOT h.id OPERATOR(pg_catalog.=) ANY (
			 SELECT (c.config OPERATOR(pg_catalog.->>) 'id')::bigint FROM pg_catalog.unnest(v_configs) AS c(config));
	END IF;
	RETURN v_group;
END
$$;

-- a node that Citus creates the extension on as it joins takes its ids now
SELECT aloro_webhook._citus_node_ids();

-- Runs a statement here and answers what came of it as jsonb: {"result"}
-- or the error's {"sqlstate", "message", "detail", "hint"}, for _on_nodes()
-- on the coordinator to raise again as it was.  No role is granted it.
CREATE FUNCTION aloro_webhook._run_here(command text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_result	text;
	v_state		text;
	v_message	text;
	v_detail	text;
	v_hint		text;
BEGIN
	EXECUTE command INTO v_result;
	RETURN pg_catalog.jsonb_build_object('result', v_result);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
							v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'sqlstate', v_state, 'message', v_message,
		'detail', NULLIF(v_detail, ''), 'hint', NULLIF(v_hint, '')));
END
$$;

-- On a Citus coordinator: runs a statement on the nodes of the given groups
-- (NULL: every node but this one), each in its own transaction there, and
-- returns each one's result.  An error on a node is raised here as it was
-- (with the node named in its context); a node that cannot be reached too,
-- unless tolerate_down, when it is named in a warning and skipped.
CREATE FUNCTION aloro_webhook._on_nodes(command text, groups integer[] DEFAULT NULL,
										tolerate_down boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_names		text[];
	v_ports		integer[];
	v_commands	text[];
	r			record;
	v_answer	jsonb;
BEGIN
	IF NOT aloro_webhook._citus_coordinator() THEN
		RETURN;
	END IF;
	EXECUTE 'SELECT pg_catalog.array_agg(n.nodename ORDER BY n.groupid), '
			'       pg_catalog.array_agg(n.nodeport ORDER BY n.groupid) '
			'  FROM pg_catalog.pg_dist_node n '
			' WHERE n.isactive AND n.noderole OPERATOR(pg_catalog.=) ''primary'' '
			'   AND n.groupid OPERATOR(pg_catalog.<>) (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l) '
			'   AND ($1 IS NULL OR n.groupid OPERATOR(pg_catalog.=) ANY ($1))'
		INTO v_names, v_ports USING groups;
	IF v_names IS NULL THEN
		RETURN;
	END IF;
	v_commands := pg_catalog.array_fill(pg_catalog.format('SELECT aloro_webhook._run_here(%L)', command),
										ARRAY[pg_catalog.cardinality(v_names)]);
	FOR r IN EXECUTE 'SELECT node_name, node_port, success, result '
					 '  FROM pg_catalog.master_run_on_worker($1, $2, $3, true)'
		USING v_names, v_ports, v_commands
	LOOP
		IF NOT r.success THEN
			IF tolerate_down THEN
				RAISE WARNING 'node %:% did not answer: %', r.node_name, r.node_port, r.result;
				CONTINUE;
			END IF;
			RAISE EXCEPTION 'node %:% did not answer: %', r.node_name, r.node_port, r.result
				USING ERRCODE = 'connection_failure',
					  HINT = 'Run it again once the node is back.';
		END IF;
		v_answer := r.result::jsonb;
		IF v_answer ? 'sqlstate' THEN
			IF v_answer ? 'detail' AND v_answer ? 'hint' THEN
				RAISE EXCEPTION USING ERRCODE = v_answer->>'sqlstate', MESSAGE = v_answer->>'message',
									  DETAIL = v_answer->>'detail', HINT = v_answer->>'hint';
			ELSIF v_answer ? 'detail' THEN
				RAISE EXCEPTION USING ERRCODE = v_answer->>'sqlstate', MESSAGE = v_answer->>'message',
									  DETAIL = v_answer->>'detail';
			ELSIF v_answer ? 'hint' THEN
				RAISE EXCEPTION USING ERRCODE = v_answer->>'sqlstate', MESSAGE = v_answer->>'message',
									  HINT = v_answer->>'hint';
			END IF;
			RAISE EXCEPTION USING ERRCODE = v_answer->>'sqlstate', MESSAGE = v_answer->>'message';
		END IF;
		RETURN NEXT v_answer->>'result';
	END LOOP;
END
$$;

-- The Citus group of the other node that holds a delivery, or NULL when it
-- is this node's (always NULL without Citus): ids are numbered per group.
CREATE FUNCTION aloro_webhook._node_of(delivery_id bigint)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT g FROM (SELECT (delivery_id OPERATOR(pg_catalog.>>) 48)::integer AS g) x
	 WHERE x.g OPERATOR(pg_catalog.<>) 0 AND aloro_webhook._citus_coordinator()
$$;

-- A time as text that any node reads back as the same time, whatever its
-- DateStyle and TimeZone.
CREATE FUNCTION aloro_webhook._time_text(t timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.isfinite(t)
		THEN pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
		ELSE t::text END
$$;

-- watch() on a Citus coordinator: refuses a calls table whose shards have
-- several placements (a reference table, or citus.shard_replication_factor
-- above 1: the trigger would fire on each, and each node would send the
-- call), then the configuration goes to every node (SECURITY DEFINER:
-- distributing the extension's table is its owner's).
CREATE FUNCTION aloro_webhook._citus_setup(calls regclass)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	v_copies bigint;
BEGIN
	IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
		RETURN;
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RETURN;
	END IF;
	EXECUTE 'SELECT pg_catalog.max(n) FROM (SELECT pg_catalog.count(*) AS n '
			'  FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid) '
			' WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1 GROUP BY s.shardid) x'
		INTO v_copies USING calls;
	IF v_copies > 1 THEN
		RAISE EXCEPTION 'table % keeps each call on % nodes', calls, v_copies
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'The call-ended trigger fires on every copy of a shard, so each of those nodes would send every call.',
				  HINT = 'Distribute the calls table with create_distributed_table() and citus.shard_replication_factor = 1 (the default); keep a node''s data safe with a streaming standby.';
	END IF;
	IF aloro_webhook._citus_coordinator() THEN
		RETURN;
	END IF;
	-- the reference table carries the trigger that applies it on each node
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	PERFORM pg_catalog.create_reference_table('aloro_webhook.webhook_config');
	INSERT INTO aloro_webhook.webhook_config AS c (id, config)
	SELECT w.id, pg_catalog.to_jsonb(w) FROM aloro_webhook.webhooks w
	ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config;
	-- each node's delivery ids (its worker would within seconds; now, before calls end there)
	FOR r IN SELECT * FROM pg_catalog.run_command_on_all_nodes('SELECT aloro_webhook._citus_node_ids()') LOOP
		IF NOT r.success THEN
			RAISE WARNING 'node % could not take its range of delivery ids yet: %', r.nodeid, r.result
				USING HINT = 'Its delivery worker sets it up within seconds once the node runs the extension.';
		END IF;
	END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Privileges.  Each role gets exactly what its work needs, and never
-- TRIGGER, REFERENCES or TRUNCATE on a table of the extension.  Functions
-- that write the queue for admins are SECURITY DEFINER, so admins need no
-- write access to it.  Everything is revoked first and granted again, so
-- this is also what a fresh install gets.  See README "Privileges".
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA aloro_webhook FROM aloro_webhook_admin, aloro_webhook_reader, PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA aloro_webhook FROM aloro_webhook_admin, aloro_webhook_reader, PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA aloro_webhook FROM aloro_webhook_admin, aloro_webhook_reader, PUBLIC;
REVOKE SELECT (id, name, url, completed_only, include_recording, enabled, assistant_id,
			   campaign_id, created_at)
	ON aloro_webhook.webhooks FROM aloro_webhook_reader;
REVOKE SELECT (signature_scheme, disabled_reason, disabled_at, previous_secret_until,
			   rate_limit, filter)
	ON aloro_webhook.webhooks FROM aloro_webhook_reader;

-- PUBLIC: the harmless helpers, and the validators that run on behalf of
-- whoever writes the tables

GRANT EXECUTE ON FUNCTION aloro_webhook.sign(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook.generate_secret() TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_url(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_secret(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_call(text, text, jsonb, jsonb, jsonb) TO PUBLIC;
-- what webhook_health computes with, in the reader's name
-- watch() on a Citus coordinator sends the configuration to every node
GRANT EXECUTE ON FUNCTION aloro_webhook._citus_setup(regclass) TO aloro_webhook_admin;
-- what delivery_history and call_payload() ask the other nodes of a Citus
-- cluster with (nothing without Citus)
GRANT EXECUTE ON FUNCTION aloro_webhook._citus_coordinator(),
						   aloro_webhook._citus_config_shared(),
						   aloro_webhook._other_nodes_history(text),
						   aloro_webhook._ended_at(text),
						   aloro_webhook.delivery_history_of(text)
	TO aloro_webhook_admin, aloro_webhook_reader;
GRANT EXECUTE ON FUNCTION aloro_webhook._duration_bounds(),
						   aloro_webhook._hist_add(integer[], integer[]),
						   aloro_webhook._hist_quantile(integer[], double precision)
	TO PUBLIC;

-- aloro_webhook_admin: configures webhooks, writes calls, reads everything,
-- and queues through the functions
GRANT SELECT, INSERT, UPDATE, DELETE ON aloro_webhook.webhooks, aloro_webhook.calls
	TO aloro_webhook_admin;
GRANT SELECT ON aloro_webhook.ended_calls, aloro_webhook.deliveries,
				 aloro_webhook.delivery_log, aloro_webhook.payloads, aloro_webhook.queue,
				 aloro_webhook.delivery_attempts, aloro_webhook.delivery_history,
				 aloro_webhook._local_history,
				 aloro_webhook.webhook_health, aloro_webhook.webhook_state,
				 aloro_webhook.webhook_stats
	TO aloro_webhook_admin;
GRANT USAGE, SELECT ON SEQUENCE aloro_webhook.webhooks_id_seq TO aloro_webhook_admin;
GRANT EXECUTE ON FUNCTION
	aloro_webhook.create_webhook(text, text, boolean, boolean, text, text, text),
	aloro_webhook.test_webhook(bigint),
	aloro_webhook.redeliver(bigint),
	aloro_webhook.replay(bigint, timestamptz, timestamptz, boolean),
	aloro_webhook.rotate_secret(bigint, text, interval),
	aloro_webhook.forget_call(text),
	aloro_webhook.matches(bigint, text),
	aloro_webhook.filter_matches(jsonpath, text, boolean),
	aloro_webhook.call_payload(text, boolean),
	aloro_webhook.watch(regclass),
	aloro_webhook.unwatch(regclass),
	aloro_webhook._payload(record, boolean, timestamptz),
	aloro_webhook._text_of(anyelement),
	aloro_webhook._arg_required(boolean, text),
	-- watch() attaches these, and CREATE TRIGGER needs EXECUTE on them
	aloro_webhook._call_ended(),
	aloro_webhook._call_forgotten()
	TO aloro_webhook_admin;

-- aloro_webhook_reader: reads everything but secrets
GRANT SELECT ON aloro_webhook.calls, aloro_webhook.ended_calls, aloro_webhook.deliveries,
				 aloro_webhook.delivery_log, aloro_webhook.payloads, aloro_webhook.queue,
				 aloro_webhook.delivery_attempts, aloro_webhook.delivery_history,
				 aloro_webhook._local_history,
				 aloro_webhook.webhook_health, aloro_webhook.webhook_state,
				 aloro_webhook.webhook_stats
	TO aloro_webhook_reader;
GRANT SELECT (id, name, url, completed_only, include_recording, enabled, assistant_id,
			  campaign_id, created_at, signature_scheme, disabled_reason, disabled_at,
			  previous_secret_until, rate_limit, filter)
	ON aloro_webhook.webhooks TO aloro_webhook_reader;
GRANT EXECUTE ON FUNCTION aloro_webhook.call_payload(text, boolean),
						  aloro_webhook.matches(bigint, text),
						  aloro_webhook.filter_matches(jsonpath, text, boolean),
						  aloro_webhook._payload(record, boolean, timestamptz),
						  aloro_webhook._text_of(anyelement),
						  aloro_webhook._arg_required(boolean, text)
	TO aloro_webhook_reader;
