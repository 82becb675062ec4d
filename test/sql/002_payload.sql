--
-- 002_payload: the body bytes (CONTRACT.md "The body").
--
-- Every expected body below was written by hand from the contract and then
-- checked with Node.js: JSON.stringify(JSON.parse(expected)) === expected.
-- Bodies are compared with = against those literals; a few are also shown.
-- Output is unaligned so that long bodies print without padding (and the same
-- way whatever the database encoding).
--
\set SHOW_CONTEXT never
\pset format unaligned

-- Two webhooks, with and without the recording section.
SELECT aloro_webhook.create_webhook('https://receiver.example/all', name => 'payload_all') AS all_id;
SELECT aloro_webhook.create_webhook('https://receiver.example/norec', include_recording => false,
                                    name => 'payload_norec') AS norec_id;

------------------------------------------------------------------------------
-- The contract's documented call, verbatim.
------------------------------------------------------------------------------
\i test/fixtures/example_call.sql

-- one delivery per matching webhook
SELECT w.name, d.event, d.test, d.status
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' ORDER BY w.name;

-- the stored body, shown once
SELECT d.body
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_all';

-- exactly the contract's bytes (copied from CONTRACT.md)
SELECT d.body = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_abc123","phone":"+1234567890","direction":"inbound","status":"completed","duration":180,"started_at":"2024-03-15T14:27:00Z","ended_at":"2024-03-15T14:30:00Z"},"assistant":{"id":"asst_xyz789","name":"Customer Support"},"phone_number":{"id":"pn_456","number":"+0987654321"},"campaign":{"id":"camp_123","name":"March Outreach"},"variables":{"status":true,"summary":"Customer inquired about order status"},"transcript":{"formatted":"AI: Hello! How can I help you today?\nCustomer: I need to check my order status","timestamped":[{"speaker":"ai","text":"Hello! How can I help you today?","timestamp":"00:00"},{"speaker":"customer","text":"I need to check my order status","timestamp":"00:03"}]},"recording":{"url":"https://storage.aloro.ai/recordings/call_abc123.mp3","duration":180},"cost":{"total":0.45,"breakdown":{"voice":0.3,"recording":0.05,"transcription":0.1}}}}'
       AS body_is_contract_bytes,
       octet_length(d.body) AS bytes
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_all';

-- include_recording = false: the same bytes without the recording section
SELECT d.body = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_abc123","phone":"+1234567890","direction":"inbound","status":"completed","duration":180,"started_at":"2024-03-15T14:27:00Z","ended_at":"2024-03-15T14:30:00Z"},"assistant":{"id":"asst_xyz789","name":"Customer Support"},"phone_number":{"id":"pn_456","number":"+0987654321"},"campaign":{"id":"camp_123","name":"March Outreach"},"variables":{"status":true,"summary":"Customer inquired about order status"},"transcript":{"formatted":"AI: Hello! How can I help you today?\nCustomer: I need to check my order status","timestamped":[{"speaker":"ai","text":"Hello! How can I help you today?","timestamp":"00:00"},{"speaker":"customer","text":"I need to check my order status","timestamp":"00:03"}]},"cost":{"total":0.45,"breakdown":{"voice":0.3,"recording":0.05,"transcription":0.1}}}}'
       AS norec_body_is_contract_bytes_without_recording,
       position('"recording":{' IN d.body) = 0 AS no_recording_section
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_norec';

-- call_payload() is the body that call's delivery carries
SELECT aloro_webhook.call_payload('call_abc123') = d.body AS call_payload_is_body
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_all';
SELECT aloro_webhook.call_payload('call_abc123', include_recording => false) = d.body
       AS call_payload_norec_is_body
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_norec';
SELECT aloro_webhook.call_payload('call_abc123', true) = aloro_webhook.call_payload('call_abc123')
       AS include_recording_defaults_to_true;

------------------------------------------------------------------------------
-- NULL keys and empty sections are left out.
------------------------------------------------------------------------------

-- Nothing but id, status and ended_at: no assistant, phone_number, campaign,
-- transcript, recording or cost section; no phone, direction, duration or
-- started_at key; variables still carries status.
INSERT INTO aloro_webhook.calls (id, status, ended_at)
VALUES ('call_min', 'missed', '2024-03-15 14:30:00+00');
SELECT aloro_webhook.call_payload('call_min') AS call_min;
SELECT aloro_webhook.call_payload('call_min')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_min","status":"missed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"status":false}}}'
       AS call_min_ok;

-- Half-filled sections keep only their non-NULL keys; an empty transcript
-- array and an empty variables object add nothing; no campaign, no cost.
-- duration is NULL, so it is the whole seconds from started_at to ended_at
-- (125.75 s -> 125); fractions of ended_at are dropped, not rounded.
INSERT INTO aloro_webhook.calls
       (id, status, started_at, ended_at, assistant_name, phone_number_id,
        variables, transcript, recording_duration)
VALUES ('call_partial', 'completed', '2024-03-15 14:00:00+00', '2024-03-15 14:02:05.75+00',
        'Sales', 'pn_1', '{}', '[]', 30);
SELECT aloro_webhook.call_payload('call_partial') AS call_partial;
SELECT aloro_webhook.call_payload('call_partial')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:02:05Z","data":{"call":{"id":"call_partial","status":"completed","duration":125,"started_at":"2024-03-15T14:00:00Z","ended_at":"2024-03-15T14:02:05Z"},"assistant":{"name":"Sales"},"phone_number":{"id":"pn_1"},"variables":{"status":true},"recording":{"duration":30}}}'
       AS call_partial_ok;
-- without the recording: the section with only a duration goes too
SELECT aloro_webhook.call_payload('call_partial', false)
       = '{"event":"call.ended","timestamp":"2024-03-15T14:02:05Z","data":{"call":{"id":"call_partial","status":"completed","duration":125,"started_at":"2024-03-15T14:00:00Z","ended_at":"2024-03-15T14:02:05Z"},"assistant":{"name":"Sales"},"phone_number":{"id":"pn_1"},"variables":{"status":true}}}'
       AS call_partial_norec_ok;

-- A stored duration wins, even 0 (0 is not NULL); campaign with only an id;
-- recording with only a url; cost with only a total (1.0 -> 1).
INSERT INTO aloro_webhook.calls
       (id, phone, direction, status, duration, ended_at, campaign_id, recording_url, cost_total)
VALUES ('call_sect', '+15550001111', 'outbound', 'voicemail', 0, '2024-03-15 14:30:00+00',
        'camp_9', 'https://r.example/x.mp3', 1.0);
SELECT aloro_webhook.call_payload('call_sect') AS call_sect;
SELECT aloro_webhook.call_payload('call_sect')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_sect","phone":"+15550001111","direction":"outbound","status":"voicemail","duration":0,"ended_at":"2024-03-15T14:30:00Z"},"campaign":{"id":"camp_9"},"variables":{"status":false},"recording":{"url":"https://r.example/x.mp3"},"cost":{"total":1}}}'
       AS call_sect_ok;

-- Cost with only a breakdown, whose keys follow the byte rule: jsonb stores
-- "a", "12", "voice"; JavaScript puts the array index "12" first.
INSERT INTO aloro_webhook.calls (id, status, ended_at, cost_breakdown)
VALUES ('call_cost_keys', 'completed', '2024-03-15 14:30:00+00', '{"voice": 0.30, "12": 1, "a": 2}');
SELECT aloro_webhook.call_payload('call_cost_keys')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_cost_keys","status":"completed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"status":true},"cost":{"breakdown":{"12":1,"a":2,"voice":0.3}}}}'
       AS call_cost_keys_ok;

------------------------------------------------------------------------------
-- Times: UTC, YYYY-MM-DDTHH:MM:SSZ, whatever the session time zone;
-- duration computed across the offsets.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, started_at, ended_at)
VALUES ('call_duration', 'busy', '2024-03-15 15:00:00+02', '2024-03-15 19:31:01+05:30');
SET timezone = 'America/New_York';
SELECT aloro_webhook.call_payload('call_duration') AS call_duration;
SELECT aloro_webhook.call_payload('call_duration')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:01:01Z","data":{"call":{"id":"call_duration","status":"busy","duration":3661,"started_at":"2024-03-15T13:00:00Z","ended_at":"2024-03-15T14:01:01Z"},"variables":{"status":false}}}'
       AS call_duration_ok;
RESET timezone;

-- No ended_at: timestamp is the time of queuing (checked against now() inside
-- the queuing transaction, never printed); no ended_at key; and with no
-- ended_at there is nothing to compute a duration from.
BEGIN;
INSERT INTO aloro_webhook.calls (id, status, started_at)
VALUES ('call_no_end', 'failed', '2024-03-15 14:00:00+00');
SELECT w.name,
       substring(d.body FROM '^\{"event":"call\.ended","timestamp":"([^"]*)"')::timestamptz
         BETWEEN date_trunc('second', now()) AND clock_timestamp() AS timestamp_is_queuing_time,
       d.body ~ '^\{"event":"call\.ended","timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",' AS timestamp_format_ok,
       regexp_replace(d.body, '^\{"event":"call\.ended","timestamp":"[^"]*",', '{"event":"call.ended","timestamp":"(now)",')
         = '{"event":"call.ended","timestamp":"(now)","data":{"call":{"id":"call_no_end","status":"failed","started_at":"2024-03-15T14:00:00Z"},"variables":{"status":false}}}'
         AS rest_of_body_ok
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_no_end' ORDER BY w.name;
COMMIT;

------------------------------------------------------------------------------
-- variables: the stored object, always with a status.
------------------------------------------------------------------------------
-- The bodies of these calls end with the variables object, so the regular
-- expression below cuts out exactly its bytes.
INSERT INTO aloro_webhook.calls (id, status, ended_at, variables) VALUES
  ('call_vars_null',  'completed', '2024-03-15 14:30:00+00', NULL),
  ('call_vars_empty', 'missed',    '2024-03-15 14:30:00+00', '{}'),
  ('call_vars_added', 'voicemail', '2024-03-15 14:30:00+00', '{"b": 2, "a": 1}'),
  ('call_vars_added2','completed', '2024-03-15 14:30:00+00', '{"summary": "ok", "x": null}'),
  ('call_vars_kept',  'failed',    '2024-03-15 14:30:00+00', '{"a": 1, "status": "kept"}'),
  ('call_vars_kept2', 'completed', '2024-03-15 14:30:00+00', '{"status": false, "summary": "x"}');
SELECT c.id,
       substring(aloro_webhook.call_payload(c.id) FROM '"variables":(.*)\}\}$') AS variables,
       aloro_webhook.call_payload(c.id)
         = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"' || c.id
           || '","status":"' || c.status || '","ended_at":"2024-03-15T14:30:00Z"},"variables":'
           || e.variables || '}}' AS body_ok
  FROM aloro_webhook.calls c
  JOIN (VALUES
        ('call_vars_null',   '{"status":true}'),
        ('call_vars_empty',  '{"status":false}'),
        ('call_vars_added',  '{"status":false,"a":1,"b":2}'),
        ('call_vars_added2', '{"status":true,"x":null,"summary":"ok"}'),
        ('call_vars_kept',   '{"a":1,"status":"kept"}'),
        ('call_vars_kept2',  '{"status":false,"summary":"x"}')
       ) AS e(id, variables) ON e.id = c.id
 ORDER BY c.id;
-- the stored status is kept in the row too (the payload adds, never writes)
SELECT id, variables FROM aloro_webhook.calls WHERE id LIKE 'call_vars_%' ORDER BY id;

------------------------------------------------------------------------------
-- Key order: array-index keys (canonical decimal integers below 2^32-1)
-- first, ascending; then the added status; then the rest in jsonb order.
-- Applies to nested objects and objects inside arrays as well.
-- jsonb stores: 0 2 a b -1 01 10 1.5 list nested 4294967294 4294967295.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, ended_at, variables)
VALUES ('call_keys', 'completed', '2024-03-15 14:30:00+00',
        '{"10": "a", "2": "b", "01": "c", "4294967295": "d", "4294967294": "e", "b": 1, "a": 2,
          "-1": "f", "1.5": "g", "0": "h",
          "nested": {"b": 1, "10": 2, "9": 3}, "list": [{"a": "y", "3": "x", "22": "z"}]}'),
       ('call_keys2', 'missed', '2024-03-15 14:30:00+00', '{"status": "s", "7": 1}');
SELECT id, substring(aloro_webhook.call_payload(id) FROM '"variables":(.*)\}\}$') AS variables
  FROM aloro_webhook.calls WHERE id IN ('call_keys', 'call_keys2') ORDER BY id;
SELECT aloro_webhook.call_payload('call_keys')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_keys","status":"completed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"0":"h","2":"b","10":"a","4294967294":"e","status":true,"a":2,"b":1,"-1":"f","01":"c","1.5":"g","list":[{"3":"x","22":"z","a":"y"}],"nested":{"9":3,"10":2,"b":1},"4294967295":"d"}}}'
       AS call_keys_ok;
SELECT aloro_webhook.call_payload('call_keys2')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_keys2","status":"missed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"7":1,"status":"s"}}}'
       AS call_keys2_ok;

------------------------------------------------------------------------------
-- Numbers as ECMAScript prints the parsed double (expected values are what
-- Node.js prints for JSON.stringify(JSON.parse(<stored text>))).
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, ended_at, variables)
VALUES ('call_numbers', 'completed', '2024-03-15 14:30:00+00',
        '{"a": 0.30, "b": 1.0, "c": 1e21, "d": 1e-7, "e": 12345678901234567890, "f": -0,
          "g": -0.0, "h": 100, "i": 1e20, "j": 0.000001, "k": 123456789012345678901234,
          "l": -1.5e-10, "m": 1.7976931348623157e308, "n": 5e-324, "o": 0.1,
          "p": 99999999999999999999, "q": 1e400, "r": 0.1e1, "s": -12.50, "t": 1.23e-5,
          "u": 123e-20, "v": 4.35, "w": 0.0000001234, "x": [1.0, -0, 2.50e0]}');
SELECT substring(aloro_webhook.call_payload('call_numbers') FROM '"variables":(.*)\}\}$') AS variables;
SELECT aloro_webhook.call_payload('call_numbers')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_numbers","status":"completed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"status":true,"a":0.3,"b":1,"c":1e+21,"d":1e-7,"e":12345678901234567000,"f":0,"g":0,"h":100,"i":100000000000000000000,"j":0.000001,"k":1.2345678901234569e+23,"l":-1.5e-10,"m":1.7976931348623157e+308,"n":5e-324,"o":0.1,"p":100000000000000000000,"q":null,"r":1,"s":-12.5,"t":0.0000123,"u":1.23e-18,"v":4.35,"w":1.234e-7,"x":[1,0,2.5]}}}'
       AS call_numbers_ok;
-- numeric columns too: cost_total 0.450 -> 0.45, duration and recording_duration
INSERT INTO aloro_webhook.calls (id, status, duration, ended_at, recording_duration, cost_total)
VALUES ('call_num_cols', 'completed', 2147483647, '2024-03-15 14:30:00+00', 0, 0.450);
SELECT aloro_webhook.call_payload('call_num_cols')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_num_cols","status":"completed","duration":2147483647,"ended_at":"2024-03-15T14:30:00Z"},"variables":{"status":true},"recording":{"duration":0},"cost":{"total":0.45}}}'
       AS call_num_cols_ok;

------------------------------------------------------------------------------
-- Strings: JSON.stringify's escapes.  \" \\ \b \f \n \r \t by name, other
-- controls as lowercase \u00xx, everything else (DEL, U+2028, U+2029, emoji,
-- accents, /) raw UTF-8.  In text columns, in jsonb strings and in keys.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, ended_at, assistant_name, variables)
VALUES ('call_strings', 'completed', '2024-03-15 14:30:00+00',
        E'q" b\\ n\n t\t r\r b\b f\f c\x01\x0b\x1b\x1f d\x7f s/ ls ps emoji😀 é',
        E'{"k\\"ey\\n": "q\\" b\\\\ n\\n t\\t r\\r b\\b f\\f c\\u0001\\u000b\\u001b\\u001f d\x7f s\\/ ls ps emoji😀 é"}');
-- the raw bytes between "name": and the end of the assistant section
SELECT substring(aloro_webhook.call_payload('call_strings') FROM '"assistant":\{"name":(.*)\},"variables"') AS name_json;
SELECT aloro_webhook.call_payload('call_strings')
       = E'{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_strings","status":"completed","ended_at":"2024-03-15T14:30:00Z"},'
         '"assistant":{"name":"q\\" b\\\\ n\\n t\\t r\\r b\\b f\\f c\\u0001\\u000b\\u001b\\u001f d\x7f s/ ls ps emoji😀 é"},'
         '"variables":{"status":true,"k\\"ey\\n":"q\\" b\\\\ n\\n t\\t r\\r b\\b f\\f c\\u0001\\u000b\\u001b\\u001f d\x7f s/ ls ps emoji😀 é"}}}'
       AS call_strings_ok;
-- and it parses back to exactly what was stored
SELECT (aloro_webhook.call_payload('call_strings')::jsonb #>> '{data,assistant,name}') = c.assistant_name
         AS name_round_trips,
       (aloro_webhook.call_payload('call_strings')::jsonb -> 'data' -> 'variables') - 'status' = c.variables
         AS variables_round_trip
  FROM aloro_webhook.calls c WHERE c.id = 'call_strings';

------------------------------------------------------------------------------
-- Transcript: "AI: " / "Customer: " / other speakers as stored, joined with
-- \n; timestamps MM:SS, H:MM:SS from one hour, start floored.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, ended_at, transcript)
VALUES ('call_transcript', 'completed', '2024-03-15 14:30:00+00',
        '[{"speaker": "ai", "text": "Hi", "start": 0},
          {"speaker": "customer", "text": "a \"q\"\nline2", "start": 59.999},
          {"speaker": "agent", "text": "Transfer", "start": 61},
          {"speaker": "ai", "text": "x", "start": 3599.9},
          {"speaker": "customer", "text": "y", "start": 3600},
          {"speaker": "ai", "text": "z", "start": 3661.5},
          {"speaker": "Supervisor", "text": "w", "start": 36000}]');
SELECT substring(aloro_webhook.call_payload('call_transcript') FROM '"transcript":(.*)\}\}$') AS transcript;
SELECT aloro_webhook.call_payload('call_transcript')
       = '{"event":"call.ended","timestamp":"2024-03-15T14:30:00Z","data":{"call":{"id":"call_transcript","status":"completed","ended_at":"2024-03-15T14:30:00Z"},"variables":{"status":true},"transcript":{"formatted":"AI: Hi\nCustomer: a \"q\"\nline2\nagent: Transfer\nAI: x\nCustomer: y\nAI: z\nSupervisor: w","timestamped":[{"speaker":"ai","text":"Hi","timestamp":"00:00"},{"speaker":"customer","text":"a \"q\"\nline2","timestamp":"00:59"},{"speaker":"agent","text":"Transfer","timestamp":"01:01"},{"speaker":"ai","text":"x","timestamp":"59:59"},{"speaker":"customer","text":"y","timestamp":"1:00:00"},{"speaker":"ai","text":"z","timestamp":"1:01:01"},{"speaker":"Supervisor","text":"w","timestamp":"10:00:00"}]}}}'
       AS call_transcript_ok;

------------------------------------------------------------------------------
-- Every delivery queued above carries exactly call_payload() for its
-- webhook's include_recording (calls with an ended_at, so the timestamp does
-- not depend on when it is computed), and every body is valid JSON.
------------------------------------------------------------------------------
SELECT count(*) AS deliveries,
       count(*) FILTER (WHERE d.body = aloro_webhook.call_payload(d.call_id, w.include_recording))
         AS equal_to_call_payload,
       count(*) FILTER (WHERE d.body::jsonb IS NOT NULL) AS valid_json
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id <> 'call_no_end';
-- one per (webhook, call): every call above reached both webhooks exactly once
SELECT count(DISTINCT d.call_id) AS calls, count(*) AS deliveries,
       count(*) FILTER (WHERE w.name = 'payload_all') AS to_all,
       count(*) FILTER (WHERE w.name = 'payload_norec') AS to_norec
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id;
