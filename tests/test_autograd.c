/* tests/test_autograd.c -- the autodiff engine: requires_grad rules, gradient
 * accumulation, grad mode, detach, freed graphs, error paths, no leaks, deep
 * graphs, and the public gradient checker (which must also catch a wrong op).
 * Test-only ops are built here through the private recording API. */
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"
#include "autograd/node_impl.h"

/* ------------------------------------------------------------ test-only ops */

/* y = x * x elementwise, with a deliberately wrong backward: 2 * (2 x g). */
static tg_status bad_square_backward(tg_node *node, tg_tensor *g, tg_tensor **grad_in)
{
    tg_tensor *x = node->inputs[0];
    tg_tensor *gx = tg_empty(tg_tensor_dtype(x), tg_tensor_ndim(x), tg_tensor_shape(x));
    if (!gx)
        return tg_last_status();
    for (int64_t i = 0; i < tg_tensor_numel(x); i++)
        tg_set_flat(gx, i, 2.0 * (2.0 * tg_get_flat(x, i) * tg_get_flat(g, i)));
    grad_in[0] = gx;
    return TG_OK;
}

/* Returns a gradient of the wrong shape (one element fewer along the last dim). */
static tg_status bad_shape_backward(tg_node *node, tg_tensor *g, tg_tensor **grad_in)
{
    tg_tensor *x = node->inputs[0];
    int64_t shape[TG_MAX_DIMS];
    int nd = tg_tensor_ndim(x);
    memcpy(shape, tg_tensor_shape(x), sizeof(int64_t) * (size_t)nd);
    shape[nd - 1] -= 1;
    grad_in[0] = tg_zeros(tg_tensor_dtype(x), nd, shape);
    return grad_in[0] ? TG_OK : tg_last_status();
}

/* Forgets to produce the gradient it must produce. */
static tg_status no_grad_backward(tg_node *node, tg_tensor *g, tg_tensor **grad_in)
{
    return TG_OK;
}

static const tg_op_vtable bad_square_op = {"test_bad_square", bad_square_backward, NULL, NULL, 0, 0};
static const tg_op_vtable bad_shape_op = {"test_bad_shape", bad_shape_backward, NULL, NULL, 0, 0};
static const tg_op_vtable no_grad_op = {"test_no_grad", no_grad_backward, NULL, NULL, 0, 0};

/* Applies a test op computing x * x (scoped reference). */
static tg_tensor *apply_square(const tg_op_vtable *op, tg_tensor *x)
{
    tg_tensor *y = tg_tensor_new_named("apply_square", tg_tensor_dtype(x), tg_tensor_ndim(x),
                                       tg_tensor_shape(x));
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < tg_tensor_numel(x); i++) {
        double v = tg_get_flat(x, i);
        tg_set_flat(y, i, v * v);
    }
    if (tg_autograd_should_record(&x, 1))
        ck_assert_ptr_nonnull(tg_autograd_record(y, op, &x, 1, NULL));
    return tg_scoped(y);
}

/* ------------------------------------------------------------ helpers */

static tg_tensor *vec_f64(int n, const double *v)
{
    tg_tensor *t = tg_from_data(TG_F64, 1, (const int64_t[]){n}, v);
    TG_CHECK(t != NULL);
    return t;
}

static tg_tensor *leaf_f64(int n, const double *v)
{
    tg_tensor *t = vec_f64(n, v);
    TG_OK_(tg_set_requires_grad(t, true));
    return t;
}

static void assert_grad(const tg_tensor *x, const double *expect, double tol)
{
    tg_tensor *g = tg_grad(x);
    ck_assert_msg(g != NULL, "no grad");
    ck_assert_int_eq(tg_tensor_numel(g), tg_tensor_numel(x));
    for (int64_t i = 0; i < tg_tensor_numel(g); i++)
        TG_ASSERT_CLOSE(tg_get_flat(g, i), expect[i], tol, tol);
}

static const double X3[3] = {1.0, -2.0, 3.5};

/* ------------------------------------------------------------ requires_grad */

START_TEST(test_requires_grad_rules)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = vec_f64(3, X3);
    ck_assert(!tg_requires_grad(x));
    ck_assert(tg_is_leaf(x));
    ck_assert_ptr_null(tg_grad(x));
    TG_OK_(tg_set_requires_grad(x, true));
    ck_assert(tg_requires_grad(x));

    tg_tensor *lab = tg_zeros(TG_I64, TG_SHAPE(3));
    ck_assert_int_eq(tg_set_requires_grad(lab, true), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("tg_set_requires_grad");
    ck_assert(!tg_requires_grad(lab));
    TG_OK_(tg_set_requires_grad(lab, false)); /* turning it off is always fine */

    tg_tensor *y = tg_mul(x, x);
    TG_CHECK(y != NULL);
    ck_assert(tg_requires_grad(y));
    ck_assert(!tg_is_leaf(y));
    ck_assert_ptr_nonnull(tg_tensor_grad_fn(y));
    ck_assert_str_eq(tg_tensor_grad_fn(y)->op->name, "mul");
    ck_assert_int_eq(tg_set_requires_grad(y, false), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("not a leaf");
    ck_assert(tg_requires_grad(y));

    /* an op on tensors that need no grad records nothing */
    tg_tensor *c = vec_f64(3, X3);
    tg_tensor *z = tg_mul(c, c);
    ck_assert(!tg_requires_grad(z));
    ck_assert(tg_is_leaf(z));

    ck_assert_int_eq(tg_set_requires_grad(NULL, true), TG_ERR_ARG);
    ck_assert(!tg_requires_grad(NULL));
    ck_assert(!tg_is_leaf(NULL));
    ck_assert_int_eq(tg_zero_grad(NULL), TG_ERR_ARG);
    ck_assert_ptr_null(tg_detach(NULL));
    ck_assert_ptr_null(tg_tensor_grad_fn(NULL));
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_sequence_counts_records)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    uint64_t t0 = tg_autograd_sequence();
    tg_tensor *y = tg_mul(x, x);
    tg_tensor *z = tg_add(y, x);
    TG_CHECK(z != NULL);
    ck_assert_uint_eq(tg_autograd_sequence(), t0 + 2);
    ck_assert_uint_gt(tg_tensor_grad_fn(z)->seq, tg_tensor_grad_fn(y)->seq);
    ck_assert_int_eq(tg_tensor_grad_fn(z)->n_inputs, 2);
    ck_assert(tg_node_needs_grad(tg_tensor_grad_fn(z), 0));
    ck_assert(!tg_node_needs_grad(tg_tensor_grad_fn(z), 2));
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ gradients */

START_TEST(test_grad_of_square)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_tensor *y = tg_sum(tg_mul(x, x), NULL, 0, false);
    TG_CHECK(y != NULL);
    TG_ASSERT_CLOSE(tg_item(y), 1 + 4 + 12.25, 1e-12, 1e-12);
    TG_OK_(tg_backward(y));
    double e[3] = {2 * X3[0], 2 * X3[1], 2 * X3[2]};
    assert_grad(x, e, 1e-12);
    ck_assert(tg_tensor_is_contiguous(tg_grad(x)));
    ck_assert_ptr_null(tg_grad(y)); /* non-leaves keep no grad */
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_used_twice_sums_paths)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    /* a leaf used by two ops: d/dx sum(x*x + 3x) = 2x + 3 */
    tg_tensor *y = tg_sum(tg_add(tg_mul(x, x), tg_mul_scalar(x, 3.0)), NULL, 0, false);
    TG_OK_(tg_backward(y));
    double e[3];
    for (int i = 0; i < 3; i++)
        e[i] = 2 * X3[i] + 3;
    assert_grad(x, e, 1e-12);

    /* an intermediate used twice: h = tanh(w), d/dw sum(h*h + h) = (2h + 1)(1 - h^2) */
    tg_tensor *w = leaf_f64(3, X3);
    tg_tensor *h = tg_tanh(w);
    tg_tensor *z = tg_sum(tg_add(tg_mul(h, h), h), NULL, 0, false);
    TG_OK_(tg_backward(z));
    for (int i = 0; i < 3; i++) {
        double th = tanh(X3[i]);
        e[i] = (2 * th + 1) * (1 - th * th);
    }
    assert_grad(w, e, 1e-12);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_accumulate_then_zero_grad)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    TG_OK_(tg_zero_grad(x)); /* no grad yet: a no-op */
    ck_assert_ptr_null(tg_grad(x));
    for (int k = 0; k < 2; k++)
        TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    double e[3] = {4 * X3[0], 4 * X3[1], 4 * X3[2]};
    assert_grad(x, e, 1e-12);

    tg_tensor *g = tg_grad(x);
    const void *buf = tg_tensor_data(g);
    uint64_t v = tg_tensor_version(g);
    TG_OK_(tg_zero_grad(x));
    ck_assert_ptr_eq(tg_grad(x), g); /* same tensor, same buffer: no allocation */
    ck_assert_ptr_eq(tg_tensor_data(g), buf);
    ck_assert_uint_gt(tg_tensor_version(g), v);
    double zero[3] = {0, 0, 0};
    assert_grad(x, zero, 0);

    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    double e2[3] = {2 * X3[0], 2 * X3[1], 2 * X3[2]};
    assert_grad(x, e2, 1e-12);
    ck_assert_ptr_eq(tg_tensor_data(tg_grad(x)), buf);

    /* zeroed and not read before the next backward (the engine then copies the
     * first contribution in): one backward gives it, a second adds to it */
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    assert_grad(x, e2, 1e-12);
    TG_OK_(tg_zero_grad(x));
    for (int k = 0; k < 2; k++)
        TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    assert_grad(x, e, 1e-12);
    ck_assert_ptr_eq(tg_tensor_data(tg_grad(x)), buf);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_f32_grad)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F32, TG_SHAPE(2, 2), (const float[]){1, 2, 3, 4});
    TG_OK_(tg_set_requires_grad(x, true));
    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    ck_assert_int_eq(tg_tensor_dtype(tg_grad(x)), TG_F32);
    double e[4] = {2, 4, 6, 8};
    assert_grad(x, e, 1e-6);
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ grad mode, detach */

START_TEST(test_no_grad_records_nothing)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    ck_assert(tg_grad_enabled());
    uint64_t t0 = tg_autograd_sequence();
    bool prev = tg_set_grad_enabled(false);
    ck_assert(prev);
    ck_assert(!tg_grad_enabled());
    tg_tensor *y = tg_sum(tg_mul(x, x), NULL, 0, false);
    TG_CHECK(y != NULL);
    ck_assert(!tg_requires_grad(y));
    ck_assert(tg_is_leaf(y));
    ck_assert_uint_eq(tg_autograd_sequence(), t0);
    ck_assert(!tg_set_grad_enabled(prev));
    ck_assert(tg_grad_enabled());
    ck_assert_int_eq(tg_backward(y), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("does not require grad");
    ck_assert_ptr_null(tg_grad(x));
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_detach_stops_gradient)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_tensor *sq = tg_mul(x, x);
    tg_tensor *d = tg_detach(sq);
    TG_CHECK(d != NULL);
    ck_assert(!tg_requires_grad(d));
    ck_assert(tg_is_leaf(d));
    ck_assert(tg_tensor_shares_storage(d, sq));
    ck_assert(tg_requires_grad(sq)); /* the original keeps its history */
    /* d/dx sum(detach(x*x) * x) = x*x, not 3 x^2 */
    TG_OK_(tg_backward(tg_sum(tg_mul(d, x), NULL, 0, false)));
    double e[3] = {X3[0] * X3[0], X3[1] * X3[1], X3[2] * X3[2]};
    assert_grad(x, e, 1e-12);
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ freed graphs */

START_TEST(test_backward_twice_needs_retain_graph)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_tensor *y = tg_sum(tg_mul(x, x), NULL, 0, false);
    TG_OK_(tg_backward(y));
    ck_assert(tg_tensor_grad_fn(y)->released);
    ck_assert_int_eq(tg_backward(y), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("tg_backward: backward through a graph whose saved state was "
                        "already freed");
    TG_ASSERT_ERROR_HAS("retain_graph");
    TG_ASSERT_ERROR_HAS("'sum'");
    ck_assert(tg_grad_enabled());
    double e[3] = {2 * X3[0], 2 * X3[1], 2 * X3[2]};
    assert_grad(x, e, 1e-12); /* the failed call changed nothing */

    tg_tensor *w = leaf_f64(3, X3);
    tg_tensor *z = tg_sum(tg_mul(w, w), NULL, 0, false);
    tg_backward_opts o = TG_BACKWARD_OPTS_INIT;
    o.retain_graph = true;
    TG_OK_(tg_backward_ex(z, &o));
    ck_assert(!tg_tensor_grad_fn(z)->released);
    TG_OK_(tg_backward_ex(z, &o));
    double e2[3] = {4 * X3[0], 4 * X3[1], 4 * X3[2]};
    assert_grad(w, e2, 1e-12);
    TG_OK_(tg_backward(z)); /* a last pass may free it */
    ck_assert_int_eq(tg_backward(z), TG_ERR_STATE);
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ grad_output */

START_TEST(test_grad_output_rules)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_tensor *y = tg_mul(x, x);
    ck_assert_int_eq(tg_backward(y), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("grad_output");
    ck_assert_ptr_null(tg_grad(x));

    tg_backward_opts o = TG_BACKWARD_OPTS_INIT;
    o.retain_graph = true;
    o.grad_output = tg_ones(TG_F64, TG_SHAPE(2));
    ck_assert_int_eq(tg_backward_ex(y, &o), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("[2]");
    TG_ASSERT_ERROR_HAS("[3]");
    o.grad_output = tg_ones(TG_F32, TG_SHAPE(3));
    ck_assert_int_eq(tg_backward_ex(y, &o), TG_ERR_DTYPE);
    ck_assert_ptr_null(tg_grad(x));

    const double go[3] = {1.0, 0.5, -2.0};
    o.grad_output = vec_f64(3, go);
    TG_OK_(tg_backward_ex(y, &o));
    double e[3];
    for (int i = 0; i < 3; i++)
        e[i] = 2 * X3[i] * go[i];
    assert_grad(x, e, 1e-12);
    /* the caller's grad_output is not modified */
    for (int i = 0; i < 3; i++)
        TG_ASSERT_CLOSE(tg_get_flat(o.grad_output, i), go[i], 0, 0);

    ck_assert_int_eq(tg_backward(NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_backward_ex(NULL, &o), TG_ERR_ARG);
    /* a leaf output simply receives the seed */
    tg_tensor *one = leaf_f64(1, X3);
    TG_OK_(tg_backward(one));
    TG_ASSERT_CLOSE(tg_get_flat(tg_grad(one), 0), 1.0, 0, 0);
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ memory */

START_TEST(test_live_objects_after_backward)
{
    int64_t base = tg_live_objects();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(3), X3); /* no scope: ours */
    TG_OK_(tg_set_requires_grad(x, true));
    int64_t with_x = tg_live_objects();
    ck_assert_int_gt(with_x, base);

    tg_scope *s = tg_scope_push();
    tg_tensor *h = tg_tanh(x);
    tg_tensor *y = tg_sum(tg_add(tg_mul(h, h), h), NULL, 0, false);
    TG_OK_(tg_backward(y));
    tg_scope_pop(s);
    /* only x and its new grad (a tensor and its storage) remain */
    ck_assert_int_eq(tg_live_objects(), with_x + 2);

    s = tg_scope_push();
    y = tg_sum(tg_mul(x, x), NULL, 0, false);
    TG_OK_(tg_backward(y)); /* the second pass allocates no new grad */
    tg_scope_pop(s);
    ck_assert_int_eq(tg_live_objects(), with_x + 2);

    tg_release(x);
    ck_assert_int_eq(tg_live_objects(), base);
}
END_TEST

START_TEST(test_graph_kept_alive_by_output_only)
{
    int64_t base = tg_live_objects();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(3), X3);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_scope *s = tg_scope_push();
    tg_tensor *y = tg_scope_keep(tg_sum(tg_tanh(tg_mul(x, x)), NULL, 0, false));
    tg_scope_pop(s);
    /* the intermediates live on through the nodes: backward still works */
    TG_OK_(tg_backward(y));
    ck_assert_ptr_nonnull(tg_grad(x));
    tg_release(y);
    tg_release(x);
    ck_assert_int_eq(tg_live_objects(), base);
}
END_TEST

/* A long chain: recording, backward and freeing must not recurse per node. */
START_TEST(test_deep_chain)
{
    enum { DEPTH = 300000 };
    int64_t base = tg_live_objects();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(2), (const double[]){1.0, 2.0});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_retain(x);
    for (int i = 0; i < DEPTH; i++) { /* no scope: each result is ours */
        tg_tensor *next = tg_add_scalar(y, 1e-3);
        TG_CHECK(next != NULL);
        tg_release(y);
        y = next;
    }
    tg_tensor *l = tg_sum(y, NULL, 0, false);
    tg_release(y);
    TG_OK_(tg_backward(l));
    double e[2] = {1.0, 1.0};
    assert_grad(x, e, 1e-12);
    tg_release(l); /* frees the whole chain */
    tg_release(x);
    ck_assert_int_eq(tg_live_objects(), base);
}
END_TEST

/* ------------------------------------------------------------ buggy ops */

START_TEST(test_engine_rejects_wrong_grad_shape)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(2, 3));
    TG_OK_(tg_set_requires_grad(x, true));
    tg_tensor *y = tg_sum(apply_square(&bad_shape_op, x), NULL, 0, false);
    ck_assert_int_eq(tg_backward(y), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("test_bad_shape");
    TG_ASSERT_ERROR_HAS("[2, 2]");
    TG_ASSERT_ERROR_HAS("[2, 3]");
    ck_assert_ptr_null(tg_grad(x));
    ck_assert(tg_grad_enabled());
    ck_assert_int_eq(tg_scope_depth(), 1);

    tg_tensor *z = tg_sum(apply_square(&no_grad_op, x), NULL, 0, false);
    ck_assert_int_eq(tg_backward(z), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("test_no_grad");
    TG_ASSERT_ERROR_HAS("no gradient");
    ck_assert(tg_grad_enabled());
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_record_rejects_bad_use)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_tensor *y = tg_mul(x, x);
    /* y already has a producer */
    ck_assert_ptr_null(tg_autograd_record(y, &bad_square_op, &x, 1, malloc(16)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_STATE);
    /* an op may not record its input as its output (it would make a cycle) */
    tg_tensor *w = leaf_f64(3, X3);
    ck_assert_ptr_null(tg_autograd_record(w, &bad_square_op, &w, 1, NULL));
    ck_assert(tg_is_leaf(w));
    ck_assert(!tg_autograd_should_record(NULL, 0));
    tg_tensor *none[2] = {NULL, vec_f64(3, X3)};
    ck_assert(!tg_autograd_should_record(none, 2));
    none[0] = x;
    ck_assert(tg_autograd_should_record(none, 2));
    tg_scope_pop(s);
}
END_TEST

/* ------------------------------------------------------------ gradcheck */

static tg_tensor *composite(tg_tensor *const *in, int n, void *ctx)
{
    return tg_add(tg_tanh(tg_matmul(in[0], in[1])), tg_mul(in[0], in[0]));
}

static tg_tensor *bad_square_fn(tg_tensor *const *in, int n, void *ctx)
{
    return tg_mul_scalar(apply_square(&bad_square_op, in[0]), 1.0);
}

static tg_tensor *failing_fn(tg_tensor *const *in, int n, void *ctx)
{
    int *calls = ctx;
    if (++*calls > 1) /* fails on the first perturbed evaluation */
        return tg_mul(in[0], tg_zeros(TG_F64, TG_SHAPE(7)));
    return tg_mul(in[0], in[0]);
}

START_TEST(test_gradcheck_passes_composite)
{
    tg_scope *s = tg_scope_push();
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_tensor *in[2] = {tg_rand_uniform(TG_F64, TG_SHAPE(3, 4), -1, 1, &rng),
                        tg_rand_uniform(TG_F64, TG_SHAPE(4, 4), -1, 1, &rng)};
    TG_OK_(tg_set_requires_grad(in[0], true));
    TG_OK_(tg_set_requires_grad(in[1], true));
    tg_tensor *before = tg_tensor_copy(in[0]);

    tg_gradcheck_report rep;
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    o.label = "tanh(x@w)+x*x";
    TG_OK_(tg_gradcheck(&rep, composite, NULL, in, 2, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_int_eq(rep.checked, 12 + 16);
    ck_assert_str_eq(rep.op, "add");
    ck_assert_ptr_nonnull(strstr(rep.message, "tanh(x@w)+x*x"));
    ck_assert_ptr_nonnull(strstr(rep.message, "passed"));
    ck_assert(rep.max_abs_err < 1e-7);
    for (int64_t i = 0; i < 12; i++) /* restored exactly */
        ck_assert(tg_get_flat(in[0], i) == tg_get_flat(before, i));
    for (int k = 0; k < 2; k++) { /* grads left zeroed */
        tg_tensor *g = tg_grad(in[k]);
        ck_assert_ptr_nonnull(g);
        for (int64_t i = 0; i < tg_tensor_numel(g); i++)
            ck_assert(tg_get_flat(g, i) == 0.0);
    }

    /* only inputs that require grad are checked */
    TG_OK_(tg_set_requires_grad(in[1], false));
    TG_OK_(tg_gradcheck(&rep, composite, NULL, in, 2, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_int_eq(rep.checked, 12);
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_gradcheck_directional_f32)
{
    tg_scope *s = tg_scope_push();
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    tg_tensor *in[2] = {tg_rand_uniform(TG_F32, TG_SHAPE(3, 4), -1, 1, &rng),
                        tg_rand_uniform(TG_F32, TG_SHAPE(4, 4), -1, 1, &rng)};
    TG_OK_(tg_set_requires_grad(in[0], true));
    TG_OK_(tg_set_requires_grad(in[1], true));
    tg_gradcheck_report rep;
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_F32_INIT;
    TG_OK_(tg_gradcheck(&rep, composite, NULL, in, 2, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_int_eq(rep.checked, 8);
    ck_assert_ptr_nonnull(strstr(rep.message, "direction"));
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_gradcheck_catches_wrong_backward)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(2, 2), (const double[]){0.5, -1.0, 2.0, 1.5});
    TG_OK_(tg_set_requires_grad(x, true));
    tg_gradcheck_report rep;
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    o.label = "bad square";
    TG_OK_(tg_gradcheck(&rep, bad_square_fn, NULL, &x, 1, &o));
    ck_assert(!rep.passed);
    ck_assert_int_eq(rep.checked, 4);
    ck_assert_int_eq(rep.worst_input, 0);
    ck_assert(rep.worst_index >= 0 && rep.worst_index < 4);
    /* the analytic gradient is twice the numeric one */
    TG_ASSERT_CLOSE(rep.worst_analytic, 2 * rep.worst_numeric, 1e-5, 1e-5);
    ck_assert(rep.max_rel_err > 0.4);
    ck_assert_str_eq(rep.op, "mul_scalar");
    ck_assert_ptr_nonnull(strstr(rep.message, "FAILED"));
    ck_assert_ptr_nonnull(strstr(rep.message, "bad square"));
    ck_assert_ptr_nonnull(strstr(rep.message, "input 0"));

    /* checked directly, the report names the faulty op itself */
    o.mode = TG_GRADCHECK_DIRECTIONAL;
    o.n_directions = 3;
    TG_OK_(tg_gradcheck(&rep, bad_square_fn, NULL, &x, 1, &o));
    ck_assert(!rep.passed);
    ck_assert_int_eq(rep.checked, 3);
    tg_scope_pop(s);
}
END_TEST

static tg_tensor *bad_square_only(tg_tensor *const *in, int n, void *ctx)
{
    return apply_square(&bad_square_op, in[0]);
}

START_TEST(test_gradcheck_names_op)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_data(TG_F64, TG_SHAPE(3), X3);
    TG_OK_(tg_set_requires_grad(x, true));
    tg_gradcheck_report rep;
    TG_OK_(tg_gradcheck(&rep, bad_square_only, NULL, &x, 1, NULL));
    ck_assert(!rep.passed);
    ck_assert_str_eq(rep.op, "test_bad_square");
    ck_assert_ptr_nonnull(strstr(rep.message, "test_bad_square"));
    tg_scope_pop(s);
}
END_TEST

START_TEST(test_gradcheck_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    tg_gradcheck_report rep;
    ck_assert_int_eq(tg_gradcheck(NULL, composite, NULL, &x, 1, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_gradcheck(&rep, NULL, NULL, &x, 1, NULL), TG_ERR_ARG);

    tg_tensor *y = tg_mul(x, x); /* not a leaf */
    ck_assert_int_eq(tg_gradcheck(&rep, composite, NULL, &y, 1, NULL), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("not a leaf");
    ck_assert(!rep.passed);

    tg_tensor *c = vec_f64(3, X3); /* nothing requires grad */
    ck_assert_int_eq(tg_gradcheck(&rep, composite, NULL, &c, 1, NULL), TG_ERR_ARG);

    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    o.eps = 0;
    ck_assert_int_eq(tg_gradcheck(&rep, composite, NULL, &x, 1, &o), TG_ERR_ARG);
    o = (tg_gradcheck_opts)TG_GRADCHECK_OPTS_INIT;
    o.mode = TG_GRADCHECK_DIRECTIONAL; /* n_directions 0 */
    ck_assert_int_eq(tg_gradcheck(&rep, composite, NULL, &x, 1, &o), TG_ERR_ARG);

    /* fn failing: its error comes back, the inputs are restored, no scope is left */
    int calls = 0;
    tg_status st = tg_gradcheck(&rep, failing_fn, &calls, &x, 1, NULL);
    ck_assert_int_eq(st, TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_gradcheck(function): fn failed on perturbed inputs: tg_mul");
    ck_assert(!rep.passed);
    for (int i = 0; i < 3; i++)
        ck_assert(tg_get_flat(x, i) == X3[i]);
    ck_assert_int_eq(tg_scope_depth(), 1);
    ck_assert(tg_grad_enabled());

    /* an input with no element: nothing to compare, and the report says so */
    tg_tensor *e = tg_zeros(TG_F64, TG_SHAPE(0, 2));
    TG_OK_(tg_set_requires_grad(e, true));
    TG_OK_(tg_gradcheck(&rep, composite, NULL, (tg_tensor *[]){e, tg_zeros(TG_F64, TG_SHAPE(2, 2))},
                        2, NULL));
    ck_assert_int_eq(rep.checked, 0);
    ck_assert_msg(strstr(rep.message, "nothing compared") != NULL, "%s", rep.message);
    tg_scope_pop(s);
}
END_TEST

/* ================================================================ the zero mark */

/* tg_zero_grad marks the leaf (autograd's grad_zero_pending) instead of writing
 * the zeros; the core storage carries no mark. */
START_TEST(test_zero_mark_is_on_the_leaf)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    tg_tensor *g = tg_grad(x);
    TG_OK_(tg_zero_grad(x));
    ck_assert(x->grad_zero_pending);
    ck_assert_ptr_null(g->storage->layout);
    /* nothing written yet: the buffer still holds the old gradient */
    ck_assert(((const double *)g->storage->data)[2] == 2 * X3[2]);
    /* the user's read sees zeros, written then, and the mark is gone */
    ck_assert_ptr_eq(tg_grad(x), g);
    ck_assert(!x->grad_zero_pending);
    double zero[3] = {0, 0, 0};
    assert_grad(x, zero, 0);
    tg_scope_pop(s);
}
END_TEST

/* The first contribution after tg_zero_grad replaces the old values (it is
 * copied in, not added to them), through every kind of path: a plain backward,
 * a gradient reached twice, a leaf reached by no path (its zeros). */
START_TEST(test_zero_mark_first_contribution)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3), *u = leaf_f64(3, X3);
    TG_OK_(tg_backward(tg_sum(tg_add(tg_mul(x, x), u), NULL, 0, false)));
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_zero_grad(u));
    /* x used twice, u not at all */
    TG_OK_(tg_backward(tg_sum(tg_add(tg_mul_scalar(x, 3.0), tg_mul_scalar(x, 0.5)), NULL, 0,
                              false)));
    ck_assert(!x->grad_zero_pending);
    ck_assert(u->grad_zero_pending); /* untouched by that backward */
    double e[3] = {3.5, 3.5, 3.5}, zero[3] = {0, 0, 0};
    assert_grad(x, e, 1e-12);
    assert_grad(u, zero, 0);
    /* zero_grad twice in a row, then one backward */
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_zero_grad(x));
    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    double e2[3] = {2 * X3[0], 2 * X3[1], 2 * X3[2]};
    assert_grad(x, e2, 1e-12);
    tg_scope_pop(s);
}
END_TEST

/* A gradient someone else holds (a retained reference, a view of its
 * storage) cannot wait for tg_grad: tg_zero_grad writes its zeros at once. */
START_TEST(test_zero_mark_shared_grad_written_at_once)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = leaf_f64(3, X3);
    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    tg_tensor *g = tg_retain(tg_grad(x));
    TG_OK_(tg_zero_grad(x));
    ck_assert(!x->grad_zero_pending);
    for (int64_t i = 0; i < 3; i++)
        ck_assert(tg_get(g, (int64_t[]){i}) == 0.0);
    tg_release(g);

    TG_OK_(tg_backward(tg_sum(tg_mul(x, x), NULL, 0, false)));
    tg_tensor *d = tg_detach(tg_grad(x)); /* shares the grad's storage */
    TG_OK_(tg_zero_grad(x));
    ck_assert(!x->grad_zero_pending);
    for (int64_t i = 0; i < 3; i++)
        ck_assert(tg_get(d, (int64_t[]){i}) == 0.0);
    tg_scope_pop(s);
}
END_TEST

/* ================================================================ saved versions */

/* The ways a user can write into a tensor that a recorded op saved. */
enum { MUT_FILL, MUT_SET, MUT_COPY_INTO, MUT_RAW, MUT_VIEW, MUT_BASE, MUT_COUNT };

/* Writes 9 into element 0 (or all) of x by the mutator m; x is f64 [2]. */
static void mutate(int m, tg_tensor *x, tg_tensor *base)
{
    switch (m) {
    case MUT_FILL: TG_OK_(tg_tensor_fill(x, 9.0)); break;
    case MUT_SET: TG_OK_(tg_set(x, (const int64_t[]){0}, 9.0)); break;
    case MUT_COPY_INTO: TG_OK_(tg_tensor_copy_into(x, vec_f64(2, (const double[]){9, 9})));
        break;
    case MUT_RAW: {
        double *p = tg_tensor_data(x); /* the writable accessor bumps the version */
        TG_CHECK(p != NULL);
        p[0] = 9.0;
        break;
    }
    case MUT_VIEW: /* a view shares x's storage, and so its version */
        TG_OK_(tg_tensor_fill(tg_slice(tg_detach(x), 0, 1, 2), 9.0));
        break;
    case MUT_BASE: /* x is itself a view: write its base */
        TG_OK_(tg_set(base, (const int64_t[]){0, 0}, 9.0));
        break;
    }
}

/* l = sum(w * x), then x written: backward refuses, names the op, the input,
 * its shape and the versions, and changes no gradient. */
START_TEST(test_backward_refuses_changed_saved_input)
{
    int m = _i;
    tg_scope *s = tg_scope_push();
    tg_tensor *w = leaf_f64(2, (const double[]){1, 2});
    /* x: a [2] view of row 0 of a [2, 2] base (the MUT_BASE case needs one) */
    tg_tensor *base = tg_from_data(TG_F64, TG_SHAPE(2, 2), (const double[]){3, 4, 5, 6});
    tg_tensor *x = tg_reshape(tg_slice(base, 0, 0, 1), TG_SHAPE(2));
    TG_CHECK(x != NULL);
    TG_OK_(tg_backward(tg_sum(tg_mul(w, x), NULL, 0, false)));
    assert_grad(w, (const double[]){3, 4}, 0);
    tg_tensor *l = tg_sum(tg_mul(w, x), NULL, 0, false);
    TG_CHECK(l != NULL);
    uint64_t v0 = tg_tensor_version(x);
    mutate(m, x, base);
    ck_assert_msg(tg_tensor_version(x) != v0, "mutator %d left the version", m);
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("input 1 ([2] f64) of op 'mul' (tg_mul) was written after the op "
                        "saved it");
    char want[128];
    snprintf(want, sizeof want, "its version is %llu, the op saved version %llu",
             (unsigned long long)tg_tensor_version(x), (unsigned long long)v0);
    TG_ASSERT_ERROR_HAS(want);
    assert_grad(w, (const double[]){3, 4}, 0); /* not [3, 4] + anything */
    /* recomputed from the new values, backward runs */
    TG_OK_(tg_zero_grad(w));
    TG_OK_(tg_backward(tg_sum(tg_mul(w, x), NULL, 0, false)));
    double x0 = m == MUT_VIEW ? 3.0 : 9.0;
    double x1 = m == MUT_FILL || m == MUT_COPY_INTO || m == MUT_VIEW ? 9.0 : 4.0;
    assert_grad(w, (const double[]){x0, x1}, 0);
    tg_scope_pop(s);
}
END_TEST

/* The tensor's name, when it has one, is in the message; the first input of an
 * op counts as well as the second. */
START_TEST(test_backward_refuses_changed_leaf_by_name)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *w = leaf_f64(2, (const double[]){1, 2});
    TG_OK_(tg_tensor_set_name(w, "dense/kernel"));
    tg_tensor *l = tg_sum(tg_mul(w, w), NULL, 0, false);
    TG_OK_(tg_tensor_fill(w, 0.5)); /* an optimizer step before backward */
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("input 0 ('dense/kernel' [2] f64) of op 'mul'");
    ck_assert_ptr_null(tg_grad(w));
    tg_scope_pop(s);
}
END_TEST

/* An op that saved a view of its output (exp: d exp = exp) refuses when the
 * output was written. */
START_TEST(test_backward_refuses_changed_saved_output)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *w = leaf_f64(2, (const double[]){0, 1});
    tg_tensor *y = tg_exp(w);
    tg_tensor *l = tg_sum(y, NULL, 0, false);
    TG_OK_(tg_tensor_fill(y, 1.0));
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    TG_ASSERT_ERROR_HAS("the output ([2] f64) of op 'exp' (tg_exp) was written after");
    ck_assert_ptr_null(tg_grad(w));
    tg_scope_pop(s);
}
END_TEST

/* What is legitimate goes through: writing an input an op reads only the shape
 * of (add, sum), reading through the read-only accessor, tg_get, printing, and
 * writing after backward (an optimizer step) before the next forward. */
START_TEST(test_versions_allow_legitimate_use)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *w = leaf_f64(2, (const double[]){1, 2});
    tg_tensor *x = vec_f64(2, (const double[]){3, 4});
    tg_tensor *l = tg_sum(tg_add(tg_mul_scalar(w, 2.0), x), NULL, 0, false);
    TG_OK_(tg_tensor_fill(x, 7.0)); /* add needs only x's shape */
    uint64_t v = tg_tensor_version(w);
    const double *r = tg_tensor_data_ro(w);
    ck_assert(r[1] == 2.0 && tg_get(w, (const int64_t[]){0}) == 1.0);
    char *str = tg_tensor_to_string(w);
    free(str);
    ck_assert(tg_tensor_version(w) == v); /* reads change no version */
    TG_OK_(tg_backward(l));
    assert_grad(w, (const double[]){2, 2}, 0);
    /* a step after backward, then a new forward and backward */
    for (int step = 0; step < 3; step++) {
        double *p = tg_tensor_data(w);
        p[0] -= 0.1, p[1] -= 0.1;
        TG_OK_(tg_zero_grad(w));
        TG_OK_(tg_backward(tg_sum(tg_mul(w, x), NULL, 0, false)));
        assert_grad(w, (const double[]){7, 7}, 0);
    }
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- custom functions */

/* swish(x) = x * sigmoid(x), defined with its own backward. */
static tg_tensor *swish_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    if (tg_function_save(ctx, in[0]) != TG_OK)
        return NULL;
    (*(int *)tg_function_data(ctx))++; /* the data block is the call's own */
    return tg_mul(in[0], tg_sigmoid(in[0]));
}

static tg_status swish_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
{
    ck_assert_int_eq(*(int *)tg_function_data(ctx), 1);
    tg_tensor *x = tg_function_saved(ctx, 0), *s = tg_sigmoid(x);
    gin[0] = tg_mul(g, tg_add(s, tg_mul(tg_mul(x, s), tg_add_scalar(tg_neg(s), 1.0))));
    return gin[0] ? TG_OK : tg_last_status();
}

static const tg_function_def swish_def = {"swish", swish_fwd, swish_bwd, sizeof(int)};

/* a * b^2 with a saved output and a user scale: d/da = s b^2, d/db = 2 s a b;
 * the backward gives only the gradients asked for. */
static tg_tensor *scaled_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    if (tg_function_save_output(ctx) != TG_OK)
        return NULL;
    return tg_mul_scalar(tg_mul(in[0], tg_mul(in[1], in[1])), *(const double *)user);
}

static tg_status scaled_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
{
    double sc = *(const double *)tg_function_user(ctx);
    tg_tensor *a = tg_function_input(ctx, 0), *b = tg_function_input(ctx, 1);
    TG_CHECK(tg_function_saved_output(ctx) != NULL);
    if (tg_function_needs_grad(ctx, 0))
        gin[0] = tg_mul_scalar(tg_mul(g, tg_mul(b, b)), sc);
    if (tg_function_needs_grad(ctx, 1))
        gin[1] = tg_mul_scalar(tg_mul(g, tg_mul(a, b)), 2.0 * sc);
    return TG_OK;
}

static const tg_function_def scaled_def = {"scaled", scaled_fwd, scaled_bwd, 0};

static tg_tensor *swish_gc(tg_tensor *const *in, int n, void *ctx)
{
    return tg_function_apply(&swish_def, in, 1, NULL);
}

static tg_tensor *scaled_gc(tg_tensor *const *in, int n, void *ctx)
{
    return tg_function_apply(&scaled_def, in, 2, ctx);
}

START_TEST(test_custom_function)
{
    tg_scope *s = tg_scope_push();
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    tg_tensor *x = tg_rand_uniform(TG_F64, TG_SHAPE(3, 4), -3, 3, &rng);
    TG_OK_(tg_set_requires_grad(x, true));
    uint64_t before = tg_autograd_sequence();
    tg_tensor *y = tg_function_apply(&swish_def, &x, 1, NULL);
    TG_CHECK(y);
    /* one node for the whole function, labelled with its name */
    ck_assert_int_eq(tg_autograd_sequence() - before, 1);
    TG_ASSERT_TENSOR_CLOSE(y, tg_mul(x, tg_sigmoid(x)), 1e-15, 0.0);
    tg_gradcheck_report rep;
    tg_gradcheck_opts o = TG_GRADCHECK_OPTS_INIT;
    TG_OK_(tg_gradcheck(&rep, swish_gc, NULL, &x, 1, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_str_eq(rep.op, "function");
    ck_assert_int_eq(rep.checked, 12);

    /* two inputs, a user pointer, the saved output; with one input frozen the
     * backward is asked for one gradient only */
    double scale = 1.5;
    tg_tensor *ab[2] = {tg_rand_uniform(TG_F64, TG_SHAPE(2, 3), -2, 2, &rng),
                        tg_rand_uniform(TG_F64, TG_SHAPE(2, 3), -2, 2, &rng)};
    TG_OK_(tg_set_requires_grad(ab[0], true));
    TG_OK_(tg_set_requires_grad(ab[1], true));
    TG_OK_(tg_gradcheck(&rep, scaled_gc, &scale, ab, 2, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_int_eq(rep.checked, 12);
    TG_OK_(tg_set_requires_grad(ab[0], false));
    TG_OK_(tg_gradcheck(&rep, scaled_gc, &scale, ab, 2, &o));
    ck_assert_msg(rep.passed, "%s", rep.message);
    ck_assert_int_eq(rep.checked, 6);

    /* without grad mode nothing is recorded and the result is a plain tensor */
    bool prev = tg_set_grad_enabled(false);
    before = tg_autograd_sequence();
    tg_tensor *z = tg_function_apply(&swish_def, &x, 1, NULL);
    tg_set_grad_enabled(prev);
    TG_CHECK(z);
    ck_assert_int_eq(tg_autograd_sequence(), before);
    ck_assert(tg_is_leaf(z));
    tg_scope_pop(s);
}
END_TEST

/* Returns its input: the output must still be a tensor of its own. */
static tg_tensor *ident_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    return in[0];
}

static tg_status ident_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
{
    gin[0] = g;
    return TG_OK;
}

static tg_status forgetful_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
{
    return TG_OK;
}

static tg_tensor *null_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    return NULL;
}

static tg_tensor *late_save_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    return tg_function_save(ctx, in[0]) == TG_OK ? tg_mul_scalar(in[0], 2.0) : NULL;
}

/* saves a tensor from outside (the user pointer) */
static tg_tensor *save_user_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n, void *user)
{
    return tg_function_save(ctx, user) == TG_OK ? tg_mul_scalar(in[0], 2.0) : NULL;
}

static tg_status late_save_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
{
    /* saving is for the forward only; input 1 does not exist */
    ck_assert_int_eq(tg_function_save(ctx, g), TG_ERR_STATE);
    ck_assert_ptr_null(tg_function_input(ctx, 1));
    ck_assert_int_eq(tg_last_status(), TG_ERR_RANGE);
    ck_assert_ptr_null(tg_function_saved(ctx, 1));
    ck_assert_ptr_null(tg_function_saved_output(ctx));
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_function_save_output"));
    gin[0] = tg_mul_scalar(g, 2.0);
    return TG_OK;
}

START_TEST(test_custom_function_errors)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *x = tg_from_f64(TG_SHAPE(2), (const double[]){1, 2});
    TG_OK_(tg_set_requires_grad(x, true));

    static const tg_function_def ident = {"ident", ident_fwd, ident_bwd, 0};
    tg_tensor *y = tg_function_apply(&ident, &x, 1, NULL);
    TG_CHECK(y && y != x);
    ck_assert(!tg_is_leaf(y));
    TG_OK_(tg_backward(tg_sum(y, NULL, 0, false)));
    ck_assert_double_eq(tg_get_flat(tg_grad(x), 1), 1.0);

    /* a backward that leaves out a needed gradient */
    static const tg_function_def forgetful = {"forgetful", ident_fwd, forgetful_bwd, 0};
    ck_assert_int_eq(tg_backward(tg_sum(tg_function_apply(&forgetful, &x, 1, NULL), NULL, 0,
                                        false)), TG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "'forgetful' gave no gradient for input 0"));

    /* an input written before backward (the engine's check), and a saved
     * tensor that is not an input (the function's own check) */
    tg_tensor *x2 = tg_tensor_copy(x);
    TG_OK_(tg_set_requires_grad(x2, true));
    tg_tensor *w = tg_from_f64(TG_SHAPE(2), (const double[]){3, 4});
    tg_tensor *in2[1] = {tg_mul(x2, w)};
    tg_tensor *l = tg_sum(tg_function_apply(&swish_def, in2, 1, NULL), NULL, 0, false);
    TG_OK_(tg_tensor_fill(in2[0], 0.0));
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "of op 'function'"));
    static const tg_function_def uses_ext = {"uses_ext", save_user_fwd, late_save_bwd, 0};
    tg_tensor *ext = tg_from_f64(TG_SHAPE(2), (const double[]){5, 6});
    l = tg_sum(tg_function_apply(&uses_ext, &x, 1, ext), NULL, 0, false);
    TG_OK_(tg_tensor_fill(ext, 0.0));
    ck_assert_int_eq(tg_backward(l), TG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "saved tensor 0 of function 'uses_ext'"));

    /* the ctx accessors outside their phase */
    static const tg_function_def late = {"late", late_save_fwd, late_save_bwd, 0};
    TG_OK_(tg_backward(tg_sum(tg_function_apply(&late, &x, 1, NULL), NULL, 0, false)));

    /* bad definitions and inputs */
    static const tg_function_def no_bwd = {"no_bwd", ident_fwd, NULL, 0};
    static const tg_function_def fails = {"fails", null_fwd, ident_bwd, 0};
    ck_assert_ptr_null(tg_function_apply(NULL, &x, 1, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert_ptr_null(tg_function_apply(&no_bwd, &x, 1, NULL));
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "no_bwd"));
    tg_tensor *none[1] = {NULL};
    ck_assert_ptr_null(tg_function_apply(&ident, none, 1, NULL));
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "input 0 is NULL"));
    ck_assert_ptr_null(tg_function_apply(&ident, &x, 0, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    tg_clear_error();
    ck_assert_ptr_null(tg_function_apply(&fails, &x, 1, NULL));
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "returned NULL without an error"));
    ck_assert_int_eq(tg_function_save(NULL, x), TG_ERR_ARG);
    ck_assert(!tg_function_needs_grad(NULL, 0));
    tg_scope_pop(s);
}
END_TEST


Suite *tg_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc = tg_tcase("requires_grad");
    tcase_add_test(tc, test_requires_grad_rules);
    tcase_add_test(tc, test_sequence_counts_records);
    suite_add_tcase(s, tc);

    tc = tg_tcase("backward");
    tcase_add_test(tc, test_grad_of_square);
    tcase_add_test(tc, test_used_twice_sums_paths);
    tcase_add_test(tc, test_accumulate_then_zero_grad);
    tcase_add_test(tc, test_f32_grad);
    tcase_add_test(tc, test_backward_twice_needs_retain_graph);
    tcase_add_test(tc, test_grad_output_rules);
    suite_add_tcase(s, tc);

    tc = tg_tcase("grad_mode");
    tcase_add_test(tc, test_no_grad_records_nothing);
    tcase_add_test(tc, test_detach_stops_gradient);
    suite_add_tcase(s, tc);

    tc = tg_tcase("memory");
    tcase_add_test(tc, test_live_objects_after_backward);
    tcase_add_test(tc, test_graph_kept_alive_by_output_only);
    tcase_add_test(tc, test_deep_chain);
    suite_add_tcase(s, tc);

    tc = tg_tcase("buggy_ops");
    tcase_add_test(tc, test_engine_rejects_wrong_grad_shape);
    tcase_add_test(tc, test_record_rejects_bad_use);
    suite_add_tcase(s, tc);

    tc = tg_tcase("gradcheck");
    tcase_add_test(tc, test_gradcheck_passes_composite);
    tcase_add_test(tc, test_gradcheck_directional_f32);
    tcase_add_test(tc, test_gradcheck_catches_wrong_backward);
    tcase_add_test(tc, test_gradcheck_names_op);
    tcase_add_test(tc, test_gradcheck_errors);
    tcase_add_test(tc, test_custom_function);
    tcase_add_test(tc, test_custom_function_errors);
    suite_add_tcase(s, tc);

    tc = tg_tcase("zero mark");
    tcase_add_test(tc, test_zero_mark_is_on_the_leaf);
    tcase_add_test(tc, test_zero_mark_first_contribution);
    tcase_add_test(tc, test_zero_mark_shared_grad_written_at_once);
    suite_add_tcase(s, tc);

    tc = tg_tcase("saved versions");
    tcase_add_loop_test(tc, test_backward_refuses_changed_saved_input, 0, MUT_COUNT);
    tcase_add_test(tc, test_backward_refuses_changed_leaf_by_name);
    tcase_add_test(tc, test_backward_refuses_changed_saved_output);
    tcase_add_test(tc, test_versions_allow_legitimate_use);
    suite_add_tcase(s, tc);
    return s;
}
