/* nn/schedule.c -- learning-rate schedules: closed forms of the step
 * (step, exponential, cosine decay) and the reduce-on-plateau tracker. Nothing
 * here allocates; the formulas are in nn/nn.h. */
#include <math.h>

#include "nn/nn_impl.h"

double tg_lr_schedule_at(const tg_lr_schedule *s, int64_t t)
{
    static const char *fn = "tg_lr_schedule_at";
    if (!s)
        return tg_null_arg(fn, "s"), NAN;
    if (!(s->lr > 0) || !isfinite(s->lr))
        return tg_error(TG_ERR_ARG, "%s: lr must be finite and > 0, not %g", fn, s->lr), NAN;
    if (t < 0)
        return tg_error(TG_ERR_ARG, "%s: t must be >= 0, not %lld", fn, (long long)t), NAN;
    if (s->kind != TG_LR_CONSTANT && s->kind != TG_LR_STEP && s->kind != TG_LR_EXPONENTIAL &&
        s->kind != TG_LR_COSINE)
        return tg_error(TG_ERR_ARG, "%s: kind %d is not a tg_lr_kind", fn, (int)s->kind), NAN;
    if (s->kind == TG_LR_CONSTANT)
        return s->lr;
    if (s->step_size < 1)
        return tg_error(TG_ERR_ARG, "%s: step_size must be >= 1, not %lld", fn,
                        (long long)s->step_size), NAN;
    if (s->kind == TG_LR_COSINE) {
        if (!(s->alpha >= 0 && s->alpha <= 1))
            return tg_error(TG_ERR_ARG, "%s: alpha must be in [0, 1], not %g", fn, s->alpha),
                   NAN;
        double done = (double)(t < s->step_size ? t : s->step_size) / (double)s->step_size;
        const double pi = 3.14159265358979323846;
        double c = 0.5 * (1.0 + cos(pi * done));
        return s->lr * ((1.0 - s->alpha) * c + s->alpha);
    }
    if (!(s->gamma > 0) || !isfinite(s->gamma))
        return tg_error(TG_ERR_ARG, "%s: gamma must be finite and > 0, not %g", fn, s->gamma),
               NAN;
    double e = s->kind == TG_LR_STEP || s->staircase ? (double)(t / s->step_size)
                                                     : (double)t / (double)s->step_size;
    return s->lr * pow(s->gamma, e);
}

tg_status tg_lr_plateau_init(tg_lr_plateau *p, const tg_lr_plateau_opts *opts)
{
    static const char *fn = "tg_lr_plateau_init";
    if (!p)
        return tg_null_arg(fn, "p");
    tg_lr_plateau_opts o = TG_LR_PLATEAU_OPTS_INIT;
    if (opts)
        o = *opts;
    if (!(o.factor > 0 && o.factor < 1))
        return tg_error(TG_ERR_ARG, "%s: factor must be in (0, 1), not %g", fn, o.factor);
    if (o.patience < 0 || o.cooldown < 0)
        return tg_error(TG_ERR_ARG, "%s: patience %d and cooldown %d must be >= 0", fn,
                        o.patience, o.cooldown);
    if (!(o.min_delta >= 0) || !isfinite(o.min_delta))
        return tg_error(TG_ERR_ARG, "%s: min_delta must be finite and >= 0, not %g", fn,
                        o.min_delta);
    if (!(o.min_lr >= 0) || !isfinite(o.min_lr))
        return tg_error(TG_ERR_ARG, "%s: min_lr must be finite and >= 0, not %g", fn, o.min_lr);
    *p = (tg_lr_plateau){o, o.maximize ? -INFINITY : INFINITY, 0, 0};
    return TG_OK;
}

tg_status tg_lr_plateau_update(tg_lr_plateau *p, tg_optimizer *opt, double value,
                               bool *reduced)
{
    static const char *fn = "tg_lr_plateau_update";
    if (reduced)
        *reduced = false;
    if (!p || !opt)
        return tg_null_arg(fn, !p ? "p" : "opt");
    /* Keras's order: the cooldown counts down first, then the comparison */
    if (p->cooldown_left > 0) {
        p->cooldown_left--;
        p->wait = 0;
    }
    bool better = p->o.maximize ? value > p->best + p->o.min_delta
                                : value < p->best - p->o.min_delta;
    if (better) { /* a NaN compares false: never better */
        p->best = value;
        p->wait = 0;
        return TG_OK;
    }
    if (p->cooldown_left > 0 || ++p->wait < p->o.patience)
        return TG_OK;
    double lr = tg_optimizer_lr(opt);
    if (lr > p->o.min_lr) {
        double nl = fmax(lr * p->o.factor, p->o.min_lr);
        tg_status st = tg_optimizer_set_lr(opt, nl);
        if (st != TG_OK)
            return st;
        if (reduced)
            *reduced = true;
        p->cooldown_left = p->o.cooldown;
        p->wait = 0;
    }
    return TG_OK;
}
