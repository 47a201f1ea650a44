/* The query console's client-side text work: unique names for columns
 * (linear time), the functions an EXPLAIN VERBOSE plan calls, the
 * statement's first word, the text[] literal of names. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_name(void *ctx, const char *name, size_t n)
{
	char *arr = ctx;
	size_t len = strlen(arr);

	(void)qt_array_add(arr, 4096, &len, name, n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *cols[256];
	char *text, *p, **names, word[16], arr[4096] = "";
	size_t len;
	int n = 0;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	qt_called_functions(text, size, count_name, arr);
	len = strlen(arr);
	(void)qt_array_end(arr, sizeof arr, &len);
	qt_first_word(text, word, sizeof word);
	(void)qt_has_word(text, "analyze");

	/* Column names: the text split at newlines. */
	for (p = text; n < 256; n++) {
		char *nl = strchr(p, '\n');
		cols[n] = p;
		if (nl == NULL) {
			n++;
			break;
		}
		*nl = '\0';
		p = nl + 1;
	}
	names = qt_unique_names(cols, n);
	if (names) {
		for (int i = 0; i < n; i++)
			for (int j = i + 1; j < n && j < i + 8; j++)
				if (strcmp(names[i], names[j]) == 0)
					__builtin_trap();     /* must be unique */
		qt_free_names(names, n);
	}
	free(text);
	return 0;
}
