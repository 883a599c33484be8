/* io/idx_impl.h -- the IDX reader on bytes in memory (private to the library).
 *
 * For the fuzz targets (tests/fuzz/idx.c) and tests: the same parser and the same
 * messages as tg_idx_read, without a file. */
#ifndef TG_IDX_IMPL_H
#define TG_IDX_IMPL_H

#include <stddef.h>

#include "libtensor/tensor.h"

/* Parses len bytes at data (borrowed) as an IDX file, plain or gzip, exactly as
 * tg_idx_read parses a file's content; name labels the messages ("(memory)"
 * when NULL). *out: a NEW reference, or NULL on error. */
tg_status tg_idx_read_mem(tg_tensor **out, const char *name, const void *data, size_t len);

#endif
