/* nn/activation.c -- activation functions by enum, and the Activation and Softmax
 * layers (no parameters; the output shape is the input shape). Softmax runs over
 * axis 1: the features of (N, F) or the channels of (N, C, H, W), which is the
 * axis Keras's channels-last softmax (axis -1) normalises. */
#include "nn/nn_impl.h"

const char *tg_activation_name(tg_activation act)
{
    switch (act) {
    case TG_ACT_NONE: return "linear";
    case TG_ACT_RELU: return "relu";
    case TG_ACT_TANH: return "tanh";
    case TG_ACT_SIGMOID: return "sigmoid";
    case TG_ACT_SOFTMAX: return "softmax";
    default: return "invalid";
    }
}

tg_tensor *tg_activation_apply(tg_tensor *x, tg_activation act)
{
    if (!x)
        return tg_null_arg("tg_activation_apply", "x"), NULL;
    switch (act) {
    case TG_ACT_NONE: return tg_scoped(tg_retain(x));
    case TG_ACT_RELU: return tg_relu(x);
    case TG_ACT_TANH: return tg_tanh(x);
    case TG_ACT_SIGMOID: return tg_sigmoid(x);
    case TG_ACT_SOFTMAX:
        if (tg_tensor_ndim(x) < 2)
            return tg_error(TG_ERR_SHAPE, "tg_activation_apply: softmax needs a batch and "
                            "a feature axis, got %d-D input", tg_tensor_ndim(x)), NULL;
        return tg_softmax(x, 1);
    default:
        return tg_error(TG_ERR_ARG, "tg_activation_apply: %d is not a tg_activation",
                        (int)act), NULL;
    }
}

static tg_status identity_build(tg_layer *l, int in_ndim, const int64_t *in_shape,
                                int *out_ndim, int64_t *out_shape)
{
    if (tg_layer_activation(l) == TG_ACT_SOFTMAX && in_ndim < 1) {
        char who[256];
        return tg_error(TG_ERR_SHAPE, "tg_sequential_build: layer %s: softmax needs at least "
                        "one feature axis after the batch",
                        tg_layer_who(l, who, sizeof who));
    }
    return TG_OK; /* the output shape starts as the input's */
}

static const tg_layer_vtable activation_vtable = {
    .class_name = "Activation", .base_name = "activation", .build = identity_build,
};

static const tg_layer_vtable softmax_vtable = {
    .class_name = "Softmax", .base_name = "softmax", .build = identity_build,
};

tg_layer *tg_layer_new_activation(tg_activation act)
{
    const char *prev = tg_error_enter("tg_layer_new_activation");
    tg_layer *l = tg_layer_alloc(&activation_vtable, act, NULL);
    tg_error_leave(prev);
    return l;
}

tg_layer *tg_layer_new_softmax(void)
{
    const char *prev = tg_error_enter("tg_layer_new_softmax");
    tg_layer *l = tg_layer_alloc(&softmax_vtable, TG_ACT_SOFTMAX, NULL);
    tg_error_leave(prev);
    return l;
}
