/* tests/test_model.c -- the functional model graph (nn/model.c) and merge
 * layers (nn/merge.c): forward against the same computation written with ops,
 * shared layers (one set of weights, gradients from both uses), several inputs
 * and outputs, logits, the summary's "Connected to", the architecture, state
 * dicts, a checkpointed residual network with BatchNorm resuming bit for bit,
 * gradient checks through merges, and every construction error. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/tg_test.h"

#define ASSERT_TENSOR_EQ(a, b) TG_ASSERT_TENSOR_CLOSE(a, b, 1e-300, 0)

static char *summary_text(tg_model *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert(f != NULL);
    TG_OK_(tg_model_summary(m, f));
    fclose(f);
    return buf;
}

/* x (1, 6, 6) -> conv 2 3x3 same -> relu; Add(that, x broadcast? no: a 1x1
 * conv of x to 2 channels) -> global average -> dense 3. */
typedef struct resid {
    tg_model *m;
    tg_layer *conv, *proj, *dense;
} resid;

static resid residual_model(tg_dtype dt)
{
    resid r;
    r.m = tg_model_new("resid");
    TG_CHECK(r.m);
    TG_OK_(tg_model_set_dtype(r.m, dt));
    tg_conv2d_layer_opts same = TG_CONV2D_LAYER_OPTS_INIT;
    same.padding = TG_PADDING_SAME;
    tg_node *x = tg_model_input(r.m, "image", TG_SHAPE(1, 6, 6));
    r.conv = tg_layer_new_conv2d(2, 3, 3, TG_ACT_RELU, &same);
    r.proj = tg_layer_new_conv2d(2, 1, 1, TG_ACT_NONE, NULL);
    r.dense = tg_layer_new_dense(3, TG_ACT_SOFTMAX, NULL);
    tg_node *a = tg_model_apply(r.m, r.conv, x);
    tg_node *b = tg_model_apply(r.m, r.proj, x);
    tg_node *sum = tg_model_apply_n(r.m, tg_layer_new_add(NULL), 2, (tg_node *[]){ a, b });
    tg_node *g = tg_model_apply(r.m, tg_layer_new_global_avg_pool2d(false), sum);
    tg_node *y = tg_model_apply(r.m, r.dense, g);
    TG_OK_(tg_model_set_outputs(r.m, 1, &y));
    return r;
}

START_TEST(test_forward_matches_ops)
{
    tg_scope *s = tg_scope_push();
    resid r = residual_model(TG_F64);
    TG_OK_(tg_model_build(r.m));
    tg_tensor *x = tg_rand_normal(TG_F64, TG_SHAPE(4, 1, 6, 6), 0, 1, NULL);
    tg_tensor *got = tg_model_forward_logits(r.m, x);
    TG_CHECK(got);
    /* The same network from the layers' parameters and plain ops. */
    tg_conv2d_opts co = TG_CONV2D_OPTS_INIT;
    co.pad[0] = co.pad[1] = co.pad[2] = co.pad[3] = 1;
    tg_tensor *a = tg_relu(tg_conv2d(x, tg_layer_param(r.conv, 0), tg_layer_param(r.conv, 1),
                                     &co));
    tg_conv2d_opts c1 = TG_CONV2D_OPTS_INIT;
    tg_tensor *b = tg_conv2d(x, tg_layer_param(r.proj, 0), tg_layer_param(r.proj, 1), &c1);
    tg_tensor *g = tg_global_avg_pool2d(tg_add(a, b), false);
    tg_tensor *want = tg_dense(g, tg_layer_param(r.dense, 0), tg_layer_param(r.dense, 1));
    TG_CHECK(want);
    TG_ASSERT_TENSOR_CLOSE(got, want, 1e-14, 1e-12);
    /* forward (not logits) ends in the softmax. */
    tg_tensor *p = tg_model_forward(r.m, x);
    TG_ASSERT_TENSOR_CLOSE(p, tg_softmax(want, 1), 1e-14, 1e-12);
    /* Parameters: the distinct layers in order of first application. */
    size_t n = 0;
    tg_tensor *const *ps = tg_model_params(r.m, &n);
    ck_assert_uint_eq(n, 6);
    ck_assert_str_eq(tg_tensor_name(ps[0]), "resid/conv2d/kernel");
    ck_assert_str_eq(tg_tensor_name(ps[2]), "resid/conv2d_1/kernel");
    ck_assert_str_eq(tg_tensor_name(ps[5]), "resid/dense/bias");
    ck_assert(tg_model_is_graph(r.m));
    ck_assert_int_eq(tg_model_num_inputs(r.m), 1);
    tg_model_free(r.m);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_shared_layer)
{
    tg_scope *s = tg_scope_push();
    tg_model *m = tg_model_new("siamese");
    TG_OK_(tg_model_set_dtype(m, TG_F64));
    tg_node *a = tg_model_input(m, "left", TG_SHAPE(3));
    tg_node *b = tg_model_input(m, "right", TG_SHAPE(3));
    tg_layer *enc = tg_layer_new_dense(2, TG_ACT_TANH, NULL);
    tg_node *ea = tg_model_apply(m, enc, a);
    tg_node *eb = tg_model_apply(m, enc, b); /* the same layer again: shared */
    tg_node *d = tg_model_apply_n(m, tg_layer_new_concatenate(1, NULL), 2,
                                  (tg_node *[]){ ea, eb });
    TG_OK_(tg_model_set_outputs(m, 1, &d));
    int64_t total = 0;
    TG_OK_(tg_model_count_params(&total, NULL, NULL, m));
    ck_assert_int_eq(total, 3 * 2 + 2); /* one kernel and bias */
    ck_assert_int_eq(tg_model_layer_count(m), 2);
    int64_t shape[TG_MAX_DIMS];
    ck_assert_int_eq(tg_node_shape(d, shape), 1);
    ck_assert_int_eq(shape[0], 4);

    tg_tensor *xa = tg_rand_normal(TG_F64, TG_SHAPE(5, 3), 0, 1, NULL);
    tg_tensor *xb = tg_rand_normal(TG_F64, TG_SHAPE(5, 3), 0, 1, NULL);
    tg_tensor *y = NULL;
    TG_OK_(tg_model_forward_n(m, 2, (tg_tensor *[]){ xa, xb }, 1, &y, false));
    tg_tensor *k = tg_layer_param(enc, 0), *bias = tg_layer_param(enc, 1);
    tg_tensor *want = tg_concat((tg_tensor *[]){ tg_tanh(tg_dense(xa, k, bias)),
                                                 tg_tanh(tg_dense(xb, k, bias)) }, 2, 1);
    TG_ASSERT_TENSOR_CLOSE(y, want, 1e-15, 1e-13);
    /* The kernel's gradient is the sum of both uses'. */
    TG_OK_(tg_backward(tg_sum(tg_mul(y, y), NULL, 0, false)));
    tg_tensor *g_graph = tg_scope_keep(tg_contiguous(tg_grad(k)));
    TG_OK_(tg_zero_grad(k));
    TG_OK_(tg_zero_grad(bias));
    TG_OK_(tg_backward(tg_sum(tg_mul(want, want), NULL, 0, false)));
    TG_ASSERT_TENSOR_CLOSE(g_graph, tg_grad(k), 1e-15, 1e-12);
    tg_release(g_graph);
    char *text = summary_text(m);
    /* One row per layer; the shared one lists both applications. */
    ck_assert_msg(strstr(text, "['left[0][0]']") && strstr(text, "['right[0][0]']") &&
                  strstr(text, "['dense[0][0]', 'dense[1][0]']"), "%s", text);
    free(text);
    tg_model_free(m);
    tg_scope_pop(s);
}
END_TEST

/* The summary as a whole, against a table written out here. */
START_TEST(test_summary_golden)
{
    tg_model *m = tg_model_new("tiny");
    tg_node *x = tg_model_input(m, NULL, TG_SHAPE(4));
    tg_node *h = tg_model_apply(m, tg_layer_new_dense(3, TG_ACT_RELU, NULL), x);
    tg_node *o = tg_model_apply_n(m, tg_layer_new_concatenate(-1, NULL), 2,
                                  (tg_node *[]){ h, x });
    TG_OK_(tg_model_set_outputs(m, 1, &o));
    char *text = summary_text(m);
    const char *want =
        "Model: \"tiny\"\n"
        "__________________________________________________________________________________"
        "________________\n"
        " Layer (type)                    Output Shape          Param #     Connected to\n"
        "=================================================================================="
        "================\n"
        " input_1 (InputLayer)            (None, 4)             0           []\n"
        "__________________________________________________________________________________"
        "________________\n"
        " dense (Dense)                   (None, 3)             15          ['input_1[0][0]']\n"
        "__________________________________________________________________________________"
        "________________\n"
        " concatenate (Concatenate)       (None, 7)             0           ['dense[0][0]', "
        "'input_1[0][0]']\n"
        "=================================================================================="
        "================\n"
        "Total params: 15\n"
        "Trainable params: 15\n"
        "Non-trainable params: 0\n"
        "__________________________________________________________________________________"
        "________________\n";
    ck_assert_str_eq(text, want);
    free(text);
    char *arch = tg_model_architecture(m);
    TG_CHECK(arch);
    ck_assert_msg(strstr(arch, "\"class_name\": \"Functional\"") &&
                  strstr(arch, "\"inputs\": [{\"name\": \"input_1\", \"shape\": [4]}]") &&
                  strstr(arch, "\"inbound_nodes\": [[[\"dense\", 0, 0], [\"input_1\", 0, 0]]]") &&
                  strstr(arch, "\"outputs\": [[\"concatenate\", 0, 0]]"), "%s", arch);
    free(arch);
    tg_model_free(m);
}
END_TEST

START_TEST(test_multi_output_logits)
{
    tg_scope *s = tg_scope_push();
    tg_model *m = tg_model_new(NULL);
    ck_assert_str_eq(tg_model_name(m), "model");
    TG_OK_(tg_model_set_dtype(m, TG_F64));
    tg_node *x = tg_model_input(m, NULL, TG_SHAPE(5));
    tg_node *p = tg_model_apply(m, tg_layer_new_dense(4, TG_ACT_SOFTMAX, NULL), x);
    /* p is an output and also read by another layer. */
    tg_node *q = tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), p);
    TG_OK_(tg_model_set_outputs(m, 2, (tg_node *[]){ q, p }));
    tg_tensor *xv = tg_rand_normal(TG_F64, TG_SHAPE(3, 5), 0, 1, NULL);
    tg_tensor *outs[2], *logits[2];
    TG_OK_(tg_model_forward_n(m, 1, &xv, 2, outs, false));
    TG_OK_(tg_model_forward_n(m, 1, &xv, 2, logits, true));
    /* Logits skip the output's softmax, yet q still reads probabilities. */
    TG_ASSERT_TENSOR_CLOSE(logits[0], outs[0], 1e-15, 1e-13);
    TG_ASSERT_TENSOR_CLOSE(tg_softmax(logits[1], 1), outs[1], 1e-15, 1e-13);
    tg_tensor *z = tg_dense(xv, tg_layer_param(tg_node_layer(p), 0),
                            tg_layer_param(tg_node_layer(p), 1));
    TG_ASSERT_TENSOR_CLOSE(logits[1], z, 1e-15, 1e-13);
    /* One-output calls need a one-output model. */
    ck_assert(tg_model_forward(m, xv) == NULL);
    TG_ASSERT_ERROR_HAS("tg_model_forward_n");
    ck_assert_int_eq(tg_model_forward_n(m, 1, &xv, 1, outs, false), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("2 outputs");
    ck_assert(outs[0] == NULL);
    tg_model_free(m);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_input_errors)
{
    tg_scope *s = tg_scope_push();
    tg_model *m = tg_model_new("two");
    tg_node *a = tg_model_input(m, "a", TG_SHAPE(2));
    tg_node *b = tg_model_input(m, "b", TG_SHAPE(2));
    tg_node *y = tg_model_apply_n(m, tg_layer_new_multiply(NULL), 2, (tg_node *[]){ a, b });
    TG_OK_(tg_model_set_outputs(m, 1, &y));
    tg_tensor *x2 = tg_ones(TG_F32, TG_SHAPE(3, 2)), *x3 = tg_ones(TG_F32, TG_SHAPE(3, 3));
    tg_tensor *x4 = tg_ones(TG_F32, TG_SHAPE(4, 2)), *d = tg_ones(TG_F64, TG_SHAPE(3, 2));
    tg_tensor *out;
    ck_assert_int_eq(tg_model_forward_n(m, 1, &x2, 1, &out, false), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("2 inputs; 1 given");
    ck_assert_int_eq(tg_model_forward_n(m, 2, (tg_tensor *[]){ x2, x3 }, 1, &out, false),
                     TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("expects input \"b\" (None, 2)");
    ck_assert_int_eq(tg_model_forward_n(m, 2, (tg_tensor *[]){ x2, x4 }, 1, &out, false),
                     TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("same batch");
    ck_assert_int_eq(tg_model_forward_n(m, 2, (tg_tensor *[]){ x2, d }, 1, &out, false),
                     TG_ERR_DTYPE);
    ck_assert_int_eq(tg_model_forward_n(m, 2, (tg_tensor *[]){ x2, NULL }, 1, &out, false),
                     TG_ERR_ARG);
    TG_OK_(tg_model_forward_n(m, 2, (tg_tensor *[]){ x2, x2 }, 1, &out, false));
    ASSERT_TENSOR_EQ(out, x2);
    ck_assert(tg_sequential_add(m, tg_layer_new_flatten()) == TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("graph model");
    tg_model_free(m);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_construction_errors)
{
    /* A failed call in a chain: later calls pass the NULL on, set_outputs reports
     * the first error, and no layer leaks. */
    tg_model *m = tg_model_new("chain");
    tg_node *x = tg_model_input(m, NULL, TG_SHAPE(1, 4, 4));
    tg_node *h = tg_model_apply(m, tg_layer_new_conv2d(-1, 3, 3, TG_ACT_NONE, NULL), x);
    ck_assert(h == NULL);
    tg_node *y = tg_model_apply(m, tg_layer_new_flatten(), h);
    ck_assert(y == NULL);
    ck_assert_int_eq(tg_model_set_outputs(m, 1, &y), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("incomplete");
    TG_ASSERT_ERROR_HAS("filters");
    ck_assert_int_ne(tg_model_build(m), TG_OK);
    tg_model_free(m);

    m = tg_model_new("m");
    tg_model *other = tg_model_new("other");
    x = tg_model_input(m, "x", TG_SHAPE(4));
    tg_node *ox = tg_model_input(other, "x", TG_SHAPE(4));
    ck_assert(tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), ox) == NULL);
    TG_ASSERT_ERROR_HAS("node of model \"other\"");
    tg_layer *owned = tg_layer_new_dense(2, TG_ACT_NONE, NULL);
    TG_CHECK(tg_model_apply(other, owned, ox));
    ck_assert(tg_model_apply(m, owned, x) == NULL);
    TG_ASSERT_ERROR_HAS("belongs to another model");
    tg_model_free(other);
    tg_model_free(m);

    m = tg_model_new("m");
    x = tg_model_input(m, "x", TG_SHAPE(4));
    ck_assert(tg_model_input(m, "x", TG_SHAPE(4)) == NULL);
    TG_ASSERT_ERROR_HAS("already has a layer or input named \"x\"");
    tg_model_free(m);

    m = tg_model_new("m");
    x = tg_model_input(m, "x", TG_SHAPE(4));
    ck_assert(tg_model_apply(m, tg_layer_new_add(NULL), x) == NULL);
    TG_ASSERT_ERROR_HAS("merges several inputs");
    tg_model_free(m);

    m = tg_model_new("m");
    x = tg_model_input(m, "x", TG_SHAPE(4));
    tg_node *u = tg_model_input(m, "unused", TG_SHAPE(4));
    (void)u;
    y = tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), x);
    tg_node *dangling = tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), x);
    (void)dangling;
    ck_assert_int_eq(tg_model_set_outputs(m, 1, &y), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("input \"unused\"");
    tg_model_free(m);

    m = tg_model_new("m");
    x = tg_model_input(m, "x", TG_SHAPE(4));
    y = tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), x);
    dangling = tg_model_apply(m, tg_layer_new_dense(2, TG_ACT_NONE, NULL), x);
    ck_assert_int_eq(tg_model_set_outputs(m, 1, &y), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("dense_1 (Dense)");
    TG_ASSERT_ERROR_HAS("reaches no output");
    TG_OK_(tg_model_set_outputs(m, 2, (tg_node *[]){ y, dangling }));
    ck_assert(tg_model_apply(m, tg_layer_new_flatten(), y) == NULL);
    TG_ASSERT_ERROR_HAS("complete");
    ck_assert_int_eq(tg_model_set_outputs(m, 1, &y), TG_ERR_STATE);
    tg_model_free(m);

    /* Shape errors come at build and name the layer; the model stays unbuilt. */
    m = tg_model_new("m");
    tg_node *a = tg_model_input(m, "a", TG_SHAPE(4));
    tg_node *b = tg_model_input(m, "b", TG_SHAPE(5));
    y = tg_model_apply_n(m, tg_layer_new_add(NULL), 2, (tg_node *[]){ a, b });
    TG_OK_(tg_model_set_outputs(m, 1, &y));
    ck_assert_int_eq(tg_model_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("add (Add) needs inputs of one shape; got (None, 4), (None, 5)");
    tg_model_free(m);

    m = tg_model_new("m");
    a = tg_model_input(m, "a", TG_SHAPE(4));
    b = tg_model_input(m, "b", TG_SHAPE(5));
    tg_layer *shared = tg_layer_new_dense(2, TG_ACT_NONE, NULL);
    tg_node *sa = tg_model_apply(m, shared, a);
    tg_node *sb = tg_model_apply(m, shared, b);
    TG_OK_(tg_model_set_outputs(m, 2, (tg_node *[]){ sa, sb }));
    ck_assert_int_eq(tg_model_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("shared layer dense (Dense) was built for input (None, 4)");
    ck_assert_int_eq(tg_layer_param_count(shared), 0); /* unbuilt again */
    tg_model_free(m);

    m = tg_model_new("m");
    a = tg_model_input(m, "a", TG_SHAPE(2, 3, 3));
    b = tg_model_input(m, "b", TG_SHAPE(2, 4, 3));
    y = tg_model_apply_n(m, tg_layer_new_concatenate(1, NULL), 2, (tg_node *[]){ a, b });
    TG_OK_(tg_model_set_outputs(m, 1, &y));
    ck_assert_int_eq(tg_model_build(m), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("agree on every axis but the joined one");
    tg_model_free(m);

    ck_assert(tg_layer_new_concatenate(0, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("axis 0 is the batch");
    m = tg_model_new("m");
    ck_assert_int_eq(tg_model_set_outputs(m, 1, (tg_node *[]){ NULL }), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("no inputs");
    ck_assert_int_eq(tg_model_build(m), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("no outputs yet");
    tg_model_free(m);
    ck_assert(tg_model_input(NULL, NULL, TG_SHAPE(1)) == NULL);
    ck_assert(tg_model_apply(NULL, tg_layer_new_flatten(), NULL) == NULL);
    ck_assert(tg_model_new("bad/name") == NULL);
}
END_TEST

/* A layer of several inputs called outside any model. */
START_TEST(test_merge_standalone)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_rand_normal(TG_F64, TG_SHAPE(2, 3), 0, 1, NULL);
    tg_tensor *b = tg_rand_normal(TG_F64, TG_SHAPE(2, 3), 0, 1, NULL);
    tg_tensor *c = tg_rand_normal(TG_F64, TG_SHAPE(2, 3), 0, 1, NULL);
    tg_tensor *xs[3] = { a, b, c };
    tg_layer *avg = tg_layer_new_average(NULL);
    tg_tensor *y = tg_layer_forward_n(avg, 3, xs, true);
    TG_CHECK(y);
    const double *pa = tg_tensor_data(a), *pb = tg_tensor_data(b), *pc = tg_tensor_data(c);
    const double *py = tg_tensor_data(y);
    for (int i = 0; i < 6; i++)
        TG_ASSERT_CLOSE(py[i], (pa[i] + pb[i] + pc[i]) / 3, 1e-15, 1e-15);
    ck_assert(tg_layer_forward_n(avg, 2, xs, true) == NULL);
    TG_ASSERT_ERROR_HAS("built for 3 inputs");
    ck_assert(tg_layer_forward(avg, a, true) == NULL);
    TG_ASSERT_ERROR_HAS("tg_layer_forward_n");
    tg_layer_free(avg);
    tg_layer *mul = tg_layer_new_multiply("m");
    y = tg_layer_forward_n(mul, 2, xs, true);
    const double *pm = tg_tensor_data(y);
    for (int i = 0; i < 6; i++)
        TG_ASSERT_CLOSE(pm[i], pa[i] * pb[i], 0, 1e-15);
    tg_layer_free(mul);
    /* A merge type must not also set the one-input callbacks. */
    static const tg_layer_vtable bad = { .class_name = "Bad", .base_name = "bad",
                                         .forward = NULL, .build_n = NULL,
                                         .forward_n = NULL };
    static const tg_layer_vtable half = { .class_name = "Half", .base_name = "half",
                                          .build_n = NULL,
                                          .forward_n = (tg_tensor *(*)(tg_layer *, int,
                                                                        tg_tensor *const *,
                                                                        const tg_layer_ctx *))1 };
    tg_layer *ok = tg_layer_new(&bad, TG_ACT_NONE, NULL);
    TG_CHECK(ok);
    tg_layer_free(ok);
    ck_assert(tg_layer_new(&half, TG_ACT_NONE, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("build_n and forward_n");
    tg_scope_pop(s);
}
END_TEST

/* Gradients through every merge, checked by central differences (f64). */
static tg_tensor *merge_fn(tg_tensor *const *in, int n, void *ctx)
{
    (void)n;
    tg_model *m = ctx;
    tg_tensor *y = NULL;
    return tg_model_forward_n(m, 2, in, 1, &y, false) == TG_OK ? tg_sum(tg_mul(y, y), NULL, 0, false) : NULL;
}

START_TEST(test_gradcheck_merges)
{
    tg_layer *(*makers[3])(const char *) = { tg_layer_new_add, tg_layer_new_multiply,
                                             tg_layer_new_average };
    for (int kind = 0; kind < 4; kind++) {
        tg_scope *s = tg_scope_push();
        tg_model *m = tg_model_new("g");
        TG_OK_(tg_model_set_dtype(m, TG_F64));
        tg_node *a = tg_model_input(m, "a", TG_SHAPE(3));
        tg_node *b = tg_model_input(m, "b", TG_SHAPE(3));
        tg_node *ha = tg_model_apply(m, tg_layer_new_dense(3, TG_ACT_TANH, NULL), a);
        tg_layer *merge = kind < 3 ? makers[kind](NULL) : tg_layer_new_concatenate(-1, NULL);
        tg_node *y = tg_model_apply_n(m, merge, 2, (tg_node *[]){ ha, b });
        TG_OK_(tg_model_set_outputs(m, 1, &y));
        TG_OK_(tg_model_build(m));
        tg_tensor *xa = tg_rand_normal(TG_F64, TG_SHAPE(2, 3), 0, 1, NULL);
        tg_tensor *xb = tg_rand_normal(TG_F64, TG_SHAPE(2, 3), 0, 1, NULL);
        TG_OK_(tg_set_requires_grad(xa, true));
        TG_OK_(tg_set_requires_grad(xb, true));
        tg_gradcheck_report rep;
        tg_gradcheck_opts go = TG_GRADCHECK_OPTS_INIT;
        TG_OK_(tg_gradcheck(&rep, merge_fn, m, (tg_tensor *[]){ xa, xb }, 2, &go));
        ck_assert_msg(rep.passed, "%s: %s", tg_layer_type(merge), rep.message);
        tg_model_free(m);
        tg_scope_pop(s);
    }
}
END_TEST

/* conv-BN-relu, conv-BN, Add with the block input, relu, GAP, dense: the
 * residual block the examples and benchmark use, at a tiny size. */
static tg_model *resnet_block_model(tg_rng *rng)
{
    tg_model *m = tg_model_new("resblock");
    TG_OK_(tg_sequential_set_rng(m, rng));
    tg_conv2d_layer_opts same = TG_CONV2D_LAYER_OPTS_INIT;
    same.padding = TG_PADDING_SAME;
    tg_node *x = tg_model_input(m, "image", TG_SHAPE(1, 6, 6));
    tg_node *h = tg_model_apply(m, tg_layer_new_conv2d(3, 3, 3, TG_ACT_NONE, &same), x);
    h = tg_model_apply(m, tg_layer_new_batch_norm(NULL), h);
    tg_node *skip = tg_model_apply(m, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(m, tg_layer_new_conv2d(3, 3, 3, TG_ACT_NONE, &same), skip);
    h = tg_model_apply(m, tg_layer_new_batch_norm(NULL), h);
    h = tg_model_apply_n(m, tg_layer_new_add(NULL), 2, (tg_node *[]){ h, skip });
    h = tg_model_apply(m, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(m, tg_layer_new_global_avg_pool2d(false), h);
    h = tg_model_apply(m, tg_layer_new_dense(4, TG_ACT_SOFTMAX, NULL), h);
    TG_OK_(tg_model_set_outputs(m, 1, &h));
    return m;
}

typedef struct run {
    tg_rng rng;
    tg_model *m;
    tg_optimizer *opt;
} run;

static void run_new(run *r)
{
    tg_rng_seed(&r->rng, 7);
    r->m = resnet_block_model(&r->rng);
    size_t n = 0;
    tg_tensor *const *ps = tg_model_params(r->m, &n);
    TG_CHECK(ps);
    r->opt = tg_optimizer_new_adam(ps, n, NULL);
    TG_CHECK(r->opt);
}

static void run_free(run *r)
{
    tg_optimizer_free(r->opt);
    tg_model_free(r->m);
}

static void steps(run *r, const tg_tensor *x, const tg_tensor *y, int n)
{
    for (int i = 0; i < n; i++) {
        tg_scope *s = tg_scope_push();
        tg_tensor *loss = tg_cross_entropy(tg_model_forward_logits(r->m, (tg_tensor *)x),
                                           (tg_tensor *)y);
        TG_CHECK(loss);
        TG_OK_(tg_optimizer_zero_grad(r->opt));
        TG_OK_(tg_backward(loss));
        TG_OK_(tg_optimizer_step(r->opt));
        tg_scope_pop(s);
    }
}

START_TEST(test_resnet_checkpoint_resume)
{
    tg_scope *s = tg_scope_push();
    tg_rng data;
    tg_rng_seed(&data, 3);
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(8, 1, 6, 6), 0, 1, &data);
    int64_t labels[8] = { 0, 1, 2, 3, 0, 1, 2, 3 };
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(8), labels);
    char path[] = "/tmp/tg_test_model_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);

    run a, b;
    run_new(&a);
    int64_t total = 0, ntr = 0;
    TG_OK_(tg_model_count_params(&total, NULL, &ntr, a.m));
    /* conv 30 + bn 12 (6 moving) + conv 84 + bn 12 (6 moving) + dense 16 */
    ck_assert_int_eq(total, 30 + 12 + 84 + 12 + 16);
    ck_assert_int_eq(ntr, 12);
    /* Freezing the whole graph leaves only non-trainable parameters. */
    TG_OK_(tg_model_set_trainable(a.m, false));
    TG_OK_(tg_model_count_params(NULL, NULL, &ntr, a.m));
    ck_assert_int_eq(ntr, total);
    ck_assert(!tg_requires_grad(tg_layer_param(tg_model_layer(a.m, 0), 0)));
    TG_OK_(tg_model_set_trainable(a.m, true));
    steps(&a, x, y, 3);
    tg_train_progress pr = TG_TRAIN_PROGRESS_INIT;
    pr.step = 3;
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_train_state_export(sd, a.m, a.opt, &a.rng, &pr));
    TG_OK_(tg_checkpoint_save(path, sd));
    tg_state_dict_free(sd);
    steps(&a, x, y, 2);

    run_new(&b);
    steps(&b, x, y, 1); /* a different state, overwritten by the load */
    sd = tg_state_dict_new();
    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT, got;
    TG_OK_(tg_train_state_export(sd, b.m, b.opt, &b.rng, &zero));
    TG_OK_(tg_checkpoint_load_into(path, sd));
    TG_OK_(tg_train_state_import(&got, b.m, b.opt, &b.rng, sd));
    tg_state_dict_free(sd);
    ck_assert_int_eq(got.step, 3);
    steps(&b, x, y, 2);
    /* Bit for bit: parameters and the moving statistics. */
    for (int i = 0; i < tg_model_layer_count(a.m); i++) {
        tg_layer *la = tg_model_layer(a.m, i), *lb = tg_model_layer(b.m, i);
        for (int k = 0; k < tg_layer_param_count(la); k++)
            ASSERT_TENSOR_EQ(tg_layer_param(la, k), tg_layer_param(lb, k));
        for (int k = 0; k < tg_layer_buffer_count(la); k++)
            ASSERT_TENSOR_EQ(tg_layer_buffer(la, k), tg_layer_buffer(lb, k));
    }
    run_free(&b);

    /* Another wiring with the same parameters is refused by the architecture. */
    tg_model *m2 = tg_model_new("resblock");
    tg_conv2d_layer_opts same = TG_CONV2D_LAYER_OPTS_INIT;
    same.padding = TG_PADDING_SAME;
    tg_node *in = tg_model_input(m2, "image", TG_SHAPE(1, 6, 6));
    tg_node *h = tg_model_apply(m2, tg_layer_new_conv2d(3, 3, 3, TG_ACT_NONE, &same), in);
    h = tg_model_apply(m2, tg_layer_new_batch_norm(NULL), h);
    tg_node *skip = tg_model_apply(m2, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(m2, tg_layer_new_conv2d(3, 3, 3, TG_ACT_NONE, &same), skip);
    tg_node *bn = tg_model_apply(m2, tg_layer_new_batch_norm(NULL), h);
    h = tg_model_apply_n(m2, tg_layer_new_add(NULL), 2, (tg_node *[]){ bn, h }); /* not skip */
    h = tg_model_apply(m2, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(m2, tg_layer_new_global_avg_pool2d(false), h);
    h = tg_model_apply(m2, tg_layer_new_dense(4, TG_ACT_SOFTMAX, NULL), h);
    TG_OK_(tg_model_set_outputs(m2, 1, &h));
    sd = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(a.m, sd, "model/"));
    ck_assert_int_eq(tg_sequential_load_state_dict(m2, sd, "model/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("another architecture");
    TG_ASSERT_ERROR_HAS("inbound_nodes");
    TG_OK_(tg_sequential_load_weights(m2, sd, "model/"));
    tg_state_dict_free(sd);
    tg_model_free(m2);
    run_free(&a);
    unlink(path);
    tg_scope_pop(s);
}
END_TEST

/* A Sequential model answers the generic calls. */
START_TEST(test_sequential_is_a_model)
{
    tg_scope *s = tg_scope_push();
    tg_sequential *q = tg_sequential_new(TG_SHAPE(3));
    TG_OK_(tg_sequential_add(q, tg_layer_new_dense(2, TG_ACT_SOFTMAX, NULL)));
    ck_assert(!tg_model_is_graph(q));
    ck_assert_int_eq(tg_model_num_outputs(q), 1);
    tg_tensor *x = tg_ones(TG_F32, TG_SHAPE(4, 3)), *y = NULL;
    TG_OK_(tg_model_forward_n(q, 1, &x, 1, &y, true));
    ASSERT_TENSOR_EQ(y, tg_sequential_forward_logits(q, x));
    ck_assert_int_eq(tg_model_forward_n(q, 2, (tg_tensor *[]){ x, x }, 1, &y, true),
                     TG_ERR_ARG);
    ck_assert(tg_model_input(q, NULL, TG_SHAPE(3)) == NULL);
    TG_ASSERT_ERROR_HAS("Sequential model");
    tg_model_free(q);
    tg_scope_pop(s);
}
END_TEST

/* The residual graph with BatchNorm through tg_fit: a run stopped mid-epoch
 * by the stop flag and resumed into fresh objects ends bit for bit where the
 * straight run does (weights, moving statistics, optimizer, generator). */
static tg_status stop_at_4(const tg_fit_info *info, void *ctx, bool *stop)
{
    (void)stop;
    if (info->event == TG_FIT_BATCH_END && info->step == 4)
        *(volatile sig_atomic_t *)ctx = 1;
    return TG_OK;
}

static void same_state(tg_model *a, tg_model *b)
{
    for (int i = 0; i < tg_model_layer_count(a); i++) {
        tg_layer *la = tg_model_layer(a, i), *lb = tg_model_layer(b, i);
        for (int k = 0; k < tg_layer_param_count(la); k++)
            ASSERT_TENSOR_EQ(tg_layer_param(la, k), tg_layer_param(lb, k));
        for (int k = 0; k < tg_layer_buffer_count(la); k++)
            ASSERT_TENSOR_EQ(tg_layer_buffer(la, k), tg_layer_buffer(lb, k));
    }
}

START_TEST(test_resnet_fit_resume)
{
    tg_rng data;
    tg_rng_seed(&data, 5);
    tg_tensor *x = tg_scope_keep(tg_rand_normal(TG_F32, TG_SHAPE(20, 1, 6, 6), 0, 1, &data));
    int64_t labels[20];
    for (int i = 0; i < 20; i++)
        labels[i] = i % 4;
    tg_tensor *y = tg_from_data(TG_I64, TG_SHAPE(20), labels);
    char straight[] = "/tmp/tg_model_fit_a_XXXXXX", stopped[] = "/tmp/tg_model_fit_b_XXXXXX";
    int fa = mkstemp(straight), fb = mkstemp(stopped);
    ck_assert(fa >= 0 && fb >= 0);
    close(fa);
    close(fb);

    run a, b, c;
    run_new(&a);
    tg_fit_opts o = TG_FIT_OPTS_INIT;
    o.epochs = 3;
    o.batch_size = 8; /* 3 batches, the last of 4 */
    o.rng = &a.rng;
    o.verbose = 0;
    o.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO;
    o.checkpoint_path = straight;
    tg_history ha = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&ha, a.m, a.opt, x, y, &o));
    ck_assert_int_eq(ha.n, 3);

    run_new(&b);
    volatile sig_atomic_t flag = 0;
    tg_fit_callback cb = { stop_at_4, (void *)&flag };
    tg_fit_opts ob = o;
    ob.rng = &b.rng;
    ob.checkpoint_path = stopped;
    ob.callbacks = &cb;
    ob.n_callbacks = 1;
    ob.stop_flag = &flag;
    tg_history hb = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&hb, b.m, b.opt, x, y, &ob));
    ck_assert_int_eq(hb.end, TG_FIT_STOP_REQUESTED);
    ck_assert_int_eq(hb.epoch, 1); /* mid-epoch: epoch 2, after its first batch */
    ck_assert_int_eq(hb.batch, 1);
    run_free(&b);

    run_new(&c);
    tg_fit_opts oc = o;
    oc.rng = &c.rng;
    oc.checkpoint_path = stopped;
    oc.resume = true;
    tg_history hc = TG_HISTORY_INIT;
    TG_OK_(tg_fit(&hc, c.m, c.opt, x, y, &oc));
    same_state(a.m, c.m);
    ck_assert_int_eq(tg_optimizer_steps(c.opt), tg_optimizer_steps(a.opt));
    ck_assert(memcmp(&a.rng, &c.rng, sizeof a.rng) == 0);
    ck_assert(hc.epochs[hc.n - 1].loss == ha.epochs[2].loss);

    /* evaluate and predict: evaluation mode, the moving statistics untouched */
    double loss = 0, acc = 0;
    TG_OK_(tg_evaluate(&loss, &acc, c.m, x, y, NULL));
    tg_tensor *p = tg_predict(c.m, x, NULL);
    TG_CHECK(p);
    tg_scope *s = tg_scope_push();
    tg_model_set_training(c.m, false);
    TG_ASSERT_TENSOR_CLOSE(p, tg_model_forward(c.m, x), 1e-6, 1e-5);
    tg_scope_pop(s);
    tg_release(p);
    same_state(a.m, c.m);

    tg_history_clear(&ha);
    tg_history_clear(&hb);
    tg_history_clear(&hc);
    run_free(&a);
    run_free(&c);
    tg_release(x);
    tg_release(y);
    unlink(straight);
    unlink(stopped);
}
END_TEST

/* Two models with layers of the same names share one optimizer: their
 * parameters carry the model's name; their state dicts do not. */
START_TEST(test_two_models_one_optimizer)
{
    tg_scope *s = tg_scope_push();
    tg_sequential *enc = tg_sequential_new(TG_SHAPE(4)), *dec = tg_sequential_new(TG_SHAPE(2));
    TG_OK_(tg_sequential_set_name(enc, "encoder"));
    TG_OK_(tg_sequential_set_name(dec, "decoder"));
    TG_OK_(tg_sequential_add(enc, tg_layer_new_dense(2, TG_ACT_TANH, NULL)));
    TG_OK_(tg_sequential_add(dec, tg_layer_new_dense(4, TG_ACT_NONE, NULL)));
    size_t ne = 0, nd = 0;
    tg_tensor *const *pe = tg_model_params(enc, &ne), *const *pd = tg_model_params(dec, &nd);
    ck_assert_str_eq(tg_tensor_name(pe[0]), "encoder/dense/kernel");
    ck_assert_str_eq(tg_tensor_name(pd[0]), "decoder/dense/kernel");
    tg_tensor *all[4] = { pe[0], pe[1], pd[0], pd[1] };
    tg_optimizer *opt = tg_optimizer_new_adam(all, 4, NULL);
    TG_CHECK(opt);
    tg_tensor *x = tg_rand_normal(TG_F32, TG_SHAPE(8, 4), 0, 1, NULL);
    tg_tensor *r = tg_sub(tg_model_forward(dec, tg_model_forward(enc, x)), x);
    TG_OK_(tg_backward(tg_sum(tg_mul(r, r), NULL, 0, false)));
    TG_OK_(tg_optimizer_step(opt));
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(opt, sd, "optimizer/"));
    ck_assert(tg_state_dict_has(sd, "optimizer/encoder/dense/kernel/m") &&
              tg_state_dict_has(sd, "optimizer/decoder/dense/bias/v"));
    TG_OK_(tg_sequential_state_dict(enc, sd, "enc/"));
    ck_assert(tg_state_dict_has(sd, "enc/dense/kernel"));
    tg_state_dict_free(sd);
    /* Once built, the name is in the parameters: renaming is refused. */
    ck_assert_int_eq(tg_sequential_set_name(enc, "other"), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("already built");
    ck_assert_int_eq(tg_sequential_set_name(dec, "a/b"), TG_ERR_ARG);
    tg_optimizer_free(opt);
    tg_model_free(enc);
    tg_model_free(dec);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("model");
    struct { const char *name; const TTest *test; } cases[] = {
        { "forward_matches_ops", test_forward_matches_ops },
        { "shared_layer", test_shared_layer },
        { "summary_golden", test_summary_golden },
        { "multi_output_logits", test_multi_output_logits },
        { "input_errors", test_input_errors },
        { "construction_errors", test_construction_errors },
        { "merge_standalone", test_merge_standalone },
        { "gradcheck_merges", test_gradcheck_merges },
        { "resnet_checkpoint_resume", test_resnet_checkpoint_resume },
        { "resnet_fit_resume", test_resnet_fit_resume },
        { "sequential_is_a_model", test_sequential_is_a_model },
        { "two_models_one_optimizer", test_two_models_one_optimizer },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tg_tcase(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
