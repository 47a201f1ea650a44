#!/usr/bin/perl
# Behind PgBouncer in transaction mode (CONTRACT §6), Debian's PgBouncer
# started by the suite. Host A reaches PostgreSQL through the pooler (`url`)
# and listens on a direct `listen_url`; host B is direct. Then host C: the
# pooler and no listen_url.
#
# - the storage, deployments and users flow under 8 concurrent clients for
#   10 s answers no 5xx on A;
# - a ban on B is refused on A within 2 s; a psql write is seen on A within
#   2 s;
# - nothing the service sets shows in another client's session of the
#   pooler;
# - C: the listener reports not connected, and reads are MISS, never a
#   stale HIT.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use POSIX qw(_exit);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $PG = pg_start();
my $BOUNCER = pgbouncer_start(pg => $PG, mode => 'transaction', pool_size => 3);
like($BOUNCER->psql('SELECT 1'), qr/^1$/m, 'psql answers through PgBouncer');

# B is direct and migrates; A goes through the pooler for every statement.
my $CONF_B = write_conf();
migrate($CONF_B);
my $CONF_A = write_conf('database.url' => $BOUNCER->url, 'database.listen_url' => $PG->url,
	'database.query_url' => $BOUNCER->url('bloqr_query'));
api_setup(pg => $PG, conf => $CONF_B);
# migrate holds a session advisory lock across transactions: with url on
# the pooler it runs on listen_url
ok(eval { migrate($CONF_A); 1 }, 'bloqr-admin migrate with url on the pooler (runs on listen_url)') or diag $@;
is($BOUNCER->psql(q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'}), "0\n",
	'no advisory lock left behind');

my (undef) = mkuser('admin@t70.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t70.test') // BAIL_OUT('no token');
my $DOOMED_ID = mkuser('doomed@t70.test', role => 'admin') // BAIL_OUT('no user');
my $DOOMED = mktoken('doomed@t70.test') // BAIL_OUT('no token');
api_setup(bearer => $ADMIN);

my $HOST_A = host_start($CONF_A, workers => 2);
my $HOST_B = host_start($CONF_B, workers => 2);
my ($A, $B) = ($HOST_A->{url}, $HOST_B->{url});

ok(within(10, sub { listener_connected($A) && listener_connected($B) }),
	'both listeners connected within 10 s (A listens on the direct listen_url)')
    or BAIL_OUT('the caches never become coherent');

sub data_of {
	my ($r) = @_;
	return $r->{status} == 200 ? $JSON->encode($r->{json}{entry}{data}) : "(status $r->{status})";
}

# ------------------------------------------------------------- load --

subtest 'storage, deployments and users through the pooler: 8 clients, 10 s, no 5xx' => sub {
	my $dir = workdir();
	my @kids;
	for my $c (1 .. 8) {
		my $pid = fork // die "fork: $!\n";
		if ($pid == 0) {
			my %n;
			my @bad;
			my $end = time + 10;
			my $i = 0;
			while (time < $end) {
				$i++;
				my $key = "load/c$c/k" . ($i % 5);
				my @r;
				push @r, req($A, PUT => "/api/storage/$key", json => { data => { c => $c, i => $i }, tags => ['t70'] });
				push @r, req($A, GET => "/api/storage/$key");
				push @r, req($A, GET => '/api/deployments?limit=5', bearer => undef);
				push @r, req($A, GET => '/api/version', bearer => undef);
				push @r, req($A, GET => '/api/admin/users?limit=5');
				push @r, req($A, GET => '/api/auth/session');
				push @r, req($A, POST => '/api/deployments', json => { version => "7.$c.0", gitCommit => 'abc',
					gitBranch => 'main', deployedBy => "client$c" }) if $i % 4 == 0;
				push @r, req($A, POST => '/api/compilations', json => { configName => "cfg$c", sourceCount => 1,
					ruleCount => $i, duration => 5 }) if $i % 3 == 0;
				push @r, req($A, DELETE => "/api/storage/$key") if $i % 7 == 0;
				push @r, req($A, GET => '/api/admin/storage/stats') if $i % 5 == 0;
				for my $r (@r) {
					$n{total}++;
					if ($r->{status} >= 500) {
						$n{bad}++;
						push @bad, "$r->{status} $r->{content}" if @bad < 5;
					}
				}
			}
			open my $fh, '>', "$dir/t70-load-$c" or _exit(2);
			print $fh $JSON->encode({ total => $n{total} // 0, bad => $n{bad} // 0, samples => \@bad });
			close $fh;
			_exit(0);
		}
		push @kids, $pid;
	}
	waitpid($_, 0) for @kids;
	my ($total, $bad, @samples) = (0, 0);
	for my $c (1 .. 8) {
		my $t = do { local $/; open my $fh, '<', "$dir/t70-load-$c" or next; <$fh> };
		my $j = eval { $JSON->decode($t) } or next;
		$total += $j->{total};
		$bad += $j->{bad};
		push @samples, @{ $j->{samples} };
	}
	cmp_ok($total, '>', 100, "$total requests answered");
	is($bad, 0, 'none of them 5xx') or diag join("\n", @samples);
	my $log = $HOST_A->{pool}->log_text;
	unlike($log, qr/prepared statement/i, 'no prepared-statement errors in the pool log');
	unlike($log, qr/named statements are not kept/, 'the pooler was recognised from the start (unnamed statements)');
	my ($count) = sql(q{SELECT count(*) FROM deployment_history WHERE deployed_by LIKE 'client%'});
	cmp_ok($count, '>', 0, "$count deployments recorded through the pooler");
	my ($dups) = sql(q{SELECT count(*) FROM (SELECT full_version FROM deployment_history
		GROUP BY full_version HAVING count(*) > 1) d});
	is($dups, 0, 'no build number given twice');
};

# ------------------------------------------------------ coherence --

subtest 'a ban on B is refused on A within 2 s' => sub {
	for (1 .. 2) {
		my $r = req($A, GET => '/api/admin/users?limit=1', bearer => $DOOMED);
		is($r->{status}, 200, "A authorizes the admin's token ($_)") or diag show($r);
	}
	my $r = req($B, POST => "/api/admin/users/$DOOMED_ID/ban", json => { reason => 't70' });
	is($r->{status}, 200, 'ban on B') or diag show($r);
	my $last;
	my $took = within(2, sub {
		$last = req($A, GET => '/api/admin/users?limit=1', bearer => $DOOMED);
		$last->{status} == 401 || $last->{status} == 403;
	});
	ok(defined $took, 'A refuses the token within 2 s') or diag show($last);
	note(sprintf 'took %.2f s', $took) if defined $took;
};

subtest 'a psql write is seen on A within 2 s' => sub {
	my $r = req($A, PUT => '/api/storage/psql', json => { data => { x => 1 } });
	ok($r->{status} == 201 || $r->{status} == 200, 'PUT on A') or diag show($r);
	ok(defined within(5, sub { x_cache(req($A, GET => '/api/storage/psql')) eq 'HIT' }), 'A has it cached (HIT)');
	sql(q{UPDATE storage_entries SET data = '{"x":2}' WHERE key = 'psql'});
	my $took = within(2, sub { data_of(req($A, GET => '/api/storage/psql')) eq '{"x":2}' });
	ok(defined $took, 'A reads the new value within 2 s') or diag show(req($A, GET => '/api/storage/psql'));
	ok(defined within(5, sub { x_cache(req($A, GET => '/api/storage/psql')) eq 'HIT' }), 'and caches it again');
	is(data_of(req($A, GET => '/api/storage/psql')), '{"x":2}', 'HIT with the new value');
};

# ------------------------------------------------------------ leaks --

subtest "nothing the service sets shows in another client's session" => sub {
	# Many separate transactions from other clients of the pooler, so that
	# they land on the server connections the service has used.
	my @c = map { ('-c', q{SELECT current_setting('statement_timeout') || '|' || current_setting('TimeZone') || '|'
		|| (SELECT count(*) FROM pg_listening_channels()) || '|'
		|| (SELECT count(*) FROM pg_prepared_statements) || '|'
		|| (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())}) } 1 .. 30;
	my ($default_tz) = $PG->psql('SHOW TimeZone') =~ /^(.*)$/m;
	my %seen;
	for my $round (1 .. 3) {
		# the service busy meanwhile, so its server connections change hands
		req($A, PUT => "/api/storage/leak$round", json => { data => $round }) for 1 .. 3;
		req($A, GET => '/api/admin/users?limit=2');
		my $r = run_cmd(['psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $BOUNCER->url, @c]);
		is($r->{rc}, 0, "round $round: psql through the pooler") or diag $r->{err};
		$seen{$_}++ for split /\n/, $r->{out} // '';
	}
	is_deeply([sort keys %seen], ["0|$default_tz|0|0|0"],
		'statement_timeout, TimeZone, LISTEN, prepared statements and advisory locks as the server defaults')
	    or diag explain \%seen;
};

# --------------------------------------------------- no listen_url --

subtest 'through the pooler without listen_url: never connected, reads MISS' => sub {
	my $conf_c = write_conf('database.url' => $BOUNCER->url, 'database.listen_url' => undef);
	my $host_c = host_start($conf_c, workers => 2);
	my $C = $host_c->{url};
	my $r = req($C, PUT => '/api/storage/nolisten', json => { data => { v => 1 } });
	ok($r->{status} == 201 || $r->{status} == 200, 'PUT on C') or diag show($r);
	my (%xc, $connected);
	my $end = time + 4;
	while (time < $end) {
		$connected++ if listener_connected($C);
		$xc{ x_cache(req($C, GET => '/api/storage/nolisten')) }++;
		sleep 0.2;
	}
	ok(!$connected, 'cache status never says the listener is connected (4 s)');
	is_deeply([sort keys %xc], ['MISS'], 'every read a MISS') or diag explain \%xc;
	$r = req($C, GET => '/api/admin/cache/status');
	is($r->{status}, 200, 'cache status answers') or diag show($r);
	is($r->{json}{listener}{connected} ? 1 : 0, 0, 'listener.connected false');
	my $h = req($C, GET => '/api/health', bearer => undef);
	is($h->{json}{services}{cache}{listener}{connected} ? 1 : 0, 0, '/api/health says so too')
	    or diag show($h);
	$h = req($A, GET => '/api/health', bearer => undef);
	is($h->{json}{services}{cache}{listener}{connected} ? 1 : 0, 1, 'and connected on A') or diag show($h);
	sql(q{UPDATE storage_entries SET data = '{"v":2}' WHERE key = 'nolisten'});
	$r = req($C, GET => '/api/storage/nolisten');
	is(data_of($r), '{"v":2}', 'a psql write is read at once');
	is(x_cache($r), 'MISS', 'as a MISS');
	like($host_c->{pool}->log_text, qr/do not come back/, 'the log says why');
	# a credential is not trusted from the cache either: a ban made
	# with psql (no API call on C) is refused at once
	my $id = mkuser('c@t70.test', role => 'admin');
	my $t = mktoken('c@t70.test');
	is(req($C, GET => '/api/admin/users?limit=1', bearer => $t)->{status}, 200, 'a token works on C');
	sql(qq{UPDATE users SET banned = true WHERE id = '$id'});
	$r = req($C, GET => '/api/admin/users?limit=1', bearer => $t);
	ok($r->{status} == 401 || $r->{status} == 403, 'banned with psql: refused on C at once') or diag show($r);
};

done_testing();
