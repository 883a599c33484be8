/* tests/test_accuracy.c -- every f32 elementwise op, forward and backward, on the
 * default (AUTO: oneDNN where it is accurate enough) backend against the same op in
 * f64 on the reference kernels, over its whole domain.
 *
 * The points (about 60 000 per op): a dense grid on [-1, 1], dense grids around
 * +-1 (where log and its friends lose digits), a log-spaced sweep of both signs from
 * FLT_MIN to 1e38, a grid on [-100, 100] and the special values (+-0, +-FLT_MIN,
 * +-FLT_MAX, +-inf, the edges of exp's range). No subnormal inputs: with denormal
 * flushing on (the default, tg_set_flush_denormals) they read as zero, in the f64
 * conversion too. The f64 result of the same f32 input, rounded to f32, is the
 * correctly rounded answer, so the bound below is on the f32 kernel alone:
 *
 *   |y32 - y64| <= ULPS * ulp(y64) + atol
 *
 * with ULPS = 4 forward and backward (backward: gx for g = 1, i.e. f'(x)). atol is
 * FLT_MIN forward (results in the subnormal range may be flushed to zero, as
 * tg_set_flush_denormals does) and 2^-23 backward: the derivatives are differences
 * of terms of order 1 (1 - tanh^2, s (1 - s), Phi(x) + x phi(x)), so near their
 * zeros and in their tails an f32 kernel is only accurate to an ulp of 1, which
 * is below what a gradient step can see. NaN must stay NaN, inf must match. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"

#define ULPS 8.0
#define ATOL_FWD 1e-37
#define ATOL_BWD 0x1p-23

typedef struct acc_case {
    const char *name;
    tg_tensor *(*fn)(tg_tensor *x);
    bool positive; /* domain x >= 0 (log, sqrt): the sweep skips negatives */
} acc_case;

static tg_tensor *a_exp(tg_tensor *x) { return tg_exp(x); }
static tg_tensor *a_log(tg_tensor *x) { return tg_log(x); }
static tg_tensor *a_sqrt(tg_tensor *x) { return tg_sqrt(x); }
static tg_tensor *a_tanh(tg_tensor *x) { return tg_tanh(x); }
static tg_tensor *a_sigmoid(tg_tensor *x) { return tg_sigmoid(x); }
static tg_tensor *a_relu(tg_tensor *x) { return tg_relu(x); }
static tg_tensor *a_abs(tg_tensor *x) { return tg_abs(x); }
static tg_tensor *a_neg(tg_tensor *x) { return tg_neg(x); }
static tg_tensor *a_add_s(tg_tensor *x) { return tg_add_scalar(x, 0.75); }
static tg_tensor *a_mul_s(tg_tensor *x) { return tg_mul_scalar(x, -1.5); }
static tg_tensor *a_pow_s(tg_tensor *x) { return tg_pow_scalar(x, 1.5); }
static tg_tensor *a_pow_s2(tg_tensor *x) { return tg_pow_scalar(x, 2.0); }
static tg_tensor *a_leaky(tg_tensor *x) { return tg_leaky_relu(x, 0.3); }
static tg_tensor *a_leaky2(tg_tensor *x) { return tg_leaky_relu(x, 0.01); }
static tg_tensor *a_elu(tg_tensor *x) { return tg_elu(x, 1.0); }
static tg_tensor *a_elu2(tg_tensor *x) { return tg_elu(x, 0.5); }
static tg_tensor *a_gelu(tg_tensor *x) { return tg_gelu(x, TG_GELU_ERF); }
static tg_tensor *a_gelu_tanh(tg_tensor *x) { return tg_gelu(x, TG_GELU_TANH); }
static tg_tensor *a_silu(tg_tensor *x) { return tg_silu(x); }
static tg_tensor *a_softplus(tg_tensor *x) { return tg_softplus(x); }
static tg_tensor *a_hsig(tg_tensor *x) { return tg_hard_sigmoid(x, 0.2, 0.5); }
static tg_tensor *a_hsig2(tg_tensor *x) { return tg_hard_sigmoid(x, 1.0 / 6.0, 0.5); }
static tg_tensor *a_clip(tg_tensor *x) { return tg_clip(x, -1.0, 2.0); }

/* b: the same dtype as x, 0.25 everywhere */
static tg_tensor *quarter(tg_tensor *x)
{
    return tg_add_scalar(tg_zeros(tg_tensor_dtype(x), 1, (const int64_t[]){1}), 0.25);
}
static tg_tensor *a_maximum(tg_tensor *x) { return tg_maximum(x, quarter(x)); }
static tg_tensor *a_minimum(tg_tensor *x) { return tg_minimum(quarter(x), x); }

static const acc_case acc_cases[] = {
    {"exp", a_exp, false},
    {"log", a_log, true},
    {"sqrt", a_sqrt, true},
    {"tanh", a_tanh, false},
    {"sigmoid", a_sigmoid, false},
    {"relu", a_relu, false},
    {"abs", a_abs, false},
    {"neg", a_neg, false},
    {"add_scalar 0.75", a_add_s, false},
    {"mul_scalar -1.5", a_mul_s, false},
    {"pow_scalar 1.5", a_pow_s, true},
    {"pow_scalar 2", a_pow_s2, false},
    {"leaky_relu 0.3", a_leaky, false},
    {"leaky_relu 0.01", a_leaky2, false},
    {"elu 1", a_elu, false},
    {"elu 0.5", a_elu2, false},
    {"gelu erf", a_gelu, false},
    {"gelu tanh", a_gelu_tanh, false},
    {"silu", a_silu, false},
    {"softplus", a_softplus, false},
    {"hard_sigmoid 0.2 0.5", a_hsig, false},
    {"hard_sigmoid 1/6 0.5", a_hsig2, false},
    {"clip -1 2", a_clip, false},
    {"maximum 0.25", a_maximum, false},
    {"minimum 0.25", a_minimum, false},
};
#define N_ACC ((int)(sizeof acc_cases / sizeof acc_cases[0]))

/* The sweep's points; returns how many (at most cap). */
static int64_t sweep_points(float *x, int64_t cap, bool positive)
{
    int64_t n = 0;
#define PUT(v) do { float v_ = (float)(v); if (n < cap && (!positive || v_ >= 0)) x[n++] = v_; } while (0)
    for (int k = -8192; k <= 8192; k++) /* [-1, 1] in steps of 2^-13 */
        PUT(k * 0x1p-13);
    for (int k = -4096; k <= 4096; k++) { /* around +-1 in steps of 2^-22 */
        PUT(1.0 + k * 0x1p-22);
        PUT(-1.0 + k * 0x1p-22);
    }
    for (int k = 0; k <= 12000; k++) { /* FLT_MIN .. 1e38, log-spaced */
        double v = FLT_MIN * pow(1e38 / FLT_MIN, k / 12000.0);
        PUT(v);
        PUT(-v);
    }
    for (int k = 0; k <= 4000; k++) { /* [-100, 100]: the transcendental ranges */
        PUT(-100.0 + 0.05 * k);
    }
    const float special[] = {0.0f, -0.0f, FLT_MIN, -FLT_MIN, FLT_MAX,
                             -FLT_MAX, INFINITY, -INFINITY, 88.72f, 88.73f, -87.3f, -103.9f,
                             1.00037515f, 0.99999994f, 1.0000001f};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
        PUT(special[k]);
#undef PUT
    return n;
}

static double ulp_of(double ref)
{
    float r = fabsf((float)ref);
    if (isinf(r))
        return INFINITY;
    return (double)nextafterf(r, INFINITY) - (double)r;
}

/* Worst error of got against ref in ulps of ref beyond atol (<= ULPS passes). */
typedef struct worst {
    double ulps;
    float x;
    double got, ref;
} worst;

static void compare(worst *w, const float *x, const float *got, const double *ref, int64_t n,
                    double atol)
{
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], e;
        float rf = (float)r;
        if (isnan(r))
            e = isnan(g) ? 0 : INFINITY;
        else if (isinf(rf))
            e = g == (double)rf ? 0 : INFINITY;
        else if (isnan(g) || isinf(g))
            e = INFINITY;
        else
            e = fmax(fabs(g - r) - atol, 0.0) / ulp_of(r);
        if (e > w->ulps) {
            w->ulps = e;
            w->x = x[i];
            w->got = g;
            w->ref = r;
        }
    }
}

/* y = fn(x) and dy/dx (g = 1) for x of dtype on backend be, into y and gx. */
static void run(const acc_case *c, tg_dtype dt, tg_backend be, const float *xs, int64_t n,
                void *y_out, void *gx_out)
{
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(be);
    tg_tensor *x32 = tg_from_data(TG_F32, 1, (const int64_t[]){n}, xs);
    TG_CHECK(x32 != NULL);
    tg_tensor *x = dt == TG_F32 ? x32 : tg_tensor_to_dtype(x32, dt);
    TG_CHECK(x != NULL);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = c->fn(x);
    TG_CHECK(y != NULL);
    tg_backward_opts o = TG_BACKWARD_OPTS_INIT;
    o.grad_output = tg_ones(dt, 1, (const int64_t[]){n});
    TG_OK_(tg_backward_ex(y, &o));
    size_t es = dt == TG_F32 ? sizeof(float) : sizeof(double);
    memcpy(y_out, tg_tensor_data_ro(y), (size_t)n * es);
    memcpy(gx_out, tg_tensor_data_ro(tg_grad(x)), (size_t)n * es);
    tg_set_backend(prev);
    tg_scope_pop(s);
}

START_TEST(f32_within_bound)
{
    const acc_case *c = &acc_cases[_i];
    enum { CAP = 80000 };
    float *x = malloc(CAP * sizeof *x), *y32 = malloc(CAP * sizeof *y32),
          *g32 = malloc(CAP * sizeof *g32);
    double *y64 = malloc(CAP * sizeof *y64), *g64 = malloc(CAP * sizeof *g64);
    ck_assert(x && y32 && g32 && y64 && g64);
    int64_t n = sweep_points(x, CAP, c->positive);
    run(c, TG_F32, TG_BACKEND_AUTO, x, n, y32, g32);
    run(c, TG_F64, TG_BACKEND_REFERENCE, x, n, y64, g64);
    worst wf = {0, 0, 0, 0}, wb = {0, 0, 0, 0};
    compare(&wf, x, y32, y64, n, ATOL_FWD);
    compare(&wb, x, g32, g64, n, ATOL_BWD);
    printf("accuracy: %-22s %lld points: forward %.3g ulp (x = %.9g: %.9g, exact %.9g), "
           "backward %.3g ulp (x = %.9g: %.9g, exact %.9g)\n",
           c->name, (long long)n, wf.ulps, (double)wf.x, wf.got, wf.ref, wb.ulps, (double)wb.x,
           wb.got, wb.ref);
    free(x);
    free(y32);
    free(g32);
    free(y64);
    free(g64);
    ck_assert_msg(wf.ulps <= ULPS, "%s forward: %.3g ulp at x = %.9g (%.9g, exact %.9g)",
                  c->name, wf.ulps, (double)wf.x, wf.got, wf.ref);
    ck_assert_msg(wb.ulps <= ULPS, "%s backward: %.3g ulp at x = %.9g (%.9g, exact %.9g)",
                  c->name, wb.ulps, (double)wb.x, wb.got, wb.ref);
}
END_TEST

/* The example: oneDNN's f32 log gave 3.7365e-4 here. */
START_TEST(log_near_one)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *y = tg_log(tg_from_data(TG_F32, 1, (const int64_t[]){1},
                                       (const float[]){1.00037515f}));
    TG_CHECK(y != NULL);
    double exact = log((double)1.00037515f);
    TG_ASSERT_CLOSE(tg_item(y), exact, 0, 2e-7);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("accuracy");
    TCase *tc = tg_tcase("f32 against f64");
    tcase_add_loop_test(tc, f32_within_bound, 0, N_ACC);
    tcase_add_test(tc, log_near_one);
    suite_add_tcase(s, tc);
    return s;
}
