/* ops/dense.c -- the fully connected layer.
 *
 * x of rank >= 2 is read as X (N, in) with in = the product of its trailing
 * extents (a view of the contiguous data, as Keras's Flatten lays it out);
 * W is (out, in), b (out):
 *   forward:  Y = X W^T + b                  Y[n,o] = b[o] + sum_i X[n,i] W[o,i]
 *   backward: dL/dX = G W                    dL/dX[n,i] = sum_o G[n,o] W[o,i]
 *             dL/dW = G^T X                  dL/dW[o,i] = sum_n G[n,o] X[n,i]
 *             dL/db = sum over rows of G     dL/db[o]   = sum_n G[n,o]
 * dL/dx is dL/dX reshaped to x's shape. f32 runs on oneDNN inner_product
 * (forward_training, backward_data, backward_weights); f64, or the reference
 * backend, runs the loops below. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/dnnl_impl.h"

/* Saved for backward: which backend the forward ran on. */
typedef struct dense_params {
    bool dnnl;
} dense_params;

typedef struct dense_geom {
    int64_t n, in, out;
    bool bias;
} dense_geom;

static tg_status dense_infer(const char *who, const tg_tensor *x, const tg_tensor *w,
                             const tg_tensor *b, dense_geom *g)
{
    char sx[96], sw[96], sb[96];
    tg_status st;
    if ((st = tg_check_float(who, "input", x)) != TG_OK ||
        (st = tg_check_float(who, "weight", w)) != TG_OK ||
        (b && (st = tg_check_float(who, "bias", b)) != TG_OK))
        return st;
    tg_shape_str(sx, sizeof sx, x->ndim, x->shape);
    tg_shape_str(sw, sizeof sw, w->ndim, w->shape);
    if (x->ndim < 2)
        return tg_error(TG_ERR_SHAPE, "%s: input must have rank >= 2 (N, features...), got %s",
                        who, sx);
    if (w->ndim != 2)
        return tg_error(TG_ERR_SHAPE, "%s: weight must be 2-D (out, in), got %s", who, sw);
    if ((st = tg_check_same_dtype(who, x, w)) != TG_OK ||
        (b && (st = tg_check_same_dtype(who, x, b)) != TG_OK))
        return st;
    g->n = x->shape[0];
    g->in = tg_shape_numel(x->ndim - 1, x->shape + 1);
    g->out = w->shape[0];
    g->bias = b != NULL;
    if (g->in != w->shape[1])
        return tg_error(TG_ERR_SHAPE,
                        "%s: input %s has %lld features per row but weight %s expects %lld",
                        who, sx, (long long)g->in, sw, (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != g->out))
        return tg_error(TG_ERR_SHAPE,
                        "%s: bias must have shape [%lld] (one per output of weight %s), got %s",
                        who, (long long)g->out, sw,
                        tg_shape_str(sb, sizeof sb, b->ndim, b->shape));
    if (g->in == 0 || g->out == 0)
        return tg_error(TG_ERR_SHAPE, "%s: weight %s is empty", who, sw);
    return TG_OK;
}

/* ---------------------------------------------------------------- oneDNN */

static void dense_mds(const dense_geom *g, dnnl_memory_desc_t *xm, dnnl_memory_desc_t *wm,
                      dnnl_memory_desc_t *bm, dnnl_memory_desc_t *ym)
{
    int64_t xd[] = {g->n, g->in}, wd[] = {g->out, g->in}, bd[] = {g->out};
    int64_t yd[] = {g->n, g->out};
    tg_dnnl_md_plain(xm, 2, xd);
    tg_dnnl_md_plain(wm, 2, wd);
    tg_dnnl_md_plain(bm, 1, bd);
    tg_dnnl_md_plain(ym, 2, yd);
}

/* Every layout is plain: X (N, in), W (out, in), Y (N, out). Letting oneDNN pick
 * blocked weights (brgemm) was measured on 5408 -> 128 (apps/bench, 2 cores): not
 * faster at batch 32 nor on one thread, at best ~20% faster at batch 128 before
 * paying a weight reorder per update and a reorder of dL/dW back to plain per
 * step, so plain gemm it is. Lock held. */
static tg_dnnl_entry *dense_entry(tg_dnnl_kind kind, const dense_geom *g, const char *who)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, kind);
    int64_t v[] = {g->n, g->in, g->out, g->bias};
    tg_dnnl_key_add_n(&k, (int)(sizeof v / sizeof v[0]), v);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    const_dnnl_primitive_desc_t hint = NULL;
    if (kind != TG_DNNL_IP_FWD) {
        tg_dnnl_entry *f = dense_entry(TG_DNNL_IP_FWD, g, who);
        if (!f)
            return NULL;
        hint = f->pd;
    }
    dnnl_memory_desc_t xm, wm, bm, ym;
    dense_mds(g, &xm, &wm, &bm, &ym);
    dnnl_inner_product_desc_t d;
    dnnl_status_t st;
    if (kind == TG_DNNL_IP_FWD)
        st = dnnl_inner_product_forward_desc_init(&d, dnnl_forward_training, &xm, &wm,
                                                  g->bias ? &bm : NULL, &ym);
    else if (kind == TG_DNNL_IP_BWD_DATA)
        st = dnnl_inner_product_backward_data_desc_init(&d, &xm, &wm, &ym);
    else
        st = dnnl_inner_product_backward_weights_desc_init(&d, &xm, &wm,
                                                           g->bias ? &bm : NULL, &ym);
    if (st != dnnl_success) {
        tg_error(TG_ERR_BACKEND, "%s: oneDNN inner product descriptor: %d", who, (int)st);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, hint, who);
}

enum { SLOT_X, SLOT_Y, SLOT_DIFF_W, SLOT_DIFF_B };

static tg_status dense_fwd_dnnl(const dense_geom *g, const tg_tensor *x, const tg_tensor *w,
                                const tg_tensor *b, tg_tensor *y)
{
    const char *who = "tg_dense";
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t xm, wm, bm, ym;
    dense_mds(g, &xm, &wm, &bm, &ym);
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_lock();
    tg_dnnl_entry *e = dense_entry(TG_DNNL_IP_FWD, g, who);
    if (!e)
        goto out;
    const dnnl_memory_desc_t *ww = tg_dnnl_md(e, dnnl_query_weights_md);
    const dnnl_memory_desc_t *bw = b ? dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 1) : NULL;
    const dnnl_memory_desc_t *xw = tg_dnnl_md(e, dnnl_query_src_md);
    const dnnl_memory_desc_t *yw = tg_dnnl_md(e, dnnl_query_dst_md);
    const void *xp = tg_dnnl_input_as(xw, &xm, tg_tensor_data(x), SLOT_X, who);
    const void *wp = xp ? tg_dnnl_weights_as(w, &wm, ww, who) : NULL;
    void *yp = wp ? tg_dnnl_output_buf(yw, &ym, tg_tensor_data(y), SLOT_Y, who) : NULL;
    if (!yp)
        goto out;
    tg_dnnl_args args;
    tg_dnnl_args_init(&args);
    tg_dnnl_arg(&args, DNNL_ARG_SRC, xw, xp);
    tg_dnnl_arg(&args, DNNL_ARG_WEIGHTS, ww, wp);
    if (b)
        tg_dnnl_arg(&args, DNNL_ARG_BIAS, bw, tg_tensor_data(b));
    tg_dnnl_arg(&args, DNNL_ARG_DST, yw, yp);
    rc = tg_dnnl_exec(e, &args, who);
    if (rc == TG_OK)
        rc = tg_dnnl_output_finish(yw, yp, &ym, tg_tensor_data(y), who);
out:
    tg_dnnl_unlock();
    return rc;
}

static tg_status dense_bwd_data_dnnl(const dense_geom *g, const tg_tensor *w,
                                     const tg_tensor *gy, tg_tensor *gx)
{
    const char *who = "tg_dense backward (data)";
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t xm, wm, bm, ym;
    dense_mds(g, &xm, &wm, &bm, &ym);
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_lock();
    tg_dnnl_entry *e = dense_entry(TG_DNNL_IP_BWD_DATA, g, who);
    if (!e)
        goto out;
    const dnnl_memory_desc_t *ww = tg_dnnl_md(e, dnnl_query_weights_md);
    const dnnl_memory_desc_t *xw = tg_dnnl_md(e, dnnl_query_diff_src_md);
    const dnnl_memory_desc_t *yw = tg_dnnl_md(e, dnnl_query_diff_dst_md);
    const void *gyp = tg_dnnl_input_as(yw, &ym, tg_tensor_data(gy), SLOT_Y, who);
    const void *wp = gyp ? tg_dnnl_weights_as(w, &wm, ww, who) : NULL;
    void *gxp = wp ? tg_dnnl_output_buf(xw, &xm, tg_tensor_data(gx), SLOT_X, who) : NULL;
    if (!gxp)
        goto out;
    tg_dnnl_args args;
    tg_dnnl_args_init(&args);
    tg_dnnl_arg(&args, DNNL_ARG_DIFF_DST, yw, gyp);
    tg_dnnl_arg(&args, DNNL_ARG_WEIGHTS, ww, wp);
    tg_dnnl_arg(&args, DNNL_ARG_DIFF_SRC, xw, gxp);
    rc = tg_dnnl_exec(e, &args, who);
    if (rc == TG_OK)
        rc = tg_dnnl_output_finish(xw, gxp, &xm, tg_tensor_data(gx), who);
out:
    tg_dnnl_unlock();
    return rc;
}

/* gb may be NULL when the layer has no bias. */
static tg_status dense_bwd_weights_dnnl(const dense_geom *g, const tg_tensor *x,
                                        const tg_tensor *gy, tg_tensor *gw, tg_tensor *gb)
{
    const char *who = "tg_dense backward (weights)";
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t xm, wm, bm, ym;
    dense_mds(g, &xm, &wm, &bm, &ym);
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_lock();
    tg_dnnl_entry *e = dense_entry(TG_DNNL_IP_BWD_WEIGHTS, g, who);
    if (!e)
        goto out;
    const dnnl_memory_desc_t *xw = tg_dnnl_md(e, dnnl_query_src_md);
    const dnnl_memory_desc_t *ww = tg_dnnl_md(e, dnnl_query_diff_weights_md);
    const dnnl_memory_desc_t *yw = tg_dnnl_md(e, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *bw = g->bias
        ? dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_weights_md, 1) : NULL;
    const void *xp = tg_dnnl_input_as(xw, &xm, tg_tensor_data(x), SLOT_X, who);
    const void *gyp = xp ? tg_dnnl_input_as(yw, &ym, tg_tensor_data(gy), SLOT_Y, who) : NULL;
    void *gwp = gyp ? tg_dnnl_output_buf(ww, &wm, tg_tensor_data(gw), SLOT_DIFF_W, who) : NULL;
    void *gbp = NULL;
    if (!gwp)
        goto out;
    if (g->bias && !(gbp = tg_dnnl_output_buf(bw, &bm, tg_tensor_data(gb), SLOT_DIFF_B, who)))
        goto out;
    tg_dnnl_args args;
    tg_dnnl_args_init(&args);
    tg_dnnl_arg(&args, DNNL_ARG_SRC, xw, xp);
    tg_dnnl_arg(&args, DNNL_ARG_DIFF_DST, yw, gyp);
    tg_dnnl_arg(&args, DNNL_ARG_DIFF_WEIGHTS, ww, gwp);
    if (g->bias)
        tg_dnnl_arg(&args, DNNL_ARG_DIFF_BIAS, bw, gbp);
    rc = tg_dnnl_exec(e, &args, who);
    if (rc == TG_OK)
        rc = tg_dnnl_output_finish(ww, gwp, &wm, tg_tensor_data(gw), who);
    if (rc == TG_OK && g->bias)
        rc = tg_dnnl_output_finish(bw, gbp, &bm, tg_tensor_data(gb), who);
out:
    tg_dnnl_unlock();
    return rc;
}

/* ---------------------------------------------------------------- reference */

static void dense_fwd_ref(const dense_geom *g, const tg_tensor *x, const tg_tensor *w,
                          const tg_tensor *b, tg_tensor *y)
{
    bool f64 = x->dtype == TG_F64;
    const void *xp = tg_tensor_data(x), *wp = tg_tensor_data(w);
    const void *bp = b ? tg_tensor_data(b) : NULL;
    void *yp = tg_tensor_data(y);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->out; o++) {
            double acc = bp ? tg_ref_ld(bp, o, f64) : 0.0;
            for (int64_t i = 0; i < g->in; i++)
                acc += tg_ref_ld(xp, n * g->in + i, f64) * tg_ref_ld(wp, o * g->in + i, f64);
            tg_ref_st(yp, n * g->out + o, f64, acc);
        }
}

static void dense_bwd_data_ref(const dense_geom *g, const tg_tensor *w, const tg_tensor *gy,
                               tg_tensor *gx)
{
    bool f64 = gy->dtype == TG_F64;
    const void *wp = tg_tensor_data(w), *gyp = tg_tensor_data(gy);
    void *gxp = tg_tensor_data(gx);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t i = 0; i < g->in; i++) {
            double acc = 0.0;
            for (int64_t o = 0; o < g->out; o++)
                acc += tg_ref_ld(gyp, n * g->out + o, f64) * tg_ref_ld(wp, o * g->in + i, f64);
            tg_ref_st(gxp, n * g->in + i, f64, acc);
        }
}

static void dense_bwd_weights_ref(const dense_geom *g, const tg_tensor *x, const tg_tensor *gy,
                                  tg_tensor *gw, tg_tensor *gb)
{
    bool f64 = gy->dtype == TG_F64;
    const void *xp = tg_tensor_data(x), *gyp = tg_tensor_data(gy);
    void *gwp = tg_tensor_data(gw);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < g->out; o++)
        for (int64_t i = 0; i < g->in; i++) {
            double acc = 0.0;
            for (int64_t n = 0; n < g->n; n++)
                acc += tg_ref_ld(gyp, n * g->out + o, f64) * tg_ref_ld(xp, n * g->in + i, f64);
            tg_ref_st(gwp, o * g->in + i, f64, acc);
        }
    if (!gb)
        return;
    void *gbp = tg_tensor_data(gb);
    for (int64_t o = 0; o < g->out; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < g->n; n++)
            acc += tg_ref_ld(gyp, n * g->out + o, f64);
        tg_ref_st(gbp, o, f64, acc);
    }
}

/* ---------------------------------------------------------------- the op */

tg_tensor *tg_dense(tg_tensor *x, tg_tensor *w, tg_tensor *b)
{
    static const char who[] = "tg_dense";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    if (!w)
        return tg_null_arg(who, "w"), NULL;
    dense_geom g;
    if (dense_infer(who, x, w, b, &g) != TG_OK)
        return NULL;
    bool dnnl = tg_use_dnnl(x);
    tg_tensor *y = tg_tensor_new_owned(who, x->dtype, 2, (const int64_t[]){g.n, g.out});
    if (!y)
        return NULL;
    tg_status st = TG_OK;
    if (g.n > 0) {
        /* contiguous x is the (N, in) matrix as it lies in memory: the flatten is free */
        tg_tensor *xc = tg_contiguous_owned(x), *wc = tg_contiguous_owned(w);
        tg_tensor *bc = b ? tg_contiguous_owned(b) : NULL;
        if (!xc || !wc || (b && !bc))
            st = tg_last_status();
        else if (dnnl)
            st = dense_fwd_dnnl(&g, xc, wc, bc, y);
        else
            dense_fwd_ref(&g, xc, wc, bc, y);
        tg_release(xc);
        tg_release(wc);
        tg_release(bc);
    }
    if (st != TG_OK) {
        tg_release(y);
        return NULL;
    }
    tg_tensor *in[3] = {x, w, b};
    int n_in = b ? 3 : 2;
    bool record = tg_autograd_should_record(in, n_in);
    dense_params *p = NULL;
    if (record) {
        p = malloc(sizeof *p);
        if (!p) {
            tg_release(y);
            return tg_error(TG_ERR_NOMEM, "%s: out of memory", who), NULL;
        }
        p->dnnl = dnnl;
    }
    return tg_op_finish(y, record, &tg_op_dense_vtable, in, n_in, p);
}

static tg_status dense_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    static const char who[] = "tg_dense backward";
    const dense_params *p = node->saved;
    tg_tensor *x = node->inputs[0], *w = node->inputs[1];
    tg_tensor *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    dense_geom g;
    tg_status st = dense_infer(who, x, w, b, &g);
    if (st != TG_OK)
        return st;
    bool need_x = tg_node_needs_grad(node, 0);
    bool need_wb = tg_node_needs_grad(node, 1) || (b && tg_node_needs_grad(node, 2));
    tg_tensor *gy = tg_contiguous_owned(grad_out);
    tg_tensor *xc = need_wb ? tg_contiguous_owned(x) : NULL;
    tg_tensor *wc = need_x ? tg_contiguous_owned(w) : NULL;
    tg_tensor *gx = need_x ? tg_tensor_new_owned(who, x->dtype, x->ndim, x->shape) : NULL;
    tg_tensor *gw = need_wb ? tg_tensor_new_owned(who, w->dtype, 2, w->shape) : NULL;
    tg_tensor *gb = need_wb && b ? tg_tensor_new_owned(who, b->dtype, 1, b->shape) : NULL;
    if (!gy || (need_wb && (!xc || !gw || (b && !gb))) || (need_x && (!wc || !gx))) {
        st = tg_last_status();
        goto out;
    }
    if (need_x && g.n > 0) {
        if (p->dnnl)
            st = dense_bwd_data_dnnl(&g, wc, gy, gx);
        else
            dense_bwd_data_ref(&g, wc, gy, gx);
    }
    if (st == TG_OK && need_wb) {
        if (g.n == 0) {
            st = tg_tensor_fill(gw, 0.0);
            if (st == TG_OK && gb)
                st = tg_tensor_fill(gb, 0.0);
        } else if (p->dnnl) {
            st = dense_bwd_weights_dnnl(&g, xc, gy, gw, gb);
        } else {
            dense_bwd_weights_ref(&g, xc, gy, gw, gb);
        }
    }
    if (st == TG_OK) {
        if (need_x)
            grad_in[0] = tg_scoped(tg_retain(gx));
        if (tg_node_needs_grad(node, 1))
            grad_in[1] = tg_scoped(tg_retain(gw));
        if (b && tg_node_needs_grad(node, 2))
            grad_in[2] = tg_scoped(tg_retain(gb));
    }
out:
    tg_release(gy);
    tg_release(xc);
    tg_release(wc);
    tg_release(gx);
    tg_release(gw);
    tg_release(gb);
    return st;
}

/* "5408->128" */
static void dense_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *w = node->inputs[1];
    snprintf(buf, n, "%lld->%lld", (long long)w->shape[1], (long long)w->shape[0]);
}

const tg_op_vtable tg_op_dense_vtable = {
    .name = "dense",
    .backward = dense_backward,
    .free_saved = NULL,
    .describe = dense_describe,
    .gradcheck_hints = 0,
};
