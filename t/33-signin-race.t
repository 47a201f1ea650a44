#!/usr/bin/perl
# The per-address sign-in limit holds under concurrency (CONTRACT §3: 5
# failures per client address in 15 minutes): sign-ins from one address
# are serialised as those for one email are, so 12 wrong sign-ins sent at
# once with 12 different emails record exactly 5 failures, not 6 or more.
use strict;
use warnings;
use Test::More;
use POSIX ();
use BloqrTest;
use BloqrTest::Api;

my $S = stack(workers => 4);
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf}, timeout => 30);
mkuser('victim@t33.test', password => 'right-password-1') // BAIL_OUT('no user');

for my $round (1 .. 3) {
	my $from = fresh_addr();
	my $dir = workdir();
	my @kids;
	for my $i (1 .. 12) {
		my $pid = fork // die "fork: $!";
		if ($pid == 0) {
			# One known user among unknown ones: the per-email lock is no help.
			my $email = $i == 1 ? 'victim@t33.test' : "x$i-$round\@t33.test";
			my $r = signin($email, "wrong-$i", from => $from, headers => { 'X-Requested-With' => 'bloqr' });
			open my $fh, '>', "$dir/race-$round-$i" or POSIX::_exit(1);
			print $fh $r->{status};
			close $fh;
			POSIX::_exit(0);
		}
		push @kids, $pid;
	}
	waitpid($_, 0) for @kids;
	my %by;
	for my $i (1 .. 12) {
		open my $fh, '<', "$dir/race-$round-$i" or next;
		$by{ scalar <$fh> }++;
	}
	my $recorded = sql("SELECT count(*) FROM auth_attempts WHERE client_addr = '$from' AND NOT succeeded");
	is($recorded, 5, "round $round: exactly 5 failures recorded for $from");
	is($by{401} // 0, 5, "round $round: 5 answers 401");
	is($by{429} // 0, 7, "round $round: 7 answers 429")
		or diag join ', ', map { "$_: $by{$_}" } sort keys %by;
}

done_testing;
