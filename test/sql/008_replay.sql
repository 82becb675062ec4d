-- replay(): finished deliveries of one webhook, in a time window, back in line
SELECT setval(pg_get_serial_sequence('aloro_webhook.delivery_log', 'id'), 8000);
SELECT aloro_webhook.create_webhook('https://replay.example.com/a', name => 'rp_a') AS rp_a \gset
SELECT aloro_webhook.create_webhook('https://replay.example.com/b', name => 'rp_b') AS rp_b \gset
INSERT INTO aloro_webhook.calls (id, status) VALUES
  ('rp_failed_old', 'failed'), ('rp_failed_new', 'failed'),
  ('rp_ok_new', 'completed'), ('rp_pending', 'missed');
-- shape the history: two failed (one three days old), one succeeded, one still pending
UPDATE aloro_webhook.deliveries d
   SET status = CASE WHEN call_id = 'rp_ok_new' THEN 'succeeded' ELSE 'failed' END,
       attempts = 5, next_attempt_at = NULL, finished_at = now(),
       created_at = CASE WHEN call_id = 'rp_failed_old' THEN now() - interval '3 days' ELSE now() END
 WHERE call_id IN ('rp_failed_old', 'rp_failed_new', 'rp_ok_new');

-- only failed ones, since a day ago: just rp_failed_new, for webhook a only
SELECT aloro_webhook.replay(:rp_a, now() - interval '1 day');
SELECT w.name, d.call_id, d.status, d.attempts, d.budget_start, d.finished_at IS NULL AS unfinished
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id LIKE 'rp\_%' ORDER BY w.name, d.call_id;

-- everything finished in the last week, failed or not
SELECT aloro_webhook.replay(:rp_b, now() - interval '7 days', only_failed => false);
-- the window's end is exclusive: nothing was created before a week ago
SELECT aloro_webhook.replay(:rp_b, now() - interval '30 days', now() - interval '7 days', false);
SELECT w.name, d.call_id, d.status, d.budget_start
  FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
 WHERE d.call_id LIKE 'rp\_%' AND w.name = 'rp_b' ORDER BY d.call_id;

-- refusals
SELECT aloro_webhook.replay(:rp_a, now(), now() - interval '1 day') IS NULL;
SELECT aloro_webhook.replay(424242, now() - interval '1 day');
SELECT aloro_webhook.replay(NULL, now());
SELECT aloro_webhook.replay(:rp_a, NULL);
