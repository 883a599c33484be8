/* ops/ops.h -- the differentiable ops.
 *
 * Each op computes its result at once and, when grad mode is on and an input
 * requires grad, records itself for tg_backward(). Every op:
 *   - returns a scoped reference (libtensor/scope.h), or NULL on error with the
 *     last error naming the op and the offending shapes;
 *   - returns NULL (error TG_ERR_ARG) when given a NULL tensor, so a chain of ops
 *     can be checked once at the end;
 *   - supports f32 (oneDNN where the op has a primitive) and f64 (reference
 *     kernels); tg_set_backend(TG_BACKEND_REFERENCE) runs f32 on the reference
 *     kernels too, which is how tests compare the two.
 * Binary elementwise ops broadcast like numpy; their gradients are summed back
 * over the broadcast dimensions. */
#ifndef TG_OPS_H
#define TG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/tensor.h"
#include "../libtensor/rng.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef enum tg_backend {
    TG_BACKEND_AUTO = 0,  /* oneDNN for f32 where available, reference otherwise */
    TG_BACKEND_REFERENCE  /* naive reference kernels for every dtype */
} tg_backend;

/* Per thread. Returns the previous backend. */
tg_backend tg_set_backend(tg_backend backend);
tg_backend tg_get_backend(void);

/* oneDNN primitive cache counters (process-wide). A training step after the
 * first must leave primitives_created unchanged. */
typedef struct tg_backend_stats {
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t primitives_created;
    uint64_t weight_reorders;   /* reorders of weights into a blocked layout */
    /* Activations left in a primitive's blocked layout for the next primitive
     * (conv -> ReLU -> pooling), and how many of those a plain reader had to
     * reorder back (the rest were consumed, or freed, as they were). */
    uint64_t layouts_kept;
    uint64_t layout_settles;
} tg_backend_stats;
void tg_backend_stats_get(tg_backend_stats *out);
/* Drops every cached primitive and reordered weight (frees their memory). */
void tg_backend_cache_clear(void);

/* ---- elementwise, binary with broadcasting ---- */
tg_tensor *tg_add(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_tensor *a, tg_tensor *b);
/* a ** b; the gradient with respect to b needs a > 0. */
tg_tensor *tg_pow(tg_tensor *a, tg_tensor *b);
/* max(a, b) and min(a, b), broadcasting like tg_add; a and b borrowed, returns a
 * scoped reference. The gradient goes to the larger (smaller) input; on a tie
 * (a == b) it is split evenly, g/2 to each, as PyTorch does, so that
 * tg_maximum(x, x) has gradient g. NaN inputs give unspecified results. */
tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b);

/* ---- elementwise with a scalar ---- */
tg_tensor *tg_add_scalar(tg_tensor *x, double s);
tg_tensor *tg_mul_scalar(tg_tensor *x, double s);
tg_tensor *tg_pow_scalar(tg_tensor *x, double p);

/* ---- elementwise, unary ---- */
tg_tensor *tg_neg(tg_tensor *x);
tg_tensor *tg_exp(tg_tensor *x);
tg_tensor *tg_log(tg_tensor *x);
tg_tensor *tg_sqrt(tg_tensor *x);
tg_tensor *tg_abs(tg_tensor *x);
tg_tensor *tg_tanh(tg_tensor *x);
tg_tensor *tg_sigmoid(tg_tensor *x);
tg_tensor *tg_relu(tg_tensor *x);

/* ---- activations (elementwise, unary) ----
 * x borrowed; each returns a scoped reference, or NULL with the error set (NULL x,
 * an integer dtype, a non-finite parameter). Parameters are kept in the node for
 * the backward. The derivative's value at each kink is stated below (docs/tensor-api.md,
 * "Activations at their kinks"). */
/* x > 0 ? x : alpha x; dy/dx = 1 for x > 0, alpha for x <= 0 (so alpha 0 is relu).
 * Keras 2's LeakyReLU layer defaults to alpha 0.3, its "leaky_relu" activation and
 * PyTorch to 0.2 and 0.01. */
tg_tensor *tg_leaky_relu(tg_tensor *x, double alpha);
/* x > 0 ? x : alpha (e^x - 1); dy/dx = 1 for x > 0, alpha e^x for x <= 0
 * (Keras and PyTorch default alpha 1.0). */
tg_tensor *tg_elu(tg_tensor *x, double alpha);
typedef enum tg_gelu_approx {
    TG_GELU_ERF = 0, /* x Phi(x) = x (1 + erf(x / sqrt 2)) / 2: exact (Keras's
                      * approximate=False, PyTorch's approximate='none') */
    TG_GELU_TANH = 1 /* x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 */
} tg_gelu_approx;
/* GELU in the form approximate selects; dy/dx = Phi(x) + x phi(x) for the erf form
 * (phi the standard normal density), the derivative of the tanh formula for the
 * other. Any other value of approximate is TG_ERR_ARG. */
tg_tensor *tg_gelu(tg_tensor *x, tg_gelu_approx approximate);
/* SiLU, also called swish: x sigmoid(x); dy/dx = s (1 + x (1 - s)), s = sigmoid(x). */
tg_tensor *tg_silu(tg_tensor *x);
/* log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) (no overflow for large x,
 * no loss for x << 0); dy/dx = sigmoid(x). */
tg_tensor *tg_softplus(tg_tensor *x);
/* clip(alpha x + beta, 0, 1); dy/dx = alpha where 0 < alpha x + beta < 1, else 0.
 * Keras 2 and ONNX use alpha 0.2, beta 0.5; PyTorch's Hardsigmoid is alpha 1/6,
 * beta 0.5 (Keras 3 moved to the same). */
tg_tensor *tg_hard_sigmoid(tg_tensor *x, double alpha, double beta);
/* min(max(x, lo), hi); dy/dx = 1 for lo < x < hi, 0 outside and at the bounds
 * themselves (the convention of relu'(0) = 0). Needs lo <= hi; either may be
 * infinite. f32 compares with the bounds rounded to f32. */
tg_tensor *tg_clip(tg_tensor *x, double lo, double hi);

/* ---- reductions ----
 * axes: n_axes distinct dims (negative counts from the end); n_axes 0 (axes may be
 * NULL) reduces over all dims. keepdim keeps reduced dims with extent 1. */
tg_tensor *tg_sum(tg_tensor *x, const int *axes, int n_axes, bool keepdim);
tg_tensor *tg_mean(tg_tensor *x, const int *axes, int n_axes, bool keepdim);
/* The gradient goes to the first maximal element of each reduced group. */
tg_tensor *tg_max(tg_tensor *x, const int *axes, int n_axes, bool keepdim);
/* The gradient goes to the first minimal element of each reduced group. */
tg_tensor *tg_min(tg_tensor *x, const int *axes, int n_axes, bool keepdim);
/* Product of each group (1 for an empty one). The gradient is the product of the
 * others, exact when the group holds zeros (no division by them). */
tg_tensor *tg_prod(tg_tensor *x, const int *axes, int n_axes, bool keepdim);
/* Variance and standard deviation of each group of n elements: the sum of
 * squared deviations from the group's mean divided by n - correction.
 * correction 0 is the population variance (numpy's and Keras's default,
 * tf.math.reduce_variance); 1 is Bessel's unbiased estimate (torch.var's
 * default). n - correction <= 0 is TG_ERR_SHAPE; correction < 0 TG_ERR_ARG.
 * std's gradient is 0 for a group whose elements are all equal (std 0), where
 * PyTorch's is NaN. */
tg_tensor *tg_var(tg_tensor *x, const int *axes, int n_axes, bool keepdim, int correction);
tg_tensor *tg_std(tg_tensor *x, const int *axes, int n_axes, bool keepdim, int correction);
/* Index of the first maximum along axis, as i64 (not differentiable). */
tg_tensor *tg_argmax(tg_tensor *x, int axis, bool keepdim);

/* ---- linear algebra ----
 * torch.matmul / numpy.matmul: (m,k) @ (k,n) -> (m,n); batched (...,m,k) @
 * (...,k,n) with the batch dims broadcast as in tg_add ((2,1,m,k) @ (3,k,n) ->
 * (2,3,m,n); a 2-D operand is shared by the whole batch). A 1-D a (k) is a row
 * and a 1-D b (k) a column, the extra dim dropped from the result: (k) @ (k) is
 * 0-d, (...,m,k) @ (k) is (...,m), (k) @ (...,k,n) is (...,n). */
tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b);

/* ---- views: the only ones, all differentiable (they share storage when they can;
 * tg_reshape copies where x's strides make a view impossible) ---- */
tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape); /* one -1 allowed */
/* Merges dims start_dim..end_dim (inclusive, negative from the end). Keras's
 * Flatten is tg_flatten(x, 1, -1). */
tg_tensor *tg_flatten(tg_tensor *x, int start_dim, int end_dim);
tg_tensor *tg_permute(tg_tensor *x, const int *perm);
tg_tensor *tg_transpose(tg_tensor *x, int dim0, int dim1);
/* Elements start..end-1 along dim (negative from the end). */
tg_tensor *tg_slice(tg_tensor *x, int dim, int64_t start, int64_t end);
/* Every step-th of them, x[..., start:end:step, ...] (step >= 1; a view): the
 * extent is ceil((end - start) / step). Out-of-bounds start/end are errors,
 * not clamped as in Python. */
tg_tensor *tg_slice_step(tg_tensor *x, int dim, int64_t start, int64_t end, int64_t step);
tg_tensor *tg_squeeze(tg_tensor *x, int dim);
tg_tensor *tg_unsqueeze(tg_tensor *x, int dim);
/* x itself (one more scoped reference) when already contiguous, else a contiguous
 * copy whose gradient flows back to x. For tg_tensor_data on a view. */
tg_tensor *tg_contiguous(tg_tensor *x);
/* Joins n tensors along dim; other extents and dtypes must match. */
tg_tensor *tg_concat(tg_tensor *const *xs, int n, int dim);
/* Indexing by integer tensors (i32/i64; negative values count from the end;
 * TG_ERR_RANGE names the first one out of range). Any dtype of x; the gradient
 * scatters back, summing over repeated indices. Not differentiable in index.
 * tg_index_select: rows of x along dim in the order of the 1-D index (K), the
 * result has extent K there: torch.index_select, ONNX Gather with 1-D indices,
 * keras.ops.take(x, index, axis). */
tg_tensor *tg_index_select(tg_tensor *x, int dim, tg_tensor *index);
/* tg_gather: torch.gather / ONNX GatherElements: index has x's number of dims,
 * each no larger than x's outside dim; the result has index's shape, and
 * y[i] = x[i with its dim-th coordinate replaced by index[i]]. */
tg_tensor *tg_gather(tg_tensor *x, int dim, tg_tensor *index);

/* ---- softmax and losses ---- */
tg_tensor *tg_softmax(tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(tg_tensor *x, int axis);
/* Sparse categorical cross-entropy from logits (N, C) and integer labels (N) of
 * dtype i32, i64 or u8: mean over the batch of -log_softmax(logits)[n, label[n]].
 * Fused and numerically stable. A label outside 0..C-1 is TG_ERR_RANGE. */
tg_tensor *tg_cross_entropy(tg_tensor *logits, tg_tensor *labels);

/* How a loss reduces its per-row values: their (weighted) mean, their sum, or
 * none (a (N) tensor of per-row losses). */
typedef enum tg_reduction { TG_REDUCTION_MEAN, TG_REDUCTION_SUM, TG_REDUCTION_NONE } tg_reduction;

/* No label is ignored (tg_cross_entropy_opts.ignore_index). */
#define TG_IGNORE_NONE INT64_MIN

/* Options of tg_cross_entropy_ex, PyTorch's F.cross_entropy (Keras's
 * SparseCategoricalCrossentropy has ignore_class; label smoothing is Keras's on
 * the one-hot form). With w the class weights (1 when NULL), eps the smoothing
 * and q_n = (1 - eps) onehot(t_n) + eps / C, row n's loss is
 *   l_n = - sum_c w_c q_nc log softmax(z_n)_c
 * (so w_t_n alone when eps = 0). MEAN divides the sum of l_n by the sum of
 * w_t_n over the rows not ignored (PyTorch's weighted mean); when that is 0
 * (every row ignored) the loss is 0 with a zero gradient, where PyTorch gives
 * NaN. A row whose label equals ignore_index contributes 0 (and is 0 under
 * NONE); that label may lie outside 0..C-1. PyTorch's default ignore_index is
 * -100; here the default ignores nothing, so a bad label is still an error.
 * class_weights: (C), floating, finite and >= 0, borrowed, read at the call
 * (not differentiable). */
typedef struct tg_cross_entropy_opts {
    tg_tensor *class_weights;
    double label_smoothing; /* 0 <= eps <= 1 */
    int64_t ignore_index;   /* TG_IGNORE_NONE: none */
    tg_reduction reduction;
} tg_cross_entropy_opts;
#define TG_CROSS_ENTROPY_OPTS_INIT { NULL, 0.0, TG_IGNORE_NONE, TG_REDUCTION_MEAN }

/* tg_cross_entropy with options (NULL: the _INIT defaults, the same as
 * tg_cross_entropy). A 0-d result, or (N) under TG_REDUCTION_NONE. A bad option
 * is TG_ERR_ARG naming it; weights of another length TG_ERR_SHAPE. */
tg_tensor *tg_cross_entropy_ex(tg_tensor *logits, tg_tensor *labels,
                               const tg_cross_entropy_opts *opts);
/* The same from probabilities (Keras from_logits=False): mean of -log(p[n, label]),
 * with p clipped to [1e-7, 1 - 1e-7] as Keras does. */
tg_tensor *tg_cross_entropy_probs(tg_tensor *probs, tg_tensor *labels);
/* Mean squared error over all elements of pred - target, the two broadcast as in
 * tg_add (PyTorch's mse_loss broadcasts too, with a warning): (N, 1) against (N)
 * is (N, N), which is rarely meant -- reshape first. */
tg_tensor *tg_mse(tg_tensor *pred, tg_tensor *target);

/* ---- convolutional network ops (oneDNN primitives in f32) ---- */

typedef struct tg_conv2d_opts {
    int stride[2];   /* h, w; >= 1 */
    int pad[4];      /* top, bottom, left, right; >= 0 (asymmetric allowed) */
    int dilation[2]; /* h, w; 1 = none */
    /* Apply ReLU to the output inside the convolution (a oneDNN post-op): the
     * same values and gradients as tg_relu(tg_conv2d(...)) with one pass over
     * the output fewer and one node in the graph (labelled "+relu"). What a
     * Keras Conv2D(..., activation="relu") layer uses. */
    bool relu;
    /* Grouped convolution (PyTorch's groups, Keras's Conv2D(groups=)): the C input
     * and O output channels split into groups of C/G and O/G, each group
     * convolved on its own; w is (O, C/G, KH, KW). G = C is depthwise (Keras's
     * DepthwiseConv2D with depth_multiplier O/C). 0 or 1: an ordinary
     * convolution (0 so that initialisers written before this field keep
     * working). */
    int groups;
} tg_conv2d_opts;
#define TG_CONV2D_OPTS_INIT { {1, 1}, {0, 0, 0, 0}, {1, 1}, false, 1 }

/* x (N, C, H, W), w (O, C/groups, KH, KW), b (O) or NULL -> (N, O, OH, OW). */
tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv2d_opts *opts);

typedef struct tg_pool2d_opts {
    int kernel[2];   /* h, w; >= 1 */
    int stride[2];   /* h, w; 0 means equal to the kernel (Keras's default) */
    int pad[4];      /* top, bottom, left, right; each smaller than the kernel */
    /* Output size rounded up, as PyTorch's ceil_mode: OH = ceil((H + pt + pb - KH)
     * / SH) + 1, less one when the last window would start past the input and
     * its top padding (so every window holds an input element). The extra
     * windows at the bottom and right are clipped to the input. */
    bool ceil_mode;
    /* Average pooling only: divide by the window's size within the padded input
     * (explicit padding counts as zeros; a ceil_mode window's part beyond the
     * padding does not), as PyTorch's count_include_pad=True and ONNX's
     * count_include_pad=1. false (the default): divide by the number of input
     * elements in the window, as Keras/TensorFlow and PyTorch's
     * count_include_pad=False. Max pooling ignores it. */
    bool count_include_pad;
} tg_pool2d_opts;
#define TG_POOL2D_OPTS_INIT { {2, 2}, {0, 0}, {0, 0, 0, 0}, false, false }

/* x (N, C, H, W) -> (N, C, OH, OW), OH = (H + pt + pb - KH) / SH + 1 (floor; see
 * ceil_mode). Max: the largest element of each window; its gradient goes to the
 * window's first maximum in row-major order. opts NULL: TG_POOL2D_OPTS_INIT. */
tg_tensor *tg_max_pool2d(tg_tensor *x, const tg_pool2d_opts *opts);
/* The mean of each window; padding is excluded from it unless
 * opts->count_include_pad. */
tg_tensor *tg_avg_pool2d(tg_tensor *x, const tg_pool2d_opts *opts);

/* Global pooling: x (N, C, H, W) -> the mean (avg) or the largest element (max)
 * of each (H, W) plane: (N, C), or (N, C, 1, 1) with keepdims (Keras's
 * GlobalAveragePooling2D(keepdims=...), ONNX's GlobalAveragePool with keepdims,
 * PyTorch's adaptive_avg_pool2d(x, 1)). The max's gradient goes to the plane's
 * first maximum in row-major order. H and W must be >= 1. */
tg_tensor *tg_global_avg_pool2d(tg_tensor *x, bool keepdims);
tg_tensor *tg_global_max_pool2d(tg_tensor *x, bool keepdims);

/* Constant padding of the two last axes: x (N, C, H, W) -> (N, C, H + pad[0] +
 * pad[1], W + pad[2] + pad[3]), pad = {top, bottom, left, right}, each >= 0; the
 * new elements are `value` (0 for Keras's ZeroPadding2D, PyTorch's F.pad and
 * ONNX's Pad in constant mode). dL/dx is the inner part of dL/dy. */
tg_tensor *tg_pad2d(tg_tensor *x, const int pad[4], double value);

/* Fully connected: y = x W^T + b, x of any rank >= 2 flattened to (N, in), w (out,
 * in), b (out) or NULL -> (N, out). A 1-D x (in), one sample, gives (out) (as
 * PyTorch's F.linear; recorded as unsqueeze, dense and reshape). */
tg_tensor *tg_dense(tg_tensor *x, tg_tensor *w, tg_tensor *b);

/* Inverted dropout: while training, zero each element with probability rate and
 * scale the rest by 1/(1-rate); the mask comes from rng (NULL: the global one).
 * Not training, or rate 0: the identity (x itself, no copy). rate 1: all zeros.
 * rate outside [0, 1] is TG_ERR_ARG. */
tg_tensor *tg_dropout(tg_tensor *x, double rate, bool training, tg_rng *rng);

/* ---- normalization ---- */

typedef struct tg_batch_norm_opts {
    /* true: normalise with the batch's statistics and update the running ones;
     * false (inference): normalise with the running statistics, change nothing. */
    bool training;
    /* running = running * momentum + batch * (1 - momentum) (Keras's convention;
     * PyTorch's momentum is 1 - this). In [0, 1]. */
    double momentum;
    double epsilon;  /* added to the variance; finite, > 0 */
    /* Apply ReLU to the output inside the op, in place: the values and gradients
     * of tg_relu(tg_batch_norm(...)) in one node ("+relu") and one output. */
    bool relu;
} tg_batch_norm_opts;
/* Keras's BatchNormalization defaults, in inference mode. */
#define TG_BATCH_NORM_OPTS_INIT { false, 0.99, 1e-3, false }

/* Batch normalization over axis 1 (Keras's BatchNormalization(axis=1) in NCHW):
 * x (N, C) per feature or (N, C, H, W) per channel, gamma (scale) and beta (shift)
 * of shape (C) or NULL (1 and 0), running_mean and running_var (C), x's dtype:
 *   y = gamma * (x - mean) / sqrt(var + epsilon) + beta
 * Training: mean and var are the batch's over N (and H, W), var biased (divides by
 * N*H*W, as Keras and oneDNN normalise); then, in place, running_mean =
 * running_mean * momentum + mean * (1 - momentum) and likewise running_var with
 * the same biased var (as Keras; PyTorch would use the unbiased one), each version
 * bumped. A batch of one element per channel is allowed: var is 0, y is beta, and
 * the running variance decays towards 0 (as Keras). running_mean and running_var
 * may both be NULL in training (nothing updated). Inference: mean and var are the
 * running statistics (required), left unchanged. Differentiable in x, gamma and
 * beta (in training the full derivative through the batch statistics); the
 * running statistics get no gradient. opts NULL: TG_BATCH_NORM_OPTS_INIT.
 * Errors: x not 2-D or 4-D, a vector of the wrong shape or dtype, only one of the
 * running statistics given, none in inference, momentum outside [0, 1], epsilon
 * not > 0, an empty batch in training. All arguments borrowed; returns a scoped
 * reference, or NULL with the error set (running statistics then unchanged). */
tg_tensor *tg_batch_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         tg_tensor *running_mean, tg_tensor *running_var,
                         const tg_batch_norm_opts *opts);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
