/* nn/train_state.c -- the whole state of a training run as one state dict.
 *
 * Model parameters, optimizer state, the generator's words and the progress
 * counters go into one dict that io/ writes as a checkpoint; importing it checks
 * everything before it changes anything, so a run resumes bit for bit or not at
 * all. nn/ knows nothing of files: saving and loading are the caller's (io/). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

#define MODEL_PREFIX "model/"
#define OPT_PREFIX "optimizer/"
#define ARCH_KEY MODEL_PREFIX "architecture"
#define OPT_TYPE_KEY OPT_PREFIX "type"

static const char *const counter_names[] = { "epoch", "batch", "step", "seed" };
enum { N_COUNTERS = 4 };

static void counters_of(int64_t v[N_COUNTERS], const tg_train_progress *p)
{
    v[0] = p->epoch;
    v[1] = p->batch;
    v[2] = p->step;
    memcpy(&v[3], &p->seed, sizeof v[3]); /* bit-cast: HDF5 attributes are signed */
}

tg_status tg_train_state_export(tg_state_dict *sd, tg_sequential *model, const tg_optimizer *opt,
                                const tg_rng *rng, const tg_train_progress *progress)
{
    static const char fn[] = "tg_train_state_export";
    if (!sd || !model || !opt || !progress)
        return tg_null_arg(fn, !sd ? "sd" : !model ? "model" : !opt ? "opt" : "progress");
    if (!rng)
        rng = tg_rng_global();
    tg_status st;
    if ((st = tg_sequential_state_dict(model, sd, MODEL_PREFIX)) != TG_OK ||
        (st = tg_optimizer_state_dict(opt, sd, OPT_PREFIX)) != TG_OK)
        return st;

    /* The words are copied, not referenced: the generator is a plain struct the
     * training loop keeps advancing; the dict must hold the state of this moment. */
    int64_t words[TG_RNG_STATE_WORDS];
    memcpy(words, rng->s, sizeof words);
    tg_tensor *t = tg_tensor_new_named(fn, TG_I64, TG_SHAPE(TG_RNG_STATE_WORDS));
    if (!t)
        return tg_last_status();
    memcpy(tg_tensor_data(t), words, sizeof words);
    st = tg_state_dict_set(sd, TG_TRAIN_STATE_RNG_KEY, t);
    tg_release(t);
    if (st != TG_OK)
        return st;

    int64_t v[N_COUNTERS];
    counters_of(v, progress);
    for (int i = 0; i < N_COUNTERS; i++)
        if ((st = tg_state_dict_set_i64(sd, counter_names[i], v[i])) != TG_OK)
            return st;
    return TG_OK;
}

tg_status tg_train_state_template(tg_state_dict *sd)
{
    if (!sd)
        return tg_null_arg("tg_train_state_template", "sd");
    tg_status st;
    if ((st = tg_state_dict_set_str(sd, ARCH_KEY, "")) != TG_OK ||
        (st = tg_state_dict_set_str(sd, OPT_TYPE_KEY, "")) != TG_OK)
        return st;
    for (int i = 0; i < N_COUNTERS; i++)
        if ((st = tg_state_dict_set_i64(sd, counter_names[i], 0)) != TG_OK)
            return st;
    return TG_OK;
}

tg_status tg_train_state_progress(tg_train_progress *out, const tg_state_dict *sd)
{
    static const char fn[] = "tg_train_state_progress";
    if (!out || !sd)
        return tg_null_arg(fn, out ? "sd" : "out");
    int64_t v[N_COUNTERS];
    for (int i = 0; i < N_COUNTERS; i++)
        if (tg_state_dict_get_i64(&v[i], sd, counter_names[i]) != TG_OK)
            return tg_error(TG_ERR_FORMAT, "%s: not a training state: no i64 attribute \"%s\"",
                            fn, counter_names[i]);
    for (int i = 0; i < 3; i++) {
        if (v[i] < 0)
            return tg_error(TG_ERR_FORMAT, "%s: attribute \"%s\" is negative (%" PRId64 ")", fn,
                            counter_names[i], v[i]);
        if (v[i] > TG_TRAIN_COUNTER_MAX)
            return tg_error(TG_ERR_FORMAT, "%s: attribute \"%s\" is %" PRId64 ", above the "
                            "largest counter (2^53)", fn, counter_names[i], v[i]);
    }
    if (v[1] > v[2])
        return tg_error(TG_ERR_FORMAT, "%s: attribute \"batch\" (%" PRId64 ") is greater "
                        "than \"step\" (%" PRId64 "): every batch is a step", fn, v[1], v[2]);
    out->epoch = v[0];
    out->batch = v[1];
    out->step = v[2];
    memcpy(&out->seed, &v[3], sizeof out->seed);
    return TG_OK;
}

tg_status tg_train_state_check(const tg_state_dict *sd, tg_sequential *model,
                               const tg_optimizer *opt)
{
    static const char fn[] = "tg_train_state_check";
    if (!sd || !model || !opt)
        return tg_null_arg(fn, !sd ? "sd" : !model ? "model" : "opt");
    const char *arch = NULL, *type = NULL;
    if (tg_state_dict_get_str(&arch, sd, ARCH_KEY) != TG_OK)
        return tg_error(TG_ERR_FORMAT, "%s: not a training state: no string attribute \"%s\"",
                        fn, ARCH_KEY);
    if (tg_state_dict_get_str(&type, sd, OPT_TYPE_KEY) != TG_OK)
        return tg_error(TG_ERR_FORMAT, "%s: not a training state: no string attribute \"%s\"",
                        fn, OPT_TYPE_KEY);
    char *mine = tg_sequential_architecture(model);
    if (!mine)
        return tg_last_status();
    tg_status st = TG_OK;
    if (strcmp(arch, mine) != 0) {
        /* The layer-level difference, as weight loads name it. */
        char diff[1024] = "";
        if (tg_sequential_check_architecture(model, sd, MODEL_PREFIX) != TG_OK) {
            const char *m = strstr(tg_last_error(), "another architecture: ");
            snprintf(diff, sizeof diff, "%s", m ? m + strlen("another architecture: ") : "");
            /* the hint to load weights alone is not for a resume */
            char *h = strstr(diff, " (the weights alone");
            if (h) {
                *h = '\0';
            } else if ((h = strstr(diff, "; the weights alone")) != NULL) {
                h[0] = ')';
                h[1] = '\0';
            }
        }
        st = tg_error(TG_ERR_FORMAT, "%s: the training state is of a different model "
                      "architecture: %s", fn, diff);
    } else if (strcmp(type, tg_optimizer_type(opt)) != 0) {
        st = tg_error(TG_ERR_FORMAT, "%s: the training state is of a \"%s\" optimizer, this "
                      "one is \"%s\"", fn, type, tg_optimizer_type(opt));
    }
    free(mine);
    return st;
}

/* The check of "rng/state": i64 [4], not all zero. The words go to *words.
 * Errors name the context. */
static tg_status check_rng(uint64_t words[TG_RNG_STATE_WORDS], const tg_state_dict *sd)
{
    if (!tg_state_dict_has(sd, TG_TRAIN_STATE_RNG_KEY))
        return tg_error_here(TG_ERR_FORMAT, "no entry \"%s\" (nothing loaded)",
                             TG_TRAIN_STATE_RNG_KEY);
    const tg_tensor *r = tg_state_dict_get(sd, TG_TRAIN_STATE_RNG_KEY);
    if (tg_tensor_dtype(r) != TG_I64 || tg_tensor_ndim(r) != 1 ||
        tg_tensor_dim(r, 0) != TG_RNG_STATE_WORDS)
        return tg_error_here(TG_ERR_FORMAT, "\"%s\" must be i64 [%d], got %s %s (nothing "
                             "loaded)", TG_TRAIN_STATE_RNG_KEY, TG_RNG_STATE_WORDS,
                             tg_dtype_name(tg_tensor_dtype(r)),
                             tg_shape_str((char[96]){ 0 }, 96, tg_tensor_ndim(r),
                                          tg_tensor_shape(r)));
    /* Exact bits, element by element (tg_get would go through a double). */
    bool all_zero = true;
    const int64_t *data = tg_tensor_data(r);
    for (int i = 0; i < TG_RNG_STATE_WORDS; i++) {
        memcpy(&words[i], data + i * tg_tensor_strides(r)[0], sizeof words[i]);
        all_zero = all_zero && words[i] == 0;
    }
    if (all_zero)
        return tg_error_here(TG_ERR_FORMAT, "\"%s\" is all zeros, not a generator state "
                             "(nothing loaded)", TG_TRAIN_STATE_RNG_KEY);
    return TG_OK;
}

tg_status tg_train_state_import(tg_train_progress *out, tg_sequential *model, tg_optimizer *opt,
                                tg_rng *rng, const tg_state_dict *sd)
{
    static const char fn[] = "tg_train_state_import";
    if (!out || !model || !opt || !sd)
        return tg_null_arg(fn, !out ? "out" : !model ? "model" : !opt ? "opt" : "sd");
    if (!rng)
        rng = tg_rng_global();

    /* Every part is checked before any part changes; then each applies, and
     * none can fail on what was checked. */
    tg_train_progress p;
    uint64_t words[TG_RNG_STATE_WORDS];
    tg_status st;
    if ((st = tg_train_state_progress(&p, sd)) != TG_OK ||
        (st = tg_train_state_check(sd, model, opt)) != TG_OK ||
        (st = tg_sequential_check_state_dict(model, sd, MODEL_PREFIX)) != TG_OK ||
        (st = tg_optimizer_check_state_dict(opt, sd, OPT_PREFIX)) != TG_OK)
        return st;
    const char *prev = tg_error_enter(fn);
    st = check_rng(words, sd);
    tg_error_leave(prev);
    if (st != TG_OK)
        return st;
    if ((st = tg_optimizer_load_state_dict(opt, sd, OPT_PREFIX)) != TG_OK ||
        (st = tg_sequential_load_state_dict(model, sd, MODEL_PREFIX)) != TG_OK)
        return st;
    memcpy(rng->s, words, sizeof words);
    *out = p;
    return TG_OK;
}
