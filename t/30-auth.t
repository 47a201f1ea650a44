#!/usr/bin/perl
# Authentication (CONTRACT §1 user/token create, §3): the CLI's user and
# token commands, sign-in with its cookie and rate limits, sessions,
# sign-out with the CSRF guard, bearer tokens stored only as hashes, and the
# admin role check. One PostgreSQL, the pool (2 workers) behind nginx.
#
# Every request from this script reaches nginx from a loopback address it
# picks (127.0.0.x as the socket's source), so that the per-address sign-in
# limit of one group of tests does not spill into the next.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Digest::SHA qw(sha256_hex);
use JSON::PP;

# The default configuration: cookie_secure absent, hence true.
my $S = stack(conf => { 'http.cookie_secure' => undef });
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);

# ----------------------------------------------------------- the CLI --

subtest 'bloqr-admin user create' => sub {
	my $id = mkuser('Alice@Example.test', name => 'Alice Example', password => 'correct horse 1');
	ok($id, 'created') or return;
	is(sql("SELECT email || '|' || name || '|' || role || '|' || tier FROM users WHERE id = '$id'"),
		'Alice@Example.test|Alice Example|user|free', 'stored with the default role and tier');
	my $h = sql("SELECT password_hash FROM accounts WHERE user_id = '$id' AND provider_id = 'credential'");
	like($h, qr/^\$argon2id\$/, 'the password is stored as an argon2id hash');
	unlike($h, qr/correct horse/, '... not in clear');

	my $r = admin($CONF, ['user', 'create', '--email', 'alice@EXAMPLE.test', '--password-stdin'],
		stdin => "other password\n");
	is($r->{rc}, 1, 'an email taken in another case: exit 1');
	is($r->{out}, '', '... nothing on stdout');
	like($r->{err}, qr/^[^\n]+\n\z/, '... one line on stderr') or diag($r->{err});
	is(sql("SELECT count(*) FROM users WHERE lower(email) = 'alice\@example.test'"), 1, '... no second user');

	my $n0 = sql('SELECT count(*) FROM users');
	for my $bad (['--email', 'not-an-email'], ['--email', 'x@y.test', '--role', 'root'],
		['--email', 'x@y.test', '--tier', 'gold'], ['--email', ''], ['--name', 'No Email']) {
		$r = admin($CONF, ['user', 'create', @$bad]);
		isnt($r->{rc}, 0, "user create @$bad: refused");
		is($r->{out}, '', '... nothing on stdout');
	}
	is(sql('SELECT count(*) FROM users'), $n0, 'no user was created by the refused commands');

	# Validation happens before the database is touched: with an
	# unreachable database the message is still about the value.
	my $dead = write_conf('database.url' => 'postgresql:///bloqr?host=/nonexistent-bloqr-t30');
	$r = admin($dead, ['user', 'create', '--email', 'x@y.test', '--role', 'root']);
	isnt($r->{rc}, 0, 'bad role with an unreachable database: refused');
	like($r->{err}, qr/role/i, '... the message is about the role') or diag($r->{err});
	unlike($r->{err}, qr/connect/i, '... not about the connection');
	$r = admin($dead, ['user', 'create', '--email', 'bad address', '--password-stdin'], stdin => "pw\n");
	like($r->{err}, qr/email/i, 'bad email with an unreachable database: the message names the email');

	# The password: one line, line end stripped, not empty, bounded.
	$r = admin($CONF, ['user', 'create', '--email', 'empty@example.test', '--password-stdin'], stdin => "\n");
	isnt($r->{rc}, 0, 'an empty password: refused');
	$r = admin($CONF, ['user', 'create', '--email', 'empty@example.test', '--password-stdin'], stdin => '');
	isnt($r->{rc}, 0, 'no password at all on stdin: refused');
	$r = admin($CONF, ['user', 'create', '--email', 'long@example.test', '--password-stdin'],
		stdin => ('p' x 1025) . "\n");
	isnt($r->{rc}, 0, 'a password of 1025 bytes: refused');
	is(sql("SELECT count(*) FROM users WHERE email IN ('empty\@example.test', 'long\@example.test')"), 0,
		'... and no user created for them');
	ok(mkuser('max@example.test', password => 'q' x 1024), 'a password of 1024 bytes is accepted');
	is(signin('max@example.test', 'q' x 1024)->{status}, 200, '... and signs in');
	ok(mkuser('crlf@example.test', password => "crlf-password\r"), 'a password line ending in CR LF');
	is(signin('crlf@example.test', 'crlf-password')->{status}, 200, '... signs in without the CR');

	ok(mkuser('ro@example.test', role => 'readonly', tier => 'pro'), 'user create --role --tier');
	is(sql("SELECT role || '|' || tier FROM users WHERE email = 'ro\@example.test'"), 'readonly|pro',
		'... stored');
	ok(mkuser('nopw@example.test'), 'a user without a password');
	is(sql("SELECT count(*) FROM accounts a JOIN users u ON u.id = a.user_id WHERE u.email = 'nopw\@example.test'"
		. " AND a.password_hash IS NOT NULL"), 0, '... has no password hash');
};

subtest 'bloqr-admin token create' => sub {
	my $r = admin($CONF, ['token', 'create', '--email', 'nobody@example.test']);
	is($r->{rc}, 1, 'unknown email: exit 1');
	is($r->{out}, '', '... nothing on stdout');
	like($r->{err}, qr/^[^\n]+\n\z/, '... one line on stderr') or diag($r->{err});
	for my $bad ('-1', '3651', 'abc', '1.5', '', '7d') {
		$r = admin($CONF, ['token', 'create', '--email', 'alice@example.test', '--ttl-days', $bad]);
		isnt($r->{rc}, 0, "--ttl-days '$bad': refused");
		is($r->{out}, '', '... nothing on stdout');
	}
	is(sql('SELECT count(*) FROM api_tokens'), 0, 'no token was created by the refused commands');

	my $t7 = mktoken('ALICE@example.test', '--ttl-days', '7', '--name', 'seven days');
	my $t0 = mktoken('alice@example.test', '--ttl-days', '0');
	my $td = mktoken('alice@example.test');
	my $tmax = mktoken('alice@example.test', '--ttl-days', '3650');
	ok($t7 && $t0 && $td && $tmax, 'tokens created (email case-insensitive)') or return;
	isnt($t7, $t0, 'tokens differ');

	my $exp = sub {
		my ($tok, $cond) = @_;
		my $h = sha256_hex($tok);
		return sql("SELECT $cond FROM api_tokens WHERE token_hash = '$h'");
	};
	is($exp->($t7, "expires_at > now() + interval '6 days' AND expires_at < now() + interval '8 days'"), 't',
		'--ttl-days 7 expires in 7 days');
	is($exp->($t7, 'name'), 'seven days', '--name is stored as the label');
	is($exp->($t0, 'expires_at IS NULL'), 't', '--ttl-days 0 never expires');
	is($exp->($td, "expires_at > now() + interval '89 days' AND expires_at < now() + interval '91 days'"), 't',
		'the default is 90 days');
	is($exp->($tmax, "expires_at > now() + interval '3649 days'"), 't', '--ttl-days 3650');

	for my $t ($t7, $t0, $td) {
		my $s = req(GET => '/api/auth/session', bearer => $t);
		is($s->{status}, 200, 'a CLI token authenticates as Bearer');
		is($s->{json}{user}{email}, 'Alice@Example.test', '... as its user');
	}

	# Only hashes are stored.
	for my $t ($t7, $t0) {
		is(sql("SELECT count(*) FROM api_tokens a WHERE position('$t' IN a::text) > 0"), 0,
			'the token string appears in no column of api_tokens');
		is(sql("SELECT count(*) FROM api_tokens WHERE token_hash = encode(sha256(convert_to('$t', 'UTF8')), 'hex')"),
			1, 'token_hash is the SHA-256 hex of the token');
	}

	# An expired token is refused.
	my $h = sha256_hex($t7);
	sql("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = '$h'");
	my $s = poll(5, sub { my $x = req(GET => '/api/auth/session', bearer => $t7); $x->{status} == 401 ? $x : undef })
	    || req(GET => '/api/auth/session', bearer => $t7);
	json_error_ok($s, 401, undef, 'an expired token: 401 (within 5 s of expiring)');
};

# ------------------------------------------------------------ sign-in --

mkuser('bob@example.test', name => 'Bob', password => 'bob-password-1') or BAIL_OUT('cannot create users');
my $BOB_ID = sql("SELECT id FROM users WHERE email = 'bob\@example.test'");

subtest 'sign-in: success, cookie, user object' => sub {
	my $r = signin('bob@example.test', 'bob-password-1');
	is($r->{status}, 200, 'correct password: 200') or return diag($r->{content});
	like($r->{headers}{'content-type'} // '', qr{^application/json}i, 'JSON');
	my $j = $r->{json};
	ok(JSON::PP::is_bool($j->{success}) && $j->{success}, 'success: true');
	ok(defined $j->{token} && !ref $j->{token} && length $j->{token} >= 32, 'a token of at least 32 characters');
	user_ok($j->{user}, 'sign-in', id => $BOB_ID, email => 'bob@example.test', name => 'Bob',
		role => 'user', tier => 'free', banned => 'false', banReason => undef, banExpires => undef,
		image => undef, emailVerified => 'false');
	my @bad = grep { /password|hash|secret/i } all_keys($j);
	is("@bad", '', 'no password or hash keys anywhere in the body');
	unlike($r->{content}, qr/argon2|password/i, 'no password or password hash in the body');
	my $tok = $j->{token} // '';
	my $hash = sha256_hex($tok);
	unlike($r->{content}, qr/\Q$hash\E/, 'the token hash is not in the body');
	my $count = () = $r->{content} =~ /\Q$tok\E/g;
	is($count, 1, 'the token appears once, as "token"');

	my ($val, $a) = session_cookie($r);
	ok(defined $val && length $val, 'Set-Cookie: bloqr_session=<value>') or return diag(join "\n", set_cookies($r));
	ok(exists $a->{httponly}, 'HttpOnly');
	is(lc($a->{samesite} // ''), 'strict', 'SameSite=Strict');
	is($a->{path}, '/', 'Path=/');
	ok(exists $a->{secure}, 'Secure (cookie_secure defaults to true)');
	ok(defined $a->{'max-age'} && $a->{'max-age'} =~ /^\d+$/ && $a->{'max-age'} > 0, 'a positive Max-Age')
	    or diag('Max-Age: ' . ($a->{'max-age'} // 'missing'));

	# Stored only as a hash.
	is(sql("SELECT count(*) FROM sessions s WHERE position('$tok' IN s::text) > 0"), 0,
		'the token appears in no column of sessions');
	is(sql("SELECT count(*) FROM sessions WHERE token_hash = encode(sha256(convert_to('$tok', 'UTF8')), 'hex')"
		. " AND user_id = '$BOB_ID'"), 1, 'sessions.token_hash is the SHA-256 hex of the token');
	if ($val ne $tok) {
		is(sql("SELECT count(*) FROM sessions s WHERE position('$val' IN s::text) > 0"), 0,
			'the cookie value appears in no column of sessions');
	}

	$r = signin('BOB@Example.TEST', 'bob-password-1');
	is($r->{status}, 200, 'the email is case-insensitive');
	is($r->{json}{user}{id}, $BOB_ID, '... same user');
	is($r->{json}{user}{email}, 'bob@example.test', '... shown as stored');
};

subtest 'sign-in: cookie_secure = false' => sub {
	my $conf = write_conf('http.cookie_secure' => 'false');
	my $pool = pool_start($conf, workers => 1);
	my $web = nginx_start(upstream => $pool->addr);
	my $r = signin('bob@example.test', 'bob-password-1', base => $web->{url});
	is($r->{status}, 200, 'signed in through a second pool');
	my ($val, $a) = session_cookie($r);
	ok(defined $val, 'a bloqr_session cookie');
	ok(!exists $a->{secure}, 'without Secure') or diag(join "\n", set_cookies($r));
	ok(exists $a->{httponly} && lc($a->{samesite} // '') eq 'strict', '... still HttpOnly, SameSite=Strict');
	$web->stop;
	$pool->stop;
};

subtest 'sign-in: wrong credentials and bad input' => sub {
	my $from = fresh_addr();
	my $wrong = signin('bob@example.test', 'not-the-password', from => $from);
	json_error_ok($wrong, 401, undef, 'wrong password: 401');
	my $unknown = signin('nobody@example.test', 'whatever', from => $from);
	json_error_ok($unknown, 401, undef, 'unknown email: 401');
	is($unknown->{json}{error}, $wrong->{json}{error}, 'the same message for both');
	ok(!session_cookie($wrong) && !session_cookie($unknown), 'no session cookie on failure');
	my $nopw = signin('nopw@example.test', 'anything', from => fresh_addr());
	json_error_ok($nopw, 401, undef, 'a user without a password cannot sign in: 401');
	is($nopw->{json}{error}, $wrong->{json}{error}, '... with the same message');

	$from = fresh_addr();
	my %cases = (
		'{"password":"x"}'                          => qr/email/i,
		'{"email":"bob@example.test"}'              => qr/password/i,
		'{"email":42,"password":"x"}'               => qr/email/i,
		'{"email":"bob@example.test","password":7}' => qr/password/i,
		'{"email":"bob@example.test","password":""}' => qr/password/i,
		'{"email":"","password":"x"}'               => qr/email/i,
	);
	for my $body (sort keys %cases) {
		json_error_ok(req(POST => '/api/auth/sign-in', body => $body, from => $from, csrf => 1), 400, $cases{$body},
			"400 naming the field: $body");
	}
	json_error_ok(req(POST => '/api/auth/sign-in', body => '{"email":', from => $from, csrf => 1), 400, undef,
		'malformed JSON: 400');
	json_error_ok(req(POST => '/api/auth/sign-in', body => '[]', from => $from, csrf => 1), 400, undef,
		'not an object: 400');
	my $m = req(GET => '/api/auth/sign-in', from => $from);
	is($m->{status}, 405, 'GET /api/auth/sign-in: 405');
	like($m->{headers}{allow} // '', qr/POST/, '... Allow: POST');
};

subtest 'sign-in: 5 failures for one email lock it' => sub {
	mkuser('carol@example.test', password => 'carol-password-1') or return;
	# Each failure from its own address: only the email's count matters.
	for my $i (1 .. 5) {
		my $r = signin('Carol@example.test', "wrong-$i", from => fresh_addr());
		is($r->{status}, 401, "failure $i: 401");
	}
	my $r = signin('carol@example.test', 'wrong-6', from => fresh_addr());
	json_error_ok($r, 429, undef, '6th attempt: 429');
	retry_after_ok($r, '6th attempt');
	$r = signin('carol@example.test', 'carol-password-1', from => fresh_addr());
	json_error_ok($r, 429, undef, 'the correct password during the lock-out: 429');
	retry_after_ok($r, 'correct password');
	ok(!session_cookie($r) && !defined(($r->{json} || {})->{token}), '... no session');
	is(signin('bob@example.test', 'bob-password-1', from => fresh_addr())->{status}, 200,
		'another email is not locked');
};

subtest 'sign-in: 5 failures from one address lock it' => sub {
	my $from = fresh_addr();
	for my $i (1 .. 5) {
		is(signin("ghost$i\@example.test", 'nope', from => $from)->{status}, 401, "unknown email $i: 401");
	}
	my $r = signin('ghost6@example.test', 'nope', from => $from);
	json_error_ok($r, 429, undef, 'a 6th email from the same address: 429');
	retry_after_ok($r, 'address lock');
	$r = signin('bob@example.test', 'bob-password-1', from => $from);
	is($r->{status}, 429, 'even a correct password from that address: 429');
	is(signin('bob@example.test', 'bob-password-1', from => fresh_addr())->{status}, 200,
		'the same user from another address: 200');
};

# ------------------------------------------- session and sign-out --

subtest 'session: bearer, cookie, none, garbage' => sub {
	my $r = signin('bob@example.test', 'bob-password-1');
	is($r->{status}, 200, 'signed in') or return;
	my $tok = $r->{json}{token};
	my ($cookie) = session_cookie($r);

	my $s = req(GET => '/api/auth/session', bearer => $tok);
	is($s->{status}, 200, 'the sign-in token as Bearer: 200');
	ok(JSON::PP::is_bool($s->{json}{success}) && $s->{json}{success}, 'success: true');
	user_ok($s->{json}{user}, 'session', id => $BOB_ID, email => 'bob@example.test');
	is_deeply([sort keys %{ $s->{json} }], [qw(success user)], 'the body is {success, user}');

	$s = req(GET => '/api/auth/session', cookie => $cookie);
	is($s->{status}, 200, 'the cookie alone: 200');
	is($s->{json}{user}{id}, $BOB_ID, '... same user');

	json_error_ok(req(GET => '/api/auth/session'), 401, undef, 'no credentials: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => 'garbage'), 401, undef, 'garbage bearer: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => 'bq_' . ('A' x 43)), 401, undef,
		'a well-formed unknown token: 401');
	json_error_ok(req(GET => '/api/auth/session', cookie => 'garbage'), 401, undef, 'garbage cookie: 401');
	json_error_ok(req(GET => '/api/auth/session', headers => { Authorization => "Basic $tok" }), 401, undef,
		'the token under another scheme: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => "x$tok"), 401, undef, 'the token with a prefix: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => sha256_hex($tok)), 401, undef,
		'its stored hash as a token: 401');
};

subtest 'sign-out' => sub {
	my $r1 = signin('bob@example.test', 'bob-password-1');
	my $r2 = signin('bob@example.test', 'bob-password-1');
	is($r1->{status} . $r2->{status}, '200200', 'two sessions') or return;
	my ($c1) = session_cookie($r1);

	my $o = req(POST => '/api/auth/sign-out', cookie => $c1);
	json_error_ok($o, 403, undef, 'cookie sign-out without X-Requested-With: 403');
	is(req(GET => '/api/auth/session', cookie => $c1)->{status}, 200, '... the session still works');
	$o = req(POST => '/api/auth/sign-out', cookie => $c1, headers => { 'X-Requested-With' => 'evil' });
	is($o->{status}, 403, 'X-Requested-With with another value: 403');

	$o = req(POST => '/api/auth/sign-out', cookie => $c1, csrf => 1);
	is($o->{status}, 200, 'cookie sign-out with X-Requested-With: bloqr: 200') or diag($o->{content});
	ok($o->{json} && $o->{json}{success}, '... success: true');
	json_error_ok(req(GET => '/api/auth/session', cookie => $c1), 401, undef, 'the signed-out cookie: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => $r1->{json}{token}), 401, undef,
		'... also as Bearer');
	is(sql("SELECT revoked_at IS NOT NULL FROM sessions WHERE token_hash = '" . sha256_hex($r1->{json}{token}) . "'"),
		't', '... revoked in PostgreSQL');
	is(req(GET => '/api/auth/session', bearer => $r2->{json}{token})->{status}, 200,
		'the other session still works');

	$o = req(POST => '/api/auth/sign-out', bearer => $r2->{json}{token});
	is($o->{status}, 200, 'bearer sign-out needs no header: 200') or diag($o->{content});
	json_error_ok(req(GET => '/api/auth/session', bearer => $r2->{json}{token}), 401, undef,
		'the signed-out token: 401');
	json_error_ok(req(POST => '/api/auth/sign-out'), 401, undef, 'sign-out without credentials: 401');
	json_error_ok(req(POST => '/api/auth/sign-out', bearer => $r2->{json}{token}), 401, undef,
		'sign-out with a revoked token: 401');
};

# --------------------------------------------------------- admin role --

subtest 'admin routes need role admin' => sub {
	mkuser('root@example.test', role => 'admin', password => 'admin-password-1') or return;
	my $admin = mktoken('root@example.test');
	my $user = mktoken('bob@example.test');
	my $ro = mktoken('ro@example.test');
	json_error_ok(req(GET => '/api/admin/users'), 401, undef, 'no credentials: 401');
	json_error_ok(req(GET => '/api/admin/users', bearer => 'garbage'), 401, undef, 'garbage token: 401');
	json_error_ok(req(GET => '/api/admin/users', bearer => $user), 403, undef, 'role user: 403');
	json_error_ok(req(GET => '/api/admin/users', bearer => $ro), 403, undef, 'role readonly: 403');
	my $r = req(GET => '/api/admin/users', bearer => $admin);
	is($r->{status}, 200, 'role admin: 200') or diag($r->{content});
	# Cookie sessions of an admin work too; a GET needs no CSRF header.
	my $s = signin('root@example.test', 'admin-password-1');
	my ($c) = session_cookie($s);
	is(req(GET => '/api/admin/users', cookie => $c)->{status}, 200, 'an admin session cookie: 200');
	# A role change applies to existing credentials at once.
	sql("UPDATE users SET role = 'readonly' WHERE email = 'bob\@example.test'");
	sql("UPDATE users SET role = 'admin' WHERE email = 'ro\@example.test'");
	my $ok = poll(3, sub { req(GET => '/api/admin/users', bearer => $ro)->{status} == 200 });
	ok($ok, 'a promoted user\'s token becomes admin within 3 s');
	sql("UPDATE users SET role = 'user' WHERE email = 'ro\@example.test'");
	$ok = poll(3, sub { req(GET => '/api/admin/users', bearer => $ro)->{status} == 403 });
	ok($ok, 'a demoted user\'s token loses admin within 3 s');
};

done_testing();
