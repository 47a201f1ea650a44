#!/usr/bin/perl
# A cap on rows per cached table (issue 12), [cache] max_rows = 100:
# - a table cached per key (storage) that grows past it loses the rows read
#   least recently, down to 95 % of the cap; the rows read lately stay;
# - a listed table with more rows than the cap (150 deployments) is not kept
#   whole: its lists are answered from PostgreSQL, right, every time; a
#   smaller one (compilations) is still a HIT.
# PostgreSQL, the pool (2 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2, conf => { 'cache.max_rows' => 100, 'cache.max_age' => 20 });
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});
mkuser('admin@t46.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t46.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

sub rows_cached {
	my $r = req(GET => '/api/admin/cache/status');
	return ref $r->{json} eq 'HASH' ? $r->{json}{tables}{$_[0]}{rows} : undef;
}
sub get { req(GET => sprintf('/api/storage/k%03d', $_[0])) }

sql(q{INSERT INTO storage_entries (key, data)
      SELECT 'k' || lpad(g::text, 3, '0'), json_build_object('n', g) FROM generate_series(1, 150) g});
# Read k001 … k090 (under the cap), then, after the touch interval (a
# tenth of max_age: 2 s), k001–k020 again, then k091 … k150: k021 is now the
# least recently read.
my $bad = grep { my $r = get($_); $r->{status} != 200 || ($r->{json}{entry}{data}{n} // 0) != $_ } 1 .. 90;
is($bad, 0, 'k001–k090 read');
sleep 2.5;
is(scalar(grep { x_cache(get($_)) eq 'HIT' } 1 .. 20), 20, 'k001–k020 read again: HITs');
$bad = grep { my $r = get($_); $r->{status} != 200 || ($r->{json}{entry}{data}{n} // 0) != $_ } 91 .. 150;
is($bad, 0, 'k091–k150 read');

my $rows;
ok(defined within(15, sub { $rows = rows_cached('storage_entries'); defined $rows && $rows <= 100 }),
    'the syncer evicted rows past the cap') or diag "rows: $rows";
ok($rows >= 90, "... down to 95 % of it, not further ($rows rows)");
is(scalar(grep { x_cache(get($_)) eq 'HIT' } 1 .. 20), 20, 'the rows read lately stayed (k001–k020: HIT)');
is(scalar(grep { x_cache(get($_)) eq 'HIT' } 140 .. 150), 11, 'so did the newest fills (k140–k150: HIT)');
my @gone = grep { x_cache(get($_)) ne 'HIT' } 21 .. 30;
is(scalar(@gone), 10, 'the rows read least recently went (k021–k030: not a HIT)');
my $r = get(25);
is($r->{json}{entry}{data}{n}, 25, '... and read right from PostgreSQL');

# A listed table larger than the cap: no snapshot; lists stay right.
sql(q{INSERT INTO deployment_history (version, build_number, full_version, git_commit, git_branch, deployed_by,
          deployed_at)
      SELECT '3.' || g, 1, '3.' || g || '+build.1', md5(g::text), 'main', 'seed', now() - (150 - g) * interval '1 s'
      FROM generate_series(1, 150) g});
my %how;
for (1 .. 6) {
	my $l = req(GET => '/api/deployments?limit=2');
	$how{ x_cache($l) }++;
	is($l->{json}{deployments}[0]{version}, '3.150', 'the list shows the newest deployment') if $_ == 1;
	sleep 0.5;
}
ok(!$how{HIT}, 'a table of 150 rows is never listed from the cache (' . join(' ', %how) . ')');
ok((rows_cached('deployment_history') // 0) <= 100, 'nor kept whole');

sql(q{INSERT INTO compilation_metadata (config_name, source_count, rule_count, duration)
      SELECT 'seed', g, g, 1 FROM generate_series(1, 20) g});
req(GET => '/api/compilations?limit=5');
is(x_cache(req(GET => '/api/compilations?limit=5')), 'HIT', 'a table of 20 rows still is');

unlike($S->{pool}->log_text, qr/database is locked/, 'no "database is locked" in the log');
done_testing;
