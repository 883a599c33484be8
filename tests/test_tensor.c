/* tests/test_tensor.c -- the libtensor/ layer: dtypes, creation, views, copies,
 * reference counting, scopes, errors, RNG, state dicts, printing and runtime.
 *
 * Uses the public API, plus the raw views that are internal to the library
 * (libtensor/tensor_impl.h): they hold the stride logic every view shares. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"
#include "libtensor/tensor_impl.h" /* the raw views tested here are internal */

static const tg_dtype all_dtypes[] = {TG_F32, TG_F64, TG_I32, TG_I64, TG_U8};
#define N_DTYPES ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

/* Element at row-major flat index i, through the public tg_get. */
static double at(const tg_tensor *t, int64_t i)
{
    int nd = tg_tensor_ndim(t);
    const int64_t *shape = tg_tensor_shape(t);
    int64_t idx[TG_MAX_DIMS];
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    return tg_get(t, idx);
}

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(tg_tensor_shape(t)[i], shape[i]);
}

static void assert_strides(const tg_tensor *t, int ndim, const int64_t *strides)
{
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(tg_tensor_strides(t)[i] == strides[i], "stride %d is %lld, expected %lld",
                      i, (long long)tg_tensor_strides(t)[i], (long long)strides[i]);
}

#define ASSERT_SHAPE(t, ...) assert_shape((t), TG_SHAPE(__VA_ARGS__))
#define ASSERT_STRIDES(t, ...) assert_strides((t), TG_SHAPE(__VA_ARGS__))

/* 0, 1, 2, ... as f32 in the given shape. */
static tg_tensor *iota(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return tg_tensor_reshape(tg_arange(TG_F32, 0, (double)n, 1), ndim, shape);
}
#define IOTA(...) iota(TG_SHAPE(__VA_ARGS__))

/* ================================================================ dtypes, errors */

START_TEST(test_dtypes)
{
    ck_assert_str_eq(tg_dtype_name(TG_F32), "f32");
    ck_assert_str_eq(tg_dtype_name(TG_F64), "f64");
    ck_assert_str_eq(tg_dtype_name(TG_I32), "i32");
    ck_assert_str_eq(tg_dtype_name(TG_I64), "i64");
    ck_assert_str_eq(tg_dtype_name(TG_U8), "u8");
    ck_assert_str_eq(tg_dtype_name(TG_DTYPE_COUNT), "invalid");
    ck_assert_str_eq(tg_dtype_name((tg_dtype)-1), "invalid");
    ck_assert_uint_eq(tg_dtype_size(TG_F32), 4);
    ck_assert_uint_eq(tg_dtype_size(TG_F64), 8);
    ck_assert_uint_eq(tg_dtype_size(TG_I32), 4);
    ck_assert_uint_eq(tg_dtype_size(TG_I64), 8);
    ck_assert_uint_eq(tg_dtype_size(TG_U8), 1);
    ck_assert_uint_eq(tg_dtype_size(TG_DTYPE_COUNT), 0);
    ck_assert(tg_dtype_is_float(TG_F32) && tg_dtype_is_float(TG_F64));
    ck_assert(!tg_dtype_is_float(TG_I32) && !tg_dtype_is_float(TG_I64) &&
              !tg_dtype_is_float(TG_U8));
    ck_assert_ptr_null(tg_empty(TG_DTYPE_COUNT, TG_SHAPE(2)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_empty");
}
END_TEST

START_TEST(test_error_state)
{
    ck_assert_str_eq(tg_last_error(), "no error");
    ck_assert_int_eq(tg_last_status(), TG_OK);
    for (int s = TG_ERR_UNSUPPORTED; s <= TG_OK; s++) {
        ck_assert_ptr_nonnull(tg_status_str((tg_status)s));
        ck_assert_str_ne(tg_status_str((tg_status)s), "unknown status");
    }
    ck_assert_str_eq(tg_status_str((tg_status)42), "unknown status");
    ck_assert_int_eq(tg_set_num_threads(0), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_set_num_threads");
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    tg_clear_error();
    ck_assert_str_eq(tg_last_error(), "no error");
    ck_assert_int_eq(tg_last_status(), TG_OK);
}
END_TEST

/* The error context internal helpers name (libtensor/tensor_impl.h): nests,
 * defaults to "libtensor", prefixes tg_error_here's messages. */
START_TEST(test_error_context)
{
    ck_assert_str_eq(tg_error_context(), "libtensor");
    tg_error_here(TG_ERR_ARG, "bad %d", 7);
    ck_assert_str_eq(tg_last_error(), "libtensor: bad 7");
    const char *p0 = tg_error_enter("tg_outer");
    ck_assert_ptr_null(p0);
    const char *p1 = tg_error_enter("tg_inner");
    ck_assert_str_eq(p1, "tg_outer");
    tg_error_here(TG_ERR_SHAPE, "shape %s", "[2, 3]");
    ck_assert_str_eq(tg_last_error(), "tg_inner: shape [2, 3]");
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    tg_error_leave(p1);
    /* the last error may be wrapped into a new one */
    tg_error_here(TG_ERR_IO, "wrapping (%s)", tg_last_error());
    ck_assert_str_eq(tg_last_error(), "tg_outer: wrapping (tg_inner: shape [2, 3])");
    tg_null_arg_here("x");
    ck_assert_str_eq(tg_last_error(), "tg_outer: argument 'x' is NULL (after an earlier "
                                      "failure: tg_outer: wrapping (tg_inner: shape [2, 3]))");
    tg_error_leave(p0);
    ck_assert_str_eq(tg_error_context(), "libtensor");
    /* a public function that fails through a helper names itself, and leaves */
    ck_assert_ptr_null(tg_zeros(TG_F32, 1, (const int64_t[]){-1}));
    TG_ASSERT_ERROR_HAS("tg_zeros");
    ck_assert_str_eq(tg_error_context(), "libtensor");
}
END_TEST

/* ================================================================ creation */

START_TEST(test_create_every_dtype)
{
    tg_scope *s = tg_scope_push();
    for (int k = 0; k < N_DTYPES; k++) {
        tg_dtype dt = all_dtypes[k];
        tg_tensor *z = tg_zeros(dt, TG_SHAPE(2, 3));
        tg_tensor *o = tg_ones(dt, TG_SHAPE(2, 3));
        tg_tensor *f = tg_full(dt, TG_SHAPE(3, 1, 2), 7);
        tg_tensor *e = tg_empty(dt, TG_SHAPE(4));
        TG_CHECK(z && o && f && e);
        ASSERT_SHAPE(z, 2, 3);
        ASSERT_SHAPE(f, 3, 1, 2);
        ck_assert_int_eq(tg_tensor_dtype(z), dt);
        ck_assert_int_eq(tg_tensor_numel(z), 6);
        ck_assert_uint_eq(tg_tensor_nbytes(z), 6 * tg_dtype_size(dt));
        ck_assert(tg_tensor_is_contiguous(z));
        ASSERT_STRIDES(f, 2, 2, 1);
        ck_assert_int_eq(tg_tensor_offset(z), 0);
        /* storage is 64-byte aligned */
        ck_assert_uint_eq((uintptr_t)tg_tensor_data(e) % 64, 0);
        for (int64_t i = 0; i < 6; i++) {
            ck_assert(at(z, i) == 0);
            ck_assert(at(o, i) == 1);
            ck_assert(at(f, i) == 7);
        }
        /* arange in every dtype */
        tg_tensor *a = tg_arange(dt, 2, 7, 1);
        ASSERT_SHAPE(a, 5);
        for (int64_t i = 0; i < 5; i++)
            ck_assert(at(a, i) == 2 + i);
    }
    /* fractional fills follow each dtype's conversion */
    TG_ASSERT_CLOSE(at(tg_full(TG_F32, TG_SHAPE(1), 2.5), 0), 2.5, 0, 0);
    ck_assert(at(tg_full(TG_I32, TG_SHAPE(1), 2.7), 0) == 2);
    ck_assert(at(tg_full(TG_U8, TG_SHAPE(1), 300), 0) == 255);
    ck_assert(at(tg_full(TG_U8, TG_SHAPE(1), -3), 0) == 0);
    ck_assert(at(tg_full(TG_I64, TG_SHAPE(1), -1e300), 0) == (double)INT64_MIN);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_scalar_tensors)
{
    tg_scope *s = tg_scope_push();
    for (int k = 0; k < N_DTYPES; k++) {
        tg_tensor *x = tg_full(all_dtypes[k], 0, NULL, 3);
        TG_CHECK(x);
        ck_assert_int_eq(tg_tensor_ndim(x), 0);
        ck_assert_int_eq(tg_tensor_numel(x), 1);
        ck_assert(tg_tensor_is_contiguous(x));
        ck_assert(tg_item(x) == 3);
        ck_assert(tg_get(x, NULL) == 3);
        TG_OK_(tg_set(x, NULL, 4));
        ck_assert(tg_item(x) == 4);
        tg_tensor *c = tg_tensor_to_dtype(x, TG_F64);
        ck_assert_int_eq(tg_tensor_ndim(c), 0);
        ck_assert(tg_item(c) == 4);
    }
    tg_tensor *x = tg_full(TG_F32, 0, NULL, 1.5);
    ck_assert(tg_item_f32(x) == 1.5f);
    tg_tensor *r = tg_tensor_reshape(x, TG_SHAPE(1, 1));
    ASSERT_SHAPE(r, 1, 1);
    ck_assert(tg_tensor_shares_storage(r, x));
    tg_tensor *back = tg_tensor_reshape(r, 0, NULL);
    ck_assert_int_eq(tg_tensor_ndim(back), 0);
    tg_tensor *u = tg_tensor_unsqueeze(x, 0);
    ASSERT_SHAPE(u, 1);
    tg_tensor *fl = tg_tensor_flatten(x, 0, -1);
    ASSERT_SHAPE(fl, 1);
    ck_assert(tg_tensor_is_contiguous(tg_tensor_contiguous(x)));
    tg_tensor *cp = tg_tensor_copy(x);
    ck_assert(tg_item(cp) == 1.5 && !tg_tensor_shares_storage(cp, x));
    TG_OK_(tg_tensor_fill(cp, -2));
    ck_assert(tg_item(cp) == -2);
    TG_OK_(tg_tensor_copy_into(cp, x));
    ck_assert(tg_item(cp) == 1.5);
    ck_assert_ptr_null(tg_tensor_squeeze(x, 0));
    TG_ASSERT_ERROR_HAS("tg_tensor_squeeze");
    ck_assert_ptr_null(tg_tensor_slice(x, 0, 0, 1));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    /* a from_data scalar */
    double v = 9.25;
    tg_tensor *d = tg_from_data(TG_F64, 0, NULL, &v);
    ck_assert(tg_item(d) == 9.25);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_empty_extents)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *e = tg_zeros(TG_F32, TG_SHAPE(0, 3));
    TG_CHECK(e);
    ck_assert_int_eq(tg_tensor_numel(e), 0);
    ck_assert_uint_eq(tg_tensor_nbytes(e), 0);
    ck_assert_ptr_nonnull(tg_tensor_data(e));
    ck_assert(tg_tensor_is_contiguous(e));
    tg_tensor *r = tg_tensor_reshape(e, TG_SHAPE(3, 0, 5));
    ASSERT_SHAPE(r, 3, 0, 5);
    ck_assert(tg_tensor_numel(tg_tensor_copy(tg_tensor_transpose(e, 0, 1))) == 0);
    /* -1 cannot be inferred next to a zero extent */
    ck_assert_ptr_null(tg_tensor_reshape(e, TG_SHAPE(0, -1)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_nonnull(tg_arange(TG_F32, 5, 5, 1));
    ck_assert_int_eq(tg_tensor_numel(tg_arange(TG_F32, 5, 0, 1)), 0);
    /* an empty tensor's other extents still bound its strides: their product must
     * not overflow (it did, silently, before the check covered non-zero extents) */
    const int64_t big = INT64_C(1) << 62;
    ck_assert_ptr_null(tg_zeros(TG_F32, TG_SHAPE(0, big, big)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_zeros: shape [0, 4611686018427387904, 4611686018427387904] has "
                        "too many elements");
    ck_assert_ptr_null(tg_tensor_reshape(e, TG_SHAPE(big, big, 0)));
    TG_ASSERT_ERROR_HAS("tg_tensor_reshape");
    ck_assert_ptr_null(tg_tensor_reshape(e, TG_SHAPE(0, big, big)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_null(tg_tensor_reshape(tg_zeros(TG_F32, TG_SHAPE(6)), TG_SHAPE(big, big, -1)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    /* a huge empty tensor is fine, and prints as [] without walking its dims */
    tg_tensor *h = tg_zeros(TG_F64, TG_SHAPE(big / 8, 0));
    TG_CHECK(h);
    char *txt = tg_tensor_to_string(h);
    ck_assert_str_eq(txt, "tensor([], shape=[576460752303423488, 0], dtype=f64)");
    free(txt);
    txt = tg_tensor_to_string(tg_zeros(TG_I64, TG_SHAPE(2, 0, 3)));
    ck_assert_str_eq(txt, "tensor([], shape=[2, 0, 3], dtype=i64)");
    free(txt);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_arange)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_arange(TG_F64, 0, 1, 0.3);
    ASSERT_SHAPE(a, 4);
    TG_ASSERT_CLOSE(at(a, 3), 0.9, 1e-12, 0);
    tg_tensor *b = tg_arange(TG_I32, 5, -5, -2);
    ASSERT_SHAPE(b, 5);
    ck_assert(at(b, 0) == 5 && at(b, 4) == -3);
    ck_assert_ptr_null(tg_arange(TG_F32, 0, 1, 0));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_arange");
    ck_assert_ptr_null(tg_arange(TG_F32, 0, INFINITY, 1));
    TG_ASSERT_ERROR_HAS("tg_arange");
    TG_OK_(tg_scope_pop(s));
}
END_TEST

/* The typed variants of tg_from_data: the dtype comes from the pointer type
 * (the compiler checks it), the values are copied exactly, and errors name
 * the function called. */
START_TEST(test_typed_constructors)
{
    tg_scope *s = tg_scope_push();
    const float f[3] = {1.5f, -2.0f, 3.25f};
    const double d[3] = {0.1, -1e300, 7};
    const int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
    const int64_t i64[3] = {INT64_MIN, 42, INT64_MAX};
    const uint8_t u8[3] = {0, 128, 255};
    tg_tensor *t[5] = {tg_from_f32(TG_SHAPE(3), f), tg_from_f64(TG_SHAPE(3), d),
                       tg_from_i32(TG_SHAPE(3), i32), tg_from_i64(TG_SHAPE(1, 3), i64),
                       tg_from_u8(TG_SHAPE(3, 1), u8)};
    static const tg_dtype dt[5] = {TG_F32, TG_F64, TG_I32, TG_I64, TG_U8};
    const void *src[5] = {f, d, i32, i64, u8};
    for (int k = 0; k < 5; k++) {
        TG_CHECK(t[k] != NULL);
        ck_assert_int_eq(tg_tensor_dtype(t[k]), dt[k]);
        ck_assert_int_eq(tg_tensor_numel(t[k]), 3);
        ck_assert_ptr_ne(tg_tensor_data_ro(t[k]), src[k]); /* a copy */
        ck_assert(memcmp(tg_tensor_data_ro(t[k]), src[k], 3 * tg_dtype_size(dt[k])) == 0);
    }
    ck_assert(tg_tensor_dtype(tg_from_f32(0, NULL, f)) == TG_F32); /* 0-d: one element */
    ck_assert_ptr_null(tg_from_f64(TG_SHAPE(3), NULL));
    TG_ASSERT_ERROR_HAS("tg_from_f64");
    TG_ASSERT_ERROR_HAS("'data'");
    ck_assert_ptr_null(tg_from_u8(TG_SHAPE(2, -1), u8));
    TG_ASSERT_ERROR_HAS("tg_from_u8: extent -1");
    ck_assert_ptr_nonnull(tg_from_i32(TG_SHAPE(0), NULL)); /* nothing to read */
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_from_data_and_wrap)
{
    tg_scope *s = tg_scope_push();
    float buf[6] = {1, 2, 3, 4, 5, 6};
    tg_tensor *c = tg_from_data(TG_F32, TG_SHAPE(2, 3), buf);
    tg_tensor *w = tg_wrap(TG_F32, TG_SHAPE(3, 2), buf);
    TG_CHECK(c && w);
    ck_assert_ptr_ne(tg_tensor_data(c), buf);
    ck_assert_ptr_eq(tg_tensor_data(w), buf);
    buf[0] = 100;
    ck_assert(at(c, 0) == 1);   /* copied */
    ck_assert(at(w, 0) == 100); /* shared */
    uint64_t v0 = tg_tensor_version(w);
    TG_OK_(tg_set(w, (const int64_t[]){2, 1}, -1));
    ck_assert(buf[5] == -1);
    ck_assert_uint_gt(tg_tensor_version(w), v0);
    /* a view of a wrapped buffer, outliving nothing of the caller's */
    tg_tensor *wt = tg_tensor_transpose(w, 0, 1);
    ck_assert(at(wt, 1) == 3);
    int32_t ints[4] = {-1, 0, 7, 1 << 30};
    tg_tensor *ci = tg_from_data(TG_I32, TG_SHAPE(4), ints);
    ck_assert(at(ci, 3) == (double)(1 << 30));
    /* NULL data is an error unless there is nothing to copy */
    ck_assert_ptr_null(tg_from_data(TG_F32, TG_SHAPE(2), NULL));
    TG_ASSERT_ERROR_HAS("tg_from_data");
    ck_assert_ptr_null(tg_wrap(TG_F32, TG_SHAPE(2), NULL));
    TG_ASSERT_ERROR_HAS("tg_wrap");
    ck_assert_ptr_nonnull(tg_from_data(TG_F32, TG_SHAPE(0), NULL));
    tg_tensor *wn = tg_wrap(TG_F32, TG_SHAPE(2, 0), NULL);
    TG_CHECK(wn);
    ck_assert_ptr_null(tg_tensor_data(wn));
    ck_assert_int_eq(tg_tensor_numel(tg_tensor_copy(tg_tensor_transpose(wn, 0, 1))), 0);
    TG_OK_(tg_tensor_fill(wn, 1));
    char *txt = tg_tensor_to_string(wn);
    ck_assert_str_eq(txt, "tensor([], shape=[2, 0], dtype=f32)"); /* as numpy prints it */
    free(txt);
    TG_OK_(tg_scope_pop(s));
    ck_assert(buf[0] == 100); /* the caller's buffer survives its tensors */
}
END_TEST

START_TEST(test_shape_validation)
{
    ck_assert_ptr_null(tg_zeros(TG_F32, -1, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_zeros");
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ck_assert_ptr_null(tg_ones(TG_F32, 9, nine));
    TG_ASSERT_ERROR_HAS("tg_ones");
    ck_assert_ptr_null(tg_empty(TG_F32, TG_SHAPE(2, -3)));
    TG_ASSERT_ERROR_HAS("-3");
    ck_assert_ptr_null(tg_empty(TG_F32, TG_SHAPE(INT64_MAX / 2, 4)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("too many");
    ck_assert_ptr_null(tg_full(TG_F32, 2, NULL, 1));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    /* each creation function names itself, whole, and leaves no context behind */
    ck_assert_str_eq(tg_last_error(), "tg_full: argument 'shape' is NULL (ndim 2)");
    ck_assert_ptr_null(tg_ones((tg_dtype)99, TG_SHAPE(2)));
    ck_assert_str_eq(tg_last_error(), "tg_ones: invalid dtype 99");
    ck_assert_ptr_null(tg_zeros(TG_F64, TG_SHAPE(2, -3)));
    ck_assert_str_eq(tg_last_error(), "tg_zeros: extent -3 of dim 1 in shape [2, -3] is negative");
    ck_assert_ptr_null(tg_rand_normal(TG_F32, TG_SHAPE(-1), 0, 1, NULL));
    ck_assert_str_eq(tg_last_error(),
                     "tg_rand_normal: extent -1 of dim 0 in shape [-1] is negative");
    ck_assert_str_eq(tg_error_context(), "libtensor");
    /* the maximum rank works */
    tg_scope *s = tg_scope_push();
    int64_t eight[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    tg_tensor *t = tg_zeros(TG_F64, 8, eight);
    TG_CHECK(t);
    ck_assert_int_eq(tg_tensor_numel(t), 16);
    ck_assert_ptr_null(tg_tensor_unsqueeze(t, 0));
    TG_ASSERT_ERROR_HAS("tg_tensor_unsqueeze");
    char buf[64];
    ck_assert_str_eq(tg_shape_str(buf, sizeof buf, TG_SHAPE(2, 3)), "[2, 3]");
    ck_assert_str_eq(tg_shape_str(buf, sizeof buf, 0, NULL), "[]");
    ck_assert_str_eq(tg_shape_str(buf, 4, TG_SHAPE(123, 4)), "[12"); /* truncated, terminated */
    ck_assert_int_eq(tg_tensor_dim(t, -1), 2);
    ck_assert_int_eq(tg_tensor_dim(t, 0), 1);
    ck_assert_int_eq(tg_tensor_dim(t, 8), -1);
    TG_ASSERT_ERROR_HAS("tg_tensor_dim");
    TG_OK_(tg_scope_pop(s));
}
END_TEST

/* ================================================================ views */

START_TEST(test_views_share_storage)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(2, 3, 4);
    tg_tensor *r = tg_tensor_reshape(base, TG_SHAPE(6, 4));
    tg_tensor *p = tg_tensor_permute(base, (const int[]){2, 0, 1});
    tg_tensor *n = tg_tensor_slice(base, 1, 1, 3);
    tg_tensor *u = tg_tensor_unsqueeze(base, 1);
    tg_tensor *f = tg_tensor_flatten(base, 1, 2);
    TG_CHECK(r && p && n && u && f);
    ck_assert(tg_tensor_shares_storage(base, r) && tg_tensor_shares_storage(base, p) &&
              tg_tensor_shares_storage(base, n) && tg_tensor_shares_storage(base, u) &&
              tg_tensor_shares_storage(base, f));
    uint64_t v0 = tg_tensor_version(base);
    /* writes through each view land in base */
    TG_OK_(tg_set(r, (const int64_t[]){5, 3}, -1));
    ck_assert(at(base, 23) == -1);
    TG_OK_(tg_set(p, (const int64_t[]){3, 1, 2}, -2)); /* base[1][2][3] */
    ck_assert(tg_get(base, (const int64_t[]){1, 2, 3}) == -2);
    TG_OK_(tg_set(n, (const int64_t[]){0, 0, 0}, -3)); /* base[0][1][0] */
    ck_assert(at(base, 4) == -3);
    TG_OK_(tg_tensor_fill(n, 9));
    ck_assert(at(base, 3) == 3 && at(base, 4) == 9 && at(base, 11) == 9 && at(base, 12) == 12);
    ck_assert(at(base, 16) == 9 && at(base, 20) == 9);
    ck_assert_uint_gt(tg_tensor_version(base), v0);
    ck_assert_uint_eq(tg_tensor_version(base), tg_tensor_version(p));
    uint64_t v1 = tg_tensor_version(base);
    tg_tensor_bump_version(base);
    ck_assert_uint_eq(tg_tensor_version(n), v1 + 1);
    /* data pointer of a narrowed view is offset into the same buffer */
    ck_assert_int_eq(tg_tensor_offset(n), 4);
    ck_assert_ptr_eq(tg_tensor_data(n), (float *)tg_tensor_data(base) + 4);
    ASSERT_SHAPE(f, 2, 12);
    ASSERT_SHAPE(u, 2, 1, 3, 4);
    ck_assert(tg_tensor_is_contiguous(u));
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_permute_transpose_strides)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(2, 3, 4);
    ASSERT_STRIDES(base, 12, 4, 1);
    tg_tensor *p = tg_tensor_permute(base, (const int[]){2, 0, 1});
    ASSERT_SHAPE(p, 4, 2, 3);
    ASSERT_STRIDES(p, 1, 12, 4);
    ck_assert(!tg_tensor_is_contiguous(p));
    ck_assert(tg_get(p, (const int64_t[]){3, 1, 2}) == 1 * 12 + 2 * 4 + 3);
    tg_tensor *t = tg_tensor_transpose(base, 0, -1);
    ASSERT_SHAPE(t, 4, 3, 2);
    ASSERT_STRIDES(t, 1, 4, 12);
    tg_tensor *tt = tg_tensor_transpose(t, 0, 2);
    ASSERT_STRIDES(tt, 12, 4, 1);
    ck_assert(tg_tensor_is_contiguous(tt));
    tg_tensor *same = tg_tensor_transpose(base, 1, 1);
    ASSERT_STRIDES(same, 12, 4, 1);
    /* bad permutations */
    ck_assert_ptr_null(tg_tensor_permute(base, (const int[]){0, 0, 1}));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_tensor_permute");
    ck_assert_ptr_null(tg_tensor_permute(base, (const int[]){0, 1, 3}));
    ck_assert_ptr_null(tg_tensor_permute(base, (const int[]){-4, 0, 1}));
    ck_assert_ptr_null(tg_tensor_permute(base, (const int[]){-1, 0, 2})); /* -1 is 2 */
    /* negative entries count from the end, as in tg_permute */
    tg_tensor *pn = tg_tensor_permute(base, (const int[]){-1, 0, -2});
    ASSERT_SHAPE(pn, 4, 2, 3);
    ASSERT_STRIDES(pn, 1, 12, 4);
    ck_assert_ptr_null(tg_tensor_permute(base, NULL));
    ck_assert_ptr_null(tg_tensor_transpose(base, 0, 3));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("tg_tensor_transpose");
    /* an extent-1 dim does not spoil contiguity, whatever its stride */
    tg_tensor *one = IOTA(3, 1, 4);
    ck_assert(tg_tensor_is_contiguous(tg_tensor_permute(one, (const int[]){1, 0, 2})));
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_reshape_inference)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(2, 3, 4);
    ASSERT_SHAPE(tg_tensor_reshape(base, TG_SHAPE(-1)), 24);
    ASSERT_SHAPE(tg_tensor_reshape(base, TG_SHAPE(4, -1)), 4, 6);
    ASSERT_SHAPE(tg_tensor_reshape(base, TG_SHAPE(2, -1, 3)), 2, 4, 3);
    tg_tensor *r = tg_tensor_reshape(base, TG_SHAPE(3, 8));
    ASSERT_STRIDES(r, 8, 1);
    ck_assert(at(r, 17) == 17);
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(5, -1)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_tensor_reshape");
    TG_ASSERT_ERROR_HAS("[2, 3, 4]");
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(-1, -1)));
    TG_ASSERT_ERROR_HAS("only one");
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(5, 5)));
    TG_ASSERT_ERROR_HAS("25 elements");
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(-2, -12)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_null(tg_tensor_reshape(base, 9, (const int64_t[9]){24, 1, 1, 1, 1, 1, 1, 1, 1}));
    ck_assert_ptr_null(tg_tensor_reshape(base, 2, NULL));
    TG_ASSERT_ERROR_HAS("shape");
    /* flatten */
    ASSERT_SHAPE(tg_tensor_flatten(base, 0, -1), 24);
    ASSERT_SHAPE(tg_tensor_flatten(base, 0, 1), 6, 4);
    ASSERT_SHAPE(tg_tensor_flatten(base, -2, -1), 2, 12);
    ASSERT_SHAPE(tg_tensor_flatten(base, 1, 1), 2, 3, 4);
    ck_assert_ptr_null(tg_tensor_flatten(base, 2, 1));
    TG_ASSERT_ERROR_HAS("tg_tensor_flatten");
    ck_assert_ptr_null(tg_tensor_flatten(base, 0, 3));
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_reshape_non_contiguous)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(2, 3, 4);
    /* (2,4,3) with strides (12,1,4): the last two dims are interleaved */
    tg_tensor *t = tg_tensor_transpose(base, 1, 2);
    ck_assert_ptr_null(tg_tensor_reshape(t, TG_SHAPE(2, 12)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_tensor_contiguous");
    ck_assert_str_eq(tg_last_error(), "tg_tensor_reshape: the strides of [2, 4, 3] make a view "
                     "of shape [2, 12] impossible; use tg_tensor_contiguous first");
    ck_assert_ptr_null(tg_tensor_flatten(t, 0, -1));
    TG_ASSERT_ERROR_HAS("tg_tensor_contiguous");
    ck_assert_str_eq(tg_last_error(), "tg_tensor_flatten: the strides of [2, 4, 3] make a view "
                     "of shape [24] impossible; use tg_tensor_contiguous first");
    /* the target-shape checks, whole */
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(5, 5)));
    ck_assert_str_eq(tg_last_error(), "tg_tensor_reshape: cannot reshape [2, 3, 4] (24 elements) "
                     "into [5, 5] (25 elements)");
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(-1, 5)));
    ck_assert_str_eq(tg_last_error(),
                     "tg_tensor_reshape: cannot reshape [2, 3, 4] (24 elements) into [-1, 5]");
    ck_assert_ptr_null(tg_tensor_reshape(base, TG_SHAPE(-1, -2)));
    ck_assert_str_eq(tg_last_error(), "tg_tensor_reshape: invalid target shape [-1, -2]: only "
                     "one extent may be -1, the others must be >= 0");
    tg_clear_error();
    ck_assert_ptr_null(tg_tensor_reshape(base, 2, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_tensor_reshape: argument 'shape' is NULL");
    ck_assert_ptr_null(tg_tensor_reshape(base, 9, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_tensor_reshape: ndim 9 is out of range 0..8");
    /* splitting a dim and merging compatible dims still views */
    tg_tensor *v = tg_tensor_reshape(t, TG_SHAPE(2, 2, 2, 3));
    TG_CHECK(v);
    ck_assert(tg_tensor_shares_storage(v, base));
    ASSERT_STRIDES(v, 12, 2, 1, 4);
    for (int64_t i = 0; i < 24; i++)
        ck_assert(at(v, i) == at(t, i));
    /* merging (2 @12) with (4 @1) into one dim is impossible */
    ck_assert_ptr_null(tg_tensor_reshape(t, TG_SHAPE(8, 3)));
    /* permute (4,2,3) strides (1,12,4): dims 1 and 2 form one block of 6 */
    tg_tensor *p = tg_tensor_permute(base, (const int[]){2, 0, 1});
    tg_tensor *q = tg_tensor_reshape(p, TG_SHAPE(4, 6));
    TG_CHECK(q);
    ASSERT_STRIDES(q, 1, 4);
    for (int64_t i = 0; i < 24; i++)
        ck_assert(at(q, i) == at(p, i));
    /* a narrowed tensor reshapes within its rows */
    tg_tensor *n = tg_tensor_slice(IOTA(4, 6), 1, 0, 4); /* (4,4) strides (6,1) */
    tg_tensor *nv = tg_tensor_reshape(n, TG_SHAPE(4, 2, 2));
    TG_CHECK(nv);
    ASSERT_STRIDES(nv, 6, 2, 1);
    ck_assert_ptr_null(tg_tensor_reshape(n, TG_SHAPE(16)));
    /* a view with extent-1 dims of odd strides */
    tg_tensor *c = tg_tensor_contiguous(t);
    ck_assert(!tg_tensor_shares_storage(c, t));
    tg_tensor *cr = tg_tensor_reshape(c, TG_SHAPE(2, 12));
    for (int64_t i = 0; i < 24; i++)
        ck_assert(at(cr, i) == at(t, i));
    TG_OK_(tg_scope_pop(s));
}
END_TEST

/* Random views reshaped into random factorizations: whenever a view comes back
 * it must read exactly what a reshape of the contiguous copy reads. */
START_TEST(test_reshape_random_views)
{
    tg_rng r;
    tg_rng_seed(&r, 99);
    int viewed = 0, refused = 0;
    for (int trial = 0; trial < 300; trial++) {
        tg_scope *s = tg_scope_push();
        int nd = 1 + (int)tg_rng_below(&r, 4);
        int64_t shape[4];
        for (int i = 0; i < nd; i++)
            shape[i] = 1 + (int64_t)tg_rng_below(&r, 4);
        tg_tensor *t = iota(nd, shape);
        /* a random permutation, then maybe a narrow */
        int perm[4] = {0, 1, 2, 3};
        for (int i = nd - 1; i > 0; i--) {
            int j = (int)tg_rng_below(&r, (uint64_t)i + 1), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        t = tg_tensor_permute(t, perm);
        int d = (int)tg_rng_below(&r, (uint64_t)nd);
        if (tg_tensor_dim(t, d) > 1 && tg_rng_below(&r, 2))
            t = tg_tensor_slice(t, d, 1, tg_tensor_dim(t, d));
        /* a random target shape with the same number of elements */
        int64_t n = tg_tensor_numel(t), left = n, target[6];
        int tn = 0;
        while (tn < 5) {
            int64_t f = 1 + (int64_t)tg_rng_below(&r, 4);
            if (left % f != 0)
                f = 1;
            target[tn++] = f;
            left /= f;
            if (tg_rng_below(&r, 3) == 0)
                break;
        }
        target[tn++] = left;
        tg_tensor *v = tg_tensor_reshape(t, tn, target);
        tg_tensor *ref = tg_tensor_reshape(tg_tensor_contiguous(t), tn, target);
        TG_CHECK(ref);
        if (v) {
            viewed++;
            ck_assert(tg_tensor_shares_storage(v, t));
            for (int64_t i = 0; i < n; i++)
                ck_assert_msg(at(v, i) == at(ref, i), "trial %d element %lld", trial,
                              (long long)i);
        } else {
            refused++;
            ck_assert(!tg_tensor_is_contiguous(t));
            TG_ASSERT_ERROR_HAS("tg_tensor_contiguous");
        }
        TG_OK_(tg_scope_pop(s));
    }
    ck_assert(viewed > 50 && refused > 10);
}
END_TEST

START_TEST(test_narrow)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(3, 5);
    tg_tensor *n = tg_tensor_slice(base, 1, 1, 4);
    ASSERT_SHAPE(n, 3, 3);
    ASSERT_STRIDES(n, 5, 1);
    ck_assert(at(n, 0) == 1 && at(n, 8) == 13);
    ck_assert(!tg_tensor_is_contiguous(n));
    tg_tensor *neg = tg_tensor_slice(base, -1, -3, -1); /* columns 2..3 */
    ASSERT_SHAPE(neg, 3, 2);
    ck_assert(at(neg, 0) == 2 && at(neg, 5) == 13);
    tg_tensor *rows = tg_tensor_slice(base, 0, 1, 3);
    ck_assert(tg_tensor_is_contiguous(rows));
    ck_assert(at(rows, 0) == 5);
    ASSERT_SHAPE(tg_tensor_slice(base, 0, 2, 2), 0, 5);
    ASSERT_SHAPE(tg_tensor_slice(base, 1, 0, 5), 3, 5);
    /* errors name the function, dim, start, end and extent */
    ck_assert_ptr_null(tg_tensor_slice(base, 1, 2, 6));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("tg_tensor_slice");
    TG_ASSERT_ERROR_HAS("start 2");
    TG_ASSERT_ERROR_HAS("end 6");
    TG_ASSERT_ERROR_HAS("dim 1");
    TG_ASSERT_ERROR_HAS("extent 5");
    ck_assert_ptr_null(tg_tensor_slice(base, 1, 4, 2));
    ck_assert_ptr_null(tg_tensor_slice(base, 1, -6, 2));
    ck_assert_ptr_null(tg_tensor_slice(base, 2, 0, 1));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    /* narrowing a narrowed view composes the offsets */
    tg_tensor *nn = tg_tensor_slice(tg_tensor_slice(base, 0, 1, 3), 1, 2, 4);
    ck_assert_int_eq(tg_tensor_offset(nn), 7);
    ck_assert(at(nn, 3) == 13);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_squeeze_unsqueeze)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(2, 1, 3);
    tg_tensor *q = tg_tensor_squeeze(base, 1);
    ASSERT_SHAPE(q, 2, 3);
    ASSERT_STRIDES(q, 3, 1);
    ASSERT_SHAPE(tg_tensor_squeeze(base, -2), 2, 3);
    ck_assert_ptr_null(tg_tensor_squeeze(base, 0));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_tensor_squeeze");
    TG_ASSERT_ERROR_HAS("not 1");
    ck_assert_ptr_null(tg_tensor_squeeze(base, 3));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    tg_tensor *u0 = tg_tensor_unsqueeze(q, 0);
    ASSERT_SHAPE(u0, 1, 2, 3);
    ck_assert(tg_tensor_is_contiguous(u0));
    ASSERT_SHAPE(tg_tensor_unsqueeze(q, 2), 2, 3, 1);
    ASSERT_SHAPE(tg_tensor_unsqueeze(q, -1), 2, 3, 1);
    ASSERT_SHAPE(tg_tensor_unsqueeze(q, -3), 1, 2, 3);
    ck_assert_ptr_null(tg_tensor_unsqueeze(q, 3));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    ck_assert_ptr_null(tg_tensor_unsqueeze(q, -4));
    /* unsqueeze of a transposed view keeps element positions */
    tg_tensor *t = tg_tensor_unsqueeze(tg_tensor_transpose(q, 0, 1), 1);
    ASSERT_SHAPE(t, 3, 1, 2);
    ck_assert(tg_get(t, (const int64_t[]){2, 0, 1}) == 5);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_contiguous_copies_only_when_needed)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *base = IOTA(3, 4);
    tg_tensor *c = tg_tensor_contiguous(base);
    ck_assert_ptr_eq(c, base);
    tg_tensor *r = tg_tensor_reshape(base, TG_SHAPE(4, 3));
    ck_assert_ptr_eq(tg_tensor_contiguous(r), r);
    tg_tensor *t = tg_tensor_transpose(base, 0, 1);
    tg_tensor *tc = tg_tensor_contiguous(t);
    ck_assert_ptr_ne(tc, t);
    ck_assert(!tg_tensor_shares_storage(tc, base));
    ck_assert(tg_tensor_is_contiguous(tc));
    ASSERT_SHAPE(tc, 4, 3);
    for (int64_t i = 0; i < 12; i++)
        ck_assert(at(tc, i) == at(t, i));
    TG_OK_(tg_scope_pop(s));
    /* the already-contiguous case hands out a reference of its own */
    tg_tensor *own = tg_zeros(TG_F32, TG_SHAPE(2));
    s = tg_scope_push();
    ck_assert_ptr_eq(tg_tensor_contiguous(own), own);
    TG_OK_(tg_scope_pop(s));
    ck_assert(at(own, 1) == 0); /* still alive */
    tg_release(own);
}
END_TEST

START_TEST(test_copy_and_convert)
{
    tg_scope *s = tg_scope_push();
    double vals[6] = {-1.5, 0.5, 2.7, 255.9, 300, -1e10};
    tg_tensor *d = tg_from_data(TG_F64, TG_SHAPE(2, 3), vals);
    tg_tensor *f = tg_tensor_to_dtype(d, TG_F32);
    tg_tensor *i = tg_tensor_to_dtype(d, TG_I32);
    tg_tensor *l = tg_tensor_to_dtype(d, TG_I64);
    tg_tensor *u = tg_tensor_to_dtype(d, TG_U8);
    TG_CHECK(f && i && l && u);
    ck_assert_int_eq(tg_tensor_dtype(u), TG_U8);
    ASSERT_SHAPE(u, 2, 3);
    ck_assert(at(f, 2) == (double)2.7f);
    const double want_i[6] = {-1, 0, 2, 255, 300, INT32_MIN};
    const double want_u[6] = {0, 0, 2, 255, 255, 0};
    for (int k = 0; k < 6; k++) {
        ck_assert_msg(at(i, k) == want_i[k], "i32[%d] = %g", k, at(i, k));
        ck_assert_msg(at(u, k) == want_u[k], "u8[%d] = %g", k, at(u, k));
    }
    ck_assert(at(l, 5) == -1e10);
    /* back to float is exact for these integers */
    tg_tensor *back = tg_tensor_to_dtype(i, TG_F64);
    ck_assert(at(back, 3) == 255);
    /* i32 -> i64 keeps every bit */
    int32_t big[2] = {INT32_MAX, INT32_MIN};
    tg_tensor *bl = tg_tensor_to_dtype(tg_from_data(TG_I32, TG_SHAPE(2), big), TG_I64);
    ck_assert(((const int64_t *)tg_tensor_data(bl))[0] == INT32_MAX);
    ck_assert(((const int64_t *)tg_tensor_data(bl))[1] == INT32_MIN);
    /* copies of views are contiguous and independent */
    tg_tensor *t = tg_tensor_transpose(d, 0, 1);
    tg_tensor *c = tg_tensor_copy(t);
    ck_assert(tg_tensor_is_contiguous(c) && !tg_tensor_shares_storage(c, d));
    ck_assert(at(c, 1) == 255.9);
    TG_OK_(tg_tensor_fill(c, 0));
    ck_assert(at(d, 3) == 255.9);
    tg_tensor *ct = tg_tensor_to_dtype(t, TG_I32);
    ck_assert(at(ct, 1) == 255 && at(ct, 3) == 300 && at(ct, 4) == 2);
    ck_assert_ptr_null(tg_tensor_to_dtype(t, (tg_dtype)99));
    ck_assert_str_eq(tg_last_error(), "tg_tensor_to_dtype: invalid dtype 99");
    ck_assert_str_eq(tg_error_context(), "libtensor");
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_copy_into)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *src = IOTA(2, 3);
    tg_tensor *dst = tg_zeros(TG_I64, TG_SHAPE(3, 2));
    /* strided destination, converted dtype */
    tg_tensor *dt = tg_tensor_transpose(dst, 0, 1);
    uint64_t v0 = tg_tensor_version(dst);
    TG_OK_(tg_tensor_copy_into(dt, src));
    ck_assert_uint_gt(tg_tensor_version(dst), v0);
    for (int64_t r = 0; r < 2; r++)
        for (int64_t c = 0; c < 3; c++)
            ck_assert(tg_get(dst, (const int64_t[]){c, r}) == r * 3 + c);
    /* strided source, same dtype */
    tg_tensor *d2 = tg_empty(TG_F32, TG_SHAPE(3, 2));
    TG_OK_(tg_tensor_copy_into(d2, tg_tensor_transpose(src, 0, 1)));
    ck_assert(at(d2, 1) == 3 && at(d2, 4) == 2);
    /* strided both, into a column of a larger tensor */
    tg_tensor *big = tg_zeros(TG_F64, TG_SHAPE(3, 4));
    tg_tensor *col = tg_tensor_slice(big, 1, 1, 3);
    TG_OK_(tg_tensor_copy_into(col, tg_tensor_transpose(src, 0, 1)));
    ck_assert(at(big, 0) == 0 && at(big, 1) == 0 && at(big, 2) == 3 && at(big, 3) == 0);
    ck_assert(at(big, 9) == 2 && at(big, 10) == 5 && at(big, 11) == 0);
    /* shape mismatch */
    ck_assert_int_eq(tg_tensor_copy_into(dst, src), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_tensor_copy_into");
    TG_ASSERT_ERROR_HAS("[3, 2]");
    TG_ASSERT_ERROR_HAS("[2, 3]");
    /* a large strided copy takes the parallel path and still lands right */
    tg_tensor *L = IOTA(256, 300);
    tg_tensor *Lt = tg_tensor_contiguous(tg_tensor_transpose(L, 0, 1));
    ck_assert(tg_get(Lt, (const int64_t[]){299, 255}) == 255 * 300 + 299);
    ck_assert(tg_get(Lt, (const int64_t[]){7, 3}) == 3 * 300 + 7);
    /* overlapping views of one storage: dst gets src's values from before the call */
    tg_tensor *sq = tg_tensor_reshape(tg_arange(TG_F32, 0, 9, 1), TG_SHAPE(3, 3));
    TG_OK_(tg_tensor_copy_into(sq, tg_tensor_transpose(sq, 0, 1)));
    for (int64_t k = 0; k < 9; k++)
        ck_assert(at(sq, k) == (double)(k % 3 * 3 + k / 3));
    tg_tensor *row = tg_tensor_slice(tg_tensor_transpose(sq, 0, 1), 0, 0, 1);
    TG_OK_(tg_tensor_copy_into(tg_tensor_slice(tg_tensor_transpose(sq, 0, 1), 0, 1, 2), row));
    ck_assert(at(sq, 1) == 0 && at(sq, 4) == 1 && at(sq, 7) == 2); /* column 1 = column 0 */
    TG_OK_(tg_tensor_copy_into(sq, sq)); /* the same view: nothing moves */
    ck_assert(at(sq, 3) == 1 && at(sq, 8) == 8);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_fill_and_element_access)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *t = tg_zeros(TG_I32, TG_SHAPE(4, 5));
    tg_tensor *col = tg_tensor_slice(t, 1, 2, 3);
    TG_OK_(tg_tensor_fill(col, 7));
    int64_t sum = 0;
    for (int64_t i = 0; i < 20; i++)
        sum += (int64_t)at(t, i);
    ck_assert_int_eq(sum, 28);
    ck_assert(tg_get(t, (const int64_t[]){3, 2}) == 7);
    /* strided fill across a transposed view of every dtype */
    for (int k = 0; k < N_DTYPES; k++) {
        tg_tensor *x = tg_zeros(all_dtypes[k], TG_SHAPE(3, 3));
        TG_OK_(tg_tensor_fill(tg_tensor_slice(tg_tensor_transpose(x, 0, 1), 0, 0, 1), 5));
        ck_assert(at(x, 0) == 5 && at(x, 3) == 5 && at(x, 6) == 5 && at(x, 1) == 0);
    }
    /* bounds */
    ck_assert(isnan(tg_get(t, (const int64_t[]){4, 0})));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("tg_get");
    ck_assert(isnan(tg_get(t, (const int64_t[]){0, -1})));
    ck_assert_int_eq(tg_set(t, (const int64_t[]){0, 5}, 1), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("tg_set");
    ck_assert_int_eq(tg_set(t, NULL, 1), TG_ERR_ARG);
    uint64_t v = tg_tensor_version(t);
    TG_OK_(tg_set(t, (const int64_t[]){1, 1}, -4));
    ck_assert_uint_gt(tg_tensor_version(t), v);
    /* versions never repeat, even across storages: caches key on them */
    tg_tensor *other = tg_zeros(TG_F32, TG_SHAPE(1));
    ck_assert_uint_gt(tg_tensor_version(other), tg_tensor_version(t));
    ck_assert_uint_ne(tg_tensor_version(other), v);
    ck_assert(tg_get(t, (const int64_t[]){1, 1}) == -4);
    /* item */
    ck_assert(isnan(tg_item(t)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_item");
    ck_assert(tg_item(tg_full(TG_F64, TG_SHAPE(1, 1, 1), 0.25)) == 0.25);
    ck_assert(isnan(tg_item_f32(tg_zeros(TG_F32, TG_SHAPE(0)))));
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_names)
{
    tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(1));
    ck_assert_ptr_null(tg_tensor_name(t));
    TG_OK_(tg_tensor_set_name(t, "dense/kernel"));
    ck_assert_str_eq(tg_tensor_name(t), "dense/kernel");
    TG_OK_(tg_tensor_set_name(t, tg_tensor_name(t))); /* self-assignment is safe */
    ck_assert_str_eq(tg_tensor_name(t), "dense/kernel");
    TG_OK_(tg_tensor_set_name(t, NULL));
    ck_assert_ptr_null(tg_tensor_name(t));
    TG_OK_(tg_tensor_set_name(t, "x"));
    tg_release(t); /* frees the name (the sanitizer build checks) */
}
END_TEST

/* ================================================================ refcounts, scopes */

START_TEST(test_refcount)
{
    int64_t live0 = tg_live_objects(), tensors0 = tg_live_tensors();
    tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(4)); /* no scope: ours */
    ck_assert_int_eq(tg_live_objects(), live0 + 2);     /* tensor + storage */
    ck_assert_int_eq(tg_live_tensors(), tensors0 + 1);
    ck_assert_ptr_eq(tg_retain(t), t);
    tg_release(t);
    ck_assert_int_eq(tg_live_tensors(), tensors0 + 1);
    ck_assert_ptr_null(tg_retain(NULL));
    tg_release(NULL);
    /* a view keeps the storage alive after its base dies */
    tg_tensor *v = tg_tensor_slice(t, 0, 1, 3);
    TG_OK_(tg_tensor_fill(t, 3));
    ck_assert_int_eq(tg_live_objects(), live0 + 3);
    tg_release(t);
    ck_assert_int_eq(tg_live_objects(), live0 + 2);
    ck_assert(at(v, 0) == 3 && at(v, 1) == 3);
    TG_OK_(tg_set(v, (const int64_t[]){1}, 8));
    ck_assert(at(v, 1) == 8);
    tg_release(v);
    ck_assert_int_eq(tg_live_objects(), live0);
    ck_assert_int_eq(tg_live_tensors(), tensors0);
}
END_TEST

START_TEST(test_scopes_nested)
{
    int64_t live0 = tg_live_objects();
    ck_assert_int_eq(tg_scope_depth(), 0);
    tg_scope *outer = tg_scope_push();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2));
    ck_assert_int_eq(tg_scope_depth(), 1);
    tg_scope *inner = tg_scope_push();
    ck_assert_ptr_ne(inner, outer);
    ck_assert_int_eq(tg_scope_depth(), 2);
    tg_tensor *b = tg_ones(TG_F32, TG_SHAPE(2));
    tg_tensor *kept = tg_scope_keep(b);
    ck_assert_ptr_eq(kept, b);
    tg_tensor *view = tg_tensor_reshape(a, TG_SHAPE(1, 2)); /* view of an outer tensor */
    (void)view;
    TG_OK_(tg_scope_pop(inner));
    ck_assert_int_eq(tg_scope_depth(), 1);
    ck_assert(at(b, 1) == 1); /* kept */
    ck_assert(at(a, 1) == 0); /* owned by outer, still open */
    TG_OK_(tg_scope_pop(outer));
    ck_assert_int_eq(tg_scope_depth(), 0);
    ck_assert_int_eq(tg_live_objects(), live0 + 2);
    tg_release(kept);
    ck_assert_int_eq(tg_live_objects(), live0);
}
END_TEST

START_TEST(test_scope_pop_outer_pops_inner)
{
    int64_t live0 = tg_live_objects();
    tg_scope *outer = tg_scope_push();
    tg_zeros(TG_F32, TG_SHAPE(3));
    tg_scope *mid = tg_scope_push();
    tg_zeros(TG_F32, TG_SHAPE(3));
    tg_scope_push();
    tg_zeros(TG_F32, TG_SHAPE(3));
    ck_assert_int_eq(tg_scope_depth(), 3);
    ck_assert_int_eq(tg_live_objects(), live0 + 6);
    TG_OK_(tg_scope_pop(mid));
    ck_assert_int_eq(tg_scope_depth(), 1);
    ck_assert_int_eq(tg_live_objects(), live0 + 2);
    /* mid is closed now: popping it again is an error, not a crash */
    ck_assert_int_eq(tg_scope_pop(mid), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_scope_pop");
    ck_assert_int_eq(tg_scope_depth(), 1);
    TG_OK_(tg_scope_pop(outer));
    ck_assert_int_eq(tg_live_objects(), live0);
    ck_assert_int_eq(tg_scope_pop(NULL), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_scope_pop");
    ck_assert_int_eq(tg_scope_pop(outer), TG_ERR_ARG);
}
END_TEST

START_TEST(test_scope_keep_and_adopt)
{
    /* no scope: creation hands the reference to the caller, keep is a no-op */
    tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(2));
    ck_assert_ptr_eq(tg_scope_keep(t), t);
    ck_assert_ptr_eq(tg_scope_adopt_steal(t), t);
    ck_assert_ptr_null(tg_scope_adopt_steal(NULL));
    ck_assert_ptr_null(tg_scope_keep(NULL));
    TG_ASSERT_ERROR_HAS("tg_scope_keep");
    tg_scope *s = tg_scope_push();
    /* adopt parks an owned reference in the scope */
    tg_scope_adopt_steal(t);
    /* a tensor adopted twice (two references) is released twice */
    tg_scope_adopt_steal(tg_retain(t));
    tg_tensor *k = tg_scope_keep(t);
    TG_OK_(tg_scope_pop(s));
    ck_assert(at(k, 0) == 0);
    tg_release(k);
}
END_TEST

/* Releasing a reference a scope owns is refused (the tensor knows how many of
 * its references are scopes'), not an invalid free when the scope pops. */
START_TEST(test_release_of_scope_owned_tensor)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *t = tg_ones(TG_F32, TG_SHAPE(2, 3));
    tg_clear_error();
    tg_release(t); /* not ours: the scope's */
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_release: the tensor ([2, 3] f32) is owned by a scope");
    TG_ASSERT_ERROR_HAS("tg_scope_keep");
    ck_assert(tg_get(t, (const int64_t[]){1, 2}) == 1.0); /* still alive */
    /* a kept reference is the caller's: its release is fine, once */
    tg_tensor *k = tg_scope_keep(t);
    tg_clear_error();
    tg_release(k);
    ck_assert_int_eq(tg_last_status(), TG_OK);
    tg_release(k);
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    tg_scope_pop(s); /* frees t once: no invalid free, nothing leaked (the fixture) */
}
END_TEST

/* Debug mode: a freed handle is recognised by every entry point and named in
 * the error, with the reason; nothing crashes. */
START_TEST(test_debug_mode_catches_use_after_free)
{
    bool was = tg_get_debug_mode();
    tg_set_debug_mode(true);
    ck_assert(tg_get_debug_mode());
    tg_scope *s = tg_scope_push();
    tg_tensor *t = tg_ones(TG_F64, TG_SHAPE(3));
    tg_scope_pop(s);
    ck_assert(isnan(tg_item(t)));
    TG_ASSERT_ERROR_HAS("tg_item: argument 't' is a tensor that was already freed (its "
                        "scope popped)");
    ck_assert(isnan(tg_get(t, (const int64_t[]){0})));
    TG_ASSERT_ERROR_HAS("tg_get: argument 't'");
    ck_assert_int_eq(tg_set(t, (const int64_t[]){0}, 1.0), TG_ERR_STATE);
    ck_assert_int_eq(tg_tensor_fill(t, 1.0), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_tensor_fill");
    ck_assert_ptr_null(tg_tensor_data(t));
    ck_assert_ptr_null(tg_tensor_data_ro(t));
    ck_assert_ptr_null(tg_retain(t));
    ck_assert_ptr_null(tg_scope_keep(t));
    ck_assert_ptr_null(tg_tensor_to_string(t));
    tg_tensor *u = tg_zeros(TG_F64, TG_SHAPE(3));
    ck_assert_int_eq(tg_tensor_copy_into(u, t), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_tensor_copy_into: argument 'src'");
    tg_release(u);
    /* released by hand twice: the second is caught, naming the other reason */
    tg_tensor *v = tg_zeros(TG_F32, TG_SHAPE(2)); /* no scope: ours */
    tg_release(v);
    tg_clear_error();
    tg_release(v);
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_release: argument 't' is a tensor that was already freed (its "
                        "last reference was released)");
    tg_set_debug_mode(was);
}
END_TEST

START_TEST(test_scope_reuse_many_steps)
{
    /* warm up, then many steps: the scope bookkeeping and counts stay steady */
    int64_t live0 = tg_live_objects();
    tg_memory_stats m0, m1;
    for (int step = 0; step < 50; step++) {
        if (step == 1)
            tg_memory_stats_get(&m0);
        tg_scope *s = tg_scope_push();
        tg_scope *in = tg_scope_push();
        for (int i = 0; i < 100; i++)
            tg_empty(TG_F32, TG_SHAPE(8));
        TG_OK_(tg_scope_pop(in));
        TG_OK_(tg_scope_pop(s));
        ck_assert_int_eq(tg_live_objects(), live0);
    }
    tg_memory_stats_get(&m1);
    ck_assert_uint_eq(m1.bytes_live, m0.bytes_live);
    /* after the first step every storage comes from the allocator's cache */
    ck_assert_uint_eq(m1.allocs, m0.allocs);
    ck_assert_uint_eq(m1.frees, m0.frees);
}
END_TEST

/* Scopes are per thread; a thread that exits with scopes open releases them. */
typedef struct thread_report {
    tg_scope *foreign; /* a scope of the main thread */
    int depth_at_start, depth_inside;
    tg_status pop_foreign, pop_own;
} thread_report;

static void *thread_body(void *arg)
{
    thread_report *r = arg;
    r->depth_at_start = tg_scope_depth();
    tg_scope *s = tg_scope_push();
    tg_zeros(TG_F32, TG_SHAPE(16));
    tg_scope_push();
    tg_ones(TG_F32, TG_SHAPE(16));
    r->depth_inside = tg_scope_depth();
    r->pop_foreign = tg_scope_pop(r->foreign);
    r->pop_own = tg_scope_pop(s);
    tg_scope_push();
    tg_zeros(TG_F32, TG_SHAPE(4));
    return NULL; /* exits with a scope open */
}

START_TEST(test_scopes_per_thread)
{
    int64_t live0 = tg_live_objects();
    thread_report r = {.foreign = tg_scope_push()};
    tg_zeros(TG_F32, TG_SHAPE(2));
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_body, &r), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(r.depth_at_start, 0);
    ck_assert_int_eq(r.depth_inside, 2);
    ck_assert_int_eq(r.pop_foreign, TG_ERR_ARG);
    ck_assert_int_eq(r.pop_own, TG_OK);
    ck_assert_int_eq(tg_scope_depth(), 1);
    ck_assert_int_eq(tg_live_objects(), live0 + 2); /* only this thread's tensor */
    TG_OK_(tg_scope_pop(r.foreign));
}
END_TEST

/* ================================================================ NULL inputs */

START_TEST(test_null_inputs)
{
    struct { void *got; const char *fn; } ptr_cases[] = {
        {tg_tensor_reshape(NULL, TG_SHAPE(1)), "tg_tensor_reshape"},
        {tg_tensor_flatten(NULL, 0, -1), "tg_tensor_flatten"},
        {tg_tensor_permute(NULL, NULL), "tg_tensor_permute"},
        {tg_tensor_transpose(NULL, 0, 1), "tg_tensor_transpose"},
        {tg_tensor_slice(NULL, 0, 0, 1), "tg_tensor_slice"},
        {tg_tensor_squeeze(NULL, 0), "tg_tensor_squeeze"},
        {tg_tensor_unsqueeze(NULL, 0), "tg_tensor_unsqueeze"},
        {tg_tensor_contiguous(NULL), "tg_tensor_contiguous"},
        {tg_tensor_copy(NULL), "tg_tensor_copy"},
        {tg_tensor_to_dtype(NULL, TG_F64), "tg_tensor_to_dtype"},
        {(void *)tg_tensor_shape(NULL), "tg_tensor_shape"},
        {(void *)tg_tensor_strides(NULL), "tg_tensor_strides"},
        {tg_tensor_data(NULL), "tg_tensor_data"},
        {(void *)tg_tensor_name(NULL), "tg_tensor_name"},
        {tg_tensor_to_string(NULL), "tg_tensor_to_string"},
        {tg_state_dict_get(NULL, "x"), "tg_state_dict_get"},
    };
    for (size_t i = 0; i < sizeof ptr_cases / sizeof ptr_cases[0]; i++) {
        ck_assert_msg(ptr_cases[i].got == NULL, "%s(NULL) returned non-NULL", ptr_cases[i].fn);
    }
    /* each sets a message naming the function: check them one at a time */
#define NAMES_FN(call, fn) do { tg_clear_error(); (void)(call); \
        ck_assert_int_ne(tg_last_status(), TG_OK); TG_ASSERT_ERROR_HAS(fn); } while (0)
    NAMES_FN(tg_tensor_reshape(NULL, TG_SHAPE(1)), "tg_tensor_reshape");
    NAMES_FN(tg_tensor_flatten(NULL, 0, -1), "tg_tensor_flatten");
    NAMES_FN(tg_tensor_permute(NULL, NULL), "tg_tensor_permute");
    NAMES_FN(tg_tensor_transpose(NULL, 0, 1), "tg_tensor_transpose");
    NAMES_FN(tg_tensor_slice(NULL, 0, 0, 1), "tg_tensor_slice");
    NAMES_FN(tg_tensor_squeeze(NULL, 0), "tg_tensor_squeeze");
    NAMES_FN(tg_tensor_unsqueeze(NULL, 0), "tg_tensor_unsqueeze");
    NAMES_FN(tg_tensor_contiguous(NULL), "tg_tensor_contiguous");
    NAMES_FN(tg_tensor_copy(NULL), "tg_tensor_copy");
    NAMES_FN(tg_tensor_to_dtype(NULL, TG_F64), "tg_tensor_to_dtype");
    NAMES_FN(tg_tensor_ndim(NULL), "tg_tensor_ndim");
    NAMES_FN(tg_tensor_dim(NULL, 0), "tg_tensor_dim");
    NAMES_FN(tg_tensor_numel(NULL), "tg_tensor_numel");
    NAMES_FN(tg_tensor_nbytes(NULL), "tg_tensor_nbytes");
    NAMES_FN(tg_tensor_dtype(NULL), "tg_tensor_dtype");
    NAMES_FN(tg_tensor_offset(NULL), "tg_tensor_offset");
    NAMES_FN(tg_tensor_is_contiguous(NULL), "tg_tensor_is_contiguous");
    NAMES_FN(tg_tensor_same_shape(NULL, NULL), "tg_tensor_same_shape");
    NAMES_FN(tg_tensor_shares_storage(NULL, NULL), "tg_tensor_shares_storage");
    NAMES_FN(tg_tensor_version(NULL), "tg_tensor_version");
    NAMES_FN(tg_tensor_bump_version(NULL), "tg_tensor_bump_version");
    NAMES_FN(tg_tensor_data(NULL), "tg_tensor_data");
    NAMES_FN(tg_tensor_set_name(NULL, "x"), "tg_tensor_set_name");
    NAMES_FN(tg_item(NULL), "tg_item");
    NAMES_FN(tg_item_f32(NULL), "tg_item_f32");
    NAMES_FN(tg_get(NULL, NULL), "tg_get");
    NAMES_FN(tg_set(NULL, NULL, 0), "tg_set");
    NAMES_FN(tg_tensor_fill(NULL, 0), "tg_tensor_fill");
    NAMES_FN(tg_tensor_copy_into(NULL, NULL), "tg_tensor_copy_into");
    NAMES_FN(tg_tensor_print(NULL, stdout), "tg_tensor_print");
    NAMES_FN(tg_tensor_to_string(NULL), "tg_tensor_to_string");
    NAMES_FN(tg_scope_pop(NULL), "tg_scope_pop");
    NAMES_FN(tg_scope_keep(NULL), "tg_scope_keep");
    NAMES_FN(tg_memory_stats_get(NULL), "tg_memory_stats_get");
    NAMES_FN(tg_rng_seed(NULL, 1), "tg_rng_seed");
    NAMES_FN(tg_rng_next_u64(NULL), "tg_rng_next_u64");
    NAMES_FN(tg_state_dict_set(NULL, "x", NULL), "tg_state_dict_set");
    NAMES_FN(tg_state_dict_get(NULL, "x"), "tg_state_dict_get");
    NAMES_FN(tg_state_dict_has(NULL, "x"), "tg_state_dict_has");
    NAMES_FN(tg_state_dict_size(NULL), "tg_state_dict_size");
    NAMES_FN(tg_state_dict_set_i64(NULL, "x", 1), "tg_state_dict_set_i64");
    NAMES_FN(tg_state_dict_get_f64(NULL, NULL, "x"), "tg_state_dict_get_f64");
    /* second arguments too */
    tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(2));
    NAMES_FN(tg_tensor_copy_into(t, NULL), "'src'");
    NAMES_FN(tg_tensor_print(t, NULL), "'out'");
    NAMES_FN(tg_tensor_same_shape(t, NULL), "'b'");
    NAMES_FN(tg_get(t, NULL), "'index'");
    tg_release(t);
    tg_state_dict_free(NULL); /* ignored */
#undef NAMES_FN
}
END_TEST

/* ================================================================ RNG */

START_TEST(test_rng_determinism)
{
    tg_rng a, b;
    tg_rng_seed(&a, 42);
    tg_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(tg_rng_next_u64(&a), tg_rng_next_u64(&b));
    tg_rng_seed(&b, 43);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += tg_rng_next_u64(&a) == tg_rng_next_u64(&b);
    ck_assert_int_lt(same, 2);
    /* the state is the four words: copy, continue, restore, continue identically */
    tg_rng_seed(&a, 7);
    for (int i = 0; i < 13; i++)
        tg_rng_normal(&a);
    uint64_t saved[TG_RNG_STATE_WORDS];
    memcpy(saved, a.s, sizeof saved);
    double first[20];
    for (int i = 0; i < 20; i++)
        first[i] = i % 2 ? tg_rng_normal(&a) : tg_rng_uniform(&a);
    memcpy(a.s, saved, sizeof saved);
    for (int i = 0; i < 20; i++)
        ck_assert(first[i] == (i % 2 ? tg_rng_normal(&a) : tg_rng_uniform(&a)));
    /* the global generator: tg_manual_seed makes tensors reproducible */
    tg_scope *s = tg_scope_push();
    tg_manual_seed(123);
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(50), 0, 1, NULL);
    tg_manual_seed(123);
    tg_tensor *y = tg_rand_normal(TG_F32, TG_SHAPE(50), 0, 1, NULL);
    tg_tensor *z = tg_rand_normal(TG_F32, TG_SHAPE(50), 0, 1, NULL);
    TG_ASSERT_TENSOR_CLOSE(x, y, 1e-300, 0); /* bit-identical */
    ck_assert(at(z, 0) != at(y, 0) || at(z, 1) != at(y, 1));
    tg_rng own;
    tg_rng_seed(&own, 123);
    tg_tensor *w = tg_rand_normal(TG_F32, TG_SHAPE(50), 0, 1, &own);
    TG_ASSERT_TENSOR_CLOSE(w, x, 1e-300, 0); /* the global generator is a tg_rng like any */
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_rng_distributions)
{
    tg_rng r;
    tg_rng_seed(&r, 2024);
    const int n = 200000;
    double sum = 0, sumsq = 0, lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        double u = tg_rng_uniform(&r);
        ck_assert(u >= 0 && u < 1);
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        sum += u;
        sumsq += u * u;
    }
    double mean = sum / n, var = sumsq / n - mean * mean;
    TG_ASSERT_CLOSE(mean, 0.5, 0.005, 0);    /* sd of the mean ~0.00065 */
    TG_ASSERT_CLOSE(var, 1.0 / 12, 0.002, 0);
    ck_assert(lo < 1e-4 && hi > 1 - 1e-4);
    sum = sumsq = 0;
    double m4 = 0;
    int beyond2 = 0;
    for (int i = 0; i < n; i++) {
        double z = tg_rng_normal(&r);
        ck_assert(isfinite(z));
        sum += z;
        sumsq += z * z;
        m4 += z * z * z * z;
        beyond2 += fabs(z) > 2;
    }
    mean = sum / n;
    var = sumsq / n - mean * mean;
    TG_ASSERT_CLOSE(mean, 0, 0.01, 0);
    TG_ASSERT_CLOSE(var, 1, 0.02, 0);
    TG_ASSERT_CLOSE(m4 / n, 3, 0.1, 0);              /* kurtosis of a normal */
    TG_ASSERT_CLOSE((double)beyond2 / n, 0.0455, 0.003, 0);
    /* below: in range, unbiased enough, every value hit */
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t k = tg_rng_below(&r, 7);
        ck_assert_uint_lt(k, 7);
        counts[k]++;
    }
    for (int k = 0; k < 7; k++)
        ck_assert_msg(abs(counts[k] - 10000) < 500, "value %d drawn %d times", k, counts[k]);
    ck_assert_uint_eq(tg_rng_below(&r, 1), 0);
    tg_rng before = r;
    tg_clear_error();
    ck_assert_uint_eq(tg_rng_below(&r, 0), 0); /* an empty range is an error */
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_rng_below");
    ck_assert(memcmp(&before, &r, sizeof r) == 0);
    uint64_t big = (UINT64_C(1) << 63) + 1; /* most draws of a naive modulo would be biased */
    int upper = 0;
    for (int i = 0; i < 2000; i++)
        upper += tg_rng_below(&r, big) >= big / 2;
    ck_assert_msg(upper > 850 && upper < 1150, "upper half drawn %d/2000 times", upper);
}
END_TEST

START_TEST(test_random_tensors)
{
    tg_scope *s = tg_scope_push();
    tg_rng r;
    tg_rng_seed(&r, 5);
    tg_tensor *u = tg_rand_uniform(TG_F64, TG_SHAPE(100, 100), -2, 3, &r);
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    const double *ud = tg_tensor_data(u);
    for (int i = 0; i < 10000; i++) {
        mn = fmin(mn, ud[i]);
        mx = fmax(mx, ud[i]);
        sum += ud[i];
    }
    ck_assert(mn >= -2 && mx < 3 && mn < -1.99 && mx > 2.99);
    TG_ASSERT_CLOSE(sum / 10000, 0.5, 0.05, 0);
    tg_tensor *nrm = tg_rand_normal(TG_F32, TG_SHAPE(10000), 10, 0.5, &r);
    const float *nd = tg_tensor_data(nrm);
    sum = 0;
    double sq = 0;
    for (int i = 0; i < 10000; i++) {
        sum += nd[i];
        sq += (nd[i] - 10.0) * (nd[i] - 10.0);
    }
    TG_ASSERT_CLOSE(sum / 10000, 10, 0.03, 0);
    TG_ASSERT_CLOSE(sqrt(sq / 10000), 0.5, 0.02, 0);
    /* glorot: (out=64, in=32, 3, 3): limit = sqrt(6 / ((32 + 64) * 9)) */
    tg_tensor *g = tg_glorot_uniform(TG_F32, TG_SHAPE(64, 32, 3, 3), &r);
    double limit = sqrt(6.0 / (96.0 * 9.0)), gmax = 0;
    const float *gd = tg_tensor_data(g);
    for (int64_t i = 0; i < tg_tensor_numel(g); i++)
        gmax = fmax(gmax, fabs(gd[i]));
    ck_assert(gmax <= limit * (1 + 1e-6) && gmax > 0.99 * limit); /* f32 rounding */
    tg_tensor *g2 = tg_glorot_uniform(TG_F64, TG_SHAPE(10, 1000), &r);
    gmax = 0;
    for (int64_t i = 0; i < 10000; i++)
        gmax = fmax(gmax, fabs(at(g2, i)));
    ck_assert(gmax <= sqrt(6.0 / 1010) && gmax > 0.99 * sqrt(6.0 / 1010));
    /* he_normal as Keras: truncated at 2 sigma, sigma = sqrt(2 / fan_in) / 0.8796,
     * so the samples' standard deviation is sqrt(2 / fan_in) */
    tg_tensor *h = tg_he_normal(TG_F64, TG_SHAPE(100, 50, 2), &r);
    double sigma = sqrt(2.0 / 100) / 0.87962566103423978, hmax = 0, hsq = 0;
    for (int64_t i = 0; i < 10000; i++) {
        double v = at(h, i);
        hmax = fmax(hmax, fabs(v));
        hsq += v * v;
    }
    ck_assert(hmax <= 2 * sigma && hmax > 1.9 * sigma);
    /* a normal truncated at 2 sigma has sd 0.8796 sigma */
    TG_ASSERT_CLOSE(sqrt(hsq / 10000), 0.8796 * sigma, 0.03 * sigma, 0);
    /* errors */
    ck_assert_ptr_null(tg_rand_uniform(TG_I32, TG_SHAPE(2), 0, 1, &r));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    ck_assert_str_eq(tg_last_error(), "tg_rand_uniform: dtype i32 is not floating point");
    ck_assert_ptr_null(tg_rand_normal(TG_U8, TG_SHAPE(2), 0, 1, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    ck_assert_ptr_null(tg_rand_uniform(TG_F32, TG_SHAPE(2), 1, 0, &r));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_rand_normal(TG_F32, TG_SHAPE(2), 0, -1, &r));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_glorot_uniform(TG_F32, TG_SHAPE(10), &r));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(),
                     "tg_glorot_uniform: a kernel needs at least 2 dims (out, in, ...), got 1");
    ck_assert_ptr_null(tg_he_normal(TG_F32, 0, NULL, &r));
    TG_ASSERT_ERROR_HAS("tg_he_normal");
    ck_assert_ptr_null(tg_he_normal(TG_I64, TG_SHAPE(3, 3), &r));
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    ck_assert_str_eq(tg_last_error(), "tg_he_normal: dtype i64 is not floating point");
    ck_assert_ptr_null(tg_he_normal(TG_F32, TG_SHAPE(3, -2), &r));
    ck_assert_str_eq(tg_last_error(),
                     "tg_he_normal: extent -2 of dim 1 in shape [3, -2] is negative");
    ck_assert_str_eq(tg_error_context(), "libtensor");
    TG_OK_(tg_scope_pop(s));
}
END_TEST

/* ================================================================ state dict */

START_TEST(test_state_dict_tensors)
{
    tg_state_dict *sd = tg_state_dict_new();
    TG_CHECK(sd);
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2));
    tg_tensor *b = tg_ones(TG_F32, TG_SHAPE(3));
    tg_tensor *c = tg_full(TG_F32, TG_SHAPE(4), 2);
    TG_OK_(tg_state_dict_set(sd, "model/dense/kernel", a));
    TG_OK_(tg_state_dict_set(sd, "model/dense/bias", b));
    TG_OK_(tg_state_dict_set(sd, "opt/step", c));
    TG_OK_(tg_scope_pop(s)); /* the dict holds its own references */
    ck_assert_uint_eq(tg_state_dict_size(sd), 3);
    ck_assert(tg_state_dict_has(sd, "model/dense/bias"));
    ck_assert(!tg_state_dict_has(sd, "model/dense"));
    ck_assert_int_eq(tg_tensor_numel(tg_state_dict_get(sd, "model/dense/bias")), 3);
    /* replace keeps the position */
    s = tg_scope_push();
    tg_tensor *b2 = tg_full(TG_F64, TG_SHAPE(5), 9);
    TG_OK_(tg_state_dict_set(sd, "model/dense/bias", b2));
    TG_OK_(tg_state_dict_set(sd, "model/dense/bias", b2)); /* same tensor again */
    TG_OK_(tg_scope_pop(s));
    ck_assert_uint_eq(tg_state_dict_size(sd), 3);
    ck_assert_str_eq(tg_state_dict_name_at(sd, 0), "model/dense/kernel");
    ck_assert_str_eq(tg_state_dict_name_at(sd, 1), "model/dense/bias");
    ck_assert_str_eq(tg_state_dict_name_at(sd, 2), "opt/step");
    ck_assert_int_eq(tg_tensor_numel(tg_state_dict_tensor_at(sd, 1)), 5);
    s = tg_scope_push();
    ck_assert(tg_item(tg_tensor_slice(tg_state_dict_tensor_at(sd, 1), 0, 0, 1)) == 9);
    TG_OK_(tg_scope_pop(s));
    /* missing and out of range */
    ck_assert_ptr_null(tg_state_dict_get(sd, "nope"));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("no entry 'nope'");
    ck_assert_ptr_null(tg_state_dict_name_at(sd, 3));
    ck_assert_ptr_null(tg_state_dict_tensor_at(sd, 99));
    ck_assert_int_eq(tg_state_dict_set(sd, "x", NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_state_dict_set(sd, NULL, a), TG_ERR_ARG);
    ck_assert_uint_eq(tg_state_dict_size(sd), 3);
    /* many entries keep order */
    char name[32];
    s = tg_scope_push();
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "p%d", i);
        TG_OK_(tg_state_dict_set(sd, name, tg_full(TG_I32, 0, NULL, i)));
    }
    TG_OK_(tg_scope_pop(s));
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_str_eq(tg_state_dict_name_at(sd, (size_t)i + 3), name);
        ck_assert(tg_item(tg_state_dict_get(sd, name)) == i);
    }
    tg_state_dict_free(sd);
}
END_TEST

START_TEST(test_state_dict_attrs)
{
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_state_dict_set_i64(sd, "epoch", 3));
    TG_OK_(tg_state_dict_set_f64(sd, "lr", 1e-3));
    TG_OK_(tg_state_dict_set_str(sd, "format", "libtensor-checkpoint"));
    ck_assert_uint_eq(tg_state_dict_attr_count(sd), 3);
    ck_assert_uint_eq(tg_state_dict_size(sd), 0); /* attributes are not entries */
    int64_t i;
    double f;
    const char *str;
    TG_OK_(tg_state_dict_get_i64(&i, sd, "epoch"));
    ck_assert_int_eq(i, 3);
    TG_OK_(tg_state_dict_get_f64(&f, sd, "lr"));
    ck_assert(f == 1e-3);
    TG_OK_(tg_state_dict_get_str(&str, sd, "format"));
    ck_assert_str_eq(str, "libtensor-checkpoint");
    /* set replaces in place, also changing type */
    TG_OK_(tg_state_dict_set_i64(sd, "epoch", 4));
    TG_OK_(tg_state_dict_set_str(sd, "lr", "adaptive"));
    TG_OK_(tg_state_dict_set_str(sd, "format", "v2"));
    ck_assert_uint_eq(tg_state_dict_attr_count(sd), 3);
    ck_assert_str_eq(tg_state_dict_attr_name_at(sd, 0), "epoch");
    ck_assert_str_eq(tg_state_dict_attr_name_at(sd, 1), "lr");
    ck_assert_int_eq(tg_state_dict_attr_type_at(sd, 0), TG_ATTR_I64);
    ck_assert_int_eq(tg_state_dict_attr_type_at(sd, 1), TG_ATTR_STR);
    ck_assert_int_eq(tg_state_dict_attr_type_at(sd, 2), TG_ATTR_STR);
    TG_OK_(tg_state_dict_get_i64(&i, sd, "epoch"));
    ck_assert_int_eq(i, 4);
    TG_OK_(tg_state_dict_get_str(&str, sd, "format"));
    ck_assert_str_eq(str, "v2");
    /* type mismatch and missing */
    ck_assert_int_eq(tg_state_dict_get_f64(&f, sd, "lr"), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_state_dict_get_f64");
    TG_ASSERT_ERROR_HAS("str");
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_get_f64: attribute 'lr' is str, not f64");
    ck_assert_int_eq(tg_state_dict_get_i64(&i, sd, "lr"), TG_ERR_DTYPE);
    ck_assert_int_eq(tg_state_dict_get_str(&str, sd, "epoch"), TG_ERR_DTYPE);
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_get_str: attribute 'epoch' is i64, not str");
    ck_assert_int_eq(tg_state_dict_get_i64(&i, sd, "missing"), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("missing");
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_get_i64: no attribute 'missing'");
    tg_clear_error();
    ck_assert_int_eq(tg_state_dict_get_i64(NULL, sd, "epoch"), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_get_i64: argument 'out' is NULL");
    tg_clear_error();
    ck_assert_int_eq(tg_state_dict_set_f64(NULL, "lr", 1), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_set_f64: argument 'sd' is NULL");
    tg_clear_error();
    ck_assert_int_eq(tg_state_dict_set_i64(sd, NULL, 1), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_state_dict_set_i64: argument 'name' is NULL");
    ck_assert_str_eq(tg_error_context(), "libtensor");
    ck_assert_int_eq(tg_state_dict_set_str(sd, "x", NULL), TG_ERR_ARG);
    ck_assert_ptr_null(tg_state_dict_attr_name_at(sd, 3));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    tg_state_dict_free(sd);
}
END_TEST

/* ================================================================ printing */

START_TEST(test_print_small)
{
    tg_scope *s = tg_scope_push();
    char *txt = tg_tensor_to_string(tg_tensor_reshape(tg_arange(TG_F32, 1, 5, 1), TG_SHAPE(2, 2)));
    ck_assert_str_eq(txt, "tensor([[1., 2.],\n        [3., 4.]], shape=[2, 2], dtype=f32)");
    free(txt);
    txt = tg_tensor_to_string(IOTA(2, 3));
    ck_assert_ptr_nonnull(strstr(txt, "shape=[2, 3]"));
    ck_assert_ptr_nonnull(strstr(txt, "dtype=f32"));
    ck_assert_ptr_null(strstr(txt, "..."));
    free(txt);
    txt = tg_tensor_to_string(tg_tensor_transpose(tg_tensor_reshape(
        tg_arange(TG_I32, -2, 4, 1), TG_SHAPE(2, 3)), 0, 1));
    ck_assert_str_eq(txt, "tensor([[-2,  1],\n        [-1,  2],\n        [ 0,  3]], "
                          "shape=[3, 2], dtype=i32)");
    free(txt);
    txt = tg_tensor_to_string(tg_full(TG_F64, 0, NULL, 0.25));
    ck_assert_str_eq(txt, "tensor(0.25, shape=[], dtype=f64)");
    free(txt);
    txt = tg_tensor_to_string(tg_zeros(TG_U8, TG_SHAPE(0, 2)));
    ck_assert_str_eq(txt, "tensor([], shape=[0, 2], dtype=u8)");
    free(txt);
    double v[3] = {0.5, -1, NAN};
    txt = tg_tensor_to_string(tg_from_data(TG_F64, TG_SHAPE(3), v));
    ck_assert_ptr_nonnull(strstr(txt, "0.5"));
    ck_assert_ptr_nonnull(strstr(txt, "-1."));
    ck_assert_ptr_nonnull(strstr(txt, "nan"));
    free(txt);
    /* a 3-d tensor separates its blocks with a blank line */
    txt = tg_tensor_to_string(tg_zeros(TG_I64, TG_SHAPE(2, 1, 1)));
    ck_assert_str_eq(txt, "tensor([[[0]],\n\n        [[0]]], shape=[2, 1, 1], dtype=i64)");
    free(txt);
    /* tg_tensor_print writes the same text */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    TG_OK_(tg_tensor_print(IOTA(2, 3), f));
    fclose(f);
    txt = tg_tensor_to_string(IOTA(2, 3));
    ck_assert_str_eq(buf, txt);
    free(buf);
    free(txt);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

START_TEST(test_print_large)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *big = tg_tensor_reshape(tg_arange(TG_I64, 0, 2000, 1), TG_SHAPE(20, 100));
    char *txt = tg_tensor_to_string(big);
    ck_assert_ptr_nonnull(strstr(txt, "..."));
    ck_assert_ptr_nonnull(strstr(txt, "shape=[20, 100]"));
    ck_assert_ptr_nonnull(strstr(txt, "[   0,    1,    2, ...,   97,   98,   99]"));
    ck_assert_ptr_nonnull(strstr(txt, "1999]]"));
    ck_assert_ptr_null(strstr(txt, " 50,"));   /* the middle of a row is elided */
    ck_assert_ptr_null(strstr(txt, " 1000,")); /* and the middle rows */
    ck_assert_uint_lt(strlen(txt), 1000);
    free(txt);
    /* exactly 1000 elements are all shown */
    txt = tg_tensor_to_string(tg_zeros(TG_F32, TG_SHAPE(1000)));
    ck_assert_ptr_null(strstr(txt, "..."));
    free(txt);
    TG_OK_(tg_scope_pop(s));
}
END_TEST

/* ================================================================ runtime, memory */

START_TEST(test_runtime)
{
    int before = tg_get_num_threads();
    ck_assert_int_ge(before, 1);
    ck_assert_int_eq(tg_set_num_threads(0), TG_ERR_ARG);
    ck_assert_int_eq(tg_set_num_threads(-3), TG_ERR_ARG);
    ck_assert_int_eq(tg_get_num_threads(), before);
    /* a runaway count is refused with the limit, before OpenMP sees it */
    ck_assert_int_eq(tg_set_num_threads(100000), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("between 1 and 256");
    ck_assert_int_eq(tg_set_num_threads(TG_MAX_THREADS + 1), TG_ERR_ARG);
    ck_assert_int_eq(tg_set_num_threads(INT_MAX), TG_ERR_ARG);
    ck_assert_int_eq(tg_get_num_threads(), before);
    TG_OK_(tg_set_num_threads(1));
    ck_assert_int_eq(tg_get_num_threads(), 1);
    TG_OK_(tg_set_num_threads(2));
    ck_assert_int_eq(tg_get_num_threads(), 2);
    TG_OK_(tg_set_num_threads(before));
    ck_assert_str_eq(tg_version(), "0.1.0");
}
END_TEST

START_TEST(test_memory_stats)
{
    tg_memory_stats m0, m1, m2;
    tg_memory_cache_clear();
    tg_memory_stats_get(&m0);
    ck_assert_uint_eq(m0.bytes_cached, 0);
    tg_tensor *t = tg_empty(TG_F64, TG_SHAPE(1000));
    tg_memory_stats_get(&m1);
    ck_assert_uint_eq(m1.allocs, m0.allocs + 1);
    ck_assert_uint_eq(m1.bytes_live, m0.bytes_live + 8000);
    ck_assert_uint_ge(m1.bytes_peak, m1.bytes_live);
    /* a view allocates no data */
    tg_tensor *r = tg_tensor_reshape(t, TG_SHAPE(10, 100)); /* no scope: ours */
    tg_tensor *v = tg_tensor_transpose(r, 0, 1);
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.allocs, m1.allocs);
    tg_release(t);
    tg_release(r);
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.bytes_live, m1.bytes_live); /* v keeps the storage */
    tg_release(v);
    /* the block goes to the cache, not back to the system */
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.bytes_live, m0.bytes_live);
    ck_assert_uint_eq(m2.frees, m1.frees);
    ck_assert_uint_eq(m2.bytes_cached, 8000);
    /* the same size again reuses it: same address, no system allocation */
    tg_tensor *again = tg_zeros(TG_I64, TG_SHAPE(10, 100));
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.allocs, m1.allocs);
    ck_assert_uint_eq(m2.bytes_cached, 0);
    ck_assert(at(again, 999) == 0);
    /* a different size does not */
    tg_tensor *other = tg_empty(TG_F32, TG_SHAPE(3000));
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.allocs, m1.allocs + 1);
    tg_release(again);
    tg_release(other);
    tg_memory_cache_clear();
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.frees, m1.frees + 2);
    ck_assert_uint_eq(m2.bytes_cached, 0);
    /* wrapped buffers are not the library's bytes */
    float buf[4];
    tg_tensor *w = tg_wrap(TG_F32, TG_SHAPE(4), buf);
    tg_memory_stats_get(&m2);
    ck_assert_uint_eq(m2.allocs, m1.allocs + 1);
    ck_assert_uint_eq(m2.bytes_live, m0.bytes_live);
    tg_release(w);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tg_tcase("basics");
    tcase_add_test(tc, test_dtypes);
    tcase_add_test(tc, test_error_state);
    tcase_add_test(tc, test_error_context);
    suite_add_tcase(s, tc);

    tc = tg_tcase("creation");
    tcase_add_test(tc, test_create_every_dtype);
    tcase_add_test(tc, test_scalar_tensors);
    tcase_add_test(tc, test_empty_extents);
    tcase_add_test(tc, test_arange);
    tcase_add_test(tc, test_from_data_and_wrap);
    tcase_add_test(tc, test_typed_constructors);
    tcase_add_test(tc, test_shape_validation);
    suite_add_tcase(s, tc);

    tc = tg_tcase("views");
    tcase_add_test(tc, test_views_share_storage);
    tcase_add_test(tc, test_permute_transpose_strides);
    tcase_add_test(tc, test_reshape_inference);
    tcase_add_test(tc, test_reshape_non_contiguous);
    tcase_add_test(tc, test_reshape_random_views);
    tcase_add_test(tc, test_narrow);
    tcase_add_test(tc, test_squeeze_unsqueeze);
    tcase_add_test(tc, test_contiguous_copies_only_when_needed);
    suite_add_tcase(s, tc);

    tc = tg_tcase("copies");
    tcase_add_test(tc, test_copy_and_convert);
    tcase_add_test(tc, test_copy_into);
    tcase_add_test(tc, test_fill_and_element_access);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);

    tc = tg_tcase("ownership");
    tcase_add_test(tc, test_refcount);
    tcase_add_test(tc, test_scopes_nested);
    tcase_add_test(tc, test_scope_pop_outer_pops_inner);
    tcase_add_test(tc, test_scope_keep_and_adopt);
    tcase_add_test(tc, test_scope_reuse_many_steps);
    tcase_add_test(tc, test_release_of_scope_owned_tensor);
    tcase_add_test(tc, test_debug_mode_catches_use_after_free);
    tcase_add_test(tc, test_scopes_per_thread);
    tcase_add_test(tc, test_null_inputs);
    suite_add_tcase(s, tc);

    tc = tg_tcase("rng");
    tcase_add_test(tc, test_rng_determinism);
    tcase_add_test(tc, test_rng_distributions);
    tcase_add_test(tc, test_random_tensors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("state_dict");
    tcase_add_test(tc, test_state_dict_tensors);
    tcase_add_test(tc, test_state_dict_attrs);
    suite_add_tcase(s, tc);

    tc = tg_tcase("print");
    tcase_add_test(tc, test_print_small);
    tcase_add_test(tc, test_print_large);
    suite_add_tcase(s, tc);

    tc = tg_tcase("runtime");
    tcase_add_test(tc, test_runtime);
    tcase_add_test(tc, test_memory_stats);
    suite_add_tcase(s, tc);
    return s;
}
