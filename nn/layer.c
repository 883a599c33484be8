/* nn/layer.c -- what every layer type shares: names, parameter creation and
 * initialisation, the trainable flag, the activation after forward, transfer of
 * parameters between layers, and small helpers (shape strings, window sizes).
 * Layer types (conv.c, pool.c, dense.c, ...) only infer shapes and compute. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---------------------------------------------------------------- shapes */

char *tg_nn_batch_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, n, "(None");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, ", %lld", (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, ")");
    return buf;
}

/* ---------------------------------------------------------------- window arithmetic */

/* Output extent of a window of (dilated) size k over n with stride s and
 * explicit pads; -1 when the window does not fit. */
static int64_t window_out(int64_t n, int k, int s, int dil, int64_t pad0, int64_t pad1)
{
    int64_t keff = (int64_t)(k - 1) * dil + 1;
    int64_t span = n + pad0 + pad1;
    if (span < keff)
        return -1;
    return (span - keff) / s + 1;
}

const char *tg_nn_padding_name(tg_padding padding)
{
    return padding == TG_PADDING_VALID ? "valid"
           : padding == TG_PADDING_SAME ? "same"
                                        : "explicit";
}

tg_status tg_nn_check_padding(const char *fn, tg_padding padding, const int pad[4])
{
    if (padding != TG_PADDING_VALID && padding != TG_PADDING_SAME &&
        padding != TG_PADDING_EXPLICIT)
        return tg_error(TG_ERR_ARG, "%s: padding %d is not a tg_padding", fn, (int)padding);
    if (padding == TG_PADDING_EXPLICIT)
        for (int i = 0; i < 4; i++)
            if (pad[i] < 0)
                return tg_error(TG_ERR_ARG, "%s: pad[%d] = %d is negative", fn, i, pad[i]);
    return TG_OK;
}

bool tg_nn_resolve_window(tg_padding padding, const int pad[4], const int64_t in[2],
                          const int k[2], const int s[2], const int dil[2], int pads[4],
                          int64_t out[2])
{
    for (int a = 0; a < 2; a++) {
        int64_t p0 = 0, p1 = 0;
        if (padding == TG_PADDING_SAME) {
            int64_t keff = (int64_t)(k[a] - 1) * dil[a] + 1;
            int64_t want = (in[a] + s[a] - 1) / s[a];
            int64_t total = (want - 1) * s[a] + keff - in[a];
            if (total < 0)
                total = 0;
            /* TensorFlow puts the odd pixel at the bottom/right. */
            p0 = total / 2;
            p1 = total - total / 2;
        } else if (padding == TG_PADDING_EXPLICIT) {
            p0 = pad[2 * a];
            p1 = pad[2 * a + 1];
        }
        if (p1 > INT_MAX)
            return false;
        pads[2 * a] = (int)p0;
        pads[2 * a + 1] = (int)p1;
        out[a] = window_out(in[a], k[a], s[a], dil[a], p0, p1);
        if (out[a] < 1)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- construction */

tg_status tg_layer_check_name(const char *who, const char *name)
{
    if (!name || !*name)
        return tg_error(TG_ERR_ARG, "%s: a layer name must not be empty", who);
    if (strchr(name, '/'))
        return tg_error(TG_ERR_ARG, "%s: layer name \"%s\" contains '/' (it separates "
                        "layer and parameter in state dict names)", who, name);
    if (strlen(name) > 200)
        return tg_error(TG_ERR_ARG, "%s: layer name is longer than 200 characters", who);
    return TG_OK;
}

tg_layer *tg_layer_alloc(size_t size, const tg_layer_vtable *vt, tg_activation act,
                         const char *name, const char *who)
{
    if ((int)act < 0 || act >= TG_ACT_COUNT)
        return tg_error(TG_ERR_ARG, "%s: activation %d is not a tg_activation", who, (int)act),
               NULL;
    if (name && tg_layer_check_name(who, name) != TG_OK)
        return NULL;
    tg_layer *l = calloc(1, size);
    if (!l)
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", who), NULL;
    l->vt = vt;
    l->act = act;
    l->trainable = true;
    if (name) {
        l->name = strdup(name);
        if (!l->name) {
            free(l);
            return tg_error(TG_ERR_NOMEM, "%s: out of memory", who), NULL;
        }
    }
    return l;
}

const char *tg_layer_who(const tg_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "%s (%s)", l->name ? l->name : "<unnamed>", l->vt->type);
    return buf;
}

static void release_params(tg_layer *l)
{
    for (int i = 0; i < l->n_params; i++) {
        tg_release(l->params[i].t);
        l->params[i].t = NULL;
    }
}

void tg_layer_free(tg_layer *layer)
{
    if (!layer)
        return;
    if (layer->in_model) {
        tg_error(TG_ERR_STATE, "tg_layer_free: layer %s belongs to a model; free the model",
                 layer->name);
        return;
    }
    release_params(layer);
    free(layer->name);
    free(layer);
}

/* ---------------------------------------------------------------- accessors */

const char *tg_layer_name(const tg_layer *layer)
{
    if (!layer)
        return tg_null_arg("tg_layer_name", "layer"), NULL;
    return layer->name;
}

const char *tg_layer_type(const tg_layer *layer)
{
    if (!layer)
        return tg_null_arg("tg_layer_type", "layer"), NULL;
    return layer->vt->type;
}

tg_status tg_layer_set_name(tg_layer *layer, const char *name)
{
    if (!layer)
        return tg_null_arg("tg_layer_set_name", "layer");
    if (layer->in_model)
        return tg_error(TG_ERR_STATE, "tg_layer_set_name: layer %s already belongs to a "
                        "model; name it before tg_sequential_add", layer->name);
    tg_status st = tg_layer_check_name("tg_layer_set_name", name);
    if (st != TG_OK)
        return st;
    char *copy = strdup(name);
    if (!copy)
        return tg_error(TG_ERR_NOMEM, "tg_layer_set_name: out of memory");
    free(layer->name);
    layer->name = copy;
    return TG_OK;
}

tg_status tg_layer_set_trainable(tg_layer *layer, bool trainable)
{
    if (!layer)
        return tg_null_arg("tg_layer_set_trainable", "layer");
    for (int i = 0; i < layer->n_params; i++) {
        if (!layer->params[i].t)
            continue;
        tg_status st = tg_set_requires_grad(layer->params[i].t, trainable);
        if (st != TG_OK)
            return st;
    }
    layer->trainable = trainable;
    return TG_OK;
}

bool tg_layer_trainable(const tg_layer *layer)
{
    return layer && layer->trainable;
}

int tg_layer_param_count(const tg_layer *layer)
{
    if (!layer)
        return tg_null_arg("tg_layer_param_count", "layer"), 0;
    return layer->built ? layer->n_params : 0;
}

tg_tensor *tg_layer_param(const tg_layer *layer, int i)
{
    if (!layer)
        return tg_null_arg("tg_layer_param", "layer"), NULL;
    if (!layer->built)
        return tg_error(TG_ERR_STATE, "tg_layer_param: layer %s is not built yet",
                        layer->name ? layer->name : layer->vt->type), NULL;
    if (i < 0 || i >= layer->n_params)
        return tg_error(TG_ERR_RANGE, "tg_layer_param: index %d out of range (layer %s "
                        "has %d parameters)", i, layer->name, layer->n_params), NULL;
    return layer->params[i].t;
}

tg_tensor *tg_layer_param_by_name(const tg_layer *layer, const char *name)
{
    if (!layer || !name)
        return tg_null_arg("tg_layer_param_by_name", layer ? "name" : "layer"), NULL;
    if (layer->built)
        for (int i = 0; i < layer->n_params; i++)
            if (strcmp(layer->params[i].short_name, name) == 0)
                return layer->params[i].t;
    return tg_error(TG_ERR_ARG, "tg_layer_param_by_name: layer %s has no parameter \"%s\"%s",
                    layer->name ? layer->name : layer->vt->type, name,
                    layer->built ? "" : " (not built yet)"), NULL;
}

int64_t tg_layer_count_params(const tg_layer *layer)
{
    int64_t n = 0;
    if (layer && layer->built)
        for (int i = 0; i < layer->n_params; i++)
            n += tg_shape_numel(layer->params[i].ndim, layer->params[i].shape);
    return n;
}

const int64_t *tg_layer_output_shape(const tg_layer *layer, int *ndim)
{
    if (ndim)
        *ndim = 0;
    if (!layer)
        return tg_null_arg("tg_layer_output_shape", "layer"), NULL;
    if (!layer->built)
        return tg_error(TG_ERR_STATE, "tg_layer_output_shape: layer %s is not built yet",
                        layer->name ? layer->name : layer->vt->type), NULL;
    if (ndim)
        *ndim = layer->out_ndim;
    return layer->out_shape;
}

/* ---------------------------------------------------------------- build, forward */

tg_status tg_layer_build(tg_layer *l, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                         tg_rng *rng)
{
    if (l->built)
        return TG_OK;
    l->n_params = 0;
    tg_status st = l->vt->infer(l, in_ndim, in_shape);
    if (st != TG_OK)
        return st;
    l->in_ndim = in_ndim;
    memcpy(l->in_shape, in_shape, sizeof(int64_t) * (size_t)in_ndim);

    char who[256];
    for (int i = 0; i < l->n_params; i++) {
        tg_param_slot *p = &l->params[i];
        snprintf(who, sizeof who, "tg_sequential_build: layer %s", l->name);
        p->t = tg_tensor_new_owned(who, dtype, p->ndim, p->shape);
        char pname[512];
        snprintf(pname, sizeof pname, "%s/%s", l->name, p->short_name);
        if (!p->t || (st = tg_init_fill(p->t, p->init, rng)) != TG_OK ||
            (st = tg_tensor_set_name(p->t, pname)) != TG_OK ||
            (st = tg_set_requires_grad(p->t, l->trainable)) != TG_OK) {
            if (!p->t)
                st = tg_last_status();
            release_params(l);
            return st != TG_OK ? st : TG_ERR_NOMEM;
        }
    }
    l->built = true;
    return TG_OK;
}

bool tg_layer_ends_in_softmax(const tg_layer *l)
{
    return l->act == TG_ACT_SOFTMAX;
}

tg_tensor *tg_layer_forward(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx)
{
    tg_activation act = l->act;
    if (ctx->skip_softmax && act == TG_ACT_SOFTMAX)
        act = TG_ACT_NONE;
    if (!l->vt->forward)
        return tg_activation_apply(x, act);
    tg_tensor *y = l->vt->forward(l, x, ctx);
    if (!y || act == TG_ACT_NONE || (act == TG_ACT_RELU && l->vt->fuses_relu))
        return y;
    return tg_activation_apply(y, act);
}

void tg_layer_describe(const tg_layer *l, tg_strbuf *b)
{
    tg_strbuf_printf(b, "{\"class_name\": ");
    tg_strbuf_json_str(b, l->vt->type);
    tg_strbuf_printf(b, ", \"name\": ");
    tg_strbuf_json_str(b, l->name);
    tg_strbuf_printf(b, ", \"trainable\": %s, \"config\": {", l->trainable ? "true" : "false");
    if (l->vt->config) {
        l->vt->config(l, b);
        tg_strbuf_printf(b, ", ");
    }
    tg_strbuf_printf(b, "\"activation\": \"%s\"}}", tg_activation_name(l->act));
}

/* ---------------------------------------------------------------- transfer */

tg_status tg_layer_copy_params(tg_layer *dst, const tg_layer *src)
{
    static const char *fn = "tg_layer_copy_params";
    if (!dst || !src)
        return tg_null_arg(fn, dst ? "src" : "dst");
    char dw[256], sw[256];
    tg_layer_who(dst, dw, sizeof dw);
    tg_layer_who(src, sw, sizeof sw);
    if (!dst->built || !src->built)
        return tg_error(TG_ERR_STATE, "%s: layer %s is not built yet (build its model first)",
                        fn, dst->built ? sw : dw);
    if (dst->vt != src->vt)
        return tg_error(TG_ERR_ARG, "%s: layer types differ: %s <- %s", fn, dw, sw);
    if (dst->n_params != src->n_params)
        return tg_error(TG_ERR_SHAPE, "%s: %s has %d parameters, %s has %d", fn, dw,
                        dst->n_params, sw, src->n_params);
    for (int i = 0; i < dst->n_params; i++) {
        const tg_tensor *d = dst->params[i].t, *s = src->params[i].t;
        if (strcmp(dst->params[i].short_name, src->params[i].short_name) != 0)
            return tg_error(TG_ERR_ARG, "%s: parameter %d is \"%s\" in %s but \"%s\" in %s",
                            fn, i, dst->params[i].short_name, dw, src->params[i].short_name,
                            sw);
        if (!tg_tensor_same_shape(d, s)) {
            char a[128], c[128];
            tg_shape_str(a, sizeof a, tg_tensor_ndim(d), tg_tensor_shape(d));
            tg_shape_str(c, sizeof c, tg_tensor_ndim(s), tg_tensor_shape(s));
            return tg_error(TG_ERR_SHAPE, "%s: \"%s\" has shape %s in %s but %s in %s", fn,
                            dst->params[i].short_name, a, dw, c, sw);
        }
        if (tg_tensor_dtype(d) != tg_tensor_dtype(s))
            return tg_error(TG_ERR_DTYPE, "%s: \"%s\" is %s in %s but %s in %s", fn,
                            dst->params[i].short_name, tg_dtype_name(tg_tensor_dtype(d)), dw,
                            tg_dtype_name(tg_tensor_dtype(s)), sw);
    }
    for (int i = 0; i < dst->n_params; i++) {
        tg_status st = tg_tensor_copy_into(dst->params[i].t, src->params[i].t);
        if (st != TG_OK)
            return st;
        tg_tensor_bump_version(dst->params[i].t);
    }
    return TG_OK;
}
