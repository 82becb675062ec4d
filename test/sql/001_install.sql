--
-- 001_install: the extension installs into its own schema, with the
-- contract's tables, columns, types, roles and settings.
--
-- CONTRACT.md "Install", "Tables", "Tables you query for history", "Settings".
--
\set SHOW_CONTEXT never

CREATE EXTENSION aloro_webhook;

-- schema aloro_webhook, not relocatable
SELECT e.extname, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'aloro_webhook';

-- a second CREATE EXTENSION is refused by PostgreSQL itself
CREATE EXTENSION aloro_webhook;

-- Every column the contract names, with its type.  Lists the ones that are
-- missing or have another type: no rows expected.  (Columns added beyond the
-- contract are allowed, so they are not listed.)
SELECT c.tab, c.col, c.typ AS contract_type, i.data_type AS actual_type
  FROM (VALUES
	('webhooks', 'id', 'bigint'),
	('webhooks', 'name', 'text'),
	('webhooks', 'url', 'text'),
	('webhooks', 'secret', 'text'),
	('webhooks', 'completed_only', 'boolean'),
	('webhooks', 'include_recording', 'boolean'),
	('webhooks', 'enabled', 'boolean'),
	('webhooks', 'assistant_id', 'text'),
	('webhooks', 'campaign_id', 'text'),
	('webhooks', 'created_at', 'timestamp with time zone'),
	('deliveries', 'id', 'bigint'),
	('deliveries', 'webhook_id', 'bigint'),
	('deliveries', 'call_id', 'text'),
	('deliveries', 'event', 'text'),
	('deliveries', 'test', 'boolean'),
	('deliveries', 'body', 'text'),
	('deliveries', 'status', 'text'),
	('deliveries', 'attempts', 'integer'),
	('deliveries', 'next_attempt_at', 'timestamp with time zone'),
	('deliveries', 'last_http_status', 'integer'),
	('deliveries', 'last_error', 'text'),
	('deliveries', 'created_at', 'timestamp with time zone'),
	('deliveries', 'finished_at', 'timestamp with time zone'),
	('delivery_attempts', 'delivery_id', 'bigint'),
	('delivery_attempts', 'attempt', 'integer'),
	('delivery_attempts', 'started_at', 'timestamp with time zone'),
	('delivery_attempts', 'duration_ms', 'integer'),
	('delivery_attempts', 'http_status', 'integer'),
	('delivery_attempts', 'error', 'text'),
	('delivery_attempts', 'response_body', 'text')
	) AS c(tab, col, typ)
  LEFT JOIN information_schema.columns i
    ON i.table_schema = 'aloro_webhook' AND i.table_name = c.tab AND i.column_name = c.col
 WHERE i.data_type IS DISTINCT FROM c.typ;

-- aloro_webhook.calls: the contract's INSERT is positional, so the columns
-- must come in exactly the contract's order, with its types.
SELECT ordinal_position AS pos, column_name, data_type
  FROM information_schema.columns
 WHERE table_schema = 'aloro_webhook' AND table_name = 'calls'
 ORDER BY ordinal_position;

-- primary keys: webhooks.id, calls.id, and deliveries.id (deliveries is a
-- view over delivery_log, payloads and queue; delivery_log holds the id)
SELECT conrelid::regclass AS tab, pg_get_constraintdef(oid) AS pk
  FROM pg_constraint
 WHERE contype = 'p' AND conrelid IN ('aloro_webhook.webhooks'::regclass,
                                      'aloro_webhook.calls'::regclass,
                                      'aloro_webhook.delivery_log'::regclass)
 ORDER BY conrelid::regclass::text;
-- no two deliveries share an id
SELECT count(*) = count(DISTINCT id) AS deliveries_ids_unique FROM aloro_webhook.deliveries;

-- webhooks.id is an identity column; url and the booleans are NOT NULL
SELECT column_name, is_identity, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'aloro_webhook' AND table_name = 'webhooks'
   AND column_name IN ('id', 'url', 'completed_only', 'include_recording', 'enabled', 'created_at')
 ORDER BY ordinal_position;

-- calls.status is NOT NULL
SELECT is_nullable FROM information_schema.columns
 WHERE table_schema = 'aloro_webhook' AND table_name = 'calls' AND column_name = 'status';

-- the two roles exist
SELECT rolname FROM pg_roles
 WHERE rolname IN ('aloro_webhook_admin', 'aloro_webhook_reader') ORDER BY 1;

-- the contract's functions exist with the contract's signatures and result types
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS returns
  FROM pg_proc p
 WHERE p.pronamespace = 'aloro_webhook'::regnamespace
   AND p.proname IN ('create_webhook', 'test_webhook', 'redeliver', 'call_payload',
                     'sign', 'watch', 'generate_secret')
 ORDER BY p.proname;
-- argument names and defaults as in the contract's table (callers use named arguments)
SELECT pg_get_function_arguments('aloro_webhook.create_webhook'::regproc)
       = 'url text, secret text DEFAULT NULL::text, completed_only boolean DEFAULT false, '
         'include_recording boolean DEFAULT true, name text DEFAULT NULL::text, '
         'assistant_id text DEFAULT NULL::text, campaign_id text DEFAULT NULL::text'
       AS create_webhook_args_as_contract;
SELECT pg_get_function_arguments('aloro_webhook.call_payload'::regproc) AS call_payload_args,
       pg_get_function_arguments('aloro_webhook.test_webhook'::regproc) AS test_webhook_args,
       pg_get_function_arguments('aloro_webhook.redeliver'::regproc) AS redeliver_args;
SELECT pg_get_function_arguments('aloro_webhook.sign'::regproc) AS sign_args,
       pg_get_function_arguments('aloro_webhook.watch'::regproc) AS watch_args;

-- settings: defined, reserved prefix, contract defaults where test/regress.conf
-- leaves them alone
SHOW aloro_webhook.database_name;
SHOW aloro_webhook.retry_schedule;
SHOW aloro_webhook.timeout;
SHOW aloro_webhook.ca_file;
SHOW aloro_webhook.allowed_networks;
SELECT name, context, unit FROM pg_settings
 WHERE name IN ('aloro_webhook.database_name', 'aloro_webhook.retry_schedule',
                'aloro_webhook.timeout', 'aloro_webhook.ca_file',
                'aloro_webhook.allowed_networks')
 ORDER BY name;
-- the prefix is reserved: a misspelt setting is refused
SET aloro_webhook.retry_schedul = '0';

-- The call statuses are defined once, in C (statuses.c); the call-ended
-- trigger fires for every row and asks them (no WHEN clause of its own).
SELECT string_agg(status, ', ' ORDER BY status) FILTER (WHERE terminal) AS terminal,
       string_agg(status, ', ' ORDER BY status) FILTER (WHERE NOT terminal) AS live
  FROM aloro_webhook._call_statuses();
SELECT pg_get_triggerdef(t.oid) AS calls_trigger
  FROM pg_trigger t
 WHERE t.tgrelid = 'aloro_webhook.calls'::regclass AND t.tgname = 'aloro_webhook_call_ended';
