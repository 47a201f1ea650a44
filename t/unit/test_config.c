/* config.c: the INI file, defaults, environment overrides, error messages. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static char path[] = "/tmp/bloqr-test-conf-XXXXXX";

static int load(const char *text, struct conf *c, char *err, size_t len)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	return conf_load(c, path, err, len);
}

int main(void)
{
	struct conf c;
	char err[512] = "";
	int fd = mkstemp(path);

	close(fd);
	unsetenv("BLOQR_DATABASE_URL");
	unsetenv("BLOQR_CACHE_PATH");

	ok(load("", &c, err, sizeof err) == 0, "empty file loads");
	is_str(c.db_url, "postgresql:///bloqr?host=/run/postgresql", "default url");
	is_int(c.db_statement_timeout_ms, 5000, "default statement timeout");
	is_str(c.cache_path, "/var/lib/bloqr/cache.db", "default cache path");
	is_int(c.cache_max_age, 300, "default max_age");
	is_int(c.cache_strategy, CONF_WRITE_THROUGH, "default strategy");
	is_int(c.cache_auth_grace, 60, "default auth_grace");
	is_str(c.pool_listen, "127.0.0.1:9000", "default listen");
	ok(conf_workers(&c) >= 1, "workers default to the CPUs");
	is_int(c.http_max_body, 1048576, "default max_body");
	ok(c.http_cookie_secure, "cookie_secure defaults to true");
	conf_free(&c);

	ok(load("; comment\n# comment\n[database]\nurl = postgresql://h/db?a=1;b=2   ; why\n"
	    "query_url = postgresql:///q?user=bloqr_query\n"
	    "                     ; a continued comment line\n"
	    "[cache]\npath =\nmax_age=10\nstrategy = lazy\nauth_grace = 0\n"
	    "[pool]\nlisten = unix:/run/bloqr.sock\nworkers = 3\nmax_requests = 500\nuser = www-data\n"
	    "[http]\nmax_body = 100\ncookie_secure = false\n", &c, err, sizeof err) == 0,
	    "full file loads: %s", err);
	is_str(c.db_url, "postgresql://h/db?a=1;b=2", "';' inside a value kept, inline comment dropped");
	is_str(c.db_query_url, "postgresql:///q?user=bloqr_query", "query_url");
	is_str(c.cache_path, "", "empty cache path = disabled");
	is_int(c.cache_max_age, 10, "max_age");
	is_int(c.cache_strategy, CONF_LAZY, "strategy lazy");
	is_int(c.cache_auth_grace, 0, "auth_grace 0");
	is_str(c.pool_listen, "unix:/run/bloqr.sock", "unix listen");
	is_int(conf_workers(&c), 3, "workers");
	is_int(c.pool_max_requests, 500, "max_requests");
	is_str(c.pool_user, "www-data", "user");
	is_int(c.http_max_body, 100, "max_body");
	ok(!c.http_cookie_secure, "cookie_secure false");
	conf_free(&c);

	ok(load("[database]\nurl = postgresql://pooler/db\n", &c, err, sizeof err) == 0, "loads without listen_url");
	is_str(c.db_listen_url, "", "listen_url empty by default");
	is_str(conf_listen_url(&c), "postgresql://pooler/db", "the listener uses url when listen_url is empty");
	conf_free(&c);
	ok(load("[database]\nurl = postgresql://pooler/db\nlisten_url = postgresql://direct/db\n", &c, err,
	    sizeof err) == 0, "loads listen_url");
	is_str(conf_listen_url(&c), "postgresql://direct/db", "the listener uses listen_url");
	conf_free(&c);

	setenv("BLOQR_DATABASE_URL", "postgresql:///from-env", 1);
	setenv("BLOQR_LISTEN_URL", "postgresql:///listen-env", 1);
	setenv("BLOQR_CACHE_PATH", "/tmp/env.db", 1);
	ok(load("[database]\nurl = postgresql:///file\nlisten_url = postgresql:///lfile\n", &c, err, sizeof err) == 0,
	    "loads with env");
	is_str(c.db_url, "postgresql:///from-env", "BLOQR_DATABASE_URL overrides the file");
	is_str(c.db_listen_url, "postgresql:///listen-env", "BLOQR_LISTEN_URL overrides the file");
	is_str(c.cache_path, "/tmp/env.db", "BLOQR_CACHE_PATH overrides the file");
	conf_free(&c);
	unsetenv("BLOQR_DATABASE_URL");
	unsetenv("BLOQR_LISTEN_URL");
	unsetenv("BLOQR_CACHE_PATH");

	ok(load("[database]\nurl = x\nbogus = 1\n", &c, err, sizeof err) < 0, "unknown key refused");
	ok(strstr(err, path) && strstr(err, ":3:") && strstr(err, "bogus"), "names file, line, key: %s", err);
	ok(load("[pool]\nworkers = many\n", &c, err, sizeof err) < 0, "non-number refused");
	ok(strstr(err, ":2:") && strstr(err, "pool.workers"), "names line and key: %s", err);
	ok(load("[pool]\nworkers = 0\n", &c, err, sizeof err) < 0, "workers = 0 refused");
	ok(load("[pool]\nworkers = 9999\n", &c, err, sizeof err) < 0, "workers out of range refused");
	ok(load("[http]\nmax_body = -5\n", &c, err, sizeof err) < 0, "negative refused");
	ok(load("[http]\ncookie_secure = maybe\n", &c, err, sizeof err) < 0, "bad boolean refused");
	ok(load("[cache]\nstrategy = write-back\n", &c, err, sizeof err) < 0, "bad strategy refused");
	ok(strstr(err, "cache.strategy"), "names the key: %s", err);
	ok(load("[http]\ntrusted_origins = admin.example\n", &c, err, sizeof err) < 0, "an origin without scheme refused");
	ok(strstr(err, ":2:") && strstr(err, "http.trusted_origins"), "names line and key: %s", err);
	ok(load("[http]\ntrusted_origins = https://a.example/path\n", &c, err, sizeof err) < 0, "an origin with a path refused");
	ok(load("[http]\ntrusted_origins = https://a.example  http://b.example:8080\n", &c, err, sizeof err) == 0 &&
	    strcmp(c.http_trusted_origins, "https://a.example  http://b.example:8080") == 0, "two origins kept");
	conf_free(&c);
	ok(load("[nope]\n", &c, err, sizeof err) < 0, "unknown section refused");
	ok(load("url = x\n", &c, err, sizeof err) < 0, "key outside a section refused");
	ok(load("[database\n", &c, err, sizeof err) < 0, "broken section header refused");
	ok(load("[database]\njust words\n", &c, err, sizeof err) < 0, "line without '=' refused");
	ok(load("[database]\nurl =\n", &c, err, sizeof err) < 0, "empty database url refused");
	unlink(path);
	ok(conf_load(&c, path, err, sizeof err) < 0, "missing file refused");
	ok(strstr(err, path) && strstr(err, "cannot read"), "message names the file: %s", err);
	return done_testing();
}
