/* nn/nn_impl.h -- private: the layer struct, its vtable, and what nn/ files share.
 *
 * A layer type is one file: it embeds struct tg_layer first in its own struct,
 * fills a tg_layer_vtable, and implements shape inference (which also declares
 * the parameters' shapes) and forward. layer.c does the rest for every type:
 * names, parameter creation and initialisation, trainable flags, activation. */
#ifndef TG_NN_IMPL_H
#define TG_NN_IMPL_H

#include <stdarg.h>

#include "libtensor/tensor_impl.h"
#include "libtensor/strbuf_impl.h"
#include "autograd/autograd.h"
#include "ops/ops.h"
#include "nn/nn.h"

#define TG_LAYER_MAX_PARAMS 2

/* What forward needs to know beyond the input. */
typedef struct tg_fwd_ctx {
    bool training;     /* dropout active */
    bool skip_softmax; /* set only for the model's last layer by forward_logits */
    tg_rng *rng;       /* NULL: the global generator */
} tg_fwd_ctx;

/* "(None, 32, 26, 26)" for a batch-less shape. */
char *tg_nn_batch_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

typedef struct tg_layer_vtable {
    const char *type;      /* Keras class name: "Conv2D" */
    const char *base_name; /* automatic name stem: "conv2d" */
    /* Checks the input shape (without batch); sets l->out_ndim/out_shape and
     * declares the parameters (l->n_params, l->params[i] short name, shape, init).
     * Errors name the layer (tg_layer_who) and the shapes. */
    tg_status (*infer)(tg_layer *l, int in_ndim, const int64_t *in_shape);
    /* The layer's own computation before its activation; NULL means identity.
     * Returns a scoped reference or NULL. */
    tg_tensor *(*forward)(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx);
    /* Appends the JSON members of the layer's config ("filters": 32, ...), without
     * braces; NULL when it has none besides activation. */
    void (*config)(const tg_layer *l, tg_strbuf *b);
    /* forward applies a ReLU activation itself (fused into its primitive), so
     * tg_layer_forward must not apply it again */
    bool fuses_relu;
} tg_layer_vtable;

typedef struct tg_layer_param {
    const char *short_name; /* "kernel", "bias": static strings */
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    tg_initializer init;
    tg_tensor *t;           /* owned reference once built */
} tg_param_slot;

struct tg_layer {
    const tg_layer_vtable *vt;
    char *name;             /* malloc'd; NULL until named */
    bool trainable;
    bool in_model;          /* owned by a model: tg_layer_free refuses */
    bool built;
    tg_activation act;      /* applied after vt->forward */
    int in_ndim, out_ndim;
    int64_t in_shape[TG_MAX_DIMS], out_shape[TG_MAX_DIMS];
    int n_params;
    tg_param_slot params[TG_LAYER_MAX_PARAMS];
};

/* Allocates a zeroed derived struct of `size` bytes whose first member is a
 * tg_layer, sets vt, act and name (copied; NULL keeps it unnamed). NULL on
 * failure with the error set (naming `who`). */
tg_layer *tg_layer_alloc(size_t size, const tg_layer_vtable *vt, tg_activation act,
                         const char *name, const char *who);
/* Validates a user-given layer name; message names who. */
tg_status tg_layer_check_name(const char *who, const char *name);
/* "conv2d (Conv2D)" into buf, for error messages. */
const char *tg_layer_who(const tg_layer *l, char *buf, size_t n);
/* Runs infer, creates and initialises the parameters in dtype (from rng), names
 * them "<layer>/<short>" and applies the trainable flag. On failure nothing is
 * left allocated and the layer stays unbuilt. */
tg_status tg_layer_build(tg_layer *l, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                         tg_rng *rng);
/* vt->forward then the activation (the softmax skipped when ctx says so). */
tg_tensor *tg_layer_forward(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx);
/* Whether the layer's output passes through a final softmax that forward_logits
 * may skip. */
bool tg_layer_ends_in_softmax(const tg_layer *l);
/* Appends {"class_name": ..., "name": ..., "trainable": ..., "config": {...}}. */
void tg_layer_describe(const tg_layer *l, tg_strbuf *b);

/* ---- what the windowed layers (Conv2D, pooling) share ---- */

/* "valid", "same", "explicit". */
const char *tg_nn_padding_name(tg_padding padding);
/* Checks a constructor's padding option and, when explicit, its four pads (>= 0);
 * errors name fn. */
tg_status tg_nn_check_padding(const char *fn, tg_padding padding, const int pad[4]);
/* Resolves padding for a window of kernel k[2] (dilation dil[2], stride s[2]) over
 * an input of extents in[2] (H, W): pads[4] (top, bottom, left, right; explicit
 * ones copied from pad, Keras "same" ones computed so that out = ceil(in / s),
 * the odd pixel at the bottom/right) and the output extents out[2]. False when a
 * window does not fit (or "same" would need more than INT_MAX pads). */
bool tg_nn_resolve_window(tg_padding padding, const int pad[4], const int64_t in[2],
                          const int k[2], const int s[2], const int dil[2], int pads[4],
                          int64_t out[2]);

#endif
