/* apps/models.h -- the built-in example models of the apps (graph-export, and the
 * CNN app later): their parameters, an example batch and the forward pass, built
 * from the public ops only. */
#ifndef TG_APPS_MODELS_H
#define TG_APPS_MODELS_H

#include <stdbool.h>
#include <stdint.h>

#include "libtensor.h"

enum { APP_MODEL_MAX_PARAMS = 8 };

typedef struct app_model {
    const char *name; /* "mlp", "fashion_cnn" or "resnet" (static string) */
    /* "resnet" is a graph model of layers (nn/model.h), owned; the others are
     * raw parameters and ops. */
    tg_model *net;
    int n_params;
    /* New references owned by the model, named as Keras names them
     * ("conv2d/kernel", "dense/bias" ...), f32, requiring grad. */
    tg_tensor *params[APP_MODEL_MAX_PARAMS];
} app_model;

/* The names app_model_init accepts, NULL-terminated (static). */
extern const char *const app_model_names[];

/* Creates the parameters of the named model (glorot-uniform kernels, zero biases)
 * from a generator seeded with seed. TG_ERR_ARG for an unknown name (the last
 * error is then not touched: say it yourself). On failure nothing is left to free. */
tg_status app_model_init(app_model *m, const char *name, uint64_t seed);
/* Releases the parameters; m may be zero-initialised or already freed. */
void app_model_free(app_model *m);

/* A deterministic example batch (scoped references): inputs x (mlp: [4, 784],
 * fashion_cnn and resnet: [1, 1, 28, 28]) and i64 labels of the batch size. */
tg_status app_model_example_batch(const app_model *m, tg_tensor **x, tg_tensor **labels);

/* Logits for x (scoped reference, NULL on error). training turns dropout on, its
 * mask drawn from rng (NULL: the global generator). */
tg_tensor *app_model_forward(const app_model *m, tg_tensor *x, bool training, tg_rng *rng);

/* Cross-entropy of the logits against labels (scoped reference, NULL on error). */
tg_tensor *app_model_loss(const app_model *m, tg_tensor *x, tg_tensor *labels, bool training,
                          tg_rng *rng);

#endif
