--
-- 003_enqueue: when deliveries are queued (CONTRACT.md "When deliveries are
-- queued").  A call ends when a row is inserted with a terminal status, or
-- updated from a live (or NULL; see 004_watch) status to a terminal one; one
-- delivery per enabled webhook whose filters match; once; never on rollback.
--
-- The worker runs in another database, so the queue stays exactly as the
-- trigger leaves it.
--
\set SHOW_CONTEXT never

-- the webhooks of 002_payload stay out of the way
UPDATE aloro_webhook.webhooks SET enabled = false;

-- webhooks, with create_webhook() and with plain SQL
SELECT aloro_webhook.create_webhook('https://receiver.example/e_all', name => 'e_all') IS NOT NULL AS e_all;
SELECT aloro_webhook.create_webhook('https://receiver.example/e_asst', name => 'e_asst',
                                    assistant_id => 'asst_a') IS NOT NULL AS e_asst;
SELECT aloro_webhook.create_webhook('https://receiver.example/e_camp', name => 'e_camp',
                                    campaign_id => 'camp_a') IS NOT NULL AS e_camp;
INSERT INTO aloro_webhook.webhooks (name, url, assistant_id, campaign_id)
VALUES ('e_both', 'https://receiver.example/e_both', 'asst_a', 'camp_a');
INSERT INTO aloro_webhook.webhooks (name, url, completed_only)
VALUES ('e_done', 'https://receiver.example/e_done', true);
INSERT INTO aloro_webhook.webhooks (name, url, enabled)
VALUES ('e_off', 'https://receiver.example/e_off', false);
SELECT name, completed_only, include_recording, enabled, assistant_id, campaign_id
  FROM aloro_webhook.webhooks WHERE name LIKE 'e\_%' ORDER BY name;

-- what is queued for this file's calls, one line per call
CREATE TEMP VIEW queued AS
SELECT d.call_id, string_agg(w.name, ', ' ORDER BY w.name) AS webhooks, count(*) AS n
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id LIKE 'e\_%' AND NOT d.test
 GROUP BY d.call_id;

------------------------------------------------------------------------------
-- Live statuses queue nothing, nor do updates between them.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status) VALUES
  ('e_live_q', 'queued'), ('e_live_r', 'ringing'), ('e_live_p', 'in-progress');
UPDATE aloro_webhook.calls SET status = 'ringing' WHERE id = 'e_live_q';
UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id IN ('e_live_q', 'e_live_r');
UPDATE aloro_webhook.calls SET variables = '{"x": 1}' WHERE id = 'e_live_p';
SELECT count(*) AS queued_for_live_calls FROM queued;

------------------------------------------------------------------------------
-- live -> terminal queues, in the same transaction, one delivery per matching
-- webhook.
------------------------------------------------------------------------------
BEGIN;
UPDATE aloro_webhook.calls SET status = 'completed', ended_at = '2024-03-15 15:00:00+00'
 WHERE id = 'e_live_p';
SELECT * FROM queued ORDER BY call_id;
COMMIT;
-- the queued rows: a pending call.ended, not a test, nothing tried yet, due
-- at once (the first retry_schedule entry is 0)
SELECT w.name, d.event, d.test, d.status, d.attempts, d.last_http_status, d.last_error,
       d.finished_at IS NULL AS not_finished,
       d.next_attempt_at <= now() AS due_now,
       d.created_at <= now() AS created_ok
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'e_live_p' ORDER BY w.name;
CREATE TEMP TABLE e_live_p_bodies AS
SELECT id, body FROM aloro_webhook.deliveries WHERE call_id = 'e_live_p';

------------------------------------------------------------------------------
-- A call ends once: later updates of an ended call queue nothing -- another
-- terminal status, other columns, and terminal -> live -> terminal, even for
-- a webhook created after the call ended -- and the bodies already queued
-- stay as they were.
------------------------------------------------------------------------------
UPDATE aloro_webhook.calls SET status = 'failed' WHERE id = 'e_live_p';
UPDATE aloro_webhook.calls SET variables = '{"changed": true}' WHERE id = 'e_live_p';
SELECT aloro_webhook.create_webhook('https://receiver.example/e_late', name => 'e_late') IS NOT NULL AS e_late;
UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id = 'e_live_p';
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_live_p';
UPDATE aloro_webhook.calls SET status = 'ringing' WHERE id = 'e_live_p';
UPDATE aloro_webhook.calls SET status = 'missed' WHERE id = 'e_live_p';
SELECT * FROM queued WHERE call_id = 'e_live_p';
SELECT count(*) AS bodies_unchanged
  FROM aloro_webhook.deliveries d JOIN e_live_p_bodies b USING (id, body);
UPDATE aloro_webhook.webhooks SET enabled = false WHERE name = 'e_late';

------------------------------------------------------------------------------
-- An insert with a terminal status queues.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_direct', 'missed');
SELECT * FROM queued WHERE call_id = 'e_direct';

------------------------------------------------------------------------------
-- Rolled-back transactions queue nothing.
------------------------------------------------------------------------------
BEGIN;
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_rb1', 'completed');
SELECT * FROM queued WHERE call_id = 'e_rb1';
ROLLBACK;
SELECT count(*) AS after_rollback FROM queued WHERE call_id = 'e_rb1';

INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_rb2', 'ringing');
BEGIN;
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_rb2';
ROLLBACK;
SELECT count(*) AS after_rollback FROM queued WHERE call_id = 'e_rb2';

-- a rolled-back savepoint
BEGIN;
SAVEPOINT s;
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_rb2';
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS after_savepoint_rollback FROM queued WHERE call_id = 'e_rb2';

-- a transaction that fails after the call ended
BEGIN;
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_rb3', 'completed');
SELECT 1 / 0;
COMMIT;
SELECT count(*) AS after_failed_transaction FROM queued WHERE call_id = 'e_rb3';

-- the rollbacks left e_rb2 live: ending it now queues, once
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_rb2';
SELECT * FROM queued WHERE call_id = 'e_rb2';

------------------------------------------------------------------------------
-- Several calls in one statement; several updates in one transaction.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status) VALUES
  ('e_multi1', 'ringing'), ('e_multi2', 'in-progress'), ('e_multi3', 'completed');
UPDATE aloro_webhook.calls SET status = 'busy' WHERE id IN ('e_multi1', 'e_multi2', 'e_multi3');
SELECT * FROM queued WHERE call_id LIKE 'e\_multi%' ORDER BY call_id;

-- insert live, end as completed, then change again, all in one transaction:
-- one delivery per webhook, carrying the row as it was when the call ended
BEGIN;
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_tx', 'ringing');
UPDATE aloro_webhook.calls SET status = 'completed', variables = '{"v": 1}' WHERE id = 'e_tx';
UPDATE aloro_webhook.calls SET status = 'failed', variables = '{"v": 2}' WHERE id = 'e_tx';
COMMIT;
SELECT * FROM queued WHERE call_id = 'e_tx';
SELECT d.body::jsonb #>> '{data,call,status}' AS status_sent,
       d.body::jsonb #>> '{data,variables,v}' AS v_sent
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'e_tx';

------------------------------------------------------------------------------
-- Filters: assistant_id and campaign_id (NULL matches all, else exact
-- match), completed_only.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, assistant_id, campaign_id) VALUES
  ('e_f_none',  'completed', NULL,     NULL),
  ('e_f_asst',  'completed', 'asst_a', NULL),
  ('e_f_camp',  'completed', NULL,     'camp_a'),
  ('e_f_both',  'completed', 'asst_a', 'camp_a'),
  ('e_f_mixed', 'completed', 'asst_a', 'camp_b'),
  ('e_f_other', 'completed', 'asst_b', 'camp_b'),
  ('e_f_case',  'completed', 'ASST_A', 'CAMP_A');
SELECT * FROM queued WHERE call_id LIKE 'e\_f\_%' ORDER BY call_id;

-- completed_only: only the status completed, not the other terminal ones
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES
  ('e_s_completed', 'completed', 'asst_a'),
  ('e_s_missed',    'missed',    'asst_a'),
  ('e_s_busy',      'busy',      'asst_a'),
  ('e_s_voicemail', 'voicemail', 'asst_a'),
  ('e_s_failed',    'failed',    'asst_a');
SELECT * FROM queued WHERE call_id LIKE 'e\_s\_%' ORDER BY call_id;

------------------------------------------------------------------------------
-- Disabled webhooks queue nothing; re-enabling does not queue the calls that
-- ended while disabled.
------------------------------------------------------------------------------
UPDATE aloro_webhook.webhooks SET enabled = false WHERE name = 'e_all';
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_while_off', 'completed');
UPDATE aloro_webhook.webhooks SET enabled = true WHERE name = 'e_all';
SELECT * FROM queued WHERE call_id = 'e_while_off';
-- nor does a later status change of that call (it ended once already)
UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id = 'e_while_off';
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_while_off';
SELECT * FROM queued WHERE call_id = 'e_while_off';
SELECT count(*) AS queued_for_e_off
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE w.name = 'e_off';
-- the disabled 002 webhooks and e_late got nothing from this file either
SELECT count(*) AS queued_for_disabled
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id LIKE 'e\_%' AND w.name IN ('payload_all', 'payload_norec', 'e_late');

------------------------------------------------------------------------------
-- A call no webhook wants is still marked ended, and nothing else is
-- written for it: it ended once, whatever its row does later.  Likewise a
-- call whose only webhook's filter refuses the body: no body is kept.
------------------------------------------------------------------------------
CREATE TEMP TABLE enabled_before AS SELECT id FROM aloro_webhook.webhooks WHERE enabled;
UPDATE aloro_webhook.webhooks SET enabled = false WHERE id IN (SELECT id FROM enabled_before);
SELECT aloro_webhook.create_webhook('https://receiver.example/e_refuse', name => 'e_refuse',
		assistant_id => 'asst_refuse') IS NOT NULL AS e_refuse;
UPDATE aloro_webhook.webhooks SET filter = '$.status == "no-such-status"' WHERE name = 'e_refuse';
INSERT INTO aloro_webhook.calls (id, status) VALUES ('e_nomatch', 'completed');
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('e_refused', 'completed', 'asst_refuse');
SELECT e.call_id, count(p.id) AS bodies, count(d.id) AS queued
  FROM aloro_webhook.ended_calls e
  LEFT JOIN aloro_webhook.payloads p ON p.call_id = e.call_id
  LEFT JOIN aloro_webhook.deliveries d ON d.call_id = e.call_id
 WHERE e.call_id IN ('e_nomatch', 'e_refused') GROUP BY 1 ORDER BY 1;
UPDATE aloro_webhook.webhooks SET enabled = true WHERE id IN (SELECT id FROM enabled_before);
UPDATE aloro_webhook.webhooks SET enabled = false WHERE name = 'e_refuse';
UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id = 'e_nomatch';
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'e_nomatch';
SELECT count(*) AS nomatch_queued_later FROM aloro_webhook.deliveries WHERE call_id = 'e_nomatch';

------------------------------------------------------------------------------
-- One delivery per (webhook, call, event), and the database keeps it so.
------------------------------------------------------------------------------
SELECT count(*) AS duplicates
  FROM (SELECT webhook_id, call_id, event FROM aloro_webhook.deliveries WHERE NOT test
         GROUP BY 1, 2, 3 HAVING count(*) > 1) AS dup;
-- (terse: the DETAIL would print the webhook's id)
\set VERBOSITY terse
INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, event, body)
SELECT webhook_id, call_id, event, body FROM aloro_webhook.deliveries WHERE call_id = 'e_direct';
\set VERBOSITY default

-- every call of this file, and what it queued
SELECT * FROM queued ORDER BY call_id;

------------------------------------------------------------------------------
-- A body carried by one delivery is stored compressed, from a session's first
-- call on (a new session here), and reads back byte for byte.
------------------------------------------------------------------------------
\c
BEGIN;
DELETE FROM aloro_webhook.webhooks;
SELECT aloro_webhook.create_webhook('https://receiver.example/e_lz4', name => 'e_lz4') IS NOT NULL AS e_lz4;
INSERT INTO aloro_webhook.calls (id, status, transcript)
SELECT 'e_lz4', 'completed', jsonb_agg(jsonb_build_object('speaker', 'ai', 'text', 'Sentence ' || g || ' about the order.'))
  FROM generate_series(1, 10) g;  -- well short of the 2 kB row at which PostgreSQL compresses itself
SELECT pg_column_compression(l.body) AS compression, l.bytes < 1500 AS short, pg_column_size(l.body) < l.bytes / 2 AS smaller,
       octet_length(l.body) = l.bytes AS bytes_match, d.body::jsonb -> 'data' -> 'call' ->> 'id' AS call_id
  FROM aloro_webhook.delivery_log l JOIN aloro_webhook.deliveries d ON d.id = l.id
 WHERE l.call_id = 'e_lz4';
ROLLBACK;

-- So is one that several deliveries carry (stored once, in payloads), and each
-- of two variants (with and without the recording) that one delivery carries.
BEGIN;
DELETE FROM aloro_webhook.webhooks;
SELECT count(aloro_webhook.create_webhook('https://receiver.example/e_lz4_' || g, name => 'e_lz4_' || g,
                                          include_recording => g <> 3)) AS e_lz4_hooks
  FROM generate_series(1, 3) g;
INSERT INTO aloro_webhook.calls (id, status, transcript, recording_url)
SELECT 'e_lz4_many', 'completed', jsonb_agg(jsonb_build_object('speaker', 'ai', 'text', 'Sentence ' || g || ' about the order.')),
       'https://recordings.example/e_lz4_many.mp3'
  FROM generate_series(1, 10) g;
SELECT w.name, l.payload_id IS NOT NULL AS shared,
       pg_column_compression(coalesce(l.body, p.body)) AS compression,
       pg_column_size(coalesce(l.body, p.body)) < l.bytes / 2 AS smaller,
       octet_length(coalesce(l.body, p.body)) = l.bytes AS bytes_match,
       d.body = aloro_webhook.call_payload('e_lz4_many', w.include_recording) AS body_match
  FROM aloro_webhook.delivery_log l
  JOIN aloro_webhook.webhooks w ON w.id = l.webhook_id
  JOIN aloro_webhook.deliveries d ON d.id = l.id
  LEFT JOIN aloro_webhook.payloads p ON p.id = l.payload_id
 WHERE l.call_id = 'e_lz4_many'
 ORDER BY w.name;
ROLLBACK;
