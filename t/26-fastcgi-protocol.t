#!/usr/bin/perl
# The workers' own FastCGI record reader (libfcgi's blocking reads are
# gone, see t/25-slow-request.t): management records, roles other than
# responder, aborted requests and malformed streams, each answered as the
# FastCGI specification says, without disturbing the connection or the
# pool.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use BloqrTest;
use BloqrTest::FCGI;

my $pg = pg_start();
my $conf = write_conf('http.request_timeout' => 2);
migrate($conf);
my $pool = pool_start($conf, workers => 1);
my $addr = $pool->addr;
my %GET = (REQUEST_METHOD => 'GET', REQUEST_URI => '/api/health', SCRIPT_NAME => '', REMOTE_ADDR => '127.0.0.1');

sub health_on {
	my ($c, $id) = @_;
	$c->begin($id, 1);
	$c->params($id, %GET);
	$c->stdin($id, '');
	return $c->response(5)->{status};
}

subtest 'FCGI_GET_VALUES' => sub {
	my $c = BloqrTest::FCGI->connect($addr);
	$c->record(9, 0, fcgi_params(FCGI_MAX_CONNS => '', FCGI_MAX_REQS => '', FCGI_MPXS_CONNS => ''));
	my ($recs) = $c->records(10, 5);
	my ($res) = grep { $_->[0] == 10 } @$recs;
	ok($res, 'GET_VALUES_RESULT');
	like($res->[2] // '', qr/FCGI_MPXS_CONNS0/, 'no multiplexing');
	sleep 2.5;
	is(health_on($c, 1), 200, 'the connection stays usable past request_timeout (it was idle)');
};

subtest 'an unknown management record' => sub {
	my $c = BloqrTest::FCGI->connect($addr);
	$c->record(42, 0, 'x' x 8);
	my ($recs) = $c->records(11, 5);
	my ($u) = grep { $_->[0] == 11 } @$recs;
	ok($u && ord($u->[2]) == 42, 'FCGI_UNKNOWN_TYPE naming type 42');
	is(health_on($c, 1), 200, 'then a request on the same connection');
};

subtest 'a role other than responder' => sub {
	my $c = BloqrTest::FCGI->connect($addr);
	$c->record(1, 3, pack('nCx5', 2, 1));    # AUTHORIZER, keep the connection
	my ($recs) = $c->records(3, 5);
	my ($end) = grep { $_->[0] == 3 && $_->[1] == 3 } @$recs;
	ok($end, 'END_REQUEST');
	is($end && unpack('x4C', $end->[2]), 3, '  FCGI_UNKNOWN_ROLE');
	is(health_on($c, 4), 200, 'the connection is kept (FCGI_KEEP_CONN)');
};

subtest 'FCGI_ABORT_REQUEST in the middle of a body' => sub {
	my $c = BloqrTest::FCGI->connect($addr);
	$c->begin(1, 1);
	$c->params(1, %GET, REQUEST_METHOD => 'PUT', REQUEST_URI => '/api/storage/x', CONTENT_LENGTH => 100);
	$c->stdin(1, 'x' x 50);
	$c->record(2, 1, '');
	my ($recs) = $c->records(3, 5);
	my ($end) = grep { $_->[0] == 3 } @$recs;
	ok($end, 'END_REQUEST for the aborted request');
	ok(!grep({ $_->[0] == 6 } @$recs), '  and no answer: it never ran');
	is(health_on($c, 2), 200, 'the kept connection serves the next request');
};

subtest 'malformed streams close the connection and nothing else' => sub {
	for my $case ([ 'not FastCGI', "GET / HTTP/1.1\r\nHost: x\r\n\r\n" ],
	    [ 'a NUL inside a parameter', "\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
		. "\x01\x04\x00\x01\x00\x08\x00\x00" . "\x03\x03a\0bc\0d" . "\x01\x04\x00\x01\x00\x00\x00\x00"
		. "\x01\x05\x00\x01\x00\x00\x00\x00" ],
	    [ 'a second request before the first is whole', "\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
		. "\x01\x01\x00\x02\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" ]) {
		my ($name, $bytes) = @$case;
		my $c = BloqrTest::FCGI->connect($addr);
		$c->send_raw($bytes);
		my ($recs, $eof) = $c->records(3, 3);
		ok($eof, "$name: closed");
		ok(!grep({ $_->[0] == 6 } @$recs), '  without an answer');
	}
	is(fcgi_request($addr, { REQUEST_URI => '/api/health' })->{status}, 200, 'the pool still answers');
	ok($pool->alive, 'and is alive');
};

done_testing;
