/* benchmarks/direct_dnnl.c -- the floor: the tutorial CNN written directly on
 * oneDNN primitives, no framework. Forward, backward and Adam (Keras) are wired by
 * hand; every primitive and buffer is created once and reused each step; conv,
 * relu and pooling keep the blocked layout the conv picks (format_tag any), and
 * the first dense layer reads the pooled blocked tensor as is (a 4-D inner
 * product), so no activation is ever reordered. Prints one RESULT line for
 * benchmarks/run.sh. Reads the IDX files itself (gzip through `gzip -dc`: only
 * io/ may link zlib).
 *
 *   direct_dnnl [--batch N] [--steps N|0] [--threads N] [--data DIR] [--seed S]
 *               [--fuse] [--no-ftz] [--warmup N] [--no-infer]
 *
 * --steps 0 trains one epoch (floor(60000 / N) full batches). --fuse puts the
 * ReLUs into the conv and the first dense layer as post-ops (not the floor the
 * benchmark compares against: it shows what fusion would gain). The floor runs
 * with flush-to-zero (see set_ftz); --no-ftz shows what denormals cost. */
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SSE3__) || defined(__x86_64__)
#include <pmmintrin.h>
#define HAVE_FTZ 1
#endif

#define IMG 784
#define CLASSES 10
#define FEAT 5408 /* 32 x 13 x 13 */
#define HIDDEN 128

/* ================================================================ plumbing */

static dnnl_engine_t eng;
static dnnl_stream_t strm;
static dnnl_primitive_attr_t attr;
static dnnl_memory_t scratch;   /* one user scratchpad shared by every primitive */
static size_t scratch_bytes;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "direct_dnnl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

#define CK(call) do { dnnl_status_t st_ = (call); \
        if (st_ != dnnl_success) die("%s failed (status %d)", #call, (int)st_); } while (0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *xalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        die("out of memory (%zu bytes)", n);
    memset(p, 0, n); /* touch every page now, not in the timed loop */
    return p;
}

/* xoshiro256**: shuffles and initial weights. */
typedef struct rng { uint64_t s[4]; } rng;
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}
static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* A memory on a buffer we own (so pages are touched at setup). */
typedef struct buf {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
    float *p;
    size_t bytes;
} buf;

static void buf_on(buf *b, const dnnl_memory_desc_t *md, float *data)
{
    b->md = *md;
    b->bytes = dnnl_memory_desc_get_size(md);
    b->p = data ? data : xalloc(b->bytes);
    CK(dnnl_memory_create(&b->mem, md, eng, b->p));
}
static void buf_new(buf *b, const dnnl_memory_desc_t *md) { buf_on(b, md, NULL); }

static void md_tag(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++)
        d[i] = dims[i];
    CK(dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag));
}

typedef struct prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
} prim;

/* pd for op desc d, or NULL when oneDNN has no implementation for it. */
static dnnl_primitive_desc_t pd_try(const_dnnl_op_desc_t d, const_dnnl_primitive_attr_t a,
                                    const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, d, a, eng, hint) != dnnl_success)
        return NULL;
    return pd;
}

static void prim_init(prim *p, dnnl_primitive_desc_t pd, const char *what)
{
    if (!pd)
        die("no oneDNN implementation for %s", what);
    p->pd = pd;
    CK(dnnl_primitive_create(&p->p, pd));
    const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t n = s ? dnnl_memory_desc_get_size(s) : 0;
    if (n > scratch_bytes)
        scratch_bytes = n;
}

static const dnnl_memory_desc_t *qmd(const prim *p, dnnl_query_t q)
{
    return dnnl_primitive_desc_query_md(p->pd, q, 0);
}

static void reorder_make(prim *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to)
{
    dnnl_primitive_desc_t pd = NULL;
    CK(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr));
    prim_init(p, pd, "reorder");
}

typedef struct arg { int what; const buf *b; } arg;

static void exec(const prim *p, int n, const arg *a)
{
    dnnl_exec_arg_t x[12];
    for (int i = 0; i < n; i++)
        x[i] = (dnnl_exec_arg_t){a[i].what, a[i].b->mem};
    x[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scratch};
    CK(dnnl_primitive_execute(p->p, strm, n, x));
}

static void reorder_run(const prim *p, const buf *from, const buf *to)
{
    exec(p, 2, (arg[]){{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

static dnnl_primitive_attr_t relu_post_op_attr(void)
{
    dnnl_primitive_attr_t a;
    dnnl_post_ops_t po;
    CK(dnnl_primitive_attr_clone(&a, attr));
    CK(dnnl_post_ops_create(&po));
    CK(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    CK(dnnl_primitive_attr_set_post_ops(a, po));
    dnnl_post_ops_destroy(po);
    return a;
}

/* ================================================================ data */

/* Reads an IDX file (plain, or .gz through gzip -dc) with the given magic and
 * item size; returns the payload after the header and sets *count. */
static uint8_t *idx_read(const char *dir, const char *name, uint32_t magic, size_t item,
                         int64_t *count)
{
    char path[1024], cmd[1200];
    FILE *f = NULL;
    bool piped = false;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) {
        snprintf(path, sizeof path, "%s/%s.gz", dir, name);
        if (strchr(path, '\'') || !(f = fopen(path, "rb")))
            die("cannot open %s/%s (or .gz)", dir, name);
        fclose(f);
        snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
        f = popen(cmd, "r");
        piped = true;
        if (!f)
            die("cannot run gzip on %s", path);
    }
    uint8_t h[16];
    size_t hn = magic == 0x803 ? 16 : 8;
    if (fread(h, 1, hn, f) != hn)
        die("%s: short header", path);
    uint32_t m = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint32_t n = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    if (m != magic)
        die("%s: bad magic", path);
    uint8_t *d = malloc((size_t)n * item);
    if (!d || fread(d, item, n, f) != n)
        die("%s: truncated", path);
    if (piped)
        pclose(f);
    else
        fclose(f);
    *count = n;
    return d;
}

typedef struct dataset {
    float *x;       /* count x 784, pixel / 255 (f32, as the framework and PyTorch keep it) */
    int32_t *y;
    int64_t count;
} dataset;

static void load(dataset *ds, const char *dir, const char *images, const char *labels)
{
    int64_t ni, nl;
    uint8_t *px = idx_read(dir, images, 0x803, IMG, &ni);
    uint8_t *lb = idx_read(dir, labels, 0x801, 1, &nl);
    if (ni != nl)
        die("%s: image and label counts differ", images);
    ds->count = ni;
    ds->x = xalloc((size_t)ni * IMG * sizeof(float));
    ds->y = xalloc((size_t)ni * sizeof(int32_t));
    for (int64_t i = 0; i < ni * IMG; i++)
        ds->x[i] = (float)px[i] / 255.0f;
    for (int64_t i = 0; i < ni; i++)
        ds->y[i] = lb[i];
    free(px);
    free(lb);
}

/* ================================================================ the parameters */

/* One flat buffer for all parameters, one for their gradients and one each for
 * Adam's moments: the optimizer is a single pass. Each tensor starts on a 64-byte
 * boundary; the gaps (and any layout padding) hold zeros and stay zero. */
enum { W0, B0, W1, B1, W2, B2, NPARAM };

typedef struct params {
    float *p, *g, *m, *v;
    size_t total;          /* floats */
    size_t off[NPARAM];
    buf w[NPARAM], gw[NPARAM];
} params;

/* ================================================================ the network */

typedef struct net {
    int64_t n;
    bool train, fuse;
    dnnl_memory_desc_t x_md, c1_md, p1_md, h1_md, lg_md;
    prim conv, relu1, pool, ip1, relu2, ip2;           /* forward */
    prim conv_bw, relu1_b, pool_b, ip1_bd, ip1_bw, relu2_b, ip2_bd, ip2_bw;
    buf x, c1, p1, ws, h1, logits;                      /* activations (relus in place) */
    buf dlogits, dh1, dp1, dc1;                         /* gradients */
    uint64_t dropout_key;                               /* this step's mask (see dropout) */
    int32_t *y;
    /* weights in another layout than the parameters' (inference only, if oneDNN
     * insists): a reordered copy made once per pass */
    prim w_reorder[NPARAM];
    buf w_alt[NPARAM];
} net;

static void conv_desc(dnnl_convolution_desc_t *d, dnnl_prop_kind_t prop,
                      const dnnl_memory_desc_t *x, const dnnl_memory_desc_t *w,
                      const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *y)
{
    dnnl_dims_t s = {1, 1}, p0 = {0, 0};
    CK(dnnl_convolution_forward_desc_init(d, prop, dnnl_convolution_direct, x, w, b, y, s, p0, p0));
}

/* Creates the forward primitives of the network for batch nt->n. With decide, it
 * is the training net, whose choice (format any) fixes the parameters' layouts;
 * otherwise the parameters exist and their layouts are tried first (a weights
 * layout oneDNN refuses gets a reordered copy: net_weight_edges). */
static void net_forward_make(net *nt, params *pp, bool decide)
{
    int64_t n = nt->n;
    dnnl_prop_kind_t prop = nt->train ? dnnl_forward_training : dnnl_forward_inference;
    dnnl_memory_desc_t any_w, b_md, any_y;
    dnnl_primitive_attr_t fa = nt->fuse ? relu_post_op_attr() : attr;

    /* conv: x plain NCHW (1 channel), weights and output as oneDNN likes */
    md_tag(&nt->x_md, 4, (int64_t[]){n, 1, 28, 28}, dnnl_nchw);
    md_tag(&any_w, 4, (int64_t[]){32, 1, 3, 3}, dnnl_format_tag_any);
    md_tag(&b_md, 1, (int64_t[]){32}, dnnl_x);
    md_tag(&any_y, 4, (int64_t[]){n, 32, 26, 26}, dnnl_format_tag_any);
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    if (!decide) {
        conv_desc(&cd, prop, &nt->x_md, &pp->w[W0].md, &b_md, &any_y);
        pd = pd_try(&cd, fa, NULL);
    }
    if (!pd) {
        conv_desc(&cd, prop, &nt->x_md, &any_w, &b_md, &any_y);
        pd = pd_try(&cd, fa, NULL);
    }
    prim_init(&nt->conv, pd, "conv forward");
    nt->c1_md = *qmd(&nt->conv, dnnl_query_dst_md);

    /* relu in place on the conv's own layout; backward from its output */
    dnnl_eltwise_desc_t ed;
    if (!nt->fuse) {
        CK(dnnl_eltwise_forward_desc_init(&ed, prop, dnnl_eltwise_relu_use_dst_for_bwd,
                                          &nt->c1_md, 0.f, 0.f));
        prim_init(&nt->relu1, pd_try(&ed, attr, NULL), "relu forward");
    }

    /* max pool 2x2 on the same layout */
    md_tag(&any_y, 4, (int64_t[]){n, 32, 13, 13}, dnnl_format_tag_any);
    dnnl_pooling_v2_desc_t pld;
    dnnl_dims_t s2 = {2, 2}, k2 = {2, 2}, dil = {0, 0}, p0 = {0, 0};
    CK(dnnl_pooling_v2_forward_desc_init(&pld, prop, dnnl_pooling_max, &nt->c1_md, &any_y, s2,
                                         k2, dil, p0, p0));
    prim_init(&nt->pool, pd_try(&pld, attr, NULL), "pool forward");
    nt->p1_md = *qmd(&nt->pool, dnnl_query_dst_md);

    /* dense 5408 -> 128 straight on the pooled 4-D blocked tensor */
    dnnl_inner_product_desc_t ipd;
    md_tag(&any_w, 4, (int64_t[]){HIDDEN, 32, 13, 13}, dnnl_format_tag_any);
    md_tag(&b_md, 1, (int64_t[]){HIDDEN}, dnnl_x);
    md_tag(&nt->h1_md, 2, (int64_t[]){n, HIDDEN}, dnnl_nc);
    pd = NULL;
    if (!decide) {
        CK(dnnl_inner_product_forward_desc_init(&ipd, prop, &nt->p1_md, &pp->w[W1].md, &b_md,
                                                &nt->h1_md));
        pd = pd_try(&ipd, fa, NULL);
    }
    if (!pd) {
        CK(dnnl_inner_product_forward_desc_init(&ipd, prop, &nt->p1_md, &any_w, &b_md,
                                                &nt->h1_md));
        pd = pd_try(&ipd, fa, NULL);
    }
    prim_init(&nt->ip1, pd, "dense 1 forward");
    if (!nt->fuse) {
        CK(dnnl_eltwise_forward_desc_init(&ed, prop, dnnl_eltwise_relu_use_dst_for_bwd,
                                          &nt->h1_md, 0.f, 0.f));
        prim_init(&nt->relu2, pd_try(&ed, attr, NULL), "relu 2 forward");
    }

    /* dense 128 -> 10 */
    md_tag(&any_w, 2, (int64_t[]){CLASSES, HIDDEN}, dnnl_format_tag_any);
    md_tag(&b_md, 1, (int64_t[]){CLASSES}, dnnl_x);
    md_tag(&nt->lg_md, 2, (int64_t[]){n, CLASSES}, dnnl_nc);
    pd = NULL;
    if (!decide) {
        CK(dnnl_inner_product_forward_desc_init(&ipd, prop, &nt->h1_md, &pp->w[W2].md, &b_md,
                                                &nt->lg_md));
        pd = pd_try(&ipd, attr, NULL);
    }
    if (!pd) {
        CK(dnnl_inner_product_forward_desc_init(&ipd, prop, &nt->h1_md, &any_w, &b_md,
                                                &nt->lg_md));
        pd = pd_try(&ipd, attr, NULL);
    }
    prim_init(&nt->ip2, pd, "dense 2 forward");
    if (fa != attr)
        dnnl_primitive_attr_destroy(fa);

    buf_new(&nt->x, &nt->x_md);
    buf_new(&nt->c1, &nt->c1_md);
    buf_new(&nt->p1, &nt->p1_md);
    if (nt->train)
        buf_new(&nt->ws, qmd(&nt->pool, dnnl_query_workspace_md));
    buf_new(&nt->h1, &nt->h1_md);
    buf_new(&nt->logits, &nt->lg_md);
    nt->y = xalloc((size_t)n * sizeof *nt->y);
}

/* Lays the parameters out in the forward primitives' chosen layouts, in one flat
 * buffer, and initializes them as Keras does (Glorot uniform kernels drawn in the
 * plain layout and reordered once; zero biases). */
static void params_make(params *pp, const net *nt, uint64_t seed)
{
    const dnnl_memory_desc_t *mds[NPARAM];
    dnnl_memory_desc_t b0, b1, b2;
    md_tag(&b0, 1, (int64_t[]){32}, dnnl_x);
    md_tag(&b1, 1, (int64_t[]){HIDDEN}, dnnl_x);
    md_tag(&b2, 1, (int64_t[]){CLASSES}, dnnl_x);
    mds[W0] = qmd(&nt->conv, dnnl_query_weights_md);
    mds[W1] = qmd(&nt->ip1, dnnl_query_weights_md);
    mds[W2] = qmd(&nt->ip2, dnnl_query_weights_md);
    mds[B0] = &b0;
    mds[B1] = &b1;
    mds[B2] = &b2;
    size_t total = 0;
    for (int i = 0; i < NPARAM; i++) {
        pp->off[i] = total;
        total += (dnnl_memory_desc_get_size(mds[i]) / sizeof(float) + 15) & ~(size_t)15;
    }
    pp->total = total;
    pp->p = xalloc(total * sizeof(float));
    pp->g = xalloc(total * sizeof(float));
    pp->m = xalloc(total * sizeof(float));
    pp->v = xalloc(total * sizeof(float));
    for (int i = 0; i < NPARAM; i++) {
        buf_on(&pp->w[i], mds[i], pp->p + pp->off[i]);
        buf_on(&pp->gw[i], mds[i], pp->g + pp->off[i]);
    }

    /* kernels: (out, fan-in dims...) plain, Glorot uniform, then reordered */
    static const int64_t shapes[3][4] = {{32, 1, 3, 3}, {HIDDEN, 32, 13, 13}, {CLASSES, HIDDEN}};
    static const int nds[3] = {4, 4, 2};
    static const int which[3] = {W0, W1, W2};
    rng r;
    rng_seed(&r, seed);
    for (int k = 0; k < 3; k++) {
        int nd = nds[k];
        int64_t fan_in = 1, rf = 1;
        for (int d = 1; d < nd; d++)
            fan_in *= shapes[k][d];
        for (int d = 2; d < nd; d++)
            rf *= shapes[k][d];
        int64_t fan_out = shapes[k][0] * rf, count = shapes[k][0] * fan_in;
        double lim = sqrt(6.0 / (double)(fan_in + fan_out));
        dnnl_memory_desc_t plain;
        md_tag(&plain, nd, shapes[k], nd == 4 ? dnnl_oihw : dnnl_oi);
        buf tmp;
        buf_new(&tmp, &plain);
        for (int64_t i = 0; i < count; i++)
            tmp.p[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * lim);
        prim ro;
        reorder_make(&ro, &plain, mds[which[k]]);
        reorder_run(&ro, &tmp, &pp->w[which[k]]);
        CK(dnnl_stream_wait(strm));
        dnnl_primitive_destroy(ro.p);
        dnnl_primitive_desc_destroy(ro.pd);
        dnnl_memory_destroy(tmp.mem);
        free(tmp.p);
    }
}

/* Backward primitives: each gradient of a weight is made in the parameter's own
 * layout (so Adam runs on one flat buffer), each input gradient in the layout of
 * the forward activation. */
static void net_backward_make(net *nt, const params *pp)
{
    dnnl_memory_desc_t b_md;
    dnnl_dims_t s1 = {1, 1}, p0 = {0, 0}, s2 = {2, 2}, k2 = {2, 2}, dil = {0, 0};

    md_tag(&b_md, 1, (int64_t[]){32}, dnnl_x);
    dnnl_convolution_desc_t cd;
    CK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &nt->x_md,
                                                   &pp->w[W0].md, &b_md, &nt->c1_md, s1, p0, p0));
    prim_init(&nt->conv_bw, pd_try(&cd, attr, nt->conv.pd), "conv backward weights");

    /* relus: dst-based backward, in place on the gradient; fused relus need a
     * forward pd of their own as the hint (never executed) */
    dnnl_eltwise_desc_t ed;
    prim hint1 = {0}, hint2 = {0};
    if (nt->fuse) {
        CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training,
                                          dnnl_eltwise_relu_use_dst_for_bwd, &nt->c1_md, 0.f, 0.f));
        hint1.pd = pd_try(&ed, attr, NULL);
        CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training,
                                          dnnl_eltwise_relu_use_dst_for_bwd, &nt->h1_md, 0.f, 0.f));
        hint2.pd = pd_try(&ed, attr, NULL);
    }
    CK(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd, &nt->c1_md,
                                       &nt->c1_md, 0.f, 0.f));
    prim_init(&nt->relu1_b, pd_try(&ed, attr, nt->fuse ? hint1.pd : nt->relu1.pd), "relu backward");
    CK(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd, &nt->h1_md,
                                       &nt->h1_md, 0.f, 0.f));
    prim_init(&nt->relu2_b, pd_try(&ed, attr, nt->fuse ? hint2.pd : nt->relu2.pd),
              "relu 2 backward");
    if (hint1.pd)
        dnnl_primitive_desc_destroy(hint1.pd);
    if (hint2.pd)
        dnnl_primitive_desc_destroy(hint2.pd);

    dnnl_pooling_v2_desc_t pld;
    CK(dnnl_pooling_v2_backward_desc_init(&pld, dnnl_pooling_max, &nt->c1_md, &nt->p1_md, s2, k2,
                                          dil, p0, p0));
    prim_init(&nt->pool_b, pd_try(&pld, attr, nt->pool.pd), "pool backward");

    dnnl_inner_product_desc_t ipd;
    md_tag(&b_md, 1, (int64_t[]){HIDDEN}, dnnl_x);
    CK(dnnl_inner_product_backward_data_desc_init(&ipd, &nt->p1_md, &pp->w[W1].md, &nt->h1_md));
    prim_init(&nt->ip1_bd, pd_try(&ipd, attr, nt->ip1.pd), "dense 1 backward data");
    CK(dnnl_inner_product_backward_weights_desc_init(&ipd, &nt->p1_md, &pp->w[W1].md, &b_md,
                                                     &nt->h1_md));
    prim_init(&nt->ip1_bw, pd_try(&ipd, attr, nt->ip1.pd), "dense 1 backward weights");

    md_tag(&b_md, 1, (int64_t[]){CLASSES}, dnnl_x);
    CK(dnnl_inner_product_backward_data_desc_init(&ipd, &nt->h1_md, &pp->w[W2].md, &nt->lg_md));
    prim_init(&nt->ip2_bd, pd_try(&ipd, attr, nt->ip2.pd), "dense 2 backward data");
    CK(dnnl_inner_product_backward_weights_desc_init(&ipd, &nt->h1_md, &pp->w[W2].md, &b_md,
                                                     &nt->lg_md));
    prim_init(&nt->ip2_bw, pd_try(&ipd, attr, nt->ip2.pd), "dense 2 backward weights");

    buf_new(&nt->dlogits, &nt->lg_md);
    buf_new(&nt->dh1, &nt->h1_md);
    buf_new(&nt->dp1, &nt->p1_md);
    buf_new(&nt->dc1, &nt->c1_md);
}

/* An inference net whose weights layout differs from the parameters' gets a
 * reordered copy (made once per pass: weights do not change during inference). */
static void net_weight_edges(net *nt, const params *pp)
{
    const prim *fw[NPARAM] = {[W0] = &nt->conv, [W1] = &nt->ip1, [W2] = &nt->ip2};
    for (int i = W0; i < NPARAM; i += 2) {
        const dnnl_memory_desc_t *want = qmd(fw[i], dnnl_query_weights_md);
        if (dnnl_memory_desc_equal(want, &pp->w[i].md))
            continue;
        buf_new(&nt->w_alt[i], want);
        reorder_make(&nt->w_reorder[i], &pp->w[i].md, want);
    }
}

static const buf *weights_of(const net *nt, const params *pp, int i)
{
    return nt->w_alt[i].mem ? &nt->w_alt[i] : &pp->w[i];
}

/* ================================================================ one step */

/* Inverted dropout 0.25 in place on n values (a multiple of 32), in whatever
 * layout they are: an elementwise mask does not care. The mask is a counter-based
 * hash of (key, block): 64 bits for 32 values, 2 bits each, dropped when both are
 * 0 (probability 1/4). Each byte of the hash picks a row of 4 multipliers (0 or
 * 1/0.75) from a table, so the loop is 8 short vector multiplies per hash; it runs
 * in parallel, and the backward pass regenerates the same mask instead of storing
 * and reading one. */
_Static_assert(FEAT % 32 == 0, "dropout works on blocks of 32 values");
static float drop_table[256][4];

static void dropout_table_init(void)
{
    for (int b = 0; b < 256; b++)
        for (int j = 0; j < 4; j++)
            drop_table[b][j] = ((b >> (2 * j)) & 3) ? 1.0f / 0.75f : 0.0f;
}

static void dropout(float *p, int64_t n, uint64_t key)
{
    #pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < n / 32; blk++) {
        uint64_t c = key + (uint64_t)blk;
        uint64_t h = splitmix(&c);
        float *q = p + 32 * blk;
        for (int b = 0; b < 8; b++) {
            const float *t = drop_table[(h >> (8 * b)) & 0xff];
            for (int j = 0; j < 4; j++)
                q[4 * b + j] *= t[j];
        }
    }
}

static void forward(net *nt, const params *pp)
{
    exec(&nt->conv, 4, (arg[]){{DNNL_ARG_SRC, &nt->x}, {DNNL_ARG_WEIGHTS, weights_of(nt, pp, W0)},
                               {DNNL_ARG_BIAS, &pp->w[B0]}, {DNNL_ARG_DST, &nt->c1}});
    if (!nt->fuse)
        exec(&nt->relu1, 2, (arg[]){{DNNL_ARG_SRC, &nt->c1}, {DNNL_ARG_DST, &nt->c1}});
    if (nt->train)
        exec(&nt->pool, 3, (arg[]){{DNNL_ARG_SRC, &nt->c1}, {DNNL_ARG_DST, &nt->p1},
                                   {DNNL_ARG_WORKSPACE, &nt->ws}});
    else
        exec(&nt->pool, 2, (arg[]){{DNNL_ARG_SRC, &nt->c1}, {DNNL_ARG_DST, &nt->p1}});
    if (nt->train) {
        static uint64_t dropout_calls;
        CK(dnnl_stream_wait(strm));
        nt->dropout_key = 0x5eed0000ull + dropout_calls++ * 0x100000000ull;
        dropout(nt->p1.p, nt->n * FEAT, nt->dropout_key);
    }
    exec(&nt->ip1, 4, (arg[]){{DNNL_ARG_SRC, &nt->p1}, {DNNL_ARG_WEIGHTS, weights_of(nt, pp, W1)},
                              {DNNL_ARG_BIAS, &pp->w[B1]}, {DNNL_ARG_DST, &nt->h1}});
    if (!nt->fuse)
        exec(&nt->relu2, 2, (arg[]){{DNNL_ARG_SRC, &nt->h1}, {DNNL_ARG_DST, &nt->h1}});
    exec(&nt->ip2, 4, (arg[]){{DNNL_ARG_SRC, &nt->h1}, {DNNL_ARG_WEIGHTS, weights_of(nt, pp, W2)},
                              {DNNL_ARG_BIAS, &pp->w[B2]}, {DNNL_ARG_DST, &nt->logits}});
    CK(dnnl_stream_wait(strm));
}

/* Mean softmax cross-entropy over rows 0..rows-1 and, when train, its gradient
 * (softmax - onehot) / n into dlogits. Returns the loss. */
static double loss_and_grad(net *nt, int64_t rows)
{
    double total = 0;
    const float *lg = nt->logits.p;
    float *g = nt->train ? nt->dlogits.p : NULL;
    float inv_n = 1.0f / (float)nt->n;
    for (int64_t i = 0; i < rows; i++) {
        const float *z = lg + i * CLASSES;
        float mx = z[0];
        for (int c = 1; c < CLASSES; c++)
            mx = z[c] > mx ? z[c] : mx;
        float e[CLASSES], s = 0;
        for (int c = 0; c < CLASSES; c++)
            s += e[c] = expf(z[c] - mx);
        total += (double)(logf(s) - (z[nt->y[i]] - mx));
        if (g)
            for (int c = 0; c < CLASSES; c++)
                g[i * CLASSES + c] = (e[c] / s - (c == nt->y[i])) * inv_n;
    }
    return total / (double)rows;
}

static void backward(net *nt, params *pp)
{
    exec(&nt->ip2_bw, 4, (arg[]){{DNNL_ARG_SRC, &nt->h1}, {DNNL_ARG_DIFF_DST, &nt->dlogits},
                                 {DNNL_ARG_DIFF_WEIGHTS, &pp->gw[W2]},
                                 {DNNL_ARG_DIFF_BIAS, &pp->gw[B2]}});
    exec(&nt->ip2_bd, 3, (arg[]){{DNNL_ARG_DIFF_DST, &nt->dlogits}, {DNNL_ARG_WEIGHTS, &pp->w[W2]},
                                 {DNNL_ARG_DIFF_SRC, &nt->dh1}});
    exec(&nt->relu2_b, 3, (arg[]){{DNNL_ARG_DST, &nt->h1}, {DNNL_ARG_DIFF_DST, &nt->dh1},
                                  {DNNL_ARG_DIFF_SRC, &nt->dh1}});
    exec(&nt->ip1_bw, 4, (arg[]){{DNNL_ARG_SRC, &nt->p1}, {DNNL_ARG_DIFF_DST, &nt->dh1},
                                 {DNNL_ARG_DIFF_WEIGHTS, &pp->gw[W1]},
                                 {DNNL_ARG_DIFF_BIAS, &pp->gw[B1]}});
    exec(&nt->ip1_bd, 3, (arg[]){{DNNL_ARG_DIFF_DST, &nt->dh1}, {DNNL_ARG_WEIGHTS, &pp->w[W1]},
                                 {DNNL_ARG_DIFF_SRC, &nt->dp1}});
    CK(dnnl_stream_wait(strm));
    dropout(nt->dp1.p, nt->n * FEAT, nt->dropout_key); /* the same mask again */
    exec(&nt->pool_b, 3, (arg[]){{DNNL_ARG_DIFF_DST, &nt->dp1}, {DNNL_ARG_DIFF_SRC, &nt->dc1},
                                 {DNNL_ARG_WORKSPACE, &nt->ws}});
    exec(&nt->relu1_b, 3, (arg[]){{DNNL_ARG_DST, &nt->c1}, {DNNL_ARG_DIFF_DST, &nt->dc1},
                                  {DNNL_ARG_DIFF_SRC, &nt->dc1}});
    exec(&nt->conv_bw, 4, (arg[]){{DNNL_ARG_SRC, &nt->x}, {DNNL_ARG_DIFF_DST, &nt->dc1},
                                  {DNNL_ARG_DIFF_WEIGHTS, &pp->gw[W0]},
                                  {DNNL_ARG_DIFF_BIAS, &pp->gw[B0]}});
    CK(dnnl_stream_wait(strm));
}

/* Keras Adam, one pass over every parameter at once. */
static void adam(params *pp, int64_t t)
{
    const double lr = 1e-3;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
    float lr_t = (float)(lr * sqrt(1.0 - pow(0.999, (double)t)) / (1.0 - pow(0.9, (double)t)));
    float *p = pp->p, *g = pp->g, *m = pp->m, *v = pp->v;
    int64_t total = (int64_t)pp->total;
    #pragma omp parallel for simd schedule(static)
    for (int64_t k = 0; k < total; k++) {
        float gk = g[k];
        float mk = b1 * m[k] + (1.0f - b1) * gk;
        float vk = b2 * v[k] + (1.0f - b2) * gk * gk;
        m[k] = mk;
        v[k] = vk;
        p[k] -= lr_t * mk / (sqrtf(vk) + eps);
    }
}

static void gather(net *nt, const dataset *ds, const int64_t *idx, int64_t rows)
{
    for (int64_t i = 0; i < rows; i++) {
        memcpy(nt->x.p + i * IMG, ds->x + idx[i] * IMG, IMG * sizeof(float));
        nt->y[i] = ds->y[idx[i]];
    }
}

/* ================================================================ main */

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* Under DNNL_VERBOSE, marks where the timed steps start and end in oneDNN's
 * output (same stream, flushed), so benchmarks/profile.sh can cut them out. */
static void marker(const char *what)
{
    if (getenv("DNNL_VERBOSE") || getenv("ONEDNN_VERBOSE")) {
        printf("%s\n", what);
        fflush(stdout);
    }
}

/* Flush-to-zero and denormals-are-zero on this thread and every OpenMP thread:
 * Adam's moments of weights whose gradient stays zero decay into denormals after
 * several hundred steps, and denormal arithmetic is many times slower. */
static void set_ftz(void)
{
#ifdef HAVE_FTZ
    #pragma omp parallel
    {
        _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
        _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
    }
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

int main(int argc, char **argv)
{
    int64_t batch = 32, steps = 300, warmup = 5;
    int threads = 0;
    uint64_t seed = 42;
    bool fuse = false, infer = true, ftz = true;
    const char *dir = getenv("TG_FASHION_MNIST_DIR");
    if (!dir || !*dir)
        dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--batch") == 0 && v)
            batch = atoll(argv[++i]);
        else if (strcmp(a, "--steps") == 0 && v)
            steps = atoll(argv[++i]);
        else if (strcmp(a, "--warmup") == 0 && v)
            warmup = atoll(argv[++i]);
        else if (strcmp(a, "--threads") == 0 && v)
            threads = atoi(argv[++i]);
        else if (strcmp(a, "--data") == 0 && v)
            dir = argv[++i];
        else if (strcmp(a, "--seed") == 0 && v)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--fuse") == 0)
            fuse = true;
        else if (strcmp(a, "--no-infer") == 0)
            infer = false;
        else if (strcmp(a, "--no-ftz") == 0)
            ftz = false;
        else {
            fprintf(stderr, "usage: %s [--batch N] [--steps N|0] [--warmup N] [--threads N] "
                    "[--data DIR] [--seed S] [--fuse] [--no-ftz] [--no-infer]\n", argv[0]);
            return 2;
        }
    }
    if (batch < 1 || steps < 0 || warmup < 0)
        die("bad arguments");
#ifdef _OPENMP
    if (threads > 0)
        omp_set_num_threads(threads);
    threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (ftz)
        set_ftz();

    dataset train, test;
    load(&train, dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    load(&test, dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
    if (batch > train.count)
        die("batch larger than the training set");
    int64_t per_epoch = train.count / batch; /* full batches only */
    bool epoch_mode = steps == 0;
    if (epoch_mode)
        steps = per_epoch;

    dropout_table_init();
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    CK(dnnl_primitive_attr_create(&attr));
    CK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    double t_setup = now_s();
    net tr;
    params pp;
    memset(&tr, 0, sizeof tr);
    memset(&pp, 0, sizeof pp);
    tr.n = batch;
    tr.train = true;
    tr.fuse = fuse;
    net_forward_make(&tr, &pp, true);
    params_make(&pp, &tr, seed);
    net_backward_make(&tr, &pp);

    /* inference nets: the batch, and the tail of the test set */
    net inf[2];
    memset(inf, 0, sizeof inf);
    int64_t tail = test.count % batch;
    for (int k = 0; k < 2 && infer; k++) {
        inf[k].n = k == 0 ? batch : tail;
        inf[k].fuse = fuse;
        if (inf[k].n == 0)
            continue;
        net_forward_make(&inf[k], &pp, false);
        net_weight_edges(&inf[k], &pp);
    }
    dnnl_memory_desc_t smd;
    int64_t sdim = (int64_t)(scratch_bytes / sizeof(float)) + 1;
    md_tag(&smd, 1, &sdim, dnnl_x);
    buf sb;
    buf_new(&sb, &smd);
    scratch = sb.mem;
    t_setup = now_s() - t_setup;

    /* training */
    int64_t *order = xalloc((size_t)train.count * sizeof *order);
    for (int64_t i = 0; i < train.count; i++)
        order[i] = i;
    rng shuf;
    rng_seed(&shuf, seed + 1);
    int64_t pos = per_epoch; /* forces a shuffle first */
    double *step_s = xalloc((size_t)(steps + warmup + 1) * sizeof(double));
    double loss_sum = 0, t_train = 0;
    long flt0 = 0;
    int64_t t = 0;
    for (int64_t s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            marker("BENCH_TIMED_START");
            flt0 = minor_faults();
            t_train = now_s();
        }
        double t0 = now_s();
        if (pos >= per_epoch) {
            for (int64_t i = train.count - 1; i > 0; i--) {
                int64_t j = (int64_t)(rng_next(&shuf) % (uint64_t)(i + 1));
                int64_t tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
            pos = 0;
        }
        gather(&tr, &train, order + pos * batch, batch);
        pos++;
        forward(&tr, &pp);
        double l = loss_and_grad(&tr, batch);
        backward(&tr, &pp);
        adam(&pp, ++t);
        if (s >= warmup) {
            loss_sum += l;
            step_s[s - warmup] = now_s() - t0;
        }
    }
    t_train = now_s() - t_train;
    marker("BENCH_TIMED_END");
    long flt_train = minor_faults() - flt0;
    qsort(step_s, (size_t)steps, sizeof *step_s, cmp_double);
    double med_step = steps ? step_s[steps / 2] : 0;

    /* inference over the test set, grad-free, dropout off */
    double t_inf = 0, acc = -1, test_loss = 0;
    if (infer) {
        t_inf = now_s();
        for (int k = 0; k < 2; k++)
            for (int i = W0; i < NPARAM; i += 2)
                if (inf[k].w_reorder[i].p)
                    reorder_run(&inf[k].w_reorder[i], &pp.w[i], &inf[k].w_alt[i]);
        int64_t correct = 0;
        for (int64_t b0 = 0; b0 < test.count; b0 += batch) {
            int64_t rows = test.count - b0 < batch ? test.count - b0 : batch;
            net *nt = &inf[rows == batch ? 0 : 1];
            memcpy(nt->x.p, test.x + b0 * IMG, (size_t)rows * IMG * sizeof(float));
            memcpy(nt->y, test.y + b0, (size_t)rows * sizeof *nt->y);
            forward(nt, &pp);
            test_loss += loss_and_grad(nt, rows) * (double)rows;
            for (int64_t i = 0; i < rows; i++) {
                const float *z = nt->logits.p + i * CLASSES;
                int best = 0;
                for (int c = 1; c < CLASSES; c++)
                    if (z[c] > z[best])
                        best = c;
                correct += best == nt->y[i];
            }
        }
        t_inf = now_s() - t_inf;
        acc = (double)correct / (double)test.count;
        test_loss /= (double)test.count;
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ms_step = steps ? t_train / (double)steps * 1e3 : 0;
    printf("RESULT impl=%s batch=%lld threads=%d steps=%lld epoch_mode=%d train_s=%.4f "
           "ms_step=%.4f ms_step_median=%.4f img_s=%.1f epoch_s=%.3f train_loss=%.4f "
           "infer_s=%.4f infer_img_s=%.1f test_acc=%.4f test_loss=%.4f rss_mb=%.1f "
           "faults_per_step=%.2f setup_s=%.3f dnnl=%d.%d.%d isa=%s\n",
           fuse ? (ftz ? "direct_fused" : "direct_fused_noftz") : (ftz ? "direct" : "direct_noftz"),
           (long long)batch, threads, (long long)steps,
           epoch_mode, t_train, ms_step, med_step * 1e3,
           steps ? (double)(steps * batch) / t_train : 0, ms_step * 1e-3 * 60000.0 / (double)batch,
           steps ? loss_sum / (double)steps : 0, t_inf, infer ? (double)test.count / t_inf : 0,
           acc, test_loss, (double)ru.ru_maxrss / 1024.0,
           steps ? (double)flt_train / (double)steps : 0, t_setup, dnnl_version()->major,
           dnnl_version()->minor, dnnl_version()->patch, isa_name(dnnl_get_effective_cpu_isa()));
    /* The process exits here: the OS takes the buffers back. */
    return 0;
}
