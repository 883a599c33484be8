/* io/idx.c -- IDX reader and writer (plain or gzip through zlib).
 *
 * The header's extents are never trusted for allocation: the payload is read
 * into a buffer that grows only as bytes arrive, so a garbage header cannot ask
 * for terabytes, and a gzip file is inflated no further than the header's
 * payload plus a little to see that the data ends there (a gzip bomb costs
 * nothing). The whole input must check out -- exact length, gzip CRC and length
 * trailer, nothing after the last gzip member -- before the tensor is created.
 * Reads regular files only (a FIFO would block), or memory (io/idx_impl.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/file_impl.h"
#include "io/idx.h"
#include "io/idx_impl.h"
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

static void dims_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%" PRId64, i ? "x" : "", shape[i]);
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

/* ---------------------------------------------------------------- reading */

/* The fuzz build (configure --enable-fuzzing) reads files 13 bytes at a time,
 * so that every input crosses many refills of the buffer (gz_fill). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define IDX_INBUF 13
#else
#define IDX_INBUF (1 << 16)
#endif

/* Where the bytes come from (a regular file or memory) and, for a gzip file,
 * the inflate state. Every read goes through get(), which yields the IDX bytes
 * (decompressed when gz) and reports any damage as an error; idx_parse reads
 * on past the payload, so damage after it (a bad trailer, garbage) counts too. */
typedef struct idx_src {
    const char *path;     /* names the input in messages */
    FILE *f;              /* a file, or NULL when reading memory */
    const uint8_t *mem;   /* memory input and its length */
    uint64_t size;        /* bytes of the input (the file's size) */
    uint64_t fed;         /* input bytes handed to zlib (or read, plain) so far */
    bool gz;
    bool zinit;           /* zs needs inflateEnd */
    bool done;            /* gz: the last member ended exactly at the end of input */
    z_stream zs;
    uint8_t in[IDX_INBUF]; /* file input buffer (gz) */
} idx_src;

/* Raw input bytes: the next at most n from the file or memory; 0 at the end. */
static tg_status raw_read(idx_src *s, uint8_t *buf, size_t n, size_t *got)
{
    *got = 0;
    if (s->f) {
        *got = fread(buf, 1, n, s->f);
        if (*got < n && ferror(s->f))
            return tg_error(TG_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
    } else {
        uint64_t left = s->size - s->fed;
        *got = left < n ? (size_t)left : n;
        memcpy(buf, s->mem + s->fed, *got);
    }
    s->fed += *got;
    return TG_OK;
}

/* Keeps at least two unread input bytes in zs when the input has them (a
 * member's end is told from a next member by its two magic bytes). */
static tg_status gz_fill(idx_src *s)
{
    if (s->zs.avail_in >= 2 || s->fed == s->size)
        return TG_OK;
    if (!s->f) {
        /* Memory is handed to zlib in place, at most 1 GiB at a time. */
        if (s->zs.avail_in == 0)
            s->zs.next_in = (Bytef *)(uintptr_t)(s->mem + s->fed);
        uint64_t left = s->size - s->fed, room = (1u << 30) - s->zs.avail_in;
        uint64_t take = left < room ? left : room;
        s->zs.avail_in += (uInt)take;
        s->fed += take;
        return TG_OK;
    }
    if (s->zs.avail_in) /* the unread byte of the last fill, if any */
        memmove(s->in, s->zs.next_in, s->zs.avail_in);
    size_t got;
    tg_status st = raw_read(s, s->in + s->zs.avail_in, sizeof s->in - s->zs.avail_in, &got);
    s->zs.next_in = s->in;
    s->zs.avail_in += (uInt)got;
    return st;
}

/* Up to n decompressed bytes into buf; *got < n only at the clean end of the
 * data. The end is clean only when the last gzip member's CRC-32 and length
 * trailer match (zlib checks them before it reports the member's end) and
 * nothing but further members follows it. */
static tg_status gz_get(idx_src *s, uint8_t *buf, uint64_t n, uint64_t *got)
{
    *got = 0;
    while (*got < n && !s->done) {
        tg_status st = gz_fill(s);
        if (st != TG_OK)
            return st;
        uint64_t want = n - *got;
        s->zs.next_out = buf + *got;
        s->zs.avail_out = want < (1u << 30) ? (uInt)want : (1u << 30);
        uInt before = s->zs.avail_out;
        int r = inflate(&s->zs, Z_NO_FLUSH);
        *got += before - s->zs.avail_out;
        if (r == Z_STREAM_END) {
            if ((st = gz_fill(s)) != TG_OK)
                return st;
            if (s->zs.avail_in == 0) {
                s->done = true;
            } else if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f &&
                       s->zs.next_in[1] == 0x8b) {
                inflateReset(&s->zs); /* another member (as `cat a.gz b.gz` makes) */
            } else {
                return tg_error(TG_ERR_FORMAT, "%s: %" PRIu64 " byte(s) of garbage after the "
                                "end of the gzip data", s->path,
                                (s->size > s->fed ? s->size - s->fed : 0) + s->zs.avail_in);
            }
        } else if (r == Z_MEM_ERROR) {
            return tg_error(TG_ERR_NOMEM, "%s: out of memory decompressing", s->path);
        } else if (r == Z_BUF_ERROR) {
            /* No progress possible: the input ended inside a member. */
            return tg_error(TG_ERR_FORMAT, "%s: truncated: the gzip stream ends unexpectedly "
                            "(the file is cut short, or its CRC/length trailer is missing)",
                            s->path);
        } else if (r != Z_OK) {
            return tg_error(TG_ERR_FORMAT, "%s: corrupt gzip data: %s", s->path,
                            s->zs.msg ? s->zs.msg : "invalid stream");
        }
    }
    return TG_OK;
}

/* Up to n IDX bytes (decompressed when gz); *got < n only at the end. */
static tg_status get(idx_src *s, uint8_t *buf, uint64_t n, uint64_t *got)
{
    if (s->gz)
        return gz_get(s, buf, n, got);
    *got = 0;
    while (*got < n) {
        uint64_t want = n - *got;
        size_t k;
        tg_status st = raw_read(s, buf + *got, want < (1u << 30) ? (size_t)want : (1u << 30),
                                &k);
        if (st != TG_OK)
            return st;
        if (k == 0)
            break;
        *got += k;
    }
    return TG_OK;
}

/* A gzip file of this many bytes inflates to at most about 1032 times as many
 * (deflate's best case, long runs of one byte); the slack covers headers. */
static uint64_t gz_max_output(uint64_t size)
{
    return size > (UINT64_MAX - 4096) / 1040 ? UINT64_MAX : size * 1040 + 4096;
}

/* The parse shared by the file and memory entry points; s is set up (gz told,
 * zlib initialised for gz). */
static tg_status idx_parse(tg_tensor **out, idx_src *s)
{
    const char *path = s->path;
    uint8_t *payload = NULL;
    tg_status st;
    uint64_t n;

    uint8_t magic[4];
    if ((st = get(s, magic, 4, &n)) != TG_OK)
        goto done;
    if (n == 0) {
        st = tg_error(TG_ERR_FORMAT, "%s: empty %s(expected an IDX header)", path,
                      s->gz ? "after decompression " : "file ");
        goto done;
    }
    if (n < 4) {
        st = tg_error(TG_ERR_FORMAT, "%s: truncated header: %d of the 4 magic bytes", path,
                      (int)n);
        goto done;
    }
    if (magic[0] != 0 || magic[1] != 0) {
        if (!s->gz && s->f && ends_with(path, ".gz"))
            st = tg_error(TG_ERR_FORMAT,
                          "%s: not gzip-compressed although the name ends in .gz, and not "
                          "a plain IDX file either (starts with %02x %02x %02x %02x)",
                          path, magic[0], magic[1], magic[2], magic[3]);
        else
            st = tg_error(TG_ERR_FORMAT,
                          "%s: not an IDX file: magic bytes %02x %02x %02x %02x (expected "
                          "00 00 <type> <ndims>)",
                          path, magic[0], magic[1], magic[2], magic[3]);
        goto done;
    }
    const idx_type *ty = type_by_code(magic[2]);
    if (!ty) {
        st = tg_error(TG_ERR_FORMAT,
                      "%s: unknown IDX type code 0x%02X (expected 0x08 u8, 0x09 i8, 0x0B "
                      "i16, 0x0C i32, 0x0D f32 or 0x0E f64)",
                      path, magic[2]);
        goto done;
    }
    int ndim = magic[3];
    if (ndim < 1 || ndim > TG_MAX_DIMS) {
        st = tg_error(TG_ERR_FORMAT, "%s: IDX header declares %d dimensions (supported: 1..%d)",
                      path, ndim, TG_MAX_DIMS);
        goto done;
    }
    uint8_t ext[4 * TG_MAX_DIMS];
    if ((st = get(s, ext, (uint64_t)(4 * ndim), &n)) != TG_OK)
        goto done;
    if (n < (uint64_t)(4 * ndim)) {
        st = tg_error(TG_ERR_FORMAT,
                      "%s: truncated header: %d dimensions declared but only %d of their %d "
                      "bytes present",
                      path, ndim, (int)n, 4 * ndim);
        goto done;
    }
    int64_t shape[TG_MAX_DIMS];
    /* Both the element count and the product of the non-zero extents are
     * bounded: a tensor like 0 x 2^32 x 2^32 x 2^32 holds nothing but its shape
     * arithmetic would overflow. */
    uint64_t numel = 1, nonzero = 1;
    bool too_big = false;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *p = ext + 4 * i;
        shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                             (uint32_t)p[2] << 8 | p[3]);
        if (shape[i] == 0)
            continue;
        if (nonzero > MAX_PAYLOAD / (uint64_t)shape[i])
            too_big = true;
        else
            nonzero *= (uint64_t)shape[i];
    }
    numel = nonzero;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            numel = 0;
    char dims[160];
    dims_str(dims, sizeof dims, ndim, shape);
    if (too_big || numel * (uint64_t)ty->file_size > MAX_PAYLOAD) {
        st = tg_error(TG_ERR_FORMAT, "%s: IDX header declares %s %s elements, too large to "
                      "be real (corrupt header?)",
                      path, dims, ty->name);
        goto done;
    }
    uint64_t total = numel * (uint64_t)ty->file_size;
    uint64_t head = 4 + 4 * (uint64_t)ndim;

    /* What the input's size allows, before reading (or inflating) anything
     * more: a plain file must hold exactly the payload, a gzip file cannot
     * inflate past deflate's best ratio (a small bomb declaring gigabytes). */
    uint64_t body = s->size > head ? s->size - head : 0;
    if (!s->gz && body < total) {
        st = tg_error(TG_ERR_FORMAT, "%s: truncated: header says %s = %" PRIu64
                      " bytes, found %" PRIu64, path, dims, total, body);
        goto done;
    }
    if (!s->gz && body > total) {
        st = tg_error(TG_ERR_FORMAT, "%s: %" PRIu64 " trailing byte(s) after the %s = %"
                      PRIu64 " bytes the header declares",
                      path, body - total, dims, total);
        goto done;
    }
    if (s->gz && head + total > gz_max_output(s->size)) {
        st = tg_error(TG_ERR_FORMAT, "%s: truncated or corrupt: header says %s = %" PRIu64
                      " bytes, more than a gzip file of %" PRIu64 " bytes can hold",
                      path, dims, total, s->size);
        goto done;
    }

    /* Grow the buffer only as data arrives (see the file comment). */
    uint64_t cap = total < (1u << 20) ? total : (1u << 20), got = 0;
    payload = malloc(cap ? cap : 1);
    if (!payload) {
        st = tg_error(TG_ERR_NOMEM, "%s: out of memory reading the payload", path);
        goto done;
    }
    while (got < total) {
        if (got == cap) {
            uint64_t ncap = cap * 2 < total ? cap * 2 : total;
            uint8_t *p = realloc(payload, ncap);
            if (!p) {
                st = tg_error(TG_ERR_NOMEM, "%s: out of memory reading %" PRIu64 " bytes",
                              path, total);
                goto done;
            }
            payload = p;
            cap = ncap;
        }
        if ((st = get(s, payload + got, cap - got, &n)) != TG_OK)
            goto done;
        got += n;
        if (got < cap)
            break; /* end of data */
    }
    if (got < total) {
        st = tg_error(TG_ERR_FORMAT, "%s: truncated: header says %s = %" PRIu64
                      " bytes, found %" PRIu64,
                      path, dims, total, got);
        goto done;
    }
    /* The end must be clean too: no more data (counted up to 64 KiB, not
     * inflated further) and, for gzip, a trailer that matches. */
    uint8_t scratch[4096];
    uint64_t extra = 0;
    while (extra < ((uint64_t)1 << 16)) {
        if ((st = get(s, scratch, sizeof scratch, &n)) != TG_OK)
            goto done;
        if (n == 0)
            break;
        extra += n;
    }
    if (extra) {
        st = tg_error(TG_ERR_FORMAT, "%s: %s%" PRIu64 " trailing byte(s) after the %s = %"
                      PRIu64 " bytes the header declares",
                      path, extra >= ((uint64_t)1 << 16) ? "at least " : "", extra, dims,
                      total);
        goto done;
    }

    tg_tensor *t = tg_tensor_new_named("tg_idx_read", ty->dtype, ndim, shape);
    if (!t) {
        st = tg_last_status() == TG_ERR_NOMEM ? TG_ERR_NOMEM : TG_ERR_FORMAT;
        goto done;
    }
    decode(tg_tensor_data(t), payload, ty, (int64_t)numel);
    *out = t;

done:
    free(payload);
    return st;
}

/* Sets up the inflate state when the input starts with the gzip magic. */
static tg_status src_begin(idx_src *s, const uint8_t head[2], size_t nhead)
{
    s->gz = nhead == 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (!s->gz)
        return TG_OK;
    memset(&s->zs, 0, sizeof s->zs);
    if (inflateInit2(&s->zs, 15 + 16) != Z_OK) /* gzip only, checks the trailer */
        return tg_error(TG_ERR_NOMEM, "%s: out of memory starting zlib", s->path);
    s->zinit = true;
    return TG_OK;
}

static void src_end(idx_src *s)
{
    if (s->zinit)
        inflateEnd(&s->zs);
    if (s->f)
        fclose(s->f);
}

tg_status tg_idx_read(tg_tensor **out, const char *path)
{
    if (!out)
        return tg_null_arg("tg_idx_read", "out");
    *out = NULL;
    if (!path)
        return tg_null_arg("tg_idx_read", "path");
    idx_src *s = calloc(1, sizeof *s);
    if (!s)
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", path);
    s->path = path;
    tg_status st = tg_open_regular(&s->f, &s->size, path, "an IDX file");
    uint8_t head[2] = {0, 0};
    size_t nhead = 0;
    if (st == TG_OK)
        st = raw_read(s, head, 2, &nhead);
    if (st == TG_OK && nhead == 0)
        st = tg_error(TG_ERR_FORMAT, "%s: empty file (expected an IDX header)", path);
    if (st == TG_OK && fseek(s->f, 0, SEEK_SET) != 0)
        st = tg_error(TG_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    s->fed = 0;
    if (st == TG_OK)
        st = src_begin(s, head, nhead);
    if (st == TG_OK)
        st = idx_parse(out, s);
    src_end(s);
    free(s);
    return st;
}

tg_status tg_idx_read_mem(tg_tensor **out, const char *name, const void *data, size_t len)
{
    if (!out)
        return tg_null_arg("tg_idx_read_mem", "out");
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!data && len)
        return tg_null_arg("tg_idx_read_mem", "data");
    idx_src *s = calloc(1, sizeof *s);
    if (!s)
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", name);
    s->path = name;
    s->mem = data;
    s->size = len;
    tg_status st = TG_OK;
    if (len == 0)
        st = tg_error(TG_ERR_FORMAT, "%s: empty file (expected an IDX header)", name);
    if (st == TG_OK)
        st = src_begin(s, data, len < 2 ? len : 2);
    if (st == TG_OK)
        st = idx_parse(out, s);
    src_end(s);
    free(s);
    return st;
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
