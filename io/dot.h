/* io/dot.h -- write the recorded dataflow graph as Graphviz DOT.
 *
 *   graph-export | dot -Tsvg > graph.svg
 * Ops, tensors (shape and dtype), and parameters (named leaves that require grad)
 * are drawn differently; node ids are stable, never addresses. */
#ifndef TG_DOT_H
#define TG_DOT_H

#include <stdbool.h>
#include <stdio.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_dot_opts {
    const char *graph_name; /* NULL: "libtensor" */
    bool backward;          /* also draw the gradient flow (dashed, reversed) */
    bool rankdir_lr;        /* left-to-right instead of top-to-bottom */
} tg_dot_opts;
#define TG_DOT_OPTS_INIT { NULL, false, false }

/* Writes the graph reachable from outputs. opts may be NULL (defaults). */
tg_status tg_dot_write(FILE *out, tg_tensor *const *outputs, int n_outputs,
                       const tg_dot_opts *opts);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
