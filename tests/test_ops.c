/* tests/test_ops.c -- the core ops: forward values on small inputs (expected values
 * computed here with libm from the same numbers), broadcasting, views, every error
 * path, and oneDNN (AUTO) against the reference kernels in f32, forward and
 * backward. The gradients themselves are checked in tests/test_gradcheck.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/tg_test.h"
#include "ops/ops_impl.h"

/* ---------------------------------------------------------------- helpers */

/* Scoped tensor of dtype from doubles. */
static tg_tensor *mk(tg_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    tg_tensor *t = tg_tensor_to_dtype(tg_from_data(TG_F64, ndim, shape, v), dt);
    TG_CHECK(t != NULL);
    return t;
}

/* Element i in row-major order, any dtype and strides. */
static double at(const tg_tensor *t, int64_t i)
{
    return tg_get_flat(t, i);
}

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    TG_CHECK(t != NULL);
    char got[128], want[128];
    tg_shape_str(got, sizeof got, tg_tensor_ndim(t), tg_tensor_shape(t));
    tg_shape_str(want, sizeof want, ndim, shape);
    ck_assert_msg(strcmp(got, want) == 0, "shape %s, expected %s", got, want);
}

/* Asserts t's elements equal want[i] within a tolerance suited to its dtype. */
static void assert_values(const tg_tensor *t, const double *want, int64_t n)
{
    TG_CHECK(t != NULL);
    ck_assert_int_eq(tg_tensor_numel(t), n);
    double tol = tg_tensor_dtype(t) == TG_F32 ? 2e-6 : 1e-14;
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(at(t, i) - want[i]) <= tol * (1 + fabs(want[i])),
                      "element %lld = %.17g, expected %.17g", (long long)i, at(t, i), want[i]);
}

/* The failing call returned NULL with status st and a message containing needle. */
#define ASSERT_FAILS(expr, st, needle) do { tg_clear_error(); \
        tg_tensor *r_ = (expr); \
        ck_assert_msg(r_ == NULL, "%s succeeded", #expr); \
        ck_assert_msg(tg_last_status() == (st), "%s: status %d (%s), expected %d", #expr, \
                      (int)tg_last_status(), tg_last_error(), (int)(st)); \
        TG_ASSERT_ERROR_HAS(needle); } while (0)

static const tg_dtype float_dtypes[] = {TG_F32, TG_F64};

static const double A6[] = {0.5, -1.25, 2.0, 3.5, -0.75, 1.5};
static const double B3[] = {1.5, 0.25, -2.0};

/* ---------------------------------------------------------------- binary */

START_TEST(binary_same_shape)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    const double bv[] = {2.0, 0.5, -1.0, 0.25, 4.0, -3.0};
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), A6), *b = mk(dt, TG_SHAPE(2, 3), bv);
    double add[6], sub[6], mul[6], dv[6];
    for (int i = 0; i < 6; i++) {
        add[i] = A6[i] + bv[i];
        sub[i] = A6[i] - bv[i];
        mul[i] = A6[i] * bv[i];
        dv[i] = A6[i] / bv[i];
    }
    assert_values(tg_add(a, b), add, 6);
    assert_values(tg_sub(a, b), sub, 6);
    assert_values(tg_mul(a, b), mul, 6);
    assert_values(tg_div(a, b), dv, 6);
    assert_shape(tg_add(a, b), TG_SHAPE(2, 3));
    ck_assert_int_eq(tg_tensor_dtype(tg_add(a, b)), dt);

    const double base[] = {0.5, 1.5, 2.0, 3.0, 0.25, 1.0};
    tg_tensor *p = mk(dt, TG_SHAPE(2, 3), base);
    double pw[6];
    for (int i = 0; i < 6; i++)
        pw[i] = pow(base[i], bv[i]);
    assert_values(tg_pow(p, b), pw, 6);
    tg_scope_pop(s);
}
END_TEST

START_TEST(binary_broadcasting)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), A6), *b = mk(dt, TG_SHAPE(3), B3);
    double want[6];

    /* (2, 3) + (3): the row repeats */
    for (int i = 0; i < 6; i++)
        want[i] = A6[i] + B3[i % 3];
    assert_shape(tg_add(a, b), TG_SHAPE(2, 3));
    assert_values(tg_add(a, b), want, 6);
    /* (3) - (2, 3): broadcasting the first operand */
    for (int i = 0; i < 6; i++)
        want[i] = B3[i % 3] - A6[i];
    assert_values(tg_sub(b, a), want, 6);
    for (int i = 0; i < 6; i++)
        want[i] = B3[i % 3] / A6[i];
    assert_values(tg_div(b, a), want, 6);

    /* (2, 1) * (1, 3): an outer product */
    tg_tensor *c = mk(dt, TG_SHAPE(2, 1), (const double[]){2.0, -3.0});
    tg_tensor *r = mk(dt, TG_SHAPE(1, 3), B3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            want[i * 3 + j] = (i ? -3.0 : 2.0) * B3[j];
    assert_shape(tg_mul(c, r), TG_SHAPE(2, 3));
    assert_values(tg_mul(c, r), want, 6);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            want[i * 3 + j] = (i ? -3.0 : 2.0) + B3[j];
    assert_values(tg_add(c, r), want, 6);

    /* a 0-d scalar with anything */
    tg_tensor *z = mk(dt, 0, NULL, (const double[]){4.0});
    for (int i = 0; i < 6; i++)
        want[i] = 4.0 - A6[i];
    assert_shape(tg_sub(z, a), TG_SHAPE(2, 3));
    assert_values(tg_sub(z, a), want, 6);
    tg_tensor *zz = tg_mul(z, z);
    ck_assert_int_eq(tg_tensor_ndim(zz), 0);
    TG_ASSERT_CLOSE(tg_item(zz), 16.0, 0, 0);

    /* (3, 1, 2) + (4, 2) -> (3, 4, 2) */
    tg_tensor *x = tg_arange(dt, 0, 6, 1), *y = tg_arange(dt, 0, 8, 1);
    tg_tensor *sum = tg_add(tg_reshape(x, TG_SHAPE(3, 1, 2)), tg_reshape(y, TG_SHAPE(4, 2)));
    assert_shape(sum, TG_SHAPE(3, 4, 2));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++)
                ck_assert_double_eq(at(sum, (i * 4 + j) * 2 + k), (i * 2 + k) + (j * 2 + k));
    tg_scope_pop(s);
}
END_TEST

/* The reference kernel reads any strides: a transposed operand needs no copy. */
START_TEST(binary_strided_inputs)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(TG_BACKEND_REFERENCE);
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), A6);
    tg_tensor *at_ = tg_transpose(a, 0, 1); /* (3, 2), not contiguous */
    ck_assert(!tg_tensor_is_contiguous(at_));
    tg_tensor *y = tg_mul(at_, tg_slice(tg_reshape(mk(dt, TG_SHAPE(3), B3), TG_SHAPE(3, 1)),
                                        0, 0, 3));
    double want[6];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            want[i * 2 + j] = A6[j * 3 + i] * B3[i];
    assert_values(y, want, 6);
    tg_set_backend(prev);
    tg_scope_pop(s);
}
END_TEST

/* maximum/minimum with broadcasting; a tie splits the gradient evenly. */
START_TEST(maximum_minimum)
{
    tg_dtype dt = float_dtypes[_i % 2];
    tg_backend prev = tg_set_backend(_i < 2 ? TG_BACKEND_AUTO : TG_BACKEND_REFERENCE);
    tg_scope *s = tg_scope_push();
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), A6), *b = mk(dt, TG_SHAPE(3), B3);
    double want_max[6], want_min[6];
    for (int i = 0; i < 6; i++) {
        want_max[i] = fmax(A6[i], B3[i % 3]);
        want_min[i] = fmin(A6[i], B3[i % 3]);
    }
    assert_values(tg_maximum(a, b), want_max, 6);
    assert_values(tg_minimum(a, b), want_min, 6);
    assert_values(tg_maximum(b, a), want_max, 6); /* b first: broadcast a operand */
    assert_values(tg_minimum(tg_transpose(tg_reshape(a, TG_SHAPE(3, 2)), 0, 1),
                             mk(dt, TG_SHAPE(2, 1), (const double[]){0, 1})),
                  (const double[]){0, 0, -0.75, -1.25, 1, 1}, 6);
    /* gradients: ties at 1 and 2.0 (a[1] == b[1], a[2] == b[0] via broadcast) */
    tg_tensor *x = mk(dt, TG_SHAPE(4), (const double[]){3, 1, 2, -1});
    tg_tensor *y = mk(dt, TG_SHAPE(4), (const double[]){1, 1, 2, 5});
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_set_requires_grad(y, true));
    TG_OK_(tg_backward(tg_sum(tg_maximum(x, y), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){1, 0.5, 0.5, 0}, 4);
    assert_values(tg_grad(y), (const double[]){0, 0.5, 0.5, 1}, 4);
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_zero_grad(y));
    TG_OK_(tg_backward(tg_sum(tg_minimum(x, y), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){0, 0.5, 0.5, 1}, 4);
    assert_values(tg_grad(y), (const double[]){1, 0.5, 0.5, 0}, 4);
    /* maximum(x, x) has x's own gradient */
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_maximum(x, x), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){1, 1, 1, 1}, 4);
    /* a broadcast operand's gradient is summed: max([4], [1]) */
    tg_tensor *c = mk(dt, TG_SHAPE(1), (const double[]){1.5});
    TG_OK_(tg_set_requires_grad(c, true));
    TG_OK_(tg_backward(tg_sum(tg_maximum(x, c), NULL, 0, false)));
    assert_values(tg_grad(c), (const double[]){2}, 1); /* 1.5 beats 1 and -1 */
    ASSERT_FAILS(tg_maximum(a, tg_zeros(dt, TG_SHAPE(4))), TG_ERR_SHAPE, "tg_maximum: shapes");
    ASSERT_FAILS(tg_minimum(a, mk(dt == TG_F32 ? TG_F64 : TG_F32, TG_SHAPE(3), B3)),
                 TG_ERR_DTYPE, "tg_minimum");
    ASSERT_FAILS(tg_maximum(NULL, a), TG_ERR_ARG, "tg_maximum");
    ASSERT_FAILS(tg_minimum(tg_zeros(TG_I64, TG_SHAPE(2)), tg_zeros(TG_I64, TG_SHAPE(2))),
                 TG_ERR_DTYPE, "tg_minimum");
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

START_TEST(binary_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F32, TG_SHAPE(4));
    ASSERT_FAILS(tg_add(a, b), TG_ERR_SHAPE, "tg_add: shapes [2, 3] and [4] cannot be broadcast");
    ASSERT_FAILS(tg_mul(a, tg_zeros(TG_F32, TG_SHAPE(3, 3))), TG_ERR_SHAPE, "tg_mul");
    tg_tensor *d = tg_zeros(TG_F64, TG_SHAPE(2, 3));
    ASSERT_FAILS(tg_sub(a, d), TG_ERR_DTYPE, "tg_sub");
    TG_ASSERT_ERROR_HAS("f32");
    TG_ASSERT_ERROR_HAS("f64");
    tg_tensor *i = tg_zeros(TG_I32, TG_SHAPE(2, 3));
    ASSERT_FAILS(tg_div(i, i), TG_ERR_DTYPE, "tg_div");
    ASSERT_FAILS(tg_pow(NULL, a), TG_ERR_ARG, "tg_pow");
    ASSERT_FAILS(tg_add(a, NULL), TG_ERR_ARG, "tg_add");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- scalar and unary */

/* Denormal flushing reaches every thread that computes: a tensor of denormals
 * times 1 reads as zeros (DAZ) with flushing on and is unchanged with it off,
 * over enough elements that both threads of a 2-thread team take a share. */
START_TEST(flush_denormals)
{
    tg_scope *s = tg_scope_push();
    int threads = tg_get_num_threads();
    bool was = tg_get_flush_denormals();
    ck_assert_int_eq(tg_set_num_threads(2), TG_OK);
    enum { N = 1 << 16 };
    tg_tensor *x = tg_empty(TG_F32, TG_SHAPE(N));
    float *xd = tg_tensor_data(x);
    for (int i = 0; i < N; i++)
        xd[i] = 1e-39f * (float)(1 + i % 7); /* below FLT_MIN: denormal */
    ck_assert(xd[5] != 0.0f);

    ck_assert_int_eq(tg_set_flush_denormals(true), TG_OK);
    ck_assert(tg_get_flush_denormals());
    tg_tensor *y = tg_mul_scalar(x, 1.0);
    tg_tensor *z = tg_mul(x, tg_ones(TG_F32, TG_SHAPE(N)));
    for (int i = 0; i < N; i++) {
        ck_assert_msg(at(y, i) == 0.0, "mul_scalar: element %d = %g kept its denormal", i, at(y, i));
        ck_assert_msg(at(z, i) == 0.0, "mul: element %d = %g kept its denormal", i, at(z, i));
    }

    ck_assert_int_eq(tg_set_flush_denormals(false), TG_OK);
    ck_assert(!tg_get_flush_denormals());
    y = tg_mul_scalar(x, 1.0);
    z = tg_mul(x, tg_ones(TG_F32, TG_SHAPE(N)));
    for (int i = 0; i < N; i++) {
        ck_assert_msg(at(y, i) == xd[i], "mul_scalar: element %d = %g, expected %g", i, at(y, i),
                      (double)xd[i]);
        ck_assert_msg(at(z, i) == xd[i], "mul: element %d = %g, expected %g", i, at(z, i),
                      (double)xd[i]);
    }
    ck_assert_int_eq(tg_set_flush_denormals(was), TG_OK);
    ck_assert_int_eq(tg_set_num_threads(threads), TG_OK);
    tg_scope_pop(s);
}
END_TEST

START_TEST(scalar_ops)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), A6);
    double w1[6], w2[6], w3[6];
    for (int i = 0; i < 6; i++) {
        w1[i] = A6[i] + 0.75;
        w2[i] = A6[i] * -2.5;
        w3[i] = pow(fabs(A6[i]), 1.5);
    }
    assert_values(tg_add_scalar(a, 0.75), w1, 6);
    assert_values(tg_mul_scalar(a, -2.5), w2, 6);
    assert_values(tg_pow_scalar(tg_abs(a), 1.5), w3, 6);
    for (int i = 0; i < 6; i++)
        w3[i] = A6[i] * A6[i] * A6[i];
    assert_values(tg_pow_scalar(a, 3.0), w3, 6);
    tg_tensor *z = tg_add_scalar(mk(dt, 0, NULL, (const double[]){1.0}), 2.0);
    ck_assert_int_eq(tg_tensor_ndim(z), 0);
    TG_ASSERT_CLOSE(tg_item(z), 3.0, 0, 0);
    ASSERT_FAILS(tg_add_scalar(NULL, 1), TG_ERR_ARG, "tg_add_scalar");
    ASSERT_FAILS(tg_mul_scalar(NULL, 1), TG_ERR_ARG, "tg_mul_scalar");
    ASSERT_FAILS(tg_pow_scalar(tg_zeros(TG_U8, TG_SHAPE(2)), 2), TG_ERR_DTYPE, "tg_pow_scalar");
    tg_scope_pop(s);
}
END_TEST

static double sigmoid_ref(double x) { return 1.0 / (1.0 + exp(-x)); }
static double relu_ref(double x) { return x > 0 ? x : 0; }
static double neg_ref(double x) { return -x; }
/* the activations, each from its textbook formula (not the kernels' stable forms) */
static double leaky_ref(double x) { return x > 0 ? x : 0.3 * x; }
static double elu_ref(double x) { return x > 0 ? x : 1.5 * (exp(x) - 1); }
static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_tanh_ref(double x)
{
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double silu_ref(double x) { return x / (1 + exp(-x)); }
static double softplus_ref(double x) { return log1p(exp(x)); }
static double hsig_ref(double x) { return fmax(0, fmin(1, 0.2 * x + 0.5)); }
static double clip_ref(double x) { return fmin(fmax(x, -0.5), 2.5); }
static tg_tensor *leaky_03(tg_tensor *x) { return tg_leaky_relu(x, 0.3); }
static tg_tensor *elu_15(tg_tensor *x) { return tg_elu(x, 1.5); }
static tg_tensor *gelu_erf(tg_tensor *x) { return tg_gelu(x, TG_GELU_ERF); }
static tg_tensor *gelu_tanh(tg_tensor *x) { return tg_gelu(x, TG_GELU_TANH); }
static tg_tensor *hsig_keras(tg_tensor *x) { return tg_hard_sigmoid(x, 0.2, 0.5); }
static tg_tensor *clip_m05_25(tg_tensor *x) { return tg_clip(x, -0.5, 2.5); }

typedef struct unary_case {
    const char *name;
    tg_tensor *(*op)(tg_tensor *);
    double (*ref)(double);
    bool positive;
} unary_case;

static const unary_case unary_cases[] = {
    {"tg_neg", tg_neg, neg_ref, false},   {"tg_exp", tg_exp, exp, false},
    {"tg_log", tg_log, log, true},        {"tg_sqrt", tg_sqrt, sqrt, true},
    {"tg_abs", tg_abs, fabs, false},      {"tg_tanh", tg_tanh, tanh, false},
    {"tg_sigmoid", tg_sigmoid, sigmoid_ref, false}, {"tg_relu", tg_relu, relu_ref, false},
    {"tg_leaky_relu", leaky_03, leaky_ref, false}, {"tg_elu", elu_15, elu_ref, false},
    {"tg_gelu", gelu_erf, gelu_ref, false},        {"tg_gelu", gelu_tanh, gelu_tanh_ref, false},
    {"tg_silu", tg_silu, silu_ref, false},         {"tg_softplus", tg_softplus, softplus_ref, false},
    {"tg_hard_sigmoid", hsig_keras, hsig_ref, false}, {"tg_clip", clip_m05_25, clip_ref, false},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

START_TEST(unary_values)
{
    const unary_case *u = &unary_cases[_i / 2];
    tg_dtype dt = float_dtypes[_i % 2];
    tg_scope *s = tg_scope_push();
    const double xs[] = {-3.0, -0.5, 0.0, 0.25, 1.0, 4.0, -20.0, 30.0};
    const double ps[] = {0.01, 0.5, 1.0, 2.0, 9.0, 100.0, 1e-3, 7.5};
    const double *in = u->positive ? ps : xs;
    double want[8];
    for (int i = 0; i < 8; i++)
        want[i] = u->ref(in[i]);
    tg_tensor *y = u->op(mk(dt, TG_SHAPE(2, 4), in));
    assert_shape(y, TG_SHAPE(2, 4));
    assert_values(y, want, 8);
    /* a non-contiguous input */
    tg_tensor *yt = u->op(tg_transpose(mk(dt, TG_SHAPE(2, 4), in), 0, 1));
    double tol = dt == TG_F32 ? 1e-5 : 1e-14; /* oneDNN's f32 log/exp approximations */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            TG_ASSERT_CLOSE(at(yt, i * 2 + j), want[j * 4 + i], tol, tol);
    /* 0-d */
    tg_tensor *z = u->op(mk(dt, 0, NULL, in + 3));
    ck_assert_int_eq(tg_tensor_ndim(z), 0);
    TG_ASSERT_CLOSE(tg_item(z), want[3], tol, tol);
    ASSERT_FAILS(u->op(NULL), TG_ERR_ARG, u->name);
    ASSERT_FAILS(u->op(tg_zeros(TG_I64, TG_SHAPE(2))), TG_ERR_DTYPE, u->name);
    tg_scope_pop(s);
}
END_TEST

/* relu'(0) = 0 and abs'(0) = 0, on both backends. */
START_TEST(kinks_have_zero_gradient)
{
    tg_backend be = _i ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO;
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(be);
    for (int k = 0; k < 2; k++) {
        tg_tensor *x = mk(TG_F32, TG_SHAPE(3), (const double[]){-1.0, 0.0, 2.0});
        TG_OK_(tg_set_requires_grad(x, true));
        TG_OK_(tg_backward(tg_sum(k ? tg_abs(x) : tg_relu(x), NULL, 0, false)));
        const double want_relu[] = {0, 0, 1}, want_abs[] = {-1, 0, 1};
        assert_values(tg_grad(x), k ? want_abs : want_relu, 3);
    }
    tg_set_backend(prev);
    tg_scope_pop(s);
}
END_TEST

/* The activations' derivatives on both backends at hand-picked points, kinks
 * included: leaky_relu'(0) = alpha, elu'(0) = alpha, clip' = 0 at its bounds,
 * hard_sigmoid' = 0 at its corners; and the stable forms far out. */
START_TEST(activation_gradients)
{
    tg_backend be = _i ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO;
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(be);
    const double xs[] = {-2.5, -1.0, 0.0, 0.5, 2.5, 3.0};
    double want[6];
    for (int k = 0; k < 6; k++) {
        tg_tensor *x = mk(TG_F32, TG_SHAPE(6), xs);
        TG_OK_(tg_set_requires_grad(x, true));
        tg_tensor *y = NULL;
        for (int i = 0; i < 6; i++) {
            double v = xs[i], sg = 1 / (1 + exp(-v));
            switch (k) {
            case 0: y = tg_leaky_relu(x, 0.1); want[i] = v > 0 ? 1 : 0.1; break;
            case 1: y = tg_elu(x, 2.0); want[i] = v > 0 ? 1 : 2.0 * exp(v); break;
            case 2: y = tg_clip(x, -1.0, 2.5); want[i] = v > -1.0 && v < 2.5 ? 1 : 0; break;
            case 3: y = tg_hard_sigmoid(x, 0.2, 0.5); want[i] = fabs(v) < 2.5 ? 0.2 : 0; break;
            case 4: y = tg_silu(x); want[i] = sg + v * sg * (1 - sg); break;
            case 5: y = tg_softplus(x); want[i] = sg; break;
            }
        }
        TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
        assert_values(tg_grad(x), want, 6);
    }
    /* gelu: Phi(x) + x phi(x) */
    tg_tensor *x = mk(TG_F32, TG_SHAPE(6), xs);
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_backward(tg_sum(tg_gelu(x, TG_GELU_ERF), NULL, 0, false)));
    for (int i = 0; i < 6; i++)
        want[i] = 0.5 * (1 + erf(xs[i] / sqrt(2.0))) + xs[i] * exp(-xs[i] * xs[i] / 2) / sqrt(2 * M_PI);
    assert_values(tg_grad(x), want, 6);
    /* far out: no overflow, no cancellation */
    tg_tensor *far = mk(TG_F32, TG_SHAPE(4), (const double[]){-100, -30, 30, 100});
    tg_tensor *sp = tg_softplus(far), *el = tg_elu(far, 1.0), *ge = tg_gelu(far, TG_GELU_TANH);
    const double sp_want[] = {exp(-100.0), log1p(exp(-30.0)), 30 + log1p(exp(-30.0)), 100};
    for (int i = 0; i < 4; i++) {
        TG_ASSERT_CLOSE(at(sp, i), sp_want[i], 1e-37, 1e-6); /* e^-100: subnormal in f32 */
        ck_assert(isfinite(at(el, i)) && isfinite(at(ge, i)));
    }
    TG_ASSERT_CLOSE(at(el, 0), -1.0, 0, 1e-7);
    TG_ASSERT_CLOSE(at(ge, 3), 100.0, 0, 1e-7);
    tg_set_backend(prev);
    tg_scope_pop(s);
}
END_TEST

START_TEST(activation_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(2));
    ASSERT_FAILS(tg_leaky_relu(x, NAN), TG_ERR_ARG, "tg_leaky_relu: alpha must be finite, not nan");
    ASSERT_FAILS(tg_elu(x, INFINITY), TG_ERR_ARG, "tg_elu: alpha must be finite");
    ASSERT_FAILS(tg_hard_sigmoid(x, 0.2, NAN), TG_ERR_ARG, "tg_hard_sigmoid: beta must be finite");
    ASSERT_FAILS(tg_hard_sigmoid(x, -INFINITY, 0.5), TG_ERR_ARG, "tg_hard_sigmoid: alpha");
    ASSERT_FAILS(tg_clip(x, 1.0, -1.0), TG_ERR_ARG, "tg_clip: lo 1 and hi -1: need lo <= hi");
    ASSERT_FAILS(tg_clip(x, NAN, 1.0), TG_ERR_ARG, "tg_clip");
    ASSERT_FAILS(tg_gelu(x, (tg_gelu_approx)7), TG_ERR_ARG,
                 "tg_gelu: approximate is 7, not TG_GELU_ERF or TG_GELU_TANH");
    ASSERT_FAILS(tg_gelu(NULL, TG_GELU_TANH), TG_ERR_ARG, "tg_gelu");
    ASSERT_FAILS(tg_clip(tg_zeros(TG_I32, TG_SHAPE(2)), 0, 1), TG_ERR_DTYPE, "tg_clip");
    ASSERT_FAILS(tg_leaky_relu(NULL, 0.2), TG_ERR_ARG, "tg_leaky_relu");
    /* infinite bounds are one-sided clips; lo == hi is a constant */
    tg_tensor *y = tg_clip(mk(TG_F64, TG_SHAPE(3), (const double[]){-5, 0.5, 7}), -INFINITY, 1.0);
    assert_values(y, (const double[]){-5, 0.5, 1}, 3);
    y = tg_clip(mk(TG_F32, TG_SHAPE(3), (const double[]){-5, 0.5, 7}), 2.0, 2.0);
    assert_values(y, (const double[]){2, 2, 2}, 3);
    tg_scope_pop(s);
}
END_TEST

START_TEST(sigmoid_and_softmax_are_stable)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    double tol = dt == TG_F32 ? 1e-5 : 1e-12; /* oneDNN's f32 log is ~1e-6 off at 1 */
    tg_tensor *x = mk(dt, TG_SHAPE(4), (const double[]){-1000, -50, 50, 1000});
    tg_tensor *y = tg_sigmoid(x);
    for (int i = 0; i < 4; i++)
        ck_assert(isfinite(at(y, i)));
    TG_ASSERT_CLOSE(at(y, 0), 0.0, 1e-30, 0);
    TG_ASSERT_CLOSE(at(y, 3), 1.0, 0, 1e-7);
    tg_tensor *sm = tg_softmax(x, 0), *lsm = tg_log_softmax(x, 0);
    TG_ASSERT_CLOSE(at(sm, 3), 1.0, 0, 1e-7);
    TG_ASSERT_CLOSE(at(lsm, 3), 0.0, tol, 0);
    TG_ASSERT_CLOSE(at(lsm, 2), -950.0, 0, 1e-6);
    ck_assert(isfinite(at(lsm, 0)));
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- reductions */

START_TEST(reductions)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    /* x[i][j][k] = v[(i*3 + j)*4 + k] */
    double v[24];
    for (int i = 0; i < 24; i++)
        v[i] = sin(1.0 + i) * 3;
    tg_tensor *x = mk(dt, TG_SHAPE(2, 3, 4), v);

    double total = 0, mx = -INFINITY;
    for (int i = 0; i < 24; i++)
        total += v[i], mx = fmax(mx, v[i]);
    tg_tensor *sa = tg_sum(x, NULL, 0, false);
    ck_assert_int_eq(tg_tensor_ndim(sa), 0);
    assert_values(sa, &total, 1);
    double mean = total / 24;
    assert_values(tg_mean(x, NULL, 0, false), &mean, 1);
    assert_values(tg_max(x, NULL, 0, false), &mx, 1);
    assert_shape(tg_sum(x, NULL, 0, true), TG_SHAPE(1, 1, 1));

    /* over axes 0 and 2 -> (3) */
    double s02[3] = {0}, m02[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                s02[j] += v[(i * 3 + j) * 4 + k];
                m02[j] = fmax(m02[j], v[(i * 3 + j) * 4 + k]);
            }
    tg_tensor *r = tg_sum(x, (const int[]){0, -1}, 2, false);
    assert_shape(r, TG_SHAPE(3));
    assert_values(r, s02, 3);
    r = tg_max(x, (const int[]){2, 0}, 2, true);
    assert_shape(r, TG_SHAPE(1, 3, 1));
    assert_values(r, m02, 3);
    double mean02[3];
    for (int j = 0; j < 3; j++)
        mean02[j] = s02[j] / 8;
    assert_values(tg_mean(x, (const int[]){0, 2}, 2, false), mean02, 3);

    /* over axis 1 of a transposed view (strided input) */
    tg_tensor *xt = tg_transpose(x, 0, 2); /* (4, 3, 2) */
    r = tg_sum(xt, (const int[]){1}, 1, false);
    assert_shape(r, TG_SHAPE(4, 2));
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++) {
            double acc = 0;
            for (int j = 0; j < 3; j++)
                acc += v[(i * 3 + j) * 4 + k];
            TG_ASSERT_CLOSE(at(r, k * 2 + i), acc, 1e-6, 1e-6);
        }

    /* 0-d */
    tg_tensor *z = mk(dt, 0, NULL, (const double[]){2.5});
    TG_ASSERT_CLOSE(tg_item(tg_sum(z, NULL, 0, false)), 2.5, 0, 0);
    TG_ASSERT_CLOSE(tg_item(tg_max(z, NULL, 0, true)), 2.5, 0, 0);
    tg_scope_pop(s);
}
END_TEST

/* The gradient of max goes to the first maximum only. */
START_TEST(max_ties_first_wins)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = mk(TG_F64, TG_SHAPE(2, 3), (const double[]){1, 3, 3, 5, 5, 5});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *m = tg_max(x, (const int[]){1}, 1, false);
    assert_values(m, (const double[]){3, 5}, 2);
    TG_OK_(tg_backward(tg_sum(m, NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){0, 1, 0, 1, 0, 0}, 6);
    tg_scope_pop(s);
}
END_TEST

/* min, prod, var and std against sums written out here, over all axes and over
 * axes (0, 2) of a (2, 3, 4) tensor, and on a strided view. */
START_TEST(reductions_min_prod_var_std)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    double v[24];
    for (int i = 0; i < 24; i++)
        v[i] = 0.8 + 0.5 * sin(2.0 + 1.3 * i); /* in (0.3, 1.3): products stay moderate */
    tg_tensor *x = mk(dt, TG_SHAPE(2, 3, 4), v);
    double tol = dt == TG_F32 ? 2e-6 : 1e-12;
    double mn = INFINITY, pr = 1, sum = 0;
    for (int i = 0; i < 24; i++)
        mn = fmin(mn, v[i]), pr *= v[i], sum += v[i];
    double ss = 0;
    for (int i = 0; i < 24; i++)
        ss += (v[i] - sum / 24) * (v[i] - sum / 24);
    TG_ASSERT_CLOSE(tg_item(tg_min(x, NULL, 0, false)), mn, tol, tol);
    TG_ASSERT_CLOSE(tg_item(tg_prod(x, NULL, 0, false)), pr, tol, tol);
    TG_ASSERT_CLOSE(tg_item(tg_var(x, NULL, 0, false, 0)), ss / 24, tol, tol);
    TG_ASSERT_CLOSE(tg_item(tg_var(x, NULL, 0, false, 1)), ss / 23, tol, tol);
    TG_ASSERT_CLOSE(tg_item(tg_std(x, NULL, 0, false, 1)), sqrt(ss / 23), tol, tol);
    /* over axes 0 and 2 -> (3), keepdim (1, 3, 1) */
    double m02[3], p02[3], v02[3];
    for (int j = 0; j < 3; j++) {
        double mean = 0;
        m02[j] = INFINITY, p02[j] = 1;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) {
                double e = v[(i * 3 + j) * 4 + k];
                m02[j] = fmin(m02[j], e), p02[j] *= e, mean += e / 8;
            }
        v02[j] = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) {
                double d = v[(i * 3 + j) * 4 + k] - mean;
                v02[j] += d * d / 8;
            }
    }
    const int ax[] = {0, 2};
    tg_tensor *r = tg_min(x, ax, 2, true);
    assert_shape(r, TG_SHAPE(1, 3, 1));
    tg_tensor *rp = tg_prod(x, ax, 2, false), *rv = tg_var(x, ax, 2, false, 0);
    tg_tensor *rs = tg_std(tg_transpose(x, 0, 2), (const int[]){0, 2}, 2, false, 0);
    for (int j = 0; j < 3; j++) {
        TG_ASSERT_CLOSE(at(r, j), m02[j], tol, tol);
        TG_ASSERT_CLOSE(at(rp, j), p02[j], tol, tol);
        TG_ASSERT_CLOSE(at(rv, j), v02[j], tol, tol);
        TG_ASSERT_CLOSE(at(rs, j), sqrt(v02[j]), tol, tol);
    }
    tg_scope_pop(s);
}
END_TEST

/* prod's gradient with zeros in a group, and the tie and constant-group rules. */
START_TEST(reductions_zero_and_tie_gradients)
{
    tg_scope *s = tg_scope_push();
    /* rows: no zero, one zero, two zeros */
    tg_tensor *x = mk(TG_F64, TG_SHAPE(3, 3), (const double[]){2, 3, 4, 2, 0, 5, 0, 7, 0});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *p = tg_prod(x, (const int[]){1}, 1, false);
    assert_values(p, (const double[]){24, 0, 0}, 3);
    TG_OK_(tg_backward(tg_sum(p, NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){12, 8, 6, 0, 10, 0, 0, 0, 0}, 9);
    /* min: the first minimum takes the gradient */
    tg_tensor *y = mk(TG_F64, TG_SHAPE(2, 3), (const double[]){4, 1, 1, 2, 2, 9});
    TG_OK_(tg_set_requires_grad(y, true));
    TG_OK_(tg_backward(tg_sum(tg_min(y, (const int[]){1}, 1, false), NULL, 0, false)));
    assert_values(tg_grad(y), (const double[]){0, 1, 0, 1, 0, 0}, 6);
    /* a constant group: std 0 and gradient 0 (no NaN); var's gradient is 0 too */
    tg_tensor *c = mk(TG_F64, TG_SHAPE(4), (const double[]){3, 3, 3, 3});
    TG_OK_(tg_set_requires_grad(c, true));
    tg_tensor *sd = tg_std(c, NULL, 0, false, 1);
    ck_assert(tg_item(sd) == 0);
    TG_OK_(tg_backward(sd));
    assert_values(tg_grad(c), (const double[]){0, 0, 0, 0}, 4);
    /* prod and var read x in backward: a write to x after the call is refused */
    tg_tensor *w = mk(TG_F64, TG_SHAPE(3), (const double[]){1, 2, 3});
    TG_OK_(tg_set_requires_grad(w, true));
    tg_tensor *pw = tg_prod(w, NULL, 0, false), *vw = tg_var(w, NULL, 0, false, 0);
    TG_OK_(tg_set(w, (const int64_t[]){0}, 5));
    ck_assert_int_eq(tg_backward(pw), TG_ERR_STATE);
    ck_assert_int_eq(tg_backward(vw), TG_ERR_STATE);
    /* empty groups: prod is 1 */
    tg_tensor *e = tg_prod(tg_zeros(TG_F32, TG_SHAPE(2, 0)), (const int[]){1}, 1, false);
    assert_values(e, (const double[]){1, 1}, 2);
    tg_scope_pop(s);
}
END_TEST

START_TEST(reduction_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(2, 3));
    ASSERT_FAILS(tg_sum(x, (const int[]){2}, 1, false), TG_ERR_RANGE, "tg_sum: axis 2");
    ASSERT_FAILS(tg_mean(x, (const int[]){-3}, 1, false), TG_ERR_RANGE, "tg_mean");
    ASSERT_FAILS(tg_max(x, (const int[]){1, -1}, 2, false), TG_ERR_ARG, "tg_max: axis -1 given twice");
    ASSERT_FAILS(tg_sum(x, NULL, 1, false), TG_ERR_ARG, "tg_sum");
    ASSERT_FAILS(tg_sum(x, (const int[]){0}, -1, false), TG_ERR_ARG, "n_axes is -1");
    /* more axes than dims: refused before reading past the two given (ASan
     * saw the over-read before) */
    ASSERT_FAILS(tg_sum(x, (const int[]){0, 1}, 5, false), TG_ERR_ARG,
                 "tg_sum: n_axes is 5 but x has 2 dims");
    ASSERT_FAILS(tg_mean(x, (const int[]){0, 1}, 3, false), TG_ERR_ARG, "tg_mean: n_axes is 3");
    ASSERT_FAILS(tg_max(tg_zeros(TG_F32, TG_SHAPE(4)), (const int[]){0}, 2, false),
                 TG_ERR_ARG, "tg_max: n_axes is 2 but x has 1 dim;");
    ck_assert_msg(!strstr(tg_last_error(), "0x"), "an address in \"%s\"", tg_last_error());
    ASSERT_FAILS(tg_sum(NULL, NULL, 0, false), TG_ERR_ARG, "tg_sum");
    ASSERT_FAILS(tg_mean(NULL, NULL, 0, false), TG_ERR_ARG, "tg_mean");
    ASSERT_FAILS(tg_max(NULL, NULL, 0, false), TG_ERR_ARG, "tg_max");
    ASSERT_FAILS(tg_min(tg_zeros(TG_F32, TG_SHAPE(2, 0)), (const int[]){1}, 1, false),
                 TG_ERR_SHAPE, "tg_min: cannot take the min of empty groups of [2, 0]");
    ASSERT_FAILS(tg_var(x, (const int[]){0}, 1, false, 2), TG_ERR_SHAPE,
                 "tg_var: groups of 2 elements of [2, 3] have no variance with correction 2");
    ASSERT_FAILS(tg_std(tg_zeros(TG_F64, TG_SHAPE(1)), NULL, 0, false, 1), TG_ERR_SHAPE,
                 "groups of 1 element");
    ASSERT_FAILS(tg_var(x, NULL, 0, false, -1), TG_ERR_ARG, "tg_var: correction must be >= 0");
    ASSERT_FAILS(tg_prod(x, (const int[]){3}, 1, false), TG_ERR_RANGE, "tg_prod: axis 3");
    ASSERT_FAILS(tg_std(NULL, NULL, 0, false, 0), TG_ERR_ARG, "tg_std");
    ASSERT_FAILS(tg_sum(tg_zeros(TG_I32, TG_SHAPE(2)), NULL, 0, false), TG_ERR_DTYPE, "tg_sum");
    ASSERT_FAILS(tg_max(tg_zeros(TG_F32, TG_SHAPE(2, 0)), (const int[]){1}, 1, false),
                 TG_ERR_SHAPE, "tg_max");
    /* empty sums are fine: zeros */
    tg_tensor *e = tg_sum(tg_zeros(TG_F32, TG_SHAPE(2, 0)), (const int[]){1}, 1, false);
    assert_values(e, (const double[]){0, 0}, 2);
    tg_scope_pop(s);
}
END_TEST

START_TEST(argmax_values)
{
    tg_scope *s = tg_scope_push();
    const double v[] = {1, 7, 7, -2, 0, 9, 9, 3};
    tg_tensor *x = mk(TG_F32, TG_SHAPE(2, 4), v);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *r = tg_argmax(x, 1, false);
    ck_assert_int_eq(tg_tensor_dtype(r), TG_I64);
    assert_shape(r, TG_SHAPE(2));
    assert_values(r, (const double[]){1, 1}, 2); /* ties: the first */
    ck_assert(tg_is_leaf(r) && !tg_requires_grad(r)); /* records nothing */
    r = tg_argmax(x, 0, true);
    assert_shape(r, TG_SHAPE(1, 4));
    assert_values(r, (const double[]){0, 1, 1, 1}, 4);
    r = tg_argmax(tg_transpose(x, 0, 1), -1, false); /* strided */
    assert_values(r, (const double[]){0, 1, 1, 1}, 4);
    /* integer dtypes work too */
    r = tg_argmax(mk(TG_U8, TG_SHAPE(5), (const double[]){3, 200, 7, 200, 0}), 0, false);
    ck_assert_int_eq(tg_tensor_ndim(r), 0);
    TG_ASSERT_CLOSE(tg_item(r), 1, 0, 0);
    ASSERT_FAILS(tg_argmax(x, 2, false), TG_ERR_RANGE, "tg_argmax");
    ASSERT_FAILS(tg_argmax(NULL, 0, false), TG_ERR_ARG, "tg_argmax");
    ASSERT_FAILS(tg_argmax(tg_zeros(TG_F32, TG_SHAPE(3, 0)), 1, false), TG_ERR_SHAPE, "tg_argmax");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- gather */

START_TEST(index_select_and_gather_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    /* x[i][j] = 10 i + j, (3, 4) */
    double v[12];
    for (int i = 0; i < 12; i++)
        v[i] = 10 * (i / 4) + i % 4;
    tg_tensor *x = mk(dt, TG_SHAPE(3, 4), v);
    /* rows 2, 0, 2 (-1 is the last) */
    tg_tensor *r = tg_index_select(x, 0, tg_from_data(TG_I64, TG_SHAPE(3),
                                                      (const int64_t[]){2, 0, -1}));
    assert_shape(r, TG_SHAPE(3, 4));
    assert_values(r, (const double[]){20, 21, 22, 23, 0, 1, 2, 3, 20, 21, 22, 23}, 12);
    /* columns 3, 1 */
    tg_tensor *cidx = tg_from_data(TG_I32, TG_SHAPE(2), (const int32_t[]){3, 1});
    r = tg_index_select(x, -1, cidx);
    assert_shape(r, TG_SHAPE(3, 2));
    assert_values(r, (const double[]){3, 1, 13, 11, 23, 21}, 6);
    /* a strided x reads right */
    r = tg_index_select(tg_transpose(x, 0, 1), 1, tg_from_data(TG_I64, TG_SHAPE(1),
                                                               (const int64_t[]){1}));
    assert_values(r, (const double[]){10, 11, 12, 13}, 4);
    /* gather along dim 1: out[i][j] = x[i][idx[i][j]] */
    tg_tensor *gi = tg_from_data(TG_I64, TG_SHAPE(2, 3), (const int64_t[]){0, 3, 3, -4, 2, 1});
    tg_tensor *g = tg_gather(x, 1, gi);
    assert_shape(g, TG_SHAPE(2, 3));
    assert_values(g, (const double[]){0, 3, 3, 10, 12, 11}, 6);
    /* along dim 0: out[i][j] = x[idx[i][j]][j] */
    g = tg_gather(x, 0, tg_from_data(TG_I32, TG_SHAPE(1, 4), (const int32_t[]){2, 0, 1, 2}));
    assert_values(g, (const double[]){20, 1, 12, 23}, 4);
    /* gradients: repeated picks sum */
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *rep = tg_from_data(TG_I64, TG_SHAPE(3), (const int64_t[]){1, 1, 0});
    TG_OK_(tg_backward(tg_sum(tg_index_select(x, 0, rep), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0}, 12);
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_gather(x, 1, gi), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){1, 0, 0, 2, 1, 1, 1, 0, 0, 0, 0, 0}, 12);
    /* any dtype forward: integer labels picked by position */
    tg_tensor *lab = tg_from_data(TG_U8, TG_SHAPE(4), (const uint8_t[]){7, 8, 9, 6});
    tg_tensor *picked = tg_index_select(lab, 0, cidx);
    ck_assert_int_eq(tg_tensor_dtype(picked), TG_U8);
    ck_assert_double_eq(tg_get_flat(picked, 0), 6);
    ck_assert_double_eq(tg_get_flat(picked, 1), 8);
    tg_scope_pop(s);
}
END_TEST

START_TEST(index_select_and_gather_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(3, 4));
    tg_tensor *i1 = tg_from_data(TG_I64, TG_SHAPE(2), (const int64_t[]){0, 4});
    ASSERT_FAILS(tg_index_select(x, 1, i1), TG_ERR_RANGE,
                 "tg_index_select: index 4 at position 1 is out of range for dim 1 of extent 4");
    ASSERT_FAILS(tg_index_select(x, 0, tg_from_data(TG_I64, TG_SHAPE(1), (const int64_t[]){-4})),
                 TG_ERR_RANGE, "index -4 at position 0");
    ASSERT_FAILS(tg_index_select(x, 0, tg_zeros(TG_F32, TG_SHAPE(2))), TG_ERR_DTYPE,
                 "index must be i32 or i64, not f32");
    ASSERT_FAILS(tg_index_select(x, 0, tg_zeros(TG_I64, TG_SHAPE(2, 1))), TG_ERR_SHAPE,
                 "index must be 1-D, got shape [2, 1]");
    ASSERT_FAILS(tg_index_select(x, 2, i1), TG_ERR_RANGE, "axis 2");
    ASSERT_FAILS(tg_index_select(NULL, 0, i1), TG_ERR_ARG, "tg_index_select");
    ASSERT_FAILS(tg_index_select(x, 0, NULL), TG_ERR_ARG, "index");
    ASSERT_FAILS(tg_gather(x, 1, tg_zeros(TG_I64, TG_SHAPE(4, 2))), TG_ERR_SHAPE,
                 "tg_gather: index [4, 2] must have x's 2 dims, each no larger than x [3, 4] "
                 "outside dim 1");
    ASSERT_FAILS(tg_gather(x, 1, tg_zeros(TG_I64, TG_SHAPE(3))), TG_ERR_SHAPE, "tg_gather");
    ASSERT_FAILS(tg_gather(x, 0, tg_from_data(TG_I32, TG_SHAPE(1, 1), (const int32_t[]){3})),
                 TG_ERR_RANGE, "index 3 at position 0 is out of range for dim 0 of extent 3");
    /* an empty index: an empty result */
    tg_tensor *e = tg_index_select(x, 0, tg_zeros(TG_I64, TG_SHAPE(0)));
    assert_shape(e, TG_SHAPE(0, 4));
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- matmul */

START_TEST(matmul_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    /* (2, 3) @ (3, 2) by hand */
    tg_tensor *a = mk(dt, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = mk(dt, TG_SHAPE(3, 2), (const double[]){7, 8, 9, 10, 11, 12});
    tg_tensor *c = tg_matmul(a, b);
    assert_shape(c, TG_SHAPE(2, 2));
    assert_values(c, (const double[]){58, 64, 139, 154}, 4);
    /* transposed operands (views) */
    c = tg_matmul(tg_transpose(b, 0, 1), tg_transpose(a, 0, 1));
    assert_values(c, (const double[]){58, 139, 64, 154}, 4);

    /* batched (2, 2, 3) @ (2, 3, 2) and shared (3, 2) */
    double av[12], bv[12];
    for (int i = 0; i < 12; i++)
        av[i] = cos(i * 0.7), bv[i] = sin(i * 0.3 + 1);
    tg_tensor *ab = mk(dt, TG_SHAPE(2, 2, 3), av), *bb = mk(dt, TG_SHAPE(2, 3, 2), bv);
    tg_tensor *cb = tg_matmul(ab, bb), *cs = tg_matmul(ab, b);
    assert_shape(cb, TG_SHAPE(2, 2, 2));
    assert_shape(cs, TG_SHAPE(2, 2, 2));
    const double b2[] = {7, 8, 9, 10, 11, 12};
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                double acc = 0, accs = 0;
                for (int p = 0; p < 3; p++) {
                    acc += av[n * 6 + i * 3 + p] * bv[n * 6 + p * 2 + j];
                    accs += av[n * 6 + i * 3 + p] * b2[p * 2 + j];
                }
                TG_ASSERT_CLOSE(at(cb, n * 4 + i * 2 + j), acc, 1e-6, 1e-6);
                TG_ASSERT_CLOSE(at(cs, n * 4 + i * 2 + j), accs, 1e-5, 1e-6);
            }
    /* an empty inner dim gives zeros */
    tg_tensor *e = tg_matmul(tg_zeros(dt, TG_SHAPE(2, 0)), tg_zeros(dt, TG_SHAPE(0, 3)));
    assert_values(e, (const double[]){0, 0, 0, 0, 0, 0}, 6);
    tg_scope_pop(s);
}
END_TEST

/* Broadcast batch dims and 1-D operands against a loop over the broadcast
 * indices written out here (numpy's matmul rules). */
START_TEST(matmul_broadcast_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    double av[2 * 3 * 4], bv[3 * 4 * 5];
    for (int i = 0; i < 24; i++)
        av[i] = cos(i * 0.9) + 0.1 * i;
    for (int i = 0; i < 60; i++)
        bv[i] = sin(i * 0.4 - 1);
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    /* (2, 1, 3, 4) @ (3, 4, 5) -> (2, 3, 3, 5): a's batch (i, 0), b's (j) */
    tg_tensor *a = mk(dt, TG_SHAPE(2, 1, 3, 4), av), *b = mk(dt, TG_SHAPE(3, 4, 5), bv);
    tg_tensor *c = tg_matmul(a, b);
    assert_shape(c, TG_SHAPE(2, 3, 3, 5));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int r = 0; r < 3; r++)
                for (int q = 0; q < 5; q++) {
                    double acc = 0;
                    for (int p = 0; p < 4; p++)
                        acc += av[i * 12 + r * 4 + p] * bv[j * 20 + p * 5 + q];
                    TG_ASSERT_CLOSE(at(c, ((i * 3 + j) * 3 + r) * 5 + q), acc, tol, tol);
                }
    /* a shared by b's batch: (3, 4) @ (3, 4, 5) -> (3, 3, 5) */
    tg_tensor *a2 = mk(dt, TG_SHAPE(3, 4), av);
    c = tg_matmul(a2, b);
    assert_shape(c, TG_SHAPE(3, 3, 5));
    for (int j = 0; j < 3; j++)
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 5; q++) {
                double acc = 0;
                for (int p = 0; p < 4; p++)
                    acc += av[r * 4 + p] * bv[j * 20 + p * 5 + q];
                TG_ASSERT_CLOSE(at(c, (j * 3 + r) * 5 + q), acc, tol, tol);
            }
    /* vector @ batch: (4) @ (3, 4, 5) -> (3, 5); batch @ vector: (2, 3, 4) @ (4) -> (2, 3) */
    tg_tensor *v = mk(dt, TG_SHAPE(4), av);
    c = tg_matmul(v, b);
    assert_shape(c, TG_SHAPE(3, 5));
    for (int j = 0; j < 3; j++)
        for (int q = 0; q < 5; q++) {
            double acc = 0;
            for (int p = 0; p < 4; p++)
                acc += av[p] * bv[j * 20 + p * 5 + q];
            TG_ASSERT_CLOSE(at(c, j * 5 + q), acc, tol, tol);
        }
    tg_tensor *a3 = mk(dt, TG_SHAPE(2, 3, 4), av), *w = mk(dt, TG_SHAPE(4), bv);
    c = tg_matmul(a3, w);
    assert_shape(c, TG_SHAPE(2, 3));
    for (int i = 0; i < 6; i++) {
        double acc = 0;
        for (int p = 0; p < 4; p++)
            acc += av[i * 4 + p] * bv[p];
        TG_ASSERT_CLOSE(at(c, i), acc, tol, tol);
    }
    /* vector @ vector is a 0-d dot product; its gradients are the other vector */
    TG_OK_(tg_set_requires_grad(v, true));
    TG_OK_(tg_set_requires_grad(w, true));
    tg_tensor *d = tg_matmul(v, w);
    ck_assert_int_eq(tg_tensor_ndim(d), 0);
    double dot = 0;
    for (int p = 0; p < 4; p++)
        dot += av[p] * bv[p];
    TG_ASSERT_CLOSE(tg_item(d), dot, tol, tol);
    TG_OK_(tg_backward(d));
    assert_shape(tg_grad(v), TG_SHAPE(4));
    for (int p = 0; p < 4; p++) {
        TG_ASSERT_CLOSE(at(tg_grad(v), p), bv[p], tol, tol);
        TG_ASSERT_CLOSE(at(tg_grad(w), p), av[p], tol, tol);
    }
    tg_scope_pop(s);
}
END_TEST

START_TEST(matmul_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2, 3));
    ASSERT_FAILS(tg_matmul(a, tg_zeros(TG_F32, TG_SHAPE(2, 3))), TG_ERR_SHAPE,
                 "tg_matmul: inner dims differ in [2, 3] @ [2, 3]");
    ASSERT_FAILS(tg_matmul(a, tg_zeros(TG_F32, TG_SHAPE(2))), TG_ERR_SHAPE,
                 "tg_matmul: inner dims differ in [2, 3] @ [2]");
    ASSERT_FAILS(tg_matmul(tg_zeros(TG_F32, TG_SHAPE(3)), a), TG_ERR_SHAPE,
                 "inner dims differ in [3] @ [2, 3]");
    ASSERT_FAILS(tg_matmul(a, tg_zeros(TG_F32, 0, NULL)), TG_ERR_SHAPE, "at least 1-D");
    ASSERT_FAILS(tg_matmul(tg_zeros(TG_F32, TG_SHAPE(2, 2, 3)), tg_zeros(TG_F32, TG_SHAPE(3, 3, 2))),
                 TG_ERR_SHAPE, "batch dims of [2, 2, 3] @ [3, 3, 2] cannot be broadcast (dim 0: 2 and 3)");
    ASSERT_FAILS(tg_matmul(tg_zeros(TG_F32, TG_SHAPE(4, 2, 2, 3)), tg_zeros(TG_F32, TG_SHAPE(3, 3, 2))),
                 TG_ERR_SHAPE, "cannot be broadcast (dim 1: 2 and 3)");
    ASSERT_FAILS(tg_matmul(a, tg_zeros(TG_F64, TG_SHAPE(3, 2))), TG_ERR_DTYPE, "tg_matmul");
    ASSERT_FAILS(tg_matmul(NULL, a), TG_ERR_ARG, "tg_matmul");
    ASSERT_FAILS(tg_matmul(a, NULL), TG_ERR_ARG, "tg_matmul");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- views */

START_TEST(views_share_storage)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_arange(TG_F32, 0, 24, 1);
    tg_tensor *r = tg_reshape(x, TG_SHAPE(2, 3, -1));
    assert_shape(r, TG_SHAPE(2, 3, 4));
    ck_assert(tg_tensor_shares_storage(r, x));
    tg_tensor *p = tg_permute(r, (const int[]){2, 0, 1});
    assert_shape(p, TG_SHAPE(4, 2, 3));
    ck_assert(tg_tensor_shares_storage(p, x));
    ck_assert_double_eq(tg_get(p, (const int64_t[]){3, 1, 2}), (1 * 3 + 2) * 4 + 3);
    tg_tensor *t = tg_transpose(r, -1, 0);
    assert_shape(t, TG_SHAPE(4, 3, 2));
    ck_assert(tg_tensor_shares_storage(t, x));
    tg_tensor *sl = tg_slice(r, 1, 1, 3);
    assert_shape(sl, TG_SHAPE(2, 2, 4));
    ck_assert(tg_tensor_shares_storage(sl, x));
    ck_assert_double_eq(tg_get(sl, (const int64_t[]){1, 0, 2}), (1 * 3 + 1) * 4 + 2);
    sl = tg_slice(r, -1, -3, -1);
    assert_shape(sl, TG_SHAPE(2, 3, 2));
    ck_assert_double_eq(tg_get(sl, (const int64_t[]){0, 0, 0}), 1);
    /* a step: r[:, :, 1:4:2] holds k = 1, 3; r[:, 0:3:2] rows j = 0, 2 */
    tg_tensor *stp = tg_slice_step(r, 2, 1, 4, 2);
    assert_shape(stp, TG_SHAPE(2, 3, 2));
    ck_assert(tg_tensor_shares_storage(stp, x));
    ck_assert_double_eq(tg_get(stp, (const int64_t[]){1, 2, 1}), (1 * 3 + 2) * 4 + 3);
    stp = tg_slice_step(r, 1, 0, 3, 2);
    assert_shape(stp, TG_SHAPE(2, 2, 4));
    ck_assert_double_eq(tg_get(stp, (const int64_t[]){0, 1, 3}), (0 * 3 + 2) * 4 + 3);
    assert_shape(tg_slice_step(r, 2, 0, 4, 9), TG_SHAPE(2, 3, 1));
    assert_shape(tg_slice_step(r, 2, 2, 2, 3), TG_SHAPE(2, 3, 0));
    ASSERT_FAILS(tg_slice_step(r, 2, 0, 4, 0), TG_ERR_ARG, "tg_slice: step must be at least 1, not 0");
    ASSERT_FAILS(tg_slice_step(r, 2, 0, 5, 2), TG_ERR_RANGE, "out of bounds");
    tg_tensor *f = tg_flatten(r, 1, -1);
    assert_shape(f, TG_SHAPE(2, 12));
    ck_assert(tg_tensor_shares_storage(f, x));
    tg_tensor *u = tg_unsqueeze(r, 1);
    assert_shape(u, TG_SHAPE(2, 1, 3, 4));
    assert_shape(tg_unsqueeze(r, -1), TG_SHAPE(2, 3, 4, 1));
    assert_shape(tg_squeeze(u, 1), TG_SHAPE(2, 3, 4));
    ck_assert(tg_tensor_shares_storage(tg_squeeze(u, 1), x));
    /* a slice along the first dim then a reshape is still a view */
    tg_tensor *v = tg_reshape(tg_slice(r, 0, 1, 2), TG_SHAPE(12));
    ck_assert(tg_tensor_shares_storage(v, x));
    ck_assert_double_eq(at(v, 0), 12);
    /* a transposed tensor cannot be flattened by strides: a copy with the right values */
    tg_tensor *c = tg_reshape(tg_transpose(tg_reshape(x, TG_SHAPE(4, 6)), 0, 1), TG_SHAPE(24));
    ck_assert(!tg_tensor_shares_storage(c, x));
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++)
            ck_assert_double_eq(at(c, i * 4 + j), j * 6 + i);
    /* unsqueeze of a permuted view keeps sharing */
    ck_assert(tg_tensor_shares_storage(tg_unsqueeze(p, 0), x));
    /* writes through a view show in the base */
    TG_OK_(tg_set(sl, (const int64_t[]){0, 0, 0}, 100));
    ck_assert_double_eq(at(x, 1), 100);
    tg_scope_pop(s);
}
END_TEST

/* Random views (permutes and slices of random shapes) reshaped to random shapes of
 * the same size: the values always match a reshape of a contiguous copy, whether
 * the result is a view or a copy; and a contiguous input always gives a view. */
START_TEST(reshape_of_views_property)
{
    tg_rng rng;
    tg_rng_seed(&rng, 31337);
    for (int trial = 0; trial < 300; trial++) {
        tg_scope *s = tg_scope_push();
        int nd = 1 + (int)tg_rng_below(&rng, 4);
        int64_t shape[4];
        for (int d = 0; d < nd; d++)
            shape[d] = 1 + (int64_t)tg_rng_below(&rng, 4);
        tg_tensor *x = tg_arange(TG_F64, 0, (double)tg_shape_numel(nd, shape), 1);
        tg_tensor *v = tg_reshape(x, nd, shape);
        /* a random permutation and maybe a slice */
        int perm[4] = {0, 1, 2, 3};
        for (int d = nd - 1; d > 0; d--) {
            int j = (int)tg_rng_below(&rng, (uint64_t)d + 1), t = perm[d];
            perm[d] = perm[j];
            perm[j] = t;
        }
        v = tg_permute(v, perm);
        if (tg_rng_below(&rng, 2)) {
            int d = (int)tg_rng_below(&rng, (uint64_t)nd);
            int64_t len = tg_tensor_dim(v, d), a = (int64_t)tg_rng_below(&rng, (uint64_t)len);
            v = tg_slice(v, d, a, a + 1 + (int64_t)tg_rng_below(&rng, (uint64_t)(len - a)));
        }
        /* a random target shape: the element count split into factors, with some
         * extent-1 dims mixed in; the last dim takes what is left */
        int64_t n = tg_tensor_numel(v), rest = n, target[5];
        int tn = 0;
        while (tn < 5) {
            if (tg_rng_below(&rng, 4) == 0) {
                target[tn++] = 1;
                continue;
            }
            int64_t f = 1 + (int64_t)tg_rng_below(&rng, (uint64_t)rest);
            while (rest % f)
                f--;
            target[tn++] = f;
            rest /= f;
            if (rest == 1)
                break;
        }
        target[tn - 1] *= rest;
        tg_tensor *r = tg_reshape(v, tn, target);
        tg_tensor *want = tg_reshape(tg_tensor_copy(v), tn, target);
        TG_CHECK(r != NULL && want != NULL);
        assert_shape(r, tn, target);
        for (int64_t i = 0; i < n; i++)
            ck_assert_double_eq(at(r, i), at(want, i));
        if (tg_tensor_is_contiguous(v))
            ck_assert(tg_tensor_shares_storage(r, x));
        tg_scope_pop(s);
    }
}
END_TEST

START_TEST(view_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(2, 3));
    ASSERT_FAILS(tg_reshape(x, TG_SHAPE(4, 2)), TG_ERR_SHAPE, "tg_reshape: cannot reshape [2, 3]");
    ASSERT_FAILS(tg_reshape(x, TG_SHAPE(-1, -1)), TG_ERR_SHAPE, "tg_reshape");
    ASSERT_FAILS(tg_reshape(x, TG_SHAPE(-1, 4)), TG_ERR_SHAPE, "tg_reshape");
    ASSERT_FAILS(tg_reshape(x, 9, (const int64_t[9]){1}), TG_ERR_SHAPE, "tg_reshape");
    ASSERT_FAILS(tg_reshape(x, 2, NULL), TG_ERR_ARG, "tg_reshape: argument 'shape'");
    /* the product of huge extents must be caught, not overflow */
    const int64_t big = INT64_C(1) << 62;
    ASSERT_FAILS(tg_reshape(x, TG_SHAPE(big, big, -1)), TG_ERR_SHAPE, "too many elements");
    ASSERT_FAILS(tg_reshape(tg_zeros(TG_F32, TG_SHAPE(0, 3)), TG_SHAPE(big, big, 0)),
                 TG_ERR_SHAPE, "tg_reshape");
    ASSERT_FAILS(tg_reshape(NULL, TG_SHAPE(6)), TG_ERR_ARG, "tg_reshape");
    ASSERT_FAILS(tg_permute(x, (const int[]){0, 0}), TG_ERR_ARG, "tg_permute");
    ASSERT_FAILS(tg_permute(x, (const int[]){0, 2}), TG_ERR_RANGE, "tg_permute");
    ASSERT_FAILS(tg_permute(x, NULL), TG_ERR_ARG, "tg_permute");
    ASSERT_FAILS(tg_permute(NULL, (const int[]){0, 1}), TG_ERR_ARG, "tg_permute");
    ASSERT_FAILS(tg_transpose(x, 0, 2), TG_ERR_RANGE, "tg_transpose");
    ASSERT_FAILS(tg_transpose(NULL, 0, 1), TG_ERR_ARG, "tg_transpose");
    ASSERT_FAILS(tg_slice(x, 1, 2, 5), TG_ERR_RANGE, "tg_slice: range 2..5 out of bounds for dim 1 of [2, 3]");
    ASSERT_FAILS(tg_slice(x, 0, 2, 1), TG_ERR_RANGE, "tg_slice");
    ASSERT_FAILS(tg_slice(x, 2, 0, 1), TG_ERR_RANGE, "tg_slice");
    ASSERT_FAILS(tg_slice(NULL, 0, 0, 1), TG_ERR_ARG, "tg_slice");
    ASSERT_FAILS(tg_squeeze(x, 0), TG_ERR_SHAPE, "tg_squeeze: dim 0 of [2, 3] has extent 2");
    ASSERT_FAILS(tg_squeeze(NULL, 0), TG_ERR_ARG, "tg_squeeze");
    ASSERT_FAILS(tg_unsqueeze(x, 3), TG_ERR_RANGE, "tg_unsqueeze");
    ASSERT_FAILS(tg_unsqueeze(NULL, 0), TG_ERR_ARG, "tg_unsqueeze");
    ASSERT_FAILS(tg_flatten(x, 1, 0), TG_ERR_ARG, "tg_flatten");
    ASSERT_FAILS(tg_flatten(x, 0, 5), TG_ERR_RANGE, "tg_flatten");
    ASSERT_FAILS(tg_flatten(NULL, 0, 1), TG_ERR_ARG, "tg_flatten");
    ASSERT_FAILS(tg_contiguous(NULL), TG_ERR_ARG, "tg_contiguous");
    tg_scope_pop(s);
}
END_TEST

/* tg_contiguous, the differentiable view that replaced the raw
 * tg_tensor_contiguous in the public API: x itself when contiguous, else a
 * row-major copy whose gradient reaches x. */
START_TEST(contiguous_gradient)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_tensor *x = mk(dt, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    TG_OK_(tg_set_requires_grad(x, true));
    ck_assert_ptr_eq(tg_contiguous(x), x);
    tg_tensor *t = tg_transpose(x, 0, 1); /* (3, 2), strided */
    tg_tensor *c = tg_contiguous(t);
    assert_shape(c, TG_SHAPE(3, 2));
    ck_assert(tg_tensor_is_contiguous(c));
    ck_assert(!tg_tensor_shares_storage(c, x));
    assert_values(c, (const double[]){1, 4, 2, 5, 3, 6}, 6);
    /* loss = sum(w * c) with w[i][j] = 10 i + j: dloss/dx[j][i] = 10 i + j */
    tg_tensor *w = mk(dt, TG_SHAPE(3, 2), (const double[]){0, 1, 10, 11, 20, 21});
    TG_OK_(tg_backward(tg_sum(tg_mul(w, c), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){0, 10, 20, 1, 11, 21}, 6);
    /* a slice's copy: the gradient lands in the sliced columns only */
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_contiguous(tg_slice(x, 1, 1, 3)), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){0, 1, 1, 0, 1, 1}, 6);
    tg_scope_pop(s);
}
END_TEST

START_TEST(concat_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_tensor *a = mk(dt, TG_SHAPE(2, 1), (const double[]){1, 2});
    tg_tensor *b = mk(dt, TG_SHAPE(2, 2), (const double[]){3, 4, 5, 6});
    tg_tensor *c = tg_concat((tg_tensor *[]){a, b, a}, 3, -1);
    assert_shape(c, TG_SHAPE(2, 4));
    assert_values(c, (const double[]){1, 3, 4, 1, 2, 5, 6, 2}, 8);
    c = tg_concat((tg_tensor *[]){b, tg_transpose(b, 0, 1)}, 2, 0);
    assert_shape(c, TG_SHAPE(4, 2));
    assert_values(c, (const double[]){3, 4, 5, 6, 3, 5, 4, 6}, 8);
    /* integer tensors concatenate too */
    tg_tensor *l = tg_concat((tg_tensor *[]){mk(TG_I64, TG_SHAPE(1), (const double[]){7}),
                                             mk(TG_I64, TG_SHAPE(2), (const double[]){8, 9})},
                             2, 0);
    ck_assert_int_eq(tg_tensor_dtype(l), TG_I64);
    assert_values(l, (const double[]){7, 8, 9}, 3);
    tg_scope_pop(s);
}
END_TEST

START_TEST(concat_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F32, TG_SHAPE(3, 3));
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a, b}, 2, 1), TG_ERR_SHAPE,
                 "tg_concat: xs[1] has shape [3, 3], xs[0] [2, 3]");
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a, tg_zeros(TG_F32, TG_SHAPE(6))}, 2, 0),
                 TG_ERR_SHAPE, "tg_concat");
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a, tg_zeros(TG_F64, TG_SHAPE(2, 3))}, 2, 0),
                 TG_ERR_DTYPE, "tg_concat: xs[1] is f64 but xs[0] is f32");
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a, NULL}, 2, 0), TG_ERR_ARG, "tg_concat");
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a}, 0, 0), TG_ERR_ARG, "tg_concat");
    ASSERT_FAILS(tg_concat(NULL, 1, 0), TG_ERR_ARG, "tg_concat");
    ASSERT_FAILS(tg_concat((tg_tensor *[]){a, b}, 2, 2), TG_ERR_RANGE, "tg_concat");
    /* empty tensors may have huge extents; their sum along dim must not overflow */
    tg_tensor *e = tg_zeros(TG_F32, TG_SHAPE(0, INT64_C(1) << 59));
    TG_CHECK(e != NULL);
    tg_tensor *es[16];
    for (int i = 0; i < 16; i++)
        es[i] = e;
    ASSERT_FAILS(tg_concat(es, 16, 1), TG_ERR_SHAPE, "tg_concat: the extents along dim 1");
    assert_shape(tg_concat(es, 3, 0), TG_SHAPE(0, INT64_C(1) << 59));
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- softmax, losses */

START_TEST(softmax_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    double tol = dt == TG_F32 ? 1e-5 : 1e-12; /* f32 runs oneDNN's approximations */
    tg_tensor *x = mk(dt, TG_SHAPE(2, 3), A6);
    tg_tensor *y = tg_softmax(x, 1), *ly = tg_log_softmax(x, -1);
    for (int r = 0; r < 2; r++) {
        double z = 0;
        for (int c = 0; c < 3; c++)
            z += exp(A6[r * 3 + c]);
        for (int c = 0; c < 3; c++) {
            TG_ASSERT_CLOSE(at(y, r * 3 + c), exp(A6[r * 3 + c]) / z, tol, tol);
            TG_ASSERT_CLOSE(at(ly, r * 3 + c), A6[r * 3 + c] - log(z), tol, tol);
        }
    }
    /* along axis 0 */
    y = tg_softmax(x, 0);
    for (int c = 0; c < 3; c++) {
        double z = exp(A6[c]) + exp(A6[3 + c]);
        TG_ASSERT_CLOSE(at(y, c), exp(A6[c]) / z, tol, tol);
        TG_ASSERT_CLOSE(at(y, 3 + c), exp(A6[3 + c]) / z, tol, tol);
    }
    ASSERT_FAILS(tg_softmax(x, 2), TG_ERR_RANGE, "tg_softmax: axis 2");
    ASSERT_FAILS(tg_log_softmax(x, -3), TG_ERR_RANGE, "tg_log_softmax");
    ASSERT_FAILS(tg_softmax(NULL, 0), TG_ERR_ARG, "tg_softmax");
    ASSERT_FAILS(tg_log_softmax(NULL, 0), TG_ERR_ARG, "tg_log_softmax");
    ASSERT_FAILS(tg_softmax(tg_zeros(TG_I32, TG_SHAPE(3)), 0), TG_ERR_DTYPE, "tg_softmax");
    ASSERT_FAILS(tg_softmax(mk(dt, 0, NULL, A6), 0), TG_ERR_RANGE, "tg_softmax");
    tg_scope_pop(s);
}
END_TEST

static const tg_dtype label_dtypes[] = {TG_I32, TG_I64, TG_U8};

START_TEST(cross_entropy_values)
{
    tg_dtype dt = float_dtypes[_i % 2];
    tg_dtype lt = label_dtypes[_i / 2];
    tg_scope *s = tg_scope_push();
    tg_tensor *x = mk(dt, TG_SHAPE(2, 3), A6);
    tg_tensor *lab = mk(lt, TG_SHAPE(2), (const double[]){2, 0});
    double want = 0;
    const int labels[] = {2, 0};
    for (int r = 0; r < 2; r++) {
        double z = 0;
        for (int c = 0; c < 3; c++)
            z += exp(A6[r * 3 + c]);
        want += log(z) - A6[r * 3 + labels[r]];
    }
    want /= 2;
    tg_tensor *l = tg_cross_entropy(x, lab);
    ck_assert_int_eq(tg_tensor_ndim(l), 0);
    ck_assert_int_eq(tg_tensor_dtype(l), dt);
    TG_ASSERT_CLOSE(tg_item(l), want, 1e-6, 1e-6);

    /* gradient: (softmax - onehot) / N */
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_backward(tg_cross_entropy(x, lab)));
    for (int r = 0; r < 2; r++) {
        double z = 0;
        for (int c = 0; c < 3; c++)
            z += exp(A6[r * 3 + c]);
        for (int c = 0; c < 3; c++)
            TG_ASSERT_CLOSE(at(tg_grad(x), r * 3 + c),
                            (exp(A6[r * 3 + c]) / z - (c == labels[r])) / 2, 1e-7, 1e-6);
    }
    /* huge logits stay finite */
    tg_tensor *big = mk(dt, TG_SHAPE(1, 2), (const double[]){1000, -1000});
    TG_ASSERT_CLOSE(tg_item(tg_cross_entropy(big, mk(lt, TG_SHAPE(1), (const double[]){1}))),
                    2000, 0, 1e-6);
    tg_scope_pop(s);
}
END_TEST

START_TEST(cross_entropy_probs_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    /* row 0: inside the clip range; row 1: p = 0 is clipped to 1e-7; row 2: p = 1 */
    const double p[] = {0.2, 0.5, 0.3, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0};
    tg_tensor *x = mk(dt, TG_SHAPE(3, 3), p);
    tg_tensor *lab = mk(TG_I64, TG_SHAPE(3), (const double[]){1, 0, 0});
    double want = (-log(0.5) - log(1e-7) - log(1 - 1e-7)) / 3;
    TG_ASSERT_CLOSE(tg_item(tg_cross_entropy_probs(x, lab)), want, 1e-6, 1e-6);
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_backward(tg_cross_entropy_probs(x, lab)));
    /* only the unclipped label entry gets a gradient: -1 / (N p) */
    const double g[] = {0, -1 / (3 * 0.5), 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        TG_ASSERT_CLOSE(at(tg_grad(x), i), g[i], 1e-7, 1e-6);
    tg_scope_pop(s);
}
END_TEST

/* tg_cross_entropy_ex against the PyTorch formula evaluated here row by row:
 * (1 - eps) * weighted NLL + eps / C * weighted sum over classes of -log p, both
 * over D = the sum of the label weights of the rows not ignored. */
START_TEST(cross_entropy_options_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    enum { N = 4, C = 3 };
    const double z[N * C] = {0.5, -1.25, 2.0, 3.5, -0.75, 1.5, 0.0, 0.25, -0.5, 1.0, 1.0, -2.0};
    const int64_t lab[N] = {2, 0, 7, 1}; /* 7 is ignored */
    const double w[C] = {0.5, 2.0, 1.5}, eps = 0.2;
    double logp[N][C], rowloss[N], total = 0, denom = 0;
    for (int r = 0; r < N; r++) {
        double se = 0;
        for (int c = 0; c < C; c++)
            se += exp(z[r * C + c]);
        for (int c = 0; c < C; c++)
            logp[r][c] = z[r * C + c] - log(se);
        rowloss[r] = 0;
        if (lab[r] == 7)
            continue;
        double nll = -w[lab[r]] * logp[r][lab[r]], smooth = 0;
        for (int c = 0; c < C; c++)
            smooth -= w[c] * logp[r][c];
        rowloss[r] = (1 - eps) * nll + eps / C * smooth;
        total += rowloss[r];
        denom += w[lab[r]];
    }
    tg_tensor *x = mk(dt, TG_SHAPE(N, C), z);
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(N), lab);
    tg_cross_entropy_opts o = TG_CROSS_ENTROPY_OPTS_INIT;
    o.class_weights = mk(TG_F32, TG_SHAPE(C), w);
    o.label_smoothing = eps;
    o.ignore_index = 7;
    double tol = dt == TG_F32 ? 1e-6 : 1e-12;
    TG_ASSERT_CLOSE(tg_item(tg_cross_entropy_ex(x, y, &o)), total / denom, tol, tol);
    o.reduction = TG_REDUCTION_SUM;
    TG_ASSERT_CLOSE(tg_item(tg_cross_entropy_ex(x, y, &o)), total, tol, tol);
    o.reduction = TG_REDUCTION_NONE;
    tg_tensor *per = tg_cross_entropy_ex(x, y, &o);
    ck_assert_int_eq(tg_tensor_ndim(per), 1);
    ck_assert_int_eq(tg_tensor_dim(per, 0), N);
    for (int r = 0; r < N; r++)
        TG_ASSERT_CLOSE(at(per, r), rowloss[r], tol, tol);

    /* Gradient of the mean: d/dz_rk = (A_r p_rk - a_rk) / D with a_rk = w_k q_rk. */
    o.reduction = TG_REDUCTION_MEAN;
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_backward(tg_cross_entropy_ex(x, y, &o)));
    for (int r = 0; r < N; r++) {
        double a[C], A = 0;
        for (int c = 0; c < C; c++) {
            a[c] = lab[r] == 7 ? 0 : w[c] * ((1 - eps) * (c == lab[r]) + eps / C);
            A += a[c];
        }
        for (int c = 0; c < C; c++)
            TG_ASSERT_CLOSE(at(tg_grad(x), r * C + c), (A * exp(logp[r][c]) - a[c]) / denom,
                            tol, 1e-6);
    }

    /* Defaults are tg_cross_entropy exactly; every row ignored gives 0, not NaN. */
    tg_tensor *y2 = tg_from_data(TG_I64, TG_SHAPE(N), (const int64_t[]){2, 0, 1, 1});
    ck_assert(tg_item(tg_cross_entropy_ex(x, y2, NULL)) == tg_item(tg_cross_entropy(x, y2)));
    tg_cross_entropy_opts all = TG_CROSS_ENTROPY_OPTS_INIT;
    all.ignore_index = 1;
    tg_tensor *x2 = mk(dt, TG_SHAPE(N, C), z);
    TG_OK_(tg_set_requires_grad(x2, true));
    tg_tensor *l0 = tg_cross_entropy_ex(x2, tg_from_data(TG_I64, TG_SHAPE(N),
                                        (const int64_t[]){1, 1, 1, 1}), &all);
    ck_assert(tg_item(l0) == 0);
    TG_OK_(tg_backward(l0));
    for (int i = 0; i < N * C; i++)
        ck_assert(at(tg_grad(x2), i) == 0);
    tg_scope_pop(s);
}
END_TEST

START_TEST(cross_entropy_options_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(3, 4));
    tg_tensor *lab = tg_from_data(TG_I64, TG_SHAPE(3), (const int64_t[]){0, 3, -100});
    tg_cross_entropy_opts o = TG_CROSS_ENTROPY_OPTS_INIT;
    /* -100 is a bad label unless it is the ignored one */
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_RANGE,
                 "tg_cross_entropy_ex: label -100 at row 2 is out of range");
    o.ignore_index = -100;
    ck_assert_ptr_nonnull(tg_cross_entropy_ex(x, lab, &o));
    o.label_smoothing = 1.5;
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_ARG,
                 "tg_cross_entropy_ex: label_smoothing must be in [0, 1], not 1.5");
    o.label_smoothing = NAN;
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_ARG, "label_smoothing");
    o.label_smoothing = 0;
    o.reduction = (tg_reduction)7;
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_ARG, "reduction 7 is not a tg_reduction");
    o.reduction = TG_REDUCTION_MEAN;
    o.class_weights = tg_ones(TG_F32, TG_SHAPE(3));
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_SHAPE,
                 "class_weights [3] do not match 4 classes");
    o.class_weights = tg_from_data(TG_I32, TG_SHAPE(4), (const int32_t[]){1, 1, 1, 1});
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_DTYPE, "class_weights must be floating");
    o.class_weights = mk(TG_F64, TG_SHAPE(4), (const double[]){1, -1, 1, 1});
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_ARG,
                 "class_weights[1] is -1 (must be finite, >= 0)");
    o.class_weights = mk(TG_F64, TG_SHAPE(4), (const double[]){1, 1, INFINITY, 1});
    ASSERT_FAILS(tg_cross_entropy_ex(x, lab, &o), TG_ERR_ARG, "class_weights[2] is inf");
    ASSERT_FAILS(tg_cross_entropy_ex(NULL, lab, NULL), TG_ERR_ARG, "logits");
    tg_scope_pop(s);
}
END_TEST

START_TEST(loss_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(3, 4));
    tg_tensor *lab = mk(TG_I32, TG_SHAPE(3), (const double[]){0, 4, 1});
    ASSERT_FAILS(tg_cross_entropy(x, lab), TG_ERR_RANGE,
                 "tg_cross_entropy: label 4 at row 1 is out of range for 4 classes");
    tg_tensor *neg = mk(TG_I64, TG_SHAPE(3), (const double[]){0, 1, -1});
    ASSERT_FAILS(tg_cross_entropy_probs(x, neg), TG_ERR_RANGE, "label -1 at row 2");
    ASSERT_FAILS(tg_cross_entropy(x, tg_zeros(TG_F32, TG_SHAPE(3))), TG_ERR_DTYPE,
                 "labels must be i32, i64 or u8, got f32");
    ASSERT_FAILS(tg_cross_entropy(x, tg_zeros(TG_I64, TG_SHAPE(4))), TG_ERR_SHAPE,
                 "tg_cross_entropy: labels [4] do not match logits [3, 4]");
    ASSERT_FAILS(tg_cross_entropy(x, tg_zeros(TG_I64, TG_SHAPE(3, 1))), TG_ERR_SHAPE, "labels");
    ASSERT_FAILS(tg_cross_entropy(tg_zeros(TG_F32, TG_SHAPE(12)), lab), TG_ERR_SHAPE,
                 "tg_cross_entropy: logits must be 2-D");
    ASSERT_FAILS(tg_cross_entropy(tg_zeros(TG_F32, TG_SHAPE(0, 4)), tg_zeros(TG_I64, TG_SHAPE(0))),
                 TG_ERR_SHAPE, "empty");
    ASSERT_FAILS(tg_cross_entropy(tg_zeros(TG_I32, TG_SHAPE(3, 4)), lab), TG_ERR_DTYPE,
                 "tg_cross_entropy");
    ASSERT_FAILS(tg_cross_entropy(NULL, lab), TG_ERR_ARG, "tg_cross_entropy");
    ASSERT_FAILS(tg_cross_entropy(x, NULL), TG_ERR_ARG, "tg_cross_entropy");
    ASSERT_FAILS(tg_cross_entropy_probs(NULL, lab), TG_ERR_ARG, "tg_cross_entropy_probs");
    ASSERT_FAILS(tg_mse(x, tg_zeros(TG_F32, TG_SHAPE(4, 3))), TG_ERR_SHAPE,
                 "tg_mse: shapes [3, 4] and [4, 3] cannot be broadcast");
    ASSERT_FAILS(tg_mse(x, tg_zeros(TG_F64, TG_SHAPE(3, 4))), TG_ERR_DTYPE, "tg_mse");
    ASSERT_FAILS(tg_mse(NULL, x), TG_ERR_ARG, "tg_mse");
    ASSERT_FAILS(tg_mse(x, NULL), TG_ERR_ARG, "tg_mse");
    tg_scope_pop(s);
}
END_TEST

START_TEST(mse_values)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    const double t[] = {0.0, 1.0, -1.0, 2.0, 0.5, 0.5};
    double want = 0;
    for (int i = 0; i < 6; i++)
        want += (A6[i] - t[i]) * (A6[i] - t[i]);
    want /= 6;
    tg_tensor *p = mk(dt, TG_SHAPE(2, 3), A6), *q = mk(dt, TG_SHAPE(2, 3), t);
    TG_OK_(tg_set_requires_grad(p, true));
    TG_OK_(tg_set_requires_grad(q, true));
    tg_tensor *l = tg_mse(p, q);
    ck_assert_int_eq(tg_tensor_ndim(l), 0);
    TG_ASSERT_CLOSE(tg_item(l), want, 1e-6, 1e-6);
    TG_OK_(tg_backward(l));
    for (int i = 0; i < 6; i++) {
        TG_ASSERT_CLOSE(at(tg_grad(p), i), 2 * (A6[i] - t[i]) / 6, 1e-7, 1e-6);
        TG_ASSERT_CLOSE(at(tg_grad(q), i), -2 * (A6[i] - t[i]) / 6, 1e-7, 1e-6);
    }
    /* a target row broadcast over the batch: (2, 3) against (3); its gradient sums
     * the two rows' */
    tg_tensor *row = mk(dt, TG_SHAPE(3), t);
    TG_OK_(tg_set_requires_grad(row, true));
    want = 0;
    for (int i = 0; i < 6; i++)
        want += (A6[i] - t[i % 3]) * (A6[i] - t[i % 3]) / 6;
    tg_tensor *lb = tg_mse(p, row);
    TG_ASSERT_CLOSE(tg_item(lb), want, 1e-6, 1e-6);
    TG_OK_(tg_backward(lb));
    assert_shape(tg_grad(row), TG_SHAPE(3));
    for (int j = 0; j < 3; j++)
        TG_ASSERT_CLOSE(at(tg_grad(row), j),
                        -2 * ((A6[j] - t[j]) + (A6[3 + j] - t[j])) / 6, 1e-7, 1e-6);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- plumbing */

START_TEST(backend_switch)
{
    ck_assert_int_eq(tg_get_backend(), TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    tg_tensor *f = tg_zeros(TG_F32, TG_SHAPE(1)), *d = tg_zeros(TG_F64, TG_SHAPE(1));
    ck_assert(tg_use_dnnl(f) && !tg_use_dnnl(d));
    ck_assert_int_eq(tg_set_backend(TG_BACKEND_REFERENCE), TG_BACKEND_AUTO);
    ck_assert_int_eq(tg_get_backend(), TG_BACKEND_REFERENCE);
    ck_assert(!tg_use_dnnl(f));
    ck_assert_int_eq(tg_set_backend((tg_backend)7), TG_BACKEND_REFERENCE);
    ck_assert_int_eq(tg_get_backend(), TG_BACKEND_REFERENCE); /* an invalid one is ignored */
    ck_assert_int_eq(tg_set_backend(TG_BACKEND_AUTO), TG_BACKEND_REFERENCE);
    tg_scope_pop(s);
}
END_TEST

START_TEST(sum_to_shape)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *g = mk(TG_F64, TG_SHAPE(2, 3), A6);
    tg_tensor *r = tg_sum_to_shape(g, TG_SHAPE(3));
    assert_values(r, (const double[]){A6[0] + A6[3], A6[1] + A6[4], A6[2] + A6[5]}, 3);
    r = tg_sum_to_shape(g, TG_SHAPE(2, 1));
    assert_shape(r, TG_SHAPE(2, 1));
    assert_values(r, (const double[]){A6[0] + A6[1] + A6[2], A6[3] + A6[4] + A6[5]}, 2);
    r = tg_sum_to_shape(g, 0, NULL);
    ck_assert_int_eq(tg_tensor_ndim(r), 0);
    TG_ASSERT_CLOSE(tg_item(r), A6[0] + A6[1] + A6[2] + A6[3] + A6[4] + A6[5], 1e-15, 0);
    ck_assert_ptr_eq(tg_sum_to_shape(g, TG_SHAPE(2, 3)), g); /* already there */
    ASSERT_FAILS(tg_sum_to_shape(g, TG_SHAPE(4)), TG_ERR_SHAPE,
                 "tg_sum_to_shape: cannot sum [2, 3] down to [4]");
    ASSERT_FAILS(tg_sum_to_shape(g, TG_SHAPE(1, 2, 3)), TG_ERR_SHAPE, "tg_sum_to_shape");
    ASSERT_FAILS(tg_sum_to_shape(NULL, TG_SHAPE(1)), TG_ERR_ARG, "tg_sum_to_shape");
    tg_scope_pop(s);
    /* with no scope the caller owns the result */
    tg_tensor *h = tg_zeros(TG_F32, TG_SHAPE(2, 2));
    tg_tensor *hr = tg_sum_to_shape(h, TG_SHAPE(2));
    tg_release(hr);
    tg_release(h);
}
END_TEST

/* Ops record only when grad mode is on and an input requires grad. */
START_TEST(recording_rules)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(2, 2)), *c = tg_ones(TG_F64, TG_SHAPE(2, 2));
    ck_assert(tg_is_leaf(tg_exp(x)) && !tg_requires_grad(tg_add(x, c)));
    TG_OK_(tg_set_requires_grad(x, true));
    ck_assert(!tg_is_leaf(tg_add(x, c)) && tg_requires_grad(tg_add(x, c)));
    ck_assert(!tg_is_leaf(tg_reshape(x, TG_SHAPE(4))));
    bool prev = tg_set_grad_enabled(false);
    ck_assert(tg_is_leaf(tg_add(x, c)) && tg_is_leaf(tg_softmax(x, 0)));
    ck_assert(tg_is_leaf(tg_slice(x, 0, 0, 1)));
    tg_set_grad_enabled(prev);
    tg_scope_pop(s);
}
END_TEST

/* Without a scope an op's result is the caller's to release; nodes holding saved
 * output views free cleanly (the fixture checks nothing leaks). */
START_TEST(unscoped_results_and_saved_views)
{
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(3, 4), -1, 1, NULL);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_softmax(x, 1);
    tg_tensor *e = tg_exp(y);
    tg_tensor *l = tg_sum(e, NULL, 0, false);
    TG_OK_(tg_backward(l));
    tg_release(l);
    tg_release(e);
    tg_release(y);
    tg_release(x);
}
END_TEST

/* Every op returns NULL for NULL inputs; the message names the op. */
START_TEST(null_inputs)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(2, 2));
    ASSERT_FAILS(tg_sub(NULL, x), TG_ERR_ARG, "tg_sub");
    ASSERT_FAILS(tg_mul(x, NULL), TG_ERR_ARG, "tg_mul");
    ASSERT_FAILS(tg_div(NULL, NULL), TG_ERR_ARG, "tg_div");
    ASSERT_FAILS(tg_pow_scalar(NULL, 2), TG_ERR_ARG, "tg_pow_scalar");
    /* a chain can be checked once at its end */
    ASSERT_FAILS(tg_relu(tg_sum(tg_matmul(x, tg_zeros(TG_F32, TG_SHAPE(3, 3))), NULL, 0, false)),
                 TG_ERR_ARG, "tg_relu");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- edge shapes */

/* sum(y) backward; every leaf's gradient has the leaf's shape. */
static void backward_gives_shapes(const char *what, tg_tensor *y, tg_tensor *const *leaves,
                                  int n)
{
    ck_assert_msg(y != NULL, "%s: %s", what, tg_last_error());
    tg_tensor *l = tg_sum(y, NULL, 0, false);
    ck_assert_msg(l && tg_backward(l) == TG_OK, "%s backward: %s", what, tg_last_error());
    for (int i = 0; i < n; i++) {
        ck_assert_msg(tg_grad(leaves[i]) && tg_tensor_same_shape(tg_grad(leaves[i]), leaves[i]),
                      "%s: gradient %d has the wrong shape", what, i);
        TG_OK_(tg_zero_grad(leaves[i]));
    }
}

/* Every core op on inputs with no elements, forward and backward, f32 and f64, on
 * both backends (_i: bit 0 dtype, bit 1 backend): a result of the right shape,
 * never a crash, and no element to compute. */
START_TEST(empty_inputs_everywhere)
{
    tg_dtype dt = float_dtypes[_i & 1];
    tg_backend prev = tg_set_backend(_i & 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_zeros(dt, TG_SHAPE(0, 3)), *b = tg_ones(dt, TG_SHAPE(3));
    tg_tensor *c = tg_zeros(dt, TG_SHAPE(3, 0));
    TG_OK_(tg_set_requires_grad(a, true));
    TG_OK_(tg_set_requires_grad(b, true));
    TG_OK_(tg_set_requires_grad(c, true));
    tg_tensor *ab[2] = {a, b};
    backward_gives_shapes("add", tg_add(a, b), ab, 2);
    backward_gives_shapes("sub", tg_sub(b, a), ab, 2);
    backward_gives_shapes("mul", tg_mul(a, b), ab, 2);
    backward_gives_shapes("div", tg_div(a, b), ab, 2);
    backward_gives_shapes("pow", tg_pow(b, a), ab, 2);
    backward_gives_shapes("maximum", tg_maximum(a, b), ab, 2);
    backward_gives_shapes("minimum", tg_minimum(b, a), ab, 2);
    backward_gives_shapes("add_scalar", tg_add_scalar(a, 1), &a, 1);
    backward_gives_shapes("mul_scalar", tg_mul_scalar(a, 2), &a, 1);
    backward_gives_shapes("pow_scalar", tg_pow_scalar(a, 2), &a, 1);
    tg_tensor *(*const unary[])(tg_tensor *) = {tg_neg, tg_exp, tg_log, tg_sqrt,
                                                tg_abs, tg_tanh, tg_sigmoid, tg_relu,
                                                leaky_03, elu_15, gelu_erf, gelu_tanh,
                                                tg_silu, tg_softplus, hsig_keras,
                                                clip_m05_25};
    for (size_t k = 0; k < sizeof unary / sizeof unary[0]; k++)
        backward_gives_shapes("unary", unary[k](tg_transpose(c, 0, 1)), &c, 1);
    backward_gives_shapes("sum", tg_sum(a, (const int[]){0}, 1, true), &a, 1);
    backward_gives_shapes("mean", tg_mean(a, (const int[]){1}, 1, false), &a, 1);
    backward_gives_shapes("max", tg_max(a, (const int[]){1}, 1, false), &a, 1);
    backward_gives_shapes("matmul m=0", tg_matmul(a, tg_ones(dt, TG_SHAPE(3, 2))), &a, 1);
    backward_gives_shapes("matmul k=0", tg_matmul(tg_ones(dt, TG_SHAPE(2, 3)),
                                                  tg_matmul(c, tg_ones(dt, TG_SHAPE(0, 4)))),
                          &c, 1);
    backward_gives_shapes("matmul batch 0", tg_matmul(tg_reshape(a, TG_SHAPE(0, 1, 3)),
                                                      tg_ones(dt, TG_SHAPE(3, 2))), &a, 1);
    backward_gives_shapes("reshape", tg_reshape(a, TG_SHAPE(3, -1)), &a, 1);
    backward_gives_shapes("flatten", tg_flatten(a, 0, -1), &a, 1);
    backward_gives_shapes("permute", tg_transpose(a, 0, 1), &a, 1);
    backward_gives_shapes("slice", tg_slice(a, 1, 1, 2), &a, 1);
    backward_gives_shapes("empty slice", tg_slice(b, 0, 2, 2), &b, 1);
    backward_gives_shapes("squeeze", tg_squeeze(tg_unsqueeze(a, 1), 1), &a, 1);
    backward_gives_shapes("concat", tg_concat((tg_tensor *[]){a, tg_unsqueeze(b, 0)}, 2, 0),
                          ab, 2);
    backward_gives_shapes("softmax", tg_softmax(a, 1), &a, 1);
    backward_gives_shapes("softmax over the empty axis", tg_softmax(c, 1), &c, 1);
    backward_gives_shapes("log_softmax", tg_log_softmax(a, 0), &a, 1);
    tg_batch_norm_opts bno = TG_BATCH_NORM_OPTS_INIT; /* inference: no batch statistics */
    backward_gives_shapes("batch_norm", tg_batch_norm(a, b, b, tg_zeros(dt, TG_SHAPE(3)),
                                                      tg_ones(dt, TG_SHAPE(3)), &bno), ab, 2);
    /* what has no value on an empty input says so */
    ASSERT_FAILS(tg_max(a, NULL, 0, false), TG_ERR_SHAPE, "tg_max: cannot take the max");
    ASSERT_FAILS(tg_argmax(a, 0, false), TG_ERR_SHAPE, "tg_argmax: axis 0 of [0, 3] is empty");
    assert_shape(tg_argmax(a, 1, false), TG_SHAPE(0));
    ASSERT_FAILS(tg_cross_entropy(a, tg_zeros(TG_I64, TG_SHAPE(0))), TG_ERR_SHAPE,
                 "tg_cross_entropy: logits [0, 3] is empty");
    ASSERT_FAILS(tg_mse(a, a), TG_ERR_SHAPE, "tg_mse: shape [0, 3] is empty");
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

/* Shapes at the edge of what an op takes: one input to concat, an extent-1
 * softmax axis, a 0-d input to flatten, an inner dim of 0 in matmul. */
START_TEST(degenerate_shapes)
{
    tg_dtype dt = float_dtypes[_i];
    tg_scope *s = tg_scope_push();
    tg_tensor *x = mk(dt, TG_SHAPE(3, 1), (const double[]){-2, 0.5, 40});
    TG_OK_(tg_set_requires_grad(x, true));
    /* softmax over one element is 1 whatever x is, so its gradient is 0 */
    tg_tensor *y = tg_softmax(x, 1);
    assert_values(y, (const double[]){1, 1, 1}, 3);
    assert_values(tg_log_softmax(x, -1), (const double[]){0, 0, 0}, 3);
    TG_OK_(tg_backward(tg_sum(tg_mul(y, x), NULL, 0, false)));
    /* d/dx (softmax(x) * x) = softmax(x) + x * 0 = 1 */
    assert_values(tg_grad(x), (const double[]){1, 1, 1}, 3);
    TG_OK_(tg_zero_grad(x));
    /* concat of one tensor is a copy that passes the gradient through */
    tg_tensor *c = tg_concat(&x, 1, 0);
    assert_shape(c, TG_SHAPE(3, 1));
    ck_assert(!tg_tensor_shares_storage(c, x));
    TG_OK_(tg_backward(tg_sum(tg_mul_scalar(c, 3), NULL, 0, false)));
    assert_values(tg_grad(x), (const double[]){3, 3, 3}, 3);
    /* a 0-d tensor flattens to [1], as the internal tg_tensor_flatten does */
    tg_tensor *z = mk(dt, 0, NULL, (const double[]){7});
    assert_shape(tg_flatten(z, 0, -1), TG_SHAPE(1));
    assert_shape(tg_tensor_flatten(z, 0, -1), TG_SHAPE(1));
    ASSERT_FAILS(tg_flatten(z, 0, 1), TG_ERR_RANGE, "tg_flatten");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- oneDNN vs reference */

/* Each case builds y from f32 inputs; run on AUTO and on REFERENCE with the same
 * inputs and upstream gradient, outputs and input gradients must agree within
 * atol 1e-5 + rtol 1e-5 (the oneDNN kernels use float accumulation and their own
 * exp/log/tanh approximations). uses_dnnl: AUTO must reach the oneDNN cache. */
typedef struct cmp_case {
    const char *name;
    int n_in;
    int ndim[3];
    int64_t shape[3][4];
    bool positive;
    bool uses_dnnl;
    tg_tensor *(*fn)(tg_tensor *const *in);
} cmp_case;

static tg_tensor *c_add(tg_tensor *const *in) { return tg_add(in[0], in[1]); }
static tg_tensor *c_sub(tg_tensor *const *in) { return tg_sub(in[0], in[1]); }
static tg_tensor *c_mul(tg_tensor *const *in) { return tg_mul(in[0], in[1]); }
static tg_tensor *c_div(tg_tensor *const *in) { return tg_div(in[0], in[1]); }
static tg_tensor *c_add_s(tg_tensor *const *in) { return tg_add_scalar(in[0], 0.3); }
static tg_tensor *c_mul_s(tg_tensor *const *in) { return tg_mul_scalar(in[0], -1.7); }
static tg_tensor *c_pow_s(tg_tensor *const *in) { return tg_pow_scalar(in[0], 1.5); }
static tg_tensor *c_neg(tg_tensor *const *in) { return tg_neg(in[0]); }
static tg_tensor *c_exp(tg_tensor *const *in) { return tg_exp(in[0]); }
static tg_tensor *c_log(tg_tensor *const *in) { return tg_log(in[0]); }
static tg_tensor *c_sqrt(tg_tensor *const *in) { return tg_sqrt(in[0]); }
static tg_tensor *c_abs(tg_tensor *const *in) { return tg_abs(in[0]); }
static tg_tensor *c_tanh(tg_tensor *const *in) { return tg_tanh(in[0]); }
static tg_tensor *c_sigmoid(tg_tensor *const *in) { return tg_sigmoid(in[0]); }
static tg_tensor *c_relu(tg_tensor *const *in) { return tg_relu(in[0]); }
static tg_tensor *c_leaky(tg_tensor *const *in) { return tg_leaky_relu(in[0], 0.2); }
static tg_tensor *c_elu(tg_tensor *const *in) { return tg_elu(in[0], 0.7); }
static tg_tensor *c_gelu(tg_tensor *const *in) { return tg_gelu(in[0], TG_GELU_ERF); }
static tg_tensor *c_gelu_t(tg_tensor *const *in) { return tg_gelu(in[0], TG_GELU_TANH); }
static tg_tensor *c_silu(tg_tensor *const *in) { return tg_silu(in[0]); }
static tg_tensor *c_softplus(tg_tensor *const *in) { return tg_softplus(in[0]); }
static tg_tensor *c_hsig(tg_tensor *const *in) { return tg_hard_sigmoid(in[0], 1.0 / 6.0, 0.5); }
static tg_tensor *c_clip(tg_tensor *const *in) { return tg_clip(in[0], -0.6, 1.2); }
static tg_tensor *c_maximum(tg_tensor *const *in) { return tg_maximum(in[0], in[1]); }
static tg_tensor *c_minimum(tg_tensor *const *in) { return tg_minimum(in[0], in[1]); }
static tg_tensor *c_matmul(tg_tensor *const *in) { return tg_matmul(in[0], in[1]); }
static tg_tensor *c_softmax(tg_tensor *const *in) { return tg_softmax(in[0], 1); }
static tg_tensor *c_log_softmax(tg_tensor *const *in) { return tg_log_softmax(in[0], -1); }
static tg_tensor *c_softmax0(tg_tensor *const *in) { return tg_softmax(in[0], 0); }

static tg_tensor *c_matmul_t(tg_tensor *const *in)
{
    return tg_matmul(tg_transpose(in[0], 0, 1), in[1]);
}

static tg_tensor *c_bn_train(tg_tensor *const *in)
{
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    return tg_batch_norm(in[0], in[1], in[2], NULL, NULL, &o);
}

static tg_tensor *c_bn_train_relu(tg_tensor *const *in)
{
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    o.relu = true;
    return tg_batch_norm(in[0], in[1], in[2], NULL, NULL, &o);
}

static tg_tensor *c_bn_train_plain(tg_tensor *const *in)
{
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    return tg_batch_norm(in[0], NULL, NULL, NULL, NULL, &o);
}

/* inference on (N, 4) with fixed running statistics */
static tg_tensor *c_bn_infer(tg_tensor *const *in)
{
    tg_tensor *rm = tg_from_data(TG_F32, TG_SHAPE(4), (const float[]){0.1f, -0.4f, 0.3f, 0.0f});
    tg_tensor *rv = tg_from_data(TG_F32, TG_SHAPE(4), (const float[]){1.0f, 0.5f, 2.0f, 0.8f});
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.relu = true;
    return tg_batch_norm(in[0], in[1], in[2], rm, rv, &o);
}

static const cmp_case cmp_cases[] = {
    {"add", 2, {2, 2}, {{5, 7}, {5, 7}}, false, true, c_add},
    {"add row", 2, {2, 1}, {{5, 7}, {7}}, false, true, c_add},
    /* both operands broadcast: oneDNN's binary cannot, the glue loops itself */
    {"add outer", 2, {2, 2}, {{5, 1}, {1, 7}}, false, false, c_add},
    {"sub broadcast first", 2, {1, 2}, {{7}, {5, 7}}, false, true, c_sub},
    {"mul col", 2, {2, 2}, {{5, 7}, {5, 1}}, false, true, c_mul},
    {"div", 2, {2, 2}, {{3, 4}, {3, 4}}, true, true, c_div},
    {"div 0-d", 2, {2, 0}, {{3, 4}, {0}}, true, true, c_div},
    {"add_scalar", 1, {3}, {{2, 3, 4}}, false, true, c_add_s},
    {"mul_scalar", 1, {2}, {{6, 5}}, false, true, c_mul_s},
    {"pow_scalar", 1, {2}, {{6, 5}}, true, true, c_pow_s},
    {"neg", 1, {2}, {{6, 5}}, false, true, c_neg},
    {"exp", 1, {2}, {{6, 5}}, false, true, c_exp},
    {"log", 1, {2}, {{6, 5}}, true, true, c_log},
    {"sqrt", 1, {2}, {{6, 5}}, true, true, c_sqrt},
    {"abs", 1, {2}, {{6, 5}}, false, true, c_abs},
    {"tanh", 1, {2}, {{6, 5}}, false, true, c_tanh},
    {"sigmoid", 1, {2}, {{6, 5}}, false, true, c_sigmoid},
    {"relu", 1, {3}, {{2, 3, 5}}, false, true, c_relu},
    {"relu 0-d", 1, {0}, {{0}}, false, true, c_relu},
    /* uses_dnnl false: AUTO runs the accurate f32 loops (ops/unary.c) both ways */
    {"leaky_relu", 1, {2}, {{6, 5}}, false, true, c_leaky},
    {"elu", 1, {2}, {{6, 5}}, false, false, c_elu},
    {"gelu erf", 1, {2}, {{6, 5}}, false, false, c_gelu},
    {"gelu tanh", 1, {2}, {{6, 5}}, false, false, c_gelu_t},
    {"silu", 1, {2}, {{6, 5}}, false, true, c_silu},
    {"softplus", 1, {2}, {{6, 5}}, false, true, c_softplus},
    {"hard_sigmoid", 1, {2}, {{6, 5}}, false, false, c_hsig},
    {"clip", 1, {3}, {{2, 3, 5}}, false, true, c_clip},
    {"maximum", 2, {2, 2}, {{5, 7}, {5, 7}}, false, true, c_maximum},
    {"maximum row first", 2, {1, 2}, {{7}, {5, 7}}, false, true, c_maximum},
    {"minimum col", 2, {2, 2}, {{5, 7}, {5, 1}}, false, true, c_minimum},
    {"matmul", 2, {2, 2}, {{5, 7}, {7, 3}}, false, true, c_matmul},
    {"matmul transposed a", 2, {2, 2}, {{7, 5}, {7, 3}}, false, true, c_matmul_t},
    {"matmul batched", 2, {3, 3}, {{2, 4, 3}, {2, 3, 5}}, false, true, c_matmul},
    {"matmul shared b", 2, {3, 2}, {{3, 4, 3}, {3, 2}}, false, true, c_matmul},
    {"matmul broadcast batch", 2, {4, 3}, {{2, 1, 3, 4}, {3, 4, 2}}, false, true, c_matmul},
    {"matmul shared a", 2, {2, 3}, {{3, 4}, {2, 4, 5}}, false, true, c_matmul},
    {"matmul b batch 1", 2, {3, 3}, {{2, 3, 4}, {1, 4, 2}}, false, true, c_matmul},
    {"matmul vector @ batch", 2, {1, 3}, {{4}, {2, 4, 3}}, false, true, c_matmul},
    {"matmul batch @ vector", 2, {3, 1}, {{2, 3, 4}, {4}}, false, true, c_matmul},
    {"matmul dot", 2, {1, 1}, {{5}, {5}}, false, true, c_matmul},
    {"softmax", 1, {2}, {{4, 9}}, false, true, c_softmax},
    {"softmax axis 0", 1, {3}, {{4, 3, 2}}, false, true, c_softmax0},
    {"log_softmax", 1, {2}, {{4, 9}}, false, true, c_log_softmax},
    {"batch_norm training NCHW", 3, {4, 1, 1}, {{4, 3, 3, 5}, {3}, {3}}, false, true,
     c_bn_train},
    {"batch_norm training NC fused relu", 3, {2, 1, 1}, {{6, 5}, {5}, {5}}, false, true,
     c_bn_train_relu},
    {"batch_norm training no gamma or beta", 1, {4}, {{3, 2, 2, 3}}, false, true,
     c_bn_train_plain},
    {"batch_norm inference NC fused relu", 3, {2, 1, 1}, {{5, 4}, {4}, {4}}, false, true,
     c_bn_infer},
};
#define N_CMP ((int)(sizeof cmp_cases / sizeof cmp_cases[0]))

/* Output and input gradients (scoped) under backend be. */
static void run_cmp(const cmp_case *c, tg_backend be, tg_tensor *const *in, tg_tensor *gout,
                    tg_tensor **y, tg_tensor **grads)
{
    tg_backend prev = tg_set_backend(be);
    for (int i = 0; i < c->n_in; i++)
        if (tg_grad(in[i]))
            TG_OK_(tg_zero_grad(in[i]));
    tg_backend_stats before, after;
    tg_backend_stats_get(&before);
    *y = c->fn(in);
    TG_CHECK(*y != NULL);
    tg_backward_opts o = TG_BACKWARD_OPTS_INIT;
    o.grad_output = gout;
    TG_OK_(tg_backward_ex(*y, &o));
    tg_backend_stats_get(&after);
    uint64_t used = (after.cache_hits + after.cache_misses) -
                    (before.cache_hits + before.cache_misses);
    if (be == TG_BACKEND_REFERENCE)
        ck_assert_msg(used == 0, "%s: the reference backend reached oneDNN", c->name);
    else if (c->uses_dnnl)
        ck_assert_msg(used > 0, "%s: AUTO did not run on oneDNN", c->name);
    for (int i = 0; i < c->n_in; i++)
        grads[i] = tg_tensor_copy(tg_grad(in[i]));
    tg_set_backend(prev);
}

START_TEST(dnnl_matches_reference)
{
    const cmp_case *c = &cmp_cases[_i];
    tg_scope *s = tg_scope_push();
    tg_rng rng;
    tg_rng_seed(&rng, 4242u + (uint64_t)_i);
    tg_tensor *in[3];
    for (int i = 0; i < c->n_in; i++) {
        in[i] = c->positive ? tg_rand_uniform(TG_F32, c->ndim[i], c->shape[i], 0.5, 2.0, &rng)
                            : tg_rand_uniform(TG_F32, c->ndim[i], c->shape[i], -2.0, 2.0, &rng);
        TG_OK_(tg_set_requires_grad(in[i], true));
    }
    bool prev = tg_set_grad_enabled(false);
    tg_tensor *shape_probe = c->fn(in);
    tg_set_grad_enabled(prev);
    TG_CHECK(shape_probe != NULL);
    tg_tensor *gout = tg_rand_uniform(TG_F32, tg_tensor_ndim(shape_probe),
                                      tg_tensor_shape(shape_probe), -1, 1, &rng);
    tg_tensor *ya, *yr, *ga[3], *gr[3];
    run_cmp(c, TG_BACKEND_AUTO, in, gout, &ya, ga);
    run_cmp(c, TG_BACKEND_REFERENCE, in, gout, &yr, gr);
    TG_ASSERT_TENSOR_CLOSE(ya, yr, 1e-5, 1e-5);
    for (int i = 0; i < c->n_in; i++)
        TG_ASSERT_TENSOR_CLOSE(ga[i], gr[i], 1e-5, 1e-5);
    tg_scope_pop(s);
}
END_TEST

/* Loss ops and reductions have no oneDNN primitive: AUTO and REFERENCE agree exactly. */
START_TEST(non_dnnl_ops_agree_exactly)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(4, 5), -3, 3, NULL);
    tg_tensor *lab = mk(TG_I64, TG_SHAPE(4), (const double[]){0, 4, 2, 2});
    tg_tensor *r[2][4];
    for (int k = 0; k < 2; k++) {
        tg_backend prev = tg_set_backend(k ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
        r[k][0] = tg_cross_entropy(x, lab);
        r[k][1] = tg_sum(x, (const int[]){1}, 1, false);
        r[k][2] = tg_max(x, (const int[]){0}, 1, true);
        r[k][3] = tg_pow(tg_abs(x), x);
        tg_set_backend(prev);
    }
    for (int i = 0; i < 4; i++)
        TG_ASSERT_TENSOR_CLOSE(r[0][i], r[1][i], 0, 2e-7);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- dropout */

/* ops/dropout.c draws its mask from a hash of (key, index); these check what that
 * construction promises beyond tests/test_cnn.c's dropout cases: the keep rate over
 * many elements, independence of the two elements sharing a hash, the same mask
 * for any thread count, one generator word per call, and backward regenerating the
 * forward's mask. */

static const double drop_rates[] = {0.25, 0.5};

START_TEST(dropout_keep_fraction)
{
    tg_scope *s = tg_scope_push();
    const double rate = drop_rates[_i];
    enum { N = 1 << 20 };
    tg_rng r;
    tg_rng_seed(&r, 31 + (uint64_t)_i);
    tg_tensor *y = tg_dropout(tg_ones(TG_F32, TG_SHAPE(N)), rate, true, &r);
    TG_CHECK(y != NULL);
    const float *yd = tg_tensor_data(y);
    const float kept_value = (float)(1.0 / (1.0 - rate));
    int64_t kept[2] = {0, 0}, both = 0; /* even / odd indices; pairs (2j, 2j+1) */
    for (int64_t k = 0; k < N; k++) {
        ck_assert_msg(yd[k] == 0.0f || yd[k] == kept_value, "element %lld = %g", (long long)k,
                      (double)yd[k]);
        kept[k & 1] += yd[k] != 0.0f;
        if (k & 1)
            both += yd[k] != 0.0f && yd[k - 1] != 0.0f;
    }
    /* binomial counts: allow 5 standard deviations */
    const double p = 1.0 - rate, half = N / 2;
    double frac = (double)(kept[0] + kept[1]) / N;
    ck_assert_msg(fabs(frac - p) < 5 * sqrt(p * (1 - p) / N), "kept %.6f, want %g", frac, p);
    for (int h = 0; h < 2; h++) { /* each half of the 64-bit hash on its own */
        double f = (double)kept[h] / half;
        ck_assert_msg(fabs(f - p) < 5 * sqrt(p * (1 - p) / half), "%s indices kept %.6f, want %g",
                      h ? "odd" : "even", f, p);
    }
    double q = p * p, fb = (double)both / half; /* the two halves are independent */
    ck_assert_msg(fabs(fb - q) < 5 * sqrt(q * (1 - q) / half), "pairs kept together %.6f, want %g",
                  fb, q);
    tg_scope_pop(s);
}
END_TEST

/* Same seed, 1 and 2 threads: the same output and gradient, bit for bit, on an odd
 * size (the unpaired last element) large enough for the loop to go parallel. */
START_TEST(dropout_thread_count_independent)
{
    tg_scope *s = tg_scope_push();
    int threads = tg_get_num_threads();
    tg_dtype dt = float_dtypes[_i];
    tg_tensor *x = tg_rand_uniform(dt, TG_SHAPE(3, 33335), -2, 2, NULL);
    TG_OK_(tg_set_requires_grad(x, true));
    /* give x a .grad first, so that both passes accumulate into a zeroed one (a
     * first backward assigns instead, which can differ in the sign of a zero) */
    TG_OK_(tg_backward(tg_sum(x, NULL, 0, false)));
    tg_tensor *y[2], *g[2];
    for (int t = 0; t < 2; t++) {
        TG_OK_(tg_set_num_threads(t + 1));
        tg_rng r;
        tg_rng_seed(&r, 404);
        y[t] = tg_dropout(x, 0.3, true, &r);
        TG_CHECK(y[t] != NULL);
        TG_OK_(tg_zero_grad(x));
        TG_OK_(tg_backward(tg_sum(tg_mul(y[t], x), NULL, 0, false)));
        g[t] = tg_tensor_copy(tg_grad(x));
        TG_CHECK(g[t] != NULL);
    }
    TG_OK_(tg_set_num_threads(threads));
    size_t bytes = (size_t)tg_tensor_numel(x) * (dt == TG_F64 ? 8 : 4);
    ck_assert(memcmp(tg_tensor_data(y[0]), tg_tensor_data(y[1]), bytes) == 0);
    ck_assert(memcmp(tg_tensor_data(g[0]), tg_tensor_data(g[1]), bytes) == 0);
    tg_scope_pop(s);
}
END_TEST

/* True when the generators' states are equal. */
static bool same_rng(const tg_rng *a, const tg_rng *b)
{
    return memcmp(a->s, b->s, sizeof a->s) == 0;
}

/* A seed fixes the mask (the same in f32 and f64), each training call takes one
 * generator word (rate 1 included; evaluation and rate 0 take none), and the
 * gradient of sum(dropout(x)) is s exactly where the forward kept x. */
START_TEST(dropout_mask_from_seed)
{
    tg_scope *s = tg_scope_push();
    const double rate = 0.4;
    const float sf = (float)(1.0 / (1.0 - rate));
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(7, 11, 13), 0.5, 1.5, NULL); /* no zeros */
    tg_tensor *x64 = tg_tensor_to_dtype(x, TG_F64);
    TG_OK_(tg_set_requires_grad(x, true));
    int64_t n = tg_tensor_numel(x);
    tg_rng r1, r2, r3, ref;
    tg_rng_seed(&r1, 8);
    tg_rng_seed(&r2, 8);
    tg_rng_seed(&r3, 9);
    tg_rng_seed(&ref, 8);
    tg_tensor *a = tg_dropout(x, rate, true, &r1);
    tg_tensor *b = tg_dropout(x64, rate, true, &r2);
    tg_tensor *c = tg_dropout(x, rate, true, &r3);
    TG_CHECK(a && b && c);
    (void)tg_rng_next_u64(&ref);
    ck_assert_msg(same_rng(&r1, &ref), "a dropout call did not take exactly one word");

    const float *xd = tg_tensor_data(x), *ad = tg_tensor_data(a), *cd = tg_tensor_data(c);
    const double *bd = tg_tensor_data(b);
    int64_t differ = 0, kept = 0;
    for (int64_t k = 0; k < n; k++) {
        bool keep = ad[k] != 0.0f;
        kept += keep;
        ck_assert_msg(ad[k] == (keep ? xd[k] * sf : 0.0f), "element %lld = %g, x = %g",
                      (long long)k, (double)ad[k], (double)xd[k]);
        ck_assert_msg((bd[k] != 0.0) == keep, "f64 mask differs at %lld", (long long)k);
        differ += (cd[k] != 0.0f) != keep;
    }
    ck_assert(kept > 0 && kept < n);
    ck_assert_msg(differ > n / 10, "seeds 8 and 9 gave nearly the same mask (%lld differ)",
                  (long long)differ);

    /* backward regenerates the mask: dL/dx = s where kept, 0 elsewhere */
    TG_OK_(tg_backward(tg_sum(a, NULL, 0, false)));
    const float *gd = tg_tensor_data(tg_grad(x));
    for (int64_t k = 0; k < n; k++)
        ck_assert_msg(gd[k] == (ad[k] != 0.0f ? sf : 0.0f), "grad %lld = %g, y = %g",
                      (long long)k, (double)gd[k], (double)ad[k]);

    /* the generator's advance does not depend on the rate; identity calls take nothing */
    TG_CHECK(tg_dropout(x, 1.0, true, &r1) != NULL);
    TG_CHECK(tg_dropout(x, 0.9, true, &r1) != NULL);
    TG_CHECK(tg_dropout(x, 0.0, true, &r1) == x);
    TG_CHECK(tg_dropout(x, 0.5, false, &r1) == x);
    (void)tg_rng_next_u64(&ref);
    (void)tg_rng_next_u64(&ref);
    ck_assert(same_rng(&r1, &ref));
    tg_scope_pop(s);
}
END_TEST

/* A dropped element is +0 whatever x holds (inf, NaN, -0); a kept one is x * s. */
START_TEST(dropout_dropped_is_zero)
{
    tg_scope *s = tg_scope_push();
    tg_dtype dt = float_dtypes[_i];
    enum { N = 4001 };
    const double special[] = {INFINITY, -INFINITY, NAN, -0.0, -3.0};
    tg_tensor *x = tg_empty(dt, TG_SHAPE(N));
    for (int64_t k = 0; k < N; k++)
        tg_set_flat(x, k, special[k % 5]);
    tg_rng r;
    tg_rng_seed(&r, 3);
    tg_tensor *y = tg_dropout(x, 0.5, true, &r);
    TG_CHECK(y != NULL);
    int64_t dropped = 0;
    for (int64_t k = 0; k < N; k++) {
        double v = at(y, k), xv = special[k % 5];
        if (v == 0.0 && !signbit(v)) {
            dropped++;
            continue;
        }
        if (isnan(xv))
            ck_assert_msg(isnan(v), "element %lld = %g, expected NaN", (long long)k, v);
        else
            ck_assert_msg(v == xv * 2.0, "element %lld = %g, expected %g", (long long)k, v,
                          xv * 2.0);
    }
    ck_assert(dropped > N / 3 && dropped < 2 * N / 3);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- batch_norm */

/* Asserts t's elements equal want[i] within tol * (1 + |want[i]|). */
static void assert_values_tol(const tg_tensor *t, const double *want, int64_t n, double tol)
{
    TG_CHECK(t != NULL);
    ck_assert_int_eq(tg_tensor_numel(t), n);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(at(t, i) - want[i]) <= tol * (1 + fabs(want[i])),
                      "element %lld = %.17g, expected %.17g", (long long)i, at(t, i), want[i]);
}

/* The batch statistics of channel c of a contiguous (N, C, S) array, as the
 * textbook defines them (biased variance), in double. */
static void bn_moments(const double *x, int64_t n, int64_t ch, int64_t sp, int64_t c,
                       double *mean, double *var)
{
    double sum = 0, sq = 0, m = (double)(n * sp);
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < sp; s++)
            sum += x[(i * ch + c) * sp + s];
    *mean = sum / m;
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < sp; s++) {
            double d = x[(i * ch + c) * sp + s] - *mean;
            sq += d * d;
        }
    *var = sq / m;
}

/* Training on (N, C, H, W) = (3, 2, 2, 2), f32 and f64 on both backends (_i: bit
 * 0 dtype, bit 1 reference backend): y from the batch statistics, and the running
 * statistics moved by momentum with the biased variance, their versions bumped. */
START_TEST(batch_norm_training_values)
{
    tg_dtype dt = float_dtypes[_i & 1];
    tg_backend prev = tg_set_backend(_i & 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    enum { N = 3, C = 2, SP = 4, NE = N * C * SP };
    double xv[NE];
    for (int k = 0; k < NE; k++)
        xv[k] = 2.0 * sin(0.7 * k + 0.3) + 0.25 * (k % 5);
    const double gv[C] = {1.5, -0.5}, bv[C] = {0.25, 2.0};
    const double rm0[C] = {0.5, -0.25}, rv0[C] = {1.5, 0.75};
    tg_tensor *x = mk(dt, TG_SHAPE(N, C, 2, 2), xv);
    tg_tensor *gamma = mk(dt, TG_SHAPE(C), gv), *beta = mk(dt, TG_SHAPE(C), bv);
    tg_tensor *rm = mk(dt, TG_SHAPE(C), rm0), *rv = mk(dt, TG_SHAPE(C), rv0);
    uint64_t vm = tg_tensor_version(rm), vv = tg_tensor_version(rv);
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    o.momentum = 0.9;
    o.epsilon = 1e-3;
    tg_tensor *y = tg_batch_norm(x, gamma, beta, rm, rv, &o);
    double want[NE], wm[C], wv[C];
    for (int c = 0; c < C; c++) {
        double mean, var;
        bn_moments(xv, N, C, SP, c, &mean, &var);
        wm[c] = rm0[c] * 0.9 + mean * 0.1;
        wv[c] = rv0[c] * 0.9 + var * 0.1;
        for (int n = 0; n < N; n++)
            for (int sp = 0; sp < SP; sp++) {
                int k = (n * C + c) * SP + sp;
                want[k] = gv[c] * (xv[k] - mean) / sqrt(var + 1e-3) + bv[c];
            }
    }
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    assert_values_tol(y, want, NE, tol);
    assert_values_tol(rm, wm, C, tol);
    assert_values_tol(rv, wv, C, tol);
    ck_assert(tg_tensor_version(rm) > vm && tg_tensor_version(rv) > vv);
    /* a second step moves them again from where they are */
    TG_CHECK(tg_batch_norm(x, gamma, beta, rm, rv, &o) != NULL);
    for (int c = 0; c < C; c++) {
        double mean, var;
        bn_moments(xv, N, C, SP, c, &mean, &var);
        wm[c] = wm[c] * 0.9 + mean * 0.1;
        wv[c] = wv[c] * 0.9 + var * 0.1;
    }
    assert_values_tol(rm, wm, C, tol);
    assert_values_tol(rv, wv, C, tol);
    /* no gamma, no beta, fused ReLU, no running statistics: max(xhat, 0) */
    o.relu = true;
    tg_tensor *r = tg_batch_norm(x, NULL, NULL, NULL, NULL, &o);
    for (int c = 0; c < C; c++) {
        double mean, var;
        bn_moments(xv, N, C, SP, c, &mean, &var);
        for (int n = 0; n < N; n++)
            for (int sp = 0; sp < SP; sp++) {
                int k = (n * C + c) * SP + sp;
                want[k] = fmax((xv[k] - mean) / sqrt(var + 1e-3), 0.0);
            }
    }
    assert_values_tol(r, want, NE, tol);
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

/* Inference on (N, C) = (4, 3): the running statistics, unchanged and not bumped;
 * the gradients are gamma / sqrt(var + eps) * g, sum g * xhat and sum g. */
START_TEST(batch_norm_inference_values)
{
    tg_dtype dt = float_dtypes[_i & 1];
    tg_backend prev = tg_set_backend(_i & 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    enum { N = 4, C = 3 };
    double xv[N * C];
    for (int k = 0; k < N * C; k++)
        xv[k] = cos(1.3 * k) * 3.0 - 0.5;
    const double gv[C] = {2.0, 0.5, -1.0}, bv[C] = {0.0, 1.0, -0.5};
    const double rm0[C] = {0.1, -0.3, 1.0}, rv0[C] = {2.0, 0.25, 4.0};
    tg_tensor *x = mk(dt, TG_SHAPE(N, C), xv);
    tg_tensor *gamma = mk(dt, TG_SHAPE(C), gv), *beta = mk(dt, TG_SHAPE(C), bv);
    tg_tensor *rm = mk(dt, TG_SHAPE(C), rm0), *rv = mk(dt, TG_SHAPE(C), rv0);
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_set_requires_grad(gamma, true));
    TG_OK_(tg_set_requires_grad(beta, true));
    uint64_t vm = tg_tensor_version(rm), vv = tg_tensor_version(rv);
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT; /* inference, eps 1e-3 */
    tg_tensor *y = tg_batch_norm(x, gamma, beta, rm, rv, &o);
    double want[N * C], gx[N * C], gg[C] = {0}, gb[C] = {0};
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            int k = n * C + c;
            double r = 1.0 / sqrt(rv0[c] + 1e-3), xh = (xv[k] - rm0[c]) * r;
            double g = 1.0 + 0.5 * k; /* the upstream gradient below */
            want[k] = gv[c] * xh + bv[c];
            gx[k] = gv[c] * r * g;
            gg[c] += g * xh;
            gb[c] += g;
        }
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    assert_values_tol(y, want, N * C, tol);
    /* unchanged: exactly the values given, rounded to dt */
    assert_values_tol(rm, rm0, C, dt == TG_F32 ? 1e-7 : 0);
    assert_values_tol(rv, rv0, C, dt == TG_F32 ? 1e-7 : 0);
    ck_assert(tg_tensor_version(rm) == vm && tg_tensor_version(rv) == vv);
    double gov[N * C];
    for (int k = 0; k < N * C; k++)
        gov[k] = 1.0 + 0.5 * k;
    tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
    bo.grad_output = mk(dt, TG_SHAPE(N, C), gov);
    TG_OK_(tg_backward_ex(y, &bo));
    assert_values_tol(tg_grad(x), gx, N * C, tol);
    assert_values_tol(tg_grad(gamma), gg, C, tol);
    assert_values_tol(tg_grad(beta), gb, C, tol);
    /* the node kept its own statistics: changing the running ones after the
     * forward changes neither this backward nor its result */
    TG_OK_(tg_tensor_fill(rv, 9.0));
    TG_OK_(tg_zero_grad(x));
    tg_tensor *y2 = tg_batch_norm(x, gamma, beta, rm, mk(dt, TG_SHAPE(C), rv0), &o);
    TG_OK_(tg_tensor_fill(rv, 7.0));
    TG_OK_(tg_backward_ex(y2, &bo));
    assert_values_tol(tg_grad(x), gx, N * C, tol);
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

/* A batch of one in training (N = 1, (N, C)): the variance is 0, so y = beta and
 * dL/dx = 0; the running mean moves towards x, the running variance towards 0
 * (as Keras does; PyTorch refuses such a batch). */
START_TEST(batch_norm_batch_of_one)
{
    tg_dtype dt = float_dtypes[_i & 1];
    tg_backend prev = tg_set_backend(_i & 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    tg_scope *s = tg_scope_push();
    const double xv[] = {3.0, -1.5}, gv[] = {2.0, 0.5}, bv[] = {0.25, -1.0};
    tg_tensor *x = mk(dt, TG_SHAPE(1, 2), xv);
    tg_tensor *gamma = mk(dt, TG_SHAPE(2), gv), *beta = mk(dt, TG_SHAPE(2), bv);
    tg_tensor *rm = tg_zeros(dt, TG_SHAPE(2)), *rv = tg_ones(dt, TG_SHAPE(2));
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_set_requires_grad(gamma, true));
    TG_OK_(tg_set_requires_grad(beta, true));
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    tg_tensor *y = tg_batch_norm(x, gamma, beta, rm, rv, &o);
    assert_values_tol(y, bv, 2, 1e-6);
    assert_values_tol(rm, (const double[]){3.0 * 0.01, -1.5 * 0.01}, 2, 1e-6);
    assert_values_tol(rv, (const double[]){0.99, 0.99}, 2, 1e-6);
    TG_OK_(tg_backward(tg_sum(tg_mul(y, mk(dt, TG_SHAPE(1, 2), (const double[]){4, 5})),
                              NULL, 0, false)));
    assert_values_tol(tg_grad(x), (const double[]){0, 0}, 2, 1e-6);
    assert_values_tol(tg_grad(gamma), (const double[]){0, 0}, 2, 1e-6);
    assert_values_tol(tg_grad(beta), (const double[]){4, 5}, 2, 1e-6);
    tg_scope_pop(s);
    tg_set_backend(prev);
}
END_TEST

START_TEST(batch_norm_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(4, 3)), *v3 = tg_ones(TG_F32, TG_SHAPE(3));
    tg_tensor *rm = tg_zeros(TG_F32, TG_SHAPE(3)), *rv = tg_ones(TG_F32, TG_SHAPE(3));
    tg_tensor *v4 = tg_ones(TG_F32, TG_SHAPE(4)), *d3 = tg_ones(TG_F64, TG_SHAPE(3));
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    ASSERT_FAILS(tg_batch_norm(NULL, v3, v3, rm, rv, &o), TG_ERR_ARG, "tg_batch_norm");
    ASSERT_FAILS(tg_batch_norm(tg_ones(TG_I64, TG_SHAPE(4, 3)), NULL, NULL, NULL, NULL, NULL),
                 TG_ERR_DTYPE, "tg_batch_norm");
    ASSERT_FAILS(tg_batch_norm(tg_ones(TG_F32, TG_SHAPE(4, 3, 2)), NULL, NULL, rm, rv, &o),
                 TG_ERR_SHAPE, "tg_batch_norm: input must be (N, C) or (N, C, H, W), got [4, 3, 2]");
    ASSERT_FAILS(tg_batch_norm(x, v4, v3, rm, rv, &o), TG_ERR_SHAPE,
                 "tg_batch_norm: gamma must have shape [3] (the channels of input [4, 3]), got [4]");
    ASSERT_FAILS(tg_batch_norm(x, v3, tg_ones(TG_F32, TG_SHAPE(1, 3)), rm, rv, &o),
                 TG_ERR_SHAPE, "beta must have shape [3]");
    ASSERT_FAILS(tg_batch_norm(x, v3, d3, rm, rv, &o), TG_ERR_DTYPE, "tg_batch_norm");
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, v4, rv, &o), TG_ERR_SHAPE,
                 "running_mean must have shape [3]");
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, rm, d3, &o), TG_ERR_DTYPE,
                 "tg_batch_norm: running_var is f64, input is f32");
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, rm, NULL, &o), TG_ERR_ARG,
                 "running_mean and running_var go together");
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, NULL, NULL, &o), TG_ERR_ARG,
                 "tg_batch_norm: inference (opts.training false)");
    o.momentum = 1.5;
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, rm, rv, &o), TG_ERR_ARG,
                 "tg_batch_norm: momentum must be in [0, 1], got 1.5");
    o.momentum = NAN;
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, rm, rv, &o), TG_ERR_ARG, "momentum");
    o.momentum = 0.99;
    o.epsilon = 0;
    ASSERT_FAILS(tg_batch_norm(x, NULL, NULL, rm, rv, &o), TG_ERR_ARG,
                 "tg_batch_norm: epsilon must be finite and > 0, got 0");
    o.epsilon = 1e-3;
    o.training = true;
    ASSERT_FAILS(tg_batch_norm(tg_ones(TG_F32, TG_SHAPE(0, 3)), NULL, NULL, rm, rv, &o),
                 TG_ERR_SHAPE, "tg_batch_norm: input [0, 3] is empty: training needs");
    ASSERT_FAILS(tg_batch_norm(tg_ones(TG_F32, TG_SHAPE(2, 3, 0, 4)), NULL, NULL, NULL, NULL,
                               &o), TG_ERR_SHAPE, "is empty");
    /* a failed call leaves the running statistics alone */
    ASSERT_FAILS(tg_batch_norm(x, v4, NULL, rm, rv, &o), TG_ERR_SHAPE, "gamma");
    assert_values(rm, (const double[]){0, 0, 0}, 3);
    assert_values(rv, (const double[]){1, 1, 1}, 3);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- misuse */

/* Debug mode: an op given a tensor whose scope popped fails with the op's name
 * and the argument, not a crash; so does backward. */
START_TEST(op_after_scope_popped)
{
    bool was = tg_get_debug_mode();
    tg_set_debug_mode(true);
    tg_scope *s = tg_scope_push();
    tg_tensor *w = tg_ones(TG_F32, TG_SHAPE(2));
    TG_OK_(tg_set_requires_grad(w, true));
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(2));
    tg_tensor *l = tg_sum(tg_mul(w, x), NULL, 0, false);
    tg_tensor *keep = tg_scope_keep(w);
    tg_scope_pop(s);
    tg_scope *s2 = tg_scope_push();
    ASSERT_FAILS(tg_relu(x), TG_ERR_STATE,
                 "tg_relu: argument 'x' is a tensor that was already freed (its scope popped)");
    ASSERT_FAILS(tg_mul(keep, x), TG_ERR_STATE, "tg_mul: argument 'b' is a tensor that was");
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_backward: argument 'output' is a tensor that was already freed");
    /* the kept one is alive and usable */
    TG_CHECK(tg_relu(keep) != NULL);
    tg_scope_pop(s2);
    tg_release(keep);
    tg_set_debug_mode(was);
}
END_TEST

/* Runs calls_ops in a child with stderr to a pipe; returns what it printed. */
static char *child_stderr(void (*calls_ops)(void), const char *env_off)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        if (env_off)
            setenv("TG_SCOPE_WARNING", env_off, 1);
        calls_ops();
        _exit(0);
    }
    close(fd[1]);
    static char buf[4096];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return buf;
}

static void ops_without_scope(void)
{
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(4)); /* a creation function: no warning */
    for (int i = 0; i < 3; i++)
        tg_release(tg_relu(x));
    tg_release(tg_exp(x));
    tg_release(x);
}

static void ops_in_scope(void)
{
    tg_scope *s = tg_scope_push();
    tg_relu(tg_ones(TG_F32, TG_SHAPE(4)));
    tg_scope_pop(s);
}

/* The first op called with no scope open warns once, naming the op and the
 * fix; ops inside a scope and TG_SCOPE_WARNING=0 print nothing. */
START_TEST(no_scope_warning_once)
{
    char *out = child_stderr(ops_without_scope, NULL);
    ck_assert_msg(strstr(out, "libtensor: warning: tg_relu was called with no scope open"),
                  "stderr: %s", out);
    ck_assert_msg(strstr(out, "tg_scope_push"), "stderr: %s", out);
    const char *second = strstr(strstr(out, "warning") + 1, "warning");
    ck_assert_msg(second == NULL, "warned twice: %s", out);
    out = child_stderr(ops_in_scope, NULL);
    ck_assert_str_eq(out, "");
    out = child_stderr(ops_without_scope, "0");
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---------------------------------------------------------------- the op frame */

/* A toy op written on the frame (ops/ops_impl.h): y = k * a + b, saving k and a
 * view of y; its free_saved counts calls so the tests see the state freed once. */
typedef struct axpb_saved {
    double k;
    tg_tensor *y;
} axpb_saved;

static int axpb_frees;
/* The error context the forward and the backward ran in (copied: the backward's
 * lives on the engine's stack). */
static char axpb_fwd_ctx[64], axpb_bwd_ctx[64];

static void axpb_free(void *p)
{
    axpb_saved *sv = p;
    axpb_frees++;
    tg_release(sv->y);
    free(sv);
}

static tg_status axpb_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    const axpb_saved *sv = node->saved;
    snprintf(axpb_bwd_ctx, sizeof axpb_bwd_ctx, "%s", tg_error_context());
    if (tg_node_needs_grad(node, 0) && !(gin[0] = tg_mul_scalar(g, sv->k)))
        return tg_last_status();
    if (tg_node_needs_grad(node, 1) && !(gin[1] = tg_mul_scalar(g, 1.0)))
        return tg_last_status();
    return TG_OK;
}

static const tg_op_vtable axpb_vtable = {"axpb", axpb_backward, axpb_free, NULL, 0, 0};

/* fail_at: 0 runs through; 1 fails after the output and saved state exist. */
static tg_tensor *axpb(tg_tensor *a, tg_tensor *b, double k, int fail_at)
{
    tg_tensor *in[2] = {a, b};
    tg_op_call c;
    if (!tg_op_begin(&c, &axpb_vtable, "tg_axpb", in, 2, "a b",
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    if (!tg_tensor_same_shape(a, b)) {
        tg_error(TG_ERR_SHAPE, "tg_axpb: shapes differ");
        return tg_op_fail(&c);
    }
    snprintf(axpb_fwd_ctx, sizeof axpb_fwd_ctx, "%s", tg_error_context());
    tg_tensor *y = tg_op_output(&c, a->dtype, a->ndim, a->shape);
    axpb_saved *sv = tg_op_save(&c, sizeof *sv);
    if (!y || (c.record && !sv))
        return tg_op_fail(&c);
    for (int64_t i = 0; i < tg_tensor_numel(y); i++)
        tg_set_flat(y, i, k * tg_get_flat(a, i) + tg_get_flat(b, i));
    if (sv) {
        sv->k = k;
        if (!(sv->y = tg_op_output_view(&c)))
            return tg_op_fail(&c);
    }
    if (fail_at == 1) {
        tg_error(TG_ERR_STATE, "tg_axpb: failing on purpose");
        return tg_op_fail(&c);
    }
    return tg_op_end(&c);
}

START_TEST(op_frame)
{
    static const double A[] = {1, -2, 3}, B[] = {0.5, 0.25, -1};
    tg_scope *s = tg_scope_push();
    tg_tensor *a = mk(TG_F64, TG_SHAPE(3), A), *b = mk(TG_F64, TG_SHAPE(3), B);
    axpb_frees = 0;

    /* the checks the frame makes, with the op's name and the input's word */
    ASSERT_FAILS(axpb(NULL, b, 2, 0), TG_ERR_ARG, "tg_axpb");
    TG_ASSERT_ERROR_HAS("'a'");
    ASSERT_FAILS(axpb(a, NULL, 2, 0), TG_ERR_ARG, "tg_axpb");
    TG_ASSERT_ERROR_HAS("'b'");
    ASSERT_FAILS(axpb(a, tg_zeros(TG_I32, TG_SHAPE(3)), 2, 0), TG_ERR_DTYPE,
                 "tg_axpb: b must be f32 or f64, got i32");
    ASSERT_FAILS(axpb(a, tg_zeros(TG_F32, TG_SHAPE(3)), 2, 0), TG_ERR_DTYPE, "tg_axpb");
    TG_ASSERT_ERROR_HAS("differ");
    ASSERT_FAILS(axpb(a, tg_zeros(TG_F64, TG_SHAPE(4)), 2, 0), TG_ERR_SHAPE, "tg_axpb");
    ck_assert_int_eq(axpb_frees, 0); /* nothing recorded: nothing saved */

    /* not recorded: a plain scoped output, no node, no saved state */
    tg_tensor *y = axpb(a, b, 2, 0);
    TG_CHECK(y != NULL);
    assert_values(y, (const double[]){2.5, -3.75, 5}, 3);
    ck_assert_ptr_null(tg_tensor_grad_fn(y));
    ck_assert_int_eq(axpb_frees, 0);

    /* recorded: the node holds the saved state; backward reaches both inputs */
    TG_OK_(tg_set_requires_grad(a, true));
    TG_OK_(tg_set_requires_grad(b, true));
    tg_scope *inner = tg_scope_push();
    y = axpb(a, b, 3, 0);
    TG_CHECK(y != NULL);
    tg_node *node = tg_tensor_grad_fn(y);
    ck_assert_ptr_nonnull(node);
    ck_assert_ptr_eq(node->op, &axpb_vtable);
    ck_assert_int_eq(node->n_inputs, 2);
    const axpb_saved *sv = node->saved;
    ck_assert(sv->k == 3.0);
    ck_assert(tg_tensor_data_ro(sv->y) == tg_tensor_data_ro(y)); /* reads: no version change */
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    assert_values(tg_grad(a), (const double[]){3, 3, 3}, 3);
    assert_values(tg_grad(b), (const double[]){1, 1, 1}, 3);
    tg_scope_pop(inner);
    ck_assert_int_eq(axpb_frees, 1); /* freed with the node, once */

    /* a failure after the saved state exists frees it, and releases the output */
    ASSERT_FAILS(axpb(a, b, 3, 1), TG_ERR_STATE, "on purpose");
    ck_assert_int_eq(axpb_frees, 2);

    /* the frame enters the op's name as the error context, the engine
     * "tg_<op> backward" for its backward; every way out leaves it (the
     * fixture checks that no context is left entered) */
    ck_assert_str_eq(axpb_fwd_ctx, "tg_axpb");
    ck_assert_str_eq(axpb_bwd_ctx, "tg_axpb backward");
    const char *outer = tg_error_enter("outer");
    TG_CHECK(axpb(a, b, 1, 0) != NULL);
    ck_assert_str_eq(tg_error_context(), "outer");
    ASSERT_FAILS(axpb(a, NULL, 1, 0), TG_ERR_ARG, "tg_axpb");
    ASSERT_FAILS(axpb(a, b, 1, 1), TG_ERR_STATE, "on purpose");
    ck_assert_str_eq(tg_error_context(), "outer");
    tg_error_leave(outer);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tg_tcase("binary");
    tcase_add_loop_test(tc, binary_same_shape, 0, 2);
    tcase_add_loop_test(tc, binary_broadcasting, 0, 2);
    tcase_add_loop_test(tc, binary_strided_inputs, 0, 2);
    tcase_add_test(tc, binary_errors);
    tcase_add_loop_test(tc, maximum_minimum, 0, 4);
    suite_add_tcase(s, tc);

    tc = tg_tcase("scalar and unary");
    tcase_add_loop_test(tc, scalar_ops, 0, 2);
    tcase_add_loop_test(tc, unary_values, 0, 2 * N_UNARY);
    tcase_add_loop_test(tc, kinks_have_zero_gradient, 0, 2);
    tcase_add_loop_test(tc, activation_gradients, 0, 2);
    tcase_add_test(tc, activation_errors);
    tcase_add_loop_test(tc, sigmoid_and_softmax_are_stable, 0, 2);
    suite_add_tcase(s, tc);

    tc = tg_tcase("reductions");
    tcase_add_loop_test(tc, reductions, 0, 2);
    tcase_add_test(tc, max_ties_first_wins);
    tcase_add_loop_test(tc, reductions_min_prod_var_std, 0, 2);
    tcase_add_test(tc, reductions_zero_and_tie_gradients);
    tcase_add_test(tc, reduction_errors);
    tcase_add_test(tc, argmax_values);
    suite_add_tcase(s, tc);

    tc = tg_tcase("matmul");
    tcase_add_loop_test(tc, matmul_values, 0, 2);
    tcase_add_loop_test(tc, matmul_broadcast_values, 0, 2);
    tcase_add_loop_test(tc, index_select_and_gather_values, 0, 2);
    tcase_add_test(tc, index_select_and_gather_errors);
    tcase_add_test(tc, matmul_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("views and concat");
    tcase_add_test(tc, views_share_storage);
    tcase_add_test(tc, reshape_of_views_property);
    tcase_add_test(tc, view_errors);
    tcase_add_loop_test(tc, contiguous_gradient, 0, 2);
    tcase_add_loop_test(tc, concat_values, 0, 2);
    tcase_add_test(tc, concat_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("softmax and losses");
    tcase_add_loop_test(tc, softmax_values, 0, 2);
    tcase_add_loop_test(tc, cross_entropy_values, 0, 6);
    tcase_add_loop_test(tc, cross_entropy_probs_values, 0, 2);
    tcase_add_loop_test(tc, cross_entropy_options_values, 0, 2);
    tcase_add_test(tc, cross_entropy_options_errors);
    tcase_add_loop_test(tc, mse_values, 0, 2);
    tcase_add_test(tc, loss_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("plumbing");
    tcase_add_test(tc, backend_switch);
    tcase_add_test(tc, sum_to_shape);
    tcase_add_test(tc, recording_rules);
    tcase_add_test(tc, unscoped_results_and_saved_views);
    tcase_add_test(tc, null_inputs);
    tcase_add_test(tc, op_frame);
    tcase_add_test(tc, op_after_scope_popped);
    tcase_add_test(tc, no_scope_warning_once);
    tcase_add_test(tc, flush_denormals);
    suite_add_tcase(s, tc);

    tc = tg_tcase("edge shapes");
    tcase_add_loop_test(tc, empty_inputs_everywhere, 0, 4);
    tcase_add_loop_test(tc, degenerate_shapes, 0, 2);
    suite_add_tcase(s, tc);

    tc = tg_tcase("oneDNN vs reference");
    tcase_add_loop_test(tc, dnnl_matches_reference, 0, N_CMP);
    tcase_add_test(tc, non_dnnl_ops_agree_exactly);
    suite_add_tcase(s, tc);

    tc = tg_tcase("dropout");
    tcase_add_loop_test(tc, dropout_keep_fraction, 0, 2);
    tcase_add_loop_test(tc, dropout_thread_count_independent, 0, 2);
    tcase_add_test(tc, dropout_mask_from_seed);
    tcase_add_loop_test(tc, dropout_dropped_is_zero, 0, 2);
    suite_add_tcase(s, tc);

    tc = tg_tcase("batch_norm");
    tcase_add_loop_test(tc, batch_norm_training_values, 0, 4);
    tcase_add_loop_test(tc, batch_norm_inference_values, 0, 4);
    tcase_add_loop_test(tc, batch_norm_batch_of_one, 0, 4);
    tcase_add_test(tc, batch_norm_errors);
    suite_add_tcase(s, tc);
    return s;
}
