#!/bin/sh
# benchmarks/profile.sh -- where a training step's time goes, per oneDNN primitive,
# for the hand-wired loop (direct_dnnl) and libtensor (train_libtensor) side by side.
# Each program runs twice: once plain (its wall ms/step), once with DNNL_VERBOSE=1
# (oneDNN 2.6's per-execution timings; 2.6 has no "profile" keyword), cut to the
# timed steps by the programs' BENCH_TIMED_START/END markers. What is left of the
# wall time after the primitives is the code outside oneDNN: the framework (or,
# for the direct loop, its gather, dropout, loss and Adam loops).
#
#   benchmarks/profile.sh [batch] [threads] [steps]      (default 128 1 200)
#   BENCH_BUILDDIR=/path/to/build benchmarks/profile.sh 32 1
set -u
here=$(cd "$(dirname "$0")" && pwd)
batch=${1:-128}
threads=${2:-1}
steps=${3:-200}
warmup=5
bdir=${BENCH_BUILDDIR:-}
if [ -z "$bdir" ]; then
    for d in "$here/.." "$(pwd)"; do
        [ -x "$d/benchmarks/train_libtensor" ] && bdir=$d && break
    done
fi
if [ ! -x "$bdir/benchmarks/train_libtensor" ] || [ ! -x "$bdir/benchmarks/direct_dnnl" ]; then
    echo "profile: build benchmarks/direct_dnnl and train_libtensor first (or set BENCH_BUILDDIR)"
    exit 0
fi
out=$(mktemp "${TMPDIR:-/tmp}/profile.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT
trap 'exit 130' INT TERM

echo "profile: batch $batch, $threads thread(s), $steps timed steps after $warmup warm-up steps;"
echo "ms per training step (sum of that primitive's executions in a step, median over steps"
echo "is not available from the log: these are means)"
for prog in direct_dnnl train_libtensor; do
    args="--batch $batch --threads $threads --steps $steps --warmup $warmup --no-infer"
    # shellcheck disable=SC2086
    wall=$(OMP_NUM_THREADS=$threads "$bdir/benchmarks/$prog" $args |
           sed -n 's/.* ms_step=\([^ ]*\).*/\1/p')
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$threads DNNL_VERBOSE=1 "$bdir/benchmarks/$prog" $args >"$out" 2>&1
    echo ""
    echo "== $prog: wall $wall ms/step without verbose output"
    awk -F, -v steps="$steps" -v wall="$wall" '
    /^BENCH_TIMED_START/ { on = 1; next }
    /^BENCH_TIMED_END/ { on = 0; next }
    on && $1 ~ /verbose$/ && $2 == "exec" {
        # exec,cpu,<primitive>,<impl>,<prop>,<memory descs>,<attrs>,<alg>,<shape>,<ms>
        md = $7
        gsub(/_f32::blocked:/, ":", md); gsub(/:f0/, "", md); gsub(/_undef::undef:/, ":-", md)
        alg = $9; sub(/^alg:/, "", alg); sub(/ alpha.*/, "", alg)
        k = $4 " " $6 (alg != "" ? " " alg : "") " | " $10 " | " $5 " | " md
        if (!(k in t)) order[++n] = k
        t[k] += $NF; c[k]++; total += $NF
    }
    END {
        printf "%9s %6s  %s\n", "ms/step", "calls", "primitive prop [alg] | shape | implementation | layouts"
        for (i = 1; i <= n; i++) {
            k = order[i]
            printf "%9.3f %6.2f  %s\n", t[k] / steps, c[k] / steps, k
        }
        printf "%9.3f         all oneDNN primitives\n", total / steps
        if (wall != "")
            printf "%9.3f         outside oneDNN (wall %s minus the primitives)\n", wall - total / steps, wall
    }' "$out"
done
