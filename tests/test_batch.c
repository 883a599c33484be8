/* tests/test_batch.c -- the batch iterator (nn/batch.h): every example once
 * per epoch, seeded and resumable orders, no allocation while iterating, the
 * options and input conversion, and several inputs and targets in one order.
 * (Its test against the Fashion-MNIST loader stays in tests/test_io.c.) */
#include <stdlib.h>
#include <string.h>

#include "libtensor/tensor_impl.h"
#include "tests/tg_test.h"

/* inputs (n, 2, 3) f32 with every element of example i equal to i; targets i. */
static void make_xy(int64_t n, tg_tensor **x, tg_tensor **y)
{
    *x = tg_empty(TG_F32, TG_SHAPE(n, 2, 3));
    *y = tg_empty(TG_I64, TG_SHAPE(n));
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 6; k++)
            TG_DATA(*x, float)[i * 6 + k] = (float)i;
        TG_DATA(*y, int64_t)[i] = i;
    }
}

/* Runs (the rest of) an epoch, checking each batch; records the example order in
 * order and returns how many examples it saw. */
static int64_t run_epoch(tg_batch_iter *it, int64_t *order, int64_t bs)
{
    tg_tensor *bx, *by;
    int64_t k = 0, nb = 0;
    while (tg_batch_iter_next(it, &bx, &by)) {
        int64_t m = tg_tensor_dim(bx, 0);
        ck_assert_int_eq(tg_tensor_dim(by, 0), m);
        ck_assert(m >= 1 && m <= bs);
        ck_assert(tg_tensor_is_contiguous(bx));
        for (int64_t r = 0; r < m; r++) {
            int64_t label = TG_DATA(by, int64_t)[r];
            for (int c = 0; c < 6; c++)
                ck_assert_float_eq(TG_DATA(bx, float)[r * 6 + c], (float)label);
            order[k++] = label;
        }
        nb++;
    }
    ck_assert(bx == NULL && by == NULL);
    ck_assert(nb <= tg_batch_iter_num_batches(it));
    return k;
}

START_TEST(batches_each_example_once)
{
    tg_tensor *x, *y;
    make_xy(10, &x, &y);
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 4;
    tg_batch_iter *it = tg_batch_iter_new(x, y, &o, &rng);
    TG_CHECK(it != NULL);
    ck_assert_int_eq(tg_batch_iter_count(it), 10);
    ck_assert_int_eq(tg_batch_iter_num_batches(it), 3);
    int64_t order[3][10];
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(run_epoch(it, order[e], 4), 10);
        bool seen[10] = {false};
        for (int i = 0; i < 10; i++) {
            ck_assert(!seen[order[e][i]]);
            seen[order[e][i]] = true;
        }
    }
    /* shuffled, and differently in each epoch */
    bool identity = true, same01 = true;
    for (int i = 0; i < 10; i++) {
        identity &= order[0][i] == i;
        same01 &= order[0][i] == order[1][i];
    }
    ck_assert(!identity && !same01);

    /* the last batch is a smaller view of the same buffer */
    tg_tensor *bx, *by, *first = NULL;
    int64_t sizes[3];
    for (int b = 0; b < 3; b++) {
        ck_assert(tg_batch_iter_next(it, &bx, &by));
        sizes[b] = tg_tensor_dim(bx, 0);
        if (b == 0)
            first = bx;
        else
            ck_assert(tg_tensor_shares_storage(bx, first));
        ck_assert_int_eq(tg_batch_iter_position(it), b + 1);
        ck_assert(tg_batch_iter_order(it) != NULL);
    }
    ck_assert_int_eq(sizes[0], 4);
    ck_assert_int_eq(sizes[1], 4);
    ck_assert_int_eq(sizes[2], 2);
    ck_assert_int_eq(tg_tensor_dim(by, 0), 2);
    ck_assert_int_eq(tg_tensor_dim(bx, 2), 3);
    ck_assert(!tg_batch_iter_next(it, &bx, &by));
    ck_assert(tg_batch_iter_order(it) == NULL);
    tg_batch_iter_free(it);
    tg_release(x);
    tg_release(y);
}
END_TEST

START_TEST(batches_seeded_and_resumable)
{
    tg_tensor *x, *y;
    make_xy(50, &x, &y);
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 8;
    tg_rng r1, r2;
    tg_rng_seed(&r1, 7);
    tg_rng_seed(&r2, 7);
    tg_batch_iter *a = tg_batch_iter_new(x, y, &o, &r1);
    tg_batch_iter *b = tg_batch_iter_new(x, y, &o, &r2);
    int64_t oa[50], ob[50];
    for (int e = 0; e < 2; e++) {
        run_epoch(a, oa, 8);
        run_epoch(b, ob, 8);
        ck_assert(memcmp(oa, ob, sizeof oa) == 0);
    }

    /* a different seed gives a different order */
    tg_rng r3;
    tg_rng_seed(&r3, 8);
    tg_batch_iter *c = tg_batch_iter_new(x, y, &o, &r3);
    run_epoch(c, ob, 8);
    ck_assert(memcmp(oa, ob, sizeof oa) != 0);
    tg_batch_iter_free(c);

    /* restoring the rng state saved before an epoch reproduces that epoch (what a
     * checkpoint taken at an epoch boundary does) */
    tg_rng saved = r1;
    run_epoch(a, oa, 8);
    tg_rng restored = saved;
    tg_batch_iter *d = tg_batch_iter_new(x, y, &o, &restored);
    run_epoch(d, ob, 8);
    ck_assert(memcmp(oa, ob, sizeof oa) == 0);

    /* mid-epoch: order + position resume the rest exactly */
    tg_tensor *bx, *by;
    ck_assert(tg_batch_iter_next(a, &bx, &by));
    ck_assert(tg_batch_iter_next(a, &bx, &by));
    int64_t order[50];
    memcpy(order, tg_batch_iter_order(a), sizeof order);
    int64_t pos = tg_batch_iter_position(a);
    ck_assert_int_eq(pos, 2);
    TG_OK_(tg_batch_iter_resume(d, order, pos));
    int64_t ra[50], rd[50];
    int64_t na = run_epoch(a, ra, 8), nd = run_epoch(d, rd, 8);
    ck_assert_int_eq(na, 50 - 16);
    ck_assert_int_eq(nd, na);
    ck_assert(memcmp(ra, rd, (size_t)na * sizeof ra[0]) == 0);
    ck_assert(memcmp(ra, order + 16, (size_t)na * sizeof ra[0]) == 0);

    /* resume refuses what is not a permutation */
    order[3] = order[4];
    ck_assert_int_eq(tg_batch_iter_resume(d, order, 0), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("not a permutation");
    order[3] = 50;
    ck_assert_int_eq(tg_batch_iter_resume(d, order, 0), TG_ERR_ARG);
    ck_assert_int_eq(tg_batch_iter_resume(d, order, 99), TG_ERR_RANGE);

    tg_batch_iter_free(a);
    tg_batch_iter_free(b);
    tg_batch_iter_free(d);
    tg_release(x);
    tg_release(y);
}
END_TEST

START_TEST(batches_allocate_nothing)
{
    tg_tensor *x, *y;
    make_xy(100, &x, &y);
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 32; /* 3 full batches and one of 4 */
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_batch_iter *it = tg_batch_iter_new(x, y, &o, &rng);
    tg_tensor *bx, *by;
    ck_assert(tg_batch_iter_next(it, &bx, &by)); /* the first batch */
    tg_memory_stats before, after;
    tg_memory_stats_get(&before);
    int64_t live = tg_live_objects();
    int64_t nb = 0;
    for (int e = 0; e < 5; e++)
        while (tg_batch_iter_next(it, &bx, &by))
            nb++;
    tg_memory_stats_get(&after);
    ck_assert_int_eq(nb, 3 + 4 * 4);
    ck_assert_int_eq(after.allocs, before.allocs);
    ck_assert_int_eq(after.bytes_live, before.bytes_live);
    ck_assert_int_eq(tg_live_objects(), live);
    tg_batch_iter_free(it);
    tg_release(x);
    tg_release(y);
}
END_TEST

START_TEST(batches_options)
{
    tg_tensor *x, *y;
    make_xy(10, &x, &y);
    int64_t order[10];

    /* no shuffle: the identity order; drop_last skips the partial batch */
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 4;
    o.shuffle = false;
    o.drop_last = true;
    tg_batch_iter *it = tg_batch_iter_new(x, y, &o, NULL);
    ck_assert_int_eq(tg_batch_iter_num_batches(it), 2);
    ck_assert_int_eq(run_epoch(it, order, 4), 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(order[i], i);
    tg_batch_iter_free(it);

    /* limit: only the first 5 examples, in batches of 2, 2, 1 */
    o.drop_last = false;
    o.shuffle = true;
    o.batch_size = 2;
    o.limit = 5;
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    it = tg_batch_iter_new(x, y, &o, &rng);
    ck_assert_int_eq(tg_batch_iter_count(it), 5);
    ck_assert_int_eq(tg_batch_iter_num_batches(it), 3);
    ck_assert_int_eq(run_epoch(it, order, 2), 5);
    bool seen[5] = {false};
    for (int i = 0; i < 5; i++) {
        ck_assert(order[i] >= 0 && order[i] < 5 && !seen[order[i]]);
        seen[order[i]] = true;
    }
    tg_batch_iter_free(it);

    /* a batch larger than the data: one batch of everything */
    o.limit = 0;
    o.batch_size = 64;
    it = tg_batch_iter_new(x, y, &o, &rng);
    ck_assert_int_eq(tg_batch_iter_num_batches(it), 1);
    ck_assert_int_eq(run_epoch(it, order, 64), 10);
    tg_batch_iter_free(it);

    /* non-contiguous inputs are copied once */
    tg_scope *s = tg_scope_push();
    tg_tensor *xt = tg_transpose(x, 1, 2); /* (10, 3, 2) */
    o.batch_size = 3;
    o.shuffle = false;
    it = tg_batch_iter_new(xt, y, &o, NULL);
    tg_tensor *bx, *by;
    ck_assert(tg_batch_iter_next(it, &bx, &by));
    ck_assert_int_eq(tg_tensor_dim(bx, 1), 3);
    ck_assert_float_eq(TG_DATA(bx, float)[6 * 2 + 5], 2.0f);
    tg_batch_iter_free(it);
    tg_scope_pop(s);

    /* errors */
    tg_tensor *y9 = tg_empty(TG_I64, TG_SHAPE(9));
    ck_assert(tg_batch_iter_new(x, y9, NULL, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("[10, 2, 3]");
    TG_ASSERT_ERROR_HAS("[9]");
    o.batch_size = 0;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert(tg_batch_iter_new(NULL, y, NULL, NULL) == NULL);
    ck_assert(!tg_batch_iter_next(NULL, &bx, &by));
    tg_batch_iter_free(NULL);
    tg_release(y9);
    tg_release(x);
    tg_release(y);
}
END_TEST

/* Other dtypes convert too (value * scale rounded once), non-contiguous inputs
 * are copied once, and a zero-initialised struct converts nothing. */
START_TEST(batches_convert_other_dtypes)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *y = tg_arange(TG_I64, 0, 6, 1);
    tg_tensor *xi = tg_arange(TG_I32, -7, 5, 1);                       /* 12 values */
    tg_tensor *x2 = tg_reshape(xi, TG_SHAPE(6, 2));
    tg_batch_opts o = {0};
    o.batch_size = 4;
    o.input_dtype = TG_F64;
    o.input_scale = 0.1;
    tg_batch_iter *it = tg_batch_iter_new(x2, y, &o, NULL); /* o.shuffle false */
    TG_CHECK(it != NULL);
    tg_tensor *bx, *by;
    ck_assert(tg_batch_iter_next(it, &bx, &by));
    ck_assert_int_eq(tg_tensor_dtype(bx), TG_F64);
    for (int k = 0; k < 8; k++)
        ck_assert(TG_DATA(bx, double)[k] == (k - 7) * 0.1);
    ck_assert(tg_batch_iter_next(it, &bx, &by)); /* the last 2 rows */
    ck_assert_int_eq(tg_tensor_dim(bx, 0), 2);
    ck_assert(TG_DATA(bx, double)[3] == 4 * 0.1);
    tg_batch_iter_free(it);

    /* f32 inputs, transposed (a copy), scaled into f32: (float)(v * scale) */
    tg_tensor *xf = tg_rand_uniform(TG_F32, TG_SHAPE(6, 3, 2), -1, 1, NULL);
    tg_tensor *xt = tg_transpose(xf, 1, 2); /* (6, 2, 3) */
    tg_tensor *xc = tg_contiguous(xt);
    o.input_dtype = TG_F32;
    o.input_scale = -3.3;
    o.batch_size = 6;
    it = tg_batch_iter_new(xt, y, &o, NULL);
    TG_CHECK(it != NULL);
    ck_assert(tg_batch_iter_next(it, &bx, &by));
    ck_assert_int_eq(tg_tensor_dim(bx, 1), 2);
    for (int k = 0; k < 36; k++)
        ck_assert(TG_DATA(bx, float)[k] == (float)(TG_DATA(xc, float)[k] * -3.3));
    tg_batch_iter_free(it);

    /* zero-initialised options (batch size aside): the inputs as they are */
    tg_batch_opts z = {0};
    z.batch_size = 5;
    it = tg_batch_iter_new(x2, y, &z, NULL);
    TG_CHECK(it != NULL);
    ck_assert(tg_batch_iter_next(it, &bx, &by));
    ck_assert_int_eq(tg_tensor_dtype(bx), TG_I32);
    ck_assert_int_eq(TG_DATA(bx, int32_t)[9], 2);
    tg_batch_iter_free(it);
    tg_scope_pop(s);
}
END_TEST

/* A converted batch large enough to take the parallel path, then a smaller last
 * one: right values, and iterating allocates nothing. */
START_TEST(batches_convert_allocates_nothing)
{
    int64_t n = 100;
    tg_tensor *x = tg_empty(TG_U8, TG_SHAPE(n, 1, 28, 28));
    tg_tensor *y = tg_empty(TG_I64, TG_SHAPE(n));
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 784; k++)
            TG_DATA(x, uint8_t)[i * 784 + k] = (uint8_t)((i * 7 + k * 3) % 256);
        TG_DATA(y, int64_t)[i] = i;
    }
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 64; /* 64 x 784 elements, then 36 x 784 */
    o.input_dtype = TG_F32;
    o.input_scale = 1.0 / 255;
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_batch_iter *it = tg_batch_iter_new(x, y, &o, &rng);
    TG_CHECK(it != NULL);
    tg_tensor *bx, *by;
    ck_assert(tg_batch_iter_next(it, &bx, &by)); /* the first batch */
    tg_memory_stats before, after;
    tg_memory_stats_get(&before);
    int64_t live = tg_live_objects();
    int64_t nb = 0, rows = 0;
    for (int e = 0; e < 3; e++) {
        while (tg_batch_iter_next(it, &bx, &by)) {
            int64_t m = tg_tensor_dim(bx, 0);
            for (int64_t r = 0; r < m; r++) {
                int64_t i = TG_DATA(by, int64_t)[r];
                for (int k = 0; k < 784; k += 13)
                    ck_assert(TG_DATA(bx, float)[r * 784 + k] ==
                              (float)((i * 7 + k * 3) % 256) / 255.0f);
            }
            rows += m;
            nb++;
        }
    }
    tg_memory_stats_get(&after);
    ck_assert_int_eq(nb, 1 + 2 * 2);
    ck_assert_int_eq(rows, 36 + 2 * 100);
    ck_assert_int_eq(after.allocs, before.allocs);
    ck_assert_int_eq(after.bytes_live, before.bytes_live);
    ck_assert_int_eq(tg_live_objects(), live);
    tg_batch_iter_free(it);
    tg_release(x);
    tg_release(y);
}
END_TEST

START_TEST(batches_convert_errors)
{
    tg_tensor *x, *y;
    make_xy(10, &x, &y);
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.input_dtype = TG_F32;
    o.input_scale = NAN;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_batch_iter_new");
    TG_ASSERT_ERROR_HAS("finite");
    o.input_scale = -INFINITY;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("finite");

    /* converting into an integer (or invalid) dtype */
    o.input_scale = 1;
    o.input_dtype = TG_I32;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("f32 or f64");
    TG_ASSERT_ERROR_HAS("i32");
    o.input_dtype = TG_DTYPE_COUNT;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_DTYPE);

    /* a dtype without a scale: most likely a forgotten scale */
    o.input_dtype = TG_F64;
    o.input_scale = 0;
    ck_assert(tg_batch_iter_new(x, y, &o, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("input_scale 0");
    TG_ASSERT_ERROR_HAS("f64");
    tg_release(x);
    tg_release(y);
}
END_TEST
/* Two inputs and two targets: one order for all, the same rows of each; the
 * order is the one-input iterator's for the same seed. */
START_TEST(batches_several_tensors)
{
    tg_tensor *x, *y;
    make_xy(11, &x, &y);
    tg_tensor *x2 = tg_empty(TG_F64, TG_SHAPE(11));
    tg_tensor *y2 = tg_empty(TG_F32, TG_SHAPE(11, 3));
    for (int64_t i = 0; i < 11; i++) {
        TG_DATA(x2, double)[i] = 10.0 * (double)i;
        for (int k = 0; k < 3; k++)
            TG_DATA(y2, float)[i * 3 + k] = -(float)i - (float)k;
    }
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 4; /* 4, 4, 3 */
    tg_rng r1, r2;
    tg_rng_seed(&r1, 21);
    tg_rng_seed(&r2, 21);
    tg_tensor *ins[2] = { x, x2 }, *tgs[2] = { y, y2 };
    tg_batch_iter *one = tg_batch_iter_new(x, y, &o, &r1);
    tg_batch_iter *two = tg_batch_iter_new_n(2, ins, 2, tgs, &o, &r2);
    TG_CHECK(one && two);
    ck_assert_int_eq(tg_batch_iter_num_inputs(two), 2);
    ck_assert_int_eq(tg_batch_iter_num_targets(two), 2);
    ck_assert_int_eq(tg_batch_iter_num_batches(two), 3);
    for (int e = 0; e < 2; e++) {
        tg_tensor *bx, *by, *xs[2], *ys[2];
        int nb = 0;
        while (tg_batch_iter_next(one, &bx, &by)) {
            ck_assert(tg_batch_iter_next_n(two, xs, ys));
            int64_t m = tg_tensor_dim(bx, 0);
            ck_assert_int_eq(m, nb < 2 ? 4 : 3);
            for (int k = 0; k < 2; k++) {
                ck_assert_int_eq(tg_tensor_dim(xs[k], 0), m);
                ck_assert_int_eq(tg_tensor_dim(ys[k], 0), m);
            }
            ck_assert_int_eq(tg_tensor_dim(ys[1], 1), 3);
            for (int64_t r = 0; r < m; r++) {
                int64_t i = TG_DATA(by, int64_t)[r];
                ck_assert_int_eq(TG_DATA(ys[0], int64_t)[r], i);
                ck_assert(TG_DATA(xs[0], float)[r * 6 + 5] == (float)i);
                ck_assert(TG_DATA(xs[1], double)[r] == 10.0 * (double)i);
                ck_assert(TG_DATA(ys[1], float)[r * 3 + 2] == -(float)i - 2.0f);
            }
            nb++;
        }
        ck_assert_int_eq(nb, 3);
        tg_tensor *xs2[2], *ys2[2];
        ck_assert(!tg_batch_iter_next_n(two, xs2, ys2));
        ck_assert(xs2[0] == NULL && xs2[1] == NULL && ys2[0] == NULL && ys2[1] == NULL);
    }
    /* the one-input call refuses an iterator of several */
    tg_tensor *bx, *by;
    ck_assert(!tg_batch_iter_next(two, &bx, &by));
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("tg_batch_iter_next_n");
    tg_batch_iter_free(one);
    tg_batch_iter_free(two);

    /* no targets (prediction), converted inputs: every input is converted */
    tg_tensor *u = tg_empty(TG_U8, TG_SHAPE(11, 2));
    for (int k = 0; k < 22; k++)
        TG_DATA(u, uint8_t)[k] = (uint8_t)(k * 11);
    tg_tensor *pin[2] = { u, x2 };
    tg_batch_opts c = TG_BATCH_OPTS_INIT;
    c.batch_size = 11;
    c.shuffle = false;
    c.input_scale = 0.5;
    tg_batch_iter *p = tg_batch_iter_new_n(2, pin, 0, NULL, &c, NULL);
    TG_CHECK(p != NULL);
    tg_tensor *xs[2];
    ck_assert(tg_batch_iter_next_n(p, xs, NULL));
    ck_assert_int_eq(tg_tensor_dtype(xs[0]), TG_F32);
    ck_assert_int_eq(tg_tensor_dtype(xs[1]), TG_F32);
    ck_assert(TG_DATA(xs[0], float)[21] == 21 * 11 * 0.5f);
    ck_assert(TG_DATA(xs[1], float)[10] == 50.0f);
    ck_assert(!tg_batch_iter_next_n(p, xs, NULL));
    tg_batch_iter_free(p);
    tg_release(u);
    tg_release(x);
    tg_release(y);
    tg_release(x2);
    tg_release(y2);
}
END_TEST

START_TEST(batches_several_errors)
{
    tg_tensor *x, *y;
    make_xy(10, &x, &y);
    tg_tensor *y9 = tg_empty(TG_I64, TG_SHAPE(9));
    tg_tensor *tgs[2] = { y, y9 }, *ins[2] = { x, NULL };
    ck_assert(tg_batch_iter_new_n(1, &x, 2, tgs, NULL, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("tg_batch_iter_new_n");
    TG_ASSERT_ERROR_HAS("targets[1] [9]");
    TG_ASSERT_ERROR_HAS("inputs[0] [10, 2, 3]");
    ck_assert(tg_batch_iter_new_n(2, ins, 1, &y, NULL, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("'inputs[1]' is NULL");
    ck_assert(tg_batch_iter_new_n(0, ins, 1, &y, NULL, NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("n_in");
    ck_assert(tg_batch_iter_new_n(1, &x, -1, NULL, NULL, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("n_targets");
    ck_assert(tg_batch_iter_new_n(1, &x, 1, NULL, NULL, NULL) == NULL);
    TG_ASSERT_ERROR_HAS("'targets' is NULL");
    tg_batch_iter *it = tg_batch_iter_new_n(1, &x, 1, &y, NULL, NULL);
    TG_CHECK(it != NULL);
    tg_tensor *xs[1];
    ck_assert(!tg_batch_iter_next_n(it, xs, NULL));
    TG_ASSERT_ERROR_HAS("'ys' is NULL");
    ck_assert(!tg_batch_iter_next_n(NULL, xs, NULL));
    tg_batch_iter_free(it);
    tg_release(y9);
    tg_release(x);
    tg_release(y);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tg_tcase("batches");
    tcase_add_test(tc, batches_each_example_once);
    tcase_add_test(tc, batches_seeded_and_resumable);
    tcase_add_test(tc, batches_allocate_nothing);
    tcase_add_test(tc, batches_options);
    tcase_add_test(tc, batches_convert_other_dtypes);
    tcase_add_test(tc, batches_convert_allocates_nothing);
    tcase_add_test(tc, batches_convert_errors);
    suite_add_tcase(s, tc);
    tc = tg_tcase("several");
    tcase_add_test(tc, batches_several_tensors);
    tcase_add_test(tc, batches_several_errors);
    suite_add_tcase(s, tc);
    return s;
}
