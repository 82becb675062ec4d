# The worker's quiet states: before CREATE EXTENSION it waits without a crash
# loop or log spam and starts delivering once the extension exists; with the
# queue drained it is idle (woken at most for its tidy-up, shown as waiting).
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

# how many times a process has blocked (voluntary context switches): each
# wake-up of an idle worker ends with one, as it goes back to its wait.  The
# times the kernel preempted it while it ran (nonvoluntary ones) are not
# wake-ups, and on a busy machine one wake can be preempted more than once.
sub switches
{
	my ($pid) = @_;
	my $n;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (my $l = <$fh>)
	{
		$n += $1 if $l =~ /^voluntary_ctxt_switches:\s+(\d+)/;
	}
	close($fh);
	return $n;
}

sub log_lines_matching
{
	my ($node, $re) = @_;
	return scalar(grep { /$re/ } split(/\n/, slurp_file($node->logfile)));
}

my $node = aw_node('idle', create_extension => 0);
my $rcv = start_receiver(name => 'idle');

# ---------------------------------------------------------------------------
# 1. No extension yet: wait quietly, then start working once it exists
# ---------------------------------------------------------------------------
{
	my $pid = wait_for_worker($node, 30);
	ok($pid ne '', 'no extension yet: the worker runs');
	like(PostgreSQL::Test::Utils::slurp_file("/proc/$pid/cmdline") =~ s/\0/ /gr,
		qr/aloro_webhook worker/, 'the process title names the worker');
	# the worker's own lines (log_statement = all logs the tests' queries too)
	my $lines = log_lines_matching($node, qr/\[$pid\]/);
	Time::HiRes::sleep(3.0);
	is(worker_pid($node), $pid, 'no extension yet: same worker after 3 s (no crash loop)');
	is(log_lines_matching($node, qr/\[$pid\]/), $lines, 'no extension yet: no new log lines from the worker while waiting');
	ok($lines <= 4, "no extension yet: a few start-up lines only ($lines)");
	is(log_lines_matching($node, qr/background worker "aloro_webhook worker".*exited/), 0,
		'no extension yet: the worker never exited');

	$node->safe_psql('postgres', 'CREATE EXTENSION aloro_webhook');
	add_webhook($node, "$rcv->{url}/ok?case=late-extension", tag => 'asst_late');
	my $did = end_call($node, 'call_late', tag => 'asst_late');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 90),
		'after CREATE EXTENSION: deliveries flow without a restart');
}

# ---------------------------------------------------------------------------
# 2. Idle means idle
# ---------------------------------------------------------------------------
{
	my $idle_hook = add_webhook($node, "$rcv->{url}/ok?case=idle", tag => 'asst_idle');
	my $pid = worker_pid($node);
	ok($pid ne '', "idle: worker pid $pid");
	my $lines = log_lines_matching($node, qr/\[$pid\]/);
	my @ids = end_calls($node, 'call_idle', 50, tag => 'asst_idle');
	ok(poll_until($node, "SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'", '0', 60),
		'idle: queue drained');
	is(log_lines_matching($node, qr/\[$pid\]/), $lines, 'the worker logs no line per delivery');

	# its statistics are written about a second after the last delivery: once
	# they are, nothing is due but the tidy-up (every 10 s) and the idle check
	ok(poll_until($node,
			"SELECT coalesce(sum(succeeded), 0) FROM aloro_webhook.webhook_stats WHERE webhook_id = $idle_hook",
			'50', 10),
		'idle: the statistics of the drain are written');

	# once it waits, watch it for 3 s: an idle worker sleeps in its wait until
	# something is due (at most the one tidy-up) or the idle check (1 min)
	ok(poll_until($node,
			"SELECT state = 'idle' AND wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid",
			't', 10),
		'idle: the worker is in its wait');
	my $s0 = switches($pid);
	Time::HiRes::sleep(3.0);
	my $s1 = switches($pid);
	ok(defined $s0 && defined $s1, 'idle: context switches readable');
	my $woke = $s1 - $s0;
	ok($woke <= 1, "idle: the worker woke $woke times in 3 s (at most once)");
	is(worker_pid($node), $pid, 'idle: same worker throughout');

	my $a = query_row($node, qq{
		SELECT state, wait_event_type, wait_event, backend_type
		  FROM pg_stat_activity WHERE pid = $pid});
	note('idle: pg_stat_activity: state=' . ($a->{state} // 'NULL')
		  . ' wait_event=' . ($a->{wait_event_type} // 'NULL') . '/' . ($a->{wait_event} // 'NULL'));
	is($a->{backend_type}, 'aloro_webhook worker', 'pg_stat_activity names the worker');
	ok(($a->{state} // '') ne 'active', 'idle: pg_stat_activity does not show it active');
	ok(defined $a->{wait_event}, 'idle: pg_stat_activity shows it waiting');

	# and it still wakes up
	my $did = end_call($node, 'call_idle_after', tag => 'asst_idle');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $did", 'succeeded', 10),
		'idle: a new call is delivered promptly');
}

stop_receiver($rcv);
$node->stop;
done_testing();
