/* tests/test_nn.c -- layers, Sequential, optimizers and metrics (being written). */
#include "tests/tg_test.h"

START_TEST(test_placeholder)
{
    ck_assert(1);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tg_tcase("placeholder");
    tcase_add_test(tc, test_placeholder);
    suite_add_tcase(s, tc);
    return s;
}
