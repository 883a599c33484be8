/* apps/fashion_cnn_train.c -- `fashion_cnn train`: the tutorial's model and
 * data handed to the library's tg_fit (nn/fit.h), which draws the Keras-style
 * progress, saves a checkpoint after every epoch, stops cleanly on Ctrl-C and
 * resumes bit for bit (mid-epoch included). What stays here: the options, the
 * checks of a checkpoint's settings against the flags, the signal handler and
 * the messages.
 *
 * One generator drives everything random (initial weights, each epoch's shuffle,
 * dropout masks) and is saved with the weights, the optimizer and the epoch's
 * order, so a resumed run takes exactly the steps the uninterrupted one would. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fashion_cnn.h"

static const app_command train_cmd = {
    "train", "[options]", "Train the tutorial CNN on Fashion-MNIST",
    "The model: Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Dropout(0.25) -> Flatten\n"
    "-> Dense(128, relu) -> Dense(10, softmax), sparse categorical cross-entropy,\n"
    "Adam (Keras defaults). After every epoch the full training state (weights,\n"
    "optimizer, generator, counters) is saved atomically to the checkpoint.\n"
    "Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves and exits 0;\n"
    "--resume continues from the checkpoint exactly as if never stopped. With\n"
    "--resume the batch size, --limit and seed come from the checkpoint; --epochs\n"
    "is the total to reach, --lr (if given) replaces the saved learning rate.\n"
    "On a terminal a progress bar is redrawn; otherwise one line per epoch.",
};

/* Set by the signal handler, read after every step. */
static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* SIGINT and SIGTERM are held (blocked) while the library computes and taken
 * only between steps, where the loop looks at the flag anyway, so the handler
 * never interrupts library code. The library does not need this (it holds
 * signals itself around the oneDNN kernels that cannot take them, ops/dnnl.c):
 * FASHION_CNN_HOLD_SIGNALS=0 turns the hold off, and tests/signals.sh checks
 * that runs then stay clean. They are blocked before any OpenMP thread exists,
 * so the threads inherit the mask and never take them. */
static sigset_t stop_signals;
static bool hold_signals = true;

static void install_handlers(void)
{
    const char *env = getenv("FASHION_CNN_HOLD_SIGNALS");
    hold_signals = !(env && strcmp(env, "0") == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (hold_signals)
        pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
}

/* Lets a pending SIGINT or SIGTERM run its handler now (it sets `interrupted`),
 * then holds them again. */
static void take_signals(void)
{
    if (!hold_signals)
        return;
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
}

/* ---------------------------------------------------------------- training state */

/* What the app keeps in the checkpoint beside tg_fit's entries (the settings a
 * resume must reuse; tg_fit adds the running sums and the epoch's order). */
typedef struct run_state {
    int64_t batch_size;
    int64_t limit;        /* 0: the whole training set */
} run_state;

static tg_status put_run_attrs(tg_state_dict *sd, const run_state *r)
{
    tg_status st = tg_state_dict_set_i64(sd, "batch_size", r->batch_size);
    return st != TG_OK ? st : tg_state_dict_set_i64(sd, "limit", r->limit);
}

static tg_status get_run_attrs(run_state *r, const tg_state_dict *sd)
{
    tg_status st = tg_state_dict_get_i64(&r->batch_size, sd, "batch_size");
    return st != TG_OK ? st : tg_state_dict_get_i64(&r->limit, sd, "limit");
}

/* tg_fit's state hook: the app's attributes go into every saved state. */
static tg_status run_attrs_hook(tg_state_dict *sd, void *ctx)
{
    return put_run_attrs(sd, ctx);
}

/* ---------------------------------------------------------------- the command */

/* The options of `train`, indices into the table in fc_cmd_train. */
enum train_opt {
    TRAIN_OPT_EPOCHS,
    TRAIN_OPT_BATCH_SIZE,
    TRAIN_OPT_LR,
    TRAIN_OPT_SEED,
    TRAIN_OPT_THREADS,
    TRAIN_OPT_DATA,
    TRAIN_OPT_LIMIT,
    TRAIN_OPT_CHECKPOINT,
    TRAIN_OPT_RESUME,
    TRAIN_OPT_VALIDATION,
    TRAIN_OPT_HISTORY,
    TRAIN_OPT_COUNT
};

typedef struct train_cfg {
    int64_t epochs, batch_size, threads, limit;
    double lr;
    uint64_t seed;
    const char *data, *checkpoint, *history, *validation;
    bool resume;
} train_cfg;

/* Appends " --flag 'value'" to buf, quoting for a POSIX shell. */
static void add_arg(char *buf, size_t n, const char *flag, const char *value)
{
    size_t o = strlen(buf);
    o += (size_t)snprintf(buf + o, n > o ? n - o : 0, " --%s", flag);
    if (!value)
        return;
    bool plain = *value != '\0';
    for (const char *c = value; *c; c++)
        if (!(strchr("-_./,:+=@%", *c) || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
              (*c >= 'A' && *c <= 'Z')))
            plain = false;
    if (plain) {
        snprintf(buf + o, n > o ? n - o : 0, " %s", value);
        return;
    }
    o += (size_t)snprintf(buf + o, n > o ? n - o : 0, " '");
    for (const char *c = value; *c && o + 6 < n; c++) {
        if (*c == '\'')
            o += (size_t)snprintf(buf + o, n - o, "'\\''");
        else
            buf[o++] = *c, buf[o] = '\0';
    }
    snprintf(buf + o, n > o ? n - o : 0, "'");
}

static void print_resume_hint(const train_cfg *c, const app_opt *opts)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s train", FC_PROG);
    add_arg(cmd, sizeof cmd, "resume", NULL);
    add_arg(cmd, sizeof cmd, "checkpoint", c->checkpoint);
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)c->epochs);
    add_arg(cmd, sizeof cmd, "epochs", num);
    /* What the checkpoint does not hold, as given. */
    for (int i = 0; i < TRAIN_OPT_COUNT; i++) {
        const app_opt *o = &opts[i];
        if (!o->given)
            continue;
        if (i == TRAIN_OPT_DATA || i == TRAIN_OPT_HISTORY || i == TRAIN_OPT_VALIDATION) {
            add_arg(cmd, sizeof cmd, o->name, *(const char *const *)o->dest);
        } else if (i == TRAIN_OPT_THREADS) {
            snprintf(num, sizeof num, "%lld", (long long)c->threads);
            add_arg(cmd, sizeof cmd, o->name, num);
        }
    }
    printf("Resume with: %s\n", cmd);
}

typedef struct train_ctx {
    train_cfg cfg;
    const app_opt *opts;
    tg_dataset train, test;
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
    FILE *history;
    tg_state_dict *probe;
    struct tg_checkpoint_lock *lock; /* held for the whole run */
} train_ctx;

static void ctx_free(train_ctx *x)
{
    if (x->history)
        fclose(x->history);
    tg_optimizer_free(x->opt);
    tg_sequential_free(x->model);
    tg_dataset_clear(&x->train);
    tg_dataset_clear(&x->test);
    tg_state_dict_free(x->probe);
    tg_checkpoint_unlock(x->lock);
}

/* Reads the checkpoint's attributes only (cheap, changes nothing) and settles
 * the run's settings against the flags. tg_fit checks the rest (its running
 * sums, the architecture, every tensor) when it resumes. */
static int probe_checkpoint(train_ctx *x, tg_train_progress *pr, run_state *r,
                            const app_opt *opts)
{
    const train_cfg *c = &x->cfg;
    if (access(c->checkpoint, F_OK) != 0)
        return app_fail("train", "cannot resume: checkpoint %s does not exist (train without "
                        "--resume to start a new run)", c->checkpoint);
    x->probe = tg_state_dict_new();
    if (!x->probe || tg_train_state_template(x->probe) != TG_OK || put_run_attrs(x->probe, r))
        return app_fail_tg("train", "out of memory");
    if (tg_checkpoint_load_into(c->checkpoint, x->probe) != TG_OK ||
        tg_train_state_progress(pr, x->probe) != TG_OK || get_run_attrs(r, x->probe) != TG_OK)
        return app_fail("train", "cannot resume from %s: %s", c->checkpoint, tg_last_error());
    /* The saved settings go where the flags would: the same bounds. */
    const char *bad = NULL;
    if (r->batch_size < 1 || r->batch_size > FC_MAX_BATCH)
        bad = "batch_size";
    else if (r->limit < 0 || r->limit > FC_MAX_LIMIT)
        bad = "limit";
    if (bad)
        return app_fail("train", "cannot resume from %s: its \"%s\" is out of range (a damaged "
                        "or foreign checkpoint)", c->checkpoint, bad);
    if (opts[TRAIN_OPT_BATCH_SIZE].given && c->batch_size != r->batch_size)
        return app_fail("train", "cannot resume: --batch-size %lld differs from the checkpoint's "
                        "%lld (drop the flag to continue with the saved one)",
                        (long long)c->batch_size, (long long)r->batch_size);
    if (opts[TRAIN_OPT_LIMIT].given && c->limit != r->limit)
        return app_fail("train", "cannot resume: --limit %lld differs from the checkpoint's %lld "
                        "(drop the flag to continue with the saved one)", (long long)c->limit,
                        (long long)r->limit);
    if (opts[TRAIN_OPT_SEED].given && c->seed != pr->seed)
        return app_fail("train", "cannot resume: --seed %llu differs from the checkpoint's %llu "
                        "(the generator's state is saved: drop the flag)",
                        (unsigned long long)c->seed, (unsigned long long)pr->seed);
    x->cfg.batch_size = r->batch_size;
    x->cfg.limit = r->limit;
    x->cfg.seed = pr->seed;
    return 0;
}

/* Fails fast, before the first epoch's work, when the checkpoint could not be
 * saved: its folder is not writable (a read-only file system, permissions), or
 * the path names something other than a regular file (a folder, a FIFO). This
 * is where the run's checkpoint path is settled; run() takes the advisory lock
 * (tg_checkpoint_lock) that keeps a second run off the same file right after. */
static int check_checkpoint_path(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        return app_fail("train", "cannot save the checkpoint %s: folder %s: %s", path, dir,
                        strerror(errno));
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return app_fail("train", "cannot save the checkpoint %s: it is %s, not a file", path,
                        S_ISDIR(sb.st_mode) ? "a folder" : "not a regular file");
    return 0;
}

static int open_history(train_ctx *x)
{
    if (!x->cfg.history)
        return 0;
    x->history = fopen(x->cfg.history, x->cfg.resume ? "a" : "w");
    if (!x->history)
        return app_fail("train", "cannot open the history file %s: %s", x->cfg.history,
                        strerror(errno));
    fseek(x->history, 0, SEEK_END);
    if (ftell(x->history) == 0)
        fprintf(x->history, "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n");
    fflush(x->history);
    return 0;
}

/* tg_fit's first event, after any resume: a --lr given to a resumed run
 * replaces the saved rate, and the run's header lines are printed. */
static tg_status on_train_begin(train_ctx *x, const tg_fit_info *in)
{
    const train_cfg *c = &x->cfg;
    if (c->resume && x->opts[TRAIN_OPT_LR].given && tg_optimizer_set_lr(x->opt, c->lr) != TG_OK)
        return tg_last_status();
    bool validate = strcmp(c->validation, "test") == 0;
    printf("Training on %lld examples, validating on %s; batch size %lld, %lld steps per epoch, "
           "%d thread%s, seed %llu.\n", (long long)x->train.count,
           validate ? "the 10000 test images" : "nothing (--validation none)",
           (long long)c->batch_size, (long long)in->steps, tg_get_num_threads(),
           tg_get_num_threads() == 1 ? "" : "s", (unsigned long long)c->seed);
    if (c->resume && in->batch)
        printf("Resuming from %s: epoch %lld at batch %lld of %lld (step %lld).\n",
               c->checkpoint, (long long)in->epoch + 1, (long long)in->batch,
               (long long)in->steps, (long long)in->step);
    else if (c->resume)
        printf("Resuming from %s after epoch %lld (step %lld).\n", c->checkpoint,
               (long long)in->epoch, (long long)in->step);
    printf("Checkpoint: %s, saved after every epoch. Ctrl-C saves and stops.\n", c->checkpoint);
    fflush(stdout);
    return TG_OK;
}

/* Every event: a held SIGINT/SIGTERM is let in after each step and epoch, just
 * before tg_fit looks at the stop flag. */
static tg_status on_event(const tg_fit_info *in, void *ctx, bool *stop)
{
    (void)stop;
    if (in->event == TG_FIT_TRAIN_BEGIN)
        return on_train_begin(ctx, in);
    if (in->event == TG_FIT_BATCH_END || in->event == TG_FIT_EPOCH_END)
        take_signals();
    return TG_OK;
}

/* The library's message without its "tg_fit: " (the app names itself). */
static const char *fit_message(void)
{
    const char *m = tg_last_error();
    return strncmp(m, "tg_fit: ", 8) == 0 ? m + 8 : m;
}

static int run(train_ctx *x, const app_opt *opts)
{
    train_cfg *c = &x->cfg;
    x->opts = opts;
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    run_state r = { c->batch_size, c->limit };
    int rc;
    if (c->resume && (rc = probe_checkpoint(x, &pr, &r, opts)) != 0)
        return rc;
    if (c->resume && pr.epoch >= c->epochs) {
        printf("%s already holds %lld trained epochs (--epochs %lld): nothing to do.\n",
               c->checkpoint, (long long)pr.epoch, (long long)c->epochs);
        return 0;
    }
    if ((rc = check_checkpoint_path(c->checkpoint)) != 0)
        return rc;
    /* One run per checkpoint: a second `train` on the same path stops here
     * instead of both saving and the last rename winning. */
    if (tg_checkpoint_lock(c->checkpoint, &x->lock) != TG_OK)
        return app_fail("train", "cannot train into %s: %s", c->checkpoint, tg_last_error());
    bool validate = strcmp(c->validation, "test") == 0;
    /* The images stay u8 (47 MB, not 188); tg_fit converts each batch, the
     * validation batches too, to the f32 a TG_F32 load gives (pixel / 255). */
    if (!fc_load_split(&x->train, "train", c->data, TG_SPLIT_TRAIN, c->limit, TG_U8) ||
        (validate && !fc_load_split(&x->test, "train", c->data, TG_SPLIT_TEST, 0, TG_U8)))
        return EXIT_RUNTIME;

    tg_rng_seed(&x->rng, c->seed);
    x->model = fc_model_new(FC_CLASSES, &x->rng);
    size_t n_params = 0;
    tg_tensor *const *params = x->model ? tg_sequential_params(x->model, &n_params) : NULL;
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = c->lr;
    x->opt = params ? tg_optimizer_new_adam(params, n_params, &ao) : NULL;
    if (!x->opt)
        return app_fail_tg("train", "cannot set up the model");
    if ((rc = open_history(x)) != 0)
        return rc;

    run_state attrs = { c->batch_size, c->limit };
    tg_fit_callback cb = { on_event, x };
    tg_fit_opts fo = TG_FIT_OPTS_INIT;
    fo.epochs = c->epochs;
    fo.batch_size = c->batch_size;
    fo.rng = &x->rng;
    fo.seed = c->seed;
    fo.input_dtype = TG_F32;
    fo.input_scale = 1.0 / 255;
    fo.val_x = validate ? x->test.images : NULL;
    fo.val_y = validate ? x->test.labels : NULL;
    fo.validation_batch_size = FC_EVAL_BATCH;
    fo.history_csv = x->history;
    fo.callbacks = &cb;
    fo.n_callbacks = 1;
    fo.checkpoint_path = c->checkpoint;
    fo.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO;
    fo.resume = c->resume;
    fo.state_hook = run_attrs_hook;
    fo.state_hook_ctx = &attrs;
    fo.stop_flag = &interrupted;
    tg_history h = TG_HISTORY_INIT;
    tg_status st = tg_fit(&h, x->model, x->opt, x->train.images, x->train.labels, &fo);
    if (st != TG_OK) {
        const char *m = fit_message();
        tg_history_clear(&h);
        if (st == TG_ERR_RANGE && strstr(m, "nothing was saved after the last good step"))
            return app_fail("train", "%s (a smaller --lr may help)", m);
        return app_fail("train", "%s", m);
    }
    if (h.end == TG_FIT_STOP_REQUESTED) {
        if (h.batch > 0)
            printf("Interrupted: saved the training state (epoch %lld, batch %lld of %lld) "
                   "to %s.\n", (long long)h.epoch + 1, (long long)h.batch, (long long)h.steps,
                   c->checkpoint);
        else
            printf("Interrupted: saved the training state after epoch %lld to %s.\n",
                   (long long)h.epoch, c->checkpoint);
        print_resume_hint(c, opts);
    } else {
        printf("Saved the training state after epoch %lld to %s.\n", (long long)c->epochs,
               c->checkpoint);
    }
    tg_history_clear(&h);
    return 0;
}

int fc_cmd_train(int argc, char **argv)
{
    install_handlers(); /* first: before the library starts any thread */
    train_ctx x;
    memset(&x, 0, sizeof x);
    train_cfg *c = &x.cfg;
    c->epochs = 10, c->batch_size = 32, c->lr = 1e-3, c->seed = 42;
    c->threads = tg_get_num_threads();
    c->checkpoint = FC_DEFAULT_CHECKPOINT;
    c->validation = "test";
    app_opt opts[TRAIN_OPT_COUNT] = {
        [TRAIN_OPT_EPOCHS] = { "epochs", OPT_INT, &c->epochs, "N",
                               "epochs to train in total (default 10)", 1, 100000, NULL, false },
        [TRAIN_OPT_BATCH_SIZE] = { "batch-size", OPT_INT, &c->batch_size, "N",
                                   "examples per step (default 32)", 1, FC_MAX_BATCH, NULL,
                                   false },
        [TRAIN_OPT_LR] = { "lr", OPT_DOUBLE, &c->lr, "RATE",
                           "Adam's learning rate (default 0.001)", 0, DBL_MAX, NULL, false },
        [TRAIN_OPT_SEED] = { "seed", OPT_U64, &c->seed, "N",
                             "seed of weights, shuffles, dropout (default 42)", 0, 0, NULL, false },
        [TRAIN_OPT_THREADS] = { "threads", OPT_INT, &c->threads, "N",
                                "threads (default: OMP_NUM_THREADS or all cores)", 1, 1024, NULL,
                                false },
        [TRAIN_OPT_DATA] = { "data", OPT_STR, &c->data, "DIR",
                             "Fashion-MNIST folder (default $" TG_FASHION_MNIST_ENV " or "
                             TG_FASHION_MNIST_DEFAULT_DIR ")", 0, 0, NULL, false },
        [TRAIN_OPT_LIMIT] = { "limit", OPT_INT, &c->limit, "N",
                              "train on the first N examples only (default all)", 1,
                              FC_MAX_LIMIT, NULL, false },
        [TRAIN_OPT_CHECKPOINT] = { "checkpoint", OPT_STR, &c->checkpoint, "FILE",
                                   "training state, saved every epoch (default "
                                   FC_DEFAULT_CHECKPOINT ")", 0, 0, NULL, false },
        [TRAIN_OPT_RESUME] = { "resume", OPT_FLAG, &c->resume, NULL,
                               "continue from the checkpoint", 0, 0, NULL, false },
        [TRAIN_OPT_VALIDATION] = { "validation", OPT_CHOICE, &c->validation, "SET",
                                   "evaluated after each epoch: test (default) or none", 0, 0,
                                   "test|none", false },
        [TRAIN_OPT_HISTORY] = { "history", OPT_STR, &c->history, "FILE",
                                "write per-epoch metrics as CSV (appended on --resume)", 0, 0, NULL,
                                false },
    };
    int rc = app_parse(&train_cmd, opts, TRAIN_OPT_COUNT, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (opts[TRAIN_OPT_THREADS].given && tg_set_num_threads((int)c->threads) != TG_OK)
        return app_fail_tg("train", "cannot set the number of threads");
    rc = run(&x, opts);
    ctx_free(&x);
    return rc;
}
