#!/bin/sh
# scripts/test.sh -- the README's test command, and all that CI runs (.ci/run).
#
# On a fresh Debian 12 machine, as root: installs missing packages, runs
# autoreconf, builds in _build/ with warnings as errors, runs `make check`, the
# sanitizer pass (`make check-asan`), each fuzz target for TG_FUZZ_TIME seconds
# (`make fuzz`, default 60, two at a time), `make distcheck`, and an install into a
# temporary prefix that compiles an example with pkg-config. Stops at the first
# failing stage, prints the logs that explain it, and ends with one line
#   tests: N passed, N failed
# counted from the test results of `make check` (plus one failure for any other
# stage that failed). The exit status is 0 only when everything passed.
set -u

TG_SCRIPT=test.sh
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

BUILD=_build
B="$TG_TOP/$BUILD"
# The install stage's prefix: inside the build dir, so nothing outside it is touched.
PREFIX="$B/_install"
# Seconds each fuzz target runs in the fuzz stage.
TG_FUZZ_TIME=${TG_FUZZ_TIME:-60}
# libFuzzer's seed in the fuzz stage: fixed, so a run explores the same inputs
# each time (up to timing) and a red stage is not a new input found by chance;
# TG_FUZZ_SEED= (empty) explores new ones. `make fuzz` alone is unseeded.
TG_FUZZ_SEED=${TG_FUZZ_SEED-1}

passed=0
failed=0
skipped=0
stage_failed=0
report=""

add_report() { report="$report$(printf '  %-12s %s' "$1" "$2")
"; }

# trs_counts DIR: "passed failed skipped" from the :test-result: lines of the
# .trs files of one build tree (not the trees nested in it: the sanitizer build,
# distcheck's copy, the install prefix).
trs_counts() {
    find "$1" \( -path "$1/_asan" -o -path "$1/_install" -o -path "$1/libtensor-*" \) -prune \
         -o -name '*.trs' -print | while read -r trs; do cat "$trs"; done | awk '
        $1 == ":test-result:" {
            if ($2 == "PASS" || $2 == "XFAIL") p++
            else if ($2 == "SKIP") s++
            else f++              # FAIL, XPASS, ERROR
        }
        END { printf "%d %d %d\n", p, f, s }'
}

# count_results: the main check run's counts into $passed, $failed, $skipped.
count_results() {
    # shellcheck disable=SC2046 # three numbers
    set -- $(trs_counts "$B")
    passed=$1 failed=$2 skipped=$3
}

# show_logs DIR...: prints the test-suite.log files found under the dirs (each
# holds the logs of its failing tests), at most 3000 lines.
show_logs() {
    find "$@" -name test-suite.log 2>/dev/null | while read -r log; do
        printf '\n----- %s\n' "$log"
        cat "$log"
    done | head -n 3000
}

summary() {
    printf '\n==> summary\n%s' "$report"
    if [ "$skipped" -gt 0 ]; then
        printf '  (%d test(s) skipped)\n' "$skipped"
    fi
    printf 'tests: %d passed, %d failed\n' "$passed" "$((failed + stage_failed))"
}

# fail STAGE: records the stage as failed and ends the run.
fail() {
    add_report "$1" "FAILED"
    stage_failed=1
    for s in $2; do add_report "$s" "not run"; done
    summary
    exit 1
}

stage "installing missing Debian packages"
tg_setup || fail setup "bootstrap build check check-asan fuzz distcheck install"
add_report setup ok

stage "autoreconf -fi"
tg_bootstrap || fail bootstrap "build check check-asan fuzz distcheck install"
add_report bootstrap ok

stage "configure and build in $BUILD/"
if tg_configure "$BUILD" --enable-werror --prefix="$PREFIX" && tg_make "$BUILD"; then
    add_report build ok
else
    fail build "check check-asan fuzz distcheck install"
fi

stage "make check"
find "$B" -name '*.trs' -exec rm -f {} +
tg_make "$BUILD" check
check_status=$?
count_results
if [ "$check_status" -ne 0 ]; then
    head -n 3000 "$B/test-suite.log" 2>/dev/null
    # Failed tests are counted; a failure before any test ran counts as one.
    [ "$failed" -gt 0 ] || stage_failed=1
    add_report check "FAILED ($passed passed, $failed failed)"
    for s in check-asan fuzz distcheck install; do add_report "$s" "not run"; done
    summary
    exit 1
fi
add_report check "ok ($passed passed, $skipped skipped)"

stage "make check-asan (the suites under -fsanitize=address,undefined)"
if tg_make "$BUILD" check-asan; then
    # shellcheck disable=SC2046 # three numbers
    set -- $(trs_counts "$B/_asan")
    add_report check-asan "ok ($1 passed, $3 skipped)"
else
    show_logs "$B/_asan"
    fail check-asan "fuzz distcheck install"
fi

stage "make fuzz (each fuzz target for $TG_FUZZ_TIME s, two at a time)"
# tests/fuzz/run.sh prints each crasher, the end of its log and where it belongs.
FUZZ_SEED=$TG_FUZZ_SEED tg_make "$BUILD" fuzz FUZZ_TIME="$TG_FUZZ_TIME" FUZZ_PARALLEL=2 \
    >"$B/fuzz.log" 2>&1
fuzz_status=$?
if [ "$fuzz_status" -eq 0 ]; then
    grep '^fuzz: ' "$B/fuzz.log"
    add_report fuzz "ok ($(grep -c '^fuzz: [a-z_0-9]*: ok' "$B/fuzz.log") targets, $TG_FUZZ_TIME s each)"
else
    # From the first report line on (crashers, their logs); the build log if none.
    if grep -q '^fuzz: ' "$B/fuzz.log"; then
        sed -n '/^fuzz: /,$p' "$B/fuzz.log" | head -n 3000
    else
        tail -n 100 "$B/fuzz.log"
    fi
    fail fuzz "distcheck install"
fi

stage "make distcheck"
if tg_make "$BUILD" distcheck; then
    add_report distcheck ok
else
    show_logs "$B"/libtensor-*
    fail distcheck "install"
fi

stage "make install into $PREFIX, then build an example with pkg-config"
rm -rf "$PREFIX"
if tg_make "$BUILD" install && tg_make "$BUILD" installcheck; then
    add_report install ok
else
    fail install ""
fi

summary
exit 0
