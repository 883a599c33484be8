/* benchmarks/eltwise.c -- what the accurate f32 elementwise kernels cost.
 *
 * For each op whose f32 path on the AUTO backend left oneDNN's eltwise for a loop
 * over libm (tests/test_accuracy.c says why), it times, on N f32 elements (1M by
 * default), the forward and the forward + backward through libtensor, and the same
 * oneDNN eltwise algorithm driven directly on preallocated memory in the same run;
 * exp, which stays on oneDNN, is the control row (what the framework itself adds).
 * Prints medians of --reps repeats (and, with --min, minima: on a loaded machine the
 * median catches other processes' time slices) and the ratios. It only measures:
 * it never fails.
 *
 *   benchmarks/eltwise [--reps N] [--n N] [--min]   (OMP_NUM_THREADS as for training)
 *
 * It includes oneDNN for the direct baseline; the framework side uses libtensor.h. */
#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libtensor.h"

static int reps = 21;
static int64_t numel = 1 << 20;
static bool use_min = false;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the median, or with --min the minimum */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return use_min ? v[0] : v[n / 2];
}

/* ---------------------------------------------------------------- direct oneDNN */

static dnnl_engine_t eng;
static dnnl_stream_t strm;

typedef struct direct {
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t x, y, gy, gx;
    bool ok;
} direct;

static dnnl_memory_t mem_new(const dnnl_memory_desc_t *md, const float *init)
{
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success)
        return NULL;
    void *p = NULL;
    dnnl_memory_get_data_handle(m, &p);
    memcpy(p, init, (size_t)numel * sizeof(float));
    return m;
}

static bool direct_make(direct *d, dnnl_alg_kind_t alg, float alpha, float beta,
                        const float *xs, const float *gs)
{
    memset(d, 0, sizeof *d);
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {numel};
    if (dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a) != dnnl_success)
        return false;
    dnnl_eltwise_desc_t f, b;
    if (dnnl_eltwise_forward_desc_init(&f, dnnl_forward_training, alg, &md, alpha, beta) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&d->fpd, &f, NULL, eng, NULL) != dnnl_success ||
        dnnl_primitive_create(&d->fwd, d->fpd) != dnnl_success ||
        dnnl_eltwise_backward_desc_init(&b, alg, &md, &md, alpha, beta) != dnnl_success ||
        dnnl_primitive_desc_create(&d->bpd, &b, NULL, eng, d->fpd) != dnnl_success ||
        dnnl_primitive_create(&d->bwd, d->bpd) != dnnl_success)
        return false;
    d->x = mem_new(&md, xs);
    d->y = mem_new(&md, xs);
    d->gy = mem_new(&md, gs);
    d->gx = mem_new(&md, gs);
    d->ok = d->x && d->y && d->gy && d->gx;
    return d->ok;
}

static void direct_run(direct *d, bool backward)
{
    dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, d->x}, {DNNL_ARG_DST, d->y}};
    dnnl_primitive_execute(d->fwd, strm, 2, fa);
    if (backward) {
        dnnl_exec_arg_t ba[] = {{DNNL_ARG_SRC, d->x}, {DNNL_ARG_DIFF_DST, d->gy},
                                {DNNL_ARG_DIFF_SRC, d->gx}};
        dnnl_primitive_execute(d->bwd, strm, 3, ba);
    }
    dnnl_stream_wait(strm);
}

static void direct_free(direct *d)
{
    dnnl_memory_t ms[] = {d->x, d->y, d->gy, d->gx};
    for (int i = 0; i < 4; i++)
        if (ms[i])
            dnnl_memory_destroy(ms[i]);
    if (d->fwd)
        dnnl_primitive_destroy(d->fwd);
    if (d->bwd)
        dnnl_primitive_destroy(d->bwd);
    if (d->fpd)
        dnnl_primitive_desc_destroy(d->fpd);
    if (d->bpd)
        dnnl_primitive_desc_destroy(d->bpd);
}

/* ---------------------------------------------------------------- libtensor */

typedef struct bench_op {
    const char *name;
    tg_tensor *(*fn)(tg_tensor *x);
    bool positive;          /* inputs in (0.5, 2.5) instead of (-4, 4) */
    bool has_dnnl;          /* oneDNN 2.6 has the algorithm */
    dnnl_alg_kind_t alg;
    float alpha, beta;
    const char *changed;    /* what runs the accurate loop */
} bench_op;

static tg_tensor *b_exp(tg_tensor *x) { return tg_exp(x); }
static tg_tensor *b_log(tg_tensor *x) { return tg_log(x); }
static tg_tensor *b_tanh(tg_tensor *x) { return tg_tanh(x); }
static tg_tensor *b_pow(tg_tensor *x) { return tg_pow_scalar(x, 1.5); }
static tg_tensor *b_elu(tg_tensor *x) { return tg_elu(x, 1.0); }
static tg_tensor *b_gelu(tg_tensor *x) { return tg_gelu(x, TG_GELU_ERF); }
static tg_tensor *b_gelu_t(tg_tensor *x) { return tg_gelu(x, TG_GELU_TANH); }
static tg_tensor *b_silu(tg_tensor *x) { return tg_silu(x); }
static tg_tensor *b_softplus(tg_tensor *x) { return tg_softplus(x); }
static tg_tensor *b_hsig(tg_tensor *x) { return tg_hard_sigmoid(x, 0.2, 0.5); }

static const bench_op ops[] = {
    {"exp (control)", b_exp, false, true, dnnl_eltwise_exp, 0, 0, "none"},
    {"log", b_log, true, true, dnnl_eltwise_log, 0, 0, "forward"},
    {"tanh", b_tanh, false, true, dnnl_eltwise_tanh, 0, 0, "backward"},
    {"pow_scalar 1.5", b_pow, true, true, dnnl_eltwise_pow, 1.0f, 1.5f, "backward"},
    {"elu 1", b_elu, false, true, dnnl_eltwise_elu, 1.0f, 0, "fwd (-1,0), bwd"},
    {"gelu erf", b_gelu, false, true, dnnl_eltwise_gelu_erf, 0, 0, "both"},
    {"gelu tanh", b_gelu_t, false, true, dnnl_eltwise_gelu_tanh, 0, 0, "both"},
    {"silu", b_silu, false, true, dnnl_eltwise_swish, 1.0f, 0, "fwd below -80"},
    {"softplus", b_softplus, false, true, dnnl_eltwise_soft_relu, 0, 0, "fwd below -1"},
    {"hard_sigmoid", b_hsig, false, false, dnnl_alg_kind_undef, 0, 0, "both (no oneDNN)"},
};

/* Median ms of the libtensor forward (backward: forward + backward). */
static double time_tg(const bench_op *o, tg_tensor *x, tg_tensor *g, bool backward)
{
    double t[256];
    for (int r = -2; r < reps; r++) { /* two warm-up rounds fill the caches */
        tg_scope *s = tg_scope_push();
        double t0 = now_ms();
        if (backward) {
            tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
            bo.grad_output = g;
            if (tg_backward_ex(o->fn(x), &bo) != TG_OK)
                fprintf(stderr, "bench: %s: %s\n", o->name, tg_last_error());
        } else {
            bool prev = tg_set_grad_enabled(false);
            if (!o->fn(x))
                fprintf(stderr, "bench: %s: %s\n", o->name, tg_last_error());
            tg_set_grad_enabled(prev);
        }
        double t1 = now_ms();
        tg_scope_pop(s);
        if (backward)
            tg_zero_grad(x);
        if (r >= 0)
            t[r] = t1 - t0;
    }
    return median(t, reps);
}

static double time_direct(direct *d, bool backward)
{
    double t[256];
    for (int r = -2; r < reps; r++) {
        double t0 = now_ms();
        direct_run(d, backward);
        double t1 = now_ms();
        if (r >= 0)
            t[r] = t1 - t0;
    }
    return median(t, reps);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            numel = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--min"))
            use_min = true;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--n N] [--min]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 256 || numel < 1) {
        fprintf(stderr, "bench: --reps must be 1..256 and --n positive\n");
        return 2;
    }
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "bench: no oneDNN engine\n");
        return 1;
    }
    float *xs = malloc((size_t)numel * sizeof *xs), *ps = malloc((size_t)numel * sizeof *ps);
    float *gs = malloc((size_t)numel * sizeof *gs);
    if (!xs || !ps || !gs)
        return 1;
    for (int64_t i = 0; i < numel; i++) {
        double u = (double)((i * 7919) % 100003) / 100003.0;
        xs[i] = (float)(-4.0 + 8.0 * u);
        ps[i] = (float)(0.5 + 2.0 * u);
        gs[i] = (float)(1.0 - u);
    }
    printf("elementwise f32 on %lld elements, %d threads, %s of %d (ms)\n", (long long)numel,
           tg_get_num_threads(), use_min ? "minimum" : "median", reps);
    printf("%-16s %-17s %9s %9s %7s %11s %11s %7s\n", "op", "accurate loop on", "tg fwd",
           "dnnl fwd", "ratio", "tg fwd+bwd", "dnnl f+b", "ratio");
    tg_scope *top = tg_scope_push();
    const int64_t shape[] = {numel};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        const bench_op *o = &ops[k];
        const float *in = o->positive ? ps : xs;
        tg_tensor *x = tg_from_data(TG_F32, 1, shape, in);
        tg_tensor *g = tg_from_data(TG_F32, 1, shape, gs);
        if (!x || !g || tg_set_requires_grad(x, true) != TG_OK) {
            fprintf(stderr, "bench: %s\n", tg_last_error());
            return 1;
        }
        double tf = time_tg(o, x, g, false), tb = time_tg(o, x, g, true);
        direct d;
        bool dk = o->has_dnnl && direct_make(&d, o->alg, o->alpha, o->beta, in, gs);
        if (dk) {
            double df = time_direct(&d, false), db = time_direct(&d, true);
            printf("%-16s %-17s %9.3f %9.3f %7.2f %11.3f %11.3f %7.2f\n", o->name, o->changed,
                   tf, df, tf / df, tb, db, tb / db);
        } else {
            printf("%-16s %-17s %9.3f %9s %7s %11.3f %11s %7s\n", o->name, o->changed, tf,
                   "-", "-", tb, "-", "-");
        }
        if (o->has_dnnl)
            direct_free(&d);
    }
    tg_scope_pop(top);
    free(xs);
    free(ps);
    free(gs);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
