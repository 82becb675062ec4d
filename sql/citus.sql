/*
 * citus.sql — the extension on a Citus cluster (doc/scaling.md).  Without
 * Citus none of this does anything.
 *
 * Re-runnable, like every file of sql/ (see sql/README.md).
 */

-- Citus.  On a sharded call database every node runs the extension: the
-- call-ended trigger fires on the node that holds the call's shard, in the
-- same transaction, and queues there; that node's worker sends.  What is
-- shared comes from the coordinator:
--   - the webhooks: each write on the coordinator is copied, in the same
--     (two-phase) transaction, into webhook_config, a reference table that
--     Citus keeps on every node, and from there into each node's webhooks;
--   - delivery ids: each node numbers its deliveries from its Citus group
--     id times 2^48, so an id names one delivery in the whole cluster (and
--     the node that holds it);
--   - the history: delivery_history on the coordinator adds every other
--     node's (_other_nodes_history, defined with the view).
-- Without Citus none of this does anything.  See doc/scaling.md.
------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS aloro_webhook.webhook_config (
	id					bigint PRIMARY KEY,
	config				jsonb NOT NULL		-- the webhooks row, as to_jsonb() gives it
);
COMMENT ON TABLE aloro_webhook.webhook_config IS
	'On Citus: the coordinator''s webhooks, as a reference table that every node applies to its own webhooks.';

-- On the coordinator: a webhook written goes to every node.
CREATE OR REPLACE FUNCTION aloro_webhook._webhook_to_cluster()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT aloro_webhook._citus_coordinator() THEN
		RETURN NULL;
	END IF;
	IF TG_OP = 'DELETE' THEN
		DELETE FROM aloro_webhook.webhook_config c WHERE c.id OPERATOR(pg_catalog.=) OLD.id;
	ELSE
		INSERT INTO aloro_webhook.webhook_config AS c (id, config)
		VALUES (NEW.id, pg_catalog.to_jsonb(NEW))
		ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config;
		IF TG_OP = 'UPDATE' AND OLD.id OPERATOR(pg_catalog.<>) NEW.id THEN
			DELETE FROM aloro_webhook.webhook_config c WHERE c.id OPERATOR(pg_catalog.=) OLD.id;
		END IF;
	END IF;
	RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER aloro_webhook_to_cluster
	AFTER INSERT OR UPDATE OR DELETE ON aloro_webhook.webhooks
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._webhook_to_cluster();

-- Makes this node's webhook what the coordinator's is (config: its row as
-- jsonb).  Every column is taken, read from the catalog, so a column added
-- to webhooks later is carried too.  Returns whether it wrote.
CREATE OR REPLACE FUNCTION aloro_webhook._webhook_apply(config jsonb)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_set text;
BEGIN
	IF EXISTS (SELECT 1 FROM aloro_webhook.webhooks h
				WHERE h.id OPERATOR(pg_catalog.=) (config OPERATOR(pg_catalog.->>) 'id')::bigint
				  AND pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.=) config) THEN
		RETURN false;
	END IF;
	SELECT pg_catalog.string_agg(pg_catalog.format('%1$I = EXCLUDED.%1$I', a.attname), ', '
								 ORDER BY a.attnum)
	  INTO v_set
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid OPERATOR(pg_catalog.=) 'aloro_webhook.webhooks'::pg_catalog.regclass
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
	   AND a.attname OPERATOR(pg_catalog.<>) 'id';
	EXECUTE 'INSERT INTO aloro_webhook.webhooks AS h '
			'SELECT (pg_catalog.jsonb_populate_record(NULL::aloro_webhook.webhooks, $1)).* '
			'ON CONFLICT (id) DO UPDATE SET ' || v_set
		USING config;
	RETURN true;
END
$$;

-- On every node (Citus runs it on the reference table's copy there): the
-- coordinator's webhook becomes this node's.  The coordinator's own copy
-- finds its row already as it is, and writes nothing.
CREATE OR REPLACE FUNCTION aloro_webhook._webhook_from_cluster()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		DELETE FROM aloro_webhook.webhooks h WHERE h.id OPERATOR(pg_catalog.=) OLD.id;
	ELSE
		PERFORM aloro_webhook._webhook_apply(NEW.config);
	END IF;
	RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER aloro_webhook_from_cluster
	AFTER INSERT OR UPDATE OR DELETE ON aloro_webhook.webhook_config
	FOR EACH ROW
	EXECUTE FUNCTION aloro_webhook._webhook_from_cluster();

-- Is webhook_config a Citus reference table here (watch() on the
-- coordinator makes it one, and Citus tells every node)?
CREATE OR REPLACE FUNCTION aloro_webhook._citus_config_shared()
RETURNS boolean LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_yes boolean;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p '
			'WHERE p.logicalrelid OPERATOR(pg_catalog.=) ''aloro_webhook.webhook_config''::pg_catalog.regclass)'
		INTO v_yes;
	RETURN v_yes;
END
$$;

-- Is this database the coordinator of a Citus cluster whose webhook_config
-- is shared?
CREATE OR REPLACE FUNCTION aloro_webhook._citus_coordinator()
RETURNS boolean LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_yes boolean;
BEGIN
	IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL
	   OR NOT aloro_webhook._citus_config_shared() THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v_yes;
	RETURN v_yes;
END
$$;

-- When a call ended (NULL if it has not): on a Citus coordinator, the node
-- that holds its shard knows.  SECURITY DEFINER: the other nodes are asked
-- in the extension owner's name, for call_payload() in a reader's.
CREATE OR REPLACE FUNCTION aloro_webhook._ended_at(call_id text)
RETURNS timestamptz LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_ended timestamptz;
BEGIN
	SELECT e.ended_at INTO v_ended FROM aloro_webhook.ended_calls e
	 WHERE e.call_id OPERATOR(pg_catalog.=) _ended_at.call_id;
	IF NOT FOUND THEN
		SELECT pg_catalog.max(r::timestamptz) INTO v_ended FROM aloro_webhook._on_nodes(
			pg_catalog.format('SELECT aloro_webhook._time_text(e.ended_at) FROM aloro_webhook.ended_calls e '
							  'WHERE e.call_id OPERATOR(pg_catalog.=) %L', _ended_at.call_id), NULL, true) r;
	END IF;
	RETURN v_ended;
END
$$;

-- This node's share of delivery ids: from its Citus group id times 2^48
-- (the coordinator, group 0, keeps 1 ..).  Returns the group id (0 without
-- Citus).  Run when the extension is created (Citus creates it on a node
-- as the node joins), when Citus places the webhooks on a node, and by the
-- worker (_citus_node_setup), so that a node added later needs no step.
CREATE OR REPLACE FUNCTION aloro_webhook._citus_node_ids()
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_group integer;
	v_low bigint;
	v_high bigint;
	v_last bigint;
	v_min bigint;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
		RETURN 0;
	END IF;
	EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO v_group;
	IF v_group IS NULL OR v_group <= 0 OR v_group >= 32767 THEN
		RETURN coalesce(v_group, 0);
	END IF;
	v_low := (v_group::bigint OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.+) 1;
	v_high := ((v_group::bigint OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.-) 1;
	SELECT s.min_value, s.last_value INTO v_min, v_last
	  FROM pg_catalog.pg_sequences s
	 WHERE s.schemaname = 'aloro_webhook' AND s.sequencename = 'delivery_log_id_seq';
	IF v_min IS DISTINCT FROM v_low THEN
		EXECUTE pg_catalog.format('ALTER SEQUENCE aloro_webhook.delivery_log_id_seq '
								  'MINVALUE %s MAXVALUE %s START WITH %s RESTART WITH %s',
								  v_low, v_high, v_low,
								  CASE WHEN v_last >= v_low AND v_last < v_high
									   THEN v_last OPERATOR(pg_catalog.+) 1 ELSE v_low END);
	END IF;
	RETURN v_group;
END
$$;

-- What the worker checks every few seconds on a Citus node: on the
-- coordinator, whether a watched table was distributed after watch(); on
-- the others, their range of delivery ids, and their webhooks as the
-- coordinator has them (for a node
-- that missed a change: it was added later, or restored; each change
-- reaches every node in its own transaction anyway).  A webhook this node's
-- breaker disabled stays so until the coordinator's row changes.  Returns
-- the group id (0 without Citus).
CREATE OR REPLACE FUNCTION aloro_webhook._citus_node_setup()
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_group integer;
	v_coordinator boolean;
	v_watched regclass;
	v_configs jsonb[];
	v_breaker text[] := ARRAY['enabled', 'disabled_reason', 'disabled_at'];
BEGIN
	v_group := aloro_webhook._citus_node_ids();
	IF v_group = 0 AND pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL
	   AND NOT aloro_webhook._citus_coordinator() THEN
		-- a coordinator whose watched table was distributed after watch()
		-- (which had no cluster to set up then): set the nodes up now
		EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v_coordinator;
		IF v_coordinator THEN
			EXECUTE 'SELECT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t '
					'  JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) t.tgrelid '
					' WHERE t.tgname OPERATOR(pg_catalog.=) ''aloro_webhook_call_ended'' '
					'   AND t.tgfoid OPERATOR(pg_catalog.=) ''aloro_webhook._call_ended()''::pg_catalog.regprocedure '
					' LIMIT 1'
				INTO v_watched;
			IF v_watched IS NOT NULL THEN
				RAISE LOG 'aloro_webhook: % was distributed after watch(): sending the webhooks to every node', v_watched;
				PERFORM aloro_webhook._citus_setup(v_watched);
			END IF;
		END IF;
	END IF;
	IF v_group <= 0 THEN
		RETURN v_group;
	END IF;
	IF aloro_webhook._citus_config_shared() THEN
		-- read apart from the writes: Citus plans no statement that mixes
		-- its reference table with this node's own tables
		SELECT coalesce(pg_catalog.array_agg(c.config), '{}') INTO v_configs
		  FROM aloro_webhook.webhook_config c;
		PERFORM aloro_webhook._webhook_apply(c.config)
		   FROM pg_catalog.unnest(v_configs) AS c(config)
		   LEFT JOIN aloro_webhook.webhooks h
				  ON h.id OPERATOR(pg_catalog.=) (c.config OPERATOR(pg_catalog.->>) 'id')::bigint
		  WHERE h.id IS NULL
			 OR (pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.<>) c.config
				 AND NOT (h.disabled_reason IS NOT NULL AND NOT h.enabled
						  AND (pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.-) v_breaker)
							  OPERATOR(pg_catalog.=) (c.config OPERATOR(pg_catalog.-) v_breaker)));
		DELETE FROM aloro_webhook.webhooks h
		 WHERE NOT h.id OPERATOR(pg_catalog.=) ANY (
			 SELECT (c.config OPERATOR(pg_catalog.->>) 'id')::bigint FROM pg_catalog.unnest(v_configs) AS c(config));
	END IF;
	RETURN v_group;
END
$$;

-- a node that Citus creates the extension on as it joins takes its ids now
SELECT aloro_webhook._citus_node_ids();

-- Runs a statement here and answers what came of it as jsonb: {"result"}
-- or the error's {"sqlstate", "message", "detail", "hint"}, for _on_nodes()
-- on the coordinator to raise again as it was.  No role is granted it.
CREATE OR REPLACE FUNCTION aloro_webhook._run_here(command text)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_result	text;
	v_state		text;
	v_message	text;
	v_detail	text;
	v_hint		text;
BEGIN
	EXECUTE command INTO v_result;
	RETURN pg_catalog.jsonb_build_object('result', v_result);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
							v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'sqlstate', v_state, 'message', v_message,
		'detail', NULLIF(v_detail, ''), 'hint', NULLIF(v_hint, '')));
END
$$;

-- Raises the error a node answered, with its SQLSTATE, message, and its
-- detail and hint when it had them (src/raise.c).
CREATE OR REPLACE FUNCTION aloro_webhook._raise(sqlstate text, message text, detail text, hint text)
RETURNS void LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'aloro_webhook_raise';

-- On a Citus coordinator: runs a statement on the nodes of the given groups
-- (NULL: every node but this one), each in its own transaction there, and
-- returns each one's result.  An error on a node is raised here as it was
-- (with the node named in its context); a node that cannot be reached too,
-- unless tolerate_down, when it is named in a warning and skipped.
CREATE OR REPLACE FUNCTION aloro_webhook._on_nodes(command text, groups integer[] DEFAULT NULL,
										tolerate_down boolean DEFAULT false)
RETURNS SETOF text LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_names		text[];
	v_ports		integer[];
	v_commands	text[];
	r			record;
	v_answer	jsonb;
BEGIN
	IF NOT aloro_webhook._citus_coordinator() THEN
		RETURN;
	END IF;
	EXECUTE 'SELECT pg_catalog.array_agg(n.nodename ORDER BY n.groupid), '
			'       pg_catalog.array_agg(n.nodeport ORDER BY n.groupid) '
			'  FROM pg_catalog.pg_dist_node n '
			' WHERE n.isactive AND n.noderole OPERATOR(pg_catalog.=) ''primary'' '
			'   AND n.groupid OPERATOR(pg_catalog.<>) (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l) '
			'   AND ($1 IS NULL OR n.groupid OPERATOR(pg_catalog.=) ANY ($1))'
		INTO v_names, v_ports USING groups;
	IF v_names IS NULL THEN
		RETURN;
	END IF;
	v_commands := pg_catalog.array_fill(pg_catalog.format('SELECT aloro_webhook._run_here(%L)', command),
										ARRAY[pg_catalog.cardinality(v_names)]);
	FOR r IN EXECUTE 'SELECT node_name, node_port, success, result '
					 '  FROM pg_catalog.master_run_on_worker($1, $2, $3, true)'
		USING v_names, v_ports, v_commands
	LOOP
		IF NOT r.success THEN
			IF tolerate_down THEN
				RAISE WARNING 'node %:% did not answer: %', r.node_name, r.node_port, r.result;
				CONTINUE;
			END IF;
			RAISE EXCEPTION 'node %:% did not answer: %', r.node_name, r.node_port, r.result
				USING ERRCODE = 'connection_failure',
					  HINT = 'Run it again once the node is back.';
		END IF;
		v_answer := r.result::jsonb;
		IF v_answer ? 'sqlstate' THEN
			PERFORM aloro_webhook._raise(v_answer->>'sqlstate', v_answer->>'message',
										v_answer->>'detail', v_answer->>'hint');
		END IF;
		RETURN NEXT v_answer->>'result';
	END LOOP;
END
$$;

-- The Citus group of the other node that holds a delivery, or NULL when it
-- is this node's (always NULL without Citus): ids are numbered per group.
CREATE OR REPLACE FUNCTION aloro_webhook._node_of(delivery_id bigint)
RETURNS integer LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
	SELECT g FROM (SELECT (delivery_id OPERATOR(pg_catalog.>>) 48)::integer AS g) x
	 WHERE x.g OPERATOR(pg_catalog.<>) 0 AND aloro_webhook._citus_coordinator()
$$;

-- A time as text that any node reads back as the same time, whatever its
-- DateStyle and TimeZone.
CREATE OR REPLACE FUNCTION aloro_webhook._time_text(t timestamptz)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN pg_catalog.isfinite(t)
		THEN pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
		ELSE t::text END
$$;

-- watch() on a Citus coordinator: refuses a calls table whose shards have
-- several placements (a reference table, or citus.shard_replication_factor
-- above 1: the trigger would fire on each, and each node would send the
-- call), then the configuration goes to every node (SECURITY DEFINER:
-- distributing the extension's table is its owner's).
CREATE OR REPLACE FUNCTION aloro_webhook._citus_setup(calls regclass)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	v_copies bigint;
BEGIN
	IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
		RETURN;
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RETURN;
	END IF;
	EXECUTE 'SELECT pg_catalog.max(n) FROM (SELECT pg_catalog.count(*) AS n '
			'  FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid) '
			' WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1 GROUP BY s.shardid) x'
		INTO v_copies USING calls;
	IF v_copies > 1 THEN
		RAISE EXCEPTION 'table % keeps each call on % nodes', calls, v_copies
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'The call-ended trigger fires on every copy of a shard, so each of those nodes would send every call.',
				  HINT = 'Distribute the calls table with create_distributed_table() and citus.shard_replication_factor = 1 (the default); keep a node''s data safe with a streaming standby.';
	END IF;
	IF aloro_webhook._citus_coordinator() THEN
		RETURN;
	END IF;
	-- the reference table carries the trigger that applies it on each node
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	PERFORM pg_catalog.create_reference_table('aloro_webhook.webhook_config');
	INSERT INTO aloro_webhook.webhook_config AS c (id, config)
	SELECT w.id, pg_catalog.to_jsonb(w) FROM aloro_webhook.webhooks w
	ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config;
	-- each node's delivery ids (its worker would within seconds; now, before calls end there)
	FOR r IN SELECT * FROM pg_catalog.run_command_on_all_nodes('SELECT aloro_webhook._citus_node_ids()') LOOP
		IF NOT r.success THEN
			RAISE WARNING 'node % could not take its range of delivery ids yet: %', r.nodeid, r.result
				USING HINT = 'Its delivery worker sets it up within seconds once the node runs the extension.';
		END IF;
	END LOOP;
END
$$;
