/* ops/dnnl_impl.h -- private: the oneDNN glue API (ops/dnnl.c). Only ops/
 * includes <oneapi/dnnl/dnnl.h>. The glue owns the engine, the stream, the
 * primitive cache, the shared scratchpad and layout buffers, and pending layouts
 * on storages; it holds no kernel. An op file that runs on oneDNN does, with the
 * glue locked (tg_dnnl_lock):
 *
 *   1. key:    tg_dnnl_key_init(&k, TG_DNNL_<KIND>), then tg_dnnl_key_add* every
 *              value the primitive depends on (shapes, options, layouts);
 *   2. lookup: e = tg_dnnl_find(&k); on a miss build the op descriptor and
 *              e = tg_dnnl_create(&k, &desc, hint) (or tg_dnnl_pd_create_ex
 *              + tg_dnnl_insert when it needs a post-op or tries several layouts);
 *   3. run:    tg_dnnl_exec(e, mems, n) when the caller's buffers are already
 *              in the layouts the primitive was made for (eltwise, binary,
 *              softmax, matmul: plain or strided descriptors), or
 *              tg_dnnl_exec_tensors(e, io, n) when the arguments are plain
 *              tensors and the primitive chose its own layouts (conv, pooling,
 *              inner product): it reorders inputs in, uses cached reordered
 *              weights, keeps blocked outputs pending, then calls tg_dnnl_exec.
 *
 * Entries and temporary buffers stay valid while the lock is held (the cache
 * evicts its least recently used entry only when full, never one used during the
 * current call). A training step creates no primitive after its first run and
 * allocates nothing here: buffers grow and are kept. Tensors passed in are
 * contiguous (callers make them so) and outputs are preallocated by the caller. */
#ifndef TG_DNNL_IMPL_H
#define TG_DNNL_IMPL_H

#include <oneapi/dnnl/dnnl.h>

#include "ops/ops_impl.h"
#include "libtensor/layout_impl.h"

/* ---- engine, lock, errors ---- */

/* The process-wide engine (created on first use; borrowed). NULL with
 * TG_ERR_BACKEND when oneDNN cannot start.
 * The glue's errors start with the thread's error context (tg_error_here,
 * libtensor/tensor_impl.h): the op's public name, set by the op frame or the
 * backward engine, or the kernel's own name where a kernel enters one. */
dnnl_engine_t tg_dnnl_engine(void);
/* One recursive lock guards the cache, the stream and the shared buffers. */
void tg_dnnl_lock(void);
void tg_dnnl_unlock(void);
/* Sets "<context>: oneDNN <what> failed: <status>" and returns TG_ERR_BACKEND. */
tg_status tg_dnnl_failed(const char *what, dnnl_status_t st);
/* Sets the error for an op descriptor oneDNN refused: "<context>: oneDNN cannot run
 * this <what> (<oneDNN's status>): <the op's shapes and options, from fmt>".
 * Returns TG_ERR_BACKEND. */
tg_status tg_dnnl_refused(const char *what, dnnl_status_t st,
                          const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- cache keys ---- */

/* What a cache key describes (the first word of every key). */
typedef enum tg_dnnl_kind {
    TG_DNNL_ELTWISE_FWD = 1, TG_DNNL_ELTWISE_BWD, TG_DNNL_BINARY,
    TG_DNNL_SOFTMAX_FWD, TG_DNNL_SOFTMAX_BWD, TG_DNNL_MATMUL,
    TG_DNNL_CONV_FWD, TG_DNNL_CONV_BWD_DATA, TG_DNNL_CONV_BWD_WEIGHTS,
    TG_DNNL_POOL_FWD, TG_DNNL_POOL_BWD,
    TG_DNNL_IP_FWD, TG_DNNL_IP_BWD_DATA, TG_DNNL_IP_BWD_WEIGHTS,
    TG_DNNL_REORDER,
    TG_DNNL_BNORM_FWD, TG_DNNL_BNORM_BWD
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
/* Adds t's shape and strides as tg_dnnl_md_of describes them. */
void tg_dnnl_key_add_layout(tg_dnnl_key *k, const tg_tensor *t);

/* ---- the primitive cache ---- */

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

/* The entry for key (borrowed) or NULL; counts a hit or a miss. Lock held. */
tg_dnnl_entry *tg_dnnl_find(const tg_dnnl_key *key);
/* A primitive descriptor for op_desc (hint: the forward primitive descriptor that
 * backward passes need, or NULL) with the glue's attributes (user scratchpad).
 * New object the caller destroys or hands to tg_dnnl_insert; NULL with
 * TG_ERR_BACKEND on failure. */
dnnl_primitive_desc_t tg_dnnl_pd_create(const_dnnl_op_desc_t op_desc,
                                        const_dnnl_primitive_desc_t hint);
/* The same, with relu: ReLU applied to the output as a post-op (a forward
 * convolution or inner product that fuses its activation). */
dnnl_primitive_desc_t tg_dnnl_pd_create_ex(const_dnnl_op_desc_t op_desc,
                                           const_dnnl_primitive_desc_t hint, bool relu);
/* Creates the primitive of pd and caches both under key. Steals pd (destroyed on
 * failure). Lock held. Borrowed result, NULL on failure. */
tg_dnnl_entry *tg_dnnl_insert(const tg_dnnl_key *key, dnnl_primitive_desc_t pd);
/* tg_dnnl_pd_create + tg_dnnl_insert. */
tg_dnnl_entry *tg_dnnl_create(const tg_dnnl_key *key, const_dnnl_op_desc_t op_desc,
                              const_dnnl_primitive_desc_t hint);
/* The memory descriptor the primitive wants for `what` (dnnl_query_src_md ...). */
const dnnl_memory_desc_t *tg_dnnl_md(const tg_dnnl_entry *e, dnnl_query_t what);
/* True when a layout pads some dimension (blocked channels beyond the extent). */
bool tg_dnnl_md_padded(const dnnl_memory_desc_t *md);

/* Plain row-major f32 descriptor of dims (ndim 0 is treated as [1]). */
void tg_dnnl_md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims);
/* f32 descriptor with t's shape and strides. */
void tg_dnnl_md_of(dnnl_memory_desc_t *md, const tg_tensor *t);

/* ---- running a cached primitive: tg_dnnl_exec, and its variant for tensors ---- */

/* At most this many arguments per primitive, the scratchpad included. */
#define TG_DNNL_MAX_ARGS 12

/* One argument of tg_dnnl_exec: a buffer already laid out as md. */
typedef struct tg_dnnl_mem {
    int arg;                       /* DNNL_ARG_SRC, DNNL_ARG_DST ... */
    const dnnl_memory_desc_t *md;
    const void *data;              /* borrowed; written when arg is an output */
} tg_dnnl_mem;
/* THE way to execute a primitive: wraps the n buffers (at most
 * TG_DNNL_MAX_ARGS - 1) in memories, adds the shared scratchpad, executes e on
 * the stream, waits, and destroys the memories (also on failure). Lock held. */
tg_status tg_dnnl_exec(tg_dnnl_entry *e, const tg_dnnl_mem *args, int n);

/* One argument of tg_dnnl_exec_tensors: a tensor in the caller's plain layout;
 * the layout the primitive wants for it is asked of the entry (query `what`,
 * index `index`: a bias is weights argument 1). Inputs are reordered in (tmp slot `slot`) when
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
/* The variant for primitives that choose their own layouts: brings the n tensors
 * io (at most TG_DNNL_MAX_ARGS - 1) into the layouts e wants, runs tg_dnnl_exec,
 * and brings the outputs back. Lock held.
 * Layouts kept between primitives: an IN tensor whose storage holds a pending
 * oneDNN layout (tg_dnnl_alt_md) equal to the wanted one is read from it as it
 * is; an OUT tensor the primitive wants in another layout than the plain one is
 * left in that layout (tg_dnnl_alt_attach) instead of being reordered back, so
 * the next primitive that wants the same layout reads it without a reorder, and
 * any plain reader settles it first (libtensor/layout_impl.h, docs/layouts.md).
 * An argument whose pending layout fails to settle makes the call fail (its
 * status, the error set); the layout stays pending. */
tg_status tg_dnnl_exec_tensors(tg_dnnl_entry *e, const tg_dnnl_io *io, int n);

/* ---- layouts at the edges: the API is plain, primitives may want blocked ---- */

/* Copies src (laid out as src_md) into dst (dst_md) with a cached reorder. Lock held. */
tg_status tg_dnnl_reorder(const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst);
/* A growing buffer owned by the glue, one per slot (0..TG_DNNL_TMP_SLOTS-1), kept
 * between calls so a training step allocates nothing. Lock held; NULL on failure. */
#define TG_DNNL_TMP_SLOTS 6
void *tg_dnnl_tmp(int slot, size_t nbytes);
/* data (laid out as have) in the layout want: data itself when they agree, else a
 * reordered copy in tmp slot `slot`. NULL on failure. Lock held. */
const void *tg_dnnl_input_as(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                             const void *data, int slot);
/* Where a primitive should write an output the caller wants in layout have at
 * data: data itself when the layouts agree, else tmp slot `slot`; after the run,
 * tg_dnnl_output_finish reorders the tmp back into data (a no-op otherwise). */
void *tg_dnnl_output_buf(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                         void *data, int slot);
tg_status tg_dnnl_output_finish(const dnnl_memory_desc_t *want, const void *buf,
                                const dnnl_memory_desc_t *have, void *data);
/* The weights w (plain, laid out as have) in layout want: w's data when they agree,
 * else a cached reordered copy, made again only when w's storage or version changed
 * (counted in weight_reorders). Versions come from one process-wide clock, so a
 * new storage at a freed one's address is never mistaken for it. Borrowed
 * pointer, valid while the lock is held; NULL on failure. */
const void *tg_dnnl_weights_as(const tg_tensor *w, const dnnl_memory_desc_t *have,
                               const dnnl_memory_desc_t *want);
/* Whether an output t the primitive writes in layout want is better left pending
 * in it than reordered back (blocked layouts on, an activation-sized blocked
 * layout, t a fresh f32 output covering its storage). Elementwise kernels that
 * run straight on a blocked buffer ask this before tg_dnnl_alt_attach. */
bool tg_dnnl_keep_layout(const dnnl_memory_desc_t *want, const tg_tensor *t);

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
void *tg_dnnl_alt_attach(tg_tensor *t, const dnnl_memory_desc_t *md);
/* Whether elementwise work may run straight on md's buffer: blocked, with no
 * padding, so its elements are exactly the tensor's, in another order. */
bool tg_dnnl_md_dense(const dnnl_memory_desc_t *md, int64_t numel);
/* Appends md's layout to a key. */
void tg_dnnl_key_add_md(tg_dnnl_key *k, const dnnl_memory_desc_t *md);

/* ---- settings and counters ---- */

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

#endif
