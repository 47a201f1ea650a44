#!/usr/bin/perl
# A PostgreSQL outage (CONTRACT §5.4, §5.5, §4 health): with the cache
# warm, PostgreSQL is stopped. Cached public reads answer 200 STALE; a
# cached admin storage read with a credential confirmed just before answers
# 200 STALE (auth_grace, default 60 s); an uncached key, writes, sign-in,
# the admin user endpoints answer 503 with Retry-After; health answers 503
# with the database down. With auth_grace = 0 (a second host) the admin
# storage read answers 503. When PostgreSQL is back, the pool recovers
# without a restart (same worker pids), nothing of the refused writes is in
# PostgreSQL, and reads are MISS/HIT again. One PostgreSQL; host A (default
# auth_grace) and host B (auth_grace = 0), each a pool of 2 workers behind
# its own nginx with its own cache file.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $PG = pg_start();
my $CONF_A = write_conf();
migrate($CONF_A);
my $CONF_B = write_conf('cache.auth_grace' => 0);
api_setup(pg => $PG, conf => $CONF_A);

# Users: an admin with a password (for sign-in) and a token; a second admin
# whose token host A never sees before the outage.
my $PASSWORD = 'correct horse battery staple';
mkuser('admin@t52.test', role => 'admin', password => $PASSWORD) // die "cannot create admin\@t52.test\n";
my $ADMIN = mktoken('admin@t52.test') // die "no token for admin\@t52.test\n";
mkuser('other@t52.test', role => 'admin') // die "cannot create other\@t52.test\n";
my $OTHER = mktoken('other@t52.test') // die "no token for other\@t52.test\n";

my $HOST_A = host_start($CONF_A, workers => 2);
my $HOST_B = host_start($CONF_B, workers => 2);
my ($A, $B) = ($HOST_A->{url}, $HOST_B->{url});
my ($POOL_A, $POOL_B) = ($HOST_A->{pool}, $HOST_B->{pool});
api_setup(bearer => $ADMIN);    # req($A or $B, ...) sends the admin token unless told otherwise

# ------------------------------------------------------------ helpers --

# A 503 for a database outage: the JSON error shape and a Retry-After.
sub unavailable_ok {
	my ($r, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	json_error_ok($r, 503, undef, "$name: 503");
	like($r->{headers}{'retry-after'} // '', qr/^\d+$/, "$name: Retry-After") or diag show($r);
}

my $LIST = '/api/deployments?limit=50';

# ------------------------------------------------------------- tests --

my (%before, @pids_a, @pids_b);

subtest 'warm both hosts' => sub {
	ok(within(10, sub { listener_connected($A) }), 'host A: listener connected');
	ok(within(10, sub { listener_connected($B) }), 'host B: listener connected');
	my $r = req($A, PUT => '/api/storage/warm%2Fa', json => { data => { warm => 1 } });
	is($r->{status}, 201, 'PUT warm/a') or diag show($r);
	$r = req($A, POST => '/api/deployments', json => { version => '1.0.0', gitCommit => 'c1',
		gitBranch => 'main', deployedBy => 't52' });
	is($r->{status}, 201, 'POST deployment 1.0.0') or diag show($r);
	$r = req($A, POST => '/api/compilations', json => { configName => 'warm', sourceCount => 1,
		ruleCount => 2, duration => 3 });
	is($r->{status}, 201, 'POST compilation') or diag show($r);
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		for my $c ([$LIST, undef], ['/api/version', undef], ['/api/storage/warm%2Fa', $ADMIN],
		    ['/api/compilations', $ADMIN]) {
			my ($path, $bearer) = @$c;
			my $got = within(5, sub { x_cache(req($base, GET => $path, bearer => $bearer)) eq 'HIT' });
			ok(defined $got, "host $h: GET $path is a HIT") or diag show(req($base, GET => $path, bearer => $bearer));
			$before{"$h $path"} = req($base, GET => $path, bearer => $bearer);
		}
	}
	@pids_a = $POOL_A->worker_pids;
	@pids_b = $POOL_B->worker_pids;
	is(scalar @pids_a, 2, 'host A has 2 workers');
};

ok($PG->stop, 'PostgreSQL stopped');
my $T_STOP = time;

subtest 'host A during the outage: cached reads are STALE' => sub {
	my $took = within(5, sub { x_cache(req($A, GET => $LIST, bearer => undef)) eq 'STALE' });
	ok(defined $took, 'the deployment list turns STALE within 5 s') or diag show(req($A, GET => $LIST, bearer => undef));
	for my $c ([$LIST, undef], ['/api/version', undef], ['/api/storage/warm%2Fa', $ADMIN],
	    ['/api/compilations', $ADMIN]) {
		my ($path, $bearer) = @$c;
		my $r = req($A, GET => $path, bearer => $bearer);
		is($r->{status}, 200, "GET $path: 200") or diag show($r);
		is(x_cache($r), 'STALE', "GET $path: X-Cache STALE");
		is_deeply($r->{json}, $before{"A $path"}{json}, "GET $path: the data cached before");
	}
};

subtest 'host A during the outage: what needs PostgreSQL answers 503' => sub {
	unavailable_ok(req($A, GET => '/api/storage/never%2Fcached'), 'an uncached storage key');
	unavailable_ok(req($A, PUT => '/api/storage/outage%2Fput', json => { data => 1 }), 'PUT storage');
	unavailable_ok(req($A, PUT => '/api/storage/warm%2Fa', json => { data => 'changed' }), 'PUT over a cached key');
	unavailable_ok(req($A, DELETE => '/api/storage/warm%2Fa'), 'DELETE a cached key');
	unavailable_ok(req($A, POST => '/api/deployments', json => { version => '9.9.9', gitCommit => 'c9',
		gitBranch => 'main', deployedBy => 't52' }), 'POST deployment');
	unavailable_ok(req($A, POST => '/api/compilations', json => { configName => 'outage', sourceCount => 1,
		ruleCount => 1, duration => 1 }), 'POST compilation');
	unavailable_ok(req($A, POST => '/api/auth/sign-in', bearer => undef,
		json => { email => 'admin@t52.test', password => $PASSWORD }, csrf => 1), 'sign-in');
	unavailable_ok(req($A, GET => '/api/admin/users'), 'GET /api/admin/users');
	unavailable_ok(req($A, GET => '/api/admin/audit'), 'GET /api/admin/audit');
	unavailable_ok(req($A, GET => '/api/admin/cache/status'), 'GET /api/admin/cache/status');
	unavailable_ok(req($A, GET => '/api/storage/warm%2Fa', bearer => $OTHER),
		'a cached entry with a credential host A never confirmed');
	my $r = req($A, GET => '/api/storage/warm%2Fa');
	is($r->{status}, 200, 'the cached entry with the confirmed credential is still 200') or diag show($r);

	$r = req($A, GET => '/api/health', bearer => undef);
	is($r->{status}, 503, 'health: 503') or diag show($r);
	is($r->{json}{status}, 'down', 'health: status down');
	is($r->{json}{services}{database}{status}, 'down', 'health: database down');
	is($r->{json}{services}{auth}{status}, 'down', 'health: auth down');
	ok(($r->{json}{services}{cache}{status} // '') ne 'down', 'health: the cache itself is not down');
};

subtest 'host B (auth_grace = 0) during the outage' => sub {
	my $took = within(5, sub { x_cache(req($B, GET => $LIST, bearer => undef)) eq 'STALE' });
	ok(defined $took, 'B: the public list is 200 STALE') or diag show(req($B, GET => $LIST, bearer => undef));
	unavailable_ok(req($B, GET => '/api/storage/warm%2Fa'), 'B: the cached admin storage read');
	unavailable_ok(req($B, GET => '/api/compilations'), 'B: the cached compilations');
	unavailable_ok(req($B, PUT => '/api/storage/outage%2Fb', json => { data => 1 }), 'B: PUT storage');
};

subtest 'the pool survived the outage' => sub {
	is_deeply([ $POOL_A->worker_pids ], \@pids_a, 'host A: the same worker pids');
	ok($POOL_A->alive && $POOL_B->alive, 'both pools are running');
	note(sprintf 'outage checks took %.1f s', time - $T_STOP);
};

ok($PG->start, 'PostgreSQL started again');

subtest 'recovery without a restart' => sub {
	for my $base ($A, $B) {
		my $h = $base eq $A ? 'A' : 'B';
		my $took = within(10, sub { req($base, GET => '/api/health', bearer => undef)->{status} == 200 });
		ok(defined $took, "host $h: health 200 within 10 s") or diag show(req($base, GET => '/api/health', bearer => undef));
		note(sprintf 'host %s recovered after %.1f s', $h, $took) if defined $took;
		my $r = req($base, GET => $LIST, bearer => undef);
		is($r->{status}, 200, "host $h: list 200");
		like(x_cache($r), qr/^(?:MISS|HIT)$/, "host $h: list is MISS or HIT, not STALE");
		ok(defined within(10, sub { x_cache(req($base, GET => $LIST, bearer => undef)) eq 'HIT' }),
			"host $h: list HIT again within 10 s");
		$r = req($base, GET => '/api/storage/warm%2Fa');
		is($r->{status}, 200, "host $h: the admin storage read is 200") or diag show($r);
		like(x_cache($r), qr/^(?:MISS|HIT)$/, "host $h: and MISS or HIT");
	}
	is_deeply([ $POOL_A->worker_pids ], \@pids_a, 'host A: still the same worker pids');
	is_deeply([ $POOL_B->worker_pids ], \@pids_b, 'host B: the same worker pids');

	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'outage/%'}), '0', 'no refused PUT is in PostgreSQL');
	is(sql(q{SELECT data::text FROM storage_entries WHERE key = 'warm/a'}), '{"warm":1}',
		'warm/a was neither changed nor deleted');
	is(sql(q{SELECT count(*) FROM deployment_history WHERE version = '9.9.9'}), '0', 'no refused deployment');
	is(sql(q{SELECT count(*) FROM compilation_metadata WHERE config_name = 'outage'}), '0', 'no refused compilation');
	is(sql(q{SELECT count(*) FROM sessions}), '0', 'no session from the refused sign-in');

	my $r = req($A, PUT => '/api/storage/after', json => { data => 'ok' });
	is($r->{status}, 201, 'a write works again') or diag show($r);
	$r = req($A, POST => '/api/auth/sign-in', bearer => undef, json => { email => 'admin@t52.test', password => $PASSWORD }, csrf => 1);
	is($r->{status}, 200, 'sign-in works again') or diag show($r);
	$r = req($A, GET => '/api/admin/users');
	is($r->{status}, 200, 'the admin users list works again') or diag show($r);
	ok(defined within(10, sub { listener_connected($A) }), 'host A: the listener is connected again');
};

done_testing();
