/* The migration runner: see migrate.h and migrations/README.md. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_migrate.h"
#include "pg.h"

#ifndef BLOQR_DATADIR
#define BLOQR_DATADIR "/usr/local/share/bloqr"
#endif

enum mig_state { MS_PENDING = 0, MS_APPLIED, MS_CHANGED };
static const char *const state_names[] = { "pending", "applied", "changed!" };

static const char pg_sql_table_exists[] =
	"SELECT to_regclass('schema_migrations') IS NOT NULL";
static const char pg_sql_create_table[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version    text        PRIMARY KEY,"
	" name       text        NOT NULL,"
	" checksum   text        NOT NULL,"
	" applied_at timestamptz NOT NULL DEFAULT now())";
static const char pg_sql_applied[] =
	"SELECT version, checksum FROM schema_migrations";
static const char pg_sql_record[] =
	"INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";
static const char pg_sql_try_lock[] = "SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")";
static const char pg_sql_lock[] = "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")";
static const char pg_sql_unlock[] = "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")";

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* One line, whatever a server or library message held. */
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
}

/* "a" + "/" + "b", malloc'd; NULL when out of memory. */
static char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (p == NULL)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

/* ------------------------------------------------------------- files -- */

bool migrate_name_valid(const char *f)
{
	size_t n = strlen(f);

	/* "0001_x.sql" is the shortest. */
	if (n < 10 || strcmp(f + n - 4, ".sql") != 0 || f[4] != '_')
		return false;
	for (size_t i = 0; i < 4; i++)
		if (f[i] < '0' || f[i] > '9')
			return false;
	for (size_t i = 5; i < n - 4; i++)
		if (!((f[i] >= 'a' && f[i] <= 'z') || (f[i] >= '0' && f[i] <= '9') || f[i] == '_'))
			return false;
	return true;
}

void migrate_checksum(const void *p, size_t n, char out[static 65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, p, n);
	sodium_bin2hex(out, 65, h, sizeof h);
}

/* Read the regular file at path into a malloc'd NUL-terminated buffer. */
static int read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *p = NULL;
	size_t cap, n = 0;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > MIGRATE_MAX_FILE) {
		set_err(err, errlen, "%s: larger than %ld bytes", path, MIGRATE_MAX_FILE);
		goto fail;
	}
	/* One byte more than the size, to see a file that grew meanwhile. */
	cap = (size_t)st.st_size + 2;
	p = malloc(cap);
	if (p == NULL) {
		set_err(err, errlen, "out of memory");
		goto fail;
	}
	while ((r = read(fd, p + n, cap - 1 - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		n += (size_t)r;
		if (n == cap - 1) {
			set_err(err, errlen, "%s: changed while being read", path);
			goto fail;
		}
	}
	p[n] = '\0';
	if (memchr(p, '\0', n) != NULL) {
		set_err(err, errlen, "%s: contains a NUL byte", path);
		goto fail;
	}
	close(fd);
	*data = p;
	*len = n;
	return 0;
fail:
	free(p);
	close(fd);
	return -1;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct migrate_file *)a)->path, ((const struct migrate_file *)b)->path);
}

void migrate_set_free(struct migrate_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->v[i].name);
		free(set->v[i].path);
		free(set->v[i].sql);
	}
	free(set->v);
	set->v = NULL;
	set->n = 0;
}

int migrate_scan(const char *dir, struct migrate_set *set, char *err, size_t errlen)
{
	DIR *d;
	struct dirent *e;
	size_t cap = 0;

	set->v = NULL;
	set->n = 0;
	if (sodium_init() < 0) {
		set_err(err, errlen, "cannot initialise libsodium");
		return -1;
	}
	d = opendir(dir);
	if (d == NULL) {
		set_err(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		struct migrate_file *f;
		size_t len;

		if (e->d_name[0] == '.')
			continue;
		if (!migrate_name_valid(e->d_name)) {
			set_err(err, errlen, "%s/%s: not a migration file name "
			    "(NNNN_name.sql, name of a-z 0-9 _)", dir, e->d_name);
			goto fail;
		}
		if (set->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct migrate_file *nv = realloc(set->v, ncap * sizeof *nv);

			if (nv == NULL) {
				set_err(err, errlen, "out of memory");
				goto fail;
			}
			set->v = nv;
			cap = ncap;
		}
		f = &set->v[set->n];
		memset(f, 0, sizeof *f);
		set->n++;
		len = strlen(e->d_name);
		memcpy(f->version, e->d_name, 4);
		f->version[4] = '\0';
		f->name = strndup(e->d_name + 5, len - 5 - 4);
		f->path = path_join(dir, e->d_name);
		if (f->name == NULL || f->path == NULL) {
			set_err(err, errlen, "out of memory");
			goto fail;
		}
		errno = 0;
	}
	if (errno != 0) {
		set_err(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	d = NULL;
	if (set->n > 0)
		qsort(set->v, set->n, sizeof *set->v, cmp_file);
	for (size_t i = 0; i < set->n; i++) {
		struct migrate_file *f = &set->v[i];

		if (i > 0 && strcmp(f->version, set->v[i - 1].version) == 0) {
			set_err(err, errlen, "%s and %s have the same version %s",
			    set->v[i - 1].path, f->path, f->version);
			goto fail;
		}
		if (read_file(f->path, &f->sql, &f->len, err, errlen) < 0)
			goto fail;
		migrate_checksum(f->sql, f->len, f->checksum);
	}
	return 0;
fail:
	if (d != NULL)
		closedir(d);
	return -1;
}

const char *migrate_default_dir(void)
{
	struct stat st;

	if (stat("migrations", &st) == 0 && S_ISDIR(st.st_mode))
		return "./migrations";
	return BLOQR_DATADIR "/migrations";
}

/* -------------------------------------------------------- PostgreSQL -- */

/* Server notices (e.g. from the role block of 0001) as one line each. */
static void pg_notice(void *arg, const PGresult *r)
{
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

	(void)arg;
	fprintf(stderr, "postgres: %s: %s\n", sev ? sev : "NOTICE", msg ? msg : "");
}

/* The primary message of a failed result (or of the connection). */
static const char *pg_msg(PGconn *conn, const PGresult *r)
{
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	return m ? m : PQerrorMessage(conn);
}

/* Run sql (with nparams text parameters). Returns the result (caller
 * PQclears) when the command succeeded, else NULL with "what: message" in
 * err. */
static PGresult *pg_run(PGconn *conn, const char *sql, int nparams, const char *const *params,
    const char *what, char *err, size_t errlen)
{
	PGresult *r;
	ExecStatusType st;

	if (nparams > 0)
		r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	else
		r = PQexec(conn, sql);
	st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return r;
	set_err(err, errlen, "postgres: %s: %s", what, pg_msg(conn, r));
	PQclear(r);
	return NULL;
}

/* First column of the first row is 't'? 1 / 0, or -1 on error. */
static int pg_bool(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *r = pg_run(conn, sql, 0, NULL, what, err, errlen);
	int v;

	if (r == NULL)
		return -1;
	v = PQntuples(r) > 0 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return v;
}

static void pg_abort(PGconn *conn)
{
	if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
}

/* Fill state[] from the PostgreSQL schema_migrations. */
static int pg_read_state(PGconn *conn, const struct migrate_set *set, int *state,
    char *err, size_t errlen)
{
	PGresult *r = pg_run(conn, pg_sql_applied, 0, NULL, "reading schema_migrations", err, errlen);

	if (r == NULL)
		return -1;
	for (size_t i = 0; i < set->n; i++) {
		state[i] = MS_PENDING;
		for (int row = 0; row < PQntuples(r); row++) {
			if (strcmp(PQgetvalue(r, row, 0), set->v[i].version) != 0)
				continue;
			state[i] = strcmp(PQgetvalue(r, row, 1), set->v[i].checksum) == 0
			    ? MS_APPLIED : MS_CHANGED;
			break;
		}
	}
	PQclear(r);
	return 0;
}

/* The line of s[0..len) holding character number pos (1-based, as in
 * PG_DIAG_STATEMENT_POSITION, which counts characters, not bytes). */
static long line_of(const char *s, size_t len, long pos)
{
	long line = 1, ch = 0;

	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)s[i] & 0xC0) != 0x80 && ++ch >= pos)
			break;
		if (s[i] == '\n')
			line++;
	}
	return line;
}

/* Apply one file and record it, in one transaction. */
static int pg_apply(PGconn *conn, const struct migrate_file *f, char *err, size_t errlen)
{
	const char *params[3] = { f->version, f->name, f->checksum };
	PGresult *r = NULL;
	ExecStatusType st;

	r = pg_run(conn, "BEGIN", 0, NULL, "BEGIN", err, errlen);
	if (r == NULL)
		goto fail;
	PQclear(r);
	/* The whole file in one simple query: several statements, one
	 * transaction (ours). */
	r = PQexec(conn, f->sql);
	st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
		const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;

		if (pos != NULL)
			set_err(err, errlen, "postgres: %s: line %ld: %s; nothing of it was applied",
			    f->path, line_of(f->sql, f->len, atol(pos)), pg_msg(conn, r));
		else
			set_err(err, errlen, "postgres: %s: %s; nothing of it was applied",
			    f->path, pg_msg(conn, r));
		goto fail;
	}
	PQclear(r);
	r = NULL;
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		set_err(err, errlen, "postgres: %s: a migration must not contain BEGIN, COMMIT or "
		    "ROLLBACK (the runner wraps it in a transaction); part of it may be applied",
		    f->path);
		goto fail;
	}
	r = pg_run(conn, pg_sql_record, 3, params, "recording the migration", err, errlen);
	if (r == NULL)
		goto fail;
	PQclear(r);
	r = pg_run(conn, "COMMIT", 0, NULL, "COMMIT", err, errlen);
	if (r == NULL)
		goto fail;
	/* COMMIT of a failed transaction answers ROLLBACK. */
	if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
		set_err(err, errlen, "postgres: %s: the transaction was rolled back", f->path);
		goto fail;
	}
	PQclear(r);
	return 0;
fail:
	PQclear(r);
	pg_abort(conn);
	return -1;
}

/* ------------------------------------------------------------ SQLite -- */

/* When run as root for a pool that drops to [pool] user, a cache file that
 * does not exist yet is created here and given to that user, so that the
 * workers can write it. Any other case is left to cache_mig_open. */
static int prepare_cache_file(const struct conf *c, char *err, size_t errlen)
{
	struct passwd *pw;
	struct stat st;
	int fd;

	if (geteuid() != 0 || c->pool_user == NULL || c->pool_user[0] == '\0')
		return 0;
	if (stat(c->cache_path, &st) == 0 || errno != ENOENT)
		return 0;
	errno = 0;
	pw = getpwnam(c->pool_user);
	if (pw == NULL) {
		set_err(err, errlen, "sqlite: [pool] user %s: no such user", c->pool_user);
		return -1;
	}
	fd = open(c->cache_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return 0;
	if (fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
		set_err(err, errlen, "sqlite: %s: cannot give it to user %s: %s",
		    c->cache_path, c->pool_user, strerror(errno));
		close(fd);
		unlink(c->cache_path);
		return -1;
	}
	close(fd);
	return 0;
}

static int sqlite_read_state(struct cache_mig *m, const struct migrate_set *set, int *state,
    char *err, size_t errlen)
{
	char sum[65];

	for (size_t i = 0; i < set->n; i++) {
		int found = cache_mig_checksum(m, set->v[i].version, sum);

		if (found < 0) {
			set_err(err, errlen, "sqlite: reading schema_migrations: %s", cache_mig_error(m));
			return -1;
		}
		state[i] = found == 0 ? MS_PENDING
		    : strcmp(sum, set->v[i].checksum) == 0 ? MS_APPLIED : MS_CHANGED;
	}
	return 0;
}

/* ------------------------------------------------------------ runner -- */

static void print_status(FILE *out, const char *side, const struct migrate_set *set, const int *state)
{
	for (size_t i = 0; i < set->n; i++)
		fprintf(out, "%s %s_%s %s\n", side, set->v[i].version, set->v[i].name,
		    state_names[state[i]]);
}

/* The first file whose recorded checksum differs, as an error. */
static int check_unchanged(const char *side, const struct migrate_set *set, const int *state,
    char *err, size_t errlen)
{
	for (size_t i = 0; i < set->n; i++) {
		if (state[i] != MS_CHANGED)
			continue;
		set_err(err, errlen, "%s: %s was changed after it was applied (its checksum differs "
		    "from the one recorded); restore it and put the change in a new migration; "
		    "nothing was applied", side, set->v[i].path);
		return -1;
	}
	return 0;
}

static int scan_side(const char *dir, const char *side, struct migrate_set *set, int **state,
    char *err, size_t errlen)
{
	char *sub = path_join(dir, side);
	int rc;

	if (sub == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	if (access(sub, F_OK) < 0 && errno == ENOENT) {
		set_err(err, errlen, "%s: no such directory (pass --dir DIR, the directory "
		    "holding postgres/ and sqlite/)", sub);
		free(sub);
		return -1;
	}
	rc = migrate_scan(sub, set, err, errlen);
	free(sub);
	if (rc < 0)
		return -1;
	*state = calloc(set->n + 1, sizeof **state);
	if (*state == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int migrate_run(const struct conf *c, const char *dir, bool status_only, FILE *out,
    char *err, size_t errlen)
{
	struct migrate_set pgset = { NULL, 0 }, sqset = { NULL, 0 };
	int *pgstate = NULL, *sqstate = NULL;
	bool use_cache = c->cache_path != NULL && c->cache_path[0] != '\0';
	bool locked = false;
	struct pg *pg = NULL;
	struct cache_mig *cm = NULL;
	PGconn *conn;
	size_t applied;
	int rc = -1, v;

	err[0] = '\0';
	if (scan_side(dir, "postgres", &pgset, &pgstate, err, errlen) < 0)
		goto done;
	if (use_cache && scan_side(dir, "sqlite", &sqset, &sqstate, err, errlen) < 0)
		goto done;

	/* No statement timeout: a migration may take long. The migration lock
	 * is a session advisory lock held across the files' transactions: it
	 * needs a session of its own, so the direct listen_url when set (url
	 * may be a transaction-mode pooler). */
	pg = pg_new(conf_listen_url(c), 0, "bloqr-admin migrate");
	if (pg == NULL) {
		set_err(err, errlen, "out of memory");
		goto done;
	}
	if (pg_connect(pg) != PG_OK || (conn = pg_conn(pg)) == NULL) {
		set_err(err, errlen, "postgres: cannot connect: %s", pg_last_error(pg));
		goto done;
	}
	PQsetNoticeReceiver(conn, pg_notice, NULL);

	if (!status_only) {
		v = pg_bool(conn, pg_sql_try_lock, "taking the migration lock", err, errlen);
		if (v < 0)
			goto done;
		if (v == 0) {
			fprintf(out, "postgres: waiting for another migration to finish\n");
			fflush(out);
			if (pg_bool(conn, pg_sql_lock, "taking the migration lock", err, errlen) < 0)
				goto done;
		}
		locked = true;
	}
	v = pg_bool(conn, pg_sql_table_exists, "looking for schema_migrations", err, errlen);
	if (v < 0)
		goto done;
	if (v == 0 && !status_only) {
		PGresult *r = pg_run(conn, pg_sql_create_table, 0, NULL,
		    "creating schema_migrations", err, errlen);
		if (r == NULL)
			goto done;
		PQclear(r);
		v = 1;
	}
	if (v == 1 && pg_read_state(conn, &pgset, pgstate, err, errlen) < 0)
		goto done;

	if (use_cache) {
		struct stat st;

		/* --status does not create the cache file: a missing one has
		 * every migration pending. */
		if (status_only && stat(c->cache_path, &st) < 0 && errno == ENOENT) {
			cm = NULL;
		} else {
			char e[512];

			if (!status_only && prepare_cache_file(c, err, errlen) < 0)
				goto done;
			cm = cache_mig_open(c->cache_path, e, sizeof e);
			if (cm == NULL) {
				set_err(err, errlen, "sqlite: %s", e);
				goto done;
			}
			if (sqlite_read_state(cm, &sqset, sqstate, err, errlen) < 0)
				goto done;
		}
	}

	if (status_only) {
		print_status(out, "postgres", &pgset, pgstate);
		if (use_cache)
			print_status(out, "sqlite", &sqset, sqstate);
		else
			fprintf(out, "sqlite: skipped: no cache configured ([cache] path is empty)\n");
		rc = 0;
		goto done;
	}

	/* Nothing is applied on either side while any applied file changed. */
	if (check_unchanged("postgres", &pgset, pgstate, err, errlen) < 0 ||
	    (use_cache && check_unchanged("sqlite", &sqset, sqstate, err, errlen) < 0))
		goto done;

	applied = 0;
	for (size_t i = 0; i < pgset.n; i++) {
		if (pgstate[i] != MS_PENDING)
			continue;
		if (pg_apply(conn, &pgset.v[i], err, errlen) < 0)
			goto done;
		fprintf(out, "postgres: applied %s_%s\n", pgset.v[i].version, pgset.v[i].name);
		fflush(out);
		applied++;
	}
	if (applied == 0)
		fprintf(out, "postgres: up to date\n");

	if (!use_cache) {
		fprintf(out, "sqlite: skipped: no cache configured ([cache] path is empty)\n");
		rc = 0;
		goto done;
	}
	applied = 0;
	for (size_t i = 0; i < sqset.n; i++) {
		char e[512];
		int r;

		if (sqstate[i] != MS_PENDING)
			continue;
		r = cache_mig_apply(cm, sqset.v[i].version, sqset.v[i].name, sqset.v[i].checksum,
		    sqset.v[i].sql, e, sizeof e);
		if (r < 0) {
			set_err(err, errlen, "sqlite: %s: %s; nothing of it was applied",
			    sqset.v[i].path, e);
			goto done;
		}
		if (r == 0) {
			fprintf(out, "sqlite: applied %s_%s\n", sqset.v[i].version, sqset.v[i].name);
			fflush(out);
			applied++;
		}
	}
	if (applied == 0)
		fprintf(out, "sqlite: up to date\n");
	rc = 0;
done:
	cache_mig_close(cm);
	if (locked && (conn = pg_conn(pg)) != NULL) {
		pg_abort(conn);
		PQclear(PQexec(conn, pg_sql_unlock));
	}
	pg_free(pg);
	migrate_set_free(&pgset);
	migrate_set_free(&sqset);
	free(pgstate);
	free(sqstate);
	return rc;
}
