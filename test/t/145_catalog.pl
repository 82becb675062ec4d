# One schema, however it was reached: CREATE EXTENSION of the current version
# (the script the Makefile builds from sql/'s files) and CREATE EXTENSION of
# each earlier version followed by ALTER EXTENSION UPDATE give the same
# catalog.  Compared three ways: the extension's member objects, its
# configuration tables (what pg_dump carries), and pg_dump --schema-only of
# every object once they are detached from the extension (pg_dump leaves an
# extension's members out otherwise), definitions, privileges and comments.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

use FindBin;
use lib $FindBin::RealBin;
use AloroTest;

my $node = aw_node('catalog', create_extension => 0);

my $default = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'aloro_webhook'");
my @earlier = split /\n/, $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions
	  WHERE name = 'aloro_webhook' AND version <> '$default' ORDER BY version");
ok(scalar(@earlier) >= 1, "earlier versions to upgrade from: @earlier");

# The members of the extension, one ALTER EXTENSION ... DROP statement each,
# and whether the member is a table's or view's row type (or its array type):
# those are not detached, as they go with their relation (from PostgreSQL 17
# on, they are members of their own as well).
my $members_sql = q{
SELECT pg_catalog.format('ALTER EXTENSION aloro_webhook DROP %s %s;', upper(i.type), i.identity)
       || '|' || EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                           LEFT JOIN pg_catalog.pg_type el ON el.oid = t.typelem
                          WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = d.objid
                            AND (t.typrelid <> 0 OR coalesce(el.typrelid, 0) <> 0))
  FROM pg_catalog.pg_depend d
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) i
 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'aloro_webhook')
   AND d.deptype = 'e'
 ORDER BY 1};
my $config_sql = q{
SELECT c::regclass::text || ' ' || coalesce(e.extcondition[pg_catalog.array_position(e.extconfig, c)], '')
  FROM pg_catalog.pg_extension e, unnest(e.extconfig) c
 WHERE e.extname = 'aloro_webhook' ORDER BY 1};

# describe($db): the extension's members, its configuration tables, and the
# schema pg_dump writes of them once detached
sub describe
{
	my ($db) = @_;
	my @members = map { [ split /\|/ ] } split /\n/, $node->safe_psql($db, $members_sql);
	my $members = join("\n", map { $_->[0] } @members);
	my $config = $node->safe_psql($db, $config_sql);
	$node->safe_psql($db, join("\n", map { $_->[0] } grep { $_->[1] eq 'false' } @members));
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'pg_dump', '--schema-only', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump of $db failed: $err";
	# \restrict lines carry a random key (newer pg_dump)
	$out =~ s/^\\(?:un)?restrict .*\n//mg;
	return { members => $members, config => $config, dump => $out };
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION aloro_webhook');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
	$default, "a fresh install is $default");
my $fresh = describe('fresh');
like($fresh->{dump}, qr/CREATE TABLE aloro_webhook\.delivery_log/, 'the dump holds the detached objects');
cmp_ok(scalar(split /\n/, $fresh->{members}), '>=', 60, 'the extension has its members');

for my $v (@earlier)
{
	(my $db = "from_$v") =~ s/\W/_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION aloro_webhook VERSION '$v'");
	$node->safe_psql($db, 'ALTER EXTENSION aloro_webhook UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'aloro_webhook'"),
		$default, "$v updated to $default");
	my $up = describe($db);
	is($up->{members}, $fresh->{members}, "from $v: the same member objects");
	is($up->{config}, $fresh->{config}, "from $v: the same configuration tables");
	# the dumps name their database nowhere, so they compare as they are
	my $same = $up->{dump} eq $fresh->{dump};
	ok($same, "from $v: pg_dump --schema-only is the same");
	if (!$same)
	{
		my ($fa, $fb) = ("$PostgreSQL::Test::Utils::tmp_check/fresh.sql",
			"$PostgreSQL::Test::Utils::tmp_check/$db.sql");
		PostgreSQL::Test::Utils::append_to_file($fa, $fresh->{dump});
		PostgreSQL::Test::Utils::append_to_file($fb, $up->{dump});
		my ($d) = ('');
		IPC::Run::run([ 'diff', '-u', $fa, $fb ], '>', \$d);
		diag($d);
	}
}

done_testing();
