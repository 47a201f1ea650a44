#!/usr/bin/perl
# The responder behind Apache mod_proxy_fcgi, configured by
# conf/apache.conf.example: the core checks, plus what Apache is known to
# get wrong (query strings, encoded slashes, its own error pages).
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $s = stack(web => 'apache', workers => 2);
my $url = $s->{url};

subtest 'health' => sub {
	my $r = http(GET => "$url/api/health");
	is($r->{status}, 200, 'GET /api/health 200') or diag $r->{content};
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	is($r->{json}{status}, 'healthy', 'healthy');
	is(ref $r->{json}{services}, 'HASH', 'services');
	ok(length($r->{headers}{'x-request-id'} // ''), 'X-Request-Id');

	$r = http(GET => "$url/api/health?verbose=1&x=%2F");
	is($r->{status}, 200, 'a query string is fine (no 403 from Apache)') or diag $r->{content};

	$r = http(GET => "$url/api");
	is($r->{status}, 200, 'GET /api 200');
	ok($r->{json} && $r->{json}{endpoints}, 'GET /api has endpoints');
};

subtest 'errors' => sub {
	json_error_ok(http(GET => "$url/api/no-such-thing"), 404, undef, 'unknown route: 404 JSON');
	json_error_ok(http(GET => "$url/api/no%2Fsuch%20thing"), 404, undef,
		'%2F in a path reaches the application (its 404 JSON, not Apache\'s)');
	my $r = http(POST => "$url/api/health", body => '{}',
		headers => { 'Content-Type' => 'application/json' });
	json_error_ok($r, 405, undef, 'POST /api/health: 405 JSON');
	like($r->{headers}{allow} // '', qr/(^|[ ,])GET([ ,]|$)/, 'Allow lists GET');
	json_error_ok(http(GET => "$url/api/" . ('a' x (30 * 1024))), 414, undef,
		'30 KiB request line: 414 JSON from Apache');
};

subtest 'X-Request-Id' => sub {
	my $r = http(GET => "$url/api/health", headers => { 'X-Request-Id' => 'abc-123' });
	is($r->{headers}{'x-request-id'}, 'abc-123', 'a valid incoming id is echoed');
	$r = http(GET => "$url/api/health", headers => { 'X-Request-Id' => 'not valid at all' });
	my $id = $r->{headers}{'x-request-id'} // '';
	ok(length $id && $id ne 'not valid at all', 'an invalid id is replaced');
};

subtest 'Authorization reaches the application (CGIPassAuth)' => sub {
	my $u = admin($s->{conf}, ['user', 'create', '--email', 'apache@example.com', '--role', 'admin']);
	is($u->{rc}, 0, 'user create') or diag $u->{err};
	my $t = admin($s->{conf}, ['token', 'create', '--email', 'apache@example.com']);
	is($t->{rc}, 0, 'token create') or diag $t->{err};
	chomp(my $token = $t->{out} // '');
	my $r = http(GET => "$url/api/auth/session", headers => { Authorization => "Bearer $token" });
	is($r->{status}, 200, 'GET /api/auth/session with a bearer token: 200') or diag $r->{content};
	is($r->{json} && $r->{json}{user} && $r->{json}{user}{email}, 'apache@example.com', 'the token\'s user');
	json_error_ok(http(GET => "$url/api/auth/session"), 401, undef, 'without the header: 401');
};

subtest 'metrics are for loopback only' => sub {
	my $r = http(GET => "$url/metrics");
	is($r->{status}, 200, 'GET /metrics 200 from 127.0.0.1');
	like($r->{content}, qr/^bloqr_http_requests_total\{/m, 'has request counters');
	json_error_ok(http(GET => "$url/metrics", from => '127.0.0.2'), 403, undef,
		'/metrics from 127.0.0.2: 403 JSON from Apache');
};

subtest 'backend down: JSON from Apache' => sub {
	ok(defined $s->{pool}->stop(12), 'pool stopped');
	my $r = http(GET => "$url/api/health");
	ok($r->{status} == 502 || $r->{status} == 503, "status $r->{status} (502 or 503)");
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	ok($r->{json} && !$r->{json}{success} && $r->{json}{error}, '{"success":false,"error":…}')
	    or diag $r->{content};
	ok(length($r->{headers}{'x-request-id'} // ''), 'X-Request-Id (from Apache)');
};

done_testing;
