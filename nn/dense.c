/* nn/dense.c -- the Dense layer: (in) -> (units).
 *
 * Kernel (units, in) and bias (units), as tg_dense wants them (Keras stores the
 * kernel as (in, units)). The input must be 1-D features: Keras would apply a
 * Dense to the last axis of a higher-rank input; we refuse and ask for Flatten. */
#include "nn/nn_impl.h"

typedef struct dense_layer {
    tg_layer base;
    int units;
    tg_dense_layer_opts o;
} dense_layer;

static tg_status dense_infer(tg_layer *l, int in_ndim, const int64_t *in_shape)
{
    dense_layer *d = (dense_layer *)l;
    if (in_ndim != 1) {
        char who[256], in[128];
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, features) "
                        "input, got %s; add a Flatten layer before it (libtensor's Dense "
                        "does not act on the last axis only, as Keras's does)",
                        tg_layer_who(l, who, sizeof who),
                        tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape));
    }
    l->out_ndim = 1;
    l->out_shape[0] = d->units;
    tg_param_slot *k = &l->params[0];
    k->short_name = "kernel";
    k->ndim = 2;
    k->shape[0] = d->units;
    k->shape[1] = in_shape[0];
    k->init = d->o.kernel_init;
    l->n_params = 1;
    if (d->o.use_bias) {
        tg_param_slot *b = &l->params[1];
        b->short_name = "bias";
        b->ndim = 1;
        b->shape[0] = d->units;
        b->init = d->o.bias_init;
        l->n_params = 2;
    }
    return TG_OK;
}

static tg_tensor *dense_forward(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx)
{
    dense_layer *d = (dense_layer *)l;
    return tg_dense(x, l->params[0].t, d->o.use_bias ? l->params[1].t : NULL);
}

static void dense_config(const tg_layer *l, tg_strbuf *b)
{
    const dense_layer *d = (const dense_layer *)l;
    tg_strbuf_printf(b, "\"units\": %d, \"use_bias\": %s, \"kernel_initializer\": \"%s\", "
                     "\"bias_initializer\": \"%s\"", d->units, d->o.use_bias ? "true" : "false",
                     tg_initializer_name(d->o.kernel_init), tg_initializer_name(d->o.bias_init));
}

static const tg_layer_vtable dense_vtable = {
    .type = "Dense", .base_name = "dense", .infer = dense_infer, .forward = dense_forward,
    .config = dense_config,
};

tg_layer *tg_layer_new_dense(int units, tg_activation act, const tg_dense_layer_opts *opts)
{
    static const char *fn = "tg_layer_new_dense";
    tg_dense_layer_opts o = TG_DENSE_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (units < 1)
        return tg_error(TG_ERR_ARG, "%s: units %d must be >= 1", fn, units), NULL;
    if ((int)o.kernel_init < 0 || o.kernel_init >= TG_INIT_COUNT ||
        (int)o.bias_init < 0 || o.bias_init >= TG_INIT_COUNT)
        return tg_error(TG_ERR_ARG, "%s: unknown initializer", fn), NULL;
    dense_layer *d = (dense_layer *)tg_layer_alloc(sizeof(dense_layer), &dense_vtable, act,
                                                   o.name, fn);
    if (!d)
        return NULL;
    d->units = units;
    o.name = NULL;
    d->o = o;
    return &d->base;
}
