--
-- 005_privileges: roles that may write calls need no rights on the
-- extension's tables; aloro_webhook_reader reads everything but
-- webhooks.secret; aloro_webhook_admin configures and redelivers; PUBLIC gets
-- nothing it does not need.
--
\set SHOW_CONTEXT never

UPDATE aloro_webhook.webhooks SET enabled = false;
-- delivery ids from here on do not depend on how many the earlier files queued
SELECT setval(pg_get_serial_sequence('aloro_webhook.delivery_log', 'id'), 100000) AS deliveries_id_from;
SELECT aloro_webhook.create_webhook('https://receiver.example/p_all', secret => 'whsec_priv_test_secret',
                                    name => 'p_all') IS NOT NULL AS p_all;

CREATE TEMP VIEW queued AS
SELECT d.call_id, string_agg(w.name, ', ' ORDER BY w.name) AS webhooks, count(*) AS n
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id LIKE 'p\_%' OR d.call_id IN ('100', '101')
 GROUP BY d.call_id;

------------------------------------------------------------------------------
-- A writer: INSERT and UPDATE on the calls tables, nothing on the extension's
-- other tables.  (SELECT on the id column only because PostgreSQL requires
-- it for UPDATE ... WHERE id = ...; the extension needs none.)
------------------------------------------------------------------------------
CREATE ROLE regress_aw_writer;
GRANT INSERT, UPDATE ON aloro_webhook.calls TO regress_aw_writer;
GRANT SELECT (id) ON aloro_webhook.calls TO regress_aw_writer;
GRANT USAGE ON SCHEMA platform TO regress_aw_writer;
GRANT INSERT, UPDATE ON platform.calls TO regress_aw_writer;
GRANT SELECT (id) ON platform.calls TO regress_aw_writer;

SET ROLE regress_aw_writer;
-- ends calls: insert with a terminal status, live -> terminal, in the default
-- table and in a watched one
INSERT INTO aloro_webhook.calls (id, status, ended_at) VALUES ('p_insert_ended', 'completed', '2024-03-15 17:00:00+00');
INSERT INTO aloro_webhook.calls (id, status) VALUES ('p_live', 'ringing');
UPDATE aloro_webhook.calls SET status = 'busy' WHERE id = 'p_live';
INSERT INTO platform.calls (id, status) VALUES (100, 'in-progress');
UPDATE platform.calls SET status = 'completed' WHERE id = 100;
INSERT INTO platform.calls (id, status) VALUES (101, 'missed');
-- but cannot read or change the configuration or the queue
SELECT count(*) FROM aloro_webhook.webhooks;
SELECT secret FROM aloro_webhook.webhooks;
SELECT count(*) FROM aloro_webhook.deliveries;
SELECT body FROM aloro_webhook.deliveries;
SELECT count(*) FROM aloro_webhook.delivery_attempts;
INSERT INTO aloro_webhook.webhooks (url) VALUES ('https://attacker.example/');
UPDATE aloro_webhook.webhooks SET url = 'https://attacker.example/';
UPDATE aloro_webhook.deliveries SET status = 'pending';
DELETE FROM aloro_webhook.deliveries;
INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, body) VALUES (1, 'x', '{}');
-- nor call the functions meant for admins and readers
SELECT aloro_webhook.create_webhook('https://attacker.example/');
SELECT aloro_webhook.test_webhook(1);
SELECT aloro_webhook.redeliver(1);
SELECT aloro_webhook.call_payload('p_live');
SELECT aloro_webhook.watch('aloro_webhook.calls');
RESET ROLE;

-- the writer's calls were queued, with the right body
SELECT * FROM queued ORDER BY call_id;
SELECT d.body = '{"event":"call.ended","timestamp":"2024-03-15T17:00:00Z","data":{"call":{"id":"p_insert_ended","status":"completed","ended_at":"2024-03-15T17:00:00Z"},"variables":{"status":true}}}'
       AS writer_body_ok
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'p_insert_ended';

------------------------------------------------------------------------------
-- aloro_webhook_reader: reads everything but webhooks.secret.
------------------------------------------------------------------------------
CREATE ROLE regress_aw_reader IN ROLE aloro_webhook_reader;
SET ROLE regress_aw_reader;
SELECT name, url, completed_only, include_recording, enabled, assistant_id, campaign_id,
       id IS NOT NULL AS has_id, created_at IS NOT NULL AS has_created_at
  FROM aloro_webhook.webhooks WHERE name = 'p_all';
SELECT secret FROM aloro_webhook.webhooks;
SELECT * FROM aloro_webhook.webhooks;
SELECT count(*) > 0 AS reads_deliveries FROM aloro_webhook.deliveries WHERE call_id = 'p_live';
SELECT count(*) >= 0 AS reads_attempts FROM aloro_webhook.delivery_attempts;
SELECT status AS reads_calls FROM aloro_webhook.calls WHERE id = 'p_live';
SELECT aloro_webhook.call_payload('p_insert_ended') = d.body AS reads_call_payload
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'p_insert_ended';
-- reading is all it does
INSERT INTO aloro_webhook.webhooks (url) VALUES ('https://reader.example/');
UPDATE aloro_webhook.deliveries SET status = 'pending';
SELECT aloro_webhook.create_webhook('https://reader.example/');
SELECT aloro_webhook.test_webhook(1);
SELECT aloro_webhook.redeliver(1);
RESET ROLE;

------------------------------------------------------------------------------
-- aloro_webhook_admin: configures webhooks, sees secrets, queues tests,
-- redelivers.
------------------------------------------------------------------------------
CREATE ROLE regress_aw_admin IN ROLE aloro_webhook_admin;
-- (the worker's part, done by hand: it gave up on p_insert_ended's delivery)
UPDATE aloro_webhook.deliveries
   SET status = 'failed', attempts = 5, next_attempt_at = NULL, finished_at = now()
 WHERE call_id = 'p_insert_ended';
SET ROLE regress_aw_admin;
SELECT aloro_webhook.create_webhook('https://receiver.example/p_admin', secret => 'whsec_admin_secret',
                                    name => 'p_admin') IS NOT NULL AS created;
INSERT INTO aloro_webhook.webhooks (name, url) VALUES ('p_admin_sql', 'https://receiver.example/p_admin_sql');
UPDATE aloro_webhook.webhooks SET enabled = false WHERE name IN ('p_admin', 'p_admin_sql');
SELECT name, secret, enabled FROM aloro_webhook.webhooks WHERE name LIKE 'p\_%' ORDER BY name;
SELECT aloro_webhook.test_webhook(id) IS NOT NULL AS test_queued
  FROM aloro_webhook.webhooks WHERE name = 'p_admin';
SELECT aloro_webhook.redeliver(d.id) = d.id AS redelivered
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'p_insert_ended';
SELECT status FROM aloro_webhook.deliveries WHERE call_id = 'p_insert_ended';
-- a pending one is refused for that reason only
SELECT d.id AS p_live_delivery, aloro_webhook.redeliver(d.id)
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'p_live';
SELECT count(*) AS reads_deliveries FROM aloro_webhook.deliveries WHERE call_id = 'p_live';
RESET ROLE;

------------------------------------------------------------------------------
-- PUBLIC: no table privileges at all, and none of the functions that
-- configure, send, read call data or attach triggers.
------------------------------------------------------------------------------
SELECT c.relname,
       has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
         AS public_has_any
  FROM pg_class c
 WHERE c.relnamespace = 'aloro_webhook'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
 ORDER BY c.relname;
SELECT count(*) AS public_column_grants
  FROM information_schema.column_privileges
 WHERE table_schema = 'aloro_webhook' AND grantee = 'PUBLIC';
SELECT p.proname,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'aloro_webhook'::regnamespace
   AND p.proname IN ('create_webhook', 'test_webhook', 'redeliver', 'call_payload', 'watch', 'unwatch')
 ORDER BY p.proname;
-- the secret column: readable by the admin role only
SELECT r.rolname,
       has_column_privilege(r.oid, 'aloro_webhook.webhooks', 'secret', 'SELECT') AS reads_secret,
       has_column_privilege(r.oid, 'aloro_webhook.webhooks', 'url', 'SELECT') AS reads_url
  FROM pg_roles r
 WHERE r.rolname IN ('aloro_webhook_admin', 'aloro_webhook_reader', 'regress_aw_writer')
 ORDER BY r.rolname;
SELECT has_column_privilege('public', 'aloro_webhook.webhooks', 'secret', 'SELECT') AS public_reads_secret;

------------------------------------------------------------------------------
-- Nothing in the schema lets a non-superuser run code as the owner.
------------------------------------------------------------------------------
-- no role but the owner may create triggers on, reference, or truncate a
-- table of the extension (no rows expected)
SELECT c.relname, r.rolname, p.priv
  FROM pg_class c
 CROSS JOIN (VALUES ('aloro_webhook_admin'), ('aloro_webhook_reader'), ('public')) r(rolname)
 CROSS JOIN (VALUES ('TRIGGER'), ('REFERENCES'), ('TRUNCATE')) p(priv)
 WHERE c.relnamespace = 'aloro_webhook'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND has_table_privilege(r.rolname, c.oid, p.priv);
-- nor change a sequence (no rows expected)
SELECT c.relname, r.rolname
  FROM pg_class c
 CROSS JOIN (VALUES ('aloro_webhook_admin'), ('aloro_webhook_reader'), ('public')) r(rolname)
 WHERE c.relnamespace = 'aloro_webhook'::regnamespace AND c.relkind = 'S'
   AND has_sequence_privilege(r.rolname, c.oid, 'UPDATE');
-- every SECURITY DEFINER function pins search_path to pg_catalog (no rows expected)
SELECT p.oid::regprocedure AS unpinned_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'aloro_webhook'::regnamespace AND p.prosecdef
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);
-- the SECURITY DEFINER functions, and who may call them
SELECT p.oid::regprocedure AS definer,
       has_function_privilege('aloro_webhook_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('aloro_webhook_reader', p.oid, 'EXECUTE') AS reader,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p
 WHERE p.pronamespace = 'aloro_webhook'::regnamespace AND p.prosecdef
 ORDER BY p.oid::regprocedure::text;
-- what PUBLIC may execute
SELECT p.oid::regprocedure AS public_function
  FROM pg_proc p
 WHERE p.pronamespace = 'aloro_webhook'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
-- the extension's own triggers are the only ones on its tables
SELECT t.tgrelid::regclass AS tab, t.tgname, t.tgfoid::regprocedure AS fn
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'aloro_webhook'::regnamespace AND NOT t.tgisinternal
 ORDER BY t.tgrelid::regclass::text, t.tgname;
