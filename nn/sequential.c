/* nn/sequential.c -- the Sequential model: an ordered list of layers fed one
 * input shape. Building walks the layers once, inferring each output shape and
 * creating parameters; forward chains the layers' forwards. Also the summary
 * table, the architecture description and the state dict export/import. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor/state_dict_impl.h"
#include "nn/nn_impl.h"


tg_sequential *tg_sequential_new(int ndim, const int64_t *input_shape)
{
    static const char *fn = "tg_sequential_new";
    if (ndim < 1 || ndim > TG_MAX_DIMS - 1)
        return tg_error(TG_ERR_ARG, "%s: input shape has %d dims; it needs 1..%d (the batch "
                        "is not part of it)", fn, ndim, TG_MAX_DIMS - 1), NULL;
    if (!input_shape)
        return tg_null_arg(fn, "input_shape"), NULL;
    for (int i = 0; i < ndim; i++)
        if (input_shape[i] < 1) {
            char s[128];
            return tg_error(TG_ERR_ARG, "%s: input shape %s has an extent < 1 (the batch is "
                            "not part of it)", fn, tg_shape_str(s, sizeof s, ndim, input_shape)),
                   NULL;
        }
    tg_sequential *m = calloc(1, sizeof *m);
    if (m)
        m->name = strdup("sequential");
    if (!m || !m->name) {
        free(m);
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", fn), NULL;
    }
    m->in_ndim = ndim;
    memcpy(m->in_shape, input_shape, sizeof(int64_t) * (size_t)ndim);
    m->dtype = TG_F32;
    m->training = true;
    return m;
}

void tg_sequential_free(tg_sequential *model)
{
    if (!model)
        return;
    for (int i = 0; i < model->n_layers; i++) {
        model->layers[i]->in_model = false;
        model->layers[i]->owner = NULL;
        tg_layer_free(model->layers[i]);
    }
    tg_model_free_nodes(model);
    free(model->layers);
    free(model->params);
    free(model->name);
    free(model);
}

static tg_layer *find_layer(const tg_sequential *m, const char *name)
{
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i]->name, name) == 0)
            return m->layers[i];
    return NULL;
}

tg_status tg_sequential_add(tg_sequential *model, tg_layer *layer)
{
    static const char *fn = "tg_sequential_add";
    if (!layer) {
        /* Most likely a failed constructor's NULL: repeat its message. */
        char prev[512];
        snprintf(prev, sizeof prev, "%s", tg_last_error());
        return tg_error(tg_last_status() != TG_OK ? tg_last_status() : TG_ERR_ARG,
                        "%s: layer is NULL (last error: %s)", fn, prev);
    }
    if (!model) {
        if (!layer->in_model)
            tg_layer_free(layer);
        return tg_null_arg(fn, "model");
    }
    tg_status st = TG_OK;
    if (layer->in_model)
        return tg_error(TG_ERR_STATE, "%s: layer %s already belongs to a model", fn,
                        layer->name);
    if (model->graph)
        st = tg_error(TG_ERR_STATE, "%s: model \"%s\" is a graph model: apply layers with "
                      "tg_model_apply", fn, model->name);
    else if (model->built)
        st = tg_error(TG_ERR_STATE, "%s: model \"%s\" is already built; add layers before "
                      "the first build, forward or summary", fn, model->name);
    else if (layer->name && find_layer(model, layer->name))
        st = tg_error(TG_ERR_ARG, "%s: model \"%s\" already has a layer named \"%s\"", fn,
                      model->name, layer->name);
    else if (model->n_layers == model->cap_layers) {
        int cap = model->cap_layers ? 2 * model->cap_layers : 8;
        tg_layer **ls = realloc(model->layers, sizeof *ls * (size_t)cap);
        if (!ls)
            st = tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
        else {
            model->layers = ls;
            model->cap_layers = cap;
        }
    }
    if (st == TG_OK && !layer->name) {
        /* Keras style: conv2d, conv2d_1, conv2d_2 ... the first unused in this model. */
        char name[128];
        snprintf(name, sizeof name, "%s", layer->vt->base_name);
        for (int k = 1; find_layer(model, name); k++)
            snprintf(name, sizeof name, "%s_%d", layer->vt->base_name, k);
        layer->name = strdup(name);
        if (!layer->name)
            st = tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
    }
    if (st != TG_OK) {
        tg_layer_free(layer);
        return st;
    }
    layer->in_model = true;
    layer->owner = model;
    model->layers[model->n_layers++] = layer;
    return TG_OK;
}

tg_status tg_sequential_set_dtype(tg_sequential *model, tg_dtype dtype)
{
    if (!model)
        return tg_null_arg("tg_sequential_set_dtype", "model");
    if (dtype != TG_F32 && dtype != TG_F64)
        return tg_error(TG_ERR_DTYPE, "tg_sequential_set_dtype: parameters must be f32 or "
                        "f64, not %s", tg_dtype_name(dtype));
    if (model->built)
        return tg_error(TG_ERR_STATE, "tg_sequential_set_dtype: model \"%s\" is already "
                        "built", model->name);
    model->dtype = dtype;
    return TG_OK;
}

tg_status tg_sequential_set_rng(tg_sequential *model, tg_rng *rng)
{
    if (!model)
        return tg_null_arg("tg_sequential_set_rng", "model");
    model->rng = rng;
    return TG_OK;
}

tg_status tg_sequential_set_name(tg_sequential *model, const char *name)
{
    if (!model || !name)
        return tg_null_arg("tg_sequential_set_name", model ? "name" : "model");
    const char *prev = tg_error_enter("tg_sequential_set_name");
    tg_status st = tg_layer_check_name(name);
    tg_error_leave(prev);
    if (st != TG_OK)
        return st;
    /* The parameters carry the model's name: "<model>/<layer>/<param>". */
    if (model->built)
        return tg_error(TG_ERR_STATE, "tg_sequential_set_name: model \"%s\" is already built "
                        "(its parameters carry its name); name it before the first build, "
                        "forward or summary", model->name);
    char *copy = strdup(name);
    if (!copy)
        return tg_error(TG_ERR_NOMEM, "tg_sequential_set_name: out of memory");
    free(model->name);
    model->name = copy;
    return TG_OK;
}

const char *tg_sequential_name(const tg_sequential *model)
{
    return model ? model->name : NULL;
}

/* ---------------------------------------------------------------- build */

tg_status tg_sequential_build(tg_sequential *model)
{
    if (!model)
        return tg_null_arg("tg_sequential_build", "model");
    if (model->built)
        return TG_OK;
    if (model->graph) {
        const char *prev = tg_error_enter("tg_model_build");
        tg_status st = tg_model_build_graph(model);
        tg_error_leave(prev);
        return st;
    }
    if (model->n_layers == 0)
        return tg_error(TG_ERR_STATE, "tg_sequential_build: model \"%s\" has no layers",
                        model->name);
    int nd = model->in_ndim;
    const int64_t *shape = model->in_shape;
    size_t np = 0;
    tg_status st = TG_OK;
    int i;
    for (i = 0; i < model->n_layers; i++) {
        tg_layer *l = model->layers[i];
        const char *prev = tg_error_enter("tg_sequential_build");
        st = tg_layer_build_in(l, nd, shape, model->dtype, model->rng);
        tg_error_leave(prev);
        if (st != TG_OK)
            break;
        nd = l->out_ndim;
        shape = l->out_shape;
        np += (size_t)l->params.n;
    }
    tg_tensor **params = NULL;
    if (st == TG_OK && np > 0 && !(params = malloc(sizeof *params * np)))
        st = tg_error(TG_ERR_NOMEM, "tg_sequential_build: out of memory");
    if (st != TG_OK) {
        /* Leave the model exactly as unbuilt as before: drop what was created. */
        for (int j = 0; j < i && j < model->n_layers; j++)
            tg_layer_unbuild(model->layers[j]);
        return st;
    }
    np = 0;
    for (i = 0; i < model->n_layers; i++)
        for (int k = 0; k < model->layers[i]->params.n; k++)
            params[np++] = tg_layer_param_at(model->layers[i], k);
    model->params = params;
    model->n_params = np;
    model->built = true;
    return TG_OK;
}

bool tg_sequential_is_built(const tg_sequential *model)
{
    return model && model->built;
}

void tg_sequential_set_training(tg_sequential *model, bool training)
{
    if (model)
        model->training = training;
}

bool tg_sequential_is_training(const tg_sequential *model)
{
    return model && model->training;
}

/* ---------------------------------------------------------------- forward */

static tg_tensor *forward(tg_sequential *m, tg_tensor *x, bool logits)
{
    if (!m || !x)
        return tg_null_arg_here(m ? "x" : "model"), NULL;
    if (m->graph)
        return tg_model_forward_graph1(m, x, logits);
    if (tg_sequential_build(m) != TG_OK)
        return NULL;
    int nd = tg_tensor_ndim(x);
    const int64_t *xs = tg_tensor_shape(x);
    bool ok = nd == m->in_ndim + 1;
    for (int i = 0; ok && i < m->in_ndim; i++)
        ok = xs[i + 1] == m->in_shape[i];
    if (!ok) {
        char want[128], got[128];
        return tg_error_here(TG_ERR_SHAPE, "model \"%s\" expects input %s, got %s", m->name,
                             tg_nn_batch_shape_str(want, sizeof want, m->in_ndim, m->in_shape),
                             tg_shape_str(got, sizeof got, nd, xs)), NULL;
    }
    if (tg_tensor_dtype(x) != m->dtype)
        return tg_error_here(TG_ERR_DTYPE, "model \"%s\" has %s parameters; the input is %s "
                             "(convert it with tg_tensor_to_dtype)", m->name,
                             tg_dtype_name(m->dtype), tg_dtype_name(tg_tensor_dtype(x))), NULL;

    tg_fwd_ctx ctx = { .pub = { .training = m->training, .rng = m->rng }, .skip_softmax = false };
    tg_tensor *h = x;
    for (int i = 0; i < m->n_layers && h; i++) {
        ctx.skip_softmax = logits && i == m->n_layers - 1;
        h = tg_layer_run(m->layers[i], h, &ctx);
    }
    return h;
}

tg_tensor *tg_sequential_forward(tg_sequential *model, tg_tensor *x)
{
    const char *prev = tg_error_enter("tg_sequential_forward");
    tg_tensor *y = forward(model, x, false);
    tg_error_leave(prev);
    return y;
}

tg_tensor *tg_sequential_forward_logits(tg_sequential *model, tg_tensor *x)
{
    const char *prev = tg_error_enter("tg_sequential_forward_logits");
    tg_tensor *y = forward(model, x, true);
    tg_error_leave(prev);
    return y;
}

/* ---------------------------------------------------------------- layers, params */

int tg_sequential_layer_count(const tg_sequential *model)
{
    return model ? model->n_layers : 0;
}

tg_layer *tg_sequential_layer(const tg_sequential *model, int index)
{
    if (!model)
        return tg_null_arg("tg_sequential_layer", "model"), NULL;
    int i = index < 0 ? index + model->n_layers : index;
    if (i < 0 || i >= model->n_layers)
        return tg_error(TG_ERR_RANGE, "tg_sequential_layer: index %d out of range (model "
                        "\"%s\" has %d layers)", index, model->name, model->n_layers), NULL;
    return model->layers[i];
}

tg_layer *tg_sequential_layer_by_name(const tg_sequential *model, const char *name)
{
    if (!model || !name)
        return tg_null_arg("tg_sequential_layer_by_name", model ? "name" : "model"), NULL;
    tg_layer *l = find_layer(model, name);
    if (!l)
        return tg_error(TG_ERR_ARG, "tg_sequential_layer_by_name: model \"%s\" has no layer "
                        "\"%s\"", model->name, name), NULL;
    return l;
}

tg_tensor *const *tg_sequential_params(tg_sequential *model, size_t *n)
{
    if (n)
        *n = 0;
    if (!model)
        return tg_null_arg("tg_sequential_params", "model"), NULL;
    if (tg_sequential_build(model) != TG_OK)
        return NULL;
    if (n)
        *n = model->n_params;
    /* A model without parameters still returns a non-NULL (empty) array. */
    static tg_tensor *const none[1] = { NULL };
    return model->params ? model->params : none;
}

tg_status tg_sequential_count_params(int64_t *total, int64_t *trainable,
                                     int64_t *non_trainable, tg_sequential *model)
{
    if (!model)
        return tg_null_arg("tg_sequential_count_params", "model");
    tg_status st = tg_sequential_build(model);
    if (st != TG_OK)
        return st;
    int64_t all = 0, tr = 0;
    for (int i = 0; i < model->n_layers; i++) {
        const tg_layer *l = model->layers[i];
        int64_t c = tg_layer_count_params(l);
        all += c;
        if (l->trainable)
            tr += c - tg_layer_count_buffers(l); /* buffers are never trained */
    }
    if (total)
        *total = all;
    if (trainable)
        *trainable = tr;
    if (non_trainable)
        *non_trainable = all - tr;
    return TG_OK;
}

tg_status tg_sequential_zero_grad(tg_sequential *model)
{
    if (!model)
        return tg_null_arg("tg_sequential_zero_grad", "model");
    for (size_t i = 0; model->built && i < model->n_params; i++)
        if (tg_grad(model->params[i])) {
            tg_status st = tg_zero_grad(model->params[i]);
            if (st != TG_OK)
                return st;
        }
    return TG_OK;
}

/* ---------------------------------------------------------------- summary */

/* 693962 -> "693,962" */
char *tg_nn_thousands(char *buf, size_t n, int64_t v)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%" PRId64, v < 0 ? -v : v);
    size_t o = 0;
    if (v < 0 && o + 1 < n)
        buf[o++] = '-';
    for (int i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 1 < n)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

void tg_nn_rule(FILE *out, char c, int width)
{
    for (int i = 0; i < width; i++)
        fputc(c, out);
    fputc('\n', out);
}

/* Columns start at 0 (after one space, as Keras 2.9+ prints), w1 and w1 + w2;
 * a cell always leaves at least one space before the next. No trailing blanks. */
static void row(FILE *out, const char *a, const char *b, const char *c, int w1, int w2)
{
    fprintf(out, " %-*s%-*s%s\n", w1 - 1, a, w2, b, c);
}

tg_status tg_sequential_summary(tg_sequential *model, FILE *out)
{
    if (!model || !out)
        return tg_null_arg("tg_sequential_summary", model ? "out" : "model");
    if (model->graph) {
        const char *prev = tg_error_enter("tg_model_summary");
        tg_status st = tg_model_summary_graph(model, out);
        tg_error_leave(prev);
        return st;
    }
    tg_status st = tg_sequential_build(model);
    if (st != TG_OK)
        return st;
    /* Keras's widths (line 65: columns at 29 and 55), widened when a cell needs it. */
    int w1 = 29, w2 = 26;
    char shape[160], cell[300], num[32];
    for (int i = 0; i < model->n_layers; i++) {
        tg_layer *l = model->layers[i];
        int n1 = (int)(strlen(l->name) + strlen(l->vt->class_name) + 3) + 2;
        tg_nn_batch_shape_str(shape, sizeof shape, l->out_ndim, l->out_shape);
        int n2 = (int)strlen(shape) + 1;
        if (n1 > w1)
            w1 = n1;
        if (n2 > w2)
            w2 = n2;
    }
    int width = w1 + w2 + 10;
    if (width < 65)
        width = 65;

    fprintf(out, "Model: \"%s\"\n", model->name);
    tg_nn_rule(out, '_', width);
    row(out, "Layer (type)", "Output Shape", "Param #", w1, w2);
    tg_nn_rule(out, '=', width);
    for (int i = 0; i < model->n_layers; i++) {
        tg_layer *l = model->layers[i];
        snprintf(cell, sizeof cell, "%s (%s)", l->name, l->vt->class_name);
        tg_nn_batch_shape_str(shape, sizeof shape, l->out_ndim, l->out_shape);
        row(out, cell, shape, tg_nn_thousands(num, sizeof num, tg_layer_count_params(l)), w1,
            w2);
        if (i + 1 < model->n_layers)
            tg_nn_rule(out, '_', width);
    }
    const char *prev = tg_error_enter("tg_sequential_summary");
    st = tg_nn_summary_end(out, model, width);
    tg_error_leave(prev);
    return st;
}

tg_status tg_nn_summary_end(FILE *out, tg_model *m, int width)
{
    char num[32];
    tg_nn_rule(out, '=', width);
    int64_t total = 0, tr = 0, ntr = 0;
    tg_sequential_count_params(&total, &tr, &ntr, m);
    fprintf(out, "Total params: %s\n", tg_nn_thousands(num, sizeof num, total));
    fprintf(out, "Trainable params: %s\n", tg_nn_thousands(num, sizeof num, tr));
    fprintf(out, "Non-trainable params: %s\n", tg_nn_thousands(num, sizeof num, ntr));
    tg_nn_rule(out, '_', width);
    if (ferror(out))
        return tg_error_here(TG_ERR_IO, "write failed");
    return TG_OK;
}

/* ---------------------------------------------------------------- architecture */

char *tg_sequential_architecture(tg_sequential *model)
{
    if (!model)
        return tg_null_arg("tg_sequential_architecture", "model"), NULL;
    if (model->graph) {
        const char *prev = tg_error_enter("tg_model_architecture");
        char *a = tg_model_architecture_graph(model);
        tg_error_leave(prev);
        return a;
    }
    if (tg_sequential_build(model) != TG_OK)
        return NULL;
    tg_strbuf b = TG_STRBUF_INIT;
    tg_strbuf_printf(&b, "{\"class_name\": \"Sequential\", \"name\": ");
    tg_strbuf_json_str(&b, model->name);
    tg_strbuf_printf(&b, ", \"layout\": \"channels_first\", \"dtype\": \"%s\", "
                     "\"input_shape\": [", tg_dtype_name(model->dtype));
    for (int i = 0; i < model->in_ndim; i++)
        tg_strbuf_printf(&b, "%s%" PRId64, i ? ", " : "", model->in_shape[i]);
    tg_strbuf_printf(&b, "], \"layers\": [");
    for (int i = 0; i < model->n_layers; i++) {
        if (i)
            tg_strbuf_printf(&b, ", ");
        tg_layer_describe(model->layers[i], &b);
    }
    tg_strbuf_printf(&b, "]}");
    if (b.failed) {
        tg_strbuf_free(&b);
        return tg_error(TG_ERR_NOMEM, "tg_sequential_architecture: out of memory"), NULL;
    }
    return b.s;
}

/* ---------------------------------------------------------------- architecture check */

/* "<prefix><name>" into buf; errors name the context. */
static tg_status join(char *buf, size_t n, const char *prefix,
                      const char *name)
{
    if ((size_t)snprintf(buf, n, "%s%s", prefix ? prefix : "", name) >= n)
        return tg_error_here(TG_ERR_ARG, "name \"%s%s\" is too long", prefix ? prefix : "",
                             name);
    return TG_OK;
}


/* End of the JSON item that starts at s (a "key": value pair or an object):
 * the first ',' or closing '}'/']' outside brackets and strings. */
static size_t item_end(const char *s)
{
    size_t i = 0;
    int depth = 0;
    bool in_str = false;
    for (; s[i]; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && s[i + 1])
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                break;
            depth--;
        } else if (c == ',' && depth == 0) {
            break;
        }
    }
    return i;
}

/* Where the innermost "key": value pair holding position at begins, scanning
 * s from `from` (the start of an object); both strings agree before at. */
static size_t item_start(const char *s, size_t from, size_t at)
{
    enum { MAX_DEPTH = 32 };
    char open[MAX_DEPTH];
    size_t start[MAX_DEPTH];
    int depth = 0;
    bool in_str = false;
    size_t best = from;
    for (size_t i = from; i < at && s[i]; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && s[i + 1])
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if ((c == '{' || c == '[') && depth < MAX_DEPTH) {
            open[depth] = c;
            start[depth++] = i + 1;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        } else if (c == ',' && depth > 0) {
            start[depth - 1] = s[i + 1] == ' ' ? i + 2 : i + 1;
        }
    }
    for (int d = depth - 1; d >= 0; d--)
        if (open[d] == '{') {
            best = start[d];
            break;
        }
    return best;
}

/* saved differs from mine (this model's description) first at character at:
 * names the layer (or the model's own fields) and the differing item. Errors
 * name the context. */
static tg_status arch_difference(const tg_sequential *m, const char *saved, const char *mine,
                                 size_t at)
{
    /* A graph's layers carry their inbound nodes: its difference is named by the
     * innermost differing item alone. */
    const char *lp = m->graph ? NULL : strstr(mine, "\"layers\": [");
    size_t pos = lp ? (size_t)(lp - mine) + strlen("\"layers\": [") : 0;
    int k = -1; /* the layer of mine in which `at` falls */
    size_t start = 0;
    if (lp && at >= pos) {
        for (int i = 0; i < m->n_layers; i++) {
            tg_strbuf b = TG_STRBUF_INIT;
            tg_layer_describe(m->layers[i], &b);
            size_t len = b.failed ? 0 : b.len;
            tg_strbuf_free(&b);
            size_t sep = i ? 2 : 0; /* ", " */
            if (at < pos + sep + len) {
                k = i, start = pos + sep;
                break;
            }
            pos += sep + len;
        }
        if (k < 0) /* past this model's last layer: the saved one goes on */
            return tg_error_here(TG_ERR_FORMAT, "the state dict is of another architecture: "
                                 "it has more than this model's %d layers (the weights alone "
                                 "load with tg_sequential_load_weights)", m->n_layers);
        if (saved[at] == ']' && at <= start)
            return tg_error_here(TG_ERR_FORMAT, "the state dict is of another architecture: "
                                 "it has %d layers, this model %d (from layer %d \"%s\", %s; "
                                 "the weights alone load with tg_sequential_load_weights)", k,
                                 m->n_layers, k, m->layers[k]->name,
                                 m->layers[k]->vt->class_name);
    }
    size_t b = item_start(mine, k >= 0 ? start : 0, at);
    int ns = (int)item_end(saved + b), nm = (int)item_end(mine + b);
    if (k < 0)
        return tg_error_here(TG_ERR_FORMAT, "the state dict is of another architecture: the "
                             "model differs (saved %.*s, this model %.*s; the weights alone "
                             "load with tg_sequential_load_weights)", ns > 200 ? 200 : ns,
                             saved + b, nm > 200 ? 200 : nm, mine + b);
    return tg_error_here(TG_ERR_FORMAT, "the state dict is of another architecture: layer %d "
                         "\"%s\" (%s) differs: saved %.*s, this model %.*s (the weights alone "
                         "load with tg_sequential_load_weights)", k, m->layers[k]->name,
                         m->layers[k]->vt->class_name, ns > 200 ? 200 : ns, saved + b,
                         nm > 200 ? 200 : nm, mine + b);
}

/* The check of "<prefix>architecture" against the model; present says whether
 * sd has it at all (when it does not, TG_OK). Errors name the context. */
static tg_status check_arch(tg_sequential *m, const tg_state_dict *sd, const char *prefix,
                            bool *present)
{
    char key[1024];
    tg_status st = join(key, sizeof key, prefix, "architecture");
    if (st != TG_OK)
        return st;
    const char *saved = NULL;
    *present = tg_state_dict_get_str(&saved, sd, key) == TG_OK;
    tg_clear_error();
    if (!*present)
        return TG_OK;
    char *mine = tg_sequential_architecture(m);
    if (!mine)
        return tg_last_status();
    size_t at = 0;
    while (saved[at] && saved[at] == mine[at])
        at++;
    st = saved[at] == mine[at] ? TG_OK : arch_difference(m, saved, mine, at);
    free(mine);
    return st;
}

tg_status tg_sequential_check_architecture(tg_sequential *model, const tg_state_dict *sd,
                                           const char *prefix)
{
    static const char *fn = "tg_sequential_check_architecture";
    if (!model || !sd)
        return tg_null_arg(fn, model ? "sd" : "model");
    const char *prev = tg_error_enter(fn);
    bool present;
    tg_status st = check_arch(model, sd, prefix, &present);
    if (st == TG_OK && !present) {
        char key[1024];
        snprintf(key, sizeof key, "%sarchitecture", prefix ? prefix : "");
        st = tg_error_here(TG_ERR_FORMAT, "no string attribute \"%s\": the architecture the "
                           "weights were saved from is unknown (tg_sequential_load_weights "
                           "loads them by name only)", key);
    }
    tg_error_leave(prev);
    return st;
}

/* ---------------------------------------------------------------- state dict */

/* Adds "<prefix><layer>/<name>" for each parameter, then each buffer, layer by
 * layer: the model's name is not part of the key (the tensors' own names carry
 * it), so weights load into a model of another name. */
static tg_status add_tensors(tg_state_dict *sd, const tg_sequential *m, const char *prefix)
{
    char key[1024], rel[600];
    tg_status st;
    for (int i = 0; i < m->n_layers; i++) {
        const tg_layer *l = m->layers[i];
        const tg_layer_slots *kinds[2] = { &l->params, &l->buffers };
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < kinds[k]->n; j++) {
                tg_tensor *t = kinds[k]->v[j].t;
                snprintf(rel, sizeof rel, "%s/%s", l->name, kinds[k]->v[j].short_name);
                if ((st = join(key, sizeof key, prefix, rel)) != TG_OK ||
                    (st = tg_state_dict_set(sd, key, t)) != TG_OK)
                    return st;
            }
    }
    return TG_OK;
}

static tg_status state_dict(tg_sequential *model, tg_state_dict *sd, const char *prefix)
{
    tg_status st = tg_sequential_build(model);
    if (st != TG_OK || (st = add_tensors(sd, model, prefix)) != TG_OK)
        return st;
    char *arch = tg_sequential_architecture(model);
    if (!arch)
        return tg_last_status();
    char key[1024];
    st = join(key, sizeof key, prefix, "architecture");
    if (st == TG_OK)
        st = tg_state_dict_set_str(sd, key, arch);
    free(arch);
    return st;
}

tg_status tg_sequential_state_dict(tg_sequential *model, tg_state_dict *sd, const char *prefix)
{
    static const char *fn = "tg_sequential_state_dict";
    if (!model || !sd)
        return tg_null_arg(fn, model ? "sd" : "model");
    const char *prev = tg_error_enter(fn);
    tg_status st = state_dict(model, sd, prefix);
    tg_error_leave(prev);
    return st;
}

/* The check of a load: every parameter and buffer under prefix, nothing else
 * there. On success *targets (the caller frees it) maps the short names to the
 * live tensors, for the apply. */
static tg_status check_load(tg_state_dict **targets, tg_sequential *model,
                            const tg_state_dict *sd, const char *prefix)
{
    *targets = NULL;
    tg_status st = tg_sequential_build(model);
    if (st != TG_OK)
        return st;
    tg_state_dict *t = tg_state_dict_new();
    if (!t)
        return tg_last_status();
    if ((st = add_tensors(t, model, NULL)) != TG_OK) {
        tg_state_dict_free(t);
        return st;
    }
    tg_sd_check c;
    tg_sd_check_init(&c, " in the state dict");
    tg_sd_check_entries(&c, t, sd, prefix, true);
    st = tg_sd_check_done(&c, TG_ERR_FORMAT, tg_error_context(),
                          "the state dict does not match model \"%s\"", model->name);
    if (st != TG_OK)
        tg_state_dict_free(t);
    else
        *targets = t;
    return st;
}

/* The check of a state dict against the model (the architecture too unless
 * weights_only), then (apply) the copy: what the public check and loads share;
 * fn names the caller in the errors. */
static tg_status check_then_load(tg_sequential *model, const tg_state_dict *sd,
                                 const char *prefix, bool apply, bool weights_only,
                                 const char *fn)
{
    if (!model || !sd)
        return tg_null_arg(fn, model ? "sd" : "model");
    tg_state_dict *t = NULL;
    const char *prev = tg_error_enter(fn);
    bool present;
    /* Names, shapes and dtypes first (their list says most when they differ),
     * then the architecture: what is left when the parameters fit. */
    tg_status st = check_load(&t, model, sd, prefix);
    if (st == TG_OK && !weights_only && (st = check_arch(model, sd, prefix, &present)) != TG_OK) {
        tg_state_dict_free(t);
        t = NULL;
    }
    tg_error_leave(prev);
    if (st == TG_OK && apply)
        st = tg_sd_apply(t, sd, prefix);
    tg_state_dict_free(t);
    return st;
}

tg_status tg_sequential_check_state_dict(tg_sequential *model, const tg_state_dict *sd,
                                         const char *prefix)
{
    return check_then_load(model, sd, prefix, false, false, "tg_sequential_check_state_dict");
}

tg_status tg_sequential_load_state_dict(tg_sequential *model, const tg_state_dict *sd,
                                        const char *prefix)
{
    return check_then_load(model, sd, prefix, true, false, "tg_sequential_load_state_dict");
}

tg_status tg_sequential_load_weights(tg_sequential *model, const tg_state_dict *sd,
                                     const char *prefix)
{
    return check_then_load(model, sd, prefix, true, true, "tg_sequential_load_weights");
}
