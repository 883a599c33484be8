/* autograd/graph.h -- a read-only snapshot of the recorded graph, for exporters.
 *
 * Numbering is stable: it depends only on the structure reached from the outputs
 * (depth-first, inputs in order), never on addresses, so golden files work. */
#ifndef TG_GRAPH_H
#define TG_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef enum tg_graph_item_kind {
    TG_GRAPH_TENSOR, /* a tensor value (leaf, parameter, intermediate or output) */
    TG_GRAPH_OP      /* an op node */
} tg_graph_item_kind;

typedef struct tg_graph_item {
    int id;                  /* 0, 1, 2 ... in visiting order */
    tg_graph_item_kind kind;
    /* TG_GRAPH_OP */
    const char *op_name;     /* table name */
    char op_detail[96];      /* the op's describe() text, may be "" */
    int n_inputs;
    const int *input_ids;    /* ids of the input tensor items */
    int output_id;           /* id of the output tensor item */
    /* TG_GRAPH_TENSOR */
    const tg_tensor *tensor; /* borrowed; valid while the graph's tensors live */
    bool is_leaf;
    bool is_param;           /* a leaf that requires grad */
    bool is_output;          /* one of the outputs passed to tg_graph_build */
    int producer_id;         /* id of the op item that produced it, -1 for leaves */
} tg_graph_item;

typedef struct tg_graph tg_graph;

/* Snapshot of everything reachable from outputs (new; free with tg_graph_free). */
tg_status tg_graph_build(tg_graph **out, tg_tensor *const *outputs, int n_outputs);
void tg_graph_free(tg_graph *g);
size_t tg_graph_size(const tg_graph *g);
const tg_graph_item *tg_graph_item_at(const tg_graph *g, size_t i); /* borrowed */

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
