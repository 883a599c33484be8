/* libtensor/runtime.h -- threads, memory counters and the live-object counter.
 *
 * One knob controls all parallelism: oneDNN and the framework's own loops both
 * run on OpenMP, so tg_set_num_threads() (or OMP_NUM_THREADS) governs both. */
#ifndef TG_RUNTIME_H
#define TG_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* The most threads tg_set_num_threads accepts: far beyond any core count this
 * library runs on (oversubscribing cores only slows OpenMP down), and low
 * enough that a mistyped count cannot make the OpenMP runtime create thousands
 * of threads (100000 overflowed libgomp's stacks and killed the process). */
#define TG_MAX_THREADS 256
/* 1 <= n <= TG_MAX_THREADS; TG_ERR_ARG otherwise (nothing changes). The default
 * honours OMP_NUM_THREADS (which this limit does not govern). */
tg_status tg_set_num_threads(int n);
int tg_get_num_threads(void);

/* Flush-to-zero and denormals-are-zero (x86 MXCSR FTZ and DAZ bits).
 *
 * Numbers below 1.2e-38 (f32) make x86 arithmetic take a microcode assist of
 * about a hundred cycles per operation. Training produces them: Adam's moments
 * of parameters that get no gradient for a while decay into that range, and
 * then every optimizer step and every kernel that touches them runs 2-3x slower
 * (docs/performance.md, *Denormals*). With flushing on, such results and inputs
 * count as zero, which changes no result a network can notice.
 *
 * On by default (as TensorFlow does; PyTorch's torch.set_flush_denormal is the
 * same switch, off by default there): the library turns it on the first time it
 * computes (the oneDNN engine is created, or an optimizer steps), unless the
 * environment variable TG_FLUSH_DENORMALS is "0". The setting is per thread;
 * the library applies it to the calling thread and to every thread of the
 * OpenMP team (threads created later inherit it from the thread that creates
 * them), so call it from the thread that runs the model. Turning it off
 * restores IEEE gradual underflow the same way. Returns TG_ERR_UNSUPPORTED,
 * changing nothing, when asked to turn it on on a CPU without these bits (non-x86
 * builds); turning it off always succeeds. */
tg_status tg_set_flush_denormals(bool on);
/* Whether the calling thread flushes denormals now. */
bool tg_get_flush_denormals(void);

/* Debug mode: catches uses of freed tensors. Off by default; on when the
 * environment variable TG_DEBUG is set to anything but "0" (read once, at the
 * first tensor freed or the first call here), or by tg_set_debug_mode.
 *
 * In debug mode a freed tensor's handle is poisoned and its memory kept
 * (never reused) for the rest of the process, so a later use of the handle
 * (an op given a tensor whose scope popped, tg_item, tg_release twice ...) is
 * always recognised: the call fails with TG_ERR_STATE and a message naming the
 * function (the op) and the argument, which is also printed to stderr.
 * Without it the same checks run, but freed memory may have been reused, so a
 * use after free may go unnoticed or crash. The kept headers cost about 200
 * bytes per tensor freed: for debugging, not for long training runs.
 * Switching it off keeps what was kept. docs/tensor-api.md, "Debugging". */
void tg_set_debug_mode(bool on);
bool tg_get_debug_mode(void);
/* Objects alive now: tensors, storages and autodiff nodes. Tests assert it
 * returns to its starting value (docs/tensor-api.md, "Debugging"). */
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
TG_API_END
#endif
