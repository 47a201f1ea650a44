/* The program version: the package version from configure and, when the
 * build came from a git checkout (or from a tarball made from one), the
 * commit it was built from. */
#ifndef BLOQR_VERSION_H
#define BLOQR_VERSION_H

#include <stdio.h>

/* "0.1.0": AC_INIT's version. */
extern const char version_package[];
/* The abbreviated commit ("1a2b3c4d5e6f", "-dirty" appended for a tree
 * with uncommitted changes), or "" when unknown. */
extern const char version_commit[];

/* One line for --version: "PROG (bloqr-backend) 0.1.0 (git 1a2b3c4d5e6f)". */
void version_print(FILE *f, const char *prog);

#endif
