/* nn/model.c -- the functional model graph: inputs and layer applications as
 * nodes in creation order (which is topological: a node reads only earlier
 * ones), built in one pass over the nodes, run in one pass per forward; its
 * summary ("Connected to") and architecture. The rest (parameters, state
 * dicts, training state) is shared with Sequential models in nn/sequential.c,
 * which sees the same struct and dispatches here where the kinds differ. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---------------------------------------------------------------- construction */

tg_model *tg_model_new(const char *name)
{
    static const char *fn = "tg_model_new";
    const char *prev = tg_error_enter(fn);
    tg_status st = name ? tg_layer_check_name(name) : TG_OK;
    tg_error_leave(prev);
    if (st != TG_OK)
        return NULL;
    tg_model *m = calloc(1, sizeof *m);
    if (m)
        m->name = strdup(name ? name : "model");
    if (!m || !m->name) {
        free(m);
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", fn), NULL;
    }
    m->graph = true;
    m->dtype = TG_F32;
    m->training = true;
    return m;
}

void tg_model_free_nodes(tg_model *m)
{
    for (int i = 0; i < m->n_nodes; i++) {
        free(m->nodes[i]->name);
        free(m->nodes[i]->in);
        free(m->nodes[i]);
    }
    free(m->nodes);
    free(m->values);
    free(m->error_msg);
    m->nodes = NULL;
    m->values = NULL;
    m->error_msg = NULL;
    m->n_nodes = m->cap_nodes = 0;
}

/* Keeps the first construction error, to be returned by tg_model_set_outputs
 * and the build; returns st. */
static tg_status record(tg_model *m, tg_status st)
{
    if (m && m->error == TG_OK && st != TG_OK) {
        m->error = st;
        free(m->error_msg);
        m->error_msg = strdup(tg_last_error());
    }
    return st;
}

/* A layer or an input of this model named name, or NULL. */
static bool name_taken(const tg_model *m, const char *name)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->name && strcmp(m->layers[i]->name, name) == 0)
            return true;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i]->name && strcmp(m->nodes[i]->name, name) == 0)
            return true;
    return false;
}

/* A new node at the end; NULL (error set, context entered) when out of memory. */
static tg_node *push_node(tg_model *m, int n_in)
{
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 16;
        tg_node **v = realloc(m->nodes, sizeof *v * (size_t)cap);
        if (!v)
            return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
        m->nodes = v;
        m->cap_nodes = cap;
    }
    tg_node *nd = calloc(1, sizeof *nd);
    int *in = n_in ? calloc((size_t)n_in, sizeof *in) : NULL;
    if (!nd || (n_in && !in)) {
        free(nd);
        free(in);
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    }
    nd->model = m;
    nd->index = m->n_nodes;
    nd->n_in = n_in;
    nd->in = in;
    m->nodes[m->n_nodes++] = nd;
    return nd;
}

/* Construction is allowed; errors name the context. */
static tg_status can_grow(const tg_model *m)
{
    if (!m->graph)
        return tg_error_here(TG_ERR_STATE, "model \"%s\" is a Sequential model: add layers "
                             "with tg_sequential_add", m->name);
    if (m->closed || m->built)
        return tg_error_here(TG_ERR_STATE, "model \"%s\" is complete (its outputs are set); "
                             "make a new model to extend it", m->name);
    return TG_OK;
}

static tg_node *input(tg_model *m, const char *name, int ndim, const int64_t *shape)
{
    if (can_grow(m) != TG_OK)
        return NULL;
    if (ndim < 1 || ndim > TG_MAX_DIMS - 1)
        return tg_error_here(TG_ERR_ARG, "an input shape has %d dims; it needs 1..%d (the "
                             "batch is not part of it)", ndim, TG_MAX_DIMS - 1), NULL;
    if (!shape)
        return tg_null_arg_here("shape"), NULL;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1) {
            char s[128];
            return tg_error_here(TG_ERR_ARG, "input shape %s has an extent < 1 (the batch is "
                                 "not part of it)", tg_shape_str(s, sizeof s, ndim, shape)),
                   NULL;
        }
    if (m->n_inputs == TG_MODEL_MAX_IO)
        return tg_error_here(TG_ERR_ARG, "model \"%s\" has %d inputs already, the most there "
                             "can be", m->name, TG_MODEL_MAX_IO), NULL;
    char auto_name[64];
    if (name) {
        if (tg_layer_check_name(name) != TG_OK)
            return NULL;
        if (name_taken(m, name))
            return tg_error_here(TG_ERR_ARG, "model \"%s\" already has a layer or input named "
                                 "\"%s\"", m->name, name), NULL;
    } else {
        int k = 1;
        do
            snprintf(auto_name, sizeof auto_name, "input_%d", k++);
        while (name_taken(m, auto_name));
        name = auto_name;
    }
    char *copy = strdup(name);
    tg_node *nd = copy ? push_node(m, 0) : NULL;
    if (!nd) {
        free(copy);
        return copy ? NULL : (tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL);
    }
    nd->name = copy;
    nd->ndim = ndim;
    memcpy(nd->shape, shape, sizeof(int64_t) * (size_t)ndim);
    m->inputs[m->n_inputs++] = nd->index;
    return nd;
}

tg_node *tg_model_input(tg_model *model, const char *name, int ndim, const int64_t *shape)
{
    if (!model)
        return tg_null_arg("tg_model_input", "model"), NULL;
    const char *prev = tg_error_enter("tg_model_input");
    tg_node *nd = input(model, name, ndim, shape);
    if (!nd)
        record(model, tg_last_status());
    tg_error_leave(prev);
    return nd;
}

/* The checks and bookkeeping of an application; on error an unowned layer is
 * freed (apply steals it). Errors name the context. */
static tg_node *apply(tg_model *m, tg_layer *layer, int n, tg_node *const *xs)
{
    tg_status st = can_grow(m);
    char who[256];
    if (st == TG_OK && (n < 1 || n > TG_MODEL_MAX_IO))
        st = tg_error_here(TG_ERR_ARG, "n is %d; a layer reads 1..%d nodes", n,
                           TG_MODEL_MAX_IO);
    if (st == TG_OK && !xs)
        st = tg_null_arg_here("xs");
    for (int k = 0; st == TG_OK && k < n; k++) {
        if (!xs[k]) {
            /* Most likely an earlier call's NULL: say so, with its message. */
            char prev_msg[512];
            snprintf(prev_msg, sizeof prev_msg, "%s", m->error_msg ? m->error_msg
                                                                   : tg_last_error());
            st = tg_error_here(m->error != TG_OK ? m->error : TG_ERR_ARG, "input %d of layer "
                               "%s is NULL (an earlier call failed: %s)", k,
                               tg_layer_who(layer, who, sizeof who), prev_msg);
        } else if (xs[k]->model != m) {
            st = tg_error_here(TG_ERR_ARG, "input %d of layer %s is a node of model \"%s\", "
                               "not of \"%s\"", k, tg_layer_who(layer, who, sizeof who),
                               xs[k]->model->name, m->name);
        }
    }
    if (st == TG_OK && layer->in_model && layer->owner != m)
        st = tg_error_here(TG_ERR_STATE, "layer %s belongs to another model",
                           tg_layer_who(layer, who, sizeof who));
    if (st == TG_OK && tg_layer_is_multi(layer) && n < 2)
        st = tg_error_here(TG_ERR_ARG, "layer %s merges several inputs; apply it to 2 or more "
                           "nodes with tg_model_apply_n", tg_layer_who(layer, who, sizeof who));
    if (st == TG_OK && !tg_layer_is_multi(layer) && n != 1)
        st = tg_error_here(TG_ERR_ARG, "layer %s reads one node, not %d",
                           tg_layer_who(layer, who, sizeof who), n);
    bool adopt = st == TG_OK && !layer->in_model;
    if (adopt && layer->name && name_taken(m, layer->name))
        st = tg_error_here(TG_ERR_ARG, "model \"%s\" already has a layer or input named "
                           "\"%s\"", m->name, layer->name);
    if (adopt && st == TG_OK && m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 8;
        tg_layer **ls = realloc(m->layers, sizeof *ls * (size_t)cap);
        if (!ls)
            st = tg_error_here(TG_ERR_NOMEM, "out of memory");
        else
            m->layers = ls, m->cap_layers = cap;
    }
    if (adopt && st == TG_OK && !layer->name) {
        char name[128];
        snprintf(name, sizeof name, "%s", layer->vt->base_name);
        for (int k = 1; name_taken(m, name); k++)
            snprintf(name, sizeof name, "%s_%d", layer->vt->base_name, k);
        if (!(layer->name = strdup(name)))
            st = tg_error_here(TG_ERR_NOMEM, "out of memory");
    }
    tg_node *nd = st == TG_OK ? push_node(m, n) : NULL;
    if (!nd) {
        if (!layer->in_model)
            tg_layer_free(layer);
        return NULL;
    }
    if (adopt) {
        layer->in_model = true;
        layer->owner = m;
        m->layers[m->n_layers++] = layer;
    }
    nd->layer = layer;
    for (int i = 0; i < nd->index; i++)
        if (m->nodes[i]->layer == layer)
            nd->use++;
    for (int k = 0; k < n; k++)
        nd->in[k] = xs[k]->index;
    return nd;
}

tg_node *tg_model_apply_n(tg_model *model, tg_layer *layer, int n, tg_node *const *xs)
{
    static const char *fn = "tg_model_apply";
    if (!layer) {
        char prev_msg[512];
        snprintf(prev_msg, sizeof prev_msg, "%s", tg_last_error());
        tg_status st = tg_error(tg_last_status() != TG_OK ? tg_last_status() : TG_ERR_ARG,
                                "%s: layer is NULL (last error: %s)", fn, prev_msg);
        record(model, st);
        return NULL;
    }
    if (!model) {
        if (!layer->in_model)
            tg_layer_free(layer);
        return tg_null_arg(fn, "model"), NULL;
    }
    const char *prev = tg_error_enter(fn);
    tg_node *nd = apply(model, layer, n, xs);
    if (!nd)
        record(model, tg_last_status());
    tg_error_leave(prev);
    return nd;
}

tg_node *tg_model_apply(tg_model *model, tg_layer *layer, tg_node *x)
{
    return tg_model_apply_n(model, layer, 1, &x);
}

tg_status tg_model_set_outputs(tg_model *model, int n, tg_node *const *outputs)
{
    static const char *fn = "tg_model_set_outputs";
    if (!model)
        return tg_null_arg(fn, "model");
    const char *prev = tg_error_enter(fn);
    tg_status st = model->error;
    if (st != TG_OK) {
        st = tg_error_here(st, "the graph of model \"%s\" is incomplete: %s", model->name,
                           model->error_msg ? model->error_msg : "an earlier call failed");
        goto out;
    }
    if ((st = can_grow(model)) != TG_OK)
        goto out;
    if (n < 1 || n > TG_MODEL_MAX_IO) {
        st = tg_error_here(TG_ERR_ARG, "n is %d; a model has 1..%d outputs", n, TG_MODEL_MAX_IO);
        goto out;
    }
    if (!outputs) {
        st = tg_null_arg_here("outputs");
        goto out;
    }
    if (model->n_inputs == 0) {
        st = tg_error_here(TG_ERR_STATE, "model \"%s\" has no inputs (tg_model_input)",
                           model->name);
        goto out;
    }
    for (int k = 0; k < n; k++)
        if (!outputs[k] || outputs[k]->model != model) {
            st = outputs[k] ? tg_error_here(TG_ERR_ARG, "output %d is a node of model \"%s\"",
                                            k, outputs[k]->model->name)
                            : tg_null_arg_here("outputs[k]");
            goto out;
        }
    /* What the outputs depend on: a walk back over the (topological) order. */
    bool *needed = calloc((size_t)model->n_nodes, sizeof *needed);
    if (!needed) {
        st = tg_error_here(TG_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int k = 0; k < n; k++)
        needed[outputs[k]->index] = true;
    for (int i = model->n_nodes - 1; i >= 0; i--)
        for (int k = 0; needed[i] && k < model->nodes[i]->n_in; k++)
            needed[model->nodes[i]->in[k]] = true;
    for (int k = 0; k < model->n_inputs && st == TG_OK; k++)
        if (!needed[model->inputs[k]])
            st = tg_error_here(TG_ERR_ARG, "input \"%s\" of model \"%s\" reaches no output",
                               model->nodes[model->inputs[k]]->name, model->name);
    for (int i = 0; i < model->n_nodes && st == TG_OK; i++)
        if (!needed[i]) {
            char who[256];
            st = tg_error_here(TG_ERR_ARG, "the output of layer %s (application %d) reaches no "
                               "output of model \"%s\"; make it an output or leave it out",
                               tg_layer_who(model->nodes[i]->layer, who, sizeof who),
                               model->nodes[i]->use, model->name);
        }
    free(needed);
    if (st != TG_OK)
        goto out;
    for (int i = 0; i < model->n_nodes; i++)
        for (int k = 0; k < model->nodes[i]->n_in; k++)
            model->nodes[model->nodes[i]->in[k]]->readers++;
    for (int k = 0; k < n; k++) {
        model->outputs[k] = outputs[k]->index;
        outputs[k]->is_output = true;
    }
    model->n_outputs = n;
    model->closed = true;
out:
    tg_error_leave(prev);
    return st;
}

/* ---------------------------------------------------------------- build */

static int layer_index(const tg_model *m, const tg_layer *l)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i] == l)
            return i;
    return -1;
}

/* A later application of a built layer must see the shapes of its first. */
static tg_status check_shared(const tg_node *nd, int n, const int *nds,
                              const int64_t *const *shapes)
{
    const tg_layer *l = nd->layer;
    for (int k = 0; k < n; k++) {
        int want_nd = tg_layer_is_multi(l) ? l->multi_ndim[k] : l->in_ndim;
        const int64_t *want = tg_layer_is_multi(l) ? l->multi_shape[k] : l->in_shape;
        bool same = nds[k] == want_nd && (!tg_layer_is_multi(l) || n == l->n_in);
        for (int i = 0; same && i < want_nd; i++)
            same = shapes[k][i] == want[i];
        if (!same) {
            char who[256], a[128], b[128];
            return tg_error_here(TG_ERR_SHAPE, "shared layer %s was built for input %s; its "
                                 "application %d gets %s (a shared layer keeps one shape)",
                                 tg_layer_who(l, who, sizeof who),
                                 tg_nn_batch_shape_str(a, sizeof a, want_nd, want), nd->use,
                                 tg_nn_batch_shape_str(b, sizeof b, nds[k], shapes[k]));
        }
    }
    return TG_OK;
}

tg_status tg_model_build_graph(tg_model *m)
{
    if (m->built)
        return TG_OK;
    if (m->error != TG_OK)
        return tg_error_here(m->error, "the graph of model \"%s\" is incomplete: %s", m->name,
                             m->error_msg ? m->error_msg : "an earlier call failed");
    if (!m->closed)
        return tg_error_here(TG_ERR_STATE, "model \"%s\" has no outputs yet: call "
                             "tg_model_set_outputs before building or running it", m->name);
    bool *built_here = calloc((size_t)m->n_layers + 1, sizeof *built_here);
    tg_tensor **values = calloc(2 * (size_t)m->n_nodes, sizeof *values);
    tg_status st = built_here && values ? TG_OK : tg_error_here(TG_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_nodes && st == TG_OK; i++) {
        tg_node *nd = m->nodes[i];
        if (!nd->layer)
            continue;
        int nds[TG_MODEL_MAX_IO];
        const int64_t *shapes[TG_MODEL_MAX_IO];
        for (int k = 0; k < nd->n_in; k++) {
            nds[k] = m->nodes[nd->in[k]]->ndim;
            shapes[k] = m->nodes[nd->in[k]]->shape;
        }
        tg_layer *l = nd->layer;
        if (!l->built) {
            st = tg_layer_build_in_n(l, nd->n_in, nds, shapes, m->dtype, m->rng);
            if (st == TG_OK)
                built_here[layer_index(m, l)] = true;
        } else {
            st = check_shared(nd, nd->n_in, nds, shapes);
        }
        if (st == TG_OK) {
            nd->ndim = l->out_ndim;
            memcpy(nd->shape, l->out_shape, sizeof nd->shape);
        }
    }
    size_t np = 0;
    for (int i = 0; i < m->n_layers; i++)
        np += (size_t)m->layers[i]->params.n;
    tg_tensor **params = NULL;
    if (st == TG_OK && np > 0 && !(params = malloc(sizeof *params * np)))
        st = tg_error_here(TG_ERR_NOMEM, "out of memory");
    if (st != TG_OK) {
        for (int i = 0; built_here && i < m->n_layers; i++)
            if (built_here[i])
                tg_layer_unbuild(m->layers[i]);
        free(built_here);
        free(values);
        return st;
    }
    free(built_here);
    np = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i]->params.n; k++)
            params[np++] = tg_layer_param_at(m->layers[i], k);
    m->params = params;
    m->n_params = np;
    m->values = values;
    m->built = true;
    return TG_OK;
}

/* ---------------------------------------------------------------- forward */

/* The checks of the inputs against the model's; errors name the context. */
static tg_status check_inputs(const tg_model *m, int n_in, tg_tensor *const *xs)
{
    if (n_in != m->n_inputs)
        return tg_error_here(TG_ERR_ARG, "model \"%s\" has %d input%s; %d given", m->name,
                             m->n_inputs, m->n_inputs == 1 ? "" : "s", n_in);
    int64_t batch = -1;
    for (int k = 0; k < n_in; k++) {
        const tg_node *in = m->nodes[m->inputs[k]];
        if (!xs[k])
            return tg_error_here(TG_ERR_ARG, "input %d (\"%s\") is NULL", k, in->name);
        int nd = tg_tensor_ndim(xs[k]);
        const int64_t *s = tg_tensor_shape(xs[k]);
        bool ok = nd == in->ndim + 1;
        for (int i = 0; ok && i < in->ndim; i++)
            ok = s[i + 1] == in->shape[i];
        if (!ok) {
            char want[128], got[128];
            return tg_error_here(TG_ERR_SHAPE, "model \"%s\" expects input \"%s\" %s, got %s",
                                 m->name, in->name,
                                 tg_nn_batch_shape_str(want, sizeof want, in->ndim, in->shape),
                                 tg_shape_str(got, sizeof got, nd, s));
        }
        if (batch >= 0 && s[0] != batch)
            return tg_error_here(TG_ERR_SHAPE, "model \"%s\": input \"%s\" has %lld examples, "
                                 "input \"%s\" %lld; every input needs the same batch",
                                 m->name, in->name, (long long)s[0],
                                 m->nodes[m->inputs[0]]->name, (long long)batch);
        batch = s[0];
        if (tg_tensor_dtype(xs[k]) != m->dtype)
            return tg_error_here(TG_ERR_DTYPE, "model \"%s\" has %s parameters; input \"%s\" "
                                 "is %s (convert it with tg_tensor_to_dtype)", m->name,
                                 tg_dtype_name(m->dtype), in->name,
                                 tg_dtype_name(tg_tensor_dtype(xs[k])));
    }
    return TG_OK;
}

/* The graph's pass; errors name the context. values[i] is what node i's
 * readers see, values[n_nodes + i] an output's logits when they differ. */
static tg_status run_graph(tg_model *m, int n_in, tg_tensor *const *xs, int n_out,
                           tg_tensor **outs, bool logits)
{
    tg_status st = tg_model_build_graph(m);
    if (st != TG_OK || (st = check_inputs(m, n_in, xs)) != TG_OK)
        return st;
    if (n_out != m->n_outputs)
        return tg_error_here(TG_ERR_ARG, "model \"%s\" has %d output%s; room for %d given",
                             m->name, m->n_outputs, m->n_outputs == 1 ? "" : "s", n_out);
    tg_tensor **v = m->values, **lv = m->values + m->n_nodes;
    memset(v, 0, sizeof *v * 2 * (size_t)m->n_nodes);
    for (int k = 0; k < n_in; k++)
        v[m->inputs[k]] = xs[k];
    tg_fwd_ctx ctx = { .pub = { .training = m->training, .rng = m->rng }, .skip_softmax = false };
    for (int i = 0; i < m->n_nodes; i++) {
        tg_node *nd = m->nodes[i];
        if (!nd->layer)
            continue;
        tg_tensor *args[TG_MODEL_MAX_IO];
        for (int k = 0; k < nd->n_in; k++)
            args[k] = v[nd->in[k]];
        /* An output's final softmax is left out for logits; its readers (if
         * any) still get the probabilities. */
        ctx.skip_softmax = logits && nd->is_output && nd->layer->act == TG_ACT_SOFTMAX;
        tg_tensor *y = tg_layer_run_n(nd->layer, nd->n_in, args, &ctx);
        if (y && ctx.skip_softmax) {
            lv[i] = y;
            y = nd->readers ? tg_activation_apply(y, TG_ACT_SOFTMAX) : y;
        }
        if (!y)
            return tg_last_status();
        v[i] = y;
    }
    for (int k = 0; k < n_out; k++) {
        int i = m->outputs[k];
        tg_tensor *y = lv[i] ? lv[i] : v[i];
        /* An input given back as an output: a new scoped reference, as ops return. */
        outs[k] = m->nodes[i]->layer ? y : tg_activation_apply(y, TG_ACT_NONE);
        if (!outs[k])
            return tg_last_status();
    }
    return TG_OK;
}

tg_status tg_model_forward_n(tg_model *model, int n_in, tg_tensor *const *xs, int n_out,
                             tg_tensor **outs, bool logits)
{
    static const char *fn = "tg_model_forward_n";
    if (!model || !xs || !outs)
        return tg_null_arg(fn, !model ? "model" : !xs ? "xs" : "outs");
    if (n_out < 1 || n_out > TG_MODEL_MAX_IO || n_in < 1 || n_in > TG_MODEL_MAX_IO)
        return tg_error(TG_ERR_ARG, "%s: %d inputs and %d outputs; each needs 1..%d", fn, n_in,
                        n_out, TG_MODEL_MAX_IO);
    for (int k = 0; k < n_out; k++)
        outs[k] = NULL;
    if (!model->graph) {
        if (n_in != 1 || n_out != 1)
            return tg_error(TG_ERR_ARG, "%s: Sequential model \"%s\" has 1 input and 1 output; "
                            "%d and %d given", fn, model->name, n_in, n_out);
        outs[0] = logits ? tg_sequential_forward_logits(model, xs[0])
                         : tg_sequential_forward(model, xs[0]);
        return outs[0] ? TG_OK : tg_last_status();
    }
    const char *prev = tg_error_enter(fn);
    tg_status st = run_graph(model, n_in, xs, n_out, outs, logits);
    tg_error_leave(prev);
    if (st != TG_OK)
        for (int k = 0; k < n_out; k++)
            outs[k] = NULL;
    return st;
}

tg_tensor *tg_model_forward_graph1(tg_model *m, tg_tensor *x, bool logits)
{
    tg_tensor *y = NULL;
    if (tg_model_build_graph(m) != TG_OK)
        return NULL;
    if (m->n_inputs != 1 || m->n_outputs != 1)
        return tg_error_here(TG_ERR_ARG, "model \"%s\" has %d inputs and %d outputs; run it "
                             "with tg_model_forward_n", m->name, m->n_inputs, m->n_outputs),
               NULL;
    return run_graph(m, 1, &x, 1, &y, logits) == TG_OK ? y : NULL;
}

/* ---------------------------------------------------------------- queries */

int tg_node_shape(const tg_node *node, int64_t *shape)
{
    if (!node || (node->layer && !node->model->built))
        return 0;
    if (shape)
        memcpy(shape, node->shape, sizeof(int64_t) * (size_t)node->ndim);
    return node->ndim;
}

tg_layer *tg_node_layer(const tg_node *node)
{
    return node ? node->layer : NULL;
}

int tg_model_num_inputs(const tg_model *model)
{
    return !model ? 0 : model->graph ? model->n_inputs : 1;
}

int tg_model_num_outputs(const tg_model *model)
{
    return !model ? 0 : model->graph ? model->n_outputs : 1;
}

bool tg_model_is_graph(const tg_model *model)
{
    return model && model->graph;
}

/* ---------------------------------------------------------------- summary */

/* "conv2d[0][0]": how Keras names the tensor a node gives. */
static void node_ref(char *buf, size_t n, const tg_node *nd)
{
    if (nd->layer)
        snprintf(buf, n, "%s[%d][0]", nd->layer->name, nd->use);
    else
        snprintf(buf, n, "%s[0][0]", nd->name);
}

/* "['a[0][0]', 'b[0][0]']" for the nodes nd reads. */
static void connected(char *buf, size_t n, const tg_model *m, const tg_node *nd)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int k = 0; k < nd->n_in && o < n; k++) {
        char r[200];
        node_ref(r, sizeof r, m->nodes[nd->in[k]]);
        o += (size_t)snprintf(buf + o, n - o, "%s'%s'", k ? ", " : "", r);
    }
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static void row4(FILE *out, const char *a, const char *b, const char *c, const char *d,
                 const int w[3])
{
    /* Trailing blanks trimmed: an empty last cell ends the line at the third. */
    if (*d)
        fprintf(out, " %-*s%-*s%-*s%s\n", w[0] - 1, a, w[1], b, w[2], c, d);
    else if (*c)
        fprintf(out, " %-*s%-*s%s\n", w[0] - 1, a, w[1], b, c);
    else if (*b)
        fprintf(out, " %-*s%s\n", w[0] - 1, a, b);
    else
        fprintf(out, " %s\n", a);
}

tg_status tg_model_summary_graph(tg_model *m, FILE *out)
{
    tg_status st = tg_model_build_graph(m);
    if (st != TG_OK)
        return st;
    /* Keras's functional layout (line 98: columns at 33, 55, 67), widened as needed. */
    int w[3] = { 33, 22, 12 };
    char a[300], b[200], c[200], d[2048];
    for (int i = 0; i < m->n_nodes; i++) {
        const tg_node *nd = m->nodes[i];
        if (nd->layer && nd->use > 0)
            continue;
        if (nd->layer)
            snprintf(a, sizeof a, "%s (%s)", nd->layer->name, nd->layer->vt->class_name);
        else
            snprintf(a, sizeof a, "%s (InputLayer)", nd->name);
        tg_nn_batch_shape_str(b, sizeof b, nd->ndim, nd->shape);
        int n0 = (int)strlen(a) + 2, n1 = (int)strlen(b) + 1;
        w[0] = n0 > w[0] ? n0 : w[0];
        w[1] = n1 > w[1] ? n1 : w[1];
    }
    int width = w[0] + w[1] + w[2] + 31;
    if (width < 98)
        width = 98;
    fprintf(out, "Model: \"%s\"\n", m->name);
    tg_nn_rule(out, '_', width);
    row4(out, "Layer (type)", "Output Shape", "Param #", "Connected to", w);
    tg_nn_rule(out, '=', width);
    bool first = true;
    for (int i = 0; i < m->n_nodes; i++) {
        const tg_node *nd = m->nodes[i];
        if (nd->layer && nd->use > 0)
            continue; /* a shared layer's row lists all its applications */
        if (!first)
            tg_nn_rule(out, '_', width);
        first = false;
        tg_nn_batch_shape_str(b, sizeof b, nd->ndim, nd->shape);
        if (!nd->layer) {
            snprintf(a, sizeof a, "%s (InputLayer)", nd->name);
            row4(out, a, b, "0", "[]", w);
            continue;
        }
        snprintf(a, sizeof a, "%s (%s)", nd->layer->name, nd->layer->vt->class_name);
        tg_nn_thousands(c, sizeof c, tg_layer_count_params(nd->layer));
        connected(d, sizeof d, m, nd);
        row4(out, a, b, c, d, w);
        for (int j = i + 1; j < m->n_nodes; j++)
            if (m->nodes[j]->layer == nd->layer) {
                connected(d, sizeof d, m, m->nodes[j]);
                row4(out, "", "", "", d, w);
            }
    }
    return tg_nn_summary_end(out, m, width);
}

/* ---------------------------------------------------------------- architecture */

static void json_ref(tg_strbuf *b, const tg_node *nd)
{
    tg_strbuf_printf(b, "[");
    tg_strbuf_json_str(b, nd->layer ? nd->layer->name : nd->name);
    tg_strbuf_printf(b, ", %d, 0]", nd->layer ? nd->use : 0);
}

char *tg_model_architecture_graph(tg_model *m)
{
    if (tg_model_build_graph(m) != TG_OK)
        return NULL;
    tg_strbuf b = TG_STRBUF_INIT;
    tg_strbuf_printf(&b, "{\"class_name\": \"Functional\", \"name\": ");
    tg_strbuf_json_str(&b, m->name);
    tg_strbuf_printf(&b, ", \"layout\": \"channels_first\", \"dtype\": \"%s\", \"inputs\": [",
                     tg_dtype_name(m->dtype));
    for (int k = 0; k < m->n_inputs; k++) {
        const tg_node *in = m->nodes[m->inputs[k]];
        tg_strbuf_printf(&b, "%s{\"name\": ", k ? ", " : "");
        tg_strbuf_json_str(&b, in->name);
        tg_strbuf_printf(&b, ", \"shape\": [");
        for (int i = 0; i < in->ndim; i++)
            tg_strbuf_printf(&b, "%s%" PRId64, i ? ", " : "", in->shape[i]);
        tg_strbuf_printf(&b, "]}");
    }
    tg_strbuf_printf(&b, "], \"layers\": [");
    for (int i = 0; i < m->n_layers; i++) {
        const tg_layer *l = m->layers[i];
        tg_strbuf one = TG_STRBUF_INIT;
        tg_layer_describe(l, &one);
        if (!one.failed && one.len > 0) {
            /* The description without its closing brace, then the nodes it reads. */
            tg_strbuf_printf(&b, "%s%.*s, \"inbound_nodes\": [", i ? ", " : "",
                             (int)one.len - 1, one.s);
            bool first = true;
            for (int j = 0; j < m->n_nodes; j++) {
                const tg_node *nd = m->nodes[j];
                if (nd->layer != l)
                    continue;
                tg_strbuf_printf(&b, "%s[", first ? "" : ", ");
                first = false;
                for (int k = 0; k < nd->n_in; k++) {
                    if (k)
                        tg_strbuf_printf(&b, ", ");
                    json_ref(&b, m->nodes[nd->in[k]]);
                }
                tg_strbuf_printf(&b, "]");
            }
            tg_strbuf_printf(&b, "]}");
        } else {
            b.failed = true;
        }
        tg_strbuf_free(&one);
    }
    tg_strbuf_printf(&b, "], \"outputs\": [");
    for (int k = 0; k < m->n_outputs; k++) {
        if (k)
            tg_strbuf_printf(&b, ", ");
        json_ref(&b, m->nodes[m->outputs[k]]);
    }
    tg_strbuf_printf(&b, "]}");
    if (b.failed) {
        tg_strbuf_free(&b);
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    }
    return b.s;
}

/* ---------------------------------------------------------------- the generic names */

void tg_model_free(tg_model *model)
{
    tg_sequential_free(model);
}

tg_status tg_model_build(tg_model *model)
{
    return tg_sequential_build(model);
}

tg_status tg_model_summary(tg_model *model, FILE *out)
{
    return tg_sequential_summary(model, out);
}

char *tg_model_architecture(tg_model *model)
{
    return tg_sequential_architecture(model);
}

const char *tg_model_name(const tg_model *model)
{
    return tg_sequential_name(model);
}

tg_status tg_model_set_dtype(tg_model *model, tg_dtype dtype)
{
    return tg_sequential_set_dtype(model, dtype);
}

void tg_model_set_training(tg_model *model, bool training)
{
    tg_sequential_set_training(model, training);
}

tg_tensor *tg_model_forward(tg_model *model, tg_tensor *x)
{
    return tg_sequential_forward(model, x);
}

tg_tensor *tg_model_forward_logits(tg_model *model, tg_tensor *x)
{
    return tg_sequential_forward_logits(model, x);
}

tg_tensor *const *tg_model_params(tg_model *model, size_t *n)
{
    return tg_sequential_params(model, n);
}

tg_status tg_model_count_params(int64_t *total, int64_t *trainable, int64_t *non_trainable,
                                tg_model *model)
{
    return tg_sequential_count_params(total, trainable, non_trainable, model);
}

int tg_model_layer_count(const tg_model *model)
{
    return tg_sequential_layer_count(model);
}

tg_layer *tg_model_layer(const tg_model *model, int index)
{
    return tg_sequential_layer(model, index);
}

tg_layer *tg_model_layer_by_name(const tg_model *model, const char *name)
{
    return tg_sequential_layer_by_name(model, name);
}

tg_status tg_model_set_trainable(tg_model *model, bool trainable)
{
    if (!model)
        return tg_null_arg("tg_model_set_trainable", "model");
    for (int i = 0; i < model->n_layers; i++) {
        tg_status st = tg_layer_set_trainable(model->layers[i], trainable);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}
