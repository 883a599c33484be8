/* ops/pool.c -- 2-D max and average pooling, and their global forms.
 *
 * The window of output (i, j) covers input rows i*sh - pt .. i*sh - pt + KH - 1 and
 * columns j*sw - pl .. j*sw - pl + KW - 1, clipped to the input: padding never
 * takes part, so it must be smaller than the kernel (every window keeps an element).
 *   max:  y[n,c,i,j] = max over the window of x[n,c,h,v]
 *         dL/dx[n,c,h,v] = sum of g[n,c,i,j] over the windows whose first maximum
 *                          (row-major scan) is at (h, v)
 *   avg:  y[n,c,i,j] = (1/|W_ij|) sum over the window W_ij of x[n,c,h,v]
 *         dL/dx[n,c,h,v] = sum over the windows W_ij holding (h, v) of g[n,c,i,j] / |W_ij|
 * where |W_ij| counts the window's input elements, or with count_include_pad its
 * rows and columns within the padded input (-pt .. H + pb - 1, -pl .. W + pr - 1).
 * ceil_mode adds a last row (column) of windows that overhang the padded input at
 * the bottom (right) by eb (er) rows (columns); oneDNN runs them as that much
 * more padding, which is exact for max and for the exclude-padding average.
 * Global pooling is the window covering the whole plane, output (N, C) or
 * (N, C, 1, 1).
 * f32 runs on oneDNN pooling; max pooling's forward_training keeps oneDNN's
 * workspace (where each maximum was) in the saved state for its backward. f64, or
 * the reference backend, runs the loops here (max backward re-finds the maxima),
 * as does f32 for a count_include_pad average with ceil_mode overhang (oneDNN
 * would count the overhang as padding). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "ops/dnnl_impl.h"

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_GLOBAL_MAX, POOL_GLOBAL_AVG } pool_kind;

static bool kind_max(pool_kind k) { return k == POOL_MAX || k == POOL_GLOBAL_MAX; }
static bool kind_global(pool_kind k) { return k == POOL_GLOBAL_MAX || k == POOL_GLOBAL_AVG; }

/* Saved for backward. */
typedef struct pool_params {
    pool_kind kind;
    tg_pool2d_opts o;   /* stride already resolved (never 0); the whole plane when global */
    bool dnnl;          /* forward ran on oneDNN: backward does too */
    tg_tensor *ws;      /* owned: oneDNN's max-pooling workspace (u8 bytes), or NULL */
    /* The oneDNN layout the forward read x in (a conv's blocked output kept as
     * it was), which the backward primitive must match; format_kind undef when
     * x was plain. */
    dnnl_memory_desc_t src_md;
} pool_params;

typedef struct pool_geom {
    int64_t n, c, h, w, oh, ow;
    int kh, kw, sh, sw, pt, pb, pl, pr;
    int eb, er;   /* ceil_mode: how far the last windows overhang the bottom and right padding */
    bool include; /* count_include_pad */
} pool_geom;

/* ---------------------------------------------------------------- shapes */

/* x is a float (N, C, H, W) with H, W >= 1; its shape as text into sx (96 bytes). */
static tg_status check_input(const tg_tensor *x, char *sx)
{
    tg_status st = tg_check_float("input", x);
    if (st != TG_OK)
        return st;
    tg_shape_str(sx, 96, x->ndim, x->shape);
    if (x->ndim != 4)
        return tg_error_here(TG_ERR_SHAPE, "input must be 4-D (N, C, H, W), got %s", sx);
    /* Without rows or columns every window would be empty: no maximum, no mean. */
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return tg_error_here(TG_ERR_SHAPE,
                             "input %s has no rows or no columns (H and W must "
                             "be >= 1; only the batch and channels may be empty)", sx);
    return TG_OK;
}

static tg_status pool_infer(const tg_tensor *x, tg_pool2d_opts *o,
                            pool_geom *g)
{
    char sx[96];
    tg_status st = check_input(x, sx);
    if (st != TG_OK)
        return st;
    if (o->kernel[0] < 1 || o->kernel[1] < 1)
        return tg_error_here(TG_ERR_ARG, "kernel must be >= 1, got %dx%d (input %s)",
                             o->kernel[0], o->kernel[1], sx);
    if (o->stride[0] < 0 || o->stride[1] < 0)
        return tg_error_here(TG_ERR_ARG,
                             "stride must be >= 1 (or 0 for the kernel size), got (%d, %d) "
                             "(input %s)", o->stride[0], o->stride[1], sx);
    for (int i = 0; i < 2; i++)
        if (o->stride[i] == 0)
            o->stride[i] = o->kernel[i];
    for (int i = 0; i < 4; i++)
        if (o->pad[i] < 0 || o->pad[i] >= o->kernel[i / 2])
            return tg_error_here(TG_ERR_ARG,
                                 "padding (top %d, bottom %d, left %d, right %d) must be >= 0 "
                                 "and smaller than the kernel %dx%d (input %s)", o->pad[0],
                                 o->pad[1], o->pad[2], o->pad[3], o->kernel[0],
                                 o->kernel[1], sx);
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->kh = o->kernel[0];
    g->kw = o->kernel[1];
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->pt = o->pad[0];
    g->pb = o->pad[1];
    g->pl = o->pad[2];
    g->pr = o->pad[3];
    int64_t ph = g->h + g->pt + g->pb, pw = g->w + g->pl + g->pr;
    if (g->kh > ph || g->kw > pw)
        return tg_error_here(TG_ERR_SHAPE,
                             "kernel %dx%d is larger than the padded input %lldx%lld (input %s, "
                             "padding t%d b%d l%d r%d)", g->kh, g->kw, (long long)ph,
                             (long long)pw, sx, g->pt, g->pb,
                             g->pl, g->pr);
    g->oh = (ph - g->kh) / g->sh + 1;
    g->ow = (pw - g->kw) / g->sw + 1;
    if (o->ceil_mode) {
        g->oh = (ph - g->kh + g->sh - 1) / g->sh + 1;
        g->ow = (pw - g->kw + g->sw - 1) / g->sw + 1;
        /* no window may start past the input and its top (left) padding */
        if ((g->oh - 1) * g->sh >= g->h + g->pt)
            g->oh--;
        if ((g->ow - 1) * g->sw >= g->w + g->pl)
            g->ow--;
    }
    /* below the kernel: the last window starts inside the input or the top padding */
    int64_t eb = (g->oh - 1) * g->sh + g->kh - ph, er = (g->ow - 1) * g->sw + g->kw - pw;
    g->eb = eb > 0 ? (int)eb : 0;
    g->er = er > 0 ? (int)er : 0;
    g->include = o->count_include_pad;
    return TG_OK;
}

/* The whole plane as one window (global pooling): x must be 4-D with 1 ..
 * INT_MAX rows and columns. */
static tg_status global_opts(const tg_tensor *x, tg_pool2d_opts *o)
{
    char sx[96];
    tg_status st = check_input(x, sx);
    if (st != TG_OK)
        return st;
    if (x->shape[2] > INT_MAX || x->shape[3] > INT_MAX)
        return tg_error_here(TG_ERR_SHAPE, "input %s: planes of more than %d rows or "
                             "columns are not supported", sx, INT_MAX);
    *o = (tg_pool2d_opts)TG_POOL2D_OPTS_INIT;
    o->kernel[0] = o->stride[0] = (int)x->shape[2];
    o->kernel[1] = o->stride[1] = (int)x->shape[3];
    return TG_OK;
}

/* ---------------------------------------------------------------- oneDNN */

/* What a pooling primitive depends on besides the geometry. */
typedef struct pool_prim {
    const pool_geom *g;
    dnnl_alg_kind_t alg;
    bool training;  /* forward_training (keeps max pooling's workspace) */
    const dnnl_memory_desc_t *src; /* x's layout when not plain (kept from a conv), or NULL */
} pool_prim;

static void pool_mds(const pool_geom *g, dnnl_memory_desc_t *xm, dnnl_memory_desc_t *ym)
{
    int64_t xd[] = {g->n, g->c, g->h, g->w}, yd[] = {g->n, g->c, g->oh, g->ow};
    tg_dnnl_md_plain(xm, 4, xd);
    tg_dnnl_md_plain(ym, 4, yd);
}

/* The forward (training or inference) or backward primitive for the pool_prim
 * prim. Lock held. */
static tg_dnnl_entry *pool_entry(tg_dnnl_kind kind, const void *prim)
{
    const pool_prim *pp = prim;
    const pool_geom *g = pp->g;
    bool backward = kind == TG_DNNL_POOL_BWD;
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, kind);
    int64_t v[] = {pp->alg, pp->training, g->n, g->c, g->h, g->w, g->kh, g->kw,
                   g->sh, g->sw, g->pt, g->pb + g->eb, g->pl, g->pr + g->er};
    tg_dnnl_key_add_n(&k, (int)(sizeof v / sizeof v[0]), v);
    tg_dnnl_key_add(&k, pp->src != NULL);
    if (pp->src)
        tg_dnnl_key_add_md(&k, pp->src);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_memory_desc_t xm, ym;
    pool_mds(g, &xm, &ym);
    if (pp->src) { /* x's own layout, and the output in whatever suits it */
        dnnl_dims_t yd = {g->n, g->c, g->oh, g->ow};
        xm = *pp->src;
        dnnl_memory_desc_init_by_tag(&ym, 4, yd, dnnl_f32, dnnl_format_tag_any);
    }
    dnnl_dims_t strides = {g->sh, g->sw}, kernel = {g->kh, g->kw}, dil = {0, 0};
    dnnl_dims_t pad_l = {g->pt, g->pl}, pad_r = {g->pb + g->eb, g->pr + g->er};
    dnnl_pooling_v2_desc_t d;
    dnnl_status_t st;
    const_dnnl_primitive_desc_t hint = NULL;
    if (backward) {
        const pool_prim fwd = {g, pp->alg, true, pp->src};
        tg_dnnl_entry *f = pool_entry(TG_DNNL_POOL_FWD, &fwd);
        if (!f)
            return NULL;
        hint = f->pd;
        if (pp->src)
            ym = *tg_dnnl_md(f, dnnl_query_dst_md);
        st = dnnl_pooling_v2_backward_desc_init(&d, pp->alg, &xm, &ym, strides, kernel, dil,
                                                pad_l, pad_r);
    } else {
        st = dnnl_pooling_v2_forward_desc_init(
            &d, pp->training ? dnnl_forward_training : dnnl_forward_inference, pp->alg, &xm,
            &ym, strides, kernel, dil, pad_l, pad_r);
    }
    if (st != dnnl_success) {
        char sx[96];
        tg_dnnl_refused("pooling", st, "input %s, kernel %dx%d, stride %dx%d, padding "
                        "t%d b%d l%d r%d",
                        tg_shape_str(sx, sizeof sx, 4, (const int64_t[]){g->n, g->c, g->h, g->w}),
                        g->kh, g->kw, g->sh, g->sw, g->pt, g->pb + g->eb, g->pl,
                        g->pr + g->er);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, hint);
}

/* The forward (out = pooled in) or the backward (out = dL/dx from in = dL/dy) on
 * oneDNN. A forward_training max pooling sets *ws_out to its workspace (new
 * reference, kept in the primitive's own layout for the backward); the backward
 * takes it back as ws. The forward runs on x's layout when x holds a kept oneDNN
 * layout (writing that to *src_md, format_kind undef otherwise); the backward
 * takes it back as src_md, so its gradient comes out in that layout too. */
static tg_status pool_dnnl(bool backward, bool max, bool training, const pool_geom *g,
                           const tg_tensor *in, tg_tensor *out, const tg_tensor *ws,
                           tg_tensor **ws_out, dnnl_memory_desc_t *src_md)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    tg_status rc;
    tg_dnnl_lock();
    const dnnl_memory_desc_t *src = NULL;
    if (backward)
        src = src_md && src_md->format_kind != dnnl_format_kind_undef ? src_md : NULL;
    else if ((src = tg_dnnl_alt_md(in)) && src_md)
        *src_md = *src;
    const pool_prim pp = {g,
                          max          ? dnnl_pooling_max
                          : g->include ? dnnl_pooling_avg_include_padding
                                       : dnnl_pooling_avg_exclude_padding,
                          training || backward, src};
    dnnl_memory_desc_t xm, ym;
    pool_mds(g, &xm, &ym);
    tg_dnnl_entry *e = pool_entry(backward ? TG_DNNL_POOL_BWD : TG_DNNL_POOL_FWD, &pp);
    if (!e) {
        rc = tg_last_status();
        goto out;
    }
    const dnnl_memory_desc_t *wsm = tg_dnnl_md(e, dnnl_query_workspace_md);
    size_t ws_bytes = wsm ? dnnl_memory_desc_get_size(wsm) : 0;
    if (ws_bytes > 0 && backward && (!ws || tg_tensor_nbytes(ws) < ws_bytes)) {
        rc = tg_error_here(TG_ERR_STATE, "the forward pass kept no pooling workspace");
        goto out;
    }
    if (ws_bytes > 0 && !backward && ws_out) {
        int64_t nb = (int64_t)ws_bytes;
        if (!(*ws_out = tg_tensor_new_owned(TG_U8, 1, &nb))) {
            rc = tg_last_status();
            goto out;
        }
        ws = *ws_out;
    }
    const tg_dnnl_io io[] = {
        {backward ? DNNL_ARG_DIFF_DST : DNNL_ARG_SRC,
         backward ? dnnl_query_diff_dst_md : dnnl_query_src_md, 0, TG_DNNL_IN,
         backward ? &ym : &xm, in, 0},
        {backward ? DNNL_ARG_DIFF_SRC : DNNL_ARG_DST,
         backward ? dnnl_query_diff_src_md : dnnl_query_dst_md, 0, TG_DNNL_OUT,
         backward ? &xm : &ym, out, 1},
        {DNNL_ARG_WORKSPACE, dnnl_query_workspace_md, 0, backward ? TG_DNNL_IN : TG_DNNL_OUT,
         wsm, ws_bytes > 0 ? ws : NULL, 2},
    };
    rc = tg_dnnl_exec_tensors(e, io, 3);
out:
    tg_dnnl_unlock();
    return rc;
}

/* ---------------------------------------------------------------- reference */

/* The window of output (i, j), clipped: rows h0..h1-1, columns v0..v1-1. */
static inline void window(const pool_geom *g, int64_t i, int64_t j, int64_t *h0, int64_t *h1,
                          int64_t *v0, int64_t *v1)
{
    int64_t hs = i * g->sh - g->pt, vs = j * g->sw - g->pl;
    *h0 = hs < 0 ? 0 : hs;
    *h1 = hs + g->kh > g->h ? g->h : hs + g->kh;
    *v0 = vs < 0 ? 0 : vs;
    *v1 = vs + g->kw > g->w ? g->w : vs + g->kw;
}

/* What the average of window (i, j), clipped to rows h0..h1-1 and columns
 * v0..v1-1, divides by: its input elements, or with count_include_pad its extent
 * within the padded input. */
static inline int64_t window_count(const pool_geom *g, int64_t i, int64_t j, int64_t h0,
                                   int64_t h1, int64_t v0, int64_t v1)
{
    if (!g->include)
        return (h1 - h0) * (v1 - v0);
    int64_t hs = i * g->sh - g->pt, vs = j * g->sw - g->pl;
    int64_t he = hs + g->kh, ve = vs + g->kw;
    if (he > g->h + g->pb)
        he = g->h + g->pb;
    if (ve > g->w + g->pr)
        ve = g->w + g->pr;
    return (he - hs) * (ve - vs);
}

/* Flat index (within the plane) of the first maximum of window (i, j). */
static inline int64_t window_argmax(const pool_geom *g, const void *plane, bool f64,
                                    int64_t i, int64_t j)
{
    int64_t h0, h1, v0, v1;
    window(g, i, j, &h0, &h1, &v0, &v1);
    int64_t best = h0 * g->w + v0;
    double bv = tg_ref_ld(plane, best, f64);
    for (int64_t h = h0; h < h1; h++)
        for (int64_t v = v0; v < v1; v++) {
            double e = tg_ref_ld(plane, h * g->w + v, f64);
            if (e > bv) {
                bv = e;
                best = h * g->w + v;
            }
        }
    return best;
}

static void pool_fwd_ref(bool max, const pool_geom *g, const tg_tensor *x, tg_tensor *y)
{
    bool f64 = x->dtype == TG_F64;
    const char *xp = tg_tensor_ptr(x);
    char *yp = tg_tensor_ptr(y);
    size_t es = tg_dtype_size(x->dtype);
    #pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < g->n * g->c; nc++) {
        const void *xs = xp + (size_t)(nc * g->h * g->w) * es;
        void *ys = yp + (size_t)(nc * g->oh * g->ow) * es;
        for (int64_t i = 0; i < g->oh; i++)
            for (int64_t j = 0; j < g->ow; j++) {
                double r;
                if (max) {
                    r = tg_ref_ld(xs, window_argmax(g, xs, f64, i, j), f64);
                } else {
                    int64_t h0, h1, v0, v1;
                    window(g, i, j, &h0, &h1, &v0, &v1);
                    double acc = 0.0;
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t v = v0; v < v1; v++)
                            acc += tg_ref_ld(xs, h * g->w + v, f64);
                    r = acc / (double)window_count(g, i, j, h0, h1, v0, v1);
                }
                tg_ref_st(ys, i * g->ow + j, f64, r);
            }
    }
}

static void pool_bwd_ref(bool max, const pool_geom *g, const tg_tensor *x, const tg_tensor *gy,
                         tg_tensor *gx)
{
    bool f64 = gy->dtype == TG_F64;
    const char *xp = x ? tg_tensor_ptr(x) : NULL;
    const char *gyp = tg_tensor_ptr(gy);
    char *gxp = tg_tensor_ptr(gx);
    size_t es = tg_dtype_size(gy->dtype);
    /* one plane per iteration: the scatter below never crosses planes */
    #pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < g->n * g->c; nc++) {
        const void *gys = gyp + (size_t)(nc * g->oh * g->ow) * es;
        void *gxs = gxp + (size_t)(nc * g->h * g->w) * es;
        for (int64_t k = 0; k < g->h * g->w; k++)
            tg_ref_st(gxs, k, f64, 0.0);
        for (int64_t i = 0; i < g->oh; i++)
            for (int64_t j = 0; j < g->ow; j++) {
                double gv = tg_ref_ld(gys, i * g->ow + j, f64);
                if (max) {
                    const void *xs = xp + (size_t)(nc * g->h * g->w) * es;
                    int64_t at = window_argmax(g, xs, f64, i, j);
                    tg_ref_st(gxs, at, f64, tg_ref_ld(gxs, at, f64) + gv);
                } else {
                    int64_t h0, h1, v0, v1;
                    window(g, i, j, &h0, &h1, &v0, &v1);
                    double share = gv / (double)window_count(g, i, j, h0, h1, v0, v1);
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t v = v0; v < v1; v++)
                            tg_ref_st(gxs, h * g->w + v, f64,
                                      tg_ref_ld(gxs, h * g->w + v, f64) + share);
                }
            }
    }
}

/* ---------------------------------------------------------------- the ops */

static void pool_free(void *saved)
{
    pool_params *p = saved;
    if (!p)
        return;
    tg_release(p->ws);
    free(p);
}

static const tg_op_vtable *const kind_vtable[] = {
    &tg_op_max_pool2d_vtable, &tg_op_avg_pool2d_vtable, &tg_op_global_max_pool2d_vtable,
    &tg_op_global_avg_pool2d_vtable};
static const char *const kind_who[] = {"tg_max_pool2d", "tg_avg_pool2d",
                                       "tg_global_max_pool2d", "tg_global_avg_pool2d"};

/* A (N, C, 1, 1) view of the contiguous (N, C) t: new reference. */
static tg_tensor *as_nc11(tg_tensor *t, const pool_geom *g)
{
    const int64_t shape[4] = {g->n, g->c, 1, 1};
    int64_t strides[4];
    tg_contiguous_strides(4, shape, strides);
    return tg_tensor_view_owned(t, 4, shape, strides, t->offset);
}

static tg_tensor *pool_forward(pool_kind kind, tg_tensor *x, const tg_pool2d_opts *opts,
                               bool keepdims)
{
    bool max = kind_max(kind), global = kind_global(kind);
    tg_op_call c;
    if (!tg_op_begin(&c, kind_vtable[kind], kind_who[kind], &x, 1, "x", 0))
        return NULL;
    tg_pool2d_opts o = opts ? *opts : (tg_pool2d_opts)TG_POOL2D_OPTS_INIT;
    if (global && global_opts(x, &o) != TG_OK)
        return tg_op_fail(&c);
    pool_geom g;
    if (pool_infer(x, &o, &g) != TG_OK)
        return tg_op_fail(&c);
    /* oneDNN would count a ceil_mode overhang in a count_include_pad average */
    bool dnnl = tg_use_dnnl(x) && !(!max && g.include && (g.eb > 0 || g.er > 0));
    const int64_t yshape[4] = {g.n, g.c, g.oh, g.ow};
    tg_tensor *y = tg_op_output(&c, x->dtype, global && !keepdims ? 2 : 4, yshape);
    pool_params *p = tg_op_save(&c, sizeof *p);
    if (!y || (c.record && !p))
        return tg_op_fail(&c);
    if (p) {
        p->kind = kind;
        p->o = o;
        p->dnnl = dnnl;
    }
    tg_status st = TG_OK;
    if (tg_tensor_numel(y) > 0) {
        tg_tensor *xc = tg_contiguous_layout_owned(x, dnnl);
        /* (N, C) output: pooled into a 4-D tensor of its own (oneDNN may leave
         * it in a blocked layout), then settled and copied (N * C elements). */
        tg_tensor *y4 = y->ndim == 4 ? tg_retain(y) : tg_tensor_new_owned(x->dtype, 4, yshape);
        if (!xc || !y4)
            st = tg_last_status();
        else if (dnnl)
            st = pool_dnnl(false, max, c.record, &g, xc, y4, NULL, p ? &p->ws : NULL,
                           p ? &p->src_md : NULL);
        else
            pool_fwd_ref(max, &g, xc, y4);
        if (st == TG_OK && y4 != y && (st = tg_tensor_settle(y4)) == TG_OK)
            memcpy(tg_tensor_ptr(y), tg_tensor_ptr(y4), tg_tensor_nbytes(y));
        tg_release(y4);
        tg_release(xc);
    }
    if (st != TG_OK)
        return tg_op_fail(&c);
    return tg_op_end(&c);
}

tg_tensor *tg_max_pool2d(tg_tensor *x, const tg_pool2d_opts *opts)
{
    return pool_forward(POOL_MAX, x, opts, true);
}

tg_tensor *tg_avg_pool2d(tg_tensor *x, const tg_pool2d_opts *opts)
{
    return pool_forward(POOL_AVG, x, opts, true);
}

tg_tensor *tg_global_max_pool2d(tg_tensor *x, bool keepdims)
{
    return pool_forward(POOL_GLOBAL_MAX, x, NULL, keepdims);
}

tg_tensor *tg_global_avg_pool2d(tg_tensor *x, bool keepdims)
{
    return pool_forward(POOL_GLOBAL_AVG, x, NULL, keepdims);
}

static tg_status pool_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    /* runs in the engine's context, "tg_max_pool2d backward" and so on */
    pool_params *p = node->saved;
    tg_tensor *x = node->inputs[0];
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    bool max = kind_max(p->kind);
    tg_pool2d_opts o = p->o;
    pool_geom g;
    tg_status st = pool_infer(x, &o, &g);
    if (st != TG_OK)
        return st;
    tg_tensor *gy;
    if (grad_out->ndim == 4) {
        gy = tg_contiguous_layout_owned(grad_out, p->dnnl);
    } else { /* global pooling's (N, C): plain, seen as (N, C, 1, 1) */
        tg_tensor *g2 = tg_contiguous_owned(grad_out);
        gy = g2 ? as_nc11(g2, &g) : NULL;
        tg_release(g2);
    }
    tg_tensor *gx = tg_tensor_new_owned(x->dtype, 4, x->shape);
    tg_tensor *xc = max && !p->dnnl ? tg_contiguous_owned(x) : NULL;
    if (!gy || !gx || (max && !p->dnnl && !xc)) {
        st = tg_last_status();
    } else if (tg_tensor_numel(gy) == 0) {
        st = tg_tensor_fill(gx, 0.0);
    } else if (p->dnnl) {
        st = pool_dnnl(true, max, true, &g, gy, gx, p->ws, NULL, &p->src_md);
    } else {
        pool_bwd_ref(max, &g, xc, gy, gx);
    }
    if (st == TG_OK)
        grad_in[0] = tg_scoped(tg_retain(gx));
    tg_release(gy);
    tg_release(gx);
    tg_release(xc);
    return st;
}

/* snprintf at buf + *len, as far as n allows (the text is cut, never overrun). */
static void append(char *buf, size_t n, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (k > 0)
        *len += (size_t)k;
}

/* "2x2 s2", plus the padding, "ceil" and "incl" when set; "global" for global pooling. */
static void pool_describe(const tg_node *node, char *buf, size_t n)
{
    const pool_params *p = node->saved;
    if (!p) {
        if (n)
            buf[0] = '\0';
        return;
    }
    const tg_pool2d_opts *o = &p->o;
    if (kind_global(p->kind)) {
        snprintf(buf, n, "global");
        return;
    }
    size_t len = 0;
    append(buf, n, &len, "%dx%d s%d", o->kernel[0], o->kernel[1], o->stride[0]);
    if (o->stride[1] != o->stride[0])
        append(buf, n, &len, ",%d", o->stride[1]);
    if (o->pad[0] || o->pad[1] || o->pad[2] || o->pad[3])
        append(buf, n, &len, " p%d,%d,%d,%d", o->pad[0], o->pad[1], o->pad[2], o->pad[3]);
    if (o->ceil_mode)
        append(buf, n, &len, " ceil");
    if (o->count_include_pad && p->kind == POOL_AVG)
        append(buf, n, &len, " incl");
}

const tg_op_vtable tg_op_max_pool2d_vtable = {
    .name = "max_pool2d",
    .backward = pool_backward,
    .free_saved = pool_free,
    .describe = pool_describe,
    .gradcheck_hints = TG_GC_DISTINCT,
};

const tg_op_vtable tg_op_avg_pool2d_vtable = {
    .name = "avg_pool2d",
    .backward = pool_backward,
    .free_saved = pool_free,
    .describe = pool_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = TG_OP_ALL_INPUTS,
};

const tg_op_vtable tg_op_global_max_pool2d_vtable = {
    .name = "global_max_pool2d",
    .backward = pool_backward,
    .free_saved = pool_free,
    .describe = pool_describe,
    .gradcheck_hints = TG_GC_DISTINCT,
};

const tg_op_vtable tg_op_global_avg_pool2d_vtable = {
    .name = "global_avg_pool2d",
    .backward = pool_backward,
    .free_saved = pool_free,
    .describe = pool_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = TG_OP_ALL_INPUTS,
};
