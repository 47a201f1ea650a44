#!/usr/bin/perl
# The responder behind nginx, configured by conf/nginx.conf.example:
# discovery, health, routing errors, request ids, body limit, metrics, and
# the errors nginx answers itself.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $s = stack(workers => 2, conf => { 'http.max_body' => 1000 });
my $url = $s->{url};

sub has_request_id {
	my ($r, $name) = @_;
	ok(length($r->{headers}{'x-request-id'} // ''), "$name: has X-Request-Id");
}

subtest 'GET /api' => sub {
	my $r = http(GET => "$url/api");
	is($r->{status}, 200, 'status 200') or diag $r->{content};
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	my $j = $r->{json} // {};
	ok(JSON::PP::is_bool($j->{success}) && $j->{success}, 'success: true');
	ok(defined $j->{name} && length $j->{name}, 'name');
	ok(defined $j->{version} && length $j->{version}, 'version');
	is(ref $j->{endpoints}, 'HASH', 'endpoints is an object');
	for my $e ('GET /api', 'GET /api/health') {
		ok(exists $j->{endpoints}{$e}, "endpoints lists \"$e\"");
	}
	my @bad = grep { !/^(GET|HEAD|POST|PUT|PATCH|DELETE) \/\S*$/ } keys %{ $j->{endpoints} || {} };
	is("@bad", '', 'every endpoint key is "METHOD /path"');
	has_request_id($r, 'GET /api');
};

subtest 'GET /api/health' => sub {
	my $r = http(GET => "$url/api/health");
	is($r->{status}, 200, 'status 200') or diag $r->{content};
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	my $j = $r->{json} // {};
	is($j->{status}, 'healthy', 'overall healthy');
	ok(defined $j->{version}, 'version');
	like($j->{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'timestamp is ISO-8601 UTC');
	for my $svc (qw(gateway database cache auth)) {
		my $v = $j->{services}{$svc};
		is(ref $v, 'HASH', "services.$svc is an object") or next;
		is($v->{status}, 'healthy', "services.$svc healthy");
		if (exists $v->{latency_ms}) {
			ok(defined $v->{latency_ms} && $v->{latency_ms} =~ /^\d+(\.\d+)?$/,
				"services.$svc.latency_ms is a number ≥ 0");
		}
	}
	ok(exists $j->{services}{database}{latency_ms}, 'database probe reports latency_ms');
	has_request_id($r, 'health');

	my $h = http(HEAD => "$url/api/health");
	is($h->{status}, 200, 'HEAD /api/health 200');
	is($h->{content}, '', 'HEAD has no body');
	has_request_id($h, 'HEAD');
};

subtest 'routing errors' => sub {
	my $r = http(GET => "$url/api/no-such-thing");
	json_error_ok($r, 404, undef, 'unknown route: 404 JSON');
	$r = http(GET => "$url/nowhere/at/all?x=1");
	json_error_ok($r, 404, undef, 'unknown path outside /api: 404 JSON');

	$r = http(POST => "$url/api/health", body => '{}',
		headers => { 'Content-Type' => 'application/json' });
	json_error_ok($r, 405, undef, 'POST /api/health: 405 JSON');
	my $allow = $r->{headers}{allow} // '';
	like($allow, qr/(^|[ ,])GET([ ,]|$)/, "Allow lists GET ($allow)");
	unlike($allow, qr/POST/, 'Allow does not list POST');
	$r = http(DELETE => "$url/api");
	json_error_ok($r, 405, undef, 'DELETE /api: 405 JSON');
	like($r->{headers}{allow} // '', qr/GET/, 'Allow header on DELETE /api');
};

subtest 'X-Request-Id' => sub {
	my $r = http(GET => "$url/api/health", headers => { 'X-Request-Id' => 'abc-123' });
	is($r->{headers}{'x-request-id'}, 'abc-123', 'a valid incoming id is echoed');
	$r = http(GET => "$url/api/no-such-thing", headers => { 'X-Request-Id' => 'abc-124' });
	is($r->{headers}{'x-request-id'}, 'abc-124', 'echoed on errors too');

	my $long = 'a' x 200;
	$r = http(GET => "$url/api/health", headers => { 'X-Request-Id' => $long });
	my $id = $r->{headers}{'x-request-id'} // '';
	ok(length $id && $id ne $long, 'a 200-character id is replaced');
	ok(length $id <= 128, 'the replacement is short');

	$r = http(GET => "$url/api/health", headers => { 'X-Request-Id' => 'has spaces in it' });
	$id = $r->{headers}{'x-request-id'} // '';
	ok(length $id && $id ne 'has spaces in it', 'an id with spaces is replaced');
	like($id, qr/^[!-~]+$/, 'replacement is printable ASCII without spaces');

	my %seen;
	$seen{ http(GET => "$url/api")->{headers}{'x-request-id'} // '' }++ for 1 .. 5;
	is(scalar(grep { length } keys %seen), 5, 'generated ids are unique');
};

subtest 'body over max_body' => sub {
	my $r = http(POST => "$url/api/health", body => '{"x":"' . ('y' x 5000) . '"}',
		headers => { 'Content-Type' => 'application/json' });
	json_error_ok($r, 413, undef, '5000-byte body with max_body = 1000: 413 JSON');
	# nginx (client_max_body_size 2m) cuts off grossly oversized bodies itself.
	$r = http(POST => "$url/api/health", body => 'z' x (3 * 1024 * 1024),
		headers => { 'Content-Type' => 'application/json' });
	json_error_ok($r, 413, undef, '3 MiB body: 413 JSON from nginx');
};

subtest 'request line over 20 KiB: 414 JSON from nginx' => sub {
	my $r = http(GET => "$url/api/" . ('a' x (30 * 1024)));
	json_error_ok($r, 414, undef, '30 KiB request line: 414 JSON');
};

subtest 'metrics' => sub {
	my $before = 0;
	my $r = http(GET => "$url/metrics");
	is($r->{status}, 200, 'GET /metrics 200') or diag $r->{content};
	like($r->{headers}{'content-type'} // '', qr{^text/plain}, 'text/plain');
	$before = health_count($r->{content});

	my $fail = 0;
	for (1 .. 20) {
		$fail++ if http(GET => "$url/api/health")->{status} != 200;
	}
	is($fail, 0, '20 health requests succeeded');

	$r = http(GET => "$url/metrics");
	is($r->{status}, 200, 'GET /metrics 200');
	my $m = $r->{content};
	my $after = health_count($m);
	cmp_ok($after - $before, '>=', 20,
		'bloqr_http_requests_total{route="GET /api/health",status="200"} grew by ≥ 20 across both workers');
	like($m, qr/^# TYPE bloqr_http_requests_total counter$/m, 'requests_total has a TYPE line');
	like($m, qr/^bloqr_http_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d+/m,
		'latency histogram has a +Inf bucket');
	like($m, qr/^bloqr_http_request_duration_seconds_count(\{[^}]*\})? \d+/m, 'histogram _count');
	like($m, qr/^bloqr_http_request_duration_seconds_sum(\{[^}]*\})? [\d.e+-]+/m, 'histogram _sum');
	like($m, qr/^bloqr_worker_restarts_total(\{[^}]*\})? \d+/m, 'bloqr_worker_restarts_total');
	my @badlines = grep { !/^(#.*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?(\d+(\.\d+)?([eE][-+]?\d+)?|NaN|[+-]Inf))$/ }
	    grep { length } split /\n/, $m;
	is(scalar @badlines, 0, 'every line is valid Prometheus text') or diag join "\n", @badlines[0 .. ($#badlines > 9 ? 9 : $#badlines)];
};

subtest 'metrics are for loopback only' => sub {
	my $r = http(GET => "$url/metrics", from => '127.0.0.2');
	json_error_ok($r, 403, undef, '/metrics from 127.0.0.2: 403 JSON from nginx');
	is(http(GET => "$url/api/health", from => '127.0.0.2')->{status}, 200,
		'the API itself is open to other addresses');
};

subtest 'backend down: 502 JSON from nginx' => sub {
	ok(defined $s->{pool}->stop(12), 'pool stopped');
	json_error_ok(http(GET => "$url/api/health"), 502, undef, 'GET /api/health: 502 JSON');
};

# The value of the requests counter for GET /api/health with status 200.
sub health_count {
	my ($text) = @_;
	my $sum = 0;
	for my $line (split /\n/, $text) {
		next unless $line =~ /^bloqr_http_requests_total\{([^}]*)\} (\d+(?:\.\d+)?)$/;
		my ($labels, $v) = ($1, $2);
		my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		$sum += $v if ($l{route} // '') eq 'GET /api/health' && ($l{status} // '') eq '200';
	}
	return $sum;
}

done_testing;
