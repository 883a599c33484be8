#!/bin/sh
# tests/signals.sh -- signals at random moments must never hurt a training run.
#
# fashion_cnn train holds SIGINT/SIGTERM while the library computes unless
# FASHION_CNN_HOLD_SIGNALS=0; this test turns the hold off, so the handler runs
# wherever the signal lands: inside oneDNN's kernels, the library's loops, the
# checkpoint save. Each short run gets its first signal after a random delay,
# then one more every few milliseconds until it exits, alternating SIGINT and
# SIGTERM, 1 and 2 threads. Every run must exit 0 (the documented status of an
# interrupted run), print that it saved, write nothing to stderr (no malloc
# abort, no sanitizer report in an ASan build), and leave a checkpoint that
# `evaluate` reads. Before ops/dnnl.c held signals around oneDNN's gemm kernels,
# which move the stack pointer into the heap, such runs aborted in free().
# Run by `make check` with top_builddir exported.
top_builddir=${top_builddir:-.}
prog="$top_builddir/apps/fashion_cnn"
runs=${SIGNALS_TEST_RUNS:-16}
tmp=${TMPDIR:-/tmp}/signals_test.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
LC_ALL=C
export LC_ALL
FASHION_CNN_HOLD_SIGNALS=0
export FASHION_CNN_HOLD_SIGNALS
fail=0
die() { echo "FAIL: $*" >&2; fail=1; }
[ -x "$prog" ] || { echo "FAIL: $prog not built" >&2; exit 1; }

# Noise images, labels 0..9 in turn: what is tested is the run, not learning
# (the shapes, hence oneDNN's kernels, are those of the real data).
data="$tmp/data"; mkdir -p "$data"
# The escapes built into printf's format are the point here.
# shellcheck disable=SC2059
idx() { # FILE COUNT KIND(images|labels)
  hi=$(($2 / 256)); lo=$(($2 % 256))
  if [ "$3" = images ]; then
    printf "\000\000\010\003\000\000\\$(printf %o "$hi")\\$(printf %o "$lo")\000\000\000\034\000\000\000\034" >"$1"
    head -c $(($2 * 784)) /dev/urandom >>"$1"
  else
    printf "\000\000\010\001\000\000\\$(printf %o "$hi")\\$(printf %o "$lo")" >"$1"
    i=0; while [ $i -lt "$2" ]; do printf "\\$(printf %o $((i % 10)))"; i=$((i + 1)); done >>"$1"
  fi
}
idx "$data/train-images-idx3-ubyte" 1920 images
idx "$data/train-labels-idx1-ubyte" 1920 labels
idx "$data/t10k-images-idx3-ubyte" 100 images
idx "$data/t10k-labels-idx1-ubyte" 100 labels

# A random number in [0, $1): awk's generator, seeded per call.
seed=$$
rand() { seed=$((seed + 1)); awk -v s="$seed" -v n="$1" 'BEGIN { srand(s); printf "%d", rand() * n }'; }

r=0
interrupted=0
while [ $r -lt "$runs" ]; do
  threads=$((r % 2 + 1))
  sig=INT; [ $((r / 2 % 2)) -eq 1 ] && sig=TERM
  ck="$tmp/run$r.h5"
  # Truncated by the child, perhaps after the first look below: start empty.
  rm -f "$tmp/out" "$tmp/err"
  "$prog" train --epochs 2 --batch-size 320 --limit 1920 --validation none --threads $threads --seed $r \
    --data "$data" --checkpoint "$ck" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  i=0
  # The handler is installed before "Checkpoint:" is printed (and a shared
  # build starts through a libtool wrapper script, which a signal would kill).
  while ! grep -q '^Checkpoint:' "$tmp/out" 2>/dev/null && [ $i -lt 6000 ]; do sleep 0.01; i=$((i + 1)); done
  grep -q '^Checkpoint:' "$tmp/out" || {
    kill -KILL $pid 2>/dev/null; wait $pid
    die "run $r did not start (waited $i x 10 ms): $(cat "$tmp/out" "$tmp/err" | head -c 400)"
    r=$((r + 1)); continue
  }
  # Large batches make long steps, most of their time in the dense layers'
  # gemm; 12 steps in all, the first also creating the primitives (oneDNN's
  # JIT). A delay up to 0.3 s lands the first signal in the first half or so of
  # the run (with 4 steps a whole run took about 0.2 s here, and on a loaded
  # machine most signals came after its end: the test then tested nothing).
  sleep "0.$(printf %03d "$(rand 300)")"
  # kill succeeds on an exited child until it is reaped: stop at the zombie.
  n=0
  while [ $n -lt 2000 ] && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null &&
        kill -$sig $pid 2>/dev/null; do
    n=$((n + 1)); sleep 0.002
  done
  wait $pid
  st=$?
  what="run $r (--threads $threads, SIG$sig x$n)"
  [ $st -eq 0 ] || die "$what: exit $st: $(head -c 400 "$tmp/err")"
  [ -s "$tmp/err" ] && die "$what: wrote to stderr: $(head -c 400 "$tmp/err")"
  if grep -q '^Interrupted: saved the training state' "$tmp/out"; then
    interrupted=$((interrupted + 1))
  elif ! grep -q '^Saved the training state after epoch 2' "$tmp/out"; then
    die "$what: did not say it saved: $(cat "$tmp/out")"
  fi
  if [ $st -eq 0 ]; then
    "$prog" evaluate --checkpoint "$ck" --data "$data" --limit 100 >"$tmp/eval" 2>&1 ||
      die "$what: the checkpoint does not load: $(head -c 400 "$tmp/eval")"
  fi
  rm -f "$ck"
  r=$((r + 1))
done
for f in "$tmp"/*.tmp-*; do [ -e "$f" ] && die "a temporary checkpoint file was left behind: $f"; done
# Most runs must really be interrupted, or the test tests nothing.
[ $interrupted -ge $((runs / 2)) ] || die "only $interrupted of $runs runs were interrupted"
[ $fail -eq 0 ] && echo "signals: $runs runs, $interrupted interrupted, all clean"
exit $fail
