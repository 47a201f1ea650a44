#!/usr/bin/perl
# CGI mode under Apache's mod_cgid: a query string without '=' reaches the
# program as command-line arguments, which CGI mode must ignore (CONTRACT
# §1). "?--listen+127.0.0.1:PORT+--workers+1" once started a pool.
use strict;
use warnings;
use Test::More;
use File::Copy qw(copy);
use BloqrTest;

plan skip_all => 'mod_cgid is not installed' unless -e '/usr/lib/apache2/modules/mod_cgid.so';

my $pg = pg_start();
my $conf = write_conf('cache.path' => '');
migrate($conf);
chmod 0644, $conf;

my $web = apache_start(modules => ['cgid'], vhost => sub {
	my ($port, $dir) = @_;
	mkdir "$dir/cgi";
	chmod 0755, "$dir/cgi";
	copy(program('cgi-bin/bloqr.fcgi'), "$dir/cgi/bloqr.fcgi") or die "copy: $!\n";
	chmod 0755, "$dir/cgi/bloqr.fcgi";
	return <<"EOF2";
Listen 127.0.0.1:$port
ScriptSock $dir/run/cgisock
<VirtualHost 127.0.0.1:$port>
    ServerName localhost
    ScriptAlias /cgi-bin/ $dir/cgi/
    SetEnv BLOQR_CONF $conf
    <Directory $dir/cgi>
        Options +ExecCGI
        Require all granted
    </Directory>
    ErrorLog $dir/bloqr-error.log
</VirtualHost>
EOF2
});

my $r = http(GET => "$web->{url}/cgi-bin/bloqr.fcgi/api/health");
isnt($r->{status}, 500, 'plain CGI request answers') or diag $r->{content};

my $port = free_port();
my $t0 = time;
$r = http(GET => "$web->{url}/cgi-bin/bloqr.fcgi?--listen+127.0.0.1:$port+--workers+1", timeout => 10);
ok(time - $t0 < 8, 'the request with options in its query string is answered at once');
like($r->{status}, qr/^(?:200|404)$/, "answered normally ($r->{status})") or diag $r->{content};
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'with a JSON body');
sleep 1;
ok(!listening("127.0.0.1:$port"), "nothing listens on 127.0.0.1:$port");

$r = http(GET => "$web->{url}/cgi-bin/bloqr.fcgi?-c+/etc/passwd", timeout => 10);
like($r->{status}, qr/^(?:200|404)$/, "?-c+/etc/passwd: answered normally ($r->{status}), no config read from it")
	or diag $r->{content};

done_testing;
