package BloqrTest;

# Integration-test harness for bloqr-backend: starts a throwaway PostgreSQL,
# the FastCGI pool, nginx or Apache on loopback, each in a private temporary
# directory, and stops all of them when the test ends (even when it dies).
# Core Perl modules only.
#
# Typical use:
#
#   use Test::More;
#   use BloqrTest;
#   my $pg   = pg_start();
#   my $conf = write_conf('http.max_body' => 1000);   # database.url = $pg
#   migrate($conf);
#   my $pool = pool_start($conf, workers => 2);
#   my $web  = nginx_start(upstream => $pool->addr);
#   my $r    = http(GET => "$web->{url}/api/health");
#   is($r->{status}, 200);
#
# Paths: built programs come from $BLOQR_BUILDDIR, conf/ and migrations/ from
# $BLOQR_SRCDIR (both default to the current directory; `make check` sets
# them, also for VPATH builds). BLOQR_KEEP=1 keeps the temporary directory
# (its path is printed). When a test fails, the tails of every log the
# harness knows about (pool, web server, PostgreSQL) are printed via diag.
#
# Tests of the HTTP API add BloqrTest::Api (t/lib/BloqrTest/Api.pm): req()
# with bearer tokens, cookies and source addresses, sql(), users and tokens
# made with the CLI.
#
# `./dev up` uses dev_up() below, so the development stack is started by the
# same code the tests exercise.

use strict;
use warnings;
use Cwd qw(getcwd abs_path);
use Exporter qw(import);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Test::Builder;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
	free_port pg_start write_conf migrate admin pool_start bg_start
	nginx_start apache_start http poll run_cmd log_tail listening
	builddir srcdir program workdir stack host_start json_error_ok within conf_value
	pgbouncer_start
);

# Never talk to a proxy: the servers under test are on loopback.
delete $ENV{$_} for grep { /_proxy$/i } keys %ENV;

my $OWNER = $$;          # END only cleans up in the process that loaded us
my $TMP;                 # the private working directory
my $KEEP = $ENV{BLOQR_KEEP};
my $DEV = 0;             # dev_up(): fixed names in .dev/, nothing removed
my @CLEANUP;             # objects with ->_kill, stopped in reverse order
my %LOGS;                # name => path, printed on failure
my $SEQ = 0;
my $LAST_PG;

# Die of a signal (also a closed stdout: prove stopped, `| head`) only after
# END has stopped every server, so nothing is left running.
for my $sig (qw(INT TERM HUP PIPE)) {
	next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
	$SIG{$sig} = sub { $SIG{PIPE} = 'IGNORE'; exit 128 + 1 };
}

# --- paths ---------------------------------------------------------------

sub builddir { $ENV{BLOQR_BUILDDIR} || getcwd() }

# Whether the programs under test are built with AddressSanitizer (its
# allocator keeps freed memory in quarantine: RSS says nothing then).
sub sanitized {
	my $mk = _slurp(builddir() . '/Makefile') // '';
	return $mk =~ /^(?:SAN_)?CFLAGS[ \t]*=.*-fsanitize=address/m;
}
sub srcdir   { $ENV{BLOQR_SRCDIR}   || getcwd() }

# A built program, e.g. program('cgi-bin/bloqr.fcgi'); dies when not built.
sub program {
	my ($rel) = @_;
	my $p = builddir() . "/$rel";
	die "$p is not built (run make, or set BLOQR_BUILDDIR)\n" unless -x $p;
	return $p;
}

# The private directory everything of this test lives in. Unix socket paths
# are limited to 107 bytes, so a long $TMPDIR is not used.
sub workdir {
	return $TMP if defined $TMP;
	my $base = $ENV{TMPDIR} && length($ENV{TMPDIR}) < 40 && -d $ENV{TMPDIR} ? $ENV{TMPDIR} : '/tmp';
	$TMP = tempdir('bloqr-t-XXXXXX', DIR => $base, CLEANUP => 0);
	chmod 0755, $TMP;    # PostgreSQL runs as nobody when we are root
	return $TMP;
}

# A new directory inside workdir() named after $what.
sub _subdir {
	my ($what) = @_;
	my $d = workdir() . "/$what";
	remove_tree($d) if $DEV && $what ne 'pg';
	$d .= '-' . ++$SEQ if -e $d;
	mkdir $d or die "mkdir $d: $!\n";
	chmod 0755, $d;
	return $d;
}

sub _slurp {
	my ($path) = @_;
	open my $fh, '<', $path or return undef;
	local $/;
	my $s = <$fh>;
	return $s;
}

sub _spew {
	my ($path, $text) = @_;
	open my $fh, '>', $path or die "write $path: $!\n";
	print $fh $text;
	close $fh or die "write $path: $!\n";
}

# The last $n lines of a file, as one string.
sub log_tail {
	my ($path, $n) = @_;
	$n ||= 40;
	my $s = _slurp($path);
	return "($path: not readable)\n" unless defined $s;
	my @l = split /\n/, $s;
	@l = @l[-$n .. -1] if @l > $n;
	return join("\n", @l) . "\n";
}

# --- processes -----------------------------------------------------------

# uid/gid to run PostgreSQL as: nobody when we are root, else ourselves.
sub _unpriv_user { $> == 0 ? 'nobody' : undef }

sub _drop_to {
	my ($user) = @_;
	my ($uid, $gid) = (getpwnam($user))[2, 3];
	defined $uid or die "no user $user\n";
	POSIX::setgid($gid) or die "setgid: $!\n";
	$) = "$gid $gid";
	POSIX::setuid($uid) or die "setuid: $!\n";
	$> == $uid && $< == $uid or die "could not become $user\n";
}

# In a forked child: set up and exec, never return (no END blocks).
sub _child_exec {
	my ($cmd, %o) = @_;
	eval {
		setpgrp(0, 0);
		if ($o{stdin_fh}) {
			open STDIN, '<&', $o{stdin_fh} or die "stdin: $!\n";
			close $o{stdin_fh};
		} else {
			open STDIN, '<', '/dev/null' or die "stdin: $!\n";
		}
		open STDOUT, '>>', $o{out} or die "$o{out}: $!\n" if $o{out};
		open STDERR, '>>', $o{err} or die "$o{err}: $!\n" if $o{err};
		while (my ($k, $v) = each %{ $o{env} || {} }) {
			if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
		}
		_drop_to($o{user}) if $o{user};
		chdir($o{dir} // '/') or die "chdir: $!\n";
		$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
		exec { $cmd->[0] } @$cmd or die "exec $cmd->[0]: $!\n";
	};
	print STDERR "BloqrTest: $@";
	POSIX::_exit(127);
}

# Run a command to completion: { rc, out, err } (rc = exit status, or 128+sig).
# Options: stdin (string, fed through a pipe), env (hashref; undef deletes),
# user, dir, timeout (s, default 120).
sub run_cmd {
	my ($cmd, %o) = @_;
	my $d = workdir();
	my $n = ++$SEQ;
	my ($out, $err) = map { "$d/.run$n.$_" } qw(out err);
	_spew($_, '') for $out, $err;
	pipe(my $rd, my $wr) or die "pipe: $!\n";
	my $pid = fork // die "fork: $!\n";
	if ($pid == 0) {
		close $wr;
		_child_exec($cmd, %o, stdin_fh => $rd, out => $out, err => $err);
	}
	close $rd;
	my $in = $o{stdin} // '';
	$wr->blocking(0);
	local $SIG{PIPE} = 'IGNORE';
	my $deadline = time + ($o{timeout} // 120);
	my $rc;
	while (1) {
		if (defined $wr) {
			my $w = length $in ? syswrite($wr, $in) : 0;
			substr($in, 0, $w, '') if $w;
			if (!length $in || (!defined $w && !$!{EAGAIN})) {
				close $wr;
				undef $wr;
			}
		}
		my $w = waitpid($pid, WNOHANG);
		if ($w == $pid) { $rc = $?; last }
		if (time > $deadline) {
			kill 'KILL', -$pid;
			waitpid($pid, 0);
			die "timed out after " . ($o{timeout} // 120) . " s: @$cmd\n" . log_tail($err, 20);
		}
		sleep 0.01;
	}
	close $wr if defined $wr;
	my %r = (rc => ($rc & 127 ? 128 + ($rc & 127) : $rc >> 8),
		out => _slurp($out), err => _slurp($err));
	unlink $out, $err;
	return \%r;
}

# Start a long-running command in the background, in its own process group,
# stdout and stderr appended to $o{log}. If $o{listen} is given (HOST:PORT or
# unix:/path) wait until something listens there (at most $o{wait} s, default
# 10). Returns a BloqrTest::Proc.
sub bg_start {
	my ($cmd, %o) = @_;
	my $log = $o{log} // workdir() . '/bg-' . ++$SEQ . '.log';
	_spew($log, '') unless -e $log;
	my $pid = fork // die "fork: $!\n";
	_child_exec($cmd, %o, out => $log, err => $log) if $pid == 0;
	my $p = bless { pid => $pid, log => $log, cmd => $cmd, addr => $o{listen},
		name => $o{name} // $cmd->[0] }, 'BloqrTest::Proc';
	push @CLEANUP, $p;
	$LOGS{"$p->{name} ($pid)"} = $log;
	if (defined $o{listen}) {
		my $ok = poll($o{wait} // 10, sub {
			die "$p->{name} exited (status $p->{status}) before listening on $o{listen}:\n"
			    . log_tail($log, 30) unless $p->alive;
			_listening($o{listen});
		});
		die "$p->{name} does not listen on $o{listen} after " . ($o{wait} // 10) . " s:\n"
		    . log_tail($log, 30) unless $ok;
	}
	return $p;
}

# Call $cond every 50 ms until it returns true or $timeout seconds pass;
# returns its last value.
sub poll {
	my ($timeout, $cond, $interval) = @_;
	my $deadline = time + $timeout;
	while (1) {
		my $v = $cond->();
		return $v if $v;
		return $v if time >= $deadline;
		sleep($interval // 0.05);
	}
}

# Like poll, every 100 ms for at most $secs: the seconds it took until
# $cond returned true, or undef when it never did.
sub within {
	my ($secs, $cond) = @_;
	my $t0 = time;
	my $ok = poll($secs, $cond, 0.1);
	return $ok ? time - $t0 : undef;
}

# A TCP port on 127.0.0.1 that was free a moment ago.
sub free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 1, ReuseAddr => 1) or die "bind: $!\n";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# Whether a socket is in LISTEN state at ADDR (HOST:PORT or unix:/path),
# read from /proc so that the server is not disturbed by a probe connection.
sub listening { _listening(@_) }
sub _listening {
	my ($addr) = @_;
	if ($addr =~ m{^unix:(.*)$}) {
		my $path = $1;
		my $t = _slurp('/proc/net/unix');
		return -S $path && IO::Socket::UNIX->new(Peer => $path) ? 1 : 0 unless defined $t;
		for (split /\n/, $t) {
			my @f = split ' ';
			return 1 if @f >= 8 && $f[7] eq $path && hex($f[3]) & 0x10000;
		}
		return 0;
	}
	my ($port) = $addr =~ /:(\d+)$/ or die "bad address $addr\n";
	my $any = 0;
	for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
		my $t = _slurp($f) // next;
		$any = 1;
		for (split /\n/, $t) {
			my @c = split ' ';
			next unless @c > 3 && $c[1] =~ /:([0-9A-F]{4})$/;
			return 1 if hex($1) == $port && $c[3] eq '0A';
		}
	}
	return 0 if $any;
	my ($host) = $addr =~ /^(.*):\d+$/;
	return IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 1) ? 1 : 0;
}

# --- PostgreSQL ----------------------------------------------------------

my $PGBIN;
sub _pgbin {
	my ($tool) = @_;
	unless (defined $PGBIN) {
		$PGBIN = '';
		for (split /:/, $ENV{PATH} // '') {
			if (-x "$_/initdb") { $PGBIN = $_; last }
		}
		unless ($PGBIN) {
			my @d = sort { ($a =~ /(\d+)/)[0] <=> ($b =~ /(\d+)/)[0] }
			    grep { -x "$_/initdb" } glob('/usr/lib/postgresql/*/bin');
			$PGBIN = $d[-1] // die "PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql)\n";
		}
	}
	return -x "$PGBIN/$tool" ? "$PGBIN/$tool" : $tool;
}

# Start a private cluster (socket only, in the work directory) with database
# bloqr owned by superuser bloqr (trust auth). Returns a BloqrTest::Pg.
# Options: dir (reuse an existing cluster in that directory, for ./dev).
sub pg_start {
	my (%o) = @_;
	my $dir = $o{dir} // _subdir('pg');
	my $user = _unpriv_user();
	my $pg = bless { dir => $dir, data => "$dir/data", sock => $dir,
		log => "$dir/postgres.log", user => $user }, 'BloqrTest::Pg';
	if ($user) {
		my ($uid, $gid) = (getpwnam($user))[2, 3];
		chown $uid, $gid, $dir;
	}
	my $fresh = !-e "$pg->{data}/PG_VERSION";
	if ($fresh) {
		my $r = run_cmd([_pgbin('initdb'), '-D', $pg->{data}, '-U', 'bloqr', '-A', 'trust',
			'-E', 'UTF8', '--no-locale', '--no-sync'], user => $user, dir => $dir, timeout => 120);
		die "initdb failed:\n$r->{err}$r->{out}" if $r->{rc};
		open my $fh, '>>', "$pg->{data}/postgresql.conf" or die "$!\n";
		print $fh "\n# added by BloqrTest\n",
		    "listen_addresses = ''\n",
		    "unix_socket_directories = '$dir'\n",
		    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
		    "shared_buffers = 16MB\nmax_connections = 100\n",
		    "log_min_messages = warning\n";
		close $fh;
	}
	$LOGS{"postgres ($dir)"} = $pg->{log};
	push @CLEANUP, $pg;
	$pg->start;
	my $has = $pg->psql("SELECT 1 FROM pg_database WHERE datname = 'bloqr'", db => 'postgres');
	$pg->psql('CREATE DATABASE bloqr', db => 'postgres') unless $has =~ /1/;
	$LAST_PG = $pg;
	return $pg;
}

# --- PgBouncer -----------------------------------------------------------

# Start Debian's PgBouncer in front of a pg_start() cluster, on a free
# loopback port, as the unprivileged user (nobody when we are root), with a
# generated ini in its own directory (log and pid there too). Options: pg
# (default: the last pg_start), mode (pool_mode, default transaction),
# pool_size (server connections per user and database, default 4).
# Returns a BloqrTest::PgBouncer (a BloqrTest::Proc) with port, dir, ini,
# url([user]) (database bloqr through the pooler) and psql($sql).
sub pgbouncer_start {
	my (%o) = @_;
	my $pg = $o{pg} // $LAST_PG // die "pgbouncer_start: no PostgreSQL (pg_start first)\n";
	my $bin = -x '/usr/sbin/pgbouncer' ? '/usr/sbin/pgbouncer' : 'pgbouncer';
	my $dir = _subdir('pgbouncer');
	my $port = free_port();
	my $user = _unpriv_user();
	my $mode = $o{mode} // 'transaction';
	my $size = $o{pool_size} // 4;
	# trust still needs the user names in auth_file.
	_spew("$dir/userlist.txt", qq{"bloqr" ""\n"bloqr_query" ""\n});
	_spew("$dir/pgbouncer.ini", <<"EOF");
; generated by BloqrTest
[databases]
bloqr = host=$pg->{sock} dbname=bloqr

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = $mode
default_pool_size = $size
max_client_conn = 200
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = bloqr
EOF
	if ($user) {
		my ($uid, $gid) = (getpwnam($user))[2, 3];
		chown $uid, $gid, $dir, "$dir/userlist.txt", "$dir/pgbouncer.ini";
	}
	$LOGS{"pgbouncer ($dir)"} = "$dir/pgbouncer.log";
	my $p = bg_start([$bin, "$dir/pgbouncer.ini"], listen => "127.0.0.1:$port",
		name => 'pgbouncer', log => "$dir/stderr.log", dir => $dir, user => $user);
	$p->{port} = $port;
	$p->{dir} = $dir;
	$p->{ini} = "$dir/pgbouncer.ini";
	return bless $p, 'BloqrTest::PgBouncer';
}

# --- configuration and migrations ----------------------------------------

# Write a bloqr.conf made from conf/bloqr.conf.example with values replaced:
# keys are "section.key" => value (undef removes the line, so the built-in
# default applies). Defaults: database.url of the last pg_start(), query_url
# as role bloqr_query, a cache file in the work directory, pool.user empty,
# pool.socket_group www-data when root, cookie_secure false. Returns the file's path.
sub write_conf {
	my (%over) = @_;
	my $example = srcdir() . '/conf/bloqr.conf.example';
	my $text = _slurp($example) // die "cannot read $example\n";
	my $n = ++$SEQ;
	my %set = (
		($LAST_PG ? ('database.url' => $LAST_PG->url,
			'database.query_url' => $LAST_PG->url('bloqr_query')) : ()),
		'cache.path' => workdir() . "/cache-$n.db",
		'pool.user' => '',
		# A unix socket is 0660: nginx's and Apache's workers run as
		# www-data when the tests run as root.
		($> == 0 && getgrnam('www-data') ? ('pool.socket_group' => 'www-data') : ()),
		'pool.listen' => '127.0.0.1:' . free_port(),
		'pool.workers' => 2,
		'http.cookie_secure' => 'false',
		%over,
	);
	my (@out, %done, %last_line_of);
	my $section = '';
	for my $line (split /\n/, $text) {
		if ($line =~ /^\s*\[\s*([^\]]+?)\s*\]/) {
			$section = $1;
		} elsif ($line =~ /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=/ && exists $set{"$section.$1"}) {
			my $k = "$section.$1";
			$done{$k} = 1;
			next unless defined $set{$k};
			$line = "$1 = $set{$k}";
		}
		push @out, $line;
		$last_line_of{$section} = $#out if $section ne '' && $line =~ /\S/ && $line !~ /^\s*[;#]/;
	}
	# Keys the example does not have go at the end of their section.
	for my $k (sort keys %set) {
		next if $done{$k} || !defined $set{$k};
		my ($s, $key) = split /\./, $k, 2;
		if (exists $last_line_of{$s}) {
			my $at = $last_line_of{$s};
			splice @out, $at + 1, 0, "$key = $set{$k}";
			$_ > $at and $_++ for values %last_line_of;
			$last_line_of{$s} = $at + 1;
		} else {
			push @out, '', "[$s]", "$key = $set{$k}";
			$last_line_of{$s} = $#out;
		}
	}
	my $path = workdir() . "/bloqr-$n.conf";
	_spew($path, join("\n", @out) . "\n");
	return $path;
}

# The value of [section] key in an INI file such as write_conf's; dies
# when there is none.
sub conf_value {
	my ($file, $section, $key) = @_;
	open my $fh, '<', $file or die "$file: $!\n";
	my $s = '';
	while (<$fh>) {
		$s = $1 if /^\s*\[\s*([^\]]+?)\s*\]/;
		return $1 if $s eq $section && /^\s*\Q$key\E\s*=\s*(.*?)\s*$/;
	}
	die "$file has no [$section] $key\n";
}

# Run bloqr-admin -c $conf @args: { rc, out, err }. Options as run_cmd.
sub admin {
	my ($conf, $args, %o) = @_;
	return run_cmd([program('src/bloqr-admin'), '-c', $conf, @$args], timeout => 60, %o);
}

# Apply all migrations from the source tree; dies with bloqr-admin's stderr.
sub migrate {
	my ($conf) = @_;
	my $r = admin($conf, ['migrate', '--dir', srcdir() . '/migrations']);
	die "bloqr-admin migrate failed (exit $r->{rc}):\n$r->{err}$r->{out}" if $r->{rc};
	return $r->{out};
}

# --- the FastCGI pool ----------------------------------------------------

# Start cgi-bin/bloqr.fcgi -c $conf --listen ADDR --workers N in the
# background; waits until ADDR listens (10 s). Options: workers (2),
# listen (127.0.0.1:<free port>), args (extra arguments), env, log.
sub pool_start {
	my ($conf, %o) = @_;
	my $listen = $o{listen} // '127.0.0.1:' . free_port();
	my $n = ++$SEQ;
	my $p = bg_start([program('cgi-bin/bloqr.fcgi'), '-c', $conf, '--listen', $listen,
		'--workers', $o{workers} // 2, @{ $o{args} || [] }],
		listen => $listen, name => 'pool', env => $o{env},
		log => $o{log} // workdir() . "/pool-$n.log", dir => workdir());
	$p->{conf} = $conf;
	return $p;
}

# --- web servers ---------------------------------------------------------

# Replace every $from in $text by $to; die naming $file when there is none.
sub _subst {
	my ($text, $from, $to, $file) = @_;
	my $n = ($text =~ s/\Q$from\E/$to/g);
	die "$file does not contain $from (the harness substitutes it)\n" unless $n;
	return $text;
}

# nginx from conf/nginx.conf.example with its listen port and fastcgi_pass
# address replaced. Options: upstream (required: HOST:PORT or unix:/path),
# port, example (another file of conf/, e.g. nginx-dashboard.conf.example),
# root (replaces the dashboard example's root directory). Returns a
# BloqrTest::Proc with port and url.
sub nginx_start {
	my (%o) = @_;
	my $up = $o{upstream} // die "nginx_start: upstream required\n";
	my $port = $o{port} // free_port();
	my $dir = _subdir('nginx');
	my $example = srcdir() . '/conf/' . ($o{example} // 'nginx.conf.example');
	my $server = _slurp($example) // die "cannot read $example\n";
	$server = _subst($server, '127.0.0.1:8080', "127.0.0.1:$port", $example);
	$server = _subst($server, '127.0.0.1:9000', $up, $example);
	$server = _subst($server, 'root /var/www/bloqr-dashboard;', "root $o{root};", $example)
	    if defined $o{root};
	$server =~ s{/var/log/nginx/}{$dir/}g;
	_spew("$dir/bloqr-server.conf", $server);
	# Relative includes (fastcgi_params) are resolved next to the main file.
	for my $f (qw(fastcgi_params mime.types)) {
		_spew("$dir/$f", _slurp("/etc/nginx/$f") // die "cannot read /etc/nginx/$f\n");
	}
	my $user = $> == 0 ? "user www-data www-data;\n" : '';
	_spew("$dir/nginx.conf", <<"EOF");
# generated by BloqrTest
${user}worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log notice;
events { worker_connections 256; }
http {
    include $dir/mime.types;
    default_type application/octet-stream;
    access_log $dir/access.log;
    client_body_temp_path $dir/client_body;
    fastcgi_temp_path $dir/fastcgi;
    proxy_temp_path $dir/proxy;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/bloqr-server.conf;
}
EOF
	my $bin = -x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx';
	$LOGS{"nginx error.log ($dir)"} = "$dir/error.log";
	my $p = bg_start([$bin, '-c', "$dir/nginx.conf", '-p', "$dir/", '-e', "$dir/error.log"],
		listen => "127.0.0.1:$port", name => 'nginx', log => "$dir/stderr.log", dir => $dir);
	$p->{port} = $port;
	$p->{url} = "http://127.0.0.1:$port";
	$p->{dir} = $dir;
	return $p;
}

# conf/apache.conf.example with its two addresses replaced.
sub _example_vhost {
	my ($up, $port, $dir) = @_;
	defined $up or die "apache_start: upstream required\n";
	my $example = srcdir() . '/conf/apache.conf.example';
	my $vhost = _slurp($example) // die "cannot read $example\n";
	$vhost = _subst($vhost, '127.0.0.1:8081', "127.0.0.1:$port", $example);
	if ($up =~ m{^unix:(.*)$}) {
		$vhost = _subst($vhost, 'fcgi://127.0.0.1:9000', "unix:$1|fcgi://localhost", $example);
	} else {
		$vhost = _subst($vhost, '127.0.0.1:9000', $up, $example);
	}
	$vhost =~ s{\$\{APACHE_LOG_DIR\}/}{$dir/}g;
	return $vhost;
}

# Apache (mod_proxy_fcgi) from conf/apache.conf.example, likewise.
# Options: upstream, port, modules (extra module names, e.g. ['fcgid']),
# vhost (a code ref given the port and the server's directory, returning
# the virtual host's text to use instead of the example's; upstream is
# then not needed).
sub apache_start {
	my (%o) = @_;
	my $port = $o{port} // free_port();
	my $dir = _subdir('apache');
	mkdir "$dir/run";
	my $vhost = $o{vhost} ? $o{vhost}->($port, $dir) : _example_vhost($o{upstream}, $port, $dir);
	_spew("$dir/bloqr-vhost.conf", $vhost);

	my $moddir = '/usr/lib/apache2/modules';
	my $bin = -x '/usr/sbin/apache2' ? '/usr/sbin/apache2' : 'apache2';
	my $builtin = run_cmd([$bin, '-l'])->{out} // '';
	my $load = '';
	for my $m (qw(mpm_event unixd authz_core authz_host proxy proxy_fcgi setenvif
	    headers mime log_config env alias unique_id), @{ $o{modules} || [] }) {
		next if $builtin =~ /\bmod_$m\.c\b/ || !-e "$moddir/mod_$m.so";
		$load .= "LoadModule ${m}_module $moddir/mod_$m.so\n";
	}
	my $user = $> == 0 ? "User www-data\nGroup www-data\n" : '';
	_spew("$dir/httpd.conf", <<"EOF");
# generated by BloqrTest
ServerRoot "$dir"
ServerName 127.0.0.1
PidFile $dir/httpd.pid
ErrorLog $dir/error.log
LogLevel warn
DefaultRuntimeDir $dir/run
Mutex file:$dir/run default
$load$user
StartServers 1
ServerLimit 2
ThreadsPerChild 25
MaxRequestWorkers 50
MinSpareThreads 5
MaxSpareThreads 50
TypesConfig /etc/mime.types
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined
CustomLog $dir/access.log common
Include $dir/bloqr-vhost.conf
EOF
	$LOGS{"apache error.log ($dir)"} = "$dir/error.log";
	my $p = bg_start([$bin, '-d', $dir, '-f', "$dir/httpd.conf", '-DFOREGROUND'],
		listen => "127.0.0.1:$port", name => 'apache', log => "$dir/stderr.log", dir => $dir);
	$p->{port} = $port;
	$p->{url} = "http://127.0.0.1:$port";
	$p->{dir} = $dir;
	return $p;
}

# --- HTTP ----------------------------------------------------------------

# One request: { status, reason, headers (lower-case names), content, json }.
# json is the decoded body when the response is application/json and parses.
# Options: headers => {...}, body => bytes, timeout (15), from (source
# address, e.g. 127.0.0.7, so that per-address limits can be kept apart).
sub http {
	my ($method, $url, %o) = @_;
	my $ua = HTTP::Tiny->new(timeout => $o{timeout} // 15, proxy => undef,
		http_proxy => undef, https_proxy => undef, all_proxy => undef,
		keep_alive => 0, agent => 'BloqrTest/1',
		(defined $o{from} ? (local_address => $o{from}) : ()));
	my %args = (headers => $o{headers} || {});
	$args{content} = $o{body} if defined $o{body};
	my $r = $ua->request($method, $url, \%args);
	my %res = (status => $r->{status}, reason => $r->{reason},
		headers => $r->{headers} || {}, content => $r->{content} // '');
	my $ct = $res{headers}{'content-type'} // '';
	if ($ct =~ m{^application/json}i) {
		$res{json} = eval { JSON::PP->new->utf8->allow_nonref->decode($res{content}) };
	}
	return \%res;
}

# What an error body must never contain: pieces of the server's internals,
# as opposed to words that merely name things (a request field called
# "sql", "only statements that return rows"). Case-insensitive, except
# where (?-i) says otherwise.
our $LEAK_RE = qr{
	# SQL statement text
	  \bSELECT\s.{0,200}?\bFROM\s
	| \bINSERT\s+INTO\b | \bUPDATE\s+\w+\s+SET\b | \bDELETE\s+FROM\b
	| \bON\s+CONFLICT\b | \bRETURNING\s+[\w*]
	# PostgreSQL's error reports as libpq formats them, and SQLSTATE codes
	| (?-i:\b(?:ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|STATEMENT|LINE\s\d+):\s)
	| SQLSTATE | (?-i:\b[0-9A-Z]{2}P[0-9]{2}\b)
	| (?-i:\b(?:0800[0136]|2200[1378]|2350[2-5]|23514|2500[16]|40001|4250[12]|42601|4270[34]|42804|42883|53300|57014)\b)
	| could\s+not\s+connect\s+to\s+server | connection\s+to\s+server\s+(?:at|on\s+socket)
	| server\s+closed\s+the\s+connection | \.s\.PGSQL\.\d+
	# connection strings
	| postgres(?:ql)?:// | \b(?:host|hostaddr|dbname|password|sslmode)=
	# library internals
	| libpq | (?-i:\bPQ[a-z]\w+) | sqlite3?_\w | database\s+is\s+locked | no\s+such\s+(?:table|column)
	| file\s+is\s+not\s+a\s+database | database\s+disk\s+image\s+is\s+malformed
	# source positions, file system paths, addresses
	| \w\.[ch]:\d | \b\w+\.c:\s | /src/ | /tmp/ | /var/ | /etc/ | /usr/ | /home/ | /root/ | /proc/
	| \b0x[0-9a-f]{8,}\b
}xi;

# PostgreSQL's own messages about a statement. Internals everywhere except
# in the query console, which shows them for the caller's own statement
# (json_error_ok(..., pg_message => 1)).
our $PG_MESSAGE_RE = qr{
	  syntax\s+error\s+at\s+or\s+near
	| \b(?:relation|column|function|type|schema)\s+\\?"[^"\\]*\\?"\s+does\s+not\s+exist
	| violates\s+(?:unique|foreign\s+key|check|not-null|exclusion)\s+constraint
	| duplicate\s+key\s+value | current\s+transaction\s+is\s+aborted
}xi;

# Test that $r is an error answer: status $code, application/json,
# {"success": false, "error": "<non-empty>"} (matching $re when given),
# an X-Request-Id, and no internal detail ($LEAK_RE: SQL text, PostgreSQL's
# error reports and SQLSTATE codes, connection strings, source positions,
# paths; and $PG_MESSAGE_RE unless pg_message => 1).
sub json_error_ok {
	my ($r, $code, $re, $name, %opt) = @_;
	my $tb = Test::Builder->new;
	my @why;
	push @why, "status $r->{status}, expected $code" if $r->{status} != $code;
	push @why, "Content-Type is " . ($r->{headers}{'content-type'} // 'missing')
	    if ($r->{headers}{'content-type'} // '') !~ m{^application/json}i;
	my $j = $r->{json};
	if (ref $j ne 'HASH') {
		push @why, 'body is not a JSON object';
	} else {
		push @why, '"success" is not false'
		    unless exists $j->{success} && JSON::PP::is_bool($j->{success}) && !$j->{success};
		push @why, '"error" is not a non-empty string'
		    unless defined $j->{error} && !ref $j->{error} && length $j->{error};
		push @why, "error \"$j->{error}\" does not match $re"
		    if $re && defined $j->{error} && $j->{error} !~ $re;
		push @why, '"message" is not the same text as "error"'
		    unless defined $j->{message} && defined $j->{error} && $j->{message} eq $j->{error};
	}
	push @why, 'no X-Request-Id' unless length($r->{headers}{'x-request-id'} // '');
	push @why, 'no X-Content-Type-Options: nosniff'
	    unless ($r->{headers}{'x-content-type-options'} // '') eq 'nosniff';
	for my $leak ($LEAK_RE, $opt{pg_message} ? () : $PG_MESSAGE_RE) {
		push @why, "body reveals internals: '$1'" if $r->{content} =~ /($leak)/;
	}
	my $ok = $tb->ok(!@why, $name // "$code JSON error");
	$tb->diag(join("\n", @why) . "\nbody: " . substr($r->{content}, 0, 500)) unless $ok;
	return $ok;
}

# The usual stack for one test: PostgreSQL, a conf (conf => {overrides}),
# migrations, and a host_start (options workers, web). Returns a hash:
# { pg, conf, pool, web, url } (url = the web server's base URL).
sub stack {
	my (%o) = @_;
	my $pg = pg_start();
	my $conf = write_conf(%{ $o{conf} || {} });
	migrate($conf);
	return { pg => $pg, conf => $conf, %{ host_start($conf, %o) } };
}

# One host for a conf whose database is ready: the pool (workers => N,
# default 2) behind a web server (web => 'nginx' (default), 'apache' or
# 'none'). Returns { pool, web, url } (url = the web server's base URL).
sub host_start {
	my ($conf, %o) = @_;
	my $pool = pool_start($conf, workers => $o{workers} // 2);
	my $kind = $o{web} // 'nginx';
	my $web = $kind eq 'nginx' ? nginx_start(upstream => $pool->addr)
	    : $kind eq 'apache' ? apache_start(upstream => $pool->addr) : undef;
	return { pool => $pool, web => $web, url => $web ? $web->{url} : undef };
}

# --- cleanup -------------------------------------------------------------

END {
	if (defined $TMP && $$ == $OWNER) {
		my $status = $?;
		my $failed = $status != 0;
		if (!$failed && $INC{'Test/Builder.pm'}) {
			my $tb = Test::Builder->new;
			$failed = !$tb->is_passing;
		}
		if ($failed && %LOGS) {
			my $say = $INC{'Test/Builder.pm'} ? sub { Test::Builder->new->diag(@_) }
			    : sub { print STDERR @_ };
			for my $name (sort keys %LOGS) {
				next unless -s $LOGS{$name};
				$say->("---- last lines of $name: $LOGS{$name}\n" . log_tail($LOGS{$name}, 30));
			}
		}
		for my $obj (reverse @CLEANUP) {
			eval { $obj->_kill; 1 } or print STDERR "BloqrTest cleanup: $@";
		}
		if ($DEV) {
			# ./dev up keeps its state
		} elsif ($KEEP) {
			print STDERR "BloqrTest: kept $TMP\n";
		} else {
			remove_tree($TMP);
		}
		$? = $status;
	}
}

# --- development stack (./dev up) ----------------------------------------

# Start PostgreSQL (kept in $dir/pg), write $dir/bloqr.conf, migrate, run
# the hook command (with the conf path appended), start the pool and nginx,
# print where things are, then wait until SIGINT/SIGTERM and stop it all.
# Options: dir, hook (arrayref), port (preferred nginx port).
# ./dev up: options dir, port, hook (run after migrate), dashboard (a built
# dashboard's directory, served from the same origin).
sub dev_up {
	my (%o) = @_;
	my $dir = abs_path($o{dir} // '.dev');
	-d $dir or mkdir $dir or die "mkdir $dir: $!\n";
	chmod 0755, $dir;
	$TMP = $dir;
	$DEV = 1;
	# PostgreSQL runs as nobody when we are root, and its socket path must
	# stay short: when .dev/ is not reachable for nobody (a checkout under
	# /root) or too deep, the cluster lives under /tmp instead.
	my $pgdir = "$dir/pg";
	my $reach = !_unpriv_user()
	    || !run_cmd(['/bin/sh', '-c', 'cd "$1"', 'sh', $dir], user => _unpriv_user())->{rc};
	if (!$reach || length($pgdir) > 80) {
		require Digest::MD5;
		$pgdir = "/tmp/bloqr-dev-" . substr(Digest::MD5::md5_hex($dir), 0, 8);
		print "PostgreSQL data in $pgdir ($dir is not usable for it)\n";
	}
	-d $pgdir or mkdir $pgdir or die "mkdir $pgdir: $!\n";
	chmod 0755, $pgdir;
	my $pg = pg_start(dir => $pgdir);
	my $conf = "$dir/bloqr.conf";
	my $tmp = write_conf('cache.path' => "$dir/cache.db", 'pool.workers' => 2);
	rename $tmp, $conf or die "rename $tmp: $!\n";
	print migrate($conf);
	my $port = $o{port} && !_listening("127.0.0.1:$o{port}") ? $o{port} : free_port();
	if ($o{hook} && @{ $o{hook} }) {
		my $r = run_cmd([@{ $o{hook} }, $conf], dir => getcwd(), timeout => 300,
			env => { BLOQR_CONF => $conf, BLOQR_DATABASE_URL_DEV => $pg->url,
				BLOQR_DEV_URL => "http://127.0.0.1:$port" });
		print $r->{out} // '';
		print STDERR $r->{err} // '';
		die "after_migrate hook failed (exit $r->{rc})\n" if $r->{rc};
	}
	my $pool = pool_start($conf, workers => 2, log => "$dir/pool.log");
	my $dash = defined $o{dashboard} && length $o{dashboard} ? $o{dashboard} : undef;
	my $web = nginx_start(upstream => $pool->addr, port => $port,
		$dash ? (example => 'nginx-dashboard.conf.example', root => $dash) : ());
	print "the dashboard (files in $dash): $web->{url}/\n" if $dash;
	print "bloqr-backend is up: $web->{url}/api/health\n",
	    "  config:     $conf\n",
	    "  pool log:   $pool->{log} (FastCGI at ", $pool->addr, ")\n",
	    "  nginx logs: $web->{dir}/error.log, $web->{dir}/access.log\n",
	    "  PostgreSQL: ", $pg->url, " (log $pg->{log})\n",
	    "Press Ctrl-C to stop.\n";
	my $stop = 0;
	local $SIG{INT} = local $SIG{TERM} = sub { $stop = 1 };
	until ($stop) {
		sleep 0.5;
		for my $p ($pool, $web) {
			next if $p->alive;
			print STDERR "$p->{name} exited (status $p->{status}); see $p->{log}\n";
			$stop = 1;
		}
	}
	print "stopping...\n";
	$web->stop;
	$pool->stop;
	$pg->stop;
	@CLEANUP = ();
	print "stopped.\n";
	return 0;
}

# =========================================================================
package BloqrTest::Proc;

use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

sub pid  { $_[0]{pid} }
sub addr { $_[0]{addr} }
sub log  { $_[0]{log} }
sub log_text { BloqrTest::_slurp($_[0]{log}) // '' }

# Whether the process is still running (reaps it when it has exited; then
# $self->{status} holds its wait status).
sub alive {
	my ($self) = @_;
	return 0 if defined $self->{status};
	my $w = waitpid($self->{pid}, WNOHANG);
	if ($w == $self->{pid} || $w < 0) {
		$self->{status} = $w < 0 ? -1 : $?;
		return 0;
	}
	return 1;
}

sub signal {
	my ($self, $sig) = @_;
	return kill $sig, $self->{pid};
}

# Send SIGTERM and wait up to $timeout s (default 15) for the process to
# exit; then SIGKILL its whole process group. Returns the seconds it took
# to exit by itself, or undef when it had to be killed.
sub stop {
	my ($self, $timeout) = @_;
	return 0 unless $self->alive;
	my $t0 = time;
	kill 'TERM', $self->{pid};
	my $gone = BloqrTest::poll($timeout // 15, sub { !$self->alive });
	my $took = time - $t0;
	kill 'KILL', -$self->{pid};
	unless ($gone) {
		waitpid($self->{pid}, 0);
		$self->{status} //= $?;
		return undef;
	}
	return $took;
}

sub _kill {
	my ($self) = @_;
	if ($self->alive) {
		kill 'TERM', -$self->{pid};
		BloqrTest::poll(5, sub { !$self->alive });
	}
	kill 'KILL', -$self->{pid};    # leftovers in the group (workers)
	$self->alive and waitpid($self->{pid}, 0);
}

# Pids of the processes whose parent is this one, read from /proc.
sub child_pids {
	my ($self) = @_;
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		my $s = BloqrTest::_slurp($stat) // next;
		# pid (comm) state ppid ...: comm may hold spaces and parentheses
		next unless $s =~ /^(\d+) \(.*\) \S+ (\d+) /s;
		push @kids, $1 if $2 == $self->{pid};
	}
	return sort { $a <=> $b } @kids;
}

# The pool's workers: its children except a cache syncer (a child whose
# process name or command line contains "sync").
sub worker_pids {
	my ($self) = @_;
	return grep {
		my $name = (BloqrTest::_slurp("/proc/$_/comm") // '') . ' '
		    . (BloqrTest::_slurp("/proc/$_/cmdline") // '');
		$name !~ /sync/i;
	} $self->child_pids;
}

# =========================================================================
package BloqrTest::PgBouncer;

our @ISA = ('BloqrTest::Proc');

# A URL for database bloqr through the pooler (as role bloqr, or $user).
sub url {
	my ($self, $user) = @_;
	return "postgresql://" . ($user // 'bloqr') . "\@127.0.0.1:$self->{port}/bloqr";
}

# Run SQL with psql -XAtq through the pooler; returns the output; dies on
# error. Each call is a new client of the pooler.
sub psql {
	my ($self, $sql, %o) = @_;
	my $r = BloqrTest::run_cmd([BloqrTest::_pgbin('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $self->url($o{user}), '-c', $sql], timeout => 60);
	die "psql (through pgbouncer) failed: $r->{err}" if $r->{rc};
	return $r->{out};
}

# =========================================================================
package BloqrTest::Pg;

sub url {
	my ($self, $user) = @_;
	return "postgresql:///bloqr?host=$self->{sock}&user=" . ($user // 'bloqr');
}

sub _ctl {
	my ($self, @args) = @_;
	return BloqrTest::run_cmd([BloqrTest::_pgbin('pg_ctl'), '-D', $self->{data}, @args],
		user => $self->{user}, dir => $self->{dir}, timeout => 90);
}

sub start {
	my ($self) = @_;
	my $r = $self->_ctl('-l', $self->{log}, '-w', '-t', '60', 'start');
	die "pg_ctl start failed:\n$r->{err}$r->{out}" . BloqrTest::log_tail($self->{log}, 20) if $r->{rc};
	$self->{running} = 1;
	return 1;
}

sub stop {
	my ($self, $mode) = @_;
	my $r = $self->_ctl('-m', $mode // 'fast', '-w', '-t', '60', 'stop');
	die "pg_ctl stop failed:\n$r->{err}$r->{out}" if $r->{rc};
	$self->{running} = 0;
	return 1;
}

sub _kill {
	my ($self) = @_;
	return unless -e "$self->{data}/postmaster.pid";
	my $r = $self->_ctl('-m', 'immediate', '-w', '-t', '20', 'stop');
	if ($r->{rc} && open my $fh, '<', "$self->{data}/postmaster.pid") {
		my $pid = <$fh>;
		chomp $pid if defined $pid;
		kill 'KILL', $pid if $pid && $pid =~ /^\d+$/;
	}
}

# Run SQL with psql -XAtq against database bloqr (or db => NAME) as role
# bloqr; returns the output; dies on error.
sub psql {
	my ($self, $sql, %o) = @_;
	my $url = $self->url($o{user});
	$url =~ s{///bloqr\?}{///$o{db}?} if $o{db};
	my $r = BloqrTest::run_cmd([BloqrTest::_pgbin('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $url, '-c', $sql], timeout => 60);
	die "psql failed: $r->{err}" if $r->{rc};
	return $r->{out};
}

1;
