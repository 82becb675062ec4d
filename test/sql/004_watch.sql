--
-- 004_watch: watch(regclass) attaches the call-ended trigger to a platform's
-- own calls table; columns are read by name, missing ones count as NULL.
-- Also: NULL -> terminal ends a call; unwatch(); watch() refusals.
--
\set SHOW_CONTEXT never

UPDATE aloro_webhook.webhooks SET enabled = false;
SELECT aloro_webhook.create_webhook('https://receiver.example/w_all', name => 'w_all') IS NOT NULL AS w_all;
SELECT aloro_webhook.create_webhook('https://receiver.example/w_asst', name => 'w_asst',
                                    assistant_id => 'asst_p') IS NOT NULL AS w_asst;
SELECT aloro_webhook.create_webhook('https://receiver.example/w_done', name => 'w_done',
                                    completed_only => true, include_recording => false) IS NOT NULL AS w_done;

CREATE TEMP VIEW queued AS
SELECT d.call_id, string_agg(w.name, ', ' ORDER BY w.name) AS webhooks, count(*) AS n
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE w.name LIKE 'w\_%' AND NOT d.test
 GROUP BY d.call_id;

------------------------------------------------------------------------------
-- A platform's table: id bigint, status varchar and nullable, variables json
-- (not jsonb), a column the contract does not know, and no direction,
-- duration, campaign, transcript, recording_duration or cost columns.
------------------------------------------------------------------------------
CREATE SCHEMA platform;
CREATE TABLE platform.calls (
	id				bigint PRIMARY KEY,
	status			varchar(20),
	phone			text,
	started_at		timestamptz,
	ended_at		timestamptz,
	assistant_id	text,
	variables		json,
	recording_url	text,
	customer_tier	integer
);
SELECT aloro_webhook.watch('platform.calls');

-- live: nothing
INSERT INTO platform.calls (id, status, phone, started_at, assistant_id, variables, customer_tier)
VALUES (1, 'in-progress', '+15550002222', '2024-03-15 14:00:00+00', 'asst_p',
        '{"zeta": 1, "a": [1.0, 2.50]}', 3);
SELECT count(*) AS queued FROM queued;

-- live -> terminal: queued for every matching webhook
UPDATE platform.calls
   SET status = 'completed', ended_at = '2024-03-15 14:03:20+00',
       recording_url = 'https://r.example/1.mp3'
 WHERE id = 1;
SELECT * FROM queued ORDER BY call_id;

-- The body: id as text, duration from started_at/ended_at (no duration
-- column), the json variables in jsonb's key order, missing columns left out.
\pset format unaligned
SELECT d.body FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = '1' AND w.name = 'w_all';
\pset format aligned
SELECT w.name,
       d.body = CASE WHEN w.include_recording
         THEN '{"event":"call.ended","timestamp":"2024-03-15T14:03:20Z","data":{"call":{"id":"1","phone":"+15550002222","status":"completed","duration":200,"started_at":"2024-03-15T14:00:00Z","ended_at":"2024-03-15T14:03:20Z"},"assistant":{"id":"asst_p"},"variables":{"status":true,"a":[1,2.5],"zeta":1},"recording":{"url":"https://r.example/1.mp3"}}}'
         ELSE '{"event":"call.ended","timestamp":"2024-03-15T14:03:20Z","data":{"call":{"id":"1","phone":"+15550002222","status":"completed","duration":200,"started_at":"2024-03-15T14:00:00Z","ended_at":"2024-03-15T14:03:20Z"},"assistant":{"id":"asst_p"},"variables":{"status":true,"a":[1,2.5],"zeta":1}}}'
       END AS body_ok,
       d.body = aloro_webhook.call_payload('1', w.include_recording) AS equals_call_payload
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = '1' ORDER BY w.name;

-- later updates of the ended call queue nothing
UPDATE platform.calls SET status = 'in-progress' WHERE id = 1;
UPDATE platform.calls SET status = 'failed' WHERE id = 1;
SELECT * FROM queued WHERE call_id = '1';

-- NULL -> terminal ends a call; NULL -> NULL and NULL -> live do not
INSERT INTO platform.calls (id, status) VALUES (2, NULL), (3, NULL);
UPDATE platform.calls SET phone = '+1' WHERE id = 2;
UPDATE platform.calls SET status = 'ringing' WHERE id = 3;
SELECT count(*) AS queued_for_2_and_3 FROM queued WHERE call_id IN ('2', '3');
UPDATE platform.calls SET status = 'missed' WHERE id = 2;
SELECT * FROM queued WHERE call_id = '2';

-- insert with a terminal status
INSERT INTO platform.calls (id, status, assistant_id) VALUES (4, 'completed', 'asst_p');
SELECT * FROM queued WHERE call_id = '4';

-- rollback queues nothing here either
BEGIN;
INSERT INTO platform.calls (id, status) VALUES (5, 'completed');
ROLLBACK;
SELECT count(*) AS queued_for_5 FROM queued WHERE call_id = '5';

------------------------------------------------------------------------------
-- Watching twice: a NOTICE, and still one trigger (one delivery per webhook).
------------------------------------------------------------------------------
SELECT aloro_webhook.watch('platform.calls');
SELECT aloro_webhook.watch('aloro_webhook.calls');
SELECT count(*) AS triggers_on_platform_calls
  FROM pg_trigger WHERE tgrelid = 'platform.calls'::regclass AND NOT tgisinternal;
INSERT INTO platform.calls (id, status) VALUES (6, 'busy');
SELECT * FROM queued WHERE call_id = '6';

------------------------------------------------------------------------------
-- unwatch(): the table's calls no longer queue; watching again resumes.
------------------------------------------------------------------------------
SELECT aloro_webhook.unwatch('platform.calls');
SELECT count(*) AS triggers_on_platform_calls
  FROM pg_trigger WHERE tgrelid = 'platform.calls'::regclass AND NOT tgisinternal;
INSERT INTO platform.calls (id, status) VALUES (7, 'completed');
INSERT INTO platform.calls (id, status) VALUES (8, 'ringing');
SELECT count(*) AS queued_for_7 FROM queued WHERE call_id = '7';
SELECT aloro_webhook.watch('platform.calls');
UPDATE platform.calls SET status = 'completed' WHERE id = 8;
SELECT * FROM queued WHERE call_id IN ('7', '8') ORDER BY call_id;
-- the default table is still watched
INSERT INTO aloro_webhook.calls (id, status) VALUES ('w_default', 'missed');
SELECT * FROM queued WHERE call_id = 'w_default';

------------------------------------------------------------------------------
-- Another table: quoted name, text id, an enum status, json transcript,
-- campaign columns.
------------------------------------------------------------------------------
CREATE TYPE platform.call_state AS ENUM
	('queued', 'ringing', 'in-progress', 'completed', 'missed', 'busy', 'voicemail', 'failed');
CREATE TABLE platform."Call Log" (
	id				text PRIMARY KEY,
	status			platform.call_state NOT NULL,
	ended_at		timestamptz,
	campaign_id		text,
	campaign_name	text,
	transcript		json
);
SELECT aloro_webhook.watch('platform."Call Log"');
INSERT INTO platform."Call Log" VALUES
  ('log_1', 'ringing', NULL, 'camp_p', NULL, NULL);
UPDATE platform."Call Log"
   SET status = 'completed', ended_at = '2024-03-15 16:00:00+00',
       transcript = '[{"speaker": "customer", "text": "Bye", "start": 7.9}]'
 WHERE id = 'log_1';
SELECT * FROM queued WHERE call_id = 'log_1';
SELECT w.name,
       d.body = '{"event":"call.ended","timestamp":"2024-03-15T16:00:00Z","data":{"call":{"id":"log_1","status":"completed","ended_at":"2024-03-15T16:00:00Z"},"campaign":{"id":"camp_p"},"variables":{"status":true},"transcript":{"formatted":"Customer: Bye","timestamped":[{"speaker":"customer","text":"Bye","timestamp":"00:07"}]}}}'
         AS body_ok,
       d.body = aloro_webhook.call_payload('log_1', w.include_recording) AS equals_call_payload
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'log_1' ORDER BY w.name;

-- A status column of type char(n): 'completed' is padded to the column
-- width, and PostgreSQL compares char(n) without the padding, so the call
-- ends like any other and the body says "completed".
CREATE TABLE platform.calls_char (id integer PRIMARY KEY, status char(12), ended_at timestamptz);
SELECT aloro_webhook.watch('platform.calls_char');
INSERT INTO platform.calls_char VALUES (900, 'ringing', NULL);
UPDATE platform.calls_char SET status = 'completed', ended_at = '2024-03-15 16:00:00+00' WHERE id = 900;
SELECT * FROM queued WHERE call_id = '900';
SELECT aloro_webhook.call_payload('900')
       = '{"event":"call.ended","timestamp":"2024-03-15T16:00:00Z","data":{"call":{"id":"900","status":"completed","ended_at":"2024-03-15T16:00:00Z"},"variables":{"status":true}}}'
       AS char_status_body_ok;

-- A partitioned table: watched once at the top, its partitions' calls queue.
CREATE TABLE platform.calls_part (id text, status text, region text) PARTITION BY LIST (region);
CREATE TABLE platform.calls_part_eu PARTITION OF platform.calls_part FOR VALUES IN ('eu');
CREATE TABLE platform.calls_part_us PARTITION OF platform.calls_part FOR VALUES IN ('us');
SELECT aloro_webhook.watch('platform.calls_part');
INSERT INTO platform.calls_part VALUES ('part_eu', 'completed', 'eu'), ('part_us', 'ringing', 'us');
UPDATE platform.calls_part SET status = 'voicemail' WHERE id = 'part_us';
SELECT * FROM queued WHERE call_id LIKE 'part\_%' ORDER BY call_id;

------------------------------------------------------------------------------
-- watch() refusals: a table needs id and status; only tables can be watched.
------------------------------------------------------------------------------
CREATE TABLE platform.no_id (call_id text PRIMARY KEY, status text);
SELECT aloro_webhook.watch('platform.no_id');
CREATE TABLE platform.no_status (id text PRIMARY KEY, state text);
SELECT aloro_webhook.watch('platform.no_status');
-- a dropped status column does not count
CREATE TABLE platform.dropped_status (id text PRIMARY KEY, status text);
ALTER TABLE platform.dropped_status DROP COLUMN status;
SELECT aloro_webhook.watch('platform.dropped_status');
CREATE VIEW platform.calls_view AS SELECT * FROM platform.calls;
SELECT aloro_webhook.watch('platform.calls_view');
CREATE SEQUENCE platform.calls_seq;
SELECT aloro_webhook.watch('platform.calls_seq');
SELECT aloro_webhook.watch('platform.no_such_table');
-- none of them got a trigger
SELECT count(*) AS triggers
  FROM pg_trigger
 WHERE tgrelid IN ('platform.no_id'::regclass, 'platform.no_status'::regclass,
                   'platform.dropped_status'::regclass, 'platform.calls_view'::regclass);
