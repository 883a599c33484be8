/* apps/fashion_cnn.c -- the Fashion-MNIST CNN of the classic Keras tutorial, as a
 * command-line tool: main and the command table, the option parser every command
 * uses, the model, and the small commands (summary, graph-export).
 *
 * The commands that do real work live beside it (fashion_cnn_train.c,
 * fashion_cnn_eval.c, fashion_cnn_transfer.c); docs/fashion-cnn.md is the guide. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fashion_cnn.h"

/* ---------------------------------------------------------------- messages */

int app_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s %s: ", FC_PROG, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_RUNTIME;
}

int app_fail_tg(const char *cmd, const char *what)
{
    return app_fail(cmd, "%s: %s", what, tg_last_error());
}

int app_usage_error(const app_command *cmd, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s %s: ", FC_PROG, cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nUsage: %s %s %s\nTry '%s %s --help' for more information.\n", FC_PROG,
            cmd->name, cmd->args, FC_PROG, cmd->name);
    return EXIT_USAGE;
}

double fc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *fc_thousands(char *buf, size_t size, int64_t n)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t len = strlen(digits), o = 0;
    if (n < 0 && o + 1 < size)
        buf[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 1 < size)
            buf[o++] = ',';
        if (o + 1 < size)
            buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- options */

static void print_help(const app_command *cmd, const app_opt *opts, int n_opts)
{
    printf("Usage: %s %s %s\n\n%s.\n", FC_PROG, cmd->name, cmd->args, cmd->summary);
    if (cmd->description)
        printf("\n%s\n", cmd->description);
    printf("\nOptions:\n");
    for (int i = 0; i < n_opts; i++) {
        char left[64];
        if (opts[i].metavar)
            snprintf(left, sizeof left, "--%s %s", opts[i].name, opts[i].metavar);
        else
            snprintf(left, sizeof left, "--%s", opts[i].name);
        printf("  %-22s %s\n", left, opts[i].help);
    }
    printf("  %-22s %s\n", "-h, --help", "show this help and exit");
}

/* Whole decimal number, nothing else (no blanks, no sign for u64). */
static bool parse_i64(const char *s, int64_t *out)
{
    if (!*s || !(s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9')))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!(s[0] >= '0' && s[0] <= '9'))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!*s || s[0] == ' ' || s[0] == '\t')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool is_choice(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

static int set_value(const app_command *cmd, app_opt *o, const char *v)
{
    switch (o->kind) {
    case OPT_INT: {
        int64_t x;
        if (!parse_i64(v, &x))
            return app_usage_error(cmd, "--%s: '%s' is not a whole number", o->name, v);
        if ((double)x < o->min || (double)x > o->max)
            return app_usage_error(cmd, "--%s: %s is out of range (%.0f to %.0f)", o->name, v,
                                   o->min, o->max);
        *(int64_t *)o->dest = x;
        break;
    }
    case OPT_U64:
        if (!parse_u64(v, (uint64_t *)o->dest))
            return app_usage_error(cmd, "--%s: '%s' is not a non-negative whole number "
                                   "below 2^64", o->name, v);
        break;
    case OPT_DOUBLE: {
        double x;
        if (!parse_double(v, &x))
            return app_usage_error(cmd, "--%s: '%s' is not a number", o->name, v);
        if (!(x > o->min && x <= o->max))
            return app_usage_error(cmd, "--%s: %s is out of range (greater than %g, at most %g)",
                                   o->name, v, o->min, o->max);
        *(double *)o->dest = x;
        break;
    }
    case OPT_STR:
        if (!*v)
            return app_usage_error(cmd, "--%s: the value is empty", o->name);
        *(const char **)o->dest = v;
        break;
    case OPT_CHOICE:
        if (!is_choice(o->choices, v))
            return app_usage_error(cmd, "--%s: '%s' is not one of %s", o->name, v, o->choices);
        *(const char **)o->dest = v;
        break;
    case OPT_FLAG:
        break;
    }
    return 0;
}

int app_parse(const app_command *cmd, app_opt *opts, int n_opts, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(cmd, opts, n_opts);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return app_usage_error(cmd, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        app_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0)
                o = &opts[k];
        if (!o)
            return app_usage_error(cmd, "unknown option '--%.*s'", (int)len, name);
        if (o->given)
            return app_usage_error(cmd, "--%s given twice", o->name);
        o->given = true;
        if (o->kind == OPT_FLAG) {
            if (eq)
                return app_usage_error(cmd, "--%s takes no value", o->name);
            *(bool *)o->dest = true;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return app_usage_error(cmd, "--%s needs a value (%s)", o->name, o->metavar);
            v = argv[++i];
        }
        int rc = set_value(cmd, o, v);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- the model */

tg_sequential *fc_model_new(int n_classes, tg_rng *rng)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, TG_FASHION_MNIST_SIZE,
                                                  TG_FASHION_MNIST_SIZE));
    if (!m)
        return NULL;
    if (tg_sequential_set_rng(m, rng) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_conv2d(32, 3, 3, TG_ACT_RELU, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_max_pool2d(2, 2, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dropout(0.25)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_flatten()) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dense(128, TG_ACT_RELU, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dense(n_classes, TG_ACT_SOFTMAX, NULL)) != TG_OK ||
        tg_sequential_build(m) != TG_OK) {
        tg_sequential_free(m);
        return NULL;
    }
    return m;
}

tg_status fc_load_weights(tg_sequential *model, const char *path, bool weights_only)
{
    tg_state_dict *sd = tg_state_dict_new(), *want = tg_state_dict_new();
    if (!sd || !want) {
        tg_state_dict_free(sd);
        tg_state_dict_free(want);
        return tg_last_status();
    }
    /* The model's dict holds its tensors and its architecture; the file's
     * architecture is read first, alone, and compared before any weight moves.
     * --weights-only leaves the attribute out: tensors by name only. */
    tg_status st = tg_sequential_state_dict(model, sd, "model/");
    for (size_t i = 0; st == TG_OK && i < tg_state_dict_size(sd); i++)
        st = tg_state_dict_set(want, tg_state_dict_name_at(sd, i), tg_state_dict_tensor_at(sd, i));
    if (st == TG_OK && !weights_only) {
        tg_state_dict *probe = tg_state_dict_new();
        st = probe ? tg_state_dict_set_str(probe, "model/architecture", "") : tg_last_status();
        if (st == TG_OK)
            st = tg_checkpoint_load_into(path, probe);
        if (st == TG_OK)
            st = tg_sequential_check_architecture(model, probe, "model/");
        tg_state_dict_free(probe);
    }
    if (st == TG_OK)
        st = tg_checkpoint_load_into(path, want);
    tg_state_dict_free(want);
    tg_state_dict_free(sd);
    return st;
}

bool fc_load_split(tg_dataset *out, const char *cmd, const char *dir, tg_split split,
                   int64_t limit, tg_dtype image_dtype)
{
    tg_fashion_mnist_opts o = TG_FASHION_MNIST_OPTS_INIT;
    o.image_dtype = image_dtype;
    o.limit = limit;
    const char *what = split == TG_SPLIT_TRAIN ? "training" : "test";
    if (tg_fashion_mnist_load(out, dir, split, &o) != TG_OK) {
        app_fail(cmd, "cannot load the %s set: %s", what, tg_last_error());
        return false;
    }
    if (out->count == 0) {
        /* Means over it would be 0/0 (a printed "loss: nan", exit 0): refuse. */
        app_fail(cmd, "the %s set in %s holds no images", what, tg_fashion_mnist_dir(dir));
        tg_dataset_clear(out);
        return false;
    }
    return true;
}

bool fc_evaluate(tg_sequential *model, const tg_dataset *ds, int n_classes, double *loss,
                 double *accuracy, int64_t *confusion)
{
    if (ds->count <= 0)
        return false; /* 0/0: fc_load_split refuses such a set with a message first */
    bool was_training = tg_sequential_is_training(model);
    bool prev_grad = tg_set_grad_enabled(false);
    tg_sequential_set_training(model, false);
    double loss_sum = 0;
    int64_t correct = 0, n = ds->count;
    bool ok = true;
    if (confusion)
        memset(confusion, 0, sizeof(int64_t) * (size_t)(n_classes * n_classes));
    for (int64_t start = 0; start < n && ok; start += FC_EVAL_BATCH) {
        int64_t end = start + FC_EVAL_BATCH < n ? start + FC_EVAL_BATCH : n;
        tg_scope *s = tg_scope_push();
        tg_tensor *x = tg_slice(ds->images, 0, start, end);
        tg_tensor *y = tg_slice(ds->labels, 0, start, end);
        tg_tensor *logits = tg_sequential_forward_logits(model, x);
        tg_tensor *l = tg_cross_entropy(logits, y);
        int64_t hits = 0;
        if (!l || tg_accuracy_count(&hits, logits, y) != TG_OK ||
            (confusion && tg_confusion_matrix_add(confusion, n_classes, logits, y) != TG_OK)) {
            ok = false;
        } else {
            loss_sum += tg_item(l) * (double)(end - start);
            correct += hits;
        }
        tg_scope_pop(s);
    }
    tg_sequential_set_training(model, was_training);
    tg_set_grad_enabled(prev_grad);
    if (ok) {
        *loss = loss_sum / (double)n;
        *accuracy = (double)correct / (double)n;
    }
    return ok;
}

/* ---------------------------------------------------------------- summary */

static const app_command summary_cmd = {
    "summary", "[options]", "Print the model's Keras-style summary table",
    "Needs no data and no checkpoint. Output shapes are channels first (as this\n"
    "library's tensors are): (None, 32, 26, 26) where Keras prints (None, 26, 26, 32).",
};

static int cmd_summary(int argc, char **argv)
{
    int rc = app_parse(&summary_cmd, NULL, 0, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    tg_rng rng;
    tg_rng_seed(&rng, 0);
    tg_sequential *m = fc_model_new(FC_CLASSES, &rng);
    if (!m)
        return app_fail_tg("summary", "cannot build the model");
    tg_status st = tg_sequential_summary(m, stdout);
    tg_sequential_free(m);
    return st == TG_OK ? 0 : app_fail_tg("summary", "cannot print the summary");
}

/* ---------------------------------------------------------------- graph-export */

static const app_command graph_cmd = {
    "graph-export", "[options]", "Print the model's dataflow graph as Graphviz DOT",
    "Runs one training step's forward pass (and the loss) on a synthetic image and\n"
    "writes the recorded graph: ops, tensors with shapes, parameters by name.\n"
    "Render it with: fashion_cnn graph-export | dot -Tsvg > fashion_cnn.svg",
};

static int cmd_graph_export(int argc, char **argv)
{
    bool backward = false, lr = false;
    app_opt opts[] = {
        { "backward", OPT_FLAG, &backward, NULL, "also draw the gradient flow", 0, 0, NULL, false },
        { "lr", OPT_FLAG, &lr, NULL, "lay the graph out left to right", 0, 0, NULL, false },
    };
    int rc = app_parse(&graph_cmd, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    tg_rng rng;
    tg_rng_seed(&rng, 0);
    tg_sequential *m = fc_model_new(FC_CLASSES, &rng);
    if (!m)
        return app_fail_tg("graph-export", "cannot build the model");
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(1, 1, 28, 28), 0.0, 1.0, &rng);
    int64_t label = 0;
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(1), &label);
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), y);
    tg_status st = TG_ERR_STATE;
    if (loss) {
        tg_dot_opts o = TG_DOT_OPTS_INIT;
        o.graph_name = "fashion_cnn";
        o.backward = backward;
        o.rankdir_lr = lr;
        st = tg_dot_write(stdout, &loss, 1, &o);
    }
    rc = st == TG_OK ? 0 : app_fail_tg("graph-export", "cannot write the graph");
    tg_scope_pop(s);
    tg_sequential_free(m);
    return rc;
}

/* ---------------------------------------------------------------- main */

typedef struct command_entry {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command_entry;

static const command_entry commands[] = {
    { "train", "train the model with Keras-style progress; checkpoints; --resume", fc_cmd_train },
    { "evaluate", "test loss and accuracy, per-class accuracy, precision and F1, confusion matrix",
      fc_cmd_evaluate },
    { "predict", "top-3 classes of a test image or a 28x28 PNG/PGM file", fc_cmd_predict },
    { "summary", "the Keras-style model table (no data needed)", cmd_summary },
    { "featuremaps", "PNG grids of the conv feature maps, pooled maps and filters",
      fc_cmd_featuremaps },
    { "transfer", "reuse the trained conv layer for a 4-class task, vs. from scratch",
      fc_cmd_transfer },
    { "graph-export", "the model's dataflow graph as Graphviz DOT", cmd_graph_export },
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: %s <command> [options]\n\n"
            "The Fashion-MNIST CNN of the classic Keras tutorial, on libtensor %s.\n\n"
            "Commands:\n", FC_PROG, tg_version());
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun '%s <command> --help' for the options of a command.\n"
            "Data: Debian's dataset-fashion-mnist package (%s), or --data DIR,\n"
            "or the environment variable %s.\n", FC_PROG, TG_FASHION_MNIST_DEFAULT_DIR,
            TG_FASHION_MNIST_ENV);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const char *c = argv[1];
    if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0) {
        printf("%s (libtensor %s)\n", FC_PROG, tg_version());
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(c, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n", FC_PROG, c);
    print_usage(stderr);
    return EXIT_USAGE;
}
