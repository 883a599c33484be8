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

/* ---- helpers every op file uses ---- */
/* New reference with row-major strides: x itself (retained) when contiguous (a
 * view with canonical strides when only its extent-1 dims' strides differ), else a
 * contiguous copy. Its data is plain: a pending backend layout is settled
 * (docs/layouts.md), so kernels may read it with tg_tensor_data. NULL (error
 * set) on allocation failure or a failed settle. Not recorded. */
tg_tensor *tg_contiguous_owned(tg_tensor *x);
/* The same, but with keep (the caller runs x on oneDNN) a pending layout is
 * kept for the glue to read (tg_dnnl_run, tg_dnnl_alt_md) or settle: for the
 * conv, pool, dense and eltwise paths only. */
tg_tensor *tg_contiguous_layout_owned(tg_tensor *x, bool keep);
/* New reference: a 1-D view of the contiguous x over all its elements ([1] for a
 * 0-d x), for elementwise oneDNN calls where the shape does not matter. */
tg_tensor *tg_flat_view_owned(tg_tensor *x);
/* The last step of every op. Steals out and saved. When record is true (the op
 * asked tg_autograd_should_record first) records op with the inputs and saved
 * state; otherwise frees saved (op->free_saved, or free). Returns out as a scoped
 * reference, or NULL (out released) when out is NULL or recording failed. */
tg_tensor *tg_op_finish(tg_tensor *out, bool record, const tg_op_vtable *op,
                        tg_tensor *const *inputs, int n_inputs, void *saved);

/* Odometer over the row-major index space of (ndim, shape) for reference kernels:
 * advances idx by one and moves each offset off[k] (k < n) by strides[k][d].
 * Returns false after the last index, leaving idx and the offsets back at zero. */
static inline bool tg_index_next(int ndim, const int64_t *shape, int64_t *idx, int n,
                                 int64_t *off, const int64_t (*strides)[TG_MAX_DIMS])
{
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d]++;
        for (int k = 0; k < n; k++)
            off[k] += strides[k][d];
        if (idx[d] < shape[d])
            return true;
        for (int k = 0; k < n; k++)
            off[k] -= strides[k][d] * shape[d];
        idx[d] = 0;
    }
    return false;
}

#endif
