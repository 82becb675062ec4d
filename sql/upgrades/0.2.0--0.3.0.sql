/*
 * upgrades/0.2.0--0.3.0.sql — what moves a database's state from 0.2.0 to
 * 0.3.0.  The Makefile builds aloro_webhook--0.2.0--0.3.0.sql from the part
 * above the line "@objects", then every file of sql/ as it defines 0.3.0,
 * then the part below it.  Never edited once 0.3.0 is released.
 *
 * Queued, held and in-flight deliveries stay where they are: 0.3.0 keeps
 * the queue's rows and columns.  A worker of the old library that had a
 * delivery in flight is gone once the new library runs (the update follows
 * a restart); its claim is released by the new worker's start-up sweep and
 * the delivery is sent again (at least once).
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

-- @objects
