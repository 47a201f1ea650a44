#!/usr/bin/perl
# bench/run --plot, small and light (1 s per case, 4 connections, a 3 s
# timeline over 2000 keys): it runs, and writes the two PNGs and the
# numbers behind them. The numbers themselves are docs/PERFORMANCE.md's
# business, not a test's.
use strict;
use warnings;
use Test::More;
use BloqrTest;

for my $tool (qw(wrk gnuplot)) {
	plan skip_all => "$tool is not installed" unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my $out = workdir() . '/plots';
my $r = run_cmd([srcdir() . '/bench/run', '--duration', 1, '--connections', 4, '--threads', 1,
	'--plot', '--plot-dir', $out, '--plot-seconds', 3, '--write-every', 2, '--plot-keys', 2000],
	timeout => 180);
is($r->{rc}, 0, 'bench/run --plot exits 0') or diag $r->{err} . $r->{out};
like($r->{out}, qr/^HIT \/ BYPASS = [\d.]+/m, 'it prints the ratios');
for my $png (qw(latency.png timeline.png)) {
	my $head = BloqrTest::_slurp("$out/$png") // '';
	is(substr($head, 0, 8), "\x89PNG\r\n\x1a\n", "$png is a PNG");
	cmp_ok(length $head, '>', 10_000, "$png has a plot in it");
}
my @rows = grep { !/^#/ } split /\n/, BloqrTest::_slurp("$out/timeline.dat") // '';
is(scalar @rows, 3, 'timeline.dat: one row per second');
like($_, qr/^\d+ \d+ (?:[\d.]+ ){4}[01]\.\d+ [01] \d+ \d+$/, "timeline.dat row: $_") for @rows;
my @lat = grep { !/^#/ } split /\n/, BloqrTest::_slurp("$out/latency.dat") // '';
is(scalar @lat, 4, 'latency.dat: p50 p75 p90 p99');

done_testing;
