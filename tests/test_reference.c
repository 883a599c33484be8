/* tests/test_reference.c -- the tutorial network against PyTorch.
 *
 * ../shared/reference/seed_cnn_pytorch.h5 (layout in its README.md) holds inputs,
 * parameters, activations, loss and every gradient that PyTorch 1.13 computed in
 * float64 for conv 32 3x3 + ReLU -> max pool 2x2 -> flatten -> dense 128 + ReLU ->
 * dense 10 -> cross-entropy, batch 4. We build the same network from our ops and
 * compare every activation, the loss and every gradient, as max |diff| / max |ref|:
 * f64 on the reference kernels within 1e-10 (measured: 5e-15), f32 on the reference
 * kernels and on oneDNN within 1e-5 (measured: 1e-7 and 7e-7). Without the file (a
 * tarball build) the test says so and passes. TG_TEST_VERBOSE=1 prints the errors. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"

#define H5NAME "seed_cnn_pytorch.h5"

static char ref_path[4096];

/* The reference file: $TG_REFERENCE_H5, $top_srcdir/../shared/reference/, or
 * ../shared/reference/ and a few levels above the working directory. */
static bool find_reference(void)
{
    const char *env = getenv("TG_REFERENCE_H5");
    if (env && access(env, R_OK) == 0) {
        snprintf(ref_path, sizeof ref_path, "%s", env);
        return true;
    }
    const char *top = getenv("top_srcdir");
    if (top) {
        snprintf(ref_path, sizeof ref_path, "%s/../shared/reference/" H5NAME, top);
        if (access(ref_path, R_OK) == 0)
            return true;
    }
    const char *rel[] = {"../shared/reference/" H5NAME, "../../shared/reference/" H5NAME,
                         "../../../shared/reference/" H5NAME};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (access(rel[i], R_OK) == 0) {
            snprintf(ref_path, sizeof ref_path, "%s", rel[i]);
            return true;
        }
    snprintf(ref_path, sizeof ref_path, "%s/../shared/reference/" H5NAME,
             top ? top : "$top_srcdir");
    return false;
}

/* Dataset `name` as a tensor of dtype dt (scoped), converted from the file's
 * float64 or int64. */
static tg_tensor *load(hid_t f, const char *name, tg_dtype dt)
{
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(ds >= 0, "%s: no dataset %s", ref_path, name);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    ck_assert_msg(nd >= 0 && nd <= TG_MAX_DIMS, "%s: rank %d", name, nd);
    hsize_t dims[TG_MAX_DIMS];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int64_t shape[TG_MAX_DIMS];
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int64_t)dims[i];
        n *= shape[i];
    }
    bool integer = dt == TG_I64;
    void *buf = malloc((size_t)(n > 0 ? n : 1) * 8);
    ck_assert(buf != NULL);
    herr_t rc = H5Dread(ds, integer ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                        H5P_DEFAULT, buf);
    ck_assert_msg(rc >= 0, "%s: cannot read %s", ref_path, name);
    H5Sclose(sp);
    H5Dclose(ds);
    tg_tensor *t = tg_from_data(integer ? TG_I64 : TG_F64, nd, shape, buf);
    free(buf);
    TG_CHECK(t != NULL);
    if (!integer && dt != TG_F64)
        t = tg_tensor_to_dtype(t, dt);
    TG_CHECK(t != NULL);
    return t;
}

/* Largest |a - b| over the largest |b| (b: contiguous f64): one number per tensor, immune to the
 * near-zero elements where a relative error says nothing. */
static double norm_err(const tg_tensor *a, const tg_tensor *b)
{
    ck_assert_msg(tg_tensor_same_shape(a, b), "shapes differ");
    const double *ap = tg_tensor_data(tg_tensor_to_dtype(a, TG_F64));
    const double *bp = tg_tensor_data(b);
    double maxd = 0, maxb = 0;
    for (int64_t i = 0; i < tg_tensor_numel(b); i++) {
        double x = ap[i], y = bp[i];
        double d = fabs(x - y);
        if (!(d <= maxd))
            maxd = isnan(d) ? INFINITY : d;
        if (fabs(y) > maxb)
            maxb = fabs(y);
    }
    return maxb > 0 ? maxd / maxb : maxd;
}

static const char *const params[] = {"conv_kernel", "conv_bias", "dense1_kernel",
                                     "dense1_bias", "dense2_kernel", "dense2_bias"};
#define N_PARAMS 6

/* Runs the network in dtype dt on backend be and checks it against the file.
 * tol bounds norm_err (max abs difference over max magnitude) of every tensor; the
 * element-wise check allows tol relative plus tol * max magnitude absolute. */
static void check_network(tg_dtype dt, tg_backend be, double tol)
{
    if (!find_reference()) {
        printf("test_reference: skipped: reference file not found at %s\n", ref_path);
        return;
    }
    hid_t f = H5Fopen(ref_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", ref_path);
    tg_scope *s = tg_scope_push();
    tg_backend prev = tg_set_backend(be);

    tg_tensor *x = load(f, "/inputs/x", dt);
    tg_tensor *labels = load(f, "/inputs/labels", TG_I64);
    tg_tensor *p[N_PARAMS];
    char name[128];
    for (int i = 0; i < N_PARAMS; i++) {
        snprintf(name, sizeof name, "/inputs/%s", params[i]);
        p[i] = load(f, name, dt);
        TG_OK_(tg_set_requires_grad(p[i], true));
    }
    TG_OK_(tg_set_requires_grad(x, true));

    tg_tensor *conv_relu = tg_relu(tg_conv2d(x, p[0], p[1], NULL));
    tg_tensor *pool = tg_max_pool2d(conv_relu, NULL);
    tg_tensor *dense1_relu = tg_relu(tg_dense(tg_flatten(pool, 1, -1), p[2], p[3]));
    tg_tensor *logits = tg_dense(dense1_relu, p[4], p[5]);
    tg_tensor *loss = tg_cross_entropy(logits, labels);
    TG_CHECK(loss != NULL);
    TG_OK_(tg_backward(loss));

    struct { const char *name; tg_tensor *t; } outs[] = {
        {"/forward/conv_relu", conv_relu}, {"/forward/pool", pool},
        {"/forward/dense1_relu", dense1_relu}, {"/forward/logits", logits},
        {"/forward/loss", loss}, {"/grad/x", tg_grad(x)},
        {"/grad/conv_kernel", tg_grad(p[0])}, {"/grad/conv_bias", tg_grad(p[1])},
        {"/grad/dense1_kernel", tg_grad(p[2])}, {"/grad/dense1_bias", tg_grad(p[3])},
        {"/grad/dense2_kernel", tg_grad(p[4])}, {"/grad/dense2_bias", tg_grad(p[5])},
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        ck_assert_msg(outs[i].t != NULL, "%s: not computed", outs[i].name);
        tg_tensor *ref = load(f, outs[i].name, TG_F64);
        ck_assert_msg(tg_tensor_numel(outs[i].t) == tg_tensor_numel(ref), "%s: size",
                      outs[i].name);
        if (tg_tensor_ndim(ref) == 0) /* the scalar loss */
            ref = tg_reshape(ref, tg_tensor_ndim(outs[i].t), tg_tensor_shape(outs[i].t));
        double e = norm_err(outs[i].t, ref);
        if (getenv("TG_TEST_VERBOSE"))
            printf("%-22s %s %-9s max|diff|/max|ref| = %.3g\n", outs[i].name,
                   tg_dtype_name(dt), be == TG_BACKEND_AUTO ? "oneDNN" : "reference", e);
        ck_assert_msg(e <= tol, "%s (%s, %s): max |diff| / max |ref| = %.3g > %.3g",
                      outs[i].name, tg_dtype_name(dt),
                      be == TG_BACKEND_AUTO ? "oneDNN" : "reference", e, tol);
        double maxb = 0;
        const double *rp = tg_tensor_data(ref);
        for (int64_t k = 0; k < tg_tensor_numel(ref); k++)
            maxb = fmax(maxb, fabs(rp[k]));
        int64_t w;
        double se = tg_test_max_scaled_err(outs[i].t, ref, tol * maxb + 1e-300, tol, &w);
        ck_assert_msg(se <= 1.0, "%s: element %lld off by %.3g x tolerance", outs[i].name,
                      (long long)w, se);
    }
    tg_set_backend(prev);
    tg_scope_pop(s);
    H5Fclose(f);
}

START_TEST(pytorch_f64_reference)
{
    check_network(TG_F64, TG_BACKEND_REFERENCE, 1e-10);
}
END_TEST

START_TEST(pytorch_f32_reference_kernels)
{
    check_network(TG_F32, TG_BACKEND_REFERENCE, 1e-5);
}
END_TEST

START_TEST(pytorch_f32_onednn)
{
    check_network(TG_F32, TG_BACKEND_AUTO, 1e-5);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("reference");
    TCase *tc = tg_tcase("pytorch");
    tcase_add_test(tc, pytorch_f64_reference);
    tcase_add_test(tc, pytorch_f32_reference_kernels);
    tcase_add_test(tc, pytorch_f32_onednn);
    suite_add_tcase(s, tc);
    return s;
}
