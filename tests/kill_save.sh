#!/bin/sh
# tests/kill_save.sh -- SIGKILL a training run at random moments, mostly inside
# a checkpoint save, KILL_SAVE_RUNS times (default 200), and check every time
# that the checkpoint on disk loads into fresh objects and holds either the
# last state whose save had returned or the state that was being saved --
# never a torn file, never a third state. Each run resumes from the file the
# previous one left. The loop is tests/kill_save.c (fork, no exec: about a
# tenth of a second per run). Run by `make check` with top_builddir exported.
top_builddir=${top_builddir:-.}
drv="$top_builddir/tests/kill_save"
runs=${KILL_SAVE_RUNS:-200}
tmp=${TMPDIR:-/tmp}/kill_save_test.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
[ -x "$drv" ] || { echo "FAIL: $drv not built" >&2; exit 1; }
"$drv" loop "$tmp/state.h5" "$runs"
