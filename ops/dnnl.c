/* ops/dnnl.c -- the oneDNN glue: one engine and stream, the primitive cache, the
 * user-managed scratchpad, cached weight reorders, running a primitive on plain
 * tensors, the f32 kernels the other op files call (eltwise, binary, softmax,
 * matmul), and the forward/backward plumbing conv2d.c and dense.c share. Op files
 * decide what to run; this file runs it without re-creating primitives. */
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

dnnl_engine_t tg_dnnl_engine(const char *who)
{
    pthread_once(&init_once, init_glue);
    if (init_status != dnnl_success) {
        tg_error(TG_ERR_BACKEND, "%s: oneDNN could not start: %s failed (%s)", who,
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

static tg_status backend_error(const char *who, const char *what, dnnl_status_t st)
{
    return tg_error(TG_ERR_BACKEND, "%s: oneDNN %s failed: %s", who, what,
                    dnnl_status2str(st));
}

tg_status tg_dnnl_refused(const char *who, const char *what, dnnl_status_t st,
                          const char *fmt, ...)
{
    char shapes[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shapes, sizeof shapes, fmt, ap);
    va_end(ap);
    return tg_error(TG_ERR_BACKEND, "%s: oneDNN cannot run this %s (%s): %s", who, what,
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

tg_dnnl_entry *tg_dnnl_insert(const tg_dnnl_key *key, dnnl_primitive_desc_t pd,
                              const char *who)
{
    if (key->n < 0) {
        dnnl_primitive_desc_destroy(pd);
        tg_error(TG_ERR_BACKEND, "%s: primitive cache key too long", who);
        return NULL;
    }
    tg_dnnl_entry *e = calloc(1, sizeof *e);
    if (!e) {
        dnnl_primitive_desc_destroy(pd);
        tg_error(TG_ERR_NOMEM, "%s: out of memory for a primitive cache entry", who);
        return NULL;
    }
    e->key = *key;
    e->hash = key_hash(key);
    e->pd = pd;
    dnnl_status_t st = dnnl_primitive_create(&e->prim, pd);
    if (st != dnnl_success) {
        e->prim = NULL;
        entry_free(e);
        backend_error(who, "dnnl_primitive_create", st);
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
static dnnl_primitive_attr_t get_relu_attr(const char *who)
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
        backend_error(who, "a ReLU post-op attribute", st);
        return NULL;
    }
    relu_attr = a;
    return relu_attr;
}

dnnl_primitive_desc_t tg_dnnl_pd_create(const_dnnl_op_desc_t op_desc,
                                        const_dnnl_primitive_desc_t hint, const char *who)
{
    return tg_dnnl_pd_create_ex(op_desc, hint, false, who);
}

dnnl_primitive_desc_t tg_dnnl_pd_create_ex(const_dnnl_op_desc_t op_desc,
                                           const_dnnl_primitive_desc_t hint, bool relu,
                                           const char *who)
{
    if (!tg_dnnl_engine(who))
        return NULL;
    const_dnnl_primitive_attr_t at = relu ? get_relu_attr(who) : attr;
    if (!at)
        return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, op_desc, at, engine, hint);
    if (st != dnnl_success) {
        backend_error(who, "dnnl_primitive_desc_create", st);
        return NULL;
    }
    return pd;
}

tg_dnnl_entry *tg_dnnl_create(const tg_dnnl_key *key, const_dnnl_op_desc_t op_desc,
                              const_dnnl_primitive_desc_t hint, const char *who)
{
    dnnl_primitive_desc_t pd = tg_dnnl_pd_create(op_desc, hint, who);
    return pd ? tg_dnnl_insert(key, pd, who) : NULL;
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
static void key_add_layout(tg_dnnl_key *k, const tg_tensor *t)
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

void tg_dnnl_args_init(tg_dnnl_args *a)
{
    a->n = 0;
    a->status = dnnl_success;
}

void tg_dnnl_arg(tg_dnnl_args *a, int which, const dnnl_memory_desc_t *md, const void *data)
{
    if (a->status != dnnl_success)
        return;
    if (a->n == TG_DNNL_MAX_ARGS) {
        a->status = dnnl_invalid_arguments;
        return;
    }
    dnnl_memory_t m = NULL;
    /* oneDNN wants a non-const handle; it only writes to outputs. */
    dnnl_status_t st = dnnl_memory_create(&m, md, engine, (void *)(uintptr_t)data);
    if (st != dnnl_success) {
        a->status = st;
        return;
    }
    a->a[a->n].arg = which;
    a->a[a->n].memory = m;
    a->n++;
}

static void args_destroy(tg_dnnl_args *a)
{
    for (int i = 0; i < a->n; i++)
        dnnl_memory_destroy(a->a[i].memory);
    a->n = 0;
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

tg_status tg_dnnl_exec(tg_dnnl_entry *e, tg_dnnl_args *a, const char *who)
{
    tg_status rc = TG_OK;
    if (a->status != dnnl_success) {
        rc = backend_error(who, "dnnl_memory_create", a->status);
        goto done;
    }
    if (e->scratch_bytes > 0) {
        if (!reserve(&scratch, &scratch_cap, e->scratch_bytes)) {
            rc = tg_error(TG_ERR_NOMEM, "%s: out of memory for a %zu-byte oneDNN scratchpad",
                          who, e->scratch_bytes);
            goto done;
        }
        tg_dnnl_arg(a, DNNL_ARG_SCRATCHPAD, tg_dnnl_md(e, dnnl_query_scratchpad_md), scratch);
        if (a->status != dnnl_success) {
            rc = backend_error(who, "dnnl_memory_create", a->status);
            goto done;
        }
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
    dnnl_status_t st = dnnl_primitive_execute(e->prim, stream, a->n, a->a);
    if (st == dnnl_success)
        st = dnnl_stream_wait(stream);
    if (e->hold_signals)
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (st != dnnl_success)
        rc = backend_error(who, "dnnl_primitive_execute", st);
done:
    args_destroy(a);
    return rc;
}

/* ---------------------------------------------------------------- reorders */

/* The cached reorder from src_md to dst_md, created on a miss. Lock held. */
static tg_dnnl_entry *reorder_entry(const dnnl_memory_desc_t *src_md,
                                    const dnnl_memory_desc_t *dst_md, const char *who)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_REORDER);
    tg_dnnl_key_add_md(&k, src_md);
    tg_dnnl_key_add_md(&k, dst_md);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    if (!tg_dnnl_engine(who))
        return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, src_md, engine, dst_md, engine,
                                                          attr);
    if (st != dnnl_success) {
        backend_error(who, "dnnl_reorder_primitive_desc_create", st);
        return NULL;
    }
    return tg_dnnl_insert(&k, pd, who);
}

tg_status tg_dnnl_reorder(const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst, const char *who)
{
    tg_dnnl_entry *e = reorder_entry(src_md, dst_md, who);
    if (!e)
        return tg_last_status();
    tg_dnnl_args args;
    tg_dnnl_args_init(&args);
    tg_dnnl_arg(&args, DNNL_ARG_FROM, src_md, src);
    tg_dnnl_arg(&args, DNNL_ARG_TO, dst_md, dst);
    return tg_dnnl_exec(e, &args, who);
}

void *tg_dnnl_tmp(int slot, size_t nbytes, const char *who)
{
    if (slot < 0 || slot >= TG_DNNL_TMP_SLOTS) {
        tg_error(TG_ERR_ARG, "%s: no temporary buffer slot %d", who, slot);
        return NULL;
    }
    if (!reserve(&tmp_buf[slot], &tmp_cap[slot], nbytes)) {
        tg_error(TG_ERR_NOMEM, "%s: out of memory for a %zu-byte layout buffer", who, nbytes);
        return NULL;
    }
    return tmp_buf[slot];
}

const void *tg_dnnl_input_as(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                             const void *data, int slot, const char *who)
{
    if (dnnl_memory_desc_equal(want, have))
        return data;
    void *buf = tg_dnnl_tmp(slot, dnnl_memory_desc_get_size(want), who);
    if (!buf || tg_dnnl_reorder(have, data, want, buf, who) != TG_OK)
        return NULL;
    return buf;
}

void *tg_dnnl_output_buf(const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                         void *data, int slot, const char *who)
{
    if (dnnl_memory_desc_equal(want, have))
        return data;
    return tg_dnnl_tmp(slot, dnnl_memory_desc_get_size(want), who);
}

tg_status tg_dnnl_output_finish(const dnnl_memory_desc_t *want, const void *buf,
                                const dnnl_memory_desc_t *have, void *data, const char *who)
{
    if (buf == data)
        return TG_OK;
    return tg_dnnl_reorder(want, buf, have, data, who);
}

const void *tg_dnnl_weights_as(const tg_tensor *w, const dnnl_memory_desc_t *have,
                               const dnnl_memory_desc_t *want, const char *who)
{
    if (tg_tensor_settle(w) != TG_OK)
        return NULL;
    const void *data = tg_tensor_data(w);
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
        tg_error(TG_ERR_NOMEM, "%s: out of memory for %zu bytes of reordered weights", who,
                 need);
        return NULL;
    }
    if (tg_dnnl_reorder(have, data, want, slot->buf, who) != TG_OK)
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
    tg_status rc = tg_dnnl_reorder(&d->md, d->base.buf, &pmd, plain, "reading a tensor");
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

void *tg_dnnl_alt_attach(tg_tensor *t, const dnnl_memory_desc_t *md, const char *who)
{
    if (tg_layout_pending(t->storage) || !tg_tensor_covers_storage(t) || t->dtype != TG_F32) {
        tg_error(TG_ERR_STATE, "%s: an output cannot hold a backend layout", who);
        return NULL;
    }
    /* The way back to plain must exist before the data goes into md: a later
     * settle then only runs a cached primitive. */
    dnnl_memory_desc_t plain;
    tg_dnnl_md_plain(&plain, md->ndims, md->dims);
    if (!reorder_entry(md, &plain, who))
        return NULL;
    dnnl_alt *d = malloc(sizeof *d);
    size_t nbytes = dnnl_memory_desc_get_size(md);
    void *buf = d ? tg_alloc_aligned(nbytes) : NULL;
    if (!buf) {
        free(d);
        tg_error(TG_ERR_NOMEM, "%s: out of memory for a %zu-byte activation", who, nbytes);
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

tg_status tg_dnnl_run(tg_dnnl_entry *e, const tg_dnnl_io *io, int n, const char *who)
{
    const dnnl_memory_desc_t *want[TG_DNNL_MAX_ARGS];
    void *buf[TG_DNNL_MAX_ARGS];
    if (n < 0 || n >= TG_DNNL_MAX_ARGS)
        return tg_error(TG_ERR_BACKEND, "%s: %d primitive arguments (at most %d)", who, n,
                        TG_DNNL_MAX_ARGS - 1);
    tg_dnnl_args args;
    tg_dnnl_args_init(&args);
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
            buf[i] = tg_dnnl_alt_attach(t, want[i], who); /* written, never reordered */
        else if (tg_tensor_settle(io[i].t) != TG_OK) /* plain access from here on */
            buf[i] = NULL;
        else if (io[i].role == TG_DNNL_IN)
            buf[i] = (void *)(uintptr_t)tg_dnnl_input_as(want[i], io[i].plain,
                                                         tg_tensor_data(io[i].t), io[i].slot,
                                                         who);
        else if (io[i].role == TG_DNNL_WEIGHTS)
            buf[i] = (void *)(uintptr_t)tg_dnnl_weights_as(io[i].t, io[i].plain, want[i], who);
        else
            buf[i] = tg_dnnl_output_buf(want[i], io[i].plain, tg_tensor_data(io[i].t),
                                        io[i].slot, who);
        if (!buf[i]) {
            args_destroy(&args);
            return tg_last_status();
        }
        tg_dnnl_arg(&args, io[i].arg, want[i], buf[i]);
    }
    tg_status rc = tg_dnnl_exec(e, &args, who);
    for (int i = 0; rc == TG_OK && i < n; i++)
        if (io[i].t && io[i].role == TG_DNNL_OUT && buf[i] != tg_dnnl_alt_buf(io[i].t))
            rc = tg_dnnl_output_finish(want[i], buf[i], io[i].plain, tg_tensor_data(io[i].t),
                                       who); /* settled above */
    return rc;
}

tg_status tg_dnnl_call(tg_dnnl_getter get, tg_dnnl_kind kind, const void *geom,
                       const tg_dnnl_io *io, int n, const char *who)
{
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    tg_dnnl_lock();
    tg_dnnl_entry *e = get(kind, geom, who);
    tg_status rc = e ? tg_dnnl_run(e, io, n, who) : tg_last_status();
    tg_dnnl_unlock();
    return rc;
}

size_t tg_dnnl_scratchpad_capacity(void)
{
    tg_dnnl_lock();
    size_t c = scratch_cap;
    tg_dnnl_unlock();
    return c;
}

/* ---------------------------------------------------------------- weighted ops */

/* Temporary buffer slots of the weighted ops' arguments that may change layout. */
enum { W_SLOT_X, W_SLOT_Y, W_SLOT_BIAS, W_SLOT_DIFF_W, W_SLOT_DIFF_B };

typedef struct weighted_mds {
    dnnl_memory_desc_t x, w, b, y;
} weighted_mds;

static tg_status weighted_dnnl_forward(const tg_weighted_op *op, const void *geom,
                                       const tg_tensor *x, const tg_tensor *w,
                                       const tg_tensor *b, tg_tensor *y)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0, TG_DNNL_IN, &m.x, x, W_SLOT_X},
        {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, TG_DNNL_WEIGHTS, &m.w, w, 0},
        {DNNL_ARG_BIAS, dnnl_query_weights_md, 1, TG_DNNL_IN, &m.b, b, W_SLOT_BIAS},
        {DNNL_ARG_DST, dnnl_query_dst_md, 0, TG_DNNL_OUT, &m.y, y, W_SLOT_Y},
    };
    return tg_dnnl_call(op->get, op->fwd, geom, io, 4, op->name);
}

static tg_status weighted_dnnl_backward_data(const tg_weighted_op *op, const void *geom,
                                             const tg_tensor *w, const tg_tensor *gy,
                                             tg_tensor *gx, const char *who)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, TG_DNNL_IN, &m.y, gy, W_SLOT_Y},
        {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, TG_DNNL_WEIGHTS, &m.w, w, 0},
        {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, TG_DNNL_OUT, &m.x, gx, W_SLOT_X},
    };
    return tg_dnnl_call(op->get, op->bwd_data, geom, io, 3, who);
}

static tg_status weighted_dnnl_backward_weights(const tg_weighted_op *op, const void *geom,
                                                const tg_tensor *x, const tg_tensor *gy,
                                                tg_tensor *gw, tg_tensor *gb, const char *who)
{
    weighted_mds m;
    op->plain_mds(geom, &m.x, &m.w, &m.b, &m.y);
    const tg_dnnl_io io[] = {
        {DNNL_ARG_SRC, dnnl_query_src_md, 0, TG_DNNL_IN, &m.x, x, W_SLOT_X},
        {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, TG_DNNL_IN, &m.y, gy, W_SLOT_Y},
        {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, TG_DNNL_OUT, &m.w, gw,
         W_SLOT_DIFF_W},
        {DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, TG_DNNL_OUT, &m.b, gb,
         W_SLOT_DIFF_B},
    };
    return tg_dnnl_call(op->get, op->bwd_weights, geom, io, 4, who);
}

tg_status tg_weighted_forward(const tg_weighted_op *op, const void *geom, bool dnnl,
                              tg_tensor *x, tg_tensor *w, tg_tensor *b, tg_tensor *y)
{
    if (tg_tensor_numel(y) == 0)
        return TG_OK;
    tg_tensor *xc = tg_contiguous_layout_owned(x, dnnl), *wc = tg_contiguous_owned(w);
    tg_tensor *bc = b ? tg_contiguous_owned(b) : NULL;
    tg_status st = TG_OK;
    if (!xc || !wc || (b && !bc))
        st = tg_last_status();
    else if (dnnl)
        st = weighted_dnnl_forward(op, geom, xc, wc, bc, y);
    else
        op->ref_forward(geom, xc, wc, bc, y);
    tg_release(xc);
    tg_release(wc);
    tg_release(bc);
    return st;
}

tg_status tg_weighted_backward(const tg_weighted_op *op, const void *geom, bool dnnl,
                               tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    char who[64], who_data[96], who_weights[96];
    snprintf(who, sizeof who, "%s backward", op->name);
    snprintf(who_data, sizeof who_data, "%s (data)", who);
    snprintf(who_weights, sizeof who_weights, "%s (weights)", who);
    tg_tensor *x = node->inputs[0], *w = node->inputs[1];
    tg_tensor *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    bool need_x = tg_node_needs_grad(node, 0);
    bool need_wb = tg_node_needs_grad(node, 1) || (b && tg_node_needs_grad(node, 2));
    tg_status st = TG_OK;
    tg_tensor *gy = tg_contiguous_layout_owned(grad_out, dnnl);
    tg_tensor *xc = need_wb ? tg_contiguous_layout_owned(x, dnnl) : NULL;
    tg_tensor *wc = need_x ? tg_contiguous_owned(w) : NULL;
    tg_tensor *gx = need_x ? tg_tensor_new_owned(who, x->dtype, x->ndim, x->shape) : NULL;
    /* Weight and bias gradients go straight into the leaves' zeroed .grad when
     * the engine allows it (no copy afterwards), else into new tensors. */
    tg_tensor *cw = need_wb ? tg_node_claim_leaf_grad(node, 1) : NULL;
    tg_tensor *cb = need_wb && b ? tg_node_claim_leaf_grad(node, 2) : NULL;
    tg_tensor *gw = !need_wb ? NULL
                    : cw ? tg_retain(cw) : tg_tensor_new_owned(who, w->dtype, w->ndim, w->shape);
    tg_tensor *gb = !need_wb || !b ? NULL
                    : cb ? tg_retain(cb) : tg_tensor_new_owned(who, b->dtype, 1, b->shape);
    if (!gy || (need_wb && (!xc || !gw || (b && !gb))) || (need_x && (!wc || !gx))) {
        st = tg_last_status();
        goto out;
    }
    /* An empty batch: no term reaches any gradient. */
    bool empty = tg_tensor_numel(gy) == 0;
    if (need_x) {
        if (empty)
            st = tg_tensor_fill(gx, 0.0);
        else if (dnnl)
            st = weighted_dnnl_backward_data(op, geom, wc, gy, gx, who_data);
        else
            op->ref_backward_data(geom, wc, gy, gx);
    }
    if (st == TG_OK && need_wb) {
        if (empty) {
            st = tg_tensor_fill(gw, 0.0);
            if (st == TG_OK && gb)
                st = tg_tensor_fill(gb, 0.0);
        } else if (dnnl) {
            st = weighted_dnnl_backward_weights(op, geom, xc, gy, gw, gb, who_weights);
        } else {
            op->ref_backward_weights(geom, xc, gy, gw, gb);
        }
    }
    if (st == TG_OK) {
        if (need_x)
            grad_in[0] = tg_scoped(tg_retain(gx));
        if (tg_node_needs_grad(node, 1))
            grad_in[1] = tg_scoped(tg_retain(gw));
        if (b && tg_node_needs_grad(node, 2))
            grad_in[2] = tg_scoped(tg_retain(gb));
    }
out:
    if (st != TG_OK) { /* claimed gradients may be half written: zero again */
        tg_node_unclaim_leaf_grad(cw);
        tg_node_unclaim_leaf_grad(cb);
    }
    tg_release(gy);
    tg_release(xc);
    tg_release(wc);
    tg_release(gx);
    tg_release(gw);
    tg_release(gb);
    return st;
}

/* ---------------------------------------------------------------- eltwise */

static dnnl_alg_kind_t eltwise_alg(tg_eltwise_alg alg)
{
    switch (alg) {
    case TG_ELT_RELU: return dnnl_eltwise_relu;
    case TG_ELT_TANH: return dnnl_eltwise_tanh;
    case TG_ELT_SIGMOID: return dnnl_eltwise_logistic;
    case TG_ELT_EXP: return dnnl_eltwise_exp;
    case TG_ELT_LOG: return dnnl_eltwise_log;
    case TG_ELT_SQRT: return dnnl_eltwise_sqrt;
    case TG_ELT_ABS: return dnnl_eltwise_abs;
    case TG_ELT_LINEAR: return dnnl_eltwise_linear;
    case TG_ELT_POW: return dnnl_eltwise_pow;
    }
    return dnnl_alg_kind_undef;
}

static int64_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (int64_t)u;
}

/* The forward eltwise entry for n elements (contiguous data viewed as 1-D). */
static tg_dnnl_entry *eltwise_fwd_entry(dnnl_alg_kind_t alg, float alpha, float beta,
                                        const dnnl_memory_desc_t *md, int64_t n,
                                        const char *who)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_ELTWISE_FWD);
    tg_dnnl_key_add(&k, alg);
    tg_dnnl_key_add(&k, float_bits(alpha));
    tg_dnnl_key_add(&k, float_bits(beta));
    tg_dnnl_key_add(&k, n);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_eltwise_desc_t d;
    dnnl_status_t st = dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training, alg, md,
                                                      alpha, beta);
    if (st != dnnl_success) {
        backend_error(who, "dnnl_eltwise_forward_desc_init", st);
        return NULL;
    }
    return tg_dnnl_create(&k, &d, NULL, who);
}

tg_status tg_dnnl_eltwise_forward(tg_eltwise_alg alg, float alpha, float beta,
                                  const tg_tensor *x, tg_tensor *y)
{
    const char *who = "tg_dnnl_eltwise_forward";
    if (!x || !y)
        return tg_null_arg(who, !x ? "x" : "y");
    int64_t n = tg_tensor_numel(x);
    if (n != tg_tensor_numel(y))
        return tg_error(TG_ERR_SHAPE, "%s: x has %lld elements, y %lld", who, (long long)n,
                        (long long)tg_tensor_numel(y));
    if (n == 0)
        return TG_OK;
    dnnl_alg_kind_t a = eltwise_alg(alg);
    if (a == dnnl_alg_kind_undef)
        return tg_error(TG_ERR_ARG, "%s: unknown algorithm %d", who, (int)alg);
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t md;
    tg_dnnl_md_plain(&md, 1, &n);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = eltwise_fwd_entry(a, alpha, beta, &md, n, who);
    if (e) {
        /* x in a dense blocked layout (a conv's output): the elements are the
         * same, only their order differs, so run on that buffer and leave y in
         * the same layout for the next primitive. */
        const dnnl_memory_desc_t *xa = tg_dnnl_alt_md(x);
        const void *src = NULL;
        void *dst = NULL;
        if (xa && tg_dnnl_md_dense(xa, n) && keep_layout(xa, y)) {
            src = tg_dnnl_alt_buf(x);
            dst = tg_dnnl_alt_attach(y, xa, who);
            rc = dst ? TG_OK : TG_ERR_NOMEM;
        } else if ((rc = tg_tensor_settle(x)) == TG_OK && (rc = tg_tensor_settle(y)) == TG_OK) {
            src = tg_tensor_data(x); /* plain: settled */
            dst = tg_tensor_data(y);
        }
        if (rc == TG_OK) {
            tg_dnnl_args args;
            tg_dnnl_args_init(&args);
            tg_dnnl_arg(&args, DNNL_ARG_SRC, &md, src);
            tg_dnnl_arg(&args, DNNL_ARG_DST, &md, dst);
            rc = tg_dnnl_exec(e, &args, who);
        }
    }
    tg_dnnl_unlock();
    return rc;
}

tg_status tg_dnnl_eltwise_backward(tg_eltwise_alg alg, float alpha, float beta,
                                   const tg_tensor *x, const tg_tensor *gy, tg_tensor *gx)
{
    const char *who = "tg_dnnl_eltwise_backward";
    if (!x || !gy || !gx)
        return tg_null_arg(who, !x ? "x" : !gy ? "gy" : "gx");
    int64_t n = tg_tensor_numel(x);
    if (n != tg_tensor_numel(gy) || n != tg_tensor_numel(gx))
        return tg_error(TG_ERR_SHAPE, "%s: x, gy and gx differ in size (%lld, %lld, %lld)",
                        who, (long long)n, (long long)tg_tensor_numel(gy),
                        (long long)tg_tensor_numel(gx));
    if (n == 0)
        return TG_OK;
    dnnl_alg_kind_t a = eltwise_alg(alg);
    if (a == dnnl_alg_kind_undef)
        return tg_error(TG_ERR_ARG, "%s: unknown algorithm %d", who, (int)alg);
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t md;
    tg_dnnl_md_plain(&md, 1, &n);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_ELTWISE_BWD);
    tg_dnnl_key_add(&k, a);
    tg_dnnl_key_add(&k, float_bits(alpha));
    tg_dnnl_key_add(&k, float_bits(beta));
    tg_dnnl_key_add(&k, n);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        tg_dnnl_entry *fwd = eltwise_fwd_entry(a, alpha, beta, &md, n, who);
        if (fwd) {
            dnnl_eltwise_desc_t d;
            dnnl_status_t st = dnnl_eltwise_backward_desc_init(&d, a, &md, &md, alpha, beta);
            if (st != dnnl_success)
                backend_error(who, "dnnl_eltwise_backward_desc_init", st);
            else
                e = tg_dnnl_create(&k, &d, fwd->pd, who);
        }
    }
    if (e) {
        /* x and gy in the same dense blocked layout: gx in it too (see forward).
         * gx may be gy itself (same storage: the gradient computed in place). */
        const dnnl_memory_desc_t *xa = tg_dnnl_alt_md(x), *ga = tg_dnnl_alt_md(gy);
        bool same = gx->storage == gy->storage;
        const void *src = NULL, *diff_dst = NULL;
        void *diff_src = NULL;
        if (xa && ga && dnnl_memory_desc_equal(xa, ga) && tg_dnnl_md_dense(xa, n) &&
            (same || keep_layout(xa, gx))) {
            src = tg_dnnl_alt_buf(x);
            diff_dst = tg_dnnl_alt_buf(gy);
            diff_src = same ? (void *)(uintptr_t)diff_dst : tg_dnnl_alt_attach(gx, xa, who);
            rc = diff_src ? TG_OK : TG_ERR_NOMEM;
        } else if ((rc = tg_tensor_settle(x)) == TG_OK && (rc = tg_tensor_settle(gy)) == TG_OK &&
                   (rc = tg_tensor_settle(gx)) == TG_OK) {
            src = tg_tensor_data(x); /* plain: settled */
            diff_dst = tg_tensor_data(gy);
            diff_src = tg_tensor_data(gx);
        }
        if (rc == TG_OK) {
            tg_dnnl_args args;
            tg_dnnl_args_init(&args);
            tg_dnnl_arg(&args, DNNL_ARG_SRC, &md, src);
            tg_dnnl_arg(&args, DNNL_ARG_DIFF_DST, &md, diff_dst);
            tg_dnnl_arg(&args, DNNL_ARG_DIFF_SRC, &md, diff_src);
            rc = tg_dnnl_exec(e, &args, who);
        }
    }
    tg_dnnl_unlock();
    return rc;
}

/* ---------------------------------------------------------------- binary */

static float apply_binary(tg_binary_alg alg, float a, float b)
{
    switch (alg) {
    case TG_BIN_ADD: return a + b;
    case TG_BIN_SUB: return a - b;
    case TG_BIN_MUL: return a * b;
    case TG_BIN_DIV: return a / b;
    }
    return 0.0f;
}

/* c = f(a, b) on a binary or matmul primitive that reads and writes the tensors
 * with their own strides (no layout change): cached under the kind, alg and the
 * three layouts. */
static tg_status run_strided(tg_dnnl_kind kind, dnnl_alg_kind_t alg, const tg_tensor *a,
                             int arg_a, const tg_tensor *b, int arg_b, tg_tensor *c,
                             const char *who)
{
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t ma, mb, mc;
    tg_dnnl_md_of(&ma, a);
    tg_dnnl_md_of(&mb, b);
    tg_dnnl_md_of(&mc, c);
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, kind);
    tg_dnnl_key_add(&k, alg);
    key_add_layout(&k, a);
    key_add_layout(&k, b);
    key_add_layout(&k, c);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        union {
            dnnl_binary_desc_t binary;
            dnnl_matmul_desc_t matmul;
        } d;
        dnnl_status_t st = kind == TG_DNNL_BINARY
                               ? dnnl_binary_desc_init(&d.binary, alg, &ma, &mb, &mc)
                               : dnnl_matmul_desc_init(&d.matmul, &ma, &mb, NULL, &mc);
        if (st != dnnl_success)
            backend_error(who, kind == TG_DNNL_BINARY ? "dnnl_binary_desc_init"
                                                      : "dnnl_matmul_desc_init", st);
        else
            e = tg_dnnl_create(&k, &d, NULL, who);
    }
    if (e && ((rc = tg_tensor_settle(a)) != TG_OK || (rc = tg_tensor_settle(b)) != TG_OK ||
              (rc = tg_tensor_settle(c)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        tg_dnnl_args args;
        tg_dnnl_args_init(&args);
        tg_dnnl_arg(&args, arg_a, &ma, tg_tensor_data(a));
        tg_dnnl_arg(&args, arg_b, &mb, tg_tensor_data(b));
        tg_dnnl_arg(&args, DNNL_ARG_DST, &mc, tg_tensor_data(c));
        rc = tg_dnnl_exec(e, &args, who);
    }
    tg_dnnl_unlock();
    return rc;
}

/* oneDNN's binary broadcasts src1 only; when a itself is broadcast and the op
 * cannot be swapped, a strided loop does it. */
static tg_status binary_loop(tg_binary_alg alg, const tg_tensor *a, const tg_tensor *b,
                             tg_tensor *c)
{
    int nd = c->ndim;
    int64_t sa[TG_MAX_DIMS], sb[TG_MAX_DIMS];
    tg_broadcast_strides(a, nd, c->shape, sa);
    tg_broadcast_strides(b, nd, c->shape, sb);
    tg_status rc = tg_tensor_settle(a);
    if (rc != TG_OK || (rc = tg_tensor_settle(b)) != TG_OK || (rc = tg_tensor_settle(c)) != TG_OK)
        return rc;
    const float *pa = tg_tensor_data(a), *pb = tg_tensor_data(b);
    float *pc = tg_tensor_data(c);
    int64_t n = tg_tensor_numel(c);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t idx = rem % c->shape[d];
            rem /= c->shape[d];
            oa += idx * sa[d];
            ob += idx * sb[d];
        }
        pc[i] = apply_binary(alg, pa[oa], pb[ob]);
    }
    return TG_OK;
}

tg_status tg_dnnl_binary(tg_binary_alg alg, const tg_tensor *a, const tg_tensor *b,
                         tg_tensor *c)
{
    const char *who = "tg_dnnl_binary";
    if (!a || !b || !c)
        return tg_null_arg(who, !a ? "a" : !b ? "b" : "c");
    if (a->ndim != c->ndim || b->ndim != c->ndim)
        return tg_error(TG_ERR_SHAPE, "%s: a, b and c must have the same rank (%d, %d, %d)",
                        who, a->ndim, b->ndim, c->ndim);
    for (int i = 0; i < c->ndim; i++) {
        if ((a->shape[i] != c->shape[i] && a->shape[i] != 1) ||
            (b->shape[i] != c->shape[i] && b->shape[i] != 1)) {
            char sa[96], sb[96], sc[96];
            return tg_error(TG_ERR_SHAPE, "%s: shapes %s and %s do not broadcast to %s", who,
                            tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
                            tg_shape_str(sb, sizeof sb, b->ndim, b->shape),
                            tg_shape_str(sc, sizeof sc, c->ndim, c->shape));
        }
    }
    if (tg_tensor_numel(c) == 0)
        return TG_OK;
    dnnl_alg_kind_t da;
    switch (alg) {
    case TG_BIN_ADD: da = dnnl_binary_add; break;
    case TG_BIN_SUB: da = dnnl_binary_sub; break;
    case TG_BIN_MUL: da = dnnl_binary_mul; break;
    case TG_BIN_DIV: da = dnnl_binary_div; break;
    default: return tg_error(TG_ERR_ARG, "%s: unknown algorithm %d", who, (int)alg);
    }
    const tg_tensor *s0 = a, *s1 = b;
    if (!tg_tensor_same_shape(a, c)) {
        if ((alg == TG_BIN_ADD || alg == TG_BIN_MUL) && tg_tensor_same_shape(b, c)) {
            s0 = b;
            s1 = a;
        } else {
            return binary_loop(alg, a, b, c);
        }
    }
    return run_strided(TG_DNNL_BINARY, da, s0, DNNL_ARG_SRC_0, s1, DNNL_ARG_SRC_1, c, who);
}

/* ---------------------------------------------------------------- softmax */

static tg_dnnl_entry *softmax_fwd_entry(bool log, int axis, const tg_tensor *x,
                                        const dnnl_memory_desc_t *md, const char *who)
{
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_SOFTMAX_FWD);
    tg_dnnl_key_add(&k, log);
    tg_dnnl_key_add(&k, axis);
    key_add_layout(&k, x);
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (e)
        return e;
    dnnl_status_t st;
    if (log) {
        dnnl_logsoftmax_desc_t d;
        st = dnnl_logsoftmax_forward_desc_init(&d, dnnl_forward_training, md, axis);
        if (st == dnnl_success)
            return tg_dnnl_create(&k, &d, NULL, who);
    } else {
        dnnl_softmax_desc_t d;
        st = dnnl_softmax_forward_desc_init(&d, dnnl_forward_training, md, axis);
        if (st == dnnl_success)
            return tg_dnnl_create(&k, &d, NULL, who);
    }
    backend_error(who, "softmax forward descriptor", st);
    return NULL;
}

static tg_status check_softmax(const char *who, int axis, const tg_tensor *a,
                               const tg_tensor *b, const tg_tensor *c)
{
    if (a->ndim < 1 || axis < 0 || axis >= a->ndim)
        return tg_error(TG_ERR_RANGE, "%s: axis %d out of range for a %d-D tensor", who, axis,
                        a->ndim);
    if (!tg_tensor_same_shape(a, b) || (c && !tg_tensor_same_shape(a, c)))
        return tg_error(TG_ERR_SHAPE, "%s: tensors must have equal shapes", who);
    return TG_OK;
}

tg_status tg_dnnl_softmax_forward(bool log, int axis, const tg_tensor *x, tg_tensor *y)
{
    const char *who = log ? "tg_dnnl_log_softmax_forward" : "tg_dnnl_softmax_forward";
    if (!x || !y)
        return tg_null_arg(who, !x ? "x" : "y");
    tg_status rc = check_softmax(who, axis, x, y, NULL);
    if (rc != TG_OK)
        return rc;
    if (tg_tensor_numel(x) == 0)
        return TG_OK;
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t mx, my;
    tg_dnnl_md_of(&mx, x);
    tg_dnnl_md_of(&my, y);
    if (!dnnl_memory_desc_equal(&mx, &my))
        return tg_error(TG_ERR_ARG, "%s: x and y must have the same layout", who);
    tg_dnnl_lock();
    rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = softmax_fwd_entry(log, axis, x, &mx, who);
    if (e && ((rc = tg_tensor_settle(x)) != TG_OK || (rc = tg_tensor_settle(y)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        tg_dnnl_args args;
        tg_dnnl_args_init(&args);
        tg_dnnl_arg(&args, DNNL_ARG_SRC, &mx, tg_tensor_data(x));
        tg_dnnl_arg(&args, DNNL_ARG_DST, &my, tg_tensor_data(y));
        rc = tg_dnnl_exec(e, &args, who);
    }
    tg_dnnl_unlock();
    return rc;
}

tg_status tg_dnnl_softmax_backward(bool log, int axis, const tg_tensor *y,
                                   const tg_tensor *gy, tg_tensor *gx)
{
    const char *who = log ? "tg_dnnl_log_softmax_backward" : "tg_dnnl_softmax_backward";
    if (!y || !gy || !gx)
        return tg_null_arg(who, !y ? "y" : !gy ? "gy" : "gx");
    tg_status rc = check_softmax(who, axis, y, gy, gx);
    if (rc != TG_OK)
        return rc;
    if (tg_tensor_numel(y) == 0)
        return TG_OK;
    if (!tg_dnnl_engine(who))
        return tg_last_status();
    dnnl_memory_desc_t my, mgy, mgx;
    tg_dnnl_md_of(&my, y);
    tg_dnnl_md_of(&mgy, gy);
    tg_dnnl_md_of(&mgx, gx);
    if (!dnnl_memory_desc_equal(&my, &mgy) || !dnnl_memory_desc_equal(&my, &mgx))
        return tg_error(TG_ERR_ARG, "%s: y, gy and gx must have the same layout", who);
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_SOFTMAX_BWD);
    tg_dnnl_key_add(&k, log);
    tg_dnnl_key_add(&k, axis);
    key_add_layout(&k, y);
    tg_dnnl_lock();
    rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        tg_dnnl_entry *fwd = softmax_fwd_entry(log, axis, y, &my, who);
        if (fwd) {
            dnnl_status_t st;
            if (log) {
                dnnl_logsoftmax_desc_t d;
                st = dnnl_logsoftmax_backward_desc_init(&d, &mgx, &my, axis);
                if (st == dnnl_success)
                    e = tg_dnnl_create(&k, &d, fwd->pd, who);
            } else {
                dnnl_softmax_desc_t d;
                st = dnnl_softmax_backward_desc_init(&d, &mgx, &my, axis);
                if (st == dnnl_success)
                    e = tg_dnnl_create(&k, &d, fwd->pd, who);
            }
            if (st != dnnl_success)
                backend_error(who, "softmax backward descriptor", st);
        }
    }
    if (e && ((rc = tg_tensor_settle(y)) != TG_OK || (rc = tg_tensor_settle(gy)) != TG_OK ||
              (rc = tg_tensor_settle(gx)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        tg_dnnl_args args;
        tg_dnnl_args_init(&args);
        tg_dnnl_arg(&args, DNNL_ARG_DST, &my, tg_tensor_data(y));
        tg_dnnl_arg(&args, DNNL_ARG_DIFF_DST, &mgy, tg_tensor_data(gy));
        tg_dnnl_arg(&args, DNNL_ARG_DIFF_SRC, &mgx, tg_tensor_data(gx));
        rc = tg_dnnl_exec(e, &args, who);
    }
    tg_dnnl_unlock();
    return rc;
}

/* ---------------------------------------------------------------- matmul */

tg_status tg_dnnl_matmul(const tg_tensor *a, const tg_tensor *b, tg_tensor *c)
{
    const char *who = "tg_dnnl_matmul";
    if (!a || !b || !c)
        return tg_null_arg(who, !a ? "a" : !b ? "b" : "c");
    int nd = c->ndim;
    char sa[96], sb[96], sc[96];
    bool ok = (nd == 2 || nd == 3) && a->ndim == nd && b->ndim == nd &&
              a->shape[nd - 2] == c->shape[nd - 2] && b->shape[nd - 1] == c->shape[nd - 1] &&
              a->shape[nd - 1] == b->shape[nd - 2];
    if (ok && nd == 3)
        ok = (a->shape[0] == c->shape[0] || a->shape[0] == 1) &&
             (b->shape[0] == c->shape[0] || b->shape[0] == 1);
    if (!ok)
        return tg_error(TG_ERR_SHAPE, "%s: cannot multiply %s by %s into %s", who,
                        tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
                        tg_shape_str(sb, sizeof sb, b->ndim, b->shape),
                        tg_shape_str(sc, sizeof sc, c->ndim, c->shape));
    if (tg_tensor_numel(c) == 0)
        return TG_OK;
    if (a->shape[nd - 1] == 0) /* empty inner dimension: the product is zero */
        return tg_tensor_fill(c, 0.0);
    return run_strided(TG_DNNL_MATMUL, dnnl_alg_kind_undef, a, DNNL_ARG_SRC, b,
                       DNNL_ARG_WEIGHTS, c, who);
}
