/* ops/weighted_impl.h -- private: what conv2d.c and dense.c share (ops/weighted.c).
 * Both ops are y = f(x, w, b) with an optional bias (node inputs 0, 1, 2) and
 * differ only in their geometry (the op's checked shapes and options, passed
 * through as `geom`) and their kernels. On oneDNN they run the same three
 * primitives on the same arguments; elsewhere their reference loops. Kernels get
 * contiguous tensors; outputs are preallocated and contiguous. */
#ifndef TG_WEIGHTED_IMPL_H
#define TG_WEIGHTED_IMPL_H

#include "ops/dnnl_impl.h"

/* The cached primitive of `kind` for an op's checked geometry, created on a miss.
 * Lock held. Errors name the thread's error context: the op's name in the
 * forward, "tg_conv2d backward (data)" and "... (weights)" in the backward. */
typedef tg_dnnl_entry *(*tg_weighted_getter)(tg_dnnl_kind kind, const void *geom);

typedef struct tg_weighted_op {
    const char *name;  /* "tg_conv2d"; the backward's errors add " backward (data)" ... */
    /* The reference loops (f64, or f32 on the reference backend); b, gb may be NULL. */
    void (*ref_forward)(const void *geom, const tg_tensor *x, const tg_tensor *w,
                        const tg_tensor *b, tg_tensor *y);
    void (*ref_backward_data)(const void *geom, const tg_tensor *w, const tg_tensor *gy,
                              tg_tensor *gx);
    void (*ref_backward_weights)(const void *geom, const tg_tensor *x, const tg_tensor *gy,
                                 tg_tensor *gw, tg_tensor *gb);
    /* oneDNN: the plain layouts of x, w, b and y at the API, and the cached
     * primitives of the three kinds (forward, backward data, backward weights). */
    void (*plain_mds)(const void *geom, dnnl_memory_desc_t *x, dnnl_memory_desc_t *w,
                      dnnl_memory_desc_t *b, dnnl_memory_desc_t *y);
    tg_weighted_getter get;
    tg_dnnl_kind fwd, bwd_data, bwd_weights;
} tg_weighted_op;
/* y = f(x, w, b) (borrowed; b may be NULL) into the preallocated y, from
 * contiguous copies of the inputs, on oneDNN when dnnl is set. Nothing to do when
 * y is empty. */
tg_status tg_weighted_forward(const tg_weighted_op *op, const void *geom, bool dnnl,
                              tg_tensor *x, tg_tensor *w, tg_tensor *b, tg_tensor *y);
/* The op's backward (as tg_op_vtable.backward, with the forward's geometry and
 * backend): makes dL/dx when x needs a gradient and dL/dw, dL/db when w or b
 * does (zeros when grad_out is empty) and hands out those asked for. */
tg_status tg_weighted_backward(const tg_weighted_op *op, const void *geom, bool dnnl,
                               tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in);

#endif
