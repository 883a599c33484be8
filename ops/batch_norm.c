/* ops/batch_norm.c -- batch normalization (Keras's BatchNormalization, axis 1).
 *
 * x is (N, C) or (N, C, H, W); channel c has the m = N*H*W elements x[n,c,s].
 *   training:  mu_c = (1/m) sum x[n,c,s],  var_c = (1/m) sum (x[n,c,s] - mu_c)^2
 *              (biased, as Keras, tf.nn.moments and oneDNN compute it)
 *   inference: mu_c, var_c are the running statistics as given
 *   xhat = (x - mu_c) * r_c,  r_c = 1 / sqrt(var_c + eps)
 *   y = gamma_c * xhat + beta_c        (gamma NULL: 1, beta NULL: 0)
 *   with opts.relu: out = max(y, 0), and below g is dL/dout * [y > 0]
 * Backward, with g = dL/dy, sums over the m elements of channel c:
 *   dL/dbeta_c  = sum g
 *   dL/dgamma_c = sum g * xhat
 *   training:  dL/dx = gamma_c r_c (g - (1/m) sum g - xhat (1/m) sum g xhat)
 *              (mu and var depend on x: the full derivative)
 *   inference: dL/dx = gamma_c r_c g
 * Training also updates the running statistics in place, as Keras does:
 *   running_mean = running_mean * momentum + mu_c * (1 - momentum)
 *   running_var  = running_var * momentum + var_c * (1 - momentum)
 * with the biased var_c (Keras's choice; PyTorch uses the unbiased one), and bumps
 * their versions. They are not inputs of the node: no gradient reaches them, and
 * the node keeps its own copy of the statistics it normalised with.
 * f32 runs on oneDNN's batch_normalization (plain layouts; separate scale and
 * shift, dnnl_use_scale / dnnl_use_shift) and the ReLU on oneDNN's eltwise, in
 * place on the output, whose backward takes g from the output kept in the node
 * (out > 0 exactly where y > 0). Not dnnl_fuse_norm_relu: oneDNN 2.6 runs plain
 * NCHW through its ncsp kernel, and there the fused ReLU made a training step
 * (forward + backward, (128, 32, 26, 26)) about 4x slower than batch norm and a
 * separate eltwise ReLU (88 ms against 21 ms on this machine). f64, or the
 * reference backend, runs the loops, which recompute the mask from y. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/dnnl_impl.h"

/* Saved for backward. */
typedef struct bn_params {
    tg_batch_norm_opts o;
    bool has_gamma, has_beta;
    bool dnnl;           /* forward ran on oneDNN: backward does too */
    tg_tensor *mean;     /* owned (C), x's dtype: the statistics y was normalised with */
    tg_tensor *var;
    tg_tensor *out;      /* owned view of the output: oneDNN with opts.relu only */
} bn_params;

typedef struct bn_geom {
    int64_t n, c, s;     /* batch, channels, H*W (1 for (N, C)) */
    int64_t h, w;
} bn_geom;

/* ---------------------------------------------------------------- shapes */

/* t (gamma, beta or a running statistic) is NULL or 1-D (C). */
static tg_status check_vec(const char *name, const tg_tensor *t, const tg_tensor *x,
                           int64_t c)
{
    if (!t)
        return TG_OK;
    if (t->dtype != x->dtype)
        return tg_error_here(TG_ERR_DTYPE, "%s is %s, input is %s", name,
                             tg_dtype_name(t->dtype), tg_dtype_name(x->dtype));
    if (t->ndim != 1 || t->shape[0] != c) {
        char st[96], sx[96];
        return tg_error_here(TG_ERR_SHAPE, "%s must have shape [%lld] (the channels of "
                             "input %s), got %s", name, (long long)c,
                             tg_shape_str(sx, sizeof sx, x->ndim, x->shape),
                             tg_shape_str(st, sizeof st, t->ndim, t->shape));
    }
    return TG_OK;
}

static tg_status bn_infer(const tg_tensor *x, const tg_tensor *gamma, const tg_tensor *beta,
                          const tg_tensor *rm, const tg_tensor *rv,
                          const tg_batch_norm_opts *o, bn_geom *g)
{
    char sx[96];
    tg_shape_str(sx, sizeof sx, x->ndim, x->shape);
    if (x->ndim != 2 && x->ndim != 4)
        return tg_error_here(TG_ERR_SHAPE, "input must be (N, C) or (N, C, H, W), got %s", sx);
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->ndim == 4 ? x->shape[2] : 1;
    g->w = x->ndim == 4 ? x->shape[3] : 1;
    g->s = g->h * g->w;
    if (!(o->momentum >= 0.0 && o->momentum <= 1.0)) /* also rejects NaN */
        return tg_error_here(TG_ERR_ARG, "momentum must be in [0, 1], got %g (input %s)",
                             o->momentum, sx);
    if (!(o->epsilon > 0.0 && isfinite(o->epsilon)))
        return tg_error_here(TG_ERR_ARG, "epsilon must be finite and > 0, got %g (input %s)",
                             o->epsilon, sx);
    if (!rm != !rv)
        return tg_error_here(TG_ERR_ARG, "running_mean and running_var go together: "
                             "one of them is NULL (input %s)", sx);
    if (!o->training && !rm)
        return tg_error_here(TG_ERR_ARG, "inference (opts.training false) normalises with "
                             "the running statistics: running_mean and running_var are "
                             "NULL (input %s)", sx);
    tg_status st;
    if ((st = check_vec("gamma", gamma, x, g->c)) != TG_OK ||
        (st = check_vec("beta", beta, x, g->c)) != TG_OK ||
        (st = check_vec("running_mean", rm, x, g->c)) != TG_OK ||
        (st = check_vec("running_var", rv, x, g->c)) != TG_OK)
        return st;
    /* settled now, so that the update after a successful call cannot fail */
    if ((rm && (st = tg_tensor_settle(rm)) != TG_OK) ||
        (rv && (st = tg_tensor_settle(rv)) != TG_OK))
        return st;
    if (o->training && g->n * g->s == 0 && g->c > 0)
        return tg_error_here(TG_ERR_SHAPE, "input %s is empty: training needs at least one "
                             "element per channel for the batch statistics", sx);
    return TG_OK;
}

/* ---------------------------------------------------------------- oneDNN */

/* What a batch normalization primitive depends on. */
typedef struct bn_prim {
    const bn_geom *g;
    dnnl_prop_kind_t prop;
    unsigned flags;
    float eps;
} bn_prim;

static void bn_data_md(const bn_geom *g, dnnl_memory_desc_t *md)
{
    const int64_t d[] = {g->n, g->c, g->h, g->w};
    tg_dnnl_md_plain(md, 4, d);
}

/* The forward (training or inference) or backward primitive. Lock held. */
static tg_dnnl_entry *bn_entry(tg_dnnl_kind kind, const bn_prim *bp)
{
    const bn_geom *g = bp->g;
    uint32_t eb;
    memcpy(&eb, &bp->eps, sizeof eb);
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, kind);
    const int64_t v[] = {bp->prop, bp->flags, eb, g->n, g->c, g->h, g->w};
    tg_dnnl_key_add_n(&k, (int)(sizeof v / sizeof v[0]), v);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_memory_desc_t xm;
    bn_data_md(g, &xm);
    dnnl_batch_normalization_desc_t d;
    dnnl_status_t st;
    const_dnnl_primitive_desc_t hint = NULL;
    if (kind == TG_DNNL_BNORM_BWD) {
        const bn_prim fwd = {g, dnnl_forward_training, bp->flags, bp->eps};
        tg_dnnl_entry *f = bn_entry(TG_DNNL_BNORM_FWD, &fwd);
        if (!f)
            return NULL;
        hint = f->pd;
        st = dnnl_batch_normalization_backward_desc_init(&d, bp->prop, &xm, &xm, bp->eps,
                                                         bp->flags);
    } else {
        st = dnnl_batch_normalization_forward_desc_init(&d, bp->prop, &xm, bp->eps, bp->flags);
    }
    if (st != dnnl_success) {
        char sx[96];
        tg_dnnl_refused("batch normalization", st, "input %s, flags 0x%x, epsilon %g",
                        tg_shape_str(sx, sizeof sx, 4,
                                     (const int64_t[]){g->n, g->c, g->h, g->w}),
                        bp->flags, (double)bp->eps);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, hint);
}

static unsigned bn_flags(const tg_batch_norm_opts *o, bool gamma, bool beta)
{
    return (gamma ? dnnl_use_scale : 0u) | (beta ? dnnl_use_shift : 0u) |
           (o->training ? 0u : dnnl_use_global_stats);
}

/* The forward on oneDNN: y from the contiguous x, gamma and beta (or NULL), then
 * the ReLU in place when opts.relu. In training mean and var receive the batch
 * statistics, otherwise they hold the running ones. With record (a backward
 * follows) the primitive is forward_training, the backward's hint. */
static tg_status bn_fwd_dnnl(const bn_geom *g, const tg_batch_norm_opts *o, bool record,
                             const tg_tensor *x, const tg_tensor *gamma, const tg_tensor *beta,
                             tg_tensor *mean, tg_tensor *var, tg_tensor *y)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    tg_status rc;
    tg_dnnl_lock();
    const bn_prim bp = {g, o->training || record ? dnnl_forward_training
                                                 : dnnl_forward_inference,
                        bn_flags(o, gamma != NULL, beta != NULL), (float)o->epsilon};
    tg_dnnl_entry *e = bn_entry(TG_DNNL_BNORM_FWD, &bp);
    if (!e) {
        rc = tg_last_status();
        goto out;
    }
    dnnl_memory_desc_t xm, cm;
    bn_data_md(g, &xm);
    tg_dnnl_md_plain(&cm, 1, &g->c);
    tg_dnnl_mem m[6];
    int n = 0;
    m[n++] = (tg_dnnl_mem){DNNL_ARG_SRC, &xm, tg_tensor_ptr(x)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_DST, &xm, tg_tensor_ptr(y)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_MEAN, &cm, tg_tensor_ptr(mean)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_VARIANCE, &cm, tg_tensor_ptr(var)};
    if (gamma)
        m[n++] = (tg_dnnl_mem){DNNL_ARG_SCALE, &cm, tg_tensor_ptr(gamma)};
    if (beta)
        m[n++] = (tg_dnnl_mem){DNNL_ARG_SHIFT, &cm, tg_tensor_ptr(beta)};
    rc = tg_dnnl_exec(e, m, n);
    if (rc == TG_OK && o->relu)
        rc = tg_eltwise_dnnl(TG_ELT_RELU, 0.0f, 0.0f, y, NULL, y);
out:
    tg_dnnl_unlock();
    return rc;
}

/* The backward on oneDNN: gx, and dgamma / dbeta (when gamma / beta were given)
 * from the contiguous x, gy (already through the ReLU's backward), gamma and beta
 * and the saved statistics. */
static tg_status bn_bwd_dnnl(const bn_geom *g, const bn_params *p, const tg_tensor *x,
                             const tg_tensor *gy, const tg_tensor *gamma, const tg_tensor *beta,
                             tg_tensor *gx, tg_tensor *dgamma, tg_tensor *dbeta)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    tg_status rc;
    tg_dnnl_lock();
    const bn_prim bp = {g, p->has_gamma || p->has_beta ? dnnl_backward : dnnl_backward_data,
                        bn_flags(&p->o, p->has_gamma, p->has_beta), (float)p->o.epsilon};
    tg_dnnl_entry *e = bn_entry(TG_DNNL_BNORM_BWD, &bp);
    if (!e) {
        rc = tg_last_status();
        goto out;
    }
    dnnl_memory_desc_t xm, cm;
    bn_data_md(g, &xm);
    tg_dnnl_md_plain(&cm, 1, &g->c);
    tg_dnnl_mem m[9];
    int n = 0;
    m[n++] = (tg_dnnl_mem){DNNL_ARG_SRC, &xm, tg_tensor_ptr(x)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_DIFF_DST, &xm, tg_tensor_ptr(gy)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_MEAN, &cm, tg_tensor_ptr(p->mean)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_VARIANCE, &cm, tg_tensor_ptr(p->var)};
    m[n++] = (tg_dnnl_mem){DNNL_ARG_DIFF_SRC, &xm, tg_tensor_ptr(gx)};
    if (gamma) {
        m[n++] = (tg_dnnl_mem){DNNL_ARG_SCALE, &cm, tg_tensor_ptr(gamma)};
        m[n++] = (tg_dnnl_mem){DNNL_ARG_DIFF_SCALE, &cm, tg_tensor_ptr(dgamma)};
    }
    if (beta) { /* oneDNN 2.6 refuses the call without the shift */
        m[n++] = (tg_dnnl_mem){DNNL_ARG_SHIFT, &cm, tg_tensor_ptr(beta)};
        m[n++] = (tg_dnnl_mem){DNNL_ARG_DIFF_SHIFT, &cm, tg_tensor_ptr(dbeta)};
    }
    rc = tg_dnnl_exec(e, m, n);
out:
    tg_dnnl_unlock();
    return rc;
}

/* ---------------------------------------------------------------- reference */

/* Element (n, c, s) of a contiguous (N, C, S) buffer. */
static inline int64_t at(const bn_geom *g, int64_t n, int64_t c, int64_t s)
{
    return (n * g->c + c) * g->s + s;
}

/* Training: the batch mean and biased variance of each channel into mean and var
 * (contiguous (C), x's dtype), two passes in double. */
static void bn_stats_ref(const bn_geom *g, const tg_tensor *x, tg_tensor *mean, tg_tensor *var)
{
    bool f64 = x->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x);
    void *mp = tg_tensor_ptr(mean), *vp = tg_tensor_ptr(var);
    double m = (double)(g->n * g->s);
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g->c; c++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t s = 0; s < g->s; s++)
                sum += tg_ref_ld(xp, at(g, n, c, s), f64);
        double mu = sum / m;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t s = 0; s < g->s; s++) {
                double d = tg_ref_ld(xp, at(g, n, c, s), f64) - mu;
                sq += d * d;
            }
        tg_ref_st(mp, c, f64, mu);
        tg_ref_st(vp, c, f64, sq / m);
    }
}

/* gamma_c (1 without gamma) and beta_c (0 without beta). */
static inline double bn_gamma(const void *gp, int64_t c, bool f64)
{
    return gp ? tg_ref_ld(gp, c, f64) : 1.0;
}

static void bn_fwd_ref(const bn_geom *g, const tg_batch_norm_opts *o, const tg_tensor *x,
                       const tg_tensor *gamma, const tg_tensor *beta, const tg_tensor *mean,
                       const tg_tensor *var, tg_tensor *y)
{
    bool f64 = x->dtype == TG_F64;
    const void *xp = tg_tensor_ptr(x), *mp = tg_tensor_ptr(mean), *vp = tg_tensor_ptr(var);
    const void *gp = gamma ? tg_tensor_ptr(gamma) : NULL, *bp = beta ? tg_tensor_ptr(beta) : NULL;
    void *yp = tg_tensor_ptr(y);
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g->c; c++) {
        double mu = tg_ref_ld(mp, c, f64);
        double r = 1.0 / sqrt(tg_ref_ld(vp, c, f64) + o->epsilon);
        double ga = bn_gamma(gp, c, f64), be = bp ? tg_ref_ld(bp, c, f64) : 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t s = 0; s < g->s; s++) {
                int64_t i = at(g, n, c, s);
                double v = ga * ((tg_ref_ld(xp, i, f64) - mu) * r) + be;
                tg_ref_st(yp, i, f64, o->relu && !(v > 0.0) ? 0.0 : v);
            }
    }
}

/* gx (NULL: not wanted), dgamma and dbeta (NULL: not wanted) from the contiguous
 * x, gy and the saved statistics. With opts.relu, g is gy where the
 * pre-activation (recomputed as the forward computed it) is positive, else 0. */
static void bn_bwd_ref(const bn_geom *g, const bn_params *p, const tg_tensor *x,
                       const tg_tensor *gy, const tg_tensor *gamma, const tg_tensor *beta,
                       tg_tensor *gx, tg_tensor *dgamma, tg_tensor *dbeta)
{
    bool f64 = x->dtype == TG_F64;
    const tg_batch_norm_opts *o = &p->o;
    const void *xp = tg_tensor_ptr(x), *gyp = tg_tensor_ptr(gy);
    const void *mp = tg_tensor_ptr(p->mean), *vp = tg_tensor_ptr(p->var);
    const void *gp = gamma ? tg_tensor_ptr(gamma) : NULL, *bp = beta ? tg_tensor_ptr(beta) : NULL;
    void *gxp = gx ? tg_tensor_ptr(gx) : NULL;
    void *dgp = dgamma ? tg_tensor_ptr(dgamma) : NULL, *dbp = dbeta ? tg_tensor_ptr(dbeta) : NULL;
    double m = (double)(g->n * g->s);
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g->c; c++) {
        double mu = tg_ref_ld(mp, c, f64);
        double r = 1.0 / sqrt(tg_ref_ld(vp, c, f64) + o->epsilon);
        double ga = bn_gamma(gp, c, f64), be = bp ? tg_ref_ld(bp, c, f64) : 0.0;
        double sg = 0.0, sgx = 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t s = 0; s < g->s; s++) {
                int64_t i = at(g, n, c, s);
                double xh = (tg_ref_ld(xp, i, f64) - mu) * r;
                double gv = tg_ref_ld(gyp, i, f64);
                if (o->relu && !(ga * xh + be > 0.0))
                    gv = 0.0;
                sg += gv;
                sgx += gv * xh;
            }
        if (dgp)
            tg_ref_st(dgp, c, f64, sgx);
        if (dbp)
            tg_ref_st(dbp, c, f64, sg);
        if (!gxp)
            continue;
        double k = ga * r;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t s = 0; s < g->s; s++) {
                int64_t i = at(g, n, c, s);
                double xh = (tg_ref_ld(xp, i, f64) - mu) * r;
                double gv = tg_ref_ld(gyp, i, f64);
                if (o->relu && !(ga * xh + be > 0.0))
                    gv = 0.0;
                double d = o->training ? k * (gv - sg / m - xh * sgx / m) : k * gv;
                tg_ref_st(gxp, i, f64, d);
            }
    }
}

/* ---------------------------------------------------------------- running statistics */

/* dst (C), contiguous, x's dtype = src (C, any stride), element by element. */
static tg_status copy_vec(tg_tensor *dst, const tg_tensor *src, int64_t c)
{
    const void *sp = tg_tensor_ptr(src);
    if (!sp)
        return tg_last_status();
    bool f64 = src->dtype == TG_F64;
    void *dp = tg_tensor_ptr(dst);
    for (int64_t i = 0; i < c; i++)
        tg_ref_st(dp, i, f64, tg_ref_ld(sp, i * src->strides[0], f64));
    return TG_OK;
}

/* run = run * momentum + batch * (1 - momentum), in place (any stride), then a
 * version bump: the write is visible to every holder of run. run was settled by
 * bn_infer, so this fails only if another thread gave it a layout since. */
static tg_status update_running(tg_tensor *run, const tg_tensor *batch, double momentum,
                                int64_t c)
{
    void *rp = tg_tensor_ptr(run);
    if (!rp)
        return tg_last_status();
    bool f64 = run->dtype == TG_F64;
    const void *bp = tg_tensor_ptr(batch);
    for (int64_t i = 0; i < c; i++) {
        int64_t k = i * run->strides[0];
        tg_ref_st(rp, k, f64, tg_ref_ld(rp, k, f64) * momentum +
                                  tg_ref_ld(bp, i, f64) * (1.0 - momentum));
    }
    tg_tensor_bump_version(run);
    return TG_OK;
}

/* ---------------------------------------------------------------- the op */

static void bn_free(void *saved)
{
    bn_params *p = saved;
    if (!p)
        return;
    tg_release(p->mean);
    tg_release(p->var);
    tg_release(p->out);
    free(p);
}

tg_tensor *tg_batch_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         tg_tensor *running_mean, tg_tensor *running_var,
                         const tg_batch_norm_opts *opts)
{
    static const char who[] = "tg_batch_norm";
    /* the node's inputs: x, then gamma and beta where given */
    tg_tensor *in[3] = {x, NULL, NULL};
    int n_in = 1;
    if (gamma)
        in[n_in++] = gamma;
    if (beta)
        in[n_in++] = beta;
    const char *names = gamma && beta ? "x gamma beta" : gamma ? "x gamma" : "x beta";
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_batch_norm_vtable, who, in, n_in, names,
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    tg_batch_norm_opts o = opts ? *opts : (tg_batch_norm_opts)TG_BATCH_NORM_OPTS_INIT;
    bn_geom g;
    if (bn_infer(x, gamma, beta, running_mean, running_var, &o, &g) != TG_OK)
        return tg_op_fail(&c);
    bool dnnl = tg_use_dnnl(x) && tg_tensor_numel(x) > 0;
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    bn_params *p = tg_op_save(&c, sizeof *p);
    if (!y || (c.record && !p))
        return tg_op_fail(&c);
    tg_tensor *mean = tg_tensor_new_owned(x->dtype, 1, &g.c);
    tg_tensor *var = tg_tensor_new_owned(x->dtype, 1, &g.c);
    tg_tensor *xc = tg_contiguous_owned(x);
    tg_tensor *gc = gamma ? tg_contiguous_owned(gamma) : NULL;
    tg_tensor *bc = beta ? tg_contiguous_owned(beta) : NULL;
    tg_status st = TG_OK;
    if (!mean || !var || !xc || (gamma && !gc) || (beta && !bc))
        st = tg_last_status();
    else if (!o.training && (st = copy_vec(mean, running_mean, g.c)) == TG_OK)
        st = copy_vec(var, running_var, g.c);  /* inference: the running statistics */
    if (st == TG_OK && dnnl) {
        st = bn_fwd_dnnl(&g, &o, c.record, xc, gc, bc, mean, var, y);
    } else if (st == TG_OK) {
        if (o.training)
            bn_stats_ref(&g, xc, mean, var);
        bn_fwd_ref(&g, &o, xc, gc, bc, mean, var, y);
    }
    tg_release(xc);
    tg_release(gc);
    tg_release(bc);
    if (st == TG_OK && p) {
        p->o = o;
        p->has_gamma = gamma != NULL;
        p->has_beta = beta != NULL;
        p->dnnl = dnnl;
        p->mean = tg_retain(mean);
        p->var = tg_retain(var);
        if (dnnl && o.relu && !(p->out = tg_op_output_view(&c)))
            st = tg_last_status();
    }
    tg_tensor *out = st == TG_OK ? tg_op_end(&c) : tg_op_fail(&c);
    /* the running statistics change only once the call has succeeded */
    if (out && o.training && running_mean &&
        ((st = update_running(running_mean, mean, o.momentum, g.c)) != TG_OK ||
         (st = update_running(running_var, var, o.momentum, g.c)) != TG_OK))
        out = NULL;
    tg_release(mean);
    tg_release(var);
    return out;
}

static tg_status bn_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    /* runs in the engine's context, "tg_batch_norm backward" */
    const bn_params *p = node->saved;
    tg_tensor *x = node->inputs[0];
    int gi = p->has_gamma ? 1 : -1;
    int bi = p->has_beta ? (p->has_gamma ? 2 : 1) : -1;
    tg_tensor *gamma = gi > 0 ? node->inputs[gi] : NULL;
    tg_tensor *beta = bi > 0 ? node->inputs[bi] : NULL;
    bool want_x = tg_node_needs_grad(node, 0);
    bool want_g = gi > 0 && tg_node_needs_grad(node, gi);
    bool want_b = bi > 0 && tg_node_needs_grad(node, bi);
    bn_geom g = {x->shape[0], x->shape[1], 1, 1, 1};
    if (x->ndim == 4) {
        g.h = x->shape[2];
        g.w = x->shape[3];
        g.s = g.h * g.w;
    }
    tg_tensor *xc = tg_contiguous_owned(x);
    tg_tensor *gy = tg_contiguous_owned(grad_out);
    if (gy && p->dnnl && p->o.relu) { /* g = dL/dout * [out > 0], into a tensor of its own */
        tg_tensor *gr = tg_tensor_new_owned(x->dtype, x->ndim, x->shape);
        if (gr && tg_eltwise_dnnl(TG_ELT_RELU, 0.0f, 0.0f, p->out, gy, gr) != TG_OK) {
            tg_release(gr);
            gr = NULL;
        }
        tg_release(gy);
        gy = gr;
    }
    tg_tensor *gc = gamma ? tg_contiguous_owned(gamma) : NULL;
    tg_tensor *bc = beta ? tg_contiguous_owned(beta) : NULL;
    /* oneDNN writes every gradient its flags ask for: give it all of them */
    tg_tensor *gx = want_x || p->dnnl ? tg_tensor_new_owned(x->dtype, x->ndim, x->shape) : NULL;
    tg_tensor *dg = want_g || (p->dnnl && gamma) ? tg_tensor_new_owned(x->dtype, 1, &g.c) : NULL;
    tg_tensor *db = want_b || (p->dnnl && beta) ? tg_tensor_new_owned(x->dtype, 1, &g.c) : NULL;
    tg_status st = TG_OK;
    if (!xc || !gy || (gamma && !gc) || (beta && !bc) || ((want_x || p->dnnl) && !gx) ||
        ((want_g || (p->dnnl && gamma)) && !dg) || ((want_b || (p->dnnl && beta)) && !db))
        st = tg_last_status();
    else if (p->dnnl)
        st = bn_bwd_dnnl(&g, p, xc, gy, gc, bc, gx, dg, db);
    else
        bn_bwd_ref(&g, p, xc, gy, gc, bc, want_x ? gx : NULL, want_g ? dg : NULL,
                   want_b ? db : NULL);
    if (st == TG_OK) {
        if (want_x)
            grad_in[0] = tg_scoped(tg_retain(gx));
        if (want_g)
            grad_in[gi] = tg_scoped(tg_retain(dg));
        if (want_b)
            grad_in[bi] = tg_scoped(tg_retain(db));
    }
    tg_release(xc);
    tg_release(gy);
    tg_release(gc);
    tg_release(bc);
    tg_release(gx);
    tg_release(dg);
    tg_release(db);
    return st;
}

/* "train eps=0.001 +relu" */
static void bn_describe(const tg_node *node, char *buf, size_t n)
{
    const bn_params *p = node->saved;
    if (p)
        snprintf(buf, n, "%s eps=%g%s", p->o.training ? "train" : "infer", p->o.epsilon,
                 p->o.relu ? " +relu" : "");
    else if (n)
        buf[0] = '\0';
}

const tg_op_vtable tg_op_batch_norm_vtable = {
    .name = "batch_norm",
    .backward = bn_backward,
    .free_saved = bn_free,
    .describe = bn_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = 0,
};
