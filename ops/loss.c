/* ops/loss.c -- losses, each reduced to a 0-d mean over the batch.
 *
 *   cross_entropy (logits z (N, C), labels t (N)):
 *       L = (1/N) sum_n [ log sum_c e^(z_nc) - z_n,t_n ]       (log-sum-exp after
 *       dz_nc = g (softmax(z_n)_c - [c = t_n]) / N               subtracting the max)
 *   cross_entropy_probs (probabilities p (N, C), labels t (N)), Keras from_logits=False:
 *       L = (1/N) sum_n -log clip(p_n,t_n, 1e-7, 1 - 1e-7)
 *       dp_n,t_n = -g / (N p_n,t_n) where p is inside the clip range, else 0
 *   with options (tg_cross_entropy_ex: class weights w, label smoothing eps,
 *   an ignored label, a reduction), q_n = (1 - eps) onehot(t_n) + eps / C and
 *   a_nc = w_c q_nc for the rows not ignored (0 for an ignored row):
 *       l_n = - sum_c a_nc log softmax(z_n)_c          (log clip(p_nc) from probs)
 *       L = sum_n l_n / D,  D = sum_n w_t_n (mean; 0 when D = 0), 1 (sum);
 *       or L_n = l_n (none)
 *       dz_nk = s_n (A_n softmax(z_n)_k - a_nk),  A_n = sum_c a_nc
 *       (from probs: dp_nk = -s_n a_nk / p_nk inside the clip), with s_n = g / D,
 *       g, or g_n
 *   mse (pred p, target q, broadcast together to n elements):
 *       L = (1/n) sum_i (p_i - q_i)^2
 *       dp = 2 g (p - q) / n, summed back to p's shape;  dq = the same negated, to q's
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
    int64_t *labels;  /* validated copy */
    double *weights;  /* (C) copy, or NULL: all 1 */
    double eps;       /* label smoothing */
    int64_t ignore;   /* TG_IGNORE_NONE or the ignored label */
    tg_reduction reduction;
    double denom;     /* D of the header (mean), 1 (sum) */
} xent_saved;

static void xent_free(void *p)
{
    xent_saved *sv = p;
    if (sv) {
        free(sv->labels);
        free(sv->weights);
    }
    free(sv);
}

/* Checks (x (N, C) float, labels (N) integer, each label in 0..C-1 or the ignored
 * one) and returns a validated copy of the labels (malloc'd) or NULL with the error set. */
static int64_t *check_and_read_labels(const char *xname, tg_tensor *x,
                                      tg_tensor *labels, int64_t ignore)
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
        if ((out[i] < 0 || out[i] >= c) && (ignore == TG_IGNORE_NONE || out[i] != ignore)) {
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

/* Checks the options and copies the class weights (*w NULL when there are none).
 * Errors name the field. */
static tg_status check_xent_opts(const tg_cross_entropy_opts *o, int64_t c, double **w)
{
    *w = NULL;
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        return tg_error_here(TG_ERR_ARG, "label_smoothing must be in [0, 1], not %g",
                             o->label_smoothing);
    if (o->reduction != TG_REDUCTION_MEAN && o->reduction != TG_REDUCTION_SUM &&
        o->reduction != TG_REDUCTION_NONE)
        return tg_error_here(TG_ERR_ARG, "reduction %d is not a tg_reduction",
                             (int)o->reduction);
    tg_tensor *cw = o->class_weights;
    if (!cw)
        return TG_OK;
    char sw[128];
    if (!tg_dtype_is_float(cw->dtype))
        return tg_error_here(TG_ERR_DTYPE, "class_weights must be floating, not %s",
                             tg_dtype_name(cw->dtype));
    if (cw->ndim != 1 || cw->shape[0] != c)
        return tg_error_here(TG_ERR_SHAPE, "class_weights %s do not match %lld classes",
                             tg_shape_str(sw, sizeof sw, cw->ndim, cw->shape), (long long)c);
    if (tg_tensor_settle(cw) != TG_OK)
        return tg_last_status();
    double *out = malloc((size_t)c * sizeof *out);
    if (!out)
        return tg_error_here(TG_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < c; k++) {
        out[k] = tg_get_flat(cw, k);
        if (!(out[k] >= 0 && isfinite(out[k]))) {
            tg_error_here(TG_ERR_ARG, "class_weights[%lld] is %g (must be finite, >= 0)",
                          (long long)k, out[k]);
            free(out);
            return TG_ERR_ARG;
        }
    }
    *w = out;
    return TG_OK;
}

static inline bool xent_ignored(const xent_saved *sv, int64_t t)
{
    return sv->ignore != TG_IGNORE_NONE && t == sv->ignore;
}

/* a_k of the header for a row with label t (not ignored). */
static inline double xent_coef(const xent_saved *sv, int64_t t, int64_t k)
{
    double q = (1.0 - sv->eps) * (k == t) + sv->eps / (double)sv->c;
    return sv->weights ? sv->weights[k] * q : q;
}

/* Whether a_k can be non-zero: every class with smoothing, else the label's alone. */
static inline bool xent_active(const xent_saved *sv, int64_t t, int64_t k)
{
    return sv->eps > 0 || k == t;
}

/* l_n of the header; row r must not be ignored. */
static double xent_row_loss(bool probs, const xent_saved *sv, const tg_tensor *x, int64_t r)
{
    int64_t t = sv->labels[r], nc = sv->c;
    if (probs) {
        double l = 0;
        for (int64_t k = 0; k < nc; k++) {
            if (!xent_active(sv, t, k))
                continue;
            double p = at2(x, r, k);
            p = p < PROB_EPS ? PROB_EPS : p > 1.0 - PROB_EPS ? 1.0 - PROB_EPS : p;
            l -= xent_coef(sv, t, k) * log(p);
        }
        return l;
    }
    double m = -INFINITY, s = 0;
    for (int64_t k = 0; k < nc; k++)
        m = fmax(m, at2(x, r, k));
    for (int64_t k = 0; k < nc; k++)
        s += exp(at2(x, r, k) - m);
    double lse = m + log(s);
    if (sv->eps == 0)
        return xent_coef(sv, t, t) * (lse - at2(x, r, t));
    double l = 0;
    for (int64_t k = 0; k < nc; k++)
        l += xent_coef(sv, t, k) * (lse - at2(x, r, k));
    return l;
}

static tg_tensor *xent_common(bool probs, tg_tensor *x, tg_tensor *labels,
                              const tg_cross_entropy_opts *opts, const char *who)
{
    tg_cross_entropy_opts o = TG_CROSS_ENTROPY_OPTS_INIT;
    if (opts)
        o = *opts;
    /* the label and option checks name the context; the frame comes after them */
    const char *prev = tg_error_enter(who);
    int64_t *lab = check_and_read_labels(probs ? "probs" : "logits", x, labels, o.ignore_index);
    double *w = NULL;
    if (lab && check_xent_opts(&o, x->shape[1], &w) != TG_OK) {
        free(lab);
        lab = NULL;
    }
    tg_error_leave(prev);
    if (!lab)
        return NULL;
    xent_saved tmp = {x->shape[0], x->shape[1], lab, w, o.label_smoothing, o.ignore_index,
                      o.reduction, 1.0};
    tg_tensor *in[2] = {x, labels};
    tg_op_call c;
    const tg_op_vtable *vt = probs ? &tg_op_cross_entropy_probs_vtable
                                   : &tg_op_cross_entropy_vtable;
    if (!tg_op_begin(&c, vt, who, in, 2, NULL, 0)) {
        free(lab);
        free(w);
        return NULL;
    }
    int64_t n = tmp.n;
    if (o.reduction == TG_REDUCTION_NONE) {
        c.out = tg_tensor_new_owned(x->dtype, 1, &n);
        for (int64_t r = 0; c.out && r < n; r++)
            tg_set_flat(c.out, r,
                        xent_ignored(&tmp, lab[r]) ? 0.0 : xent_row_loss(probs, &tmp, x, r));
    } else {
        double total = 0, denom = 0;
        for (int64_t r = 0; r < n; r++) {
            if (xent_ignored(&tmp, lab[r]))
                continue;
            total += xent_row_loss(probs, &tmp, x, r);
            denom += w ? w[lab[r]] : 1.0;
        }
        if (o.reduction == TG_REDUCTION_MEAN)
            tmp.denom = denom;
        c.out = scalar_out(x->dtype, tmp.denom > 0 ? total / tmp.denom : 0.0);
    }
    xent_saved *sv = c.out ? tg_op_save(&c, sizeof *sv) : NULL;
    if (!c.out || (c.record && !sv)) {
        free(lab);
        free(w);
        return tg_op_fail(&c);
    }
    if (sv) {
        *sv = tmp;
    } else {
        free(lab);
        free(w);
    }
    return tg_op_end(&c);
}

tg_tensor *tg_cross_entropy(tg_tensor *logits, tg_tensor *labels)
{
    return xent_common(false, logits, labels, NULL, "tg_cross_entropy");
}

tg_tensor *tg_cross_entropy_ex(tg_tensor *logits, tg_tensor *labels,
                               const tg_cross_entropy_opts *opts)
{
    return xent_common(false, logits, labels, opts, "tg_cross_entropy_ex");
}

tg_tensor *tg_cross_entropy_probs(tg_tensor *probs, tg_tensor *labels)
{
    return xent_common(true, probs, labels, NULL, "tg_cross_entropy_probs");
}

static tg_status xent_backward_common(bool probs, tg_node *node, tg_tensor *g,
                                      tg_tensor **gin)
{
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    const xent_saved *sv = node->saved;
    tg_tensor *x = node->inputs[0];
    bool per_row = sv->reduction == TG_REDUCTION_NONE;
    double scale = per_row ? 0 : sv->denom > 0 ? tg_item(g) / sv->denom : 0;
    double *row = malloc((size_t)sv->c * sizeof *row);
    tg_tensor *gx = row ? tg_tensor_new_named("cross_entropy backward", x->dtype, 2, x->shape)
                        : NULL;
    if (!gx) {
        free(row);
        return tg_error(TG_ERR_NOMEM, "cross_entropy backward: out of memory");
    }
    for (int64_t r = 0; r < sv->n; r++) {
        int64_t t = sv->labels[r];
        double sr = per_row ? tg_get_flat(g, r) : scale;
        if (xent_ignored(sv, t)) {
            memset(row, 0, (size_t)sv->c * sizeof *row); /* no contribution */
        } else if (probs) {
            for (int64_t k = 0; k < sv->c; k++) {
                double p = at2(x, r, k);
                /* the clip passes the gradient only inside its range */
                row[k] = xent_active(sv, t, k) && p >= PROB_EPS && p <= 1.0 - PROB_EPS
                             ? -sr * xent_coef(sv, t, k) / p
                             : 0.0;
            }
        } else {
            double m = -INFINITY, s = 0, a_sum = 0;
            for (int64_t k = 0; k < sv->c; k++)
                m = fmax(m, at2(x, r, k));
            for (int64_t k = 0; k < sv->c; k++) {
                s += row[k] = exp(at2(x, r, k) - m);
                a_sum += xent_active(sv, t, k) ? xent_coef(sv, t, k) : 0.0;
            }
            for (int64_t k = 0; k < sv->c; k++)
                row[k] = sr * (a_sum * row[k] / s -
                               (xent_active(sv, t, k) ? xent_coef(sv, t, k) : 0.0));
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

/* DOT detail: "N=32 C=10", then the options that are not the defaults
 * ("weighted smoothing=0.1 ignore=-100 sum"). */
static void xent_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_tensor *x = node->inputs[0];
    const xent_saved *sv = node->saved;
    int k = snprintf(buf, n, "N=%lld C=%lld", (long long)x->shape[0], (long long)x->shape[1]);
    if (!sv || k < 0 || (size_t)k >= n)
        return;
    char ign[48] = "";
    if (sv->ignore != TG_IGNORE_NONE)
        snprintf(ign, sizeof ign, " ignore=%lld", (long long)sv->ignore);
    char eps[40] = "";
    if (sv->eps > 0)
        snprintf(eps, sizeof eps, " smoothing=%g", sv->eps);
    snprintf(buf + k, n - (size_t)k, "%s%s%s%s", sv->weights ? " weighted" : "", eps, ign,
             sv->reduction == TG_REDUCTION_SUM    ? " sum"
             : sv->reduction == TG_REDUCTION_NONE ? " none"
                                                  : "");
}

const tg_op_vtable tg_op_cross_entropy_vtable = {"cross_entropy", xent_backward, xent_free,
                                                 xent_describe, 0,
                                                 1u << 1 /* labels: a copy is saved */};
/* keeps p inside (1e-7, 1 - 1e-7), away from the clip's kinks */
const tg_op_vtable tg_op_cross_entropy_probs_vtable = {
    "cross_entropy_probs", xent_probs_backward, xent_free, xent_describe, TG_GC_POSITIVE,
    1u << 1 /* labels: a copy is saved */};

/* ---------------------------------------------------------------- mse */

/* Walks pred - target over their broadcast shape, each difference taken in
 * double: adds its square to *sum (out NULL), or writes scale times it into the
 * contiguous out (of the broadcast shape and pred's dtype). */
static void mse_walk(const tg_tensor *pred, const tg_tensor *target, int nd,
                     const int64_t *shape, double *sum, tg_tensor *out, double scale)
{
    if (tg_shape_numel(nd, shape) == 0)
        return;
    int64_t st[2][TG_MAX_DIMS], off[2] = {pred->offset, target->offset}, idx[TG_MAX_DIMS] = {0};
    tg_broadcast_strides(pred, nd, shape, st[0]);
    tg_broadcast_strides(target, nd, shape, st[1]);
    bool f32 = pred->dtype == TG_F32;
    const float *pf = tg_storage_data(pred->storage), *qf = tg_storage_data(target->storage);
    const double *pd = tg_storage_data(pred->storage), *qd = tg_storage_data(target->storage);
    double total = 0;
    int64_t i = 0;
    do {
        double d = f32 ? (double)pf[off[0]] - qf[off[1]] : pd[off[0]] - qd[off[1]];
        if (!out)
            total += d * d;
        else if (f32)
            TG_DATA(out, float)[i] = (float)(scale * d);
        else
            TG_DATA(out, double)[i] = scale * d;
        i++;
    } while (tg_index_next(nd, shape, idx, 2, off, st));
    if (sum)
        *sum = total;
}

tg_tensor *tg_mse(tg_tensor *pred, tg_tensor *target)
{
    static const char who[] = "tg_mse";
    tg_tensor *in[2] = {pred, target};
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_mse_vtable, who, in, 2, "pred target",
                     TG_OP_FLOAT | TG_OP_SAME_DTYPE))
        return NULL;
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (tg_broadcast_shape(pred, target, &nd, shape) != TG_OK)
        return tg_op_fail(&c);
    int64_t n = tg_shape_numel(nd, shape);
    if (n == 0) {
        char sp[128];
        return tg_error_here(TG_ERR_SHAPE, "shape %s is empty (no mean to take)",
                             tg_shape_str(sp, sizeof sp, nd, shape)), tg_op_fail(&c);
    }
    if (tg_tensor_settle(pred) != TG_OK || tg_tensor_settle(target) != TG_OK)
        return tg_op_fail(&c); /* read plain below */
    double total = 0;
    mse_walk(pred, target, nd, shape, &total, NULL, 0);
    c.out = scalar_out(pred->dtype, total / (double)n);
    return tg_op_end(&c);
}

static tg_status mse_backward(tg_node *node, tg_tensor *g, tg_tensor **gin)
{
    tg_tensor *p = node->inputs[0], *q = node->inputs[1];
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (tg_broadcast_shape(p, q, &nd, shape) != TG_OK || tg_tensor_settle(p) != TG_OK ||
        tg_tensor_settle(q) != TG_OK)
        return tg_last_status();
    int64_t n = tg_shape_numel(nd, shape);
    tg_tensor *d = tg_tensor_new_named("mse backward", p->dtype, nd, shape);
    if (!d)
        return tg_last_status();
    mse_walk(p, q, nd, shape, NULL, d, 2.0 * tg_item(g) / (double)n);
    d = tg_scoped(d); /* 2 g (p - q) / n over the broadcast shape */
    if (tg_node_needs_grad(node, 0) && !(gin[0] = tg_sum_to_shape(d, p->ndim, p->shape)))
        return tg_last_status();
    if (tg_node_needs_grad(node, 1) &&
        !(gin[1] = tg_neg(tg_sum_to_shape(d, q->ndim, q->shape))))
        return tg_last_status();
    return TG_OK;
}

const tg_op_vtable tg_op_mse_vtable = {"mse", mse_backward, NULL, NULL, 0, 0};
