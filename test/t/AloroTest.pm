# AloroTest.pm — shared helpers for the aloro_webhook TAP tests.
#
# A node with the extension preloaded and installed, a local Node.js receiver
# (test/receiver/receiver.js) that logs every request as a JSON line, bounded
# polling, and small SQL helpers for webhooks and calls.
#
# Every webhook a test creates carries a distinct assistant_id (its "tag"),
# and every call a test ends carries the tag of the webhook it is meant for,
# so cases sharing one node never receive each other's deliveries.
package AloroTest;

use strict;
use warnings;

use Cwd ();
use Exporter 'import';
use File::Basename ();
use JSON::PP ();
use POSIX ();
use Socket;
use Test::More;
use Time::HiRes qw(usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(
  aw_node aw_set
  start_receiver stop_receiver receiver_log requests_for wait_for_requests
  poll_until wait_until
  add_webhook end_call end_calls
  query_json query_row delivery attempts deliveries_for_tag
  worker_pid wait_for_worker free_port quote_lit now_epoch
  worker_rss_kb delivery_reaches
);

# Tests run with cwd = tree root (see the Makefile's prove_installcheck).
my $root = Cwd::getcwd();
my $receiver_js = "$root/test/receiver/receiver.js";

my @receivers;    # started by this test file; killed in END

sub quote_lit
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	$v =~ s/'/''/g;
	return "'$v'";
}

sub now_epoch { return Time::HiRes::time(); }

# The settings every test node gets; the caller overrides or adds any.
my %default_conf = (
	shared_preload_libraries       => 'aloro_webhook',
	'aloro_webhook.database_name'  => 'postgres',
	'aloro_webhook.allowed_networks' => '127.0.0.0/8',
	'aloro_webhook.retry_schedule' => '0, 200ms, 200ms, 200ms, 200ms',
	'aloro_webhook.timeout'        => '2s',
	timezone                       => 'UTC',
);

# aw_node($name, conf => {setting => value, ...}, allows_streaming => 0|1,
#         create_extension => 0|1, start => 0|1)
# Creates (and by default starts) a node and installs the extension in db postgres.
sub aw_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => ($opts{allows_streaming} // 0));
	my %conf = (%default_conf, %{ $opts{conf} // {} });
	my $text = '';
	for my $k (sort keys %conf)
	{
		next unless defined $conf{$k};
		$text .= "$k = " . quote_lit($conf{$k}) . "\n";
	}
	$node->append_conf('postgresql.conf', $text);
	return $node if defined $opts{start} && !$opts{start};
	$node->start;
	if ($opts{create_extension} // 1)
	{
		$node->safe_psql('postgres', 'CREATE EXTENSION aloro_webhook');
	}
	return $node;
}

# aw_set($node, setting => value, ...): ALTER SYSTEM SET (undef: RESET) for each
# pair, reload, and wait until a new session sees every changed value.  The
# postmaster signals the worker in the same step, and the worker re-reads its
# settings when that signal wakes it, before it claims anything new.
sub aw_set
{
	my ($node, %set) = @_;
	my %old;
	for my $k (sort keys %set)
	{
		$old{$k} = $node->safe_psql('postgres', "SELECT current_setting(" . quote_lit($k) . ")");
		if (defined $set{$k})
		{
			$node->safe_psql('postgres',
				"ALTER SYSTEM SET $k = " . quote_lit($set{$k}));
		}
		else
		{
			$node->safe_psql('postgres', "ALTER SYSTEM RESET $k");
		}
	}
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	for my $k (sort keys %set)
	{
		# the value as the server prints it, when it prints it the way it was set
		my $want = $set{$k};
		wait_until(
			sub {
				my $now = $node->safe_psql('postgres',
					"SELECT current_setting(" . quote_lit($k) . ")");
				return $now ne $old{$k} || (defined $want && $now eq $want);
			},
			20,
			"setting $k applied");
	}
	return;
}

# A TCP port on 127.0.0.1 with nothing listening (bound, read, released).
sub free_port
{
	socket(my $s, PF_INET, SOCK_STREAM, getprotobyname('tcp')) or die "socket: $!";
	bind($s, sockaddr_in(0, inet_aton('127.0.0.1'))) or die "bind: $!";
	my ($port) = sockaddr_in(getsockname($s));
	close($s);
	return $port;
}

# start_receiver(name => 'r', secret => 'S', port => 0, log => FILE,
#                host => '127.0.0.1', script => 'test/receiver/other.js',
#                no_bodies => 1)
# Returns {name, pid, port, log, secret, url}; url is "http://127.0.0.1:<port>"
# (the host given, IPv6 literals in brackets).  script runs another server
# with the same arguments (--port, --log, --host; --secret when given); lines
# "port NAME N" it prints before "listening N" land in $r->{ports}{NAME}.
sub start_receiver
{
	my (%o) = @_;
	my $name = $o{name} // 'receiver';
	my $port = $o{port} // 0;
	my $log = $o{log} // "$PostgreSQL::Test::Utils::log_path/receiver_$name.jsonl";
	my $out = "$PostgreSQL::Test::Utils::log_path/receiver_$name.out";
	my $js = defined $o{script} ? "$root/$o{script}" : $receiver_js;
	unlink $out;
	my @cmd = ('node', $js, '--port', $port, '--log', $log);
	push @cmd, ('--secret', $o{secret}) if defined $o{secret};
	push @cmd, ('--host', $o{host}) if defined $o{host};
	push @cmd, '--no-bodies' if $o{no_bodies};
	push @cmd, @{ $o{args} } if $o{args};

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $out) or POSIX::_exit(127);
		open(STDERR, '>>', $out) or POSIX::_exit(127);
		open(STDIN, '<', '/dev/null');
		exec(@cmd) or POSIX::_exit(127);
	}
	my $r = { name => $name, pid => $pid, log => $log, secret => $o{secret}, out => $out };
	push @receivers, $r;

	my $deadline = now_epoch() + 20;
	while (1)
	{
		if (-f $out)
		{
			my $text = PostgreSQL::Test::Utils::slurp_file($out);
			if ($text =~ /^listening (\d+)$/m)
			{
				$r->{port} = $1;
				$r->{ports}{$1} = $2 while $text =~ /^port (\w+) (\d+)$/mg;
				last;
			}
		}
		my $w = waitpid($pid, POSIX::WNOHANG());
		if ($w == $pid)
		{
			$r->{pid} = undef;
			my $text = -f $out ? PostgreSQL::Test::Utils::slurp_file($out) : '';
			BAIL_OUT("receiver $name exited at start-up: $text");
		}
		BAIL_OUT("receiver $name did not start within 20 s") if now_epoch() > $deadline;
		usleep(20_000);
	}
	my $host = $o{host} // '127.0.0.1';
	$host = "[$host]" if $host =~ /:/;
	$r->{url} = "http://$host:$r->{port}";
	note "receiver $name listening on $r->{port} (pid $pid)";
	return $r;
}

sub stop_receiver
{
	my ($r) = @_;
	return unless defined $r->{pid};
	kill('TERM', $r->{pid});
	my $deadline = now_epoch() + 10;
	while (waitpid($r->{pid}, POSIX::WNOHANG()) == 0)
	{
		if (now_epoch() > $deadline)
		{
			kill('KILL', $r->{pid});
			waitpid($r->{pid}, 0);
			last;
		}
		usleep(20_000);
	}
	$r->{pid} = undef;
	return;
}

END
{
	my $rc = $?;
	for my $r (@receivers)
	{
		next unless defined $r->{pid};
		kill('KILL', $r->{pid});
		waitpid($r->{pid}, 0);
	}
	$? = $rc;
}

# Every request the receiver logged so far, oldest first, as hashes
# {t, method, path, headers, body, body_sha256, body_bytes, remote_port,
#  sig_raw_ok, sig_stringify_ok, signed}; strings are characters (decoded UTF-8).
sub receiver_log
{
	my ($r) = @_;
	return () unless -f $r->{log};
	open(my $fh, '<', $r->{log}) or die "open $r->{log}: $!";
	my @out;
	while (my $line = <$fh>)
	{
		# a line still being written has no newline yet
		last unless $line =~ /\n\z/;
		push @out, JSON::PP->new->utf8->decode($line);
	}
	close($fh);
	return @out;
}

# The logged requests carrying X-Aloro-Delivery: $id.
sub requests_for
{
	my ($r, $id) = @_;
	return grep { ($_->{headers}{'x-aloro-delivery'} // '') eq "$id" } receiver_log($r);
}

# Waits (bounded) until $cond->(@log) is true; returns the log at that point,
# or the empty list when the deadline passed first.
sub wait_for_requests
{
	my ($r, $cond, $timeout, $what) = @_;
	my @log;
	wait_until(sub { @log = receiver_log($r); $cond->(@log) }, $timeout, $what)
	  or return ();
	return @log;
}

# wait_until(sub { ... }, $timeout_s, $what): polls every 50 ms; returns 1 when
# the sub returns true, 0 (with a diagnostic) when the deadline passes.
sub wait_until
{
	my ($cond, $timeout, $what) = @_;
	my $deadline = now_epoch() + $timeout;
	while (1)
	{
		return 1 if $cond->();
		if (now_epoch() > $deadline)
		{
			diag("timed out after ${timeout}s waiting for " . ($what // 'condition'));
			return 0;
		}
		usleep(50_000);
	}
}

# poll_until($node, $sql, $expected, $timeout_s): $node->poll_query_until with
# its timeout bounded to about $timeout_s; true when $sql printed $expected.
sub poll_until
{
	my ($node, $sql, $expected, $timeout) = @_;
	$timeout //= 60;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout;
	return $node->poll_query_until('postgres', $sql, $expected // 't');
}

# delivery_reaches($node, $id, $status, $timeout_s, $what): a test that delivery
# $id reaches $status within the bound.
sub delivery_reaches
{
	my ($node, $id, $status, $timeout, $what) = @_;
	return ok(poll_until($node,
			"SELECT status FROM aloro_webhook.deliveries WHERE id = $id", $status, $timeout // 60),
		$what);
}

# query_json($node, $sql): the rows of $sql as a list of hashes.
sub query_json
{
	my ($node, $sql) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT coalesce(json_agg(q), '[]') FROM ($sql) q");
	# psql prints UTF-8 bytes; strings come back as characters
	return @{ JSON::PP->new->utf8->decode($out) };
}

sub query_row
{
	my ($node, $sql) = @_;
	my @rows = query_json($node, $sql);
	return $rows[0];
}

sub delivery
{
	my ($node, $id) = @_;
	return query_row($node,
		"SELECT *, extract(epoch FROM finished_at) AS finished_epoch,
		        extract(epoch FROM created_at) AS created_epoch
		   FROM aloro_webhook.deliveries WHERE id = $id");
}

# The attempts of one delivery, by attempt number.
sub attempts
{
	my ($node, $id) = @_;
	return query_json($node,
		"SELECT *, extract(epoch FROM started_at) AS started_epoch
		   FROM aloro_webhook.delivery_attempts WHERE delivery_id = $id ORDER BY attempt");
}

# The deliveries of the webhook(s) tagged $tag, by id.
sub deliveries_for_tag
{
	my ($node, $tag) = @_;
	return query_json($node,
		"SELECT d.* FROM aloro_webhook.deliveries d
		   JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id
		  WHERE w.assistant_id = " . quote_lit($tag) . " ORDER BY d.id");
}

# add_webhook($node, $url, tag => 'case', secret => 'S', %other_columns)
# A webhook that only fires for calls with assistant_id = tag; returns its id.
sub add_webhook
{
	my ($node, $url, %o) = @_;
	die "add_webhook needs a tag" unless defined $o{tag};
	# not logged (log_statement = all in test nodes): a secret in the server
	# log must come from the extension for the tests to notice it
	my $id = $node->safe_psql('postgres',
		"SET log_statement = 'none'; SELECT aloro_webhook.create_webhook(url => " . quote_lit($url)
		  . ", secret => " . quote_lit($o{secret})
		  . ", name => " . quote_lit($o{name} // $o{tag})
		  . ", assistant_id => " . quote_lit($o{tag}) . ")");
	return $id;
}

sub _call_values
{
	my ($id, %cols) = @_;
	my %c = (status => 'completed', %cols, id => $id);
	my @k = sort keys %c;
	return (join(', ', @k), join(', ', map { quote_lit($c{$_}) } @k));
}

# end_call($node, $call_id, tag => 'case', %columns): inserts an ended call
# (status completed unless given) for the webhook tagged 'case'; returns the
# id of the delivery queued for it (undef when none was).
sub end_call
{
	my ($node, $id, %o) = @_;
	my $tag = delete $o{tag};
	$o{assistant_id} //= $tag;
	my ($cols, $vals) = _call_values($id, %o);
	$node->safe_psql('postgres', "INSERT INTO aloro_webhook.calls ($cols) VALUES ($vals)");
	my $d = $node->safe_psql('postgres',
		"SELECT min(id) FROM aloro_webhook.deliveries WHERE call_id = " . quote_lit($id));
	return $d eq '' ? undef : $d;
}

# end_calls($node, $prefix, $n, tag => 'case'): ends $n calls "<prefix>_1".."<prefix>_n"
# in one transaction; returns the ids of the deliveries queued, ascending.
sub end_calls
{
	my ($node, $prefix, $n, %o) = @_;
	my $tag = $o{tag};
	$node->safe_psql('postgres',
		"INSERT INTO aloro_webhook.calls (id, status, assistant_id, ended_at)
		 SELECT " . quote_lit($prefix) . " || '_' || g, 'completed', " . quote_lit($tag) . ", now()
		   FROM generate_series(1, $n) g");
	my $ids = $node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM aloro_webhook.deliveries
		  WHERE call_id LIKE " . quote_lit("${prefix}_%"));
	return split(/,/, $ids);
}

# The pid of the delivery worker, or '' when none runs.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity
		  WHERE backend_type = 'aloro_webhook worker'");
}

# Waits until a worker runs (other than $old_pid when given); returns its pid.
sub wait_for_worker
{
	my ($node, $timeout, $old_pid) = @_;
	my $not = defined $old_pid ? " AND pid <> $old_pid" : '';
	poll_until($node,
		"SELECT count(*) > 0 FROM pg_stat_activity
		  WHERE backend_type = 'aloro_webhook worker'$not", 't', $timeout // 60)
	  or return '';
	return worker_pid($node);
}

# The worker's resident memory in kB (VmRSS), or undef when it cannot be read.
sub worker_rss_kb
{
	my ($node) = @_;
	my $pid = worker_pid($node);
	return undef if $pid eq '';
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (my $l = <$fh>)
	{
		return $1 if $l =~ /^VmRSS:\s+(\d+)\s+kB/;
	}
	return undef;
}

1;
