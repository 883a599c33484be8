/* ops/loss.c -- losses, each reduced to a 0-d mean over the batch.
 *
 *   cross_entropy (logits z (N, C), labels t (N)):
 *       L = (1/N) sum_n [ log sum_c e^(z_nc) - z_n,t_n ]       (log-sum-exp after
 *       dz_nc = g (softmax(z_n)_c - [c = t_n]) / N               subtracting the max)
 *   cross_entropy_probs (probabilities p (N, C), labels t (N)), Keras from_logits=False:
 *       L = (1/N) sum_n -log clip(p_n,t_n, 1e-7, 1 - 1e-7)
 *       dp_n,t_n = -g / (N p_n,t_n) where p is inside the clip range, else 0
 *   mse (pred p, target q, equal shapes, n elements):
 *       L = (1/n) sum_i (p_i - q_i)^2
 *       dp = 2 g (p - q) / n        dq = -dp
 *
 * Labels are i32, i64 or u8 and are checked against C; they never need a gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

#define PROB_EPS 1e-7 /* Keras's backend epsilon */

typedef struct xent_saved {
    int64_t n, c;
    int64_t *labels; /* validated copy */
} xent_saved;

static void xent_free(void *p)
{
    xent_saved *sv = p;
    if (sv)
        free(sv->labels);
    free(sv);
}

/* Checks (x (N, C) float, labels (N) integer, each label in 0..C-1) and returns a
 * validated copy of the labels (malloc'd) or NULL with the error set. */
static int64_t *check_and_read_labels(const char *xname, tg_tensor *x,
                                      tg_tensor *labels)
{
    char sx[128], sl[128];
    if (!x)
        return tg_null_arg_here(xname), NULL;
    if (!labels)
        return tg_null_arg_here("labels"), NULL;
    if (tg_check_float(xname, x) != TG_OK || tg_check_ndim(xname, x, 2) != TG_OK)
        return NULL;
    if (labels->dtype != TG_I32 && labels->dtype != TG_I64 && labels->dtype != TG_U8)
        return tg_error_here(TG_ERR_DTYPE, "labels must be i32, i64 or u8, got %s",
                             tg_dtype_name(labels->dtype)), NULL;
    int64_t n = x->shape[0], c = x->shape[1];
    if (labels->ndim != 1 || labels->shape[0] != n)
        return tg_error_here(TG_ERR_SHAPE, "labels %s do not match %s %s (want [%lld])",
                             tg_shape_str(sl, sizeof sl, labels->ndim, labels->shape), xname,
                             tg_shape_str(sx, sizeof sx, x->ndim, x->shape),
                             (long long)n), NULL;
    if (n == 0 || c == 0)
        return tg_error_here(TG_ERR_SHAPE, "%s %s is empty (no mean to take)", xname,
                             tg_shape_str(sx, sizeof sx, x->ndim, x->shape)), NULL;
    int64_t *out = malloc((size_t)n * sizeof *out);
    tg_tensor *lc = out ? tg_contiguous_owned(labels) : NULL;
    if (!lc) {
        free(out);
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        switch (labels->dtype) {
        case TG_I32: out[i] = TG_DATA(lc, int32_t)[i]; break;
        case TG_I64: out[i] = TG_DATA(lc, int64_t)[i]; break;
        default: out[i] = TG_DATA(lc, uint8_t)[i]; break;
        }
        if (out[i] < 0 || out[i] >= c) {
            tg_error_here(TG_ERR_RANGE, "label %lld at row %lld is out of range for %lld "
                          "classes (0..%lld)", (long long)out[i], (long long)i, (long long)c,
                          (long long)(c - 1));
            free(out);
            out = NULL;
            break;
        }
    }
    tg_release(lc);
    return out;
}

static tg_tensor *scalar_out(tg_dtype dtype, double v)
{
    tg_tensor *y = tg_tensor_new_owned(dtype, 0, NULL);
    if (y)
        tg_set_flat(y, 0, v);
    return y;
}

/* Element (r, c) of a 2-D tensor as double, any strides. */
static inline double at2(const tg_tensor *x, int64_t r, int64_t c)
{
    int64_t o = x->offset + r * x->strides[0] + c * x->strides[1];
    return x->dtype == TG_F32 ? ((const float *)tg_storage_data(x->storage))[o]
                              : ((const double *)tg_storage_data(x->storage))[o];
}

static tg_tensor *xent_common(bool probs, tg_tensor *x, tg_tensor *labels)
{
    const char *who = probs ? "tg_cross_entropy_probs" : "tg_cross_entropy";
    /* first: its messages name the logits or probs */
    /* the label checks name the context; the frame comes after them */
    const char *prev = tg_error_enter(who);
    int64_t *lab = check_and_read_labels(probs ? "probs" : "logits", x, labels);
    tg_error_leave(prev);
    if (!lab)
        return NULL;
    tg_tensor *in[2] = {x, labels};
    tg_op_call c;
    const tg_op_vtable *vt = probs ? &tg_op_cross_entropy_probs_vtable
                                   : &tg_op_cross_entropy_vtable;
    if (!tg_op_begin(&c, vt, who, in, 2, NULL, 0)) {
        free(lab);
        return NULL;
    }
    int64_t n = x->shape[0], nc = x->shape[1];
    double total = 0;
    for (int64_t r = 0; r < n; r++) {
        if (probs) {
            double p = at2(x, r, lab[r]);
            p = p < PROB_EPS ? PROB_EPS : p > 1.0 - PROB_EPS ? 1.0 - PROB_EPS : p;
            total -= log(p);
        } else {
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < nc; k++)
                m = fmax(m, at2(x, r, k));
            for (int64_t k = 0; k < nc; k++)
                s += exp(at2(x, r, k) - m);
            total += m + log(s) - at2(x, r, lab[r]);
        }
    }
    c.out = scalar_out(x->dtype, total / (double)n);
    xent_saved *sv = c.out ? tg_op_save(&c, sizeof *sv) : NULL;
    if (!c.out || (c.record && !sv)) {
        free(lab);
        return tg_op_fail(&c);
    }
    if (sv)
        *sv = (xent_saved){n, nc, lab};
    else
        free(lab);
    return tg_op_end(&c);
}

tg_tensor *tg_cross_entropy(tg_tensor *logits, tg_tensor *labels)
{
    return xent_common(false, logits, labels);
}

tg_tensor *tg_cross_entropy_probs(tg_tensor *probs, tg_tensor *labels)
{
    return xent_common(true, probs, labels);
}

static tg_status xent_backward_common(bool probs, tg_node *node, tg_tensor *g,
                                      tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const xent_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    double scale = tg_item(g) / (double)sv->n;
    double *row = malloc((size_t)sv->c * sizeof *row);
    tg_tensor *gx = row ? tg_tensor_new_named("cross_entropy backward", x->dtype, 2, x->shape)
                        : NULL;
    if (!gx) {
        free(row);
        return tg_error(TG_ERR_NOMEM, "cross_entropy backward: out of memory");
    }
    for (int64_t r = 0; r < sv->n; r++) {
        int64_t t = sv->labels[r];
        if (probs) {
            double p = at2(x, r, t);
            memset(row, 0, (size_t)sv->c * sizeof *row);
            /* the clip passes the gradient only inside its range */
            if (p >= PROB_EPS && p <= 1.0 - PROB_EPS)
                row[t] = -scale / p;
        } else {
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < sv->c; k++)
                m = fmax(m, at2(x, r, k));
            for (int64_t k = 0; k < sv->c; k++)
                s += row[k] = exp(at2(x, r, k) - m);
            for (int64_t k = 0; k < sv->c; k++)
                row[k] = scale * (row[k] / s - (k == t));
        }
        for (int64_t k = 0; k < sv->c; k++) {
            if (x->dtype == TG_F32)
                TG_DATA(gx, float)[r * sv->c + k] = (float)row[k];
            else
                TG_DATA(gx, double)[r * sv->c + k] = row[k];
        }
    }
    free(row);
    gin[0] = tg_scoped(gx);
    return TG_OK;
}

static tg_status xent_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    return xent_backward_common(false, node, g, gin);
}

static tg_status xent_probs_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    return xent_backward_common(true, node, g, gin);
}

/* DOT detail: "N=32 C=10". */
static void xent_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *x = node->inputs[0];
    snprintf(buf, n, "N=%lld C=%lld", (long long)x->shape[0], (long long)x->shape[1]);
}

const tg_op_vtable tg_op_cross_entropy_vtable = {"cross_entropy", xent_backward, xent_free,
                                                 xent_describe, 0,
                                                 1u << 1 /* labels: a copy is saved */};
/* keeps p inside (1e-7, 1 - 1e-7), away from the clip's kinks */
const tg_op_vtable tg_op_cross_entropy_probs_vtable = {
    "cross_entropy_probs", xent_probs_backward, xent_free, xent_describe, TG_GC_POSITIVE,
    1u << 1 /* labels: a copy is saved */};

/* ---------------------------------------------------------------- mse */

tg_tensor *tg_mse(tg_tensor *pred, tg_tensor *target)
{
    static const char who[] = "tg_mse";
    tg_tensor *in[2] = {pred, target};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_mse_vtable, who, in, 2, "pred target",
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    char sp[128], st[128];
    if (!tg_tensor_same_shape(pred, target))
        return tg_error_here(TG_ERR_SHAPE, "shapes %s and %s differ",
                             tg_shape_str(sp, sizeof sp, pred->ndim, pred->shape),
                             tg_shape_str(st, sizeof st, target->ndim, target->shape)),
               tg_op_fail(&c);
    int64_t n = tg_tensor_numel(pred);
    if (n == 0)
        return tg_error_here(TG_ERR_SHAPE, "shape %s is empty (no mean to take)",
                             tg_shape_str(sp, sizeof sp, pred->ndim, pred->shape)),
               tg_op_fail(&c);
    tg_tensor *pc = tg_contiguous_owned(pred), *tc = tg_contiguous_owned(target);
    double total = 0;
    if (pc && tc)
        for (int64_t i = 0; i < n; i++) {
            double d = pred->dtype == TG_F32
                           ? (double)TG_DATA(pc, float)[i] - TG_DATA(tc, float)[i]
                           : TG_DATA(pc, double)[i] - TG_DATA(tc, double)[i];
            total += d * d;
        }
    c.out = pc && tc ? scalar_out(pred->dtype, total / (double)n) : NULL;
    tg_release(pc);
    tg_release(tc);
    return tg_op_end(&c);
}

static tg_status mse_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *p = node->inputs[0], *q = node->inputs[1];
    int64_t n = tg_tensor_numel(p);
    double scale = 2.0 * tg_item(g) / (double)n;
    tg_tensor *gp = tg_tensor_new_named("mse backward", p->dtype, p->ndim, p->shape);
    tg_tensor *pc = tg_contiguous_owned(p), *qc = tg_contiguous_owned(q);
    if (!gp || !pc || !qc) {
        tg_release(gp);
        tg_release(pc);
        tg_release(qc);
        return tg_last_status();
    }
    for (int64_t i = 0; i < n; i++) {
        if (p->dtype == TG_F32)
            TG_DATA(gp, float)[i] =
                (float)(scale * ((double)TG_DATA(pc, float)[i] - TG_DATA(qc, float)[i]));
        else
            TG_DATA(gp, double)[i] = scale * (TG_DATA(pc, double)[i] - TG_DATA(qc, double)[i]);
    }
    tg_release(pc);
    tg_release(qc);
    gp = tg_scoped(gp);
    if (tg_node_needs_grad(node, 0))
        gin[0] = gp;
    if (tg_node_needs_grad(node, 1) && !(gin[1] = tg_neg(gp)))
        return tg_last_status();
    return TG_OK;
}

const tg_op_vtable tg_op_mse_vtable = {"mse", mse_backward, NULL, NULL, 0, 0};
