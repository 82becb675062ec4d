/*
 * enqueue.sql — how a call that ends queues its deliveries: the default
 * calls table, the ended marks, the triggers that watch a calls table, the
 * body of a call, and the filters that decide which webhooks it goes to.
 *
 * Re-runnable, like every file of sql/ (see sql/README.md).
 */

------------------------------------------------------------------------------
-- The default calls table
------------------------------------------------------------------------------

-- Refuses a call row with a bad status, direction or JSON column, naming it.
CREATE OR REPLACE FUNCTION aloro_webhook._check_call(status text, direction text,
										  variables jsonb, transcript jsonb,
										  cost_breakdown jsonb)
RETURNS boolean LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aloro_webhook_check_call';

CREATE TABLE IF NOT EXISTS aloro_webhook.calls (
	id					text PRIMARY KEY,
	phone				text,
	direction			text,
	status				text NOT NULL,
	duration			integer,
	started_at			timestamptz,
	ended_at			timestamptz,
	assistant_id		text,
	assistant_name		text,
	phone_number_id		text,
	phone_number		text,
	campaign_id			text,
	campaign_name		text,
	variables			jsonb,
	transcript			jsonb,
	recording_url		text,
	recording_duration	integer,
	cost_total			numeric,
	cost_breakdown		jsonb,
	CONSTRAINT calls_valid CHECK (aloro_webhook._check_call(status, direction, variables,
															 transcript, cost_breakdown))
);
COMMENT ON TABLE aloro_webhook.calls IS
	'Calls; a row inserted with a terminal status, or updated from a live status to a terminal one, queues call.ended deliveries.';
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.calls', '');

-- Every call that has ended, so that it ends once: a call that goes back to
-- a live status and ends again, or a webhook created after it ended, queues
-- nothing.  Call ids are unique across all watched tables.  Recorded under
-- the watched table itself, not the partition its row was in (a row may
-- move between partitions).
CREATE TABLE IF NOT EXISTS aloro_webhook.ended_calls (
	call_id				text PRIMARY KEY,
	source				regclass NOT NULL,
	ended_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aloro_webhook.ended_calls IS
	'Calls that have ended (and so queued their call.ended deliveries), from whichever watched table.';
SELECT pg_catalog.pg_extension_config_dump('aloro_webhook.ended_calls', '');


------------------------------------------------------------------------------
-- The triggers on a watched calls table
------------------------------------------------------------------------------

-- The call-ended trigger: queues one delivery per matching webhook.  It
-- fires for every row and decides itself whether the call ended
-- (src/statuses.c holds the statuses): a WHEN clause was compiled again for
-- every statement on a calls table.  It switches to the owner itself, only
-- for the statements that write the extension's tables (src/enqueue.c),
-- which are prepared with search_path pinned: as a SECURITY DEFINER function
-- it paid for a user switch and a search_path change on every row of every
-- statement on a calls table.
CREATE OR REPLACE FUNCTION aloro_webhook._call_ended()
RETURNS trigger LANGUAGE C
AS 'MODULE_PATHNAME', 'aloro_webhook_call_ended';

-- A call row that goes away takes its "ended" mark with it: a call inserted
-- again under that id, after DELETE or TRUNCATE, ends anew.  A call whose id
-- changes keeps having ended under the new id.  In C, so that it evaluates
-- nothing the table owner chose (such as a cast of the id's type).
CREATE OR REPLACE FUNCTION aloro_webhook._call_forgotten()
RETURNS trigger LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'aloro_webhook_call_forgotten';

CREATE OR REPLACE TRIGGER aloro_webhook_call_ended
	AFTER INSERT OR UPDATE ON aloro_webhook.calls
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._call_ended();

CREATE OR REPLACE TRIGGER aloro_webhook_call_forgotten
	AFTER DELETE OR UPDATE OF id ON aloro_webhook.calls
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._call_forgotten();

CREATE OR REPLACE TRIGGER aloro_webhook_calls_truncated
	AFTER TRUNCATE ON aloro_webhook.calls
	FOR EACH STATEMENT
	EXECUTE FUNCTION aloro_webhook._call_forgotten();

-- Every status a call may have, and which of them are terminal, as the
-- library defines them (statuses.c).
CREATE OR REPLACE FUNCTION aloro_webhook._call_statuses(OUT status text, OUT terminal boolean)
RETURNS SETOF record LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aloro_webhook_call_statuses';

CREATE OR REPLACE FUNCTION aloro_webhook.watch(calls regclass)
RETURNS void LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'aloro_webhook_watch';
COMMENT ON FUNCTION aloro_webhook.watch(regclass) IS
	'attaches the call-ended trigger to a calls table of your own (columns are read by name)';

CREATE OR REPLACE FUNCTION aloro_webhook.unwatch(calls regclass)
RETURNS void LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	EXECUTE format('DROP TRIGGER IF EXISTS aloro_webhook_call_ended ON %s', calls);
	EXECUTE format('DROP TRIGGER IF EXISTS aloro_webhook_call_forgotten ON %s', calls);
	EXECUTE format('DROP TRIGGER IF EXISTS aloro_webhook_calls_truncated ON %s', calls);
END
$$;
COMMENT ON FUNCTION aloro_webhook.unwatch(regclass) IS
	'removes the triggers that watch() attached';

------------------------------------------------------------------------------
-- The body of a call
------------------------------------------------------------------------------

-- The body of a call.ended delivery for one row of a watched table;
-- queued_at stands in for a NULL ended_at (now() when NULL).
CREATE OR REPLACE FUNCTION aloro_webhook._payload(call record, include_recording boolean DEFAULT true,
									   queued_at timestamptz DEFAULT NULL)
RETURNS text LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'aloro_webhook_payload';

-- A value as the text its type's output function gives, never through a
-- cast (which the owner of the value's type may define).
CREATE OR REPLACE FUNCTION aloro_webhook._text_of(value anyelement)
RETURNS text LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'aloro_webhook_text_of';

CREATE OR REPLACE FUNCTION aloro_webhook.call_payload(call_id text, include_recording boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_rel	regclass;
	v_pred	text;
	v_body	text;
	v_ended	timestamptz;
BEGIN
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	-- an ended call's body carries the time it ended (as queued), not now; on
	-- a Citus coordinator, the node that holds its shard knows that time
	v_ended := aloro_webhook._ended_at(call_payload.call_id);
	-- the default table first, then every table that watch() attached to
	FOR v_rel IN
		SELECT t.tgrelid::regclass
		  FROM pg_trigger t
		 WHERE t.tgname = 'aloro_webhook_call_ended'
		   AND t.tgfoid = 'aloro_webhook._call_ended()'::regprocedure
		 ORDER BY t.tgrelid <> 'aloro_webhook.calls'::regclass, t.tgrelid
	LOOP
		-- the id compared as the text the triggers read (never through a
		-- cast of the table owner's): an index helps text ids
		SELECT CASE WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype)
					THEN 'c.id::text = $1'
					ELSE 'aloro_webhook._text_of(c.id) = $1' END
		  INTO v_pred
		  FROM pg_attribute a
		 WHERE a.attrelid = v_rel AND a.attname = 'id' AND NOT a.attisdropped;
		EXECUTE format('SELECT aloro_webhook._payload(c, $2, $3) FROM %s c WHERE %s', v_rel, v_pred)
		   INTO v_body
		  USING call_payload.call_id, coalesce(call_payload.include_recording, true), v_ended;
		IF v_body IS NOT NULL THEN
			RETURN v_body;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'call "%" does not exist', call_id
		USING ERRCODE = 'no_data_found',
			  HINT = 'call_payload() looks in aloro_webhook.calls and in every table passed to aloro_webhook.watch().';
END
$$;
COMMENT ON FUNCTION aloro_webhook.call_payload(text, boolean) IS
	'the exact body that the call''s call.ended delivery carries';

------------------------------------------------------------------------------
-- Filters (doc/endpoint-controls.md)
------------------------------------------------------------------------------

-- Would this webhook's filter queue this call?  For trying a filter out
-- before saving it: the body is the one the call's delivery would carry.
CREATE OR REPLACE FUNCTION aloro_webhook.filter_matches(filter jsonpath, call_id text,
											  include_recording boolean DEFAULT true)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT CASE WHEN filter IS NULL THEN true
				ELSE COALESCE(jsonb_path_match(aloro_webhook.call_payload(call_id, include_recording)::jsonb,
											   filter, '{}', true), false)
		   END;
END;

-- The same for a saved webhook.
CREATE OR REPLACE FUNCTION aloro_webhook.matches(webhook_id bigint, call_id text)
RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_filter	jsonpath;
	v_rec		boolean;
BEGIN
	PERFORM aloro_webhook._arg_required(webhook_id IS NULL, 'webhook_id');
	PERFORM aloro_webhook._arg_required(call_id IS NULL, 'call_id');
	SELECT w.filter, w.include_recording INTO v_filter, v_rec
	  FROM aloro_webhook.webhooks w WHERE w.id = matches.webhook_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook % does not exist', webhook_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN aloro_webhook.filter_matches(v_filter, call_id, v_rec);
END
$$;
