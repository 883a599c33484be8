/* io/image.c -- grayscale PNG (libpng) and PGM reading and writing, map grids.
 *
 * Readers load the whole file first and parse from memory, so a truncated file
 * is detected by position rather than by a failing stdio call, and libpng's
 * longjmp errors never leave a FILE behind. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file_impl.h"
#include "io/image.h"
#include "io/image_impl.h"
#include "libtensor/tensor_impl.h"

/* Bigger than any picture this library has reason to read. */
#define MAX_PIXELS ((int64_t)1 << 28)
#define MAX_FILE ((int64_t)1 << 30)

/* ---------------------------------------------------------------- shared */

/* Checks that t is (H, W) up to leading 1s and returns a new f64 copy of it.
 * Errors name the context (the public writer) and path, the file it names. */
static tg_tensor *as_f64_2d(const char *path, const tg_tensor *t, int64_t *h, int64_t *w)
{
    int nd = tg_tensor_ndim(t);
    const int64_t *sh = tg_tensor_shape(t);
    bool ok = nd >= 2;
    for (int i = 0; ok && i < nd - 2; i++)
        ok = sh[i] == 1;
    if (!ok || sh[nd - 2] < 1 || sh[nd - 1] < 1 || sh[nd - 2] > INT32_MAX ||
        sh[nd - 1] > INT32_MAX) {
        char buf[96];
        tg_error_here(TG_ERR_SHAPE, "%s: an image must be a non-empty (H, W) tensor (leading "
                      "extents of 1 allowed), got %s", path, tg_shape_str(buf, sizeof buf, nd, sh));
        return NULL;
    }
    *h = sh[nd - 2];
    *w = sh[nd - 1];
    tg_tensor *d = tg_tensor_new_owned(TG_F64, nd, sh);
    if (d && tg_tensor_copy_into(d, t) != TG_OK) {
        tg_release(d);
        return NULL;
    }
    return d;
}

static void range_of(const double *v, int64_t n, double *lo, double *hi)
{
    double a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        a = v[i] < a ? v[i] : a;
        b = v[i] > b ? v[i] : b;
    }
    *lo = a;
    *hi = b;
}

/* Maps v from [lo, hi] to 0..255; a degenerate range maps everything to 0. */
static uint8_t to_byte(double v, double lo, double hi)
{
    if (!(hi > lo) || isnan(v))
        return 0;
    double x = (v - lo) / (hi - lo) * 255.0;
    if (!(x > 0))
        return 0;
    if (x >= 255)
        return 255;
    return (uint8_t)(x + 0.5);
}

/* The image as bytes (malloc'd, caller frees), scaled per tg_png_write's rules.
 * Errors name the context. */
static uint8_t *to_gray8(const char *path, const tg_tensor *image, double lo, double hi,
                         int64_t *h, int64_t *w)
{
    if (!image) {
        tg_null_arg_here("image");
        return NULL;
    }
    tg_tensor *d = as_f64_2d(path, image, h, w);
    if (!d)
        return NULL;
    int64_t n = *h * *w;
    const double *v = tg_tensor_data(d);
    if (!(lo < hi))
        range_of(v, n, &lo, &hi);
    uint8_t *pix = malloc((size_t)n);
    if (!pix) {
        tg_release(d);
        tg_error_here(TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        pix[i] = to_byte(v[i], lo, hi);
    tg_release(d);
    return pix;
}

/* Reads the whole file (a regular file of at most MAX_FILE bytes) into a
 * malloc'd buffer. */
static tg_status slurp(uint8_t **out, size_t *len, const char *path)
{
    *out = NULL;
    *len = 0;
    FILE *f;
    uint64_t size;
    tg_status st = tg_open_regular(&f, &size, path, "an image");
    if (st != TG_OK)
        return st;
    if (size > (uint64_t)MAX_FILE) {
        fclose(f);
        return tg_error(TG_ERR_FORMAT, "%s: %llu bytes is too large for an image file", path,
                        (unsigned long long)size);
    }
    size_t n = (size_t)size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        free(buf);
        return tg_error(TG_ERR_IO, "%s: read error", path);
    }
    *out = buf;
    *len = got;
    return TG_OK;
}

tg_status tg_image_check_size(const tg_tensor *image, const char *path, int64_t height,
                              int64_t width)
{
    if (!image)
        return tg_null_arg("tg_image_check_size", "image");
    const char *p = path ? path : "image";
    int nd = tg_tensor_ndim(image);
    if (nd != 2) {
        char buf[96];
        return tg_error(TG_ERR_SHAPE, "%s: expected a %" PRId64 "x%" PRId64 " image (width x "
                        "height), got a tensor of shape %s", p, width, height,
                        tg_shape_str(buf, sizeof buf, nd, tg_tensor_shape(image)));
    }
    int64_t h = tg_tensor_dim(image, 0), w = tg_tensor_dim(image, 1);
    if (h != height || w != width)
        return tg_error(TG_ERR_SHAPE, "%s: expected a %" PRId64 "x%" PRId64 " image (width x "
                        "height), got %" PRId64 "x%" PRId64, p, width, height, w, h);
    return TG_OK;
}

/* ---------------------------------------------------------------- PNG */

typedef struct png_ctx {
    char msg[256];
    const uint8_t *data; /* reading from memory */
    size_t len, pos;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    /* Warnings (odd chunks, bad CRCs in ancillary data) do not stop a read. */
    (void)png;
    (void)msg;
}

static void png_from_memory(png_structp png, png_bytep out, png_size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos)
        png_error(png, "truncated: the file ends in the middle of the image");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* What both writers start with: the image as 8-bit gray (*pix, malloc'd; h x w)
 * and path created for writing (*f). Nothing to free on failure. Errors name
 * the context, which the writer enters. */
static tg_status begin_write(const char *path, const tg_tensor *image, double lo, double hi,
                             uint8_t **pix, int64_t *h, int64_t *w, FILE **f)
{
    if (!path)
        return tg_null_arg_here("path");
    *pix = to_gray8(path, image, lo, hi, h, w);
    if (!*pix)
        return tg_last_status();
    *f = fopen(path, "wb");
    if (!*f) {
        free(*pix);
        return tg_error_here(TG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    return TG_OK;
}

tg_status tg_png_write(const char *path, const tg_tensor *image, double lo, double hi)
{
    int64_t h, w;
    uint8_t *pix;
    FILE *f;
    const char *prev = tg_error_enter("tg_png_write");
    tg_status s = begin_write(path, image, lo, hi, &pix, &h, &w, &f);
    tg_error_leave(prev);
    if (s != TG_OK)
        return s;
    png_ctx ctx;
    ctx.msg[0] = '\0';
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        s = tg_error(TG_ERR_NOMEM, "tg_png_write: %s: out of memory", path);
    } else if (setjmp(png_jmpbuf(png))) {
        s = tg_error(TG_ERR_IO, "tg_png_write: %s: %s", path, ctx.msg);
    } else {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int64_t r = 0; r < h; r++)
            png_write_row(png, pix + r * w);
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(pix);
    if (fclose(f) != 0 && s == TG_OK)
        s = tg_error(TG_ERR_IO, "tg_png_write: %s: write failed: %s", path, strerror(errno));
    if (s != TG_OK)
        remove(path);
    return s;
}

static tg_status png_read_mem(tg_tensor **out, const char *path, const uint8_t *data,
                              size_t len)
{
    png_ctx ctx;
    ctx.msg[0] = '\0';
    ctx.data = data;
    ctx.len = len;
    ctx.pos = 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", path);
    }
    /* Assigned after setjmp and used after a longjmp: must be volatile. */
    tg_tensor *volatile t = NULL;
    png_bytep *volatile rows = NULL;
    tg_status s = TG_OK;
    if (setjmp(png_jmpbuf(png))) {
        s = tg_error(TG_ERR_FORMAT, "%s: corrupt PNG: %s", path, ctx.msg);
        goto done;
    }
    png_set_read_fn(png, &ctx, png_from_memory);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* `make fuzz` only (configure --enable-fuzzing): a mutated byte would
     * almost always fail a chunk CRC or the zlib checksum, and the fuzzer would
     * never get past them into the image data. Real builds keep both checks. */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#ifdef PNG_IGNORE_ADLER32
    png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
#endif
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
    if ((int64_t)w * h > MAX_PIXELS) {
        s = tg_error(TG_ERR_FORMAT, "%s: a %ux%u PNG is too large to read", path, (unsigned)w,
                     (unsigned)h);
        goto done;
    }
    /* The rows (a filter byte each) come deflated out of at most len bytes, and
     * deflate packs at best about 1032 to 1: a small file that claims more is
     * cut short or lying, and is refused before its pixels are allocated. */
    uint64_t raw = (uint64_t)h * ((uint64_t)png_get_rowbytes(png, info) + 1);
    if (raw > (uint64_t)len * 1040 + 4096) {
        s = tg_error(TG_ERR_FORMAT, "%s: truncated or corrupt: a %ux%u PNG needs %llu bytes "
                     "of pixel data, more than a %zu-byte file can hold", path, (unsigned)w,
                     (unsigned)h, (unsigned long long)raw, len);
        goto done;
    }
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (bd == 16)
        png_set_strip_16(png);
    if (ct & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(png);
    if (ct & PNG_COLOR_MASK_COLOR) /* RGB, RGBA and palette */
        png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 1 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != w) {
        s = tg_error(TG_ERR_FORMAT, "%s: PNG colour type %d, depth %d could not be converted "
                     "to 8-bit gray", path, ct, bd);
        goto done;
    }
    t = tg_tensor_new_named("tg_image_read", TG_U8, TG_SHAPE((int64_t)h, (int64_t)w));
    rows = malloc((size_t)h * sizeof *rows);
    if (!t || !rows) {
        s = tg_error(TG_ERR_NOMEM, "%s: out of memory for a %ux%u image", path, (unsigned)w,
                     (unsigned)h);
        goto done;
    }
    uint8_t *pix = tg_tensor_data(t);
    for (png_uint_32 r = 0; r < h; r++)
        rows[r] = pix + (size_t)r * w;
    png_read_image(png, rows);
    png_read_end(png, NULL);
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    if (s != TG_OK) {
        tg_release(t);
        return s;
    }
    *out = t;
    return TG_OK;
}

/* ---------------------------------------------------------------- PGM */

tg_status tg_pgm_write(const char *path, const tg_tensor *image, double lo, double hi)
{
    int64_t h, w;
    uint8_t *pix;
    FILE *f;
    const char *prev = tg_error_enter("tg_pgm_write");
    tg_status st = begin_write(path, image, lo, hi, &pix, &h, &w, &f);
    tg_error_leave(prev);
    if (st != TG_OK)
        return st;
    bool ok = fprintf(f, "P5\n%" PRId64 " %" PRId64 "\n255\n", w, h) > 0 &&
              fwrite(pix, 1, (size_t)(w * h), f) == (size_t)(w * h);
    free(pix);
    if (fclose(f) != 0)
        ok = false;
    if (!ok) {
        remove(path);
        return tg_error(TG_ERR_IO, "tg_pgm_write: %s: write failed: %s", path, strerror(errno));
    }
    return TG_OK;
}

typedef struct pgm_reader {
    const uint8_t *p;
    size_t len, pos;
} pgm_reader;

static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Skips whitespace and '#' comments. */
static void pgm_skip(pgm_reader *r)
{
    while (r->pos < r->len) {
        if (is_space(r->p[r->pos])) {
            r->pos++;
        } else if (r->p[r->pos] == '#') {
            while (r->pos < r->len && r->p[r->pos] != '\n')
                r->pos++;
        } else {
            break;
        }
    }
}

/* A decimal number up to max; -1 when absent or malformed, -2 when too big. */
static int64_t pgm_int(pgm_reader *r, int64_t max)
{
    pgm_skip(r);
    if (r->pos >= r->len || r->p[r->pos] < '0' || r->p[r->pos] > '9')
        return -1;
    int64_t v = 0;
    while (r->pos < r->len && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        v = v * 10 + (r->p[r->pos++] - '0');
        if (v > max)
            return -2;
    }
    if (r->pos < r->len && !is_space(r->p[r->pos]) && r->p[r->pos] != '#')
        return -1;
    return v;
}

static tg_status pgm_read_mem(tg_tensor **out, const char *path, const uint8_t *data,
                              size_t len)
{
    pgm_reader r = {data, len, 2};
    bool ascii = data[1] == '2';
    int64_t w = pgm_int(&r, INT32_MAX), h = pgm_int(&r, INT32_MAX), maxval = pgm_int(&r, 65535);
    if (w < 0 || h < 0 || maxval < 0)
        return tg_error(TG_ERR_FORMAT, "%s: %s PGM header (expected \"P%c <width> <height> "
                        "<maxval>\" with maxval 1..65535)",
                        path, r.pos >= len ? "truncated" : "malformed", ascii ? '2' : '5');
    if (w == 0 || h == 0 || maxval == 0)
        return tg_error(TG_ERR_FORMAT, "%s: PGM of %" PRId64 "x%" PRId64 " with maxval %" PRId64
                        " (width, height and maxval must be >= 1)", path, w, h, maxval);
    if (w * h > MAX_PIXELS)
        return tg_error(TG_ERR_FORMAT, "%s: a %" PRId64 "x%" PRId64 " PGM is too large to read",
                        path, w, h);
    int64_t n = w * h;
    int bps = maxval > 255 ? 2 : 1;
    /* Each ASCII sample takes a digit and a separator at least: refuse a header
     * its file cannot fill before allocating the image. */
    if (ascii && (int64_t)(len - r.pos) < 2 * n)
        return tg_error(TG_ERR_FORMAT, "%s: truncated: a %" PRId64 "x%" PRId64 " ASCII PGM "
                        "needs at least %" PRId64 " bytes of samples, found %zu", path, w, h,
                        2 * n, len - r.pos);
    if (!ascii) {
        /* Exactly one whitespace byte separates maxval from the samples. */
        if (r.pos >= len)
            return tg_error(TG_ERR_FORMAT, "%s: truncated: a %" PRId64 "x%" PRId64 " PGM needs %"
                            PRId64 " bytes of pixels, found 0", path, w, h, n * bps);
        r.pos++;
        if ((int64_t)(len - r.pos) < n * bps)
            return tg_error(TG_ERR_FORMAT, "%s: truncated: a %" PRId64 "x%" PRId64 " PGM needs %"
                            PRId64 " bytes of pixels, found %zu", path, w, h, n * bps,
                            len - r.pos);
    }
    tg_tensor *t = tg_tensor_new_named("tg_image_read", TG_U8, TG_SHAPE(h, w));
    if (!t)
        return tg_last_status();
    uint8_t *pix = tg_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (ascii) {
            v = pgm_int(&r, 65535);
            if (v == -1) {
                tg_release(t);
                return tg_error(TG_ERR_FORMAT, "%s: truncated or malformed: sample %" PRId64
                                " of %" PRId64 " is missing", path, i + 1, n);
            }
        } else if (bps == 1) {
            v = data[r.pos + (size_t)i];
        } else {
            v = data[r.pos + 2 * (size_t)i] << 8 | data[r.pos + 2 * (size_t)i + 1];
        }
        if (v > maxval || v < 0) {
            tg_release(t);
            return tg_error(TG_ERR_FORMAT, "%s: sample %" PRId64 " is larger than maxval %" PRId64,
                            path, i + 1, maxval);
        }
        pix[i] = maxval == 255 ? (uint8_t)v : (uint8_t)((v * 255 + maxval / 2) / maxval);
    }
    *out = t;
    return TG_OK;
}

tg_status tg_image_read_mem(tg_tensor **out, const char *name, const void *bytes, size_t len)
{
    if (!out)
        return tg_null_arg("tg_image_read_mem", "out");
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!bytes && len)
        return tg_null_arg("tg_image_read_mem", "bytes");
    const uint8_t *data = bytes;
    if (len == 0)
        return tg_error(TG_ERR_FORMAT, "%s: empty file, not a PNG or PGM image", name);
    if (len >= 8 && png_sig_cmp(data, 0, 8) == 0)
        return png_read_mem(out, name, data, len);
    if (len >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '2'))
        return pgm_read_mem(out, name, data, len);
    if (len < 8 && png_sig_cmp(data, 0, len) == 0)
        return tg_error(TG_ERR_FORMAT, "%s: truncated PNG (%zu bytes)", name, len);
    return tg_error(TG_ERR_FORMAT, "%s: not a PNG or PGM (P5/P2) image (starts with %02x %02x)",
                    name, data[0], len > 1 ? data[1] : 0);
}

tg_status tg_image_read(tg_tensor **out, const char *path)
{
    if (!out)
        return tg_null_arg("tg_image_read", "out");
    *out = NULL;
    if (!path)
        return tg_null_arg("tg_image_read", "path");
    uint8_t *data;
    size_t len;
    tg_status s = slurp(&data, &len, path);
    if (s != TG_OK)
        return s;
    s = tg_image_read_mem(out, path, data, len);
    free(data);
    return s;
}

/* ---------------------------------------------------------------- grids */

tg_tensor *tg_image_grid(const tg_tensor *maps, const tg_grid_opts *opts)
{
    static const char fn[] = "tg_image_grid";
    if (!maps)
        return tg_null_arg(fn, "maps"), NULL;
    tg_grid_opts o = TG_GRID_OPTS_INIT;
    if (opts)
        o = *opts;
    int nd = tg_tensor_ndim(maps);
    const int64_t *sh = tg_tensor_shape(maps);
    char buf[96];
    if (!(nd == 3 || (nd == 4 && sh[1] == 1)) || sh[0] < 1 || sh[nd - 2] < 1 || sh[nd - 1] < 1) {
        tg_error(TG_ERR_SHAPE, "%s: maps must be (N, H, W) or (N, 1, H, W) with N, H, W >= 1, "
                 "got %s", fn, tg_shape_str(buf, sizeof buf, nd, sh));
        return NULL;
    }
    if (o.ncols < 0 || o.scale < 1 || o.scale > 64) {
        tg_error(TG_ERR_ARG, "%s: ncols must be >= 0 and scale 1..64, got %d and %d", fn,
                 o.ncols, o.scale);
        return NULL;
    }
    int64_t n = sh[0], h = sh[nd - 2], w = sh[nd - 1], s = o.scale;
    int64_t cols = o.ncols ? o.ncols : (int64_t)ceil(sqrt((double)n));
    if (cols > n)
        cols = n;
    int64_t rows = (n + cols - 1) / cols;
    int64_t gh = rows * (h * s + 1) + 1, gw = cols * (w * s + 1) + 1;
    if (gh * gw > MAX_PIXELS) {
        tg_error(TG_ERR_SHAPE, "%s: a %" PRId64 "x%" PRId64 " grid is too large", fn, gw, gh);
        return NULL;
    }
    tg_tensor *d = tg_tensor_new_named(fn, TG_F64, nd, sh);
    if (!d || tg_tensor_copy_into(d, maps) != TG_OK) {
        tg_release(d);
        return NULL;
    }
    tg_tensor *g = tg_tensor_new_named(fn, TG_U8, TG_SHAPE(gh, gw));
    if (!g) {
        tg_release(d);
        return NULL;
    }
    uint8_t *out = tg_tensor_data(g);
    memset(out, o.border, (size_t)(gh * gw));
    const double *v = tg_tensor_data(d);
    double glo = o.lo, ghi = o.hi;
    bool fixed = o.lo < o.hi;
    if (!fixed && !o.per_map_scale)
        range_of(v, n * h * w, &glo, &ghi);
    for (int64_t k = 0; k < n; k++) {
        const double *m = v + k * h * w;
        double lo = glo, hi = ghi;
        if (!fixed && o.per_map_scale)
            range_of(m, h * w, &lo, &hi);
        int64_t y0 = (k / cols) * (h * s + 1) + 1, x0 = (k % cols) * (w * s + 1) + 1;
        for (int64_t y = 0; y < h * s; y++)
            for (int64_t x = 0; x < w * s; x++)
                out[(y0 + y) * gw + x0 + x] = to_byte(m[(y / s) * w + x / s], lo, hi);
    }
    tg_release(d);
    return tg_scoped(g);
}
