/* ops/pad.c -- constant padding of the two last axes of (N, C, H, W).
 *
 *   y[n,c,i,j] = x[n,c,i-pt,j-pl] inside, `value` in the border
 *   dL/dx[n,c,h,v] = g[n,c,h+pt,v+pl]
 *
 * A copy with no arithmetic, the same in f32 and f64 on every backend (rows are
 * copied with memcpy), so it has no oneDNN kernel: oneDNN 2.6 has no padding
 * primitive, and a reorder into a sub-memory would still need the border
 * filled. The planes are shared out among the threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

typedef struct pad_saved {
    int pad[4]; /* top, bottom, left, right */
    double value;
} pad_saved;

static void fill(void *p, int64_t n, tg_dtype dt, double value)
{
    if (dt == TG_F32) {
        float *f = p, v = (float)value;
        for (int64_t i = 0; i < n; i++)
            f[i] = v;
    } else {
        double *d = p;
        for (int64_t i = 0; i < n; i++)
            d[i] = value;
    }
}

tg_tensor *tg_pad2d(tg_tensor *x, const int pad[4], double value)
{
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_pad2d_vtable, "tg_pad2d", &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    if (!pad)
        return tg_null_arg_here("pad"), tg_op_fail(&c);
    char sx[96];
    tg_shape_str(sx, sizeof sx, x->ndim, x->shape);
    if (x->ndim != 4)
        return tg_error_here(TG_ERR_SHAPE, "input must be 4-D (N, C, H, W), got %s", sx),
               tg_op_fail(&c);
    for (int i = 0; i < 4; i++)
        if (pad[i] < 0)
            return tg_error_here(TG_ERR_ARG,
                                 "padding (top %d, bottom %d, left %d, right %d) must be "
                                 ">= 0 (input %s)", pad[0], pad[1], pad[2], pad[3], sx),
                   tg_op_fail(&c);
    int64_t n = x->shape[0], ch = x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t oh = h + pad[0] + pad[1], ow = w + pad[2] + pad[3];
    tg_tensor *y = tg_op_output(&c, x->dtype, 4, (const int64_t[]){n, ch, oh, ow});
    pad_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    if (sv) {
        memcpy(sv->pad, pad, sizeof sv->pad);
        sv->value = value;
    }
    if (tg_tensor_numel(y) > 0) {
        tg_tensor *xc = tg_contiguous_owned(x);
        if (!xc)
            return tg_op_fail(&c);
        const char *xp = tg_tensor_ptr(xc);
        char *yp = tg_tensor_ptr(y);
        size_t es = tg_dtype_size(x->dtype);
        tg_dtype dt = x->dtype;
        int pt = pad[0], pl = pad[2], pr = pad[3];
        #pragma omp parallel for schedule(static)
        for (int64_t p = 0; p < n * ch; p++) {
            const char *xs = xp + (size_t)(p * h * w) * es;
            char *ys = yp + (size_t)(p * oh * ow) * es;
            for (int64_t i = 0; i < oh; i++) {
                char *row = ys + (size_t)(i * ow) * es;
                if (i < pt || i >= pt + h) {
                    fill(row, ow, dt, value);
                    continue;
                }
                fill(row, pl, dt, value);
                memcpy(row + (size_t)pl * es, xs + (size_t)((i - pt) * w) * es, (size_t)w * es);
                fill(row + (size_t)(pl + w) * es, pr, dt, value);
            }
        }
        tg_release(xc);
    }
    return tg_op_end(&c);
}

static tg_status pad_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const pad_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    tg_tensor *gc = tg_contiguous_owned(g);
    tg_tensor *gx = gc ? tg_tensor_new_owned(x->dtype, 4, x->shape) : NULL;
    if (!gx) {
        tg_release(gc);
        return tg_last_status();
    }
    int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t oh = g->shape[2], ow = g->shape[3];
    const char *gp = tg_tensor_ptr(gc);
    char *xp = tg_tensor_ptr(gx);
    size_t es = tg_dtype_size(x->dtype);
    int pt = sv->pad[0], pl = sv->pad[2];
    #pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < h; i++)
            memcpy(xp + (size_t)((p * h + i) * w) * es,
                   gp + (size_t)((p * oh + i + pt) * ow + pl) * es, (size_t)w * es);
    tg_release(gc);
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

/* "t1 b1 l2 r2", and the value when it is not 0. */
static void pad_describe(const tg_node *node, char *buf, size_t n)
{
    const pad_saved *sv = node->saved;
    if (!sv) {
        if (n)
            buf[0] = '\0';
        return;
    }
    if (sv->value != 0.0)
        snprintf(buf, n, "t%d b%d l%d r%d =%g", sv->pad[0], sv->pad[1], sv->pad[2], sv->pad[3],
                 sv->value);
    else
        snprintf(buf, n, "t%d b%d l%d r%d", sv->pad[0], sv->pad[1], sv->pad[2], sv->pad[3]);
}

const tg_op_vtable tg_op_pad2d_vtable = {
    .name = "pad2d",
    .backward = pad_backward,
    .describe = pad_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = TG_OP_ALL_INPUTS,
};
