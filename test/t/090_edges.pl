# An unlucky operator's edge cases: many webhooks fanned out over many calls
# (each delivered, counted for duplicates), max_in_flight = 1, the retry
# schedule shortened while deliveries are mid-schedule, a webhook disabled
# with deliveries pending (held while disabled, re-enabled, sent), deleted
# while a request to it is in flight, its URL and secret changed between
# retries, a 5 MB body delivered intact through a retry, URLs with userinfo,
# query strings and an IPv6 literal, and DROP EXTENSION + CREATE EXTENSION
# while requests are in flight.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use MIME::Base64 ();

# (the Makefile's PROVE_FLAGS -I ./test/t is reset by PGXS; find the helpers here)
use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $secret = 'whsec_tap_090';
my $default_schedule = '0, 200ms, 200ms, 200ms, 200ms';
my $node = aw_node('edges',
	conf => {
		'aloro_webhook.timeout' => '2s',
		'aloro_webhook.allowed_networks' => '127.0.0.0/8, ::1/128',
		# the big-body case carries a 5 MB body; the log need not
		log_statement => 'none',
		# (above aloro_webhook.max_payload_size's default of 1 MB)
		'aloro_webhook.max_payload_size' => '8MB',
	});
my $rcv = start_receiver(name => 'edges', secret => $secret);
my $pid0 = wait_for_worker($node, 30);
ok($pid0 ne '', "the delivery worker runs ($pid0)");

sub status_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres', "SELECT status FROM aloro_webhook.deliveries WHERE id = $id");
}

sub wait_status
{
	my ($id, $status, $timeout, $what) = @_;
	return ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $id", $status, $timeout),
		$what);
}

# the most attempts of the given deliveries that overlapped in time
sub max_overlap
{
	my ($where) = @_;
	return $node->safe_psql('postgres', qq{
		WITH a AS (
		  SELECT a.started_at AS s, a.started_at + a.duration_ms * interval '1 ms' AS e
		    FROM aloro_webhook.delivery_attempts a
		    JOIN aloro_webhook.deliveries d ON d.id = a.delivery_id
		   WHERE $where)
		SELECT coalesce(max((SELECT count(*) FROM a a2 WHERE a2.s <= a1.s AND a1.s < a2.e)), 0) FROM a a1});
}

# ---------------------------------------------------------------------------
# 1. Fan-out: 50 webhooks x 20 calls, each pair delivered exactly once
# ---------------------------------------------------------------------------
{
	my $nw = 50;
	my $nc = 20;
	my %wh;
	for my $i (1 .. $nw)
	{
		# one tag for all: every call goes to every webhook
		my $id = add_webhook($node, "$rcv->{url}/ok?fan=$i", tag => 'asst_e_fan', secret => $secret);
		$wh{$id} = $i;
	}
	my @ids = end_calls($node, 'call_e_fan', $nc, tag => 'asst_e_fan');
	is(scalar(@ids), $nw * $nc, "fan-out: $nw x $nc = " . ($nw * $nc) . ' deliveries queued');
	my $in = join(',', @ids);
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			$nw * $nc, 60),
		'fan-out: every delivery succeeded');
	my %want = map { $_ => 1 } @ids;
	my (%seen, %pair, $badsig);
	for my $r (receiver_log($rcv))
	{
		my $id = $r->{headers}{'x-aloro-delivery'} // '';
		next unless $want{$id};
		$seen{$id}++;
		$badsig++ unless $r->{sig_raw_ok} && $r->{sig_stringify_ok};
		my ($fan) = $r->{path} =~ /fan=(\d+)/;
		my ($call) = $r->{body} =~ /"id":"(call_e_fan_\d+)"/;
		$pair{ ($fan // '?') . '/' . ($call // '?') }++;
	}
	is(scalar(grep { $seen{$_} } @ids), $nw * $nc, 'fan-out: the receiver saw every delivery id');
	my $dups = grep { $seen{$_} > 1 } @ids;
	is($dups, 0, 'fan-out: no delivery was sent twice (no crash, so no duplicate)');
	is(scalar(keys %pair), $nw * $nc, 'fan-out: every (webhook, call) pair arrived');
	ok(!(grep { $pair{$_} != 1 } keys %pair), 'fan-out: each pair exactly once');
	ok(!$badsig, 'fan-out: every signature verifies');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE delivery_id IN ($in)"),
		$nw * $nc, 'fan-out: one attempt row per delivery');
	note('fan-out: drained in ' . $node->safe_psql('postgres',
			"SELECT round(extract(epoch FROM max(finished_at) - min(created_at))::numeric, 3)
			   FROM aloro_webhook.deliveries WHERE id IN ($in)") . ' s');
}

# ---------------------------------------------------------------------------
# 2. max_in_flight = 1 still drains, with failing and slow endpoints mixed in
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.max_in_flight' => '1');
	add_webhook($node, "$rcv->{url}/ok?case=one", tag => 'asst_e_one_ok');
	add_webhook($node, "$rcv->{url}/status/500?case=one", tag => 'asst_e_one_500');
	add_webhook($node, "$rcv->{url}/slow/300?case=one", tag => 'asst_e_one_slow');
	$node->safe_psql('postgres', q{
		INSERT INTO aloro_webhook.calls (id, status, assistant_id)
		SELECT 'call_e_one_500_' || g, 'completed', 'asst_e_one_500' FROM generate_series(1, 2) g
		UNION ALL
		SELECT 'call_e_one_slow_' || g, 'completed', 'asst_e_one_slow' FROM generate_series(1, 2) g
		UNION ALL
		SELECT 'call_e_one_ok_' || g, 'completed', 'asst_e_one_ok' FROM generate_series(1, 30) g});
	my $where = "d.call_id LIKE 'call\\_e\\_one\\_%'";
	ok(poll_until($node,
			"SELECT count(*) FROM aloro_webhook.deliveries d WHERE $where AND status = 'pending'", '0', 30),
		'max_in_flight = 1: the queue drains');
	my $r = query_row($node, qq{
		SELECT count(*) FILTER (WHERE call_id LIKE 'call\\_e\\_one\\_ok\\_%' AND status = 'succeeded') AS ok,
		       count(*) FILTER (WHERE call_id LIKE 'call\\_e\\_one\\_slow\\_%' AND status = 'succeeded') AS slow,
		       count(*) FILTER (WHERE call_id LIKE 'call\\_e\\_one\\_500\\_%' AND status = 'failed' AND attempts = 5) AS failed
		  FROM aloro_webhook.deliveries d WHERE $where});
	is($r->{ok}, 30, 'max_in_flight = 1: thirty ok deliveries succeeded');
	is($r->{slow}, 2, 'max_in_flight = 1: the slow ones succeeded');
	is($r->{failed}, 2, 'max_in_flight = 1: the failing ones failed after five attempts');
	my $ov = max_overlap($where);
	is($ov, 1, 'max_in_flight = 1: never two attempts at once');

	aw_set($node, 'aloro_webhook.max_in_flight' => undef, 'aloro_webhook.max_in_flight_per_webhook' => '1');
	add_webhook($node, "$rcv->{url}/slow/50?case=per-webhook-one", tag => 'asst_e_pw1');
	my @ids = end_calls($node, 'call_e_pw1', 15, tag => 'asst_e_pw1');
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries
			  WHERE id IN (" . join(',', @ids) . ")", '15', 30),
		'max_in_flight_per_webhook = 1: the queue drains');
	is(max_overlap("d.id IN (" . join(',', @ids) . ")"), 1,
		'max_in_flight_per_webhook = 1: one request to that webhook at a time');
	aw_set($node, 'aloro_webhook.max_in_flight_per_webhook' => undef);
}

# ---------------------------------------------------------------------------
# 3. retry_schedule shortened while deliveries are mid-schedule
# ---------------------------------------------------------------------------
{
	my $long = '0, 200ms, 200ms, 200ms, 4s, 4s, 4s';    # seven attempts; four quick ones
	my %sub = (
		# reloaded to six attempts while at four: two more, then failed at six
		shorter => [ '0, 200ms, 200ms, 200ms, 200ms, 200ms', sub { $_[0] == 6 }, 'exactly 6 (the new length)' ],
		# reloaded to two while at four: past the new length: failed, at most one more attempt
		past => [ '0, 200ms', sub { $_[0] == 4 || $_[0] == 5 }, '4 or 5 (no more than one more)' ],
	);
	for my $k (sort keys %sub)
	{
		my ($new, $check, $what) = @{ $sub{$k} };
		aw_set($node, 'aloro_webhook.retry_schedule' => $long);
		add_webhook($node, "$rcv->{url}/status/500?case=schedule-$k", tag => "asst_e_sched_$k");
		my $did = end_call($node, "call_e_sched_$k", tag => "asst_e_sched_$k");
		ok(poll_until($node, "SELECT attempts FROM aloro_webhook.deliveries WHERE id = $did", '4', 10),
			"schedule $k: four quick attempts made, now waiting 4 s");
		my $t0 = Time::HiRes::time();
		aw_set($node, 'aloro_webhook.retry_schedule' => $new);
		wait_status($did, 'failed', 15, "schedule $k: the delivery ends failed under the shorter schedule");
		my $d = delivery($node, $did);
		ok($check->($d->{attempts}), "schedule $k: attempts $what (got $d->{attempts})");
		my @a = attempts($node, $did);
		is(scalar(@a), $d->{attempts}, "schedule $k: one attempt row per attempt");
		my $next = $a[4] ? sprintf('%.2f', $a[4]{started_epoch} - $t0) : 'none';
		note("schedule $k: attempt 5 began ${next}s after the reload (old delay 4 s, new delay 200 ms)");
		my $still = $node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE delivery_id = $did");
		is($still, $d->{attempts}, "schedule $k: no attempt after the delivery failed");
	}
	aw_set($node, 'aloro_webhook.retry_schedule' => $default_schedule);
}

# ---------------------------------------------------------------------------
# 4. A webhook disabled with deliveries pending: held, nothing sent; enabled: sent
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 2s, 200ms, 200ms, 200ms');
	# a: failed once, waiting for its retry, when the webhook is disabled
	my $wa = add_webhook($node, "$rcv->{url}/fail/1/disabled-a", tag => 'asst_e_dis_a', secret => $secret);
	my $da = end_call($node, 'call_e_dis_a', tag => 'asst_e_dis_a');
	ok(poll_until($node, "SELECT attempts FROM aloro_webhook.deliveries WHERE id = $da", '1', 10),
		'disabled: the first attempt failed');
	$node->safe_psql('postgres', "UPDATE aloro_webhook.webhooks SET enabled = false WHERE id = $wa");
	# b: queued and disabled in the same transaction, before any attempt
	my $wb = add_webhook($node, "$rcv->{url}/ok?case=disabled-b", tag => 'asst_e_dis_b', secret => $secret);
	$node->safe_psql('postgres', qq{
		BEGIN;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('call_e_dis_b', 'completed', 'asst_e_dis_b');
		UPDATE aloro_webhook.webhooks SET enabled = false WHERE id = $wb;
		COMMIT;});
	my $db = $node->safe_psql('postgres', "SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_e_dis_b'");
	ok($db ne '', 'disabled: a call ended in the same transaction still queued its delivery');

	ok(poll_until($node,
			"SELECT bool_and(status = 'pending' AND claimed_at IS NULL)
			   FROM aloro_webhook.deliveries WHERE id IN ($da, $db)", 't', 10),
		"disabled: both deliveries held, pending and not in flight");
	# a call that ends while the webhook is disabled queues nothing for it
	is(end_call($node, 'call_e_dis_a_later', tag => 'asst_e_dis_a'), undef,
		'disabled: a call ending now queues no delivery for it');
	# bounded: prove nothing goes out while disabled
	Time::HiRes::sleep(1.5);
	is(scalar(requests_for($rcv, $da)), 1, 'disabled: no retry was sent while disabled');
	is(scalar(requests_for($rcv, $db)), 0, 'disabled: the never-tried delivery was not sent');
	is(delivery($node, $da)->{attempts}, 1, 'disabled: attempts unchanged while held');
	is(delivery($node, $db)->{attempts}, 0, 'disabled: no attempt recorded for the held one');

	$node->safe_psql('postgres', "UPDATE aloro_webhook.webhooks SET enabled = true WHERE id IN ($wa, $wb)");
	wait_status($da, 'succeeded', 10, 'enabled again: the held retry is sent and succeeds');
	wait_status($db, 'succeeded', 10, 'enabled again: the held first attempt is sent and succeeds');
	is(delivery($node, $da)->{attempts}, 2, 'enabled again: attempt numbering continues (2)');
	is(scalar(requests_for($rcv, $db)), 1, 'enabled again: one request for the held delivery');

	# disabled while its request is in flight: the answer is still recorded
	my $wc = add_webhook($node, "$rcv->{url}/slow/800?case=disabled-c", tag => 'asst_e_dis_c');
	my $dc = end_call($node, 'call_e_dis_c', tag => 'asst_e_dis_c');
	ok(wait_for_requests($rcv, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $dc } @_ }, 10,
			'the slow request'),
		'disabled in flight: request sent');
	$node->safe_psql('postgres', "UPDATE aloro_webhook.webhooks SET enabled = false WHERE id = $wc");
	wait_status($dc, 'succeeded', 10, 'disabled in flight: the 200 that came back is recorded (succeeded)');
	aw_set($node, 'aloro_webhook.retry_schedule' => $default_schedule);
}

# ---------------------------------------------------------------------------
# 5. A webhook deleted while a request to it is in flight
# ---------------------------------------------------------------------------
{
	# hanging: the attempt times out after the webhook is gone
	my $wh = add_webhook($node, "$rcv->{url}/hang?case=deleted", tag => 'asst_e_del_hang');
	my $dh = end_call($node, 'call_e_del_hang', tag => 'asst_e_del_hang');
	# slow but successful
	my $ws = add_webhook($node, "$rcv->{url}/slow/800?case=deleted", tag => 'asst_e_del_slow');
	my $ds = end_call($node, 'call_e_del_slow', tag => 'asst_e_del_slow');
	ok(wait_for_requests($rcv,
			sub { (grep { my $x = $_->{headers}{'x-aloro-delivery'} // ''; $x eq $dh || $x eq $ds } @_) >= 2 },
			10, 'both requests in flight'),
		'deleted in flight: both requests in flight');
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres', "DELETE FROM aloro_webhook.webhooks WHERE id IN ($wh, $ws)");
	ok(poll_until($node, "SELECT status <> 'pending' FROM aloro_webhook.deliveries WHERE id = $dh", 't', 10),
		'deleted in flight (hanging): not stuck pending');
	my $took = Time::HiRes::time() - $t0;
	ok($took < 2 + 1.5, sprintf('deleted in flight (hanging): resolved within the timeout (%.2fs)', $took));
	my $d = delivery($node, $dh);
	is($d->{status}, 'failed', 'deleted in flight (hanging): failed');
	like($d->{last_error} // '', qr/deleted/, 'deleted in flight (hanging): last_error says the webhook was deleted');
	ok(!defined $d->{next_attempt_at}, 'deleted in flight (hanging): no next attempt');
	is(scalar(attempts($node, $dh)), 1, 'deleted in flight (hanging): its attempt is recorded');
	wait_status($ds, 'succeeded', 10, 'deleted in flight (slow 200): the answer that came back counts');
	# bounded: no retry of the deleted webhook's delivery
	Time::HiRes::sleep(0.6);
	is(scalar(requests_for($rcv, $dh)), 1, 'deleted in flight: no request after the deletion');

	# a call ending in the transaction that deletes its webhook
	my $wx = add_webhook($node, "$rcv->{url}/ok?case=deleted-same-tx", tag => 'asst_e_del_tx');
	$node->safe_psql('postgres', qq{
		BEGIN;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('call_e_del_tx', 'completed', 'asst_e_del_tx');
		DELETE FROM aloro_webhook.webhooks WHERE id = $wx;
		COMMIT;});
	my $dx = $node->safe_psql('postgres', "SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_e_del_tx'");
	ok($dx ne '', 'deleted in the same transaction: the delivery was queued');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $dx", 'failed', 10),
		'deleted in the same transaction: it ends failed');
	my $wy = add_webhook($node, "$rcv->{url}/ok?case=deleted-first", tag => 'asst_e_del_first');
	$node->safe_psql('postgres', qq{
		BEGIN;
		DELETE FROM aloro_webhook.webhooks WHERE id = $wy;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES ('call_e_del_first', 'completed', 'asst_e_del_first');
		COMMIT;});
	is($node->safe_psql('postgres', "SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_e_del_first'"),
		'0', 'deleted before the call ends in the same transaction: nothing queued');
	Time::HiRes::sleep(0.3);
	is(scalar(grep { $_->{path} =~ /case=deleted-(?:same-tx|first)/ } receiver_log($rcv)), 0,
		'deleted in the same transaction: nothing sent');
}

# ---------------------------------------------------------------------------
# 6. URL and secret changed between retries
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 1500ms, 200ms, 200ms, 200ms');
	my $wh = add_webhook($node, "$rcv->{url}/status/500?case=url-old", tag => 'asst_e_url',
		secret => 'whsec_old_secret_090');
	my $did = end_call($node, 'call_e_url', tag => 'asst_e_url');
	ok(poll_until($node, "SELECT attempts FROM aloro_webhook.deliveries WHERE id = $did", '1', 10),
		'URL change: the first attempt failed');
	$node->safe_psql('postgres',
		"SET log_statement = 'none'; UPDATE aloro_webhook.webhooks SET url = " . quote_lit("$rcv->{url}/ok?case=url-new")
		  . ", secret = " . quote_lit($secret) . " WHERE id = $wh");
	wait_status($did, 'succeeded', 10, 'URL change: the retry succeeds');
	my @r = requests_for($rcv, $did);
	is_deeply([ map { $_->{path} } @r ], [ '/status/500?case=url-old', '/ok?case=url-new' ],
		'URL change: the retry went to the new URL');
	ok(!$r[0]{sig_raw_ok} && $r[1]{sig_raw_ok}, 'secret change: the retry is signed with the new secret');
	is($r[0]{body_sha256}, $r[1]{body_sha256}, 'URL change: same body bytes on both');
	is(delivery($node, $did)->{attempts}, 2, 'URL change: two attempts');
	aw_set($node, 'aloro_webhook.retry_schedule' => $default_schedule);
}

# ---------------------------------------------------------------------------
# 7. A 5 MB body, delivered intact (through one retry)
# ---------------------------------------------------------------------------
{
	# its own receiver: a log of 5 MB lines is slow to read back
	my $big = start_receiver(name => 'edges_big', secret => $secret);
	add_webhook($node, "$big->{url}/fail/1/bigbody", tag => 'asst_e_big', secret => $secret);
	$node->safe_psql('postgres', q{
		INSERT INTO aloro_webhook.calls (id, status, assistant_id, ended_at, variables, transcript)
		SELECT 'call_e_big', 'completed', 'asst_e_big', now(),
		       '{"note": "quote \" backslash \\\\ tab \t nul-escape \u0001 emoji 😀 line\u2028sep"}',
		       jsonb_agg(jsonb_build_object('speaker', CASE WHEN g % 2 = 0 THEN 'ai' ELSE 'customer' END,
		                                    'text', g || ' ' || repeat('Grüße “quoted” ', 60),
		                                    'start', g * 1.5))
		  FROM generate_series(1, 2500) g});
	my $did = $node->safe_psql('postgres', "SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_e_big'");
	wait_status($did, 'succeeded', 30, 'big body: delivered');
	my $db = query_row($node,
		"SELECT encode(sha256(convert_to(body, 'UTF8')), 'hex') AS sha, octet_length(body) AS len, attempts
		   FROM aloro_webhook.deliveries WHERE id = $did");
	ok($db->{len} > 5_000_000, "big body: more than 5 MB ($db->{len} bytes)");
	my @r = requests_for($big, $did);
	is(scalar(@r), 2, 'big body: two requests (500, then 200)');
	ok(!(grep { $_->{body_sha256} ne $db->{sha} || $_->{body_bytes} != $db->{len} } @r),
		'big body: sha256 and length of every request match deliveries.body');
	ok(!(grep { !$_->{sig_raw_ok} || !$_->{sig_stringify_ok} } @r), 'big body: signature verifies both ways');
	is($db->{attempts}, 2, 'big body: two attempts');
	stop_receiver($big);
}

# ---------------------------------------------------------------------------
# 8. URL forms: userinfo, query string, fragment, IPv6 literal
# ---------------------------------------------------------------------------
{
	my $p = $rcv->{port};
	my $w1 = add_webhook($node, "http://hookuser:p%40ss%3Aword\@127.0.0.1:$p/ok?a=1&b=%2F&c=%E2%9C%93&d=x+y#frag",
		tag => 'asst_e_userinfo');
	my $d1 = end_call($node, 'call_e_userinfo', tag => 'asst_e_userinfo');
	wait_status($d1, 'succeeded', 10, 'userinfo URL: delivered');
	my ($r1) = requests_for($rcv, $d1);
	is($r1->{path}, '/ok?a=1&b=%2F&c=%E2%9C%93&d=x+y', 'query string sent byte for byte, fragment not sent');
	is($r1->{headers}{authorization} // '', 'Basic ' . MIME::Base64::encode_base64('hookuser:p@ss:word', ''),
		'userinfo sent as HTTP Basic credentials (percent-decoded)');
	unlike(slurp_file($node->logfile), qr/p%40ss|p\@ss:word/, 'the userinfo password is not in the server log');

	my $v6 = start_receiver(name => 'edges_v6', host => '::1', secret => $secret);
	add_webhook($node, "$v6->{url}/ok?case=ipv6", tag => 'asst_e_v6', secret => $secret);
	my $d2 = end_call($node, 'call_e_v6', tag => 'asst_e_v6');
	wait_status($d2, 'succeeded', 10, 'IPv6 literal [::1] with ::1/128 allowed: delivered');
	my ($r2) = requests_for($v6, $d2);
	is($r2->{headers}{host}, "[::1]:$v6->{port}", 'IPv6 literal: Host header in brackets');
	ok($r2->{sig_raw_ok}, 'IPv6 literal: signed');
	stop_receiver($v6);
}

# ---------------------------------------------------------------------------
# 9. DROP EXTENSION + CREATE EXTENSION while requests are in flight
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/slow/1500?gen=1", tag => 'asst_e_gen1');
	add_webhook($node, "$rcv->{url}/hang?gen=1", tag => 'asst_e_gen1');
	my @old = end_calls($node, 'call_e_gen1', 3, tag => 'asst_e_gen1');
	is(scalar(@old), 6, 'drop/create: six deliveries queued in the first generation');
	ok(wait_for_requests($rcv, sub { (grep { $_->{path} =~ /gen=1/ } @_) >= 6 }, 10, 'gen 1 in flight'),
		'drop/create: six requests in flight');
	my $t0 = Time::HiRes::time();
	my ($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION aloro_webhook CASCADE',
		timeout => 20);
	is($rc, 0, 'drop/create: DROP EXTENSION succeeds while requests are in flight') or diag($err);
	ok(Time::HiRes::time() - $t0 < 10, 'drop/create: DROP EXTENSION does not wait on the network');
	$node->safe_psql('postgres', 'CREATE EXTENSION aloro_webhook');

	my $wh = add_webhook($node, "$rcv->{url}/ok?gen=2", tag => 'asst_e_gen2', secret => $secret);
	my @new = end_calls($node, 'call_e_gen2', 3, tag => 'asst_e_gen2');
	is(scalar(@new), 3, 'drop/create: three deliveries queued in the new generation');
	my $in = join(',', @new);
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			'3', 20),
		'drop/create: the new generation is delivered');
	is(worker_pid($node), $pid0, 'drop/create: the same worker carried on (no crash)');

	# a bounded wait past the old requests' end (slow 1.5 s, timeout 2 s), to
	# show that nothing of theirs is written into the new tables
	my $left = $t0 + 3.0 - Time::HiRes::time();
	Time::HiRes::sleep($left) if $left > 0;
	my $r = query_row($node, q{
		SELECT (SELECT count(*) FROM aloro_webhook.deliveries) AS deliveries,
		       (SELECT count(*) FROM aloro_webhook.delivery_attempts) AS attempts,
		       (SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE http_status = 200) AS ok,
		       (SELECT count(*) FROM aloro_webhook.deliveries WHERE status <> 'succeeded') AS not_ok});
	is($r->{deliveries}, 3, 'drop/create: only the new deliveries exist');
	is($r->{attempts}, 3, 'drop/create: no result of the old generation was written into the new tables');
	is($r->{ok}, 3, 'drop/create: each new attempt is a 200');
	my @gen2 = grep { $_->{path} eq '/ok?gen=2' } receiver_log($rcv);
	is(scalar(@gen2), 3, 'drop/create: the new endpoint got exactly three requests');
	unlike(slurp_file($node->logfile), qr/could not record attempt/,
		'drop/create: no "could not record" warning');
}

is(worker_pid($node), $pid0, 'the worker is the same process at the end');
my $log = slurp_file($node->logfile);
unlike($log, qr/aloro_webhook worker.*(?:terminated by signal|exited with exit code)/, 'the worker never crashed');
stop_receiver($rcv);
$node->stop;
done_testing();
