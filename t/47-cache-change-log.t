#!/usr/bin/perl
# The change log (migration 0006): a NOTIFY is lost when no one listens, so
# a syncer that starts again reads what it missed from bloqr_cache_log
# instead of re-checking the whole cache (issue 12, the syncer restart).
# - Changes made while the syncer is stopped and then killed (a storage
#   entry, a revoked token, a banned user) are applied by the next syncer:
#   the new value, the token refused, the ban in force. What did not change
#   stays cached: a HIT as soon as the new syncer listens, not a MISS.
# - The log cannot tell (pruned past the file's position, more missed
#   changes than it replays): the next syncer re-checks everything.
# - Syncers prune the log ([cache] change_log_keep) and move its horizon.
# - TRUNCATE is announced and logged too (migration 0007).
# - A reload (SIGHUP) hands the cache over from one syncer to the next.
# PostgreSQL, the pool (2 workers and the syncer), nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Time::HiRes qw(time sleep);
use POSIX ();

my $S = stack(workers => 2, conf => { 'cache.change_log_keep' => 5 });
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});
mkuser('admin@t47.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t47.test') // BAIL_OUT('no admin token');
mkuser('banned@t47.test', role => 'admin') // BAIL_OUT('no second admin');
api_setup(bearer => $ADMIN);
cache_ready();

sub syncer_pid {
	for my $pid ($S->{pool}->child_pids) {
		my $comm = BloqrTest::_slurp("/proc/$pid/comm") // next;
		return $pid if $comm =~ /sync/;
	}
	return undef;
}

sub value { my ($g) = @_; ref $g->{json} eq 'HASH' ? $g->{json}{entry}{data}{v} // '' : '' }

# Stop the syncer, run $change in PostgreSQL (no one listens), kill it.
# Returns when a new syncer has caught up (its log says how) and vouches
# for the cache (its log says so).
# (The cache stays trusted meanwhile, for at most a second: the new
# syncer keeps its predecessor's word while it catches up.)
sub restart_missing {
	my ($change) = @_;
	my $old = syncer_pid() or return 0;
	my $log0 = length $S->{pool}->log_text;
	kill 'STOP', $old;
	$change->();
	kill 'KILL', $old;
	return within(10, sub {
		my $p = syncer_pid();
		return 0 unless $p && $p != $old;
		my $log = substr($S->{pool}->log_text, $log0);
		return $log =~ /applied \d+ changes|re-checking the whole cache/
		    && $log =~ /notifications arrive; the cache is trusted/;
	});
}

sub put_hot {
	my ($key, $v) = @_;
	my $r = req(PUT => "/api/storage/$key", json => { data => { v => $v } });
	ok($r->{status} == 200 || $r->{status} == 201, "PUT $key") or diag show($r);
	ok(poll(5, sub { x_cache(req(GET => "/api/storage/$key")) eq 'HIT' }), "$key is a HIT");
}

subtest 'changes made while no one listened are applied from the log' => sub {
	put_hot('kept', 0);
	put_hot('changed', 0);
	put_hot('gone', 0);
	my $utok = mktoken('banned@t47.test') // BAIL_OUT('no user token');
	my $rtok = mktoken('admin@t47.test') // BAIL_OUT('no second admin token');
	for my $t ($utok, $rtok) {
		ok(poll(5, sub { x_cache(req(GET => '/api/storage/kept', bearer => $t)) eq 'HIT' }),
		    'a token that reads a cached entry (its credential cached too)');
	}
	my $log0 = length $S->{pool}->log_text;

	ok(restart_missing(sub {
		$S->{pg}->psql(q{UPDATE storage_entries SET data = '{"v": 1}', updated_at = now() WHERE key = 'changed';
		    DELETE FROM storage_entries WHERE key = 'gone';
		    UPDATE users SET banned = true WHERE email = 'banned@t47.test';
		    UPDATE api_tokens SET revoked_at = now() WHERE token_hash = (
		      SELECT token_hash FROM api_tokens t JOIN users u ON u.id = t.user_id
		      WHERE u.email = 'admin@t47.test' ORDER BY t.created_at DESC LIMIT 1)});
	}), 'a new syncer listens after the old one was killed');

	my $k = req(GET => '/api/storage/kept');
	is(x_cache($k), 'HIT', 'an entry nothing changed is still a HIT: nothing was re-checked');
	my $c = req(GET => '/api/storage/changed');
	is(value($c), '1', 'the entry changed meanwhile reads its new value');
	my $g = req(GET => '/api/storage/gone');
	is($g->{status}, 404, 'the entry deleted meanwhile is gone') or diag show($g);
	my $u = req(GET => '/api/storage/kept', bearer => $utok);
	ok($u->{status} == 401 || $u->{status} == 403, "the admin banned meanwhile is refused ($u->{status})")
	    or diag show($u);
	my $r = req(GET => '/api/storage/kept', bearer => $rtok);
	is($r->{status}, 401, 'the token revoked meanwhile is refused') or diag show($r);
	my $log = substr($S->{pool}->log_text, $log0);
	like($log, qr/applied \d+ changes made while no one listened, from the change log/,
	    'the new syncer says it replayed the log') or diag $log;
	unlike($log, qr/re-checking the whole cache/, 'and did not re-check everything');
};

subtest 'reads stay HITs while a new syncer catches up, for a second at most' => sub {
	put_hot('steady', 0);
	# Hold the new syncer's catch-up back for 3 s: its read of the log
	# waits for this lock.
	my $locker = fork // die "fork: $!\n";
	if ($locker == 0) {
		eval { $S->{pg}->psql(q{BEGIN; LOCK TABLE bloqr_cache_log_horizon IN ACCESS EXCLUSIVE MODE;
		    SELECT pg_sleep(3); COMMIT}) };
		POSIX::_exit(0);
	}
	ok(within(5, sub { $S->{pg}->psql(q{SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
	    WHERE c.relname = 'bloqr_cache_log_horizon' AND l.mode = 'AccessExclusiveLock' AND l.granted}) > 0 }),
	    'the log is locked');
	my $old = syncer_pid();
	my $log0 = length $S->{pool}->log_text;
	my $t0 = time;
	kill 'KILL', $old;
	my (@early, @late);
	while (time - $t0 < 2.5) {
		my $how = x_cache(req(GET => '/api/storage/steady'));
		my $at = time - $t0;
		push @early, $how if $at < 0.7;
		push @late, $how if $at > 1.3;
		sleep 0.05;
	}
	ok(@early && !grep({ $_ ne 'HIT' } @early), 'HITs while the new syncer catches up (' . scalar(@early) . ')')
	    or diag "@early";
	ok(scalar(grep { $_ ne 'HIT' } @late), 'not past a second: then the cache is not trusted') or diag "@late";
	like(substr($S->{pool}->log_text, $log0), qr/not caught up within a second of starting/, 'the syncer says so');
	waitpid $locker, 0;
	ok(poll(10, sub { x_cache(req(GET => '/api/storage/steady')) eq 'HIT' }), 'HITs again once it has caught up');
};

subtest 'a reload (SIGHUP) hands the cache over: reads stay HITs' => sub {
	put_hot('reload', 0);
	my $old = syncer_pid();
	my $log0 = length $S->{pool}->log_text;
	kill 'HUP', $S->{pool}->pid;
	my %seen;
	my $back = within(10, sub {
		$seen{ x_cache(req(GET => '/api/storage/reload')) }++;
		my $p = syncer_pid();
		return $p && $p != $old && substr($S->{pool}->log_text, $log0) =~ /the cache is trusted/;
	});
	ok($back, 'a new syncer vouches for the cache');
	$seen{ x_cache(req(GET => '/api/storage/reload')) }++ for 1 .. 5;
	is_deeply([sort keys %seen], ['HIT'], 'every read before, during and after was a HIT') or diag explain \%seen;
	my $log = substr($S->{pool}->log_text, $log0);
	like($log, qr/handing the cache over/, 'the old syncer handed over');
	like($log, qr/applied \d+ changes made while no one listened/, 'the new one caught up from the log');
};

subtest 'a writer with no rights on the log still writes, and is followed' => sub {
	put_hot('outside', 0);
	$S->{pg}->psql(q{CREATE ROLE t47_writer LOGIN; GRANT SELECT, UPDATE ON storage_entries TO t47_writer});
	# It would fail if the trigger wrote the log with the writer's rights.
	my $w = eval { $S->{pg}->psql(q{UPDATE storage_entries SET data = '{"v": 7}' WHERE key = 'outside'},
	    user => 't47_writer'); 1 };
	ok($w, 'an UPDATE by a role with rights on storage_entries only') or diag $@;
	ok(poll(2.5, sub { value(req(GET => '/api/storage/outside')) eq '7' }), 'its change reaches the cache');
	my $r = eval { $S->{pg}->psql(q{SELECT count(*) FROM bloqr_cache_log}, user => 't47_writer'); 1 };
	ok(!$r, 'while it cannot read the log itself');
};

subtest 'a log pruned past the position: everything is re-checked' => sub {
	put_hot('kept2', 0);
	my $log0 = length $S->{pool}->log_text;
	ok(restart_missing(sub {
		# As if another host had pruned what this one would need.
		$S->{pg}->psql(q{UPDATE bloqr_cache_log_horizon SET pruned_below = pg_current_xact_id()});
	}), 'a new syncer listens');
	isnt(x_cache(req(GET => '/api/storage/kept2')), 'HIT', 'a cached entry is checked again (not a HIT)');
	ok(poll(5, sub { x_cache(req(GET => '/api/storage/kept2')) eq 'HIT' }), 'then a HIT again');
	my $log = substr($S->{pool}->log_text, $log0);
	like($log, qr/the change log does not cover .* re-checking the whole cache/, 'the syncer says why')
	    or diag $log;
};

subtest 'more missed changes than the log replays: everything is re-checked' => sub {
	put_hot('kept3', 0);
	my $log0 = length $S->{pool}->log_text;
	ok(restart_missing(sub {
		$S->{pg}->psql(q{INSERT INTO storage_entries (key, data)
		    SELECT 'many-' || i, '{}' FROM generate_series(1, 100001) AS i});
	}), 'a new syncer listens');
	isnt(x_cache(req(GET => '/api/storage/kept3')), 'HIT', 'a cached entry is checked again (not a HIT)');
	my $log = substr($S->{pool}->log_text, $log0);
	like($log, qr/the change log does not cover .* re-checking the whole cache/, 'the syncer says why')
	    or diag $log;
};

subtest 'syncers prune the log after change_log_keep' => sub {
	$S->{pg}->psql(q{UPDATE storage_entries SET data = '{"v": 2}' WHERE key = 'kept'});
	my $h0 = $S->{pg}->psql(q{SELECT pruned_below FROM bloqr_cache_log_horizon});
	ok($S->{pg}->psql(q{SELECT count(*) FROM bloqr_cache_log WHERE payload = 'storage_entries:kept'}) > 0,
	    'the change is in the log');
	# keep = 5 s: a position is marked within 2.5 s, pruned below 5 s
	# later, one chunk of 5 000 rows per 0.2 s (the 100 001 rows above).
	ok(within(40, sub {
		$S->{pg}->psql(q{SELECT count(*) FROM bloqr_cache_log WHERE payload = 'storage_entries:kept'}) == 0
	}), 'the change is pruned from the log');
	my $h1 = $S->{pg}->psql(q{SELECT pruned_below FROM bloqr_cache_log_horizon});
	cmp_ok($h1, '>', $h0, "the horizon moved on ($h0 -> $h1)");
	my $log0 = length $S->{pool}->log_text;
	ok(restart_missing(sub {}), 'a syncer started after the pruning listens');
	my $log = substr($S->{pool}->log_text, $log0);
	like($log, qr/applied \d+ changes made while no one listened/,
	    'and replays from its own position, which the pruning did not pass') or diag $log;
	unlike($log, qr/re-checking the whole cache/, 'no re-check');
};

subtest 'a TRUNCATE from outside is announced (migration 0007), and logged' => sub {
	put_hot('trunc', 0);
	$S->{pg}->psql(q{TRUNCATE storage_entries});
	ok(poll(2.5, sub { req(GET => '/api/storage/trunc')->{status} == 404 }),
	    'every cached entry of a truncated table is gone within 2 s');
	# The credentials: the admin's token, cached; the tokens truncated
	# while no one listens.
	ok(poll(5, sub { req(GET => '/api/admin/cache/status')->{status} == 200 }), 'the admin token works (cached)');
	ok(restart_missing(sub { $S->{pg}->psql(q{TRUNCATE api_tokens}) }), 'a new syncer caught up');
	is(req(GET => '/api/admin/cache/status')->{status}, 401, 'a token truncated meanwhile is refused');
};

done_testing();
