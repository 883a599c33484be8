/* tests/test_oom.c -- allocation failure at every point, as jansson tests it: each
 * scenario (forward and backward of small models, views, printing, state dicts,
 * gradcheck, DOT) runs once per allocation the library makes in it, with that
 * one allocation failing. Every run must fail cleanly (NULL or a status, with the
 * last error set) or absorb the failure, and leave no live object and no heap
 * block behind; none may crash.
 *
 * The test defines malloc and friends, which the library's calls reach (its own,
 * and those libc makes for it: strdup, open_memstream). Allocations made by
 * oneDNN, libgomp, libstdc++ and HDF5 never fail here: oneDNN crashes on some
 * failed allocations and libgomp aborts, which is theirs to fix. Under ASan (whose
 * allocator must see every block) and Valgrind (which replaces malloc itself) the
 * injection cannot work; the ASan build skips it. */
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define TG_INJECT 0
#else
#define TG_INJECT 1
#endif

#if TG_INJECT
/* ---------------------------------------------------------------- the allocator */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static pthread_t test_thread;
static bool armed;       /* count allocations, fail number fail_at */
static long count, fail_at;
static bool failed_one;  /* the run reached allocation number fail_at */
static bool tracking;    /* record blocks to find those never freed */
static bool inside;      /* in our own bookkeeping: pass everything through */

/* Whether the allocation returning to ret is the library's (or libc's on its
 * behalf) and made on the test's thread. */
static bool ours(void *ret)
{
    if (inside || !pthread_equal(pthread_self(), test_thread))
        return false;
    Dl_info info;
    if (!dladdr(ret, &info) || !info.dli_fname)
        return true;
    static const char *const theirs[] = {"libdnnl", "libgomp", "libstdc++", "libhdf5"};
    for (size_t i = 0; i < sizeof theirs / sizeof theirs[0]; i++)
        if (strstr(info.dli_fname, theirs[i]))
            return false;
    return true;
}

static bool should_fail(void *ret)
{
    if (!armed || !ours(ret))
        return false;
    if (++count != fail_at)
        return false;
    failed_one = true;
    return true;
}

/* Open-addressing set of live tracked blocks with the return address of their
 * allocation (enough to find the leaking call in a debugger). */
enum { HCAP = 1 << 16 };
static void *hkeys[HCAP], *hwhere[HCAP];
static size_t n_tracked;

static size_t slot_of(const void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48) & (HCAP - 1);
}

static void track(void *p, void *ret)
{
    if (!tracking || !p || !ours(ret) || n_tracked >= HCAP / 2)
        return;
    size_t h = slot_of(p);
    while (hkeys[h])
        h = (h + 1) & (HCAP - 1);
    hkeys[h] = p;
    hwhere[h] = ret;
    n_tracked++;
}

static void untrack(void *p)
{
    if (!p || n_tracked == 0)
        return;
    size_t h = slot_of(p);
    while (hkeys[h] && hkeys[h] != p)
        h = (h + 1) & (HCAP - 1);
    if (!hkeys[h])
        return;
    /* backward-shift deletion keeps every probe chain intact */
    for (size_t j = (h + 1) & (HCAP - 1); hkeys[j]; j = (j + 1) & (HCAP - 1)) {
        size_t k = slot_of(hkeys[j]);
        bool movable = j > h ? (k <= h || k > j) : (k <= h && k > j);
        if (movable) {
            hkeys[h] = hkeys[j];
            hwhere[h] = hwhere[j];
            h = j;
        }
    }
    hkeys[h] = NULL;
    n_tracked--;
}

#define RET __builtin_return_address(0)

void *malloc(size_t n)
{
    if (should_fail(RET))
        return NULL;
    void *p = __libc_malloc(n);
    track(p, RET);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail(RET))
        return NULL;
    void *p = __libc_calloc(a, b);
    track(p, RET);
    return p;
}

void *realloc(void *q, size_t n)
{
    if (should_fail(RET))
        return NULL;
    void *p = __libc_realloc(q, n);
    if (p || n == 0) {
        untrack(q);
        track(p, RET);
    }
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (should_fail(RET))
        return NULL;
    void *p = __libc_memalign(align, n);
    track(p, RET);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (should_fail(RET))
        return 12; /* ENOMEM */
    *out = __libc_memalign(align, n);
    track(*out, RET);
    return *out ? 0 : 12;
}

void free(void *p)
{
    if (tracking)
        untrack(p);
    __libc_free(p);
}

/* Empties the set; returns how many blocks were in it and names the first. */
static size_t drain_tracked(char *first, size_t n)
{
    size_t left = n_tracked;
    first[0] = '\0';
    for (size_t h = 0; h < HCAP && n_tracked; h++) {
        if (!hkeys[h])
            continue;
        if (!first[0]) {
            Dl_info info;
            inside = true;
            if (dladdr(hwhere[h], &info) && info.dli_sname)
                snprintf(first, n, "%s+%#lx", info.dli_sname,
                         (unsigned long)((char *)hwhere[h] - (char *)info.dli_saddr));
            else
                snprintf(first, n, "%p", hwhere[h]);
            inside = false;
        }
        hkeys[h] = NULL;
        n_tracked--;
    }
    n_tracked = 0;
    return left;
}
#endif /* TG_INJECT */

/* ---------------------------------------------------------------- scenarios */

/* Each returns 0 when everything succeeded, -1 when a call reported failure, -2
 * when a result was wrong. No Check call here: Check allocates even when an
 * assertion holds. */
typedef int (*scenario_fn)(tg_dtype dt);

static tg_tensor *param(tg_dtype dt, int ndim, const int64_t *shape, double low)
{
    tg_tensor *t = tg_rand_uniform(dt, ndim, shape, low, low + 1, NULL);
    return t && tg_set_requires_grad(t, true) == TG_OK ? t : NULL;
}

static int mlp(tg_dtype dt)
{
    tg_tensor *x = param(dt, TG_SHAPE(4, 3), -1), *w = param(dt, TG_SHAPE(3, 5), -1);
    tg_tensor *b = param(dt, TG_SHAPE(5), -1), *w2 = param(dt, TG_SHAPE(5, 3), -1);
    tg_tensor *labels = tg_from_data(TG_I64, TG_SHAPE(4), (const int64_t[]){0, 1, 2, 1});
    tg_tensor *h = tg_relu(tg_add(tg_matmul(x, w), b));
    tg_tensor *loss = tg_cross_entropy(tg_matmul(h, w2), labels);
    return loss && tg_backward(loss) == TG_OK ? 0 : -1;
}

static int elementwise(tg_dtype dt)
{
    tg_tensor *a = param(dt, TG_SHAPE(2, 3), 0.5), *b = param(dt, TG_SHAPE(3), 0.5);
    tg_tensor *y = tg_div(tg_pow(a, b), tg_sub(tg_exp(a), tg_mul(a, b)));
    y = tg_add(tg_sqrt(tg_abs(y)), tg_log(tg_sigmoid(tg_tanh(tg_neg(y)))));
    y = tg_pow_scalar(tg_mul_scalar(tg_add_scalar(y, 1), 2), 2);
    tg_tensor *loss = tg_mse(y, tg_zeros(dt, TG_SHAPE(2, 3)));
    return loss && tg_backward(loss) == TG_OK ? 0 : -1;
}

static int reductions_and_views(tg_dtype dt)
{
    tg_tensor *a = param(dt, TG_SHAPE(2, 3, 4), 0);
    tg_tensor *y = tg_max(tg_permute(a, (const int[]){2, 0, 1}), (const int[]){0}, 1, true);
    y = tg_mean(tg_reshape(tg_slice(y, 2, 1, 3), TG_SHAPE(-1, 2)), (const int[]){1}, 1, false);
    tg_tensor *z = tg_concat((tg_tensor *[]){y, tg_squeeze(tg_unsqueeze(y, 0), 0)}, 2, 0);
    z = tg_log_softmax(tg_unsqueeze(z, 0), 1);
    z = tg_sum(tg_mul(z, tg_softmax(z, -1)), NULL, 0, false);
    tg_backward_opts o = TG_BACKWARD_OPTS_INIT;
    o.retain_graph = true;
    return z && tg_backward_ex(z, &o) == TG_OK && tg_backward(z) == TG_OK ? 0 : -1;
}

static int tensors_and_state_dicts(tg_dtype dt)
{
    tg_tensor *v = tg_transpose(tg_reshape(tg_arange(dt, 0, 24, 1),
                                                         TG_SHAPE(4, 6)), 0, 1);
    tg_tensor *c = tg_contiguous(tg_slice(v, 0, 1, 5));
    /* the second copy overlaps its source, which goes through a temporary */
    if (!c || tg_tensor_copy_into(tg_slice(v, 0, 0, 4), c) != TG_OK ||
        tg_tensor_copy_into(tg_slice(v, 0, 1, 6), tg_slice(v, 0, 0, 5)) != TG_OK)
        return -1;
    char *text = tg_tensor_to_string(v);
    if (!text)
        return -1;
    free(text);
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd)
        return -1;
    int rc = tg_state_dict_set(sd, "model/w", c) == TG_OK &&
                     tg_state_dict_set_str(sd, "format", "x") == TG_OK &&
                     tg_state_dict_set_i64(sd, "epoch", 3) == TG_OK &&
                     tg_tensor_set_name(c, "w") == TG_OK
                 ? 0
                 : -1;
    tg_state_dict_free(sd);
    return rc;
}

static tg_tensor *tanh_matmul(tg_tensor *const *in, int n, void *ctx)
{
    return tg_tanh(tg_matmul(in[0], in[1]));
}

static int gradcheck(tg_dtype dt)
{
    tg_tensor *in[2] = {param(dt, TG_SHAPE(2, 3), -0.5), param(dt, TG_SHAPE(3, 2), -0.5)};
    if (!in[0] || !in[1])
        return -1;
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    if (dt == TG_F32)
        o = (tg_gradcheck_opts)TG_GRADCHECK_OPTS_F32_INIT;
    tg_gradcheck_report r;
    if (tg_gradcheck(&r, tanh_matmul, NULL, in, 2, &o) != TG_OK)
        return -1;
    return r.passed ? 0 : -2;
}

static FILE *devnull;

static int dot(tg_dtype dt)
{
    tg_tensor *w = param(dt, TG_SHAPE(2, 3), 0);
    if (!w || tg_tensor_set_name(w, "w") != TG_OK)
        return -1;
    tg_tensor *y = tg_sum(tg_relu(tg_mul(w, w)), NULL, 0, false);
    tg_dot_opts o = TG_DOT_OPTS_INIT;
    o.backward = true;
    return y && tg_dot_write(devnull, &y, 1, &o) == TG_OK ? 0 : -1;
}

/* training with running statistics, then inference with the fused ReLU */
static int batch_norm(tg_dtype dt)
{
    tg_tensor *x = param(dt, TG_SHAPE(3, 2, 2, 2), -0.5), *g = param(dt, TG_SHAPE(2), 0.5);
    tg_tensor *b = param(dt, TG_SHAPE(2), -0.5);
    tg_tensor *rm = tg_zeros(dt, TG_SHAPE(2)), *rv = tg_ones(dt, TG_SHAPE(2));
    if (!g || !b) /* NULL would mean "no gamma": another call (and primitive) */
        return -1;
    tg_batch_norm_opts o = TG_BATCH_NORM_OPTS_INIT;
    o.training = true;
    tg_tensor *y = tg_batch_norm(x, g, b, rm, rv, &o);
    o.training = false;
    o.relu = true;
    y = tg_add(y, tg_batch_norm(x, g, b, rm, rv, &o));
    tg_tensor *loss = tg_sum(tg_mul(y, y), NULL, 0, false);
    return loss && tg_backward(loss) == TG_OK ? 0 : -1;
}

static const struct {
    const char *name;
    scenario_fn fn;
} scenarios[] = {
    {"mlp", mlp},
    {"elementwise", elementwise},
    {"reductions and views", reductions_and_views},
    {"tensors and state dicts", tensors_and_state_dicts},
    {"gradcheck", gradcheck},
    {"dot", dot},
    {"batch_norm", batch_norm},
};
#define N_SCENARIOS ((int)(sizeof scenarios / sizeof scenarios[0]))

/* _i: scenario * 2 + config; config 0 is f32 on oneDNN, 1 is f64 on the
 * reference kernels. */
START_TEST(every_allocation_fails_once)
{
#if TG_INJECT
    const char *name = scenarios[_i / 2].name;
    scenario_fn fn = scenarios[_i / 2].fn;
    tg_dtype dt = _i % 2 ? TG_F64 : TG_F32;
    tg_backend prev = tg_set_backend(_i % 2 ? TG_BACKEND_REFERENCE : TG_BACKEND_AUTO);
    test_thread = pthread_self();
    /* each scenario runs hundreds of times: one thread keeps that fast (two
     * threads on a busy 2-core machine made it 30 times slower) */
    TG_OK_(tg_set_num_threads(1));
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(devnull);
    /* a clean run first: it fills what lives on (the primitive cache, the scope
     * stack, thread-local buffers) and must succeed */
    tg_scope *s = tg_scope_push();
    ck_assert_msg(fn(dt) == 0, "%s: %s", name, tg_last_error());
    tg_scope_pop(s);
    long k;
    for (k = 1; k < 100000; k++) {
        tg_manual_seed(5);
        tg_clear_error();
        int64_t live = tg_live_objects();
        s = tg_scope_push();
        count = 0;
        fail_at = k;
        failed_one = false;
        tracking = armed = true;
        int rc = fn(dt);
        armed = false;
        ck_assert_msg(rc != -2, "%s, allocation %ld failing: a wrong result", name, k);
        ck_assert_msg(rc == 0 || tg_last_status() != TG_OK,
                      "%s, allocation %ld failing: a call failed without an error", name, k);
        tg_scope_pop(s);
        tg_memory_cache_clear(); /* cached storage blocks are not leaks */
        tracking = false;
        char first[160];
        size_t left = drain_tracked(first, sizeof first);
        ck_assert_msg(left == 0, "%s, allocation %ld failing (%s): %zu block(s) never freed, "
                      "the first allocated at %s", name, k, tg_last_error(), left, first);
        ck_assert_msg(tg_live_objects() == live, "%s, allocation %ld failing (%s): %lld live "
                      "object(s) leaked", name, k, tg_last_error(),
                      (long long)(tg_live_objects() - live));
        if (!failed_one)
            break; /* the run made fewer allocations than k: all were tried */
    }
    ck_assert_msg(k > 5, "%s: only %ld allocations seen; is injection working?", name, k);
    tg_set_backend(prev);
#endif
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("oom");
    TCase *tc = tg_tcase("allocation failures");
    tcase_add_loop_test(tc, every_allocation_fails_once, 0, 2 * N_SCENARIOS);
    suite_add_tcase(s, tc);
    return s;
}
