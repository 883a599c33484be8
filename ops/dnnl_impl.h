/* ops/dnnl_impl.h -- private: the oneDNN glue (engine, stream, primitive cache,
 * scratchpad) and the f32 kernels other op files call. Only ops/ includes
 * <oneapi/dnnl/dnnl.h>. All tensors passed here are f32 and contiguous (callers
 * make them so); outputs are preallocated by the caller. */
#ifndef TG_DNNL_IMPL_H
#define TG_DNNL_IMPL_H

#include "ops/ops_impl.h"

/* Elementwise algorithms the unary/scalar ops need (mapped to dnnl_eltwise_*). */
typedef enum tg_eltwise_alg {
    TG_ELT_RELU,    /* max(x, 0) */
    TG_ELT_TANH,
    TG_ELT_SIGMOID, /* logistic */
    TG_ELT_EXP,
    TG_ELT_LOG,
    TG_ELT_SQRT,
    TG_ELT_ABS,
    TG_ELT_LINEAR,  /* alpha * x + beta (neg, add_scalar, mul_scalar) */
    TG_ELT_POW      /* alpha * x ** beta (pow_scalar) */
} tg_eltwise_alg;

/* y = f(x). x and y have equal shapes (y may alias x). */
tg_status tg_dnnl_eltwise_forward(tg_eltwise_alg alg, float alpha, float beta,
                                  const tg_tensor *x, tg_tensor *y);
/* gx = f'(x) * gy, given the forward input x. */
tg_status tg_dnnl_eltwise_backward(tg_eltwise_alg alg, float alpha, float beta,
                                   const tg_tensor *x, const tg_tensor *gy, tg_tensor *gx);

typedef enum tg_binary_alg { TG_BIN_ADD, TG_BIN_SUB, TG_BIN_MUL, TG_BIN_DIV } tg_binary_alg;
/* c = a (op) b with broadcasting already resolved: a, b, c have the same ndim and
 * each extent of a and b equals c's or is 1. */
tg_status tg_dnnl_binary(tg_binary_alg alg, const tg_tensor *a, const tg_tensor *b,
                         tg_tensor *c);

/* Softmax or log-softmax of x along axis into y. */
tg_status tg_dnnl_softmax_forward(bool log, int axis, const tg_tensor *x, tg_tensor *y);
/* gx from the forward output y and gy. */
tg_status tg_dnnl_softmax_backward(bool log, int axis, const tg_tensor *y,
                                   const tg_tensor *gy, tg_tensor *gx);

/* c = a @ b: 2-D (m,k)@(k,n), or 3-D (B,m,k)@(B,k,n) / (B,m,k)@(1,k,n). Transposes
 * are expressed by the strides of a and b (which may be non-contiguous views with
 * unit stride in one of their last two dims). */
tg_status tg_dnnl_matmul(const tg_tensor *a, const tg_tensor *b, tg_tensor *c);

#endif
