# Nothing an ordinary account does makes the extension run its code as a
# superuser, and no secret reaches the server log.  Each case is an attack by
# a real non-superuser role; the attacker's own function records who it ran
# as (current_user, rolsuper) in a table of the attacker's, and the test
# asserts it never ran as a superuser:
#
#  1. an admin (member of aloro_webhook_admin) tries TRIGGER, REFERENCES and
#     TRUNCATE on every table of the extension;
#  2. the owner of a watched table gives its id a type of their own with a
#     cast to text, then deletes and renames calls (the SECURITY DEFINER
#     call-forgotten trigger) and asks for call_payload();
#  3. a role with CREATE on public defines public.format(text, bigint) and
#     public.now(), then lets the worker fail a delivery whose webhook is
#     gone (the sweep) and one whose webhook was deleted in flight (the
#     record statement);
#  4. a non-superuser database owner sets the database's search_path to
#     public first, with a public.now(), and has the worker restart there;
#  5. a NULL in any NOT NULL column of webhooks (id included) is refused by
#     name, and the secret is in neither the error nor the server log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $secret = 'whsec_privileges_never_logged_4242';

# the attacker's evidence: one row per call of an attacker function
my $evidence_sql = q{
	CREATE TABLE public.pwned (fn text, who text, super boolean, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT, SELECT ON public.pwned TO PUBLIC;
};
# the body every attacker function runs before doing its job
sub record_call
{
	my ($fn) = @_;
	return "INSERT INTO public.pwned (fn, who, super)
	        SELECT '$fn', current_user, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;";
}

sub ran_as_superuser
{
	my ($node, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT coalesce(string_agg(DISTINCT fn || ' as ' || who, ', '), '') FROM public.pwned WHERE super");
}

my $node = aw_node('privileges', conf => { 'aloro_webhook.idle_check_interval' => '200ms' });
my $rcv = start_receiver(name => 'privileges');
ok(wait_for_worker($node, 30), 'the delivery worker runs');
$node->safe_psql('postgres', $evidence_sql);

# ---------------------------------------------------------------------------
# 1. An admin who is not a superuser: no TRIGGER, REFERENCES, TRUNCATE
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', q{
		CREATE ROLE mallory_admin LOGIN NOSUPERUSER IN ROLE aloro_webhook_admin;
		GRANT CREATE ON SCHEMA public TO mallory_admin;
	});
	$node->safe_psql('postgres', "CREATE FUNCTION public.admin_evil() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN " . record_call('admin_evil') . " RETURN NULL; END \$\$;
		ALTER FUNCTION public.admin_evil() OWNER TO mallory_admin;");

	my @tables = split /\n/, $node->safe_psql('postgres', q{
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'aloro_webhook'::regnamespace AND c.relkind IN ('r', 'p')
		 ORDER BY 1});
	ok(scalar(@tables) >= 5, 'the extension has its tables (' . join(', ', @tables) . ')');
	for my $t (@tables)
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"SET ROLE mallory_admin;
			 CREATE TRIGGER evil AFTER INSERT OR UPDATE OR DELETE ON $t
			   FOR EACH STATEMENT EXECUTE FUNCTION public.admin_evil();");
		like($err, qr/permission denied/, "admin: CREATE TRIGGER on $t is refused");
		($rc, $out, $err) = $node->psql('postgres',
			"SET ROLE mallory_admin; TRUNCATE $t;");
		like($err, qr/permission denied/, "admin: TRUNCATE $t is refused");
	}
	for my $ref ('aloro_webhook.delivery_log (id)', 'aloro_webhook.queue (delivery_id)', 'aloro_webhook.payloads (id)',
		'aloro_webhook.webhooks (id)', 'aloro_webhook.ended_calls (call_id)')
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"SET ROLE mallory_admin; CREATE TABLE public.admin_fk (x bigint REFERENCES $ref);");
		like($err, qr/permission denied/, "admin: a foreign key to $ref is refused");
	}
	# what an admin is for still works
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET ROLE mallory_admin;
		 SELECT aloro_webhook.create_webhook('$rcv->{url}/ok?case=priv_admin', assistant_id => 'asst_priv_admin');");
	is($rc, 0, 'admin: creates a webhook') or diag($err);
	my $wid = $out;
	my $d = end_call($node, 'call_priv_admin', tag => 'asst_priv_admin');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d", 'succeeded', 20),
		'admin: its webhook delivers');
	($rc, $out, $err) = $node->psql('postgres',
		"SET ROLE mallory_admin; SELECT aloro_webhook.redeliver($d) = $d, aloro_webhook.test_webhook($wid) > 0;");
	is($out, 't|t', 'admin: redelivers and queues a test request through the functions') or diag($err);
	($rc, $out, $err) = $node->psql('postgres',
		"SET ROLE mallory_admin; UPDATE aloro_webhook.deliveries SET status = 'pending' WHERE id = $d;");
	like($err, qr/permission denied/, 'admin: does not write the queue directly');
	is(ran_as_superuser($node), '', 'admin: no function of the admin ever ran as a superuser');
}

# ---------------------------------------------------------------------------
# 2. The owner of a watched table, with an id type and a cast of their own
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', q{
		CREATE ROLE mallory_owner LOGIN NOSUPERUSER IN ROLE aloro_webhook_admin;
		CREATE SCHEMA mallory AUTHORIZATION mallory_owner;
	});
	my $setup = "SET ROLE mallory_owner;
		CREATE TYPE mallory.call_ref AS (v text);
		CREATE FUNCTION mallory.call_ref_text(mallory.call_ref) RETURNS text LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('cast_to_text') . " RETURN (\$1).v; END \$\$;
		CREATE CAST (mallory.call_ref AS text) WITH FUNCTION mallory.call_ref_text(mallory.call_ref);
		CREATE FUNCTION mallory.call_ref_eq(mallory.call_ref, mallory.call_ref) RETURNS boolean LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('operator_eq') . " RETURN (\$1).v = (\$2).v; END \$\$;
		CREATE OPERATOR mallory.= (LEFTARG = mallory.call_ref, RIGHTARG = mallory.call_ref,
		                           FUNCTION = mallory.call_ref_eq);
		CREATE TABLE mallory.calls (id mallory.call_ref, status text, assistant_id text);
		SELECT aloro_webhook.watch('mallory.calls');";
	my ($rc, $out, $err) = $node->psql('postgres', $setup);
	is($rc, 0, 'owner: a table with its own id type, cast and operator is watched') or diag($err);
	add_webhook($node, "$rcv->{url}/ok?case=priv_owner", tag => 'asst_priv_owner');
	($rc, $out, $err) = $node->psql('postgres', q{
		SET ROLE mallory_owner;
		SET search_path = mallory, public;
		INSERT INTO mallory.calls VALUES (ROW('mc_1'), 'completed', 'asst_priv_owner'),
		                                 (ROW('mc_2'), 'completed', 'asst_priv_owner'),
		                                 (ROW('mc_3'), 'in-progress', 'asst_priv_owner');
		UPDATE mallory.calls SET id = ROW('mc_2b') WHERE (id).v = 'mc_2';
		DELETE FROM mallory.calls WHERE (id).v = 'mc_1';
		UPDATE mallory.calls SET status = 'completed' WHERE (id).v = 'mc_3';});
	is($rc, 0, 'owner: calls end, are renamed and deleted') or diag($err);
	is($node->safe_psql('postgres',
			q{SELECT string_agg(call_id, ',' ORDER BY call_id) FROM aloro_webhook.ended_calls WHERE call_id LIKE '(mc%'}),
		'(mc_2b),(mc_3)', 'owner: the ended marks follow the rows (read through the type\'s output function)');
	($rc, $out, $err) = $node->psql('postgres',
		q{SET ROLE mallory_owner; SELECT aloro_webhook.call_payload('(mc_3)') LIKE '%"id":"(mc_3)"%';});
	is($out, 't', 'owner: call_payload() finds the call by its id') or diag($err);
	$node->psql('postgres', q{SELECT aloro_webhook.call_payload('(mc_2b)')});
	$node->safe_psql('postgres', q{TRUNCATE mallory.calls});
	is(ran_as_superuser($node), '',
		'owner: neither the cast nor the operator of the id type ever ran as a superuser');
}

# ---------------------------------------------------------------------------
# 3. CREATE on public: the worker's SQL is not captured
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', q{
		CREATE ROLE mallory_public LOGIN NOSUPERUSER;
		GRANT CREATE ON SCHEMA public TO mallory_public;
	});
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE mallory_public;
		CREATE FUNCTION public.format(text, bigint) RETURNS text LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.format') . " RETURN 'captured'; END \$\$;
		CREATE FUNCTION public.format(text, bigint, text) RETURNS text LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.format3') . " RETURN 'captured'; END \$\$;
		CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.now') . " RETURN pg_catalog.now(); END \$\$;
		CREATE FUNCTION public.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.unnest') . " RETURN QUERY SELECT * FROM pg_catalog.unnest(\$1); END \$\$;");
	is($rc, 0, 'public: the attacker defines format(), now() and unnest() in public') or diag($err);

	# the sweep: a waiting delivery whose webhook no longer exists
	my $gone = $node->safe_psql('postgres', q{
		INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, body)
		VALUES (987654321, 'call_priv_orphan', '{}') RETURNING id});
	ok(poll_until($node, "SELECT last_error FROM aloro_webhook.deliveries WHERE id = $gone",
			'webhook 987654321 was deleted', 20),
		'public: the worker fails a delivery of a deleted webhook, with its own format()');

	# the record statement: a webhook deleted while its delivery is in flight
	my $slow = start_receiver(name => 'privileges_slow');
	my $w = add_webhook($node, "$slow->{url}/slow/1500", tag => 'asst_priv_inflight');
	my $d = end_call($node, 'call_priv_inflight', tag => 'asst_priv_inflight');
	ok(wait_for_requests($slow, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $d } @_ },
			10, 'the request to be in flight'),
		'public: the delivery is in flight');
	$node->safe_psql('postgres', "DELETE FROM aloro_webhook.webhooks WHERE id = $w");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d", 'succeeded', 20)
		  || poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d", 'failed', 5),
		'public: the attempt in flight is recorded');
	# and one whose attempt fails while its webhook is gone (the orphaned branch)
	my $w2 = add_webhook($node, "$slow->{url}/slow/1500?status=500", tag => 'asst_priv_inflight2');
	my $d2 = end_call($node, 'call_priv_inflight2', tag => 'asst_priv_inflight2');
	ok(wait_for_requests($slow, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $d2 } @_ },
			10, 'the failing request to be in flight'),
		'public: a failing delivery is in flight');
	$node->safe_psql('postgres', "DELETE FROM aloro_webhook.webhooks WHERE id = $w2");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d2", 'failed', 20),
		'public: its failed attempt finishes it, its webhook being gone');
	like($node->safe_psql('postgres', "SELECT last_error FROM aloro_webhook.deliveries WHERE id = $d2"),
		qr/^webhook $w2 was deleted; last attempt: HTTP 500/, 'public: the message comes from pg_catalog.format()');
	stop_receiver($slow);
	is(ran_as_superuser($node), '', 'public: no function in public ever ran as a superuser');
}

# ---------------------------------------------------------------------------
# 5. NULLs in webhooks are refused by name; the secret is never logged
# ---------------------------------------------------------------------------
{
	my $log_start = -s $node->logfile;
	my $id = $node->safe_psql('postgres',
		"SET log_statement = 'none'; SELECT aloro_webhook.create_webhook('https://nulls.example/', secret => '$secret')");
	my @notnull = split /\n/, $node->safe_psql('postgres', q{
		SELECT a.attname FROM pg_attribute a
		 WHERE a.attrelid = 'aloro_webhook.webhooks'::regclass AND a.attnum > 0
		   AND NOT a.attisdropped AND a.attnotnull ORDER BY a.attnum});
	ok(grep({ $_ eq 'id' } @notnull), 'nulls: id is among the NOT NULL columns (' . join(', ', @notnull) . ')');
	for my $col (@notnull)
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"UPDATE aloro_webhook.webhooks SET $col = NULL WHERE id = $id");
		like($err, qr/ERROR:  webhook $col must not be NULL/, "nulls: SET $col = NULL is refused by name");
		unlike($err, qr/\Q$secret\E|Failing row/, "nulls: the error for $col shows no row and no secret");
	}
	my ($rc, $out, $err) = $node->psql('postgres',
		"INSERT INTO aloro_webhook.webhooks (id, url, secret) OVERRIDING SYSTEM VALUE VALUES (NULL, 'https://n.example/', 'x')");
	like($err, qr/webhook id must not be NULL/, 'nulls: an explicit NULL id on INSERT is refused by name');
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_start);
	like($log, qr/webhook id must not be NULL/, 'nulls: the refusals are in the server log');
	unlike($log, qr/\Q$secret\E/, 'nulls: the secret is not in the server log');
	unlike($log, qr/Failing row contains/, 'nulls: no row is printed in the server log');
}

$node->stop;

# ---------------------------------------------------------------------------
# 4. A database owner who is not a superuser: search_path set on the database
# ---------------------------------------------------------------------------
{
	my $n4 = aw_node('privileges_dbowner', create_extension => 0,
		conf => { 'aloro_webhook.database_name' => 'owned_db', 'aloro_webhook.idle_check_interval' => '200ms' });
	$n4->safe_psql('postgres', q{
		CREATE ROLE mallory_dbo LOGIN NOSUPERUSER;
		CREATE DATABASE owned_db OWNER mallory_dbo;
	});
	$n4->safe_psql('owned_db', 'CREATE EXTENSION aloro_webhook');
	$n4->safe_psql('owned_db', $evidence_sql);
	my ($rc, $out, $err) = $n4->psql('owned_db', "SET ROLE mallory_dbo;
		CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.now') . " RETURN pg_catalog.now(); END \$\$;
		CREATE FUNCTION public.format(text, bigint) RETURNS text LANGUAGE plpgsql AS \$\$
			BEGIN " . record_call('public.format') . " RETURN 'captured'; END \$\$;
		ALTER DATABASE owned_db SET search_path = public, pg_catalog;");
	is($rc, 0, 'db owner: sets the database search_path and defines public.now()') or diag($err);
	is($n4->safe_psql('owned_db', 'SHOW search_path'), 'public, pg_catalog',
		'db owner: new sessions get that search_path');

	# the worker restarts and works under the new database defaults
	my $old = '';
	ok(wait_until(sub {
				$old = $n4->safe_psql('postgres',
					"SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity
					  WHERE backend_type = 'aloro_webhook worker' AND datname = 'owned_db'");
				$old ne '';
			}, 30, 'the worker in owned_db'),
		'db owner: the worker runs in the database');
	$n4->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	my $pid = '';
	ok(wait_until(sub {
				$pid = $n4->safe_psql('postgres',
					"SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity
					  WHERE backend_type = 'aloro_webhook worker' AND datname = 'owned_db' AND pid <> $old");
				$pid ne '';
			}, 30, 'a new worker'),
		'db owner: the worker restarted, under the database\'s new defaults');
	my $w = $n4->safe_psql('owned_db',
		"SELECT aloro_webhook.create_webhook('$rcv->{url}/ok?case=priv_dbo')");
	$n4->safe_psql('owned_db', "INSERT INTO aloro_webhook.calls (id, status) VALUES ('call_priv_dbo', 'completed')");
	ok(wait_until(sub { $n4->safe_psql('owned_db',
				"SELECT status FROM aloro_webhook.deliveries WHERE call_id = 'call_priv_dbo'") eq 'succeeded' }, 20,
			'the delivery'),
		'db owner: the delivery is sent');
	# an orphan too, for the sweep's format()
	$n4->safe_psql('owned_db', q{INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, body)
		VALUES (55555, 'call_priv_dbo_orphan', '{}')});
	ok(wait_until(sub { $n4->safe_psql('owned_db',
				"SELECT last_error FROM aloro_webhook.deliveries WHERE call_id = 'call_priv_dbo_orphan'")
				  eq 'webhook 55555 was deleted' }, 20, 'the orphan'),
		'db owner: the sweep fails the orphan with pg_catalog.format()');
	is(ran_as_superuser($n4, 'owned_db'), '', 'db owner: public.now() and format() never ran as a superuser');
	$n4->stop;
}

stop_receiver($rcv);
done_testing();
