/* ops/scalar.c -- elementwise ops with a scalar operand.
 *
 *   add_scalar: y = x + s     dx = g
 *   mul_scalar: y = s * x     dx = s * g
 *   pow_scalar: y = x ** p    dx = g * p * x^(p - 1)
 *
 * f32 on the AUTO backend runs oneDNN's eltwise linear (alpha x + beta) and pow
 * (alpha x^beta) forward and backward, except pow_scalar's backward, for which
 * oneDNN overflows where x^p does (x^(p - 1) does not: tests/test_accuracy.c) and
 * a loop over libm's pow runs instead; f64 and the reference backend use the loops
 * below. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/dnnl_impl.h"

typedef enum scalar_kind { SC_ADD, SC_MUL, SC_POW } scalar_kind;

typedef struct scalar_saved {
    scalar_kind kind;
    double s;
} scalar_saved;

static const char *const sc_who[] = {"tg_add_scalar", "tg_mul_scalar", "tg_pow_scalar"};

static inline double sc_apply(scalar_kind k, double x, double s)
{
    switch (k) {
    case SC_ADD: return x + s;
    case SC_MUL: return x * s;
    case SC_POW: return pow(x, s);
    }
    return 0;
}

/* y (contiguous) = f(x) for any strided x. */
#define SC_REF_LOOP(T)                                                               \
    do {                                                                             \
        const T *px = tg_storage_data(x->storage);                                              \
        T *py = tg_tensor_ptr(y);                                                    \
        int64_t i = 0;                                                               \
        do py[i++] = (T)sc_apply(k, px[off[0]], s);                                  \
        while (tg_index_next(x->ndim, x->shape, idx, 1, off, st));                   \
    } while (0)

static void scalar_ref(scalar_kind k, double s, const tg_tensor *x, tg_tensor *y)
{
    if (tg_tensor_numel(x) == 0)
        return;
    int64_t st[1][TG_MAX_DIMS], off[1] = {x->offset}, idx[TG_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++)
        st[0][d] = x->strides[d];
    if (x->dtype == TG_F32)
        SC_REF_LOOP(float);
    else
        SC_REF_LOOP(double);
}

/* oneDNN's eltwise forward (gy == NULL) or backward for kind k with scalar s:
 * linear is alpha x + beta, pow is alpha x^beta. */
static tg_status scalar_dnnl(scalar_kind k, double s, tg_tensor *x, tg_tensor *gy,
                             tg_tensor *out)
{
    switch (k) {
    case SC_ADD: return tg_eltwise_dnnl(TG_ELT_LINEAR, 1.0f, (float)s, x, gy, out);
    case SC_MUL: return tg_eltwise_dnnl(TG_ELT_LINEAR, (float)s, 0.0f, x, gy, out);
    case SC_POW: return tg_eltwise_dnnl(TG_ELT_POW, 1.0f, (float)s, x, gy, out);
    }
    return tg_error(TG_ERR_ARG, "scalar op: unknown kind %d", (int)k);
}

static const tg_op_vtable *sc_vtable(scalar_kind k);

static tg_tensor *scalar_op(scalar_kind k, tg_tensor *x, double s)
{
    tg_op_call c;
    if (!tg_op_begin(&c, sc_vtable(k), sc_who[k], &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    scalar_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    if (tg_use_dnnl(x)) {
        if (scalar_dnnl(k, s, x, NULL, y) != TG_OK)
            return tg_op_fail(&c);
    } else if (tg_tensor_settle(x) != TG_OK) {
        return tg_op_fail(&c); /* scalar_ref reads the storage plain */
    } else {
        scalar_ref(k, s, x, y);
    }
    if (sv) {
        sv->kind = k;
        sv->s = s;
    }
    return tg_op_end(&c);
}

tg_tensor *tg_add_scalar(tg_tensor *x, double s) { return scalar_op(SC_ADD, x, s); }
tg_tensor *tg_mul_scalar(tg_tensor *x, double s) { return scalar_op(SC_MUL, x, s); }
tg_tensor *tg_pow_scalar(tg_tensor *x, double p) { return scalar_op(SC_POW, x, p); }

/* ---------------------------------------------------------------- backward */

static tg_status add_scalar_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (tg_node_needs_grad(node, 0))
        gin[0] = tg_scoped(tg_retain(g));
    return TG_OK;
}

static tg_status mul_scalar_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    const scalar_saved *sv = node->saved;
    if (tg_node_needs_grad(node, 0) && !(gin[0] = tg_mul_scalar(g, sv->s)))
        return tg_last_status();
    return TG_OK;
}

#define POW_BWD_LOOP(T)                                                              \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc), *pg = tg_tensor_ptr(gc);                    \
        T *po = tg_tensor_ptr(gx);                                                   \
        for (int64_t i = 0; i < n; i++)                                              \
            po[i] = (T)((double)pg[i] * p * pow(px[i], p - 1.0));                    \
    } while (0)

static tg_status pow_scalar_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    tg_tensor *x = node->inputs[0];
    double p = ((const scalar_saved *)node->saved)->s;
    tg_tensor *gx = tg_tensor_new_owned(x->dtype, x->ndim,
                                        x->shape);
    if (!gx)
        return tg_last_status();
    tg_status st = TG_OK;
    if (tg_use_dnnl(x)) {
        /* accurate f32: x^(p - 1) in float when p - 1 is a float, else in double */
        tg_tensor *xc = tg_contiguous_owned(x), *gc = tg_contiguous_owned(g);
        if (xc && gc) {
            const float *px = tg_tensor_ptr(xc), *pg = tg_tensor_ptr(gc);
            float *po = tg_tensor_ptr(gx);
            int64_t n = tg_tensor_numel(x);
            float qf = (float)(p - 1.0);
            if ((double)qf == p - 1.0) {
                #pragma omp parallel for simd schedule(static) if (parallel: n >= 32768)
                for (int64_t i = 0; i < n; i++)
                    po[i] = pg[i] * (float)(p * (double)powf(px[i], qf));
            } else {
                #pragma omp parallel for simd schedule(static) if (parallel: n >= 32768)
                for (int64_t i = 0; i < n; i++)
                    po[i] = pg[i] * (float)(p * pow(px[i], p - 1.0));
            }
        } else {
            st = tg_last_status();
        }
        tg_release(xc);
        tg_release(gc);
    } else {
        tg_tensor *xc = tg_contiguous_owned(x), *gc = tg_contiguous_owned(g);
        if (xc && gc) {
            int64_t n = tg_tensor_numel(x);
            if (x->dtype == TG_F32)
                POW_BWD_LOOP(float);
            else
                POW_BWD_LOOP(double);
        } else {
            st = tg_last_status();
        }
        tg_release(xc);
        tg_release(gc);
    }
    if (st != TG_OK) {
        tg_release(gx);
        return st;
    }
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

static void sc_describe(const tg_node *node, char *buf, size_t n)
{
    static const char *const sym[] = {"+ ", "* ", "^ "};
    const scalar_saved *sv = node->saved;
    if (n == 0)
        return;
    if (!sv || node->released) { /* freed by a backward without retain_graph */
        buf[0] = '\0';
        return;
    }
    snprintf(buf, n, "%s%g", sym[sv->kind], sv->s);
}

const tg_op_vtable tg_op_add_scalar_vtable = {"add_scalar", add_scalar_backward, NULL,
                                              sc_describe, 0, TG_OP_ALL_INPUTS};
const tg_op_vtable tg_op_mul_scalar_vtable = {"mul_scalar", mul_scalar_backward, NULL,
                                              sc_describe, 0, TG_OP_ALL_INPUTS};
/* a fractional power needs a positive base */
const tg_op_vtable tg_op_pow_scalar_vtable = {"pow_scalar", pow_scalar_backward, NULL,
                                              sc_describe, TG_GC_POSITIVE, 0};

static const tg_op_vtable *sc_vtable(scalar_kind k)
{
    static const tg_op_vtable *const vt[] = {&tg_op_add_scalar_vtable,
                                             &tg_op_mul_scalar_vtable,
                                             &tg_op_pow_scalar_vtable};
    return vt[k];
}
