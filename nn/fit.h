/* nn/fit.h -- the training loop every model gets: tg_fit, tg_evaluate,
 * tg_predict, with Keras's progress display, history, callbacks, checkpoints
 * every epoch, exact resume (mid-epoch included), early stopping, learning-rate
 * schedules and a stop request an app's signal handler can set.
 *
 * nn/ knows no files: checkpoints go through a pair of function pointers
 * (tg_state_io) that io/checkpoint.h fills with TG_CHECKPOINT_IO. Included by
 * nn/nn.h; docs/training.md is the guide. */
#ifndef TG_NN_FIT_H
#define TG_NN_FIT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../libtensor/rng.h"
#include "../libtensor/state_dict.h"
#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_model tg_model;         /* nn/nn.h */
typedef struct tg_optimizer tg_optimizer; /* nn/nn.h */
struct tg_lr_schedule;
struct tg_lr_plateau_opts;

/* Saving and loading a state dict, with the signatures of io's
 * tg_checkpoint_save and tg_checkpoint_load_into (io/checkpoint.h defines
 * TG_CHECKPOINT_IO, the initialiser with those two). save must be atomic: a
 * failed save leaves the previous file as it was. */
typedef struct tg_state_io {
    tg_status (*save)(const char *path, const tg_state_dict *sd);
    tg_status (*load)(const char *path, tg_state_dict *expected);
} tg_state_io;

/* The loss tg_fit minimises and tg_evaluate reports (a batch's mean):
 *   TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY  tg_cross_entropy on the logits
 *       (tg_sequential_forward_logits: a final softmax is skipped, so "Dense(10,
 *       softmax) + sparse categorical cross-entropy" stays stable); integer
 *       targets (N). Keras's SparseCategoricalCrossentropy, PyTorch's
 *       CrossEntropyLoss.
 *   TG_LOSS_MSE     tg_mse(output, target) (MeanSquaredError, MSELoss)
 *   TG_LOSS_CUSTOM  loss_fn(output, target, loss_ctx): a scalar tensor (a
 *       scoped reference, differentiable), NULL on error.
 * MSE and custom losses take the model's output, or its logits with
 * from_logits. */
typedef enum tg_loss_kind {
    TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY = 0,
    TG_LOSS_MSE,
    TG_LOSS_CUSTOM
} tg_loss_kind;
typedef tg_tensor *(*tg_loss_fn)(tg_tensor *output, tg_tensor *target, void *ctx);

/* The metric besides the loss: accuracy (the first maximum of each output row
 * against integer targets, tg_accuracy_count) or none. AUTO is accuracy with
 * cross-entropy, none otherwise. */
typedef enum tg_fit_metric { TG_METRIC_AUTO = 0, TG_METRIC_NONE, TG_METRIC_ACCURACY } tg_fit_metric;

/* One epoch's figures. accuracy is NaN without the metric, val_* NaN without
 * validation data. */
typedef struct tg_epoch_logs {
    int64_t epoch;        /* from 1 */
    double loss;          /* mean over the epoch's training examples */
    double accuracy;
    double val_loss;
    double val_accuracy;
    double seconds;       /* the epoch's time, validation included (before a resume too) */
    double lr;            /* the optimizer's learning rate at the epoch's end */
} tg_epoch_logs;

/* Why tg_fit returned TG_OK. */
typedef enum tg_fit_end {
    TG_FIT_COMPLETED = 0, /* every epoch up to opts.epochs ran (or none was left) */
    TG_FIT_STOP_REQUESTED,/* *stop_flag was set: the state was saved (with a checkpoint) */
    TG_FIT_STOPPED_EARLY, /* early stopping's patience ran out */
    TG_FIT_CALLBACK_STOP  /* a callback asked to stop */
} tg_fit_end;

/* What tg_fit returns: a row per epoch run by this call (a resumed run's rows
 * start at the first epoch it finished). tg_history_clear frees it. */
typedef struct tg_history {
    tg_epoch_logs *epochs; /* malloc'd, n rows */
    int64_t n;
    tg_fit_end end;
    int64_t epoch;         /* epochs completed when fit returned */
    int64_t batch;         /* batches done in the next epoch (> 0 only after a stop mid-epoch) */
    int64_t step;          /* optimizer steps of the whole run */
    int64_t steps;         /* batches per epoch */
    int64_t best_epoch;    /* early stopping: the best epoch (from 1), 0 if none */
    bool restored_best;    /* early stopping restored that epoch's weights */
} tg_history;
#define TG_HISTORY_INIT { NULL, 0, TG_FIT_COMPLETED, 0, 0, 0, 0, 0, false }
void tg_history_clear(tg_history *h);

/* The history as CSV, the columns of fashion_cnn's --history: a header
 * "epoch,loss,accuracy,val_loss,val_accuracy,seconds" when header, then a row
 * per epoch ("%.6f" figures, seconds "%.3f", an empty field for a NaN). */
tg_status tg_history_write_csv(const tg_history *h, FILE *f, bool header);

/* ---- callbacks ---- */

typedef enum tg_fit_event {
    TG_FIT_TRAIN_BEGIN,  /* once, after any resume, before the first step */
    TG_FIT_EPOCH_BEGIN,  /* an epoch's first step is next (also a resumed mid-epoch) */
    TG_FIT_BATCH_END,    /* after every optimizer step */
    TG_FIT_EPOCH_END,    /* after validation, the checkpoint and the epoch line */
    TG_FIT_TRAIN_END     /* once, before tg_fit returns TG_OK */
} tg_fit_event;

/* What a callback sees (borrowed, for the call only). At TRAIN_BEGIN epoch is
 * the epochs completed and batch the batches done in the next one (> 0 after a
 * resume mid-epoch), step the run's steps: where the run starts. */
typedef struct tg_fit_info {
    tg_fit_event event;
    int64_t epoch;        /* the epoch in progress or just ended, from 1 (0 at TRAIN_BEGIN
                           * before any epoch) */
    int64_t epochs;       /* opts.epochs */
    int64_t batch;        /* batches done in the epoch */
    int64_t steps;        /* batches per epoch */
    int64_t step;         /* optimizer steps of the whole run */
    double batch_loss;    /* BATCH_END: this batch's mean loss */
    tg_epoch_logs logs;   /* BATCH_END: the epoch's running means so far; EPOCH_END: the
                           * epoch's row of the history */
    tg_model *model;
    tg_optimizer *opt;
} tg_fit_info;

/* A callback: returns TG_OK to go on, sets *stop (false on entry) to end the
 * run cleanly at that point (as a stop request would, saving first when a
 * checkpoint is set), or returns an error status (with tg_error-style message
 * set, or not) to end tg_fit with that status. */
typedef tg_status (*tg_fit_callback_fn)(const tg_fit_info *info, void *ctx, bool *stop);
typedef struct tg_fit_callback {
    tg_fit_callback_fn fn;
    void *ctx;
} tg_fit_callback;

/* Keras's EarlyStopping: after each epoch the monitored figure improves when it
 * is below best - min_delta ("loss", "val_loss") or above best + min_delta
 * ("accuracy", "val_accuracy"); otherwise the wait grows, and at patience (0:
 * the first epoch without improvement) training stops. With
 * restore_best_weights the model's parameters and buffers are then set back
 * to those of the best epoch (after the last epoch's checkpoint, which keeps
 * the real training state). The best value and the wait are saved in the
 * checkpoint; the best weights are kept in memory only. monitor NULL: off. */
typedef struct tg_early_stopping {
    const char *monitor;
    double min_delta;        /* >= 0 */
    int patience;            /* >= 0 */
    bool restore_best_weights;
} tg_early_stopping;
#define TG_EARLY_STOPPING_INIT { NULL, 0.0, 0, false }

/* ---- the options ---- */

typedef struct tg_fit_opts {
    int64_t epochs;        /* the epoch count to reach (a resume continues to it); >= 1 */
    int64_t batch_size;    /* >= 1; default 32 */
    bool shuffle;          /* a new order every epoch (default true) */
    tg_rng *rng;           /* the shuffles' generator (borrowed; NULL: global); give the
                            * model's own, so that one generator (saved in the checkpoint)
                            * drives weights, shuffles and dropout */
    uint64_t seed;         /* the seed the caller drew everything from: saved in the
                            * checkpoint ("seed", informative); a resume restores it */
    /* Input conversion of every batch, training and validation (tg_batch_opts):
     * u8 images with input_dtype TG_F32 and input_scale 1.0 / 255. 0: none. */
    tg_dtype input_dtype;
    double input_scale;
    /* Validation after every epoch (evaluation mode, no gradients), or none. */
    tg_tensor *val_x;
    tg_tensor *val_y;
    int64_t validation_batch_size; /* 0: batch_size */
    tg_loss_kind loss;
    tg_loss_fn loss_fn;    /* TG_LOSS_CUSTOM */
    void *loss_ctx;
    bool from_logits;      /* MSE / custom losses: feed the logits */
    tg_fit_metric metric;
    /* 0 silent; 1 Keras's progress bar on a terminal (redrawn at most 10 times
     * a second) and one line per epoch elsewhere; 2 one line per epoch. */
    int verbose;
    FILE *out;             /* where progress goes; NULL: stdout */
    FILE *history_csv;     /* a row per epoch as it ends (and the header when the file
                            * is empty), flushed; NULL: none */
    const tg_fit_callback *callbacks; /* called in order at each event */
    int n_callbacks;
    /* Checkpoint after every epoch, and on a stop mid-epoch: the full training
     * state (tg_train_state_export, plus the epoch's order and running sums),
     * through checkpoint_io, to checkpoint_path (NULL: none). A parameter
     * holding a NaN or an infinity is never saved (the run stops with
     * TG_ERR_RANGE). With resume, the state is loaded from the path first and
     * the run continues exactly where it was saved. */
    const char *checkpoint_path;
    tg_state_io checkpoint_io;
    bool resume;
    /* Adds the caller's own attributes or entries to every state dict that is
     * saved or loaded (the loaded values land in it); NULL: none. */
    tg_status (*state_hook)(tg_state_dict *sd, void *ctx);
    void *state_hook_ctx;
    tg_early_stopping early_stopping;
    /* Learning rate from a schedule: tg_lr_schedule_at(schedule, epoch index)
     * at each epoch's start, or at every step (lr_per_step, t = the run's step
     * count). NULL: the optimizer's own rate. */
    const struct tg_lr_schedule *lr_schedule;
    bool lr_per_step;
    /* Reduce on plateau after each epoch (tg_lr_plateau_update) on
     * lr_plateau_monitor ("val_loss" when NULL; as early stopping's names);
     * NULL: off. Its state is saved in the checkpoint. */
    const struct tg_lr_plateau_opts *lr_plateau;
    const char *lr_plateau_monitor;
    /* A stop request: checked after every step and every epoch (after the
     * callbacks, so one of them may let a held signal in). Mid-epoch the state
     * is saved (with a checkpoint) and tg_fit returns TG_OK with end
     * TG_FIT_STOP_REQUESTED; after the last step of an epoch the epoch ends
     * first. NULL: none. */
    volatile sig_atomic_t *stop_flag;
} tg_fit_opts;
#define TG_FIT_OPTS_INIT                                                                       \
    { 1, 32, true, NULL, 0, TG_F32, 0.0, NULL, NULL, 0,                                           \
      TG_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, NULL, NULL, false, TG_METRIC_AUTO, 1, NULL,     \
      NULL, NULL, 0, NULL, { NULL, NULL }, false, NULL, NULL, TG_EARLY_STOPPING_INIT, NULL,   \
      false, NULL, NULL, NULL }

/* Trains model (Sequential, or a graph model with one input and one output) on
 * (x, y) with opt (whose parameters are the model's), epochs of
 * batch_size examples along dim 0. The model is in training mode during the
 * steps and evaluation mode during validation, and is left in training mode.
 * A step: forward, loss, zero_grad, backward, tg_optimizer_step. A non-finite
 * loss (before backward) or gradient (tg_optimizer_step refuses it) stops the
 * run with TG_ERR_RANGE: the weights are those of the last good step and
 * nothing is saved after it ("stopped at epoch 2, step 37 (batch 5 of 32): the
 * loss is NaN; nothing was saved after the last good step (ck.h5 keeps its
 * previous state)"). history (may be NULL) gets the epochs' rows and how the
 * run ended; on error it holds what was done before. Errors (TG_ERR_ARG
 * naming the field) for NULL arguments, a bad option, x and y (or the
 * validation pair) with different example counts, a monitor name that is not
 * one of "loss", "accuracy", "val_loss", "val_accuracy" (or needs the metric or
 * validation data the run lacks), a checkpoint path without checkpoint_io, and
 * every failure of a step, a save or a resume (the message starts
 * "tg_fit: "). */
tg_status tg_fit(tg_history *history, tg_model *model, tg_optimizer *opt, tg_tensor *x,
                 tg_tensor *y, const tg_fit_opts *opts);

/* Mean loss and accuracy (NaN without the metric; accuracy may be NULL) of
 * model over (x, y) in batches of opts->validation_batch_size (or batch_size)
 * in order, in evaluation mode without gradients; the model's mode and grad
 * mode are restored. opts: loss, metric, input conversion and batch size are
 * used (NULL: defaults). The loss is each batch's mean weighted by its size. */
tg_status tg_evaluate(double *loss, double *accuracy, tg_model *model, tg_tensor *x,
                      tg_tensor *y, const tg_fit_opts *opts);

/* The model's outputs on x (N, ...) in batches, in evaluation mode without
 * gradients: a NEW reference (not scoped; release it) of shape (N, output...)
 * -- probabilities for a model ending in softmax, or logits with
 * opts->from_logits. opts: batch size, input conversion, from_logits (NULL:
 * defaults). NULL on error. */
tg_tensor *tg_predict(tg_model *model, tg_tensor *x, const tg_fit_opts *opts);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
