# Failed attempts and the retry schedule: 500 then success, always failing,
# connection refused, redeliver() after a failure, and addresses outside
# aloro_webhook.allowed_networks refused at connect time.
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

my $secret = 'whsec_tap_030';
# retry_schedule '0, 200ms, 200ms, 200ms, 200ms': five attempts
my $node = aw_node('retries');
my $rcv = start_receiver(name => 'retries', secret => $secret);
ok(wait_for_worker($node, 30), 'the delivery worker runs');

sub wait_status
{
	my ($id, $status, $timeout, $what) = @_;
	return ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $id",
			$status, $timeout // 60),
		$what);
}

# Each attempt after the first starts no earlier than its delay after the
# previous attempt ended (10 ms of slack for rounding).
sub schedule_respected
{
	my ($what, $delay, @a) = @_;
	my @bad;
	for my $k (1 .. $#a)
	{
		my $prev_end = $a[ $k - 1 ]{started_epoch} + $a[ $k - 1 ]{duration_ms} / 1000;
		my $gap = $a[$k]{started_epoch} - $prev_end;
		push @bad, sprintf('attempt %d began %.3fs after attempt %d ended', $k + 1, $gap, $k)
		  if $gap < $delay - 0.010;
	}
	ok(!@bad, "$what: retries wait for the schedule's delay") or diag(join("\n", @bad));
}

# ---------------------------------------------------------------------------
# 1. 500, 500, then 200
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_fail2';
	add_webhook($node, "$rcv->{url}/fail/2/fail2", tag => $tag, secret => $secret);
	my $did = end_call($node, 'call_fail2', tag => $tag);
	wait_status($did, 'succeeded', 60, '500, 500, 200: delivery succeeds');
	my $d = delivery($node, $did);
	is($d->{attempts}, 3, '500, 500, 200: three attempts');
	is($d->{last_http_status}, 200, '500, 500, 200: last_http_status 200');
	ok(defined $d->{finished_at}, '500, 500, 200: finished_at set');
	my @a = attempts($node, $did);
	is_deeply([ map { $_->{attempt} } @a ], [ 1, 2, 3 ], '500, 500, 200: attempts numbered 1..3');
	is_deeply([ map { $_->{http_status} } @a ], [ 500, 500, 200 ], '500, 500, 200: statuses recorded');
	ok(defined $a[0]{error} && defined $a[1]{error} && !defined $a[2]{error},
		'500, 500, 200: error on the failed attempts only');
	like($a[0]{response_body} // '', qr/failing 1 of 2/, '500, 500, 200: response body of a failure kept');
	schedule_respected('500, 500, 200', 0.2, @a);

	my @req = requests_for($rcv, $did);
	is(scalar(@req), 3, '500, 500, 200: three requests arrived');
	my %ids = map { $_->{headers}{'x-aloro-delivery'} => 1 } @req;
	is_deeply([ keys %ids ], [$did], '500, 500, 200: same X-Aloro-Delivery on every attempt');
	my %hashes = map { $_->{body_sha256} => 1 } @req;
	is(scalar(keys %hashes), 1, '500, 500, 200: body identical on every attempt');
	is($req[0]{body}, $d->{body}, '500, 500, 200: body is deliveries.body');
	ok(!(grep { !$_->{sig_raw_ok} || !$_->{sig_stringify_ok} } @req),
		'500, 500, 200: every attempt signed correctly');
}

# ---------------------------------------------------------------------------
# 2. Always 500: exactly five attempts, then failed
# ---------------------------------------------------------------------------
my $failed_did;
my $failed_wh;
{
	my $tag = 'asst_always500';
	$failed_wh = add_webhook($node, "$rcv->{url}/status/500", tag => $tag, secret => $secret);
	my $did = $failed_did = end_call($node, 'call_always500', tag => $tag);
	wait_status($did, 'failed', 60, 'always 500: delivery ends failed');
	my $d = delivery($node, $did);
	is($d->{attempts}, 5, 'always 500: attempts = length of the schedule (5)');
	ok(!defined $d->{next_attempt_at}, 'always 500: next_attempt_at NULL');
	ok(defined $d->{last_error} && $d->{last_error} ne '', 'always 500: last_error set');
	is($d->{last_http_status}, 500, 'always 500: last_http_status 500');
	ok(defined $d->{finished_at}, 'always 500: finished_at set');
	my @a = attempts($node, $did);
	is_deeply([ map { $_->{attempt} } @a ], [ 1 .. 5 ], 'always 500: attempt rows 1..5');
	is_deeply([ map { $_->{http_status} } @a ], [ (500) x 5 ], 'always 500: each 500');
	schedule_respected('always 500', 0.2, @a);
	is(scalar(requests_for($rcv, $did)), 5, 'always 500: five requests arrived');

	# no sixth attempt shows up later (well past the 200 ms cadence)
	Time::HiRes::sleep(1.5);
	is(scalar(requests_for($rcv, $did)), 5, 'always 500: still five requests afterwards');
	is(delivery($node, $did)->{attempts}, 5, 'always 500: still five attempts afterwards');
}

# ---------------------------------------------------------------------------
# 3. Connection refused
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_refused';
	my $port = free_port();
	add_webhook($node, "http://127.0.0.1:$port/ok", tag => $tag);
	my $did = end_call($node, 'call_refused', tag => $tag);
	wait_status($did, 'failed', 60, 'connection refused: delivery ends failed');
	my $d = delivery($node, $did);
	is($d->{attempts}, 5, 'connection refused: retried through the whole schedule');
	ok(!defined $d->{last_http_status}, 'connection refused: last_http_status NULL');
	ok(defined $d->{last_error} && $d->{last_error} ne '', 'connection refused: last_error set');
	my @a = attempts($node, $did);
	is(scalar(@a), 5, 'connection refused: five attempt rows');
	ok(!(grep { defined $_->{http_status} } @a), 'connection refused: http_status NULL on every attempt');
	ok(!(grep { !defined $_->{error} || $_->{error} eq '' } @a), 'connection refused: error on every attempt');
	note "connection refused error: " . ($a[0]{error} // '(none)');
}

# ---------------------------------------------------------------------------
# 4. redeliver() after the failure: same id, same body, history kept
# ---------------------------------------------------------------------------
{
	my $did = $failed_did;
	my @before = requests_for($rcv, $did);
	$node->safe_psql('postgres',
		"UPDATE aloro_webhook.webhooks SET url = " . quote_lit("$rcv->{url}/ok?case=redeliver")
		  . " WHERE id = $failed_wh");
	my $ret = $node->safe_psql('postgres', qq{
		BEGIN;
		SELECT aloro_webhook.redeliver($did);
		SELECT status || ' ' || attempts || ' ' || (finished_at IS NULL)
		  FROM aloro_webhook.deliveries WHERE id = $did;
		COMMIT;});
	is($ret, "$did\npending 5 true", 'redeliver returns the same delivery id and puts it back to pending');
	wait_status($did, 'succeeded', 30, 'redeliver: the failed delivery now succeeds');
	my $d = delivery($node, $did);
	is($d->{attempts}, 6, 'redeliver: attempts continue counting (5 + 1)');
	is($d->{last_http_status}, 200, 'redeliver: last_http_status 200');
	ok(!defined $d->{last_error}, 'redeliver: last_error cleared by the success')
	  or diag("last_error: $d->{last_error}");
	my @a = attempts($node, $did);
	is_deeply([ map { $_->{attempt} } @a ], [ 1 .. 6 ], 'redeliver: history kept, attempt 6 added');
	is_deeply([ map { $_->{http_status} } @a ], [ (500) x 5, 200 ], 'redeliver: statuses 500 x5, then 200');
	my @after = grep { $_->{path} eq '/ok?case=redeliver' } requests_for($rcv, $did);
	is(scalar(@after), 1, 'redeliver: one request to the new URL');
	is($after[0]{body_sha256}, $before[0]{body_sha256}, 'redeliver: same body bytes as before');
	ok($after[0]{sig_raw_ok} && $after[0]{sig_stringify_ok}, 'redeliver: signed');

	my ($rc, $out, $err) = $node->psql('postgres', "SELECT aloro_webhook.redeliver(-42)");
	isnt($rc, 0, 'redeliver of an unknown delivery is refused');
}

# ---------------------------------------------------------------------------
# 5. allowed_networks: loopback refused at connect time when not listed
# ---------------------------------------------------------------------------
{
	# a receiver the worker has never connected to, so every request needs a new connection
	my $fresh = start_receiver(name => 'retries_fresh');
	aw_set($node, 'aloro_webhook.allowed_networks' => '');
	my %cases = (
		blocked => [ "$fresh->{url}/ok?case=blocked", $fresh, 'address 127.0.0.1' ],
		blocked_name => [ "http://localhost:$fresh->{port}/ok?case=blocked-name", $fresh,
			'host name localhost' ],
		# the receiver of the cases above: the worker may hold a kept-alive
		# connection to it from before the reload
		blocked_kept => [ "$rcv->{url}/ok?case=blocked-kept", $rcv,
			'address 127.0.0.1, connection kept alive from before the reload' ],
	);
	my %did;
	for my $c (sort keys %cases)
	{
		add_webhook($node, $cases{$c}[0], tag => "asst_$c");
		$did{$c} = end_call($node, "call_$c", tag => "asst_$c");
	}
	for my $c (sort keys %cases)
	{
		my ($url, $r, $what) = @{ $cases{$c} };
		my $id = $did{$c};
		poll_until($node, "SELECT status <> 'pending' FROM aloro_webhook.deliveries WHERE id = $id", 't', 60);
		is(delivery($node, $id)->{status}, 'failed', "$what: delivery ends failed");
		my @a = attempts($node, $id);
		ok(@a >= 1, "$what: attempts recorded");
		ok(!(grep { defined $_->{http_status} } @a), "$what: no HTTP status (never connected)");
		ok(!(grep { ($_->{error} // '') !~ /allowed_networks/ } @a),
			"$what: every attempt's error mentions allowed_networks")
		  or diag("errors: " . join(' | ', map { $_->{error} // 'NULL' } @a));
		is(scalar(requests_for($r, $id)), 0, "$what: the receiver saw no request");
	}

	# listed again (reloadable): a redelivery goes through
	aw_set($node, 'aloro_webhook.allowed_networks' => '127.0.0.0/8');
	$node->safe_psql('postgres', "SELECT aloro_webhook.redeliver($did{blocked})");
	wait_status($did{blocked}, 'succeeded', 30, 'allowed_networks reloaded: the redelivery succeeds');
	is(scalar(requests_for($fresh, $did{blocked})), 1, 'allowed_networks reloaded: one request arrived');
	stop_receiver($fresh);
}

stop_receiver($rcv);
$node->stop;
done_testing();
