# A backup of the call database restores: pg_dump -Fc, then a plain
# pg_restore (and one with --single-transaction) into a new database of the
# same cluster and into a fresh cluster.  The restore brings back the state
# as it was -- calls (the extension's table and a watched platform table),
# ended_calls with their original times, every delivery and attempt -- and
# ends no call again.  In the fresh cluster, whose worker runs in the
# restored database: nothing that succeeded or failed is sent again, a
# delivery that was in flight when the dump was taken is sent again, and
# held deliveries (of a disabled webhook) go out once it is enabled.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP ();
use IPC::Run ();

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('restore_src', conf => { 'aloro_webhook.timeout' => '10s' });
my $rcv = start_receiver(name => 'restore');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

# a platform table of its own, watched, beside the extension's calls table
$node->safe_psql('postgres', q{
	CREATE TABLE public.platform_calls (id text PRIMARY KEY, status text NOT NULL,
	                                    assistant_id text, ended_at timestamptz);
	SELECT aloro_webhook.watch('public.platform_calls');
});
my $ok = add_webhook($node, "$rcv->{url}/ok?case=restore_ok", tag => 'asst_r_ok', secret => 'whsec_restore');
my $bad = add_webhook($node, "$rcv->{url}/status/500?case=restore_bad", tag => 'asst_r_bad');
my $held = add_webhook($node, "$rcv->{url}/ok?case=restore_held", tag => 'asst_r_held');
my $slow = add_webhook($node, "$rcv->{url}/slow/4000?case=restore_slow", tag => 'asst_r_slow');

my @ok_ids = end_calls($node, 'call_r_ok', 5, tag => 'asst_r_ok');
my @bad_ids = end_calls($node, 'call_r_bad', 2, tag => 'asst_r_bad');
$node->safe_psql('postgres', q{
	INSERT INTO public.platform_calls VALUES
	  ('pcall_r_1', 'completed', 'asst_r_ok', '2024-03-15 14:30:00+00'),
	  ('pcall_r_2', 'in-progress', 'asst_r_ok', NULL),
	  ('pcall_r_3', 'missed', 'asst_r_bad', '2024-03-15 15:00:00+00');
});
# held: queued, and its webhook disabled in the same transaction
$node->safe_psql('postgres', qq{
	BEGIN;
	INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('call_r_held', 'completed', 'asst_r_held');
	UPDATE aloro_webhook.webhooks SET enabled = false WHERE id = $held;
	COMMIT;
});
ok(poll_until($node,
		"SELECT count(*) FILTER (WHERE status = 'succeeded') = 6 AND count(*) FILTER (WHERE status = 'failed') = 3
		   FROM aloro_webhook.deliveries WHERE webhook_id IN ($ok, $bad)", 't', 30),
	'source: the deliveries that can succeed did, those that cannot failed');
my $slow_id = end_call($node, 'call_r_slow', tag => 'asst_r_slow');
ok(wait_for_requests($rcv, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $slow_id } @_ },
		10, 'the slow request to be in flight'),
	'source: one delivery is in flight while the dump is taken');

my $state_sql = q{
	SELECT (SELECT string_agg(format('%s|%s|%s', call_id, source, ended_at), E'\n' ORDER BY call_id)
	          FROM aloro_webhook.ended_calls) AS ended,
	       (SELECT string_agg(format('%s|%s|%s', id, status, ended_at), E'\n' ORDER BY id)
	          FROM public.platform_calls) AS platform,
	       (SELECT string_agg(format('%s|%s', id, status), E'\n' ORDER BY id)
	          FROM aloro_webhook.calls) AS calls,
	       (SELECT string_agg(format('%s|%s|%s|%s|%s', id, webhook_id, call_id, md5(body), attempts), E'\n' ORDER BY id)
	          FROM aloro_webhook.deliveries WHERE status <> 'pending') AS finished,
	       (SELECT string_agg(format('%s|%s', id, call_id), E'\n' ORDER BY id)
	          FROM aloro_webhook.deliveries WHERE status = 'pending') AS pending,
	       (SELECT count(*) FROM aloro_webhook.delivery_attempts) AS attempts
};
my $dump = "${PostgreSQL::Test::Utils::tmp_check}/restore.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump -Fc of the call database');
my $before = query_row($node, $state_sql);
my $sent_before = scalar(receiver_log($rcv));
like($before->{ended}, qr/pcall_r_1\|platform_calls\|/, 'source: the platform table\'s call ended');

# ---------------------------------------------------------------------------
# 1. The same cluster: a plain pg_restore, and one in a single transaction
# ---------------------------------------------------------------------------
for my $case ([ 'restored_plain', [] ], [ 'restored_single', ['--single-transaction'] ])
{
	my ($db, $opts) = @$case;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($stdout, $stderr);
	my $ok_run = IPC::Run::run([ 'pg_restore', @$opts, '-d', $node->connstr($db), $dump ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok_run, "$db: pg_restore succeeds") or diag($stderr);
	is($stderr, '', "$db: pg_restore reports no error");
	my $after = query_row_db($node, $db, $state_sql);
	is($after->{ended}, $before->{ended}, "$db: ended_calls as they were, original times included");
	is($after->{platform}, $before->{platform}, "$db: the watched platform table's rows are all there");
	is($after->{calls}, $before->{calls}, "$db: aloro_webhook.calls as it was");
	is($after->{finished}, $before->{finished}, "$db: finished deliveries as they were, bodies included");
	is($after->{pending}, $before->{pending}, "$db: pending deliveries as they were, and no new one");
	is($after->{attempts}, $before->{attempts}, "$db: every attempt is in the history");
	# the restored database goes on working: a call that ends now is queued
	$node->safe_psql($db, q{INSERT INTO public.platform_calls VALUES ('pcall_r_new', 'completed', 'asst_r_ok', now())});
	is($node->safe_psql($db, "SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'pcall_r_new'"), '1',
		"$db: a call that ends after the restore is queued");
	is($node->safe_psql($db, q{SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'pcall_r_2'}), '0',
		"$db: the live call is still live");
}

# ---------------------------------------------------------------------------
# 2. A fresh cluster whose worker runs in the restored database
# ---------------------------------------------------------------------------
my $fresh = aw_node('restore_dst', create_extension => 0,
	conf => { 'aloro_webhook.database_name' => 'calls_restored',
			  'aloro_webhook.timeout' => '10s',
			  'aloro_webhook.idle_check_interval' => '200ms' });
$fresh->safe_psql('postgres', 'CREATE DATABASE calls_restored');
{
	my ($stdout, $stderr);
	my $ok_run = IPC::Run::run([ 'pg_restore', '-d', $fresh->connstr('calls_restored'), $dump ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok_run, 'fresh cluster: pg_restore succeeds') or diag($stderr);
	is($stderr, '', 'fresh cluster: pg_restore reports no error');
}
my $after = query_row_db($fresh, 'calls_restored', $state_sql);
is($after->{ended}, $before->{ended}, 'fresh cluster: ended_calls as they were');
is($after->{finished}, $before->{finished}, 'fresh cluster: finished deliveries as they were');

# the delivery that was in flight in the dump is released and sent again
ok(wait_until(sub {
			$fresh->safe_psql('calls_restored',
				"SELECT status FROM aloro_webhook.deliveries WHERE id = $slow_id") eq 'succeeded' }, 40,
		'the interrupted delivery'),
	'fresh cluster: the delivery that was in flight is sent again and succeeds');
like($fresh->safe_psql('calls_restored',
		"SELECT string_agg(coalesce(error, 'ok'), ' / ' ORDER BY attempt) FROM aloro_webhook.delivery_attempts
		  WHERE delivery_id = $slow_id"),
	qr/^interrupted: /, 'fresh cluster: its cut-off attempt is in the history as interrupted');
# held: still held, and goes out once enabled
my ($held_id) = $fresh->safe_psql('calls_restored',
	"SELECT id FROM aloro_webhook.deliveries WHERE webhook_id = $held");
is($fresh->safe_psql('calls_restored', "SELECT status FROM aloro_webhook.deliveries WHERE id = $held_id"),
	'pending', 'fresh cluster: the held delivery is still held');
$fresh->safe_psql('calls_restored', "UPDATE aloro_webhook.webhooks SET enabled = true WHERE id = $held");
ok(wait_until(sub {
			$fresh->safe_psql('calls_restored',
				"SELECT status FROM aloro_webhook.deliveries WHERE id = $held_id") eq 'succeeded' }, 20,
		'the held delivery'),
	'fresh cluster: the held delivery goes out once its webhook is enabled');

# nothing that had finished was sent again
my %finished = map { $_ => 1 } (@ok_ids, @bad_ids);
my @again = grep { $finished{ $_->{headers}{'x-aloro-delivery'} // '' } } (receiver_log($rcv))[ $sent_before .. scalar(receiver_log($rcv)) - 1 ];
is(scalar(@again), 0, 'fresh cluster: no delivery that had succeeded or failed was sent again');
my @held_sent = requests_for($rcv, $held_id);
is(scalar(@held_sent), 1, 'fresh cluster: the held delivery was sent once');

$fresh->stop;
$node->stop;
stop_receiver($rcv);
done_testing();

# query_row in another database
sub query_row_db
{
	my ($n, $db, $sql) = @_;
	my $out = $n->safe_psql($db, "SELECT coalesce(json_agg(q), '[]') FROM ($sql) q");
	return JSON::PP->new->utf8->decode($out)->[0];
}
