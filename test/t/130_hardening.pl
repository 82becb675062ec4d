# Real-world hardening, end to end:
#  1. one call with a 3.5 MB transcript fanned out to 1,000 webhooks: every
#     one delivered once, no attempt timed out, the worker's memory bounded
#     by aloro_webhook.max_in_flight_bytes and given back after the burst;
#  2. a call whose body could not be built, and one larger than
#     aloro_webhook.max_payload_size, are delivered once fixed / raised;
#  3. a password in a webhook URL reaches the receiver as HTTP Basic
#     credentials, while the URL shows ***;
#  4. DROP EXTENSION ... CASCADE says which watched tables lose their triggers;
#  5. an aloro_webhook.database_name that does not exist is said once, then
#     waited for quietly, and delivering starts when the database appears.
use strict;
use warnings;

use MIME::Base64 ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

# the worker's memory (kB) from /proc: VmHWM (peak resident), RssAnon (private now)
sub worker_mem
{
	my ($node) = @_;
	my $pid = worker_pid($node);
	my %m;
	open(my $fh, '<', "/proc/$pid/status") or return {};
	while (my $l = <$fh>)
	{
		$m{$1} = $2 if $l =~ /^(VmHWM|VmRSS|RssAnon):\s+(\d+)\s+kB/;
	}
	close($fh);
	return \%m;
}

my $node = aw_node('hardening',
	conf => {
		'aloro_webhook.max_payload_size' => '8MB',
		'aloro_webhook.timeout' => '5s',
		log_statement => 'none',
	});
my $pid0 = wait_for_worker($node, 30);
ok($pid0 ne '', 'the delivery worker runs');

# ---------------------------------------------------------------------------
# 1. A 3.5 MB body to 1,000 webhooks
# ---------------------------------------------------------------------------
{
	my $sink = start_receiver(name => 'fanout', no_bodies => 1);
	my $n = 1000;
	$node->safe_psql('postgres',
		"SELECT count(aloro_webhook.create_webhook('$sink->{url}/ok?fan=' || g, assistant_id => 'asst_fan'))
		   FROM generate_series(1, $n) g");
	my $mem0 = worker_mem($node);
	$node->safe_psql('postgres', q{
		INSERT INTO aloro_webhook.calls (id, status, assistant_id, transcript)
		SELECT 'call_fanout', 'completed', 'asst_fan',
		       jsonb_agg(jsonb_build_object('speaker', CASE WHEN g % 2 = 0 THEN 'ai' ELSE 'customer' END,
		                                    'text', repeat(md5(g::text), 22), 'start', g))
		  FROM generate_series(1, 2400) g});
	my $bytes = $node->safe_psql('postgres',
		"SELECT bytes FROM aloro_webhook.payloads WHERE call_id = 'call_fanout'");
	ok($bytes > 3_400_000 && $bytes < 3_700_000, "fan-out: one body of about 3.5 MB ($bytes bytes), stored once");
	my $peak = 0;
	ok(wait_until(sub {
				my $m = worker_mem($node);
				$peak = $m->{VmHWM} if ($m->{VmHWM} // 0) > $peak;
				$node->safe_psql('postgres',
					"SELECT count(*) FROM aloro_webhook.deliveries WHERE call_id = 'call_fanout' AND status = 'pending'") eq '0';
			}, 240, 'the fan-out'),
		'fan-out: every delivery finished');
	my $r = query_row($node, q{
		SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok, max(attempts) AS max_attempts,
		       (SELECT count(*) FROM aloro_webhook.delivery_attempts a
		          JOIN aloro_webhook.delivery_log d ON d.id = a.delivery_id
		         WHERE d.call_id = 'call_fanout' AND a.error IS NOT NULL) AS failed_attempts
		  FROM aloro_webhook.deliveries WHERE call_id = 'call_fanout'});
	is($r->{ok}, $n, 'fan-out: all 1,000 succeeded');
	is($r->{max_attempts}, 1, 'fan-out: each on its first attempt');
	is($r->{failed_attempts}, 0, 'fan-out: no attempt timed out or failed');
	my @got = grep { ($_->{path} // '') =~ /fan=/ } receiver_log($sink);
	my %ids = map { ($_->{headers}{'x-aloro-delivery'} // '') => 1 } @got;
	is(scalar(@got), $n, 'fan-out: the receiver got exactly 1,000 requests (nothing sent twice)');
	is(scalar(keys %ids), $n, 'fan-out: 1,000 distinct deliveries');
	is(scalar(grep { $_->{body_bytes} == $bytes } @got), $n, 'fan-out: every request carried the whole body');
	my $mem1 = worker_mem($node);
	$peak = $mem1->{VmHWM} if ($mem1->{VmHWM} // 0) > $peak;
	note(sprintf('fan-out: worker peak resident %d MB, private before %d MB, after %d MB',
			$peak / 1024, ($mem0->{RssAnon} // 0) / 1024, ($mem1->{RssAnon} // 0) / 1024));
	ok($peak < 256 * 1024, sprintf('fan-out: peak resident memory stays bounded (%d MB < 256 MB)', $peak / 1024));
	my $after;
	ok(wait_until(sub { $after = worker_mem($node)->{RssAnon} // 0; $after < 64 * 1024 }, 10, 'memory back'),
		sprintf('fan-out: private memory is given back after the burst (%d MB < 64 MB)', ($after // 0) / 1024));
	$node->safe_psql('postgres', "DELETE FROM aloro_webhook.webhooks WHERE assistant_id = 'asst_fan'");
	stop_receiver($sink);
}

my $rcv = start_receiver(name => 'hardening');

# ---------------------------------------------------------------------------
# 2. Not sent until fixed: a body that could not be built, one too large
# ---------------------------------------------------------------------------
{
	add_webhook($node, "$rcv->{url}/ok?case=h_fix", tag => 'asst_h_fix');
	$node->safe_psql('postgres', q{
		CREATE TABLE public.json_calls (id text PRIMARY KEY, status text, assistant_id text, variables json);
		SELECT aloro_webhook.watch('public.json_calls');
		INSERT INTO public.json_calls VALUES ('call_h_nul', 'completed', 'asst_h_fix', '{"note": "a\u0000b"}');
	});
	my $d = $node->safe_psql('postgres', "SELECT id FROM aloro_webhook.deliveries WHERE call_id = 'call_h_nul'");
	like($node->safe_psql('postgres', "SELECT status || ': ' || last_error FROM aloro_webhook.deliveries WHERE id = $d"),
		qr/^failed: payload could not be built: column "variables"/, 'unbuildable: the call ended, its delivery failed saying why');
	$node->safe_psql('postgres', q{UPDATE public.json_calls SET variables = '{"note": "ab"}' WHERE id = 'call_h_nul'});
	$node->safe_psql('postgres', "SELECT aloro_webhook.redeliver($d)");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d", 'succeeded', 20),
		'unbuildable: delivered once the data is fixed and it is redelivered');
	my @r = requests_for($rcv, $d);
	is(scalar(@r), 1, 'unbuildable: sent once');
	like($r[0]{body} // '', qr/"variables":\{"status":true,"note":"ab"\}/, 'unbuildable: with the fixed data');

	aw_set($node, 'aloro_webhook.max_payload_size' => '64kB');
	my $big = end_call($node, 'call_h_big', tag => 'asst_h_fix', recording_url => 'https://r.example/' . ('x' x 70000));
	like($node->safe_psql('postgres', "SELECT status || ': ' || last_error FROM aloro_webhook.deliveries WHERE id = $big"),
		qr/^failed: payload too large: \d+ bytes, more than aloro_webhook.max_payload_size \(65536 bytes\)/,
		'too large: failed at once, saying so');
	is(scalar(requests_for($rcv, $big)), 0, 'too large: never sent');
	# redelivered while the cap is still low: failed again, still unsent
	$node->safe_psql('postgres', "SELECT aloro_webhook.redeliver($big)");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $big", 'failed', 20),
		'too large: a redelivery under the same cap fails again');
	is(scalar(requests_for($rcv, $big)), 0, 'too large: still never sent');
	aw_set($node, 'aloro_webhook.max_payload_size' => '8MB');
	$node->safe_psql('postgres', "SELECT aloro_webhook.redeliver($big)");
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $big", 'succeeded', 20),
		'too large: delivered once the cap is raised and it is redelivered');
}

# ---------------------------------------------------------------------------
# 3. A password in the URL: sent as Basic credentials, shown as ***
# ---------------------------------------------------------------------------
{
	my $port = $rcv->{port};
	my $w = add_webhook($node, "http://crm-user:p%40ss\@127.0.0.1:$port/ok?case=h_auth", tag => 'asst_h_auth');
	is($node->safe_psql('postgres', "SELECT url FROM aloro_webhook.webhooks WHERE id = $w"),
		"http://crm-user:***\@127.0.0.1:$port/ok?case=h_auth", 'password: the URL shows it as ***');
	my $d = end_call($node, 'call_h_auth', tag => 'asst_h_auth');
	ok(poll_until($node, "SELECT status FROM aloro_webhook.deliveries WHERE id = $d", 'succeeded', 20),
		'password: delivered');
	my ($req) = requests_for($rcv, $d);
	is($req->{headers}{authorization}, 'Basic ' . MIME::Base64::encode_base64('crm-user:p@ss', ''),
		'password: the receiver got the credentials');
	unlike(slurp_file($node->logfile), qr/p%40ss|p\@ss/, 'password: not in the server log');
}

# ---------------------------------------------------------------------------
# 4. DROP EXTENSION ... CASCADE names the watched tables it detaches
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', 'CREATE DATABASE dropping');
	$node->safe_psql('dropping', q{
		CREATE EXTENSION aloro_webhook;
		CREATE TABLE public.crm_calls (id text, status text);
		SELECT aloro_webhook.watch('public.crm_calls');
	});
	my ($rc, $out, $err) = $node->psql('dropping', 'DROP EXTENSION aloro_webhook');
	like($err, qr/cannot drop extension aloro_webhook because other objects depend on it/,
		'drop: without CASCADE it is refused');
	($rc, $out, $err) = $node->psql('dropping', 'DROP EXTENSION aloro_webhook CASCADE');
	is($rc, 0, 'drop: CASCADE drops it');
	like($err, qr/NOTICE:  dropping aloro_webhook also drops the triggers that watch\(\) attached to public\.crm_calls/,
		'drop: a NOTICE names the watched table');
	is($node->safe_psql('dropping', q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.crm_calls'::regclass}),
		'0', 'drop: its triggers are gone');
}
$node->stop;

# ---------------------------------------------------------------------------
# 5. database_name names a database that does not exist (yet)
# ---------------------------------------------------------------------------
{
	my $n5 = aw_node('hardening_nodb', create_extension => 0,
		conf => { 'aloro_webhook.database_name' => 'calls_later' });
	ok(wait_until(sub { slurp_file($n5->logfile) =~ /aloro_webhook worker is waiting for database "calls_later" to exist/ },
			30, 'the waiting line'),
		'missing database: the worker says it waits for it');
	my $mark = -s $n5->logfile;
	# a measurement window: the log must stay quiet while nothing changes
	sleep(7);
	my $quiet = slurp_file($n5->logfile, $mark);
	my @lines = grep { /calls_later|aloro_webhook|background worker/ } split /\n/, $quiet;
	is(scalar(@lines), 0, 'missing database: nothing more in the log over 7 s (it used to be ~13 lines)')
	  or diag(join("\n", @lines));
	my $all = slurp_file($n5->logfile);
	my $fatal = () = $all =~ /FATAL:  database "calls_later" does not exist/g;
	ok($fatal <= 1, "missing database: PostgreSQL's FATAL at most once ($fatal)");
	$n5->safe_psql('postgres', 'CREATE DATABASE calls_later');
	$n5->safe_psql('calls_later', 'CREATE EXTENSION aloro_webhook');
	my $w = $n5->safe_psql('calls_later', "SELECT aloro_webhook.create_webhook('$rcv->{url}/ok?case=h_later')");
	$n5->safe_psql('calls_later', "INSERT INTO aloro_webhook.calls (id, status) VALUES ('call_h_later', 'completed')");
	ok(wait_until(sub {
				$n5->safe_psql('calls_later',
					"SELECT status FROM aloro_webhook.deliveries WHERE call_id = 'call_h_later'") eq 'succeeded' }, 30,
			'delivery from the new database'),
		'missing database: delivering starts once it exists');
	$n5->stop;
}

stop_receiver($rcv);
done_testing();
