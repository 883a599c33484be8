/* nn/layer.c -- the layer object behind nn/layer.h: construction from a
 * tg_layer_vtable, names, parameters and buffers declared at build, the
 * trainable flag, forward with the activation, the config writer, transfer of
 * values between layers, and the window arithmetic Conv2D and pooling share.
 * Layer types (conv.c, pool.c, dense.c, ... or a user's) only build and compute. */
#include <limits.h>
#include <stdalign.h>
#include <stddef.h>
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

tg_status tg_nn_check_padding(tg_padding padding, const int pad[4])
{
    if (padding != TG_PADDING_VALID && padding != TG_PADDING_SAME &&
        padding != TG_PADDING_EXPLICIT)
        return tg_error_here(TG_ERR_ARG, "padding %d is not a tg_padding", (int)padding);
    if (padding == TG_PADDING_EXPLICIT)
        for (int i = 0; i < 4; i++)
            if (pad[i] < 0)
                return tg_error_here(TG_ERR_ARG, "pad[%d] = %d is negative", i, pad[i]);
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

tg_status tg_layer_check_name(const char *name)
{
    if (!name || !*name)
        return tg_error_here(TG_ERR_ARG, "a layer name must not be empty");
    if (strchr(name, '/'))
        return tg_error_here(TG_ERR_ARG, "layer name \"%s\" contains '/' (it separates "
                             "layer and parameter in state dict names)", name);
    if (strlen(name) > 200)
        return tg_error_here(TG_ERR_ARG, "layer name is longer than 200 characters");
    return TG_OK;
}

/* The data block starts after the struct, aligned for any type. */
static size_t data_offset(void)
{
    size_t a = alignof(max_align_t);
    return (sizeof(struct tg_layer) + a - 1) / a * a;
}

tg_layer *tg_layer_alloc(const tg_layer_vtable *vt, tg_activation act, const char *name)
{
    if (!vt)
        return tg_null_arg_here("vt"), NULL;
    if (!vt->class_name || !*vt->class_name)
        return tg_error_here(TG_ERR_ARG, "the layer type has no class_name"), NULL;
    if (!vt->base_name || tg_layer_check_name(vt->base_name) != TG_OK)
        return tg_error_here(TG_ERR_ARG, "layer type %s: base_name must be a valid layer name",
                             vt->class_name), NULL;
    if ((int)act < 0 || act >= TG_ACT_COUNT)
        return tg_error_here(TG_ERR_ARG, "activation %d is not a tg_activation", (int)act),
               NULL;
    if (!vt->build_n != !vt->forward_n || (vt->forward_n && (vt->build || vt->forward)))
        return tg_error_here(TG_ERR_ARG, "layer type %s: a merge layer sets build_n and "
                             "forward_n, and then neither build nor forward", vt->class_name),
               NULL;
    if (name && tg_layer_check_name(name) != TG_OK)
        return NULL;
    if (vt->data_size > SIZE_MAX / 2)
        return tg_error_here(TG_ERR_ARG, "layer type %s: data_size %zu is too large",
                             vt->class_name, vt->data_size), NULL;
    size_t off = data_offset();
    tg_layer *l = calloc(1, off + vt->data_size);
    if (!l)
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    l->vt = vt;
    l->act = act;
    l->trainable = true;
    l->data = vt->data_size ? (char *)l + off : NULL;
    if (name) {
        l->name = strdup(name);
        if (!l->name) {
            free(l);
            return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
        }
    }
    return l;
}

tg_layer *tg_layer_new(const tg_layer_vtable *vt, tg_activation act, const char *name)
{
    const char *prev = tg_error_enter("tg_layer_new");
    tg_layer *l = tg_layer_alloc(vt, act, name);
    tg_error_leave(prev);
    return l;
}

void *tg_layer_data(const tg_layer *layer)
{
    return layer ? layer->data : NULL;
}

const tg_layer_vtable *tg_layer_get_vtable(const tg_layer *layer)
{
    return layer ? layer->vt : NULL;
}

tg_activation tg_layer_activation(const tg_layer *layer)
{
    return layer ? layer->act : TG_ACT_NONE;
}

const char *tg_layer_who(const tg_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "%s (%s)", l->name ? l->name : "<unnamed>", l->vt->class_name);
    return buf;
}

tg_status tg_layer_error(const tg_layer *l, tg_status status, const char *fmt, ...)
{
    char msg[768], who[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status == TG_OK)
        status = TG_ERR_ARG;
    return tg_error(status, "%s: %s", l ? tg_layer_who(l, who, sizeof who) : "layer", msg);
}

static void slots_clear(tg_layer_slots *s)
{
    for (int i = 0; i < s->n; i++) {
        tg_release(s->v[i].t);
        free(s->v[i].short_name);
    }
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

void tg_layer_unbuild(tg_layer *l)
{
    slots_clear(&l->params);
    slots_clear(&l->buffers);
    free(l->multi_ndim);
    free(l->multi_shape);
    l->multi_ndim = NULL;
    l->multi_shape = NULL;
    l->n_in = 0;
    l->built = false;
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
    tg_layer_unbuild(layer);
    if (layer->vt->destroy)
        layer->vt->destroy(layer);
    free(layer->name);
    free(layer);
}

/* ---------------------------------------------------------------- accessors */

static const char *display_name(const tg_layer *l)
{
    return l->name ? l->name : l->vt->class_name;
}

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
    return layer->vt->class_name;
}

tg_status tg_layer_set_name(tg_layer *layer, const char *name)
{
    if (!layer)
        return tg_null_arg("tg_layer_set_name", "layer");
    if (layer->in_model)
        return tg_error(TG_ERR_STATE, "tg_layer_set_name: layer %s already belongs to a "
                        "model; name it before tg_sequential_add", layer->name);
    if (layer->built)
        return tg_error(TG_ERR_STATE, "tg_layer_set_name: layer %s is already built (its "
                        "parameters carry its name)", layer->name);
    const char *prev = tg_error_enter("tg_layer_set_name");
    tg_status st = tg_layer_check_name(name);
    tg_error_leave(prev);
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
    for (int i = 0; i < layer->params.n; i++) {
        tg_status st = tg_set_requires_grad(layer->params.v[i].t, trainable);
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
    return layer->built ? layer->params.n : 0;
}

int tg_layer_buffer_count(const tg_layer *layer)
{
    if (!layer)
        return tg_null_arg("tg_layer_buffer_count", "layer"), 0;
    return layer->built ? layer->buffers.n : 0;
}

/* Slot i of s (borrowed), or NULL; errors name the context. */
static tg_tensor *slot_at(const char *what, const tg_layer *layer, const tg_layer_slots *s,
                          int i)
{
    if (!layer->built)
        return tg_error_here(TG_ERR_STATE, "layer %s is not built yet",
                             display_name(layer)), NULL;
    if (i < 0 || i >= s->n)
        return tg_error_here(TG_ERR_RANGE, "index %d out of range (layer %s has %d %s)", i,
                             display_name(layer), s->n, what), NULL;
    return s->v[i].t;
}

tg_tensor *tg_layer_param(const tg_layer *layer, int i)
{
    if (!layer)
        return tg_null_arg("tg_layer_param", "layer"), NULL;
    const char *prev = tg_error_enter("tg_layer_param");
    tg_tensor *t = slot_at("parameters", layer, &layer->params, i);
    tg_error_leave(prev);
    return t;
}

tg_tensor *tg_layer_buffer(const tg_layer *layer, int i)
{
    if (!layer)
        return tg_null_arg("tg_layer_buffer", "layer"), NULL;
    const char *prev = tg_error_enter("tg_layer_buffer");
    tg_tensor *t = slot_at("buffers", layer, &layer->buffers, i);
    tg_error_leave(prev);
    return t;
}

static tg_tensor *find_slot(const tg_layer_slots *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i].short_name, name) == 0)
            return s->v[i].t;
    return NULL;
}

/* The slot of s called name (borrowed), or NULL; errors name the context. */
static tg_tensor *slot_by_name(const char *what, const tg_layer *layer,
                               const tg_layer_slots *s, const char *name)
{
    if (!layer || !name)
        return tg_null_arg_here(layer ? "name" : "layer"), NULL;
    tg_tensor *t = layer->built ? find_slot(s, name) : NULL;
    if (t)
        return t;
    return tg_error_here(TG_ERR_ARG, "layer %s has no %s \"%s\"%s", display_name(layer),
                         what, name, layer->built ? "" : " (not built yet)"), NULL;
}

tg_tensor *tg_layer_param_by_name(const tg_layer *layer, const char *name)
{
    const char *prev = tg_error_enter("tg_layer_param_by_name");
    tg_tensor *t = slot_by_name("parameter", layer, layer ? &layer->params : NULL, name);
    tg_error_leave(prev);
    return t;
}

tg_tensor *tg_layer_buffer_by_name(const tg_layer *layer, const char *name)
{
    const char *prev = tg_error_enter("tg_layer_buffer_by_name");
    tg_tensor *t = slot_by_name("buffer", layer, layer ? &layer->buffers : NULL, name);
    tg_error_leave(prev);
    return t;
}

int64_t tg_layer_count_params(const tg_layer *layer)
{
    int64_t n = 0;
    if (layer && layer->built) {
        for (int i = 0; i < layer->params.n; i++)
            n += tg_tensor_numel(layer->params.v[i].t);
        for (int i = 0; i < layer->buffers.n; i++)
            n += tg_tensor_numel(layer->buffers.v[i].t);
    }
    return n;
}

int64_t tg_layer_count_buffers(const tg_layer *layer)
{
    int64_t n = 0;
    if (layer && layer->built)
        for (int i = 0; i < layer->buffers.n; i++)
            n += tg_tensor_numel(layer->buffers.v[i].t);
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
                        display_name(layer)), NULL;
    if (ndim)
        *ndim = layer->out_ndim;
    return layer->out_shape;
}

/* ---------------------------------------------------------------- parameters, buffers */

/* Declares a parameter or buffer of l (borrowed), or NULL. Errors name the
 * context (the public tg_layer_add_*) and the layer. */
static tg_tensor *add_slot(tg_layer *l, bool param, const char *short_name, int ndim,
                           const int64_t *shape, tg_initializer init, double value)
{
    if (!l)
        return tg_null_arg_here("l"), NULL;
    tg_status st = TG_OK;
    char who[256], pname[512];
    tg_layer_who(l, who, sizeof who);
    if (!l->building)
        st = tg_error_here(TG_ERR_STATE, "layer %s: parameters and buffers are declared in "
                           "the type's build callback only", who);
    else if (!short_name || !*short_name || strchr(short_name, '/'))
        st = tg_error_here(TG_ERR_ARG, "layer %s: a parameter or buffer name must be "
                           "non-empty and without '/'", who);
    else if (find_slot(&l->params, short_name) || find_slot(&l->buffers, short_name))
        st = tg_error_here(TG_ERR_ARG, "layer %s already has a parameter or buffer \"%s\"",
                           who, short_name);
    else if (param && ((int)init < 0 || init >= TG_INIT_COUNT))
        st = tg_error_here(TG_ERR_ARG, "layer %s: initializer %d is not a tg_initializer",
                           who, (int)init);
    /* In a model: "<model>/<layer>/<name>", unique across models (Keras 3's
     * variable path), so one optimizer can take the parameters of several. */
    else if ((size_t)(l->owner ? snprintf(pname, sizeof pname, "%s/%s/%s", l->owner->name,
                                          l->name, short_name)
                               : snprintf(pname, sizeof pname, "%s/%s", l->name, short_name)) >=
             sizeof pname)
        st = tg_error_here(TG_ERR_ARG, "layer %s: name \"%s\" is too long", who, short_name);
    tg_layer_slots *s = param ? &l->params : &l->buffers;
    if (st == TG_OK && s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 4;
        tg_layer_slot *v = realloc(s->v, sizeof *v * (size_t)cap);
        if (!v)
            st = tg_error_here(TG_ERR_NOMEM, "out of memory");
        else {
            s->v = v;
            s->cap = cap;
        }
    }
    tg_tensor *t = NULL;
    char *copy = NULL;
    if (st == TG_OK) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "tg_sequential_build: layer %s", l->name);
        t = tg_tensor_new_named(ctx, l->build_dtype, ndim, shape);
        if (!t || !(copy = strdup(short_name)))
            st = t ? tg_error_here(TG_ERR_NOMEM, "out of memory") : tg_last_status();
        else if ((st = param ? tg_init_fill(t, init, l->build_rng)
                             : tg_tensor_fill(t, value)) == TG_OK &&
                 (st = tg_tensor_set_name(t, pname)) == TG_OK && param)
            st = tg_set_requires_grad(t, l->trainable);
    }
    if (st != TG_OK) {
        tg_release(t);
        free(copy);
        if (l && l->build_status == TG_OK)
            l->build_status = st != TG_OK ? st : TG_ERR_NOMEM;
        return NULL;
    }
    s->v[s->n].short_name = copy;
    s->v[s->n].t = t;
    s->n++;
    return t;
}

tg_tensor *tg_layer_add_param(tg_layer *l, const char *short_name, int ndim,
                              const int64_t *shape, tg_initializer init)
{
    const char *prev = tg_error_enter("tg_layer_add_param");
    tg_tensor *t = add_slot(l, true, short_name, ndim, shape, init, 0.0);
    tg_error_leave(prev);
    return t;
}

tg_tensor *tg_layer_add_buffer(tg_layer *l, const char *short_name, int ndim,
                               const int64_t *shape, double value)
{
    const char *prev = tg_error_enter("tg_layer_add_buffer");
    tg_tensor *t = add_slot(l, false, short_name, ndim, shape, TG_INIT_ZEROS, value);
    tg_error_leave(prev);
    return t;
}

/* ---------------------------------------------------------------- build, forward */

/* What building a layer of one input (n == 1 and no build_n) or of n inputs
 * shares. Errors name the context. */
static tg_status build_common(tg_layer *l, int n, const int *in_ndim,
                              const int64_t *const *in_shape, tg_dtype dtype, tg_rng *rng)
{
    if (l->built)
        return TG_OK;
    bool multi = tg_layer_is_multi(l);
    char w[256];
    if (multi && n < 2)
        return tg_error_here(TG_ERR_ARG, "layer %s merges several inputs; it got %d (apply "
                             "it with tg_model_apply_n or tg_layer_forward_n)",
                             tg_layer_who(l, w, sizeof w), n);
    if (!multi && n != 1)
        return tg_error_here(TG_ERR_ARG, "layer %s takes one input, not %d",
                             tg_layer_who(l, w, sizeof w), n);
    if (n > TG_MODEL_MAX_IO)
        return tg_error_here(TG_ERR_ARG, "layer %s: %d inputs, at most %d",
                             tg_layer_who(l, w, sizeof w), n, TG_MODEL_MAX_IO);
    for (int k = 0; k < n; k++)
        if (in_ndim[k] < 0 || in_ndim[k] > TG_MAX_DIMS - 1 || (in_ndim[k] > 0 && !in_shape[k]))
            return tg_error_here(TG_ERR_ARG, "an input shape needs 0..%d dims without the "
                                 "batch", TG_MAX_DIMS - 1);
    if (dtype != TG_F32 && dtype != TG_F64)
        return tg_error_here(TG_ERR_DTYPE, "parameters must be f32 or f64, not %s",
                             tg_dtype_name(dtype));
    if (!l->name && !(l->name = strdup(l->vt->base_name)))
        return tg_error_here(TG_ERR_NOMEM, "out of memory");
    if (multi) {
        l->multi_ndim = malloc(sizeof *l->multi_ndim * (size_t)n);
        l->multi_shape = malloc(sizeof *l->multi_shape * (size_t)n);
        if (!l->multi_ndim || !l->multi_shape) {
            tg_layer_unbuild(l);
            return tg_error_here(TG_ERR_NOMEM, "out of memory");
        }
    }
    int out_ndim = in_ndim[0];
    int64_t out_shape[TG_MAX_DIMS] = { 0 };
    for (int i = 0; i < in_ndim[0]; i++)
        out_shape[i] = in_shape[0][i];
    l->building = true;
    l->build_status = TG_OK;
    l->build_dtype = dtype;
    l->build_rng = rng;
    tg_status st = TG_OK;
    if (multi)
        st = l->vt->build_n(l, n, in_ndim, in_shape, &out_ndim, out_shape);
    else if (l->vt->build)
        st = l->vt->build(l, in_ndim[0], in_shape[0], &out_ndim, out_shape);
    l->building = false;
    if (st == TG_OK && l->build_status != TG_OK)
        st = l->build_status; /* a declaration failed and build went on regardless */
    if (st == TG_OK && (out_ndim < 0 || out_ndim > TG_MAX_DIMS - 1))
        st = tg_error_here(TG_ERR_SHAPE, "layer %s: its build gave an output of %d dims "
                           "(0..%d without the batch)", tg_layer_who(l, w, sizeof w), out_ndim,
                           TG_MAX_DIMS - 1);
    if (st != TG_OK) {
        tg_layer_unbuild(l);
        return st;
    }
    l->in_ndim = in_ndim[0];
    for (int i = 0; i < in_ndim[0]; i++)
        l->in_shape[i] = in_shape[0][i];
    for (int k = 0; multi && k < n; k++) {
        l->multi_ndim[k] = in_ndim[k];
        for (int i = 0; i < in_ndim[k]; i++)
            l->multi_shape[k][i] = in_shape[k][i];
    }
    l->n_in = n;
    l->out_ndim = out_ndim;
    memcpy(l->out_shape, out_shape, sizeof out_shape);
    l->built = true;
    return TG_OK;
}

tg_status tg_layer_build_in(tg_layer *l, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                            tg_rng *rng)
{
    return build_common(l, 1, &in_ndim, &in_shape, dtype, rng);
}

tg_status tg_layer_build_in_n(tg_layer *l, int n, const int *in_ndim,
                              const int64_t *const *in_shape, tg_dtype dtype, tg_rng *rng)
{
    return build_common(l, n, in_ndim, in_shape, dtype, rng);
}

tg_status tg_layer_build(tg_layer *layer, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                         tg_rng *rng)
{
    static const char *fn = "tg_layer_build";
    if (!layer)
        return tg_null_arg(fn, "layer");
    if (layer->in_model && !layer->built)
        return tg_error(TG_ERR_STATE, "%s: layer %s belongs to a model; build the model", fn,
                        layer->name);
    const char *prev = tg_error_enter(fn);
    tg_status st = tg_layer_build_in(layer, in_ndim, in_shape, dtype, rng);
    tg_error_leave(prev);
    return st;
}

tg_tensor *tg_layer_run(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx)
{
    tg_activation act = l->act;
    if (ctx->skip_softmax && act == TG_ACT_SOFTMAX)
        act = TG_ACT_NONE;
    if (!l->vt->forward)
        return tg_activation_apply(x, act);
    tg_tensor *y = l->vt->forward(l, x, &ctx->pub);
    if (!y || act == TG_ACT_NONE || (act == TG_ACT_RELU && l->vt->fuses_relu))
        return y;
    return tg_activation_apply(y, act);
}

tg_tensor *tg_layer_run_n(tg_layer *l, int n, tg_tensor *const *xs, const tg_fwd_ctx *ctx)
{
    if (!tg_layer_is_multi(l))
        return tg_layer_run(l, xs[0], ctx);
    tg_activation act = l->act;
    if (ctx->skip_softmax && act == TG_ACT_SOFTMAX)
        act = TG_ACT_NONE;
    tg_tensor *y = l->vt->forward_n(l, n, xs, &ctx->pub);
    if (!y || act == TG_ACT_NONE)
        return y;
    return tg_activation_apply(y, act);
}

tg_tensor *tg_layer_forward_n(tg_layer *layer, int n, tg_tensor *const *xs, bool training)
{
    static const char *fn = "tg_layer_forward_n";
    if (!layer || !xs)
        return tg_null_arg(fn, layer ? "xs" : "layer"), NULL;
    if (n < 1 || n > TG_MODEL_MAX_IO)
        return tg_error(TG_ERR_ARG, "%s: n is %d; it needs 1..%d", fn, n, TG_MODEL_MAX_IO), NULL;
    if (!tg_layer_is_multi(layer)) {
        if (n != 1) {
            char w[256];
            return tg_error(TG_ERR_ARG, "%s: layer %s takes one input, not %d", fn,
                            tg_layer_who(layer, w, sizeof w), n), NULL;
        }
        return tg_layer_forward(layer, xs[0], training);
    }
    int nds[TG_MODEL_MAX_IO];
    const int64_t *shapes[TG_MODEL_MAX_IO];
    for (int k = 0; k < n; k++) {
        if (!xs[k]) {
            char what[32];
            snprintf(what, sizeof what, "xs[%d]", k);
            return tg_null_arg(fn, what), NULL;
        }
        nds[k] = tg_tensor_ndim(xs[k]) - 1;
        shapes[k] = tg_tensor_shape(xs[k]) + 1;
        if (nds[k] < 0)
            return tg_error(TG_ERR_SHAPE, "%s: xs[%d] needs a batch axis, got a 0-D tensor", fn,
                            k), NULL;
    }
    if (!layer->built) {
        if (layer->in_model)
            return tg_error(TG_ERR_STATE, "%s: layer %s belongs to a model that is not built "
                            "yet; build the model", fn, layer->name), NULL;
        const char *prev = tg_error_enter(fn);
        tg_status st = tg_layer_build_in_n(layer, n, nds, shapes, tg_tensor_dtype(xs[0]), NULL);
        tg_error_leave(prev);
        if (st != TG_OK)
            return NULL;
    }
    char w[256], want[128], got[128];
    if (n != layer->n_in)
        return tg_error(TG_ERR_ARG, "%s: layer %s was built for %d inputs, got %d", fn,
                        tg_layer_who(layer, w, sizeof w), layer->n_in, n), NULL;
    for (int k = 0; k < n; k++) {
        bool ok = nds[k] == layer->multi_ndim[k];
        for (int i = 0; ok && i < nds[k]; i++)
            ok = shapes[k][i] == layer->multi_shape[k][i];
        if (!ok)
            return tg_error(TG_ERR_SHAPE, "%s: layer %s was built for input %d of shape %s, "
                            "got %s", fn, tg_layer_who(layer, w, sizeof w), k,
                            tg_nn_batch_shape_str(want, sizeof want, layer->multi_ndim[k],
                                                  layer->multi_shape[k]),
                            tg_shape_str(got, sizeof got, nds[k] + 1,
                                         tg_tensor_shape(xs[k]))), NULL;
    }
    tg_fwd_ctx ctx = { .pub = { .training = training, .rng = NULL }, .skip_softmax = false };
    const char *prev = tg_error_enter(fn);
    tg_tensor *y = tg_layer_run_n(layer, n, xs, &ctx);
    tg_error_leave(prev);
    return y;
}

tg_tensor *tg_layer_forward(tg_layer *layer, tg_tensor *x, bool training)
{
    static const char *fn = "tg_layer_forward";
    if (!layer || !x)
        return tg_null_arg(fn, layer ? "x" : "layer"), NULL;
    int nd = tg_tensor_ndim(x);
    const int64_t *xs = tg_tensor_shape(x);
    if (nd < 1)
        return tg_error(TG_ERR_SHAPE, "%s: x needs a batch axis, got a 0-D tensor", fn), NULL;
    if (tg_layer_is_multi(layer)) {
        char w[256];
        return tg_error(TG_ERR_ARG, "%s: layer %s merges several inputs; call "
                        "tg_layer_forward_n", fn, tg_layer_who(layer, w, sizeof w)), NULL;
    }
    if (!layer->built) {
        if (layer->in_model)
            return tg_error(TG_ERR_STATE, "%s: layer %s belongs to a model that is not built "
                            "yet; build the model", fn, layer->name), NULL;
        const char *prev = tg_error_enter(fn);
        tg_status st = tg_layer_build_in(layer, nd - 1, xs + 1, tg_tensor_dtype(x), NULL);
        tg_error_leave(prev);
        if (st != TG_OK)
            return NULL;
    }
    bool ok = nd == layer->in_ndim + 1;
    for (int i = 0; ok && i < layer->in_ndim; i++)
        ok = xs[i + 1] == layer->in_shape[i];
    if (!ok) {
        char want[128], got[128], w[256];
        return tg_error(TG_ERR_SHAPE, "%s: layer %s was built for input %s, got %s", fn,
                        tg_layer_who(layer, w, sizeof w),
                        tg_nn_batch_shape_str(want, sizeof want, layer->in_ndim, layer->in_shape),
                        tg_shape_str(got, sizeof got, nd, xs)), NULL;
    }
    tg_fwd_ctx ctx = { .pub = { .training = training, .rng = NULL }, .skip_softmax = false };
    return tg_layer_run(layer, x, &ctx);
}

/* ---------------------------------------------------------------- config */

struct tg_layer_config {
    tg_strbuf *b;
    int n; /* members written */
};

static bool config_key(tg_layer_config *cfg, const char *key)
{
    if (!cfg)
        return false;
    tg_strbuf_printf(cfg->b, "%s", cfg->n++ ? ", " : "");
    tg_strbuf_json_str(cfg->b, key);
    tg_strbuf_printf(cfg->b, ": ");
    return true;
}

void tg_layer_config_int(tg_layer_config *cfg, const char *key, int64_t v)
{
    if (config_key(cfg, key))
        tg_strbuf_printf(cfg->b, "%lld", (long long)v);
}

void tg_layer_config_double(tg_layer_config *cfg, const char *key, double v)
{
    if (config_key(cfg, key))
        tg_strbuf_printf(cfg->b, "%.17g", v);
}

void tg_layer_config_bool(tg_layer_config *cfg, const char *key, bool v)
{
    if (config_key(cfg, key))
        tg_strbuf_printf(cfg->b, "%s", v ? "true" : "false");
}

void tg_layer_config_null(tg_layer_config *cfg, const char *key)
{
    if (config_key(cfg, key))
        tg_strbuf_printf(cfg->b, "null");
}

void tg_layer_config_str(tg_layer_config *cfg, const char *key, const char *v)
{
    if (config_key(cfg, key))
        tg_strbuf_json_str(cfg->b, v);
}

void tg_layer_config_ints(tg_layer_config *cfg, const char *key, int n, const int *v)
{
    if (!config_key(cfg, key))
        return;
    tg_strbuf_printf(cfg->b, "[");
    for (int i = 0; i < n; i++)
        tg_strbuf_printf(cfg->b, "%s%d", i ? ", " : "", v[i]);
    tg_strbuf_printf(cfg->b, "]");
}

void tg_layer_describe(const tg_layer *l, tg_strbuf *b)
{
    tg_strbuf_printf(b, "{\"class_name\": ");
    tg_strbuf_json_str(b, l->vt->class_name);
    tg_strbuf_printf(b, ", \"name\": ");
    tg_strbuf_json_str(b, l->name);
    tg_strbuf_printf(b, ", \"trainable\": %s, \"config\": {", l->trainable ? "true" : "false");
    tg_layer_config cfg = { b, 0 };
    if (l->vt->config)
        l->vt->config(l, &cfg);
    tg_layer_config_str(&cfg, "activation", tg_activation_name(l->act));
    tg_strbuf_printf(b, "}}");
}

/* ---------------------------------------------------------------- transfer */

/* Checks that dst's and src's slots match by name, shape and dtype; errors name
 * the context. dw and sw name the two layers. */
static tg_status check_slots(const char *what, const tg_layer_slots *d, const char *dw,
                             const tg_layer_slots *s, const char *sw)
{
    if (d->n != s->n)
        return tg_error_here(TG_ERR_SHAPE, "%s has %d %ss, %s has %d", dw, d->n, what, sw,
                             s->n);
    for (int i = 0; i < d->n; i++) {
        const tg_tensor *dt = d->v[i].t, *st = s->v[i].t;
        const char *name = d->v[i].short_name;
        if (strcmp(name, s->v[i].short_name) != 0)
            return tg_error_here(TG_ERR_ARG, "%s %d is \"%s\" in %s but \"%s\" in %s", what,
                                 i, name, dw, s->v[i].short_name, sw);
        if (!tg_tensor_same_shape(dt, st)) {
            char a[128], c[128];
            tg_shape_str(a, sizeof a, tg_tensor_ndim(dt), tg_tensor_shape(dt));
            tg_shape_str(c, sizeof c, tg_tensor_ndim(st), tg_tensor_shape(st));
            return tg_error_here(TG_ERR_SHAPE, "\"%s\" has shape %s in %s but %s in %s",
                                 name, a, dw, c, sw);
        }
        if (tg_tensor_dtype(dt) != tg_tensor_dtype(st))
            return tg_error_here(TG_ERR_DTYPE, "\"%s\" is %s in %s but %s in %s", name,
                                 tg_dtype_name(tg_tensor_dtype(dt)), dw,
                                 tg_dtype_name(tg_tensor_dtype(st)), sw);
    }
    return TG_OK;
}

static tg_status copy_slots(tg_layer_slots *d, const tg_layer_slots *s)
{
    for (int i = 0; i < d->n; i++) {
        tg_status st = tg_tensor_copy_into(d->v[i].t, s->v[i].t);
        if (st != TG_OK)
            return st;
        tg_tensor_bump_version(d->v[i].t);
    }
    return TG_OK;
}

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
    const char *prev = tg_error_enter(fn);
    tg_status st = check_slots("parameter", &dst->params, dw, &src->params, sw);
    if (st == TG_OK)
        st = check_slots("buffer", &dst->buffers, dw, &src->buffers, sw);
    tg_error_leave(prev);
    if (st != TG_OK)
        return st;
    if ((st = copy_slots(&dst->params, &src->params)) != TG_OK)
        return st;
    return copy_slots(&dst->buffers, &src->buffers);
}
