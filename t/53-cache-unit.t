#!/usr/bin/perl
# The cache module's unit test (t/unit/test_cache.c) on a real PostgreSQL:
# start one, migrate it (schema and NOTIFY triggers), then run the C
# program with BLOQR_TEST_PG_URL and BLOQR_TEST_DIR and relay its TAP.
# BLOQR_TEST_VALGRIND=1 (and valgrind installed): run it under valgrind,
# which must find no error and no leak.
use strict;
use warnings;
use BloqrTest;

$| = 1;
my $prog = program('t/unit/test_cache');
my $pg = pg_start();
my $conf = write_conf();
migrate($conf);
my $dir = workdir() . '/cache-unit';
mkdir $dir or die "mkdir $dir: $!\n";

my @cmd = ($prog);
if (($ENV{BLOQR_TEST_VALGRIND} // '') eq '1') {
	my $vg = grep({ -x "$_/valgrind" } split /:/, $ENV{PATH} // '') ? 'valgrind' : undef;
	if ($vg) {
		@cmd = ($vg, '-q', '--error-exitcode=99', '--leak-check=full',
			'--show-leak-kinds=definite,indirect,possible',
			'--errors-for-leak-kinds=definite,indirect,possible', $prog);
	} else {
		print STDERR "# BLOQR_TEST_VALGRIND=1 but valgrind is not installed: running without it\n";
	}
}

my $r = run_cmd(\@cmd, timeout => 900, dir => $dir,
	env => { BLOQR_TEST_PG_URL => $pg->url, BLOQR_TEST_DIR => $dir });
print $r->{out} // '';
my $plan = ($r->{out} // '') =~ /^1\.\.\d+/m;
if ($r->{rc} != 0 || !$plan) {
	print STDERR "# test_cache exited with $r->{rc}" . ($r->{rc} == 99 ? ' (valgrind found errors)' : '') . "\n";
	print STDERR map { "# $_\n" } split /\n/, $r->{err} // '';
	# A crash before the plan: make sure prove sees a failure.
	print "Bail out! test_cache did not finish (exit $r->{rc})\n" unless $plan;
} elsif ($ENV{TEST_VERBOSE} && length($r->{err} // '')) {
	print STDERR map { "# $_\n" } split /\n/, $r->{err};
}
exit($r->{rc} ? 1 : 0);
