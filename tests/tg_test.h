/* tests/tg_test.h -- what every Check suite of libtensor shares.
 *
 * Each test program defines tg_suite(); tests/tg_test.c supplies main(). Make
 * test cases with tg_tcase(): its fixture asserts, after every test, that no
 * tensor, storage or node is left alive and no scope is left open. */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <check.h>
#include <math.h>

#include "libtensor.h"

Suite *tg_suite(void);

/* A TCase with the no-leak fixture and a generous timeout (seconds). */
TCase *tg_tcase(const char *name);

/* Fails with the library's last error when cond is false. */
#define TG_CHECK(cond) ck_assert_msg((cond), "%s failed: %s", #cond, tg_last_error())
#define TG_OK_(expr) do { tg_status st_ = (expr); \
        ck_assert_msg(st_ == TG_OK, "%s -> %d: %s", #expr, (int)st_, tg_last_error()); } while (0)
/* |a - b| <= atol + rtol * |b| */
#define TG_ASSERT_CLOSE(a, b, atol, rtol) do { double a_ = (a), b_ = (b); \
        ck_assert_msg(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_), \
                      "%s = %.17g, expected %s = %.17g", #a, a_, #b, b_); } while (0)

/* Largest |a_i - b_i| / (atol + rtol*|b_i|) over two equal-shaped tensors;
 * <= 1 means close. Works across dtypes. Sets *worst to the worst flat index. */
double tg_test_max_scaled_err(const tg_tensor *a, const tg_tensor *b, double atol,
                              double rtol, int64_t *worst);
#define TG_ASSERT_TENSOR_CLOSE(a, b, atol, rtol) do { int64_t w_ = -1; \
        double e_ = tg_test_max_scaled_err((a), (b), (atol), (rtol), &w_); \
        ck_assert_msg(e_ <= 1.0, "%s vs %s: element %lld off by %.3g x tolerance", \
                      #a, #b, (long long)w_, e_); } while (0)

/* Sets p's gradient to exactly g (tg_tensor_numel(p) values, in p's dtype) through
 * backward of sum(p * g), whose gradient is g; an earlier gradient is zeroed first. */
void tg_test_set_grad(tg_tensor *p, const double *g);

/* Asserts the last error mentions `needle` (case-sensitive substring). */
#define TG_ASSERT_ERROR_HAS(needle) ck_assert_msg(strstr(tg_last_error(), (needle)) != NULL, \
        "last error \"%s\" does not mention \"%s\"", tg_last_error(), (needle))

#endif
