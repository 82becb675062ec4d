--
-- 007_refusals: every bad input is refused with a message that says what is
-- wrong -- webhook URLs and secrets, call rows, settings, NULL arguments --
-- and nothing of it is stored or queued.
--
\set SHOW_CONTEXT never

UPDATE aloro_webhook.webhooks SET enabled = false;

------------------------------------------------------------------------------
-- Webhook URLs: http:// or https://, a host, no whitespace or control
-- characters (nothing can reach the request line or headers), at most 2048
-- bytes.  create_webhook() first, then plain INSERT and UPDATE.
------------------------------------------------------------------------------
SELECT aloro_webhook.create_webhook('ftp://example.com/hook');
SELECT aloro_webhook.create_webhook('file:///etc/passwd');
SELECT aloro_webhook.create_webhook('javascript:alert(1)');
SELECT aloro_webhook.create_webhook('mailto:ops@example.com');
SELECT aloro_webhook.create_webhook('http://');
SELECT aloro_webhook.create_webhook('https:///hooks');
SELECT aloro_webhook.create_webhook('http:///');
SELECT aloro_webhook.create_webhook('http://:8080/hook');
SELECT aloro_webhook.create_webhook('http://user@/hook');
SELECT aloro_webhook.create_webhook('https://?x=1');
SELECT aloro_webhook.create_webhook('https://example.com/a b');
SELECT aloro_webhook.create_webhook(' https://example.com/hook');
SELECT aloro_webhook.create_webhook(E'https://example.com/hook\r\nX-Injected: 1');
SELECT aloro_webhook.create_webhook(E'https://example.com/hook\n');
SELECT aloro_webhook.create_webhook(E'https://example.com/\thook');
SELECT aloro_webhook.create_webhook(E'https://example.com/\x01hook');
SELECT aloro_webhook.create_webhook(E'https://example.com/\x1bhook');
SELECT aloro_webhook.create_webhook(E'https://example.com/\x7fhook');
SELECT aloro_webhook.create_webhook('');
SELECT aloro_webhook.create_webhook('not a url');
SELECT aloro_webhook.create_webhook('notaurl');
SELECT aloro_webhook.create_webhook('example.com/hook');
SELECT aloro_webhook.create_webhook('http//example.com/hook');
-- (terse: the DETAIL of a NOT NULL violation prints the row, with its id and created_at)
\set VERBOSITY terse
SELECT aloro_webhook.create_webhook(NULL);
\set VERBOSITY default
-- 2049 bytes: refused (caught here so that the 2 KB URL is not printed)
DO $$
DECLARE
	v_detail text;
	v_hint text;
BEGIN
	PERFORM aloro_webhook.create_webhook('https://example.com/' || repeat('a', 2029));
	RAISE NOTICE 'accepted';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	RAISE NOTICE 'refused, SQLSTATE %: % ... / DETAIL: % / HINT: %',
		SQLSTATE, left(SQLERRM, 40), v_detail, v_hint;
END
$$;

-- the same checks guard plain SQL
INSERT INTO aloro_webhook.webhooks (url) VALUES ('ftp://example.com/hook');
INSERT INTO aloro_webhook.webhooks (url) VALUES (E'https://example.com/hook\r\nX-Injected: 1');
INSERT INTO aloro_webhook.webhooks (url) VALUES ('');
\set VERBOSITY terse
INSERT INTO aloro_webhook.webhooks (url) VALUES (NULL);
INSERT INTO aloro_webhook.webhooks (name) VALUES ('r_no_url');
\set VERBOSITY default

-- what is accepted: http/https in any case (RFC 3986), ports, IPv6 literals,
-- user info, query and fragment, exactly 2048 bytes
INSERT INTO aloro_webhook.webhooks (name, url, enabled) VALUES
  ('r_ok_upper', 'HTTPS://EXAMPLE.COM/Hook', false),
  ('r_ok_port',  'http://localhost:8080/hook', false),
  ('r_ok_ipv6',  'http://[::1]:8080/hook', false),
  ('r_ok_query', 'https://user@example.com/hook?x=1&y=%20#frag', false),
  ('r_ok_max',   'https://example.com/' || repeat('a', 2028), false);
SELECT name, octet_length(url) AS bytes FROM aloro_webhook.webhooks WHERE name LIKE 'r\_ok%' ORDER BY name;

-- UPDATE is checked too, and leaves the row as it was
UPDATE aloro_webhook.webhooks SET url = 'gopher://example.com/' WHERE name = 'r_ok_port';
UPDATE aloro_webhook.webhooks SET url = E'http://localhost:8080/hook\r\nHost: evil' WHERE name = 'r_ok_port';
\set VERBOSITY terse
UPDATE aloro_webhook.webhooks SET url = NULL WHERE name = 'r_ok_port';
\set VERBOSITY default
SELECT url FROM aloro_webhook.webhooks WHERE name = 'r_ok_port';

------------------------------------------------------------------------------
-- Secrets: NULL means unsigned; an empty secret is refused.
------------------------------------------------------------------------------
SELECT aloro_webhook.create_webhook('https://example.com/hook', secret => '');
INSERT INTO aloro_webhook.webhooks (url, secret) VALUES ('https://example.com/hook', '');
UPDATE aloro_webhook.webhooks SET secret = '' WHERE name = 'r_ok_port';
SELECT secret IS NULL AS still_unsigned FROM aloro_webhook.webhooks WHERE name = 'r_ok_port';

-- nothing refused above was stored
SELECT count(*) AS refused_webhooks_stored
  FROM aloro_webhook.webhooks
 WHERE url !~* '^https?://[^/?#]' OR url ~ '[[:space:][:cntrl:]]' OR name = 'r_no_url' OR secret = ''
    OR url = 'https://example.com/hook' OR octet_length(url) > 2048;

------------------------------------------------------------------------------
-- Calls: status, direction, variables (object), transcript (array),
-- cost_breakdown (object).
------------------------------------------------------------------------------
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_call', 'done');
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_call', 'Completed');
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_call', 'ended');
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_call', '');
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_call', NULL);
INSERT INTO aloro_webhook.calls (id) VALUES ('r_call');
INSERT INTO aloro_webhook.calls (id, status, direction) VALUES ('r_call', 'completed', 'sideways');
INSERT INTO aloro_webhook.calls (id, status, direction) VALUES ('r_call', 'completed', 'Inbound');
INSERT INTO aloro_webhook.calls (id, status, direction) VALUES ('r_call', 'completed', '');
INSERT INTO aloro_webhook.calls (id, status, variables) VALUES ('r_call', 'completed', '[]');
INSERT INTO aloro_webhook.calls (id, status, variables) VALUES ('r_call', 'completed', '"summary"');
INSERT INTO aloro_webhook.calls (id, status, variables) VALUES ('r_call', 'completed', '42');
INSERT INTO aloro_webhook.calls (id, status, variables) VALUES ('r_call', 'completed', 'true');
INSERT INTO aloro_webhook.calls (id, status, variables) VALUES ('r_call', 'completed', 'null');
INSERT INTO aloro_webhook.calls (id, status, transcript) VALUES ('r_call', 'completed', '{}');
INSERT INTO aloro_webhook.calls (id, status, transcript) VALUES ('r_call', 'completed', '"AI: hi"');
INSERT INTO aloro_webhook.calls (id, status, transcript) VALUES ('r_call', 'completed', 'null');
INSERT INTO aloro_webhook.calls (id, status, cost_breakdown) VALUES ('r_call', 'completed', '[0.3]');
INSERT INTO aloro_webhook.calls (id, status, cost_breakdown) VALUES ('r_call', 'completed', '0.45');
INSERT INTO aloro_webhook.calls (id, status, cost_breakdown) VALUES ('r_call', 'completed', '"x"');
-- updates are checked too
INSERT INTO aloro_webhook.calls (id, status) VALUES ('r_live', 'ringing');
UPDATE aloro_webhook.calls SET status = 'over' WHERE id = 'r_live';
UPDATE aloro_webhook.calls SET direction = 'up' WHERE id = 'r_live';
UPDATE aloro_webhook.calls SET variables = '[1]' WHERE id = 'r_live';
UPDATE aloro_webhook.calls SET transcript = '{"speaker": "ai"}' WHERE id = 'r_live';
UPDATE aloro_webhook.calls SET cost_breakdown = '[]' WHERE id = 'r_live';
-- none of it was stored, nothing was queued, and r_live is still live
SELECT id, status, direction, variables, transcript, cost_breakdown
  FROM aloro_webhook.calls WHERE id LIKE 'r\_%' ORDER BY id;
SELECT count(*) AS queued FROM aloro_webhook.deliveries WHERE call_id LIKE 'r\_%';

------------------------------------------------------------------------------
-- Settings: a bad retry_schedule is refused with a message naming the bad
-- entry; reload-only and restart-only settings cannot be SET in a session.
------------------------------------------------------------------------------
ALTER SYSTEM SET aloro_webhook.retry_schedule = '0, soon, 5min';
ALTER SYSTEM SET aloro_webhook.retry_schedule = '0,, 1min';
ALTER SYSTEM SET aloro_webhook.retry_schedule = '';
ALTER SYSTEM SET aloro_webhook.retry_schedule = '0, -1min';
ALTER SYSTEM SET aloro_webhook.allowed_networks = '10.0.0.0/33';
ALTER SYSTEM SET aloro_webhook.allowed_networks = 'localhost';
-- the range check is PostgreSQL's own, and its wording varies by major (18
-- adds the unit to the bounds): its SQLSTATE alone
\set VERBOSITY sqlstate
ALTER SYSTEM SET aloro_webhook.timeout = 0;
\set VERBOSITY default
SET aloro_webhook.retry_schedule = '0';
SET aloro_webhook.database_name = 'calls_db';
-- (in case any of the above was wrongly accepted)
ALTER SYSTEM RESET aloro_webhook.retry_schedule;
ALTER SYSTEM RESET aloro_webhook.allowed_networks;
ALTER SYSTEM RESET aloro_webhook.timeout;
SHOW aloro_webhook.retry_schedule;

------------------------------------------------------------------------------
-- NULL and unknown arguments (test_webhook, redeliver and sign: 006).
------------------------------------------------------------------------------
SELECT aloro_webhook.call_payload(NULL);
SELECT aloro_webhook.call_payload('r_no_such_call');
-- a refused row is not a call either
SELECT aloro_webhook.call_payload('r_call');
-- watch()/unwatch() of NULL do nothing
SELECT aloro_webhook.watch(NULL) IS NULL AS watch_null, aloro_webhook.unwatch(NULL) IS NULL AS unwatch_null;
