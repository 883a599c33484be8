/* autograd/function.c -- differentiable functions defined in user code
 * (tg_function_apply; autograd/autograd.h), recorded on the tape as one node.
 *
 * Every call shares one node type, "function", whose saved state is the call's
 * context: the definition, the user pointer, the tensors the forward saved
 * (with their versions then), a view of the output when asked for, and the
 * definition's data block. The node's DOT label adds the definition's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/node_impl.h"

#define FN_MAX_SAVED 16

struct tg_function_ctx {
    const tg_function_def *def;
    void *user;
    int n_inputs;
    tg_tensor *const *inputs; /* forward: the caller's array; backward: the node's */
    const tg_node *node;      /* backward only */
    int n_saved;
    tg_tensor *saved[FN_MAX_SAVED];     /* owned */
    uint64_t saved_version[FN_MAX_SAVED];
    bool save_output;
    tg_tensor *output;                  /* owned view of the output, or NULL */
    bool in_forward;
    void *data;                         /* def->data_size bytes after this struct */
};

static void ctx_free(void *p)
{
    tg_function_ctx *c = p;
    if (!c)
        return;
    for (int i = 0; i < c->n_saved; i++)
        tg_release(c->saved[i]);
    tg_release(c->output);
    free(c);
}

static tg_status fn_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in);

static void fn_describe(const tg_node *node, char *buf, size_t n)
{
    const tg_function_ctx *c = node->saved;
    snprintf(buf, n, "%s", c && c->def->name ? c->def->name : "");
}

static const tg_op_vtable function_vtable = {
    .name = "function",
    .backward = fn_backward,
    .free_saved = ctx_free,
    .describe = fn_describe,
};

tg_status tg_function_save(tg_function_ctx *ctx, tg_tensor *t)
{
    if (!ctx)
        return tg_null_arg("tg_function_save", "ctx");
    if (!t)
        return tg_null_arg("tg_function_save", "t");
    if (!ctx->in_forward)
        return tg_error(TG_ERR_STATE, "tg_function_save (%s): tensors can be saved only in "
                        "the forward", ctx->def->name);
    if (ctx->n_saved == FN_MAX_SAVED)
        return tg_error(TG_ERR_RANGE, "tg_function_save (%s): at most %d tensors can be "
                        "saved", ctx->def->name, FN_MAX_SAVED);
    /* a detached view: the saved state never holds a history (no cycle through
     * the output), and the storage version still tells writes apart */
    tg_tensor *v = tg_tensor_view_owned(t, t->ndim, t->shape, t->strides, t->offset);
    if (!v)
        return tg_last_status();
    ctx->saved_version[ctx->n_saved] = t->storage->version;
    ctx->saved[ctx->n_saved++] = v;
    return TG_OK;
}

tg_status tg_function_save_output(tg_function_ctx *ctx)
{
    if (!ctx)
        return tg_null_arg("tg_function_save_output", "ctx");
    if (!ctx->in_forward)
        return tg_error(TG_ERR_STATE, "tg_function_save_output (%s): only in the forward",
                        ctx->def->name);
    ctx->save_output = true;
    return TG_OK;
}

tg_tensor *tg_function_saved(const tg_function_ctx *ctx, int i)
{
    if (!ctx)
        return tg_null_arg("tg_function_saved", "ctx"), NULL;
    if (i < 0 || i >= ctx->n_saved)
        return tg_error(TG_ERR_RANGE, "tg_function_saved (%s): no saved tensor %d (%d saved)",
                        ctx->def->name, i, ctx->n_saved), NULL;
    return ctx->saved[i];
}

tg_tensor *tg_function_saved_output(const tg_function_ctx *ctx)
{
    if (!ctx)
        return tg_null_arg("tg_function_saved_output", "ctx"), NULL;
    if (!ctx->output)
        return tg_error(TG_ERR_STATE, "tg_function_saved_output (%s): the forward did not "
                        "call tg_function_save_output%s", ctx->def->name,
                        ctx->in_forward ? " (the output exists only after the forward)" : ""),
               NULL;
    return ctx->output;
}

tg_tensor *tg_function_input(const tg_function_ctx *ctx, int i)
{
    if (!ctx)
        return tg_null_arg("tg_function_input", "ctx"), NULL;
    if (i < 0 || i >= ctx->n_inputs)
        return tg_error(TG_ERR_RANGE, "tg_function_input (%s): no input %d (%d inputs)",
                        ctx->def->name, i, ctx->n_inputs), NULL;
    return ctx->inputs[i];
}

void *tg_function_data(const tg_function_ctx *ctx)
{
    return ctx && ctx->def->data_size ? ctx->data : NULL;
}

void *tg_function_user(const tg_function_ctx *ctx)
{
    return ctx ? ctx->user : NULL;
}

bool tg_function_needs_grad(const tg_function_ctx *ctx, int i)
{
    if (!ctx || i < 0 || i >= ctx->n_inputs)
        return false;
    if (ctx->node)
        return tg_node_needs_grad(ctx->node, i);
    return ctx->inputs[i] && tg_requires_grad(ctx->inputs[i]);
}

tg_tensor *tg_function_apply(const tg_function_def *def, tg_tensor *const *inputs, int n_inputs,
                             void *user)
{
    if (!def)
        return tg_null_arg("tg_function_apply", "def"), NULL;
    const char *name = def->name ? def->name : "?";
    if (!def->name || !def->forward || !def->backward)
        return tg_error(TG_ERR_ARG, "tg_function_apply (%s): the definition needs a name, a "
                        "forward and a backward", name), NULL;
    if (n_inputs < 1 || n_inputs > 64 || !inputs)
        return tg_error(TG_ERR_ARG, "tg_function_apply (%s): %d inputs (1 to 64, in a "
                        "non-NULL array)", name, n_inputs), NULL;
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i])
            return tg_error(TG_ERR_ARG, "tg_function_apply (%s): input %d is NULL", name, i),
                   NULL;
    tg_function_ctx *c = calloc(1, sizeof *c + def->data_size);
    if (!c)
        return tg_error(TG_ERR_NOMEM, "tg_function_apply (%s): out of memory", name), NULL;
    c->def = def;
    c->user = user;
    c->n_inputs = n_inputs;
    c->inputs = inputs;
    c->data = c + 1;
    c->in_forward = true;
    bool record = tg_autograd_should_record(inputs, n_inputs);

    /* the forward's own ops are not recorded: the node stands for all of them */
    bool prev = tg_set_grad_enabled(false);
    tg_tensor *y = def->forward(c, inputs, n_inputs, user);
    tg_set_grad_enabled(prev);
    c->in_forward = false;
    if (!y) {
        if (tg_last_status() == TG_OK)
            tg_error(TG_ERR_ARG, "tg_function_apply (%s): the forward returned NULL without "
                     "an error", name);
        ctx_free(c);
        return NULL;
    }
    /* a new header on the result's storage: the output never is an input (or a
     * tensor with a history of its own), whatever the forward returned */
    tg_tensor *out = tg_tensor_view_owned(y, y->ndim, y->shape, y->strides, y->offset);
    if (!out || !record) {
        ctx_free(c);
        return out ? tg_scoped(out) : NULL;
    }
    if (c->save_output &&
        !(c->output = tg_tensor_view_owned(out, out->ndim, out->shape, out->strides,
                                           out->offset))) {
        ctx_free(c);
        tg_release(out);
        return NULL;
    }
    tg_tensor *saved_out = c->output;
    tg_node *node = tg_autograd_record(out, &function_vtable, inputs, n_inputs, c);
    if (!node) {
        tg_release(out);
        return NULL; /* c freed by the recorder */
    }
    if (saved_out)
        tg_node_save_output(node, saved_out);
    return tg_scoped(out);
}

static tg_status fn_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    tg_function_ctx *c = node->saved;
    const char *name = c->def->name;
    for (int i = 0; i < c->n_saved; i++)
        if (c->saved[i]->storage->version != c->saved_version[i])
            return tg_error(TG_ERR_STATE, "tg_backward: saved tensor %d of function '%s' was "
                            "written after the forward saved it (version %llu, saved %llu); "
                            "write into a copy (tg_tensor_copy) instead", i, name,
                            (unsigned long long)c->saved[i]->storage->version,
                            (unsigned long long)c->saved_version[i]);
    c->inputs = node->inputs;
    c->node = node;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s backward", name);
    const char *prev = tg_error_enter(ctx);
    tg_status st = c->def->backward(c, grad_out, grad_in);
    tg_error_leave(prev);
    c->node = NULL;
    if (st == TG_OK)
        for (int i = 0; i < node->n_inputs; i++)
            if (tg_node_needs_grad(node, i) && !grad_in[i])
                return tg_error(TG_ERR_STATE, "tg_backward: function '%s' gave no gradient for "
                                "input %d, which needs one", name, i);
    return st;
}
