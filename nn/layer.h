/* nn/layer.h -- the public layer type: how a user (or a built-in layer) defines a
 * layer, and how any code calls one.
 *
 * A layer type is a static table of callbacks (tg_layer_vtable): build from the
 * input shape (declaring parameters and buffers), forward, and a config for
 * summaries, architecture descriptions and importers. Every built-in layer
 * (Conv2D, Dense, ...) is defined with exactly this table; nothing here is
 * reserved to them. Included by nn/nn.h; see docs/writing-a-model.md. */
#ifndef TG_NN_LAYER_H
#define TG_NN_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../libtensor/tensor.h"
#include "../libtensor/rng.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_layer tg_layer;

typedef enum tg_activation {
    TG_ACT_NONE = 0, /* identity ("linear" in Keras) */
    TG_ACT_RELU,
    TG_ACT_TANH,
    TG_ACT_SIGMOID,
    TG_ACT_SOFTMAX,  /* over axis 1: the features of (N, F), the channels of (N, C, H, W) */
    /* with Keras's defaults for its activation strings (tg_leaky_relu etc., ops/ops.h): */
    TG_ACT_LEAKY_RELU,   /* "leaky_relu": alpha 0.2 (the LeakyReLU layer's default is 0.3) */
    TG_ACT_ELU,          /* "elu": alpha 1.0 */
    TG_ACT_GELU,         /* "gelu": the erf form (approximate=False) */
    TG_ACT_SWISH,        /* "swish" (Keras 2; Keras 3 and PyTorch say "silu"): x sigmoid(x) */
    TG_ACT_SOFTPLUS,     /* "softplus": log(1 + e^x) */
    TG_ACT_HARD_SIGMOID, /* "hard_sigmoid": Keras 2's clip(0.2 x + 0.5, 0, 1) */
    TG_ACT_COUNT
} tg_activation;

typedef enum tg_initializer {
    TG_INIT_GLOROT_UNIFORM = 0, /* Keras's default for kernels */
    TG_INIT_HE_NORMAL,          /* truncated normal, sigma = sqrt(2 / fan_in) */
    TG_INIT_ZEROS,              /* Keras's default for biases */
    TG_INIT_ONES,               /* scales (BatchNorm's gamma) */
    TG_INIT_COUNT
} tg_initializer;

/* What a forward call knows beyond its input. */
typedef struct tg_layer_ctx {
    bool training; /* training mode: dropout active, moving statistics updated */
    tg_rng *rng;   /* the model's generator; NULL means the global one */
} tg_layer_ctx;

/* Writes a layer's config: one JSON member per call, in call order. Keys are
 * copied; values are written at once. */
typedef struct tg_layer_config tg_layer_config;
void tg_layer_config_int(tg_layer_config *cfg, const char *key, int64_t v);
void tg_layer_config_double(tg_layer_config *cfg, const char *key, double v); /* %.17g */
void tg_layer_config_bool(tg_layer_config *cfg, const char *key, bool v);
void tg_layer_config_str(tg_layer_config *cfg, const char *key, const char *v);
void tg_layer_config_ints(tg_layer_config *cfg, const char *key, int n, const int *v);
void tg_layer_config_null(tg_layer_config *cfg, const char *key); /* JSON null (None) */

/* The layer type's table. Define one static const instance per layer type, with
 * designated initializers (fields added later default to zero); it must outlive
 * every layer of the type. class_name and base_name are required. */
typedef struct tg_layer_vtable {
    const char *class_name; /* Keras class name, in summaries and JSON: "Conv2D" */
    const char *base_name;  /* automatic name stem: "conv2d", "conv2d_1", ... */
    size_t data_size;       /* bytes of per-layer data (tg_layer_data), zeroed; 0: none */
    /* Checks the input shape (without the batch), sets *out_ndim and out_shape
     * (room for TG_MAX_DIMS) and declares the parameters and buffers with
     * tg_layer_add_param / tg_layer_add_buffer, in a fixed order. Returns TG_OK
     * or an error (tg_layer_error) naming the shapes; on an error
     * whatever was declared is dropped. NULL: the output shape is the input
     * shape and there is nothing to declare. */
    tg_status (*build)(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                       int64_t *out_shape);
    /* The computation before the activation, on x (N, in_shape...); returns a
     * scoped reference (an op's result) or NULL with the error set. NULL means
     * identity. In training mode it may update its buffers in place (through
     * tg_tensor_data under tg_no_grad, then tg_tensor_bump_version). */
    tg_tensor *(*forward)(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx);
    /* Writes the config members ("filters": 32, ...) for summaries and
     * importers; the activation is added after them. NULL: no members. */
    void (*config)(const tg_layer *l, tg_layer_config *cfg);
    /* Releases what the layer data owns (not the data block itself). NULL: nothing. */
    void (*destroy)(tg_layer *l);
    /* forward applies a ReLU activation itself (fused into its primitive) when
     * the layer's activation is TG_ACT_RELU, so it is not applied twice. */
    bool fuses_relu;
    /* A layer of several inputs (a merge layer: Add, Concatenate) sets these
     * two instead of build and forward; it is applied to n >= 2 nodes of a
     * graph model (tg_model_apply_n) or called with tg_layer_forward_n. The
     * shapes are without the batch, one per input. */
    tg_status (*build_n)(tg_layer *l, int n, const int *in_ndim, const int64_t *const *in_shape,
                         int *out_ndim, int64_t *out_shape);
    tg_tensor *(*forward_n)(tg_layer *l, int n, tg_tensor *const *xs, const tg_layer_ctx *ctx);
} tg_layer_vtable;

/* A new, unbuilt layer of this type, with activation act applied after forward
 * and the given name (copied; NULL: assigned Keras style when it joins a model
 * or is first built alone). The caller owns it (tg_layer_free), or hands it to
 * tg_sequential_add, which steals it. NULL with the last error set on a bad
 * argument (a type without class_name or base_name, a bad name). */
tg_layer *tg_layer_new(const tg_layer_vtable *vt, tg_activation act, const char *name);
/* The zeroed block of vt->data_size bytes (aligned for any type), borrowed,
 * living as long as the layer; NULL when the type has none. */
void *tg_layer_data(const tg_layer *layer);
const tg_layer_vtable *tg_layer_get_vtable(const tg_layer *layer);
tg_activation tg_layer_activation(const tg_layer *layer);

/* During build only: creates a parameter "<model>/<layer>/<short_name>" (in a
 * model; "<layer>/<short_name>" for a layer built alone) of the model's
 * dtype, filled by init from the model's generator, requiring grad unless the
 * layer is frozen. Returns it (borrowed: the layer owns it) or NULL (the error
 * set; return that status from build). short_name must be unique in the layer
 * among parameters and buffers and must not contain '/'. Any number. */
tg_tensor *tg_layer_add_param(tg_layer *l, const char *short_name, int ndim,
                              const int64_t *shape, tg_initializer init);
/* During build only: a non-trainable buffer named as a parameter (BatchNorm's
 * moving mean and variance) filled with value. It never requires grad, is not
 * among a model's parameters (optimizers never see it), counts as a
 * non-trainable parameter in summaries, and is carried by state dicts and
 * checkpoints under "<layer>/<short_name>" after the layer's parameters. */
tg_tensor *tg_layer_add_buffer(tg_layer *l, const char *short_name, int ndim,
                               const int64_t *shape, double value);

/* Builds a layer outside any model for inputs (N, in_shape...) (in_ndim dims
 * without the batch), parameters in dtype (f32 or f64), initialised from rng
 * (NULL: the global generator). An unnamed layer is named base_name. Does
 * nothing when already built. A layer in a model is built by the model. */
tg_status tg_layer_build(tg_layer *layer, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                         tg_rng *rng);
/* Runs the layer (forward, then its activation) on x (N, ...): for a user's own
 * forward functions. An unbuilt layer that belongs to no model is first built
 * for x's shape and dtype with the global generator. Dropout-like behaviour
 * follows `training`. Scoped reference; NULL on error (or NULL x). */
tg_tensor *tg_layer_forward(tg_layer *layer, tg_tensor *x, bool training);
/* The same for a layer of n inputs (a merge layer; n == 1 is tg_layer_forward):
 * built on first use from the inputs' shapes, which must then stay the same. */
tg_tensor *tg_layer_forward_n(tg_layer *layer, int n, tg_tensor *const *xs, bool training);

/* Sets the thread's last error to "<layer> (<class>): <message>" and returns
 * status: how a type's callbacks report a bad input, as in
 *   return tg_layer_error(l, TG_ERR_SHAPE, "needs 1-D features, got %d dims", nd); */
tg_status tg_layer_error(const tg_layer *l, tg_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Buffers exist once built: count, the i-th (borrowed, named as parameters),
 * by short name; NULL with the error set when absent. */
int tg_layer_buffer_count(const tg_layer *layer);
tg_tensor *tg_layer_buffer(const tg_layer *layer, int i);
tg_tensor *tg_layer_buffer_by_name(const tg_layer *layer, const char *name);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
