/* ops/gather.c -- picking elements by integer indices.
 *
 *   index_select (x, dim, index (K)):  y[..., j, ...] = x[..., index[j], ...]
 *       dx = zeros; dx[..., index[j], ...] += g[..., j, ...]
 *   gather (x, dim, index, index.ndim == x.ndim):
 *       y[i_0, ..., i_dim, ...] = x[i_0, ..., index[i_0, ..., i_dim, ...], ...]
 *       dx = zeros; dx[..., index[i], ...] += g[i]          (torch.gather)
 *
 * Indices are i32 or i64 and may be negative (from the end, as ONNX's Gather);
 * a repeated index sums its gradients. Forward takes any dtype (integer labels
 * too); only floating inputs can require grad. Indices are copied (int64) at the
 * call, so the index tensor may change afterwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

typedef struct gather_saved {
    int dim;
    int64_t *index; /* normalised copy, index's shape row-major */
} gather_saved;

static void gather_free(void *p)
{
    gather_saved *sv = p;
    if (sv)
        free(sv->index);
    free(sv);
}

/* A normalised int64 copy of index (malloc'd; n elements), every value in
 * -extent..extent-1 mapped into 0..extent-1; NULL with the error set. */
static int64_t *read_index(const tg_tensor *index, int64_t extent, int dim)
{
    if (index->dtype != TG_I32 && index->dtype != TG_I64)
        return tg_error_here(TG_ERR_DTYPE, "index must be i32 or i64, not %s",
                             tg_dtype_name(index->dtype)), NULL;
    int64_t n = tg_tensor_numel(index);
    int64_t *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!out)
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    if (tg_tensor_settle(index) != TG_OK) {
        free(out);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = tg_get_flat(index, i);
        int64_t k = (int64_t)v;
        if (k < -extent || k >= extent) {
            tg_error_here(TG_ERR_RANGE, "index %lld at position %lld is out of range for dim "
                          "%d of extent %lld", (long long)k, (long long)i, dim,
                          (long long)extent);
            free(out);
            return NULL;
        }
        out[i] = k < 0 ? k + extent : k;
    }
    return out;
}

/* Row-major extents around dim: outer (before), the dim itself, inner (after). */
static void split_at(int ndim, const int64_t *shape, int d, int64_t *outer, int64_t *inner)
{
    *outer = tg_shape_numel(d, shape);
    *inner = tg_shape_numel(ndim - d - 1, shape + d + 1);
}

/* ---------------------------------------------------------------- index_select */

tg_tensor *tg_index_select(tg_tensor *x, int dim, tg_tensor *index)
{
    static const char who[] = "tg_index_select";
    tg_tensor *in[2] = {x, index};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_index_select_vtable, who, in, 2, "x index", 0))
        return NULL;
    int d;
    char sb[128];
    if (tg_norm_axis(dim, x->ndim, &d) != TG_OK)
        return tg_op_fail(&c);
    if (index->ndim != 1)
        return tg_error_here(TG_ERR_SHAPE, "index must be 1-D, got shape %s",
                             tg_shape_str(sb, sizeof sb, index->ndim, index->shape)),
               tg_op_fail(&c);
    int64_t *idx = read_index(index, x->shape[d], dim);
    if (!idx)
        return tg_op_fail(&c);
    int64_t k = index->shape[0], shape[TG_MAX_DIMS], outer, inner;
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = k;
    split_at(x->ndim, x->shape, d, &outer, &inner);
    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, shape);
    tg_tensor *xc = y ? tg_contiguous_owned(x) : NULL;
    gather_saved *sv = xc ? tg_op_save(&c, sizeof *sv) : NULL;
    if (!xc || (c.record && !sv)) {
        tg_release(xc);
        free(idx);
        return tg_op_fail(&c);
    }
    size_t es = tg_dtype_size(x->dtype), row = (size_t)inner * es;
    const char *src = tg_tensor_ptr(xc);
    char *dst = tg_tensor_ptr(y);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            memcpy(dst + (size_t)(o * k + j) * row,
                   src + (size_t)(o * x->shape[d] + idx[j]) * row, row);
    tg_release(xc);
    if (sv)
        *sv = (gather_saved){d, idx};
    else
        free(idx);
    return tg_op_end(&c);
}

#define SCATTER_ADD(T)                                                              \
    do {                                                                            \
        const T *pg = tg_tensor_ptr(gc);                                            \
        T *px = tg_tensor_ptr(gx);                                                  \
        for (int64_t o = 0; o < outer; o++)                                         \
            for (int64_t j = 0; j < k; j++)                                         \
                for (int64_t i = 0; i < inner; i++)                                 \
                    px[(o * ext + sv->index[j]) * inner + i] += pg[(o * k + j) * inner + i]; \
    } while (0)

static tg_status index_select_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const gather_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    int64_t outer, inner, k = g->shape[sv->dim], ext = x->shape[sv->dim];
    split_at(x->ndim, x->shape, sv->dim, &outer, &inner);
    tg_tensor *gx = tg_zeros(x->dtype, x->ndim, x->shape);
    tg_tensor *gc = gx ? tg_contiguous_owned(g) : NULL;
    if (!gc)
        return tg_last_status();
    if (x->dtype == TG_F32)
        SCATTER_ADD(float);
    else
        SCATTER_ADD(double);
    tg_release(gc);
    gin[0] = gx;
    return TG_OK;
}

/* DOT detail: "dim 1, 5 indices". */
static void gather_describe(const tg_node *node, char *buf, size_t n)
{
    const gather_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (sv && !node->released)
        snprintf(buf, n, "dim %d, %lld indices", sv->dim,
                 (long long)tg_tensor_numel(node->inputs[1]));
}

const tg_op_vtable tg_op_index_select_vtable = {
    "index_select", index_select_backward, gather_free, gather_describe, 0,
    TG_OP_ALL_INPUTS /* x: its shape only; index: a copy is saved */};

/* ---------------------------------------------------------------- gather */

/* Runs BODY for each element i of index (row-major) with src the flat row-major
 * offset, in a contiguous x, of the element it picks. */
#define GATHER_WALK(BODY)                                                           \
    do {                                                                            \
        int64_t pos[TG_MAX_DIMS] = {0}, xst[TG_MAX_DIMS];                           \
        tg_contiguous_strides(nd, xshape, xst);                                     \
        for (int64_t i = 0; i < n; i++) {                                           \
            int64_t src = 0;                                                        \
            for (int q = 0; q < nd; q++)                                            \
                src += (q == d ? idx[i] : pos[q]) * xst[q];                         \
            BODY;                                                                   \
            for (int q = nd - 1; q >= 0 && ++pos[q] == ishape[q]; q--)              \
                pos[q] = 0;                                                         \
        }                                                                           \
    } while (0)

tg_tensor *tg_gather(tg_tensor *x, int dim, tg_tensor *index)
{
    static const char who[] = "tg_gather";
    tg_tensor *in[2] = {x, index};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_gather_vtable, who, in, 2, "x index", 0))
        return NULL;
    int d;
    char sa[128], sb[128];
    if (tg_norm_axis(dim, x->ndim, &d) != TG_OK)
        return tg_op_fail(&c);
    bool ok = index->ndim == x->ndim;
    for (int q = 0; ok && q < x->ndim; q++)
        ok = q == d || index->shape[q] <= x->shape[q];
    if (!ok)
        return tg_error_here(TG_ERR_SHAPE, "index %s must have x's %d dims, each no larger "
                             "than x %s outside dim %d",
                             tg_shape_str(sb, sizeof sb, index->ndim, index->shape), x->ndim,
                             tg_shape_str(sa, sizeof sa, x->ndim, x->shape), dim),
               tg_op_fail(&c);
    int64_t *idx = read_index(index, x->shape[d], dim);
    if (!idx)
        return tg_op_fail(&c);
    tg_tensor *y = tg_op_output(&c, x->dtype, index->ndim, index->shape);
    tg_tensor *xc = y ? tg_contiguous_owned(x) : NULL;
    gather_saved *sv = xc ? tg_op_save(&c, sizeof *sv) : NULL;
    if (!xc || (c.record && !sv)) {
        tg_release(xc);
        free(idx);
        return tg_op_fail(&c);
    }
    int nd = x->ndim;
    const int64_t *xshape = x->shape, *ishape = index->shape;
    int64_t n = tg_tensor_numel(index);
    size_t es = tg_dtype_size(x->dtype);
    const char *src_p = tg_tensor_ptr(xc);
    char *dst = tg_tensor_ptr(y);
    GATHER_WALK(memcpy(dst + (size_t)i * es, src_p + (size_t)src * es, es));
    tg_release(xc);
    if (sv)
        *sv = (gather_saved){d, idx};
    else
        free(idx);
    return tg_op_end(&c);
}

static tg_status gather_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const gather_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    tg_tensor *gx = tg_zeros(x->dtype, x->ndim, x->shape);
    tg_tensor *gc = gx ? tg_contiguous_owned(g) : NULL;
    if (!gc)
        return tg_last_status();
    int nd = x->ndim, d = sv->dim;
    const int64_t *xshape = x->shape, *ishape = g->shape, *idx = sv->index;
    int64_t n = tg_tensor_numel(g);
    if (x->dtype == TG_F32) {
        const float *pg = tg_tensor_ptr(gc);
        float *px = tg_tensor_ptr(gx);
        GATHER_WALK(px[src] += pg[i]);
    } else {
        const double *pg = tg_tensor_ptr(gc);
        double *px = tg_tensor_ptr(gx);
        GATHER_WALK(px[src] += pg[i]);
    }
    tg_release(gc);
    gin[0] = gx;
    return TG_OK;
}

const tg_op_vtable tg_op_gather_vtable = {
    "gather", gather_backward, gather_free, gather_describe, 0,
    TG_OP_ALL_INPUTS /* x: its shape only; index: a copy is saved */};
