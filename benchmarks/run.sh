#!/bin/sh
# benchmarks/run.sh -- trains and evaluates the tutorial CNN three ways on the same
# data, batch and threads -- libtensor (train_libtensor), the same network
# hand-wired on oneDNN (direct_dnnl: the floor) and PyTorch (torch_cnn.py, when
# `import torch` works) -- repeats every run, prints medians and libtensor's
# ratios to each baseline, and writes them as Markdown. It measures; it never
# fails a build (a program that fails is reported and skipped).
#
#   benchmarks/run.sh            (`make bench` runs it after building the programs)
#
# Environment:
#   BENCH_STEPS    timed training steps per run (default 300; 0 = one epoch of full batches)
#   BENCH_WARMUP   untimed steps before them (default 5; the first creates primitives)
#   BENCH_REPS     runs per configuration, medians reported (default 3)
#   BENCH_BATCHES  default "32 128";  BENCH_THREADS  default "1 2"
#   BENCH_EXTRA    more variants to time beside the three (not used in the ratios):
#                  direct_fused (ReLU as conv/dense post-ops), direct_noftz (the
#                  floor without flush-to-zero), libtensor_noftz (the library with
#                  tg_set_flush_denormals(false)), torch_ftz (PyTorch with it)
#   BENCH_MEMCHECK_EPOCHS=N  also train libtensor N whole epochs (batch 128, the
#                  last thread count) and report resident memory per epoch (flat?)
#   BENCH_BUILDDIR where benchmarks/direct_dnnl and train_libtensor are built
#   BENCH_RESULTS  the Markdown file (default benchmarks/results.md in the source tree)
#   BENCH_IDLE_WAIT  seconds a run may wait for the other processes to calm down
#                  (default 120; 0 = never wait): before each run the CPUs are sampled
#                  for a second and the run starts once others use < 15% of them
#   BENCH_BEFORE   a second build tree (say of main before a change): its
#                  benchmarks/train_libtensor runs as the variant "before" in the same
#                  repetitions, and a table gives libtensor's time over it (a change's
#                  regression check: make bench before and after, in one run);
#                  BENCH_BEFORE_LABEL says what it is (a commit) in the results
#   PYTHON         the interpreter with torch (default: python3, then /usr/bin/python3)
#   TG_FASHION_MNIST_DIR  the IDX files (default /usr/share/datasets/fashion-mnist)
set -u

here=$(cd "$(dirname "$0")" && pwd)
steps=${BENCH_STEPS:-300}
warmup=${BENCH_WARMUP:-5}
reps=${BENCH_REPS:-3}
batches=${BENCH_BATCHES:-32 128}
threads_list=${BENCH_THREADS:-1 2}
data=${TG_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
results=${BENCH_RESULTS:-$here/results.md}
bdir=${BENCH_BUILDDIR:-}
if [ -z "$bdir" ]; then
    for d in "$here/.." "$(pwd)"; do
        [ -x "$d/benchmarks/train_libtensor" ] && bdir=$d && break
    done
fi

say() { printf '%s\n' "$*"; }

# Fraction of all CPUs busy over one second (from /proc/stat), e.g. 0.03.
busy_fraction() {
    a=$(sed -n 's/^cpu  *//p' /proc/stat 2>/dev/null)
    sleep 1
    b=$(sed -n 's/^cpu  *//p' /proc/stat 2>/dev/null)
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo 0
        return
    fi
    printf '%s\n%s\n' "$a" "$b" | awk '
        { idle[NR] = $4 + $5; tot[NR] = 0; for (i = 1; i <= NF; i++) tot[NR] += $i }
        END { d = tot[2] - tot[1]; printf "%.2f\n", (d > 0 ? 1 - (idle[2] - idle[1]) / d : 0) }'
}

# Waits up to BENCH_IDLE_WAIT seconds for a quiet machine; prints the busy fraction
# seen last.
wait_idle() {
    waited=0
    while :; do
        f=$(busy_fraction)
        if awk -v f="$f" 'BEGIN { exit !(f < 0.15) }' || [ "$waited" -ge "${BENCH_IDLE_WAIT:-120}" ]; then
            echo "$f"
            return
        fi
        sleep 4
        waited=$((waited + 5))
    done
}

if [ ! -x "$bdir/benchmarks/train_libtensor" ] || [ ! -x "$bdir/benchmarks/direct_dnnl" ]; then
    say "bench: benchmarks/train_libtensor and direct_dnnl are not built (make bench builds them); nothing measured"
    exit 0
fi
if ! ls "$data"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    say "bench: no Fashion-MNIST in $data (install dataset-fashion-mnist or set TG_FASHION_MNIST_DIR); nothing measured"
    exit 0
fi
export TG_FASHION_MNIST_DIR="$data"

python=
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
        python=$p
        break
    fi
done
impls="direct libtensor"
extra=
for x in ${BENCH_EXTRA:-}; do
    case $x in
    direct_fused|direct_noftz|libtensor_noftz) extra="$extra $x" ;;
    torch_ftz) [ -n "$python" ] && extra="$extra $x" ;;
    *) say "bench: unknown BENCH_EXTRA variant $x (ignored)" ;;
    esac
done
impls="$impls$extra"
before=${BENCH_BEFORE:-}
if [ -n "$before" ]; then
    if [ -x "$before/benchmarks/train_libtensor" ]; then
        impls="$impls before"
    else
        say "bench: BENCH_BEFORE=$before has no benchmarks/train_libtensor (ignored)"
        before=
    fi
fi
if [ -n "$python" ]; then
    impls="$impls torch"
    torch_note=$("$python" -c 'import torch, sys; sys.stdout.write(torch.__version__)' 2>/dev/null)
else
    torch_note="skipped: no python3 can import torch (Debian: apt install python3-torch)"
fi

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
isa=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
      grep -E '^(avx2|avx512f|avx512_bf16|amx_tile)$' | tr '\n' ' ')
load0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
rev=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null) &&
    { git -C "$here/.." diff --quiet HEAD 2>/dev/null || rev="$rev + local changes"; }
mode="$steps timed steps after $warmup warm-up steps"
[ "$steps" = 0 ] && mode="one epoch of full batches after $warmup warm-up steps"

raw=$(mktemp "${TMPDIR:-/tmp}/bench.XXXXXX") || exit 0
log=$(mktemp "${TMPDIR:-/tmp}/bench-log.XXXXXX") || exit 0
trap 'rm -f "$raw" "$log"' EXIT
trap 'exit 130' INT TERM

say "bench: $cpu, $ncpu CPUs ($isa); load average $load0"
say "bench: $mode, $reps runs per configuration (medians), batches: $batches, threads: $threads_list"
say "bench: PyTorch: $torch_note"

# Repetitions outermost, so that a noisy minute hurts one run of each
# configuration rather than every run of one.
r=1
while [ "$r" -le "$reps" ]; do
    for b in $batches; do
        for t in $threads_list; do
            for impl in $impls; do
                args="--batch $b --steps $steps --warmup $warmup --threads $t"
                case $impl in
                direct) set -- "$bdir/benchmarks/direct_dnnl" ;;
                direct_fused) set -- "$bdir/benchmarks/direct_dnnl" --fuse ;;
                direct_noftz) set -- "$bdir/benchmarks/direct_dnnl" --no-ftz ;;
                libtensor) set -- "$bdir/benchmarks/train_libtensor" ;;
                libtensor_noftz) set -- "$bdir/benchmarks/train_libtensor" --no-ftz ;;
                before) set -- "$before/benchmarks/train_libtensor" ;;
                torch) set -- "$python" "$here/torch_cnn.py" ;;
                torch_ftz) set -- "$python" "$here/torch_cnn.py" --ftz ;;
                esac
                busy=0
                [ "${BENCH_IDLE_WAIT:-120}" -gt 0 ] 2>/dev/null && busy=$(wait_idle)
                # shellcheck disable=SC2086 # args are words
                OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t "$@" $args >"$log" 2>&1
                st=$?
                line=$(grep '^RESULT ' "$log" | tail -n 1)
                if [ "$st" -ne 0 ] || [ -z "$line" ]; then
                    say "bench: run $r $impl batch $b threads $t failed (status $st):"
                    sed 's/^/    /' "$log" | tail -n 5
                    continue
                fi
                [ "$impl" = torch ] && [ -z "${torch_blas:-}" ] &&
                    torch_blas=$(sed -n 's/^torch [^;]*; //p' "$log" | head -n 1)
                # The build in BENCH_BEFORE says impl=libtensor too: name it apart.
                [ "$impl" = before ] && line=$(say "$line" | sed 's/ impl=libtensor / impl=before /')
                printf 'RESULT run=%s others_busy=%s %s\n' "$r" "$busy" "${line#RESULT }" >>"$raw"
                say "  run $r: $(say "$line" | awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                    printf "%-13s batch %4s threads %s: %8.3f ms/step %9.0f img/s, inference %8.0f img/s, acc %.3f, peak RSS %6.1f MB",
                        v["impl"], v["batch"], v["threads"], v["ms_step"], v["img_s"], v["infer_img_s"], v["test_acc"], v["rss_mb"] }')${busy:+ (others busy: $busy)}"
            done
        done
    done
    r=$((r + 1))
done
memcheck=
if [ "${BENCH_MEMCHECK_EPOCHS:-0}" -gt 0 ] 2>/dev/null; then
    for t in $threads_list; do :; done
    say "bench: memory check: libtensor, $BENCH_MEMCHECK_EPOCHS epochs at batch 128, $t threads"
    OMP_NUM_THREADS=$t "$bdir/benchmarks/train_libtensor" --batch 128 --threads "$t" \
        --epochs "$BENCH_MEMCHECK_EPOCHS" --no-infer >"$log" 2>&1
    sed 's/^/    /' "$log"
    memcheck=$(sed -n 's/^MEMCHECK //p' "$log")
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

if [ ! -s "$raw" ]; then
    say "bench: no run succeeded; nothing to report"
    exit 0
fi

# Medians per (implementation, batch, threads), then the tables.
report=$(awk -v impls="$impls" -v batches="$batches" -v tlist="$threads_list" '
function median(key, field,   n, i, j, a, tmp) {
    n = cnt[key]
    if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = val[key, i, field] + 0
    for (i = 2; i <= n; i++) { tmp = a[i]; for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function maxof(key, field,   i, m) {
    m = ""
    for (i = 1; i <= cnt[key]; i++) if (m == "" || val[key, i, field] + 0 > m) m = val[key, i, field] + 0
    return m
}
function fmt(x, f) { return x == "" ? "-" : sprintf(f, x) }
function ratio(a, b, f) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf(f, a / b) }
function verdict(x, op, target) {
    if (x == "-") return ""
    return (op == "<=" ? x + 0 <= target : x + 0 >= target) ? " (met)" : " (missed)"
}
{
    delete v
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    key = v["impl"] SUBSEP v["batch"] SUBSEP v["threads"]
    n = ++cnt[key]
    for (f in v) val[key, n, f] = v[f]
}
END {
    ni = split(impls, IM, " "); nb = split(batches, B, " "); nt = split(tlist, T, " ")
    print "### Training and inference (medians)"
    print ""
    print "| batch | threads | implementation | ms/step | images/s | s/epoch | inference images/s | inference s | peak RSS MB | test accuracy | runs |"
    print "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (bi = 1; bi <= nb; bi++) for (ti = 1; ti <= nt; ti++) for (ii = 1; ii <= ni; ii++) {
        k = IM[ii] SUBSEP B[bi] SUBSEP T[ti]
        if (!cnt[k]) continue
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", B[bi], T[ti], IM[ii],
            fmt(median(k, "ms_step"), "%.3f"), fmt(median(k, "img_s"), "%.0f"),
            fmt(median(k, "epoch_s"), "%.2f"), fmt(median(k, "infer_img_s"), "%.0f"),
            fmt(median(k, "infer_s"), "%.3f"), fmt(median(k, "rss_mb"), "%.0f"),
            fmt(median(k, "test_acc"), "%.4f"), cnt[k]
    }
    print ""
    print "### libtensor against the baselines (from the medians above)"
    print ""
    print "| batch | threads | epoch time / direct oneDNN (target <= 1.10) | training images/s / PyTorch (target >= " "2.0 at 32, 1.5 at 128) | inference images/s / PyTorch (target >= 1) | inference time / direct | peak RSS / PyTorch (target <= 0.5) |"
    print "|---:|---:|---:|---:|---:|---:|---:|"
    for (bi = 1; bi <= nb; bi++) for (ti = 1; ti <= nt; ti++) {
        l = "libtensor" SUBSEP B[bi] SUBSEP T[ti]; d = "direct" SUBSEP B[bi] SUBSEP T[ti]; p = "torch" SUBSEP B[bi] SUBSEP T[ti]
        if (!cnt[l]) continue
        r1 = ratio(median(l, "ms_step"), median(d, "ms_step"), "%.2f")
        r2 = ratio(median(l, "img_s"), median(p, "img_s"), "%.2f")
        r3 = ratio(median(l, "infer_img_s"), median(p, "infer_img_s"), "%.2f")
        r4 = ratio(median(l, "infer_s"), median(d, "infer_s"), "%.2f")
        r5 = ratio(median(l, "rss_mb"), median(p, "rss_mb"), "%.2f")
        tt = B[bi] + 0 <= 32 ? 2.0 : 1.5
        printf "| %s | %s | %s%s | %s%s | %s%s | %s | %s%s |\n", B[bi], T[ti], r1, verdict(r1, "<=", 1.10),
            r2, verdict(r2, ">=", tt), r3, verdict(r3, ">=", 1), r4, r5, verdict(r5, "<=", 0.5)
    }
    nbf = 0
    for (bi = 1; bi <= nb; bi++) for (ti = 1; ti <= nt; ti++) if (cnt["before" SUBSEP B[bi] SUBSEP T[ti]]) nbf++
    if (nbf) {
        print ""
        print "### libtensor against the build in BENCH_BEFORE (same runs; below 1 the new build is faster)"
        print ""
        print "| batch | threads | training ms/step / before | inference time / before | peak RSS / before |"
        print "|---:|---:|---:|---:|---:|"
        for (bi = 1; bi <= nb; bi++) for (ti = 1; ti <= nt; ti++) {
            l = "libtensor" SUBSEP B[bi] SUBSEP T[ti]; o = "before" SUBSEP B[bi] SUBSEP T[ti]
            if (!cnt[l] || !cnt[o]) continue
            printf "| %s | %s | %s | %s | %s |\n", B[bi], T[ti],
                ratio(median(l, "ms_step"), median(o, "ms_step"), "%.3f"),
                ratio(median(l, "infer_s"), median(o, "infer_s"), "%.3f"),
                ratio(median(l, "rss_mb"), median(o, "rss_mb"), "%.3f")
        }
    }
    print ""
    print "### libtensor counters after the first training step (worst run)"
    print ""
    print "| batch | threads | primitives created in step 1 | primitives created after step 1 | storage allocations / step | page faults / step (direct) | weight reorders / step | inference: primitives created, weight reorders, allocations |"
    print "|---:|---:|---:|---:|---:|---:|---:|---|"
    for (bi = 1; bi <= nb; bi++) for (ti = 1; ti <= nt; ti++) {
        l = "libtensor" SUBSEP B[bi] SUBSEP T[ti]; d = "direct" SUBSEP B[bi] SUBSEP T[ti]
        if (!cnt[l]) continue
        printf "| %s | %s | %s | %s | %s | %s (%s) | %s | %s, %s, %s |\n", B[bi], T[ti],
            maxof(l, "prims_first_step"), maxof(l, "prims_after_first"),
            fmt(maxof(l, "allocs_per_step"), "%.3f"), fmt(maxof(l, "faults_after_first_per_step"), "%.2f"),
            cnt[d] ? fmt(maxof(d, "faults_per_step"), "%.2f") : "-",
            fmt(maxof(l, "weight_reorders_per_step"), "%.2f"),
            maxof(l, "infer_prims"), maxof(l, "infer_weight_reorders"), maxof(l, "infer_allocs")
    }
}' "$raw")

dnnl=$(sed -n 's/.* dnnl=\([^ ]*\) isa=\([^ ]*\).*/oneDNN \1 (\2)/p' "$raw" | head -n 1)
{
    say "# Benchmark results"
    say ""
    say "Written by \`benchmarks/run.sh\` (\`make bench\`) on $(date -u '+%Y-%m-%d %H:%M UTC')."
    say ""
    [ -n "$before" ] && say "- before: the build in $before${BENCH_BEFORE_LABEL:+ ($BENCH_BEFORE_LABEL)}"
    say "- Source: ${rev:-not a git checkout}; CPU: $cpu, $ncpu CPUs online; ${isa:+flags: $isa}"
    say "- $dnnl; PyTorch: $torch_note${torch_blas:+ ($torch_blas)}"
    say "- Each run: $mode, then inference over the 10,000 test images at the same batch;"
    say "  $reps runs per configuration, medians. s/epoch = ms/step x 60000 / batch."
    say "- Load average before / after: $load0 / $load1 (the machine is shared: compare ratios from one run)."
    say "- Ratios: time ratios below 1 and throughput ratios above 1 favour libtensor."
    say ""
    say "$report"
    say ""
    [ -n "$memcheck" ] && say "Memory over whole epochs (libtensor): $memcheck" && say ""
    say "The floor (direct) and libtensor (by default, tg_set_flush_denormals) flush denormals"
    say "to zero; PyTorch runs as it comes (torch_ftz sets it). It matters only after several hundred steps, when Adam's"
    say "moments start to underflow: BENCH_WARMUP=1000 measures that steady state."
    say ""
    say "Page faults per step count every newly touched page (any allocator, oneDNN's"
    say "included); weight reorders per step are expected while training (Adam changes the"
    say "weights every step) and should be 0 in inference after the first batch."
    say ""
    say "<details><summary>Every run (the programs' RESULT lines; others_busy: the share of"
    say "the CPUs other processes used in the second before the run)</summary>"
    say ""
    say '```'
    cat "$raw"
    say '```'
    say "</details>"
} >"$results.tmp" && mv "$results.tmp" "$results"

say ""
say "$report"
say ""
say "bench: wrote $results"
exit 0
