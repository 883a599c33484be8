#!/bin/sh
# tests/fashion_cnn.sh -- end to end test of apps/fashion_cnn on a few thousand
# images: train -> checkpoint -> evaluate -> predict (test index, PGM, PNG);
# Ctrl-C during training, then --resume, which must end bit-identical to a straight
# run; featuremaps PNGs (signature and IHDR sizes); summary totals; graph-export;
# transfer; and every usage error (exit 2) and runtime error (exit 1) with its
# message. Uses Debian's Fashion-MNIST when installed, else writes tiny IDX files.
# Run by `make check` with top_builddir exported.
top_builddir=${top_builddir:-.}
prog="$top_builddir/apps/fashion_cnn"
tmp=${TMPDIR:-/tmp}/fashion_cnn_test.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
LC_ALL=C
export LC_ALL
# One thread: deterministic and cheapest on a busy 2-core CI machine. The resume
# comparison below needs only that both runs use the same number.
OMP_NUM_THREADS=1
export OMP_NUM_THREADS
fail=0

die() { echo "FAIL: $*" >&2; fail=1; }
[ -x "$prog" ] || { echo "FAIL: $prog not built" >&2; exit 1; }

# expect STATUS NEEDLE CMD...: runs the app, checks its exit status and that
# stdout+stderr contain NEEDLE (a fixed string).
expect() {
  want=$1; needle=$2; shift 2
  "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || die "fashion_cnn $*: exit $got, expected $want ($(head -c 300 "$tmp/err"))"
  cat "$tmp/out" "$tmp/err" | grep -qF -- "$needle" ||
    die "fashion_cnn $*: output lacks '$needle': $(head -c 300 "$tmp/out") $(head -c 300 "$tmp/err")"
  if [ "$want" -eq 2 ]; then
    grep -q 'Usage: fashion_cnn' "$tmp/err" || die "fashion_cnn $*: no usage line on stderr"
  fi
  if [ "$want" -ne 0 ]; then
    [ -s "$tmp/err" ] || die "fashion_cnn $*: failed without a message on stderr"
  fi
}

# Width and height from a PNG's IHDR (bytes 16..23, big-endian), "WxH".
png_size() {
  od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", (($1*256+$2)*256+$3)*256+$4, (($5*256+$6)*256+$7)*256+$8 }'
}
is_png() { [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ]; }

# ---------------------------------------------------------------- data
real=${FASHION_CNN_TEST_DATA:-/usr/share/datasets/fashion-mnist} # a missing folder forces generated data
if [ -r "$real/train-images-idx3-ubyte.gz" ] && [ -r "$real/t10k-labels-idx1-ubyte.gz" ]; then
  data=$real; limit=2000; echo "using the real data in $data"
else
  # Tiny IDX files: noise images, labels 0..9 in turn (the pipeline, not learning).
  data="$tmp/data"; limit=300; mkdir -p "$data"
  # The escapes built into printf's format are the point here.
  # shellcheck disable=SC2059
  idx() { # FILE COUNT KIND(images|labels)
    n=$1; count=$2
    hi=$((count / 256)); lo=$((count % 256))
    if [ "$3" = images ]; then
      printf "\000\000\010\003\000\000\\$(printf %o "$hi")\\$(printf %o "$lo")\000\000\000\034\000\000\000\034" >"$n"
      head -c $((count * 784)) /dev/urandom >>"$n"
    else
      printf "\000\000\010\001\000\000\\$(printf %o "$hi")\\$(printf %o "$lo")" >"$n"
      i=0; while [ $i -lt "$count" ]; do printf "\\$(printf %o $((i % 10)))"; i=$((i + 1)); done >>"$n"
    fi
  }
  idx "$data/train-images-idx3-ubyte" 600 images
  idx "$data/train-labels-idx1-ubyte" 600 labels
  idx "$data/t10k-images-idx3-ubyte" 500 images
  idx "$data/t10k-labels-idx1-ubyte" 500 labels
  echo "no Fashion-MNIST installed: using generated IDX files in $data"
fi
ck="$tmp/model.h5"

# ---------------------------------------------------------------- summary, help, graph
expect 0 'Total params: 693,962' summary
grep -q 'Trainable params: 693,962' "$tmp/out" || die "summary: trainable count"
grep -q 'Non-trainable params: 0' "$tmp/out" || die "summary: non-trainable count"
grep -q 'conv2d (Conv2D) *(None, 32, 26, 26) *320' "$tmp/out" || die "summary: conv2d row"
grep -q 'dense (Dense) *(None, 128) *692,352' "$tmp/out" || die "summary: dense row"
for c in train evaluate predict summary featuremaps transfer graph-export; do
  expect 0 "Usage: fashion_cnn $c" "$c" --help
done
expect 0 '--resume' train --help
expect 0 '--history FILE' train --help
expect 0 'Commands:' --help
expect 0 'digraph "fashion_cnn"' graph-export
grep -q 'conv2d/kernel' "$tmp/out" || die "graph-export: no conv2d/kernel parameter"
cp "$tmp/out" "$tmp/fwd.dot"
expect 0 'digraph "fashion_cnn"' graph-export --backward
[ "$(wc -l <"$tmp/out")" -gt "$(wc -l <"$tmp/fwd.dot")" ] || die "graph-export --backward adds nothing"
if [ -n "${DOT:-}" ] && command -v "$DOT" >/dev/null 2>&1; then
  if ! "$DOT" -Tsvg "$tmp/out" >"$tmp/g.svg" 2>"$tmp/err" || ! grep -q '<svg' "$tmp/g.svg"; then
    die "graph-export --backward does not render: $(cat "$tmp/err")"
  fi
fi

# ---------------------------------------------------------------- usage errors (2)
expect 2 'Usage: fashion_cnn <command>'
expect 2 "unknown command 'bogus'" bogus
expect 2 "'abc' is not a whole number" train --epochs abc
expect 2 'out of range' train --epochs -1
expect 2 'out of range' train --epochs 0
expect 2 "'3x' is not a whole number" train --epochs 3x
expect 2 "' 3' is not a whole number" train --epochs ' 3'
expect 2 'out of range' train --batch-size 0
expect 2 "'fast' is not a number" train --lr fast
expect 2 'out of range' train --lr -0.1
expect 2 'out of range' train --lr 0
expect 2 'not a non-negative whole number' train --seed -5
expect 2 'out of range' train --threads 0
expect 2 'out of range' train --limit 0
expect 2 "'never' is not one of" train --validation never
expect 2 "unknown option '--bogus'" train --bogus
expect 2 '--epochs needs a value' train --epochs
expect 2 '--resume takes no value' train --resume=yes
expect 2 '--epochs given twice' train --epochs 2 --epochs 3
expect 2 "unexpected argument 'extra'" train extra
expect 2 '--checkpoint: the value is empty' evaluate --checkpoint ''
expect 2 'give --index N' predict
expect 2 'not both' predict --index 1 --image x.png
expect 2 'out of range' predict --index -1
expect 2 'not a whole number' featuremaps --index one
expect 2 "unknown option '--backwards'" graph-export --backwards
expect 2 "unexpected argument 'now'" summary now
expect 2 'out of range' transfer --epochs 0

# ---------------------------------------------------------------- runtime errors (1)
expect 1 "$tmp/none.h5" evaluate --checkpoint "$tmp/none.h5" --data "$data"
expect 1 'does not exist' train --resume --checkpoint "$tmp/none.h5" --data "$data"
expect 1 'dataset-fashion-mnist' train --data "$tmp/no-such-dir" --checkpoint "$tmp/x.h5"
echo 'not a checkpoint' >"$tmp/junk.h5"
expect 1 "$tmp/junk.h5" evaluate --checkpoint "$tmp/junk.h5" --data "$data"
expect 1 'cannot resume' train --resume --checkpoint "$tmp/junk.h5" --data "$data"
[ "$(cat "$tmp/junk.h5")" = 'not a checkpoint' ] || die "a failed resume changed the file"
expect 1 "$tmp/junk.h5" predict --checkpoint "$tmp/junk.h5" --index 0 --data "$data"
expect 1 'cannot open the history file' train --limit 64 --data "$data" --checkpoint "$tmp/x.h5" \
  --history "$tmp/no-dir/h.csv"
expect 1 "cannot save the checkpoint $tmp/no-dir/x.h5: folder $tmp/no-dir" train --data "$data" \
  --checkpoint "$tmp/no-dir/x.h5"

# ---------------------------------------------------------------- train -> evaluate -> predict
expect 0 'Epoch 1/1' train --epochs 1 --limit "$limit" --data "$data" --checkpoint "$ck" \
  --history "$tmp/h.csv" --seed 7
grep -q 'val_accuracy: ' "$tmp/out" || die "train: no val_accuracy in the epoch line"
grep -q "$(printf '\r')" "$tmp/out" && die "train: progress bar redraws off a terminal"
[ "$(grep -c '^Epoch ' "$tmp/out")" -eq 1 ] || die "train: not one line per epoch off a terminal"
# a checkpoint starts with its checksum header (docs/checkpoint-format.md), HDF5 follows
is_h5() { [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 895447434b50540a ] &&
  od -An -tx1 -N4104 "$1" | tr -d ' \n' | grep -q 894844460d0a1a0a; }
is_h5 "$ck" || die "train: $ck is not an HDF5 file"
for f in "$tmp"/*.tmp-*; do [ -e "$f" ] && die "train: a temporary checkpoint file was left behind: $f"; done
[ "$(head -n 1 "$tmp/h.csv")" = 'epoch,loss,accuracy,val_loss,val_accuracy,seconds' ] ||
  die "history: bad header: $(head -n 1 "$tmp/h.csv")"
[ "$(wc -l <"$tmp/h.csv")" -eq 2 ] || die "history: expected one row"
grep -Eq '^1,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$' "$tmp/h.csv" || die "history: bad row"

expect 0 'Test loss: ' evaluate --checkpoint "$ck" --data "$data" --limit 1000
for name in 'T-shirt/top' Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag 'Ankle boot' \
            'Confusion matrix' 'trained 1 epoch'; do
  grep -qF "$name" "$tmp/out" || die "evaluate: no '$name'"
done
[ "$(grep -cE '^  [0-9] ' "$tmp/out")" -eq 20 ] || die "evaluate: expected 10 per-class rows and 10 matrix rows"
acc=$(sed -n 's/.*test accuracy: \([0-9.]*\).*/\1/p' "$tmp/out")
if [ "$data" = "$real" ]; then
  # 2000 images, one epoch: far above chance (0.1) -- a broken model would not get here.
  awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }' || die "evaluate: accuracy $acc after one epoch"
fi

expect 0 '  1. ' predict --checkpoint "$ck" --index 0 --data "$data"
grep -q '  3. ' "$tmp/out" || die "predict: no top-3"
grep -q 'true class' "$tmp/out" || die "predict: no true label"
[ "$data" = "$real" ] && { grep -q 'true class 9 Ankle boot' "$tmp/out" || die "predict: test image 0 is an ankle boot"; }
expect 1 'out of range' predict --checkpoint "$ck" --index 99999 --data "$data"

# A PGM written here: a bright rectangle on black (roughly a bag).
{ printf 'P5\n28 28\n255\n'; y=0; while [ $y -lt 28 ]; do x=0; while [ $x -lt 28 ]; do
    if [ $y -gt 8 ] && [ $y -lt 24 ] && [ $x -gt 4 ] && [ $x -lt 24 ]; then printf '\310'; else printf '\000'; fi
    x=$((x + 1)); done; y=$((y + 1)); done; } >"$tmp/bag.pgm"
expect 0 '  1. ' predict --checkpoint "$ck" --image "$tmp/bag.pgm"
grep -q "Image $tmp/bag.pgm" "$tmp/out" || die "predict --image: no image line"
expect 0 '(inverted)' predict --checkpoint "$ck" --image "$tmp/bag.pgm" --invert
{ printf 'P5\n32 30\n255\n'; head -c 960 /dev/zero; } >"$tmp/big.pgm"
expect 1 'expected a 28x28 image (width x height), got 32x30' predict --checkpoint "$ck" --image "$tmp/big.pgm"
expect 1 "$tmp/none.png" predict --checkpoint "$ck" --image "$tmp/none.png"
expect 1 "$tmp/junk.h5" predict --checkpoint "$ck" --image "$tmp/junk.h5"

# ---------------------------------------------------------------- runs that must stop
# A test set of zero images: a clear error, never "loss: nan" and exit 0.
mkdir -p "$tmp/empty"
for f in "$data"/train-*; do ln -s "$f" "$tmp/empty/"; done
printf '\000\000\010\003\000\000\000\000\000\000\000\034\000\000\000\034' >"$tmp/empty/t10k-images-idx3-ubyte"
printf '\000\000\010\001\000\000\000\000' >"$tmp/empty/t10k-labels-idx1-ubyte"
expect 1 "the test set in $tmp/empty holds no images" evaluate --checkpoint "$ck" --data "$tmp/empty"
grep -qi 'nan' "$tmp/out" && die "evaluate on zero images printed a NaN"
expect 1 'holds no images' train --epochs 1 --limit 64 --data "$tmp/empty" --checkpoint "$tmp/e.h5"
[ -e "$tmp/e.h5" ] && die "train with an empty validation set wrote a checkpoint"
# A learning rate that makes the loss overflow: the run stops at the first
# non-finite value, exit 1, and the last good checkpoint stays byte for byte.
cp "$ck" "$tmp/good.h5"
expect 1 'train: stopped at epoch 2, step ' train --resume --epochs 2 --lr 1e20 --data "$data" \
  --checkpoint "$ck" --validation none
grep -Eq 'the loss is (NaN|[+-]inf)|gradient of .* is not finite' "$tmp/err" ||
  die "diverged run: the message does not say which value: $(cat "$tmp/err")"
grep -q "$ck keeps its previous state" "$tmp/err" || die "diverged run: no word on the checkpoint"
cmp -s "$ck" "$tmp/good.h5" || die "a diverged run changed the last good checkpoint"
for f in "$tmp"/*.tmp-*; do [ -e "$f" ] && die "diverged run: a temporary file was left: $f"; done

# ---------------------------------------------------------------- featuremaps
expect 0 'conv_maps.png' featuremaps --checkpoint "$ck" --index 3 --data "$data" --out "$tmp/fm"
for f in input:114x114 conv_maps:425x213 pooled_maps:425x213 filters:393x197; do
  file="$tmp/fm/${f%%:*}.png"
  [ -f "$file" ] || { die "featuremaps: no $file"; continue; }
  is_png "$file" || die "featuremaps: $file is not a PNG"
  [ "$(png_size "$file")" = "${f#*:}" ] || die "featuremaps: $file is $(png_size "$file"), expected ${f#*:}"
done
# Its output is a picture of the wrong size for predict; a 28x28 PNG is fine.
expect 1 'got 425x213' predict --checkpoint "$ck" --image "$tmp/fm/conv_maps.png"
expect 0 'Wrote' featuremaps --checkpoint "$ck" --image "$tmp/bag.pgm" --out "$tmp/fm2"
echo x >"$tmp/afile"
expect 1 'not a folder' featuremaps --checkpoint "$ck" --index 0 --data "$data" --out "$tmp/afile"

# ---------------------------------------------------------------- Ctrl-C, then --resume
# The interrupted-and-resumed run must end exactly where the straight run ends.
args="--epochs 3 --limit $limit --data $data --validation none --seed 11"
# shellcheck disable=SC2086 # args is a word list on purpose
"$prog" train $args --checkpoint "$tmp/straight.h5" >"$tmp/straight.out" 2>&1 || die "straight run failed"
# shellcheck disable=SC2086
"$prog" train $args --checkpoint "$tmp/resumed.h5" --history "$tmp/r.csv" >"$tmp/int.out" 2>&1 &
pid=$!
i=0
# The handler is installed before the "Checkpoint:" line: signal as soon as it shows.
while ! grep -q '^Checkpoint:' "$tmp/int.out" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid 2>/dev/null
wait $pid
st=$?
[ $st -eq 0 ] || die "interrupted run: exit $st: $(cat "$tmp/int.out")"
if grep -q '^Interrupted: saved the training state' "$tmp/int.out"; then
  grep -q '^Resume with: .*train --resume --checkpoint' "$tmp/int.out" || die "no resume hint: $(cat "$tmp/int.out")"
  is_h5 "$tmp/resumed.h5" || die "interrupted run: no checkpoint"
  # A different batch size cannot continue this run.
  expect 1 '--batch-size 64 differs from the checkpoint' train --resume --checkpoint "$tmp/resumed.h5" \
    --batch-size 64 --epochs 3 --data "$data"
  expect 1 "--seed 5 differs from the checkpoint's 11" train --resume --checkpoint "$tmp/resumed.h5" \
    --seed 5 --epochs 3 --data "$data"
  # shellcheck disable=SC2086
  "$prog" train --resume --epochs 3 --data "$data" --validation none --checkpoint "$tmp/resumed.h5" \
    --history "$tmp/r.csv" >"$tmp/res.out" 2>&1 || die "resume failed: $(cat "$tmp/res.out")"
  grep -q '^Resuming from' "$tmp/res.out" || die "resume: no 'Resuming from' line"
  grep -q 'seed 11\.$' "$tmp/res.out" || die "resume: the seed does not come from the checkpoint"
  grep -q '^Epoch 3/3' "$tmp/res.out" || die "resume: did not reach epoch 3"
  [ "$(grep -c '^[0-9]' "$tmp/r.csv")" -eq 3 ] || die "history over the resume: $(cat "$tmp/r.csv")"
else
  echo "note: the run finished before SIGINT arrived; resume is tested on a finished run only"
fi
expect 0 'nothing to do' train --resume --epochs 3 --checkpoint "$tmp/resumed.h5" --data "$data"
for f in straight resumed; do
  "$prog" evaluate --checkpoint "$tmp/$f.h5" --data "$data" --limit 1000 >"$tmp/$f.eval" 2>&1 ||
    die "evaluate $f failed"
done
# Identical test loss (to 4 decimals), accuracy and confusion matrix; the first
# line names the file and the time, which differ.
sed 1d "$tmp/straight.eval" >"$tmp/a"; sed 1d "$tmp/resumed.eval" >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" || die "the resumed run differs from the straight run: $(diff "$tmp/a" "$tmp/b" | head -5)"
if command -v h5dump >/dev/null 2>&1; then
  # The raw bytes of weights, moments and generator: bit-identical.
  for d in /model/conv2d/kernel /model/dense/kernel /model/dense_1/bias \
           /optimizer/sequential/dense/kernel/v /optimizer/sequential/conv2d/kernel/m /rng/state; do
    for f in straight resumed; do
      h5dump -d $d -b LE -o "$tmp/$f.bin" "$tmp/$f.h5" >/dev/null 2>&1 || die "h5dump -d $d $f.h5 failed"
    done
    cmp -s "$tmp/straight.bin" "$tmp/resumed.bin" || die "$d differs between the straight and the resumed run"
  done
fi

# ---------------------------------------------------------------- transfer
expect 0 'After ' transfer --checkpoint "$ck" --epochs 1 --limit 300 --data "$data"
grep -q '320 frozen' "$tmp/out" || die "transfer: the conv layer is not frozen"
grep -q 'scratch' "$tmp/out" || die "transfer: no scratch baseline"
expect 1 "$tmp/none.h5" transfer --checkpoint "$tmp/none.h5" --data "$data"

[ $fail -eq 0 ] && echo "fashion_cnn end-to-end: all checks passed"
exit $fail
