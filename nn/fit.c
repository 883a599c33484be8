/* nn/fit.c -- tg_fit, tg_evaluate, tg_predict: the training loop that was
 * fashion_cnn's (apps/fashion_cnn_train.c), for every model.
 *
 * One generator (the caller's) drives the shuffles and, through the model,
 * dropout; the checkpoint holds it with the weights, the optimizer, the
 * counters, the epoch's order and running sums, so a resumed run takes exactly
 * the steps the uninterrupted one would. Files are the caller's: saving and
 * loading go through tg_state_io (io/ fills it), nn/ includes no io/ header. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nn/nn_impl.h"

#define ORDER_KEY "data/order"
enum { MONITOR_NONE = -1, MONITOR_LOSS, MONITOR_ACC, MONITOR_VAL_LOSS, MONITOR_VAL_ACC };
static const char *const monitor_names[] = { "loss", "accuracy", "val_loss", "val_accuracy" };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- the model call */

/* The one place fit, evaluate and predict run the model. It takes one input
 * and gives one output; once graph models (nn/model.h) are in, this becomes
 * tg_model_forward_n(model, n_in, xs, 1, &out, logits) for several inputs. */
static tg_tensor *model_output(tg_model *model, tg_tensor *x, bool logits)
{
    return logits ? tg_sequential_forward_logits(model, x) : tg_sequential_forward(model, x);
}

/* ---------------------------------------------------------------- settled options */

typedef struct cfg {
    tg_fit_opts o;
    bool logits;  /* what the loss reads */
    bool acc;     /* the accuracy metric */
    int64_t val_batch;
} cfg;

static tg_status settle(cfg *c, const tg_fit_opts *opts, const char *fn)
{
    tg_fit_opts o = TG_FIT_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.batch_size < 1)
        return tg_error(TG_ERR_ARG, "%s: batch_size must be >= 1, got %" PRId64, fn, o.batch_size);
    if (o.validation_batch_size < 0)
        return tg_error(TG_ERR_ARG, "%s: validation_batch_size must be >= 0 (0: batch_size), "
                        "got %" PRId64, fn, o.validation_batch_size);
    if (o.loss != TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY && o.loss != TG_LOSS_MSE &&
        o.loss != TG_LOSS_CUSTOM)
        return tg_error(TG_ERR_ARG, "%s: loss %d is not a tg_loss_kind", fn, (int)o.loss);
    if (o.loss == TG_LOSS_CUSTOM && !o.loss_fn)
        return tg_error(TG_ERR_ARG, "%s: loss is TG_LOSS_CUSTOM but loss_fn is NULL", fn);
    if (o.metric != TG_METRIC_AUTO && o.metric != TG_METRIC_NONE && o.metric != TG_METRIC_ACCURACY)
        return tg_error(TG_ERR_ARG, "%s: metric %d is not a tg_fit_metric", fn, (int)o.metric);
    if (o.verbose < 0 || o.verbose > 2)
        return tg_error(TG_ERR_ARG, "%s: verbose must be 0, 1 or 2, got %d", fn, o.verbose);
    c->o = o;
    c->logits = o.loss == TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY || o.from_logits;
    c->acc = o.metric == TG_METRIC_ACCURACY ||
             (o.metric == TG_METRIC_AUTO && o.loss == TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    c->val_batch = o.validation_batch_size ? o.validation_batch_size : o.batch_size;
    return TG_OK;
}

static tg_batch_opts batch_opts(const cfg *c, int64_t batch, bool shuffle)
{
    tg_batch_opts b = TG_BATCH_OPTS_INIT;
    b.batch_size = batch;
    b.shuffle = shuffle;
    b.input_dtype = c->o.input_dtype;
    b.input_scale = c->o.input_scale;
    return b;
}

/* The batch's mean loss (scoped reference), NULL on error. */
static tg_tensor *batch_loss(const cfg *c, tg_tensor *out, tg_tensor *y)
{
    if (!out)
        return NULL;
    switch (c->o.loss) {
    case TG_LOSS_MSE:
        return tg_mse(out, y);
    case TG_LOSS_CUSTOM: {
        tg_tensor *l = c->o.loss_fn(out, y, c->o.loss_ctx);
        if (l && tg_tensor_numel(l) != 1) {
            tg_error(TG_ERR_SHAPE, "tg_fit: the loss function returned %" PRId64 " values, "
                     "not one (a scalar mean)", tg_tensor_numel(l));
            return NULL;
        }
        if (!l && tg_last_status() == TG_OK)
            tg_error(TG_ERR_ARG, "tg_fit: the loss function returned NULL");
        return l;
    }
    default:
        return tg_cross_entropy(out, y);
    }
}

/* ---------------------------------------------------------------- evaluation */

typedef struct eval_out {
    double loss, acc;
} eval_out;

/* Mean loss and accuracy over it's epoch (no shuffle) in evaluation mode. */
static tg_status eval_iter(eval_out *res, const cfg *c, tg_model *model, tg_batch_iter *it)
{
    bool was_training = tg_sequential_is_training(model);
    bool prev_grad = tg_set_grad_enabled(false);
    tg_sequential_set_training(model, false);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    tg_status st = tg_batch_iter_start_epoch(it);
    tg_tensor *x, *y;
    while (st == TG_OK && tg_batch_iter_next(it, &x, &y)) {
        tg_scope *s = tg_scope_push();
        tg_tensor *out = model_output(model, x, c->logits);
        tg_tensor *l = batch_loss(c, out, y);
        int64_t hits = 0;
        if (!l || (c->acc && tg_accuracy_count(&hits, out, y) != TG_OK)) {
            st = tg_last_status() != TG_OK ? tg_last_status() : TG_ERR_STATE;
        } else {
            int64_t n = tg_tensor_dim(y, 0);
            loss_sum += tg_item(l) * (double)n;
            correct += hits;
            seen += n;
        }
        tg_scope_pop(s);
    }
    tg_sequential_set_training(model, was_training);
    tg_set_grad_enabled(prev_grad);
    if (st == TG_OK) {
        res->loss = loss_sum / (double)seen;
        res->acc = c->acc ? (double)correct / (double)seen : NAN;
    }
    return st;
}

tg_status tg_evaluate(double *loss, double *accuracy, tg_model *model, tg_tensor *x,
                      tg_tensor *y, const tg_fit_opts *opts)
{
    static const char fn[] = "tg_evaluate";
    if (!loss || !model || !x || !y)
        return tg_null_arg(fn, !loss ? "loss" : !model ? "model" : !x ? "x" : "y");
    cfg c;
    tg_status st = settle(&c, opts, fn);
    if (st != TG_OK)
        return st;
    tg_batch_opts bo = batch_opts(&c, c.val_batch, false);
    tg_batch_iter *it = tg_batch_iter_new(x, y, &bo, NULL);
    if (!it)
        return tg_error(tg_last_status(), "%s: %s", fn, tg_last_error());
    eval_out r;
    st = eval_iter(&r, &c, model, it);
    tg_batch_iter_free(it);
    if (st != TG_OK)
        return st;
    *loss = r.loss;
    if (accuracy)
        *accuracy = r.acc;
    return TG_OK;
}

tg_tensor *tg_predict(tg_model *model, tg_tensor *x, const tg_fit_opts *opts)
{
    static const char fn[] = "tg_predict";
    if (!model || !x)
        return tg_null_arg(fn, !model ? "model" : "x"), NULL;
    cfg c;
    if (settle(&c, opts, fn) != TG_OK)
        return NULL;
    tg_batch_opts bo = batch_opts(&c, c.o.batch_size, false);
    tg_batch_iter *it = tg_batch_iter_new_n(1, &x, 0, NULL, &bo, NULL);
    if (!it)
        return NULL;
    bool was_training = tg_sequential_is_training(model);
    bool prev_grad = tg_set_grad_enabled(false);
    tg_sequential_set_training(model, false);
    tg_tensor *result = NULL, *xb;
    int64_t row = 0;
    bool ok = true;
    while (ok && tg_batch_iter_next_n(it, &xb, NULL)) {
        tg_scope *s = tg_scope_push();
        tg_tensor *out = model_output(model, xb, c.o.from_logits);
        tg_tensor *oc = out ? tg_contiguous(out) : NULL;
        if (!oc) {
            ok = false;
        } else {
            if (!result) {
                int64_t shape[TG_MAX_DIMS];
                int nd = tg_tensor_ndim(oc);
                memcpy(shape, tg_tensor_shape(oc), (size_t)nd * sizeof shape[0]);
                shape[0] = tg_batch_iter_count(it);
                result = tg_tensor_new_named(fn, tg_tensor_dtype(oc), nd, shape);
            }
            if (!result) {
                ok = false;
            } else {
                size_t bytes = tg_tensor_nbytes(oc);
                memcpy((char *)tg_tensor_data(result) + (size_t)row * (bytes / (size_t)
                       tg_tensor_dim(oc, 0)), tg_tensor_data(oc), bytes);
                row += tg_tensor_dim(oc, 0);
            }
        }
        tg_scope_pop(s);
    }
    tg_sequential_set_training(model, was_training);
    tg_set_grad_enabled(prev_grad);
    tg_batch_iter_free(it);
    if (!ok) {
        tg_release(result);
        return NULL;
    }
    tg_tensor_bump_version(result);
    return result;
}

/* ---------------------------------------------------------------- history */

void tg_history_clear(tg_history *h)
{
    if (!h)
        return;
    free(h->epochs);
    *h = (tg_history)TG_HISTORY_INIT;
}

static void csv_value(FILE *f, double v, const char *fmt)
{
    fputc(',', f);
    if (!isnan(v))
        fprintf(f, fmt, v);
}

static void csv_row(FILE *f, const tg_epoch_logs *e)
{
    fprintf(f, "%lld", (long long)e->epoch);
    csv_value(f, e->loss, "%.6f");
    csv_value(f, e->accuracy, "%.6f");
    csv_value(f, e->val_loss, "%.6f");
    csv_value(f, e->val_accuracy, "%.6f");
    csv_value(f, e->seconds, "%.3f");
    fputc('\n', f);
}

#define CSV_HEADER "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n"

tg_status tg_history_write_csv(const tg_history *h, FILE *f, bool header)
{
    if (!h || !f)
        return tg_null_arg("tg_history_write_csv", !h ? "h" : "f");
    if (header)
        fputs(CSV_HEADER, f);
    for (int64_t i = 0; i < h->n; i++)
        csv_row(f, &h->epochs[i]);
    if (fflush(f) != 0 || ferror(f))
        return tg_error(TG_ERR_IO, "tg_history_write_csv: the write failed");
    return TG_OK;
}

static tg_status history_add(tg_history *h, const tg_epoch_logs *e)
{
    tg_epoch_logs *v = realloc(h->epochs, (size_t)(h->n + 1) * sizeof *v);
    if (!v)
        return tg_error(TG_ERR_NOMEM, "tg_fit: out of memory for the history");
    h->epochs = v;
    h->epochs[h->n++] = *e;
    return TG_OK;
}

/* ---------------------------------------------------------------- progress */

typedef struct progress {
    FILE *out;
    int verbose;
    bool tty;
    bool acc;
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
    fprintf(p->out, "\r%s%*s", line, pad, "");
    fflush(p->out);
    p->last_len = len;
}

/* " - loss: 0.2712 - accuracy: 0.9012" (no accuracy without the metric) */
static int figures(char *buf, size_t n, const progress *p, double loss, double acc)
{
    if (p->acc)
        return snprintf(buf, n, " - loss: %.4f - accuracy: %.4f", loss, acc);
    return snprintf(buf, n, " - loss: %.4f", loss);
}

/* " - 12s 6ms/step - loss: 0.2712 - accuracy: 0.9012" */
static int finished(char *buf, size_t n, const progress *p, double train_s, double epoch_s,
                    double loss, double acc)
{
    char dur[32], per[32];
    fmt_duration(dur, sizeof dur, epoch_s);
    fmt_per_step(per, sizeof per, train_s / (double)(p->total ? p->total : 1));
    int o = snprintf(buf, n, " - %s %s", dur, per);
    return o + figures(buf + o, n - (size_t)o, p, loss, acc);
}

/* While the epoch runs: redrawn at most 10 times a second, on a terminal only.
 * The last step draws the finished bar, which stays while validation runs. */
static void progress_step(progress *p, int64_t done, double loss, double acc)
{
    if (!p->tty)
        return;
    double now = now_s();
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
        o += snprintf(line + o, sizeof line - (size_t)o, " - ETA: %s", eta);
        figures(line + o, sizeof line - (size_t)o, p, loss, acc);
    }
    draw(p, line);
}

/* The epoch's last line: "1875/1875 [======] - 12s 6ms/step - loss ... - val_...";
 * the time is the epoch's including validation, the time per step training's. */
static void progress_end(progress *p, int64_t epoch, int64_t epochs, double train_s,
                         const tg_epoch_logs *e, bool has_val)
{
    if (!p->verbose)
        return;
    char line[320];
    int o = 0;
    if (p->tty)
        o = bar(line, sizeof line, p->total, p->total);
    else
        o = snprintf(line, sizeof line, "Epoch %lld/%lld - %lld steps", (long long)epoch,
                     (long long)epochs, (long long)p->total);
    o += finished(line + o, sizeof line - (size_t)o, p, train_s, e->seconds, e->loss,
                  e->accuracy);
    if (has_val && p->acc)
        snprintf(line + o, sizeof line - (size_t)o, " - val_loss: %.4f - val_accuracy: %.4f",
                 e->val_loss, e->val_accuracy);
    else if (has_val)
        snprintf(line + o, sizeof line - (size_t)o, " - val_loss: %.4f", e->val_loss);
    if (p->tty) {
        draw(p, line);
        fprintf(p->out, "\n");
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

/* Ends a bar left open by a failure, so the message starts on its own line. */
static void progress_break(progress *p)
{
    if (p->tty && p->last_len > 0) {
        fprintf(p->out, "\n");
        fflush(p->out);
    }
}

/* ---------------------------------------------------------------- a run */

/* The epoch in progress: what the checkpoint keeps beside the training state. */
typedef struct run_sums {
    double loss_sum;
    int64_t correct, seen;
    double seconds; /* spent in the epoch in progress so far */
} run_sums;

/* Early stopping and reduce-on-plateau: a monitored figure and its counters. */
typedef struct watcher {
    int monitor;        /* MONITOR_*, MONITOR_NONE: off */
    double best;
    int64_t best_epoch; /* 0: no best yet */
    int wait;
} watcher;

typedef struct run {
    cfg c;
    tg_model *model;
    tg_optimizer *opt;
    tg_batch_iter *it, *val_it;
    tg_history *h;
    tg_train_progress pr;
    run_sums r;
    progress p;
    watcher es;
    tg_tensor **best_copy; /* restore_best_weights: copies of the state dict's tensors */
    tg_state_dict *best_sd;
    bool plateau_on;
    tg_lr_plateau plateau;
    int plateau_monitor;
    int64_t steps;
} run;

static tg_status put_i64(tg_state_dict *sd, const char *k, int64_t v, tg_status st)
{
    return st != TG_OK ? st : tg_state_dict_set_i64(sd, k, v);
}
static tg_status put_f64(tg_state_dict *sd, const char *k, double v, tg_status st)
{
    return st != TG_OK ? st : tg_state_dict_set_f64(sd, k, v);
}

/* Fit's attributes: the running sums, and the watchers' counters when on. A
 * non-finite best (none yet) is stored as 0 with a flag. */
static tg_status put_attrs(tg_state_dict *sd, const run *x)
{
    tg_status st = TG_OK;
    st = put_f64(sd, "epoch_loss_sum", x->r.loss_sum, st);
    st = put_i64(sd, "epoch_correct", x->r.correct, st);
    st = put_i64(sd, "epoch_seen", x->r.seen, st);
    st = put_f64(sd, "epoch_seconds", x->r.seconds, st);
    if (x->es.monitor != MONITOR_NONE) {
        st = put_f64(sd, "early_stopping_best", x->es.best_epoch ? x->es.best : 0, st);
        st = put_i64(sd, "early_stopping_best_epoch", x->es.best_epoch, st);
        st = put_i64(sd, "early_stopping_wait", x->es.wait, st);
    }
    if (x->plateau_on) {
        bool has = isfinite(x->plateau.best);
        st = put_f64(sd, "lr_plateau_best", has ? x->plateau.best : 0, st);
        st = put_i64(sd, "lr_plateau_has_best", has, st);
        st = put_i64(sd, "lr_plateau_wait", x->plateau.wait, st);
        st = put_i64(sd, "lr_plateau_cooldown", x->plateau.cooldown_left, st);
    }
    if (st == TG_OK && x->c.o.state_hook)
        st = x->c.o.state_hook(sd, x->c.o.state_hook_ctx);
    return st;
}

static tg_status get_attrs(run *x, const tg_state_dict *sd)
{
    tg_status st;
    if ((st = tg_state_dict_get_f64(&x->r.loss_sum, sd, "epoch_loss_sum")) != TG_OK ||
        (st = tg_state_dict_get_i64(&x->r.correct, sd, "epoch_correct")) != TG_OK ||
        (st = tg_state_dict_get_i64(&x->r.seen, sd, "epoch_seen")) != TG_OK ||
        (st = tg_state_dict_get_f64(&x->r.seconds, sd, "epoch_seconds")) != TG_OK)
        return st;
    int64_t v = 0;
    if (x->es.monitor != MONITOR_NONE) {
        if ((st = tg_state_dict_get_f64(&x->es.best, sd, "early_stopping_best")) != TG_OK ||
            (st = tg_state_dict_get_i64(&x->es.best_epoch, sd, "early_stopping_best_epoch")) !=
                TG_OK ||
            (st = tg_state_dict_get_i64(&v, sd, "early_stopping_wait")) != TG_OK)
            return st;
        x->es.wait = (int)v;
    }
    if (x->plateau_on) {
        int64_t has = 0, cd = 0;
        double best = 0;
        if ((st = tg_state_dict_get_f64(&best, sd, "lr_plateau_best")) != TG_OK ||
            (st = tg_state_dict_get_i64(&has, sd, "lr_plateau_has_best")) != TG_OK ||
            (st = tg_state_dict_get_i64(&v, sd, "lr_plateau_wait")) != TG_OK ||
            (st = tg_state_dict_get_i64(&cd, sd, "lr_plateau_cooldown")) != TG_OK)
            return st;
        x->plateau.best = has ? best : x->plateau.o.maximize ? -INFINITY : INFINITY;
        x->plateau.wait = (int)v;
        x->plateau.cooldown_left = (int)cd;
    }
    return TG_OK;
}

/* The first parameter holding a NaN or an infinity (ReLU can hide one from the
 * loss), or NULL: checked before every save, so that a checkpoint never holds
 * one. Once per save: cheap next to an epoch. */
static const char *non_finite_param(tg_model *model, double *value)
{
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(model, &n);
    for (size_t i = 0; ps && i < n; i++) {
        tg_tensor *t = ps[i];
        const void *d = tg_tensor_data(t);
        int64_t m = tg_tensor_numel(t);
        for (int64_t k = 0; d && k < m; k++) {
            double v = tg_tensor_dtype(t) == TG_F64 ? ((const double *)d)[k]
                                                     : ((const float *)d)[k];
            if (!isfinite(v)) {
                *value = v;
                return tg_tensor_name(t);
            }
        }
    }
    return NULL;
}

/* Saves everything; mid-epoch (pr.batch > 0) also the epoch's order. Behind
 * the finite check: on failure the file on disk is untouched. */
static tg_status save_state(run *x)
{
    const char *path = x->c.o.checkpoint_path;
    if (!path)
        return TG_OK;
    double v = 0;
    const char *bad = non_finite_param(x->model, &v);
    if (bad)
        return tg_error(TG_ERR_RANGE, "tg_fit: stopped at epoch %lld, step %lld: parameter %s "
                        "holds %g; not saved (%s keeps its previous state)",
                        (long long)x->pr.epoch + (x->pr.batch > 0), (long long)x->pr.step, bad,
                        v, path);
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd)
        return tg_last_status();
    tg_scope *s = tg_scope_push();
    tg_status st = tg_train_state_export(sd, x->model, x->opt, x->c.o.rng, &x->pr);
    if (st == TG_OK)
        st = put_attrs(sd, x);
    if (st == TG_OK && x->pr.batch > 0) {
        const int64_t *order = tg_batch_iter_order(x->it);
        tg_tensor *t = order ? tg_from_data(TG_I64, TG_SHAPE(tg_batch_iter_count(x->it)), order)
                             : NULL;
        st = t ? tg_state_dict_set(sd, ORDER_KEY, t) : tg_last_status();
    }
    if (st == TG_OK)
        st = x->c.o.checkpoint_io.save(path, sd);
    tg_scope_pop(s);
    tg_state_dict_free(sd);
    if (st != TG_OK)
        return tg_error(st, "tg_fit: cannot save the checkpoint %s: %s", path, tg_last_error());
    return TG_OK;
}

/* "tg_fit: cannot resume from PATH: what" */
static tg_status resume_error(const run *x, tg_status st, const char *what)
{
    return tg_error(st != TG_OK ? st : TG_ERR_FORMAT, "tg_fit: cannot resume from %s: %s",
                    x->c.o.checkpoint_path, what);
}

/* Reads the checkpoint's attributes (cheap; changes nothing) and checks them. */
static tg_status probe(run *x, bool *done)
{
    const char *path = x->c.o.checkpoint_path;
    tg_state_dict *sd = tg_state_dict_new();
    tg_status st = sd ? tg_train_state_template(sd) : tg_last_status();
    if (st == TG_OK)
        st = put_attrs(sd, x);
    if (st != TG_OK) {
        tg_state_dict_free(sd);
        return st;
    }
    if ((st = x->c.o.checkpoint_io.load(path, sd)) != TG_OK ||
        (st = tg_train_state_progress(&x->pr, sd)) != TG_OK ||
        (st = get_attrs(x, sd)) != TG_OK ||
        (st = tg_train_state_check(sd, x->model, x->opt)) != TG_OK) {
        tg_state_dict_free(sd);
        return resume_error(x, st, tg_last_error());
    }
    tg_state_dict_free(sd);
    const char *bad = NULL;
    bool signed_loss = x->c.o.loss == TG_LOSS_CUSTOM;
    if (x->r.seen < 0 || x->r.correct < 0 || x->r.correct > x->r.seen)
        bad = x->r.seen < 0 ? "epoch_seen" : "epoch_correct";
    else if (!isfinite(x->r.loss_sum) || (x->r.loss_sum < 0 && !signed_loss))
        bad = "epoch_loss_sum";
    else if (!isfinite(x->r.seconds) || x->r.seconds < 0)
        bad = "epoch_seconds";
    else if (x->es.monitor != MONITOR_NONE && (x->es.wait < 0 || x->es.best_epoch < 0))
        bad = "early_stopping_wait";
    else if (x->plateau_on && (x->plateau.wait < 0 || x->plateau.cooldown_left < 0))
        bad = "lr_plateau_wait";
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof msg, "its \"%s\" is out of range (a damaged or foreign "
                 "checkpoint)", bad);
        return resume_error(x, TG_ERR_FORMAT, msg);
    }
    *done = x->pr.epoch >= x->c.o.epochs;
    return TG_OK;
}

/* Loads the full state into the model, optimizer, generator and iterator. */
static tg_status restore(run *x)
{
    const char *path = x->c.o.checkpoint_path;
    tg_train_progress saved = x->pr;
    tg_state_dict *sd = tg_state_dict_new();
    tg_scope *s = tg_scope_push();
    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT;
    tg_tensor *order = NULL;
    tg_status st = TG_OK;
    char msg[512];
    if (saved.batch > 0)
        order = tg_zeros(TG_I64, TG_SHAPE(tg_batch_iter_count(x->it)));
    if (!sd || (saved.batch > 0 && !order) ||
        (st = tg_train_state_export(sd, x->model, x->opt, x->c.o.rng, &zero)) != TG_OK ||
        (st = put_attrs(sd, x)) != TG_OK ||
        (saved.batch > 0 && (st = tg_state_dict_set(sd, ORDER_KEY, order)) != TG_OK)) {
        st = tg_error(st != TG_OK ? st : tg_last_status(), "tg_fit: cannot prepare the "
                      "training state: %s", tg_last_error());
    } else if ((st = x->c.o.checkpoint_io.load(path, sd)) != TG_OK ||
               (st = tg_train_state_import(&x->pr, x->model, x->opt, x->c.o.rng, sd)) != TG_OK ||
               (st = get_attrs(x, sd)) != TG_OK) {
        st = resume_error(x, st, tg_last_error());
    } else if (x->pr.batch > 0) {
        /* Fit saves mid-epoch only before the last batch (after it, the epoch is
         * complete and saved as batch 0 of the next), so batch >= the number of
         * batches is a damaged file or other data, never an epoch's end. */
        int64_t nb = x->steps;
        if (x->pr.batch >= nb) {
            snprintf(msg, sizeof msg, "the saved position, batch %lld of epoch %lld, is not "
                     "inside an epoch of %lld batches (a damaged checkpoint, or other training "
                     "data)", (long long)x->pr.batch, (long long)x->pr.epoch + 1, (long long)nb);
            st = resume_error(x, TG_ERR_FORMAT, msg);
        } else if (x->r.seen != x->pr.batch * x->c.o.batch_size) {
            snprintf(msg, sizeof msg, "its epoch_seen (%lld) is not %lld batches of %lld "
                     "examples", (long long)x->r.seen, (long long)x->pr.batch,
                     (long long)x->c.o.batch_size);
            st = resume_error(x, TG_ERR_FORMAT, msg);
        } else if (tg_batch_iter_resume(x->it, tg_tensor_data(order), x->pr.batch) != TG_OK) {
            snprintf(msg, sizeof msg, "the saved position (batch %lld of epoch %lld) does not "
                     "fit the data: %s", (long long)x->pr.batch, (long long)x->pr.epoch + 1,
                     tg_last_error());
            st = resume_error(x, TG_ERR_FORMAT, msg);
        }
    } else if (x->r.seen != 0) {
        snprintf(msg, sizeof msg, "it is saved at an epoch's end but its epoch_seen is %lld, "
                 "not 0", (long long)x->r.seen);
        st = resume_error(x, TG_ERR_FORMAT, msg);
    }
    tg_scope_pop(s);
    tg_state_dict_free(sd);
    return st;
}

/* ---- early stopping's best weights ---- */

static void best_free(run *x)
{
    if (x->best_copy) {
        for (size_t i = 0; i < tg_state_dict_size(x->best_sd); i++)
            tg_release(x->best_copy[i]);
        free(x->best_copy);
    }
    tg_state_dict_free(x->best_sd);
    x->best_copy = NULL;
    x->best_sd = NULL;
}

/* Copies the model's parameters and buffers (the first call allocates). */
static tg_status best_keep(run *x)
{
    if (!x->best_sd) {
        x->best_sd = tg_state_dict_new();
        if (!x->best_sd)
            return tg_last_status();
        tg_status st = tg_sequential_state_dict(x->model, x->best_sd, "");
        size_t n = tg_state_dict_size(x->best_sd);
        x->best_copy = st == TG_OK ? calloc(n ? n : 1, sizeof *x->best_copy) : NULL;
        if (!x->best_copy)
            return st != TG_OK ? st : tg_error(TG_ERR_NOMEM, "tg_fit: out of memory");
        for (size_t i = 0; i < n; i++) {
            tg_tensor *t = tg_state_dict_tensor_at(x->best_sd, i);
            x->best_copy[i] = tg_tensor_new_named("tg_fit", tg_tensor_dtype(t),
                                                  tg_tensor_ndim(t), tg_tensor_shape(t));
            if (!x->best_copy[i])
                return tg_last_status();
        }
    }
    for (size_t i = 0; i < tg_state_dict_size(x->best_sd); i++) {
        tg_status st = tg_tensor_copy_into(x->best_copy[i], tg_state_dict_tensor_at(x->best_sd, i));
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

static tg_status best_restore(run *x)
{
    bool prev = tg_set_grad_enabled(false);
    tg_status st = TG_OK;
    for (size_t i = 0; st == TG_OK && i < tg_state_dict_size(x->best_sd); i++)
        st = tg_tensor_copy_into(tg_state_dict_tensor_at(x->best_sd, i), x->best_copy[i]);
    tg_set_grad_enabled(prev);
    return st;
}

/* ---- one step ---- */

/* One optimizer step on (xb, yb); adds to the running sums. A non-finite loss
 * stops before backward, a non-finite gradient is refused by tg_optimizer_step
 * (which then changes nothing): either way the weights stay those of the last
 * good step, the status is TG_ERR_RANGE and why says which value was bad. */
static tg_status train_step(run *x, tg_tensor *xb, tg_tensor *yb, double *lv_out, char *why,
                            size_t why_size)
{
    tg_scope *s = tg_scope_push();
    tg_status res = TG_ERR_STATE;
    tg_tensor *out = model_output(x->model, xb, x->c.logits);
    tg_tensor *loss = batch_loss(&x->c, out, yb);
    double lv = loss ? tg_item(loss) : NAN;
    int64_t correct = 0;
    bool lost_finite = false;
    if (loss && !isfinite(lv)) {
        snprintf(why, why_size, "the loss is %s", isnan(lv) ? "NaN" : lv > 0 ? "+inf" : "-inf");
        res = TG_ERR_RANGE;
        lost_finite = true;
    } else if (loss && tg_optimizer_zero_grad(x->opt) == TG_OK && tg_backward(loss) == TG_OK) {
        tg_status st = tg_optimizer_step(x->opt);
        if (st == TG_OK && (!x->c.acc || tg_accuracy_count(&correct, out, yb) == TG_OK)) {
            int64_t n = tg_tensor_dim(yb, 0);
            x->r.loss_sum += lv * (double)n;
            x->r.correct += correct;
            x->r.seen += n;
            res = TG_OK;
        } else if (st == TG_ERR_RANGE) {
            res = TG_ERR_RANGE; /* a non-finite gradient */
        }
    }
    if (res != TG_OK && !lost_finite) {
        if (res != TG_ERR_RANGE && tg_last_status() != TG_OK)
            res = tg_last_status();
        snprintf(why, why_size, "%s", tg_last_error());
    }
    tg_scope_pop(s);
    *lv_out = lv;
    return res;
}

/* ---- monitors ---- */

static int monitor_index(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, monitor_names[i]) == 0)
            return i;
    return MONITOR_NONE;
}

/* Settles a monitor name against what the run computes. */
static tg_status check_monitor(int *out, const char *field, const char *name, const cfg *c,
                               bool has_val)
{
    int m = monitor_index(name);
    if (m == MONITOR_NONE)
        return tg_error(TG_ERR_ARG, "tg_fit: %s \"%s\" is not one of \"loss\", \"accuracy\", "
                        "\"val_loss\", \"val_accuracy\"", field, name);
    if ((m == MONITOR_ACC || m == MONITOR_VAL_ACC) && !c->acc)
        return tg_error(TG_ERR_ARG, "tg_fit: %s \"%s\" needs the accuracy metric (this run "
                        "has none)", field, name);
    if ((m == MONITOR_VAL_LOSS || m == MONITOR_VAL_ACC) && !has_val)
        return tg_error(TG_ERR_ARG, "tg_fit: %s \"%s\" needs validation data (val_x, val_y)",
                        field, name);
    *out = m;
    return TG_OK;
}

static double monitored(int m, const tg_epoch_logs *e)
{
    switch (m) {
    case MONITOR_LOSS: return e->loss;
    case MONITOR_ACC: return e->accuracy;
    case MONITOR_VAL_LOSS: return e->val_loss;
    default: return e->val_accuracy;
    }
}

/* Keras's EarlyStopping.on_epoch_end; true when patience ran out. */
static tg_status early_stopping_update(run *x, const tg_epoch_logs *e, bool *stop)
{
    const tg_early_stopping *o = &x->c.o.early_stopping;
    double v = monitored(x->es.monitor, e);
    bool maximize = x->es.monitor == MONITOR_ACC || x->es.monitor == MONITOR_VAL_ACC;
    bool better = !isnan(v) && (x->es.best_epoch == 0 ||
                                (maximize ? v - o->min_delta > x->es.best
                                          : v + o->min_delta < x->es.best));
    x->es.wait++;
    if (better) {
        x->es.best = v;
        x->es.best_epoch = e->epoch;
        x->es.wait = 0;
        x->h->best_epoch = e->epoch;
        if (o->restore_best_weights)
            return best_keep(x);
        return TG_OK;
    }
    if (x->es.wait >= o->patience && x->es.wait > 0)
        *stop = true;
    return TG_OK;
}

/* ---- callbacks ---- */

static tg_status fire(run *x, tg_fit_event ev, double batch_loss, const tg_epoch_logs *logs,
                      bool *stop)
{
    if (x->c.o.n_callbacks <= 0)
        return TG_OK;
    tg_fit_info info;
    memset(&info, 0, sizeof info);
    info.event = ev;
    info.epoch = ev == TG_FIT_TRAIN_BEGIN || ev == TG_FIT_TRAIN_END || ev == TG_FIT_EPOCH_END
                     ? x->pr.epoch : x->pr.epoch + 1;
    info.epochs = x->c.o.epochs;
    info.batch = ev == TG_FIT_EPOCH_END ? x->steps : x->pr.batch;
    info.steps = x->steps;
    info.step = x->pr.step;
    info.batch_loss = batch_loss;
    if (logs)
        info.logs = *logs;
    info.model = x->model;
    info.opt = x->opt;
    for (int i = 0; i < x->c.o.n_callbacks; i++) {
        const tg_fit_callback *cb = &x->c.o.callbacks[i];
        if (!cb->fn)
            continue;
        bool s = false;
        tg_clear_error();
        tg_status st = cb->fn(&info, cb->ctx, &s);
        if (st != TG_OK) {
            if (tg_last_status() == TG_OK)
                return tg_error(st, "tg_fit: callback %d failed (%s)", i, tg_status_str(st));
            return st;
        }
        *stop = *stop || s;
    }
    return TG_OK;
}

static bool stop_requested(const run *x)
{
    return x->c.o.stop_flag && *x->c.o.stop_flag;
}

/* ---- checks ---- */

static tg_status same_count(const char *a, tg_tensor *x, const char *b, tg_tensor *y)
{
    char s1[96], s2[96];
    if (tg_tensor_ndim(x) < 1 || tg_tensor_ndim(y) < 1 ||
        tg_tensor_dim(x, 0) != tg_tensor_dim(y, 0) || tg_tensor_dim(x, 0) < 1)
        return tg_error(TG_ERR_SHAPE, "tg_fit: %s %s and %s %s must have the same number (>= 1) "
                        "of examples along dim 0", a,
                        tg_shape_str(s1, sizeof s1, tg_tensor_ndim(x), tg_tensor_shape(x)), b,
                        tg_shape_str(s2, sizeof s2, tg_tensor_ndim(y), tg_tensor_shape(y)));
    return TG_OK;
}

static tg_status check_fit_args(run *x, tg_tensor *xt, tg_tensor *yt)
{
    const tg_fit_opts *o = &x->c.o;
    tg_status st;
    if (o->epochs < 1 || o->epochs > TG_TRAIN_COUNTER_MAX)
        return tg_error(TG_ERR_ARG, "tg_fit: epochs must be >= 1, got %" PRId64, o->epochs);
    if ((st = same_count("x", xt, "y", yt)) != TG_OK)
        return st;
    if (!o->val_x != !o->val_y)
        return tg_error(TG_ERR_ARG, "tg_fit: validation needs both val_x and val_y (%s is NULL)",
                        o->val_x ? "val_y" : "val_x");
    if (o->val_x && (st = same_count("val_x", o->val_x, "val_y", o->val_y)) != TG_OK)
        return st;
    if (o->n_callbacks < 0 || (o->n_callbacks > 0 && !o->callbacks))
        return tg_error(TG_ERR_ARG, "tg_fit: n_callbacks is %d but callbacks is %s",
                        o->n_callbacks, o->callbacks ? "set" : "NULL");
    if (o->checkpoint_path && (!o->checkpoint_io.save || !o->checkpoint_io.load))
        return tg_error(TG_ERR_ARG, "tg_fit: checkpoint_path is set but checkpoint_io is "
                        "incomplete (opts.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO, from "
                        "io/checkpoint.h)");
    if (o->checkpoint_path && !*o->checkpoint_path)
        return tg_error(TG_ERR_ARG, "tg_fit: checkpoint_path is empty");
    if (o->resume && !o->checkpoint_path)
        return tg_error(TG_ERR_ARG, "tg_fit: resume needs checkpoint_path");
    x->es.monitor = MONITOR_NONE;
    const tg_early_stopping *es = &o->early_stopping;
    if (es->monitor) {
        if ((st = check_monitor(&x->es.monitor, "early_stopping.monitor", es->monitor, &x->c,
                                o->val_x != NULL)) != TG_OK)
            return st;
        if (es->patience < 0 || !(es->min_delta >= 0) || !isfinite(es->min_delta))
            return tg_error(TG_ERR_ARG, "tg_fit: early_stopping needs patience >= 0 (got %d) and "
                            "a finite min_delta >= 0 (got %g)", es->patience, es->min_delta);
    }
    if (o->lr_schedule && isnan(tg_lr_schedule_at(o->lr_schedule, 0)))
        return tg_error(TG_ERR_ARG, "tg_fit: lr_schedule: %s", tg_last_error());
    if (o->lr_plateau) {
        if ((st = check_monitor(&x->plateau_monitor, "lr_plateau_monitor",
                                o->lr_plateau_monitor ? o->lr_plateau_monitor : "val_loss",
                                &x->c, o->val_x != NULL)) != TG_OK)
            return st;
        if ((st = tg_lr_plateau_init(&x->plateau, o->lr_plateau)) != TG_OK)
            return tg_error(st, "tg_fit: lr_plateau: %s", tg_last_error());
        x->plateau_on = true;
    }
    return TG_OK;
}

static tg_status set_lr(run *x, int64_t t)
{
    double lr = tg_lr_schedule_at(x->c.o.lr_schedule, t);
    if (isnan(lr))
        return tg_error(TG_ERR_ARG, "tg_fit: lr_schedule: %s", tg_last_error());
    return tg_optimizer_set_lr(x->opt, lr);
}

/* ---- the loop ---- */

static tg_status fit_loop(run *x)
{
    const tg_fit_opts *o = &x->c.o;
    tg_history *h = x->h;
    progress *p = &x->p;
    bool has_val = x->val_it != NULL;
    bool stop = false;
    tg_status st;
    char why[1024];
    if ((st = fire(x, TG_FIT_TRAIN_BEGIN, NAN, NULL, &stop)) != TG_OK)
        return st;
    if (stop) {
        h->end = TG_FIT_CALLBACK_STOP;
        return TG_OK;
    }
    for (int64_t epoch = x->pr.epoch; epoch < o->epochs; epoch++) {
        bool mid = x->pr.batch > 0;
        if (!mid) {
            x->r = (run_sums){ 0, 0, 0, 0 };
            if ((st = tg_batch_iter_start_epoch(x->it)) != TG_OK)
                return st;
        }
        if (o->lr_schedule && !o->lr_per_step && (st = set_lr(x, epoch)) != TG_OK)
            return st;
        if (p->tty && p->verbose)
            fprintf(p->out, "Epoch %lld/%lld\n", (long long)epoch + 1, (long long)o->epochs);
        p->t0 = p->last_draw = now_s();
        p->earlier = x->r.seconds;
        p->done0 = x->pr.batch;
        p->last_len = 0;
        if (mid)
            progress_step(p, x->pr.batch, x->r.loss_sum / (double)x->r.seen,
                          (double)x->r.correct / (double)x->r.seen);
        if ((st = fire(x, TG_FIT_EPOCH_BEGIN, NAN, NULL, &stop)) != TG_OK)
            return st;
        if (stop) { /* nothing changed since the last save */
            h->end = TG_FIT_CALLBACK_STOP;
            return TG_OK;
        }
        tg_tensor *xb, *yb;
        while (!stop && tg_batch_iter_next(x->it, &xb, &yb)) {
            if (o->lr_schedule && o->lr_per_step && (st = set_lr(x, x->pr.step)) != TG_OK)
                return st;
            double lv;
            st = train_step(x, xb, yb, &lv, why, sizeof why);
            if (st != TG_OK)
                progress_break(p);
            if (st == TG_ERR_RANGE) {
                char kept[600];
                if (o->checkpoint_path)
                    snprintf(kept, sizeof kept, "%s keeps its previous state", o->checkpoint_path);
                else
                    snprintf(kept, sizeof kept, "no checkpoint is set");
                return tg_error(TG_ERR_RANGE, "tg_fit: stopped at epoch %lld, step %lld (batch "
                                "%lld of %lld): %s; nothing was saved after the last good step "
                                "(%s)", (long long)epoch + 1, (long long)x->pr.step + 1,
                                (long long)tg_batch_iter_position(x->it), (long long)x->steps,
                                why, kept);
            }
            if (st != TG_OK)
                return tg_error(st, "tg_fit: training step failed: %s", why);
            x->pr.batch = tg_batch_iter_position(x->it);
            x->pr.step++;
            tg_epoch_logs run_logs = { epoch + 1, x->r.loss_sum / (double)x->r.seen,
                                       x->c.acc ? (double)x->r.correct / (double)x->r.seen : NAN,
                                       NAN, NAN, p->earlier + now_s() - p->t0,
                                       tg_optimizer_lr(x->opt) };
            if (p->verbose)
                progress_step(p, x->pr.batch, run_logs.loss, run_logs.accuracy);
            bool cb_stop = false;
            if ((st = fire(x, TG_FIT_BATCH_END, lv, &run_logs, &cb_stop)) != TG_OK) {
                progress_break(p);
                return st;
            }
            bool flag = stop_requested(x);
            if ((flag || cb_stop) && x->pr.batch < x->steps) {
                x->r.seconds = p->earlier + now_s() - p->t0;
                progress_break(p);
                if ((st = save_state(x)) != TG_OK)
                    return st;
                h->end = flag ? TG_FIT_STOP_REQUESTED : TG_FIT_CALLBACK_STOP;
                return TG_OK;
            }
            stop = cb_stop; /* at the epoch's last batch: the epoch ends first */
        }
        double train_s = p->earlier + now_s() - p->t0;
        eval_out val = { NAN, NAN };
        if (has_val && (st = eval_iter(&val, &x->c, x->model, x->val_it)) != TG_OK) {
            progress_break(p);
            return tg_error(st, "tg_fit: validation failed: %s", tg_last_error());
        }
        tg_epoch_logs e = { epoch + 1, x->r.loss_sum / (double)x->r.seen,
                            x->c.acc ? (double)x->r.correct / (double)x->r.seen : NAN,
                            val.loss, val.acc, p->earlier + now_s() - p->t0,
                            tg_optimizer_lr(x->opt) };
        x->pr.epoch = epoch + 1;
        x->pr.batch = 0;
        x->r = (run_sums){ 0, 0, 0, 0 };
        bool es_stop = false;
        if (x->es.monitor != MONITOR_NONE && (st = early_stopping_update(x, &e, &es_stop)) != TG_OK)
            return st;
        if (x->plateau_on &&
            (st = tg_lr_plateau_update(&x->plateau, x->opt, monitored(x->plateau_monitor, &e),
                                       NULL)) != TG_OK)
            return st;
        if ((st = save_state(x)) != TG_OK) {
            progress_break(p);
            return st;
        }
        progress_end(p, epoch + 1, o->epochs, train_s, &e, has_val);
        h->epoch = x->pr.epoch;
        if ((st = history_add(h, &e)) != TG_OK)
            return st;
        if (o->history_csv) {
            FILE *f = o->history_csv;
            fseek(f, 0, SEEK_END);
            if (ftell(f) <= 0)
                fputs(CSV_HEADER, f);
            csv_row(f, &e);
            fflush(f);
        }
        if ((st = fire(x, TG_FIT_EPOCH_END, NAN, &e, &stop)) != TG_OK)
            return st;
        bool last = epoch + 1 >= o->epochs;
        if (es_stop) {
            h->end = TG_FIT_STOPPED_EARLY;
            if (o->early_stopping.restore_best_weights && x->best_sd) {
                if ((st = best_restore(x)) != TG_OK)
                    return st;
                h->restored_best = true;
            }
            return TG_OK;
        }
        if (!last && stop_requested(x)) {
            h->end = TG_FIT_STOP_REQUESTED;
            return TG_OK;
        }
        if (!last && stop) {
            h->end = TG_FIT_CALLBACK_STOP;
            return TG_OK;
        }
    }
    h->end = TG_FIT_COMPLETED;
    return TG_OK;
}

tg_status tg_fit(tg_history *history, tg_model *model, tg_optimizer *opt, tg_tensor *x,
                 tg_tensor *y, const tg_fit_opts *opts)
{
    static const char fn[] = "tg_fit";
    if (!model || !opt || !x || !y)
        return tg_null_arg(fn, !model ? "model" : !opt ? "opt" : !x ? "x" : "y");
    tg_history local = TG_HISTORY_INIT;
    tg_history *h = history ? history : &local;
    *h = (tg_history)TG_HISTORY_INIT;
    run r;
    memset(&r, 0, sizeof r);
    r.model = model;
    r.opt = opt;
    r.h = h;
    r.es.monitor = MONITOR_NONE;
    tg_status st = settle(&r.c, opts, fn);
    if (st == TG_OK)
        st = check_fit_args(&r, x, y);
    if (st != TG_OK)
        return st;
    const tg_fit_opts *o = &r.c.o;
    tg_batch_opts bo = batch_opts(&r.c, o->batch_size, o->shuffle);
    r.it = tg_batch_iter_new(x, y, &bo, o->rng);
    if (!r.it)
        return tg_error(tg_last_status(), "tg_fit: %s", tg_last_error());
    bool was_training = false, prev_grad = false, nothing_left = false, end_stop = false;
    if (o->val_x) {
        tg_batch_opts vo = batch_opts(&r.c, r.c.val_batch, false);
        r.val_it = tg_batch_iter_new(o->val_x, o->val_y, &vo, NULL);
        if (!r.val_it) {
            st = tg_error(tg_last_status(), "tg_fit: validation data: %s", tg_last_error());
            goto done;
        }
    }
    r.steps = tg_batch_iter_num_batches(r.it);
    h->steps = r.steps;
    r.pr.seed = o->seed;
    was_training = tg_sequential_is_training(model);
    prev_grad = tg_set_grad_enabled(true);
    tg_sequential_set_training(model, true);
    if (o->resume && (st = probe(&r, &nothing_left)) == TG_OK && !nothing_left)
        st = restore(&r);
    h->best_epoch = r.es.best_epoch;
    if (st == TG_OK) {
        h->epoch = r.pr.epoch;
        r.p = (progress){ .out = o->out ? o->out : stdout, .verbose = o->verbose,
                          .acc = r.c.acc, .total = r.steps };
        r.p.tty = o->verbose == 1 && isatty(fileno(r.p.out)) != 0;
        if (!nothing_left)
            st = fit_loop(&r);
    }
    h->epoch = r.pr.epoch;
    h->batch = r.pr.batch;
    h->step = r.pr.step;
    if (st == TG_OK) {
        tg_epoch_logs last = h->n ? h->epochs[h->n - 1] : (tg_epoch_logs){ 0, NAN, NAN, NAN,
                                                                         NAN, 0, NAN };
        st = fire(&r, TG_FIT_TRAIN_END, NAN, &last, &end_stop);
    }
    tg_sequential_set_training(model, was_training);
    tg_set_grad_enabled(prev_grad);
done:
    best_free(&r);
    tg_batch_iter_free(r.it);
    tg_batch_iter_free(r.val_it);
    if (!history)
        tg_history_clear(&local);
    return st;
}
