#!/usr/bin/perl
# The cache file stays bounded (issue 12): a burst of writes (a `cache
# rebuild` of a large table) grows the WAL, and the syncer's truncating
# checkpoints give the space back within seconds, while the pool serves.
# PostgreSQL, the pool (2 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2);
my $CONF = $S->{conf};
my $CACHE = conf_value($CONF, 'cache', 'path');
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);
mkuser('admin@t55.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t55.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

# ------------------------------------------------------------ WAL bound --

# About 20 MB of rows: far more than the 1 MiB the syncer lets the WAL
# keep. Nobody has read them, so the syncer does not fetch them; the
# rebuild takes the deployments snapshot, all of it, through the WAL.
sql(q{INSERT INTO deployment_history (version, build_number, full_version, git_commit, git_branch, deployed_by,
          metadata, deployed_at)
      SELECT '5.' || g, 1, '5.' || g || '+build.1', md5(g::text), 'main', 'bulk',
             jsonb_build_object('n', g, 'pad', repeat('x', 400)), now() - (40000 - g) * interval '1 second'
      FROM generate_series(1, 40000) g});
my $r = admin($CONF, ['cache', 'rebuild']);
is($r->{rc}, 0, 'bloqr-admin cache rebuild') or diag $r->{err};
like($r->{out}, qr/deployment_history\D+40000\b/, '... took the 40 000 deployments') or diag $r->{out};
diag sprintf('WAL after the rebuild: %d bytes', -s "$CACHE-wal" // 0);

my $t = within(10, sub { (-s "$CACHE-wal" // 0) <= 1024 * 1024 });
ok(defined $t, 'the WAL is back under 1 MiB within 10 s of the burst')
    or diag sprintf('WAL: %d bytes', -s "$CACHE-wal" // 0);

# The cache still answers, from the rebuilt snapshot.
$r = req(GET => '/api/deployments?limit=1');
is($r->{status}, 200, 'the list answers after the rebuild');
is($r->{json}{deployments}[0]{metadata}{n}, 40000, '... with the newest deployment') or diag show($r);
is(x_cache($r), 'HIT', '... from the snapshot');

done_testing();
