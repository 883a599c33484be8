/* tests/test_fit.c -- tg_fit, tg_evaluate, tg_predict (nn/fit.c) on small
 * synthetic data: it learns; the history equals evaluations computed by hand;
 * the CSV; the order of the callbacks and a stop from one or from the stop
 * flag; early stopping with restore-best; learning-rate schedules and the
 * plateau; a checkpoint + resume mid-epoch equal to the straight run bit for
 * bit (io's checkpoints through TG_CHECKPOINT_IO); clear errors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"

enum { N = 40, FEATURES = 4, CLASSES = 3, BATCH = 16 }; /* 3 batches: 16, 16, 8 */

static char tmpdir[256];

static void tmp_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_fit.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* n examples of FEATURES values in [-1, 1]; the label is the argmax of three
 * fixed linear scores, so a small network can learn it. New references. */
static void make_data(tg_tensor **x, tg_tensor **y, int n, uint64_t seed)
{
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    *x = tg_rand_uniform(TG_F32, TG_SHAPE(n, FEATURES), -1.0, 1.0, &rng);
    *y = tg_empty(TG_I64, TG_SHAPE(n));
    TG_CHECK(*x && *y);
    static const float w[CLASSES][FEATURES] = {
        { 1, -1, 0.5f, 0 }, { -1, 0.5f, 1, 0.2f }, { 0.3f, 1, -1, 1 } };
    const float *px = tg_tensor_data(*x);
    int64_t *py = tg_tensor_data(*y);
    for (int i = 0; i < n; i++) {
        int best = 0;
        float bs = -1e30f;
        for (int c = 0; c < CLASSES; c++) {
            float s = 0;
            for (int k = 0; k < FEATURES; k++)
                s += w[c][k] * px[i * FEATURES + k];
            if (s > bs)
                bs = s, best = c;
        }
        py[i] = best;
    }
}

/* A model and its Adam optimizer, weights drawn from *rng (seeded here). */
typedef struct net {
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
} net;

static void net_new(net *m, uint64_t seed, double dropout, double lr)
{
    tg_rng_seed(&m->rng, seed);
    m->model = tg_sequential_new(TG_SHAPE(FEATURES));
    TG_CHECK(m->model != NULL);
    TG_OK_(tg_sequential_set_rng(m->model, &m->rng));
    TG_OK_(tg_sequential_add(m->model, tg_layer_new_dense(16, TG_ACT_RELU, NULL)));
    if (dropout > 0)
        TG_OK_(tg_sequential_add(m->model, tg_layer_new_dropout(dropout)));
    TG_OK_(tg_sequential_add(m->model, tg_layer_new_dense(CLASSES, TG_ACT_NONE, NULL)));
    size_t np = 0;
    tg_tensor *const *ps = tg_sequential_params(m->model, &np);
    TG_CHECK(ps != NULL);
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = lr;
    m->opt = tg_optimizer_new_adam(ps, np, &ao);
    TG_CHECK(m->opt != NULL);
}

static void net_free(net *m)
{
    tg_optimizer_free(m->opt);
    tg_sequential_free(m->model);
}

static tg_fit_opts quiet_opts(net *m, int64_t epochs)
{
    tg_fit_opts o = TG_FIT_OPTS_INIT;
    o.epochs = epochs;
    o.batch_size = BATCH;
    o.rng = &m->rng;
    o.verbose = 0;
    return o;
}

/* Bit-for-bit equality of two models' parameters. */
static bool same_params(tg_sequential *a, tg_sequential *b)
{
    size_t na = 0, nb = 0;
    tg_tensor *const *pa = tg_sequential_params(a, &na);
    tg_tensor *const *pb = tg_sequential_params(b, &nb);
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (tg_tensor_nbytes(pa[i]) != tg_tensor_nbytes(pb[i]) ||
            memcmp(tg_tensor_data(pa[i]), tg_tensor_data(pb[i]), tg_tensor_nbytes(pa[i])) != 0)
            return false;
    return true;
}

/* ---------------------------------------------------------------- learning */

START_TEST(fit_learns)
{
    tg_tensor *x, *y;
    make_data(&x, &y, 120, 1);
    net m;
    net_new(&m, 3, 0, 0.02);
    tg_fit_opts o = quiet_opts(&m, 15);
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_int_eq(h.n, 15);
    ck_assert_int_eq(h.end, TG_FIT_COMPLETED);
    ck_assert_int_eq(h.epoch, 15);
    ck_assert_int_eq(h.steps, 8); /* ceil(120 / 16) */
    ck_assert_int_eq(h.step, 15 * 8);
    ck_assert_int_eq(tg_optimizer_steps(m.opt), 15 * 8);
    for (int64_t i = 0; i < h.n; i++)
        ck_assert_int_eq(h.epochs[i].epoch, i + 1);
    ck_assert_msg(h.epochs[14].loss < 0.5 * h.epochs[0].loss, "loss %g -> %g",
                  h.epochs[0].loss, h.epochs[14].loss);
    ck_assert(h.epochs[14].accuracy > 0.8);
    ck_assert(isnan(h.epochs[0].val_loss) && isnan(h.epochs[0].val_accuracy));
    ck_assert(h.epochs[0].lr == 0.02);
    tg_history_clear(&h);
    ck_assert(h.epochs == NULL && h.n == 0);
    net_free(&m);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* With one batch per epoch and no shuffle, epoch e's training loss is the loss
 * of the weights before its step; validation is that of the weights after. */
START_TEST(fit_history_equals_evaluation)
{
    tg_tensor *x, *y, *vx, *vy;
    make_data(&x, &y, N, 1);
    make_data(&vx, &vy, 25, 2);
    net m;
    net_new(&m, 5, 0, 0.05);
    /* by hand, before training: the mean cross-entropy and accuracy of the logits */
    tg_scope *s = tg_scope_push();
    tg_tensor *logits = tg_sequential_forward_logits(m.model, x);
    double loss0 = tg_item(tg_cross_entropy(logits, y));
    double acc0 = tg_accuracy(logits, y);
    tg_scope_pop(s);

    tg_fit_opts o = quiet_opts(&m, 2);
    o.batch_size = N;
    o.shuffle = false;
    o.val_x = vx;
    o.val_y = vy;
    o.validation_batch_size = 10; /* 10, 10, 5: the mean is weighted by batch size */
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_int_eq(h.n, 2);
    ck_assert(h.epochs[0].loss == loss0);
    ck_assert(h.epochs[0].accuracy == acc0);

    /* after training: validation = a hand-made weighted mean over the three slices */
    double sum = 0;
    int64_t hits = 0;
    tg_sequential_set_training(m.model, false);
    for (int64_t a = 0; a < 25; a += 10) {
        int64_t b = a + 10 < 25 ? a + 10 : 25;
        s = tg_scope_push();
        tg_tensor *lg = tg_sequential_forward_logits(m.model, tg_slice(vx, 0, a, b));
        tg_tensor *yb = tg_slice(vy, 0, a, b);
        sum += tg_item(tg_cross_entropy(lg, yb)) * (double)(b - a);
        int64_t c = 0;
        TG_OK_(tg_accuracy_count(&c, lg, yb));
        hits += c;
        tg_scope_pop(s);
    }
    tg_sequential_set_training(m.model, true);
    ck_assert(h.epochs[1].val_loss == sum / 25);
    ck_assert(h.epochs[1].val_accuracy == (double)hits / 25);
    double vl = 0, va = 0;
    TG_OK_(tg_evaluate(&vl, &va, m.model, vx, vy, &o));
    ck_assert(vl == h.epochs[1].val_loss && va == h.epochs[1].val_accuracy);
    ck_assert(tg_sequential_is_training(m.model)); /* evaluate restored the mode */

    /* the training loss of epoch 2 is the loss after epoch 1's step: evaluate
     * it on a model with epoch 1's weights (a fresh run of one epoch) */
    net m1;
    net_new(&m1, 5, 0, 0.05);
    tg_fit_opts o1 = o;
    o1.epochs = 1;
    o1.rng = &m1.rng;
    o1.val_x = o1.val_y = NULL;
    TG_OK_(tg_fit(NULL, m1.model, m1.opt, x, y, &o1));
    double l1 = 0, a1 = 0;
    tg_fit_opts eo = o1;
    eo.validation_batch_size = N;
    TG_OK_(tg_evaluate(&l1, &a1, m1.model, x, y, &eo));
    ck_assert(h.epochs[1].loss == l1);
    ck_assert(h.epochs[1].accuracy == a1);

    /* predict: the outputs of the whole set, in order, in evaluation mode */
    tg_tensor *p = tg_predict(m.model, vx, &o);
    TG_CHECK(p != NULL);
    ck_assert_int_eq(tg_tensor_dim(p, 0), 25);
    ck_assert_int_eq(tg_tensor_dim(p, 1), CLASSES);
    s = tg_scope_push();
    tg_sequential_set_training(m.model, false);
    tg_tensor *ref = tg_contiguous(tg_sequential_forward(m.model, vx));
    tg_sequential_set_training(m.model, true);
    ck_assert(memcmp(tg_tensor_data(p), tg_tensor_data(ref), 25 * CLASSES * sizeof(float)) == 0);
    tg_scope_pop(s);
    tg_release(p);

    tg_history_clear(&h);
    net_free(&m);
    net_free(&m1);
    tg_release(x);
    tg_release(y);
    tg_release(vx);
    tg_release(vy);
}
END_TEST

/* MSE, and a user loss that calls the same op: the same run bit for bit. */
static tg_tensor *user_mse(tg_tensor *out, tg_tensor *target, void *ctx)
{
    (*(int *)ctx)++;
    return tg_mse(out, target);
}

START_TEST(fit_mse_and_user_loss)
{
    tg_tensor *x, *y;
    make_data(&x, &y, N, 4);
    tg_tensor *t = tg_rand_uniform(TG_F32, TG_SHAPE(N, CLASSES), -1, 1, NULL);
    net a, b;
    net_new(&a, 9, 0, 0.01);
    net_new(&b, 9, 0, 0.01);
    tg_fit_opts oa = quiet_opts(&a, 3);
    oa.loss = TG_LOSS_MSE;
    tg_fit_opts ob = quiet_opts(&b, 3);
    int calls = 0;
    ob.loss = TG_LOSS_CUSTOM;
    ob.loss_fn = user_mse;
    ob.loss_ctx = &calls;
    tg_history ha = TG_HISTORY_INIT, hb = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&ha, a.model, a.opt, x, t, &oa));
    TG_OK_(tg_fit(&hb, b.model, b.opt, x, t, &ob));
    ck_assert_int_eq(calls, 9);
    ck_assert(same_params(a.model, b.model));
    for (int i = 0; i < 3; i++) {
        ck_assert(ha.epochs[i].loss == hb.epochs[i].loss);
        ck_assert(isnan(ha.epochs[i].accuracy)); /* no metric without cross-entropy */
    }
    ck_assert(ha.epochs[2].loss < ha.epochs[0].loss);
    double l = 0, acc = 0;
    TG_OK_(tg_evaluate(&l, &acc, a.model, x, t, &oa));
    ck_assert(isnan(acc) && l > 0);
    tg_history_clear(&ha);
    tg_history_clear(&hb);
    net_free(&a);
    net_free(&b);
    tg_release(t);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- the CSV */

START_TEST(fit_history_csv)
{
    tg_tensor *x, *y, *vx, *vy;
    make_data(&x, &y, N, 1);
    make_data(&vx, &vy, 20, 2);
    net m;
    net_new(&m, 5, 0, 0.01);
    char path[300];
    snprintf(path, sizeof path, "%s/h.csv", tmpdir);
    FILE *f = fopen(path, "w+");
    TG_CHECK(f != NULL);
    tg_fit_opts o = quiet_opts(&m, 2);
    o.val_x = vx;
    o.val_y = vy;
    o.history_csv = f;
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    /* a second call appends its rows, no second header */
    tg_fit_opts o2 = o;
    o2.val_x = o2.val_y = NULL;
    tg_history h2 = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h2, m.model, m.opt, x, y, &o2));
    rewind(f);
    char line[256];
    ck_assert(fgets(line, sizeof line, f) != NULL);
    ck_assert_str_eq(line, "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n");
    for (int i = 0; i < 2; i++) {
        ck_assert(fgets(line, sizeof line, f) != NULL);
        const tg_epoch_logs *e = &h.epochs[i];
        char want[256];
        snprintf(want, sizeof want, "%d,%.6f,%.6f,%.6f,%.6f,%.3f\n", i + 1, e->loss,
                 e->accuracy, e->val_loss, e->val_accuracy, e->seconds);
        ck_assert_str_eq(line, want);
    }
    ck_assert(fgets(line, sizeof line, f) != NULL);
    char want[256];
    snprintf(want, sizeof want, "1,%.6f,%.6f,,,%.3f\n", h2.epochs[0].loss,
             h2.epochs[0].accuracy, h2.epochs[0].seconds);
    ck_assert_str_eq(line, want); /* without validation: empty fields */
    fclose(f);

    /* tg_history_write_csv writes the same rows */
    FILE *g = tmpfile();
    TG_CHECK(g != NULL);
    TG_OK_(tg_history_write_csv(&h, g, true));
    rewind(g);
    f = fopen(path, "r");
    for (int i = 0; i < 3; i++) {
        char a[256], b[256];
        ck_assert(fgets(a, sizeof a, f) && fgets(b, sizeof b, g));
        ck_assert_str_eq(a, b);
    }
    fclose(f);
    fclose(g);
    ck_assert_int_eq(tg_history_write_csv(NULL, stdout, true), TG_ERR_ARG);
    tg_history_clear(&h);
    tg_history_clear(&h2);
    net_free(&m);
    tg_release(x);
    tg_release(y);
    tg_release(vx);
    tg_release(vy);
}
END_TEST

/* ---------------------------------------------------------------- callbacks */

typedef struct recorder {
    char events[256];      /* one letter per event: T e b E t */
    int64_t steps[64];     /* info.step at each batch end */
    int n_steps;
    int64_t stop_at_step;  /* ask to stop (0: never) */
    volatile sig_atomic_t *flag; /* ... or set this flag */
    tg_status fail_with;   /* return it at the first batch end */
    double lrs[64];        /* info.logs.lr at each batch end */
} recorder;

static tg_status record(const tg_fit_info *in, void *ctx, bool *stop)
{
    recorder *r = ctx;
    static const char letters[] = "TebEt";
    size_t k = strlen(r->events);
    if (k + 1 < sizeof r->events) {
        r->events[k] = letters[in->event];
        r->events[k + 1] = '\0';
    }
    if (in->event == TG_FIT_BATCH_END) {
        ck_assert_int_eq(in->batch, (in->step - 1) % in->steps + 1);
        ck_assert(isfinite(in->batch_loss) && isfinite(in->logs.loss));
        if (r->n_steps < 64) {
            r->lrs[r->n_steps] = in->logs.lr;
            r->steps[r->n_steps++] = in->step;
        }
        if (r->fail_with != TG_OK)
            return r->fail_with;
        if (r->stop_at_step && in->step == r->stop_at_step) {
            if (r->flag)
                *r->flag = 1;
            else
                *stop = true;
        }
    }
    if (in->event == TG_FIT_EPOCH_END)
        ck_assert(in->logs.epoch == in->epoch && in->batch == in->steps);
    return TG_OK;
}

START_TEST(fit_callbacks_order_and_stops)
{
    tg_tensor *x, *y;
    make_data(&x, &y, N, 1);
    net m;
    net_new(&m, 5, 0, 0.01);
    recorder r;
    memset(&r, 0, sizeof r);
    tg_fit_callback cb = { record, &r };
    tg_fit_opts o = quiet_opts(&m, 2);
    o.callbacks = &cb;
    o.n_callbacks = 1;
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_str_eq(r.events, "TebbbEebbbEt");
    ck_assert_int_eq(r.n_steps, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(r.steps[i], i + 1);
    tg_history_clear(&h);

    /* a callback's stop mid-epoch: after that step */
    memset(&r, 0, sizeof r);
    r.stop_at_step = 4;
    o.epochs = 5;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_str_eq(r.events, "TebbbEebt");
    ck_assert_int_eq(h.end, TG_FIT_CALLBACK_STOP);
    ck_assert_int_eq(h.n, 1);
    ck_assert_int_eq(h.epoch, 1);
    ck_assert_int_eq(h.batch, 1);
    ck_assert_int_eq(h.step, 4);
    tg_history_clear(&h);

    /* the stop flag, set at step 2 (as a signal handler would) */
    volatile sig_atomic_t flag = 0;
    memset(&r, 0, sizeof r);
    r.stop_at_step = 2;
    r.flag = &flag;
    o.stop_flag = &flag;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_str_eq(r.events, "Tebbt");
    ck_assert_int_eq(h.end, TG_FIT_STOP_REQUESTED);
    ck_assert_int_eq(h.n, 0);
    ck_assert_int_eq(h.batch, 2);
    tg_history_clear(&h);

    /* set at an epoch's last step: the epoch ends (validation, save), then stop */
    flag = 0;
    memset(&r, 0, sizeof r);
    r.stop_at_step = 3;
    r.flag = &flag;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_str_eq(r.events, "TebbbEt");
    ck_assert_int_eq(h.end, TG_FIT_STOP_REQUESTED);
    ck_assert_int_eq(h.n, 1);
    ck_assert_int_eq(h.batch, 0);
    tg_history_clear(&h);

    /* a callback's error ends the run with it */
    flag = 0;
    memset(&r, 0, sizeof r);
    r.fail_with = TG_ERR_IO;
    ck_assert_int_eq(tg_fit(&h, m.model, m.opt, x, y, &o), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("callback 0 failed");
    ck_assert_int_eq(h.step, 1);
    tg_history_clear(&h);
    net_free(&m);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- early stopping */

START_TEST(fit_early_stopping_restores_best)
{
    tg_tensor *x, *y, *vx, *vy;
    make_data(&x, &y, N, 1);
    make_data(&vx, &vy, 20, 2);
    net m;
    net_new(&m, 5, 0, 0.01);
    tg_fit_opts o = quiet_opts(&m, 10);
    o.val_x = vx;
    o.val_y = vy;
    /* with a huge min_delta only the first epoch improves: patience 2 stops
     * after epoch 3 and puts epoch 1's weights back */
    o.early_stopping.monitor = "val_loss";
    o.early_stopping.min_delta = 1e9;
    o.early_stopping.patience = 2;
    o.early_stopping.restore_best_weights = true;
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_int_eq(h.end, TG_FIT_STOPPED_EARLY);
    ck_assert_int_eq(h.n, 3);
    ck_assert_int_eq(h.best_epoch, 1);
    ck_assert(h.restored_best);
    ck_assert_int_eq(tg_optimizer_steps(m.opt), 9); /* the optimizer is not rewound */

    net m1; /* the same run for one epoch */
    net_new(&m1, 5, 0, 0.01);
    tg_fit_opts o1 = quiet_opts(&m1, 1);
    TG_OK_(tg_fit(NULL, m1.model, m1.opt, x, y, &o1));
    ck_assert(same_params(m.model, m1.model));
    double vl = 0;
    TG_OK_(tg_evaluate(&vl, NULL, m.model, vx, vy, &o));
    ck_assert(vl == h.epochs[0].val_loss);
    tg_history_clear(&h);

    /* accuracy is maximised, and cannot rise by more than 1: patience 0 stops
     * at the first epoch after the first */
    net m2;
    net_new(&m2, 5, 0, 0.01);
    tg_fit_opts o2 = quiet_opts(&m2, 10);
    o2.early_stopping.monitor = "accuracy";
    o2.early_stopping.min_delta = 1.0;
    TG_OK_(tg_fit(&h, m2.model, m2.opt, x, y, &o2));
    ck_assert_int_eq(h.end, TG_FIT_STOPPED_EARLY);
    ck_assert_int_eq(h.n, 2);
    ck_assert(!h.restored_best);
    tg_history_clear(&h);
    net_free(&m);
    net_free(&m1);
    net_free(&m2);
    tg_release(x);
    tg_release(y);
    tg_release(vx);
    tg_release(vy);
}
END_TEST

/* ---------------------------------------------------------------- learning rates */

START_TEST(fit_lr_schedules)
{
    tg_tensor *x, *y;
    make_data(&x, &y, N, 1);
    net m;
    net_new(&m, 5, 0, 0.5);
    tg_lr_schedule sch = TG_LR_SCHEDULE_INIT;
    sch.kind = TG_LR_STEP;
    sch.lr = 0.01;
    sch.gamma = 0.5;
    sch.step_size = 1;
    tg_fit_opts o = quiet_opts(&m, 3);
    o.lr_schedule = &sch;
    tg_history h = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert(h.epochs[0].lr == 0.01);
    ck_assert(h.epochs[1].lr == 0.005);
    ck_assert(h.epochs[2].lr == 0.0025);
    tg_history_clear(&h);

    /* per step: the step t (counting from the run's first) uses schedule(t) */
    recorder r;
    memset(&r, 0, sizeof r);
    tg_fit_callback cb = { record, &r };
    tg_lr_schedule cos = TG_LR_SCHEDULE_INIT;
    cos.kind = TG_LR_COSINE;
    cos.lr = 0.02;
    cos.step_size = 5;
    cos.alpha = 0.1; /* 0 would end at lr 0, which optimizers refuse */
    o.lr_schedule = &cos;
    o.lr_per_step = true;
    o.epochs = 2;
    o.callbacks = &cb;
    o.n_callbacks = 1;
    int64_t before = tg_optimizer_steps(m.opt);
    TG_OK_(tg_fit(&h, m.model, m.opt, x, y, &o));
    ck_assert_int_eq(r.n_steps, 6);
    for (int i = 0; i < 6; i++)
        ck_assert(r.lrs[i] == tg_lr_schedule_at(&cos, i));
    ck_assert_int_eq(tg_optimizer_steps(m.opt), before + 6);
    tg_history_clear(&h);

    /* reduce on plateau: the rates equal a tracker fed the same losses */
    net p;
    net_new(&p, 6, 0, 0.01);
    tg_lr_plateau_opts po = TG_LR_PLATEAU_OPTS_INIT;
    po.factor = 0.5;
    po.patience = 0;
    po.min_delta = 1.0; /* no epoch after the first improves: each one reduces */
    tg_fit_opts op = quiet_opts(&p, 6);
    op.lr_plateau = &po;
    op.lr_plateau_monitor = "loss";
    TG_OK_(tg_fit(&h, p.model, p.opt, x, y, &op));
    tg_tensor *w = tg_zeros(TG_F32, TG_SHAPE(1));
    tg_set_requires_grad(w, true);
    tg_sgd_opts so = TG_SGD_OPTS_INIT;
    so.lr = 0.01;
    tg_optimizer *shadow = tg_optimizer_new_sgd(&w, 1, &so);
    tg_lr_plateau tr;
    TG_OK_(tg_lr_plateau_init(&tr, &po));
    bool reduced_once = false;
    for (int i = 0; i < 6; i++) {
        bool red = false;
        TG_OK_(tg_lr_plateau_update(&tr, shadow, h.epochs[i].loss, &red));
        reduced_once |= red;
        if (i + 1 < 6) /* the rate epoch i + 1 ran with */
            ck_assert(h.epochs[i + 1].lr == tg_optimizer_lr(shadow));
    }
    ck_assert(tg_optimizer_lr(p.opt) == tg_optimizer_lr(shadow));
    ck_assert(reduced_once);
    tg_optimizer_free(shadow);
    tg_release(w);
    tg_history_clear(&h);
    net_free(&m);
    net_free(&p);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- checkpoints */

/* The state hook adds an attribute of the caller's to every state. */
static tg_status add_tag(tg_state_dict *sd, void *ctx)
{
    return tg_state_dict_set_i64(sd, "test_tag", *(int64_t *)ctx);
}

START_TEST(fit_resume_mid_epoch_bit_exact)
{
    tg_tensor *x, *y, *vx, *vy;
    make_data(&x, &y, N, 1);
    make_data(&vx, &vy, 20, 2);
    char straight[300], stopped[300];
    snprintf(straight, sizeof straight, "%s/straight.h5", tmpdir);
    snprintf(stopped, sizeof stopped, "%s/stopped.h5", tmpdir);
    int64_t tag = 77;

    /* straight: 3 epochs */
    net a;
    net_new(&a, 11, 0.3, 0.01); /* dropout: the generator matters mid-epoch */
    tg_fit_opts oa = quiet_opts(&a, 3);
    oa.seed = 11;
    oa.val_x = vx;
    oa.val_y = vy;
    oa.checkpoint_path = straight;
    oa.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO;
    oa.state_hook = add_tag;
    oa.state_hook_ctx = &tag;
    tg_history ha = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&ha, a.model, a.opt, x, y, &oa));

    /* stopped by the flag at step 4 (epoch 2, batch 1 of 3), then resumed into
     * fresh objects whose generator was seeded differently */
    net b;
    net_new(&b, 11, 0.3, 0.01);
    volatile sig_atomic_t flag = 0;
    recorder r;
    memset(&r, 0, sizeof r);
    r.stop_at_step = 4;
    r.flag = &flag;
    tg_fit_callback cb = { record, &r };
    tg_fit_opts ob = oa;
    ob.rng = &b.rng;
    ob.checkpoint_path = stopped;
    ob.callbacks = &cb;
    ob.n_callbacks = 1;
    ob.stop_flag = &flag;
    tg_history hb = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&hb, b.model, b.opt, x, y, &ob));
    ck_assert_int_eq(hb.end, TG_FIT_STOP_REQUESTED);
    ck_assert_int_eq(hb.batch, 1);
    net_free(&b);
    tg_history_clear(&hb);

    tg_state_dict *probe = tg_state_dict_new();
    TG_OK_(tg_train_state_template(probe));
    TG_OK_(add_tag(probe, &tag));
    TG_OK_(tg_checkpoint_load_into(stopped, probe));
    int64_t v = 0;
    TG_OK_(tg_state_dict_get_i64(&v, probe, "batch"));
    ck_assert_int_eq(v, 1);
    TG_OK_(tg_state_dict_get_i64(&v, probe, "seed"));
    ck_assert_int_eq(v, 11);
    TG_OK_(tg_state_dict_get_i64(&v, probe, "epoch_seen"));
    ck_assert_int_eq(v, BATCH);
    tg_state_dict_free(probe);

    net c;
    net_new(&c, 999, 0.3, 0.01);
    tg_fit_opts oc = oa;
    oc.rng = &c.rng;
    oc.seed = 0; /* replaced by the checkpoint's */
    oc.checkpoint_path = stopped;
    oc.resume = true;
    memset(&r, 0, sizeof r);
    oc.callbacks = &cb;
    oc.n_callbacks = 1;
    tg_history hc = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&hc, c.model, c.opt, x, y, &oc));
    ck_assert_str_eq(r.events, "TebbEebbbEt"); /* epoch 2 from its batch 2 */
    ck_assert_int_eq(r.steps[0], 5);
    ck_assert_int_eq(hc.n, 2); /* epochs 2 and 3 */
    ck_assert(same_params(a.model, c.model));
    ck_assert_int_eq(tg_optimizer_steps(c.opt), tg_optimizer_steps(a.opt));
    ck_assert(memcmp(&a.rng, &c.rng, sizeof a.rng) == 0);
    for (int i = 0; i < 2; i++) {
        ck_assert(hc.epochs[i].loss == ha.epochs[i + 1].loss);
        ck_assert(hc.epochs[i].accuracy == ha.epochs[i + 1].accuracy);
        ck_assert(hc.epochs[i].val_loss == ha.epochs[i + 1].val_loss);
    }

    /* resuming a finished run does nothing */
    tg_history hd = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&hd, c.model, c.opt, x, y, &oc));
    ck_assert_int_eq(hd.n, 0);
    ck_assert_int_eq(hd.epoch, 3);
    ck_assert_int_eq(tg_optimizer_steps(c.opt), tg_optimizer_steps(a.opt));

    /* a checkpoint of another architecture is refused, naming it */
    net d;
    net_new(&d, 11, 0, 0.01); /* no dropout layer */
    tg_fit_opts od = oc;
    od.rng = &d.rng;
    ck_assert_int_ne(tg_fit(NULL, d.model, d.opt, x, y, &od), TG_OK);
    TG_ASSERT_ERROR_HAS("cannot resume from");
    TG_ASSERT_ERROR_HAS(stopped);
    net_free(&d);

    tg_history_clear(&ha);
    tg_history_clear(&hc);
    tg_history_clear(&hd);
    net_free(&a);
    net_free(&c);
    tg_release(x);
    tg_release(y);
    tg_release(vx);
    tg_release(vy);
}
END_TEST

/* A NaN loss stops at once: nothing saved, weights untouched. */
START_TEST(fit_non_finite_stops)
{
    tg_tensor *x, *y, *y9_unused;
    make_data(&x, &y, N, 1);
    ((float *)tg_tensor_data(x))[3] = NAN; /* in the first batch (no shuffle) */
    net m;
    net_new(&m, 5, 0, 0.01);
    net ref;
    net_new(&ref, 5, 0, 0.01);
    char path[300];
    snprintf(path, sizeof path, "%s/nan.h5", tmpdir);
    tg_fit_opts o = quiet_opts(&m, 2);
    o.shuffle = false;
    o.checkpoint_path = path;
    o.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO;
    tg_history h = TG_HISTORY_INIT;
    ck_assert_int_eq(tg_fit(&h, m.model, m.opt, x, y, &o), TG_ERR_RANGE);
    /* ReLU may hide the NaN from the loss: then the gradient is refused */
    TG_ASSERT_ERROR_HAS("tg_fit: stopped at epoch 1, step 1 (batch 1 of 3): ");
    TG_ASSERT_ERROR_HAS("nothing was saved after the last good step");
    TG_ASSERT_ERROR_HAS("keeps its previous state");
    ck_assert(access(path, F_OK) != 0);
    ck_assert(same_params(m.model, ref.model));
    ck_assert_int_eq(tg_optimizer_steps(m.opt), 0);
    ck_assert_int_eq(h.n, 0);
    tg_history_clear(&h);

    /* a NaN loss stops before backward; one good epoch was saved first */
    tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(N, CLASSES));
    ((float *)tg_tensor_data(t))[CLASSES * 20] = NAN; /* row 20: the second batch */
    tg_tensor *xg;
    make_data(&xg, &y9_unused, N, 1);
    o.loss = TG_LOSS_MSE;
    o.batch_size = 20; /* batches 0..19 (finite) and 20..39 */
    ck_assert_int_eq(tg_fit(&h, m.model, m.opt, xg, t, &o), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("stopped at epoch 1, step 2 (batch 2 of 2): the loss is NaN");
    ck_assert_int_eq(tg_optimizer_steps(m.opt), 1);
    ck_assert(access(path, F_OK) != 0); /* no epoch ended */
    tg_history_clear(&h);
    tg_release(t);
    tg_release(xg);
    tg_release(y9_unused);
    net_free(&m);
    net_free(&ref);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(fit_bad_options)
{
    tg_tensor *x, *y, *y9;
    make_data(&x, &y, N, 1);
    y9 = tg_zeros(TG_I64, TG_SHAPE(9));
    net m;
    net_new(&m, 5, 0, 0.01);
    tg_fit_opts o = quiet_opts(&m, 1);
    ck_assert_int_eq(tg_fit(NULL, NULL, m.opt, x, y, &o), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("'model' is NULL");
    ck_assert_int_eq(tg_fit(NULL, m.model, NULL, x, y, &o), TG_ERR_ARG);
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, NULL, &o), TG_ERR_ARG);
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y9, &o), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("x [40, 4] and y [9]");

    tg_fit_opts b = o;
    b.batch_size = 0;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("batch_size must be >= 1, got 0");
    b = o;
    b.epochs = 0;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("epochs");
    b = o;
    b.val_x = x;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("val_y");
    b.val_y = y9;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("val_x [40, 4] and val_y [9]");
    b = o;
    b.early_stopping.monitor = "val_los";
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("early_stopping.monitor \"val_los\" is not one of");
    b.early_stopping.monitor = "val_loss"; /* no validation data */
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("needs validation data");
    b = o;
    b.loss = TG_LOSS_MSE;
    b.lr_plateau = &(tg_lr_plateau_opts)TG_LR_PLATEAU_OPTS_INIT;
    b.lr_plateau_monitor = "accuracy";
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("needs the accuracy metric");
    b = o;
    b.checkpoint_path = "x.h5";
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("TG_CHECKPOINT_IO");
    b = o;
    b.resume = true;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("resume needs checkpoint_path");
    b = o;
    b.loss = TG_LOSS_CUSTOM;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("loss_fn is NULL");
    b = o;
    b.verbose = 3;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    b = o;
    b.n_callbacks = 2;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("n_callbacks");
    b = o;
    tg_lr_schedule bad = TG_LR_SCHEDULE_INIT;
    bad.lr = -1;
    b.lr_schedule = &bad;
    ck_assert_int_eq(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("lr_schedule");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.h5", tmpdir);
    b = o;
    b.checkpoint_path = missing;
    b.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO;
    b.resume = true;
    ck_assert_int_ne(tg_fit(NULL, m.model, m.opt, x, y, &b), TG_OK);
    TG_ASSERT_ERROR_HAS("cannot resume from");
    ck_assert_int_eq(tg_optimizer_steps(m.opt), 0); /* none of these trained */

    double l;
    ck_assert_int_eq(tg_evaluate(NULL, NULL, m.model, x, y, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_evaluate(&l, NULL, m.model, x, y9, NULL), TG_ERR_SHAPE);
    ck_assert(tg_predict(NULL, x, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    tg_fit_opts zb = o;
    zb.batch_size = -3;
    ck_assert(tg_predict(m.model, x, &zb) == NULL);
    TG_ASSERT_ERROR_HAS("tg_predict: batch_size");
    net_free(&m);
    tg_release(x);
    tg_release(y);
    tg_release(y9);
}
END_TEST

static TCase *fit_tcase(const char *name)
{
    TCase *tc = tg_tcase(name);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    return tc;
}

Suite *tg_suite(void)
{
    Suite *s = suite_create("fit");
    TCase *tc = fit_tcase("fit");
    tcase_add_test(tc, fit_learns);
    tcase_add_test(tc, fit_history_equals_evaluation);
    tcase_add_test(tc, fit_mse_and_user_loss);
    tcase_add_test(tc, fit_history_csv);
    suite_add_tcase(s, tc);
    tc = fit_tcase("callbacks");
    tcase_add_test(tc, fit_callbacks_order_and_stops);
    tcase_add_test(tc, fit_early_stopping_restores_best);
    tcase_add_test(tc, fit_lr_schedules);
    suite_add_tcase(s, tc);
    tc = fit_tcase("checkpoints");
    tcase_add_test(tc, fit_resume_mid_epoch_bit_exact);
    tcase_add_test(tc, fit_non_finite_stops);
    suite_add_tcase(s, tc);
    tc = fit_tcase("errors");
    tcase_add_test(tc, fit_bad_options);
    suite_add_tcase(s, tc);
    return s;
}
