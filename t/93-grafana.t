#!/usr/bin/perl
# conf/grafana-dashboard.json queries only what /metrics has: every metric
# name in every panel's PromQL, and every label it groups or filters by,
# is found in the output of a running pool (behind nginx, as deployed)
# after a few requests. conf/prometheus.yml.example scrapes what
# conf/nginx.conf.example serves. Also the listener gauge and the latency
# histogram by route that the dashboard draws.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use BloqrTest;

my $dash = decode_json(BloqrTest::_slurp(srcdir() . '/conf/grafana-dashboard.json')
    // die "no conf/grafana-dashboard.json\n");
is($dash->{uid}, 'bloqr-backend', 'the dashboard has a stable uid');
my @exprs;
for my $p (@{ $dash->{panels} }) {
	next if $p->{type} eq 'row';
	ok(@{ $p->{targets} || [] }, "panel '$p->{title}' has a query");
	push @exprs, map { [$p->{title}, $_->{expr}] } @{ $p->{targets} || [] };
}
for my $want ('Request rate by route', 'Latency p99 by route', 'Cache hit ratio by table',
	'Listener state', 'PostgreSQL errors and reconnects', 'Worker restarts') {
	ok((grep { $_->{title} eq $want } @{ $dash->{panels} }), "panel '$want' is there");
}

my $pg = pg_start();
my $conf = write_conf();
migrate($conf);
my $pool = pool_start($conf);
my $web = nginx_start(upstream => $pool->addr);
my $url = $web->{url};

# Traffic that makes every family have series: reads through the cache
# (once the syncer listens, so there are hits), a 404, a 401.
sub metrics_text { my $r = http(GET => "$url/metrics"); die "GET /metrics: $r->{status}\n" if $r->{status} != 200; $r->{content} }
ok(within(10, sub { metrics_text() =~ /^bloqr_cache_listener_up 1$/m }),
	'bloqr_cache_listener_up is 1 once the syncer listens');
for (1 .. 3) {
	http(GET => "$url/api/health");
	http(GET => "$url/api/deployments?limit=5");
	http(GET => "$url/api/version");
}
http(GET => "$url/api/no-such-route");
http(GET => "$url/api/admin/users");
my $m = metrics_text();

# series: name => [ { label => value } ... ]
my %series;
for my $line (split /\n/, $m) {
	next if $line =~ /^#/ || $line !~ /\S/;
	my ($name, $labels) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? \S+$/ or next;
	my %l = ($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
	push @{ $series{$name} }, \%l;
}
like($m, qr/^bloqr_http_route_duration_seconds_bucket\{route="GET \/api\/health",le="\+Inf"\} [1-9]/m,
	'latency histogram by route: GET /api/health has observations');
ok((grep { ($_->{result} // '') eq 'hit' } @{ $series{bloqr_cache_reads_total} || [] }),
	'bloqr_cache_reads_total has hits (the hit ratio has a numerator)');

# Labels Prometheus adds itself when it scrapes.
my %scrape_labels = map { $_ => 1 } qw(instance job service);
for my $e (@exprs) {
	my ($title, $expr) = @$e;
	my @names = $expr =~ /\b(bloqr_[a-z0-9_]+)\b/g;
	ok(@names, "'$title': queries a bloqr_ metric") or next;
	for my $n (@names) {
		ok($series{$n}, "'$title': $n is in /metrics") or next;
		# Labels matched in the selector of this metric, and grouped by.
		my ($sel) = $expr =~ /\b\Q$n\E\{([^}]*)\}/;
		my @labels = ($sel // '') =~ /(\w+)\s*[!=]~?\s*"/g;
		push @labels, map { split /\s*,\s*/ } $expr =~ /\bby \(([^)]*)\)/g;
		for my $l (grep { !$scrape_labels{$_} } @labels) {
			next if $l eq 'le' && $n !~ /_bucket$/;
			ok((grep { exists $_->{$l} } @{ $series{$n} }), "'$title': $n has the label $l");
		}
	}
}

# The scrape example targets what the nginx example serves.
my $prom = BloqrTest::_slurp(srcdir() . '/conf/prometheus.yml.example') // die "no conf/prometheus.yml.example\n";
my $nginx = BloqrTest::_slurp(srcdir() . '/conf/nginx.conf.example');
my ($listen) = $nginx =~ /^\s*listen\s+(\S+);/m;
like($prom, qr/^\s*metrics_path: \/metrics$/m, 'prometheus.yml.example scrapes /metrics');
like($prom, qr/^\s*- \Q$listen\E\b/m, "prometheus.yml.example targets nginx's listen ($listen)");

done_testing;
