/* ops/unary.c -- elementwise unary ops and the activations.
 *
 *   neg:     y = -x                 dx = -g
 *   exp:     y = e^x                dx = g * y
 *   log:     y = ln x               dx = g / x
 *   sqrt:    y = sqrt(x)            dx = g / (2 y)
 *   abs:     y = |x|                dx = g * sign(x)       (0 at x = 0)
 *   tanh:    y = tanh x             dx = g * (1 - y^2)
 *   sigmoid: y = 1 / (1 + e^-x)     dx = g * s (1 - s)
 *   relu:    y = max(x, 0)          dx = g * [x > 0]       (0 at x = 0)
 *   leaky_relu(a): y = x > 0 ? x : a x            dx = g * (x > 0 ? 1 : a)
 *   elu(a):  y = x > 0 ? x : a (e^x - 1)          dx = g * (x > 0 ? 1 : a e^x)
 *   gelu:    y = x Phi(x)                         dx = g * (Phi(x) + x phi(x))
 *   gelu tanh: y = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
 *                                                 dx = g * (s + 2 x s (1 - s) u')
 *   silu:    y = x s, s = sigmoid(x)              dx = g * (s + x s (1 - s))
 *   softplus: y = max(x, 0) + log1p(e^-|x|)       dx = g * sigmoid(x)
 *   hard_sigmoid(a, b): y = clip(a x + b, 0, 1)   dx = g * a [0 < a x + b < 1]
 *   clip(lo, hi): y = min(max(x, lo), hi)         dx = g * [lo < x < hi]
 *
 * f32 on the AUTO backend runs oneDNN's eltwise forward and backward (given x),
 * except where oneDNN misses the accuracy bound of tests/test_accuracy.c: there an
 * accurate f32 loop over libm runs (the table's acc_fwd/acc_bwd), for the whole
 * tensor or, for elu, silu and softplus, after oneDNN on the elements of the range
 * where oneDNN fails. f64 and the reference backend use the double loops below,
 * which read y where the derivative is cheaper from it (a view of the output: no
 * copy, and no cycle since the view has no grad_fn). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/dnnl_impl.h"

/* Accurate f32 kernels for the AUTO backend, where oneDNN's eltwise misses the
 * accuracy bound of tests/test_accuracy.c (docs/tensor-api.md, "Accuracy"): loops
 * over libm's float functions. fwd: y = f(x); bwd: gx = f'(x) g (gx may be g). p
 * holds the op's parameters. */
typedef void (*f32_fwd_fn)(const float *x, float *y, int64_t n, const double *p, bool all,
                           float lo, float hi);
typedef void (*f32_bwd_fn)(const float *x, const float *g, float *gx, int64_t n,
                           const double *p);

typedef struct unary_def {
    const char *who;
    tg_eltwise_alg alg; /* oneDNN algorithm (TG_ELT_NONE: none) with its alpha, beta */
    float alpha, beta;
    bool alpha_beta_params; /* oneDNN's alpha, beta are the op's parameters p[0], p[1] */
    double (*f)(double x, const double *p);
    double (*df)(double x, double y, const double *p); /* dy/dx from x and y = f(x) */
    bool save_y;                                       /* df reads y */
    f32_fwd_fn acc_fwd; /* f32 forward on AUTO instead of oneDNN, or NULL */
    f32_bwd_fn acc_bwd; /* f32 backward on AUTO instead of oneDNN, or NULL */
    const char *param_names[2]; /* the DOT label's "alpha=0.3"; NULL: no parameter */
    const tg_op_vtable *vt;
    /* fix_lo < fix_hi: the forward runs oneDNN, then acc_fwd only where
     * fix_lo < x < fix_hi, the range where oneDNN misses the bound (its tails) */
    float fix_lo, fix_hi;
} unary_def;

typedef struct unary_saved {
    const unary_def *def;
    double p[2];  /* the op's parameters (leaky_relu's alpha, clip's lo and hi) */
    tg_tensor *y; /* view of the output, or NULL */
} unary_saved;

#define UNUSED_P (void)p
static double f_neg(double x, const double *p) { UNUSED_P; return -x; }
static double d_neg(double x, double y, const double *p) { UNUSED_P; return -1.0; }
static double f_exp(double x, const double *p) { UNUSED_P; return exp(x); }
static double d_exp(double x, double y, const double *p) { UNUSED_P; return y; }
static double f_log(double x, const double *p) { UNUSED_P; return log(x); }
static double d_log(double x, double y, const double *p) { UNUSED_P; return 1.0 / x; }
static double f_sqrt(double x, const double *p) { UNUSED_P; return sqrt(x); }
static double d_sqrt(double x, double y, const double *p) { UNUSED_P; return 0.5 / y; }
static double f_abs(double x, const double *p) { UNUSED_P; return fabs(x); }
static double d_abs(double x, double y, const double *p)
{
    UNUSED_P;
    return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
}
static double f_tanh(double x, const double *p) { UNUSED_P; return tanh(x); }
static double d_tanh(double x, double y, const double *p) { UNUSED_P; return 1.0 - y * y; }
static double d_relu(double x, double y, const double *p) { UNUSED_P; return x > 0 ? 1.0 : 0.0; }
static double f_relu(double x, const double *p) { UNUSED_P; return x > 0 ? x : 0.0; }

static double sigmoid_d(double x)
{
    /* never exponentiate a large positive number */
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
static double f_sigmoid(double x, const double *p) { UNUSED_P; return sigmoid_d(x); }
static double d_sigmoid(double x, double y, const double *p)
{
    UNUSED_P;
    /* s (1 - s) = e / (1 + e)^2 with e = e^-|x|: no cancellation in 1 - s */
    double e = exp(-fabs(x));
    return e / ((1.0 + e) * (1.0 + e));
}

static double f_leaky_relu(double x, const double *p) { return x > 0 ? x : p[0] * x; }
static double d_leaky_relu(double x, double y, const double *p) { return x > 0 ? 1.0 : p[0]; }
static double f_elu(double x, const double *p) { return x > 0 ? x : p[0] * expm1(x); }
static double d_elu(double x, double y, const double *p) { return x > 0 ? 1.0 : p[0] * exp(x); }

#define SQRT1_2 0.70710678118654752440
#define SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define GELU_C 0.044715
/* Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation for x << 0, unlike 1 + erf */
static double f_gelu_erf(double x, const double *p) { UNUSED_P; return 0.5 * x * erfc(-x * SQRT1_2); }
static double d_gelu_erf(double x, double y, const double *p)
{
    UNUSED_P;
    return 0.5 * erfc(-x * SQRT1_2) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}
/* (1 + tanh u) / 2 = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) */
static double f_gelu_tanh(double x, const double *p)
{
    UNUSED_P;
    return x * sigmoid_d(2.0 * SQRT_2_PI * (x + GELU_C * x * x * x));
}
static double d_gelu_tanh(double x, double y, const double *p)
{
    UNUSED_P;
    double u2 = 2.0 * SQRT_2_PI * (x + GELU_C * x * x * x);
    double s = sigmoid_d(u2), e = exp(-fabs(u2));
    double ds = e / ((1.0 + e) * (1.0 + e)); /* s (1 - s) */
    return s + x * ds * 2.0 * SQRT_2_PI * (1.0 + 3.0 * GELU_C * x * x);
}
static double f_silu(double x, const double *p) { UNUSED_P; return x * sigmoid_d(x); }
static double d_silu(double x, double y, const double *p)
{
    UNUSED_P;
    double e = exp(-fabs(x));
    return sigmoid_d(x) + x * e / ((1.0 + e) * (1.0 + e));
}
/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows, exact for x << 0 */
static double f_softplus(double x, const double *p)
{
    UNUSED_P;
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}
static double d_softplus(double x, double y, const double *p) { UNUSED_P; return sigmoid_d(x); }
static double f_hard_sigmoid(double x, const double *p)
{
    double t = p[0] * x + p[1];
    return t <= 0 ? 0.0 : t >= 1 ? 1.0 : t;
}
static double d_hard_sigmoid(double x, double y, const double *p)
{
    double t = p[0] * x + p[1];
    return t > 0 && t < 1 ? p[0] : 0.0;
}
static double f_clip(double x, const double *p) { return x < p[0] ? p[0] : x > p[1] ? p[1] : x; }
static double d_clip(double x, double y, const double *p)
{
    return x > p[0] && x < p[1] ? 1.0 : 0.0;
}

/* ---------------------------------------------------------------- accurate f32 */

/* One pass, OpenMP-parallel above PARALLEL_MIN elements (a thread team costs more
 * than a short loop), and simd so that the arithmetic around the libm calls is
 * vectorised. Parameters and the steps whose rounding the result is sensitive to
 * (gelu's argument, hard_sigmoid's alpha x + beta) are in double: an f32 alpha of
 * 0.2 alone would cost tens of ulps near the kinks. */
#define PARALLEL_MIN 32768
#define ACC_LOOP _Pragma("omp parallel for simd schedule(static) if (parallel: n >= PARALLEL_MIN)")

/* all: every element; else only those in (lo, hi) (the others hold oneDNN's) */
#define ACC_FWD(name, expr)                                                          \
    static void name(const float *x, float *y, int64_t n, const double *p, bool all, \
                     float lo, float hi)                                             \
    {                                                                                \
        (void)p;                                                                     \
        ACC_LOOP                                                                     \
        for (int64_t i = 0; i < n; i++) {                                            \
            float v = x[i];                                                          \
            if (all || (v > lo && v < hi))                                           \
                y[i] = (float)(expr);                                                \
        }                                                                            \
    }
#define ACC_BWD(name, expr)                                                          \
    static void name(const float *x, const float *g, float *gx, int64_t n,          \
                     const double *p)                                                \
    {                                                                                \
        (void)p;                                                                     \
        ACC_LOOP                                                                     \
        for (int64_t i = 0; i < n; i++) {                                            \
            float v = x[i];                                                          \
            gx[i] = g[i] * (float)(expr);                                            \
        }                                                                            \
    }

static inline float sigmoidf_acc(float v)
{
    float e = expf(-fabsf(v));
    return v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
static inline double sigmoid_of_exp(double u)
{
    double e = exp(-fabs(u));
    return u >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
static inline double hard_sigmoid_arg(float v, const double *p) { return p[0] * (double)v + p[1]; }

ACC_FWD(acc_log_fwd, logf(v))
ACC_FWD(acc_elu_fwd, v > 0 ? (double)v : p[0] * (double)expm1f(v))
ACC_FWD(acc_gelu_erf_fwd, 0.5 * (double)v * erfc(-(double)v * SQRT1_2))
ACC_FWD(acc_gelu_tanh_fwd,
        (double)v * sigmoid_of_exp(2.0 * SQRT_2_PI * ((double)v + GELU_C * (double)v * v * v)))
/* in double: x e^x for x < -87 is a normal float, e^x is not (it would flush) */
ACC_FWD(acc_silu_fwd, (double)v * sigmoid_of_exp(v))
/* two selects of the maxsd/minsd form, not fmax/fmin (library calls without
 * -ffinite-math-only) nor branches (mispredicted on mixed signs) */
static inline double clamp01(double t)
{
    double a = t > 0.0 ? t : 0.0;
    return a < 1.0 ? a : 1.0;
}
ACC_FWD(acc_softplus_fwd, (v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v))))
ACC_FWD(acc_hard_sigmoid_fwd, clamp01(hard_sigmoid_arg(v, p)))
static inline double hard_sigmoid_grad(float v, const double *p)
{
    double t = hard_sigmoid_arg(v, p);
    return ((t > 0.0) & (t < 1.0)) ? p[0] : 0.0;
}
ACC_BWD(acc_hard_sigmoid_bwd, hard_sigmoid_grad(v, p))
/* 1 - tanh^2 = 4 e / (1 + e)^2 with e = e^-2|x|: oneDNN's 1 - y^2 cancels */
static inline double tanh_grad(float v)
{
    double e = expf(-2.0f * fabsf(v));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}
ACC_BWD(acc_tanh_bwd, tanh_grad(v))
/* oneDNN's elu backward takes the x <= 0 branch for the smallest positive x */
ACC_BWD(acc_elu_bwd, v > 0 ? 1.0 : p[0] * (double)expf(v))
/* oneDNN's: about 140 ulps near the derivative's zero (x = -0.75) and NaN for
 * |x| > 1e13 (the tanh form's x^3); these are the reference formulas in double */
ACC_BWD(acc_gelu_erf_bwd, d_gelu_erf(v, 0.0, p))
ACC_BWD(acc_gelu_tanh_bwd, d_gelu_tanh(v, 0.0, p))

static void unary_free(void *p)
{
    unary_saved *sv = p;
    if (sv)
        tg_release(sv->y);
    free(sv);
}

static tg_status unary_backward(tg_node *node, tg_tensor *g, tg_tensor **gin);

/* DOT detail: the parameters, "alpha=0.3", and gelu's approximation */
static void unary_describe(const tg_node *node, char *buf, size_t n)
{
    const unary_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (!sv || node->released) /* freed by a backward without retain_graph */
        return;
    size_t len = 0;
    for (int i = 0; i < 2 && sv->def->param_names[i] && len < n; i++) {
        int w = snprintf(buf + len, n - len, "%s%s=%g", i ? " " : "", sv->def->param_names[i],
                         sv->p[i]);
        if (w < 0)
            return;
        len += (size_t)w;
    }
    if (sv->def->f == f_gelu_tanh)
        snprintf(buf, n, "tanh");
}

/* shape_only: backward reads no value of x (the derivative is a constant) */
#define UNARY_VTABLE(n, hints, shape_only) \
    const tg_op_vtable tg_op_##n##_vtable = {#n, unary_backward, unary_free, NULL, hints, \
                                             shape_only};
/* the same for the ops with parameters or variants, which the DOT label shows */
#define UNARY_VTABLE_P(n, hints) \
    const tg_op_vtable tg_op_##n##_vtable = {#n, unary_backward, unary_free, unary_describe, \
                                             hints, 0};

UNARY_VTABLE(neg, 0, TG_OP_ALL_INPUTS)
UNARY_VTABLE(exp, 0, 0)
UNARY_VTABLE(log, TG_GC_POSITIVE, 0)
UNARY_VTABLE(sqrt, TG_GC_POSITIVE, 0)
UNARY_VTABLE(abs, TG_GC_AWAY_FROM_KINK, 0)
UNARY_VTABLE(tanh, 0, 0)
UNARY_VTABLE(sigmoid, 0, 0)
UNARY_VTABLE(relu, TG_GC_AWAY_FROM_KINK, 0)
UNARY_VTABLE_P(leaky_relu, TG_GC_AWAY_FROM_KINK)
UNARY_VTABLE_P(elu, TG_GC_AWAY_FROM_KINK)
UNARY_VTABLE_P(gelu, 0)
UNARY_VTABLE(silu, 0, 0)
UNARY_VTABLE(softplus, 0, 0)
UNARY_VTABLE_P(hard_sigmoid, 0)
UNARY_VTABLE_P(clip, 0)

/* who, oneDNN alg alpha beta params, f df save_y, accurate f32 fwd bwd, parameters */
#define DEF(n, who, alg, a, b, ab, f, df, save_y, af, ab_, p0, p1) \
    static const unary_def def_##n = {who, alg, a, b, ab, f, df, save_y, af, ab_, {p0, p1}, \
                                      &tg_op_##n##_vtable, 0.0f, 0.0f}
DEF(neg, "tg_neg", TG_ELT_LINEAR, -1.0f, 0.0f, false, f_neg, d_neg, false, NULL, NULL, NULL, NULL);
DEF(exp, "tg_exp", TG_ELT_EXP, 0.0f, 0.0f, false, f_exp, d_exp, true, NULL, NULL, NULL, NULL);
DEF(log, "tg_log", TG_ELT_LOG, 0.0f, 0.0f, false, f_log, d_log, false, acc_log_fwd, NULL, NULL,
    NULL);
DEF(sqrt, "tg_sqrt", TG_ELT_SQRT, 0.0f, 0.0f, false, f_sqrt, d_sqrt, true, NULL, NULL, NULL,
    NULL);
DEF(abs, "tg_abs", TG_ELT_ABS, 0.0f, 0.0f, false, f_abs, d_abs, false, NULL, NULL, NULL, NULL);
DEF(tanh, "tg_tanh", TG_ELT_TANH, 0.0f, 0.0f, false, f_tanh, d_tanh, true, NULL, acc_tanh_bwd,
    NULL, NULL);
DEF(sigmoid, "tg_sigmoid", TG_ELT_SIGMOID, 0.0f, 0.0f, false, f_sigmoid, d_sigmoid, false, NULL,
    NULL, NULL, NULL);
DEF(relu, "tg_relu", TG_ELT_RELU, 0.0f, 0.0f, false, f_relu, d_relu, false, NULL, NULL, NULL,
    NULL);
DEF(leaky_relu, "tg_leaky_relu", TG_ELT_RELU, 0.0f, 0.0f, true, f_leaky_relu, d_leaky_relu,
    false, NULL, NULL, "alpha", NULL);
#define DEF_FIX(n, who, alg, a, b, ab, f, df, save_y, af, ab_, p0, p1, lo, hi) \
    static const unary_def def_##n = {who, alg, a, b, ab, f, df, save_y, af, ab_, {p0, p1}, \
                                      &tg_op_##n##_vtable, lo, hi}
/* oneDNN's e^x - 1 loses the digits of small negative x */
DEF_FIX(elu, "tg_elu", TG_ELT_ELU, 0.0f, 0.0f, true, f_elu, d_elu, false, acc_elu_fwd,
        acc_elu_bwd, "alpha", NULL, -1.0f, 0.0f);
static const unary_def def_gelu_erf = {"tg_gelu", TG_ELT_GELU_ERF, 0.0f, 0.0f, false,
                                       f_gelu_erf, d_gelu_erf, false, acc_gelu_erf_fwd, acc_gelu_erf_bwd,
                                       {NULL, NULL}, &tg_op_gelu_vtable, 0.0f, 0.0f};
static const unary_def def_gelu_tanh = {"tg_gelu", TG_ELT_GELU_TANH, 0.0f, 0.0f, false,
                                        f_gelu_tanh, d_gelu_tanh, false, acc_gelu_tanh_fwd, acc_gelu_tanh_bwd,
                                        {NULL, NULL}, &tg_op_gelu_vtable, 0.0f, 0.0f};
/* oneDNN flushes silu below x = -80 to 0 (the exact value is 1e-33 there) */
DEF_FIX(silu, "tg_silu", TG_ELT_SWISH, 1.0f, 0.0f, false, f_silu, d_silu, false, acc_silu_fwd,
        NULL, NULL, NULL, -INFINITY, -80.0f);
/* oneDNN's log(1 + e^x) cancels for x < 0 */
DEF_FIX(softplus, "tg_softplus", TG_ELT_SOFT_RELU, 0.0f, 0.0f, false, f_softplus, d_softplus,
        false, acc_softplus_fwd, NULL, NULL, NULL, -INFINITY, -1.0f);
DEF(hard_sigmoid, "tg_hard_sigmoid", TG_ELT_NONE, 0.0f, 0.0f, false, f_hard_sigmoid,
    d_hard_sigmoid, false, acc_hard_sigmoid_fwd, acc_hard_sigmoid_bwd, "alpha", "beta");
DEF(clip, "tg_clip", TG_ELT_CLIP, 0.0f, 0.0f, true, f_clip, d_clip, false, NULL, NULL, "lo",
    "hi");

/* ---------------------------------------------------------------- oneDNN eltwise */

static dnnl_alg_kind_t eltwise_alg(tg_eltwise_alg alg)
{
    switch (alg) {
    case TG_ELT_RELU: return dnnl_eltwise_relu;
    case TG_ELT_TANH: return dnnl_eltwise_tanh;
    case TG_ELT_SIGMOID: return dnnl_eltwise_logistic;
    case TG_ELT_EXP: return dnnl_eltwise_exp;
    case TG_ELT_LOG: return dnnl_eltwise_log;
    case TG_ELT_SQRT: return dnnl_eltwise_sqrt;
    case TG_ELT_ABS: return dnnl_eltwise_abs;
    case TG_ELT_LINEAR: return dnnl_eltwise_linear;
    case TG_ELT_POW: return dnnl_eltwise_pow;
    case TG_ELT_ELU: return dnnl_eltwise_elu;
    case TG_ELT_GELU_ERF: return dnnl_eltwise_gelu_erf;
    case TG_ELT_GELU_TANH: return dnnl_eltwise_gelu_tanh;
    case TG_ELT_SWISH: return dnnl_eltwise_swish;
    case TG_ELT_SOFT_RELU: return dnnl_eltwise_soft_relu;
    case TG_ELT_CLIP: return dnnl_eltwise_clip_v2;
    case TG_ELT_NONE: break;
    }
    return dnnl_alg_kind_undef;
}

static int64_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (int64_t)u;
}

/* The forward eltwise entry for n elements (contiguous data viewed as 1-D). */
static tg_dnnl_entry *eltwise_fwd_entry(dnnl_alg_kind_t alg, float alpha, float beta,
                                        const dnnl_memory_desc_t *md, int64_t n)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_ELTWISE_FWD);
    tg_dnnl_key_add(&k, alg);
    tg_dnnl_key_add(&k, float_bits(alpha));
    tg_dnnl_key_add(&k, float_bits(beta));
    tg_dnnl_key_add(&k, n);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_eltwise_desc_t d;
    dnnl_status_t st = dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training, alg, md,
                                                      alpha, beta);
    if (st != dnnl_success) {
        tg_dnnl_failed("dnnl_eltwise_forward_desc_init", st);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, NULL);
}

/* y = f(x) for contiguous x, y of equal size (y may alias x). */
static tg_status dnnl_eltwise_forward_run(tg_eltwise_alg alg, float alpha, float beta,
                                          const tg_tensor *x, tg_tensor *y)
{
    if (!x || !y)
        return tg_null_arg_here(!x ? "x" : "y");
    int64_t n = tg_tensor_numel(x);
    if (n != tg_tensor_numel(y))
        return tg_error_here(TG_ERR_SHAPE, "x has %lld elements, y %lld", (long long)n,
                             (long long)tg_tensor_numel(y));
    if (n == 0)
        return TG_OK;
    dnnl_alg_kind_t a = eltwise_alg(alg);
    if (a == dnnl_alg_kind_undef)
        return tg_error_here(TG_ERR_ARG, "unknown algorithm %d", (int)alg);
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t md;
    tg_dnnl_md_plain(&md, 1, &n);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = eltwise_fwd_entry(a, alpha, beta, &md, n);
    if (e) {
        /* x in a dense blocked layout (a conv's output): the elements are the
         * same, only their order differs, so run on that buffer and leave y in
         * the same layout for the next primitive. */
        const dnnl_memory_desc_t *xa = tg_dnnl_alt_md(x);
        const void *src = NULL;
        void *dst = NULL;
        if (xa && tg_dnnl_md_dense(xa, n) && tg_dnnl_keep_layout(xa, y)) {
            src = tg_dnnl_alt_buf(x);
            dst = tg_dnnl_alt_attach(y, xa);
            rc = dst ? TG_OK : TG_ERR_NOMEM;
        } else if ((rc = tg_tensor_settle(x)) == TG_OK && (rc = tg_tensor_settle(y)) == TG_OK) {
            src = tg_tensor_ptr(x); /* plain: settled */
            dst = tg_tensor_ptr(y);
        }
        if (rc == TG_OK) {
            const tg_dnnl_mem args[] = {{DNNL_ARG_SRC, &md, src}, {DNNL_ARG_DST, &md, dst}};
            rc = tg_dnnl_exec(e, args, 2);
        }
    }
    tg_dnnl_unlock();
    return rc;
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status dnnl_eltwise_forward(tg_eltwise_alg alg, float alpha, float beta,
                                      const tg_tensor *x, tg_tensor *y)
{
    const char *prev = tg_error_enter("tg_dnnl_eltwise_forward");
    tg_status rc = dnnl_eltwise_forward_run(alg, alpha, beta, x, y);
    tg_error_leave(prev);
    return rc;
}

/* gx = f'(x) * gy, given the forward input x (gx may alias gy). */
static tg_status dnnl_eltwise_backward_run(tg_eltwise_alg alg, float alpha, float beta,
                                           const tg_tensor *x, const tg_tensor *gy,
                                           tg_tensor *gx)
{
    if (!x || !gy || !gx)
        return tg_null_arg_here(!x ? "x" : !gy ? "gy" : "gx");
    int64_t n = tg_tensor_numel(x);
    if (n != tg_tensor_numel(gy) || n != tg_tensor_numel(gx))
        return tg_error_here(TG_ERR_SHAPE, "x, gy and gx differ in size (%lld, %lld, %lld)",
                             (long long)n, (long long)tg_tensor_numel(gy),
                             (long long)tg_tensor_numel(gx));
    if (n == 0)
        return TG_OK;
    dnnl_alg_kind_t a = eltwise_alg(alg);
    if (a == dnnl_alg_kind_undef)
        return tg_error_here(TG_ERR_ARG, "unknown algorithm %d", (int)alg);
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t md;
    tg_dnnl_md_plain(&md, 1, &n);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_ELTWISE_BWD);
    tg_dnnl_key_add(&k, a);
    tg_dnnl_key_add(&k, float_bits(alpha));
    tg_dnnl_key_add(&k, float_bits(beta));
    tg_dnnl_key_add(&k, n);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        tg_dnnl_entry *fwd = eltwise_fwd_entry(a, alpha, beta, &md, n);
        if (fwd) {
            dnnl_eltwise_desc_t d;
            dnnl_status_t st = dnnl_eltwise_backward_desc_init(&d, a, &md, &md, alpha, beta);
            if (st != dnnl_success)
                tg_dnnl_failed("dnnl_eltwise_backward_desc_init", st);
            else
                e = tg_dnnl_create(&k, &d, fwd->pd);
        }
    }
    if (e) {
        /* x and gy in the same dense blocked layout: gx in it too (see forward).
         * gx may be gy itself (same storage: the gradient computed in place). */
        const dnnl_memory_desc_t *xa = tg_dnnl_alt_md(x), *ga = tg_dnnl_alt_md(gy);
        bool same = gx->storage == gy->storage;
        const void *src = NULL, *diff_dst = NULL;
        void *diff_src = NULL;
        if (xa && ga && dnnl_memory_desc_equal(xa, ga) && tg_dnnl_md_dense(xa, n) &&
            (same || tg_dnnl_keep_layout(xa, gx))) {
            src = tg_dnnl_alt_buf(x);
            diff_dst = tg_dnnl_alt_buf(gy);
            diff_src = same ? (void *)(uintptr_t)diff_dst : tg_dnnl_alt_attach(gx, xa);
            rc = diff_src ? TG_OK : TG_ERR_NOMEM;
        } else if ((rc = tg_tensor_settle(x)) == TG_OK && (rc = tg_tensor_settle(gy)) == TG_OK &&
                   (rc = tg_tensor_settle(gx)) == TG_OK) {
            src = tg_tensor_ptr(x); /* plain: settled */
            diff_dst = tg_tensor_ptr(gy);
            diff_src = tg_tensor_ptr(gx);
        }
        if (rc == TG_OK) {
            const tg_dnnl_mem args[] = {{DNNL_ARG_SRC, &md, src},
                                        {DNNL_ARG_DIFF_DST, &md, diff_dst},
                                        {DNNL_ARG_DIFF_SRC, &md, diff_src}};
            rc = tg_dnnl_exec(e, args, 3);
        }
    }
    tg_dnnl_unlock();
    return rc;
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status dnnl_eltwise_backward(tg_eltwise_alg alg, float alpha, float beta,
                                       const tg_tensor *x, const tg_tensor *gy, tg_tensor *gx)
{
    const char *prev = tg_error_enter("tg_dnnl_eltwise_backward");
    tg_status rc = dnnl_eltwise_backward_run(alg, alpha, beta, x, gy, gx);
    tg_error_leave(prev);
    return rc;
}


tg_status tg_eltwise_dnnl(tg_eltwise_alg alg, float alpha, float beta, tg_tensor *x,
                          tg_tensor *g, tg_tensor *out)
{
    if (tg_tensor_numel(x) == 0)
        return TG_OK;
    tg_status st = TG_ERR_NOMEM;
    tg_tensor *xc = tg_contiguous_layout_owned(x, true);
    tg_tensor *gc = g ? tg_contiguous_layout_owned(g, true) : NULL;
    tg_tensor *xf = NULL, *gf = NULL, *of = NULL;
    if (!xc || (g && !gc))
        goto done;
    xf = tg_flat_view_owned(xc);
    gf = g ? tg_flat_view_owned(gc) : NULL;
    of = tg_flat_view_owned(out);
    if (!xf || (g && !gf) || !of)
        goto done;
    st = g ? dnnl_eltwise_backward(alg, alpha, beta, xf, gf, of)
           : dnnl_eltwise_forward(alg, alpha, beta, xf, of);
done:
    tg_release(xf);
    tg_release(gf);
    tg_release(of);
    tg_release(xc);
    tg_release(gc);
    return st;
}

#define UNARY_FWD_LOOP(T)                                                            \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc);                                             \
        T *py = tg_tensor_ptr(y);                                                    \
        for (int64_t i = 0; i < n; i++)                                              \
            py[i] = (T)def->f(px[i], p);                                             \
    } while (0)

/* oneDNN's alpha and beta for def with parameters p */
static void dnnl_alpha_beta(const unary_def *def, const double *p, float *alpha, float *beta)
{
    *alpha = def->alpha_beta_params ? (float)p[0] : def->alpha;
    *beta = def->alpha_beta_params ? (float)p[1] : def->beta;
}

/* How f32 on AUTO runs: oneDNN, or the accurate loop (acc) when def has one. */
static bool use_acc(const tg_tensor *x, f32_fwd_fn fwd, f32_bwd_fn bwd)
{
    return tg_use_dnnl(x) && (fwd || bwd);
}

static tg_tensor *unary_p(const unary_def *def, tg_tensor *x, const double *p)
{
    tg_op_call c;
    if (!tg_op_begin(&c, def->vt, def->who, &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    unary_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    if (use_acc(x, def->acc_fwd, NULL)) {
        tg_tensor *xc = tg_contiguous_owned(x);
        if (!xc)
            return tg_op_fail(&c);
        bool all = !(def->fix_lo < def->fix_hi);
        if (!all) { /* oneDNN, then the elements in its bad range again */
            float alpha, beta;
            dnnl_alpha_beta(def, p, &alpha, &beta);
            if (tg_eltwise_dnnl(def->alg, alpha, beta, xc, NULL, y) != TG_OK ||
                tg_tensor_settle(y) != TG_OK) {
                tg_release(xc);
                return tg_op_fail(&c);
            }
        }
        def->acc_fwd(tg_tensor_ptr(xc), tg_tensor_ptr(y), tg_tensor_numel(x), p, all,
                     def->fix_lo, def->fix_hi);
        tg_release(xc);
    } else if (tg_use_dnnl(x)) {
        float alpha, beta;
        dnnl_alpha_beta(def, p, &alpha, &beta);
        if (tg_eltwise_dnnl(def->alg, alpha, beta, x, NULL, y) != TG_OK)
            return tg_op_fail(&c);
    } else {
        tg_tensor *xc = tg_contiguous_owned(x);
        if (!xc)
            return tg_op_fail(&c);
        int64_t n = tg_tensor_numel(x);
        if (x->dtype == TG_F32)
            UNARY_FWD_LOOP(float);
        else
            UNARY_FWD_LOOP(double);
        tg_release(xc);
    }
    if (sv) {
        sv->def = def;
        sv->p[0] = p[0];
        sv->p[1] = p[1];
        if (def->save_y && !(sv->y = tg_op_output_view(&c)))
            return tg_op_fail(&c);
    }
    return tg_op_end(&c);
}

static tg_tensor *unary(const unary_def *def, tg_tensor *x)
{
    static const double none[2] = {0.0, 0.0};
    return unary_p(def, x, none);
}

tg_tensor *tg_neg(tg_tensor *x) { return unary(&def_neg, x); }
tg_tensor *tg_exp(tg_tensor *x) { return unary(&def_exp, x); }
tg_tensor *tg_log(tg_tensor *x) { return unary(&def_log, x); }
tg_tensor *tg_sqrt(tg_tensor *x) { return unary(&def_sqrt, x); }
tg_tensor *tg_abs(tg_tensor *x) { return unary(&def_abs, x); }
tg_tensor *tg_tanh(tg_tensor *x) { return unary(&def_tanh, x); }
tg_tensor *tg_sigmoid(tg_tensor *x) { return unary(&def_sigmoid, x); }
tg_tensor *tg_relu(tg_tensor *x) { return unary(&def_relu, x); }
tg_tensor *tg_silu(tg_tensor *x) { return unary(&def_silu, x); }
tg_tensor *tg_softplus(tg_tensor *x) { return unary(&def_softplus, x); }

/* A parameter error names the op (its frame is not entered yet). */
static tg_tensor *param_error(const char *who, const char *fmt, double v)
{
    const char *prev = tg_error_enter(who);
    tg_error_here(TG_ERR_ARG, fmt, v);
    tg_error_leave(prev);
    return NULL;
}

tg_tensor *tg_leaky_relu(tg_tensor *x, double alpha)
{
    if (!isfinite(alpha))
        return param_error("tg_leaky_relu", "alpha must be finite, not %g", alpha);
    return unary_p(&def_leaky_relu, x, (const double[2]){alpha, 0.0});
}

tg_tensor *tg_elu(tg_tensor *x, double alpha)
{
    if (!isfinite(alpha))
        return param_error("tg_elu", "alpha must be finite, not %g", alpha);
    return unary_p(&def_elu, x, (const double[2]){alpha, 0.0});
}

tg_tensor *tg_gelu(tg_tensor *x, tg_gelu_approx approximate)
{
    if (approximate != TG_GELU_ERF && approximate != TG_GELU_TANH)
        return param_error("tg_gelu", "approximate is %g, not TG_GELU_ERF or TG_GELU_TANH",
                           (double)approximate);
    return unary(approximate == TG_GELU_TANH ? &def_gelu_tanh : &def_gelu_erf, x);
}

tg_tensor *tg_hard_sigmoid(tg_tensor *x, double alpha, double beta)
{
    if (!isfinite(alpha))
        return param_error("tg_hard_sigmoid", "alpha must be finite, not %g", alpha);
    if (!isfinite(beta))
        return param_error("tg_hard_sigmoid", "beta must be finite, not %g", beta);
    return unary_p(&def_hard_sigmoid, x, (const double[2]){alpha, beta});
}

tg_tensor *tg_clip(tg_tensor *x, double lo, double hi)
{
    if (isnan(lo) || isnan(hi) || !(lo <= hi)) {
        const char *prev = tg_error_enter("tg_clip");
        tg_error_here(TG_ERR_ARG, "lo %g and hi %g: need lo <= hi (and no NaN)", lo, hi);
        tg_error_leave(prev);
        return NULL;
    }
    return unary_p(&def_clip, x, (const double[2]){lo, hi});
}

/* ---------------------------------------------------------------- backward */

#define UNARY_BWD_LOOP(T)                                                            \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc), *pg = tg_tensor_ptr(gc);                    \
        const T *py = yc ? (const T *)tg_tensor_ptr(yc) : NULL;                      \
        T *po = tg_tensor_ptr(gx);                                                   \
        for (int64_t i = 0; i < n; i++)                                              \
            po[i] = (T)((double)pg[i] * def->df(px[i], py ? py[i] : 0.0, sv->p));    \
    } while (0)

static tg_status unary_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const unary_saved *sv = node->saved;
    const unary_def *def = sv->def;
    tg_tensor *x = node->inputs[0];
    /* On oneDNN the gradient may overwrite g itself when nobody else sees g:
     * one pass over memory fewer, and no new buffer. */
    bool acc = use_acc(x, NULL, def->acc_bwd);
    bool in_place = tg_use_dnnl(x) && tg_grad_out_reusable(g) && g->dtype == x->dtype &&
                    (!acc || tg_tensor_is_contiguous(g)); /* the loop writes g flat */
    tg_tensor *gx = in_place ? tg_retain(g)
                             : tg_tensor_new_owned(x->dtype, x->ndim, x->shape);
    if (!gx)
        return tg_last_status();
    tg_status st = TG_OK;
    if (acc) {
        tg_tensor *xc = tg_contiguous_owned(x), *gc = tg_contiguous_owned(g);
        if (xc && gc) {
            def->acc_bwd(tg_tensor_ptr(xc), tg_tensor_ptr(gc), tg_tensor_ptr(gx),
                         tg_tensor_numel(x), sv->p);
        } else {
            st = tg_last_status();
        }
        tg_release(xc);
        tg_release(gc);
    } else if (tg_use_dnnl(x)) {
        float alpha, beta;
        dnnl_alpha_beta(def, sv->p, &alpha, &beta);
        st = tg_eltwise_dnnl(def->alg, alpha, beta, x, g, gx);
    } else {
        tg_tensor *xc = tg_contiguous_owned(x), *gc = tg_contiguous_owned(g);
        tg_tensor *yc = sv->y ? tg_contiguous_owned(sv->y) : NULL;
        if (xc && gc && (yc || !sv->y)) {
            int64_t n = tg_tensor_numel(x);
            if (x->dtype == TG_F32)
                UNARY_BWD_LOOP(float);
            else
                UNARY_BWD_LOOP(double);
        } else {
            st = tg_last_status();
        }
        tg_release(xc);
        tg_release(gc);
        tg_release(yc);
    }
    if (st != TG_OK) {
        tg_release(gx);
        return st;
    }
    gin[0] = tg_scoped(gx);
    return TG_OK;
}
