#!/usr/bin/perl
# The pre-forked pool behind nginx: a killed worker is replaced, SIGHUP
# replaces every worker without failing a request, max_requests recycles
# workers, SIGTERM stops the pool.
use strict;
use warnings;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use BloqrTest;

my $s = stack(workers => 2);
my $pool = $s->{pool};
my $url = $s->{url};

sub workers_now {
	my ($p, $n) = @_;
	my @w;
	poll(5, sub { @w = $p->worker_pids; @w == $n });
	return @w;
}

# Requests from $clients forked processes, from now until $during (run in
# this process) returns, but at least $secs seconds (and at most 30 s);
# returns (ok, failed, first failures). The requests take turns: a GET that
# talks to PostgreSQL, one that does not, and a POST (answered 405): nginx
# never retries a POST once sent, so one sent to a connection a worker is
# closing would fail.
my @MIX = ([ GET => '/api/health', 200 ], [ GET => '/api', 200 ], [ POST => '/api/health', 405 ]);
sub client_load {
	my ($base, $secs, $clients, $during) = @_;
	my @kids;
	my $dir = workdir();
	my $stop = "$dir/stop-$$-" . int(time * 1000);
	for my $c (1 .. $clients) {
		my $file = "$stop.$c";
		my $pid = fork // die "fork: $!";
		if ($pid == 0) {
			my ($ok, $bad, $n, @why) = (0, 0, $c);
			my $t0 = time;
			while (time < $t0 + 30 && (time < $t0 + $secs || !-e $stop)) {
				my ($m, $path, $want) = @{ $MIX[$n++ % @MIX] };
				my $r = http($m => "$base$path", timeout => 10, $m eq 'POST' ? (body => '{}') : ());
				if ($r->{status} == $want) { $ok++ }
				else { $bad++; push @why, "$m $path: $r->{status} $r->{content}" if @why < 3 }
			}
			open my $fh, '>', $file;
			print $fh join("\n", $ok, $bad, @why), "\n";
			close $fh;
			POSIX::_exit(0);
		}
		push @kids, [$pid, $file];
	}
	my $t0 = time;
	eval { $during->(); 1 } or diag "during the load: $@";
	open my $fh, '>', $stop;
	close $fh;
	my ($ok, $bad, @why) = (0, 0);
	for my $k (@kids) {
		waitpid($k->[0], 0);
		open my $fh, '<', $k->[1] or do { $bad++; push @why, 'client died'; next };
		chomp(my @l = <$fh>);
		$ok += shift @l;
		$bad += shift @l;
		push @why, @l;
	}
	return ($ok, $bad, @why);
}

my @w = workers_now($pool, 2);
is(scalar @w, 2, 'two workers') or diag "children: @{[ $pool->child_pids ]}";
is(http(GET => "$url/api/health")->{status}, 200, 'pool answers');

subtest 'a killed worker is replaced' => sub {
	my $victim = $w[0];
	ok(kill('KILL', $victim), "kill -9 worker $victim");
	my @now;
	my $ok = poll(5, sub {
		@now = $pool->worker_pids;
		@now == 2 && !grep { $_ == $victim } @now;
	});
	ok($ok, 'a new worker appears within 5 s') or diag "workers: @now";
	ok($pool->alive, 'master still running');
	my $fail = 0;
	for (1 .. 10) {
		$fail++ if http(GET => "$url/api/health")->{status} != 200;
	}
	is($fail, 0, 'following requests succeed');
	my $m = http(GET => "$url/metrics")->{content};
	like($m, qr/^bloqr_worker_restarts_total(\{[^}]*\})? [1-9]\d*$/m, 'bloqr_worker_restarts_total counts it');
	@w = @now;
};

subtest 'SIGHUP replaces every worker without failing a request' => sub {
	my @old = $pool->worker_pids;
	my %old = map { $_ => 1 } @old;
	my @now;
	my $done;
	my $big = '{"x":"' . ('y' x 5000) . '"}';
	my $r = http(POST => "$url/api/health", body => $big, headers => { 'Content-Type' => 'application/json' });
	is($r->{status}, 405, 'before: a 5000-byte body is within max_body');
	# The reload re-reads the configuration: lower max_body.
	rename(write_conf('http.max_body' => 1000), $s->{conf}) or die "rename: $!";
	# Four clients request without pause from 0.5 s before the SIGHUP until
	# the last old worker is gone (at least 3 s in all), over FastCGI
	# connections nginx keeps open: the old workers hand theirs over.
	my ($ok, $bad, @why) = client_load($url, 3, 4, sub {
		sleep 0.5;
		ok($pool->signal('HUP'), 'SIGHUP sent');
		$done = poll(10, sub {
			@now = $pool->worker_pids;
			@now == 2 && !grep { $old{$_} } @now;
		});
	});
	ok($done, 'all worker pids replaced within 10 s') or diag "before: @old; now: @now";
	cmp_ok($ok, '>', 20, "clients made requests ($ok)");
	is($bad, 0, 'zero failed requests during the reload') or diag join "\n", @why;
	ok($pool->alive, 'master still running');
	is(http(GET => "$url/api/health")->{status}, 200, 'pool answers after reload');
	$r = http(POST => "$url/api/health", body => $big, headers => { 'Content-Type' => 'application/json' });
	is($r->{status}, 413, 'the new max_body applies after the reload');
};

subtest 'SIGHUP with a broken config keeps the pool serving' => sub {
	my $good = do { local (@ARGV, $/) = ($s->{conf}); <> };
	open my $fh, '>', $s->{conf} or die;
	print $fh "[pool]\nno_such_key = 1\n";
	close $fh;
	ok($pool->signal('HUP'), 'SIGHUP sent');
	my $fail = 0;
	my $t0 = time;
	while (time < $t0 + 2) {
		$fail++ if http(GET => "$url/api/health")->{status} != 200;
	}
	is($fail, 0, 'requests keep succeeding');
	ok($pool->alive, 'master still running');
	like($pool->log_text, qr/no_such_key/, 'the log names the bad key');
	open $fh, '>', $s->{conf} or die;
	print $fh $good;
	close $fh;
};

subtest 'max_requests recycles workers' => sub {
	my $conf = write_conf('pool.max_requests' => 5);
	my $p = pool_start($conf, workers => 2);
	my $web = nginx_start(upstream => $p->addr);
	my @old = workers_now($p, 2);
	is(scalar @old, 2, 'two workers');
	my %old = map { $_ => 1 } @old;
	my ($fail, %seen) = (0);
	for (1 .. 20) {
		my $r = http(GET => "$web->{url}/api/health");
		$fail++ if $r->{status} != 200;
		$seen{$_}++ for $p->worker_pids;
	}
	is($fail, 0, '20 requests, none failed');
	# Under load from several clients, with a worker leaving every few
	# requests and its kept connections passed on each time.
	my ($ok, $bad, @why) = client_load($web->{url}, 3, 4, sub { });
	cmp_ok($ok, '>', 20, "clients made requests ($ok)");
	is($bad, 0, 'zero failed requests while workers recycle under load') or diag join "\n", @why;
	my @now;
	ok(poll(5, sub { @now = $p->worker_pids; @now == 2 && grep { !$old{$_} } @now }),
		'worker pids changed') or diag "before: @old; now: @now";
	cmp_ok(scalar(keys %seen), '>=', 4, 'at least two workers were recycled (' . scalar(keys %seen) . ' pids seen)');
	ok($p->alive, 'master still running');
	$web->stop;
	$p->stop;
};

subtest 'listening on a unix socket (nginx workers run as www-data)' => sub {
	my $sock = workdir() . '/pool.sock';
	my $p = pool_start($s->{conf}, workers => 2, listen => "unix:$sock");
	ok(-S $sock, 'socket created');
	my $web = nginx_start(upstream => "unix:$sock");
	my $r = http(GET => "$web->{url}/api/health");
	is($r->{status}, 200, 'GET /api/health through the unix socket') or diag $r->{content};
	my $took = $p->stop(15);
	ok(defined $took && $took <= 10, 'stops on SIGTERM');
	ok(!-e $sock, 'socket file removed');
	$web->stop;
};

subtest 'SIGTERM stops the pool' => sub {
	my @kids = $pool->child_pids;
	my $took = $pool->stop(15);
	ok(defined $took && $took <= 10, 'master exits within 10 s')
	    or diag 'took ' . ($took // 'more than 15 s (killed)');
	my $st = $pool->{status};
	ok(defined $st && POSIX::WIFEXITED($st) && POSIX::WEXITSTATUS($st) == 0, 'exit status 0')
	    or diag "wait status " . ($st // 'none');
	ok(!listening($pool->addr), 'port closed');
	my @left = grep { kill 0, $_ } @kids;
	is("@left", '', 'no worker left behind');
	json_error_ok(http(GET => "$url/api/health"), 502, undef, 'nginx answers 502 JSON');
};

done_testing;
