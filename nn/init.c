/* nn/init.c -- Keras's parameter initializers: glorot_uniform, he_normal, zeros,
 * ones.
 *
 * The fan rules and the truncation live here, beside the enum that names them;
 * libtensor/ only provides the generator and plain uniform/normal tensors. Draws
 * go in row-major order, so one seed gives one tensor whichever path fills it. */
#include <math.h>

#include "nn/nn_impl.h"

const char *tg_initializer_name(tg_initializer init)
{
    switch (init) {
    case TG_INIT_GLOROT_UNIFORM: return "glorot_uniform";
    case TG_INIT_HE_NORMAL: return "he_normal";
    case TG_INIT_ZEROS: return "zeros";
    case TG_INIT_ONES: return "ones";
    default: return "invalid";
    }
}

/* Keras's fan rules for (out, in, k...) kernels. Errors name the context. */
static tg_status fans(int ndim, const int64_t *shape, double *fan_in, double *fan_out)
{
    tg_status st = tg_check_shape(ndim, shape);
    if (st != TG_OK)
        return st;
    if (ndim < 2)
        return tg_error_here(TG_ERR_SHAPE, "a kernel needs at least 2 dims (out, in, ...), "
                             "got %d", ndim);
    double field = 1;
    for (int i = 2; i < ndim; i++)
        field *= (double)shape[i];
    *fan_in = (double)shape[1] * field;
    *fan_out = (double)shape[0] * field;
    return TG_OK;
}

/* The distribution of an initializer for a kernel of this shape: uniform on
 * [a, b), or (truncated) normal with mean a and scale b. */
typedef struct dist {
    bool normal;
    double a, b;
} dist;

static tg_status dist_of(dist *d, tg_initializer init, int ndim, const int64_t *shape)
{
    double fan_in = 0, fan_out = 0;
    if (fans(ndim, shape, &fan_in, &fan_out) != TG_OK)
        return tg_last_status();
    if (init == TG_INIT_GLOROT_UNIFORM) {
        /* an empty kernel has no element to draw; avoid dividing by zero */
        double limit = fan_in + fan_out > 0 ? sqrt(6.0 / (fan_in + fan_out)) : 0.0;
        *d = (dist){ false, -limit, limit };
    } else {
        /* Keras (VarianceScaling, truncated_normal) divides by the standard
         * deviation of a unit normal truncated at +-2, 0.8796..., so the
         * samples' own standard deviation is sqrt(2 / fan_in). */
        *d = (dist){ true, 0.0, fan_in > 0 ? sqrt(2.0 / fan_in) / 0.87962566103423978 : 0.0 };
    }
    return TG_OK;
}

static double draw(tg_rng *rng, const void *arg)
{
    const dist *d = arg;
    if (!d->normal)
        return d->a + (d->b - d->a) * tg_rng_uniform(rng);
    /* Truncated at two standard deviations by resampling, as Keras does. */
    double z;
    do
        z = tg_rng_normal(rng);
    while (fabs(z) > 2.0);
    return d->a + d->b * z;
}

/* A new kernel of draws, unscoped. Errors name the context: the public
 * initializer's name, entered by its caller. */
static tg_tensor *kernel_new(tg_initializer init, tg_dtype dtype, int ndim,
                             const int64_t *shape, tg_rng *rng)
{
    dist d;
    if (dist_of(&d, init, ndim, shape) != TG_OK)
        return NULL;
    if (!tg_dtype_is_float(dtype))
        return tg_error_here(TG_ERR_DTYPE, "dtype %s is not floating point",
                             tg_dtype_name(dtype)), NULL;
    tg_tensor *t = tg_tensor_new_owned(dtype, ndim, shape);
    if (!t)
        return NULL;
    tg_fill_draws(t, rng, draw, &d);
    return t;
}

tg_tensor *tg_glorot_uniform(tg_dtype dtype, int ndim, const int64_t *shape, tg_rng *rng)
{
    const char *prev = tg_error_enter("tg_glorot_uniform");
    tg_tensor *t = kernel_new(TG_INIT_GLOROT_UNIFORM, dtype, ndim, shape, rng);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_tensor *tg_he_normal(tg_dtype dtype, int ndim, const int64_t *shape, tg_rng *rng)
{
    const char *prev = tg_error_enter("tg_he_normal");
    tg_tensor *t = kernel_new(TG_INIT_HE_NORMAL, dtype, ndim, shape, rng);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_status tg_init_fill(tg_tensor *t, tg_initializer init, tg_rng *rng)
{
    if (!t)
        return tg_null_arg("tg_init_fill", "t");
    if (!tg_dtype_is_float(tg_tensor_dtype(t)))
        return tg_error(TG_ERR_DTYPE, "tg_init_fill: tensor is %s; initializers need a "
                        "floating dtype", tg_dtype_name(tg_tensor_dtype(t)));
    if (init == TG_INIT_ZEROS || init == TG_INIT_ONES)
        return tg_tensor_fill(t, init == TG_INIT_ONES ? 1.0 : 0.0);
    if (init != TG_INIT_GLOROT_UNIFORM && init != TG_INIT_HE_NORMAL)
        return tg_error(TG_ERR_ARG, "tg_init_fill: initializer %d is not a tg_initializer",
                        (int)init);
    /* Shape errors name the initializer, as tg_glorot_uniform / tg_he_normal would. */
    const char *who = init == TG_INIT_GLOROT_UNIFORM ? "tg_glorot_uniform" : "tg_he_normal";
    tg_status st;
    if (tg_tensor_is_contiguous(t)) {
        dist d;
        const char *prev = tg_error_enter(who);
        st = dist_of(&d, init, tg_tensor_ndim(t), tg_tensor_shape(t));
        tg_error_leave(prev);
        if (st != TG_OK)
            return st;
        tg_fill_draws(t, rng, draw, &d);
    } else {
        /* A strided view: draw a contiguous copy in row-major order, then scatter. */
        const char *prev = tg_error_enter(who);
        tg_tensor *r = kernel_new(init, tg_tensor_dtype(t), tg_tensor_ndim(t),
                                  tg_tensor_shape(t), rng);
        tg_error_leave(prev);
        st = r ? tg_tensor_copy_into(t, r) : tg_last_status();
        tg_release(r);
        if (st != TG_OK)
            return st;
    }
    tg_tensor_bump_version(t);
    return TG_OK;
}
