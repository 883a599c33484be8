/* autograd/engine.c -- the tape and the reverse-mode engine: grad mode, recording
 * nodes, requires_grad bookkeeping and tg_backward().
 *
 * Knows only libtensor/: gradients are summed by a private loop here, never by
 * calling ops, so autograd stays below ops/ in the include order. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/node_impl.h"
#include "libtensor/layout_impl.h"

/* Below this many elements a loop is not worth waking the OpenMP team for. */
#define PARALLEL_MIN 32768

/* ---------------------------------------------------------------- grad mode */

/* Stored inverted so that the zero-initialised thread-local means "enabled". */
static _Thread_local bool grad_disabled;

bool tg_set_grad_enabled(bool enabled)
{
    bool prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}

bool tg_grad_enabled(void)
{
    return !grad_disabled;
}

/* ---------------------------------------------------------------- tape clock */

static _Atomic uint64_t tape_clock;

uint64_t tg_autograd_sequence(void)
{
    return atomic_load(&tape_clock);
}

/* ---------------------------------------------------------------- leaves */

tg_status tg_set_requires_grad(tg_tensor *t, bool requires_grad)
{
    if (!t)
        return tg_null_arg("tg_set_requires_grad", "t");
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_set_requires_grad", "t", t);
    if (t->grad_fn)
        return tg_error(TG_ERR_STATE,
                        "tg_set_requires_grad: the tensor was computed by op '%s' (not a "
                        "leaf); only leaves can change requires_grad (use tg_detach)",
                        ((tg_node *)t->grad_fn)->op->name);
    if (requires_grad && !tg_dtype_is_float(t->dtype))
        return tg_error(TG_ERR_DTYPE,
                        "tg_set_requires_grad: only floating tensors can require grad, "
                        "this one is %s", tg_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return TG_OK;
}

bool tg_requires_grad(const tg_tensor *t)
{
    return t && (t->requires_grad || t->grad_fn);
}

bool tg_is_leaf(const tg_tensor *t)
{
    return t && !t->grad_fn;
}

/* ---- the "zero but not yet written" mark on a leaf's gradient ----
 * tg_zero_grad does not write the zeros: it sets leaf->grad_zero_pending, and
 * the next backward's first contribution is copied in (or written straight in,
 * tg_node_claim_leaf_grad) instead of memset + add. The mark is autograd's
 * alone: libtensor never reads it, so nothing but autograd may see the grad
 * while it is set. Hence it is set only when the leaf holds the one reference
 * to the grad and to its storage (else the zeros are written at once), and
 * tg_grad, the only way out, writes the zeros before handing the grad over.
 * While it is set the grad's storage holds no pending layout (dropped here). */

/* Writes the zeros the mark stands for, and clears it. */
static void write_pending_zeros(tg_tensor *leaf)
{
    tg_storage *s = leaf->grad->storage;
    leaf->grad_zero_pending = false;
    memset(s->data, 0, s->nbytes);
}

tg_tensor *tg_grad(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_grad", "t"), NULL;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_grad", "t", t), NULL;
    if (t->grad_zero_pending) /* autograd's bookkeeping, not the tensor's value */
        write_pending_zeros((tg_tensor *)(uintptr_t)t);
    return t->grad;
}

tg_status tg_zero_grad(tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_zero_grad", "t");
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_zero_grad", "t", t);
    tg_tensor *g = t->grad;
    if (!g)
        return TG_OK;
    if (!tg_tensor_covers_storage(g) || !g->storage->owns_data || g->refcount > 1 ||
        g->storage->refcount > 1) /* someone else can read it: write the zeros now */
        return tg_tensor_fill(g, 0.0);
    tg_layout_discard(g->storage); /* the zeros stand for every byte */
    t->grad_zero_pending = true;
    tg_tensor_bump_version(g);
    return TG_OK;
}

tg_tensor *tg_detach(tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_detach", "t"), NULL;
    tg_tensor *v = tg_tensor_view_owned(t, t->ndim, t->shape, t->strides, t->offset);
    if (!v)
        return NULL;
    v->requires_grad = false;
    if (v->grad_fn) { /* a view header must not inherit history */
        tg_refobj_release(v->grad_fn);
        v->grad_fn = NULL;
    }
    return tg_scoped(v);
}

/* ---------------------------------------------------------------- nodes */

/* Releasing a node releases its inputs, whose nodes release theirs...: on a long
 * chain (an unrolled RNN) plain recursion would overflow the stack. Releases
 * requested while a node is being destroyed are queued instead and drained by
 * the outermost destroy, so the depth stays constant. */
enum { DEFER_INLINE = 64 };
static _Thread_local struct {
    tg_tensor *inline_items[DEFER_INLINE];
    tg_tensor **heap;
    size_t n, cap;
    bool draining;
} deferred;

static tg_tensor **deferred_slot(size_t i)
{
    return i < DEFER_INLINE ? &deferred.inline_items[i] : &deferred.heap[i - DEFER_INLINE];
}

static void defer_release(tg_tensor *t)
{
    if (!t)
        return;
    if (deferred.n >= DEFER_INLINE + deferred.cap) {
        size_t cap = deferred.cap ? deferred.cap * 2 : 256;
        tg_tensor **h = realloc(deferred.heap, cap * sizeof *h);
        if (!h) { /* out of memory: fall back to recursion rather than leak */
            tg_release(t);
            return;
        }
        deferred.heap = h;
        deferred.cap = cap;
    }
    *deferred_slot(deferred.n++) = t;
}

static void drain_deferred(void)
{
    if (deferred.draining)
        return;
    deferred.draining = true;
    while (deferred.n > 0) {
        tg_tensor *t = *deferred_slot(--deferred.n);
        tg_release(t); /* may queue more */
    }
    free(deferred.heap);
    deferred.heap = NULL;
    deferred.cap = 0;
    deferred.draining = false;
}

static void free_saved(tg_node *n)
{
    if (!n->saved)
        return;
    if (n->op && n->op->free_saved)
        n->op->free_saved(n->saved);
    else
        free(n->saved);
    n->saved = NULL;
}

static void node_destroy(tg_refobj *o)
{
    tg_node *n = (tg_node *)o;
    free_saved(n);
    defer_release(n->grad_accum);
    for (int i = 0; i < n->n_inputs; i++)
        defer_release(n->inputs[i]);
    free(n->inputs);
    free(n);
    tg_live_objects_add(-1);
    drain_deferred();
}

static bool input_requires_grad(const tg_tensor *t)
{
    return t && (t->requires_grad || t->grad_fn);
}

bool tg_autograd_should_record(tg_tensor *const *inputs, int n_inputs)
{
    if (grad_disabled || !inputs)
        return false;
    for (int i = 0; i < n_inputs; i++)
        if (input_requires_grad(inputs[i]))
            return true;
    return false;
}

static void drop_saved(const tg_op_vtable *op, void *saved)
{
    if (!saved)
        return;
    if (op && op->free_saved)
        op->free_saved(saved);
    else
        free(saved);
}

tg_node *tg_autograd_record(tg_tensor *out, const tg_op_vtable *op,
                            tg_tensor *const *inputs, int n_inputs, void *saved)
{
    if (!out || !op || !op->backward || n_inputs < 0 || (n_inputs > 0 && !inputs)) {
        drop_saved(op, saved);
        return tg_error(TG_ERR_ARG, "tg_autograd_record(%s): invalid arguments",
                        op && op->name ? op->name : "?"), NULL;
    }
    if (out->grad_fn) {
        drop_saved(op, saved);
        return tg_error(TG_ERR_STATE, "tg_autograd_record(%s): the output already has a "
                        "producer (op '%s')", op->name,
                        ((tg_node *)out->grad_fn)->op->name), NULL;
    }
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] == out) {
            drop_saved(op, saved);
            return tg_error(TG_ERR_STATE, "tg_autograd_record(%s): the output is also input "
                            "%d; an op must return a new tensor to be recorded", op->name,
                            i), NULL;
        }
    tg_node *n = calloc(1, sizeof *n);
    /* the inputs and their versions in one block: no allocation more per node */
    tg_tensor **in = n_inputs ? calloc((size_t)n_inputs, sizeof *in + sizeof(uint64_t))
                              : NULL;
    if (!n || (n_inputs && !in)) {
        free(n);
        free(in);
        drop_saved(op, saved);
        return tg_error(TG_ERR_NOMEM, "tg_autograd_record(%s): out of memory", op->name),
               NULL;
    }
    n->base.refcount = 1;
    n->base.destroy = node_destroy;
    n->op = op;
    n->seq = atomic_fetch_add(&tape_clock, 1) + 1;
    n->n_inputs = n_inputs;
    n->inputs = in;
    n->in_versions = n_inputs ? (uint64_t *)(void *)(in + n_inputs) : NULL;
    for (int i = 0; i < n_inputs; i++) {
        in[i] = tg_retain(inputs[i]);
        n->in_versions[i] = in[i] ? in[i]->storage->version : 0;
    }
    n->saved = saved;
    n->out_dtype = out->dtype;
    n->out_ndim = out->ndim;
    memcpy(n->out_shape, out->shape, sizeof n->out_shape);
    tg_live_objects_add(1);

    out->grad_fn = &n->base; /* the output owns the node's one reference */
    out->requires_grad = true;
    return n;
}

void tg_node_save_output(tg_node *node, const tg_tensor *t)
{
    if (node && t) {
        node->saved_out = t->storage;
        node->saved_out_version = t->storage->version;
    }
}

bool tg_node_needs_grad(const tg_node *node, int i)
{
    return node && i >= 0 && i < node->n_inputs && input_requires_grad(node->inputs[i]);
}

static bool shape_eq(int na, const int64_t *a, int nb, const int64_t *b);

tg_tensor *tg_node_claim_leaf_grad(tg_node *node, int i)
{
    if (!tg_node_needs_grad(node, i))
        return NULL;
    tg_tensor *x = node->inputs[i], *g = x->grad;
    if (x->grad_fn || !g || !x->grad_zero_pending || g->dtype != x->dtype ||
        !shape_eq(g->ndim, g->shape, x->ndim, x->shape) || !tg_tensor_covers_storage(g))
        return NULL;
    x->grad_zero_pending = false;
    tg_tensor_bump_version(g);
    return g;
}

void tg_node_unclaim_leaf_grad(tg_tensor *g)
{
    if (g) { /* a failure path: write the zeros rather than mark them again */
        tg_layout_discard(g->storage);
        memset(g->storage->data, 0, g->storage->nbytes);
        tg_tensor_bump_version(g);
    }
}

tg_node *tg_tensor_grad_fn(const tg_tensor *t)
{
    return t ? (tg_node *)t->grad_fn : NULL;
}

/* ---------------------------------------------------------------- backward */

static int cmp_seq_desc(const void *a, const void *b)
{
    uint64_t x = (*(tg_node *const *)a)->seq, y = (*(tg_node *const *)b)->seq;
    return x < y ? 1 : x > y ? -1 : 0;
}

static bool shape_eq(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static const char *shape_dt(char *buf, size_t n, const tg_tensor *t)
{
    char s[160];
    tg_shape_str(s, sizeof s, t->ndim, t->shape);
    snprintf(buf, n, "%s %s", s, tg_dtype_name(t->dtype));
    return buf;
}

/* dst += src elementwise. dst is contiguous and owned by the engine; src has the
 * same shape and floating dtype (any strides). Parameter gradients are large
 * (693k floats in the tutorial CNN), so big sums use every thread. */
static tg_status add_into(tg_tensor *dst, tg_tensor *src)
{
    tg_tensor *c = tg_tensor_contiguous(src); /* scoped; src itself when contiguous */
    if (!c)
        return tg_last_status();
    int64_t n = tg_tensor_numel(dst);
    tg_status st = tg_tensor_settle(dst);
    if (st != TG_OK || (st = tg_tensor_settle(c)) != TG_OK) /* error set */
        return st;
    if (dst->dtype == TG_F32) {
        float *d = tg_tensor_ptr(dst);
        const float *s = tg_tensor_ptr(c);
        #pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else if (dst->dtype == TG_F64) {
        double *d = tg_tensor_ptr(dst);
        const double *s = tg_tensor_ptr(c);
        #pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        for (int64_t i = 0; i < n; i++) /* settled above: cannot fail */
            tg_set_flat(dst, i, tg_get_flat(dst, i) + tg_get_flat(c, i));
    }
    tg_tensor_bump_version(dst);
    return TG_OK;
}

/* A new contiguous engine-owned copy of src (new reference). */
static tg_tensor *owned_copy(tg_tensor *src)
{
    tg_tensor *d = tg_tensor_new_owned(src->dtype, src->ndim, src->shape);
    if (!d)
        return NULL;
    if (tg_tensor_copy_into(d, src) != TG_OK) {
        tg_release(d);
        return NULL;
    }
    return d;
}

/* Adds g into the leaf's .grad, creating it on the first contribution; a grad
 * marked zero by tg_zero_grad takes a copy of g instead. */
static tg_status accumulate_leaf(tg_tensor *leaf, tg_tensor *g)
{
    if (g == leaf->grad) /* written in place (tg_node_claim_leaf_grad) */
        return TG_OK;
    if (!leaf->grad) {
        leaf->grad = owned_copy(g);
        return leaf->grad ? TG_OK : tg_last_status();
    }
    if (leaf->grad_zero_pending) {
        leaf->grad_zero_pending = false;
        tg_status st = tg_tensor_copy_into(leaf->grad, g);
        if (st != TG_OK) /* keep the promised zeros rather than stale values */
            memset(leaf->grad->storage->data, 0, leaf->grad->storage->nbytes);
        return st;
    }
    return add_into(leaf->grad, g);
}

typedef struct backward_state {
    tg_node **nodes;
    size_t n, cap;
    bool *owned; /* per node: grad_accum is an engine-owned buffer we may add into */
} backward_state;

static tg_status push_node(backward_state *st, tg_node *n)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        tg_node **p = realloc(st->nodes, cap * sizeof *p);
        if (!p)
            return tg_error(TG_ERR_NOMEM, "tg_backward: out of memory");
        st->nodes = p;
        st->cap = cap;
    }
    st->nodes[st->n++] = n;
    n->pending = 1; /* visited mark; becomes the index + 1 after sorting */
    return TG_OK;
}

/* Iterative DFS over grad_fn links; the node array doubles as the work stack. */
static tg_status collect(backward_state *st, tg_node *root)
{
    tg_status rc = push_node(st, root);
    for (size_t next = 0; rc == TG_OK && next < st->n; next++) {
        tg_node *n = st->nodes[next];
        for (int i = 0; i < n->n_inputs && rc == TG_OK; i++) {
            tg_node *p = n->inputs[i] ? (tg_node *)n->inputs[i]->grad_fn : NULL;
            if (p && !p->pending)
                rc = push_node(st, p);
        }
    }
    return rc;
}

static void cleanup(backward_state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        tg_node *n = st->nodes[i];
        n->pending = 0;
        tg_release(n->grad_accum);
        n->grad_accum = NULL;
    }
    free(st->nodes);
    free(st->owned);
}

/* Adds g (the gradient of tensor t, a non-leaf) into its producer's grad_accum. */
static tg_status accumulate_node(backward_state *st, const tg_node *from, int input,
                                 tg_tensor *t, tg_tensor *g)
{
    tg_node *p = (tg_node *)t->grad_fn;
    if (!shape_eq(t->ndim, t->shape, p->out_ndim, p->out_shape) || t->dtype != p->out_dtype) {
        char a[200], b[160];
        tg_shape_str(b, sizeof b, p->out_ndim, p->out_shape);
        return tg_error(TG_ERR_STATE, "tg_backward: input %d of op '%s' (%s) does not have "
                        "the shape of its producer op '%s' output %s", input,
                        from->op->name, shape_dt(a, sizeof a, t), p->op->name, b);
    }
    size_t k = (size_t)p->pending - 1;
    if (!p->grad_accum) {
        /* g is scoped in the node's scope (or otherwise alive through it); our own
         * reference keeps it beyond the scope. */
        p->grad_accum = tg_retain(g);
        st->owned[k] = false;
        return TG_OK;
    }
    if (!st->owned[k] || !tg_tensor_is_contiguous(p->grad_accum)) {
        /* The first contribution may be shared (the seed, or an op passing
         * grad_out through): sum into a buffer of our own. */
        tg_tensor *acc = owned_copy(p->grad_accum);
        if (!acc)
            return tg_last_status();
        tg_release(p->grad_accum);
        p->grad_accum = acc;
        st->owned[k] = true;
    }
    return add_into(p->grad_accum, g);
}

static tg_status run_node(backward_state *st, tg_node *n, bool retain_graph)
{
    tg_status rc = TG_OK;
    tg_tensor **grad_in = NULL;
    tg_scope *scope = tg_scope_push();
    if (!scope)
        return tg_error(TG_ERR_NOMEM, "tg_backward: out of memory");
    if (n->n_inputs > 0) {
        grad_in = calloc((size_t)n->n_inputs, sizeof *grad_in);
        if (!grad_in) {
            rc = tg_error(TG_ERR_NOMEM, "tg_backward: out of memory");
            goto out;
        }
    }
    /* The node's backward runs in the context "tg_<op> backward", which names
     * the op's public function as its forward's messages do; built on the stack,
     * as it must outlive only this call. */
    char ctx[80] = "tg_";
    size_t len = strlen(n->op->name);
    if (len > sizeof ctx - sizeof "tg_ backward")
        len = sizeof ctx - sizeof "tg_ backward";
    memcpy(ctx + 3, n->op->name, len);
    memcpy(ctx + 3 + len, " backward", sizeof " backward");
    const char *prev = tg_error_enter(ctx);
    rc = n->op->backward(n, n->grad_accum, grad_in);
    tg_error_leave(prev);
    if (rc != TG_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tg_last_error());
        rc = tg_error(rc, "tg_backward: backward of op '%s' failed: %s", n->op->name, msg);
        goto out;
    }
    for (int i = 0; i < n->n_inputs && rc == TG_OK; i++) {
        tg_tensor *x = n->inputs[i], *g = grad_in[i];
        if (!tg_node_needs_grad(n, i))
            continue;
        if (!g) {
            rc = tg_error(TG_ERR_STATE, "tg_backward: op '%s' produced no gradient for "
                          "input %d, which requires grad", n->op->name, i);
            break;
        }
        if (!shape_eq(g->ndim, g->shape, x->ndim, x->shape) || g->dtype != x->dtype) {
            char a[200], b[200];
            rc = tg_error(g->dtype != x->dtype ? TG_ERR_DTYPE : TG_ERR_SHAPE,
                          "tg_backward: op '%s' returned a gradient of %s for input %d of %s",
                          n->op->name, shape_dt(a, sizeof a, g), i, shape_dt(b, sizeof b, x));
            break;
        }
        if (x->grad_fn)
            rc = accumulate_node(st, n, i, x, g);
        else
            rc = accumulate_leaf(x, g);
    }
out:
    free(grad_in);
    tg_scope_pop(scope);
    tg_release(n->grad_accum);
    n->grad_accum = NULL;
    if (rc == TG_OK && !retain_graph) {
        /* describe() reads the saved state; keep its text for graph exports
         * made after backward. */
        if (n->op->describe) {
            n->op->describe(n, n->detail, sizeof n->detail);
            n->detail[sizeof n->detail - 1] = '\0';
        }
        free_saved(n);
        n->released = true;
    }
    return rc;
}

/* TG_OK when every tensor n's backward reads (the inputs its op does not mark
 * shape-only, and a saved view of its output) still has the version it had
 * when n was recorded; else the error, naming the op, the tensor and the
 * versions. A view shares its base's storage and so its version: writing into
 * either counts. */
static tg_status check_versions(const tg_node *n)
{
    char a[200];
    for (int i = 0; i < n->n_inputs; i++) {
        const tg_tensor *x = n->inputs[i];
        if (!x || (i < 32 && (n->op->shape_only_inputs >> i & 1u)) ||
            x->storage->version == n->in_versions[i])
            continue;
        return tg_error(TG_ERR_STATE, "tg_backward: input %d (%s%s%s%s) of op '%s' (tg_%s) "
                        "was written after the op saved it for backward: its version is "
                        "%llu, the op saved version %llu. Backward needs the values the "
                        "forward used; write into a copy (tg_tensor_copy), or write after "
                        "backward (as an optimizer step does)", i,
                        x->name ? "'" : "", x->name ? x->name : "", x->name ? "' " : "",
                        shape_dt(a, sizeof a, x), n->op->name, n->op->name,
                        (unsigned long long)x->storage->version,
                        (unsigned long long)n->in_versions[i]);
    }
    if (n->saved_out && n->saved_out->version != n->saved_out_version) {
        char b[160];
        tg_shape_str(b, sizeof b, n->out_ndim, n->out_shape);
        return tg_error(TG_ERR_STATE, "tg_backward: the output (%s %s) of op '%s' (tg_%s) "
                        "was written after the op saved it for backward: its version is "
                        "%llu, the op saved version %llu. Backward needs the values the "
                        "forward computed; write into a copy (tg_tensor_copy) instead",
                        b, tg_dtype_name(n->out_dtype), n->op->name, n->op->name,
                        (unsigned long long)n->saved_out->version,
                        (unsigned long long)n->saved_out_version);
    }
    return TG_OK;
}

/* Checks output and grad_output; makes the seed gradient (new reference). */
static tg_tensor *make_seed(tg_tensor *output, const tg_tensor *grad_output)
{
    char a[200], b[200];
    if (!grad_output) {
        if (tg_tensor_numel(output) != 1)
            return tg_error(TG_ERR_SHAPE, "tg_backward: the output is %s with %lld elements; "
                            "backward without grad_output needs a single element (a loss), "
                            "pass grad_output to tg_backward_ex",
                            shape_dt(a, sizeof a, output),
                            (long long)tg_tensor_numel(output)), NULL;
        tg_tensor *one = tg_tensor_new_owned(output->dtype, output->ndim,
                                             output->shape);
        if (one && tg_tensor_fill(one, 1.0) != TG_OK) {
            tg_release(one);
            return NULL;
        }
        return one;
    }
    if (!shape_eq(grad_output->ndim, grad_output->shape, output->ndim, output->shape))
        return tg_error(TG_ERR_SHAPE, "tg_backward: grad_output is %s but the output is %s",
                        shape_dt(a, sizeof a, grad_output), shape_dt(b, sizeof b, output)),
               NULL;
    if (grad_output->dtype != output->dtype)
        return tg_error(TG_ERR_DTYPE, "tg_backward: grad_output is %s but the output is %s",
                        shape_dt(a, sizeof a, grad_output), shape_dt(b, sizeof b, output)),
               NULL;
    /* The seed is only read (accumulate_node copies before adding into it). */
    return tg_retain((tg_tensor *)grad_output);
}

tg_status tg_backward(tg_tensor *output)
{
    return tg_backward_ex(output, NULL);
}

static tg_status backward_impl(tg_tensor *output, const tg_backward_opts *opts);

tg_status tg_backward_ex(tg_tensor *output, const tg_backward_opts *opts)
{
    const char *prev = tg_error_enter("tg_backward");
    tg_status rc = backward_impl(output, opts);
    tg_error_leave(prev);
    return rc;
}

static tg_status backward_impl(tg_tensor *output, const tg_backward_opts *opts)
{
    tg_backward_opts defaults = TG_BACKWARD_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    if (!output)
        return tg_null_arg("tg_backward", "output");
    if (tg_tensor_dead(output))
        return tg_dead_arg("tg_backward", "output", output);
    if (!tg_requires_grad(output))
        return tg_error(TG_ERR_STATE, "tg_backward: the output does not require grad (no "
                        "input of the ops that computed it requires grad, or it was "
                        "computed with grad mode off)");
    tg_tensor *seed = make_seed(output, opts->grad_output);
    if (!seed)
        return tg_last_status();

    tg_node *root = (tg_node *)output->grad_fn;
    if (!root) { /* the output is itself a leaf that requires grad */
        tg_status rc = accumulate_leaf(output, seed);
        tg_release(seed);
        return rc;
    }

    backward_state st = {0};
    tg_status rc = collect(&st, root);
    if (rc == TG_OK) {
        st.owned = calloc(st.n, sizeof *st.owned);
        if (!st.owned)
            rc = tg_error(TG_ERR_NOMEM, "tg_backward: out of memory");
    }
    if (rc != TG_OK) {
        tg_release(seed);
        cleanup(&st);
        return rc;
    }
    qsort(st.nodes, st.n, sizeof *st.nodes, cmp_seq_desc);
    for (size_t i = 0; i < st.n; i++) {
        st.nodes[i]->pending = (int)(i + 1);
        /* Refuse before touching any gradient, so a failed call changes nothing. */
        if (st.nodes[i]->released && rc == TG_OK)
            rc = tg_error(TG_ERR_STATE, "tg_backward: backward through a graph whose saved "
                          "state was already freed (op '%s'); pass retain_graph to the first "
                          "backward to run backward twice",
                          st.nodes[i]->op->name);
        if (rc == TG_OK)
            rc = check_versions(st.nodes[i]);
    }
    root->grad_accum = seed; /* steals seed */
    if (rc == TG_OK) {
        bool prev = tg_set_grad_enabled(false);
        for (size_t i = 0; i < st.n && rc == TG_OK; i++) {
            tg_node *n = st.nodes[i];
            if (!n->grad_accum) /* nothing flowed here */
                continue;
            rc = run_node(&st, n, opts->retain_graph);
        }
        tg_set_grad_enabled(prev);
    }
    cleanup(&st);
    return rc;
}
