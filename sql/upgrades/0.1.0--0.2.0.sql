/*
 * upgrades/0.1.0--0.2.0.sql — what moves a database's state from 0.1.0 to
 * 0.2.0: the changes to existing tables, and the rows that move between
 * them.  The Makefile builds aloro_webhook--0.1.0--0.2.0.sql from the part
 * above the line "@objects", then every file of sql/ as it defines 0.2.0
 * (tables that 0.1.0 did not have are created there, every function, view,
 * trigger and grant is replaced), then the part below it.  Never edited
 * once 0.2.0 is released.
 */

------------------------------------------------------------------------------
-- 0.1.0 granted aloro_webhook_admin ALL on every table, TRIGGER included, and
-- a trigger on one of the extension's tables runs its code with the owner's
-- (a superuser's) rights.  The grants are redone (roles.sql); triggers that
-- someone added through that grant would keep running as the owner: drop
-- them, saying so.
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

-- NULLs in webhooks are refused by name in C now (_check_webhook), for every
-- NOT NULL column
DROP TRIGGER aloro_webhook_not_null ON aloro_webhook.webhooks;
DROP FUNCTION aloro_webhook._webhook_not_null();

-- the columns 0.2.0 adds to webhooks, in the order configuration.sql gives them
ALTER TABLE aloro_webhook.webhooks
	ADD COLUMN url_password text,
	ADD COLUMN signature_scheme text NOT NULL DEFAULT 'aloro',
	ADD COLUMN disabled_reason text,
	ADD COLUMN disabled_at timestamptz,
	ADD COLUMN previous_secret text,
	ADD COLUMN previous_secret_until timestamptz,
	ADD COLUMN headers jsonb NOT NULL DEFAULT '{}',
	ADD COLUMN rate_limit integer,
	ADD COLUMN filter jsonpath;

-- the wide deliveries table becomes delivery_log (its bodies go to payloads,
-- its pending rows to queue, below); deliveries is a view of the three
DROP TRIGGER aloro_webhook_wake ON aloro_webhook.deliveries;
DROP INDEX aloro_webhook.deliveries_due;
DROP INDEX aloro_webhook.deliveries_claimed;
DROP INDEX aloro_webhook.deliveries_by_call;
DROP INDEX aloro_webhook.deliveries_by_webhook;
DROP INDEX aloro_webhook.deliveries_once;
ALTER TABLE aloro_webhook.deliveries RENAME TO delivery_log;
ALTER SEQUENCE aloro_webhook.deliveries_id_seq RENAME TO delivery_log_id_seq;
ALTER TABLE aloro_webhook.delivery_log ADD COLUMN payload_id bigint;

-- @objects

------------------------------------------------------------------------------
-- The rows that move
------------------------------------------------------------------------------

-- passwords already in URLs move out of them (_check_webhook)
UPDATE aloro_webhook.webhooks SET url = url;

-- the bodies: one payload per delivery that was queued under 0.1.0
INSERT INTO aloro_webhook.payloads (id, call_id, body, bytes, created_at)
SELECT d.id, d.call_id, d.body, pg_catalog.octet_length(d.body), d.created_at
  FROM aloro_webhook.delivery_log d;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('aloro_webhook.payloads', 'id'),
						 GREATEST((SELECT pg_catalog.max(id) FROM aloro_webhook.payloads), 1));
UPDATE aloro_webhook.delivery_log SET payload_id = id;

-- what was pending under 0.1.0, in the queue; what was in flight then was
-- cut off (no worker has token 0), as at a worker start
INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes, claimed_by, claimed_at)
SELECT d.id, d.webhook_id, d.next_attempt_at, p.bytes,
	   CASE WHEN d.claimed_at IS NOT NULL THEN 0 END, d.claimed_at
  FROM aloro_webhook.delivery_log d JOIN aloro_webhook.payloads p ON p.id = d.payload_id
 WHERE d.status = 'pending';
SELECT aloro_webhook._release_claims('{}');

-- delivery_log as queue.sql defines it: no body, no claim, no CHECK
-- constraints (the deliveries view's trigger keeps the rules)
ALTER TABLE aloro_webhook.delivery_log DROP COLUMN body, DROP COLUMN claimed_at;
ALTER TABLE aloro_webhook.delivery_log
	DROP CONSTRAINT deliveries_status_check,
	DROP CONSTRAINT deliveries_attempts_check,
	DROP CONSTRAINT deliveries_pending_due,
	DROP CONSTRAINT deliveries_budget;
ALTER TABLE aloro_webhook.delivery_log ALTER COLUMN next_attempt_at DROP DEFAULT;
ALTER TABLE aloro_webhook.delivery_log SET (fillfactor = 80);

-- every call that ended is recorded under the watched table itself, not the
-- partition its row was in
UPDATE aloro_webhook.ended_calls e
   SET source = pg_catalog.pg_partition_root(e.source)
 WHERE pg_catalog.pg_partition_root(e.source) IS DISTINCT FROM e.source
   AND pg_catalog.pg_partition_root(e.source) IS NOT NULL;

-- the call-ended trigger without 0.1.0's WHEN clause, on every table watch()
-- attached it to (enqueue.sql replaced the default table's)
DO $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgrelid::regclass AS rel
		  FROM pg_catalog.pg_trigger tg
		 WHERE tg.tgname = 'aloro_webhook_call_ended' AND tg.tgparentid = 0
		   AND tg.tgfoid = 'aloro_webhook._call_ended()'::pg_catalog.regprocedure
		   AND tg.tgrelid <> 'aloro_webhook.calls'::pg_catalog.regclass
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER aloro_webhook_call_ended ON %s', t.rel);
		EXECUTE pg_catalog.format('CREATE TRIGGER aloro_webhook_call_ended '
								  'AFTER INSERT OR UPDATE ON %s FOR EACH ROW '
								  'EXECUTE FUNCTION aloro_webhook._call_ended()', t.rel);
	END LOOP;
END
$$;

-- PostgreSQL 18 catalogs NOT NULL constraints, named after their table: the
-- renamed table's take the names a fresh install gives them
DO $$
DECLARE
	c record;
BEGIN
	FOR c IN
		SELECT co.conname FROM pg_catalog.pg_constraint co
		 WHERE co.conrelid = 'aloro_webhook.delivery_log'::pg_catalog.regclass AND co.contype = 'n'
		   AND co.conname LIKE 'deliveries\_%\_not\_null'
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE aloro_webhook.delivery_log RENAME CONSTRAINT %I TO %I',
								  c.conname, 'delivery_log' || pg_catalog.substr(c.conname, 11));
	END LOOP;
END
$$;
