/* ops/reduce.c -- reductions over chosen axes.
 *
 *   sum:  y[k] = sum_{i in group k} x[i]             dx[i] = g[k]
 *   mean: y[k] = (1/n) sum_{i in group k} x[i]       dx[i] = g[k] / n
 *   max:  y[k] = max_{i in group k} x[i]             dx[i] = g[k] if i is the first
 *                                                            maximum of group k, else 0
 *   min:  the same with the first minimum
 *   prod: y[k] = prod_{i in group k} x[i]            dx[i] = g[k] prod_{j != i} x[j]
 *         (computed from the product of the non-zero elements and their count of
 *         zeros, so a zero in the group is exact: no division by it)
 *   var:  y[k] = sum (x[i] - m[k])^2 / (n - c)       dx[i] = 2 g[k] (x[i] - m[k]) / (n - c)
 *   std:  y[k] = sqrt(var)                           dx[i] = g[k] (x[i] - m[k]) / ((n - c) y[k])
 *         (0 where y[k] = 0), m[k] the group's mean, c the correction (0: the
 *         population variance, numpy's and Keras's default; 1: Bessel's,
 *         PyTorch's default), in two passes (mean, then squared deviations).
 *
 * A group is the set of elements that differ only in the reduced axes; n is its
 * size. The kernels accumulate in double (f32 too) and run on any strided input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

typedef enum red_kind { RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_PROD, RED_VAR, RED_STD } red_kind;

typedef struct reduce_saved {
    red_kind kind;
    bool mask[TG_MAX_DIMS];         /* reduced axes of the input */
    bool keepdim;
    int64_t kshape[TG_MAX_DIMS];    /* the input's shape with reduced axes set to 1 */
    int64_t count;                  /* elements per group */
    int64_t *argmax;                /* max/min: input flat index per output element;
                                       prod: count of zeros per group */
    double *aux;                    /* prod: product of the non-zero elements;
                                       var/std: the group's mean */
    double *out;                    /* std: the result, per group */
    int correction;                 /* var/std */
} reduce_saved;

static const char *const red_who[] = {"tg_sum", "tg_mean", "tg_max", "tg_min",
                                      "tg_prod", "tg_var", "tg_std"};

static void reduce_free(void *p)
{
    reduce_saved *sv = p;
    if (sv) {
        free(sv->argmax);
        free(sv->aux);
        free(sv->out);
    }
    free(sv);
}

/* Fills mask from (axes, n_axes); n_axes 0 selects every axis. */
static tg_status parse_axes(const int *axes, int n_axes, int ndim,
                            bool *mask)
{
    memset(mask, 0, TG_MAX_DIMS * sizeof *mask);
    if (n_axes < 0 || (n_axes > 0 && !axes))
        return tg_error_here(TG_ERR_ARG, "n_axes is %d with axes %s; n_axes must be >= 0, "
                             "and axes non-NULL when it is > 0",
                             n_axes, axes ? "given" : "NULL");
    /* distinct axes are at most ndim: a larger count is a wrong count, and
     * reading that many entries would run past the caller's array */
    if (n_axes > ndim)
        return tg_error_here(TG_ERR_ARG, "n_axes is %d but x has %d dim%s; at most %d "
                             "distinct axes can be given", n_axes, ndim, ndim == 1 ? "" : "s",
                             ndim);
    if (n_axes == 0) {
        for (int d = 0; d < ndim; d++)
            mask[d] = true;
        return TG_OK;
    }
    for (int i = 0; i < n_axes; i++) {
        int a;
        if (tg_norm_axis(axes[i], ndim, &a) != TG_OK)
            return TG_ERR_RANGE;
        if (mask[a])
            return tg_error_here(TG_ERR_ARG, "axis %d given twice", axes[i]);
        mask[a] = true;
    }
    return TG_OK;
}

static const tg_op_vtable *red_vtable(red_kind k);

static bool is_extremum(red_kind k) { return k == RED_MAX || k == RED_MIN; }
static bool is_moment(red_kind k) { return k == RED_VAR || k == RED_STD; }

static tg_tensor *reduce(red_kind k, tg_tensor *x, const int *axes, int n_axes,
                         bool keepdim, int correction)
{
    tg_op_call c;
    if (!tg_op_begin(&c, red_vtable(k), red_who[k], &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    /* the kernel needs the reduced shape (and max its argmax) anyway: the saved
     * state is made for every call, and freed by tg_op_end when not recorded */
    reduce_saved *sv = c.saved = calloc(1, sizeof *sv);
    if (!sv)
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), tg_op_fail(&c);
    sv->kind = k;
    sv->keepdim = keepdim;
    sv->correction = correction;
    if (is_moment(k) && correction < 0)
        return tg_error_here(TG_ERR_ARG, "correction must be >= 0, not %d", correction),
               tg_op_fail(&c);
    if (parse_axes(axes, n_axes, x->ndim, sv->mask) != TG_OK)
        return tg_op_fail(&c);
    int ondim = 0;
    int64_t oshape[TG_MAX_DIMS], kstrides[TG_MAX_DIMS];
    sv->count = 1;
    for (int d = 0; d < x->ndim; d++) {
        sv->kshape[d] = sv->mask[d] ? 1 : x->shape[d];
        if (sv->mask[d])
            sv->count *= x->shape[d];
        if (keepdim || !sv->mask[d])
            oshape[ondim++] = sv->kshape[d];
    }
    int64_t nout = tg_shape_numel(x->ndim, sv->kshape);
    char buf[128];
    if (is_extremum(k) && sv->count == 0 && nout > 0)
        return tg_error_here(TG_ERR_SHAPE, "cannot take the %s of empty groups of %s",
                             k == RED_MAX ? "max" : "min",
                             tg_shape_str(buf, sizeof buf, x->ndim, x->shape)),
               tg_op_fail(&c);
    if (is_moment(k) && sv->count - correction <= 0 && nout > 0)
        return tg_error_here(TG_ERR_SHAPE,
                             "groups of %lld element%s of %s have no variance with "
                             "correction %d (n - correction must be positive)",
                             (long long)sv->count, sv->count == 1 ? "" : "s",
                             tg_shape_str(buf, sizeof buf, x->ndim, x->shape), correction),
               tg_op_fail(&c);
    size_t nb = (size_t)(nout > 0 ? nout : 1);
    tg_tensor *y = tg_op_output(&c, x->dtype, ondim, oshape);
    double *acc = calloc(nb, sizeof *acc);
    if (is_extremum(k) || k == RED_PROD)
        sv->argmax = calloc(nb, sizeof *sv->argmax);
    if (k == RED_PROD || is_moment(k))
        sv->aux = calloc(nb, sizeof *sv->aux);
    if (k == RED_STD)
        sv->out = calloc(nb, sizeof *sv->out);
    if (!y || !acc || ((is_extremum(k) || k == RED_PROD) && !sv->argmax) ||
        ((k == RED_PROD || is_moment(k)) && !sv->aux) || (k == RED_STD && !sv->out)) {
        free(acc);
        tg_error_here(TG_ERR_NOMEM, "out of memory");
        return tg_op_fail(&c);
    }
    if (tg_tensor_settle(x) != TG_OK) { /* the loop below reads x's storage plain */
        free(acc);
        return tg_op_fail(&c);
    }

    /* y's contiguous layout equals that of kshape; reduced axes get stride 0 */
    tg_contiguous_strides(x->ndim, sv->kshape, kstrides);
    int64_t st[2][TG_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        st[0][d] = x->strides[d];
        st[1][d] = sv->mask[d] ? 0 : kstrides[d];
    }
    if (is_extremum(k))
        for (int64_t o = 0; o < nout; o++)
            acc[o] = k == RED_MAX ? -INFINITY : INFINITY, sv->argmax[o] = -1;
    if (k == RED_PROD)
        for (int64_t o = 0; o < nout; o++)
            sv->aux[o] = 1.0;
    const float *pf = tg_storage_data(x->storage);
    const double *pd = tg_storage_data(x->storage);
    /* moments take two passes: the mean, then the squared deviations from it */
    for (int pass = 0; pass < (is_moment(k) ? 2 : 1) && tg_tensor_numel(x) > 0; pass++) {
        int64_t off[2] = {x->offset, 0}, idx[TG_MAX_DIMS] = {0};
        int64_t i = 0; /* the input's row-major flat index */
        do {
            double v = x->dtype == TG_F32 ? pf[off[0]] : pd[off[0]];
            double *a = &acc[off[1]];
            if (k == RED_SUM || k == RED_MEAN || (is_moment(k) && pass == 0)) {
                *a += v;
            } else if (is_moment(k)) {
                double dv = v - sv->aux[off[1]];
                *a += dv * dv;
            } else if (k == RED_PROD) {
                if (v == 0)
                    sv->argmax[off[1]]++;
                else
                    sv->aux[off[1]] *= v;
            } else if (sv->argmax[off[1]] < 0 || (k == RED_MAX ? v > *a : v < *a) ||
                       (isnan(v) && !isnan(*a))) {
                /* strict comparison keeps the first extremum; a NaN wins, as in numpy */
                *a = v;
                sv->argmax[off[1]] = i;
            }
            i++;
        } while (tg_index_next(x->ndim, x->shape, idx, 2, off, st));
        if (is_moment(k) && pass == 0)
            for (int64_t o = 0; o < nout; o++)
                sv->aux[o] = acc[o] / (double)sv->count, acc[o] = 0;
    }
    for (int64_t o = 0; o < nout; o++) {
        double v = acc[o];
        if (k == RED_MEAN)
            v /= (double)sv->count;
        else if (k == RED_PROD)
            v = sv->argmax[o] > 0 ? 0.0 : sv->aux[o];
        else if (is_moment(k))
            v /= (double)(sv->count - correction);
        if (k == RED_STD)
            sv->out[o] = v = sqrt(v);
        if (x->dtype == TG_F32)
            TG_DATA(y, float)[o] = (float)v;
        else
            TG_DATA(y, double)[o] = v;
    }
    free(acc);
    return tg_op_end(&c);
}

tg_tensor *tg_sum(tg_tensor *x, const int *axes, int n_axes, bool keepdim)
{
    return reduce(RED_SUM, x, axes, n_axes, keepdim, 0);
}

tg_tensor *tg_mean(tg_tensor *x, const int *axes, int n_axes, bool keepdim)
{
    return reduce(RED_MEAN, x, axes, n_axes, keepdim, 0);
}

tg_tensor *tg_max(tg_tensor *x, const int *axes, int n_axes, bool keepdim)
{
    return reduce(RED_MAX, x, axes, n_axes, keepdim, 0);
}

tg_tensor *tg_min(tg_tensor *x, const int *axes, int n_axes, bool keepdim)
{
    return reduce(RED_MIN, x, axes, n_axes, keepdim, 0);
}

tg_tensor *tg_prod(tg_tensor *x, const int *axes, int n_axes, bool keepdim)
{
    return reduce(RED_PROD, x, axes, n_axes, keepdim, 0);
}

tg_tensor *tg_var(tg_tensor *x, const int *axes, int n_axes, bool keepdim, int correction)
{
    return reduce(RED_VAR, x, axes, n_axes, keepdim, correction);
}

tg_tensor *tg_std(tg_tensor *x, const int *axes, int n_axes, bool keepdim, int correction)
{
    return reduce(RED_STD, x, axes, n_axes, keepdim, correction);
}

/* ---------------------------------------------------------------- backward */

/* prod, var, std: dx[i] from x[i] and its group's g and saved figures. */
static tg_status elementwise_backward(const reduce_saved *sv, tg_tensor *x, tg_tensor *g,
                                      tg_tensor *gx, tg_tensor **gin)
{
    if (tg_tensor_settle(x) != TG_OK) {
        tg_release(gx);
        return tg_last_status();
    }
    int64_t kstrides[TG_MAX_DIMS];
    tg_contiguous_strides(x->ndim, sv->kshape, kstrides);
    /* operands: x, g (stride 0 over the reduced axes), the group index */
    int64_t st[3][TG_MAX_DIMS], off[3] = {x->offset, g->offset, 0}, idx[TG_MAX_DIMS] = {0};
    for (int d = 0, gd = 0; d < x->ndim; d++) {
        bool in_g = sv->keepdim || !sv->mask[d];
        st[0][d] = x->strides[d];
        st[1][d] = sv->mask[d] ? 0 : g->strides[gd];
        st[2][d] = sv->mask[d] ? 0 : kstrides[d];
        gd += in_g;
    }
    bool f32 = x->dtype == TG_F32;
    const float *xf = tg_storage_data(x->storage), *gf = tg_storage_data(g->storage);
    const double *xd = tg_storage_data(x->storage), *gdp = tg_storage_data(g->storage);
    double denom = (double)(sv->count - sv->correction);
    int64_t i = 0;
    do {
        double v = f32 ? xf[off[0]] : xd[off[0]], gv = f32 ? gf[off[1]] : gdp[off[1]];
        int64_t o = off[2];
        double d;
        if (sv->kind == RED_PROD) {
            /* product of the others: with no zero in the group p / v; with one
             * zero, the non-zero product at the zero and 0 elsewhere; more, 0 */
            int64_t zeros = sv->argmax[o];
            d = zeros == 0 ? sv->aux[o] / v : zeros == 1 && v == 0 ? sv->aux[o] : 0.0;
        } else if (sv->kind == RED_VAR) {
            d = 2.0 * (v - sv->aux[o]) / denom;
        } else {
            d = sv->out[o] > 0 ? (v - sv->aux[o]) / (denom * sv->out[o]) : 0.0;
        }
        if (f32)
            TG_DATA(gx, float)[i] = (float)(gv * d);
        else
            TG_DATA(gx, double)[i] = gv * d;
        i++;
    } while (tg_index_next(x->ndim, x->shape, idx, 3, off, st));
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

static tg_status reduce_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const reduce_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    tg_tensor *gx = tg_tensor_new_named("reduce backward", x->dtype, x->ndim, x->shape);
    if (!gx)
        return tg_last_status();
    int64_t n = tg_tensor_numel(x);
    if (tg_tensor_settle(g) != TG_OK) { /* read plain below */
        tg_release(gx);
        return tg_last_status();
    }
    if (is_extremum(sv->kind)) {
        /* scatter each group's gradient onto its first maximum */
        tg_tensor *gc = tg_contiguous_owned(g);
        if (!gc) {
            tg_release(gx);
            return tg_last_status();
        }
        int64_t nout = tg_shape_numel(x->ndim, sv->kshape);
        memset(tg_tensor_ptr(gx), 0, (size_t)n * tg_dtype_size(x->dtype));
        for (int64_t o = 0; o < nout; o++) {
            if (x->dtype == TG_F32)
                TG_DATA(gx, float)[sv->argmax[o]] += TG_DATA(gc, float)[o];
            else
                TG_DATA(gx, double)[sv->argmax[o]] += TG_DATA(gc, double)[o];
        }
        tg_release(gc);
    } else if (n > 0 && (sv->kind == RED_PROD || is_moment(sv->kind))) {
        return elementwise_backward(sv, x, g, gx, gin);
    } else if (n > 0) {
        /* broadcast g back over the reduced axes: read g with stride 0 there */
        double scale = sv->kind == RED_MEAN ? 1.0 / (double)sv->count : 1.0;
        int64_t st[1][TG_MAX_DIMS], off[1] = {g->offset}, idx[TG_MAX_DIMS] = {0};
        for (int d = 0, gd = 0; d < x->ndim; d++) {
            bool in_g = sv->keepdim || !sv->mask[d];
            st[0][d] = sv->mask[d] ? 0 : g->strides[gd];
            gd += in_g;
        }
        int64_t i = 0;
        if (x->dtype == TG_F32) {
            const float *pg = tg_storage_data(g->storage);
            float *po = tg_tensor_ptr(gx);
            do po[i++] = (float)(pg[off[0]] * scale);
            while (tg_index_next(x->ndim, x->shape, idx, 1, off, st));
        } else {
            const double *pg = tg_storage_data(g->storage);
            double *po = tg_tensor_ptr(gx);
            do po[i++] = pg[off[0]] * scale;
            while (tg_index_next(x->ndim, x->shape, idx, 1, off, st));
        }
    }
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

/* DOT detail: "axes [0, 2] keepdim" or "all axes". */
static void reduce_describe(const tg_node *node, char *buf, size_t n)
{
    const reduce_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (!sv || node->released)
        return;
    const tg_tensor *x = node->inputs[0];
    int n_red = 0;
    for (int d = 0; d < x->ndim; d++)
        n_red += sv->mask[d];
    size_t len = 0;
    if (n_red == x->ndim) {
        len = (size_t)snprintf(buf, n, "all axes");
    } else {
        len = (size_t)snprintf(buf, n, "axes [");
        for (int d = 0, first = 1; d < x->ndim && len < n; d++)
            if (sv->mask[d]) {
                len += (size_t)snprintf(buf + len, n - len, "%s%d", first ? "" : ", ", d);
                first = 0;
            }
        if (len < n)
            len += (size_t)snprintf(buf + len, n - len, "]");
    }
    if (sv->keepdim && len < n)
        len += (size_t)snprintf(buf + len, n - len, " keepdim");
    if (is_moment(sv->kind) && len < n)
        snprintf(buf + len, n - len, " correction %d", sv->correction);
}

const tg_op_vtable tg_op_sum_vtable = {"sum", reduce_backward, reduce_free, reduce_describe,
                                       0, TG_OP_ALL_INPUTS};
const tg_op_vtable tg_op_mean_vtable = {"mean", reduce_backward, reduce_free,
                                        reduce_describe, 0, TG_OP_ALL_INPUTS};
/* ties would make the gradient depend on which maximum comes first */
const tg_op_vtable tg_op_max_vtable = {"max", reduce_backward, reduce_free, reduce_describe,
                                       TG_GC_DISTINCT, TG_OP_ALL_INPUTS};

const tg_op_vtable tg_op_min_vtable = {"min", reduce_backward, reduce_free, reduce_describe,
                                       TG_GC_DISTINCT, TG_OP_ALL_INPUTS};
/* prod, var and std read x's values in backward (shape_only_inputs 0: a write
 * to x after the call makes backward refuse). The gradient of prod at an exact
 * zero is a different formula: keep gradcheck inputs off it. */
const tg_op_vtable tg_op_prod_vtable = {"prod", reduce_backward, reduce_free, reduce_describe,
                                        TG_GC_AWAY_FROM_KINK, 0};
const tg_op_vtable tg_op_var_vtable = {"var", reduce_backward, reduce_free, reduce_describe,
                                       0, 0};
/* sqrt is not differentiable at a zero variance: distinct inputs keep it positive */
const tg_op_vtable tg_op_std_vtable = {"std", reduce_backward, reduce_free, reduce_describe,
                                       TG_GC_DISTINCT, 0};

static const tg_op_vtable *red_vtable(red_kind k)
{
    static const tg_op_vtable *const vt[] = {&tg_op_sum_vtable,  &tg_op_mean_vtable,
                                             &tg_op_max_vtable,  &tg_op_min_vtable,
                                             &tg_op_prod_vtable, &tg_op_var_vtable,
                                             &tg_op_std_vtable};
    return vt[k];
}
