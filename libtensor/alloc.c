/* libtensor/alloc.c -- 64-byte aligned, counted allocation with a caching free
 * list, and the live-object counters that tests use to prove nothing leaked.
 *
 * Why a cache: on these machines touching freshly mapped pages is ~100x slower
 * than reusing memory, and a training step frees and re-requests the same sizes
 * every time. Freed blocks are kept per exact (rounded) size and handed out
 * again, so after the first step no storage reaches the system allocator. The
 * cache holds at most TG_ALLOC_CACHE_MB (environment, default 1024) megabytes;
 * 0 disables it. Under AddressSanitizer cached blocks are poisoned, so a use
 * after free is still reported. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "libtensor/tensor_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* The link word stays readable: LeakSanitizer does not look through poisoned
 * bytes, and would call every cached block but the first of a list leaked. */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((char *)(p) + sizeof(free_block), \
                                               (n) - sizeof(free_block))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static _Atomic uint64_t n_allocs;
static _Atomic uint64_t n_frees;
static _Atomic uint64_t bytes_live;
static _Atomic uint64_t bytes_peak;
static _Atomic int64_t live_objects;

/* ---------------------------------------------------------------- the cache */

/* A free block stores the link to the next free block of its size in itself
 * (every block is at least TG_ALIGN bytes). */
typedef struct free_block {
    struct free_block *next;
} free_block;

typedef struct size_class {
    size_t size;       /* rounded block size */
    free_block *head;
} size_class;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static size_class *classes; /* a step uses tens of distinct sizes: a linear scan is fine */
static size_t n_classes, cap_classes;
static size_t cache_bytes;  /* bytes sitting in the cache */
static size_t cache_limit;
static bool cache_configured;

/* Rounded up to a multiple of TG_ALIGN (aligned_alloc requires it) and never 0,
 * so a zero-element tensor still has a valid, distinct data pointer. */
static size_t rounded(size_t nbytes)
{
    if (nbytes == 0)
        return TG_ALIGN;
    return (nbytes + TG_ALIGN - 1) / TG_ALIGN * TG_ALIGN;
}

static void configure_cache(void)
{
    cache_configured = true;
    cache_limit = (size_t)1024 << 20;
    const char *env = getenv("TG_ALLOC_CACHE_MB");
    if (env && *env) {
        char *end;
        unsigned long long mb = strtoull(env, &end, 10);
        if (*end == '\0' && mb < ((unsigned long long)SIZE_MAX >> 20))
            cache_limit = (size_t)mb << 20;
    }
}

static size_class *find_class(size_t size)
{
    for (size_t i = 0; i < n_classes; i++)
        if (classes[i].size == size)
            return &classes[i];
    return NULL;
}

/* A cached block of exactly `size` bytes, or NULL. */
static void *cache_take(size_t size)
{
    void *p = NULL;
    pthread_mutex_lock(&cache_lock);
    size_class *c = find_class(size);
    if (c && c->head) {
        free_block *b = c->head;
        UNPOISON(b, size);
        c->head = b->next;
        cache_bytes -= size;
        p = b;
    }
    pthread_mutex_unlock(&cache_lock);
    return p;
}

/* Keeps p for reuse; false when the cache is full (the caller frees it). */
static bool cache_put(void *p, size_t size)
{
    bool kept = false;
    pthread_mutex_lock(&cache_lock);
    if (!cache_configured)
        configure_cache();
    if (cache_bytes + size <= cache_limit) {
        size_class *c = find_class(size);
        if (!c && n_classes == cap_classes) {
            size_t cap = cap_classes ? 2 * cap_classes : 32;
            size_class *grown = realloc(classes, cap * sizeof *grown);
            if (grown) {
                classes = grown;
                cap_classes = cap;
            }
        }
        if (!c && n_classes < cap_classes) {
            c = &classes[n_classes++];
            c->size = size;
            c->head = NULL;
        }
        if (c) {
            free_block *b = p;
            b->next = c->head;
            c->head = b;
            POISON(b, size);
            cache_bytes += size;
            kept = true;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

void tg_memory_cache_clear(void)
{
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < n_classes; i++) {
        while (classes[i].head) {
            free_block *b = classes[i].head;
            UNPOISON(b, classes[i].size);
            classes[i].head = b->next;
            free(b);
            atomic_fetch_add(&n_frees, 1);
        }
    }
    free(classes);
    classes = NULL;
    n_classes = cap_classes = 0;
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
}

/* ---------------------------------------------------------------- allocation */

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
    void *p = cache_take(n);
    if (!p) {
        p = aligned_alloc(TG_ALIGN, n);
        if (!p) {
            /* cached blocks of other sizes may be what is missing */
            tg_memory_cache_clear();
            p = aligned_alloc(TG_ALIGN, n);
        }
        if (!p) {
            tg_error(TG_ERR_NOMEM, "tg_alloc_aligned: out of memory allocating %zu bytes",
                     nbytes);
            return NULL;
        }
        atomic_fetch_add(&n_allocs, 1);
    }
    note_peak(atomic_fetch_add(&bytes_live, nbytes) + nbytes);
    return p;
}

void tg_free_aligned(void *p, size_t nbytes)
{
    if (!p)
        return;
    atomic_fetch_sub(&bytes_live, nbytes);
    if (cache_put(p, rounded(nbytes)))
        return;
    free(p);
    atomic_fetch_add(&n_frees, 1);
}

/* ---------------------------------------------------------------- counters */

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
    pthread_mutex_lock(&cache_lock);
    out->bytes_cached = cache_bytes;
    pthread_mutex_unlock(&cache_lock);
}
