#!/usr/bin/perl
# The Bloqr admin dashboard's calls (CONTRACT §2, §3, §7), through the
# suite's real nginx running conf/nginx-dashboard.conf.example: a stand-in
# page directory served from the same origin as the API. Covers the Better
# Auth shaped session endpoints, the CSRF guard (own Origin, trusted
# origins, Sec-Fetch-Site, the header; sign-in too), cookie-only sign-out,
# the get-session token as a bearer that dies with its session (on this
# host and on a second one), the un-prefixed paths, the added fields, the
# dashboard's audit log with its filters, and the §2 headers.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $PG = pg_start();
my $CONF = write_conf('http.cookie_secure' => 'false');
migrate($CONF);
api_setup(pg => $PG, conf => $CONF);

my $PW = 'dashboard password 1';
my $ADMIN_ID = mkuser('Admin@T70.test', name => 'Dash Admin', role => 'admin', password => $PW);
my $OTHER_ID = mkuser('other@t70.test', name => 'Other', password => $PW);
my $TOKEN = mktoken('admin@t70.test');
api_setup(bearer => $TOKEN);    # req sends it unless told otherwise; browser() never does

# The stand-in dashboard: index.html and one asset.
my $PAGES = workdir() . '/pages';
mkdir $PAGES;
mkdir "$PAGES/assets";
for (["$PAGES/index.html", "<!doctype html><title>stand-in dashboard</title>\n"],
    ["$PAGES/assets/app.js", "console.log('stand-in');\n"]) {
	open my $fh, '>', $_->[0] or die "$_->[0]: $!";
	print $fh $_->[1];
	close $fh;
}
chmod 0755, $PAGES, "$PAGES/assets";
chmod 0644, "$PAGES/index.html", "$PAGES/assets/app.js";

my $POOL = pool_start($CONF, workers => 2);
my $WEB = nginx_start(upstream => $POOL->addr, example => 'nginx-dashboard.conf.example', root => $PAGES);
my $URL = $WEB->{url};
my $ORIGIN = $URL;    # http://127.0.0.1:PORT: the browser's own origin here
api_setup(url => $URL);

# A request as a browser page of this origin sends it: the cookie alone,
# plus the headers given (e.g. Origin). No bearer, no X-Requested-With.
sub browser {
	my ($m, $path, %o) = @_;
	return req($m, $path, bearer => undef, %o);
}

# Sign in through /api/auth/sign-in/email as a same-origin page; returns
# (response, cookie value).
sub dash_signin {
	my ($email, %o) = @_;
	my $r = browser(POST => '/api/auth/sign-in/email', json => { email => $email, password => $PW },
		headers => { Origin => $ORIGIN }, from => fresh_addr(), %o);
	my ($cookie) = session_cookie($r);
	return ($r, $cookie);
}

# ------------------------------------------------------------ static --

subtest 'the dashboard files come from the page directory' => sub {
	for my $p ('/', '/admin/users', '/admin/storage', '/some/app/route') {
		my $r = browser(GET => $p);
		is($r->{status}, 200, "GET $p: 200");
		like($r->{content}, qr/stand-in dashboard/, "GET $p: index.html");
		is($r->{headers}{'x-content-type-options'}, 'nosniff', "GET $p: nosniff");
	}
	my $r = browser(GET => '/assets/app.js');
	is($r->{status}, 200, 'an asset: 200');
	like($r->{content}, qr/stand-in/, 'an asset: the file');
	$r = browser(GET => '/health');
	is($r->{status}, 200, 'GET /health goes to the service') or diag show($r);
	is($r->{json}{services}{database}{status}, 'healthy', '... and is its health');
	$r = browser(GET => '/admin/config/anything');
	is($r->{status}, 404, '/admin/config/ goes to the service (404 JSON)');
	json_error_ok($r, 404, undef, '/admin/config/ 404 is the JSON error');
};

# ----------------------------------------------------------- sign-in --

subtest 'sign-in/email: Better Auth shape, cookie, CSRF rule' => sub {
	my ($r, $cookie) = dash_signin('admin@t70.test');
	is($r->{status}, 200, 'same-origin sign-in: 200') or diag show($r);
	my $j = $r->{json} || {};
	is_deeply([sort keys %$j], [qw(redirect success token user)], '{success, redirect, token, user}');
	ok(JSON::PP::is_bool($j->{redirect}) && !$j->{redirect}, 'redirect: false');
	like($j->{token} // '', qr/^bq_/, 'a token');
	is($j->{user}{id}, $ADMIN_ID, 'the user');
	ok(defined $cookie && length $cookie, 'a bloqr_session cookie');
	like($r->{headers}{'cache-control'} // '', qr/no-store/, 'Cache-Control: no-store');

	my %refused = (
		'a foreign Origin' => { Origin => 'https://evil.example' },
		'no Origin and no header' => {},
		'Origin null' => { Origin => 'null' },
		'Sec-Fetch-Site: cross-site' => { 'Sec-Fetch-Site' => 'cross-site', Origin => 'https://evil.example' },
		'own Origin but another port' => { Origin => 'http://127.0.0.1:1' },
	);
	for my $why (sort keys %refused) {
		for my $path ('/api/auth/sign-in/email', '/api/auth/sign-in') {
			my $n = sql('SELECT count(*) FROM sessions');
			$r = browser(POST => $path, json => { email => 'admin@t70.test', password => $PW },
				headers => $refused{$why}, from => fresh_addr());
			json_error_ok($r, 403, qr/cross-site|X-Requested-With|origin/i, "$path with $why: 403");
			ok(!session_cookie($r), '... no cookie');
			is(sql('SELECT count(*) FROM sessions'), $n, '... no session');
		}
	}
	# A form can post text/plain cross-site; even from our origin, refused.
	$r = browser(POST => '/api/auth/sign-in/email', body => $JSON->encode({ email => 'admin@t70.test', password => $PW }),
		headers => { Origin => $ORIGIN, 'Content-Type' => 'text/plain' }, from => fresh_addr());
	json_error_ok($r, 403, qr/Content-Type/i, 'text/plain sign-in: 403');
	ok(!session_cookie($r), '... no cookie');

	my %allowed = (
		'X-Requested-With: bloqr' => { 'X-Requested-With' => 'bloqr' },
		'Sec-Fetch-Site: same-origin' => { 'Sec-Fetch-Site' => 'same-origin' },
		'own Origin, upper case' => { Origin => uc $ORIGIN },
	);
	for my $why (sort keys %allowed) {
		$r = browser(POST => '/api/auth/sign-in/email', json => { email => 'admin@t70.test', password => $PW },
			headers => $allowed{$why}, from => fresh_addr());
		is($r->{status}, 200, "sign-in with $why: 200") or diag show($r);
	}
	$r = browser(POST => '/api/auth/sign-in/email', json => { email => 'admin@t70.test', password => 'wrong' },
		headers => { Origin => $ORIGIN }, from => fresh_addr());
	json_error_ok($r, 401, qr/Invalid email or password/, 'wrong password: 401 with error and message');
};

# ------------------------------------------------------- get-session --

subtest 'get-session: null when signed out, the session when signed in' => sub {
	for my $case (['no credentials', {}], ['an unknown cookie', { cookie => 'bq_' . ('x' x 43) }],
	    ['a malformed cookie', { cookie => 'garbage' }], ['an unknown bearer', { bearer => 'bq_' . ('y' x 43) }]) {
		my $r = browser(GET => '/api/auth/get-session', %{ $case->[1] });
		is($r->{status}, 200, "$case->[0]: 200");
		is($r->{content}, 'null', "$case->[0]: body null");
		is($r->{headers}{'x-content-type-options'}, 'nosniff', "$case->[0]: nosniff");
	}
	my ($in, $cookie) = dash_signin('admin@t70.test');
	my $r = browser(GET => '/api/auth/get-session', cookie => $cookie);
	is($r->{status}, 200, 'by cookie: 200') or diag show($r);
	my $j = $r->{json} || {};
	is_deeply([sort keys %$j], [qw(session user)], '{user, session}');
	is_deeply([sort keys %{ $j->{user} || {} }], [sort qw(id email name emailVerified image tier role)],
		'user: the Better Auth fields');
	is($j->{user}{id}, $ADMIN_ID, 'user id');
	is($j->{user}{email}, 'Admin@T70.test', 'user email');
	is($j->{user}{role}, 'admin', 'user role');
	is_deeply([sort keys %{ $j->{session} || {} }], [sort qw(id token userId expiresAt createdAt)],
		'session: the Better Auth fields');
	is($j->{session}{userId}, $ADMIN_ID, 'session userId');
	like($j->{session}{$_} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "session $_ is an ISO time")
		for qw(expiresAt createdAt);
	is(sql("SELECT count(*) FROM sessions WHERE id = '$j->{session}{id}' AND user_id = '$ADMIN_ID'"), 1,
		'session id is the sessions row');
	like($r->{headers}{'cache-control'} // '', qr/no-store/, 'Cache-Control: no-store');

	# The token is a bearer for the same session.
	my $bearer = $j->{session}{token};
	my $u = req(GET => '/api/admin/users', bearer => $bearer);
	is($u->{status}, 200, "the session's token works as a bearer") or diag show($u);
	my $again = req(GET => '/api/auth/get-session', bearer => $bearer);
	is($again->{json}{session}{id}, $j->{session}{id}, '... and is the same session');
};

# ------------------------------------------ cookie-only requests (CSRF) --

subtest 'a cookie-only PATCH needs our origin' => sub {
	my (undef, $cookie) = dash_signin('admin@t70.test');
	my $path = "/api/admin/users/$OTHER_ID";
	my $r = browser(PATCH => $path, cookie => $cookie, json => { tier => 'pro' },
		headers => { Origin => 'https://evil.example' });
	json_error_ok($r, 403, qr/cross-site|X-Requested-With|origin/i, 'a foreign Origin: 403');
	$r = browser(PATCH => $path, cookie => $cookie, json => { tier => 'pro' });
	json_error_ok($r, 403, undef, 'neither Origin nor header: 403');
	is(sql("SELECT tier FROM users WHERE id = '$OTHER_ID'"), 'free', 'nothing changed');
	$r = browser(PATCH => $path, cookie => $cookie, json => { tier => 'pro' }, headers => { Origin => $ORIGIN });
	is($r->{status}, 200, 'own Origin: 200') or diag show($r);
	is(sql("SELECT tier FROM users WHERE id = '$OTHER_ID'"), 'pro', 'changed');
	$r = browser(PATCH => $path, cookie => $cookie, json => { tier => 'free' },
		headers => { 'Sec-Fetch-Site' => 'same-origin' });
	is($r->{status}, 200, 'Sec-Fetch-Site: same-origin: 200') or diag show($r);
	# A bearer needs none of it, and a GET by cookie neither.
	$r = req(PATCH => $path, bearer => $TOKEN, json => { tier => 'free' }, headers => { Origin => 'https://evil.example' });
	is($r->{status}, 200, 'bearer with a foreign Origin: 200') or diag show($r);
	$r = browser(GET => $path, cookie => $cookie, headers => { Origin => 'https://evil.example' });
	is($r->{status}, 200, 'GET by cookie: 200');
};

subtest 'cookie-only sign-out with our Origin revokes the session' => sub {
	my (undef, $cookie) = dash_signin('admin@t70.test');
	my $s = browser(GET => '/api/auth/get-session', cookie => $cookie);
	my $bearer = $s->{json}{session}{token} // '';
	is(req(GET => '/api/admin/users', bearer => $bearer)->{status}, 200, 'signed in: the bearer works');

	my $r = browser(POST => '/api/auth/sign-out', cookie => $cookie, json => {},
		headers => { Origin => 'https://evil.example' });
	json_error_ok($r, 403, undef, 'sign-out from a foreign Origin: 403');
	is(browser(GET => '/api/auth/get-session', cookie => $cookie)->{content} ne 'null', 1, '... still signed in');

	$r = browser(POST => '/api/auth/sign-out', cookie => $cookie, json => {}, headers => { Origin => $ORIGIN });
	is($r->{status}, 200, 'sign-out with our Origin: 200') or diag show($r);
	ok($r->{json}{success}, '{success: true}');
	my ($v, $attr) = session_cookie($r);
	ok(defined $v && $v eq '' && ($attr->{'max-age'} // '') eq '0', 'the cookie is cleared');
	my $after = browser(GET => '/api/auth/get-session', cookie => $cookie);
	is($after->{content}, 'null', 'get-session with the old cookie: null');
	is(req(GET => '/api/admin/users', bearer => $bearer)->{status}, 401, "the session's bearer: 401");
	is(browser(PATCH => "/api/admin/users/$OTHER_ID", cookie => $cookie, json => { tier => 'pro' },
		headers => { Origin => $ORIGIN })->{status}, 401, 'the old cookie: 401');
};

subtest 'the get-session token dies with a ban and a delete, on another host within 2 s' => sub {
	my $conf_b = write_conf('http.cookie_secure' => 'false');
	my $pool_b = pool_start($conf_b, workers => 1);
	my $web_b = nginx_start(upstream => $pool_b->addr);
	my $B = $web_b->{url};
	cache_ready($B, 'host B');

	for my $how (qw(ban delete)) {
		my $email = "victim-$how\@t70.test";
		my $id = mkuser($email, role => 'user', password => $PW);
		my (undef, $cookie) = dash_signin($email);
		my $bearer = browser(GET => '/api/auth/get-session', cookie => $cookie)->{json}{session}{token} // '';
		is(req($B, GET => '/api/auth/session', bearer => $bearer)->{status}, 200, "$how: B accepts the bearer (cached)");
		is(req($B, GET => '/api/auth/session', bearer => $bearer)->{status}, 200, "$how: ... again");
		my $r = $how eq 'ban' ? req(POST => "/api/admin/users/$id/ban", bearer => $TOKEN, json => {})
		    : req(DELETE => "/api/admin/users/$id", bearer => $TOKEN);
		is($r->{status}, 200, "$how on A: 200") or diag show($r);
		is(browser(GET => '/api/auth/get-session', cookie => $cookie)->{content}, 'null', "$how: get-session on A: null");
		ok(defined within(2, sub { req($B, GET => '/api/auth/session', bearer => $bearer)->{status} =~ /^40[13]$/ }),
			"$how: B refuses the bearer within 2 s");
	}
};

subtest 'trusted_origins replaces the own-origin rule' => sub {
	my $conf_t = write_conf('http.cookie_secure' => 'false',
		'http.trusted_origins' => 'https://admin.example.test  http://localhost:4200');
	my $pool_t = pool_start($conf_t, workers => 1);
	my $web_t = nginx_start(upstream => $pool_t->addr);
	my $T = $web_t->{url};
	for my $o ('https://admin.example.test', 'https://ADMIN.example.test:443', 'http://localhost:4200') {
		my $r = req($T, POST => '/api/auth/sign-in/email', bearer => undef, json => { email => 'admin@t70.test',
			password => $PW }, headers => { Origin => $o }, from => fresh_addr());
		is($r->{status}, 200, "trusted $o: 200") or diag show($r);
	}
	for my $o ($T, 'https://admin.example.test.evil.example', 'http://admin.example.test') {
		my $r = req($T, POST => '/api/auth/sign-in/email', bearer => undef, json => { email => 'admin@t70.test',
			password => $PW }, headers => { Origin => $o }, from => fresh_addr());
		json_error_ok($r, 403, undef, "untrusted $o: 403");
	}
	my $bad = write_conf('http.trusted_origins' => 'admin.example.test');
	my $run = run_cmd([program('cgi-bin/bloqr.fcgi'), '-c', $bad, '--listen', '127.0.0.1:' . free_port()], timeout => 10);
	isnt($run->{rc}, 0, 'an origin without a scheme stops the program at start');
	like($run->{err}, qr/trusted_origins/, '... naming the key') or diag($run->{err});
};

# ------------------------------------------- un-prefixed twins, fields --

# Volatile values (times, durations) replaced, so two answers compare.
sub steady {
	my ($s) = @_;
	$s =~ s/"(timestamp|exportedAt|deployedAt)":"[^"]*"/"$1":"T"/g;
	$s =~ s/"(latency_ms|duration_ms)":[0-9.e+-]+/"$1":0/g;
	$s =~ s/"duration":"[^"]*"/"duration":"D"/g;
	return $s;
}

subtest 'the un-prefixed paths answer as their /api twins' => sub {
	api_setup(bearer => $TOKEN);
	req(PUT => '/api/storage/cache%2Fdash', json => { data => { n => 1 } });
	req(PUT => '/api/filter-cache', json => { source => 'https://f.example/list.txt', content => 'x', hash => 'h' });
	my %get = map { $_ => 1 } qw(stats export tables);
	for my $what (qw(tables stats export query vacuum clear-expired)) {
		my ($m, %o) = $get{$what} ? ('GET') : ('POST', json => ($what eq 'query' ? { sql => 'SELECT 1 AS one' } : {}));
		my $a = req($m, "/api/admin/storage/$what", %o);
		my $b = req($m, "/admin/storage/$what", %o);
		is($a->{status}, 200, "$m /api/admin/storage/$what: 200") or diag show($a);
		is($b->{status}, $a->{status}, "$m /admin/storage/$what: same status");
		if ($what eq 'tables' || $what eq 'vacuum' || $what eq 'clear-expired') {
			is($b->{content}, $a->{content}, "$what: byte-identical bodies");
		} else {
			is(steady($b->{content}), steady($a->{content}), "$what: identical bodies but for times");
		}
		is($b->{headers}{'content-type'}, $a->{headers}{'content-type'}, "$what: same Content-Type");
		like($b->{headers}{'cache-control'} // '', qr/no-store/, "$what: no-store");
	}
	my $a = req(POST => '/api/admin/storage/clear-cache', json => {});
	is($a->{json}{removed}, $a->{json}{deleted}, 'clear-cache: removed = deleted');
	is($a->{json}{deleted}, 2, '... both rows');
	my $b = req(POST => '/admin/storage/clear-cache', json => {});
	is($b->{content}, req(POST => '/api/admin/storage/clear-cache', json => {})->{content},
		'clear-cache with nothing left: byte-identical bodies');
	is(steady(browser(GET => '/health')->{content}), steady(browser(GET => '/api/health')->{content}),
		'/health: identical to /api/health but for times');
	is(req(GET => '/admin/storage/stats', bearer => undef)->{status}, 401, 'un-prefixed admin path without credentials: 401');
	is(req(GET => '/admin/storage/stats', bearer => mktoken('other@t70.test'))->{status}, 403, '... as a non-admin: 403');
	my $idx = req(GET => '/api', bearer => undef)->{json}{endpoints} || {};
	ok(!exists $idx->{'GET /admin/storage/stats'}, 'GET /api lists the /api paths, not their twins');
	ok(exists $idx->{'GET /api/auth/get-session'} && exists $idx->{'GET /admin/system/audit'}, '... and lists the new endpoints');
};

subtest 'the fields the dashboard reads' => sub {
	req(PUT => '/api/storage/k1', json => { data => 1 });
	req(PUT => '/api/storage/k2', json => { data => 2 });
	req(PUT => '/api/filter-cache', json => { source => 'https://f.example/a.txt', content => 'x', hash => 'h' });
	my $s = req(GET => '/admin/storage/stats');
	my $j = $s->{json} || {};
	is($j->{kvKeys}, $j->{stats}{storage_entries}, 'kvKeys = storage entries');
	is($j->{kvKeys}, 2, '... 2');
	is($j->{cacheEntries}, $j->{stats}{filter_cache}, 'cacheEntries = filter-cache rows');
	is($j->{cacheEntries}, 1, '... 1');
	is($j->{r2Objects}, 0, 'r2Objects: 0');
	my $tables = `sqlite3 '${\ conf_value($CONF, 'cache', 'path')}' "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"`;
	chomp $tables;
	is($j->{d1Tables}, $tables, "d1Tables: the tables of this host's SQLite cache ($tables)");
	my $q = req(POST => '/admin/storage/query', json => { sql => 'SELECT 1 AS a, 2 AS b' });
	is_deeply($q->{json}{columns}, [qw(a b)], 'query: columns in order');
	is_deeply($q->{json}{columns}, [map { $_->{name} } @{ $q->{json}{meta}{columns} || [] }], '... the names in meta');
	like($q->{json}{duration} // '', qr/^\d+(\.\d)? ms$/, 'query: duration as "N ms"');
	is(req(GET => '/api/version', bearer => undef)->{json}{name}, 'bloqr-backend', 'version: name');
	$q = req(POST => '/admin/storage/query', json => { sql => 'DELETE FROM storage_entries' });
	json_error_ok($q, 400, undef, 'a refused query: 400 with error and message');
};

# ------------------------------------------------------------- audit --

sub audit {
	my ($path, %o) = @_;
	return req(GET => $path, %o);
}

subtest 'the audit log in the dashboard shape, with its filters' => sub {
	my $r = audit('/admin/system/audit');
	is($r->{status}, 200, '/admin/system/audit: 200') or diag show($r);
	my $j = $r->{json} || {};
	is_deeply([sort keys %$j], [qw(items limit offset success total)], '{success, items, total, limit, offset}');
	is($j->{limit}, 25, 'limit defaults to 25');
	is($j->{offset}, 0, 'offset defaults to 0');
	ok($j->{total} >= 8, "total counts every row ($j->{total})");
	my @keys = sort qw(id actor_id actor_email action resource_type resource_id old_values new_values ip_address
		status created_at);
	my @bad = grep { join(' ', sort keys %$_) ne "@keys" } @{ $j->{items} || [] };
	is(scalar @bad, 0, 'every item has exactly the dashboard keys') or diag $JSON->encode($bad[0]);
	my @times = map { $_->{created_at} } @{ $j->{items} };
	is_deeply(\@times, [sort { $b cmp $a } @times], 'newest first');

	# The PATCH by cookie in an earlier subtest: user.update of OTHER.
	my ($upd) = grep { $_->{action} eq 'user.update' } @{ $j->{items} };
	ok($upd, 'a user.update item') or return;
	is($upd->{resource_type}, 'user', 'resource_type user');
	is($upd->{resource_id}, $OTHER_ID, 'resource_id: the user');
	is($upd->{actor_id}, $ADMIN_ID, 'actor_id');
	is($upd->{actor_email}, 'Admin@T70.test', 'actor_email');
	is($upd->{status}, 'success', 'status success');
	like($upd->{ip_address} // '', qr/^127\.0\.0\.\d+$/, 'ip_address: the client address');
	ok(exists $upd->{old_values}{tier} && exists $upd->{new_values}{tier}, 'old and new values name the tier');
	like($upd->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'created_at ISO');

	my $all = audit('/admin/system/audit?limit=100')->{json};
	my %types = map { $_->{resource_type} => 1 } @{ $all->{items} };
	ok($types{$_}, "resource_type $_ present") for qw(user storage);
	for my $t (qw(user storage)) {
		my $f = audit("/admin/system/audit?limit=100&resource_type=$t")->{json};
		my @other = grep { $_->{resource_type} ne $t } @{ $f->{items} };
		ok(@{ $f->{items} } && !@other, "resource_type=$t: only $t items");
		is($f->{total}, scalar(grep { $_->{resource_type} eq $t } @{ $all->{items} }), "resource_type=$t: total");
	}
	my $f = audit('/admin/system/audit?limit=100&action=user.ban')->{json};
	ok(@{ $f->{items} } && !grep({ $_->{action} ne 'user.ban' } @{ $f->{items} }), 'action=user.ban: only bans');
	is($f->{items}[0]{new_values}{banned}, JSON::PP::true, 'a ban: new_values.banned true');
	for my $actor ('admin@t70.test', 'ADMIN@T70.TEST', $ADMIN_ID) {
		my $a = audit('/admin/system/audit?limit=100&actor=' . pct_encode($actor))->{json};
		ok(@{ $a->{items} } && !grep({ ($_->{actor_id} // '') ne $ADMIN_ID } @{ $a->{items} }),
			"actor=$actor: only the admin's rows");
	}
	is(audit('/admin/system/audit?actor=nobody%40t70.test')->{json}{total}, 0, 'an unknown actor: none');

	# Time bounds, inclusive.
	my $newest = $all->{items}[0]{created_at};
	my $oldest = $all->{items}[-1]{created_at};
	my ($last_day) = $newest =~ /^(\d{4}-\d\d-\d\d)/;
	my ($first_day) = $oldest =~ /^(\d{4}-\d\d-\d\d)/;
	is(audit("/admin/system/audit?from=$newest&to=$newest")->{json}{total} >= 1, 1, 'from = to = a row\'s time: includes it');
	is(audit("/admin/system/audit?from=$first_day&to=$last_day&limit=100")->{json}{total}, $all->{total},
		'from and to as dates: whole days, both included');
	is(audit('/admin/system/audit?from=2999-01-01')->{json}{total}, 0, 'from in the future: none');
	is(audit('/admin/system/audit?to=2000-01-01T00:00:00Z')->{json}{total}, 0, 'to in the past: none');
	is(audit('/admin/system/audit?to=' . pct_encode($oldest))->{json}{total} >= 1, 1, 'to = the oldest time: includes it');

	# Paging and validation.
	my $p = audit('/admin/audit-logs?limit=2&offset=1')->{json};
	is(scalar @{ $p->{items} }, 2, '/admin/audit-logs: limit 2');
	is($p->{items}[0]{id}, $all->{items}[1]{id}, '... offset 1');
	is($p->{total}, $all->{total}, '... total');
	for my $q ('limit=0', 'limit=101', 'limit=x', 'offset=-1', 'from=yesterday', 'to=2026-02-30', 'from=2026-13-01T00:00:00Z') {
		json_error_ok(audit("/admin/system/audit?$q"), 400, undef, "$q: 400");
	}
	is(audit('/admin/system/audit', bearer => mktoken('other@t70.test'))->{status}, 403, 'non-admin: 403');
	is(audit('/admin/system/audit', bearer => undef)->{status}, 401, 'no credentials: 401');
};

# ------------------------------------------------------------ headers --

subtest 'nosniff everywhere, no-store with credentials' => sub {
	my @cases = (
		[GET => '/api/version', undef, qr/^public, max-age=60$/],
		[GET => '/api/deployments', undef, qr/^public, max-age=60$/],
		[GET => '/api/version', $TOKEN, qr/no-store/],
		[GET => '/api/deployments', $TOKEN, qr/no-store/],
		[GET => '/api', $TOKEN, qr/no-store/],
		[GET => '/api/nope', $TOKEN, qr/no-store/],
		[GET => '/api/admin/users', 'bq_' . ('z' x 43), qr/no-store/],
		[GET => '/api/storage/k1', $TOKEN, qr/no-store/],
		[GET => '/api/admin/users', undef, qr/no-store/],
	);
	for my $c (@cases) {
		my ($m, $p, $bearer, $cc) = @$c;
		my $r = req($m, $p, bearer => $bearer);
		my $who = defined $bearer ? 'with a bearer' : 'without credentials';
		is($r->{headers}{'x-content-type-options'}, 'nosniff', "$m $p $who ($r->{status}): nosniff");
		like($r->{headers}{'cache-control'} // '(none)', $cc, "$m $p $who: Cache-Control $cc");
	}
	my (undef, $cookie) = dash_signin('admin@t70.test');
	my $r = browser(GET => '/api/deployments', cookie => $cookie);
	like($r->{headers}{'cache-control'} // '', qr/no-store/, 'a public read with the session cookie: no-store');
};

done_testing();
