# Deliveries that work on the first try: the request exactly as the contract
# says (headers, signature checked both ways, body bytes), the history it
# leaves, unsigned webhooks, the test request, a redirect that must not be
# followed, and a huge response body.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Encode ();
use Time::Local qw(timegm);

# (the Makefile's PROVE_FLAGS -I ./test/t is reset by PGXS; find the helpers here)
use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $secret = 'whsec_tap_020_' . int(rand(1_000_000_000));
my $node = aw_node('deliver');
my $rcv = start_receiver(name => 'deliver', secret => $secret);
my $version = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'");

ok(wait_for_worker($node, 30), 'the delivery worker runs');

# ---------------------------------------------------------------------------
# 1. Signed delivery on the first try
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_signed';
	my $wh = add_webhook($node, "$rcv->{url}/ok?case=signed", tag => $tag, secret => $secret);
	# the contract's example row, as this case's call, with characters outside ASCII
	my $example = slurp_file("$FindBin::RealBin/../fixtures/example_call.sql");
	$example =~ s/\('call_abc123',/('call_signed_1',/ or die 'example call: no id';
	$example =~ s/'asst_xyz789'/'asst_signed'/ or die 'example call: no assistant';
	$example =~ s/"summary": "Customer inquired about order status"/"summary": "Client satisfait ✓ — café 😀", "1": 0.30/
	  or die 'example call: no summary';
	$node->safe_psql('postgres', $example);
	my $did = $node->safe_psql('postgres',
		"SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_signed_1' AND webhook_id = $wh");
	ok($did ne '', 'a delivery was queued for the call');

	ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $did",
			'succeeded', 30),
		'signed delivery succeeds');

	my $d = delivery($node, $did);
	is($d->{attempts}, 1, 'one attempt');
	is($d->{last_http_status}, 200, 'last_http_status 200');
	ok(defined $d->{finished_at}, 'finished_at set');
	ok(!defined $d->{next_attempt_at}, 'next_attempt_at cleared once finished');
	ok(!defined $d->{last_error}, 'no last_error');

	my @a = attempts($node, $did);
	is(scalar(@a), 1, 'one delivery_attempts row');
	is($a[0]{attempt}, 1, 'attempt numbered 1');
	is($a[0]{http_status}, 200, 'attempt http_status 200');
	ok(!defined $a[0]{error}, 'attempt error NULL');
	is($a[0]{response_body}, 'ok', "attempt response_body 'ok'");
	ok(defined $a[0]{duration_ms} && $a[0]{duration_ms} >= 0, 'attempt duration recorded');

	my @req = requests_for($rcv, $did);
	is(scalar(@req), 1, 'exactly one request arrived');
	my $r = $req[0];
	is($r->{method}, 'POST', 'method POST');
	is($r->{path}, '/ok?case=signed', 'path and query string as configured');
	is($r->{headers}{'content-type'}, 'application/json', 'Content-Type application/json');
	is($r->{headers}{'user-agent'}, "aloro-webhook/$version", "User-Agent aloro-webhook/$version");
	is($r->{headers}{'x-aloro-delivery'}, $did, 'X-Aloro-Delivery = deliveries.id');
	ok($r->{signed}, 'X-Aloro-Signature present');
	ok($r->{sig_raw_ok}, 'signature verifies over the raw body');
	ok($r->{sig_stringify_ok}, 'signature verifies over JSON.stringify(JSON.parse(body))');
	my $want_sig = $node->safe_psql('postgres',
		"SET log_statement = 'none'; SELECT aloro_webhook.sign(body, " . quote_lit($secret) . ") FROM aloro_webhook.deliveries WHERE id = $did");
	is($r->{headers}{'x-aloro-signature'}, $want_sig, 'X-Aloro-Signature = sign(body, secret)');

	my $ts = $r->{headers}{'x-aloro-timestamp'} // '';
	like($ts, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'X-Aloro-Timestamp is YYYY-MM-DDTHH:MM:SSZ');
	if ($ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/)
	{
		my $epoch = timegm($6, $5, $4, $3, $2 - 1, $1);
		my $skew = $r->{t} / 1000 - $epoch;
		ok($skew > -2 && $skew < 10, "X-Aloro-Timestamp is the time of sending (off by ${skew}s)");
	}
	else
	{
		fail('X-Aloro-Timestamp parses');
	}

	my $body_hash = $node->safe_psql('postgres',
		"SELECT encode(sha256(convert_to(body, 'UTF8')), 'hex') || ' ' || octet_length(body)
		   FROM aloro_webhook.deliveries WHERE id = $did");
	is("$r->{body_sha256} $r->{body_bytes}", $body_hash, 'body bytes identical to deliveries.body');
	is($r->{body}, $d->{body}, 'body text identical to deliveries.body');
	is($d->{body},
		query_row($node, "SELECT aloro_webhook.call_payload('call_signed_1') AS p")->{p},
		'body is the call payload');
	# (this file is not "use utf8": the literal is UTF-8 bytes, the log holds characters)
	my $summary = Encode::decode('UTF-8', 'Client satisfait ✓ — café 😀');
	like($r->{body}, qr/"summary":"\Q$summary\E"/, 'non-ASCII text arrives as UTF-8');
}

# ---------------------------------------------------------------------------
# 2. Unsigned webhook: no signature header at all
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_unsigned';
	add_webhook($node, "$rcv->{url}/ok?case=unsigned", tag => $tag);
	my $did = end_call($node, 'call_unsigned_1', tag => $tag);
	ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $did",
			'succeeded', 30),
		'unsigned delivery succeeds');
	my @req = requests_for($rcv, $did);
	is(scalar(@req), 1, 'unsigned: one request');
	ok(!$req[0]{signed}, 'unsigned: no X-Aloro-Signature header');
	like($req[0]{headers}{'x-aloro-timestamp'} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
		'unsigned: X-Aloro-Timestamp still sent');
	is($req[0]{headers}{'x-aloro-delivery'}, $did, 'unsigned: X-Aloro-Delivery sent');
}

# ---------------------------------------------------------------------------
# 3. test_webhook(): the test payload goes through the same path
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_testreq';
	my $wh = add_webhook($node, "$rcv->{url}/ok?case=test", tag => $tag, secret => $secret);
	my $did = $node->safe_psql('postgres', "SELECT aloro_webhook.test_webhook($wh)");
	ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $did",
			'succeeded', 30),
		'test request succeeds');
	my @req = requests_for($rcv, $did);
	is(scalar(@req), 1, 'test request: one request');
	like($req[0]{body}, qr/^\{"event":"call\.ended","timestamp":"[^"]+","test":true,/,
		'test request: "test":true payload');
	like($req[0]{body}, qr/"id":"test_call_$did"/, "test request: call id test_call_$did");
	ok($req[0]{sig_raw_ok} && $req[0]{sig_stringify_ok}, 'test request: signature verifies both ways');
	my $d = delivery($node, $did);
	ok($d->{test}, 'test request: deliveries.test is true');
	ok(!defined $d->{call_id}, 'test request: call_id NULL');
	is($req[0]{body}, $d->{body}, 'test request: body identical to deliveries.body');
}

# ---------------------------------------------------------------------------
# 4. A redirect is a failed attempt and is not followed
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_redirect';
	add_webhook($node, "$rcv->{url}/redirect?to=/ok/redirect-target", tag => $tag, secret => $secret);
	my $did = end_call($node, 'call_redirect_1', tag => $tag);
	ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $did",
			'failed', 60),
		'redirecting endpoint: delivery ends failed');
	my $d = delivery($node, $did);
	is($d->{attempts}, 5, 'redirect: every attempt of the schedule used');
	is($d->{last_http_status}, 302, 'redirect: last_http_status 302');
	ok(defined $d->{last_error}, 'redirect: last_error set');
	my @a = attempts($node, $did);
	is_deeply([ map { $_->{http_status} } @a ], [ (302) x 5 ], 'redirect: five attempts, each 302');
	ok(!(grep { !defined $_->{error} } @a), 'redirect: every failed attempt has an error');
	my @all = receiver_log($rcv);
	my @target = grep { $_->{path} =~ m{^/ok/redirect-target} } @all;
	is(scalar(@target), 0, 'redirect: the Location was never requested');
	is(scalar(requests_for($rcv, $did)), 5, 'redirect: five requests, all to /redirect');
}

# ---------------------------------------------------------------------------
# 5. A huge response body: success, response_body capped
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_huge';
	add_webhook($node, "$rcv->{url}/huge", tag => $tag);
	my $did = end_call($node, 'call_huge_1', tag => $tag);
	ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $did",
			'succeeded', 30),
		'huge response: delivery succeeds');
	my $limit = $node->safe_psql('postgres',
		"SELECT setting FROM pg_settings WHERE name = 'aloro_webhook.response_body_limit'");
	$limit = 4096 if $limit eq '';
	my @a = attempts($node, $did);
	is(scalar(@a), 1, 'huge response: one attempt');
	is($a[0]{http_status}, 200, 'huge response: http_status 200');
	my $len = $node->safe_psql('postgres',
		"SELECT coalesce(octet_length(response_body), 0) FROM aloro_webhook.delivery_attempts
		  WHERE delivery_id = $did");
	ok($len <= $limit, "huge response: response_body kept to the limit ($len <= $limit bytes)");
	ok($len > 0, 'huge response: the first bytes are kept');
	like($a[0]{response_body} // '', qr/^x+$/, 'huge response: response_body holds the first bytes');
}

# ---------------------------------------------------------------------------
# 6. Keep-alive: deliveries one after another reuse the connection
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_keepalive';
	add_webhook($node, "$rcv->{url}/ok?case=keepalive", tag => $tag);
	my @ports;
	for my $i (1 .. 3)
	{
		my $did = end_call($node, "call_keepalive_$i", tag => $tag);
		poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 30);
		push @ports, map { $_->{remote_port} } requests_for($rcv, $did);
	}
	is(scalar(@ports), 3, 'keep-alive: three deliveries arrived');
	my %distinct = map { $_ => 1 } @ports;
	is(scalar(keys %distinct), 1, 'keep-alive: one connection carried all three (client ports ' . join(',', @ports) . ')');
}

# ---------------------------------------------------------------------------
# The secret never reaches the server log
# ---------------------------------------------------------------------------
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$secret\E/, 'the webhook secret does not appear in the server log');
my $stored = $node->safe_psql('postgres',
	"SET log_statement = 'none'; SELECT count(*) FROM aloro_webhook.deliveries WHERE strpos(body, " . quote_lit($secret) . ") > 0
	 UNION ALL
	 SELECT count(*) FROM aloro_webhook.delivery_attempts
	  WHERE strpos(coalesce(error, '') || coalesce(response_body, ''), " . quote_lit($secret) . ") > 0");
is($stored, "0\n0", 'the secret appears in no delivery and no attempt');

stop_receiver($rcv);
$node->stop;
done_testing();
