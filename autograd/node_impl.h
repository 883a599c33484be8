/* autograd/node_impl.h -- private: the tape node and the recording API that ops use.
 *
 * A node is what one op leaves behind for backward: the op's vtable, references
 * to its inputs (never to its output: the output owns the node, so there are no
 * cycles), op-specific saved state, and its sequence number. */
#ifndef TG_NODE_IMPL_H
#define TG_NODE_IMPL_H

#include "libtensor/tensor_impl.h"
#include "autograd/autograd.h"

typedef struct tg_node tg_node;

/* Gradcheck hints an op gives the test suite about its inputs' domain. */
enum {
    TG_GC_POSITIVE = 1u << 0,       /* inputs must be > 0 (log, sqrt, pow base) */
    TG_GC_AWAY_FROM_KINK = 1u << 1, /* keep |x| away from 0 (abs, relu) */
    TG_GC_DISTINCT = 1u << 2        /* no ties (max, max_pool) */
};
/* (argmax is not differentiable, so it has no row in the op table; tests/test_ops.c
 * checks that it records nothing.) */

typedef struct tg_op_vtable {
    const char *name; /* table name: "add", "conv2d" */
    /* Computes the gradient of each input that needs it. Runs with grad mode off,
     * inside a scope the engine owns. grad_in has node->n_inputs slots, all NULL on
     * entry; set grad_in[i] (a scoped reference is fine) for each i with
     * tg_node_needs_grad(node, i). Each gradient must have its input's shape and
     * dtype (the engine checks). */
    tg_status (*backward)(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in);
    /* Frees node->saved (may be NULL: then free(node->saved) is used). */
    void (*free_saved)(void *saved);
    /* Optional: extra DOT label text such as "3x3 s1 p0" (NUL-terminated). */
    void (*describe)(const tg_node *node, char *buf, size_t n);
    unsigned gradcheck_hints; /* TG_GC_* */
    /* Bit i set: backward reads only the shape of input i, never its values
     * (add, a bias, a view's base). The engine refuses to run a backward whose
     * other inputs were written after the op recorded them (their version
     * changed): 0, the default, checks every input. TG_OP_ALL_INPUTS for ops
     * that read none. */
    unsigned shape_only_inputs;
} tg_op_vtable;

#define TG_OP_ALL_INPUTS (~0u)

struct tg_node {
    tg_refobj base;            /* refcount: held by the output tensor (and views of it) */
    const tg_op_vtable *op;
    uint64_t seq;              /* tape order */
    int n_inputs;
    tg_tensor **inputs;        /* owned references */
    uint64_t *in_versions;     /* each input's storage version when recorded (in
                                * the inputs array's allocation) */
    void *saved;               /* op-specific, freed by op->free_saved */
    /* The storage of the view of its output that the op saved
     * (tg_op_output_view; borrowed from node->saved, valid while it is) and
     * its version then; NULL when the op saved none. */
    const tg_storage *saved_out;
    uint64_t saved_out_version;
    bool released;             /* saved state freed by a backward without retain_graph */
    char detail[64];           /* op->describe() text, taken just before release */
    /* the output's metadata (the node does not reference its output) */
    tg_dtype out_dtype;
    int out_ndim;
    int64_t out_shape[TG_MAX_DIMS];
    /* engine scratch during backward */
    tg_tensor *grad_accum;
    int pending;
};

/* True when grad mode is on and at least one non-NULL input requires grad. */
bool tg_autograd_should_record(tg_tensor *const *inputs, int n_inputs);

/* Records `op` as the producer of `out`: makes a node holding references to the
 * inputs, takes ownership of `saved` (freed with op->free_saved even on failure),
 * sets out->grad_fn and out->requires_grad. Call only when
 * tg_autograd_should_record() said so. Returns the node (borrowed), or NULL on
 * allocation failure (error set). */
tg_node *tg_autograd_record(tg_tensor *out, const tg_op_vtable *op,
                            tg_tensor *const *inputs, int n_inputs, void *saved);

/* Marks t (a view of the output that node's saved state holds, taken with
 * tg_op_output_view) as saved: backward then refuses when the output was
 * written after the op, as for the inputs. */
void tg_node_save_output(tg_node *node, const tg_tensor *t);

/* Whether backward must produce the gradient of input i. */
bool tg_node_needs_grad(const tg_node *node, int i);

/* Whether a backward may overwrite its grad_out in place and hand it back as an
 * input's gradient: the engine's reference is the only one to the tensor and
 * to its storage (not the caller's seed, not shared with another node, not a
 * view), it is contiguous, and the engine drops it after this backward, so
 * nobody can see the old values. An elementwise backward then saves a buffer and a memory pass. */
static inline bool tg_grad_out_reusable(const tg_tensor *g)
{
    return g && g->refcount == 1 && g->storage->refcount == 1 && g->storage->owns_data &&
           !g->grad_fn && tg_tensor_covers_storage(g);
}

/* The gradient buffer of input i when a backward may write that input's
 * gradient straight into it: input i is a leaf that needs a gradient and whose
 * .grad was zeroed (tg_zero_grad) and not touched since (its grad_zero_pending
 * mark, autograd/engine.c), so its first contribution is the whole of it. The
 * mark is cleared; the caller must
 * overwrite every element and hand the tensor back as grad_in[i] (a new
 * reference), which the engine then takes as already accumulated. This is how
 * a weight gradient lands in .grad without a copy, as a hand-written loop does.
 * If the backward fails before writing it, give it back with
 * tg_node_unclaim_leaf_grad (which writes the zeros). NULL otherwise (borrowed
 * when not). */
tg_tensor *tg_node_claim_leaf_grad(tg_node *node, int i);
void tg_node_unclaim_leaf_grad(tg_tensor *g);

/* The node that produced t (borrowed) or NULL for leaves. */
tg_node *tg_tensor_grad_fn(const tg_tensor *t);

#endif
