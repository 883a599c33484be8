/* libtensor/create.c -- the creation functions of tensor.h: constant fills,
 * arange, copies of caller data and random tensors (uniform, normal; the Keras
 * initializers are nn/init.c's).
 *
 * Every function returns a scoped reference (tg_scoped of a new tensor). The
 * random ones draw in row-major order, so one seed gives one tensor. */
#include <math.h>
#include <string.h>

#include "libtensor/tensor_impl.h"

tg_tensor *tg_empty(tg_dtype dtype, int ndim, const int64_t *shape)
{
    return tg_scoped(tg_tensor_new_named("tg_empty", dtype, ndim, shape));
}

/* A new contiguous tensor with every element = value, unscoped; errors name
 * the context, which the public function enters. */
static tg_tensor *filled(tg_dtype dtype, int ndim, const int64_t *shape, double value)
{
    tg_tensor *t = tg_tensor_new_owned(dtype, ndim, shape);
    if (!t)
        return NULL;
    if (value == 0 && !signbit(value)) {
        /* all-zero bytes is 0 in every dtype */
        memset(tg_tensor_ptr(t), 0, tg_tensor_nbytes(t));
    } else if (tg_tensor_fill(t, value) != TG_OK) {
        tg_release(t);
        return NULL;
    }
    return t;
}

tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape)
{
    const char *prev = tg_error_enter("tg_zeros");
    tg_tensor *t = filled(dtype, ndim, shape, 0.0);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape)
{
    const char *prev = tg_error_enter("tg_ones");
    tg_tensor *t = filled(dtype, ndim, shape, 1.0);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_tensor *tg_full(tg_dtype dtype, int ndim, const int64_t *shape, double value)
{
    const char *prev = tg_error_enter("tg_full");
    tg_tensor *t = filled(dtype, ndim, shape, value);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_tensor *tg_arange(tg_dtype dtype, double start, double stop, double step)
{
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step))
        return tg_error(TG_ERR_ARG, "tg_arange: start %g, stop %g and step %g must be finite",
                        start, stop, step), NULL;
    if (step == 0)
        return tg_error(TG_ERR_ARG, "tg_arange: step must not be 0"), NULL;
    double count = ceil((stop - start) / step);
    if (count < 0)
        count = 0;
    if (count > 1e15)
        return tg_error(TG_ERR_SHAPE, "tg_arange: %g elements is too many", count), NULL;
    int64_t n = (int64_t)count;
    tg_tensor *t = tg_tensor_new_named("tg_arange", dtype, 1, &n);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        tg_set_flat(t, i, start + (double)i * step);
    return tg_scoped(t);
}

/* The copy behind tg_from_data and its typed variants; who names the caller. */
static tg_tensor *from_data(const char *who, tg_dtype dtype, int ndim, const int64_t *shape,
                            const void *data)
{
    tg_tensor *t = tg_tensor_new_named(who, dtype, ndim, shape);
    if (!t)
        return NULL;
    size_t nbytes = tg_tensor_nbytes(t);
    if (!data && nbytes > 0) {
        tg_release(t);
        return tg_null_arg(who, "data"), NULL;
    }
    if (nbytes > 0)
        memcpy(tg_tensor_ptr(t), data, nbytes);
    return tg_scoped(t);
}

tg_tensor *tg_from_data(tg_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    return from_data("tg_from_data", dtype, ndim, shape, data);
}

tg_tensor *tg_from_f32(int ndim, const int64_t *shape, const float *data)
{
    return from_data("tg_from_f32", TG_F32, ndim, shape, data);
}

tg_tensor *tg_from_f64(int ndim, const int64_t *shape, const double *data)
{
    return from_data("tg_from_f64", TG_F64, ndim, shape, data);
}

tg_tensor *tg_from_i32(int ndim, const int64_t *shape, const int32_t *data)
{
    return from_data("tg_from_i32", TG_I32, ndim, shape, data);
}

tg_tensor *tg_from_i64(int ndim, const int64_t *shape, const int64_t *data)
{
    return from_data("tg_from_i64", TG_I64, ndim, shape, data);
}

tg_tensor *tg_from_u8(int ndim, const int64_t *shape, const uint8_t *data)
{
    return from_data("tg_from_u8", TG_U8, ndim, shape, data);
}

/* ---------------------------------------------------------------- random */

typedef double (*sampler)(tg_rng *rng, const void *p);

static double sample_uniform(tg_rng *rng, const void *arg)
{
    const double *p = arg;
    return p[0] + (p[1] - p[0]) * tg_rng_uniform(rng);
}

static double sample_normal(tg_rng *rng, const void *arg)
{
    const double *p = arg;
    return p[0] + p[1] * tg_rng_normal(rng);
}

void tg_fill_draws(tg_tensor *t, tg_rng *rng, double (*draw)(tg_rng *rng, const void *arg),
                   const void *arg)
{
    if (!rng)
        rng = tg_rng_global();
    int64_t n = tg_tensor_numel(t);
    if (t->dtype == TG_F32) {
        float *d = tg_tensor_ptr(t);
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)draw(rng, arg);
    } else {
        double *d = tg_tensor_ptr(t);
        for (int64_t i = 0; i < n; i++)
            d[i] = draw(rng, arg);
    }
}

/* A new tensor of draws, unscoped; errors name the context, which the public
 * function enters. */
static tg_tensor *random_tensor(tg_dtype dtype, int ndim, const int64_t *shape, tg_rng *rng,
                                sampler draw, const double *params)
{
    if (!tg_dtype_is_float(dtype))
        return tg_error_here(TG_ERR_DTYPE, "dtype %s is not floating point",
                             tg_dtype_name(dtype)), NULL;
    tg_tensor *t = tg_tensor_new_owned(dtype, ndim, shape);
    if (!t)
        return NULL;
    tg_fill_draws(t, rng, draw, params);
    return t;
}

tg_tensor *tg_rand_uniform(tg_dtype dtype, int ndim, const int64_t *shape, double low,
                           double high, struct tg_rng *rng)
{
    if (!isfinite(low) || !isfinite(high) || low > high)
        return tg_error(TG_ERR_ARG, "tg_rand_uniform: need finite low <= high, got [%g, %g)",
                        low, high), NULL;
    double p[2] = {low, high};
    const char *prev = tg_error_enter("tg_rand_uniform");
    tg_tensor *t = random_tensor(dtype, ndim, shape, rng, sample_uniform, p);
    tg_error_leave(prev);
    return tg_scoped(t);
}

tg_tensor *tg_rand_normal(tg_dtype dtype, int ndim, const int64_t *shape, double mean,
                          double stddev, struct tg_rng *rng)
{
    if (!isfinite(mean) || !isfinite(stddev) || stddev < 0)
        return tg_error(TG_ERR_ARG, "tg_rand_normal: need finite mean and stddev >= 0, "
                        "got mean %g, stddev %g", mean, stddev), NULL;
    double p[2] = {mean, stddev};
    const char *prev = tg_error_enter("tg_rand_normal");
    tg_tensor *t = random_tensor(dtype, ndim, shape, rng, sample_normal, p);
    tg_error_leave(prev);
    return tg_scoped(t);
}
