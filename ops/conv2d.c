/* ops/conv2d.c -- 2-D convolution (cross-correlation, as Keras and PyTorch define it).
 *
 * Forward, with OH = (H + pt + pb - dh*(KH-1) - 1) / sh + 1 (likewise OW):
 *   y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x[n,c, i*sh - pt + p*dh, j*sw - pl + q*dw]
 *   With G groups, w is (O, C/G, KH, KW) and output channel o of group o / (O/G)
 *   sums over that group's C/G input channels only (c above runs over them, w's
 *   second index is c's place in its group); G = C = O/k is depthwise.
 *   (input positions that fall in the padding contribute zero)
 * Backward, with g = dL/dy:
 *   dL/dx[n,c,h,v] = sum over (o,p,q,i,j) with i*sh - pt + p*dh = h and
 *                    j*sw - pl + q*dw = v of g[n,o,i,j] * w[o,c,p,q]
 *   dL/dw[o,c,p,q] = sum_{n,i,j} g[n,o,i,j] * x[n,c, i*sh - pt + p*dh, j*sw - pl + q*dw]
 *   dL/db[o]       = sum_{n,i,j} g[n,o,i,j]
 * With opts.relu the output is r = max(y, 0), computed by the same primitive
 * (a oneDNN post-op), and the backward first takes g to dL/dy = g * [r > 0]
 * (r > 0 exactly where y > 0), from r, which the node keeps (as a view: no
 * reference to itself), on the gradient's own buffer when nobody else holds it.
 * f32 runs on oneDNN (forward_training; backward_data and backward_weights hinted by
 * the forward descriptor); f64, or f32 on the reference backend, runs the loops
 * below. The plumbing around the kernels is tg_weighted_forward/backward
 * (ops/weighted.c), shared with dense. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/weighted_impl.h"

/* Saved for backward: the options, and which backend the forward ran on (the
 * backward runs on the same one). */
typedef struct conv_params {
    tg_conv2d_opts o;
    bool dnnl;
    tg_tensor *out;  /* owned view of the output, with opts.relu (NULL otherwise) */
} conv_params;

/* Every extent and option of one convolution, checked. */
typedef struct conv_geom {
    int64_t n, c, h, w, o, kh, kw, oh, ow;
    int64_t groups, cg, og; /* groups; input and output channels per group */
    int sh, sw, pt, pb, pl, pr, dh, dw;
    bool bias;
    bool relu;  /* fused ReLU: forward primitives only (backward ones never fuse) */
} conv_geom;

/* ---------------------------------------------------------------- shapes */

static tg_status conv_infer(const tg_tensor *x, const tg_tensor *w,
                            const tg_tensor *b, const tg_conv2d_opts *o, conv_geom *g)
{
    char sx[96], sw[96], sb[96];
    tg_status st;
    if ((st = tg_check_float("input", x)) != TG_OK ||
        (st = tg_check_float("weight", w)) != TG_OK ||
        (b && (st = tg_check_float("bias", b)) != TG_OK))
        return st;
    if (x->ndim != 4)
        return tg_error_here(TG_ERR_SHAPE, "input must be 4-D (N, C, H, W), got %s",
                             tg_shape_str(sx, sizeof sx, x->ndim, x->shape));
    if (w->ndim != 4)
        return tg_error_here(TG_ERR_SHAPE, "weight must be 4-D (O, C, KH, KW), got %s",
                             tg_shape_str(sw, sizeof sw, w->ndim, w->shape));
    if ((st = tg_check_same_dtype(x, w)) != TG_OK ||
        (b && (st = tg_check_same_dtype(x, b)) != TG_OK))
        return st;
    tg_shape_str(sx, sizeof sx, x->ndim, x->shape);
    tg_shape_str(sw, sizeof sw, w->ndim, w->shape);
    if (o->stride[0] < 1 || o->stride[1] < 1)
        return tg_error_here(TG_ERR_ARG, "stride must be >= 1, got (%d, %d) (input %s)",
                             o->stride[0], o->stride[1], sx);
    if (o->dilation[0] < 1 || o->dilation[1] < 1)
        return tg_error_here(TG_ERR_ARG, "dilation must be >= 1, got (%d, %d) (input %s)",
                             o->dilation[0], o->dilation[1], sx);
    if (o->pad[0] < 0 || o->pad[1] < 0 || o->pad[2] < 0 || o->pad[3] < 0)
        return tg_error_here(TG_ERR_ARG,
                             "padding must be >= 0, got (top %d, bottom %d, left %d, right %d)",
                             o->pad[0], o->pad[1], o->pad[2], o->pad[3]);
    if (w->shape[0] < 1 || w->shape[1] < 1 || w->shape[2] < 1 || w->shape[3] < 1)
        return tg_error_here(TG_ERR_SHAPE, "weight %s has an empty dimension", sw);
    /* Only the batch may be empty: with no rows or columns every window would lie
     * in the padding (and oneDNN reads out of bounds there). */
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return tg_error_here(TG_ERR_SHAPE,
                             "input %s has no rows or no columns (H and W must "
                             "be >= 1; only the batch may be empty)", sx);
    if (o->groups < 0)
        return tg_error_here(TG_ERR_ARG, "groups must be >= 1 (0 means 1), got %d",
                             o->groups);
    int64_t groups = o->groups > 1 ? o->groups : 1;
    if (w->shape[0] % groups != 0)
        return tg_error_here(TG_ERR_SHAPE,
                             "weight %s has %lld output channels, not a multiple of groups "
                             "%lld", sw, (long long)w->shape[0], (long long)groups);
    if (x->shape[1] != w->shape[1] * groups)
        return tg_error_here(TG_ERR_SHAPE,
                             "channel mismatch: input %s has %lld channels but weight %s "
                             "expects %lld (%lld per group, %lld group%s)", sx,
                             (long long)x->shape[1], sw, (long long)(w->shape[1] * groups),
                             (long long)w->shape[1], (long long)groups, groups == 1 ? "" : "s");
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return tg_error_here(TG_ERR_SHAPE,
                             "bias must have shape [%lld] (one per output channel of weight "
                             "%s), got %s", (long long)w->shape[0], sw,
                             tg_shape_str(sb, sizeof sb, b->ndim, b->shape));
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->o = w->shape[0];
    g->groups = groups;
    g->cg = w->shape[1];
    g->og = g->o / groups;
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->pt = o->pad[0];
    g->pb = o->pad[1];
    g->pl = o->pad[2];
    g->pr = o->pad[3];
    g->dh = o->dilation[0];
    g->dw = o->dilation[1];
    g->bias = b != NULL;
    g->relu = o->relu;
    int64_t ekh = (g->kh - 1) * g->dh + 1, ekw = (g->kw - 1) * g->dw + 1;
    int64_t ph = g->h + g->pt + g->pb, pw = g->w + g->pl + g->pr;
    if (ekh > ph || ekw > pw)
        return tg_error_here(TG_ERR_SHAPE,
                             "kernel %lldx%lld (dilation %dx%d, extent %lldx%lld) is larger "
                             "than the padded input %lldx%lld (input %s, weight %s, padding "
                             "t%d b%d l%d r%d)", (long long)g->kh, (long long)g->kw, g->dh,
                             g->dw,
                             (long long)ekh, (long long)ekw, (long long)ph, (long long)pw,
                             sx, sw,
                             g->pt, g->pb, g->pl, g->pr);
    g->oh = (ph - ekh) / g->sh + 1;
    g->ow = (pw - ekw) / g->sw + 1;
    return TG_OK;
}

/* ---------------------------------------------------------------- oneDNN */

static void conv_key(tg_dnnl_key *k, tg_dnnl_kind kind, const conv_geom *g, int variant)
{
    tg_dnnl_key_init(k, kind);
    bool relu = kind == TG_DNNL_CONV_FWD && g->relu;
    int64_t v[] = {g->n, g->c, g->h, g->w, g->o, g->kh, g->kw, g->sh, g->sw, g->pt,
                   g->pb, g->pl, g->pr, g->dh, g->dw, g->bias, relu, variant, g->groups};
    tg_dnnl_key_add_n(k, (int)(sizeof v / sizeof v[0]), v);
}

static dnnl_primitive_desc_t conv_pd(tg_dnnl_kind kind, const conv_geom *g,
                                     dnnl_format_tag_t act, dnnl_format_tag_t wt,
                                     const_dnnl_primitive_desc_t hint)
{
    /* grouped weights are (G, O/G, C/G, KH, KW): the same memory as (O, C/G, KH, KW) */
    dnnl_dims_t xd = {g->n, g->c, g->h, g->w}, wd = {g->o, g->cg, g->kh, g->kw};
    dnnl_dims_t wgd = {g->groups, g->og, g->cg, g->kh, g->kw};
    bool grouped = g->groups > 1;
    dnnl_dims_t bd = {g->o}, yd = {g->n, g->o, g->oh, g->ow};
    dnnl_dims_t strides = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1};
    dnnl_dims_t pad_l = {g->pt, g->pl}, pad_r = {g->pb, g->pr};
    dnnl_memory_desc_t xm, wm, bm, ym;
    dnnl_memory_desc_init_by_tag(&xm, 4, xd, dnnl_f32, act);
    if (grouped) /* plain grouped weights: the glue's reorders and caches are 4-D */
        dnnl_memory_desc_init_by_tag(&wm, 5, wgd, dnnl_f32, dnnl_goihw);
    else
        dnnl_memory_desc_init_by_tag(&wm, 4, wd, dnnl_f32, wt);
    dnnl_memory_desc_init_by_tag(&bm, 1, bd, dnnl_f32, dnnl_x);
    dnnl_memory_desc_init_by_tag(&ym, 4, yd, dnnl_f32, act);
    dnnl_convolution_desc_t d;
    dnnl_status_t st;
    if (kind == TG_DNNL_CONV_FWD)
        st = dnnl_dilated_convolution_forward_desc_init(
            &d, dnnl_forward_training, dnnl_convolution_direct, &xm, &wm,
            g->bias ? &bm : NULL, &ym, strides, dil, pad_l, pad_r);
    else if (kind == TG_DNNL_CONV_BWD_DATA)
        st = dnnl_dilated_convolution_backward_data_desc_init(
            &d, dnnl_convolution_direct, &xm, &wm, &ym, strides, dil, pad_l, pad_r);
    else
        st = dnnl_dilated_convolution_backward_weights_desc_init(
            &d, dnnl_convolution_direct, &xm, &wm, g->bias ? &bm : NULL, &ym, strides, dil,
            pad_l, pad_r);
    if (st != dnnl_success) {
        char sx[96], sw[96];
        tg_dnnl_refused("convolution", st,
                        "input %s, weight %s, stride %dx%d, padding t%d b%d l%d r%d, "
                        "dilation %dx%d, groups %lld",
                        tg_shape_str(sx, sizeof sx, 4, (const int64_t[]){g->n, g->c, g->h, g->w}),
                        tg_shape_str(sw, sizeof sw, 4, wd),
                        g->sh, g->sw, g->pt, g->pb, g->pl, g->pr, g->dh, g->dw,
                        (long long)g->groups);
        return NULL;
    }
    return tg_dnnl_pd_create_ex(&d, hint, kind == TG_DNNL_CONV_FWD && g->relu);
}

/* Blocked activation layouts that pad channels (1 -> 16) cost more than the
 * blocked kernels gain: the padded backward data of a one-channel input conv
 * runs about 5x slower than its plain one. */
static bool activations_padded(tg_dnnl_kind kind, dnnl_primitive_desc_t pd)
{
    dnnl_query_t a = kind == TG_DNNL_CONV_BWD_DATA ? dnnl_query_diff_src_md : dnnl_query_src_md;
    dnnl_query_t b = kind == TG_DNNL_CONV_FWD ? dnnl_query_dst_md : dnnl_query_diff_dst_md;
    return tg_dnnl_md_padded(dnnl_primitive_desc_query_md(pd, a, 0)) ||
           tg_dnnl_md_padded(dnnl_primitive_desc_query_md(pd, b, 0));
}

/* The cached primitive of kind for the conv_geom geom (a tg_weighted_getter). Layout
 * policy: with blocked layouts allowed, oneDNN chooses every layout (format any)
 * unless that pads the activations; then activations are plain and only the
 * weights are its choice. Lock held. */
static tg_dnnl_entry *conv_entry(tg_dnnl_kind kind, const void *geom)
{
    const conv_geom *g = geom;
    bool blocked = tg_dnnl_blocked_layouts();
    tg_dnnl_key k;
    conv_key(&k, kind, g, blocked);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    const_dnnl_primitive_desc_t hint = NULL;
    if (kind != TG_DNNL_CONV_FWD) {
        conv_geom plain_fwd = *g; /* the hint: the same convolution, unfused */
        plain_fwd.relu = false;
        tg_dnnl_entry *f = conv_entry(TG_DNNL_CONV_FWD, &plain_fwd);
        if (!f)
            return NULL;
        hint = f->pd;
    }
    dnnl_primitive_desc_t pd = NULL;
    if (blocked) {
        pd = conv_pd(kind, g, dnnl_format_tag_any, dnnl_format_tag_any, hint);
        if (pd && activations_padded(kind, pd)) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
        if (!pd)
            pd = conv_pd(kind, g, dnnl_nchw, dnnl_format_tag_any, hint);
    } else {
        pd = conv_pd(kind, g, dnnl_nchw, dnnl_oihw, hint);
    }
    return pd ? tg_dnnl_insert(&k, pd) : NULL;
}

/* The plain layouts of x (N, C, H, W), w (O, C, KH, KW), b (O), y (N, O, OH, OW). */
static void conv_plain_mds(const void *geom, dnnl_memory_desc_t *x, dnnl_memory_desc_t *w,
                           dnnl_memory_desc_t *b, dnnl_memory_desc_t *y)
{
    const conv_geom *g = geom;
    tg_dnnl_md_plain(x, 4, (const int64_t[]){g->n, g->c, g->h, g->w});
    if (g->groups > 1)
        tg_dnnl_md_plain(w, 5, (const int64_t[]){g->groups, g->og, g->cg, g->kh, g->kw});
    else
        tg_dnnl_md_plain(w, 4, (const int64_t[]){g->o, g->c, g->kh, g->kw});
    tg_dnnl_md_plain(b, 1, (const int64_t[]){g->o});
    tg_dnnl_md_plain(y, 4, (const int64_t[]){g->n, g->o, g->oh, g->ow});
}

/* ---------------------------------------------------------------- reference */

static void conv_fwd_ref(const void *geom, const tg_tensor *x, const tg_tensor *w,
                         const tg_tensor *b, tg_tensor *y)
{
    const conv_geom *g = geom;
    bool f64 = x->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x), *wp = tg_tensor_ptr(w);
    const void *bp = b ? tg_tensor_ptr(b) : NULL;
    void *yp = tg_tensor_ptr(y);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->o; o++)
            for (int64_t i = 0; i < g->oh; i++)
                for (int64_t j = 0; j < g->ow; j++) {
                    double acc = bp ? tg_ref_ld(bp, o, f64) : 0.0;
                    int64_t c0 = o / g->og * g->cg; /* the group's first input channel */
                    for (int64_t cl = 0; cl < g->cg; cl++)
                        for (int64_t p = 0; p < g->kh; p++) {
                            int64_t h = i * g->sh - g->pt + p * g->dh;
                            if (h < 0 || h >= g->h)
                                continue;
                            for (int64_t q = 0; q < g->kw; q++) {
                                int64_t v = j * g->sw - g->pl + q * g->dw;
                                if (v < 0 || v >= g->w)
                                    continue;
                                acc += tg_ref_ld(xp, ((n * g->c + c0 + cl) * g->h + h) * g->w + v, f64) *
                                       tg_ref_ld(wp, ((o * g->cg + cl) * g->kh + p) * g->kw + q, f64);
                            }
                        }
                    if (g->relu && acc < 0.0)
                        acc = 0.0;
                    tg_ref_st(yp, ((n * g->o + o) * g->oh + i) * g->ow + j, f64, acc);
                }
}

/* Output index i whose window reaches input row h through kernel row p, or -1. */
static inline int64_t out_index(int64_t h, int64_t p, int pad, int dil, int stride,
                                int64_t extent)
{
    int64_t t = h + pad - p * dil;
    if (t < 0 || t % stride != 0)
        return -1;
    t /= stride;
    return t < extent ? t : -1;
}

static void conv_bwd_data_ref(const void *geom, const tg_tensor *w, const tg_tensor *gy,
                              tg_tensor *gx)
{
    const conv_geom *g = geom;
    bool f64 = gy->dtype == TG_F64;
    const void *wp = tg_tensor_ptr(w), *gyp = tg_tensor_ptr(gy);
    void *gxp = tg_tensor_ptr(gx);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t c = 0; c < g->c; c++)
            for (int64_t h = 0; h < g->h; h++)
                for (int64_t v = 0; v < g->w; v++) {
                    double acc = 0.0;
                    int64_t gi = c / g->cg, cl = c % g->cg; /* group, channel in it */
                    for (int64_t o = gi * g->og; o < (gi + 1) * g->og; o++)
                        for (int64_t p = 0; p < g->kh; p++) {
                            int64_t i = out_index(h, p, g->pt, g->dh, g->sh, g->oh);
                            if (i < 0)
                                continue;
                            for (int64_t q = 0; q < g->kw; q++) {
                                int64_t j = out_index(v, q, g->pl, g->dw, g->sw, g->ow);
                                if (j < 0)
                                    continue;
                                acc += tg_ref_ld(gyp, ((n * g->o + o) * g->oh + i) * g->ow + j, f64) *
                                       tg_ref_ld(wp, ((o * g->cg + cl) * g->kh + p) * g->kw + q, f64);
                            }
                        }
                    tg_ref_st(gxp, ((n * g->c + c) * g->h + h) * g->w + v, f64, acc);
                }
}

static void conv_bwd_weights_ref(const void *geom, const tg_tensor *x, const tg_tensor *gy,
                                 tg_tensor *gw, tg_tensor *gb)
{
    const conv_geom *g = geom;
    bool f64 = gy->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x), *gyp = tg_tensor_ptr(gy);
    void *gwp = tg_tensor_ptr(gw);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < g->o; o++)
        for (int64_t cl = 0; cl < g->cg; cl++)
            for (int64_t p = 0; p < g->kh; p++)
                for (int64_t q = 0; q < g->kw; q++) {
                    double acc = 0.0;
                    int64_t c = o / g->og * g->cg + cl; /* the input channel */
                    for (int64_t n = 0; n < g->n; n++)
                        for (int64_t i = 0; i < g->oh; i++) {
                            int64_t h = i * g->sh - g->pt + p * g->dh;
                            if (h < 0 || h >= g->h)
                                continue;
                            for (int64_t j = 0; j < g->ow; j++) {
                                int64_t v = j * g->sw - g->pl + q * g->dw;
                                if (v < 0 || v >= g->w)
                                    continue;
                                acc += tg_ref_ld(gyp, ((n * g->o + o) * g->oh + i) * g->ow + j, f64) *
                                       tg_ref_ld(xp, ((n * g->c + c) * g->h + h) * g->w + v, f64);
                            }
                        }
                    tg_ref_st(gwp, ((o * g->cg + cl) * g->kh + p) * g->kw + q, f64, acc);
                }
    if (!gb)
        return;
    void *gbp = tg_tensor_ptr(gb);
    for (int64_t o = 0; o < g->o; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t k = 0; k < g->oh * g->ow; k++)
                acc += tg_ref_ld(gyp, (n * g->o + o) * g->oh * g->ow + k, f64);
        tg_ref_st(gbp, o, f64, acc);
    }
}

/* ---------------------------------------------------------------- the op */

static const tg_weighted_op conv_op = {
    .name = "tg_conv2d",
    .ref_forward = conv_fwd_ref,
    .ref_backward_data = conv_bwd_data_ref,
    .ref_backward_weights = conv_bwd_weights_ref,
    .plain_mds = conv_plain_mds,
    .get = conv_entry,
    .fwd = TG_DNNL_CONV_FWD,
    .bwd_data = TG_DNNL_CONV_BWD_DATA,
    .bwd_weights = TG_DNNL_CONV_BWD_WEIGHTS,
};

tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv2d_opts *opts)
{
    static const char who[] = "tg_conv2d";
    tg_tensor *in[3] = {x, w, b};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_conv2d_vtable, who, in, b ? 3 : 2, "x w b", 0))
        return NULL;
    tg_conv2d_opts o = opts ? *opts : (tg_conv2d_opts)TG_CONV2D_OPTS_INIT;
    conv_geom g;
    if (conv_infer(x, w, b, &o, &g) != TG_OK)
        return tg_op_fail(&c);
    bool dnnl = tg_use_dnnl(x);
    tg_tensor *y = tg_op_output(&c, x->dtype, 4, (const int64_t[]){g.n, g.o, g.oh, g.ow});
    if (!y || tg_weighted_forward(&conv_op, &g, dnnl, x, w, b, y) != TG_OK)
        return tg_op_fail(&c);
    conv_params *p = tg_op_save(&c, sizeof *p);
    if (c.record && (!p || (o.relu && !(p->out = tg_op_output_view(&c)))))
        return tg_op_fail(&c);
    if (p) {
        p->o = o;
        p->dnnl = dnnl;
    }
    return tg_op_end(&c);
}

static tg_status conv_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    /* runs in the engine's context, "tg_conv2d backward" */
    const conv_params *p = node->saved;
    tg_tensor *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    conv_geom g;
    tg_status st = conv_infer(node->inputs[0], node->inputs[1], b, &p->o, &g);
    if (st != TG_OK)
        return st;
    if (!p->o.relu)
        return tg_weighted_backward(&conv_op, &g, p->dnnl, node, grad_out, grad_in);
    /* dL/dy = g * [r > 0]: ReLU's backward taken from its output */
    bool in_place = p->dnnl && tg_grad_out_reusable(grad_out);
    tg_tensor *gy = in_place ? tg_retain(grad_out)
                             : tg_tensor_new_owned(p->out->dtype, 4, p->out->shape);
    if (!gy)
        return tg_last_status();
    if (p->dnnl) {
        st = tg_eltwise_dnnl(TG_ELT_RELU, 0.0f, 0.0f, p->out, grad_out, gy);
    } else {
        tg_tensor *rc = tg_contiguous_owned(p->out), *gc = tg_contiguous_owned(grad_out);
        if (rc && gc) {
            bool f64 = gy->dtype == TG_F64;
            const void *rp = tg_tensor_ptr(rc), *gp = tg_tensor_ptr(gc);
            void *yp = tg_tensor_ptr(gy);
            int64_t n = tg_tensor_numel(gy);
            for (int64_t k = 0; k < n; k++)
                tg_ref_st(yp, k, f64, tg_ref_ld(rp, k, f64) > 0.0 ? tg_ref_ld(gp, k, f64) : 0.0);
        } else {
            st = tg_last_status();
        }
        tg_release(rc);
        tg_release(gc);
    }
    if (st == TG_OK)
        st = tg_weighted_backward(&conv_op, &g, p->dnnl, node, gy, grad_in);
    tg_release(gy);
    return st;
}

static void conv_free(void *saved)
{
    conv_params *p = saved;
    if (!p)
        return;
    tg_release(p->out);
    free(p);
}

/* "3x3 s1 p0", with dilation and uneven padding spelled out when present. */
static void conv_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *w = node->inputs[1];
    const conv_params *p = node->saved;
    int len = snprintf(buf, n, "%lldx%lld", (long long)w->shape[2], (long long)w->shape[3]);
    if (!p || len < 0 || (size_t)len >= n)
        return;
    const tg_conv2d_opts *o = &p->o;
    char s[32], d[32], pad[48];
    if (o->stride[0] == o->stride[1])
        snprintf(s, sizeof s, " s%d", o->stride[0]);
    else
        snprintf(s, sizeof s, " s%d,%d", o->stride[0], o->stride[1]);
    if (o->pad[0] == o->pad[1] && o->pad[1] == o->pad[2] && o->pad[2] == o->pad[3])
        snprintf(pad, sizeof pad, " p%d", o->pad[0]);
    else
        snprintf(pad, sizeof pad, " p%d,%d,%d,%d", o->pad[0], o->pad[1], o->pad[2], o->pad[3]);
    d[0] = '\0';
    if (o->dilation[0] != 1 || o->dilation[1] != 1)
        snprintf(d, sizeof d, " d%d,%d", o->dilation[0], o->dilation[1]);
    char gr[24] = "";
    if (o->groups > 1)
        snprintf(gr, sizeof gr, " g%d", o->groups);
    snprintf(buf + len, n - (size_t)len, "%s%s%s%s%s", s, pad, d, gr, o->relu ? " +relu" : "");
}

const tg_op_vtable tg_op_conv2d_vtable = {
    .name = "conv2d",
    .backward = conv_backward,
    .free_saved = conv_free,
    .describe = conv_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = 1u << 2, /* the bias */
};
