#!/usr/bin/perl
# Started as root with [pool] user = nobody: the master binds and stays
# root, every worker and the syncer run as nobody (and cannot get root
# back: the pool checks, a worker that could would refuse to run), the cache
# file belongs to that user, the unix socket to root and the web server's
# group, and requests are served.
use strict;
use warnings;
use Test::More;
use BloqrTest;

plan skip_all => 'needs root (dropping privileges)' if $> != 0;
my ($uid, $gid) = (getpwnam('nobody'))[2, 3];
plan skip_all => 'no user nobody' unless defined $uid;

my $pg = pg_start();
my $dir = workdir() . '/drop';
mkdir $dir or die "mkdir $dir: $!";
chown $uid, $gid, $dir;
chmod 0755, $dir;
my $sock = "$dir/pool.sock";
my $conf = write_conf('pool.user' => 'nobody', 'cache.path' => "$dir/cache.db");
migrate($conf);
is((stat "$dir/cache.db")[4], $uid, 'migrate gave the new cache file to the pool user');

my $pool = pool_start($conf, workers => 2, listen => "unix:$sock");
my $web = nginx_start(upstream => "unix:$sock");

sub ids {
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return;
	my ($u, $g);
	while (<$fh>) {
		$u = [split ' ', $1] if /^Uid:\s+(.*)/;
		$g = [split ' ', $1] if /^Gid:\s+(.*)/;
	}
	return ($u, $g);
}

my ($mu) = ids($pool->pid);
is($mu->[0], 0, 'the master stays root');
my @kids;
poll(5, sub { @kids = $pool->child_pids; @kids >= 3 });
cmp_ok(scalar @kids, '>=', 3, 'two workers and the syncer') or diag "children: @kids";
for my $k (@kids) {
	my ($u, $g) = ids($k);
	is_deeply($u, [($uid) x 4], "child $k: real, effective, saved and fs uid are nobody's");
	is($g->[0], $gid, "child $k: gid is nobody's group");
}
my @st = stat $sock;
is($st[4], 0, 'the unix socket was made by the master (root), never chowned after bind');
is($st[5], scalar getgrnam('www-data'), 'in [pool] socket_group (www-data)');
is(sprintf('%04o', $st[2] & 07777), '0660', 'mode 0660');

my $r = http(GET => "$web->{url}/api/health");
is($r->{status}, 200, 'health through nginx') or diag explain $r;
is($r->{json}{services}{cache}{status}, 'healthy', 'the workers can use the cache file')
    or diag explain $r->{json};
$r = http(GET => "$web->{url}/api/deployments");
is($r->{status}, 200, 'a cached read works');

done_testing();
