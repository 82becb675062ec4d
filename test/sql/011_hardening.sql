--
-- 011_hardening: the extension is never the reason a call cannot end.
-- Columns of real-world types are read by documented rules (or refused by
-- watch(), naming the column); a value no rule can read fails its delivery,
-- which can be redelivered once the data is fixed; a body larger than
-- aloro_webhook.max_payload_size is kept but not sent; COPY loads calls
-- without ending them; a row that moves to another partition stays ended;
-- a call's body is stored once however many webhooks it goes to; URL
-- passwords are kept apart from the URL.
--
\set SHOW_CONTEXT never

UPDATE aloro_webhook.webhooks SET enabled = false;
CREATE SCHEMA hard;
SELECT aloro_webhook.create_webhook('https://hard.example.com/hook', name => 'hard',
                                    assistant_id => 'asst_hard') AS hard \gset

-- (the body's top-level timestamp is the time of queuing when a call has no
-- ended_at: shown masked)
CREATE VIEW hard.sent AS
SELECT d.call_id, d.status,
       CASE WHEN d.body LIKE '%"ended_at":%' THEN d.body
            ELSE regexp_replace(d.body, '^\{"event":"call.ended","timestamp":"[^"]*"',
                                '{"event":"call.ended","timestamp":"(queued)"') END AS body,
       d.last_error, q.delivery_id IS NOT NULL AS queued
  FROM aloro_webhook.deliveries d LEFT JOIN aloro_webhook.queue q ON q.delivery_id = d.id
 WHERE d.webhook_id = :hard;

------------------------------------------------------------------------------
-- Column types, and the rules that read them
------------------------------------------------------------------------------
CREATE TABLE hard.calls (id text PRIMARY KEY, status text, assistant_id text,
                         started_at bigint, ended_at bigint, duration interval,
                         variables json, cost_total money, cost_breakdown text,
                         transcript text);
SELECT aloro_webhook.watch('hard.calls');
-- Unix seconds, an interval, money, and JSON held in json and text columns
INSERT INTO hard.calls VALUES ('h_epoch', 'completed', 'asst_hard', 1710512820, 1710513000,
                               '3 minutes', '{"summary": "ok", "b": 1, "a": 2}', '$0.45',
                               '{"voice": 0.30}', '[{"speaker": "ai", "text": "Hi", "start": 0}]');
SELECT body FROM hard.sent WHERE call_id = 'h_epoch';
-- empty text counts as NULL
INSERT INTO hard.calls (id, status, assistant_id, cost_breakdown, transcript)
VALUES ('h_empty', 'completed', 'asst_hard', '', '   ');
SELECT body FROM hard.sent WHERE call_id = 'h_empty';

-- a time held as text: without a zone it is UTC whoever ends the call
CREATE TABLE hard.text_calls (id text, status text, assistant_id text,
                              started_at text, ended_at varchar(40));
SELECT aloro_webhook.watch('hard.text_calls');
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
INSERT INTO hard.text_calls VALUES ('h_text', 'completed', 'asst_hard',
                                    '2024-03-15 14:27:00', '2024-03-15T16:30:00+02:00');
INSERT INTO hard.text_calls VALUES ('h_text_us', 'completed', 'asst_hard', '03/04/2024 10:00', NULL);
RESET TimeZone;
RESET DateStyle;
SELECT body FROM hard.sent WHERE call_id IN ('h_text', 'h_text_us') ORDER BY call_id;

------------------------------------------------------------------------------
-- Values no rule can read: the call ends, its delivery fails and says why
------------------------------------------------------------------------------
-- \u0000 in json: jsonb (and text) cannot hold it
INSERT INTO hard.calls (id, status, assistant_id, variables)
VALUES ('h_nul', 'completed', 'asst_hard', '{"summary": "a\u0000b"}');
SELECT status, body IS NULL AS no_body, queued, last_error FROM hard.sent WHERE call_id = 'h_nul';
-- text that holds no time
INSERT INTO hard.text_calls VALUES ('h_badtime', 'completed', 'asst_hard', 'soon', NULL);
SELECT status, body IS NULL AS no_body, queued, last_error FROM hard.sent WHERE call_id = 'h_badtime';
-- the calls ended all the same, once
SELECT call_id, source FROM aloro_webhook.ended_calls WHERE call_id IN ('h_nul', 'h_badtime') ORDER BY 1;
-- a redelivery before the data is fixed is refused, saying why
SELECT aloro_webhook.redeliver(d.id) FROM aloro_webhook.deliveries d
 WHERE d.call_id = 'h_nul' AND d.webhook_id = :hard;
-- fixed, it is built now (stamped with the time the call ended) and queued
UPDATE hard.calls SET variables = '{"summary": "ab"}' WHERE id = 'h_nul';
SELECT aloro_webhook.redeliver(d.id) = d.id AS redelivered FROM aloro_webhook.deliveries d
 WHERE d.call_id = 'h_nul' AND d.webhook_id = :hard;
SELECT d.status, d.body = aloro_webhook.call_payload('h_nul') AS body_is_the_call_now
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'h_nul' AND d.webhook_id = :hard;
-- replay() builds them too, leaving those that still cannot be built
UPDATE hard.text_calls SET started_at = '2024-03-15 14:27:00Z' WHERE id = 'h_badtime';
SELECT aloro_webhook.replay(:hard, now() - interval '1 hour') AS replayed;
SELECT status, queued, body LIKE '%"started_at":"2024-03-15T14:27:00Z"%' AS built
  FROM hard.sent WHERE call_id = 'h_badtime';

-- watch() refuses a column whose type no rule reads, naming it and what it may be
CREATE TABLE hard.bad_time (id text, status text, started_at boolean);
SELECT aloro_webhook.watch('hard.bad_time');
CREATE TABLE hard.bad_json (id text, status text, variables integer[]);
SELECT aloro_webhook.watch('hard.bad_json');
CREATE TABLE hard.bad_cost (id text, status text, cost_total interval);
SELECT aloro_webhook.watch('hard.bad_cost');
-- (domains read as their base type)
CREATE DOMAIN hard.epoch AS bigint;
CREATE TABLE hard.domains (id text, status text, assistant_id text, ended_at hard.epoch);
SELECT aloro_webhook.watch('hard.domains');
INSERT INTO hard.domains VALUES ('h_domain', 'completed', 'asst_hard', 1710513000);
SELECT body FROM hard.sent WHERE call_id = 'h_domain';

------------------------------------------------------------------------------
-- A body larger than aloro_webhook.max_payload_size (1MB here): kept, not sent
------------------------------------------------------------------------------
SHOW aloro_webhook.max_payload_size;
INSERT INTO aloro_webhook.calls (id, status, assistant_id, transcript)
SELECT 'h_big', 'completed', 'asst_hard',
       jsonb_agg(jsonb_build_object('speaker', 'ai', 'text', repeat('x', 1000), 'start', g))
  FROM generate_series(1, 1100) g;
SELECT status, queued, octet_length(body) > 1024 * 1024 AS body_kept, last_error
  FROM hard.sent WHERE call_id = 'h_big';

------------------------------------------------------------------------------
-- COPY loads calls as they are: it ends none (a restore, a backfill)
------------------------------------------------------------------------------
COPY hard.calls (id, status, assistant_id) FROM stdin;
h_copy_1	completed	asst_hard
h_copy_2	missed	asst_hard
\.
SELECT count(*) AS queued_by_copy FROM aloro_webhook.deliveries WHERE call_id LIKE 'h_copy%';
SELECT count(*) AS ended_by_copy FROM aloro_webhook.ended_calls WHERE call_id LIKE 'h_copy%';
-- unless the session asks for it
SET aloro_webhook.copy_ends_calls = on;
COPY hard.calls (id, status, assistant_id) FROM stdin;
h_copy_3	completed	asst_hard
\.
RESET aloro_webhook.copy_ends_calls;
SELECT call_id, status FROM hard.sent WHERE call_id LIKE 'h_copy%';

------------------------------------------------------------------------------
-- A row that moves to another partition is the same call: it stays ended
------------------------------------------------------------------------------
CREATE TABLE hard.pcalls (id text, status text, assistant_id text, ended_at timestamptz NOT NULL)
  PARTITION BY RANGE (ended_at);
CREATE TABLE hard.pcalls_2024 PARTITION OF hard.pcalls
  FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00');
CREATE TABLE hard.pcalls_2025 PARTITION OF hard.pcalls
  FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2026-01-01 00:00+00');
SELECT aloro_webhook.watch('hard.pcalls');
INSERT INTO hard.pcalls VALUES ('h_part', 'completed', 'asst_hard', '2024-12-31 23:00+00');
-- recorded under the watched table, not its partition
SELECT source FROM aloro_webhook.ended_calls WHERE call_id = 'h_part';
SELECT aloro_webhook.create_webhook('https://hard.example.com/later', name => 'hard_later',
                                    assistant_id => 'asst_hard') AS later \gset
-- corrected ended_at: the row moves to the 2025 partition
UPDATE hard.pcalls SET ended_at = '2025-01-01 00:30+00' WHERE id = 'h_part';
SELECT tableoid::regclass AS now_in FROM hard.pcalls WHERE id = 'h_part';
SELECT count(*) AS still_ended FROM aloro_webhook.ended_calls WHERE call_id = 'h_part';
SELECT count(*) AS for_the_later_webhook FROM aloro_webhook.deliveries
 WHERE call_id = 'h_part' AND webhook_id = :later;
-- a real DELETE still forgets it; TRUNCATE of the table too
DELETE FROM hard.pcalls WHERE id = 'h_part';
SELECT count(*) AS ended_after_delete FROM aloro_webhook.ended_calls WHERE call_id = 'h_part';
INSERT INTO hard.pcalls VALUES ('h_part2', 'completed', 'asst_hard', '2024-06-01');
TRUNCATE hard.pcalls;
SELECT count(*) AS ended_after_truncate FROM aloro_webhook.ended_calls WHERE call_id = 'h_part2';
DELETE FROM aloro_webhook.webhooks WHERE id = :later;

------------------------------------------------------------------------------
-- One call, a hundred webhooks: its body is stored once per variant
------------------------------------------------------------------------------
SELECT count(aloro_webhook.create_webhook('https://hard.example.com/fan/' || g,
                                          assistant_id => 'asst_fan',
                                          include_recording => g % 2 = 0))
  FROM generate_series(1, 100) g;
INSERT INTO aloro_webhook.calls (id, status, assistant_id, recording_url, transcript)
SELECT 'h_fan', 'completed', 'asst_fan', 'https://rec.example/h_fan.mp3',
       jsonb_agg(jsonb_build_object('speaker', 'customer', 'text', 'word ' || g, 'start', g))
  FROM generate_series(1, 2000) g;
SELECT count(*) AS deliveries, count(DISTINCT d.payload_id) AS bodies_stored
  FROM aloro_webhook.delivery_log d WHERE d.call_id = 'h_fan';
SELECT count(*) AS payload_rows FROM aloro_webhook.payloads WHERE call_id = 'h_fan';
-- and each delivery reads back its own variant's bytes
SELECT bool_and(d.body = aloro_webhook.call_payload('h_fan', w.include_recording)) AS bodies_match
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'h_fan';
DELETE FROM aloro_webhook.webhooks WHERE assistant_id = 'asst_fan';

------------------------------------------------------------------------------
-- A password in a URL: kept apart, shown as ***, readable by admins only
------------------------------------------------------------------------------
SELECT aloro_webhook.create_webhook('https://crm-user:s3cr%40t@crm.example.com/hook?x=1',
                                    name => 'with_password') AS pw \gset
SELECT url, url_password FROM aloro_webhook.webhooks WHERE id = :pw;
-- updating other columns keeps it; a URL without one clears it
UPDATE aloro_webhook.webhooks SET name = 'with_password_2' WHERE id = :pw;
SELECT url, url_password FROM aloro_webhook.webhooks WHERE id = :pw;
UPDATE aloro_webhook.webhooks SET url = 'https://crm-user:n3w@crm.example.com/hook2' WHERE id = :pw;
SELECT url, url_password FROM aloro_webhook.webhooks WHERE id = :pw;
UPDATE aloro_webhook.webhooks SET url = 'https://crm.example.com/hook3' WHERE id = :pw;
SELECT url, url_password FROM aloro_webhook.webhooks WHERE id = :pw;
UPDATE aloro_webhook.webhooks SET url = 'https://crm-user:again@crm.example.com/hook' WHERE id = :pw;
CREATE ROLE regress_aw_hard_reader IN ROLE aloro_webhook_reader;
SET ROLE regress_aw_hard_reader;
SELECT name, url FROM aloro_webhook.webhooks WHERE id = :pw;
SELECT url_password FROM aloro_webhook.webhooks WHERE id = :pw;
RESET ROLE;
DROP ROLE regress_aw_hard_reader;
DELETE FROM aloro_webhook.webhooks WHERE id = :pw;
