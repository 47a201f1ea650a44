#!/usr/bin/perl
# The man pages bloqr.fcgi(8), bloqr-admin(8), bloqr.conf(5) (built from
# man/*.in): no warning from mandoc's lint nor from man --warnings (groff),
# and they document every configuration key, every command-line option of
# bloqr.fcgi and every bloqr-admin command.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my %page = map { $_ => builddir() . "/man/$_" } qw(bloqr.fcgi.8 bloqr-admin.8 bloqr.conf.5);
for my $p (sort keys %page) {
	ok(-s $page{$p}, "$p is built") or BAIL_OUT("$page{$p} missing: run make");
}

SKIP: {
	my $mandoc = grep { -x "$_/mandoc" } split /:/, $ENV{PATH};
	skip 'mandoc is not installed (apt-get install mandoc)', scalar(keys %page) unless $mandoc;
	for my $p (sort keys %page) {
		my $r = run_cmd(['mandoc', '-T', 'lint', '-W', 'warning', $page{$p}]);
		# "referenced manual not found" is a STYLE message, below -W warning.
		is($r->{out} . $r->{err}, '', "mandoc -T lint: $p has no warning");
	}
}
SKIP: {
	my $man = grep { -x "$_/man" } split /:/, $ENV{PATH};
	my $groff = grep { -x "$_/groff" } split /:/, $ENV{PATH};
	skip 'man or groff is not installed', scalar(keys %page) unless $man && $groff;
	for my $p (sort keys %page) {
		my $r = run_cmd(['man', '--warnings', '-E', 'UTF-8', '-l', $page{$p}],
			env => { MANWIDTH => 80, MAN_KEEP_FORMATTING => undef, PAGER => 'cat' });
		is($r->{rc}, 0, "man --warnings -l $p exits 0");
		is($r->{err}, '', "man --warnings: $p has no warning");
	}
}

sub slurp { BloqrTest::_slurp($_[0]) // die "cannot read $_[0]\n" }

# An installation path may be longer than a line (make distcheck installs
# under a deep prefix): the build puts groff's break point \: after each
# '/' of the substituted directories, so the pages above stay warning-free
# whatever the prefix.
for my $p (sort keys %page) {
	my @in = split /\n/, slurp(srcdir() . "/man/$p.in");
	my @out = split /\n/, slurp($page{$p});
	my @bare = map { $out[$_] } grep { $in[$_] =~ /\@\w+dir\@/ && $out[$_] !~ m{/\\:} } 0 .. $#in;
	is("@bare", '', "$p: every installation path can break after a '/'");
}

# Every key of the configuration table (src/config.c) is an item of its
# section in bloqr.conf(5).
my $conf5 = slurp($page{'bloqr.conf.5'});
my %sections;
for my $chunk (split /^\.Ss /m, $conf5) {
	my ($name) = $chunk =~ /\A\\&\[(\w+)\]/ or next;
	$sections{$name} = $chunk;
}
my @keys = slurp(srcdir() . '/src/config.c') =~ /^\s*\{ "(\w+)", "(\w+)", T_/mg;
ok(@keys >= 10, 'src/config.c has its key table (' . @keys / 2 . ' keys)');
while (my ($s, $k) = splice @keys, 0, 2) {
	like($sections{$s} // '', qr/^\.It Cm \Q$k\E\b/m, "bloqr.conf(5) documents [$s] $k");
}

# Every environment override of the configuration (src/config.c) is in
# bloqr.conf(5) and in both programs' pages.
my @envs = slurp(srcdir() . '/src/config.c') =~ /^\s*\{ "(BLOQR_\w+)", "\w+", "\w+" \}/mg;
ok(@envs >= 2, 'src/config.c has its environment overrides (' . scalar(@envs) . ')');
for my $e (@envs) {
	for my $p (qw(bloqr.conf.5 bloqr.fcgi.8 bloqr-admin.8)) {
		like(slurp($page{$p}), qr/^\.(?:It )?Ev \Q$e\E\b/m, "$p documents \$$e");
	}
}

# Every long option of bloqr.fcgi (its getopt table) is in bloqr.fcgi(8).
my $fcgi8 = slurp($page{'bloqr.fcgi.8'});
my @opts = slurp(srcdir() . '/cgi-bin/bloqr.c') =~ /^\s*\{ "([a-z-]+)", (?:no|required)_argument/mg;
ok(@opts >= 5, 'bloqr.c has its option table');
like($fcgi8, qr/Fl -\Q$_\E\b/, "bloqr.fcgi(8) documents --$_") for @opts;

# Every bloqr-admin command (its usage) is in bloqr-admin(8).
my $admin8 = slurp($page{'bloqr-admin.8'});
my $usage = run_cmd([program('src/bloqr-admin'), '--help'])->{out};
my @cmds = $usage =~ /^  ([a-z]+(?: [a-z]+)?) (?:-|\[|$)/mg;
ok(@cmds >= 5, 'bloqr-admin --help lists its commands');
for my $c (@cmds) {
	my $mdoc = join ' ', map { "Cm $_" } split / /, $c;
	$mdoc =~ s/ Cm / /;
	like($admin8, qr/^\.It \Q$mdoc\E\b/m, "bloqr-admin(8) documents '$c'");
}

done_testing;
