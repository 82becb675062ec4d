# The README's on-call guide: every SQL block between <!-- guide:start --> and
# <!-- guide:end --> runs, as aloro_webhook_admin, against a cluster where a
# call went to a good endpoint and to one that answered 410, and answers the
# question it is under.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $readme = PostgreSQL::Test::Utils::slurp_file("$FindBin::RealBin/../../doc/operations.md");
my ($guide) = $readme =~ /<!-- guide:start -->(.*?)<!-- guide:end -->/s;
ok(defined $guide, 'the README has the guide');
my @blocks;
while ($guide =~ /\n([^\n]+)\n\n```sql\n(.*?)```/sg)
{
	push @blocks, { question => $1, sql => $2 };
}
cmp_ok(scalar @blocks, '>=', 8, 'the guide has its questions, each with SQL');

my $node = aw_node('guide');
my $rcv = start_receiver(name => 'guide');
ok(wait_for_worker($node, 30), 'the delivery worker runs');
my $good = add_webhook($node, "$rcv->{url}/ok/guide", tag => 'guide', name => 'crm');
my $gone = $node->safe_psql('postgres',
	"SELECT aloro_webhook.create_webhook('$rcv->{url}/status/410', name => 'old-endpoint', assistant_id => 'guide')");
end_call($node, 'call_123', tag => 'guide');
ok(poll_until($node,
		"SELECT count(*) = 2 FROM aloro_webhook.deliveries WHERE call_id = 'call_123' AND status <> 'pending'", 't', 30),
	'call_123 went to both endpoints');
ok(poll_until($node, "SELECT disabled_reason IS NOT NULL FROM aloro_webhook.webhooks WHERE id = $gone", 't', 30),
	'the 410 endpoint was disabled');

my $guide_start = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
for my $b (@blocks)
{
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', "SET ROLE aloro_webhook_admin;\n$b->{sql}",
		stdout => \$out, stderr => \$err, on_error_stop => 1);
	is($rc, 0, "guide: \"$b->{question}\" runs") or diag($err);
	$b->{out} = $out;
}

my %by = map { $_->{question} => $_->{out} } @blocks;
like($by{"Did call X's webhook arrive?"} // '', qr/crm\|.*\|succeeded\|/, 'did call X arrive: the good endpoint succeeded');
like($by{"Did call X's webhook arrive?"} // '', qr/old-endpoint\|.*\|failed\|1\|410\|/, 'did call X arrive: the 410 one failed');
like($by{'Which endpoints are failing?'} // '', qr/^$gone\|old-endpoint\|/m, 'which endpoints are failing: the 410 one');
unlike($by{'Which endpoints are failing?'} // '', qr/^$good\|/m, 'which endpoints are failing: not the good one');
like($by{'Why was this webhook disabled?'} // '', qr/410/, 'why disabled: 410');
# the guide's next block replays the 410 delivery, which may already have been sent again and
# disabled the webhook once more: either way it was enabled after the guide began
is($node->safe_psql('postgres',
		"SELECT enabled OR disabled_at > '$guide_start' FROM aloro_webhook.webhooks WHERE id = $gone"), 't',
	'bring it back: the webhook is enabled again');

done_testing();
