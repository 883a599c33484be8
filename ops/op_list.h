/* ops/op_list.h -- the table of differentiable ops (an X-macro list, as ggml lists
 * its ops). Adding an op adds one row here and one file under ops/. The op table
 * (ops/op_table.c), DOT labels and the gradcheck registry are all built from it;
 * tests fail when an op here has no gradcheck case.
 *
 * X(ENUM_SUFFIX, name) -- name is the op's table name and its vtable is
 * tg_op_<name>_vtable. */
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
    X(SUM, sum)                \
    X(MEAN, mean)              \
    X(MAX, max)                \
    X(MATMUL, matmul)          \
    X(RESHAPE, reshape)        \
    X(PERMUTE, permute)        \
    X(SLICE, slice)            \
    X(CONCAT, concat)          \
    X(SOFTMAX, softmax)        \
    X(LOG_SOFTMAX, log_softmax) \
    X(CROSS_ENTROPY, cross_entropy) \
    X(CROSS_ENTROPY_PROBS, cross_entropy_probs) \
    X(MSE, mse)                \
    X(CONV2D, conv2d)          \
    X(MAX_POOL2D, max_pool2d)  \
    X(AVG_POOL2D, avg_pool2d)  \
    X(DENSE, dense)            \
    X(DROPOUT, dropout)

typedef enum tg_op_id {
#define TG_OP_ENUM_(e, n) TG_OP_##e,
    TG_OP_LIST(TG_OP_ENUM_)
#undef TG_OP_ENUM_
    TG_OP_COUNT
} tg_op_id;

#endif
