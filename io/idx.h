/* io/idx.h -- read and write IDX files (the MNIST / Fashion-MNIST container).
 *
 * An IDX file is a 4-byte magic (0x00 0x00 <type code> <ndims>), ndims
 * big-endian 32-bit extents, then the elements row-major and big-endian. Files
 * may be gzip-compressed; the reader tells by content, not by name. */
#ifndef TG_IDX_H
#define TG_IDX_H

#include <stdbool.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* Reads the IDX file at path (plain or gzip) into *out: a NEW reference (not
 * scoped: datasets outlive training steps) to a contiguous tensor with the
 * file's shape. Type codes map to dtypes as
 *   0x08 unsigned byte -> u8,   0x09 signed byte -> i32,  0x0B i16 -> i32,
 *   0x0C i32 -> i32,           0x0D f32 -> f32,          0x0E f64 -> f64.
 * ndims must be 1..TG_MAX_DIMS. The payload must be exactly as long as the
 * header says: a short file is "truncated", a longer one has "trailing" bytes.
 * A gzip file must be whole: every member's CRC-32 and length trailer present
 * and right, nothing but further gzip members after the first (`cat a.gz b.gz`
 * is fine, trailing garbage is not); it is inflated no further than the
 * header's payload plus 64 KiB, and a header declaring more than the file can
 * hold (deflate packs at most ~1032:1) is refused before anything is inflated.
 * path must be a regular file: a FIFO, device or folder is refused at once,
 * never read (a FIFO would block).
 * On error *out is NULL and the status is one of
 *   TG_ERR_ARG    out or path is NULL;
 *   TG_ERR_IO     cannot open or read path, or it is not a regular file;
 *   TG_ERR_FORMAT bad content (not IDX, truncated, trailing bytes, corrupt gzip);
 *   TG_ERR_NOMEM  out of memory;
 * and the message starts with the path and says what is wrong. Never crashes
 * on any byte sequence (fuzzed: docs/reliability.md). */
tg_status tg_idx_read(tg_tensor **out, const char *path);

/* Writes t (u8, i32, f32 or f64; any strides; 1..TG_MAX_DIMS dims, extents below
 * 2^32) as an IDX file; gzip-compressed when gzip is true. Borrowed t. */
tg_status tg_idx_write(const char *path, const tg_tensor *t, bool gzip);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
