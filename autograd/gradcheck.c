/* autograd/gradcheck.c -- compares the engine's analytic gradients with central
 * finite differences of L = sum(r * f(x)), r a fixed random weight.
 *
 * Inputs are perturbed in place (and restored bit for bit), so f must read its
 * inputs afresh each call; all arithmetic of the check itself is in double. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "autograd/node_impl.h"

typedef struct checked_input {
    int index;        /* position in inputs[] */
    tg_tensor *t;     /* borrowed */
    int64_t numel;
    double *orig;     /* original values, to restore exactly */
    double *grad;     /* analytic gradient */
    double *plus;     /* DIRECTIONAL: stored x + eps u and x - eps u */
    double *minus;
} checked_input;

typedef struct gc_ctx {
    tg_gradcheck_fn fn;
    void *ctx;
    tg_tensor *const *inputs;
    int n_inputs;
    const tg_tensor *r;      /* reduction weights (y's shape) */
    const char *label;
    checked_input *ci;
    int n_ci;
} gc_ctx;

/* Address of logical element i (row-major) of t, honouring its strides. */
static char *elem_ptr(const tg_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t ext = t->shape[d];
        off += (i % ext) * t->strides[d];
        i /= ext;
    }
    return (char *)tg_tensor_ptr(t) + off * (int64_t)tg_dtype_size(t->dtype);
}

/* Stores v (rounded to t's dtype) and returns the value actually stored. */
static double store(tg_tensor *t, int64_t i, double v)
{
    char *p = elem_ptr(t, i);
    if (t->dtype == TG_F32) {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
        return f;
    }
    memcpy(p, &v, sizeof v);
    return v;
}

static double load(const tg_tensor *t, int64_t i)
{
    char *p = elem_ptr(t, i);
    if (t->dtype == TG_F32) {
        float f;
        memcpy(&f, p, sizeof f);
        return f;
    }
    double d;
    memcpy(&d, p, sizeof d);
    return d;
}

static void set_error_from_fn(const char *label, const char *when)
{
    char msg[512];
    tg_status st = tg_last_status();
    snprintf(msg, sizeof msg, "%s", tg_last_error());
    tg_error(st != TG_OK ? st : TG_ERR_ARG, "tg_gradcheck(%s): fn failed %s: %s",
             label, when, msg);
}

/* L(x) at the current input values, grad mode off, in a scope of its own. */
static tg_status eval_loss(const gc_ctx *g, double *out)
{
    tg_scope *s = tg_scope_push();
    if (!s)
        return tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
    bool prev = tg_set_grad_enabled(false);
    tg_tensor *y = g->fn(g->inputs, g->n_inputs, g->ctx);
    tg_set_grad_enabled(prev);
    tg_status rc = TG_OK;
    if (!y) {
        set_error_from_fn(g->label, "on perturbed inputs");
        rc = tg_last_status();
    } else if (!tg_tensor_same_shape(y, g->r)) {
        char a[160], b[160];
        rc = tg_error(TG_ERR_SHAPE, "tg_gradcheck(%s): fn returned %s, earlier %s", g->label,
                      tg_shape_str(a, sizeof a, y->ndim, y->shape),
                      tg_shape_str(b, sizeof b, g->r->ndim, g->r->shape));
    } else {
        double acc = 0;
        int64_t n = tg_tensor_numel(y);
        for (int64_t i = 0; i < n; i++)
            acc += tg_get_flat(g->r, i) * tg_get_flat(y, i);
        *out = acc;
    }
    tg_scope_pop(s);
    return rc;
}

typedef struct worst {
    bool set;
    double score; /* err / tolerance; > 1 fails */
    double abs_err, rel_err;
    int input;
    int64_t index;
    double analytic, numeric;
} worst;

static void compare(tg_gradcheck_report *rep, worst *w, const tg_gradcheck_opts *o,
                    int input, int64_t index, double a, double n)
{
    double err = fabs(a - n);
    double mag = fmax(fabs(a), fabs(n));
    double tol = o->atol + o->rtol * mag;
    double rel = mag > 0 ? err / mag : (err > 0 ? INFINITY : 0);
    double score = tol > 0 ? err / tol : (err > 0 ? INFINITY : 0);
    if (isnan(err))
        score = rel = err = INFINITY;
    rep->checked++;
    if (!(err <= tol))
        rep->passed = false;
    if (err > rep->max_abs_err)
        rep->max_abs_err = err;
    if (rel > rep->max_rel_err)
        rep->max_rel_err = rel;
    if (!w->set || score > w->score) {
        w->set = true;
        w->score = score;
        w->abs_err = err;
        w->rel_err = rel;
        w->input = input;
        w->index = index;
        w->analytic = a;
        w->numeric = n;
    }
}

static tg_status check_elementwise(gc_ctx *g, const tg_gradcheck_opts *o,
                                   tg_gradcheck_report *rep, worst *w)
{
    for (int k = 0; k < g->n_ci; k++) {
        checked_input *c = &g->ci[k];
        for (int64_t i = 0; i < c->numel; i++) {
            double x0 = c->orig[i], lp, lm;
            double xp = store(c->t, i, x0 + o->eps);
            tg_tensor_bump_version(c->t);
            tg_status rc = eval_loss(g, &lp);
            double xm = store(c->t, i, x0 - o->eps);
            tg_tensor_bump_version(c->t);
            if (rc == TG_OK)
                rc = eval_loss(g, &lm);
            store(c->t, i, x0);
            tg_tensor_bump_version(c->t);
            if (rc != TG_OK)
                return rc;
            /* divide by the step actually stored (f32 rounds x0 +- eps) */
            compare(rep, w, o, c->index, i, c->grad[i], (lp - lm) / (xp - xm));
        }
    }
    return TG_OK;
}

static void store_all(gc_ctx *g, double sign, const double *const *u, double eps)
{
    for (int k = 0; k < g->n_ci; k++) {
        checked_input *c = &g->ci[k];
        double *dst = sign > 0 ? c->plus : c->minus;
        for (int64_t i = 0; i < c->numel; i++)
            dst[i] = store(c->t, i, c->orig[i] + sign * eps * u[k][i]);
        tg_tensor_bump_version(c->t);
    }
}

static void restore_all(gc_ctx *g)
{
    for (int k = 0; k < g->n_ci; k++) {
        checked_input *c = &g->ci[k];
        for (int64_t i = 0; i < c->numel; i++)
            store(c->t, i, c->orig[i]);
        tg_tensor_bump_version(c->t);
    }
}

static tg_status check_directional(gc_ctx *g, const tg_gradcheck_opts *o,
                                   tg_gradcheck_report *rep, worst *w, tg_rng *rng)
{
    double **u = calloc((size_t)g->n_ci, sizeof *u);
    tg_status rc = TG_OK;
    if (!u)
        return tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
    for (int k = 0; k < g->n_ci && rc == TG_OK; k++) {
        u[k] = malloc((size_t)(g->ci[k].numel ? g->ci[k].numel : 1) * sizeof **u);
        if (!u[k])
            rc = tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
    }
    for (int d = 0; d < o->n_directions && rc == TG_OK; d++) {
        double norm2 = 0;
        for (int k = 0; k < g->n_ci; k++)
            for (int64_t i = 0; i < g->ci[k].numel; i++) {
                u[k][i] = tg_rng_normal(rng);
                norm2 += u[k][i] * u[k][i];
            }
        double inv = norm2 > 0 ? 1.0 / sqrt(norm2) : 0;
        for (int k = 0; k < g->n_ci; k++)
            for (int64_t i = 0; i < g->ci[k].numel; i++)
                u[k][i] *= inv;
        double lp = 0, lm = 0;
        store_all(g, +1, (const double *const *)u, o->eps);
        rc = eval_loss(g, &lp);
        store_all(g, -1, (const double *const *)u, o->eps);
        if (rc == TG_OK)
            rc = eval_loss(g, &lm);
        restore_all(g);
        if (rc != TG_OK)
            break;
        /* grad . (x+ - x-) / 2eps: the stored (rounded) perturbation, so f32 rounding
         * of the inputs does not count as an error */
        double a = 0;
        for (int k = 0; k < g->n_ci; k++)
            for (int64_t i = 0; i < g->ci[k].numel; i++)
                a += g->ci[k].grad[i] * (g->ci[k].plus[i] - g->ci[k].minus[i]);
        a /= 2 * o->eps;
        compare(rep, w, o, g->n_ci == 1 ? g->ci[0].index : -1, d, a,
                (lp - lm) / (2 * o->eps));
    }
    for (int k = 0; k < g->n_ci; k++)
        free(u[k]);
    free(u);
    return rc;
}

static void free_checked(gc_ctx *g)
{
    for (int k = 0; k < g->n_ci; k++) {
        free(g->ci[k].orig);
        free(g->ci[k].grad);
        free(g->ci[k].plus);
        free(g->ci[k].minus);
    }
    free(g->ci);
}

static tg_status validate(tg_gradcheck_fn fn, tg_tensor *const *inputs, int n_inputs,
                          const tg_gradcheck_opts *o, int *n_checked)
{
    if (!fn)
        return tg_null_arg("tg_gradcheck", "fn");
    if (n_inputs < 0 || (n_inputs > 0 && !inputs))
        return tg_error(TG_ERR_ARG, "tg_gradcheck: invalid inputs (n_inputs %d)", n_inputs);
    if (o->mode != TG_GRADCHECK_ELEMENTWISE && o->mode != TG_GRADCHECK_DIRECTIONAL)
        return tg_error(TG_ERR_ARG, "tg_gradcheck: unknown mode %d", (int)o->mode);
    if (!(o->eps > 0) || !(o->atol >= 0) || !(o->rtol >= 0))
        return tg_error(TG_ERR_ARG, "tg_gradcheck: eps must be > 0 and atol, rtol >= 0 "
                        "(eps %g, atol %g, rtol %g)", o->eps, o->atol, o->rtol);
    if (o->mode == TG_GRADCHECK_DIRECTIONAL && o->n_directions <= 0)
        return tg_error(TG_ERR_ARG, "tg_gradcheck: DIRECTIONAL needs n_directions > 0 "
                        "(got %d)", o->n_directions);
    *n_checked = 0;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i])
            return tg_error(TG_ERR_ARG, "tg_gradcheck: input %d is NULL", i);
        if (inputs[i]->grad_fn)
            return tg_error(TG_ERR_ARG, "tg_gradcheck: input %d is not a leaf (computed by "
                            "op '%s'); pass leaves", i,
                            ((tg_node *)inputs[i]->grad_fn)->op->name);
        if (inputs[i]->requires_grad) {
            if (inputs[i]->dtype != TG_F32 && inputs[i]->dtype != TG_F64)
                return tg_error(TG_ERR_DTYPE, "tg_gradcheck: input %d is %s; checked inputs "
                                "must be f32 or f64", i, tg_dtype_name(inputs[i]->dtype));
            (*n_checked)++;
        }
    }
    if (*n_checked == 0)
        return tg_error(TG_ERR_ARG, "tg_gradcheck: no input requires grad, nothing to check");
    return TG_OK;
}

static void zero_grads(tg_tensor *const *inputs, int n_inputs)
{
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i]->requires_grad)
            tg_zero_grad(inputs[i]);
}

/* Forward with grad on, then backward with grad_output r: fills c->grad. */
static tg_status analytic(gc_ctx *g, tg_rng *rng, tg_gradcheck_report *rep,
                          tg_tensor **r_out)
{
    bool prev = tg_set_grad_enabled(true);
    tg_tensor *y = g->fn(g->inputs, g->n_inputs, g->ctx);
    tg_set_grad_enabled(prev);
    if (!y) {
        set_error_from_fn(g->label, "on the given inputs");
        return tg_last_status();
    }
    if (y->dtype != TG_F32 && y->dtype != TG_F64)
        return tg_error(TG_ERR_DTYPE, "tg_gradcheck(%s): fn returned a tensor of dtype %s; "
                        "the output must be f32 or f64", g->label, tg_dtype_name(y->dtype));
    tg_node *node = tg_tensor_grad_fn(y);
    snprintf(rep->op, sizeof rep->op, "%s", node ? node->op->name : "none");

    tg_tensor *r = tg_tensor_new_named("tg_gradcheck", y->dtype, y->ndim, y->shape);
    if (!r)
        return tg_last_status();
    tg_scoped(r);
    int64_t n = tg_tensor_numel(r);
    for (int64_t i = 0; i < n; i++)
        tg_set_flat(r, i, 2 * tg_rng_uniform(rng) - 1);
    *r_out = r;

    if (tg_requires_grad(y)) {
        tg_backward_opts bo = TG_BACKWARD_OPTS_INIT;
        bo.grad_output = r;
        tg_status rc = tg_backward_ex(y, &bo);
        if (rc != TG_OK)
            return rc;
    } /* else: f does not depend differentiably on the inputs; analytic grads are 0 */
    for (int k = 0; k < g->n_ci; k++) {
        checked_input *c = &g->ci[k];
        tg_tensor *gr = tg_grad(c->t);
        for (int64_t i = 0; i < c->numel; i++)
            c->grad[i] = gr ? tg_get_flat(gr, i) : 0.0;
    }
    return TG_OK;
}

static void write_message(tg_gradcheck_report *rep, const worst *w, const char *label,
                          tg_gradcheck_mode mode)
{
    char where[96];
    if (rep->checked == 0) {
        snprintf(rep->message, sizeof rep->message, "gradcheck %s: %s (op '%s'; nothing "
                 "compared: the checked inputs have no elements)", label,
                 rep->passed ? "passed" : "FAILED", rep->op);
        return;
    }
    if (mode == TG_GRADCHECK_DIRECTIONAL && w->input < 0)
        snprintf(where, sizeof where, "direction %lld over all inputs", (long long)w->index);
    else if (mode == TG_GRADCHECK_DIRECTIONAL)
        snprintf(where, sizeof where, "input %d direction %lld", w->input,
                 (long long)w->index);
    else
        snprintf(where, sizeof where, "input %d index %lld", w->input, (long long)w->index);
    snprintf(rep->message, sizeof rep->message,
             "gradcheck %s: %s (op '%s', %d %s comparisons; worst at %s: analytic %.10g, "
             "numeric %.10g, abs err %.3g, rel err %.3g)", label,
             rep->passed ? "passed" : "FAILED", rep->op, rep->checked,
             mode == TG_GRADCHECK_DIRECTIONAL ? "directional" : "elementwise", where,
             w->analytic, w->numeric, w->abs_err, w->rel_err);
}

tg_status tg_gradcheck(tg_gradcheck_report *report, tg_gradcheck_fn fn, void *ctx,
                       tg_tensor *const *inputs, int n_inputs,
                       const tg_gradcheck_opts *opts)
{
    if (!report)
        return tg_null_arg("tg_gradcheck", "report");
    memset(report, 0, sizeof *report);
    report->worst_input = -1;
    report->worst_index = -1;
    snprintf(report->op, sizeof report->op, "none");
    tg_gradcheck_opts defaults = TG_GRADCHECK_OPTS_INIT;
    const tg_gradcheck_opts *o = opts ? opts : &defaults;
    const char *label = o->label ? o->label : "function";
    int n_checked = 0;
    tg_status rc = validate(fn, inputs, n_inputs, o, &n_checked);
    if (rc != TG_OK) {
        snprintf(report->message, sizeof report->message, "gradcheck %s: not run: %s", label,
                 tg_last_error());
        return rc;
    }

    gc_ctx g = {fn, ctx, inputs, n_inputs, NULL, label, NULL, 0};
    g.ci = calloc((size_t)n_checked, sizeof *g.ci);
    if (!g.ci)
        return tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
    for (int i = 0; i < n_inputs && rc == TG_OK; i++) {
        if (!inputs[i]->requires_grad)
            continue;
        checked_input *c = &g.ci[g.n_ci++];
        c->index = i;
        c->t = inputs[i];
        c->numel = tg_tensor_numel(inputs[i]);
        size_t sz = (size_t)(c->numel ? c->numel : 1) * sizeof(double);
        c->orig = malloc(sz);
        c->grad = malloc(sz);
        if (o->mode == TG_GRADCHECK_DIRECTIONAL) {
            c->plus = malloc(sz);
            c->minus = malloc(sz);
        }
        if (!c->orig || !c->grad ||
            (o->mode == TG_GRADCHECK_DIRECTIONAL && (!c->plus || !c->minus))) {
            rc = tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
            break;
        }
        if ((rc = tg_tensor_settle(c->t)) != TG_OK) /* its elements are read plain */
            break;
        for (int64_t k = 0; k < c->numel; k++)
            c->orig[k] = load(c->t, k);
    }
    if (rc != TG_OK) {
        free_checked(&g);
        return rc;
    }

    tg_rng rng;
    tg_rng_seed(&rng, o->seed);
    tg_scope *s = tg_scope_push();
    if (!s) {
        free_checked(&g);
        return tg_error(TG_ERR_NOMEM, "tg_gradcheck: out of memory");
    }
    zero_grads(inputs, n_inputs);
    tg_tensor *r = NULL;
    rc = analytic(&g, &rng, report, &r);
    zero_grads(inputs, n_inputs);
    worst w = {false, 0, 0, 0, -1, -1, 0, 0};
    if (rc == TG_OK) {
        g.r = r;
        report->passed = true;
        if (o->mode == TG_GRADCHECK_ELEMENTWISE)
            rc = check_elementwise(&g, o, report, &w);
        else
            rc = check_directional(&g, o, report, &w, &rng);
    }
    tg_scope_pop(s);
    free_checked(&g);
    if (rc != TG_OK) {
        report->passed = false;
        snprintf(report->message, sizeof report->message, "gradcheck %s: error: %s", label,
                 tg_last_error());
        return rc;
    }
    report->worst_input = w.input;
    report->worst_index = w.index;
    report->worst_analytic = w.analytic;
    report->worst_numeric = w.numeric;
    write_message(report, &w, label, o->mode);
    return TG_OK;
}
