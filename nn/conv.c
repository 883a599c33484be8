/* nn/conv.c -- the Conv2D layer: input (C, H, W) -> (filters, OH, OW).
 *
 * Kernel (filters, C, KH, KW) and bias (filters), as tg_conv2d wants them (Keras
 * stores the kernel as (KH, KW, C, filters)). "same" padding is resolved into
 * explicit pads once the input shape is known. */
#include <stdlib.h>

#include "nn/nn_impl.h"

typedef struct conv_layer {
    tg_layer base;
    int filters;
    int kernel[2];
    tg_conv2d_layer_opts o;
    int pad[4]; /* resolved at build */
} conv_layer;

static tg_status conv_infer(tg_layer *l, int in_ndim, const int64_t *in_shape)
{
    conv_layer *c = (conv_layer *)l;
    char who[256];
    tg_layer_who(l, who, sizeof who);
    char in[128];
    tg_nn_batch_shape_str(in, sizeof in, in_ndim, in_shape);
    if (in_ndim != 3)
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s needs (None, C, H, W) "
                        "input, got %s", who, in);
    int64_t out[2];
    if (!tg_nn_resolve_window(c->o.padding, c->o.pad, in_shape + 1, c->kernel, c->o.stride,
                              c->o.dilation, c->pad, out))
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s: a %dx%d kernel "
                        "(dilation %dx%d) does not fit input %s with %s padding", who,
                        c->kernel[0], c->kernel[1], c->o.dilation[0], c->o.dilation[1], in,
                        tg_nn_padding_name(c->o.padding));
    l->out_ndim = 3;
    l->out_shape[0] = c->filters;
    l->out_shape[1] = out[0];
    l->out_shape[2] = out[1];

    tg_param_slot *k = &l->params[0];
    k->short_name = "kernel";
    k->ndim = 4;
    k->shape[0] = c->filters;
    k->shape[1] = in_shape[0];
    k->shape[2] = c->kernel[0];
    k->shape[3] = c->kernel[1];
    k->init = c->o.kernel_init;
    l->n_params = 1;
    if (c->o.use_bias) {
        tg_param_slot *b = &l->params[1];
        b->short_name = "bias";
        b->ndim = 1;
        b->shape[0] = c->filters;
        b->init = c->o.bias_init;
        l->n_params = 2;
    }
    return TG_OK;
}

static tg_tensor *conv_forward(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx)
{
    conv_layer *c = (conv_layer *)l;
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    for (int a = 0; a < 2; a++) {
        o.stride[a] = c->o.stride[a];
        o.dilation[a] = c->o.dilation[a];
    }
    for (int i = 0; i < 4; i++)
        o.pad[i] = c->pad[i];
    o.relu = l->act == TG_ACT_RELU; /* one primitive, one pass (vtable: fuses_relu) */
    return tg_conv2d(x, l->params[0].t, c->o.use_bias ? l->params[1].t : NULL, &o);
}

static void conv_config(const tg_layer *l, tg_strbuf *b)
{
    const conv_layer *c = (const conv_layer *)l;
    tg_strbuf_printf(b, "\"filters\": %d, \"kernel_size\": [%d, %d], \"strides\": [%d, %d], "
                     "\"padding\": \"%s\", ", c->filters, c->kernel[0], c->kernel[1],
                     c->o.stride[0], c->o.stride[1], tg_nn_padding_name(c->o.padding));
    if (c->o.padding == TG_PADDING_EXPLICIT)
        tg_strbuf_printf(b, "\"pads\": [%d, %d, %d, %d], ", c->o.pad[0], c->o.pad[1],
                         c->o.pad[2], c->o.pad[3]);
    tg_strbuf_printf(b, "\"dilation_rate\": [%d, %d], \"use_bias\": %s, "
                     "\"kernel_initializer\": \"%s\", \"bias_initializer\": \"%s\"",
                     c->o.dilation[0], c->o.dilation[1], c->o.use_bias ? "true" : "false",
                     tg_initializer_name(c->o.kernel_init), tg_initializer_name(c->o.bias_init));
}

static const tg_layer_vtable conv_vtable = {
    .type = "Conv2D", .base_name = "conv2d", .infer = conv_infer, .forward = conv_forward,
    .config = conv_config, .fuses_relu = true,
};

tg_layer *tg_layer_new_conv2d(int filters, int kh, int kw, tg_activation act,
                              const tg_conv2d_layer_opts *opts)
{
    static const char *fn = "tg_layer_new_conv2d";
    tg_conv2d_layer_opts o = TG_CONV2D_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (filters < 1 || kh < 1 || kw < 1)
        return tg_error(TG_ERR_ARG, "%s: filters %d and kernel %dx%d must be >= 1", fn,
                        filters, kh, kw), NULL;
    if (o.stride[0] < 1 || o.stride[1] < 1 || o.dilation[0] < 1 || o.dilation[1] < 1)
        return tg_error(TG_ERR_ARG, "%s: stride %dx%d and dilation %dx%d must be >= 1", fn,
                        o.stride[0], o.stride[1], o.dilation[0], o.dilation[1]), NULL;
    if (tg_nn_check_padding(fn, o.padding, o.pad) != TG_OK)
        return NULL;
    if ((int)o.kernel_init < 0 || o.kernel_init >= TG_INIT_COUNT ||
        (int)o.bias_init < 0 || o.bias_init >= TG_INIT_COUNT)
        return tg_error(TG_ERR_ARG, "%s: unknown initializer", fn), NULL;
    conv_layer *c = (conv_layer *)tg_layer_alloc(sizeof(conv_layer), &conv_vtable, act,
                                                 o.name, fn);
    if (!c)
        return NULL;
    c->filters = filters;
    c->kernel[0] = kh;
    c->kernel[1] = kw;
    o.name = NULL; /* copied into base.name; the caller's string may go away */
    c->o = o;
    return &c->base;
}
