/* ops/ops_impl.h -- private: what op files share. Op tables, backend choice,
 * broadcasting, argument checks. Never installed. */
#ifndef TG_OPS_IMPL_H
#define TG_OPS_IMPL_H

#include "libtensor/tensor_impl.h"
#include "autograd/node_impl.h"
#include "ops/ops.h"
#include "ops/op_list.h"

/* Every op file defines its vtable as tg_op_<name>_vtable. */
#define TG_OP_DECLARE_(e, n) extern const tg_op_vtable tg_op_##n##_vtable;
TG_OP_LIST(TG_OP_DECLARE_)
#undef TG_OP_DECLARE_

/* Indexed by tg_op_id. */
extern const tg_op_vtable *const tg_op_table[TG_OP_COUNT];
/* The row with this table name, or NULL. */
const tg_op_vtable *tg_op_lookup(const char *name);

/* True when x's op should run on oneDNN: f32 and backend AUTO. */
bool tg_use_dnnl(const tg_tensor *x);

/* ---- argument checks; each sets an error naming `who` and returns its status ---- */
tg_status tg_check_float(const char *who, const char *arg, const tg_tensor *x);
tg_status tg_check_same_dtype(const char *who, const tg_tensor *a, const tg_tensor *b);
tg_status tg_check_ndim(const char *who, const char *arg, const tg_tensor *x, int ndim);
/* Normalises a possibly negative axis into 0..ndim-1. */
tg_status tg_norm_axis(const char *who, int axis, int ndim, int *out);

/* ---- broadcasting ---- */
/* numpy rules: shapes aligned at the right; extents equal or 1. */
tg_status tg_broadcast_shape(const char *who, const tg_tensor *a, const tg_tensor *b,
                             int *ndim, int64_t *shape);
/* Strides of t as seen from an output of shape (ndim, shape): 0 on broadcast dims. */
void tg_broadcast_strides(const tg_tensor *t, int ndim, const int64_t *shape,
                          int64_t *strides);
/* Sums g down to shape (the inverse of broadcasting). Returns g itself (scoped,
 * retained) when the shapes already agree. Not recorded. */
tg_tensor *tg_sum_to_shape(tg_tensor *g, int ndim, const int64_t *shape);

#endif
