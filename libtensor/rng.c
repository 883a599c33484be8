/* libtensor/rng.c -- xoshiro256** seeded by splitmix64, and the global generator.
 *
 * Four 64-bit words are the whole state (Box-Muller keeps no spare), so a
 * checkpoint that saves them resumes the exact sequence. */
#include <math.h>

#include "libtensor/tensor_impl.h"

/* splitmix64 turns one seed into well-mixed words (xoshiro must not start at 0). */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tg_rng_seed(tg_rng *rng, uint64_t seed)
{
    if (!rng) {
        tg_null_arg("tg_rng_seed", "rng");
        return;
    }
    for (int i = 0; i < TG_RNG_STATE_WORDS; i++)
        rng->s[i] = splitmix64(&seed);
}

uint64_t tg_rng_next_u64(tg_rng *rng)
{
    if (!rng)
        return tg_null_arg("tg_rng_next_u64", "rng"), 0;
    uint64_t *s = rng->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double tg_rng_uniform(tg_rng *rng)
{
    return (double)(tg_rng_next_u64(rng) >> 11) * 0x1.0p-53;
}

double tg_rng_normal(tg_rng *rng)
{
    /* 1 - u lies in (0, 1], so the log is finite */
    double u1 = 1.0 - tg_rng_uniform(rng);
    double u2 = tg_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t tg_rng_below(tg_rng *rng, uint64_t n)
{
    if (n == 0) { /* [0, 0) is empty: a caller's bug, reported, the generator untouched */
        tg_error(TG_ERR_ARG, "tg_rng_below: n must be > 0 (no integer lies in [0, 0))");
        return 0;
    }
    /* Lemire: the high word of x*n is uniform in [0, n) once the low words that
     * would over-represent some results (fewer than 2^64 mod n of them) are
     * rejected. */
    unsigned __int128 m = (unsigned __int128)tg_rng_next_u64(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (unsigned __int128)tg_rng_next_u64(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* tg_rng_seed(&global, 0), precomputed so the generator needs no lazy setup. */
static tg_rng global = {{0xe220a8397b1dcdafULL, 0x6e789e6aa1b965f4ULL,
                         0x06c45d188009454fULL, 0xf88bb8a8724c81ecULL}};

tg_rng *tg_rng_global(void)
{
    return &global;
}

void tg_manual_seed(uint64_t seed)
{
    tg_rng_seed(&global, seed);
}
