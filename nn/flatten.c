/* nn/flatten.c -- the Flatten layer: (d1, d2, ...) -> (d1*d2*...), a view when
 * the input is contiguous. Channels-first order: the features of a (C, H, W)
 * input are ordered c, h, w (Keras, channels last, orders h, w, c). */
#include "nn/nn_impl.h"

static tg_status flatten_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                               int64_t *out_shape)
{
    *out_ndim = 1;
    out_shape[0] = tg_shape_numel(in_ndim, in_shape);
    return TG_OK;
}

static tg_tensor *flatten_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_flatten(x, 1, -1);
}

static const tg_layer_vtable flatten_vtable = {
    .class_name = "Flatten", .base_name = "flatten", .build = flatten_build,
    .forward = flatten_forward,
};

tg_layer *tg_layer_new_flatten(void)
{
    const char *prev = tg_error_enter("tg_layer_new_flatten");
    tg_layer *l = tg_layer_alloc(&flatten_vtable, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    return l;
}
