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
BEGIN
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	-- the default table first, then every table that watch() attached to
	FOR v_rel IN
		SELECT t.tgrelid::regclass
		  FROM pg_trigger t
		 WHERE t.tgname = 'aloro_webhook_call_ended'
		   AND t.tgfoid = 'aloro_webhook._call_ended()'::regprocedure
		 ORDER BY t.tgrelid <> 'aloro_webhook.calls'::regclass, t.tgrelid
	LOOP
		-- an ended call's body carries the time it ended (as queued), not now
		-- the id compared as the text the triggers read (never through a
		-- cast of the table owner's): an index helps text ids
		SELECT CASE WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype)
					THEN 'c.id::text = $1'
					ELSE 'aloro_webhook._text_of(c.id) = $1' END
		  INTO v_pred
		  FROM pg_attribute a
		 WHERE a.attrelid = v_rel AND a.attname = 'id' AND NOT a.attisdropped;
		EXECUTE format('SELECT aloro_webhook._payload(c, $2, '
					   '(SELECT e.ended_at FROM aloro_webhook.ended_calls e WHERE e.call_id = $1)) '
					   'FROM %s c WHERE %s',
					   v_rel, v_pred)
		   INTO v_body
		  USING call_payload.call_id, coalesce(call_payload.include_recording, true);
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
	bytes				integer NOT NULL CHECK (bytes >= 0),
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE aloro_webhook.payloads IS
	'The bodies deliveries carry, each distinct body once.';
ALTER TABLE aloro_webhook.payloads ALTER COLUMN body SET COMPRESSION lz4;
CREATE INDEX payloads_by_call ON aloro_webhook.payloads (call_id);

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
CREATE INDEX queue_due ON aloro_webhook.queue (webhook_id, due_at);

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
ALTER TABLE aloro_webhook.delivery_log ALTER COLUMN next_attempt_at DROP DEFAULT;
-- the record of an attempt changes no indexed column: room on the page keeps it HOT
ALTER TABLE aloro_webhook.delivery_log SET (fillfactor = 80);
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

-- Statement trigger: wake the worker when the transaction commits.
CREATE TRIGGER aloro_webhook_wake
	AFTER INSERT OR UPDATE ON aloro_webhook.queue
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
BEGIN
	PERFORM aloro_webhook._arg_required(delivery_id IS NULL, 'delivery_id');
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
	-- like redeliver(): same bodies, a fresh attempt budget, history kept
	RETURN aloro_webhook._requeue(v_ids);
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

-- PUBLIC: the harmless helpers, and the validators that run on behalf of
-- whoever writes the tables

GRANT EXECUTE ON FUNCTION aloro_webhook.sign(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook.generate_secret() TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_url(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_secret(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_call(text, text, jsonb, jsonb, jsonb) TO PUBLIC;

-- aloro_webhook_admin: configures webhooks, writes calls, reads everything,
-- and queues through the functions
GRANT SELECT, INSERT, UPDATE, DELETE ON aloro_webhook.webhooks, aloro_webhook.calls
	TO aloro_webhook_admin;
GRANT SELECT ON aloro_webhook.ended_calls, aloro_webhook.deliveries,
				 aloro_webhook.delivery_log, aloro_webhook.payloads, aloro_webhook.queue,
				 aloro_webhook.delivery_attempts
	TO aloro_webhook_admin;
GRANT USAGE, SELECT ON SEQUENCE aloro_webhook.webhooks_id_seq TO aloro_webhook_admin;
GRANT EXECUTE ON FUNCTION
	aloro_webhook.create_webhook(text, text, boolean, boolean, text, text, text),
	aloro_webhook.test_webhook(bigint),
	aloro_webhook.redeliver(bigint),
	aloro_webhook.replay(bigint, timestamptz, timestamptz, boolean),
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
				 aloro_webhook.delivery_attempts
	TO aloro_webhook_reader;
GRANT SELECT (id, name, url, completed_only, include_recording, enabled, assistant_id,
			  campaign_id, created_at)
	ON aloro_webhook.webhooks TO aloro_webhook_reader;
GRANT EXECUTE ON FUNCTION aloro_webhook.call_payload(text, boolean),
						  aloro_webhook._payload(record, boolean, timestamptz),
						  aloro_webhook._text_of(anyelement),
						  aloro_webhook._arg_required(boolean, text)
	TO aloro_webhook_reader;
