/* libtensor/tensor_impl.h -- private: the tensor and storage structs and the
 * helpers the library's own folders (autograd/, ops/, nn/, io/) build on.
 * Never installed; user code goes through the accessors in tensor.h. */
#ifndef TG_TENSOR_IMPL_H
#define TG_TENSOR_IMPL_H

#include <stdarg.h>
#include <stdatomic.h>

#include "libtensor/tensor.h"
#include "libtensor/error.h"
#include "libtensor/scope.h"
#include "libtensor/rng.h"
#include "libtensor/runtime.h"

/* A refcounted object whose owner does not know its type: autograd nodes start
 * with this header so a tensor can drop its grad_fn without libtensor knowing
 * what a node is. */
typedef struct tg_refobj {
    int64_t refcount;
    void (*destroy)(struct tg_refobj *self); /* called when refcount reaches 0 */
} tg_refobj;

static inline void tg_refobj_retain(tg_refobj *o) { if (o) o->refcount++; }
static inline void tg_refobj_release(tg_refobj *o)
{
    if (o && --o->refcount == 0)
        o->destroy(o);
}

/* A storage's contents held in a backend's own layout: libtensor/layout_impl.h
 * and docs/layouts.md. */
typedef struct tg_layout tg_layout;

typedef struct tg_storage {
    int64_t refcount;
    void *data;        /* 64-byte aligned unless wrapped; stale while layout is set */
    size_t nbytes;
    bool owns_data;    /* false for tg_wrap'ed caller buffers */
    uint64_t version;  /* a fresh tg_version_next() on creation and every write */
    tg_layout *layout; /* NULL, or the authoritative copy in a backend's layout */
} tg_storage;

/* The slow half of tg_storage_data (libtensor/layout.c): settles s's pending
 * layout into s->data and drops it; on failure the error is set and the layout
 * stays pending (nothing is lost). */
tg_status tg_layout_settle(tg_storage *s);

/* The plain data of s, settling a pending backend layout first; NULL (with the
 * last error set) when that settle fails, never stale data. (Also NULL, without
 * an error, for an empty tg_wrap of NULL: tg_tensor_settle tells the two
 * apart.) Call it on the thread that runs the op, before any parallel loop
 * over the data: like the rest of a tensor, a pending layout is settled by one
 * thread at a time. No pending layout costs one branch. */
static inline void *tg_storage_data(tg_storage *s)
{
    if (__builtin_expect(s->layout != NULL, 0) && tg_layout_settle(s) != TG_OK)
        return NULL;
    return s->data;
}

/* tg_tensor.magic: LIVE while the header is in use, DEAD once freed. In debug
 * mode (tg_set_debug_mode) freed headers are kept, never reused, so a dead
 * handle is always recognised; otherwise the check is best effort. */
#define TG_TENSOR_LIVE 0x74656e73u /* "tens" */
#define TG_TENSOR_DEAD 0xdeadf7eeu

struct tg_tensor {
    uint32_t magic;
    bool died_in_scope;           /* dead: its last reference was a scope's (pop) */
    int64_t refcount;
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    int64_t strides[TG_MAX_DIMS]; /* elements */
    int64_t offset;               /* elements */
    tg_storage *storage;
    char *name;                   /* malloc'd or NULL */
    int scope_refs;               /* how many of the references are held by scopes */

    /* autodiff state; libtensor only frees it, autograd/ gives it meaning */
    bool requires_grad;
    tg_tensor *grad;       /* owned; accumulated gradient of a leaf */
    bool grad_zero_pending; /* grad's contents stand for zeros (tg_zero_grad): autograd's */
    tg_refobj *grad_fn;    /* owned; the node that produced this tensor, or NULL */
};

/* TG_OK when t's data may be read plain, settling a pending layout first; else
 * the failed settle's status (error set). For code that reads through
 * tg_storage_data with its own strides, so it can fail before its loop. */
static inline tg_status tg_tensor_settle(const tg_tensor *t)
{
    return t->storage->layout ? tg_layout_settle(t->storage) : TG_OK;
}

/* t reads exactly its whole storage, from the start, in plain order: what a
 * pending layout may stand for, and what a gradient written in place covers. */
static inline bool tg_tensor_covers_storage(const tg_tensor *t)
{
    return t->offset == 0 && tg_tensor_is_contiguous(t) &&
           (size_t)tg_tensor_nbytes(t) == t->storage->nbytes;
}

/* ---- use after free ---- */
/* True when t is a freed tensor header (see TG_TENSOR_LIVE). */
static inline bool tg_tensor_dead(const tg_tensor *t)
{
    return __builtin_expect(t->magic != TG_TENSOR_LIVE, 0);
}
/* Sets (and in debug mode prints) the error for a dead tensor handed to fn as
 * argument arg: "tg_relu: argument 'x' is a tensor that was already freed
 * (...)"; returns TG_ERR_STATE. */
tg_status tg_dead_arg(const char *fn, const char *arg, const tg_tensor *t);
/* Whether debug mode is on (libtensor/runtime.h): one relaxed load. */
bool tg_debug_on(void);
/* Prints "libtensor: <message>" to stderr: every time in debug mode, else only
 * when *once is false (then sets it). For misuse a void function cannot
 * report through a status (tg_release). */
void tg_misuse_report(_Atomic bool *once, const char *msg);

/* ---- errors: set the thread's last error and return the status ---- */
tg_status tg_error(tg_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
tg_status tg_verror(tg_status status, const char *fmt, va_list ap);
/* NULL-argument check used at the top of public functions:
 *   if (!x) return tg_null_arg("tg_relu", "x"), NULL;
 * When an earlier call already failed, its message is kept as the cause. */
tg_status tg_null_arg(const char *fn, const char *arg);

/* ---- the error context: the name of the public function being run ----
 * Internal helpers (shape checks, allocation, the oneDNN glue) name the public
 * function in their messages ("tg_conv2d: ...") without being passed it: the
 * public function enters its name as the thread's error context, and the helpers
 * set their errors with tg_error_here. Contexts nest: enter returns the previous
 * context and leave restores it, so an op run inside another op (or inside a
 * backward) names itself and hands the outer name back when it returns:
 *
 *   const char *prev = tg_error_enter("tg_foo");
 *   ... tg_error_here(TG_ERR_SHAPE, "bad shape %s", s) -> "tg_foo: bad shape ..."
 *   tg_error_leave(prev);       // on every return path
 *
 * The op frame (tg_op_begin ... tg_op_end/tg_op_fail, ops/ops_impl.h) does this
 * for every op's forward, and the backward engine for every node's backward
 * ("tg_<op> backward"). With no context entered, messages start "libtensor". The
 * name is borrowed: it must outlive the context (a string literal, or a buffer
 * on the stack of the function that leaves). A thread-local pointer load and
 * store each way, nothing else. */
/* initial-exec: one %fs-relative load or store, no __tls_get_addr call, so
 * the frame's enter and leave cost a pointer store each (the static TLS block
 * has room for one pointer even when the library is dlopen'ed). */
#define TG_TLS_IE_ __attribute__((tls_model("initial-exec")))
extern _Thread_local const char *tg_error_ctx_ TG_TLS_IE_;
static inline const char *tg_error_enter(const char *name)
{
    const char *prev = tg_error_ctx_;
    tg_error_ctx_ = name;
    return prev;
}
static inline void tg_error_leave(const char *prev) { tg_error_ctx_ = prev; }
/* The current context; never NULL ("libtensor" when none was entered). */
static inline const char *tg_error_context(void)
{
    return tg_error_ctx_ ? tg_error_ctx_ : "libtensor";
}
/* tg_error with the message prefixed by the context: "<context>: <message>". */
tg_status tg_error_here(tg_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* tg_null_arg naming the current context. */
tg_status tg_null_arg_here(const char *arg);

/* A process-wide clock: every call returns a value never returned before, so a
 * (storage, version) pair names one content of one storage for all time, even
 * when a new storage reuses a freed one's address. */
uint64_t tg_version_next(void);

/* Called where the library starts computing (oneDNN engine creation, an
 * optimizer's creation): applies the default floating-point mode (denormal
 * flushing, libtensor/runtime.h) once per process, and blocks the asynchronous
 * signals in the OpenMP workers (libtensor/signals_impl.h; tg_set_num_threads
 * re-applies both to a larger team). Cheap after the first call; not to be
 * called inside a parallel region. */
void tg_runtime_first_compute(void);

/* ---- allocation: aligned, counted ---- */
#define TG_ALIGN 64
void *tg_alloc_aligned(size_t nbytes); /* NULL (and TG_ERR_NOMEM set) on failure */
void tg_free_aligned(void *p, size_t nbytes);
/* Live-object bookkeeping for types defined above libtensor (autograd nodes). */
void tg_live_objects_add(int64_t delta);

/* ---- construction without scoping: all return NEW references ---- */
/* Contiguous, uninitialised. Validates ndim/shape; messages name the error
 * context (the running public function). */
tg_tensor *tg_tensor_new_owned(tg_dtype dtype, int ndim, const int64_t *shape);
/* The same, for a caller whose messages name something other than the running
 * public function's context (a file, a layer, a backward's own label) or that
 * runs outside any context: `who` is data here, not context ("tg_tensor_new"
 * when NULL). */
tg_tensor *tg_tensor_new_named(const char *who, tg_dtype dtype, int ndim,
                               const int64_t *shape);
/* A view header on t's storage (retains the storage), given shape/strides/offset. */
tg_tensor *tg_tensor_view_owned(tg_tensor *t, int ndim, const int64_t *shape,
                                const int64_t *strides, int64_t offset);
/* Contiguous row-major strides for shape. */
void tg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
int64_t tg_shape_numel(int ndim, const int64_t *shape);
/* Validates a user shape; messages name the error context. */
tg_status tg_check_shape(int ndim, const int64_t *shape);
/* The two halves of a reshape, shared by tg_tensor_reshape and the differentiable
 * tg_reshape (ops/shape.c). tg_reshape_shape resolves one -1 in shape against t's
 * element count into out (ndim entries) and checks that the sizes agree (messages
 * name the error context). tg_view_strides finds strides that read t's storage with the new
 * shape, or returns false when t's strides make that impossible. */
tg_status tg_reshape_shape(const tg_tensor *t, int ndim, const int64_t *shape, int64_t *out);
bool tg_view_strides(const tg_tensor *t, int ndim, const int64_t *shape, int64_t *strides);

/* Raw views (libtensor/view.c): scoped references sharing t's storage that record
 * nothing for autodiff. Internal, so that users have one view API, the
 * differentiable one in ops/ops.h (same semantics, except that tg_reshape copies
 * where these fail on strides that make a view impossible). Library code may use
 * them where no gradient can flow. Negative dims count from the end. */
tg_tensor *tg_tensor_reshape(tg_tensor *t, int ndim, const int64_t *shape); /* one -1 */
tg_tensor *tg_tensor_flatten(tg_tensor *t, int start_dim, int end_dim);      /* inclusive */
tg_tensor *tg_tensor_permute(tg_tensor *t, const int *perm);
tg_tensor *tg_tensor_transpose(tg_tensor *t, int dim0, int dim1);
tg_tensor *tg_tensor_slice(tg_tensor *t, int dim, int64_t start, int64_t end);
tg_tensor *tg_tensor_squeeze(tg_tensor *t, int dim);
tg_tensor *tg_tensor_unsqueeze(tg_tensor *t, int dim);
/* t itself (one more reference, scoped) when contiguous, else a contiguous copy. */
tg_tensor *tg_tensor_contiguous(tg_tensor *t);

/* Scoped return: hands a new reference to the innermost scope (or the caller). */
static inline tg_tensor *tg_scoped(tg_tensor *t) { return tg_scope_adopt_steal(t); }

/* Element as double at a flat row-major logical index i (handles strides). A
 * failed settle of a pending layout gives NAN / the status with the error set. */
double tg_get_flat(const tg_tensor *t, int64_t i);
tg_status tg_set_flat(tg_tensor *t, int64_t i, double v);
/* Converts n elements between dtypes (contiguous buffers). */
void tg_convert(void *dst, tg_dtype dt, const void *src, tg_dtype st, int64_t n);
/* Fills the contiguous f32 or f64 tensor t with draw(rng, arg), one call per
 * element in row-major order (rng NULL: the global generator): the loop behind
 * tg_rand_* and the initializers, so both draw in the same order. */
void tg_fill_draws(tg_tensor *t, tg_rng *rng, double (*draw)(tg_rng *rng, const void *arg),
                   const void *arg);

/* Pointer to element [0...] of t (not NULL), for library code that manages
 * versions itself: unlike the public tg_tensor_data it does not bump the
 * version, so reading an input (a conv weight) keeps the caches keyed on it
 * and the versions recorded ops saved (autograd/engine.c). Code that writes
 * into a tensor others may already hold bumps its version after writing
 * (tg_tensor_bump_version); a fresh output needs nothing. NULL when a pending
 * layout failed to settle (error set), or for an empty tg_wrap of NULL. */
void *tg_tensor_ptr(const tg_tensor *t);

/* Typed pointer to element [0...] through tg_tensor_ptr (no version change). */
#define TG_DATA(t, type) ((type *)tg_tensor_ptr(t))

#endif
