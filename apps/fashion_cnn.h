/* apps/fashion_cnn.h -- what the files of the fashion_cnn app share: the model,
 * option parsing, exit codes and the helpers every command uses.
 *
 * fashion_cnn.c holds main, the option parser and the small commands;
 * fashion_cnn_train.c training (progress display, checkpoints, Ctrl-C);
 * fashion_cnn_eval.c evaluate, predict and featuremaps; fashion_cnn_transfer.c
 * transfer. Only the umbrella header is included (apps/ use the public API). */
#ifndef FASHION_CNN_H
#define FASHION_CNN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "libtensor.h"

/* Exit statuses: 0 success, 1 a runtime error (a file, the data, a checkpoint),
 * 2 a usage error (unknown flag, bad value). */
enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#define FC_PROG "fashion_cnn"
#define FC_DEFAULT_CHECKPOINT "fashion_cnn.h5"
#define FC_CLASSES TG_FASHION_MNIST_CLASSES
#define FC_EVAL_BATCH 500 /* evaluation batch: large for speed, small enough for memory */
#define FC_MAX_BATCH 60000   /* --batch-size, and a checkpoint's batch_size */
#define FC_MAX_LIMIT 1e12    /* --limit, and a checkpoint's limit */

/* ---- options ---- */

typedef enum opt_kind {
    OPT_FLAG,   /* bool, no value */
    OPT_INT,    /* int64_t in [min, max] */
    OPT_U64,    /* uint64_t, any value */
    OPT_DOUBLE, /* double in (min, max], finite */
    OPT_STR,    /* const char * (borrowed from argv) */
    OPT_CHOICE  /* const char * that must be one of the '|'-separated words in choices */
} opt_kind;

typedef struct app_opt {
    const char *name;    /* without the dashes: "epochs" */
    opt_kind kind;
    void *dest;          /* bool *, int64_t *, uint64_t *, double *, const char ** */
    const char *metavar; /* "N", "FILE" ... (NULL for flags) */
    const char *help;    /* one line; the default is part of it */
    double min, max;     /* numeric range (OPT_INT inclusive; OPT_DOUBLE (min, max]) */
    const char *choices; /* OPT_CHOICE: "none|test" */
    bool given;          /* set by the parser */
} app_opt;

typedef struct app_command {
    const char *name;
    const char *args;        /* synopsis after the command name: "[options]" */
    const char *summary;     /* one line for the command list */
    const char *description; /* paragraph(s) for --help, may be NULL */
} app_command;

/* Parses argv[1..argc-1] (argv[0] is the command name) into opts. Accepts
 * "--name value" and "--name=value", and -h/--help. Returns 0 when the options
 * are good, -1 after printing --help to stdout (exit 0), or EXIT_USAGE after a
 * message and the usage line on stderr. */
int app_parse(const app_command *cmd, app_opt *opts, int n_opts, int argc, char **argv);
/* Prints "fashion_cnn CMD: message" and the usage hint to stderr; returns EXIT_USAGE. */
int app_usage_error(const app_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "fashion_cnn CMD: message" to stderr; returns EXIT_RUNTIME. */
int app_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* app_fail with the library's last error appended after ": ". */
int app_fail_tg(const char *cmd, const char *what);

/* ---- the model ---- */

/* The tutorial network for n_classes outputs (10; transfer uses 4):
 *   Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Dropout(0.25) -> Flatten
 *   -> Dense(128, relu) -> Dense(n_classes, softmax)
 * built, with parameters drawn from rng (borrowed; also the dropout masks'
 * generator, so it must outlive the model). NULL on error. */
tg_sequential *fc_model_new(int n_classes, tg_rng *rng);
/* Positions in that model of the layers other commands reach into. */
enum { FC_LAYER_CONV = 0, FC_LAYER_HIDDEN_DENSE = 4 };

/* Loads the model weights of checkpoint `path` (a full training state or any
 * file with "model/..." entries of the right shapes) into model. First the
 * file's "model/architecture" must be this model's (tanh where the file had
 * ReLU is refused, naming the layer); weights_only skips that and loads the
 * tensors by name, shape and dtype only (--weights-only). */
tg_status fc_load_weights(tg_sequential *model, const char *path, bool weights_only);

/* Loads a split (limit 0: all) with images of image_dtype: TG_F32 (pixel / 255)
 * for fc_evaluate, or TG_U8 (a quarter of the memory) for a batch iterator that
 * converts each batch (tg_batch_opts.input_scale). A split of zero images is
 * an error. Runtime errors are already reported to stderr under the command's
 * name when this returns false. */
bool fc_load_split(tg_dataset *out, const char *cmd, const char *dir, tg_split split,
                   int64_t limit, tg_dtype image_dtype);

/* Mean cross-entropy and accuracy of model (put in evaluation mode for the call)
 * over the first n examples; confusion (FC_CLASSES x FC_CLASSES counts, rows the
 * true class) may be NULL. Returns false on error (last error set); ds must
 * not be empty (fc_load_split refuses an empty split). */
bool fc_evaluate(tg_sequential *model, const tg_dataset *ds, int n_classes, double *loss,
                 double *accuracy, int64_t *confusion);

/* ---- commands (argv[0] is the command name) ---- */
int fc_cmd_train(int argc, char **argv);
int fc_cmd_evaluate(int argc, char **argv);
int fc_cmd_predict(int argc, char **argv);
int fc_cmd_featuremaps(int argc, char **argv);
int fc_cmd_transfer(int argc, char **argv);

/* Seconds on a monotonic clock. */
double fc_now(void);
/* Formats n with thousands separators ("693,962") into buf; returns buf. */
char *fc_thousands(char *buf, size_t size, int64_t n);

#endif
