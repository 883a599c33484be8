/* ops/dnnl_impl.h -- private: the oneDNN glue (engine, stream, primitive cache,
 * scratchpad), the f32 kernels other op files call, and what the CNN op files
 * (conv2d.c, pool.c, dense.c) share. Only ops/ includes <oneapi/dnnl/dnnl.h>. All
 * tensors passed here are contiguous (callers make them so); outputs are
 * preallocated by the caller. */
#ifndef TG_DNNL_IMPL_H
#define TG_DNNL_IMPL_H

#include <oneapi/dnnl/dnnl.h>

#include "ops/ops_impl.h"
#include "libtensor/layout_impl.h"

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
/* What the unary and scalar ops call (defined in ops/unary.c): the forward
 * (gy NULL: out = f(x)) or backward (out = f'(x) gy) above for an x and gy of
 * any strides and a contiguous out of their shape, run on flat views of
 * contiguous copies, so one primitive serves every shape of a given size. */
tg_status tg_eltwise_dnnl(tg_eltwise_alg alg, float alpha, float beta, tg_tensor *x,
                          tg_tensor *gy, tg_tensor *out);

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

/* ---- the glue the CNN op files (conv2d.c, pool.c, dense.c) build on ----
 *
 * Usage: with the glue locked, build a key naming everything the primitive depends
 * on and look it up; on a miss build the op descriptor and create the entry; then
 * execute it with memories made on the caller's buffers. Entries and temporary
 * buffers stay valid while the lock is held (the cache evicts the least recently
 * used entry only when it is full, and never one used during the current call). */

/* What a cache key describes (the first word of every key). */
typedef enum tg_dnnl_kind {
    TG_DNNL_ELTWISE_FWD = 1, TG_DNNL_ELTWISE_BWD, TG_DNNL_BINARY,
    TG_DNNL_SOFTMAX_FWD, TG_DNNL_SOFTMAX_BWD, TG_DNNL_MATMUL,
    TG_DNNL_CONV_FWD, TG_DNNL_CONV_BWD_DATA, TG_DNNL_CONV_BWD_WEIGHTS,
    TG_DNNL_POOL_FWD, TG_DNNL_POOL_BWD,
    TG_DNNL_IP_FWD, TG_DNNL_IP_BWD_DATA, TG_DNNL_IP_BWD_WEIGHTS,
    TG_DNNL_REORDER
} tg_dnnl_kind;

#define TG_DNNL_KEY_MAX 96
typedef struct tg_dnnl_key {
    int n;                        /* words used; -1 once it overflowed */
    int64_t v[TG_DNNL_KEY_MAX];
} tg_dnnl_key;

void tg_dnnl_key_init(tg_dnnl_key *k, tg_dnnl_kind kind);
void tg_dnnl_key_add(tg_dnnl_key *k, int64_t v);
/* Adds n, then the n values. */
void tg_dnnl_key_add_n(tg_dnnl_key *k, int n, const int64_t *v);

/* A cached primitive: its descriptor, the primitive and its scratchpad size. */
typedef struct tg_dnnl_entry tg_dnnl_entry;
struct tg_dnnl_entry {
    tg_dnnl_key key;
    uint64_t hash;
    uint64_t last_use;
    tg_dnnl_entry *next;          /* hash chain */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    size_t scratch_bytes;
    bool hold_signals;            /* runs oneDNN's gemm kernels: see tg_dnnl_exec */
};

/* The process-wide engine (created on first use; borrowed). NULL with
 * TG_ERR_BACKEND naming who when oneDNN cannot start. */
dnnl_engine_t tg_dnnl_engine(const char *who);
/* One recursive lock guards the cache, the stream and the shared buffers. */
void tg_dnnl_lock(void);
void tg_dnnl_unlock(void);

/* The entry for key (borrowed) or NULL; counts a hit or a miss. Lock held. */
tg_dnnl_entry *tg_dnnl_find(const tg_dnnl_key *key);
/* A primitive descriptor for op_desc (hint: the forward primitive descriptor that
 * backward passes need, or NULL) with the glue's attributes (user scratchpad).
 * New object the caller destroys or hands to tg_dnnl_insert; NULL with
 * TG_ERR_BACKEND naming who on failure. */
dnnl_primitive_desc_t tg_dnnl_pd_create(const_dnnl_op_desc_t op_desc,
                                        const_dnnl_primitive_desc_t hint, const char *who);
/* The same, with relu: ReLU applied to the output as a post-op (a forward
 * convolution or inner product that fuses its activation). */
dnnl_primitive_desc_t tg_dnnl_pd_create_ex(const_dnnl_op_desc_t op_desc,
                                           const_dnnl_primitive_desc_t hint, bool relu,
                                           const char *who);
/* Creates the primitive of pd and caches both under key. Steals pd (destroyed on
 * failure). Lock held. Borrowed result, NULL on failure. */
tg_dnnl_entry *tg_dnnl_insert(const tg_dnnl_key *key, dnnl_primitive_desc_t pd,
                              const char *who);
/* tg_dnnl_pd_create + tg_dnnl_insert. */
tg_dnnl_entry *tg_dnnl_create(const tg_dnnl_key *key, const_dnnl_op_desc_t op_desc,
                              const_dnnl_primitive_desc_t hint, const char *who);
/* The memory descriptor the primitive wants for `what` (dnnl_query_src_md ...). */
const dnnl_memory_desc_t *tg_dnnl_md(const tg_dnnl_entry *e, dnnl_query_t what);
/* True when a layout pads some dimension (blocked channels beyond the extent). */
bool tg_dnnl_md_padded(const dnnl_memory_desc_t *md);

/* Plain row-major f32 descriptor of dims (ndim 0 is treated as [1]). */
void tg_dnnl_md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims);
/* f32 descriptor with t's shape and strides. */
void tg_dnnl_md_of(dnnl_memory_desc_t *md, const tg_tensor *t);

/* Execution arguments: memories made on caller buffers, destroyed after the run. */
#define TG_DNNL_MAX_ARGS 12
typedef struct tg_dnnl_args {
    int n;
    dnnl_status_t status;         /* first failure while adding arguments */
    dnnl_exec_arg_t a[TG_DNNL_MAX_ARGS];
} tg_dnnl_args;
void tg_dnnl_args_init(tg_dnnl_args *a);
void tg_dnnl_arg(tg_dnnl_args *a, int which, const dnnl_memory_desc_t *md, const void *data);
/* Adds the scratchpad, executes e on the stream, waits, destroys the memories
 * (also on failure). Lock held. */
tg_status tg_dnnl_exec(tg_dnnl_entry *e, tg_dnnl_args *a, const char *who);

/* ---- layouts at the edges: the API is plain, primitives may want blocked ---- */

/* Copies src (laid out as src_md) into dst (dst_md) with a cached reorder. Lock held. */
tg_status tg_dnnl_reorder(const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst, const char *who);
/* A growing buffer owned by the glue, one per slot (0..TG_DNNL_TMP_SLOTS-1), kept
 * between calls so a training step allocates nothing. Lock held; NULL on failure. */
#define TG_DNNL_TMP_SLOTS 6
void *tg_dnnl_tmp(int slot, size_t nbytes, const char *who);
/* data (laid out as have) in the layout want: data itself when they agree, else a
 * reordered copy in tmp slot `slot`. NULL on failure. Lock held. */
const void *tg_dnnl_input_as(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                             const void *data, int slot, const char *who);
/* Where a primitive should write an output the caller wants in layout have at
 * data: data itself when the layouts agree, else tmp slot `slot`; after the run,
 * tg_dnnl_output_finish reorders the tmp back into data (a no-op otherwise). */
void *tg_dnnl_output_buf(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                         void *data, int slot, const char *who);
tg_status tg_dnnl_output_finish(const dnnl_memory_desc_t *want, const void *buf,
                                const dnnl_memory_desc_t *have, void *data, const char *who);
/* The weights w (plain, laid out as have) in layout want: w's data when they agree,
 * else a cached reordered copy, made again only when w's storage or version changed
 * (counted in weight_reorders). Versions come from one process-wide clock, so a
 * new storage at a freed one's address is never mistaken for it. Borrowed
 * pointer, valid while the lock is held; NULL on failure. */
const void *tg_dnnl_weights_as(const tg_tensor *w, const dnnl_memory_desc_t *have,
                               const dnnl_memory_desc_t *want, const char *who);

/* ---- pending oneDNN layouts on storages (tg_layout, docs/layouts.md) ----
 * The layout t's data is held in, when t covers its whole storage (offset 0,
 * contiguous) and that storage holds a pending oneDNN layout; else NULL.
 * Borrowed: valid while the layout is pending. */
const dnnl_memory_desc_t *tg_dnnl_alt_md(const tg_tensor *t);
/* The buffer of that pending layout (with tg_dnnl_alt_md non-NULL). */
void *tg_dnnl_alt_buf(const tg_tensor *t);
/* Gives t (a fresh op output covering its whole storage, nothing pending) a
 * pending layout md and returns its buffer for the primitive to write; NULL,
 * with the error set, when t does not qualify or memory runs out. The reorder
 * back to plain is made here, so a later settle only executes it; a settle that
 * fails anyway leaves the layout pending and the plain reader gets NULL. */
void *tg_dnnl_alt_attach(tg_tensor *t, const dnnl_memory_desc_t *md, const char *who);
/* Whether elementwise work may run straight on md's buffer: blocked, with no
 * padding, so its elements are exactly the tensor's, in another order. */
bool tg_dnnl_md_dense(const dnnl_memory_desc_t *md, int64_t numel);
/* Appends md's layout to a key. */
void tg_dnnl_key_add_md(tg_dnnl_key *k, const dnnl_memory_desc_t *md);

/* ---- running a primitive on the op's plain tensors ----
 * One argument of tg_dnnl_run: a tensor in the caller's plain layout; the layout
 * the primitive wants for it is asked of the entry (query `what`, index `index`:
 * a bias is weights argument 1). Inputs are reordered in (tmp slot `slot`) when
 * the layouts differ, weights go through the cache of tg_dnnl_weights_as, and
 * outputs are written in place or through tmp slot `slot` and reordered back. */
typedef enum tg_dnnl_role { TG_DNNL_IN, TG_DNNL_WEIGHTS, TG_DNNL_OUT } tg_dnnl_role;
typedef struct tg_dnnl_io {
    int arg;                          /* DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS ... */
    dnnl_query_t what;                /* dnnl_query_src_md, ... */
    int index;
    tg_dnnl_role role;
    const dnnl_memory_desc_t *plain;  /* the caller's layout of t */
    const tg_tensor *t;               /* contiguous, borrowed; NULL: argument absent */
    int slot;                         /* tmp slot for IN and OUT */
} tg_dnnl_io;
/* Runs e on the n arguments io (at most TG_DNNL_MAX_ARGS - 1: the scratchpad is
 * added here). Lock held.
 * Layouts kept between primitives: an IN tensor whose storage holds a pending
 * oneDNN layout (tg_dnnl_alt_md) equal to the wanted one is read from it as it
 * is; an OUT tensor the primitive wants in another layout than the plain one is
 * left in that layout (tg_dnnl_alt_attach) instead of being reordered back, so
 * the next primitive that wants the same layout reads it without a reorder, and
 * any plain reader settles it first (libtensor/layout_impl.h, docs/layouts.md).
 * An input whose pending layout fails to settle makes the run fail (its status,
 * the error set); the layout stays pending. */
tg_status tg_dnnl_run(tg_dnnl_entry *e, const tg_dnnl_io *io, int n, const char *who);
/* Sets the error for an op descriptor oneDNN refused: "<who>: oneDNN cannot run
 * this <what> (<oneDNN's status>): <the op's shapes and options, from fmt>".
 * Returns TG_ERR_BACKEND. */
tg_status tg_dnnl_refused(const char *who, const char *what, dnnl_status_t st,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The cached primitive of `kind` for an op's checked geometry (conv2d.c, pool.c,
 * dense.c each have one), created on a miss. Lock held. */
typedef tg_dnnl_entry *(*tg_dnnl_getter)(tg_dnnl_kind kind, const void *geom, const char *who);
/* Starts the engine, locks the glue, gets the entry of (kind, geom) and runs it
 * on io (tg_dnnl_run). */
tg_status tg_dnnl_call(tg_dnnl_getter get, tg_dnnl_kind kind, const void *geom,
                       const tg_dnnl_io *io, int n, const char *who);
/* Bytes of the one scratchpad buffer all primitives share (user-managed scratchpad
 * mode; grown on demand, never shrunk): for tests. */
size_t tg_dnnl_scratchpad_capacity(void);

/* Whether convolutions may choose blocked layouts (format_tag any, reordered at
 * the edges) instead of plain NCHW / OIHW. On unless the environment says
 * TG_DNNL_LAYOUT=plain (read once; benchmarks/op_overhead compares both). Inner products
 * always run plain (ops/dense.c says why). */
bool tg_dnnl_blocked_layouts(void);
/* Overrides that choice (tests run both); returns the previous one. Primitives of
 * both kinds stay cached side by side (the choice is part of their keys). */
bool tg_dnnl_set_blocked_layouts(bool on);

/* ---- what conv2d.c and dense.c share ----
 * Both ops are y = f(x, w, b) with an optional bias (node inputs 0, 1, 2) and
 * differ only in their geometry (the op's checked shapes and options, passed
 * through as `geom`) and their kernels. On oneDNN they run the same three
 * primitives on the same arguments; elsewhere their reference loops. Kernels get
 * contiguous tensors; outputs are preallocated and contiguous. */
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
    tg_dnnl_getter get;
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

/* ---- what the reference kernels of the CNN ops share ----
 * They run one loop nest for f32 and f64, reading and writing through these and
 * accumulating in double: the oracle the oneDNN path is tested against. */
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

#endif
