/* io/image.h -- 8-bit grayscale images: PNG (libpng) and PGM, and grids of maps.
 *
 * Enough for a classifier's predict command (read a user's 28x28 picture) and
 * for pictures of feature maps and filters; not a general imaging library. */
#ifndef TG_IMAGE_H
#define TG_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "../libtensor/tensor.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

/* Writes image (borrowed; any dtype; shape (H, W), or with leading extents of 1
 * such as (1, 1, H, W)) as an 8-bit grayscale PNG. Values map linearly from
 * [lo, hi] to [0, 255], clamped, rounded. When lo >= hi (pass 0, 0) the range
 * is the image's own min..max (a constant image becomes 0). NaN becomes 0.
 * A failed write removes the partial file. */
tg_status tg_png_write(const char *path, const tg_tensor *image, double lo, double hi);
/* The same as a binary PGM (P5, maxval 255). */
tg_status tg_pgm_write(const char *path, const tg_tensor *image, double lo, double hi);

/* Reads a PNG or a PGM (binary P5 or ASCII P2), told apart by content, into *out:
 * a NEW reference to a u8 tensor (H, W). PNG colour, palette, alpha and 16-bit
 * images are converted with libpng's transforms (RGB to gray with the Rec. 709
 * weights, alpha dropped, 16 to 8 bits); PGM samples with a maxval other than 255
 * are rescaled to 0..255. path must be a regular file (a FIFO or device is
 * refused at once with TG_ERR_IO, never read). A header claiming more pixels
 * than the file's bytes can encode is refused before the image is allocated.
 * Errors: TG_ERR_ARG for a NULL argument, TG_ERR_IO (cannot open or read, not
 * a regular file), TG_ERR_FORMAT (not a PNG or PGM, truncated, corrupt),
 * TG_ERR_NOMEM; messages name the file and what is wrong. */
tg_status tg_image_read(tg_tensor **out, const char *path);

/* Fails with TG_ERR_SHAPE "PATH: expected a 28x28 image (width x height), got
 * 32x30" unless image (H, W) is height x width. path only labels the message
 * (may be NULL). */
tg_status tg_image_check_size(const tg_tensor *image, const char *path, int64_t height,
                              int64_t width);

typedef struct tg_grid_opts {
    int ncols;           /* tiles per row; 0: ceil(sqrt(N)) */
    bool per_map_scale;  /* true (default): each map spans 0..255 on its own; false:
                            one range over all maps */
    double lo, hi;       /* lo < hi: this fixed range for every map (overrides both) */
    uint8_t border;      /* value of the 1-pixel border around every tile; default 255 */
    int scale;           /* each value drawn as scale x scale pixels; default 1 */
} tg_grid_opts;
#define TG_GRID_OPTS_INIT { 0, true, 0.0, 0.0, 255, 1 }

/* Tiles maps (N, H, W) -- or (N, 1, H, W), any dtype -- row-major into one u8
 * image with a 1-pixel border around and between the tiles, ready for
 * tg_png_write(path, grid, 0, 255). Unused cells of the last row are border
 * colour. opts may be NULL (defaults). Returns a scoped reference, or NULL. */
tg_tensor *tg_image_grid(const tg_tensor *maps, const tg_grid_opts *opts);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
