#!/usr/bin/perl
# Hostile input: malformed JSON, invalid UTF-8, absurd nesting, a body that
# is not an object, missing fields. Each is a 400 whose JSON error names
# the problem without internal detail. POST /api/auth/sign-in validates its
# body before it touches the database.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $s = stack(workers => 2);
my $url = "$s->{url}/api/auth/sign-in";

sub post {
	my ($body, %h) = @_;
	return http(POST => $url, body => $body,
		headers => { 'Content-Type' => 'application/json', 'X-Requested-With' => 'bloqr', %h });
}

my $deep = ('[' x 10_000) . (']' x 10_000);
my $deep_obj = ('{"a":' x 10_000) . '1' . ('}' x 10_000);
my @cases = (
	['malformed JSON',         '{"email": "a@example.com", "password": ',       qr/json|parse|malformed|syntax|invalid/i],
	['trailing garbage',       '{"email":"a@example.com","password":"x"} xyz', qr/json|parse|malformed|syntax|invalid|trailing/i],
	['empty body',             '',                                            qr/json|body|empty|invalid/i],
	['invalid UTF-8',          qq({"email":"\xff\xfe\@example.com","password":"x"}), qr/utf-?8|encoding|invalid/i],
	['truncated UTF-8',        qq({"email":"a\xc3","password":"x"}),            qr/utf-?8|encoding|invalid/i],
	['10 000-deep array',      $deep,                                         qr/deep|nest|depth/i],
	['10 000-deep object',     $deep_obj,                                     qr/deep|nest|depth/i],
	['array body',             '[1, 2]',                                      qr/object/i],
	['string body',            '"email"',                                     qr/object/i],
	['null body',              'null',                                        qr/object/i],
	['number body',            '42',                                          qr/object/i],
	['missing email',          '{"password":"secret123"}',                    qr/email/i],
	['email not a string',     '{"email":42,"password":"secret123"}',          qr/email/i],
	['missing password',       '{"email":"a@example.com"}',                   qr/password/i],
);

for my $c (@cases) {
	my ($name, $body, $re) = @$c;
	json_error_ok(post($body), 400, $re, "$name: 400 naming the problem");
}

subtest 'the service is fine afterwards' => sub {
	my $r = http(GET => "$s->{url}/api/health");
	is($r->{status}, 200, 'health 200');
	ok($s->{pool}->alive, 'master alive');
	is(scalar(() = $s->{pool}->worker_pids), 2, 'two workers');
	my $m = http(GET => "$s->{url}/metrics")->{content};
	like($m, qr/^bloqr_worker_restarts_total(\{[^}]*\})? 0$/m, 'no worker crashed');
};

json_error_ok(http(GET => "$s->{url}/api/auth/no-such"), 404, undef, 'unknown route: 404');
my $r = http(GET => $url);
json_error_ok($r, 405, undef, 'GET sign-in: 405');
like($r->{headers}{allow} // '', qr/POST/, 'Allow: POST');
$r = http(PUT => "$s->{url}/api/health", body => '{}', headers => { 'Content-Type' => 'application/json' });
json_error_ok($r, 405, undef, 'PUT /api/health: 405');

done_testing;
