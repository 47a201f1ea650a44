#!/usr/bin/perl
# --version and --help of both programs (STYLE: command lines like the tools
# people know): one line "PROG (bloqr-backend) VERSION[ (git COMMIT)]" on
# stdout and exit 0, before any configuration is read; the commit is the
# source tree's HEAD when built from git.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my ($pkg_version) = (BloqrTest::_slurp(srcdir() . '/configure.ac') // '')
    =~ /AC_INIT\(\[bloqr-backend\],\s*\[([^\]]+)\]/;
ok($pkg_version, "configure.ac has a version ($pkg_version)");

my $head;
if (-e srcdir() . '/.git') {
	my $r = run_cmd(['git', '-C', srcdir(), 'rev-parse', 'HEAD']);
	$head = $r->{rc} == 0 ? $r->{out} =~ s/\s+//gr : undef;
}

for my $rel ('cgi-bin/bloqr.fcgi', 'src/bloqr-admin') {
	my $prog = program($rel);
	my ($name) = $rel =~ m{([^/]+)$};
	for my $opt ('-V', '--version') {
		# BLOQR_CONF names a missing file: --version must not read it.
		my $r = run_cmd([$prog, $opt], env => { BLOQR_CONF => '/nonexistent/bloqr.conf' });
		is($r->{rc}, 0, "$name $opt exits 0") or diag $r->{err};
		like($r->{out}, qr/\A\Q$name\E \(bloqr-backend\) \Q$pkg_version\E(?: \(git [0-9a-f]{7,40}(?:-dirty)?\))?\n\z/,
			"$name $opt: one line with the version") or diag $r->{out};
		is($r->{err}, '', "$name $opt: nothing on stderr");
		if ($head) {
			my ($c) = $r->{out} =~ /\(git ([0-9a-f]+)/;
			ok($c && substr($head, 0, length $c) eq $c, "$name $opt names the checked-out commit")
				or diag "got " . ($c // 'none') . ", HEAD is $head";
		}
	}
	for my $opt ('-h', '--help') {
		my $r = run_cmd([$prog, $opt]);
		is($r->{rc}, 0, "$name $opt exits 0");
		like($r->{out}, qr/^usage: \Q$name\E/m, "$name $opt prints the usage");
		like($r->{out}, qr/--version/, "$name $opt mentions --version");
	}
	my $r = run_cmd([$prog, '--no-such-option']);
	is($r->{rc}, 2, "$name: an unknown option is a usage error (2)");
}

done_testing;
