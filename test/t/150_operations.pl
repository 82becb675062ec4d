# Operations against real receivers: Retry-After (seconds and HTTP dates,
# capped), retry jitter, 410 Gone and the circuit breaker without loss,
# operator events (NOTIFY aloro_webhook_events), Standard Webhooks verified
# by the published standardwebhooks package, secret rotation with both
# signatures during the overlap, the views, and retention pruning.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Digest::SHA qw(hmac_sha256_hex);
use IPC::Run ();

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('operations', conf => { 'aloro_webhook.idle_check_interval' => '1s' });
my $rcv = start_receiver(name => 'ops', secret => 'whsec_ops');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

sub wait_status { return delivery_reaches($node, @_); }

sub sql { return $node->safe_psql('postgres', $_[0]); }

# seconds between the end of attempt 1 and the start of attempt 2
sub retry_gap
{
	my ($did) = @_;
	my @a = attempts($node, $did);
	return undef unless @a >= 2;
	return $a[1]{started_epoch} - ($a[0]{started_epoch} + $a[0]{duration_ms} / 1000);
}

# A session that LISTENs on aloro_webhook_events for the rest of the test.
my ($l_in, $l_out, $l_err) = ("LISTEN aloro_webhook_events;\nSELECT 'listening';\n", '', '');
my $listener = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$l_in, '>', \$l_out, '2>', \$l_err);
ok(wait_until(sub { $listener->pump_nb; $l_out =~ /listening/ }, 20, 'LISTEN'), 'a session listens on aloro_webhook_events');
# each statement lets psql print the notifications that arrived meanwhile
sub events
{
	$l_in .= "SELECT 1;\n";
	$listener->pump_nb;
	my @ev;
	while ($l_out =~ /Asynchronous notification "aloro_webhook_events" with payload "(.*)" received/g)
	{
		push @ev, JSON::PP->new->decode($1 =~ s/\\"/"/gr);
	}
	return @ev;
}
sub wait_event
{
	my ($match, $what) = @_;
	my @found;
	wait_until(sub { @found = grep { $match->($_) } events(); scalar @found }, 30, $what);
	return $found[0];
}

# ---------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/retry-after/2", tag => 'ra_secs');
	my $did = end_call($node, 'call_ra_secs', tag => 'ra_secs');
	ok(poll_until($node, "SELECT count(*) >= 2 FROM aloro_webhook.delivery_attempts WHERE delivery_id = $did", 't', 30),
		'503 with Retry-After: 2: a second attempt is made');
	my $gap = retry_gap($did);
	cmp_ok($gap, '>=', 1.95, "503 Retry-After: 2 s: the next attempt waits for it, not the 200 ms schedule (waited ${gap}s)");

	add_webhook($node, "$rcv->{url}/too-many-until/2", tag => 'ra_date');
	$did = end_call($node, 'call_ra_date', tag => 'ra_date');
	ok(poll_until($node, "SELECT count(*) >= 2 FROM aloro_webhook.delivery_attempts WHERE delivery_id = $did", 't', 30),
		'429 with a Retry-After date: a second attempt is made');
	$gap = retry_gap($did);
	# the date is in whole seconds, 2-3 s ahead of the answer
	cmp_ok($gap, '>=', 1.0, "429 Retry-After as an HTTP date: the next attempt waits for it (waited ${gap}s)");

	aw_set($node, 'aloro_webhook.max_retry_after' => '1s');
	add_webhook($node, "$rcv->{url}/retry-after/30", tag => 'ra_cap');
	$did = end_call($node, 'call_ra_cap', tag => 'ra_cap');
	ok(poll_until($node, "SELECT count(*) >= 2 FROM aloro_webhook.delivery_attempts WHERE delivery_id = $did", 't', 20),
		'Retry-After: 30 with max_retry_after = 1s: the next attempt comes within the cap');
	$gap = retry_gap($did);
	ok($gap >= 0.95 && $gap < 5, "max_retry_after caps the wait at 1 s (waited ${gap}s)");
	aw_set($node, 'aloro_webhook.max_retry_after' => undef);
	sql("UPDATE aloro_webhook.webhooks SET enabled = false WHERE assistant_id IN ('ra_secs', 'ra_date', 'ra_cap')");
}

# ---------------------------------------------------------------------------
# Jitter: retries spread around the schedule's delay
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.retry_schedule' => '0, 1s', 'aloro_webhook.retry_jitter' => '0.5');
	add_webhook($node, "$rcv->{url}/status/500", tag => 'jitter');
	my @ids = end_calls($node, 'call_jitter', 20, tag => 'jitter');
	ok(poll_until($node,
			"SELECT count(*) = 20 FROM aloro_webhook.deliveries WHERE call_id LIKE 'call_jitter_%' AND status = 'failed'",
			't', 60), 'jitter: every delivery made its two attempts');
	my @gaps = map { retry_gap($_) } @ids;
	my @out = grep { $_ < 0.45 || $_ > 1.6 } @gaps;
	ok(!@out, 'jitter 0.5 on 1 s: every retry came 0.5-1.5 s after the first attempt') or diag("@gaps");
	my ($min, $max) = (sort { $a <=> $b } @gaps)[ 0, -1 ];
	cmp_ok($max - $min, '>', 0.2, sprintf('jitter: the retries are spread (%.3f-%.3f s)', $min, $max));
	aw_set($node, 'aloro_webhook.retry_schedule' => undef, 'aloro_webhook.retry_jitter' => undef);
}

# ---------------------------------------------------------------------------
# 410 Gone: disabled at once, nothing lost, resumed when enabled
# ---------------------------------------------------------------------------
{
	my $wid = add_webhook($node, "$rcv->{url}/status/410", tag => 'gone');
	my $did = end_call($node, 'call_gone_1', tag => 'gone');
	wait_status($did, 'failed', 30, '410: the delivery fails');
	my $d = delivery($node, $did);
	is($d->{attempts}, 1, '410: not retried');
	like($d->{last_error}, qr/410/, '410: last_error says so');
	my $w = query_row($node, "SELECT enabled, disabled_reason, disabled_at IS NOT NULL AS at FROM aloro_webhook.webhooks WHERE id = $wid");
	ok(!$w->{enabled}, '410: the webhook is disabled');
	like($w->{disabled_reason}, qr/410/, '410: disabled_reason names it');
	ok($w->{at}, '410: disabled_at is set');
	my $ev = wait_event(sub { $_[0]{event} eq 'webhook.disabled' && $_[0]{webhook_id} == $wid }, 'webhook.disabled event');
	ok($ev, 'NOTIFY aloro_webhook_events: webhook.disabled');
	like($ev->{reason} // '', qr/410/, 'the event says why');
	ok(wait_event(sub { $_[0]{event} eq 'delivery.failed' && ($_[0]{delivery_id} // 0) == $did }, 'delivery.failed event'),
		'NOTIFY aloro_webhook_events: delivery.failed with the delivery id');

	# calls that end while it is disabled are kept, not sent
	my $held = end_call($node, 'call_gone_2', tag => 'gone');
	ok(defined $held, 'a call that ends while the webhook is disabled by the extension is still queued');
	# a later delivery of another webhook goes through: the worker was free to send the held one
	add_webhook($node, "$rcv->{url}/ok/sentinel410", tag => 'sentinel410');
	my $sent = end_call($node, 'call_sentinel410', tag => 'sentinel410');
	wait_status($sent, 'succeeded', 30, 'another webhook is delivered meanwhile');
	is(scalar(requests_for($rcv, $held)), 0, 'the held delivery was not sent');
	is(delivery($node, $held)->{status}, 'pending', 'the held delivery stays pending');

	# the endpoint is fixed and enabled again: the held one goes, replay() resends the failed one
	sql("UPDATE aloro_webhook.webhooks SET url = '$rcv->{url}/ok/back', enabled = true WHERE id = $wid");
	$w = query_row($node, "SELECT disabled_reason, disabled_at FROM aloro_webhook.webhooks WHERE id = $wid");
	ok(!defined $w->{disabled_reason} && !defined $w->{disabled_at}, 'enabling clears disabled_reason and disabled_at');
	ok(wait_event(sub { $_[0]{event} eq 'webhook.enabled' && $_[0]{webhook_id} == $wid }, 'webhook.enabled event'),
		'NOTIFY aloro_webhook_events: webhook.enabled');
	wait_status($held, 'succeeded', 30, 'enabled again: the held delivery is sent');
	is(sql("SELECT aloro_webhook.replay($wid, now() - interval '1 hour')"), '1', 'replay() puts the failed one back');
	wait_status($did, 'succeeded', 30, 'replay(): the 410 delivery is sent again');
	my @ev = events();
	ok(!grep({ ($_->{reason} // '') =~ /whsec_/ || exists $_->{body} } @ev), 'no event carries a secret or a body');
}

# ---------------------------------------------------------------------------
# The circuit breaker: consecutive failed deliveries
# ---------------------------------------------------------------------------
{
	aw_set($node, 'aloro_webhook.retry_schedule' => '0', 'aloro_webhook.disable_after_failures' => '3');
	my $wid = add_webhook($node, "$rcv->{url}/status/500", tag => 'breaker');
	my $n = 0;
	my $fail = sub {
		my $did = end_call($node, 'call_breaker_' . ++$n, tag => 'breaker');
		wait_status($did, 'failed', 30, "breaker: delivery $n fails");
	};
	$fail->() for 1 .. 2;
	sql("UPDATE aloro_webhook.webhooks SET url = '$rcv->{url}/ok/breaker' WHERE id = $wid");
	my $ok = end_call($node, 'call_breaker_' . ++$n, tag => 'breaker');
	wait_status($ok, 'succeeded', 30, 'breaker: a success in between');
	sql("UPDATE aloro_webhook.webhooks SET url = '$rcv->{url}/status/500' WHERE id = $wid");
	$fail->() for 1 .. 2;
	is(sql("SELECT enabled FROM aloro_webhook.webhooks WHERE id = $wid"), 't',
		'two failures, a success, two failures: still enabled (a success resets the count)');
	$fail->();
	my $w = query_row($node, "SELECT enabled, disabled_reason FROM aloro_webhook.webhooks WHERE id = $wid");
	ok(!$w->{enabled}, 'the third consecutive failed delivery disables the webhook');
	like($w->{disabled_reason}, qr/3 consecutive failed deliveries/, 'disabled_reason says how many');
	my $held = end_call($node, 'call_breaker_held', tag => 'breaker');
	ok(defined $held, 'calls keep queuing for the tripped webhook');
	my $h = query_row($node, "SELECT * FROM aloro_webhook.webhook_health WHERE webhook_id = $wid");
	is($h->{pending}, 1, 'webhook_health: one pending');
	ok(!$h->{enabled} && $h->{disabled_reason} =~ /consecutive/, 'webhook_health: disabled, and why');
	ok(defined $h->{oldest_pending_age}, 'webhook_health: age of the oldest pending');
	aw_set($node, 'aloro_webhook.retry_schedule' => undef, 'aloro_webhook.disable_after_failures' => undef);
	sql("UPDATE aloro_webhook.webhooks SET url = '$rcv->{url}/ok/breaker2', enabled = true WHERE id = $wid");
	wait_status($held, 'succeeded', 30, 'enabled again: the held delivery goes');
	ok(poll_until($node,
			"SELECT succeeded_last_hour >= 2 AND failed_last_hour = 5 AND consecutive_failures = 0
			   AND last_success_at IS NOT NULL AND p50_attempt_ms_last_hour IS NOT NULL
			   AND p95_attempt_ms_last_hour >= p50_attempt_ms_last_hour
			   FROM aloro_webhook.webhook_health WHERE webhook_id = $wid", 't', 30),
		'webhook_health: successes, failures, latency and the reset count');
}

# ---------------------------------------------------------------------------
# Standard Webhooks, verified by the published package
# ---------------------------------------------------------------------------
my $std_secret = sql('SELECT aloro_webhook.generate_secret()');
{
	my $std = start_receiver(name => 'standard', script => 'test/receiver/standard.js', secret => $std_secret);
	my $wid = sql("SET log_statement = 'none'; INSERT INTO aloro_webhook.webhooks (url, secret, signature_scheme, assistant_id)
		VALUES ('$std->{url}/std', '$std_secret', 'standard', 'std') RETURNING id");
	my $did = end_call($node, 'call_std', tag => 'std');
	wait_status($did, 'succeeded', 30, 'standard: the receiver verified the request (it answers 401 otherwise)');
	my ($r) = receiver_log($std);
	ok($r && $r->{verified}[0], 'standard: standardwebhooks Webhook.verify() accepts it');
	is($r->{headers}{'webhook-id'}, $did, 'standard: webhook-id is the delivery id');
	like($r->{headers}{'webhook-timestamp'}, qr/^\d{10}$/, 'standard: webhook-timestamp is Unix seconds');
	like($r->{headers}{'webhook-signature'}, qr/^v1,[A-Za-z0-9+\/]+=*$/, 'standard: one v1 signature');
	ok(!exists $r->{headers}{'x-aloro-signature'}, 'standard: no X-Aloro-Signature');

	my ($ok, $err) = (0, '');
	$node->psql('postgres', "UPDATE aloro_webhook.webhooks SET secret = 'not-base64' WHERE id = $wid", stderr => \$err);
	like($err, qr/signature_scheme standard needs a secret of the form whsec_/, 'standard: a secret that is not whsec_ + base64 is refused');
	unlike($err, qr/not-base64/, 'the refusal does not print the secret');
	$node->psql('postgres', "UPDATE aloro_webhook.webhooks SET signature_scheme = 'svix' WHERE id = $wid", stderr => \$err);
	like($err, qr/invalid webhook signature_scheme "svix"/, 'an unknown scheme is refused by name');

	# rotation: both signatures during the overlap, each verifying on its own
	my $new = sql('SELECT aloro_webhook.generate_secret()');
	sql("SET log_statement = 'none'; SELECT aloro_webhook.rotate_secret($wid, '$new')");
	stop_receiver($std);
	my $both = start_receiver(name => 'standard2', script => 'test/receiver/standard.js', secret => "$new,$std_secret");
	sql("UPDATE aloro_webhook.webhooks SET url = '$both->{url}/std' WHERE id = $wid");
	$did = end_call($node, 'call_std_rot', tag => 'std');
	wait_status($did, 'succeeded', 30, 'standard rotation: verified with the new and the old secret');
	($r) = receiver_log($both);
	ok($r->{verified}[0] && $r->{verified}[1], 'standard rotation: each secret verifies on its own');
	like($r->{headers}{'webhook-signature'}, qr/^v1,\S+ v1,\S+$/, 'standard rotation: two space-separated v1 entries');
}

# ---------------------------------------------------------------------------
# Rotation, aloro scheme; the previous secret is admins' only, then forgotten
# ---------------------------------------------------------------------------
{
	my $wid = add_webhook($node, "$rcv->{url}/ok/rot", tag => 'rot', secret => 'whsec_old');
	sql("SET log_statement = 'none'; SELECT aloro_webhook.rotate_secret($wid, 'whsec_new', '1 hour')");
	my $did = end_call($node, 'call_rot_1', tag => 'rot');
	wait_status($did, 'succeeded', 30, 'rotation: delivered');
	my ($r) = requests_for($rcv, $did);
	is($r->{headers}{'x-aloro-signature'}, 'sha256=' . hmac_sha256_hex($r->{body}, 'whsec_new'),
		'rotation: X-Aloro-Signature is signed with the new secret');
	is($r->{headers}{'x-aloro-signature-previous'}, 'sha256=' . hmac_sha256_hex($r->{body}, 'whsec_old'),
		'rotation: X-Aloro-Signature-Previous with the old one during the overlap');

	my $err = '';
	$node->psql('postgres', "SET ROLE aloro_webhook_reader; SELECT previous_secret FROM aloro_webhook.webhooks", stderr => \$err);
	like($err, qr/permission denied/, 'the reader cannot see the previous secret');
	$node->psql('postgres', "SELECT aloro_webhook.rotate_secret($wid, 'whsec_x', '-1 hour')", stderr => \$err);
	like($err, qr/overlap must not be negative/, 'a negative overlap is refused');
	$node->psql('postgres', "SELECT aloro_webhook.rotate_secret(999999, 'whsec_x')", stderr => \$err);
	like($err, qr/webhook 999999 does not exist/, 'rotating a missing webhook is refused');

	sql("SET log_statement = 'none'; SELECT aloro_webhook.rotate_secret($wid, 'whsec_newer', '1 second')");
	ok(poll_until($node, "SELECT previous_secret IS NULL AND previous_secret_until IS NULL FROM aloro_webhook.webhooks WHERE id = $wid", 't', 40),
		'after the overlap the previous secret is forgotten');
	$did = end_call($node, 'call_rot_2', tag => 'rot');
	wait_status($did, 'succeeded', 30, 'after the overlap: delivered');
	($r) = requests_for($rcv, $did);
	is($r->{headers}{'x-aloro-signature'}, 'sha256=' . hmac_sha256_hex($r->{body}, 'whsec_newer'), 'after the overlap: the new secret signs');
	ok(!exists $r->{headers}{'x-aloro-signature-previous'}, 'after the overlap: no previous signature');
	sql("SET log_statement = 'none'; SELECT aloro_webhook.rotate_secret($wid, 'whsec_now', '0')");
	$did = end_call($node, 'call_rot_3', tag => 'rot');
	wait_status($did, 'succeeded', 30, 'overlap 0: delivered');
	($r) = requests_for($rcv, $did);
	ok(!exists $r->{headers}{'x-aloro-signature-previous'}, 'overlap 0: only the new signature');
}

# ---------------------------------------------------------------------------
# The views, as the reader
# ---------------------------------------------------------------------------
{
	my $h = JSON::PP->new->utf8->decode(sql("SET ROLE aloro_webhook_reader;
		SELECT row_to_json(h) FROM aloro_webhook.delivery_history h WHERE call_id = 'call_rot_1'"));
	ok($h->{webhook_name} eq 'rot' && $h->{url} =~ m{/ok/rot$} && $h->{status} eq 'succeeded',
		'delivery_history: the delivery with its webhook, as the reader');
	ok(defined $h->{time_to_success}, 'delivery_history: the time to success');
	my $all = sql("SET ROLE aloro_webhook_reader; SELECT string_agg(x::text, '') FROM aloro_webhook.webhook_health x");
	unlike($all, qr/whsec_/, 'webhook_health shows no secret');
	$all = sql("SET ROLE aloro_webhook_reader; SELECT string_agg(x::text, '') FROM aloro_webhook.delivery_history x");
	unlike($all, qr/whsec_/, 'delivery_history shows no secret');
}

# ---------------------------------------------------------------------------
# Retention: succeeded ones pruned after retention, failed ones kept longer
# ---------------------------------------------------------------------------
{
	my $before = sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'failed'");
	ok($before > 0, 'there are failed deliveries to keep');
	my $pending = sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'");
	aw_set($node, 'aloro_webhook.retention' => '1s');
	ok(poll_until($node,
			"SELECT count(*) = 0 FROM aloro_webhook.deliveries WHERE status = 'succeeded' AND finished_at < now() - interval '1 second'",
			't', 60), 'retention 1s: succeeded deliveries are pruned');
	ok(poll_until($node,
			"SELECT count(*) = 0 FROM aloro_webhook.delivery_attempts a
			  WHERE NOT EXISTS (SELECT 1 FROM aloro_webhook.delivery_log d WHERE d.id = a.delivery_id)", 't', 30),
		'their attempts went with them');
	is(sql("SELECT count(*) FROM aloro_webhook.payloads p
			 WHERE NOT EXISTS (SELECT 1 FROM aloro_webhook.delivery_log d WHERE d.payload_id = p.id)"), '0',
		'no body is left that no delivery uses');
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'failed'"), $before,
		'failed deliveries are kept (failed_retention 90 days)');
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'"), $pending,
		'pending deliveries are never pruned');
	aw_set($node, 'aloro_webhook.failed_retention' => '1s');
	ok(poll_until($node, "SELECT count(*) = 0 FROM aloro_webhook.deliveries WHERE status = 'failed'", 't', 60),
		'failed_retention 1s: failed deliveries are pruned too');
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'"), $pending,
		'pending deliveries are still there');
	# a new delivery still goes through after pruning
	aw_set($node, 'aloro_webhook.retention' => undef, 'aloro_webhook.failed_retention' => undef);
	my $did = end_call($node, 'call_after_prune', tag => 'rot');
	wait_status($did, 'succeeded', 30, 'after pruning, deliveries go on');
}

$listener->kill_kill;
done_testing();
