#!/usr/bin/perl
# bench/run --scale, tiny (--scale-factor 0.005: 5250 storage entries, 500
# deployments and users, a 5000-row bulk insert; 1 s windows, 4
# connections): it runs the four events and prints the whole table, the
# syncer's RSS and one PASS/FAIL line per target. Whether the targets pass
# is docs/PERFORMANCE.md's business (a full-scale run), not a test's.
use strict;
use warnings;
use Test::More;
use BloqrTest;

for my $tool (qw(wrk sqlite3)) {
	plan skip_all => "$tool is not installed" unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my $r = run_cmd([srcdir() . '/bench/run', '--scale', '--scale-factor', 0.005, '--phase-seconds', 1,
	'--hot-keys', 500, '--max-age', 10, '--connections', 4, '--threads', 1, '--event-timeout', 120],
	timeout => 600);
is($r->{rc}, 0, 'bench/run --scale exits 0') or diag $r->{err} . $r->{out};
my $out = $r->{out} // '';
like($out, qr/^bench\/run --scale --scale-factor 0\.005: 5250 storage entries, 500 deployments, 500 users/m,
	'it says what it seeded');
for my $event ('max_age expiry', 'cache rebuild', 'syncer restart', 'bulk insert') {
	for my $phase (qw(before during after)) {
		like($out, qr/^\| \Q$event\E\s+\| $phase\s+\|\s+[\d.]+ \|\s+\d+ \|\s+[\d.]+(?:us|ms|s|m) \|\s+[\d.]+(?:us|ms|s|m) \|\s+[\d.]+(?:us|ms|s|m) \|\s+\d+ \|\s+[01]\.\d{3} \|\s+[\d.]+ \|\s+[\d.]+ \|\s+[\d.]+ MB \|\s+[\d.]+ MB \|\s+\d+ \|$/m,
			"a row for $event, $phase");
	}
	like($out, qr/^(?:PASS|FAIL)  \Q$event\E\s+p99 during /m, "$event: the p99 target");
	like($out, qr/^(?:PASS|FAIL)  \Q$event\E\s+no read over 250 ms/m, "$event: the 250 ms target");
	like($out, qr/^(?:PASS|FAIL)  \Q$event\E\s+WAL <= 64 MB/m, "$event: the WAL target");
}
like($out, qr/^  \Q$_\E\s+(?:before|during|after) +[\d.]+ ms, (?:storage|deployments), started/m,
	"the probe's slowest request around $_") for 'max_age expiry', 'bulk insert';
like($out, qr/^bulk insert: INSERT of 5000 rows took [\d.]+ s; notifications drained and cache coherent [\d.]+ s after it committed$/m,
	'the bulk insert was applied');
like($out, qr/^syncer RSS: [\d.]+ MB at the start, [\d.]+ MB before the bulk insert, peak [\d.]+ MB, [\d.]+ MB 10 s after/m,
	'the syncer RSS line');
like($out, qr/^storage rows in the cache file at the end: \d+$/m, 'the cached rows are counted');
like($out, qr/^(?:PASS|FAIL)  syncer RSS 10 s after the bulk insert within 10 MB/m, 'the syncer RSS target');
like($out, qr/^\d+ targets? failed$/m, 'the count of failed targets');

done_testing;
