#!/usr/bin/perl
# CGI mode: bloqr.fcgi started as a plain CGI program serves one request
# from its environment and standard input and writes a CGI response.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use BloqrTest;

my $pg = pg_start();
my $conf = write_conf();
migrate($conf);
my $prog = program('cgi-bin/bloqr.fcgi');

# Run one CGI request; returns { status, headers (lower-case), content,
# json, rc, err }.
sub cgi {
	my ($method, $uri, %o) = @_;
	my ($path, $query) = $uri =~ /^([^?]*)(?:\?(.*))?$/;
	my $body = $o{body} // '';
	my %env = (
		GATEWAY_INTERFACE => 'CGI/1.1',
		SERVER_PROTOCOL   => 'HTTP/1.1',
		SERVER_SOFTWARE   => 'BloqrTest',
		SERVER_NAME       => '127.0.0.1',
		SERVER_PORT       => '80',
		REMOTE_ADDR       => '127.0.0.1',
		REQUEST_METHOD    => $method,
		REQUEST_URI       => $uri,
		SCRIPT_NAME       => '',
		PATH_INFO         => $path,
		QUERY_STRING      => $query // '',
		CONTENT_LENGTH    => length($body) ? length($body) : undef,
		CONTENT_TYPE      => $o{type},
		BLOQR_CONF        => $conf,
		%{ $o{env} || {} },
	);
	my $r = run_cmd([$prog], env => \%env, stdin => $body, timeout => 30);
	my %res = (rc => $r->{rc}, err => $r->{err}, headers => {}, raw => $r->{out});
	my ($head, $content) = split /\r?\n\r?\n/, $r->{out} // '', 2;
	for (split /\r?\n/, $head // '') {
		my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
		$res{headers}{ lc $k } = $v;
	}
	# CGI: no Status header means 200.
	($res{status}) = ($res{headers}{status} // '200') =~ /^(\d{3})/;
	$res{status} //= 0;
	$res{content} = $content // '';
	$res{json} = eval { JSON::PP->new->utf8->allow_nonref->decode($res{content}) }
	    if ($res{headers}{'content-type'} // '') =~ m{^application/json};
	return \%res;
}

my $r = cgi(GET => '/api/health');
is($r->{rc}, 0, 'exits 0') or diag $r->{err};
is($r->{status}, 200, 'GET /api/health: Status 200') or diag $r->{raw};
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'Content-Type JSON');
is($r->{json}{status}, 'healthy', 'healthy');
is($r->{json}{services}{database}{status}, 'healthy', 'database probed');
ok(length($r->{headers}{'x-request-id'} // ''), 'X-Request-Id');

$r = cgi(GET => '/api/health', env => { HTTP_X_REQUEST_ID => 'cgi-req-1' });
is($r->{headers}{'x-request-id'}, 'cgi-req-1', 'incoming X-Request-Id echoed');

$r = cgi(GET => '/api');
is($r->{status}, 200, 'GET /api: 200');
ok($r->{json} && $r->{json}{success}, 'GET /api: success');

$r = cgi(GET => '/api/nope?x=1');
is($r->{rc}, 0, 'unknown route: exits 0');
is($r->{status}, 404, 'unknown route: Status 404') or diag $r->{raw};
ok($r->{json} && JSON::PP::is_bool($r->{json}{success}) && !$r->{json}{success} && $r->{json}{error},
	'unknown route: JSON error body');

$r = cgi(POST => '/api/health', body => '{"a":1}', type => 'application/json');
is($r->{status}, 405, 'POST /api/health: Status 405 (body read from stdin)') or diag $r->{raw};
like($r->{headers}{allow} // '', qr/GET/, 'Allow header');

$r = cgi(HEAD => '/api/health');
is($r->{status}, 200, 'HEAD /api/health: 200');
is($r->{content}, '', 'HEAD: no body');

done_testing;
