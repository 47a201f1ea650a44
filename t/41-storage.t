#!/usr/bin/perl
# Storage data endpoints (CONTRACT §4 "Storage data", §2, §5): storage
# entries (data returned exactly as given, keys that need encoding,
# expiry, tags), the filter cache, compilation records; X-Cache on reads,
# read-your-writes, and changes from another node or from psql reaching a
# node's cache within 2 s. Node A: the usual stack (PostgreSQL, pool with
# 2 workers, nginx); node B: a second pool and nginx with its own cache
# file on the same PostgreSQL, started part way through.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use Encode qw(encode decode);
use Time::HiRes qw(time sleep);

my $S = stack();
my $PG = $S->{pg};
api_setup(url => $S->{url}, pg => $PG, conf => $S->{conf});
my $URL_B;    # node B, once started

# ------------------------------------------------------------ helpers --

sub sql_quote { my ($s) = @_; $s =~ s/'/''/g; "'$s'" }

# The raw text of "data" in a storage entry answer: the answer's objects
# are {"key":…,"data":<raw>,"createdAt":…}.
sub raw_data {
	my ($content) = @_;
	return $content =~ /"data":(.*),"createdAt":"/s ? $1 : undef;
}

sub ok_entry {
	my ($r, $code, $name) = @_;
	my $ok = is($r->{status}, $code, "$name: $code");
	$ok &&= ok(ref $r->{json} eq 'HASH' && $r->{json}{success} && ref $r->{json}{entry} eq 'HASH',
		"$name: {success, entry}");
	diag("body: " . substr($r->{content}, 0, 500)) unless $ok;
	return $ok;
}

my $ISO = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

# ------------------------------------------------------- credentials --

mkuser('a@x.io', role => 'admin');
mkuser('u@x.io', role => 'user');
my $ADMIN = mktoken('a@x.io') // BAIL_OUT('no admin token');
my $USER = mktoken('u@x.io');
api_setup(bearer => $ADMIN);    # req sends it unless told otherwise
cache_ready();

subtest 'authentication and authorization' => sub {
	for my $c ([ GET => '/api/storage/k' ], [ PUT => '/api/storage/k', '{"data":1}' ],
	    [ DELETE => '/api/storage/k' ], [ GET => '/api/filter-cache?source=x' ],
	    [ PUT => '/api/filter-cache', '{"source":"x","content":"","hash":"h"}' ],
	    [ POST => '/api/compilations', '{"configName":"c","sourceCount":1,"ruleCount":1,"duration":1}' ],
	    [ GET => '/api/compilations' ]) {
		my ($m, $p, $b) = @$c;
		json_error_ok(req($m, $p, bearer => undef, body => $b), 401, undef, "$m $p without a token");
		json_error_ok(req($m, $p, bearer => $USER, body => $b), 403, undef, "$m $p as role user");
	}
	is(sql("SELECT count(*) FROM storage_entries"), '0', 'nothing was written');
	is(sql("SELECT count(*) FROM compilation_metadata"), '0', 'no compilation was recorded');
};

# --------------------------------------------------------- storage --

subtest 'PUT creates (201) then replaces (200); data comes back as given' => sub {
	my $raw = '{"b":1.50,"a":[1,2],"e":"\u00e9\n","n":1E+2,"z":-0}';
	my $r = req(PUT => '/api/storage/k1', body => qq({"data":$raw,"tags":["x","y"]}));
	ok_entry($r, 201, 'PUT new key');
	my $e = $r->{json}{entry};
	is($e->{key}, 'k1', 'entry key');
	is(raw_data($r->{content}), $raw, 'PUT answer: data exactly as given');
	is_deeply($e->{tags}, [ 'x', 'y' ], 'tags');
	is($e->{expiresAt}, undef, 'expiresAt null');
	like($e->{createdAt} // '', $ISO, 'createdAt is ISO-8601 UTC with ms');
	is($e->{updatedAt}, $e->{createdAt}, 'updatedAt = createdAt on create');
	is(sql("SELECT data::text FROM storage_entries WHERE key = 'k1'"), $raw, 'PostgreSQL holds the text as given');

	$r = req(GET => '/api/storage/k1');
	ok_entry($r, 200, 'GET');
	is(raw_data($r->{content}), $raw, 'GET: data exactly as given');
	is_deeply($r->{json}{entry}, $e, 'GET answers the entry PUT answered');

	sleep 0.01;
	my $raw2 = ' [ 1 , {"x" : true} , null ] ';
	$r = req(PUT => '/api/storage/k1', body => qq({ "tags" : null, "data" :$raw2}));
	ok_entry($r, 200, 'PUT existing key');
	(my $trimmed = $raw2) =~ s/^\s+|\s+$//g;
	is(raw_data($r->{content}), $trimmed, 'replaced data, inner spacing kept');
	is($r->{json}{entry}{createdAt}, $e->{createdAt}, 'createdAt kept');
	ok(($r->{json}{entry}{updatedAt} // '') gt $e->{createdAt}, 'updatedAt moved on');
	is($r->{json}{entry}{tags}, undef, 'tags null replaces the old tags');

	# read-your-writes, at once, through the same node
	$r = req(GET => '/api/storage/k1');
	is(raw_data($r->{content}), $trimmed, 'GET right after PUT sees the new data');

	for my $v ('null', '"just a string"', '0.10', 'false', '{}', '[]', '{"deep":{"x":[[[]]]}}') {
		$r = req(PUT => '/api/storage/vals', body => qq({"data":$v}));
		ok($r->{status} == 200 || $r->{status} == 201, "PUT data $v");
		$r = req(GET => '/api/storage/vals');
		is(raw_data($r->{content}), $v, "GET data $v as given");
	}
	my $big = '[' . join(',', map { qq({"i":$_,"s":") . ('x' x 90) . '"}' } 1 .. 9000) . ']';
	$r = req(PUT => '/api/storage/big', body => qq({"data":$big}));
	is($r->{status}, 201, 'PUT data of ' . length($big) . ' bytes');
	is(raw_data(req(GET => '/api/storage/big')->{content}), $big, 'GET it back as given');
	is(raw_data(req(GET => '/api/storage/big')->{content}), $big, 'and again (cached)');
	# the last of duplicate members counts, as in the parsed body
	$r = req(PUT => '/api/storage/dup', body => '{"data":1,"data":2.0}');
	is(raw_data($r->{content}), '2.0', 'duplicate data: the last one');
	$r = req(PUT => '/api/storage/esc', body => '{"\u0064ata":{"k":1}}');
	is($r->{status}, 201, 'escaped member name "\u0064ata" is data');
	is(raw_data($r->{content}), '{"k":1}', 'its value as given');
};

subtest 'keys that need encoding round-trip' => sub {
	my @keys = ('a/b', 'q?x=1&y', 'with space', "\xc3\xa9t\xc3\xa9/\xe2\x9c\x93", 'pct%41', 'semi;colon',
		'hash#frag', 'plus+sign', 'dots/../x', '"quoted"\\back');
	for my $k (@keys) {
		my $p = '/api/storage/' . pct_encode($k);
		my $r = req(PUT => $p, json => { data => { k => decode('UTF-8', $k) } });
		is($r->{status}, 201, "PUT $p") or diag $r->{content};
		$r = req(GET => $p);
		is($r->{status}, 200, "GET $p");
		is(encode('UTF-8', $r->{json}{entry}{key} // ''), $k, "key of $p is the decoded text");
		is(sql("SELECT count(*) FROM storage_entries WHERE key = " . sql_quote(decode('UTF-8', $k))), '1',
			"PostgreSQL has key of $p");
	}
	# unencoded slashes are part of the key too
	my $r = req(PUT => '/api/storage/cache/x', json => { data => 'slash' });
	is($r->{status}, 201, 'PUT /api/storage/cache/x');
	is($r->{json}{entry}{key}, 'cache/x', 'its key is cache/x');
	$r = req(GET => '/api/storage/cache%2Fx');
	is($r->{status}, 200, 'GET /api/storage/cache%2Fx');
	is($r->{json}{entry}{data}, 'slash', 'is the same entry');

	my $k1024 = 'k' x 1024;
	$r = req(PUT => "/api/storage/$k1024", json => { data => 1 });
	is($r->{status}, 201, 'key of 1024 bytes: 201');
	is(req(GET => "/api/storage/$k1024")->{status}, 200, 'key of 1024 bytes reads back');
	json_error_ok(req(PUT => '/api/storage/' . ('k' x 1025), json => { data => 1 }), 400, qr/key/i,
		'key of 1025 bytes: 400');
	json_error_ok(req(GET => '/api/storage/' . ('k' x 1025)), 400, qr/key/i, 'GET key of 1025 bytes: 400');
	# 1025 bytes made of 2-byte characters
	json_error_ok(req(PUT => '/api/storage/' . ('%C3%A9' x 512) . 'x', json => { data => 1 }), 400, qr/key/i,
		'key of 1025 bytes after decoding: 400');
};

subtest 'validation' => sub {
	json_error_ok(req(PUT => '/api/storage/v', body => '{"tags":[]}'), 400, qr/'data'/, 'data missing');
	json_error_ok(req(PUT => '/api/storage/v', body => '[1]'), 400, undef, 'body not an object');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1.}'), 400, undef, 'bad JSON');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"expiresAt":"tomorrow"}'), 400,
		qr/expiresAt/, 'expiresAt not a time');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"expiresAt":"2026-13-45T00:00:00Z"}'), 400,
		qr/expiresAt/, 'expiresAt out of range');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"expiresAt":5}'), 400,
		qr/expiresAt/, 'expiresAt a number');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"tags":"x"}'), 400, qr/tags/, 'tags a string');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"tags":[1]}'), 400, qr/tags/, 'tags [1]');
	json_error_ok(req(PUT => '/api/storage/v', json => { data => 1, tags => [ map {"t$_"} 1 .. 101 ] }), 400,
		qr/tags/, '101 tags');
	json_error_ok(req(PUT => '/api/storage/v', json => { data => 1, tags => [ 'x' x 201 ] }), 400,
		qr/tags/, 'a tag of 201 bytes');
	json_error_ok(req(PUT => '/api/storage/v', body => '{"data":1,"tags":["a\u0000b"]}'), 400,
		qr/tags/, 'a tag with NUL');
	is(sql("SELECT count(*) FROM storage_entries WHERE key = 'v'"), '0', 'nothing refused was stored');

	my @tags = map { sprintf('%03d', $_) . ('t' x 197) } 1 .. 100;
	my $r = req(PUT => '/api/storage/v', json => { data => 1, tags => [ @tags ] });
	is($r->{status}, 201, '100 tags of 200 bytes: 201');
	is_deeply($r->{json}{entry}{tags}, \@tags, 'tags kept in order');
	$r = req(PUT => '/api/storage/v', json => { data => 1, tags => [ "\x{e9}\"\\\n", '' ] });
	is_deeply(req(GET => '/api/storage/v')->{json}{entry}{tags}, [ "\x{e9}\"\\\n", '' ], 'tags with escapes');
};

subtest 'expiry' => sub {
	my $r = req(PUT => '/api/storage/old', json => { data => 1, expiresAt => '2000-01-01T00:00:00Z' });
	is($r->{status}, 201, 'PUT with a past expiresAt is accepted');
	is($r->{json}{entry}{expiresAt}, '2000-01-01T00:00:00.000Z', 'expiresAt normalized to UTC with ms');
	json_error_ok(req(GET => '/api/storage/old'), 404, undef, 'expired entry reads as 404');
	json_error_ok(req(GET => '/api/storage/old'), 404, undef, 'and again (from the cache)');

	$r = req(PUT => '/api/storage/later', json => { data => 2, expiresAt => '2099-06-01T12:00:00+02:00' });
	is($r->{json}{entry}{expiresAt}, '2099-06-01T10:00:00.000Z', 'offset converted to UTC');
	is(req(GET => '/api/storage/later')->{status}, 200, 'future expiresAt reads');

	# An entry that expires while cached.
	my $at = sql("SELECT to_char((now() + interval '3 seconds') AT TIME ZONE 'UTC', "
		. "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
	$r = req(PUT => '/api/storage/soon', json => { data => 3, expiresAt => $at });
	is($r->{status}, 201, "PUT expiring at $at");
	my $g1 = req(GET => '/api/storage/soon');
	my $g2 = req(GET => '/api/storage/soon');
	is($g2->{status}, 200, 'readable before it expires (' . x_cache($g1) . ', ' . x_cache($g2) . ')');
	sleep 0.1 while sql("SELECT now() <= '$at'::timestamptz") eq 't';
	json_error_ok(req(GET => '/api/storage/soon'), 404, undef, 'expired while cached: 404');

	# DELETE of an expired entry: it was already gone for readers.
	json_error_ok(req(DELETE => '/api/storage/old'), 404, undef, 'DELETE expired: 404');
	is(sql("SELECT count(*) FROM storage_entries WHERE key = 'old'"), '0', 'and it is removed');
};

subtest 'DELETE' => sub {
	my $r = req(PUT => '/api/storage/del', body => '{"data":{"x":1.0}}');
	is($r->{status}, 201, 'PUT');
	is(req(GET => '/api/storage/del')->{status}, 200, 'GET (cached now)');
	$r = req(DELETE => '/api/storage/del');
	ok_entry($r, 200, 'DELETE');
	is($r->{json}{entry}{key}, 'del', 'answers the deleted entry');
	is(raw_data($r->{content}), '{"x":1.0}', 'with its data as given');
	json_error_ok(req(GET => '/api/storage/del'), 404, undef, 'GET after DELETE: 404');
	json_error_ok(req(DELETE => '/api/storage/del'), 404, undef, 'DELETE again: 404');
	json_error_ok(req(DELETE => '/api/storage/never-was'), 404, undef, 'DELETE unknown: 404');
	json_error_ok(req(GET => '/api/storage/never-was'), 404, undef, 'GET unknown: 404');
};

subtest 'X-Cache on node A' => sub {
	req(PUT => '/api/storage/xc', json => { data => 'x' });
	my $g1 = req(GET => '/api/storage/xc');
	my $g2 = req(GET => '/api/storage/xc');
	like(x_cache($g1), qr/^(HIT|MISS)$/, 'first GET after PUT: ' . x_cache($g1));
	is(x_cache($g2), 'HIT', 'second GET: HIT');
	is($g2->{content}, $g1->{content}, 'same body');
	like(x_cache(req(GET => '/api/storage/not-there')), qr/^(HIT|MISS)$/, 'X-Cache on a 404');
};

# ------------------------------------------------------ filter cache --

subtest 'filter cache' => sub {
	my $src = "https://example.org/list.txt?a=1&b=%20 \x{e9}";
	my $q = '/api/filter-cache?source=' . pct_encode(encode('UTF-8', $src));
	my %put = (source => $src, content => "||ads.example^\n! comment \"q\"\n", hash => 'sha256:abc');
	my $r = req(PUT => '/api/filter-cache', json => { %put, etag => 'W/"1"' });
	ok_entry($r, 201, 'PUT new source');
	my $e = $r->{json}{entry};
	is($e->{$_}, $put{$_}, "entry $_") for qw(source content hash);
	is($e->{etag}, 'W/"1"', 'entry etag');
	is($e->{expiresAt}, undef, 'expiresAt null');
	like($e->{createdAt} // '', $ISO, 'createdAt');
	like($e->{updatedAt} // '', $ISO, 'updatedAt');

	$r = req(GET => $q);
	ok_entry($r, 200, 'GET ?source=');
	is_deeply($r->{json}{entry}, $e, 'GET answers what PUT answered');
	like(x_cache($r), qr/^(HIT|MISS)$/, 'X-Cache ' . x_cache($r));
	my $r2 = req(GET => $q);
	is(x_cache($r2), 'HIT', 'second GET: HIT');
	is($r2->{content}, $r->{content}, 'same body');

	$r = req(PUT => '/api/filter-cache', json => { %put, content => 'new', expiresAt => '2099-01-01T00:00:00Z' });
	ok_entry($r, 200, 'PUT existing source');
	is($r->{json}{entry}{etag}, undef, 'etag left out: null');
	is($r->{json}{entry}{createdAt}, $e->{createdAt}, 'createdAt kept');
	is(req(GET => $q)->{json}{entry}{content}, 'new', 'GET sees the new content at once');

	req(PUT => '/api/filter-cache', json => { source => 'old-src', content => 'x', hash => 'h',
		expiresAt => '2001-01-01T00:00:00Z' });
	json_error_ok(req(GET => '/api/filter-cache?source=old-src'), 404, undef, 'expired: 404');
	json_error_ok(req(GET => '/api/filter-cache?source=nope'), 404, undef, 'unknown: 404');
	json_error_ok(req(GET => '/api/filter-cache'), 400, qr/source/, 'no source: 400');
	json_error_ok(req(GET => '/api/filter-cache?source='), 400, qr/source/, 'empty source: 400');
	json_error_ok(req(GET => '/api/filter-cache?source=' . ('s' x 2049)), 400, qr/source/, 'source of 2049 bytes');

	my %ok = (source => 's', content => 'c', hash => 'h');
	for my $c ([ 'source', undef ], [ 'source', '' ], [ 'source', 's' x 2049 ], [ 'content', undef ],
	    [ 'content', 5 ], [ 'hash', undef ], [ 'hash', 'h' x 257 ], [ 'etag', 'e' x 257 ],
	    [ 'expiresAt', 'soon' ]) {
		my ($f, $v) = @$c;
		my %b = %ok;
		if (defined $v) { $b{$f} = $v } else { delete $b{$f} }
		json_error_ok(req(PUT => '/api/filter-cache', json => \%b), 400, qr/\Q$f\E/,
			"$f " . (defined $v ? substr($v, 0, 10) . '…' : 'missing') . ': 400');
	}
	is(sql("SELECT count(*) FROM filter_cache WHERE source = 's'"), '0', 'nothing refused was stored');
	$r = req(PUT => '/api/filter-cache', json => { %ok, content => '', source => 's' x 2048, hash => 'h' x 256,
		etag => 'e' x 256 });
	is($r->{status}, 201, 'limits themselves are accepted (empty content too)');
};

# ------------------------------------------------------ compilations --

my @COMP;
subtest 'POST /api/compilations' => sub {
	for my $c ([ 'alpha', 1, 10, 100, '/out/a.txt' ], [ 'beta', 2, 20, 200, undef ], [ 'alpha', 3, 30, 300, undef ]) {
		my %b = (configName => $c->[0], sourceCount => $c->[1], ruleCount => $c->[2], duration => $c->[3]);
		$b{outputPath} = $c->[4] if defined $c->[4];
		my $r = req(POST => '/api/compilations', json => \%b);
		is($r->{status}, 201, "POST $c->[0]") or diag $r->{content};
		my $o = $r->{json}{compilation} // {};
		like($o->{id} // '', qr/^[0-9a-f-]{36}$/, 'id');
		like($o->{timestamp} // '', $ISO, 'timestamp');
		is_deeply([ @$o{qw(configName sourceCount ruleCount duration outputPath)} ], [ @$c ], 'fields');
		like($r->{content}, qr/"sourceCount":$c->[1],"ruleCount":$c->[2],"duration":$c->[3]/,
			'counts are JSON numbers');
		push @COMP, $o;
		sleep 0.01;
	}
	my %ok = (configName => 'c', sourceCount => 0, ruleCount => 0, duration => 0);
	for my $c ([ 'configName', undef ], [ 'configName', '' ], [ 'configName', 'n' x 201 ],
	    [ 'sourceCount', undef ], [ 'sourceCount', -1 ], [ 'ruleCount', 2147483648 ], [ 'duration', 1.5 ],
	    [ 'duration', '5' ], [ 'outputPath', 'p' x 1025 ], [ 'outputPath', 7 ]) {
		my ($f, $v) = @$c;
		my %b = %ok;
		if (defined $v) { $b{$f} = $v } else { delete $b{$f} }
		json_error_ok(req(POST => '/api/compilations', json => \%b), 400, qr/\Q$f\E/,
			"$f " . (defined $v ? substr($v, 0, 10) : 'missing') . ': 400');
	}
	is(sql("SELECT count(*) FROM compilation_metadata"), '3', 'nothing refused was recorded');
	my $r = req(POST => '/api/compilations', json => { %ok, configName => 'n' x 200, sourceCount => 2147483647,
		outputPath => 'p' x 1024 });
	is($r->{status}, 201, 'limits themselves are accepted');
	sql("DELETE FROM compilation_metadata WHERE config_name = " . sql_quote('n' x 200));
};

sub ids { [ map { $_->{id} } @{ $_[0]{json}{compilations} || [] } ] }

subtest 'GET /api/compilations' => sub {
	# let the DELETE above reach the cache
	poll(3, sub { (req(GET => '/api/compilations')->{json}{count} // -1) == 3 });
	my $r = req(GET => '/api/compilations');
	is($r->{status}, 200, 'GET');
	is($r->{json}{count}, 3, 'count 3');
	is_deeply(ids($r), [ map { $_->{id} } reverse @COMP ], 'newest first');
	is_deeply($r->{json}{compilations}[0], $COMP[2], 'objects as POST answered them');
	my $r2 = req(GET => '/api/compilations');
	is(x_cache($r2), 'HIT', 'second list: HIT');
	is($r2->{content}, $r->{content}, 'same body');

	$r = req(GET => '/api/compilations?configName=alpha');
	is_deeply(ids($r), [ $COMP[2]{id}, $COMP[0]{id} ], 'configName=alpha');
	is($r->{json}{count}, 2, 'count 2');
	$r = req(GET => '/api/compilations?configName=none');
	is_deeply([ $r->{json}{count}, ids($r) ], [ 0, [] ], 'unknown configName: empty list');
	like($r->{content}, qr/"compilations":\[\]/, 'an empty array');
	is_deeply(ids(req(GET => '/api/compilations?limit=1')), [ $COMP[2]{id} ], 'limit=1');
	is_deeply(ids(req(GET => '/api/compilations?limit=2&configName=alpha')), [ $COMP[2]{id}, $COMP[0]{id} ],
		'limit=2&configName=alpha');
	for my $l ('abc', '0', '-3', '5000', '1.5', '') {
		my $x = req(GET => "/api/compilations?limit=$l");
		is($x->{status}, 200, "limit=$l: 200");
		is($x->{json}{count}, 3, "limit=$l: all three");
	}

	# the default limit is 50, the largest 1000
	sql("INSERT INTO compilation_metadata (config_name, \"timestamp\", source_count, rule_count, duration) "
		. "SELECT 'bulk', now() - interval '1 day' - n * interval '1 ms', 0, 0, 0 FROM generate_series(1, 1100) n");
	ok(poll(3, sub { (req(GET => '/api/compilations?limit=2000')->{json}{count} // 0) == 1000 }),
		'limit=2000 gives 1000');
	is(req(GET => '/api/compilations?limit=x')->{json}{count}, 50, 'limit=x gives 50');
	is(req(GET => '/api/compilations')->{json}{count}, 50, 'no limit gives 50');
	is_deeply(ids(req(GET => '/api/compilations?limit=3')), [ map { $_->{id} } reverse @COMP ],
		'the recent ones still first');
	sql("DELETE FROM compilation_metadata WHERE config_name = 'bulk'");
};

# ------------------------------------------ other nodes, psql writes --

subtest 'node B: MISS then HIT; changes from node A and from psql within 2 s' => sub {
	# Written before node B starts: its cache has never seen these.
	my $raw = '{"v":1.10}';
	req(PUT => '/api/storage/shared', body => qq({"data":$raw}));
	req(PUT => '/api/filter-cache', json => { source => 'shared-src', content => 'c1', hash => 'h1' });

	my $conf_b = write_conf();
	migrate($conf_b);
	my $pool_b = pool_start($conf_b, workers => 2);
	my $web_b = nginx_start(upstream => $pool_b->addr);
	$URL_B = $web_b->{url};
	cache_ready($URL_B, 'node B');

	my $g1 = req(GET => '/api/storage/shared', base => $URL_B);
	my $g2 = req(GET => '/api/storage/shared', base => $URL_B);
	is($g1->{status}, 200, 'node B reads the entry');
	is(x_cache($g1), 'MISS', 'first GET on node B: MISS');
	is(x_cache($g2), 'HIT', 'second GET on node B: HIT');
	is($g2->{content}, $g1->{content}, 'same body');
	is(raw_data($g2->{content}), $raw, 'data as given on node B');
	my $f1 = req(GET => '/api/filter-cache?source=shared-src', base => $URL_B);
	my $f2 = req(GET => '/api/filter-cache?source=shared-src', base => $URL_B);
	is(x_cache($f1), 'MISS', 'filter cache on node B: MISS');
	is(x_cache($f2), 'HIT', 'then HIT');

	# A write through node A reaches node B's cache.
	req(PUT => '/api/storage/shared', body => '{"data":{"v":2}}');
	my $t0 = time;
	my $seen = poll(5, sub { (raw_data(req(GET => '/api/storage/shared', base => $URL_B)->{content}) // '') eq '{"v":2}' });
	my $dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('node B sees node A\'s PUT within 2 s (%.2f s)', $dt));

	# A change made with psql reaches both nodes.
	# (A's own PUT may have been dropped from its cache when the NOTIFY
	# overtook the write-through; the next read fills it again.)
	ok(poll(3, sub { x_cache(req(GET => '/api/storage/shared')) eq 'HIT' }), 'node A has it cached');
	sql(q{UPDATE storage_entries SET data = '{"v":3}', updated_at = now() WHERE key = 'shared'});
	$t0 = time;
	$seen = poll(5, sub {
		(raw_data(req(GET => '/api/storage/shared')->{content}) // '') eq '{"v":3}'
		    && (raw_data(req(GET => '/api/storage/shared', base => $URL_B)->{content}) // '') eq '{"v":3}' });
	$dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('psql UPDATE seen on both nodes within 2 s (%.2f s)', $dt));

	sql(q{UPDATE filter_cache SET content = 'c2' WHERE source = 'shared-src'});
	$t0 = time;
	$seen = poll(5, sub { (req(GET => '/api/filter-cache?source=shared-src', base => $URL_B)->{json}{entry}{content} // '') eq 'c2' });
	$dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('psql UPDATE of filter_cache seen within 2 s (%.2f s)', $dt));

	# Deletes and expiry from psql.
	req(GET => '/api/storage/shared', base => $URL_B);
	sql(q{DELETE FROM storage_entries WHERE key = 'shared'});
	$t0 = time;
	$seen = poll(5, sub { req(GET => '/api/storage/shared', base => $URL_B)->{status} == 404 });
	$dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('psql DELETE seen within 2 s (%.2f s)', $dt));

	# Compilations: list on B, POST on A, B's list follows.
	req(GET => '/api/compilations', base => $URL_B) for 1 .. 2;
	my $r = req(POST => '/api/compilations', json => { configName => 'gamma', sourceCount => 1, ruleCount => 1,
		duration => 1 });
	my $id = $r->{json}{compilation}{id} // 'none';
	$t0 = time;
	$seen = poll(5, sub { (ids(req(GET => '/api/compilations', base => $URL_B))->[0] // '') eq $id });
	$dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('node B lists node A\'s new compilation first within 2 s (%.2f s)', $dt));
	sql(q{DELETE FROM compilation_metadata WHERE config_name = 'gamma'});
	$t0 = time;
	$seen = poll(5, sub { (ids(req(GET => '/api/compilations', base => $URL_B))->[0] // '') ne $id });
	$dt = time - $t0;
	ok($seen && $dt <= 2, sprintf('psql DELETE of a compilation seen within 2 s (%.2f s)', $dt));
};

subtest 'PostgreSQL down: cached reads STALE, writes 503' => sub {
	req(PUT => '/api/storage/outage', body => '{"data":[1.0]}');
	ok(poll(3, sub { x_cache(req(GET => '/api/storage/outage')) eq 'HIT' }), 'cached on node A');
	ok(poll(3, sub { x_cache(req(GET => '/api/compilations')) eq 'HIT' }), 'list cached on node A');
	$PG->stop;
	# Each worker re-reads the listener's state every 200 ms (cache.c):
	# until then a fresh cached row may still be answered as a HIT.
	sleep 0.5;
	my $r = req(GET => '/api/storage/outage');
	is($r->{status}, 200, 'cached entry still answered');
	is(x_cache($r), 'STALE', 'X-Cache: STALE');
	is(raw_data($r->{content}), '[1.0]', 'with its data as given');
	$r = req(GET => '/api/compilations');
	is($r->{status}, 200, 'cached list still answered');
	is(x_cache($r), 'STALE', 'list X-Cache: STALE') or diag($r->{content});
	$r = req(GET => '/api/storage/never-cached');
	json_error_ok($r, 503, undef, 'uncached key: 503');
	$r = req(PUT => '/api/storage/outage', body => '{"data":2}');
	json_error_ok($r, 503, undef, 'PUT: 503');
	ok(defined $r->{headers}{'retry-after'}, 'with Retry-After');
	json_error_ok(req(DELETE => '/api/storage/outage'), 503, undef, 'DELETE: 503');
	json_error_ok(req(POST => '/api/compilations', json => { configName => 'x', sourceCount => 1,
		ruleCount => 1, duration => 1 }), 503, undef, 'POST compilation: 503');
	$PG->start;
	ok(poll(10, sub { req(GET => '/api/storage/outage')->{status} == 200
	    && x_cache(req(GET => '/api/storage/outage')) ne 'STALE' }), 'fresh again once PostgreSQL is back');
	is(raw_data(req(GET => '/api/storage/outage')->{content}), '[1.0]', 'nothing changed while it was down');
};

done_testing();
