/* tests/test_cnn.c -- the CNN ops (conv2d, max/avg pooling, dense, dropout) and the
 * oneDNN glue under them: oneDNN against the reference kernels over a table of
 * shapes, gradient checks, error messages, dropout statistics, the primitive
 * cache (a second training step creates no primitive), the scratchpad and weight
 * reorders, and hostile inputs (empty batches, views, wrong dtypes, INT_MAX
 * options).
 *
 * Tolerances (|a - b| <= atol + rtol * |b|):
 *   f32 oneDNN vs f32 reference       atol 1e-4, rtol 1e-4 (oneDNN sums in f32 in
 *                                     its own order; the reference sums in double)
 *   f32 reference vs f64 reference    atol 1e-5, rtol 1e-5 (only the inputs' rounding
 *                                     to f32 differs)
 * A wrong index or a missing term is off by O(1), far outside both. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"
#include "ops/dnnl_impl.h"

#define F32_ATOL 1e-4
#define F32_RTOL 1e-4
#define REF_ATOL 1e-5
#define REF_RTOL 1e-5
/* bitwise equal (the tiny atol keeps 0 vs 0 from dividing by zero) */
#define EXACT_ATOL 1e-300

/* ---------------------------------------------------------------- helpers */

/* Uniform in [-1, 1) from a private generator (scoped). */
static tg_tensor *rnd(tg_dtype dt, int ndim, const int64_t *shape, uint64_t seed)
{
    tg_rng r;
    tg_rng_seed(&r, seed);
    tg_tensor *t = tg_rand_uniform(dt, ndim, shape, -1.0, 1.0, &r);
    TG_CHECK(t != NULL);
    return t;
}

/* An op under test: output from inputs (some may be NULL) and the op's options. */
typedef tg_tensor *(*op_fn)(tg_tensor *const *in, const void *ctx);

#define MAX_IN 3

/* Runs fn on in64 converted to dt, with the backend be, then backward with
 * gradient gy64. Fills y and the inputs' gradients (scoped / borrowed from the
 * scoped inputs; valid until the caller's scope pops). */
static void run(op_fn fn, const void *ctx, tg_tensor *const *in64, tg_tensor *gy64,
                tg_dtype dt, tg_backend be, tg_tensor **y, tg_tensor **grads)
{
    tg_backend prev = tg_set_backend(be);
    tg_tensor *in[MAX_IN] = {NULL, NULL, NULL};
    for (int i = 0; i < MAX_IN; i++) {
        if (!in64[i])
            continue;
        in[i] = tg_tensor_to_dtype(in64[i], dt);
        TG_CHECK(in[i] != NULL);
        TG_OK_(tg_set_requires_grad(in[i], true));
    }
    *y = fn(in, ctx);
    TG_CHECK(*y != NULL);
    tg_tensor *gy = tg_tensor_to_dtype(gy64, dt);
    tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
    bo.grad_output = gy;
    TG_OK_(tg_backward_ex(*y, &bo));
    for (int i = 0; i < MAX_IN; i++) {
        grads[i] = in[i] ? tg_grad(in[i]) : NULL;
        if (in[i])
            ck_assert_msg(grads[i] != NULL, "input %d got no gradient", i);
    }
    tg_set_backend(prev);
}

/* y's shape from one forward run (f64, no grad). */
static tg_tensor *probe(op_fn fn, const void *ctx, tg_tensor *const *in64)
{
    bool prev = tg_set_grad_enabled(false);
    tg_tensor *y = fn(in64, ctx);
    tg_set_grad_enabled(prev);
    TG_CHECK(y != NULL);
    return y;
}

/* oneDNN f32 vs reference f32 vs reference f64, forward and every gradient. */
static void compare_backends(op_fn fn, const void *ctx, tg_tensor *const *in64,
                             const char *label)
{
    tg_tensor *y0 = probe(fn, ctx, in64);
    tg_tensor *gy = rnd(TG_F64, tg_tensor_ndim(y0), tg_tensor_shape(y0), 99);
    tg_tensor *yd, *yr, *y64, *gd[MAX_IN], *gr[MAX_IN], *g64[MAX_IN];
    run(fn, ctx, in64, gy, TG_F32, TG_BACKEND_AUTO, &yd, gd);
    run(fn, ctx, in64, gy, TG_F32, TG_BACKEND_REFERENCE, &yr, gr);
    run(fn, ctx, in64, gy, TG_F64, TG_BACKEND_REFERENCE, &y64, g64);
    ck_assert_msg(tg_tensor_dtype(yd) == TG_F32 && tg_tensor_dtype(y64) == TG_F64,
                  "%s: output dtypes", label);
    int64_t w;
    double e = tg_test_max_scaled_err(yd, yr, F32_ATOL, F32_RTOL, &w);
    ck_assert_msg(e <= 1.0, "%s: forward oneDNN vs reference: element %lld off by %.3g x tol",
                  label, (long long)w, e);
    e = tg_test_max_scaled_err(yr, y64, REF_ATOL, REF_RTOL, &w);
    ck_assert_msg(e <= 1.0, "%s: forward f32 vs f64 reference: element %lld off by %.3g x tol",
                  label, (long long)w, e);
    for (int i = 0; i < MAX_IN; i++) {
        if (!in64[i])
            continue;
        e = tg_test_max_scaled_err(gd[i], gr[i], F32_ATOL, F32_RTOL, &w);
        ck_assert_msg(e <= 1.0,
                      "%s: gradient of input %d, oneDNN vs reference: element %lld off by "
                      "%.3g x tol", label, i, (long long)w, e);
        e = tg_test_max_scaled_err(gr[i], g64[i], REF_ATOL, REF_RTOL, &w);
        ck_assert_msg(e <= 1.0,
                      "%s: gradient of input %d, f32 vs f64 reference: element %lld off by "
                      "%.3g x tol", label, i, (long long)w, e);
    }
}

/* ---------------------------------------------------------------- the ops as op_fn */

static tg_tensor *conv_fn(tg_tensor *const *in, const void *ctx)
{
    return tg_conv2d(in[0], in[1], in[2], ctx);
}

typedef struct pool_ctx {
    bool max;
    tg_pool2d_opts o;
} pool_ctx;

static tg_tensor *pool_fn(tg_tensor *const *in, const void *ctx)
{
    const pool_ctx *p = ctx;
    return p->max ? tg_max_pool2d(in[0], &p->o) : tg_avg_pool2d(in[0], &p->o);
}

static tg_tensor *dense_fn(tg_tensor *const *in, const void *ctx)
{
    (void)ctx;
    return tg_dense(in[0], in[1], in[2]);
}

/* Dropout with a generator reseeded on every call, so that finite differences see
 * the same mask each time. */
typedef struct dropout_ctx {
    double rate;
    uint64_t seed;
} dropout_ctx;

static tg_tensor *dropout_fn(tg_tensor *const *in, const void *ctx)
{
    const dropout_ctx *d = ctx;
    tg_rng r;
    tg_rng_seed(&r, d->seed);
    return tg_dropout(in[0], d->rate, true, &r);
}

/* ---------------------------------------------------------------- conv2d table */

typedef struct conv_case {
    const char *name;
    int64_t n, c, h, w, o, kh, kw;
    tg_conv2d_opts opts;
    bool bias;
} conv_case;

static const conv_case conv_cases[] = {
    {"seed conv 1x28x28 -> 32x26x26", 4, 1, 28, 28, 32, 3, 3, TG_CONV2D_OPTS_INIT, true},
    {"batch 1, one channel", 1, 1, 5, 5, 1, 3, 3, TG_CONV2D_OPTS_INIT, true},
    {"odd batch, several channels", 3, 3, 7, 6, 5, 3, 3, TG_CONV2D_OPTS_INIT, true},
    {"stride 2", 3, 4, 9, 9, 8, 3, 3, {{2, 2}, {0, 0, 0, 0}, {1, 1}, false, 1}, true},
    {"padding 1 (same)", 2, 3, 6, 6, 4, 3, 3, {{1, 1}, {1, 1, 1, 1}, {1, 1}, false, 1}, true},
    {"asymmetric padding", 3, 2, 7, 5, 3, 3, 2, {{1, 2}, {0, 2, 1, 0}, {1, 1}, false, 1}, true},
    {"dilation 2", 2, 3, 9, 8, 4, 3, 3, {{1, 1}, {1, 1, 1, 1}, {2, 2}, false, 1}, true},
    {"non-square kernel and input, no bias", 5, 2, 6, 11, 3, 2, 4,
     {{2, 1}, {0, 1, 2, 1}, {1, 3}, false, 1}, false},
    {"kernel as large as the padded input", 2, 2, 3, 4, 3, 5, 4,
     {{1, 1}, {1, 1, 0, 0}, {1, 1}, false, 1}, true},
    {"32 -> 32 channels (blocked layouts)", 2, 32, 10, 9, 32, 3, 3,
     {{1, 1}, {1, 1, 1, 1}, {1, 1}, false, 1}, true},
    {"16 -> 48 channels, stride 2, padding", 3, 16, 11, 11, 48, 3, 3,
     {{2, 2}, {1, 0, 1, 0}, {1, 1}, false, 1}, true},
    {"seed conv with fused ReLU", 4, 1, 28, 28, 32, 3, 3, {{1, 1}, {0, 0, 0, 0}, {1, 1}, true, 1},
     true},
    {"fused ReLU, padding, no bias", 3, 3, 7, 6, 5, 3, 3, {{1, 1}, {1, 1, 1, 1}, {1, 1}, true, 1},
     false},
    {"2 groups", 2, 4, 7, 6, 6, 3, 3, {{1, 1}, {1, 1, 1, 1}, {1, 1}, false, 2}, true},
    {"depthwise 8 channels, stride 2", 3, 8, 9, 9, 8, 3, 3, {{2, 2}, {1, 1, 1, 1}, {1, 1}, false, 8},
     true},
    {"depthwise, multiplier 2, fused ReLU, no bias", 2, 3, 6, 7, 6, 3, 2,
     {{1, 1}, {0, 1, 1, 0}, {1, 1}, true, 3}, false},
    {"32 channels in 4 groups (blocked layouts)", 2, 32, 8, 8, 16, 3, 3,
     {{1, 1}, {1, 1, 1, 1}, {1, 1}, false, 4}, true},
};
#define N_CONV (int)(sizeof conv_cases / sizeof conv_cases[0])

static void conv_case_run(int i, bool blocked)
{
    const conv_case *k = &conv_cases[i];
    bool prev = tg_dnnl_set_blocked_layouts(blocked);
    tg_scope *s = tg_scope_push();
    tg_tensor *in[MAX_IN] = {
        rnd(TG_F64, TG_SHAPE(k->n, k->c, k->h, k->w), 1 + (uint64_t)i),
        rnd(TG_F64, TG_SHAPE(k->o, k->c / (k->opts.groups > 1 ? k->opts.groups : 1), k->kh,
                             k->kw), 100 + (uint64_t)i),
        k->bias ? rnd(TG_F64, TG_SHAPE(k->o), 200 + (uint64_t)i) : NULL,
    };
    char label[160];
    snprintf(label, sizeof label, "conv2d %s (%s layouts)", k->name,
             blocked ? "blocked" : "plain");
    compare_backends(conv_fn, &k->opts, in, label);
    tg_scope_pop(s);
    tg_dnnl_set_blocked_layouts(prev);
}

START_TEST(conv_table_blocked)
{
    conv_case_run(_i, true);
}
END_TEST

START_TEST(conv_table_plain)
{
    conv_case_run(_i, false);
}
END_TEST

/* A non-contiguous input (a transposed view) gives the same result as its copy. */
START_TEST(conv_strided_input)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *xt = rnd(TG_F32, TG_SHAPE(2, 3, 7, 6), 5);
    tg_tensor *x = tg_transpose(xt, 2, 3); /* (2, 3, 6, 7), strided */
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(4, 3, 3, 3), 6);
    ck_assert(!tg_tensor_is_contiguous(x));
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    tg_tensor *a = tg_conv2d(x, w, NULL, &o);
    tg_tensor *b = tg_conv2d(tg_tensor_copy(x), w, NULL, &o);
    TG_CHECK(a && b);
    TG_ASSERT_TENSOR_CLOSE(a, b, EXACT_ATOL, 0.0);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- pooling table */

typedef struct pool_case {
    const char *name;
    int64_t n, c, h, w;
    tg_pool2d_opts opts;
} pool_case;

static const pool_case pool_cases[] = {
    {"seed pool 32x26x26 -> 32x13x13", 4, 32, 26, 26, TG_POOL2D_OPTS_INIT},
    {"batch 1, one channel, odd input", 1, 1, 7, 5, TG_POOL2D_OPTS_INIT},
    {"odd batch, 3x3 stride 1", 3, 4, 6, 7, {{3, 3}, {1, 1}, {0, 0, 0, 0}, false, false}},
    {"3x3 stride 2 padding 1", 2, 3, 9, 8, {{3, 3}, {2, 2}, {1, 1, 1, 1}, false, false}},
    {"asymmetric padding", 3, 2, 6, 5, {{2, 3}, {2, 1}, {1, 0, 0, 2}, false, false}},
    {"non-square kernel, stride 0 = kernel", 2, 5, 8, 9, {{2, 3}, {0, 0}, {0, 0, 0, 0}, false, false}},
    {"kernel as large as the input", 2, 3, 4, 5, {{4, 5}, {1, 1}, {0, 0, 0, 0}, false, false}},
    {"ceil_mode, overhang", 2, 3, 7, 6, {{2, 2}, {2, 2}, {0, 0, 0, 0}, true, false}},
    {"ceil_mode 3x3 s2 p1", 1, 4, 8, 9, {{3, 3}, {2, 2}, {1, 1, 1, 1}, true, false}},
    {"count_include_pad 3x3 s2 p1", 2, 3, 9, 8, {{3, 3}, {2, 2}, {1, 1, 1, 1}, false, true}},
    /* oneDNN would count the overhang as padding: the reference kernel runs */
    {"ceil_mode and count_include_pad", 2, 2, 7, 7, {{3, 3}, {2, 2}, {1, 0, 0, 1}, true, true}},
};
#define N_POOL (int)(sizeof pool_cases / sizeof pool_cases[0])

static void pool_case_run(int i, bool max)
{
    const pool_case *k = &pool_cases[i];
    tg_scope *s = tg_scope_push();
    tg_tensor *in[MAX_IN] = {rnd(TG_F64, TG_SHAPE(k->n, k->c, k->h, k->w), 300 + (uint64_t)i),
                             NULL, NULL};
    pool_ctx ctx = {max, k->opts};
    char label[160];
    snprintf(label, sizeof label, "%s %s", max ? "max_pool2d" : "avg_pool2d", k->name);
    compare_backends(pool_fn, &ctx, in, label);
    tg_scope_pop(s);
}

START_TEST(max_pool_table)
{
    pool_case_run(_i, true);
}
END_TEST

START_TEST(avg_pool_table)
{
    pool_case_run(_i, false);
}
END_TEST

/* Global pooling on both backends, from a plain input and from a conv's output
 * (which oneDNN may keep in a blocked layout), with and without keepdims. */
typedef struct global_ctx {
    bool max, keepdims, after_conv;
} global_ctx;

static tg_tensor *global_fn(tg_tensor *const *in, const void *ctx)
{
    const global_ctx *k = ctx;
    tg_tensor *x = in[0];
    if (k->after_conv)
        x = tg_conv2d(in[0], in[1], in[2], NULL);
    return k->max ? tg_global_max_pool2d(x, k->keepdims) : tg_global_avg_pool2d(x, k->keepdims);
}

START_TEST(global_pool_backends)
{
    const global_ctx k = {_i & 1, (_i >> 1) & 1, (_i >> 2) & 1};
    tg_scope *s = tg_scope_push();
    tg_tensor *in[MAX_IN] = {rnd(TG_F64, TG_SHAPE(3, k.after_conv ? 3 : 16, 7, 6), 500 + (uint64_t)_i),
                             NULL, NULL};
    if (k.after_conv) {
        in[1] = rnd(TG_F64, TG_SHAPE(16, 3, 3, 3), 600 + (uint64_t)_i);
        in[2] = rnd(TG_F64, TG_SHAPE(16), 700 + (uint64_t)_i);
    }
    char label[96];
    snprintf(label, sizeof label, "global_%s_pool2d%s%s", k.max ? "max" : "avg",
             k.keepdims ? " keepdims" : "", k.after_conv ? " after conv" : "");
    compare_backends(global_fn, &k, in, label);
    tg_scope_pop(s);
}
END_TEST

/* Values computed by hand: x = 0..24 in a 5x5 plane, 2x2 windows, stride 2.
 * ceil_mode adds a third row and column of windows holding one or two elements;
 * with padding 1 and count_include_pad the corner window (rows -1..0, columns
 * -1..0) holds x[0] = 0 over 4, and the ceil_mode windows past the padding
 * count only up to it. */
START_TEST(pool_ceil_and_include_values)
{
    tg_scope *s = tg_scope_push();
    float xv[25];
    for (int i = 0; i < 25; i++)
        xv[i] = (float)i;
    tg_tensor *x = tg_from_f32(TG_SHAPE(1, 1, 5, 5), xv);
    for (int be = 0; be < 2; be++) {
        tg_backend prev = tg_set_backend(be ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
        tg_pool2d_opts o = TG_POOL2D_OPTS_INIT;
        o.ceil_mode = true;
        tg_tensor *m = tg_max_pool2d(x, &o), *a = tg_avg_pool2d(x, &o);
        /* floor: 2x2 outputs; ceil: 3x3, the last row/column windows cut */
        const float mx[9] = {6, 8, 9, 16, 18, 19, 21, 23, 24};
        const float av[9] = {3, 5, 6.5f, 13, 15, 16.5f, 20.5f, 22.5f, 24};
        TG_CHECK(m && a);
        ck_assert_int_eq(tg_tensor_dim(m, 2), 3);
        ck_assert_int_eq(tg_tensor_dim(a, 3), 3);
        const float *mp = tg_tensor_data_ro(m), *ap = tg_tensor_data_ro(a);
        for (int k = 0; k < 9; k++) {
            ck_assert_float_eq_tol(mp[k], mx[k], 1e-6f);
            ck_assert_float_eq_tol(ap[k], av[k], 1e-5f);
        }
        /* padding 1 on every side, 2x2 s2: rows -1..0, 1..2, 3..4 (floor: 3
         * windows; ceil_mode adds none, the fourth would start at row 5 = H) */
        tg_pool2d_opts p = TG_POOL2D_OPTS_INIT;
        p.pad[0] = p.pad[1] = p.pad[2] = p.pad[3] = 1;
        p.count_include_pad = true;
        p.ceil_mode = true;
        tg_tensor *ai = tg_avg_pool2d(x, &p);
        TG_CHECK(ai);
        ck_assert_int_eq(tg_tensor_dim(ai, 2), 3);
        /* window (0, 0): x[0] / 4; (0, 1): (x[1] + x[2]) / 4; (1, 1): (6+7+11+12)/4 */
        const float *ip = tg_tensor_data_ro(ai);
        ck_assert_float_eq_tol(ip[0], 0.0f / 4, 1e-6f);
        ck_assert_float_eq_tol(ip[1], (1.0f + 2.0f) / 4, 1e-6f);
        ck_assert_float_eq_tol(ip[4], (6.0f + 7 + 11 + 12) / 4, 1e-6f);
        /* the corner (2, 2): rows 3..4, columns 3..4, all inside: 18+19+23+24 */
        ck_assert_float_eq_tol(ip[8], (18.0f + 19 + 23 + 24) / 4, 1e-6f);
        /* 2x2 s2 on 5x5 with padding (0, 1, 0, 1) and ceil_mode: rows 0..1,
         * 2..3, 4..5 where row 5 is padding: the last window counts 2 rows */
        tg_pool2d_opts q = TG_POOL2D_OPTS_INIT;
        q.pad[1] = q.pad[3] = 1;
        q.count_include_pad = true;
        tg_tensor *aq = tg_avg_pool2d(x, &q);
        TG_CHECK(aq);
        ck_assert_int_eq(tg_tensor_dim(aq, 2), 3);
        ck_assert_float_eq_tol(((const float *)tg_tensor_data_ro(aq))[8], 24.0f / 4, 1e-6f);
        /* 3x3 s2 on 6 columns with ceil_mode overhang and count_include_pad:
         * columns 0..2, 2..4, 4..6 where column 6 is past the input and not
         * padding: divide by 3 x 2, not 3 x 3 */
        tg_tensor *x6 = tg_ones(TG_F32, TG_SHAPE(1, 1, 3, 6));
        tg_pool2d_opts r = TG_POOL2D_OPTS_INIT;
        r.kernel[0] = r.kernel[1] = 3;
        r.stride[0] = r.stride[1] = 2;
        r.ceil_mode = r.count_include_pad = true;
        tg_tensor *ar = tg_avg_pool2d(x6, &r);
        TG_CHECK(ar);
        ck_assert_int_eq(tg_tensor_dim(ar, 3), 3);
        ck_assert_float_eq_tol(((const float *)tg_tensor_data_ro(ar))[2], 1.0f, 1e-6f);
        tg_set_backend(prev);
    }
    tg_scope_pop(s);
}
END_TEST

/* Global pooling by hand: plane means and maxima; keepdims gives (N, C, 1, 1). */
START_TEST(global_pool_values)
{
    tg_scope *s = tg_scope_push();
    const double xv[12] = {1, 2, 3, 4, -1, -2, -3, -4, 0, 5, 5, 0}; /* (1, 3, 2, 2) */
    tg_tensor *x = tg_from_f64(TG_SHAPE(1, 3, 2, 2), xv);
    for (int f32 = 0; f32 < 2; f32++) {
        tg_tensor *xi = f32 ? tg_tensor_to_dtype(x, TG_F32) : x;
        tg_tensor *a = tg_global_avg_pool2d(xi, false), *m = tg_global_max_pool2d(xi, true);
        TG_CHECK(a && m);
        ck_assert_int_eq(tg_tensor_ndim(a), 2);
        ck_assert_int_eq(tg_tensor_ndim(m), 4);
        ck_assert_int_eq(tg_tensor_dim(m, 2), 1);
        tg_tensor *a64 = tg_tensor_to_dtype(a, TG_F64), *m64 = tg_tensor_to_dtype(m, TG_F64);
        const double *ap = tg_tensor_data_ro(a64), *mp = tg_tensor_data_ro(m64);
        const double am[3] = {2.5, -2.5, 2.5}, mm[3] = {4, -1, 5};
        for (int c = 0; c < 3; c++) {
            ck_assert_double_eq_tol(ap[c], am[c], 1e-6);
            ck_assert_double_eq_tol(mp[c], mm[c], 1e-6);
        }
    }
    /* the max's gradient goes to the first maximum (5 at position 1, not 2) */
    tg_tensor *xg = tg_tensor_copy(x);
    TG_OK_(tg_set_requires_grad(xg, true));
    TG_OK_(tg_backward(tg_sum(tg_global_max_pool2d(xg, false), NULL, 0, false)));
    const double *gp = tg_tensor_data_ro(tg_grad(xg));
    const double want[12] = {0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 12; i++)
        ck_assert_double_eq(gp[i], want[i]);
    /* errors: not 4-D, empty plane, integer input */
    ck_assert_ptr_null(tg_global_avg_pool2d(tg_zeros(TG_F32, TG_SHAPE(2, 3)), false));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_global_avg_pool2d"));
    ck_assert_ptr_null(tg_global_max_pool2d(tg_zeros(TG_F32, TG_SHAPE(1, 2, 0, 3)), true));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_null(tg_global_max_pool2d(tg_zeros(TG_I32, TG_SHAPE(1, 2, 2, 3)), true));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    ck_assert_ptr_null(tg_global_max_pool2d(NULL, true));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    tg_scope_pop(s);
}
END_TEST

/* pad2d: the border holds the value, the inside the input; the gradient is the
 * inside of the output gradient; bad pads and shapes are errors. */
START_TEST(pad2d_values)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_f32(TG_SHAPE(1, 1, 2, 2), (const float[]){1, 2, 3, 4});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_pad2d(x, (const int[]){1, 0, 2, 1}, -1.0);
    TG_CHECK(y);
    ck_assert_int_eq(tg_tensor_dim(y, 2), 3);
    ck_assert_int_eq(tg_tensor_dim(y, 3), 5);
    const float want[15] = {-1, -1, -1, -1, -1, -1, -1, 1, 2, -1, -1, -1, 3, 4, -1};
    const float *yp = tg_tensor_data_ro(y);
    for (int i = 0; i < 15; i++)
        ck_assert_float_eq(yp[i], want[i]);
    /* weights 0..14 on the output: x's gradient is the weights at its positions */
    float wv[15];
    for (int i = 0; i < 15; i++)
        wv[i] = (float)i;
    tg_tensor *w = tg_from_f32(TG_SHAPE(1, 1, 3, 5), wv);
    TG_OK_(tg_backward(tg_sum(tg_mul(y, w), NULL, 0, false)));
    const float *gp = tg_tensor_data_ro(tg_grad(x));
    ck_assert_float_eq(gp[0], 7);
    ck_assert_float_eq(gp[1], 8);
    ck_assert_float_eq(gp[2], 12);
    ck_assert_float_eq(gp[3], 13);
    /* no padding: a copy */
    tg_tensor *z = tg_pad2d(x, (const int[]){0, 0, 0, 0}, 0.0);
    TG_CHECK(z);
    TG_ASSERT_TENSOR_CLOSE(z, x, 1e-30, 0.0);
    ck_assert_ptr_null(tg_pad2d(x, (const int[]){0, -1, 0, 0}, 0.0));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_pad2d"));
    ck_assert_ptr_null(tg_pad2d(x, NULL, 0.0));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_pad2d(tg_zeros(TG_F32, TG_SHAPE(2, 2, 2)), (const int[]){1, 1, 1, 1}, 0));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    tg_scope_pop(s);
}
END_TEST

/* Padding takes no part in the average: a 2x2 window with one real element is that
 * element; and stride 0 means the kernel size. */
START_TEST(avg_pool_excludes_padding)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(1, 1, 2, 2), (const float[]){1, 2, 3, 4});
    tg_pool2d_opts o = {{2, 2}, {0, 0}, {1, 1, 1, 1}, false, false}; /* windows at rows -1..0 and 1..2 */
    for (int be = 0; be < 2; be++) {
        tg_backend prev = tg_set_backend(be ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
        tg_tensor *y = tg_avg_pool2d(x, &o);
        tg_tensor *m = tg_max_pool2d(x, &o);
        tg_set_backend(prev);
        TG_CHECK(y && m);
        ck_assert_int_eq(tg_tensor_dim(y, 2), 2);
        ck_assert_int_eq(tg_tensor_dim(y, 3), 2);
        const float *yp = tg_tensor_data(y), *mp = tg_tensor_data(m);
        for (int k = 0; k < 4; k++) {
            ck_assert_float_eq_tol(yp[k], (float)(k + 1), 1e-6f);
            ck_assert_float_eq_tol(mp[k], (float)(k + 1), 1e-6f);
        }
    }
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- dense table */

typedef struct dense_case {
    const char *name;
    int ndim;
    int64_t xshape[4];
    int64_t out;
    bool bias;
} dense_case;

static const dense_case dense_cases[] = {
    {"seed dense 5408 -> 128", 2, {4, 5408}, 128, true},
    {"seed dense 128 -> 10", 2, {4, 128}, 10, true},
    {"flatten of 32x13x13", 4, {3, 32, 13, 13}, 16, true},
    {"batch 1", 2, {1, 7}, 3, true},
    {"odd sizes, no bias", 2, {5, 13}, 9, false},
    {"rank 3 input", 3, {3, 4, 5}, 6, true},
};
#define N_DENSE (int)(sizeof dense_cases / sizeof dense_cases[0])

START_TEST(dense_table)
{
    const dense_case *k = &dense_cases[_i];
    int i = _i;
    tg_scope *s = tg_scope_push();
    int64_t in_features = 1;
    for (int d = 1; d < k->ndim; d++)
        in_features *= k->xshape[d];
    tg_tensor *in[MAX_IN] = {
        rnd(TG_F64, k->ndim, k->xshape, 400 + (uint64_t)i),
        rnd(TG_F64, TG_SHAPE(k->out, in_features), 500 + (uint64_t)i),
        k->bias ? rnd(TG_F64, TG_SHAPE(k->out), 600 + (uint64_t)i) : NULL,
    };
    char label[160];
    snprintf(label, sizeof label, "dense %s", k->name);
    compare_backends(dense_fn, NULL, in, label);
    tg_scope_pop(s);
}
END_TEST

/* The gradient of a rank-4 input has the input's shape. */
START_TEST(dense_grad_shape)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 3, 2, 2), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(5, 12), 2);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_dense(x, w, NULL);
    TG_CHECK(y != NULL);
    ck_assert_int_eq(tg_tensor_ndim(y), 2);
    ck_assert_int_eq(tg_tensor_dim(y, 1), 5);
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    ck_assert(tg_tensor_same_shape(tg_grad(x), x));
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- gradient checks */

typedef struct gc_case {
    const char *name;
    op_fn fn;
    const void *ctx;
    int n_in;
    int ndim[MAX_IN];
    int64_t shape[MAX_IN][4];
    bool distinct; /* inputs spread apart so max pooling has no near-ties */
} gc_case;

static const tg_conv2d_opts gc_conv_opts = {{2, 1}, {1, 0, 0, 1}, {1, 2}, false, 1};
static const tg_conv2d_opts gc_conv_nobias = {{2, 2}, {0, 1, 1, 0}, {1, 1}, false, 1};
static const tg_conv2d_opts gc_conv_relu = {{1, 1}, {1, 0, 1, 0}, {1, 1}, true, 1};
static const pool_ctx gc_max = {true, {{2, 2}, {1, 2}, {1, 0, 0, 1}, false, false}};
static const pool_ctx gc_avg = {false, {{3, 2}, {2, 1}, {1, 1, 1, 0}, false, false}};
static const dropout_ctx gc_drop = {0.4, 77};

static const gc_case gc_cases[] = {
    {"conv2d stride 2,1 asym padding dilation 1,2", conv_fn, &gc_conv_opts, 3,
     {4, 4, 1}, {{2, 2, 5, 6}, {3, 2, 2, 3}, {3}}, false},
    {"conv2d plain 3x3", conv_fn, &(tg_conv2d_opts)TG_CONV2D_OPTS_INIT, 3,
     {4, 4, 1}, {{1, 3, 4, 4}, {2, 3, 3, 3}, {2}}, false},
    {"max_pool2d", pool_fn, &gc_max, 1, {4}, {{2, 2, 5, 5}}, true},
    {"avg_pool2d", pool_fn, &gc_avg, 1, {4}, {{2, 2, 5, 4}}, false},
    {"conv2d no bias, stride 2", conv_fn, &gc_conv_nobias, 2, {4, 4}, {{2, 3, 5, 5}, {2, 3, 2, 2}},
     false},
    {"conv2d with fused ReLU", conv_fn, &gc_conv_relu, 3, {4, 4, 1},
     {{2, 2, 4, 5}, {3, 2, 3, 2}, {3}}, false},
    {"dense rank 3", dense_fn, NULL, 3, {3, 2, 1}, {{3, 2, 4}, {5, 8}, {5}}, false},
    {"dense no bias", dense_fn, NULL, 2, {2, 2}, {{3, 7}, {4, 7}}, false},
    {"dropout 0.4", dropout_fn, &gc_drop, 1, {3}, {{2, 3, 5}}, false},
};
#define N_GC (int)(sizeof gc_cases / sizeof gc_cases[0])

/* Values k * 0.37 mod 2 - 1 shuffled: pairwise at least ~0.01 apart. */
static void spread(tg_tensor *t, uint64_t seed)
{
    int64_t n = tg_tensor_numel(t);
    tg_rng r;
    tg_rng_seed(&r, seed);
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    ck_assert(perm != NULL);
    for (int64_t k = 0; k < n; k++)
        perm[k] = k;
    for (int64_t k = n - 1; k > 0; k--) {
        int64_t j = (int64_t)tg_rng_below(&r, (uint64_t)k + 1);
        int64_t tmp = perm[k];
        perm[k] = perm[j];
        perm[j] = tmp;
    }
    for (int64_t k = 0; k < n; k++)
        tg_set_flat(t, k, -1.0 + 2.0 * (double)perm[k] / (double)n);
    tg_tensor_bump_version(t);
    free(perm);
}

static tg_tensor *gc_adapter(tg_tensor *const *inputs, int n_inputs, void *ctx)
{
    const gc_case *k = ctx;
    tg_tensor *in[MAX_IN] = {NULL, NULL, NULL};
    for (int i = 0; i < n_inputs; i++)
        in[i] = inputs[i];
    return k->fn(in, k->ctx);
}

static void gradcheck_case(int i, bool f64)
{
    const gc_case *k = &gc_cases[i];
    tg_scope *s = tg_scope_push();
    tg_tensor *in[MAX_IN];
    for (int j = 0; j < k->n_in; j++) {
        in[j] = rnd(f64 ? TG_F64 : TG_F32, k->ndim[j], k->shape[j], 700 + (uint64_t)(10 * i + j));
        if (k->distinct)
            spread(in[j], 800 + (uint64_t)j);
        TG_OK_(tg_set_requires_grad(in[j], true));
    }
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    if (!f64) {
        tg_gradcheck_opts of = TG_GRADCHECK_OPTS_F32_INIT;
        o = of;
    }
    o.label = k->name;
    tg_gradcheck_report rep;
    tg_backend prev = tg_set_backend(f64 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_status st = tg_gradcheck(&rep, gc_adapter, (void *)k, in, k->n_in, &o);
    tg_set_backend(prev);
    ck_assert_msg(st == TG_OK, "%s: gradcheck could not run: %s", k->name, tg_last_error());
    ck_assert_msg(rep.passed, "%s (%s): %s", k->name, f64 ? "f64 elementwise" : "f32 directional",
                  rep.message);
    ck_assert_int_gt(rep.checked, 0);
    tg_scope_pop(s);
}

START_TEST(gradcheck_f64)
{
    gradcheck_case(_i, true);
}
END_TEST

START_TEST(gradcheck_f32)
{
    gradcheck_case(_i, false);
}
END_TEST

/* ---------------------------------------------------------------- errors */

/* ---------------------------------------------------------------- kept layouts */

/* conv -> ReLU -> max pool -> tanh: with 32 output channels oneDNN picks a
 * blocked layout for the conv's output, which then flows through ReLU, pooling
 * and tanh without a reorder (tg_backend_stats.layouts_kept). Forward and every
 * gradient must still match the reference backend. */
static tg_tensor *chain_fn(tg_tensor *const *in, const void *ctx)
{
    (void)ctx;
    return tg_tanh(tg_max_pool2d(tg_relu(tg_conv2d(in[0], in[1], in[2], NULL)), NULL));
}

START_TEST(kept_layout_chain_matches_reference)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *in[MAX_IN] = {rnd(TG_F64, TG_SHAPE(3, 2, 12, 12), 1),
                             rnd(TG_F64, TG_SHAPE(32, 2, 3, 3), 2),
                             rnd(TG_F64, TG_SHAPE(32), 3)};
    tg_backend_stats a, b;
    tg_backend_stats_get(&a);
    compare_backends(chain_fn, NULL, in, "conv-relu-pool-tanh");
    tg_backend_stats_get(&b);
    /* forward: conv, relu, pool, tanh outputs; backward: tanh, pool, relu grads */
    ck_assert_msg(b.layouts_kept - a.layouts_kept >= 6,
                  "only %llu activations stayed in oneDNN's layout",
                  (unsigned long long)(b.layouts_kept - a.layouts_kept));
    tg_scope_pop(s);
}
END_TEST

/* Reading, viewing and writing a tensor whose data is held in a oneDNN layout
 * sees the plain values: the first plain access reorders it back (a settle),
 * and a write through the plain pointer reaches the next op. */
START_TEST(kept_layout_plain_access)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 1, 9, 9), 4);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 1, 3, 3), 5);
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *want = tg_relu(tg_conv2d(x, w, NULL, NULL));
    tg_set_backend(prev);

    tg_backend_stats a, b;
    tg_backend_stats_get(&a);
    tg_tensor *y = tg_relu(tg_conv2d(x, w, NULL, NULL));
    tg_backend_stats_get(&b);
    ck_assert_msg(b.layouts_kept - a.layouts_kept == 2, "kept %llu layouts, expected 2",
                  (unsigned long long)(b.layouts_kept - a.layouts_kept));
    ck_assert_int_eq(b.layout_settles, a.layout_settles);
    int64_t where;
    double e = tg_test_max_scaled_err(y, want, F32_ATOL, F32_RTOL, &where);
    ck_assert_msg(e <= 1.0, "kept layout read back: element %lld off by %.3g x tol",
                  (long long)where, e);
    tg_backend_stats_get(&a);
    ck_assert_int_eq(a.layout_settles, b.layout_settles + 1);

    /* a view of a kept tensor (narrow along the batch) */
    tg_tensor *c = tg_conv2d(x, w, NULL, NULL);
    tg_tensor *v = tg_slice(c, 0, 1, 2);
    tg_backend_stats_get(&b);
    tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *cref = tg_conv2d(x, w, NULL, NULL);
    tg_set_backend(prev);
    e = tg_test_max_scaled_err(v, tg_slice(cref, 0, 1, 2), F32_ATOL, F32_RTOL, &where);
    ck_assert_msg(e <= 1.0, "view of a kept layout: element %lld off by %.3g x tol",
                  (long long)where, e);

    /* a write through the plain pointer is what the next op reads */
    tg_tensor *c2 = tg_conv2d(x, w, NULL, NULL);
    float *p = tg_tensor_data(c2);
    p[0] = 1000.0f;
    p[9 * 0 + 1] = -5.0f;
    tg_tensor *r = tg_relu(c2);
    ck_assert_msg(tg_get_flat(r, 0) == 1000.0, "relu read %g, not the written 1000",
                  tg_get_flat(r, 0));
    ck_assert_msg(tg_get_flat(r, 1) == 0.0, "relu read %g, not relu(-5) = 0",
                  tg_get_flat(r, 1));
    tg_scope_pop(s);
}
END_TEST

static const char *op_detail(tg_tensor *y);

/* opts.relu gives exactly tg_relu(tg_conv2d(...)): values and gradients, on
 * oneDNN (post-op, blocked output) and on the reference backend, in one node. */
/* A grouped convolution is the concatenation over channels of ordinary
 * convolutions, one per group, of the group's input channels with its filters:
 * checked in f64 (reference) and f32 (oneDNN), values and gradients. */
START_TEST(conv_groups_equal_split_convs)
{
    tg_dtype dt = _i ? TG_F64 : TG_F32;
    tg_scope *s = tg_scope_push();
    enum { G = 3, CG = 2, OG = 4 };
    tg_tensor *x = tg_tensor_to_dtype(rnd(TG_F64, TG_SHAPE(2, G * CG, 6, 5), 41), dt);
    tg_tensor *w = tg_tensor_to_dtype(rnd(TG_F64, TG_SHAPE(G * OG, CG, 3, 3), 42), dt);
    tg_tensor *b = tg_tensor_to_dtype(rnd(TG_F64, TG_SHAPE(G * OG), 43), dt);
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_set_requires_grad(w, true));
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    o.pad[0] = o.pad[1] = o.pad[2] = o.pad[3] = 1;
    o.stride[1] = 2;
    o.groups = G;
    tg_tensor *y = tg_conv2d(x, w, b, &o);
    TG_CHECK(y != NULL);
    tg_tensor *gy = tg_tensor_to_dtype(rnd(TG_F64, tg_tensor_ndim(y), tg_tensor_shape(y), 44), dt);
    tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
    bo.grad_output = gy;
    TG_OK_(tg_backward_ex(y, &bo));
    tg_tensor *gx = tg_grad(x), *gw = tg_grad(w);
    /* the same from leaves of their own, group by group */
    tg_tensor *x2 = tg_contiguous(tg_detach(tg_mul_scalar(x, 1.0)));
    tg_tensor *w2 = tg_contiguous(tg_detach(tg_mul_scalar(w, 1.0)));
    TG_OK_(tg_set_requires_grad(x2, true));
    TG_OK_(tg_set_requires_grad(w2, true));
    tg_conv2d_opts o1 = o;
    o1.groups = 1;
    tg_tensor *parts[G];
    for (int gi = 0; gi < G; gi++)
        parts[gi] = tg_conv2d(tg_slice(x2, 1, gi * CG, (gi + 1) * CG),
                              tg_slice(w2, 0, gi * OG, (gi + 1) * OG),
                              tg_slice(b, 0, gi * OG, (gi + 1) * OG), &o1);
    tg_tensor *y2 = tg_concat(parts, G, 1);
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    TG_ASSERT_TENSOR_CLOSE(y, y2, tol, tol);
    TG_OK_(tg_backward_ex(y2, &bo));
    TG_ASSERT_TENSOR_CLOSE(gx, tg_grad(x2), tol, tol);
    TG_ASSERT_TENSOR_CLOSE(gw, tg_grad(w2), tol, tol);
    /* errors: filters not divisible into the groups, channels that do not match */
    o.groups = 5;
    ck_assert_ptr_null(tg_conv2d(x, w, b, &o));
    TG_ASSERT_ERROR_HAS("weight [12, 2, 3, 3] has 12 output channels, not a multiple of groups 5");
    o.groups = 2;
    ck_assert_ptr_null(tg_conv2d(x, w, b, &o));
    TG_ASSERT_ERROR_HAS("expects 4 (2 per group, 2 groups)");
    o.groups = -1;
    ck_assert_ptr_null(tg_conv2d(x, w, b, &o));
    TG_ASSERT_ERROR_HAS("groups must be >= 1");
    tg_scope_pop(s);
}
END_TEST

START_TEST(conv_fused_relu_equals_composition)
{
    tg_scope *s = tg_scope_push();
    tg_backend backends[] = {TG_BACKEND_AUTO, TG_BACKEND_REFERENCE};
    for (int k = 0; k < 2; k++) {
        tg_backend prev = tg_set_backend(backends[k]);
        tg_tensor *x = rnd(TG_F32, TG_SHAPE(3, 1, 12, 12), 11);
        tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 1, 3, 3), 12);
        tg_tensor *b = rnd(TG_F32, TG_SHAPE(32), 13);
        tg_tensor *gy = rnd(TG_F32, TG_SHAPE(3, 32, 10, 10), 14);
        TG_OK_(tg_set_requires_grad(w, true));
        TG_OK_(tg_set_requires_grad(b, true));
        tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
        o.relu = true;
        tg_tensor *yf = tg_conv2d(x, w, b, &o);
        TG_CHECK(yf != NULL);
        ck_assert_str_eq(tg_tensor_grad_fn(yf)->op->name, "conv2d");
        ck_assert_str_eq(op_detail(yf), "3x3 s1 p0 +relu");
        tg_tensor *yc = tg_relu(tg_conv2d(x, w, b, NULL));
        int64_t where;
        double e = tg_test_max_scaled_err(yf, yc, 1e-6, 1e-6, &where);
        ck_assert_msg(e <= 1.0, "backend %d: fused forward element %lld off by %.3g x tol", k,
                      (long long)where, e);
        tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
        bo.grad_output = gy;
        TG_OK_(tg_backward_ex(yf, &bo));
        tg_tensor *gw = tg_tensor_copy(tg_grad(w)), *gb = tg_tensor_copy(tg_grad(b));
        TG_OK_(tg_zero_grad(w));
        TG_OK_(tg_zero_grad(b));
        TG_OK_(tg_backward_ex(yc, &bo));
        e = tg_test_max_scaled_err(gw, tg_grad(w), 1e-5, 1e-5, &where);
        ck_assert_msg(e <= 1.0, "backend %d: fused weight gradient element %lld off by %.3g x tol",
                      k, (long long)where, e);
        e = tg_test_max_scaled_err(gb, tg_grad(b), 1e-5, 1e-5, &where);
        ck_assert_msg(e <= 1.0, "backend %d: fused bias gradient element %lld off by %.3g x tol",
                      k, (long long)where, e);
        tg_set_backend(prev);
    }
    tg_scope_pop(s);
}
END_TEST

/* After tg_zero_grad the weight and bias gradients are written straight into
 * .grad (tg_node_claim_leaf_grad): the same values as the first backward, and a
 * second backward still adds; on both backends, dense and conv. */
START_TEST(weight_grads_written_in_place)
{
    tg_scope *s = tg_scope_push();
    tg_backend backends[] = {TG_BACKEND_AUTO, TG_BACKEND_REFERENCE};
    for (int k = 0; k < 2; k++) {
        tg_backend prev = tg_set_backend(backends[k]);
        tg_tensor *x = rnd(TG_F32, TG_SHAPE(4, 2, 7, 7), 21);
        tg_tensor *w = rnd(TG_F32, TG_SHAPE(16, 2, 3, 3), 22), *b = rnd(TG_F32, TG_SHAPE(16), 23);
        tg_tensor *w2 = rnd(TG_F32, TG_SHAPE(5, 400), 24), *b2 = rnd(TG_F32, TG_SHAPE(5), 25);
        tg_tensor *params[] = {w, b, w2, b2};
        for (int i = 0; i < 4; i++)
            TG_OK_(tg_set_requires_grad(params[i], true));
        tg_tensor *first[4];
        for (int round = 0; round < 3; round++) {
            for (int rep = 0; rep < (round == 2 ? 2 : 1); rep++) {
                tg_tensor *h = tg_conv2d(x, w, b, NULL);
                tg_tensor *y = tg_dense(tg_reshape(h, 2, (int64_t[]){4, 400}), w2, b2);
                TG_OK_(tg_backward(tg_sum(tg_mul(y, y), NULL, 0, false)));
            }
            for (int i = 0; i < 4; i++) {
                tg_tensor *g = tg_grad(params[i]);
                TG_CHECK(g != NULL);
                if (round == 0) {
                    first[i] = tg_tensor_copy(g);
                } else {
                    tg_tensor *want = round == 1 ? first[i] : tg_mul_scalar(first[i], 2.0);
                    int64_t where;
                    double e = tg_test_max_scaled_err(g, want, 1e-5, 1e-5, &where);
                    ck_assert_msg(e <= 1.0, "backend %d, round %d, parameter %d: element %lld "
                                  "off by %.3g x tol", k, round, i, (long long)where, e);
                }
                TG_OK_(tg_zero_grad(params[i]));
            }
        }
        tg_set_backend(prev);
    }
    tg_scope_pop(s);
}
END_TEST

START_TEST(conv_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 3, 8, 8), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(4, 2, 3, 3), 2);
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;

    ck_assert_ptr_null(tg_conv2d(x, w, NULL, &o));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_conv2d");
    TG_ASSERT_ERROR_HAS("channel");
    TG_ASSERT_ERROR_HAS("[2, 3, 8, 8]");
    TG_ASSERT_ERROR_HAS("[4, 2, 3, 3]");

    tg_tensor *w3 = rnd(TG_F32, TG_SHAPE(4, 3, 9, 3), 3);
    ck_assert_ptr_null(tg_conv2d(x, w3, NULL, &o));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("larger than the padded input");
    TG_ASSERT_ERROR_HAS("[4, 3, 9, 3]");
    o.pad[0] = 1; /* 8 + 1 = 9 rows: now it fits */
    TG_CHECK(tg_conv2d(x, w3, NULL, &o) != NULL);

    tg_tensor *wk = rnd(TG_F32, TG_SHAPE(4, 3, 3, 3), 4);
    tg_conv2d_opts bad = TG_CONV2D_OPTS_INIT;
    bad.stride[0] = 0;
    ck_assert_ptr_null(tg_conv2d(x, wk, NULL, &bad));
    TG_ASSERT_ERROR_HAS("tg_conv2d: stride must be >= 1, got (0, 1) (input [2, 3, 8, 8])");
    bad.stride[0] = -2;
    ck_assert_ptr_null(tg_conv2d(x, wk, NULL, &bad));
    TG_ASSERT_ERROR_HAS("stride");
    bad = (tg_conv2d_opts)TG_CONV2D_OPTS_INIT;
    bad.dilation[1] = 0;
    ck_assert_ptr_null(tg_conv2d(x, wk, NULL, &bad));
    TG_ASSERT_ERROR_HAS("dilation");
    bad = (tg_conv2d_opts)TG_CONV2D_OPTS_INIT;
    bad.pad[3] = -1;
    ck_assert_ptr_null(tg_conv2d(x, wk, NULL, &bad));
    TG_ASSERT_ERROR_HAS("padding");

    tg_tensor *x3 = rnd(TG_F32, TG_SHAPE(3, 8, 8), 5);
    ck_assert_ptr_null(tg_conv2d(x3, wk, NULL, NULL));
    TG_ASSERT_ERROR_HAS("tg_conv2d: input must be 4-D (N, C, H, W), got [3, 8, 8]");

    tg_tensor *b = rnd(TG_F32, TG_SHAPE(3), 6);
    ck_assert_ptr_null(tg_conv2d(x, wk, b, NULL));
    TG_ASSERT_ERROR_HAS("bias");
    TG_ASSERT_ERROR_HAS("[3]");

    tg_tensor *x64 = rnd(TG_F64, TG_SHAPE(2, 3, 8, 8), 7);
    ck_assert_ptr_null(tg_conv2d(x64, wk, NULL, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);

    ck_assert_ptr_null(tg_conv2d(NULL, wk, NULL, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_conv2d(x, NULL, NULL, NULL));
    tg_scope_pop(s);
}
END_TEST

START_TEST(pool_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 3, 4, 4), 1);
    tg_pool2d_opts o = {{5, 2}, {0, 0}, {0, 0, 0, 0}, false, false};
    ck_assert_ptr_null(tg_max_pool2d(x, &o));
    TG_ASSERT_ERROR_HAS("tg_max_pool2d");
    TG_ASSERT_ERROR_HAS("larger than the padded input");
    TG_ASSERT_ERROR_HAS("[2, 3, 4, 4]");
    o = (tg_pool2d_opts){{2, 2}, {-1, 0}, {0, 0, 0, 0}, false, false};
    ck_assert_ptr_null(tg_avg_pool2d(x, &o));
    TG_ASSERT_ERROR_HAS("tg_avg_pool2d: stride");
    o = (tg_pool2d_opts){{0, 2}, {0, 0}, {0, 0, 0, 0}, false, false};
    ck_assert_ptr_null(tg_max_pool2d(x, &o));
    TG_ASSERT_ERROR_HAS("kernel");
    o = (tg_pool2d_opts){{2, 2}, {0, 0}, {2, 0, 0, 0}, false, false};
    ck_assert_ptr_null(tg_max_pool2d(x, &o));
    TG_ASSERT_ERROR_HAS("padding");
    tg_tensor *x2 = rnd(TG_F32, TG_SHAPE(4, 4), 2);
    ck_assert_ptr_null(tg_max_pool2d(x2, NULL));
    TG_ASSERT_ERROR_HAS("tg_max_pool2d: input must be 4-D (N, C, H, W), got [4, 4]");
    ck_assert_ptr_null(tg_avg_pool2d(NULL, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    tg_scope_pop(s);
}
END_TEST

START_TEST(dense_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(4, 10), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(3, 9), 2);
    ck_assert_ptr_null(tg_dense(x, w, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_dense");
    TG_ASSERT_ERROR_HAS("[4, 10]");
    TG_ASSERT_ERROR_HAS("[3, 9]");
    tg_tensor *x1 = rnd(TG_F32, TG_SHAPE(10), 3);
    ck_assert_ptr_null(tg_dense(x1, w, NULL));
    TG_ASSERT_ERROR_HAS("tg_dense: input [10] has 10 features but weight [3, 9] expects 9");
    ck_assert_ptr_null(tg_dense(tg_zeros(TG_F32, 0, NULL), w, NULL));
    TG_ASSERT_ERROR_HAS("rank >= 1");
    /* one sample (in) -> (out): the same numbers as a batch of one, and its gradient */
    tg_tensor *w9 = rnd(TG_F32, TG_SHAPE(3, 10), 7), *b9 = rnd(TG_F32, TG_SHAPE(3), 8);
    TG_OK_(tg_set_requires_grad(x1, true));
    tg_tensor *y1 = tg_dense(x1, w9, b9);
    ck_assert_int_eq(tg_tensor_ndim(y1), 1);
    ck_assert_int_eq(tg_tensor_dim(y1, 0), 3);
    for (int o = 0; o < 3; o++) {
        double acc = tg_get_flat(b9, o);
        for (int i = 0; i < 10; i++)
            acc += tg_get_flat(x1, i) * tg_get_flat(w9, o * 10 + i);
        ck_assert_double_eq_tol(tg_get_flat(y1, o), acc, 1e-5);
    }
    TG_OK_(tg_backward(tg_sum(y1, NULL, 0, false)));
    for (int i = 0; i < 10; i++) {
        double acc = 0;
        for (int o = 0; o < 3; o++)
            acc += tg_get_flat(w9, o * 10 + i);
        ck_assert_double_eq_tol(tg_get_flat(tg_grad(x1), i), acc, 1e-5);
    }
    tg_tensor *w10 = rnd(TG_F32, TG_SHAPE(3, 10), 4);
    tg_tensor *b = rnd(TG_F32, TG_SHAPE(4), 5);
    ck_assert_ptr_null(tg_dense(x, w10, b));
    TG_ASSERT_ERROR_HAS("bias");
    tg_tensor *w1 = rnd(TG_F32, TG_SHAPE(30), 6);
    ck_assert_ptr_null(tg_dense(x, w1, NULL));
    TG_ASSERT_ERROR_HAS("weight must be 2-D");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- dropout */

START_TEST(dropout_statistics)
{
    tg_scope *s = tg_scope_push();
    const int64_t n = 200000;
    const double rate = 0.3;
    tg_tensor *x = tg_ones(_i ? TG_F64 : TG_F32, TG_SHAPE(n / 100, 100));
    TG_OK_(tg_set_requires_grad(x, true));
    tg_rng r;
    tg_rng_seed(&r, 2024);
    tg_tensor *y = tg_dropout(x, rate, true, &r);
    TG_CHECK(y != NULL);
    ck_assert(y != x);
    ck_assert_int_eq(tg_tensor_dtype(y), tg_tensor_dtype(x));
    int64_t zeros = 0;
    double kept = 1.0 / (1.0 - rate);
    for (int64_t k = 0; k < n; k++) {
        double v = tg_get_flat(y, k);
        if (v == 0.0)
            zeros++;
        else
            ck_assert_msg(fabs(v - kept) <= 1e-6 * kept, "kept element %lld is %g, want %g",
                          (long long)k, v, kept);
    }
    /* binomial: sd = sqrt(rate (1 - rate) / n) ~ 0.001; allow 6 sd */
    double frac = (double)zeros / (double)n;
    ck_assert_msg(fabs(frac - rate) < 0.0062, "dropped fraction %g, want %g", frac, rate);

    /* the gradient uses the same mask and scale: with x = 1, dL/dx == y */
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    TG_ASSERT_TENSOR_CLOSE(tg_grad(x), y, EXACT_ATOL, 0.0);
    tg_scope_pop(s);
}
END_TEST

START_TEST(dropout_identity_and_extremes)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(3, 4), 1);
    TG_OK_(tg_set_requires_grad(x, true));
    ck_assert_ptr_eq(tg_dropout(x, 0.5, false, NULL), x); /* evaluation */
    ck_assert_ptr_eq(tg_dropout(x, 0.0, true, NULL), x);  /* rate 0 */

    /* rate 1: zeros forward, zeros backward */
    tg_tensor *y = tg_dropout(x, 1.0, true, NULL);
    TG_CHECK(y != NULL);
    for (int64_t k = 0; k < 12; k++)
        ck_assert(tg_get_flat(y, k) == 0.0);
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    for (int64_t k = 0; k < 12; k++)
        ck_assert(tg_get_flat(tg_grad(x), k) == 0.0);

    /* identity passes gradients straight through (it is the same tensor) */
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_dropout(x, 0.5, false, NULL), NULL, 0, false)));
    for (int64_t k = 0; k < 12; k++)
        ck_assert(tg_get_flat(tg_grad(x), k) == 1.0);

    /* a bad rate is an argument error naming the op */
    const double bad[] = {1.5, -0.1, NAN};
    for (int k = 0; k < 3; k++) {
        ck_assert_ptr_null(tg_dropout(x, bad[k], true, NULL));
        ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
        TG_ASSERT_ERROR_HAS("tg_dropout: rate must be in [0, 1]");
    }
    ck_assert_ptr_null(tg_dropout(x, 2.0, false, NULL)); /* checked even when not training */
    ck_assert_ptr_null(tg_dropout(NULL, 0.5, true, NULL));
    tg_scope_pop(s);
}
END_TEST

START_TEST(dropout_reproducible)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(50, 40), 1);
    tg_rng r1, r2, r3;
    tg_rng_seed(&r1, 11);
    tg_rng_seed(&r2, 11);
    tg_rng_seed(&r3, 12);
    tg_tensor *a = tg_dropout(x, 0.5, true, &r1);
    tg_tensor *b = tg_dropout(x, 0.5, true, &r2);
    tg_tensor *c = tg_dropout(x, 0.5, true, &r3);
    TG_CHECK(a && b && c);
    TG_ASSERT_TENSOR_CLOSE(a, b, EXACT_ATOL, 0.0);
    int64_t w;
    ck_assert_msg(tg_test_max_scaled_err(a, c, 1e-9, 0.0, &w) > 1.0,
                  "different seeds gave the same mask");
    /* the global generator: tg_manual_seed replays the mask */
    tg_manual_seed(5);
    tg_tensor *g1 = tg_dropout(x, 0.5, true, NULL);
    tg_manual_seed(5);
    tg_tensor *g2 = tg_dropout(x, 0.5, true, NULL);
    TG_CHECK(g1 && g2);
    TG_ASSERT_TENSOR_CLOSE(g1, g2, EXACT_ATOL, 0.0);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- DOT labels */

static const char *op_detail(tg_tensor *y)
{
    static char detail[96];
    tg_graph *g = NULL;
    TG_OK_(tg_graph_build(&g, &y, 1));
    detail[0] = '\0';
    for (size_t i = 0; i < tg_graph_size(g); i++) {
        const tg_graph_item *it = tg_graph_item_at(g, i);
        if (it->kind == TG_GRAPH_OP && it->output_id >= 0 &&
            tg_graph_item_at(g, (size_t)it->output_id)->tensor == y)
            snprintf(detail, sizeof detail, "%s", it->op_detail);
    }
    tg_graph_free(g);
    return detail;
}

START_TEST(describe_labels)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(1, 2, 8, 8), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(3, 2, 3, 3), 2);
    TG_OK_(tg_set_requires_grad(w, true));
    TG_OK_(tg_set_requires_grad(x, true));
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    ck_assert_str_eq(op_detail(tg_conv2d(x, w, NULL, &o)), "3x3 s1 p0");
    o = (tg_conv2d_opts){{2, 2}, {0, 1, 0, 1}, {2, 2}, false, 1};
    ck_assert_str_eq(op_detail(tg_conv2d(x, w, NULL, &o)), "3x3 s2 p0,1,0,1 d2,2");
    ck_assert_str_eq(op_detail(tg_max_pool2d(x, NULL)), "2x2 s2");
    tg_tensor *wd = rnd(TG_F32, TG_SHAPE(4, 128), 3);
    ck_assert_str_eq(op_detail(tg_dense(x, wd, NULL)), "128->4");
    ck_assert_str_eq(op_detail(tg_dropout(x, 0.25, true, NULL)), "p=0.25");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- primitive cache */

typedef struct tiny_net {
    tg_tensor *x, *labels, *cw, *cb, *dw, *db;
} tiny_net;

/* conv 3x3 -> relu -> max pool -> dense -> cross-entropy, forward and backward. */
static void tiny_step(const tiny_net *m)
{
    tg_scope *s = tg_scope_push();
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    tg_tensor *h = tg_max_pool2d(tg_relu(tg_conv2d(m->x, m->cw, m->cb, &o)), NULL);
    tg_tensor *loss = tg_cross_entropy(tg_dense(h, m->dw, m->db), m->labels);
    TG_CHECK(loss != NULL);
    TG_OK_(tg_backward(loss));
    tg_scope_pop(s);
}

START_TEST(cache_second_step_creates_nothing)
{
    tg_scope *s = tg_scope_push();
    tiny_net m = {
        rnd(TG_F32, TG_SHAPE(6, 1, 10, 10), 1),
        tg_from_data(TG_I64, TG_SHAPE(6), (const int64_t[]){0, 3, 9, 2, 2, 7}),
        rnd(TG_F32, TG_SHAPE(16, 1, 3, 3), 2),
        rnd(TG_F32, TG_SHAPE(16), 3),
        rnd(TG_F32, TG_SHAPE(10, 16 * 4 * 4), 4),
        rnd(TG_F32, TG_SHAPE(10), 5),
    };
    tg_tensor *params[] = {m.cw, m.cb, m.dw, m.db};
    for (int i = 0; i < 4; i++)
        TG_OK_(tg_set_requires_grad(params[i], true));

    tg_backend_stats s0, s1, s2, s3;
    tg_backend_stats_get(&s0);
    tiny_step(&m);
    tg_backend_stats_get(&s1);
    tiny_step(&m);
    tg_backend_stats_get(&s2);
    ck_assert_msg(s1.primitives_created > s0.primitives_created || s1.cache_hits > s0.cache_hits,
                  "the first step used no oneDNN primitive");
    ck_assert_msg(s2.primitives_created == s1.primitives_created,
                  "the second step created %llu primitive(s)",
                  (unsigned long long)(s2.primitives_created - s1.primitives_created));
    ck_assert_msg(s2.cache_misses == s1.cache_misses, "the second step missed the cache");
    ck_assert(s2.cache_hits > s1.cache_hits);
    ck_assert_msg(s2.weight_reorders == s1.weight_reorders,
                  "unchanged weights were reordered again");

    /* an update (version bump) makes blocked weights be reordered again, once */
    for (int i = 0; i < 4; i++) {
        TG_OK_(tg_zero_grad(params[i]));
        tg_tensor_bump_version(params[i]);
    }
    tiny_step(&m);
    tg_backend_stats_get(&s3);
    ck_assert(s3.primitives_created == s2.primitives_created);
    if (s1.weight_reorders > s0.weight_reorders)
        ck_assert_msg(s3.weight_reorders > s2.weight_reorders,
                      "changed weights were not reordered");
    tg_scope_pop(s);
}
END_TEST

/* Reordered weights follow in-place updates: write new values through the data
 * pointer, bump the version, and the result changes accordingly. */
START_TEST(cache_follows_weight_updates)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 16, 6, 6), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 16, 3, 3), 2);
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    tg_tensor *y1 = tg_conv2d(x, w, NULL, &o);
    TG_CHECK(y1 != NULL);
    float *wp = tg_tensor_data(w);
    for (int64_t k = 0; k < tg_tensor_numel(w); k++)
        wp[k] *= 2.0f;
    tg_tensor_bump_version(w);
    tg_tensor *y2 = tg_conv2d(x, w, NULL, &o);
    TG_CHECK(y2 != NULL);
    TG_ASSERT_TENSOR_CLOSE(y2, tg_mul_scalar(y1, 2.0), 1e-5, 1e-5);

    /* a fresh weight tensor (maybe at the freed one's address) is never mistaken
     * for the old one */
    tg_tensor *y3 = NULL;
    for (int round = 0; round < 3; round++) {
        tg_scope *inner = tg_scope_push();
        tg_tensor *wn = rnd(TG_F32, TG_SHAPE(32, 16, 3, 3), 10 + (uint64_t)round);
        tg_tensor *yn = tg_conv2d(x, wn, NULL, &o);
        tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
        tg_tensor *yr = tg_conv2d(x, wn, NULL, &o);
        tg_set_backend(prev);
        TG_CHECK(yn && yr);
        TG_ASSERT_TENSOR_CLOSE(yn, yr, F32_ATOL, F32_RTOL);
        y3 = yn;
        tg_scope_pop(inner);
    }
    (void)y3;
    tg_scope_pop(s);
}
END_TEST

/* Writing into a weight through the writable accessor, without calling
 * tg_tensor_bump_version, reaches the next conv: the accessor bumps the
 * version, so the reordered copy is made again. */
START_TEST(cache_follows_accessor_writes)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 16, 6, 6), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 16, 3, 3), 2);
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    tg_tensor *y1 = tg_conv2d(x, w, NULL, &o);
    TG_CHECK(y1 != NULL);
    float *wp = tg_tensor_data(w);
    for (int64_t k = 0; k < tg_tensor_numel(w); k++)
        wp[k] *= 2.0f;
    tg_tensor *y2 = tg_conv2d(x, w, NULL, &o);
    TG_CHECK(y2 != NULL);
    TG_ASSERT_TENSOR_CLOSE(y2, tg_mul_scalar(y1, 2.0), 1e-5, 1e-5);
    /* and the oracle agrees */
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *yr = tg_conv2d(x, w, NULL, &o);
    tg_set_backend(prev);
    TG_ASSERT_TENSOR_CLOSE(y2, yr, F32_ATOL, F32_RTOL);
    tg_scope_pop(s);
}
END_TEST

START_TEST(cache_clear)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 3, 6, 6), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(4, 3, 3, 3), 2);
    tg_tensor *y1 = tg_conv2d(x, w, NULL, NULL);
    tg_backend_cache_clear();
    tg_backend_stats st0, st1;
    tg_backend_stats_get(&st0);
    tg_tensor *y2 = tg_conv2d(x, w, NULL, NULL);
    tg_backend_stats_get(&st1);
    TG_CHECK(y1 && y2);
    ck_assert(st1.primitives_created > st0.primitives_created);
    TG_ASSERT_TENSOR_CLOSE(y1, y2, EXACT_ATOL, 0.0);
    tg_backend_stats_get(NULL); /* ignored */
    tg_scope_pop(s);
}
END_TEST

/* Two threads sharing the engine, the cache and the glue's buffers: each runs
 * conv -> pool -> dense forward and backward on its own shapes and must get what
 * it got alone. */
typedef struct thread_job {
    int64_t n, c, o;
    tg_tensor *expect_y, *expect_gw; /* owned, computed single-threaded */
    bool ok;
    char why[160];
} thread_job;

static void job_run(int64_t n, int64_t c, int64_t o, tg_tensor **y, tg_tensor **gw)
{
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(n, c, 9, 9), (uint64_t)(n * 100 + c));
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(o, c, 3, 3), (uint64_t)(o * 7 + c));
    tg_tensor *wd = rnd(TG_F32, TG_SHAPE(5, o * 3 * 3), 3);
    tg_set_requires_grad(w, true);
    tg_conv2d_opts opts = TG_CONV2D_OPTS_INIT;
    tg_tensor *out = tg_dense(tg_max_pool2d(tg_conv2d(x, w, NULL, &opts), NULL), wd, NULL);
    if (out && tg_backward(tg_sum(out, NULL, 0, false)) == TG_OK) {
        *y = tg_scope_keep(out);
        *gw = tg_retain(tg_grad(w));
    }
}

static void *job_thread(void *arg)
{
    thread_job *j = arg;
    j->ok = true;
    for (int it = 0; it < 20 && j->ok; it++) {
        tg_scope *s = tg_scope_push();
        tg_tensor *y = NULL, *gw = NULL;
        job_run(j->n, j->c, j->o, &y, &gw);
        int64_t w1 = -1, w2 = -1;
        if (!y || !gw) {
            j->ok = false;
            snprintf(j->why, sizeof j->why, "failed: %s", tg_last_error());
        } else if (tg_test_max_scaled_err(y, j->expect_y, 1e-5, 1e-5, &w1) > 1.0 ||
                   tg_test_max_scaled_err(gw, j->expect_gw, 1e-5, 1e-5, &w2) > 1.0) {
            j->ok = false;
            snprintf(j->why, sizeof j->why, "iteration %d differs (elements %lld, %lld)", it,
                     (long long)w1, (long long)w2);
        }
        tg_release(y);
        tg_release(gw);
        tg_scope_pop(s);
    }
    return NULL;
}

START_TEST(glue_two_threads)
{
    thread_job jobs[2] = {{3, 16, 32, NULL, NULL, false, ""}, {2, 3, 8, NULL, NULL, false, ""}};
    for (int i = 0; i < 2; i++) {
        tg_scope *s = tg_scope_push();
        job_run(jobs[i].n, jobs[i].c, jobs[i].o, &jobs[i].expect_y, &jobs[i].expect_gw);
        tg_scope_pop(s);
        TG_CHECK(jobs[i].expect_y && jobs[i].expect_gw);
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, job_thread, &jobs[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(jobs[i].ok, "thread %d: %s", i, jobs[i].why);
        tg_release(jobs[i].expect_y);
        tg_release(jobs[i].expect_gw);
    }
}
END_TEST

/* ---------------------------------------------------------------- hostile inputs */

/* An empty batch through every op, on both backends and dtypes: outputs of the
 * right shape, and a backward that gives every input an all-zero gradient of its
 * own shape. */
START_TEST(empty_batch)
{
    tg_dtype dt = _i & 1 ? TG_F64 : TG_F32;
    tg_backend prev = tg_set_backend(_i & 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    tg_tensor *in[] = {tg_zeros(dt, TG_SHAPE(0, 2, 5, 5)), tg_ones(dt, TG_SHAPE(3, 2, 3, 3)),
                       tg_ones(dt, TG_SHAPE(3)), tg_ones(dt, TG_SHAPE(4, 50)),
                       tg_ones(dt, TG_SHAPE(4))};
    for (int i = 0; i < 5; i++)
        TG_OK_(tg_set_requires_grad(in[i], true));
    tg_rng r;
    tg_rng_seed(&r, 3);
    struct {
        const char *name;
        tg_tensor *y;
        int ndim;
        int64_t shape[4];
    } out[] = {
        {"conv2d", tg_conv2d(in[0], in[1], in[2], NULL), 4, {0, 3, 3, 3}},
        {"max_pool2d", tg_max_pool2d(in[0], NULL), 4, {0, 2, 2, 2}},
        {"avg_pool2d", tg_avg_pool2d(in[0], NULL), 4, {0, 2, 2, 2}},
        {"dense", tg_dense(in[0], in[3], in[4]), 2, {0, 4}},
        {"dropout", tg_dropout(in[0], 0.5, true, &r), 4, {0, 2, 5, 5}},
    };
    tg_tensor *loss = NULL;
    for (size_t k = 0; k < sizeof out / sizeof out[0]; k++) {
        ck_assert_msg(out[k].y != NULL, "%s: %s", out[k].name, tg_last_error());
        ck_assert_int_eq(tg_tensor_ndim(out[k].y), out[k].ndim);
        for (int d = 0; d < out[k].ndim; d++)
            ck_assert_int_eq(tg_tensor_dim(out[k].y, d), out[k].shape[d]);
        tg_tensor *part = tg_sum(out[k].y, NULL, 0, false);
        loss = loss ? tg_add(loss, part) : part;
    }
    TG_OK_(tg_backward(loss));
    for (int i = 0; i < 5; i++) {
        tg_tensor *g = tg_grad(in[i]);
        ck_assert_msg(g != NULL && tg_tensor_same_shape(g, in[i]), "input %d: gradient", i);
        for (int64_t k = 0; k < tg_tensor_numel(g); k++)
            ck_assert_msg(tg_get_flat(g, k) == 0.0, "input %d: gradient element %lld", i,
                          (long long)k);
    }
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

/* Only the batch (and for pooling the channels) may be empty: without rows or
 * columns every window lies in the padding. A clear error on both backends. */
START_TEST(empty_rows_or_columns)
{
    tg_scope *s = tg_scope_push();
    for (int be = 0; be < 2; be++) {
        tg_backend prev = tg_set_backend(be ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
        tg_tensor *xh = tg_zeros(TG_F32, TG_SHAPE(1, 2, 0, 5));
        tg_tensor *xw = tg_zeros(TG_F64, TG_SHAPE(1, 2, 5, 0));
        tg_conv2d_opts o = {{1, 1}, {2, 2, 1, 1}, {1, 1}, false, 1};
        tg_pool2d_opts po = {{2, 2}, {1, 1}, {1, 1, 1, 1}, false, false};
        ck_assert_ptr_null(tg_conv2d(xh, tg_ones(TG_F32, TG_SHAPE(3, 2, 3, 3)), NULL, &o));
        ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
        TG_ASSERT_ERROR_HAS("tg_conv2d: input [1, 2, 0, 5] has no rows or no columns");
        ck_assert_ptr_null(tg_conv2d(xw, tg_ones(TG_F64, TG_SHAPE(3, 2, 1, 1)), NULL, &o));
        TG_ASSERT_ERROR_HAS("tg_conv2d: input [1, 2, 5, 0] has no rows or no columns");
        ck_assert_ptr_null(tg_max_pool2d(xh, &po));
        ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
        TG_ASSERT_ERROR_HAS("tg_max_pool2d: input [1, 2, 0, 5] has no rows or no columns");
        ck_assert_ptr_null(tg_avg_pool2d(xw, &po));
        TG_ASSERT_ERROR_HAS("tg_avg_pool2d: input [1, 2, 5, 0] has no rows or no columns");
        /* no channels is fine for pooling: nothing to pool */
        tg_tensor *y = tg_max_pool2d(tg_zeros(TG_F32, TG_SHAPE(2, 0, 4, 4)), NULL);
        TG_CHECK(y != NULL);
        ck_assert_int_eq(tg_tensor_numel(y), 0);
        tg_set_backend(prev);
    }
    tg_scope_pop(s);
}
END_TEST

/* Every op on non-contiguous inputs (transposed views, views at an offset into
 * their storage) computes what it computes on contiguous copies, forward and
 * backward, bit for bit. */
static void view_vs_copy(const char *label, op_fn fn, const void *ctx, tg_tensor *x,
                         tg_tensor *w, tg_tensor *b)
{
    tg_tensor *in[MAX_IN] = {x, w, b}, *cp[MAX_IN] = {NULL, NULL, NULL};
    for (int i = 0; i < MAX_IN; i++) {
        if (!in[i])
            continue;
        cp[i] = tg_tensor_copy(in[i]);
        TG_CHECK(cp[i] != NULL && tg_tensor_is_contiguous(cp[i]));
        TG_OK_(tg_set_requires_grad(in[i], true));
        TG_OK_(tg_set_requires_grad(cp[i], true));
    }
    ck_assert_msg(!tg_tensor_is_contiguous(x) || tg_tensor_shares_storage(x, w),
                  "%s: the test wants a view", label);
    tg_tensor *y1 = fn(in, ctx), *y2 = fn(cp, ctx);
    ck_assert_msg(y1 && y2, "%s: %s", label, tg_last_error());
    TG_ASSERT_TENSOR_CLOSE(y1, y2, EXACT_ATOL, 0.0);
    tg_tensor *gy = tg_tensor_to_dtype(
        rnd(TG_F64, tg_tensor_ndim(y1), tg_tensor_shape(y1), 5), tg_tensor_dtype(y1));
    tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
    bo.grad_output = gy;
    TG_OK_(tg_backward_ex(y1, &bo));
    TG_OK_(tg_backward_ex(y2, &bo));
    for (int i = 0; i < MAX_IN; i++)
        if (in[i]) {
            ck_assert_msg(tg_grad(in[i]) && tg_grad(cp[i]), "%s: input %d has no gradient",
                          label, i);
            TG_ASSERT_TENSOR_CLOSE(tg_grad(in[i]), tg_grad(cp[i]), EXACT_ATOL, 0.0);
        }
}

static const pool_ctx view_max = {true, {{2, 3}, {1, 2}, {1, 0, 0, 1}, false, false}};
static const pool_ctx view_avg = {false, {{3, 2}, {2, 1}, {0, 1, 1, 0}, false, false}};
static const dropout_ctx view_drop = {0.3, 9};

START_TEST(views_match_copies)
{
    tg_dtype dt = _i ? TG_F64 : TG_F32;
    tg_scope *s = tg_scope_push();
    /* (2, 3, 6, 7) transposed from (2, 3, 7, 6); weights and bias at an offset */
    tg_tensor *x = tg_transpose(rnd(dt, TG_SHAPE(2, 3, 7, 6), 1), 2, 3);
    tg_tensor *w = tg_slice(rnd(dt, TG_SHAPE(6, 3, 3, 2), 2), 0, 2, 6);
    tg_tensor *b = tg_slice(rnd(dt, TG_SHAPE(7), 3), 0, 3, 7);
    tg_conv2d_opts o = {{1, 2}, {1, 0, 2, 1}, {1, 1}, false, 1};
    view_vs_copy("conv2d", conv_fn, &o, x, w, b);
    view_vs_copy("max_pool2d", pool_fn, &view_max,
                 tg_transpose(rnd(dt, TG_SHAPE(2, 3, 7, 6), 4), 2, 3), NULL, NULL);
    view_vs_copy("avg_pool2d", pool_fn, &view_avg,
                 tg_permute(rnd(dt, TG_SHAPE(6, 2, 3, 7), 5), (const int[]){1, 2, 0, 3}),
                 NULL, NULL);
    /* dense on a rank-4 view with a transposed weight */
    tg_tensor *xd = tg_transpose(rnd(dt, TG_SHAPE(2, 3, 7, 6), 6), 1, 3);
    tg_tensor *wd = tg_transpose(rnd(dt, TG_SHAPE(126, 5), 7), 0, 1);
    tg_tensor *bd = tg_slice(rnd(dt, TG_SHAPE(9), 8), 0, 4, 9);
    view_vs_copy("dense", dense_fn, NULL, xd, wd, bd);
    view_vs_copy("dropout", dropout_fn, &view_drop,
                 tg_transpose(rnd(dt, TG_SHAPE(4, 5, 6), 9), 0, 2), NULL, NULL);
    tg_scope_pop(s);
}
END_TEST

/* Wrong dtypes and ranks: an error naming the op and what is wrong, never a
 * crash or a silent conversion. */
START_TEST(dtype_and_rank_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 2, 6, 6), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(3, 2, 3, 3), 2);

    ck_assert_ptr_null(tg_conv2d(tg_zeros(TG_I64, TG_SHAPE(2, 2, 6, 6)), w, NULL, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_conv2d: input must be f32 or f64, got i64");
    ck_assert_ptr_null(tg_conv2d(x, w, rnd(TG_F64, TG_SHAPE(3), 3), NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_conv2d: dtypes f32 and f64 differ");
    ck_assert_ptr_null(tg_conv2d(x, w, rnd(TG_F32, TG_SHAPE(1, 3), 4), NULL));
    TG_ASSERT_ERROR_HAS("bias must have shape [3]");
    TG_ASSERT_ERROR_HAS("got [1, 3]");
    ck_assert_ptr_null(tg_conv2d(rnd(TG_F32, TG_SHAPE(1, 2, 2, 6, 6), 5), w, NULL, NULL));
    TG_ASSERT_ERROR_HAS("tg_conv2d: input must be 4-D (N, C, H, W), got [1, 2, 2, 6, 6]");
    ck_assert_ptr_null(tg_conv2d(x, rnd(TG_F32, TG_SHAPE(3, 2, 3), 6), NULL, NULL));
    TG_ASSERT_ERROR_HAS("tg_conv2d: weight must be 4-D (O, C, KH, KW), got [3, 2, 3]");
    ck_assert_ptr_null(tg_conv2d(x, tg_zeros(TG_F32, TG_SHAPE(0, 2, 3, 3)), NULL, NULL));
    TG_ASSERT_ERROR_HAS("weight [0, 2, 3, 3] has an empty dimension");

    ck_assert_ptr_null(tg_max_pool2d(tg_zeros(TG_U8, TG_SHAPE(1, 1, 4, 4)), NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_max_pool2d: input must be f32 or f64, got u8");
    ck_assert_ptr_null(tg_avg_pool2d(tg_zeros(TG_I32, TG_SHAPE(1, 1, 4, 4)), NULL));
    TG_ASSERT_ERROR_HAS("tg_avg_pool2d: input must be f32 or f64, got i32");

    ck_assert_ptr_null(tg_dense(tg_zeros(TG_I32, TG_SHAPE(2, 3)), rnd(TG_F32, TG_SHAPE(4, 3), 7),
                                NULL));
    TG_ASSERT_ERROR_HAS("tg_dense: input must be f32 or f64, got i32");
    ck_assert_ptr_null(tg_dense(rnd(TG_F32, TG_SHAPE(2, 3), 8), rnd(TG_F64, TG_SHAPE(4, 3), 9),
                                NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_dense: dtypes f32 and f64 differ");
    ck_assert_ptr_null(tg_dense(rnd(TG_F32, TG_SHAPE(2, 0), 10), tg_zeros(TG_F32, TG_SHAPE(4, 0)),
                                NULL));
    TG_ASSERT_ERROR_HAS("tg_dense: weight [4, 0] is empty");

    ck_assert_ptr_null(tg_dropout(tg_zeros(TG_I64, TG_SHAPE(3)), 0.5, true, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_dropout: x must be f32 or f64, got i64");
    ck_assert_ptr_null(tg_dropout(tg_zeros(TG_U8, TG_SHAPE(3)), 0.5, false, NULL));
    TG_ASSERT_ERROR_HAS("tg_dropout");
    tg_scope_pop(s);
}
END_TEST

/* Options at the limits of int: computed, or refused with a message naming the
 * op, the shapes and the reason (oneDNN 2.6 refuses a pooling stride of
 * INT_MAX that the reference kernels handle). Huge outputs fail to allocate,
 * cleanly. */
START_TEST(extreme_options)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 2, 6, 6), 1);
    tg_pool2d_opts po = {{2, 2}, {INT_MAX, INT_MAX}, {1, 1, 1, 1}, false, false};
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *want = tg_max_pool2d(x, &po);
    tg_set_backend(prev);
    TG_CHECK(want != NULL);
    ck_assert_int_eq(tg_tensor_numel(want), 2 * 2);
    tg_tensor *got = tg_max_pool2d(x, &po);
    if (got) {
        TG_ASSERT_TENSOR_CLOSE(got, want, EXACT_ATOL, 0.0);
    } else {
        ck_assert_int_eq(tg_last_status(), TG_ERR_BACKEND);
        TG_ASSERT_ERROR_HAS("tg_max_pool2d: oneDNN cannot run this pooling");
        TG_ASSERT_ERROR_HAS("input [2, 2, 6, 6], kernel 2x2, stride 2147483647x2147483647");
    }

    tg_tensor *w = rnd(TG_F32, TG_SHAPE(3, 2, 3, 3), 2);
    tg_conv2d_opts o = {{INT_MAX, INT_MAX}, {0, 0, 0, 0}, {1, 1}, false, 1};
    tg_tensor *y = tg_conv2d(x, w, NULL, &o);
    TG_CHECK(y != NULL);
    ck_assert_int_eq(tg_tensor_dim(y, 2), 1);
    o = (tg_conv2d_opts){{1, 1}, {0, 0, 0, 0}, {INT_MAX, 1}, false, 1};
    ck_assert_ptr_null(tg_conv2d(x, w, NULL, &o));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("dilation 2147483647x1, extent 4294967295x3");
    o = (tg_conv2d_opts){{1, 1}, {INT_MAX, INT_MAX, INT_MAX, INT_MAX}, {1, 1}, false, 1};
    ck_assert_ptr_null(tg_conv2d(x, w, NULL, &o)); /* about 2^66 outputs */
    TG_ASSERT_ERROR_HAS("tg_conv2d");
    tg_pool2d_opts pk = {{INT_MAX, 2}, {0, 0}, {0, 0, 0, 0}, false, false};
    ck_assert_ptr_null(tg_max_pool2d(x, &pk));
    TG_ASSERT_ERROR_HAS("tg_max_pool2d: kernel 2147483647x2 is larger than the padded input");
    tg_scope_pop(s);
}
END_TEST

/* The scratchpad is user-managed: every primitive descriptor the glue creates
 * says so, and the one buffer they share is kept between steps. */
START_TEST(scratchpad_user_managed)
{
    dnnl_memory_desc_t md;
    tg_dnnl_md_plain(&md, 1, (const int64_t[]){64});
    dnnl_eltwise_desc_t d;
    ck_assert_int_eq(dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training,
                                                    dnnl_eltwise_relu, &md, 0.0f, 0.0f),
                     dnnl_success);
    dnnl_primitive_desc_t pd = tg_dnnl_pd_create(&d, NULL);
    TG_CHECK(pd != NULL);
    const_dnnl_primitive_attr_t attr = NULL;
    ck_assert_int_eq(dnnl_primitive_desc_get_attr(pd, &attr), dnnl_success);
    dnnl_scratchpad_mode_t mode = dnnl_scratchpad_mode_library;
    ck_assert_int_eq(dnnl_primitive_attr_get_scratchpad_mode(attr, &mode), dnnl_success);
    ck_assert_int_eq(mode, dnnl_scratchpad_mode_user);
    dnnl_primitive_desc_destroy(pd);

    tg_scope *s = tg_scope_push();
    tiny_net m = {
        rnd(TG_F32, TG_SHAPE(5, 16, 9, 9), 1),
        tg_from_data(TG_I64, TG_SHAPE(5), (const int64_t[]){0, 3, 9, 2, 2}),
        rnd(TG_F32, TG_SHAPE(32, 16, 3, 3), 2),
        rnd(TG_F32, TG_SHAPE(32), 3),
        rnd(TG_F32, TG_SHAPE(10, 32 * 3 * 3), 4),
        rnd(TG_F32, TG_SHAPE(10), 5),
    };
    tg_tensor *params[] = {m.cw, m.cb, m.dw, m.db};
    for (int i = 0; i < 4; i++)
        TG_OK_(tg_set_requires_grad(params[i], true));
    tiny_step(&m);
    size_t cap1 = tg_dnnl_scratchpad_capacity();
    tiny_step(&m);
    size_t cap2 = tg_dnnl_scratchpad_capacity();
    ck_assert_msg(cap2 == cap1, "the scratchpad grew from %zu to %zu bytes on a repeated step",
                  cap1, cap2);
    if (cap1 == 0)
        printf("note: no primitive of this step asked for a scratchpad on this CPU\n");
    tg_scope_pop(s);
}
END_TEST

/* Blocked weights are reordered once per weight version: the same weights again
 * cost nothing, an in-place update (version bump) one reorder, plain weights
 * none. */
START_TEST(weight_reorders_per_version)
{
    bool prev = tg_dnnl_set_blocked_layouts(true);
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 16, 7, 7), 1);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 16, 3, 3), 2);
    tg_backend_stats s0, s1, s2, s3, s4;
    tg_backend_stats_get(&s0);
    TG_CHECK(tg_conv2d(x, w, NULL, NULL) != NULL);
    tg_backend_stats_get(&s1);
    TG_CHECK(tg_conv2d(x, w, NULL, NULL) != NULL);
    tg_backend_stats_get(&s2);
    tg_tensor_bump_version(w);
    TG_CHECK(tg_conv2d(x, w, NULL, NULL) != NULL);
    tg_backend_stats_get(&s3);
    if (s1.weight_reorders == s0.weight_reorders) {
        printf("note: oneDNN chose plain OIHW weights for a 16 -> 32 conv on this CPU\n");
    } else {
        ck_assert_int_eq(s1.weight_reorders - s0.weight_reorders, 1);
        ck_assert_int_eq(s2.weight_reorders, s1.weight_reorders);
        ck_assert_int_eq(s3.weight_reorders - s2.weight_reorders, 1);
    }
    tg_dnnl_set_blocked_layouts(false);
    tg_tensor_bump_version(w);
    TG_CHECK(tg_conv2d(x, w, NULL, NULL) != NULL);
    tg_backend_stats_get(&s4);
    ck_assert_int_eq(s4.weight_reorders, s3.weight_reorders);
    tg_scope_pop(s);
    tg_dnnl_set_blocked_layouts(prev);
}
END_TEST

/* ---------------------------------------------------------------- failed settles */

/* A tensor whose data a backend holds in its own layout and fails to convert
 * back (the test hook tg_layout_fail_next_settles, or a fake layout below):
 * every plain reader reports the error, none reads stale data, and the layout
 * stays pending, so a later settle that works gives the right values. */

/* relu(conv(x, w)) on oneDNN with 32 channels: left in a blocked layout. */
static tg_tensor *pending_activation(tg_tensor **want)
{
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 1, 9, 9), 31);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 1, 3, 3), 32);
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    *want = tg_relu(tg_conv2d(x, w, NULL, NULL));
    tg_set_backend(prev);
    tg_tensor *y = tg_relu(tg_conv2d(x, w, NULL, NULL));
    TG_CHECK(y != NULL);
    ck_assert_msg(tg_dnnl_alt_md(y) != NULL, "the activation is not in a pending layout");
    return y;
}

static void assert_settle_failed(const char *what)
{
    ck_assert_msg(tg_last_status() == TG_ERR_BACKEND, "%s: status %d (%s)", what,
                  (int)tg_last_status(), tg_last_error());
    ck_assert_msg(strstr(tg_last_error(), "backend layout") != NULL, "%s: error '%s'", what,
                  tg_last_error());
    tg_clear_error();
}

START_TEST(failed_settle_reaches_caller)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *want;
    tg_tensor *y = pending_activation(&want);
    int64_t idx[4] = {1, 7, 3, 2};

    tg_layout_fail_next_settles(1);
    ck_assert_ptr_null(tg_tensor_data(y));
    assert_settle_failed("tg_tensor_data");
    ck_assert_ptr_nonnull(tg_dnnl_alt_md(y)); /* still pending: nothing lost */

    tg_layout_fail_next_settles(1);
    ck_assert(isnan(tg_get(y, idx)));
    assert_settle_failed("tg_get");
    tg_layout_fail_next_settles(1);
    ck_assert_int_eq(tg_set(y, idx, 5.0), TG_ERR_BACKEND);
    assert_settle_failed("tg_set");

    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(devnull);
    tg_layout_fail_next_settles(1);
    ck_assert_int_ne(tg_tensor_print(y, devnull), TG_OK);
    assert_settle_failed("tg_tensor_print");
    fclose(devnull);

    tg_layout_fail_next_settles(1);
    ck_assert_ptr_null(tg_tensor_copy(y));
    assert_settle_failed("tg_tensor_copy");
    tg_tensor *dst = tg_zeros(TG_F32, 4, tg_tensor_shape(y));
    tg_layout_fail_next_settles(1);
    ck_assert_int_ne(tg_tensor_copy_into(dst, y), TG_OK);
    assert_settle_failed("tg_tensor_copy_into");

    /* ops: plain kernels (sum, softmax), oneDNN plain inputs (dense) */
    tg_layout_fail_next_settles(1);
    ck_assert_ptr_null(tg_sum(y, NULL, 0, false));
    assert_settle_failed("tg_sum");
    tg_layout_fail_next_settles(1);
    ck_assert_ptr_null(tg_softmax(tg_reshape(y, 2, (int64_t[]){2, -1}), 1));
    assert_settle_failed("tg_softmax");
    tg_tensor *w2 = rnd(TG_F32, TG_SHAPE(3, 32 * 7 * 7), 33);
    tg_layout_fail_next_settles(1);
    ck_assert_ptr_null(tg_dense(tg_reshape(y, 2, (int64_t[]){2, -1}), w2, NULL));
    assert_settle_failed("tg_dense");

    /* a checkpoint save fails before creating anything */
    char path[256];
    snprintf(path, sizeof path, "settle-%ld.h5", (long)getpid());
    tg_state_dict *sd = tg_state_dict_new();
    ck_assert_ptr_nonnull(sd);
    TG_OK_(tg_state_dict_set(sd, "act", y));
    tg_layout_fail_next_settles(1);
    ck_assert_int_ne(tg_checkpoint_save(path, sd), TG_OK);
    ck_assert_msg(strstr(tg_last_error(), "'act'") != NULL, "error '%s'", tg_last_error());
    assert_settle_failed("tg_checkpoint_save");
    ck_assert_int_ne(access(path, F_OK), 0);

    /* nothing was lost: the next settle gives the reference values, once */
    ck_assert_ptr_nonnull(tg_dnnl_alt_md(y));
    tg_backend_stats a, b;
    tg_backend_stats_get(&a);
    TG_OK_(tg_checkpoint_save(path, sd));
    tg_backend_stats_get(&b);
    ck_assert_int_eq(b.layout_settles, a.layout_settles + 1);
    ck_assert_ptr_null(tg_dnnl_alt_md(y));
    TG_ASSERT_TENSOR_CLOSE(y, want, F32_ATOL, F32_RTOL);
    tg_state_dict *back = NULL;
    TG_OK_(tg_checkpoint_load(&back, path));
    TG_ASSERT_TENSOR_CLOSE(tg_state_dict_get(back, "act"), want, F32_ATOL, F32_RTOL);
    tg_state_dict_free(back);
    tg_state_dict_free(sd);
    ck_assert_int_eq(unlink(path), 0);
    tg_scope_pop(s);
}
END_TEST

/* The same through backward: relu(c) keeps c's layout and saves c; the sum's
 * backward hands ReLU a plain gradient, so ReLU's backward reads c plain. The
 * failed settle reaches tg_backward, and c still holds the conv's values. */
START_TEST(failed_settle_in_backward)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = rnd(TG_F32, TG_SHAPE(2, 1, 9, 9), 35);
    tg_tensor *w = rnd(TG_F32, TG_SHAPE(32, 1, 3, 3), 36);
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *want = tg_conv2d(x, w, NULL, NULL);
    tg_set_backend(prev);
    TG_OK_(tg_set_requires_grad(w, true));
    tg_tensor *c = tg_conv2d(x, w, NULL, NULL);
    tg_tensor *loss = tg_sum(tg_relu(c), NULL, 0, false);
    TG_CHECK(loss != NULL);
    ck_assert_ptr_nonnull(tg_dnnl_alt_md(c));
    tg_layout_fail_next_settles(1);
    tg_backward_opts o = {.retain_graph = true};
    ck_assert_int_eq(tg_backward_ex(loss, &o), TG_ERR_BACKEND);
    assert_settle_failed("tg_backward");
    ck_assert_ptr_nonnull(tg_dnnl_alt_md(c)); /* still pending */
    TG_ASSERT_TENSOR_CLOSE(c, want, F32_ATOL, F32_RTOL);
    tg_scope_pop(s);
}
END_TEST

/* A stand-in backend: its layout is the plain one, its settle fails while
 * fails > 0. Attached to f64 tensors it reaches the reference kernels, which
 * read storages with their own strides. */
typedef struct fake_layout {
    tg_layout base;
    int fails;
} fake_layout;

static tg_status fake_settle(const tg_layout *l, void *plain, size_t nbytes)
{
    fake_layout *f = (fake_layout *)(uintptr_t)l;
    if (f->fails > 0) {
        f->fails--;
        return tg_error(TG_ERR_BACKEND, "fake backend layout: cannot settle");
    }
    memcpy(plain, l->buf, nbytes);
    return TG_OK;
}

static void fake_free(tg_layout *l)
{
    free(l->buf);
    free(l);
}

/* t's values move into a fake layout; its plain buffer is overwritten with
 * -1000 (what a stale read would see). */
static fake_layout *fake_attach(tg_tensor *t, int fails)
{
    tg_storage *st = t->storage;
    fake_layout *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->base.buf = malloc(st->nbytes);
    ck_assert_ptr_nonnull(f->base.buf);
    memcpy(f->base.buf, st->data, st->nbytes);
    f->base.settle = fake_settle;
    f->base.free = fake_free;
    f->fails = fails;
    for (int64_t i = 0; i < tg_tensor_numel(t); i++)
        ((double *)st->data)[i] = -1000.0;
    TG_OK_(tg_layout_attach(st, &f->base));
    ck_assert_int_eq(tg_layout_attach(st, &f->base), TG_ERR_STATE); /* one at a time */
    return f;
}

START_TEST(failed_settle_reference_kernels)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = rnd(TG_F64, TG_SHAPE(3, 4), 41), *b = rnd(TG_F64, TG_SHAPE(4), 42);
    tg_tensor *m = rnd(TG_F64, TG_SHAPE(4, 2), 43);
    tg_tensor *want_add = tg_add(a, b), *want_mm = tg_matmul(a, m);
    tg_tensor *want_sum = tg_sum(a, (int[]){1}, 1, false);
    tg_tensor *want_sc = tg_mul_scalar(a, 3.0);
    tg_tensor *want_sm = tg_softmax(a, 1);
    fake_layout *f = fake_attach(a, 1000);

    ck_assert_ptr_null(tg_add(a, b));
    assert_settle_failed("tg_add");
    ck_assert_ptr_null(tg_add(b, a)); /* broadcast the other way */
    assert_settle_failed("tg_add (b, a)");
    ck_assert_ptr_null(tg_matmul(a, m));
    assert_settle_failed("tg_matmul");
    ck_assert_ptr_null(tg_sum(a, (int[]){1}, 1, false));
    assert_settle_failed("tg_sum");
    ck_assert_ptr_null(tg_mul_scalar(a, 3.0));
    assert_settle_failed("tg_mul_scalar");
    ck_assert_ptr_null(tg_softmax(a, 1));
    assert_settle_failed("tg_softmax");
    ck_assert_ptr_null(tg_tensor_to_dtype(a, TG_F32));
    assert_settle_failed("tg_tensor_to_dtype");
    ck_assert_int_ne(tg_tensor_fill(a, 2.0), TG_OK); /* a partial write would need it */
    assert_settle_failed("tg_tensor_fill");
    ck_assert_ptr_nonnull(tg_layout_pending(a->storage));

    /* once the backend recovers, every op sees the real values, never -1000 */
    f->fails = 0;
    TG_ASSERT_TENSOR_CLOSE(tg_add(a, b), want_add, 1e-12, 1e-12);
    ck_assert_ptr_null(tg_layout_pending(a->storage));
    TG_ASSERT_TENSOR_CLOSE(tg_matmul(a, m), want_mm, 1e-12, 1e-12);
    TG_ASSERT_TENSOR_CLOSE(tg_sum(a, (int[]){1}, 1, false), want_sum, 1e-12, 1e-12);
    TG_ASSERT_TENSOR_CLOSE(tg_mul_scalar(a, 3.0), want_sc, 1e-12, 1e-12);
    TG_ASSERT_TENSOR_CLOSE(tg_softmax(a, 1), want_sm, 1e-12, 1e-12);

    /* a discarded layout is freed unread; a dying storage frees its layout */
    fake_attach(b, 1000);
    tg_layout_discard(b->storage);
    ck_assert_ptr_null(tg_layout_pending(b->storage));
    ck_assert(tg_get(b, (int64_t[]){0}) == -1000.0);
    fake_attach(m, 1000);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- the suite */

Suite *tg_suite(void)
{
    Suite *s = suite_create("cnn");
    TCase *tc = tg_tcase("conv2d");
    tcase_add_loop_test(tc, conv_table_blocked, 0, N_CONV);
    tcase_add_loop_test(tc, conv_table_plain, 0, N_CONV);
    tcase_add_loop_test(tc, conv_groups_equal_split_convs, 0, 2);
    tcase_add_test(tc, conv_strided_input);
    tcase_add_test(tc, conv_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("pooling");
    tcase_add_loop_test(tc, max_pool_table, 0, N_POOL);
    tcase_add_loop_test(tc, avg_pool_table, 0, N_POOL);
    tcase_add_test(tc, avg_pool_excludes_padding);
    tcase_add_test(tc, pool_ceil_and_include_values);
    tcase_add_loop_test(tc, global_pool_backends, 0, 8);
    tcase_add_test(tc, global_pool_values);
    tcase_add_test(tc, pad2d_values);
    tcase_add_test(tc, pool_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("dense");
    tcase_add_loop_test(tc, dense_table, 0, N_DENSE);
    tcase_add_test(tc, dense_grad_shape);
    tcase_add_test(tc, dense_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("dropout");
    tcase_add_loop_test(tc, dropout_statistics, 0, 2);
    tcase_add_test(tc, dropout_identity_and_extremes);
    tcase_add_test(tc, dropout_reproducible);
    suite_add_tcase(s, tc);

    tc = tg_tcase("gradcheck");
    tcase_add_loop_test(tc, gradcheck_f64, 0, N_GC);
    tcase_add_loop_test(tc, gradcheck_f32, 0, N_GC);
    suite_add_tcase(s, tc);

    tc = tg_tcase("glue");
    tcase_add_test(tc, describe_labels);
    tcase_add_test(tc, cache_second_step_creates_nothing);
    tcase_add_test(tc, cache_follows_weight_updates);
    tcase_add_test(tc, cache_follows_accessor_writes);
    tcase_add_test(tc, cache_clear);
    tcase_add_test(tc, glue_two_threads);
    tcase_add_test(tc, scratchpad_user_managed);
    tcase_add_test(tc, weight_reorders_per_version);
    tcase_add_test(tc, kept_layout_chain_matches_reference);
    tcase_add_test(tc, kept_layout_plain_access);
    tcase_add_test(tc, conv_fused_relu_equals_composition);
    tcase_add_test(tc, weight_grads_written_in_place);
    suite_add_tcase(s, tc);

    tc = tg_tcase("hostile inputs");
    tcase_add_loop_test(tc, empty_batch, 0, 4);
    tcase_add_test(tc, empty_rows_or_columns);
    tcase_add_loop_test(tc, views_match_copies, 0, 2);
    tcase_add_test(tc, dtype_and_rank_errors);
    tcase_add_test(tc, extreme_options);
    suite_add_tcase(s, tc);

    tc = tg_tcase("failed settles");
    tcase_add_test(tc, failed_settle_reaches_caller);
    tcase_add_test(tc, failed_settle_in_backward);
    tcase_add_test(tc, failed_settle_reference_kernels);
    suite_add_tcase(s, tc);
    return s;
}
