#!/usr/bin/perl
# Each worker keeps the answers of its last snapshot reads (lists, counts)
# with the version of the cache file they were read at (src/cache_memo.h).
# Such an answer must never outlive what it was read from: a commit to the
# file by any process ends it at once, and so does the syncer falling
# silent (no heartbeat: nobody may trust the cache after 3 s), even though
# the file then does not change at all. Two pools share one cache file (two
# sets of workers on one host); PostgreSQL; nginx in front of each.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2);
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);
mkuser('admin@t54.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t54.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

# A second pool on the same configuration, hence the same cache file.
my $B = host_start($CONF, workers => 2);
cache_ready($B->{url}, 'the second pool');

sub list  { req(GET => '/api/deployments?limit=50', bearer => undef, @_) }
sub stats { req(GET => '/api/deployments/stats', bearer => undef, @_) }
sub ids   { join ',', map { $_->{id} } @{ $_[0]{json}{deployments} || [] } }

sub deploy {
	my ($v, %o) = @_;
	my $r = req(POST => '/api/deployments', json => { version => $v, gitCommit => "c$v", gitBranch => 'main',
		deployedBy => 't54' }, %o);
	is($r->{status}, 201, "POST deployment $v") or diag show($r);
	return $r->{json}{deployment}{id} // '';
}

deploy('1.0.0');
ok(within(5, sub { x_cache(list()) eq 'HIT' }), 'the list becomes a HIT');
my @again = map { list() } 1 .. 5;
is(scalar(grep { x_cache($_) eq 'HIT' } @again), 5, 'and stays one');
is(scalar(grep { $_->{content} eq $again[0]{content} } @again), 5, 'with the same body every time');

subtest 'a write through this pool is seen by the next read' => sub {
	for my $i (1 .. 10) {
		list() for 1 .. 2;    # remembered by whichever worker answers
		my $id = deploy("2.0.$i");
		my $l = list();
		is($l->{json}{deployments}[0]{id}, $id, "2.0.$i: first in the list right after") or diag show($l);
		is(stats()->{json}{totalDeployments}, $i + 1, "2.0.$i: counted by stats right after");
	}
};

subtest "a write through the other pool on this host's file is seen at once" => sub {
	for my $i (1 .. 10) {
		list() for 1 .. 2;
		stats();
		my $id = deploy("3.0.$i", base => $B->{url});
		my $l = list();
		is($l->{json}{deployments}[0]{id}, $id, "3.0.$i (written by the other pool): first in the list")
		    or diag show($l);
		is(stats()->{json}{totalDeployments}, $i + 11, "3.0.$i: counted");
	}
};

subtest 'a psql change reaches the answers within 2 s' => sub {
	my $l = list();
	my $top = $l->{json}{deployments}[0];
	is(x_cache(list()), 'HIT', 'the list is a HIT');
	sql(qq{UPDATE deployment_history SET status = 'failed' WHERE id = '$top->{id}'});
	my $took = within(2, sub { (list()->{json}{deployments}[0]{status} // '') eq 'failed' });
	ok(defined $took, 'the list shows it within 2 s') or diag show(list());
	ok(defined within(2, sub { (stats()->{json}{failedDeployments} // 0) == 1 }), 'stats count it within 2 s');
};

subtest 'the syncer silent: no answer is trusted after 3 s, though the file does not change' => sub {
	# Both pools' syncers vouch for the one file: both fall silent.
	my @syncers = grep { (BloqrTest::_slurp("/proc/$_/comm") // '') =~ /sync/ }
	    ($S->{pool}->child_pids, $B->{pool}->child_pids);
	is(scalar @syncers, 2, 'found the two syncers') or return;
	ok(within(5, sub { x_cache(list()) eq 'HIT' }), 'the list is a HIT');
	my $before = ids(list());
	kill 'STOP', @syncers;
	my $t0 = time;
	my $gone = within(8, sub { x_cache(list()) ne 'HIT' && x_cache(stats()) ne 'HIT' });
	my $after = list();
	kill 'CONT', @syncers;
	ok(defined $gone, sprintf('with the syncer stopped, the list and the stats stop being HITs (%.1f s)',
		time - $t0));
	is(x_cache($after), 'MISS', 'they come from PostgreSQL instead');
	is(ids($after), $before, 'with the same rows');
	ok(within(10, sub { x_cache(list()) eq 'HIT' }), 'the syncer back: HIT again');
};

done_testing();
