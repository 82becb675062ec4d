# Endpoint controls against real receivers and a real proxy: per-webhook
# headers (validated, hidden from the reader, never logged), rate limits
# (paced, not counted as attempts, other webhooks not slowed), payload
# filters (jsonpath, silent), the egress proxy, and forget_call().
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('controls');
my $rcv = start_receiver(name => 'controls');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub refused
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', "SET log_statement = 'none'; $sql", stdout => \$out, stderr => \$err);
	return $err;
}
sub wait_status { my ($id, $status, $what) = @_; return delivery_reaches($node, $id, $status, 30, $what); }

# ---------------------------------------------------------------------------
# headers
# ---------------------------------------------------------------------------
{
	my $token = 'tok_very_secret_4711';
	my $wid = sql("SET log_statement = 'none';
		INSERT INTO aloro_webhook.webhooks (url, assistant_id, headers)
		VALUES ('$rcv->{url}/ok/headers', 'hdr', '{\"Authorization\": \"Bearer $token\", \"X-Tenant\": \"42\"}')
		RETURNING id");
	my $did = end_call($node, 'call_hdr', tag => 'hdr');
	wait_status($did, 'succeeded', 'headers: delivered');
	my ($r) = requests_for($rcv, $did);
	is($r->{headers}{authorization}, "Bearer $token", 'headers: Authorization is sent');
	is($r->{headers}{'x-tenant'}, '42', 'headers: X-Tenant is sent');
	is($r->{headers}{'content-type'}, 'application/json', 'headers: the extension\'s own stay');

	for my $case (
		[ '{"Content-Type": "text/plain"}', qr/webhook header "Content-Type" cannot be set/, 'Content-Type' ],
		[ '{"x-aloro-delivery": "1"}', qr/webhook header "x-aloro-delivery" cannot be set/, 'X-Aloro-*' ],
		[ '{"webhook-id": "1"}', qr/webhook header "webhook-id" cannot be set/, 'webhook-*' ],
		[ '{"Host": "evil"}', qr/webhook header "Host" cannot be set/, 'Host' ],
		[ '{"Bad Header": "v"}', qr/invalid webhook header name "Bad Header"/, 'a name with a space' ],
		[ '{"X-Evil": "a\\r\\nX-Injected: 1"}', qr/webhook header "X-Evil" has a CR, LF or NUL/, 'CR/LF in a value' ],
		[ '{"X-Num": 5}', qr/webhook header "X-Num" must have a string value/, 'a number value' ],
		[ '["X-A"]', qr/webhook headers must be a JSON object, not an array/, 'not an object' ])
	{
		my ($json, $re, $what) = @$case;
		my $err = refused("UPDATE aloro_webhook.webhooks SET headers = '$json' WHERE id = $wid");
		like($err, $re, "headers: $what is refused by name");
	}
	my $err = refused("UPDATE aloro_webhook.webhooks SET headers = '{\"X-Key\": \"tok_refused_0815\", \"Host\": \"x\"}' WHERE id = $wid");
	like($err, qr/"Host" cannot be set/, 'refused for the reserved header');
	unlike($err, qr/tok_refused_0815/, 'a refusal never prints a header value');

	$err = refused("SET ROLE aloro_webhook_reader; SELECT headers FROM aloro_webhook.webhooks");
	like($err, qr/permission denied/, 'the reader cannot read headers');
	is(sql("SET ROLE aloro_webhook_reader; SELECT count(*) FROM aloro_webhook.webhooks WHERE id = $wid AND rate_limit IS NULL"),
		'1', 'the reader reads the other new columns');
	my $history = sql("SET log_statement = 'none'; SELECT string_agg(x::text, '') FROM aloro_webhook.delivery_attempts x")
	  . sql("SET log_statement = 'none'; SELECT string_agg(x::text, '') FROM aloro_webhook.deliveries x");
	unlike($history, qr/$token/, 'no history row holds the header value');
	# (PostgreSQL logs the text of a statement that fails: doc/endpoint-controls.md says to bind credentials)
	my @lines = grep { /$token|tok_refused_0815/ && !/STATEMENT:|statement:/ } split /\n/, slurp_file($node->logfile);
	is(scalar @lines, 0, 'no log line of the extension holds a header value') or diag(join("\n", @lines));
}

# ---------------------------------------------------------------------------
# rate limit
# ---------------------------------------------------------------------------
{
	like(refused("INSERT INTO aloro_webhook.webhooks (url, rate_limit) VALUES ('$rcv->{url}/ok', 0)"),
		qr/rate_limit must be at least 1 request per second, not 0/, 'rate_limit 0 is refused');
	my $limited = sql("INSERT INTO aloro_webhook.webhooks (url, assistant_id, rate_limit)
		VALUES ('$rcv->{url}/ok/limited', 'rl', 5) RETURNING id");
	my $free = add_webhook($node, "$rcv->{url}/ok/free", tag => 'rl');
	my $t0 = now_epoch();
	my @ids = end_calls($node, 'call_rl', 15, tag => 'rl');
	is(scalar @ids, 30, '15 calls to a limited and an unlimited webhook');
	ok(poll_until($node,
			"SELECT count(*) = 15 FROM aloro_webhook.deliveries WHERE webhook_id = $free AND status = 'succeeded'", 't', 30),
		'the unlimited webhook gets all 15');
	my $free_done = now_epoch() - $t0;
	ok(poll_until($node,
			"SELECT count(*) = 15 FROM aloro_webhook.deliveries WHERE webhook_id = $limited AND status = 'succeeded'", 't', 30),
		'the limited webhook gets all 15');
	my @t = sort { $a <=> $b } map { $_->{t} / 1000 } grep { $_->{path} eq '/ok/limited' } receiver_log($rcv);
	is(scalar @t, 15, 'the limited receiver saw 15 requests');
	my $max = 0;
	for my $i (0 .. $#t)
	{
		my $n = grep { $_ >= $t[$i] && $_ < $t[$i] + 1 } @t;
		$max = $n if $n > $max;
	}
	cmp_ok($max, '<=', 6, "rate_limit 5: at most 6 requests in any second (saw $max)");
	my $span = $t[-1] - $t[0];
	cmp_ok($span, '>=', 2.5, sprintf('rate_limit 5: 15 requests spread over %.2f s, smoothly', $span));
	cmp_ok($free_done, '<', $span, sprintf('the unlimited webhook was not slowed (done in %.2f s)', $free_done));
	is(sql("SELECT max(attempts) FROM aloro_webhook.deliveries WHERE webhook_id = $limited"), '1',
		'waiting for the limit is not a failed attempt');
}

# ---------------------------------------------------------------------------
# filter
# ---------------------------------------------------------------------------
{
	my $wid = sql("INSERT INTO aloro_webhook.webhooks (url, assistant_id, filter)
		VALUES ('$rcv->{url}/ok/sales', 'flt', '\$.data.variables.lead_qualified == true') RETURNING id");
	my $yes = end_call($node, 'call_flt_yes', tag => 'flt', variables => '{"lead_qualified": true}');
	ok(defined $yes, 'filter: a matching call is queued');
	wait_status($yes, 'succeeded', 'filter: and delivered');
	my $no = end_call($node, 'call_flt_no', tag => 'flt', variables => '{"lead_qualified": false}');
	ok(!defined $no, 'filter: a call that does not match is not queued');
	is(sql("SELECT count(*) FROM aloro_webhook.ended_calls WHERE call_id = 'call_flt_no'"), '1', 'it still ended');
	is(sql("SELECT aloro_webhook.matches($wid, 'call_flt_yes')"), 't', 'matches(): true for the matching call');
	is(sql("SELECT aloro_webhook.matches($wid, 'call_flt_no')"), 'f', 'matches(): false for the other');
	is(sql("SELECT aloro_webhook.filter_matches('\$.data.variables.lead_qualified == false', 'call_flt_no')"), 't',
		'filter_matches(): try a filter before saving it');
	# a filter that errors on a call counts as false, and the call still ends
	sql("UPDATE aloro_webhook.webhooks SET filter = '\$.data.variables.score + 1 > 2' WHERE id = $wid");
	my $err = refused("INSERT INTO aloro_webhook.calls (id, status, assistant_id, variables)
		VALUES ('call_flt_err', 'completed', 'flt', '{\"score\": \"high\"}')");
	is($err, '', 'a filter that errors does not fail the platform\'s write');
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_flt_err'"), '0',
		'a filter that errors counts as false');
	my $ok = end_call($node, 'call_flt_num', tag => 'flt', variables => '{"score": 5}');
	ok(defined $ok, 'the same filter queues a call it matches');
	sql("UPDATE aloro_webhook.webhooks SET filter = NULL WHERE id = $wid");
	ok(defined end_call($node, 'call_flt_null', tag => 'flt'), 'filter NULL: every call');
}

# ---------------------------------------------------------------------------
# egress proxy
# ---------------------------------------------------------------------------
{
	my $proxy = start_receiver(name => 'proxy', script => 'test/receiver/proxy.js',
		args => [ '--map', 'receiver.test=127.0.0.1' ]);
	like(refused("ALTER SYSTEM SET aloro_webhook.proxy = 'socks5://127.0.0.1:1'"),
		qr/invalid aloro_webhook.proxy "socks5:\/\/127.0.0.1:1"/, 'a proxy that is not http:// is refused');
	aw_set($node, 'aloro_webhook.proxy' => "http://127.0.0.1:$proxy->{port}");
	# a name only the proxy can resolve: delivered only if the request went through it
	add_webhook($node, "http://receiver.test:$rcv->{port}/ok/proxied", tag => 'prx');
	my $did = end_call($node, 'call_prx', tag => 'prx');
	wait_status($did, 'succeeded', 'proxy: delivered to a name only the proxy resolves');
	my @p = grep { ($_->{url} // '') =~ m{^http://receiver\.test:\d+/ok/proxied} } receiver_log($proxy);
	is(scalar @p, 1, 'proxy: the request went through the proxy');
	is($p[0]{headers}{'x-aloro-delivery'}, $did, 'proxy: with its headers');
	aw_set($node, 'aloro_webhook.proxy' => undef);
	my $direct = end_call($node, 'call_prx_direct', tag => 'hdr');
	wait_status($direct, 'succeeded', 'proxy unset: direct again');
	is(scalar(grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $direct } receiver_log($proxy)), 0,
		'proxy unset: the proxy saw nothing');
}

# ---------------------------------------------------------------------------
# forget_call
# ---------------------------------------------------------------------------
{
	my $sent = add_webhook($node, "$rcv->{url}/ok/forget", tag => 'fgt');
	# a receiver that fails, with the retry an hour away: a pending delivery
	my $held = add_webhook($node, "$rcv->{url}/status/500", tag => 'fgt');
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 1h');
	end_call($node, 'call_fgt', tag => 'fgt');
	my $d_sent = sql("SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_fgt' AND webhook_id = $sent");
	my $d_held = sql("SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_fgt' AND webhook_id = $held");
	wait_status($d_sent, 'succeeded', 'forget_call: one delivery went out');
	ok(poll_until($node, "SELECT attempts = 1 AND status = 'pending' AND claimed_at IS NULL FROM aloro_webhook.deliveries WHERE id = $d_held", 't', 30),
		'forget_call: the other waits for its retry');
	like(refused("SET ROLE aloro_webhook_reader; SELECT aloro_webhook.forget_call('call_fgt')"),
		qr/permission denied/, 'forget_call is for admins only');
	is(sql("SET ROLE aloro_webhook_admin; SELECT aloro_webhook.forget_call('call_fgt')"), '2', 'forget_call erased 2 deliveries');
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_fgt' AND body IS NOT NULL"), '0',
		'the bodies are gone');
	is(sql("SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE delivery_id = $d_sent AND response_body IS NOT NULL"),
		'0', 'the response bodies are gone');
	is(sql("SELECT status || ' ' || attempts FROM aloro_webhook.deliveries WHERE id = $d_sent"), 'succeeded 1',
		'the facts stay');
	like(sql("SELECT status || ': ' || last_error FROM aloro_webhook.deliveries WHERE id = $d_held"),
		qr/^failed: payload erased/, 'the pending one is failed, never sent');
	is(sql("SELECT count(*) FROM aloro_webhook.queue WHERE delivery_id = $d_held"), '0', 'and out of the queue');
	is(sql("SELECT count(*) FROM aloro_webhook.ended_calls WHERE call_id = 'call_fgt'"), '1',
		'the ended mark stays: the call never fires again');
	sql("UPDATE aloro_webhook.calls SET status = 'in-progress' WHERE id = 'call_fgt'");
	sql("UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'call_fgt'");
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_fgt'"), '2', 'ending it again queues nothing');
	is(sql("SELECT aloro_webhook.forget_call('no_such_call')"), '0', 'forgetting an unknown call erases nothing');
	aw_set($node, 'aloro_webhook.retry_schedule' => undef);
}

# ---------------------------------------------------------------------------
# big bodies stuck on a dead endpoint do not hold up small ones
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.max_in_flight_bytes' => '1MB', 'aloro_webhook.timeout' => '20s');
	my $big = add_webhook($node, "$rcv->{url}/hang", tag => 'big');
	sql("INSERT INTO aloro_webhook.calls (id, status, assistant_id, transcript)
		 SELECT 'call_big_' || g, 'completed', 'big',
				jsonb_build_array(jsonb_build_object('speaker', 'ai', 'text', repeat('x', 200000), 'start', 0))
		   FROM generate_series(1, 4) g");
	ok(poll_until($node,
			"SELECT count(*) >= 2 FROM aloro_webhook.queue WHERE webhook_id = $big AND claimed_by IS NOT NULL", 't', 20),
		'big bodies to a hanging endpoint fill max_in_flight_bytes')
	  or diag(sql("SELECT string_agg(format('%s %s %s %s', q.delivery_id, q.bytes, q.claimed_by IS NOT NULL, q.due_at - now()), E'\\n') FROM aloro_webhook.queue q WHERE webhook_id = $big"));
	my $small = end_call($node, 'call_small_after_big', tag => 'hdr');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $small", 'succeeded', 10),
		'a small body to another webhook goes at once');
	is(sql("SELECT count(*) >= 2 FROM aloro_webhook.queue WHERE webhook_id = $big AND claimed_by IS NOT NULL"), 't',
		'while the big ones are still in flight');
	sql("DELETE FROM aloro_webhook.webhooks WHERE id = $big");
	aw_set($node, 'aloro_webhook.max_in_flight_bytes' => undef, 'aloro_webhook.timeout' => undef);
}

done_testing();
