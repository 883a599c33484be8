/* libtensor/tensor.h -- n-dimensional, reference-counted tensors.
 *
 * A tensor is a shape + strides + offset into a refcounted, 64-byte-aligned
 * storage. Views share the storage. The functions here are the tensor core: they
 * record nothing for autodiff (the views and every other op are in ops/ops.h).
 *
 * Ownership, stated on every function as in jansson:
 *   new reference     the caller owns one reference and must tg_release() it;
 *   scoped reference  owned by the innermost scope (libtensor/scope.h) when one is
 *                     active, released when it pops; with no scope active the
 *                     caller owns it, exactly like a new reference;
 *   borrowed          nobody's reference changes.
 * Tensor arguments are borrowed unless the function name ends in _steal.
 * Any function given a NULL tensor returns NULL (or an error status) and sets the
 * last error, so a chain of calls may be checked once at its end. */
#ifndef TG_TENSOR_H
#define TG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* The largest number of dimensions a tensor may have. */
#define TG_MAX_DIMS 8

typedef enum tg_dtype {
    TG_F32 = 0, /* the default; what oneDNN runs */
    TG_F64,     /* reference kernels and gradient checks */
    TG_I32,
    TG_I64,     /* labels, argmax results */
    TG_U8,      /* images */
    TG_DTYPE_COUNT
} tg_dtype;

typedef struct tg_tensor tg_tensor;

/* Shape literal for the creation functions: tg_zeros(TG_F32, TG_SHAPE(2, 3)). */
#define TG_SHAPE(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

const char *tg_dtype_name(tg_dtype dtype); /* "f32", ...; "invalid" if out of range */
size_t tg_dtype_size(tg_dtype dtype);      /* bytes per element; 0 if invalid */
bool tg_dtype_is_float(tg_dtype dtype);

/* ---- creation: every function returns a scoped reference, or NULL on error ---- */

/* Uninitialised contents. ndim is 0..TG_MAX_DIMS; every extent must be >= 0. */
tg_tensor *tg_empty(tg_dtype dtype, int ndim, const int64_t *shape);
tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape);
tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape);
tg_tensor *tg_full(tg_dtype dtype, int ndim, const int64_t *shape, double value);
/* 1-D: start, start+step, ... while < stop (> stop for a negative step). */
tg_tensor *tg_arange(tg_dtype dtype, double start, double stop, double step);
/* Copies numel elements of `dtype` from data (row-major). data is untyped, so
 * C cannot check that it holds elements of `dtype`, nor that it holds numel of
 * them: a double array passed as TG_F32 gives garbage values, a too-short one
 * is read past its end. Prefer the typed variants below, where the compiler
 * checks the element type (a double array passed to tg_from_f32 is a
 * warning, an error under -Werror); the count stays the caller's promise. */
tg_tensor *tg_from_data(tg_dtype dtype, int ndim, const int64_t *shape, const void *data);
tg_tensor *tg_from_f32(int ndim, const int64_t *shape, const float *data);
tg_tensor *tg_from_f64(int ndim, const int64_t *shape, const double *data);
tg_tensor *tg_from_i32(int ndim, const int64_t *shape, const int32_t *data);
tg_tensor *tg_from_i64(int ndim, const int64_t *shape, const int64_t *data);
tg_tensor *tg_from_u8(int ndim, const int64_t *shape, const uint8_t *data);
/* Wraps the caller's buffer without copying; the caller keeps ownership and must
 * keep it alive (and not free it) while any tensor or view of it lives. */
tg_tensor *tg_wrap(tg_dtype dtype, int ndim, const int64_t *shape, void *data);
/* Floating dtypes only. rng NULL means the global generator (libtensor/rng.h). */
struct tg_rng;
tg_tensor *tg_rand_uniform(tg_dtype dtype, int ndim, const int64_t *shape, double low,
                           double high, struct tg_rng *rng);
tg_tensor *tg_rand_normal(tg_dtype dtype, int ndim, const int64_t *shape, double mean,
                          double stddev, struct tg_rng *rng);

/* ---- reference counting ---- */

/* Adds a reference; returns t (NULL stays NULL). */
tg_tensor *tg_retain(tg_tensor *t);
/* Drops a reference; frees the tensor (and its storage when no view remains) at
 * zero. NULL is ignored. */
void tg_release(tg_tensor *t);

/* ---- inspection (all borrowed) ---- */

tg_dtype tg_tensor_dtype(const tg_tensor *t);
int tg_tensor_ndim(const tg_tensor *t);
/* Extent of dimension dim; negative dim counts from the end. -1 on error. */
int64_t tg_tensor_dim(const tg_tensor *t, int dim);
const int64_t *tg_tensor_shape(const tg_tensor *t);   /* ndim entries; borrowed */
const int64_t *tg_tensor_strides(const tg_tensor *t); /* in elements; borrowed */
int64_t tg_tensor_offset(const tg_tensor *t);         /* in elements */
int64_t tg_tensor_numel(const tg_tensor *t);
size_t tg_tensor_nbytes(const tg_tensor *t); /* numel * element size */
bool tg_tensor_is_contiguous(const tg_tensor *t);
bool tg_tensor_same_shape(const tg_tensor *a, const tg_tensor *b);
bool tg_tensor_shares_storage(const tg_tensor *a, const tg_tensor *b);
/* Pointer to element [0,...,0] (storage + offset), for writing: every call
 * bumps the version (below), so caches (the oneDNN reordered weights of a conv)
 * make their copy again and a backward that needs the old values refuses
 * (docs/tensor-api.md, "Versions"). Write through the pointer right after
 * taking it: writes made after a later op read the tensor are not seen (take
 * the pointer again, or call tg_tensor_bump_version() after writing). To only
 * read, use tg_tensor_data_ro. NULL on error (NULL t, a failed settle of a
 * pending layout) or for an empty tg_wrap of NULL. */
void *tg_tensor_data(const tg_tensor *t);
/* The same pointer, for reading only: the version is unchanged. */
const void *tg_tensor_data_ro(const tg_tensor *t);
/* Changes each time the storage is written through the API (tg_set,
 * tg_tensor_fill, tg_tensor_copy_into, tg_tensor_data, an optimizer step, a
 * checkpoint load), to a value no storage has had before (a process-wide
 * clock); views share their base's storage and so its version. Caches key on
 * it, and recorded ops keep the version of every tensor their backward
 * reads. */
uint64_t tg_tensor_version(const tg_tensor *t);
void tg_tensor_bump_version(tg_tensor *t);
/* Writes "[2, 3]" into buf (always NUL-terminated); returns buf. */
char *tg_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* Optional name (parameters are named "dense/kernel" ...); borrowed, may be NULL. */
const char *tg_tensor_name(const tg_tensor *t);
tg_status tg_tensor_set_name(tg_tensor *t, const char *name);

/* ---- element access (any dtype, converted through double) ---- */

/* The single element of a tensor with numel 1, any shape. NaN on error. */
double tg_item(const tg_tensor *t);
float tg_item_f32(const tg_tensor *t);
/* The element at a full index (ndim entries). NaN on error. */
double tg_get(const tg_tensor *t, const int64_t *index);
tg_status tg_set(tg_tensor *t, const int64_t *index, double value);
/* Sets every element (in place; bumps the version). */
tg_status tg_tensor_fill(tg_tensor *t, double value);
/* Copies src into dst element by element, converting dtype; shapes must be equal.
 * src may overlap dst (views of one storage): dst gets src's values from before
 * the call. */
tg_status tg_tensor_copy_into(tg_tensor *dst, const tg_tensor *src);

/* ---- views ----
 * There is one set of views, the differentiable one in ops/ops.h: tg_reshape,
 * tg_flatten, tg_permute, tg_transpose, tg_slice, tg_squeeze, tg_unsqueeze and
 * tg_contiguous. They share t's storage like any view and record a node only when
 * an input requires grad, so a model never loses its gradient by picking the
 * wrong one. */

/* ---- copies: scoped references with fresh contiguous storage ----
 * Not recorded for autodiff: the copy is detached from t's graph, like tg_detach. */

tg_tensor *tg_tensor_copy(const tg_tensor *t);
tg_tensor *tg_tensor_to_dtype(const tg_tensor *t, tg_dtype dtype);

/* ---- printing ---- */

/* Prints like numpy: values (first and last 3 per dim with "..." beyond 1000
 * elements), then shape and dtype: tensor([[1, 2], [3, 4]], shape=[2, 2], dtype=f32). */
tg_status tg_tensor_print(const tg_tensor *t, FILE *out);
/* The same text in a malloc'd string the caller frees; NULL on error. */
char *tg_tensor_to_string(const tg_tensor *t);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
