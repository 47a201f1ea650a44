/* The syncer: one process per host (a child of the pool master) that
 * LISTENs on bloqr_cache and applies every announced change to the host's
 * L1 cache, so all hosts stop serving old data within a second or two. */
#ifndef BLOQR_SYNCER_H
#define BLOQR_SYNCER_H

#include "config.h"

/* Run until SIGTERM/SIGINT/SIGQUIT. Returns 0, or -1 when it could not
 * start. */
int syncer_run(const struct conf *conf);

#endif
