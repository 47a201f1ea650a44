package BloqrTest::Browser;

# A headless Chromium driven over the Chrome DevTools Protocol, for tests of
# the web front end. Core Perl modules only; no WebSocket: Chromium is
# started with --remote-debugging-pipe and reads CDP messages from its fd 3
# and writes them to its fd 4, each one JSON text ended by a NUL byte.
#
# Typical use:
#
#   use Test::More;
#   use BloqrTest::Browser;
#   my $b = BloqrTest::Browser->new(timeout => 20);
#   $b->goto("$url/");
#   is($b->eval('document.title'), 'Bloqr');
#   is($b->eval(q{await fetch('/api/health').then(r => r.status)}), 200);
#   $b->reload;
#   my ($c) = grep { $_->{name} eq 'bloqr_session' } @{ $b->cookies };
#   ok($c && $c->{httpOnly});
#   $b->close;                      # or let it go out of scope
#
# API (every method dies with a clear message on failure or timeout):
#
#   new(%o)          start Chromium, open an about:blank page, attach to it
#                    and enable Page and Runtime. Options: timeout (s per
#                    operation, default 20), chromium (path; default
#                    $BLOQR_CHROMIUM, else the first of /usr/lib/chromium/
#                    chromium (Debian's real binary, skipping the wrapper
#                    script's /etc/chromium.d flags), /usr/bin/chromium,
#                    chromium-browser, google-chrome), args (arrayref of
#                    extra command-line flags).
#   goto($url)       Page.navigate, then wait for that navigation's load
#                    event. Dies on a network error (net::ERR_...).
#   reload           Page.reload, then wait for the load event.
#   eval($js)        Runtime.evaluate (awaitPromise, userGesture, replMode
#                    so that `await` works at the top level) of an
#                    expression or statements; the completion value, a
#                    promise awaited, is fetched by value and returned
#                    as Perl data (JSON booleans are JSON::PP
#                    booleans: 1 and 0 as strings; undefined and null are
#                    undef; NaN, Infinity, -0 and BigInts come back as their
#                    strings). Dies with the exception's text when it throws.
#   cookies(@urls)   all cookies of the browser (Storage.getCookies), HttpOnly
#                    ones included; with URLs only those sent to them
#                    (Network.getCookies). An arrayref of CDP Cookie hashes:
#                    name, value, domain, path, expires, httpOnly, secure,
#                    session, sameSite...
#   console          the page's console messages and uncaught exceptions so
#                    far, as lines "log: text", "error: text"...
#   close            Browser.close, wait for Chromium to exit (SIGKILL to its
#                    process group after 5 s) and remove its temporary
#                    directory. Also done by DESTROY and at END, so no
#                    Chromium outlives the test even when it dies.
#   send($method, \%params, $sessionId)
#                    one raw CDP command; returns its result. No session id
#                    talks to the browser, $b->session to the page.
#   wait_event($method, \&match, $timeout)
#                    the next event of that name (on any session) whose
#                    params satisfy match (default: any), as { method,
#                    params, sessionId }; events that arrived since the last
#                    goto/reload count.
#   pid, dir, log    Chromium's pid, its temporary directory and log file.
#
# JavaScript dialogs (alert, confirm, prompt) are accepted at once, so that a
# page cannot hang the test; their messages are in console() as "dialog: ...".
#
# Chromium runs in its own process group with HOME and the profile in a
# private temporary directory (kept and printed when BLOQR_KEEP is set);
# its stdout and stderr go to chromium.log there, whose last lines are part
# of every error message. If the test process is killed with SIGKILL,
# Chromium reads end-of-file on its fd 3 and quits by itself.

use strict;
use warnings;
use Fcntl qw(F_GETFD F_SETFD F_DUPFD FD_CLOEXEC);
use File::Path qw(remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my %LIVE;                # "$obj" => weak ref, closed by END
my $MAX_EVENTS = 2000;   # queued events kept (oldest dropped)

# Die of a signal only after END has stopped Chromium (same rule as
# BloqrTest; a handler someone else installed is left alone).
for my $sig (qw(INT TERM HUP)) {
	next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
	$SIG{$sig} = sub { $SIG{PIPE} = 'IGNORE'; exit 128 + 1 };
}

our @FLAGS = (                     # (our: a test may change them)
	'--headless=new',                  # the real browser, without a display
	'--no-sandbox',                    # needed when running as root
	'--disable-gpu',                   # no GPU process probing in containers
	'--no-first-run',                  # no first-run tasks or dialogs
	'--no-default-browser-check',
	'--disable-extensions',
	'--disable-background-networking', # no update/safe-browsing/etc. traffic
	'--disable-sync',
	'--disable-dev-shm-usage',         # /dev/shm is small in containers
	'--password-store=basic',          # no keyring over D-Bus
	'--remote-debugging-pipe',         # CDP on fds 3 (in) and 4 (out)
);

sub _find_chromium {
	return $ENV{BLOQR_CHROMIUM} if $ENV{BLOQR_CHROMIUM};
	for my $c ('/usr/lib/chromium/chromium', '/usr/bin/chromium') {
		return $c if -x $c;
	}
	for my $name (qw(chromium chromium-browser google-chrome)) {
		for my $d (split /:/, $ENV{PATH} // '') {
			return "$d/$name" if length $d && -x "$d/$name";
		}
	}
	return undef;
}

sub new {
	my ($class, %o) = @_;
	my $bin = $o{chromium} // _find_chromium()
	    // die "BloqrTest::Browser: no Chromium found (install chromium or set BLOQR_CHROMIUM)\n";
	-x $bin or die "BloqrTest::Browser: $bin is not executable\n";
	_sweep();
	my $dir = tempdir('bloqr-chromium-XXXXXX', TMPDIR => 1);
	my $log = "$dir/chromium.log";
	mkdir "$dir/profile" or die "mkdir $dir/profile: $!\n";
	_spew("$dir/owner", "$$\n");
	my $self = bless {
		timeout => $o{timeout} // 20, dir => $dir, log => $log, owner => $$,
		id => 0, buf => '', resp => {}, pending => {}, events => [], console => [],
	}, $class;

	# to_rd/to_wr: we write commands, Chromium reads them on fd 3;
	# from_rd/from_wr: Chromium writes on fd 4, we read.
	pipe(my $to_rd, my $to_wr) or die "pipe: $!\n";
	pipe(my $from_rd, my $from_wr) or die "pipe: $!\n";
	my $pid = fork // die "fork: $!\n";
	if ($pid == 0) {
		eval {
			setpgrp(0, 0);
			CORE::close $to_wr;
			CORE::close $from_rd;
			# Move our ends out of the way first: either may be any of
			# fds 0 to 4 now (even 0 when the test runs with stdin
			# closed), then set up 0 to 2 and put them onto 3 and 4
			# (dup2 clears close-on-exec; checked below anyway).
			my $r = fcntl($to_rd, F_DUPFD, 10) // die "F_DUPFD: $!\n";
			my $w = fcntl($from_wr, F_DUPFD, 10) // die "F_DUPFD: $!\n";
			CORE::close $to_rd;
			CORE::close $from_wr;
			open STDIN, '<', '/dev/null' or die "stdin: $!\n";
			open STDOUT, '>>', $log or die "$log: $!\n";
			open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
			POSIX::dup2($r, 3) // die "dup2: $!\n";
			POSIX::dup2($w, 4) // die "dup2: $!\n";
			POSIX::close($r);
			POSIX::close($w);
			open my $fd3, '<&=', 3 or die "fd 3: $!\n";
			open my $fd4, '>&=', 4 or die "fd 4: $!\n";
			for my $fh ($fd3, $fd4) {
				my $fl = fcntl($fh, F_GETFD, 0) // die "F_GETFD: $!\n";
				fcntl($fh, F_SETFD, $fl & ~FD_CLOEXEC) // die "F_SETFD: $!\n";
			}
			# Keep Chromium out of the real home (~/.pki, ~/.cache...).
			$ENV{HOME} = $dir;
			$ENV{XDG_CONFIG_HOME} = "$dir/.config";
			$ENV{XDG_CACHE_HOME} = "$dir/.cache";
			$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
			chdir $dir or die "chdir $dir: $!\n";
			my @cmd = ($bin, @FLAGS, "--user-data-dir=$dir/profile",
				@{ $o{args} || [] }, 'about:blank');
			exec { $cmd[0] } @cmd or die "exec $bin: $!\n";
		};
		print STDERR "BloqrTest::Browser: $@";
		POSIX::_exit(127);
	}
	CORE::close $to_rd;
	CORE::close $from_wr;
	$to_wr->autoflush(1);
	@$self{qw(pid rd wr bin)} = ($pid, $from_rd, $to_wr, $bin);
	weaken($LIVE{"$self"} = $self);

	my $ok = eval {
		my $t = $self->send('Target.createTarget', { url => 'about:blank' });
		$self->{target} = $t->{targetId};
		my $a = $self->send('Target.attachToTarget', { targetId => $t->{targetId}, flatten => JSON::PP::true });
		$self->{session} = $a->{sessionId};
		$self->send($_, {}, $self->{session}) for qw(Page.enable Runtime.enable);
		$self->send('Page.setLifecycleEventsEnabled', { enabled => JSON::PP::true }, $self->{session});
		$self->{frame} = $self->send('Page.getFrameTree', {}, $self->{session})->{frameTree}{frame}{id};
		1;
	};
	if (!$ok) {
		my $err = $@;
		$self->close;
		$err =~ s/^BloqrTest::Browser: //;
		$err =~ s/\s*\z/\n/;
		die "BloqrTest::Browser: could not start $bin: $err";
	}
	return $self;
}

sub _spew {
	my ($file, $text) = @_;
	open my $fh, '>', $file or die "$file: $!\n";
	print $fh $text;
	CORE::close $fh or die "$file: $!\n";
}

# Remove the directories of earlier tests that were killed too hard to
# clean up (SIGKILL: no END), i.e. whose owner process is gone.
sub _sweep {
	for my $d (glob(File::Spec->tmpdir . '/bloqr-chromium-*')) {
		open my $fh, '<', "$d/owner" or next;
		my ($pid) = (<$fh> // '') =~ /^(\d+)$/ or next;
		next if kill(0, $pid) || $!{EPERM};
		remove_tree($d);
	}
}

sub pid     { $_[0]{pid} }
sub dir     { $_[0]{dir} }
sub log     { $_[0]{log} }
sub session { $_[0]{session} }
sub console { @{ $_[0]{console} } }

# --- navigation and evaluation ---------------------------------------------

sub goto {
	my ($self, $url) = @_;
	my $deadline = time + $self->{timeout};
	@{ $self->{events} } = ();
	my $ok = eval {
		my $r = $self->send('Page.navigate', { url => $url }, $self->{session});
		die "BloqrTest::Browser: goto $url: $r->{errorText}\n" if $r->{errorText};
		# No loaderId: a same-document navigation (#fragment), no load.
		if (defined $r->{loaderId}) {
			my $frame = $r->{frameId} // $self->{frame};
			$self->wait_event('Page.lifecycleEvent', sub {
				$_[0]{name} eq 'load' && $_[0]{frameId} eq $frame
				    && $_[0]{loaderId} eq $r->{loaderId}
			}, $deadline - time, "load of $url", $self->{timeout});
		}
		1;
	};
	$self->_stop_loading($@) unless $ok;
	return $self;
}

# After a failed goto or reload: stop the page loading (so that later
# commands are not held back by a pending navigation), then die with $err.
sub _stop_loading {
	my ($self, $err) = @_;
	eval { $self->send('Page.stopLoading', {}, $self->{session}, timeout => 2) } if $self->{wr};
	die $err;
}

sub reload {
	my ($self) = @_;
	my $deadline = time + $self->{timeout};
	@{ $self->{events} } = ();
	eval {
		$self->send('Page.reload', {}, $self->{session});
		$self->wait_event('Page.loadEventFired', undef, $deadline - time, 'load after reload',
			$self->{timeout});
		1;
	} or $self->_stop_loading($@);
	return $self;
}

sub eval {
	my ($self, $js) = @_;
	my $s = $self->{session};
	# replMode allows a top-level await (and let declared again by a later
	# eval) but then leaves a resulting promise unawaited, so that is done
	# here; objects are then fetched by value.
	my $r = $self->send('Runtime.evaluate', {
		expression => $js, replMode => JSON::PP::true, awaitPromise => JSON::PP::true,
		userGesture => JSON::PP::true, objectGroup => 'bloqr-eval',
	}, $s);
	_js_died($r, $js);
	my $v = $r->{result};
	my $grouped = defined $v->{objectId};
	if (($v->{subtype} // '') eq 'promise') {
		$r = $self->send('Runtime.awaitPromise', {
			promiseObjectId => $v->{objectId}, returnByValue => JSON::PP::true }, $s);
		_js_died($r, $js);
		$v = $r->{result};
	} elsif (defined $v->{objectId}) {
		$v = $self->send('Runtime.callFunctionOn', {
			objectId => $v->{objectId}, functionDeclaration => 'function () { return this }',
			returnByValue => JSON::PP::true }, $s)->{result};
	}
	$self->send('Runtime.releaseObjectGroup', { objectGroup => 'bloqr-eval' }, $s) if $grouped;
	return $v->{value} if exists $v->{value};
	return $v->{unserializableValue} if exists $v->{unserializableValue};
	return undef;
}

sub _js_died {
	my ($r, $js) = @_;
	my $e = $r->{exceptionDetails} or return;
	my $text = $e->{exception}{description} // $e->{exception}{value} // $e->{text} // 'exception';
	$text = $JSON->encode($text) if ref $text;
	my $short = length $js > 200 ? substr($js, 0, 200) . '...' : $js;
	die "BloqrTest::Browser: eval failed: $text\n  in: $short\n";
}

sub cookies {
	my ($self, @urls) = @_;
	return $self->send('Network.getCookies', { urls => \@urls }, $self->{session})->{cookies} if @urls;
	return $self->send('Storage.getCookies', {})->{cookies};
}

# --- protocol --------------------------------------------------------------

# One command; returns its result, dies with the protocol error. Options:
# timeout (s).
sub send {
	my ($self, $method, $params, $session, %o) = @_;
	my $secs = $o{timeout} // $self->{timeout};
	my $deadline = time + $secs;
	my $id = $self->_post($method, $params, $session, $deadline);
	$self->{pending}{$id} = 1;
	my $ok = eval {
		$self->_read($deadline, "answer to $method", $secs) until exists $self->{resp}{$id};
		1;
	};
	delete $self->{pending}{$id};
	die $@ unless $ok;
	my $r = delete $self->{resp}{$id};
	$self->{hung} = 0;
	if (my $e = $r->{error}) {
		my $msg = $e->{message} // 'error';
		$msg .= " ($e->{data})" if defined $e->{data};
		die "BloqrTest::Browser: $method: $msg\n";
	}
	return $r->{result} // {};
}

sub wait_event {
	my ($self, $method, $match, $timeout, $what, $secs) = @_;
	my $deadline = time + ($timeout // $self->{timeout});
	$what //= "event $method";
	$secs //= $timeout // $self->{timeout};
	my $q = $self->{events};
	my $i = 0;
	while (1) {
		for (; $i < @$q; $i++) {
			my $ev = $q->[$i];
			next unless $ev->{method} eq $method;
			next if $match && !$match->($ev->{params} || {}, $ev);
			splice @$q, $i, 1;
			return $ev;
		}
		my $n = @$q;
		$self->_read($deadline, $what, $secs);
		# _read may have dropped old events: start over then.
		$i = 0 if @$q < $n;
	}
}

sub _post {
	my ($self, $method, $params, $session, $deadline) = @_;
	$self->_fail("not running (closed)") unless $self->{wr};
	my $id = ++$self->{id};
	my %m = (id => $id, method => $method, params => $params || {});
	$m{sessionId} = $session if defined $session;
	my $data = $JSON->encode(\%m) . "\0";
	local $SIG{PIPE} = 'IGNORE';
	my $sel = IO::Select->new($self->{wr});
	while (length $data) {
		my $left = $deadline - time;
		$self->_fail("cannot send $method: Chromium does not read (timeout)") if $left <= 0;
		next unless $sel->can_write($left);
		my $n = syswrite($self->{wr}, $data);
		if (!defined $n) {
			next if $!{EINTR} || $!{EAGAIN};
			$self->_fail("cannot send $method: $!");
		}
		substr($data, 0, $n, '');
	}
	return $id;
}

# Read what is there (waiting until $deadline for $what, e.g. "answer to
# Page.navigate", after $secs s in all) and dispatch whole messages.
sub _read {
	my ($self, $deadline, $what, $secs) = @_;
	my $left = $deadline - time;
	if ($left <= 0) {
		$self->{hung} = 1;    # until it answers again
		$self->_fail(sprintf 'no %s within %.3g s', $what, $secs // $self->{timeout});
	}
	return unless IO::Select->new($self->{rd})->can_read($left);
	my $n = sysread($self->{rd}, my $chunk, 1 << 16);
	if (!defined $n) {
		return if $!{EINTR} || $!{EAGAIN};
		$self->_fail("reading from Chromium: $!");
	}
	if ($n == 0) {
		my ($w, $t, $st) = (0, time + 1, '');
		sleep 0.01 while ($w = waitpid($self->{pid}, WNOHANG)) == 0 && time < $t;
		if ($w == $self->{pid}) {
			$self->{reaped} = 1;
			$st = $? & 127 ? ' (killed by signal ' . ($? & 127) . ')' : ' (exit status ' . ($? >> 8) . ')';
		}
		$self->_fail("Chromium closed the pipe while waiting for $what; it exited$st");
	}
	$self->{buf} .= $chunk;
	while ((my $i = index $self->{buf}, "\0") >= 0) {
		my $raw = substr $self->{buf}, 0, $i + 1, '';
		chop $raw;
		my $m = eval { $JSON->decode($raw) }
		    // $self->_fail("bad message from Chromium: " . substr($raw, 0, 200));
		if (defined $m->{id}) {
			$self->{resp}{ $m->{id} } = $m if $self->{pending}{ $m->{id} };
			next;
		}
		$self->_event($m);
	}
	return;
}

sub _event {
	my ($self, $m) = @_;
	my $meth = $m->{method} // return;
	my $p = $m->{params} || {};
	my $ours = defined $m->{sessionId} && defined $self->{session} && $m->{sessionId} eq $self->{session};
	if ($ours && $meth eq 'Page.javascriptDialogOpening') {
		$self->_console("dialog: $p->{type}: $p->{message}");
		$self->_post('Page.handleJavaScriptDialog', { accept => JSON::PP::true }, $self->{session},
			time + $self->{timeout});
	} elsif ($ours && $meth eq 'Runtime.consoleAPICalled') {
		my @a = map { exists $_->{value} ? (ref $_->{value} ? $JSON->encode($_->{value}) : $_->{value} // 'null')
		    : $_->{description} // $_->{type} } @{ $p->{args} || [] };
		$self->_console("$p->{type}: @a");
	} elsif ($ours && $meth eq 'Runtime.exceptionThrown') {
		my $e = $p->{exceptionDetails} || {};
		$self->_console('exception: ' . ($e->{exception}{description} // $e->{text} // '?'));
	} elsif ($ours && $meth eq 'Inspector.targetCrashed') {
		$self->_fail("the page crashed");
	} elsif ($meth eq 'Target.detachedFromTarget' && defined $self->{session}
	    && ($p->{sessionId} // '') eq $self->{session}) {
		$self->_fail("the page went away (detached from its target)");
	}
	my $q = $self->{events};
	push @$q, $m;
	splice @$q, 0, @$q - $MAX_EVENTS if @$q > $MAX_EVENTS;
}

sub _console {
	my ($self, $line) = @_;
	my $c = $self->{console};
	push @$c, $line;
	shift @$c if @$c > 1000;
}

sub _fail {
	my ($self, $msg) = @_;
	die "BloqrTest::Browser: $msg\n" . _tail($self->{log}, 20);
}

sub _tail {
	my ($file, $n) = @_;
	open my $fh, '<', $file or return '';
	my @l = <$fh>;
	# D-Bus is absent in containers: its complaints are only noise here.
	@l = grep { /\S/ && !m{:ERROR:dbus/} } @l;
	return '' unless @l;
	splice @l, 0, @l - $n if @l > $n;
	return "---- last lines of $file:\n" . join('', map { "  $_" } @l);
}

# --- shutdown --------------------------------------------------------------

sub close {
	my ($self) = @_;
	return if $self->{closed} || $$ != ($self->{owner} // 0);
	$self->{closed} = 1;
	delete $LIVE{"$self"};
	my $pid = $self->{pid};
	if ($pid && !$self->{reaped}) {
		# Ask politely (unless it stopped answering), then close the pipe
		# (Chromium quits on EOF too), then SIGKILL after 5 s.
		eval { $self->send('Browser.close', {}, undef, timeout => 2) }
		    if $self->{wr} && !$self->{hung};
		CORE::close $self->{wr} if $self->{wr};
		CORE::close $self->{rd} if $self->{rd};
		my $deadline = time + ($self->{hung} ? 0 : 5);
		while (waitpid($pid, WNOHANG) == 0) {
			if (time > $deadline) {
				kill 'KILL', -$pid, $pid;
				waitpid($pid, 0);
				last;
			}
			sleep 0.02;
		}
	}
	if ($pid) {
		# The helpers (zygote, GPU, renderers) would take a second or two
		# to notice; the browser has saved the profile, so kill them now
		# and wait until they are gone before removing the directory.
		kill 'KILL', -$pid;
		my $deadline = time + 2;
		sleep 0.01 while _group_alive($pid) && time < $deadline;
	}
	delete @$self{qw(wr rd)};
	if ($self->{dir} && -d $self->{dir}) {
		if ($ENV{BLOQR_KEEP}) {
			unlink "$self->{dir}/owner";
			print STDERR "BloqrTest::Browser: kept $self->{dir}\n";
		} else {
			remove_tree($self->{dir});
		}
	}
	return;
}

# Whether process group $pgid has a member that is not a zombie (they stay
# until init reaps them, which in some containers takes a while).
sub _group_alive {
	my ($pgid) = @_;
	opendir my $dh, '/proc' or return kill(0, -$pgid);
	for my $p (grep { /^\d+$/ } readdir $dh) {
		open my $fh, '<', "/proc/$p/stat" or next;
		my $st = <$fh> // next;
		my ($state, undef, $pgrp) = split ' ', substr($st, rindex($st, ')') + 2);
		return 1 if defined $pgrp && $pgrp == $pgid && $state ne 'Z' && $state ne 'X';
	}
	return 0;
}

sub DESTROY {
	my ($self) = @_;
	local ($@, $!, $?);
	eval { $self->close; 1 } or print STDERR "BloqrTest::Browser: close: $@";
}

END {
	my $status = $?;
	for my $b (grep { defined } values %LIVE) {
		eval { $b->close; 1 } or print STDERR "BloqrTest::Browser: close: $@";
	}
	$? = $status;
}

1;
