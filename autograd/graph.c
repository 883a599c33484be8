/* autograd/graph.c -- a numbered, read-only snapshot of the recorded graph.
 *
 * Ids come from a pre-order depth-first walk (output, its op, then the op's inputs
 * left to right), so they depend on structure only. Pointers serve only to
 * recognise an object seen before, never to order anything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph.h"
#include "autograd/node_impl.h"

struct tg_graph {
    tg_graph_item *items;
    size_t n, cap;
    /* pointer -> item id, open addressing; keys are tensors and nodes */
    const void **keys;
    int *vals;
    size_t hcap;
};

static size_t hash_ptr(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int lookup(const tg_graph *g, const void *p)
{
    if (g->hcap == 0)
        return -1;
    for (size_t h = hash_ptr(p, g->hcap);; h = (h + 1) & (g->hcap - 1)) {
        if (!g->keys[h])
            return -1;
        if (g->keys[h] == p)
            return g->vals[h];
    }
}

static tg_status insert(tg_graph *g, const void *p, int id)
{
    if (2 * (g->n + 1) > g->hcap) { /* keep the load factor under 1/2 */
        size_t cap = g->hcap ? g->hcap * 2 : 64;
        const void **keys = calloc(cap, sizeof *keys);
        int *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory");
        }
        for (size_t i = 0; i < g->hcap; i++) {
            if (!g->keys[i])
                continue;
            size_t h = hash_ptr(g->keys[i], cap);
            while (keys[h])
                h = (h + 1) & (cap - 1);
            keys[h] = g->keys[i];
            vals[h] = g->vals[i];
        }
        free(g->keys);
        free(g->vals);
        g->keys = keys;
        g->vals = vals;
        g->hcap = cap;
    }
    size_t h = hash_ptr(p, g->hcap);
    while (g->keys[h])
        h = (h + 1) & (g->hcap - 1);
    g->keys[h] = p;
    g->vals[h] = id;
    return TG_OK;
}

/* Appends an item for key p (a tensor or a node); returns its id or -1. */
static int add_item(tg_graph *g, const void *p, tg_graph_item_kind kind)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 32;
        tg_graph_item *it = realloc(g->items, cap * sizeof *it);
        if (!it)
            return tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory"), -1;
        g->items = it;
        g->cap = cap;
    }
    int id = (int)g->n;
    if (insert(g, p, id) != TG_OK)
        return -1;
    tg_graph_item *it = &g->items[g->n++];
    memset(it, 0, sizeof *it);
    it->id = id;
    it->kind = kind;
    it->output_id = -1;
    it->producer_id = -1;
    return id;
}

/* Pre-order walk from one output with an explicit stack (deep graphs are fine). */
static tg_status walk(tg_graph *g, tg_tensor *root)
{
    size_t n = 0, cap = 64;
    const tg_tensor **stack = malloc(cap * sizeof *stack);
    if (!stack)
        return tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory");
    stack[n++] = root;
    tg_status rc = TG_OK;
    while (n > 0 && rc == TG_OK) {
        const tg_tensor *t = stack[--n];
        if (lookup(g, t) >= 0)
            continue;
        int tid = add_item(g, t, TG_GRAPH_TENSOR);
        if (tid < 0) {
            rc = tg_last_status();
            break;
        }
        g->items[tid].tensor = t;
        g->items[tid].is_leaf = t->grad_fn == NULL;
        g->items[tid].is_param = t->grad_fn == NULL && t->requires_grad;
        tg_node *node = (tg_node *)t->grad_fn;
        if (!node || lookup(g, node) >= 0)
            continue; /* a leaf, or a view sharing an op already drawn */
        int oid = add_item(g, node, TG_GRAPH_OP);
        if (oid < 0) {
            rc = tg_last_status();
            break;
        }
        tg_graph_item *op = &g->items[oid];
        op->op_name = node->op->name;
        op->output_id = tid;
        if (node->released) {
            snprintf(op->op_detail, sizeof op->op_detail, "%s", node->detail);
        } else if (node->op->describe) {
            node->op->describe(node, op->op_detail, sizeof op->op_detail);
            op->op_detail[sizeof op->op_detail - 1] = '\0';
        }
        if (n + (size_t)node->n_inputs > cap) {
            cap = (n + (size_t)node->n_inputs) * 2;
            const tg_tensor **s = realloc(stack, cap * sizeof *s);
            if (!s) {
                rc = tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory");
                break;
            }
            stack = s;
        }
        for (int i = node->n_inputs - 1; i >= 0; i--) /* first input popped first */
            if (node->inputs[i])
                stack[n++] = node->inputs[i];
    }
    free(stack);
    return rc;
}

/* Second pass: fill the links now that every id is known. */
static tg_status link(tg_graph *g)
{
    for (size_t k = 0; k < g->n; k++) {
        tg_graph_item *it = &g->items[k];
        if (it->kind == TG_GRAPH_TENSOR) {
            if (it->tensor->grad_fn)
                it->producer_id = lookup(g, it->tensor->grad_fn);
            continue;
        }
        /* the node is reached again through the tensor it was found from */
        const tg_node *node = (const tg_node *)g->items[it->output_id].tensor->grad_fn;
        int *ids = malloc((size_t)(node->n_inputs ? node->n_inputs : 1) * sizeof *ids);
        if (!ids)
            return tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory");
        int m = 0;
        for (int i = 0; i < node->n_inputs; i++)
            if (node->inputs[i])
                ids[m++] = lookup(g, node->inputs[i]);
        it->n_inputs = m;
        it->input_ids = ids;
    }
    return TG_OK;
}

void tg_graph_free(tg_graph *g)
{
    if (!g)
        return;
    for (size_t k = 0; k < g->n; k++)
        free((void *)g->items[k].input_ids);
    free(g->items);
    free(g->keys);
    free(g->vals);
    free(g);
}

tg_status tg_graph_build(tg_graph **out, tg_tensor *const *outputs, int n_outputs)
{
    if (!out)
        return tg_null_arg("tg_graph_build", "out");
    *out = NULL;
    if (!outputs)
        return tg_null_arg("tg_graph_build", "outputs");
    if (n_outputs <= 0)
        return tg_error(TG_ERR_ARG, "tg_graph_build: need at least one output (n_outputs %d)",
                        n_outputs);
    for (int i = 0; i < n_outputs; i++)
        if (!outputs[i])
            return tg_error(TG_ERR_ARG, "tg_graph_build: output %d is NULL", i);
    tg_graph *g = calloc(1, sizeof *g);
    if (!g)
        return tg_error(TG_ERR_NOMEM, "tg_graph_build: out of memory");
    tg_status rc = TG_OK;
    for (int i = 0; i < n_outputs && rc == TG_OK; i++)
        rc = walk(g, outputs[i]);
    if (rc == TG_OK)
        rc = link(g);
    if (rc != TG_OK) {
        tg_graph_free(g);
        return rc;
    }
    for (int i = 0; i < n_outputs; i++)
        g->items[lookup(g, outputs[i])].is_output = true;
    *out = g;
    return TG_OK;
}

size_t tg_graph_size(const tg_graph *g)
{
    return g ? g->n : 0;
}

const tg_graph_item *tg_graph_item_at(const tg_graph *g, size_t i)
{
    if (!g || i >= g->n)
        return tg_error(TG_ERR_RANGE, "tg_graph_item_at: index %zu out of range (size %zu)",
                        i, g ? g->n : (size_t)0), NULL;
    return &g->items[i];
}
