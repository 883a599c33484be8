/* ops/common.c -- what every op file shares: the per-thread backend choice, the
 * argument checks (their messages name the op and the shapes), numpy broadcasting
 * and its inverse (tg_sum_to_shape), and the frame every op's forward runs in
 * (tg_op_begin ... tg_op_end), which records the node.
 * Nothing here is recorded for autodiff. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

static _Thread_local tg_backend current_backend = TG_BACKEND_AUTO;

tg_backend tg_set_backend(tg_backend backend)
{
    tg_backend prev = current_backend;
    if (backend != TG_BACKEND_AUTO && backend != TG_BACKEND_REFERENCE) {
        tg_error(TG_ERR_ARG, "tg_set_backend: unknown backend %d (kept the current one)",
                 (int)backend);
        return prev;
    }
    current_backend = backend;
    return prev;
}

tg_backend tg_get_backend(void)
{
    return current_backend;
}

bool tg_use_dnnl(const tg_tensor *x)
{
    return x && x->dtype == TG_F32 && current_backend == TG_BACKEND_AUTO;
}

/* ---------------------------------------------------------------- checks */

tg_status tg_check_float(const char *arg, const tg_tensor *x)
{
    if (!x)
        return tg_null_arg_here(arg);
    if (x->dtype != TG_F32 && x->dtype != TG_F64)
        return tg_error_here(TG_ERR_DTYPE, "%s must be f32 or f64, got %s", arg,
                             tg_dtype_name(x->dtype));
    return TG_OK;
}

tg_status tg_check_same_dtype(const tg_tensor *a, const tg_tensor *b)
{
    if (a->dtype != b->dtype)
        return tg_error_here(TG_ERR_DTYPE,
                             "dtypes %s and %s differ (no implicit promotion; convert "
                             "with tg_tensor_to_dtype)", tg_dtype_name(a->dtype),
                             tg_dtype_name(b->dtype));
    return TG_OK;
}

tg_status tg_check_ndim(const char *arg, const tg_tensor *x, int ndim)
{
    if (x->ndim != ndim) {
        char buf[128];
        return tg_error_here(TG_ERR_SHAPE, "%s must be %d-D, got shape %s", arg, ndim,
                             tg_shape_str(buf, sizeof buf, x->ndim, x->shape));
    }
    return TG_OK;
}

tg_status tg_norm_axis(int axis, int ndim, int *out)
{
    if (axis < -ndim || axis >= ndim)
        return tg_error_here(TG_ERR_RANGE, "axis %d out of range for a %d-D tensor",
                             axis, ndim);
    *out = axis < 0 ? axis + ndim : axis;
    return TG_OK;
}

/* ---------------------------------------------------------------- broadcasting */

tg_status tg_broadcast_shape(const tg_tensor *a, const tg_tensor *b,
                             int *ndim, int64_t *shape)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        /* align at the right: dim i of the result is dim i - (n - t->ndim) of t */
        int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
        int64_t ea = ia >= 0 ? a->shape[ia] : 1;
        int64_t eb = ib >= 0 ? b->shape[ib] : 1;
        if (ea != eb && ea != 1 && eb != 1) {
            char sa[128], sb[128];
            return tg_error_here(TG_ERR_SHAPE, "shapes %s and %s cannot be broadcast",
                                 tg_shape_str(sa, sizeof sa, a->ndim, a->shape),
                                 tg_shape_str(sb, sizeof sb, b->ndim, b->shape));
        }
        shape[i] = ea == 1 ? eb : ea;
    }
    *ndim = n;
    return TG_OK;
}

void tg_broadcast_strides(const tg_tensor *t, int ndim, const int64_t *shape,
                          int64_t *strides)
{
    for (int i = 0; i < ndim; i++) {
        int it = i - (ndim - t->ndim);
        if (it < 0 || (t->shape[it] == 1 && shape[i] != 1))
            strides[i] = 0;
        else
            strides[i] = t->strides[it];
    }
}

static tg_tensor *sum_to_shape(tg_tensor *g, int ndim, const int64_t *shape);

tg_tensor *tg_sum_to_shape(tg_tensor *g, int ndim, const int64_t *shape)
{
    /* called from backwards, but its errors name itself, as they always have */
    const char *prev = tg_error_enter("tg_sum_to_shape");
    tg_tensor *r = sum_to_shape(g, ndim, shape);
    tg_error_leave(prev);
    return r;
}

static tg_tensor *sum_to_shape(tg_tensor *g, int ndim, const int64_t *shape)
{
    if (!g)
        return tg_null_arg_here("g"), NULL;
    if (tg_check_float("g", g) != TG_OK)
        return NULL;
    if (ndim == g->ndim && memcmp(shape, g->shape, (size_t)ndim * sizeof *shape) == 0)
        return tg_scoped(tg_retain(g));
    if (tg_tensor_settle(g) != TG_OK) /* the loop below reads g's storage plain */
        return NULL;

    /* shape must broadcast to g's shape, i.e. be g's shape with some extents 1 */
    bool ok = ndim <= g->ndim;
    for (int i = 0; ok && i < ndim; i++) {
        int64_t e = shape[i], eg = g->shape[i + (g->ndim - ndim)];
        ok = e == eg || e == 1;
    }
    if (!ok) {
        char sa[128], sb[128];
        return tg_error_here(TG_ERR_SHAPE, "cannot sum %s down to %s",
                             tg_shape_str(sa, sizeof sa, g->ndim, g->shape),
                             tg_shape_str(sb, sizeof sb, ndim, shape)), NULL;
    }
    tg_tensor *out = tg_tensor_new_owned(g->dtype, ndim, shape);
    if (!out)
        return NULL;
    int64_t n_out = tg_shape_numel(ndim, shape);
    /* accumulate in double so f32 sums over a large batch keep their precision */
    double *acc = calloc((size_t)(n_out > 0 ? n_out : 1), sizeof *acc);
    if (!acc) {
        tg_release(out);
        return tg_error_here(TG_ERR_NOMEM, "out of memory"), NULL;
    }
    if (tg_shape_numel(g->ndim, g->shape) > 0) {
        int64_t st[2][TG_MAX_DIMS], off[2] = {g->offset, 0}, idx[TG_MAX_DIMS] = {0};
        memcpy(st[0], g->strides, sizeof st[0]);
        tg_broadcast_strides(out, g->ndim, g->shape, st[1]);
        if (g->dtype == TG_F32) {
            const float *src = tg_storage_data(g->storage);
            do acc[off[1]] += src[off[0]];
            while (tg_index_next(g->ndim, g->shape, idx, 2, off, st));
        } else {
            const double *src = tg_storage_data(g->storage);
            do acc[off[1]] += src[off[0]];
            while (tg_index_next(g->ndim, g->shape, idx, 2, off, st));
        }
    }
    if (g->dtype == TG_F32) {
        float *dst = tg_tensor_ptr(out);
        for (int64_t i = 0; i < n_out; i++)
            dst[i] = (float)acc[i];
    } else {
        memcpy(tg_tensor_ptr(out), acc, (size_t)n_out * sizeof *acc);
    }
    free(acc);
    return tg_scoped(out);
}

/* ---------------------------------------------------------------- op helpers */

/* keep: leave a pending layout for the oneDNN path to read (or settle it). */
static tg_tensor *contiguous(tg_tensor *x, bool keep)
{
    if (!x)
        return tg_null_arg("tg_contiguous_owned", "x"), NULL;
    if (tg_tensor_is_contiguous(x)) {
        if (!keep && tg_tensor_settle(x) != TG_OK)
            return NULL;
        /* extent-1 dims may carry any stride; oneDNN compares layouts by strides,
         * so hand out the canonical ones */
        int64_t st[TG_MAX_DIMS];
        tg_contiguous_strides(x->ndim, x->shape, st);
        if (memcmp(st, x->strides, (size_t)x->ndim * sizeof st[0]) == 0)
            return tg_retain(x);
        return tg_tensor_view_owned(x, x->ndim, x->shape, st, x->offset);
    }
    tg_tensor *c = tg_tensor_new_named("tg_contiguous_owned", x->dtype, x->ndim, x->shape);
    if (!c)
        return NULL;
    if (tg_tensor_copy_into(c, x) != TG_OK) {
        tg_release(c);
        return NULL;
    }
    return c;
}

tg_tensor *tg_contiguous_owned(tg_tensor *x)
{
    return contiguous(x, false);
}

tg_tensor *tg_contiguous_layout_owned(tg_tensor *x, bool keep)
{
    return contiguous(x, keep);
}

tg_tensor *tg_flat_view_owned(tg_tensor *x)
{
    int64_t n = tg_shape_numel(x->ndim, x->shape), one = 1;
    return tg_tensor_view_owned(x, 1, &n, &one, x->offset);
}

/* ---------------------------------------------------------------- the op frame */

static void free_saved(const tg_op_vtable *op, void *saved)
{
    if (!saved)
        return;
    if (op->free_saved)
        op->free_saved(saved);
    else
        free(saved);
}

/* The i-th space-separated word of names into buf. */
static const char *arg_name(const char *names, int i, char *buf, size_t n)
{
    const char *p = names ? names : "";
    for (; i > 0 && *p; i--) {
        p += strcspn(p, " ");
        p += strspn(p, " ");
    }
    size_t len = strcspn(p, " ");
    if (len == 0)
        return "input";
    if (len >= n)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

bool tg_op_begin(tg_op_call *c, const tg_op_vtable *op, const char *who,
                 tg_tensor *const *in, int n_in, const char *names, unsigned flags)
{
    *c = (tg_op_call){.op = op, .who = who, .in = in, .n_in = n_in};
    c->prev_ctx = tg_error_enter(who);
    char buf[32];
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            tg_null_arg_here(arg_name(names, i, buf, sizeof buf));
            goto fail;
        }
        if (tg_tensor_dead(in[i])) { /* a handle used after its scope popped */
            tg_dead_arg(who, arg_name(names, i, buf, sizeof buf), in[i]);
            goto fail;
        }
    }
    for (int i = 0; (flags & TG_OP_FLOAT) && i < n_in; i++)
        if (tg_check_float(arg_name(names, i, buf, sizeof buf), in[i]) != TG_OK)
            goto fail;
    for (int i = 1; (flags & TG_OP_SAME_DTYPE) && i < n_in; i++)
        if (tg_check_same_dtype(in[0], in[i]) != TG_OK)
            goto fail;
    c->record = tg_autograd_should_record(in, n_in);
    return true;
fail:
    tg_error_leave(c->prev_ctx);
    return false;
}

tg_tensor *tg_op_output(tg_op_call *c, tg_dtype dtype, int ndim, const int64_t *shape)
{
    c->out = tg_tensor_new_owned(dtype, ndim, shape);
    return c->out;
}

void *tg_op_save(tg_op_call *c, size_t size)
{
    if (!c->record)
        return NULL;
    c->saved = calloc(1, size);
    if (!c->saved)
        tg_error(TG_ERR_NOMEM, "%s: out of memory", c->who);
    return c->saved;
}

tg_tensor *tg_op_output_view(tg_op_call *c)
{
    tg_tensor *y = c->out;
    tg_tensor *v = y ? tg_tensor_view_owned(y, y->ndim, y->shape, y->strides, y->offset)
                     : NULL;
    if (!v)
        tg_error(TG_ERR_NOMEM, "%s: out of memory", c->who);
    else
        c->saves_out = true;
    return v;
}

/* The first op of the process called with no scope open says so, once: its
 * result is the caller's to release, and a loop that forgets leaks every
 * step. TG_SCOPE_WARNING=0 silences it for programs that release by hand. */
static void warn_no_scope(const char *who)
{
    static _Atomic bool warned;
    if (atomic_load_explicit(&warned, memory_order_relaxed) || atomic_exchange(&warned, true))
        return;
    const char *e = getenv("TG_SCOPE_WARNING");
    if (e && strcmp(e, "0") == 0)
        return;
    fprintf(stderr, "libtensor: warning: %s was called with no scope open, so its result "
            "is a new reference the caller must tg_release (a loop that does not leaks "
            "every step); open a scope around each step (tg_scope_push ... tg_scope_pop), "
            "or set TG_SCOPE_WARNING=0 when releasing by hand. Printed once.\n", who);
}

tg_tensor *tg_op_end(tg_op_call *c)
{
    tg_tensor *out = c->out;
    void *saved = c->saved;
    c->out = NULL;
    c->saved = NULL;
    if (__builtin_expect(tg_scope_depth() == 0, 0) && out)
        warn_no_scope(c->who);
    if (!out || !c->record) {
        free_saved(c->op, saved);
        tg_error_leave(c->prev_ctx);
        return out ? tg_scoped(out) : NULL;
    }
    tg_node *node = tg_autograd_record(out, c->op, c->in, c->n_in, saved);
    if (node && c->saves_out)
        tg_node_save_output(node, out); /* its version now, after the forward wrote it */
    tg_error_leave(c->prev_ctx);
    if (!node) {
        tg_release(out);
        return NULL;
    }
    return tg_scoped(out);
}

tg_tensor *tg_op_fail(tg_op_call *c)
{
    tg_release(c->out);
    free_saved(c->op, c->saved);
    c->out = NULL;
    c->saved = NULL;
    tg_error_leave(c->prev_ctx);
    return NULL;
}
