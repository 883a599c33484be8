#!/bin/sh
# tests/graph_export.sh -- the graph-export app: DOT for each built-in model, with
# and without the gradient flow; usage and exit codes; and, when Graphviz is
# available ($DOT, found by configure), that the DOT renders to SVG.
# Run by `make check` with top_builddir, top_srcdir and DOT exported.
top_builddir=${top_builddir:-.}
prog="$top_builddir/apps/graph-export"
tmp=${TMPDIR:-/tmp}/graph_export.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0

die() { echo "FAIL: $*" >&2; fail=1; }

[ -x "$prog" ] || { echo "FAIL: $prog not built" >&2; exit 1; }

for model in mlp fashion_cnn; do
  for flags in "" "--backward" "--backward --lr"; do
    out="$tmp/$model$(echo "$flags" | tr -d ' -').dot"
    # shellcheck disable=SC2086 # flags is a word list on purpose
    if ! "$prog" --model "$model" $flags >"$out" 2>"$tmp/err"; then
      die "graph-export --model $model $flags failed: $(cat "$tmp/err")"
      continue
    fi
    grep -q "^digraph \"$model\" {" "$out" || die "$model $flags: no digraph header"
    tail -n 1 "$out" | grep -q '^}$' || die "$model $flags: not closed"
    grep -q 'cross_entropy' "$out" || die "$model $flags: no cross_entropy op"
    grep -q '0x' "$out" && die "$model $flags: an address leaked into the ids"
    case "$flags" in
      *--backward*) grep -q '_backward' "$out" || die "$model $flags: no gradient flow"
                    grep -q 'grad dense_1/kernel' "$out" || die "$model $flags: no grad node";;
      *)            grep -q '_bw' "$out" && die "$model $flags: gradient flow without --backward";;
    esac
    case "$flags" in
      *--lr*) grep -q 'rankdir=LR' "$out" || die "$model $flags: --lr ignored";;
    esac
  done
done

# the CNN as the Keras tutorial names it
cnn="$tmp/fashion_cnn.dot"
for want in 'conv2d/kernel\\n\[32, 1, 3, 3\] f32' 'conv2d/bias' 'dense/kernel' 'dense_1/bias' \
            'max_pool2d' 'dropout' 'relu' 'dense'; do
  grep -q "$want" "$cnn" || die "fashion_cnn: missing $want"
done
# the graph model: its layers' parameters, BatchNorm, the residual add, and the
# gradient reaching the first convolution through both paths of the block
"$prog" --model resnet --backward >"$tmp/resnet.dot" 2>"$tmp/err" ||
  die "graph-export --model resnet failed: $(cat "$tmp/err")"
for want in '^digraph "resnet" {' 'conv2d_2/kernel' 'batch_normalization_2/gamma' 'batch_norm' \
            '"add' 'global_avg_pool2d' 'grad resnet/conv2d/kernel' 'grad resnet/dense/kernel'; do
  grep -q "$want" "$tmp/resnet.dot" || die "resnet: missing $want"
done
# mlp is the default
"$prog" >"$tmp/default.dot" || die "graph-export without flags failed"
cmp -s "$tmp/default.dot" "$tmp/mlp.dot" || die "the default model is not mlp"
# the output is deterministic
"$prog" --model fashion_cnn >"$tmp/again.dot"
cmp -s "$tmp/again.dot" "$cnn" || die "two runs differ"

# usage and exit codes
"$prog" --help >"$tmp/help" 2>&1; st=$?
[ $st -eq 0 ] || die "--help exited $st"
grep -q '^usage: graph-export' "$tmp/help" || die "--help prints no usage"
"$prog" --frobnicate >"$tmp/out" 2>"$tmp/err"; st=$?
[ $st -eq 2 ] || die "a bad flag exited $st, not 2"
grep -q 'usage: graph-export' "$tmp/err" || die "a bad flag prints no usage on stderr"
[ -s "$tmp/out" ] && die "a bad flag wrote to stdout"
"$prog" --model resnet50 >/dev/null 2>"$tmp/err"; st=$?
[ $st -eq 2 ] || die "an unknown model exited $st, not 2"
grep -q "resnet50" "$tmp/err" || die "an unknown model is not named"
"$prog" --model >/dev/null 2>&1; st=$?
[ $st -eq 2 ] || die "--model without a name exited $st, not 2"

[ $fail -eq 0 ] || exit 1

# rendering: skipped (77) without Graphviz
if [ -z "${DOT:-}" ]; then
  echo "SKIP: Graphviz dot not found; rendering not checked"
  exit 77
fi
for f in "$tmp/mlp.dot" "$tmp/mlpbackward.dot" "$cnn" "$tmp/fashion_cnnbackward.dot" \
         "$tmp/resnet.dot"; do
  "$DOT" -Tsvg "$f" >"$tmp/out.svg" 2>"$tmp/err" || { die "$DOT failed on $f: $(cat "$tmp/err")"; continue; }
  grep -q '<svg' "$tmp/out.svg" || die "$DOT -Tsvg on $f gave no SVG"
done
# the gradient flow is laid out beside the forward graph, not stacked below it:
# drawing it must not make the picture taller (-Tplain: "graph scale width height")
height() { "$DOT" -Tplain "$1" | awk '$1 == "graph" { print $4; exit }'; }
for model in mlp fashion_cnn; do
  hf=$(height "$tmp/$model.dot") hb=$(height "$tmp/${model}backward.dot")
  awk -v f="$hf" -v b="$hb" 'BEGIN { exit !(f > 0 && b <= f * 1.05) }' ||
    die "$model: the graph with --backward is $hb high, without $hf"
done
exit $fail
