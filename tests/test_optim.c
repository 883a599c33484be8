/* tests/test_optim.c -- the optimizer additions of nn/optimizer.c: coupled L2
 * weight decay in Adam and RMSprop, decoupled AdamW, gradient clipping (by
 * value, by norm, by global norm, and the standalone tg_clip_grad_norm), and
 * their settings in state dicts (old dicts without them still load). Every
 * expected value is computed here, in double, from the formula or by hand. */
#include <stdlib.h>
#include <string.h>

#include "tests/tg_test.h"

/* ---------------------------------------------------------------- helpers */

/* Bit-for-bit equal values (a zero tolerance would divide 0 by 0). */
#define ASSERT_TENSOR_EQ(a, b) TG_ASSERT_TENSOR_CLOSE(a, b, 1e-300, 0)

static tg_tensor *param(const char *name, tg_dtype dt, int64_t n, const double *v)
{
    tg_tensor *p = tg_from_data(TG_F64, TG_SHAPE(n), v);
    TG_CHECK(p);
    if (dt != TG_F64) {
        tg_tensor *q = tg_tensor_to_dtype(p, dt);
        TG_CHECK(q);
        tg_release(p);
        p = q;
    }
    TG_OK_(tg_tensor_set_name(p, name));
    TG_OK_(tg_set_requires_grad(p, true));
    return p;
}

static double at(const tg_tensor *t, int64_t i)
{
    return tg_get(t, (const int64_t[]){ i });
}

/* A copy of sd's attributes and entries (the same tensors, retained) without
 * the attributes named in skip (NULL-terminated): a state dict as an older
 * writer would have made it. */
static tg_state_dict *copy_without(const tg_state_dict *sd, const char *const *skip)
{
    tg_state_dict *c = tg_state_dict_new();
    TG_CHECK(c);
    for (size_t i = 0; i < tg_state_dict_size(sd); i++)
        TG_OK_(tg_state_dict_set(c, tg_state_dict_name_at(sd, i), tg_state_dict_tensor_at(sd, i)));
    for (size_t i = 0; i < tg_state_dict_attr_count(sd); i++) {
        const char *nm = tg_state_dict_attr_name_at(sd, i);
        bool skipped = false;
        for (const char *const *s = skip; s && *s; s++)
            skipped |= strcmp(nm, *s) == 0;
        if (skipped)
            continue;
        int64_t iv;
        double fv;
        const char *sv;
        switch (tg_state_dict_attr_type_at(sd, i)) {
        case TG_ATTR_I64:
            TG_OK_(tg_state_dict_get_i64(&iv, sd, nm));
            TG_OK_(tg_state_dict_set_i64(c, nm, iv));
            break;
        case TG_ATTR_F64:
            TG_OK_(tg_state_dict_get_f64(&fv, sd, nm));
            TG_OK_(tg_state_dict_set_f64(c, nm, fv));
            break;
        case TG_ATTR_STR:
            TG_OK_(tg_state_dict_get_str(&sv, sd, nm));
            TG_OK_(tg_state_dict_set_str(c, nm, sv));
            break;
        }
    }
    return c;
}

static double attr_f64(const tg_state_dict *sd, const char *name)
{
    double v = NAN;
    TG_OK_(tg_state_dict_get_f64(&v, sd, name));
    return v;
}

/* ---------------------------------------------------------------- weight decay */

/* Adam with coupled decay: g' = g + wd p, then Keras's Adam on g'. f64 within
 * rounding, f32 within f32 rounding. */
START_TEST(test_adam_weight_decay)
{
    const double p0[3] = { 0.5, -1.0, 2.0 };
    const double g[3][3] = { { 0.1, -0.2, 3.0 }, { -0.05, 0.4, 1e-4 }, { 0.3, 0.0, -2.0 } };
    tg_adam_opts o = TG_ADAM_OPTS_INIT;
    ck_assert(o.weight_decay == 0.0);
    o.lr = 0.01;
    o.weight_decay = 0.1;
    tg_tensor *p = param("w", TG_F64, 3, p0), *q = param("w32", TG_F32, 3, p0);
    tg_optimizer *opt = tg_optimizer_new_adam((tg_tensor *[]){ p, q }, 2, &o);
    TG_CHECK(opt);
    double want[3], m[3] = { 0 }, v[3] = { 0 };
    memcpy(want, p0, sizeof want);
    for (int t = 1; t <= 3; t++) {
        tg_test_set_grad(p, g[t - 1]);
        tg_test_set_grad(q, g[t - 1]);
        TG_OK_(tg_optimizer_step(opt));
        double lr_t = 0.01 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < 3; i++) {
            double gi = g[t - 1][i] + 0.1 * want[i];
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            want[i] -= lr_t * m[i] / (sqrt(v[i]) + 1e-7);
            TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
            TG_ASSERT_CLOSE(at(q, i), want[i], 1e-6, 1e-6);
        }
    }
    /* Element 1 has gradient 0 at step 3: only the decay (through the moments)
     * moves it, so it differs from what a plain Adam would give. */
    tg_optimizer_free(opt);
    tg_release(p);
    tg_release(q);
}
END_TEST

/* Weight decay 0 (the default) is the update of before, bit for bit: Adam with
 * TG_ADAM_OPTS_INIT, NULL options, an explicit 0 and AdamW with weight_decay 0
 * all give the same parameters, and the formula without decay computed here. */
START_TEST(test_zero_decay_is_old_update)
{
    const double p0[2] = { 0.25, -3.0 };
    const double g[2][2] = { { 1.5, -0.25 }, { -0.5, 2.0 } };
    tg_tensor *ps[4];
    tg_optimizer *opts[4];
    for (int k = 0; k < 4; k++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", k);
        ps[k] = param(nm, TG_F64, 2, p0);
    }
    tg_adam_opts ad = TG_ADAM_OPTS_INIT;
    tg_adamw_opts aw = TG_ADAMW_OPTS_INIT;
    aw.weight_decay = 0;
    opts[0] = tg_optimizer_new_adam(&ps[0], 1, &ad);
    opts[1] = tg_optimizer_new_adam(&ps[1], 1, NULL);
    opts[2] = tg_optimizer_new_adam(&ps[2], 1, &(tg_adam_opts){ 1e-3, 0.9, 0.999, 1e-7, 0 });
    opts[3] = tg_optimizer_new_adamw(&ps[3], 1, &aw);
    for (int k = 0; k < 4; k++)
        TG_CHECK(opts[k]);
    double want[2] = { p0[0], p0[1] }, m[2] = { 0 }, v[2] = { 0 };
    for (int t = 1; t <= 2; t++) {
        for (int k = 0; k < 4; k++) {
            tg_test_set_grad(ps[k], g[t - 1]);
            TG_OK_(tg_optimizer_step(opts[k]));
        }
        double lr_t = 1e-3 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < 2; i++) {
            m[i] = 0.9 * m[i] + 0.1 * g[t - 1][i];
            v[i] = 0.999 * v[i] + 0.001 * g[t - 1][i] * g[t - 1][i];
            want[i] -= lr_t * m[i] / (sqrt(v[i]) + 1e-7);
            TG_ASSERT_CLOSE(at(ps[0], i), want[i], 1e-15, 1e-14);
        }
        for (int k = 1; k < 4; k++)
            ASSERT_TENSOR_EQ(ps[k], ps[0]);
    }
    /* RMSprop and SGD likewise: 0 decay leaves the old formula. */
    tg_tensor *r = param("r", TG_F64, 2, p0);
    tg_optimizer *ro = tg_optimizer_new_rmsprop(&r, 1, NULL);
    TG_CHECK(ro);
    tg_test_set_grad(r, g[0]);
    TG_OK_(tg_optimizer_step(ro));
    for (int i = 0; i < 2; i++) {
        double s = 0.1 * g[0][i] * g[0][i];
        TG_ASSERT_CLOSE(at(r, i), p0[i] - 1e-3 * g[0][i] / (sqrt(s) + 1e-7), 1e-16, 1e-15);
    }
    tg_optimizer_free(ro);
    tg_release(r);
    for (int k = 0; k < 4; k++) {
        tg_optimizer_free(opts[k]);
        tg_release(ps[k]);
    }
}
END_TEST

START_TEST(test_rmsprop_weight_decay)
{
    const double p0[2] = { 0.3, -0.7 };
    const double g[3][2] = { { 1.0, -0.01 }, { -0.5, 0.2 }, { 0.0, 0.0 } };
    tg_rmsprop_opts d = TG_RMSPROP_OPTS_INIT;
    ck_assert(d.weight_decay == 0.0);
    for (int variant = 0; variant < 2; variant++) {
        tg_rmsprop_opts o = TG_RMSPROP_OPTS_INIT;
        o.lr = 0.01;
        o.momentum = variant ? 0.5 : 0.0;
        o.weight_decay = 0.05;
        tg_tensor *p = param("p", TG_F64, 2, p0), *q = param("q", TG_F32, 2, p0);
        tg_optimizer *opt = tg_optimizer_new_rmsprop((tg_tensor *[]){ p, q }, 2, &o);
        TG_CHECK(opt);
        double want[2] = { p0[0], p0[1] }, ms[2] = { 0, 0 }, mom[2] = { 0, 0 };
        for (int t = 0; t < 3; t++) {
            tg_test_set_grad(p, g[t]);
            tg_test_set_grad(q, g[t]);
            TG_OK_(tg_optimizer_step(opt));
            for (int i = 0; i < 2; i++) {
                double gi = g[t][i] + 0.05 * want[i];
                ms[i] = 0.9 * ms[i] + 0.1 * gi * gi;
                if (o.momentum == 0) {
                    want[i] -= 0.01 * gi / (sqrt(ms[i]) + o.epsilon);
                } else {
                    mom[i] = 0.5 * mom[i] + 0.01 * gi / sqrt(ms[i] + o.epsilon);
                    want[i] -= mom[i];
                }
                TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
                TG_ASSERT_CLOSE(at(q, i), want[i], 1e-6, 1e-5);
            }
        }
        tg_optimizer_free(opt);
        tg_release(p);
        tg_release(q);
    }
}
END_TEST

/* ---------------------------------------------------------------- AdamW */

START_TEST(test_adamw_matches_formula)
{
    tg_adamw_opts d = TG_ADAMW_OPTS_INIT;
    ck_assert(d.lr == 1e-3 && d.beta1 == 0.9 && d.beta2 == 0.999 && d.epsilon == 1e-7 &&
              d.weight_decay == 0.004);
    const double p0[3] = { 0.5, -1.0, 2.0 };
    const double g[3][3] = { { 0.1, -0.2, 3.0 }, { -0.05, 0.4, 1e-4 }, { 0.3, 0.0, -2.0 } };
    tg_adamw_opts o = TG_ADAMW_OPTS_INIT;
    o.lr = 0.01;
    o.weight_decay = 0.5;
    tg_tensor *p = param("w", TG_F64, 3, p0), *q = param("w32", TG_F32, 3, p0);
    tg_optimizer *opt = tg_optimizer_new_adamw((tg_tensor *[]){ p, q }, 2, &o);
    TG_CHECK(opt);
    ck_assert_str_eq(tg_optimizer_type(opt), "adamw");
    double want[3], m[3] = { 0 }, v[3] = { 0 };
    memcpy(want, p0, sizeof want);
    for (int t = 1; t <= 3; t++) {
        tg_test_set_grad(p, g[t - 1]);
        tg_test_set_grad(q, g[t - 1]);
        TG_OK_(tg_optimizer_step(opt));
        double lr_t = 0.01 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < 3; i++) {
            /* decay first, on the parameter, by lr * wd; the moments see g alone */
            want[i] -= want[i] * 0.5 * 0.01;
            m[i] = 0.9 * m[i] + 0.1 * g[t - 1][i];
            v[i] = 0.999 * v[i] + 0.001 * g[t - 1][i] * g[t - 1][i];
            want[i] -= lr_t * m[i] / (sqrt(v[i]) + 1e-7);
            TG_ASSERT_CLOSE(at(p, i), want[i], 1e-15, 1e-13);
            TG_ASSERT_CLOSE(at(q, i), want[i], 1e-6, 1e-6);
        }
    }
    tg_optimizer_free(opt);
    tg_release(p);
    tg_release(q);

    /* By hand: with zero gradients the moments stay 0 and Adam's step is 0, so
     * AdamW only shrinks: p0 (1 - lr wd)^3. Coupled Adam with the same decay
     * instead sees g' = wd p and moves each element by about lr per step. */
    tg_tensor *a = param("a", TG_F64, 3, p0), *b = param("b", TG_F64, 3, p0);
    tg_optimizer *ow = tg_optimizer_new_adamw(&a, 1, &o);
    tg_optimizer *oa = tg_optimizer_new_adam(&b, 1, &(tg_adam_opts){ 0.01, 0.9, 0.999, 1e-7,
                                                                     0.5 });
    TG_CHECK(ow && oa);
    for (int t = 0; t < 3; t++) {
        tg_test_set_grad(a, (const double[]){ 0, 0, 0 });
        tg_test_set_grad(b, (const double[]){ 0, 0, 0 });
        TG_OK_(tg_optimizer_step(ow));
        TG_OK_(tg_optimizer_step(oa));
    }
    for (int i = 0; i < 3; i++) {
        TG_ASSERT_CLOSE(at(a, i), p0[i] * 0.995 * 0.995 * 0.995, 0, 1e-15);
        TG_ASSERT_CLOSE(fabs(at(b, i) - p0[i]), 0.03, 0, 0.05);
    }
    tg_optimizer_free(ow);
    tg_optimizer_free(oa);
    tg_release(a);
    tg_release(b);
}
END_TEST

/* ---------------------------------------------------------------- clipping */

/* By value: each element clamped to [-c, c] before the update; the decay is
 * added after clipping (it is not clipped). SGD lr 1 shows the gradient used. */
START_TEST(test_clip_value)
{
    const double p0[4] = { 1.0, 2.0, -1.0, 0.5 };
    const double g[4] = { 3.0, -0.5, -4.0, 1.0 };
    const double clamped[4] = { 1.0, -0.5, -1.0, 1.0 };
    for (int wd = 0; wd < 2; wd++) {
        tg_sgd_opts so = TG_SGD_OPTS_INIT;
        so.lr = 1.0;
        so.weight_decay = wd ? 0.25 : 0.0;
        tg_tensor *p = param("p", TG_F64, 4, p0), *q = param("q", TG_F32, 4, p0);
        tg_optimizer *opt = tg_optimizer_new_sgd((tg_tensor *[]){ p, q }, 2, &so);
        TG_CHECK(opt);
        TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipvalue = 1.0 }));
        tg_test_set_grad(p, g);
        tg_test_set_grad(q, g);
        TG_OK_(tg_optimizer_step(opt));
        for (int i = 0; i < 4; i++) {
            double want = p0[i] - (clamped[i] + so.weight_decay * p0[i]);
            TG_ASSERT_CLOSE(at(p, i), want, 0, 0);
            TG_ASSERT_CLOSE(at(q, i), want, 0, 0);
        }
        /* The gradients themselves are left as they were. */
        for (int i = 0; i < 4; i++)
            ck_assert(at(tg_grad(p), i) == g[i]);
        tg_optimizer_free(opt);
        tg_release(p);
        tg_release(q);
    }
}
END_TEST

/* A clipping that clips nothing (clipvalue above every element) gives the
 * unclipped update bit for bit, in f32 and f64, for each type: the loops with
 * clipping and decay agree with the plain ones they replace. */
START_TEST(test_clip_noop_is_exact)
{
    const double p0[3] = { 0.1, -0.2, 0.3 };
    for (int kind = 0; kind < 4; kind++)
        for (int f64 = 0; f64 < 2; f64++) {
            tg_dtype dt = f64 ? TG_F64 : TG_F32;
            tg_tensor *e = param("e", dt, 3, p0), *f = param("f", dt, 3, p0);
            tg_optimizer *oe, *of;
            if (kind == 0) {
                oe = tg_optimizer_new_adam(&e, 1, NULL);
                of = tg_optimizer_new_adam(&f, 1, NULL);
            } else if (kind == 1) {
                oe = tg_optimizer_new_adamw(&e, 1, NULL);
                of = tg_optimizer_new_adamw(&f, 1, NULL);
            } else if (kind == 2) {
                tg_rmsprop_opts ro = TG_RMSPROP_OPTS_INIT;
                ro.momentum = 0.5;
                oe = tg_optimizer_new_rmsprop(&e, 1, &ro);
                of = tg_optimizer_new_rmsprop(&f, 1, &ro);
            } else {
                tg_sgd_opts so = TG_SGD_OPTS_INIT;
                so.momentum = 0.9;
                oe = tg_optimizer_new_sgd(&e, 1, &so);
                of = tg_optimizer_new_sgd(&f, 1, &so);
            }
            TG_CHECK(oe && of);
            TG_OK_(tg_optimizer_set_clipping(oe, &(tg_clip_opts){ .clipvalue = 1e30 }));
            for (int t = 0; t < 3; t++) {
                const double gv[3] = { 1.5 - t, 0.25 * t, -3.0 };
                tg_test_set_grad(e, gv);
                tg_test_set_grad(f, gv);
                TG_OK_(tg_optimizer_step(oe));
                TG_OK_(tg_optimizer_step(of));
                ASSERT_TENSOR_EQ(e, f);
            }
            ck_assert(at(e, 2) != p0[2]);
            tg_optimizer_free(oe);
            tg_optimizer_free(of);
            tg_release(e);
            tg_release(f);
        }
}
END_TEST

/* By norm, per parameter: a's gradient (3, 4, 0) has norm 5 > 1 and is scaled
 * by 1/5; b's (0.3, 0.4) has norm 0.5 and is left alone. */
START_TEST(test_clip_norm)
{
    tg_tensor *a = param("a", TG_F64, 3, (const double[]){ 1, 1, 1 });
    tg_tensor *b = param("b", TG_F32, 2, (const double[]){ 1, 1 });
    tg_optimizer *opt = tg_optimizer_new_sgd((tg_tensor *[]){ a, b }, 2,
                                             &(tg_sgd_opts){ 0.1, 0, false, 0 });
    TG_CHECK(opt);
    TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipnorm = 1.0 }));
    tg_clip_opts got;
    TG_OK_(tg_optimizer_clipping(&got, opt));
    ck_assert(got.clipnorm == 1.0 && got.clipvalue == 0 && got.global_clipnorm == 0);
    tg_test_set_grad(a, (const double[]){ 3, 4, 0 });
    tg_test_set_grad(b, (const double[]){ 0.3, 0.4 });
    TG_OK_(tg_optimizer_step(opt));
    TG_ASSERT_CLOSE(at(a, 0), 1 - 0.1 * 0.6, 1e-15, 0);
    TG_ASSERT_CLOSE(at(a, 1), 1 - 0.1 * 0.8, 1e-15, 0);
    ck_assert(at(a, 2) == 1.0);
    ck_assert(at(b, 0) == (double)(1.0f - 0.1f * 0.3f));
    ck_assert(at(b, 1) == (double)(1.0f - 0.1f * 0.4f));

    /* Adam (f64) under clipnorm 2 against the formula with the scaled gradient. */
    const double p0[2] = { 0.5, -0.5 };
    const double gs[3][2] = { { 6, 8 }, { 0.3, -0.4 }, { -12, 5 } };
    tg_tensor *c = param("c", TG_F64, 2, p0);
    tg_optimizer *adam = tg_optimizer_new_adam(&c, 1, &(tg_adam_opts){ 0.01, 0.9, 0.999, 1e-7,
                                                                       0 });
    TG_CHECK(adam);
    TG_OK_(tg_optimizer_set_clipping(adam, &(tg_clip_opts){ .clipnorm = 2.0 }));
    double want[2] = { p0[0], p0[1] }, m[2] = { 0 }, v[2] = { 0 };
    for (int t = 1; t <= 3; t++) {
        tg_test_set_grad(c, gs[t - 1]);
        TG_OK_(tg_optimizer_step(adam));
        double norm = hypot(gs[t - 1][0], gs[t - 1][1]); /* 10, 0.5, 13 */
        double f = norm > 2.0 ? 2.0 / norm : 1.0;
        double lr_t = 0.01 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < 2; i++) {
            double gi = gs[t - 1][i] * f;
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            want[i] -= lr_t * m[i] / (sqrt(v[i]) + 1e-7);
            TG_ASSERT_CLOSE(at(c, i), want[i], 1e-15, 1e-13);
        }
    }
    tg_optimizer_free(adam);
    tg_optimizer_free(opt);
    tg_release(a);
    tg_release(b);
    tg_release(c);
}
END_TEST

/* By global norm: a (3, 4, 0) and b (0, 12) together have norm 13; with 6.5
 * each is halved. c is frozen with a large gradient and d has none: neither
 * counts, and neither moves. */
START_TEST(test_clip_global_norm)
{
    tg_tensor *a = param("a", TG_F64, 3, (const double[]){ 1, 1, 1 });
    tg_tensor *b = param("b", TG_F64, 2, (const double[]){ 1, 1 });
    tg_tensor *c = param("c", TG_F64, 1, (const double[]){ 1 });
    tg_tensor *d = param("d", TG_F64, 1, (const double[]){ 1 });
    tg_test_set_grad(c, (const double[]){ 1000 });
    TG_OK_(tg_set_requires_grad(c, false));
    tg_optimizer *opt = tg_optimizer_new_sgd((tg_tensor *[]){ a, b, c, d }, 4,
                                             &(tg_sgd_opts){ 0.1, 0, false, 0 });
    TG_CHECK(opt);
    TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .global_clipnorm = 6.5 }));
    tg_test_set_grad(a, (const double[]){ 3, 4, 0 });
    tg_test_set_grad(b, (const double[]){ 0, 12 });
    TG_OK_(tg_optimizer_step(opt));
    TG_ASSERT_CLOSE(at(a, 0), 1 - 0.1 * 1.5, 1e-16, 0);
    TG_ASSERT_CLOSE(at(a, 1), 1 - 0.1 * 2.0, 1e-16, 0);
    ck_assert(at(b, 0) == 1.0);
    TG_ASSERT_CLOSE(at(b, 1), 1 - 0.1 * 6.0, 1e-16, 0);
    ck_assert(at(c, 0) == 1.0 && at(d, 0) == 1.0);

    /* Under the threshold the factor is exactly 1: bit for bit unclipped. */
    tg_tensor *e = param("e", TG_F32, 3, (const double[]){ 0.1, 0.2, 0.3 });
    tg_tensor *f = param("f", TG_F32, 3, (const double[]){ 0.1, 0.2, 0.3 });
    tg_optimizer *oe = tg_optimizer_new_adam(&e, 1, NULL);
    tg_optimizer *of = tg_optimizer_new_adam(&f, 1, NULL);
    TG_CHECK(oe && of);
    TG_OK_(tg_optimizer_set_clipping(oe, &(tg_clip_opts){ .global_clipnorm = 5.0 }));
    for (int t = 0; t < 3; t++) {
        const double gv[3] = { 3 - t, 4 * t, -0.5 }; /* norms 3.04, 4.5, 8.08 */
        tg_test_set_grad(e, gv);
        tg_test_set_grad(f, gv);
        TG_OK_(tg_optimizer_step(oe));
        TG_OK_(tg_optimizer_step(of));
        if (t < 2)
            ASSERT_TENSOR_EQ(e, f);
        else
            ck_assert(at(e, 1) != at(f, 1)); /* clipped at last */
    }
    tg_optimizer_free(oe);
    tg_optimizer_free(of);
    tg_optimizer_free(opt);
    tg_release(a);
    tg_release(b);
    tg_release(c);
    tg_release(d);
    tg_release(e);
    tg_release(f);
}
END_TEST

START_TEST(test_clip_grad_norm_standalone)
{
    tg_tensor *a = param("a", TG_F64, 3, (const double[]){ 1, 1, 1 });
    tg_tensor *b = param("b", TG_F32, 2, (const double[]){ 1, 1 });
    tg_tensor *c = param("c", TG_F64, 1, (const double[]){ 1 });
    tg_tensor *d = param("d", TG_F64, 1, (const double[]){ 1 });
    tg_test_set_grad(c, (const double[]){ 1000 });
    TG_OK_(tg_set_requires_grad(c, false)); /* frozen: not counted */
    tg_tensor *ps[4] = { a, b, c, d };      /* d has no gradient */
    tg_test_set_grad(a, (const double[]){ 3, 4, 0 });
    tg_test_set_grad(b, (const double[]){ 0, 12 });
    double total = 0;
    /* Within the threshold (and INFINITY: measure only) nothing changes. */
    TG_OK_(tg_clip_grad_norm(ps, 4, 100, &total));
    ck_assert(total == 13.0);
    TG_OK_(tg_clip_grad_norm(ps, 4, INFINITY, &total));
    ck_assert(total == 13.0 && at(tg_grad(a), 1) == 4.0 && at(tg_grad(b), 1) == 12.0);
    uint64_t va = tg_tensor_version(tg_grad(a));
    TG_OK_(tg_clip_grad_norm(ps, 4, 6.5, &total));
    ck_assert(total == 13.0);
    ck_assert(tg_tensor_version(tg_grad(a)) != va);
    TG_ASSERT_CLOSE(at(tg_grad(a), 0), 1.5, 1e-16, 0);
    TG_ASSERT_CLOSE(at(tg_grad(a), 1), 2.0, 1e-16, 0);
    ck_assert(at(tg_grad(b), 0) == 0.0);
    ck_assert(at(tg_grad(b), 1) == 6.0);
    ck_assert_ptr_null(tg_grad(d));
    ck_assert(at(tg_grad(c), 0) == 1000.0);
    TG_OK_(tg_clip_grad_norm(ps, 4, 6.5, NULL)); /* now within: no out-parameter needed */

    /* Bad arguments. */
    ck_assert_int_eq(tg_clip_grad_norm(ps, 4, 0, &total), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_clip_grad_norm: max_norm = 0 must be > 0");
    ck_assert_int_eq(tg_clip_grad_norm(ps, 4, NAN, &total), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("max_norm = nan must be > 0");
    ck_assert(isnan(total));
    ck_assert_int_eq(tg_clip_grad_norm(NULL, 2, 1, &total), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("params");
    ck_assert_int_eq(tg_clip_grad_norm((tg_tensor *[]){ a, NULL }, 2, 1, &total), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("params[1] is NULL");
    ck_assert_int_eq(tg_clip_grad_norm((tg_tensor *[]){ a, b, a }, 3, 1, &total), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("params[2] is also params[0]");
    TG_OK_(tg_clip_grad_norm(NULL, 0, 1, &total));
    ck_assert(total == 0.0);

    /* A NaN or an infinity: TG_ERR_RANGE naming it, the norm reported, no
     * gradient changed (the other gradient stays above the threshold). */
    tg_test_set_grad(a, (const double[]){ 30, NAN, 0 });
    ck_assert_int_eq(tg_clip_grad_norm(ps, 4, 1, &total), TG_ERR_RANGE);
    ck_assert(isnan(total));
    TG_ASSERT_ERROR_HAS("the gradient of a is not finite (nan at flat index 1)");
    TG_ASSERT_ERROR_HAS("no gradient was changed");
    ck_assert(at(tg_grad(a), 0) == 30.0 && at(tg_grad(b), 1) == 6.0);
    tg_test_set_grad(a, (const double[]){ 0, 0, -INFINITY });
    ck_assert_int_eq(tg_clip_grad_norm(ps, 4, 1, &total), TG_ERR_RANGE);
    ck_assert(isinf(total));
    TG_ASSERT_ERROR_HAS("-inf at flat index 2");
    /* An f64 sum of squares that overflows, every element finite. */
    tg_test_set_grad(a, (const double[]){ 1e200, 1e200, 0 });
    ck_assert_int_eq(tg_clip_grad_norm(ps, 4, 1, &total), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("overflows a double");
    ck_assert(at(tg_grad(a), 0) == 1e200);

    /* Followed by a step, it is the optimizer's global_clipnorm, bit for bit. */
    tg_tensor *e = param("e", TG_F32, 3, (const double[]){ 0.1, 0.2, 0.3 });
    tg_tensor *f = param("f", TG_F32, 3, (const double[]){ 0.1, 0.2, 0.3 });
    tg_optimizer *oe = tg_optimizer_new_adam(&e, 1, NULL);
    tg_optimizer *of = tg_optimizer_new_adam(&f, 1, NULL);
    TG_CHECK(oe && of);
    TG_OK_(tg_optimizer_set_clipping(oe, &(tg_clip_opts){ .global_clipnorm = 0.7 }));
    for (int t = 0; t < 3; t++) {
        const double gv[3] = { 0.3 * t - 1, 2.5, 0.125 * t };
        tg_test_set_grad(e, gv);
        tg_test_set_grad(f, gv);
        TG_OK_(tg_optimizer_step(oe));
        TG_OK_(tg_clip_grad_norm(&f, 1, 0.7, NULL));
        TG_OK_(tg_optimizer_step(of));
        ASSERT_TENSOR_EQ(e, f);
    }
    tg_optimizer_free(oe);
    tg_optimizer_free(of);
    tg_release(e);
    tg_release(f);
    tg_release(a);
    tg_release(b);
    tg_release(c);
    tg_release(d);
}
END_TEST

START_TEST(test_bad_settings)
{
    tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.weight_decay = -1;
    ck_assert_ptr_null(tg_optimizer_new_adam(NULL, 0, &ao));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_adam: weight_decay = -1 must be >= 0");
    tg_rmsprop_opts ro = TG_RMSPROP_OPTS_INIT;
    ro.weight_decay = NAN;
    ck_assert_ptr_null(tg_optimizer_new_rmsprop(NULL, 0, &ro));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_rmsprop: weight_decay = nan is not finite");
    ro.weight_decay = -0.5;
    ck_assert_ptr_null(tg_optimizer_new_rmsprop(NULL, 0, &ro));
    TG_ASSERT_ERROR_HAS("weight_decay = -0.5 must be >= 0");
    tg_adamw_opts wo = TG_ADAMW_OPTS_INIT;
    wo.weight_decay = -0.004;
    ck_assert_ptr_null(tg_optimizer_new_adamw(NULL, 0, &wo));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_adamw: weight_decay = -0.004 must be >= 0");
    wo = (tg_adamw_opts)TG_ADAMW_OPTS_INIT;
    wo.beta1 = 1;
    ck_assert_ptr_null(tg_optimizer_new_adamw(NULL, 0, &wo));
    TG_ASSERT_ERROR_HAS("beta1 = 1 and beta2 = 0.999 must be in [0, 1)");
    wo = (tg_adamw_opts)TG_ADAMW_OPTS_INIT;
    wo.lr = INFINITY;
    ck_assert_ptr_null(tg_optimizer_new_adamw(NULL, 0, &wo));
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_new_adamw: lr = inf is not finite");

    tg_tensor *p = param("p", TG_F64, 2, (const double[]){ 1, 2 });
    tg_optimizer *opt = tg_optimizer_new_adamw(&p, 1, NULL);
    TG_CHECK(opt);
    ck_assert_int_eq(tg_optimizer_set_clipping(NULL, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipnorm = -1 }),
                     TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_set_clipping: clipnorm = -1 must be >= 0 "
                     "(0 = off)");
    ck_assert_int_eq(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipvalue = NAN }),
                     TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_set_clipping: clipvalue = nan is not finite");
    ck_assert_int_eq(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .global_clipnorm =
                                                                         INFINITY }),
                     TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("global_clipnorm = inf is not finite");
    ck_assert_int_eq(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipvalue = 1,
                                                                     .global_clipnorm = 2 }),
                     TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_set_clipping: clipvalue = 1 and "
                     "global_clipnorm = 2 are both set; set at most one (as Keras)");
    tg_clip_opts got;
    TG_OK_(tg_optimizer_clipping(&got, opt)); /* failed sets changed nothing */
    ck_assert(got.clipvalue == 0 && got.clipnorm == 0 && got.global_clipnorm == 0);
    ck_assert_int_eq(tg_optimizer_clipping(NULL, opt), TG_ERR_ARG);
    TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipnorm = 3 }));
    TG_OK_(tg_optimizer_set_clipping(opt, NULL)); /* all off */
    TG_OK_(tg_optimizer_clipping(&got, opt));
    ck_assert(got.clipnorm == 0);

    /* A norm that overflows under clipnorm: the step is refused, nothing moves. */
    TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .clipnorm = 1 }));
    tg_test_set_grad(p, (const double[]){ 1e300, -1e300 });
    ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
    ck_assert_str_eq(tg_last_error(), "tg_optimizer_step: clipnorm: the norm of the gradient of "
                     "p overflows a double; no parameter was changed");
    TG_OK_(tg_optimizer_set_clipping(opt, &(tg_clip_opts){ .global_clipnorm = 1 }));
    ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("global_clipnorm: the global gradient norm overflows a double");
    ck_assert_int_eq(tg_optimizer_steps(opt), 0);
    ck_assert(at(p, 0) == 1.0 && at(p, 1) == 2.0);
    /* A NaN gradient is still refused first, by name. */
    tg_test_set_grad(p, (const double[]){ NAN, 0 });
    ck_assert_int_eq(tg_optimizer_step(opt), TG_ERR_RANGE);
    TG_ASSERT_ERROR_HAS("the gradient of p is not finite");
    tg_optimizer_free(opt);
    tg_release(p);
}
END_TEST

/* ---------------------------------------------------------------- state dicts */

/* The new settings are exported and restored; AdamW round-trips its moments
 * and step so the next steps are identical. */
START_TEST(test_state_dict_new_settings)
{
    const double p0[3] = { 0.5, -1.0, 2.0 };
    const double g[5][3] = { { 0.1, -0.2, 3 }, { -0.05, 0.4, 1 }, { 0.3, 0, -2 },
                             { 1, 1, 1 }, { -2, 0.5, 0 } };
    for (int kind = 0; kind < 3; kind++) {
        tg_tensor *a = param("w", TG_F64, 3, p0), *b = param("w", TG_F64, 3, p0);
        tg_optimizer *oa, *ob;
        if (kind == 0) {
            oa = tg_optimizer_new_adamw(&a, 1, &(tg_adamw_opts){ 0.02, 0.8, 0.99, 1e-6, 0.1 });
            ob = tg_optimizer_new_adamw(&b, 1, NULL);
        } else if (kind == 1) {
            oa = tg_optimizer_new_adam(&a, 1, &(tg_adam_opts){ 0.02, 0.8, 0.99, 1e-6, 0.1 });
            ob = tg_optimizer_new_adam(&b, 1, NULL);
        } else {
            oa = tg_optimizer_new_rmsprop(&a, 1, &(tg_rmsprop_opts){ 0.02, 0.8, 0, 1e-6, 0.1 });
            ob = tg_optimizer_new_rmsprop(&b, 1, NULL);
        }
        TG_CHECK(oa && ob);
        TG_OK_(tg_optimizer_set_clipping(oa, &(tg_clip_opts){ .clipnorm = 2.5 }));
        TG_OK_(tg_optimizer_set_clipping(ob, &(tg_clip_opts){ .clipvalue = 0.1 }));
        for (int t = 0; t < 3; t++) {
            tg_test_set_grad(a, g[t]);
            TG_OK_(tg_optimizer_step(oa));
        }
        tg_state_dict *sd = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(oa, sd, "opt/"));
        ck_assert(attr_f64(sd, "opt/weight_decay") == 0.1);
        ck_assert(attr_f64(sd, "opt/clipnorm") == 2.5);
        ck_assert(attr_f64(sd, "opt/clipvalue") == 0.0);
        ck_assert(attr_f64(sd, "opt/global_clipnorm") == 0.0);
        tg_state_dict *copy = copy_without(sd, NULL);
        /* The entries of copy are oa's live slots: load from a snapshot. */
        for (size_t i = 0; i < tg_state_dict_size(copy); i++) {
            tg_tensor *t = tg_tensor_copy(tg_state_dict_tensor_at(copy, i));
            TG_OK_(tg_state_dict_set(copy, tg_state_dict_name_at(copy, i), t));
            tg_release(t);
        }
        TG_OK_(tg_tensor_copy_into(b, a));
        TG_OK_(tg_optimizer_check_state_dict(ob, copy, "opt/"));
        TG_OK_(tg_optimizer_load_state_dict(ob, copy, "opt/"));
        ck_assert_int_eq(tg_optimizer_steps(ob), 3);
        tg_clip_opts got;
        TG_OK_(tg_optimizer_clipping(&got, ob));
        ck_assert(got.clipnorm == 2.5 && got.clipvalue == 0 && got.global_clipnorm == 0);
        for (int t = 3; t < 5; t++) {
            tg_test_set_grad(a, g[t]);
            tg_test_set_grad(b, g[t]);
            TG_OK_(tg_optimizer_step(oa));
            TG_OK_(tg_optimizer_step(ob));
            ASSERT_TENSOR_EQ(b, a);
        }
        tg_state_dict_free(sd);
        tg_state_dict_free(copy);
        tg_optimizer_free(oa);
        tg_optimizer_free(ob);
        tg_release(a);
        tg_release(b);
    }
}
END_TEST

/* A state dict written before weight decay and clipping existed (no
 * "weight_decay" for adam/rmsprop, no clipping keys) loads with them at their
 * defaults, 0 / off, whatever the loading optimizer had. */
START_TEST(test_old_state_dict_loads)
{
    static const char *const old_keys[] = { "opt/weight_decay", "opt/clipvalue", "opt/clipnorm",
                                            "opt/global_clipnorm", NULL };
    const double p0[2] = { 1.0, -2.0 };
    for (int kind = 0; kind < 2; kind++) {
        tg_tensor *a = param("w", TG_F64, 2, p0), *b = param("w", TG_F64, 2, p0);
        tg_optimizer *oa = kind ? tg_optimizer_new_rmsprop(&a, 1, NULL)
                                : tg_optimizer_new_adam(&a, 1, NULL);
        /* b's optimizer has decay and clipping: the old dict turns them off. */
        tg_optimizer *ob = kind ? tg_optimizer_new_rmsprop(&b, 1, &(tg_rmsprop_opts){
                                      1e-3, 0.9, 0, 1e-7, 0.5 })
                                : tg_optimizer_new_adam(&b, 1, &(tg_adam_opts){
                                      1e-3, 0.9, 0.999, 1e-7, 0.5 });
        TG_CHECK(oa && ob);
        TG_OK_(tg_optimizer_set_clipping(ob, &(tg_clip_opts){ .clipvalue = 0.01 }));
        tg_test_set_grad(a, (const double[]){ 0.5, 0.25 });
        TG_OK_(tg_optimizer_step(oa));
        tg_state_dict *sd = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(oa, sd, "opt/"));
        tg_state_dict *old = copy_without(sd, old_keys);
        for (const char *const *k = old_keys; *k; k++)
            ck_assert(!tg_state_dict_has(old, *k));
        ck_assert_int_eq(tg_state_dict_attr_count(old) + 4, tg_state_dict_attr_count(sd));
        TG_OK_(tg_optimizer_check_state_dict(ob, old, "opt/"));
        TG_OK_(tg_optimizer_load_state_dict(ob, old, "opt/"));
        tg_clip_opts got;
        TG_OK_(tg_optimizer_clipping(&got, ob));
        ck_assert(got.clipvalue == 0 && got.clipnorm == 0 && got.global_clipnorm == 0);
        tg_state_dict *again = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(ob, again, "opt/"));
        ck_assert(attr_f64(again, "opt/weight_decay") == 0.0);
        /* ... and the next step is the one the old code would have taken. */
        TG_OK_(tg_tensor_copy_into(b, a));
        tg_test_set_grad(a, (const double[]){ -1, 2 });
        tg_test_set_grad(b, (const double[]){ -1, 2 });
        TG_OK_(tg_optimizer_step(oa));
        TG_OK_(tg_optimizer_step(ob));
        ASSERT_TENSOR_EQ(b, a);
        tg_state_dict_free(sd);
        tg_state_dict_free(old);
        tg_state_dict_free(again);
        tg_optimizer_free(oa);
        tg_optimizer_free(ob);
        tg_release(a);
        tg_release(b);
    }

    /* SGD's and AdamW's weight_decay were always written: still required. */
    tg_tensor *p = param("w", TG_F64, 2, p0);
    tg_optimizer *sgd = tg_optimizer_new_sgd(&p, 1, NULL);
    tg_optimizer *adamw = tg_optimizer_new_adamw(&p, 1, NULL);
    TG_CHECK(sgd && adamw);
    for (int k = 0; k < 2; k++) {
        tg_optimizer *o = k ? adamw : sgd;
        tg_state_dict *sd = tg_state_dict_new();
        TG_OK_(tg_optimizer_state_dict(o, sd, "opt/"));
        tg_state_dict *old = copy_without(sd, old_keys);
        ck_assert_int_eq(tg_optimizer_load_state_dict(o, old, "opt/"), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS("missing attribute 'opt/weight_decay'");
        tg_state_dict *noclip = copy_without(sd, old_keys + 1); /* clipping may be absent */
        TG_OK_(tg_optimizer_load_state_dict(o, noclip, "opt/"));
        tg_state_dict_free(sd);
        tg_state_dict_free(old);
        tg_state_dict_free(noclip);
    }
    tg_optimizer_free(sgd);
    tg_optimizer_free(adamw);
    tg_release(p);
}
END_TEST

/* Bad new settings in a state dict: TG_ERR_FORMAT naming the attribute and the
 * problem, from the check and the load alike, nothing changed. */
START_TEST(test_state_dict_bad_settings)
{
    tg_tensor *p = param("w", TG_F64, 2, (const double[]){ 1, 2 });
    tg_optimizer *adamw = tg_optimizer_new_adamw(&p, 1, NULL);
    tg_optimizer *adam = tg_optimizer_new_adam(&p, 1, NULL);
    TG_CHECK(adamw && adam);
    tg_state_dict *sd = tg_state_dict_new(), *sd_adam = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(adamw, sd, "opt/"));
    TG_OK_(tg_optimizer_state_dict(adam, sd_adam, ""));
    /* AdamW and Adam state is not interchangeable. */
    ck_assert_int_eq(tg_optimizer_load_state_dict(adam, sd, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("of a \"adamw\" optimizer, this one is \"adam\"");

    struct { const char *key; double v; const char *needle; } cases[] = {
        { "opt/weight_decay", -0.1, "weight_decay = -0.1 must be >= 0" },
        { "opt/weight_decay", NAN, "weight_decay = nan is not finite" },
        { "opt/clipnorm", -1, "bad clipping: clipnorm = -1 must be >= 0 (0 = off)" },
        { "opt/clipvalue", NAN, "bad clipping: clipvalue = nan is not finite" },
        { "opt/global_clipnorm", INFINITY, "global_clipnorm = inf is not finite" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_state_dict *bad = copy_without(sd, NULL);
        TG_OK_(tg_state_dict_set_f64(bad, cases[i].key, cases[i].v));
        ck_assert_int_eq(tg_optimizer_check_state_dict(adamw, bad, "opt/"), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS(cases[i].needle);
        TG_ASSERT_ERROR_HAS("tg_optimizer_check_state_dict");
        ck_assert_int_eq(tg_optimizer_load_state_dict(adamw, bad, "opt/"), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS(cases[i].needle);
        tg_state_dict_free(bad);
    }
    /* Two clippings at once; a clipping of the wrong type; in rmsprop too. */
    tg_state_dict *bad = copy_without(sd, NULL);
    TG_OK_(tg_state_dict_set_f64(bad, "opt/clipnorm", 1));
    TG_OK_(tg_state_dict_set_f64(bad, "opt/global_clipnorm", 2));
    ck_assert_int_eq(tg_optimizer_load_state_dict(adamw, bad, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("clipnorm = 1 and global_clipnorm = 2 are both set");
    tg_state_dict_free(bad);
    bad = copy_without(sd, NULL);
    TG_OK_(tg_state_dict_set_str(bad, "opt/clipvalue", "1"));
    ck_assert_int_eq(tg_optimizer_load_state_dict(adamw, bad, "opt/"), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("opt/clipvalue");
    tg_state_dict_free(bad);
    bad = copy_without(sd_adam, NULL);
    TG_OK_(tg_state_dict_set_i64(bad, "weight_decay", 1));
    ck_assert_int_eq(tg_optimizer_load_state_dict(adam, bad, ""), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("'weight_decay'");
    tg_state_dict_free(bad);

    /* Nothing was changed by the failed loads. */
    tg_state_dict *now = tg_state_dict_new();
    TG_OK_(tg_optimizer_state_dict(adamw, now, "opt/"));
    ck_assert(attr_f64(now, "opt/weight_decay") == 0.004);
    ck_assert(attr_f64(now, "opt/clipnorm") == 0 && attr_f64(now, "opt/clipvalue") == 0);
    tg_state_dict_free(now);
    tg_state_dict_free(sd);
    tg_state_dict_free(sd_adam);
    tg_optimizer_free(adamw);
    tg_optimizer_free(adam);
    tg_release(p);
}
END_TEST

/* ---------------------------------------------------------------- schedules */

START_TEST(test_lr_schedules)
{
    tg_lr_schedule st = TG_LR_SCHEDULE_INIT;
    st.kind = TG_LR_STEP;
    st.lr = 0.1;
    st.step_size = 3;
    st.gamma = 0.5;
    /* t = 0..2: 0.1; 3..5: 0.05; 6..8: 0.025 */
    const double want_step[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025};
    for (int t = 0; t < 7; t++)
        ck_assert_double_eq_tol(tg_lr_schedule_at(&st, t), want_step[t], 1e-15);
    tg_lr_schedule ex = st;
    ex.kind = TG_LR_EXPONENTIAL;
    ex.step_size = 4;
    ex.gamma = 0.9;
    /* lr 0.9^(t/4): at t = 2, 0.1 sqrt(0.9); with staircase 0.1 until t = 4 */
    ck_assert_double_eq_tol(tg_lr_schedule_at(&ex, 2), 0.1 * sqrt(0.9), 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&ex, 8), 0.1 * 0.81, 1e-15);
    ex.staircase = true;
    ck_assert_double_eq_tol(tg_lr_schedule_at(&ex, 3), 0.1, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&ex, 7), 0.09, 1e-15);
    tg_lr_schedule co = TG_LR_SCHEDULE_INIT;
    co.kind = TG_LR_COSINE;
    co.lr = 1.0;
    co.step_size = 10;
    co.alpha = 0.2;
    /* half way: cos(pi/2) = 0, so (1 - 0.2) * 0.5 + 0.2 = 0.6; the end and after: 0.2 */
    ck_assert_double_eq_tol(tg_lr_schedule_at(&co, 0), 1.0, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&co, 5), 0.6, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&co, 10), 0.2, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&co, 1000), 0.2, 1e-15);
    /* t = 2.5 of 10: 0.8 * (1 + cos(pi / 4)) / 2 + 0.2 */
    co.step_size = 4;
    ck_assert_double_eq_tol(tg_lr_schedule_at(&co, 1),
                            0.8 * (1 + sqrt(0.5)) / 2 + 0.2, 1e-15);
    tg_lr_schedule c0 = TG_LR_SCHEDULE_INIT;
    ck_assert(tg_lr_schedule_at(&c0, 123) == 1e-3);
    /* errors name the field */
    st.step_size = 0;
    ck_assert(isnan(tg_lr_schedule_at(&st, 1)));
    TG_ASSERT_ERROR_HAS("step_size must be >= 1, not 0");
    st.step_size = 3;
    ck_assert(isnan(tg_lr_schedule_at(&st, -1)));
    TG_ASSERT_ERROR_HAS("t must be >= 0, not -1");
    st.gamma = 0;
    ck_assert(isnan(tg_lr_schedule_at(&st, 1)));
    TG_ASSERT_ERROR_HAS("gamma must be finite and > 0");
    co.alpha = 1.5;
    ck_assert(isnan(tg_lr_schedule_at(&co, 1)));
    TG_ASSERT_ERROR_HAS("alpha must be in [0, 1], not 1.5");
    c0.lr = NAN;
    ck_assert(isnan(tg_lr_schedule_at(&c0, 1)));
    TG_ASSERT_ERROR_HAS("lr must be finite and > 0");
    c0.lr = 1;
    c0.kind = (tg_lr_kind)9;
    ck_assert(isnan(tg_lr_schedule_at(&c0, 1)));
    TG_ASSERT_ERROR_HAS("kind 9 is not a tg_lr_kind");
    ck_assert(isnan(tg_lr_schedule_at(NULL, 1)));
}
END_TEST

/* Keras's ReduceLROnPlateau rules on a loss sequence worked out by hand:
 * patience 2, factor 0.5, cooldown 1, min_delta 0.01, min_lr 0.02. */
START_TEST(test_lr_plateau)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *p = tg_zeros(TG_F32, TG_SHAPE(2));
    TG_OK_(tg_set_requires_grad(p, true));
    tg_optimizer *opt = tg_optimizer_new_sgd(&p, 1, &(tg_sgd_opts){ 0.1, 0, false, 0 });
    TG_CHECK(opt != NULL);
    tg_lr_plateau pl;
    TG_OK_(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 0.5, 2, 0.01, 1, 0.02, false }));
    /* Keras counts the cooldown down before it compares, so with cooldown 1 the
     * epoch after a reduction already counts. epoch: value -> wait, lr
     *  1: 1.0  best                0  0.1
     *  2: 0.995 (not by 0.01)      1
     *  3: 0.999                    2 -> 0.05, cooldown 1
     *  4: 1.2  (cooldown 1 -> 0)   1
     *  5: 1.1                      2 -> 0.025
     *  6: NaN  (never better)      1
     *  7: 0.5  better              0
     *  8: 0.6                      1
     *  9: 0.6                      2 -> 0.0125 is below min_lr: 0.02
     * 10: 0.6                      1
     * 11: 0.6                      2, but lr is not above min_lr: stays */
    const double v[] = {1.0, 0.995, 0.999, 1.2, 1.1, NAN, 0.5, 0.6, 0.6, 0.6, 0.6};
    const double lr[] = {0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02};
    const bool red[] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0};
    for (int e = 0; e < 11; e++) {
        bool r = !red[e];
        TG_OK_(tg_lr_plateau_update(&pl, opt, v[e], &r));
        ck_assert_msg(r == red[e], "epoch %d: reduced %d", e + 1, r);
        ck_assert_msg(fabs(tg_optimizer_lr(opt) - lr[e]) < 1e-15, "epoch %d: lr %g", e + 1,
                      tg_optimizer_lr(opt));
    }
    /* cooldown 3, patience 1: the two epochs after a reduction do not count */
    TG_OK_(tg_optimizer_set_lr(opt, 0.1));
    TG_OK_(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 0.5, 1, 0, 3, 0, false }));
    const double v3[] = {1.0, 2.0, 2.0, 2.0, 2.0};
    const double lr3[] = {0.1, 0.05, 0.05, 0.05, 0.025};
    for (int e = 0; e < 5; e++) {
        TG_OK_(tg_lr_plateau_update(&pl, opt, v3[e], NULL));
        ck_assert_msg(fabs(tg_optimizer_lr(opt) - lr3[e]) < 1e-15, "cooldown epoch %d: lr %g",
                      e + 1, tg_optimizer_lr(opt));
    }
    /* maximize: an accuracy that rises never reduces */
    TG_OK_(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 0.5, 1, 0, 0, 0, true }));
    TG_OK_(tg_optimizer_set_lr(opt, 0.1));
    for (int e = 0; e < 5; e++)
        TG_OK_(tg_lr_plateau_update(&pl, opt, 0.5 + 0.1 * e, NULL));
    ck_assert(tg_optimizer_lr(opt) == 0.1);
    TG_OK_(tg_lr_plateau_update(&pl, opt, 0.2, NULL)); /* patience 1: at once */
    ck_assert(tg_optimizer_lr(opt) == 0.05);
    /* errors */
    ck_assert(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 1.0, 2, 0, 0, 0, false }) ==
              TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("factor must be in (0, 1), not 1");
    ck_assert(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 0.5, -1, 0, 0, 0, false }) ==
              TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("patience -1");
    ck_assert(tg_lr_plateau_init(&pl, &(tg_lr_plateau_opts){ 0.5, 1, NAN, 0, 0, false }) ==
              TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("min_delta");
    ck_assert(tg_lr_plateau_update(&pl, NULL, 1.0, NULL) == TG_ERR_ARG);
    tg_optimizer_free(opt);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("optim");
    struct { const char *name; const TTest *test; } cases[] = {
        { "adam_weight_decay", test_adam_weight_decay },
        { "zero_decay", test_zero_decay_is_old_update },
        { "rmsprop_weight_decay", test_rmsprop_weight_decay },
        { "adamw", test_adamw_matches_formula },
        { "clip_value", test_clip_value },
        { "clip_noop", test_clip_noop_is_exact },
        { "clip_norm", test_clip_norm },
        { "clip_global_norm", test_clip_global_norm },
        { "clip_grad_norm", test_clip_grad_norm_standalone },
        { "bad_settings", test_bad_settings },
        { "state_dict", test_state_dict_new_settings },
        { "old_state_dict", test_old_state_dict_loads },
        { "state_dict_bad", test_state_dict_bad_settings },
        { "lr_schedules", test_lr_schedules },
        { "lr_plateau", test_lr_plateau },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tg_tcase(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
