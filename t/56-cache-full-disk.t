#!/usr/bin/perl
# The cache file on a full disk (issue 12): answers stay right (from
# PostgreSQL), /api/health says the cache is degraded while its writes
# fail, the processes back off instead of retrying and logging in a loop,
# and all is well again once there is room. The cache lives on a small
# tmpfs filled up by the test (needs root and mount; skipped otherwise).
# PostgreSQL, the pool (2 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

plan skip_all => 'needs root to mount a tmpfs' unless $> == 0;
my $MNT = tempdir('bloqr-t56-XXXXXX', TMPDIR => 1);
plan skip_all => 'cannot mount a tmpfs here'
    unless system('mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', $MNT) == 0;
END { system('umount', '-l', $MNT) if defined $MNT; rmdir $MNT if defined $MNT }

my $S = stack(workers => 2, conf => { 'cache.path' => "$MNT/cache.db" });
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);
mkuser('admin@t56.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t56.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

sub cache_health {
	my $r = req(GET => '/api/health', bearer => undef);
	return ref $r->{json} eq 'HASH' ? $r->{json}{services}{cache}{status} // '' : '';
}
my $PAD = 'y' x 100_000;
sub put_big {
	my ($k) = @_;
	return req(PUT => "/api/storage/$k", json => { data => { k => $k, pad => $PAD } });
}

my $r = put_big('before');
ok($r->{status} == 200 || $r->{status} == 201, 'PUT before the disk is full') or diag show($r);
is(cache_health(), 'healthy', 'the cache is healthy with room on its disk');

# Fill the file system to the last block.
{
	open my $fh, '>', "$MNT/filler" or die "$MNT/filler: $!\n";
	my $block = "\0" x 65536;
	1 while syswrite($fh, $block);
	my $small = "\0" x 512;
	1 while syswrite($fh, $small);
	close $fh;
}

# Writes that need new pages of the file now fail; PostgreSQL still takes
# them and answers every read.
for my $n (1 .. 5) {
	$r = put_big("full$n");
	ok($r->{status} == 200 || $r->{status} == 201, "PUT full$n on a full disk") or diag show($r);
}
for my $k ('before', 'full1', 'full5') {
	$r = req(GET => "/api/storage/$k");
	is($r->{status}, 200, "GET $k on a full disk");
	is($r->{json}{entry}{data}{k}, $k, "... its data") or diag show($r);
}
is(cache_health(), 'degraded', '/api/health: the cache is degraded while its writes fail');

# No loop: over 5 s of a full disk (with a write and a read every 0.5 s),
# the pool's log grows by a bounded number of lines.
sub cache_errors {
	my $r = req(GET => '/metrics', bearer => undef);
	my $n = 0;
	$n += $1 while ($r->{content} // '') =~ /^bloqr_cache_errors_total\{[^}]*\} (\d+)$/mg;
	return $n;
}
my $log = $S->{pool}->log;
my $lines0 = () = ($S->{pool}->log_text =~ /\n/g);
my $errors0 = cache_errors();
for my $n (1 .. 10) {
	put_big("loop$n");
	req(GET => "/api/storage/loop$n");
	sleep 0.5;
}
my $lines1 = () = ($S->{pool}->log_text =~ /\n/g);
my $errors1 = cache_errors();
diag "cache errors: " . ($errors1 - $errors0) . " in 5 s";
cmp_ok($errors1 - $errors0, '<=', 25, 'the cache is retried at most 25 times in 5 s of a full disk (it backs off)');
diag "log grew by " . ($lines1 - $lines0) . " lines";
cmp_ok($lines1 - $lines0, '<=', 30, 'the pool logs at most 30 lines in 5 s of a full disk')
    or diag "log grew by " . ($lines1 - $lines0) . " lines; $log";
$r = req(GET => '/api/storage/loop10');
is($r->{json}{entry}{data}{k}, 'loop10', 'answers are still right') or diag show($r);

# Room again: the cache is healthy again within a few seconds.
unlink "$MNT/filler";
ok(defined within(30, sub { put_big('after'); cache_health() eq 'healthy' }),
    'healthy again once the disk has room');
$r = req(GET => '/api/storage/after');
is($r->{json}{entry}{data}{k}, 'after', 'and answers are right');

done_testing();
