#include "changelog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* One statement, one snapshot: the horizon is read in the same snapshot
 * as the rows, and pruning moves it in the same transaction as it deletes,
 * so a horizon that says "complete" is. A position of another database,
 * or whose xmax lies ahead of the server's (another timeline: a restored
 * backup), is not covered. One
 * row carries (ok, count) with payload NULL; the others a payload (never
 * NULL in the table). */
static const struct pg_stmt st_since = {
	"changelog_since",
	"WITH h AS (SELECT database_id::text = $2 AND pruned_below <= pg_snapshot_xmin($1::pg_snapshot) "
	"    AND pg_snapshot_xmax($1::pg_snapshot) <= pg_snapshot_xmax(pg_current_snapshot()) AS ok "
	"  FROM bloqr_cache_log_horizon), "
	"c AS (SELECT payload FROM bloqr_cache_log "
	"  WHERE coalesce((SELECT ok FROM h), false) "
	"    AND xid >= pg_snapshot_xmin($1::pg_snapshot) "
	"    AND NOT pg_visible_in_snapshot(xid, $1::pg_snapshot) "
	"  LIMIT 100001) "
	"SELECT coalesce((SELECT ok FROM h), false), (SELECT count(*) FROM c), NULL::text "
	"UNION ALL SELECT NULL, NULL, payload FROM (SELECT DISTINCT payload FROM c) d",
	2, true,
};

static const struct pg_stmt st_identity = {
	"changelog_identity", "SELECT database_id::text FROM bloqr_cache_log_horizon", 0, true,
};

_Static_assert(CHANGELOG_REPLAY_MAX == 100000, "st_since's LIMIT is CHANGELOG_REPLAY_MAX + 1");

static const struct pg_stmt st_prune = {
	"changelog_prune",
	"WITH h AS (UPDATE bloqr_cache_log_horizon SET pruned_below = pg_snapshot_xmin($1::pg_snapshot) "
	"  WHERE pruned_below < pg_snapshot_xmin($1::pg_snapshot)), "
	"d AS (DELETE FROM bloqr_cache_log WHERE ctid = ANY (ARRAY("
	"  SELECT ctid FROM bloqr_cache_log WHERE xid < pg_snapshot_xmin($1::pg_snapshot) LIMIT $2)) RETURNING 1) "
	"SELECT count(*) FROM d",
	2, false,
};

int changelog_identity(struct pg *pg, char *id, size_t size)
{
	PGresult *r;
	int err;

	id[0] = '\0';
	r = pg_query(pg, &st_identity, NULL, &err);
	if (r == NULL)
		return err == PG_EBUG ? CHANGELOG_GAP : err;   /* no such table: not migrated */
	if (PQntuples(r) == 1 && (size_t)PQgetlength(r, 0, 0) < size && PQgetlength(r, 0, 0) <= CHANGELOG_ID_MAX)
		memcpy(id, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
	PQclear(r);
	return id[0] ? PG_OK : CHANGELOG_GAP;
}

int changelog_position(char *buf, size_t size, const char *id, const char *snapshot)
{
	int n;

	buf[0] = '\0';
	if (id[0] == '\0' || snapshot[0] == '\0')
		return -1;
	n = snprintf(buf, size, "%s %s", id, snapshot);
	if (n < 0 || (size_t)n >= size) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

int changelog_since(struct pg *pg, const char *position, PGresult **out)
{
	char id[CHANGELOG_ID_MAX + 1];
	const char *space, *params[2];
	PGresult *r;
	int err, n, head = -1;

	*out = NULL;
	if (position == NULL || strlen(position) > CHANGELOG_POSITION_MAX ||
	    (space = strchr(position, ' ')) == NULL || (size_t)(space - position) > CHANGELOG_ID_MAX)
		return CHANGELOG_GAP;
	memcpy(id, position, (size_t)(space - position));
	id[space - position] = '\0';
	params[0] = space + 1;
	params[1] = id;
	r = pg_query(pg, &st_since, params, &err);
	if (r == NULL) {
		/* No log (a database not migrated yet) or a malformed position:
		 * the log cannot tell, re-check all. */
		if (err == PG_EBUG || err == PG_EINPUT) {
			log_warn("syncer: cannot read the change log (%s); re-checking the whole cache", pg_last_error(pg));
			return CHANGELOG_GAP;
		}
		return err;
	}
	n = PQntuples(r);
	for (int i = 0; i < n; i++)
		if (PQgetisnull(r, i, 2)) {
			head = i;
			break;
		}
	if (head < 0 || strcmp(PQgetvalue(r, head, 0), "t") != 0 ||
	    atol(PQgetvalue(r, head, 1)) > CHANGELOG_REPLAY_MAX) {
		PQclear(r);
		return CHANGELOG_GAP;
	}
	*out = r;
	return PG_OK;
}

long changelog_prune(struct pg *pg, const char *snapshot)
{
	char chunk[16];
	const char *params[] = { snapshot, chunk };
	PGresult *r;
	long n;
	int err;

	snprintf(chunk, sizeof chunk, "%d", CHANGELOG_PRUNE_CHUNK);
	r = pg_query(pg, &st_prune, params, &err);
	if (r == NULL)
		return -1;
	n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}
