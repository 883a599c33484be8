/* nn/activation.c -- activation functions by enum, and the activation layers:
 * Activation, Softmax, LeakyReLU, ELU and ReLU (no parameters; the output shape
 * is the input shape). Softmax runs over axis 1: the features of (N, F) or the
 * channels of (N, C, H, W), which is the axis Keras's channels-last softmax
 * (axis -1) normalises. The enum's activations use Keras's defaults for its
 * activation strings ("leaky_relu" is alpha 0.2, "hard_sigmoid" Keras 2's
 * 0.2 x + 0.5). */
#include <math.h>
#include <string.h>

#include "nn/nn_impl.h"

/* Keras's activation-string parameters (keras.activations) */
#define LEAKY_RELU_ALPHA 0.2
#define ELU_ALPHA 1.0
#define HARD_SIGMOID_ALPHA 0.2
#define HARD_SIGMOID_BETA 0.5

const char *tg_activation_name(tg_activation act)
{
    switch (act) {
    case TG_ACT_NONE: return "linear";
    case TG_ACT_RELU: return "relu";
    case TG_ACT_TANH: return "tanh";
    case TG_ACT_SIGMOID: return "sigmoid";
    case TG_ACT_SOFTMAX: return "softmax";
    case TG_ACT_LEAKY_RELU: return "leaky_relu";
    case TG_ACT_ELU: return "elu";
    case TG_ACT_GELU: return "gelu";
    case TG_ACT_SWISH: return "swish";
    case TG_ACT_SOFTPLUS: return "softplus";
    case TG_ACT_HARD_SIGMOID: return "hard_sigmoid";
    default: return "invalid";
    }
}

tg_status tg_activation_from_name(tg_activation *out, const char *name)
{
    static const char *fn = "tg_activation_from_name";
    if (!out || !name)
        return tg_null_arg(fn, !out ? "out" : "name");
    for (int a = 0; a < TG_ACT_COUNT; a++)
        if (strcmp(name, tg_activation_name((tg_activation)a)) == 0) {
            *out = (tg_activation)a;
            return TG_OK;
        }
    if (strcmp(name, "silu") == 0) {
        *out = TG_ACT_SWISH;
        return TG_OK;
    }
    return tg_error(TG_ERR_ARG, "%s: no activation is called \"%s\"", fn, name);
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
    case TG_ACT_LEAKY_RELU: return tg_leaky_relu(x, LEAKY_RELU_ALPHA);
    case TG_ACT_ELU: return tg_elu(x, ELU_ALPHA);
    case TG_ACT_GELU: return tg_gelu(x, TG_GELU_ERF);
    case TG_ACT_SWISH: return tg_silu(x);
    case TG_ACT_SOFTPLUS: return tg_softplus(x);
    case TG_ACT_HARD_SIGMOID: return tg_hard_sigmoid(x, HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA);
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

/* ---------------------------------------------------------------- LeakyReLU, ELU, ReLU */

typedef struct alpha_layer {
    double alpha;
} alpha_layer;

static tg_tensor *leaky_relu_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_leaky_relu(x, ((const alpha_layer *)tg_layer_data(l))->alpha);
}

static tg_tensor *elu_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    return tg_elu(x, ((const alpha_layer *)tg_layer_data(l))->alpha);
}

static void alpha_config(const tg_layer *l, tg_layer_config *cfg)
{
    tg_layer_config_double(cfg, "alpha", ((const alpha_layer *)tg_layer_data(l))->alpha);
}

static const tg_layer_vtable leaky_relu_vtable = {
    .class_name = "LeakyReLU", .base_name = "leaky_re_lu", .data_size = sizeof(alpha_layer),
    .forward = leaky_relu_forward, .config = alpha_config,
};

static const tg_layer_vtable elu_vtable = {
    .class_name = "ELU", .base_name = "elu", .data_size = sizeof(alpha_layer),
    .forward = elu_forward, .config = alpha_config,
};

static tg_layer *alpha_layer_new(const tg_layer_vtable *vt, const char *fn, double alpha)
{
    const char *prev = tg_error_enter(fn);
    tg_layer *l = tg_layer_alloc(vt, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l)
        ((alpha_layer *)tg_layer_data(l))->alpha = alpha;
    return l;
}

tg_layer *tg_layer_new_leaky_relu(double alpha)
{
    if (!(isfinite(alpha) && alpha >= 0))
        return tg_error(TG_ERR_ARG, "tg_layer_new_leaky_relu: alpha %g must be finite and "
                        ">= 0", alpha), NULL;
    return alpha_layer_new(&leaky_relu_vtable, "tg_layer_new_leaky_relu", alpha);
}

tg_layer *tg_layer_new_elu(double alpha)
{
    if (!isfinite(alpha))
        return tg_error(TG_ERR_ARG, "tg_layer_new_elu: alpha %g must be finite", alpha), NULL;
    return alpha_layer_new(&elu_vtable, "tg_layer_new_elu", alpha);
}

typedef struct relu_layer {
    double max_value; /* INFINITY: no cap */
    double negative_slope;
    double threshold;
} relu_layer;

/* [x >= t] as a constant of x's shape and dtype (no gradient flows through it). */
static tg_tensor *at_least_mask(tg_tensor *x, double t)
{
    /* a fresh contiguous copy, not recorded: x may have any layout and strides */
    tg_tensor *xc = tg_tensor_to_dtype(x, TG_F64);
    double *v = xc ? tg_tensor_data(xc) : NULL;
    if (!v)
        return NULL;
    int64_t n = tg_tensor_numel(xc);
    for (int64_t i = 0; i < n; i++)
        v[i] = v[i] >= t ? 1.0 : 0.0;
    return tg_tensor_to_dtype(xc, tg_tensor_dtype(x));
}

static tg_tensor *relu_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const relu_layer *r = tg_layer_data(l);
    tg_tensor *y;
    if (r->threshold == 0) {
        if (r->negative_slope == 0)
            return isinf(r->max_value) ? tg_relu(x) : tg_clip(x, 0.0, r->max_value);
        y = tg_leaky_relu(x, r->negative_slope);
    } else {
        /* m x + (1 - m) s (x - t), m = [x >= t]: Keras's branches, differentiable in x */
        tg_tensor *m = at_least_mask(x, r->threshold);
        tg_tensor *below = tg_mul_scalar(tg_add_scalar(x, -r->threshold), r->negative_slope);
        y = tg_add(tg_mul(m, x), tg_mul(tg_add_scalar(tg_neg(m), 1.0), below));
    }
    return isinf(r->max_value) ? y : tg_clip(y, -INFINITY, r->max_value);
}

static void relu_config(const tg_layer *l, tg_layer_config *cfg)
{
    const relu_layer *r = tg_layer_data(l);
    if (isinf(r->max_value))
        tg_layer_config_null(cfg, "max_value");
    else
        tg_layer_config_double(cfg, "max_value", r->max_value);
    tg_layer_config_double(cfg, "negative_slope", r->negative_slope);
    tg_layer_config_double(cfg, "threshold", r->threshold);
}

static const tg_layer_vtable relu_vtable = {
    .class_name = "ReLU", .base_name = "re_lu", .data_size = sizeof(relu_layer),
    .forward = relu_forward, .config = relu_config,
};

tg_layer *tg_layer_new_relu_opts(double max_value, double negative_slope, double threshold)
{
    static const char *fn = "tg_layer_new_relu_opts";
    if (!(max_value >= 0)) /* NaN too; +inf is "no cap" */
        return tg_error(TG_ERR_ARG, "%s: max_value %g must be >= 0 (INFINITY: none)", fn,
                        max_value), NULL;
    if (!(isfinite(negative_slope) && negative_slope >= 0))
        return tg_error(TG_ERR_ARG, "%s: negative_slope %g must be finite and >= 0", fn,
                        negative_slope), NULL;
    if (!isfinite(threshold))
        return tg_error(TG_ERR_ARG, "%s: threshold %g must be finite", fn, threshold), NULL;
    const char *prev = tg_error_enter(fn);
    tg_layer *l = tg_layer_alloc(&relu_vtable, TG_ACT_NONE, NULL);
    tg_error_leave(prev);
    if (l) {
        relu_layer *r = tg_layer_data(l);
        r->max_value = max_value;
        r->negative_slope = negative_slope;
        r->threshold = threshold;
    }
    return l;
}
