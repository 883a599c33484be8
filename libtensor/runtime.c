/* libtensor/runtime.c -- the thread-count knob and the library version.
 *
 * oneDNN and the framework's own loops share one OpenMP runtime, so setting its
 * thread count here governs both. */
#include <omp.h>

#include "config.h"
#include "libtensor/tensor_impl.h"

tg_status tg_set_num_threads(int n)
{
    if (n < 1)
        return tg_error(TG_ERR_ARG, "tg_set_num_threads: n must be >= 1, got %d", n);
    omp_set_num_threads(n);
    return TG_OK;
}

int tg_get_num_threads(void)
{
    return omp_get_max_threads();
}

const char *tg_version(void)
{
    return PACKAGE_VERSION;
}
