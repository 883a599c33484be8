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
/* Index of the first maximum along axis, as i64 (not differentiable). */
tg_tensor *tg_argmax(tg_tensor *x, int axis, bool keepdim);

/* ---- linear algebra ----
 * (m,k) @ (k,n) -> (m,n); batched: (...,m,k) @ (...,k,n) with equal leading dims,
 * or a 2-D b shared by the whole batch. */
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
tg_tensor *tg_squeeze(tg_tensor *x, int dim);
tg_tensor *tg_unsqueeze(tg_tensor *x, int dim);
/* x itself (one more scoped reference) when already contiguous, else a contiguous
 * copy whose gradient flows back to x. For tg_tensor_data on a view. */
tg_tensor *tg_contiguous(tg_tensor *x);
/* Joins n tensors along dim; other extents and dtypes must match. */
tg_tensor *tg_concat(tg_tensor *const *xs, int n, int dim);

/* ---- softmax and losses ---- */
tg_tensor *tg_softmax(tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(tg_tensor *x, int axis);
/* Sparse categorical cross-entropy from logits (N, C) and integer labels (N) of
 * dtype i32, i64 or u8: mean over the batch of -log_softmax(logits)[n, label[n]].
 * Fused and numerically stable. A label outside 0..C-1 is TG_ERR_RANGE. */
tg_tensor *tg_cross_entropy(tg_tensor *logits, tg_tensor *labels);
/* The same from probabilities (Keras from_logits=False): mean of -log(p[n, label]),
 * with p clipped to [1e-7, 1 - 1e-7] as Keras does. */
tg_tensor *tg_cross_entropy_probs(tg_tensor *probs, tg_tensor *labels);
/* Mean squared error over all elements; shapes must be equal. */
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
} tg_conv2d_opts;
#define TG_CONV2D_OPTS_INIT { {1, 1}, {0, 0, 0, 0}, {1, 1}, false }

/* x (N, C, H, W), w (O, C, KH, KW), b (O) or NULL -> (N, O, OH, OW). */
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
 * in), b (out) or NULL -> (N, out). */
tg_tensor *tg_dense(tg_tensor *x, tg_tensor *w, tg_tensor *b);

/* Inverted dropout: while training, zero each element with probability rate and
 * scale the rest by 1/(1-rate); the mask comes from rng (NULL: the global one).
 * Not training, or rate 0: the identity (x itself, no copy). rate 1: all zeros.
 * rate outside [0, 1] is TG_ERR_ARG. */
tg_tensor *tg_dropout(tg_tensor *x, double rate, bool training, tg_rng *rng);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
