/* libtensor/rng.h -- the seeded random generator (xoshiro256**).
 *
 * The state is four 64-bit words, so saving and restoring it is exact. One global
 * generator (process-wide, documented shared state) serves initialisers, dropout
 * and shuffles unless a caller passes its own. */
#ifndef TG_RNG_H
#define TG_RNG_H

#include <stdint.h>

#include "error.h"
#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_rng {
    uint64_t s[4];
} tg_rng;

#define TG_RNG_STATE_WORDS 4

/* Seeds from one 64-bit value (expanded with splitmix64). */
void tg_rng_seed(tg_rng *rng, uint64_t seed);
uint64_t tg_rng_next_u64(tg_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double tg_rng_uniform(tg_rng *rng);
/* Standard normal (Box-Muller; consumes two uniforms, keeps no cache). */
double tg_rng_normal(tg_rng *rng);
/* Uniform integer in [0, n); n > 0. Unbiased. n == 0 returns 0 with TG_ERR_ARG set
 * and leaves the generator as it was. */
uint64_t tg_rng_below(tg_rng *rng, uint64_t n);

/* The global generator (borrowed). Seeded with 0 until tg_manual_seed(). */
tg_rng *tg_rng_global(void);
/* Seeds the global generator: one seed makes a whole run reproducible. */
void tg_manual_seed(uint64_t seed);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
