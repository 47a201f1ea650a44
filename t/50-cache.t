#!/usr/bin/perl
# The L1 cache on one host (CONTRACT §2 X-Cache, §4 "Cache administration",
# §5): MISS then HIT with identical bodies for the deployment list, a
# storage entry and the compilations; read-your-writes with write-through
# and with strategy = lazy; writes made with psql reach the cache within
# 2 s; a HIT makes no PostgreSQL round trip (pg_stat_statements); the
# status, rebuild and invalidate endpoints; `bloqr-admin cache rebuild` and
# `cache verify` (also on a cache made to differ on purpose); the cache
# file deleted or overwritten with garbage while the pool runs; /metrics.
# One PostgreSQL (with pg_stat_statements preloaded), the pool (2 workers)
# behind nginx; a second pool with strategy = lazy for a while.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $ISO = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
my @TABLES = qw(deployment_history storage_entries filter_cache compilation_metadata sessions);

# ------------------------------------------------------------- the stack --

# PostgreSQL with pg_stat_statements, so that the statements the pool runs
# can be counted (see 'a HIT makes no PostgreSQL round trip').
my $PG = pg_start();
{
	open my $fh, '>>', "$PG->{data}/postgresql.conf" or die "postgresql.conf: $!\n";
	print $fh "shared_preload_libraries = 'pg_stat_statements'\n",
	    "pg_stat_statements.track = all\n";
	close $fh;
	$PG->stop;
	$PG->start;
	$PG->psql('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
}
my $CONF = write_conf();
migrate($CONF);
my $CACHE = conf_value($CONF, 'cache', 'path');
api_setup(pg => $PG, conf => $CONF);

# Seed data before the pool starts, so that nothing of it is cached yet.
mkuser('admin@t50.test', role => 'admin') // die "cannot create admin\@t50.test\n";
my $ADMIN = mktoken('admin@t50.test') // die "no token for admin\@t50.test\n";
for my $n (1 .. 3) {
	my $r = admin($CONF, ['deploy', 'record', '--version', "1.0.$n", '--commit', "c0ffee$n",
		'--branch', 'main', '--by', 'seed']);
	die "deploy record: $r->{err}" if $r->{rc};
}
sql(q{INSERT INTO storage_entries (key, data) VALUES ('seed/a', '{"x":1}'), ('seed/b', '[1,2,3]')});
sql(q{INSERT INTO compilation_metadata (config_name, source_count, rule_count, duration)
      VALUES ('seed', 1, 10, 100), ('seed', 2, 20, 200)});

my $POOL = pool_start($CONF, workers => 2);
my $WEB = nginx_start(upstream => $POOL->addr);
api_setup(url => $WEB->{url}, bearer => $ADMIN);    # req sends the admin token unless told otherwise

# ------------------------------------------------------------ helpers --

sub list { req(GET => '/api/deployments?limit=50', bearer => undef, @_) }

# Statements PostgreSQL ran since the last pg_stat_statements_reset(),
# except our own psql sessions' and the syncer's liveness ping "SELECT 1"
# (normalised to "SELECT $1"): "calls<TAB>query" lines.
sub pg_statements {
	return sql(q{SELECT calls || E'\t' || regexp_replace(query, '\s+', ' ', 'g')
	    FROM pg_stat_statements
	    WHERE query !~* 'pg_stat_statements' AND query !~* '^\s*select\s+(1|\$1)\s*;?\s*$'
	      AND query !~* '^\s*select\s+pg_notify\(\$1,\s*\$2\),\s*pg_current_snapshot\(\)::text\s*$'
	    ORDER BY calls DESC});
}

ok(within(10, sub { listener_connected() }), 'the syncer is listening (status says connected) within 10 s')
    or BAIL_OUT('the cache never becomes coherent: ' . show(req(GET => '/api/admin/cache/status')));

# ------------------------------------------------------------- tests --

subtest 'X-Cache MISS then HIT, identical bodies' => sub {
	for my $c (['/api/deployments?limit=50', undef, 'deployments', 3],
	    ['/api/storage/seed%2Fa', $ADMIN, 'entry', undef],
	    ['/api/compilations', $ADMIN, 'compilations', 2]) {
		my ($path, $bearer, $field, $count) = @$c;
		my $a = req(GET => $path, bearer => $bearer);
		is($a->{status}, 200, "GET $path: 200") or diag show($a);
		is(x_cache($a), 'MISS', "GET $path: first X-Cache MISS");
		my $b = req(GET => $path, bearer => $bearer);
		is($b->{status}, 200, "GET $path again: 200") or diag show($b);
		is(x_cache($b), 'HIT', "GET $path again: X-Cache HIT");
		is($b->{content}, $a->{content}, "GET $path: HIT body is byte for byte the MISS body");
		my $c3 = req(GET => $path, bearer => $bearer);
		is(x_cache($c3), 'HIT', "GET $path a third time (other worker, likely): HIT");
		is($c3->{content}, $a->{content}, "GET $path: same body again");
		ok(ref $a->{json} eq 'HASH' && $a->{json}{success}, "GET $path: success") or diag show($a);
		if (defined $count) {
			is(scalar @{ $a->{json}{$field} || [] }, $count, "GET $path: $count rows");
			is($a->{json}{count}, $count, "GET $path: count $count");
		} else {
			is_deeply($a->{json}{entry}{data}, { x => 1 }, "GET $path: the seeded data");
		}
	}
};

subtest 'read-your-writes (write-through)' => sub {
	for my $i (1 .. 10) {
		my $r = req(PUT => '/api/storage/ryw', json => { data => { i => $i } });
		ok($r->{status} == 200 || $r->{status} == 201, "PUT ryw i=$i") or diag show($r);
		$r = req(GET => '/api/storage/ryw');
		is_deeply($r->{json}{entry}{data}, { i => $i }, "GET right after the PUT sees i=$i")
		    or diag show($r);
	}
	my $before = list();
	my $r = req(POST => '/api/deployments', json => { version => '2.0.0', gitCommit => 'abc123',
		gitBranch => 'main', deployedBy => 't50' });
	is($r->{status}, 201, 'POST deployment') or diag show($r);
	my $id = $r->{json}{deployment}{id} // '';
	my $after = list();
	is($after->{json}{deployments}[0]{id}, $id, 'the list right after the POST starts with it') or diag show($after);
	is($after->{json}{count}, $before->{json}{count} + 1, 'count moved on by one');

	$r = req(POST => '/api/compilations', json => { configName => 'ryw', sourceCount => 1, ruleCount => 2,
		duration => 3 });
	is($r->{status}, 201, 'POST compilation') or diag show($r);
	my $cid = $r->{json}{compilation}{id} // '';
	$r = req(GET => '/api/compilations');
	is($r->{json}{compilations}[0]{id}, $cid, 'compilations right after the POST start with it') or diag show($r);

	$r = req(DELETE => '/api/storage/ryw');
	is($r->{status}, 200, 'DELETE ryw') or diag show($r);
	$r = req(GET => '/api/storage/ryw');
	is($r->{status}, 404, 'GET right after the DELETE: 404') or diag show($r);
};

subtest 'read-your-writes with cache.strategy = lazy' => sub {
	my $conf = write_conf('cache.strategy' => 'lazy');
	my $pool = pool_start($conf, workers => 2);
	my $web = nginx_start(upstream => $pool->addr);
	my $base = $web->{url};
	ok(within(10, sub { listener_connected($base) }), 'lazy host: listener connected');
	for my $i (1 .. 10) {
		my $r = req(PUT => '/api/storage/lazy', json => { data => [$i] }, base => $base);
		ok($r->{status} == 200 || $r->{status} == 201, "lazy: PUT i=$i") or diag show($r);
		$r = req(GET => '/api/storage/lazy', base => $base);
		is_deeply($r->{json}{entry}{data}, [$i], "lazy: GET right after the PUT sees i=$i") or diag show($r);
		$r = req(GET => '/api/storage/lazy', base => $base);
		is_deeply($r->{json}{entry}{data}, [$i], "lazy: and again") or diag show($r);
	}
	my $r = req(GET => '/api/storage/lazy', base => $base);
	is(x_cache($r), 'HIT', 'lazy: an unchanged entry read twice is a HIT');

	my $l1 = list(base => $base);
	my $l2 = list(base => $base);
	is(x_cache($l2), 'HIT', 'lazy: the list is cached') or diag show($l2);
	$r = req(POST => '/api/deployments', json => { version => '2.1.0', gitCommit => 'abc124',
		gitBranch => 'main', deployedBy => 't50-lazy' }, base => $base);
	is($r->{status}, 201, 'lazy: POST deployment') or diag show($r);
	my $id = $r->{json}{deployment}{id} // '';
	my $l3 = list(base => $base);
	is($l3->{json}{deployments}[0]{id}, $id, 'lazy: the list right after the POST starts with it')
	    or diag show($l3);
	$pool->stop;
	$web->stop;
};

subtest 'psql UPDATEs reach the cache within 2 s' => sub {
	my $r = req(GET => '/api/storage/seed%2Fa');
	$r = req(GET => '/api/storage/seed%2Fa');
	is(x_cache($r), 'HIT', 'seed/a is cached');
	is_deeply($r->{json}{entry}{data}, { x => 1 }, 'holding {"x":1}');
	sql(q{UPDATE storage_entries SET data = '{"x":2}' WHERE key = 'seed/a'});
	my $took = within(2, sub {
		my $g = req(GET => '/api/storage/seed%2Fa');
		$g->{status} == 200 && $JSON->encode($g->{json}{entry}{data}) eq '{"x":2}';
	});
	ok(defined $took, 'GET /api/storage/seed%2Fa shows {"x":2} within 2 s')
	    or diag show(req(GET => '/api/storage/seed%2Fa'));
	note(sprintf 'took %.2f s', $took) if defined $took;

	my $l = list();
	$l = list();
	is(x_cache($l), 'HIT', 'the deployment list is cached');
	my ($d) = grep { $_->{version} eq '1.0.2' } @{ $l->{json}{deployments} || [] };
	ok($d, 'deployment 1.0.2 is listed');
	is($d->{status}, 'success', 'with status success') if $d;
	sql(qq{UPDATE deployment_history SET status = 'failed' WHERE id = '$d->{id}'}) if $d;
	$took = within(2, sub {
		my ($x) = grep { $_->{id} eq ($d->{id} // '') } @{ list()->{json}{deployments} || [] };
		$x && $x->{status} eq 'failed';
	});
	ok(defined $took, 'the list shows status failed within 2 s') or diag show(list());
	$took = within(2, sub { (req(GET => '/api/deployments/stats', bearer => undef)->{json}{failedDeployments} // 0) == 1 });
	ok(defined $took, 'stats count it as failed within 2 s');

	# A row inserted with psql appears too; a row deleted with psql goes.
	sql(q{INSERT INTO storage_entries (key, data) VALUES ('psql/new', '"fresh"')});
	ok(defined within(2, sub { (req(GET => '/api/storage/psql%2Fnew')->{json}{entry}{data} // '') eq 'fresh' }),
		'a psql INSERT reads back within 2 s');
	req(GET => '/api/storage/psql%2Fnew');
	sql(q{DELETE FROM storage_entries WHERE key = 'psql/new'});
	ok(defined within(2, sub { req(GET => '/api/storage/psql%2Fnew')->{status} == 404 }),
		'a psql DELETE reads as 404 within 2 s');
};

subtest 'a HIT makes no PostgreSQL round trip' => sub {
	# How this is measured: pg_stat_database's xact counters are flushed by
	# each backend only every second or so (PG 15), and other backends'
	# pending counters cannot be flushed from outside. pg_stat_statements
	# (preloaded in this cluster, track = all) records every statement in
	# shared memory when it finishes, whichever backend ran it. So: reset,
	# make 50 requests that are HITs, and look at what ran. Everything the
	# pool does goes through one role, so the statements are told apart by
	# their text: our own psql calls mention pg_stat_statements, and the
	# syncer's self-notification is "SELECT pg_notify($1, $2),
	# pg_current_snapshot()::text" (every 0.4 s
	# per pool; "SELECT 1" is the health probe); all
	# else would be a worker's round trip. The check is then shown to see a
	# worker's statements: an uncached admin read must show up.
	ok(within(5, sub { x_cache(list()) eq 'HIT' }), 'the list is a HIT (warm)');
	sql('SELECT pg_stat_statements_reset()');
	my @how;
	push @how, x_cache(list()) for 1 .. 50;
	my $hits = grep { $_ eq 'HIT' } @how;
	is($hits, 50, '50 GET /api/deployments?limit=50: all HIT') or diag "X-Cache: @how";
	sleep 0.2;
	my $ran = pg_statements();
	is($ran, '', 'PostgreSQL ran no statement for them (pg_stat_statements, ping excluded)')
	    or diag "statements:\n$ran";

	# control: an admin endpoint is never answered from the cache
	sql('SELECT pg_stat_statements_reset()');
	my $r = req(GET => '/api/admin/users');
	is($r->{status}, 200, 'GET /api/admin/users') or diag show($r);
	$ran = pg_statements();
	like($ran, qr/users/i, 'control: the users list shows up in pg_stat_statements') or diag "statements:\n$ran";
};

subtest 'GET /api/admin/cache/status' => sub {
	my $r = req(GET => '/api/admin/cache/status');
	is($r->{status}, 200, 'status: 200') or diag show($r);
	my $j = $r->{json} || {};
	ok(JSON::PP::is_bool($j->{success}) && $j->{success}, 'success: true');
	ok(ref $j->{listener} eq 'HASH', 'listener is an object') or diag show($r);
	ok(JSON::PP::is_bool($j->{listener}{connected}) && $j->{listener}{connected}, 'listener.connected: true');
	like($j->{listener}{since} // '', $ISO, 'listener.since is an ISO time');
	ok(ref $j->{tables} eq 'HASH', 'tables is an object');
	for my $t (@TABLES) {
		my $e = $j->{tables}{$t};
		ok(ref $e eq 'HASH', "tables.$t is an object") or next;
		for my $k (qw(rows hits misses stale errors)) {
			ok(defined $e->{$k} && !ref $e->{$k} && $e->{$k} =~ /^\d+$/, "tables.$t.$k is a count")
			    or diag "$t.$k = " . ($e->{$k} // 'missing');
		}
		ok(exists $e->{lastFullSync} && (!defined $e->{lastFullSync} || $e->{lastFullSync} =~ $ISO),
			"tables.$t.lastFullSync is null or an ISO time");
	}
	like($j->{tables}{deployment_history}{lastFullSync} // '', $ISO, 'deployment_history has been synced whole');
	ok($j->{tables}{deployment_history}{rows} >= 3, 'deployment_history rows counted');
	ok($j->{tables}{deployment_history}{misses} >= 1, 'deployment_history misses counted');

	my $h0 = $j->{tables}{deployment_history}{hits} // 0;
	my $s0 = $j->{tables}{storage_entries}{hits} // 0;
	my @how = map { x_cache(list()) } 1 .. 5;
	push @how, map { x_cache(req(GET => '/api/storage/seed%2Fb')) } 1 .. 3;
	my $j2 = req(GET => '/api/admin/cache/status')->{json} || {};
	my $dh = grep { $_ eq 'HIT' } @how[0 .. 4];
	my $sh = grep { $_ eq 'HIT' } @how[5 .. 7];
	ok($dh >= 5 && $sh >= 2, 'those reads were HITs') or diag "X-Cache: @how";
	cmp_ok($j2->{tables}{deployment_history}{hits} // 0, '>=', $h0 + $dh, 'deployment_history hits went up');
	cmp_ok($j2->{tables}{storage_entries}{hits} // 0, '>=', $s0 + $sh, 'storage_entries hits went up');

	json_error_ok(req(GET => '/api/admin/cache/status', bearer => undef), 401, undef, 'no token: 401');
};

subtest 'POST /api/admin/cache/rebuild' => sub {
	my %pg = (deployment_history => sql('SELECT count(*) FROM deployment_history'),
		compilation_metadata => sql('SELECT count(*) FROM compilation_metadata'),
		storage_entries => sql('SELECT count(*) FROM storage_entries'),
		filter_cache => sql('SELECT count(*) FROM filter_cache'));
	my $r = req(POST => '/api/admin/cache/rebuild');
	is($r->{status}, 200, 'rebuild: 200') or diag show($r);
	my $j = $r->{json} || {};
	ok($j->{success}, 'success');
	ok(ref $j->{tables} eq 'HASH', 'tables is an object') or return;
	is_deeply([ sort keys %{ $j->{tables} } ], [ sort @TABLES ], 'every cached table named as in PostgreSQL');
	for my $t (@TABLES) {
		ok(defined $j->{tables}{$t} && $j->{tables}{$t} =~ /^\d+$/, "tables.$t is a row count");
	}
	is($j->{tables}{deployment_history}, $pg{deployment_history}, 'deployment_history: every row of PostgreSQL');
	is($j->{tables}{compilation_metadata}, $pg{compilation_metadata}, 'compilation_metadata: every row of PostgreSQL');
	# Storage entries and the filter cache are cached per key (cache.h: a
	# rebuild drops them); whatever is reported must be what is cached.
	my $st = req(GET => '/api/admin/cache/status')->{json}{tables} || {};
	for my $t (qw(deployment_history compilation_metadata storage_entries filter_cache)) {
		is($st->{$t}{rows}, $j->{tables}{$t}, "status shows the $t rows the rebuild reported");
		cmp_ok($j->{tables}{$t}, '<=', $pg{$t}, "$t: no more rows than PostgreSQL has");
	}
	my $l = list();
	is(x_cache($l), 'HIT', 'the list is a HIT right after the rebuild');
	is($l->{json}{count}, $pg{deployment_history}, 'with every deployment');
};

subtest 'POST /api/admin/cache/invalidate' => sub {
	req(GET => '/api/storage/seed%2Fb');
	my $r = req(GET => '/api/storage/seed%2Fb');
	is(x_cache($r), 'HIT', 'seed/b cached');
	$r = req(POST => '/api/admin/cache/invalidate', json => { table => 'storage_entries', id => 'seed/b' });
	is($r->{status}, 200, 'invalidate storage_entries seed/b: 200') or diag show($r);
	ok($r->{json}{success}, 'success');
	is($r->{json}{invalidated}, 1, 'invalidated: 1');
	$r = req(GET => '/api/storage/seed%2Fb');
	is(x_cache($r), 'MISS', 'the next read is a MISS') or diag show($r);
	is_deeply($r->{json}{entry}{data}, [1, 2, 3], 'with the right data');
	is(x_cache(req(GET => '/api/storage/seed%2Fb')), 'HIT', 'and the one after a HIT');

	$r = req(POST => '/api/admin/cache/invalidate', json => { table => 'storage_entries', id => 'no/such/key' });
	is($r->{status}, 200, 'invalidate an uncached key: 200') or diag show($r);
	is($r->{json}{invalidated}, 0, 'invalidated: 0');

	ok(within(3, sub { x_cache(list()) eq 'HIT' }), 'the list is a HIT');
	my $n = sql('SELECT count(*) FROM deployment_history');
	$r = req(POST => '/api/admin/cache/invalidate', json => { table => 'deployment_history' });
	is($r->{status}, 200, 'invalidate the whole deployment_history: 200') or diag show($r);
	is($r->{json}{invalidated}, $n, "invalidated: $n rows");
	my $l = list();
	is(x_cache($l), 'MISS', 'the next list is a MISS') or diag show($l);
	is($l->{json}{count}, $n, 'with every deployment');

	my $id = $l->{json}{deployments}[0]{id};
	ok(within(3, sub { x_cache(list()) eq 'HIT' }), 'the list is a HIT again');
	$r = req(POST => '/api/admin/cache/invalidate', json => { table => 'deployment_history', id => $id });
	is($r->{json}{invalidated}, 1, 'invalidate one deployment by id: 1') or diag show($r);
	is(x_cache(list()), 'MISS', 'the next list is a MISS');

	json_error_ok(req(POST => '/api/admin/cache/invalidate', json => { table => 'users' }), 400, qr/table/,
		'table users: 400');
	json_error_ok(req(POST => '/api/admin/cache/invalidate', json => { table => 'nope', id => 'x' }), 400,
		qr/table/, 'unknown table: 400');
	json_error_ok(req(POST => '/api/admin/cache/invalidate', json => { id => 'x' }), 400, qr/table/,
		'no table: 400');
	json_error_ok(req(POST => '/api/admin/cache/invalidate', json => { table => 5 }), 400, qr/table/,
		'table not a string: 400');
};

subtest 'bloqr-admin cache rebuild and verify (consistent)' => sub {
	my $r = admin($CONF, [qw(cache rebuild)]);
	is($r->{rc}, 0, 'cache rebuild: exit 0') or diag "stderr: $r->{err}";
	like($r->{out}, qr/deployment_history/, 'it names the tables') or diag "stdout: $r->{out}";
	req(GET => '/api/storage/seed%2Fa');
	req(GET => '/api/storage/seed%2Fb');
	$r = admin($CONF, [qw(cache verify)]);
	is($r->{rc}, 0, 'cache verify: exit 0') or diag "stdout: $r->{out}\nstderr: $r->{err}";
};

subtest '/metrics counts cache reads' => sub {
	ok(within(3, sub { x_cache(list()) eq 'HIT' }), 'a list read that is a HIT');
	my $r = req(GET => '/metrics', bearer => undef);
	is($r->{status}, 200, 'GET /metrics: 200') or diag show($r);
	my ($n) = $r->{content} =~ /^bloqr_cache_reads_total\{table="deployment_history",result="hit"\}\s+(\d+)/m;
	ok(defined $n && $n > 0, 'bloqr_cache_reads_total{table="deployment_history",result="hit"} > 0')
	    or diag substr($r->{content}, 0, 3000);
	like($r->{content}, qr/^bloqr_cache_reads_total\{table="deployment_history",result="miss"\}\s+[1-9]/m,
		'and misses are counted');
};

# Reads during a cache failure: always 200 with PostgreSQL's data; the file
# comes back; HITs resume.
sub survives {
	my ($what, $break) = @_;
	my @ids = sort split /\n/, sql('SELECT id FROM deployment_history');
	my $want_b = $JSON->encode([1, 2, 3]);
	ok(within(3, sub { x_cache(list()) eq 'HIT' }), "$what: the list is a HIT before");
	$break->();
	my (@bad, %how);
	my $t0 = time;
	my $back;
	while (time - $t0 < 10) {
		my $l = list();
		my $s = req(GET => '/api/storage/seed%2Fb');
		$how{ x_cache($l) }++;
		push @bad, 'list: ' . show($l) if $l->{status} != 200
		    || join(',', sort map { $_->{id} } @{ $l->{json}{deployments} || [] }) ne join(',', @ids);
		push @bad, 'storage: ' . show($s) if $s->{status} != 200
		    || $JSON->encode($s->{json}{entry}{data}) ne $want_b;
		if (x_cache($l) eq 'HIT' && -s $CACHE && time - $t0 > 1.5) {
			$back = time - $t0;
			last;
		}
		sleep 0.1;
	}
	ok(!@bad, "$what: every read answered 200 with PostgreSQL's data") or diag join("\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
	ok(-s $CACHE, "$what: the cache file is there again");
	my $head = '';
	if (open my $fh, '<', $CACHE) { read $fh, $head, 16; close $fh }
	is($head, "SQLite format 3\0", "$what: and is an SQLite database");
	ok(defined $back, "$what: HITs resume within 10 s") or diag 'X-Cache seen: '
	    . join(', ', map { "$_ x$how{$_}" } sort keys %how) . "\nstatus: " . show(req(GET => '/api/admin/cache/status'));
	note(sprintf '%s: HIT again after %.1f s', $what, $back) if defined $back;
	my $r = req(GET => '/api/health', bearer => undef);
	is($r->{status}, 200, "$what: health 200 afterwards") or diag show($r);
	restart_if_incoherent($what) unless defined $back;
}

# After a failure above, start the pool afresh (same address, nginx stays)
# so that the subtests after it test their own thing.
sub restart_if_incoherent {
	my ($what) = @_;
	return if within(2, sub { listener_connected() });
	diag("$what: the listener is not connected on the rebuilt file; restarting the pool for the next subtests");
	my $addr = $POOL->addr;
	$POOL->stop;
	$POOL = pool_start($CONF, workers => 2, listen => $addr);
	within(10, sub { listener_connected() }) or diag('the restarted pool is not coherent either');
}

subtest 'the cache file deleted while running' => sub {
	survives('deleted', sub { unlink $CACHE, "$CACHE-wal", "$CACHE-shm" or die "unlink $CACHE: $!" });
};

subtest 'the cache file overwritten with garbage while running' => sub {
	survives('garbage', sub {
		my $size = -s $CACHE || 65536;
		open my $fh, '+<', $CACHE or die "$CACHE: $!";
		binmode $fh;
		my $junk = join '', map { chr(int rand 256) } 1 .. 4096;
		for (my $off = 0; $off < $size; $off += 4096) { print $fh $junk }
		close $fh;
		# like cp(1) over it: the same file, other contents
	});
};

subtest 'cache verify finds a cache made to differ' => sub {
	req(GET => '/api/storage/seed%2Fb');
	ok(within(3, sub { x_cache(req(GET => '/api/storage/seed%2Fb')) eq 'HIT' }), 'seed/b is cached');
	my $r = admin($CONF, [qw(cache verify)]);
	is($r->{rc}, 0, 'cache verify: exit 0 first') or diag "stdout: $r->{out}\nstderr: $r->{err}";
	ok(defined $POOL->stop, 'pool stopped');
	$r = run_cmd(['sqlite3', $CACHE, q{UPDATE storage_entries SET body = '{}' WHERE key = 'seed/b'}]);
	is($r->{rc}, 0, 'sqlite3 changed the cached seed/b') or diag $r->{err};
	is(run_cmd(['sqlite3', $CACHE, q{SELECT body FROM storage_entries WHERE key = 'seed/b'}])->{out}, "{}\n",
		'(it holds {})');
	$r = admin($CONF, [qw(cache verify)]);
	is($r->{rc}, 1, 'cache verify: exit 1') or diag "stdout: $r->{out}\nstderr: $r->{err}";
	like($r->{out}, qr{storage_entries.*seed/b}, 'and prints the differing row') or diag "stdout: $r->{out}";
	$r = run_cmd(['sqlite3', $CACHE, q{UPDATE deployment_history SET body = '{"id":"forged"}' WHERE rowid = (SELECT min(rowid) FROM deployment_history)}]);
	$r = admin($CONF, [qw(cache verify)]);
	is($r->{rc}, 1, 'two differences: exit 1');
	like($r->{out}, qr/deployment_history/, 'the deployment is named too') or diag "stdout: $r->{out}";
	$r = admin($CONF, [qw(cache rebuild)]);
	is($r->{rc}, 0, 'cache rebuild: exit 0') or diag "stderr: $r->{err}";
	$r = admin($CONF, [qw(cache verify)]);
	is($r->{rc}, 0, 'cache verify after the rebuild: exit 0') or diag "stdout: $r->{out}\nstderr: $r->{err}";
};

done_testing();
