#!/usr/bin/perl
# The admin query console, POST /api/admin/storage/query (CONTRACT §4
# "Admin storage"): one statement, run as the SELECT-only role bloqr_query
# of [database] query_url in a READ ONLY transaction that is always rolled
# back, with a statement timeout, at most 1000 rows. A list of hostile
# statements is each refused (400) or harmless, and after each the data,
# the roles, the schema and the session state are checked as superuser.
# Also: validation, truncation, a slow statement that ends at the timeout
# with both workers free again at once, and the 503s (no query_url, a
# role that cannot log in, a role that could write, PostgreSQL down).
# PostgreSQL, the pool (2 workers) behind nginx; more pools on the side.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use POSIX qw(_exit);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $S = stack(web => 'nginx', workers => 2);
my $PG = $S->{pg};
api_setup(url => $S->{url}, pg => $PG, conf => $S->{conf}, timeout => 30);

# ------------------------------------------------------------ helpers --

# Run SQL through the console.
sub qry { my ($sql, %o) = @_; req(POST => '/api/admin/storage/query', json => { sql => $sql }, %o) }

# A 200 console answer: {success, rows, rowCount, meta:{columns, truncated, duration_ms}}.
sub ok_result {
	my ($r, $name) = @_;
	my $j = $r->{json};
	my $ok = is($r->{status}, 200, "$name: 200")
	    && ok(ref $j eq 'HASH' && $j->{success} && ref $j->{rows} eq 'ARRAY'
		&& defined $j->{rowCount} && $j->{rowCount} == @{ $j->{rows} }
		&& ref $j->{meta} eq 'HASH' && ref $j->{meta}{columns} eq 'ARRAY'
		&& JSON::PP::is_bool($j->{meta}{truncated})
		&& defined $j->{meta}{duration_ms} && $j->{meta}{duration_ms} =~ /^\d+(\.\d+)?$/,
		"$name: {success, rows, rowCount, meta:{columns, truncated, duration_ms}}");
	diag('body: ' . substr($r->{content}, 0, 600)) unless $ok;
	return $ok;
}

# Everything a statement could have changed, read as superuser.
sub state_snapshot {
	return sql(<<'EOF');
SELECT concat_ws(E'\n',
  'storage=' || (SELECT count(*) FROM storage_entries),
  'storage_md5=' || (SELECT md5(coalesce(string_agg(key || '|' || data::text || '|' || created_at::text || '|'
      || updated_at::text || '|' || coalesce(expires_at::text, '-') || '|' || coalesce(tags::text, '-'),
      E'\n' ORDER BY key), '')) FROM storage_entries),
  'filters=' || (SELECT count(*) FROM filter_cache),
  'filters_md5=' || (SELECT md5(coalesce(string_agg(source || content || hash, E'\n' ORDER BY source), ''))
      FROM filter_cache),
  'compilations=' || (SELECT count(*) FROM compilation_metadata),
  'users=' || (SELECT count(*) FROM users),
  'tokens=' || (SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL),
  'audit=' || (SELECT count(*) FROM admin_audit_log),
  'roles=' || (SELECT string_agg(rolname || ':' || rolsuper::text || rolcreaterole::text || rolcreatedb::text || rolbypassrls::text,
      ',' ORDER BY rolname) FROM pg_roles),
  'members=' || (SELECT count(*) FROM pg_auth_members),
  'relations=' || (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class
      WHERE relnamespace = 'public'::regnamespace),
  'functions=' || (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace),
  'schemas=' || (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname !~ '^pg_temp|^pg_toast_temp'),
  'grants=' || (SELECT string_agg(table_name || ':' || privilege_type, ',' ORDER BY table_name, privilege_type)
      FROM information_schema.role_table_grants WHERE grantee = 'bloqr_query'),
  'seq=' || (SELECT last_value FROM auth_attempts_id_seq) || '/' || (SELECT last_value FROM admin_audit_log_id_seq),
  'largeobjects=' || (SELECT count(*) FROM pg_largeobject_metadata),
  'prepared_xacts=' || (SELECT count(*) FROM pg_prepared_xacts),
  'role_settings=' || (SELECT count(*) FROM pg_db_role_setting),
  'advisory_locks=' || (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'),
  'console_busy=' || (SELECT count(*) FROM pg_stat_activity WHERE usename = 'bloqr_query' AND state <> 'idle'))
EOF
}

# ------------------------------------------------------- credentials --

mkuser('a@x.io', role => 'admin');
mkuser('u@x.io', role => 'user');
my $ADMIN = mktoken('a@x.io') // BAIL_OUT('no admin token');
my $USER = mktoken('u@x.io');
api_setup(bearer => $ADMIN);    # req sends it unless told otherwise

# 5000 storage entries, a few filter lists and compilations, as superuser.
sql(q{INSERT INTO storage_entries (key, data, expires_at, tags)
	SELECT 'k' || lpad(g::text, 5, '0'), json_build_object('n', g),
	       CASE WHEN g % 10 = 0 THEN now() + interval '1 day' END,
	       CASE WHEN g % 7 = 0 THEN ARRAY['t' || g] END
	FROM generate_series(1, 5000) g});
sql(q{INSERT INTO filter_cache (source, content, hash) SELECT 'https://f/' || g, 'c' || g, 'h' || g
	FROM generate_series(1, 3) g});
sql(q{INSERT INTO compilation_metadata (config_name, source_count, rule_count, duration)
	SELECT 'cfg', g, g, g FROM generate_series(1, 3) g});
my $BEFORE = state_snapshot();
like($BEFORE, qr/^storage=5000$/m, 'seeded 5000 storage entries');
like($BEFORE, qr/^grants=compilation_metadata:SELECT,filter_cache:SELECT,storage_entries:SELECT$/m,
	'bloqr_query has SELECT on the three storage tables and nothing else');

# --------------------------------------------------------- the basics --

subtest 'authentication and authorization' => sub {
	json_error_ok(qry('SELECT 1', bearer => undef), 401, undef, 'no token: 401');
	json_error_ok(qry('SELECT 1', bearer => $USER), 403, undef, 'role user: 403');
};

subtest 'validation names the field sql' => sub {
	json_error_ok(req(POST => '/api/admin/storage/query'), 400, undef, 'no body: 400');
	json_error_ok(req(POST => '/api/admin/storage/query', body => 'SELECT 1'), 400, undef, 'not JSON: 400');
	json_error_ok(req(POST => '/api/admin/storage/query', json => ['SELECT 1']), 400, undef, 'not an object: 400');
	json_error_ok(req(POST => '/api/admin/storage/query', json => {}), 400, qr/'sql'/, 'no sql: 400');
	json_error_ok(req(POST => '/api/admin/storage/query', json => { sql => 1 }), 400, qr/'sql'/, 'sql not a string: 400');
	json_error_ok(req(POST => '/api/admin/storage/query', json => { sql => undef }), 400, qr/'sql'/, 'sql null: 400');
	json_error_ok(qry(''), 400, qr/'sql'/, 'empty sql: 400');
	json_error_ok(qry(" \n\t "), 400, qr/'sql'/, 'blank sql: 400');
	json_error_ok(qry('SELECT 1 -- ' . ('x' x 100_000)), 400, qr/'sql'/, 'sql over 100 000 bytes: 400');
	my $long = 'SELECT 1 AS a -- ' . ('x' x (100_000 - 17));
	is(length $long, 100_000, 'a statement of exactly 100 000 bytes');
	ok_result(qry($long), 'is run');
	is(req(GET => '/api/admin/storage/query')->{status}, 405, 'GET: 405');
};

subtest 'rows, types and meta' => sub {
	my $r = qry(q{SELECT key, data, expires_at, tags FROM storage_entries WHERE key IN ('k00007', 'k00010') ORDER BY key});
	ok_result($r, 'storage rows') or return;
	my $j = $r->{json};
	is($j->{rowCount}, 2, 'rowCount 2');
	is_deeply($j->{meta}{columns}, [ { name => 'key', type => 'text' }, { name => 'data', type => 'json' },
		{ name => 'expires_at', type => 'timestamptz' }, { name => 'tags', type => 'text[]' } ],
		'column names and types');
	is($j->{rows}[0]{key}, 'k00007', 'row 1 key');
	is($j->{rows}[0]{data}, '{"n" : 7}', 'json as its text');
	is($j->{rows}[0]{expires_at}, undef, 'NULL is null');
	is($j->{rows}[0]{tags}, '{t7}', 'array as its text');
	like($j->{rows}[1]{expires_at}, qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00$/, 'timestamptz in UTC');
	ok(!$j->{meta}{truncated}, 'not truncated');
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
	ok(length($r->{headers}{'x-request-id'} // ''), 'X-Request-Id');

	$r = qry(q{SELECT 1::int2 AS s, 2::int4 AS i, 9007199254740993::int8 AS b, true AS t, false AS f,
		NULL::int AS n, 1.5::float8 AS d, 'NaN'::float8 AS nan, 12.50::numeric AS num, 'x'::text AS x,
		'0e3f1c5a-3c3f-4a3e-9b1e-0d8f5b6e7a11'::uuid AS u, '{"a": 1}'::jsonb AS jb});
	ok_result($r, 'typed values') or return;
	my $row = $r->{json}{rows}[0];
	is($row->{s}, 1, 'int2 as a number');
	is($row->{i}, 2, 'int4 as a number');
	like($r->{content}, qr/"b":9007199254740993\b/, 'int8 as an exact number');
	ok(JSON::PP::is_bool($row->{t}) && $row->{t} && JSON::PP::is_bool($row->{f}) && !$row->{f}, 'bools');
	ok(exists $row->{n} && !defined $row->{n}, 'NULL int is null');
	like($r->{content}, qr/"d":1\.5\b/, 'float8 as a number');
	is($row->{nan}, 'NaN', 'NaN as a string');
	is($row->{num}, '12.50', 'numeric as a string (exact)');
	is($row->{x}, 'x', 'text');
	is($row->{jb}, '{"a": 1}', 'jsonb as its text');
	is_deeply([ map { $_->{type} } @{ $r->{json}{meta}{columns} } ],
		[qw(int2 int4 int8 bool bool int4 float8 float8 numeric text uuid jsonb)], 'types');

	$r = qry('SELECT 1, 2, 3 AS "?column?_2"');
	ok_result($r, 'repeated column names');
	is_deeply([ map { $_->{name} } @{ $r->{json}{meta}{columns} } ], [ '?column?', '?column?_2', '?column?_2_2' ],
		'repeated names are made unique');
	is_deeply($r->{json}{rows}, [ { '?column?' => 1, '?column?_2' => 2, '?column?_2_2' => 3 } ], 'no value hidden');

	$r = qry('SELECT key FROM storage_entries WHERE false');
	ok_result($r, 'no rows');
	is($r->{json}{rowCount}, 0, 'rowCount 0');
	is_deeply($r->{json}{meta}{columns}, [ { name => 'key', type => 'text' } ], 'columns still described');

	$r = qry('SELECT count(*) FROM storage_entries;');
	ok_result($r, 'trailing semicolon');
	is($r->{json}{rows}[0]{count}, 5000, 'count 5000');
	ok_result(qry('EXPLAIN SELECT * FROM storage_entries'), 'EXPLAIN');
	ok_result(qry('SHOW statement_timeout'), 'SHOW');
	is(qry('SHOW statement_timeout')->{json}{rows}[0]{statement_timeout}, '5s', 'statement_timeout is 5 s');
	ok_result(qry('VALUES (1), (2)'), 'VALUES');
	ok_result(qry('TABLE filter_cache'), 'TABLE');
	$r = qry('SELECT current_user AS u, current_setting($$transaction_read_only$$) AS ro');
	is_deeply($r->{json}{rows}, [ { u => 'bloqr_query', ro => 'on' } ], 'runs as bloqr_query, read only');
};

subtest 'at most 1000 rows' => sub {
	for my $c ([ 'SELECT * FROM generate_series(1, 5000) g', 'generate_series(1, 5000)' ],
	    [ 'SELECT key, data FROM storage_entries ORDER BY key', '5000 storage entries' ],
	    [ 'SELECT a.g * 100000 + b.g AS n FROM generate_series(0, 99999) AS a(g), generate_series(1, 100000) AS b(g)',
		'ten billion rows' ]) {
		my ($sql, $name) = @$c;
		my $t0 = time;
		my $r = qry($sql);
		my $took = time - $t0;
		ok_result($r, $name) or next;
		is($r->{json}{rowCount}, 1000, "$name: 1000 rows");
		is(scalar @{ $r->{json}{rows} }, 1000, "$name: 1000 rows in rows");
		ok($r->{json}{meta}{truncated}, "$name: truncated");
		ok($took < 4, "$name: answered in " . sprintf('%.2f', $took) . ' s');
	}
	my $r = qry('SELECT key FROM storage_entries ORDER BY key');
	is($r->{json}{rows}[999]{key}, 'k01000', 'the first 1000 in order');
	$r = qry('SELECT g FROM generate_series(1, 1000) g');
	ok_result($r, 'exactly 1000 rows');
	ok(!$r->{json}{meta}{truncated}, 'exactly 1000: not truncated');
	$r = qry('SELECT g FROM generate_series(1, 1001) g');
	ok($r->{json}{meta}{truncated} && $r->{json}{rowCount} == 1000, '1001: 1000 rows, truncated');
	$r = qry(q{SELECT repeat('x', 3000000) AS big FROM generate_series(1, 10)});
	ok_result($r, 'rows of 3 MB');
	ok($r->{json}{meta}{truncated} && $r->{json}{rowCount} < 10, 'cut by size: ' . $r->{json}{rowCount} . ' rows');
	is(state_snapshot(), $BEFORE, 'nothing changed');
};

# ----------------------------------------------------------- hostile --

# Each: [sql, expect] where expect is 'refused' (must be 400) or 'either'
# (400, or 200 and harmless). After each one the state must be unchanged.
my @HOSTILE = (
	[ q{INSERT INTO storage_entries (key, data) VALUES ('evil', '1')}, 'refused' ],
	[ q{INSERT INTO storage_entries (key, data) VALUES ('evil', '1') RETURNING *}, 'refused' ],
	[ q{INSERT INTO storage_entries SELECT 'e' || g, '1' FROM generate_series(1, 10) g}, 'refused' ],
	[ q{UPDATE storage_entries SET data = '0'}, 'refused' ],
	[ q{UPDATE storage_entries SET data = '0' RETURNING key}, 'refused' ],
	[ q{DELETE FROM storage_entries}, 'refused' ],
	[ q{DELETE FROM storage_entries RETURNING key}, 'refused' ],
	[ q{MERGE INTO storage_entries s USING (SELECT 'k00001' AS k) v ON s.key = v.k WHEN MATCHED THEN DELETE}, 'refused' ],
	[ q{TRUNCATE storage_entries}, 'refused' ],
	[ q{DROP TABLE storage_entries}, 'refused' ],
	[ q{DROP TABLE storage_entries CASCADE}, 'refused' ],
	[ q{ALTER TABLE storage_entries ADD COLUMN x int}, 'refused' ],
	[ q{CREATE TABLE x (a int)}, 'refused' ],
	[ q{CREATE TEMP TABLE x (a int)}, 'refused' ],
	[ q{CREATE TABLE x AS SELECT 1 AS a}, 'refused' ],
	[ q{SELECT * INTO x FROM storage_entries}, 'refused' ],
	[ q{CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'}, 'refused' ],
	[ q{CREATE ROLE evil SUPERUSER LOGIN}, 'refused' ],
	[ q{ALTER ROLE bloqr_query SUPERUSER}, 'refused' ],
	[ q{ALTER ROLE bloqr_query SET default_transaction_read_only = off}, 'refused' ],
	[ q{GRANT ALL ON storage_entries TO bloqr_query}, 'refused' ],
	[ q{GRANT bloqr TO bloqr_query}, 'refused' ],
	[ q{ALTER SYSTEM SET fsync = on}, 'refused' ],
	[ q{CREATE EXTENSION dblink}, 'refused' ],
	[ q{SELECT * FROM storage_entries FOR UPDATE}, 'refused' ],
	[ q{SELECT * FROM storage_entries FOR NO KEY UPDATE}, 'refused' ],
	[ q{SELECT * FROM storage_entries FOR SHARE}, 'refused' ],
	[ q{SELECT * FROM storage_entries FOR KEY SHARE NOWAIT}, 'refused' ],
	[ q{LOCK TABLE storage_entries IN ACCESS EXCLUSIVE MODE}, 'refused' ],
	[ q{LOCK TABLE storage_entries IN ACCESS SHARE MODE}, 'refused' ],
	[ q{WITH d AS (DELETE FROM storage_entries RETURNING *) SELECT * FROM d}, 'refused' ],
	[ q{WITH u AS (UPDATE storage_entries SET data = '0' RETURNING 1) SELECT count(*) FROM u}, 'refused' ],
	[ q{WITH i AS (INSERT INTO storage_entries (key, data) VALUES ('evil', '1') RETURNING 1) SELECT * FROM i}, 'refused' ],
	[ q{EXPLAIN ANALYZE DELETE FROM storage_entries}, 'refused' ],
	[ q{EXPLAIN ANALYZE UPDATE storage_entries SET data = '0'}, 'refused' ],
	[ q{SELECT set_config('default_transaction_read_only', 'off', false)}, 'either' ],
	[ q{SELECT set_config('transaction_read_only', 'off', true)}, 'either' ],
	[ q{SELECT set_config('transaction_read_only', 'off', false), count(*) FROM storage_entries}, 'either' ],
	[ q{SELECT set_config('role', 'bloqr', false)}, 'refused' ],
	[ q{SELECT set_config('session_authorization', 'bloqr', false)}, 'refused' ],
	[ q{SELECT set_config('statement_timeout', '0', false), pg_sleep(0.1)}, 'either' ],
	[ q{SET ROLE bloqr}, 'refused' ],
	[ q{SET SESSION AUTHORIZATION bloqr}, 'refused' ],
	[ q{SET transaction_read_only = off}, 'refused' ],
	[ q{SET default_transaction_read_only = off}, 'refused' ],
	[ q{SET statement_timeout = 0}, 'refused' ],
	[ q{RESET ALL}, 'refused' ],
	[ q{COMMIT}, 'refused' ],
	[ q{ROLLBACK}, 'refused' ],
	[ q{BEGIN}, 'refused' ],
	[ q{SAVEPOINT s}, 'refused' ],
	[ q{START TRANSACTION READ WRITE}, 'refused' ],
	[ q{SELECT 1; DELETE FROM storage_entries}, 'refused' ],
	[ q{COMMIT; DELETE FROM storage_entries}, 'refused' ],
	[ q{SELECT 1; SELECT 2}, 'refused' ],
	[ qq{SELECT 1;\nSET default_transaction_read_only = off;\nINSERT INTO storage_entries (key, data) VALUES ('evil', '1')}, 'refused' ],
	[ q{COPY storage_entries TO STDOUT}, 'refused' ],
	[ q{COPY storage_entries FROM STDIN}, 'refused' ],
	[ q{COPY (SELECT 1) TO '/tmp/bloqr-t61-copy'}, 'refused' ],
	[ q{COPY storage_entries FROM '/etc/passwd'}, 'refused' ],
	[ q{COPY storage_entries FROM PROGRAM 'true'}, 'refused' ],
	[ q{SELECT * FROM users}, 'refused' ],
	[ q{SELECT token_hash FROM api_tokens}, 'refused' ],
	[ q{SELECT password_hash FROM accounts}, 'refused' ],
	[ q{SELECT lo_import('/etc/passwd')}, 'refused' ],
	[ q{SELECT lo_create(0)}, 'either' ],
	[ q{SELECT lo_from_bytea(0, 'x')}, 'either' ],
	[ q{SELECT pg_read_file('/etc/passwd')}, 'refused' ],
	[ q{SELECT pg_read_binary_file('/etc/passwd')}, 'refused' ],
	[ q{SELECT pg_ls_dir('.')}, 'refused' ],
	[ q{SELECT pg_stat_file('postgresql.conf')}, 'refused' ],
	[ q{SELECT nextval('auth_attempts_id_seq')}, 'refused' ],
	[ q{SELECT setval('admin_audit_log_id_seq', 1000)}, 'refused' ],
	[ q{SELECT pg_advisory_lock(1)}, 'either' ],
	[ q{SELECT pg_advisory_lock_shared(2), pg_try_advisory_lock(3), pg_advisory_xact_lock(4)}, 'either' ],
	[ q{PREPARE p AS SELECT 1}, 'refused' ],
	[ q{EXECUTE p}, 'refused' ],
	[ q{DEALLOCATE ALL}, 'refused' ],
	[ q{DECLARE c CURSOR WITH HOLD FOR SELECT * FROM storage_entries}, 'refused' ],
	[ q{LISTEN x}, 'refused' ],
	[ q{NOTIFY bloqr_cache, 'storage_entries'}, 'refused' ],
	[ q{SELECT pg_notify('bloqr_cache', 'storage_entries')}, 'either' ],
	[ q{SELECT bloqr_cache_send('storage_entries', NULL)}, 'either' ],
	[ q{DO $$ BEGIN DELETE FROM storage_entries; END $$}, 'refused' ],
	[ q{DO $$ BEGIN PERFORM pg_sleep(60); END $$}, 'refused' ],
	[ q{CALL nothing()}, 'refused' ],
	[ q{VACUUM}, 'refused' ],
	[ q{VACUUM FULL storage_entries}, 'refused' ],
	[ q{ANALYZE storage_entries}, 'refused' ],
	[ q{REINDEX TABLE storage_entries}, 'refused' ],
	[ q{CLUSTER storage_entries USING storage_entries_pkey}, 'refused' ],
	[ q{CHECKPOINT}, 'refused' ],
	[ q{DISCARD ALL}, 'refused' ],
	[ q{SELECT pg_reload_conf()}, 'refused' ],
	[ q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'bloqr'}, 'either' ],
	[ q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'bloqr'}, 'either' ],
	[ q{SELECT pg_terminate_backend(pg_backend_pid())}, 'either' ],
	[ q{SELECT pg_cancel_backend(pg_backend_pid()), pg_sleep(1)}, 'either' ],
	[ q{SELECT current_setting('data_directory')}, 'refused' ],
	[ q{SELECT $1}, 'refused' ],
	[ q{-- nothing but a comment}, 'refused' ],
	[ q{;}, 'refused' ],
	[ q{WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r}, 'refused' ],
	[ q{SELECT pg_sleep(60)}, 'refused' ],
	[ q{SELECT txid_current()}, 'either' ],
);
cmp_ok(scalar @HOSTILE, '>=', 12, scalar(@HOSTILE) . ' hostile statements');

# After a statement that returned 200: the connections of both workers
# are still read-only, as bloqr_query, with the 5 s timeout.
sub sessions_clean {
	for (1 .. 4) {
		my $r = qry(q{SELECT current_user AS u, session_user AS s, current_setting('transaction_read_only') AS ro,
			current_setting('default_transaction_read_only') AS dro, current_setting('statement_timeout') AS st,
			(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') AS locks});
		return 0 unless $r->{status} == 200
		    && $JSON->encode($r->{json}{rows}) eq
		       $JSON->encode([ { u => 'bloqr_query', s => 'bloqr_query', ro => 'on', dro => 'off', st => '5s', locks => 0 } ]);
	}
	return 1;
}

subtest 'hostile statements are refused or harmless' => sub {
	for my $h (@HOSTILE) {
		my ($sql, $expect) = @$h;
		(my $name = $sql) =~ s/\s+/ /g;
		my $t0 = time;
		my $r = qry($sql);
		my $took = time - $t0;
		note("$name -> $r->{status} " . ($r->{json}{error} // 'rows ' . ($r->{json}{rowCount} // '?')));
		if ($expect eq 'refused' || $r->{status} != 200) {
			json_error_ok($r, 400, undef, "$name: 400");
		} else {
			ok_result($r, "$name: harmless 200");
		}
		ok($took < 7.5, "$name: answered in " . sprintf('%.2f', $took) . ' s');
		my $after = state_snapshot();
		is($after, $BEFORE, "$name: nothing changed") or diag("before:\n$BEFORE\nafter:\n$after");
		ok(sessions_clean(), "$name: console sessions still read-only and clean")
		    if $r->{status} == 200 || $sql =~ /set_config|SET |RESET|COMMIT|ROLLBACK|BEGIN|terminate|cancel/;
	}
	is(sql("SELECT count(*) FROM storage_entries WHERE key = 'evil' OR key LIKE 'e%'"), '0', 'no evil row');
	is(sql("SELECT count(*) FROM pg_roles WHERE rolname = 'evil'"), '0', 'no evil role');
	ok(!-e '/tmp/bloqr-t61-copy', 'COPY wrote no file');
	is(sql("SELECT rolsuper::text FROM pg_roles WHERE rolname = 'bloqr_query'"), 'false', 'bloqr_query is no superuser');
	# the main connections (superuser bloqr) are unharmed
	my $r = req(GET => '/api/admin/storage/stats');
	is($r->{status}, 200, 'the workers still serve admin requests');
	is($r->{json}{stats}{storage_entries}, 5000, 'and see all 5000 entries');
};

subtest 'error messages reveal no internals' => sub {
	my $r = qry('SELECT * FROM users');
	json_error_ok($r, 400, qr/permission denied/i, 'permission denied names the problem');
	like($r->{json}{error}, qr/users/, '... and the table');
	json_error_ok(qry(q{INSERT INTO storage_entries (key, data) VALUES ('evil', '1') RETURNING key}), 400,
		qr/read-only/i, 'a write: read-only');
	json_error_ok(qry('SELECT * FROM storage_entries FOR UPDATE'), 400, qr/read-only/i, 'FOR UPDATE: read-only');
	json_error_ok(qry('SELECT 1; SELECT 2'), 400, qr/one statement/i, 'two statements: one statement only');
	json_error_ok(qry('DROP TABLE storage_entries'), 400, qr/return rows/i, 'DDL: only statements that return rows');
	# PostgreSQL's message about the caller's own statement may be shown.
	json_error_ok(qry('SELEC 1'), 400, qr/syntax error/i, 'syntax error', pg_message => 1);
	json_error_ok(qry('SELECT nope FROM storage_entries'), 400, qr/nope/, 'unknown column named', pg_message => 1);
	$r = qry(q{SELECT pg_read_file('/etc/passwd')});
	json_error_ok($r, 400, qr/permission denied/i, 'pg_read_file: permission denied');
	unlike($r->{content}, qr{/etc}, 'no path in the message');
	$r = qry(q{SELECT * FROM "/var/lib/x"});
	json_error_ok($r, 400, undef, 'a relation named like a path');
	unlike($r->{content}, qr{/var}, 'its name (a path) is not echoed');
};

# ----------------------------------------------------------- timeouts --

subtest 'a slow statement ends at the timeout; both workers serve at once' => sub {
	# Both workers busy with pg_sleep(60) at the same time.
	my @kids;
	for my $i (1 .. 2) {
		my $pid = fork // die "fork: $!";
		if ($pid == 0) {
			my $t0 = time;
			my $r = qry('SELECT pg_sleep(60)');
			my $took = time - $t0;
			my $ok = $r->{status} == 400 && ($r->{json}{error} // '') =~ /timed out after 5000 ms/ && $took < 7.5;
			print STDERR "child $i: status $r->{status} in $took s: $r->{content}\n" unless $ok;
			_exit($ok ? 0 : 1);
		}
		push @kids, $pid;
	}
	sleep 1;
	is(sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'bloqr_query' AND query LIKE '%pg_sleep(60)%' AND state = 'active'"),
		'2', 'two statements run at once');
	for my $pid (@kids) {
		waitpid($pid, 0);
		is($?, 0, "pg_sleep(60) as child $pid: 400 'timed out after 5000 ms' within 7.5 s");
	}
	my $t0 = time;
	for (1 .. 4) {
		my $r = qry('SELECT 1 AS one');
		is($r->{status}, 200, 'the next statement is served');
	}
	ok(time - $t0 < 2, 'four statements right after in ' . sprintf('%.2f', time - $t0) . ' s');
	is(sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'bloqr_query' AND state <> 'idle'"), '0',
		'no console statement left running or in a transaction');

	# A lock held elsewhere: lock_timeout ends the wait.
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		eval { $PG->psql('BEGIN; LOCK TABLE filter_cache IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT') };
		_exit(0);
	}
	poll(5, sub { sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE c.relname = 'filter_cache' AND l.mode = 'AccessExclusiveLock' AND l.granted") eq '1' });
	$t0 = time;
	my $r = qry('SELECT * FROM filter_cache');
	json_error_ok($r, 400, qr/lock/i, 'a table locked elsewhere: 400 (lock timeout)');
	ok(time - $t0 < 3, 'after ' . sprintf('%.2f', time - $t0) . ' s');
	waitpid($pid, 0);
	is(state_snapshot(), $BEFORE, 'nothing changed');
};

# ---------------------------------------------------------------- 503s --

sub side_pool {
	my (%conf) = @_;
	my $conf = write_conf(%conf);
	my $pool = pool_start($conf, workers => 1);
	my $web = nginx_start(upstream => $pool->addr);
	return $web->{url};
}

subtest 'query_url empty, unusable, or a role that could write: 503' => sub {
	my $base = side_pool('database.query_url' => '');
	json_error_ok(qry('SELECT 1', base => $base), 503, qr/not configured/i, 'empty query_url: 503');
	$base = side_pool('database.query_url' => $PG->url('no_such_role'));
	json_error_ok(qry('SELECT 1', base => $base), 503, undef, 'a role that cannot log in: 503');
	$base = side_pool('database.query_url' => $PG->url('bloqr'));
	json_error_ok(qry('SELECT 1', base => $base), 503, qr/read-only/i, 'the superuser as query_url: 503');
	json_error_ok(qry('DELETE FROM storage_entries RETURNING 1', base => $base), 503, undef,
		'... and nothing is run');
	is(state_snapshot(), $BEFORE, 'nothing changed');
};

subtest 'PostgreSQL down: 503' => sub {
	$PG->stop;
	my $r = qry('SELECT 1');
	json_error_ok($r, 503, undef, 'console: 503');
	$PG->start;
	ok(poll(10, sub { qry('SELECT 1 AS one')->{status} == 200 }), 'back once PostgreSQL is');
};

done_testing();
