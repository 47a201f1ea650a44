#!/usr/bin/perl
# A connection that PostgreSQL closed while idle costs no request
# (CONTRACT §6): after pg_terminate_backend of every idle connection, and
# with idle_session_timeout = 1s, and after a restart of PostgreSQL,
# sequential PUTs all succeed, and each runs exactly once. Also through PgBouncer, whose server connections are
# terminated the same way.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);

my $S = stack(workers => 2);
my $PG = $S->{pg};
api_setup(url => $S->{url}, pg => $PG, conf => $S->{conf});
mkuser('admin@t71.test', role => 'admin') // BAIL_OUT('no admin');
api_setup(bearer => mktoken('admin@t71.test') // BAIL_OUT('no token'));
ok(within(10, sub { listener_connected() }), 'listener connected');

# Terminate every idle backend of database bloqr but ours (or only those
# of application $app); returns how many.
sub terminate_idle {
	my ($app) = @_;
	my $only = defined $app ? "AND application_name = '$app'" : '';
	my ($n) = sql(qq{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = 'bloqr' AND pid <> pg_backend_pid() AND state = 'idle' $only});
	return $n;
}

# $n sequential PUTs of distinct keys under $prefix, each preceded by
# $before->(); returns the list of failures ("status body").
sub puts {
	my ($prefix, $n, $before) = @_;
	my @bad;
	for my $i (1 .. $n) {
		$before->($i) if $before;
		my $r = req(PUT => "/api/storage/$prefix/$i", json => { data => { i => $i } });
		push @bad, "PUT $i: " . show($r) unless $r->{status} == 201;
	}
	return @bad;
}

# Every worker has its connection open and idle.
for (1 .. 10) { req(PUT => '/api/storage/warm', json => { data => 1 }) }

subtest 'pg_terminate_backend of every idle connection, then 20 PUTs' => sub {
	my $n = terminate_idle();
	cmp_ok($n, '>=', 2, "terminated $n idle connections (workers and syncer)");
	sleep 0.2;
	my @bad = puts('term', 20);
	is(scalar @bad, 0, 'all 20 PUTs succeed') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'term/%'}), 20, '20 rows');
};

# Only the workers' connections: the listener stays connected and the
# credential is trusted from the cache, so the PUT's own statement is the
# first to meet the closed connection.
subtest "the workers' connections terminated before every one of 20 PUTs" => sub {
	ok(within(10, sub { listener_connected() }), 'listener connected again');
	my @bad = puts('each', 20, sub { terminate_idle('bloqr'); sleep 0.05 });
	is(scalar @bad, 0, 'all 20 PUTs succeed') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'each/%'}), 20, '20 rows');
};

subtest 'a POST that creates is run once' => sub {
	my @bad;
	for my $i (1 .. 10) {
		terminate_idle('bloqr');
		sleep 0.05;
		my $r = req(POST => '/api/deployments', json => { version => '9.9.9', gitCommit => 'abc',
			gitBranch => 'main', deployedBy => 't71' });
		push @bad, show($r) unless $r->{status} == 201 && $r->{json}{deployment}{buildNumber} == $i;
	}
	is(scalar @bad, 0, '10 deployments, build numbers 1..10 in order') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM deployment_history WHERE version = '9.9.9'}), 10, 'exactly 10 rows');
};

subtest 'idle_session_timeout = 1s' => sub {
	sql(q{ALTER SYSTEM SET idle_session_timeout = '1s'});
	sql(q{SELECT pg_reload_conf()});
	sleep 1.5;   # every idle connection of the pool is closed by now
	my @bad = puts('idle', 20, sub { sleep 1.1 if $_[0] % 2 });
	is(scalar @bad, 0, 'all 20 PUTs succeed, half of them after more than 1 s idle') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'idle/%'}), 20, '20 rows');
	my $r = req(GET => '/api/storage/idle/1');
	is($r->{status}, 200, 'reads too') or diag show($r);
	sql(q{ALTER SYSTEM RESET idle_session_timeout});
	sql(q{SELECT pg_reload_conf()});
};

subtest 'PostgreSQL restarted while the pool is idle, then 20 PUTs' => sub {
	for (1 .. 6) { req(PUT => '/api/storage/warm', json => { data => 1 }) }
	$PG->stop('fast');
	$PG->start;
	my @bad = puts('restart', 20);
	is(scalar @bad, 0, 'all 20 PUTs succeed') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'restart/%'}), 20, '20 rows');
	ok(within(10, sub { listener_connected() }), 'the listener is back');
};

subtest 'through PgBouncer: its server connections terminated' => sub {
	my $bouncer = pgbouncer_start(pg => $PG, pool_size => 2);
	my $conf = write_conf('database.url' => $bouncer->url, 'database.listen_url' => $PG->url);
	my $host = host_start($conf, workers => 2);
	my $base = $host->{url};
	for (1 .. 5) { req($base, PUT => '/api/storage/bwarm', json => { data => 1 }) }
	my @bad;
	for my $i (1 .. 20) {
		terminate_idle();
		sleep 0.05;
		my $r = req($base, PUT => "/api/storage/bouncer/$i", json => { data => $i });
		push @bad, "PUT $i: " . show($r) unless $r->{status} == 201;
	}
	is(scalar @bad, 0, 'all 20 PUTs through the pooler succeed') or diag join("\n", @bad);
	is(sql(q{SELECT count(*) FROM storage_entries WHERE key LIKE 'bouncer/%'}), 20, '20 rows');
};

done_testing();
