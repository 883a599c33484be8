#!/bin/sh
# tests/determinism.sh -- the same seed and thread count give bit-identical
# checkpoints: DETERMINISM_RUNS (default 20) short runs of fashion_cnn train
# (128 images, 2 epochs, 2 threads, validation off) must write byte-for-byte
# the same file, and so must a run stopped after epoch 1 and resumed.
# Needs checkpoints without HDF5 object timestamps (io/checkpoint.c); with them
# two runs differ in a few bytes and this test fails, naming the offsets.
# Uses Debian's Fashion-MNIST when installed, else tiny generated IDX files.
# Run by `make check` with top_builddir exported.
top_builddir=${top_builddir:-.}
prog="$top_builddir/apps/fashion_cnn"
runs=${DETERMINISM_RUNS:-20}
tmp=${TMPDIR:-/tmp}/determinism_test.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
LC_ALL=C
export LC_ALL
OMP_NUM_THREADS=2
export OMP_NUM_THREADS
fail=0
die() { echo "FAIL: $*" >&2; fail=1; }
[ -x "$prog" ] || { echo "FAIL: $prog not built" >&2; exit 1; }

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
  idx "$data/train-images-idx3-ubyte" 128 images
  idx "$data/train-labels-idx1-ubyte" 128 labels
  idx "$data/t10k-images-idx3-ubyte" 16 images
  idx "$data/t10k-labels-idx1-ubyte" 16 labels
fi
args="--epochs 2 --limit 128 --batch-size 32 --seed 5 --threads 2 --validation none --data $data"

same=0
n=1
while [ $n -le "$runs" ]; do
  # shellcheck disable=SC2086 # args is a word list on purpose
  "$prog" train $args --checkpoint "$tmp/run$n.h5" >"$tmp/out" 2>&1 || { die "run $n failed: $(cat "$tmp/out")"; break; }
  if [ $n -gt 1 ]; then
    if cmp -s "$tmp/run1.h5" "$tmp/run$n.h5"; then
      same=$((same + 1))
    else
      die "run $n differs from run 1 in $(cmp -l "$tmp/run1.h5" "$tmp/run$n.h5" | wc -l) bytes" \
          "(first offsets: $(cmp -l "$tmp/run1.h5" "$tmp/run$n.h5" | head -3 | awk '{printf "%s ", $1}'))"
    fi
    rm -f "$tmp/run$n.h5"
  fi
  n=$((n + 1))
done
echo "determinism: $((same + 1))/$runs runs gave the same checkpoint bytes"

# Stopped after epoch 1, resumed to 2: the same bytes again.
# shellcheck disable=SC2086
"$prog" train ${args%%--epochs 2*} --epochs 1 ${args#--epochs 2} --checkpoint "$tmp/res.h5" >"$tmp/out" 2>&1 ||
  die "epoch 1 of the resumed run failed: $(cat "$tmp/out")"
"$prog" train --resume --epochs 2 --threads 2 --validation none --data "$data" --checkpoint "$tmp/res.h5" \
  >"$tmp/out" 2>&1 || die "the resume failed: $(cat "$tmp/out")"
cmp -s "$tmp/run1.h5" "$tmp/res.h5" || die "stopped and resumed: the checkpoint differs from a straight run's"

[ $fail -eq 0 ] && echo "determinism: all checks passed"
exit $fail
