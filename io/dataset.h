/* io/dataset.h -- Fashion-MNIST loading (the batch iterator is in nn/batch.h).
 *
 * The data directory defaults to where Debian's dataset-fashion-mnist package
 * installs the four IDX files; the environment variable TG_FASHION_MNIST_DIR
 * overrides it, and an explicit directory (an app's --data flag) overrides both. */
#ifndef TG_DATASET_H
#define TG_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/rng.h"
#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* ---- Fashion-MNIST ---- */

#define TG_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define TG_FASHION_MNIST_ENV "TG_FASHION_MNIST_DIR"
#define TG_FASHION_MNIST_CLASSES 10
#define TG_FASHION_MNIST_SIZE 28 /* images are 28 x 28 */

typedef enum tg_split { TG_SPLIT_TRAIN = 0, TG_SPLIT_TEST } tg_split;

typedef struct tg_fashion_mnist_opts {
    tg_dtype image_dtype; /* TG_F32 (default): pixel / 255 in [0, 1]; or TG_U8 raw */
    tg_dtype label_dtype; /* TG_I64 (default), TG_I32 or TG_U8 */
    int64_t limit;        /* > 0: keep only the first `limit` examples; 0: all */
} tg_fashion_mnist_opts;
#define TG_FASHION_MNIST_OPTS_INIT { TG_F32, TG_I64, 0 }

/* A loaded split. images and labels are owned by the struct (one reference
 * each); tg_dataset_clear() releases them. */
typedef struct tg_dataset {
    tg_tensor *images; /* (N, 1, 28, 28) */
    tg_tensor *labels; /* (N), values 0..9 */
    int64_t count;     /* N */
} tg_dataset;

/* The directory the loader would use for dir: dir itself when non-NULL and
 * non-empty, else $TG_FASHION_MNIST_DIR when set and non-empty, else
 * TG_FASHION_MNIST_DEFAULT_DIR. Borrowed (dir, the environment or a constant). */
const char *tg_fashion_mnist_dir(const char *dir);

/* Loads one split from the directory chosen by tg_fashion_mnist_dir(dir): for
 * the train split train-images-idx3-ubyte and train-labels-idx1-ubyte, for the
 * test split t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each with or
 * without ".gz" (the .gz name is tried first). Checks that the images are
 * N x 28 x 28 u8, the labels N u8 in 0..9, and that both counts agree. opts may
 * be NULL (defaults). On success fills *out (new references, see tg_dataset);
 * on error *out is zeroed and the message names the file and the problem; a
 * missing directory names the Debian package to install. The files are read by
 * tg_idx_read (io/idx.h): a FIFO or device in their place is refused at once
 * with TG_ERR_IO, a damaged gzip file with TG_ERR_FORMAT. */
tg_status tg_fashion_mnist_load(tg_dataset *out, const char *dir, tg_split split,
                                const tg_fashion_mnist_opts *opts);

/* Releases the tensors of ds and zeroes it; NULL and a zeroed ds are fine. */
void tg_dataset_clear(tg_dataset *ds);

/* "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
 * "Sneaker", "Bag", "Ankle boot"; "?" outside 0..9. A constant string. */
const char *tg_fashion_mnist_class_name(int64_t label);

/* The batch iterator (tg_batch_iter, tg_batch_opts) that was declared here is
 * in nn/batch.h (included by nn/nn.h and the umbrella libtensor.h): nn's fit
 * runs on it, and nn/ does not include io/. */

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
