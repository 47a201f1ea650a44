/* The INI configuration file: any text, loaded as bloqr.fcgi would. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct conf c;
	char err[512];
	FILE *f;

	if (path[0] == '\0') {
		int fd;

		snprintf(path, sizeof path, "/tmp/bloqr-fuzz-conf-XXXXXX");
		if ((fd = mkstemp(path)) < 0)
			return 0;
		close(fd);
		unsetenv("BLOQR_DATABASE_URL");
		unsetenv("BLOQR_CACHE_PATH");
	}
	if ((f = fopen(path, "w")) == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (conf_load(&c, path, err, sizeof err) == 0) {
		(void)conf_workers(&c);
		conf_free(&c);
	}
	return 0;
}
