# CitusTest.pm — a Citus cluster on this machine for the scale-out tests.
#
# citus_cluster() starts a coordinator and two worker nodes (loopback TCP,
# Citus and aloro_webhook preloaded on each), joins them, and creates the
# platform's calls table distributed by id, watched from the coordinator:
# the whole set-up a user does.  Citus itself comes from scripts/citus.sh
# build (the test command runs it first); a missing Citus fails the test.
package CitusTest;

use strict;
use warnings;

use Exporter 'import';
use Test::More;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

use AloroTest;

our @EXPORT = qw(citus_node citus_cluster citus_join on_all_nodes node_group webhooks_everywhere);

# The settings of every Citus node (besides AloroTest's defaults).
my %citus_conf = (
	shared_preload_libraries    => 'citus,aloro_webhook',
	listen_addresses            => '127.0.0.1',
	max_connections             => '100',
	max_worker_processes        => '24',
	max_prepared_transactions   => '50',
	wal_level                   => 'logical',
	# shard moves replicate logically
	max_wal_senders             => '10',
	max_replication_slots       => '10',
	'citus.shard_count'         => '8',
	'citus.log_distributed_deadlock_detection' => 'off',
);

# citus_node($name, conf => {...}): one node with Citus created in postgres
# (not yet part of a cluster), without aloro_webhook (the coordinator's
# CREATE EXTENSION reaches every node).
sub citus_node
{
	my ($name, %o) = @_;
	my $pkglib = `pg_config --pkglibdir`;
	chomp $pkglib;
	BAIL_OUT("Citus is not installed ($pkglib/citus.so): run bash scripts/citus.sh build as root")
	  unless -f "$pkglib/citus.so";
	my $node = aw_node($name, conf => { %citus_conf, %{ $o{conf} // {} } },
		create_extension => 0);
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# citus_join($coordinator, $node): citus_add_node, from the coordinator.
sub citus_join
{
	my ($coord, $node) = @_;
	$coord->safe_psql('postgres',
		"SELECT citus_add_node('127.0.0.1', " . $node->port . ")");
	return;
}

# citus_cluster(workers => 2, calls_columns => '...'): ($coordinator, @workers),
# the calls table created, distributed and watched, aloro_webhook created.
sub citus_cluster
{
	my (%o) = @_;
	my $n = $o{workers} // 2;
	my $coord = citus_node('coordinator', conf => $o{conf});
	my @workers = map { citus_node("worker$_", conf => $o{conf}) } 1 .. $n;
	$coord->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('127.0.0.1', " . $coord->port . ")");
	citus_join($coord, $_) for @workers;
	my $cols = $o{calls_columns}
	  // 'id text PRIMARY KEY, phone text, direction text, status text NOT NULL,
	      duration integer, started_at timestamptz, ended_at timestamptz,
	      assistant_id text, assistant_name text, phone_number_id text, phone_number text,
	      campaign_id text, campaign_name text, variables jsonb, transcript jsonb,
	      recording_url text, recording_duration integer, cost_total numeric,
	      cost_breakdown jsonb';
	$coord->safe_psql('postgres', qq{
		CREATE TABLE public.calls ($cols);
		SELECT create_distributed_table('public.calls', 'id');
		CREATE EXTENSION aloro_webhook;
	});
	$coord->safe_psql('postgres', "SELECT aloro_webhook.watch('public.calls')")
	  unless $o{no_watch};
	return ($coord, @workers);
}

# on_all_nodes($coordinator, $sql): {port => result} of $sql on every node.
sub on_all_nodes
{
	my ($coord, $sql) = @_;
	my %out;
	for my $row (AloroTest::query_json($coord,
		"SELECT n.nodeport AS port, r.success, r.result
		   FROM run_command_on_all_nodes(" . quote_lit($sql) . ") r
		   JOIN pg_dist_node n USING (nodeid)"))
	{
		die "on port $row->{port}: $row->{result}" unless $row->{success};
		$out{ $row->{port} } = $row->{result};
	}
	return \%out;
}

# Waits (bounded) until every node has $n webhooks; true when they do.
sub webhooks_everywhere
{
	my ($coord, $n, $timeout) = @_;
	return AloroTest::wait_until(sub {
			my $count = on_all_nodes($coord, 'SELECT count(*) FROM aloro_webhook.webhooks');
			!grep { $_ != $n } values %$count;
		}, $timeout // 30, "$n webhooks on every node");
}

# The Citus group of a node.
sub node_group
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT groupid FROM pg_dist_local_group');
}

1;
