/* examples/mlp_sgd.c -- a small MLP trained with plain SGD, written by hand
 * against libtensor's public API: the first chapter of the user guide
 * (docs/writing-a-model.md walks through it).
 *
 * The data are three interleaved 2-D spirals (a classic toy problem that no
 * linear classifier separates). The network is 2 -> 64 -> ReLU -> 3, trained
 * with mini-batch SGD for a few hundred epochs. The program prints the loss as
 * it falls and the final accuracy, and exits 0 only when the loss fell to a
 * quarter of its first value or less, the accuracy passed 90 %, and nothing
 * leaked.
 *
 * Build against an installed libtensor:
 *   cc mlp_sgd.c $(pkg-config --cflags --libs libtensor) -o mlp_sgd
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "libtensor.h"

enum {
    N_CLASSES = 3,
    PER_CLASS = 100,
    N_POINTS = N_CLASSES * PER_CLASS,
    HIDDEN = 64,
    BATCH = 50,
    EPOCHS = 300
};
static const double LEARNING_RATE = 0.5;

/* The model's parameters: plain tensors that require grad. */
typedef struct mlp {
    tg_tensor *w1, *b1; /* (2, HIDDEN), (HIDDEN) */
    tg_tensor *w2, *b2; /* (HIDDEN, N_CLASSES), (N_CLASSES) */
} mlp;

/* Fills xy (N_POINTS x 2) and labels with three spirals, shuffled so that every
 * mini-batch holds all classes. Uses the library's seeded generator, so the run
 * is the same each time. */
static void make_spirals(float *xy, int64_t *labels)
{
    tg_rng *rng = tg_rng_global();
    for (int c = 0; c < N_CLASSES; c++) {
        for (int i = 0; i < PER_CLASS; i++) {
            int n = c * PER_CLASS + i;
            double r = (double)i / (PER_CLASS - 1);              /* radius 0..1 */
            double t = 4.0 * c + 4.0 * r + 0.2 * tg_rng_normal(rng); /* angle, noisy */
            xy[2 * n] = (float)(r * sin(t));
            xy[2 * n + 1] = (float)(r * cos(t));
            labels[n] = c;
        }
    }
    for (int n = N_POINTS - 1; n > 0; n--) { /* Fisher-Yates */
        int k = (int)tg_rng_below(rng, (uint64_t)n + 1);
        float x0 = xy[2 * n], x1 = xy[2 * n + 1];
        int64_t l = labels[n];
        xy[2 * n] = xy[2 * k];
        xy[2 * n + 1] = xy[2 * k + 1];
        labels[n] = labels[k];
        xy[2 * k] = x0;
        xy[2 * k + 1] = x1;
        labels[k] = l;
    }
}

/* Creates a parameter. No scope is open here, so the creation function hands us
 * a reference we own: the parameter lives until mlp_free() releases it. */
static tg_tensor *param(tg_tensor *t, const char *name)
{
    if (!t || tg_set_requires_grad(t, true) != TG_OK || tg_tensor_set_name(t, name) != TG_OK) {
        tg_release(t);
        return NULL;
    }
    return t;
}

static int mlp_init(mlp *m)
{
    m->w1 = param(tg_glorot_uniform(TG_F32, TG_SHAPE(2, HIDDEN), NULL), "dense1/kernel");
    m->b1 = param(tg_zeros(TG_F32, TG_SHAPE(HIDDEN)), "dense1/bias");
    m->w2 = param(tg_glorot_uniform(TG_F32, TG_SHAPE(HIDDEN, N_CLASSES), NULL), "dense2/kernel");
    m->b2 = param(tg_zeros(TG_F32, TG_SHAPE(N_CLASSES)), "dense2/bias");
    return m->w1 && m->b1 && m->w2 && m->b2 ? 0 : -1;
}

static void mlp_free(mlp *m)
{
    tg_release(m->w1);
    tg_release(m->b1);
    tg_release(m->w2);
    tg_release(m->b2);
}

/* logits = relu(x w1 + b1) w2 + b2. Every op returns a tensor owned by the
 * innermost scope, so the intermediate results need no release: the caller's
 * scope frees them all at once. A NULL anywhere flows through to the end. */
static tg_tensor *mlp_forward(const mlp *m, tg_tensor *x)
{
    tg_tensor *h = tg_relu(tg_add(tg_matmul(x, m->w1), m->b1));
    return tg_add(tg_matmul(h, m->w2), m->b2);
}

/* p -= lr * dL/dp for each parameter, then clears the gradient for the next
 * step. The update must not become part of the graph: grad mode is off while
 * it runs. (Writing through tg_tensor_data() is never recorded anyway; the
 * switch matters when the update is written with ops, as in
 *   tg_tensor_copy_into(p, tg_sub(p, tg_mul_scalar(tg_grad(p), lr)));  ) */
static int sgd_step(const mlp *m, double lr)
{
    tg_tensor *params[] = { m->w1, m->b1, m->w2, m->b2 };
    bool was_enabled = tg_set_grad_enabled(false);
    int rc = 0;
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        tg_tensor *p = params[i];
        tg_tensor *g = tg_grad(p); /* borrowed; same shape and dtype as p */
        if (!g || !tg_tensor_is_contiguous(g) || !tg_tensor_is_contiguous(p)) {
            fprintf(stderr, "mlp_sgd: no usable gradient for %s\n", tg_tensor_name(p));
            rc = -1;
            break;
        }
        float *pd = tg_tensor_data(p);          /* for writing: bumps p's version */
        const float *gd = tg_tensor_data_ro(g); /* for reading */
        for (int64_t k = 0; k < tg_tensor_numel(p); k++)
            pd[k] -= (float)lr * gd[k];
        tg_zero_grad(p);
    }
    tg_set_grad_enabled(was_enabled);
    return rc;
}

/* Fraction of points whose largest logit is the right class. */
static double accuracy(const mlp *m, tg_tensor *x, tg_tensor *labels)
{
    tg_scope *s = tg_scope_push();
    bool was_enabled = tg_set_grad_enabled(false); /* evaluation records nothing */
    tg_tensor *pred = tg_argmax(mlp_forward(m, x), 1, false); /* i64, (N) */
    double acc = NAN;
    if (pred) {
        const int64_t *p = tg_tensor_data_ro(pred), *l = tg_tensor_data_ro(labels);
        int64_t right = 0, n = tg_tensor_numel(pred);
        for (int64_t i = 0; i < n; i++)
            right += p[i] == l[i];
        acc = (double)right / (double)n;
    }
    tg_set_grad_enabled(was_enabled);
    tg_scope_pop(s);
    return acc;
}

int main(void)
{
    tg_manual_seed(42); /* one seed makes the whole run reproducible */

    static float xy[N_POINTS * 2];
    static int64_t labels[N_POINTS];
    make_spirals(xy, labels);
    /* No scope is open: x and y are references we own (released at the end). */
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(N_POINTS, 2), xy);
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(N_POINTS), labels);

    mlp m = { 0 };
    if (!x || !y || mlp_init(&m) != 0) {
        fprintf(stderr, "mlp_sgd: setup failed: %s\n", tg_last_error());
        return 1;
    }

    double first_loss = NAN, last_loss = NAN;
    int failed = 0;
    for (int epoch = 1; epoch <= EPOCHS && !failed; epoch++) {
        double epoch_loss = 0;
        for (int start = 0; start < N_POINTS; start += BATCH) {
            /* One training step is one scope: everything the step creates --
             * the batch views, activations, the loss, the recorded graph -- is
             * released when the scope pops. */
            tg_scope *step = tg_scope_push();
            tg_tensor *xb = tg_slice(x, 0, start, start + BATCH); /* views, no copy */
            tg_tensor *yb = tg_slice(y, 0, start, start + BATCH);
            tg_tensor *loss = tg_cross_entropy(mlp_forward(&m, xb), yb);

            if (!loss || tg_backward(loss) != TG_OK || sgd_step(&m, LEARNING_RATE) != 0) {
                fprintf(stderr, "mlp_sgd: training step failed: %s\n", tg_last_error());
                failed = 1;
            } else {
                epoch_loss += tg_item(loss) * BATCH / N_POINTS;
            }
            tg_scope_pop(step);
        }
        if (epoch == 1)
            first_loss = epoch_loss;
        last_loss = epoch_loss;
        if (epoch == 1 || epoch % 50 == 0)
            printf("epoch %3d  loss %.4f\n", epoch, epoch_loss);
    }

    double acc = failed ? NAN : accuracy(&m, x, y);
    if (!failed)
        printf("final: loss %.4f (first epoch %.4f), training accuracy %.1f%%\n", last_loss,
               first_loss, 100.0 * acc);

    mlp_free(&m);
    tg_release(x);
    tg_release(y);

    /* Every tensor and graph node is gone: the scopes and releases above balanced. */
    int64_t live = tg_live_objects();
    if (live != 0) {
        fprintf(stderr, "mlp_sgd: %lld objects still alive at exit (a leak)\n", (long long)live);
        return 1;
    }
    /* Three spirals start at ln 3 = 1.10; a network that learned them ends far lower. */
    if (failed || !(last_loss < 0.25 * first_loss) || !(acc > 0.9)) {
        fprintf(stderr, "mlp_sgd: the model did not learn (loss %.4f -> %.4f, accuracy %.3f)\n",
                first_loss, last_loss, acc);
        return 1;
    }
    return 0;
}
