/* bloqr.fcgi: the FastCGI responder. Three ways to run (CONTRACT §1):
 *   pool     bloqr.fcgi -c FILE --listen ADDR [--workers N]   (for nginx)
 *   spawned  a FastCGI listening socket on stdin, no --listen  (mod_fcgid, spawn-fcgi)
 *   CGI      anything else: serve the one request in the environment */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <sodium.h>

#include "config.h"
#include "fcgi.h"
#include "log.h"
#include "pool.h"
#include "syncer.h"
#include "text.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: bloqr.fcgi [-c FILE] --listen HOST:PORT|unix:/path [--workers N] [--foreground]\n"
	    "       bloqr.fcgi [-c FILE]   (spawned: FastCGI socket on stdin; or plain CGI)\n"
	    "       bloqr.fcgi -V | -h\n"
	    "  -c, --config FILE     configuration file (default: $BLOQR_CONF)\n"
	    "  -l, --listen ADDR     run the pool on HOST:PORT or unix:/path\n"
	    "  -w, --workers N       worker processes (default: [pool] workers)\n"
	    "  -f, --foreground      accepted for compatibility: always in the foreground\n"
	    "  -V, --version         print the version and exit\n"
	    "  -h, --help            print this help and exit\n"
	    "See bloqr.fcgi(8) and bloqr.conf(5).\n");
}

static int serve(const struct conf *conf, int listen_fd, const int handoff[2], int cgi)
{
	struct app app;
	int rc;

	if (worker_init(&app, conf) < 0) {
		log_error("worker: out of memory at start");
		return 1;
	}
	rc = cgi ? worker_run_cgi(&app) : fcgi_run(&app, listen_fd, handoff);
	worker_fini(&app);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct pool pool;
	const char *conf_path = NULL;
	char err[512];
	int c, rc, cgi;

	memset(&pool, 0, sizeof pool);
	pool.listen_fd = -1;
	/* CGI mode ignores the command line (CONTRACT §1): web servers turn a
	 * query string without '=' into arguments, so "?--listen+..." would
	 * otherwise start a pool as the web server's user. */
	cgi = getenv("GATEWAY_INTERFACE") != NULL && FCGX_IsCGI();
	if (cgi)
		argc = 1;
	while ((c = getopt_long(argc, argv, "c:l:w:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'l':
			pool.listen = optarg;
			break;
		case 'w': {
			int64_t n = text_parse_uint(optarg, strlen(optarg));
			if (n < 1 || n > 256) {
				fprintf(stderr, "bloqr.fcgi: --workers must be 1 to 256\n");
				return 2;
			}
			pool.workers = (long)n;
			break;
		}
		case 'f':
			break;   /* always in the foreground: use a supervisor */
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			version_print(stdout, "bloqr.fcgi");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "bloqr.fcgi: libsodium failed to initialise\n");
		return 1;
	}
	if (conf_path == NULL)
		conf_path = conf_path_from_env();
	if (conf_path) {
		if (conf_load(&pool.conf, conf_path, err, sizeof err) < 0) {
			fprintf(stderr, "bloqr.fcgi: %s\n", err);
			return 1;
		}
	} else if (pool.listen) {
		fprintf(stderr, "bloqr.fcgi: no configuration: pass -c FILE or set BLOQR_CONF\n");
		return 1;
	} else if (conf_defaults(&pool.conf) < 0) {
		fprintf(stderr, "bloqr.fcgi: out of memory\n");
		return 1;
	}

	if (pool.listen) {
		rc = pool_run(&pool);
		if (rc == POOL_WORKER) {
			rc = serve(&pool.conf, pool.listen_fd, pool.handoff, 0);
		} else if (rc == POOL_SYNCER) {
			close(pool.listen_fd);
			close(pool.handoff[0]);
			close(pool.handoff[1]);
			rc = syncer_run(&pool.conf) < 0 ? 1 : 0;
		} else {
			rc = rc == POOL_MASTER_DONE ? 0 : 1;
		}
	} else if (!cgi && !FCGX_IsCGI()) {
		rc = serve(&pool.conf, 0, NULL, 0);     /* spawned: socket on stdin */
	} else {
		rc = serve(&pool.conf, -1, NULL, 1);
	}
	conf_free(&pool.conf);
	return rc;
}
