/* nn/init.c -- parameter initializers (glorot_uniform, he_normal, zeros).
 *
 * The random draws are libtensor's tg_glorot_uniform / tg_he_normal, so fans and
 * the truncation rule are defined in one place; this file only fills an existing
 * tensor with them, inside a private scope so nothing leaks into the caller's. */
#include "nn/nn_impl.h"

const char *tg_initializer_name(tg_initializer init)
{
    switch (init) {
    case TG_INIT_GLOROT_UNIFORM: return "glorot_uniform";
    case TG_INIT_HE_NORMAL: return "he_normal";
    case TG_INIT_ZEROS: return "zeros";
    default: return "invalid";
    }
}

tg_status tg_init_fill(tg_tensor *t, tg_initializer init, tg_rng *rng)
{
    if (!t)
        return tg_null_arg("tg_init_fill", "t");
    if (!tg_dtype_is_float(tg_tensor_dtype(t)))
        return tg_error(TG_ERR_DTYPE, "tg_init_fill: tensor is %s; initializers need a "
                        "floating dtype", tg_dtype_name(tg_tensor_dtype(t)));
    if (init == TG_INIT_ZEROS)
        return tg_tensor_fill(t, 0.0);
    if (init != TG_INIT_GLOROT_UNIFORM && init != TG_INIT_HE_NORMAL)
        return tg_error(TG_ERR_ARG, "tg_init_fill: initializer %d is not a tg_initializer",
                        (int)init);

    tg_scope *s = tg_scope_push();
    if (!s)
        return tg_last_status();
    int nd = tg_tensor_ndim(t);
    const int64_t *shape = tg_tensor_shape(t);
    tg_tensor *r = init == TG_INIT_GLOROT_UNIFORM
                       ? tg_glorot_uniform(tg_tensor_dtype(t), nd, shape, rng)
                       : tg_he_normal(tg_tensor_dtype(t), nd, shape, rng);
    tg_status st = r ? tg_tensor_copy_into(t, r) : tg_last_status();
    if (st == TG_OK)
        tg_tensor_bump_version(t);
    tg_scope_pop(s);
    return st;
}
