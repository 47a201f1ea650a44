#!/usr/bin/perl
# Admin users endpoints (CONTRACT §4 "Admin users", §3 bans): listing with
# filters, search and paging; get, patch, delete, ban and unban; the last
# unbanned admin; and a concurrent mix of bans, deletes and sign-ins after
# which no credential of a banned or deleted user survives. One PostgreSQL,
# the pool (2 workers) behind nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $S = stack();
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);

# ------------------------------------------------------------ helpers --

# A credential that must no longer work: 401 or 403 on the session endpoint.
sub refused {
	my ($tok, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = req(GET => '/api/auth/session', bearer => $tok);
	ok($r->{status} == 401 || $r->{status} == 403, "$name: refused (401/403)")
	    or diag("status $r->{status}: $r->{content}");
}

# Run a command with its output discarded, at most $timeout seconds; its
# exit status (or -1 when it had to be killed). Safe in a forked child,
# unlike BloqrTest::run_cmd whose temporary file names would collide.
sub run_quiet {
	my ($timeout, @cmd) = @_;
	my $pid = fork // die "fork: $!\n";
	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', '/dev/null';
		open STDERR, '>', '/dev/null';
		{ exec { $cmd[0] } @cmd }
		POSIX::_exit(127);
	}
	my $deadline = time + $timeout;
	while (time < $deadline) {
		return $? >> 8 if waitpid($pid, WNOHANG) == $pid;
		sleep 0.02;
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
	return -1;
}

# Run $n children at once (released together), each calling
# $code->($i, $source_address) which returns status codes; returns, per
# child, an arrayref of its codes (['died'] or ['timeout'] when it did not
# finish within 60 s).
sub concurrently {
	my ($n, $code) = @_;
	my $dir = workdir();
	my $go = "$dir/go-" . time . "-$$";
	my @kids;
	for my $i (0 .. $n - 1) {
		my $pid = fork // die "fork: $!\n";
		if ($pid == 0) {
			my $ok = eval {
				poll(10, sub { -e $go }, 0.005);
				my @codes = $code->($i, '127.0.0.' . (200 + $i));
				open my $fh, '>', "$dir/codes-$$" or die;
				print $fh join(' ', @codes);
				close $fh or die;
				1;
			};
			POSIX::_exit($ok ? 0 : 1);
		}
		push @kids, $pid;
	}
	open my $fh, '>', $go or die "$go: $!\n";
	close $fh;
	my %done;
	my $deadline = time + 60;
	while (keys %done < @kids && time < $deadline) {
		for my $pid (@kids) {
			$done{$pid} = $? if !exists $done{$pid} && waitpid($pid, WNOHANG) == $pid;
		}
		sleep 0.05;
	}
	my @res;
	for my $pid (@kids) {
		if (!exists $done{$pid}) {
			kill 'KILL', $pid;
			waitpid($pid, 0);
			push @res, ['timeout'];
			next;
		}
		my $c;
		if ($done{$pid} == 0 && open(my $in, '<', "$dir/codes-$pid")) {
			$c = <$in>;
		}
		push @res, defined $c ? [split ' ', $c] : ['died'];
		unlink "$dir/codes-$pid";
	}
	unlink $go;
	return @res;
}

sub list {
	my ($query, $tok) = @_;
	return req(GET => "/api/admin/users$query", bearer => $tok);
}

sub emails { [map { $_->{email} } @{ $_[0]{json}{users} || [] }] }

sub message_ok {
	my ($r, $msg, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($r->{status}, 200, "$name: 200") or return diag($r->{content});
	is_deeply($r->{json}, { success => JSON::PP::true, message => $msg }, "$name: {success, message}")
	    or diag($r->{content});
}

# ------------------------------------------------------------- users --

# Created one after another: newest first is the reverse order.
my @SPEC = (
	['admin1@example.test', name => 'Admin One', role => 'admin', password => 'admin-pass-1'],
	['pro1@example.test', name => 'Pro One', tier => 'pro', password => 'pro-pass-1'],
	['pro2@example.test', name => 'Pro Two', tier => 'pro', role => 'readonly'],
	['alice.smith@example.test', name => 'Alice SMITH'],
	['under_score@example.test', name => 'Plain'],
	['pct@example.test', name => '100% Real'],
	['quote@example.test', name => "O'Neil"],
	['abc@example.test', name => 'xaqc'],
	['back@example.test', name => 'Back\\slash'],
	['Caps@EXAMPLE.test', name => 'Mixed Case'],
);
my (%ID, @ORDER);
for my $s (@SPEC) {
	my ($email, %o) = @$s;
	my $id = mkuser($email, %o) // BAIL_OUT("cannot create $email");
	$ID{$email} = $id;
	unshift @ORDER, $email;
}
my $ADMIN = mktoken('admin1@example.test') // BAIL_OUT('cannot create a token');
my $ADMIN_ID = $ID{'admin1@example.test'};

subtest 'list: shape, defaults, paging, order' => sub {
	my $r = list('', $ADMIN);
	is($r->{status}, 200, 'status 200') or return diag($r->{content});
	my $j = $r->{json};
	is_deeply([sort keys %$j], [qw(limit offset success total users)], '{success, users, total, limit, offset}');
	ok(JSON::PP::is_bool($j->{success}) && $j->{success}, 'success: true');
	is($j->{limit}, 50, 'default limit 50');
	is($j->{offset}, 0, 'default offset 0');
	is($j->{total}, scalar @ORDER, 'total counts every user');
	is_deeply(emails($r), \@ORDER, 'newest first');
	user_ok($_, "list $_->{email}") for @{ $j->{users} };
	unlike($r->{content}, qr/argon2|password|token_hash/i, 'no password, hash or token in the list');

	$r = list('?limit=3', $ADMIN);
	is_deeply(emails($r), [@ORDER[0 .. 2]], 'limit=3: the 3 newest');
	is($r->{json}{limit}, 3, '... limit echoed');
	is($r->{json}{total}, scalar @ORDER, '... total is still all of them');
	$r = list('?limit=3&offset=3', $ADMIN);
	is_deeply(emails($r), [@ORDER[3 .. 5]], 'limit=3&offset=3: the next 3');
	is($r->{json}{offset}, 3, '... offset echoed');
	$r = list('?offset=100', $ADMIN);
	is($r->{status}, 200, 'an offset past the end: 200');
	is_deeply(emails($r), [], '... no users');
	is($r->{json}{total}, scalar @ORDER, '... total still counts them');
	is(list('?limit=1', $ADMIN)->{status}, 200, 'limit=1: 200');
	is(list('?limit=100', $ADMIN)->{status}, 200, 'limit=100: 200');

	for my $q ('limit=0', 'limit=101', 'limit=abc', 'limit=-1', 'limit=1.5', 'limit=5x') {
		json_error_ok(list("?$q", $ADMIN), 400, qr/limit/i, "$q: 400 naming limit");
	}
	for my $q ('offset=-1', 'offset=abc') {
		json_error_ok(list("?$q", $ADMIN), 400, qr/offset/i, "$q: 400 naming offset");
	}
};

subtest 'list: filters and search' => sub {
	my %cases = (
		'tier=pro'                      => ['pro2@example.test', 'pro1@example.test'],
		'role=readonly'                 => ['pro2@example.test'],
		'role=admin'                    => ['admin1@example.test'],
		'tier=pro&role=readonly'        => ['pro2@example.test'],
		'tier=anonymous'                => [],
		'search=smith'                  => ['alice.smith@example.test'],
		'search=ALICE.SMITH%40'         => ['alice.smith@example.test'],
		'search=caps%40example'         => ['Caps@EXAMPLE.test'],
		'search=mixed%20CASE'           => ['Caps@EXAMPLE.test'],
		'search=EXAMPLE.TEST'           => [@ORDER],
		'search=pro&tier=pro'           => ['pro2@example.test', 'pro1@example.test'],
		'search=' . pct_encode('%')     => ['pct@example.test'],
		'search=' . pct_encode('0%')    => ['pct@example.test'],
		'search=' . pct_encode('_')     => ['under_score@example.test'],
		'search=' . pct_encode('a_c')   => [],
		'search=' . pct_encode("'")     => ['quote@example.test'],
		'search=' . pct_encode("O'N")   => ['quote@example.test'],
		'search=' . pct_encode("'; DROP TABLE users; --") => [],
		'search=' . pct_encode('\\')    => ['back@example.test'],
		'search=' . pct_encode('\\s')   => ['back@example.test'],
		'search=' . pct_encode('%_%')   => [],
		'search=nobody-matches-this'    => [],
	);
	for my $q (sort keys %cases) {
		my $r = list("?$q", $ADMIN);
		is($r->{status}, 200, "$q: 200") or diag($r->{content});
		is_deeply(emails($r), $cases{$q}, "$q: matching users, newest first");
		is($r->{json}{total}, scalar @{ $cases{$q} }, "$q: total counts the matches");
	}
	is(sql('SELECT count(*) FROM users'), scalar @ORDER, 'the users table is intact');
	my $r = list('?search=example&limit=2&offset=1', $ADMIN);
	is_deeply(emails($r), [@ORDER[1, 2]], 'search with paging');
	is($r->{json}{total}, scalar @ORDER, '... total counts all matches');
};

subtest 'get by id' => sub {
	my $id = $ID{'pro2@example.test'};
	my $r = req(GET => "/api/admin/users/$id", bearer => $ADMIN);
	is($r->{status}, 200, 'status 200') or return diag($r->{content});
	is_deeply([sort keys %{ $r->{json} }], [qw(success user)], '{success, user}');
	user_ok($r->{json}{user}, 'get', id => $id, email => 'pro2@example.test', name => 'Pro Two',
		tier => 'pro', role => 'readonly', banned => 'false', banReason => undef, banExpires => undef);
	json_error_ok(req(GET => '/api/admin/users/00000000-0000-4000-8000-000000000000', bearer => $ADMIN),
		404, undef, 'an unknown uuid: 404');
	json_error_ok(req(GET => '/api/admin/users/not-a-uuid', bearer => $ADMIN), 404, undef, 'a malformed id: 404');
	json_error_ok(req(GET => "/api/admin/users/${id}x", bearer => $ADMIN), 404, undef, 'a uuid with a suffix: 404');
	json_error_ok(req(GET => "/api/admin/users/$id"), 401, undef, 'no credentials: 401');
};

subtest 'patch' => sub {
	my $id = $ID{'pro1@example.test'};
	my $path = "/api/admin/users/$id";
	my $before = req(GET => $path, bearer => $ADMIN)->{json}{user};
	for my $c (['{}', qr/tier|role/i], ['{"foo":1}', qr/tier|role/i], ['', undef], ['{"tier":', undef],
		['[]', undef], ['{"tier":"gold"}', qr/tier/i], ['{"role":"god"}', qr/role/i],
		['{"tier":5}', qr/tier/i], ['{"role":null}', qr/role/i], ['{"tier":"pro","role":"bad"}', qr/role/i],
		['{"tier":"Pro"}', qr/tier/i]) {
		json_error_ok(req(PATCH => $path, body => $c->[0], bearer => $ADMIN), 400, $c->[1],
			"PATCH $c->[0]: 400" . ($c->[1] ? ' naming the field' : ''));
	}
	my $same = req(GET => $path, bearer => $ADMIN)->{json}{user};
	is_deeply($same, $before, 'the refused patches changed nothing');

	my $r = req(PATCH => $path, json => { tier => 'free' }, bearer => $ADMIN);
	is($r->{status}, 200, '{"tier":"free"}: 200') or diag($r->{content});
	is_deeply([sort keys %{ $r->{json} || {} }], [qw(success user)], '{success, user}');
	user_ok($r->{json}{user}, 'patched', id => $id, tier => 'free', role => 'user', email => 'pro1@example.test');
	ok(($r->{json}{user}{updatedAt} // '') ge $before->{updatedAt}, 'updatedAt did not go back');
	$r = req(PATCH => $path, json => { role => 'readonly', tier => 'pro' }, bearer => $ADMIN);
	user_ok($r->{json}{user}, 'both fields', tier => 'pro', role => 'readonly');
	is(sql("SELECT role || '|' || tier FROM users WHERE id = '$id'"), 'readonly|pro', '... in PostgreSQL');
	$r = req(PATCH => $path, json => { role => 'user' }, bearer => $ADMIN);
	user_ok($r->{json}{user}, 'role only', tier => 'pro', role => 'user');

	json_error_ok(req(PATCH => '/api/admin/users/00000000-0000-4000-8000-000000000000',
		json => { tier => 'pro' }, bearer => $ADMIN), 404, undef, 'PATCH an unknown id: 404');
	json_error_ok(req(PATCH => '/api/admin/users/nope', json => { tier => 'pro' }, bearer => $ADMIN), 404, undef,
		'PATCH a malformed id: 404');

	# CSRF: an admin's cookie needs X-Requested-With on a mutation.
	my $s = signin('admin1@example.test', 'admin-pass-1');
	my ($cookie) = session_cookie($s);
	ok($cookie, 'admin signed in with a cookie') or return;
	json_error_ok(req(PATCH => $path, json => { tier => 'free' }, cookie => $cookie), 403, undef,
		'PATCH by cookie without X-Requested-With: 403');
	is(sql("SELECT tier FROM users WHERE id = '$id'"), 'pro', '... nothing changed');
	$r = req(PATCH => $path, json => { tier => 'free' }, cookie => $cookie, csrf => 1);
	is($r->{status}, 200, 'PATCH by cookie with X-Requested-With: bloqr: 200') or diag($r->{content});
	is(sql("SELECT tier FROM users WHERE id = '$id'"), 'free', '... changed');

	my $user = mktoken('pro2@example.test');
	json_error_ok(req(PATCH => $path, json => { tier => 'pro' }, bearer => $user), 403, undef,
		'PATCH by a readonly user: 403');
};

subtest 'delete' => sub {
	my $id = mkuser('victim@example.test', password => 'victim-pass-1') or return;
	my $tok = mktoken('victim@example.test');
	my $s = signin('victim@example.test', 'victim-pass-1');
	is($s->{status}, 200, 'the victim has a session') or return;
	my $count = sub {
		join ',', map { sql("SELECT count(*) FROM $_ WHERE user_id = '$id'") } qw(sessions api_tokens accounts);
	};
	is($count->(), '1,1,1', 'a session, a token and an account row');
	my $r = req(DELETE => "/api/admin/users/$id", cookie => (session_cookie(signin('admin1@example.test', 'admin-pass-1')))[0]);
	json_error_ok($r, 403, undef, 'DELETE by cookie without X-Requested-With: 403');
	is(sql("SELECT count(*) FROM users WHERE id = '$id'"), 1, '... the user is still there');

	message_ok(req(DELETE => "/api/admin/users/$id", bearer => $ADMIN), 'User deleted', 'DELETE');
	is(sql("SELECT count(*) FROM users WHERE id = '$id'"), 0, 'the user row is gone');
	is($count->(), '0,0,0', 'its sessions, tokens and accounts are gone');
	json_error_ok(req(GET => '/api/auth/session', bearer => $tok), 401, undef, 'its CLI token: 401');
	json_error_ok(req(GET => '/api/auth/session', bearer => $s->{json}{token}), 401, undef, 'its session: 401');
	json_error_ok(req(GET => "/api/admin/users/$id", bearer => $ADMIN), 404, undef, 'GET after DELETE: 404');
	json_error_ok(req(DELETE => "/api/admin/users/$id", bearer => $ADMIN), 404, undef, 'DELETE again: 404');
	json_error_ok(req(DELETE => '/api/admin/users/nope', bearer => $ADMIN), 404, undef, 'DELETE a malformed id: 404');
	json_error_ok(signin('victim@example.test', 'victim-pass-1', from => fresh_addr()), 401, undef,
		'the deleted user cannot sign in');
	is(admin($CONF, ['token', 'create', '--email', 'victim@example.test'])->{rc}, 1,
		'token create for the deleted user: exit 1');
};

subtest 'ban and unban' => sub {
	my $id = mkuser('banme@example.test', password => 'banme-pass-1') or return;
	my $path = "/api/admin/users/$id";
	my $tok = mktoken('banme@example.test');
	my $s = signin('banme@example.test', 'banme-pass-1');
	is($s->{status}, 200, 'signed in') or return;
	my $sess = $s->{json}{token};

	for my $c ([{ reason => 'x' x 501 }, qr/reason/i, 'a reason of 501 characters'],
		[{ reason => 5 }, qr/reason/i, 'a numeric reason'],
		[{ expires => 'tomorrow' }, qr/expires/i, 'expires "tomorrow"'],
		[{ expires => '2030-13-45T00:00:00Z' }, qr/expires/i, 'an impossible date'],
		[{ expires => 42 }, qr/expires/i, 'a numeric expires']) {
		json_error_ok(req(POST => "$path/ban", json => $c->[0], bearer => $ADMIN), 400, $c->[1], "ban with $c->[2]: 400");
	}
	json_error_ok(req(POST => "$path/ban", body => '{"reason":', bearer => $ADMIN), 400, undef,
		'ban with malformed JSON: 400');
	is(sql("SELECT banned FROM users WHERE id = '$id'"), 'f', 'the refused bans changed nothing');
	is(req(GET => '/api/auth/session', bearer => $tok)->{status}, 200, '... the token still works');

	my $reason = "\x{e9}" x 500;    # 500 characters, 1000 bytes
	message_ok(req(POST => "$path/ban", json => { reason => $reason }, bearer => $ADMIN), 'User banned',
		'ban with a reason of 500 characters');
	refused($tok, 'the CLI token on its very next request');
	refused($sess, 'the session token on its very next request');
	is(sql("SELECT count(*) FROM sessions WHERE user_id = '$id' AND revoked_at IS NULL")
		+ sql("SELECT count(*) FROM api_tokens WHERE user_id = '$id' AND revoked_at IS NULL"), 0,
		'every session and token of the user is revoked');
	my $u = req(GET => $path, bearer => $ADMIN)->{json}{user};
	user_ok($u, 'banned user', banned => 'true', banExpires => undef);
	is($u->{banReason}, $reason, 'banReason as given');
	my $r = signin('banme@example.test', 'banme-pass-1', from => fresh_addr());
	ok($r->{status} == 401 || $r->{status} == 403, 'a banned user cannot sign in (401/403)')
	    or diag("status $r->{status}");
	ok(!defined(($r->{json} || {})->{token}) && !session_cookie($r), '... no token, no cookie');
	my $a = admin($CONF, ['token', 'create', '--email', 'banme@example.test']);
	is($a->{rc}, 1, 'token create for a banned user: exit 1');
	is($a->{out}, '', '... no token printed');
	is(sql("SELECT count(*) FROM api_tokens WHERE user_id = '$id' AND revoked_at IS NULL"), 0, '... none stored');

	message_ok(req(POST => "$path/unban", bearer => $ADMIN), 'User unbanned', 'unban');
	user_ok(req(GET => $path, bearer => $ADMIN)->{json}{user}, 'unbanned user', banned => 'false');
	refused($tok, 'the old CLI token after unban');
	refused($sess, 'the old session after unban');
	$r = signin('banme@example.test', 'banme-pass-1', from => fresh_addr());
	is($r->{status}, 200, 'a new sign-in works after unban');
	is(req(GET => '/api/auth/session', bearer => $r->{json}{token})->{status}, 200, '... and its token works');
	my $tok2 = mktoken('banme@example.test');
	is(req(GET => '/api/auth/session', bearer => $tok2)->{status}, 200, 'a new CLI token works');

	# No body at all, and a temporary ban.
	message_ok(req(POST => "$path/ban", bearer => $ADMIN), 'User banned', 'ban without a body');
	refused($tok2, 'the new token after the second ban');
	message_ok(req(POST => "$path/unban", bearer => $ADMIN), 'User unbanned', 'unban again');
	message_ok(req(POST => "$path/ban", json => { reason => 'temporary', expires => '2099-01-02T03:04:05Z' },
		bearer => $ADMIN), 'User banned', 'ban with expires');
	$u = req(GET => $path, bearer => $ADMIN)->{json}{user};
	like($u->{banExpires} // '', qr/^2099-01-02T03:04:05(?:\.000)?Z$/, 'banExpires as given');
	is($u->{banReason}, 'temporary', 'banReason as given');
	message_ok(req(POST => "$path/ban", json => { expires => '2099-01-02T05:04:05+02:00' }, bearer => $ADMIN),
		'User banned', 'ban with an offset time');
	like(req(GET => $path, bearer => $ADMIN)->{json}{user}{banExpires} // '', qr/^2099-01-02T03:04:05(?:\.000)?Z$/,
		'... shown in UTC');

	# An expired ban stops applying.
	sql("UPDATE users SET ban_expires = now() - interval '1 minute' WHERE id = '$id'");
	my $in;
	poll(4, sub { $in = signin('banme@example.test', 'banme-pass-1', from => fresh_addr()); $in->{status} == 200 }, 1);
	is($in->{status}, 200, 'sign-in works once the ban has expired') or diag($in->{content});
	is(req(GET => '/api/auth/session', bearer => $in->{json}{token})->{status}, 200, '... and the session works');
	is(admin($CONF, ['token', 'create', '--email', 'banme@example.test'])->{rc}, 0,
		'token create works once the ban has expired');

	json_error_ok(req(POST => '/api/admin/users/00000000-0000-4000-8000-000000000000/ban', bearer => $ADMIN),
		404, undef, 'ban an unknown id: 404');
	json_error_ok(req(POST => '/api/admin/users/nope/unban', bearer => $ADMIN), 404, undef,
		'unban a malformed id: 404');
	json_error_ok(req(POST => "$path/ban", bearer => mktoken('pro2@example.test')), 403, undef,
		'ban by a non-admin: 403');
};

subtest 'the last unbanned admin' => sub {
	my $p1 = "/api/admin/users/$ADMIN_ID";
	is(sql("SELECT count(*) FROM users WHERE role = 'admin'"), 1, 'one admin') or return;
	json_error_ok(req(POST => "$p1/ban", bearer => $ADMIN), 409, undef, 'banning the last admin: 409');
	json_error_ok(req(PATCH => $p1, json => { role => 'user' }, bearer => $ADMIN), 409, undef,
		'demoting the last admin to user: 409');
	json_error_ok(req(PATCH => $p1, json => { role => 'readonly' }, bearer => $ADMIN), 409, undef,
		'demoting the last admin to readonly: 409');
	json_error_ok(req(PATCH => $p1, json => { role => 'user', tier => 'pro' }, bearer => $ADMIN), 409, undef,
		'demoting with a tier change: 409');
	json_error_ok(req(DELETE => $p1, bearer => $ADMIN), 409, undef, 'deleting the last admin: 409');
	is(sql("SELECT role || '|' || banned || '|' || tier FROM users WHERE id = '$ADMIN_ID'"), 'admin|false|free',
		'the admin is unchanged');
	is(req(GET => '/api/admin/users', bearer => $ADMIN)->{status}, 200, '... and still works');
	is(req(PATCH => $p1, json => { tier => 'admin' }, bearer => $ADMIN)->{status}, 200,
		'a tier change of the last admin is fine');
	is(req(PATCH => $p1, json => { role => 'admin' }, bearer => $ADMIN)->{status}, 200,
		'setting role admin again is fine');

	my $id2 = mkuser('admin2@example.test', role => 'admin', password => 'admin-pass-2') or return;
	my $p2 = "/api/admin/users/$id2";
	my $a2 = mktoken('admin2@example.test');
	is(req(PATCH => $p2, json => { role => 'user' }, bearer => $ADMIN)->{status}, 200,
		'with two admins one may be demoted');
	json_error_ok(req(PATCH => $p1, json => { role => 'user' }, bearer => $ADMIN), 409, undef,
		'... after which the other is the last again: 409');
	is(req(PATCH => $p2, json => { role => 'admin' }, bearer => $ADMIN)->{status}, 200, 'promoted again');
	is(req(POST => "$p2/ban", bearer => $ADMIN)->{status}, 200, 'with two admins one may be banned');
	json_error_ok(req(POST => "$p1/ban", bearer => $ADMIN), 409, undef,
		'a banned admin does not count: banning the other: 409');
	json_error_ok(req(DELETE => $p1, bearer => $ADMIN), 409, undef, '... deleting the other: 409');
	is(req(POST => "$p2/unban", bearer => $ADMIN)->{status}, 200, 'unbanned');
	$a2 = mktoken('admin2@example.test');
	my $r = req(PATCH => $p1, json => { role => 'user' }, bearer => $a2);
	is($r->{status}, 200, 'the second admin demotes the first') or diag($r->{content});
	json_error_ok(req(GET => '/api/admin/users', bearer => $ADMIN), 403, undef, 'the demoted admin gets 403');
	is(req(PATCH => $p1, json => { role => 'admin' }, bearer => $a2)->{status}, 200, 'promoted back');
	is(req(GET => '/api/admin/users', bearer => $ADMIN)->{status}, 200, '... and has admin again');
	message_ok(req(DELETE => $p2, bearer => $ADMIN), 'User deleted', 'with two admins one may be deleted');
	json_error_ok(req(DELETE => $p1, bearer => $ADMIN), 409, undef, 'the remaining one cannot: 409');
	json_error_ok(req(DELETE => $p1, bearer => $a2), 401, undef, "the deleted admin's token: 401");
};

subtest 'concurrent bans, deletes and sign-ins' => sub {
	my (%tok, %id);
	for my $n (1 .. 6) {
		my $e = "c$n\@example.test";
		$id{$n} = mkuser($e, password => "c$n-pass") or return;
		$tok{$n} = mktoken($e);
	}
	# Plans: what each child does, in order.
	# Plans: what each child does, in order. The bans and deletes wait a
	# little so that they land while sign-ins and token creations are in
	# flight.
	my @plans = (
		[[sleep => 0.3], [ban => 1], [signin => 2], [signin => 1]],
		[[signin => 1], [signin => 1], [signin => 1], [signin => 1], [signin => 1]],
		[[signin => 1], [token => 1], [signin => 1], [token => 1], [signin => 1]],
		[[sleep => 0.2], [delete => 2], [signin => 3]],
		[[signin => 2], [signin => 2], [token => 2], [signin => 2]],
		[[sleep => 0.4], [ban => 3], [delete => 3]],
		[[signin => 3], [token => 3], [signin => 3], [signin => 3]],
		[[sleep => 0.3], [ban => 4], [signin => 4], [ban => 5]],
		[[signin => 4], [signin => 5], [signin => 4], [signin => 5], [signin => 4]],
		[[signin => 5], [token => 4], [signin => 5], [signin => 4], [token => 5]],
	);
	my @st = concurrently(scalar @plans, sub {
		my ($i, $from) = @_;
		my @codes;
		for my $step (@{ $plans[$i] }) {
			my ($what, $n) = @$step;
			if ($what eq 'sleep') {
				sleep $n;
			} elsif ($what eq 'ban') {
				push @codes, req(POST => "/api/admin/users/$id{$n}/ban", bearer => $ADMIN, from => $from)->{status};
			} elsif ($what eq 'delete') {
				push @codes, req(DELETE => "/api/admin/users/$id{$n}", bearer => $ADMIN, from => $from)->{status};
			} elsif ($what eq 'signin') {
				push @codes, signin("c$n\@example.test", "c$n-pass", from => $from)->{status};
			} else {
				my $rc = run_quiet(20, program('src/bloqr-admin'), '-c', $CONF, 'token', 'create',
					'--email', "c$n\@example.test");
				push @codes, $rc == 0 || $rc == 1 ? 200 : 500;
			}
		}
		return @codes;
	});
	# 200, or refusals (banned, deleted, not found, locked); never 5xx.
	my @bad = grep { !/^(?:200|401|403|404|409|429)$/ } map { @$_ } @st;
	is("@bad", '', 'every child finished in time with no 5xx') or diag(explain(\@st));

	for my $t (qw(sessions api_tokens accounts)) {
		is(sql("SELECT count(*) FROM $t x WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.user_id)"), 0,
			"no $t row references a missing user");
	}
	# An unexpired ban (the ban test above left one that has expired).
	my $BANNED = 'u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now())';
	for my $t (qw(sessions api_tokens)) {
		is(sql("SELECT count(*) FROM $t x JOIN users u ON u.id = x.user_id WHERE $BANNED AND x.revoked_at IS NULL"),
			0, "every $t row of a banned user is revoked")
		    or diag("unrevoked $t of banned users (email | created_at | user updated_at):\n"
			. sql("SELECT u.email || ' | ' || x.created_at || ' | ' || u.updated_at FROM $t x"
			    . " JOIN users u ON u.id = x.user_id WHERE $BANNED AND x.revoked_at IS NULL"));
	}
	is(sql("SELECT count(*) FROM users WHERE id IN ('$id{2}', '$id{3}')"), 0, 'the deleted users are gone');
	is(sql("SELECT string_agg(email, ',' ORDER BY email) FROM users WHERE banned AND email LIKE 'c%'"),
		'c1@example.test,c4@example.test,c5@example.test', 'the banned users are banned');
	refused($tok{$_}, "c$_\'s token") for 1, 2, 3, 4, 5;
	is(req(GET => '/api/auth/session', bearer => $tok{6})->{status}, 200, 'the bystander\'s token still works');
};

subtest 'concurrent attempts to remove each other: one admin is left' => sub {
	my %a;
	for my $n (qw(x y)) {
		$a{$n}{id} = mkuser("admin-$n\@example.test", role => 'admin') or return;
		$a{$n}{tok} = mktoken("admin-$n\@example.test");
	}
	is(req(PATCH => "/api/admin/users/$ADMIN_ID", json => { role => 'user' }, bearer => $a{x}{tok})->{status}, 200,
		'admin1 demoted: x and y are the only admins') or return;
	my @ops = ([POST => 'ban'], [PATCH => 'demote'], [DELETE => 'delete'], [POST => 'ban']);
	my @st = concurrently(2 * @ops, sub {
		my ($i, $from) = @_;
		my ($me, $other) = $i % 2 ? ('x', 'y') : ('y', 'x');
		my ($m, $what) = @{ $ops[int($i / 2)] };
		my $p = "/api/admin/users/$a{$other}{id}";
		my $r = $what eq 'ban' ? req(POST => "$p/ban", bearer => $a{$me}{tok}, from => $from)
		    : $what eq 'demote' ? req(PATCH => $p, json => { role => 'user' }, bearer => $a{$me}{tok}, from => $from)
		    : req(DELETE => $p, bearer => $a{$me}{tok}, from => $from);
		return $r->{status};
	});
	my @bad = grep { !/^(?:200|401|403|404|409)$/ } map { @$_ } @st;
	is("@bad", '', 'every request answered 200/401/403/404/409') or diag(explain(\@st));
	ok((grep { $_->[0] eq '200' } @st), 'some removal succeeded');
	is(sql("SELECT count(*) FROM users u WHERE u.role = 'admin'"
		. " AND NOT (u.banned AND (u.ban_expires IS NULL OR u.ban_expires > now()))"), 1,
		'exactly one unbanned admin is left');
};

done_testing();
