/* nn/reshape.c -- layers that only move elements: ZeroPadding2D, (C, H, W) ->
 * (C, H + top + bottom, W + left + right), and Reshape, any shape -> the target
 * shape (the batch axis stays; one target extent may be -1, inferred). */
#include <string.h>

#include "nn/nn_impl.h"

/* ---------------------------------------------------------------- ZeroPadding2D */

typedef struct zero_pad_layer {
    int pad[4]; /* top, bottom, left, right */
} zero_pad_layer;

static tg_status zero_pad_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                                int64_t *out_shape)
{
    const zero_pad_layer *z = tg_layer_data(l);
    if (in_ndim != 3) {
        char who[256], in[128];
        tg_layer_who(l, who, sizeof who);
        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape);
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, C, H, W) "
                        "input, got %s", who, in);
    }
    *out_ndim = 3;
    out_shape[0] = in_shape[0];
    out_shape[1] = in_shape[1] + z->pad[0] + z->pad[1];
    out_shape[2] = in_shape[2] + z->pad[2] + z->pad[3];
    return TG_OK;
}

static tg_tensor *zero_pad_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_pad2d(x, ((const zero_pad_layer *)tg_layer_data(l))->pad, 0.0);
}

static void zero_pad_config(const tg_layer *l, tg_layer_config *cfg)
{
    tg_layer_config_ints(cfg, "padding", 4, ((const zero_pad_layer *)tg_layer_data(l))->pad);
}

static const tg_layer_vtable zero_pad_vtable = {
    .class_name = "ZeroPadding2D", .base_name = "zero_padding2d",
    .data_size = sizeof(zero_pad_layer), .build = zero_pad_build, .forward = zero_pad_forward,
    .config = zero_pad_config,
};

tg_layer *tg_layer_new_zero_padding2d(const int pad[4])
{
    if (!pad)
        return tg_null_arg("tg_layer_new_zero_padding2d", "pad"), NULL;
    for (int i = 0; i < 4; i++)
        if (pad[i] < 0)
            return tg_error(TG_ERR_ARG, "tg_layer_new_zero_padding2d: padding (top %d, bottom "
                            "%d, left %d, right %d) must be >= 0", pad[0], pad[1], pad[2],
                            pad[3]), NULL;
    const char *prev = tg_error_enter("tg_layer_new_zero_padding2d");
    tg_layer *l = tg_layer_alloc(&zero_pad_vtable, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l)
        memcpy(((zero_pad_layer *)tg_layer_data(l))->pad, pad, 4 * sizeof(int));
    return l;
}

/* ---------------------------------------------------------------- Reshape */

typedef struct reshape_layer {
    int ndim;
    int64_t target[TG_MAX_DIMS - 1]; /* as given, -1 kept */
    int64_t resolved[TG_MAX_DIMS - 1];
} reshape_layer;

static tg_status reshape_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                               int64_t *out_shape)
{
    reshape_layer *r = tg_layer_data(l);
    int64_t n = tg_shape_numel(in_ndim, in_shape), known = 1;
    int free_at = -1;
    for (int i = 0; i < r->ndim; i++) {
        if (r->target[i] == -1)
            free_at = i;
        else
            known *= r->target[i];
    }
    bool fits = free_at >= 0 ? known > 0 && n % known == 0 : known == n;
    if (!fits) {
        char who[256], in[128], to[128];
        tg_layer_who(l, who, sizeof who);
        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape);
        tg_nn_batch_shape_str(to, sizeof to, r->ndim, r->target);
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s cannot reshape %s "
                        "(%lld features) to %s", who, in, (long long)n, to);
    }
    for (int i = 0; i < r->ndim; i++)
        r->resolved[i] = i == free_at ? n / known : r->target[i];
    *out_ndim = r->ndim;
    memcpy(out_shape, r->resolved, (size_t)r->ndim * sizeof(int64_t));
    return TG_OK;
}

static tg_tensor *reshape_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const reshape_layer *r = tg_layer_data(l);
    int64_t shape[TG_MAX_DIMS];
    shape[0] = -1; /* the batch: whatever x has */
    memcpy(shape + 1, r->resolved, (size_t)r->ndim * sizeof(int64_t));
    return tg_reshape(x, r->ndim + 1, shape);
}

static void reshape_config(const tg_layer *l, tg_layer_config *cfg)
{
    const reshape_layer *r = tg_layer_data(l);
    int t[TG_MAX_DIMS];
    for (int i = 0; i < r->ndim; i++)
        t[i] = (int)r->target[i];
    tg_layer_config_ints(cfg, "target_shape", r->ndim, t);
}

static const tg_layer_vtable reshape_vtable = {
    .class_name = "Reshape", .base_name = "reshape", .data_size = sizeof(reshape_layer),
    .build = reshape_build, .forward = reshape_forward, .config = reshape_config,
};

tg_layer *tg_layer_new_reshape(int ndim, const int64_t *target_shape)
{
    if (ndim < 1 || ndim > TG_MAX_DIMS - 1)
        return tg_error(TG_ERR_ARG, "tg_layer_new_reshape: %d target axes (1 to %d: the "
                        "batch axis is kept)", ndim, TG_MAX_DIMS - 1), NULL;
    if (!target_shape)
        return tg_null_arg("tg_layer_new_reshape", "target_shape"), NULL;
    int frees = 0;
    for (int i = 0; i < ndim; i++) {
        if (target_shape[i] == -1)
            frees++;
        else if (target_shape[i] < 1 || target_shape[i] > INT32_MAX)
            return tg_error(TG_ERR_ARG, "tg_layer_new_reshape: target extent %lld at axis "
                            "%d must be 1 to %d, or -1 (inferred)",
                            (long long)target_shape[i], i, INT32_MAX), NULL;
    }
    if (frees > 1)
        return tg_error(TG_ERR_ARG, "tg_layer_new_reshape: %d extents are -1; at most one "
                        "can be inferred", frees), NULL;
    const char *prev = tg_error_enter("tg_layer_new_reshape");
    tg_layer *l = tg_layer_alloc(&reshape_vtable, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l) {
        reshape_layer *r = tg_layer_data(l);
        r->ndim = ndim;
        memcpy(r->target, target_shape, (size_t)ndim * sizeof(int64_t));
    }
    return l;
}
