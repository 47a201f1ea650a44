#!/usr/bin/perl
# The systemd units and the tmpfiles.d entry (conf/systemd/, conf/tmpfiles.d/).
# systemd need not be running: `systemd-analyze verify` reads unit files
# alone. The units are rendered with this build's programs in place of the
# installed ones (verify checks that ExecStart= is executable) and MANPATH
# pointing at the built man pages (verify runs `man` for Documentation=).
# verify exits 0 even for an unknown key, so any message is a failure.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $analyze = (grep { -x "$_/systemd-analyze" } split /:/, $ENV{PATH}) ? 'systemd-analyze' : undef;
plan skip_all => 'systemd-analyze is not installed (apt-get install systemd)' unless $analyze;

my $d = workdir() . '/systemd';
mkdir $d;
for my $sec (5, 8) { system('mkdir', '-p', "$d/man/man$sec") == 0 or die }
for my $p (qw(bloqr.fcgi.8 bloqr-admin.8 bloqr.conf.5)) {
	my ($sec) = $p =~ /(\d)$/;
	system('cp', builddir() . "/man/$p", "$d/man/man$sec/$p") == 0 or die "cp $p\n";
}
my %prog = (fcgi => program('cgi-bin/bloqr.fcgi'), admin => program('src/bloqr-admin'));
my @units = qw(bloqr.service bloqr-migrate.service);
for my $u (@units) {
	my $text = BloqrTest::_slurp(srcdir() . "/conf/systemd/$u.in") // die "no $u.in\n";
	$text =~ s{\@libexecdir\@/bloqr/bloqr\.fcgi}{$prog{fcgi}}g;
	$text =~ s{\@bindir\@/bloqr-admin}{$prog{admin}}g;
	$text =~ s{\@sysconfdir\@}{/etc}g;
	unlike($text, qr/\@\w+\@/, "$u.in: every \@var\@ is known to this test");
	BloqrTest::_spew("$d/$u", $text);
}

my $r = run_cmd([$analyze, 'verify', map { "$d/$_" } @units], env => { MANPATH => "$d/man" });
is($r->{rc}, 0, 'systemd-analyze verify exits 0');
is($r->{out} . $r->{err}, '', 'systemd-analyze verify: no message') or diag $r->{out} . $r->{err};

# The unit's promises, read from the file.
my $svc = BloqrTest::_slurp("$d/bloqr.service");
like($svc, qr/^Type=(?:notify|exec)$/m, 'bloqr.service: Type=notify or exec');
like($svc, qr{^ExecReload=/bin/kill -HUP \$MAINPID$}m, 'bloqr.service: reload is SIGHUP');
like($svc, qr/^ExecStart=\S+bloqr\.fcgi -c \S+ --listen /m, 'bloqr.service: runs the pool');
like($svc, qr/^User=bloqr$/m, 'bloqr.service: runs as bloqr');
like(BloqrTest::_slurp("$d/bloqr-migrate.service"), qr/^Type=oneshot$/m, 'bloqr-migrate.service is a oneshot');

# The sandbox, scored by systemd itself (0 = fully confined, 10 = none).
$r = run_cmd([$analyze, 'security', '--offline=true', '--no-pager', "$d/bloqr.service"],
	env => { MANPATH => "$d/man", SYSTEMD_COLORS => 0 });
my ($score) = ($r->{out} // '') =~ /Overall exposure level for \S+: ([\d.]+)/;
SKIP: {
	skip 'systemd-analyze security --offline is not supported here', 1 unless defined $score;
	cmp_ok($score, '<=', 2.0, "bloqr.service: systemd-analyze security exposure $score (<= 2.0)");
}

# tmpfiles.d: the two directories with their owners and modes, created in
# a scratch root (systemd-tmpfiles --root) that knows the users.
SKIP: {
	my $tmpfiles = (grep { -x "$_/systemd-tmpfiles" } split /:/, $ENV{PATH});
	skip 'systemd-tmpfiles is not installed', 3 unless $tmpfiles && $> == 0;
	my $root = "$d/root";
	system('mkdir', '-p', "$root/etc", "$root/run", "$root/var/lib") == 0 or die;
	my $passwd = BloqrTest::_slurp('/etc/passwd');
	my $group = BloqrTest::_slurp('/etc/group');
	$passwd .= "bloqr:x:64123:64123::/var/lib/bloqr:/usr/sbin/nologin\n" unless $passwd =~ /^bloqr:/m;
	$group .= "bloqr:x:64123:\n" unless $group =~ /^bloqr:/m;
	BloqrTest::_spew("$root/etc/passwd", $passwd);
	BloqrTest::_spew("$root/etc/group", $group);
	$r = run_cmd(['systemd-tmpfiles', '--create', "--root=$root", srcdir() . '/conf/tmpfiles.d/bloqr.conf']);
	is($r->{rc} . $r->{err}, '0', 'systemd-tmpfiles --create accepts conf/tmpfiles.d/bloqr.conf');
	my @run = stat "$root/run/bloqr";
	my @lib = stat "$root/var/lib/bloqr";
	my ($bloqr_uid) = $passwd =~ /^bloqr:x:(\d+):/m;
	my ($www_gid) = $group =~ /^www-data:x:(\d+):/m;
	is(sprintf('%04o %d %d', $run[2] & 07777, $run[4], $run[5]), sprintf('2750 %d %d', $bloqr_uid, $www_gid),
		'/run/bloqr: 2750 bloqr:www-data');
	is(sprintf('%04o %d', $lib[2] & 07777, $lib[4]), sprintf('0750 %d', $bloqr_uid), '/var/lib/bloqr: 0750 bloqr');
}

done_testing;
