#!/usr/bin/perl
# /metrics is for loopback only (CONTRACT §4), and not only by the web
# server's word: the example nginx config's "location = /metrics" once let
# "/metrics/" through from any address. The service refuses a REMOTE_ADDR
# outside [http] metrics_allow (default: loopback) itself.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::FCGI;

my $S = stack(workers => 1);
my $pool = $S->{pool}->addr;

subtest 'through nginx, from an address nginx does not allow' => sub {
	for my $path ('/metrics', '/metrics/', '/%6detrics', '/%6Detrics/', '/metrics//') {
		my $r = http(GET => "$S->{url}$path", from => '127.0.0.7');
		like($r->{status}, qr/^40[34]$/, "$path from 127.0.0.7: refused ($r->{status})");
		unlike($r->{content}, qr/bloqr_requests_total/, "$path: no metrics in the answer");
	}
	my $r = http(GET => "$S->{url}/metrics");
	is($r->{status}, 200, '/metrics from 127.0.0.1: 200');
	like($r->{content}, qr/bloqr_/, 'with the metrics');
};

subtest 'forged REMOTE_ADDR straight to the pool' => sub {
	for my $path ('/metrics', '/metrics/', '/%6detrics') {
		for my $from ('192.0.2.1', '10.0.0.1', '::ffff:192.0.2.1', '2001:db8::1', '') {
			my $r = fcgi_request($pool, { REQUEST_URI => $path, REMOTE_ADDR => $from });
			# The router does not decode "%6d" in a fixed path: that is a 404.
			like($r->{status}, $path =~ /%/ ? qr/^40[34]$/ : qr/^403$/, "$path from '$from': refused ($r->{status})");
			unlike($r->{content}, qr/bloqr_requests_total/, '  without the metrics');
		}
	}
	for my $from ('127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1') {
		my $r = fcgi_request($pool, { REQUEST_URI => '/metrics', REMOTE_ADDR => $from });
		is($r->{status}, 200, "/metrics from $from: 200");
	}
};

subtest '[http] metrics_allow' => sub {
	my $conf = write_conf('http.metrics_allow' => '192.0.2.0/24 2001:db8::/32');
	my $p = pool_start($conf, workers => 1);
	is(fcgi_request($p->addr, { REQUEST_URI => '/metrics', REMOTE_ADDR => '192.0.2.77' })->{status}, 200,
		'an address in an allowed prefix: 200');
	is(fcgi_request($p->addr, { REQUEST_URI => '/metrics', REMOTE_ADDR => '2001:db8:1::5' })->{status}, 200,
		'an IPv6 address in an allowed prefix: 200');
	is(fcgi_request($p->addr, { REQUEST_URI => '/metrics', REMOTE_ADDR => '192.0.3.1' })->{status}, 403,
		'one outside: 403');
	is(fcgi_request($p->addr, { REQUEST_URI => '/metrics', REMOTE_ADDR => '127.0.0.1' })->{status}, 403,
		'loopback is no longer implied');
	$p->stop;
	my $bad = write_conf('http.metrics_allow' => '192.0.2.0/33');
	my $r = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $bad, '--listen', '127.0.0.1:' . free_port()], timeout => 10);
	isnt($r->{rc}, 0, 'a malformed prefix stops the program at start');
	like($r->{err}, qr/metrics_allow/, 'naming the key');
};

done_testing;
