#!/usr/bin/perl
# PostgreSQL goes away and comes back: health reports it down (503) without
# the pool restarting anything, and recovers by itself.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $s = stack(workers => 2);
my ($pg, $pool, $url) = @$s{qw(pg pool url)};

my $r = http(GET => "$url/api/health");
is($r->{status}, 200, 'healthy at first') or diag $r->{content};
my @workers;
poll(5, sub { @workers = $pool->worker_pids; @workers == 2 });
is(scalar @workers, 2, 'two workers');

$pg->stop('fast');
for my $try (1 .. 4) {    # more than one worker answers
	$r = http(GET => "$url/api/health");
	is($r->{status}, 503, "PostgreSQL down: health 503 (request $try)") or diag $r->{content};
	my $j = $r->{json} // {};
	is($j->{status}, 'down', 'overall down');
	is($j->{services}{database}{status}, 'down', 'database down');
	is($j->{services}{auth}{status}, 'down', 'auth down');
	is($j->{services}{gateway}{status}, 'healthy', 'gateway still healthy');
	like($j->{services}{cache}{status} // '', qr/^(healthy|degraded)$/, 'cache healthy or degraded, not down');
	unlike($r->{content}, qr{host=/|postgres(ql)?://|/tmp/|SQLSTATE}i, 'no connection details in the body');
}
$r = http(GET => "$url/api");
is($r->{status}, 200, 'GET /api still answers (needs no database)');

$pg->start;
my $back = poll(10, sub {
	my $h = http(GET => "$url/api/health");
	$h->{status} == 200 && ($h->{json}{status} // '') eq 'healthy' ? $h : 0;
}, 0.2);
ok($back, 'healthy again within 10 s of PostgreSQL coming back');
my $fail = 0;
for (1 .. 10) {
	$fail++ if http(GET => "$url/api/health")->{status} != 200;
}
is($fail, 0, 'every worker reconnected');
ok($pool->alive, 'master still running');
is(join(' ', sort { $a <=> $b } $pool->worker_pids), join(' ', sort { $a <=> $b } @workers),
	'same worker pids (reconnected, not restarted)');

done_testing;
