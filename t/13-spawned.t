#!/usr/bin/perl
# Spawned mode: spawn-fcgi opens the FastCGI socket and starts bloqr.fcgi
# with it on standard input (as mod_fcgid does); nginx in front.
use strict;
use warnings;
use Test::More;
use BloqrTest;

my $spawn = (grep { -x } map { "$_/spawn-fcgi" } split(/:/, $ENV{PATH} // ''), '/usr/bin')[0];
plan skip_all => 'spawn-fcgi is not installed' unless $spawn;

my $pg = pg_start();
my $conf = write_conf();
migrate($conf);

my $port = free_port();
my $fcgi = bg_start([$spawn, '-n', '-a', '127.0.0.1', '-p', $port, '--', program('cgi-bin/bloqr.fcgi')],
	listen => "127.0.0.1:$port", name => 'spawned', env => { BLOQR_CONF => $conf });
my $web = nginx_start(upstream => "127.0.0.1:$port");
my $url = $web->{url};

my $r = http(GET => "$url/api/health");
is($r->{status}, 200, 'GET /api/health 200') or diag $r->{content};
is($r->{json} && $r->{json}{status}, 'healthy', 'healthy');
ok(length($r->{headers}{'x-request-id'} // ''), 'X-Request-Id');

my $fail = 0;
for (1 .. 10) {
	$fail++ if http(GET => "$url/api/health")->{status} != 200;
}
is($fail, 0, 'ten more requests served by the same process');
ok($fcgi->alive, 'the spawned responder is still running');
is(join(' ', $fcgi->worker_pids), '', 'it serves by itself (no worker children)');

json_error_ok(http(GET => "$url/api/nope"), 404, undef, 'unknown route: 404 JSON');
$r = http(POST => "$url/api/health", body => '{}', headers => { 'Content-Type' => 'application/json' });
json_error_ok($r, 405, undef, 'POST /api/health: 405 JSON');

my $took = $fcgi->stop(12);
ok(defined $took && $took <= 10, 'exits on SIGTERM within 10 s') or diag "took " . ($took // 'forever');

done_testing;
