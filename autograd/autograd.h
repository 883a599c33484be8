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
/* The accumulated gradient of a leaf (borrowed), or NULL before any backward.
 * After tg_zero_grad it reads as zeros (written here, on first asking). */
tg_tensor *tg_grad(const tg_tensor *t);
/* Sets the leaf's gradient to zero, keeping its buffer (no allocation per step).
 * Unless another reference holds the gradient, the zeros are only marked
 * (docs/layouts.md): read the gradient through tg_grad again afterwards. */
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

/* ---------------------------------------------------------------- custom functions
 * A differentiable function defined in user code, with its own forward and
 * backward (as torch.autograd.Function or tf.custom_gradient), recorded on the
 * tape as one node and checkable with tg_gradcheck:
 *
 *   static tg_tensor *swish_fwd(tg_function_ctx *ctx, tg_tensor *const *in, int n,
 *                               void *user)
 *   {
 *       tg_function_save(ctx, in[0]);
 *       return tg_mul(in[0], tg_sigmoid(in[0]));
 *   }
 *   static tg_status swish_bwd(tg_function_ctx *ctx, tg_tensor *g, tg_tensor **gin)
 *   {
 *       tg_tensor *x = tg_function_saved(ctx, 0), *s = tg_sigmoid(x);
 *       // d/dx x s(x) = s + x s (1 - s)
 *       gin[0] = tg_mul(g, tg_add(s, tg_mul(tg_mul(x, s), tg_add_scalar(tg_neg(s), 1))));
 *       return gin[0] ? TG_OK : tg_last_status();
 *   }
 *   static const tg_function_def swish = {"swish", swish_fwd, swish_bwd, 0};
 *   ... y = tg_function_apply(&swish, &x, 1, NULL);
 */
typedef struct tg_function_ctx tg_function_ctx;

typedef struct tg_function_def {
    const char *name; /* in messages and the DOT label ("function" + name); required */
    /* Computes the output from the inputs with grad mode off (the ops it calls
     * are not recorded: the function's node stands for them) and returns it,
     * scoped (an op's result) or borrowed (an input); NULL with the error set on
     * failure. It may save tensors for the backward (tg_function_save,
     * tg_function_save_output) and fill the data block. */
    tg_tensor *(*forward)(tg_function_ctx *ctx, tg_tensor *const *inputs, int n_inputs,
                          void *user);
    /* Sets grad_in[i] (scoped references are fine) to dL/d input i for every i
     * with tg_function_needs_grad(ctx, i), from grad_out = dL/d output; each with
     * its input's shape and dtype. Runs with grad mode off inside a scope of the
     * engine's, after the versions of the saved tensors were checked. */
    tg_status (*backward)(tg_function_ctx *ctx, tg_tensor *grad_out, tg_tensor **grad_in);
    size_t data_size; /* bytes of zeroed per-call data (tg_function_data); 0: none */
} tg_function_def;

/* Runs def's forward on the n_inputs (1..64, none NULL) inputs and, when grad
 * mode is on and an input requires grad, records one node whose backward is
 * def's. The output is always a new tensor (a view when the forward returned
 * an input). user is handed to the forward and kept for the backward
 * (tg_function_user): it must outlive the graph. def must outlive the graph
 * too (a static const definition). Scoped reference; NULL with the error set. */
tg_tensor *tg_function_apply(const tg_function_def *def, tg_tensor *const *inputs, int n_inputs,
                             void *user);
/* Forward only: keep t (an input, or anything the forward computed) for the
 * backward. Its version is recorded; a backward after t was written is refused
 * (TG_ERR_STATE), as for built-in ops. At most 16 per call. */
tg_status tg_function_save(tg_function_ctx *ctx, tg_tensor *t);
/* Forward only: keep the output for the backward (tg_function_saved_output),
 * with the same version check. */
tg_status tg_function_save_output(tg_function_ctx *ctx);
/* In the backward: the i-th saved tensor, the saved output, input i (borrowed;
 * NULL with the error set when there is none). */
tg_tensor *tg_function_saved(const tg_function_ctx *ctx, int i);
tg_tensor *tg_function_saved_output(const tg_function_ctx *ctx);
tg_tensor *tg_function_input(const tg_function_ctx *ctx, int i);
/* The call's data block (NULL when data_size is 0) and user pointer. */
void *tg_function_data(const tg_function_ctx *ctx);
void *tg_function_user(const tg_function_ctx *ctx);
/* Whether input i needs a gradient (in the backward: whether the engine wants it). */
bool tg_function_needs_grad(const tg_function_ctx *ctx, int i);

/* Number of nodes recorded since the process started (the tape's clock). */
uint64_t tg_autograd_sequence(void);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
