/* benchmarks/train_libtensor.c -- the tutorial CNN through libtensor's public API
 * (tg_sequential, tg_cross_entropy, Adam, the batch iterator), timed the way
 * benchmarks/direct_dnnl.c and torch_cnn.py time theirs: a fixed number of full
 * batches after a short warm-up, then inference over the 10,000 test images.
 * Prints one RESULT line for benchmarks/run.sh, with the framework's counters
 * measured after the first step (primitives created, storage allocations, weight
 * reorders, page faults).
 *
 *   train_libtensor [--batch N] [--steps N|0] [--warmup N] [--threads N]
 *                   [--data DIR] [--seed S] [--no-infer] [--epochs N] [--no-ftz]
 *
 * --steps 0 trains one epoch of full batches. --epochs N trains N whole epochs
 * instead and prints the resident memory after each (is memory flat?). --no-ftz
 * turns the library's denormal flushing off (tg_set_flush_denormals): it shows
 * what denormals in Adam's moments cost once training has run a while. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "libtensor.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Under DNNL_VERBOSE, marks where the timed steps start and end in oneDNN's
 * output (same stream, flushed), so benchmarks/profile.sh can cut them out. */
static void marker(const char *what)
{
    if (getenv("DNNL_VERBOSE") || getenv("ONEDNN_VERBOSE")) {
        printf("%s\n", what);
        fflush(stdout);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Resident set now, in MB (from /proc/self/statm; -1 when unavailable). */
static double rss_now_mb(void)
{
    long pages_total = 0, pages_res = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages_total, &pages_res) != 2)
            pages_res = -1;
        fclose(f);
    }
    return pages_res < 0 ? -1 : (double)pages_res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static int fail(const char *what)
{
    fprintf(stderr, "train_libtensor: %s: %s\n", what, tg_last_error());
    return 1;
}

/* Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Dropout(0.25) -> Flatten ->
 * Dense(128, relu) -> Dense(10, softmax), as apps/fashion_cnn builds it. */
static tg_sequential *model_new(tg_rng *rng)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 28, 28));
    if (!m)
        return NULL;
    if (tg_sequential_set_rng(m, rng) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_conv2d(32, 3, 3, TG_ACT_RELU, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_max_pool2d(2, 2, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dropout(0.25)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_flatten()) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dense(128, TG_ACT_RELU, NULL)) != TG_OK ||
        tg_sequential_add(m, tg_layer_new_dense(10, TG_ACT_SOFTMAX, NULL)) != TG_OK ||
        tg_sequential_build(m) != TG_OK) {
        tg_sequential_free(m);
        return NULL;
    }
    return m;
}

/* One training step; the loss, or a negative value on failure. */
static double train_step(tg_sequential *model, tg_optimizer *opt, tg_tensor *x, tg_tensor *y)
{
    double l = -1;
    tg_scope *s = tg_scope_push();
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(model, x), y);
    if (loss && tg_optimizer_zero_grad(opt) == TG_OK && tg_backward(loss) == TG_OK &&
        tg_optimizer_step(opt) == TG_OK)
        l = tg_item_f32(loss);
    tg_scope_pop(s);
    return l;
}

int main(int argc, char **argv)
{
    int64_t batch = 32, steps = 300, warmup = 5, epochs = 0;
    int threads = 0;
    uint64_t seed = 42;
    bool infer = true, ftz = true;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--batch") == 0 && v)
            batch = atoll(argv[++i]);
        else if (strcmp(a, "--steps") == 0 && v)
            steps = atoll(argv[++i]);
        else if (strcmp(a, "--warmup") == 0 && v)
            warmup = atoll(argv[++i]);
        else if (strcmp(a, "--threads") == 0 && v)
            threads = atoi(argv[++i]);
        else if (strcmp(a, "--data") == 0 && v)
            dir = argv[++i];
        else if (strcmp(a, "--seed") == 0 && v)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--epochs") == 0 && v)
            epochs = atoll(argv[++i]);
        else if (strcmp(a, "--no-infer") == 0)
            infer = false;
        else if (strcmp(a, "--no-ftz") == 0)
            ftz = false;
        else {
            fprintf(stderr, "usage: %s [--batch N] [--steps N|0] [--warmup N] [--threads N] "
                    "[--data DIR] [--seed S] [--no-infer] [--epochs N] [--no-ftz]\n", argv[0]);
            return 2;
        }
    }
    if (batch < 1 || steps < 0 || warmup < 1 || epochs < 0) {
        fprintf(stderr, "train_libtensor: batch >= 1, steps >= 0, warmup >= 1, epochs >= 0\n");
        return 2;
    }
    if (threads > 0 && tg_set_num_threads(threads) != TG_OK)
        return fail("threads");
    threads = tg_get_num_threads();
    if (!ftz && tg_set_flush_denormals(false) != TG_OK)
        return fail("tg_set_flush_denormals");

    /* Both splits stay u8 (55 MB instead of 219 as f32); the iterators convert each
     * batch to f32 pixel / 255, bit for bit what a TG_F32 load holds. */
    tg_dataset train = {0}, test = {0};
    tg_fashion_mnist_opts lo = TG_FASHION_MNIST_OPTS_INIT;
    lo.image_dtype = TG_U8;
    if (tg_fashion_mnist_load(&train, dir, TG_SPLIT_TRAIN, &lo) != TG_OK)
        return fail("training set");
    if (infer && tg_fashion_mnist_load(&test, dir, TG_SPLIT_TEST, &lo) != TG_OK)
        return fail("test set");

    double t_setup = now_s();
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_sequential *model = model_new(&rng);
    if (!model)
        return fail("model");
    size_t n_params = 0;
    tg_tensor *const *params = tg_sequential_params(model, &n_params);
    tg_optimizer *opt = params ? tg_optimizer_new_adam(params, n_params, NULL) : NULL;
    tg_batch_opts bo = TG_BATCH_OPTS_INIT;
    bo.batch_size = batch;
    bo.drop_last = true; /* full batches only, as the other two implementations */
    bo.input_dtype = TG_F32;
    bo.input_scale = 1.0 / 255;
    tg_batch_iter *it = opt ? tg_batch_iter_new(train.images, train.labels, &bo, &rng) : NULL;
    if (!it)
        return fail("optimizer or batch iterator");
    int64_t per_epoch = tg_batch_iter_num_batches(it);
    bool epoch_mode = steps == 0;
    if (epoch_mode)
        steps = per_epoch;
    t_setup = now_s() - t_setup;

    /* --epochs: whole epochs, resident memory after each, then a verdict */
    if (epochs > 0) {
        double rss_first = 0, rss_last = 0;
        printf("memory check: resident %.1f MB before training\n", rss_now_mb());
        for (int64_t e = 1; e <= epochs; e++) {
            double t0 = now_s(), loss_sum = 0;
            int64_t nb = 0;
            tg_tensor *x, *y;
            while (tg_batch_iter_next(it, &x, &y)) {
                double l = train_step(model, opt, x, y);
                if (l < 0)
                    return fail("training step");
                loss_sum += l;
                nb++;
            }
            tg_memory_stats ms;
            tg_memory_stats_get(&ms);
            rss_last = rss_now_mb();
            if (e == 1)
                rss_first = rss_last;
            printf("epoch %lld: %.2f s, loss %.4f, resident %.1f MB, storage live %.1f MB, "
                   "cached %.1f MB, system allocations so far %llu\n", (long long)e,
                   now_s() - t0, loss_sum / (double)nb, rss_last,
                   (double)ms.bytes_live / 1048576.0, (double)ms.bytes_cached / 1048576.0,
                   (unsigned long long)ms.allocs);
            fflush(stdout);
        }
        printf("MEMCHECK epochs=%lld batch=%lld rss_first_epoch_mb=%.1f rss_last_epoch_mb=%.1f "
               "growth_mb=%.1f\n", (long long)epochs, (long long)batch, rss_first, rss_last,
               rss_last - rss_first);
        tg_batch_iter_free(it);
        tg_optimizer_free(opt);
        tg_sequential_free(model);
        tg_dataset_clear(&train);
        tg_dataset_clear(&test);
        return 0;
    }

    /* training: warm-up steps (the first creates the primitives), then timed ones */
    double *step_s = malloc((size_t)(steps + 1) * sizeof *step_s);
    if (!step_s)
        return fail("out of memory");
    tg_backend_stats b1 = {0}, b2 = {0};
    tg_memory_stats m1 = {0}, m2 = {0};
    double loss_sum = 0, t_train = 0;
    long flt0 = 0, flt1 = 0;
    for (int64_t s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            marker("BENCH_TIMED_START");
            flt0 = minor_faults();
            t_train = now_s();
        }
        double t0 = now_s();
        tg_tensor *x, *y;
        if (!tg_batch_iter_next(it, &x, &y) && !tg_batch_iter_next(it, &x, &y))
            return fail("batch iterator");
        double l = train_step(model, opt, x, y);
        if (l < 0)
            return fail("training step");
        if (s >= warmup) {
            loss_sum += l;
            step_s[s - warmup] = now_s() - t0;
        }
        if (s == 0) {
            tg_backend_stats_get(&b1);
            tg_memory_stats_get(&m1);
            flt1 = minor_faults();
        }
    }
    t_train = now_s() - t_train;
    marker("BENCH_TIMED_END");
    long flt_train = minor_faults() - flt0;
    tg_backend_stats_get(&b2);
    tg_memory_stats_get(&m2);
    long flt_after_first = minor_faults() - flt1;
    int64_t after_first = warmup + steps - 1;
    qsort(step_s, (size_t)steps, sizeof *step_s, cmp_double);
    double med_step = steps ? step_s[steps / 2] : 0;

    /* inference: evaluation mode, no recording, test set in order */
    double t_inf = 0, acc = -1, test_loss = 0;
    tg_backend_stats i1 = {0}, i2 = {0};
    tg_memory_stats im1 = {0}, im2 = {0};
    if (infer) {
        tg_batch_opts eo = TG_BATCH_OPTS_INIT;
        eo.batch_size = batch;
        eo.shuffle = false;
        eo.input_dtype = TG_F32;
        eo.input_scale = 1.0 / 255;
        tg_batch_iter *ti = tg_batch_iter_new(test.images, test.labels, &eo, NULL);
        if (!ti)
            return fail("test iterator");
        tg_sequential_set_training(model, false);
        bool prev = tg_set_grad_enabled(false);
        tg_backend_stats_get(&i1);
        tg_memory_stats_get(&im1);
        int64_t correct = 0;
        t_inf = now_s();
        tg_tensor *x, *y;
        while (tg_batch_iter_next(ti, &x, &y)) {
            tg_scope *s = tg_scope_push();
            tg_tensor *logits = tg_sequential_forward_logits(model, x);
            tg_tensor *loss = tg_cross_entropy(logits, y);
            int64_t c = 0;
            if (!loss || tg_accuracy_count(&c, logits, y) != TG_OK)
                return fail("inference");
            correct += c;
            test_loss += tg_item(loss) * (double)tg_tensor_shape(x)[0];
            tg_scope_pop(s);
        }
        t_inf = now_s() - t_inf;
        tg_backend_stats_get(&i2);
        tg_memory_stats_get(&im2);
        tg_set_grad_enabled(prev);
        acc = (double)correct / (double)test.count;
        test_loss /= (double)test.count;
        tg_batch_iter_free(ti);
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ms_step = steps ? t_train / (double)steps * 1e3 : 0;
    double per = after_first > 0 ? (double)after_first : 1;
    printf("RESULT impl=%s batch=%lld threads=%d steps=%lld epoch_mode=%d train_s=%.4f "
           "ms_step=%.4f ms_step_median=%.4f img_s=%.1f epoch_s=%.3f train_loss=%.4f "
           "infer_s=%.4f infer_img_s=%.1f test_acc=%.4f test_loss=%.4f rss_mb=%.1f "
           "faults_per_step=%.2f setup_s=%.3f "
           "prims_first_step=%llu prims_after_first=%llu allocs_first_step=%llu "
           "allocs_per_step=%.3f faults_after_first_per_step=%.2f weight_reorders_per_step=%.3f "
           "cache_misses_after_first=%llu storage_peak_mb=%.1f "
           "infer_prims=%llu infer_weight_reorders=%llu infer_allocs=%llu\n",
           ftz ? "libtensor" : "libtensor_noftz", (long long)batch, threads, (long long)steps,
           epoch_mode, t_train, ms_step,
           med_step * 1e3, steps ? (double)(steps * batch) / t_train : 0,
           ms_step * 1e-3 * 60000.0 / (double)batch, steps ? loss_sum / (double)steps : 0, t_inf,
           infer ? (double)test.count / t_inf : 0, acc, test_loss, (double)ru.ru_maxrss / 1024.0,
           steps ? (double)flt_train / (double)steps : 0, t_setup,
           (unsigned long long)b1.primitives_created,
           (unsigned long long)(b2.primitives_created - b1.primitives_created),
           (unsigned long long)m1.allocs, (double)(m2.allocs - m1.allocs) / per,
           (double)flt_after_first / per, (double)(b2.weight_reorders - b1.weight_reorders) / per,
           (unsigned long long)(b2.cache_misses - b1.cache_misses),
           (double)m2.bytes_peak / 1048576.0,
           infer ? (unsigned long long)(i2.primitives_created - i1.primitives_created) : 0ull,
           infer ? (unsigned long long)(i2.weight_reorders - i1.weight_reorders) : 0ull,
           infer ? (unsigned long long)(im2.allocs - im1.allocs) : 0ull);

    free(step_s);
    tg_batch_iter_free(it);
    tg_optimizer_free(opt);
    tg_sequential_free(model);
    tg_dataset_clear(&train);
    tg_dataset_clear(&test);
    return 0;
}
