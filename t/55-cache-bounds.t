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

# About 20 MB of rows: far more than the 1 MiB the syncer lets the WAL keep.
sql(q{INSERT INTO storage_entries (key, data)
      SELECT 'bulk/' || g, jsonb_build_object('n', g, 'pad', repeat('x', 400))
      FROM generate_series(1, 40000) g});
# The syncer applies the 40 000 notifications first (it stores every row,
# one write transaction per batch); a rebuild in the middle of that would
# wait on SQLite's write lock, which a slow build (ASan) can make it miss.
ok(defined within(120, sub {
	(req(GET => '/api/admin/cache/status')->{json}{tables}{storage_entries}{rows} // 0) >= 40000 }),
	'the syncer has applied the insert') or diag show(req(GET => '/api/admin/cache/status'));
diag sprintf('WAL after the burst: %d bytes', -s "$CACHE-wal" // 0);
my $r = admin($CONF, ['cache', 'rebuild']);
is($r->{rc}, 0, 'bloqr-admin cache rebuild') or diag $r->{err};
diag sprintf('WAL after the rebuild: %d bytes', -s "$CACHE-wal" // 0);

my $t = within(10, sub { (-s "$CACHE-wal" // 0) <= 1024 * 1024 });
ok(defined $t, 'the WAL is back under 1 MiB within 10 s of the burst')
    or diag sprintf('WAL: %d bytes', -s "$CACHE-wal" // 0);

# The cache still answers, from the rebuilt snapshot.
$r = req(GET => '/api/storage/bulk%2F777');
is($r->{status}, 200, 'a rebuilt row still answers');
is($r->{json}{entry}{data}{n}, 777, '... with its data') or diag show($r);

done_testing();
