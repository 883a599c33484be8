/* tests/fuzz/common.c -- fuzz_fail and the leak check shared by the targets. */
#include <stdio.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz.h"
#include "libtensor.h"

_Noreturn void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz: %s (last error: %s)\n", what, tg_last_error());
    fflush(stderr);
    abort();
}

void fuzz_check_no_leak(void)
{
    static int64_t baseline = -1;
    int64_t live = tg_live_objects();
    if (baseline < 0)
        baseline = live;
    if (live != baseline) {
        fprintf(stderr, "fuzz: %lld objects alive after the input, %lld before\n",
                (long long)live, (long long)baseline);
        fuzz_fail("leak");
    }
}
