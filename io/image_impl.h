/* io/image_impl.h -- the PNG/PGM reader on bytes in memory (private to the
 * library).
 *
 * For the fuzz targets (tests/fuzz/image.c) and tests: the same parsers and the same
 * messages as tg_image_read, without a file. */
#ifndef TG_IMAGE_IMPL_H
#define TG_IMAGE_IMPL_H

#include <stddef.h>

#include "libtensor/tensor.h"

/* Parses len bytes at bytes (borrowed) as a PNG or PGM image, exactly as
 * tg_image_read parses a file's content; name labels the messages ("(memory)"
 * when NULL). *out: a NEW reference to a u8 (H, W) tensor, or NULL on error. */
tg_status tg_image_read_mem(tg_tensor **out, const char *name, const void *bytes, size_t len);

#endif
