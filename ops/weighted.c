/* ops/weighted.c -- what conv2d.c and dense.c share: the forward and backward of
 * an op y = f(x, w, b) around its kernels (contiguous inputs, output and gradient
 * allocation, leaf gradients written in place, the empty batch), on oneDNN with
 * the op's cached primitives or on its reference loops. No maths of its own. */
#include <stdio.h>

#include "ops/weighted_impl.h"

/* Runs op's primitive of kind for geom on io, with the glue locked. */
static tg_status weighted_run(const tg_weighted_op *op, tg_dnnl_kind kind, const void *geom,
                              const tg_dnnl_io *io, int n)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    tg_dnnl_lock();
    tg_dnnl_entry *e = op->get(kind, geom);
    tg_status rc = e ? tg_dnnl_exec_tensors(e, io, n) : tg_last_status();
    tg_dnnl_unlock();
    return rc;
}

/* Temporary buffer slots of the weighted ops' arguments that may change layout. */
enum { W_SLOT_X, W_SLOT_Y, W_SLOT_BIAS, W_SLOT_DIFF_W, W_SLOT_DIFF_B };

typedef struct weighted_mds {
    dnnl_memory_desc_t x, w, b, y;
} weighted_mds;

static tg_status weighted_dnnl_forward(const tg_weighted_op *op, const void *geom,
                                       const tg_tensor *x, const tg_tensor *w,
                                       const tg_tensor *b, tg_tensor *y)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0, TG_DNNL_IN, &m.x, x, W_SLOT_X},
        {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, TG_DNNL_WEIGHTS, &m.w, w, 0},
        {DNNL_ARG_BIAS, dnnl_query_weights_md, 1, TG_DNNL_IN, &m.b, b, W_SLOT_BIAS},
        {DNNL_ARG_DST, dnnl_query_dst_md, 0, TG_DNNL_OUT, &m.y, y, W_SLOT_Y},
    };
    return weighted_run(op, op->fwd, geom, io, 4);
}

static tg_status weighted_dnnl_backward_data(const tg_weighted_op *op, const void *geom,
                                             const tg_tensor *w, const tg_tensor *gy,
                                             tg_tensor *gx)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, TG_DNNL_IN, &m.y, gy, W_SLOT_Y},
        {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, TG_DNNL_WEIGHTS, &m.w, w, 0},
        {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, TG_DNNL_OUT, &m.x, gx, W_SLOT_X},
    };
    return weighted_run(op, op->bwd_data, geom, io, 3);
}

static tg_status weighted_dnnl_backward_weights(const tg_weighted_op *op, const void *geom,
                                                const tg_tensor *x, const tg_tensor *gy,
                                                tg_tensor *gw, tg_tensor *gb)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0, TG_DNNL_IN, &m.x, x, W_SLOT_X},
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, TG_DNNL_IN, &m.y, gy, W_SLOT_Y},
        {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, TG_DNNL_OUT, &m.w, gw,
         W_SLOT_DIFF_W},
        {DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, TG_DNNL_OUT, &m.b, gb,
         W_SLOT_DIFF_B},
    };
    return weighted_run(op, op->bwd_weights, geom, io, 4);
}

tg_status tg_weighted_forward(const tg_weighted_op *op, const void *geom, bool dnnl,
                              tg_tensor *x, tg_tensor *w, tg_tensor *b, tg_tensor *y)
{
    if (tg_tensor_numel(y) == 0)
        return TG_OK;
    tg_tensor *xc = tg_contiguous_layout_owned(x, dnnl), *wc = tg_contiguous_owned(w);
    tg_tensor *bc = b ? tg_contiguous_owned(b) : NULL;
    tg_status st = TG_OK;
    if (!xc || !wc || (b && !bc))
        st = tg_last_status();
    else if (dnnl)
        st = weighted_dnnl_forward(op, geom, xc, wc, bc, y);
    else
        op->ref_forward(geom, xc, wc, bc, y);
    tg_release(xc);
    tg_release(wc);
    tg_release(bc);
    return st;
}

tg_status tg_weighted_backward(const tg_weighted_op *op, const void *geom, bool dnnl,
                               tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    char who[64], who_data[96], who_weights[96];
    snprintf(who, sizeof who, "%s backward", op->name);
    snprintf(who_data, sizeof who_data, "%s (data)", who);
    snprintf(who_weights, sizeof who_weights, "%s (weights)", who);
    tg_tensor *x = node->inputs[0], *w = node->inputs[1];
    tg_tensor *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    bool need_x = tg_node_needs_grad(node, 0);
    bool need_wb = tg_node_needs_grad(node, 1) || (b && tg_node_needs_grad(node, 2));
    tg_status st = TG_OK;
    tg_tensor *gy = tg_contiguous_layout_owned(grad_out, dnnl);
    tg_tensor *xc = need_wb ? tg_contiguous_layout_owned(x, dnnl) : NULL;
    tg_tensor *wc = need_x ? tg_contiguous_owned(w) : NULL;
    tg_tensor *gx = need_x ? tg_tensor_new_owned(x->dtype, x->ndim, x->shape) : NULL;
    /* Weight and bias gradients go straight into the leaves' zeroed .grad when
     * the engine allows it (no copy afterwards), else into new tensors. */
    tg_tensor *cw = need_wb ? tg_node_claim_leaf_grad(node, 1) : NULL;
    tg_tensor *cb = need_wb && b ? tg_node_claim_leaf_grad(node, 2) : NULL;
    tg_tensor *gw = !need_wb ? NULL
                    : cw ? tg_retain(cw) : tg_tensor_new_owned(w->dtype, w->ndim, w->shape);
    tg_tensor *gb = !need_wb || !b ? NULL
                    : cb ? tg_retain(cb) : tg_tensor_new_owned(b->dtype, 1, b->shape);
    if (!gy || (need_wb && (!xc || !gw || (b && !gb))) || (need_x && (!wc || !gx))) {
        st = tg_last_status();
        goto out;
    }
    /* An empty batch: no term reaches any gradient. */
    bool empty = tg_tensor_numel(gy) == 0;
    if (need_x) {
        if (empty) {
            st = tg_tensor_fill(gx, 0.0);
        } else if (dnnl) {
            const char *prev = tg_error_enter(who_data);
            st = weighted_dnnl_backward_data(op, geom, wc, gy, gx);
            tg_error_leave(prev);
        } else {
            op->ref_backward_data(geom, wc, gy, gx);
        }
    }
    if (st == TG_OK && need_wb) {
        if (empty) {
            st = tg_tensor_fill(gw, 0.0);
            if (st == TG_OK && gb)
                st = tg_tensor_fill(gb, 0.0);
        } else if (dnnl) {
            const char *prev = tg_error_enter(who_weights);
            st = weighted_dnnl_backward_weights(op, geom, xc, gy, gw, gb);
            tg_error_leave(prev);
        } else {
            op->ref_backward_weights(geom, xc, gy, gw, gb);
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
    if (st != TG_OK) { /* claimed gradients may be half written: zero again */
        tg_node_unclaim_leaf_grad(cw);
        tg_node_unclaim_leaf_grad(cb);
    }
    tg_release(gy);
    tg_release(xc);
    tg_release(wc);
    tg_release(gx);
    tg_release(gw);
    tg_release(gb);
    return st;
}

