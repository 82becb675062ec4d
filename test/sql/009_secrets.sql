-- Secrets stay out of errors (and so out of the server log): a row refused
-- for a NULL column names the column, never "Failing row contains (...)".
INSERT INTO aloro_webhook.webhooks (secret) VALUES ('whsec_never_in_a_message');
INSERT INTO aloro_webhook.webhooks (url, secret, enabled)
VALUES ('https://secrets.example.com/', 'whsec_never_in_a_message', NULL);
INSERT INTO aloro_webhook.webhooks (url, secret, include_recording)
VALUES ('https://secrets.example.com/', 'whsec_never_in_a_message', NULL);
SELECT aloro_webhook.create_webhook('https://secrets.example.com/', 'whsec_never_in_a_message') AS s_id \gset
UPDATE aloro_webhook.webhooks SET completed_only = NULL WHERE id = :s_id;
UPDATE aloro_webhook.webhooks SET created_at = NULL WHERE id = :s_id;
-- a bad URL next to a secret: the message shows the URL only
UPDATE aloro_webhook.webhooks SET url = 'ftp://secrets.example.com/' WHERE id = :s_id;
-- and the secret is nowhere in what was queued
SELECT aloro_webhook.test_webhook(:s_id) > 0 AS queued;
SELECT count(*) AS bodies_with_secret FROM aloro_webhook.deliveries
 WHERE body LIKE '%whsec_never_in_a_message%';
-- every NOT NULL column is refused by name, id included (PostgreSQL's own
-- check would print the row, secret and all)
UPDATE aloro_webhook.webhooks SET id = NULL WHERE id = :s_id;
INSERT INTO aloro_webhook.webhooks (id, url, secret) OVERRIDING SYSTEM VALUE
VALUES (NULL, 'https://secrets.example.com/', 'whsec_never_in_a_message');
-- a password in a URL is a secret too: messages mask it
UPDATE aloro_webhook.webhooks SET url = 'ftp://user:hunter2@secrets.example.com/' WHERE id = :s_id;
UPDATE aloro_webhook.webhooks SET url = 'https://user:hunter2@secrets.example.com/a b' WHERE id = :s_id;
