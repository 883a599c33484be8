#!/bin/sh
# tests/fuzz/run.sh -- runs libFuzzer targets for a bounded time and reports crashers.
#
#   sh tests/fuzz/run.sh FUZZ_BUILD_DIR SECONDS PARALLEL TARGET...
# Runs FUZZ_BUILD_DIR/tests/fuzz/fuzz_TARGET for SECONDS seconds each, PARALLEL at a
# time (one process each: the machine's cores, not more). Each starts from the
# checked-in seeds tests/fuzz/corpus/TARGET/ and the crashers tests/fuzz/regress/TARGET/
# (read only) and writes what it learns into FUZZ_BUILD_DIR/fuzz-run/TARGET/
# (kept between runs, so a second run resumes). `make fuzz` and the fuzz stage of
# scripts/test.sh call it. Exits 1 when a target crashed, leaked, timed out or
# ran out of memory, after printing each such input (and the end of its log)
# with where to put it: tests/fuzz/regress/TARGET/<a name saying what it is>.
# Inputs libFuzzer only found slow (slow-unit-*, over 10 s each) are listed as
# notes and do not fail the run: the checkpoint loader's child-process limit
# makes some inputs slow by design. FUZZ_SEED, when set, is libFuzzer's -seed
# (the fuzz stage of scripts/test.sh sets it, so CI explores the same inputs
# on every run); unset, each run explores new ones.
set -u
[ $# -ge 4 ] || { echo "usage: $0 FUZZ_BUILD_DIR SECONDS PARALLEL TARGET..." >&2; exit 2; }
B=$1 secs=$2 par=$3
shift 3
SRC=$(cd "$(dirname "$0")/../.." && pwd)

run_one() {
    t=$1
    w="$B/fuzz-run/$t"
    mkdir -p "$w/corpus" "$w/artifacts"
    rm -f "$w/artifacts/"*
    # -timeout: one input taking 25 s is a hang (the checkpoint target's
    # child-process limit is 2 s, the library's default 10 s);
    # -rss_limit_mb: the readers must stay far below 2 GB on any input; -max_len: inputs as large as the
    # biggest seed (a 10-image IDX slice), no more.
    "$B/tests/fuzz/fuzz_$t" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
        -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 -artifact_prefix="$w/artifacts/" \
        "$w/corpus" "$SRC/tests/fuzz/corpus/$t" "$SRC/tests/fuzz/regress/$t" >"$w/log" 2>&1
    echo $? >"$w/status"
}

status=0
set -- "$@"
while [ $# -gt 0 ]; do
    batch=""
    i=0
    while [ $# -gt 0 ] && [ "$i" -lt "$par" ]; do
        batch="$batch $1"
        shift
        i=$((i + 1))
    done
    for t in $batch; do
        [ -x "$B/tests/fuzz/fuzz_$t" ] || { echo "fuzz: $B/tests/fuzz/fuzz_$t not built" >&2; exit 2; }
        echo "fuzz: running $t for $secs s"
        run_one "$t" &
    done
    wait
    for t in $batch; do
        w="$B/fuzz-run/$t"
        rc=$(cat "$w/status" 2>/dev/null || echo 1)
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -n 1)
        found=$(find "$w/artifacts" -type f ! -name 'slow-unit-*' | sort)
        slow=$(find "$w/artifacts" -type f -name 'slow-unit-*' | sort)
        for f in $slow; do
            echo "fuzz: $t: note: slow input $f ($(wc -c <"$f") bytes; not a failure)"
        done
        if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
            echo "fuzz: $t: ok (${runs:-?} runs, no crash)"
            continue
        fi
        status=1
        echo "fuzz: $t: FAILED (libFuzzer exit $rc, ${runs:-?} runs); end of $w/log:"
        tail -n 60 "$w/log"
        for f in $found; do
            echo "fuzz: $t: crasher $f ($(wc -c <"$f") bytes), first bytes:"
            od -A d -t x1 "$f" | head -n 8
            echo "fuzz: reproduce: $B/tests/fuzz/fuzz_$t $f"
            echo "fuzz: after the fix, keep it: cp $f $SRC/tests/fuzz/regress/$t/<what-it-is>"
        done
    done
done
exit $status
