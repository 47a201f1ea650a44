#!/usr/bin/perl
# Query console costs that escaped its limits (CONTRACT §4: "nothing it
# sends can change data", bounded): each statement below answers 400 or is
# capped, and leaves no WAL, no lock and no memory behind.
#  - pg_logical_emit_message wrote WAL that the rollback does not undo;
#  - pg_advisory_xact_lock + pg_sleep held the service's own locks (the
#    last-admin lock: a concurrent PATCH waited);
#  - repeat('x', 500000000) left a worker holding 500 MB;
#  - 1,664 columns of one name took seconds to name (cubic time).
# Functions the console may call are an allow-list: stable and immutable
# ones, and a few volatile ones that only read or wait.
use strict;
use warnings;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use BloqrTest;
use BloqrTest::Api;

my $S = stack(workers => 2);
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf}, timeout => 30);
my $admin = mkuser('a@t62.test', role => 'admin') // BAIL_OUT('no admin');
my $other = mkuser('b@t62.test', role => 'user') // BAIL_OUT('no user');
api_setup(bearer => mktoken('a@t62.test') // BAIL_OUT('no token'));

sub qry { my ($sql, %o) = @_; req(POST => '/api/admin/storage/query', json => { sql => $sql }, %o) }
sub wal { sql('SELECT pg_current_wal_insert_lsn()') }
sub wal_since { sql("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$_[0]')::bigint") }
sub advisory_locks { sql(q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'}) }

subtest 'no WAL that a rollback cannot take back' => sub {
	for my $sql (q{SELECT pg_logical_emit_message(false, 'x', repeat('x', 5000000))},
	    q{SELECT pg_logical_emit_message(true, 'x', repeat('x', 5000000))},
	    q{SELECT pg_catalog.pg_logical_emit_message(false, 'x', 'y') FROM generate_series(1, 100000)}) {
		my $at = wal();
		my $r = qry($sql);
		json_error_ok($r, 400, qr/may not call pg_logical_emit_message/, "$sql: 400 naming the function");
		cmp_ok(wal_since($at), '<', 1_000_000, '  and less than 1 MB of WAL written meanwhile');
	}
};

subtest "no lock on the service's own keys" => sub {
	my $mark = workdir() . '/t62-lock';
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		my $t0 = time;
		my $r = qry(q{SELECT pg_advisory_xact_lock(hashtext('bloqr-admins')), pg_sleep(3)});
		open my $fh, '>', $mark;
		printf $fh "%d %.3f %s", $r->{status}, time - $t0, $r->{json}{error} // '';
		close $fh;
		POSIX::_exit(0);
	}
	sleep 0.3;
	my $t0 = time;
	my $r = req(PATCH => "/api/admin/users/$other", json => { tier => 'pro' });
	my $took = time - $t0;
	is($r->{status}, 200, 'a PATCH meanwhile succeeds');
	cmp_ok($took, '<', 1.5, sprintf('  without waiting on a lock (%.2f s)', $took));
	waitpid($pid, 0);
	my ($status, $secs, $err) = split / /, do { local (@ARGV, $/) = ($mark); <> }, 3;
	is($status, 400, "the locking statement: 400 ($err)");
	cmp_ok($secs, '<', 2, '  at once, not after its sleep');
	for my $sql (q{SELECT pg_advisory_lock(1)}, q{SELECT pg_try_advisory_xact_lock(hashtext('bloqr-signin:x'))},
	    q{SELECT * FROM storage_entries WHERE pg_advisory_lock(2) IS NULL},
	    q{WITH l AS (SELECT pg_advisory_lock_shared(3)) SELECT * FROM l},
	    q{SELECT (SELECT pg_try_advisory_lock(4)) AS x}) {
		json_error_ok(qry($sql), 400, qr/may not call/, "$sql: 400");
	}
	is(advisory_locks(), 0, 'no advisory lock left');
};

subtest 'other side effects outside the transaction are refused' => sub {
	for my $sql (q{SELECT query_to_xml('SELECT pg_advisory_lock(5)', true, true, '')},
	    q{SELECT set_config('statement_timeout', '0', false)},
	    q{SELECT pg_notify('bloqr_cache', 'storage_entries')},
	    q{SELECT lo_create(0)},
	    q{SELECT "pg_advisory_lock"(6)}) {
		json_error_ok(qry($sql), 400, qr/may not call/, "$sql: 400");
	}
	# What stays available: stable and immutable functions, and the
	# volatile ones that only read or wait.
	for my $sql (q{SELECT now(), random(), clock_timestamp(), gen_random_uuid(), pg_sleep(0.01)},
	    q{SELECT count(*), string_agg(key, ',') FROM storage_entries},
	    q{SELECT 'pg_advisory_lock(1)' AS text_not_a_call, upper('x'), length(repeat('y', 10))},
	    q{SELECT * FROM pg_locks}, q{EXPLAIN SELECT pg_advisory_lock(1)}, q{SHOW statement_timeout}) {
		is(qry($sql)->{status}, 200, "$sql: 200");
	}
	json_error_ok(qry(q{EXPLAIN ANALYZE SELECT pg_advisory_lock(1)}), 400, qr/EXPLAIN ANALYZE/, 'EXPLAIN ANALYZE: 400');
	json_error_ok(qry(q{EXPLAIN (ANALYZE true) SELECT 1}), 400, qr/EXPLAIN ANALYZE/, 'EXPLAIN (ANALYZE): 400');
	is(advisory_locks(), 0, 'no advisory lock left');
};

sub worker_rss_kb {
	my $max = 0;
	for my $pid ($S->{pool}->child_pids) {
		open my $fh, '<', "/proc/$pid/status" or next;
		while (<$fh>) { $max = $1 if /^VmRSS:\s+(\d+)/ && $1 > $max }
	}
	return $max;
}

subtest 'a huge value is cut at the byte cap, and no worker keeps its memory' => sub {
	sql(q{INSERT INTO storage_entries (key, data) VALUES ('0123456789', '1')});
	my $before = worker_rss_kb();
	for (1 .. 2) {     # both workers, most likely
		# Not a constant: the planner cannot fold it, the row is made
		# while the statement runs.
		# 100 MB: twelve times the byte cap, and made well within the
		# console's 5 s even on a loaded machine under ASan.
		my $r = qry(q{SELECT repeat(key, 10000000) AS big FROM storage_entries});
		is($r->{status}, 200, 'a 100 MB value: answered 200') or diag $r->{content};
		ok($r->{json}{meta}{truncated}, '  truncated');
		is($r->{json}{rowCount}, 0, '  without the row');
		cmp_ok(length $r->{content}, '<', 1_000_000, '  in a small answer');
		# A constant is folded by the planner: the plan alone is 500 MB.
		$r = qry(q{SELECT repeat('x', 500000000) AS big});
		json_error_ok($r, 400, qr/too large|timed out/, 'a 500 MB constant: 400');
	}
	my $after = worker_rss_kb();
	cmp_ok($after, '<', 100_000, "no worker holds 100 MB afterwards (largest: $after kB, before: $before kB)");
	my $r = qry(q{SELECT repeat('x', 1000) AS small});
	is($r->{json}{rows}[0]{small}, 'x' x 1000, 'the console works afterwards');
};

subtest '1,664 columns of one name are named at once' => sub {
	my $sql = 'SELECT ' . join(', ', map { '1 AS a' } 1 .. 1664);
	my $t0 = time;
	my $r = qry($sql);
	my $took = time - $t0;
	is($r->{status}, 200, 'answered 200');
	cmp_ok($took, '<', 1.5, sprintf('in %.2f s', $took));
	my @names = map { $_->{name} } @{ $r->{json}{meta}{columns} || [] };
	is(scalar @names, 1664, '1664 columns');
	is_deeply([ @names[0 .. 2], $names[-1] ], [ 'a', 'a_2', 'a_3', 'a_1664' ], 'a, a_2, a_3 ... a_1664');
	my %seen;
	is(scalar(grep { !$seen{$_}++ } @names), 1664, 'all different');
	is(scalar keys %{ $r->{json}{rows}[0] || {} }, 1664, 'every value in the row');
};

done_testing;
