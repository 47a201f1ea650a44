#!/usr/bin/perl
# Two hosts on one PostgreSQL (CONTRACT §3, §5.2): host A and host B, each
# a pool (2 workers) with its own cache file behind its own nginx. What B
# has cached stops being served within 2 s of a change made through A or
# with psql: a storage PUT and DELETE, a new deployment, psql UPDATEs, a
# ban (B had just authorized the user's token, so its credential was
# cached), a role demotion, and clear-cache.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $PG = pg_start();
my $CONF_A = write_conf();
migrate($CONF_A);
my $CONF_B = write_conf();
my $CACHE_B = conf_value($CONF_B, 'cache', 'path');
api_setup(pg => $PG, conf => $CONF_A);

# An admin user: (id, token).
sub mkadmin {
	my ($email) = @_;
	my $id = mkuser($email, role => 'admin') // die "cannot create $email\n";
	my $t = mktoken($email) // die "no token for $email\n";
	return ($id, $t);
}
my (undef, $ADMIN) = mkadmin('admin@t51.test');
my ($BANNED_ID, $BANNED) = mkadmin('banned@t51.test');
my ($DEMOTED_ID, $DEMOTED) = mkadmin('demoted@t51.test');

my $HOST_A = host_start($CONF_A, workers => 2);
my $HOST_B = host_start($CONF_B, workers => 2);
my ($A, $B) = ($HOST_A->{url}, $HOST_B->{url});
api_setup(bearer => $ADMIN);    # req($A or $B, ...) sends the admin token unless told otherwise

# ------------------------------------------------------------ helpers --

sub data_of {
	my ($r) = @_;
	return $r->{status} == 200 ? $JSON->encode($r->{json}{entry}{data}) : "(status $r->{status})";
}

# Read $path on $base until it is a HIT (5 s at most).
sub cached_on {
	my ($base, $path, %o) = @_;
	return defined within(5, sub { x_cache(req($base, GET => $path, %o)) eq 'HIT' });
}

my $LIST = '/api/deployments?limit=50';

# Rows in B's credential cache for a user (read with the sqlite3 CLI).
sub b_creds {
	my ($user_id) = @_;
	my $r = run_cmd(['sqlite3', $CACHE_B, "SELECT count(*) FROM credentials WHERE user_id = '$user_id'"]);
	chomp(my $n = $r->{out} // '');
	return $r->{rc} ? "(sqlite3 failed: $r->{err})" : $n;
}

# ------------------------------------------------------------- tests --

ok(within(10, sub { listener_connected($A) && listener_connected($B) }), 'both listeners connected within 10 s')
    or BAIL_OUT('the caches never become coherent');

subtest 'a storage PUT through A is seen through B within 2 s' => sub {
	my $r = req($A, PUT => '/api/storage/shared', json => { data => { v => 1 } });
	is($r->{status}, 201, 'PUT shared v=1 on A') or diag show($r);
	ok(cached_on($B, '/api/storage/shared'), 'B has shared cached (HIT)');
	is(data_of(req($B, GET => '/api/storage/shared')), '{"v":1}', 'B reads v=1');
	$r = req($A, PUT => '/api/storage/shared', json => { data => { v => 2 } });
	is($r->{status}, 200, 'PUT shared v=2 on A') or diag show($r);
	my $took = within(2, sub { data_of(req($B, GET => '/api/storage/shared')) eq '{"v":2}' });
	ok(defined $took, 'B reads v=2 within 2 s') or diag show(req($B, GET => '/api/storage/shared'));
	note(sprintf 'took %.2f s', $took) if defined $took;

	# a burst: the last value wins on B
	req($A, PUT => '/api/storage/shared', json => { data => { v => $_ } }) for 3 .. 12;
	ok(defined within(2, sub { data_of(req($B, GET => '/api/storage/shared')) eq '{"v":12}' }),
		'after 10 quick PUTs on A, B reads the last within 2 s');
	ok(cached_on($B, '/api/storage/shared'), 'and caches it again');
	is(data_of(req($B, GET => '/api/storage/shared')), '{"v":12}', 'HIT with the last value');
};

subtest 'a deployment POSTed through A appears on B within 2 s' => sub {
	ok(cached_on($B, $LIST, bearer => undef), "B's list is cached (HIT)");
	my $r = req($A, POST => '/api/deployments', json => { version => '5.0.0', gitCommit => 'abc',
		gitBranch => 'main', deployedBy => 't51' });
	is($r->{status}, 201, 'POST on A') or diag show($r);
	my $id = $r->{json}{deployment}{id} // 'none';
	my $took = within(2, sub { (req($B, GET => $LIST, bearer => undef)->{json}{deployments}[0]{id} // '') eq $id });
	ok(defined $took, "B's list starts with it within 2 s") or diag show(req($B, GET => $LIST, bearer => undef));
	ok(defined within(2, sub { (req($B, GET => '/api/version', bearer => undef)->{json}{fullVersion} // '') eq '5.0.0+build.1' }),
		"B's /api/version shows it within 2 s");
	ok(cached_on($B, $LIST, bearer => undef), "B's list is a HIT again");
	is(req($B, GET => $LIST, bearer => undef)->{json}{deployments}[0]{id}, $id, 'and still starts with it');
};

subtest 'a psql UPDATE is seen on both hosts within 2 s' => sub {
	my $r = req($A, PUT => '/api/storage/psql', json => { data => { x => 1 } });
	is($r->{status}, 201, 'PUT psql on A') or diag show($r);
	ok(cached_on($A, '/api/storage/psql'), 'cached on A');
	ok(cached_on($B, '/api/storage/psql'), 'cached on B');
	sql(q{UPDATE storage_entries SET data = '{"x":2}' WHERE key = 'psql'});
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		ok(defined within(2, sub { data_of(req($base, GET => '/api/storage/psql')) eq '{"x":2}' }),
			"$h reads {\"x\":2} within 2 s") or diag show(req($base, GET => '/api/storage/psql'));
	}
	my ($id) = sql(q{SELECT id FROM deployment_history WHERE version = '5.0.0'});
	ok(cached_on($A, $LIST, bearer => undef) && cached_on($B, $LIST, bearer => undef), 'both lists cached');
	sql(qq{UPDATE deployment_history SET status = 'rollback' WHERE id = '$id'});
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		ok(defined within(2, sub {
			my ($d) = grep { $_->{id} eq $id } @{ req($base, GET => $LIST, bearer => undef)->{json}{deployments} || [] };
			$d && $d->{status} eq 'rollback';
		}), "$h lists it as rollback within 2 s");
	}
};

subtest 'a ban through A rejects the token on B within 2 s' => sub {
	for (1 .. 2) {
		my $r = req($B, GET => '/api/admin/cache/status', bearer => $BANNED);
		is($r->{status}, 200, "B authorizes the user's token ($_)") or diag show($r);
	}
	# Precondition, read from B's file by another process: poll briefly.
	ok(defined within(2, sub { b_creds($BANNED_ID) eq '1' }), "the credential is in B's cache")
	    or diag 'count: ' . b_creds($BANNED_ID);
	my $r = req($A, POST => "/api/admin/users/$BANNED_ID/ban", json => { reason => 't51' });
	is($r->{status}, 200, 'ban on A') or diag show($r);
	my $last;
	my $took = within(2, sub {
		$last = req($B, GET => '/api/admin/cache/status', bearer => $BANNED);
		$last->{status} == 401 || $last->{status} == 403;
	});
	ok(defined $took, 'B rejects the token (401/403) within 2 s') or diag show($last);
	note(sprintf 'took %.2f s', $took) if defined $took;
	ok($last->{status} == 401 || $last->{status} == 403, 'rejected') and
	    json_error_ok($last, $last->{status}, undef, 'the rejection is a JSON error');
	$r = req($B, GET => '/api/storage/shared', bearer => $BANNED);
	ok($r->{status} == 401 || $r->{status} == 403, 'also for a cached storage read') or diag show($r);
	$r = req($A, GET => '/api/admin/cache/status', bearer => $BANNED);
	ok($r->{status} == 401 || $r->{status} == 403, 'and on A') or diag show($r);
};

subtest 'a role demotion through A answers 403 on B within 2 s' => sub {
	for (1 .. 2) {
		my $r = req($B, GET => '/api/storage/shared', bearer => $DEMOTED);
		is($r->{status}, 200, "B lets the admin read storage ($_)") or diag show($r);
	}
	ok(defined within(2, sub { b_creds($DEMOTED_ID) eq '1' }), "the credential is in B's cache")
	    or diag 'count: ' . b_creds($DEMOTED_ID);
	my $r = req($A, PATCH => "/api/admin/users/$DEMOTED_ID", json => { role => 'user' });
	is($r->{status}, 200, 'PATCH role user on A') or diag show($r);
	my $last;
	my $took = within(2, sub {
		$last = req($B, GET => '/api/storage/shared', bearer => $DEMOTED);
		$last->{status} == 403;
	});
	ok(defined $took, 'B answers 403 within 2 s') or diag show($last);
	json_error_ok($last, 403, undef, 'a JSON error');
	$r = req($B, GET => '/api/auth/session', bearer => $DEMOTED);
	is($r->{status}, 200, 'the token itself still works on B (own session endpoint)') or diag show($r);
	is($r->{json}{user}{role}, 'user', 'and says role user');
};

subtest 'a storage DELETE through A is 404 on B within 2 s' => sub {
	my $r = req($A, PUT => '/api/storage/doomed', json => { data => 'x' });
	is($r->{status}, 201, 'PUT doomed on A') or diag show($r);
	ok(cached_on($B, '/api/storage/doomed'), 'cached on B');
	$r = req($A, DELETE => '/api/storage/doomed');
	is($r->{status}, 200, 'DELETE on A') or diag show($r);
	my $last;
	ok(defined within(2, sub { ($last = req($B, GET => '/api/storage/doomed'))->{status} == 404 }),
		'B answers 404 within 2 s') or diag show($last);
	json_error_ok($last, 404, undef, 'a JSON error');
};

subtest 'clear-cache through A' => sub {
	my $r = req($A, PUT => '/api/storage/cache%2Fone', json => { data => 1 });
	is($r->{status}, 201, 'PUT cache/one on A') or diag show($r);
	$r = req($A, PUT => '/api/filter-cache', json => { source => 'https://lists.example/one.txt',
		content => "||ads.example^\n", hash => 'h1' });
	ok($r->{status} == 201 || $r->{status} == 200, 'PUT a filter-cache entry on A') or diag show($r);
	my $fpath = '/api/filter-cache?source=https%3A%2F%2Flists.example%2Fone.txt';
	ok(cached_on($B, '/api/storage/cache%2Fone'), 'cache/one cached on B');
	ok(cached_on($B, $fpath), 'the filter entry cached on B');
	ok(cached_on($B, '/api/storage/shared'), 'shared cached on B');

	$r = req($A, POST => '/api/admin/storage/clear-cache');
	if ($r->{status} == 503 && ($r->{json}{error} // '') =~ /not available yet/i) {
		TODO: {
			todo_skip('POST /api/admin/storage/clear-cache answers 503 "Not available yet"', 6);
		}
		return;
	}
	is($r->{status}, 200, 'clear-cache: 200') or diag show($r);
	ok($r->{json}{success}, 'success');
	cmp_ok($r->{json}{deleted} // 0, '>=', 2, 'deleted counts the storage entry and the filter row');
	my $last;
	ok(defined within(2, sub { ($last = req($B, GET => '/api/storage/cache%2Fone'))->{status} == 404 }),
		'B: cache/one 404 within 2 s') or diag show($last);
	ok(defined within(2, sub { ($last = req($B, GET => $fpath))->{status} == 404 }),
		'B: the filter entry 404 within 2 s') or diag show($last);
	is(req($B, GET => '/api/storage/shared')->{status}, 200, 'B: other storage entries stay');
};

done_testing();
