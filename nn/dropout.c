/* nn/dropout.c -- the Dropout layer: inverted dropout in training mode, the
 * identity in evaluation mode. The mask comes from the model's generator (the
 * global one by default), so a seeded run is reproducible. */
#include "nn/nn_impl.h"

typedef struct dropout_layer {
    tg_layer base;
    double rate;
} dropout_layer;

static tg_status dropout_infer(tg_layer *l, int in_ndim, const int64_t *in_shape)
{
    l->out_ndim = in_ndim;
    for (int i = 0; i < in_ndim; i++)
        l->out_shape[i] = in_shape[i];
    return TG_OK;
}

static tg_tensor *dropout_forward(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx)
{
    return tg_dropout(x, ((dropout_layer *)l)->rate, ctx->training, ctx->rng);
}

static void dropout_config(const tg_layer *l, tg_strbuf *b)
{
    tg_strbuf_printf(b, "\"rate\": %.17g", ((const dropout_layer *)l)->rate);
}

static const tg_layer_vtable dropout_vtable = {
    .type = "Dropout", .base_name = "dropout", .infer = dropout_infer,
    .forward = dropout_forward, .config = dropout_config,
};

tg_layer *tg_layer_new_dropout(double rate)
{
    if (!(rate >= 0.0 && rate < 1.0))
        return tg_error(TG_ERR_ARG, "tg_layer_new_dropout: rate %g is not in [0, 1)", rate),
               NULL;
    dropout_layer *d = (dropout_layer *)tg_layer_alloc(sizeof(dropout_layer), &dropout_vtable,
                                                       TG_ACT_NONE, NULL,
                                                       "tg_layer_new_dropout");
    if (d)
        d->rate = rate;
    return d ? &d->base : NULL;
}
