/* ops/binary.c -- elementwise binary ops with numpy broadcasting.
 *
 *   add: y = a + b      da = g                   db = g
 *   sub: y = a - b      da = g                   db = -g
 *   mul: y = a * b      da = g * b               db = g * a
 *   div: y = a / b      da = g / b               db = -g * a / b^2
 *   pow: y = a ** b     da = g * b * a^(b - 1)   db = g * y * log(a)   (needs a > 0)
 *   maximum: y = max(a, b)   da = g [a > b] + g/2 [a == b]   db = g [b > a] + g/2 [a == b]
 *   minimum: y = min(a, b)   da = g [a < b] + g/2 [a == b]   db = g [b < a] + g/2 [a == b]
 *
 * maximum and minimum split a tie evenly (PyTorch's rule): the two gradients
 * always sum to g, and tg_maximum(x, x) has gradient g like x itself.
 *
 * Each gradient is then summed over the dims that broadcasting expanded
 * (tg_sum_to_shape). f32 on the AUTO backend runs add/sub/mul/div/maximum/minimum
 * on oneDNN's binary primitive; everything else on the strided reference kernel
 * below. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/dnnl_impl.h"

typedef enum bin_kind { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_MAX, BIN_MIN } bin_kind;

static const char *const bin_who[] = {"tg_add", "tg_sub",     "tg_mul",    "tg_div",
                                      "tg_pow", "tg_maximum", "tg_minimum"};

static inline double apply(bin_kind k, double a, double b)
{
    switch (k) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_POW: return pow(a, b);
    case BIN_MAX: return a > b ? a : b;
    case BIN_MIN: return a < b ? a : b;
    }
    return 0;
}

/* Iterates the output index space; a and b are read through their broadcast
 * strides, so any view works without a copy. */
#define BIN_REF_LOOP(T)                                                              \
    do {                                                                             \
        const T *pa = tg_storage_data(a->storage), *pb = tg_storage_data(b->storage);                      \
        T *py = tg_tensor_ptr(y);                                                    \
        int64_t i = 0;                                                               \
        do py[i++] = (T)apply(k, pa[off[0]], pb[off[1]]);                            \
        while (tg_index_next(y->ndim, y->shape, idx, 2, off, st));                   \
    } while (0)

static void binary_ref(bin_kind k, const tg_tensor *a, const tg_tensor *b, tg_tensor *y)
{
    if (tg_tensor_numel(y) == 0)
        return;
    int64_t st[2][TG_MAX_DIMS], off[2] = {a->offset, b->offset}, idx[TG_MAX_DIMS] = {0};
    tg_broadcast_strides(a, y->ndim, y->shape, st[0]);
    tg_broadcast_strides(b, y->ndim, y->shape, st[1]);
    if (y->dtype == TG_F32)
        BIN_REF_LOOP(float);
    else
        BIN_REF_LOOP(double);
}

/* ---------------------------------------------------------------- oneDNN */

static float apply_f32(bin_kind alg, float a, float b)
{
    switch (alg) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_MAX: return a > b ? a : b;
    case BIN_MIN: return a < b ? a : b;
    case BIN_POW: break; /* never on oneDNN */
    }
    return 0.0f;
}

/* c = a (op) b on oneDNN's binary primitive, which reads and writes the tensors
 * with their own strides (no layout change); cached under the algorithm and the
 * three layouts. */
static tg_status binary_prim(dnnl_alg_kind_t alg, const tg_tensor *a, const tg_tensor *b,
                             tg_tensor *c)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t ma, mb, mc;
    tg_dnnl_md_of(&ma, a);
    tg_dnnl_md_of(&mb, b);
    tg_dnnl_md_of(&mc, c);
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_BINARY);
    tg_dnnl_key_add(&k, alg);
    tg_dnnl_key_add_layout(&k, a);
    tg_dnnl_key_add_layout(&k, b);
    tg_dnnl_key_add_layout(&k, c);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        dnnl_binary_desc_t d;
        dnnl_status_t st = dnnl_binary_desc_init(&d, alg, &ma, &mb, &mc);
        if (st != dnnl_success)
            tg_dnnl_failed("dnnl_binary_desc_init", st);
        else
            e = tg_dnnl_create(&k, &d, NULL);
    }
    if (e && ((rc = tg_tensor_settle(a)) != TG_OK || (rc = tg_tensor_settle(b)) != TG_OK ||
              (rc = tg_tensor_settle(c)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        const tg_dnnl_mem args[] = {{DNNL_ARG_SRC_0, &ma, tg_tensor_ptr(a)},
                                    {DNNL_ARG_SRC_1, &mb, tg_tensor_ptr(b)},
                                    {DNNL_ARG_DST, &mc, tg_tensor_ptr(c)}};
        rc = tg_dnnl_exec(e, args, 3);
    }
    tg_dnnl_unlock();
    return rc;
}

/* oneDNN's binary broadcasts src1 only; when a itself is broadcast and the op
 * cannot be swapped, a strided loop does it. */
static tg_status binary_loop(bin_kind alg, const tg_tensor *a, const tg_tensor *b,
                             tg_tensor *c)
{
    int nd = c->ndim;
    int64_t sa[TG_MAX_DIMS], sb[TG_MAX_DIMS];
    tg_broadcast_strides(a, nd, c->shape, sa);
    tg_broadcast_strides(b, nd, c->shape, sb);
    tg_status rc = tg_tensor_settle(a);
    if (rc != TG_OK || (rc = tg_tensor_settle(b)) != TG_OK || (rc = tg_tensor_settle(c)) != TG_OK)
        return rc;
    const float *pa = tg_tensor_ptr(a), *pb = tg_tensor_ptr(b);
    float *pc = tg_tensor_ptr(c);
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
        pc[i] = apply_f32(alg, pa[oa], pb[ob]);
    }
    return TG_OK;
}

/* c = a (op) b in f32 with broadcasting already resolved: a, b, c have the same
 * ndim and each extent of a and b equals c's or is 1. */
static tg_status binary_f32_run(bin_kind alg, const tg_tensor *a, const tg_tensor *b,
                                tg_tensor *c)
{
    if (!a || !b || !c)
        return tg_null_arg_here(!a ? "a" : !b ? "b" : "c");
    if (a->ndim != c->ndim || b->ndim != c->ndim)
        return tg_error_here(TG_ERR_SHAPE,
                             "a, b and c must have the same rank (%d, %d, %d)", a->ndim,
                             b->ndim, c->ndim);
    for (int i = 0; i < c->ndim; i++) {
        if ((a->shape[i] != c->shape[i] && a->shape[i] != 1) ||
            (b->shape[i] != c->shape[i] && b->shape[i] != 1)) {
            char sa[96], sb[96], sc[96];
            return tg_error_here(TG_ERR_SHAPE, "shapes %s and %s do not broadcast to %s",
                                 tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
                                 tg_shape_str(sb, sizeof sb, b->ndim, b->shape),
                                 tg_shape_str(sc, sizeof sc, c->ndim, c->shape));
        }
    }
    if (tg_tensor_numel(c) == 0)
        return TG_OK;
    dnnl_alg_kind_t da;
    switch (alg) {
    case BIN_ADD: da = dnnl_binary_add; break;
    case BIN_SUB: da = dnnl_binary_sub; break;
    case BIN_MUL: da = dnnl_binary_mul; break;
    case BIN_DIV: da = dnnl_binary_div; break;
    case BIN_MAX: da = dnnl_binary_max; break;
    case BIN_MIN: da = dnnl_binary_min; break;
    default: return tg_error_here(TG_ERR_ARG, "unknown algorithm %d", (int)alg);
    }
    const tg_tensor *s0 = a, *s1 = b;
    if (!tg_tensor_same_shape(a, c)) {
        if ((alg == BIN_ADD || alg == BIN_MUL || alg == BIN_MAX || alg == BIN_MIN) &&
            tg_tensor_same_shape(b, c)) {
            s0 = b;
            s1 = a;
        } else {
            return binary_loop(alg, a, b, c);
        }
    }
    return binary_prim(da, s0, s1, c);
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status binary_f32(bin_kind alg, const tg_tensor *a, const tg_tensor *b,
                            tg_tensor *c)
{
    const char *prev = tg_error_enter("tg_dnnl_binary");
    tg_status rc = binary_f32_run(alg, a, b, c);
    tg_error_leave(prev);
    return rc;
}

/* A contiguous view of x with ndim dims (leading 1s added): oneDNN's binary wants
 * equal ranks. 0-d tensors become 1-D [1] since oneDNN has no 0-d memory. */
static tg_tensor *ranked_view(tg_tensor *xc, int ndim)
{
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    int nd = ndim > 0 ? ndim : 1;
    for (int i = 0; i < nd; i++) {
        int ix = i - (nd - xc->ndim);
        shape[i] = ix >= 0 ? xc->shape[ix] : 1;
    }
    tg_contiguous_strides(nd, shape, strides);
    return tg_tensor_view_owned(xc, nd, shape, strides, xc->offset);
}

static tg_status binary_dnnl(bin_kind k, tg_tensor *a, tg_tensor *b, tg_tensor *y)
{
    if (tg_tensor_numel(y) == 0)
        return TG_OK;
    tg_status st = TG_ERR_NOMEM;
    tg_tensor *ac = tg_contiguous_owned(a), *bc = tg_contiguous_owned(b);
    tg_tensor *av = NULL, *bv = NULL, *yv = NULL;
    if (!ac || !bc)
        goto done;
    av = ranked_view(ac, y->ndim);
    bv = ranked_view(bc, y->ndim);
    yv = ranked_view(y, y->ndim);
    if (!av || !bv || !yv)
        goto done;
    st = binary_f32(k, av, bv, yv);
done:
    tg_release(av);
    tg_release(bv);
    tg_release(yv);
    tg_release(ac);
    tg_release(bc);
    return st;
}

static const tg_op_vtable *bin_vtable(bin_kind k);

static tg_tensor *binary(bin_kind k, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    tg_op_call c;
    if (!tg_op_begin(&c, bin_vtable(k), bin_who[k], in, 2, "a b",
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    if (tg_broadcast_shape(a, b, &ndim, shape) != TG_OK)
        return tg_op_fail(&c);
    tg_tensor *y = tg_op_output(&c, a->dtype, ndim, shape);
    if (!y)
        return tg_op_fail(&c);
    if (k != BIN_POW && tg_use_dnnl(a)) {
        if (binary_dnnl(k, a, b, y) != TG_OK)
            return tg_op_fail(&c);
    } else if (tg_tensor_settle(a) != TG_OK || tg_tensor_settle(b) != TG_OK) {
        return tg_op_fail(&c); /* binary_ref reads the storages plain */
    } else {
        binary_ref(k, a, b, y);
    }
    return tg_op_end(&c);
}

tg_tensor *tg_add(tg_tensor *a, tg_tensor *b) { return binary(BIN_ADD, a, b); }
tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b) { return binary(BIN_SUB, a, b); }
tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b) { return binary(BIN_MUL, a, b); }
tg_tensor *tg_div(tg_tensor *a, tg_tensor *b) { return binary(BIN_DIV, a, b); }
tg_tensor *tg_pow(tg_tensor *a, tg_tensor *b) { return binary(BIN_POW, a, b); }
tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b) { return binary(BIN_MAX, a, b); }
tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b) { return binary(BIN_MIN, a, b); }

/* ---------------------------------------------------------------- backward */

/* Sets *slot to g (the full-shape gradient) summed down to input t's shape. */
static tg_status reduce_into(tg_tensor **slot, tg_tensor *g, const tg_tensor *t)
{
    if (!g)
        return tg_last_status() != TG_OK ? tg_last_status() : TG_ERR_NOMEM;
    *slot = tg_sum_to_shape(g, t->ndim, t->shape);
    return *slot ? TG_OK : tg_last_status();
}

static tg_status add_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (tg_node_needs_grad(node, 0) && reduce_into(&gin[0], g, a) != TG_OK)
        return tg_last_status();
    if (tg_node_needs_grad(node, 1) && reduce_into(&gin[1], g, b) != TG_OK)
        return tg_last_status();
    return TG_OK;
}

static tg_status sub_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (tg_node_needs_grad(node, 0) && reduce_into(&gin[0], g, a) != TG_OK)
        return tg_last_status();
    if (tg_node_needs_grad(node, 1) && reduce_into(&gin[1], tg_neg(g), b) != TG_OK)
        return tg_last_status();
    return TG_OK;
}

static tg_status mul_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (tg_node_needs_grad(node, 0) && reduce_into(&gin[0], tg_mul(g, b), a) != TG_OK)
        return tg_last_status();
    if (tg_node_needs_grad(node, 1) && reduce_into(&gin[1], tg_mul(g, a), b) != TG_OK)
        return tg_last_status();
    return TG_OK;
}

static tg_status div_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (tg_node_needs_grad(node, 0) && reduce_into(&gin[0], tg_div(g, b), a) != TG_OK)
        return tg_last_status();
    if (tg_node_needs_grad(node, 1)) {
        tg_tensor *t = tg_neg(tg_div(tg_mul(g, a), tg_mul(b, b)));
        if (reduce_into(&gin[1], t, b) != TG_OK)
            return tg_last_status();
    }
    return TG_OK;
}

static tg_status pow_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (tg_node_needs_grad(node, 0)) {
        tg_tensor *t = tg_mul(g, tg_mul(b, tg_pow(a, tg_add_scalar(b, -1.0))));
        if (reduce_into(&gin[0], t, a) != TG_OK)
            return tg_last_status();
    }
    if (tg_node_needs_grad(node, 1)) {
        tg_tensor *t = tg_mul(g, tg_mul(tg_pow(a, b), tg_log(a)));
        if (reduce_into(&gin[1], t, b) != TG_OK)
            return tg_last_status();
    }
    return TG_OK;
}

/* The share of g that input `which` (0: a, 1: b) of maximum/minimum receives:
 * 1 where it wins, 1/2 on a tie, 0 where it loses. */
static inline double maxmin_share(bool is_max, int which, double a, double b)
{
    if (a == b)
        return 0.5;
    bool a_wins = is_max ? a > b : a < b;
    return (which == 0) == a_wins ? 1.0 : 0.0;
}

#define MAXMIN_LOOP(T)                                                               \
    do {                                                                             \
        const T *pa = tg_tensor_ptr(a), *pb = tg_tensor_ptr(b);                      \
        const T *pg = tg_tensor_ptr(gc);                                             \
        T *po = tg_tensor_ptr(full);                                                 \
        int64_t i = 0;                                                               \
        do {                                                                         \
            po[i] = (T)((double)pg[i] * maxmin_share(is_max, which, pa[off[0]], pb[off[1]])); \
            i++;                                                                     \
        } while (tg_index_next(gc->ndim, gc->shape, idx, 2, off, st));               \
    } while (0)

/* g (the output's shape) masked by input which's share, then summed to its shape.
 * a and b are read through their broadcast strides (plain: the caller settles). */
static tg_tensor *maxmin_grad(bool is_max, int which, tg_tensor *a, tg_tensor *b, tg_tensor *g)
{
    tg_tensor *gc = tg_contiguous_owned(g);
    tg_tensor *full = gc ? tg_tensor_new_owned(g->dtype, g->ndim, g->shape) : NULL;
    if (!full) {
        tg_release(gc);
        return NULL;
    }
    if (tg_tensor_numel(gc) > 0) {
        int64_t st[2][TG_MAX_DIMS], off[2] = {0, 0}, idx[TG_MAX_DIMS] = {0};
        tg_broadcast_strides(a, gc->ndim, gc->shape, st[0]);
        tg_broadcast_strides(b, gc->ndim, gc->shape, st[1]);
        if (g->dtype == TG_F32)
            MAXMIN_LOOP(float);
        else
            MAXMIN_LOOP(double);
    }
    tg_release(gc);
    return tg_scoped(full);
}

static tg_status maxmin_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    bool is_max = node->op == &tg_op_maximum_vtable;
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    tg_tensor *ac = tg_contiguous_owned(a), *bc = tg_contiguous_owned(b);
    tg_status rc = TG_OK;
    if (!ac || !bc)
        rc = tg_last_status();
    for (int i = 0; i < 2 && rc == TG_OK; i++)
        if (tg_node_needs_grad(node, i))
            rc = reduce_into(&gin[i], maxmin_grad(is_max, i, ac, bc, g), i ? b : a);
    tg_release(ac);
    tg_release(bc);
    return rc;
}

/* DOT detail: the operand shapes when broadcasting was involved, "[2, 3] [3]". */
static void bin_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (n == 0)
        return;
    buf[0] = '\0';
    if (tg_tensor_same_shape(a, b))
        return;
    char sa[96], sb[96];
    snprintf(buf, n, "%s %s", tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
             tg_shape_str(sb, sizeof sb, b->ndim, b->shape));
}

const tg_op_vtable tg_op_add_vtable = {"add", add_backward, NULL, bin_describe, 0,
                                        TG_OP_ALL_INPUTS};
const tg_op_vtable tg_op_sub_vtable = {"sub", sub_backward, NULL, bin_describe, 0,
                                        TG_OP_ALL_INPUTS};
const tg_op_vtable tg_op_mul_vtable = {"mul", mul_backward, NULL, bin_describe, 0, 0};
const tg_op_vtable tg_op_div_vtable = {"div", div_backward, NULL, bin_describe, 0, 0};
/* the base must stay positive for the gradient with respect to the exponent */
const tg_op_vtable tg_op_pow_vtable = {"pow", pow_backward, NULL, bin_describe,
                                       TG_GC_POSITIVE, 0};

/* the derivative is undefined at ties: the checks draw distinct values */
const tg_op_vtable tg_op_maximum_vtable = {"maximum", maxmin_backward, NULL, bin_describe,
                                           TG_GC_DISTINCT, 0};
const tg_op_vtable tg_op_minimum_vtable = {"minimum", maxmin_backward, NULL, bin_describe,
                                           TG_GC_DISTINCT, 0};

static const tg_op_vtable *bin_vtable(bin_kind k)
{
    static const tg_op_vtable *const vt[] = {&tg_op_add_vtable,     &tg_op_sub_vtable,
                                             &tg_op_mul_vtable,     &tg_op_div_vtable,
                                             &tg_op_pow_vtable,     &tg_op_maximum_vtable,
                                             &tg_op_minimum_vtable};
    return vt[k];
}
