/* ops/matmul.c -- matrix product with numpy's (and torch.matmul's) rules.
 *
 *   y[..., i, j] = sum_p a[..., i, p] b[..., p, j]
 *   da = g @ b^T   summed down to a's batch dims     (..., m, k)
 *   db = a^T @ g   summed down to b's batch dims     (..., k, n)
 *
 * Batch dims (all but the last two) broadcast as in tg_add: (2, 1, m, k) @
 * (3, k, n) is (2, 3, m, n). A 1-D a (k) is a row (1, k) and a 1-D b (k) a column
 * (k, 1), their extra dim dropped from the result: vector @ vector is 0-d,
 * matrix @ vector (m). Equal batch dims and a b without batch (2-D, or batch
 * extents all 1) multiply in place; other broadcasts read a stride-0 view of
 * the operand, which the oneDNN path copies first.
 *
 * f32 on the AUTO backend runs oneDNN's matmul; transposed views (unit stride in
 * one of the last two dims) go to it without a copy, which is what backward feeds
 * it. The reference kernel accumulates in double and reads any strides. */
#include <stdio.h>
#include <string.h>

#include "ops/dnnl_impl.h"

/* Numel of the batch dims (all but the last two). */
static int64_t batch_numel(const tg_tensor *t)
{
    return tg_shape_numel(t->ndim - 2, t->shape);
}

/* The operands as matrices: a 1-D a as (1, k), a 1-D b as (k, 1) (views). */
typedef struct mm_shapes {
    int nd;                      /* of the full product: batch dims + 2 */
    int64_t full[TG_MAX_DIMS];   /* (batch..., m, n) */
    int out_nd;                  /* of the result: 1-D operands' dims dropped */
    int64_t out[TG_MAX_DIMS];
    bool b_shared;               /* b's batch extents are all 1: one matrix */
} mm_shapes;

/* Shape of t seen as a matrix operand (which a 1-D t becomes), into shape. */
static int operand_shape(const tg_tensor *t, bool is_b, int64_t *shape)
{
    if (t->ndim == 1) {
        shape[0] = is_b ? t->shape[0] : 1;
        shape[1] = is_b ? 1 : t->shape[0];
        return 2;
    }
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return t->ndim;
}

static tg_status check_shapes(const tg_tensor *a, const tg_tensor *b, mm_shapes *ms)
{
    char sa[128], sb[128];
    tg_shape_str(sa, sizeof sa, a->ndim, a->shape);
    tg_shape_str(sb, sizeof sb, b->ndim, b->shape);
    if (a->ndim < 1 || b->ndim < 1)
        return tg_error_here(TG_ERR_SHAPE, "operands must be at least 1-D, got %s @ %s",
                             sa, sb);
    int64_t as[TG_MAX_DIMS], bs[TG_MAX_DIMS];
    int an = operand_shape(a, false, as), bn = operand_shape(b, true, bs);
    if (as[an - 1] != bs[bn - 2])
        return tg_error_here(TG_ERR_SHAPE, "inner dims differ in %s @ %s", sa, sb);
    /* batch dims broadcast, aligned at the right */
    int nb = (an > bn ? an : bn) - 2;
    ms->b_shared = true;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (an - 2)), ib = i - (nb - (bn - 2));
        int64_t ea = ia >= 0 ? as[ia] : 1, eb = ib >= 0 ? bs[ib] : 1;
        if (ea != eb && ea != 1 && eb != 1)
            return tg_error_here(TG_ERR_SHAPE,
                                 "batch dims of %s @ %s cannot be broadcast (dim %d: %lld "
                                 "and %lld)", sa, sb, i, (long long)ea, (long long)eb);
        ms->full[i] = ea == 1 ? eb : ea;
        ms->b_shared &= eb == 1;
    }
    ms->nd = nb + 2;
    ms->full[nb] = as[an - 2];
    ms->full[nb + 1] = bs[bn - 1];
    ms->out_nd = 0;
    for (int i = 0; i < ms->nd; i++)
        if (!(i == nb && a->ndim == 1) && !(i == nb + 1 && b->ndim == 1))
            ms->out[ms->out_nd++] = ms->full[i];
    return TG_OK;
}

/* New reference: t as the matrix operand of a product of full shape ms (a 1-D t
 * as a row or column; batch dims broadcast with stride 0). A shared b stays a
 * single 2-D matrix. */
static tg_tensor *operand_view(tg_tensor *t, bool is_b, const mm_shapes *ms)
{
    int64_t shape[TG_MAX_DIMS], strides[TG_MAX_DIMS];
    int n = operand_shape(t, is_b, shape);
    int64_t st2[2];
    if (t->ndim == 1) {
        st2[0] = is_b ? t->strides[0] : 0;
        st2[1] = is_b ? 0 : t->strides[0];
    } else {
        st2[0] = t->strides[t->ndim - 2];
        st2[1] = t->strides[t->ndim - 1];
    }
    if (is_b && ms->b_shared) {
        int64_t s2[2] = {st2[0], st2[1]};
        return tg_tensor_view_owned(t, 2, shape + n - 2, s2, t->offset);
    }
    int nb = ms->nd - 2, tb = n - 2;
    int64_t vshape[TG_MAX_DIMS];
    for (int i = 0; i < nb; i++) {
        int it = i - (nb - tb);
        vshape[i] = ms->full[i];
        strides[i] = it < 0 || shape[it] == 1 ? 0 : t->strides[it];
    }
    vshape[nb] = shape[n - 2];
    vshape[nb + 1] = shape[n - 1];
    strides[nb] = st2[0];
    strides[nb + 1] = st2[1];
    return tg_tensor_view_owned(t, ms->nd, vshape, strides, t->offset);
}

/* True when t's batch dims step by whole r*c matrices, so the batch can be
 * flattened into one dim without a copy. */
static bool batch_compact(const tg_tensor *t)
{
    int64_t expect = t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    for (int d = t->ndim - 3; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

/* New reference: t as the 2-D (r, c) or 3-D (batch, r, c) operand oneDNN takes.
 * Contiguous tensors and transposed ones (column-major matrices) are viewed in
 * place; anything else is copied first. */
static tg_tensor *dnnl_operand(tg_tensor *t, bool three_d)
{
    int nd = t->ndim;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t shape[3] = {batch_numel(t), r, c}, strides[3] = {r * c, c, 1};
    tg_tensor *base = NULL;
    if (tg_tensor_is_contiguous(t)) {
        base = tg_retain(t);
    } else if (r > 1 && c > 1 && t->strides[nd - 2] == 1 && t->strides[nd - 1] == r &&
               batch_compact(t)) {
        base = tg_retain(t);
        strides[1] = 1;
        strides[2] = r;
    } else if (!(base = tg_contiguous_owned(t))) {
        return NULL;
    }
    tg_tensor *v = three_d ? tg_tensor_view_owned(base, 3, shape, strides, base->offset)
                           : tg_tensor_view_owned(base, 2, shape + 1, strides + 1,
                                                  base->offset);
    tg_release(base);
    return v;
}

/* c = a @ b on oneDNN's matmul primitive, which reads and writes the tensors with
 * their own strides; cached under the three layouts. */
static tg_status matmul_prim(const tg_tensor *a, const tg_tensor *b, tg_tensor *c)
{
    if (!tg_dnnl_engine())
        return tg_last_status();
    dnnl_memory_desc_t ma, mb, mc;
    tg_dnnl_md_of(&ma, a);
    tg_dnnl_md_of(&mb, b);
    tg_dnnl_md_of(&mc, c);
    tg_dnnl_key k;
    tg_dnnl_key_init(&k, TG_DNNL_MATMUL);
    tg_dnnl_key_add(&k, dnnl_alg_kind_undef);
    tg_dnnl_key_add_layout(&k, a);
    tg_dnnl_key_add_layout(&k, b);
    tg_dnnl_key_add_layout(&k, c);
    tg_dnnl_lock();
    tg_status rc = TG_ERR_BACKEND;
    tg_dnnl_entry *e = tg_dnnl_find(&k);
    if (!e) {
        dnnl_matmul_desc_t d;
        dnnl_status_t st = dnnl_matmul_desc_init(&d, &ma, &mb, NULL, &mc);
        if (st != dnnl_success)
            tg_dnnl_failed("dnnl_matmul_desc_init", st);
        else
            e = tg_dnnl_create(&k, &d, NULL);
    }
    if (e && ((rc = tg_tensor_settle(a)) != TG_OK || (rc = tg_tensor_settle(b)) != TG_OK ||
              (rc = tg_tensor_settle(c)) != TG_OK))
        e = NULL; /* a pending layout failed to settle: rc says why */
    if (e) {
        const tg_dnnl_mem args[] = {{DNNL_ARG_SRC, &ma, tg_tensor_ptr(a)},
                                    {DNNL_ARG_WEIGHTS, &mb, tg_tensor_ptr(b)},
                                    {DNNL_ARG_DST, &mc, tg_tensor_ptr(c)}};
        rc = tg_dnnl_exec(e, args, 3);
    }
    tg_dnnl_unlock();
    return rc;
}

/* c = a @ b in f32: 2-D (m,k)@(k,n), or 3-D (B,m,k)@(B,k,n) / (B,m,k)@(1,k,n).
 * Transposes are expressed by the strides of a and b (views with unit stride in
 * one of their last two dims). */
static tg_status matmul_f32_run(const tg_tensor *a, const tg_tensor *b, tg_tensor *c)
{
    if (!a || !b || !c)
        return tg_null_arg_here(!a ? "a" : !b ? "b" : "c");
    int nd = c->ndim;
    char sa[96], sb[96], sc[96];
    bool ok = (nd == 2 || nd == 3) && a->ndim == nd && b->ndim == nd &&
              a->shape[nd - 2] == c->shape[nd - 2] && b->shape[nd - 1] == c->shape[nd - 1] &&
              a->shape[nd - 1] == b->shape[nd - 2];
    if (ok && nd == 3)
        ok = (a->shape[0] == c->shape[0] || a->shape[0] == 1) &&
             (b->shape[0] == c->shape[0] || b->shape[0] == 1);
    if (!ok)
        return tg_error_here(TG_ERR_SHAPE, "cannot multiply %s by %s into %s",
                             tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
                             tg_shape_str(sb, sizeof sb, b->ndim, b->shape),
                             tg_shape_str(sc, sizeof sc, c->ndim, c->shape));
    if (tg_tensor_numel(c) == 0)
        return TG_OK;
    if (a->shape[nd - 1] == 0) /* empty inner dimension: the product is zero */
        return tg_tensor_fill(c, 0.0);
    return matmul_prim(a, b, c);
}

/* The kernel names itself in its errors (and the glue's): the error context. */
static tg_status matmul_f32(const tg_tensor *a, const tg_tensor *b, tg_tensor *c)
{
    const char *prev = tg_error_enter("tg_dnnl_matmul");
    tg_status rc = matmul_f32_run(a, b, c);
    tg_error_leave(prev);
    return rc;
}

static tg_status matmul_dnnl(tg_tensor *a, tg_tensor *b, tg_tensor *y)
{
    bool three_d = a->ndim > 2;
    tg_tensor *av = dnnl_operand(a, three_d), *bv = dnnl_operand(b, three_d);
    tg_tensor *yv = dnnl_operand(y, three_d);
    tg_status st = av && bv && yv ? matmul_f32(av, bv, yv) : tg_last_status();
    tg_release(av);
    tg_release(bv);
    tg_release(yv);
    return st;
}

#define MM_LOOP(T)                                                                   \
    do {                                                                             \
        const T *pa = tg_storage_data(a->storage), *pb = tg_storage_data(b->storage);                      \
        T *py = tg_tensor_ptr(y);                                                    \
        int64_t yi = 0;                                                              \
        for (int64_t bi = 0; bi < nbatch; bi++) {                                    \
            for (int64_t i = 0; i < m; i++)                                          \
                for (int64_t j = 0; j < n; j++) {                                    \
                    const T *ra = pa + off[0] + i * sam;                             \
                    const T *cb = pb + off[1] + j * sbn;                             \
                    double acc = 0;                                                  \
                    for (int64_t p = 0; p < k; p++)                                  \
                        acc += (double)ra[p * sak] * (double)cb[p * sbk];            \
                    py[yi++] = (T)acc;                                               \
                }                                                                    \
            tg_index_next(bnd, y->shape, idx, 2, off, st);                           \
        }                                                                            \
    } while (0)

static void matmul_ref(const tg_tensor *a, const tg_tensor *b, tg_tensor *y)
{
    int bnd = y->ndim - 2;
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    int64_t sam = a->strides[a->ndim - 2], sak = a->strides[a->ndim - 1];
    int64_t sbk = b->strides[b->ndim - 2], sbn = b->strides[b->ndim - 1];
    int64_t nbatch = batch_numel(y);
    /* batch offsets of a and b; a 2-D b stays put */
    int64_t st[2][TG_MAX_DIMS], off[2] = {a->offset, b->offset}, idx[TG_MAX_DIMS] = {0};
    for (int d = 0; d < bnd; d++) {
        st[0][d] = a->strides[d];
        st[1][d] = b->ndim == 2 ? 0 : b->strides[d];
    }
    if (y->dtype == TG_F32)
        MM_LOOP(float);
    else
        MM_LOOP(double);
}

tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_matmul_vtable, "tg_matmul", in, 2, "a b",
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    mm_shapes ms;
    if (check_shapes(a, b, &ms) != TG_OK)
        return tg_op_fail(&c);
    tg_tensor *y = tg_op_output(&c, a->dtype, ms.out_nd, ms.out);
    if (!y)
        return tg_op_fail(&c);
    int64_t k = a->shape[a->ndim - 1];
    if (tg_tensor_numel(y) == 0)
        return tg_op_end(&c); /* nothing to compute */
    if (k == 0) {
        memset(tg_tensor_ptr(y), 0, tg_tensor_nbytes(y)); /* empty sums */
        return tg_op_end(&c);
    }
    int64_t ys[TG_MAX_DIMS];
    tg_contiguous_strides(ms.nd, ms.full, ys);
    tg_tensor *av = operand_view(a, false, &ms), *bv = operand_view(b, true, &ms);
    tg_tensor *yv = tg_tensor_view_owned(y, ms.nd, ms.full, ys, y->offset);
    tg_status st = av && bv && yv ? TG_OK : tg_last_status();
    if (st == TG_OK && tg_use_dnnl(a))
        st = matmul_dnnl(av, bv, yv);
    else if (st == TG_OK && (st = tg_tensor_settle(a)) == TG_OK &&
             (st = tg_tensor_settle(b)) == TG_OK)
        matmul_ref(av, bv, yv); /* reads the storages plain */
    tg_release(av);
    tg_release(bv);
    tg_release(yv);
    return st == TG_OK ? tg_op_end(&c) : tg_op_fail(&c);
}

/* ---------------------------------------------------------------- backward */

/* t as its matrix operand (a 1-D t unsqueezed), differentiable. */
static tg_tensor *as_matrix(tg_tensor *t, bool is_b)
{
    return t->ndim == 1 ? tg_unsqueeze(t, is_b ? 1 : 0) : t;
}

/* full, the gradient of a matrix operand, back to t's shape: summed over the
 * broadcast batch dims, a 1-D t's extra dim dropped. */
static tg_tensor *to_operand_shape(tg_tensor *full, const tg_tensor *t, bool is_b)
{
    if (!full)
        return NULL;
    int64_t shape[TG_MAX_DIMS];
    int n = operand_shape(t, is_b, shape);
    tg_tensor *r = tg_sum_to_shape(full, n, shape);
    return r && t->ndim == 1 ? tg_reshape(r, 1, t->shape) : r;
}

static tg_status matmul_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    mm_shapes ms;
    if (check_shapes(a, b, &ms) != TG_OK)
        return tg_last_status();
    /* g with the dims a 1-D operand dropped put back: (batch..., m, n) */
    tg_tensor *g2 = g->ndim == ms.nd ? g : tg_reshape(g, ms.nd, ms.full);
    tg_tensor *a2 = as_matrix(a, false), *b2 = as_matrix(b, true);
    if (!g2 || !a2 || !b2)
        return tg_last_status();
    if (tg_node_needs_grad(node, 0) &&
        !(gin[0] = to_operand_shape(tg_matmul(g2, tg_transpose(b2, -1, -2)), a, false)))
        return tg_last_status();
    if (!tg_node_needs_grad(node, 1))
        return TG_OK;
    if (b2->ndim == 2 && a2->ndim > 2) {
        /* b was shared by the batch: fold the batch into the rows, which sums the
         * per-sample products in the same matmul */
        int64_t rows = batch_numel(a2) * a2->shape[a2->ndim - 2];
        int64_t sa[2] = {rows, a2->shape[a2->ndim - 1]}, sg[2] = {rows, ms.full[ms.nd - 1]};
        gin[1] = to_operand_shape(tg_matmul(tg_transpose(tg_reshape(a2, 2, sa), 0, 1),
                                            tg_reshape(g2, 2, sg)), b, true);
    } else {
        gin[1] = to_operand_shape(tg_matmul(tg_transpose(a2, -1, -2), g2), b, true);
    }
    return gin[1] ? TG_OK : tg_last_status();
}

/* DOT detail: "m=2 k=3 n=4", plus the batch. */
static void matmul_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *a = node->inputs[0], *b = node->inputs[1];
    mm_shapes ms;
    const char *prev = tg_error_enter("matmul describe");
    bool ok = check_shapes(a, b, &ms) == TG_OK; /* recorded, so it passed before */
    tg_error_leave(prev);
    if (!ok) {
        snprintf(buf, n, "?");
        return;
    }
    int len = snprintf(buf, n, "m=%lld k=%lld n=%lld", (long long)ms.full[ms.nd - 2],
                       (long long)a->shape[a->ndim - 1], (long long)ms.full[ms.nd - 1]);
    if (ms.nd > 2 && len >= 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, " batch %lld%s",
                 (long long)tg_shape_numel(ms.nd - 2, ms.full), ms.b_shared ? " (b shared)" : "");
}

const tg_op_vtable tg_op_matmul_vtable = {"matmul", matmul_backward, NULL, matmul_describe,
                                          0, 0};
