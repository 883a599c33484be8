/* nn/nn_impl.h -- private: the layer struct behind nn/layer.h, and what nn/
 * files share.
 *
 * Every layer type, built-in or not, goes through the public tg_layer_vtable;
 * this header only holds the struct that layer.c manages for all of them and
 * the helpers sequential.c and the built-in types use. */
#ifndef TG_NN_IMPL_H
#define TG_NN_IMPL_H

#include <stdarg.h>

#include "libtensor/tensor_impl.h"
#include "libtensor/strbuf_impl.h"
#include "autograd/autograd.h"
#include "ops/ops.h"
#include "nn/nn.h"

/* A parameter or a buffer of a layer. */
typedef struct tg_layer_slot {
    char *short_name; /* "kernel", "moving_mean": malloc'd */
    tg_tensor *t;     /* owned reference */
} tg_layer_slot;

/* A growable array of slots. */
typedef struct tg_layer_slots {
    tg_layer_slot *v;
    int n, cap;
} tg_layer_slots;

struct tg_layer {
    const tg_layer_vtable *vt;
    char *name;             /* malloc'd; NULL until named */
    bool trainable;
    bool in_model;          /* owned by a model: tg_layer_free refuses */
    const tg_model *owner;  /* that model (a graph model applies a layer it owns again) */
    bool built;
    bool building;          /* inside vt->build: add_param/add_buffer allowed */
    tg_activation act;      /* applied after vt->forward */
    int in_ndim, out_ndim;  /* a merge layer: in_* is its first input */
    int64_t in_shape[TG_MAX_DIMS], out_shape[TG_MAX_DIMS];
    int n_in;               /* inputs it was built for (1 but for merge layers) */
    int *multi_ndim;        /* merge layers: each input's dims and shape, malloc'd */
    int64_t (*multi_shape)[TG_MAX_DIMS];
    tg_layer_slots params, buffers;
    tg_dtype build_dtype;   /* during build: the parameters' dtype and generator */
    tg_rng *build_rng;
    tg_status build_status; /* the first failed declaration during build */
    void *data;             /* vt->data_size bytes after the struct, or NULL */
};

/* One node of a graph model: an input (layer NULL) or one application of a
 * layer to earlier nodes. Nodes are stored in the order they were made, which
 * is a topological order (a node reads only earlier ones). */
struct tg_node {
    tg_model *model;
    int index;               /* in model->nodes */
    tg_layer *layer;         /* borrowed from model->layers; NULL for an input */
    int use;                 /* the layer's application number: 0 first, 1 when shared... */
    char *name;              /* inputs: malloc'd */
    int n_in;
    int *in;                 /* indices of the nodes read, malloc'd */
    int ndim;                /* output shape without the batch; inputs from the start, */
    int64_t shape[TG_MAX_DIMS]; /* layer nodes once built */
    int readers;             /* how many node inputs read this node */
    bool is_output;
};

/* The model: a Sequential chain (graph false: layers in order, one input shape)
 * or a graph of nodes (graph true: layers are the distinct layers in order of
 * first application). */
struct tg_model {
    char *name;
    bool graph;
    int in_ndim;                   /* Sequential only */
    int64_t in_shape[TG_MAX_DIMS];
    tg_dtype dtype;
    tg_rng *rng;           /* borrowed; NULL: global */
    bool training;
    bool built;
    tg_layer **layers;     /* owned */
    int n_layers, cap_layers;
    tg_tensor **params;    /* borrowed from the layers, in order; set at build */
    size_t n_params;
    /* graph only */
    tg_node **nodes;       /* owned */
    int n_nodes, cap_nodes;
    int inputs[TG_MODEL_MAX_IO], n_inputs;
    int outputs[TG_MODEL_MAX_IO], n_outputs;
    bool closed;           /* outputs set */
    tg_status error;       /* the first error recorded while the graph was made */
    char *error_msg;
    tg_tensor **values;    /* per node, during forward (n_nodes, allocated at build) */
};

/* Builds a graph model (nn/model.c); errors name the context. */
tg_status tg_model_build_graph(tg_model *m);
/* Forward of a graph model with one input and one output (nn/model.c). */
tg_tensor *tg_model_forward_graph1(tg_model *m, tg_tensor *x, bool logits);
/* Summary and architecture of a graph model (nn/model.c). */
tg_status tg_model_summary_graph(tg_model *m, FILE *out);
char *tg_model_architecture_graph(tg_model *m);
/* Frees a graph model's nodes (nn/model.c). */
void tg_model_free_nodes(tg_model *m);
/* Summary helpers shared by both kinds (nn/sequential.c). */
char *tg_nn_thousands(char *buf, size_t n, int64_t v);
void tg_nn_rule(FILE *out, char c, int width);
/* The summary's last lines (the totals between rules); errors name the context. */
tg_status tg_nn_summary_end(FILE *out, tg_model *m, int width);

/* What a model's forward passes beyond the public context. */
typedef struct tg_fwd_ctx {
    tg_layer_ctx pub;
    bool skip_softmax; /* set only for the model's last layer by forward_logits */
} tg_fwd_ctx;

/* The i-th parameter / buffer without checks (i in range, layer built). */
static inline tg_tensor *tg_layer_param_at(const tg_layer *l, int i)
{
    return l->params.v[i].t;
}

/* tg_layer_new for the built-in constructors: errors name the context, which
 * the constructor enters. */
tg_layer *tg_layer_alloc(const tg_layer_vtable *vt, tg_activation act, const char *name);
/* Number of buffer elements (0 before build): the non-trainable part of
 * tg_layer_count_params that freezing does not change. */
int64_t tg_layer_count_buffers(const tg_layer *layer);
/* Validates a user-given layer name; messages name the context. */
tg_status tg_layer_check_name(const char *name);
/* "conv2d (Conv2D)" into buf, for error messages. */
const char *tg_layer_who(const tg_layer *l, char *buf, size_t n);
/* Builds as tg_layer_build does; used by models. Errors name the context,
 * which the caller enters (the type's build callback runs inside it). */
tg_status tg_layer_build_in(tg_layer *l, int in_ndim, const int64_t *in_shape, tg_dtype dtype,
                            tg_rng *rng);
/* Drops the parameters and buffers and marks the layer unbuilt. */
void tg_layer_unbuild(tg_layer *l);
/* vt->forward then the activation (the softmax skipped when ctx says so). */
tg_tensor *tg_layer_run(tg_layer *l, tg_tensor *x, const tg_fwd_ctx *ctx);
/* The same for a layer of n inputs (vt->forward_n; n == 1 goes to tg_layer_run). */
tg_tensor *tg_layer_run_n(tg_layer *l, int n, tg_tensor *const *xs, const tg_fwd_ctx *ctx);
/* Builds as tg_layer_build_in for a layer of n inputs (vt->build_n). */
tg_status tg_layer_build_in_n(tg_layer *l, int n, const int *in_ndim,
                              const int64_t *const *in_shape, tg_dtype dtype, tg_rng *rng);
/* True when the layer type reads several inputs (a merge layer). */
static inline bool tg_layer_is_multi(const tg_layer *l)
{
    return l->vt->forward_n != NULL;
}
/* Appends {"class_name": ..., "name": ..., "trainable": ..., "config": {...}}. */
void tg_layer_describe(const tg_layer *l, tg_strbuf *b);

/* "(None, 32, 26, 26)" for a batch-less shape. */
char *tg_nn_batch_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* ---- what the windowed layers (Conv2D, pooling) share ---- */

/* "valid", "same", "explicit". */
const char *tg_nn_padding_name(tg_padding padding);
/* Checks a constructor's padding option and, when explicit, its four pads (>= 0);
 * errors name the context, which the constructor enters. */
tg_status tg_nn_check_padding(tg_padding padding, const int pad[4]);
/* Resolves padding for a window of kernel k[2] (dilation dil[2], stride s[2]) over
 * an input of extents in[2] (H, W): pads[4] (top, bottom, left, right; explicit
 * ones copied from pad, Keras "same" ones computed so that out = ceil(in / s),
 * the odd pixel at the bottom/right) and the output extents out[2]. False when a
 * window does not fit (or "same" would need more than INT_MAX pads). */
bool tg_nn_resolve_window(tg_padding padding, const int pad[4], const int64_t in[2],
                          const int k[2], const int s[2], const int dil[2], int pads[4],
                          int64_t out[2]);

#endif
