# The byte rule against the real thing: thousands of awkward calls rows,
# each body from call_payload() compared with Node.js's own
# JSON.stringify(JSON.parse(body)) byte for byte (test/fuzz/byte_rule.js).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node_bin = $ENV{NODE} // 'node';
my $script = 'test/fuzz/byte_rule.js';
plan skip_all => "$script not found (run from the tree root)" unless -f $script;

my ($node_out, $node_err) = ('', '');
if (!IPC::Run::run([ $node_bin, '--version' ], '>', \$node_out, '2>', \$node_err))
{
	BAIL_OUT("Node.js ($node_bin) is needed for the byte rule test: $node_err");
}
note "node $node_out";

my $node = PostgreSQL::Test::Cluster->new('byte_rule');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'aloro_webhook'
aloro_webhook.database_name = 'postgres'
timezone = 'UTC'
# the load is megabytes of SQL: keep it out of the server log
log_statement = 'none'
});
$node->start;

# A UTF-8 database of its own, whatever the cluster's default encoding: the
# worker runs in "postgres" and never looks at this one.
$node->safe_psql('postgres',
	q{CREATE DATABASE fuzz ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('fuzz', 'CREATE EXTENSION aloro_webhook');

my $count = $ENV{ALORO_FUZZ_COUNT} // 6000;
my $seed = $ENV{ALORO_FUZZ_SEED} // '0x5eed2024';
my ($stdout, $stderr) = ('', '');
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'fuzz';
	local $ENV{PGUSER};
	delete $ENV{PGUSER};
	local $ENV{PSQL} = $node->installed_command('psql');
	IPC::Run::run(
		[ $node_bin, $script, '--count', $count, '--seed', $seed ],
		'>', \$stdout, '2>', \$stderr);
}
my $exit = $? >> 8;

my ($summary) = $stdout =~ /^(\d+ payloads checked, \d+ mismatches)$/m;
note s/^# //r for grep { /^#/ } split /\n/, $stdout;
is($exit, 0, "every call_payload() body obeys the byte rule and carries what is stored")
  or diag "exit $exit\n--- stdout\n$stdout\n--- stderr\n$stderr";
# ALORO_FUZZ_COUNT may lower the count for a quick run; by default it is 6000
my $min = $count < 5000 ? $count : 5000;
ok(defined $summary && $summary =~ /^(\d+) payloads checked, 0 mismatches$/ && $1 >= $min,
	"at least $min payloads checked, none mismatched")
  or diag "summary: " . ($summary // '(none)');
diag $summary if defined $summary;
is($stderr, '', 'the checker wrote nothing to stderr');

$node->stop;
done_testing();
