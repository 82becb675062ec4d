# The worker's own trouble with the database: a turn that cannot write (a lock
# held too long on the history table, a cancel) is rolled back and retried by
# the same worker; nothing is lost, nothing is sent twice, nothing stays
# claimed.  And a delivery row corrupted by hand cannot crash anything.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

# lock_in_share_mode($node, $table): a session that holds a SHARE lock on
# $table in an open transaction (writes to it wait); unlock($locker) commits
# and ends that session.
sub lock_in_share_mode
{
	my ($node, $table) = @_;
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('BEGIN');
	$locker->query_safe("LOCK TABLE $table IN SHARE MODE");
	return $locker;
}

sub unlock
{
	my ($locker) = @_;
	$locker->query_safe('COMMIT');
	$locker->quit;
}

my $node = aw_node('recovery');
my $rcv = start_receiver(name => 'recovery');
my $pid = wait_for_worker($node, 30);
ok($pid, 'the delivery worker runs');

# ---------------------------------------------------------------------------
# 1. The history table is locked while requests finish
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/ok?case=locked", tag => 'asst_locked');

	# hold a lock that blocks writing attempts (the worker waits 1 s at most per turn);
	# no turn commits meanwhile, so no new claims either: stay under the 32 slots
	my $locker = lock_in_share_mode($node, 'aloro_webhook.delivery_attempts');

	my @ids = end_calls($node, 'call_locked', 20, tag => 'asst_locked');
	is(scalar(@ids), 20, 'locked: twenty deliveries queued (fewer than the per-webhook slots)');
	my $in = join(',', @ids);

	# the requests go out and finish, but cannot be recorded yet
	ok(wait_for_requests($rcv, sub { grep { $_->{path} =~ /case=locked/ } @_ } , 10,
			'requests while the history is locked'),
		'locked: requests are sent while the history table is locked');
	ok(wait_until(sub { scalar(grep { $_->{path} =~ /case=locked/ } receiver_log($rcv)) >= 20 }, 10),
		'locked: all twenty requests arrived');
	# keep the lock until a turn has failed on it (the worker waits 1 s per turn)
	ok(wait_until(sub { slurp_file($node->logfile) =~ /lock timeout/ }, 20,
			'a turn to fail on the lock'),
		'locked: a turn failed on the lock and said so in the server log');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE delivery_id IN ($in)"),
		'0', 'locked: nothing recorded while the lock is held');

	# let it go: the same worker records every attempt, once
	unlock($locker);
	ok(poll_until($node,
			"SELECT bool_and(status = 'succeeded' AND claimed_at IS NULL AND attempts = 1)
			   FROM aloro_webhook.deliveries WHERE id IN ($in)", 't', 30),
		'locked: every delivery ends succeeded after one attempt, none left claimed');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_attempts WHERE delivery_id IN ($in)"),
		'20', 'locked: exactly one attempt row per delivery');
	is(scalar(grep { $_->{path} =~ /case=locked/ } receiver_log($rcv)), 20,
		'locked: each delivery was sent exactly once (no restart, no re-send)');
	is(worker_pid($node), $pid, 'locked: the same worker carried on');
}

# ---------------------------------------------------------------------------
# 1b. A worker that starts while the history table is locked still sends
#     (at start it releases claims of workers gone; with none to release it
#     must not wait on the history's lock, or every turn fails on it)
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/ok?case=locked-start", tag => 'asst_locked_start');
	my $locker = lock_in_share_mode($node, 'aloro_webhook.delivery_attempts');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	my $new = wait_for_worker($node, 30, $pid);
	ok($new, 'locked start: a new worker starts while the history is locked');

	my @ids = end_calls($node, 'call_locked_start', 5, tag => 'asst_locked_start');
	is(scalar(@ids), 5, 'locked start: five deliveries queued');
	my $in = join(',', @ids);
	ok(wait_until(sub { scalar(grep { $_->{path} =~ /case=locked-start/ } receiver_log($rcv)) >= 5 }, 15,
			'requests from the new worker while the history is locked'),
		'locked start: the new worker sends while the history table is locked');
	unlock($locker);
	ok(poll_until($node,
			"SELECT bool_and(status = 'succeeded' AND claimed_at IS NULL AND attempts = 1)
			   FROM aloro_webhook.deliveries WHERE id IN ($in)", 't', 30),
		'locked start: every delivery ends succeeded after one attempt');
	is(scalar(grep { $_->{path} =~ /case=locked-start/ } receiver_log($rcv)), 5,
		'locked start: each delivery was sent once');
	$pid = worker_pid($node);
}

# ---------------------------------------------------------------------------
# 2. A cancel of the worker's statement is a failed turn, not a restart
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/ok?case=cancel", tag => 'asst_cancel');
	my $locker = lock_in_share_mode($node, 'aloro_webhook.delivery_attempts');
	my @ids = end_calls($node, 'call_cancel', 5, tag => 'asst_cancel');
	my $in = join(',', @ids);
	ok(wait_until(sub { scalar(grep { $_->{path} =~ /case=cancel/ } receiver_log($rcv)) >= 5 }, 10),
		'cancel: the requests went out');
	# cancel whatever the worker is waiting on (bounded: it waits 1 s at most per turn)
	$node->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'");
	unlock($locker);
	ok(poll_until($node,
			"SELECT bool_and(status = 'succeeded' AND claimed_at IS NULL)
			   FROM aloro_webhook.deliveries WHERE id IN ($in)", 't', 30),
		'cancel: the deliveries end succeeded');
	is(worker_pid($node), $pid, 'cancel: the same worker carried on');
}

# ---------------------------------------------------------------------------
# 3. The queue itself is locked while deliveries come due (what CREATE INDEX
#    takes): claims fail turn after turn; the worker neither crashes nor loses
#    slots (with room for only two requests to the webhook)
# ---------------------------------------------------------------------------
{
	my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
	aw_set($node, 'aloro_webhook.max_in_flight_per_webhook' => '2');
	# the first attempt is due 3 s after queuing: time to lock the queue first
	aw_set($node, 'aloro_webhook.retry_schedule' => '3s, 200ms, 200ms');
	add_webhook($node, "$rcv->{url}/ok?case=queue-locked", tag => 'asst_qlocked');
	my @ids = end_calls($node, 'call_qlocked', 5, tag => 'asst_qlocked');
	is(scalar(@ids), 5, 'queue locked: five deliveries queued, due in 3 s');
	my $in = join(',', @ids);
	my $before = () = slurp_file($node->logfile) =~ /lock timeout/g;

	my $locker = lock_in_share_mode($node, 'aloro_webhook.deliveries');
	ok(wait_until(sub { my $n = () = slurp_file($node->logfile) =~ /lock timeout/g; $n >= $before + 2 }, 30,
			'two turns to fail on the locked queue'),
		'queue locked: turns fail on the lock once the deliveries are due');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.deliveries WHERE id IN ($in) AND attempts > 0"),
		'0', 'queue locked: nothing claimed while the lock is held');
	unlock($locker);
	ok(poll_until($node,
			"SELECT bool_and(status = 'succeeded') FROM aloro_webhook.deliveries WHERE id IN ($in)",
			't', 30),
		'queue locked: all five go out through two slots afterwards');
	is(scalar(grep { $_->{path} =~ /case=queue-locked/ } receiver_log($rcv)), 5,
		'queue locked: each sent once');
	is(worker_pid($node), $pid, 'queue locked: the same worker carried on');
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
		'queue locked: no crash, no cluster restart');
	aw_set($node, 'aloro_webhook.max_in_flight_per_webhook' => undef);
	aw_set($node, 'aloro_webhook.retry_schedule' => undef);
}

# ---------------------------------------------------------------------------
# 4. An attempt row that a user's constraint refuses: the delivery still moves
#    on its schedule (no resend loop) and ends
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres',
		"ALTER TABLE aloro_webhook.delivery_attempts
		   ADD CONSTRAINT no_errors_please CHECK (error IS NULL) NOT VALID");
	add_webhook($node, "$rcv->{url}/status/500?case=refused-row", tag => 'asst_refused');
	my $did = end_call($node, 'call_refused_row', tag => 'asst_refused');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'failed', 30),
		'refused row: the delivery ends failed after its schedule');
	my $sent = scalar(requests_for($rcv, $did));
	ok($sent >= 5 && $sent <= 6, "refused row: sent once per scheduled attempt, not in a loop (sent $sent)");
	like(slurp_file($node->logfile), qr/could not record attempt \d+ of delivery $did/,
		'refused row: the refusal is in the server log');
	$node->safe_psql('postgres',
		'ALTER TABLE aloro_webhook.delivery_attempts DROP CONSTRAINT no_errors_please');
	is(worker_pid($node), $pid, 'refused row: the same worker carried on');
}

# ---------------------------------------------------------------------------
# 5. A cancel while the worker is idle has nothing to cancel
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'");
	add_webhook($node, "$rcv->{url}/ok?case=idle-cancel", tag => 'asst_idle_cancel');
	my $did = end_call($node, 'call_idle_cancel', tag => 'asst_idle_cancel');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 30),
		'idle cancel: deliveries still go out');
	is(worker_pid($node), $pid, 'idle cancel: the same worker, not a restart');
}

# ---------------------------------------------------------------------------
# 6. Corrupt bookkeeping is refused; it cannot reach the worker
# ---------------------------------------------------------------------------
{
	my $wh = add_webhook($node, "$rcv->{url}/status/503?case=corrupt", tag => 'asst_corrupt');
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, body, budget_start)
		 VALUES ($wh, 'corrupt', '{}', 2000000000)");
	isnt($ret, 0, 'corrupt: a budget_start beyond attempts is refused');
	like($err, qr/deliveries_budget/, 'corrupt: by the deliveries_budget constraint');
	($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO aloro_webhook.deliveries (webhook_id, call_id, body, attempts)
		 VALUES ($wh, 'corrupt2', '{}', 2147483647)");
	isnt($ret, 0, 'corrupt: an attempts count at the integer limit is refused');
	is(worker_pid($node), $pid, 'corrupt: the worker is untouched');
}

done_testing();
