#!/usr/bin/perl
# Snapshots without a stampede (issue 12). With [cache] max_age = 8:
# - a list read again and again across several max_ages is a HIT every
#   time: the syncer takes the snapshot again ahead of its expiry;
# - a syncer restart keeps the snapshot (the change log covers it);
# - when the snapshot is gone (the syncer restarted and the change log
#   could not cover what it missed), many concurrent
#   readers make one snapshot read of PostgreSQL, not one each; a large
#   table (20 000 deployments, over 4 MiB) is left to the syncer: the
#   readers answer from PostgreSQL meanwhile and never read the whole table;
# - a small table (compilations) is taken by the first reader that misses:
#   MISS, then HIT.
# Statements are counted with pg_stat_statements.
# PostgreSQL, the pool (3 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $PG = pg_start();
{
	open my $fh, '>>', "$PG->{data}/postgresql.conf" or die "postgresql.conf: $!\n";
	print $fh "shared_preload_libraries = 'pg_stat_statements'\n", "pg_stat_statements.track = all\n";
	close $fh;
	$PG->stop;
	$PG->start;
	$PG->psql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
}
my $CONF = write_conf('cache.max_age' => 8);
migrate($CONF);
api_setup(pg => $PG, conf => $CONF);
mkuser('admin@t45.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t45.test') // BAIL_OUT('no admin token');
sql(q{INSERT INTO deployment_history (version, build_number, full_version, git_commit, git_branch, deployed_by,
          metadata, deployed_at)
      SELECT '7.' || g, 1, '7.' || g || '+build.1', md5(g::text), 'main', 'seed',
             jsonb_build_object('n', g, 'pad', repeat('x', 200)), now() - (20000 - g) * interval '1 second'
      FROM generate_series(1, 20000) g});
sql(q{INSERT INTO compilation_metadata (config_name, source_count, rule_count, duration)
      SELECT 'seed', g, g * 10, 100 FROM generate_series(1, 20) g});
sql('ANALYZE');
my $POOL = pool_start($CONF, workers => 3);
my $WEB = nginx_start(upstream => $POOL->addr);
api_setup(url => $WEB->{url}, bearer => $ADMIN);
cache_ready();

sub list { req(GET => '/api/deployments?limit=20', bearer => undef) }
# How many times PostgreSQL read a whole table for a snapshot.
sub snapshot_reads {
	my ($table) = @_;
	return sql(qq{SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
	    WHERE query ~* ' from $table \\w+ order by ' AND query !~* ' limit '}) + 0;
}
sub syncer_pid {
	for my $pid ($POOL->child_pids) {
		my $comm = BloqrTest::_slurp("/proc/$pid/comm") // next;
		return $pid if $comm =~ /sync/;
	}
	return undef;
}
# N clients at once, each reading the list `each` times; the X-Cache seen.
sub concurrent_lists {
	my ($n, $each) = @_;
	my @pids;
	pipe(my $rd, my $wr) or die "pipe: $!\n";
	for (1 .. $n) {
		my $pid = fork // die "fork: $!\n";
		if ($pid == 0) {
			close $rd;
			my @seen = map { my $r = list(); "$r->{status}:" . x_cache($r) } 1 .. $each;
			print $wr "@seen\n";
			close $wr;
			POSIX::_exit(0);
		}
		push @pids, $pid;
	}
	close $wr;
	my @all = map { split ' ' } <$rd>;
	waitpid($_, 0) for @pids;
	return @all;
}
use POSIX ();

# ---------------------------------------------------------- a large table --

# The first readers: the snapshot was never taken. They answer from
# PostgreSQL (LIMIT 20), ask the syncer, and the syncer takes it once.
sql('SELECT pg_stat_statements_reset()');
my @seen = concurrent_lists(6, 5);
is(scalar(grep { !/^200:/ } @seen), 0, '30 concurrent list reads of a cold large table: all 200')
    or diag "@seen";
ok(defined within(30, sub { x_cache(list()) eq 'HIT' }), 'the list becomes a HIT (the syncer took the snapshot)');
is(snapshot_reads('deployment_history'), 1, 'PostgreSQL was read whole once, not once per reader');

# Across two max_ages, read every 200 ms: never anything but a HIT.
my %how;
my $until = time + 17;
while (time < $until) {
	$how{ x_cache(list()) }++;
	sleep 0.2;
}
is(join(' ', map { "$_=$how{$_}" } sort keys %how), "HIT=$how{HIT}",
    'reads across two max_ages are all HITs (the syncer refreshes ahead of expiry)');
ok(snapshot_reads('deployment_history') >= 2, 'the syncer took it again ('
    . snapshot_reads('deployment_history') . ' snapshot reads in all)');

# The syncer restarts and catches up from the change log: the snapshot
# stays trusted, and concurrent readers keep getting HITs.
my $old = syncer_pid();
ok($old, 'the syncer runs');
my $log0 = length $POOL->log_text;
kill 'KILL', $old;
@seen = concurrent_lists(6, 5);
is(scalar(grep { !/^200:HIT$/ } @seen), 0, '30 concurrent list reads during a restart: all HITs') or diag "@seen";
ok(defined within(10, sub { my $p = syncer_pid();
	$p && $p != $old && substr($POOL->log_text, $log0) =~ /applied \d+ changes made while no one listened/ }),
    'the new syncer caught up from the change log');

# A restart the change log cannot cover (pruned past the cache file's
# position, as after a long absence): every snapshot is stale until it is
# taken again. Concurrent readers answer from PostgreSQL, none reads the
# whole table.
$old = syncer_pid();
ok($old, 'the syncer runs');
sql('SELECT pg_stat_statements_reset()');
sql('UPDATE bloqr_cache_log_horizon SET pruned_below = pg_current_xact_id()');
kill 'KILL', $old;
ok(defined within(10, sub { my $p = syncer_pid(); $p && $p != $old && x_cache(list()) ne 'HIT' }),
    'a new syncer; the snapshot is not trusted meanwhile');
@seen = concurrent_lists(6, 5);
is(scalar(grep { !/^200:/ } @seen), 0, '30 concurrent list reads during the restart: all 200') or diag "@seen";
ok(defined within(30, sub { x_cache(list()) eq 'HIT' }), 'HITs again once the syncer has taken the snapshot');
ok(snapshot_reads('deployment_history') <= 2, 'PostgreSQL was read whole at most twice ('
    . snapshot_reads('deployment_history') . '), by the syncer');

# ---------------------------------------------------------- a small table --

my $c1 = req(GET => '/api/compilations?limit=5');
is($c1->{status}, 200, 'the compilations list');
my $c2 = req(GET => '/api/compilations?limit=5');
is(x_cache($c2), 'HIT', 'a small table: the reader that missed took the snapshot; the next read is a HIT')
    or diag 'first: ' . x_cache($c1) . ', second: ' . x_cache($c2);
is($c2->{content}, $c1->{content}, '... with the same body');

unlike($POOL->log_text, qr/database is locked/, 'no "database is locked" in the log');
done_testing;
