/* examples/custom_layer.c -- defining a layer type of your own with the public
 * tg_layer_vtable, using it in a Sequential model, training it and checkpointing
 * it (docs/writing-a-model.md, "Your own layer type", walks through it).
 *
 * The layer, "Center", subtracts a moving mean of its input and multiplies by a
 * learned per-feature scale:
 *     y = (x - moving_mean) * scale
 * "scale" is a parameter (trained by the optimizer); "moving_mean" is a buffer:
 * updated in training mode as m = momentum m + (1 - momentum) mean_batch(x), as
 * BatchNorm updates its moving statistics, never touched by the optimizer, and
 * saved in state dicts and checkpoints beside the parameters.
 *
 * The program trains Center -> Dense(2) on points far from the origin, checks
 * that the loss fell and the moving mean found the data's mean, saves a
 * checkpoint, loads it into a fresh model and checks that both models predict
 * the same. It exits 0 only when all of that holds and nothing leaked.
 *
 * Build against an installed libtensor:
 *   cc custom_layer.c $(pkg-config --cflags --libs libtensor) -o custom_layer
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "libtensor.h"

enum { N_POINTS = 256, FEATURES = 2, STEPS = 150 };
static const float OFFSET[FEATURES] = { 5.0f, -3.0f };

/* ---------------------------------------------------------------- the layer type */

typedef struct center {
    double momentum; /* of the moving mean */
} center;

/* Input (F): output (F), one scale and one moving mean per feature. */
static tg_status center_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                              int64_t *out_shape)
{
    if (in_ndim != 1)
        return tg_layer_error(l, TG_ERR_SHAPE, "needs (None, features) input, got %d dims",
                              in_ndim);
    *out_ndim = 1;
    out_shape[0] = in_shape[0];
    if (!tg_layer_add_param(l, "scale", 1, in_shape, TG_INIT_ONES) ||
        !tg_layer_add_buffer(l, "moving_mean", 1, in_shape, 0.0))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *center_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    const center *c = tg_layer_data(l);
    tg_tensor *mm = tg_layer_buffer(l, 0);
    if (ctx->training) {
        /* The buffer is state, not a graph input: update it with gradients off. */
        bool prev = tg_set_grad_enabled(false);
        tg_tensor *batch_mean = tg_mean(x, (const int[]){ 0 }, 1, false); /* (F) */
        if (!batch_mean) {
            tg_set_grad_enabled(prev);
            return NULL;
        }
        float *m = tg_tensor_data(mm); /* a buffer is contiguous, of the model's dtype */
        for (int64_t i = 0; i < tg_tensor_numel(mm); i++)
            m[i] = (float)(c->momentum * m[i] + (1 - c->momentum) * tg_get(batch_mean, &i));
        tg_tensor_bump_version(mm);
        tg_set_grad_enabled(prev);
    }
    return tg_mul(tg_sub(x, mm), tg_layer_param(l, 0));
}

/* What summaries and architecture descriptions show. */
static void center_config(const tg_layer *l, tg_layer_config *cfg)
{
    const center *c = tg_layer_data(l);
    tg_layer_config_double(cfg, "momentum", c->momentum);
}

static const tg_layer_vtable center_vtable = {
    .class_name = "Center",
    .base_name = "center",
    .data_size = sizeof(center),
    .build = center_build,
    .forward = center_forward,
    .config = center_config,
};

static tg_layer *center_new(double momentum)
{
    tg_layer *l = tg_layer_new(&center_vtable, TG_ACT_NONE, NULL);
    if (l)
        ((center *)tg_layer_data(l))->momentum = momentum;
    return l;
}

/* ---------------------------------------------------------------- the program */

static tg_sequential *model_new(void)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(FEATURES));
    if (!m || tg_sequential_add(m, center_new(0.9)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL)) != TG_OK) {
        tg_sequential_free(m);
        return NULL;
    }
    return m;
}

/* Points around OFFSET, labelled by which side of the diagonal through it they lie. */
static void make_data(float *xy, int64_t *labels)
{
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int i = 0; i < N_POINTS; i++) {
        float a = (float)(2 * tg_rng_uniform(&rng) - 1), b = (float)(2 * tg_rng_uniform(&rng) - 1);
        xy[2 * i] = OFFSET[0] + a;
        xy[2 * i + 1] = OFFSET[1] + b;
        labels[i] = a > b;
    }
}

static int run(tg_tensor *x, tg_tensor *y, const char *path)
{
    tg_sequential *model = model_new();
    tg_sequential *fresh = model_new();
    size_t n = 0;
    tg_tensor *const *params = model ? tg_sequential_params(model, &n) : NULL;
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = 0.05;
    tg_optimizer *opt = params ? tg_optimizer_new_adam(params, n, &ao) : NULL;
    tg_state_dict *sd = tg_state_dict_new(), *sd2 = tg_state_dict_new();
    int rc = 1;
    if (!fresh || !opt || !sd || !sd2)
        goto out;
    tg_sequential_summary(model, stdout);

    double first = NAN, last = NAN;
    for (int step = 0; step < STEPS; step++) {
        tg_scope *s = tg_scope_push();
        tg_tensor *loss = tg_cross_entropy(tg_sequential_forward(model, x), y);
        tg_status st = loss ? tg_optimizer_zero_grad(opt) : tg_last_status();
        if (st == TG_OK && (st = tg_backward(loss)) == TG_OK)
            st = tg_optimizer_step(opt);
        if (st == TG_OK) {
            last = tg_item(loss);
            if (step == 0)
                first = last;
        }
        tg_scope_pop(s);
        if (st != TG_OK)
            goto out;
    }
    printf("loss %.4f -> %.4f\n", first, last);

    /* The buffer learned the data's mean; the optimizer never touched it. */
    tg_tensor *mm = tg_layer_buffer_by_name(tg_sequential_layer(model, 0), "moving_mean");
    double m0 = mm ? tg_get(mm, (const int64_t[]){ 0 }) : NAN;
    double m1 = mm ? tg_get(mm, (const int64_t[]){ 1 }) : NAN;
    printf("moving_mean [%.3f, %.3f], the data's offset [%.1f, %.1f]\n", m0, m1, OFFSET[0],
           OFFSET[1]);

    /* Save parameters and buffers; load them into a fresh model. */
    if (tg_sequential_state_dict(model, sd, "model/") != TG_OK ||
        tg_checkpoint_save(path, sd) != TG_OK ||
        tg_sequential_state_dict(fresh, sd2, "model/") != TG_OK ||
        tg_checkpoint_load_into(path, sd2) != TG_OK)
        goto out;
    tg_sequential_set_training(model, false);
    tg_sequential_set_training(fresh, false);
    tg_scope *s = tg_scope_push();
    tg_tensor *d = tg_abs(tg_sub(tg_sequential_forward(model, x), tg_sequential_forward(fresh, x)));
    double diff = d ? tg_item(tg_max(d, NULL, 0, false)) : NAN;
    tg_scope_pop(s);
    printf("largest difference between the saved and the reloaded model: %g\n", diff);

    if (!(last < 0.5 * first) || !(fabs(m0 - OFFSET[0]) < 0.2) || !(fabs(m1 - OFFSET[1]) < 0.2) ||
        !(diff == 0)) {
        fprintf(stderr, "custom_layer: the model did not learn or did not reload\n");
        goto out;
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "custom_layer: last error: %s\n", tg_last_error());
    tg_state_dict_free(sd);
    tg_state_dict_free(sd2);
    tg_optimizer_free(opt);
    tg_sequential_free(model);
    tg_sequential_free(fresh);
    remove(path);
    return rc;
}

int main(void)
{
    tg_manual_seed(3);
    static float xy[N_POINTS * FEATURES];
    static int64_t labels[N_POINTS];
    make_data(xy, labels);
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(N_POINTS, FEATURES), xy);
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(N_POINTS), labels);
    int rc = x && y ? run(x, y, "custom_layer.h5") : 1;
    tg_release(x);
    tg_release(y);
    int64_t live = tg_live_objects();
    if (live != 0) {
        fprintf(stderr, "custom_layer: %lld objects still alive at exit (a leak)\n",
                (long long)live);
        return 1;
    }
    return rc;
}
