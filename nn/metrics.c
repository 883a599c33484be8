/* nn/metrics.c -- classification accuracy (argmax match), not differentiable.
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

tg_status tg_accuracy_count(int64_t *correct, const tg_tensor *scores, const tg_tensor *labels)
{
    static const char *fn = "tg_accuracy";
    if (!correct || !scores || !labels)
        return tg_null_arg(fn, !correct ? "correct" : !scores ? "scores" : "labels");
    *correct = 0;
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
    int64_t n = tg_tensor_dim(scores, 0), c = tg_tensor_dim(scores, 1);
    if (c < 1)
        return tg_error(TG_ERR_SHAPE, "%s: scores have no classes", fn);
    tg_status st = tg_tensor_settle(scores); /* read plain below */
    if (st != TG_OK || (st = tg_tensor_settle(labels)) != TG_OK)
        return st;
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) {
        double y = tg_get_flat(labels, i);
        if (y < 0 || y >= (double)c)
            return tg_error(TG_ERR_RANGE, "%s: label %g at row %lld is not in 0..%lld", fn, y,
                            (long long)i, (long long)(c - 1));
        hits += row_argmax(scores, i, c) == (int64_t)y;
    }
    *correct = hits;
    return TG_OK;
}

double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels)
{
    int64_t correct = 0;
    if (tg_accuracy_count(&correct, scores, labels) != TG_OK)
        return NAN;
    int64_t n = tg_tensor_dim(scores, 0);
    if (n == 0)
        return tg_error(TG_ERR_SHAPE, "tg_accuracy: empty batch (0 rows)"), NAN;
    return (double)correct / (double)n;
}
