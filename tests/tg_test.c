/* tests/tg_test.c -- main() and the no-leak fixture shared by the Check suites. */
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"
#include "libtensor/tensor_impl.h" /* the error context */

static int64_t live_at_start;

static void leak_setup(void)
{
    live_at_start = tg_live_objects();
    tg_clear_error();
}

static void leak_teardown(void)
{
    ck_assert_msg(tg_error_ctx_ == NULL, "test left the error context '%s' entered",
                  tg_error_ctx_);
    int depth = tg_scope_depth();
    ck_assert_msg(depth == 0, "test left %d scope(s) open", depth);
    int64_t live = tg_live_objects();
    ck_assert_msg(live == live_at_start, "test leaked %lld live object(s)",
                  (long long)(live - live_at_start));
}

TCase *tg_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, leak_setup, leak_teardown);
    tcase_set_timeout(tc, 300);
    return tc;
}

double tg_test_max_scaled_err(const tg_tensor *a, const tg_tensor *b, double atol,
                              double rtol, int64_t *worst)
{
    ck_assert_msg(a && b, "NULL tensor: %s", tg_last_error());
    ck_assert_msg(tg_tensor_same_shape(a, b), "shapes differ");
    tg_scope *s = tg_scope_push();
    tg_tensor *ad = tg_tensor_to_dtype(a, TG_F64), *bd = tg_tensor_to_dtype(b, TG_F64);
    const double *x = tg_tensor_data(ad), *y = tg_tensor_data(bd);
    double maxe = 0;
    *worst = -1;
    for (int64_t i = 0; i < tg_tensor_numel(a); i++) {
        double e = fabs(x[i] - y[i]) / (atol + rtol * fabs(y[i]));
        if (!(e <= maxe)) { /* also catches NaN */
            maxe = isnan(e) ? INFINITY : e;
            *worst = i;
        }
    }
    tg_scope_pop(s);
    return maxe;
}

void tg_test_set_grad(tg_tensor *p, const double *g)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *gt = tg_empty(tg_tensor_dtype(p), tg_tensor_ndim(p), tg_tensor_shape(p));
    for (int64_t i = 0; i < tg_tensor_numel(p); i++) {
        if (tg_tensor_dtype(p) == TG_F64)
            ((double *)tg_tensor_data(gt))[i] = g[i];
        else
            ((float *)tg_tensor_data(gt))[i] = (float)g[i];
    }
    if (tg_grad(p))
        TG_OK_(tg_zero_grad(p));
    tg_tensor *loss = tg_sum(tg_mul(p, gt), NULL, 0, false);
    TG_CHECK(loss);
    TG_OK_(tg_backward(loss));
    tg_scope_pop(s);
}

int main(void)
{
    SRunner *sr = srunner_create(tg_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
