/* nn/dense.c -- the Dense layer: (in) -> (units).
 *
 * Kernel (units, in) and bias (units), as tg_dense wants them (Keras stores the
 * kernel as (in, units)). The input must be 1-D features: Keras would apply a
 * Dense to the last axis of a higher-rank input; we refuse and ask for Flatten. */
#include "nn/nn_impl.h"

typedef struct dense_layer {
    int units;
    tg_dense_layer_opts o;
} dense_layer;

static tg_status dense_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                             int64_t *out_shape)
{
    dense_layer *d = tg_layer_data(l);
    if (in_ndim != 1) {
        char who[256], in[128];
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, features) "
                        "input, got %s; add a Flatten layer before it (libtensor's Dense "
                        "does not act on the last axis only, as Keras's does)",
                        tg_layer_who(l, who, sizeof who),
                        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape));
    }
    *out_ndim = 1;
    out_shape[0] = d->units;
    if (!tg_layer_add_param(l, "kernel", TG_SHAPE(d->units, in_shape[0]),
                            d->o.kernel_init))
        return tg_last_status();
    if (d->o.use_bias && !tg_layer_add_param(l, "bias", TG_SHAPE(d->units),
                                             d->o.bias_init))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *dense_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const dense_layer *d = tg_layer_data(l);
    return tg_dense(x, tg_layer_param_at(l, 0), d->o.use_bias ? tg_layer_param_at(l, 1) : NULL);
}

static void dense_config(const tg_layer *l, tg_layer_config *cfg)
{
    const dense_layer *d = tg_layer_data(l);
    tg_layer_config_int(cfg, "units", d->units);
    tg_layer_config_bool(cfg, "use_bias", d->o.use_bias);
    tg_layer_config_str(cfg, "kernel_initializer", tg_initializer_name(d->o.kernel_init));
    tg_layer_config_str(cfg, "bias_initializer", tg_initializer_name(d->o.bias_init));
}

static const tg_layer_vtable dense_vtable = {
    .class_name = "Dense", .base_name = "dense", .data_size = sizeof(dense_layer),
    .build = dense_build, .forward = dense_forward, .config = dense_config,
};

/* tg_layer_new_dense's body; errors name the context, which it enters. */
static tg_layer *dense_new(int units, tg_activation act, const tg_dense_layer_opts *opts)
{
    tg_dense_layer_opts o = TG_DENSE_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (units < 1)
        return tg_error_here(TG_ERR_ARG, "units %d must be >= 1", units), NULL;
    if ((int)o.kernel_init < 0 || o.kernel_init >= TG_INIT_COUNT ||
        (int)o.bias_init < 0 || o.bias_init >= TG_INIT_COUNT)
        return tg_error_here(TG_ERR_ARG, "unknown initializer"), NULL;
    tg_layer *l = tg_layer_alloc(&dense_vtable, act, o.name);
    if (!l)
        return NULL;
    dense_layer *d = tg_layer_data(l);
    d->units = units;
    o.name = NULL;
    d->o = o;
    return l;
}

tg_layer *tg_layer_new_dense(int units, tg_activation act, const tg_dense_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_dense");
    tg_layer *l = dense_new(units, act, opts);
    tg_error_leave(prev);
    return l;
}
