/* nn/dropout.c -- the Dropout layer: inverted dropout in training mode, the
 * identity in evaluation mode. The mask comes from the model's generator (the
 * global one by default), so a seeded run is reproducible. */
#include "nn/nn_impl.h"

typedef struct dropout_layer {
    double rate;
} dropout_layer;

static tg_tensor *dropout_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const dropout_layer *d = tg_layer_data(l);
    return tg_dropout(x, d->rate, ctx->training, ctx->rng);
}

static void dropout_config(const tg_layer *l, tg_layer_config *cfg)
{
    const dropout_layer *d = tg_layer_data(l);
    tg_layer_config_double(cfg, "rate", d->rate);
}

static const tg_layer_vtable dropout_vtable = {
    .class_name = "Dropout", .base_name = "dropout", .data_size = sizeof(dropout_layer),
    .forward = dropout_forward, .config = dropout_config,
};

tg_layer *tg_layer_new_dropout(double rate)
{
    if (!(rate >= 0.0 && rate < 1.0))
        return tg_error(TG_ERR_ARG, "tg_layer_new_dropout: rate %g is not in [0, 1)", rate),
               NULL;
    const char *prev = tg_error_enter("tg_layer_new_dropout");
    tg_layer *l = tg_layer_alloc(&dropout_vtable, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l)
        ((dropout_layer *)tg_layer_data(l))->rate = rate;
    return l;
}
