/* libtensor/runtime.h -- threads, memory counters and the live-object counter.
 *
 * One knob controls all parallelism: oneDNN and the framework's own loops both
 * run on OpenMP, so tg_set_num_threads() (or OMP_NUM_THREADS) governs both. */
#ifndef TG_RUNTIME_H
#define TG_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "libtensor/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* n >= 1; returns TG_ERR_ARG otherwise. The default honours OMP_NUM_THREADS. */
tg_status tg_set_num_threads(int n);
int tg_get_num_threads(void);

/* Objects alive now: tensors, storages and autodiff nodes. Tests assert it
 * returns to its starting value. */
int64_t tg_live_objects(void);
int64_t tg_live_tensors(void);

typedef struct tg_memory_stats {
    uint64_t allocs;       /* storage allocations that reached the system allocator */
    uint64_t frees;        /* blocks given back to the system allocator */
    uint64_t bytes_live;   /* bytes held by live storages */
    uint64_t bytes_peak;
    uint64_t bytes_cached; /* freed blocks kept for reuse (not counted in frees) */
} tg_memory_stats;

void tg_memory_stats_get(tg_memory_stats *out);
/* Storage memory is recycled: freed blocks are kept per size and reused, so a
 * training step after the first allocates nothing new. The cache holds at most
 * TG_ALLOC_CACHE_MB megabytes (environment; default 1024; 0 disables it). This
 * gives every cached block back to the system. */
void tg_memory_cache_clear(void);

/* "0.1.0" (a static string: borrowed, valid for the whole run) */
const char *tg_version(void);

#ifdef __cplusplus
}
#endif
#endif
