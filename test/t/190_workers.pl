# aloro_webhook.workers = 2: two delivery workers share the queue -- both
# claim, no delivery is sent twice, the per-webhook in-flight cap and the
# rate limit hold across them, and every delivery arrives; and the number
# of workers changed across a restart, with deliveries in flight: each
# arrives, none is lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('workers', conf => {
	'aloro_webhook.workers' => '2',
	'aloro_webhook.max_in_flight_per_webhook' => '4' });
my $rcv = start_receiver(name => 'workers');
ok(poll_until($node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'", '2', 30),
	'two delivery workers run');
sub sql { return $node->safe_psql('postgres', $_[0]); }

# a slow endpoint: requests stay in flight long enough to be seen (in the
# workers' stream cursors, and as queue claims for any that went by the queue)
{
	my $wid = add_webhook($node, "$rcv->{url}/slow/150", tag => 'w_slow');
	my @ids = end_calls($node, 'call_w_slow', 60, tag => 'w_slow');
	my (%workers, $max_in_flight);
	$max_in_flight = 0;
	wait_until(sub {
			my $r = sql("SELECT count(*), string_agg(DISTINCT x.who, ',') FROM (
			    SELECT 'queue ' || q.claimed_by AS who FROM aloro_webhook.queue q
			     WHERE q.webhook_id = $wid AND q.claimed_by IS NOT NULL
			    UNION ALL
			    SELECT 'stream ' || c.share FROM aloro_webhook.stream_cursors c
			      CROSS JOIN unnest(c.in_flight) f(id)
			      JOIN aloro_webhook.delivery_log d ON d.id = f.id
			     WHERE c.share >= 0 AND d.webhook_id = $wid) x");
			my ($n, $t) = split /\|/, $r;
			$max_in_flight = $n if $n > $max_in_flight;
			$workers{$_} = 1 for grep { length } split /,/, ($t // '');
			return sql("SELECT count(*) FILTER (WHERE status = 'succeeded') FROM aloro_webhook.deliveries
			             WHERE webhook_id = $wid") eq '60';
		}, 60, 'the slow webhook drained');
	ok($workers{'stream 0'} && $workers{'stream 1'},
		'both workers had deliveries of the same webhook in flight (' . join(', ', sort keys %workers) . ')');
	cmp_ok($max_in_flight, '<=', 4, "max_in_flight_per_webhook 4 holds across the workers (saw $max_in_flight)");
	is(sql("SELECT count(*) FROM aloro_webhook.deliveries WHERE webhook_id = $wid AND status = 'succeeded' AND attempts = 1"),
		'60', 'all 60 delivered, each at the first attempt');
}

# many at once: each delivery arrives exactly once
{
	add_webhook($node, "$rcv->{url}/ok/many", tag => 'w_many');
	my @ids = end_calls($node, 'call_w_many', 2000, tag => 'w_many');
	ok(poll_until($node,
			"SELECT count(*) = 2000 FROM aloro_webhook.deliveries WHERE call_id LIKE 'call_w_many_%' AND status = 'succeeded'",
			't', 90), '2,000 delivered by two workers');
	my %seen;
	$seen{ $_->{headers}{'x-aloro-delivery'} }++ for grep { $_->{path} eq '/ok/many' } receiver_log($rcv);
	is(scalar(keys %seen), 2000, 'the receiver saw every one');
	is(scalar(grep { $_ > 1 } values %seen), 0, 'none was sent twice');
}

# a rate limit holds across the workers
{
	my $wid = sql("INSERT INTO aloro_webhook.webhooks (url, assistant_id, rate_limit)
		VALUES ('$rcv->{url}/ok/paced', 'w_rate', 4) RETURNING id");
	end_calls($node, 'call_w_rate', 12, tag => 'w_rate');
	ok(poll_until($node,
			"SELECT count(*) = 12 FROM aloro_webhook.deliveries WHERE webhook_id = $wid AND status = 'succeeded'", 't', 60),
		'the rate-limited webhook got all 12');
	my @t = sort { $a <=> $b } map { $_->{t} / 1000 } grep { $_->{path} eq '/ok/paced' } receiver_log($rcv);
	my $max = 0;
	for my $i (0 .. $#t)
	{
		my $n = grep { $_ >= $t[$i] && $_ < $t[$i] + 1 } @t;
		$max = $n if $n > $max;
	}
	cmp_ok($max, '<=', 6, "rate_limit 4 with two workers: at most 6 in any second (saw $max)");
}

# the number of workers changed across a restart (their stream rows are
# made again), with requests in flight and deliveries not read yet: all of
# them arrive, and each worker has its row
for my $n (1, 3)
{
	my $wid = add_webhook($node, "$rcv->{url}/slow/300", tag => "w_change_$n");
	my @ids = end_calls($node, "call_w_change_$n", 40, tag => "w_change_$n");
	ok(wait_for_requests($rcv, sub { grep { $_->{path} eq '/slow/300' } @_ }, 20, 'requests in flight'),
		"workers $n: requests in flight before the restart");
	$node->stop('fast');
	$node->append_conf('postgresql.conf', "aloro_webhook.workers = $n");
	$node->start;
	ok(poll_until($node,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'", "$n", 30),
		"workers $n: $n workers run");
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') = 40 FROM aloro_webhook.deliveries
			  WHERE webhook_id = $wid", 't', 60),
		"workers $n: every delivery queued before the change arrives");
	is(sql("SELECT string_agg(share || '/' || shares, ',' ORDER BY share)
	          FROM aloro_webhook.stream_cursors WHERE share >= 0"),
		join(',', map { "$_/$n" } 0 .. $n - 1), "workers $n: one stream row per worker");
	my @more = end_calls($node, "call_w_after_$n", 30, tag => "w_change_$n");
	ok(poll_until($node,
			"SELECT count(*) FILTER (WHERE status = 'succeeded') = 70 FROM aloro_webhook.deliveries
			  WHERE webhook_id = $wid", 't', 60),
		"workers $n: and those queued after");
}

done_testing();
