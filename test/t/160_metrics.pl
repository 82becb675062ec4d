# Metrics: Debian's prometheus-postgres-exporter, run with
# monitoring/postgres_exporter.yml against a test cluster as a role that is
# only a member of aloro_webhook_reader, exposes per-webhook backlog, oldest
# pending age, successes and failures and attempt latency -- scraped over HTTP.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
ok(-x $exporter, 'prometheus-postgres-exporter is installed (scripts/install-deps.sh)')
  or BAIL_OUT('no exporter to test');

my $node = aw_node('metrics');
my $rcv = start_receiver(name => 'metrics');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

# one webhook that succeeds, one whose receiver refuses connections (a backlog)
my $good = add_webhook($node, "$rcv->{url}/ok/m", tag => 'm_good', name => 'good');
my $dead = add_webhook($node, 'http://127.0.0.1:' . free_port() . '/x', tag => 'm_dead', name => 'dead');
$node->safe_psql('postgres', "ALTER SYSTEM SET aloro_webhook.retry_schedule = '0, 1h'; SELECT pg_reload_conf()");
my @ok = end_calls($node, 'call_m_good', 5, tag => 'm_good');
end_calls($node, 'call_m_dead', 3, tag => 'm_dead');
ok(poll_until($node,
		"SELECT bool_and(CASE webhook_id WHEN $good THEN succeeded_last_hour = 5
		                                 ELSE failed_attempts_last_hour >= 3 END)
		   FROM aloro_webhook.webhook_health WHERE webhook_id IN ($good, $dead)", 't', 30),
	'the statistics are written');
$node->safe_psql('postgres', 'CREATE ROLE metrics LOGIN IN ROLE aloro_webhook_reader');

my $port = free_port();
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' user=metrics dbname=postgres sslmode=disable';
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ $exporter, "--extend.query-path=$FindBin::RealBin/../../monitoring/postgres_exporter.yml",
	  "--web.listen-address=127.0.0.1:$port", '--disable-settings-metrics' ],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

my $metrics = '';
ok(wait_until(sub {
			$h->pump_nb;
			$metrics = `curl -s --max-time 5 http://127.0.0.1:$port/metrics`;
			$metrics =~ /^aloro_webhook_pending_deliveries\{/m;
		}, 30, 'the exporter serves the aloro_webhook series'),
	'the exporter is scraped') or diag($err);

# the value of a series for one webhook (the exporter adds a server label)
sub value
{
	my ($name, $webhook) = @_;
	return $metrics =~ /^aloro_webhook_$name\{[^}]*\bwebhook="$webhook"[^}]*\} (\S+)$/m ? $1 : undef;
}

is(value('pending_deliveries', $dead), 3, 'backlog per webhook: 3 pending for the dead endpoint');
is(value('pending_deliveries', $good), 0, 'backlog per webhook: 0 for the good one');
cmp_ok(value('oldest_pending_age_seconds', $dead) // -1, '>', 0, 'oldest pending age per webhook');
is(value('deliveries_succeeded_last_hour', $good), 5, 'successes in the last hour');
cmp_ok(value('attempts_failed_last_hour', $dead) // 0, '>=', 3, 'failed attempts in the last hour');
cmp_ok(value('attempt_duration_p95_seconds', $good) // 0, '>', 0, 'attempt latency (p95)');
cmp_ok(value('attempt_duration_p95_seconds', $good), '>=', value('attempt_duration_p50_seconds', $good),
	'p95 >= p50');
is(value('enabled', $good), 1, 'enabled');
like($metrics, qr/^aloro_webhook_pending_deliveries\{[^}]*name="dead"/m, 'series carry the webhook name');
unlike($metrics, qr/whsec_|secret/i, 'no secret in the metrics');

$h->kill_kill;
done_testing();
