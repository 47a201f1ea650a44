#!/usr/bin/perl
# FastCGI connections kept open between requests (conf/nginx.conf.example:
# upstream keepalive + fastcgi_keep_conn): nginx reuses them instead of
# connecting for each request, and a worker about to wait on PostgreSQL
# passes its idle ones to the others, so a request that nginx sends on one
# of them is not held up behind a slow one. PostgreSQL, the pool (2
# workers) behind nginx.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use BloqrTest;
use BloqrTest::Api;

my $S = stack(workers => 2);
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf}, timeout => 30);
mkuser('admin@t23.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t23.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);

sub metric {
	my ($name) = @_;
	my $m = req(GET => '/metrics', bearer => undef)->{content} // '';
	return $m =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

subtest 'nginx reuses its FastCGI connections' => sub {
	my $before = metric('bloqr_fastcgi_connections_total');
	ok(defined $before, 'bloqr_fastcgi_connections_total in /metrics') or return;
	my $fail = 0;
	for (1 .. 50) {
		$fail++ if req(GET => '/api', bearer => undef)->{status} != 200;
	}
	is($fail, 0, '50 requests answered');
	my $after = metric('bloqr_fastcgi_connections_total');
	cmp_ok($after - $before, '<=', 3, 'over at most 3 new connections (' . ($after - $before) . ')');
};

subtest 'the pool answers a single request per connection too' => sub {
	# What Apache's mod_proxy_fcgi does by default: the worker closes the
	# connection after the answer. A raw FastCGI request without
	# FCGI_KEEP_CONN, then EOF expected.
	my $sock = IO::Socket::INET->new(PeerAddr => $S->{pool}->addr, Timeout => 5) or die "connect: $!";
	my $params = '';
	for my $kv ([ REQUEST_METHOD => 'GET' ], [ REQUEST_URI => '/api' ], [ SCRIPT_NAME => '' ],
	    [ SERVER_PROTOCOL => 'HTTP/1.1' ]) {
		$params .= chr(length $kv->[0]) . chr(length $kv->[1]) . $kv->[0] . $kv->[1];
	}
	my $rec = sub { my ($type, $body) = @_; pack('CCnnCC', 1, $type, 1, length $body, 0, 0) . $body };
	print $sock $rec->(1, pack('nCx5', 1, 0)), $rec->(4, $params), $rec->(4, ''), $rec->(5, '');
	my ($all, $buf) = ('');
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 5;
	my $eof = eval { $all .= $buf while sysread($sock, $buf, 65536); 1 };
	alarm 0;
	ok($eof, 'the worker closes the connection after the answer');
	like($all, qr/Status: 200/, 'and the answer was there');
};

subtest 'a request is not held up behind a slow one' => sub {
	# Warm up with a few parallel requests so that both workers hold kept
	# connections, then keep one worker busy with a 3-second query.
	for (1 .. 3) {
		my @kids = map { my $p = fork // die; if (!$p) { req(GET => '/api/health') for 1 .. 5; POSIX::_exit(0) } $p } 1 .. 4;
		waitpid($_, 0) for @kids;
	}
	my $handed = metric('bloqr_fastcgi_handoffs_total') // 0;
	my $mark = workdir() . '/slow-done';
	my $slow = fork // die "fork: $!";
	if ($slow == 0) {
		my $r = req(POST => '/api/admin/storage/query', json => { sql => 'SELECT pg_sleep(3)' });
		open my $fh, '>', $mark;
		print $fh $r->{status};
		close $fh;
		POSIX::_exit(0);
	}
	# Until PostgreSQL runs it: its worker has handed its idle connections
	# over by then.
	ok(poll(10, sub { sql(q{SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
		AND query LIKE '%pg_sleep(3)%' AND query NOT LIKE '%pg_stat_activity%'}) eq '1' }),
		'the slow query is running');
	my ($fail, $n) = (0, 0);
	for (1 .. 20) {
		$n++;
		$fail++ if req(GET => '/api/health', bearer => undef)->{status} != 200;
		last if -e $mark;
	}
	my $slow_done_first = -e $mark;
	waitpid($slow, 0);
	is($fail, 0, '20 requests made meanwhile succeed');
	ok(!$slow_done_first, "all $n of them were answered while the slow query still ran");
	is(do { local (@ARGV, $/) = ($mark); <> }, '200', 'the slow query itself succeeds');
	cmp_ok(metric('bloqr_fastcgi_handoffs_total') // 0, '>', $handed,
		'idle connections were handed over (bloqr_fastcgi_handoffs_total)');
};

done_testing();
