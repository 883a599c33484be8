/* nn/pool.c -- MaxPooling2D and AveragePooling2D: (C, H, W) -> (C, OH, OW).
 *
 * No parameters. The stride defaults to the pool size as in Keras; "same"
 * padding is resolved into explicit pads at build (the average excludes them). */
#include "nn/nn_impl.h"

typedef struct pool_layer {
    int pool[2];
    tg_pool2d_layer_opts o;
    int pad[4]; /* resolved at build */
} pool_layer;

static tg_status pool_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                            int64_t *out_shape)
{
    pool_layer *p = tg_layer_data(l);
    char who[256], in[128];
    tg_layer_who(l, who, sizeof who);
    tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape);
    if (in_ndim != 3)
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, C, H, W) "
                        "input, got %s", who, in);
    int64_t out[2];
    if (!tg_nn_resolve_window(p->o.padding, p->o.pad, in_shape + 1, p->pool, p->o.stride,
                              (const int[]){1, 1}, p->pad, out))
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s: a %dx%d pool does "
                        "not fit input %s with %s padding", who, p->pool[0], p->pool[1], in,
                        tg_nn_padding_name(p->o.padding));
    /* A window lying wholly in the padding would pool nothing (the op refuses it). */
    for (int i = 0; i < 4; i++)
        if (p->pad[i] >= p->pool[i / 2])
            return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s: padding (top %d, "
                            "bottom %d, left %d, right %d) must be smaller than the %dx%d pool",
                            who, p->pad[0], p->pad[1], p->pad[2], p->pad[3], p->pool[0],
                            p->pool[1]);
    *out_ndim = 3;
    out_shape[0] = in_shape[0];
    out_shape[1] = out[0];
    out_shape[2] = out[1];
    return TG_OK;
}

static tg_pool2d_opts pool_opts(const pool_layer *p)
{
    tg_pool2d_opts o = TG_POOL2D_OPTS_INIT;
    for (int a = 0; a < 2; a++) {
        o.kernel[a] = p->pool[a];
        o.stride[a] = p->o.stride[a];
    }
    for (int i = 0; i < 4; i++)
        o.pad[i] = p->pad[i];
    return o;
}

static tg_tensor *max_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    tg_pool2d_opts o = pool_opts(tg_layer_data(l));
    return tg_max_pool2d(x, &o);
}

static tg_tensor *avg_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    tg_pool2d_opts o = pool_opts(tg_layer_data(l));
    return tg_avg_pool2d(x, &o);
}

static void pool_config(const tg_layer *l, tg_layer_config *cfg)
{
    const pool_layer *p = tg_layer_data(l);
    tg_layer_config_ints(cfg, "pool_size", 2, p->pool);
    tg_layer_config_ints(cfg, "strides", 2, p->o.stride);
    tg_layer_config_str(cfg, "padding", tg_nn_padding_name(p->o.padding));
    if (p->o.padding == TG_PADDING_EXPLICIT)
        tg_layer_config_ints(cfg, "pads", 4, p->o.pad);
}

static const tg_layer_vtable max_vtable = {
    .class_name = "MaxPooling2D", .base_name = "max_pooling2d", .data_size = sizeof(pool_layer),
    .build = pool_build, .forward = max_forward, .config = pool_config,
};

static const tg_layer_vtable avg_vtable = {
    .class_name = "AveragePooling2D", .base_name = "average_pooling2d",
    .data_size = sizeof(pool_layer), .build = pool_build, .forward = avg_forward,
    .config = pool_config,
};

/* Errors name the context, which the public constructor enters. */
static tg_layer *pool_new(const tg_layer_vtable *vt, int ph, int pw,
                          const tg_pool2d_layer_opts *opts)
{
    tg_pool2d_layer_opts o = TG_POOL2D_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (ph < 1 || pw < 1)
        return tg_error_here(TG_ERR_ARG, "pool size %dx%d must be >= 1", ph, pw), NULL;
    if (o.stride[0] < 0 || o.stride[1] < 0)
        return tg_error_here(TG_ERR_ARG, "stride %dx%d must be >= 1 (0: the pool size)",
                             o.stride[0], o.stride[1]), NULL;
    if (tg_nn_check_padding(o.padding, o.pad) != TG_OK)
        return NULL;
    tg_layer *l = tg_layer_alloc(vt, TG_ACT_NONE, o.name);
    if (!l)
        return NULL;
    pool_layer *p = tg_layer_data(l);
    p->pool[0] = ph;
    p->pool[1] = pw;
    if (o.stride[0] == 0)
        o.stride[0] = ph;
    if (o.stride[1] == 0)
        o.stride[1] = pw;
    o.name = NULL;
    p->o = o;
    return l;
}

tg_layer *tg_layer_new_max_pool2d(int ph, int pw, const tg_pool2d_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_max_pool2d");
    tg_layer *l = pool_new(&max_vtable, ph, pw, opts);
    tg_error_leave(prev);
    return l;
}

tg_layer *tg_layer_new_avg_pool2d(int ph, int pw, const tg_pool2d_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_avg_pool2d");
    tg_layer *l = pool_new(&avg_vtable, ph, pw, opts);
    tg_error_leave(prev);
    return l;
}

/* ---------------------------------------------------------------- global pooling */

/* GlobalAveragePooling2D / GlobalMaxPooling2D: (C, H, W) -> (C), or (C, 1, 1)
 * with keepdims. */
typedef struct global_layer {
    bool keepdims;
} global_layer;

static tg_status global_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                              int64_t *out_shape)
{
    char who[256], in[128];
    if (in_ndim != 3 || in_shape[1] < 1 || in_shape[2] < 1) {
        tg_layer_who(l, who, sizeof who);
        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape);
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, C, H, W) "
                        "input with H, W >= 1, got %s", who, in);
    }
    bool keep = ((const global_layer *)tg_layer_data(l))->keepdims;
    *out_ndim = keep ? 3 : 1;
    out_shape[0] = in_shape[0];
    if (keep)
        out_shape[1] = out_shape[2] = 1;
    return TG_OK;
}

static tg_tensor *global_max_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_global_max_pool2d(x, ((const global_layer *)tg_layer_data(l))->keepdims);
}

static tg_tensor *global_avg_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_global_avg_pool2d(x, ((const global_layer *)tg_layer_data(l))->keepdims);
}

static void global_config(const tg_layer *l, tg_layer_config *cfg)
{
    tg_layer_config_bool(cfg, "keepdims", ((const global_layer *)tg_layer_data(l))->keepdims);
}

static const tg_layer_vtable global_max_vtable = {
    .class_name = "GlobalMaxPooling2D", .base_name = "global_max_pooling2d",
    .data_size = sizeof(global_layer), .build = global_build, .forward = global_max_forward,
    .config = global_config,
};

static const tg_layer_vtable global_avg_vtable = {
    .class_name = "GlobalAveragePooling2D", .base_name = "global_average_pooling2d",
    .data_size = sizeof(global_layer), .build = global_build, .forward = global_avg_forward,
    .config = global_config,
};

static tg_layer *global_new(const char *who, const tg_layer_vtable *vt, bool keepdims)
{
    const char *prev = tg_error_enter(who);
    tg_layer *l = tg_layer_alloc(vt, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l)
        ((global_layer *)tg_layer_data(l))->keepdims = keepdims;
    return l;
}

tg_layer *tg_layer_new_global_max_pool2d(bool keepdims)
{
    return global_new("tg_layer_new_global_max_pool2d", &global_max_vtable, keepdims);
}

tg_layer *tg_layer_new_global_avg_pool2d(bool keepdims)
{
    return global_new("tg_layer_new_global_avg_pool2d", &global_avg_vtable, keepdims);
}
