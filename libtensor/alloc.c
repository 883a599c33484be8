/* libtensor/alloc.c -- 64-byte aligned, counted allocation and the live-object
 * counters that tests use to prove nothing leaked.
 *
 * Counters are atomics because oneDNN/OpenMP threads and user threads may free
 * storages concurrently; the allocator itself holds no other shared state. */
#include <stdatomic.h>
#include <stdlib.h>

#include "libtensor/tensor_impl.h"

static _Atomic uint64_t n_allocs;
static _Atomic uint64_t n_frees;
static _Atomic uint64_t bytes_live;
static _Atomic uint64_t bytes_peak;
static _Atomic int64_t live_objects;

/* Rounded up to a multiple of TG_ALIGN (aligned_alloc requires it) and never 0,
 * so a zero-element tensor still has a valid, distinct data pointer. */
static size_t rounded(size_t nbytes)
{
    if (nbytes == 0)
        return TG_ALIGN;
    return (nbytes + TG_ALIGN - 1) / TG_ALIGN * TG_ALIGN;
}

static void note_peak(uint64_t live)
{
    uint64_t peak = atomic_load(&bytes_peak);
    while (live > peak && !atomic_compare_exchange_weak(&bytes_peak, &peak, live))
        ;
}

void *tg_alloc_aligned(size_t nbytes)
{
    if (nbytes > SIZE_MAX - TG_ALIGN) {
        tg_error(TG_ERR_NOMEM, "tg_alloc_aligned: %zu bytes is too large", nbytes);
        return NULL;
    }
    size_t n = rounded(nbytes);
    void *p = aligned_alloc(TG_ALIGN, n);
    if (!p) {
        tg_error(TG_ERR_NOMEM, "tg_alloc_aligned: out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    atomic_fetch_add(&n_allocs, 1);
    note_peak(atomic_fetch_add(&bytes_live, nbytes) + nbytes);
    return p;
}

void tg_free_aligned(void *p, size_t nbytes)
{
    if (!p)
        return;
    free(p);
    atomic_fetch_add(&n_frees, 1);
    atomic_fetch_sub(&bytes_live, nbytes);
}

void tg_live_objects_add(int64_t delta)
{
    atomic_fetch_add(&live_objects, delta);
}

int64_t tg_live_objects(void)
{
    return atomic_load(&live_objects);
}

void tg_memory_stats_get(tg_memory_stats *out)
{
    if (!out) {
        tg_null_arg("tg_memory_stats_get", "out");
        return;
    }
    out->allocs = atomic_load(&n_allocs);
    out->frees = atomic_load(&n_frees);
    out->bytes_live = atomic_load(&bytes_live);
    out->bytes_peak = atomic_load(&bytes_peak);
}
