#!/bin/sh
# Build the libFuzzer harnesses of t/fuzz/ with clang (the library sources
# instrumented, AddressSanitizer + UndefinedBehaviorSanitizer) and run each
# for FUZZ_SECONDS (default 30), FUZZ_JOBS at a time (default 2), starting
# from its seed corpus t/fuzz/corpus/NAME/. Called by `make fuzz`, which
# passes the library flags; a crash fails the run and leaves the input in
# fuzz-out/artifacts/.
#
#   run.sh SRCDIR BUILDDIR "CFLAGS" "LIBS" [HARNESS...]
set -eu

srcdir=$1 builddir=$2 cflags=$3 libs=$4
shift 4
CC_FUZZ=${CC_FUZZ:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_JOBS=${FUZZ_JOBS:-2}
out=$builddir/fuzz-out
san='-fsanitize=address,undefined -fno-sanitize-recover=undefined'

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
	echo "fuzz: $CC_FUZZ not found (install clang)" >&2
	exit 1
fi
harnesses=${*:-$(cd "$srcdir/t/fuzz" && ls fuzz_*.c | sed 's/\.c$//')}
mkdir -p "$out/obj" "$out/artifacts"

# The library, instrumented for coverage (not main(): the harnesses are
# the programs).
objs=
for f in "$srcdir"/src/*.c "$srcdir"/src/handlers/*.c "$builddir/src/cache_schema.c"; do
	o=$out/obj/$(echo "${f#"$srcdir"/}" | tr / _ | sed 's/\.c$/.o/')
	if [ ! -f "$o" ] || [ "$f" -nt "$o" ]; then
		# shellcheck disable=SC2086
		"$CC_FUZZ" -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer-no-link $san \
			-I"$srcdir/src" -I"$builddir/src" -I"$builddir" $cflags -c "$f" -o "$o"
	fi
	objs="$objs $o"
done
rm -f "$out/libbloqr-fuzz.a"
# shellcheck disable=SC2086
ar rc "$out/libbloqr-fuzz.a" $objs

for h in $harnesses; do
	# shellcheck disable=SC2086
	"$CC_FUZZ" -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer $san -I"$srcdir/src" -I"$srcdir/t/fuzz" \
		$cflags "$srcdir/t/fuzz/$h.c" "$out/libbloqr-fuzz.a" $libs -lm -o "$out/$h"
done

# Run them, FUZZ_JOBS at a time; new inputs go to fuzz-out/corpus/NAME,
# the seeds are only read.
status=0
run_one() {
	h=$1
	mkdir -p "$out/corpus/$h"
	seeds=$srcdir/t/fuzz/corpus/$h
	[ -d "$seeds" ] || seeds=
	# shellcheck disable=SC2086
	if "$out/$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$out/artifacts/$h-" "$out/corpus/$h" $seeds >"$out/$h.log" 2>&1; then
		echo "fuzz: $h: $(grep -E '^stat::number_of_executed_units' "$out/$h.log" | awk '{print $2}') runs, no crash"
	else
		echo "fuzz: $h FAILED; the end of its log ($out/$h.log):" >&2
		tail -n 40 "$out/$h.log" >&2
		return 1
	fi
}
set -- $harnesses
while [ $# -gt 0 ]; do
	pids=
	i=0
	while [ $# -gt 0 ] && [ $i -lt "$FUZZ_JOBS" ]; do
		run_one "$1" &
		pids="$pids $!"
		shift
		i=$((i + 1))
	done
	for p in $pids; do
		wait "$p" || status=1
	done
done
exit $status
