/* nn/batch.c -- the batch iterator over one or more inputs and targets.
 *
 * Everything is allocated up front so a training loop allocates nothing per
 * batch; each epoch's order comes from an rng that a checkpoint can save and
 * restore (one order for every tensor), and compact (u8) inputs can be
 * converted to float batches as they are gathered, so the dataset need not be
 * held as floats. Moved from io/dataset.c unchanged for one input and target. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

/* One tensor the iterator gathers rows of. */
typedef struct slot {
    tg_tensor *src;    /* contiguous; owned reference */
    size_t row;        /* bytes per example in src */
    int64_t elems;     /* elements per example */
    tg_dtype dtype;    /* src's dtype; buf's is the converted one when converting */
    bool convert;      /* an input under tg_batch_opts.input_scale */
    tg_tensor *buf;    /* a full batch */
    tg_tensor *last;   /* a view of buf for a smaller last batch, or NULL */
} slot;

struct tg_batch_iter {
    int n_in, n_tg;
    slot *slots;       /* n_in inputs, then n_tg targets */
    int64_t count;     /* examples used per epoch */
    int64_t batch;     /* rows of a full batch */
    int64_t nbatches;
    bool shuffle;
    tg_rng *rng;       /* borrowed; NULL: the global generator */
    int64_t *order;
    bool in_epoch;
    int64_t pos;       /* batches returned this epoch */
    double scale;      /* input conversion (tg_batch_opts.input_scale != 0) */
    float lut32[256];  /* u8 inputs: value * scale for every byte, ... */
    double lut64[256]; /* ... precomputed, as f32 and as f64 */
};

/* Converted gathers of at least this many elements are split over the OpenMP
 * threads; a batch of 32 images (25088 elements, ~12 us on one core) stays on
 * the calling thread. */
enum { PARALLEL_MIN_ELEMS = 1 << 15 };

static char *shape_text(char *buf, size_t n, const tg_tensor *t)
{
    return tg_shape_str(buf, n, tg_tensor_ndim(t), tg_tensor_shape(t));
}

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

/* "inputs[1]" or, for the one-input call, "inputs". */
static const char *tensor_label(char *buf, size_t n, bool single, int i, int n_in)
{
    if (single)
        snprintf(buf, n, "%s", i < n_in ? "inputs" : "targets");
    else
        snprintf(buf, n, "%s[%d]", i < n_in ? "inputs" : "targets", i < n_in ? i : i - n_in);
    return buf;
}

/* Checks the arguments; the tensors' shapes against each other. */
static tg_status check_args(const char *fn, bool single, int n_in, tg_tensor *const *inputs,
                            int n_tg, tg_tensor *const *targets, const tg_batch_opts *o)
{
    if (n_in < 1 || n_in > TG_BATCH_MAX_TENSORS)
        return tg_error(TG_ERR_ARG, "%s: n_in must be in 1..%d, got %d", fn,
                        TG_BATCH_MAX_TENSORS, n_in);
    if (n_tg < 0 || n_tg > TG_BATCH_MAX_TENSORS)
        return tg_error(TG_ERR_ARG, "%s: n_targets must be in 0..%d, got %d", fn,
                        TG_BATCH_MAX_TENSORS, n_tg);
    if (!inputs)
        return tg_null_arg(fn, "inputs");
    if (n_tg > 0 && !targets)
        return tg_null_arg(fn, "targets");
    char la[32], a[96], b[96];
    for (int i = 0; i < n_in + n_tg; i++) {
        tg_tensor *t = i < n_in ? inputs[i] : targets[i - n_in];
        if (!t)
            return tg_null_arg(fn, tensor_label(la, sizeof la, single, i, n_in));
    }
    tg_tensor *first = inputs[0];
    if (single) {
        tg_tensor *y = targets[0];
        if (tg_tensor_ndim(first) < 1 || tg_tensor_ndim(y) < 1 ||
            tg_tensor_dim(first, 0) != tg_tensor_dim(y, 0) || tg_tensor_dim(first, 0) < 1)
            return tg_error(TG_ERR_SHAPE, "%s: inputs %s and targets %s must have the same "
                            "number (>= 1) of examples along dim 0", fn,
                            shape_text(a, sizeof a, first), shape_text(b, sizeof b, y));
    } else {
        if (tg_tensor_ndim(first) < 1 || tg_tensor_dim(first, 0) < 1)
            return tg_error(TG_ERR_SHAPE, "%s: inputs[0] %s has no examples along dim 0 (it "
                            "must have >= 1)", fn, shape_text(a, sizeof a, first));
        for (int i = 1; i < n_in + n_tg; i++) {
            tg_tensor *t = i < n_in ? inputs[i] : targets[i - n_in];
            if (tg_tensor_ndim(t) < 1 || tg_tensor_dim(t, 0) != tg_tensor_dim(first, 0))
                return tg_error(TG_ERR_SHAPE, "%s: %s %s must have as many examples along "
                                "dim 0 as inputs[0] %s", fn,
                                tensor_label(la, sizeof la, single, i, n_in),
                                shape_text(a, sizeof a, t), shape_text(b, sizeof b, first));
        }
    }
    if (o->batch_size < 1)
        return tg_error(TG_ERR_ARG, "%s: batch size must be >= 1, got %" PRId64, fn,
                        o->batch_size);
    if (o->limit < 0)
        return tg_error(TG_ERR_ARG, "%s: limit must be >= 0, got %" PRId64, fn, o->limit);
    bool convert = o->input_scale != 0; /* NaN too, refused next */
    if (convert && !isfinite(o->input_scale))
        return tg_error(TG_ERR_ARG, "%s: input_scale must be finite, got %g", fn,
                        o->input_scale);
    if (convert && !tg_dtype_is_float(o->input_dtype))
        return tg_error(TG_ERR_DTYPE, "%s: input_dtype must be f32 or f64 to convert the %s "
                        "inputs into, got %s", fn, tg_dtype_name(tg_tensor_dtype(first)),
                        tg_dtype_name(o->input_dtype));
    /* A caller who set a dtype but no scale most likely forgot the scale. */
    if (!convert && o->input_dtype != TG_F32)
        return tg_error(TG_ERR_ARG, "%s: input_dtype %s given with input_scale 0 (no "
                        "conversion); set input_scale (1 converts without scaling)", fn,
                        tg_dtype_name(o->input_dtype));
    return TG_OK;
}

static tg_batch_iter *iter_new(const char *fn, bool single, int n_in, tg_tensor *const *inputs,
                               int n_tg, tg_tensor *const *targets, const tg_batch_opts *opts,
                               tg_rng *rng)
{
    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    if (opts)
        o = *opts;
    if (check_args(fn, single, n_in, inputs, n_tg, targets, &o) != TG_OK)
        return NULL;
    tg_batch_iter *it = calloc(1, sizeof *it);
    slot *slots = calloc((size_t)(n_in + n_tg), sizeof *slots);
    if (!it || !slots) {
        free(it);
        free(slots);
        tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
        return NULL;
    }
    it->slots = slots;
    it->n_in = n_in;
    it->n_tg = n_tg;
    bool convert = o.input_scale != 0;
    int64_t n = tg_tensor_dim(inputs[0], 0);
    it->count = o.limit > 0 && o.limit < n ? o.limit : n;
    it->batch = o.batch_size < it->count ? o.batch_size : it->count;
    it->nbatches = o.drop_last ? it->count / o.batch_size
                               : (it->count + it->batch - 1) / it->batch;
    it->shuffle = o.shuffle;
    it->rng = rng;
    it->scale = o.input_scale;
    for (int v = 0; v < 256; v++) {
        it->lut32[v] = (float)(v * o.input_scale);
        it->lut64[v] = v * o.input_scale;
    }
    it->order = malloc((size_t)it->count * sizeof *it->order);
    if (!it->order)
        goto fail;
    int64_t rest = it->count % it->batch;
    for (int i = 0; i < n_in + n_tg; i++) {
        slot *s = &it->slots[i];
        s->src = owned_contiguous(i < n_in ? inputs[i] : targets[i - n_in]);
        if (!s->src)
            goto fail;
        s->row = tg_tensor_nbytes(s->src) / (size_t)n;
        s->elems = tg_tensor_numel(s->src) / n;
        s->dtype = tg_tensor_dtype(s->src);
        s->convert = convert && i < n_in;
        s->buf = batch_buffer(s->src, it->batch, s->convert ? o.input_dtype : s->dtype);
        if (!s->buf)
            goto fail;
        if (rest && !o.drop_last && !(s->last = head_view(s->buf, rest)))
            goto fail;
    }
    return it;

fail:
    if (tg_last_status() == TG_OK)
        tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
    tg_batch_iter_free(it);
    return NULL;
}

tg_batch_iter *tg_batch_iter_new(tg_tensor *inputs, tg_tensor *targets,
                                 const tg_batch_opts *opts, tg_rng *rng)
{
    if (!inputs)
        return tg_null_arg("tg_batch_iter_new", "inputs"), NULL;
    if (!targets)
        return tg_null_arg("tg_batch_iter_new", "targets"), NULL;
    return iter_new("tg_batch_iter_new", true, 1, &inputs, 1, &targets, opts, rng);
}

tg_batch_iter *tg_batch_iter_new_n(int n_in, tg_tensor *const *inputs, int n_targets,
                                   tg_tensor *const *targets, const tg_batch_opts *opts,
                                   tg_rng *rng)
{
    return iter_new("tg_batch_iter_new_n", false, n_in, inputs, n_targets, targets, opts, rng);
}

void tg_batch_iter_free(tg_batch_iter *it)
{
    if (!it)
        return;
    for (int i = 0; it->slots && i < it->n_in + it->n_tg; i++) {
        tg_release(it->slots[i].last);
        tg_release(it->slots[i].buf);
        tg_release(it->slots[i].src);
    }
    free(it->slots);
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

/* One example: n elements of the source dtype sdt at src -> dt at dst, times
 * the scale (a table lookup for bytes). */
static void convert_row(const tg_batch_iter *it, tg_dtype sdt, tg_dtype dt, void *dst,
                        const void *src, int64_t n)
{
    if (sdt == TG_U8) {
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
            d[k] = (float)(element(src, sdt, k) * it->scale);
    } else {
        double *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = element(src, sdt, k) * it->scale;
    }
}

/* Gathers and converts the rows of the m examples order[start..] into s->buf. */
static void gather_converted(tg_batch_iter *it, const slot *s, int64_t start, int64_t m)
{
    tg_dtype dt = tg_tensor_dtype(s->buf);
    size_t drow = (size_t)s->elems * tg_dtype_size(dt);
    const uint8_t *xs = tg_tensor_data(s->src);
    uint8_t *xd = tg_tensor_data(s->buf);
    const int64_t *idx = it->order + start;
    #pragma omp parallel for schedule(static) if (m * s->elems >= PARALLEL_MIN_ELEMS)
    for (int64_t k = 0; k < m; k++)
        convert_row(it, s->dtype, dt, xd + (size_t)k * drow, xs + (size_t)idx[k] * s->row,
                    s->elems);
}

/* Fills every slot's buffer with the next batch; false at the epoch's end. */
static bool fill_next(tg_batch_iter *it, tg_tensor **xs, tg_tensor **ys)
{
    if (!it->in_epoch)
        tg_batch_iter_start_epoch(it);
    if (it->pos >= it->nbatches) {
        it->in_epoch = false;
        return false;
    }
    int64_t start = it->pos * it->batch;
    int64_t m = it->count - start < it->batch ? it->count - start : it->batch;
    for (int i = 0; i < it->n_in + it->n_tg; i++) {
        slot *s = &it->slots[i];
        if (s->convert) {
            gather_converted(it, s, start, m);
        } else {
            const uint8_t *src = tg_tensor_data(s->src);
            uint8_t *dst = tg_tensor_data(s->buf);
            for (int64_t k = 0; k < m; k++)
                memcpy(dst + (size_t)k * s->row, src + (size_t)it->order[start + k] * s->row,
                       s->row);
        }
        tg_tensor_bump_version(s->buf);
        tg_tensor *out = m == it->batch ? s->buf : s->last;
        if (i < it->n_in)
            xs[i] = out;
        else
            ys[i - it->n_in] = out;
    }
    it->pos++;
    return true;
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
    if (it->n_in != 1 || it->n_tg != 1) {
        tg_error(TG_ERR_ARG, "tg_batch_iter_next: the iterator has %d inputs and %d targets, "
                 "not 1 and 1: use tg_batch_iter_next_n", it->n_in, it->n_tg);
        return false;
    }
    return fill_next(it, x, y);
}

bool tg_batch_iter_next_n(tg_batch_iter *it, tg_tensor **xs, tg_tensor **ys)
{
    if (!it || !xs || (!ys && it->n_tg > 0)) {
        tg_null_arg("tg_batch_iter_next_n", !it ? "it" : !xs ? "xs" : "ys");
        return false;
    }
    for (int i = 0; i < it->n_in; i++)
        xs[i] = NULL;
    for (int i = 0; i < it->n_tg; i++)
        ys[i] = NULL;
    return fill_next(it, xs, ys);
}

int tg_batch_iter_num_inputs(const tg_batch_iter *it) { return it ? it->n_in : 0; }
int tg_batch_iter_num_targets(const tg_batch_iter *it) { return it ? it->n_tg : 0; }
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
