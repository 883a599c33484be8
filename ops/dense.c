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
 * backend, runs the loops below. The plumbing around the kernels is
 * tg_weighted_forward/backward (ops/weighted.c), shared with conv2d. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/weighted_impl.h"

/* Saved for backward: which backend the forward ran on. */
typedef struct dense_params {
    bool dnnl;
} dense_params;

typedef struct dense_geom {
    int64_t n, in, out;
    bool bias;
} dense_geom;

static tg_status dense_infer(const tg_tensor *x, const tg_tensor *w,
                             const tg_tensor *b, dense_geom *g)
{
    char sx[96], sw[96], sb[96];
    tg_status st;
    if ((st = tg_check_float("input", x)) != TG_OK ||
        (st = tg_check_float("weight", w)) != TG_OK ||
        (b && (st = tg_check_float("bias", b)) != TG_OK))
        return st;
    tg_shape_str(sx, sizeof sx, x->ndim, x->shape);
    tg_shape_str(sw, sizeof sw, w->ndim, w->shape);
    if (x->ndim < 1)
        return tg_error_here(TG_ERR_SHAPE,
                             "input must have rank >= 1 ((in), or (N, features...)), got %s",
                             sx);
    if (w->ndim != 2)
        return tg_error_here(TG_ERR_SHAPE, "weight must be 2-D (out, in), got %s", sw);
    if ((st = tg_check_same_dtype(x, w)) != TG_OK ||
        (b && (st = tg_check_same_dtype(x, b)) != TG_OK))
        return st;
    g->n = x->shape[0];
    g->in = tg_shape_numel(x->ndim - 1, x->shape + 1);
    g->out = w->shape[0];
    g->bias = b != NULL;
    if (g->in != w->shape[1])
        return tg_error_here(TG_ERR_SHAPE,
                             "input %s has %lld features per row but weight %s expects %lld", sx,
                             (long long)g->in, sw, (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != g->out))
        return tg_error_here(TG_ERR_SHAPE,
                             "bias must have shape [%lld] (one per output of weight %s), got %s",
                             (long long)g->out, sw,
                             tg_shape_str(sb, sizeof sb, b->ndim, b->shape));
    if (g->in == 0 || g->out == 0)
        return tg_error_here(TG_ERR_SHAPE, "weight %s is empty", sw);
    return TG_OK;
}

/* ---------------------------------------------------------------- oneDNN */

/* The plain layouts of X (N, in), W (out, in), b (out), Y (N, out). */
static void dense_plain_mds(const void *geom, dnnl_memory_desc_t *x, dnnl_memory_desc_t *w,
                            dnnl_memory_desc_t *b, dnnl_memory_desc_t *y)
{
    const dense_geom *g = geom;
    tg_dnnl_md_plain(x, 2, (const int64_t[]){g->n, g->in});
    tg_dnnl_md_plain(w, 2, (const int64_t[]){g->out, g->in});
    tg_dnnl_md_plain(b, 1, (const int64_t[]){g->out});
    tg_dnnl_md_plain(y, 2, (const int64_t[]){g->n, g->out});
}

/* The cached primitive of kind for the dense_geom geom (a tg_weighted_getter). Every
 * layout is plain: blocked weights (brgemm) would need a weight reorder per update
 * and a reorder of dL/dW back to plain per step, more than their kernel gains (on
 * 5408 -> 128 nothing at batch 32 or on one thread, ~20% at batch 128;
 * benchmarks/op_overhead compares). Lock held. */
static tg_dnnl_entry *dense_entry(tg_dnnl_kind kind, const void *geom)
{
    const dense_geom *g = geom;
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, kind);
    int64_t v[] = {g->n, g->in, g->out, g->bias};
    tg_dnnl_key_add_n(&k, (int)(sizeof v / sizeof v[0]), v);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    const_dnnl_primitive_desc_t hint = NULL;
    if (kind != TG_DNNL_IP_FWD) {
        tg_dnnl_entry *f = dense_entry(TG_DNNL_IP_FWD, g);
        if (!f)
            return NULL;
        hint = f->pd;
    }
    dnnl_memory_desc_t xm, wm, bm, ym;
    dense_plain_mds(g, &xm, &wm, &bm, &ym);
    dnnl_inner_product_desc_t d;
    dnnl_status_t st;
    if (kind == TG_DNNL_IP_FWD)
        st = dnnl_inner_product_forward_desc_init(&d, dnnl_forward_training, &xm, &wm,
                                                  g->bias ? &bm : NULL, &ym);
    else if (kind == TG_DNNL_IP_BWD_DATA)
        st = dnnl_inner_product_backward_data_desc_init(&d, &xm, &wm, &ym);
    else
        st = dnnl_inner_product_backward_weights_desc_init(&d, &xm, &wm, g->bias ? &bm : NULL,
                                                           &ym);
    if (st != dnnl_success) {
        tg_dnnl_refused("inner product", st, "input (%lld, %lld), weight [%lld, %lld]",
                        (long long)g->n, (long long)g->in, (long long)g->out, (long long)g->in);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, hint);
}

/* ---------------------------------------------------------------- reference */

static void dense_fwd_ref(const void *geom, const tg_tensor *x, const tg_tensor *w,
                          const tg_tensor *b, tg_tensor *y)
{
    const dense_geom *g = geom;
    bool f64 = x->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x), *wp = tg_tensor_ptr(w);
    const void *bp = b ? tg_tensor_ptr(b) : NULL;
    void *yp = tg_tensor_ptr(y);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->out; o++) {
            double acc = bp ? tg_ref_ld(bp, o, f64) : 0.0;
            for (int64_t i = 0; i < g->in; i++)
                acc += tg_ref_ld(xp, n * g->in + i, f64) * tg_ref_ld(wp, o * g->in + i, f64);
            tg_ref_st(yp, n * g->out + o, f64, acc);
        }
}

static void dense_bwd_data_ref(const void *geom, const tg_tensor *w, const tg_tensor *gy,
                               tg_tensor *gx)
{
    const dense_geom *g = geom;
    bool f64 = gy->dtype == TG_F64;
    const void *wp = tg_tensor_ptr(w), *gyp = tg_tensor_ptr(gy);
    void *gxp = tg_tensor_ptr(gx);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t i = 0; i < g->in; i++) {
            double acc = 0.0;
            for (int64_t o = 0; o < g->out; o++)
                acc += tg_ref_ld(gyp, n * g->out + o, f64) * tg_ref_ld(wp, o * g->in + i, f64);
            tg_ref_st(gxp, n * g->in + i, f64, acc);
        }
}

static void dense_bwd_weights_ref(const void *geom, const tg_tensor *x, const tg_tensor *gy,
                                  tg_tensor *gw, tg_tensor *gb)
{
    const dense_geom *g = geom;
    bool f64 = gy->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x), *gyp = tg_tensor_ptr(gy);
    void *gwp = tg_tensor_ptr(gw);
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
    void *gbp = tg_tensor_ptr(gb);
    for (int64_t o = 0; o < g->out; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < g->n; n++)
            acc += tg_ref_ld(gyp, n * g->out + o, f64);
        tg_ref_st(gbp, o, f64, acc);
    }
}

/* ---------------------------------------------------------------- the op */

/* contiguous x is the (N, in) matrix as it lies in memory: the flatten is free */
static const tg_weighted_op dense_op = {
    .name = "tg_dense",
    .ref_forward = dense_fwd_ref,
    .ref_backward_data = dense_bwd_data_ref,
    .ref_backward_weights = dense_bwd_weights_ref,
    .plain_mds = dense_plain_mds,
    .get = dense_entry,
    .fwd = TG_DNNL_IP_FWD,
    .bwd_data = TG_DNNL_IP_BWD_DATA,
    .bwd_weights = TG_DNNL_IP_BWD_WEIGHTS,
};

tg_tensor *tg_dense(tg_tensor *x, tg_tensor *w, tg_tensor *b)
{
    static const char who[] = "tg_dense";
    if (x && x->ndim == 1 && w && w->ndim == 2) {
        /* one sample (in): a batch of one, recorded as unsqueeze, dense, reshape */
        if (x->shape[0] != w->shape[1]) {
            char sx[96], sw[96];
            return tg_error(TG_ERR_SHAPE, "%s: input %s has %lld features but weight %s "
                            "expects %lld", who, tg_shape_str(sx, sizeof sx, 1, x->shape),
                            (long long)x->shape[0],
                            tg_shape_str(sw, sizeof sw, 2, w->shape),
                            (long long)w->shape[1]), NULL;
        }
        tg_tensor *y = tg_dense(tg_unsqueeze(x, 0), w, b);
        return y ? tg_reshape(y, 1, &w->shape[0]) : NULL;
    }
    tg_tensor *in[3] = {x, w, b};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_dense_vtable, who, in, b ? 3 : 2, "x w b", 0))
        return NULL;
    dense_geom g;
    if (dense_infer(x, w, b, &g) != TG_OK)
        return tg_op_fail(&c);
    bool dnnl = tg_use_dnnl(x);
    tg_tensor *y = tg_op_output(&c, x->dtype, 2, (const int64_t[]){g.n, g.out});
    if (!y || tg_weighted_forward(&dense_op, &g, dnnl, x, w, b, y) != TG_OK)
        return tg_op_fail(&c);
    dense_params *p = tg_op_save(&c, sizeof *p);
    if (c.record && !p)
        return tg_op_fail(&c);
    if (p)
        p->dnnl = dnnl;
    return tg_op_end(&c);
}

static tg_status dense_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    /* runs in the engine's context, "tg_dense backward" */
    const dense_params *p = node->saved;
    tg_tensor *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    dense_geom g;
    tg_status st = dense_infer(node->inputs[0], node->inputs[1], b, &g);
    if (st != TG_OK)
        return st;
    return tg_weighted_backward(&dense_op, &g, p->dnnl, node, grad_out, grad_in);
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
    .shape_only_inputs = 1u << 2, /* the bias */
};
