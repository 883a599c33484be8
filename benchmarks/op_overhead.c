/* benchmarks/op_overhead.c -- what the framework costs on top of oneDNN.
 *
 * For the tutorial network's shapes at batch 32 and 128 it times every op's
 * forward and backward twice: through libtensor (allocation, scopes, the tape,
 * the primitive cache, layout reorders, gradient accumulation) and as the same
 * oneDNN primitives and reorders driven directly on preallocated memory. It prints
 * medians and their ratio, the layout policy comparison (plain vs blocked), and a
 * whole training step. It only measures: it never fails.
 *
 *   benchmarks/op_overhead [--reps N] [--batch N]...      (make bench builds and runs it)
 *   TG_DNNL_LAYOUT=plain benchmarks/op_overhead           the framework with plain layouts
 *
 * It includes oneDNN for the direct baseline; the framework side uses libtensor.h. */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libtensor.h"

static int reps = 11;
static bool fw_blocked = true; /* the framework's conv layout policy (TG_DNNL_LAYOUT) */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 1 + (c[1] == ' ');
                c[strcspn(c, "\n")] = '\0';
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

/* ================================================================ direct oneDNN */

static dnnl_engine_t eng;
static dnnl_stream_t strm;
static dnnl_primitive_attr_t attr;
static bool direct_ok = true;

#define DN(call) direct_check((call), #call)
static bool direct_check(dnnl_status_t st, const char *what)
{
    if (st == dnnl_success)
        return true;
    if (direct_ok)
        fprintf(stderr, "bench: direct oneDNN: %s failed (status %d)\n", what, (int)st);
    direct_ok = false;
    return false;
}

/* A primitive with its own preallocated scratchpad. */
typedef struct prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
} prim;

static dnnl_memory_t mem_new(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m = NULL;
    if (!DN(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE)))
        return NULL;
    void *p = NULL;
    dnnl_memory_get_data_handle(m, &p);
    size_t n = dnnl_memory_desc_get_size(md) / sizeof(float);
    for (size_t i = 0; i < n; i++)
        ((float *)p)[i] = (float)((i * 7919) % 97) / 97.0f - 0.5f;
    return m;
}

static void prim_finish(prim *d)
{
    if (!d->pd || !DN(dnnl_primitive_create(&d->p, d->pd)))
        return;
    const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(d->pd, dnnl_query_scratchpad_md, 0);
    if (s && dnnl_memory_desc_get_size(s) > 0)
        d->scratch = mem_new(s);
}

static void prim_make(prim *d, const_dnnl_op_desc_t desc, const_dnnl_primitive_desc_t hint)
{
    memset(d, 0, sizeof *d);
    if (DN(dnnl_primitive_desc_create(&d->pd, desc, attr, eng, hint)))
        prim_finish(d);
}

static void prim_free(prim *d)
{
    if (d->p)
        dnnl_primitive_destroy(d->p);
    if (d->pd)
        dnnl_primitive_desc_destroy(d->pd);
    if (d->scratch)
        dnnl_memory_destroy(d->scratch);
    memset(d, 0, sizeof *d);
}

static const dnnl_memory_desc_t *qmd(const prim *d, dnnl_query_t q, int i)
{
    return dnnl_primitive_desc_query_md(d->pd, q, i);
}

static void run(prim *d, int n, dnnl_exec_arg_t *args)
{
    if (!d->p)
        return;
    dnnl_exec_arg_t a[16];
    memcpy(a, args, (size_t)n * sizeof *a);
    if (d->scratch)
        a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, d->scratch};
    DN(dnnl_primitive_execute(d->p, strm, n, a));
    DN(dnnl_stream_wait(strm));
}

/* A layout edge: when `want` differs from `have`, a reorder and a memory in the
 * primitive's layout; otherwise the user's memory is used as is. */
typedef struct edge {
    prim r;            /* reorder, or empty */
    dnnl_memory_t mem; /* memory in the primitive's layout */
    bool own;
} edge;

static void edge_make(edge *e, const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *have,
                      dnnl_memory_t user, bool to_user)
{
    memset(e, 0, sizeof *e);
    if (dnnl_memory_desc_equal(want, have)) {
        e->mem = user;
        return;
    }
    e->mem = mem_new(want);
    e->own = true;
    const dnnl_memory_desc_t *src = to_user ? want : have, *dst = to_user ? have : want;
    if (DN(dnnl_reorder_primitive_desc_create(&e->r.pd, src, eng, dst, eng, attr)))
        prim_finish(&e->r);
}

static void edge_run(edge *e, dnnl_memory_t user, bool to_user)
{
    if (!e->r.p)
        return;
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, to_user ? e->mem : user},
                            {DNNL_ARG_TO, to_user ? user : e->mem}};
    run(&e->r, 2, a);
}

static void edge_free(edge *e)
{
    prim_free(&e->r);
    if (e->own && e->mem)
        dnnl_memory_destroy(e->mem);
    memset(e, 0, sizeof *e);
}

static void md_tag(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++)
        d[i] = dims[i];
    DN(dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag));
}

static bool padded(const dnnl_memory_desc_t *md)
{
    for (int i = 0; i < md->ndims; i++)
        if (md->padded_dims[i] != md->dims[i])
            return true;
    return false;
}

/* ---- direct ops: the framework's primitives and reorders, by hand ---- */

typedef struct direct_op {
    void (*fwd)(struct direct_op *);
    void (*bwd)(struct direct_op *);
    prim p[3];          /* forward, backward data, backward weights */
    edge e[8];
    dnnl_memory_t m[12];
} direct_op;

static void direct_free(direct_op *d)
{
    for (int i = 0; i < 3; i++)
        prim_free(&d->p[i]);
    for (int i = 0; i < 8; i++)
        edge_free(&d->e[i]);
    for (int i = 0; i < 12; i++)
        if (d->m[i])
            dnnl_memory_destroy(d->m[i]);
    memset(d, 0, sizeof *d);
}

/* conv 1x28x28 -> 32x26x26, 3x3, bias. Memories: 0 x, 1 w, 2 b, 3 y, 4 gy, 5 gw, 6 gb.
 * Edges: 0 fwd src, 1 fwd weights (reordered once: the framework caches it),
 * 2 fwd dst, 3 bwd src, 4 bwd diff_dst, 5 bwd diff_weights. */
enum { CX, CW, CB, CY, CGY, CGW, CGB };

static void conv_pd(prim *p, int kind, int64_t n, bool blocked, const_dnnl_primitive_desc_t hint,
                    bool try_any)
{
    int64_t xd[] = {n, 1, 28, 28}, wd[] = {32, 1, 3, 3}, bd[] = {32}, yd[] = {n, 32, 26, 26};
    dnnl_format_tag_t act = try_any ? dnnl_format_tag_any : dnnl_nchw;
    dnnl_format_tag_t wt = blocked ? dnnl_format_tag_any : dnnl_oihw;
    dnnl_memory_desc_t xm, wm, bm, ym;
    md_tag(&xm, 4, xd, act);
    md_tag(&wm, 4, wd, wt);
    md_tag(&bm, 1, bd, dnnl_x);
    md_tag(&ym, 4, yd, act);
    dnnl_dims_t s = {1, 1}, dil = {0, 0}, pl = {0, 0}, pr = {0, 0};
    dnnl_convolution_desc_t cd;
    if (kind == 0)
        DN(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training,
                                                      dnnl_convolution_direct, &xm, &wm, &bm,
                                                      &ym, s, dil, pl, pr));
    else
        DN(dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct,
                                                               &xm, &wm, &bm, &ym, s, dil, pl,
                                                               pr));
    prim_make(p, &cd, hint);
}

/* The framework's policy: blocked activations unless they would be padded. */
static void conv_prim(prim *p, int kind, int64_t n, bool blocked, const_dnnl_primitive_desc_t hint)
{
    conv_pd(p, kind, n, blocked, hint, blocked);
    if (blocked && p->pd) {
        const dnnl_memory_desc_t *a = qmd(p, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *b = qmd(p, kind == 0 ? dnnl_query_dst_md : dnnl_query_diff_dst_md, 0);
        if (padded(a) || padded(b)) {
            prim_free(p);
            conv_pd(p, kind, n, blocked, hint, false);
        }
    }
}

static void conv_fwd(direct_op *d)
{
    edge_run(&d->e[0], d->m[CX], false);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->e[0].mem}, {DNNL_ARG_WEIGHTS, d->e[1].mem},
                           {DNNL_ARG_BIAS, d->m[CB]}, {DNNL_ARG_DST, d->e[2].mem}};
    run(&d->p[0], 4, a);
    edge_run(&d->e[2], d->m[CY], true);
}

static void conv_bwd(direct_op *d)
{
    edge_run(&d->e[3], d->m[CX], false);
    edge_run(&d->e[4], d->m[CGY], false);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->e[3].mem}, {DNNL_ARG_DIFF_DST, d->e[4].mem},
                           {DNNL_ARG_DIFF_WEIGHTS, d->e[5].mem}, {DNNL_ARG_DIFF_BIAS, d->m[CGB]}};
    run(&d->p[2], 4, a);
    edge_run(&d->e[5], d->m[CGW], true);
}

static void conv_setup(direct_op *d, int64_t n, bool blocked)
{
    int64_t xd[] = {n, 1, 28, 28}, wd[] = {32, 1, 3, 3}, bd[] = {32}, yd[] = {n, 32, 26, 26};
    dnnl_memory_desc_t xm, wm, bm, ym;
    md_tag(&xm, 4, xd, dnnl_nchw);
    md_tag(&wm, 4, wd, dnnl_oihw);
    md_tag(&bm, 1, bd, dnnl_x);
    md_tag(&ym, 4, yd, dnnl_nchw);
    d->m[CX] = mem_new(&xm);
    d->m[CW] = mem_new(&wm);
    d->m[CB] = mem_new(&bm);
    d->m[CY] = mem_new(&ym);
    d->m[CGY] = mem_new(&ym);
    d->m[CGW] = mem_new(&wm);
    d->m[CGB] = mem_new(&bm);
    conv_prim(&d->p[0], 0, n, blocked, NULL);
    conv_prim(&d->p[2], 2, n, blocked, d->p[0].pd);
    if (!d->p[0].p || !d->p[2].p)
        return;
    edge_make(&d->e[0], qmd(&d->p[0], dnnl_query_src_md, 0), &xm, d->m[CX], false);
    edge_make(&d->e[1], qmd(&d->p[0], dnnl_query_weights_md, 0), &wm, d->m[CW], false);
    edge_run(&d->e[1], d->m[CW], false);
    edge_make(&d->e[2], qmd(&d->p[0], dnnl_query_dst_md, 0), &ym, d->m[CY], true);
    edge_make(&d->e[3], qmd(&d->p[2], dnnl_query_src_md, 0), &xm, d->m[CX], false);
    edge_make(&d->e[4], qmd(&d->p[2], dnnl_query_diff_dst_md, 0), &ym, d->m[CGY], false);
    edge_make(&d->e[5], qmd(&d->p[2], dnnl_query_diff_weights_md, 0), &wm, d->m[CGW], true);
    d->fwd = conv_fwd;
    d->bwd = conv_bwd;
}

/* relu on n elements (the framework runs eltwise on the flat buffer).
 * Memories: 0 x, 1 y, 2 gy, 3 gx. */
static void relu_fwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->m[0]}, {DNNL_ARG_DST, d->m[1]}};
    run(&d->p[0], 2, a);
}

static void relu_bwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->m[0]}, {DNNL_ARG_DIFF_DST, d->m[2]},
                           {DNNL_ARG_DIFF_SRC, d->m[3]}};
    run(&d->p[1], 3, a);
}

static void relu_setup(direct_op *d, int64_t numel)
{
    dnnl_memory_desc_t md;
    md_tag(&md, 1, &numel, dnnl_a);
    for (int i = 0; i < 4; i++)
        d->m[i] = mem_new(&md);
    dnnl_eltwise_desc_t f, b;
    DN(dnnl_eltwise_forward_desc_init(&f, dnnl_forward_training, dnnl_eltwise_relu, &md, 0.f, 0.f));
    prim_make(&d->p[0], &f, NULL);
    DN(dnnl_eltwise_backward_desc_init(&b, dnnl_eltwise_relu, &md, &md, 0.f, 0.f));
    prim_make(&d->p[1], &b, d->p[0].pd);
    d->fwd = relu_fwd;
    d->bwd = relu_bwd;
}

/* pooling (N,32,26,26) -> 13x13, plain layouts. Memories: 0 x, 1 y, 2 ws, 3 gy, 4 gx. */
static void pool_fwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->m[0]}, {DNNL_ARG_DST, d->m[1]},
                           {DNNL_ARG_WORKSPACE, d->m[2]}};
    run(&d->p[0], d->m[2] ? 3 : 2, a);
}

static void pool_bwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_DST, d->m[3]}, {DNNL_ARG_DIFF_SRC, d->m[4]},
                           {DNNL_ARG_WORKSPACE, d->m[2]}};
    run(&d->p[1], d->m[2] ? 3 : 2, a);
}

static void pool_setup(direct_op *d, int64_t n, bool max)
{
    int64_t xd[] = {n, 32, 26, 26}, yd[] = {n, 32, 13, 13};
    dnnl_memory_desc_t xm, ym;
    md_tag(&xm, 4, xd, dnnl_nchw);
    md_tag(&ym, 4, yd, dnnl_nchw);
    dnnl_alg_kind_t alg = max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    dnnl_dims_t s = {2, 2}, k = {2, 2}, dil = {0, 0}, p0 = {0, 0};
    dnnl_pooling_v2_desc_t f, b;
    DN(dnnl_pooling_v2_forward_desc_init(&f, dnnl_forward_training, alg, &xm, &ym, s, k, dil, p0, p0));
    prim_make(&d->p[0], &f, NULL);
    DN(dnnl_pooling_v2_backward_desc_init(&b, alg, &xm, &ym, s, k, dil, p0, p0));
    prim_make(&d->p[1], &b, d->p[0].pd);
    d->m[0] = mem_new(&xm);
    d->m[1] = mem_new(&ym);
    const dnnl_memory_desc_t *ws = d->p[0].pd ? qmd(&d->p[0], dnnl_query_workspace_md, 0) : NULL;
    if (ws && dnnl_memory_desc_get_size(ws) > 0)
        d->m[2] = mem_new(ws);
    d->m[3] = mem_new(&ym);
    d->m[4] = mem_new(&xm);
    d->fwd = pool_fwd;
    d->bwd = pool_bwd;
}

/* dense (N, in) -> (N, out). Memories: 0 x, 1 w, 2 b, 3 y, 4 gy, 5 gx, 6 gw, 7 gb.
 * Edges: 0 weights for forward (reordered once), 1 weights for backward data,
 * 2 diff_weights. */
static void dense_pd(prim *p, int kind, int64_t n, int64_t in, int64_t out, bool blocked,
                     const_dnnl_primitive_desc_t hint)
{
    int64_t xd[] = {n, in}, wd[] = {out, in}, bd[] = {out}, yd[] = {n, out};
    dnnl_memory_desc_t xm, wm, bm, ym;
    md_tag(&xm, 2, xd, dnnl_nc);
    md_tag(&wm, 2, wd, blocked ? dnnl_format_tag_any : dnnl_oi);
    md_tag(&bm, 1, bd, dnnl_x);
    md_tag(&ym, 2, yd, dnnl_nc);
    dnnl_inner_product_desc_t ip;
    if (kind == 0)
        DN(dnnl_inner_product_forward_desc_init(&ip, dnnl_forward_training, &xm, &wm, &bm, &ym));
    else if (kind == 1)
        DN(dnnl_inner_product_backward_data_desc_init(&ip, &xm, &wm, &ym));
    else
        DN(dnnl_inner_product_backward_weights_desc_init(&ip, &xm, &wm, &bm, &ym));
    prim_make(p, &ip, hint);
}

static void dense_fwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, d->m[0]}, {DNNL_ARG_WEIGHTS, d->e[0].mem},
                           {DNNL_ARG_BIAS, d->m[2]}, {DNNL_ARG_DST, d->m[3]}};
    run(&d->p[0], 4, a);
}

static void dense_bwd(direct_op *d)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_DST, d->m[4]}, {DNNL_ARG_WEIGHTS, d->e[1].mem},
                           {DNNL_ARG_DIFF_SRC, d->m[5]}};
    run(&d->p[1], 3, a);
    dnnl_exec_arg_t b[] = {{DNNL_ARG_SRC, d->m[0]}, {DNNL_ARG_DIFF_DST, d->m[4]},
                           {DNNL_ARG_DIFF_WEIGHTS, d->e[2].mem}, {DNNL_ARG_DIFF_BIAS, d->m[7]}};
    run(&d->p[2], 4, b);
    edge_run(&d->e[2], d->m[6], true);
}

static void dense_setup(direct_op *d, int64_t n, int64_t in, int64_t out, bool blocked)
{
    int64_t xd[] = {n, in}, wd[] = {out, in}, bd[] = {out}, yd[] = {n, out};
    dnnl_memory_desc_t xm, wm, bm, ym;
    md_tag(&xm, 2, xd, dnnl_nc);
    md_tag(&wm, 2, wd, dnnl_oi);
    md_tag(&bm, 1, bd, dnnl_x);
    md_tag(&ym, 2, yd, dnnl_nc);
    dense_pd(&d->p[0], 0, n, in, out, blocked, NULL);
    dense_pd(&d->p[1], 1, n, in, out, blocked, d->p[0].pd);
    dense_pd(&d->p[2], 2, n, in, out, blocked, d->p[0].pd);
    if (!d->p[0].p || !d->p[1].p || !d->p[2].p)
        return;
    const dnnl_memory_desc_t *mds[] = {&xm, &wm, &bm, &ym, &ym, &xm, &wm, &bm};
    for (int i = 0; i < 8; i++)
        d->m[i] = mem_new(mds[i]);
    edge_make(&d->e[0], qmd(&d->p[0], dnnl_query_weights_md, 0), &wm, d->m[1], false);
    edge_run(&d->e[0], d->m[1], false);
    edge_make(&d->e[1], qmd(&d->p[1], dnnl_query_weights_md, 0), &wm, d->m[1], false);
    edge_run(&d->e[1], d->m[1], false);
    edge_make(&d->e[2], qmd(&d->p[2], dnnl_query_diff_weights_md, 0), &wm, d->m[6], true);
    d->fwd = dense_fwd;
    d->bwd = dense_bwd;
}

static double time_direct(direct_op *d, bool backward)
{
    void (*f)(direct_op *) = backward ? d->bwd : d->fwd;
    if (!f || !direct_ok)
        return -1;
    double t0 = now_ms();
    f(d);
    return direct_ok ? now_ms() - t0 : -1;
}

/* ================================================================ the framework */

typedef enum { OP_CONV, OP_RELU, OP_MAXPOOL, OP_AVGPOOL, OP_DENSE1, OP_DENSE2, OP_DROPOUT } op_kind;

typedef struct fw_op {
    op_kind kind;
    tg_tensor *x, *w, *b; /* owned */
} fw_op;

static tg_tensor *rnd_owned(int ndim, const int64_t *shape, uint64_t seed, bool grad)
{
    tg_rng r;
    tg_rng_seed(&r, seed);
    tg_tensor *t = tg_scope_keep(tg_rand_uniform(TG_F32, ndim, shape, -0.5, 0.5, &r));
    if (t && grad)
        tg_set_requires_grad(t, true);
    return t;
}

static void fw_setup(fw_op *o, op_kind kind, int64_t n)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    switch (kind) {
    case OP_CONV:
        o->x = rnd_owned(4, (const int64_t[]){n, 1, 28, 28}, 1, false);
        o->w = rnd_owned(4, (const int64_t[]){32, 1, 3, 3}, 2, true);
        o->b = rnd_owned(1, (const int64_t[]){32}, 3, true);
        break;
    case OP_RELU: case OP_MAXPOOL: case OP_AVGPOOL:
        o->x = rnd_owned(4, (const int64_t[]){n, 32, 26, 26}, 4, true);
        break;
    case OP_DENSE1:
        o->x = rnd_owned(2, (const int64_t[]){n, 5408}, 5, true);
        o->w = rnd_owned(2, (const int64_t[]){128, 5408}, 6, true);
        o->b = rnd_owned(1, (const int64_t[]){128}, 7, true);
        break;
    case OP_DENSE2:
        o->x = rnd_owned(2, (const int64_t[]){n, 128}, 8, true);
        o->w = rnd_owned(2, (const int64_t[]){10, 128}, 9, true);
        o->b = rnd_owned(1, (const int64_t[]){10}, 10, true);
        break;
    case OP_DROPOUT:
        o->x = rnd_owned(2, (const int64_t[]){n, 128}, 11, true);
        break;
    }
}

static void fw_free(fw_op *o)
{
    tg_release(o->x);
    tg_release(o->w);
    tg_release(o->b);
}

static tg_tensor *fw_forward(fw_op *o)
{
    switch (o->kind) {
    case OP_CONV: return tg_conv2d(o->x, o->w, o->b, NULL);
    case OP_RELU: return tg_relu(o->x);
    case OP_MAXPOOL: return tg_max_pool2d(o->x, NULL);
    case OP_AVGPOOL: return tg_avg_pool2d(o->x, NULL);
    case OP_DENSE1: case OP_DENSE2: return tg_dense(o->x, o->w, o->b);
    case OP_DROPOUT: return tg_dropout(o->x, 0.5, true, NULL);
    }
    return NULL;
}

static bool fw_failed;

static void fw_report_error(const char *what)
{
    if (!fw_failed)
        fprintf(stderr, "bench: framework: %s failed: %s\n", what, tg_last_error());
    fw_failed = true;
}

static void zero_grads(fw_op *o)
{
    tg_tensor *t[] = {o->x, o->w, o->b};
    for (int i = 0; i < 3; i++)
        if (t[i])
            tg_zero_grad(t[i]);
}

/* A fixed output gradient for the op's backward (new reference), NULL on failure. */
static tg_tensor *fw_grad_output(fw_op *o)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *y = fw_forward(o);
    tg_tensor *gy = y ? tg_scope_keep(tg_full(TG_F32, tg_tensor_ndim(y), tg_tensor_shape(y), 0.01))
                      : NULL;
    tg_scope_pop(s);
    if (!gy)
        fw_report_error("forward");
    return gy;
}

/* One run of the op's forward (gy NULL) or of tg_backward on its output with the
 * output gradient gy; ms, or -1. The step's scope is popped outside the timing. */
static double time_framework(fw_op *o, tg_tensor *gy)
{
    zero_grads(o);
    tg_scope *s = tg_scope_push();
    double t0 = now_ms();
    tg_tensor *y = fw_forward(o);
    double t1 = now_ms();
    if (!y)
        fw_report_error("forward");
    if (y && gy) {
        tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
        bo.grad_output = gy;
        t0 = now_ms();
        if (tg_backward_ex(y, &bo) != TG_OK)
            fw_report_error("backward");
        t1 = now_ms();
    }
    tg_scope_pop(s);
    return fw_failed ? -1 : t1 - t0;
}

/* Medians (and minima) of direct and framework runs, interleaved so that a busy
 * machine slows both alike. */
static void time_pair(direct_op *d, fw_op *o, bool backward, double *direct, double *fw,
                      double *direct_min, double *fw_min)
{
    double td[64], tf[64];
    tg_tensor *gy = backward ? fw_grad_output(o) : NULL;
    bool have_direct = (backward ? d->bwd : d->fwd) != NULL;
    for (int r = -3; r < reps; r++) {
        double a = have_direct ? time_direct(d, backward) : -1;
        double b = (!backward || gy) ? time_framework(o, gy) : -1;
        if (r >= 0) {
            td[r] = a;
            tf[r] = b;
        }
    }
    tg_release(gy);
    *direct = have_direct && direct_ok ? median(td, reps) : -1; /* sorts td */
    *fw = fw_failed ? -1 : median(tf, reps);
    *direct_min = *direct < 0 ? -1 : td[0];
    *fw_min = *fw < 0 ? -1 : tf[0];
}

/* What the engine spends adding the gradients into the op's leaves, which a
 * direct loop does not do: tg_backward through a free view (reshape) of each leaf
 * with its gradient already allocated, as in a training step after the first. */
static double time_accumulation(fw_op *o)
{
    tg_tensor *leaves[] = {o->x, o->w, o->b};
    double total = 0;
    for (int i = 0; i < 3; i++) {
        tg_tensor *l = leaves[i];
        if (!l || !tg_requires_grad(l))
            continue;
        double t[64];
        tg_tensor *g = tg_scope_keep(tg_full(TG_F32, tg_tensor_ndim(l), tg_tensor_shape(l), 0.01));
        tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
        bo.grad_output = g;
        for (int r = -2; r < reps; r++) {
            tg_scope *s = tg_scope_push();
            tg_tensor *v = tg_reshape(l, tg_tensor_ndim(l), tg_tensor_shape(l));
            double t0 = now_ms();
            if (!v || tg_backward_ex(v, &bo) != TG_OK)
                fw_report_error("backward through a reshape");
            double t1 = now_ms();
            tg_scope_pop(s);
            if (r >= 0)
                t[r] = t1 - t0;
        }
        tg_release(g);
        total += median(t, reps);
    }
    return total;
}

/* ================================================================ a training step */

/* Forward and backward of the tutorial network (no dropout, no optimizer update). */
static double time_step(int64_t n, uint64_t *allocs_per_step)
{
    tg_tensor *x = rnd_owned(4, (const int64_t[]){n, 1, 28, 28}, 20, false);
    tg_tensor *p[6] = {
        rnd_owned(4, (const int64_t[]){32, 1, 3, 3}, 21, true),
        rnd_owned(1, (const int64_t[]){32}, 22, true),
        rnd_owned(2, (const int64_t[]){128, 5408}, 23, true),
        rnd_owned(1, (const int64_t[]){128}, 24, true),
        rnd_owned(2, (const int64_t[]){10, 128}, 25, true),
        rnd_owned(1, (const int64_t[]){10}, 26, true),
    };
    int64_t *lab = malloc((size_t)n * sizeof *lab);
    for (int64_t i = 0; lab && i < n; i++)
        lab[i] = i % 10;
    tg_tensor *labels = lab ? tg_scope_keep(tg_from_data(TG_I64, 1, &n, lab)) : NULL;
    free(lab);
    double t[64];
    tg_memory_stats m0, m1;
    for (int r = -3; r < reps; r++) {
        for (int i = 0; i < 6; i++)
            tg_zero_grad(p[i]);
        tg_memory_stats_get(&m0);
        double t0 = now_ms();
        tg_scope *s = tg_scope_push();
        tg_tensor *h = tg_max_pool2d(tg_relu(tg_conv2d(x, p[0], p[1], NULL)), NULL);
        h = tg_relu(tg_dense(tg_flatten(h, 1, -1), p[2], p[3]));
        tg_tensor *loss = tg_cross_entropy(tg_dense(h, p[4], p[5]), labels);
        if (!loss || tg_backward(loss) != TG_OK)
            fw_report_error("training step");
        tg_scope_pop(s);
        double t1 = now_ms();
        tg_memory_stats_get(&m1);
        if (r >= 0)
            t[r] = t1 - t0;
    }
    *allocs_per_step = m1.allocs - m0.allocs;
    tg_release(x);
    tg_release(labels);
    for (int i = 0; i < 6; i++)
        tg_release(p[i]);
    return fw_failed ? -1 : median(t, reps);
}

/* ================================================================ main */

static void print_ms(double v)
{
    if (v < 0)
        printf(" %9s", "-");
    else
        printf(" %9.3f", v);
}

static void print_ratio(double fw, double direct)
{
    if (fw < 0 || direct <= 0)
        printf(" %7s", "-");
    else
        printf(" %7.3f", fw / direct);
}

static void bench_batch(int64_t n)
{
    static const struct { op_kind kind; const char *name; } ops[] = {
        {OP_CONV, "conv2d 1x28x28->32x26x26 3x3"},
        {OP_RELU, "relu 32x26x26"},
        {OP_MAXPOOL, "max_pool2d 2x2 -> 32x13x13"},
        {OP_AVGPOOL, "avg_pool2d 2x2 -> 32x13x13"},
        {OP_DENSE1, "dense 5408->128"},
        {OP_DENSE2, "dense 128->10"},
        {OP_DROPOUT, "dropout 0.5 on 128"},
    };
    printf("\nbatch %lld: median ms of %d runs. direct = the same oneDNN primitives and\n"
           "reorders on preallocated memory; fw = libtensor; fw/dir = ratio of medians,\n"
           "(min) = ratio of the fastest runs (steadier on a busy machine); accum = the\n"
           "engine adding gradients into the op's leaves (part of fw), excl. = fw/dir\n"
           "without it\n", (long long)n, reps);
    printf("%-30s %-4s %9s %9s %7s %7s %9s %7s\n", "op", "pass", "direct", "fw", "fw/dir",
           "(min)", "accum", "excl.");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        direct_op d;
        memset(&d, 0, sizeof d);
        switch (ops[i].kind) {
        case OP_CONV: conv_setup(&d, n, fw_blocked); break;
        case OP_RELU: relu_setup(&d, n * 32 * 26 * 26); break;
        case OP_MAXPOOL: pool_setup(&d, n, true); break;
        case OP_AVGPOOL: pool_setup(&d, n, false); break;
        case OP_DENSE1: dense_setup(&d, n, 5408, 128, false); break;
        case OP_DENSE2: dense_setup(&d, n, 128, 10, false); break;
        case OP_DROPOUT: break; /* no oneDNN primitive */
        }
        fw_op o;
        fw_setup(&o, ops[i].kind, n);
        for (int pass = 0; pass < 2; pass++) {
            double dt, ft, dmin, fmin;
            time_pair(&d, &o, pass == 1, &dt, &ft, &dmin, &fmin);
            printf("%-30s %-4s", ops[i].name, pass ? "bwd" : "fwd");
            print_ms(dt);
            print_ms(ft);
            print_ratio(ft, dt);
            print_ratio(fmin, dmin);
            if (pass == 1) {
                double acc = time_accumulation(&o);
                print_ms(acc);
                print_ratio(ft >= 0 ? ft - acc : -1, dt);
            }
            printf("\n");
        }
        fw_free(&o);
        direct_free(&d);
        fw_failed = false;
        direct_ok = true;
    }

    printf("layout policy, direct oneDNN (ms, with the reorders the plain API needs):\n");
    printf("%-30s %-4s %9s %9s\n", "op", "pass", "plain", "blocked");
    for (int k = 0; k < 2; k++) {
        for (int pass = 0; pass < 2; pass++) {
            double v[2];
            for (int blocked = 0; blocked < 2; blocked++) {
                direct_op d;
                memset(&d, 0, sizeof d);
                if (k == 0)
                    conv_setup(&d, n, blocked);
                else
                    dense_setup(&d, n, 5408, 128, blocked);
                double t[64];
                for (int r = -3; r < reps; r++) {
                    double x = time_direct(&d, pass == 1);
                    if (r >= 0)
                        t[r] = x;
                }
                v[blocked] = direct_ok ? median(t, reps) : -1;
                direct_free(&d);
                direct_ok = true;
            }
            printf("%-30s %-4s", k == 0 ? "conv2d 1x28x28->32x26x26 3x3" : "dense 5408->128",
                   pass ? "bwd" : "fwd");
            print_ms(v[0]);
            print_ms(v[1]);
            printf("\n");
        }
    }

    uint64_t allocs = 0;
    double st = time_step(n, &allocs);
    fw_failed = false;
    printf("training step (forward + backward, no update), libtensor:");
    print_ms(st);
    if (st > 0)
        printf(" ms; %llu storage allocations per step; an epoch of 60000 would take %.2f s\n",
               (unsigned long long)allocs, st * (double)((60000 + n - 1) / n) / 1e3);
    else
        printf("\n");
}

int main(int argc, char **argv)
{
    int64_t batches[8];
    int nb = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc && nb < 8) {
            batches[nb++] = atoll(argv[++i]);
        } else {
            printf("usage: %s [--reps N] [--batch N]...\n", argv[0]);
            return 0;
        }
    }
    if (reps < 5)
        reps = 5;
    if (reps > 64)
        reps = 64;
    if (nb == 0) {
        batches[nb++] = 32;
        batches[nb++] = 128;
    }

    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const dnnl_version_t *v = dnnl_version();
    const char *layout = getenv("TG_DNNL_LAYOUT");
    fw_blocked = !(layout && strcmp(layout, "plain") == 0);
    printf("libtensor %s bench: %s, %d threads, oneDNN %d.%d.%d (%s), framework layouts: %s\n",
           tg_version(), cpu, tg_get_num_threads(), v->major, v->minor, v->patch,
           v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime",
           fw_blocked ? "conv blocked where it pays" : "plain");

    if (!DN(dnnl_engine_create(&eng, dnnl_cpu, 0)) ||
        !DN(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags)) ||
        !DN(dnnl_primitive_attr_create(&attr)) ||
        !DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) {
        printf("bench: oneDNN did not start; nothing measured\n");
        return 0;
    }
    for (int i = 0; i < nb; i++)
        if (batches[i] > 0)
            bench_batch(batches[i]);
    tg_backend_stats st;
    tg_backend_stats_get(&st);
    printf("\nprimitive cache: %llu hits, %llu misses, %llu primitives created, %llu weight "
           "reorders\n", (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
           (unsigned long long)st.primitives_created, (unsigned long long)st.weight_reorders);
    tg_backend_cache_clear();
    dnnl_primitive_attr_destroy(attr);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
