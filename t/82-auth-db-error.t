#!/usr/bin/perl
# Database errors while checking a credential (CONTRACT §6): 500 or 503,
# never 401; and a credential that PostgreSQL says is revoked is dropped
# from the cache, so it is not trusted again when the cache becomes
# coherent again. And one failure repeating is not logged 100 times.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2, conf => { 'database.statement_timeout_ms' => 1000 });
my $PG = $S->{pg};
api_setup(url => $S->{url}, pg => $PG, conf => $S->{conf});
my $ADMIN_ID = mkuser('admin@t72.test', role => 'admin') // BAIL_OUT('no admin');
my $CACHE = conf_value($S->{conf}, 'cache', 'path');
api_setup(bearer => mktoken('admin@t72.test') // BAIL_OUT('no token'));   # for listener_connected

subtest 'an SQL error in the credential lookup answers 500, not 401' => sub {
	my $t = mktoken('admin@t72.test');
	sql('ALTER TABLE sessions RENAME TO sessions_away');
	my $r = req(GET => '/api/admin/users?limit=1', bearer => $t);
	my $r2 = req(GET => '/api/auth/session', bearer => $t);
	sql('ALTER TABLE sessions_away RENAME TO sessions');
	json_error_ok($r, 500, undef, 'admin route: 500 JSON error');
	json_error_ok($r2, 500, undef, 'own session: 500 JSON error');
	is(req(GET => '/api/admin/users?limit=1', bearer => $t)->{status}, 200, 'the token works once the table is back');
};

subtest 'a credential lookup past the statement deadline answers 503, not 401' => sub {
	my $t = mktoken('admin@t72.test');   # never looked up: not in the cache
	my $lock = bg_start(['psql', '-XAtq', '-d', $PG->url, '-c',
		'BEGIN; LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT'], name => 'psql-lock');
	ok(defined within(5, sub { sql(q{SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE c.relname = 'api_tokens' AND l.mode = 'AccessExclusiveLock' AND l.granted}) eq '1' }), 'api_tokens locked');
	my $t0 = time;
	my $r = req(GET => '/api/admin/users?limit=1', bearer => $t);
	my $took = time - $t0;
	json_error_ok($r, 503, undef, '503 JSON error');
	retry_after_ok($r, 'with Retry-After');
	cmp_ok($took, '<', 3.5, sprintf('answered before the lock went away (%.1f s)', $took));
	$lock->stop;
	# the backend holds the lock until its pg_sleep is over
	ok(defined within(8, sub { sql(q{SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE c.relname = 'api_tokens' AND l.mode = 'AccessExclusiveLock'}) eq '0' }), 'lock released');
	is(req(GET => '/api/admin/users?limit=1', bearer => $t)->{status}, 200, 'then the token works');
};

# Read from the cache file by another process.
sub cached_creds {
	my ($user_id) = @_;
	my $r = run_cmd(['sqlite3', $CACHE, "SELECT count(*) FROM credentials WHERE user_id = '$user_id'"]);
	chomp(my $n = $r->{out} // '');
	return $r->{rc} ? "(sqlite3 failed: $r->{err})" : $n;
}

subtest 'a revoked credential is dropped from the cache when PostgreSQL says so' => sub {
	my $id = mkuser('revoked@t72.test', role => 'admin');
	my $t = mktoken('revoked@t72.test');
	ok(within(10, sub { listener_connected($S->{url}) }), 'listener connected');
	is(req(GET => '/api/admin/storage/stats', bearer => $t)->{status}, 200, 'the token works') for 1 .. 2;
	ok(defined within(2, sub { cached_creds($id) eq '1' }), 'its credential is cached');
	my ($syncer) = grep { my $p = $_; !grep { $_ == $p } $S->{pool}->worker_pids } $S->{pool}->child_pids;
	ok($syncer, "the syncer is pid $syncer") or return;
	# A silent syncer: the cache stops being trusted within 3 s, and the
	# revocation below (with the triggers off: as if its notification were
	# lost) is only known to PostgreSQL.
	kill 'STOP', $syncer;
	ok(defined within(5, sub { !listener_connected($S->{url}) }), 'listener not connected while the syncer is stopped');
	sql(q{ALTER TABLE api_tokens DISABLE TRIGGER USER});
	sql(qq{UPDATE api_tokens SET revoked_at = now() WHERE user_id = '$id'});
	sql(q{ALTER TABLE api_tokens ENABLE TRIGGER USER});
	my $r = req(GET => '/api/admin/storage/stats', bearer => $t);
	is($r->{status}, 401, 'revoked: 401 from PostgreSQL') or diag show($r);
	is(cached_creds($id), '0', 'and the cached credential is gone');
	kill 'CONT', $syncer;
	ok(defined within(5, sub { listener_connected($S->{url}) }), 'listener connected again');
	$r = req(GET => '/api/admin/storage/stats', bearer => $t);
	is($r->{status}, 401, 'still 401 once the cache is trusted again') or diag show($r);
};

subtest 'one failure repeating is logged a few times, then counted' => sub {
	sql('ALTER TABLE storage_entries RENAME TO storage_gone');
	my %status;
	$status{ req(PUT => "/api/storage/flood$_", json => { data => $_ })->{status} }++ for 1 .. 100;
	sql('ALTER TABLE storage_gone RENAME TO storage_entries');
	is_deeply([keys %status], ['500'], '100 failing PUTs (500)') or diag explain \%status;
	my $log = $S->{pool}->log_text;
	my $lines = () = $log =~ /relation "storage_entries" does not exist/g;
	cmp_ok($lines, '<=', 2 * 10, "the error is in the log $lines times, not 100 (2 workers, 10 each)");
	cmp_ok($lines, '>=', 1, 'but it is there');
	# once the 10 s window is over, each worker says how many it dropped
	sleep 10.5;
	req(GET => '/api/storage/flood-after') for 1 .. 6;
	my @dropped = $S->{pool}->log_text =~ /log: (\d+) more messages like "[^"]*" dropped/g;
	ok(@dropped, 'the log says how many were dropped: ' . join(', ', @dropped)) or diag $S->{pool}->log_text;
};

done_testing();
