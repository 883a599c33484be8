#!/bin/sh
# tests/train_runs.sh -- fashion_cnn train runs that must survive damaged
# checkpoints, other architectures, full and read-only disks, and long runs:
#  - counters read back from a checkpoint (INT64_MAX, negative, a batch past the
#    epoch's end, inconsistent running sums) are clear errors, file unchanged;
#  - weights saved from another architecture (an edited "model/architecture":
#    tanh where the file had ReLU) are refused naming the layer, and
#    --weights-only loads them by name;
#  - a full disk (a 12 MB tmpfs, or RLIMIT_FSIZE where mounting is not
#    allowed), a read-only folder (a read-only tmpfs) and a checkpoint path that
#    is a folder: exit 1, a message naming the cause, the old file intact, no
#    temporary file left;
#  - two runs into one checkpoint path: the second refuses (the lock);
#  - soak: 3 epochs with the resident memory sampled every 0.05 s; the median
#    in epoch 3 may exceed the median in epoch 2 (the same phases: steps,
#    validation, save; epoch 1 warms up) by SOAK_TOLERANCE_MB at most (default
#    16: measured differences are within 7 MB; a step graph leaked on purpose,
#    about 4 MB a step, gave hundreds). A leak below about 65 kB per step (250
#    steps an epoch) stays under the tolerance.
# Uses Debian's Fashion-MNIST when installed, else tiny generated IDX files.
# Run by `make check` with top_builddir exported.
top_builddir=${top_builddir:-.}
prog="$top_builddir/apps/fashion_cnn"
edit="$top_builddir/tests/ckpt_edit"
tmp=${TMPDIR:-/tmp}/train_runs_test.$$
mkdir -p "$tmp" || exit 99
mnt="$tmp/mnt"
cleanup() { umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
LC_ALL=C
export LC_ALL
OMP_NUM_THREADS=1
export OMP_NUM_THREADS
fail=0
die() { echo "FAIL: $*" >&2; fail=1; }
[ -x "$prog" ] || { echo "FAIL: $prog not built" >&2; exit 1; }
[ -x "$edit" ] || { echo "FAIL: $edit not built" >&2; exit 1; }

# expect STATUS NEEDLE CMD...: as in tests/fashion_cnn.sh.
expect() {
  want=$1; needle=$2; shift 2
  "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || die "fashion_cnn $*: exit $got, expected $want ($(head -c 400 "$tmp/err"))"
  cat "$tmp/out" "$tmp/err" | grep -qF -- "$needle" ||
    die "fashion_cnn $*: output lacks '$needle': $(head -c 300 "$tmp/out") $(head -c 400 "$tmp/err")"
}
no_tmp_files() { for f in "$1"/*.tmp-*; do [ -e "$f" ] && die "$2: a temporary file was left: $f"; done; }

real=${FASHION_CNN_TEST_DATA:-/usr/share/datasets/fashion-mnist}
if [ -r "$real/train-images-idx3-ubyte.gz" ] && [ -r "$real/t10k-labels-idx1-ubyte.gz" ]; then
  data=$real
else
  data="$tmp/data"; mkdir -p "$data"
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
  idx "$data/train-images-idx3-ubyte" 3200 images
  idx "$data/train-labels-idx1-ubyte" 3200 labels
  idx "$data/t10k-images-idx3-ubyte" 500 images
  idx "$data/t10k-labels-idx1-ubyte" 500 labels
fi

# A checkpoint interrupted mid-epoch (batch 1 of 2): the counters that matter.
base="--limit 64 --data $data --validation none"
# shellcheck disable=SC2086
expect 0 'Saved the training state after epoch 1' train --epochs 1 $base --checkpoint "$tmp/good.h5"

# ---------------------------------------------------------------- counters
# Each case is "message|edit|edit...": the edits give a well-formed checkpoint
# whose only fault is the value (good.h5 is saved after epoch 1: batch 0, step
# 2; a mid-epoch state also needs the epoch's order, data/order).
while IFS= read -r c; do
  [ -n "$c" ] || continue
  needle=${c%%|*}; edits=${c#*|}
  cp "$tmp/good.h5" "$tmp/bad.h5"
  while [ -n "$edits" ]; do
    e=${edits%%|*}
    case $edits in *\|*) edits=${edits#*|};; *) edits=;; esac
    # shellcheck disable=SC2086 # an edit is a word list on purpose
    "$edit" "$tmp/bad.h5" $e || die "ckpt_edit $e failed"
  done
  cp "$tmp/bad.h5" "$tmp/bad.orig"
  # shellcheck disable=SC2086
  expect 1 "$needle" train --resume --epochs 3 $base --checkpoint "$tmp/bad.h5"
  grep -q 'cannot resume from' "$tmp/err" || die "$c: not a resume error: $(cat "$tmp/err")"
  cmp -s "$tmp/bad.h5" "$tmp/bad.orig" || die "$c: a refused resume changed the file"
done <<'CASES'
"epoch" is 9223372036854775807, above the largest counter (2^53)|i64 epoch 9223372036854775807
"step" is 9223372036854775807, above the largest counter (2^53)|i64 step 9223372036854775807
'optimizer/step' = 9223372036854775807 is out of range (0 to 2^53)|i64 optimizer/step 9223372036854775807
"epoch" is negative (-1)|i64 epoch -1
"batch" (3) is greater than "step" (2)|i64 batch 3
batch 2 of epoch 2, is not inside an epoch of 2 batches|i64 batch 2|iota data/order 64
batch 9 of epoch 2, is not inside an epoch of 2 batches|i64 batch 9|i64 step 9|iota data/order 64
epoch_seen (0) is not 1 batches of 32 examples|i64 batch 1|iota data/order 64
epoch_seen is 9223372036854775807, not 0|i64 epoch_seen 9223372036854775807|i64 epoch_correct 1
"epoch_correct" is out of range|i64 epoch_correct 5
"batch_size" is out of range|i64 batch_size 0
"batch_size" is out of range|i64 batch_size 9223372036854775807
"limit" is out of range|i64 limit -1
"epoch_loss_sum" is out of range|f64 epoch_loss_sum nan
CASES

# ---------------------------------------------------------------- architecture
cp "$tmp/good.h5" "$tmp/tanh.h5"
"$edit" "$tmp/tanh.h5" sub model/architecture '"activation": "relu"' '"activation": "tanh"' ||
  die "ckpt_edit sub failed"
expect 1 'layer 0 "conv2d" (Conv2D) differs: saved "activation": "tanh", this model "activation": "relu"' \
  evaluate --checkpoint "$tmp/tanh.h5" --data "$data" --limit 100
grep -q -- '--weights-only' "$tmp/err" || die "evaluate: the architecture error does not name --weights-only"
expect 0 'Test loss: ' evaluate --checkpoint "$tmp/tanh.h5" --data "$data" --limit 100 --weights-only
cp "$tmp/out" "$tmp/wo.out"
expect 0 'Test loss: ' evaluate --checkpoint "$tmp/good.h5" --data "$data" --limit 100
[ "$(grep 'Test loss' "$tmp/wo.out")" = "$(grep 'Test loss' "$tmp/out")" ] ||
  die "--weights-only did not load the same weights"
expect 1 'differs: saved "activation": "tanh"' predict --checkpoint "$tmp/tanh.h5" --index 0 --data "$data"
expect 0 '  1. ' predict --checkpoint "$tmp/tanh.h5" --index 0 --data "$data" --weights-only
# shellcheck disable=SC2086
expect 1 'different model architecture: layer 0 "conv2d" (Conv2D) differs: saved "activation": "tanh"' train --resume \
  --epochs 2 $base --checkpoint "$tmp/tanh.h5"

# ---------------------------------------------------------------- disk full, read-only, folder
mkdir -p "$mnt"
if mount -t tmpfs -o size=12m tmpfs "$mnt" 2>/dev/null; then
  cp "$tmp/good.h5" "$mnt/ck.h5"   # 8.3 MB: room for it, not for a second one
  # shellcheck disable=SC2086
  expect 1 'No space left on device' train --resume --epochs 2 $base --checkpoint "$mnt/ck.h5"
  cmp -s "$mnt/ck.h5" "$tmp/good.h5" || die "disk full: the old checkpoint changed"
  no_tmp_files "$mnt" "disk full"
  mount -o remount,ro "$mnt" || die "cannot remount the tmpfs read-only"
  # shellcheck disable=SC2086
  expect 1 "cannot save the checkpoint $mnt/ck.h5: folder $mnt: Read-only file system" \
    train --resume --epochs 2 $base --checkpoint "$mnt/ck.h5"
  cmp -s "$mnt/ck.h5" "$tmp/good.h5" || die "read-only: the old checkpoint changed"
  umount "$mnt"
else
  echo "note: mounting a tmpfs is not allowed here: disk full via RLIMIT_FSIZE; the read-only" \
       "folder check is skipped (root ignores permissions, and no read-only mount can be made)"
  cp "$tmp/good.h5" "$tmp/ck.h5"
  # SIGXFSZ ignored (inherited), so the write fails with EFBIG instead of killing.
  # shellcheck disable=SC2086
  (trap '' XFSZ; ulimit -f 2048; exec "$prog" train --resume --epochs 2 $base --checkpoint "$tmp/ck.h5") \
    >"$tmp/out" 2>"$tmp/err"
  [ $? -eq 1 ] || die "file size limit: exit status is not 1"
  grep -q 'File too large' "$tmp/err" || die "file size limit: no clear message: $(cat "$tmp/err")"
  cmp -s "$tmp/ck.h5" "$tmp/good.h5" || die "file size limit: the old checkpoint changed"
  no_tmp_files "$tmp" "file size limit"
fi
mkdir -p "$tmp/adir/inside"
# shellcheck disable=SC2086
expect 1 "cannot save the checkpoint $tmp/adir: it is a folder, not a file" train --epochs 1 $base \
  --checkpoint "$tmp/adir"
[ -d "$tmp/adir/inside" ] || die "a checkpoint path that is a folder: the folder changed"

# ---------------------------------------------------------------- two runs, one path
# A second `train` into a checkpoint another run holds (the advisory lock,
# tg_checkpoint_lock) stops at once, exit 1, naming the path; the first run
# finishes and its checkpoint loads.
"$prog" train --epochs 3 --limit 2000 --data "$data" --validation none \
  --checkpoint "$tmp/shared.h5" >"$tmp/first.out" 2>&1 &
first=$!
i=0
while ! grep -q '^Checkpoint: ' "$tmp/first.out" 2>/dev/null && kill -0 $first 2>/dev/null &&
      [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
# The first run is stopped (SIGSTOP) while the second tries, so the test does
# not depend on how fast either runs.
if kill -STOP $first 2>/dev/null; then
  expect 1 'another process is using this checkpoint path' train --epochs 1 --limit 64 \
    --data "$data" --validation none --checkpoint "$tmp/shared.h5"
  kill -CONT $first
else
  die "lock: the first run ended before the second could start: $(tail -3 "$tmp/first.out")"
fi
wait $first || die "lock: the first run failed: $(tail -3 "$tmp/first.out")"
grep -q 'Saved the training state after epoch 3' "$tmp/first.out" ||
  die "lock: the first run did not finish: $(tail -3 "$tmp/first.out")"
expect 0 'Test loss: ' evaluate --checkpoint "$tmp/shared.h5" --data "$data" --limit 100

# ---------------------------------------------------------------- soak
# 3 epochs of 8000 images with validation; VmRSS in kB every 0.05 s, tagged with
# the number of epochs finished so far.
tol=${SOAK_TOLERANCE_MB:-16}
# Under AddressSanitizer freed memory waits in a quarantine (256 MB) that looks
# like growth: the soak runs with it off there.
soak_asan=${ASAN_OPTIONS:-}
grep -q __asan_init "$prog" 2>/dev/null &&
  soak_asan="${soak_asan:+$soak_asan:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
ASAN_OPTIONS=$soak_asan "$prog" train --epochs 3 --limit 8000 --data "$data" --checkpoint "$tmp/soak.h5" >"$tmp/soak.out" 2>&1 &
pid=$!
: >"$tmp/rss"
while kill -0 $pid 2>/dev/null; do
  r=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null)
  e=$(grep -c '^Epoch ' "$tmp/soak.out" 2>/dev/null)
  [ -n "$r" ] && echo "$e $r" >>"$tmp/rss"
  sleep 0.05
done
wait $pid || die "soak: the run failed: $(tail -3 "$tmp/soak.out")"
[ "$(grep -c '^Epoch ' "$tmp/soak.out")" -eq 3 ] || die "soak: not 3 epochs: $(cat "$tmp/soak.out")"
# Epoch 1 warms up (primitives, caches, the first save); a leak shows as a
# higher level in epoch 3 than in epoch 2, at the same phases: their medians.
awk '$1 == 1 { print $2 }' "$tmp/rss" | sort -n >"$tmp/e2"
awk '$1 == 2 { print $2 }' "$tmp/rss" | sort -n >"$tmp/e3"
if [ "$(wc -l <"$tmp/e2")" -lt 5 ] || [ "$(wc -l <"$tmp/e3")" -lt 5 ]; then
  die "soak: too few samples ($(wc -l <"$tmp/e2") in epoch 2, $(wc -l <"$tmp/e3") in epoch 3)"
else
  m2=$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' "$tmp/e2")
  m3=$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' "$tmp/e3")
  p1=$(awk '$1 == 0 && $2 > p { p = $2 } END { print p + 0 }' "$tmp/rss")
  echo "soak: median RSS $((m2 / 1024)) MB in epoch 2, $((m3 / 1024)) MB in epoch 3 (peak in epoch 1:" \
       "$((p1 / 1024)) MB; tolerance $tol MB)"
  [ "$m3" -le $((m2 + tol * 1024)) ] || die "soak: resident memory grew after the first epoch"
fi

[ $fail -eq 0 ] && echo "train runs: all checks passed"
exit $fail
