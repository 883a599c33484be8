/* nn/batch_norm.c -- the BatchNormalization layer (Keras's, axis 1 in
 * libtensor's channels-first layout): input (C) per feature or (C, H, W) per
 * channel. Trainable "gamma" (ones; scale) and "beta" (zeros; center), then the
 * buffers "moving_mean" (zeros) and "moving_variance" (ones), Keras's order.
 * Training mode normalises with the batch statistics and moves the buffers
 * (tg_batch_norm does both); evaluation mode uses the buffers. */
#include <math.h>

#include "nn/nn_impl.h"

typedef struct bn_layer {
    tg_batch_norm_layer_opts o;  /* name cleared: the layer owns its name */
} bn_layer;

static tg_status bn_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                          int64_t *out_shape)
{
    const bn_layer *d = tg_layer_data(l);
    if (in_ndim != 1 && in_ndim != 3) {
        char who[256], in[128];
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, features) "
                        "or (None, channels, height, width) input, got %s",
                        tg_layer_who(l, who, sizeof who),
                        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape));
    }
    *out_ndim = in_ndim;
    for (int i = 0; i < in_ndim; i++)
        out_shape[i] = in_shape[i];
    const int64_t c = in_shape[0];
    if (d->o.scale && !tg_layer_add_param(l, "gamma", 1, &c, TG_INIT_ONES))
        return tg_last_status();
    if (d->o.center && !tg_layer_add_param(l, "beta", 1, &c, TG_INIT_ZEROS))
        return tg_last_status();
    if (!tg_layer_add_buffer(l, "moving_mean", 1, &c, 0.0) ||
        !tg_layer_add_buffer(l, "moving_variance", 1, &c, 1.0))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *bn_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const bn_layer *d = tg_layer_data(l);
    int k = 0;
    tg_tensor *gamma = d->o.scale ? tg_layer_param_at(l, k++) : NULL;
    tg_tensor *beta = d->o.center ? tg_layer_param_at(l, k++) : NULL;
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = ctx->training;
    o.momentum = d->o.momentum;
    o.epsilon = d->o.epsilon;
    /* in training the op moves the buffers in place and bumps their versions;
     * it records nothing for them (they are not inputs of its node) */
    return tg_batch_norm(x, gamma, beta, tg_layer_buffer(l, 0), tg_layer_buffer(l, 1), &o);
}

/* Keras's config members, in its order. */
static void bn_config(const tg_layer *l, tg_layer_config *cfg)
{
    const bn_layer *d = tg_layer_data(l);
    tg_layer_config_int(cfg, "axis", 1);
    tg_layer_config_double(cfg, "momentum", d->o.momentum);
    tg_layer_config_double(cfg, "epsilon", d->o.epsilon);
    tg_layer_config_bool(cfg, "center", d->o.center);
    tg_layer_config_bool(cfg, "scale", d->o.scale);
}

static const tg_layer_vtable bn_vtable = {
    .class_name = "BatchNormalization", .base_name = "batch_normalization",
    .data_size = sizeof(bn_layer), .build = bn_build, .forward = bn_forward,
    .config = bn_config,
};

/* tg_layer_new_batch_norm's body; errors name the context, which it enters. */
static tg_layer *bn_new(const tg_batch_norm_layer_opts *opts)
{
    tg_batch_norm_layer_opts o = TG_BATCH_NORM_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (!(o.momentum >= 0.0 && o.momentum <= 1.0)) /* also rejects NaN */
        return tg_error_here(TG_ERR_ARG, "momentum %g is not in [0, 1]", o.momentum), NULL;
    if (!(o.epsilon > 0.0 && isfinite(o.epsilon)))
        return tg_error_here(TG_ERR_ARG, "epsilon %g must be finite and > 0", o.epsilon), NULL;
    tg_layer *l = tg_layer_alloc(&bn_vtable, TG_ACT_NONE, o.name);
    if (!l)
        return NULL;
    o.name = NULL;
    ((bn_layer *)tg_layer_data(l))->o = o;
    return l;
}

tg_layer *tg_layer_new_batch_norm(const tg_batch_norm_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_batch_norm");
    tg_layer *l = bn_new(opts);
    tg_error_leave(prev);
    return l;
}
