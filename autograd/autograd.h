/* autograd/autograd.h -- reverse-mode automatic differentiation.
 *
 * Define-by-run: every op (ops/ops.h) computes its result at once and, when grad
 * mode is on and an input requires grad, records a node on the tape. tg_backward()
 * walks the nodes reachable from the output in decreasing record order and adds
 * each gradient into the inputs that require it. */
#ifndef TG_AUTOGRAD_H
#define TG_AUTOGRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* Marks a leaf as a parameter whose gradient is wanted. Only floating dtypes may
 * require grad; a non-leaf (a tensor computed by a recorded op) cannot be changed. */
tg_status tg_set_requires_grad(tg_tensor *t, bool requires_grad);
bool tg_requires_grad(const tg_tensor *t);
/* True for tensors not produced by a recorded op. */
bool tg_is_leaf(const tg_tensor *t);
/* The accumulated gradient of a leaf (borrowed), or NULL before any backward. */
tg_tensor *tg_grad(const tg_tensor *t);
/* Sets the leaf's gradient to zero, keeping its buffer (no allocation per step). */
tg_status tg_zero_grad(tg_tensor *t);

typedef struct tg_backward_opts {
    /* Gradient of the output; NULL means 1 (the output must then have one element). */
    const tg_tensor *grad_output;
    /* Keep saved state so backward may run through this graph again. */
    bool retain_graph;
} tg_backward_opts;
#define TG_BACKWARD_OPTS_INIT { NULL, false }

/* backward of a one-element output (a loss). */
tg_status tg_backward(tg_tensor *output);
tg_status tg_backward_ex(tg_tensor *output, const tg_backward_opts *opts);

/* Grad mode is per thread and on by default. Returns the previous setting, so
 *   bool prev = tg_set_grad_enabled(false); ... tg_set_grad_enabled(prev);  */
bool tg_set_grad_enabled(bool enabled);
bool tg_grad_enabled(void);

/* A view of t that shares its storage but has no history and needs no grad.
 * Scoped reference. */
tg_tensor *tg_detach(tg_tensor *t);

/* Number of nodes recorded since the process started (the tape's clock). */
uint64_t tg_autograd_sequence(void);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
