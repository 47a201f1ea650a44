#!/usr/bin/perl
# Admin storage endpoints (CONTRACT §4 "Admin storage", §2): stats (counts
# include expired rows), clear-expired and clear-cache (one PostgreSQL
# transaction, audited, and gone from this host's L1 cache at once),
# export (rows shaped like the API's, limits, Content-Disposition), vacuum
# (PostgreSQL and the SQLite cache; also with the cache disabled), tables
# (from pg_catalog, sorted), and 503 while PostgreSQL is down. The query
# console has its own test (61-query-console.t). PostgreSQL, the pool (2
# workers) behind nginx; a second pool without a cache for vacuum.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $S = stack(web => 'nginx', workers => 2);
my $PG = $S->{pg};
api_setup(url => $S->{url}, pg => $PG, conf => $S->{conf}, timeout => 60);

# ------------------------------------------------------------ helpers --

sub ok_200 {
	my ($r, $name) = @_;
	my $ok = is($r->{status}, 200, "$name: 200") && ok(ref $r->{json} eq 'HASH' && $r->{json}{success}, "$name: success");
	diag('body: ' . substr($r->{content}, 0, 500)) unless $ok;
	return $ok;
}

# The newest audit rows of an action: [{actor, details}], newest first.
sub audit_rows {
	my ($action) = @_;
	my $t = sql("SELECT coalesce(json_agg(json_build_object('actor', actor_id, 'details', details, 'request_id', request_id)
		ORDER BY id DESC), '[]') FROM admin_audit_log WHERE action = '$action'");
	return $JSON->decode($t);
}

my $ISO = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

# ------------------------------------------------------- credentials --

my $ADMIN_ID = mkuser('a@x.io', role => 'admin');
mkuser('u@x.io', role => 'user');
my $ADMIN = mktoken('a@x.io') // BAIL_OUT('no admin token');
my $USER = mktoken('u@x.io');
api_setup(bearer => $ADMIN);    # req sends it unless told otherwise
cache_ready();

my @ENDPOINTS = ([ GET => '/api/admin/storage/stats' ], [ POST => '/api/admin/storage/clear-expired' ],
	[ POST => '/api/admin/storage/clear-cache' ], [ GET => '/api/admin/storage/export' ],
	[ POST => '/api/admin/storage/vacuum' ], [ GET => '/api/admin/storage/tables' ],
	[ POST => '/api/admin/storage/query', '{"sql":"SELECT 1"}' ]);

# ------------------------------------------------------------- data --

# Through the API, so the cache sees them like any write; then a few
# expiries moved into the past with psql (the API refuses nothing there,
# but psql makes "expired" certain without waiting).
my $RAW = '{"b":1.50,"a":[1, 2],"s":"\u00e9"}';
my @KEYS = ('cache/a', 'cache/b/c', 'cache/exp', 'cachex/1', 'xcache/1', 'Cache/1', 'keep/1', 'exp/1');
subtest 'seed' => sub {
	for my $k (@KEYS) {
		my $body = $k eq 'keep/1' ? qq({"data":$RAW,"tags":["t1","t2"]})
		    : $JSON->encode({ data => { key => $k }, expiresAt => '2099-01-01T00:00:00Z' });
		is(req(PUT => '/api/storage/' . $k, body => $body)->{status}, 201, "PUT $k");
	}
	for my $s ('https://a.example/list.txt', 'https://b.example/list.txt') {
		is(req(PUT => '/api/filter-cache', json => { source => $s, content => "||$s^", hash => 'h1', etag => 'e1' })
			->{status}, 201, "PUT filter $s");
	}
	for my $i (1 .. 3) {
		is(req(POST => '/api/compilations', json => { configName => "cfg$i", sourceCount => $i, ruleCount => 10 * $i,
			duration => 100 + $i })->{status}, 201, "POST compilation $i");
		sleep 0.01;
	}
	# Read them once so that the cache holds them (then expire two behind its back).
	for my $k (@KEYS) {
		req(GET => '/api/storage/' . $k);
	}
	sql(q{UPDATE storage_entries SET expires_at = now() - interval '1 hour' WHERE key IN ('exp/1', 'cache/exp')});
	sql(q{UPDATE filter_cache SET expires_at = now() - interval '1 minute' WHERE source = 'https://b.example/list.txt'});
	is(sql('SELECT count(*) FROM storage_entries'), '8', '8 storage entries');
};

subtest 'authentication and authorization' => sub {
	for my $e (@ENDPOINTS) {
		my ($m, $p, $b) = @$e;
		json_error_ok(req($m, $p, bearer => undef, body => $b), 401, undef, "$m $p without a token: 401");
		json_error_ok(req($m, $p, bearer => $USER, body => $b), 403, undef, "$m $p as role user: 403");
	}
	is(sql('SELECT count(*) FROM storage_entries'), '8', 'nothing deleted');
	is(sql("SELECT count(*) FROM admin_audit_log WHERE action LIKE 'storage.%'"), '0', 'nothing audited');
	is(req(POST => '/api/admin/storage/stats')->{status}, 405, 'POST stats: 405');
	is(req(GET => '/api/admin/storage/vacuum')->{status}, 405, 'GET vacuum: 405');
	is(req(DELETE => '/api/admin/storage/clear-cache')->{status}, 405, 'DELETE clear-cache: 405');
};

# ------------------------------------------------------------ stats --

subtest 'stats count every row, expired ones too' => sub {
	my $r = req(GET => '/api/admin/storage/stats');
	ok_200($r, 'stats') or return;
	is_deeply($r->{json}{stats}, { storage_entries => 8, filter_cache => 2, compilation_metadata => 3,
		expired_storage => 2, expired_cache => 1 }, 'counts');
	like($r->{json}{timestamp} // '', $ISO, 'timestamp ISO-8601 UTC');
	like($r->{headers}{'cache-control'} // '', qr/no-store/, 'Cache-Control: no-store');
	json_error_ok(req(GET => '/api/storage/exp/1'), 404, undef, 'an expired entry reads as 404 meanwhile');
	json_error_ok(req(GET => '/api/filter-cache?source=' . pct_encode('https://b.example/list.txt')), 404, undef,
		'an expired filter list reads as 404');
	# a row that expires exactly now counts as expired
	sql(q{INSERT INTO storage_entries (key, data, expires_at) VALUES ('edge', '1', now())});
	is(req(GET => '/api/admin/storage/stats')->{json}{stats}{expired_storage}, 3, 'expires_at = now() is expired');
	sql(q{DELETE FROM storage_entries WHERE key = 'edge'});
};

# ----------------------------------------------------------- export --

subtest 'export' => sub {
	my $t0 = int(time * 1000);
	my $r = req(GET => '/api/admin/storage/export');
	my $t1 = int(time * 1000);
	ok_200($r, 'export') or return;
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'application/json');
	my ($ms) = ($r->{headers}{'content-disposition'} // '') =~ /^attachment; filename="storage-export-(\d+)\.json"$/;
	ok(defined $ms, 'Content-Disposition: attachment; filename="storage-export-<ms>.json"')
	    or diag($r->{headers}{'content-disposition'} // 'none');
	ok(defined $ms && $ms >= $t0 - 1000 && $ms <= $t1 + 1000, 'the file name holds the time in epoch ms');
	my $j = $r->{json};
	like($j->{exportedAt} // '', $ISO, 'exportedAt ISO-8601');
	is($j->{exportedAt}, strftime('%Y-%m-%dT%H:%M:%S', gmtime(int($ms / 1000))) . sprintf('.%03dZ', $ms % 1000),
		'exportedAt is the time of the file name') if defined $ms;

	is_deeply([ map { $_->{key} } @{ $j->{storage_entries} } ], [ sort @KEYS ], 'every storage entry, by key, expired ones too');
	for my $e (@{ $j->{storage_entries} }) {
		next if $e->{key} =~ /exp/;
		my $g = req(GET => '/api/storage/' . $e->{key});
		is_deeply($e, $g->{json}{entry}, "entry $e->{key} as GET /api/storage shows it");
	}
	my ($exp) = grep { $_->{key} eq 'exp/1' } @{ $j->{storage_entries} };
	ok($exp && $exp->{expiresAt} lt $j->{exportedAt}, 'the expired entry with its past expiresAt');
	ok(index($r->{content}, $RAW) >= 0, 'data exactly as it was given');

	is(scalar @{ $j->{filter_cache} }, 2, 'both filter lists');
	my $g = req(GET => '/api/filter-cache?source=' . pct_encode('https://a.example/list.txt'));
	is_deeply($j->{filter_cache}[0], $g->{json}{entry}, 'filter list as GET /api/filter-cache shows it');

	$g = req(GET => '/api/compilations');
	is_deeply($j->{compilation_metadata}, $g->{json}{compilations}, 'compilations as GET /api/compilations, newest first');
	is_deeply([ map { $_->{configName} } @{ $j->{compilation_metadata} } ], [qw(cfg3 cfg2 cfg1)], 'newest first');
	is_deeply([ sort keys %$j ], [ sort qw(success exportedAt storage_entries filter_cache compilation_metadata) ],
		'the contract\'s fields');
};

# ----------------------------------------------------------- tables --

subtest 'tables' => sub {
	my $r = req(GET => '/api/admin/storage/tables');
	ok_200($r, 'tables') or return;
	my @t = @{ $r->{json}{tables} || [] };
	my %type = map { $_->{name} => $_->{type} } @t;
	is($type{$_}, 'table', "$_ is a table") for qw(storage_entries filter_cache compilation_metadata users
		deployment_history admin_audit_log);
	is($type{$_}, 'index', "$_ is an index") for qw(storage_entries_pkey storage_entries_expires_at_idx
		filter_cache_pkey compilation_metadata_timestamp_idx);
	ok(!(grep { $_->{type} !~ /^(table|index)$/ || keys(%$_) != 2 } @t), 'each {name, type}, type table or index');
	{
		use bytes;
		is_deeply([ map { $_->{name} } @t ], [ sort map { $_->{name} } @t ], 'sorted by name');
	}
	my @pg = split /\n/, sql(q{SELECT relname || ' ' || CASE WHEN relkind IN ('r', 'p') THEN 'table' ELSE 'index' END
		FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'i', 'I') ORDER BY relname COLLATE "C"});
	is_deeply([ map { "$_->{name} $_->{type}" } @t ], \@pg, 'exactly the tables and indexes of schema public');
	ok(!(grep { $_->{name} =~ /^pg_|_seq$/ } @t), 'no catalogs, no sequences');
};

# ---------------------------------------------------- clear-expired --

subtest 'clear-expired' => sub {
	req(GET => '/api/storage/keep/1');
	is(x_cache(req(GET => '/api/storage/keep/1')), 'HIT', 'keep/1 is cached');
	my $r = req(POST => '/api/admin/storage/clear-expired');
	ok_200($r, 'clear-expired') or return;
	is($r->{json}{deleted}, 3, 'deleted 3 (2 storage entries, 1 filter list)');
	like($r->{json}{message} // '', qr/\b2\b.*\b1\b/, 'message: ' . ($r->{json}{message} // ''));
	is(sql(q{SELECT string_agg(key, ',' ORDER BY key) FROM storage_entries}),
		'Cache/1,cache/a,cache/b/c,cachex/1,keep/1,xcache/1', 'PostgreSQL: the expired entries are gone, no other');
	is(sql(q{SELECT string_agg(source, ',') FROM filter_cache}), 'https://a.example/list.txt',
		'PostgreSQL: the expired filter list is gone');
	json_error_ok(req(GET => '/api/storage/exp/1'), 404, undef, 'GET exp/1: 404');
	json_error_ok(req(GET => '/api/storage/cache/exp'), 404, undef, 'GET cache/exp: 404');
	ok_200(req(GET => '/api/storage/keep/1'), 'keep/1 still there');
	my $a = audit_rows('storage.clear_expired');
	is(scalar @$a, 1, 'one audit row storage.clear_expired');
	is($a->[0]{actor}, $ADMIN_ID, 'by the admin');
	is_deeply($a->[0]{details}, { storage_entries => 2, filter_cache => 1 }, 'with the counts');
	ok(length($a->[0]{request_id} // ''), 'and the request id');

	$r = req(POST => '/api/admin/storage/clear-expired');
	ok_200($r, 'again');
	is($r->{json}{deleted}, 0, 'deleted 0');
	is_deeply(req(GET => '/api/admin/storage/stats')->{json}{stats},
		{ storage_entries => 6, filter_cache => 1, compilation_metadata => 3, expired_storage => 0, expired_cache => 0 },
		'stats after');
};

# ------------------------------------------------------ clear-cache --

subtest 'clear-cache' => sub {
	for my $k ('cache/a', 'cache/b/c', 'keep/1') {
		req(GET => '/api/storage/' . $k);
		is(x_cache(req(GET => '/api/storage/' . $k)), 'HIT', "$k is cached");
	}
	my $f = '/api/filter-cache?source=' . pct_encode('https://a.example/list.txt');
	req(GET => $f);
	is(x_cache(req(GET => $f)), 'HIT', 'the filter list is cached');
	# Another host on the same PostgreSQL, with its own cache holding them.
	my $pool_b = pool_start(write_conf(), workers => 1);
	my $web_b = nginx_start(upstream => $pool_b->addr);
	my $B = $web_b->{url};
	cache_ready($B, 'host B');
	for my $p ('/api/storage/cache/a', $f) {
		req(GET => $p, base => $B);
		is(x_cache(req(GET => $p, base => $B)), 'HIT', "host B has $p cached");
	}
	my $before = sql('SELECT count(*) FROM admin_audit_log');

	my $r = req(POST => '/api/admin/storage/clear-cache');
	ok_200($r, 'clear-cache') or return;
	is($r->{json}{deleted}, 3, 'deleted 3 (cache/a, cache/b/c and the filter list)');
	like($r->{json}{message} // '', qr/\b2\b.*\b1\b/, 'message: ' . ($r->{json}{message} // ''));
	# at once, on whichever worker answers: no waiting for a notification
	for my $k ('cache/a', 'cache/b/c') {
		json_error_ok(req(GET => '/api/storage/' . $k), 404, undef, "GET $k right after: 404") for 1 .. 2;
	}
	json_error_ok(req(GET => $f), 404, undef, 'GET the filter list right after: 404');
	for my $k ('keep/1', 'cachex/1', 'xcache/1', 'Cache/1') {
		ok_200(req(GET => '/api/storage/' . $k), "$k is kept");
	}
	for my $p ('/api/storage/cache/a', $f) {
		my $t0 = time;
		ok(poll(2, sub { req(GET => $p, base => $B)->{status} == 404 }),
			"host B drops $p within 2 s (" . sprintf('%.2f', time - $t0) . ' s)');
	}
	ok_200(req(GET => '/api/storage/keep/1', base => $B), 'host B still serves keep/1');
	$web_b->stop;
	$pool_b->stop;
	is(sql(q{SELECT string_agg(key, ',' ORDER BY key) FROM storage_entries}), 'Cache/1,cachex/1,keep/1,xcache/1',
		'PostgreSQL: only keys starting with cache/ went');
	is(sql('SELECT count(*) FROM filter_cache'), '0', 'PostgreSQL: every filter list went');
	is(sql('SELECT count(*) FROM admin_audit_log') - $before, 1, 'one audit row');
	my $a = audit_rows('storage.clear_cache');
	is_deeply($a->[0]{details}, { storage_entries => 2, filter_cache => 1 }, 'storage.clear_cache with the counts');
	is($a->[0]{actor}, $ADMIN_ID, 'by the admin');

	# LIKE wildcards in keys are just characters
	req(PUT => '/api/storage/' . pct_encode('cache%'), json => { data => 1 });
	req(PUT => '/api/storage/' . pct_encode('cache_x'), json => { data => 1 });
	req(PUT => '/api/storage/' . pct_encode('cache/%'), json => { data => 1 });
	$r = req(POST => '/api/admin/storage/clear-cache');
	is($r->{json}{deleted}, 1, 'only cache/% went');
	is(sql(q{SELECT string_agg(key, ',' ORDER BY key COLLATE "C") FROM storage_entries WHERE key LIKE 'cache%'}),
		'cache%,cache_x,cachex/1', 'cache% and cache_x stay');
	sql(q{DELETE FROM storage_entries WHERE key IN ('cache%', 'cache_x')});
};

# ----------------------------------------------------------- vacuum --

subtest 'vacuum' => sub {
	my $r = req(POST => '/api/admin/storage/vacuum');
	ok_200($r, 'vacuum') or return;
	like($r->{json}{message} // '', qr/PostgreSQL/, 'message names PostgreSQL');
	like($r->{json}{message} // '', qr/vacuumed this host's L1 cache/i, 'and the cache');
	is_deeply([ sort keys %{ $r->{json} } ], [qw(message success)], '{success, message}');
	my $done = sql(q{SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('storage_entries', 'filter_cache',
		'compilation_metadata') AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL});
	is($done, '3', 'the three tables were vacuumed and analysed');
	my $a = audit_rows('storage.vacuum');
	is(scalar @$a, 1, 'one audit row storage.vacuum');
	is_deeply($a->[0]{details}, { cache => 'vacuumed' }, 'saying the cache was vacuumed');
	# the worker's usual statement timeout is back: a stats request is fine
	ok_200(req(GET => '/api/admin/storage/stats'), 'stats after vacuum');

	my $conf = write_conf('cache.path' => '');
	my $pool = pool_start($conf, workers => 1);
	my $web = nginx_start(upstream => $pool->addr);
	$r = req(POST => '/api/admin/storage/vacuum', base => $web->{url});
	ok_200($r, 'vacuum on a host without a cache');
	like($r->{json}{message} // '', qr/disabled/i, 'says the cache is disabled: ' . ($r->{json}{message} // ''));
	is(audit_rows('storage.vacuum')->[0]{details}{cache}, 'disabled', 'audited as such');
	$pool->stop;
	$web->stop;
};

# ------------------------------------------------------ export limits --

subtest 'export limits: 1000 entries, 100 filter lists, 100 compilations (newest first)' => sub {
	sql(q{INSERT INTO storage_entries (key, data) SELECT 'bulk/' || lpad(g::text, 4, '0'), ('{"g":' || g || '}')::json
		FROM generate_series(1, 1100) g});
	sql(q{INSERT INTO filter_cache (source, content, hash) SELECT 'https://f' || g, 'x', 'h' FROM generate_series(1, 105) g});
	sql(q{INSERT INTO compilation_metadata (config_name, "timestamp", source_count, rule_count, duration)
		SELECT 'bulk' || g, date_trunc('milliseconds', now()) - interval '1 day' - g * interval '1 second', 1, 1, 1 FROM generate_series(1, 105) g});
	my $r = req(GET => '/api/admin/storage/export');
	ok_200($r, 'export') or return;
	is(scalar @{ $r->{json}{storage_entries} }, 1000, '1000 storage entries');
	is(scalar @{ $r->{json}{filter_cache} }, 100, '100 filter lists');
	my @c = @{ $r->{json}{compilation_metadata} };
	is(scalar @c, 100, '100 compilations');
	is_deeply([ map { $_->{timestamp} } @c ], [ sort { $b cmp $a } map { $_->{timestamp} } @c ], 'newest first');
	is($c[0]{configName}, 'cfg3', 'the newest is the newest overall');
	is($c[-1]{configName}, 'bulk97', 'the 100th newest last');
	sql(q{DELETE FROM storage_entries WHERE key LIKE 'bulk/%'; DELETE FROM filter_cache;
		DELETE FROM compilation_metadata WHERE config_name LIKE 'bulk%'});
};

# ------------------------------------------------------------ outage --

subtest 'PostgreSQL down: 503 with Retry-After, nothing half-done' => sub {
	$PG->stop;
	for my $e (@ENDPOINTS[0 .. 5]) {
		my ($m, $p) = @$e;
		my $r = req($m, $p);
		json_error_ok($r, 503, undef, "$m $p: 503");
		ok(defined $r->{headers}{'retry-after'}, "$m $p: Retry-After");
	}
	$PG->start;
	ok(poll(15, sub { req(GET => '/api/admin/storage/stats')->{status} == 200 }), 'back once PostgreSQL is');
	is(sql(q{SELECT string_agg(key, ',' ORDER BY key) FROM storage_entries}), 'Cache/1,cachex/1,keep/1,xcache/1',
		'nothing was deleted meanwhile');
};

done_testing();
