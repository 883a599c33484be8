/* ops/shape.c -- the views users get, all differentiable: reshape (and flatten,
 * squeeze, unsqueeze and contiguous, which record as reshape), permute (and
 * transpose), slice.
 *
 *   reshape: y = x viewed with a new shape         dx = reshape(g, shape of x)
 *   permute: y[i_perm[0], ...] = x[i_0, ...]       dx = permute(g, inverse perm)
 *   slice:   y = x[..., start:end:step, ...] along dim   dx = zeros with g at start:end:step
 *
 * Outputs share x's storage when the strides allow; a reshape that no strides can
 * express (of some non-contiguous views) copies x first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

/* ---------------------------------------------------------------- reshape */

/* The reshape node behind reshape, flatten, squeeze and unsqueeze. */
static tg_tensor *reshape_impl(const char *who, tg_tensor *x, int ndim, const int64_t *shape)
{
    int64_t ns[TG_MAX_DIMS], nst[TG_MAX_DIMS];
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_reshape_vtable, who, &x, 1, "x", 0))
        return NULL;
    if (tg_reshape_shape(x, ndim, shape, ns) != TG_OK)
        return tg_op_fail(&c);
    if (tg_view_strides(x, ndim, ns, nst)) {
        c.out = tg_tensor_view_owned(x, ndim, ns, nst, x->offset);
    } else {
        tg_tensor *xc = tg_contiguous_owned(x);
        if (!xc)
            return tg_op_fail(&c);
        tg_contiguous_strides(ndim, ns, nst);
        c.out = tg_tensor_view_owned(xc, ndim, ns, nst, xc->offset);
        tg_release(xc);
    }
    return tg_op_end(&c);
}

tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape)
{
    if (!x)
        return tg_null_arg("tg_reshape", "x"), NULL;
    return reshape_impl("tg_reshape", x, ndim, shape);
}

static tg_tensor *flatten_impl(tg_tensor *x, int start_dim, int end_dim)
{
    static const char who[] = "tg_flatten";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    /* a 0-d x flattens to [1], as numpy's ravel does */
    int s, e, n = x->ndim > 0 ? x->ndim : 1;
    if (tg_norm_axis(start_dim, n, &s) != TG_OK ||
        tg_norm_axis(end_dim, n, &e) != TG_OK)
        return NULL;
    if (s > e)
        return tg_error(TG_ERR_ARG, "%s: start_dim %d comes after end_dim %d", who,
                        start_dim, end_dim), NULL;
    if (x->ndim == 0)
        return reshape_impl(who, x, 1, (const int64_t[]){1});
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d <= s || d > e)
            shape[nd++] = x->shape[d];
        else
            shape[nd - 1] *= x->shape[d];
    }
    return reshape_impl(who, x, nd, shape);
}

tg_tensor *tg_flatten(tg_tensor *x, int start_dim, int end_dim)
{
    const char *prev = tg_error_enter("tg_flatten");
    tg_tensor *r = flatten_impl(x, start_dim, end_dim);
    tg_error_leave(prev);
    return r;
}

static tg_tensor *squeeze_impl(tg_tensor *x, int dim)
{
    static const char who[] = "tg_squeeze";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    int d0;
    if (tg_norm_axis(dim, x->ndim, &d0) != TG_OK)
        return NULL;
    if (x->shape[d0] != 1) {
        char buf[128];
        return tg_error(TG_ERR_SHAPE, "%s: dim %d of %s has extent %lld, not 1", who, dim,
                        tg_shape_str(buf, sizeof buf, x->ndim, x->shape),
                        (long long)x->shape[d0]), NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != d0)
            shape[nd++] = x->shape[d];
    return reshape_impl(who, x, nd, shape);
}

tg_tensor *tg_squeeze(tg_tensor *x, int dim)
{
    const char *prev = tg_error_enter("tg_squeeze");
    tg_tensor *r = squeeze_impl(x, dim);
    tg_error_leave(prev);
    return r;
}

static tg_tensor *unsqueeze_impl(tg_tensor *x, int dim)
{
    static const char who[] = "tg_unsqueeze";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    if (x->ndim >= TG_MAX_DIMS)
        return tg_error(TG_ERR_SHAPE, "%s: a %d-D tensor cannot gain a dim (max %d)", who,
                        x->ndim, TG_MAX_DIMS), NULL;
    int d0;
    if (tg_norm_axis(dim, x->ndim + 1, &d0) != TG_OK)
        return NULL;
    int64_t shape[TG_MAX_DIMS];
    for (int d = 0, src = 0; d <= x->ndim; d++)
        shape[d] = d == d0 ? 1 : x->shape[src++];
    return reshape_impl(who, x, x->ndim + 1, shape);
}

tg_tensor *tg_unsqueeze(tg_tensor *x, int dim)
{
    const char *prev = tg_error_enter("tg_unsqueeze");
    tg_tensor *r = unsqueeze_impl(x, dim);
    tg_error_leave(prev);
    return r;
}

/* x itself when already contiguous (no node: it is the same tensor), else a
 * contiguous copy recorded as an identity reshape, whose backward hands g on. */
tg_tensor *tg_contiguous(tg_tensor *x)
{
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_reshape_vtable, "tg_contiguous", &x, 1, "x", 0))
        return NULL;
    if (tg_tensor_is_contiguous(x)) { /* x itself, not recorded */
        c.out = tg_retain(x);
        c.record = false;
        return tg_op_end(&c);
    }
    c.out = tg_contiguous_owned(x);
    return tg_op_end(&c);
}

static tg_status reshape_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    const tg_tensor *x = node->inputs[0];
    if (tg_node_needs_grad(node, 0) && !(gin[0] = tg_reshape(g, x->ndim, x->shape)))
        return tg_last_status();
    return TG_OK;
}

/* DOT detail: "[2, 3] -> [6]". */
static void reshape_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *x = node->inputs[0];
    char sx[96], sy[96];
    snprintf(buf, n, "%s -> %s", tg_shape_str(sx, sizeof sx, x->ndim, x->shape),
             tg_shape_str(sy, sizeof sy, node->out_ndim, node->out_shape));
}

const tg_op_vtable tg_op_reshape_vtable = {"reshape", reshape_backward, NULL,
                                           reshape_describe, 0, TG_OP_ALL_INPUTS};

/* ---------------------------------------------------------------- permute */

typedef struct permute_saved {
    int ndim;
    int perm[TG_MAX_DIMS];
} permute_saved;

static tg_tensor *permute_impl(const char *who, tg_tensor *x, const int *perm)
{
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_permute_vtable, who, &x, 1, "x", 0))
        return NULL;
    if (x->ndim > 0 && !perm)
        return tg_null_arg(who, "perm"), tg_op_fail(&c);
    permute_saved p = {.ndim = x->ndim};
    bool seen[TG_MAX_DIMS] = {false};
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int d;
        if (tg_norm_axis(perm[i], x->ndim, &d) != TG_OK)
            return tg_op_fail(&c);
        if (seen[d])
            return tg_error(TG_ERR_ARG, "%s: perm names dim %d twice", who, d), tg_op_fail(&c);
        seen[d] = true;
        p.perm[i] = d;
        shape[i] = x->shape[d];
        strides[i] = x->strides[d];
    }
    permute_saved *sv = tg_op_save(&c, sizeof *sv);
    if (c.record && !sv)
        return tg_op_fail(&c);
    if (sv)
        *sv = p;
    c.out = tg_tensor_view_owned(x, x->ndim, shape, strides, x->offset);
    return tg_op_end(&c);
}

tg_tensor *tg_permute(tg_tensor *x, const int *perm)
{
    if (!x)
        return tg_null_arg("tg_permute", "x"), NULL;
    return permute_impl("tg_permute", x, perm);
}

static tg_tensor *transpose_impl(tg_tensor *x, int dim0, int dim1)
{
    static const char who[] = "tg_transpose";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    int d0, d1, perm[TG_MAX_DIMS];
    if (tg_norm_axis(dim0, x->ndim, &d0) != TG_OK ||
        tg_norm_axis(dim1, x->ndim, &d1) != TG_OK)
        return NULL;
    for (int d = 0; d < x->ndim; d++)
        perm[d] = d;
    perm[d0] = d1;
    perm[d1] = d0;
    return permute_impl(who, x, perm);
}

tg_tensor *tg_transpose(tg_tensor *x, int dim0, int dim1)
{
    const char *prev = tg_error_enter("tg_transpose");
    tg_tensor *r = transpose_impl(x, dim0, dim1);
    tg_error_leave(prev);
    return r;
}

static tg_status permute_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const permute_saved *sv = node->saved;
    int inv[TG_MAX_DIMS];
    for (int i = 0; i < sv->ndim; i++)
        inv[sv->perm[i]] = i;
    return (gin[0] = tg_permute(g, inv)) ? TG_OK : tg_last_status();
}

/* DOT detail: "(0, 2, 1)". */
static void permute_describe(const tg_node *node, char *buf, size_t n)
{
    const permute_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (!sv || node->released)
        return;
    size_t len = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < sv->ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? ", " : "", sv->perm[i]);
    if (len < n)
        snprintf(buf + len, n - len, ")");
}

const tg_op_vtable tg_op_permute_vtable = {"permute", permute_backward, NULL,
                                           permute_describe, 0, TG_OP_ALL_INPUTS};

/* ---------------------------------------------------------------- slice */

typedef struct slice_saved {
    int dim;
    int64_t start, end, step;
} slice_saved;

tg_tensor *tg_slice_step(tg_tensor *x, int dim, int64_t start, int64_t end, int64_t step)
{
    static const char who[] = "tg_slice";
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_slice_vtable, who, &x, 1, "x", 0))
        return NULL;
    int d;
    if (tg_norm_axis(dim, x->ndim, &d) != TG_OK)
        return tg_op_fail(&c);
    if (step < 1)
        return tg_error_here(TG_ERR_ARG, "step must be at least 1, not %lld", (long long)step),
               tg_op_fail(&c);
    int64_t len = x->shape[d];
    int64_t s = start < 0 ? start + len : start, e = end < 0 ? end + len : end;
    if (s < 0 || e > len || s > e) {
        char buf[128];
        return tg_error(TG_ERR_RANGE, "%s: range %lld..%lld out of bounds for dim %d of %s",
                        who, (long long)start, (long long)end, dim,
                        tg_shape_str(buf, sizeof buf, x->ndim, x->shape)), tg_op_fail(&c);
    }
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    memcpy(strides, x->strides, sizeof strides);
    shape[d] = (e - s + step - 1) / step;
    strides[d] *= step;
    c.out = tg_tensor_view_owned(x, x->ndim, shape, strides, x->offset + s * x->strides[d]);
    slice_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!c.out || (c.record && !sv))
        return tg_op_fail(&c);
    if (sv)
        *sv = (slice_saved){d, s, e, step};
    return tg_op_end(&c);
}

tg_tensor *tg_slice(tg_tensor *x, int dim, int64_t start, int64_t end)
{
    return tg_slice_step(x, dim, start, end, 1);
}

static tg_status slice_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const slice_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    tg_tensor *gx = tg_zeros(x->dtype, x->ndim, x->shape);
    if (!gx)
        return tg_last_status();
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    memcpy(strides, gx->strides, sizeof strides);
    shape[sv->dim] = (sv->end - sv->start + sv->step - 1) / sv->step;
    strides[sv->dim] *= sv->step;
    tg_tensor *win = tg_tensor_view_owned(gx, x->ndim, shape, strides,
                                          gx->offset + sv->start * gx->strides[sv->dim]);
    tg_status st = win ? tg_tensor_copy_into(win, g) : tg_last_status();
    tg_release(win);
    if (st == TG_OK)
        gin[0] = gx;
    return st;
}

/* DOT detail: "dim 1 [2:5]", "dim 0 [0:8:2]". */
static void slice_describe(const tg_node *node, char *buf, size_t n)
{
    const slice_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (sv && !node->released && sv->step == 1)
        snprintf(buf, n, "dim %d [%lld:%lld]", sv->dim, (long long)sv->start,
                 (long long)sv->end);
    else if (sv && !node->released)
        snprintf(buf, n, "dim %d [%lld:%lld:%lld]", sv->dim, (long long)sv->start,
                 (long long)sv->end, (long long)sv->step);
}

const tg_op_vtable tg_op_slice_vtable = {"slice", slice_backward, NULL, slice_describe, 0,
                                         TG_OP_ALL_INPUTS};
