/* apps/fashion_cnn_eval.c -- the commands that use a trained model: evaluate
 * (loss, accuracy, per-class accuracy, precision, F1, confusion matrix), predict (top-3 classes
 * of a test image or a picture file) and featuremaps (PNG grids of what the conv
 * layer sees and has learned). They load the weights only, never train. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fashion_cnn.h"

#define WEIGHTS_ONLY_HELP "load the weights by name even if the checkpoint's architecture differs"

/* Builds the model and loads the checkpoint's weights; NULL after a message. */
static tg_sequential *load_model(const char *cmd, const char *path, bool weights_only,
                                 tg_rng *rng)
{
    tg_sequential *m = fc_model_new(FC_CLASSES, rng);
    if (!m) {
        app_fail_tg(cmd, "cannot build the model");
        return NULL;
    }
    if (fc_load_weights(m, path, weights_only) != TG_OK) {
        app_fail(cmd, "cannot load the weights: %s%s", tg_last_error(),
                 weights_only ? "" : " (--weights-only loads them by name only)");
        tg_sequential_free(m);
        return NULL;
    }
    tg_sequential_set_training(m, false);
    return m;
}

/* Epochs the checkpoint was trained for, or -1 when it does not say. */
static int64_t checkpoint_epochs(const char *path)
{
    int64_t epoch = -1;
    tg_state_dict *sd = tg_state_dict_new();
    if (sd && tg_state_dict_set_i64(sd, "epoch", 0) == TG_OK &&
        tg_checkpoint_load_into(path, sd) == TG_OK)
        tg_state_dict_get_i64(&epoch, sd, "epoch");
    tg_state_dict_free(sd);
    tg_clear_error();
    return epoch;
}

/* Short class label: "T-shirt/top" is the longest (11 characters). */
static const char *cname(int64_t k)
{
    return tg_fashion_mnist_class_name(k);
}

/* ---------------------------------------------------------------- evaluate */

static const app_command eval_cmd = {
    "evaluate", "[options]", "Evaluate a trained model on the Fashion-MNIST test set",
    "Prints the test loss (sparse categorical cross-entropy, as in training) and\n"
    "accuracy, the accuracy of each class, and the confusion matrix (rows: true\n"
    "class, columns: predicted class).",
};

int fc_cmd_evaluate(int argc, char **argv)
{
    const char *checkpoint = FC_DEFAULT_CHECKPOINT, *data = NULL;
    int64_t limit = 0, threads = 1;
    bool weights_only = false;
    enum { EVAL_OPT_CHECKPOINT, EVAL_OPT_DATA, EVAL_OPT_LIMIT, EVAL_OPT_THREADS,
           EVAL_OPT_WEIGHTS_ONLY, EVAL_OPT_COUNT };
    app_opt opts[EVAL_OPT_COUNT] = {
        [EVAL_OPT_CHECKPOINT] = { "checkpoint", OPT_STR, &checkpoint, "FILE",
                                  "weights to evaluate (default " FC_DEFAULT_CHECKPOINT ")", 0, 0,
                                  NULL, false },
        [EVAL_OPT_DATA] = { "data", OPT_STR, &data, "DIR",
                            "Fashion-MNIST folder (default $" TG_FASHION_MNIST_ENV " or "
                            TG_FASHION_MNIST_DEFAULT_DIR ")", 0, 0, NULL, false },
        [EVAL_OPT_LIMIT] = { "limit", OPT_INT, &limit, "N",
                             "only the first N test images (default all 10000)", 1, 1e12, NULL,
                             false },
        [EVAL_OPT_THREADS] = { "threads", OPT_INT, &threads, "N",
                               "threads (default: OMP_NUM_THREADS or all cores)", 1, 1024, NULL,
                               false },
        [EVAL_OPT_WEIGHTS_ONLY] = { "weights-only", OPT_FLAG, &weights_only, NULL,
                                    WEIGHTS_ONLY_HELP, 0, 0, NULL, false },
    };
    int rc = app_parse(&eval_cmd, opts, EVAL_OPT_COUNT, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (opts[EVAL_OPT_THREADS].given && tg_set_num_threads((int)threads) != TG_OK)
        return app_fail_tg("evaluate", "cannot set the number of threads");

    tg_rng rng;
    tg_rng_seed(&rng, 0);
    tg_sequential *m = load_model("evaluate", checkpoint, weights_only, &rng);
    if (!m)
        return EXIT_RUNTIME;
    tg_dataset test = { 0 };
    if (!fc_load_split(&test, "evaluate", data, TG_SPLIT_TEST, limit, TG_F32)) {
        tg_sequential_free(m);
        return EXIT_RUNTIME;
    }
    int64_t conf[FC_CLASSES * FC_CLASSES];
    double loss, acc;
    double t0 = fc_now();
    if (!fc_evaluate(m, &test, FC_CLASSES, &loss, &acc, conf)) {
        rc = app_fail_tg("evaluate", "evaluation failed");
    } else {
        int64_t epochs = checkpoint_epochs(checkpoint);
        printf("Model: %s", checkpoint);
        if (epochs >= 0)
            printf(" (trained %lld epoch%s)", (long long)epochs, epochs == 1 ? "" : "s");
        printf("; %lld test images from %s; %.1fs\n\n", (long long)test.count,
               tg_fashion_mnist_dir(data), fc_now() - t0);
        int64_t correct = 0;
        for (int k = 0; k < FC_CLASSES; k++)
            correct += conf[k * FC_CLASSES + k];
        printf("Test loss: %.4f - test accuracy: %.4f (%lld/%lld)\n\n", loss, acc,
               (long long)correct, (long long)test.count);
        tg_class_metrics cm[FC_CLASSES], avg;
        if (tg_class_metrics_compute(cm, &avg, conf, FC_CLASSES) != TG_OK) {
            rc = app_fail_tg("evaluate", "per-class figures");
            goto done;
        }
        printf("Per-class accuracy (the class's recall), precision and F1:\n"
               "  %-2s %-12s %8s %11s %10s %7s\n", "", "class", "accuracy", "correct",
               "precision", "f1");
        for (int k = 0; k < FC_CLASSES; k++) {
            char frac[32];
            snprintf(frac, sizeof frac, "%lld/%lld", (long long)conf[k * FC_CLASSES + k],
                     (long long)cm[k].support);
            if (cm[k].support)
                printf("  %-2d %-12s %8.4f %11s", k, cname(k), cm[k].recall, frac);
            else
                printf("  %-2d %-12s %8s %11s", k, cname(k), "-", frac);
            printf(" %10.4f %7.4f\n", cm[k].precision, cm[k].f1);
        }
        printf("  %-15s %8.4f %11s %10.4f %7.4f\n", "macro average", avg.recall, "",
               avg.precision, avg.f1);
        printf("\nConfusion matrix (rows: true class, columns: predicted class):\n%16s", "");
        for (int j = 0; j < FC_CLASSES; j++)
            printf(" %5d", j);
        printf("\n");
        for (int k = 0; k < FC_CLASSES; k++) {
            printf("  %-2d %-12s", k, cname(k));
            for (int j = 0; j < FC_CLASSES; j++)
                printf(" %5lld", (long long)conf[k * FC_CLASSES + j]);
            printf("\n");
        }
    }
done:
    tg_dataset_clear(&test);
    tg_sequential_free(m);
    return rc;
}

/* ---------------------------------------------------------------- input images */

typedef struct image_src {
    int64_t index;     /* test-set index, or -1 */
    const char *file;  /* picture file, or NULL */
    bool invert;
    const char *data;
    bool weights_only; /* --weights-only: load the checkpoint's tensors by name */
} image_src;

/* A (1, 1, 28, 28) f32 image in [0, 1] (scoped reference) and its label (-1 for a
 * file); NULL after a message. */
static tg_tensor *load_image(const char *cmd, const image_src *src, int64_t *label)
{
    *label = -1;
    if (src->file) {
        tg_tensor *u8 = NULL;
        if (tg_image_read(&u8, src->file) != TG_OK) {
            app_fail(cmd, "%s", tg_last_error());
            return NULL;
        }
        if (tg_image_check_size(u8, src->file, TG_FASHION_MNIST_SIZE, TG_FASHION_MNIST_SIZE) !=
            TG_OK) {
            app_fail(cmd, "%s (Fashion-MNIST pictures are 28x28 grayscale: resize it first)",
                     tg_last_error());
            tg_release(u8);
            return NULL;
        }
        tg_tensor *f = tg_tensor_to_dtype(u8, TG_F32);
        tg_release(u8);
        if (f && src->invert)
            f = tg_add_scalar(tg_mul_scalar(f, -1.0), 255.0);
        f = tg_mul_scalar(f, 1.0 / 255.0);
        tg_tensor *x = f ? tg_reshape(f, TG_SHAPE(1, 1, 28, 28)) : NULL;
        if (!x)
            app_fail_tg(cmd, "cannot convert the image");
        return x;
    }
    tg_dataset test = { 0 };
    if (!fc_load_split(&test, cmd, src->data, TG_SPLIT_TEST, src->index + 1, TG_F32))
        return NULL;
    if (src->index >= test.count) {
        app_fail(cmd, "--index %lld is out of range: the test set has %lld images (0 to %lld)",
                 (long long)src->index, (long long)test.count, (long long)test.count - 1);
        tg_dataset_clear(&test);
        return NULL;
    }
    int64_t i = src->index;
    *label = (int64_t)tg_get(test.labels, &i);
    tg_tensor *x = tg_tensor_copy(tg_slice(test.images, 0, i, i + 1));
    if (x && src->invert)
        x = tg_add_scalar(tg_mul_scalar(x, -1.0), 1.0);
    tg_dataset_clear(&test);
    if (!x)
        app_fail_tg(cmd, "cannot take the image");
    return x;
}

/* The options predict and featuremaps share; returns the parser's result. */
static int parse_image_opts(const app_command *cmd, app_opt *extra, int n_extra, int argc,
                            char **argv, image_src *src, const char **checkpoint)
{
    enum {
        IMAGE_OPT_CHECKPOINT,
        IMAGE_OPT_INDEX,
        IMAGE_OPT_IMAGE,
        IMAGE_OPT_INVERT,
        IMAGE_OPT_DATA,
        IMAGE_OPT_WEIGHTS_ONLY,
        N_COMMON /* the command's own options follow */
    };
    app_opt opts[N_COMMON + 2];
    app_opt common[N_COMMON] = {
        [IMAGE_OPT_CHECKPOINT] = { "checkpoint", OPT_STR, checkpoint, "FILE",
                                   "trained weights (default " FC_DEFAULT_CHECKPOINT ")", 0, 0,
                                   NULL, false },
        [IMAGE_OPT_INDEX] = { "index", OPT_INT, &src->index, "N", "a test-set image (0 to 9999)",
                              0, 1e12, NULL, false },
        [IMAGE_OPT_IMAGE] = { "image", OPT_STR, &src->file, "FILE",
                              "a 28x28 grayscale PNG or PGM picture", 0, 0, NULL, false },
        [IMAGE_OPT_INVERT] = { "invert", OPT_FLAG, &src->invert, NULL,
                               "invert the image (Fashion-MNIST is light on dark)", 0, 0, NULL,
                               false },
        [IMAGE_OPT_DATA] = { "data", OPT_STR, &src->data, "DIR",
                             "Fashion-MNIST folder for --index (default $" TG_FASHION_MNIST_ENV
                             " or " TG_FASHION_MNIST_DEFAULT_DIR ")", 0, 0, NULL, false },
        [IMAGE_OPT_WEIGHTS_ONLY] = { "weights-only", OPT_FLAG, &src->weights_only, NULL,
                                     WEIGHTS_ONLY_HELP, 0, 0, NULL, false },
    };
    memcpy(opts, common, sizeof common);
    for (int i = 0; i < n_extra; i++)
        opts[N_COMMON + i] = extra[i];
    int rc = app_parse(cmd, opts, N_COMMON + n_extra, argc, argv);
    for (int i = 0; i < n_extra; i++)
        extra[i].given = opts[N_COMMON + i].given;
    if (rc)
        return rc;
    bool index = opts[IMAGE_OPT_INDEX].given, image = opts[IMAGE_OPT_IMAGE].given;
    if (index && image)
        return app_usage_error(cmd, "give either --index or --image, not both");
    if (!index && !image) {
        if (strcmp(cmd->name, "predict") == 0)
            return app_usage_error(cmd, "give --index N (a test image) or --image FILE");
        src->index = 0; /* featuremaps: the first test image by default */
    }
    return 0;
}

/* ---------------------------------------------------------------- predict */

static const app_command predict_cmd = {
    "predict", "--index N | --image FILE [options]",
    "Classify one image: a test-set image or a 28x28 grayscale PNG/PGM picture",
    "Prints the three most likely classes with their probabilities, and for a\n"
    "test image its true label. Pictures must be 28x28 like the data set, the\n"
    "garment light on a dark background (or pass --invert).",
};

int fc_cmd_predict(int argc, char **argv)
{
    image_src src = { -1, NULL, false, NULL, false };
    const char *checkpoint = FC_DEFAULT_CHECKPOINT;
    int rc = parse_image_opts(&predict_cmd, NULL, 0, argc, argv, &src, &checkpoint);
    if (rc)
        return rc < 0 ? 0 : rc;
    tg_rng rng;
    tg_rng_seed(&rng, 0);
    tg_sequential *m = load_model("predict", checkpoint, src.weights_only, &rng);
    if (!m)
        return EXIT_RUNTIME;
    tg_scope *s = tg_scope_push();
    bool prev = tg_set_grad_enabled(false);
    int64_t label;
    tg_tensor *x = load_image("predict", &src, &label);
    tg_tensor *probs = x ? tg_contiguous(tg_sequential_forward(m, x)) : NULL;
    if (!x) {
        rc = EXIT_RUNTIME;
    } else if (!probs || tg_tensor_dtype(probs) != TG_F32) {
        rc = app_fail_tg("predict", "the forward pass failed");
    } else {
        const float *p = tg_tensor_data(probs);
        int top[FC_CLASSES];
        for (int k = 0; k < FC_CLASSES; k++)
            top[k] = k;
        for (int a = 0; a < 3; a++) /* three steps of selection sort are enough */
            for (int b = a + 1; b < FC_CLASSES; b++)
                if (p[top[b]] > p[top[a]]) {
                    int t = top[a];
                    top[a] = top[b];
                    top[b] = t;
                }
        if (src.file)
            printf("Image %s%s\n", src.file, src.invert ? " (inverted)" : "");
        else
            printf("Test image %lld%s: true class %lld %s\n", (long long)src.index,
                   src.invert ? " (inverted)" : "", (long long)label, cname(label));
        for (int a = 0; a < 3; a++)
            printf("  %d. %-2d %-12s %7.2f%%\n", a + 1, top[a], cname(top[a]),
                   100.0 * (double)p[top[a]]);
        if (!src.file)
            printf("Prediction: %s (%s)\n", cname(top[0]), top[0] == label ? "correct" : "wrong");
    }
    tg_set_grad_enabled(prev);
    tg_scope_pop(s);
    tg_sequential_free(m);
    return rc;
}

/* ---------------------------------------------------------------- featuremaps */

static const app_command fmaps_cmd = {
    "featuremaps", "[--index N | --image FILE] [options]",
    "Draw what the conv layer computes for an image, and its learned filters",
    "Writes PNG files into the output folder (created if needed):\n"
    "  input.png        the image, 4x enlarged\n"
    "  conv_maps.png    the 32 feature maps after Conv2D + ReLU (26x26 each, 2x)\n"
    "  pooled_maps.png  the 32 maps after MaxPooling2D (13x13 each, 4x)\n"
    "  filters.png      the 32 learned 3x3 kernels (16x)\n"
    "Grids have 8 tiles per row with a 1-pixel white border. Each tile is scaled\n"
    "to its own range (black = its minimum, white = its maximum), as imshow shows\n"
    "subplots. The first test image is used unless --index or --image says\n"
    "otherwise.",
};

typedef struct picture {
    const char *file;
    const char *what;
} picture;

static int write_grid(const char *cmd, const char *dir, const picture *pic, tg_tensor *maps,
                      int scale)
{
    tg_grid_opts go = TG_GRID_OPTS_INIT;
    go.ncols = 8;
    go.scale = scale;
    tg_tensor *g = tg_image_grid(maps, &go);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, pic->file);
    if (!g || tg_png_write(path, g, 0, 255) != TG_OK)
        return app_fail(cmd, "cannot write %s: %s", path, tg_last_error());
    printf("  %-40s %4lldx%-4lld %s\n", path, (long long)tg_tensor_dim(g, 1),
           (long long)tg_tensor_dim(g, 0), pic->what);
    return 0;
}

int fc_cmd_featuremaps(int argc, char **argv)
{
    image_src src = { -1, NULL, false, NULL, false };
    const char *checkpoint = FC_DEFAULT_CHECKPOINT, *out = "featuremaps";
    app_opt extra[] = {
        { "out", OPT_STR, &out, "DIR", "output folder (default featuremaps)", 0, 0, NULL,
          false },
    };
    int rc = parse_image_opts(&fmaps_cmd, extra, (int)(sizeof extra / sizeof extra[0]), argc,
                              argv, &src, &checkpoint);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        return app_fail("featuremaps", "cannot create the folder %s: %s", out, strerror(errno));
    struct stat sb;
    if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return app_fail("featuremaps", "%s is not a folder", out);

    tg_rng rng;
    tg_rng_seed(&rng, 0);
    tg_sequential *m = load_model("featuremaps", checkpoint, src.weights_only, &rng);
    if (!m)
        return EXIT_RUNTIME;
    tg_scope *s = tg_scope_push();
    bool prev = tg_set_grad_enabled(false);
    int64_t label;
    tg_tensor *x = load_image("featuremaps", &src, &label);
    if (!x) {
        rc = EXIT_RUNTIME;
        goto done;
    }
    /* The first layers of the model, op by op, to keep the intermediate maps. */
    tg_layer *conv = tg_sequential_layer(m, FC_LAYER_CONV);
    tg_tensor *kernel = tg_layer_param_by_name(conv, "kernel");
    tg_tensor *bias = tg_layer_param_by_name(conv, "bias");
    tg_conv2d_opts co = TG_CONV2D_OPTS_INIT;
    tg_pool2d_opts po = TG_POOL2D_OPTS_INIT;
    tg_tensor *maps = tg_relu(tg_conv2d(x, kernel, bias, &co));
    tg_tensor *pooled = tg_max_pool2d(maps, &po);
    tg_tensor *probs = tg_contiguous(tg_sequential_forward(m, x));
    if (!maps || !pooled || !probs) {
        rc = app_fail_tg("featuremaps", "the forward pass failed");
        goto done;
    }
    int64_t best = 0;
    const float *p = tg_tensor_data(probs);
    for (int k = 1; k < FC_CLASSES; k++)
        if (p[k] > p[best])
            best = k;
    if (src.file)
        printf("Image %s: predicted %s (%.1f%%)\n", src.file, cname(best), 100.0 * p[best]);
    else
        printf("Test image %lld (%s): predicted %s (%.1f%%)\n", (long long)src.index,
               cname(label), cname(best), 100.0 * p[best]);
    printf("Wrote:\n");
    static const picture pics[] = {
        { "input.png", "the input image" },
        { "conv_maps.png", "32 conv feature maps (26x26, after ReLU)" },
        { "pooled_maps.png", "32 max-pooled maps (13x13)" },
        { "filters.png", "32 learned 3x3 filters" },
    };
    /* Every tile on its own range, as matplotlib's imshow shows each subplot: on
     * one common range a few strong filters would leave the rest plain grey. */
    if ((rc = write_grid("featuremaps", out, &pics[0], x, 4)) != 0 ||
        (rc = write_grid("featuremaps", out, &pics[1], tg_squeeze(maps, 0), 2)) != 0 ||
        (rc = write_grid("featuremaps", out, &pics[2], tg_squeeze(pooled, 0), 4)) != 0 ||
        (rc = write_grid("featuremaps", out, &pics[3], kernel, 16)) != 0)
        goto done;
done:
    tg_set_grad_enabled(prev);
    tg_scope_pop(s);
    tg_sequential_free(m);
    return rc;
}
