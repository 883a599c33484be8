/* ops/unary.c -- elementwise unary ops.
 *
 *   neg:     y = -x                 dx = -g
 *   exp:     y = e^x                dx = g * y
 *   log:     y = ln x               dx = g / x
 *   sqrt:    y = sqrt(x)            dx = g / (2 y)
 *   abs:     y = |x|                dx = g * sign(x)       (0 at x = 0)
 *   tanh:    y = tanh x             dx = g * (1 - y^2)
 *   sigmoid: y = 1 / (1 + e^-x)     dx = g * y * (1 - y)
 *   relu:    y = max(x, 0)          dx = g * [x > 0]       (0 at x = 0)
 *
 * f32 on the AUTO backend runs oneDNN's eltwise forward and backward (given x);
 * f64 and the reference backend use the loops below, which read y where the
 * derivative is cheaper from it (a view of the output: no copy, and no cycle since
 * the view has no grad_fn). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/dnnl_impl.h"

typedef struct unary_def {
    const char *who;
    tg_eltwise_alg alg; /* oneDNN algorithm with its alpha, beta */
    float alpha, beta;
    double (*f)(double x);
    double (*df)(double x, double y); /* dy/dx from x and y = f(x) */
    bool save_y;                      /* df reads y */
    const tg_op_vtable *vt;
} unary_def;

typedef struct unary_saved {
    const unary_def *def;
    tg_tensor *y; /* view of the output, or NULL */
} unary_saved;

static double f_neg(double x) { return -x; }
static double d_neg(double x, double y) { return -1.0; }
static double d_exp(double x, double y) { return y; }
static double d_log(double x, double y) { return 1.0 / x; }
static double d_sqrt(double x, double y) { return 0.5 / y; }
static double d_abs(double x, double y) { return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0; }
static double d_tanh(double x, double y) { return 1.0 - y * y; }
static double d_sigmoid(double x, double y) { return y * (1.0 - y); }
static double d_relu(double x, double y) { return x > 0 ? 1.0 : 0.0; }
static double f_relu(double x) { return x > 0 ? x : 0.0; }

static double f_sigmoid(double x)
{
    /* never exponentiate a large positive number */
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static void unary_free(void *p)
{
    unary_saved *sv = p;
    if (sv)
        tg_release(sv->y);
    free(sv);
}

static tg_status unary_backward(tg_node *node, tg_tensor *g, tg_tensor **gin);

/* shape_only: backward reads no value of x (the derivative is a constant) */
#define UNARY_VTABLE(n, hints, shape_only) \
    const tg_op_vtable tg_op_##n##_vtable = {#n, unary_backward, unary_free, NULL, hints, \
                                             shape_only};

UNARY_VTABLE(neg, 0, TG_OP_ALL_INPUTS)
UNARY_VTABLE(exp, 0, 0)
UNARY_VTABLE(log, TG_GC_POSITIVE, 0)
UNARY_VTABLE(sqrt, TG_GC_POSITIVE, 0)
UNARY_VTABLE(abs, TG_GC_AWAY_FROM_KINK, 0)
UNARY_VTABLE(tanh, 0, 0)
UNARY_VTABLE(sigmoid, 0, 0)
UNARY_VTABLE(relu, TG_GC_AWAY_FROM_KINK, 0)

static const unary_def def_neg = {"tg_neg", TG_ELT_LINEAR, -1.0f, 0.0f, f_neg, d_neg, false,
                                  &tg_op_neg_vtable};
static const unary_def def_exp = {"tg_exp", TG_ELT_EXP, 0.0f, 0.0f, exp, d_exp, true,
                                  &tg_op_exp_vtable};
static const unary_def def_log = {"tg_log", TG_ELT_LOG, 0.0f, 0.0f, log, d_log, false,
                                  &tg_op_log_vtable};
static const unary_def def_sqrt = {"tg_sqrt", TG_ELT_SQRT, 0.0f, 0.0f, sqrt, d_sqrt, true,
                                   &tg_op_sqrt_vtable};
static const unary_def def_abs = {"tg_abs", TG_ELT_ABS, 0.0f, 0.0f, fabs, d_abs, false,
                                  &tg_op_abs_vtable};
static const unary_def def_tanh = {"tg_tanh", TG_ELT_TANH, 0.0f, 0.0f, tanh, d_tanh, true,
                                   &tg_op_tanh_vtable};
static const unary_def def_sigmoid = {"tg_sigmoid", TG_ELT_SIGMOID, 0.0f, 0.0f, f_sigmoid,
                                      d_sigmoid, true, &tg_op_sigmoid_vtable};
static const unary_def def_relu = {"tg_relu", TG_ELT_RELU, 0.0f, 0.0f, f_relu, d_relu,
                                   false, &tg_op_relu_vtable};

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
            py[i] = (T)def->f(px[i]);                                                \
    } while (0)

static tg_tensor *unary(const unary_def *def, tg_tensor *x)
{
    tg_op_call c;
    if (!tg_op_begin(&c, def->vt, def->who, &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    unary_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    if (tg_use_dnnl(x)) {
        if (tg_eltwise_dnnl(def->alg, def->alpha, def->beta, x, NULL, y) != TG_OK)
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
        if (def->save_y && !(sv->y = tg_op_output_view(&c)))
            return tg_op_fail(&c);
    }
    return tg_op_end(&c);
}

tg_tensor *tg_neg(tg_tensor *x) { return unary(&def_neg, x); }
tg_tensor *tg_exp(tg_tensor *x) { return unary(&def_exp, x); }
tg_tensor *tg_log(tg_tensor *x) { return unary(&def_log, x); }
tg_tensor *tg_sqrt(tg_tensor *x) { return unary(&def_sqrt, x); }
tg_tensor *tg_abs(tg_tensor *x) { return unary(&def_abs, x); }
tg_tensor *tg_tanh(tg_tensor *x) { return unary(&def_tanh, x); }
tg_tensor *tg_sigmoid(tg_tensor *x) { return unary(&def_sigmoid, x); }
tg_tensor *tg_relu(tg_tensor *x) { return unary(&def_relu, x); }

/* ---------------------------------------------------------------- backward */

#define UNARY_BWD_LOOP(T)                                                            \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc), *pg = tg_tensor_ptr(gc);                    \
        const T *py = yc ? (const T *)tg_tensor_ptr(yc) : NULL;                      \
        T *po = tg_tensor_ptr(gx);                                                   \
        for (int64_t i = 0; i < n; i++)                                              \
            po[i] = (T)((double)pg[i] * def->df(px[i], py ? py[i] : 0.0));           \
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
    bool in_place = tg_use_dnnl(x) && tg_grad_out_reusable(g) && g->dtype == x->dtype;
    tg_tensor *gx = in_place ? tg_retain(g)
                             : tg_tensor_new_owned(x->dtype, x->ndim, x->shape);
    if (!gx)
        return tg_last_status();
    tg_status st = TG_OK;
    if (tg_use_dnnl(x)) {
        st = tg_eltwise_dnnl(def->alg, def->alpha, def->beta, x, g, gx);
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
