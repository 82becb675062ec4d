/*
 * upgrades/0.2.0--0.3.0.sql — what moves a database's state from 0.2.0 to
 * 0.3.0.  The Makefile builds aloro_webhook--0.2.0--0.3.0.sql from the part
 * above the line "@objects", then every file of sql/ as it defines 0.3.0,
 * then the part below it.  Never edited once 0.3.0 is released.
 *
 * Queued, held and in-flight deliveries stay where they are: 0.3.0 keeps
 * the queue's rows and columns, and where every delivery stands moves from
 * delivery_log's columns to delivery_state (0.3.0 writes it only for the
 * deliveries that leave the common road).  A worker of the old library that
 * had a delivery in flight is gone once the new library runs (the update
 * follows a restart); its claim is released by the new worker's start-up
 * sweep and the delivery is sent again (at least once).  New deliveries go
 * by the stream (src/stream.c), which starts after the last one carried
 * over.
 */

------------------------------------------------------------------------------
-- 0.2.0 woke the worker from statement triggers on the queue, with the rows
-- each statement wrote as a transition table: every claim and every record
-- of the worker, and every call that ended, paid for collecting them.  Now
-- whoever queues a delivery says so (_wake(), or the call-ended trigger in
-- C), and the worker's own statements wake no one.
------------------------------------------------------------------------------

DROP TRIGGER aloro_webhook_wake_insert ON aloro_webhook.queue;
DROP TRIGGER aloro_webhook_wake_update ON aloro_webhook.queue;
-- the webhooks' statement trigger that makes the copies stale now wakes the
-- worker too: enabling a webhook needs no trigger of its own
DROP TRIGGER aloro_webhook_wake ON aloro_webhook.webhooks;
DROP FUNCTION aloro_webhook._wake_at_commit();

------------------------------------------------------------------------------
-- 0.2.0 wrote four rows per call end (the ended mark, the body in payloads,
-- delivery_log, its queue row) and updated two of them per attempt.  0.3.0
-- appends one delivery_log row with its body, which the worker reads in id
-- order; where a delivery stands moves to delivery_state, written only for
-- those that leave the common road (see sql/queue.sql).  The columns the
-- views read come first; the state columns go once their rows have moved.
------------------------------------------------------------------------------

ALTER TABLE aloro_webhook.delivery_log
	ADD COLUMN body text COMPRESSION lz4,
	ADD COLUMN bytes integer NOT NULL DEFAULT 0,
	ADD COLUMN due_at timestamptz,
	ADD COLUMN error text;
ALTER TABLE aloro_webhook.delivery_log RESET (fillfactor);
-- lookups by call must use it: no longer partial
DROP INDEX aloro_webhook.deliveries_once;

-- @objects

------------------------------------------------------------------------------
-- The rows that move
------------------------------------------------------------------------------

-- where each delivery stands
INSERT INTO aloro_webhook.delivery_state
	(delivery_id, status, attempts, budget_start, next_attempt_at, last_http_status,
	 last_error, finished_at)
SELECT d.id, d.status, d.attempts, d.budget_start, d.next_attempt_at, d.last_http_status,
	   d.last_error, d.finished_at
  FROM aloro_webhook.delivery_log d
ON CONFLICT (delivery_id) DO NOTHING;
ALTER TABLE aloro_webhook.delivery_log
	DROP COLUMN status,
	DROP COLUMN attempts,
	DROP COLUMN next_attempt_at,
	DROP COLUMN last_http_status,
	DROP COLUMN last_error,
	DROP COLUMN finished_at,
	DROP COLUMN budget_start;

-- the stream starts after every delivery carried over (they go by the queue)
UPDATE aloro_webhook.stream_cursors
   SET read_upto = (SELECT coalesce(max(d.id), 0) FROM aloro_webhook.delivery_log d)
 WHERE share = -1;
