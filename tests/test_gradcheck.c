/* tests/test_gradcheck.c -- the gradient-check suite: every op of TG_OP_LIST against
 * finite differences, in f64 element by element on the reference kernels (tight)
 * and in f32 along random directions on the AUTO (oneDNN) backend.
 *
 * The registry below has one row per (op, shapes) case; a test fails when an op of
 * the table has no row. Inputs follow the op's gradcheck hints (positive domain,
 * away from kinks, no ties). Composite functions and a deliberately wrong backward
 * (which must be caught) close the suite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"
#include "ops/ops_impl.h"

/* ---------------------------------------------------------------- registry */

/* How an input's values are drawn. DEFAULT follows the op's hints. */
typedef enum in_kind {
    IN_DEFAULT = 0,
    IN_VALUE,    /* U(-1, 1) */
    IN_POSITIVE, /* U(0.5, 2) */
    IN_AWAY,     /* +-U(0.3, 1): away from 0 */
    IN_DISTINCT, /* a shuffled grid with spacing 0.1: no ties */
    IN_PROB,     /* U(0.05, 0.95) */
    IN_LABELS,   /* i64 in 0..C-1, C = last extent of input 0; never requires grad */
    IN_CONST     /* U(-1, 1), does not require grad */
} in_kind;

typedef struct gc_input {
    int ndim;
    int64_t shape[6];
    in_kind kind;
} gc_input;

typedef struct gc_case {
    tg_op_id op;      /* the op the output must come from */
    const char *name; /* for reports */
    int n_in;
    gc_input in[8];
    int ia[8];        /* op arguments (axes, dims, options) */
    double da;        /* scalar argument */
} gc_case;

/* Shape literal: S(2, 3) is a 2-D input of kind DEFAULT, S0 a 0-d one. */
#define S(...) {(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}, IN_DEFAULT}
#define SK(kind, ...) {(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}, kind}
#define S0 {0, {0}, IN_DEFAULT}
#define SK0(kind) {0, {0}, kind}

static const gc_case cases[] = {
    /* binary, with numpy broadcasting */
    {TG_OP_ADD, "add same", 2, {S(2, 3), S(2, 3)}, {0}, 0},
    {TG_OP_ADD, "add row", 2, {S(2, 3), S(3)}, {0}, 0},
    {TG_OP_ADD, "add outer", 2, {S(2, 1), S(1, 3)}, {0}, 0},
    {TG_OP_ADD, "add 0-d", 2, {S0, S(2, 3)}, {0}, 0},
    {TG_OP_ADD, "add odd 3-D", 2, {S(3, 1, 5), S(4, 5)}, {0}, 0},
    {TG_OP_ADD, "add batch 1", 2, {S(1, 1), S(1)}, {0}, 0},
    {TG_OP_SUB, "sub same", 2, {S(2, 3), S(2, 3)}, {0}, 0},
    {TG_OP_SUB, "sub outer", 2, {S(3, 1), S(1, 2)}, {0}, 0},
    {TG_OP_SUB, "sub 0-d", 2, {S(3), S0}, {0}, 0},
    {TG_OP_MUL, "mul same", 2, {S(2, 3), S(2, 3)}, {0}, 0},
    {TG_OP_MUL, "mul row", 2, {S(4, 3), S(3)}, {0}, 0},
    {TG_OP_MUL, "mul outer 3-D", 2, {S(2, 1, 3), S(2, 1)}, {0}, 0},
    {TG_OP_MUL, "mul 0-d", 2, {S0, S0}, {0}, 0},
    {TG_OP_DIV, "div same", 2, {S(2, 3), SK(IN_AWAY, 2, 3)}, {0}, 0},
    {TG_OP_DIV, "div col", 2, {S(2, 3), SK(IN_AWAY, 2, 1)}, {0}, 0},
    {TG_OP_DIV, "div 0-d", 2, {SK0(IN_AWAY), SK(IN_AWAY, 5)}, {0}, 0},
    {TG_OP_POW, "pow same", 2, {S(2, 3), SK(IN_VALUE, 2, 3)}, {0}, 0},
    {TG_OP_POW, "pow row", 2, {S(3, 2), SK(IN_VALUE, 2)}, {0}, 0},
    {TG_OP_POW, "pow 0-d exponent", 2, {S(5), SK0(IN_VALUE)}, {0}, 0},
    /* a from the shuffled grid (multiples of 0.1 around 0), b uniform: no ties
     * (tests/test_ops.c checks the tie rule) */
    {TG_OP_MAXIMUM, "maximum same", 2, {S(2, 3), SK(IN_VALUE, 2, 3)}, {0}, 0},
    {TG_OP_MAXIMUM, "maximum row", 2, {S(3, 4), SK(IN_VALUE, 4)}, {0}, 0},
    {TG_OP_MAXIMUM, "maximum outer", 2, {S(3, 1), SK(IN_VALUE, 1, 2)}, {0}, 0},
    {TG_OP_MINIMUM, "minimum same", 2, {S(2, 3), SK(IN_VALUE, 2, 3)}, {0}, 0},
    {TG_OP_MINIMUM, "minimum 0-d", 2, {S0, SK(IN_VALUE, 5)}, {0}, 0},

    /* with a scalar */
    {TG_OP_ADD_SCALAR, "add_scalar", 1, {S(2, 3)}, {0}, 0.75},
    {TG_OP_ADD_SCALAR, "add_scalar 0-d", 1, {S0}, {0}, -2.0},
    {TG_OP_MUL_SCALAR, "mul_scalar", 1, {S(3, 1)}, {0}, -1.5},
    {TG_OP_MUL_SCALAR, "mul_scalar 0-d", 1, {S0}, {0}, 3.0},
    {TG_OP_POW_SCALAR, "pow_scalar 2.5", 1, {S(2, 3)}, {0}, 2.5},
    {TG_OP_POW_SCALAR, "pow_scalar -1", 1, {S(5)}, {0}, -1.0},
    {TG_OP_POW_SCALAR, "pow_scalar 0-d", 1, {S0}, {0}, 3.0},

    /* unary */
    {TG_OP_NEG, "neg", 1, {S(2, 3)}, {0}, 0},
    {TG_OP_NEG, "neg 0-d", 1, {S0}, {0}, 0},
    {TG_OP_EXP, "exp", 1, {S(2, 3)}, {0}, 0},
    {TG_OP_EXP, "exp 0-d", 1, {S0}, {0}, 0},
    {TG_OP_LOG, "log", 1, {S(3, 5)}, {0}, 0},
    {TG_OP_LOG, "log 0-d", 1, {S0}, {0}, 0},
    {TG_OP_SQRT, "sqrt", 1, {S(7)}, {0}, 0},
    {TG_OP_SQRT, "sqrt 3-D", 1, {S(2, 1, 3)}, {0}, 0},
    {TG_OP_ABS, "abs", 1, {S(2, 5)}, {0}, 0},
    {TG_OP_ABS, "abs 0-d", 1, {S0}, {0}, 0},
    {TG_OP_TANH, "tanh", 1, {S(3, 3)}, {0}, 0},
    {TG_OP_TANH, "tanh 0-d", 1, {S0}, {0}, 0},
    {TG_OP_SIGMOID, "sigmoid", 1, {S(2, 3)}, {0}, 0},
    {TG_OP_SIGMOID, "sigmoid 1", 1, {S(1)}, {0}, 0},
    {TG_OP_RELU, "relu", 1, {S(3, 4)}, {0}, 0},
    {TG_OP_RELU, "relu 0-d", 1, {S0}, {0}, 0},
    /* activations: da is alpha (leaky_relu, elu, hard_sigmoid with ia[0] / 100 as
     * beta), ia[0] gelu's approximation; clip's bounds are +-da */
    {TG_OP_LEAKY_RELU, "leaky_relu 0.3", 1, {S(3, 4)}, {0}, 0.3},
    {TG_OP_LEAKY_RELU, "leaky_relu -0.5 0-d", 1, {S0}, {0}, -0.5},
    {TG_OP_ELU, "elu 1", 1, {S(2, 5)}, {0}, 1.0},
    {TG_OP_ELU, "elu 0.4", 1, {S(7)}, {0}, 0.4},
    {TG_OP_GELU, "gelu erf", 1, {SK(IN_VALUE, 3, 4)}, {TG_GELU_ERF}, 0},
    {TG_OP_GELU, "gelu tanh", 1, {SK(IN_VALUE, 2, 3)}, {TG_GELU_TANH}, 0},
    {TG_OP_SILU, "silu", 1, {S(3, 3)}, {0}, 0},
    {TG_OP_SOFTPLUS, "softplus", 1, {S(2, 4)}, {0}, 0},
    {TG_OP_HARD_SIGMOID, "hard_sigmoid keras", 1, {S(3, 4)}, {50}, 0.2},
    {TG_OP_HARD_SIGMOID, "hard_sigmoid pytorch", 1, {S(5)}, {50}, 1.0 / 6.0},
    {TG_OP_CLIP, "clip +-0.55", 1, {S(3, 5)}, {0}, 0.55},

    /* reductions: ia = {n_axes, keepdim, axes...} */
    {TG_OP_SUM, "sum all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_SUM, "sum axis 1 keepdim", 1, {S(2, 3)}, {1, 1, 1}, 0},
    {TG_OP_SUM, "sum axes 0,2", 1, {S(2, 3, 4)}, {2, 0, 0, 2}, 0},
    {TG_OP_SUM, "sum axis -1", 1, {S(3, 5)}, {1, 0, -1}, 0},
    {TG_OP_SUM, "sum 0-d", 1, {S0}, {0, 0}, 0},
    {TG_OP_MEAN, "mean all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_MEAN, "mean axis 0", 1, {S(4, 3)}, {1, 0, 0}, 0},
    {TG_OP_MEAN, "mean axes 1,2 keepdim", 1, {S(2, 3, 2)}, {2, 1, 1, 2}, 0},
    {TG_OP_MAX, "max all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_MAX, "max axis 1", 1, {S(3, 4)}, {1, 0, 1}, 0},
    {TG_OP_MAX, "max axis 0 keepdim", 1, {S(5, 2)}, {1, 1, 0}, 0},
    {TG_OP_MAX, "max axes 0,2", 1, {S(2, 3, 2)}, {2, 0, 0, 2}, 0},
    {TG_OP_MIN, "min all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_MIN, "min axis 1 keepdim", 1, {S(3, 4)}, {1, 1, 1}, 0},
    {TG_OP_PROD, "prod all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_PROD, "prod axes 0,2", 1, {S(2, 3, 2)}, {2, 0, 0, 2}, 0},
    /* var/std: da = correction */
    {TG_OP_VAR, "var all", 1, {S(2, 3)}, {0, 0}, 0},
    {TG_OP_VAR, "var axis 0 unbiased", 1, {S(4, 3)}, {1, 0, 0}, 1},
    {TG_OP_VAR, "var axes 1,2 keepdim", 1, {S(2, 3, 2)}, {2, 1, 1, 2}, 1},
    {TG_OP_STD, "std all unbiased", 1, {S(3, 2)}, {0, 0}, 1},
    {TG_OP_STD, "std axis -1", 1, {S(2, 4)}, {1, 0, -1}, 0},

    /* matmul */
    {TG_OP_MATMUL, "matmul 2-D", 2, {S(2, 3), S(3, 4)}, {0}, 0},
    {TG_OP_MATMUL, "matmul vectors", 2, {S(1, 3), S(3, 1)}, {0}, 0},
    {TG_OP_MATMUL, "matmul odd", 2, {S(5, 1), S(1, 3)}, {0}, 0},
    {TG_OP_MATMUL, "matmul batched", 2, {S(2, 2, 3), S(2, 3, 4)}, {0}, 0},
    {TG_OP_MATMUL, "matmul shared b", 2, {S(3, 2, 3), S(3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul 4-D", 2, {S(2, 1, 2, 3), S(2, 1, 3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul batch 1", 2, {S(1, 2, 2), S(1, 2, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul broadcast batch", 2, {S(2, 1, 2, 3), S(3, 3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul shared a", 2, {S(2, 3), S(2, 3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul b batch 1", 2, {S(3, 2, 3), S(1, 3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul vector @ matrix", 2, {S(3), S(3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul batch @ vector", 2, {S(2, 2, 3), S(3)}, {0}, 0},
    {TG_OP_MATMUL, "matmul vector @ batch", 2, {S(3), S(2, 3, 2)}, {0}, 0},
    {TG_OP_MATMUL, "matmul dot", 2, {S(4), S(4)}, {0}, 0},

    /* views: ia[0] selects the function (see build_view) */
    {TG_OP_RESHAPE, "reshape", 1, {S(2, 3)}, {0}, 0},
    {TG_OP_RESHAPE, "reshape -1", 1, {S(2, 3, 4)}, {1}, 0},
    {TG_OP_RESHAPE, "reshape 0-d", 1, {S0}, {2}, 0},
    {TG_OP_RESHAPE, "flatten", 1, {S(2, 3, 2)}, {3}, 0},
    {TG_OP_RESHAPE, "squeeze", 1, {S(3, 1, 2)}, {4}, 0},
    {TG_OP_RESHAPE, "unsqueeze", 1, {S(3, 2)}, {5}, 0},
    {TG_OP_RESHAPE, "reshape of a transpose", 1, {S(3, 4)}, {6}, 0},
    {TG_OP_PERMUTE, "permute", 1, {S(2, 3, 4)}, {7}, 0},
    {TG_OP_PERMUTE, "transpose", 1, {S(3, 2)}, {8}, 0},
    {TG_OP_SLICE, "slice rows", 1, {S(4, 3)}, {9}, 0},
    {TG_OP_SLICE, "slice negative", 1, {S(2, 5)}, {10}, 0},
    {TG_OP_SLICE, "slice 1-D", 1, {S(6)}, {11}, 0},
    {TG_OP_SLICE, "slice step 2", 1, {S(7, 2)}, {14}, 0},
    {TG_OP_SLICE, "slice step 3 last dim", 1, {S(2, 5)}, {15}, 0},
    {TG_OP_RESHAPE, "contiguous of a transpose", 1, {S(3, 4)}, {12}, 0},
    {TG_OP_RESHAPE, "contiguous of a slice", 1, {S(4, 5)}, {13}, 0},
    {TG_OP_CONCAT, "concat 2 dim 1", 2, {S(2, 3), S(2, 2)}, {1}, 0},
    {TG_OP_CONCAT, "concat 3 dim 0", 3, {S(1, 3), S(2, 3), S(1, 3)}, {0}, 0},
    {TG_OP_CONCAT, "concat 1", 1, {S(4)}, {-1}, 0},
    /* index_select / gather along the last dim (IN_LABELS indexes its extent) */
    {TG_OP_INDEX_SELECT, "index_select repeats", 2, {S(3, 4), SK(IN_LABELS, 6)}, {-1}, 0},
    {TG_OP_INDEX_SELECT, "index_select 3-D", 2, {S(2, 3, 5), SK(IN_LABELS, 3)}, {-1}, 0},
    {TG_OP_GATHER, "gather", 2, {S(3, 4), SK(IN_LABELS, 3, 5)}, {-1}, 0},
    {TG_OP_GATHER, "gather smaller index", 2, {S(4, 3, 5), SK(IN_LABELS, 2, 3, 2)}, {-1}, 0},

    /* softmax family: ia[0] = axis */
    {TG_OP_SOFTMAX, "softmax rows", 1, {S(2, 5)}, {1}, 0},
    {TG_OP_SOFTMAX, "softmax 1-D", 1, {S(3)}, {0}, 0},
    {TG_OP_SOFTMAX, "softmax middle axis", 1, {S(2, 3, 2)}, {1}, 0},
    {TG_OP_LOG_SOFTMAX, "log_softmax rows", 1, {S(3, 4)}, {-1}, 0},
    {TG_OP_LOG_SOFTMAX, "log_softmax axis 0", 1, {S(4, 2)}, {0}, 0},
    {TG_OP_CROSS_ENTROPY, "cross_entropy", 2, {S(4, 5), SK(IN_LABELS, 4)}, {0}, 0},
    {TG_OP_CROSS_ENTROPY, "cross_entropy batch 1", 2, {S(1, 3), SK(IN_LABELS, 1)}, {0}, 0},
    /* tg_cross_entropy_ex: ia = {option bits (xent_opts), ignored label}, da = smoothing */
    {TG_OP_CROSS_ENTROPY, "cross_entropy weighted", 2, {S(6, 4), SK(IN_LABELS, 6)}, {1}, 0},
    {TG_OP_CROSS_ENTROPY, "cross_entropy smoothing", 2, {S(5, 3), SK(IN_LABELS, 5)}, {2}, 0.2},
    {TG_OP_CROSS_ENTROPY, "cross_entropy weighted smoothing ignore", 2,
     {S(8, 4), SK(IN_LABELS, 8)}, {1 | 2 | 4, 2}, 0.1},
    {TG_OP_CROSS_ENTROPY, "cross_entropy sum", 2, {S(4, 5), SK(IN_LABELS, 4)}, {8}, 0},
    {TG_OP_CROSS_ENTROPY, "cross_entropy none weighted", 2, {S(5, 4), SK(IN_LABELS, 5)},
     {16 | 1}, 0},
    {TG_OP_CROSS_ENTROPY, "cross_entropy none smoothing ignore", 2,
     {S(6, 3), SK(IN_LABELS, 6)}, {16 | 2 | 4, 0}, 0.3},
    {TG_OP_CROSS_ENTROPY_PROBS, "cross_entropy_probs", 2,
     {SK(IN_PROB, 3, 4), SK(IN_LABELS, 3)}, {0}, 0},
    {TG_OP_CROSS_ENTROPY_PROBS, "cross_entropy_probs batch 1", 2,
     {SK(IN_PROB, 1, 2), SK(IN_LABELS, 1)}, {0}, 0},
    {TG_OP_MSE, "mse", 2, {S(2, 3), S(2, 3)}, {0}, 0},
    {TG_OP_MSE, "mse 0-d", 2, {S0, S0}, {0}, 0},
    {TG_OP_MSE, "mse constant target", 2, {S(5), SK(IN_CONST, 5)}, {0}, 0},
    {TG_OP_MSE, "mse target row", 2, {S(3, 4), S(4)}, {0}, 0},
    {TG_OP_MSE, "mse both broadcast", 2, {S(3, 1), S(1, 2)}, {0}, 0},

    /* the CNN ops (their own suite, tests/test_cnn.c, goes deeper); ia for conv:
     * stride, pad, dilation; for pools: kernel, stride, pad, ceil_mode,
     * count_include_pad; for global pools: keepdims; for pad2d: the four pads
     * (and da the value) */
    {TG_OP_CONV2D, "conv2d 3x3", 3, {S(1, 2, 5, 5), S(3, 2, 3, 3), S(3)}, {1, 0, 1}, 0},
    {TG_OP_CONV2D, "conv2d stride 2 pad 1", 3, {S(2, 1, 4, 4), S(2, 1, 3, 3), S(2)},
     {2, 1, 1}, 0},
    {TG_OP_CONV2D, "conv2d no bias", 2, {S(1, 2, 4, 3), S(1, 2, 2, 2)}, {1, 0, 1}, 0},
    /* ia[3]: groups */
    {TG_OP_CONV2D, "conv2d 2 groups", 3, {S(1, 4, 4, 4), S(4, 2, 3, 3), S(4)}, {1, 1, 1, 2}, 0},
    {TG_OP_CONV2D, "conv2d depthwise", 2, {S(2, 3, 4, 4), S(6, 1, 2, 2)}, {1, 0, 1, 3}, 0},
    {TG_OP_MAX_POOL2D, "max_pool2d 2x2", 1, {SK(IN_DISTINCT, 1, 2, 4, 4)}, {2, 0, 0}, 0},
    {TG_OP_MAX_POOL2D, "max_pool2d 3x3 s2 p1", 1, {SK(IN_DISTINCT, 2, 1, 5, 5)}, {3, 2, 1}, 0},
    {TG_OP_AVG_POOL2D, "avg_pool2d 2x2", 1, {S(1, 2, 4, 4)}, {2, 0, 0}, 0},
    {TG_OP_AVG_POOL2D, "avg_pool2d 3x3 s2 p1", 1, {S(2, 1, 5, 5)}, {3, 2, 1}, 0},
    {TG_OP_MAX_POOL2D, "max_pool2d 2x2 ceil_mode", 1, {SK(IN_DISTINCT, 1, 2, 5, 5)},
     {2, 2, 0, 1, 0}, 0},
    {TG_OP_AVG_POOL2D, "avg_pool2d 3x3 s2 p1 count_include_pad", 1, {S(1, 2, 5, 6)},
     {3, 2, 1, 0, 1}, 0},
    {TG_OP_AVG_POOL2D, "avg_pool2d 2x2 ceil_mode count_include_pad", 1, {S(1, 1, 5, 5)},
     {2, 2, 1, 1, 1}, 0},
    {TG_OP_GLOBAL_MAX_POOL2D, "global_max_pool2d", 1, {SK(IN_DISTINCT, 2, 3, 3, 4)}, {0}, 0},
    {TG_OP_GLOBAL_MAX_POOL2D, "global_max_pool2d keepdims", 1, {SK(IN_DISTINCT, 1, 2, 2, 2)},
     {1}, 0},
    {TG_OP_GLOBAL_AVG_POOL2D, "global_avg_pool2d", 1, {S(2, 3, 3, 4)}, {0}, 0},
    {TG_OP_GLOBAL_AVG_POOL2D, "global_avg_pool2d keepdims 1x1 plane", 1, {S(2, 2, 1, 1)},
     {1}, 0},
    {TG_OP_PAD2D, "pad2d asymmetric", 1, {S(2, 1, 3, 2)}, {1, 0, 2, 1}, 0},
    {TG_OP_PAD2D, "pad2d value 0.5", 1, {S(1, 2, 2, 3)}, {1, 1, 1, 1}, 0.5},
    {TG_OP_DENSE, "dense", 3, {S(2, 4), S(3, 4), S(3)}, {0}, 0},
    {TG_OP_DENSE, "dense flattening, no bias", 2, {S(2, 2, 3), S(2, 6)}, {0}, 0},
    {TG_OP_DENSE, "dense batch 1", 3, {S(1, 3), S(1, 3), S(1)}, {0}, 0},
    {TG_OP_DROPOUT, "dropout 0.5 training", 1, {S(3, 4)}, {0}, 0.5},
    {TG_OP_DROPOUT, "dropout 0.3, odd size (unpaired last element)", 1, {S(3, 5)}, {0}, 0.3},

    /* batch_norm; ia: training, gamma given, beta given, fused relu (inputs x, then
     * gamma and beta where given); inference uses fixed running statistics */
    {TG_OP_BATCH_NORM, "batch_norm NC training", 3, {S(4, 3), S(3), S(3)}, {1, 1, 1, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NCHW training", 3, {S(2, 3, 2, 2), S(3), S(3)},
     {1, 1, 1, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NC training, no gamma or beta", 1, {S(5, 2)},
     {1, 0, 0, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NCHW training, gamma only", 2, {S(2, 2, 3, 1), S(2)},
     {1, 1, 0, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NC inference", 3, {S(3, 4), S(4), S(4)}, {0, 1, 1, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NCHW inference, no gamma or beta", 1, {S(2, 2, 2, 2)},
     {0, 0, 0, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NCHW inference, beta only", 2, {S(2, 3, 1, 2), S(3)},
     {0, 0, 1, 0}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NCHW training, fused relu", 3, {S(3, 2, 2, 2), S(2), S(2)},
     {1, 1, 1, 1}, 0},
    {TG_OP_BATCH_NORM, "batch_norm NC inference, fused relu", 3, {S(4, 3), S(3), S(3)},
     {0, 1, 1, 1}, 0},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---------------------------------------------------------------- builders */

/* tg_cross_entropy_ex with the options a case's ia[0] selects: 1 class weights,
 * 2 label smoothing da, 4 ignore label ia[1], 8 sum, 16 none. */
static tg_tensor *xent_opts_call(const gc_case *c, tg_tensor *const *in)
{
    static const double w[] = { 0.5, 2.0, 1.0, 0.25, 1.5 };
    tg_cross_entropy_opts o = TG_CROSS_ENTROPY_OPTS_INIT;
    int64_t nc = tg_tensor_dim(in[0], 1);
    if (c->ia[0] & 1)
        o.class_weights = tg_from_data(TG_F64, 1, &nc, w);
    if (c->ia[0] & 2)
        o.label_smoothing = c->da;
    if (c->ia[0] & 4)
        o.ignore_index = c->ia[1];
    o.reduction = c->ia[0] & 8 ? TG_REDUCTION_SUM
                  : c->ia[0] & 16 ? TG_REDUCTION_NONE : TG_REDUCTION_MEAN;
    return tg_cross_entropy_ex(in[0], in[1], &o);
}

static tg_tensor *build_view(const gc_case *c, tg_tensor *x)
{
    switch (c->ia[0]) {
    case 0: return tg_reshape(x, TG_SHAPE(3, 2));
    case 1: return tg_reshape(x, TG_SHAPE(-1, 4));
    case 2: return tg_reshape(x, TG_SHAPE(1, 1));
    case 3: return tg_flatten(x, 1, -1);
    case 4: return tg_squeeze(x, 1);
    case 5: return tg_unsqueeze(x, -1);
    case 6: return tg_reshape(tg_transpose(x, 0, 1), TG_SHAPE(2, 6));
    case 7: return tg_permute(x, (const int[]){2, 0, 1});
    case 8: return tg_transpose(x, 0, 1);
    case 9: return tg_slice(x, 0, 1, 3);
    case 10: return tg_slice(x, -1, -4, -1);
    case 11: return tg_slice(x, 0, 2, 6);
    case 12: return tg_contiguous(tg_transpose(x, 0, 1));
    case 13: return tg_contiguous(tg_slice(x, 1, 1, 4));
    case 14: return tg_slice_step(x, 0, 1, 6, 2);
    case 15: return tg_slice_step(x, -1, 0, 5, 3);
    }
    return NULL;
}

/* Inference reads running statistics: fixed constants (mean 0.1 c - 0.2, var
 * 0.5 + 0.3 c), not inputs, so they get no gradient. */
static tg_tensor *build_batch_norm(const gc_case *c, tg_tensor *const *in)
{
    tg_tensor *x = in[0];
    int k = 1;
    tg_tensor *gamma = c->ia[1] ? in[k++] : NULL;
    tg_tensor *beta = c->ia[2] ? in[k++] : NULL;
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = c->ia[0];
    o.relu = c->ia[3];
    if (o.training)
        return tg_batch_norm(x, gamma, beta, NULL, NULL, &o);
    int64_t ch = tg_tensor_dim(x, 1);
    double mv[8], vv[8];
    for (int64_t i = 0; i < ch; i++) {
        mv[i] = 0.1 * (double)i - 0.2;
        vv[i] = 0.5 + 0.3 * (double)i;
    }
    tg_dtype dt = tg_tensor_dtype(x);
    tg_tensor *rm = tg_tensor_to_dtype(tg_from_data(TG_F64, 1, &ch, mv), dt);
    tg_tensor *rv = tg_tensor_to_dtype(tg_from_data(TG_F64, 1, &ch, vv), dt);
    return tg_batch_norm(x, gamma, beta, rm, rv, &o);
}

static tg_tensor *build(tg_tensor *const *in, int n, void *ctx)
{
    const gc_case *c = ctx;
    switch (c->op) {
    case TG_OP_ADD: return tg_add(in[0], in[1]);
    case TG_OP_SUB: return tg_sub(in[0], in[1]);
    case TG_OP_MUL: return tg_mul(in[0], in[1]);
    case TG_OP_DIV: return tg_div(in[0], in[1]);
    case TG_OP_POW: return tg_pow(in[0], in[1]);
    case TG_OP_ADD_SCALAR: return tg_add_scalar(in[0], c->da);
    case TG_OP_MUL_SCALAR: return tg_mul_scalar(in[0], c->da);
    case TG_OP_POW_SCALAR: return tg_pow_scalar(in[0], c->da);
    case TG_OP_NEG: return tg_neg(in[0]);
    case TG_OP_EXP: return tg_exp(in[0]);
    case TG_OP_LOG: return tg_log(in[0]);
    case TG_OP_SQRT: return tg_sqrt(in[0]);
    case TG_OP_ABS: return tg_abs(in[0]);
    case TG_OP_TANH: return tg_tanh(in[0]);
    case TG_OP_SIGMOID: return tg_sigmoid(in[0]);
    case TG_OP_RELU: return tg_relu(in[0]);
    case TG_OP_LEAKY_RELU: return tg_leaky_relu(in[0], c->da);
    case TG_OP_ELU: return tg_elu(in[0], c->da);
    case TG_OP_GELU: return tg_gelu(in[0], (tg_gelu_approx)c->ia[0]);
    case TG_OP_SILU: return tg_silu(in[0]);
    case TG_OP_SOFTPLUS: return tg_softplus(in[0]);
    case TG_OP_HARD_SIGMOID: return tg_hard_sigmoid(in[0], c->da, c->ia[0] / 100.0);
    case TG_OP_CLIP: return tg_clip(in[0], -c->da, c->da);
    case TG_OP_MAXIMUM: return tg_maximum(in[0], in[1]);
    case TG_OP_MINIMUM: return tg_minimum(in[0], in[1]);
    case TG_OP_SUM: return tg_sum(in[0], c->ia + 2, c->ia[0], c->ia[1]);
    case TG_OP_MEAN: return tg_mean(in[0], c->ia + 2, c->ia[0], c->ia[1]);
    case TG_OP_MAX: return tg_max(in[0], c->ia + 2, c->ia[0], c->ia[1]);
    case TG_OP_MIN: return tg_min(in[0], c->ia + 2, c->ia[0], c->ia[1]);
    case TG_OP_PROD: return tg_prod(in[0], c->ia + 2, c->ia[0], c->ia[1]);
    case TG_OP_VAR: return tg_var(in[0], c->ia + 2, c->ia[0], c->ia[1], (int)c->da);
    case TG_OP_STD: return tg_std(in[0], c->ia + 2, c->ia[0], c->ia[1], (int)c->da);
    case TG_OP_MATMUL: return tg_matmul(in[0], in[1]);
    case TG_OP_RESHAPE:
    case TG_OP_PERMUTE:
    case TG_OP_SLICE: return build_view(c, in[0]);
    case TG_OP_CONCAT: return tg_concat(in, n, c->ia[0]);
    case TG_OP_INDEX_SELECT: return tg_index_select(in[0], c->ia[0], in[1]);
    case TG_OP_GATHER: return tg_gather(in[0], c->ia[0], in[1]);
    case TG_OP_SOFTMAX: return tg_softmax(in[0], c->ia[0]);
    case TG_OP_LOG_SOFTMAX: return tg_log_softmax(in[0], c->ia[0]);
    case TG_OP_CROSS_ENTROPY: return c->ia[0] ? xent_opts_call(c, in) : tg_cross_entropy(in[0], in[1]);
    case TG_OP_CROSS_ENTROPY_PROBS: return tg_cross_entropy_probs(in[0], in[1]);
    case TG_OP_MSE: return tg_mse(in[0], in[1]);
    case TG_OP_CONV2D: {
        tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
        o.stride[0] = o.stride[1] = c->ia[0];
        for (int i = 0; i < 4; i++)
            o.pad[i] = c->ia[1];
        o.dilation[0] = o.dilation[1] = c->ia[2];
        o.groups = c->ia[3];
        return tg_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, &o);
    }
    case TG_OP_MAX_POOL2D:
    case TG_OP_AVG_POOL2D: {
        tg_pool2d_opts o = TG_POOL2D_OPTS_INIT;
        o.kernel[0] = o.kernel[1] = c->ia[0];
        o.stride[0] = o.stride[1] = c->ia[1];
        for (int i = 0; i < 4; i++)
            o.pad[i] = c->ia[2];
        o.ceil_mode = c->ia[3];
        o.count_include_pad = c->ia[4];
        return c->op == TG_OP_MAX_POOL2D ? tg_max_pool2d(in[0], &o) : tg_avg_pool2d(in[0], &o);
    }
    case TG_OP_GLOBAL_MAX_POOL2D: return tg_global_max_pool2d(in[0], c->ia[0]);
    case TG_OP_GLOBAL_AVG_POOL2D: return tg_global_avg_pool2d(in[0], c->ia[0]);
    case TG_OP_PAD2D: return tg_pad2d(in[0], c->ia, c->da);
    case TG_OP_DENSE: return tg_dense(in[0], in[1], n > 2 ? in[2] : NULL);
    case TG_OP_DROPOUT: {
        /* the same mask at every evaluation: a generator seeded afresh each call */
        tg_rng rng;
        tg_rng_seed(&rng, 99);
        return tg_dropout(in[0], c->da, true, &rng);
    }
    case TG_OP_BATCH_NORM: return build_batch_norm(c, in);
    case TG_OP_COUNT: break;
    }
    return NULL;
}

/* ---------------------------------------------------------------- inputs */

static in_kind kind_from_hints(unsigned hints)
{
    if (hints & TG_GC_POSITIVE)
        return IN_POSITIVE;
    if (hints & TG_GC_AWAY_FROM_KINK)
        return IN_AWAY;
    if (hints & TG_GC_DISTINCT)
        return IN_DISTINCT;
    return IN_VALUE;
}

/* Scoped input tensor of dtype for one gc_input; floats require grad unless CONST. */
static tg_tensor *make_input(const gc_case *c, int i, tg_dtype dtype, tg_rng *rng,
                             tg_tensor *const *prev)
{
    const gc_input *in = &c->in[i];
    in_kind kind = in->kind ? in->kind : kind_from_hints(tg_op_table[c->op]->gradcheck_hints);
    int64_t n = tg_shape_numel(in->ndim, in->shape);
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    if (kind == IN_LABELS) {
        const tg_tensor *x = prev[0];
        int64_t classes = tg_tensor_dim(x, -1), *lab = malloc((size_t)n * sizeof *lab);
        for (int64_t k = 0; k < n; k++)
            lab[k] = (int64_t)tg_rng_below(rng, (uint64_t)classes);
        tg_tensor *t = tg_from_data(TG_I64, in->ndim, in->shape, lab);
        free(lab);
        free(v);
        return t;
    }
    for (int64_t k = 0; k < n; k++) {
        double u = tg_rng_uniform(rng);
        switch (kind) {
        case IN_POSITIVE: v[k] = 0.5 + 1.5 * u; break;
        case IN_AWAY: v[k] = (tg_rng_uniform(rng) < 0.5 ? -1 : 1) * (0.3 + 0.7 * u); break;
        case IN_PROB: v[k] = 0.05 + 0.9 * u; break;
        case IN_DISTINCT: v[k] = 0.1 * (double)k - 0.05 * (double)n; break;
        default: v[k] = 2 * u - 1; break;
        }
    }
    if (kind == IN_DISTINCT) /* shuffle the grid */
        for (int64_t k = n - 1; k > 0; k--) {
            int64_t j = (int64_t)tg_rng_below(rng, (uint64_t)k + 1);
            double t = v[k];
            v[k] = v[j];
            v[j] = t;
        }
    tg_tensor *t64 = tg_from_data(TG_F64, in->ndim, in->shape, v);
    free(v);
    tg_tensor *t = tg_tensor_to_dtype(t64, dtype);
    TG_CHECK(t != NULL);
    if (kind != IN_CONST)
        TG_OK_(tg_set_requires_grad(t, true));
    return t;
}

static void make_inputs(const gc_case *c, tg_dtype dtype, uint64_t seed, tg_tensor **in)
{
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int i = 0; i < c->n_in; i++)
        in[i] = make_input(c, i, dtype, &rng, in);
}

/* The case really exercises its op: the output's node is that op. */
static void assert_records_op(const gc_case *c, tg_tensor *const *in)
{
    tg_tensor *y = build(in, c->n_in, (void *)c);
    ck_assert_msg(y != NULL, "%s: %s", c->name, tg_last_error());
    tg_node *node = tg_tensor_grad_fn(y);
    ck_assert_msg(node != NULL, "%s: the output recorded no node", c->name);
    ck_assert_msg(node->op == tg_op_table[c->op], "%s: output comes from '%s', not '%s'",
                  c->name, node->op->name, tg_op_table[c->op]->name);
}

static void run_case(const gc_case *c, int i, tg_dtype dtype)
{
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(dtype == TG_F64 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_tensor *in[8] = {NULL};
    make_inputs(c, dtype, 1000u + (uint64_t)i, in);
    assert_records_op(c, in);
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    if (dtype == TG_F32)
        o = (tg_gradcheck_opts)TG_GRADCHECK_OPTS_F32_INIT;
    o.label = c->name;
    tg_gradcheck_report r;
    tg_status st = tg_gradcheck(&r, build, (void *)c, in, c->n_in, &o);
    ck_assert_msg(st == TG_OK, "%s (%s): gradcheck could not run: %s", c->name,
                  tg_dtype_name(dtype), tg_last_error());
    ck_assert_msg(r.checked > 0, "%s: nothing was compared", c->name);
    ck_assert_msg(r.passed, "%s (%s): %s", c->name, tg_dtype_name(dtype), r.message);
    tg_set_backend(prev);
    tg_scope_pop(s);
}

/* f64, every element, reference kernels: eps 1e-6, atol 1e-8, rtol 1e-6. */
START_TEST(case_f64_elementwise)
{
    run_case(&cases[_i], _i, TG_F64);
}
END_TEST

/* f32, 8 random directions, AUTO backend (oneDNN): eps 1e-3, atol 1e-3, rtol 1e-2. */
START_TEST(case_f32_directional)
{
    run_case(&cases[_i], _i, TG_F32);
}
END_TEST

/* An op row's shape_only_inputs bit says its backward never reads that input's
 * values (so the engine does not check its version). Checked here for every
 * case whose op claims it: the gradients after writing new values into those
 * inputs, on the same graph, are the gradients before. */
START_TEST(shape_only_claims_hold)
{
    const gc_case *c = &cases[_i];
    unsigned so = tg_op_table[c->op]->shape_only_inputs;
    if (so == 0)
        return; /* nothing claimed: the engine checks every input */
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *in[8] = {NULL};
    make_inputs(c, TG_F64, 2000u + (uint64_t)_i, in);
    tg_tensor *y = build(in, c->n_in, (void *)c);
    ck_assert_msg(y != NULL, "%s: %s", c->name, tg_last_error());
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_tensor *gy = tg_rand_normal(TG_F64, tg_tensor_ndim(y), tg_tensor_shape(y), 0.0, 1.0,
                                   &rng);
    tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
    bo.grad_output = gy;
    bo.retain_graph = true;
    TG_OK_(tg_backward_ex(y, &bo));
    tg_tensor *before[8] = {NULL};
    bool prev_grad = tg_set_grad_enabled(false);
    for (int i = 0; i < c->n_in; i++)
        if (tg_grad(in[i])) {
            before[i] = tg_add_scalar(tg_grad(in[i]), 0.0); /* a copy */
            TG_OK_(tg_zero_grad(in[i]));
        }
    tg_set_grad_enabled(prev_grad);
    for (int i = 0; i < c->n_in && i < 32; i++) {
        if (!(so & (1u << i)) || !in[i])
            continue;
        int64_t n = tg_tensor_numel(in[i]);
        bool is_float = tg_dtype_is_float(tg_tensor_dtype(in[i]));
        for (int64_t k = 0; k < n; k++) /* new values; 0 stays a valid label or index */
            TG_OK_(tg_set_flat(in[i], k, is_float ? tg_get_flat(in[i], k) * 1.5 + 0.25 : 0));
    }
    TG_OK_(tg_backward_ex(y, &bo));
    int64_t where;
    for (int i = 0; i < c->n_in; i++)
        if (before[i])
            ck_assert_msg(tg_test_max_scaled_err(tg_grad(in[i]), before[i], 1e-300, 0, &where) ==
                              0,
                          "%s: the gradient of input %d changed after a write to an input "
                          "its op row marks shape-only (0x%x)", c->name, i, so);
    tg_set_backend(prev);
    tg_scope_pop(s);
}
END_TEST

START_TEST(every_op_has_a_case)
{
    char missing[512] = "";
    for (int op = 0; op < TG_OP_COUNT; op++) {
        const tg_op_vtable *vt = tg_op_table[op];
        ck_assert_msg(vt != NULL && vt->name != NULL, "op %d has no table row", op);
        ck_assert_msg(tg_op_lookup(vt->name) == vt, "tg_op_lookup(\"%s\") misses", vt->name);
        ck_assert_msg(vt->backward != NULL, "op %s has no backward", vt->name);
        int n = 0;
        for (int k = 0; k < N_CASES; k++)
            n += cases[k].op == (tg_op_id)op;
        if (n == 0) {
            size_t len = strlen(missing);
            snprintf(missing + len, sizeof missing - len, " %s", vt->name);
        }
    }
    ck_assert_msg(missing[0] == '\0', "ops without a gradcheck case:%s", missing);
    ck_assert_ptr_null(tg_op_lookup("no_such_op"));
    ck_assert_ptr_null(tg_op_lookup(NULL));
}
END_TEST

/* ---------------------------------------------------------------- composites */

/* x (4, 3), w1 (3, 5), b1 (5), w2 (5, 3), b2 (3), labels (4). */
static tg_tensor *mlp(tg_tensor *const *in, int n, void *ctx)
{
    tg_tensor *h = tg_relu(tg_add(tg_matmul(in[0], in[1]), in[2]));
    return tg_cross_entropy(tg_add(tg_matmul(h, in[3]), in[4]), in[5]);
}

/* x used three times: x * x + exp(x) - x. */
static tg_tensor *used_twice(tg_tensor *const *in, int n, void *ctx)
{
    tg_tensor *x = in[0];
    return tg_sub(tg_add(tg_mul(x, x), tg_exp(x)), x);
}

/* x (2, 3, 4) through reshape, permute, slice and back into arithmetic. */
static tg_tensor *view_chain(tg_tensor *const *in, int n, void *ctx)
{
    tg_tensor *x = in[0];
    tg_tensor *a = tg_transpose(tg_reshape(x, TG_SHAPE(6, 4)), 0, 1); /* (4, 6) */
    tg_tensor *b = tg_slice(a, 1, 1, 5);                             /* (4, 4) */
    tg_tensor *c = tg_permute(tg_reshape(tg_slice(x, 2, 0, 2), TG_SHAPE(4, 3)),
                              (const int[]){1, 0});                  /* (3, 4) */
    return tg_matmul(c, tg_tanh(b));                                 /* (3, 4) */
}

static void run_composite(tg_gradcheck_fn fn, const char *label, int n_in,
                          const gc_input *shapes, tg_dtype dtype)
{
    gc_case c = {TG_OP_ADD, label, n_in, {{0}}, {0}, 0};
    ck_assert_int_le(n_in, (int)(sizeof c.in / sizeof c.in[0]));
    memcpy(c.in, shapes, (size_t)n_in * sizeof *shapes);
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(dtype == TG_F64 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_tensor *in[8] = {NULL};
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    for (int i = 0; i < n_in; i++) {
        c.in[i].kind = c.in[i].kind ? c.in[i].kind : IN_VALUE;
        in[i] = make_input(&c, i, dtype, &rng, in);
    }
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    if (dtype == TG_F32)
        o = (tg_gradcheck_opts)TG_GRADCHECK_OPTS_F32_INIT;
    o.label = label;
    tg_gradcheck_report r;
    TG_OK_(tg_gradcheck(&r, fn, NULL, in, n_in, &o));
    ck_assert_msg(r.passed, "%s (%s): %s", label, tg_dtype_name(dtype), r.message);
    tg_set_backend(prev);
    tg_scope_pop(s);
}

static const tg_dtype both[] = {TG_F64, TG_F32};

START_TEST(composite_mlp)
{
    /* labels draw their class count from input 0: x (4, 3) has as many columns as
     * the logits (4, 3) have classes */
    const gc_input shapes[] = {S(4, 3), S(3, 5), S(5), S(5, 3), S(3), SK(IN_LABELS, 4)};
    run_composite(mlp, "mlp", 6, shapes, both[_i]);
}
END_TEST

START_TEST(composite_used_twice)
{
    const gc_input shapes[] = {S(3, 4)};
    run_composite(used_twice, "x used three times", 1, shapes, both[_i]);
}
END_TEST

START_TEST(composite_view_chain)
{
    const gc_input shapes[] = {S(2, 3, 4)};
    run_composite(view_chain, "reshape-permute-slice chain", 1, shapes, both[_i]);
}
END_TEST

/* A tensor used twice must get the sum of both paths: checked against the formula
 * too, not only against finite differences. */
START_TEST(used_twice_sums_paths)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(3), (const double[]){0.5, -1.0, 2.0});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_sum(used_twice(&x, 1, NULL), NULL, 0, false);
    TG_OK_(tg_backward(y));
    for (int64_t i = 0; i < 3; i++) {
        double v = tg_get(x, &i);
        TG_ASSERT_CLOSE(tg_get(tg_grad(x), &i), 2 * v + exp(v) - 1, 1e-12, 1e-12);
    }
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- a wrong backward */

/* A test-only op: forward is the identity, backward claims 1.5 g (or g when the
 * factor is 1, the control). gradcheck must catch the former. */
typedef struct bad_saved {
    double factor;
} bad_saved;

static tg_status bad_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    const bad_saved *sv = node->saved;
    gin[0] = tg_mul_scalar(g, sv->factor);
    return gin[0] ? TG_OK : tg_last_status();
}

static const tg_op_vtable bad_vtable = {"bad_identity", bad_backward, NULL, NULL, 0, 0};

static tg_tensor *bad_identity(tg_tensor *const *in, int n, void *ctx)
{
    tg_tensor *x = in[0];
    tg_tensor *y = tg_tensor_new_named("bad_identity", x->dtype, x->ndim, x->shape);
    ck_assert_ptr_nonnull(y);
    TG_OK_(tg_tensor_copy_into(y, x));
    if (tg_autograd_should_record(&x, 1)) {
        bad_saved *sv = malloc(sizeof *sv);
        sv->factor = *(const double *)ctx;
        if (!tg_autograd_record(y, &bad_vtable, &x, 1, sv)) {
            tg_release(y);
            return NULL;
        }
    }
    return tg_scoped(y);
}

static bool check_bad(double factor, tg_dtype dtype)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(dtype, TG_SHAPE(2, 3), -1, 1, NULL);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    if (dtype == TG_F32)
        o = (tg_gradcheck_opts)TG_GRADCHECK_OPTS_F32_INIT;
    o.label = "bad_identity";
    tg_gradcheck_report r;
    TG_OK_(tg_gradcheck(&r, bad_identity, &factor, &x, 1, &o));
    ck_assert_str_eq(r.op, "bad_identity");
    bool passed = r.passed;
    tg_scope_pop(s);
    return passed;
}

START_TEST(wrong_backward_is_caught)
{
    ck_assert_msg(check_bad(1.0, both[_i]), "the correct control failed");
    ck_assert_msg(!check_bad(1.5, both[_i]), "a 1.5x gradient passed gradcheck");
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tg_tcase("registry");
    tcase_add_test(tc, every_op_has_a_case);
    tcase_add_loop_test(tc, shape_only_claims_hold, 0, N_CASES);
    tcase_add_loop_test(tc, case_f64_elementwise, 0, N_CASES);
    tcase_add_loop_test(tc, case_f32_directional, 0, N_CASES);
    suite_add_tcase(s, tc);

    tc = tg_tcase("composites");
    tcase_add_loop_test(tc, composite_mlp, 0, 2);
    tcase_add_loop_test(tc, composite_used_twice, 0, 2);
    tcase_add_loop_test(tc, composite_view_chain, 0, 2);
    tcase_add_test(tc, used_twice_sums_paths);
    suite_add_tcase(s, tc);

    tc = tg_tcase("wrong backward");
    tcase_add_loop_test(tc, wrong_backward_is_caught, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
