/* io/dataset.c -- Fashion-MNIST from its four IDX files, and the batch iterator.
 *
 * The loader validates what the IDX reader cannot know (28x28 images, labels in
 * 0..9, equal counts). The iterator allocates everything up front so a training
 * loop allocates nothing per batch, takes each epoch's order from an rng that a
 * checkpoint can save and restore, and can convert compact (u8) inputs to float
 * batches as it gathers them, so the dataset need not be held as floats. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dataset.h"
#include "io/idx.h"
#include "libtensor/tensor_impl.h"

static const char *const class_names[TG_FASHION_MNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

const char *tg_fashion_mnist_class_name(int64_t label)
{
    return label >= 0 && label < TG_FASHION_MNIST_CLASSES ? class_names[label] : "?";
}

const char *tg_fashion_mnist_dir(const char *dir)
{
    if (dir && *dir)
        return dir;
    const char *env = getenv(TG_FASHION_MNIST_ENV);
    if (env && *env)
        return env;
    return TG_FASHION_MNIST_DEFAULT_DIR;
}

void tg_dataset_clear(tg_dataset *ds)
{
    if (!ds)
        return;
    tg_release(ds->images);
    tg_release(ds->labels);
    ds->images = ds->labels = NULL;
    ds->count = 0;
}

/* Sets path to dir/base.gz or dir/base, whichever exists (the .gz first). */
static tg_status find_file(char *path, size_t n, const char *dir, const char *base)
{
    struct stat st;
    snprintf(path, n, "%s/%s.gz", dir, base);
    if (stat(path, &st) == 0)
        return TG_OK;
    snprintf(path, n, "%s/%s", dir, base);
    if (stat(path, &st) == 0)
        return TG_OK;
    return tg_error(TG_ERR_IO,
                    "%s/%s.gz: not found (nor %s/%s); the directory must hold the four "
                    "Fashion-MNIST IDX files, as Debian's dataset-fashion-mnist package "
                    "installs them",
                    dir, base, dir, base);
}

static char *shape_text(char *buf, size_t n, const tg_tensor *t)
{
    return tg_shape_str(buf, n, tg_tensor_ndim(t), tg_tensor_shape(t));
}

tg_status tg_fashion_mnist_load(tg_dataset *out, const char *dir, tg_split split,
                                const tg_fashion_mnist_opts *opts)
{
    if (!out)
        return tg_null_arg("tg_fashion_mnist_load", "out");
    memset(out, 0, sizeof *out);
    tg_fashion_mnist_opts o = TG_FASHION_MNIST_OPTS_INIT;
    if (opts)
        o = *opts;
    if (split != TG_SPLIT_TRAIN && split != TG_SPLIT_TEST)
        return tg_error(TG_ERR_ARG, "tg_fashion_mnist_load: split must be TG_SPLIT_TRAIN or "
                        "TG_SPLIT_TEST, got %d", (int)split);
    if (!tg_dtype_is_float(o.image_dtype) && o.image_dtype != TG_U8)
        return tg_error(TG_ERR_DTYPE, "tg_fashion_mnist_load: image dtype must be f32, f64 "
                        "or u8, got %s", tg_dtype_name(o.image_dtype));
    if (o.label_dtype != TG_I64 && o.label_dtype != TG_I32 && o.label_dtype != TG_U8)
        return tg_error(TG_ERR_DTYPE, "tg_fashion_mnist_load: label dtype must be i64, i32 "
                        "or u8, got %s", tg_dtype_name(o.label_dtype));
    if (o.limit < 0)
        return tg_error(TG_ERR_ARG, "tg_fashion_mnist_load: limit must be >= 0, got %" PRId64,
                        o.limit);

    const char *d = tg_fashion_mnist_dir(dir);
    const char *env = getenv(TG_FASHION_MNIST_ENV);
    const char *origin = dir && *dir ? "given"
                         : env && *env ? "from " TG_FASHION_MNIST_ENV
                                       : "the default";
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        return tg_error(TG_ERR_IO,
                        "Fashion-MNIST directory %s (%s) not found; install Debian's "
                        "dataset-fashion-mnist package (apt-get install "
                        "dataset-fashion-mnist), or pass --data DIR / set "
                        TG_FASHION_MNIST_ENV,
                        d, origin);

    const char *prefix = split == TG_SPLIT_TRAIN ? "train" : "t10k";
    char img_base[64], lbl_base[64], img_path[4096], lbl_path[4096];
    snprintf(img_base, sizeof img_base, "%s-images-idx3-ubyte", prefix);
    snprintf(lbl_base, sizeof lbl_base, "%s-labels-idx1-ubyte", prefix);
    tg_status s;
    if ((s = find_file(img_path, sizeof img_path, d, img_base)) != TG_OK ||
        (s = find_file(lbl_path, sizeof lbl_path, d, lbl_base)) != TG_OK)
        return s;

    tg_tensor *raw_img = NULL, *raw_lbl = NULL, *images = NULL, *labels = NULL;
    char sh[96];
    if ((s = tg_idx_read(&raw_img, img_path)) != TG_OK)
        goto fail;
    if (tg_tensor_dtype(raw_img) != TG_U8 || tg_tensor_ndim(raw_img) != 3 ||
        tg_tensor_dim(raw_img, 1) != TG_FASHION_MNIST_SIZE ||
        tg_tensor_dim(raw_img, 2) != TG_FASHION_MNIST_SIZE) {
        s = tg_error(TG_ERR_FORMAT, "%s: holds %s %s, expected unsigned bytes shaped "
                     "N x 28 x 28", img_path, tg_dtype_name(tg_tensor_dtype(raw_img)),
                     shape_text(sh, sizeof sh, raw_img));
        goto fail;
    }
    if ((s = tg_idx_read(&raw_lbl, lbl_path)) != TG_OK)
        goto fail;
    if (tg_tensor_dtype(raw_lbl) != TG_U8 || tg_tensor_ndim(raw_lbl) != 1) {
        s = tg_error(TG_ERR_FORMAT, "%s: holds %s %s, expected N unsigned bytes", lbl_path,
                     tg_dtype_name(tg_tensor_dtype(raw_lbl)), shape_text(sh, sizeof sh, raw_lbl));
        goto fail;
    }
    int64_t n_img = tg_tensor_dim(raw_img, 0), n_lbl = tg_tensor_dim(raw_lbl, 0);
    if (n_img != n_lbl) {
        s = tg_error(TG_ERR_FORMAT, "%s: images have %" PRId64 " entries but labels %" PRId64
                     " (%s)", img_path, n_img, n_lbl, lbl_path);
        goto fail;
    }
    const uint8_t *lab = tg_tensor_data(raw_lbl);
    for (int64_t i = 0; i < n_lbl; i++) {
        if (lab[i] >= TG_FASHION_MNIST_CLASSES) {
            s = tg_error(TG_ERR_FORMAT, "%s: label %d at index %" PRId64 " is outside 0..%d",
                         lbl_path, lab[i], i, TG_FASHION_MNIST_CLASSES - 1);
            goto fail;
        }
    }

    int64_t n = o.limit > 0 && o.limit < n_img ? o.limit : n_img;
    int64_t px = (int64_t)TG_FASHION_MNIST_SIZE * TG_FASHION_MNIST_SIZE;
    images = tg_tensor_new_named("tg_fashion_mnist_load", o.image_dtype,
                                 TG_SHAPE(n, 1, TG_FASHION_MNIST_SIZE, TG_FASHION_MNIST_SIZE));
    labels = tg_tensor_new_named("tg_fashion_mnist_load", o.label_dtype, TG_SHAPE(n));
    if (!images || !labels) {
        s = tg_last_status();
        goto fail;
    }
    const uint8_t *pix = tg_tensor_data(raw_img);
    if (o.image_dtype == TG_U8) {
        memcpy(tg_tensor_data(images), pix, (size_t)(n * px));
    } else if (o.image_dtype == TG_F32) {
        float *dst = tg_tensor_data(images);
        for (int64_t i = 0; i < n * px; i++)
            dst[i] = (float)pix[i] / 255.0f;
    } else {
        double *dst = tg_tensor_data(images);
        for (int64_t i = 0; i < n * px; i++)
            dst[i] = pix[i] / 255.0;
    }
    tg_convert(tg_tensor_data(labels), o.label_dtype, lab, TG_U8, n);
    tg_release(raw_img);
    tg_release(raw_lbl);
    out->images = images;
    out->labels = labels;
    out->count = n;
    return TG_OK;

fail:
    tg_release(raw_img);
    tg_release(raw_lbl);
    tg_release(images);
    tg_release(labels);
    return s ? s : TG_ERR_NOMEM;
}

/* ---------------------------------------------------------------- batches */

struct tg_batch_iter {
    tg_tensor *inputs, *targets; /* contiguous; owned references */
    int64_t count;               /* examples used per epoch */
    int64_t batch;               /* rows of a full batch */
    int64_t nbatches;
    bool shuffle;
    tg_rng *rng; /* borrowed; NULL: the global generator */
    int64_t *order;
    bool in_epoch;
    int64_t pos; /* batches returned this epoch */
    size_t xrow, yrow; /* bytes per example in inputs / targets */
    tg_tensor *xbuf, *ybuf;   /* full batches */
    tg_tensor *xlast, *ylast; /* views of them for a smaller last batch, or NULL */
    /* input conversion (tg_batch_opts.input_scale != 0) */
    bool convert;
    tg_dtype xdtype;      /* the inputs' dtype; xbuf's is the target */
    int64_t xelems;       /* elements per example */
    double scale;
    float lut32[256];     /* u8 inputs: value * scale for every byte, ... */
    double lut64[256];    /* ... precomputed, as f32 and as f64 */
};

/* Converted gathers of at least this many elements are split over the OpenMP
 * threads; a batch of 32 images (25088 elements, ~12 us on one core) stays on
 * the calling thread. */
enum { PARALLEL_MIN_ELEMS = 1 << 15 };

/* A new reference to t itself when contiguous, else to a contiguous copy. */
static tg_tensor *owned_contiguous(tg_tensor *t)
{
    if (tg_tensor_is_contiguous(t))
        return tg_retain(t);
    tg_tensor *c = tg_tensor_new_named("tg_batch_iter_new", tg_tensor_dtype(t),
                                       tg_tensor_ndim(t), tg_tensor_shape(t));
    if (c && tg_tensor_copy_into(c, t) != TG_OK) {
        tg_release(c);
        return NULL;
    }
    return c;
}

/* A batch buffer shaped like t with dim 0 = rows, of dtype dt. New reference. */
static tg_tensor *batch_buffer(const tg_tensor *t, int64_t rows, tg_dtype dt)
{
    int64_t shape[TG_MAX_DIMS];
    int nd = tg_tensor_ndim(t);
    memcpy(shape, tg_tensor_shape(t), (size_t)nd * sizeof shape[0]);
    shape[0] = rows;
    return tg_tensor_new_named("tg_batch_iter_new", dt, nd, shape);
}

/* A view of buf's first rows rows. New reference. */
static tg_tensor *head_view(tg_tensor *buf, int64_t rows)
{
    int64_t shape[TG_MAX_DIMS];
    int nd = tg_tensor_ndim(buf);
    memcpy(shape, tg_tensor_shape(buf), (size_t)nd * sizeof shape[0]);
    shape[0] = rows;
    return tg_tensor_view_owned(buf, nd, shape, tg_tensor_strides(buf), tg_tensor_offset(buf));
}

tg_batch_iter *tg_batch_iter_new(tg_tensor *inputs, tg_tensor *targets,
                                 const tg_batch_opts *opts, tg_rng *rng)
{
    if (!inputs)
        return tg_null_arg("tg_batch_iter_new", "inputs"), NULL;
    if (!targets)
        return tg_null_arg("tg_batch_iter_new", "targets"), NULL;
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    if (opts)
        o = *opts;
    char a[96], b[96];
    if (tg_tensor_ndim(inputs) < 1 || tg_tensor_ndim(targets) < 1 ||
        tg_tensor_dim(inputs, 0) != tg_tensor_dim(targets, 0) || tg_tensor_dim(inputs, 0) < 1) {
        tg_error(TG_ERR_SHAPE, "tg_batch_iter_new: inputs %s and targets %s must have the same "
                 "number (>= 1) of examples along dim 0",
                 shape_text(a, sizeof a, inputs), shape_text(b, sizeof b, targets));
        return NULL;
    }
    if (o.batch_size < 1) {
        tg_error(TG_ERR_ARG, "tg_batch_iter_new: batch size must be >= 1, got %" PRId64,
                 o.batch_size);
        return NULL;
    }
    if (o.limit < 0) {
        tg_error(TG_ERR_ARG, "tg_batch_iter_new: limit must be >= 0, got %" PRId64, o.limit);
        return NULL;
    }
    bool convert = o.input_scale != 0; /* NaN too, refused next */
    if (convert && !isfinite(o.input_scale)) {
        tg_error(TG_ERR_ARG, "tg_batch_iter_new: input_scale must be finite, got %g",
                 o.input_scale);
        return NULL;
    }
    if (convert && !tg_dtype_is_float(o.input_dtype)) {
        tg_error(TG_ERR_DTYPE, "tg_batch_iter_new: input_dtype must be f32 or f64 to convert "
                 "the %s inputs into, got %s", tg_dtype_name(tg_tensor_dtype(inputs)),
                 tg_dtype_name(o.input_dtype));
        return NULL;
    }
    /* A caller who set a dtype but no scale most likely forgot the scale. */
    if (!convert && o.input_dtype != TG_F32) {
        tg_error(TG_ERR_ARG, "tg_batch_iter_new: input_dtype %s given with input_scale 0 (no "
                 "conversion); set input_scale (1 converts without scaling)",
                 tg_dtype_name(o.input_dtype));
        return NULL;
    }
    tg_batch_iter *it = calloc(1, sizeof *it);
    if (!it) {
        tg_error(TG_ERR_NOMEM, "tg_batch_iter_new: out of memory");
        return NULL;
    }
    int64_t n = tg_tensor_dim(inputs, 0);
    it->count = o.limit > 0 && o.limit < n ? o.limit : n;
    it->batch = o.batch_size < it->count ? o.batch_size : it->count;
    it->nbatches = o.drop_last ? it->count / o.batch_size
                               : (it->count + it->batch - 1) / it->batch;
    it->shuffle = o.shuffle;
    it->rng = rng;
    it->inputs = owned_contiguous(inputs);
    it->targets = owned_contiguous(targets);
    it->order = malloc((size_t)it->count * sizeof *it->order);
    if (!it->inputs || !it->targets || !it->order)
        goto fail;
    it->xrow = tg_tensor_nbytes(it->inputs) / (size_t)n;
    it->yrow = tg_tensor_nbytes(it->targets) / (size_t)n;
    it->convert = convert;
    it->xdtype = tg_tensor_dtype(it->inputs);
    it->xelems = tg_tensor_numel(it->inputs) / n;
    it->scale = o.input_scale;
    for (int v = 0; v < 256; v++) {
        it->lut32[v] = (float)(v * o.input_scale);
        it->lut64[v] = v * o.input_scale;
    }
    it->xbuf = batch_buffer(it->inputs, it->batch, convert ? o.input_dtype : it->xdtype);
    it->ybuf = batch_buffer(it->targets, it->batch, tg_tensor_dtype(it->targets));
    if (!it->xbuf || !it->ybuf)
        goto fail;
    int64_t rest = it->count % it->batch;
    if (rest && !o.drop_last) {
        it->xlast = head_view(it->xbuf, rest);
        it->ylast = head_view(it->ybuf, rest);
        if (!it->xlast || !it->ylast)
            goto fail;
    }
    return it;

fail:
    if (tg_last_status() == TG_OK)
        tg_error(TG_ERR_NOMEM, "tg_batch_iter_new: out of memory");
    tg_batch_iter_free(it);
    return NULL;
}

void tg_batch_iter_free(tg_batch_iter *it)
{
    if (!it)
        return;
    tg_release(it->xlast);
    tg_release(it->ylast);
    tg_release(it->xbuf);
    tg_release(it->ybuf);
    tg_release(it->inputs);
    tg_release(it->targets);
    free(it->order);
    free(it);
}

tg_status tg_batch_iter_start_epoch(tg_batch_iter *it)
{
    if (!it)
        return tg_null_arg("tg_batch_iter_start_epoch", "it");
    /* Always from the identity, so the order depends on the rng state alone. */
    for (int64_t i = 0; i < it->count; i++)
        it->order[i] = i;
    if (it->shuffle) {
        tg_rng *rng = it->rng ? it->rng : tg_rng_global();
        for (int64_t i = it->count - 1; i > 0; i--) {
            int64_t j = (int64_t)tg_rng_below(rng, (uint64_t)i + 1);
            int64_t tmp = it->order[i];
            it->order[i] = it->order[j];
            it->order[j] = tmp;
        }
    }
    it->pos = 0;
    it->in_epoch = true;
    return TG_OK;
}

/* Element k of a contiguous buffer of dtype dt, as double. */
static double element(const void *p, tg_dtype dt, int64_t k)
{
    switch (dt) {
    case TG_F32: return ((const float *)p)[k];
    case TG_F64: return ((const double *)p)[k];
    case TG_I32: return ((const int32_t *)p)[k];
    case TG_I64: return (double)((const int64_t *)p)[k];
    default: return ((const uint8_t *)p)[k];
    }
}

/* One example: n elements of the inputs' dtype at src -> xbuf's dtype at dst,
 * times the scale (a table lookup for bytes). */
static void convert_row(const tg_batch_iter *it, tg_dtype dt, void *dst, const void *src,
                        int64_t n)
{
    if (it->xdtype == TG_U8) {
        const uint8_t *s = src;
        if (dt == TG_F32) {
            float *d = dst;
            for (int64_t k = 0; k < n; k++)
                d[k] = it->lut32[s[k]];
        } else {
            double *d = dst;
            for (int64_t k = 0; k < n; k++)
                d[k] = it->lut64[s[k]];
        }
    } else if (dt == TG_F32) {
        float *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = (float)(element(src, it->xdtype, k) * it->scale);
    } else {
        double *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = element(src, it->xdtype, k) * it->scale;
    }
}

/* Gathers and converts the inputs of the m examples order[start..] into xbuf. */
static void gather_converted(tg_batch_iter *it, int64_t start, int64_t m)
{
    tg_dtype dt = tg_tensor_dtype(it->xbuf);
    size_t drow = (size_t)it->xelems * tg_dtype_size(dt);
    const uint8_t *xs = tg_tensor_data(it->inputs);
    uint8_t *xd = tg_tensor_data(it->xbuf);
    const int64_t *idx = it->order + start;
    #pragma omp parallel for schedule(static) if (m * it->xelems >= PARALLEL_MIN_ELEMS)
    for (int64_t k = 0; k < m; k++)
        convert_row(it, dt, xd + (size_t)k * drow, xs + (size_t)idx[k] * it->xrow, it->xelems);
}

bool tg_batch_iter_next(tg_batch_iter *it, tg_tensor **x, tg_tensor **y)
{
    if (x)
        *x = NULL;
    if (y)
        *y = NULL;
    if (!it || !x || !y) {
        tg_null_arg("tg_batch_iter_next", !it ? "it" : !x ? "x" : "y");
        return false;
    }
    if (!it->in_epoch)
        tg_batch_iter_start_epoch(it);
    if (it->pos >= it->nbatches) {
        it->in_epoch = false;
        return false;
    }
    int64_t start = it->pos * it->batch;
    int64_t m = it->count - start < it->batch ? it->count - start : it->batch;
    const uint8_t *xs = tg_tensor_data(it->inputs), *ys = tg_tensor_data(it->targets);
    uint8_t *xd = tg_tensor_data(it->xbuf), *yd = tg_tensor_data(it->ybuf);
    if (it->convert)
        gather_converted(it, start, m);
    for (int64_t k = 0; k < m; k++) {
        int64_t i = it->order[start + k];
        if (!it->convert)
            memcpy(xd + (size_t)k * it->xrow, xs + (size_t)i * it->xrow, it->xrow);
        memcpy(yd + (size_t)k * it->yrow, ys + (size_t)i * it->yrow, it->yrow);
    }
    tg_tensor_bump_version(it->xbuf);
    tg_tensor_bump_version(it->ybuf);
    *x = m == it->batch ? it->xbuf : it->xlast;
    *y = m == it->batch ? it->ybuf : it->ylast;
    it->pos++;
    return true;
}

int64_t tg_batch_iter_count(const tg_batch_iter *it) { return it ? it->count : 0; }
int64_t tg_batch_iter_num_batches(const tg_batch_iter *it) { return it ? it->nbatches : 0; }
int64_t tg_batch_iter_position(const tg_batch_iter *it)
{
    return it && it->in_epoch ? it->pos : 0;
}
const int64_t *tg_batch_iter_order(const tg_batch_iter *it)
{
    return it && it->in_epoch ? it->order : NULL;
}

tg_status tg_batch_iter_resume(tg_batch_iter *it, const int64_t *order, int64_t position)
{
    if (!it)
        return tg_null_arg("tg_batch_iter_resume", "it");
    if (!order)
        return tg_null_arg("tg_batch_iter_resume", "order");
    if (position < 0 || position > it->nbatches)
        return tg_error(TG_ERR_RANGE, "tg_batch_iter_resume: position %" PRId64
                        " outside 0..%" PRId64 " batches", position, it->nbatches);
    bool *seen = calloc((size_t)it->count, 1);
    if (!seen)
        return tg_error(TG_ERR_NOMEM, "tg_batch_iter_resume: out of memory");
    for (int64_t i = 0; i < it->count; i++) {
        if (order[i] < 0 || order[i] >= it->count || seen[order[i]]) {
            free(seen);
            return tg_error(TG_ERR_ARG, "tg_batch_iter_resume: order is not a permutation of "
                            "0..%" PRId64 " (entry %" PRId64 " is %" PRId64 ")",
                            it->count - 1, i, order[i]);
        }
        seen[order[i]] = true;
    }
    free(seen);
    memcpy(it->order, order, (size_t)it->count * sizeof *order);
    it->pos = position;
    it->in_epoch = true;
    return TG_OK;
}
