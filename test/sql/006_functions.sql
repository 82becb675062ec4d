--
-- 006_functions: sign(), generate_secret(), create_webhook(), test_webhook(),
-- redeliver() (CONTRACT.md "Functions"), and secrets never in deliveries.
--
\set SHOW_CONTEXT never

UPDATE aloro_webhook.webhooks SET enabled = false;
-- delivery ids from here on do not depend on how many the earlier files queued
SELECT setval(pg_get_serial_sequence('aloro_webhook.delivery_log', 'id'), 200000) AS deliveries_id_from;

------------------------------------------------------------------------------
-- sign(body, secret) = 'sha256=' || lowercase hex HMAC-SHA256(secret, body).
-- The expected values were computed outside PostgreSQL with
--   printf %s '<body>' | openssl dgst -sha256 -hmac '<secret>'
-- (the first one is also RFC 4231 test case 2).
------------------------------------------------------------------------------
SELECT aloro_webhook.sign('what do ya want for nothing?', 'Jefe') AS rfc4231_case_2;
SELECT aloro_webhook.sign('what do ya want for nothing?', 'Jefe')
       = 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' AS rfc4231_ok,
       aloro_webhook.sign('{"event":"call.ended"}', 'whsec_test')
       = 'sha256=8e2698b7eef30e2c603a36349262064936798b45fc16b25279795263e9799a2a' AS json_ok,
       aloro_webhook.sign('', 'key')
       = 'sha256=5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0' AS empty_body_ok,
       -- UTF-8 bytes of body and key: printf %s 'héllo 😀' | openssl dgst -sha256 -hmac 'clé'
       aloro_webhook.sign('héllo 😀', 'clé')
       = 'sha256=a951b55249f61d56e98441cf45aea0980a7e3f1cbd928e7f3a1ecb09eb8bcd62' AS utf8_ok;
-- the contract's body, as stored for 002's webhook, signed with 'whsec_contract'
-- (openssl over the exact bytes from CONTRACT.md)
SELECT aloro_webhook.sign(d.body, 'whsec_contract')
       = 'sha256=73b46a6b1c404a7c067ddf301f5263cc7904a2d340b70e3fe3b301d9a288fa48' AS contract_body_signature_ok
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id = 'call_abc123' AND w.name = 'payload_all';
-- always 'sha256=' and 64 lowercase hex digits
SELECT bool_and(aloro_webhook.sign(g::text, 'k' || g) ~ '^sha256=[0-9a-f]{64}$') AS format_ok
  FROM generate_series(1, 200) g;
-- no body or no secret: no signature
SELECT aloro_webhook.sign(NULL, 'k') IS NULL AS null_body, aloro_webhook.sign('b', NULL) IS NULL AS null_secret;

------------------------------------------------------------------------------
-- generate_secret() = 'whsec_' || base64 of 32 random bytes.
------------------------------------------------------------------------------
SELECT s ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS shape_ok,
       length(decode(substr(s, 7), 'base64')) AS random_bytes
  FROM (SELECT aloro_webhook.generate_secret() AS s) AS x;
SELECT aloro_webhook.generate_secret() <> aloro_webhook.generate_secret() AS two_calls_differ;
SELECT count(DISTINCT s) AS distinct_of_1000,
       bool_and(s ~ '^whsec_[A-Za-z0-9+/]{43}=$') AS all_shapes_ok
  FROM (SELECT aloro_webhook.generate_secret() AS s FROM generate_series(1, 1000)) AS x;

------------------------------------------------------------------------------
-- create_webhook(): returns the new row's id; the defaults are the contract's.
------------------------------------------------------------------------------
SELECT aloro_webhook.create_webhook('https://receiver.example/f_defaults') AS f_defaults_id \gset
SELECT id = :f_defaults_id AS returned_id_is_row, name, url, secret, completed_only,
       include_recording, enabled, assistant_id, campaign_id,
       created_at BETWEEN now() - interval '1 minute' AND now() AS created_now
  FROM aloro_webhook.webhooks WHERE url = 'https://receiver.example/f_defaults';
SELECT aloro_webhook.create_webhook('https://receiver.example/f_full', 'whsec_full', true, false,
                                    'f_full', 'asst_f', 'camp_f') AS f_full_id \gset
SELECT id = :f_full_id AS returned_id_is_row, name, url, secret, completed_only,
       include_recording, enabled, assistant_id, campaign_id
  FROM aloro_webhook.webhooks WHERE url = 'https://receiver.example/f_full';
-- with a generated secret
SELECT aloro_webhook.create_webhook('https://receiver.example/f_signed', aloro_webhook.generate_secret(),
                                    name => 'f_signed') AS f_signed_id \gset
SELECT secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_stored
  FROM aloro_webhook.webhooks WHERE id = :f_signed_id;
UPDATE aloro_webhook.webhooks SET enabled = false WHERE id IN (:f_defaults_id, :f_full_id);

------------------------------------------------------------------------------
-- test_webhook(): queues the contract's test payload, returns the delivery id.
------------------------------------------------------------------------------
SELECT aloro_webhook.test_webhook(:f_signed_id) AS test_id \gset
SELECT :test_id AS test_delivery_id;
SELECT d.webhook_id = :f_signed_id AS for_webhook, d.call_id, d.event, d.test, d.status, d.attempts,
       d.finished_at IS NULL AS not_finished, d.next_attempt_at <= now() AS due_now
  FROM aloro_webhook.deliveries d WHERE d.id = :test_id;
-- the body, with its timestamp masked (the time of the request, never printed)
SELECT regexp_replace(body, '"timestamp":"[^"]*"', '"timestamp":"(time)"') AS test_body
  FROM aloro_webhook.deliveries WHERE id = :test_id;
SELECT d.body ~ '^\{"event":"call\.ended","timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","test":true,' AS timestamp_format_ok,
       substring(d.body FROM '"timestamp":"([^"]*)"')::timestamptz
         BETWEEN date_trunc('second', d.created_at) AND now() AS timestamp_is_request_time,
       regexp_replace(d.body, '"timestamp":"[^"]*"', '"timestamp":"(time)"')
         = '{"event":"call.ended","timestamp":"(time)","test":true,"data":{"call":{"id":"test_call_' || d.id
           || '","phone":"+15555555555","status":"completed","duration":120},"variables":{"status":true,"summary":"This is a test webhook"}}}'
         AS body_is_contract_test_payload
  FROM aloro_webhook.deliveries d WHERE d.id = :test_id;
-- every click is a request of its own
SELECT aloro_webhook.test_webhook(:f_signed_id) - :test_id AS next_test_id_offset;
SELECT count(*) AS test_deliveries, count(DISTINCT body) AS distinct_bodies
  FROM aloro_webhook.deliveries WHERE webhook_id = :f_signed_id AND test;
SELECT aloro_webhook.test_webhook(999999);
SELECT aloro_webhook.test_webhook(NULL);

------------------------------------------------------------------------------
-- Secrets never appear in deliveries.
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status, ended_at) VALUES ('f_call', 'completed', '2024-03-15 18:00:00+00');
SELECT count(*) > 0 AS has_signed_deliveries,
       count(*) FILTER (WHERE position(w.secret IN d.body) > 0) AS bodies_with_secret
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE w.secret IS NOT NULL;

------------------------------------------------------------------------------
-- redeliver(): a pending delivery is refused; a finished one goes back in
-- line with the same body, a fresh attempt budget, and its history kept.
------------------------------------------------------------------------------
SELECT id AS call_delivery_id FROM aloro_webhook.deliveries WHERE call_id = 'f_call' \gset
SELECT :call_delivery_id AS call_delivery_id;
SELECT aloro_webhook.redeliver(:call_delivery_id);

-- the worker's part, done by hand: five failed attempts, then failed
INSERT INTO aloro_webhook.delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, error)
SELECT :call_delivery_id, a, now(), 10, 500, 'HTTP 500' FROM generate_series(1, 5) a;
UPDATE aloro_webhook.deliveries
   SET status = 'failed', attempts = 5, last_http_status = 500, last_error = 'HTTP 500',
       next_attempt_at = NULL, finished_at = now()
 WHERE id = :call_delivery_id;
CREATE TEMP TABLE before_redeliver AS
SELECT id, body FROM aloro_webhook.deliveries WHERE id = :call_delivery_id;

SELECT aloro_webhook.redeliver(:call_delivery_id) = :call_delivery_id AS returns_its_id;
SELECT d.status, d.attempts, d.budget_start, d.finished_at IS NULL AS not_finished,
       d.next_attempt_at <= now() AS due_now, d.body = b.body AS same_body
  FROM aloro_webhook.deliveries d JOIN before_redeliver b USING (id);
SELECT count(*) AS attempts_kept FROM aloro_webhook.delivery_attempts WHERE delivery_id = :call_delivery_id;
SELECT count(*) AS deliveries_for_call FROM aloro_webhook.deliveries WHERE call_id = 'f_call';
-- pending again, so refused again
SELECT aloro_webhook.redeliver(:call_delivery_id);

-- a succeeded delivery (here the test request) can be sent again too
INSERT INTO aloro_webhook.delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status)
VALUES (:test_id, 1, now(), 10, 200);
UPDATE aloro_webhook.deliveries
   SET status = 'succeeded', attempts = 1, last_http_status = 200, next_attempt_at = NULL, finished_at = now()
 WHERE id = :test_id;
CREATE TEMP TABLE before_redeliver_test AS
SELECT id, body FROM aloro_webhook.deliveries WHERE id = :test_id;
SELECT aloro_webhook.redeliver(:test_id) = :test_id AS returns_its_id;
SELECT d.status, d.attempts, d.budget_start, d.finished_at IS NULL AS not_finished,
       d.body = b.body AS same_body
  FROM aloro_webhook.deliveries d JOIN before_redeliver_test b USING (id);
SELECT count(*) AS attempts_kept FROM aloro_webhook.delivery_attempts WHERE delivery_id = :test_id;

SELECT aloro_webhook.redeliver(999999);
SELECT aloro_webhook.redeliver(NULL);
