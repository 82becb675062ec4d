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
-- NULLs refused by name, for every NOT NULL column (id included)
------------------------------------------------------------------------------

DROP TRIGGER aloro_webhook_not_null ON aloro_webhook.webhooks;
DROP FUNCTION aloro_webhook._webhook_not_null();

CREATE FUNCTION aloro_webhook._refuse_nulls()
RETURNS trigger
AS 'MODULE_PATHNAME', 'aloro_webhook_refuse_nulls'
LANGUAGE C;

CREATE TRIGGER aloro_webhook_not_null
	BEFORE INSERT OR UPDATE ON aloro_webhook.webhooks
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._refuse_nulls();

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
	IF call_id IS NULL THEN
		RAISE EXCEPTION 'call_id must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
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

-- admins queue through these, not by writing the queue
ALTER FUNCTION aloro_webhook.test_webhook(bigint) SECURITY DEFINER;
ALTER FUNCTION aloro_webhook.redeliver(bigint) SECURITY DEFINER;
ALTER FUNCTION aloro_webhook.replay(bigint, timestamptz, timestamptz, boolean) SECURITY DEFINER;

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
	-- watch() attaches these, and CREATE TRIGGER needs EXECUTE on them
	aloro_webhook._call_ended(),
	aloro_webhook._call_forgotten()
	TO aloro_webhook_admin;

-- aloro_webhook_reader: reads everything but secrets
GRANT SELECT ON aloro_webhook.calls, aloro_webhook.ended_calls, aloro_webhook.deliveries,
				 aloro_webhook.delivery_attempts
	TO aloro_webhook_reader;
GRANT SELECT (id, name, url, completed_only, include_recording, enabled, assistant_id,
			  campaign_id, created_at)
	ON aloro_webhook.webhooks TO aloro_webhook_reader;
GRANT EXECUTE ON FUNCTION aloro_webhook.call_payload(text, boolean),
						  aloro_webhook._payload(record, boolean, timestamptz),
						  aloro_webhook._text_of(anyelement)
	TO aloro_webhook_reader;
