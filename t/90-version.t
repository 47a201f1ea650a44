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

# Every bloqr-admin command takes --help (getopt_long), and a usage error
# is one line on stderr (CONTRACT §1) that points at it.
my $admin = program('src/bloqr-admin');
for my $cmd (['migrate'], [qw(user create)], [qw(token create)], [qw(deploy record)], [qw(cache rebuild)],
    [qw(cache verify)]) {
	my $r = run_cmd([$admin, @$cmd, '--help'], env => { BLOQR_CONF => '/nonexistent/bloqr.conf' });
	is($r->{rc}, 0, "bloqr-admin @$cmd --help exits 0");
	like($r->{out}, qr/^usage: bloqr-admin \[-c FILE\] \Q@$cmd\E/, "... and prints its usage");
	$r = run_cmd([$admin, '-c', '/nonexistent/bloqr.conf', @$cmd, '--no-such-option']);
	is($r->{rc}, 2, "bloqr-admin @$cmd --no-such-option: exit 2");
	like($r->{err}, qr/\A[^\n]*--no-such-option[^\n]*--help[^\n]*\n\z/, '... one line naming it and --help')
		or diag $r->{err};
}
my $r = run_cmd([$admin, 'user', 'create', '--email']);
like($r->{err}, qr/\A[^\n]*--email needs an address[^\n]*\n\z/, 'a missing value: one line naming the option')
	or diag $r->{err};
$r = run_cmd([$admin, 'cache', 'verify', 'extra']);
like($r->{err}, qr/\A[^\n]*unexpected argument 'extra'[^\n]*\n\z/, 'a stray word: one line') or diag $r->{err};
$r = run_cmd([$admin, '--config=/nonexistent/x.conf', 'cache', 'verify']);
like($r->{err}, qr{/nonexistent/x\.conf}, '--config=FILE before the command is read') or diag $r->{err};

done_testing;
