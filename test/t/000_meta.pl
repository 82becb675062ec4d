# META.json, the PGXN distribution metadata, holds to the PGXN Meta Spec
# 1.0.0 (every key it has is one the spec defines, with a value of the kind
# the spec says; the required ones are there) and agrees with the extension
# it describes: its name and version are the control file's, and the
# version it requires is the oldest PostgreSQL the extension supports.
# No server is needed.
use strict;
use warnings;

use Test::More;
use JSON::PP;
use FindBin;

my $root = "$FindBin::RealBin/../..";
sub slurp { my ($f) = @_; open my $fh, '<', $f or die "$f: $!"; local $/; return <$fh>; }

my $meta = eval { JSON::PP->new->utf8->decode(slurp("$root/META.json")) };
ok($meta, 'META.json is JSON') or BAIL_OUT("META.json: $@");

# --- the spec's value kinds ---------------------------------------------------
my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;
# a term: two characters or more, no slash, backslash or control character
sub is_term { my ($v) = @_; return !ref($v) && length($v) >= 2 && $v !~ m{[/\\\x00-\x1f\x7f]} }
# a tag: 1 to 255 characters, no slash, backslash or control character
sub is_tag { my ($v) = @_; return !ref($v) && length($v) >= 1 && length($v) <= 255 && $v !~ m{[/\\\x00-\x1f\x7f]} }
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd
  gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5
  postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);
# a prerequisite's version: a version, 0 (any), or comparisons joined by commas
my $version_range = qr/^\s*((==|!=|>=|<=|>|<)?\s*\d+(\.\d+){0,2}\S*)(\s*,\s*(==|!=|>=|<=|>|<)?\s*\d+(\.\d+){0,2}\S*)*\s*$/;

my %known = map { $_ => 1 } qw(name version abstract maintainer license provides meta-spec
  description generated_by tags no_index prereqs release_status resources);
my @unknown = grep { !$known{$_} && !/^[xX]_/ } sort keys %$meta;
is_deeply(\@unknown, [], 'every key is one the spec defines (or a custom x_ key)');

for my $k (qw(name version abstract maintainer license provides meta-spec))
{
	ok(exists $meta->{$k}, "the required key $k is there");
}
ok(is_term($meta->{name}), 'name is a term');
like($meta->{version} // '', $semver, 'version is a semantic version');
ok(!ref($meta->{abstract}) && length($meta->{abstract} // '') > 0, 'abstract is a non-empty string');
my @maint = ref($meta->{maintainer}) eq 'ARRAY' ? @{ $meta->{maintainer} } : ($meta->{maintainer});
ok(@maint && !grep({ ref($_) || !length($_ // '') } @maint), 'maintainer is a string or a list of strings');
my $lic = $meta->{license};
ok((!ref($lic) && $licenses{$lic})
	  || (ref($lic) eq 'ARRAY' && @$lic && !grep { ref($_) || !$licenses{$_} } @$lic)
	  || (ref($lic) eq 'HASH' && %$lic && !grep { ref($_) } values %$lic),
	'license is one of the spec\'s license strings, a list of them, or names to URLs');

is(ref($meta->{provides}), 'HASH', 'provides is an object');
for my $ext (sort keys %{ $meta->{provides} // {} })
{
	my $p = $meta->{provides}{$ext};
	ok(is_term($ext), "provides: $ext is a term");
	ok(defined $p->{file} && -f "$root/$p->{file}", "provides: $ext names a file that exists");
	like($p->{version} // '', $semver, "provides: $ext has a semantic version");
	my @extra = grep { !/^(file|version|abstract|docfile|[xX]_.*)$/ } sort keys %$p;
	is_deeply(\@extra, [], "provides: $ext has only the spec's keys");
	ok(!defined $p->{docfile} || -f "$root/$p->{docfile}", "provides: $ext's docfile exists");
}

is($meta->{'meta-spec'}{version}, '1.0.0', 'meta-spec version 1.0.0');
if (exists $meta->{prereqs})
{
	for my $phase (sort keys %{ $meta->{prereqs} })
	{
		ok($phase =~ /^(configure|build|test|runtime|develop)$/, "prereqs: $phase is a phase");
		for my $rel (sort keys %{ $meta->{prereqs}{$phase} })
		{
			ok($rel =~ /^(requires|recommends|suggests|conflicts)$/, "prereqs: $phase.$rel is a relationship");
			while (my ($what, $v) = each %{ $meta->{prereqs}{$phase}{$rel} })
			{
				ok(is_term($what) && !ref($v) && ($v eq '0' || $v =~ $version_range),
					"prereqs: $phase.$rel.$what = $v is a version or a range");
			}
		}
	}
}
ok(!exists $meta->{release_status} || $meta->{release_status} =~ /^(stable|testing|unstable)$/,
	'release_status is stable, testing or unstable');
ok(!exists $meta->{tags} || (ref($meta->{tags}) eq 'ARRAY' && !grep { !is_tag($_) } @{ $meta->{tags} }),
	'tags are tags');
if (exists $meta->{no_index})
{
	my @bad = grep { !/^(file|directory)$/ || ref($meta->{no_index}{$_}) ne 'ARRAY' } keys %{ $meta->{no_index} };
	is_deeply(\@bad, [], 'no_index has lists of files and directories');
}

# --- it describes this extension ---------------------------------------------
my $control = slurp("$root/aloro_webhook.control");
my ($default) = $control =~ /^default_version\s*=\s*'([^']+)'/m;
is($meta->{version}, $default, 'the distribution\'s version is the control file\'s default_version');
is($meta->{provides}{aloro_webhook}{version}, $default, 'so is the extension\'s');
is($meta->{name}, 'aloro_webhook', 'the distribution is named after the extension');
like($meta->{prereqs}{runtime}{requires}{PostgreSQL} // '', qr/^15\.0\.0$/,
	'it requires PostgreSQL 15 or later, the oldest major the extension supports');

done_testing();
