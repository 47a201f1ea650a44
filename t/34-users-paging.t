#!/usr/bin/perl
# Paging the admin users list (issue 12): the offset pages (CONTRACT §4)
# and the keyset pages (after=<the previous page's last id>) give the same
# users in the same order, newest first (created_at, then id, both
# descending; ties on created_at included), with and without filters;
# the index that serves both exists. One PostgreSQL, the pool behind nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;

my $S = stack();
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);
mkuser('admin@t34.test', role => 'admin') // BAIL_OUT('no admin');
my $ADMIN = mktoken('admin@t34.test') // BAIL_OUT('no admin token');
api_setup(bearer => $ADMIN);

# 300 users; every three share a created_at, so only the id orders them.
sql(q{INSERT INTO users (email, name, tier, created_at)
      SELECT 'u' || g || '@t34.test', 'User ' || g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END,
             timestamptz '2026-01-01' + (g / 3) * interval '1 minute'
      FROM generate_series(1, 300) g});

sub ids_of { map { $_->{id} } @{ $_[0]{json}{users} || [] } }

sub by_offset {
	my ($q) = @_;
	my @ids;
	for (my $off = 0; ; $off += 100) {
		my $r = req(GET => "/api/admin/users?limit=100&offset=$off$q");
		is($r->{status}, 200, "offset $off$q") or return;
		my @page = ids_of($r);
		last unless @page;
		push @ids, @page;
	}
	return @ids;
}

sub by_keyset {
	my ($q) = @_;
	my (@ids, $after);
	for my $n (1 .. 20) {
		my $r = req(GET => '/api/admin/users?limit=100' . (defined $after ? "&after=$after" : '') . $q);
		is($r->{status}, 200, "keyset page $n$q") or return;
		my @page = ids_of($r);
		last unless @page;
		push @ids, @page;
		$after = $page[-1];
	}
	return @ids;
}

for my $q ('', '&tier=pro', '&search=user%201') {
	my $where = $q eq '&tier=pro' ? "WHERE tier = 'pro'"
	    : $q eq '&search=user%201' ? "WHERE strpos(lower(coalesce(name, '')), 'user 1') > 0"
	    : '';
	my @want = split /\n/, sql("SELECT id FROM users $where ORDER BY created_at DESC, id DESC");
	my @off = by_offset($q);
	my @key = by_keyset($q);
	is(scalar @off, scalar @want, "offset pages$q: every user once (" . scalar(@want) . ')');
	is_deeply(\@off, \@want, "offset pages$q: newest first, ties by id");
	is_deeply(\@key, \@want, "keyset pages$q: the same users in the same order");
}

# after combines with offset: skip more rows after the cursor.
my @all = split /\n/, sql('SELECT id FROM users ORDER BY created_at DESC, id DESC');
my $r = req(GET => "/api/admin/users?limit=5&offset=10&after=$all[99]");
is_deeply([ ids_of($r) ], [ @all[110 .. 114] ], 'after and offset together');
is($r->{json}{total}, scalar @all, '... total counts every match, as with offset');

# A cursor that is not a user id, or names no user, is refused.
$r = req(GET => '/api/admin/users?after=nope');
json_error_ok($r, 400, qr/'after' must be a user id/, 'after: not an id');
$r = req(GET => '/api/admin/users?after=00000000-0000-0000-0000-000000000000');
json_error_ok($r, 400, qr/'after' names no user/, 'after: no such user');

# The index the list reads, in the list's order.
like(sql(q{SELECT indexdef FROM pg_indexes WHERE indexname = 'users_created_at_id_idx'}),
    qr/\(created_at DESC, id DESC\)/, 'users_created_at_id_idx orders as the list does');

done_testing();
