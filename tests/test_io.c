/* placeholder suite: being written */
#include "tests/tg_test.h"
Suite *tg_suite(void) { return suite_create("io"); }
