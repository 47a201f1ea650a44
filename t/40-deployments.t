#!/usr/bin/perl
# Deployments (CONTRACT §4 "Public" and "Deployments", §5 cache): the
# version without and with history, the history list (shape, limit
# defaults, filters, newest first, Cache-Control, X-Cache MISS then HIT with
# identical bodies), stats, recording (201 shape, validation, auth),
# rollback, atomic build numbers under 20 concurrent posts, read-your-
# writes, the audit rows, and `bloqr-admin deploy record`. One PostgreSQL,
# the pool (2 workers) behind nginx.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $S = stack();
my $CONF = $S->{conf};
api_setup(url => $S->{url}, pg => $S->{pg}, conf => $CONF);

# ------------------------------------------------------------ helpers --

my $ISO = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
my @DEPLOY_KEYS = sort qw(id version buildNumber fullVersion gitCommit gitBranch deployedAt
	deployedBy status deploymentDuration workflowRunId workflowRunUrl metadata);
my @VERSION_KEYS = sort qw(success name version buildNumber fullVersion gitCommit gitBranch deployedAt
	deployedBy status metadata);

# A deployment object: exactly the contract's keys, well-typed, matching %want.
sub deployment_ok {
	my ($d, $name, %want) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return ok(0, "$name: deployment object") || diag('not an object: ' . $JSON->encode($d))
	    if ref $d ne 'HASH';
	my @why;
	my @keys = sort keys %$d;
	push @why, "keys are [@keys]" unless "@keys" eq "@DEPLOY_KEYS";
	push @why, 'id is not a uuid' unless ($d->{id} // '') =~ $UUID;
	push @why, 'deployedAt is not an ISO time with ms' unless ($d->{deployedAt} // '') =~ $ISO;
	push @why, 'buildNumber is not a positive integer'
	    unless defined $d->{buildNumber} && !ref $d->{buildNumber} && $d->{buildNumber} =~ /^[1-9]\d*$/;
	push @why, 'fullVersion is not version+build.N'
	    unless ($d->{fullVersion} // '') eq ($d->{version} // '') . '+build.' . ($d->{buildNumber} // '');
	for my $k (sort keys %want) {
		my $got = ref $d->{$k} ? $JSON->encode($d->{$k}) : $d->{$k};
		my $exp = ref $want{$k} ? $JSON->encode($want{$k}) : $want{$k};
		push @why, "$k is " . ($got // 'null') . ', expected ' . ($exp // 'null')
		    unless (defined $got && defined $exp && $got eq $exp) || (!defined $got && !defined $exp);
	}
	my $ok = ok(!@why, "$name: deployment object");
	diag(join("\n", @why) . "\n" . $JSON->encode($d)) unless $ok;
	return $ok;
}

sub cache_control_ok {
	my ($r, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($r->{headers}{'cache-control'}, 'public, max-age=60', "$name: Cache-Control");
	like($r->{headers}{'x-cache'} // '', qr/^(?:HIT|MISS|STALE|BYPASS)$/, "$name: X-Cache");
}

sub list {
	my ($q) = @_;
	return req(GET => '/api/deployments' . (defined $q ? "?$q" : ''));
}

# Rows in deployment_history, as psql counts them.
sub pg_count {
	my ($where) = @_;
	return sql('SELECT count(*) FROM deployment_history' . ($where ? " WHERE $where" : ''));
}

# ------------------------------------------------------------ accounts --

mkuser('admin@example.test', role => 'admin');
mkuser('user@example.test', role => 'user');
my $ADMIN = mktoken('admin@example.test') // BAIL_OUT('cannot create an admin token');
my $USER = mktoken('user@example.test');

# ---------------------------------------------------- no history yet --

{
	my $r = req(GET => '/api/version');
	is($r->{status}, 200, 'version without history: 200');
	is_deeply([sort keys %{ $r->{json} || {} }], [qw(message name success version)],
	    'version without history: {success, name, version, message}');
	ok($r->{json}{success}, 'version without history: success true');
	like($r->{json}{version} // '', qr/^\d+\.\d+\.\d+/, 'version without history: the built-in version');
	is($r->{json}{message}, 'No deployment history available', 'version without history: message');
	cache_control_ok($r, 'version without history');

	$r = list();
	is($r->{status}, 200, 'empty list: 200');
	is_deeply($r->{json}, { success => JSON::PP::true, deployments => [], count => 0 }, 'empty list: shape');
	cache_control_ok($r, 'empty list');

	$r = req(GET => '/api/deployments/stats');
	is($r->{status}, 200, 'empty stats: 200');
	is_deeply($r->{json}, { success => JSON::PP::true, totalDeployments => 0, successfulDeployments => 0,
		failedDeployments => 0, latestVersion => undef }, 'empty stats: zeros and latestVersion null');
	like($r->{headers}{'x-cache'} // '', qr/^(?:HIT|MISS|STALE|BYPASS)$/, 'empty stats: X-Cache');
}

# ------------------------------------------------------- seeded rows --

# 60 deployments from outside the program, one a minute: every 7th failed,
# every 3rd on branch dev, versions 0.9.0 (1-30) and 0.9.1 (31-60).
sql(<<'SQL');
INSERT INTO deployment_history (version, build_number, full_version, git_commit, git_branch,
	deployed_at, deployed_by, status, deployment_duration, workflow_run_id, metadata)
SELECT v, b, v || '+build.' || b, md5(i::text), CASE WHEN i % 3 = 0 THEN 'dev' ELSE 'main' END,
	now() - (61 - i) * interval '1 minute', 'seed', CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'success' END,
	i * 1000, 'run-' || i, CASE WHEN i % 2 = 0 THEN jsonb_build_object('i', i) END
FROM (SELECT i, CASE WHEN i <= 30 THEN '0.9.0' ELSE '0.9.1' END AS v,
	CASE WHEN i <= 30 THEN i ELSE i - 30 END AS b FROM generate_series(1, 60) i) s
SQL
sql(q{INSERT INTO deployment_counter VALUES ('0.9.0', 30), ('0.9.1', 30)});

# Written outside the program: every node drops the old answer within 2 s.
ok(poll(3, sub { (list('limit=1000')->{json}{count} // -1) == 60 }), 'seeded rows visible within 2 s');

{
	my $r = list();
	is($r->{status}, 200, 'list: 200');
	cache_control_ok($r, 'list');
	my $j = $r->{json} || {};
	is_deeply([sort keys %$j], [qw(count deployments success)], 'list: {success, deployments, count}');
	is(scalar @{ $j->{deployments} || [] }, 50, 'list: default limit 50');
	is($j->{count}, 50, 'list: count = rows returned');
	deployment_ok($j->{deployments}[0], 'list row 0', version => '0.9.1', buildNumber => 30,
		fullVersion => '0.9.1+build.30', gitBranch => 'dev', status => 'success', deployedBy => 'seed',
		deploymentDuration => 60000, workflowRunId => 'run-60', workflowRunUrl => undef,
		metadata => { i => 60 }, gitCommit => sql(q{SELECT md5('60')}));
	deployment_ok($j->{deployments}[1], 'list row 1', fullVersion => '0.9.1+build.29', metadata => undef,
		gitBranch => 'main');
	my @at = map { $_->{deployedAt} } @{ $j->{deployments} };
	is_deeply(\@at, [sort { $b cmp $a } @at], 'list: newest first');
	my @ids = map { $_->{id} } @{ $j->{deployments} };
	my @pg = split /\n/, sql('SELECT id FROM deployment_history ORDER BY deployed_at DESC, id DESC LIMIT 50');
	is_deeply(\@ids, \@pg, 'list: the 50 newest rows, in PostgreSQL order');
}

for my $l ('0', '-5', 'abc', '', '1.5', '%20', '99999999999999999999999') {
	my $r = list("limit=" . $l);
	is($r->{status}, 200, "limit=$l: 200 (not 400)");
	is($r->{json}{count}, $l eq '99999999999999999999999' ? 60 : 50,
	    "limit=$l: " . ($l eq '99999999999999999999999' ? 'capped at 1000' : 'the default 50'));
}
for my $l (1, 10, 59, 60, 1000, 5000) {
	my $r = list("limit=$l");
	is($r->{status}, 200, "limit=$l: 200");
	my $want = $l > 60 ? 60 : $l;
	is($r->{json}{count}, $want, "limit=$l: $want rows");
	is(scalar @{ $r->{json}{deployments} || [] }, $want, "limit=$l: count matches the array");
}

# Filters: each alone and combined, compared with PostgreSQL.
{
	my @cases = (
		['version=0.9.0', "version = '0.9.0'"],
		['status=failed', "status = 'failed'"],
		['status=success', "status = 'success'"],
		['branch=dev', "git_branch = 'dev'"],
		['version=0.9.1&status=failed', "version = '0.9.1' AND status = 'failed'"],
		['version=0.9.0&branch=dev&status=success', "version = '0.9.0' AND git_branch = 'dev' AND status = 'success'"],
		['version=nope', 'false'],
		['status=whatever', 'false'],
		['branch=' . pct_encode('feature/ä x'), 'false'],
		['version=', 'true'],
	);
	for my $c (@cases) {
		my ($q, $where) = @$c;
		my $r = list("limit=1000&$q");
		is($r->{status}, 200, "filter $q: 200");
		my @got = map { $_->{id} } @{ $r->{json}{deployments} || [] };
		my @want = split /\n/, sql("SELECT id FROM deployment_history WHERE $where ORDER BY deployed_at DESC, id DESC");
		is_deeply(\@got, \@want, "filter $q: the matching rows, newest first");
		is($r->{json}{count}, scalar @want, "filter $q: count");
	}
	my $r = list('version=0.9.0');
	is($r->{json}{count}, 30, 'filter without limit: all 30 (fewer than 50)');
	json_error_ok(list('version=%ZZ'), 400, qr/version/, 'malformed filter: 400 naming it');
	json_error_ok(list('branch=%FF%FE'), 400, qr/branch/, 'invalid UTF-8 filter: 400 naming it');
	json_error_ok(list('status=' . ('s' x 201)), 400, qr/status/, 'filter over 200 bytes: 400 naming it');
	is(list('status=' . ('s' x 200))->{status}, 200, 'filter of 200 bytes: accepted');
}

# Version and stats with history.
{
	my $r = req(GET => '/api/version');
	is($r->{status}, 200, 'version: 200');
	cache_control_ok($r, 'version');
	my $j = $r->{json} || {};
	is_deeply([sort keys %$j], \@VERSION_KEYS, 'version: exactly the contract keys');
	# 60 is a success (60 % 7 != 0).
	is($j->{fullVersion}, '0.9.1+build.30', 'version: the latest successful deployment');
	is($j->{version}, '0.9.1', 'version: version');
	is($j->{buildNumber}, 30, 'version: buildNumber');
	is($j->{status}, 'success', 'version: status');
	is_deeply($j->{metadata}, { i => 60 }, 'version: metadata');
	like($j->{deployedAt} // '', $ISO, 'version: deployedAt');

	# The newest deployment failed: the version stays the latest success.
	sql(q{UPDATE deployment_history SET status = 'failed' WHERE full_version = '0.9.1+build.30'});
	ok(poll(3, sub { (req(GET => '/api/version')->{json}{fullVersion} // '') eq '0.9.1+build.29' }),
	    'version: skips a failed deployment (outside write seen within 2 s)');

	$r = req(GET => '/api/deployments/stats');
	is($r->{status}, 200, 'stats: 200');
	is_deeply($r->{json}, { success => JSON::PP::true, totalDeployments => 60,
		successfulDeployments => pg_count(q{status = 'success'}) + 0,
		failedDeployments => pg_count(q{status = 'failed'}) + 0,
		latestVersion => '0.9.1+build.29' }, 'stats: counts and latestVersion');
}

# ------------------------------------------------------ X-Cache --

{
	# Warm up: the cache answers HIT once the listener is connected.
	my $hit = poll(10, sub { (list('limit=50')->{headers}{'x-cache'} // '') eq 'HIT' });
	ok($hit, 'repeated list: HIT once the cache is warm');
	my $inv = req(POST => '/api/admin/cache/invalidate', bearer => $ADMIN, json => { table => 'deployment_history' });
	is($inv->{status}, 200, 'invalidate deployment_history: 200') or diag($inv->{content});
	my $miss = list('limit=50');
	is($miss->{headers}{'x-cache'}, 'MISS', 'after invalidation: MISS');
	my $again = list('limit=50');
	is($again->{headers}{'x-cache'}, 'HIT', 'then: HIT');
	is($again->{content}, $miss->{content}, 'the HIT body is byte for byte the MISS body');
	is($again->{json}{count}, 50, 'HIT: 50 rows');
	# The same for a filtered list and for the version.
	my $f1 = list('status=failed&limit=5');
	my $f2 = list('status=failed&limit=5');
	is($f2->{headers}{'x-cache'}, 'HIT', 'filtered list: HIT');
	is($f2->{content}, $f1->{content}, 'filtered list: same body');
	is(req(GET => '/api/version')->{headers}{'x-cache'}, 'HIT', 'version: HIT');
	# A stale-free HIT equals what PostgreSQL says.
	my @ids = map { $_->{id} } @{ $again->{json}{deployments} };
	my @pg = split /\n/, sql('SELECT id FROM deployment_history ORDER BY deployed_at DESC, id DESC LIMIT 50');
	is_deeply(\@ids, \@pg, 'HIT: the same rows as PostgreSQL');
}

# ------------------------------------------------------- recording --

my %BODY = (version => '1.2.3', gitCommit => 'abc123', gitBranch => 'main', deployedBy => 'ci');

{
	json_error_ok(req(POST => '/api/deployments', json => \%BODY), 401, undef, 'POST without a token: 401');
	json_error_ok(req(POST => '/api/deployments', json => \%BODY, bearer => 'nonsense'), 401, undef,
	    'POST with a bad token: 401');
	json_error_ok(req(POST => '/api/deployments', json => \%BODY, bearer => $USER), 403, undef,
	    'POST as a non-admin: 403');
	is(pg_count(q{version = '1.2.3'}), 0, 'refused posts wrote nothing');

	my $r = req(POST => '/api/deployments', json => \%BODY, bearer => $ADMIN);
	is($r->{status}, 201, 'POST: 201') or diag($r->{content});
	is_deeply([sort keys %{ $r->{json} || {} }], [qw(deployment success)], 'POST: {success, deployment}');
	ok($r->{json}{success}, 'POST: success true');
	deployment_ok($r->{json}{deployment}, 'POST', version => '1.2.3', buildNumber => 1,
		fullVersion => '1.2.3+build.1', gitCommit => 'abc123', gitBranch => 'main', deployedBy => 'ci',
		status => 'success', deploymentDuration => undef, workflowRunId => undef, workflowRunUrl => undef,
		metadata => undef);
	my $first = $r->{json}{deployment};

	# Read-your-writes through the same node.
	my $l = list('limit=1');
	is($l->{json}{deployments}[0]{id}, $first->{id}, 'list right after POST shows it first');
	is_deeply($l->{json}{deployments}[0], $first, 'list shows the same object as the POST answer');
	is(req(GET => '/api/version')->{json}{fullVersion}, '1.2.3+build.1', 'version right after POST');
	is(req(GET => '/api/deployments/stats')->{json}{totalDeployments}, 61, 'stats right after POST');

	my $meta = { pr => 42, tags => ['a', 'b'], nested => { ok => JSON::PP::true, n => undef }, s => "é/\"\n" };
	$r = req(POST => '/api/deployments', bearer => $ADMIN, json => { %BODY, status => 'success',
		deploymentDuration => 2147483647, workflowRunId => 'r-1', gitBranch => 'release/1.2',
		workflowRunUrl => 'https://ci.example.test/run/1?x=1', metadata => $meta });
	is($r->{status}, 201, 'POST with every field: 201') or diag($r->{content});
	deployment_ok($r->{json}{deployment}, 'POST with every field', buildNumber => 2,
		fullVersion => '1.2.3+build.2', deploymentDuration => 2147483647, workflowRunId => 'r-1',
		workflowRunUrl => 'https://ci.example.test/run/1?x=1', metadata => $meta, gitBranch => 'release/1.2');
	is_deeply(list('limit=1')->{json}{deployments}[0], $r->{json}{deployment}, 'list shows it, metadata included');
	is(list('branch=' . pct_encode('release/1.2'))->{json}{count}, 1, 'branch filter with a slash');

	for my $m ([1, 2], 'text', 0, JSON::PP::false) {
		my $x = req(POST => '/api/deployments', bearer => $ADMIN, json => { %BODY, version => '1.2.4', metadata => $m });
		is($x->{status}, 201, 'metadata ' . $JSON->encode($m) . ': 201');
		is($JSON->encode($x->{json}{deployment}{metadata}), $JSON->encode($m), 'metadata ' . $JSON->encode($m) . ': kept');
	}
	$r = req(POST => '/api/deployments', bearer => $ADMIN, json => { %BODY, version => '1.2.4', metadata => undef });
	is($r->{json}{deployment}{metadata}, undef, 'metadata null: null');
	is($r->{json}{deployment}{buildNumber}, 5, 'build numbers count per version');

	$r = req(POST => '/api/deployments', bearer => $ADMIN, json => { %BODY, status => 'failed' });
	is($r->{status}, 201, 'POST failed deployment: 201');
	is($r->{json}{deployment}{status}, 'failed', 'status failed stored');
	is($r->{json}{deployment}{buildNumber}, 3, 'a failed deployment takes a build number too');
	is(req(GET => '/api/version')->{json}{fullVersion}, '1.2.4+build.5', 'version: a failed deployment is not the version');

	# The audit rows, written with the change.
	is(sql(q{SELECT count(*) FROM admin_audit_log WHERE action = 'deployment.create' AND target = '1.2.3+build.1'
		AND actor_id = (SELECT id FROM users WHERE email = 'admin@example.test')}), 1,
	    'POST is audited (deployment.create, target = fullVersion, actor = the admin)');
}

# Validation: 400 naming the field, nothing written.
{
	my $before = pg_count();
	my @bad = (
		[{ %BODY, version => undef }, qr/version/, 'version null'],
		[{ map { $_ => $BODY{$_} } qw(gitCommit gitBranch deployedBy) }, qr/version/, 'version missing'],
		[{ %BODY, version => '' }, qr/version/, 'version empty'],
		[{ %BODY, version => '1.0+build.1' }, qr/version/, "version with '+'"],
		[{ %BODY, version => '1 0' }, qr/version/, 'version with a space'],
		[{ %BODY, version => '1/0' }, qr/version/, 'version with a slash'],
		[{ %BODY, version => 'x' x 101 }, qr/version/, 'version of 101 bytes'],
		[{ %BODY, version => 1 }, qr/version/, 'version a number'],
		[{ %BODY, gitCommit => undef }, qr/gitCommit/, 'gitCommit missing'],
		[{ %BODY, gitCommit => 'a' x 65 }, qr/gitCommit/, 'gitCommit of 65 bytes'],
		[{ %BODY, gitCommit => "ab\tc" }, qr/gitCommit/, 'gitCommit with a tab'],
		[{ %BODY, gitBranch => undef }, qr/gitBranch/, 'gitBranch missing'],
		[{ %BODY, gitBranch => 'b' x 256 }, qr/gitBranch/, 'gitBranch of 256 bytes'],
		[{ %BODY, gitBranch => [] }, qr/gitBranch/, 'gitBranch an array'],
		[{ %BODY, deployedBy => '' }, qr/deployedBy/, 'deployedBy empty'],
		[{ %BODY, deployedBy => 'w' x 256 }, qr/deployedBy/, 'deployedBy of 256 bytes'],
		[{ %BODY, status => 'rollback' }, qr/status/, 'status rollback'],
		[{ %BODY, status => 'SUCCESS' }, qr/status/, 'status in capitals'],
		[{ %BODY, status => 1 }, qr/status/, 'status a number'],
		[{ %BODY, deploymentDuration => -1 }, qr/deploymentDuration/, 'deploymentDuration -1'],
		[{ %BODY, deploymentDuration => 2147483648 }, qr/deploymentDuration/, 'deploymentDuration 2^31'],
		[{ %BODY, deploymentDuration => 1.5 }, qr/deploymentDuration/, 'deploymentDuration 1.5'],
		[{ %BODY, deploymentDuration => '10' }, qr/deploymentDuration/, 'deploymentDuration a string'],
		[{ %BODY, workflowRunId => 'r' x 101 }, qr/workflowRunId/, 'workflowRunId of 101 bytes'],
		[{ %BODY, workflowRunId => 7 }, qr/workflowRunId/, 'workflowRunId a number'],
		[{ %BODY, workflowRunUrl => 'https://x/' . ('u' x 2039) }, qr/workflowRunUrl/, 'workflowRunUrl of 2049 bytes'],
	);
	for my $c (@bad) {
		my ($body, $re, $name) = @$c;
		json_error_ok(req(POST => '/api/deployments', bearer => $ADMIN, json => $body), 400, $re, "POST $name: 400");
	}
	is(req(POST => '/api/deployments', bearer => $ADMIN,
		json => { %BODY, version => '7.7.7', workflowRunUrl => 'https://x/' . ('u' x 2038) })->{status}, 201,
	    'workflowRunUrl of 2048 bytes: accepted');
	json_error_ok(req(POST => '/api/deployments', bearer => $ADMIN, body => '{"version":'), 400, undef, 'bad JSON: 400');
	json_error_ok(req(POST => '/api/deployments', bearer => $ADMIN, body => '[1]'), 400, undef, 'array body: 400');
	json_error_ok(req(POST => '/api/deployments', bearer => $ADMIN, body => ''), 400, undef, 'empty body: 400');
	is(pg_count(), $before + 1, 'refused posts wrote nothing');
}

# ------------------------------------------------------- rollback --

{
	my $p = '/api/deployments/' . pct_encode('1.2.3+build.1') . '/rollback';
	json_error_ok(req(POST => $p), 401, undef, 'rollback without a token: 401');
	json_error_ok(req(POST => $p, bearer => $USER), 403, undef, 'rollback as a non-admin: 403');
	my $r = req(POST => $p, bearer => $ADMIN);
	is($r->{status}, 200, 'rollback: 200') or diag($r->{content});
	is_deeply([sort keys %{ $r->{json} || {} }], [qw(deployment success)], 'rollback: {success, deployment}');
	deployment_ok($r->{json}{deployment}, 'rollback', fullVersion => '1.2.3+build.1', status => 'rollback',
		buildNumber => 1);
	is(list('status=rollback')->{json}{deployments}[0]{fullVersion}, '1.2.3+build.1', 'rolled back row listed as rollback');
	is(sql(q{SELECT status FROM deployment_history WHERE full_version = '1.2.3+build.1'}), 'rollback', 'stored');
	is(sql(q{SELECT count(*) FROM admin_audit_log WHERE action = 'deployment.rollback' AND target = '1.2.3+build.1'}), 1,
	    'rollback is audited');

	# A literal '+' in the path works as well as %2B. 7.7.7+build.1 is the
	# newest success; rolled back, the version falls back to the one before.
	is(req(GET => '/api/version')->{json}{fullVersion}, '7.7.7+build.1', 'version before the rollback');
	$r = req(POST => '/api/deployments/7.7.7+build.1/rollback', bearer => $ADMIN);
	is($r->{status}, 200, "rollback with a literal '+': 200");
	is($r->{json}{deployment}{status}, 'rollback', "rollback with a literal '+': status");
	is(req(GET => '/api/version')->{json}{fullVersion}, '1.2.4+build.5', 'version: the latest success, not a rolled back one');
	is(req(GET => '/api/deployments/stats')->{json}{latestVersion}, '1.2.4+build.5', 'stats: latestVersion likewise');

	json_error_ok(req(POST => '/api/deployments/' . pct_encode('9.9.9+build.1') . '/rollback', bearer => $ADMIN), 404,
	    undef, 'rollback of an unknown version: 404');
	json_error_ok(req(POST => '/api/deployments/' . ('x' x 300) . '/rollback', bearer => $ADMIN), 404,
	    undef, 'rollback of a long unknown version: 404');
	json_error_ok(req(GET => $p), 405, undef, 'GET on rollback: 405');
}

# ------------------------------------------ concurrent build numbers --

{
	my $n = 20;
	my $dir = workdir();
	pipe(my $go_r, my $go_w) or die "pipe: $!\n";
	my @pids;
	for my $k (1 .. $n) {
		my $pid = fork // die "fork: $!\n";
		if ($pid == 0) {
			close $go_w;
			sysread($go_r, my $x, 1);    # wait until every child is ready
			my $r = eval { req(POST => '/api/deployments', bearer => $ADMIN,
				json => { %BODY, version => '2.0.0', deployedBy => "child-$k" }) };
			my $line = $r ? "$r->{status} " . ($r->{json}{deployment}{buildNumber} // '-') . "\n" : "0 -\n";
			if (open my $fh, '>', "$dir/conc-$k") { print $fh $line; close $fh }
			POSIX::_exit(0);
		}
		push @pids, $pid;
	}
	close $go_r;
	close $go_w;    # go
	waitpid($_, 0) for @pids;
	my (@status, @builds);
	for my $k (1 .. $n) {
		open my $fh, '<', "$dir/conc-$k" or next;
		my ($s, $b) = split ' ', scalar <$fh>;
		push @status, $s;
		push @builds, $b if $b =~ /^\d+$/;
	}
	is_deeply(\@status, [(201) x $n], "$n concurrent POSTs: all 201");
	is_deeply([sort { $a <=> $b } @builds], [1 .. $n], "$n concurrent POSTs: build numbers 1..$n, each once");
	is(sql(q{SELECT count(DISTINCT full_version) FROM deployment_history WHERE version = '2.0.0'}), $n,
	    "$n concurrent POSTs: $n distinct full versions stored");
	is(sql(q{SELECT last_build_number FROM deployment_counter WHERE version = '2.0.0'}), $n, 'counter at 20');
	is(list('version=2.0.0')->{json}{count}, $n, "list shows all $n");
}

# ------------------------------------------------ bloqr-admin deploy --

{
	my $r = admin($CONF, [qw(deploy record --version 3.0.0 --commit deadbeef --branch main --by ops)]);
	is($r->{rc}, 0, 'deploy record: exit 0') or diag("stderr: $r->{err}");
	is($r->{out}, "3.0.0+build.1\n", 'deploy record: prints V+build.N');
	$r = admin($CONF, [qw(deploy record --version 3.0.0 --commit deadbeef --branch main --by ops
		--status failed --duration-ms 1234 --run-id 77), '--run-url=https://ci.example.test/77']);
	is($r->{rc}, 0, 'deploy record with every option: exit 0') or diag("stderr: $r->{err}");
	is($r->{out}, "3.0.0+build.2\n", 'deploy record: next build number');
	my @row = split /\|/, sql(q{SELECT status, deployment_duration, workflow_run_id, workflow_run_url, deployed_by
		FROM deployment_history WHERE full_version = '3.0.0+build.2'});
	is_deeply(\@row, ['failed', 1234, 77, 'https://ci.example.test/77', 'ops'], 'deploy record: every option stored');
	# An outside write (the CLI has no cache): seen through the API within 2 s.
	ok(poll(3, sub { (list('version=3.0.0')->{json}{count} // 0) == 2 }), 'CLI deployments listed within 2 s');
	ok(poll(3, sub { (req(GET => '/api/version')->{json}{fullVersion} // '') eq '3.0.0+build.1' }),
	    'CLI deployment is the version within 2 s');

	my $before = pg_count();
	for my $c (
		[[qw(--version 3.0+x --commit c --branch b --by w)], 'bad version'],
		[[qw(--commit c --branch b --by w)], 'no version'],
		[[qw(--version 3.0.1 --commit c --branch b)], 'no --by'],
		[[qw(--version 3.0.1 --commit c --branch b --by w --status rollback)], 'bad status'],
		[[qw(--version 3.0.1 --commit c --branch b --by w --duration-ms -3)], 'bad duration'],
		[[qw(--version 3.0.1 --commit c --branch b --by w --duration-ms 2147483648)], 'duration too big'],
		[[qw(--version 3.0.1 --commit c --branch b --by w --bogus)], 'unknown option'],
		[[qw(--version 3.0.1 --commit c --branch b --by)], 'option without a value'],
		[['--version', '3.0.1', '--commit', 'c' x 65, '--branch', 'b', '--by', 'w'], 'commit too long'],
	) {
		my ($args, $name) = @$c;
		my $x = admin($CONF, ['deploy', 'record', @$args]);
		is($x->{rc}, 2, "deploy record $name: exit 2");
		like($x->{err}, qr/\A[^\n]+\n\z/, "deploy record $name: one line on stderr");
		is($x->{out}, '', "deploy record $name: nothing on stdout");
	}
	is(pg_count(), $before, 'refused deploy records wrote nothing');

	my $bad = write_conf('database.url' => 'postgresql:///nope?host=/nonexistent');
	my $x = admin($bad, [qw(deploy record --version 3.0.2 --commit c --branch b --by w)]);
	is($x->{rc}, 1, 'deploy record without PostgreSQL: exit 1');
	like($x->{err}, qr/\A[^\n]+\n\z/, 'deploy record without PostgreSQL: one line on stderr');
}

done_testing();
