# Hostile and broken receivers (test/receiver/hostile.js, raw TCP): endpoints
# that never answer, drip bytes, flood bodies or headers, speak garbage, reset
# or close at every stage, send invalid UTF-8 and NUL bytes, answer HTTP/1.0,
# 100 Continue, 204/201, redirect to private addresses, answer before reading
# the body, or push an unsolicited second response on a kept-alive connection;
# and URLs that dress a loopback address up as something else.
#
# For each: the worker survives (same pid, no crash, bounded memory), the
# attempt is recorded with a sensible http_status/error, the retry schedule
# is followed, no attempt outlives aloro_webhook.timeout (plus a margin), and
# the other webhooks' deliveries keep flowing meanwhile.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Encode ();

# (the Makefile's PROVE_FLAGS -I ./test/t is reset by PGXS; find the helpers here)
use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $timeout_ms = 1500;
my $margin_ms = 1000;
my $n_attempts = 3;
my $secret = 'whsec_tap_080';
my $node = aw_node('hostile',
	conf => {
		'aloro_webhook.timeout' => "${timeout_ms}ms",
		'aloro_webhook.retry_schedule' => '0, 200ms, 200ms',
		# the big-body cases carry a 5 MB body; the log need not
		log_statement => 'none',
		# (above aloro_webhook.max_payload_size's default of 1 MB)
		'aloro_webhook.max_payload_size' => '8MB',
	});
my $h = start_receiver(name => 'hostile', script => 'test/receiver/hostile.js');
my $good = start_receiver(name => 'hostile_good', secret => $secret);
my $pid0 = wait_for_worker($node, 30);
ok($pid0 ne '', "the delivery worker runs ($pid0)");
my $rss0 = worker_rss_kb($node) // 0;
my $limit = $node->safe_psql('postgres',
	"SELECT setting FROM pg_settings WHERE name = 'aloro_webhook.response_body_limit'");
$limit = 4096 if $limit eq '';

sub hlog { return receiver_log($h); }

# ---------------------------------------------------------------------------
# The cases.  kind:
#   ok       the first attempt succeeds with http_status => N
#   status   every attempt fails with http_status => N
#   nostatus every attempt fails with no HTTP status
#   timeout  every attempt fails with a timeout error
#   fail     every attempt fails (an error; any status)
#   any      recorded and finished in time, whatever the outcome
# ---------------------------------------------------------------------------
my $hu = $h->{url};
my %port = %{ $h->{ports} };
my %cases = (
	ok_same_host      => { url => "$hu/b/ok", kind => 'ok', http => 200 },
	status_204        => { url => "$hu/b/status/204", kind => 'ok', http => 204 },
	status_201        => { url => "$hu/b/status/201", kind => 'ok', http => 201 },
	status_299        => { url => "$hu/b/status/299", kind => 'ok', http => 299 },
	http10_no_length  => { url => "$hu/b/http10", kind => 'ok', http => 200 },
	continue_then_200 => { url => "$hu/b/continue", kind => 'ok', http => 200 },
	badutf8_200       => { url => "$hu/b/badutf8/200", kind => 'ok', http => 200 },
	badutf8_500       => { url => "$hu/b/badutf8/500", kind => 'status', http => 500 },
	cututf8_200       => { url => "$hu/b/cututf8/200?limit=$limit", kind => 'ok', http => 200 },
	flood_200         => { url => "$hu/b/flood/200", kind => 'ok', http => 200 },
	flood_500         => { url => "$hu/b/flood/500", kind => 'status', http => 500 },
	flood_chunked_200 => { url => "$hu/b/flood-chunked/200", kind => 'ok', http => 200 },
	silent            => { url => "$hu/b/silent", kind => 'timeout', nostatus => 1 },
	accept_silent     => { url => "http://127.0.0.1:$port{accept_silent}/x", kind => 'timeout', nostatus => 1 },
	drip_body         => { url => "$hu/b/drip", kind => 'timeout' },
	drip_head         => { url => "$hu/b/drip-head", kind => 'timeout', nostatus => 1 },
	continue_only     => { url => "$hu/b/continue-only", kind => 'timeout', no_1xx => 1 },
	header_flood      => { url => "$hu/b/header-flood", kind => 'fail', fast => 1 },
	bigheader_1mb     => { url => "$hu/b/bigheader", kind => 'fail', fast => 1 },
	close_mid_headers => { url => "$hu/b/close-mid-headers", kind => 'fail', fast => 1 },
	partial_body      => { url => "$hu/b/partial", kind => 'fail', fast => 1 },
	bad_chunked       => { url => "$hu/b/bad-chunked", kind => 'fail', fast => 1 },
	garbage           => { url => "$hu/b/garbage", kind => 'nostatus', fast => 1 },
	banner            => { url => "$hu/b/banner", kind => 'nostatus', fast => 1 },
	rst_after_request => { url => "$hu/b/rst", kind => 'nostatus', fast => 1 },
	close_after_request => { url => "$hu/b/close", kind => 'nostatus', fast => 1 },
	accept_close      => { url => "http://127.0.0.1:$port{accept_close}/x", kind => 'nostatus', fast => 1 },
	accept_rst        => { url => "http://127.0.0.1:$port{accept_rst}/x", kind => 'nostatus', fast => 1 },
	accept_garbage    => { url => "http://127.0.0.1:$port{accept_garbage}/x", kind => 'nostatus', fast => 1 },
	redirect_302_self => { url => "$hu/b/redirect/302?to=/b/ok%3Fredirect-target", kind => 'status', http => 302,
		error => qr/redirect/i },
	redirect_307_private => { url => "$hu/b/redirect/307?to=http://10.0.0.1/hook", kind => 'status', http => 307,
		error => qr/redirect/i },
	redirect_308_metadata => { url => "$hu/b/redirect/308?to=http://169.254.169.254/latest/meta-data/",
		kind => 'status', http => 308, error => qr/redirect/i },
	redirect_301_file => { url => "$hu/b/redirect/301?to=file:///etc/passwd", kind => 'status', http => 301,
		error => qr/redirect/i },
	# TLS spoken to something that is not TLS
	tls_to_garbage    => { url => "https://127.0.0.1:$port{accept_garbage}/x", kind => 'nostatus', fast => 1 },
	tls_to_http       => { url => "https://127.0.0.1:$port{accept_close}/x", kind => 'nostatus', fast => 1 },
	tls_to_silent     => { url => "https://127.0.0.1:$port{accept_silent}/x", kind => 'timeout', nostatus => 1 },
	# these two carry a 5 MB body (see below)
	early_200_big     => { url => "$hu/b/early", kind => 'ok', http => 200, big => 1 },
	early_close_big   => { url => "$hu/b/early-close", kind => 'any', big => 1 },
	noread_big        => { url => "http://127.0.0.1:$port{accept_noread}/x", kind => 'timeout', nostatus => 1, big => 1 },
	# a name that does not resolve
	nxdomain          => { url => "http://aloro-hostile.invalid/x", kind => 'nostatus' },
);

for my $c (sort keys %cases)
{
	$cases{$c}{tag} = "asst_h_$c";
	$cases{$c}{wh} = add_webhook($node, $cases{$c}{url}, tag => $cases{$c}{tag}, secret => $secret);
}
my $good_wh = add_webhook($node, "$good->{url}/ok?case=healthy", tag => 'asst_h_healthy', secret => $secret);

# All of them end in one transaction; the big ones carry a ~5 MB transcript.
{
	my @small = grep { !$cases{$_}{big} } sort keys %cases;
	my @big = grep { $cases{$_}{big} } sort keys %cases;
	my $sql = "BEGIN;\n";
	$sql .= "INSERT INTO aloro_webhook.calls (id, status, assistant_id, ended_at) VALUES "
	  . join(', ', map { "('call_h_$_', 'completed', " . quote_lit($cases{$_}{tag}) . ", now())" } @small) . ";\n";
	for my $c (@big)
	{
		$sql .= "INSERT INTO aloro_webhook.calls (id, status, assistant_id, ended_at, transcript)
		  SELECT 'call_h_$c', 'completed', " . quote_lit($cases{$c}{tag}) . ", now(),
		         jsonb_agg(jsonb_build_object('speaker', CASE WHEN g % 2 = 0 THEN 'ai' ELSE 'customer' END,
		                                      'text', g || ' ' || repeat('é', 500), 'start', g))
		    FROM generate_series(1, 2500) g;\n";
	}
	$sql .= "COMMIT;";
	$node->safe_psql('postgres', $sql);
}
for my $c (sort keys %cases)
{
	$cases{$c}{did} = $node->safe_psql('postgres',
		"SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_h_$c'");
}
ok(!(grep { $cases{$_}{did} eq '' } keys %cases), 'one delivery queued per hostile case');
my $bigbytes = $node->safe_psql('postgres',
	"SELECT octet_length(body) FROM aloro_webhook.deliveries WHERE id = $cases{early_200_big}{did}");
note("big body: $bigbytes bytes");

# ---------------------------------------------------------------------------
# 1. While the hostile requests are in flight, a healthy webhook still flows
# ---------------------------------------------------------------------------
{
	my %hanging = map { $cases{$_}{did} => 1 } qw(silent drip_body drip_head continue_only);
	ok(wait_for_requests($h,
			sub { (grep { ($_->{ev} // '') eq 'req' && $hanging{ $_->{delivery} // '' } } @_) >= 4 },
			10, 'the hanging requests to be in flight'),
		'hanging requests are in flight');
	my @ids;
	for my $i (1 .. 5)
	{
		push @ids, end_call($node, "call_h_healthy_$i", tag => 'asst_h_healthy');
	}
	my $in = join(',', @ids);
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			'5', 10),
		'healthy webhook: five deliveries succeed while hostile endpoints hang');
	my $r = query_row($node, qq{
		SELECT max(extract(epoch FROM finished_at - created_at)) * 1000 AS worst_ms,
		       max(attempts) AS max_attempts
		  FROM aloro_webhook.deliveries WHERE id IN ($in)});
	ok($r->{worst_ms} < $timeout_ms,
		"healthy webhook: each delivered in less than one timeout (worst $r->{worst_ms} ms)");
	is($r->{max_attempts}, 1, 'healthy webhook: one attempt each');
	my $still = $node->safe_psql('postgres',
		"SELECT count(*) FROM aloro_webhook.deliveries WHERE id IN (" . join(',', keys %hanging) . ")
		   AND status = 'pending'");
	is($still, '4', 'healthy webhook: delivered while the hanging deliveries were still pending');
	my %want = map { $_ => 1 } @ids;
	my @reqs = grep { $want{ $_->{headers}{'x-aloro-delivery'} // '' } } receiver_log($good);
	is(scalar(@reqs), 5, 'healthy webhook: five requests arrived');
	ok(!(grep { !$_->{sig_raw_ok} } @reqs), 'healthy webhook: signatures verify');
}

# ---------------------------------------------------------------------------
# 2. Every hostile delivery is resolved, within bounded time
# ---------------------------------------------------------------------------
my $all = join(',', map { $cases{$_}{did} } keys %cases);
ok(poll_until($node,
		"SELECT count(*) FROM aloro_webhook.deliveries WHERE id IN ($all) AND status = 'pending'",
		'0', 45),
	'every hostile delivery is resolved (none stuck pending)')
  or diag(join("\n", map { "$_->{id}: $_->{status} attempts=$_->{attempts} claimed=" . ($_->{claimed_at} // 'NULL') }
		query_json($node, "SELECT * FROM aloro_webhook.deliveries WHERE id IN ($all) AND status = 'pending'")));

is(worker_pid($node), $pid0, 'the worker survived every hostile endpoint (same pid)');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still answers queries');

my @hl = hlog();
my %req_by_delivery;
for my $e (grep { ($_->{ev} // '') eq 'req' } @hl)
{
	push @{ $req_by_delivery{ $e->{delivery} // '' } }, $e;
}
# when each connection ended: the client's FIN, or the socket closing, whichever came first
my %close_of;
for my $e (grep { ($_->{ev} // '') =~ /^(?:close|peer_end)$/ } @hl)
{
	$close_of{ $e->{cid} } = $e unless $close_of{ $e->{cid} } && $close_of{ $e->{cid} }{t} <= $e->{t};
}
my %sent_of = map { $_->{cid} => $_->{sent} } grep { ($_->{ev} // '') eq 'close' } @hl;

for my $c (sort keys %cases)
{
	my $k = $cases{$c};
	my $did = $k->{did};
	# (not delivery(): the big bodies are slow to fetch as JSON)
	my $d = query_row($node,
		"SELECT id, status, attempts, next_attempt_at, last_http_status, last_error, claimed_at
		   FROM aloro_webhook.deliveries WHERE id = $did");
	my @a = attempts($node, $did);
	my $summary = "status=$d->{status} attempts=$d->{attempts} http=" . join('/', map { $_->{http_status} // 'NULL' } @a)
	  . " errors=" . join(' | ', map { $_->{error} // 'NULL' } @a);
	note("$c: $summary");

	is_deeply([ map { $_->{attempt} } @a ], [ 1 .. $d->{attempts} ],
		"$c: one attempt row per attempt ($d->{attempts})");
	ok(!defined $d->{claimed_at}, "$c: not left claimed");
	is($d->{last_http_status}, @a ? $a[-1]{http_status} : undef, "$c: last_http_status is the last attempt's");

	# no attempt outlives the timeout; the fast failures do not wait for it
	my @slow = grep { $_->{duration_ms} > $timeout_ms + $margin_ms } @a;
	ok(!@slow, "$c: every attempt ends within timeout + ${margin_ms} ms")
	  or diag("durations: " . join(',', map { $_->{duration_ms} } @a));
	if ($k->{fast})
	{
		my @waited = grep { $_->{duration_ms} >= $timeout_ms - 100 } @a;
		ok(!@waited, "$c: fails fast, without waiting for the timeout")
		  or diag("durations: " . join(',', map { $_->{duration_ms} } @a));
	}

	# success and error agree
	ok(!(grep { !defined $_->{error} && !(defined $_->{http_status} && $_->{http_status} >= 200 && $_->{http_status} < 300) } @a),
		"$c: an attempt without an error has a 2xx status");

	if ($k->{kind} eq 'ok')
	{
		is($d->{status}, 'succeeded', "$c: succeeded") or diag($summary);
		is($d->{attempts}, 1, "$c: on the first attempt");
		is($a[0]{http_status}, $k->{http}, "$c: http_status $k->{http}");
		is($d->{last_http_status}, $k->{http}, "$c: last_http_status $k->{http}");
		ok(!defined $a[0]{error}, "$c: no error");
	}
	elsif ($k->{kind} eq 'any')
	{
		isnt($d->{status}, 'pending', "$c: resolved ($d->{status})");
		ok($d->{status} eq 'succeeded' || $d->{attempts} == $n_attempts,
			"$c: succeeded, or failed after the whole schedule");
	}
	else
	{
		is($d->{status}, 'failed', "$c: failed") or diag($summary);
		is($d->{attempts}, $n_attempts, "$c: after the whole schedule ($n_attempts attempts)");
		ok(!(grep { !defined $_->{error} || $_->{error} eq '' } @a), "$c: every attempt has an error");
		ok(defined $d->{last_error} && $d->{last_error} ne '', "$c: last_error set");
		# each retry waited for its delay after the previous attempt ended
		my @early;
		for my $i (1 .. $#a)
		{
			my $gap = $a[$i]{started_epoch} - ($a[ $i - 1 ]{started_epoch} + $a[ $i - 1 ]{duration_ms} / 1000);
			push @early, sprintf('%.3f', $gap) if $gap < 0.190;
		}
		ok(!@early, "$c: retries follow the schedule") or diag("gaps: @early");
		if ($k->{kind} eq 'status')
		{
			is_deeply([ map { $_->{http_status} } @a ], [ ($k->{http}) x $n_attempts ],
				"$c: http_status $k->{http} on every attempt");
		}
		if ($k->{kind} eq 'nostatus' || $k->{nostatus})
		{
			ok(!(grep { defined $_->{http_status} } @a), "$c: no http_status (no response)")
			  or diag($summary);
		}
		if ($k->{kind} eq 'timeout')
		{
			ok(!(grep { ($_->{error} // '') !~ /time/i } @a), "$c: every error is a timeout");
			ok(!(grep { $_->{duration_ms} < $timeout_ms - 100 } @a), "$c: not cut short before the timeout");
		}
		if ($k->{no_1xx})
		{
			ok(!(grep { defined $_->{http_status} && $_->{http_status} < 200 } @a),
				"$c: an interim 1xx is not recorded as the response status")
			  or diag($summary);
		}
		if ($k->{error})
		{
			ok(!(grep { ($_->{error} // '') !~ $k->{error} } @a), "$c: error says why ($a[0]{error})");
		}
	}

	# the server side: the requests that reached the main listener
	if ($k->{url} =~ m{/b/})
	{
		my @r = @{ $req_by_delivery{$did} // [] };
		ok(@r >= 1, "$c: the request reached the endpoint (" . scalar(@r) . ' requests)');
		# libcurl resends a request whose kept-alive connection died without
		# an answer, on another connection (up to 5 times)
		ok(@r <= 6 * $d->{attempts}, "$c: no more than six requests per attempt (" . scalar(@r) . ')');
		note("$c: " . scalar(@r) . " requests for $d->{attempts} attempts") if @r > $d->{attempts};
		if ($k->{kind} =~ /^(?:timeout|nostatus|fail)$/)
		{
			# the worker hangs up on a failing connection within the timeout of its request
			my @long;
			for my $e (@r)
			{
				my $close = $close_of{ $e->{cid} };
				# (from the request: a kept-alive connection may have carried others before)
				my $open_ms = $close ? $close->{t} - $e->{t} : 'never';
				push @long, "connection $e->{cid}: $open_ms ms"
				  if !$close || $open_ms > $timeout_ms + $margin_ms;
			}
			ok(!@long, "$c: every connection closed within timeout + margin") or diag(join("\n", @long));
		}
	}
}

# ---------------------------------------------------------------------------
# 3. Case-specific checks
# ---------------------------------------------------------------------------
{
	# response bodies with NUL bytes and invalid UTF-8 are stored as valid text
	for my $c (qw(badutf8_200 badutf8_500))
	{
		my @a = attempts($node, $cases{$c}{did});
		ok(@a && !(grep { !defined $_->{response_body} } @a), "$c: response_body stored on every attempt");
		my $b = $a[0]{response_body} // '';
		my $want = Encode::decode('UTF-8', 'pre é😀 ');
		like($b, qr/^\Q$want\E/, "$c: the valid UTF-8 prefix is kept intact");
		like($b, qr/ post$/, "$c: the text after the invalid bytes is kept");
		unlike($b, qr/\x00/, "$c: no NUL byte stored");
		note("$c: stored as " . Encode::encode('UTF-8', $b));
	}
	my $v = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM aloro_webhook.delivery_attempts
		 WHERE delivery_id IN ($cases{badutf8_200}{did}, $cases{badutf8_500}{did}, $cases{cututf8_200}{did})
		   AND convert_from(convert_to(response_body, 'UTF8'), 'UTF8') = response_body});
	is($v, 2 + $n_attempts, 'response bodies round-trip as valid UTF-8');

	my $cut = query_row($node,
		"SELECT octet_length(response_body) AS len, left(response_body, 3) AS head
		   FROM aloro_webhook.delivery_attempts WHERE delivery_id = $cases{cututf8_200}{did}");
	ok(defined $cut->{len} && $cut->{len} <= $limit,
		"cututf8: a 4-byte character cut by the limit leaves at most $limit bytes (" . ($cut->{len} // 'NULL') . ')');
	is($cut->{head}, 'aaa', 'cututf8: the first bytes are kept');

	is((attempts($node, $cases{http10_no_length}{did}))[0]{response_body},
		'http10 body', 'HTTP/1.0 close-delimited body kept');
	is((attempts($node, $cases{continue_then_200}{did}))[0]{response_body}, 'ok', '100 Continue then 200: body of the 200 kept');

	# floods are cut off: bounded bytes sent, response_body capped
	for my $c (qw(flood_200 flood_500 flood_chunked_200 header_flood))
	{
		my @r = @{ $req_by_delivery{ $cases{$c}{did} } // [] };
		my @sent = map { $sent_of{ $_->{cid} } // -1 } @r;
		ok(@sent && !(grep { $_ < 0 || $_ > 64 * 1024 * 1024 } @sent),
			"$c: the worker hung up before 64 MB (sent per connection: @sent)");
		my $len = $node->safe_psql('postgres',
			"SELECT max(coalesce(octet_length(response_body), 0)) FROM aloro_webhook.delivery_attempts
			  WHERE delivery_id = $cases{$c}{did}");
		ok($len <= $limit, "$c: response_body kept to the limit ($len bytes)");
	}

	# redirects are never followed
	my @target = grep { ($_->{ev} // '') eq 'req' && ($_->{path} // '') =~ m{^/b/ok\?redirect-target} } @hl;
	is(scalar(@target), 0, 'redirect: the Location on the same host was never requested');

	# connections to the listener that never reads are all closed by the worker in time
	my @silent = grep { ($_->{ev} // '') eq 'conn' && $_->{listener} eq 'accept_silent' } @hl;
	is(scalar(@silent), 2 * $n_attempts, 'accept_silent: one connection per attempt (plain and TLS)');
	my @long = grep { !$close_of{ $_->{cid} } || $close_of{ $_->{cid} }{t} - $_->{t} > $timeout_ms + $margin_ms } @silent;
	ok(!@long, 'accept_silent: every connection closed by the worker within timeout + margin');

	my @r = @{ $req_by_delivery{ $cases{early_200_big}{did} } // [] };
	ok(@r >= 1, 'early 200: the request arrived');
}

# ---------------------------------------------------------------------------
# 4. Health after the storm
# ---------------------------------------------------------------------------
{
	my $rss = worker_rss_kb($node) // 0;
	ok($rss - $rss0 < 100 * 1024, "worker memory stays bounded ($rss0 kB before, $rss kB after)");
	my $log = slurp_file($node->logfile);
	unlike($log, qr/could not record attempt/, 'every attempt was recorded (no "could not record" warning)');
	unlike($log, qr/aloro_webhook worker.*(?:terminated by signal|exited with exit code)/,
		'the worker never crashed or exited');
	unlike($log, qr/\Q$secret\E/, 'the secret is not in the server log');

	my $did = end_call($node, 'call_h_after', tag => 'asst_h_healthy');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 10),
		'a new delivery still goes out afterwards');
}

# ---------------------------------------------------------------------------
# 5. An unsolicited second response on a kept-alive connection is not taken
#    as the answer to the next request (own hostile instance: one host)
# ---------------------------------------------------------------------------
{
	my $h2 = start_receiver(name => 'hostile_smuggle', script => 'test/receiver/hostile.js');
	add_webhook($node, "$h2->{url}/b/smuggle", tag => 'asst_h_smuggle');
	add_webhook($node, "$h2->{url}/b/status/500?after-smuggle", tag => 'asst_h_after_smuggle');
	my $s = end_call($node, 'call_h_smuggle', tag => 'asst_h_smuggle');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $s", 'succeeded', 10),
		'smuggle: the first request succeeds');
	# the unsolicited response (written 100 ms after the answer) is on the idle connection
	ok(wait_until(sub { (grep { ($_->{ev} // '') eq 'smuggled' } receiver_log($h2)) >= 1 }, 5, 'the stray response'),
		'smuggle: the stray response was written to the kept-alive connection');
	my $t = end_call($node, 'call_h_after_smuggle', tag => 'asst_h_after_smuggle');
	ok(poll_until($node, "SELECT status <> 'pending' FROM aloro_webhook.deliveries WHERE id = $t", 't', 15),
		'smuggle: the next delivery to that host is resolved');
	my $d = delivery($node, $t);
	is($d->{status}, 'failed', 'smuggle: the next delivery (a 500 endpoint) fails: the stray 200 was not its answer');
	is_deeply([ map { $_->{http_status} } attempts($node, $t) ], [ (500) x $n_attempts ],
		'smuggle: every attempt of the next delivery saw its own 500');
	my @r = grep { ($_->{ev} // '') eq 'req' && ($_->{delivery} // '') eq $t } receiver_log($h2);
	is(scalar(@r), $n_attempts, 'smuggle: each attempt of the next delivery reached the endpoint');
	stop_receiver($h2);
}

# ---------------------------------------------------------------------------
# 6. Loopback in disguise, with allowed_networks empty: never connected to
# ---------------------------------------------------------------------------
{
	my $fresh = start_receiver(name => 'hostile_ssrf');
	my $p = $fresh->{port};
	aw_set($node, 'aloro_webhook.allowed_networks' => '');
	my %urls = (
		zero        => "http://0.0.0.0:$p/ok?ssrf=zero",
		mapped      => "http://[::ffff:127.0.0.1]:$p/ok?ssrf=mapped",
		mapped_hex  => "http://[::ffff:7f00:1]:$p/ok?ssrf=mapped-hex",
		decimal     => "http://2130706433:$p/ok?ssrf=decimal",
		short       => "http://127.1:$p/ok?ssrf=short",
		hex         => "http://0x7f.0.0.1:$p/ok?ssrf=hex",
		octal       => "http://0177.0.0.1:$p/ok?ssrf=octal",
		dot         => "http://localhost.:$p/ok?ssrf=dot",
		v6_loopback => "http://[::1]:$p/ok?ssrf=v6",
		v4_compat   => "http://[::127.0.0.1]:$p/ok?ssrf=v4-compat",
		userinfo    => "http://example.com\@127.0.0.1:$p/ok?ssrf=userinfo",
	);
	my %did;
	for my $k (sort keys %urls)
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"SELECT aloro_webhook.create_webhook(" . quote_lit($urls{$k}) . ", assistant_id => 'asst_h_ssrf_$k')");
		if ($rc != 0)
		{
			like($err, qr/ERROR:  invalid webhook URL/, "ssrf $k: refused when written, as an invalid URL");
			next;
		}
		$did{$k} = end_call($node, "call_h_ssrf_$k", tag => "asst_h_ssrf_$k");
	}
	my $in = join(',', values %did);
	ok(poll_until($node, "SELECT count(*) FROM aloro_webhook.deliveries WHERE id IN ($in) AND status = 'pending'",
			'0', 20),
		'ssrf: every disguised-loopback delivery is resolved');
	for my $k (sort keys %did)
	{
		my $d = delivery($node, $did{$k});
		is($d->{status}, 'failed', "ssrf $k: failed");
		ok(!defined $d->{last_http_status}, "ssrf $k: no HTTP status (never connected)");
		# (a name this machine cannot resolve never gets as far as the policy)
		like($d->{last_error},
			qr/connection refused by policy: address \S+ is in the non-public network|^Couldn't resolve host name/,
			"ssrf $k: refused by the address policy, not by the network");
		note("ssrf $k: $d->{last_error}");
	}
	my @got = receiver_log($fresh);
	is(scalar(@got), 0, 'ssrf: the loopback receiver saw no request at all')
	  or diag(join("\n", map { $_->{path} } @got));
	aw_set($node, 'aloro_webhook.allowed_networks' => '127.0.0.0/8');
	stop_receiver($fresh);
}

is(worker_pid($node), $pid0, 'the worker is the same process at the end');
stop_receiver($h);
stop_receiver($good);
$node->stop;
done_testing();
