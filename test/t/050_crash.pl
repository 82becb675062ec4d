# At least once, through trouble: a receiver that is down for a while, the
# worker killed with SIGKILL mid-request (crash recovery), an immediate stop
# with hundreds of deliveries queued and in flight, and a fast shutdown while
# requests hang (prompt, and the requests are due again after the restart).
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

# (PostgreSQL::Test::Cluster turns restart_after_crash off; the SIGKILL case needs it)
my $node = aw_node('crash',
	conf => { 'aloro_webhook.timeout' => '10s', restart_after_crash => 'on' });
my $rcv = start_receiver(name => 'crash');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

sub ids_in { my ($ids) = @_; return join(',', @$ids); }

# ---------------------------------------------------------------------------
# 1. Receiver outage: down while calls end, back on the same port later
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 500ms, 500ms, 1s, 1s, 1s, 2s, 2s, 2s, 5s');
	my $down = start_receiver(name => 'outage');
	my $port = $down->{port};
	add_webhook($node, "$down->{url}/ok?case=outage", tag => 'asst_outage');
	stop_receiver($down);

	my @ids = end_calls($node, 'call_outage', 20, tag => 'asst_outage');
	is(scalar(@ids), 20, 'outage: twenty deliveries queued');
	my $in = ids_in(\@ids);
	ok(poll_until($node,
			"SELECT bool_and(attempts >= 1 AND status = 'pending') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			't', 20),
		'outage: every delivery tried and failed once, still pending');

	my $up = start_receiver(name => 'outage', port => $port, log => $down->{log});
	is($up->{port}, $port, 'outage: receiver back on the same port');
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			'20', 60),
		'outage: all twenty delivered once the receiver is back');
	my $r = query_row($node, qq{
		SELECT count(*) FILTER (WHERE d.attempts >= 2) AS retried,
		       count(*) FILTER (WHERE d.last_http_status = 200) AS ok200,
		       (SELECT count(*) FROM aloro_webhook.delivery_attempts a
		         WHERE a.delivery_id IN ($in) AND a.attempt = 1
		           AND a.http_status IS NULL AND a.error IS NOT NULL) AS first_failed
		  FROM aloro_webhook.deliveries d WHERE d.id IN ($in)});
	is($r->{retried}, 20, 'outage: each delivery needed more than one attempt');
	is($r->{first_failed}, 20, 'outage: the first attempts record no status and an error');
	is($r->{ok200}, 20, 'outage: last_http_status 200 for all');
	my %seen = map { ($_->{headers}{'x-aloro-delivery'} // '') => 1 } receiver_log($up);
	is(scalar(grep { $seen{$_} } @ids), 20, 'outage: the receiver saw every delivery id');
	stop_receiver($up);
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 200ms, 200ms, 200ms, 200ms');
}

# ---------------------------------------------------------------------------
# 2. SIGKILL of the worker mid-request
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/slow/3000", tag => 'asst_kill');
	my $did = end_call($node, 'call_kill', tag => 'asst_kill');
	ok(wait_for_requests($rcv, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $did } @_ },
			20, 'the slow request to be in flight'),
		'SIGKILL: request in flight');
	my $pid = worker_pid($node);
	ok($pid ne '', "SIGKILL: worker pid $pid");
	is(delivery($node, $did)->{status}, 'pending', 'SIGKILL: delivery pending while in flight');
	kill('KILL', $pid);

	# the postmaster resets every backend and runs crash recovery
	my $new = wait_for_worker($node, 60, $pid);
	ok($new ne '' && $new ne $pid, "SIGKILL: a new worker runs after crash recovery ($new)");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 60),
		'SIGKILL: the cut-off delivery ends succeeded');
	my $d = delivery($node, $did);
	is($d->{last_http_status}, 200, 'SIGKILL: last_http_status 200');
	my @req = requests_for($rcv, $did);
	ok(@req >= 2, 'SIGKILL: the request was sent again after the crash (' . scalar(@req) . ' requests)');
	my %bodies = map { $_->{body_sha256} => 1 } @req;
	is(scalar(keys %bodies), 1, 'SIGKILL: same body on the resend');
	like(slurp_file($node->logfile), qr/terminating any other active server processes|all server processes terminated/,
		'SIGKILL: the server went through crash recovery');
}

# ---------------------------------------------------------------------------
# 3. Immediate stop with 300 deliveries queued and in flight
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/slow/200", tag => 'asst_immediate');
	my @ids = end_calls($node, 'call_immediate', 300, tag => 'asst_immediate');
	is(scalar(@ids), 300, 'immediate stop: 300 deliveries queued');
	my %want = map { $_ => 1 } @ids;
	ok(wait_for_requests($rcv,
			sub { (grep { $want{ $_->{headers}{'x-aloro-delivery'} // '' } } @_) >= 20 },
			30, 'the first requests'),
		'immediate stop: requests in flight');
	my $before = query_row($node, qq{
		SELECT count(*) FILTER (WHERE status = 'succeeded') AS done,
		       count(*) FILTER (WHERE status = 'pending') AS pending
		  FROM aloro_webhook.deliveries WHERE call_id LIKE 'call\\_immediate\\_%'});
	note("at the immediate stop: $before->{done} succeeded, $before->{pending} pending");
	ok($before->{pending} > 0, 'immediate stop: deliveries still pending when the server stops');
	$node->stop('immediate');
	$node->start;

	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries
			  WHERE call_id LIKE 'call\\_immediate\\_%'",
			'300', 180),
		'immediate stop: all 300 deliveries end succeeded after the restart');
	my %seen;
	for my $r (receiver_log($rcv))
	{
		my $id = $r->{headers}{'x-aloro-delivery'} // '';
		$seen{$id}++ if $want{$id};
	}
	my @missing = grep { !$seen{$_} } @ids;
	is(scalar(@missing), 0, 'immediate stop: every delivery id arrived at least once')
	  or diag('missing: ' . join(',', @missing[ 0 .. ($#missing < 20 ? $#missing : 19) ]));
	my $dups = grep { $seen{$_} > 1 } @ids;
	note("immediate stop: $dups deliveries arrived more than once (at least once allows it)");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id LIKE 'call\\_immediate\\_%' AND status = 'failed'"),
		'0', 'immediate stop: none failed');
}

# ---------------------------------------------------------------------------
# 4. Fast shutdown while requests hang
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.timeout' => '60s');
	my $wh = add_webhook($node, "$rcv->{url}/hang", tag => 'asst_fast');
	my @ids = end_calls($node, 'call_fast', 5, tag => 'asst_fast');
	my %want = map { $_ => 1 } @ids;
	ok(wait_for_requests($rcv,
			sub { (grep { $_->{path} eq '/hang' && $want{ $_->{headers}{'x-aloro-delivery'} // '' } } @_) >= 5 },
			20, 'five hanging requests'),
		'fast shutdown: five requests hanging');
	# the endpoint will work after the restart
	$node->safe_psql('postgres',
		"UPDATE aloro_webhook.webhooks SET url = " . quote_lit("$rcv->{url}/ok?case=after-fast") . " WHERE id = $wh");

	my $t0 = Time::HiRes::time();
	my $stopped = $node->stop('fast', fail_ok => 1);
	my $took = Time::HiRes::time() - $t0;
	ok($stopped, 'fast shutdown: the server stops');
	ok($took < 10, sprintf('fast shutdown: prompt despite hanging requests (%.2fs, timeout is 60s)', $took));
	$node->start;

	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries
			  WHERE call_id LIKE 'call\\_fast\\_%'",
			'5', 60),
		'fast shutdown: the interrupted deliveries are due again and succeed after the restart');
	my %after = map { ($_->{headers}{'x-aloro-delivery'} // '') => 1 }
	  grep { $_->{path} eq '/ok?case=after-fast' } receiver_log($rcv);
	is(scalar(grep { $after{$_} } @ids), 5, 'fast shutdown: each delivery reached the working endpoint');
	aw_set($node, 'aloro_webhook.timeout' => '10s');
}

stop_receiver($rcv);
$node->stop;
done_testing();
