#!/bin/sh
# tests/fuzz_replay.sh -- replays every fuzz target's seed corpus and crasher
# corpus (tests/fuzz/corpus/TARGET/, tests/fuzz/regress/TARGET/) through the target built
# with the normal compiler and tests/fuzz/replay.c (tests/fuzz/replay_TARGET). Needs no
# clang; under `make check-asan` the same replay runs under ASan and UBSan.
# FUZZ_TARGETS (from Makefile.am) lists the targets.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}" "${FUZZ_TARGETS:?FUZZ_TARGETS is not set}"
fail=0
for t in $FUZZ_TARGETS; do
    r="$top_builddir/tests/fuzz/replay_$t"
    if [ ! -x "$r" ]; then
        echo "fuzz_replay: $r is not built"
        fail=1
        continue
    fi
    if "$r" "$top_srcdir/tests/fuzz/corpus/$t" "$top_srcdir/tests/fuzz/regress/$t" 2>"replay-$t.err"; then
        echo "fuzz_replay: $t ok"
    else
        echo "fuzz_replay: $t FAILED; the last inputs and messages:"
        tail -n 20 "replay-$t.err"
        fail=1
    fi
    rm -f "replay-$t.err"
done
exit $fail
