#!/usr/bin/perl
# A burst of notifications (issue 12): one psql transaction inserts 100 k
# storage entries and 2 000 deployments, and changes a few entries that are
# cached. The syncer applies the burst in batches without fetching the rows
# nobody has read (the cache file does not take them), drops the
# deployments snapshot rather than fetching every new row into it, keeps
# the cached entries right, and gives the burst's memory back.
# PostgreSQL, the pool (2 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2);
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});
mkuser('admin@t59.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t59.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);
cache_ready();

sub rows_cached {
	my ($t) = @_;
	my $r = req(GET => '/api/admin/cache/status');
	return ref $r->{json} eq 'HASH' ? $r->{json}{tables}{$t}{rows} : undef;
}
sub syncer_rss_kb {
	for my $pid ($S->{pool}->child_pids) {
		my $comm = BloqrTest::_slurp("/proc/$pid/comm") // next;
		next unless $comm =~ /sync/;
		my $st = BloqrTest::_slurp("/proc/$pid/status") // next;
		return $1 if $st =~ /^VmRSS:\s+(\d+) kB/m;
	}
	return undef;
}

# Cached: five entries read, the deployments list (a snapshot).
for my $i (1 .. 5) {
	my $r = req(PUT => "/api/storage/hot$i", json => { data => { v => 0 } });
	ok($r->{status} == 200 || $r->{status} == 201, "PUT hot$i");
}
for my $i (1 .. 5) {
	poll(5, sub { x_cache(req(GET => "/api/storage/hot$i")) eq 'HIT' });
}
my $r = req(POST => '/api/deployments', json => { version => '1.0.0', gitCommit => 'abc', gitBranch => 'main',
    deployedBy => 't59', status => 'success' });
ok($r->{status} == 200 || $r->{status} == 201, 'a deployment') or diag show($r);
ok(poll(5, sub { x_cache(req(GET => '/api/deployments?limit=5')) eq 'HIT' }),
    'the deployments list is served from its snapshot');
my $rows0 = rows_cached('storage_entries');
ok(defined $rows0 && $rows0 >= 5 && $rows0 < 100, "storage_entries: $rows0 rows cached before the burst");
my $rss0 = syncer_rss_kb();
ok($rss0, "the syncer's RSS before: $rss0 kB");

my $t0 = time;
$S->{pg}->psql(<<'SQL');
BEGIN;
INSERT INTO storage_entries (key, data)
SELECT 'bulk-' || i, json_build_object('n', i) FROM generate_series(1, 100000) AS i;
INSERT INTO deployment_history (version, build_number, full_version, git_commit, git_branch, deployed_by)
SELECT '9.' || i, 1, '9.' || i || '+build.1', md5(i::text), 'bulk', 'psql' FROM generate_series(1, 2000) AS i;
UPDATE storage_entries SET data = '{"v": 1}', updated_at = now() WHERE key LIKE 'hot%';
COMMIT;
SQL
note sprintf 'the bulk transaction took %.1f s', time - $t0;

# The changed entries read right: the old value for at most 2 s after the
# commit (§5.2, a write from outside), then the new one, a HIT once the
# syncer has caught up.
my $t_commit = time;
my $last_stale;
my $caught_up = within(60, sub {
	my $all = 1;
	for my $i (1 .. 5) {
		my $g = req(GET => "/api/storage/hot$i");
		my $v = ref $g->{json} eq 'HASH' ? $g->{json}{entry}{data}{v} // '' : '';
		$last_stale = time - $t_commit if $v ne '1';
		$all &&= $v eq '1' && x_cache($g) eq 'HIT';
	}
	$all;
});
ok(defined $caught_up, sprintf('the syncer caught up with the burst (%.1f s)', $caught_up // -1));
ok(!defined $last_stale || $last_stale < 2, sprintf('the old values were gone within 2 s (last seen after %.2f s)',
    $last_stale // 0));

# The burst's rows were not fetched into the file.
my $rows1 = rows_cached('storage_entries');
ok(defined $rows1 && $rows1 < $rows0 + 100,
    "the 100 000 entries nobody read were not cached ($rows0 rows before, $rows1 after)");

# The deployments list: every new row is in it (the snapshot was dropped
# and is taken again, not patched row by row).
$r = req(GET => '/api/deployments?limit=3');
is($r->{status}, 200, 'the deployments list after the burst');
my @v = map { $_->{gitBranch} } @{ $r->{json}{deployments} // [] };
is("@v", 'bulk bulk bulk', '... shows the new deployments') or diag show($r);
is(req(GET => '/api/deployments/stats')->{json}{totalDeployments}, 2001, '... and counts all 2001 of them');
ok(poll(10, sub { x_cache(req(GET => '/api/deployments?limit=3')) eq 'HIT' }),
    '... and is served from a snapshot again');

# Memory: back within 10 MB of where it was.
sleep 2;
my $rss1 = syncer_rss_kb();
SKIP: {
	skip "built with AddressSanitizer: its quarantine keeps freed memory (RSS $rss1 kB, before $rss0 kB)", 1
	    if BloqrTest::sanitized();
	ok($rss1 && $rss1 - $rss0 < 10_240, "the syncer's RSS after the burst: $rss1 kB (before: $rss0 kB)");
}

unlike($S->{pool}->log_text, qr/database is locked/, 'no "database is locked" in the log');
done_testing;
