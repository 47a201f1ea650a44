#!/usr/bin/perl
# Robust file identity (issue 12): the cache file is deleted (`rm
# cache.db`, leaving its -wal and -shm) again and again while clients
# write, and read-your-writes holds throughout: a GET right after a
# successful PUT through the same host answers the value just written,
# every time. The processes notice the deletion on their next request,
# before any read, start a new file without the old one's WAL, and log no
# SQLite I/O or corruption error.
# PostgreSQL, the pool (3 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);

my $DIR = tempdir('bloqr-t58-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0777, $DIR;   # the pool may run as another user
my $DB = "$DIR/cache.db";
my $S = stack(workers => 3, conf => { 'cache.path' => $DB });
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});
mkuser('admin@t58.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t58.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

sub put_v {
	my ($k, $v) = @_;
	return req(PUT => "/api/storage/$k", json => { data => { v => $v } });
}

# Writers on other keys, and the remover, as children of the test.
my @kids;
for my $w (1 .. 2) {
	my $pid = fork // die "fork: $!\n";
	if ($pid == 0) {
		my $n = 0;
		while (1) {
			put_v("other$w-" . ($n % 20), $n);
			req(GET => "/api/storage/other$w-" . ($n % 20));
			$n++;
		}
	}
	push @kids, $pid;
}
my $removals = "$DIR/removals";
{
	my $pid = fork // die "fork: $!\n";
	if ($pid == 0) {
		my $n = 0;
		while (1) {
			sleep(0.6 + rand(0.8));
			if (-e $DB && unlink $DB) {
				$n++;
				open my $fh, '>', $removals or POSIX::_exit(1);
				print $fh $n;
				close $fh;
			}
		}
	}
	push @kids, $pid;
}
END { kill 'KILL', @kids if @kids; waitpid($_, 0) for @kids }

my ($iter, $bad, $hits, $failed) = (0, 0, 0, 0);
my $until = time + 15;
while (time < $until) {
	$iter++;
	my $r = put_v('ryw', $iter);
	if ($r->{status} != 200 && $r->{status} != 201) {
		$failed++;
		diag 'PUT: ' . show($r) if $failed <= 3;
		next;
	}
	for my $read (1, 2) {
		$r = req(GET => '/api/storage/ryw');
		my $v = ref $r->{json} eq 'HASH' ? $r->{json}{entry}{data}{v} // '' : '';
		if ($r->{status} != 200 || $v ne $iter) {
			$bad++;
			diag "iteration $iter, read $read: got '$v' (" . x_cache($r) . ", $r->{status})" if $bad <= 5;
		}
		$hits++ if x_cache($r) eq 'HIT';
	}
}
kill 'KILL', @kids;
waitpid($_, 0) for @kids;
@kids = ();
my $n_removed = BloqrTest::_slurp($removals) // 0;

ok($n_removed >= 5, "the cache file was deleted $n_removed times during the run");
ok($iter >= 50, "$iter PUT-then-GET iterations");
is($failed, 0, 'every PUT succeeded');
is($bad, 0, 'read-your-writes: every GET after a PUT answered the value written (0 violations)');
ok($hits > 0, "the cache served in between ($hits HITs)");

# The stale WAL never met a new file, and nothing was corrupt.
my $log = $S->{pool}->log_text;
unlike($log, qr/disk I\/O error|not a database|malformed|disk image/,
    'no SQLite I/O or corruption error in the log');
like($log, qr/was removed or replaced; reopening/, 'the processes noticed the deletions');

# Once left alone, the cache serves again.
ok(within(10, sub {
	req(GET => '/api/storage/ryw');
	x_cache(req(GET => '/api/storage/ryw')) eq 'HIT';
}), 'after the deletions stop, reads are HITs again');
my $r = req(GET => '/api/storage/ryw');
is($r->{json}{entry}{data}{v}, $iter, '... of the last value written');

done_testing;
