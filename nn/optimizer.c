/* nn/optimizer.c -- SGD (momentum, Nesterov, L2 weight decay), Adam and RMSprop
 * as Keras 2.x computes them (with PyTorch's coupled L2 weight decay), AdamW
 * (decoupled decay, as Keras 3), and gradient clipping by value, by norm and by
 * global norm (formulas in nn/nn.h), behind one opaque type.
 *
 * A step updates parameters in place with tight loops (OpenMP over elements for
 * large tensors) and allocates nothing: the per-parameter state ("slots":
 * velocities, moments) is allocated once, at construction. Nothing is recorded
 * for autodiff: the loops write through data pointers, then bump versions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor/state_dict_impl.h"
#include "nn/nn_impl.h"

#define MAX_HP 5
#define MAX_SLOTS 2

/* Gradient clipping, common to every type: 0 = off, at most one set (as Keras). */
enum { CLIP_VALUE, CLIP_NORM, CLIP_GLOBAL, N_CLIP };
static const char *const clip_names[N_CLIP] = { "clipvalue", "clipnorm", "global_clipnorm" };

typedef struct opt_type opt_type;

struct tg_optimizer {
    const opt_type *type;
    size_t n;
    tg_tensor **params;           /* owned references */
    char **names;                 /* malloc'd: tensor name or "param<i>" */
    int n_slots;
    const char *slot_names[MAX_SLOTS];
    tg_tensor **slots[MAX_SLOTS]; /* slots[s][i]: owned, zeroed at construction */
    int64_t step;
    double hp[MAX_HP];            /* hyper-parameters, named by the type */
    double clip[N_CLIP];          /* clipping thresholds, 0 = off */
    double *scale;                /* [n]: per-step gradient scale (clipping), allocated once */
};

/* One row per optimizer kind: everything the shared code needs to construct,
 * check, export and import it. */
struct opt_type {
    const char *name;              /* tg_optimizer_type(), the state dict's "type" */
    int n_hp;
    const char *hp_names[MAX_HP];  /* state dict attribute names, in hp[] order */
    bool hp_is_flag[MAX_HP];       /* exported as i64 0/1 */
    /* Added after state dicts of this type were first written: a state dict
     * without it loads it as 0, which is what the older code did. */
    bool hp_added[MAX_HP];
    /* Slots kept always, then (when optional_slot_hp >= 0 and that
     * hyper-parameter is non-zero) one more: slot_names[n_slots]. */
    const char *slot_names[MAX_SLOTS];
    int n_slots;
    int optional_slot_hp;
    /* The domains of hp[] beyond "finite" and "lr > 0"; errors name the error
     * context (the public function checking them). */
    tg_status (*check)(const double *hp);
    /* Updates parameter i whose gradient is g (same shape/dtype, contiguous),
     * taking scale * g clamped to o->clip[CLIP_VALUE] (when > 0) as the gradient. */
    void (*update)(tg_optimizer *o, size_t i, tg_tensor *p, const tg_tensor *g, double scale);
};

/* ---------------------------------------------------------------- update rules */

enum { SGD_LR, SGD_MOMENTUM, SGD_NESTEROV, SGD_WD };
enum { ADAM_LR, ADAM_B1, ADAM_B2, ADAM_EPS, ADAM_WD }; /* also AdamW's */
enum { RMS_LR, RMS_RHO, RMS_MOMENTUM, RMS_EPS, RMS_WD };

/* The gradient element an update uses: g scaled by the norm clipping's factor
 * (exactly 1 when off or under the threshold), then clamped to [-cv, cv]. T
 * arithmetic, as Keras clips in the variable's dtype. Without clipping by value
 * cv is infinity (clip_bound), which leaves every finite g as it is: one
 * branch-free body that vectorises (compare-and-blend), where a test of cv
 * inside the loop made the f32 Adam step three times slower. */
#define CLIPPED(gk, sc, cv) CLAMP((gk) * (sc), (cv))
#define CLAMP(x, cv) ((x) < -(cv) ? -(cv) : (x) > (cv) ? (cv) : (x))

static double clip_bound(const tg_optimizer *o)
{
    return o->clip[CLIP_VALUE] > 0 ? o->clip[CLIP_VALUE] : INFINITY;
}

/* Whether this parameter's gradient is used as it is (no clipping acts on it).
 * The loops then take their FULL = 0 body, the update of before clipping and
 * decay existed: the same result (clipping off and a zero decay change
 * nothing, bit for bit) without the extra arithmetic, which measurably slowed
 * the f32 Adam step. */
static bool plain_step(const tg_optimizer *o, double scale)
{
    return scale == 1.0 && !(o->clip[CLIP_VALUE] > 0);
}

/* The same loop body for f32 and f64: T is the element type (SQRT its square
 * root); arithmetic stays in T, as Keras computes in the variable's dtype. Below
 * 32768 elements a parallel region costs more than it saves. */
#define SGD_LOOP(T, FULL)                                                            \
    do {                                                                             \
        T *p = tg_tensor_data(pt);                                                   \
        const T *g = tg_tensor_data(gt);                                             \
        T *v = o->n_slots ? (T *)tg_tensor_data(o->slots[0][i]) : NULL;              \
        const T lr = (T)o->hp[SGD_LR], mu = (T)o->hp[SGD_MOMENTUM];                  \
        const T wd = (T)o->hp[SGD_WD];                                               \
        const bool nesterov = o->hp[SGD_NESTEROV] != 0;                              \
        const T sc = (T)scale, cv = (T)clip_bound(o);                                \
        _Pragma("omp parallel for simd if (n > 32768) schedule(static)")             \
        for (int64_t k = 0; k < n; k++) {                                            \
            T gk = (FULL ? CLIPPED(g[k], sc, cv) : g[k]) + wd * p[k];                \
            if (!v) {                                                                \
                p[k] -= lr * gk;                                                     \
            } else {                                                                 \
                T vk = mu * v[k] - lr * gk;                                          \
                v[k] = vk;                                                           \
                p[k] += nesterov ? mu * vk - lr * gk : vk;                           \
            }                                                                        \
        }                                                                            \
    } while (0)

static void sgd_update(tg_optimizer *o, size_t i, tg_tensor *pt, const tg_tensor *gt,
                       double scale)
{
    int64_t n = tg_tensor_numel(pt);
    bool full = !plain_step(o, scale), f32 = tg_tensor_dtype(pt) == TG_F32;
    if (f32 && full)
        SGD_LOOP(float, 1);
    else if (f32)
        SGD_LOOP(float, 0);
    else if (full)
        SGD_LOOP(double, 1);
    else
        SGD_LOOP(double, 0);
}

/* Adam with coupled decay wdc (Adam: g' = g + wdc p) or decoupled decay wdd
 * (AdamW: p' = p - p wdd lr, Keras 3's "variable - variable * wd * lr", before
 * the Adam step on p'); one of the two is 0, and a zero decay changes nothing,
 * bit for bit. */
#define ADAM_LOOP(T, SQRT, FULL)                                                     \
    do {                                                                             \
        T *p = tg_tensor_data(pt);                                                   \
        const T *g = tg_tensor_data(gt);                                             \
        T *m = tg_tensor_data(o->slots[0][i]);                                       \
        T *v = tg_tensor_data(o->slots[1][i]);                                       \
        const T b1 = (T)o->hp[ADAM_B1], b2 = (T)o->hp[ADAM_B2];                      \
        const T eps = (T)o->hp[ADAM_EPS], lr_t = (T)lr_t_d, lr = (T)o->hp[ADAM_LR];  \
        const T wdc = (T)wdc_d, wdd = (T)wdd_d;                                      \
        const T sc = (T)scale, cv = (T)clip_bound(o);                                \
        _Pragma("omp parallel for simd if (n > 32768) schedule(static)")             \
        for (int64_t k = 0; k < n; k++) {                                            \
            T gk = FULL ? CLIPPED(g[k], sc, cv) + wdc * p[k] : g[k];                 \
            T mk = b1 * m[k] + (1 - b1) * gk;                                        \
            T vk = b2 * v[k] + (1 - b2) * gk * gk;                                   \
            m[k] = mk;                                                               \
            v[k] = vk;                                                               \
            T pk = FULL ? p[k] - p[k] * wdd * lr : p[k];                             \
            p[k] = pk - lr_t * mk / (SQRT(vk) + eps);                                \
        }                                                                            \
    } while (0)

static void adam_loop(tg_optimizer *o, size_t i, tg_tensor *pt, const tg_tensor *gt,
                      double scale, double wdc_d, double wdd_d)
{
    int64_t n = tg_tensor_numel(pt);
    double t = (double)o->step;
    double lr_t_d = o->hp[ADAM_LR] * sqrt(1.0 - pow(o->hp[ADAM_B2], t)) /
                    (1.0 - pow(o->hp[ADAM_B1], t));
    bool full = !plain_step(o, scale) || wdc_d != 0 || wdd_d != 0;
    bool f32 = tg_tensor_dtype(pt) == TG_F32;
    if (f32 && full)
        ADAM_LOOP(float, sqrtf, 1);
    else if (f32)
        ADAM_LOOP(float, sqrtf, 0);
    else if (full)
        ADAM_LOOP(double, sqrt, 1);
    else
        ADAM_LOOP(double, sqrt, 0);
}

static void adam_update(tg_optimizer *o, size_t i, tg_tensor *pt, const tg_tensor *gt,
                        double scale)
{
    adam_loop(o, i, pt, gt, scale, o->hp[ADAM_WD], 0.0);
}

static void adamw_update(tg_optimizer *o, size_t i, tg_tensor *pt, const tg_tensor *gt,
                         double scale)
{
    adam_loop(o, i, pt, gt, scale, 0.0, o->hp[ADAM_WD]);
}

#define RMS_LOOP(T, SQRT, FULL)                                                      \
    do {                                                                             \
        T *p = tg_tensor_data(pt);                                                   \
        const T *g = tg_tensor_data(gt);                                             \
        T *ms = tg_tensor_data(o->slots[0][i]);                                      \
        T *mom = o->n_slots > 1 ? (T *)tg_tensor_data(o->slots[1][i]) : NULL;        \
        const T lr = (T)o->hp[RMS_LR], rho = (T)o->hp[RMS_RHO];                      \
        const T mu = (T)o->hp[RMS_MOMENTUM], eps = (T)o->hp[RMS_EPS];                \
        const T wd = (T)o->hp[RMS_WD];                                               \
        const T sc = (T)scale, cv = (T)clip_bound(o);                                \
        _Pragma("omp parallel for simd if (n > 32768) schedule(static)")             \
        for (int64_t k = 0; k < n; k++) {                                            \
            T gk = FULL ? CLIPPED(g[k], sc, cv) + wd * p[k] : g[k];                  \
            T s = rho * ms[k] + (1 - rho) * gk * gk;                                 \
            ms[k] = s;                                                               \
            T upd;                                                                   \
            if (mom) {                                                               \
                upd = mu * mom[k] + lr * gk / SQRT(s + eps);                         \
                mom[k] = upd;                                                        \
            } else {                                                                 \
                upd = lr * gk / (SQRT(s) + eps);                                     \
            }                                                                        \
            p[k] -= upd;                                                             \
        }                                                                            \
    } while (0)

static void rmsprop_update(tg_optimizer *o, size_t i, tg_tensor *pt, const tg_tensor *gt,
                           double scale)
{
    int64_t n = tg_tensor_numel(pt);
    bool full = !plain_step(o, scale) || o->hp[RMS_WD] != 0;
    bool f32 = tg_tensor_dtype(pt) == TG_F32;
    if (f32 && full)
        RMS_LOOP(float, sqrtf, 1);
    else if (f32)
        RMS_LOOP(float, sqrtf, 0);
    else if (full)
        RMS_LOOP(double, sqrt, 1);
    else
        RMS_LOOP(double, sqrt, 0);
}

static tg_status sgd_check(const double *hp)
{
    if (hp[SGD_MOMENTUM] < 0 || hp[SGD_MOMENTUM] >= 1)
        return tg_error_here(TG_ERR_ARG, "momentum = %g must be in [0, 1)", hp[SGD_MOMENTUM]);
    if (hp[SGD_NESTEROV] != 0 && hp[SGD_MOMENTUM] == 0)
        return tg_error_here(TG_ERR_ARG, "nesterov needs momentum > 0");
    if (hp[SGD_WD] < 0)
        return tg_error_here(TG_ERR_ARG, "weight_decay = %g must be >= 0", hp[SGD_WD]);
    return TG_OK;
}

static tg_status adam_check(const double *hp)
{
    if (hp[ADAM_B1] < 0 || hp[ADAM_B1] >= 1 || hp[ADAM_B2] < 0 || hp[ADAM_B2] >= 1)
        return tg_error_here(TG_ERR_ARG, "beta1 = %g and beta2 = %g must be in [0, 1)",
                             hp[ADAM_B1], hp[ADAM_B2]);
    if (!(hp[ADAM_EPS] > 0))
        return tg_error_here(TG_ERR_ARG, "epsilon = %g must be > 0", hp[ADAM_EPS]);
    if (hp[ADAM_WD] < 0)
        return tg_error_here(TG_ERR_ARG, "weight_decay = %g must be >= 0", hp[ADAM_WD]);
    return TG_OK;
}

static tg_status rmsprop_check(const double *hp)
{
    if (hp[RMS_RHO] < 0 || hp[RMS_RHO] >= 1 || hp[RMS_MOMENTUM] < 0 || hp[RMS_MOMENTUM] >= 1)
        return tg_error_here(TG_ERR_ARG, "rho = %g and momentum = %g must be in [0, 1)",
                             hp[RMS_RHO], hp[RMS_MOMENTUM]);
    if (!(hp[RMS_EPS] > 0))
        return tg_error_here(TG_ERR_ARG, "epsilon = %g must be > 0", hp[RMS_EPS]);
    if (hp[RMS_WD] < 0)
        return tg_error_here(TG_ERR_ARG, "weight_decay = %g must be >= 0", hp[RMS_WD]);
    return TG_OK;
}

static const opt_type sgd_type = {
    .name = "sgd", .n_hp = 4,
    .hp_names = { "lr", "momentum", "nesterov", "weight_decay" },
    .hp_is_flag = { false, false, true, false },
    .slot_names = { "velocity" }, .n_slots = 0, .optional_slot_hp = SGD_MOMENTUM,
    .check = sgd_check, .update = sgd_update,
};

static const opt_type adam_type = {
    .name = "adam", .n_hp = 5,
    .hp_names = { "lr", "beta1", "beta2", "epsilon", "weight_decay" },
    .hp_added = { [ADAM_WD] = true },
    .slot_names = { "m", "v" }, .n_slots = 2, .optional_slot_hp = -1,
    .check = adam_check, .update = adam_update,
};

static const opt_type adamw_type = {
    .name = "adamw", .n_hp = 5,
    .hp_names = { "lr", "beta1", "beta2", "epsilon", "weight_decay" },
    .slot_names = { "m", "v" }, .n_slots = 2, .optional_slot_hp = -1,
    .check = adam_check, .update = adamw_update,
};

static const opt_type rmsprop_type = {
    .name = "rmsprop", .n_hp = 5,
    .hp_names = { "lr", "rho", "momentum", "epsilon", "weight_decay" },
    .hp_added = { [RMS_WD] = true },
    .slot_names = { "rms", "momentum" }, .n_slots = 1, .optional_slot_hp = RMS_MOMENTUM,
    .check = rmsprop_check, .update = rmsprop_update,
};

/* ---------------------------------------------------------------- construction */

static void opt_free(tg_optimizer *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        if (o->params)
            tg_release(o->params[i]);
        if (o->names)
            free(o->names[i]);
        for (int s = 0; s < MAX_SLOTS; s++)
            if (o->slots[s])
                tg_release(o->slots[s][i]);
    }
    free(o->params);
    free(o->names);
    free(o->scale);
    for (int s = 0; s < MAX_SLOTS; s++)
        free(o->slots[s]);
    free(o);
}

void tg_optimizer_free(tg_optimizer *opt)
{
    opt_free(opt);
}

/* Hyper-parameter domains, checked at construction and import. */
static tg_status check_hp(const opt_type *ty, const double *hp)
{
    for (int k = 0; k < ty->n_hp; k++)
        if (!isfinite(hp[k]))
            return tg_error_here(TG_ERR_ARG, "%s = %g is not finite", ty->hp_names[k], hp[k]);
    if (!(hp[0] > 0))
        return tg_error_here(TG_ERR_ARG, "lr = %g must be > 0", hp[0]);
    return ty->check(hp);
}

/* Which slots an optimizer of this type with these hyper-parameters keeps. */
static int slot_count(const opt_type *ty, const double *hp)
{
    int opt = ty->optional_slot_hp;
    return ty->n_slots + (opt >= 0 && hp[opt] != 0 ? 1 : 0);
}

static tg_optimizer *opt_new(const opt_type *ty, tg_tensor *const *params,
                             size_t n, const double *hp)
{
    if (!params && n > 0)
        return tg_null_arg_here("params"), NULL;
    if (check_hp(ty, hp) != TG_OK)
        return NULL;
    tg_runtime_first_compute(); /* denormal flushing before the first step */
    for (size_t i = 0; i < n; i++) {
        tg_tensor *p = params[i];
        if (!p)
            return tg_error_here(TG_ERR_ARG, "params[%zu] is NULL", i), NULL;
        tg_dtype dt = tg_tensor_dtype(p);
        if (dt != TG_F32 && dt != TG_F64)
            return tg_error_here(TG_ERR_DTYPE, "parameter %zu (%s) is %s; optimizers update "
                                 "f32 or f64", i, tg_tensor_name(p) ? tg_tensor_name(p) : "unnamed",
                                 tg_dtype_name(dt)), NULL;
        if (!tg_tensor_is_contiguous(p) || !tg_is_leaf(p))
            return tg_error_here(TG_ERR_ARG, "parameter %zu (%s) must be a contiguous leaf",
                                 i, tg_tensor_name(p) ? tg_tensor_name(p) : "unnamed"), NULL;
        for (size_t j = 0; j < i; j++)
            if (params[j] == p)
                return tg_error_here(TG_ERR_ARG, "parameter %zu is also parameter %zu", i,
                                     j), NULL;
    }
    tg_optimizer *o = calloc(1, sizeof *o);
    if (!o)
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    o->type = ty;
    memcpy(o->hp, hp, sizeof o->hp);
    o->n_slots = slot_count(ty, hp);
    for (int s = 0; s < o->n_slots; s++)
        o->slot_names[s] = ty->slot_names[s];
    o->n = n;
    bool ok = (o->params = calloc(n ? n : 1, sizeof *o->params)) &&
              (o->names = calloc(n ? n : 1, sizeof *o->names)) &&
              (o->scale = calloc(n ? n : 1, sizeof *o->scale));
    for (int s = 0; ok && s < o->n_slots; s++)
        ok = (o->slots[s] = calloc(n ? n : 1, sizeof *o->slots[s])) != NULL;
    if (!ok) {
        opt_free(o);
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    }
    for (size_t i = 0; i < n; i++) {
        tg_tensor *p = params[i];
        o->params[i] = tg_retain(p);
        char name[512];
        if (tg_tensor_name(p))
            snprintf(name, sizeof name, "%s", tg_tensor_name(p));
        else
            snprintf(name, sizeof name, "param%zu", i);
        if (!(o->names[i] = strdup(name))) {
            opt_free(o);
            return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->names[j], name) == 0) {
                opt_free(o);
                return tg_error_here(TG_ERR_ARG, "parameters %zu and %zu are both named \"%s\" "
                                     "(state dict names must be unique)", j, i, name), NULL;
            }
        for (int s = 0; s < o->n_slots; s++) {
            tg_tensor *t = tg_tensor_new_owned(tg_tensor_dtype(p), tg_tensor_ndim(p),
                                               tg_tensor_shape(p));
            o->slots[s][i] = t;
            char sname[600];
            snprintf(sname, sizeof sname, "%s/%s", name, o->slot_names[s]);
            if (!t || tg_tensor_fill(t, 0.0) != TG_OK || tg_tensor_set_name(t, sname) != TG_OK) {
                tg_status st = tg_last_status();
                opt_free(o);
                return tg_error_here(st != TG_OK ? st : TG_ERR_NOMEM, "could not allocate the "
                                     "%s slot of %s", ty->slot_names[s], name), NULL;
            }
        }
    }
    return o;
}

tg_optimizer *tg_optimizer_new_sgd(tg_tensor *const *params, size_t n, const tg_sgd_opts *opts)
{
    tg_sgd_opts d = TG_SGD_OPTS_INIT;
    const tg_sgd_opts *q = opts ? opts : &d;
    double hp[MAX_HP] = { q->lr, q->momentum, q->nesterov ? 1.0 : 0.0, q->weight_decay };
    const char *prev = tg_error_enter("tg_optimizer_new_sgd");
    tg_optimizer *o = opt_new(&sgd_type, params, n, hp);
    tg_error_leave(prev);
    return o;
}

tg_optimizer *tg_optimizer_new_adam(tg_tensor *const *params, size_t n, const tg_adam_opts *opts)
{
    tg_adam_opts d = TG_ADAM_OPTS_INIT;
    const tg_adam_opts *q = opts ? opts : &d;
    double hp[MAX_HP] = { q->lr, q->beta1, q->beta2, q->epsilon, q->weight_decay };
    const char *prev = tg_error_enter("tg_optimizer_new_adam");
    tg_optimizer *o = opt_new(&adam_type, params, n, hp);
    tg_error_leave(prev);
    return o;
}

tg_optimizer *tg_optimizer_new_adamw(tg_tensor *const *params, size_t n,
                                     const tg_adamw_opts *opts)
{
    tg_adamw_opts d = TG_ADAMW_OPTS_INIT;
    const tg_adamw_opts *q = opts ? opts : &d;
    double hp[MAX_HP] = { q->lr, q->beta1, q->beta2, q->epsilon, q->weight_decay };
    const char *prev = tg_error_enter("tg_optimizer_new_adamw");
    tg_optimizer *o = opt_new(&adamw_type, params, n, hp);
    tg_error_leave(prev);
    return o;
}

tg_optimizer *tg_optimizer_new_rmsprop(tg_tensor *const *params, size_t n,
                                       const tg_rmsprop_opts *opts)
{
    tg_rmsprop_opts d = TG_RMSPROP_OPTS_INIT;
    const tg_rmsprop_opts *q = opts ? opts : &d;
    double hp[MAX_HP] = { q->lr, q->rho, q->momentum, q->epsilon, q->weight_decay };
    const char *prev = tg_error_enter("tg_optimizer_new_rmsprop");
    tg_optimizer *o = opt_new(&rmsprop_type, params, n, hp);
    tg_error_leave(prev);
    return o;
}

/* ---------------------------------------------------------------- step */

/* Whether every element of the contiguous f32/f64 tensor t is finite, in one
 * branch-free read: an element is a NaN or an infinity exactly when its
 * exponent bits are all ones, and then adding the exponent's lowest bit to them
 * carries into the sign bit. Integer AND, ADD and an OR reduction vectorise
 * without reassociating floats, at a fraction of the update's cost. */
typedef uint32_t __attribute__((may_alias)) bits32; /* the float's bits, read in place */
typedef uint64_t __attribute__((may_alias)) bits64;

#define FINITE_BITS(U, EXP, LOW, SIGN)                                               \
    do {                                                                             \
        const U *d = tg_tensor_data(t);                                              \
        U bad = 0;                                                                   \
        _Pragma("omp simd reduction(|:bad)")                                         \
        for (int64_t k = 0; k < n; k++)                                              \
            bad |= ((d[k] & (EXP)) + (LOW)) & (SIGN);                                \
        ok = bad == 0;                                                               \
    } while (0)

static bool all_finite(const tg_tensor *t)
{
    int64_t n = tg_tensor_numel(t);
    bool ok;
    if (tg_tensor_dtype(t) == TG_F32)
        FINITE_BITS(bits32, UINT32_C(0x7f800000), UINT32_C(0x00800000), UINT32_C(0x80000000));
    else
        FINITE_BITS(bits64, UINT64_C(0x7ff0000000000000), UINT64_C(0x0010000000000000),
                    UINT64_C(0x8000000000000000));
    return ok;
}

/* The first non-finite element of t in row-major order, any strides (the slow
 * path: after all_finite said there is one, or for a rare strided gradient);
 * -1 when there is none. */
static int64_t first_non_finite(const tg_tensor *t, double *value)
{
    int64_t n = tg_tensor_numel(t);
    for (int64_t k = 0; k < n; k++) {
        double v = tg_get_flat(t, k);
        if (!isfinite(v)) {
            *value = v;
            return k;
        }
    }
    *value = 0;
    return -1;
}

/* The sum of the squares of t's elements (f32/f64, settled, any strides), in
 * double: an f32 gradient cannot overflow it, an f64 one only past a norm of
 * about 1.3e154. In one order for a given build (a simd reduction, no threads),
 * so that clipping is deterministic. */
#define SUMSQ_LOOP(T)                                                                \
    do {                                                                             \
        const T *d = tg_tensor_data(t);                                              \
        _Pragma("omp simd reduction(+:s)")                                           \
        for (int64_t k = 0; k < n; k++)                                              \
            s += (double)d[k] * (double)d[k];                                        \
    } while (0)

static double sum_squares(const tg_tensor *t)
{
    int64_t n = tg_tensor_numel(t);
    double s = 0;
    if (!tg_tensor_is_contiguous(t)) {
        for (int64_t k = 0; k < n; k++) {
            double v = tg_get_flat(t, k);
            s += v * v;
        }
    } else if (tg_tensor_dtype(t) == TG_F32) {
        SUMSQ_LOOP(float);
    } else {
        SUMSQ_LOOP(double);
    }
    return s;
}

/* Keras's clip_by_norm / clip_by_global_norm factor: c / max(norm, c), exactly 1
 * when the norm is within the threshold (PyTorch's clip_grad_norm_ divides by
 * norm + 1e-6 instead). */
static double clip_factor(double norm, double c)
{
    return c / fmax(norm, c);
}

/* opt->scale[i] for this step: 1, or the factor of clipping by norm (per
 * parameter) or by global norm (over the gradients this step uses: frozen
 * parameters and those without a gradient count for nothing). Every gradient
 * is finite here, so only an overflowing sum of squares is an error. */
static tg_status clip_scales(tg_optimizer *opt, const char *fn)
{
    for (size_t i = 0; i < opt->n; i++)
        opt->scale[i] = 1.0;
    double cn = opt->clip[CLIP_NORM], cg = opt->clip[CLIP_GLOBAL], total = 0;
    if (cn == 0 && cg == 0)
        return TG_OK;
    for (size_t i = 0; i < opt->n; i++) {
        tg_tensor *p = opt->params[i];
        tg_tensor *g = tg_requires_grad(p) ? tg_grad(p) : NULL;
        if (!g)
            continue;
        double sq = sum_squares(g);
        if (cn > 0) {
            if (!isfinite(sq))
                return tg_error(TG_ERR_RANGE, "%s: clipnorm: the norm of the gradient of %s "
                                "overflows a double; no parameter was changed", fn,
                                opt->names[i]);
            opt->scale[i] = clip_factor(sqrt(sq), cn);
        }
        total += sq;
    }
    if (cg > 0) {
        if (!isfinite(total))
            return tg_error(TG_ERR_RANGE, "%s: global_clipnorm: the global gradient norm "
                            "overflows a double; no parameter was changed", fn);
        double f = clip_factor(sqrt(total), cg);
        for (size_t i = 0; i < opt->n; i++)
            opt->scale[i] = f;
    }
    return TG_OK;
}

tg_status tg_optimizer_step(tg_optimizer *opt)
{
    static const char *fn = "tg_optimizer_step";
    if (!opt)
        return tg_null_arg(fn, "opt");
    /* Check every gradient before touching anything: a step is all or nothing. */
    bool need_scope = false;
    for (size_t i = 0; i < opt->n; i++) {
        tg_tensor *p = opt->params[i];
        tg_tensor *g = tg_requires_grad(p) ? tg_grad(p) : NULL;
        if (!g)
            continue;
        if (!tg_tensor_same_shape(g, p) || tg_tensor_dtype(g) != tg_tensor_dtype(p)) {
            char a[128], b[128];
            return tg_error(TG_ERR_SHAPE, "%s: gradient of %s is %s %s, the parameter is %s %s",
                            fn, opt->names[i], tg_dtype_name(tg_tensor_dtype(g)),
                            tg_shape_str(a, sizeof a, tg_tensor_ndim(g), tg_tensor_shape(g)),
                            tg_dtype_name(tg_tensor_dtype(p)),
                            tg_shape_str(b, sizeof b, tg_tensor_ndim(p), tg_tensor_shape(p)));
        }
        if (!tg_tensor_is_contiguous(g))
            need_scope = true;
        if (!tg_tensor_is_contiguous(p))
            return tg_error(TG_ERR_STATE, "%s: parameter %s is no longer contiguous", fn,
                            opt->names[i]);
        /* settle pending backend layouts now, so the updates read plain data */
        if (tg_tensor_settle(g) != TG_OK || tg_tensor_settle(p) != TG_OK)
            return tg_error(tg_last_status(), "%s: parameter %s: %s", fn, opt->names[i],
                            tg_last_error());
    }
    /* A non-finite gradient would make the parameter and its slots NaN for good:
     * refuse it (as Keras's TerminateOnNaN stops) before any parameter moves. A
     * strided gradient (rare) is read element by element. */
    for (size_t i = 0; i < opt->n; i++) {
        tg_tensor *p = opt->params[i];
        tg_tensor *g = tg_requires_grad(p) ? tg_grad(p) : NULL;
        if (!g || (tg_tensor_is_contiguous(g) && all_finite(g)))
            continue;
        double v;
        int64_t at = first_non_finite(g, &v);
        if (at < 0)
            continue; /* a strided gradient, all finite */
        char sh[128];
        return tg_error(TG_ERR_RANGE, "%s: the gradient of %s is not finite (%g at flat index "
                        "%lld of %s); no parameter was changed", fn, opt->names[i], v,
                        (long long)at, tg_shape_str(sh, sizeof sh, tg_tensor_ndim(g),
                                                    tg_tensor_shape(g)));
    }
    if (clip_scales(opt, fn) != TG_OK)
        return TG_ERR_RANGE;
    if (opt->step >= TG_TRAIN_COUNTER_MAX)
        return tg_error(TG_ERR_STATE, "%s: the optimizer has taken its %lld steps (2^53)", fn,
                        (long long)opt->step);
    opt->step++;
    bool prev = tg_set_grad_enabled(false);
    tg_scope *s = need_scope ? tg_scope_push() : NULL;
    for (size_t i = 0; i < opt->n; i++) {
        tg_tensor *p = opt->params[i];
        tg_tensor *g = tg_requires_grad(p) ? tg_grad(p) : NULL;
        if (!g)
            continue; /* frozen, or not reached by backward */
        if (!tg_tensor_is_contiguous(g))
            g = tg_tensor_contiguous(g);
        if (!g)
            break; /* out of memory on a strided gradient: rare; error is set */
        opt->type->update(opt, i, p, g, opt->scale[i]);
        tg_tensor_bump_version(p);
    }
    if (s)
        tg_scope_pop(s);
    tg_set_grad_enabled(prev);
    return TG_OK;
}

/* Scales t (f32/f64, settled) in place by f, in t's dtype as the optimizer's
 * clipping does (for f32 the double product of two floats is exact, so
 * rounding it once equals the float product). */
static void scale_in_place(tg_tensor *t, double f)
{
    int64_t n = tg_tensor_numel(t);
    bool f32 = tg_tensor_dtype(t) == TG_F32;
    if (!tg_tensor_is_contiguous(t)) {
        double fs = f32 ? (double)(float)f : f;
        for (int64_t k = 0; k < n; k++)
            tg_set_flat(t, k, tg_get_flat(t, k) * fs);
    } else if (f32) {
        float *d = tg_tensor_data(t), fs = (float)f;
        for (int64_t k = 0; k < n; k++)
            d[k] = d[k] * fs;
    } else {
        double *d = tg_tensor_data(t);
        for (int64_t k = 0; k < n; k++)
            d[k] = d[k] * f;
    }
    tg_tensor_bump_version(t);
}

static const char *param_name(char *buf, size_t n, const tg_tensor *p, size_t i)
{
    if (tg_tensor_name(p))
        snprintf(buf, n, "%s", tg_tensor_name(p));
    else
        snprintf(buf, n, "params[%zu]", i);
    return buf;
}

tg_status tg_clip_grad_norm(tg_tensor *const *params, size_t n, double max_norm,
                            double *total_norm_out)
{
    static const char *fn = "tg_clip_grad_norm";
    if (total_norm_out)
        *total_norm_out = NAN;
    if (!params && n > 0)
        return tg_null_arg(fn, "params");
    if (!(max_norm > 0))
        return tg_error(TG_ERR_ARG, "%s: max_norm = %g must be > 0", fn, max_norm);
    char nm[512];
    for (size_t i = 0; i < n; i++) {
        tg_tensor *p = params[i];
        if (!p)
            return tg_error(TG_ERR_ARG, "%s: params[%zu] is NULL", fn, i);
        for (size_t j = 0; j < i; j++)
            if (params[j] == p)
                return tg_error(TG_ERR_ARG, "%s: params[%zu] is also params[%zu] (its gradient "
                                "would count twice)", fn, i, j);
        tg_tensor *g = tg_requires_grad(p) ? tg_grad(p) : NULL;
        if (!g)
            continue;
        tg_dtype dt = tg_tensor_dtype(g);
        if (dt != TG_F32 && dt != TG_F64)
            return tg_error(TG_ERR_DTYPE, "%s: the gradient of %s is %s, not f32 or f64", fn,
                            param_name(nm, sizeof nm, p, i), tg_dtype_name(dt));
        if (tg_tensor_settle(g) != TG_OK)
            return tg_error(tg_last_status(), "%s: the gradient of %s: %s", fn,
                            param_name(nm, sizeof nm, p, i), tg_last_error());
    }
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        tg_tensor *g = tg_requires_grad(params[i]) ? tg_grad(params[i]) : NULL;
        if (g)
            total += sum_squares(g);
    }
    total = sqrt(total);
    if (total_norm_out)
        *total_norm_out = total;
    if (!isfinite(total)) {
        for (size_t i = 0; i < n; i++) {
            tg_tensor *g = tg_requires_grad(params[i]) ? tg_grad(params[i]) : NULL;
            double v;
            int64_t at = g ? first_non_finite(g, &v) : -1;
            if (at >= 0)
                return tg_error(TG_ERR_RANGE, "%s: the total gradient norm is %g: the gradient "
                                "of %s is not finite (%g at flat index %lld); no gradient was "
                                "changed", fn, total, param_name(nm, sizeof nm, params[i], i), v,
                                (long long)at);
        }
        return tg_error(TG_ERR_RANGE, "%s: the total gradient norm overflows a double; no "
                        "gradient was changed", fn);
    }
    double f = clip_factor(total, max_norm);
    if (f < 1)
        for (size_t i = 0; i < n; i++) {
            tg_tensor *g = tg_requires_grad(params[i]) ? tg_grad(params[i]) : NULL;
            if (g)
                scale_in_place(g, f);
        }
    return TG_OK;
}

/* Clipping thresholds: finite, >= 0, at most one non-zero. */
static tg_status check_clip(const double *c)
{
    int set = -1;
    for (int k = 0; k < N_CLIP; k++) {
        if (!isfinite(c[k]))
            return tg_error_here(TG_ERR_ARG, "%s = %g is not finite", clip_names[k], c[k]);
        if (c[k] < 0)
            return tg_error_here(TG_ERR_ARG, "%s = %g must be >= 0 (0 = off)", clip_names[k],
                                 c[k]);
        if (c[k] > 0) {
            if (set >= 0)
                return tg_error_here(TG_ERR_ARG, "%s = %g and %s = %g are both set; set at "
                                     "most one (as Keras)", clip_names[set], c[set],
                                     clip_names[k], c[k]);
            set = k;
        }
    }
    return TG_OK;
}

tg_status tg_optimizer_set_clipping(tg_optimizer *opt, const tg_clip_opts *clip)
{
    static const char *fn = "tg_optimizer_set_clipping";
    if (!opt)
        return tg_null_arg(fn, "opt");
    tg_clip_opts d = TG_CLIP_OPTS_INIT;
    const tg_clip_opts *q = clip ? clip : &d;
    double c[N_CLIP] = { q->clipvalue, q->clipnorm, q->global_clipnorm };
    const char *prev = tg_error_enter(fn);
    tg_status st = check_clip(c);
    tg_error_leave(prev);
    if (st == TG_OK)
        memcpy(opt->clip, c, sizeof c);
    return st;
}

tg_status tg_optimizer_clipping(tg_clip_opts *out, const tg_optimizer *opt)
{
    if (!out || !opt)
        return tg_null_arg("tg_optimizer_clipping", out ? "opt" : "out");
    *out = (tg_clip_opts){ .clipvalue = opt->clip[CLIP_VALUE],
                           .clipnorm = opt->clip[CLIP_NORM],
                           .global_clipnorm = opt->clip[CLIP_GLOBAL] };
    return TG_OK;
}

tg_status tg_optimizer_zero_grad(tg_optimizer *opt)
{
    if (!opt)
        return tg_null_arg("tg_optimizer_zero_grad", "opt");
    for (size_t i = 0; i < opt->n; i++)
        if (tg_grad(opt->params[i])) {
            tg_status st = tg_zero_grad(opt->params[i]);
            if (st != TG_OK)
                return st;
        }
    return TG_OK;
}

const char *tg_optimizer_type(const tg_optimizer *opt)
{
    return opt ? opt->type->name : NULL;
}

int64_t tg_optimizer_steps(const tg_optimizer *opt)
{
    return opt ? opt->step : 0;
}

double tg_optimizer_lr(const tg_optimizer *opt)
{
    return opt ? opt->hp[0] : NAN;
}

tg_status tg_optimizer_set_lr(tg_optimizer *opt, double lr)
{
    if (!opt)
        return tg_null_arg("tg_optimizer_set_lr", "opt");
    if (!(lr > 0) || !isfinite(lr))
        return tg_error(TG_ERR_ARG, "tg_optimizer_set_lr: lr = %g must be finite and > 0", lr);
    opt->hp[0] = lr;
    return TG_OK;
}

/* ---------------------------------------------------------------- state dict */

static tg_status key(char *buf, size_t n, const char *prefix, const char *a,
                     const char *b)
{
    if ((size_t)snprintf(buf, n, "%s%s%s%s", prefix ? prefix : "", a, b ? "/" : "",
                         b ? b : "") >= n)
        return tg_error_here(TG_ERR_ARG, "a state dict name under \"%s\" is too long",
                             prefix ? prefix : "");
    return TG_OK;
}

static tg_status state_dict(const tg_optimizer *opt, tg_state_dict *sd, const char *prefix)
{
    char k[1024];
    tg_status st;
    if ((st = key(k, sizeof k, prefix, "type", NULL)) != TG_OK ||
        (st = tg_state_dict_set_str(sd, k, opt->type->name)) != TG_OK ||
        (st = key(k, sizeof k, prefix, "step", NULL)) != TG_OK ||
        (st = tg_state_dict_set_i64(sd, k, opt->step)) != TG_OK)
        return st;
    for (int h = 0; h < opt->type->n_hp; h++) {
        if ((st = key(k, sizeof k, prefix, opt->type->hp_names[h], NULL)) != TG_OK)
            return st;
        st = opt->type->hp_is_flag[h] ? tg_state_dict_set_i64(sd, k, opt->hp[h] != 0)
                                      : tg_state_dict_set_f64(sd, k, opt->hp[h]);
        if (st != TG_OK)
            return st;
    }
    for (int c = 0; c < N_CLIP; c++)
        if ((st = key(k, sizeof k, prefix, clip_names[c], NULL)) != TG_OK ||
            (st = tg_state_dict_set_f64(sd, k, opt->clip[c])) != TG_OK)
            return st;
    for (size_t i = 0; i < opt->n; i++)
        for (int s = 0; s < opt->n_slots; s++)
            if ((st = key(k, sizeof k, prefix, opt->names[i], opt->slot_names[s])) != TG_OK ||
                (st = tg_state_dict_set(sd, k, opt->slots[s][i])) != TG_OK)
                return st;
    return TG_OK;
}

tg_status tg_optimizer_state_dict(const tg_optimizer *opt, tg_state_dict *sd, const char *prefix)
{
    static const char *fn = "tg_optimizer_state_dict";
    if (!opt || !sd)
        return tg_null_arg(fn, opt ? "sd" : "opt");
    const char *prev = tg_error_enter(fn);
    tg_status st = state_dict(opt, sd, prefix);
    tg_error_leave(prev);
    return st;
}

/* Adds the last error (set by a domain check, "<context>: <what is wrong>") to
 * c's problems as "<what>: <what is wrong>": the combined error names the
 * context once, in front. */
static void problem_from_error(tg_sd_check *c, const char *what)
{
    const char *msg = tg_last_error(), *ctx = tg_error_context();
    size_t n = strlen(ctx);
    if (strncmp(msg, ctx, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
        msg += n + 2;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg);
    tg_sd_check_problem(c, "%s: %s", what, buf);
}

/* The check of a load: type, step, hyper-parameters, clipping and every slot,
 * nothing unexpected under prefix. On success *hp, *clip and *step hold what to
 * restore and *targets (the caller frees it) maps "<param>/<slot>" to the live
 * slots. Attributes added later (hp_added, the clipping thresholds) may be
 * absent, as in a state dict written before them: they load as 0 (off). */
static tg_status check_load(tg_state_dict **targets, double *hp, double *clip, int64_t *step,
                            const tg_optimizer *opt, const tg_state_dict *sd, const char *prefix)
{
    *targets = NULL;
    const opt_type *ty = opt->type;
    char k[1024];
    tg_status st;
    tg_sd_check c;
    tg_sd_check_init(&c, " in the state dict");
    tg_attr_type have;

    const char *tname = NULL;
    if ((st = key(k, sizeof k, prefix, "type", NULL)) != TG_OK)
        return st;
    if (tg_state_dict_get_str(&tname, sd, k) != TG_OK)
        tg_sd_check_attr(&c, k, TG_ATTR_STR, tg_sd_attr_type(sd, k, &have) ? &have : NULL);
    else if (strcmp(tname, ty->name) != 0)
        /* Nothing else can match: report this alone. */
        return tg_error_here(TG_ERR_FORMAT, "the state under \"%s\" is of a \"%s\" optimizer, "
                             "this one is \"%s\" (nothing loaded)", prefix ? prefix : "", tname,
                             ty->name);
    *step = 0;
    key(k, sizeof k, prefix, "step", NULL);
    if (tg_state_dict_get_i64(step, sd, k) != TG_OK)
        tg_sd_check_attr(&c, k, TG_ATTR_I64, tg_sd_attr_type(sd, k, &have) ? &have : NULL);
    else if (*step < 0 || *step > TG_TRAIN_COUNTER_MAX)
        tg_sd_check_problem(&c, "'%s' = %lld is out of range (0 to 2^53)", k,
                            (long long)*step);

    memcpy(hp, opt->hp, sizeof opt->hp);
    bool hp_ok = true;
    for (int h = 0; h < ty->n_hp; h++) {
        key(k, sizeof k, prefix, ty->hp_names[h], NULL);
        if (ty->hp_added[h] && !tg_sd_attr_type(sd, k, &have)) {
            hp[h] = 0;
            continue;
        }
        int64_t v;
        bool got = ty->hp_is_flag[h] ? tg_state_dict_get_i64(&v, sd, k) == TG_OK
                                     : tg_state_dict_get_f64(&hp[h], sd, k) == TG_OK;
        if (!got) {
            tg_sd_check_attr(&c, k, ty->hp_is_flag[h] ? TG_ATTR_I64 : TG_ATTR_F64,
                             tg_sd_attr_type(sd, k, &have) ? &have : NULL);
            hp_ok = false;
        } else if (ty->hp_is_flag[h])
            hp[h] = v != 0;
    }
    if (hp_ok) {
        int o = ty->optional_slot_hp;
        if (check_hp(ty, hp) != TG_OK)
            problem_from_error(&c, "bad hyper-parameter");
        else if (slot_count(ty, hp) != opt->n_slots)
            tg_sd_check_problem(&c, "%s %g in the state dict, %g in this optimizer: one keeps a "
                                "%s slot and the other does not", ty->hp_names[o], hp[o],
                                opt->hp[o], ty->slot_names[ty->n_slots]);
    }
    bool clip_ok = true;
    for (int j = 0; j < N_CLIP; j++) {
        key(k, sizeof k, prefix, clip_names[j], NULL);
        clip[j] = 0;
        if (tg_sd_attr_type(sd, k, &have) && tg_state_dict_get_f64(&clip[j], sd, k) != TG_OK) {
            tg_sd_check_attr(&c, k, TG_ATTR_F64, &have);
            clip_ok = false;
        }
    }
    if (clip_ok && check_clip(clip) != TG_OK)
        problem_from_error(&c, "bad clipping");

    tg_state_dict *t = tg_state_dict_new();
    if (!t) {
        tg_strbuf_free(&c.list);
        return tg_last_status();
    }
    for (size_t i = 0; i < opt->n; i++)
        for (int s = 0; s < opt->n_slots; s++)
            if ((st = key(k, sizeof k, NULL, opt->names[i], opt->slot_names[s])) != TG_OK ||
                (st = tg_state_dict_set(t, k, opt->slots[s][i])) != TG_OK) {
                tg_strbuf_free(&c.list);
                tg_state_dict_free(t);
                return st;
            }
    tg_sd_check_entries(&c, t, sd, prefix, true);
    st = tg_sd_check_done(&c, TG_ERR_FORMAT, tg_error_context(),
                          "the state dict does not match this %s optimizer", ty->name);
    if (st != TG_OK)
        tg_state_dict_free(t);
    else
        *targets = t;
    return st;
}

tg_status tg_optimizer_check_state_dict(const tg_optimizer *opt, const tg_state_dict *sd,
                                        const char *prefix)
{
    static const char *fn = "tg_optimizer_check_state_dict";
    if (!opt || !sd)
        return tg_null_arg(fn, opt ? "sd" : "opt");
    tg_state_dict *t;
    double hp[MAX_HP], clip[N_CLIP];
    int64_t step;
    const char *prev = tg_error_enter(fn);
    tg_status st = check_load(&t, hp, clip, &step, opt, sd, prefix);
    tg_error_leave(prev);
    tg_state_dict_free(t);
    return st;
}

tg_status tg_optimizer_load_state_dict(tg_optimizer *opt, const tg_state_dict *sd,
                                       const char *prefix)
{
    static const char *fn = "tg_optimizer_load_state_dict";
    if (!opt || !sd)
        return tg_null_arg(fn, opt ? "sd" : "opt");
    tg_state_dict *t;
    double hp[MAX_HP], clip[N_CLIP];
    int64_t step;
    const char *prev = tg_error_enter(fn);
    tg_status st = check_load(&t, hp, clip, &step, opt, sd, prefix);
    tg_error_leave(prev);
    if (st == TG_OK)
        st = tg_sd_apply(t, sd, prefix);
    tg_state_dict_free(t);
    if (st != TG_OK)
        return st;
    memcpy(opt->hp, hp, sizeof hp);
    memcpy(opt->clip, clip, sizeof clip);
    opt->step = step;
    return TG_OK;
}
