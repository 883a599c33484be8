/* tests/test_nn.c -- nn/: layers and their shapes, user-defined layer types
 * (parameters, buffers, standalone forward), the Sequential model (summary,
 * parameter names, trainable flags, state dicts), initializers, optimizers
 * (each update checked against the formula computed here), accuracy, and a tiny
 * model that learns. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"

/* ---------------------------------------------------------------- helpers */

/* Bit-for-bit equal values (a zero tolerance would divide 0 by 0). */
#define ASSERT_TENSOR_EQ(a, b) TG_ASSERT_TENSOR_CLOSE(a, b, 1e-300, 0)

/* The Keras Fashion-MNIST tutorial network. */
static tg_sequential *tutorial_model(void)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 28, 28));
    TG_CHECK(m);
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(32, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_max_pool2d(2, 2, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dropout(0.25)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(128, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(10, TG_ACT_SOFTMAX, NULL)));
    return m;
}

/* A small CNN: conv 4 3x3 relu on 1x6x6, max pool 2, flatten, dense 3 softmax. */
static tg_sequential *small_cnn(void)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 6, 6));
    TG_CHECK(m);
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(4, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_max_pool2d(2, 2, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_SOFTMAX, NULL)));
    return m;
}

/* An MLP in f64: in -> hidden relu -> out (no activation). */
static tg_sequential *mlp(int64_t in, int hidden, int out, tg_dtype dt)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(in));
    TG_CHECK(m);
    TG_OK_(tg_sequential_set_dtype(m, dt));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(hidden, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(out, TG_ACT_NONE, NULL)));
    return m;
}

static char *summary_text(tg_sequential *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert(f != NULL);
    TG_OK_(tg_sequential_summary(m, f));
    fclose(f);
    return buf;
}

static void assert_shape(const int64_t *got, int ndim, int want_ndim, const int64_t *want)
{
    ck_assert_int_eq(ndim, want_ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(got[i], want[i]);
}

static tg_tensor *param_f64(const char *name, int64_t n, const double *v)
{
    tg_tensor *p = tg_from_data(TG_F64, TG_SHAPE(n), v);
    TG_CHECK(p);
    TG_OK_(tg_tensor_set_name(p, name));
    TG_OK_(tg_set_requires_grad(p, true));
    return p;
}

/* Element at flat row-major index i, through the public accessors. */
static double at(const tg_tensor *t, int64_t i)
{
    int64_t idx[TG_MAX_DIMS];
    for (int d = tg_tensor_ndim(t) - 1; d >= 0; d--) {
        idx[d] = i % tg_tensor_dim(t, d);
        i /= tg_tensor_dim(t, d);
    }
    return tg_get(t, idx);
}

/* ---------------------------------------------------------------- shapes, counts */

START_TEST(test_tutorial_shapes_and_count)
{
    tg_sequential *m = tutorial_model();
    TG_OK_(tg_sequential_build(m));
    static const struct { const char *name, *type; int nd; int64_t shape[3]; int64_t n; } want[] = {
        { "conv2d", "Conv2D", 3, { 32, 26, 26 }, 320 },
        { "max_pooling2d", "MaxPooling2D", 3, { 32, 13, 13 }, 0 },
        { "dropout", "Dropout", 3, { 32, 13, 13 }, 0 },
        { "flatten", "Flatten", 1, { 5408 }, 0 },
        { "dense", "Dense", 1, { 128 }, 692352 },
        { "dense_1", "Dense", 1, { 10 }, 1290 },
    };
    ck_assert_int_eq(tg_sequential_layer_count(m), 6);
    for (int i = 0; i < 6; i++) {
        tg_layer *l = tg_sequential_layer(m, i);
        ck_assert_str_eq(tg_layer_name(l), want[i].name);
        ck_assert_str_eq(tg_layer_type(l), want[i].type);
        int nd;
        const int64_t *s = tg_layer_output_shape(l, &nd);
        assert_shape(s, nd, want[i].nd, want[i].shape);
        ck_assert_int_eq(tg_layer_count_params(l), want[i].n);
    }
    int64_t total = -1, tr = -1, ntr = -1;
    TG_OK_(tg_sequential_count_params(&total, &tr, &ntr, m));
    ck_assert_int_eq(total, 693962);
    ck_assert_int_eq(tr, 693962);
    ck_assert_int_eq(ntr, 0);

    /* The forward agrees: probabilities (2, 10); in eval mode it is deterministic. */
    tg_sequential_set_training(m, false);
    tg_scope *sc = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(2, 1, 28, 28), 0, 1, NULL);
    tg_tensor *y = tg_sequential_forward(m, x);
    TG_CHECK(y);
    assert_shape(tg_tensor_shape(y), tg_tensor_ndim(y), 2, (const int64_t[]){ 2, 10 });
    double sum = 0;
    for (int64_t i = 0; i < 10; i++)
        sum += at(y, i);
    TG_ASSERT_CLOSE(sum, 1.0, 1e-5, 0);
    ASSERT_TENSOR_EQ(tg_sequential_forward(m, x), y);
    tg_scope_pop(sc);

    char *text = summary_text(m);
    ck_assert_msg(strstr(text, "Total params: 693,962\n"), "%s", text);
    ck_assert_msg(strstr(text, " dense_1 (Dense)"), "%s", text);
    ck_assert_msg(strstr(text, "(None, 32, 26, 26)"), "%s", text);
    free(text);
    tg_sequential_free(m);
}
END_TEST

START_TEST(test_summary_exact)
{
    tg_sequential *m = small_cnn();
    char *text = summary_text(m);
    /* "max_pooling2d (MaxPooling2D)" needs a first column one wider than Keras's
     * 29, so every rule is 66 long. */
    const char *want =
        "Model: \"sequential\"\n"
        "__________________________________________________________________\n"
        " Layer (type)                 Output Shape              Param #\n"
        "==================================================================\n"
        " conv2d (Conv2D)              (None, 4, 4, 4)           40\n"
        "__________________________________________________________________\n"
        " max_pooling2d (MaxPooling2D) (None, 4, 2, 2)           0\n"
        "__________________________________________________________________\n"
        " flatten (Flatten)            (None, 16)                0\n"
        "__________________________________________________________________\n"
        " dense (Dense)                (None, 3)                 51\n"
        "==================================================================\n"
        "Total params: 91\n"
        "Trainable params: 91\n"
        "Non-trainable params: 0\n"
        "__________________________________________________________________\n";
    ck_assert_str_eq(text, want);
    free(text);

    /* Freezing moves the conv's 40 to the non-trainable line. */
    TG_OK_(tg_layer_set_trainable(tg_sequential_layer_by_name(m, "conv2d"), false));
    text = summary_text(m);
    ck_assert_msg(strstr(text, "Total params: 91\nTrainable params: 51\n"
                               "Non-trainable params: 40\n"), "%s", text);
    free(text);
    tg_sequential_free(m);

    /* Without a long name the table is Keras's 65 wide, columns at 29 and 55. */
    m = mlp(5, 1000, 2, TG_F32);
    TG_OK_(tg_sequential_set_name(m, "mlp"));
    text = summary_text(m);
    const char *want2 =
        "Model: \"mlp\"\n"
        "_________________________________________________________________\n"
        " Layer (type)                Output Shape              Param #\n"
        "=================================================================\n"
        " dense (Dense)               (None, 1000)              6,000\n"
        "_________________________________________________________________\n"
        " dense_1 (Dense)             (None, 2)                 2,002\n"
        "=================================================================\n"
        "Total params: 8,002\n"
        "Trainable params: 8,002\n"
        "Non-trainable params: 0\n"
        "_________________________________________________________________\n";
    ck_assert_str_eq(text, want2);
    free(text);
    tg_sequential_free(m);
}
END_TEST

START_TEST(test_padding_and_strides)
{
    tg_conv2d_layer_opts same = TG_CONV2D_LAYER_OPTS_INIT;
    same.padding = TG_PADDING_SAME;
    tg_conv2d_layer_opts same2 = same;
    same2.stride[0] = same2.stride[1] = 2;
    tg_conv2d_layer_opts expl = TG_CONV2D_LAYER_OPTS_INIT;
    expl.padding = TG_PADDING_EXPLICIT;
    expl.pad[0] = 1; /* top only */
    expl.use_bias = false;
    tg_pool2d_layer_opts psame = TG_POOL2D_LAYER_OPTS_INIT;
    psame.padding = TG_PADDING_SAME;

    tg_sequential *m = tg_sequential_new(TG_SHAPE(3, 7, 9));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(5, 3, 3, TG_ACT_NONE, &same)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(6, 3, 3, TG_ACT_TANH, &same2)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(2, 2, 3, TG_ACT_SIGMOID, &expl)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_avg_pool2d(2, 2, &psame)));
    TG_OK_(tg_sequential_build(m));
    int nd;
    const int64_t *s;
    s = tg_layer_output_shape(tg_sequential_layer(m, 0), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){ 5, 7, 9 });
    s = tg_layer_output_shape(tg_sequential_layer(m, 1), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){ 6, 4, 5 }); /* ceil(7/2), ceil(9/2) */
    s = tg_layer_output_shape(tg_sequential_layer(m, 2), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){ 2, 4, 3 }); /* (4+1-2)+1, 5-3+1 */
    ck_assert_int_eq(tg_layer_param_count(tg_sequential_layer(m, 2)), 1);
    s = tg_layer_output_shape(tg_sequential_layer(m, 3), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){ 2, 2, 2 });
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 3)), "average_pooling2d");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, -2)), "conv2d_2");

    /* The forward agrees with the inferred shapes. */
    tg_scope *sc = tg_scope_push();
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(2, 3, 7, 9), 0, 1, NULL);
    tg_tensor *y = tg_sequential_forward(m, x);
    TG_CHECK(y);
    assert_shape(tg_tensor_shape(y), tg_tensor_ndim(y), 4, (const int64_t[]){ 2, 2, 2, 2 });
    tg_scope_pop(sc);
    tg_sequential_free(m);
}
END_TEST

/* ZeroPadding2D -> Conv2D -> GlobalAveragePooling2D -> Reshape ->
 * GlobalMaxPooling2D(keepdims) -> Flatten -> Dense: the shapes inferred at build,
 * the summary's rows, the forward agreeing with the ops called directly, and the
 * constructors' and builds' errors. */
START_TEST(test_padding_global_reshape_layers)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(2, 5, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_zero_padding2d((const int[]){1, 0, 2, 1})));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(3, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_global_avg_pool2d(false)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_reshape(3, (const int64_t[]){-1, 1, 1})));
    TG_OK_(tg_sequential_add(m, tg_layer_new_global_max_pool2d(true)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_build(m));
    int nd;
    const int64_t *s;
    s = tg_layer_output_shape(tg_sequential_layer(m, 0), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){2, 6, 7});
    s = tg_layer_output_shape(tg_sequential_layer(m, 1), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){3, 4, 5});
    s = tg_layer_output_shape(tg_sequential_layer(m, 2), &nd);
    assert_shape(s, nd, 1, (const int64_t[]){3});
    s = tg_layer_output_shape(tg_sequential_layer(m, 3), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){3, 1, 1});
    s = tg_layer_output_shape(tg_sequential_layer(m, 4), &nd);
    assert_shape(s, nd, 3, (const int64_t[]){3, 1, 1});
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 0)), "zero_padding2d");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 2)), "global_average_pooling2d");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 3)), "reshape");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 4)), "global_max_pooling2d");
    char *text = summary_text(m);
    ck_assert_msg(strstr(text, "(ZeroPadding2D)"), "%s", text);
    ck_assert_msg(strstr(text, "(GlobalAveragePooling2D)"), "%s", text);
    ck_assert_msg(strstr(text, "(None, 3, 1, 1)"), "%s", text);
    free(text);
    tg_scope *sc = tg_scope_push();
    tg_tensor *y = tg_sequential_forward(m, tg_rand_normal(TG_F32, TG_SHAPE(4, 2, 5, 4), 0, 1,
                                                           NULL));
    TG_CHECK(y);
    assert_shape(tg_tensor_shape(y), tg_tensor_ndim(y), 2, (const int64_t[]){4, 2});
    tg_scope_pop(sc);
    tg_sequential_free(m);

    /* the forward equals the ops' composition */
    m = tg_sequential_new(TG_SHAPE(2, 5, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_zero_padding2d((const int[]){1, 0, 2, 1})));
    TG_OK_(tg_sequential_add(m, tg_layer_new_global_max_pool2d(true)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_reshape(1, (const int64_t[]){2})));
    TG_OK_(tg_sequential_build(m));
    sc = tg_scope_push();
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(3, 2, 5, 4), 0, 1, NULL);
    y = tg_sequential_forward(m, x);
    TG_CHECK(y);
    tg_tensor *want = tg_global_max_pool2d(tg_pad2d(x, (const int[]){1, 0, 2, 1}, 0.0), false);
    TG_CHECK(want);
    TG_ASSERT_TENSOR_CLOSE(y, want, 1e-7, 0.0);
    tg_scope_pop(sc);
    tg_sequential_free(m);

    /* errors */
    ck_assert_ptr_null(tg_layer_new_zero_padding2d((const int[]){0, 0, -1, 0}));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_layer_new_zero_padding2d(NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_layer_new_reshape(2, (const int64_t[]){-1, -1}));
    ck_assert_msg(strstr(tg_last_error(), "at most one"), "%s", tg_last_error());
    ck_assert_ptr_null(tg_layer_new_reshape(1, (const int64_t[]){0}));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_layer_new_reshape(0, (const int64_t[]){1}));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    m = tg_sequential_new(TG_SHAPE(2, 5, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_reshape(2, (const int64_t[]){3, -1})));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    ck_assert_msg(strstr(tg_last_error(), "cannot reshape"), "%s", tg_last_error());
    tg_sequential_free(m);
    m = tg_sequential_new(TG_SHAPE(12));
    TG_OK_(tg_sequential_add(m, tg_layer_new_global_avg_pool2d(false)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    ck_assert_msg(strstr(tg_last_error(), "global_average_pooling2d"), "%s", tg_last_error());
    tg_sequential_free(m);
}
END_TEST

/* The activations by enum and name, in Dense and Activation layers, and the
 * LeakyReLU, ELU and ReLU layers: forward against formulas computed here, the
 * config in the architecture and summary, and the constructors' errors. */
static double keras_relu(double x, double max_value, double slope, double thr)
{
    if (x >= max_value)
        return max_value;
    return x >= thr ? x : slope * (x - thr);
}

START_TEST(test_activation_layers)
{
    /* names, both ways */
    const char *names[] = {"linear", "relu", "tanh", "sigmoid", "softmax", "leaky_relu", "elu",
                           "gelu", "swish", "softplus", "hard_sigmoid"};
    ck_assert_int_eq(TG_ACT_COUNT, 11);
    for (int a = 0; a < TG_ACT_COUNT; a++) {
        ck_assert_str_eq(tg_activation_name((tg_activation)a), names[a]);
        tg_activation got = TG_ACT_COUNT;
        TG_OK_(tg_activation_from_name(&got, names[a]));
        ck_assert_int_eq(got, a);
    }
    tg_activation got = TG_ACT_NONE;
    TG_OK_(tg_activation_from_name(&got, "silu"));
    ck_assert_int_eq(got, TG_ACT_SWISH);
    ck_assert_int_eq(tg_activation_from_name(&got, "mish"), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_activation_from_name: no activation is called \"mish\"");
    ck_assert_int_eq(tg_activation_from_name(&got, NULL), TG_ERR_ARG);
    ck_assert_str_eq(tg_activation_name(TG_ACT_COUNT), "invalid");

    tg_scope *sc = tg_scope_push();
    const double xv[] = {-3, -1, -0.25, 0.5, 2, 7}; /* (1, 6) */
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(1, 6), xv);
    for (int a = TG_ACT_LEAKY_RELU; a < TG_ACT_COUNT; a++) {
        tg_tensor *y = tg_activation_apply(x, (tg_activation)a);
        TG_CHECK(y);
        for (int i = 0; i < 6; i++) {
            double v = xv[i], want = 0;
            switch (a) {
            case TG_ACT_LEAKY_RELU: want = v > 0 ? v : 0.2 * v; break;
            case TG_ACT_ELU: want = v > 0 ? v : exp(v) - 1; break;
            case TG_ACT_GELU: want = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
            case TG_ACT_SWISH: want = v / (1 + exp(-v)); break;
            case TG_ACT_SOFTPLUS: want = log(1 + exp(v)); break;
            case TG_ACT_HARD_SIGMOID: want = fmin(1, fmax(0, 0.2 * v + 0.5)); break;
            }
            ck_assert_msg(fabs(at(y, i) - want) <= 1e-13, "%s(%g) = %.17g, expected %.17g",
                          names[a], v, at(y, i), want);
        }
    }
    tg_scope_pop(sc);

    /* in a model: Dense with gelu, Activation(swish), the three layers */
    tg_sequential *m = tg_sequential_new(TG_SHAPE(6));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(6, TG_ACT_GELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_activation(TG_ACT_SWISH)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_leaky_relu(0.3)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_elu(0.5)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_relu_opts(6.0, 0.1, 0.0)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_relu_opts(INFINITY, 0.5, 1.0)));
    TG_OK_(tg_sequential_build(m));
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 2)), "leaky_re_lu");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 3)), "elu");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 4)), "re_lu");
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 5)), "re_lu_1");
    char *arch = tg_sequential_architecture(m);
    TG_CHECK(arch);
    ck_assert_msg(strstr(arch, "\"activation\": \"gelu\"") &&
                  strstr(arch, "\"activation\": \"swish\"") &&
                  strstr(arch, "{\"class_name\": \"LeakyReLU\", \"name\": \"leaky_re_lu\", "
                               "\"trainable\": true, \"config\": {\"alpha\": 0.29999999999999999") &&
                  strstr(arch, "{\"class_name\": \"ELU\", \"name\": \"elu\", \"trainable\": "
                               "true, \"config\": {\"alpha\": 0.5") &&
                  strstr(arch, "\"config\": {\"max_value\": 6, \"negative_slope\": "
                               "0.10000000000000001, \"threshold\": 0") &&
                  strstr(arch, "\"config\": {\"max_value\": null, \"negative_slope\": 0.5, "
                               "\"threshold\": 1"), "%s", arch);
    free(arch);
    char *text = summary_text(m);
    ck_assert_msg(strstr(text, "(LeakyReLU)") && strstr(text, "(ELU)") && strstr(text, "(ReLU)"),
                  "%s", text);
    free(text);
    tg_sequential_free(m);

    /* each layer alone against Keras's formulas, values and gradients */
    sc = tg_scope_push();
    const double rv[] = {-3, -1, 0.5, 1, 1.5, 6, 8, 0}; /* (2, 4) */
    struct { tg_layer *l; double max_value, slope, thr; } rl[] = {
        {tg_layer_new_relu_opts(INFINITY, 0, 0), INFINITY, 0, 0},
        {tg_layer_new_relu_opts(6, 0, 0), 6, 0, 0},
        {tg_layer_new_relu_opts(6, 0.1, 0), 6, 0.1, 0},
        {tg_layer_new_relu_opts(INFINITY, 0.5, 1), INFINITY, 0.5, 1},
        {tg_layer_new_relu_opts(7, 0, 1.2), 7, 0, 1.2},
    };
    for (size_t k = 0; k < 2 * sizeof rl / sizeof rl[0]; k++) {
        size_t j = k / 2; /* f64, then f32 (oneDNN) */
        TG_CHECK(rl[j].l);
        tg_tensor *xr = tg_tensor_to_dtype(tg_from_data(TG_F64, TG_SHAPE(2, 4), rv),
                                           k % 2 ? TG_F32 : TG_F64);
        TG_OK_(tg_set_requires_grad(xr, true));
        tg_tensor *y = tg_layer_forward(rl[j].l, xr, false);
        TG_CHECK(y);
        TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
        double tol = k % 2 ? 1e-6 : 1e-15;
        for (int i = 0; i < 8; i++) {
            double v = rv[i], want = keras_relu(v, rl[j].max_value, rl[j].slope, rl[j].thr);
            double dwant = v >= rl[j].max_value ? 0 : v > rl[j].thr ? 1 : rl[j].slope;
            ck_assert_msg(fabs(at(y, i) - want) <= tol, "ReLU %zu: y(%g) = %g, expected %g", k,
                          v, at(y, i), want);
            if (v != rl[j].thr) /* the kink: tested in tests/test_ops.c */
                ck_assert_msg(fabs(at(tg_grad(xr), i) - dwant) <= tol,
                              "ReLU %zu: y'(%g) = %g, expected %g", k, v, at(tg_grad(xr), i),
                              dwant);
        }
    }
    for (size_t j = 0; j < sizeof rl / sizeof rl[0]; j++)
        tg_layer_free(rl[j].l);
    tg_layer *lk = tg_layer_new_leaky_relu(0.3), *el = tg_layer_new_elu(2.0);
    tg_tensor *xr = tg_from_data(TG_F64, TG_SHAPE(2, 4), rv);
    tg_tensor *yl = tg_layer_forward(lk, xr, false), *ye = tg_layer_forward(el, xr, false);
    TG_CHECK(yl && ye);
    for (int i = 0; i < 8; i++) {
        TG_ASSERT_CLOSE(at(yl, i), rv[i] > 0 ? rv[i] : 0.3 * rv[i], 1e-15, 0);
        TG_ASSERT_CLOSE(at(ye, i), rv[i] > 0 ? rv[i] : 2.0 * (exp(rv[i]) - 1), 1e-15, 1e-15);
    }
    tg_layer_free(lk);
    tg_layer_free(el);
    tg_scope_pop(sc);

    /* errors */
    ck_assert_ptr_null(tg_layer_new_leaky_relu(-0.1));
    TG_ASSERT_ERROR_HAS("tg_layer_new_leaky_relu: alpha -0.1 must be finite and >= 0");
    ck_assert_ptr_null(tg_layer_new_leaky_relu(NAN));
    ck_assert_ptr_null(tg_layer_new_elu(INFINITY));
    TG_ASSERT_ERROR_HAS("tg_layer_new_elu: alpha inf must be finite");
    ck_assert_ptr_null(tg_layer_new_relu_opts(-1, 0, 0));
    TG_ASSERT_ERROR_HAS("tg_layer_new_relu_opts: max_value -1 must be >= 0");
    ck_assert_ptr_null(tg_layer_new_relu_opts(NAN, 0, 0));
    ck_assert_ptr_null(tg_layer_new_relu_opts(6, -0.5, 0));
    TG_ASSERT_ERROR_HAS("negative_slope -0.5 must be finite and >= 0");
    ck_assert_ptr_null(tg_layer_new_relu_opts(6, 0, NAN));
    TG_ASSERT_ERROR_HAS("threshold nan must be finite");
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_shape_errors)
{
    /* A 3x3 conv on a 2x2 input. */
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 2, 2));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(8, 3, 3, TG_ACT_RELU, NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("conv2d (Conv2D)");
    TG_ASSERT_ERROR_HAS("3x3");
    TG_ASSERT_ERROR_HAS("(None, 1, 2, 2)");
    ck_assert(!tg_sequential_is_built(m));
    ck_assert_ptr_null(tg_sequential_forward(m, NULL));
    tg_sequential_free(m);

    /* Dense on a 4-D output without Flatten; the first layers get unbuilt again. */
    m = tg_sequential_new(TG_SHAPE(1, 8, 8));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(2, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(4, TG_ACT_NONE, NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("dense (Dense)");
    TG_ASSERT_ERROR_HAS("(None, 2, 6, 6)");
    TG_ASSERT_ERROR_HAS("Flatten");
    ck_assert_int_eq(tg_layer_param_count(tg_sequential_layer(m, 0)), 0);
    size_t n = 99;
    ck_assert_ptr_null(tg_sequential_params(m, &n));
    ck_assert_int_eq(n, 0);
    tg_sequential_free(m);

    /* A pool larger than its input; conv on a 1-D input. */
    m = tg_sequential_new(TG_SHAPE(3, 4, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_max_pool2d(5, 5, NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("max_pooling2d (MaxPooling2D)");
    tg_sequential_free(m);
    /* Explicit pads as large as the pool: a window of padding only. */
    tg_pool2d_layer_opts ppad = TG_POOL2D_LAYER_OPTS_INIT;
    ppad.padding = TG_PADDING_EXPLICIT;
    ppad.pad[3] = 2;
    m = tg_sequential_new(TG_SHAPE(3, 4, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_avg_pool2d(2, 2, &ppad)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("average_pooling2d (AveragePooling2D): padding (top 0, bottom 0, "
                        "left 0, right 2) must be smaller than the 2x2 pool");
    ck_assert(!tg_sequential_is_built(m));
    tg_sequential_free(m);
    m = tg_sequential_new(TG_SHAPE(10));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(2, 1, 1, TG_ACT_NONE, NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("(None, 10)");
    tg_sequential_free(m);

    /* An empty model; bad constructor arguments; NULL layers keep their message. */
    m = tg_sequential_new(TG_SHAPE(4));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_STATE);
    ck_assert_ptr_null(tg_layer_new_dense(0, TG_ACT_NONE, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_dense: units 0 must be >= 1");
    ck_assert_ptr_null(tg_layer_new_dropout(1.0));
    ck_assert_ptr_null(tg_layer_new_conv2d(4, 0, 3, TG_ACT_NONE, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_conv2d: filters 4 and kernel 0x3 must be >= 1");
    ck_assert_ptr_null(tg_layer_new_dense(3, (tg_activation)42, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_dense: activation 42 is not a tg_activation");
    /* the windowed constructors' checks, whole */
    tg_conv2d_layer_opts co = TG_CONV2D_LAYER_OPTS_INIT;
    co.padding = (tg_padding)7;
    ck_assert_ptr_null(tg_layer_new_conv2d(4, 3, 3, TG_ACT_NONE, &co));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_conv2d: padding 7 is not a tg_padding");
    ck_assert_ptr_null(tg_layer_new_max_pool2d(0, 2, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_max_pool2d: pool size 0x2 must be >= 1");
    tg_pool2d_layer_opts po = TG_POOL2D_LAYER_OPTS_INIT;
    po.padding = TG_PADDING_EXPLICIT;
    po.pad[1] = -1;
    ck_assert_ptr_null(tg_layer_new_avg_pool2d(2, 2, &po));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_avg_pool2d: pad[1] = -1 is negative");
    ck_assert_int_ne(tg_sequential_add(m, tg_layer_new_dropout(-0.5)), TG_OK);
    TG_ASSERT_ERROR_HAS("tg_layer_new_dropout");
    ck_assert_ptr_null(tg_sequential_new(0, NULL));
    ck_assert_ptr_null(tg_sequential_new(TG_SHAPE(3, 0)));

    /* Names: explicit ones must be unique and '/'-free; auto names skip taken ones. */
    tg_dense_layer_opts o = TG_DENSE_LAYER_OPTS_INIT;
    o.name = "dense";
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_NONE, &o)));
    ck_assert_int_eq(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_NONE, &o)), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("already has a layer named \"dense\"");
    o.name = "a/b";
    ck_assert_ptr_null(tg_layer_new_dense(3, TG_ACT_NONE, &o));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_dense: layer name \"a/b\" contains '/' "
                     "(it separates layer and parameter in state dict names)");
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_NONE, NULL)));
    ck_assert_str_eq(tg_layer_name(tg_sequential_layer(m, 1)), "dense_1");
    tg_layer *l = tg_layer_new_flatten();
    ck_assert_int_eq(tg_layer_set_name(l, ""), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_layer_set_name: a layer name must not be empty");
    TG_OK_(tg_layer_set_name(l, "my_flatten"));
    TG_OK_(tg_sequential_add(m, l));
    ck_assert_int_eq(tg_layer_set_name(l, "other"), TG_ERR_STATE);
    ck_assert_ptr_eq(tg_sequential_layer_by_name(m, "my_flatten"), l);
    ck_assert_ptr_null(tg_sequential_layer_by_name(m, "nope"));
    TG_ASSERT_ERROR_HAS("nope");
    ck_assert_ptr_null(tg_sequential_layer(m, 3));
    ck_assert_ptr_null(tg_sequential_layer(m, -4));
    tg_layer_free(l); /* refused: the model owns it */
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);

    /* After build: no more layers; the input must match. */
    TG_OK_(tg_sequential_build(m));
    ck_assert_int_eq(tg_sequential_add(m, tg_layer_new_flatten()), TG_ERR_STATE);
    ck_assert_int_eq(tg_sequential_set_dtype(m, TG_F64), TG_ERR_STATE);
    tg_scope *s = tg_scope_push();
    ck_assert_ptr_null(tg_sequential_forward(m, tg_zeros(TG_F32, TG_SHAPE(2, 5))));
    TG_ASSERT_ERROR_HAS("tg_sequential_forward: model \"");
    TG_ASSERT_ERROR_HAS("expects input (None, 4), got [2, 5]");
    ck_assert_ptr_null(tg_sequential_forward(m, tg_zeros(TG_F64, TG_SHAPE(2, 4))));
    TG_ASSERT_ERROR_HAS("f64");
    ck_assert_ptr_null(tg_sequential_forward(m, tg_zeros(TG_F32, TG_SHAPE(4))));
    tg_scope_pop(s);
    tg_sequential_free(m);

    /* An unowned layer is freed by its owner. */
    tg_layer_free(tg_layer_new_conv2d(1, 1, 1, TG_ACT_NONE, NULL));
    tg_layer_free(NULL);
}
END_TEST

/* ---------------------------------------------------------------- parameters */

START_TEST(test_param_names_and_init)
{
    tg_manual_seed(7);
    tg_sequential *m = small_cnn();
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    ck_assert_int_eq(n, 4);
    const char *names[] = { "sequential/conv2d/kernel", "sequential/conv2d/bias",
                            "sequential/dense/kernel", "sequential/dense/bias" };
    const int64_t shapes[][4] = { { 4, 1, 3, 3 }, { 4 }, { 3, 16 }, { 3 } };
    const int ndims[] = { 4, 1, 2, 1 };
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(tg_tensor_name(ps[i]), names[i]);
        assert_shape(tg_tensor_shape(ps[i]), tg_tensor_ndim(ps[i]), ndims[i], shapes[i]);
        ck_assert(tg_requires_grad(ps[i]));
        ck_assert_int_eq(tg_tensor_dtype(ps[i]), TG_F32);
    }
    tg_layer *conv = tg_sequential_layer(m, 0);
    ck_assert_ptr_eq(tg_layer_param_by_name(conv, "kernel"), ps[0]);
    ck_assert_ptr_eq(tg_layer_param(conv, 1), ps[1]);
    ck_assert_ptr_null(tg_layer_param(conv, 2));
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_param: index 2 out of range (layer conv2d has 2 parameters)");
    ck_assert_ptr_null(tg_layer_param_by_name(conv, "gamma"));
    ck_assert_str_eq(tg_last_error(), "tg_layer_param_by_name: layer conv2d has no parameter "
                     "\"gamma\"");
    tg_clear_error();
    ck_assert_ptr_null(tg_layer_param_by_name(NULL, "kernel"));
    ck_assert_str_eq(tg_last_error(), "tg_layer_param_by_name: argument 'layer' is NULL");
    ck_assert_int_eq(tg_layer_param_count(tg_sequential_layer(m, 1)), 0);

    /* glorot_uniform kernels within +-sqrt(6/(fan_in+fan_out)), not all equal;
     * zero biases. conv: fan_in 1*9, fan_out 4*9. */
    double lim = sqrt(6.0 / (9 + 36)), mn = 1e9, mx = -1e9;
    for (int64_t i = 0; i < tg_tensor_numel(ps[0]); i++) {
        mn = fmin(mn, at(ps[0], i));
        mx = fmax(mx, at(ps[0], i));
    }
    ck_assert(mn >= -lim && mx <= lim && mx > mn);
    for (int64_t i = 0; i < 4; i++)
        ck_assert(at(ps[1], i) == 0.0);

    /* Same seed, same parameters. */
    tg_manual_seed(7);
    tg_sequential *m2 = small_cnn();
    size_t n2;
    tg_tensor *const *ps2 = tg_sequential_params(m2, &n2);
    ASSERT_TENSOR_EQ(ps2[0], ps[0]);
    ASSERT_TENSOR_EQ(ps2[2], ps[2]);
    tg_sequential_free(m2);

    /* A model-owned rng gives its own reproducible stream. */
    tg_rng r1, r2;
    tg_rng_seed(&r1, 11);
    tg_rng_seed(&r2, 11);
    m2 = mlp(6, 5, 2, TG_F64);
    tg_sequential *m3 = mlp(6, 5, 2, TG_F64);
    TG_OK_(tg_sequential_set_rng(m2, &r1));
    TG_OK_(tg_sequential_set_rng(m3, &r2));
    tg_manual_seed(99);
    TG_OK_(tg_sequential_build(m2));
    TG_OK_(tg_sequential_build(m3));
    ASSERT_TENSOR_EQ(tg_layer_param(tg_sequential_layer(m2, 0), 0),
                           tg_layer_param(tg_sequential_layer(m3, 0), 0));
    ck_assert_int_eq(tg_tensor_dtype(tg_layer_param(tg_sequential_layer(m2, 0), 0)), TG_F64);
    tg_sequential_free(m2);
    tg_sequential_free(m3);
    tg_sequential_free(m);

    /* The initializers on their own. */
    tg_scope *s = tg_scope_push();
    tg_tensor *w = tg_empty(TG_F64, TG_SHAPE(200, 50));
    TG_OK_(tg_init_fill(w, TG_INIT_HE_NORMAL, NULL));
    /* Keras: sigma = sqrt(2 / fan_in) / 0.8796, truncated at 2 sigma; a normal
     * truncated at 2 sigma has variance 0.774 sigma^2, so the samples' standard
     * deviation is sqrt(2 / fan_in). */
    double sigma = sqrt(2.0 / 50) / 0.87962566103423978, sum2 = 0;
    for (int64_t i = 0; i < 10000; i++) {
        ck_assert(fabs(at(w, i)) <= 2 * sigma);
        sum2 += at(w, i) * at(w, i);
    }
    TG_ASSERT_CLOSE(sqrt(sum2 / 10000), sqrt(2.0 / 50), 0, 0.05);
    TG_OK_(tg_init_fill(w, TG_INIT_ZEROS, NULL));
    ck_assert(at(w, 123) == 0.0);
    ck_assert_int_ne(tg_init_fill(tg_zeros(TG_I32, TG_SHAPE(3)), TG_INIT_ZEROS, NULL), TG_OK);
    ck_assert_int_ne(tg_init_fill(w, (tg_initializer)9, NULL), TG_OK);
    /* shape errors name the initializer, on the contiguous and the strided path */
    ck_assert_int_eq(tg_init_fill(tg_empty(TG_F32, TG_SHAPE(4)), TG_INIT_HE_NORMAL, NULL),
                     TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(),
                     "tg_he_normal: a kernel needs at least 2 dims (out, in, ...), got 1");
    /* a strided view gets the draws a contiguous tensor of its shape gets */
    tg_rng q1, q2;
    tg_rng_seed(&q1, 11);
    tg_rng_seed(&q2, 11);
    tg_tensor *wc = tg_empty(TG_F64, TG_SHAPE(3, 5));
    tg_tensor *wt = tg_transpose(tg_empty(TG_F64, TG_SHAPE(5, 3)), 0, 1);
    ck_assert(!tg_tensor_is_contiguous(wt));
    TG_OK_(tg_init_fill(wc, TG_INIT_GLOROT_UNIFORM, &q1));
    TG_OK_(tg_init_fill(wt, TG_INIT_GLOROT_UNIFORM, &q2));
    ASSERT_TENSOR_EQ(wc, wt);
    ck_assert(fabs(at(wc, 7)) <= sqrt(6.0 / 8) && at(wc, 7) != at(wc, 8));
    ck_assert_str_eq(tg_initializer_name(TG_INIT_GLOROT_UNIFORM), "glorot_uniform");
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_architecture)
{
    tg_sequential *m = tutorial_model();
    char *a = tg_sequential_architecture(m);
    TG_CHECK(a);
    ck_assert_msg(strstr(a, "\"class_name\": \"Sequential\"") && strstr(a, "\"input_shape\": [1, 28, 28]") &&
                  strstr(a, "{\"class_name\": \"Conv2D\", \"name\": \"conv2d\", \"trainable\": true, "
                            "\"config\": {\"filters\": 32, \"kernel_size\": [3, 3]") &&
                  strstr(a, "\"rate\": 0.25") && strstr(a, "\"units\": 10") &&
                  strstr(a, "\"activation\": \"softmax\"}}]}"), "%s", a);
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, sd, "model/"));
    const char *arch = NULL;
    TG_OK_(tg_state_dict_get_str(&arch, sd, "model/architecture"));
    ck_assert_str_eq(arch, a);
    ck_assert_int_eq(tg_state_dict_size(sd), 6);
    ck_assert_str_eq(tg_state_dict_name_at(sd, 0), "model/conv2d/kernel");
    ck_assert_str_eq(tg_state_dict_name_at(sd, 5), "model/dense_1/bias");
    free(a);
    tg_state_dict_free(sd);
    tg_sequential_free(m);
}
END_TEST

/* small_cnn with the conv's activation and an optional trailing Flatten (no
 * parameters: the shapes stay those of small_cnn). */
static tg_sequential *small_cnn_variant(tg_activation conv_act, bool extra_flatten)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 6, 6));
    TG_CHECK(m);
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(4, 3, 3, conv_act, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_max_pool2d(2, 2, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_SOFTMAX, NULL)));
    if (extra_flatten)
        TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_build(m));
    return m;
}

/* The same parameter shapes are not the same model: a load into another
 * architecture is refused naming the first difference and changes nothing;
 * tg_sequential_load_weights loads by name anyway; a dict without the
 * attribute loads by name as before. */
START_TEST(test_architecture_check)
{
    tg_sequential *relu = small_cnn_variant(TG_ACT_RELU, false);
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(relu, sd, "model/"));
    TG_OK_(tg_sequential_check_architecture(relu, sd, "model/"));

    tg_sequential *tanh_m = small_cnn_variant(TG_ACT_TANH, false);
    size_t n = 0;
    tg_tensor *const *pt = tg_sequential_params(tanh_m, &n);
    tg_tensor *k0 = tg_tensor_copy(pt[0]);
    ck_assert_int_eq(tg_sequential_load_state_dict(tanh_m, sd, "model/"), TG_ERR_FORMAT);
    ck_assert_str_eq(tg_last_error(), "tg_sequential_load_state_dict: the state dict is of "
                     "another architecture: layer 0 \"conv2d\" (Conv2D) differs: saved "
                     "\"activation\": \"relu\", this model \"activation\": \"tanh\" (the "
                     "weights alone load with tg_sequential_load_weights)");
    ASSERT_TENSOR_EQ(pt[0], k0);
    ck_assert_int_eq(tg_sequential_check_state_dict(tanh_m, sd, "model/"), TG_ERR_FORMAT);
    ck_assert_int_eq(tg_sequential_check_architecture(tanh_m, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("tg_sequential_check_architecture: the state dict is of another");

    /* Weights only, by name: loads, and the weights are relu's. */
    TG_OK_(tg_sequential_load_weights(tanh_m, sd, "model/"));
    tg_tensor *const *pr = tg_sequential_params(relu, &n);
    for (size_t i = 0; i < n; i++)
        ASSERT_TENSOR_EQ(pt[i], pr[i]);

    /* One layer more (no parameters): the layer counts are named. */
    tg_sequential *longer = small_cnn_variant(TG_ACT_RELU, true);
    ck_assert_int_eq(tg_sequential_load_state_dict(longer, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("it has 4 layers, this model 5 (from layer 4 \"flatten_1\", Flatten");
    tg_state_dict *sd5 = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(longer, sd5, "model/"));
    ck_assert_int_eq(tg_sequential_load_state_dict(relu, sd5, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("it has more than this model's 4 layers");

    /* Without the attribute the architecture is unknown: the load goes by name
     * (as before), the explicit check refuses. */
    tg_state_dict *bare = tg_state_dict_new();
    for (size_t i = 0; i < tg_state_dict_size(sd); i++)
        TG_OK_(tg_state_dict_set(bare, tg_state_dict_name_at(sd, i),
                                 tg_state_dict_tensor_at(sd, i)));
    TG_OK_(tg_sequential_load_state_dict(tanh_m, bare, "model/"));
    ck_assert_int_eq(tg_sequential_check_architecture(tanh_m, bare, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("no string attribute \"model/architecture\"");

    tg_release(k0);
    tg_state_dict_free(bare);
    tg_state_dict_free(sd5);
    tg_state_dict_free(sd);
    tg_sequential_free(longer);
    tg_sequential_free(tanh_m);
    tg_sequential_free(relu);
}
END_TEST

/* ---------------------------------------------------------------- forward */

START_TEST(test_forward_probs_and_logits)
{
    tg_manual_seed(3);
    tg_sequential *m = small_cnn();
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(5, 1, 6, 6), 0, 1, NULL);
    tg_tensor *p = tg_sequential_forward(m, x);
    tg_tensor *z = tg_sequential_forward_logits(m, x);
    TG_CHECK(p && z);
    assert_shape(tg_tensor_shape(p), tg_tensor_ndim(p), 2, (const int64_t[]){ 5, 3 });
    for (int64_t r = 0; r < 5; r++) {
        double sum = 0;
        for (int64_t c = 0; c < 3; c++)
            sum += at(p, r * 3 + c);
        TG_ASSERT_CLOSE(sum, 1.0, 1e-5, 0);
    }
    /* softmax(logits) is the forward's output, computed here by hand. */
    for (int64_t r = 0; r < 5; r++) {
        double mx = fmax(fmax(at(z, r * 3), at(z, r * 3 + 1)), at(z, r * 3 + 2)), den = 0;
        for (int64_t c = 0; c < 3; c++)
            den += exp(at(z, r * 3 + c) - mx);
        for (int64_t c = 0; c < 3; c++)
            TG_ASSERT_CLOSE(at(p, r * 3 + c), exp(at(z, r * 3 + c) - mx) / den, 1e-6, 1e-5);
    }
    /* Same argmax, so the same accuracy. */
    tg_tensor *labels = tg_from_data(TG_I64, TG_SHAPE(5), (const int64_t[]){ 0, 1, 2, 0, 1 });
    ck_assert(tg_accuracy(p, labels) == tg_accuracy(z, labels));
    /* The CE from probabilities and from logits agree. */
    TG_ASSERT_CLOSE(tg_item(tg_cross_entropy_probs(p, labels)),
                    tg_item(tg_cross_entropy(z, labels)), 1e-5, 1e-4);
    tg_scope_pop(s);
    tg_sequential_free(m);

    /* A final Softmax layer is skipped too; a middle one is not. */
    m = tg_sequential_new(TG_SHAPE(4));
    TG_OK_(tg_sequential_set_dtype(m, TG_F64));
    TG_OK_(tg_sequential_add(m, tg_layer_new_activation(TG_ACT_SOFTMAX)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_softmax()));
    s = tg_scope_push();
    x = tg_from_data(TG_F64, TG_SHAPE(1, 4), (const double[]){ 1, 2, 3, 4 });
    p = tg_sequential_forward(m, x);
    z = tg_sequential_forward_logits(m, x);
    TG_CHECK(p && z);
    tg_tensor *w = tg_layer_param(tg_sequential_layer(m, 1), 0);
    double e[4], den = 0;
    for (int i = 0; i < 4; i++)
        den += (e[i] = exp(i + 1.0));
    for (int o = 0; o < 3; o++) {
        double want = 0; /* bias is zero */
        for (int i = 0; i < 4; i++)
            want += at(w, o * 4 + i) * e[i] / den;
        TG_ASSERT_CLOSE(at(z, o), want, 1e-12, 1e-10);
    }
    double ps = at(p, 0) + at(p, 1) + at(p, 2);
    TG_ASSERT_CLOSE(ps, 1.0, 1e-12, 0);
    tg_scope_pop(s);
    tg_sequential_free(m);
}
END_TEST

START_TEST(test_dropout_modes)
{
    tg_manual_seed(5);
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1000));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dropout(0.5)));
    ck_assert(tg_sequential_is_training(m));
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(2, 1000));
    tg_tensor *y = tg_sequential_forward(m, x);
    TG_CHECK(y);
    int zeros = 0;
    for (int64_t i = 0; i < 2000; i++) {
        double v = at(y, i);
        ck_assert_msg(v == 0.0 || fabs(v - 2.0) < 1e-6, "element %lld = %g", (long long)i, v);
        zeros += v == 0.0;
    }
    ck_assert_msg(zeros > 850 && zeros < 1150, "%d zeros of 2000", zeros);
    tg_sequential_set_training(m, false);
    ck_assert(!tg_sequential_is_training(m));
    y = tg_sequential_forward(m, x);
    ASSERT_TENSOR_EQ(y, x);
    tg_scope_pop(s);
    tg_sequential_free(m);
}
END_TEST

/* ---------------------------------------------------------------- trainable */

START_TEST(test_frozen_layer)
{
    tg_manual_seed(1);
    tg_sequential *m = mlp(4, 6, 3, TG_F64);
    tg_layer *first = tg_sequential_layer(m, 0);
    TG_OK_(tg_layer_set_trainable(first, false));
    ck_assert(!tg_layer_trainable(first));
    size_t n;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    ck_assert_int_eq(n, 4);
    ck_assert(!tg_requires_grad(ps[0]) && !tg_requires_grad(ps[1]));
    ck_assert(tg_requires_grad(ps[2]) && tg_requires_grad(ps[3]));
    int64_t tot, tr, ntr;
    TG_OK_(tg_sequential_count_params(&tot, &tr, &ntr, m));
    ck_assert_int_eq(tot, 4 * 6 + 6 + 6 * 3 + 3);
    ck_assert_int_eq(ntr, 30);
    ck_assert_int_eq(tr, 21);

    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, NULL);
    TG_CHECK(opt);
    tg_scope *s = tg_scope_push();
    tg_tensor *before0 = tg_tensor_copy(ps[0]), *before2 = tg_tensor_copy(ps[2]);
    tg_tensor *x = tg_rand_normal(TG_F64, TG_SHAPE(8, 4), 0, 1, NULL);
    tg_tensor *labels = tg_from_data(TG_I32, TG_SHAPE(8), (const int32_t[]){ 0, 1, 2, 0, 1, 2, 0, 1 });
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), labels);
    TG_CHECK(loss);
    TG_OK_(tg_backward(loss));
    ck_assert_ptr_null(tg_grad(ps[0]));
    ck_assert_ptr_null(tg_grad(ps[1]));
    ck_assert_ptr_nonnull(tg_grad(ps[2]));
    TG_OK_(tg_optimizer_step(opt));
    ASSERT_TENSOR_EQ(ps[0], before0);
    ck_assert(tg_test_max_scaled_err(ps[2], before2, 1e-12, 0, &(int64_t){ 0 }) > 1);

    /* Unfreezing: the next backward reaches the first layer and the step moves it. */
    TG_OK_(tg_layer_set_trainable(first, true));
    TG_OK_(tg_optimizer_zero_grad(opt));
    loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), labels);
    TG_OK_(tg_backward(loss));
    ck_assert_ptr_nonnull(tg_grad(ps[0]));
    TG_OK_(tg_optimizer_step(opt));
    ck_assert(tg_test_max_scaled_err(ps[0], before0, 1e-12, 0, &(int64_t){ 0 }) > 1);
    TG_OK_(tg_sequential_zero_grad(m));
    ck_assert(at(tg_grad(ps[0]), 0) == 0.0);
    tg_scope_pop(s);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

/* ---------------------------------------------------------------- optimizers */

START_TEST(test_adam_matches_formula)
{
    const double p0[3] = { 0.5, -1.0, 2.0 };
    const double g[3][3] = { { 0.1, -0.2, 3.0 }, { -0.05, 0.4, 1e-4 }, { 0.3, 0.0, -2.0 } };
    tg_adam_opts o = TG_ADAM_OPTS_INIT;
    ck_assert(o.lr == 1e-3 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.epsilon == 1e-7);
    /* Run 0: Keras's defaults but lr 0.01. Run 1: small gradients and a large
     * epsilon, where adding epsilon before or after the bias correction (Keras vs
     * PyTorch) changes the step by tens of percent. */
    for (int run = 0; run < 2; run++) {
        double eps = run ? 1e-3 : 1e-7, scale = run ? 1e-2 : 1.0;
        o.lr = 0.01;
        o.epsilon = eps;
        tg_tensor *p = param_f64("w", 3, p0);
        tg_tensor *q = tg_tensor_to_dtype(p, TG_F32);
        TG_OK_(tg_tensor_set_name(q, "w32"));
        TG_OK_(tg_set_requires_grad(q, true));
        tg_optimizer *opt = tg_optimizer_new_adam((tg_tensor *[]){ p, q }, 2, &o);
        TG_CHECK(opt);
        ck_assert_str_eq(tg_optimizer_type(opt), "adam");

        double want[3], m[3] = { 0 }, v[3] = { 0 }, gs[3];
        memcpy(want, p0, sizeof want);
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < 3; i++)
                gs[i] = scale * g[t - 1][i];
            tg_test_set_grad(p, gs);
            tg_test_set_grad(q, gs);
            TG_OK_(tg_optimizer_step(opt));
            ck_assert_int_eq(tg_optimizer_steps(opt), t);
            double lr_t = 0.01 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
            for (int i = 0; i < 3; i++) {
                m[i] = 0.9 * m[i] + 0.1 * gs[i];
                v[i] = 0.999 * v[i] + 0.001 * gs[i] * gs[i];
                want[i] -= lr_t * m[i] / (sqrt(v[i]) + eps);
                TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
                TG_ASSERT_CLOSE(at(q, i), want[i], 1e-6, 1e-6);
            }
            if (t == 1 && run == 0) /* Adam's first step moves every element by about lr. */
                for (int i = 0; i < 3; i++)
                    TG_ASSERT_CLOSE(fabs(at(p, i) - p0[i]), 0.01, 0, 1e-3);
        }
        tg_optimizer_free(opt);
        tg_release(p);
        tg_release(q);
    }
}
END_TEST

START_TEST(test_sgd_matches_formula)
{
    const double p0[2] = { 1.0, -2.0 };
    const double g[3][2] = { { 0.5, -1.0 }, { 0.25, 0.75 }, { -1.0, 0.0 } };
    for (int variant = 0; variant < 4; variant++) {
        /* plain, momentum, nesterov, momentum + weight decay */
        tg_sgd_opts o = TG_SGD_OPTS_INIT;
        o.lr = 0.1;
        o.momentum = variant ? 0.9 : 0.0;
        o.nesterov = variant == 2;
        o.weight_decay = variant == 3 ? 0.01 : 0.0;
        tg_tensor *p = param_f64("p", 2, p0);
        tg_optimizer *opt = tg_optimizer_new_sgd(&p, 1, &o);
        TG_CHECK(opt);
        double want[2] = { p0[0], p0[1] }, vel[2] = { 0, 0 };
        for (int t = 0; t < 3; t++) {
            tg_test_set_grad(p, g[t]);
            TG_OK_(tg_optimizer_step(opt));
            for (int i = 0; i < 2; i++) {
                double gi = g[t][i] + o.weight_decay * want[i];
                if (o.momentum == 0) {
                    want[i] -= o.lr * gi;
                } else {
                    vel[i] = o.momentum * vel[i] - o.lr * gi;
                    want[i] += o.nesterov ? o.momentum * vel[i] - o.lr * gi : vel[i];
                }
                TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
            }
        }
        /* A hand-checked value: plain SGD, p0 - 0.1 * sum(g). */
        if (variant == 0)
            TG_ASSERT_CLOSE(at(p, 0), 1.0 - 0.1 * (0.5 + 0.25 - 1.0), 1e-15, 0);
        tg_optimizer_free(opt);
        tg_release(p);
    }
    /* Bad hyper-parameters. */
    tg_sgd_opts bad = TG_SGD_OPTS_INIT;
    bad.nesterov = true;
    ck_assert_ptr_null(tg_optimizer_new_sgd(NULL, 0, &bad));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_sgd: nesterov needs momentum > 0");
    bad = (tg_sgd_opts)TG_SGD_OPTS_INIT;
    bad.lr = -1;
    ck_assert_ptr_null(tg_optimizer_new_sgd(NULL, 0, &bad));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_sgd: lr = -1 must be > 0");
    tg_adam_opts badam = TG_ADAM_OPTS_INIT;
    badam.beta2 = 1.0;
    ck_assert_ptr_null(tg_optimizer_new_adam(NULL, 0, &badam));
    ck_assert_str_eq(tg_last_error(),
                     "tg_optimizer_new_adam: beta1 = 0.9 and beta2 = 1 must be in [0, 1)");
}
END_TEST

START_TEST(test_rmsprop_matches_formula)
{
    const double p0[2] = { 0.3, -0.7 };
    const double g[2][2] = { { 1.0, -0.01 }, { -0.5, 0.2 } };
    for (int variant = 0; variant < 2; variant++) {
        tg_rmsprop_opts o = TG_RMSPROP_OPTS_INIT;
        o.lr = 0.01;
        o.momentum = variant ? 0.5 : 0.0;
        tg_tensor *p = param_f64("p", 2, p0);
        tg_optimizer *opt = tg_optimizer_new_rmsprop(&p, 1, &o);
        TG_CHECK(opt);
        double want[2] = { p0[0], p0[1] }, ms[2] = { 0, 0 }, mom[2] = { 0, 0 };
        for (int t = 0; t < 2; t++) {
            tg_test_set_grad(p, g[t]);
            TG_OK_(tg_optimizer_step(opt));
            for (int i = 0; i < 2; i++) {
                ms[i] = 0.9 * ms[i] + 0.1 * g[t][i] * g[t][i];
                if (o.momentum == 0) { /* Keras's own update */
                    want[i] -= o.lr * g[t][i] / (sqrt(ms[i]) + o.epsilon);
                } else {               /* TensorFlow's ApplyRMSProp: epsilon under the root */
                    mom[i] = o.momentum * mom[i] + o.lr * g[t][i] / sqrt(ms[i] + o.epsilon);
                    want[i] -= mom[i];
                }
                TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
            }
        }
        tg_optimizer_free(opt);
        tg_release(p);
    }
}
END_TEST

START_TEST(test_optimizer_skips_and_no_alloc)
{
    tg_tensor *a = param_f64("a", 3, (const double[]){ 1, 2, 3 });
    tg_tensor *b = param_f64("b", 3, (const double[]){ 4, 5, 6 });
    tg_tensor *c = param_f64("c", 3, (const double[]){ 7, 8, 9 });
    TG_OK_(tg_set_requires_grad(c, false));
    tg_optimizer *opt = tg_optimizer_new_adam((tg_tensor *[]){ a, b, c }, 3, NULL);
    TG_CHECK(opt);
    tg_test_set_grad(a, (const double[]){ 1, 1, 1 });
    /* b has no gradient; c is frozen. */
    uint64_t va = tg_tensor_version(a), vb = tg_tensor_version(b);
    tg_memory_stats m0, m1;
    tg_memory_stats_get(&m0);
    TG_OK_(tg_optimizer_step(opt));
    TG_OK_(tg_optimizer_step(opt));
    tg_memory_stats_get(&m1);
    ck_assert_int_eq(m1.allocs, m0.allocs);
    ck_assert(tg_tensor_version(a) > va);
    ck_assert_int_eq(tg_tensor_version(b), vb);
    ck_assert(at(a, 0) < 1.0);
    ck_assert(at(b, 0) == 4.0 && at(c, 2) == 9.0);
    ck_assert_int_eq(tg_optimizer_steps(opt), 2);
    TG_OK_(tg_optimizer_set_lr(opt, 0.5));
    ck_assert(tg_optimizer_lr(opt) == 0.5);
    ck_assert_int_eq(tg_optimizer_set_lr(opt, 0), TG_ERR_ARG);
    TG_OK_(tg_optimizer_zero_grad(opt));
    ck_assert(at(tg_grad(a), 1) == 0.0);
    tg_optimizer_free(opt);

    /* Construction errors: duplicate tensor, duplicate names, integer dtype. */
    ck_assert_ptr_null(tg_optimizer_new_sgd((tg_tensor *[]){ a, a }, 2, NULL));
    TG_OK_(tg_tensor_set_name(b, "a"));
    ck_assert_ptr_null(tg_optimizer_new_sgd((tg_tensor *[]){ a, b }, 2, NULL));
    TG_ASSERT_ERROR_HAS("both named \"a\"");
    tg_tensor *i = tg_zeros(TG_I32, TG_SHAPE(2));
    ck_assert_ptr_null(tg_optimizer_new_sgd(&i, 1, NULL));
    ck_assert_ptr_null(tg_optimizer_new_sgd((tg_tensor *[]){ a, NULL }, 2, NULL));
    tg_release(i);
    tg_release(a);
    tg_release(b);
    tg_release(c);
}
END_TEST

/* A step with a non-finite gradient anywhere is refused before anything moves:
 * for each optimizer, a finite gradient on a and a NaN (then an inf) in b's
 * leave a, b, every slot and the step count as they were; the message names
 * the parameter, the value and where it is. */
START_TEST(test_optimizer_refuses_non_finite)
{
    for (int kind = 0; kind < 3; kind++) {
        tg_tensor *a = param_f64("a", 3, (const double[]){ 1, 2, 3 });
        tg_tensor *b = tg_tensor_to_dtype(a, TG_F32);
        TG_OK_(tg_tensor_set_name(b, "b"));
        TG_OK_(tg_set_requires_grad(b, true));
        tg_tensor *ps[2] = { a, b };
        tg_sgd_opts so = TG_SGD_OPTS_INIT;
        so.momentum = 0.9;
        tg_rmsprop_opts ro = TG_RMSPROP_OPTS_INIT;
        ro.momentum = 0.5;
        tg_optimizer *opt = kind == 0 ? tg_optimizer_new_sgd(ps, 2, &so)
                          : kind == 1 ? tg_optimizer_new_adam(ps, 2, NULL)
                                      : tg_optimizer_new_rmsprop(ps, 2, &ro);
        TG_CHECK(opt);
        /* One good step first, so that the slots hold non-zero state to keep. */
        tg_test_set_grad(a, (const double[]){ 0.5, -1, 2 });
        tg_test_set_grad(b, (const double[]){ 1, 1, 1 });
        TG_OK_(tg_optimizer_step(opt));
        tg_state_dict *before = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(opt, before, NULL));
        tg_tensor *a0 = tg_tensor_copy(a), *b0 = tg_tensor_copy(b);
        const char *slot_name = kind == 0 ? "a/velocity" : kind == 1 ? "a/m" : "a/rms";
        const tg_tensor *slot = tg_state_dict_get(before, slot_name); /* the live slot */
        tg_tensor *slot0 = tg_tensor_copy(slot);
        TG_CHECK(slot0);
        ck_assert(at(slot0, 0) != 0);
        const double bad[2] = { NAN, INFINITY };
        for (int w = 0; w < 2; w++) {
            tg_test_set_grad(b, (const double[]){ 1, 1, bad[w] });
            ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
            TG_ASSERT_ERROR_HAS("tg_optimizer_step: the gradient of b is not finite");
            TG_ASSERT_ERROR_HAS(w == 0 ? "(nan at flat index 2 of [3])"
                                       : "(inf at flat index 2 of [3])");
            TG_ASSERT_ERROR_HAS("no parameter was changed");
            ck_assert_int_eq(tg_optimizer_steps(opt), 1);
            ASSERT_TENSOR_EQ(a, a0);
            ASSERT_TENSOR_EQ(b, b0);
            ASSERT_TENSOR_EQ(slot, slot0);
        }
        /* The f64 parameter's gradient is checked too. */
        tg_test_set_grad(b, (const double[]){ 1, 1, 1 });
        tg_test_set_grad(a, (const double[]){ 1, -INFINITY, 1 });
        ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
        TG_ASSERT_ERROR_HAS("the gradient of a is not finite (-inf at flat index 1 of [3])");
        ASSERT_TENSOR_EQ(b, b0);
        /* Once the gradients are finite again the step goes through. */
        tg_test_set_grad(a, (const double[]){ 0.5, -1, 2 });
        TG_OK_(tg_optimizer_step(opt));
        ck_assert_int_eq(tg_optimizer_steps(opt), 2);
        ck_assert(at(a, 0) != at(a0, 0));
        tg_state_dict_free(before);
        tg_release(slot0);
        tg_release(a0);
        tg_release(b0);
        tg_optimizer_free(opt);
        tg_release(a);
        tg_release(b);
    }
}
END_TEST

/* The step read back from a state dict is bounded: INT64_MAX (whose next step
 * overflowed, which UBSan reports) and -1 are refused, 2^53 loads. */
START_TEST(test_optimizer_step_bounds)
{
    tg_tensor *a = param_f64("a", 3, (const double[]){ 1, 2, 3 });
    tg_optimizer *opt = tg_optimizer_new_adam(&a, 1, NULL);
    TG_CHECK(opt);
    const int64_t bad[2] = { INT64_MAX, -1 };
    for (int k = 0; k < 2; k++) {
        tg_state_dict *sd = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(opt, sd, NULL));
        TG_OK_(tg_state_dict_set_i64(sd, "step", bad[k]));
        tg_status st = tg_optimizer_load_state_dict(opt, sd, NULL);
        tg_test_set_grad(a, (const double[]){ 1, 1, 1 });
        tg_status st2 = tg_optimizer_step(opt); /* overflowed after the old load */
        ck_assert_int_eq(st, TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS("is out of range (0 to 2^53)");
        TG_OK_(st2);
        ck_assert_int_eq(tg_optimizer_steps(opt), k + 1);
        tg_state_dict_free(sd);
    }
    /* The bound itself loads; the step after it is refused, not wrapped. */
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(opt, sd, NULL));
    TG_OK_(tg_state_dict_set_i64(sd, "step", TG_TRAIN_COUNTER_MAX));
    TG_OK_(tg_optimizer_load_state_dict(opt, sd, NULL));
    ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_STATE);
    ck_assert(tg_optimizer_steps(opt) == TG_TRAIN_COUNTER_MAX);
    tg_state_dict_free(sd);
    tg_optimizer_free(opt);
    tg_release(a);
}
END_TEST

/* The training-loop view: a NaN written into the output layer's bias through
 * the API makes the loss NaN (in a conv kernel ReLU could hide it), backward
 * makes the gradients NaN, and the step is refused with every parameter (the
 * poisoned one included) unchanged. */
START_TEST(test_nan_weight_stops_step)
{
    tg_sequential *m = small_cnn();
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    TG_CHECK(ps);
    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, NULL);
    TG_CHECK(opt);
    ck_assert_str_eq(tg_tensor_name(ps[n - 1]), "sequential/dense/bias");
    TG_OK_(tg_set(ps[n - 1], (const int64_t[]){ 1 }, NAN));
    tg_tensor *copies[8];
    ck_assert(n <= 8);
    for (size_t i = 0; i < n; i++)
        copies[i] = tg_tensor_copy(ps[i]);
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(2, 1, 6, 6), 0, 1, NULL);
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(2), (const int64_t[]){ 0, 2 });
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), y);
    TG_CHECK(loss);
    ck_assert(isnan(tg_item(loss)));
    TG_OK_(tg_backward(loss));
    ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("is not finite");
    tg_scope_pop(s);
    ck_assert_int_eq(tg_optimizer_steps(opt), 0);
    for (size_t i = 0; i < n; i++) {
        const float *p = tg_tensor_data(ps[i]), *q = tg_tensor_data(copies[i]);
        ck_assert(memcmp(p, q, sizeof(float) * (size_t)tg_tensor_numel(ps[i])) == 0);
        tg_release(copies[i]);
    }
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

/* Trains m for `steps` Adam steps on fixed data; returns the mean loss of the
 * first and last steps. */
static void run_steps(tg_sequential *m, tg_optimizer *opt, tg_tensor *x, tg_tensor *y, int steps,
                      double *first, double *last)
{
    for (int k = 0; k < steps; k++) {
        tg_scope *s = tg_scope_push();
        TG_OK_(tg_optimizer_zero_grad(opt));
        tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), y);
        TG_CHECK(loss);
        TG_OK_(tg_backward(loss));
        TG_OK_(tg_optimizer_step(opt));
        if (k == 0 && first)
            *first = tg_item(loss);
        if (k == steps - 1 && last)
            *last = tg_item(loss);
        tg_scope_pop(s);
    }
}

/* The tutorial network (dropout included) trained by Adam: after the first step a
 * step creates no oneDNN primitive, misses no cache entry and takes no fresh
 * memory from the system (DESIGN.md, "oneDNN" and "Memory"). */
START_TEST(test_tutorial_steady_state)
{
    tg_manual_seed(12);
    tg_sequential *m = tutorial_model();
    size_t n;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, NULL);
    TG_CHECK(opt);
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_rand_uniform(TG_F32, TG_SHAPE(16, 1, 28, 28), 0, 1, NULL);
    int64_t ys[16];
    for (int i = 0; i < 16; i++)
        ys[i] = i % 10;
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(16), ys);
    tg_backend_stats b0, b1;
    tg_memory_stats m0, m1;
    run_steps(m, opt, x, y, 1, NULL, NULL);
    tg_backend_stats_get(&b0);
    tg_memory_stats_get(&m0);
    uint64_t v0 = tg_tensor_version(ps[0]);
    run_steps(m, opt, x, y, 3, NULL, NULL);
    tg_backend_stats_get(&b1);
    tg_memory_stats_get(&m1);
    ck_assert_msg(tg_tensor_version(ps[0]) != v0, "the steps did not update the kernel");
    ck_assert_msg(b1.primitives_created == b0.primitives_created,
                  "steps 2-4 created %llu oneDNN primitive(s)",
                  (unsigned long long)(b1.primitives_created - b0.primitives_created));
    ck_assert_msg(b1.cache_misses == b0.cache_misses, "steps 2-4 missed the primitive cache");
    ck_assert(b1.cache_hits > b0.cache_hits);
    ck_assert_msg(m1.allocs == m0.allocs, "steps 2-4 made %llu fresh allocations",
                  (unsigned long long)(m1.allocs - m0.allocs));
    tg_scope_pop(s);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

START_TEST(test_optimizer_state_roundtrip)
{
    for (int kind = 0; kind < 3; kind++) {
        tg_manual_seed(21);
        tg_sequential *a = mlp(3, 4, 2, TG_F64);
        tg_sequential *b = mlp(3, 4, 2, TG_F64);
        size_t n;
        tg_tensor *const *pa = tg_sequential_params(a, &n);
        tg_tensor *const *pb = tg_sequential_params(b, &n);
        tg_sgd_opts so = TG_SGD_OPTS_INIT;
        so.momentum = 0.8;
        so.nesterov = true;
        tg_rmsprop_opts ro = TG_RMSPROP_OPTS_INIT;
        ro.momentum = 0.3;
        tg_adam_opts ao = TG_ADAM_OPTS_INIT;
        ao.lr = 0.02;
        tg_optimizer *oa = kind == 0 ? tg_optimizer_new_adam(pa, n, &ao)
                           : kind == 1 ? tg_optimizer_new_sgd(pa, n, &so)
                                       : tg_optimizer_new_rmsprop(pa, n, &ro);
        /* b's optimizer starts with other hyper-parameters: import restores them. */
        tg_optimizer *ob = kind == 0 ? tg_optimizer_new_adam(pb, n, NULL)
                           : kind == 1 ? tg_optimizer_new_sgd(pb, n, &(tg_sgd_opts){ 0.5, 0.1, false, 0 })
                                       : tg_optimizer_new_rmsprop(pb, n, &(tg_rmsprop_opts){ 0.1, 0.5, 0.9, 1e-3, 0 });
        TG_CHECK(oa && ob);

        tg_scope *s = tg_scope_push();
        tg_tensor *x = tg_rand_normal(TG_F64, TG_SHAPE(6, 3), 0, 1, NULL);
        tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(6), (const int64_t[]){ 0, 1, 1, 0, 1, 0 });
        run_steps(a, oa, x, y, 3, NULL, NULL);

        /* Export both; the model state goes through copies (as a checkpoint would). */
        tg_state_dict *sd = tg_state_dict_new();
        TG_OK_(tg_sequential_state_dict(a, sd, "model/"));
        TG_OK_(tg_optimizer_state_dict(oa, sd, "optimizer/"));
        tg_state_dict *copy = tg_state_dict_new();
        for (size_t i = 0; i < tg_state_dict_size(sd); i++)
            TG_OK_(tg_state_dict_set(copy, tg_state_dict_name_at(sd, i),
                                     tg_tensor_copy(tg_state_dict_tensor_at(sd, i))));
        for (size_t i = 0; i < tg_state_dict_attr_count(sd); i++) {
            const char *nm = tg_state_dict_attr_name_at(sd, i);
            int64_t iv;
            double fv;
            const char *sv;
            switch (tg_state_dict_attr_type_at(sd, i)) {
            case TG_ATTR_I64: TG_OK_(tg_state_dict_get_i64(&iv, sd, nm));
                TG_OK_(tg_state_dict_set_i64(copy, nm, iv)); break;
            case TG_ATTR_F64: TG_OK_(tg_state_dict_get_f64(&fv, sd, nm));
                TG_OK_(tg_state_dict_set_f64(copy, nm, fv)); break;
            case TG_ATTR_STR: TG_OK_(tg_state_dict_get_str(&sv, sd, nm));
                TG_OK_(tg_state_dict_set_str(copy, nm, sv)); break;
            }
        }
        int64_t step = 0;
        TG_OK_(tg_state_dict_get_i64(&step, copy, "optimizer/step"));
        ck_assert_int_eq(step, 3);
        if (kind == 0)
            ck_assert(tg_state_dict_has(copy, "optimizer/sequential/dense/kernel/m") &&
                      tg_state_dict_has(copy, "optimizer/sequential/dense_1/bias/v"));
        TG_OK_(tg_sequential_load_state_dict(b, copy, "model/"));
        TG_OK_(tg_optimizer_load_state_dict(ob, copy, "optimizer/"));
        ck_assert_int_eq(tg_optimizer_steps(ob), 3);
        ck_assert(tg_optimizer_lr(ob) == tg_optimizer_lr(oa));

        /* The next step is identical. */
        run_steps(a, oa, x, y, 2, NULL, NULL);
        run_steps(b, ob, x, y, 2, NULL, NULL);
        for (size_t i = 0; i < n; i++)
            ASSERT_TENSOR_EQ(pb[i], pa[i]);
        tg_scope_pop(s);
        tg_state_dict_free(sd);
        tg_state_dict_free(copy);
        tg_optimizer_free(oa);
        tg_optimizer_free(ob);
        tg_sequential_free(a);
        tg_sequential_free(b);
    }
}
END_TEST

START_TEST(test_optimizer_state_mismatch)
{
    tg_tensor *a = param_f64("a", 2, (const double[]){ 1, 2 });
    tg_tensor *b = param_f64("b", 3, (const double[]){ 1, 2, 3 });
    tg_optimizer *adam = tg_optimizer_new_adam((tg_tensor *[]){ a, b }, 2, NULL);
    tg_optimizer *sgd = tg_optimizer_new_sgd((tg_tensor *[]){ a, b }, 2, NULL);
    tg_optimizer *adam_a = tg_optimizer_new_adam(&a, 1, NULL);
    TG_CHECK(adam && sgd && adam_a);
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(adam, sd, "opt/"));

    ck_assert_int_eq(tg_optimizer_load_state_dict(sgd, sd, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("\"adam\"");
    /* adam_a has no "b": the dict's b slots are unexpected. */
    ck_assert_int_eq(tg_optimizer_load_state_dict(adam_a, sd, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("unexpected entry 'opt/b/m'");
    TG_ASSERT_ERROR_HAS("unexpected entry 'opt/b/v'");

    /* A wrong shape and a missing slot, reported together; nothing changes. */
    tg_test_set_grad(a, (const double[]){ 1, 1 });
    TG_OK_(tg_optimizer_step(adam_a));
    tg_state_dict *bad = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(adam_a, bad, "opt/"));
    tg_tensor *wrong = tg_zeros(TG_F64, TG_SHAPE(3));
    TG_OK_(tg_state_dict_set(bad, "opt/a/m", wrong));
    tg_release(wrong);
    TG_OK_(tg_state_dict_set_i64(bad, "opt/step", 7));
    tg_optimizer *fresh = tg_optimizer_new_adam((tg_tensor *[]){ a, b }, 2, NULL);
    ck_assert_int_eq(tg_optimizer_load_state_dict(fresh, bad, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("'opt/a/m' has shape [3] in the state dict, expected [2]");
    TG_ASSERT_ERROR_HAS("missing entry 'opt/b/m'");
    TG_ASSERT_ERROR_HAS("missing entry 'opt/b/v'");
    ck_assert_int_eq(tg_optimizer_steps(fresh), 0);

    /* Missing attributes; a bad hyper-parameter; a momentum slot mismatch. */
    tg_state_dict *empty = tg_state_dict_new();
    ck_assert_int_eq(tg_optimizer_load_state_dict(fresh, empty, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("missing attribute 'opt/type'");
    TG_ASSERT_ERROR_HAS("missing attribute 'opt/beta1'");
    TG_OK_(tg_state_dict_set_f64(sd, "opt/beta1", 1.5));
    ck_assert_int_eq(tg_optimizer_load_state_dict(adam, sd, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("beta1");
    tg_state_dict *sgd_sd = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(sgd, sgd_sd, ""));
    tg_optimizer *sgd_m = tg_optimizer_new_sgd((tg_tensor *[]){ a, b }, 2,
                                               &(tg_sgd_opts){ 0.1, 0.9, false, 0 });
    ck_assert_int_eq(tg_optimizer_load_state_dict(sgd_m, sgd_sd, ""), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("momentum");

    tg_state_dict_free(sd);
    tg_state_dict_free(bad);
    tg_state_dict_free(empty);
    tg_state_dict_free(sgd_sd);
    tg_optimizer_free(adam);
    tg_optimizer_free(sgd);
    tg_optimizer_free(sgd_m);
    tg_optimizer_free(adam_a);
    tg_optimizer_free(fresh);
    tg_release(a);
    tg_release(b);
}
END_TEST

/* ---------------------------------------------------------------- model state */

START_TEST(test_model_state_dict)
{
    tg_manual_seed(2);
    tg_sequential *m = small_cnn();
    size_t n;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    tg_state_dict *live = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, live, NULL));
    ck_assert_ptr_eq(tg_state_dict_get(live, "conv2d/kernel"), ps[0]); /* live reference */

    /* Snapshot, perturb, load back: equal again. */
    tg_scope *s = tg_scope_push();
    tg_state_dict *snap = tg_state_dict_new();
    for (size_t i = 0; i < tg_state_dict_size(live); i++)
        TG_OK_(tg_state_dict_set(snap, tg_state_dict_name_at(live, i),
                                 tg_tensor_copy(tg_state_dict_tensor_at(live, i))));
    for (size_t i = 0; i < n; i++)
        TG_OK_(tg_tensor_fill(ps[i], 0.125));
    uint64_t v0 = tg_tensor_version(ps[0]);
    TG_OK_(tg_sequential_load_state_dict(m, snap, ""));
    ck_assert(tg_tensor_version(ps[0]) > v0);
    for (size_t i = 0; i < n; i++)
        ASSERT_TENSOR_EQ(ps[i], tg_state_dict_tensor_at(snap, i));
    /* Loading its own live export is a no-op that succeeds. */
    TG_OK_(tg_sequential_load_state_dict(m, live, ""));

    /* A model with 16 filters cannot take it; nothing changes. */
    tg_sequential *m16 = tg_sequential_new(TG_SHAPE(1, 6, 6));
    TG_OK_(tg_sequential_add(m16, tg_layer_new_conv2d(16, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m16, tg_layer_new_max_pool2d(2, 2, NULL)));
    TG_OK_(tg_sequential_add(m16, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m16, tg_layer_new_dense(3, TG_ACT_SOFTMAX, NULL)));
    tg_tensor *k16 = tg_tensor_copy(tg_sequential_params(m16, &n)[0]); /* scoped */
    ck_assert_int_eq(tg_sequential_load_state_dict(m16, snap, ""), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("tg_sequential_load_state_dict: the state dict does not match model");
    TG_ASSERT_ERROR_HAS("'conv2d/kernel' has shape [4, 1, 3, 3] in the state dict, expected "
                        "[16, 1, 3, 3]");
    TG_ASSERT_ERROR_HAS("'dense/kernel' has shape [3, 16] in the state dict, expected [3, 64]");
    TG_ASSERT_ERROR_HAS("nothing loaded");
    ASSERT_TENSOR_EQ(tg_sequential_params(m16, &n)[0], k16);

    /* Missing, unexpected, dtype. */
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, sd, "model/"));
    TG_OK_(tg_state_dict_set(sd, "model/dense_9/bias", ps[1]));
    TG_OK_(tg_state_dict_set(sd, "other/thing", ps[1])); /* outside the prefix: ignored */
    TG_OK_(tg_state_dict_set(sd, "model/conv2d/bias", tg_zeros(TG_F64, TG_SHAPE(4))));
    tg_sequential *mlp_m = mlp(16, 3, 3, TG_F32);
    ck_assert_int_eq(tg_sequential_load_state_dict(mlp_m, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("missing entry 'model/dense_1/kernel'");
    TG_ASSERT_ERROR_HAS("unexpected entry 'model/conv2d/kernel'");
    TG_ASSERT_ERROR_HAS("unexpected entry 'model/dense_9/bias'");
    ck_assert_msg(strstr(tg_last_error(), "other/thing") == NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_sequential_load_state_dict(m, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("'model/conv2d/bias' is f64 in the state dict, expected f32");
    tg_scope_pop(s);

    tg_state_dict_free(live);
    tg_state_dict_free(snap);
    tg_state_dict_free(sd);
    tg_sequential_free(m16);
    tg_sequential_free(mlp_m);
    tg_sequential_free(m);
}
END_TEST

/* ---------------------------------------------------------------- user-defined layer types */

/* "Affine3": y = x * w + b + c over features (F), three parameters (more than
 * the built-in layers have) and two buffers that training mode updates: the
 * number of batches seen and the running sum of the inputs. */
typedef struct affine3 {
    int scale; /* only shown in the config */
} affine3;

static tg_status affine3_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                               int64_t *out_shape)
{
    if (in_ndim != 1)
        return tg_layer_error(l, TG_ERR_SHAPE, "needs 1-D features, got %d dims", in_ndim);
    *out_ndim = 1;
    out_shape[0] = in_shape[0];
    if (!tg_layer_add_param(l, "w", 1, in_shape, TG_INIT_ONES) ||
        !tg_layer_add_param(l, "b", 1, in_shape, TG_INIT_ZEROS) ||
        !tg_layer_add_param(l, "c", 1, in_shape, TG_INIT_ZEROS) ||
        !tg_layer_add_buffer(l, "count", TG_SHAPE(1), 0.0) ||
        !tg_layer_add_buffer(l, "sum", 1, in_shape, 0.0))
        return tg_last_status();
    return TG_OK;
}

static tg_tensor *affine3_forward(tg_layer *l, tg_tensor *x, const tg_layer_ctx *ctx)
{
    if (ctx->training) {
        bool prev = tg_set_grad_enabled(false);
        tg_tensor *count = tg_layer_buffer(l, 0), *sum = tg_layer_buffer(l, 1);
        double *c = tg_tensor_data(count), *sm = tg_tensor_data(sum);
        c[0] += 1;
        for (int64_t n = 0; n < tg_tensor_dim(x, 0); n++)
            for (int64_t f = 0; f < tg_tensor_dim(x, 1); f++)
                sm[f] += tg_get(x, (const int64_t[]){ n, f });
        tg_tensor_bump_version(count);
        tg_tensor_bump_version(sum);
        tg_set_grad_enabled(prev);
    }
    return tg_add(tg_add(tg_mul(x, tg_layer_param(l, 0)), tg_layer_param(l, 1)),
                  tg_layer_param(l, 2));
}

static void affine3_config(const tg_layer *l, tg_layer_config *cfg)
{
    tg_layer_config_int(cfg, "scale", ((const affine3 *)tg_layer_data(l))->scale);
    tg_layer_config_ints(cfg, "pair", 2, (const int[]){ 4, 5 });
}

static int affine3_destroyed;
static void affine3_destroy(tg_layer *l)
{
    affine3_destroyed += ((affine3 *)tg_layer_data(l))->scale;
}

static const tg_layer_vtable affine3_vtable = {
    .class_name = "Affine3", .base_name = "affine", .data_size = sizeof(affine3),
    .build = affine3_build, .forward = affine3_forward, .config = affine3_config,
    .destroy = affine3_destroy,
};

static tg_layer *affine3_new(int scale)
{
    tg_layer *l = tg_layer_new(&affine3_vtable, TG_ACT_NONE, NULL);
    TG_CHECK(l);
    ((affine3 *)tg_layer_data(l))->scale = scale;
    return l;
}

/* affine3 (3 features, f64) then Dense(2). */
static tg_sequential *affine_model(void)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(3));
    TG_CHECK(m);
    TG_OK_(tg_sequential_set_dtype(m, TG_F64));
    TG_OK_(tg_sequential_add(m, affine3_new(2)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL)));
    return m;
}

START_TEST(test_custom_layer_type)
{
    tg_scope *s = tg_scope_push();
    tg_manual_seed(11);
    affine3_destroyed = 0;
    tg_sequential *m = affine_model();
    tg_layer *a = tg_sequential_layer(m, 0);
    ck_assert_ptr_eq(tg_layer_get_vtable(a), &affine3_vtable);
    ck_assert_str_eq(tg_layer_type(a), "Affine3");

    /* Parameters go to the optimizer; buffers do not, and count as non-trainable. */
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    ck_assert_uint_eq(n, 5);
    const char *names[] = { "sequential/affine/w", "sequential/affine/b", "sequential/affine/c",
                            "sequential/dense/kernel", "sequential/dense/bias" };
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(tg_tensor_name(ps[i]), names[i]);
        ck_assert(tg_requires_grad(ps[i]));
    }
    ck_assert_int_eq(tg_layer_param_count(a), 3);
    ck_assert_int_eq(tg_layer_buffer_count(a), 2);
    tg_tensor *count = tg_layer_buffer_by_name(a, "count"), *sum = tg_layer_buffer(a, 1);
    TG_CHECK(count && sum);
    ck_assert_str_eq(tg_tensor_name(sum), "sequential/affine/sum");
    ck_assert(!tg_requires_grad(count) && !tg_requires_grad(sum));
    ck_assert_ptr_null(tg_layer_buffer(a, 2));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_buffer: index 2 out of range (layer affine has 2 buffers)");
    ck_assert_ptr_null(tg_layer_buffer_by_name(a, "w")); /* a parameter, not a buffer */
    ck_assert_str_eq(tg_last_error(), "tg_layer_buffer_by_name: layer affine has no buffer "
                     "\"w\"");
    int64_t total, tr, ntr;
    TG_OK_(tg_sequential_count_params(&total, &tr, &ntr, m));
    ck_assert_int_eq(total, 9 + 4 + 8);
    ck_assert_int_eq(tr, 9 + 8);
    ck_assert_int_eq(ntr, 4);
    TG_OK_(tg_layer_set_trainable(a, false));
    TG_OK_(tg_sequential_count_params(&total, &tr, &ntr, m));
    ck_assert_int_eq(tr, 8);
    ck_assert_int_eq(ntr, 13);
    TG_OK_(tg_layer_set_trainable(a, true));
    char *sum_text = summary_text(m);
    ck_assert_msg(strstr(sum_text, " affine (Affine3)") && strstr(sum_text, "Non-trainable params: 4"),
                  "%s", sum_text);
    free(sum_text);
    char *arch = tg_sequential_architecture(m);
    TG_CHECK(arch);
    ck_assert_msg(strstr(arch, "{\"class_name\": \"Affine3\", \"name\": \"affine\", \"trainable\": "
                               "true, \"config\": {\"scale\": 2, \"pair\": [4, 5], "
                               "\"activation\": \"linear\"}}"), "%s", arch);
    free(arch);

    /* Training mode updates the buffers; the optimizer leaves them alone. */
    const double xv[] = { 1, 2, 3, -4, 5, 0.5 };
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(2, 3), xv);
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(2), (const int64_t[]){ 0, 1 });
    tg_optimizer *opt = tg_optimizer_new_sgd(ps, n, &(tg_sgd_opts){ 0.1, 0, false, 0 });
    TG_CHECK(opt);
    tg_tensor *w0 = tg_tensor_copy(ps[0]);
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward(m, x), y);
    TG_CHECK(loss);
    TG_OK_(tg_backward(loss));
    tg_tensor *count1 = tg_tensor_copy(count), *sum1 = tg_tensor_copy(sum);
    TG_OK_(tg_optimizer_step(opt));
    ASSERT_TENSOR_EQ(count, count1);
    ASSERT_TENSOR_EQ(sum, sum1);
    ck_assert(tg_get(ps[0], (const int64_t[]){ 0 }) != tg_get(w0, (const int64_t[]){ 0 }));
    ck_assert_double_eq(tg_get(count, (const int64_t[]){ 0 }), 1);
    const double want_sum[] = { 1 - 4, 2 + 5, 3 + 0.5 };
    for (int64_t f = 0; f < 3; f++)
        ck_assert_double_eq(tg_get(sum, &f), want_sum[f]);
    /* Evaluation mode does not. */
    tg_sequential_set_training(m, false);
    TG_CHECK(tg_sequential_forward(m, x));
    ck_assert_double_eq(tg_get(count, (const int64_t[]){ 0 }), 1);

    /* State dicts carry the buffers after the layer's parameters. */
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, sd, "model/"));
    const char *order[] = { "model/affine/w", "model/affine/b", "model/affine/c",
                            "model/affine/count", "model/affine/sum", "model/dense/kernel",
                            "model/dense/bias" };
    ck_assert_uint_eq(tg_state_dict_size(sd), 7);
    for (size_t i = 0; i < 7; i++)
        ck_assert_str_eq(tg_state_dict_name_at(sd, i), order[i]);
    tg_sequential *m2 = affine_model();
    tg_layer *a2 = tg_sequential_layer(m2, 0);
    TG_OK_(tg_sequential_load_state_dict(m2, sd, "model/"));
    ASSERT_TENSOR_EQ(tg_layer_buffer(a2, 1), sum);
    ASSERT_TENSOR_EQ(tg_layer_buffer(a2, 0), count);
    ASSERT_TENSOR_EQ(tg_layer_param(a2, 0), ps[0]);

    /* A buffer of the wrong shape is named, and nothing is loaded. */
    tg_sequential *m3 = affine_model();
    TG_OK_(tg_sequential_build(m3));
    tg_tensor *w3 = tg_tensor_copy(tg_layer_param(tg_sequential_layer(m3, 0), 0));
    TG_OK_(tg_state_dict_set(sd, "model/affine/sum", tg_zeros(TG_F64, TG_SHAPE(4))));
    ck_assert_int_eq(tg_sequential_load_state_dict(m3, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("'model/affine/sum' has shape [4] in the state dict, expected [3]");
    TG_ASSERT_ERROR_HAS("(1 mismatch, nothing loaded)");
    ASSERT_TENSOR_EQ(tg_layer_param(tg_sequential_layer(m3, 0), 0), w3);
    ck_assert_double_eq(tg_get(tg_layer_buffer(tg_sequential_layer(m3, 0), 0),
                               (const int64_t[]){ 0 }), 0);

    /* Transfer copies buffers too. */
    tg_sequential *m4 = affine_model();
    TG_OK_(tg_sequential_build(m4));
    TG_OK_(tg_layer_copy_params(tg_sequential_layer(m4, 0), a));
    ASSERT_TENSOR_EQ(tg_layer_buffer(tg_sequential_layer(m4, 0), 1), sum);

    tg_state_dict_free(sd);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
    tg_sequential_free(m2);
    tg_sequential_free(m3);
    tg_sequential_free(m4);
    ck_assert_int_eq(affine3_destroyed, 4 * 2); /* destroy ran once per layer */
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_layer_forward_standalone)
{
    tg_scope *s = tg_scope_push();
    tg_manual_seed(5);
    /* A Dense layer in the user's own forward: built from x on the first call. */
    tg_layer *d = tg_layer_new_dense(2, TG_ACT_RELU, NULL);
    TG_CHECK(d);
    ck_assert_int_eq(tg_layer_param_count(d), 0);
    const double xv[] = { 1, -2, 0.5, 3, 0, -1 }; /* (2, 3) */
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(2, 3), xv);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_layer_forward(d, x, true);
    TG_CHECK(y);
    ck_assert_str_eq(tg_layer_name(d), "dense");
    ck_assert_int_eq(tg_layer_param_count(d), 2);
    const double wv[] = { 0.5, -1, 2, 1, 1, 1 }, bv[] = { 0.25, -6 };
    TG_OK_(tg_tensor_copy_into(tg_layer_param(d, 0), tg_from_data(TG_F64, TG_SHAPE(2, 3), wv)));
    TG_OK_(tg_tensor_copy_into(tg_layer_param(d, 1), tg_from_data(TG_F64, TG_SHAPE(2), bv)));
    tg_tensor_bump_version(tg_layer_param(d, 0));
    y = tg_layer_forward(d, x, false);
    TG_CHECK(y);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t o = 0; o < 2; o++) {
            double z = bv[o];
            for (int k = 0; k < 3; k++)
                z += xv[i * 3 + k] * wv[o * 3 + k];
            ck_assert_double_eq_tol(tg_get(y, (const int64_t[]){ i, o }), z > 0 ? z : 0, 1e-12);
        }
    /* Gradients reach the layer's parameters. */
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    TG_CHECK(tg_grad(tg_layer_param(d, 1)));
    /* A wrong input shape is refused, naming the layer and both shapes. */
    ck_assert_ptr_null(tg_layer_forward(d, tg_zeros(TG_F64, TG_SHAPE(2, 4)), false));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("dense (Dense) was built for input (None, 3), got [2, 4]");
    ck_assert_ptr_null(tg_layer_forward(d, NULL, false));
    ck_assert_int_eq(tg_layer_set_name(d, "other"), TG_ERR_STATE);

    /* A user type outside a model, built explicitly; training updates its buffers. */
    tg_layer *a = affine3_new(1);
    TG_OK_(tg_layer_build(a, TG_SHAPE(3), TG_F64, NULL));
    TG_CHECK(tg_layer_forward(a, x, true));
    ck_assert_double_eq(tg_get(tg_layer_buffer(a, 0), (const int64_t[]){ 0 }), 1);
    ck_assert_double_eq(tg_get(tg_layer_buffer(a, 1), (const int64_t[]){ 2 }), 0.5 - 1);
    /* A layer inside a model is built by its model. */
    tg_sequential *m = tg_sequential_new(TG_SHAPE(3));
    tg_layer *in_model = affine3_new(1);
    TG_OK_(tg_sequential_add(m, in_model));
    ck_assert_int_eq(tg_layer_build(in_model, TG_SHAPE(3), TG_F64, NULL), TG_ERR_STATE);
    ck_assert_ptr_null(tg_layer_forward(in_model, x, false));
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    tg_sequential_free(m);
    tg_layer_free(a);
    tg_layer_free(d);
    tg_scope_pop(s);
}
END_TEST

/* Build callbacks that misuse the declarations. */
static tg_status dup_build(tg_layer *l, int in_ndim, const int64_t *in_shape, int *out_ndim,
                           int64_t *out_shape)
{
    if (!tg_layer_add_param(l, "k", TG_SHAPE(2), TG_INIT_ONES) ||
        !tg_layer_add_buffer(l, "k", TG_SHAPE(2), 0))
        return tg_last_status();
    return TG_OK;
}

static tg_status too_wide_build(tg_layer *l, int in_ndim, const int64_t *in_shape,
                                int *out_ndim, int64_t *out_shape)
{
    *out_ndim = TG_MAX_DIMS;
    return TG_OK;
}

static tg_status careless_build(tg_layer *l, int in_ndim, const int64_t *in_shape,
                                int *out_ndim, int64_t *out_shape)
{
    tg_layer_add_param(l, "k", TG_SHAPE(2), TG_INIT_ONES);
    tg_layer_add_param(l, "bad/name", TG_SHAPE(2), TG_INIT_ONES); /* fails; ignored */
    return TG_OK;
}

START_TEST(test_layer_type_errors)
{
    tg_scope *s = tg_scope_push();
    tg_clear_error();
    ck_assert_ptr_null(tg_layer_new(NULL, TG_ACT_NONE, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_layer_new: argument 'vt' is NULL");
    static const tg_layer_vtable nameless = { .class_name = NULL, .base_name = "x" };
    ck_assert_ptr_null(tg_layer_new(&nameless, TG_ACT_NONE, NULL));
    TG_ASSERT_ERROR_HAS("class_name");
    static const tg_layer_vtable slashed = { .class_name = "S", .base_name = "a/b" };
    ck_assert_ptr_null(tg_layer_new(&slashed, TG_ACT_NONE, NULL));
    TG_ASSERT_ERROR_HAS("base_name");
    ck_assert_str_eq(tg_last_error(), "tg_layer_new: layer type S: base_name must be a valid "
                     "layer name");
    static const tg_layer_vtable ident = { .class_name = "Ident", .base_name = "ident" };
    ck_assert_ptr_null(tg_layer_new(&ident, TG_ACT_COUNT, NULL));
    ck_assert_ptr_null(tg_layer_new(&ident, TG_ACT_NONE, "a/b"));

    /* No build callback: the identity, no parameters, no data block. */
    tg_layer *l = tg_layer_new(&ident, TG_ACT_TANH, "mine");
    TG_CHECK(l);
    ck_assert_ptr_null(tg_layer_data(l));
    /* bad build arguments, whole, and the layer stays unbuilt */
    ck_assert_int_eq(tg_layer_build(l, TG_SHAPE(2), TG_I32, NULL), TG_ERR_DTYPE);
    ck_assert_str_eq(tg_last_error(), "tg_layer_build: parameters must be f32 or f64, not i32");
    ck_assert_int_eq(tg_layer_build(l, -1, NULL, TG_F32, NULL), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_build: an input shape needs 0..7 dims without the batch");
    ck_assert_ptr_null(tg_layer_forward(l, tg_zeros(TG_I64, TG_SHAPE(1, 2)), false));
    ck_assert_str_eq(tg_last_error(), "tg_layer_forward: parameters must be f32 or f64, not i64");
    ck_assert_ptr_null(tg_layer_output_shape(l, NULL));
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(1, 2), (const float[]){ 0, 1 });
    tg_tensor *y = tg_layer_forward(l, x, false);
    TG_CHECK(y);
    TG_ASSERT_CLOSE(tg_get(y, (const int64_t[]){ 0, 1 }), tanh(1.0), 1e-6, 0);
    /* Declarations outside build are refused. */
    ck_assert_ptr_null(tg_layer_add_param(l, "k", TG_SHAPE(2), TG_INIT_ONES));
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    ck_assert_str_eq(tg_last_error(), "tg_layer_add_param: layer mine (Ident): parameters and "
                     "buffers are declared in the type's build callback only");
    ck_assert_ptr_null(tg_layer_add_buffer(l, "k", TG_SHAPE(2), 0));
    ck_assert_str_eq(tg_last_error(), "tg_layer_add_buffer: layer mine (Ident): parameters and "
                     "buffers are declared in the type's build callback only");
    ck_assert_int_eq(tg_layer_error(l, TG_ERR_SHAPE, "bad %d", 7), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(), "mine (Ident): bad 7");
    tg_layer_free(l);

    /* A duplicate name fails the build and leaves nothing behind. */
    static const tg_layer_vtable dup = { .class_name = "Dup", .base_name = "dup",
                                         .build = dup_build };
    l = tg_layer_new(&dup, TG_ACT_NONE, NULL);
    ck_assert_int_eq(tg_layer_build(l, TG_SHAPE(2), TG_F32, NULL), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("already has a parameter or buffer \"k\"");
    ck_assert_str_eq(tg_last_error(), "tg_layer_add_buffer: layer dup (Dup) already has a "
                     "parameter or buffer \"k\"");
    ck_assert_int_eq(tg_layer_param_count(l), 0);
    ck_assert_ptr_null(tg_layer_output_shape(l, NULL));
    tg_layer_free(l);
    /* A build that ignores a failed declaration still fails. */
    static const tg_layer_vtable careless = { .class_name = "Careless", .base_name = "careless",
                                              .build = careless_build };
    tg_sequential *m = tg_sequential_new(TG_SHAPE(2));
    TG_OK_(tg_sequential_add(m, tg_layer_new(&careless, TG_ACT_NONE, NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("without '/'");
    ck_assert_str_eq(tg_last_error(), "tg_layer_add_param: layer careless (Careless): a "
                     "parameter or buffer name must be non-empty and without '/'");
    static const tg_layer_vtable wide = { .class_name = "Wide", .base_name = "wide",
                                          .build = too_wide_build };
    tg_sequential *mw = tg_sequential_new(TG_SHAPE(2));
    TG_OK_(tg_sequential_add(mw, tg_layer_new(&wide, TG_ACT_NONE, NULL)));
    ck_assert_int_eq(tg_sequential_build(mw), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(), "tg_sequential_build: layer wide (Wide): its build gave "
                     "an output of 8 dims (0..7 without the batch)");
    tg_sequential_free(mw);
    ck_assert(!tg_sequential_is_built(m));
    ck_assert_int_eq(tg_layer_param_count(tg_sequential_layer(m, 0)), 0);
    tg_sequential_free(m);
    tg_scope_pop(s);
}
END_TEST

/* Ten problems: the message lists eight, counts all, and nothing is loaded. */
START_TEST(test_load_lists_first_eight)
{
    tg_scope *s = tg_scope_push();
    tg_sequential *m = mlp(4, 3, 2, TG_F64);
    TG_OK_(tg_sequential_build(m));
    tg_tensor *k = tg_tensor_copy(tg_sequential_params(m, &(size_t){ 0 })[0]);
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, sd, ""));
    TG_OK_(tg_state_dict_set(sd, "dense/kernel", tg_zeros(TG_F64, TG_SHAPE(3, 5))));
    char name[32];
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof name, "extra_%d/w", i);
        TG_OK_(tg_state_dict_set(sd, name, tg_zeros(TG_F64, TG_SHAPE(1))));
    }
    ck_assert_int_eq(tg_sequential_load_state_dict(m, sd, ""), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("(10 mismatches, nothing loaded): 'dense/kernel' has shape [3, 5]");
    TG_ASSERT_ERROR_HAS("unexpected entry 'extra_6/w'; and 2 more");
    ck_assert_msg(strstr(tg_last_error(), "extra_7") == NULL, "%s", tg_last_error());
    ASSERT_TENSOR_EQ(tg_sequential_params(m, &(size_t){ 0 })[0], k);
    /* The check alone says the same and changes nothing either. */
    ck_assert_int_eq(tg_sequential_check_state_dict(m, sd, ""), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("tg_sequential_check_state_dict: the state dict does not match model");
    tg_state_dict_free(sd);
    tg_sequential_free(m);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_layer_copy_params)
{
    tg_manual_seed(4);
    tg_sequential *src = small_cnn();
    tg_sequential *dst = tg_sequential_new(TG_SHAPE(1, 6, 6));
    tg_conv2d_layer_opts o = TG_CONV2D_LAYER_OPTS_INIT;
    o.name = "features";
    TG_OK_(tg_sequential_add(dst, tg_layer_new_conv2d(4, 3, 3, TG_ACT_RELU, &o)));
    TG_OK_(tg_sequential_add(dst, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(dst, tg_layer_new_dense(5, TG_ACT_NONE, NULL)));
    /* Not built yet. */
    ck_assert_int_eq(tg_layer_copy_params(tg_sequential_layer(dst, 0), tg_sequential_layer(src, 0)),
                     TG_ERR_STATE);
    TG_OK_(tg_sequential_build(src));
    TG_OK_(tg_sequential_build(dst));
    tg_layer *from = tg_sequential_layer_by_name(src, "conv2d");
    tg_layer *to = tg_sequential_layer_by_name(dst, "features");
    TG_OK_(tg_layer_copy_params(to, from));
    ASSERT_TENSOR_EQ(tg_layer_param(to, 0), tg_layer_param(from, 0));
    ASSERT_TENSOR_EQ(tg_layer_param(to, 1), tg_layer_param(from, 1));
    ck_assert_ptr_ne(tg_layer_param(to, 0), tg_layer_param(from, 0));
    ck_assert_str_eq(tg_tensor_name(tg_layer_param(to, 0)), "sequential/features/kernel");
    /* Freeze the transferred features: the usual fine-tuning setup. */
    TG_OK_(tg_layer_set_trainable(to, false));
    ck_assert(!tg_requires_grad(tg_layer_param(to, 0)));

    /* Different types, different shapes. */
    ck_assert_int_eq(tg_layer_copy_params(to, tg_sequential_layer(src, -1)), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("Dense");
    ck_assert_int_eq(tg_layer_copy_params(tg_sequential_layer(dst, -1), tg_sequential_layer(src, -1)),
                     TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("[5, 64]");
    ck_assert_str_eq(tg_last_error(), "tg_layer_copy_params: \"kernel\" has shape [5, 64] in "
                     "dense (Dense) but [3, 16] in dense (Dense)");
    tg_sequential_free(src);
    tg_sequential_free(dst);
}
END_TEST

/* Conv2D with groups and DepthwiseConv2D: kernel shapes and parameter counts as
 * Keras has them, the forward equals tg_conv2d with the layer's own weights and
 * the groups, and the architecture says "groups" only when grouped. */
START_TEST(test_grouped_and_depthwise_conv_layers)
{
    tg_scope *s = tg_scope_push();
    tg_sequential *m = tg_sequential_new(TG_SHAPE(4, 7, 7));
    tg_conv2d_layer_opts go = TG_CONV2D_LAYER_OPTS_INIT;
    go.groups = 2;
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(6, 3, 3, TG_ACT_RELU, &go)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_depthwise_conv2d(3, 3, 2, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_build(m));
    tg_layer *c = tg_sequential_layer(m, 0), *d = tg_sequential_layer(m, 1);
    ck_assert_str_eq(tg_layer_name(d), "depthwise_conv2d");
    /* Keras: Conv2D(6, 3, groups=2) on 4 channels: 3*3*2*6 + 6 = 114;
     * DepthwiseConv2D(3, depth_multiplier=2) on 6 channels: 3*3*6*2 + 12 = 120 */
    int64_t total = 0;
    TG_OK_(tg_sequential_count_params(&total, NULL, NULL, m));
    ck_assert_int_eq(total, 114 + 120);
    tg_tensor *k0 = tg_layer_param(c, 0), *k1 = tg_layer_param(d, 0);
    ck_assert_int_eq(tg_tensor_dim(k0, 1), 2);
    ck_assert_int_eq(tg_tensor_dim(k1, 0), 12);
    ck_assert_int_eq(tg_tensor_dim(k1, 1), 1);
    ck_assert_str_eq(tg_tensor_name(k1), "sequential/depthwise_conv2d/depthwise_kernel");
    char *arch = tg_sequential_architecture(m);
    ck_assert_ptr_nonnull(strstr(arch, "\"groups\": 2"));
    ck_assert_ptr_nonnull(strstr(arch, "\"depth_multiplier\": 2"));
    ck_assert_ptr_nonnull(strstr(arch, "\"DepthwiseConv2D\""));
    free(arch);
    /* the forward, against the op with the same weights */
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(2, 4, 7, 7), 0.0, 1.0, &rng);
    tg_conv2d_opts o = TG_CONV2D_OPTS_INIT;
    o.groups = 2;
    o.relu = true;
    tg_tensor *h = tg_conv2d(x, k0, tg_layer_param(c, 1), &o);
    o.groups = 6;
    o.relu = false;
    tg_tensor *want = tg_conv2d(h, k1, tg_layer_param(d, 1), &o);
    TG_ASSERT_TENSOR_CLOSE(tg_sequential_forward(m, x), want, 1e-6, 1e-6);
    tg_sequential_free(m);
    /* an ungrouped Conv2D's architecture has no "groups" (old checkpoints match) */
    m = tg_sequential_new(TG_SHAPE(4, 7, 7));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(6, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_build(m));
    arch = tg_sequential_architecture(m);
    ck_assert_ptr_null(strstr(arch, "groups"));
    free(arch);
    tg_sequential_free(m);
    /* errors */
    go.groups = 4;
    ck_assert_ptr_null(tg_layer_new_conv2d(6, 3, 3, TG_ACT_NONE, &go));
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_new_conv2d: filters 6 are not divisible into 4 groups");
    go.groups = -2;
    ck_assert_ptr_null(tg_layer_new_conv2d(6, 3, 3, TG_ACT_NONE, &go));
    TG_ASSERT_ERROR_HAS("groups must be >= 1 (0 means 1), not -2");
    ck_assert_ptr_null(tg_layer_new_depthwise_conv2d(3, 3, 0, TG_ACT_NONE, NULL));
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_new_depthwise_conv2d: depth_multiplier must be >= 1, not 0");
    go.groups = 3;
    ck_assert_ptr_null(tg_layer_new_depthwise_conv2d(3, 3, 1, TG_ACT_NONE, &go));
    TG_ASSERT_ERROR_HAS("groups must be 0 or 1");
    go.groups = 3; /* 3 groups do not divide 4 input channels */
    m = tg_sequential_new(TG_SHAPE(4, 7, 7));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(6, 3, 3, TG_ACT_NONE, &go)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("3 groups do not divide its 4 input channels");
    tg_sequential_free(m);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- metrics */

START_TEST(test_accuracy)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *sc = tg_from_data(TG_F32, TG_SHAPE(4, 3), (const float[]){
        0.1f, 0.7f, 0.2f,   /* 1 */
        2.0f, 2.0f, 1.0f,   /* tie: the first, 0 */
        -1.f, -3.f, -0.5f,  /* 2 */
        0.3f, 0.3f, 0.4f }); /* 2 */
    tg_tensor *y = tg_from_data(TG_U8, TG_SHAPE(4), (const uint8_t[]){ 1, 1, 2, 0 });
    ck_assert(tg_accuracy(sc, y) == 0.5);
    int64_t c = -1;
    TG_OK_(tg_accuracy_count(&c, sc, y));
    ck_assert_int_eq(c, 2);
    /* A strided view (transpose of a transpose) and f64 give the same. */
    tg_tensor *t = tg_transpose(tg_contiguous(tg_transpose(sc, 0, 1)), 0, 1);
    ck_assert(!tg_tensor_is_contiguous(t));
    ck_assert(tg_accuracy(t, y) == 0.5);
    ck_assert(tg_accuracy(tg_tensor_to_dtype(sc, TG_F64), tg_tensor_to_dtype(y, TG_I64)) == 0.5);
    /* Errors. */
    ck_assert(isnan(tg_accuracy(sc, tg_from_data(TG_I32, TG_SHAPE(1), (const int32_t[]){ 0 }))));
    ck_assert(isnan(tg_accuracy(sc, tg_from_data(TG_I32, TG_SHAPE(4), (const int32_t[]){ 0, 1, 3, 0 }))));
    TG_ASSERT_ERROR_HAS("label 3");
    ck_assert(isnan(tg_accuracy(sc, NULL)));
    ck_assert(isnan(tg_accuracy(y, y)));
    ck_assert(isnan(tg_accuracy(tg_tensor_to_dtype(sc, TG_F64), tg_tensor_to_dtype(y, TG_F32))));
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_top_k_accuracy)
{
    tg_scope *s = tg_scope_push();
    /* Per row, the label's rank (classes scoring strictly more) is worked out by hand. */
    tg_tensor *sc = tg_from_data(TG_F32, TG_SHAPE(5, 4), (const float[]){
        0.1f, 0.7f, 0.2f, 0.0f,   /* label 2: one above (0.7) -> top-2 hit */
        1.0f, 3.0f, 3.0f, 3.0f,   /* label 0: three above -> top-3 miss, top-4 hit */
        5.0f, 5.0f, 5.0f, 1.0f,   /* label 2: a three-way tie, none above -> top-1 hit */
        0.0f, NAN, 1.0f, 2.0f,    /* label 1: NaN at the label -> always a miss */
        NAN, 0.5f, 0.2f, 0.1f }); /* label 2: NaN elsewhere is not above -> top-2 hit */
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(5), (const int64_t[]){ 2, 0, 2, 1, 2 });
    int64_t hits[5];
    for (int k = 1; k <= 4; k++)
        TG_OK_(tg_top_k_accuracy_count(&hits[k], sc, y, k));
    ck_assert_int_eq(hits[1], 1);
    ck_assert_int_eq(hits[2], 3);
    ck_assert_int_eq(hits[3], 3);
    ck_assert_int_eq(hits[4], 4);
    ck_assert(tg_top_k_accuracy(sc, y, 2) == 3.0 / 5.0);
    ck_assert(tg_top_k_accuracy(sc, y, 100) == 4.0 / 5.0);
    /* f64 and a strided view agree. */
    ck_assert(tg_top_k_accuracy(tg_tensor_to_dtype(sc, TG_F64), y, 2) == 3.0 / 5.0);
    tg_tensor *t = tg_transpose(tg_contiguous(tg_transpose(sc, 0, 1)), 0, 1);
    ck_assert(tg_top_k_accuracy(t, y, 2) == 3.0 / 5.0);
    /* Errors. */
    ck_assert(isnan(tg_top_k_accuracy(sc, y, 0)));
    TG_ASSERT_ERROR_HAS("k must be at least 1");
    ck_assert(isnan(tg_top_k_accuracy(sc, tg_from_data(TG_I32, TG_SHAPE(5),
                                                       (const int32_t[]){ 0, 0, 4, 0, 0 }), 1)));
    TG_ASSERT_ERROR_HAS("label 4 at row 2 is not in 0..3");
    ck_assert(tg_top_k_accuracy_count(NULL, sc, y, 1) == TG_ERR_ARG);
    ck_assert(isnan(tg_top_k_accuracy(y, y, 1)));
    ck_assert(isnan(tg_top_k_accuracy(tg_zeros(TG_F32, TG_SHAPE(0, 4)),
                                      tg_zeros(TG_I64, TG_SHAPE(0)), 1)));
    TG_ASSERT_ERROR_HAS("empty batch");
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_confusion_and_class_metrics)
{
    tg_scope *s = tg_scope_push();
    /* Three classes; predictions 0 1 1 2 2 2 0 1 for labels 0 0 1 1 2 2 2 2. */
    tg_tensor *pred = tg_from_data(TG_I32, TG_SHAPE(8), (const int32_t[]){ 0, 1, 1, 2, 2, 2, 0, 1 });
    tg_tensor *y = tg_from_data(TG_U8, TG_SHAPE(8), (const uint8_t[]){ 0, 0, 1, 1, 2, 2, 2, 2 });
    int64_t m[9] = { 0 };
    TG_OK_(tg_confusion_matrix_add(m, 3, pred, y));
    const int64_t want[9] = { 1, 1, 0,   /* true 0: one right, one as 1 */
                              0, 1, 1,   /* true 1 */
                              1, 1, 2 }; /* true 2 */
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(m[i], want[i]);
    /* Scores give the same through their argmax; a second batch accumulates. */
    tg_tensor *sc = tg_from_data(TG_F64, TG_SHAPE(2, 3), (const double[]){ 0.1, 0.2, 0.9,
                                                                           4.0, 4.0, 1.0 });
    TG_OK_(tg_confusion_matrix_add(m, 3, sc, tg_from_data(TG_I64, TG_SHAPE(2),
                                                          (const int64_t[]){ 2, 1 })));
    ck_assert_int_eq(m[2 * 3 + 2], 3); /* true 2 predicted 2 */
    ck_assert_int_eq(m[1 * 3 + 0], 1); /* tie 4.0/4.0: the first maximum, class 0 */
    /* By hand from the matrix {1 1 0; 1 1 1; 1 1 3}:
     *   class 0: tp 1, support 2, predicted 3 -> p 1/3, r 1/2, f1 2/5
     *   class 1: tp 1, support 3, predicted 3 -> p 1/3, r 1/3, f1 1/3
     *   class 2: tp 3, support 5, predicted 4 -> p 3/4, r 3/5, f1 2/3 */
    tg_class_metrics c[3], avg;
    TG_OK_(tg_class_metrics_compute(c, &avg, m, 3));
    const double p[3] = { 1.0 / 3, 1.0 / 3, 3.0 / 4 }, r[3] = { 0.5, 1.0 / 3, 3.0 / 5 };
    for (int k = 0; k < 3; k++) {
        ck_assert_double_eq_tol(c[k].precision, p[k], 1e-15);
        ck_assert_double_eq_tol(c[k].recall, r[k], 1e-15);
        ck_assert_double_eq_tol(c[k].f1, 2 * p[k] * r[k] / (p[k] + r[k]), 1e-15);
    }
    ck_assert_int_eq(c[2].support, 5);
    ck_assert_int_eq(c[0].predicted, 3);
    ck_assert_double_eq_tol(avg.precision, (p[0] + p[1] + p[2]) / 3, 1e-15);
    ck_assert_double_eq_tol(avg.recall, (r[0] + r[1] + r[2]) / 3, 1e-15);
    ck_assert_int_eq(avg.support, 10);
    /* A class never seen nor predicted: all its figures are 0, not NaN. */
    const int64_t m2[4] = { 3, 0, 0, 0 };
    TG_OK_(tg_class_metrics_compute(c, &avg, m2, 2));
    ck_assert(c[0].precision == 1 && c[0].f1 == 1);
    ck_assert(c[1].precision == 0 && c[1].recall == 0 && c[1].f1 == 0);
    ck_assert(avg.f1 == 0.5);
    /* Errors leave the matrix as it was (the bad label is in the last row). */
    int64_t before[9];
    memcpy(before, m, sizeof m);
    ck_assert(tg_confusion_matrix_add(m, 3, pred, tg_from_data(TG_U8, TG_SHAPE(8),
                                      (const uint8_t[]){ 0, 0, 1, 1, 2, 2, 2, 3 })) == TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("label 3 at row 7 is not in 0..2");
    ck_assert(memcmp(before, m, sizeof m) == 0);
    ck_assert(tg_confusion_matrix_add(m, 3, tg_from_data(TG_I32, TG_SHAPE(2),
                                      (const int32_t[]){ 0, -1 }),
                                      tg_from_data(TG_I32, TG_SHAPE(2), (const int32_t[]){ 0, 0 }))
              == TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("predicted class -1 at row 1");
    ck_assert(tg_confusion_matrix_add(m, 4, sc, y) == TG_ERR_SHAPE);
    ck_assert(tg_confusion_matrix_add(m, 2, sc, tg_from_data(TG_I64, TG_SHAPE(2),
                                      (const int64_t[]){ 0, 1 })) == TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("scores have 3 classes, the matrix 2");
    ck_assert(tg_confusion_matrix_add(m, 3, tg_tensor_to_dtype(pred, TG_F32), y) == TG_ERR_SHAPE);
    ck_assert(tg_confusion_matrix_add(NULL, 3, pred, y) == TG_ERR_ARG);
    ck_assert(tg_confusion_matrix_add(m, 0, pred, y) == TG_ERR_ARG);
    ck_assert(memcmp(before, m, sizeof m) == 0);
    const int64_t neg[4] = { 1, 0, -2, 1 };
    ck_assert(tg_class_metrics_compute(c, NULL, neg, 2) == TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("count -2 at row 1, column 0");
    ck_assert(tg_class_metrics_compute(NULL, NULL, NULL, 2) == TG_ERR_ARG);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_regression_metrics)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_from_data(TG_F32, TG_SHAPE(2, 3), (const float[]){ 1, 2, 3, 4, 5, 6 });
    tg_tensor *b = tg_from_data(TG_F64, TG_SHAPE(2, 3), (const double[]){ 1.5, 2, 1, 4, 8, 6 });
    /* differences -0.5 0 2 0 -3 0: squares sum 13.25, absolutes 5.5 */
    ck_assert_double_eq_tol(tg_mean_squared_error(a, b), 13.25 / 6, 1e-15);
    ck_assert_double_eq_tol(tg_mean_absolute_error(a, b), 5.5 / 6, 1e-15);
    /* A transposed view reads in logical order. */
    tg_tensor *at = tg_transpose(tg_contiguous(tg_transpose(a, 0, 1)), 0, 1);
    ck_assert_double_eq_tol(tg_mean_squared_error(at, b), 13.25 / 6, 1e-15);
    ck_assert(isnan(tg_mean_squared_error(a, tg_zeros(TG_F32, TG_SHAPE(3, 2)))));
    TG_ASSERT_ERROR_HAS("differ in shape");
    ck_assert(isnan(tg_mean_absolute_error(a, NULL)));
    ck_assert(isnan(tg_mean_absolute_error(tg_zeros(TG_I32, TG_SHAPE(2, 3)), a)));
    TG_ASSERT_ERROR_HAS("must be floating");
    ck_assert(isnan(tg_mean_squared_error(tg_zeros(TG_F32, TG_SHAPE(0)),
                                          tg_zeros(TG_F32, TG_SHAPE(0)))));
    TG_ASSERT_ERROR_HAS("empty");
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- learning */

START_TEST(test_tiny_model_learns)
{
    /* Two Gaussian blobs; an MLP separates them. */
    tg_manual_seed(11);
    tg_rng r;
    tg_rng_seed(&r, 5);
    enum { N = 64 };
    float xs[N * 2];
    int32_t ys[N];
    for (int i = 0; i < N; i++) {
        ys[i] = i % 2;
        xs[2 * i] = (float)((ys[i] ? 1.5 : -1.5) + 0.5 * tg_rng_normal(&r));
        xs[2 * i + 1] = (float)((ys[i] ? -1.0 : 1.0) + 0.5 * tg_rng_normal(&r));
    }
    tg_sequential *m = tg_sequential_new(TG_SHAPE(2));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(8, TG_ACT_TANH, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dropout(0.1)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(2, TG_ACT_SOFTMAX, NULL)));
    size_t n;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, &(tg_adam_opts){ 0.05, 0.9, 0.999, 1e-7, 0 });
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(N, 2), xs);
    tg_tensor *y = tg_from_data(TG_I32, TG_SHAPE(N), ys);
    double first = 0, last = 0;
    run_steps(m, opt, x, y, 60, &first, &last);
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
    tg_sequential_set_training(m, false);
    double acc = tg_accuracy(tg_sequential_forward(m, x), y);
    ck_assert_msg(acc > 0.95, "accuracy %g", acc);
    tg_scope_pop(s);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

START_TEST(test_small_cnn_learns)
{
    /* Bright top half vs bright bottom half vs bright left half, with noise. */
    tg_manual_seed(8);
    tg_sequential *m = small_cnn();
    size_t n;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, &(tg_adam_opts){ 0.02, 0.9, 0.999, 1e-7, 0 });
    tg_scope *s = tg_scope_push();
    enum { N = 30 };
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(N, 1, 6, 6), 0, 0.2, NULL);
    int64_t ys[N];
    float *xd = tg_tensor_data(x);
    for (int i = 0; i < N; i++) {
        ys[i] = i % 3;
        for (int h = 0; h < 6; h++)
            for (int w = 0; w < 6; w++)
                if ((ys[i] == 0 && h < 3) || (ys[i] == 1 && h >= 3) || (ys[i] == 2 && w < 3))
                    xd[i * 36 + h * 6 + w] += 1.0f;
    }
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(N), ys);
    double first = 0, last = 0;
    run_steps(m, opt, x, y, 40, &first, &last);
    ck_assert_msg(last < 0.3 * first, "loss %g -> %g", first, last);
    /* A whole training step in steady state allocates nothing. */
    tg_memory_stats m0, m1;
    tg_memory_stats_get(&m0);
    run_steps(m, opt, x, y, 2, NULL, NULL);
    tg_memory_stats_get(&m1);
    ck_assert_msg(m1.allocs == m0.allocs, "%llu allocations in 2 steps",
                  (unsigned long long)(m1.allocs - m0.allocs));
    ck_assert(tg_accuracy(tg_sequential_forward(m, x), y) > 0.9);
    tg_scope_pop(s);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

/* ---------------------------------------------------------------- BatchNormalization */

/* Conv2D (4 filters, 3x3, no activation) -> BatchNormalization -> ReLU -> Flatten ->
 * Dense(3), input (1, 6, 6). */
static tg_sequential *bn_cnn(void)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 6, 6));
    TG_CHECK(m);
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(4, 3, 3, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_batch_norm(NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_activation(TG_ACT_RELU)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_SOFTMAX, NULL)));
    TG_OK_(tg_sequential_build(m));
    return m;
}

/* Element i of the contiguous f32 t, row-major. */
static double flat_f32(const tg_tensor *t, int64_t i)
{
    const float *p = tg_tensor_data_ro(t);
    TG_CHECK(p != NULL);
    return p[i];
}

/* Per-channel mean and biased variance of h (N, C, H, W), in double. */
static void channel_moments(tg_tensor *h, int64_t c, double *mean, double *var)
{
    int64_t n = tg_tensor_dim(h, 0), ch = tg_tensor_dim(h, 1);
    int64_t sp = tg_tensor_dim(h, 2) * tg_tensor_dim(h, 3);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < sp; s++)
            sum += flat_f32(h, (i * ch + c) * sp + s);
    *mean = sum / (double)(n * sp);
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < sp; s++) {
            double d = flat_f32(h, (i * ch + c) * sp + s) - *mean;
            sq += d * d;
        }
    *var = sq / (double)(n * sp);
}

/* A few training steps move the moving statistics as Keras's formula says (with
 * the conv's output as the batch); evaluation mode normalises with them and
 * leaves them alone; the summary counts 4 * C parameters, 2 * C non-trainable. */
START_TEST(test_batch_norm_layer_trains)
{
    tg_manual_seed(21);
    tg_sequential *m = bn_cnn();
    tg_layer *conv = tg_sequential_layer(m, 0), *bn = tg_sequential_layer(m, 1);
    ck_assert_str_eq(tg_layer_type(bn), "BatchNormalization");
    ck_assert_str_eq(tg_layer_name(bn), "batch_normalization");
    size_t n = 0;
    tg_tensor *const *ps = tg_sequential_params(m, &n);
    ck_assert_uint_eq(n, 6); /* the buffers are no parameters */
    ck_assert_str_eq(tg_tensor_name(ps[2]), "sequential/batch_normalization/gamma");
    ck_assert_str_eq(tg_tensor_name(ps[3]), "sequential/batch_normalization/beta");
    ck_assert_int_eq(tg_layer_buffer_count(bn), 2);
    tg_tensor *mm = tg_layer_buffer_by_name(bn, "moving_mean");
    tg_tensor *mv = tg_layer_buffer_by_name(bn, "moving_variance");
    TG_CHECK(mm && mv);
    ck_assert_str_eq(tg_tensor_name(mv), "sequential/batch_normalization/moving_variance");
    ck_assert(!tg_requires_grad(mm) && !tg_requires_grad(mv));
    for (int64_t c = 0; c < 4; c++) {
        ck_assert_double_eq(tg_get(ps[2], &c), 1);
        ck_assert_double_eq(tg_get(ps[3], &c), 0);
        ck_assert_double_eq(tg_get(mm, &c), 0);
        ck_assert_double_eq(tg_get(mv, &c), 1);
    }
    char *text = summary_text(m);
    /* conv 4*9+4, batch norm 4*4 (8 of them the buffers), dense 64*3+3 */
    const char *rule = "__________________________________________________________________"
                       "____________\n";
    char golden[2048];
    snprintf(golden, sizeof golden,
             "Model: \"sequential\"\n%s"
             " Layer (type)                             Output Shape              Param #\n"
             "=================================================================="
             "============\n"
             " conv2d (Conv2D)                          (None, 4, 4, 4)           40\n%s"
             " batch_normalization (BatchNormalization) (None, 4, 4, 4)           16\n%s"
             " activation (Activation)                  (None, 4, 4, 4)           0\n%s"
             " flatten (Flatten)                        (None, 64)                0\n%s"
             " dense (Dense)                            (None, 3)                 195\n"
             "=================================================================="
             "============\n"
             "Total params: 251\nTrainable params: 243\nNon-trainable params: 8\n%s",
             rule, rule, rule, rule, rule, rule);
    ck_assert_str_eq(text, golden);
    free(text);
    char *arch = tg_sequential_architecture(m);
    TG_CHECK(arch);
    ck_assert_msg(strstr(arch, "\"class_name\": \"BatchNormalization\", \"name\": "
                               "\"batch_normalization\", \"trainable\": true, \"config\": "
                               "{\"axis\": 1, \"momentum\": 0.98999999999999999, \"epsilon\": "
                               "0.001, \"center\": true, \"scale\": true"), "%s", arch);
    free(arch);

    tg_optimizer *opt = tg_optimizer_new_adam(ps, n, &(tg_adam_opts){ 0.05, 0.9, 0.999, 1e-7, 0.0 });
    TG_CHECK(opt);
    tg_scope *s = tg_scope_push();
    enum { N = 12 };
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(N, 1, 6, 6), 0.5, 1.0, NULL);
    int64_t ys[N];
    for (int i = 0; i < N; i++)
        ys[i] = i % 3;
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(N), ys);
    double wm[4] = {0, 0, 0, 0}, wv[4] = {1, 1, 1, 1};
    for (int step = 0; step < 4; step++) {
        tg_scope *st = tg_scope_push();
        /* the batch BatchNormalization will see: the conv's output before this step */
        bool prev = tg_set_grad_enabled(false);
        tg_tensor *h = tg_layer_forward(conv, x, false);
        tg_set_grad_enabled(prev);
        TG_CHECK(h);
        for (int64_t c = 0; c < 4; c++) {
            double mean, var;
            channel_moments(h, c, &mean, &var);
            wm[c] = wm[c] * 0.99 + mean * 0.01;
            wv[c] = wv[c] * 0.99 + var * 0.01;
        }
        TG_OK_(tg_optimizer_zero_grad(opt));
        tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(m, x), y);
        TG_CHECK(loss);
        TG_OK_(tg_backward(loss));
        TG_OK_(tg_optimizer_step(opt));
        for (int64_t c = 0; c < 4; c++) {
            ck_assert_msg(fabs(tg_get(mm, &c) - wm[c]) <= 1e-5 * (1 + fabs(wm[c])),
                          "step %d: moving_mean[%lld] = %.9g, expected %.9g", step,
                          (long long)c, tg_get(mm, &c), wm[c]);
            ck_assert_msg(fabs(tg_get(mv, &c) - wv[c]) <= 1e-5 * (1 + fabs(wv[c])),
                          "step %d: moving_variance[%lld] = %.9g, expected %.9g", step,
                          (long long)c, tg_get(mv, &c), wv[c]);
        }
        tg_scope_pop(st);
    }
    /* gamma and beta were trained; the moving statistics moved off their start */
    int64_t c0 = 0;
    ck_assert(tg_get(ps[2], &c0) != 1.0 && tg_get(ps[3], &c0) != 0.0);
    ck_assert(wm[0] != 0.0 && wv[0] != 1.0);
    /* steady state: a training step allocates nothing and creates no primitive */
    tg_memory_stats a0, a1;
    tg_backend_stats b0, b1;
    tg_memory_stats_get(&a0);
    tg_backend_stats_get(&b0);
    run_steps(m, opt, x, y, 2, NULL, NULL);
    tg_memory_stats_get(&a1);
    tg_backend_stats_get(&b1);
    ck_assert_msg(a1.allocs == a0.allocs, "%llu allocations in 2 steps",
                  (unsigned long long)(a1.allocs - a0.allocs));
    ck_assert_uint_eq(b1.primitives_created, b0.primitives_created);

    /* evaluation: (h - moving_mean) / sqrt(moving_variance + 1e-3) * gamma + beta,
     * and the buffers stay where they are */
    tg_sequential_set_training(m, false);
    tg_tensor *mm0 = tg_tensor_copy(mm), *mv0 = tg_tensor_copy(mv);
    tg_tensor *h = tg_layer_forward(conv, x, false);
    tg_tensor *out = tg_layer_forward(bn, h, false);
    TG_CHECK(h && out);
    int64_t sp = 16;
    for (int64_t i = 0; i < N * 4 * sp; i++) {
        int64_t c = (i / sp) % 4;
        double want = (flat_f32(h, i) - tg_get(mm, &c)) / sqrt(tg_get(mv, &c) + 1e-3) *
                          tg_get(ps[2], &c) + tg_get(ps[3], &c);
        ck_assert_msg(fabs(flat_f32(out, i) - want) <= 1e-5 * (1 + fabs(want)),
                      "element %lld = %.9g, expected %.9g", (long long)i,
                      flat_f32(out, i), want);
    }
    TG_CHECK(tg_sequential_forward(m, x));
    ASSERT_TENSOR_EQ(mm, mm0);
    ASSERT_TENSOR_EQ(mv, mv0);
    tg_scope_pop(s);
    tg_optimizer_free(opt);
    tg_sequential_free(m);
}
END_TEST

/* The moving statistics travel in state dicts (after gamma and beta) and through
 * a checkpoint file, and a load restores them. */
START_TEST(test_batch_norm_layer_state)
{
    tg_manual_seed(22);
    tg_sequential *m = bn_cnn();
    tg_layer *bn = tg_sequential_layer(m, 1);
    tg_scope *s = tg_scope_push();
    TG_CHECK(tg_sequential_forward(m, tg_rand_normal(TG_F32, TG_SHAPE(5, 1, 6, 6), 1, 2, NULL)));
    tg_tensor *mm = tg_layer_buffer(bn, 0), *mv = tg_layer_buffer(bn, 1);
    int64_t c0 = 0;
    ck_assert(tg_get(mm, &c0) != 0.0 && tg_get(mv, &c0) != 1.0);
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(m, sd, "model/"));
    const char *order[] = { "model/conv2d/kernel", "model/conv2d/bias",
                            "model/batch_normalization/gamma", "model/batch_normalization/beta",
                            "model/batch_normalization/moving_mean",
                            "model/batch_normalization/moving_variance",
                            "model/dense/kernel", "model/dense/bias" };
    ck_assert_uint_eq(tg_state_dict_size(sd), 8);
    for (size_t i = 0; i < 8; i++)
        ck_assert_str_eq(tg_state_dict_name_at(sd, i), order[i]);

    /* a state-dict round trip */
    tg_sequential *m2 = bn_cnn();
    tg_layer *bn2 = tg_sequential_layer(m2, 1);
    ck_assert_double_eq(tg_get(tg_layer_buffer(bn2, 0), &c0), 0);
    TG_OK_(tg_sequential_load_state_dict(m2, sd, "model/"));
    ASSERT_TENSOR_EQ(tg_layer_buffer(bn2, 0), mm);
    ASSERT_TENSOR_EQ(tg_layer_buffer(bn2, 1), mv);

    /* and through a checkpoint file */
    char dir[512];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/tg-bn-XXXXXX", base && *base ? base : "/tmp");
    ck_assert(mkdtemp(dir) != NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/bn.h5", dir);
    TG_OK_(tg_checkpoint_save(path, sd));
    tg_state_dict *back = NULL;
    TG_OK_(tg_checkpoint_load(&back, path));
    tg_sequential *m3 = bn_cnn();
    tg_layer *bn3 = tg_sequential_layer(m3, 1);
    TG_OK_(tg_sequential_load_state_dict(m3, back, "model/"));
    ASSERT_TENSOR_EQ(tg_layer_buffer(bn3, 0), mm);
    ASSERT_TENSOR_EQ(tg_layer_buffer(bn3, 1), mv);
    ck_assert_int_eq(remove(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    /* evaluation outputs agree once restored */
    tg_sequential_set_training(m, false);
    tg_sequential_set_training(m3, false);
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(3, 1, 6, 6), 0, 1, NULL);
    ASSERT_TENSOR_EQ(tg_sequential_forward(m3, x), tg_sequential_forward(m, x));

    tg_state_dict_free(sd);
    tg_state_dict_free(back);
    tg_scope_pop(s);
    tg_sequential_free(m);
    tg_sequential_free(m2);
    tg_sequential_free(m3);
}
END_TEST

/* Options and errors: no center or scale leaves only the buffers (all
 * non-trainable); a bad momentum or epsilon, or a 2-D input, is refused. */
START_TEST(test_batch_norm_layer_options)
{
    tg_batch_norm_layer_opts o = TG_BATCH_NORM_LAYER_OPTS_INIT;
    o.center = o.scale = false;
    o.momentum = 0.5;
    o.name = "bn";
    tg_sequential *m = tg_sequential_new(TG_SHAPE(5));
    TG_OK_(tg_sequential_add(m, tg_layer_new_batch_norm(&o)));
    TG_OK_(tg_sequential_build(m));
    tg_layer *bn = tg_sequential_layer_by_name(m, "bn");
    TG_CHECK(bn);
    ck_assert_int_eq(tg_layer_param_count(bn), 0);
    ck_assert_int_eq(tg_layer_buffer_count(bn), 2);
    int64_t total, tr, ntr;
    TG_OK_(tg_sequential_count_params(&total, &tr, &ntr, m));
    ck_assert_int_eq(total, 10);
    ck_assert_int_eq(tr, 0);
    ck_assert_int_eq(ntr, 10);
    /* (N, F) in training with momentum 0.5: y = (x - mean) / sqrt(var + 1e-3) */
    tg_scope *s = tg_scope_push();
    double xv[10];
    for (int i = 0; i < 10; i++)
        xv[i] = (double)(i * i % 7) - 2.5;
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(2, 5), (const float[]){
        (float)xv[0], (float)xv[1], (float)xv[2], (float)xv[3], (float)xv[4],
        (float)xv[5], (float)xv[6], (float)xv[7], (float)xv[8], (float)xv[9]});
    tg_tensor *yv = tg_sequential_forward(m, x);
    TG_CHECK(yv);
    for (int64_t f = 0; f < 5; f++) {
        double a = (float)xv[f], b = (float)xv[5 + f], mean = (a + b) / 2;
        double var = ((a - mean) * (a - mean) + (b - mean) * (b - mean)) / 2;
        double want = (a - mean) / sqrt(var + 1e-3);
        ck_assert_double_eq_tol(flat_f32(yv, f), want, 1e-5 * (1 + fabs(want)));
        ck_assert_double_eq_tol(tg_get(tg_layer_buffer(bn, 0), &f), mean * 0.5, 1e-6);
        ck_assert_double_eq_tol(tg_get(tg_layer_buffer(bn, 1), &f), 0.5 + var * 0.5,
                                1e-5 * (1 + var));
    }
    tg_scope_pop(s);
    tg_sequential_free(m);

    o = (tg_batch_norm_layer_opts)TG_BATCH_NORM_LAYER_OPTS_INIT;
    o.momentum = 1.5;
    ck_assert_ptr_null(tg_layer_new_batch_norm(&o));
    ck_assert_str_eq(tg_last_error(), "tg_layer_new_batch_norm: momentum 1.5 is not in [0, 1]");
    o.momentum = 0.99;
    o.epsilon = -1;
    ck_assert_ptr_null(tg_layer_new_batch_norm(&o));
    ck_assert_str_eq(tg_last_error(),
                     "tg_layer_new_batch_norm: epsilon -1 must be finite and > 0");
    m = tg_sequential_new(TG_SHAPE(3, 4));
    TG_OK_(tg_sequential_add(m, tg_layer_new_batch_norm(NULL)));
    ck_assert_int_eq(tg_sequential_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("needs (None, features) or (None, channels, height, width) input, "
                        "got (None, 3, 4)");
    tg_sequential_free(m);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("nn");
    struct { const char *name; const TTest *test; } cases[] = {
        { "tutorial", test_tutorial_shapes_and_count },
        { "summary", test_summary_exact },
        { "padding", test_padding_and_strides },
        { "padding_global_reshape", test_padding_global_reshape_layers },
        { "activation_layers", test_activation_layers },
        { "shape_errors", test_shape_errors },
        { "params", test_param_names_and_init },
        { "architecture", test_architecture },
        { "architecture_check", test_architecture_check },
        { "forward", test_forward_probs_and_logits },
        { "dropout", test_dropout_modes },
        { "frozen", test_frozen_layer },
        { "adam", test_adam_matches_formula },
        { "sgd", test_sgd_matches_formula },
        { "rmsprop", test_rmsprop_matches_formula },
        { "optimizer_misc", test_optimizer_skips_and_no_alloc },
        { "optimizer_non_finite", test_optimizer_refuses_non_finite },
        { "nan_weight", test_nan_weight_stops_step },
        { "optimizer_step_bounds", test_optimizer_step_bounds },
        { "steady_state", test_tutorial_steady_state },
        { "optimizer_state", test_optimizer_state_roundtrip },
        { "optimizer_mismatch", test_optimizer_state_mismatch },
        { "model_state", test_model_state_dict },
        { "load_list", test_load_lists_first_eight },
        { "copy_params", test_layer_copy_params },
        { "custom_layer", test_custom_layer_type },
        { "layer_forward", test_layer_forward_standalone },
        { "layer_errors", test_layer_type_errors },
        { "grouped_conv_layers", test_grouped_and_depthwise_conv_layers },
        { "accuracy", test_accuracy },
        { "top_k_accuracy", test_top_k_accuracy },
        { "confusion_and_class_metrics", test_confusion_and_class_metrics },
        { "regression_metrics", test_regression_metrics },
        { "mlp_learns", test_tiny_model_learns },
        { "cnn_learns", test_small_cnn_learns },
        { "batch_norm_trains", test_batch_norm_layer_trains },
        { "batch_norm_state", test_batch_norm_layer_state },
        { "batch_norm_options", test_batch_norm_layer_options },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tg_tcase(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
