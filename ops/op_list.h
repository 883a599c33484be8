/* ops/op_list.h -- the table of differentiable ops (an X-macro list, as ggml lists
 * its ops). The op table (ops/op_table.c, indexed by tg_op_id), the DOT labels
 * and the gradcheck coverage test are all built from it.
 *
 * X(ENUM_SUFFIX, name) -- name is the op's table name and its vtable is
 * tg_op_<name>_vtable.
 *
 * Adding an op touches exactly (docs/internals.md, "Adding an op", has the
 * details):
 *   - this list: one row;
 *   - ops/<op>.c (or the family file, e.g. ops/unary.c): the forward on the op
 *     frame (tg_op_begin ... tg_op_end, ops/ops_impl.h), the backward, and the
 *     vtable tg_op_<name>_vtable (a missing vtable is a link error); a new file
 *     also goes into Makefile.am's libtensor_internal_la_SOURCES;
 *   - ops/ops.h: the public declaration, with its math and ownership, and the
 *     op named in docs/tensor-api.md's list of ops;
 *   - tests/test_gradcheck.c: a registry row and a case in its call switch
 *     (the coverage test fails for an op without one);
 *   - tests/test_ops.c: forward values and error paths;
 *   - and, for an op with a oneDNN kernel: a tg_dnnl_kind in ops/dnnl_impl.h
 *     and a row in test_ops.c's oneDNN-vs-reference table (cmp_cases).
 * Nothing else: op_table.c, the DOT writer and the graph walk need no change. */
#ifndef TG_OP_LIST_H
#define TG_OP_LIST_H

#define TG_OP_LIST(X)          \
    X(ADD, add)                \
    X(SUB, sub)                \
    X(MUL, mul)                \
    X(DIV, div)                \
    X(POW, pow)                \
    X(ADD_SCALAR, add_scalar)  \
    X(MUL_SCALAR, mul_scalar)  \
    X(POW_SCALAR, pow_scalar)  \
    X(NEG, neg)                \
    X(EXP, exp)                \
    X(LOG, log)                \
    X(SQRT, sqrt)              \
    X(ABS, abs)                \
    X(TANH, tanh)              \
    X(SIGMOID, sigmoid)        \
    X(RELU, relu)              \
    X(LEAKY_RELU, leaky_relu)  \
    X(ELU, elu)                \
    X(GELU, gelu)              \
    X(SILU, silu)              \
    X(SOFTPLUS, softplus)      \
    X(HARD_SIGMOID, hard_sigmoid) \
    X(CLIP, clip)              \
    X(MAXIMUM, maximum)        \
    X(MINIMUM, minimum)        \
    X(SUM, sum)                \
    X(MEAN, mean)              \
    X(MAX, max)                \
    X(MIN, min)                \
    X(PROD, prod)              \
    X(VAR, var)                \
    X(STD, std)                \
    X(MATMUL, matmul)          \
    X(RESHAPE, reshape)        \
    X(PERMUTE, permute)        \
    X(SLICE, slice)            \
    X(CONCAT, concat)          \
    X(INDEX_SELECT, index_select) \
    X(GATHER, gather)          \
    X(SOFTMAX, softmax)        \
    X(LOG_SOFTMAX, log_softmax) \
    X(CROSS_ENTROPY, cross_entropy) \
    X(CROSS_ENTROPY_PROBS, cross_entropy_probs) \
    X(MSE, mse)                \
    X(CONV2D, conv2d)          \
    X(MAX_POOL2D, max_pool2d)  \
    X(AVG_POOL2D, avg_pool2d)  \
    X(GLOBAL_MAX_POOL2D, global_max_pool2d) \
    X(GLOBAL_AVG_POOL2D, global_avg_pool2d) \
    X(PAD2D, pad2d)            \
    X(DENSE, dense)            \
    X(DROPOUT, dropout)        \
    X(BATCH_NORM, batch_norm)

typedef enum tg_op_id {
#define TG_OP_ENUM_(e, n) TG_OP_##e,
    TG_OP_LIST(TG_OP_ENUM_)
#undef TG_OP_ENUM_
    TG_OP_COUNT
} tg_op_id;

#endif
