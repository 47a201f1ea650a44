#include "version.h"

#include "version_commit.h"   /* generated: BLOQR_GIT_COMMIT (Makefile.am) */

const char version_package[] = PACKAGE_VERSION;
const char version_commit[] = BLOQR_GIT_COMMIT;

void version_print(FILE *f, const char *prog)
{
	fprintf(f, "%s (%s) %s", prog, PACKAGE_NAME, version_package);
	if (version_commit[0] != '\0')
		fprintf(f, " (git %s)", version_commit);
	fputc('\n', f);
}
