# aloro_webhook on a sharded call database: a Citus coordinator and two
# worker nodes on this machine, the calls table distributed by id, and
# CREATE EXTENSION plus watch() on the coordinator as the whole set-up.
# Calls that end on any shard are delivered exactly as on one node (bytes,
# signature, headers, filters, once per webhook and call); the webhooks
# configured on the coordinator are what every node sends with, changes
# included, in the same transaction; delivery_history on the coordinator
# shows every node's deliveries; test requests, redeliver(), replay() and
# forget_call() work from the coordinator.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Encode ();

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;
use CitusTest;

my $secret = 'whsec_citus_' . int(rand(1_000_000_000));
my $secret2 = 'whsec_citus_rotated_' . int(rand(1_000_000_000));
my $rcv = start_receiver(name => 'citus', secret => $secret);
my $rcv2 = start_receiver(name => 'citus2', secret => $secret2);

my ($coord, $w1, $w2) = citus_cluster(no_watch => 1);
my %group = map { $_->port => node_group($_) } ($coord, $w1, $w2);

my $ext = on_all_nodes($coord,
	"SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'");
my $current = $coord->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'aloro_webhook'");
is(join(',', sort values %$ext), join(',', ($current) x 3),
	'CREATE EXTENSION on the coordinator installs the extension on every node');
for my $n ($coord, $w1, $w2)
{
	ok(wait_for_worker($n, 30), $n->name . ': a delivery worker runs');
}

# a webhook before watch(), the others after: all reach every node
sub create_webhook
{
	my (%o) = @_;
	my $args = join(', ', map { "$_ => " . quote_lit($o{$_}) } sort keys %o);
	return $coord->safe_psql('postgres',
		"SET log_statement = 'none'; SELECT aloro_webhook.create_webhook($args)");
}
my $wa = create_webhook(url => "$rcv->{url}/ok/a", secret => $secret, name => 'a');
$coord->safe_psql('postgres', "SELECT aloro_webhook.watch('public.calls')");
my $wb = create_webhook(url => "$rcv->{url}/ok/b", secret => $secret, name => 'b',
	include_recording => 'false');
my $wc = create_webhook(url => "$rcv->{url}/ok/c", secret => $secret, name => 'c');
$coord->safe_psql('postgres', q{
	SET log_statement = 'none';
	UPDATE aloro_webhook.webhooks SET headers = '{"Authorization": "Bearer citus-token"}'
	 WHERE name = 'a';
	UPDATE aloro_webhook.webhooks SET filter = '$.data.variables.lead == true' WHERE name = 'c';
});

my $config_sql = "SELECT string_agg(id || ' ' || name || ' ' || url || ' ' || md5(coalesce(secret, ''))
	                || ' ' || headers::text || ' ' || coalesce(filter::text, '-'), '; ' ORDER BY id)
	   FROM aloro_webhook.webhooks";
my $config = on_all_nodes($coord, $config_sql);
my %distinct = map { $_ => 1 } values %$config;
is(scalar(keys %distinct), 1, 'every node has the same webhooks (secrets, headers, filters)');
like((values %$config)[0], qr/^$wa a .*; $wb b .*; $wc c .*lead/, 'those configured on the coordinator');

# ---------------------------------------------------------------------------
# 1. Calls ending on every shard, every way a platform ends them
# ---------------------------------------------------------------------------
my $example = slurp_file("$FindBin::RealBin/../fixtures/example_call.sql");
$example =~ s/INSERT INTO aloro_webhook\.calls VALUES/INSERT INTO public.calls VALUES/ or die 'fixture';
$example =~ s/\('call_abc123',/('call_citus_example',/ or die 'fixture id';
$example =~ s/"summary": "Customer inquired about order status"/"summary": "Client satisfait ✓ — café 😀", "lead": true, "1": 0.30/
  or die 'fixture summary';
$coord->safe_psql('postgres', $example);

for my $i (1 .. 24)
{
	my $lead = $i % 2 ? 'true' : 'false';
	$coord->safe_psql('postgres',
		"INSERT INTO public.calls (id, status, assistant_id, started_at, ended_at, variables, transcript)
		 VALUES ('c-ins-$i', 'completed', 'asst_$i', now() - interval '3 minutes', now(),
		         '{\"lead\": $lead, \"n\": $i}', '[{\"speaker\": \"ai\", \"text\": \"hi $i\", \"start\": 0}]')");
}
# INSERT ... SELECT: Citus carries it out as COPY into the shards
$coord->safe_psql('postgres',
	"INSERT INTO public.calls (id, status, variables)
	 SELECT 'c-sel-' || g, CASE WHEN g % 3 = 0 THEN 'failed' ELSE 'completed' END,
	        jsonb_build_object('lead', g % 2 = 0, 'n', g)
	   FROM generate_series(1, 24) g");
# live first, then ended by an UPDATE across shards
$coord->safe_psql('postgres',
	"INSERT INTO public.calls (id, status) SELECT 'c-upd-' || g, 'in-progress' FROM generate_series(1, 12) g");
$coord->safe_psql('postgres', "UPDATE public.calls SET status = 'completed' WHERE id LIKE 'c-upd-%'");

my @calls = split /\n/, $coord->safe_psql('postgres', 'SELECT id FROM public.calls ORDER BY id');
is(scalar(@calls), 61, '61 calls ended');
my %lead = map { split /\|/ } split /\n/, $coord->safe_psql('postgres',
	"SELECT id || '|' || coalesce((variables->>'lead'), 'false') FROM public.calls");
my $want_c = grep { $lead{$_} eq 'true' } @calls;
my $want = 2 * @calls + $want_c;

my @log = wait_for_requests($rcv, sub { @_ >= $want }, 60, "$want requests");
is(scalar(@log), $want, "$want requests: every call to a and b, the leads to c");

my %seen;
my ($sig_ok, $hdr_ok, $bad_group) = (0, 0, 0);
my %path_of = ('/ok/a' => $wa, '/ok/b' => $wb, '/ok/c' => $wc);
my %body_of;
for my $r (@log)
{
	my ($call) = $r->{body} =~ /"call":\{"id":"([^"]+)"/;
	$seen{"$r->{path} $call"}++;
	$sig_ok++ if $r->{sig_raw_ok} && $r->{sig_stringify_ok};
	$hdr_ok++ if $r->{path} ne '/ok/a' || ($r->{headers}{authorization} // '') eq 'Bearer citus-token';
	my $did = $r->{headers}{'x-aloro-delivery'};
	my $g = int($did / 2**48);
	$bad_group++ unless $g == $group{ $w1->port } || $g == $group{ $w2->port };
	$body_of{"$r->{path} $call"} = $r->{body};
}
is(scalar(grep { $_ != 1 } values %seen), 0, 'each call reached each webhook once');
is(scalar(keys %seen), $want, 'and every one of them did');
is(scalar(grep { /^\/ok\/c / } keys %seen), $want_c, 'the filter held on every node');
is($sig_ok, $want, 'every signature verifies, raw and re-serialized');
is($hdr_ok, $want, "webhook a's own header went with every request");
is($bad_group, 0, 'every delivery was queued on a worker node (its id carries the group)');

# queued where the call's shard is
my %owner = map { split /\|/ } split /\n/, $coord->safe_psql('postgres',
	"SELECT c.id || '|' || s.nodeport FROM public.calls c
	   JOIN citus_shards s ON s.shardid = get_shard_id_for_distribution_column('public.calls', c.id)");
my $misplaced = 0;
for my $r (@log)
{
	my ($call) = $r->{body} =~ /"call":\{"id":"([^"]+)"/;
	my $g = int($r->{headers}{'x-aloro-delivery'} / 2**48);
	$misplaced++ unless $group{ $owner{$call} } == $g;
}
is($misplaced, 0, 'each delivery was queued on the node that holds its call');
my $ended_here = on_all_nodes($coord, 'SELECT count(*) FROM aloro_webhook.ended_calls');
is($ended_here->{ $coord->port }, 0, 'the coordinator queued nothing itself');
is($ended_here->{ $w1->port } + $ended_here->{ $w2->port }, 61, 'the worker nodes marked every call ended');

# the bytes: as call_payload() on the coordinator says, and as one node builds them
# (psql prints UTF-8 bytes; the receiver's log has characters)
my %payload = map { my ($k, $v) = split /\t/, $_, 2; $k => $v } split /\n/,
  Encode::decode('UTF-8', $coord->safe_psql('postgres',
	# over the ids, not over the distributed table: Citus would push the
	# function into the shards, where it cannot ask the cluster
	"SELECT id || ' a' || E'\\t' || aloro_webhook.call_payload(id) FROM unnest(ARRAY["
	  . join(',', map { quote_lit($_) } @calls) . "]) id
	 UNION ALL
	 SELECT id || ' b' || E'\\t' || aloro_webhook.call_payload(id, false) FROM unnest(ARRAY["
	  . join(',', map { quote_lit($_) } @calls) . "]) id"));
my $mismatch = 0;
for my $k (keys %body_of)
{
	my ($path, $call) = split / /, $k;
	my $which = $path eq '/ok/b' ? 'b' : 'a';
	$mismatch++ unless ($payload{"$call $which"} // '') eq $body_of{$k};
}
is($mismatch, 0, 'every body is byte for byte what call_payload() on the coordinator gives');

my $single = aw_node('single');
(my $single_example = $example) =~ s/INSERT INTO public\.calls VALUES/INSERT INTO aloro_webhook.calls VALUES/;
$single->safe_psql('postgres', $single_example);
my $ended_at = $coord->safe_psql('postgres',
	"SELECT aloro_webhook._ended_at('call_citus_example')");
my $single_body = Encode::decode('UTF-8', $single->safe_psql('postgres',
	"SELECT aloro_webhook._payload(c, true, " . quote_lit($ended_at) . ")
	   FROM aloro_webhook.calls c WHERE id = 'call_citus_example'"));
is($body_of{'/ok/a call_citus_example'}, $single_body,
	'the example call is sent byte for byte as one node builds it');
$single->stop;

# ---------------------------------------------------------------------------
# 2. The history on the coordinator: every node's deliveries
# ---------------------------------------------------------------------------
ok(poll_until($coord,
		"SELECT count(*) FROM aloro_webhook.delivery_history WHERE status = 'succeeded' AND NOT test",
		$want, 30),
	'delivery_history on the coordinator shows every delivery, succeeded');
is($coord->safe_psql('postgres',
		"SELECT count(DISTINCT id) FROM aloro_webhook.delivery_history"),
	$want, 'each with an id of its own across the cluster');
is($coord->safe_psql('postgres',
		"SELECT string_agg(webhook_name || ':' || status || ':' || attempts, ',' ORDER BY webhook_name)
		   FROM aloro_webhook.delivery_history WHERE call_id = 'call_citus_example'"),
	'a:succeeded:1,b:succeeded:1,c:succeeded:1',
	'"what happened to call X?" is one query on the coordinator');
is($coord->safe_psql('postgres',
		"SELECT string_agg(webhook_name || ':' || status || ':' || attempts, ',' ORDER BY webhook_name)
		   FROM aloro_webhook.delivery_history_of('call_citus_example')"),
	'a:succeeded:1,b:succeeded:1,c:succeeded:1',
	'delivery_history_of() asks each node for that call only, with the same answer');

$coord->safe_psql('postgres',
	"CREATE ROLE citus_reader LOGIN IN ROLE aloro_webhook_reader;
	 GRANT SELECT ON public.calls TO citus_reader");
is($coord->safe_psql('postgres',
		"SET ROLE citus_reader; SELECT count(*) FROM aloro_webhook.delivery_history WHERE NOT test"),
	$want, 'the reader role sees the whole history too');
is(Encode::decode('UTF-8', $coord->safe_psql('postgres',
		"SET ROLE citus_reader; SELECT aloro_webhook.call_payload('call_citus_example')")),
	$payload{'call_citus_example a'}, 'and gets call_payload() as sent');

# ---------------------------------------------------------------------------
# 3. Test requests, redeliver, replay and forget_call, from the coordinator
# ---------------------------------------------------------------------------
{
	my $tid = $coord->safe_psql('postgres', "SELECT aloro_webhook.test_webhook($wa)");
	ok(wait_for_requests($rcv, sub { grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $tid } @_ }, 30,
			'the test request'),
		'a test request from the coordinator arrives');

	my $did = $coord->safe_psql('postgres',
		"SELECT id FROM aloro_webhook.delivery_history WHERE call_id = 'c-ins-3' AND webhook_id = $wb");
	ok(int($did / 2**48) > 0, 'a delivery a worker node holds');
	is($coord->safe_psql('postgres', "SELECT aloro_webhook.redeliver($did)"), $did,
		'redeliver() on the coordinator answers for it');
	ok(wait_for_requests($rcv, sub { 2 == grep { ($_->{headers}{'x-aloro-delivery'} // '') eq $did } @_ }, 30,
			'the redelivery'),
		'and it is sent again, by its node');
	my ($ret, $out, $err) = $coord->psql('postgres',
		"SELECT aloro_webhook.redeliver(" . ($did + 1_000_000) . ")", on_error_stop => 1);
	like($err, qr/delivery \d+ does not exist/, 'an unknown id on a worker node: the same error as on one node');
	is($coord->safe_psql('postgres',
			"CREATE FUNCTION pg_temp.state_of(id bigint) RETURNS text LANGUAGE plpgsql AS \$\$ "
			  . "BEGIN PERFORM aloro_webhook.redeliver(id); RETURN 'none'; "
			  . "EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END \$\$; "
			  . "SELECT pg_temp.state_of(" . ($did + 1_000_000) . ")"),
		'P0002', 'and with its SQLSTATE (no_data_found)');

	ok(poll_until($coord, "SELECT status FROM aloro_webhook.delivery_history WHERE id = $did",
			'succeeded', 30), 'the redelivery is recorded on its node');
	my $replayed = $coord->safe_psql('postgres',
		"SELECT aloro_webhook.replay($wb, now() - interval '1 hour', now(), false)");
	is($replayed, 61, 'replay() on the coordinator replays every node\'s deliveries');
	my $before = grep { $_->{path} eq '/ok/b' } @log;
	ok(wait_for_requests($rcv, sub { (grep { $_->{path} eq '/ok/b' } @_) >= $before + 1 + 61 }, 60,
			'the replayed ones'),
		'and they are sent');

	is($coord->safe_psql('postgres', "SELECT aloro_webhook.forget_call('c-ins-4')"), 2,
		'forget_call() on the coordinator erases the deliveries wherever they are');
	my $kept = on_all_nodes($coord,
		"SELECT count(*) FROM aloro_webhook.payloads WHERE call_id = 'c-ins-4' AND body IS NOT NULL");
	is(join(',', values %$kept), '0,0,0', 'no node keeps the body');
	is($coord->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_history WHERE call_id = 'c-ins-4'"),
		2, 'the facts stay');
}

# ---------------------------------------------------------------------------
# 4. Configuration changes reach every node in the same transaction
# ---------------------------------------------------------------------------
{
	# the new secret and URL, and at once a call that ends
	$coord->safe_psql('postgres', "SET log_statement = 'none';
		UPDATE aloro_webhook.webhooks SET secret = " . quote_lit($secret2) . ",
		       url = " . quote_lit("$rcv2->{url}/ok/b2") . " WHERE id = $wb;
		UPDATE aloro_webhook.webhooks SET enabled = false WHERE id = $wa;
		DELETE FROM aloro_webhook.webhooks WHERE id = $wc;
		INSERT INTO public.calls (id, status) SELECT 'c-new-' || g, 'completed' FROM generate_series(1, 8) g;");
	my @log2 = wait_for_requests($rcv2, sub { @_ >= 8 }, 30, 'the calls after the change');
	is(scalar(@log2), 8, 'calls ending right after the change go to the new URL');
	is(scalar(grep { $_->{sig_raw_ok} } @log2), 8, 'signed with the new secret, on every node');
	is($coord->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_history WHERE call_id LIKE 'c-new-%'"),
		8, 'nothing queued for the disabled or the deleted webhook');
	$config = on_all_nodes($coord, $config_sql);
	%distinct = map { $_ => 1 } values %$config;
	is(scalar(keys %distinct), 1, 'every node has the same webhooks after the change');
	unlike((values %$config)[0], qr/ c /, 'the deleted one is gone everywhere');
}

# ---------------------------------------------------------------------------
# 5. A call ends once, on its node too
# ---------------------------------------------------------------------------
{
	$coord->safe_psql('postgres', "UPDATE public.calls SET status = 'in-progress' WHERE id LIKE 'c-new-%'");
	$coord->safe_psql('postgres', "UPDATE public.calls SET status = 'completed' WHERE id LIKE 'c-new-%'");
	is($coord->safe_psql('postgres',
			"SELECT count(*) FROM aloro_webhook.delivery_history WHERE call_id LIKE 'c-new-%'"),
		8, 'ending a call again queues nothing');

	# a table Citus keeps a copy of on every node would have every node send each call
	$coord->safe_psql('postgres',
		"CREATE TABLE public.ref_calls (id text PRIMARY KEY, status text NOT NULL);
		 SELECT create_reference_table('public.ref_calls')");
	my ($ret, $out, $err) = $coord->psql('postgres', "SELECT aloro_webhook.watch('public.ref_calls')");
	like($err, qr/table public\.ref_calls keeps each call on 3 nodes/,
		'watch() refuses a table whose shards are kept on several nodes');
	is($coord->safe_psql('postgres',
			"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.ref_calls'::regclass AND NOT tgisinternal"),
		0, 'and attaches nothing to it');
}

# ---------------------------------------------------------------------------
# 6. DROP EXTENSION and CREATE EXTENSION again, on the coordinator
# ---------------------------------------------------------------------------
{
	$coord->safe_psql('postgres', 'DROP EXTENSION aloro_webhook CASCADE');
	my $left = on_all_nodes($coord,
		# pg_depend: Citus hides its shards from pg_class, not from there
		"SELECT count(*) FROM pg_depend d JOIN pg_namespace n ON n.oid = d.refobjid
		  WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = 'aloro_webhook'");
	is(join(',', values %$left), '0,0,0', 'DROP EXTENSION leaves no table behind on any node (shards neither)');
	# and a calls table watched first, distributed afterwards
	$coord->safe_psql('postgres', "CREATE EXTENSION aloro_webhook;
		CREATE TABLE public.late_calls (id text PRIMARY KEY, status text NOT NULL);
		SELECT aloro_webhook.watch('public.late_calls');
		SET log_statement = 'none';
		SELECT aloro_webhook.create_webhook(" . quote_lit("$rcv2->{url}/ok/again") . ", "
		  . quote_lit($secret2) . ");
		SET citus.enable_unsafe_triggers = on;
		SELECT create_distributed_table('public.late_calls', 'id');");
	ok(webhooks_everywhere($coord, 1),
		'a table watched while it was local and distributed afterwards: every node has the webhook');
	$coord->safe_psql('postgres',
		"INSERT INTO public.late_calls (id, status) SELECT 'c-late-' || g, 'completed' FROM generate_series(1, 6) g");
	$coord->safe_psql('postgres', "SELECT aloro_webhook.watch('public.calls')");
	$coord->safe_psql('postgres',
		"INSERT INTO public.calls (id, status) SELECT 'c-again-' || g, 'completed' FROM generate_series(1, 6) g");
	my @again = wait_for_requests($rcv2, sub { (grep { $_->{path} eq '/ok/again' } @_) >= 12 }, 30,
		'the calls after CREATE EXTENSION again');
	is(scalar(grep { $_->{path} eq '/ok/again' && $_->{sig_raw_ok} } @again), 12,
		'and after CREATE EXTENSION again, calls are delivered from every node');
}

$_->stop for ($w1, $w2, $coord);
done_testing();
