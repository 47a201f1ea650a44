package BloqrTest::FCGI;

# A raw FastCGI client for the tests that must speak to the pool directly:
# forged parameters (REMOTE_ADDR), bodies sent slowly, connections left
# half-sent. Core Perl modules only.
#
#   my $c = BloqrTest::FCGI->connect($pool->addr);
#   $c->begin(1);                                   # request id 1, no keep-conn
#   $c->params(1, REQUEST_METHOD => 'GET', REQUEST_URI => '/api');
#   $c->stdin(1, '');                               # end of the body
#   my $r = $c->response(5);                        # { status, headers, content, json }
#
# fcgi_request($addr, \%params, $body, timeout => 5) does all of that.

use strict;
use warnings;
use Exporter qw(import);
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use Time::HiRes qw(time);

our @EXPORT = qw(fcgi_request fcgi_params);

sub connect {
	my ($class, $addr, %o) = @_;
	my $s = $addr =~ m{^unix:(.*)$}
	    ? IO::Socket::UNIX->new(Peer => $1, Type => SOCK_STREAM)
	    : IO::Socket::INET->new(PeerAddr => $addr, Timeout => $o{timeout} // 5);
	die "connect $addr: $!\n" unless $s;
	$s->autoflush(1);
	return bless { s => $s }, $class;
}

sub sock { $_[0]{s} }

sub _rec {
	my ($type, $id, $body) = @_;
	my $pad = (8 - length($body) % 8) % 8;
	return pack('CCnnCC', 1, $type, $id, length $body, $pad, 0) . $body . ("\0" x $pad);
}

sub _len { my $n = length $_[0]; $n < 128 ? chr($n) : pack('N', $n | 0x80000000) }

# The name-value pairs of a PARAMS record's content.
sub fcgi_params {
	my (%p) = @_;
	return join '', map { _len($_) . _len($p{$_}) . $_ . $p{$_} } sort keys %p;
}

sub send_raw { my ($c, $bytes) = @_; syswrite($c->{s}, $bytes) == length $bytes }

sub begin {
	my ($c, $id, $keep) = @_;
	$c->send_raw(_rec(1, $id, pack('nCx5', 1, $keep ? 1 : 0)));
}

# PARAMS record(s) then the empty PARAMS record.
sub params {
	my ($c, $id, %p) = @_;
	$c->send_raw(_rec(4, $id, fcgi_params(%p)) . _rec(4, $id, ''));
}

# STDIN record(s) of at most 65535 bytes each ('' ends the body).
sub stdin {
	my ($c, $id, $bytes) = @_;
	return $c->send_raw(_rec(5, $id, '')) unless length $bytes;
	for my $piece (unpack '(a65535)*', $bytes) {
		$c->send_raw(_rec(5, $id, $piece)) or return 0;
	}
	return 1;
}

# Read records until END_REQUEST (or EOF, or timeout): the STDOUT bytes
# parsed as a CGI response { status, headers, content, json, ended }.
sub response {
	my ($c, $timeout) = @_;
	my ($buf, $out, $ended) = ('', '', 0);
	my $deadline = time + ($timeout // 5);
	while (!$ended && time < $deadline) {
		my $rin = '';
		vec($rin, fileno($c->{s}), 1) = 1;
		last unless select(my $rout = $rin, undef, undef, $deadline - time);
		my $n = sysread($c->{s}, my $chunk, 65536);
		last unless $n;
		$buf .= $chunk;
		while (length $buf >= 8) {
			my ($v, $type, $id, $len, $pad) = unpack('CCnnC', $buf);
			last if length $buf < 8 + $len + $pad;
			my $content = substr($buf, 8, $len);
			substr($buf, 0, 8 + $len + $pad) = '';
			$out .= $content if $type == 6;
			$ended = 1 if $type == 3;
		}
	}
	my %r = (ended => $ended, headers => {}, raw => $out);
	my ($head, $content) = split /\r?\n\r?\n/, $out, 2;
	for (split /\r?\n/, $head // '') {
		my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
		$r{headers}{ lc $k } = $v;
	}
	($r{status}) = ($r{headers}{status} // ($out eq '' ? '0' : '200')) =~ /^(\d{3})/;
	$r{status} //= 0;
	$r{content} = $content // '';
	$r{json} = eval { JSON::PP->new->utf8->allow_nonref->decode($r{content}) }
	    if ($r{headers}{'content-type'} // '') =~ m{^application/json};
	return \%r;
}

# Records read until one of type $until arrives, EOF or $timeout s:
# ([type, id, content]...), and whether EOF was seen.
sub records {
	my ($c, $until, $timeout) = @_;
	my ($buf, @recs, $eof) = ('');
	my $deadline = time + ($timeout // 5);
	while (time < $deadline) {
		my $rin = '';
		vec($rin, fileno($c->{s}), 1) = 1;
		last unless select(my $rout = $rin, undef, undef, $deadline - time);
		my $n = sysread($c->{s}, my $chunk, 65536);
		if (!$n) { $eof = 1; last }
		$buf .= $chunk;
		while (length $buf >= 8) {
			my ($v, $type, $id, $len, $pad) = unpack('CCnnC', $buf);
			last if length $buf < 8 + $len + $pad;
			push @recs, [ $type, $id, substr($buf, 8, $len) ];
			substr($buf, 0, 8 + $len + $pad) = '';
		}
		last if grep { $_->[0] == $until } @recs;
	}
	return (\@recs, $eof);
}

# Send any record.
sub record { my ($c, $type, $id, $body) = @_; $c->send_raw(_rec($type, $id, $body)) }

# One whole request on a new connection; %params are added to a GET of /.
sub fcgi_request {
	my ($addr, $params, $body, %o) = @_;
	my $c = __PACKAGE__->connect($addr);
	my %p = (REQUEST_METHOD => 'GET', REQUEST_URI => '/', SCRIPT_NAME => '',
		SERVER_PROTOCOL => 'HTTP/1.1', REMOTE_ADDR => '127.0.0.1', %$params);
	$p{CONTENT_LENGTH} = length $body if defined $body && length $body;
	$c->begin(1);
	$c->params(1, %p);
	$c->stdin(1, $body) if defined $body && length $body;
	$c->stdin(1, '');
	my $r = $c->response($o{timeout} // 5);
	close $c->{s};
	return $r;
}

1;
