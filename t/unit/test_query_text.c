/* query_text.c: unique column names in linear time, the functions a plan
 * calls, a statement's first word. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query_text.h"
#include "tap.h"

static char got[4096];

static int collect(void *ctx, const char *name, size_t n)
{
	(void)ctx;
	if (got[0])
		strncat(got, " ", sizeof got - strlen(got) - 1);
	strncat(got, name, n < sizeof got - strlen(got) - 1 ? n : sizeof got - strlen(got) - 1);
	return 0;
}

static const char *calls(const char *plan)
{
	got[0] = '\0';
	qt_called_functions(plan, strlen(plan), collect, NULL);
	return got;
}

int main(void)
{
	static const char *a[] = { "?column?", "?column?", "?column?_2" };
	static const char *b[] = { "a", "a", "a_2", "a", "a_2_2", "b" };
	enum { N = 1664 };
	const char *many[N];
	char **names, word[16], arr[64];
	size_t len = 0;
	clock_t t0;

	names = qt_unique_names(a, 3);
	is_str(names[0], "?column?", "first keeps its name");
	is_str(names[1], "?column?_2", "second gets _2");
	is_str(names[2], "?column?_2_2", "a real ?column?_2 after it gets _2_2");
	qt_free_names(names, 3);
	names = qt_unique_names(b, 6);
	is_str(names[2], "a_2_2", "a_2 taken by the second a");
	is_str(names[3], "a_3", "third a");
	is_str(names[4], "a_2_2_2", "a_2_2 taken");
	is_str(names[5], "b", "b");
	qt_free_names(names, 6);
	for (int i = 0; i < N; i++)
		many[i] = "a";
	t0 = clock();
	names = qt_unique_names(many, N);
	ok(names != NULL, "1664 columns of one name");
	is_str(names[N - 1], "a_1664", "the last is a_1664");
	ok((double)(clock() - t0) / CLOCKS_PER_SEC < 0.2, "in well under a second");
	qt_free_names(names, N);
	names = qt_unique_names(NULL, 0);
	ok(names != NULL, "no columns");
	qt_free_names(names, 0);

	is_str(calls("Output: pg_advisory_xact_lock('1'::bigint), pg_sleep('3'::double precision)"),
	    "pg_advisory_xact_lock pg_sleep", "two calls");
	is_str(calls("Output: 'pg_advisory_lock(1)'::text, upper('it''s f(x)'::text)"), "upper",
	    "nothing inside a literal");
	is_str(calls("Function Call: pg_catalog.generate_series(1, 10)"), "generate_series",
	    "the schema is not part of the name");
	is_str(calls("Output: \"Weird \"\"Name\"\"\"(1), x.\"q\"(2)"), "Weird \"Name\" q", "quoted names");
	is_str(calls("Filter: (a = ANY ('{1,2}'::integer[])) AND numeric(10,2)"), "numeric", "ANY ( is no call");
	is_str(calls("Output: count(*) OVER (?), row_number() OVER (?)"), "count row_number", "window calls");
	is_str(calls("Output: f"), "", "no call");
	is_str(calls("'unterminated"), "", "an unterminated literal");

	qt_first_word("  /* a /* nested */ comment */ -- line\n ( (SeLeCt 1))", word, sizeof word);
	is_str(word, "select", "first word after comments and parentheses");
	qt_first_word("EXPLAIN ANALYZE x", word, sizeof word);
	is_str(word, "explain", "explain");
	qt_first_word("/* never closed", word, sizeof word);
	is_str(word, "", "nothing but a comment");
	ok(qt_has_word("explain (ANALYZE true) select", "analyze"), "has ANALYZE");
	ok(!qt_has_word("explain select analyzed", "analyze"), "analyzed is another word");

	ok(qt_array_add(arr, sizeof arr, &len, "a\"b", 3) == 0 && qt_array_add(arr, sizeof arr, &len, "c\\", 2) == 0 &&
	    qt_array_end(arr, sizeof arr, &len) == 0, "array literal built");
	is_str(arr, "{\"a\\\"b\",\"c\\\\\"}", "quotes and backslashes escaped");
	len = 0;
	ok(qt_array_end(arr, sizeof arr, &len) == 0, "empty array");
	is_str(arr, "{}", "{}");
	len = 0;
	ok(qt_array_add(arr, 8, &len, "toolongname", 11) < 0, "does not overflow");
	return done_testing();
}
