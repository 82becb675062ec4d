# Upgrades keep the queue: a database on 0.1.0 with webhooks and queued
# deliveries (one of them left in flight) is updated with ALTER EXTENSION
# aloro_webhook UPDATE.  Its objects then equal a fresh install's -- tables,
# columns, constraints, indexes, triggers, functions, views, privileges --
# and every queued delivery is still there, with its exact body, and is sent.
# Meanwhile (the library is already the current version) calls still end and are queued,
# and the worker waits, saying why.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('upgrade', create_extension => 0,
	conf => { 'aloro_webhook.idle_check_interval' => '200ms' });
my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'aloro_webhook'");
my $rcv = start_receiver(name => 'upgrade', secret => 'whsec_upgrade');
$node->safe_psql('postgres', "CREATE EXTENSION aloro_webhook VERSION '0.1.0'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
	'0.1.0', 'installed at 0.1.0');
ok(wait_until(sub { slurp_file($node->logfile) =~ /waiting for ALTER EXTENSION aloro_webhook UPDATE in database "postgres"/ },
		20, 'the worker waits'),
	"the worker (library $current) waits for the update, saying so");

# webhooks and queued deliveries, made the 0.1.0 way
my $a = $node->safe_psql('postgres',
	"SELECT aloro_webhook.create_webhook('$rcv->{url}/ok?case=up_a', secret => 'whsec_upgrade', assistant_id => 'asst_up')");
my $port = $rcv->{port};
my $b = $node->safe_psql('postgres',
	"SELECT aloro_webhook.create_webhook('http://u:pw\@127.0.0.1:$port/ok?case=up_b', include_recording => false,
	                                     assistant_id => 'asst_up')");
$node->safe_psql('postgres', q{
	CREATE TABLE public.platform_calls (id bigint PRIMARY KEY, status text, assistant_id text, recording_url text);
	SELECT aloro_webhook.watch('public.platform_calls');
	INSERT INTO aloro_webhook.calls (id, status, assistant_id, recording_url)
	SELECT 'call_up_' || g, 'completed', 'asst_up', 'https://rec.example/' || g FROM generate_series(1, 10) g;
	INSERT INTO public.platform_calls VALUES (7001, 'missed', 'asst_up', NULL);
});
my $test = $node->safe_psql('postgres', "SELECT aloro_webhook.test_webhook($a)");
# one left in flight by a worker of the old version
$node->safe_psql('postgres',
	"UPDATE aloro_webhook.deliveries SET claimed_at = now() WHERE call_id = 'call_up_1' AND webhook_id = $a");
my $before = $node->safe_psql('postgres',
	"SELECT string_agg(format('%s|%s|%s|%s', id, webhook_id, coalesce(call_id, '-'), md5(body)), E'\\n' ORDER BY id)
	   FROM aloro_webhook.deliveries");
my $n_before = $node->safe_psql('postgres', 'SELECT count(*) FROM aloro_webhook.deliveries');
is($n_before, '23', 'queued under 0.1.0: 22 call deliveries and a test request');
is(scalar(receiver_log($rcv)), 0, 'nothing sent before the update');

$node->safe_psql('postgres', 'ALTER EXTENSION aloro_webhook UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
	$current, "updated to $current");

# ---------------------------------------------------------------------------
# the objects equal a fresh install's
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION aloro_webhook');
my $catalog = q{
	WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'aloro_webhook'),
	members AS (
		SELECT classid, objid FROM pg_depend, ext WHERE refclassid = 'pg_extension'::regclass
		   AND refobjid = ext.oid AND deptype = 'e'),
	rels AS (SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid)
	SELECT 'rel ' || relname || ' ' || relkind::text || ' ' || coalesce(array_to_string(reloptions, ','), '')
	       || ' acl=' || coalesce(relacl::text, '') || ' comment=' || coalesce(obj_description(oid, 'pg_class'), '')
	  FROM rels
	UNION ALL
	SELECT 'col ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
	       || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
	       || ' identity=' || a.attidentity::text || ' compression=' || a.attcompression::text
	       || ' acl=' || coalesce(a.attacl::text, '')
	       -- the column's place among the table's columns (the update's dropped columns leave gaps in attnum)
	       || ' pos=' || row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum)
	  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	UNION ALL
	SELECT 'con ' || r.relname || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
	  FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
	UNION ALL
	SELECT 'idx ' || r.relname || ' ' || pg_get_indexdef(i.indexrelid)
	  FROM rels r JOIN pg_index i ON i.indrelid = r.oid
	UNION ALL
	SELECT 'trg ' || pg_get_triggerdef(t.oid)
	  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
	UNION ALL
	SELECT 'view ' || r.relname || ' ' || pg_get_viewdef(r.oid) FROM rels r WHERE r.relkind = 'v'
	UNION ALL
	SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
	       || ' acl=' || coalesce(p.proacl::text, '') || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
	  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
	UNION ALL
	SELECT 'dump ' || c.relname || ' ' || coalesce(x.cond, '')
	  FROM ext, pg_extension e, unnest(e.extconfig, e.extcondition) AS x(oid, cond)
	  JOIN pg_class c ON c.oid = x.oid WHERE e.oid = ext.oid
	ORDER BY 1
};
my $upgraded = $node->safe_psql('postgres', $catalog);
my $fresh = $node->safe_psql('fresh', $catalog);
ok(length($fresh) > 1000, 'the catalog description is not empty');
is($upgraded, $fresh, "the updated extension's objects equal a fresh $current install's")
  or do {
	my %u = map { $_ => 1 } split /\n/, $upgraded;
	my %f = map { $_ => 1 } split /\n/, $fresh;
	diag("only after the update: $_") for grep { !$f{$_} } sort keys %u;
	diag("only in a fresh install: $_") for grep { !$u{$_} } sort keys %f;
  };

# ---------------------------------------------------------------------------
# the queue is intact and still delivers
# ---------------------------------------------------------------------------
my $after = $node->safe_psql('postgres',
	"SELECT string_agg(format('%s|%s|%s|%s', id, webhook_id, coalesce(call_id, '-'), md5(body)), E'\\n' ORDER BY id)
	   FROM aloro_webhook.deliveries");
is($after, $before, 'every delivery is still there, with its exact body');
like($node->safe_psql('postgres', "SELECT url || ' ' || url_password FROM aloro_webhook.webhooks WHERE id = $b"),
	qr{^http://u:\*\*\*\@127\.0\.0\.1:\d+/ok\?case=up_b pw$}, 'a password in a URL moved out of it');
ok(poll_until($node, "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries", $n_before, 30),
	'every queued delivery is sent after the update');
my %bodies = map { split /\|/, $_, 2 } split /\n/, $node->safe_psql('postgres',
	"SELECT string_agg(id || '|' || body, E'\\n') FROM aloro_webhook.deliveries");
my @log = receiver_log($rcv);
my %seen;
$seen{ $_->{headers}{'x-aloro-delivery'} }++ for @log;
is(scalar(keys %seen), $n_before, 'the receiver got each of them');
is(scalar(grep { ($_->{body} // '') ne ($bodies{ $_->{headers}{'x-aloro-delivery'} } // '-') } @log), 0,
	'with exactly the queued bytes');
is(scalar(grep { $_->{signed} && !$_->{sig_raw_ok} } @log), 0, 'signed ones verify');
my ($auth) = grep { ($_->{path} // '') =~ /case=up_b/ } @log;
ok(defined $auth && ($auth->{headers}{authorization} // '') =~ /^Basic /, 'the URL password is sent as credentials');
my $flight = $node->safe_psql('postgres',
	"SELECT d.id FROM aloro_webhook.deliveries d WHERE d.call_id = 'call_up_1' AND d.webhook_id = $a");
like($node->safe_psql('postgres',
		"SELECT string_agg(coalesce(error, 'ok'), ' / ' ORDER BY attempt) FROM aloro_webhook.delivery_attempts WHERE delivery_id = $flight"),
	qr{^interrupted: .* / ok$}, 'the one left in flight was recorded as interrupted, then sent');
is($seen{$test}, 1, 'the test request went out once');

# and calls that end now take the new path
$node->safe_psql('postgres', "INSERT INTO public.platform_calls VALUES (7002, 'completed', 'asst_up', NULL)");
ok(poll_until($node, "SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = '7002' AND status = 'succeeded'", '2', 20),
	'a call that ends after the update is delivered');

$node->stop;
stop_receiver($rcv);
done_testing();
