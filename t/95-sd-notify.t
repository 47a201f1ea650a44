#!/usr/bin/perl
# bloqr.service is Type=notify: the pool's master speaks systemd's sd_notify
# protocol to $NOTIFY_SOCKET (a unix datagram socket; here one of ours, so
# no systemd is needed): READY=1 once it listens and its workers are
# forked, RELOADING=1 on SIGHUP then READY=1 when every worker is replaced
# (or at once when the new file is broken), STOPPING=1 on SIGTERM. Without
# $NOTIFY_SOCKET it sends nothing (every other test).
use strict;
use warnings;
use Test::More;
use IO::Socket::UNIX;
use IO::Select;
use Socket qw(SOCK_DGRAM);
use BloqrTest;

my $pg = pg_start();
my $conf = write_conf();
migrate($conf);

my $path = workdir() . '/notify.sock';
my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path) or die "bind $path: $!\n";
chmod 0777, $path;
my $sel = IO::Select->new($sock);

# The next datagram within $secs seconds, or undef.
sub next_msg {
	my ($secs) = @_;
	return undef unless $sel->can_read($secs);
	my $buf;
	defined $sock->recv($buf, 4096) or return undef;
	return $buf;
}

# Datagrams until one matches $re (within $secs); returns it or undef.
sub wait_for {
	my ($re, $secs) = @_;
	my $deadline = time + $secs;
	while ((my $left = $deadline - time) > 0) {
		my $m = next_msg($left) // return undef;
		return $m if $m =~ $re;
	}
	return undef;
}

my $pool = pool_start($conf, env => { NOTIFY_SOCKET => $path });
my $ready = wait_for(qr/^READY=1$/m, 10);
ok($ready, 'READY=1 after start') or diag $pool->log_text;
like($ready // '', qr/^STATUS=serving$/m, 'with a STATUS line');
ok(listening($pool->addr), 'the socket listens when READY=1 arrives');

$pool->signal('HUP');
ok(wait_for(qr/^RELOADING=1$/m, 5), 'SIGHUP: RELOADING=1');
my $back = wait_for(qr/^READY=1$/m, 30);
ok($back, 'READY=1 again once the workers are replaced');
like($back // '', qr/^STATUS=configuration reloaded$/m, 'STATUS says reloaded');
like($pool->log_text, qr/all workers replaced/, 'the log says so too');

# A broken file: the reload fails at once and the pool carries on.
my $good = BloqrTest::_slurp($conf);
BloqrTest::_spew($conf, $good . "\n[pool]\nno_such_key = 1\n");
$pool->signal('HUP');
ok(wait_for(qr/^RELOADING=1$/m, 5), 'broken file: RELOADING=1');
like(wait_for(qr/^READY=1$/m, 5) // '', qr/^STATUS=reload failed/m, 'then READY=1 with the failure in STATUS');
BloqrTest::_spew($conf, $good);

$pool->signal('TERM');
ok(wait_for(qr/^STOPPING=1$/m, 5), 'SIGTERM: STOPPING=1');
ok(within(15, sub { !$pool->alive }), 'and the pool exits');
unlike($pool->log_text, qr/cannot notify systemd/, 'no notification failed');

done_testing;
