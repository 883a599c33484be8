/* apps/graph_export.c -- prints the dataflow graph of a built-in model as Graphviz
 * DOT:  graph-export --model fashion_cnn --backward | dot -Tsvg > cnn.svg
 * Runs one forward pass (dropout in training mode, so it shows) on an example
 * batch up to the cross-entropy loss, and writes the graph reachable from it. */
#include <stdio.h>
#include <string.h>

#include "libtensor.h"
#include "apps/models.h"

static void usage(FILE *out)
{
    fputs("usage: graph-export [--model mlp|fashion_cnn|resnet] [--backward] [--lr] [--help]\n"
          "  Prints the graph of one training step of a built-in model as Graphviz DOT.\n"
          "  --model NAME  the model: mlp (default), fashion_cnn, or resnet (a graph model of\n"
          "                layers with BatchNorm and a residual Add)\n"
          "  --backward    also draw the gradient flow (dashed red)\n"
          "  --lr          lay the graph out left to right\n"
          "  --help        print this help\n"
          "Example: graph-export --model fashion_cnn | dot -Tsvg > graph.svg\n",
          out);
}

static bool known_model(const char *name)
{
    for (int i = 0; app_model_names[i]; i++)
        if (strcmp(name, app_model_names[i]) == 0)
            return true;
    return false;
}

/* The forward pass and the DOT text; the caller owns the model. */
static int export_graph(const app_model *m, const tg_dot_opts *opts)
{
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_scope *s = tg_scope_push();
    tg_tensor *x = NULL, *labels = NULL;
    tg_tensor *loss = NULL;
    if (app_model_example_batch(m, &x, &labels) == TG_OK &&
        tg_tensor_set_name(x, "input") == TG_OK && tg_tensor_set_name(labels, "labels") == TG_OK)
        loss = app_model_loss(m, x, labels, true, &rng);
    if (loss)
        tg_tensor_set_name(loss, "loss");
    tg_status rc = loss ? tg_dot_write(stdout, &loss, 1, opts) : tg_last_status();
    if (rc == TG_OK && fflush(stdout) != 0)
        rc = TG_ERR_IO;
    if (rc != TG_OK)
        fprintf(stderr, "graph-export: %s: %s\n", m->name,
                rc == TG_ERR_IO && loss ? "cannot write to standard output"
                                        : tg_last_error());
    tg_scope_pop(s);
    return rc == TG_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *model = "mlp";
    tg_dot_opts opts = TG_DOT_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--backward") == 0) {
            opts.backward = true;
        } else if (strcmp(argv[i], "--lr") == 0) {
            opts.rankdir_lr = true;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strncmp(argv[i], "--model=", 8) == 0) {
            model = argv[i] + 8;
        } else {
            fprintf(stderr, "graph-export: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!known_model(model)) {
        fprintf(stderr, "graph-export: unknown model '%s' (mlp or fashion_cnn)\n", model);
        usage(stderr);
        return 2;
    }
    opts.graph_name = model;

    app_model m;
    if (app_model_init(&m, model, 1) != TG_OK) {
        fprintf(stderr, "graph-export: cannot create model %s: %s\n", model, tg_last_error());
        return 1;
    }
    int status = export_graph(&m, &opts);
    app_model_free(&m);
    return status;
}
