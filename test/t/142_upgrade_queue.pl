# Updating from 0.2.0 keeps the queue as it stands: deliveries pending a
# retry, deliveries held for a webhook the extension disabled, and one in
# flight while ALTER EXTENSION ... UPDATE runs.  Each is sent afterwards --
# the one in flight once or more, never lost -- every attempt a row, with the
# bytes that were queued.  And the updated schema wakes the worker without
# the queue's 0.2.0 statement triggers: a call that ends afterwards is sent
# within the bound.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('upgrade_queue', create_extension => 0,
	conf => { 'aloro_webhook.retry_schedule' => '0, 1h, 1h', 'aloro_webhook.timeout' => '20s' });
my $rcv = start_receiver(name => 'upgrade_queue', secret => 'whsec_upq');
my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'aloro_webhook'");
$node->safe_psql('postgres', "CREATE EXTENSION aloro_webhook VERSION '0.2.0'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
	'0.2.0', 'installed at 0.2.0');
ok($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'aloro_webhook.queue'::regclass AND NOT tgisinternal") > 0,
	'0.2.0 wakes the worker from triggers on the queue');

# pending: the receiver failed them once; the next attempt is an hour away
my $retry = add_webhook($node, "$rcv->{url}/fail/1000/upq_retry", tag => 'upq_retry', secret => 'whsec_upq');
my @retry = end_calls($node, 'upq_retry', 5, tag => 'upq_retry');
ok(poll_until($node,
		"SELECT bool_and(attempts >= 1 AND status = 'pending') FROM aloro_webhook.deliveries WHERE webhook_id = $retry",
		't', 30),
	'pending deliveries have failed an attempt and wait for the next');

# held: the extension disabled the webhook (as after a 410); its deliveries wait
my $held = add_webhook($node, "$rcv->{url}/ok?case=upq_held", tag => 'upq_held', secret => 'whsec_upq');
$node->safe_psql('postgres',
	"UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'test: held', disabled_at = now()
	  WHERE id = $held");
my @held = end_calls($node, 'upq_held', 4, tag => 'upq_held');
is(scalar(@held), 4, 'a webhook the extension disabled still gets deliveries queued');

# in flight: the receiver answers after 5 s, and the update runs meanwhile
my $slow = add_webhook($node, "$rcv->{url}/slow/5000", tag => 'upq_slow', secret => 'whsec_upq');
my $flight = end_call($node, 'upq_slow_1', tag => 'upq_slow');
ok(poll_until($node,
		"SELECT claimed_at IS NOT NULL FROM aloro_webhook.deliveries WHERE id = $flight", 't', 30),
	'one delivery is in flight');

my $bodies_before = $node->safe_psql('postgres',
	"SELECT string_agg(id || ':' || md5(body), ',' ORDER BY id) FROM aloro_webhook.deliveries");
$node->safe_psql('postgres', 'ALTER EXTENSION aloro_webhook UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
	$current, "updated to $current while a delivery was in flight");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'aloro_webhook.queue'::regclass AND NOT tgisinternal"),
	'0', 'the queue has no statement triggers after the update');
is($node->safe_psql('postgres',
		"SELECT string_agg(id || ':' || md5(body), ',' ORDER BY id) FROM aloro_webhook.deliveries"),
	$bodies_before, 'every delivery is still there, with the bytes it was queued with');

# the one in flight is recorded when its answer comes, under the new schema
is($node->safe_psql('postgres',
		"SELECT status || ' ' || (claimed_at IS NOT NULL) || ' ' || attempts FROM aloro_webhook.deliveries WHERE id = $flight"),
	'pending true 0', 'it was still in flight when the update had finished');
delivery_reaches($node, $flight, 'succeeded', 30, 'the delivery in flight during the update succeeded');
my @fa = attempts($node, $flight);
ok(@fa >= 1 && ($fa[-1]{http_status} // 0) == 200, 'its last attempt is the 200, recorded as a row');

# the pending ones: the receiver is fixed, and the owner makes them due now by
# hand (through the deliveries view: that wakes the worker too)
$node->safe_psql('postgres', "UPDATE aloro_webhook.webhooks SET url = '$rcv->{url}/ok?case=upq_retry' WHERE id = $retry");
$node->safe_psql('postgres',
	"UPDATE aloro_webhook.deliveries SET next_attempt_at = now() WHERE webhook_id = $retry AND status = 'pending'");
ok(poll_until($node,
		"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE webhook_id = $retry",
		'5', 30),
	'the pending deliveries are sent after the update');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM aloro_webhook.delivery_attempts a JOIN aloro_webhook.deliveries d ON d.id = a.delivery_id
		  WHERE d.webhook_id = $retry AND a.http_status = 500"),
	$node->safe_psql('postgres',
		"SELECT sum(attempts) - 5 FROM aloro_webhook.deliveries WHERE webhook_id = $retry"),
	'each failed attempt, before and after the update, is a row');

# the held ones stay held until the webhook is enabled again, then go
is($node->safe_psql('postgres',
		"SELECT count(*) FROM aloro_webhook.deliveries WHERE webhook_id = $held AND status = 'pending' AND attempts = 0"),
	'4', 'the held deliveries are still held');
$node->safe_psql('postgres',
	"UPDATE aloro_webhook.webhooks SET enabled = true, disabled_reason = NULL, disabled_at = NULL WHERE id = $held");
ok(poll_until($node,
		"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries WHERE webhook_id = $held",
		'4', 30),
	'enabling the webhook sends the held deliveries');

# every request carried the bytes that were queued, signed
my %body = map { split /\|/, $_, 2 } split /\n/, $node->safe_psql('postgres',
	"SELECT string_agg(id || '|' || body, E'\\n') FROM aloro_webhook.deliveries");
my @log = receiver_log($rcv);
is(scalar(grep { ($_->{body} // '') ne ($body{ $_->{headers}{'x-aloro-delivery'} // '' } // '-') } @log), 0,
	'every request carried the queued bytes');
is(scalar(grep { !$_->{sig_raw_ok} } @log), 0, 'and a signature that verifies');
my %got;
$got{ $_->{headers}{'x-aloro-delivery'} }++ for grep { ($_->{path} // '') !~ m{/fail/} } @log;
is(scalar(grep { !$got{$_} } (@retry, @held, $flight)), 0, 'the receiver got every one of them');

# after the update a call that ends wakes the worker (no queue triggers now)
my $fresh = add_webhook($node, "$rcv->{url}/ok?case=upq_after", tag => 'upq_after', secret => 'whsec_upq');
my $after = end_call($node, 'upq_after_1', tag => 'upq_after');
delivery_reaches($node, $after, 'succeeded', 10, 'a call that ends after the update is sent');

stop_receiver($rcv);
$node->stop;
done_testing();
