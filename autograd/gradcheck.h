/* autograd/gradcheck.h -- check analytic gradients against finite differences.
 *
 * Usable on any function built from ops: the function maps input tensors to one
 * output tensor. The output is reduced with a fixed random weight r,
 * L = sum(r * f(x)), so non-scalar outputs are checked in every component. */
#ifndef TG_GRADCHECK_H
#define TG_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* Computes the output from the inputs with differentiable ops. It runs inside a
 * scope that gradcheck owns, so it simply returns the op's scoped result. NULL
 * means failure (the last error is reported). */
typedef tg_tensor *(*tg_gradcheck_fn)(tg_tensor *const *inputs, int n_inputs, void *ctx);

typedef enum tg_gradcheck_mode {
    /* Every element of every input that requires grad: central differences
     * (f(x+eps) - f(x-eps)) / 2eps, compared with the analytic gradient. Use f64. */
    TG_GRADCHECK_ELEMENTWISE = 0,
    /* n_directions random unit directions u: compare grad . u with
     * (L(x + eps u) - L(x - eps u)) / 2eps. Cheap; suits f32 and large inputs. */
    TG_GRADCHECK_DIRECTIONAL = 1
} tg_gradcheck_mode;

typedef struct tg_gradcheck_opts {
    tg_gradcheck_mode mode;
    double eps;        /* step */
    double atol;       /* pass when |a - n| <= atol + rtol * max(|a|, |n|) */
    double rtol;
    int n_directions;  /* DIRECTIONAL only */
    uint64_t seed;     /* for r and the directions */
    const char *label; /* what is being checked, for the report ("conv2d 3x3") */
} tg_gradcheck_opts;

/* f64 elementwise defaults: eps 1e-6, atol 1e-8, rtol 1e-6. */
#define TG_GRADCHECK_OPTS_INIT { TG_GRADCHECK_ELEMENTWISE, 1e-6, 1e-8, 1e-6, 0, 1234u, NULL }
/* f32 directional defaults: eps 1e-3, atol 1e-3, rtol 1e-2, 8 directions. */
#define TG_GRADCHECK_OPTS_F32_INIT { TG_GRADCHECK_DIRECTIONAL, 1e-3, 1e-3, 1e-2, 8, 1234u, NULL }

typedef struct tg_gradcheck_report {
    bool passed;
    int checked;           /* number of comparisons made */
    double max_abs_err;
    double max_rel_err;
    int worst_input;       /* index into inputs, -1 if none */
    int64_t worst_index;   /* flat element index (ELEMENTWISE) or direction number */
    double worst_analytic;
    double worst_numeric;
    char op[64];           /* op that produced the output (its table name) */
    char message[384];     /* one human-readable line saying all of the above */
} tg_gradcheck_report;

/* Runs the check. Inputs must be leaves; those with requires_grad are checked
 * (their data is perturbed and restored; their .grad is left zeroed). Returns TG_OK
 * when the check could run (report->passed says whether it passed), or an error
 * when fn failed or the arguments are invalid. report may not be NULL. */
tg_status tg_gradcheck(tg_gradcheck_report *report, tg_gradcheck_fn fn, void *ctx,
                       tg_tensor *const *inputs, int n_inputs,
                       const tg_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
