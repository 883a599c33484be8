/* io/dataset.h -- Fashion-MNIST loading and the shuffling batch iterator.
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

/* ---- batches ---- */

typedef struct tg_batch_iter tg_batch_iter;

typedef struct tg_batch_opts {
    int64_t batch_size; /* > 0; default 32 (as Keras) */
    bool shuffle;       /* draw a new order at each epoch start (default true) */
    bool drop_last;     /* skip the last batch when it is smaller (default false) */
    int64_t limit;      /* > 0: use only the first `limit` examples; 0: all */
    /* Input conversion, off by default. With input_scale != 0 the input batches
     * have dtype input_dtype (TG_F32 or TG_F64) whatever the inputs' dtype, each
     * element being value * input_scale, the product taken in double and
     * rounded once to input_dtype, done while the batch is gathered. So the
     * dataset can stay compact: u8 images with input_scale 1.0 / 255 give f32
     * batches bit for bit equal to the images tg_fashion_mnist_load returns as
     * f32 ((float)pixel / 255.0f), for a quarter of the memory (f64 batches may
     * differ from its f64 images, pixel / 255.0, in the last bit). The targets
     * are never converted. input_scale 0 (the default) copies the inputs as
     * they are, and input_dtype must then keep its default TG_F32 (0). */
    tg_dtype input_dtype; /* TG_F32 (default) or TG_F64 */
    double input_scale;   /* finite; 0 (default): no conversion */
} tg_batch_opts;
#define TG_BATCH_OPTS_INIT { 32, true, false, 0, TG_F32, 0.0 }

/* An iterator over (inputs, targets) in batches along dim 0. inputs and targets
 * (any dtype and shape, same dim-0 extent N >= 1) are retained by the iterator
 * (a non-contiguous one is copied once).
 * rng is borrowed and must outlive the iterator; NULL means the global
 * generator. It is used only at the start of each epoch, to draw that epoch's
 * order with a Fisher-Yates shuffle, so restoring the rng state that preceded an
 * epoch (a checkpoint) reproduces its order exactly. Every buffer is allocated
 * here: iterating allocates nothing. opts may be NULL (defaults). Errors
 * (returning NULL): TG_ERR_SHAPE for mismatched examples, TG_ERR_ARG for a batch
 * size < 1, a negative limit, a non-finite input_scale, or an input_dtype other
 * than TG_F32 with input_scale 0; TG_ERR_DTYPE for a conversion to a dtype that
 * is not f32 or f64. Returns a new iterator (free with tg_batch_iter_free). */
tg_batch_iter *tg_batch_iter_new(tg_tensor *inputs, tg_tensor *targets,
                                 const tg_batch_opts *opts, tg_rng *rng);
void tg_batch_iter_free(tg_batch_iter *it);

/* Starts an epoch: draws the order from the rng (identity without shuffle) and
 * rewinds. tg_batch_iter_next() calls it itself when no epoch is in progress. */
tg_status tg_batch_iter_start_epoch(tg_batch_iter *it);

/* Fills the next batch and sets *x and *y to it: BORROWED tensors owned by the
 * iterator, contiguous, shaped like the inputs/targets with dim 0 = the batch
 * size, or smaller for the last batch (a view of the same buffer); x has the
 * inputs' dtype, or input_dtype when converting (tg_batch_opts). They are
 * overwritten by the next call; retain or copy them to keep the values. Returns
 * false (and NULLs) at the end of the epoch; the call after that starts a new
 * epoch. Also false on a NULL argument (with the last error set). */
bool tg_batch_iter_next(tg_batch_iter *it, tg_tensor **x, tg_tensor **y);

/* Examples used (N, or limit when smaller) and batches per epoch. */
int64_t tg_batch_iter_count(const tg_batch_iter *it);
int64_t tg_batch_iter_num_batches(const tg_batch_iter *it);
/* Batches already returned in the current epoch (0 when none is in progress). */
int64_t tg_batch_iter_position(const tg_batch_iter *it);
/* The current epoch's order: count() example indices (borrowed; valid until the
 * next epoch starts), or NULL when no epoch is in progress. */
const int64_t *tg_batch_iter_order(const tg_batch_iter *it);
/* Resumes mid-epoch: installs order (count() indices, a permutation of
 * 0..count()-1; copied) and skips the first `position` batches. The rng is not
 * touched. */
tg_status tg_batch_iter_resume(tg_batch_iter *it, const int64_t *order, int64_t position);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
