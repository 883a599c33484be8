/* ops/softmax.c -- softmax and log-softmax along one axis.
 *
 *   softmax:     y_c = e^(x_c - m) / s,  m = max_c x_c,  s = sum_c e^(x_c - m)
 *                dx_c = y_c (g_c - sum_j g_j y_j)
 *   log_softmax: y_c = x_c - m - log s
 *                dx_c = g_c - e^(y_c) sum_j g_j
 *
 * Subtracting the max keeps every exponent <= 0, so nothing overflows. Backward
 * needs only y: the node keeps a view of the output (no copy; the view has no
 * grad_fn, so there is no cycle). f32 on AUTO runs oneDNN's softmax primitives. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/dnnl_impl.h"

typedef struct softmax_saved {
    int axis;
    tg_tensor *y; /* view of the output */
} softmax_saved;

static void softmax_free(void *p)
{
    softmax_saved *sv = p;
    if (sv)
        tg_release(sv->y);
    free(sv);
}

/* Extents of x seen as (outer, len, inner) around axis. */
static void split_axis(const tg_tensor *x, int axis, int64_t *outer, int64_t *len,
                       int64_t *inner)
{
    *outer = tg_shape_numel(axis, x->shape);
    *len = x->shape[axis];
    *inner = tg_shape_numel(x->ndim - axis - 1, x->shape + axis + 1);
}

#define SOFTMAX_FWD_LOOP(T)                                                          \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc);                                             \
        T *py = tg_tensor_ptr(y);                                                    \
        for (int64_t o = 0; o < outer; o++)                                          \
            for (int64_t i = 0; i < inner; i++) {                                    \
                const T *rx = px + o * len * inner + i;                              \
                T *ry = py + o * len * inner + i;                                    \
                double m = -INFINITY, s = 0;                                         \
                for (int64_t c = 0; c < len; c++)                                    \
                    m = rx[c * inner] > m ? rx[c * inner] : m;                       \
                for (int64_t c = 0; c < len; c++)                                    \
                    s += exp(rx[c * inner] - m);                                     \
                double ls = log(s);                                                  \
                for (int64_t c = 0; c < len; c++)                                    \
                    ry[c * inner] = (T)(log_ ? rx[c * inner] - m - ls                 \
                                             : exp(rx[c * inner] - m) / s);          \
            }                                                                        \
    } while (0)

static void softmax_ref(bool log_, int axis, const tg_tensor *xc, tg_tensor *y)
{
    int64_t outer, len, inner;
    split_axis(xc, axis, &outer, &len, &inner);
    if (xc->dtype == TG_F32)
        SOFTMAX_FWD_LOOP(float);
    else
        SOFTMAX_FWD_LOOP(double);
}

#define SOFTMAX_BWD_LOOP(T)                                                          \
    do {                                                                             \
        const T *py = tg_tensor_ptr(yc), *pg = tg_tensor_ptr(gc);                    \
        T *po = tg_tensor_ptr(gx);                                                   \
        for (int64_t o = 0; o < outer; o++)                                          \
            for (int64_t i = 0; i < inner; i++) {                                    \
                int64_t base = o * len * inner + i;                                  \
                const T *ry = py + base, *rg = pg + base;                            \
                T *ro = po + base;                                                   \
                double dot = 0;                                                      \
                for (int64_t c = 0; c < len; c++)                                    \
                    dot += log_ ? (double)rg[c * inner]                               \
                                : (double)rg[c * inner] * ry[c * inner];             \
                for (int64_t c = 0; c < len; c++)                                    \
                    ro[c * inner] = (T)(log_ ? rg[c * inner] - exp(ry[c * inner]) * dot \
                                             : ry[c * inner] * (rg[c * inner] - dot)); \
            }                                                                        \
    } while (0)

static void softmax_bwd_ref(bool log_, int axis, const tg_tensor *yc, const tg_tensor *gc,
                            tg_tensor *gx)
{
    int64_t outer, len, inner;
    split_axis(yc, axis, &outer, &len, &inner);
    if (yc->dtype == TG_F32)
        SOFTMAX_BWD_LOOP(float);
    else
        SOFTMAX_BWD_LOOP(double);
}

/* ---------------------------------------------------------------- oneDNN */

static tg_dnnl_entry *softmax_fwd_entry(bool log, int axis, const tg_tensor *x,
                                        const dnnl_memory_desc_t *md)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_SOFTMAX_FWD);
    tg_dnnl_key_add(&k, log);
    tg_dnnl_key_add(&k, axis);
    tg_dnnl_key_add_layout(&k, x);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_status_t st;
    if (log) {
        dnnl_logsoftmax_desc_t d;
        st = dnnl_logsoftmax_forward_desc_init(&d, dnnl_forward_training, md, axis);
        if (st == dnnl_success)
            return tg_dnnl_create(&k, &d, NULL);
    } else {
        dnnl_softmax_desc_t d;
        st = dnnl_softmax_forward_desc_init(&d, dnnl_forward_training, md, axis);
        if (st == dnnl_success)
            return tg_dnnl_create(&k, &d, NULL);
    }
    tg_dnnl_failed("softmax forward descriptor", st);
    return NULL;
}

static tg_status check_softmax(int axis, const tg_tensor *a,
                               const tg_tensor *b, const tg_tensor *c)
{
    if (a->ndim < 1 || axis < 0 || axis >= a->ndim)
        return tg_error_here(TG_ERR_RANGE, "axis %d out of range for a %d-D tensor", axis,
                             a->ndim);
    if (!tg_tensor_same_shape(a, b) || (c && !tg_tensor_same_shape(a, c)))
        return tg_error_here(TG_ERR_SHAPE, "tensors must have equal shapes");
    return TG_OK;
}

/* Softmax or log-softmax of x along axis into y (contiguous, equal shapes). */
static tg_status dnnl_softmax_forward_run(bool log, int axis, const tg_tensor *x, tg_tensor *y)
{
    if (!x || !y)
        return tg_null_arg_here(!x ? "x" : "y");
    tg_status rc = check_softmax(axis, x, y, NULL);
    if (rc != TG_OK)
        return rc;
    if (tg_tensor_numel(x) == 0)
        return TG_OK;
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t mx, my;
    tg_dnnl_md_of(&mx, x);
    tg_dnnl_md_of(&my, y);
    if (!dnnl_memory_desc_equal(&mx, &my))
        return tg_error_here(TG_ERR_ARG, "x and y must have the same layout");
    tg_dnnl_lock();
    rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = softmax_fwd_entry(log, axis, x, &mx);
    if (e && ((rc = tg_tensor_settle(x)) != TG_OK || (rc = tg_tensor_settle(y)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        const tg_dnnl_mem args[] = {{DNNL_ARG_SRC, &mx, tg_tensor_ptr(x)},
                                    {DNNL_ARG_DST, &my, tg_tensor_ptr(y)}};
        rc = tg_dnnl_exec(e, args, 2);
    }
    tg_dnnl_unlock();
    return rc;
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status dnnl_softmax_forward(bool log, int axis, const tg_tensor *x, tg_tensor *y)
{
    const char *prev = tg_error_enter(log ? "tg_dnnl_log_softmax_forward"
                                          : "tg_dnnl_softmax_forward");
    tg_status rc = dnnl_softmax_forward_run(log, axis, x, y);
    tg_error_leave(prev);
    return rc;
}

/* gx from the forward output y and gy. */
static tg_status dnnl_softmax_backward_run(bool log, int axis, const tg_tensor *y,
                                           const tg_tensor *gy, tg_tensor *gx)
{
    if (!y || !gy || !gx)
        return tg_null_arg_here(!y ? "y" : !gy ? "gy" : "gx");
    tg_status rc = check_softmax(axis, y, gy, gx);
    if (rc != TG_OK)
        return rc;
    if (tg_tensor_numel(y) == 0)
        return TG_OK;
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t my, mgy, mgx;
    tg_dnnl_md_of(&my, y);
    tg_dnnl_md_of(&mgy, gy);
    tg_dnnl_md_of(&mgx, gx);
    if (!dnnl_memory_desc_equal(&my, &mgy) || !dnnl_memory_desc_equal(&my, &mgx))
        return tg_error_here(TG_ERR_ARG, "y, gy and gx must have the same layout");
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_SOFTMAX_BWD);
    tg_dnnl_key_add(&k, log);
    tg_dnnl_key_add(&k, axis);
    tg_dnnl_key_add_layout(&k, y);
    tg_dnnl_lock();
    rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        tg_dnnl_entry *fwd = softmax_fwd_entry(log, axis, y, &my);
        if (fwd) {
            dnnl_status_t st;
            if (log) {
                dnnl_logsoftmax_desc_t d;
                st = dnnl_logsoftmax_backward_desc_init(&d, &mgx, &my, axis);
                if (st == dnnl_success)
                    e = tg_dnnl_create(&k, &d, fwd->pd);
            } else {
                dnnl_softmax_desc_t d;
                st = dnnl_softmax_backward_desc_init(&d, &mgx, &my, axis);
                if (st == dnnl_success)
                    e = tg_dnnl_create(&k, &d, fwd->pd);
            }
            if (st != dnnl_success)
                tg_dnnl_failed("softmax backward descriptor", st);
        }
    }
    if (e && ((rc = tg_tensor_settle(y)) != TG_OK || (rc = tg_tensor_settle(gy)) != TG_OK ||
              (rc = tg_tensor_settle(gx)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        const tg_dnnl_mem args[] = {{DNNL_ARG_DST, &my, tg_tensor_ptr(y)},
                                    {DNNL_ARG_DIFF_DST, &mgy, tg_tensor_ptr(gy)},
                                    {DNNL_ARG_DIFF_SRC, &mgx, tg_tensor_ptr(gx)}};
        rc = tg_dnnl_exec(e, args, 3);
    }
    tg_dnnl_unlock();
    return rc;
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status dnnl_softmax_backward(bool log, int axis, const tg_tensor *y,
                                       const tg_tensor *gy, tg_tensor *gx)
{
    const char *prev = tg_error_enter(log ? "tg_dnnl_log_softmax_backward"
                                          : "tg_dnnl_softmax_backward");
    tg_status rc = dnnl_softmax_backward_run(log, axis, y, gy, gx);
    tg_error_leave(prev);
    return rc;
}

static tg_tensor *softmax_op(bool log_, tg_tensor *x, int axis)
{
    tg_op_call c;
    if (!tg_op_begin(&c, log_ ? &tg_op_log_softmax_vtable : &tg_op_softmax_vtable,
                     log_ ? "tg_log_softmax" : "tg_softmax", &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    int ax;
    if (tg_norm_axis(axis, x->ndim, &ax) != TG_OK)
        return tg_op_fail(&c);
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    tg_tensor *xc = y ? tg_contiguous_owned(x) : NULL;
    if (!xc)
        return tg_op_fail(&c);
    tg_status st = TG_OK;
    if (tg_tensor_numel(x) == 0)
        ; /* nothing to compute */
    else if (tg_use_dnnl(x))
        st = dnnl_softmax_forward(log_, ax, xc, y);
    else
        softmax_ref(log_, ax, xc, y);
    tg_release(xc);
    if (st != TG_OK)
        return tg_op_fail(&c);
    softmax_saved *sv = tg_op_save(&c, sizeof *sv);
    if (c.record && (!sv || !(sv->y = tg_op_output_view(&c))))
        return tg_op_fail(&c);
    if (sv)
        sv->axis = ax;
    return tg_op_end(&c);
}

tg_tensor *tg_softmax(tg_tensor *x, int axis) { return softmax_op(false, x, axis); }
tg_tensor *tg_log_softmax(tg_tensor *x, int axis) { return softmax_op(true, x, axis); }

/* ---------------------------------------------------------------- backward */

static tg_status softmax_backward_common(bool log_, tg_node *node, tg_tensor *g,
                                         tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const softmax_saved *sv = node->saved;
    tg_tensor *y = sv->y;
    tg_tensor *gx = tg_tensor_new_named("softmax backward", y->dtype, y->ndim, y->shape);
    tg_tensor *gc = gx ? tg_contiguous_owned(g) : NULL;
    if (!gc) {
        tg_release(gx);
        return tg_last_status();
    }
    tg_status st = TG_OK;
    if (tg_tensor_numel(y) == 0)
        ; /* nothing to compute */
    else if (tg_use_dnnl(y))
        st = dnnl_softmax_backward(log_, sv->axis, y, gc, gx);
    else
        softmax_bwd_ref(log_, sv->axis, y, gc, gx);
    tg_release(gc);
    if (st != TG_OK) {
        tg_release(gx);
        return st;
    }
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

static tg_status softmax_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    return softmax_backward_common(false, node, g, gin);
}

static tg_status log_softmax_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    return softmax_backward_common(true, node, g, gin);
}

/* DOT detail: "axis 1". */
static void softmax_describe(const tg_node *node, char *buf, size_t n)
{
    const softmax_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (sv && !node->released)
        snprintf(buf, n, "axis %d", sv->axis);
}

const tg_op_vtable tg_op_softmax_vtable = {"softmax", softmax_backward, softmax_free,
                                           softmax_describe, 0,
                                           TG_OP_ALL_INPUTS /* reads its saved output */};
const tg_op_vtable tg_op_log_softmax_vtable = {"log_softmax", log_softmax_backward,
                                               softmax_free, softmax_describe, 0,
                                               TG_OP_ALL_INPUTS /* reads its saved output */};
