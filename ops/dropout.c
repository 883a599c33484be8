/* ops/dropout.c -- inverted dropout.
 *
 * Training with 0 < rate < 1: a mask m[k] ~ Bernoulli(1 - rate), s = 1 / (1 - rate)
 *   forward:  y[k] = x[k] * m[k] * s
 *   backward: dL/dx[k] = g[k] * m[k] * s
 * rate 1 drops everything: y = 0 and dL/dx = 0 (s is taken as 0).
 * Not training, or rate 0: y is x itself (no copy, no node: gradients reach x
 * unchanged because it is the same tensor).
 * oneDNN has no dropout primitive: the mask is drawn element by element, in order,
 * from the framework's seeded generator (so one seed reproduces it) and applied by
 * a tight OpenMP loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/dnnl_impl.h"

/* Saved for backward. */
typedef struct dropout_params {
    double rate;
    double scale;     /* 1 / (1 - rate), or 0 when rate is 1 */
    tg_tensor *mask;  /* owned: u8, 1 where the element was kept, x's shape */
} dropout_params;

static void dropout_free(void *saved)
{
    dropout_params *p = saved;
    if (!p)
        return;
    tg_release(p->mask);
    free(p);
}

/* out[k] = in[k] * mask[k] * scale over n contiguous elements. */
static void apply_mask(bool f64, const void *in, const uint8_t *mask, double scale, void *out,
                       int64_t n)
{
    if (f64) {
        const double *a = in;
        double *y = out;
        #pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < n; k++)
            y[k] = mask[k] ? a[k] * scale : 0.0;
    } else {
        const float *a = in;
        float *y = out;
        float s = (float)scale;
        #pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < n; k++)
            y[k] = mask[k] ? a[k] * s : 0.0f;
    }
}

tg_tensor *tg_dropout(tg_tensor *x, double rate, bool training, tg_rng *rng)
{
    static const char who[] = "tg_dropout";
    if (!x)
        return tg_null_arg(who, "x"), NULL;
    if (tg_check_float(who, "x", x) != TG_OK)
        return NULL;
    if (!(rate >= 0.0 && rate <= 1.0)) { /* also rejects NaN */
        char sx[96];
        return tg_error(TG_ERR_ARG, "%s: rate must be in [0, 1], got %g (input %s)", who, rate,
                        tg_shape_str(sx, sizeof sx, x->ndim, x->shape)), NULL;
    }
    if (!training || rate == 0.0)
        return tg_scoped(tg_retain(x));
    if (!rng)
        rng = tg_rng_global();

    int64_t n = tg_tensor_numel(x);
    tg_tensor *mask = tg_tensor_new_owned(who, TG_U8, x->ndim, x->shape);
    tg_tensor *y = tg_tensor_new_owned(who, x->dtype, x->ndim, x->shape);
    tg_tensor *xc = tg_contiguous_owned(x);
    dropout_params *p = NULL;
    if (!mask || !y || !xc)
        goto fail;
    uint8_t *m = tg_tensor_data(mask);
    double scale = 0.0;
    if (rate == 1.0) {
        for (int64_t k = 0; k < n; k++)
            m[k] = 0;
    } else {
        /* keep when a uniform draw u in [0, 1) has u >= rate; u = top 53 bits / 2^53 */
        scale = 1.0 / (1.0 - rate);
        for (int64_t k = 0; k < n; k++)
            m[k] = tg_rng_uniform(rng) >= rate;
    }
    apply_mask(x->dtype == TG_F64, tg_tensor_data(xc), m, scale, tg_tensor_data(y), n);
    tg_release(xc);
    xc = NULL;

    bool record = tg_autograd_should_record(&x, 1);
    if (record) {
        p = malloc(sizeof *p);
        if (!p) {
            tg_error(TG_ERR_NOMEM, "%s: out of memory", who);
            goto fail;
        }
        p->rate = rate;
        p->scale = scale;
        p->mask = mask;
        mask = NULL;
    }
    tg_release(mask);
    return tg_op_finish(y, record, &tg_op_dropout_vtable, &x, 1, p);

fail:
    tg_release(mask);
    tg_release(y);
    tg_release(xc);
    return NULL;
}

static tg_status dropout_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    static const char who[] = "tg_dropout backward";
    const dropout_params *p = node->saved;
    tg_tensor *x = node->inputs[0];
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    tg_tensor *gy = tg_contiguous_owned(grad_out);
    tg_tensor *gx = tg_tensor_new_owned(who, x->dtype, x->ndim, x->shape);
    tg_status st = TG_OK;
    if (!gy || !gx)
        st = tg_last_status();
    else
        apply_mask(x->dtype == TG_F64, tg_tensor_data(gy), tg_tensor_data(p->mask), p->scale,
                   tg_tensor_data(gx), tg_tensor_numel(gx));
    if (st == TG_OK)
        grad_in[0] = tg_scoped(tg_retain(gx));
    tg_release(gy);
    tg_release(gx);
    return st;
}

/* "p=0.5" */
static void dropout_describe(const tg_node *node, char *buf, size_t n)
{
    const dropout_params *p = node->saved;
    if (p)
        snprintf(buf, n, "p=%g", p->rate);
    else if (n)
        buf[0] = '\0';
}

const tg_op_vtable tg_op_dropout_vtable = {
    .name = "dropout",
    .backward = dropout_backward,
    .free_saved = dropout_free,
    .describe = dropout_describe,
    .gradcheck_hints = 0,
};
