/* io/dataset.c -- Fashion-MNIST from its four IDX files.
 *
 * The loader validates what the IDX reader cannot know (28x28 images, labels in
 * 0..9, equal counts). The batch iterator that was here is nn/batch.c. */
#include <errno.h>
#include <inttypes.h>
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
