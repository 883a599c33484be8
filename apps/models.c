/* apps/models.c -- the built-in example models: an MLP (784 -> 64 relu -> 10) and
 * the Fashion-MNIST CNN of the Keras tutorial (conv 32 3x3 relu, max-pool 2x2,
 * dropout 0.25, flatten, dense 128 relu, dense 10), as plain calls to the ops;
 * and a small residual network as a graph model of layers (conv-BN-ReLU, one
 * block conv-BN-ReLU-conv-BN + Add + ReLU, global average pooling, dense 10). */
#include <string.h>

#include "apps/models.h"

const char *const app_model_names[] = {"mlp", "fashion_cnn", "resnet", NULL};

typedef struct param_spec {
    const char *name;
    int ndim;
    int64_t shape[4];
    bool kernel; /* glorot-uniform; biases start at zero */
} param_spec;

static const param_spec mlp_params[] = {
    {"dense/kernel", 2, {64, 784}, true},
    {"dense/bias", 1, {64}, false},
    {"dense_1/kernel", 2, {10, 64}, true},
    {"dense_1/bias", 1, {10}, false},
};

/* 28x28 -> conv 3x3 -> 26x26 -> pool 2x2 -> 13x13, 32 channels: 5408 features */
static const param_spec cnn_params[] = {
    {"conv2d/kernel", 4, {32, 1, 3, 3}, true},
    {"conv2d/bias", 1, {32}, false},
    {"dense/kernel", 2, {128, 32 * 13 * 13}, true},
    {"dense/bias", 1, {128}, false},
    {"dense_1/kernel", 2, {10, 128}, true},
    {"dense_1/bias", 1, {10}, false},
};

void app_model_free(app_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_params; i++)
        tg_release(m->params[i]);
    tg_model_free(m->net);
    memset(m, 0, sizeof *m);
}

/* The residual network: 8 channels, so its graph stays readable. */
static tg_status resnet_init(app_model *m, tg_rng *rng)
{
    tg_model *g = tg_model_new("resnet");
    if (!g)
        return tg_last_status();
    m->net = g;
    tg_status st = tg_sequential_set_rng(g, rng); /* the weights' generator, for build */
    tg_conv2d_layer_opts same = TG_CONV2D_LAYER_OPTS_INIT;
    same.padding = TG_PADDING_SAME;
    tg_node *x = tg_model_input(g, "image", TG_SHAPE(1, 28, 28));
    tg_node *h = tg_model_apply(g, tg_layer_new_conv2d(8, 3, 3, TG_ACT_NONE, &same), x);
    h = tg_model_apply(g, tg_layer_new_batch_norm(NULL), h);
    tg_node *skip = tg_model_apply(g, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(g, tg_layer_new_conv2d(8, 3, 3, TG_ACT_NONE, &same), skip);
    h = tg_model_apply(g, tg_layer_new_batch_norm(NULL), h);
    h = tg_model_apply(g, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(g, tg_layer_new_conv2d(8, 3, 3, TG_ACT_NONE, &same), h);
    h = tg_model_apply(g, tg_layer_new_batch_norm(NULL), h);
    h = tg_model_apply_n(g, tg_layer_new_add(NULL), 2, (tg_node *[]){ h, skip });
    h = tg_model_apply(g, tg_layer_new_activation(TG_ACT_RELU), h);
    h = tg_model_apply(g, tg_layer_new_global_avg_pool2d(false), h);
    h = tg_model_apply(g, tg_layer_new_dense(10, TG_ACT_SOFTMAX, NULL), h);
    if (st == TG_OK)
        st = tg_model_set_outputs(g, 1, &h);
    if (st == TG_OK)
        st = tg_model_build(g); /* draws the weights now, while rng lives */
    if (st == TG_OK)
        st = tg_sequential_set_rng(g, NULL);
    return st;
}

tg_status app_model_init(app_model *m, const char *name, uint64_t seed)
{
    const param_spec *spec;
    int n;
    memset(m, 0, sizeof *m);
    if (name && strcmp(name, "mlp") == 0) {
        m->name = "mlp";
        spec = mlp_params;
        n = (int)(sizeof mlp_params / sizeof mlp_params[0]);
    } else if (name && strcmp(name, "fashion_cnn") == 0) {
        m->name = "fashion_cnn";
        spec = cnn_params;
        n = (int)(sizeof cnn_params / sizeof cnn_params[0]);
    } else if (name && strcmp(name, "resnet") == 0) {
        m->name = "resnet";
        tg_rng rng;
        tg_rng_seed(&rng, seed);
        tg_status rc = resnet_init(m, &rng);
        if (rc != TG_OK)
            app_model_free(m);
        return rc;
    } else {
        return TG_ERR_ARG;
    }
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_scope *s = tg_scope_push();
    tg_status rc = TG_OK;
    for (int i = 0; i < n && rc == TG_OK; i++) {
        tg_tensor *p = spec[i].kernel
                           ? tg_glorot_uniform(TG_F32, spec[i].ndim, spec[i].shape, &rng)
                           : tg_zeros(TG_F32, spec[i].ndim, spec[i].shape);
        if (!p) {
            rc = tg_last_status();
            break;
        }
        m->params[m->n_params++] = tg_scope_keep(p); /* outlives the scope */
        rc = tg_tensor_set_name(p, spec[i].name);
        if (rc == TG_OK)
            rc = tg_set_requires_grad(p, true);
    }
    tg_scope_pop(s);
    if (rc != TG_OK)
        app_model_free(m);
    return rc;
}

tg_status app_model_example_batch(const app_model *m, tg_tensor **x, tg_tensor **labels)
{
    static const int64_t mlp_labels[4] = {3, 1, 4, 1};
    static const int64_t cnn_labels[1] = {9};
    tg_rng rng;
    tg_rng_seed(&rng, 20220101u);
    bool cnn = strcmp(m->name, "mlp") != 0;
    *x = cnn ? tg_rand_uniform(TG_F32, TG_SHAPE(1, 1, 28, 28), 0.0, 1.0, &rng)
             : tg_rand_uniform(TG_F32, TG_SHAPE(4, 784), 0.0, 1.0, &rng);
    *labels = cnn ? tg_from_data(TG_I64, TG_SHAPE(1), cnn_labels)
                  : tg_from_data(TG_I64, TG_SHAPE(4), mlp_labels);
    return *x && *labels ? TG_OK : tg_last_status();
}

tg_tensor *app_model_forward(const app_model *m, tg_tensor *x, bool training, tg_rng *rng)
{
    if (m->net) {
        tg_model_set_training(m->net, training);
        return tg_model_forward_logits(m->net, x);
    }
    tg_tensor *const *p = m->params;
    if (strcmp(m->name, "mlp") == 0) {
        tg_tensor *h = tg_relu(tg_dense(x, p[0], p[1]));
        return tg_dense(h, p[2], p[3]);
    }
    tg_conv2d_opts conv = TG_CONV2D_OPTS_INIT;
    tg_pool2d_opts pool = TG_POOL2D_OPTS_INIT;
    tg_tensor *h = tg_relu(tg_conv2d(x, p[0], p[1], &conv));
    h = tg_dropout(tg_max_pool2d(h, &pool), 0.25, training, rng);
    h = tg_relu(tg_dense(tg_flatten(h, 1, -1), p[2], p[3]));
    return tg_dense(h, p[4], p[5]);
}

tg_tensor *app_model_loss(const app_model *m, tg_tensor *x, tg_tensor *labels, bool training,
                          tg_rng *rng)
{
    return tg_cross_entropy(app_model_forward(m, x, training, rng), labels);
}
