/* tests/test_resume.c -- exact resume of a training run (nn/train_state.c with
 * io's checkpoints), on small synthetic data and the tutorial network.
 *
 * Two epochs straight must give bit-identical weights, optimizer moments and
 * generator state to one epoch + save + load into fresh objects + one epoch
 * (and likewise when stopped in the middle of an epoch). A checkpoint of another
 * architecture, optimizer or a damaged state must fail clearly and change nothing. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"

enum { N_EXAMPLES = 48, BATCH = 16, CLASSES = 10 };

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_resume.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* Synthetic Fashion-MNIST-like data: noise plus a bright bar whose row encodes
 * the label, so the network has something to learn. New references. */
static void make_data(tg_tensor **x, tg_tensor **y)
{
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    *x = tg_rand_uniform(TG_F32, TG_SHAPE(N_EXAMPLES, 1, 28, 28), 0.0, 0.3, &rng);
    *y = tg_empty(TG_I64, TG_SHAPE(N_EXAMPLES));
    TG_CHECK(*x && *y);
    float *px = tg_tensor_data(*x);
    int64_t *py = tg_tensor_data(*y);
    for (int64_t i = 0; i < N_EXAMPLES; i++) {
        py[i] = (int64_t)tg_rng_below(&rng, CLASSES);
        for (int c = 2; c < 26; c++)
            px[i * 784 + (2 + 2 * py[i]) * 28 + c] = 1.0f;
    }
}

/* One training run: its generator, model, optimizer and batch iterator. */
typedef struct run {
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
    tg_batch_iter *it;
} run;

typedef struct arch {
    int filters;
    double dropout;
    bool sgd;
    bool moving_mean; /* a user-defined layer with a buffer after Flatten */
} arch;
static const arch tutorial = { 32, 0.25, false, false };

/* A user-defined layer: y = x * gain, with a buffer holding a moving mean of
 * its input that training mode updates (m = (m + mean_batch(x)) / 2), so a
 * resume is exact only if checkpoints carry the buffer. */
static tg_status mm_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                          int64_t *out_shape)
{
    if (!tg_layer_add_param(l, "gain", in_ndim, in_shape, TG_INIT_ONES) ||
        !tg_layer_add_buffer(l, "moving_mean", in_ndim, in_shape, 0.0))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *mm_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    if (!tg_tensor_is_contiguous(x))
        return tg_layer_error(l, TG_ERR_ARG, "wants a contiguous input"), NULL;
    if (ctx->training) {
        tg_tensor *mm = tg_layer_buffer(l, 0);
        float *m = tg_tensor_data(mm);
        const float *px = tg_tensor_data(x); /* Flatten's output: contiguous (N, F) */
        int64_t n = tg_tensor_dim(x, 0), f = tg_tensor_dim(x, 1);
        for (int64_t j = 0; j < f; j++) {
            double acc = 0;
            for (int64_t i = 0; i < n; i++)
                acc += px[i * f + j];
            m[j] = (float)((m[j] + acc / (double)n) / 2);
        }
        tg_tensor_bump_version(mm);
    }
    return tg_mul(x, tg_layer_param(l, 0));
}

static const tg_layer_vtable mm_vtable = {
    .class_name = "MovingMean", .base_name = "moving_mean", .build = mm_build,
    .forward = mm_forward,
};

static void run_new(run *r, uint64_t seed, const arch *a, tg_tensor *x, tg_tensor *y)
{
    memset(r, 0, sizeof *r);
    tg_rng_seed(&r->rng, seed);
    r->model = tg_sequential_new(TG_SHAPE(1, 28, 28));
    TG_CHECK(r->model);
    TG_OK_(tg_sequential_set_rng(r->model, &r->rng));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_conv2d(a->filters, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_max_pool2d(2, 2, NULL)));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_dropout(a->dropout)));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_flatten()));
    if (a->moving_mean)
        TG_OK_(tg_sequential_add(r->model, tg_layer_new(&mm_vtable, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_dense(128, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(r->model, tg_layer_new_dense(CLASSES, TG_ACT_SOFTMAX, NULL)));
    TG_OK_(tg_sequential_build(r->model));
    size_t n = 0;
    tg_tensor *const *p = tg_sequential_params(r->model, &n);
    TG_CHECK(p);
    r->opt = a->sgd ? tg_optimizer_new_sgd(p, n, NULL) : tg_optimizer_new_adam(p, n, NULL);
    TG_CHECK(r->opt);
    tg_batch_opts bo = TG_BATCH_OPTS_INIT;
    bo.batch_size = BATCH;
    r->it = tg_batch_iter_new(x, y, &bo, &r->rng);
    TG_CHECK(r->it);
}

static void run_free(run *r)
{
    tg_batch_iter_free(r->it);
    tg_optimizer_free(r->opt);
    tg_sequential_free(r->model);
}

/* Up to max_batches steps of the current epoch (-1: to its end). */
static void train(run *r, int max_batches)
{
    tg_tensor *x, *y;
    for (int b = 0; b != max_batches && tg_batch_iter_next(r->it, &x, &y); b++) {
        tg_scope *s = tg_scope_push();
        tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(r->model, x), y);
        TG_CHECK(loss);
        TG_OK_(tg_optimizer_zero_grad(r->opt));
        TG_OK_(tg_backward(loss));
        TG_OK_(tg_optimizer_step(r->opt));
        tg_scope_pop(s);
    }
}

static void train_epoch(run *r)
{
    TG_OK_(tg_batch_iter_start_epoch(r->it));
    train(r, -1);
}

static tg_state_dict *export_run(run *r, const tg_train_progress *pr)
{
    tg_state_dict *sd = tg_state_dict_new();
    TG_CHECK(sd);
    TG_OK_(tg_train_state_export(sd, r->model, r->opt, &r->rng, pr));
    return sd;
}

static void save_run(run *r, const tg_train_progress *pr, const char *path, bool with_order)
{
    tg_state_dict *sd = export_run(r, pr);
    if (with_order) {
        tg_tensor *o = tg_from_data(TG_I64, TG_SHAPE(tg_batch_iter_count(r->it)),
                                    tg_batch_iter_order(r->it));
        TG_CHECK(o);
        TG_OK_(tg_state_dict_set(sd, "data/order", o));
        tg_release(o);
    }
    TG_OK_(tg_checkpoint_save(path, sd));
    tg_state_dict_free(sd);
}

/* What the app does: attributes first (check, nothing loaded), then everything. */
static void load_run(run *r, tg_train_progress *pr, const char *path, bool with_order)
{
    tg_state_dict *probe = tg_state_dict_new();
    TG_OK_(tg_train_state_template(probe));
    TG_OK_(tg_checkpoint_load_into(path, probe));
    TG_OK_(tg_train_state_check(probe, r->model, r->opt));
    tg_state_dict_free(probe);

    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT;
    tg_state_dict *sd = export_run(r, &zero);
    tg_tensor *order = NULL;
    if (with_order) {
        order = tg_zeros(TG_I64, TG_SHAPE(tg_batch_iter_count(r->it)));
        TG_OK_(tg_state_dict_set(sd, "data/order", order));
    }
    TG_OK_(tg_checkpoint_load_into(path, sd));
    TG_OK_(tg_train_state_import(pr, r->model, r->opt, &r->rng, sd));
    if (with_order)
        TG_OK_(tg_batch_iter_resume(r->it, tg_tensor_data(order), pr->batch));
    tg_release(order);
    tg_state_dict_free(sd);
}

/* Every tensor of both runs' state dicts (parameters and optimizer slots) and the
 * generators must be bit-identical. */
static void assert_same_state(run *a, run *b)
{
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    tg_state_dict *da = export_run(a, &pr), *db = export_run(b, &pr);
    ck_assert_uint_eq(tg_state_dict_size(da), tg_state_dict_size(db));
    ck_assert_uint_ge(tg_state_dict_size(da), 13); /* 6 params, 12 moments, rng */
    for (size_t i = 0; i < tg_state_dict_size(da); i++) {
        const char *name = tg_state_dict_name_at(da, i);
        ck_assert_str_eq(name, tg_state_dict_name_at(db, i));
        tg_tensor *ta = tg_state_dict_tensor_at(da, i), *tb = tg_state_dict_tensor_at(db, i);
        ck_assert(tg_tensor_same_shape(ta, tb));
        ck_assert_msg(memcmp(tg_tensor_data(ta), tg_tensor_data(tb), tg_tensor_nbytes(ta)) == 0,
                      "%s differs between the straight and the resumed run", name);
    }
    ck_assert_int_eq(tg_optimizer_steps(a->opt), tg_optimizer_steps(b->opt));
    ck_assert_mem_eq(a->rng.s, b->rng.s, sizeof a->rng.s);
    tg_state_dict_free(da);
    tg_state_dict_free(db);
}

/* Copies of every tensor of a run's state (to prove later that nothing changed). */
static tg_state_dict *snapshot(run *r)
{
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    tg_state_dict *live = export_run(r, &pr), *copy = tg_state_dict_new();
    for (size_t i = 0; i < tg_state_dict_size(live); i++) {
        tg_tensor *c = tg_tensor_copy(tg_state_dict_tensor_at(live, i));
        TG_CHECK(c);
        TG_OK_(tg_state_dict_set(copy, tg_state_dict_name_at(live, i), c));
        tg_release(c);
    }
    TG_OK_(tg_state_dict_set_i64(copy, "opt_steps", tg_optimizer_steps(r->opt)));
    tg_state_dict_free(live);
    return copy;
}

static void assert_unchanged(run *r, tg_state_dict *before)
{
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    tg_state_dict *now = export_run(r, &pr);
    ck_assert_uint_eq(tg_state_dict_size(now), tg_state_dict_size(before));
    for (size_t i = 0; i < tg_state_dict_size(now); i++) {
        tg_tensor *a = tg_state_dict_tensor_at(now, i), *b = tg_state_dict_tensor_at(before, i);
        ck_assert_msg(memcmp(tg_tensor_data(a), tg_tensor_data(b), tg_tensor_nbytes(a)) == 0,
                      "%s changed by a failed load", tg_state_dict_name_at(now, i));
    }
    int64_t steps = -1;
    TG_OK_(tg_state_dict_get_i64(&steps, before, "opt_steps"));
    ck_assert_int_eq(tg_optimizer_steps(r->opt), steps);
    tg_state_dict_free(now);
}

/* ---------------------------------------------------------------- exact resume */

/* _i threads for every run of the test (the same in the straight and the resumed
 * run: the reductions' partition depends on it). */
/* A model with a buffer resumes exactly: the buffer travels in the checkpoint
 * as "model/moving_mean/moving_mean", and a model without that layer refuses it. */
START_TEST(resume_with_buffer_is_exact)
{
    make_tmpdir();
    tg_tensor *x, *y;
    make_data(&x, &y);
    char path[300];
    tmp_path(path, sizeof path, "buffer.h5");
    const arch with_mm = { 8, 0.25, false, true };

    run a;
    run_new(&a, 77, &with_mm, x, y);
    train_epoch(&a);
    train_epoch(&a);

    run b;
    run_new(&b, 77, &with_mm, x, y);
    train_epoch(&b);
    tg_train_progress pr = { 1, 0, tg_optimizer_steps(b.opt), 77 };
    save_run(&b, &pr, path, false);
    tg_tensor *saved = tg_tensor_copy(tg_layer_buffer(tg_sequential_layer(b.model, 4), 0));
    TG_CHECK(saved);
    ck_assert(tg_get(saved, (const int64_t[]){ 30 }) != 0); /* a bar pixel's mean moved */
    run_free(&b);

    tg_state_dict *full = NULL;
    TG_OK_(tg_checkpoint_load(&full, path));
    TG_CHECK(tg_state_dict_has(full, "model/moving_mean/moving_mean"));
    ck_assert(!tg_state_dict_has(full, "optimizer/model/moving_mean/moving_mean/m"));
    ck_assert_mem_eq(tg_tensor_data(tg_state_dict_get(full, "model/moving_mean/moving_mean")),
                     tg_tensor_data(saved), tg_tensor_nbytes(saved));
    tg_state_dict_free(full);

    run c;
    run_new(&c, 5, &with_mm, x, y);
    tg_train_progress got = TG_TRAIN_PROGRESS_INIT;
    load_run(&c, &got, path, false);
    train_epoch(&c);
    assert_same_state(&a, &c);

    /* Without the layer: the architecture differs, and nothing changes. */
    run d;
    run_new(&d, 5, &tutorial, x, y);
    tg_state_dict *before = snapshot(&d);
    TG_OK_(tg_checkpoint_load(&full, path));
    ck_assert_int_eq(tg_train_state_import(&got, d.model, d.opt, &d.rng, full), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("different model architecture");
    assert_unchanged(&d, before);
    tg_state_dict_free(full);
    tg_state_dict_free(before);

    tg_release(saved);
    run_free(&a);
    run_free(&c);
    run_free(&d);
    tg_release(x);
    tg_release(y);
    remove_tmpdir();
}
END_TEST

START_TEST(resume_after_epoch_is_exact)
{
    int prev_threads = tg_get_num_threads();
    TG_OK_(tg_set_num_threads(_i));
    make_tmpdir();
    tg_tensor *x, *y;
    make_data(&x, &y);
    char path[300];
    tmp_path(path, sizeof path, "state.h5");

    run a;
    run_new(&a, 1234, &tutorial, x, y);
    train_epoch(&a);
    train_epoch(&a);

    run b;
    run_new(&b, 1234, &tutorial, x, y);
    train_epoch(&b);
    tg_train_progress pr = { 1, 0, tg_optimizer_steps(b.opt), 1234 };
    save_run(&b, &pr, path, false);
    run_free(&b);

    /* Fresh objects from another seed: everything must come from the file. */
    run c;
    run_new(&c, 999, &tutorial, x, y);
    tg_train_progress got = TG_TRAIN_PROGRESS_INIT;
    load_run(&c, &got, path, false);
    ck_assert_int_eq(got.epoch, 1);
    ck_assert_int_eq(got.batch, 0);
    ck_assert_int_eq(got.step, (N_EXAMPLES + BATCH - 1) / BATCH);
    ck_assert_uint_eq(got.seed, 1234);
    train_epoch(&c);
    assert_same_state(&a, &c);

    /* And training goes on identically afterwards (the generators agree). */
    train_epoch(&a);
    train_epoch(&c);
    assert_same_state(&a, &c);

    run_free(&a);
    run_free(&c);
    tg_release(x);
    tg_release(y);
    remove_tmpdir();
    TG_OK_(tg_set_num_threads(prev_threads));
}
END_TEST

START_TEST(resume_mid_epoch_is_exact)
{
    make_tmpdir();
    tg_tensor *x, *y;
    make_data(&x, &y);
    char path[300];
    tmp_path(path, sizeof path, "state.h5");

    run a;
    run_new(&a, 77, &tutorial, x, y);
    train_epoch(&a);
    train_epoch(&a);

    run b;
    run_new(&b, 77, &tutorial, x, y);
    train_epoch(&b);
    TG_OK_(tg_batch_iter_start_epoch(b.it));
    train(&b, 2);
    tg_train_progress pr = { 1, tg_batch_iter_position(b.it), tg_optimizer_steps(b.opt), 77 };
    ck_assert_int_eq(pr.batch, 2);
    save_run(&b, &pr, path, true);
    run_free(&b);

    run c;
    run_new(&c, 5, &tutorial, x, y);
    tg_train_progress got = TG_TRAIN_PROGRESS_INIT;
    load_run(&c, &got, path, true);
    ck_assert_int_eq(got.batch, 2);
    train(&c, -1); /* the rest of epoch 2 */
    assert_same_state(&a, &c);

    run_free(&a);
    run_free(&c);
    tg_release(x);
    tg_release(y);
    remove_tmpdir();
}
END_TEST

/* Without restoring the generator the run diverges: the test can fail. */
START_TEST(resume_without_rng_diverges)
{
    tg_tensor *x, *y;
    make_data(&x, &y);
    run a, b;
    run_new(&a, 3, &tutorial, x, y);
    run_new(&b, 3, &tutorial, x, y);
    train_epoch(&a);
    train_epoch(&b);
    tg_rng_seed(&b.rng, 4); /* a resume that forgot the generator */
    train_epoch(&a);
    train_epoch(&b);
    tg_tensor *ka = tg_layer_param_by_name(tg_sequential_layer(a.model, 0), "kernel");
    tg_tensor *kb = tg_layer_param_by_name(tg_sequential_layer(b.model, 0), "kernel");
    ck_assert(memcmp(tg_tensor_data(ka), tg_tensor_data(kb), tg_tensor_nbytes(ka)) != 0);
    run_free(&a);
    run_free(&b);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- the dict */

START_TEST(export_layout)
{
    tg_tensor *x, *y;
    make_data(&x, &y);
    run r;
    run_new(&r, 1, &tutorial, x, y);
    tg_rng_seed(&r.rng, 42);
    uint64_t words[4];
    memcpy(words, r.rng.s, sizeof words);
    tg_train_progress pr = { 3, 5, 17, UINT64_MAX - 1 }; /* a seed above INT64_MAX */
    tg_state_dict *sd = export_run(&r, &pr);

    for (const char *const *n = (const char *const[]){ "model/conv2d/kernel", "model/conv2d/bias",
                                                        "model/dense/kernel", "model/dense_1/bias",
                                                        "optimizer/sequential/conv2d/kernel/m",
                                                        "optimizer/sequential/dense_1/bias/v",
                                                        "rng/state",
                                                        NULL };
         *n; n++)
        ck_assert_msg(tg_state_dict_has(sd, *n), "no entry %s", *n);
    tg_tensor *rs = tg_state_dict_get(sd, TG_TRAIN_STATE_RNG_KEY);
    ck_assert_int_eq(tg_tensor_dtype(rs), TG_I64);
    ck_assert_int_eq(tg_tensor_numel(rs), 4);
    ck_assert_mem_eq(tg_tensor_data(rs), words, sizeof words);
    /* The parameters are live: the dict sees the model's tensors themselves. */
    ck_assert_ptr_eq(tg_state_dict_get(sd, "model/conv2d/kernel"),
                     tg_layer_param_by_name(tg_sequential_layer(r.model, 0), "kernel"));
    const char *s = NULL;
    TG_OK_(tg_state_dict_get_str(&s, sd, "optimizer/type"));
    ck_assert_str_eq(s, "adam");
    TG_OK_(tg_state_dict_get_str(&s, sd, "model/architecture"));
    ck_assert_ptr_nonnull(strstr(s, "\"Conv2D\""));

    tg_train_progress back;
    TG_OK_(tg_train_state_progress(&back, sd));
    ck_assert_int_eq(back.epoch, 3);
    ck_assert_int_eq(back.batch, 5);
    ck_assert_int_eq(back.step, 17);
    ck_assert_uint_eq(back.seed, UINT64_MAX - 1);

    /* The template has the attributes only. */
    tg_state_dict *t = tg_state_dict_new();
    TG_OK_(tg_train_state_template(t));
    ck_assert_uint_eq(tg_state_dict_size(t), 0);
    ck_assert_uint_eq(tg_state_dict_attr_count(t), 6);
    ck_assert_int_eq(tg_train_state_check(t, r.model, r.opt), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("different model architecture");

    /* NULL arguments. */
    ck_assert_int_eq(tg_train_state_export(NULL, r.model, r.opt, NULL, &pr), TG_ERR_ARG);
    ck_assert_int_eq(tg_train_state_export(sd, r.model, NULL, NULL, &pr), TG_ERR_ARG);
    ck_assert_int_eq(tg_train_state_import(&back, NULL, r.opt, NULL, sd), TG_ERR_ARG);
    ck_assert_int_eq(tg_train_state_progress(NULL, sd), TG_ERR_ARG);
    ck_assert_int_eq(tg_train_state_check(sd, r.model, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_train_state_template(NULL), TG_ERR_ARG);

    tg_state_dict_free(t);
    tg_state_dict_free(sd);
    run_free(&r);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* ---------------------------------------------------------------- mismatches */

START_TEST(other_architecture_changes_nothing)
{
    make_tmpdir();
    tg_tensor *x, *y;
    make_data(&x, &y);
    char path[300];
    tmp_path(path, sizeof path, "small.h5");

    /* A checkpoint of a model with 16 filters. */
    const arch small = { 16, 0.25, false, false };
    run s;
    run_new(&s, 1, &small, x, y);
    train_epoch(&s);
    tg_train_progress pr = { 1, 0, tg_optimizer_steps(s.opt), 1 };
    save_run(&s, &pr, path, false);
    run_free(&s);

    run r;
    run_new(&r, 2, &tutorial, x, y);
    train(&r, 1);
    tg_state_dict *before = snapshot(&r);
    uint64_t words[4];
    memcpy(words, r.rng.s, sizeof words);

    /* The attributes tell at once ... */
    tg_state_dict *probe = tg_state_dict_new();
    TG_OK_(tg_train_state_template(probe));
    TG_OK_(tg_checkpoint_load_into(path, probe));
    ck_assert_int_eq(tg_train_state_check(probe, r.model, r.opt), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("different model architecture");
    TG_ASSERT_ERROR_HAS("\"filters\": 16");
    tg_state_dict_free(probe);

    /* ... and loading the tensors regardless fails on the shapes, loading nothing. */
    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT, got = { 9, 9, 9, 9 };
    tg_state_dict *sd = export_run(&r, &zero);
    ck_assert_int_ne(tg_checkpoint_load_into(path, sd), TG_OK);
    TG_ASSERT_ERROR_HAS("model/conv2d/kernel");
    tg_state_dict_free(sd);
    assert_unchanged(&r, before);

    /* Importing a dict read in full fails in the check, before any change. */
    tg_state_dict *full = NULL;
    TG_OK_(tg_checkpoint_load(&full, path));
    ck_assert_int_eq(tg_train_state_import(&got, r.model, r.opt, &r.rng, full), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("different model architecture");
    ck_assert_int_eq(got.epoch, 9);
    assert_unchanged(&r, before);
    ck_assert_mem_eq(r.rng.s, words, sizeof words);
    tg_state_dict_free(full);

    /* Same shapes, another dropout rate: only the architecture tells. */
    tmp_path(path, sizeof path, "dropout.h5");
    const arch drop = { 32, 0.5, false, false };
    run_new(&s, 1, &drop, x, y);
    save_run(&s, &pr, path, false);
    run_free(&s);
    TG_OK_(tg_checkpoint_load(&full, path));
    ck_assert_int_eq(tg_train_state_import(&got, r.model, r.opt, &r.rng, full), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("\"rate\": 0.5");
    assert_unchanged(&r, before);
    tg_state_dict_free(full);

    /* Another optimizer. */
    tmp_path(path, sizeof path, "sgd.h5");
    const arch sgd = { 32, 0.25, true, false };
    run_new(&s, 1, &sgd, x, y);
    save_run(&s, &pr, path, false);
    run_free(&s);
    TG_OK_(tg_checkpoint_load(&full, path));
    ck_assert_int_eq(tg_train_state_import(&got, r.model, r.opt, &r.rng, full), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("\"sgd\" optimizer");
    assert_unchanged(&r, before);
    tg_state_dict_free(full);

    tg_state_dict_free(before);
    run_free(&r);
    tg_release(x);
    tg_release(y);
    remove_tmpdir();
}
END_TEST

/* Damaged states, each rejected before anything changes. */
enum { BAD_NO_RNG, BAD_RNG_DTYPE, BAD_RNG_ZERO, BAD_EPOCH, BAD_EXTRA_PARAM, BAD_NO_PARAM,
       BAD_PARAM_SHAPE, BAD_NO_MOMENT, BAD_EPOCH_MAX, BAD_STEP_MAX, BAD_BATCH_PAST_STEP,
       BAD_OPT_STEP_MAX, BAD_COUNT };

START_TEST(damaged_state_changes_nothing)
{
    tg_tensor *x, *y;
    make_data(&x, &y);
    run src, r;
    run_new(&src, 11, &tutorial, x, y);
    train(&src, 1);
    run_new(&r, 12, &tutorial, x, y);
    train(&r, 2);
    tg_state_dict *before = snapshot(&r);
    uint64_t words[4];
    memcpy(words, r.rng.s, sizeof words);

    /* A copy of src's state (so the damage does not touch src itself). */
    tg_train_progress pr = { 1, 0, 1, 11 };
    tg_state_dict *live = export_run(&src, &pr), *sd = tg_state_dict_new();
    for (size_t i = 0; i < tg_state_dict_size(live); i++) {
        const char *name = tg_state_dict_name_at(live, i);
        tg_tensor *t = tg_state_dict_tensor_at(live, i);
        if ((_i == BAD_NO_RNG && strcmp(name, "rng/state") == 0) ||
            (_i == BAD_NO_PARAM && strcmp(name, "model/dense/bias") == 0) ||
            (_i == BAD_NO_MOMENT && strcmp(name, "optimizer/sequential/dense/kernel/v") == 0))
            continue;
        tg_tensor *c = tg_tensor_copy(t);
        if (_i == BAD_RNG_DTYPE && strcmp(name, "rng/state") == 0) {
            tg_release(c);
            c = tg_tensor_to_dtype(t, TG_F64);
        } else if (_i == BAD_RNG_ZERO && strcmp(name, "rng/state") == 0)
            TG_OK_(tg_tensor_fill(c, 0));
        else if (_i == BAD_PARAM_SHAPE && strcmp(name, "model/dense_1/bias") == 0) {
            tg_release(c);
            c = tg_zeros(TG_F32, TG_SHAPE(11));
        }
        TG_OK_(tg_state_dict_set(sd, name, c));
        tg_release(c);
    }
    for (size_t i = 0; i < tg_state_dict_attr_count(live); i++) {
        const char *name = tg_state_dict_attr_name_at(live, i);
        int64_t v;
        double d;
        const char *s;
        switch (tg_state_dict_attr_type_at(live, i)) {
        case TG_ATTR_I64:
            TG_OK_(tg_state_dict_get_i64(&v, live, name));
            if (_i == BAD_EPOCH && !strcmp(name, "epoch"))
                v = -1;
            else if ((_i == BAD_EPOCH_MAX && !strcmp(name, "epoch")) ||
                     (_i == BAD_STEP_MAX && !strcmp(name, "step")) ||
                     (_i == BAD_OPT_STEP_MAX && !strcmp(name, "optimizer/step")))
                v = INT64_MAX;
            else if (_i == BAD_BATCH_PAST_STEP && !strcmp(name, "batch"))
                v = 2; /* the state says step 1 */
            TG_OK_(tg_state_dict_set_i64(sd, name, v));
            break;
        case TG_ATTR_F64:
            TG_OK_(tg_state_dict_get_f64(&d, live, name));
            TG_OK_(tg_state_dict_set_f64(sd, name, d));
            break;
        case TG_ATTR_STR:
            TG_OK_(tg_state_dict_get_str(&s, live, name));
            TG_OK_(tg_state_dict_set_str(sd, name, s));
            break;
        }
    }
    tg_state_dict_free(live);
    if (_i == BAD_EXTRA_PARAM) {
        tg_tensor *z = tg_zeros(TG_F32, TG_SHAPE(3));
        TG_OK_(tg_state_dict_set(sd, "model/dense_9/bias", z));
        tg_release(z);
    }

    static const char *const expect[BAD_COUNT] = {
        "rng/state", "rng/state", "all zeros", "\"epoch\" is negative", "dense_9/bias",
        "model/dense/bias", "model/dense_1/bias", "optimizer/sequential/dense/kernel/v",
        "\"epoch\" is 9223372036854775807, above the largest counter (2^53)",
        "\"step\" is 9223372036854775807, above the largest counter (2^53)",
        "\"batch\" (2) is greater than \"step\" (1)",
        "'optimizer/step' = 9223372036854775807 is out of range (0 to 2^53)",
    };
    tg_train_progress got = { 9, 9, 9, 9 };
    tg_status st = tg_train_state_import(&got, r.model, r.opt, &r.rng, sd);
    if (st == TG_OK) {
        /* What a training loop does next: with a counter at INT64_MAX accepted (the
         * old code) these are signed overflows, which UBSan reports. */
        got.step++;
        got.epoch++;
        tg_optimizer_step(r.opt);
    }
    ck_assert_int_ne(st, TG_OK);
    TG_ASSERT_ERROR_HAS(expect[_i]);
    /* the generator-state messages, whole */
    static const char *const whole[BAD_COUNT] = {
        [BAD_NO_RNG] = "tg_train_state_import: no entry \"rng/state\" (nothing loaded)",
        [BAD_RNG_DTYPE] = "tg_train_state_import: \"rng/state\" must be i64 [4], got f64 [4] "
                          "(nothing loaded)",
        [BAD_RNG_ZERO] = "tg_train_state_import: \"rng/state\" is all zeros, not a generator "
                         "state (nothing loaded)",
    };
    if (whole[_i])
        ck_assert_str_eq(tg_last_error(), whole[_i]);
    ck_assert_int_eq(got.epoch, 9);
    assert_unchanged(&r, before);
    ck_assert_mem_eq(r.rng.s, words, sizeof words);

    tg_state_dict_free(sd);
    tg_state_dict_free(before);
    run_free(&src);
    run_free(&r);
    tg_release(x);
    tg_release(y);
}
END_TEST

Suite *tg_suite(void)
{
    /* One thread unless a test says otherwise: cheap on a busy CI machine, where
     * OpenMP threads waiting for a descheduled peer cost more than they gain. */
    tg_set_num_threads(1);
    Suite *s = suite_create("resume");
    TCase *tc = tg_tcase("exact");
    tcase_add_loop_test(tc, resume_after_epoch_is_exact, 1, 3); /* 1 and 2 threads */
    tcase_add_test(tc, resume_mid_epoch_is_exact);
    tcase_add_test(tc, resume_without_rng_diverges);
    tcase_add_test(tc, resume_with_buffer_is_exact);
    suite_add_tcase(s, tc);
    tc = tg_tcase("state_dict");
    tcase_add_test(tc, export_layout);
    suite_add_tcase(s, tc);
    tc = tg_tcase("mismatch");
    tcase_add_test(tc, other_architecture_changes_nothing);
    tcase_add_loop_test(tc, damaged_state_changes_nothing, 0, BAD_COUNT);
    suite_add_tcase(s, tc);
    return s;
}
