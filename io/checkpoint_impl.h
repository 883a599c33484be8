/* io/checkpoint_impl.h -- the checkpoint loader's internal entry points (not
 * installed): loading from bytes in memory, for the fuzz target and tests. */
#ifndef TG_CHECKPOINT_IMPL_H
#define TG_CHECKPOINT_IMPL_H

#include <stddef.h>

#include "io/checkpoint.h"

/* tg_checkpoint_load_ex on the bytes data[0..size) (borrowed) as if they were
 * a file called name (used in messages; NULL: "(image)"): the same checks,
 * the same errors. A new dict in *out, or NULL and an error. */
tg_status tg_checkpoint_load_image(tg_state_dict **out, const void *data, size_t size,
                                   const char *name, unsigned flags);

#endif
