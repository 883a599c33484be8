/* ops/dropout.c -- inverted dropout with a counter-based mask.
 *
 * Training with 0 < rate < 1: m[k] ~ Bernoulli(1 - rate), s = 1 / (1 - rate)
 *   forward:  y[k] = x[k] * m[k] * s
 *   backward: dL/dx[k] = g[k] * m[k] * s
 * rate 1 drops everything: y = 0 and dL/dx = 0 (s is taken as 0).
 * Not training, or rate 0: y is x itself (no copy, no node, no draw from the
 * generator: gradients reach x unchanged because it is the same tensor).
 *
 * The mask is a pure function of one 64-bit key and the element's flat index k.
 * Each training call draws exactly one key from the caller's tg_rng (so one seed
 * reproduces every mask and the generator advances by one word per call), then
 *   h_j  = fmix(key + j * G)   j = k / 2, G = 2^64 / golden ratio (odd), fmix the
 *                              splitmix64 finalizer (a bijection of 64-bit words)
 *   u_k  = low 32 bits of h_j for even k, high 32 bits for odd k
 *   m[k] = u_k >= T            T = round(rate * 2^32), in [0, 2^32]
 * i.e. splitmix64's output sequence from state key - G, two elements per output.
 * With u_k uniform on 32 bits, P(keep) = 1 - T / 2^32, within 2^-33 of 1 - rate;
 * T = 2^32 (rate within 2^-33 of 1) drops everything. Why counter-based rather than one
 * draw per element: the loop has no serial dependency, so it runs in parallel and
 * gives the same mask for any thread count; backward regenerates the mask from the
 * saved key instead of keeping a mask tensor alive between the passes; and the
 * keep test becomes a bit mask on the scaled value (no data-dependent branch to
 * mispredict), which gcc vectorizes. A dropped element is exactly +0 even where x
 * or the gradient is inf or NaN: the mask clears its bits, it does not multiply
 * by 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_impl.h"

/* Saved for backward: everything needed to regenerate the mask. */
typedef struct dropout_params {
    uint64_t key;  /* this call's draw from the generator */
    double rate;
    double scale;  /* 1 / (1 - rate), or 0 when rate is 1 */
} dropout_params;

#define GOLDEN 0x9e3779b97f4a7c15ull
/* Below this many elements an OpenMP team costs more than the loop. */
#define PARALLEL_MIN_ELEMS (1 << 15)

/* gcc builds the two mask loops for the baseline ISA; on x86-64 it also builds
 * AVX2 and AVX-512 copies and picks one at load time, since AVX-512's 64-bit
 * multiply makes the hash about 3x cheaper than SSE2's emulated one. All copies
 * compute the same integers and one IEEE multiply, so results are bit-identical. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && \
    defined(__ELF__)
#define ISA_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define ISA_CLONES
#endif

/* splitmix64's output function. */
static inline uint64_t fmix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* v when keep is 1, +0 when keep is 0: an AND of the bits, so that it vectorizes
 * and drops inf and NaN too (a multiply by 0 would keep them as NaN). */
static inline float keep_f32(float v, uint32_t keep)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    b &= 0u - keep;
    memcpy(&v, &b, sizeof v);
    return v;
}

static inline double keep_f64(double v, uint64_t keep)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    b &= 0ull - keep;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* out[k] = in[k] * m[k] * s over n contiguous elements; in and out do not overlap.
 * The loop runs over pairs (one hash each); an odd last element takes the low half
 * of the next hash, as the formula says. One body for f32 and f64. */
#define DEFINE_MASK(NAME, T, KEEP)                                                   \
    ISA_CLONES static void NAME(const T *restrict in, T *restrict out, int64_t n,    \
                                uint64_t key, uint32_t t, T s)                       \
    {                                                                                \
        int64_t pairs = n / 2;                                                       \
        _Pragma("omp parallel for simd schedule(static) if (parallel: n >= PARALLEL_MIN_ELEMS)") \
        for (int64_t j = 0; j < pairs; j++) {                                        \
            uint64_t h = fmix(key + (uint64_t)j * GOLDEN);                           \
            out[2 * j] = KEEP(in[2 * j] * s, (uint32_t)h >= t);                      \
            out[2 * j + 1] = KEEP(in[2 * j + 1] * s, (uint32_t)(h >> 32) >= t);      \
        }                                                                            \
        if (n & 1)                                                                   \
            out[n - 1] = KEEP(in[n - 1] * s,                                         \
                              (uint32_t)fmix(key + (uint64_t)pairs * GOLDEN) >= t);  \
    }

DEFINE_MASK(mask_f32, float, keep_f32)
DEFINE_MASK(mask_f64, double, keep_f64)

/* out = in * m * scale for the mask of (key, rate), 0 < rate <= 1. */
static void apply_mask(bool f64, const void *in, void *out, int64_t n, uint64_t key,
                       double rate, double scale)
{
    /* rate * 2^32 is exact in a double; + 0.5 and truncation round it */
    uint64_t t = (uint64_t)(ldexp(rate, 32) + 0.5);
    if (t > UINT32_MAX) { /* nothing is kept */
        memset(out, 0, (size_t)n * (f64 ? sizeof(double) : sizeof(float)));
        return;
    }
    if (f64)
        mask_f64(in, out, n, key, (uint32_t)t, scale);
    else
        mask_f32(in, out, n, key, (uint32_t)t, (float)scale);
}

tg_tensor *tg_dropout(tg_tensor *x, double rate, bool training, tg_rng *rng)
{
    static const char who[] = "tg_dropout";
    tg_op_call c;
    if (!tg_op_begin(&c, &tg_op_dropout_vtable, who, &x, 1, "x", TG_OP_FLOAT))
        return NULL;
    if (!(rate >= 0.0 && rate <= 1.0)) { /* also rejects NaN */
        char sx[96];
        return tg_error(TG_ERR_ARG, "%s: rate must be in [0, 1], got %g (input %s)", who, rate,
                        tg_shape_str(sx, sizeof sx, x->ndim, x->shape)), tg_op_fail(&c);
    }
    if (!training || rate == 0.0) { /* x itself, not recorded */
        c.out = tg_retain(x);
        c.record = false;
        return tg_op_end(&c);
    }
    if (!rng)
        rng = tg_rng_global();

    tg_tensor *y = tg_op_output(&c, x->dtype, x->ndim, x->shape);
    dropout_params *p = tg_op_save(&c, sizeof *p);
    tg_tensor *xc = y && (p || !c.record) ? tg_contiguous_owned(x) : NULL;
    if (!xc)
        return tg_op_fail(&c);
    /* drawn only once the call cannot fail, and also for rate 1, so that every
     * training call that returns a tensor advances the generator by one word */
    uint64_t key = tg_rng_next_u64(rng);
    double scale = rate == 1.0 ? 0.0 : 1.0 / (1.0 - rate);
    apply_mask(x->dtype == TG_F64, tg_tensor_ptr(xc), tg_tensor_ptr(y), tg_tensor_numel(x),
               key, rate, scale);
    tg_release(xc);
    if (p)
        *p = (dropout_params){.key = key, .rate = rate, .scale = scale};
    return tg_op_end(&c);
}

static tg_status dropout_backward(tg_node *node, tg_tensor *grad_out, tg_tensor **grad_in)
{
    /* runs in the engine's context, "tg_dropout backward" */
    const dropout_params *p = node->saved;
    tg_tensor *x = node->inputs[0];
    if (!tg_node_needs_grad(node, 0))
        return TG_OK;
    tg_tensor *gy = tg_contiguous_owned(grad_out);
    tg_tensor *gx = tg_tensor_new_owned(x->dtype, x->ndim, x->shape);
    tg_status st = TG_OK;
    if (!gy || !gx)
        st = tg_last_status();
    else /* the forward mask again, from the same key */
        apply_mask(x->dtype == TG_F64, tg_tensor_ptr(gy), tg_tensor_ptr(gx),
                   tg_tensor_numel(gx), p->key, p->rate, p->scale);
    if (st == TG_OK)
        grad_in[0] = tg_scoped(tg_retain(gx));
    tg_release(gy);
    tg_release(gx);
    return st;
}

/* "p=0.5" */
static void dropout_describe(const tg_node *node, char *buf, size_t n)
{
    const dropout_params *p = node->saved;
    if (p)
        snprintf(buf, n, "p=%g", p->rate);
    else if (n)
        buf[0] = '\0';
}

const tg_op_vtable tg_op_dropout_vtable = {
    .name = "dropout",
    .backward = dropout_backward,
    .free_saved = free,
    .describe = dropout_describe,
    .gradcheck_hints = 0,
    .shape_only_inputs = TG_OP_ALL_INPUTS, /* the mask comes from the saved key */
};
