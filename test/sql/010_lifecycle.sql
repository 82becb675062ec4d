-- A call row's lifecycle: deleted or truncated calls may end again under the
-- same id; a renamed call stays ended; call_payload() matches what was queued.
SELECT aloro_webhook.create_webhook('https://life.example.com/hook', name => 'life',
                                    assistant_id => 'asst_life') AS life \gset

-- ends, is deleted with its history, comes back: ends again
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_1', 'completed', 'asst_life');
SELECT count(*) AS queued FROM aloro_webhook.deliveries WHERE call_id = 'life_1' AND webhook_id = :life;
DELETE FROM aloro_webhook.deliveries WHERE call_id = 'life_1';
DELETE FROM aloro_webhook.calls WHERE id = 'life_1';
SELECT count(*) AS still_marked_ended FROM aloro_webhook.ended_calls WHERE call_id = 'life_1';
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_1', 'completed', 'asst_life');
SELECT count(*) AS queued_again FROM aloro_webhook.deliveries WHERE call_id = 'life_1' AND webhook_id = :life;

-- deleted but its delivery kept: one (webhook, call, event) stays one delivery
DELETE FROM aloro_webhook.calls WHERE id = 'life_1';
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_1', 'missed', 'asst_life');
SELECT count(*) AS still_one FROM aloro_webhook.deliveries WHERE call_id = 'life_1' AND webhook_id = :life;

-- TRUNCATE forgets every call of the table
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_2', 'busy', 'asst_life');
TRUNCATE aloro_webhook.calls;
SELECT count(*) AS marked_after_truncate FROM aloro_webhook.ended_calls
 WHERE source = 'aloro_webhook.calls'::regclass;
DELETE FROM aloro_webhook.deliveries WHERE call_id IN ('life_1', 'life_2');
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_2', 'busy', 'asst_life');
SELECT count(*) AS queued_after_truncate FROM aloro_webhook.deliveries WHERE call_id = 'life_2' AND webhook_id = :life;

-- a renamed ended call stays ended: going live and ending again queues nothing
UPDATE aloro_webhook.calls SET id = 'life_2b' WHERE id = 'life_2';
UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id = 'life_2b';
UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'life_2b';
SELECT count(*) AS queued_for_renamed FROM aloro_webhook.deliveries WHERE call_id = 'life_2b';
SELECT call_id FROM aloro_webhook.ended_calls WHERE call_id LIKE 'life_2%';

-- no ended_at: call_payload() carries the time of queuing, as the delivery does
BEGIN;
INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('life_3', 'completed', 'asst_life');
COMMIT;
SELECT pg_sleep(1.1);
SELECT d.body = aloro_webhook.call_payload('life_3') AS payload_matches_queued_body
  FROM aloro_webhook.deliveries d WHERE d.call_id = 'life_3' AND d.webhook_id = :life;
-- a live call has not been queued: its timestamp is now
INSERT INTO aloro_webhook.calls (id, status) VALUES ('life_4', 'ringing');
SELECT aloro_webhook.call_payload('life_4') LIKE
       '{"event":"call.ended","timestamp":"' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"%'
       AS live_call_uses_now;

-- NaN and infinities have no JSON form: left out like NULL
INSERT INTO aloro_webhook.calls (id, status, cost_total, cost_breakdown)
VALUES ('life_nan', 'failed', 'NaN', '{"voice": 1}'), ('life_inf', 'failed', 'Infinity', NULL);
SELECT aloro_webhook.call_payload('life_nan') LIKE '%"cost":{"breakdown":{"voice":1}}}}' AS nan_total_left_out;
SELECT aloro_webhook.call_payload('life_inf') NOT LIKE '%"cost"%' AS inf_cost_section_left_out;
