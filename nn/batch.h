/* nn/batch.h -- the shuffling batch iterator: examples along dim 0 of one or
 * more input tensors and zero or more target tensors, in batches.
 *
 * Here in nn/ (it was in io/dataset.h) because tg_fit runs on it and nn/ may
 * not include io/; the names and the behaviour are unchanged. It knows nothing
 * of files: the data is any tensors. Included by nn/nn.h. */
#ifndef TG_NN_BATCH_H
#define TG_NN_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/rng.h"
#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_batch_iter tg_batch_iter;

/* The most inputs, and the most targets, one iterator takes. */
#define TG_BATCH_MAX_TENSORS 64

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
     * are never converted; with several inputs, every input is. input_scale 0
     * (the default) copies the inputs as they are, and input_dtype must then
     * keep its default TG_F32 (0). */
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
/* The same over n_in >= 1 inputs and n_targets >= 0 targets (each at most
 * TG_BATCH_MAX_TENSORS; borrowed arrays of borrowed tensors, retained as
 * above), all with the same dim-0 extent: one order, the same rows of each.
 * n_targets 0 iterates inputs alone (prediction). tg_batch_iter_new(x, y, ...)
 * is tg_batch_iter_new_n(1, &x, 1, &y, ...): the same order from the same rng.
 * The errors name the tensor ("inputs[1]", "targets[0]"). */
tg_batch_iter *tg_batch_iter_new_n(int n_in, tg_tensor *const *inputs, int n_targets,
                                   tg_tensor *const *targets, const tg_batch_opts *opts,
                                   tg_rng *rng);
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
 * epoch. Also false on a NULL argument (with the last error set), and on an
 * iterator that does not have exactly one input and one target (TG_ERR_ARG:
 * use tg_batch_iter_next_n). */
bool tg_batch_iter_next(tg_batch_iter *it, tg_tensor **x, tg_tensor **y);
/* The same for any iterator: xs[0..n_in-1] and ys[0..n_targets-1] (arrays the
 * caller provides; ys may be NULL when there are no targets) get the batch's
 * tensors, borrowed as above, or NULLs at the end of the epoch. */
bool tg_batch_iter_next_n(tg_batch_iter *it, tg_tensor **xs, tg_tensor **ys);

/* The counts of inputs and targets the iterator was made with (0 for NULL). */
int tg_batch_iter_num_inputs(const tg_batch_iter *it);
int tg_batch_iter_num_targets(const tg_batch_iter *it);
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
