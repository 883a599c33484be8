/* apps/fashion_cnn_transfer.c -- `fashion_cnn transfer`: transfer learning with
 * the tutorial model. The trained conv layer, frozen, feeds a fresh dense head
 * that learns a coarser labelling of the same images (tops, bottoms, footwear,
 * bags); the same network trained from scratch on the same batches is the
 * baseline. With little data and few steps the reused features win. Both
 * train through tg_fit (nn/fit.h), evaluated on the test set after every
 * epoch as its validation data. */
#include <string.h>

#include "fashion_cnn.h"

enum { COARSE_CLASSES = 4 };

/* Fashion-MNIST class -> coarse class. */
static const int64_t coarse_of[FC_CLASSES] = {
    0, /* T-shirt/top -> tops */
    1, /* Trouser     -> bottoms */
    0, /* Pullover    -> tops */
    1, /* Dress       -> bottoms */
    0, /* Coat        -> tops */
    2, /* Sandal      -> footwear */
    0, /* Shirt       -> tops */
    2, /* Sneaker     -> footwear */
    3, /* Bag         -> bags */
    2, /* Ankle boot  -> footwear */
};
static const char *const coarse_names[COARSE_CLASSES] = { "tops", "bottoms", "footwear", "bags" };

static const app_command transfer_cmd = {
    "transfer", "[options]",
    "Reuse the trained conv layer (frozen) for a new 4-class task, against training from scratch",
    "The new task groups the ten classes into four: tops (T-shirt/top, Pullover,\n"
    "Coat, Shirt), bottoms (Trouser, Dress), footwear (Sandal, Sneaker, Ankle boot)\n"
    "and bags (Bag). Two copies of the tutorial network with a 4-way output are\n"
    "trained on the same batches (same seed, same order, same dropout masks):\n"
    "  transfer  Conv2D loaded from --checkpoint and frozen (trainable = false),\n"
    "            a fresh dense head;\n"
    "  scratch   every layer freshly initialised and trained.\n"
    "After every epoch both are evaluated on the whole test set (coarse labels).\n"
    "With --reuse conv+dense the hidden Dense(128) layer is reused and frozen as\n"
    "well, and only the new 4-way output layer (516 weights) is trained.\n"
    "Deliberately little data by default (--limit 1000, 3 epochs) -- the regime\n"
    "where reusing learned features matters.",
};

/* A copy of ds with coarse labels (new references, not scoped). */
static bool coarsen(tg_dataset *out, const tg_dataset *ds)
{
    memset(out, 0, sizeof *out);
    tg_tensor *labels = tg_empty(TG_I64, TG_SHAPE(ds->count));
    tg_tensor *src = labels ? tg_tensor_to_dtype(ds->labels, TG_I64) : NULL;
    if (!src) {
        tg_release(labels);
        return false;
    }
    const int64_t *a = tg_tensor_data(src);
    int64_t *b = tg_tensor_data(labels);
    for (int64_t i = 0; i < ds->count; i++)
        b[i] = a[i] >= 0 && a[i] < FC_CLASSES ? coarse_of[a[i]] : -1;
    tg_release(src);
    out->images = tg_retain(ds->images);
    out->labels = labels;
    out->count = ds->count;
    return true;
}

typedef struct contender {
    const char *name;
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
    tg_history h;   /* per epoch: test loss and accuracy as val_loss, val_accuracy */
    double seconds; /* training time (validation left out) */
} contender;

static bool setup(contender *c, const char *name, uint64_t seed, double lr)
{
    c->name = name;
    tg_rng_seed(&c->rng, seed);
    c->model = fc_model_new(COARSE_CLASSES, &c->rng);
    size_t n = 0;
    tg_tensor *const *params = c->model ? tg_sequential_params(c->model, &n) : NULL;
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = lr;
    /* Created before any layer is frozen does not matter: frozen parameters are
     * skipped at each step (nn.h). */
    c->opt = params ? tg_optimizer_new_adam(params, n, &ao) : NULL;
    return c->opt != NULL;
}

static void teardown(contender *c)
{
    tg_history_clear(&c->h);
    tg_optimizer_free(c->opt);
    tg_sequential_free(c->model);
}

/* tg_fit's last step of an epoch: the epoch's training time so far. */
static tg_status count_seconds(const tg_fit_info *in, void *ctx, bool *stop)
{
    (void)stop;
    if (in->event == TG_FIT_BATCH_END && in->batch == in->steps)
        ((contender *)ctx)->seconds += in->logs.seconds;
    return TG_OK;
}

/* Trains c for all epochs, evaluating on test after each (tg_fit, silent). */
static bool train_all(contender *c, const tg_dataset *train, const tg_dataset *test,
                      int64_t epochs, int64_t batch_size)
{
    tg_fit_callback cb = { count_seconds, c };
    tg_fit_opts o = TG_FIT_OPTS_INIT;
    o.epochs = epochs;
    o.batch_size = batch_size;
    o.rng = &c->rng;
    o.input_dtype = TG_F32; /* u8 pixel -> pixel / 255, as a TG_F32 load gives */
    o.input_scale = 1.0 / 255;
    o.val_x = test->images;
    o.val_y = test->labels;
    o.validation_batch_size = FC_EVAL_BATCH;
    o.verbose = 0;
    o.callbacks = &cb;
    o.n_callbacks = 1;
    return tg_fit(&c->h, c->model, c->opt, train->images, train->labels, &o) == TG_OK &&
           c->h.n == epochs;
}

int fc_cmd_transfer(int argc, char **argv)
{
    const char *checkpoint = FC_DEFAULT_CHECKPOINT, *data = NULL;
    int64_t epochs = 3, limit = 1000, batch_size = 32, threads = 1;
    double lr = 1e-3;
    uint64_t seed = 42;
    const char *reuse = "conv";
    enum {
        TRANSFER_OPT_CHECKPOINT,
        TRANSFER_OPT_EPOCHS,
        TRANSFER_OPT_LIMIT,
        TRANSFER_OPT_BATCH_SIZE,
        TRANSFER_OPT_LR,
        TRANSFER_OPT_SEED,
        TRANSFER_OPT_THREADS,
        TRANSFER_OPT_DATA,
        TRANSFER_OPT_REUSE,
        TRANSFER_OPT_COUNT
    };
    app_opt opts[TRANSFER_OPT_COUNT] = {
        [TRANSFER_OPT_CHECKPOINT] = { "checkpoint", OPT_STR, &checkpoint, "FILE",
                                      "the trained tutorial model (default "
                                      FC_DEFAULT_CHECKPOINT ")", 0, 0, NULL, false },
        [TRANSFER_OPT_EPOCHS] = { "epochs", OPT_INT, &epochs, "N",
                                  "epochs for both models (default 3)", 1, 64, NULL, false },
        [TRANSFER_OPT_LIMIT] = { "limit", OPT_INT, &limit, "N",
                                 "training examples (default 1000)", 1, 1e12, NULL, false },
        [TRANSFER_OPT_BATCH_SIZE] = { "batch-size", OPT_INT, &batch_size, "N",
                                      "examples per step (default 32)", 1, 60000, NULL, false },
        [TRANSFER_OPT_LR] = { "lr", OPT_DOUBLE, &lr, "RATE",
                              "Adam's learning rate (default 0.001)", 0, 10, NULL, false },
        [TRANSFER_OPT_SEED] = { "seed", OPT_U64, &seed, "N", "seed of both runs (default 42)", 0,
                                0, NULL, false },
        [TRANSFER_OPT_THREADS] = { "threads", OPT_INT, &threads, "N",
                                   "threads (default: OMP_NUM_THREADS or all cores)", 1, 1024,
                                   NULL, false },
        [TRANSFER_OPT_DATA] = { "data", OPT_STR, &data, "DIR",
                                "Fashion-MNIST folder (default $" TG_FASHION_MNIST_ENV " or "
                                TG_FASHION_MNIST_DEFAULT_DIR ")", 0, 0, NULL, false },
        [TRANSFER_OPT_REUSE] = { "reuse", OPT_CHOICE, &reuse, "LAYERS",
                                 "layers reused and frozen: conv (default) or conv+dense", 0, 0,
                                 "conv|conv+dense", false },
    };
    int rc = app_parse(&transfer_cmd, opts, TRANSFER_OPT_COUNT, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (opts[TRANSFER_OPT_THREADS].given && tg_set_num_threads((int)threads) != TG_OK)
        return app_fail_tg("transfer", "cannot set the number of threads");

    /* The donor: the tutorial model with the checkpoint's weights. */
    tg_rng donor_rng;
    tg_rng_seed(&donor_rng, 0);
    tg_sequential *donor = fc_model_new(FC_CLASSES, &donor_rng);
    if (!donor)
        return app_fail_tg("transfer", "cannot build the model");
    if (fc_load_weights(donor, checkpoint, false) != TG_OK) {
        rc = app_fail("transfer", "cannot load the weights: %s", tg_last_error());
        tg_sequential_free(donor);
        return rc;
    }

    tg_dataset train10 = { 0 }, test10 = { 0 }, train = { 0 }, test = { 0 };
    contender cs[2];
    memset(cs, 0, sizeof cs);
    if (!fc_load_split(&train10, "transfer", data, TG_SPLIT_TRAIN, limit, TG_U8) ||
        !fc_load_split(&test10, "transfer", data, TG_SPLIT_TEST, 0, TG_U8)) {
        rc = EXIT_RUNTIME;
        goto done;
    }
    if (!coarsen(&train, &train10) || !coarsen(&test, &test10) ||
        !setup(&cs[0], "transfer", seed, lr) || !setup(&cs[1], "scratch", seed, lr)) {
        rc = app_fail_tg("transfer", "cannot set up the models");
        goto done;
    }
    bool with_dense = strcmp(reuse, "conv+dense") == 0;
    const int reused[] = { FC_LAYER_CONV, FC_LAYER_HIDDEN_DENSE };
    int n_reused = with_dense ? 2 : 1;
    for (int i = 0; i < n_reused; i++) {
        tg_layer *l = tg_sequential_layer(cs[0].model, reused[i]);
        if (tg_layer_copy_params(l, tg_sequential_layer(donor, reused[i])) != TG_OK ||
            tg_layer_set_trainable(l, false) != TG_OK) {
            rc = app_fail_tg("transfer", "cannot transfer the trained layers");
            goto done;
        }
    }

    int64_t steps = (train.count + batch_size - 1) / batch_size;
    printf("Task: 4 coarse classes --");
    for (int k = 0; k < COARSE_CLASSES; k++) {
        printf(" %s (", coarse_names[k]);
        bool first = true;
        for (int j = 0; j < FC_CLASSES; j++)
            if (coarse_of[j] == k) {
                printf("%s%s", first ? "" : ", ", tg_fashion_mnist_class_name(j));
                first = false;
            }
        printf(")%s", k + 1 < COARSE_CLASSES ? "," : ".\n");
    }
    printf("Training on %lld examples: %lld epoch%s of %lld steps (batch %lld); testing on %lld "
           "images.\n", (long long)train.count, (long long)epochs, epochs == 1 ? "" : "s",
           (long long)steps, (long long)batch_size, (long long)test.count);
    for (int i = 0; i < 2; i++) {
        int64_t total, trainable, frozen;
        tg_sequential_count_params(&total, &trainable, &frozen, cs[i].model);
        char a[32], b[32];
        printf("  %-8s %-44s %9s trainable, %7s frozen parameters\n", cs[i].name,
               i == 1 ? "(all layers new):"
               : with_dense ? "(conv2d and dense from the checkpoint, frozen):"
                            : "(conv2d from the checkpoint, frozen):",
               fc_thousands(a, sizeof a, trainable), fc_thousands(b, sizeof b, frozen));
    }
    printf("\n%5s %6s   %-27s %s\n", "epoch", "steps", "transfer: test acc (loss)",
           "scratch: test acc (loss)");
    fflush(stdout);
    /* One run after the other: each has its own generator, so the order
     * changes nothing (the same batches and dropout masks for both). */
    for (int i = 0; i < 2; i++) {
        if (!train_all(&cs[i], &train, &test, epochs, batch_size)) {
            rc = app_fail_tg("transfer", "training failed");
            goto done;
        }
    }
    for (int64_t e = 0; e < epochs; e++) {
        const tg_epoch_logs *a = &cs[0].h.epochs[e], *b = &cs[1].h.epochs[e];
        char t[32], s[32];
        snprintf(t, sizeof t, "%.4f (%.4f)", a->val_accuracy, a->val_loss);
        snprintf(s, sizeof s, "%.4f (%.4f)", b->val_accuracy, b->val_loss);
        printf("%5lld %6lld   %-27s %s\n", (long long)e + 1, (long long)(steps * (e + 1)), t, s);
    }
    double ta = cs[0].h.epochs[epochs - 1].val_accuracy;
    double sa = cs[1].h.epochs[epochs - 1].val_accuracy;
    printf("\nAfter %lld steps: transfer %.2f%%, scratch %.2f%% (%+.2f points); training time "
           "%.1fs vs %.1fs.\n", (long long)(steps * epochs), 100 * ta, 100 * sa, 100 * (ta - sa),
           cs[0].seconds, cs[1].seconds);
done:
    for (int i = 0; i < 2; i++)
        teardown(&cs[i]);
    tg_dataset_clear(&train);
    tg_dataset_clear(&test);
    tg_dataset_clear(&train10);
    tg_dataset_clear(&test10);
    tg_sequential_free(donor);
    return rc;
}
