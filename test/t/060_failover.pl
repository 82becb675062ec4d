# Failover: deliveries the primary committed (and could not deliver, its
# receiver being down) are delivered by a streaming standby once it is
# promoted.  The worker does not run on the standby before the promotion.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

# (the Makefile's PROVE_FLAGS -I ./test/t is reset by PGXS; find the helpers here)
use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $secret = 'whsec_tap_060';
# Many attempts, a second apart: the deliveries stay pending through the failover.
my $schedule = join(', ', '0', ('1s') x 29);
my $primary = aw_node('primary', allows_streaming => 1,
	conf => { 'aloro_webhook.retry_schedule' => $schedule });
ok(wait_for_worker($primary, 30), 'primary: the delivery worker runs');

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is(worker_pid($standby), '', 'standby: no delivery worker before promotion');

# The receiver's port, with nothing listening on it yet.
my $port = free_port();
my $wh = add_webhook($primary, "http://127.0.0.1:$port/ok?case=failover", tag => 'asst_failover',
	secret => $secret);
my @ids = end_calls($primary, 'call_failover', 50, tag => 'asst_failover');
is(scalar(@ids), 50, 'primary: fifty deliveries queued');
my $in = join(',', @ids);
ok(poll_until($primary,
		"SELECT bool_and(attempts >= 1 AND status = 'pending') FROM aloro_webhook.deliveries WHERE id IN ($in)",
		't', 30),
	'primary: every delivery tried (receiver down), all still pending');

$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM aloro_webhook.deliveries WHERE id IN ($in) AND status = 'pending'"),
	'50', 'standby: the pending deliveries are replayed');
is(worker_pid($standby), '', 'standby: still no delivery worker');

$primary->stop('immediate');

# The receiver comes up before the promotion: nothing may reach it from the
# standby while it is still a standby.
my $rcv = start_receiver(name => 'failover', port => $port, secret => $secret);
my $attempts_before = $standby->safe_psql('postgres',
	"SELECT sum(attempts) FROM aloro_webhook.deliveries WHERE id IN ($in)");
Time::HiRes::sleep(2.0);
is(scalar(receiver_log($rcv)), 0, 'standby: sends nothing before promotion');
is(worker_pid($standby), '', 'standby: no delivery worker after the primary died, before promotion');

$standby->promote;
ok(poll_until($standby, 'SELECT NOT pg_is_in_recovery()', 't', 60), 'standby promoted');
ok(wait_for_worker($standby, 30) ne '', 'promoted standby: the delivery worker starts');

ok(poll_until($standby,
		"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
		'50', 60),
	'promoted standby: all fifty deliveries succeed');
my %seen = map { ($_->{headers}{'x-aloro-delivery'} // '') => 1 } receiver_log($rcv);
is(scalar(grep { $seen{$_} } @ids), 50, 'promoted standby: the receiver saw every delivery id');
ok(!(grep { !$_->{sig_raw_ok} } receiver_log($rcv)), 'promoted standby: every request correctly signed');
my $r = query_row($standby, qq{
	SELECT sum(attempts) AS attempts, min(attempts) AS min_attempts
	  FROM aloro_webhook.deliveries WHERE id IN ($in)});
ok($r->{min_attempts} >= 2, 'promoted standby: history from the primary kept (attempts carried on)');
note("attempts replayed from the primary: $attempts_before; after failover: $r->{attempts}");

stop_receiver($rcv);
$standby->stop;
done_testing();
