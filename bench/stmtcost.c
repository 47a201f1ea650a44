/* stmtcost URL SQLFILE NPARAMS ROUNDS: the time one statement takes as a
 * named prepared statement (PQexecPrepared) and as an unnamed one
 * (PQexecParams), on one connection, in alternating 1 s slices, ROUNDS of
 * each. Parameter $1 is a random number 1..1000 as text; with 6
 * parameters (the deployment list) $1..$5 are NULL and $6 is 50. Run by
 * bench/statements. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static char sql[16384];
	const char *params[8] = { 0 };
	double took[2] = { 0, 0 };
	long count[2] = { 0, 0 };
	char key[16];
	PGconn *c;
	PGresult *r;
	FILE *f;
	size_t n;
	int nparams, rounds;

	if (argc != 5 || (f = fopen(argv[2], "r")) == NULL) {
		fprintf(stderr, "usage: stmtcost URL SQLFILE NPARAMS ROUNDS\n");
		return 2;
	}
	n = fread(sql, 1, sizeof sql - 1, f);
	fclose(f);
	sql[n] = '\0';
	nparams = atoi(argv[3]);
	rounds = atoi(argv[4]);
	if (nparams < 1 || nparams > 8 || rounds < 1)
		return 2;
	c = PQconnectdb(argv[1]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "%s", PQerrorMessage(c));
		return 1;
	}
	r = PQprepare(c, "s", sql, nparams, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "%s", PQresultErrorMessage(r));
		return 1;
	}
	PQclear(r);
	for (int i = 0; i < rounds * 2; i++) {
		int named = i % 2 == 0;
		double t0 = now_s(), t;

		do {
			snprintf(key, sizeof key, "%d", rand() % 1000 + 1);
			params[0] = nparams == 6 ? NULL : key;
			params[5] = nparams == 6 ? "50" : NULL;
			r = named ? PQexecPrepared(c, "s", nparams, params, NULL, NULL, 0)
			    : PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
			if (PQresultStatus(r) != PGRES_TUPLES_OK) {
				fprintf(stderr, "%s", PQresultErrorMessage(r));
				return 1;
			}
			PQclear(r);
			count[named]++;
		} while ((t = now_s()) - t0 < 1.0);
		took[named] += t - t0;
	}
	printf("named %.1f us/stmt, unnamed %.1f us/stmt, difference %+.1f us (%+.0f%%)\n",
	    took[1] / (double)count[1] * 1e6, took[0] / (double)count[0] * 1e6,
	    (took[0] / (double)count[0] - took[1] / (double)count[1]) * 1e6,
	    ((took[0] / (double)count[0]) / (took[1] / (double)count[1]) - 1) * 100);
	PQfinish(c);
	return 0;
}
