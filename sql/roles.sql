/*
 * roles.sql — who may do what: the two roles the extension brings, and
 * exactly the privileges each one's work needs.  Last of the files of sql/,
 * once every object exists.
 *
 * Re-runnable, like every file of sql/ (see sql/README.md): everything is
 * revoked first and granted again, so an upgraded database ends with what a
 * fresh install gets.
 */

-- Roles are cluster-wide; create them once, leave them alone on re-install.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'aloro_webhook_admin') THEN
		CREATE ROLE aloro_webhook_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'aloro_webhook_reader') THEN
		CREATE ROLE aloro_webhook_reader NOLOGIN;
	END IF;
END
$$;

------------------------------------------------------------------------------
-- Privileges.  Each role gets exactly what its work needs, and never
-- TRIGGER, REFERENCES or TRUNCATE on a table of the extension.  Functions
-- that write the queue for admins are SECURITY DEFINER, so admins need no
-- write access to it.  Everything is revoked first and granted again, so
-- this is also what a fresh install gets.  See doc/privileges.md.
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

GRANT USAGE ON SCHEMA aloro_webhook TO PUBLIC;

-- PUBLIC: the harmless helpers, and the validators that run on behalf of
-- whoever writes the tables

GRANT EXECUTE ON FUNCTION aloro_webhook.sign(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook.generate_secret() TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_url(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_secret(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aloro_webhook._check_call(text, text, jsonb, jsonb, jsonb) TO PUBLIC;
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
-- what webhook_health computes with, in the reader's name
GRANT EXECUTE ON FUNCTION aloro_webhook._stream_pending() TO aloro_webhook_admin, aloro_webhook_reader;
GRANT EXECUTE ON FUNCTION aloro_webhook._duration_bounds(),
						   aloro_webhook._hist_add(integer[], integer[]),
						   aloro_webhook._hist_quantile(integer[], double precision)
	TO PUBLIC;

-- aloro_webhook_admin: configures webhooks, writes calls, reads everything,
-- and queues through the functions
GRANT SELECT, INSERT, UPDATE, DELETE ON aloro_webhook.webhooks, aloro_webhook.calls
	TO aloro_webhook_admin;
-- both read the queue and the history
GRANT SELECT ON aloro_webhook.ended_calls, aloro_webhook.deliveries,
				 aloro_webhook.delivery_log, aloro_webhook.payloads, aloro_webhook.queue,
				 aloro_webhook.delivery_state, aloro_webhook.stream_cursors,
				 aloro_webhook.delivery_attempts, aloro_webhook.delivery_history,
				 aloro_webhook._local_history,
				 aloro_webhook.webhook_health, aloro_webhook.webhook_state,
				 aloro_webhook.webhook_stats
	TO aloro_webhook_admin, aloro_webhook_reader;
GRANT USAGE, SELECT ON SEQUENCE aloro_webhook.webhooks_id_seq TO aloro_webhook_admin;
GRANT EXECUTE ON FUNCTION
	aloro_webhook.create_webhook(text, text, boolean, boolean, text, text, text),
	aloro_webhook.test_webhook(bigint),
	aloro_webhook.redeliver(bigint),
	aloro_webhook.replay(bigint, timestamptz, timestamptz, boolean),
	aloro_webhook.rotate_secret(bigint, text, interval),
	aloro_webhook.forget_call(text),
	aloro_webhook.watch(regclass),
	aloro_webhook.unwatch(regclass),
	-- watch() attaches these, and CREATE TRIGGER needs EXECUTE on them
	aloro_webhook._call_ended(),
	aloro_webhook._call_forgotten()
	TO aloro_webhook_admin;

-- aloro_webhook_reader: reads everything but secrets
GRANT SELECT ON aloro_webhook.calls TO aloro_webhook_reader;
GRANT SELECT (id, name, url, completed_only, include_recording, enabled, assistant_id,
			  campaign_id, created_at, signature_scheme, disabled_reason, disabled_at,
			  previous_secret_until, rate_limit, filter)
	ON aloro_webhook.webhooks TO aloro_webhook_reader;
-- both: a call's body and whether a webhook's filter takes it
GRANT EXECUTE ON FUNCTION aloro_webhook.call_payload(text, boolean),
						  aloro_webhook.matches(bigint, text),
						  aloro_webhook.filter_matches(jsonpath, text, boolean),
						  aloro_webhook._payload(record, boolean, timestamptz),
						  aloro_webhook._text_of(anyelement),
						  aloro_webhook._arg_required(boolean, text)
	TO aloro_webhook_admin, aloro_webhook_reader;
