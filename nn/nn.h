/* nn/nn.h -- layers, the Sequential model, initializers, optimizers, metrics.
 *
 * The layer that makes models short to write: a tg_sequential holds layers that
 * own named parameters ("conv2d/kernel", "dense/bias"), infers every layer's
 * output shape from the input shape, prints a Keras-style summary, and exports
 * and loads its parameters as a state dict (libtensor/state_dict.h), which io/
 * writes as HDF5. Optimizers (SGD, Adam, AdamW, RMSprop) update parameters in
 * place, with optional gradient clipping.
 *
 * Ownership (as in libtensor/tensor.h): layers, models and optimizers are plain
 * owned objects: a *_new function returns one the caller frees with the matching
 * *_free, unless it hands it to a function that "steals" it. Tensors returned by
 * forward functions are scoped references; parameter getters return borrowed
 * tensors that live as long as their model.
 *
 * Layout: tensors are channels first, as ops/ops.h wants: images (N, C, H, W),
 * conv kernels (O, C, KH, KW), dense kernels (out, in). Keras stores conv kernels
 * (KH, KW, C, O) and dense kernels (in, out): the parameter counts are the same,
 * the shapes are not. Output shapes in summaries are printed as this library's
 * tensors have them: "(None, 32, 26, 26)" where Keras prints "(None, 26, 26, 32)". */
#ifndef TG_NN_H
#define TG_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../libtensor/tensor.h"
#include "../libtensor/rng.h"
#include "../libtensor/state_dict.h"
#include "../libtensor/export.h"
#include "layer.h"
#include "model.h"
#include "batch.h"
#include "fit.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ activations */

/* Keras's names: "linear", "relu", "tanh", "sigmoid", "softmax", "leaky_relu",
 * "elu", "gelu", "swish", "softplus", "hard_sigmoid"; "invalid" out of range. */
const char *tg_activation_name(tg_activation act);
/* The activation with Keras's name (tg_activation_name's, and "silu" for
 * TG_ACT_SWISH, the name Keras 3 and PyTorch use) into *out. TG_ERR_ARG naming
 * the string when there is none. */
tg_status tg_activation_from_name(tg_activation *out, const char *name);
/* Applies act to x (a differentiable op; scoped reference; NONE returns x itself,
 * as a new scoped reference). NULL on error. */
tg_tensor *tg_activation_apply(tg_tensor *x, tg_activation act);

/* ================================================================ initializers */

/* Keras's glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)). For a 2-D
 * (out, in) kernel fan_in = in, fan_out = out; for (O, I, k...) kernels both are
 * multiplied by the receptive field size prod(k...). Floating dtypes; rng NULL
 * means the global generator. Scoped reference, NULL on error. */
tg_tensor *tg_glorot_uniform(tg_dtype dtype, int ndim, const int64_t *shape, tg_rng *rng);
/* Keras's he_normal: a normal truncated at 2 sigma, sigma = sqrt(2 / fan_in) / 0.8796
 * so that the samples' standard deviation is sqrt(2 / fan_in). */
tg_tensor *tg_he_normal(tg_dtype dtype, int ndim, const int64_t *shape, tg_rng *rng);
/* "glorot_uniform", "he_normal", "zeros", "ones"; "invalid" out of range. */
const char *tg_initializer_name(tg_initializer init);
/* Overwrites every element of t (borrowed, floating, contiguous or not) in place
 * and bumps its version. Fans come from t's shape as tg_glorot_uniform documents:
 * (out, in) or (O, I, k...). rng NULL means the global generator. Records nothing
 * for autodiff. */
tg_status tg_init_fill(tg_tensor *t, tg_initializer init, tg_rng *rng);

/* ================================================================ layers
 * (the layer type itself, for defining new layers: nn/layer.h) */

/* How a convolution or pooling window meets the border. */
typedef enum tg_padding {
    TG_PADDING_VALID = 0, /* no padding: the window stays inside the input */
    TG_PADDING_SAME,      /* Keras's "same": output extent ceil(in / stride), the
                           * padding split with the odd pixel at the bottom/right */
    TG_PADDING_EXPLICIT   /* the pad[4] field: top, bottom, left, right */
} tg_padding;

/* Every layer option has a default; name NULL assigns one Keras style when the
 * layer joins a model ("conv2d", "conv2d_1", ...). A given name must be unique in
 * its model and must not contain '/'. */
typedef struct tg_conv2d_layer_opts {
    int stride[2];             /* h, w */
    tg_padding padding;
    int pad[4];                /* TG_PADDING_EXPLICIT only: top, bottom, left, right */
    int dilation[2];
    bool use_bias;
    tg_initializer kernel_init;
    tg_initializer bias_init;
    const char *name;          /* copied */
    /* Keras's Conv2D(groups=): the input channels and the filters split into
     * this many groups, each convolved on its own (the kernel is (filters,
     * C/groups, KH, KW)); both must be divisible by it. 0 or 1: one group. */
    int groups;
} tg_conv2d_layer_opts;
#define TG_CONV2D_LAYER_OPTS_INIT \
    { {1, 1}, TG_PADDING_VALID, {0, 0, 0, 0}, {1, 1}, true, TG_INIT_GLOROT_UNIFORM, TG_INIT_ZEROS, \
      NULL, 1 }

typedef struct tg_pool2d_layer_opts {
    int stride[2];             /* h, w; 0 means the pool size (Keras's default) */
    tg_padding padding;
    int pad[4];                /* TG_PADDING_EXPLICIT only; each smaller than the pool */
    const char *name;
} tg_pool2d_layer_opts;
#define TG_POOL2D_LAYER_OPTS_INIT { {0, 0}, TG_PADDING_VALID, {0, 0, 0, 0}, NULL }

typedef struct tg_dense_layer_opts {
    bool use_bias;
    tg_initializer kernel_init;
    tg_initializer bias_init;
    const char *name;
} tg_dense_layer_opts;
#define TG_DENSE_LAYER_OPTS_INIT { true, TG_INIT_GLOROT_UNIFORM, TG_INIT_ZEROS, NULL }

/* Constructors: each returns a new layer the caller owns (tg_layer_free, or hand
 * it to tg_sequential_add, which steals it), or NULL with the last error set on
 * a bad argument. opts NULL means the _INIT defaults. Parameters are created when
 * the model is built, once the input shape is known. */

/* Conv2D: `filters` output channels, a kh x kw kernel; input (C, H, W). */
tg_layer *tg_layer_new_conv2d(int filters, int kh, int kw, tg_activation act,
                              const tg_conv2d_layer_opts *opts);
/* DepthwiseConv2D (Keras): each of the C input channels convolved with its own
 * depth_multiplier filters, C * depth_multiplier outputs; a grouped Conv2D with
 * C groups. Its kernel "depthwise_kernel" is (C * depth_multiplier, 1, KH, KW)
 * (Keras stores (KH, KW, C, depth_multiplier)). opts as Conv2D's; its groups
 * must be 0 (the layer sets it from C). */
tg_layer *tg_layer_new_depthwise_conv2d(int kh, int kw, int depth_multiplier,
                                        tg_activation act, const tg_conv2d_layer_opts *opts);
/* MaxPooling2D / AveragePooling2D with a ph x pw window; input (C, H, W). The
 * average excludes padding. */
tg_layer *tg_layer_new_max_pool2d(int ph, int pw, const tg_pool2d_layer_opts *opts);
tg_layer *tg_layer_new_avg_pool2d(int ph, int pw, const tg_pool2d_layer_opts *opts);
/* Dense: `units` outputs; input must be 1-D features (put a Flatten before it:
 * Keras would apply Dense to the last axis of a higher-rank input, libtensor
 * refuses rather than guess). */
tg_layer *tg_layer_new_dense(int units, tg_activation act, const tg_dense_layer_opts *opts);
/* Dropout with 0 <= rate < 1 (inverted dropout: active only in training mode). */
tg_layer *tg_layer_new_dropout(double rate);
/* Flatten: (C, H, W) -> (C*H*W). */
tg_layer *tg_layer_new_flatten(void);
/* GlobalMaxPooling2D / GlobalAveragePooling2D: (C, H, W) -> (C), or (C, 1, 1)
 * with keepdims (Keras's keepdims; its default is false). */
tg_layer *tg_layer_new_global_max_pool2d(bool keepdims);
tg_layer *tg_layer_new_global_avg_pool2d(bool keepdims);
/* ZeroPadding2D: (C, H, W) -> (C, H + pad[0] + pad[1], W + pad[2] + pad[3]),
 * pad = {top, bottom, left, right}, each >= 0 (Keras's ((top, bottom), (left,
 * right))). */
tg_layer *tg_layer_new_zero_padding2d(const int pad[4]);
/* Reshape: the features (everything after the batch axis) to target_shape,
 * ndim 1 .. TG_MAX_DIMS - 1 extents, at most one -1 (inferred); the element
 * count must match at build. Channels-first order: reshaping (C, H, W) reads
 * c, h, w (Keras reads h, w, c). A view when the input is contiguous. */
tg_layer *tg_layer_new_reshape(int ndim, const int64_t *target_shape);
/* Activation(act) and Softmax (= Activation(softmax) with Keras's class name). */
tg_layer *tg_layer_new_activation(tg_activation act);
tg_layer *tg_layer_new_softmax(void);
/* LeakyReLU(alpha) (Keras 2's default alpha is 0.3) and ELU(alpha) (default 1.0):
 * tg_leaky_relu and tg_elu with the layer's alpha, which must be finite (LeakyReLU:
 * also >= 0, as Keras requires); config {"alpha": a}. */
tg_layer *tg_layer_new_leaky_relu(double alpha);
tg_layer *tg_layer_new_elu(double alpha);
/* Keras's ReLU layer: y = min(x, max_value) for x >= threshold, negative_slope
 * (x - threshold) below it; max_value INFINITY means no cap (Keras's None; its
 * default), so (INFINITY, 0, 0) is relu and (6, 0, 0) relu6. Needs max_value >= 0,
 * negative_slope >= 0, a finite threshold. The gradient is 1 between threshold and
 * max_value, negative_slope below, 0 above and at max_value; with threshold 0 the
 * kink takes tg_leaky_relu's rule (negative_slope at 0). config {"max_value": m or
 * null, "negative_slope": s, "threshold": t}. */
tg_layer *tg_layer_new_relu_opts(double max_value, double negative_slope, double threshold);

/* BatchNormalization (Keras's, over axis 1: the features of (F), the channels of
 * (C, H, W)): gamma (ones) when scale, beta (zeros) when center, and the
 * non-trainable buffers moving_mean (zeros) and moving_variance (ones), saved in
 * state dicts and checkpoints. Training mode normalises with the batch
 * statistics and moves the buffers, moving = moving * momentum + batch * (1 -
 * momentum), the variance biased (tg_batch_norm, ops/ops.h); evaluation mode
 * normalises with the buffers. Keras's parameter count: 4 * C (2 * C of them
 * non-trainable) with center and scale. */
typedef struct tg_batch_norm_layer_opts {
    double momentum;  /* in [0, 1]; Keras's default 0.99 */
    double epsilon;   /* finite, > 0; Keras's default 1e-3 */
    bool center;      /* a trainable beta (shift) */
    bool scale;       /* a trainable gamma (scale) */
    const char *name; /* copied */
} tg_batch_norm_layer_opts;
#define TG_BATCH_NORM_LAYER_OPTS_INIT { 0.99, 1e-3, true, true, NULL }
tg_layer *tg_layer_new_batch_norm(const tg_batch_norm_layer_opts *opts);

/* Frees a layer that no model owns (one in a model is freed with the model:
 * freeing it is then TG_ERR_STATE and does nothing). NULL is ignored. */
void tg_layer_free(tg_layer *layer);

/* Borrowed strings: the name ("conv2d_1"; NULL until assigned by a model unless
 * given) and the Keras class name ("Conv2D", "MaxPooling2D", "AveragePooling2D",
 * "Dropout", "Flatten", "Dense", "Activation", "Softmax", "BatchNormalization"). */
const char *tg_layer_name(const tg_layer *layer);
const char *tg_layer_type(const tg_layer *layer);
/* Renames a layer before it joins a model or is built (TG_ERR_STATE afterwards).
 * Copied. */
tg_status tg_layer_set_name(tg_layer *layer, const char *name);

/* A frozen layer (trainable false) has parameters that do not require grad: they
 * get no gradient, optimizers leave them alone, and they count as non-trainable.
 * May change at any time; takes effect on the next forward. */
tg_status tg_layer_set_trainable(tg_layer *layer, bool trainable);
bool tg_layer_trainable(const tg_layer *layer);

/* Parameters exist once the layer is built (by its model, by tg_layer_build or
 * by a first tg_layer_forward). The i-th parameter (borrowed; named
 * "<model>/<layer>/kernel" in a model, "<layer>/kernel" alone), NULL when out of
 * range. Buffers:
 * tg_layer_buffer (nn/layer.h). */
int tg_layer_param_count(const tg_layer *layer);
tg_tensor *tg_layer_param(const tg_layer *layer, int i);
/* The parameter with this short name ("kernel", "bias"), borrowed; NULL if none. */
tg_tensor *tg_layer_param_by_name(const tg_layer *layer, const char *name);
/* Number of parameter and buffer elements (0 before build), as Keras counts
 * weights: buffers count as non-trainable. */
int64_t tg_layer_count_params(const tg_layer *layer);
/* The output shape without the batch dimension, once built: *ndim entries in a
 * borrowed array; NULL (and *ndim 0) before build. */
const int64_t *tg_layer_output_shape(const tg_layer *layer, int *ndim);

/* Transfer learning: copies src's parameter and buffer values into dst's (both
 * built, same type, same names, shapes and dtypes; checked before anything is
 * copied). dst keeps its own tensors and trainable flag. */
tg_status tg_layer_copy_params(tg_layer *dst, const tg_layer *src);

/* ================================================================ Sequential */

/* One model type: a Sequential model is a tg_model whose layers form a chain;
 * tg_sequential is the same type under the name the Sequential API uses. */
typedef struct tg_model tg_model;
typedef struct tg_model tg_sequential;

/* A new, empty model for inputs of shape (N, input_shape...): input_shape excludes
 * the batch, e.g. tg_sequential_new(TG_SHAPE(1, 28, 28)). Parameters will be f32.
 * The model is named "sequential" and starts in training mode (as in PyTorch:
 * call tg_sequential_set_training(m, false) to evaluate). Caller frees with
 * tg_sequential_free. NULL on a bad shape. */
tg_sequential *tg_sequential_new(int ndim, const int64_t *input_shape);
/* Frees the model, its layers and its references to the parameters (tensors
 * retained elsewhere, e.g. by a state dict or an optimizer, stay alive). */
void tg_sequential_free(tg_sequential *model);

/* Appends a layer; steals it (also on failure, when it is freed), except a layer
 * that already belongs to a model, which is refused (TG_ERR_STATE) and left
 * alone. Fails with TG_ERR_STATE once built, TG_ERR_ARG for a duplicate name.
 * A NULL layer (a failed constructor's, as in
 * tg_sequential_add(m, tg_layer_new_dense(0, ...))) returns the constructor's
 * status and repeats its message. */
tg_status tg_sequential_add(tg_sequential *model, tg_layer *layer);

/* Before build: dtype of the parameters (TG_F32 default, TG_F64 for gradient
 * checks); rng (borrowed, must outlive the model; NULL = global) used for the
 * initializers and the dropout masks. */
tg_status tg_sequential_set_dtype(tg_sequential *model, tg_dtype dtype);
tg_status tg_sequential_set_rng(tg_sequential *model, tg_rng *rng);
/* The model's name ("sequential" by default; a layer name's rules: no '/'),
 * before build: its parameters are named "<model>/<layer>/<param>". */
tg_status tg_sequential_set_name(tg_sequential *model, const char *name);
const char *tg_sequential_name(const tg_sequential *model); /* borrowed */

/* Infers every layer's output shape and creates its parameters. Errors name the
 * layer and the shapes that do not chain ("conv2d (Conv2D): a 3x3 kernel does not
 * fit input (None, 1, 2, 2) with valid padding"); the model stays unbuilt. A
 * second call does nothing. Forward, summary, the parameter getters and the state
 * dict functions build the model when needed. */
tg_status tg_sequential_build(tg_sequential *model);
bool tg_sequential_is_built(const tg_sequential *model);

/* Training mode enables dropout; evaluation mode makes it the identity. */
void tg_sequential_set_training(tg_sequential *model, bool training);
bool tg_sequential_is_training(const tg_sequential *model);

/* Runs the layers on x (N, input_shape...); scoped reference, NULL on error. The
 * result is what the last layer computes: probabilities when it ends in softmax. */
tg_tensor *tg_sequential_forward(tg_sequential *model, tg_tensor *x);
/* The same, but a final softmax (a Softmax/Activation(softmax) layer, or a
 * layer's softmax activation) is skipped, so the result is logits. Train with
 * this and tg_cross_entropy (fused log-softmax: stable), not with forward and
 * tg_cross_entropy_probs: that is what keeps "Dense(10, softmax) + sparse
 * categorical cross-entropy" numerically stable. Argmax (accuracy) is the same
 * on either output. */
tg_tensor *tg_sequential_forward_logits(tg_sequential *model, tg_tensor *x);

/* Layers, borrowed: by index (negative counts from the end) or name; NULL (with
 * an error naming the index or name) when absent. */
int tg_sequential_layer_count(const tg_sequential *model);
tg_layer *tg_sequential_layer(const tg_sequential *model, int index);
tg_layer *tg_sequential_layer_by_name(const tg_sequential *model, const char *name);

/* All parameters in layer order (kernel, then bias), frozen ones included,
 * buffers not (they are for the state dict, not for optimizers);
 * builds the model if needed. Returns a borrowed array of *n borrowed tensors,
 * valid until the model is freed; NULL (and *n 0) on a build error. Each
 * tensor's name (tg_tensor_name) is "<model>/<layer>/<param>"
 * ("sequential/conv2d/kernel"), unique across models (as Keras 3's variable
 * paths), so one optimizer may take the parameters of several models; the
 * state dict keys leave the model's name out ("<layer>/<param>"). */
tg_tensor *const *tg_sequential_params(tg_sequential *model, size_t *n);
/* Element counts; any out-pointer may be NULL. Builds the model if needed. */
tg_status tg_sequential_count_params(int64_t *total, int64_t *trainable,
                                     int64_t *non_trainable, tg_sequential *model);
/* Zeroes the gradient of every parameter that has one. */
tg_status tg_sequential_zero_grad(tg_sequential *model);

/* Prints a Keras-style table: Layer (type), Output Shape (channels first, see the
 * top of this file), Param #, then Total / Trainable / Non-trainable params with
 * thousands separators. Builds the model if needed. */
tg_status tg_sequential_summary(tg_sequential *model, FILE *out);
/* A JSON description of the architecture (class, input shape, each layer's name,
 * class and config). malloc'd: the caller frees it. NULL on error. */
char *tg_sequential_architecture(tg_sequential *model);

/* Adds an entry "<prefix><layer>/<param>" for every parameter, then
 * "<prefix><layer>/<buffer>" for every buffer, layer by layer (retained
 * references to the live tensors: the dict sees later updates), and the string
 * attribute "<prefix>architecture" (tg_sequential_architecture). prefix may be
 * NULL or "" ("model/" is what checkpoints use). */
tg_status tg_sequential_state_dict(tg_sequential *model, tg_state_dict *sd, const char *prefix);
/* Copies the values of the entries "<prefix><layer>/<param or buffer>" into the
 * model. When sd holds the string attribute "<prefix>architecture" (every dict
 * tg_sequential_state_dict made, every checkpoint saved from one) it must be
 * this model's (tg_sequential_check_architecture): the same parameter shapes
 * with another activation are refused. Then every name, shape and dtype is
 * checked, and any entry under prefix that is neither is an error too; on a
 * mismatch the error lists the problems (the first eight: missing entry
 * 'conv2d/kernel'; 'conv2d/kernel' has shape [16, 1, 3, 3] in the state dict,
 * expected [32, 1, 3, 3]; unexpected entry 'dense_9/bias'), the status is
 * TG_ERR_FORMAT and nothing changes. An empty prefix claims every entry of the
 * dict. Other attributes are ignored. */
tg_status tg_sequential_check_state_dict(tg_sequential *model, const tg_state_dict *sd,
                                         const char *prefix); /* the check alone */
tg_status tg_sequential_load_state_dict(tg_sequential *model, const tg_state_dict *sd,
                                        const char *prefix);
/* The same load by name, shape and dtype only, whatever architecture the dict
 * says it came from: the explicit way to put weights into a model that differs
 * (another activation, a renamed model, a layer frozen or not). */
tg_status tg_sequential_load_weights(tg_sequential *model, const tg_state_dict *sd,
                                     const char *prefix);
/* TG_OK when sd's string attribute "<prefix>architecture" is this model's
 * description (tg_sequential_architecture); otherwise TG_ERR_FORMAT naming the
 * first difference: the layer (index, name, class) and the item, saved and
 * current ("layer 4 \"dense\" (Dense) differs: saved \"activation\": \"relu\",
 * this model \"activation\": \"tanh\""), or the layer counts, or the model's
 * own fields (input shape, dtype, name). A dict without the attribute is an
 * error here (its architecture is unknown). */
tg_status tg_sequential_check_architecture(tg_sequential *model, const tg_state_dict *sd,
                                           const char *prefix);

/* ================================================================ metrics */

/* Fraction of rows of scores (N, C) (logits or probabilities: argmax is the same)
 * whose first maximum is at labels[n] (labels (N), i32/i64/u8). Not
 * differentiable. NaN (with the last error set) on bad arguments. */
double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels);
/* The same as a count of correct rows, to accumulate over batches. */
tg_status tg_accuracy_count(int64_t *correct, const tg_tensor *scores, const tg_tensor *labels);

/* Top-k accuracy (Keras's top_k_categorical_accuracy with integer labels,
 * sparse_top_k_categorical_accuracy): row n is a hit when fewer than k classes
 * score strictly more than its label's class. Ties at the k-th place are
 * therefore all inside the top k (TensorFlow's in_top_k rule; PyTorch's topk
 * would pick one of them), and a NaN score at the label is a miss. k >= 1;
 * k >= C makes every row with a non-NaN label score a hit. k = 1 differs from
 * tg_accuracy only on ties (tg_accuracy takes the first maximum). Shapes,
 * dtypes and errors as tg_accuracy. */
double tg_top_k_accuracy(const tg_tensor *scores, const tg_tensor *labels, int k);
tg_status tg_top_k_accuracy_count(int64_t *correct, const tg_tensor *scores,
                                  const tg_tensor *labels, int k);

/* Adds one batch to a confusion matrix: matrix is n_classes x n_classes counts,
 * row-major, rows the true class and columns the predicted one (as
 * tf.math.confusion_matrix and scikit-learn); the caller zeroes it before the
 * first batch. pred is either scores (N, n_classes), floating, whose row's first
 * maximum is the prediction (as tg_accuracy), or predicted classes (N), integer
 * (i32/i64/u8). labels (N), i32/i64/u8. Every label and predicted class must be
 * in 0..n_classes-1; on any error the matrix is left as it was. */
tg_status tg_confusion_matrix_add(int64_t *matrix, int64_t n_classes, const tg_tensor *pred,
                                  const tg_tensor *labels);

/* Per-class figures of a confusion matrix (as above). For class k:
 *   precision = m[k][k] / (column k's sum)   (of the rows predicted k, how many are k)
 *   recall    = m[k][k] / (row k's sum)      (of the rows that are k, how many were found)
 *   f1        = 2 precision recall / (precision + recall)
 * A 0/0 is 0 (scikit-learn's zero_division=0, Keras's divide_no_nan), so a class
 * never predicted has precision 0. support is row k's sum, predicted column k's. */
typedef struct tg_class_metrics {
    double precision;
    double recall;
    double f1;
    int64_t support;
    int64_t predicted;
} tg_class_metrics;

/* Fills per_class[0..n_classes-1] (may be NULL) and *macro (may be NULL): the
 * unweighted mean of precision, recall and f1 over all n_classes classes
 * (scikit-learn's "macro avg", classes without support included, their
 * figures 0), with support and predicted the totals. Negative counts are an
 * error (TG_ERR_RANGE naming the cell). */
tg_status tg_class_metrics_compute(tg_class_metrics *per_class, tg_class_metrics *macro,
                                   const int64_t *matrix, int64_t n_classes);

/* Regression metrics, not differentiable (the loss is an op: tg_mse):
 * the mean over all elements of (pred - target)^2 and of |pred - target|,
 * accumulated in double. pred and target have the same shape (any, not empty)
 * and a floating dtype each (f32 and f64 may mix). NaN (with the last error
 * set) on bad arguments; a NaN element gives NaN (no error). */
double tg_mean_squared_error(const tg_tensor *pred, const tg_tensor *target);
double tg_mean_absolute_error(const tg_tensor *pred, const tg_tensor *target);

/* ================================================================ optimizers */

typedef struct tg_optimizer tg_optimizer;

/* The largest value a counter read back from a state dict may hold: the
 * optimizer's step, and the epoch, batch and step of a training state. 2^53 is
 * the range a double holds exactly (Adam's bias correction takes the step as a
 * double), beyond any real run and far enough from INT64_MAX that counting on
 * never overflows. A larger or negative value is an error on import. */
#define TG_TRAIN_COUNTER_MAX ((int64_t)1 << 53)

/* SGD. With momentum mu (velocity buffers only when mu != 0):
 *   g' = g + weight_decay * p                 (coupled L2, as PyTorch's SGD)
 *   v  = mu * v - lr * g'
 *   p += v                                    (classic)
 *   p += mu * v - lr * g'                     (nesterov; the Keras 2 formula) */
typedef struct tg_sgd_opts {
    double lr;
    double momentum;
    bool nesterov;
    double weight_decay;
} tg_sgd_opts;
#define TG_SGD_OPTS_INIT { 0.01, 0.0, false, 0.0 }

/* Adam exactly as Keras 2.x computes it (tf ApplyAdam), step t counting from 1,
 * with PyTorch Adam's coupled L2 weight decay in front (weight_decay 0: off):
 *   g' = g + weight_decay * p
 *   m = b1 m + (1 - b1) g';   v = b2 v + (1 - b2) g'^2
 *   lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
 *   p -= lr_t m / (sqrt(v) + epsilon)
 * Note epsilon is added to sqrt(v) *after* the bias correction is folded into
 * lr_t, as Keras does (PyTorch divides by sqrt(v_hat) + eps instead). The decay
 * goes through the moments, so Adam rescales it per element; for the decay of
 * the AdamW paper use tg_optimizer_new_adamw. (Keras 3's Adam(weight_decay=)
 * is that decoupled decay, not this one.) */
typedef struct tg_adam_opts {
    double lr;
    double beta1;
    double beta2;
    double epsilon;
    double weight_decay; /* >= 0; last, so older 4-value initialisers mean no decay */
} tg_adam_opts;
#define TG_ADAM_OPTS_INIT { 1e-3, 0.9, 0.999, 1e-7, 0.0 }

/* AdamW, decoupled weight decay (Loshchilov & Hutter), as Keras 3's AdamW
 * computes it: first the decay, straight on the parameter and scaled by the
 * current lr as Keras and PyTorch do (the paper scales it by the schedule
 * multiplier eta_t alone), then the Adam step above on the decayed parameter,
 * from the undecayed gradient:
 *   p = p - p * weight_decay * lr          (Keras 3: variable - variable * wd * lr)
 *   m, v, lr_t as Adam (no decay in g)
 *   p -= lr_t m / (sqrt(v) + epsilon)
 * This is Keras 3's formula (its _apply_weight_decay, then Adam's update with
 * epsilon after the bias correction), in the same order; Keras 3 writes the
 * moments as m += (g - m)(1 - b1), equal in exact arithmetic, so f32 results
 * may differ from it in the last bits. Every parameter given is decayed (biases
 * too, as Keras without exclude_from_weight_decay). PyTorch's AdamW has the
 * same structure (p *= 1 - lr * wd, then Adam) but divides by
 * sqrt(v_hat) + eps, so with PyTorch's eps 1e-8 the two agree only where
 * sqrt(v_hat) >> eps. Defaults are Keras 3's: weight_decay 0.004 (PyTorch's is
 * 0.01), epsilon 1e-7 as this library's Adam. weight_decay 0 is exactly Adam. */
typedef struct tg_adamw_opts {
    double lr;
    double beta1;
    double beta2;
    double epsilon;
    double weight_decay; /* >= 0 */
} tg_adamw_opts;
#define TG_ADAMW_OPTS_INIT { 1e-3, 0.9, 0.999, 1e-7, 0.004 }

/* RMSprop as Keras 2.x, with PyTorch RMSprop's coupled L2 weight decay in front
 * (weight_decay 0: off):
 *   g' = g + weight_decay * p;  v = rho v + (1 - rho) g'^2;
 *   momentum 0:  p -= lr g' / (sqrt(v) + epsilon)
 *   momentum mu: mom = mu mom + lr g' / sqrt(v + epsilon); p -= mom
 * (Keras's momentum branch is TensorFlow's ApplyRMSProp, which puts epsilon
 * under the root.) */
typedef struct tg_rmsprop_opts {
    double lr;
    double rho;
    double momentum;
    double epsilon;
    double weight_decay; /* >= 0; last, so older 4-value initialisers mean no decay */
} tg_rmsprop_opts;
#define TG_RMSPROP_OPTS_INIT { 1e-3, 0.9, 0.0, 1e-7, 0.0 }

/* New optimizer over n parameters (each retained until tg_optimizer_free). Pass a
 * model's tg_sequential_params(): frozen parameters are kept and skipped at each
 * step, so they may be unfrozen later. Parameters must be contiguous f32 or f64
 * leaves with distinct names (an unnamed one is called "param<i>"). The state
 * (velocities, moments) is allocated here, once. opts NULL = defaults. Caller
 * frees with tg_optimizer_free. NULL on error. */
tg_optimizer *tg_optimizer_new_sgd(tg_tensor *const *params, size_t n, const tg_sgd_opts *opts);
tg_optimizer *tg_optimizer_new_adam(tg_tensor *const *params, size_t n, const tg_adam_opts *opts);
tg_optimizer *tg_optimizer_new_adamw(tg_tensor *const *params, size_t n,
                                     const tg_adamw_opts *opts);
tg_optimizer *tg_optimizer_new_rmsprop(tg_tensor *const *params, size_t n,
                                       const tg_rmsprop_opts *opts);
void tg_optimizer_free(tg_optimizer *opt);

/* Gradient clipping, applied by tg_optimizer_step to the gradients it uses
 * before the update (and before any weight decay is added), as Keras's
 * optimizer arguments of the same names; each 0 = off, at most one non-zero
 * (Keras refuses two as well):
 *   clipvalue c:        g = min(max(g, -c), c) per element
 *   clipnorm c:         g = g * c / max(||g||, c) for each parameter's gradient
 *   global_clipnorm c:  g = g * c / max(N, c) for every gradient, N the L2 norm
 *                       of all of them together (PyTorch's clip_grad_norm_,
 *                       which divides by N + 1e-6 instead)
 * Norms are summed in double; the factor is exactly 1 under the threshold.
 * Parameters the step skips (frozen, or without a gradient) count for nothing
 * in N. The gradients themselves are not changed (tg_clip_grad_norm does). */
typedef struct tg_clip_opts {
    double clipvalue;
    double clipnorm;
    double global_clipnorm;
} tg_clip_opts;
#define TG_CLIP_OPTS_INIT { 0.0, 0.0, 0.0 }

/* Sets opt's clipping (copied; NULL = all off). TG_ERR_ARG naming the field for
 * a negative or non-finite threshold or for two set at once, leaving opt's
 * clipping as it was. New optimizers have all off. */
tg_status tg_optimizer_set_clipping(tg_optimizer *opt, const tg_clip_opts *clip);
/* Writes opt's clipping to *out. */
tg_status tg_optimizer_clipping(tg_clip_opts *out, const tg_optimizer *opt);

/* Clips the gradients of params (borrowed; NULL entries and duplicates are
 * errors) in place by their global L2 norm N, as Keras's clip_by_global_norm,
 * without an optimizer: when N > max_norm each gradient is multiplied by
 * max_norm / N in its own dtype (bumping its version), else nothing changes.
 * Parameters that do not require grad or have no gradient count for nothing.
 * *total_norm_out (may be NULL) gets N, summed in double, before clipping.
 * max_norm must be > 0 (INFINITY only measures). A non-finite N (a NaN or an
 * infinity in a gradient, or an f64 sum of squares overflowing) is TG_ERR_RANGE
 * naming the first such gradient, with *total_norm_out = N and no gradient
 * changed. Followed by a step, this equals the optimizer's global_clipnorm. */
tg_status tg_clip_grad_norm(tg_tensor *const *params, size_t n, double max_norm,
                            double *total_norm_out);

/* One update of every parameter that requires grad and has a gradient, in place
 * (no recording, no allocation; bumps each updated tensor's version), after the
 * optimizer's clipping (tg_optimizer_set_clipping). Counts one step even when
 * every parameter was skipped. All or nothing: every gradient is checked first
 * (shape, dtype, and that each element is finite, in one vectorised read), so a
 * NaN or an infinity in any gradient returns TG_ERR_RANGE ("the gradient of
 * dense/kernel is not finite (nan at flat index 12 of [128, 10]); no parameter
 * was changed") with no parameter, slot or step count changed -- the check
 * Keras's TerminateOnNaN makes on the loss, here on what would reach the
 * weights. So is a gradient norm that overflows a double under clipnorm or
 * global_clipnorm. TG_ERR_STATE after TG_TRAIN_COUNTER_MAX steps. */
tg_status tg_optimizer_step(tg_optimizer *opt);
/* Zeroes the gradients of all its parameters (keeping their buffers). */
tg_status tg_optimizer_zero_grad(tg_optimizer *opt);

/* "sgd", "adam", "adamw", "rmsprop" (borrowed). */
const char *tg_optimizer_type(const tg_optimizer *opt);
int64_t tg_optimizer_steps(const tg_optimizer *opt); /* steps taken so far */
double tg_optimizer_lr(const tg_optimizer *opt);
tg_status tg_optimizer_set_lr(tg_optimizer *opt, double lr);

/* ---- learning-rate schedules ----
 * A schedule is a pure function of the step (or epoch) t >= 0 -- count what
 * you like, call tg_lr_schedule_at and hand the value to tg_optimizer_set_lr:
 *   TG_LR_STEP         lr * gamma^floor(t / step_size)   (PyTorch's StepLR)
 *   TG_LR_EXPONENTIAL  lr * gamma^(t / step_size), floor(t / step_size) with
 *                      staircase (Keras's ExponentialDecay(lr, decay_steps =
 *                      step_size, decay_rate = gamma, staircase))
 *   TG_LR_COSINE       lr * ((1 - alpha) (1 + cos(pi min(t, step_size) /
 *                      step_size)) / 2 + alpha)  (Keras's CosineDecay(lr,
 *                      decay_steps = step_size, alpha); PyTorch's
 *                      CosineAnnealingLR with eta_min = alpha lr, up to t = T_max)
 *   TG_LR_CONSTANT     lr */
typedef enum tg_lr_kind {
    TG_LR_CONSTANT,
    TG_LR_STEP,
    TG_LR_EXPONENTIAL,
    TG_LR_COSINE
} tg_lr_kind;

typedef struct tg_lr_schedule {
    tg_lr_kind kind;
    double lr;          /* the initial learning rate, > 0 */
    int64_t step_size;  /* step/exponential/cosine: >= 1 */
    double gamma;       /* step/exponential: > 0 */
    bool staircase;     /* exponential */
    double alpha;       /* cosine: the final fraction of lr, 0..1 */
} tg_lr_schedule;
#define TG_LR_SCHEDULE_INIT { TG_LR_CONSTANT, 1e-3, 1, 0.1, false, 0.0 }

/* The learning rate at t (>= 0); NaN with TG_ERR_ARG naming the field on a bad
 * schedule or a negative t. */
double tg_lr_schedule_at(const tg_lr_schedule *s, int64_t t);

/* Reduce on plateau (Keras's ReduceLROnPlateau, the same rules): after each
 * epoch, tg_lr_plateau_update with the monitored value. A value better than
 * the best by more than min_delta (lower, or higher with maximize) resets the
 * wait; otherwise, outside the cooldown, the wait grows, and at patience the
 * optimizer's learning rate is multiplied by factor (not below min_lr; a rate
 * already at min_lr stays) and the wait resets. The cooldown counts down at
 * the start of each update, before the comparison, as Keras's does, so the
 * cooldown - 1 epochs after a reduction do not count. A NaN value never
 * improves. */
typedef struct tg_lr_plateau_opts {
    double factor;     /* 0 < factor < 1 */
    int patience;      /* >= 0 */
    double min_delta;  /* >= 0 */
    int cooldown;      /* >= 0 */
    double min_lr;     /* >= 0 */
    bool maximize;     /* monitor an accuracy rather than a loss */
} tg_lr_plateau_opts;
#define TG_LR_PLATEAU_OPTS_INIT { 0.1, 10, 1e-4, 0, 0.0, false }

/* The state; a plain struct the caller holds (no allocation). */
typedef struct tg_lr_plateau {
    tg_lr_plateau_opts o;
    double best;
    int wait;
    int cooldown_left;
} tg_lr_plateau;

/* Starts a plateau tracker (opts NULL: the _INIT defaults); TG_ERR_ARG naming a
 * bad field. */
tg_status tg_lr_plateau_init(tg_lr_plateau *p, const tg_lr_plateau_opts *opts);
/* One epoch's value; lowers opt's learning rate when the plateau says so.
 * *reduced (may be NULL) tells whether it did. */
tg_status tg_lr_plateau_update(tg_lr_plateau *p, tg_optimizer *opt, double value,
                               bool *reduced);

/* Exports the full state under prefix ("optimizer/" in checkpoints):
 *   attributes "<prefix>type" (str), "<prefix>step" (i64) and one f64 per
 *   hyper-parameter ("<prefix>lr", "<prefix>beta1", ..., "<prefix>weight_decay";
 *   nesterov as i64), the clipping as f64 "<prefix>clipvalue",
 *   "<prefix>clipnorm", "<prefix>global_clipnorm" (0 = off);
 *   entries "<prefix><param name>/<slot>" (retained references to the live
 *   buffers): slots "m", "v" (adam, adamw), "velocity" (sgd with momentum),
 *   "rms", "momentum" (rmsprop; the latter only with momentum).
 * Import checks the type, every attribute (the step in [0, TG_TRAIN_COUNTER_MAX],
 * the hyper-parameters and clipping in their domains), every slot's name, shape
 * and dtype and that no unexpected entry sits under prefix, listing the problems
 * and changing nothing on a mismatch (TG_ERR_FORMAT); then restores the step,
 * the hyper-parameters, the clipping and the slots, so the next step is exactly
 * the one the exporter would have taken. State dicts written before weight
 * decay and clipping existed load: an absent adam/rmsprop "weight_decay" or
 * clipping attribute is 0 (off), the behaviour of the code that wrote them (sgd's
 * and adamw's weight_decay are required). The check alone:
 * tg_optimizer_check_state_dict. */
tg_status tg_optimizer_state_dict(const tg_optimizer *opt, tg_state_dict *sd, const char *prefix);
tg_status tg_optimizer_load_state_dict(tg_optimizer *opt, const tg_state_dict *sd,
                                       const char *prefix);
tg_status tg_optimizer_check_state_dict(const tg_optimizer *opt, const tg_state_dict *sd,
                                        const char *prefix);

/* ================================================================ training state
 *
 * The whole state of a training run as ONE state dict, so that a run stopped
 * after any step continues bit for bit:
 *   "model/<layer>/<param>"   parameters (live references; tg_sequential_state_dict)
 *   "model/architecture"      string attribute: tg_sequential_architecture()
 *   "optimizer/..."           tg_optimizer_state_dict() (type, step, hyper-parameters,
 *                             slots as live references)
 *   "rng/state"               i64 [4]: the generator's four words, bit-cast
 *   "epoch", "batch", "step", "seed"   i64 attributes (tg_train_progress; the
 *                             seed bit-cast)
 * nn/ does not include io/: the caller writes the dict with io's
 * tg_checkpoint_save (which adds the format metadata) and reads it back with
 * tg_checkpoint_load_into into a dict made by tg_train_state_export from fresh
 * objects, then calls tg_train_state_import. Callers may add entries and
 * attributes of their own (a data order, running metrics) to the same dict. */

typedef struct tg_train_progress {
    int64_t epoch;  /* epochs completed */
    int64_t batch;  /* batches completed in the epoch after those (0 at an epoch end) */
    int64_t step;   /* optimizer steps in the whole run */
    uint64_t seed;  /* the seed the run started from (informative) */
} tg_train_progress;
#define TG_TRAIN_PROGRESS_INIT { 0, 0, 0, 0 }

#define TG_TRAIN_STATE_RNG_KEY "rng/state"

/* Adds the state of model, opt and rng (NULL: the global generator) and the
 * progress counters to sd (borrowed). Parameters and optimizer slots are
 * retained live tensors, so loading into the dict loads into the objects; the
 * rng words are a copy taken now. */
tg_status tg_train_state_export(tg_state_dict *sd, tg_sequential *model, const tg_optimizer *opt,
                                const tg_rng *rng, const tg_train_progress *progress);
/* Adds only the attributes a training state has (architecture and optimizer
 * type as empty strings, counters as 0): a dict to read a checkpoint's
 * attributes into with tg_checkpoint_load_into, cheaply and before anything is
 * loaded into live objects. */
tg_status tg_train_state_template(tg_state_dict *sd);
/* Reads the counters from sd; TG_ERR_FORMAT when one is missing, negative or
 * above TG_TRAIN_COUNTER_MAX, or when batch > step (each batch of the epoch in
 * progress was a step). */
tg_status tg_train_state_progress(tg_train_progress *out, const tg_state_dict *sd);
/* Checks that sd (a full state or a filled template) was written for this
 * model's architecture (the same JSON description: layers, their configs,
 * trainable flags, input shape, dtype) and this optimizer type. TG_ERR_FORMAT
 * naming the first difference otherwise. */
tg_status tg_train_state_check(const tg_state_dict *sd, tg_sequential *model,
                               const tg_optimizer *opt);
/* Restores model, opt and rng (NULL: global) from sd and fills *out with the
 * counters. Checks first, changing nothing on a mismatch: the counters, the
 * architecture and optimizer type (tg_train_state_check), every parameter's
 * name, shape and dtype and no unexpected entry under "model/", the optimizer's
 * state, and "rng/state". sd may be the dict the objects exported themselves
 * (filled by tg_checkpoint_load_into) or any dict with the same entries. */
tg_status tg_train_state_import(tg_train_progress *out, tg_sequential *model, tg_optimizer *opt,
                                tg_rng *rng, const tg_state_dict *sd);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
