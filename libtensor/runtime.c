/* libtensor/runtime.c -- the thread-count knob, denormal flushing, the signal
 * mask of the OpenMP workers and the library version.
 *
 * oneDNN and the framework's own loops share one OpenMP runtime, so setting its
 * thread count here governs both. The floating-point mode and the signal mask
 * are per thread, so they are set inside a parallel region that reaches every
 * thread of the team. */
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#define HAVE_MXCSR 1
#endif

#include "config.h"
#include "libtensor/signals_impl.h"
#include "libtensor/tensor_impl.h"

#ifdef HAVE_MXCSR
#define MXCSR_DAZ 0x0040u /* denormal inputs read as zero */
#define MXCSR_FTZ 0x8000u /* denormal results written as zero */
#endif

/* What the user (or the default) asked for; applied to each team thread. */
static atomic_bool want_flush;
static atomic_bool default_applied;

static void set_this_thread(bool on)
{
#ifdef HAVE_MXCSR
    unsigned csr = _mm_getcsr();
    csr = on ? (csr | MXCSR_DAZ | MXCSR_FTZ) : (csr & ~(MXCSR_DAZ | MXCSR_FTZ));
    _mm_setcsr(csr);
#else
    (void)on;
#endif
}

void tg_async_signals(sigset_t *set)
{
    sigfillset(set);
    /* Raised by the faulting instruction itself: blocked, they kill the process. */
    static const int sync_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };
    for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++)
        sigdelset(set, sync_signals[i]);
}

/* The OpenMP workers (every team thread but the caller) block the asynchronous
 * signals, so the kernel delivers those to the application's own threads,
 * where ops/dnnl.c can hold them around the oneDNN kernels that must not be
 * interrupted (see tg_dnnl_exec). libuv's thread pool does the same. */
static void block_signals_in_worker(void)
{
    if (omp_get_thread_num() == 0)
        return;
    sigset_t set;
    tg_async_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* The calling thread, then every thread of a team as large as the next
 * parallel region will use (one region; idle threads of a smaller team keep
 * their old mode but will not compute until a larger team is asked for, and
 * then tg_set_num_threads re-applies). Also blocks the workers' signals. */
static void apply_everywhere(bool on)
{
    set_this_thread(on);
    if (omp_in_parallel())
        return; /* a nested call would only reach a one-thread team */
    #pragma omp parallel
    {
        set_this_thread(on);
        block_signals_in_worker();
    }
}

tg_status tg_set_flush_denormals(bool on)
{
#ifndef HAVE_MXCSR
    if (on)
        return tg_error(TG_ERR_UNSUPPORTED,
                        "tg_set_flush_denormals: this CPU has no flush-to-zero control "
                        "that libtensor knows (only x86 SSE2 is supported)");
#endif
    atomic_store(&want_flush, on);
    atomic_store(&default_applied, true); /* an explicit choice replaces the default */
    apply_everywhere(on);
    return TG_OK;
}

bool tg_get_flush_denormals(void)
{
#ifdef HAVE_MXCSR
    return (_mm_getcsr() & (MXCSR_DAZ | MXCSR_FTZ)) == (MXCSR_DAZ | MXCSR_FTZ);
#else
    return false;
#endif
}

void tg_runtime_first_compute(void)
{
    if (atomic_load(&default_applied) || atomic_exchange(&default_applied, true))
        return;
    const char *env = getenv("TG_FLUSH_DENORMALS");
    bool on = !(env && strcmp(env, "0") == 0);
#ifndef HAVE_MXCSR
    on = false;
#endif
    atomic_store(&want_flush, on);
    apply_everywhere(on); /* also when off: the workers' signal mask */
}

tg_status tg_set_num_threads(int n)
{
    if (n < 1 || n > TG_MAX_THREADS)
        return tg_error(TG_ERR_ARG, "tg_set_num_threads: n must be between 1 and %d "
                        "(TG_MAX_THREADS), got %d", TG_MAX_THREADS, n);
    omp_set_num_threads(n);
    /* A larger team may start threads that predate the mode; set it on all. */
    if (atomic_load(&default_applied))
        apply_everywhere(atomic_load(&want_flush));
    return TG_OK;
}

int tg_get_num_threads(void)
{
    return omp_get_max_threads();
}

/* ---------------------------------------------------------------- debug mode */

/* -1 until TG_DEBUG has been read, then 0 or 1. */
static atomic_int debug_state = -1;

bool tg_debug_on(void)
{
    int s = atomic_load_explicit(&debug_state, memory_order_relaxed);
    if (__builtin_expect(s < 0, 0)) {
        const char *e = getenv("TG_DEBUG");
        int expect = -1;
        atomic_compare_exchange_strong(&debug_state, &expect,
                                       e && *e && strcmp(e, "0") != 0);
        s = atomic_load(&debug_state);
    }
    return s > 0;
}

void tg_set_debug_mode(bool on)
{
    atomic_store(&debug_state, on ? 1 : 0);
}

bool tg_get_debug_mode(void)
{
    return tg_debug_on();
}

void tg_misuse_report(_Atomic bool *once, const char *msg)
{
    if (!tg_debug_on() && atomic_exchange(once, true))
        return;
    fprintf(stderr, "libtensor: %s\n", msg);
}

const char *tg_version(void)
{
    return PACKAGE_VERSION;
}
