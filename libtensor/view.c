/* libtensor/view.c -- raw views (reshape, permute, slice, ...) and the strided copy
 * and fill they make necessary.
 *
 * Views share storage and record nothing for autodiff. They are internal
 * (libtensor/tensor_impl.h): users get the differentiable views of ops/shape.c,
 * which share the stride logic here. Writes through the API bump the storage
 * version. */
#include <string.h>

#include "libtensor/tensor_impl.h"

/* Rows longer than this go to the OpenMP threads. */
#define PARALLEL_MIN_ELEMS (1 << 16)

/* Normalises dim (negative counts from the end) into 0..n-1; -1 when outside. */
static int norm_dim(int dim, int n)
{
    int d = dim < 0 ? dim + n : dim;
    return d >= 0 && d < n ? d : -1;
}

static tg_tensor *scoped_view(tg_tensor *t, int ndim, const int64_t *shape,
                              const int64_t *strides, int64_t offset)
{
    return tg_scoped(tg_tensor_view_owned(t, ndim, shape, strides, offset));
}

/* ---------------------------------------------------------------- reshape */

/* Walks t's dims from the innermost, grouping runs of dims that are laid out as
 * one evenly strided block (stride[d-1] == extent*stride[d]); the new dims must
 * tile each block exactly, taking strides from the block's innermost stride. */
bool tg_view_strides(const tg_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    if (tg_tensor_is_contiguous(t)) {
        tg_contiguous_strides(ndim, shape, strides);
        return true;
    }
    int nd = ndim - 1;        /* next new dim to assign, from the end */
    int64_t block = 1;        /* elements in the current old block */
    int64_t covered = 1;      /* elements the new dims assigned so far cover */
    int64_t base = t->strides[t->ndim - 1];
    for (int od = t->ndim - 1; od >= 0; od--) {
        block *= t->shape[od];
        bool block_ends = od == 0 ||
            (t->shape[od - 1] != 1 && t->strides[od - 1] != block * base);
        if (!block_ends)
            continue;
        while (nd >= 0 && (covered < block || shape[nd] == 1)) {
            strides[nd] = covered * base;
            covered *= shape[nd];
            nd--;
        }
        if (covered != block)
            return false;
        if (od > 0) {
            base = t->strides[od - 1];
            block = 1;
            covered = 1;
        }
    }
    return nd == -1;
}

tg_status tg_reshape_shape(const tg_tensor *t, int ndim, const int64_t *shape, int64_t *out)
{
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg_error_here(TG_ERR_SHAPE, "ndim %d is out of range 0..%d", ndim, TG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return tg_null_arg_here("shape");
    char a[160], b[160];
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
            out[i] = 1; /* for the overflow check below */
        } else if (shape[i] < 0) {
            return tg_error_here(TG_ERR_SHAPE, "invalid target shape %s: only one extent may "
                                 "be -1, the others must be >= 0",
                                 tg_shape_str(a, sizeof a, ndim, shape));
        }
    }
    /* bounds the product of the known extents, so it cannot overflow */
    tg_status st = tg_check_shape(ndim, out);
    if (st != TG_OK)
        return st;
    int64_t known = tg_shape_numel(ndim, out);
    int64_t numel = tg_shape_numel(t->ndim, t->shape);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return tg_error_here(TG_ERR_SHAPE, "cannot reshape %s (%lld elements) into %s",
                                 tg_shape_str(a, sizeof a, t->ndim, t->shape),
                                 (long long)numel, tg_shape_str(b, sizeof b, ndim, shape));
        out[infer] = numel / known;
    } else if (known != numel) {
        return tg_error_here(TG_ERR_SHAPE, "cannot reshape %s (%lld elements) into %s (%lld "
                             "elements)", tg_shape_str(a, sizeof a, t->ndim, t->shape),
                             (long long)numel, tg_shape_str(b, sizeof b, ndim, shape),
                             (long long)known);
    }
    return TG_OK;
}

/* A view of t with the target shape (scoped), or NULL; errors name the context,
 * which the public view function enters. */
static tg_tensor *reshape_as(tg_tensor *t, int ndim, const int64_t *shape)
{
    int64_t want[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    if (tg_reshape_shape(t, ndim, shape, want) != TG_OK)
        return NULL;
    if (!tg_view_strides(t, ndim, want, strides)) {
        char a[160], b[160];
        return tg_error_here(TG_ERR_SHAPE, "the strides of %s make a view of shape %s "
                             "impossible; use tg_tensor_contiguous first",
                             tg_shape_str(a, sizeof a, t->ndim, t->shape),
                             tg_shape_str(b, sizeof b, ndim, want)), NULL;
    }
    return scoped_view(t, ndim, want, strides, t->offset);
}

/* reshape_as inside the named context. */
static tg_tensor *reshape_named(const char *name, tg_tensor *t, int ndim, const int64_t *shape)
{
    const char *prev = tg_error_enter(name);
    tg_tensor *v = reshape_as(t, ndim, shape);
    tg_error_leave(prev);
    return v;
}

tg_tensor *tg_tensor_reshape(tg_tensor *t, int ndim, const int64_t *shape)
{
    if (!t)
        return tg_null_arg("tg_tensor_reshape", "t"), NULL;
    return reshape_named("tg_tensor_reshape", t, ndim, shape);
}

tg_tensor *tg_tensor_flatten(tg_tensor *t, int start_dim, int end_dim)
{
    if (!t)
        return tg_null_arg("tg_tensor_flatten", "t"), NULL;
    /* a scalar flattens to one element, like numpy's ravel */
    int n = t->ndim > 0 ? t->ndim : 1;
    int s = norm_dim(start_dim, n), e = norm_dim(end_dim, n);
    if (s < 0 || e < 0 || s > e)
        return tg_error(TG_ERR_RANGE, "tg_tensor_flatten: dims %d..%d are not a valid range "
                        "for a %d-d tensor", start_dim, end_dim, t->ndim), NULL;
    if (t->ndim == 0)
        return reshape_named("tg_tensor_flatten", t, 1, (const int64_t[]){1});
    int64_t shape[TG_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < s; i++)
        shape[k++] = t->shape[i];
    int64_t merged = 1;
    for (int i = s; i <= e; i++)
        merged *= t->shape[i];
    shape[k++] = merged;
    for (int i = e + 1; i < t->ndim; i++)
        shape[k++] = t->shape[i];
    return reshape_named("tg_tensor_flatten", t, k, shape);
}

/* ---------------------------------------------------------------- permutations */

tg_tensor *tg_tensor_permute(tg_tensor *t, const int *perm)
{
    if (!t)
        return tg_null_arg("tg_tensor_permute", "t"), NULL;
    if (!perm && t->ndim > 0)
        return tg_null_arg("tg_tensor_permute", "perm"), NULL;
    bool seen[TG_MAX_DIMS] = {false};
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int p = norm_dim(perm[i], t->ndim); /* -1 is the last dim, as in tg_permute */
        if (p < 0 || seen[p])
            return tg_error(TG_ERR_ARG, "tg_tensor_permute: entry %d (= %d) makes perm not a "
                            "permutation of 0..%d (negative entries count from the end)", i,
                            perm[i], t->ndim - 1), NULL;
        seen[p] = true;
        shape[i] = t->shape[p];
        strides[i] = t->strides[p];
    }
    return scoped_view(t, t->ndim, shape, strides, t->offset);
}

tg_tensor *tg_tensor_transpose(tg_tensor *t, int dim0, int dim1)
{
    if (!t)
        return tg_null_arg("tg_tensor_transpose", "t"), NULL;
    int a = norm_dim(dim0, t->ndim), b = norm_dim(dim1, t->ndim);
    if (a < 0 || b < 0)
        return tg_error(TG_ERR_RANGE, "tg_tensor_transpose: dims %d and %d are not both valid "
                        "for a %d-d tensor", dim0, dim1, t->ndim), NULL;
    int perm[TG_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return tg_tensor_permute(t, perm);
}

/* ---------------------------------------------------------------- slicing */

tg_tensor *tg_tensor_slice(tg_tensor *t, int dim, int64_t start, int64_t end)
{
    if (!t)
        return tg_null_arg("tg_tensor_slice", "t"), NULL;
    int d = norm_dim(dim, t->ndim);
    if (d < 0)
        return tg_error(TG_ERR_RANGE, "tg_tensor_slice: dim %d is out of range for a %d-d "
                        "tensor", dim, t->ndim), NULL;
    int64_t extent = t->shape[d];
    int64_t s = start < 0 ? start + extent : start;
    int64_t e = end < 0 ? end + extent : end;
    if (s < 0 || e > extent || s > e)
        return tg_error(TG_ERR_RANGE, "tg_tensor_slice: start %lld, end %lld are out of range "
                        "for dim %d of extent %lld", (long long)start, (long long)end, dim,
                        (long long)extent), NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = e - s;
    return scoped_view(t, t->ndim, shape, t->strides, t->offset + s * t->strides[d]);
}

tg_tensor *tg_tensor_squeeze(tg_tensor *t, int dim)
{
    if (!t)
        return tg_null_arg("tg_tensor_squeeze", "t"), NULL;
    int d = norm_dim(dim, t->ndim);
    if (d < 0)
        return tg_error(TG_ERR_RANGE, "tg_tensor_squeeze: dim %d is out of range for a %d-d "
                        "tensor", dim, t->ndim), NULL;
    if (t->shape[d] != 1) {
        char b[160];
        return tg_error(TG_ERR_SHAPE, "tg_tensor_squeeze: dim %d of shape %s has extent %lld, "
                        "not 1", dim, tg_shape_str(b, sizeof b, t->ndim, t->shape),
                        (long long)t->shape[d]), NULL;
    }
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d)
            continue;
        shape[k] = t->shape[i];
        strides[k++] = t->strides[i];
    }
    return scoped_view(t, k, shape, strides, t->offset);
}

tg_tensor *tg_tensor_unsqueeze(tg_tensor *t, int dim)
{
    if (!t)
        return tg_null_arg("tg_tensor_unsqueeze", "t"), NULL;
    int d = norm_dim(dim, t->ndim + 1);
    if (d < 0)
        return tg_error(TG_ERR_RANGE, "tg_tensor_unsqueeze: dim %d is out of range 0..%d",
                        dim, t->ndim), NULL;
    if (t->ndim >= TG_MAX_DIMS)
        return tg_error(TG_ERR_SHAPE, "tg_tensor_unsqueeze: a %d-d tensor cannot gain a dim "
                        "(at most %d)", t->ndim, TG_MAX_DIMS), NULL;
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    int k = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[k] = 1;
            /* keeps a contiguous tensor contiguous */
            strides[k++] = i < t->ndim ? t->strides[i] * t->shape[i] : 1;
        }
        if (i < t->ndim) {
            shape[k] = t->shape[i];
            strides[k++] = t->strides[i];
        }
    }
    return scoped_view(t, t->ndim + 1, shape, strides, t->offset);
}

/* ---------------------------------------------------------------- strided copy */

/* NULL when a pending layout failed to settle (the error is set). */
static char *elem_ptr(const tg_tensor *t)
{
    char *base = tg_storage_data(t->storage);
    return base ? base + t->offset * (int64_t)tg_dtype_size(t->dtype) : NULL;
}

/* Element offsets of the start of row r (all dims but the last) of t. */
static int64_t row_offset(const tg_tensor *t, int64_t r)
{
    int64_t off = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        off += (r % t->shape[d]) * t->strides[d];
        r /= t->shape[d];
    }
    return off;
}

/* Copies n elements of the same size es with element strides ds, ss. */
static void copy_row(char *dst, int64_t ds, const char *src, int64_t ss, int64_t n, size_t es)
{
    if (ds == 1 && ss == 1) {
        memmove(dst, src, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1:
        for (int64_t i = 0; i < n; i++)
            dst[i * ds] = src[i * ss];
        break;
    case 4: {
        uint32_t *d = (uint32_t *)dst;
        const uint32_t *s = (const uint32_t *)src;
        for (int64_t i = 0; i < n; i++)
            d[i * ds] = s[i * ss];
        break;
    }
    default: {
        uint64_t *d = (uint64_t *)dst;
        const uint64_t *s = (const uint64_t *)src;
        for (int64_t i = 0; i < n; i++)
            d[i * ds] = s[i * ss];
        break;
    }
    }
}

/* Whether a and b (equal shapes, one storage) address the same elements in the
 * same order. */
static bool same_view(const tg_tensor *a, const tg_tensor *b)
{
    if (a->offset != b->offset)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] > 1 && a->strides[d] != b->strides[d])
            return false;
    return true;
}

/* dst and src have equal shapes and do not overlap unless they are the same view
 * (tg_tensor_copy_into sees to it). */
static tg_status copy_strided(tg_tensor *dst, const tg_tensor *src)
{
    int64_t n = tg_shape_numel(dst->ndim, dst->shape);
    if (n == 0)
        return TG_OK;
    char *db = tg_storage_data(dst->storage);
    const char *sb = db ? tg_storage_data(src->storage) : NULL;
    if (!sb) /* a pending layout failed to settle */
        return tg_last_status();
    db += dst->offset * (int64_t)tg_dtype_size(dst->dtype);
    sb += src->offset * (int64_t)tg_dtype_size(src->dtype);
    if (tg_tensor_is_contiguous(dst) && tg_tensor_is_contiguous(src)) {
        tg_convert(db, dst->dtype, sb, src->dtype, n);
        return TG_OK;
    }
    /* not contiguous, so ndim >= 1 */
    int nd = dst->ndim;
    int64_t inner = dst->shape[nd - 1], rows = n / inner;
    int64_t dsi = dst->strides[nd - 1], ssi = src->strides[nd - 1];
    size_t des = tg_dtype_size(dst->dtype), ses = tg_dtype_size(src->dtype);
    bool same = dst->dtype == src->dtype;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS && rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        char *d = db + row_offset(dst, r) * (int64_t)des;
        const char *s = sb + row_offset(src, r) * (int64_t)ses;
        if (same) {
            copy_row(d, dsi, s, ssi, inner, des);
        } else if (dsi == 1 && ssi == 1) {
            tg_convert(d, dst->dtype, s, src->dtype, inner);
        } else {
            for (int64_t i = 0; i < inner; i++)
                tg_convert(d + i * dsi * (int64_t)des, dst->dtype,
                           s + i * ssi * (int64_t)ses, src->dtype, 1);
        }
    }
    return TG_OK;
}

tg_status tg_tensor_copy_into(tg_tensor *dst, const tg_tensor *src)
{
    if (!dst)
        return tg_null_arg("tg_tensor_copy_into", "dst");
    if (!src)
        return tg_null_arg("tg_tensor_copy_into", "src");
    if (tg_tensor_dead(dst))
        return tg_dead_arg("tg_tensor_copy_into", "dst", dst);
    if (tg_tensor_dead(src))
        return tg_dead_arg("tg_tensor_copy_into", "src", src);
    if (!tg_tensor_same_shape(dst, src)) {
        char a[160], b[160];
        return tg_error(TG_ERR_SHAPE, "tg_tensor_copy_into: dst shape %s differs from src "
                        "shape %s", tg_shape_str(a, sizeof a, dst->ndim, dst->shape),
                        tg_shape_str(b, sizeof b, src->ndim, src->shape));
    }
    if (dst->storage == src->storage && !same_view(dst, src)) {
        /* src and dst may overlap (a[1:] = a[:-1]): read src from a copy, as
         * numpy does, so the result is the old values of src, not a smear */
        tg_tensor *tmp = tg_tensor_new_named("tg_tensor_copy_into", src->dtype, src->ndim,
                                             src->shape);
        if (!tmp)
            return tg_last_status();
        tg_status rc = copy_strided(tmp, src);
        if (rc == TG_OK)
            rc = copy_strided(dst, tmp);
        tg_release(tmp);
        if (rc != TG_OK)
            return rc;
    } else {
        tg_status rc = copy_strided(dst, src);
        if (rc != TG_OK)
            return rc;
    }
    dst->storage->version = tg_version_next();
    return TG_OK;
}

tg_status tg_tensor_fill(tg_tensor *t, double value)
{
    if (!t)
        return tg_null_arg("tg_tensor_fill", "t");
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_tensor_fill", "t", t);
    int64_t n = tg_shape_numel(t->ndim, t->shape);
    t->storage->version = tg_version_next();
    if (n == 0)
        return TG_OK;
    uint64_t v = 0; /* the value in t's dtype, as raw bytes */
    tg_convert(&v, t->dtype, &value, TG_F64, 1);
    size_t es = tg_dtype_size(t->dtype);
    char *base = elem_ptr(t);
    if (!base) /* a pending layout failed to settle */
        return tg_last_status();
    int nd = t->ndim;
    int64_t inner = nd > 0 ? t->shape[nd - 1] : 1, rows = n / inner;
    int64_t si = nd > 0 ? t->strides[nd - 1] : 1;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS && rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        char *p = base + (nd > 0 ? row_offset(t, r) : 0) * (int64_t)es;
        switch (es) {
        case 1: {
            uint8_t b;
            memcpy(&b, &v, 1);
            for (int64_t i = 0; i < inner; i++)
                ((uint8_t *)p)[i * si] = b;
            break;
        }
        case 4: {
            uint32_t w;
            memcpy(&w, &v, 4);
            for (int64_t i = 0; i < inner; i++)
                ((uint32_t *)p)[i * si] = w;
            break;
        }
        default:
            for (int64_t i = 0; i < inner; i++)
                ((uint64_t *)p)[i * si] = v;
            break;
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- copies */

tg_tensor *tg_tensor_contiguous(tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_contiguous", "t"), NULL;
    if (tg_tensor_is_contiguous(t))
        return tg_scoped(tg_retain(t));
    return tg_tensor_copy(t);
}

/* A contiguous copy of t in dtype (new reference, unscoped), or NULL; errors
 * name the context, which the public function enters. */
static tg_tensor *copy_as(const tg_tensor *t, tg_dtype dtype)
{
    tg_tensor *c = tg_tensor_new_owned(dtype, t->ndim, t->shape);
    if (!c)
        return NULL;
    if (copy_strided(c, t) != TG_OK) { /* a pending layout failed to settle */
        tg_release(c);
        return NULL;
    }
    return c;
}

tg_tensor *tg_tensor_copy(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_copy", "t"), NULL;
    const char *prev = tg_error_enter("tg_tensor_copy");
    tg_tensor *c = copy_as(t, t->dtype);
    tg_error_leave(prev);
    return tg_scoped(c);
}

tg_tensor *tg_tensor_to_dtype(const tg_tensor *t, tg_dtype dtype)
{
    if (!t)
        return tg_null_arg("tg_tensor_to_dtype", "t"), NULL;
    const char *prev = tg_error_enter("tg_tensor_to_dtype");
    tg_tensor *c = copy_as(t, dtype);
    tg_error_leave(prev);
    return tg_scoped(c);
}
