# Timeouts, and one endpoint's trouble staying its own: hanging requests time
# out after aloro_webhook.timeout and do not hold up a healthy webhook's
# deliveries queued with them.  Wake-up at commit: an idle worker delivers a
# committed call at once, nothing is sent before the commit, and a rolled-back
# call never produces a request.
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

my $node = aw_node('isolation', conf => { 'aloro_webhook.timeout' => '1s' });
my $rcv = start_receiver(name => 'isolation');
ok(wait_for_worker($node, 30), 'the delivery worker runs');

# ---------------------------------------------------------------------------
# 1. 40 hanging deliveries and 5 healthy ones, queued in one transaction
# ---------------------------------------------------------------------------
{
	my $hang_wh = add_webhook($node, "$rcv->{url}/hang", tag => 'asst_hang');
	my $ok_wh = add_webhook($node, "$rcv->{url}/ok?case=healthy", tag => 'asst_healthy');
	# hanging ones first, so that a worker working in queue order meets them first
	$node->safe_psql('postgres', q{
		BEGIN;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id)
		  SELECT 'call_hang_' || g, 'completed', 'asst_hang' FROM generate_series(1, 40) g;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id)
		  SELECT 'call_healthy_' || g, 'completed', 'asst_healthy' FROM generate_series(1, 5) g;
		COMMIT;
	});

	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries
			  WHERE webhook_id = $ok_wh",
			'5', 20),
		'healthy webhook: all five delivered while the other endpoint hangs');

	# They finished before any hanging request had even timed out: they did
	# not wait behind the hanging ones.
	my $r = query_row($node, qq{
		SELECT (SELECT max(finished_at) FROM aloro_webhook.deliveries WHERE webhook_id = $ok_wh)
		         < coalesce((SELECT min(a.started_at + a.duration_ms * interval '1 ms')
		                       FROM aloro_webhook.delivery_attempts a
		                       JOIN aloro_webhook.deliveries d ON d.id = a.delivery_id
		                      WHERE d.webhook_id = $hang_wh), 'infinity') AS before_any_timeout,
		       (SELECT extract(epoch FROM max(finished_at) - min(created_at))
		          FROM aloro_webhook.deliveries WHERE webhook_id = $ok_wh) AS took_s});
	ok($r->{before_any_timeout}, 'healthy webhook: delivered before the first hanging request timed out')
	  or diag("healthy deliveries took $r->{took_s}s");
	note("healthy deliveries took $r->{took_s}s from queuing");
	my @hang_seen = grep { $_->{path} eq '/hang' } receiver_log($rcv);
	ok(@hang_seen >= 1, 'hanging requests were in flight (the receiver holds ' . scalar(@hang_seen) . ')');

	# The hanging ones time out after 1 s each, retry, and end failed.
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'failed') FROM aloro_webhook.deliveries
			  WHERE webhook_id = $hang_wh",
			'40', 90),
		'hanging endpoint: all forty deliveries end failed after their attempts');
	my $s = query_row($node, qq{
		SELECT count(*) AS n,
		       count(*) FILTER (WHERE a.http_status IS NOT NULL) AS with_status,
		       count(*) FILTER (WHERE a.error IS NULL OR a.error !~* 'time') AS error_not_timeout,
		       min(a.duration_ms) AS min_ms, max(a.duration_ms) AS max_ms,
		       min(a.error) AS sample_error,
		       (SELECT min(attempts) || '-' || max(attempts) FROM aloro_webhook.deliveries
		         WHERE webhook_id = $hang_wh) AS attempts_range
		  FROM aloro_webhook.delivery_attempts a
		  JOIN aloro_webhook.deliveries d ON d.id = a.delivery_id
		 WHERE d.webhook_id = $hang_wh});
	is($s->{n}, 200, 'timeout: 40 deliveries x 5 attempts recorded');
	is($s->{attempts_range}, '5-5', 'timeout: each delivery used its five attempts');
	is($s->{with_status}, 0, 'timeout: http_status NULL on every timed-out attempt');
	is($s->{error_not_timeout}, 0, 'timeout: every error mentions the timeout')
	  or diag("sample error: $s->{sample_error}");
	# concurrent (a pipeline, not one at a time), within the per-webhook cap
	my $cap = $node->safe_psql('postgres', "SELECT current_setting('aloro_webhook.max_in_flight_per_webhook')");
	my $overlap = $node->safe_psql('postgres', qq{
		WITH a AS (
		  SELECT a.started_at AS s, a.started_at + a.duration_ms * interval '1 ms' AS e
		    FROM aloro_webhook.delivery_attempts a
		    JOIN aloro_webhook.deliveries d ON d.id = a.delivery_id
		   WHERE d.webhook_id = $hang_wh)
		SELECT max((SELECT count(*) FROM a a2 WHERE a2.s <= a1.s AND a1.s < a2.e)) FROM a a1});
	ok($overlap > 1, "hanging endpoint: its requests were in flight together (up to $overlap at once)");
	ok($overlap <= $cap, "hanging endpoint: never more than max_in_flight_per_webhook ($cap) at once");
	ok($s->{min_ms} >= 950, "timeout: no attempt cut short (shortest $s->{min_ms} ms, limit 1000 ms)");
	ok($s->{max_ms} < 1900, "timeout: aloro_webhook.timeout = 1s applies (longest $s->{max_ms} ms)");
	note("timeout error: $s->{sample_error}");

	# a slow answer inside the limit is a success
	add_webhook($node, "$rcv->{url}/slow/300", tag => 'asst_slow_ok');
	my $did = end_call($node, 'call_slow_ok', tag => 'asst_slow_ok');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 20),
		'slow answer (300 ms) within the 1 s timeout succeeds');
	is(delivery($node, $did)->{attempts}, 1, 'slow answer: one attempt');
}

# ---------------------------------------------------------------------------
# 2. A delivery whose webhook was deleted is resolved on its own
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/ok?case=orphan", tag => 'asst_orphan');
	add_webhook($node, "$rcv->{url}/ok?case=neighbour", tag => 'asst_neighbour');
	$node->safe_psql('postgres', q{
		BEGIN;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id) VALUES
		  ('call_orphan', 'completed', 'asst_orphan'),
		  ('call_neighbour', 'completed', 'asst_neighbour');
		DELETE FROM aloro_webhook.webhooks WHERE assistant_id = 'asst_orphan';
		COMMIT;
	});
	my $orphan = $node->safe_psql('postgres',
		"SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_orphan'");
	my $neighbour = $node->safe_psql('postgres',
		"SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_neighbour'");
	ok($orphan ne '' && $neighbour ne '', 'deleted webhook: both deliveries were queued');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $neighbour", 'succeeded', 20),
		'deleted webhook: the delivery queued next to it succeeds');
	ok(poll_until($node, "SELECT status <> 'pending' FROM aloro_webhook.deliveries WHERE id = $orphan", 't', 30),
		'deleted webhook: its delivery does not stay pending');
	my $d = delivery($node, $orphan);
	is($d->{status}, 'failed', 'deleted webhook: its delivery ends failed');
	ok(defined $d->{last_error} && $d->{last_error} ne '', 'deleted webhook: last_error says why')
	  and note("deleted webhook: last_error = $d->{last_error}");
	is(scalar(requests_for($rcv, $orphan)), 0, 'deleted webhook: nothing was sent');
	is(scalar(requests_for($rcv, $neighbour)), 1, 'deleted webhook: the neighbour was sent once');
}

# ---------------------------------------------------------------------------
# 3. Wake-up at commit
# ---------------------------------------------------------------------------
{
	my $tag = 'asst_wake';
	add_webhook($node, "$rcv->{url}/ok?case=wake", tag => $tag);

	# The queue is drained and the worker back in its idle wait.
	ok(poll_until($node,
			"SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'", '0', 30),
		'wake-up: queue drained');
	ok(worker_waits($node), 'wake-up: the worker waits, idle');

	# rolled back: never sent
	$node->safe_psql('postgres', q{
		BEGIN;
		INSERT INTO aloro_webhook.calls (id, status, assistant_id)
		  VALUES ('call_wake_rolled_back', 'completed', 'asst_wake');
		ROLLBACK;
	});

	# open transaction: nothing is sent before it commits
	my $bg = $node->background_psql('postgres');
	$bg->query_safe('BEGIN');
	$bg->query_safe(q{INSERT INTO aloro_webhook.calls (id, status, assistant_id)
	                  VALUES ('call_wake_open', 'completed', 'asst_wake')});
	# an observation window: the worker, woken or not, must send nothing
	Time::HiRes::sleep(1.0);
	my @early = grep { $_->{body} =~ /"call_wake_open"/ } receiver_log($rcv);
	is(scalar(@early), 0, 'wake-up: nothing is sent while the transaction is open (observed for 1 s)');
	my $t0 = Time::HiRes::time();
	$bg->query_safe('COMMIT');
	$bg->quit;

	my @got = wait_for_requests($rcv,
		sub { grep { $_->{body} =~ /"call_wake_open"/ } @_ }, 10,
		'the committed call to arrive');
	my @hit = grep { $_->{body} =~ /"call_wake_open"/ } @got;
	ok(@hit == 1, 'wake-up: the committed call is delivered within 10 s of the commit (idle worker)');
	note(sprintf('delivered %.3fs after COMMIT', $hit[0]{t} / 1000 - $t0)) if @hit;

	# one more, from an idle worker again, through plain autocommit
	ok(worker_waits($node), 'wake-up: the worker waits, idle, again');
	my $t1 = Time::HiRes::time();
	my $did = end_call($node, 'call_wake_second', tag => $tag);
	ok(wait_for_requests($rcv, sub { grep { $_->{body} =~ /"call_wake_second"/ } @_ }, 10,
			'the second committed call to arrive'),
		'wake-up: a second commit also wakes the idle worker');

	my @rb = grep { $_->{body} =~ /"call_wake_rolled_back"/ } receiver_log($rcv);
	is(scalar(@rb), 0, 'wake-up: the rolled-back call produced no request');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_wake_rolled_back'"),
		'0', 'wake-up: the rolled-back call left no delivery');

	# Held: a call ends, in an open transaction, for a webhook the extension
	# disabled (its delivery is held: that commit wakes no one); meanwhile
	# the webhook is enabled again, and that commit's wake-up comes before the
	# call's row is visible.  The call's commit must then wake the worker.
	my $held = add_webhook($node, "$rcv->{url}/ok?case=held_race", tag => 'asst_held_race');
	$node->safe_psql('postgres',
		"UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'test: held', disabled_at = now()
		  WHERE id = $held");
	my $bg2 = $node->background_psql('postgres');
	$bg2->query_safe('BEGIN');
	$bg2->query_safe(q{INSERT INTO aloro_webhook.calls (id, status, assistant_id)
	                   VALUES ('call_held_race', 'completed', 'asst_held_race')});
	$node->safe_psql('postgres',
		"UPDATE aloro_webhook.webhooks SET enabled = true, disabled_reason = NULL, disabled_at = NULL WHERE id = $held");
	ok(worker_waits($node), 'held: the worker looked after the webhook was enabled, and waits again');
	$bg2->query_safe('COMMIT');
	$bg2->quit;
	ok(wait_for_requests($rcv, sub { grep { $_->{body} =~ /"call_held_race"/ } @_ }, 10,
			'the held call to arrive'),
		'held: a call queued for a disabled webhook that was enabled before it committed is sent at its commit');
}

stop_receiver($rcv);
$node->stop;
done_testing();

# true once the worker is in its idle wait (PG_WAIT_EXTENSION), not in a turn
sub worker_waits
{
	my ($n) = @_;
	return poll_until($n,
		"SELECT state = 'idle' AND wait_event_type = 'Extension' FROM pg_stat_activity
		  WHERE backend_type = 'aloro_webhook worker'", 't', 10);
}
