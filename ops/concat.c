/* ops/concat.c -- joins n tensors along one dim.
 *
 *   y = [x_0 | x_1 | ... | x_{n-1}] along dim; x_i occupies offsets o_i..o_i+len_i
 *   dx_i = g[..., o_i : o_i + len_i, ...]
 *
 * The node has n inputs (any n >= 1). Other extents and the dtypes must match.
 * Any dtype is accepted; only floating inputs can require grad. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

typedef struct concat_saved {
    int dim;
} concat_saved;

static tg_status check_inputs(tg_tensor *const *xs, int n, int dim,
                              int *d_out, int64_t *shape)
{
    if (!xs)
        return tg_null_arg_here("xs");
    if (n < 1)
        return tg_error_here(TG_ERR_ARG, "needs at least one tensor, got %d", n);
    for (int i = 0; i < n; i++)
        if (!xs[i]) {
            char arg[32];
            snprintf(arg, sizeof arg, "xs[%d]", i);
            return tg_null_arg_here(arg);
        }
    const tg_tensor *x0 = xs[0];
    int d;
    if (tg_norm_axis(dim, x0->ndim, &d) != TG_OK)
        return TG_ERR_RANGE;
    memcpy(shape, x0->shape, TG_MAX_DIMS * sizeof *shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = xs[i];
        if (x->dtype != x0->dtype)
            return tg_error_here(TG_ERR_DTYPE, "xs[%d] is %s but xs[0] is %s", i,
                                 tg_dtype_name(x->dtype), tg_dtype_name(x0->dtype));
        bool ok = x->ndim == x0->ndim;
        for (int k = 0; ok && k < x->ndim; k++)
            ok = k == d || x->shape[k] == x0->shape[k];
        if (!ok) {
            char s0[128], si[128];
            return tg_error_here(TG_ERR_SHAPE, "xs[%d] has shape %s, xs[0] %s; only dim %d "
                                 "may differ", i,
                                 tg_shape_str(si, sizeof si, x->ndim, x->shape),
                                 tg_shape_str(s0, sizeof s0, x0->ndim, x0->shape), dim);
        }
        /* empty tensors may have huge extents along dim; keep the sum exact */
        if (x->shape[d] > INT64_MAX - shape[d])
            return tg_error_here(TG_ERR_SHAPE, "the extents along dim %d add up to more than "
                                 "an int64_t holds", dim);
        shape[d] += x->shape[d];
    }
    *d_out = d;
    return TG_OK;
}

tg_tensor *tg_concat(tg_tensor *const *xs, int n, int dim)
{
    static const char who[] = "tg_concat";
    int d = 0;
    int64_t shape[TG_MAX_DIMS];
    /* first: its NULL checks name the input (xs[2]) */
    const char *prev = tg_error_enter(who); /* check_inputs names it; the frame comes after */
    tg_status checked = check_inputs(xs, n, dim, &d, shape);
    tg_error_leave(prev);
    if (checked != TG_OK)
        return NULL;
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_concat_vtable, who, xs, n, NULL, 0))
        return NULL;
    tg_tensor *y = tg_op_output(&c, xs[0]->dtype, xs[0]->ndim, shape);
    concat_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        /* copy x_i into its window of y */
        const tg_tensor *x = xs[i];
        tg_tensor *win = tg_tensor_view_owned(y, x->ndim, x->shape, y->strides,
                                              y->offset + at * y->strides[d]);
        tg_status st = win ? tg_tensor_copy_into(win, x) : tg_last_status();
        tg_release(win);
        if (st != TG_OK)
            return tg_op_fail(&c);
        at += x->shape[d];
    }
    if (sv)
        sv->dim = d;
    return tg_op_end(&c);
}

static tg_status concat_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    const concat_saved *sv = node->saved;
    int64_t at = 0;
    for (int i = 0; i < node->n_inputs; i++) {
        int64_t len = node->inputs[i]->shape[sv->dim];
        if (tg_node_needs_grad(node, i) && !(gin[i] = tg_slice(g, sv->dim, at, at + len)))
            return tg_last_status();
        at += len;
    }
    return TG_OK;
}

/* DOT detail: "dim 1, 3 inputs". */
static void concat_describe(const tg_node *node, char *buf, size_t n)
{
    const concat_saved *sv = node->saved;
    if (n == 0)
        return;
    buf[0] = '\0';
    if (sv && !node->released)
        snprintf(buf, n, "dim %d, %d inputs", sv->dim, node->n_inputs);
}

const tg_op_vtable tg_op_concat_vtable = {"concat", concat_backward, NULL, concat_describe,
                                          0, TG_OP_ALL_INPUTS};
