/* tests/test_dot.c -- the graph snapshot (stable numbering) and the DOT writer.
 *
 * The MLP graph is compared with tests/golden/mlp.dot and mlp_backward.dot. After
 * an intended change of the output, regenerate them from the build directory:
 *   TG_UPDATE_GOLDEN=1 top_srcdir=/path/to/source ./tests/test_dot
 * and review the diff (git diff tests/golden) before committing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"
#include "autograd/node_impl.h"

/* ------------------------------------------------------------ a test-only op */

/* y = a + b (same shapes); describe() gives "k=<n_inputs>" so details show. */
static tg_status pair_backward(tg_node *node, tg_tensor *g, tg_tensor **grad_in)
{
    for (int i = 0; i < node->n_inputs; i++)
        if (tg_node_needs_grad(node, i))
            grad_in[i] = tg_tensor_copy(g);
    return TG_OK;
}

static void pair_describe(const tg_node *node, char *buf, size_t n)
{
    snprintf(buf, n, "k=%d \"q\"", node->n_inputs);
}

static const tg_op_vtable pair_op = {"test_pair", pair_backward, NULL, pair_describe, 0, 0};

static tg_tensor *pair(tg_tensor *a, tg_tensor *b)
{
    tg_tensor *y = tg_tensor_new_named("pair", tg_tensor_dtype(a), tg_tensor_ndim(a),
                                       tg_tensor_shape(a));
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < tg_tensor_numel(a); i++)
        tg_set_flat(y, i, tg_get_flat(a, i) + tg_get_flat(b, i));
    tg_tensor *in[2] = {a, b};
    if (tg_autograd_should_record(in, 2))
        ck_assert_ptr_nonnull(tg_autograd_record(y, &pair_op, in, 2, NULL));
    return tg_scoped(y);
}

/* ------------------------------------------------------------ helpers */

/* The DOT text (malloc'd) of the graph reachable from outputs. */
static char *dot_text(tg_tensor *const *outputs, int n, const tg_dot_opts *opts)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    TG_OK_(tg_dot_write(f, outputs, n, opts));
    fclose(f);
    return buf;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, k, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void golden_path(char *buf, size_t n, const char *name)
{
    const char *top = getenv("top_srcdir");
    snprintf(buf, n, "%s/tests/golden/%s", top && *top ? top : ".", name);
}

static void compare_golden(const char *name, const char *text)
{
    char path[4096];
    golden_path(path, sizeof path, name);
    if (getenv("TG_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");
        ck_assert_msg(f != NULL, "cannot write %s", path);
        fputs(text, f);
        fclose(f);
    }
    char *want = read_file(path);
    ck_assert_msg(want != NULL, "cannot read golden file %s (set top_srcdir)", path);
    if (strcmp(want, text) != 0) {
        /* point at the first differing line to make the failure readable */
        int line = 1;
        size_t i = 0;
        while (want[i] && want[i] == text[i]) {
            if (want[i] == '\n')
                line++;
            i++;
        }
        free(want);
        ck_abort_msg("%s differs from the output at line %d; output:\n%s", path, line, text);
    }
    free(want);
}

/* The small MLP: x[2,4] -> dense 3 -> relu -> dense 2 -> cross-entropy. */
static tg_tensor *small_mlp(void)
{
    static const float xs[8] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f};
    static const int64_t ys[2] = {1, 0};
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(2, 4), xs);
    tg_tensor *labels = tg_from_data(TG_I64, TG_SHAPE(2), ys);
    tg_tensor *p[4] = {tg_glorot_uniform(TG_F32, TG_SHAPE(3, 4), &rng),
                       tg_zeros(TG_F32, TG_SHAPE(3)),
                       tg_glorot_uniform(TG_F32, TG_SHAPE(2, 3), &rng),
                       tg_zeros(TG_F32, TG_SHAPE(2))};
    const char *names[4] = {"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"};
    for (int i = 0; i < 4; i++) {
        TG_CHECK(p[i] != NULL);
        TG_OK_(tg_tensor_set_name(p[i], names[i]));
        TG_OK_(tg_set_requires_grad(p[i], true));
    }
    TG_OK_(tg_tensor_set_name(x, "x"));
    tg_tensor *loss = tg_cross_entropy(tg_dense(tg_relu(tg_dense(x, p[0], p[1])), p[2], p[3]),
                                       labels);
    TG_CHECK(loss != NULL);
    TG_OK_(tg_tensor_set_name(loss, "loss"));
    return loss;
}

/* ------------------------------------------------------------ graph snapshot */

START_TEST(test_graph_numbering)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_ones(TG_F64, TG_SHAPE(2));
    tg_tensor *b = tg_ones(TG_F64, TG_SHAPE(2));
    TG_OK_(tg_set_requires_grad(a, true));
    tg_tensor *h = pair(a, b);
    tg_tensor *y = pair(h, a); /* a is used twice: drawn once */

    tg_graph *g = NULL;
    TG_OK_(tg_graph_build(&g, &y, 1));
    /* pre-order: y, its op, h, h's op, a, b */
    ck_assert_uint_eq(tg_graph_size(g), 6);
    const tg_graph_item *it[6];
    for (size_t i = 0; i < 6; i++) {
        it[i] = tg_graph_item_at(g, i);
        ck_assert_int_eq(it[i]->id, (int)i);
    }
    ck_assert_ptr_eq(it[0]->tensor, y);
    ck_assert(it[0]->is_output && !it[0]->is_leaf && it[0]->producer_id == 1);
    ck_assert_int_eq(it[1]->kind, TG_GRAPH_OP);
    ck_assert_str_eq(it[1]->op_name, "test_pair");
    ck_assert_str_eq(it[1]->op_detail, "k=2 \"q\"");
    ck_assert_int_eq(it[1]->output_id, 0);
    ck_assert_int_eq(it[1]->n_inputs, 2);
    ck_assert_int_eq(it[1]->input_ids[0], 2);
    ck_assert_int_eq(it[1]->input_ids[1], 4);
    ck_assert_ptr_eq(it[2]->tensor, h);
    ck_assert(!it[2]->is_output && it[2]->producer_id == 3);
    ck_assert_int_eq(it[3]->input_ids[0], 4);
    ck_assert_int_eq(it[3]->input_ids[1], 5);
    ck_assert_ptr_eq(it[4]->tensor, a);
    ck_assert(it[4]->is_leaf && it[4]->is_param && it[4]->producer_id == -1);
    ck_assert_ptr_eq(it[5]->tensor, b);
    ck_assert(it[5]->is_leaf && !it[5]->is_param);
    ck_assert_ptr_null(tg_graph_item_at(g, 6));
    tg_graph_free(g);

    /* two outputs: the second is already numbered but still marked */
    tg_tensor *outs[2] = {y, h};
    TG_OK_(tg_graph_build(&g, outs, 2));
    ck_assert_uint_eq(tg_graph_size(g), 6);
    ck_assert(tg_graph_item_at(g, 2)->is_output);
    tg_graph_free(g);

    /* a lone leaf is a graph of one tensor */
    TG_OK_(tg_graph_build(&g, &b, 1));
    ck_assert_uint_eq(tg_graph_size(g), 1);
    ck_assert(tg_graph_item_at(g, 0)->is_output);
    tg_graph_free(g);

    ck_assert_int_eq(tg_graph_build(NULL, &y, 1), TG_ERR_ARG);
    ck_assert_int_eq(tg_graph_build(&g, &y, 0), TG_ERR_ARG);
    ck_assert_ptr_null(g);
    tg_tensor *nul = NULL;
    ck_assert_int_eq(tg_graph_build(&g, &nul, 1), TG_ERR_ARG);
    tg_graph_free(NULL);
    ck_assert_uint_eq(tg_graph_size(NULL), 0);
    tg_scope_pop(s);
}
END_TEST

/* The numbering depends only on structure: two identical graphs built at
 * different addresses give the same text. */
START_TEST(test_dot_stable_and_escaped)
{
    char *text[2];
    for (int k = 0; k < 2; k++) {
        tg_scope *s = tg_scope_push();
        if (k == 1) /* shift the allocations */
            (void)tg_zeros(TG_F64, TG_SHAPE(17, 5));
        tg_tensor *a = tg_ones(TG_F64, TG_SHAPE(2, 3));
        tg_tensor *b = tg_ones(TG_F64, TG_SHAPE(2, 3));
        TG_OK_(tg_set_requires_grad(a, true));
        TG_OK_(tg_tensor_set_name(a, "we\"ird\\name"));
        tg_tensor *y = pair(pair(a, b), a);
        tg_dot_opts o = TG_DOT_OPTS_INIT;
        o.graph_name = "g\"1";
        o.backward = true;
        o.rankdir_lr = true;
        text[k] = dot_text(&y, 1, &o);
        tg_scope_pop(s);
    }
    ck_assert_str_eq(text[0], text[1]);
    const char *t = text[0];
    ck_assert_ptr_nonnull(strstr(t, "digraph \"g\\\"1\" {\n"));
    ck_assert_ptr_nonnull(strstr(t, "rankdir=LR;"));
    ck_assert_ptr_nonnull(strstr(t, "label=\"we\\\"ird\\\\name\\n[2, 3] f64\""));
    ck_assert_ptr_nonnull(strstr(t, "op1 [label=\"test_pair\\nk=2 \\\"q\\\"\""));
    ck_assert_ptr_nonnull(strstr(t, "t2 -> op1;"));
    ck_assert_ptr_nonnull(strstr(t, "op1 -> t0;"));
    ck_assert_ptr_nonnull(strstr(t, "op1_bw [label=\"test_pair_backward\""));
    ck_assert_ptr_nonnull(strstr(t, "t0 -> op1_bw"));
    ck_assert_ptr_nonnull(strstr(t, "op1_bw -> op3_bw"));
    ck_assert_ptr_nonnull(strstr(t, "op1_bw -> grad_t4"));
    ck_assert_ptr_nonnull(strstr(t, "op3_bw -> grad_t4"));
    /* each backward op sits beside its forward op, each grad beside its parameter */
    ck_assert_ptr_nonnull(strstr(t, "{rank=same; op1; op1_bw;}"));
    ck_assert_ptr_nonnull(strstr(t, "{rank=same; t4; grad_t4;}"));
    ck_assert_ptr_nonnull(strstr(t, "op1_bw -> op3_bw [style=dashed, color=\"red\", "
                                    "constraint=false];"));
    ck_assert_ptr_null(strstr(t, "grad_t5")); /* b needs no grad */
    ck_assert_ptr_nonnull(strstr(t, "grad_t4 [label=\"grad we\\\"ird\\\\name"));
    ck_assert_ptr_null(strstr(t, "0x"));
    ck_assert(t[strlen(t) - 2] == '}');
    free(text[0]);
    free(text[1]);
}
END_TEST

START_TEST(test_dot_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *a = tg_ones(TG_F64, TG_SHAPE(2));
    ck_assert_int_eq(tg_dot_write(NULL, &a, 1, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_dot_write(stdout, NULL, 1, NULL), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_dot_write: argument 'outputs' is NULL");
    ck_assert_int_eq(tg_dot_write(stdout, &a, 0, NULL), TG_ERR_ARG);
    /* a write error is reported even when stdio buffered the text */
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        ck_assert_int_eq(tg_dot_write(full, &a, 1, NULL), TG_ERR_IO);
        TG_ASSERT_ERROR_HAS("tg_dot_write");
        fclose(full);
    }
    /* defaults: name "libtensor", top to bottom, no gradient flow */
    char *t = dot_text(&a, 1, NULL);
    ck_assert_ptr_nonnull(strstr(t, "digraph \"libtensor\" {"));
    ck_assert_ptr_nonnull(strstr(t, "rankdir=TB;"));
    ck_assert_ptr_null(strstr(t, "_bw"));
    free(t);
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ golden files */

START_TEST(test_dot_golden_mlp)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *loss = small_mlp();
    tg_dot_opts o = TG_DOT_OPTS_INIT;
    o.graph_name = "mlp";
    char *t = dot_text(&loss, 1, &o);
    ck_assert_ptr_null(strstr(t, "0x"));
    compare_golden("mlp.dot", t);
    free(t);

    o.backward = true;
    t = dot_text(&loss, 1, &o);
    ck_assert_ptr_null(strstr(t, "0x"));
    ck_assert_ptr_nonnull(strstr(t, "grad dense/kernel"));
    compare_golden("mlp_backward.dot", t);
    free(t);

    /* backward frees the saved state the labels are made from; the export must
     * not change */
    TG_OK_(tg_backward(loss));
    o.backward = false;
    t = dot_text(&loss, 1, &o);
    compare_golden("mlp.dot", t);
    free(t);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("dot");
    TCase *tc = tg_tcase("graph");
    tcase_add_test(tc, test_graph_numbering);
    suite_add_tcase(s, tc);

    tc = tg_tcase("dot");
    tcase_add_test(tc, test_dot_stable_and_escaped);
    tcase_add_test(tc, test_dot_errors);
    tcase_add_test(tc, test_dot_golden_mlp);
    suite_add_tcase(s, tc);
    return s;
}
