#!/usr/bin/perl
# Conditional GET (docs/CONDITIONAL-GET.md, RFC 9110 §13.1.2): every 200
# read through the L1 cache carries a strong ETag of its body; a request
# whose If-None-Match names it gets 304 with no body, still with ETag,
# X-Cache, Cache-Control and nosniff. A 304 HIT costs no PostgreSQL round
# trip (the workers' own backends in pg_stat_activity do not move), and an
# old tag never gets a 304 after a change: at once after a write through
# the same host, within 2 s (CONTRACT §5.2) after a write through another
# host or with psql. Weak tags, lists, "*" and malformed fields; Apache
# (mod_proxy_fcgi) as well as nginx; a STALE answer keeps its tag. Two hosts
# (a pool of 2 workers behind nginx each, own cache files) on one
# PostgreSQL.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $PG = pg_start();
my $CONF_A = write_conf();
migrate($CONF_A);
my $CONF_B = write_conf();
api_setup(pg => $PG, conf => $CONF_A);
mkuser('admin@t57.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t57.test') // BAIL_OUT('no admin token');
for my $n (1 .. 3) {
	my $r = admin($CONF_A, ['deploy', 'record', '--version', "1.0.$n", '--commit', "c0ffee$n",
		'--branch', 'main', '--by', 'seed']);
	die "deploy record: $r->{err}" if $r->{rc};
}
sql(q{INSERT INTO storage_entries (key, data) VALUES ('k', '{"v":1}')});
sql(q{INSERT INTO filter_cache (source, content, hash) VALUES ('https://lists.example/a.txt', '||a.example^', 'h1')});
sql(q{INSERT INTO compilation_metadata (config_name, source_count, rule_count, duration) VALUES ('seed', 1, 10, 100)});

my $HOST_A = host_start($CONF_A, workers => 2);
my $HOST_B = host_start($CONF_B, workers => 2);
my ($A, $B) = ($HOST_A->{url}, $HOST_B->{url});
api_setup(url => $A, bearer => $ADMIN);
cache_ready($A, 'host A');
cache_ready($B, 'host B');

my $LIST = '/api/deployments?limit=50';
my $FILTER = '/api/filter-cache?source=' . pct_encode('https://lists.example/a.txt');
# The cached reads, and whether they are public (no token).
my @CACHED = ([$LIST, 1], ['/api/version', 1], ['/api/deployments/stats', 1],
	['/api/storage/k', 0], [$FILTER, 0], ['/api/compilations?configName=seed', 0]);
my $TAG = qr/^"[0-9a-f]{32}"$/;

# ------------------------------------------------------------ helpers --

# GET (or HEAD with method => 'HEAD') $path on $base with If-None-Match
# $inm (undef: none); public reads go without the token.
sub get {
	my ($base, $path, $inm, %o) = @_;
	my $public = grep { $_->[0] eq $path && $_->[1] } @CACHED;
	return req($base, $o{method} // 'GET', $path, ($public ? (bearer => undef) : ()),
		headers => { defined $inm ? ('If-None-Match' => $inm) : () });
}

sub etag { $_[0]{headers}{etag} // '(none)' }

# Read $path on $base until it is a HIT (5 s at most); the HIT.
sub hit {
	my ($base, $path) = @_;
	my $r;
	within(5, sub { $r = get($base, $path); x_cache($r) eq 'HIT' });
	return $r;
}

# What the pool's workers have done on PostgreSQL: their backends
# (application_name bloqr) with the start of their last statement and of
# their last change of state. Unchanged = no round trip in between.
sub worker_backends {
	return sql(q{SELECT string_agg(pid || ' ' || backend_start || ' ' || coalesce(query_start::text, '-')
	    || ' ' || coalesce(state_change::text, '-'), E'\n' ORDER BY pid)
	    FROM pg_stat_activity WHERE application_name = 'bloqr'});
}

# The raw answer to a GET through nginx, for what HTTP::Tiny would hide
# (a body or chunked framing after a 304).
sub raw_get {
	my ($base, $path, @headers) = @_;
	my ($host, $port) = $base =~ m{^http://([^:/]+):(\d+)} or die "bad base $base\n";
	my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 10) or die "connect: $!\n";
	print $s join("\r\n", "GET $path HTTP/1.1", "Host: $host:$port", 'Connection: close', @headers, '', '');
	local $/;
	my $all = <$s> // '';
	close $s;
	return $all;
}

# ------------------------------------------------------------- tests --

subtest 'every cached read carries a strong ETag of its body' => sub {
	for my $c (@CACHED) {
		my ($path) = @$c;
		my $r = hit($A, $path);
		is($r->{status}, 200, "$path: 200") or diag show($r);
		is(x_cache($r), 'HIT', "$path: a HIT");
		like(etag($r), $TAG, "$path: ETag is a quoted 128-bit hex tag");
		my $again = get($A, $path);
		is(etag($again), etag($r), "$path: the same body, the same tag");
		my $head = get($A, $path, undef, method => 'HEAD');
		is($head->{status}, 200, "$path: HEAD 200");
		is(etag($head), etag($r), "$path: HEAD has the GET's tag");
		my $rb = hit($B, $path);
		is($rb->{content}, $r->{content}, "$path: host B serves the same body")
		    and is(etag($rb), etag($r), "$path: and the same tag");
	}
	isnt(etag(get($A, $LIST)), etag(get($A, '/api/deployments?limit=1')), 'another query, another body, another tag');
	for my $path ('/api', '/api/health', '/api/admin/users', '/api/admin/cache/status') {
		my $r = req($A, GET => $path);
		is($r->{status}, 200, "$path: 200") or diag show($r);
		ok(!defined $r->{headers}{etag}, "$path (not read through the cache): no ETag");
	}
	my $r = req($A, GET => '/api/storage/nothing-here');
	is($r->{status}, 404, 'an unknown key: 404');
	ok(!defined $r->{headers}{etag}, 'an error has no ETag');
	$r = req($A, GET => '/api/storage/nothing-here', headers => { 'If-None-Match' => '*' });
	is($r->{status}, 404, 'If-None-Match: * on an unknown key: still 404');
};

subtest 'If-None-Match naming the tag: 304, no body, the headers of the 200' => sub {
	for my $c (@CACHED) {
		my ($path, $public) = @$c;
		my $r = hit($A, $path);
		my $tag = etag($r);
		my $nm = get($A, $path, $tag);
		is($nm->{status}, 304, "$path: 304") or diag show($nm);
		is($nm->{content}, '', "$path: no body");
		is(etag($nm), $tag, "$path: ETag kept");
		is(x_cache($nm), 'HIT', "$path: X-Cache HIT");
		is($nm->{headers}{'x-content-type-options'}, 'nosniff', "$path: nosniff");
		is($nm->{headers}{'cache-control'}, $r->{headers}{'cache-control'},
			"$path: Cache-Control as on the 200 (" . ($r->{headers}{'cache-control'} // 'none') . ')');
		ok(!defined $nm->{headers}{'content-type'}, "$path: no Content-Type");
		my $head = get($A, $path, $tag, method => 'HEAD');
		is($head->{status}, 304, "$path: HEAD 304 too");
	}
	is($_->{status}, 304, 'host B answers 304 to the tag host A gave') for get($B, $LIST, etag(get($A, $LIST)));

	# On the wire, through nginx: headers and nothing after them.
	my $tag = etag(hit($A, $LIST));
	my $raw = raw_get($A, $LIST, "If-None-Match: $tag");
	my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
	like($head, qr{^HTTP/1\.1 304 }, 'raw: HTTP/1.1 304');
	like($head, qr{^ETag: \Q$tag\E\r?$}mi, 'raw: the ETag');
	unlike($head, qr{^Transfer-Encoding:}mi, 'raw: not chunked');
	unlike($head, qr{^Content-Length: *[1-9]}mi, 'raw: no Content-Length of a body');
	is($rest // '', '', 'raw: no body after the headers');
};

subtest 'a 304 HIT makes no PostgreSQL round trip' => sub {
	my @paths = ($LIST, '/api/version', '/api/deployments/stats', '/api/storage/k', $FILTER);
	my %tag = map { $_ => etag(hit($A, $_)) } @paths;
	# Twice per worker at least, so both workers have each read memoised
	# and the token's credential cached.
	get($A, $_) for (@paths) x 4;
	my $before = worker_backends();
	like($before, qr/^\d+ .*\n\d+ /, 'both workers have a PostgreSQL backend') or diag $before;
	my (%status, %xc);
	for (1 .. 20) {
		for my $p (@paths) {
			my $r = get($A, $p, $tag{$p});
			$status{$r->{status}}++;
			$xc{x_cache($r)}++;
		}
	}
	my $after = worker_backends();
	is_deeply(\%status, { 304 => 100 }, '100 conditional GETs: all 304') or diag explain \%status;
	is_deeply(\%xc, { HIT => 100 }, 'all HITs') or diag explain \%xc;
	is($after, $before, "the workers' backends ran nothing meanwhile")
	    or diag "before:\n$before\nafter:\n$after";
	# The check sees a round trip when there is one: the users list
	# always asks PostgreSQL.
	is(req($A, GET => '/api/admin/users')->{status}, 200, 'GET /api/admin/users (always PostgreSQL)');
	isnt(worker_backends(), $after, 'and that one shows in the backends');
};

subtest 'a write through the same host: the old tag no longer matches, at once' => sub {
	for my $i (1 .. 6) {
		my $old = hit($A, '/api/storage/k');
		get($A, '/api/storage/k', etag($old)) for 1 .. 2;    # both workers remember it
		my $r = req($A, PUT => '/api/storage/k', json => { data => { v => "a$i" } });
		is($r->{status}, 200, "PUT k v=a$i") or diag show($r);
		my $new = get($A, '/api/storage/k', etag($old));
		is($new->{status}, 200, "v=a$i: the old tag gets 200") or diag show($new);
		is($new->{json}{entry}{data}{v}, "a$i", "v=a$i: with the new body");
		like(etag($new), $TAG, "v=a$i: and a tag");
		isnt(etag($new), etag($old), "v=a$i: another tag");
		is(get($A, '/api/storage/k', etag($new))->{status}, 304, "v=a$i: the new tag gets 304");
	}
	for my $i (1 .. 4) {
		my $old = hit($A, $LIST);
		get($A, $LIST, etag($old)) for 1 .. 2;
		my $r = req($A, POST => '/api/deployments', json => { version => "2.0.$i", gitCommit => "d$i",
			gitBranch => 'main', deployedBy => 't57' });
		is($r->{status}, 201, "POST deployment 2.0.$i") or diag show($r);
		my $new = get($A, $LIST, etag($old));
		is($new->{status}, 200, "2.0.$i: the old list tag gets 200") or diag show($new);
		is($new->{json}{deployments}[0]{id}, $r->{json}{deployment}{id}, "2.0.$i: the list starts with it");
		isnt(etag($new), etag($old), "2.0.$i: another tag");
		my $v = get($A, '/api/version', etag($old));
		is($v->{json}{fullVersion}, "2.0.$i+build.1", "2.0.$i: /api/version shows it");
	}
};

# Poll $path on $base with the old tag until the answer is a 200 that
# $is_new accepts; the seconds it took, or undef after 2 s.
sub stops_matching {
	my ($base, $path, $tag, $is_new) = @_;
	my $last;
	my $took = within(2, sub {
		$last = get($base, $path, $tag);
		$last->{status} == 200 && $is_new->($last);
	});
	diag 'last: ' . show($last) unless defined $took;
	return $took;
}

subtest 'a write through another host: the old tag stops matching within 2 s' => sub {
	my $old = hit($A, '/api/storage/k');
	is(get($A, '/api/storage/k', etag($old))->{status}, 304, 'A: 304 for the current tag');
	my $r = req($B, PUT => '/api/storage/k', json => { data => { v => 'b' } });
	is($r->{status}, 200, 'PUT k v=b on B') or diag show($r);
	my $took = stops_matching($A, '/api/storage/k', etag($old), sub { $_[0]{json}{entry}{data}{v} eq 'b' });
	ok(defined $took, 'A: 200 with v=b within 2 s');
	note(sprintf 'took %.2f s', $took) if defined $took;

	my $oldlist = hit($A, $LIST);
	my $oldstats = hit($A, '/api/deployments/stats');
	$r = req($B, POST => '/api/deployments', json => { version => '3.0.0', gitCommit => 'e1',
		gitBranch => 'main', deployedBy => 't57' });
	is($r->{status}, 201, 'POST deployment on B') or diag show($r);
	my $id = $r->{json}{deployment}{id} // 'none';
	ok(defined stops_matching($A, $LIST, etag($oldlist), sub { ($_[0]{json}{deployments}[0]{id} // '') eq $id }),
		"A: the old list tag gets 200 with B's deployment first within 2 s");
	ok(defined stops_matching($A, '/api/deployments/stats', etag($oldstats),
		sub { ($_[0]{json}{latestVersion} // '') eq '3.0.0+build.1' }), 'A: and the stats within 2 s');
};

subtest 'a psql change: the old tag stops matching on both hosts within 2 s' => sub {
	my %old = map { $_ => etag(hit($_, $FILTER)) } $A, $B;
	is(get($_, $FILTER, $old{$_})->{status}, 304, 'a 304 before') for $A, $B;
	sql(q{UPDATE filter_cache SET content = '||b.example^' WHERE source = 'https://lists.example/a.txt'});
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		ok(defined stops_matching($base, $FILTER, $old{$base}, sub { $_[0]{json}{entry}{content} eq '||b.example^' }),
			"$h: the old filter tag gets 200 with the new content within 2 s");
	}
	my %oldc = map { $_ => etag(hit($_, '/api/compilations?configName=seed')) } $A, $B;
	sql(q{UPDATE compilation_metadata SET rule_count = 11 WHERE config_name = 'seed'});
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		ok(defined stops_matching($base, '/api/compilations?configName=seed', $oldc{$base},
			sub { ($_[0]{json}{compilations}[0]{ruleCount} // 0) == 11 }), "$h: the compilations too");
	}
	my $old = etag(hit($A, '/api/storage/k'));
	sql(q{DELETE FROM storage_entries WHERE key = 'k'});
	my $last;
	ok(defined within(2, sub { ($last = get($A, '/api/storage/k', $old))->{status} == 404 }),
		'A: a deleted entry answers 404 to its old tag within 2 s') or diag show($last);
};

subtest 'If-None-Match by RFC 9110: lists, weak tags, "*", malformed fields' => sub {
	my $r = hit($A, $LIST);
	my $tag = etag($r);
	(my $hex = $tag) =~ s/"//g;
	my $other = '"' . ('0' x 32) . '"';
	my @cases = (
		[$tag, 304, 'the tag'],
		["W/$tag", 304, 'the tag as a weak tag (weak comparison)'],
		["$other, W/\"x\", $tag", 304, 'in a list'],
		["  $tag ,,", 304, 'with spaces and empty elements'],
		['*', 304, '"*"'],
		[$other, 200, 'another tag'],
		["$other, W/\"x\"", 200, 'a list without it'],
		[$hex, 200, 'unquoted (malformed)'],
		["w/$tag", 200, 'a lower-case weak prefix (malformed)'],
		["$tag, bogus", 200, 'the tag beside something malformed'],
		["\"$hex", 200, 'unterminated'],
		["*, $tag", 200, '"*" in a list (malformed)'],
		[uc($tag), 200, 'upper case (another tag)'],
		['', 200, 'empty'],
	);
	for my $c (@cases) {
		my ($inm, $want, $name) = @$c;
		my $g = get($A, $LIST, $inm);
		is($g->{status}, $want, "$name: $want") or diag show($g);
		is(etag($g), $tag, "$name: the ETag");
		if ($want == 200) {
			is($g->{content}, $r->{content}, "$name: the whole body");
		}
	}
	my $g = get($A, $LIST, (' ' x 6000) . $tag);
	is($g->{status}, 304, 'a long field (6000 bytes) is read');
};

subtest 'through Apache (mod_proxy_fcgi) too' => sub {
	# A third pool on host A's configuration (its cache file) behind Apache.
	my $ap = host_start($CONF_A, workers => 1, web => 'apache');
	my $C = $ap->{url};
	my $r = hit($C, $LIST);
	is($r->{status}, 200, 'Apache: 200') or diag show($r);
	is(etag($r), etag(get($A, $LIST)), "Apache: nginx's tag for the same body");
	my $nm = get($C, $LIST, etag($r));
	is($nm->{status}, 304, 'Apache: 304') or diag show($nm);
	is(etag($nm), etag($r), 'Apache: with the ETag');
	is(x_cache($nm), 'HIT', 'Apache: and X-Cache');
	my ($head, $rest) = split /\r\n\r\n/, raw_get($C, $LIST, 'If-None-Match: ' . etag($r)), 2;
	like($head, qr{^HTTP/1\.1 304 }, 'Apache raw: 304');
	unlike($head, qr{^Transfer-Encoding:}mi, 'Apache raw: not chunked');
	is($rest // '', '', 'Apache raw: no body');
	$ap->{web}->stop;
	$ap->{pool}->stop;
};

subtest 'PostgreSQL down: the stale copy keeps its tag' => sub {
	my $r = req($A, PUT => '/api/storage/seen', json => { data => 'x' });
	ok($r->{status} == 201 || $r->{status} == 200, 'PUT seen') or diag show($r);
	$r = hit($A, '/api/storage/seen');
	my $tag = etag($r);
	$PG->stop;
	my $last;
	ok(defined within(10, sub { x_cache($last = get($A, '/api/storage/seen')) eq 'STALE' }),
		'PostgreSQL stopped: the entry answers STALE') or diag show($last);
	is(etag($last), $tag, 'with the same tag');
	$last = get($A, '/api/storage/seen', $tag);
	is($last->{status}, 304, 'which gets 304') or diag show($last);
	is(x_cache($last), 'STALE', 'saying STALE');
	$PG->start;
	ok(within(10, sub { listener_connected($A) }), 'PostgreSQL back: the listener reconnects');
};

done_testing();
