/* nn/model.h -- the functional model graph (Keras's functional API) and the
 * calls every model answers, Sequential or graph.
 *
 * A graph model is built by applying layers to symbolic nodes: inputs first,
 * then each layer on the node(s) it reads; a layer applied twice is shared (one
 * set of weights, two uses). Shapes are inferred and parameters created when
 * the model is built (at the first forward, summary or parameter access), as a
 * Sequential model does. Included by nn/nn.h; see docs/writing-a-model.md. */
#ifndef TG_NN_MODEL_H
#define TG_NN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"
#include "layer.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_model tg_model; /* also in nn/nn.h (C11 allows the repeat) */

/* A symbolic tensor of a graph model under construction: an input, or the
 * output of one application of a layer. Borrowed: owned by its model. */
typedef struct tg_node tg_node;

/* The most inputs a merge layer takes, and a model's inputs and outputs. */
#define TG_MODEL_MAX_IO 64

/* A new, empty graph model named name (copied; NULL: "model"). Add inputs with
 * tg_model_input, layers with tg_model_apply, then name the outputs with
 * tg_model_set_outputs. Free with tg_model_free. NULL on error. */
tg_model *tg_model_new(const char *name);

/* A new input of shape (N, shape...) (ndim dims without the batch), named name
 * (copied; NULL: "input_1", "input_2", ... Keras style). Inputs are fed to
 * forward in the order they were made. NULL with the error set (and recorded
 * in the model: see tg_model_set_outputs) on a bad shape or name. */
tg_node *tg_model_input(tg_model *model, const char *name, int ndim, const int64_t *shape);

/* Applies layer to x and returns the node of its output. The first application
 * steals layer (the model owns it, names it if unnamed, and frees it); later
 * applications of the same layer share it: its weights are built once, for the
 * first input's shape, and every later input must have that shape. A layer of
 * another model is refused. NULL x (a failed earlier call) returns NULL and
 * frees an unowned layer, so a chain of calls may be checked once at the end.
 * On error: NULL, the error set and recorded in the model. */
tg_node *tg_model_apply(tg_model *model, tg_layer *layer, tg_node *x);
/* The same for a layer that reads n >= 1 nodes (merge layers: Add,
 * Concatenate, ...); a single-input layer needs n == 1. */
tg_node *tg_model_apply_n(tg_model *model, tg_layer *layer, int n, tg_node *const *xs);

/* Sets the model's outputs (n >= 1 nodes of this model; forward returns them in
 * this order) and ends construction. Returns the first error recorded while the
 * graph was made (a failed tg_model_input or tg_model_apply) if there was one,
 * so checking this status is enough. Inputs no output depends on are an
 * error; so is an input fed into nothing. */
tg_status tg_model_set_outputs(tg_model *model, int n, tg_node *const *outputs);

/* The node's output shape without the batch, after build (0 dims before). */
int tg_node_shape(const tg_node *node, int64_t *shape);
/* The layer that made the node, borrowed; NULL for an input. */
tg_layer *tg_node_layer(const tg_node *node);

/* Counts: 1 and 1 for a Sequential model. */
int tg_model_num_inputs(const tg_model *model);
int tg_model_num_outputs(const tg_model *model);
/* True for a graph model (tg_model_new), false for a Sequential one. */
bool tg_model_is_graph(const tg_model *model);

/* Runs the model on n_in inputs (xs[i] (N, input i's shape...), the same N)
 * and sets outs[0..n_out-1] (n_out == tg_model_num_outputs) to scoped
 * references. With logits, an output layer's final softmax is skipped, as
 * tg_sequential_forward_logits does. Every layer runs once per application;
 * a node read by two layers is computed once. On error outs are NULL and the
 * error names the layer. Works for Sequential models (1 and 1) too. */
tg_status tg_model_forward_n(tg_model *model, int n_in, tg_tensor *const *xs, int n_out,
                             tg_tensor **outs, bool logits);

/* ---- merge layers: n >= 2 inputs (tg_model_apply_n) ----
 * Add, Multiply, Average: inputs of one shape, elementwise (sum, product,
 * mean). Concatenate: inputs equal but along axis, which counts the batch as
 * axis 0 as Keras does (1: channels of (N, C, H, W) or features of (N, F);
 * negative from the end; 0 is refused). */
tg_layer *tg_layer_new_add(const char *name);
tg_layer *tg_layer_new_multiply(const char *name);
tg_layer *tg_layer_new_average(const char *name);
tg_layer *tg_layer_new_concatenate(int axis, const char *name);

/* ---- every model, Sequential or graph: the generic names ----
 * Each is the tg_sequential_* function of the same name (see nn/nn.h), which
 * also takes graph models; these names read better for graph models. */
void tg_model_free(tg_model *model);
tg_status tg_model_build(tg_model *model);
tg_status tg_model_summary(tg_model *model, FILE *out);
char *tg_model_architecture(tg_model *model);
const char *tg_model_name(const tg_model *model);
tg_status tg_model_set_dtype(tg_model *model, tg_dtype dtype);
void tg_model_set_training(tg_model *model, bool training);
tg_tensor *tg_model_forward(tg_model *model, tg_tensor *x);
tg_tensor *tg_model_forward_logits(tg_model *model, tg_tensor *x);
tg_tensor *const *tg_model_params(tg_model *model, size_t *n);
tg_status tg_model_count_params(int64_t *total, int64_t *trainable, int64_t *non_trainable,
                                tg_model *model);
int tg_model_layer_count(const tg_model *model);
/* Freezes (false) or unfreezes every layer, as Keras's model.trainable:
 * tg_layer_set_trainable on each; freeze single layers with that. */
tg_status tg_model_set_trainable(tg_model *model, bool trainable);
tg_layer *tg_model_layer(const tg_model *model, int index);
tg_layer *tg_model_layer_by_name(const tg_model *model, const char *name);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
