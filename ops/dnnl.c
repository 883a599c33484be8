/* ops/dnnl.c -- the oneDNN glue, and nothing else: one engine and stream, the
 * primitive cache, the user-managed scratchpad, reorders and cached weight
 * reorders, pending layouts on storages, and the two ways to execute a cached
 * primitive (tg_dnnl_exec on buffers, tg_dnnl_exec_tensors on plain tensors).
 * Kernels live in their op's file; this file runs them without re-creating
 * primitives. */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "libtensor/signals_impl.h"
#include "ops/dnnl_impl.h"

/* ---------------------------------------------------------------- state */

#define N_BUCKETS 512
#define MAX_ENTRIES 1024   /* LRU beyond this; a training step uses a few dozen */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t glue_mutex;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_primitive_attr_t attr;   /* user-managed scratchpad */
static dnnl_primitive_attr_t relu_attr; /* the same plus a ReLU post-op (made on first use) */
static dnnl_status_t init_status = dnnl_success;
static const char *init_step = "";
static bool blocked_layouts = true;
static sigset_t async_signals; /* held around the gemm-based primitives */

static tg_dnnl_entry *buckets[N_BUCKETS];
static int n_entries;
static uint64_t use_clock;
static tg_backend_stats stats;

static void *scratch;              /* one growing buffer shared by every primitive */
static size_t scratch_cap;
static void *tmp_buf[TG_DNNL_TMP_SLOTS]; /* activations in a primitive's own layout */
static size_t tmp_cap[TG_DNNL_TMP_SLOTS];

/* Reordered weights. A slot is valid while the weights' storage, data pointer and
 * version are those it was made from (versions never repeat: tg_version_next). */
#define W_SLOTS 32
typedef struct wslot {
    const tg_storage *storage;
    const void *data;
    uint64_t version;
    dnnl_memory_desc_t want;
    void *buf;
    size_t cap;
    uint64_t last_use;
} wslot;
static wslot wcache[W_SLOTS];
static void init_glue(void)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&glue_mutex, &ma);
    pthread_mutexattr_destroy(&ma);

    tg_async_signals(&async_signals);
    const char *layout = getenv("TG_DNNL_LAYOUT");
    blocked_layouts = !(layout && strcmp(layout, "plain") == 0);

    tg_runtime_first_compute();
    init_step = "dnnl_engine_create";
    init_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (init_status != dnnl_success)
        return;
    init_step = "dnnl_stream_create";
    init_status = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    if (init_status != dnnl_success)
        return;
    init_step = "dnnl_primitive_attr_create";
    init_status = dnnl_primitive_attr_create(&attr);
    if (init_status != dnnl_success)
        return;
    init_step = "dnnl_primitive_attr_set_scratchpad_mode";
    init_status = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
}

dnnl_engine_t tg_dnnl_engine(void)
{
    pthread_once(&init_once, init_glue);
    if (init_status != dnnl_success) {
        tg_error_here(TG_ERR_BACKEND, "oneDNN could not start: %s failed (%s)",
                      init_step, dnnl_status2str(init_status));
        return NULL;
    }
    return engine;
}

void tg_dnnl_lock(void)
{
    pthread_once(&init_once, init_glue);
    pthread_mutex_lock(&glue_mutex);
}

void tg_dnnl_unlock(void)
{
    pthread_mutex_unlock(&glue_mutex);
}

bool tg_dnnl_blocked_layouts(void)
{
    pthread_once(&init_once, init_glue);
    return blocked_layouts;
}

bool tg_dnnl_set_blocked_layouts(bool on)
{
    tg_dnnl_lock();
    bool prev = blocked_layouts;
    blocked_layouts = on;
    tg_dnnl_unlock();
    return prev;
}

tg_status tg_dnnl_failed(const char *what, dnnl_status_t st)
{
    return tg_error_here(TG_ERR_BACKEND, "oneDNN %s failed: %s", what,
                         dnnl_status2str(st));
}

tg_status tg_dnnl_refused(const char *what, dnnl_status_t st,
                          const char *fmt, ...)
{
    char shapes[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shapes, sizeof shapes, fmt, ap);
    va_end(ap);
    return tg_error_here(TG_ERR_BACKEND, "oneDNN cannot run this %s (%s): %s", what,
                         dnnl_status2str(st), shapes);
}

/* ---------------------------------------------------------------- keys */

void tg_dnnl_key_init(tg_dnnl_key *k, tg_dnnl_kind kind)
{
    k->n = 0;
    tg_dnnl_key_add(k, (int64_t)kind);
}

void tg_dnnl_key_add(tg_dnnl_key *k, int64_t v)
{
    if (k->n < 0)
        return;
    if (k->n == TG_DNNL_KEY_MAX) {
        k->n = -1;
        return;
    }
    k->v[k->n++] = v;
}

void tg_dnnl_key_add_n(tg_dnnl_key *k, int n, const int64_t *v)
{
    tg_dnnl_key_add(k, n);
    for (int i = 0; i < n; i++)
        tg_dnnl_key_add(k, v[i]);
}

static uint64_t key_hash(const tg_dnnl_key *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the words */
    for (int i = 0; i < k->n; i++) {
        uint64_t w = (uint64_t)k->v[i];
        for (int b = 0; b < 8; b++) {
            h ^= (w >> (8 * b)) & 0xff;
            h *= 1099511628211ull;
        }
    }
    return h;
}

static bool key_equal(const tg_dnnl_key *a, const tg_dnnl_key *b)
{
    return a->n == b->n && memcmp(a->v, b->v, (size_t)a->n * sizeof a->v[0]) == 0;
}

/* ---------------------------------------------------------------- cache */

static void entry_free(tg_dnnl_entry *e)
{
    if (e->prim)
        dnnl_primitive_destroy(e->prim);
    if (e->pd)
        dnnl_primitive_desc_destroy(e->pd);
    free(e);
}

tg_dnnl_entry *tg_dnnl_find(const tg_dnnl_key *key)
{
    if (key->n < 0)
        return NULL;
    uint64_t h = key_hash(key);
    for (tg_dnnl_entry *e = buckets[h % N_BUCKETS]; e; e = e->next) {
        if (e->hash == h && key_equal(&e->key, key)) {
            e->last_use = ++use_clock;
            stats.cache_hits++;
            return e;
        }
    }
    stats.cache_misses++;
    return NULL;
}

static void evict_oldest(void)
{
    tg_dnnl_entry **victim = NULL;
    for (int b = 0; b < N_BUCKETS; b++)
        for (tg_dnnl_entry **pe = &buckets[b]; *pe; pe = &(*pe)->next)
            if (!victim || (*pe)->last_use < (*victim)->last_use)
                victim = pe;
    if (victim) {
        tg_dnnl_entry *e = *victim;
        *victim = e->next;
        entry_free(e);
        n_entries--;
    }
}

tg_dnnl_entry *tg_dnnl_insert(const tg_dnnl_key *key, dnnl_primitive_desc_t pd)
{
    if (key->n < 0) {
        dnnl_primitive_desc_destroy(pd);
        tg_error_here(TG_ERR_BACKEND, "primitive cache key too long");
        return NULL;
    }
    tg_dnnl_entry *e = calloc(1, sizeof *e);
    if (!e) {
        dnnl_primitive_desc_destroy(pd);
        tg_error_here(TG_ERR_NOMEM, "out of memory for a primitive cache entry");
        return NULL;
    }
    e->key = *key;
    e->hash = key_hash(key);
    e->pd = pd;
    dnnl_status_t st = dnnl_primitive_create(&e->prim, pd);
    if (st != dnnl_success) {
        e->prim = NULL;
        entry_free(e);
        tg_dnnl_failed("dnnl_primitive_create", st);
        return NULL;
    }
    stats.primitives_created++;
    const char *impl = NULL;
    e->hold_signals = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
                      dnnl_success || !impl || strstr(impl, "gemm:jit") != NULL;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (n_entries >= MAX_ENTRIES)
        evict_oldest();
    e->last_use = ++use_clock;
    e->next = buckets[e->hash % N_BUCKETS];
    buckets[e->hash % N_BUCKETS] = e;
    n_entries++;
    return e;
}

/* The attribute with a ReLU post-op, created once (lock held). */
static dnnl_primitive_attr_t get_relu_attr(void)
{
    if (relu_attr)
        return relu_attr;
    dnnl_primitive_attr_t a = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_primitive_attr_clone(&a, attr);
    if (st == dnnl_success)
        st = dnnl_post_ops_create(&po);
    if (st == dnnl_success)
        st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_post_ops(a, po);
    if (po)
        dnnl_post_ops_destroy(po);
    if (st != dnnl_success) {
        if (a)
            dnnl_primitive_attr_destroy(a);
        tg_dnnl_failed("a ReLU post-op attribute", st);
        return NULL;
    }
    relu_attr = a;
    return relu_attr;
}

dnnl_primitive_desc_t tg_dnnl_pd_create(const_dnnl_op_desc_t op_desc,
                                        const_dnnl_primitive_desc_t hint)
{
    return tg_dnnl_pd_create_ex(op_desc, hint, false);
}

dnnl_primitive_desc_t tg_dnnl_pd_create_ex(const_dnnl_op_desc_t op_desc,
                                           const_dnnl_primitive_desc_t hint, bool relu)
{
    if (!tg_dnnl_engine())
        return NULL;
    const_dnnl_primitive_attr_t at = relu ? get_relu_attr() : attr;
    if (!at)
        return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, op_desc, at, engine, hint);
    if (st != dnnl_success) {
        tg_dnnl_failed("dnnl_primitive_desc_create", st);
        return NULL;
    }
    return pd;
}

tg_dnnl_entry *tg_dnnl_create(const tg_dnnl_key *key, const_dnnl_op_desc_t op_desc,
                              const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = tg_dnnl_pd_create(op_desc, hint);
    return pd ? tg_dnnl_insert(key, pd) : NULL;
}

const dnnl_memory_desc_t *tg_dnnl_md(const tg_dnnl_entry *e, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(e->pd, what, 0);
}

bool tg_dnnl_md_padded(const dnnl_memory_desc_t *md)
{
    for (int i = 0; i < md->ndims; i++)
        if (md->padded_dims[i] != md->dims[i])
            return true;
    return false;
}

/* Everything that distinguishes one layout from another. */
void tg_dnnl_key_add_md(tg_dnnl_key *k, const dnnl_memory_desc_t *md)
{
    tg_dnnl_key_add(k, md->data_type);
    tg_dnnl_key_add(k, md->format_kind);
    tg_dnnl_key_add_n(k, md->ndims, md->dims);
    for (int i = 0; i < md->ndims; i++) {
        tg_dnnl_key_add(k, md->padded_dims[i]);
        tg_dnnl_key_add(k, md->padded_offsets[i]);
    }
    tg_dnnl_key_add(k, md->offset0);
    if (md->format_kind == dnnl_blocked) {
        const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
        for (int i = 0; i < md->ndims; i++)
            tg_dnnl_key_add(k, b->strides[i]);
        tg_dnnl_key_add_n(k, b->inner_nblks, b->inner_blks);
        for (int i = 0; i < b->inner_nblks; i++)
            tg_dnnl_key_add(k, b->inner_idxs[i]);
    }
    tg_dnnl_key_add(k, (int64_t)md->extra.flags);
}

void tg_backend_stats_get(tg_backend_stats *out)
{
    if (!out)
        return;
    tg_dnnl_lock();
    *out = stats;
    tg_dnnl_unlock();
}

void tg_backend_cache_clear(void)
{
    tg_dnnl_lock();
    for (int b = 0; b < N_BUCKETS; b++) {
        tg_dnnl_entry *e = buckets[b];
        while (e) {
            tg_dnnl_entry *next = e->next;
            entry_free(e);
            e = next;
        }
        buckets[b] = NULL;
    }
    n_entries = 0;
    free(scratch);
    scratch = NULL;
    scratch_cap = 0;
    for (int i = 0; i < TG_DNNL_TMP_SLOTS; i++) {
        free(tmp_buf[i]);
        tmp_buf[i] = NULL;
        tmp_cap[i] = 0;
    }
    for (int i = 0; i < W_SLOTS; i++) {
        free(wcache[i].buf);
        memset(&wcache[i], 0, sizeof wcache[i]);
    }
    tg_dnnl_unlock();
}

/* ---------------------------------------------------------------- memories */

void tg_dnnl_md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims)
{
    dnnl_dims_t d, s;
    if (ndim == 0) {
        d[0] = 1;
        ndim = 1;
    } else {
        for (int i = 0; i < ndim; i++)
            d[i] = dims[i];
    }
    int64_t acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        s[i] = acc;
        acc *= d[i] > 0 ? d[i] : 1;
    }
    dnnl_memory_desc_init_by_strides(md, ndim, d, dnnl_f32, s);
}

void tg_dnnl_md_of(dnnl_memory_desc_t *md, const tg_tensor *t)
{
    dnnl_dims_t d, s;
    int ndim = t->ndim;
    if (ndim == 0) {
        tg_dnnl_md_plain(md, 0, NULL);
        return;
    }
    /* The stride of an extent-1 dim is irrelevant; make it the natural one so
     * equal layouts get equal keys and descriptors. */
    int64_t acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        d[i] = t->shape[i];
        s[i] = t->shape[i] == 1 ? acc : t->strides[i];
        acc = s[i] * (d[i] > 0 ? d[i] : 1);
    }
    dnnl_memory_desc_init_by_strides(md, ndim, d, dnnl_f32, s);
}

/* Shape and strides (as tg_dnnl_md_of normalises them) into a key. */
void tg_dnnl_key_add_layout(tg_dnnl_key *k, const tg_tensor *t)
{
    tg_dnnl_key_add(k, t->ndim);
    int64_t acc = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int64_t s = t->shape[i] == 1 ? acc : t->strides[i];
        tg_dnnl_key_add(k, t->shape[i]);
        tg_dnnl_key_add(k, s);
        acc = s * (t->shape[i] > 0 ? t->shape[i] : 1);
    }
}

/* Grows *buf to at least n bytes (contents are not kept). */
static bool reserve(void **buf, size_t *cap, size_t n)
{
    if (n <= *cap && *buf)
        return true;
    size_t c = (n + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(4096, c ? c : 4096);
    if (!p)
        return false;
    free(*buf);
    *buf = p;
    *cap = c;
    return true;
}

tg_status tg_dnnl_exec(tg_dnnl_entry *e, const tg_dnnl_mem *args, int n)
{
    if (n < 0 || n >= TG_DNNL_MAX_ARGS)
        return tg_error_here(TG_ERR_BACKEND, "%d primitive arguments (at most %d)", n,
                             TG_DNNL_MAX_ARGS - 1);
    dnnl_exec_arg_t a[TG_DNNL_MAX_ARGS];
    int made = 0;
    tg_status rc = TG_OK;
    for (int i = 0; i <= n; i++) {
        int which;
        const dnnl_memory_desc_t *md;
        void *data;
        if (i < n) {
            which = args[i].arg;
            md = args[i].md;
            /* oneDNN wants a non-const handle; it only writes to outputs. */
            data = (void *)(uintptr_t)args[i].data;
        } else if (e->scratch_bytes > 0) {
            if (!reserve(&scratch, &scratch_cap, e->scratch_bytes)) {
                rc = tg_error_here(TG_ERR_NOMEM,
                                   "out of memory for a %zu-byte oneDNN scratchpad",
                                   e->scratch_bytes);
                goto done;
            }
            which = DNNL_ARG_SCRATCHPAD;
            md = tg_dnnl_md(e, dnnl_query_scratchpad_md);
            data = scratch;
        } else {
            break;
        }
        dnnl_status_t st = dnnl_memory_create(&a[made].memory, md, engine, data);
        if (st != dnnl_success) {
            rc = tg_dnnl_failed("dnnl_memory_create", st);
            goto done;
        }
        a[made++].arg = which;
    }
    /* oneDNN 2.x's f32 gemm kernels (jit_avx_gemm_f32, jit_avx512_common_gemm_f32;
     * the "gemm:jit" inner products, matmuls and convolutions) point the stack
     * pointer into a malloc'ed workspace when k is large. A signal handler run
     * then has its frame written below that block, over the heap's own
     * bookkeeping: "malloc(): unaligned tcache chunk" or "corrupted size vs.
     * prev_size" at a later free (upstream: uxlfoundation/oneDNN#4845, fixed in
     * 3.11). So the asynchronous signals wait while such a primitive runs: the
     * OpenMP workers never take them (libtensor/runtime.c), and this thread holds
     * them until the kernel is done; one pending is delivered at the unblock. */
    sigset_t mask;
    if (e->hold_signals)
        pthread_sigmask(SIG_BLOCK, &async_signals, &mask);
    dnnl_status_t st = dnnl_primitive_execute(e->prim, stream, made, a);
    if (st == dnnl_success)
        st = dnnl_stream_wait(stream);
    if (e->hold_signals)
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (st != dnnl_success)
        rc = tg_dnnl_failed("dnnl_primitive_execute", st);
done:
    for (int i = 0; i < made; i++)
        dnnl_memory_destroy(a[i].memory);
    return rc;
}

/* ---------------------------------------------------------------- reorders */

/* The cached reorder from src_md to dst_md, created on a miss. Lock held. */
static tg_dnnl_entry *reorder_entry(const dnnl_memory_desc_t *src_md,
                                    const dnnl_memory_desc_t *dst_md)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_REORDER);
    tg_dnnl_key_add_md(&k, src_md);
    tg_dnnl_key_add_md(&k, dst_md);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    if (!tg_dnnl_engine())
        return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, src_md, engine, dst_md, engine,
                                                          attr);
    if (st != dnnl_success) {
        tg_dnnl_failed("dnnl_reorder_primitive_desc_create", st);
        return NULL;
    }
    return tg_dnnl_insert(&k, pd);
}

tg_status tg_dnnl_reorder(const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst)
{
    tg_dnnl_entry *e = reorder_entry(src_md, dst_md);
    if (!e)
        return tg_last_status();
    const tg_dnnl_mem args[] = {{DNNL_ARG_FROM, src_md, src}, {DNNL_ARG_TO, dst_md, dst}};
    return tg_dnnl_exec(e, args, 2);
}

void *tg_dnnl_tmp(int slot, size_t nbytes)
{
    if (slot < 0 || slot >= TG_DNNL_TMP_SLOTS) {
        tg_error_here(TG_ERR_ARG, "no temporary buffer slot %d", slot);
        return NULL;
    }
    if (!reserve(&tmp_buf[slot], &tmp_cap[slot], nbytes)) {
        tg_error_here(TG_ERR_NOMEM, "out of memory for a %zu-byte layout buffer", nbytes);
        return NULL;
    }
    return tmp_buf[slot];
}

const void *tg_dnnl_input_as(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                             const void *data, int slot)
{
    if (dnnl_memory_desc_equal(want, have))
        return data;
    void *buf = tg_dnnl_tmp(slot, dnnl_memory_desc_get_size(want));
    if (!buf || tg_dnnl_reorder(have, data, want, buf) != TG_OK)
        return NULL;
    return buf;
}

void *tg_dnnl_output_buf(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                         void *data, int slot)
{
    if (dnnl_memory_desc_equal(want, have))
        return data;
    return tg_dnnl_tmp(slot, dnnl_memory_desc_get_size(want));
}

tg_status tg_dnnl_output_finish(const dnnl_memory_desc_t *want, const void *buf,
                                const dnnl_memory_desc_t *have, void *data)
{
    if (buf == data)
        return TG_OK;
    return tg_dnnl_reorder(want, buf, have, data);
}

const void *tg_dnnl_weights_as(const tg_tensor *w, const dnnl_memory_desc_t *have,
                               const dnnl_memory_desc_t *want)
{
    if (tg_tensor_settle(w) != TG_OK)
        return NULL;
    const void *data = tg_tensor_ptr(w);
    if (dnnl_memory_desc_equal(want, have))
        return data;
    tg_storage *st = w->storage;
    wslot *slot = NULL;
    for (int i = 0; i < W_SLOTS; i++) {
        wslot *c = &wcache[i];
        if (c->buf && c->storage == st && c->data == data &&
            dnnl_memory_desc_equal(&c->want, want)) {
            if (c->version == st->version) {
                c->last_use = ++use_clock;
                return c->buf;
            }
            slot = c; /* an older version of the same weights: replace it */
            break;
        }
    }
    if (!slot) {
        slot = &wcache[0];
        for (int i = 1; i < W_SLOTS && slot->buf; i++)
            if (!wcache[i].buf || wcache[i].last_use < slot->last_use)
                slot = &wcache[i];
    }
    size_t need = dnnl_memory_desc_get_size(want);
    slot->storage = NULL; /* invalid until the reorder succeeds */
    if (!reserve(&slot->buf, &slot->cap, need)) {
        tg_error_here(TG_ERR_NOMEM, "out of memory for %zu bytes of reordered weights",
                      need);
        return NULL;
    }
    if (tg_dnnl_reorder(have, data, want, slot->buf) != TG_OK)
        return NULL;
    slot->storage = st;
    slot->data = data;
    slot->version = st->version;
    slot->want = *want;
    slot->last_use = ++use_clock;
    stats.weight_reorders++;
    return slot->buf;
}

/* ---------------------------------------------------------------- pending layouts */

/* A storage's data in a oneDNN layout: libtensor's tg_layout (layout_impl.h,
 * docs/layouts.md), extended with the memory descriptor. */
typedef struct dnnl_alt {
    tg_layout base;
    dnnl_memory_desc_t md;
    size_t nbytes;
} dnnl_alt;

static void alt_free(tg_layout *a)
{
    dnnl_alt *d = (dnnl_alt *)a;
    tg_free_aligned(d->base.buf, d->nbytes);
    free(d);
}

/* Reorders the pending layout into the plain buffer (libtensor then drops the
 * record). The reorder primitive was made when the layout was attached, so this
 * only executes it; if even that fails the error is set and libtensor keeps the
 * record: the data is not lost and a later access tries again. */
static tg_status alt_settle(const tg_layout *a, void *plain, size_t nbytes)
{
    const dnnl_alt *d = (const dnnl_alt *)a;
    (void)nbytes; /* the plain descriptor's size: the storage's, checked at attach */
    dnnl_memory_desc_t pmd;
    tg_dnnl_md_plain(&pmd, d->md.ndims, d->md.dims);
    tg_dnnl_lock();
    /* a settle names no op: it runs inside whichever plain read needed it */
    const char *prev = tg_error_enter("reading a tensor");
    tg_status rc = tg_dnnl_reorder(&d->md, d->base.buf, &pmd, plain);
    tg_error_leave(prev);
    if (rc == TG_OK)
        stats.layout_settles++;
    tg_dnnl_unlock();
    return rc;
}

const dnnl_memory_desc_t *tg_dnnl_alt_md(const tg_tensor *t)
{
    tg_layout *a = t ? tg_layout_pending(t->storage) : NULL;
    if (!a || a->settle != alt_settle || !tg_tensor_covers_storage(t))
        return NULL;
    return &((dnnl_alt *)a)->md;
}

void *tg_dnnl_alt_buf(const tg_tensor *t)
{
    return tg_dnnl_alt_md(t) ? tg_layout_pending(t->storage)->buf : NULL;
}

void *tg_dnnl_alt_attach(tg_tensor *t, const dnnl_memory_desc_t *md)
{
    if (tg_layout_pending(t->storage) || !tg_tensor_covers_storage(t) || t->dtype != TG_F32) {
        tg_error_here(TG_ERR_STATE, "an output cannot hold a backend layout");
        return NULL;
    }
    /* The way back to plain must exist before the data goes into md: a later
     * settle then only runs a cached primitive. */
    dnnl_memory_desc_t plain;
    tg_dnnl_md_plain(&plain, md->ndims, md->dims);
    if (!reorder_entry(md, &plain))
        return NULL;
    dnnl_alt *d = malloc(sizeof *d);
    size_t nbytes = dnnl_memory_desc_get_size(md);
    void *buf = d ? tg_alloc_aligned(nbytes) : NULL;
    if (!buf) {
        free(d);
        tg_error_here(TG_ERR_NOMEM, "out of memory for a %zu-byte activation", nbytes);
        return NULL;
    }
    d->base.buf = buf;
    d->base.settle = alt_settle;
    d->base.free = alt_free;
    d->md = *md;
    d->nbytes = nbytes;
    if (tg_layout_attach(t->storage, &d->base) != TG_OK) { /* checked above: not expected */
        alt_free(&d->base);
        return NULL;
    }
    stats.layouts_kept++;
    return buf;
}

bool tg_dnnl_md_dense(const dnnl_memory_desc_t *md, int64_t numel)
{
    return md->format_kind == dnnl_blocked && md->offset0 == 0 &&
           dnnl_memory_desc_get_size(md) == (size_t)numel * sizeof(float);
}

/* Whether an output is better left in the primitive's layout than reordered
 * back: an activation-sized blocked layout (not the odd small weights gradient
 * that the engine reads at once anyway) with nothing pending yet. */
static bool keep_layout(const dnnl_memory_desc_t *want, const tg_tensor *t)
{
    return blocked_layouts && want->format_kind == dnnl_blocked && t->dtype == TG_F32 &&
           !tg_layout_pending(t->storage) && tg_tensor_covers_storage(t);
}

/* ---------------------------------------------------------------- running ops */

bool tg_dnnl_keep_layout(const dnnl_memory_desc_t *want, const tg_tensor *t)
{
    return keep_layout(want, t);
}

tg_status tg_dnnl_exec_tensors(tg_dnnl_entry *e, const tg_dnnl_io *io, int n)
{
    const dnnl_memory_desc_t *want[TG_DNNL_MAX_ARGS];
    void *buf[TG_DNNL_MAX_ARGS];
    tg_dnnl_mem args[TG_DNNL_MAX_ARGS] = {{0}};
    int m = 0;
    if (n < 0 || n >= TG_DNNL_MAX_ARGS)
        return tg_error_here(TG_ERR_BACKEND, "%d primitive arguments (at most %d)", n,
                             TG_DNNL_MAX_ARGS - 1);
    for (int i = 0; i < n; i++) {
        buf[i] = NULL;
        if (!io[i].t)
            continue;
        want[i] = dnnl_primitive_desc_query_md(e->pd, io[i].what, io[i].index);
        const dnnl_memory_desc_t *alt = tg_dnnl_alt_md(io[i].t);
        tg_tensor *t = (tg_tensor *)(uintptr_t)io[i].t; /* OUT tensors are the op's own */
        if (io[i].role == TG_DNNL_IN && alt && dnnl_memory_desc_equal(want[i], alt))
            buf[i] = tg_dnnl_alt_buf(io[i].t); /* already in the wanted layout */
        else if (io[i].role == TG_DNNL_OUT && !dnnl_memory_desc_equal(want[i], io[i].plain) &&
                 keep_layout(want[i], t))
            buf[i] = tg_dnnl_alt_attach(t, want[i]); /* written, never reordered */
        else if (tg_tensor_settle(io[i].t) != TG_OK) /* plain access from here on */
            buf[i] = NULL;
        else if (io[i].role == TG_DNNL_IN)
            buf[i] = (void *)(uintptr_t)tg_dnnl_input_as(want[i], io[i].plain,
                                                         tg_tensor_ptr(io[i].t), io[i].slot);
        else if (io[i].role == TG_DNNL_WEIGHTS)
            buf[i] = (void *)(uintptr_t)tg_dnnl_weights_as(io[i].t, io[i].plain, want[i]);
        else
            buf[i] = tg_dnnl_output_buf(want[i], io[i].plain, tg_tensor_ptr(io[i].t),
                                        io[i].slot);
        if (!buf[i])
            return tg_last_status();
        args[m++] = (tg_dnnl_mem){io[i].arg, want[i], buf[i]};
    }
    tg_status rc = tg_dnnl_exec(e, args, m);
    for (int i = 0; rc == TG_OK && i < n; i++)
        if (io[i].t && io[i].role == TG_DNNL_OUT && buf[i] != tg_dnnl_alt_buf(io[i].t))
            rc = tg_dnnl_output_finish(want[i], buf[i], io[i].plain,
                                       tg_tensor_ptr(io[i].t)); /* settled above */
    return rc;
}

size_t tg_dnnl_scratchpad_capacity(void)
{
    tg_dnnl_lock();
    size_t c = scratch_cap;
    tg_dnnl_unlock();
    return c;
}

