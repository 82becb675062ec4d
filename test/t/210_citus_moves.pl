# aloro_webhook while a Citus cluster changes shape under it: a shard moved
# (citus_move_shard_placement) while calls end on it, a worker node stopped
# with -m immediate while it delivers, and a node added later
# (citus_add_node) and filled by a rebalance while calls end.  Nothing is
# lost, nothing is sent twice (but what a stopped node had in flight, which
# at-least-once allows), and the node added later takes part with no step
# of its own.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;
use CitusTest;

my $secret = 'whsec_citus_moves_' . int(rand(1_000_000_000));
my $rcv = start_receiver(name => 'moves', secret => $secret);
my ($coord, $w1, $w2) = citus_cluster();
my %group = map { $_->port => node_group($_) } ($coord, $w1, $w2);

my $wa = $coord->safe_psql('postgres',
	"SET log_statement = 'none'; SELECT aloro_webhook.create_webhook(url => "
	  . quote_lit("$rcv->{url}/ok/a") . ", secret => " . quote_lit($secret) . ", name => 'a')");
ok(wait_for_worker($_, 30), $_->name . ': a delivery worker runs') for ($coord, $w1, $w2);

# calls ended one by one from a second session, while the test does something else
sub end_calls_in_background
{
	my ($ids) = @_;
	my $file = "$PostgreSQL::Test::Utils::tmp_check/calls_" . int(rand(1e9)) . '.sql';
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh "\\set ON_ERROR_STOP 1\n";
	for my $id (@$ids)
	{
		print $fh "INSERT INTO public.calls (id, status) VALUES (" . quote_lit($id) . ", 'completed');\n";
		print $fh "SELECT pg_sleep(0.005);\n";
	}
	close($fh);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAq', '-d', $coord->connstr('postgres'), '-f', $file ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub finish_background
{
	my ($bg) = @_;
	$bg->{h}->finish;
	return $? == 0 ? '' : ${ $bg->{err} };
}

# the calls each path received, by call id (how many times)
sub received
{
	my ($path, $prefix) = @_;
	my %n;
	for my $r (receiver_log($rcv))
	{
		next unless $r->{path} eq $path;
		my ($call) = $r->{body} =~ /"call":\{"id":"([^"]+)"/;
		$n{$call}++ if defined $call && index($call, $prefix) == 0;
	}
	return \%n;
}

sub wait_received
{
	my ($path, $prefix, $n, $timeout, $what) = @_;
	my $got = {};
	wait_until(sub { $got = received($path, $prefix); keys(%$got) >= $n }, $timeout, $what);
	return $got;
}

# ids that land on one shard
sub ids_on_shard
{
	my ($shard, $prefix, $n) = @_;
	return split /\n/, $coord->safe_psql('postgres',
		"SELECT id FROM (SELECT " . quote_lit($prefix) . " || g AS id FROM generate_series(1, 5000) g) x
		  WHERE get_shard_id_for_distribution_column('public.calls', x.id) = $shard
		  ORDER BY id LIMIT $n");
}

# the first shard of the calls table that a node holds
sub first_shard_on
{
	my ($node) = @_;
	return $coord->safe_psql('postgres',
		"SELECT min(shardid) FROM citus_shards
		  WHERE table_name = 'public.calls'::regclass AND nodeport = " . $node->port);
}

# ends these calls, in one statement on the coordinator
sub end_ids
{
	my (@ids) = @_;
	$coord->safe_psql('postgres',
		"INSERT INTO public.calls (id, status) SELECT unnest(ARRAY["
		  . join(',', map { quote_lit($_) } @ids) . "]), 'completed'");
	return;
}

# ---------------------------------------------------------------------------
# 1. A shard moves while calls end on it
# ---------------------------------------------------------------------------
{
	my $shard = first_shard_on($w1);
	my @during = ids_on_shard($shard, 'mv-', 150);
	my @others = map { "mv-other-$_" } 1 .. scalar(@during);
	my $bg = end_calls_in_background([ map { ($during[$_], $others[$_]) } 0 .. $#during ]);

	# let calls end before the move starts, then move while they go on
	wait_until(sub { $coord->safe_psql('postgres',
		"SELECT count(*) FROM public.calls WHERE id LIKE 'mv-%'") >= 20 }, 30, 'calls ending');
	my $t0 = $coord->safe_psql('postgres', 'SELECT now()');
	$coord->safe_psql('postgres',
		"SELECT citus_move_shard_placement($shard, '127.0.0.1', " . $w1->port
		  . ", '127.0.0.1', " . $w2->port . ", shard_transfer_mode => 'force_logical')");
	my $t1 = $coord->safe_psql('postgres', 'SELECT now()');
	is(finish_background($bg), '', 'every call ended while the shard moved');
	is($coord->safe_psql('postgres',
			"SELECT nodeport FROM citus_shards WHERE shardid = $shard"),
		$w2->port, 'the shard is on worker2 now');
	my $ended_during = $coord->safe_psql('postgres',
		"SELECT count(*) FROM aloro_webhook.delivery_history
		  WHERE call_id LIKE 'mv-%' AND created_at BETWEEN '$t0' AND '$t1'");
	ok($ended_during > 0, "calls ended during the move ($ended_during)");

	# and after it: the shard's calls are queued by its new node
	my @after = ids_on_shard($shard, 'mv-after-', 20);
	end_ids(@after);

	my $total = @during + @others + @after;
	my $got = wait_received('/ok/a', 'mv-', $total, 60, "$total calls");
	is(scalar(keys %$got), $total, "all $total calls delivered");
	is(scalar(grep { $_ != 1 } values %$got), 0, 'none sent twice');
	my $after_groups = $coord->safe_psql('postgres',
		"SELECT string_agg(DISTINCT (id >> 48)::text, ',') FROM aloro_webhook.delivery_history
		  WHERE call_id LIKE 'mv-after-%'");
	is($after_groups, $group{ $w2->port }, 'calls on the moved shard are queued by its new node');
	is($coord->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_history
			  WHERE call_id LIKE 'mv-%' AND status = 'succeeded'"),
		$total, 'the history on the coordinator has each of them, succeeded');
}

# ---------------------------------------------------------------------------
# 2. A worker node stopped -m immediate while it delivers
# ---------------------------------------------------------------------------
{
	$coord->safe_psql('postgres',
		"SET log_statement = 'none'; UPDATE aloro_webhook.webhooks SET url = "
		  . quote_lit("$rcv->{url}/slow/300") . " WHERE id = $wa");
	my $shard1 = first_shard_on($w1);
	my @ids = ids_on_shard($shard1, 'stop-', 40);
	end_ids(@ids);
	my $some = wait_received('/slow/300', 'stop-', 3, 30, 'the first deliveries');
	ok(keys(%$some) >= 3 && keys(%$some) < 40, 'worker1 is part way through its queue');
	$w1->stop('immediate');
	$w1->start;
	my $got = wait_received('/slow/300', 'stop-', 40, 90, 'every call, after the restart');
	is(scalar(keys %$got), 40, 'every call queued on the stopped node is delivered once it is back');
	ok(poll_until($coord,
			"SELECT count(*) FROM aloro_webhook.delivery_history
			  WHERE call_id LIKE 'stop-%' AND status = 'succeeded'", 40, 60),
		'and recorded succeeded');
	my $twice = grep { $_ > 1 } values %$got;
	note "sent again after the stop (in flight when it came): $twice";
	$coord->safe_psql('postgres',
		"SET log_statement = 'none'; UPDATE aloro_webhook.webhooks SET url = "
		  . quote_lit("$rcv->{url}/ok/a") . " WHERE id = $wa");
}

# ---------------------------------------------------------------------------
# 3. A node added later, filled by a rebalance while calls end
# ---------------------------------------------------------------------------
{
	my $w3 = citus_node('worker3');
	citus_join($coord, $w3);
	my @ids = map { "rb-$_" } 1 .. 300;
	my $bg = end_calls_in_background(\@ids);
	$coord->safe_psql('postgres', 'SELECT citus_rebalance_start(shard_transfer_mode => \'force_logical\')');
	$coord->safe_psql('postgres', 'SELECT citus_rebalance_wait()');
	is(finish_background($bg), '', 'calls ended throughout the rebalance');
	my $on_w3 = $coord->safe_psql('postgres',
		"SELECT count(*) FROM citus_shards
		  WHERE table_name = 'public.calls'::regclass AND nodeport = " . $w3->port);
	ok($on_w3 > 0, "the rebalance moved shards to the new node ($on_w3)");

	my $g3 = node_group($w3);
	my $config = on_all_nodes($coord,
		"SELECT string_agg(id || ' ' || url || ' ' || md5(coalesce(secret, '')), ',' ORDER BY id)
		   FROM aloro_webhook.webhooks");
	is($config->{ $w3->port }, $config->{ $coord->port }, 'the new node has the webhooks');
	ok(poll_until($w3,
			"SELECT min_value = (${g3}::bigint << 48) + 1 FROM pg_sequences
			  WHERE sequencename = 'delivery_log_id_seq'", 't', 30),
		'and its own range of delivery ids');

	my $shard3 = first_shard_on($w3);
	my @later = ids_on_shard($shard3, 'rb-later-', 20);
	end_ids(@later);
	my $total = @ids + @later;
	my $got = wait_received('/ok/a', 'rb-', $total, 90, "$total calls");
	is(scalar(keys %$got), $total, "all $total calls delivered");
	is(scalar(grep { $_ != 1 } values %$got), 0, 'none sent twice');
	is($coord->safe_psql('postgres',
			"SELECT string_agg(DISTINCT (id >> 48)::text, ',') FROM aloro_webhook.delivery_history
			  WHERE call_id LIKE 'rb-later-%'"),
		$g3, 'calls on its shards are queued and sent by the new node');
	ok(poll_until($coord,
			"SELECT count(*) FROM aloro_webhook.delivery_history
			  WHERE call_id LIKE 'rb-%' AND status = 'succeeded'", $total, 60),
		'and the history on the coordinator shows them');

	# a webhook created now reaches the new node too
	my $wz = $coord->safe_psql('postgres',
		"SET log_statement = 'none'; SELECT aloro_webhook.create_webhook(url => "
		  . quote_lit("$rcv->{url}/ok/z") . ", secret => " . quote_lit($secret) . ", name => 'z')");
	end_ids(ids_on_shard($shard3, 'z-', 5));
	my $z = wait_received('/ok/z', 'z-', 5, 30, 'the new webhook');
	is(scalar(keys %$z), 5, 'a webhook created after the node joined is sent by it');
	$w3->stop;
}

$_->stop for ($w1, $w2, $coord);

# ---------------------------------------------------------------------------
# 4. watch() on a database that became a cluster only afterwards
# ---------------------------------------------------------------------------
{
	my $lone = citus_node('lone');
	$lone->safe_psql('postgres', "CREATE TABLE public.calls (id text PRIMARY KEY, status text NOT NULL);
		CREATE EXTENSION aloro_webhook;
		SELECT aloro_webhook.watch('public.calls');
		SET log_statement = 'none';
		SELECT aloro_webhook.create_webhook(" . quote_lit("$rcv->{url}/ok/lone") . ", " . quote_lit($secret) . ");");
	is($lone->safe_psql('postgres', 'SELECT aloro_webhook._citus_coordinator()'), 'f',
		'a database with Citus but no cluster yet: watch() had nothing to set up');
	my @lw = map { citus_node("lone_w$_") } 1 .. 2;
	$lone->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('127.0.0.1', " . $lone->port . ")");
	citus_join($lone, $_) for @lw;
	$lone->safe_psql('postgres', "SET citus.enable_unsafe_triggers = on;
		SELECT create_distributed_table('public.calls', 'id')");
	ok(poll_until($lone, 'SELECT aloro_webhook._citus_coordinator()', 't', 30),
		'once the table is distributed, the coordinator\'s worker sets the nodes up');
	ok(webhooks_everywhere($lone, 1),
		'every node has the webhook');
	$lone->safe_psql('postgres',
		"INSERT INTO public.calls (id, status) SELECT 'lone-' || g, 'completed' FROM generate_series(1, 20) g");
	my $got = wait_received('/ok/lone', 'lone-', 20, 30, 'the calls');
	is(scalar(keys %$got), 20, 'and the calls ending on its shards are delivered');
	$_->stop for (@lw, $lone);
}

done_testing();
