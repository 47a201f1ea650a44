package BloqrTest::Api;

# Client helpers for the tests that talk to the HTTP API: requests with a
# bearer token, session cookie or chosen source address, psql queries,
# users and tokens made with the CLI, and checks of the contract's shapes.
# Core Perl modules only.
#
# Typical use:
#
#   use Test::More;
#   use BloqrTest;
#   use BloqrTest::Api;
#   my $S = stack();
#   api_setup(url => $S->{url}, pg => $S->{pg}, conf => $S->{conf});
#   mkuser('admin@example.test', role => 'admin');
#   api_setup(bearer => mktoken('admin@example.test'));   # sent by default
#   my $r = req(GET => '/api/admin/users');
#   is(sql('SELECT count(*) FROM users'), 1);

use strict;
use warnings;
use Exporter qw(import);
use JSON::PP;
use Test::More ();
use BloqrTest qw(http admin);

our @EXPORT = qw(
	api_setup req sql pct_encode fresh_addr
	mkuser mktoken signin set_cookies session_cookie
	user_ok all_keys retry_after_ok
	x_cache show listener_connected cache_ready
);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

# What req, sql, mkuser and mktoken use unless told otherwise.
my %CFG = (timeout => 15);

# Set defaults; only the keys given change: url (the base URL of req),
# pg (a BloqrTest::Pg for sql), conf (bloqr.conf for mkuser and mktoken),
# bearer (the token req sends when its caller names none), from (the
# source address of req), timeout (s, default 15).
sub api_setup {
	my (%o) = @_;
	for my $k (sort keys %o) {
		die "api_setup: unknown option $k\n" unless $k =~ /^(?:url|pg|conf|bearer|from|timeout)$/;
		$CFG{$k} = $o{$k};
	}
	return;
}

# req([BASE,] METHOD, PATH, %options): one request to BASE . PATH (BASE
# defaults to api_setup's url). Options: json (a body to encode), body
# (raw bytes; Content-Type application/json unless the headers give one),
# bearer (default api_setup's bearer; undef sends none), cookie (the
# bloqr_session value), csrf (send X-Requested-With: bloqr), headers,
# from (source address, e.g. 127.0.0.7), base, timeout.
# Returns http()'s { status, headers, content, json }.
sub req {
	my $base = @_ && defined $_[0] && $_[0] =~ m{^https?://} ? shift : undef;
	my ($m, $path, %o) = @_;
	$base //= $o{base} // $CFG{url} // die "req: no base URL (api_setup(url => ...))\n";
	my %h = %{ $o{headers} || {} };
	my $bearer = exists $o{bearer} ? $o{bearer} : $CFG{bearer};
	$h{Authorization} = "Bearer $bearer" if defined $bearer;
	$h{Cookie} = "bloqr_session=$o{cookie}" if defined $o{cookie};
	$h{'X-Requested-With'} = 'bloqr' if $o{csrf};
	my $body;
	if (exists $o{json}) {
		$body = $JSON->encode($o{json});
		$h{'Content-Type'} = 'application/json';
	} elsif (defined $o{body}) {
		$body = $o{body};
		$h{'Content-Type'} //= 'application/json';
	}
	return http($m, $base . $path, headers => \%h, body => $body,
		timeout => $o{timeout} // $CFG{timeout},
		from => exists $o{from} ? $o{from} : $CFG{from});
}

# Run SQL with psql as superuser bloqr on api_setup's pg; its output
# without the last line end. Dies on an error.
sub sql {
	my $pg = $CFG{pg} // die "sql: no PostgreSQL (api_setup(pg => ...))\n";
	my $o = $pg->psql($_[0]);
	chomp $o;
	return $o;
}

# Percent-encode a string (its UTF-8 bytes) for a path or a query.
sub pct_encode {
	my ($s) = @_;
	utf8::encode($s) if utf8::is_utf8($s);
	$s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
	return $s;
}

# A loopback source address no earlier call returned (127.0.0.10 up), so
# that the per-address sign-in limit of one test does not spill into the
# next.
my $NEXT_ADDR = 10;
sub fresh_addr { die "out of loopback addresses\n" if $NEXT_ADDR > 254; '127.0.0.' . $NEXT_ADDR++ }

# --- users and tokens (bloqr-admin) ---------------------------------------

# bloqr-admin user create; options name, role, tier, password (given on
# stdin), conf (default api_setup's). Tests that it exits 0 and prints
# only the new id; returns the id (undef on failure, which fails a test).
sub mkuser {
	my ($email, %o) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @a = ('user', 'create', '--email', $email);
	push @a, '--name', $o{name} if defined $o{name};
	push @a, '--role', $o{role} if defined $o{role};
	push @a, '--tier', $o{tier} if defined $o{tier};
	push @a, '--password-stdin' if defined $o{password};
	my $r = admin($o{conf} // $CFG{conf}, \@a, defined $o{password} ? (stdin => "$o{password}\n") : ());
	my $ok = Test::More::is($r->{rc}, 0, "user create $email");
	Test::More::diag("stderr: $r->{err}") unless $ok;
	return undef unless $ok;
	my ($id) = $r->{out} =~ /^([0-9a-f-]{36})\n\z/;
	Test::More::ok(defined $id, "user create $email prints only the new id")
	    or Test::More::diag("stdout: '$r->{out}'");
	return $id;
}

# bloqr-admin token create --email $email @more with api_setup's conf.
# Tests that it exits 0 and prints only the token; returns the token (undef
# on failure, which fails a test).
sub mktoken {
	my ($email, @more) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = admin($CFG{conf}, ['token', 'create', '--email', $email, @more]);
	my $ok = Test::More::is($r->{rc}, 0, join(" ", "token create", $email, @more));
	Test::More::diag("stderr: $r->{err}") unless $ok;
	return undef unless $ok;
	my ($t) = $r->{out} =~ /^(\S+)\n\z/;
	Test::More::ok(defined $t, 'token create prints only the token') or Test::More::diag("stdout: '$r->{out}'");
	return $t;
}

# --- sessions --------------------------------------------------------------

# POST /api/auth/sign-in with an email and a password, with the CSRF
# guard's header (csrf => 0 leaves it out); options as req.
sub signin {
	my ($email, $pw, %o) = @_;
	return req(POST => '/api/auth/sign-in', json => { email => $email, password => $pw }, csrf => 1, %o);
}

# The Set-Cookie lines of a response.
sub set_cookies {
	my ($r) = @_;
	my $h = $r->{headers}{'set-cookie'};
	return () unless defined $h;
	return ref $h ? @$h : ($h);
}

# The bloqr_session Set-Cookie line of a response: (value, {attr => value}).
sub session_cookie {
	my ($r) = @_;
	for my $line (set_cookies($r)) {
		my ($first, @attrs) = split /\s*;\s*/, $line;
		next unless $first =~ /^\s*bloqr_session=(.*)$/;
		my $val = $1;
		my %a;
		for (@attrs) {
			my ($k, $v) = split /=/, $_, 2;
			$a{lc $k} = $v // '';
		}
		return ($val, \%a);
	}
	return;
}

# --- the contract's shapes -------------------------------------------------

my @USER_KEYS = sort qw(id email name emailVerified image tier role banned banReason banExpires
	createdAt updatedAt);
my $ISO = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z$/;
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

# A user object: exactly the contract's keys, well-typed, matching %want
# (booleans compared as 'true'/'false', undef as null).
sub user_ok {
	my ($u, $name, %want) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @why;
	if (ref $u ne 'HASH') {
		return Test::More::ok(0, "$name: user object") || Test::More::diag('not an object: ' . $JSON->encode($u));
	}
	my @keys = sort keys %$u;
	push @why, "keys are [@keys]" unless "@keys" eq "@USER_KEYS";
	push @why, 'id is not a uuid' unless ($u->{id} // '') =~ $UUID;
	for my $b (qw(emailVerified banned)) {
		push @why, "$b is not a JSON boolean" unless JSON::PP::is_bool($u->{$b});
	}
	for my $t (qw(createdAt updatedAt)) {
		push @why, "$t is not an ISO time" unless ($u->{$t} // '') =~ $ISO;
	}
	push @why, 'banExpires is neither null nor an ISO time'
	    if defined $u->{banExpires} && $u->{banExpires} !~ $ISO;
	for my $k (sort keys %want) {
		my $got = $u->{$k};
		my $exp = $want{$k};
		$got = $got ? 'true' : 'false' if JSON::PP::is_bool($got);
		push @why, "$k is " . ($got // 'null') . ', expected ' . ($exp // 'null')
		    unless (defined $got && defined $exp && $got eq $exp) || (!defined $got && !defined $exp);
	}
	my $ok = Test::More::ok(!@why, "$name: user object");
	Test::More::diag(join("\n", @why) . "\n" . $JSON->encode($u)) unless $ok;
	return $ok;
}

# Keys anywhere in a JSON value.
sub all_keys {
	my ($v) = @_;
	return map { ($_, all_keys($v->{$_})) } keys %$v if ref $v eq 'HASH';
	return map { all_keys($_) } @$v if ref $v eq 'ARRAY';
	return ();
}

# Test that a response has a Retry-After of 1 s to 15 minutes.
sub retry_after_ok {
	my ($r, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ra = $r->{headers}{'retry-after'};
	Test::More::ok(defined $ra && $ra =~ /^[1-9]\d*$/ && $ra <= 15 * 60,
		"$name: Retry-After is a positive number of seconds")
	    or Test::More::diag('Retry-After: ' . ($ra // 'missing'));
}

# --- the cache ---------------------------------------------------------------

# A response's X-Cache header, '(none)' without one.
sub x_cache { $_[0]{headers}{'x-cache'} // '(none)' }

# A response in one line, for diag: status, X-Cache, Retry-After, body.
sub show {
	my ($r) = @_;
	my $ra = $r->{headers}{'retry-after'};
	return "status $r->{status}, X-Cache " . x_cache($r) . (defined $ra ? ", Retry-After $ra" : '')
	    . ': ' . substr($r->{content}, 0, 400);
}

# Whether the cache syncer of the host at $base (default api_setup's url)
# says its listener is connected (GET /api/admin/cache/status with the
# default bearer).
sub listener_connected {
	my ($base) = @_;
	my $r = req(GET => '/api/admin/cache/status', defined $base ? (base => $base) : ());
	return $r->{status} == 200 && ref $r->{json} eq 'HASH' && $r->{json}{listener}{connected};
}

# A host answers HIT only once its syncer listens and vouches for the
# cache file; a test that expects HIT from a host it just started waits
# for that first (10 s), as one assertion naming the host.
sub cache_ready {
	my ($base, $name) = @_;
	return Test::More::ok(BloqrTest::within(10, sub { listener_connected($base) }),
		($name // 'the host') . ': its cache syncer is listening');
}

1;
