#!/usr/bin/perl
# The admin audit log: every admin mutation of a user (patch, ban, unban,
# delete) writes one admin_audit_log row in its own transaction, visible
# through GET /api/admin/audit; refused mutations write none. One
# PostgreSQL, the pool (2 workers) behind nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;

my $S = stack();
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});

# ------------------------------------------------------------ helpers --

my @ENTRY_KEYS = sort qw(id actorId action target createdAt requestId details);

sub audit {
	my ($query, $tok) = @_;
	return req(GET => "/api/admin/audit$query", bearer => $tok);
}

sub actions { [map { $_->{action} } @{ $_[0]{json}{entries} || [] }] }

sub nrows { sql('SELECT count(*) FROM admin_audit_log') }

my $ADMIN_ID = mkuser('admin@example.test', role => 'admin', password => 'admin-pass-1')
    // BAIL_OUT('cannot create the admin');
my $ADMIN = mktoken('admin@example.test') // BAIL_OUT('cannot create a token');
my $T_ID = mkuser('target@example.test', password => 'target-pass-1') // BAIL_OUT('cannot create a user');
mkuser('user@example.test');
mkuser('ro@example.test', role => 'readonly');
my $USER = mktoken('user@example.test');
my $RO = mktoken('ro@example.test');

subtest 'access' => sub {
	json_error_ok(audit(''), 401, undef, 'no credentials: 401');
	json_error_ok(audit('', 'garbage'), 401, undef, 'garbage token: 401');
	json_error_ok(audit('', $USER), 403, undef, 'role user: 403');
	json_error_ok(audit('', $RO), 403, undef, 'role readonly: 403');
	my $r = audit('', $ADMIN);
	is($r->{status}, 200, 'admin: 200') or return diag($r->{content});
	is_deeply([sort keys %{ $r->{json} }], [qw(entries limit offset success total)],
		'{success, entries, total, limit, offset}');
	is_deeply($r->{json}{entries}, [], 'no entries yet');
	is($r->{json}{total}, 0, 'total 0');
	is($r->{json}{offset}, 0, 'offset 0');
	like($r->{json}{limit} // '', qr/^[1-9]\d*$/, 'a positive default limit');
};

my @RID;    # X-Request-Id of each successful mutation, in order
subtest 'every mutation writes one row, at once' => sub {
	my $path = "/api/admin/users/$T_ID";
	my @steps = (
		[PATCH => $path, json => { tier => 'pro' }],
		[POST => "$path/ban", json => { reason => 'spam' }],
		[POST => "$path/unban"],
		[DELETE => $path],
	);
	my $n = nrows();
	my $i = 0;
	for my $s (@steps) {
		my ($m, $p, @o) = @$s;
		$i++;
		my $r = req($m, $p, @o, bearer => $ADMIN, headers => { 'X-Request-Id' => "audit-step-$i-0123456789" });
		is($r->{status}, 200, "$m $p: 200") or diag($r->{content});
		my $rid = $r->{headers}{'x-request-id'};
		ok(defined $rid && length $rid, '... has an X-Request-Id');
		push @RID, $rid;
		# No waiting: the row is committed with the change.
		is(nrows(), ++$n, '... one audit row more, visible as soon as the answer is');
	}
};

subtest 'the log' => sub {
	my $r = audit('', $ADMIN);
	is($r->{status}, 200, 'status 200') or return diag($r->{content});
	is($r->{json}{total}, 4, 'total 4');
	is_deeply(actions($r), [qw(user.delete user.unban user.ban user.update)], 'newest first, named actions');
	my @rid = reverse @RID;
	my $k = 0;
	for my $e (@{ $r->{json}{entries} }) {
		my $name = "entry $e->{action}";
		is_deeply([sort keys %$e], \@ENTRY_KEYS, "$name: {id, actorId, action, target, createdAt, requestId, details}");
		ok(defined $e->{id} && !ref $e->{id}, "$name: an id");
		is($e->{actorId}, $ADMIN_ID, "$name: actorId is the admin");
		is($e->{target}, $T_ID, "$name: target is the user's id");
		like($e->{createdAt} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z$/, "$name: createdAt is ISO UTC");
		is($e->{requestId}, $rid[$k++], "$name: requestId is the mutating request's X-Request-Id");
		ok(!defined $e->{details} || ref $e->{details} eq 'HASH', "$name: details is an object or null");
	}
	my @t = map { $_->{createdAt} } @{ $r->{json}{entries} };
	is_deeply(\@t, [sort { $b cmp $a } @t], 'createdAt never increases down the list');
	my %ids;
	$ids{ $_->{id} }++ for @{ $r->{json}{entries} };
	is(scalar keys %ids, 4, 'distinct ids');
	unlike($r->{content}, qr/argon2|password|token_hash|bq_/i, 'no secrets in the log');

	$r = audit('?action=user.ban', $ADMIN);
	is_deeply(actions($r), ['user.ban'], 'action=user.ban: only bans');
	is($r->{json}{total}, 1, '... total 1');
	is($r->{json}{entries}[0]{requestId}, $RID[1], '... the ban');
	$r = audit('?action=user.update', $ADMIN);
	is_deeply(actions($r), ['user.update'], 'action=user.update');
	$r = audit('?action=user.nothing', $ADMIN);
	is($r->{status}, 200, 'an action nobody did: 200');
	is_deeply(actions($r), [], '... no entries');
	is($r->{json}{total}, 0, '... total 0');

	$r = audit('?limit=2', $ADMIN);
	is_deeply(actions($r), [qw(user.delete user.unban)], 'limit=2: the 2 newest');
	is($r->{json}{limit}, 2, '... limit echoed');
	is($r->{json}{total}, 4, '... total still 4');
	$r = audit('?limit=1&offset=1', $ADMIN);
	is_deeply(actions($r), ['user.unban'], 'limit=1&offset=1: the second newest');
	is($r->{json}{offset}, 1, '... offset echoed');
	$r = audit('?limit=2&offset=1&action=user.unban', $ADMIN);
	is_deeply(actions($r), [], 'filter and paging combine');
	is($r->{json}{total}, 1, '... total counts the filtered rows');
	json_error_ok(audit('?limit=abc', $ADMIN), 400, qr/limit/i, 'limit=abc: 400 naming limit');
	json_error_ok(audit('?offset=-1', $ADMIN), 400, qr/offset/i, 'offset=-1: 400 naming offset');
};

subtest 'refused mutations write nothing' => sub {
	my $n = nrows();
	my $me = "/api/admin/users/$ADMIN_ID";
	my $other = mkuser('other@example.test') or return;
	json_error_ok(req(POST => "$me/ban", bearer => $ADMIN), 409, undef, 'ban the last admin: 409');
	json_error_ok(req(PATCH => $me, json => { role => 'user' }, bearer => $ADMIN), 409, undef,
		'demote the last admin: 409');
	json_error_ok(req(DELETE => $me, bearer => $ADMIN), 409, undef, 'delete the last admin: 409');
	json_error_ok(req(PATCH => "/api/admin/users/$other", json => { tier => 'gold' }, bearer => $ADMIN), 400,
		undef, 'an invalid patch: 400');
	json_error_ok(req(POST => "/api/admin/users/$other/ban", json => { reason => 'x' x 501 }, bearer => $ADMIN),
		400, undef, 'an invalid ban: 400');
	json_error_ok(req(DELETE => '/api/admin/users/00000000-0000-4000-8000-000000000000', bearer => $ADMIN), 404,
		undef, 'delete an unknown id: 404');
	json_error_ok(req(POST => "/api/admin/users/$other/ban", bearer => $USER), 403, undef, 'ban by a user: 403');
	json_error_ok(req(POST => "/api/admin/users/$other/ban"), 401, undef, 'ban without credentials: 401');
	my $s = signin('admin@example.test', 'admin-pass-1');
	my ($cookie) = session_cookie($s);
	json_error_ok(req(POST => "/api/admin/users/$other/ban", cookie => $cookie), 403, undef,
		'ban by cookie without X-Requested-With: 403');
	is(sql("SELECT banned FROM users WHERE id = '$other'"), 'f', '... not banned');
	is(nrows(), $n, 'no audit row for any of them');
	is(audit('', $ADMIN)->{json}{total}, $n, '... the API agrees');

	my $r = req(POST => "/api/admin/users/$other/ban", cookie => $cookie, csrf => 1);
	is($r->{status}, 200, 'ban by cookie with X-Requested-With: 200');
	is(nrows(), $n + 1, '... one row');
	my $e = audit('?limit=1', $ADMIN)->{json}{entries}[0];
	is($e->{action}, 'user.ban', '... user.ban');
	is($e->{actorId}, $ADMIN_ID, '... by the admin');
	is($e->{target}, $other, '... of the user');
	is($e->{requestId}, $r->{headers}{'x-request-id'}, '... with its request id');
};

subtest 'the log outlives its actor' => sub {
	my $id2 = mkuser('admin2@example.test', role => 'admin') or return;
	my $a2 = mktoken('admin2@example.test');
	my $victim = mkuser('victim@example.test') or return;
	my $r = req(PATCH => "/api/admin/users/$victim", json => { role => 'readonly' }, bearer => $a2);
	is($r->{status}, 200, 'the second admin patches a user');
	is(req(DELETE => "/api/admin/users/$id2", bearer => $ADMIN)->{status}, 200, 'the second admin is deleted');
	$r = audit('?action=user.update', $ADMIN);
	my ($e) = grep { ($_->{actorId} // '') eq $id2 } @{ $r->{json}{entries} || [] };
	ok($e, 'the deleted admin\'s entry is still listed') or return diag($r->{content});
	is($e->{target}, $victim, '... with its target');
	$r = audit('?action=user.delete&limit=1', $ADMIN);
	is($r->{json}{entries}[0]{target}, $id2, 'the deletion of the admin is logged');
};

done_testing();
