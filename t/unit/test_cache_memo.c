/* cache_memo.c: an answer is given again only for the same key, at the
 * same file version and within its time; least recently used goes first. */
#include "tap.h"
#include "cache_memo.h"

static void key_of(struct buf *k, const char *s)
{
	buf_reset(k);
	buf_append(k, s, strlen(s) + 1);
}

int main(void)
{
	struct cache_memo m;
	struct buf k = BUF_INIT, out = BUF_INIT;
	unsigned char v1[CACHE_MEMO_VERSION] = { 1 }, v2[CACHE_MEMO_VERSION] = { 2 };
	long n = -1;

	cache_memo_init(&m);
	key_of(&k, "list a");
	ok(!cache_memo_get(&m, &k, v1, 100, &out, &n), "empty memo: nothing");
	cache_memo_put(&m, &k, v1, 200, "[1,2]", 5, 2);
	ok(cache_memo_get(&m, &k, v1, 150, &out, &n), "same key, version, in time: kept answer");
	is_str(out.data, "[1,2]", "rows appended");
	is_int(n, 2, "and the count");
	ok(cache_memo_get(&m, &k, v1, 200, &out, &n), "valid up to and including until");
	is_str(out.data, "[1,2][1,2]", "appended again, after what was there");
	ok(!cache_memo_get(&m, &k, v2, 150, &out, &n), "another file version: nothing");
	ok(!cache_memo_get(&m, &k, v1, 150, &out, &n), "and the entry is gone for good");

	cache_memo_put(&m, &k, v1, 200, "[1,2]", 5, 2);
	ok(!cache_memo_get(&m, &k, v1, 201, &out, &n), "past until: nothing");

	key_of(&k, "count");
	cache_memo_put(&m, &k, v1, 200, NULL, 0, 42);
	buf_reset(&out);
	n = -1;
	ok(cache_memo_get(&m, &k, v1, 100, NULL, &n), "a count has no rows");
	is_int(n, 42, "count kept");
	key_of(&k, "coun");
	ok(!cache_memo_get(&m, &k, v1, 100, NULL, &n), "a prefix of a key is another key");

	/* Fill every slot, touch the first, add one more: the second goes. */
	cache_memo_clear(&m);
	for (int i = 0; i < CACHE_MEMO_SLOTS; i++) {
		char name[16];
		snprintf(name, sizeof name, "k%d", i);
		key_of(&k, name);
		cache_memo_put(&m, &k, v1, 1000, name, strlen(name), i);
	}
	key_of(&k, "k0");
	ok(cache_memo_get(&m, &k, v1, 1, NULL, &n), "k0 kept");
	key_of(&k, "new");
	cache_memo_put(&m, &k, v1, 1000, "x", 1, 1);
	ok(cache_memo_get(&m, &k, v1, 1, NULL, &n), "the new one is kept");
	key_of(&k, "k0");
	ok(cache_memo_get(&m, &k, v1, 1, NULL, &n), "the recently used k0 stays");
	key_of(&k, "k1");
	ok(!cache_memo_get(&m, &k, v1, 1, NULL, &n), "the least recently used k1 went");
	key_of(&k, "k2");
	ok(cache_memo_get(&m, &k, v1, 1, NULL, &n), "the others stay");

	key_of(&k, "big");
	{
		static char big[CACHE_MEMO_MAX_BYTES + 1];
		cache_memo_put(&m, &k, v1, 1000, big, sizeof big, 1);
		ok(!cache_memo_get(&m, &k, v1, 1, NULL, &n), "an answer over the size limit is not kept");
	}
	cache_memo_clear(&m);
	key_of(&k, "k0");
	ok(!cache_memo_get(&m, &k, v1, 1, NULL, &n), "clear forgets everything");

	cache_memo_free(&m);
	buf_free(&k);
	buf_free(&out);
	return done_testing();
}
