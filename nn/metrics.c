/* nn/metrics.c -- metrics, not differentiable: accuracy (argmax match), top-k
 * accuracy, the confusion matrix and its per-class precision/recall/F1, and the
 * regression means (squared and absolute error).
 *
 * The losses are ops (tg_cross_entropy from logits, tg_cross_entropy_probs from
 * probabilities, in ops/loss.c); metrics only read values and record nothing. */
#include <math.h>

#include "nn/nn_impl.h"

/* Class index of row n's first maximum; a NaN never wins (it compares false). */
static int64_t row_argmax(const tg_tensor *s, int64_t n, int64_t c)
{
    const int64_t *st = tg_tensor_strides(s);
    int64_t best = 0;
    if (tg_tensor_dtype(s) == TG_F32) {
        const float *p = (const float *)tg_tensor_data_ro(s) + n * st[0];
        float bv = p[0];
        for (int64_t j = 1; j < c; j++)
            if (p[j * st[1]] > bv || (isnan(bv) && !isnan(p[j * st[1]])))
                bv = p[j * st[1]], best = j;
    } else {
        double bv = tg_get_flat(s, n * c);
        for (int64_t j = 1; j < c; j++) {
            double v = tg_get_flat(s, n * c + j);
            if (v > bv || (isnan(bv) && !isnan(v)))
                bv = v, best = j;
        }
    }
    return best;
}

/* Checks scores (N, C) floating and labels (N) integer (i32/i64/u8), C >= 1, and
 * settles both so they read plain. */
static tg_status check_scores_labels(const char *fn, const tg_tensor *scores,
                                     const tg_tensor *labels)
{
    if (tg_tensor_ndim(scores) != 2 || tg_tensor_ndim(labels) != 1 ||
        tg_tensor_dim(labels, 0) != tg_tensor_dim(scores, 0)) {
        char a[128], b[128];
        return tg_error(TG_ERR_SHAPE, "%s: needs scores (N, C) and labels (N), got %s and %s",
                        fn, tg_shape_str(a, sizeof a, tg_tensor_ndim(scores),
                                         tg_tensor_shape(scores)),
                        tg_shape_str(b, sizeof b, tg_tensor_ndim(labels),
                                     tg_tensor_shape(labels)));
    }
    tg_dtype lt = tg_tensor_dtype(labels);
    if (lt != TG_I32 && lt != TG_I64 && lt != TG_U8)
        return tg_error(TG_ERR_DTYPE, "%s: labels must be i32, i64 or u8, not %s", fn,
                        tg_dtype_name(lt));
    if (!tg_dtype_is_float(tg_tensor_dtype(scores)))
        return tg_error(TG_ERR_DTYPE, "%s: scores must be floating, not %s", fn,
                        tg_dtype_name(tg_tensor_dtype(scores)));
    if (tg_tensor_dim(scores, 1) < 1)
        return tg_error(TG_ERR_SHAPE, "%s: scores have no classes", fn);
    tg_status st = tg_tensor_settle(scores); /* read plain below */
    if (st == TG_OK)
        st = tg_tensor_settle(labels);
    return st;
}

/* labels[i] as a class index, or -1 (with the error set) when not in 0..c-1. */
static int64_t label_at(const char *fn, const char *what, const tg_tensor *labels, int64_t i,
                        int64_t c)
{
    double y = tg_get_flat(labels, i);
    if (!(y >= 0 && y < (double)c)) {
        tg_error(TG_ERR_RANGE, "%s: %s %g at row %lld is not in 0..%lld", fn, what, y,
                 (long long)i, (long long)(c - 1));
        return -1;
    }
    return (int64_t)y;
}

/* Rows whose label is a hit: with k == 0 the row's first maximum is the label
 * (accuracy); with k >= 1 fewer than k classes score strictly more than the
 * label's (top-k, a NaN label score a miss). */
static tg_status count_hits(const char *fn, int64_t *correct, const tg_tensor *scores,
                            const tg_tensor *labels, int k)
{
    if (!correct || !scores || !labels)
        return tg_null_arg(fn, !correct ? "correct" : !scores ? "scores" : "labels");
    *correct = 0;
    tg_status st = check_scores_labels(fn, scores, labels);
    if (st != TG_OK)
        return st;
    int64_t n = tg_tensor_dim(scores, 0), c = tg_tensor_dim(scores, 1);
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = label_at(fn, "label", labels, i, c);
        if (y < 0)
            return tg_last_status();
        if (k == 0) {
            hits += row_argmax(scores, i, c) == y;
            continue;
        }
        double target = tg_get_flat(scores, i * c + y);
        if (isnan(target))
            continue;
        int64_t above = 0; /* classes scoring strictly more than the label's */
        for (int64_t j = 0; j < c && above < k; j++)
            above += tg_get_flat(scores, i * c + j) > target;
        hits += above < k;
    }
    *correct = hits;
    return TG_OK;
}

/* count_hits as a fraction of the rows; NaN with the error set. */
static double hit_ratio(const char *fn, const tg_tensor *scores, const tg_tensor *labels, int k)
{
    int64_t correct = 0;
    if (count_hits(fn, &correct, scores, labels, k) != TG_OK)
        return NAN;
    int64_t n = tg_tensor_dim(scores, 0);
    if (n == 0)
        return tg_error(TG_ERR_SHAPE, "%s: empty batch (0 rows)", fn), NAN;
    return (double)correct / (double)n;
}

tg_status tg_accuracy_count(int64_t *correct, const tg_tensor *scores, const tg_tensor *labels)
{
    return count_hits("tg_accuracy", correct, scores, labels, 0);
}

double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels)
{
    return hit_ratio("tg_accuracy", scores, labels, 0);
}

/* ---------------------------------------------------------------- top-k */

tg_status tg_top_k_accuracy_count(int64_t *correct, const tg_tensor *scores,
                                  const tg_tensor *labels, int k)
{
    if (k < 1) {
        if (correct)
            *correct = 0;
        return tg_error(TG_ERR_ARG, "tg_top_k_accuracy: k must be at least 1, not %d", k);
    }
    return count_hits("tg_top_k_accuracy", correct, scores, labels, k);
}

double tg_top_k_accuracy(const tg_tensor *scores, const tg_tensor *labels, int k)
{
    if (k < 1)
        return tg_error(TG_ERR_ARG, "tg_top_k_accuracy: k must be at least 1, not %d", k), NAN;
    return hit_ratio("tg_top_k_accuracy", scores, labels, k);
}

/* ---------------------------------------------------------------- confusion */

tg_status tg_confusion_matrix_add(int64_t *matrix, int64_t n_classes, const tg_tensor *pred,
                                  const tg_tensor *labels)
{
    static const char *fn = "tg_confusion_matrix_add";
    if (!matrix || !pred || !labels)
        return tg_null_arg(fn, !matrix ? "matrix" : !pred ? "pred" : "labels");
    if (n_classes < 1)
        return tg_error(TG_ERR_ARG, "%s: n_classes must be at least 1, not %lld", fn,
                        (long long)n_classes);
    bool scores = tg_dtype_is_float(tg_tensor_dtype(pred));
    tg_status st;
    if (scores) {
        st = check_scores_labels(fn, pred, labels);
        if (st == TG_OK && tg_tensor_dim(pred, 1) != n_classes)
            st = tg_error(TG_ERR_SHAPE, "%s: scores have %lld classes, the matrix %lld", fn,
                          (long long)tg_tensor_dim(pred, 1), (long long)n_classes);
    } else {
        tg_dtype pt = tg_tensor_dtype(pred), lt = tg_tensor_dtype(labels);
        if (tg_tensor_ndim(pred) != 1 || tg_tensor_ndim(labels) != 1 ||
            tg_tensor_dim(pred, 0) != tg_tensor_dim(labels, 0)) {
            char a[128], b[128];
            st = tg_error(TG_ERR_SHAPE,
                          "%s: needs scores (N, C) or predicted classes (N), and labels (N), "
                          "got %s and %s", fn,
                          tg_shape_str(a, sizeof a, tg_tensor_ndim(pred), tg_tensor_shape(pred)),
                          tg_shape_str(b, sizeof b, tg_tensor_ndim(labels),
                                       tg_tensor_shape(labels)));
        } else if (pt != TG_I32 && pt != TG_I64 && pt != TG_U8) {
            st = tg_error(TG_ERR_DTYPE,
                          "%s: pred must be floating scores or i32/i64/u8 classes, not %s", fn,
                          tg_dtype_name(pt));
        } else if (lt != TG_I32 && lt != TG_I64 && lt != TG_U8) {
            st = tg_error(TG_ERR_DTYPE, "%s: labels must be i32, i64 or u8, not %s", fn,
                          tg_dtype_name(lt));
        } else {
            st = tg_tensor_settle(pred);
            if (st == TG_OK)
                st = tg_tensor_settle(labels);
        }
    }
    if (st != TG_OK)
        return st;
    /* Validate every row before counting any, so an error leaves the matrix as it was. */
    int64_t n = tg_tensor_dim(labels, 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            int64_t y = label_at(fn, "label", labels, i, n_classes);
            int64_t p = scores ? row_argmax(pred, i, n_classes)
                               : label_at(fn, "predicted class", pred, i, n_classes);
            if (y < 0 || p < 0)
                return tg_last_status();
            if (pass == 1)
                matrix[y * n_classes + p]++;
        }
    }
    return TG_OK;
}

static double ratio0(int64_t num, int64_t den)
{
    return den == 0 ? 0.0 : (double)num / (double)den;
}

tg_status tg_class_metrics_compute(tg_class_metrics *per_class, tg_class_metrics *macro,
                                   const int64_t *matrix, int64_t n_classes)
{
    static const char *fn = "tg_class_metrics_compute";
    if (!matrix)
        return tg_null_arg(fn, "matrix");
    if (n_classes < 1)
        return tg_error(TG_ERR_ARG, "%s: n_classes must be at least 1, not %lld", fn,
                        (long long)n_classes);
    for (int64_t i = 0; i < n_classes * n_classes; i++)
        if (matrix[i] < 0)
            return tg_error(TG_ERR_RANGE, "%s: count %lld at row %lld, column %lld is negative",
                            fn, (long long)matrix[i], (long long)(i / n_classes),
                            (long long)(i % n_classes));
    tg_class_metrics sum = { 0, 0, 0, 0, 0 };
    for (int64_t k = 0; k < n_classes; k++) {
        tg_class_metrics m = { 0, 0, 0, 0, 0 };
        for (int64_t j = 0; j < n_classes; j++) {
            m.support += matrix[k * n_classes + j];
            m.predicted += matrix[j * n_classes + k];
        }
        int64_t tp = matrix[k * n_classes + k];
        m.precision = ratio0(tp, m.predicted);
        m.recall = ratio0(tp, m.support);
        /* 2pr/(p+r) = 2tp / (support + predicted): exact in counts, 0/0 -> 0 */
        m.f1 = ratio0(2 * tp, m.support + m.predicted);
        if (per_class)
            per_class[k] = m;
        sum.precision += m.precision;
        sum.recall += m.recall;
        sum.f1 += m.f1;
        sum.support += m.support;
        sum.predicted += m.predicted;
    }
    if (macro) {
        sum.precision /= (double)n_classes;
        sum.recall /= (double)n_classes;
        sum.f1 /= (double)n_classes;
        *macro = sum;
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- regression */

/* Mean over all elements of |pred - target|^power (power 1 or 2). */
static double mean_error(const char *fn, const tg_tensor *pred, const tg_tensor *target,
                         int power)
{
    if (!pred || !target)
        return tg_null_arg(fn, !pred ? "pred" : "target"), NAN;
    int nd = tg_tensor_ndim(pred);
    bool same = nd == tg_tensor_ndim(target);
    for (int d = 0; same && d < nd; d++)
        same = tg_tensor_dim(pred, d) == tg_tensor_dim(target, d);
    if (!same) {
        char a[128], b[128];
        return tg_error(TG_ERR_SHAPE, "%s: pred %s and target %s differ in shape", fn,
                        tg_shape_str(a, sizeof a, nd, tg_tensor_shape(pred)),
                        tg_shape_str(b, sizeof b, tg_tensor_ndim(target),
                                     tg_tensor_shape(target))), NAN;
    }
    if (!tg_dtype_is_float(tg_tensor_dtype(pred)) || !tg_dtype_is_float(tg_tensor_dtype(target)))
        return tg_error(TG_ERR_DTYPE, "%s: pred and target must be floating, not %s and %s", fn,
                        tg_dtype_name(tg_tensor_dtype(pred)),
                        tg_dtype_name(tg_tensor_dtype(target))), NAN;
    int64_t n = tg_tensor_numel(pred);
    if (n == 0)
        return tg_error(TG_ERR_SHAPE, "%s: empty tensors (0 elements)", fn), NAN;
    if (tg_tensor_settle(pred) != TG_OK || tg_tensor_settle(target) != TG_OK)
        return NAN;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = tg_get_flat(pred, i) - tg_get_flat(target, i);
        sum += power == 2 ? d * d : fabs(d);
    }
    return sum / (double)n;
}

double tg_mean_squared_error(const tg_tensor *pred, const tg_tensor *target)
{
    return mean_error("tg_mean_squared_error", pred, target, 2);
}

double tg_mean_absolute_error(const tg_tensor *pred, const tg_tensor *target)
{
    return mean_error("tg_mean_absolute_error", pred, target, 1);
}
