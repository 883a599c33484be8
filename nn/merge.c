/* nn/merge.c -- merge layers, applied to n >= 2 nodes of a graph model:
 * Add (x0 + x1 + ...), Multiply (x0 * x1 * ...), Average ((x0 + ... ) / n) on
 * inputs of one shape, and Concatenate, which joins them along an axis (the
 * batch is axis 0, as in Keras; every other extent must agree). Gradients come
 * from the ops they use (tg_add, tg_mul, tg_mul_scalar, tg_concat). */
#include <string.h>

#include "nn/nn_impl.h"

typedef enum merge_kind { MERGE_ADD, MERGE_MULTIPLY, MERGE_AVERAGE, MERGE_CONCATENATE } merge_kind;

typedef struct merge_layer {
    merge_kind kind;
    int axis;     /* Concatenate: as given (batch = 0; negative from the end) */
    int resolved; /* Concatenate: the axis of the batch-less shape, set at build */
} merge_layer;

static tg_status shape_error(tg_layer *l, int n, const int *in_ndim,
                             const int64_t *const *in_shape, const char *why)
{
    char who[256], list[512] = "", one[128];
    size_t o = 0;
    for (int k = 0; k < n && o < sizeof list; k++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k ? ", " : "",
                              tg_nn_batch_shape_str(one, sizeof one, in_ndim[k], in_shape[k]));
    return tg_error_here(TG_ERR_SHAPE, "layer %s %s; got %s", tg_layer_who(l, who, sizeof who),
                         why, list);
}

static tg_status merge_build(tg_layer *l, int n, const int *in_ndim,
                             const int64_t *const *in_shape, int *out_ndim, int64_t *out_shape)
{
    merge_layer *m = tg_layer_data(l);
    int nd = in_ndim[0];
    if (m->kind != MERGE_CONCATENATE) {
        for (int k = 1; k < n; k++) {
            bool same = in_ndim[k] == nd;
            for (int i = 0; same && i < nd; i++)
                same = in_shape[k][i] == in_shape[0][i];
            if (!same)
                return shape_error(l, n, in_ndim, in_shape, "needs inputs of one shape");
        }
        return TG_OK; /* the output is the first input's shape, already set */
    }
    /* Concatenate: axis counts the batch, so the batch-less axis is one less. */
    int axis = m->axis < 0 ? m->axis + nd + 1 : m->axis;
    if (axis < 1 || axis > nd) {
        char who[256];
        return tg_error_here(TG_ERR_SHAPE, "layer %s: axis %d is out of range for inputs of %d "
                             "dims with the batch (1..%d, or negative from the end; the batch "
                             "axis 0 cannot be joined)", tg_layer_who(l, who, sizeof who),
                             m->axis, nd + 1, nd);
    }
    int a = axis - 1;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        bool same = in_ndim[k] == nd;
        for (int i = 0; same && i < nd; i++)
            same = i == a || in_shape[k][i] == in_shape[0][i];
        if (!same)
            return shape_error(l, n, in_ndim, in_shape,
                               "needs inputs that agree on every axis but the joined one");
        total += in_shape[k][a];
    }
    m->resolved = a;
    *out_ndim = nd;
    out_shape[a] = total;
    return TG_OK;
}

static tg_tensor *merge_forward(tg_layer *l, int n, tg_tensor *const *xs,
                                const tg_layer_ctx *ctx)
{
    (void)ctx;
    const merge_layer *m = tg_layer_data(l);
    if (m->kind == MERGE_CONCATENATE)
        return tg_concat(xs, n, m->resolved + 1);
    tg_tensor *y = xs[0];
    for (int k = 1; k < n && y; k++)
        y = m->kind == MERGE_MULTIPLY ? tg_mul(y, xs[k]) : tg_add(y, xs[k]);
    if (y && m->kind == MERGE_AVERAGE)
        y = tg_mul_scalar(y, 1.0 / n);
    return y;
}

static void merge_config(const tg_layer *l, tg_layer_config *cfg)
{
    const merge_layer *m = tg_layer_data(l);
    if (m->kind == MERGE_CONCATENATE)
        tg_layer_config_int(cfg, "axis", m->axis);
}

static const tg_layer_vtable merge_vtables[] = {
    [MERGE_ADD] = { .class_name = "Add", .base_name = "add", .data_size = sizeof(merge_layer),
                    .build_n = merge_build, .forward_n = merge_forward,
                    .config = merge_config },
    [MERGE_MULTIPLY] = { .class_name = "Multiply", .base_name = "multiply",
                         .data_size = sizeof(merge_layer), .build_n = merge_build,
                         .forward_n = merge_forward, .config = merge_config },
    [MERGE_AVERAGE] = { .class_name = "Average", .base_name = "average",
                        .data_size = sizeof(merge_layer), .build_n = merge_build,
                        .forward_n = merge_forward, .config = merge_config },
    [MERGE_CONCATENATE] = { .class_name = "Concatenate", .base_name = "concatenate",
                            .data_size = sizeof(merge_layer), .build_n = merge_build,
                            .forward_n = merge_forward, .config = merge_config },
};

static tg_layer *merge_new(const char *fn, merge_kind kind, int axis, const char *name)
{
    const char *prev = tg_error_enter(fn);
    tg_layer *l = tg_layer_alloc(&merge_vtables[kind], TG_ACT_NONE, name);
    tg_error_leave(prev);
    if (l) {
        merge_layer *m = tg_layer_data(l);
        m->kind = kind;
        m->axis = axis;
    }
    return l;
}

tg_layer *tg_layer_new_add(const char *name)
{
    return merge_new("tg_layer_new_add", MERGE_ADD, 0, name);
}

tg_layer *tg_layer_new_multiply(const char *name)
{
    return merge_new("tg_layer_new_multiply", MERGE_MULTIPLY, 0, name);
}

tg_layer *tg_layer_new_average(const char *name)
{
    return merge_new("tg_layer_new_average", MERGE_AVERAGE, 0, name);
}

tg_layer *tg_layer_new_concatenate(int axis, const char *name)
{
    if (axis == 0)
        return tg_error(TG_ERR_ARG, "tg_layer_new_concatenate: axis 0 is the batch; join "
                        "along 1 (channels or features) or another axis"), NULL;
    if (axis > TG_MAX_DIMS - 1 || axis < -(TG_MAX_DIMS - 1))
        return tg_error(TG_ERR_ARG, "tg_layer_new_concatenate: axis %d is out of range "
                        "(tensors have at most %d dims)", axis, TG_MAX_DIMS), NULL;
    return merge_new("tg_layer_new_concatenate", MERGE_CONCATENATE, axis, name);
}
