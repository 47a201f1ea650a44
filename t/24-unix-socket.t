#!/usr/bin/perl
# The pool's unix socket: created with [pool] socket_mode (default 0660)
# and socket_group from the start (umask around bind, not a chmod after it:
# it was 0666), and refused in a directory that others can write, where
# someone could put a socket of their own in its place.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $pg = pg_start();
my $conf = write_conf('cache.path' => '');
migrate($conf);

sub mode { sprintf '%04o', (stat $_[0])[2] & 07777 }

my $dir = workdir() . '/sock';
mkdir $dir or die "mkdir: $!";
chmod 0755, $dir;

subtest 'default: 0660' => sub {
	my $sock = "$dir/a.sock";
	my $p = pool_start($conf, workers => 1, listen => "unix:$sock");
	ok(-S $sock, 'socket made');
	is(mode($sock), '0660', 'mode 0660');
	is((stat $sock)[4], $>, 'owned by the user that started the pool');
	if ($> == 0) {
		is((stat $sock)[5], scalar getgrnam('www-data'), 'group: [pool] socket_group');
		my $web = nginx_start(upstream => "unix:$sock");
		is(http(GET => "$web->{url}/api/health")->{status}, 200, 'nginx (www-data) connects');
		$web->stop;
	}
	$p->stop;
};

subtest 'socket_mode = 0600, socket_group = the starting group' => sub {
	my $g = (split ' ', $))[0];
	my $c = write_conf('cache.path' => '', 'pool.socket_mode' => '0600',
		'pool.socket_group' => scalar getgrgid($g));
	my $sock = "$dir/b.sock";
	my $p = pool_start($c, workers => 1, listen => "unix:$sock");
	is(mode($sock), '0600', 'mode 0600');
	is((stat $sock)[5], $g, 'group as configured');
	$p->stop;
};

subtest 'a group the socket is born with (as root, no chown by path)' => sub {
	plan skip_all => 'needs root' if $> != 0;
	my $c = write_conf('cache.path' => '', 'pool.socket_group' => 'nogroup', 'pool.socket_mode' => '0640');
	my $sock = "$dir/c.sock";
	my $p = pool_start($c, workers => 1, listen => "unix:$sock");
	is((stat $sock)[5], scalar getgrnam('nogroup'), 'group nogroup');
	is(mode($sock), '0640', 'mode 0640');
	is((split ' ', (`ps -o egid= -p ${\ $p->pid}`)[0])[0] // '', '0', 'the master is back in its own group');
	$p->stop;
};

subtest 'refused in a directory others can write' => sub {
	for my $m (0777, 01777, 0757) {
		my $d = workdir() . sprintf('/open-%o', $m);
		mkdir $d;
		chmod $m, $d;
		my $r = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $conf, '--listen', "unix:$d/x.sock",
			'--workers', 1], timeout => 10);
		isnt($r->{rc}, 0, sprintf('directory mode %04o: the pool does not start', $m));
		like($r->{err}, qr/writable by others/, '  and says why') or diag $r->{err};
		ok(!-e "$d/x.sock", '  no socket made');
	}
	SKIP: {
		skip 'needs root to make a directory of another user', 2 if $> != 0;
		my $d = workdir() . '/theirs';
		mkdir $d;
		chmod 0755, $d;
		chown scalar(getpwnam('nobody')), -1, $d;
		my $r = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $conf, '--listen', "unix:$d/x.sock",
			'--workers', 1], timeout => 10);
		isnt($r->{rc}, 0, "a directory of another user: refused");
		like($r->{err}, qr/belongs to another user/, '  and says why') or diag $r->{err};
	}
};

subtest 'a bad socket_group or socket_mode stops it at start' => sub {
	my $c = write_conf('cache.path' => '', 'pool.socket_group' => 'no-such-group-t24');
	my $r = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $c, '--listen', "unix:$dir/d.sock"], timeout => 10);
	isnt($r->{rc}, 0, 'unknown group: exit non-zero');
	like($r->{err}, qr/socket_group/, '  naming the key');
	$c = write_conf('cache.path' => '', 'pool.socket_mode' => 'rw');
	$r = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $c, '--listen', "unix:$dir/d.sock"], timeout => 10);
	isnt($r->{rc}, 0, 'socket_mode rw: exit non-zero');
	like($r->{err}, qr/socket_mode/, '  naming the key');
};

done_testing;
