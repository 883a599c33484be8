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

/* ---- the glue the CNN op files (conv2d.c, pool.c, dense.c) build on ----
 *
 * Usage: with the glue locked, build a key naming everything the primitive depends
 * on, look it up; on a miss build the op descriptor and create the entry; then
 * execute it with memories made on the caller's buffers. Entries stay valid while
 * the lock is held (the cache evicts least recently used entries when full). */
#include <oneapi/dnnl/dnnl.h>

/* What a cache key describes (the first word of every key). */
typedef enum tg_dnnl_kind {
    TG_DNNL_ELTWISE_FWD = 1, TG_DNNL_ELTWISE_BWD, TG_DNNL_BINARY,
    TG_DNNL_SOFTMAX_FWD, TG_DNNL_SOFTMAX_BWD, TG_DNNL_MATMUL,
    TG_DNNL_CONV_FWD, TG_DNNL_CONV_BWD_DATA, TG_DNNL_CONV_BWD_WEIGHTS,
    TG_DNNL_POOL_FWD, TG_DNNL_POOL_BWD,
    TG_DNNL_IP_FWD, TG_DNNL_IP_BWD_DATA, TG_DNNL_IP_BWD_WEIGHTS,
    TG_DNNL_REORDER
} tg_dnnl_kind;

#define TG_DNNL_KEY_MAX 64
typedef struct tg_dnnl_key {
    int n;                        /* words used; -1 once it overflowed */
    int64_t v[TG_DNNL_KEY_MAX];
} tg_dnnl_key;

void tg_dnnl_key_init(tg_dnnl_key *k, tg_dnnl_kind kind);
void tg_dnnl_key_add(tg_dnnl_key *k, int64_t v);
void tg_dnnl_key_add_n(tg_dnnl_key *k, int n, const int64_t *v);
void tg_dnnl_key_add_int(tg_dnnl_key *k, int n, const int *v);

/* A cached primitive: its descriptor, the primitive, its scratchpad size, and (for
 * convolutions whose weights oneDNN wants blocked) the reordered weights. */
typedef struct tg_dnnl_entry tg_dnnl_entry;
struct tg_dnnl_entry {
    tg_dnnl_key key;
    uint64_t hash;
    uint64_t last_use;
    tg_dnnl_entry *next;          /* hash chain */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    size_t scratch_bytes;
    /* reordered weights: valid while (w_storage, w_data, w_version) match */
    void *wbuf;
    size_t wbytes;
    const void *w_storage;
    const void *w_data;
    uint64_t w_version;
};

/* The process-wide engine (created on first use; borrowed). NULL with
 * TG_ERR_BACKEND set when oneDNN cannot start. */
dnnl_engine_t tg_dnnl_engine(const char *who);
/* One recursive lock guards the cache, the stream and the scratchpad. */
void tg_dnnl_lock(void);
void tg_dnnl_unlock(void);

/* The entry for key (borrowed) or NULL; counts a hit or a miss. Lock held. */
tg_dnnl_entry *tg_dnnl_find(const tg_dnnl_key *key);
/* Creates and caches the primitive for op_desc (hint: the forward primitive
 * descriptor backward passes need, or NULL). Attributes: user scratchpad. Lock
 * held. Borrowed result; NULL with TG_ERR_BACKEND naming who on failure. */
tg_dnnl_entry *tg_dnnl_create(const tg_dnnl_key *key, const_dnnl_op_desc_t op_desc,
                              const_dnnl_primitive_desc_t hint, const char *who);
/* The memory descriptor the primitive wants for `what` (dnnl_query_src_md ...). */
const dnnl_memory_desc_t *tg_dnnl_md(const tg_dnnl_entry *e, dnnl_query_t what);

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

/* Copies data laid out as src into dst's layout with a cached reorder keyed by
 * key (which must identify both layouts). Lock held. */
tg_status tg_dnnl_reorder(const tg_dnnl_key *key, const dnnl_memory_desc_t *src_md,
                          const void *src, const dnnl_memory_desc_t *dst_md, void *dst,
                          const char *who);
/* w (plain, user_md) in the layout `want`, from e's cached copy when w's storage and
 * version are those of the last reorder, else reordered now (counted in
 * weight_reorders). Returns a pointer owned by e (borrowed), NULL on error. */
const void *tg_dnnl_weights_as(tg_dnnl_entry *e, const tg_tensor *w,
                               const dnnl_memory_desc_t *user_md,
                               const dnnl_memory_desc_t *want, const char *who);

/* Whether the conv lets oneDNN choose activation layouts (format_tag any) instead
 * of plain NCHW. Read once from TG_DNNL_CONV_LAYOUT ("any" or "plain"). */
bool tg_dnnl_conv_any_layout(void);

#endif
