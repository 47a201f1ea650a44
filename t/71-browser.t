#!/usr/bin/perl
# A real browser against the service (CONTRACT §3, §7): Debian's headless
# Chromium, driven over the DevTools protocol (t/lib/BloqrTest/Browser.pm),
# loads a tiny page served by nginx from the same origin as the API
# (conf/nginx-dashboard.conf.example). The page signs in with
# fetch(..., {credentials: 'include'}), is reloaded, PATCHes a user with
# the session cookie alone (the browser adds Origin and Sec-Fetch-Site, no
# custom header), and signs out. Each step's status is checked, and that
# the session is dead afterwards, in the browser and in PostgreSQL.
use strict;
use warnings;
use Test::More;
use BloqrTest;
use BloqrTest::Api;
use BloqrTest::Browser;

my @chromium = grep { -x } ($ENV{BLOQR_CHROMIUM} // (), '/usr/lib/chromium/chromium', '/usr/bin/chromium');
plan skip_all => 'chromium is not installed (apt-get install chromium)' unless @chromium;

my $PG = pg_start();
my $CONF = write_conf('http.cookie_secure' => 'false');
migrate($CONF);
api_setup(pg => $PG, conf => $CONF);
my $PW = 'browser password 1';
my $ADMIN_ID = mkuser('admin@t71.test', role => 'admin', password => $PW);
my $USER_ID = mkuser('user@t71.test');

# The page: a few functions the test calls, each answering what a
# dashboard would see (the status and the JSON).
my $PAGES = workdir() . '/pages';
mkdir $PAGES;
open my $fh, '>', "$PAGES/index.html" or die "$PAGES/index.html: $!";
print $fh <<'EOF';
<!doctype html>
<meta charset="utf-8">
<title>bloqr browser test</title>
<script>
async function call(method, path, body) {
  const init = { method, credentials: 'include', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { }
  return { status: r.status, json, text };
}
</script>
<p>stand-in page</p>
EOF
close $fh;
chmod 0755, $PAGES;
chmod 0644, "$PAGES/index.html";

my $POOL = pool_start($CONF, workers => 2);
my $WEB = nginx_start(upstream => $POOL->addr, example => 'nginx-dashboard.conf.example', root => $PAGES);
my $URL = $WEB->{url};
api_setup(url => $URL);

my $b = BloqrTest::Browser->new(timeout => 30);
$b->goto("$URL/admin/users");    # an app route: index.html
is($b->eval('document.title'), 'bloqr browser test', 'the page loads from the same origin as the API');

my $s = $b->eval(q{await call('GET', '/api/auth/get-session')});
is($s->{status}, 200, 'get-session before sign-in: 200');
is($s->{text}, 'null', '... null');

my $in = $b->eval(qq{await call('POST', '/api/auth/sign-in/email', { email: 'admin\@t71.test', password: '$PW' })});
is($in->{status}, 200, 'sign-in with fetch: 200') or diag explain $in;
is($in->{json}{redirect}, JSON::PP::false, '... redirect false');
my ($cookie) = grep { $_->{name} eq 'bloqr_session' } @{ $b->cookies("$URL/") };
ok($cookie, 'the browser keeps the session cookie');
ok($cookie && $cookie->{httpOnly}, '... HttpOnly');
is($cookie && $cookie->{sameSite}, 'Strict', '... SameSite=Strict');
unlike($b->eval('document.cookie') // '', qr/bloqr_session/, '... which the page cannot read');

$b->reload;
is($b->eval('document.title'), 'bloqr browser test', 'reloaded');
$s = $b->eval(q{await call('GET', '/api/auth/get-session')});
is($s->{status}, 200, 'get-session after the reload: 200');
is($s->{json}{user}{id}, $ADMIN_ID, '... signed in by the cookie alone');
my $sid = $s->{json}{session}{id};

my $p = $b->eval(qq{await call('PATCH', '/api/admin/users/$USER_ID', { tier: 'pro' })});
is($p->{status}, 200, 'PATCH by cookie alone from our page: 200') or diag explain $p;
is($p->{json}{user}{tier}, 'pro', '... the new tier');
is(sql("SELECT tier FROM users WHERE id = '$USER_ID'"), 'pro', '... stored');

my $out = $b->eval(q{await call('POST', '/api/auth/sign-out', {})});
is($out->{status}, 200, 'sign-out by cookie alone: 200') or diag explain $out;
ok($out->{json}{success}, '... success');
ok(!grep({ $_->{name} eq 'bloqr_session' } @{ $b->cookies("$URL/") }), 'the cookie is gone from the browser');
isnt(sql("SELECT revoked_at FROM sessions WHERE id = '$sid'"), '', 'the session is revoked in PostgreSQL');

$b->reload;
$s = $b->eval(q{await call('GET', '/api/auth/get-session')});
is($s->{text}, 'null', 'after sign-out and a reload: get-session null');
$p = $b->eval(qq{await call('PATCH', '/api/admin/users/$USER_ID', { tier: 'free' })});
is($p->{status}, 401, 'PATCH after sign-out: 401');
is(sql("SELECT tier FROM users WHERE id = '$USER_ID'"), 'pro', '... nothing changed');
# The old cookie, replayed by hand, is dead too.
is(req(GET => '/api/auth/get-session', bearer => undef, cookie => $cookie->{value})->{content}, 'null',
	'the old cookie replayed: null');

$b->close;
done_testing();
