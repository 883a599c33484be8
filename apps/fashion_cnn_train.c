/* apps/fashion_cnn_train.c -- `fashion_cnn train`: the training loop of the
 * tutorial with Keras-style progress, a checkpoint after every epoch, Ctrl-C
 * that saves, and --resume that continues bit for bit (mid-epoch included).
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

/* ---------------------------------------------------------------- progress */

typedef struct progress {
    bool tty;
    int64_t total;      /* steps in the epoch */
    double t0;          /* when this process started the epoch's steps */
    double earlier;     /* seconds of this epoch spent before a resume */
    int64_t done0;      /* steps done before this process started (resume) */
    double last_draw;
    int last_len;
} progress;

static void fmt_duration(char *buf, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

static void fmt_per_step(char *buf, size_t n, double s)
{
    if (s >= 1)
        snprintf(buf, n, "%.0fs/step", s);
    else if (s >= 1e-3)
        snprintf(buf, n, "%.0fms/step", s * 1e3);
    else
        snprintf(buf, n, "%.0fus/step", s * 1e6);
}

/* "  340/1875 [====>.........................]" as Keras draws it. */
static int bar(char *buf, size_t n, int64_t done, int64_t total)
{
    char tot[32];
    int digits = snprintf(tot, sizeof tot, "%lld", (long long)total);
    int w = (int)(30 * done / (total ? total : 1));
    char b[31];
    for (int i = 0; i < 30; i++)
        b[i] = i < w - 1 ? '=' : i == w - 1 ? (done < total ? '>' : '=') : '.';
    b[30] = '\0';
    return snprintf(buf, n, "%*lld/%s [%s]", digits, (long long)done, tot, b);
}

static void draw(progress *p, const char *line)
{
    int len = (int)strlen(line);
    int pad = p->last_len > len ? p->last_len - len : 0;
    printf("\r%s%*s", line, pad, "");
    fflush(stdout);
    p->last_len = len;
}

/* " - 12s 6ms/step - loss: 0.2712 - accuracy: 0.9012" */
static int finished(char *buf, size_t n, const progress *p, double train_s, double epoch_s,
                    double loss, double acc)
{
    char dur[32], per[32];
    fmt_duration(dur, sizeof dur, epoch_s);
    fmt_per_step(per, sizeof per, train_s / (double)(p->total ? p->total : 1));
    return snprintf(buf, n, " - %s %s - loss: %.4f - accuracy: %.4f", dur, per, loss, acc);
}

/* While the epoch runs: redrawn at most 10 times a second, on a terminal only.
 * The last step draws the finished bar, which stays while validation runs. */
static void progress_step(progress *p, int64_t done, double loss, double acc)
{
    if (!p->tty)
        return;
    double now = fc_now();
    if (done < p->total && now - p->last_draw < 0.1)
        return;
    p->last_draw = now;
    char line[256], eta[32];
    int o = bar(line, sizeof line, done, p->total);
    if (done >= p->total) {
        double t = p->earlier + now - p->t0;
        finished(line + o, sizeof line - (size_t)o, p, t, t, loss, acc);
    } else {
        double per = (now - p->t0) / (double)(done - p->done0 > 0 ? done - p->done0 : 1);
        fmt_duration(eta, sizeof eta, per * (double)(p->total - done));
        snprintf(line + o, sizeof line - (size_t)o, " - ETA: %s - loss: %.4f - accuracy: %.4f",
                 eta, loss, acc);
    }
    draw(p, line);
}

/* The epoch's last line: "1875/1875 [======] - 12s 6ms/step - loss ... - val_...";
 * the time is the epoch's including validation, the time per step training's. */
static void progress_end(progress *p, int64_t epoch, int64_t epochs, double train_s,
                         double epoch_s, double loss, double acc, bool has_val, double val_loss,
                         double val_acc)
{
    char line[320];
    int o = 0;
    if (p->tty)
        o = bar(line, sizeof line, p->total, p->total);
    else
        o = snprintf(line, sizeof line, "Epoch %lld/%lld - %lld steps", (long long)epoch,
                     (long long)epochs, (long long)p->total);
    o += finished(line + o, sizeof line - (size_t)o, p, train_s, epoch_s, loss, acc);
    if (has_val)
        snprintf(line + o, sizeof line - (size_t)o, " - val_loss: %.4f - val_accuracy: %.4f",
                 val_loss, val_acc);
    if (p->tty) {
        draw(p, line);
        printf("\n");
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

/* ---------------------------------------------------------------- training state */

/* What the app keeps in the checkpoint beside tg_train_state_export's entries. */
typedef struct run_state {
    int64_t batch_size;
    int64_t limit;        /* 0: the whole training set */
    double loss_sum;      /* running sums of the epoch in progress */
    int64_t correct, seen;
    double seconds;       /* spent in the epoch in progress so far */
} run_state;

#define ORDER_KEY "data/order"

static tg_status put_run_attrs(tg_state_dict *sd, const run_state *r)
{
    tg_status st;
    if ((st = tg_state_dict_set_i64(sd, "batch_size", r->batch_size)) != TG_OK ||
        (st = tg_state_dict_set_i64(sd, "limit", r->limit)) != TG_OK ||
        (st = tg_state_dict_set_f64(sd, "epoch_loss_sum", r->loss_sum)) != TG_OK ||
        (st = tg_state_dict_set_i64(sd, "epoch_correct", r->correct)) != TG_OK ||
        (st = tg_state_dict_set_i64(sd, "epoch_seen", r->seen)) != TG_OK)
        return st;
    return tg_state_dict_set_f64(sd, "epoch_seconds", r->seconds);
}

static tg_status get_run_attrs(run_state *r, const tg_state_dict *sd)
{
    tg_status st;
    if ((st = tg_state_dict_get_i64(&r->batch_size, sd, "batch_size")) != TG_OK ||
        (st = tg_state_dict_get_i64(&r->limit, sd, "limit")) != TG_OK ||
        (st = tg_state_dict_get_f64(&r->loss_sum, sd, "epoch_loss_sum")) != TG_OK ||
        (st = tg_state_dict_get_i64(&r->correct, sd, "epoch_correct")) != TG_OK ||
        (st = tg_state_dict_get_i64(&r->seen, sd, "epoch_seen")) != TG_OK)
        return st;
    return tg_state_dict_get_f64(&r->seconds, sd, "epoch_seconds");
}

/* Saves everything; mid-epoch (progress->batch > 0) also the epoch's order. */
static tg_status save_state(const char *path, tg_sequential *model, tg_optimizer *opt,
                            tg_rng *rng, const tg_train_progress *pr, const run_state *r,
                            tg_batch_iter *it)
{
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd)
        return tg_last_status();
    tg_scope *s = tg_scope_push();
    tg_status st = tg_train_state_export(sd, model, opt, rng, pr);
    if (st == TG_OK)
        st = put_run_attrs(sd, r);
    if (st == TG_OK && pr->batch > 0) {
        const int64_t *order = tg_batch_iter_order(it);
        tg_tensor *t = order ? tg_from_data(TG_I64, TG_SHAPE(tg_batch_iter_count(it)), order)
                             : NULL;
        st = t ? tg_state_dict_set(sd, ORDER_KEY, t) : tg_last_status();
    }
    if (st == TG_OK)
        st = tg_checkpoint_save(path, sd);
    tg_scope_pop(s);
    tg_state_dict_free(sd);
    return st;
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
    tg_dataset train, test;
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
    tg_batch_iter *it;
    FILE *history;
    tg_state_dict *probe;
    struct tg_checkpoint_lock *lock; /* held for the whole run */
} train_ctx;

static void ctx_free(train_ctx *x)
{
    if (x->history)
        fclose(x->history);
    tg_batch_iter_free(x->it);
    tg_optimizer_free(x->opt);
    tg_sequential_free(x->model);
    tg_dataset_clear(&x->train);
    tg_dataset_clear(&x->test);
    tg_state_dict_free(x->probe);
    tg_checkpoint_unlock(x->lock);
}

/* Reads the checkpoint's attributes only (cheap, changes nothing) and settles
 * the run's settings against the flags. */
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
    else if (r->seen < 0 || r->correct < 0 || r->correct > r->seen)
        bad = r->seen < 0 ? "epoch_seen" : "epoch_correct";
    else if (!isfinite(r->loss_sum) || r->loss_sum < 0)
        bad = "epoch_loss_sum";
    else if (!isfinite(r->seconds) || r->seconds < 0)
        bad = "epoch_seconds";
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

/* Loads the full state into the fresh model, optimizer, generator and iterator. */
static int restore(train_ctx *x, tg_train_progress *pr, run_state *r)
{
    const char *path = x->cfg.checkpoint;
    if (tg_train_state_check(x->probe, x->model, x->opt) != TG_OK)
        return app_fail("train", "cannot resume from %s: %s", path, tg_last_error());
    int rc = 0;
    tg_state_dict *sd = tg_state_dict_new();
    tg_scope *s = tg_scope_push();
    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT;
    tg_tensor *order = NULL;
    if (pr->batch > 0)
        order = tg_zeros(TG_I64, TG_SHAPE(tg_batch_iter_count(x->it)));
    if (!sd || tg_train_state_export(sd, x->model, x->opt, &x->rng, &zero) != TG_OK ||
        put_run_attrs(sd, r) != TG_OK ||
        (pr->batch > 0 && tg_state_dict_set(sd, ORDER_KEY, order) != TG_OK)) {
        rc = app_fail_tg("train", "cannot prepare the training state");
    } else if (tg_checkpoint_load_into(path, sd) != TG_OK ||
               tg_train_state_import(pr, x->model, x->opt, &x->rng, sd) != TG_OK ||
               get_run_attrs(r, sd) != TG_OK) {
        rc = app_fail("train", "cannot resume from %s: %s", path, tg_last_error());
    } else if (pr->batch > 0) {
        /* The app saves mid-epoch only before the last batch (after it, the epoch
         * is complete and saved as batch 0 of the next), so batch >= the number
         * of batches is a damaged file or other data, never an epoch's end. */
        int64_t nb = tg_batch_iter_num_batches(x->it);
        if (pr->batch >= nb)
            rc = app_fail("train", "cannot resume from %s: the saved position, batch %lld of "
                          "epoch %lld, is not inside an epoch of %lld batches (a damaged "
                          "checkpoint, or other training data)", path, (long long)pr->batch,
                          (long long)pr->epoch + 1, (long long)nb);
        else if (r->seen != pr->batch * r->batch_size)
            rc = app_fail("train", "cannot resume from %s: its epoch_seen (%lld) is not %lld "
                          "batches of %lld examples", path, (long long)r->seen,
                          (long long)pr->batch, (long long)r->batch_size);
        else if (tg_batch_iter_resume(x->it, tg_tensor_data(order), pr->batch) != TG_OK)
            rc = app_fail("train", "cannot resume from %s: the saved position (batch %lld of "
                          "epoch %lld) does not fit the data: %s", path, (long long)pr->batch,
                          (long long)pr->epoch + 1, tg_last_error());
    } else if (r->seen != 0) {
        rc = app_fail("train", "cannot resume from %s: it is saved at an epoch's end but its "
                      "epoch_seen is %lld, not 0", path, (long long)r->seen);
    }
    tg_scope_pop(s);
    tg_state_dict_free(sd);
    return rc;
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

/* What a failed step was: a non-finite loss or gradient (training diverged: the
 * run stops without saving) or any other error (the library's message). */
typedef enum step_result { STEP_OK, STEP_NON_FINITE, STEP_ERROR } step_result;

/* One optimizer step on (xb, yb); adds to the running sums. A non-finite loss
 * stops before backward, a non-finite gradient is refused by tg_optimizer_step
 * (which then changes nothing): either way the weights stay those of the last
 * good step and *why says which value was bad. */
static step_result train_step(train_ctx *x, tg_tensor *xb, tg_tensor *yb, run_state *r,
                              char *why, size_t why_size)
{
    tg_scope *s = tg_scope_push();
    step_result res = STEP_ERROR;
    tg_tensor *logits = tg_sequential_forward_logits(x->model, xb);
    tg_tensor *loss = tg_cross_entropy(logits, yb);
    double lv = loss ? tg_item(loss) : NAN;
    int64_t correct = 0;
    if (loss && !isfinite(lv)) {
        snprintf(why, why_size, "the loss is %s", isnan(lv) ? "NaN" : lv > 0 ? "+inf" : "-inf");
        res = STEP_NON_FINITE;
    } else if (loss && tg_optimizer_zero_grad(x->opt) == TG_OK && tg_backward(loss) == TG_OK) {
        tg_status st = tg_optimizer_step(x->opt);
        if (st == TG_OK && tg_accuracy_count(&correct, logits, yb) == TG_OK) {
            int64_t n = tg_tensor_dim(yb, 0);
            r->loss_sum += lv * (double)n;
            r->correct += correct;
            r->seen += n;
            res = STEP_OK;
        } else if (st == TG_ERR_RANGE) {
            res = STEP_NON_FINITE; /* a non-finite gradient */
        }
    }
    if (res == STEP_ERROR || (res == STEP_NON_FINITE && isfinite(lv)))
        snprintf(why, why_size, "%s", tg_last_error());
    tg_scope_pop(s);
    return res;
}

/* The first parameter holding a NaN or an infinity (ReLU can hide one from the
 * loss), or NULL: checked before every save, so that a checkpoint never holds
 * one. Once per save: cheap next to an epoch. */
static const char *non_finite_param(tg_sequential *model, double *value)
{
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(model, &n);
    for (size_t i = 0; ps && i < n; i++) {
        const float *d = tg_tensor_data(ps[i]); /* the app's model is f32 */
        for (int64_t k = 0; d && k < tg_tensor_numel(ps[i]); k++)
            if (!isfinite(d[k])) {
                *value = d[k];
                return tg_tensor_name(ps[i]);
            }
    }
    return NULL;
}

/* save_state behind the finite check; after a message on failure (the
 * checkpoint on disk is then untouched). */
static int checked_save(train_ctx *x, const tg_train_progress *pr, const run_state *r,
                        const char *what)
{
    double v = 0;
    const char *bad = non_finite_param(x->model, &v);
    if (bad)
        return app_fail("train", "stopped at epoch %lld, step %lld: parameter %s holds %g; "
                        "not saved (%s keeps its previous state)", (long long)pr->epoch +
                        (pr->batch > 0), (long long)pr->step, bad, v, x->cfg.checkpoint);
    if (save_state(x->cfg.checkpoint, x->model, x->opt, &x->rng, pr, r, x->it) != TG_OK)
        return app_fail_tg("train", what);
    return 0;
}

static int run(train_ctx *x, const app_opt *opts)
{
    train_cfg *c = &x->cfg;
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    pr.seed = c->seed; /* a resume replaces it with the checkpoint's */
    run_state r = { c->batch_size, c->limit, 0, 0, 0, 0 };
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
    /* The training images stay u8 (47 MB, not 188); the iterator converts each batch. */
    if (!fc_load_split(&x->train, "train", c->data, TG_SPLIT_TRAIN, c->limit, TG_U8) ||
        (validate && !fc_load_split(&x->test, "train", c->data, TG_SPLIT_TEST, 0, TG_F32)))
        return EXIT_RUNTIME;

    tg_rng_seed(&x->rng, c->seed);
    x->model = fc_model_new(FC_CLASSES, &x->rng);
    size_t n_params = 0;
    tg_tensor *const *params = x->model ? tg_sequential_params(x->model, &n_params) : NULL;
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = c->lr;
    x->opt = params ? tg_optimizer_new_adam(params, n_params, &ao) : NULL;
    tg_batch_opts bo = TG_BATCH_OPTS_INIT;
    bo.batch_size = c->batch_size;
    bo.input_dtype = TG_F32; /* u8 pixel -> pixel / 255, as a TG_F32 load gives */
    bo.input_scale = 1.0 / 255;
    x->it = x->opt ? tg_batch_iter_new(x->train.images, x->train.labels, &bo, &x->rng) : NULL;
    if (!x->it)
        return app_fail_tg("train", "cannot set up the model");
    if (c->resume) {
        if ((rc = restore(x, &pr, &r)) != 0)
            return rc;
        if (opts[TRAIN_OPT_LR].given && tg_optimizer_set_lr(x->opt, c->lr) != TG_OK)
            return app_fail_tg("train", "cannot set the learning rate");
    }
    if ((rc = open_history(x)) != 0)
        return rc;

    int64_t steps = tg_batch_iter_num_batches(x->it);
    printf("Training on %lld examples, validating on %s; batch size %lld, %lld steps per epoch, "
           "%d thread%s, seed %llu.\n", (long long)x->train.count,
           validate ? "the 10000 test images" : "nothing (--validation none)",
           (long long)c->batch_size, (long long)steps, tg_get_num_threads(),
           tg_get_num_threads() == 1 ? "" : "s", (unsigned long long)c->seed);
    if (c->resume && pr.batch)
        printf("Resuming from %s: epoch %lld at batch %lld of %lld (step %lld).\n",
               c->checkpoint, (long long)pr.epoch + 1, (long long)pr.batch, (long long)steps,
               (long long)pr.step);
    else if (c->resume)
        printf("Resuming from %s after epoch %lld (step %lld).\n", c->checkpoint,
               (long long)pr.epoch, (long long)pr.step);
    printf("Checkpoint: %s, saved after every epoch. Ctrl-C saves and stops.\n", c->checkpoint);
    fflush(stdout);

    progress p = { .tty = isatty(STDOUT_FILENO) != 0, .total = steps };
    for (int64_t epoch = pr.epoch; epoch < c->epochs; epoch++) {
        bool mid = pr.batch > 0;
        if (!mid) {
            r.loss_sum = 0, r.correct = 0, r.seen = 0, r.seconds = 0;
            if (tg_batch_iter_start_epoch(x->it) != TG_OK)
                return app_fail_tg("train", "cannot start the epoch");
        }
        if (p.tty)
            printf("Epoch %lld/%lld\n", (long long)epoch + 1, (long long)c->epochs);
        p.t0 = p.last_draw = fc_now();
        p.earlier = r.seconds;
        p.done0 = pr.batch;
        p.last_len = 0;
        if (mid)
            progress_step(&p, pr.batch, r.loss_sum / (double)r.seen,
                          (double)r.correct / (double)r.seen);
        tg_tensor *xb, *yb;
        while (tg_batch_iter_next(x->it, &xb, &yb)) {
            char why[1024];
            step_result res = train_step(x, xb, yb, &r, why, sizeof why);
            if (res != STEP_OK && p.tty)
                printf("\n");
            if (res == STEP_NON_FINITE)
                return app_fail("train", "stopped at epoch %lld, step %lld (batch %lld of %lld): "
                                "%s; nothing was saved after the last good step (%s keeps its "
                                "previous state; a smaller --lr may help)", (long long)epoch + 1,
                                (long long)pr.step + 1, (long long)tg_batch_iter_position(x->it),
                                (long long)steps, why, c->checkpoint);
            if (res != STEP_OK)
                return app_fail("train", "training step failed: %s", why);
            pr.batch = tg_batch_iter_position(x->it);
            pr.step++;
            progress_step(&p, pr.batch, r.loss_sum / (double)r.seen,
                          (double)r.correct / (double)r.seen);
            take_signals();
            if (interrupted && pr.batch < steps) {
                r.seconds = p.earlier + fc_now() - p.t0;
                if (p.tty)
                    printf("\n");
                if ((rc = checked_save(x, &pr, &r, "interrupted, and saving the state "
                                       "failed")) != 0)
                    return rc;
                printf("Interrupted: saved the training state (epoch %lld, batch %lld of %lld) "
                       "to %s.\n", (long long)epoch + 1, (long long)pr.batch, (long long)steps,
                       c->checkpoint);
                print_resume_hint(c, opts);
                return 0;
            }
        }
        double train_s = p.earlier + fc_now() - p.t0;
        double val_loss = NAN, val_acc = NAN;
        if (validate && !fc_evaluate(x->model, &x->test, FC_CLASSES, &val_loss, &val_acc, NULL)) {
            if (p.tty)
                printf("\n");
            return app_fail_tg("train", "validation failed");
        }
        double epoch_s = p.earlier + fc_now() - p.t0;
        double loss = r.loss_sum / (double)r.seen, acc = (double)r.correct / (double)r.seen;
        pr.epoch = epoch + 1;
        pr.batch = 0;
        r.loss_sum = 0, r.correct = 0, r.seen = 0, r.seconds = 0;
        if ((rc = checked_save(x, &pr, &r, "cannot save the checkpoint")) != 0) {
            if (p.tty)
                printf("\n");
            return rc;
        }
        progress_end(&p, epoch + 1, c->epochs, train_s, epoch_s, loss, acc, validate, val_loss,
                     val_acc);
        if (x->history) {
            if (validate)
                fprintf(x->history, "%lld,%.6f,%.6f,%.6f,%.6f,%.3f\n", (long long)epoch + 1, loss,
                        acc, val_loss, val_acc, epoch_s);
            else
                fprintf(x->history, "%lld,%.6f,%.6f,,,%.3f\n", (long long)epoch + 1, loss, acc,
                        epoch_s);
            fflush(x->history);
        }
        take_signals();
        if (interrupted && epoch + 1 < c->epochs) {
            printf("Interrupted: saved the training state after epoch %lld to %s.\n",
                   (long long)epoch + 1, c->checkpoint);
            print_resume_hint(c, opts);
            return 0;
        }
    }
    printf("Saved the training state after epoch %lld to %s.\n", (long long)c->epochs,
           c->checkpoint);
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
