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

/* ---- argument checks; each sets an error naming the error context (the running
 * op, libtensor/tensor_impl.h) and returns its status ---- */
tg_status tg_check_float(const char *arg, const tg_tensor *x);
tg_status tg_check_same_dtype(const tg_tensor *a, const tg_tensor *b);
tg_status tg_check_ndim(const char *arg, const tg_tensor *x, int ndim);
/* Normalises a possibly negative axis into 0..ndim-1. */
tg_status tg_norm_axis(int axis, int ndim, int *out);

/* ---- broadcasting ---- */
/* numpy rules: shapes aligned at the right; extents equal or 1. */
tg_status tg_broadcast_shape(const tg_tensor *a, const tg_tensor *b,
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
 * (docs/layouts.md), so kernels may read it with tg_tensor_ptr. NULL (error
 * set) on allocation failure or a failed settle. Not recorded. */
tg_tensor *tg_contiguous_owned(tg_tensor *x);
/* The same, but with keep (the caller runs x on oneDNN) a pending layout is
 * kept for the glue to read (tg_dnnl_exec_tensors, tg_dnnl_alt_md) or settle: for the
 * conv, pool, dense and eltwise paths only. */
tg_tensor *tg_contiguous_layout_owned(tg_tensor *x, bool keep);
/* New reference: a 1-D view of the contiguous x over all its elements ([1] for a
 * 0-d x), for elementwise oneDNN calls where the shape does not matter. */
tg_tensor *tg_flat_view_owned(tg_tensor *x);
/* ---- the frame of every op's forward ----
 * An op's forward is its maths between tg_op_begin and tg_op_end:
 *
 *   tg_tensor *in[] = {a, b};
 *   tg_op_call c;
 *   if (!tg_op_begin(&c, &tg_op_foo_vtable, "tg_foo", in, 2, "a b", TG_OP_FLOAT))
 *       return NULL;                       // a NULL input, or not f32/f64
 *   ... op-specific checks and shape inference (on failure: return tg_op_fail(&c))
 *   tg_tensor *y = tg_op_output(&c, a->dtype, ndim, shape);
 *   foo_params *p = tg_op_save(&c, sizeof *p); // zeroed; NULL when not recorded
 *   if (!y || (c.record && !p))
 *       return tg_op_fail(&c);
 *   ... compute y; fill p when recorded (on failure: return tg_op_fail(&c))
 *   return tg_op_end(&c);                  // records the node when c.record
 *
 * Nothing here allocates beyond what the op asks for (the output, the saved
 * state), so an op written this way costs what a hand-written one does. */
typedef struct tg_op_call {
    const tg_op_vtable *op;  /* the row of the op table the node will point at */
    const char *who;         /* the public name errors start with ("tg_conv2d"),
                              * also the error context while the call runs */
    const char *prev_ctx;    /* the error context to restore at the end */
    tg_tensor *const *in;    /* borrowed: the caller's array of the node's inputs */
    int n_in;
    bool record;             /* grad mode on and some input requires grad */
    tg_tensor *out;          /* owned until tg_op_end/tg_op_fail (tg_op_output, or
                              * set directly to a new reference, e.g. a view) */
    void *saved;             /* owned likewise (tg_op_save, or set directly to state
                              * the op computes anyway); freed with op->free_saved
                              * (or free) unless the node takes it */
    bool saves_out;          /* tg_op_output_view was called: the node checks the
                              * output's version before its backward */
} tg_op_call;

/* Input checks tg_op_begin makes besides "not NULL". */
enum {
    TG_OP_FLOAT = 1u << 0,      /* each input is f32 or f64 (tg_check_float) */
    TG_OP_SAME_DTYPE = 1u << 1, /* each input has in[0]'s dtype */
};
/* Starts an op call: enters who as the error context (libtensor/tensor_impl.h;
 * tg_op_end and tg_op_fail leave it, so every path after a successful begin
 * ends in one of them), checks that the n_in inputs in are not NULL (in order; the
 * error names the input by its word in names, space-separated: "x w b"), then
 * the checks in flags, and decides whether the call is recorded. False (error set)
 * when a check fails; c then holds nothing to release. in stays borrowed and must
 * outlive the call. */
bool tg_op_begin(tg_op_call *c, const tg_op_vtable *op, const char *who,
                 tg_tensor *const *in, int n_in, const char *names, unsigned flags);
/* Allocates the output (owned by c) and returns it borrowed; NULL, error set, on
 * failure. */
tg_tensor *tg_op_output(tg_op_call *c, tg_dtype dtype, int ndim, const int64_t *shape);
/* When the call is recorded: zeroed saved state of size bytes (owned by c),
 * NULL with "<who>: out of memory" when that fails. NULL without an error when
 * the call is not recorded: check c->record. */
void *tg_op_save(tg_op_call *c, size_t size);
/* New reference: a view of the output to keep in the saved state (the node never
 * references its own output; the view has no grad_fn, so there is no cycle).
 * The node then records the output's version at tg_op_end, and backward refuses
 * if the output was written since. NULL with "<who>: out of memory" on failure. */
tg_tensor *tg_op_output_view(tg_op_call *c);
/* Ends the call: records the node (inputs and their versions, saved state) when
 * c->record, else
 * frees the saved state, and returns the output as a scoped reference. NULL when
 * there is no output or recording failed (everything released). */
tg_tensor *tg_op_end(tg_op_call *c);
/* Ends a failed call: releases the output and the saved state, returns NULL (the
 * error stays as set). */
tg_tensor *tg_op_fail(tg_op_call *c);

/* ---- kernels one op file lends to others ---- */
/* Elementwise algorithms of oneDNN's eltwise primitive that the unary and scalar
 * ops (and conv2d's fused ReLU) use. */
typedef enum tg_eltwise_alg {
    TG_ELT_RELU,    /* max(x, 0) */
    TG_ELT_TANH,
    TG_ELT_SIGMOID, /* logistic */
    TG_ELT_EXP,
    TG_ELT_LOG,
    TG_ELT_SQRT,
    TG_ELT_ABS,
    TG_ELT_LINEAR,  /* alpha * x + beta (neg, add_scalar, mul_scalar) */
    TG_ELT_POW,     /* alpha * x ** beta (pow_scalar) */
    TG_ELT_ELU,     /* x > 0 ? x : alpha (e^x - 1) */
    TG_ELT_GELU_ERF,
    TG_ELT_GELU_TANH,
    TG_ELT_SWISH,   /* x sigmoid(alpha x) */
    TG_ELT_SOFT_RELU, /* log(1 + e^x) */
    TG_ELT_CLIP,    /* clip_v2: min(max(x, alpha), beta), gradient 1 on alpha < x < beta */
    TG_ELT_NONE     /* no oneDNN algorithm: the op's own loop */
} tg_eltwise_alg;
/* In ops/unary.c: on oneDNN, the forward (gy NULL: out = f(x)) or the backward
 * (out = f'(x) gy) of alg for f32 x and gy of any strides and a contiguous out of
 * their shape (out may be gy's storage), run on flat views of contiguous copies,
 * so one primitive serves every shape of a given size. */
tg_status tg_eltwise_dnnl(tg_eltwise_alg alg, float alpha, float beta, tg_tensor *x,
                          tg_tensor *gy, tg_tensor *out);

/* What the reference kernels of the CNN ops share: one loop nest for f32 and f64,
 * reading and writing through these and accumulating in double (the oracle the
 * oneDNN path is tested against). */
static inline double tg_ref_ld(const void *p, int64_t i, bool f64)
{
    return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static inline void tg_ref_st(void *p, int64_t i, bool f64, double v)
{
    if (f64)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

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
