/* ops/argmax.c -- index of the first maximum along an axis, as i64.
 *
 *   y[..., ...] = min { j : x[..., j, ...] = max_j' x[..., j', ...] }
 *
 * Not differentiable: it never records a node (an index has no gradient), so it
 * has no row in the op table. Accepts every dtype; a NaN counts as the maximum, as
 * in numpy. */
#include <math.h>

#include "ops/ops_impl.h"

/* x viewed as (outer, len, inner), contiguous. */
#define ARGMAX_LOOP(T)                                                               \
    do {                                                                             \
        const T *px = tg_tensor_ptr(xc);                                             \
        for (int64_t o = 0; o < outer; o++)                                          \
            for (int64_t i = 0; i < inner; i++) {                                    \
                const T *row = px + o * len * inner + i;                             \
                int64_t best = 0;                                                    \
                for (int64_t j = 1; j < len; j++) {                                  \
                    T v = row[j * inner], b = row[best * inner];                     \
                    if (v > b || (isnan((double)v) && !isnan((double)b)))            \
                        best = j;                                                    \
                }                                                                    \
                py[o * inner + i] = best;                                            \
            }                                                                        \
    } while (0)

static tg_tensor *argmax_impl(tg_tensor *x, int axis, bool keepdim)
{
    static const char who[] = "tg_argmax";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    int ax;
    if (tg_norm_axis(axis, x->ndim, &ax) != TG_OK)
        return NULL;
    int64_t len = x->shape[ax];
    if (len == 0) {
        char buf[128];
        return tg_error(TG_ERR_SHAPE, "%s: axis %d of %s is empty", who, axis,
                        tg_shape_str(buf, sizeof buf, x->ndim, x->shape)), NULL;
    }
    int ondim = 0;
    int64_t oshape[TG_MAX_DIMS], outer = 1, inner = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < ax)
            outer *= x->shape[d];
        else if (d > ax)
            inner *= x->shape[d];
        if (d != ax)
            oshape[ondim++] = x->shape[d];
        else if (keepdim)
            oshape[ondim++] = 1;
    }
    tg_tensor *y = tg_tensor_new_owned(TG_I64, ondim, oshape);
    tg_tensor *xc = y ? tg_contiguous_owned(x) : NULL;
    if (!xc) {
        tg_release(y);
        return NULL;
    }
    int64_t *py = tg_tensor_ptr(y);
    switch (x->dtype) {
    case TG_F32: ARGMAX_LOOP(float); break;
    case TG_F64: ARGMAX_LOOP(double); break;
    case TG_I32: ARGMAX_LOOP(int32_t); break;
    case TG_I64: ARGMAX_LOOP(int64_t); break;
    case TG_U8: ARGMAX_LOOP(uint8_t); break;
    default: break;
    }
    tg_release(xc);
    return tg_scoped(y);
}

tg_tensor *tg_argmax(tg_tensor *x, int axis, bool keepdim)
{
    const char *prev = tg_error_enter("tg_argmax");
    tg_tensor *r = argmax_impl(x, axis, keepdim);
    tg_error_leave(prev);
    return r;
}
