/* io/idx.c -- IDX reader and writer (plain or gzip through zlib).
 *
 * The header's extents are never trusted for allocation: the payload is read
 * into a buffer that grows only as bytes arrive, so a garbage header cannot ask
 * for terabytes. Only after the size matches exactly is the tensor created. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "io/idx.h"
#include "libtensor/tensor_impl.h"

/* Above this the header is garbage: no IDX file holds a terabyte. */
#define MAX_PAYLOAD ((uint64_t)1 << 40)

typedef struct idx_type {
    uint8_t code;
    int file_size; /* bytes per element in the file */
    tg_dtype dtype;
    const char *name;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, 1, TG_U8, "unsigned byte"},
    {0x09, 1, TG_I32, "signed byte"},
    {0x0B, 2, TG_I32, "int16"},
    {0x0C, 4, TG_I32, "int32"},
    {0x0D, 4, TG_F32, "float32"},
    {0x0E, 8, TG_F64, "float64"},
};

static const idx_type *type_by_code(uint8_t code)
{
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == code)
            return &idx_types[i];
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads up to n bytes; returns the count read (short only at end of data), or -1
 * on a zlib error, leaving its message in *zmsg. */
static int64_t read_some(gzFile gz, void *buf, uint64_t n, const char **zmsg,
                         int *zerr)
{
    uint64_t got = 0;
    while (got < n) {
        uint64_t chunk = n - got;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        int r = gzread(gz, (char *)buf + got, (unsigned)chunk);
        if (r < 0) {
            *zmsg = gzerror(gz, zerr);
            return -1;
        }
        if (r == 0) {
            /* A truncated gzip stream may report its error only here. */
            int e = 0;
            const char *m = gzerror(gz, &e);
            if (e != Z_OK && e != Z_STREAM_END) {
                *zmsg = m;
                *zerr = e;
                return -1;
            }
            break;
        }
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

static void dims_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%" PRId64, i ? "x" : "", shape[i]);
}

static tg_status zlib_error(const char *path, bool is_gz, int zerr, const char *zmsg,
                            const char *what)
{
    if (is_gz && zerr == Z_BUF_ERROR)
        return tg_error(TG_ERR_FORMAT,
                        "%s: truncated: the gzip stream ends unexpectedly in %s", path, what);
    if (is_gz && zerr == Z_DATA_ERROR)
        return tg_error(TG_ERR_FORMAT, "%s: corrupt gzip data in %s: %s", path, what,
                        zmsg ? zmsg : "?");
    return tg_error(TG_ERR_IO, "%s: read error in %s: %s", path, what, zmsg ? zmsg : "?");
}

/* Element i of a big-endian file buffer of the given type, as the dtype's value. */
static void decode(void *dst, const uint8_t *src, const idx_type *ty, int64_t n)
{
    switch (ty->code) {
    case 0x08:
        memcpy(dst, src, (size_t)n);
        break;
    case 0x09:
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)dst)[i] = (int8_t)src[i];
        break;
    case 0x0B:
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)dst)[i] = (int16_t)(uint16_t)((src[2 * i] << 8) | src[2 * i + 1]);
        break;
    case 0x0C:
    case 0x0D:
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *p = src + 4 * i;
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            memcpy((uint32_t *)dst + i, &v, 4);
        }
        break;
    case 0x0E:
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *p = src + 8 * i;
            uint64_t v = 0;
            for (int k = 0; k < 8; k++)
                v = v << 8 | p[k];
            memcpy((uint64_t *)dst + i, &v, 8);
        }
        break;
    }
}

tg_status tg_idx_read(tg_tensor **out, const char *path)
{
    if (!out)
        return tg_null_arg("tg_idx_read", "out");
    *out = NULL;
    if (!path)
        return tg_null_arg("tg_idx_read", "path");

    /* Look at the first bytes ourselves: gzopen reads plain files transparently,
     * so only this tells whether a ".gz" name lies. */
    FILE *f = fopen(path, "rb");
    if (!f)
        return tg_error(TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return tg_error(TG_ERR_IO, "%s: is a directory, not an IDX file", path);
    }
    uint8_t head[2] = {0, 0};
    size_t nhead = fread(head, 1, 2, f);
    fclose(f);
    bool is_gz = nhead == 2 && head[0] == 0x1f && head[1] == 0x8b;
    bool gz_name = ends_with(path, ".gz");
    if (nhead == 0)
        return tg_error(TG_ERR_FORMAT, "%s: empty file (expected an IDX header)", path);

    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return tg_error(TG_ERR_IO, "%s: cannot open: %s", path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1u << 17);

    tg_status st_ = TG_OK;
    uint8_t *payload = NULL;
    const char *zmsg = NULL;
    int zerr = Z_OK;

    uint8_t magic[4];
    int64_t n = read_some(gz, magic, 4, &zmsg, &zerr);
    if (n < 0) {
        st_ = zlib_error(path, is_gz, zerr, zmsg, "the header");
        goto done;
    }
    if (n == 0) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: empty %s(expected an IDX header)", path,
                       is_gz ? "after decompression " : "file ");
        goto done;
    }
    if (n < 4) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: truncated header: %d of the 4 magic bytes", path,
                       (int)n);
        goto done;
    }
    if (magic[0] != 0 || magic[1] != 0) {
        if (gz_name && !is_gz)
            st_ = tg_error(TG_ERR_FORMAT,
                           "%s: not gzip-compressed although the name ends in .gz, and not "
                           "a plain IDX file either (starts with %02x %02x %02x %02x)",
                           path, magic[0], magic[1], magic[2], magic[3]);
        else
            st_ = tg_error(TG_ERR_FORMAT,
                           "%s: not an IDX file: magic bytes %02x %02x %02x %02x (expected "
                           "00 00 <type> <ndims>)",
                           path, magic[0], magic[1], magic[2], magic[3]);
        goto done;
    }
    const idx_type *ty = type_by_code(magic[2]);
    if (!ty) {
        st_ = tg_error(TG_ERR_FORMAT,
                       "%s: unknown IDX type code 0x%02X (expected 0x08 u8, 0x09 i8, 0x0B "
                       "i16, 0x0C i32, 0x0D f32 or 0x0E f64)",
                       path, magic[2]);
        goto done;
    }
    int ndim = magic[3];
    if (ndim < 1 || ndim > TG_MAX_DIMS) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: IDX header declares %d dimensions (supported: 1..%d)",
                       path, ndim, TG_MAX_DIMS);
        goto done;
    }
    uint8_t ext[4 * TG_MAX_DIMS];
    n = read_some(gz, ext, (uint64_t)(4 * ndim), &zmsg, &zerr);
    if (n < 0) {
        st_ = zlib_error(path, is_gz, zerr, zmsg, "the header");
        goto done;
    }
    if (n < 4 * ndim) {
        st_ = tg_error(TG_ERR_FORMAT,
                       "%s: truncated header: %d dimensions declared but only %d of their %d "
                       "bytes present",
                       path, ndim, (int)n, 4 * ndim);
        goto done;
    }
    int64_t shape[TG_MAX_DIMS];
    uint64_t numel = 1;
    bool too_big = false;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *p = ext + 4 * i;
        shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                             (uint32_t)p[2] << 8 | p[3]);
        if (shape[i] != 0 && numel > MAX_PAYLOAD / (uint64_t)shape[i])
            too_big = true;
        else
            numel *= (uint64_t)shape[i];
    }
    char dims[160];
    dims_str(dims, sizeof dims, ndim, shape);
    for (int i = 0; i < ndim && !too_big; i++)
        if (shape[i] == 0)
            numel = 0;
    if (too_big || numel * (uint64_t)ty->file_size > MAX_PAYLOAD) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: IDX header declares %s %s elements, too large to "
                       "be real (corrupt header?)",
                       path, dims, ty->name);
        goto done;
    }
    uint64_t total = numel * (uint64_t)ty->file_size;

    /* Grow the buffer only as data arrives (see the file comment). */
    uint64_t cap = total < (1u << 20) ? total : (1u << 20), got = 0;
    payload = malloc(cap ? cap : 1);
    if (!payload) {
        st_ = tg_error(TG_ERR_NOMEM, "%s: out of memory reading the payload", path);
        goto done;
    }
    while (got < total) {
        if (got == cap) {
            uint64_t ncap = cap * 2 < total ? cap * 2 : total;
            uint8_t *p = realloc(payload, ncap);
            if (!p) {
                st_ = tg_error(TG_ERR_NOMEM, "%s: out of memory reading %" PRIu64 " bytes",
                               path, total);
                goto done;
            }
            payload = p;
            cap = ncap;
        }
        n = read_some(gz, payload + got, cap - got, &zmsg, &zerr);
        if (n < 0) {
            char what[64];
            snprintf(what, sizeof what, "the %" PRIu64 "-byte payload", total);
            if (is_gz && zerr == Z_BUF_ERROR)
                st_ = tg_error(TG_ERR_FORMAT,
                               "%s: truncated: header says %s = %" PRIu64
                               " bytes, but the gzip stream ends early (unexpected end of "
                               "file)",
                               path, dims, total);
            else
                st_ = zlib_error(path, is_gz, zerr, zmsg, what);
            goto done;
        }
        got += (uint64_t)n;
        if (got < cap)
            break; /* end of data */
    }
    if (got < total) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: truncated: header says %s = %" PRIu64
                       " bytes, found %" PRIu64,
                       path, dims, total, got);
        goto done;
    }
    uint64_t extra = 0;
    for (;;) {
        uint8_t scratch[4096];
        n = read_some(gz, scratch, sizeof scratch, &zmsg, &zerr);
        if (n <= 0)
            break; /* an error after the whole payload only concerns the extra bytes */
        extra += (uint64_t)n;
    }
    if (extra) {
        st_ = tg_error(TG_ERR_FORMAT, "%s: %" PRIu64 " trailing byte(s) after the %s = %"
                       PRIu64 " bytes the header declares",
                       path, extra, dims, total);
        goto done;
    }

    tg_tensor *t = tg_tensor_new_named("tg_idx_read", ty->dtype, ndim, shape);
    if (!t) {
        st_ = tg_last_status() ? tg_last_status() : TG_ERR_NOMEM;
        goto done;
    }
    decode(tg_tensor_data(t), payload, ty, (int64_t)numel);
    *out = t;

done:
    free(payload);
    gzclose(gz);
    return st_;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

tg_status tg_idx_write(const char *path, const tg_tensor *t, bool gzip)
{
    if (!path)
        return tg_null_arg("tg_idx_write", "path");
    if (!t)
        return tg_null_arg("tg_idx_write", "t");
    tg_dtype dt = tg_tensor_dtype(t);
    uint8_t code;
    int esize;
    switch (dt) {
    case TG_U8: code = 0x08; esize = 1; break;
    case TG_I32: code = 0x0C; esize = 4; break;
    case TG_F32: code = 0x0D; esize = 4; break;
    case TG_F64: code = 0x0E; esize = 8; break;
    default:
        return tg_error(TG_ERR_DTYPE, "tg_idx_write: IDX has no %s type (use u8, i32, f32 "
                        "or f64)", tg_dtype_name(dt));
    }
    int ndim = tg_tensor_ndim(t);
    const int64_t *shape = tg_tensor_shape(t);
    if (ndim < 1)
        return tg_error(TG_ERR_SHAPE, "tg_idx_write: IDX needs at least one dimension");
    uint8_t header[4 + 4 * TG_MAX_DIMS] = {0, 0, code, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > (int64_t)UINT32_MAX)
            return tg_error(TG_ERR_SHAPE, "tg_idx_write: extent %" PRId64 " of dimension %d "
                            "does not fit IDX's 32 bits", shape[i], i);
        put_be32(header + 4 + 4 * i, (uint32_t)shape[i]);
    }

    tg_scope *scope = tg_scope_push();
    if (!scope)
        return tg_error(TG_ERR_NOMEM, "tg_idx_write: out of memory");
    tg_status st = TG_OK;
    const tg_tensor *src = tg_tensor_is_contiguous(t) ? t : tg_tensor_copy(t);
    gzFile gz = NULL;
    if (!src || (st = tg_tensor_settle(src)) != TG_OK) { /* before creating the file */
        st = tg_last_status();
        goto done;
    }
    gz = gzopen(path, gzip ? "wb6" : "wbT");
    if (!gz) {
        st = tg_error(TG_ERR_IO, "%s: cannot create: %s", path,
                      errno ? strerror(errno) : "out of memory");
        goto done;
    }
    if (gzwrite(gz, header, (unsigned)(4 + 4 * ndim)) != 4 + 4 * ndim)
        goto write_failed;
    const uint8_t *data = tg_tensor_data(src);
    int64_t numel = tg_tensor_numel(src);
    uint8_t buf[1 << 14];
    int per = (int)sizeof buf / esize;
    for (int64_t i = 0; i < numel; i += per) {
        int64_t m = numel - i < per ? numel - i : per;
        for (int64_t k = 0; k < m; k++) {
            const uint8_t *e = data + (i + k) * esize;
            uint8_t *o = buf + k * esize;
            if (esize == 1) {
                o[0] = e[0];
            } else if (esize == 4) {
                uint32_t v;
                memcpy(&v, e, 4);
                put_be32(o, v);
            } else {
                uint64_t v;
                memcpy(&v, e, 8);
                put_be32(o, (uint32_t)(v >> 32));
                put_be32(o + 4, (uint32_t)v);
            }
        }
        if (gzwrite(gz, buf, (unsigned)(m * esize)) != (int)(m * esize))
            goto write_failed;
    }
    int zr = gzclose(gz);
    gz = NULL;
    if (zr != Z_OK) {
        st = tg_error(TG_ERR_IO, "%s: write failed (zlib error %d)", path, zr);
        remove(path);
    }
    goto done;

write_failed:;
    int zerr = 0;
    const char *msg = gzerror(gz, &zerr);
    st = tg_error(TG_ERR_IO, "%s: write failed: %s", path, msg);
    gzclose(gz);
    gz = NULL;
    remove(path);
done:
    tg_scope_pop(scope);
    return st;
}
