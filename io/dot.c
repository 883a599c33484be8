/* io/dot.c -- Graphviz DOT text for the recorded graph (tg_dot_write).
 *
 * Built on the graph snapshot (autograd/graph.h): node ids are t<id> and op<id>
 * from its stable numbering, so the text depends only on the graph's structure
 * and is diffable against golden files. Never prints an address. */
#include <stdio.h>

#include "io/dot.h"
#include "autograd/autograd.h"
#include "autograd/graph.h"
#include "libtensor/tensor_impl.h"

/* Writes s inside a DOT double-quoted string. */
static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else if (*s != '\r')
            fputc(*s, out);
    }
}

static void put_shape(FILE *out, const tg_tensor *t)
{
    char buf[200];
    tg_shape_str(buf, sizeof buf, tg_tensor_ndim(t), tg_tensor_shape(t));
    fprintf(out, "%s %s", buf, tg_dtype_name(tg_tensor_dtype(t)));
}

static void write_tensor(FILE *out, const tg_graph_item *it)
{
    const char *name = tg_tensor_name(it->tensor);
    fprintf(out, "  t%d [label=\"", it->id);
    if (name) {
        put_escaped(out, name);
        fputs("\\n", out);
    }
    put_shape(out, it->tensor);
    fputs("\"", out);
    if (it->is_output)
        fputs(", shape=ellipse, style=\"filled,bold\", fillcolor=\"gold\", penwidth=2", out);
    else if (it->is_param)
        fputs(", shape=box, style=filled, fillcolor=\"lightblue\"", out);
    else if (it->is_leaf)
        fputs(", shape=ellipse, style=filled, fillcolor=\"lightyellow\"", out);
    else
        fputs(", shape=ellipse", out);
    fputs("];\n", out);
}

static void write_op(FILE *out, const tg_graph_item *it)
{
    fprintf(out, "  op%d [label=\"", it->id);
    put_escaped(out, it->op_name);
    if (it->op_detail[0]) {
        fputs("\\n", out);
        put_escaped(out, it->op_detail);
    }
    fputs("\", shape=box, style=\"rounded,filled\", fillcolor=\"lightgray\"];\n", out);
}

/* The gradient flow: each op's backward sends the gradient of its output on to
 * the backward of each input's producer, or into a parameter's grad. Each
 * backward node is ranked beside its forward op and each grad beside its
 * parameter, and the dashed edges do not constrain the layout: the forward graph
 * alone shapes it, the gradient visibly runs back up along it, and the picture is
 * no taller than the forward graph. */
static void write_backward(FILE *out, const tg_graph *g)
{
    static const char edge[] = " [style=dashed, color=\"red\", constraint=false];\n";
    size_t n = tg_graph_size(g);
    fputs("\n  /* gradient flow */\n", out);
    for (size_t k = 0; k < n; k++) {
        const tg_graph_item *it = tg_graph_item_at(g, k);
        if (it->kind == TG_GRAPH_OP) {
            fprintf(out, "  op%d_bw [label=\"", it->id);
            put_escaped(out, it->op_name);
            fputs("_backward\", shape=box, style=\"rounded,dashed\", color=\"red\", "
                  "fontcolor=\"red\"];\n", out);
            fprintf(out, "  {rank=same; op%d; op%d_bw;}\n", it->id, it->id);
        } else if (it->is_param) {
            const char *name = tg_tensor_name(it->tensor);
            fprintf(out, "  grad_t%d [label=\"grad ", it->id);
            if (name)
                put_escaped(out, name);
            else
                fprintf(out, "t%d", it->id);
            fputs("\\n", out);
            put_shape(out, it->tensor);
            fputs("\", shape=box, style=\"dashed,filled\", fillcolor=\"mistyrose\", "
                  "color=\"red\"];\n", out);
            fprintf(out, "  {rank=same; t%d; grad_t%d;}\n", it->id, it->id);
        }
    }
    for (size_t k = 0; k < n; k++) {
        const tg_graph_item *it = tg_graph_item_at(g, k);
        if (it->kind == TG_GRAPH_TENSOR) {
            /* the seed: the output's own gradient enters its producer's backward */
            if (it->is_output && it->producer_id >= 0)
                fprintf(out, "  t%d -> op%d_bw%s", it->id, it->producer_id, edge);
            continue;
        }
        for (int i = 0; i < it->n_inputs; i++) {
            const tg_graph_item *in = tg_graph_item_at(g, (size_t)it->input_ids[i]);
            if (!tg_requires_grad(in->tensor))
                continue;
            if (in->producer_id >= 0)
                fprintf(out, "  op%d_bw -> op%d_bw%s", it->id, in->producer_id, edge);
            else
                fprintf(out, "  op%d_bw -> grad_t%d%s", it->id, in->id, edge);
        }
    }
}

tg_status tg_dot_write(FILE *out, tg_tensor *const *outputs, int n_outputs,
                       const tg_dot_opts *opts)
{
    if (!out)
        return tg_null_arg("tg_dot_write", "out");
    if (!outputs)
        return tg_null_arg("tg_dot_write", "outputs");
    tg_dot_opts defaults = TG_DOT_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    tg_graph *g = NULL;
    tg_status rc = tg_graph_build(&g, outputs, n_outputs);
    if (rc != TG_OK)
        return rc;

    fputs("digraph \"", out);
    put_escaped(out, opts->graph_name ? opts->graph_name : "libtensor");
    fputs("\" {\n", out);
    fprintf(out, "  rankdir=%s;\n", opts->rankdir_lr ? "LR" : "TB");
    fputs("  node [fontname=\"Helvetica\", fontsize=10];\n", out);
    fputs("  edge [fontname=\"Helvetica\", fontsize=9];\n\n", out);
    size_t n = tg_graph_size(g);
    for (size_t k = 0; k < n; k++) {
        const tg_graph_item *it = tg_graph_item_at(g, k);
        if (it->kind == TG_GRAPH_TENSOR)
            write_tensor(out, it);
        else
            write_op(out, it);
    }
    fputs("\n", out);
    for (size_t k = 0; k < n; k++) {
        const tg_graph_item *it = tg_graph_item_at(g, k);
        if (it->kind != TG_GRAPH_OP)
            continue;
        for (int i = 0; i < it->n_inputs; i++)
            fprintf(out, "  t%d -> op%d;\n", it->input_ids[i], it->id);
        fprintf(out, "  op%d -> t%d;\n", it->id, it->output_id);
    }
    if (opts->backward)
        write_backward(out, g);
    fputs("}\n", out);
    tg_graph_free(g);
    /* flush first: a full disk shows only when the buffered text is written */
    if (fflush(out) != 0 || ferror(out))
        return tg_error(TG_ERR_IO, "tg_dot_write: writing the DOT text failed");
    return TG_OK;
}
