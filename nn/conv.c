/* nn/conv.c -- the Conv2D layer: input (C, H, W) -> (filters, OH, OW), and
 * DepthwiseConv2D, the same with one group per input channel.
 *
 * Kernel (filters, C/groups, KH, KW) and bias (filters), as tg_conv2d wants them
 * (Keras stores the kernel as (KH, KW, C/groups, filters)). "same" padding is
 * resolved into explicit pads once the input shape is known. */
#include <stdlib.h>

#include "nn/nn_impl.h"

typedef struct conv_layer {
    int filters;          /* depthwise: 0 until built (C * multiplier) */
    int multiplier;       /* depthwise only, else 0 */
    int kernel[2];
    tg_conv2d_layer_opts o;
    int pad[4]; /* resolved at build */
} conv_layer;

static tg_status conv_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                            int64_t *out_shape)
{
    conv_layer *c = tg_layer_data(l);
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
    if (c->multiplier > 0) {
        c->o.groups = (int)in_shape[0];
        c->filters = (int)in_shape[0] * c->multiplier;
    }
    int groups = c->o.groups > 1 ? c->o.groups : 1;
    if (in_shape[0] % groups != 0 || c->filters % groups != 0)
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s: %d groups do not divide "
                        "its %lld input channels (input %s) and %d filters", who, groups,
                        (long long)in_shape[0], in, c->filters);
    *out_ndim = 3;
    out_shape[0] = c->filters;
    out_shape[1] = out[0];
    out_shape[2] = out[1];
    if (!tg_layer_add_param(l, c->multiplier > 0 ? "depthwise_kernel" : "kernel",
                            TG_SHAPE(c->filters, in_shape[0] / groups, c->kernel[0],
                                     c->kernel[1]), c->o.kernel_init))
        return tg_last_status();
    if (c->o.use_bias && !tg_layer_add_param(l, "bias", TG_SHAPE(c->filters),
                                             c->o.bias_init))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *conv_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    conv_layer *c = tg_layer_data(l);
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    for (int a = 0; a < 2; a++) {
        o.stride[a] = c->o.stride[a];
        o.dilation[a] = c->o.dilation[a];
    }
    for (int i = 0; i < 4; i++)
        o.pad[i] = c->pad[i];
    o.groups = c->o.groups;
    o.relu = tg_layer_activation(l) == TG_ACT_RELU; /* fused: one primitive, one pass */
    return tg_conv2d(x, tg_layer_param_at(l, 0), c->o.use_bias ? tg_layer_param_at(l, 1) : NULL,
                     &o);
}

static void conv_config(const tg_layer *l, tg_layer_config *cfg)
{
    const conv_layer *c = tg_layer_data(l);
    if (c->multiplier > 0) {
        tg_layer_config_ints(cfg, "kernel_size", 2, c->kernel);
        tg_layer_config_int(cfg, "depth_multiplier", c->multiplier);
    } else {
        tg_layer_config_int(cfg, "filters", c->filters);
        tg_layer_config_ints(cfg, "kernel_size", 2, c->kernel);
    }
    tg_layer_config_ints(cfg, "strides", 2, c->o.stride);
    tg_layer_config_str(cfg, "padding", tg_nn_padding_name(c->o.padding));
    if (c->o.padding == TG_PADDING_EXPLICIT)
        tg_layer_config_ints(cfg, "pads", 4, c->o.pad);
    tg_layer_config_ints(cfg, "dilation_rate", 2, c->o.dilation);
    /* only when grouped: the architecture of models saved before stays the same */
    if (c->multiplier == 0 && c->o.groups > 1)
        tg_layer_config_int(cfg, "groups", c->o.groups);
    tg_layer_config_bool(cfg, "use_bias", c->o.use_bias);
    tg_layer_config_str(cfg, "kernel_initializer", tg_initializer_name(c->o.kernel_init));
    tg_layer_config_str(cfg, "bias_initializer", tg_initializer_name(c->o.bias_init));
}

static const tg_layer_vtable conv_vtable = {
    .class_name = "Conv2D", .base_name = "conv2d", .data_size = sizeof(conv_layer),
    .build = conv_build, .forward = conv_forward, .config = conv_config, .fuses_relu = true,
};

static const tg_layer_vtable depthwise_vtable = {
    .class_name = "DepthwiseConv2D", .base_name = "depthwise_conv2d",
    .data_size = sizeof(conv_layer), .build = conv_build, .forward = conv_forward,
    .config = conv_config, .fuses_relu = true,
};

/* tg_layer_new_conv2d's body; errors name the context, which it enters. */
static tg_layer *conv_new(int filters, int multiplier, int kh, int kw, tg_activation act,
                          const tg_conv2d_layer_opts *opts)
{
    tg_conv2d_layer_opts o = TG_CONV2D_LAYER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (multiplier > 0) {
        if (kh < 1 || kw < 1)
            return tg_error_here(TG_ERR_ARG, "kernel %dx%d must be >= 1", kh, kw), NULL;
        if (o.groups > 1)
            return tg_error_here(TG_ERR_ARG, "groups must be 0 or 1 (one group per input "
                                 "channel is what depthwise means), not %d", o.groups), NULL;
    } else if (multiplier < 0) {
        return tg_error_here(TG_ERR_ARG, "depth_multiplier must be >= 1, not %d", multiplier),
               NULL;
    } else if (filters < 1 || kh < 1 || kw < 1) {
        return tg_error_here(TG_ERR_ARG, "filters %d and kernel %dx%d must be >= 1",
                             filters, kh, kw), NULL;
    }
    if (o.groups < 0)
        return tg_error_here(TG_ERR_ARG, "groups must be >= 1 (0 means 1), not %d", o.groups),
               NULL;
    if (o.groups > 1 && filters % o.groups != 0)
        return tg_error_here(TG_ERR_ARG, "filters %d are not divisible into %d groups", filters,
                             o.groups), NULL;
    if (o.stride[0] < 1 || o.stride[1] < 1 || o.dilation[0] < 1 || o.dilation[1] < 1)
        return tg_error_here(TG_ERR_ARG, "stride %dx%d and dilation %dx%d must be >= 1",
                             o.stride[0], o.stride[1], o.dilation[0], o.dilation[1]), NULL;
    if (tg_nn_check_padding(o.padding, o.pad) != TG_OK)
        return NULL;
    if ((int)o.kernel_init < 0 || o.kernel_init >= TG_INIT_COUNT ||
        (int)o.bias_init < 0 || o.bias_init >= TG_INIT_COUNT)
        return tg_error_here(TG_ERR_ARG, "unknown initializer"), NULL;
    tg_layer *l = tg_layer_alloc(multiplier > 0 ? &depthwise_vtable : &conv_vtable, act, o.name);
    if (!l)
        return NULL;
    conv_layer *c = tg_layer_data(l);
    c->filters = multiplier > 0 ? 0 : filters;
    c->multiplier = multiplier;
    c->kernel[0] = kh;
    c->kernel[1] = kw;
    o.name = NULL; /* copied into base.name; the caller's string may go away */
    c->o = o;
    return l;
}

tg_layer *tg_layer_new_conv2d(int filters, int kh, int kw, tg_activation act,
                              const tg_conv2d_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_conv2d");
    tg_layer *l = conv_new(filters, 0, kh, kw, act, opts);
    tg_error_leave(prev);
    return l;
}

tg_layer *tg_layer_new_depthwise_conv2d(int kh, int kw, int depth_multiplier,
                                        tg_activation act, const tg_conv2d_layer_opts *opts)
{
    const char *prev = tg_error_enter("tg_layer_new_depthwise_conv2d");
    tg_layer *l = depth_multiplier < 1
                      ? (tg_error_here(TG_ERR_ARG, "depth_multiplier must be >= 1, not %d",
                                       depth_multiplier), NULL)
                      : conv_new(0, depth_multiplier, kh, kw, act, opts);
    tg_error_leave(prev);
    return l;
}
