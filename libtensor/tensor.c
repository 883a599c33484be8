/* libtensor/tensor.c -- the tensor and storage objects: construction, reference
 * counting, inspection, element access and dtype conversion.
 *
 * Reference counts are plain integers: a tensor is used by one thread at a time
 * (OpenMP loops inside an op touch data, never refcounts). The live counters are
 * atomic because different tensors may die on different threads. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor/layout_impl.h"

static _Atomic int64_t live_tensors;

/* ---------------------------------------------------------------- dtypes */

static const char *const dtype_names[TG_DTYPE_COUNT] = {"f32", "f64", "i32", "i64", "u8"};
static const size_t dtype_sizes[TG_DTYPE_COUNT] = {4, 8, 4, 8, 1};

static bool dtype_valid(tg_dtype dt)
{
    return (int)dt >= 0 && dt < TG_DTYPE_COUNT;
}

const char *tg_dtype_name(tg_dtype dtype)
{
    return dtype_valid(dtype) ? dtype_names[dtype] : "invalid";
}

size_t tg_dtype_size(tg_dtype dtype)
{
    return dtype_valid(dtype) ? dtype_sizes[dtype] : 0;
}

bool tg_dtype_is_float(tg_dtype dtype)
{
    return dtype == TG_F32 || dtype == TG_F64;
}

/* ---------------------------------------------------------------- shapes */

int64_t tg_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

void tg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        /* an empty dim would zero every outer stride; keep them meaningful */
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

char *tg_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    if (!buf || n == 0)
        return buf;
    size_t used = 0;
    buf[0] = '\0';
#define PUT(...) do { \
        if (used < n) { int k_ = snprintf(buf + used, n - used, __VA_ARGS__); \
            if (k_ > 0) used += (size_t)k_; } } while (0)
    PUT("[");
    for (int i = 0; shape && i < ndim; i++)
        PUT("%s%lld", i ? ", " : "", (long long)shape[i]);
    PUT("]");
#undef PUT
    return buf;
}

/* who names the caller in the messages: the error context (tg_check_shape), or a
 * name of this file's own. */
static tg_status check_shape(const char *who, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg_error(TG_ERR_SHAPE, "%s: ndim %d is out of range 0..%d", who, ndim,
                        TG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return tg_error(TG_ERR_ARG, "%s: argument 'shape' is NULL (ndim %d)", who, ndim);
    /* The product of the non-zero extents bounds numel and every stride (strides
     * skip empty dims), so bounding it keeps all later shape arithmetic exact,
     * even for an empty tensor like [0, 2^62, 2^62]; times 8 bytes it must fit in
     * both int64_t and size_t. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[160];
            return tg_error(TG_ERR_SHAPE, "%s: extent %lld of dim %d in shape %s is negative",
                            who, (long long)shape[i], i, tg_shape_str(b, sizeof b, ndim, shape));
        }
        if (shape[i] > 0 && n > (INT64_MAX / 8) / shape[i]) {
            char b[160];
            return tg_error(TG_ERR_SHAPE, "%s: shape %s has too many elements (the product "
                            "of its non-zero extents overflows)", who,
                            tg_shape_str(b, sizeof b, ndim, shape));
        }
        if (shape[i] > 0)
            n *= shape[i];
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- storage */

static tg_storage *storage_new(size_t nbytes)
{
    tg_storage *s = malloc(sizeof *s);
    if (!s) {
        tg_error(TG_ERR_NOMEM, "out of memory allocating a storage");
        return NULL;
    }
    s->data = tg_alloc_aligned(nbytes);
    if (!s->data) {
        free(s);
        return NULL;
    }
    s->refcount = 1;
    s->nbytes = nbytes;
    s->owns_data = true;
    s->version = tg_version_next();
    s->layout = NULL;
    tg_live_objects_add(1);
    return s;
}

static void storage_release(tg_storage *s)
{
    if (!s || --s->refcount > 0)
        return;
    tg_layout_discard(s);
    if (s->owns_data)
        tg_free_aligned(s->data, s->nbytes);
    free(s);
    tg_live_objects_add(-1);
}

/* ---------------------------------------------------------------- tensors */

static tg_tensor *header_new(tg_dtype dtype, int ndim, const int64_t *shape)
{
    tg_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        tg_error(TG_ERR_NOMEM, "out of memory allocating a tensor");
        return NULL;
    }
    t->magic = TG_TENSOR_LIVE;
    t->refcount = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim > 0)
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    tg_contiguous_strides(ndim, shape, t->strides);
    atomic_fetch_add(&live_tensors, 1);
    tg_live_objects_add(1);
    return t;
}

/* Debug mode's kept headers, linked through their grad field, so that they stay
 * reachable (a leak checker does not report them). Pushed from any thread. */
static _Atomic(tg_tensor *) quarantine;

/* Poisons the header; in debug mode keeps its memory (the quarantine: never
 * reused, so a later use of the handle is always seen as one). */
static void header_free(tg_tensor *t)
{
    t->magic = TG_TENSOR_DEAD;
    t->storage = NULL;
    t->grad = NULL;
    t->grad_fn = NULL;
    t->name = NULL;
    if (tg_debug_on()) {
        tg_tensor *head = atomic_load(&quarantine);
        do
            t->grad = head;
        while (!atomic_compare_exchange_weak(&quarantine, &head, t));
    } else {
        free(t);
    }
    atomic_fetch_sub(&live_tensors, 1);
    tg_live_objects_add(-1);
}

tg_status tg_dead_arg(const char *fn, const char *arg, const tg_tensor *t)
{
    tg_status st = tg_error(TG_ERR_STATE, "%s: argument '%s' is a tensor that was already "
                            "freed (%s); a tensor returned inside a scope dies when the "
                            "scope pops: keep a reference with tg_scope_keep to use it "
                            "later%s", fn, arg,
                            t->died_in_scope ? "its scope popped"
                                             : "its last reference was released",
                            tg_debug_on() ? "" : " (TG_DEBUG=1 catches every such use)");
    if (tg_debug_on())
        fprintf(stderr, "libtensor: %s\n", tg_last_error());
    return st;
}

tg_status tg_check_shape(int ndim, const int64_t *shape)
{
    return check_shape(tg_error_context(), ndim, shape);
}

tg_tensor *tg_tensor_new_owned(tg_dtype dtype, int ndim, const int64_t *shape)
{
    return tg_tensor_new_named(tg_error_context(), dtype, ndim, shape);
}

tg_tensor *tg_tensor_new_named(const char *who, tg_dtype dtype, int ndim,
                               const int64_t *shape)
{
    if (!who)
        who = "tg_tensor_new";
    if (!dtype_valid(dtype))
        return tg_error(TG_ERR_DTYPE, "%s: invalid dtype %d", who, (int)dtype), NULL;
    if (check_shape(who, ndim, shape) != TG_OK)
        return NULL;
    size_t nbytes = (size_t)tg_shape_numel(ndim, shape) * dtype_sizes[dtype];
    tg_tensor *t = header_new(dtype, ndim, shape);
    if (!t)
        return NULL;
    t->storage = storage_new(nbytes);
    if (!t->storage) {
        tg_error(TG_ERR_NOMEM, "%s: out of memory allocating %zu bytes", who, nbytes);
        header_free(t);
        return NULL;
    }
    return t;
}

tg_tensor *tg_tensor_view_owned(tg_tensor *t, int ndim, const int64_t *shape,
                                const int64_t *strides, int64_t offset)
{
    if (!t)
        return tg_null_arg("tg_tensor_view_owned", "t"), NULL;
    if (check_shape("tg_tensor_view_owned", ndim, shape) != TG_OK)
        return NULL;
    tg_tensor *v = header_new(t->dtype, ndim, shape);
    if (!v)
        return NULL;
    if (ndim > 0)
        memcpy(v->strides, strides, (size_t)ndim * sizeof *strides);
    v->offset = offset;
    v->storage = t->storage;
    v->storage->refcount++;
    return v;
}

tg_tensor *tg_wrap(tg_dtype dtype, int ndim, const int64_t *shape, void *data)
{
    if (!dtype_valid(dtype))
        return tg_error(TG_ERR_DTYPE, "tg_wrap: invalid dtype %d", (int)dtype), NULL;
    if (check_shape("tg_wrap", ndim, shape) != TG_OK)
        return NULL;
    int64_t numel = tg_shape_numel(ndim, shape);
    if (!data && numel > 0)
        return tg_null_arg("tg_wrap", "data"), NULL;
    tg_storage *s = malloc(sizeof *s);
    if (!s)
        return tg_error(TG_ERR_NOMEM, "tg_wrap: out of memory"), NULL;
    tg_tensor *t = header_new(dtype, ndim, shape);
    if (!t) {
        free(s);
        return NULL;
    }
    s->refcount = 1;
    s->data = data;
    s->nbytes = (size_t)numel * dtype_sizes[dtype];
    s->owns_data = false;
    s->version = tg_version_next();
    s->layout = NULL;
    tg_live_objects_add(1);
    t->storage = s;
    return tg_scoped(t);
}

tg_tensor *tg_retain(tg_tensor *t)
{
    if (t && tg_tensor_dead(t))
        return tg_dead_arg("tg_retain", "t", t), NULL;
    if (t)
        t->refcount++;
    return t;
}

void tg_release(tg_tensor *t)
{
    if (!t)
        return;
    if (tg_tensor_dead(t)) {
        tg_dead_arg("tg_release", "t", t);
        return;
    }
    if (__builtin_expect(t->refcount <= t->scope_refs, 0)) {
        /* every reference left is a scope's: this one is not the caller's */
        static _Atomic bool reported;
        char b[160];
        tg_error(TG_ERR_STATE, "tg_release: the tensor (%s %s%s%s) is owned by a scope, "
                 "which releases it when it pops; the result of an op or a creation "
                 "function called inside a scope is not the caller's to release (take a "
                 "reference with tg_scope_keep first). The release was ignored",
                 tg_shape_str(b, sizeof b, t->ndim, t->shape), dtype_names[t->dtype],
                 t->name ? " " : "", t->name ? t->name : "");
        tg_misuse_report(&reported, tg_last_error());
        return;
    }
    if (--t->refcount > 0)
        return;
    free(t->name);
    tg_release(t->grad);
    tg_refobj_release(t->grad_fn);
    storage_release(t->storage);
    header_free(t);
}

int64_t tg_live_tensors(void)
{
    return atomic_load(&live_tensors);
}

/* ---------------------------------------------------------------- inspection */

tg_dtype tg_tensor_dtype(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_dtype", "t"), TG_F32;
    return t->dtype;
}

int tg_tensor_ndim(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_ndim", "t"), -1;
    return t->ndim;
}

int64_t tg_tensor_dim(const tg_tensor *t, int dim)
{
    if (!t)
        return tg_null_arg("tg_tensor_dim", "t"), -1;
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim)
        return tg_error(TG_ERR_RANGE, "tg_tensor_dim: dim %d is out of range for a %d-d tensor",
                        dim, t->ndim), -1;
    return t->shape[d];
}

const int64_t *tg_tensor_shape(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_shape", "t"), NULL;
    return t->shape;
}

const int64_t *tg_tensor_strides(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_strides", "t"), NULL;
    return t->strides;
}

int64_t tg_tensor_offset(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_offset", "t"), -1;
    return t->offset;
}

int64_t tg_tensor_numel(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_numel", "t"), -1;
    return tg_shape_numel(t->ndim, t->shape);
}

size_t tg_tensor_nbytes(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_nbytes", "t"), 0;
    return (size_t)tg_shape_numel(t->ndim, t->shape) * dtype_sizes[t->dtype];
}

bool tg_tensor_is_contiguous(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_is_contiguous", "t"), false;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0)
            return true; /* no element to misplace */
        if (t->shape[i] == 1)
            continue;    /* the stride of an extent-1 dim is never used */
        if (t->strides[i] != expect)
            return false;
        expect *= t->shape[i];
    }
    return true;
}

bool tg_tensor_same_shape(const tg_tensor *a, const tg_tensor *b)
{
    if (!a || !b)
        return tg_null_arg("tg_tensor_same_shape", a ? "b" : "a"), false;
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

bool tg_tensor_shares_storage(const tg_tensor *a, const tg_tensor *b)
{
    if (!a || !b)
        return tg_null_arg("tg_tensor_shares_storage", a ? "b" : "a"), false;
    return a->storage == b->storage;
}

void *tg_tensor_ptr(const tg_tensor *t)
{
    void *data = tg_storage_data(t->storage);
    if (!data) /* a failed settle (error set), or an empty tg_wrap of NULL */
        return NULL;
    return (char *)data + t->offset * (int64_t)dtype_sizes[t->dtype];
}

void *tg_tensor_data(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_data", "t"), NULL;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_tensor_data", "t", t), NULL;
    void *data = tg_tensor_ptr(t);
    /* The caller may write through the pointer: from now on the contents are
     * not the ones caches (reordered weights) and recorded ops saw. The
     * storage is not part of the const tensor header. */
    if (data)
        t->storage->version = tg_version_next();
    return data;
}

const void *tg_tensor_data_ro(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_data_ro", "t"), NULL;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_tensor_data_ro", "t", t), NULL;
    return tg_tensor_ptr(t);
}

static _Atomic uint64_t version_clock = 1;

uint64_t tg_version_next(void)
{
    return atomic_fetch_add_explicit(&version_clock, 1, memory_order_relaxed);
}

uint64_t tg_tensor_version(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_version", "t"), 0;
    return t->storage->version;
}

void tg_tensor_bump_version(tg_tensor *t)
{
    if (!t) {
        tg_null_arg("tg_tensor_bump_version", "t");
        return;
    }
    t->storage->version = tg_version_next();
}

const char *tg_tensor_name(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_name", "t"), NULL;
    return t->name;
}

tg_status tg_tensor_set_name(tg_tensor *t, const char *name)
{
    if (!t)
        return tg_null_arg("tg_tensor_set_name", "t");
    char *copy = NULL;
    if (name) {
        copy = strdup(name);
        if (!copy)
            return tg_error(TG_ERR_NOMEM, "tg_tensor_set_name: out of memory");
    }
    free(t->name);
    t->name = copy;
    return TG_OK;
}

/* ---------------------------------------------------------------- elements */

/* Float -> integer conversions saturate (and map NaN to 0): a plain C cast of an
 * out-of-range double is undefined behaviour. */
static int32_t sat_i32(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 2147483647.0)
        return INT32_MAX;
    if (v <= -2147483648.0)
        return INT32_MIN;
    return (int32_t)v;
}

static int64_t sat_i64(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static uint8_t sat_u8(double v)
{
    if (!(v == v) || v <= 0)
        return 0;
    if (v >= 255)
        return 255;
    return (uint8_t)v;
}

static inline double load_elem(const char *p, tg_dtype dt)
{
    switch (dt) {
    case TG_F32: return *(const float *)p;
    case TG_F64: return *(const double *)p;
    case TG_I32: return *(const int32_t *)p;
    case TG_I64: return (double)*(const int64_t *)p;
    case TG_U8: return *(const uint8_t *)p;
    default: return NAN;
    }
}

static inline void store_elem(char *p, tg_dtype dt, double v)
{
    switch (dt) {
    case TG_F32: *(float *)p = (float)v; break;
    case TG_F64: *(double *)p = v; break;
    case TG_I32: *(int32_t *)p = sat_i32(v); break;
    case TG_I64: *(int64_t *)p = sat_i64(v); break;
    case TG_U8: *(uint8_t *)p = sat_u8(v); break;
    default: break;
    }
}

/* Offset in elements of the row-major logical index i. */
static int64_t flat_offset(const tg_tensor *t, int64_t i)
{
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t n = t->shape[d];
        off += (i % n) * t->strides[d];
        i /= n;
    }
    return off;
}

double tg_get_flat(const tg_tensor *t, int64_t i)
{
    const char *base = tg_storage_data(t->storage);
    if (!base)
        return NAN;
    return load_elem(base + flat_offset(t, i) * (int64_t)dtype_sizes[t->dtype], t->dtype);
}

tg_status tg_set_flat(tg_tensor *t, int64_t i, double v)
{
    char *base = tg_storage_data(t->storage);
    if (!base)
        return tg_last_status();
    store_elem(base + flat_offset(t, i) * (int64_t)dtype_sizes[t->dtype], t->dtype, v);
    return TG_OK;
}

/* One loop per (dst, src) pair so the compiler can vectorise the common ones. */
#define CONVERT_LOOP(DT, CONV)                                                     \
    do {                                                                           \
        DT *d_ = dst;                                                              \
        switch (st) {                                                              \
        case TG_F32: { const float *s_ = src;                                      \
            for (int64_t i = 0; i < n; i++) d_[i] = CONV((double)s_[i]); } break;  \
        case TG_F64: { const double *s_ = src;                                     \
            for (int64_t i = 0; i < n; i++) d_[i] = CONV(s_[i]); } break;          \
        case TG_I32: { const int32_t *s_ = src;                                    \
            for (int64_t i = 0; i < n; i++) d_[i] = CONV((double)s_[i]); } break;  \
        case TG_I64: { const int64_t *s_ = src;                                    \
            for (int64_t i = 0; i < n; i++) d_[i] = CONV((double)s_[i]); } break;  \
        case TG_U8: { const uint8_t *s_ = src;                                     \
            for (int64_t i = 0; i < n; i++) d_[i] = CONV((double)s_[i]); } break;  \
        default: break;                                                            \
        }                                                                          \
    } while (0)

#define TO_F32(v) ((float)(v))
#define TO_F64(v) (v)

void tg_convert(void *dst, tg_dtype dt, const void *src, tg_dtype st, int64_t n)
{
    if (n <= 0 || !dtype_valid(dt) || !dtype_valid(st))
        return;
    if (dt == st) {
        memmove(dst, src, (size_t)n * dtype_sizes[dt]);
        return;
    }
    switch (dt) {
    case TG_F32: CONVERT_LOOP(float, TO_F32); break;
    case TG_F64: CONVERT_LOOP(double, TO_F64); break;
    case TG_I32: CONVERT_LOOP(int32_t, sat_i32); break;
    case TG_I64:
        if (st == TG_I32) { /* exact without the detour through double */
            const int32_t *s = src;
            int64_t *d = dst;
            for (int64_t i = 0; i < n; i++)
                d[i] = s[i];
        } else {
            CONVERT_LOOP(int64_t, sat_i64);
        }
        break;
    case TG_U8: CONVERT_LOOP(uint8_t, sat_u8); break;
    default: break;
    }
}

double tg_item(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_item", "t"), NAN;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_item", "t", t), NAN;
    int64_t n = tg_shape_numel(t->ndim, t->shape);
    if (n != 1) {
        char b[160];
        return tg_error(TG_ERR_SHAPE, "tg_item: tensor of shape %s has %lld elements, not 1",
                        tg_shape_str(b, sizeof b, t->ndim, t->shape), (long long)n), NAN;
    }
    return tg_get_flat(t, 0);
}

float tg_item_f32(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_item_f32", "t"), NAN;
    return (float)tg_item(t);
}

/* Element offset of a full index, or -1 with an error naming `who`. who stays a
 * parameter: tg_get/tg_set are per-element calls, kept free of an enter/leave. */
static int64_t index_offset(const char *who, const tg_tensor *t, const int64_t *index)
{
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if (index[d] < 0 || index[d] >= t->shape[d]) {
            char b[160];
            tg_error(TG_ERR_RANGE, "%s: index %lld is out of range for dim %d of shape %s", who,
                     (long long)index[d], d, tg_shape_str(b, sizeof b, t->ndim, t->shape));
            return -1;
        }
        off += index[d] * t->strides[d];
    }
    return off;
}

double tg_get(const tg_tensor *t, const int64_t *index)
{
    if (!t)
        return tg_null_arg("tg_get", "t"), NAN;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_get", "t", t), NAN;
    if (!index && t->ndim > 0)
        return tg_null_arg("tg_get", "index"), NAN;
    int64_t off = index_offset("tg_get", t, index);
    const char *base = off < 0 ? NULL : tg_storage_data(t->storage);
    if (!base)
        return NAN;
    return load_elem(base + off * (int64_t)dtype_sizes[t->dtype], t->dtype);
}

tg_status tg_set(tg_tensor *t, const int64_t *index, double value)
{
    if (!t)
        return tg_null_arg("tg_set", "t");
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_set", "t", t);
    if (!index && t->ndim > 0)
        return tg_null_arg("tg_set", "index");
    int64_t off = index_offset("tg_set", t, index);
    char *base = off < 0 ? NULL : tg_storage_data(t->storage);
    if (!base)
        return tg_last_status();
    store_elem(base + off * (int64_t)dtype_sizes[t->dtype], t->dtype, value);
    t->storage->version = tg_version_next();
    return TG_OK;
}
