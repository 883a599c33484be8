/* tests/test_io.c -- IDX files, Fashion-MNIST loading, batches, HDF5 checkpoints,
 * PNG/PGM images.
 *
 * Every test writes its own small files into a fresh temporary folder (removed
 * afterwards); the test files are encoded here independently of io/ (raw bytes,
 * zlib, libpng, HDF5) so the readers are not only checked against their own
 * writers. The real dataset is used by one test when Debian's package is there. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <png.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "io/idx_impl.h"
#include "tests/tg_test.h"

/* Typed pointer to element [0...] (the library's own macro is private). */
#define TG_DATA(t, type) ((type *)tg_tensor_data(t))

/* ---------------------------------------------------------------- temp folder */

static char tmpdir[512];

static void tmp_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/tg-io-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void tmp_teardown(void)
{
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path in the temp folder; 8 rotating buffers so several can be alive. */
static const char *tp(const char *name)
{
    static char bufs[8][640];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static TCase *io_tcase(const char *name)
{
    TCase *tc = tg_tcase(name);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    return tc;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    ck_assert_msg(gz != NULL, "cannot create %s", path);
    ck_assert(gzwrite(gz, data, (unsigned)n) == (int)n);
    ck_assert(gzclose(gz) == Z_OK);
}

/* The file's bytes (malloc'd) and length. */
static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries of the temp folder whose name contains needle. */
static int count_entries(const char *needle)
{
    DIR *d = opendir(tmpdir);
    ck_assert(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle))
            n++;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- IDX encoding */

/* An IDX file in memory: magic, big-endian extents, payload (already encoded). */
static size_t idx_bytes(uint8_t *out, uint8_t code, int ndim, const uint32_t *dims,
                        const void *payload, size_t payload_len)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = 0;
    out[n++] = code;
    out[n++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        out[n++] = (uint8_t)(dims[i] >> 24);
        out[n++] = (uint8_t)(dims[i] >> 16);
        out[n++] = (uint8_t)(dims[i] >> 8);
        out[n++] = (uint8_t)dims[i];
    }
    if (payload_len)
        memcpy(out + n, payload, payload_len);
    return n + payload_len;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void check_u8_pattern(tg_tensor *t, int ndim, const int64_t *shape)
{
    TG_CHECK(t != NULL);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_U8);
    ck_assert_int_eq(tg_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(tg_tensor_dim(t, i), shape[i]);
    const uint8_t *d = tg_tensor_data(t);
    for (int64_t i = 0; i < tg_tensor_numel(t); i++)
        ck_assert_int_eq(d[i], (uint8_t)(i * 7 + 3));
}

START_TEST(idx_u8_plain_and_gzip)
{
    uint8_t payload[60], file[128];
    for (int i = 0; i < 60; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    uint32_t dims[3] = {5, 4, 3};
    size_t n = idx_bytes(file, 0x08, 3, dims, payload, 60);
    write_file(tp("a-idx3-ubyte"), file, n);
    write_gz(tp("a-idx3-ubyte.gz"), file, n);
    write_gz(tp("gz-without-suffix"), file, n);
    const char *names[] = {"a-idx3-ubyte", "a-idx3-ubyte.gz", "gz-without-suffix"};
    for (int k = 0; k < 3; k++) {
        tg_tensor *t = NULL;
        TG_OK_(tg_idx_read(&t, tp(names[k])));
        check_u8_pattern(t, 3, (const int64_t[]){5, 4, 3});
        tg_release(t);
    }
}
END_TEST

START_TEST(idx_other_types)
{
    uint8_t file[256], pay[64];
    tg_tensor *t = NULL;

    /* 0x09 signed bytes -> i32 */
    int8_t sb[4] = {-128, -1, 0, 127};
    write_file(tp("i8"), file, idx_bytes(file, 0x09, 1, (uint32_t[]){4}, sb, 4));
    TG_OK_(tg_idx_read(&t, tp("i8")));
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I32);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(TG_DATA(t, int32_t)[i], sb[i]);
    tg_release(t);

    /* 0x0B int16 -> i32 */
    int16_t s16[3] = {-32768, -2, 12345};
    for (int i = 0; i < 3; i++) {
        pay[2 * i] = (uint8_t)((uint16_t)s16[i] >> 8);
        pay[2 * i + 1] = (uint8_t)s16[i];
    }
    write_file(tp("i16"), file, idx_bytes(file, 0x0B, 1, (uint32_t[]){3}, pay, 6));
    TG_OK_(tg_idx_read(&t, tp("i16")));
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I32);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(TG_DATA(t, int32_t)[i], s16[i]);
    tg_release(t);

    /* 0x0C int32, 2x2 */
    int32_t i32[4] = {INT32_MIN, -1, 7, INT32_MAX};
    for (int i = 0; i < 4; i++)
        be32(pay + 4 * i, (uint32_t)i32[i]);
    write_file(tp("i32"), file, idx_bytes(file, 0x0C, 2, (uint32_t[]){2, 2}, pay, 16));
    TG_OK_(tg_idx_read(&t, tp("i32")));
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I32);
    ck_assert_int_eq(tg_tensor_dim(t, 1), 2);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(TG_DATA(t, int32_t)[i], i32[i]);
    tg_release(t);

    /* 0x0D float32 */
    float f32[3] = {-1.5f, 0.0f, 3.25e-3f};
    for (int i = 0; i < 3; i++) {
        uint32_t u;
        memcpy(&u, &f32[i], 4);
        be32(pay + 4 * i, u);
    }
    write_gz(tp("f32.gz"), file, idx_bytes(file, 0x0D, 1, (uint32_t[]){3}, pay, 12));
    TG_OK_(tg_idx_read(&t, tp("f32.gz")));
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F32);
    ck_assert(memcmp(tg_tensor_data(t), f32, 12) == 0);
    tg_release(t);

    /* 0x0E float64 */
    double f64[2] = {-2.0 / 3.0, 1e300};
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &f64[i], 8);
        be32(pay + 8 * i, (uint32_t)(u >> 32));
        be32(pay + 8 * i + 4, (uint32_t)u);
    }
    write_file(tp("f64"), file, idx_bytes(file, 0x0E, 1, (uint32_t[]){2}, pay, 16));
    TG_OK_(tg_idx_read(&t, tp("f64")));
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F64);
    ck_assert(memcmp(tg_tensor_data(t), f64, 16) == 0);
    tg_release(t);

    /* zero examples is a valid (empty) file */
    write_file(tp("empty-set"), file, idx_bytes(file, 0x08, 3, (uint32_t[]){0, 28, 28}, NULL, 0));
    TG_OK_(tg_idx_read(&t, tp("empty-set")));
    ck_assert_int_eq(tg_tensor_numel(t), 0);
    ck_assert_int_eq(tg_tensor_dim(t, 1), 28);
    tg_release(t);
}
END_TEST

START_TEST(idx_write_round_trip)
{
    tg_scope *s = tg_scope_push();
    tg_dtype dts[] = {TG_U8, TG_I32, TG_F32, TG_F64};
    for (int k = 0; k < 4; k++) {
        tg_tensor *a = tg_arange(dts[k], 0, 24, 1);
        if (dts[k] != TG_U8)
            TG_OK_(tg_set(a, (int64_t[]){5}, -3));
        if (tg_dtype_is_float(dts[k]))
            TG_OK_(tg_set(a, (int64_t[]){7}, 0.1));
        tg_tensor *m = tg_reshape(a, TG_SHAPE(2, 3, 4));
        tg_tensor *v = tg_transpose(m, 0, 2); /* non-contiguous (4, 3, 2) */
        TG_CHECK(v != NULL);
        for (int gz = 0; gz < 2; gz++) {
            const char *p = tp(gz ? "w.gz" : "w");
            TG_OK_(tg_idx_write(p, v, gz));
            size_t n;
            uint8_t *bytes = read_file(p, &n);
            ck_assert_int_eq(gz ? (bytes[0] == 0x1f && bytes[1] == 0x8b) : bytes[0] == 0, 1);
            free(bytes);
            tg_tensor *r = NULL;
            TG_OK_(tg_idx_read(&r, p));
            ck_assert_int_eq(tg_tensor_dtype(r), dts[k]);
            ck_assert(tg_tensor_same_shape(r, v));
            TG_ASSERT_TENSOR_CLOSE(r, v, 1e-300, 0); /* exact */
            tg_release(r);
        }
    }
    tg_tensor *l = tg_zeros(TG_I64, TG_SHAPE(3));
    ck_assert_int_eq(tg_idx_write(tp("i64"), l, false), TG_ERR_DTYPE);
    TG_ASSERT_ERROR_HAS("i64");
    ck_assert(!exists(tp("i64")));
    tg_scope_pop(s);
}
END_TEST

/* One bad file per row: bytes, written plain or gzip'd, the name, and what the
 * message must say besides the path. */
typedef struct bad_idx {
    const char *name;
    int kind; /* 0 plain bytes, 1 gzip'd bytes, 2 good gzip cut in half, 3 missing, 4 folder */
    const uint8_t *bytes;
    size_t len;
    tg_status status;
    const char *says;
} bad_idx;

static const uint8_t good3[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
                                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static const uint8_t trunc3[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5};
static const uint8_t trailing[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3, 4};
static const uint8_t magic_bad[] = {1, 2, 8, 1, 0, 0, 0, 1, 5};
static const uint8_t type_bad[] = {0, 0, 7, 1, 0, 0, 0, 1, 5};
static const uint8_t ndim0[] = {0, 0, 8, 0};
static const uint8_t ndim9[] = {0, 0, 8, 9, 0, 0, 0, 1};
static const uint8_t short_magic[] = {0, 0};
static const uint8_t short_dims[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0};
static const uint8_t huge[] = {0, 0, 0x0E, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3};
static const uint8_t empty_huge[] = {0, 0, 8, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff};
static const uint8_t text[] = "hello, this is not an IDX file\n";
static const uint8_t fake_gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff};

static const bad_idx bad_idx_cases[] = {
    {"empty", 0, (const uint8_t *)"", 0, TG_ERR_FORMAT, "empty file"},
    {"truncated", 0, trunc3, sizeof trunc3, TG_ERR_FORMAT,
     "truncated: header says 3x2x2 = 12 bytes, found 5"},
    {"truncated.gz", 1, trunc3, sizeof trunc3, TG_ERR_FORMAT,
     "truncated: header says 3x2x2 = 12 bytes, found 5"},
    {"cut-stream.gz", 2, good3, sizeof good3, TG_ERR_FORMAT, "truncated"},
    {"trailing", 0, trailing, sizeof trailing, TG_ERR_FORMAT,
     "2 trailing byte(s) after the 2 = 2 bytes"},
    {"trailing.gz", 1, trailing, sizeof trailing, TG_ERR_FORMAT, "2 trailing byte(s)"},
    {"bad-magic", 0, magic_bad, sizeof magic_bad, TG_ERR_FORMAT,
     "not an IDX file: magic bytes 01 02 08 01"},
    {"bad-type", 0, type_bad, sizeof type_bad, TG_ERR_FORMAT, "unknown IDX type code 0x07"},
    {"ndim0", 0, ndim0, sizeof ndim0, TG_ERR_FORMAT, "declares 0 dimensions"},
    {"ndim9", 0, ndim9, sizeof ndim9, TG_ERR_FORMAT, "declares 9 dimensions"},
    {"short-magic", 0, short_magic, sizeof short_magic, TG_ERR_FORMAT, "truncated header"},
    {"short-dims", 0, short_dims, sizeof short_dims, TG_ERR_FORMAT,
     "truncated header: 3 dimensions declared"},
    {"huge", 0, huge, sizeof huge, TG_ERR_FORMAT, "too large"},
    /* no elements, but extents whose product overflows (was TG_ERR_SHAPE) */
    {"empty-huge", 0, empty_huge, sizeof empty_huge, TG_ERR_FORMAT, "0x4294967295x4294967295"},
    {"text-named.gz", 0, text, sizeof text - 1, TG_ERR_FORMAT,
     "not gzip-compressed although the name ends in .gz"},
    {"text", 0, text, sizeof text - 1, TG_ERR_FORMAT, "not an IDX file"},
    {"corrupt.gz", 0, fake_gz, sizeof fake_gz, TG_ERR_FORMAT, "gzip"},
    {"missing", 3, NULL, 0, TG_ERR_IO, "cannot open: No such file or directory"},
    {"folder", 4, NULL, 0, TG_ERR_IO, "is a directory"},
};

START_TEST(idx_bad_input)
{
    const bad_idx *c = &bad_idx_cases[_i];
    const char *p = tp(c->name);
    if (c->kind == 0) {
        write_file(p, c->bytes, c->len);
    } else if (c->kind == 1) {
        write_gz(p, c->bytes, c->len);
    } else if (c->kind == 2) {
        write_gz(p, c->bytes, c->len);
        size_t n;
        uint8_t *b = read_file(p, &n);
        write_file(p, b, n / 2);
        free(b);
    } else if (c->kind == 4) {
        ck_assert(mkdir(p, 0700) == 0);
    }
    tg_tensor *t = (tg_tensor *)&t; /* must be reset to NULL */
    tg_status st = tg_idx_read(&t, p);
    ck_assert_msg(st == c->status, "%s: status %d, expected %d (%s)", c->name, st, c->status,
                  tg_last_error());
    ck_assert(t == NULL);
    TG_ASSERT_ERROR_HAS(p);
    TG_ASSERT_ERROR_HAS(c->says);
}
END_TEST

START_TEST(idx_fuzz)
{
    /* Random headers, every truncation of a good file, random byte flips: no
     * crash, no leak, and either a tensor or a message naming the file. */
    tg_rng rng;
    tg_rng_seed(&rng, 1234);
    uint8_t good[128];
    uint8_t pay[60];
    for (int i = 0; i < 60; i++)
        pay[i] = (uint8_t)i;
    size_t glen = idx_bytes(good, 0x08, 3, (uint32_t[]){5, 4, 3}, pay, 60);
    const char *p = tp("fuzz");
    uint8_t buf[160];
    for (int iter = 0; iter < 600; iter++) {
        size_t n;
        if (iter < (int)glen + 1) {
            n = (size_t)iter; /* each truncation */
            memcpy(buf, good, n);
        } else if (iter < 400) {
            n = glen;
            memcpy(buf, good, n);
            for (int k = 0; k < 3; k++)
                buf[tg_rng_below(&rng, 16)] = (uint8_t)tg_rng_next_u64(&rng);
        } else {
            n = (size_t)tg_rng_below(&rng, sizeof buf);
            for (size_t k = 0; k < n; k++)
                buf[k] = (uint8_t)tg_rng_next_u64(&rng);
            if (n >= 4 && (iter & 1)) {
                buf[0] = buf[1] = 0; /* a plausible magic, random rest */
                buf[2] = (uint8_t)(0x08 + tg_rng_below(&rng, 7));
                buf[3] = (uint8_t)tg_rng_below(&rng, 5);
            }
        }
        if (iter % 5 == 4)
            write_gz(p, buf, n);
        else
            write_file(p, buf, n);
        tg_tensor *t = NULL;
        tg_status st = tg_idx_read(&t, p);
        if (st == TG_OK) {
            TG_CHECK(t != NULL);
            tg_release(t);
        } else {
            ck_assert(t == NULL);
            TG_ASSERT_ERROR_HAS(p);
            /* only the statuses io/idx.h documents */
            ck_assert_msg(st == TG_ERR_FORMAT || st == TG_ERR_IO || st == TG_ERR_NOMEM,
                          "status %d: %s", st, tg_last_error());
        }
        if (iter == (int)glen)
            ck_assert_int_eq(st, TG_OK); /* the untruncated file */
        else if (iter < (int)glen)
            ck_assert_int_ne(st, TG_OK);
    }
}
END_TEST

/* len bytes gzip-compressed into a malloc'd buffer (*n bytes), by zlib directly. */
static uint8_t *gz_bytes(const void *data, size_t len, size_t *n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    size_t cap = deflateBound(&z, (uLong)len);
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert(deflate(&z, Z_FINISH) == Z_STREAM_END);
    *n = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

START_TEST(idx_gzip_integrity)
{
    /* Everything after the payload counts: a gzip file is accepted only when its
     * CRC-32 and length trailer are there and right and nothing else follows. */
    uint8_t payload[60], file[128];
    for (int i = 0; i < 60; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t len = idx_bytes(file, 0x08, 3, (uint32_t[]){5, 4, 3}, payload, 60);
    size_t n;
    uint8_t *gz = gz_bytes(file, len, &n);
    uint8_t *buf = malloc(2 * n + 64);
    tg_tensor *t = NULL;
    const char *p = tp("x-idx3-ubyte.gz");

    memcpy(buf, gz, n);
    write_file(p, buf, n);
    TG_OK_(tg_idx_read(&t, p));
    check_u8_pattern(t, 3, (const int64_t[]){5, 4, 3});
    tg_release(t);

    struct { const char *what; size_t len; int flip; const char *says; } cases[] = {
        {"no trailer", n - 8, -1, "truncated: the gzip stream ends unexpectedly"},
        {"half a trailer", n - 4, -1, "truncated: the gzip stream ends unexpectedly"},
        {"trailer less one byte", n - 1, -1, "truncated: the gzip stream ends unexpectedly"},
        {"wrong CRC", n, (int)n - 8, "corrupt gzip data: incorrect data check"},
        {"wrong length", n, (int)n - 2, "corrupt gzip data: incorrect length check"},
        {"garbage after", n + 5, -1, "5 byte(s) of garbage after the end of the gzip data"},
        {"one byte after", n + 1, -1, "1 byte(s) of garbage after the end of the gzip data"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(buf, gz, n);
        memcpy(buf + n, "JUNK!", 5);
        if (cases[k].flip >= 0)
            buf[cases[k].flip] ^= 0x20;
        write_file(p, buf, cases[k].len);
        t = (tg_tensor *)&t;
        tg_status st = tg_idx_read(&t, p);
        ck_assert_msg(st == TG_ERR_FORMAT, "%s: status %d (%s)", cases[k].what, st,
                      tg_last_error());
        ck_assert(t == NULL);
        TG_ASSERT_ERROR_HAS(p);
        TG_ASSERT_ERROR_HAS(cases[k].says);
        /* the in-memory entry point (the fuzz targets') says the same */
        ck_assert_int_eq(tg_idx_read_mem(&t, "mem", buf, cases[k].len), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS(cases[k].says);
    }

    /* Two members (`cat a.gz b.gz`), the header in one and the payload in the
     * other, are one valid gzip file. */
    size_t n1, n2;
    uint8_t *g1 = gz_bytes(file, 16, &n1), *g2 = gz_bytes(file + 16, len - 16, &n2);
    memcpy(buf, g1, n1);
    memcpy(buf + n1, g2, n2);
    write_file(p, buf, n1 + n2);
    TG_OK_(tg_idx_read(&t, p));
    check_u8_pattern(t, 3, (const int64_t[]){5, 4, 3});
    tg_release(t);
    TG_OK_(tg_idx_read_mem(&t, "mem", buf, n1 + n2));
    check_u8_pattern(t, 3, (const int64_t[]){5, 4, 3});
    tg_release(t);
    /* ... but a second member that is damaged is not ignored */
    buf[n1 + n2 - 6] ^= 1;
    write_file(p, buf, n1 + n2);
    ck_assert_int_eq(tg_idx_read(&t, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("incorrect");
    free(g1);
    free(g2);
    free(buf);
    free(gz);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Writes a gzip file of about 2 MB whose content is the IDX header head (hlen
 * bytes) followed by 2 GiB of zeros, without compressing 2 GiB: after a full
 * flush deflate's output for 1 MiB of zeros is the same block every time, so
 * that block is repeated 2048 times; the trailer's CRC is combined by zlib. */
static void write_gz_bomb(const char *path, const uint8_t *head, size_t hlen)
{
    enum { MIB = 1 << 20, REPS = 2048 };
    uint8_t *zeros = calloc(MIB, 1), *out = malloc(2 * MIB);
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    static const uint8_t gzhead[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3};
    fwrite(gzhead, 1, 10, f);
    /* deflates in with the given flush; returns the output length (in out) */
    size_t unit_len = 0;
    uint8_t *unit = NULL;
    for (int step = 0; step < 4; step++) {
        const uint8_t *in = step == 0 ? head : step < 3 ? zeros : NULL;
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = step == 0 ? (uInt)hlen : step < 3 ? MIB : 0;
        z.next_out = out;
        z.avail_out = 2 * MIB;
        int r = deflate(&z, step < 3 ? Z_FULL_FLUSH : Z_FINISH);
        ck_assert(r == (step < 3 ? Z_OK : Z_STREAM_END));
        size_t got = 2 * MIB - z.avail_out;
        if (step == 0) {
            fwrite(out, 1, got, f);
        } else if (step == 1) {
            unit = malloc(got);
            memcpy(unit, out, got);
            unit_len = got;
        } else if (step == 2) {
            /* the repeatable block: the same bytes as the first */
            ck_assert(got == unit_len && memcmp(out, unit, got) == 0);
            for (int k = 0; k < REPS; k++)
                fwrite(unit, 1, unit_len, f);
        } else {
            fwrite(out, 1, got, f);
        }
    }
    deflateEnd(&z);
    uLong crc = crc32(0, head, (uInt)hlen), zcrc = crc32(0, zeros, MIB);
    for (int k = 0; k < REPS; k++)
        crc = crc32_combine(crc, zcrc, MIB);
    uint64_t total = hlen + (uint64_t)REPS * MIB;
    uint8_t trailer[8];
    for (int k = 0; k < 4; k++) {
        trailer[k] = (uint8_t)(crc >> (8 * k));
        trailer[4 + k] = (uint8_t)(total >> (8 * k));
    }
    fwrite(trailer, 1, 8, f);
    ck_assert(fclose(f) == 0);
    free(unit);
    free(zeros);
    free(out);
}

START_TEST(idx_gzip_bomb)
{
    /* 2 MB of gzip holding 2 GiB: refused fast, with bounded memory, whether the
     * header declares little (the data runs on) or much (more than the file can
     * hold). The old reader inflated all of it: ~2 s, and RSS grew to 2 GB
     * when the header declared 4 GiB. */
    struct { const char *name; uint8_t head[16]; size_t hlen; const char *says; } cases[] = {
        {"small-header.gz", {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28}, 16,
         "at least 65536 trailing byte(s) after the 1x28x28 = 784 bytes"},
        {"large-header.gz", {0, 0, 8, 3, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0}, 16,
         "header says 65536x256x256 = 4294967296 bytes, more than a gzip file of"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *p = tp(cases[k].name);
        write_gz_bomb(p, cases[k].head, cases[k].hlen);
        struct stat st;
        ck_assert(stat(p, &st) == 0);
        ck_assert_msg(st.st_size > 2000000 && st.st_size < 2200000, "bomb of %lld bytes",
                      (long long)st.st_size);
        long rss0 = peak_rss_kb();
        double t0 = now_s();
        tg_tensor *t = NULL;
        tg_status s = tg_idx_read(&t, p);
        double dt = now_s() - t0;
        long grew_kb = peak_rss_kb() - rss0;
        /* inflating 2 GiB takes seconds; 64 KiB past the payload, microseconds */
        ck_assert_msg(grew_kb < 64 * 1024, "%s: peak RSS grew by %ld kB", cases[k].name,
                      grew_kb);
        ck_assert_msg(dt < 0.5, "%s: %.2f s to refuse", cases[k].name, dt);
        ck_assert_msg(s == TG_ERR_FORMAT, "%s: status %d (%s)", cases[k].name, s,
                      tg_last_error());
        ck_assert(t == NULL);
        TG_ASSERT_ERROR_HAS(cases[k].says);
    }
}
END_TEST

static void write_fmnist(const char *dir, const char *prefix, uint32_t n_img, uint32_t n_lbl,
                         uint32_t side, bool gz, int bad_label);

/* Runs fn and fails if it blocks: a FIFO with no writer blocks open() and read()
 * forever, so the reader must refuse it at once. */
static void fifo_case(const char *path, tg_status (*fn)(const char *), const char *says)
{
    ck_assert(mkfifo(path, 0600) == 0);
    alarm(5); /* SIGALRM ends the test as failed if the reader blocks */
    double t0 = now_s();
    tg_status st = fn(path);
    alarm(0);
    ck_assert_msg(now_s() - t0 < 1.0, "%s: took %.2f s", path, now_s() - t0);
    ck_assert_msg(st == TG_ERR_IO, "%s: status %d (%s)", path, st, tg_last_error());
    TG_ASSERT_ERROR_HAS(says);
}

static tg_status read_idx_path(const char *p)
{
    tg_tensor *t = (tg_tensor *)&t;
    tg_status st = tg_idx_read(&t, p);
    ck_assert(t == NULL);
    return st;
}

static tg_status read_image_path(const char *p)
{
    tg_tensor *t = (tg_tensor *)&t;
    tg_status st = tg_image_read(&t, p);
    ck_assert(t == NULL);
    return st;
}

static tg_status load_test_split(const char *dir)
{
    tg_dataset ds;
    tg_status st = tg_fashion_mnist_load(&ds, dir, TG_SPLIT_TEST, NULL);
    ck_assert(ds.images == NULL && ds.labels == NULL);
    return st;
}

START_TEST(io_not_regular_files)
{
    fifo_case(tp("fifo-idx3-ubyte"), read_idx_path, "fifo-idx3-ubyte: is a FIFO (named pipe), "
              "not a regular file (an IDX file must be a regular file)");
    fifo_case(tp("fifo.idx.gz"), read_idx_path, "is a FIFO (named pipe)");
    fifo_case(tp("fifo.png"), read_image_path, "fifo.png: is a FIFO (named pipe), not a "
              "regular file (an image must be a regular file)");
    fifo_case(tp("fifo.pgm"), read_image_path, "is a FIFO");
    /* the dataset loader: its labels file is a FIFO, then its images file */
    write_fmnist(tmpdir, "t10k", 3, 3, 28, false, 0);
    remove(tp("t10k-labels-idx1-ubyte"));
    ck_assert(mkfifo(tp("t10k-labels-idx1-ubyte"), 0600) == 0);
    alarm(5);
    ck_assert_int_eq(load_test_split(tmpdir), TG_ERR_IO);
    alarm(0);
    TG_ASSERT_ERROR_HAS("t10k-labels-idx1-ubyte: is a FIFO");
    remove(tp("t10k-images-idx3-ubyte"));
    ck_assert(mkfifo(tp("t10k-images-idx3-ubyte.gz"), 0600) == 0);
    alarm(5);
    ck_assert_int_eq(load_test_split(tmpdir), TG_ERR_IO);
    alarm(0);
    TG_ASSERT_ERROR_HAS("t10k-images-idx3-ubyte.gz: is a FIFO");
    /* a character device that never ends */
    ck_assert_int_eq(read_idx_path("/dev/zero"), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("/dev/zero: is a character device, not a regular file");
    ck_assert_int_eq(read_image_path("/dev/zero"), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("/dev/zero: is a character device");
}
END_TEST

START_TEST(idx_null_arguments)
{
    tg_tensor *t = (tg_tensor *)&t;
    ck_assert_int_eq(tg_idx_read(&t, NULL), TG_ERR_ARG);
    ck_assert(t == NULL);
    TG_ASSERT_ERROR_HAS("path");
    ck_assert_int_eq(tg_idx_read(NULL, "x"), TG_ERR_ARG);
    ck_assert_int_eq(tg_image_read(&t, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_idx_read_mem(&t, NULL, "", 0), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("(memory): empty file");
}
END_TEST

/* ---------------------------------------------------------------- Fashion-MNIST */

/* Writes <prefix>-images-idx3-ubyte and labels with n images of side x side
 * pixels (value (i*31 + p) % 256) and labels i % 10 (+ bad_label at index 2). */
static void write_fmnist(const char *dir, const char *prefix, uint32_t n_img, uint32_t n_lbl,
                         uint32_t side, bool gz, int bad_label)
{
    size_t px = (size_t)side * side;
    uint8_t *pay = malloc(n_img * px + 1);
    for (size_t i = 0; i < n_img; i++)
        for (size_t k = 0; k < px; k++)
            pay[i * px + k] = (uint8_t)((i * 31 + k) % 256);
    uint8_t *file = malloc(n_img * px + 64);
    size_t len = idx_bytes(file, 0x08, 3, (uint32_t[]){n_img, side, side}, pay, n_img * px);
    char path[700];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_file)(path, file, len);
    for (uint32_t i = 0; i < n_lbl; i++)
        pay[i] = (uint8_t)(i % 10);
    if (bad_label && n_lbl > 2)
        pay[2] = (uint8_t)bad_label;
    len = idx_bytes(file, 0x08, 1, (uint32_t[]){n_lbl}, pay, n_lbl);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_file)(path, file, len);
    free(pay);
    free(file);
}

START_TEST(fmnist_synthetic)
{
    write_fmnist(tmpdir, "train", 7, 7, 28, true, 0);
    write_fmnist(tmpdir, "t10k", 5, 5, 28, false, 0);
    tg_dataset ds;
    TG_OK_(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TRAIN, NULL));
    ck_assert_int_eq(ds.count, 7);
    ck_assert_int_eq(tg_tensor_dtype(ds.images), TG_F32);
    ck_assert_int_eq(tg_tensor_ndim(ds.images), 4);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 0), 7);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 1), 1);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 2), 28);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 3), 28);
    ck_assert_int_eq(tg_tensor_dtype(ds.labels), TG_I64);
    const float *x = tg_tensor_data(ds.images);
    for (int i = 0; i < 7; i++) {
        for (int k = 0; k < 784; k += 97)
            ck_assert_float_eq(x[i * 784 + k], (float)((i * 31 + k) % 256) / 255.0f);
        ck_assert_int_eq(TG_DATA(ds.labels, int64_t)[i], i % 10);
    }
    tg_dataset_clear(&ds);
    ck_assert(ds.images == NULL && ds.labels == NULL && ds.count == 0);

    tg_fashion_mnist_opts o = TG_FASHION_MNIST_OPTS_INIT;
    o.image_dtype = TG_U8;
    o.label_dtype = TG_U8;
    o.limit = 3;
    TG_OK_(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TEST, &o));
    ck_assert_int_eq(ds.count, 3);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 0), 3);
    ck_assert_int_eq(tg_tensor_dim(ds.labels, 0), 3);
    ck_assert_int_eq(tg_tensor_dtype(ds.images), TG_U8);
    ck_assert_int_eq(TG_DATA(ds.images, uint8_t)[2 * 784 + 5], (2 * 31 + 5) % 256);
    ck_assert_int_eq(TG_DATA(ds.labels, uint8_t)[2], 2);
    tg_dataset_clear(&ds);

    o.limit = 100; /* more than there is: all of them */
    o.label_dtype = TG_I32;
    TG_OK_(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TEST, &o));
    ck_assert_int_eq(ds.count, 5);
    ck_assert_int_eq(tg_tensor_dtype(ds.labels), TG_I32);
    tg_dataset_clear(&ds);
    tg_dataset_clear(NULL);

    o.label_dtype = TG_F32;
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TEST, &o), TG_ERR_DTYPE);
    ck_assert(ds.images == NULL);
}
END_TEST

START_TEST(fmnist_directory)
{
    unsetenv(TG_FASHION_MNIST_ENV);
    ck_assert_str_eq(tg_fashion_mnist_dir(NULL), TG_FASHION_MNIST_DEFAULT_DIR);
    ck_assert_str_eq(tg_fashion_mnist_dir(""), "/usr/share/datasets/fashion-mnist");
    setenv(TG_FASHION_MNIST_ENV, tmpdir, 1);
    ck_assert_str_eq(tg_fashion_mnist_dir(NULL), tmpdir);
    ck_assert_str_eq(tg_fashion_mnist_dir("/elsewhere"), "/elsewhere");

    /* the environment variable is used when no directory is given */
    write_fmnist(tmpdir, "t10k", 4, 4, 28, true, 0);
    tg_dataset ds;
    TG_OK_(tg_fashion_mnist_load(&ds, NULL, TG_SPLIT_TEST, NULL));
    ck_assert_int_eq(ds.count, 4);
    tg_dataset_clear(&ds);

    /* a missing directory names the package, the flag and the variable */
    const char *nowhere = tp("no-such-dir");
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, nowhere, TG_SPLIT_TEST, NULL), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS(nowhere);
    TG_ASSERT_ERROR_HAS("not found; install Debian's dataset-fashion-mnist package (apt-get "
                        "install dataset-fashion-mnist), or pass --data DIR / set "
                        "TG_FASHION_MNIST_DIR");
    setenv(TG_FASHION_MNIST_ENV, nowhere, 1);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, NULL, TG_SPLIT_TEST, NULL), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("from TG_FASHION_MNIST_DIR");
    unsetenv(TG_FASHION_MNIST_ENV);

    /* the folder exists but lacks the train files */
    ck_assert_int_ne(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TRAIN, NULL), TG_OK);
    TG_ASSERT_ERROR_HAS("train-images-idx3-ubyte.gz: not found");
    ck_assert(ds.images == NULL && ds.labels == NULL);
}
END_TEST

START_TEST(fmnist_bad_files)
{
    tg_dataset ds;
    /* counts differ */
    write_fmnist(tmpdir, "train", 6, 5, 28, true, 0);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TRAIN, NULL), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("train-images-idx3-ubyte.gz: images have 6 entries but labels 5");
    TG_ASSERT_ERROR_HAS(tmpdir);
    ck_assert(ds.images == NULL && ds.labels == NULL && ds.count == 0);

    /* a label out of range */
    write_fmnist(tmpdir, "train", 6, 6, 28, true, 12);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TRAIN, NULL), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("train-labels-idx1-ubyte.gz: label 12 at index 2 is outside 0..9");

    /* images of the wrong size */
    write_fmnist(tmpdir, "train", 6, 6, 20, true, 0);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TRAIN, NULL), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("[6, 20, 20], expected unsigned bytes shaped N x 28 x 28");

    /* the IDX reader's errors come through with the file name */
    write_fmnist(tmpdir, "t10k", 3, 3, 28, false, 0);
    write_file(tp("t10k-labels-idx1-ubyte"), trunc3, sizeof trunc3);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TEST, NULL), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("t10k-labels-idx1-ubyte: truncated");

    /* an images file where the labels should be */
    write_fmnist(tmpdir, "t10k", 3, 3, 28, false, 0);
    size_t n;
    uint8_t *b = read_file(tp("t10k-images-idx3-ubyte"), &n);
    write_file(tp("t10k-labels-idx1-ubyte"), b, n);
    free(b);
    ck_assert_int_eq(tg_fashion_mnist_load(&ds, tmpdir, TG_SPLIT_TEST, NULL), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("t10k-labels-idx1-ubyte: holds u8 [3, 28, 28], expected N unsigned bytes");
}
END_TEST

START_TEST(fmnist_class_names)
{
    const char *want[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(tg_fashion_mnist_class_name(i), want[i]);
    ck_assert_str_eq(tg_fashion_mnist_class_name(10), "?");
    ck_assert_str_eq(tg_fashion_mnist_class_name(-1), "?");
}
END_TEST

START_TEST(fmnist_real_test_split)
{
    if (!exists(TG_FASHION_MNIST_DEFAULT_DIR "/t10k-images-idx3-ubyte.gz") &&
        !exists(TG_FASHION_MNIST_DEFAULT_DIR "/t10k-images-idx3-ubyte")) {
        fprintf(stderr, "note: %s not installed; skipping the real-data test "
                "(apt-get install dataset-fashion-mnist)\n", TG_FASHION_MNIST_DEFAULT_DIR);
        return;
    }
    tg_dataset ds;
    TG_OK_(tg_fashion_mnist_load(&ds, TG_FASHION_MNIST_DEFAULT_DIR, TG_SPLIT_TEST, NULL));
    ck_assert_int_eq(ds.count, 10000);
    ck_assert_int_eq(tg_tensor_dim(ds.images, 0), 10000);
    int64_t per_class[10] = {0};
    const int64_t *y = tg_tensor_data(ds.labels);
    for (int64_t i = 0; i < ds.count; i++) {
        ck_assert(y[i] >= 0 && y[i] < 10);
        per_class[y[i]]++;
    }
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(per_class[k], 1000); /* the test split is balanced */
    const float *x = tg_tensor_data(ds.images);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < tg_tensor_numel(ds.images); i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    ck_assert_float_eq(lo, 0.0f);
    ck_assert_float_eq(hi, 1.0f);
    tg_dataset_clear(&ds);
}
END_TEST

/* ---------------------------------------------------------------- batches
 * (the iterator is nn's: tests/test_batch.c; here the one test that needs the
 * Fashion-MNIST loader) */

/* Converting batches (tg_batch_opts.input_scale): u8 images held compactly give
 * the f32 batches a TG_F32 load would, bit for bit and in the same order. */
START_TEST(batches_convert_u8_like_f32_load)
{
    /* 37 synthetic images whose bytes cover every value 0..255 */
    write_fmnist(tmpdir, "train", 37, 37, 28, false, 0);
    tg_dataset f, u, d;
    TG_OK_(tg_fashion_mnist_load(&f, tmpdir, TG_SPLIT_TRAIN, NULL));
    tg_fashion_mnist_opts lo = TG_FASHION_MNIST_OPTS_INIT;
    lo.image_dtype = TG_U8;
    TG_OK_(tg_fashion_mnist_load(&u, tmpdir, TG_SPLIT_TRAIN, &lo));
    lo.image_dtype = TG_F64;
    TG_OK_(tg_fashion_mnist_load(&d, tmpdir, TG_SPLIT_TRAIN, &lo));

    tg_batch_opts o = TG_BATCH_OPTS_INIT;
    o.batch_size = 8; /* 4 full batches and one of 5 */
    tg_batch_opts oc = o;
    oc.input_dtype = TG_F32;
    oc.input_scale = 1.0 / 255;
    tg_batch_opts od = oc;
    od.input_dtype = TG_F64;
    tg_rng r1, r2, r3;
    tg_rng_seed(&r1, 11);
    tg_rng_seed(&r2, 11);
    tg_rng_seed(&r3, 11);
    tg_batch_iter *a = tg_batch_iter_new(f.images, f.labels, &o, &r1);
    tg_batch_iter *b = tg_batch_iter_new(u.images, u.labels, &oc, &r2);
    tg_batch_iter *c = tg_batch_iter_new(u.images, u.labels, &od, &r3);
    TG_CHECK(a && b && c);
    ck_assert_int_eq(tg_batch_iter_num_batches(b), 5);
    for (int e = 0; e < 2; e++) {
        tg_tensor *ax, *ay, *bx, *by, *cx, *cy;
        int nb = 0;
        while (tg_batch_iter_next(a, &ax, &ay)) {
            ck_assert(tg_batch_iter_next(b, &bx, &by));
            ck_assert(tg_batch_iter_next(c, &cx, &cy));
            int64_t m = tg_tensor_dim(ax, 0);
            ck_assert_int_eq(m, nb < 4 ? 8 : 5);
            ck_assert_int_eq(tg_tensor_dtype(bx), TG_F32);
            ck_assert_int_eq(tg_tensor_dtype(cx), TG_F64);
            ck_assert(tg_tensor_is_contiguous(bx));
            for (int k = 0; k < 4; k++) {
                ck_assert_int_eq(tg_tensor_dim(bx, k), tg_tensor_dim(ax, k));
                ck_assert_int_eq(tg_tensor_dim(cx, k), tg_tensor_dim(ax, k));
            }
            ck_assert(memcmp(tg_tensor_data(bx), tg_tensor_data(ax), (size_t)m * 784 * 4) == 0);
            ck_assert(memcmp(tg_tensor_data(by), tg_tensor_data(ay), (size_t)m * 8) == 0);
            /* f64: pixel * (1.0 / 255) in double, within an ulp of the loader's /255.0 */
            const double *cv = tg_tensor_data(cx);
            const int64_t *ord = tg_batch_iter_order(c) + (size_t)nb * 8;
            for (int64_t r = 0; r < m; r++) {
                const uint8_t *px = TG_DATA(u.images, uint8_t) + ord[r] * 784;
                const double *ref = TG_DATA(d.images, double) + ord[r] * 784;
                for (int k = 0; k < 784; k++) {
                    ck_assert(cv[r * 784 + k] == px[k] * (1.0 / 255));
                    ck_assert(fabs(cv[r * 784 + k] - ref[k]) <= 1.2e-16);
                }
            }
            nb++;
        }
        ck_assert_int_eq(nb, 5);
        ck_assert(!tg_batch_iter_next(b, &bx, &by) && bx == NULL);
        ck_assert(!tg_batch_iter_next(c, &cx, &cy));
    }
    tg_batch_iter_free(a);
    tg_batch_iter_free(b);
    tg_batch_iter_free(c);
    tg_dataset_clear(&f);
    tg_dataset_clear(&u);
    tg_dataset_clear(&d);
}
END_TEST


/* ---------------------------------------------------------------- checkpoints */

/* A dict with a tensor of every dtype, special values, a scalar, an empty
 * tensor, a non-contiguous view, nested names, and attributes of each type.
 * Tensors are scoped (call inside a scope). */
static tg_state_dict *sample_dict(void)
{
    tg_state_dict *sd = tg_state_dict_new();
    tg_tensor *k = tg_rand_normal(TG_F32, TG_SHAPE(4, 3), 0, 1, NULL);
    float *kd = tg_tensor_data(k);
    kd[0] = -0.0f;
    kd[1] = INFINITY;
    kd[2] = 1e-40f; /* subnormal */
    kd[3] = NAN;
    TG_OK_(tg_state_dict_set(sd, "model/dense/kernel", k));
    TG_OK_(tg_state_dict_set(sd, "model/dense/bias", tg_rand_uniform(TG_F32, TG_SHAPE(3), -1, 1, NULL)));
    tg_tensor *w64 = tg_rand_normal(TG_F64, TG_SHAPE(2, 1, 3, 3), 0, 1, NULL);
    TG_DATA(w64, double)[0] = -INFINITY;
    TG_OK_(tg_state_dict_set(sd, "model/conv2d/kernel", w64));
    tg_tensor *i32 = tg_arange(TG_I32, -5, 5, 1);
    TG_DATA(i32, int32_t)[0] = INT32_MIN;
    TG_OK_(tg_state_dict_set(sd, "counts", i32));
    tg_tensor *i64 = tg_zeros(TG_I64, TG_SHAPE(2));
    TG_DATA(i64, int64_t)[0] = INT64_MAX;
    TG_DATA(i64, int64_t)[1] = INT64_MIN;
    TG_OK_(tg_state_dict_set(sd, "rng/state", i64));
    tg_tensor *u8 = tg_arange(TG_U8, 0, 256, 1);
    TG_OK_(tg_state_dict_set(sd, "pixels", u8));
    TG_OK_(tg_state_dict_set(sd, "optimizer/step", tg_full(TG_I64, 0, NULL, 17)));
    TG_OK_(tg_state_dict_set(sd, "empty", tg_zeros(TG_F32, TG_SHAPE(0, 3))));
    tg_tensor *m = tg_rand_normal(TG_F32, TG_SHAPE(3, 5), 0, 1, NULL);
    TG_OK_(tg_state_dict_set(sd, "optimizer/m/model/dense/kernel", tg_transpose(m, 0, 1)));
    TG_OK_(tg_state_dict_set_i64(sd, "epoch", 3));
    TG_OK_(tg_state_dict_set_i64(sd, "optimizer/min", INT64_MIN));
    TG_OK_(tg_state_dict_set_f64(sd, "optimizer/lr", 1e-3));
    TG_OK_(tg_state_dict_set_f64(sd, "neg_inf", -INFINITY));
    TG_OK_(tg_state_dict_set_str(sd, "architecture", "Conv2D(32,3x3) \xc3\xa9"));
    TG_OK_(tg_state_dict_set_str(sd, "empty_string", ""));
    return sd;
}

/* Byte-for-byte equality of two tensors' logical contents. */
static void assert_same_bits(const tg_tensor *a, const tg_tensor *b, const char *name)
{
    ck_assert_msg(tg_tensor_dtype(a) == tg_tensor_dtype(b), "%s: dtype", name);
    ck_assert_msg(tg_tensor_same_shape(a, b), "%s: shape", name);
    tg_scope *s = tg_scope_push();
    tg_tensor *ca = tg_tensor_copy(a), *cb = tg_tensor_copy(b);
    ck_assert_msg(memcmp(tg_tensor_data(ca), tg_tensor_data(cb), tg_tensor_nbytes(a)) == 0,
                  "%s: contents differ", name);
    tg_scope_pop(s);
}

/* Same tensors (by name; a loaded dict lists them group by group) and the same
 * attributes in the same order. */
static void assert_same_dict(const tg_state_dict *a, const tg_state_dict *b)
{
    ck_assert_int_eq(tg_state_dict_size(a), tg_state_dict_size(b));
    for (size_t i = 0; i < tg_state_dict_size(a); i++) {
        const char *n = tg_state_dict_name_at(a, i);
        tg_tensor *tb = tg_state_dict_get(b, n);
        ck_assert_msg(tb != NULL, "'%s' missing", n);
        assert_same_bits(tg_state_dict_tensor_at(a, i), tb, n);
    }
    ck_assert_int_eq(tg_state_dict_attr_count(a), tg_state_dict_attr_count(b));
    for (size_t i = 0; i < tg_state_dict_attr_count(a); i++) {
        const char *n = tg_state_dict_attr_name_at(a, i);
        ck_assert_str_eq(n, tg_state_dict_attr_name_at(b, i));
        ck_assert_int_eq(tg_state_dict_attr_type_at(a, i), tg_state_dict_attr_type_at(b, i));
        int64_t ia, ib;
        double fa, fb;
        const char *sa, *sb;
        switch (tg_state_dict_attr_type_at(a, i)) {
        case TG_ATTR_I64:
            TG_OK_(tg_state_dict_get_i64(&ia, a, n));
            TG_OK_(tg_state_dict_get_i64(&ib, b, n));
            ck_assert_int_eq(ia, ib);
            break;
        case TG_ATTR_F64:
            TG_OK_(tg_state_dict_get_f64(&fa, a, n));
            TG_OK_(tg_state_dict_get_f64(&fb, b, n));
            ck_assert(memcmp(&fa, &fb, sizeof fa) == 0);
            break;
        case TG_ATTR_STR:
            TG_OK_(tg_state_dict_get_str(&sa, a, n));
            TG_OK_(tg_state_dict_get_str(&sb, b, n));
            ck_assert_str_eq(sa, sb);
            break;
        }
    }
}

START_TEST(ckpt_round_trip)
{
    tg_scope *s = tg_scope_push();
    tg_state_dict *sd = sample_dict();
    const char *p = tp("model.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    ck_assert_int_eq(count_entries(".tmp-"), 0);
    tg_state_dict *back = (tg_state_dict *)&back;
    TG_OK_(tg_checkpoint_load_ex(&back, p, TG_CHECKPOINT_ALLOW_NONFINITE));
    assert_same_dict(sd, back);
    /* creation order, group by group (docs/checkpoint-format.md) */
    const char *order[] = {"model/dense/kernel", "model/dense/bias", "model/conv2d/kernel",
                           "counts", "rng/state", "pixels", "optimizer/step",
                           "optimizer/m/model/dense/kernel", "empty"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        ck_assert_str_eq(tg_state_dict_name_at(back, i), order[i]);
    tg_state_dict_free(back);

    tg_checkpoint_info info;
    TG_OK_(tg_checkpoint_info_get(&info, p));
    ck_assert_int_eq(info.format_version, 2);
    ck_assert_str_eq(info.library_version, tg_version());
    ck_assert_int_eq(info.num_tensors, (int64_t)tg_state_dict_size(sd));
    ck_assert_int_eq(info.num_attrs, (int64_t)tg_state_dict_attr_count(sd));

    /* saving again replaces the file */
    tg_state_dict *small = tg_state_dict_new();
    TG_OK_(tg_state_dict_set(small, "only", tg_ones(TG_F32, TG_SHAPE(2))));
    TG_OK_(tg_checkpoint_save(p, small));
    TG_OK_(tg_checkpoint_load(&back, p));
    assert_same_dict(small, back);
    tg_state_dict_free(back);
    tg_state_dict_free(small);

    /* a relative path works (the folder to sync is ".") */
    char cwd[1024];
    ck_assert(getcwd(cwd, sizeof cwd) != NULL);
    ck_assert(chdir(tmpdir) == 0);
    TG_OK_(tg_checkpoint_save("relative.h5", sd));
    ck_assert(chdir(cwd) == 0);
    ck_assert(exists(tp("relative.h5")));

    /* the metadata is where the format document says, readable with plain HDF5 */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Aexists(f, "format") > 0);
    ck_assert(H5Aexists(f, "format_version") > 0);
    ck_assert(H5Aexists(f, "library_version") > 0);
    ck_assert(H5Lexists(f, "only", H5P_DEFAULT) > 0);
    H5Fclose(f);
    tg_state_dict_free(sd);
    tg_scope_pop(s);
}
END_TEST

/* Scoped copies of every tensor of sd, to check later that nothing changed. */
static tg_tensor **snapshot(const tg_state_dict *sd)
{
    tg_tensor **c = calloc(tg_state_dict_size(sd), sizeof *c);
    for (size_t i = 0; i < tg_state_dict_size(sd); i++)
        c[i] = tg_tensor_copy(tg_state_dict_tensor_at(sd, i));
    return c;
}

static void assert_unchanged(const tg_state_dict *sd, tg_tensor **snap)
{
    for (size_t i = 0; i < tg_state_dict_size(sd); i++)
        assert_same_bits(tg_state_dict_tensor_at(sd, i), snap[i], tg_state_dict_name_at(sd, i));
}

/* A dict with the same names/shapes/dtypes as `like`, filled with value v. */
static tg_state_dict *shaped_like(const tg_state_dict *like, double v)
{
    tg_state_dict *sd = tg_state_dict_new();
    for (size_t i = 0; i < tg_state_dict_size(like); i++) {
        const tg_tensor *t = tg_state_dict_tensor_at(like, i);
        tg_tensor *z = tg_full(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t), v);
        TG_OK_(tg_state_dict_set(sd, tg_state_dict_name_at(like, i), z));
    }
    return sd;
}

START_TEST(ckpt_load_into)
{
    tg_scope *s = tg_scope_push();
    tg_state_dict *sd = sample_dict();
    const char *p = tp("train.h5");
    TG_OK_(tg_checkpoint_save(p, sd));

    /* a model's own tensors are filled in place; extra datasets are ignored */
    tg_state_dict *model = tg_state_dict_new();
    tg_tensor *kernel = tg_zeros(TG_F32, TG_SHAPE(4, 3));
    tg_tensor *bias = tg_zeros(TG_F32, TG_SHAPE(3));
    TG_OK_(tg_state_dict_set(model, "model/dense/kernel", kernel));
    TG_OK_(tg_state_dict_set(model, "model/dense/bias", bias));
    TG_OK_(tg_state_dict_set_i64(model, "epoch", 0));
    uint64_t v0 = tg_tensor_version(kernel);
    TG_OK_(tg_checkpoint_load_into_ex(p, model, TG_CHECKPOINT_ALLOW_NONFINITE));
    ck_assert(tg_state_dict_get(model, "model/dense/kernel") == kernel);
    ck_assert(tg_tensor_version(kernel) != v0);
    assert_same_bits(kernel, tg_state_dict_get(sd, "model/dense/kernel"), "kernel");
    assert_same_bits(bias, tg_state_dict_get(sd, "model/dense/bias"), "bias");
    int64_t epoch;
    TG_OK_(tg_state_dict_get_i64(&epoch, model, "epoch"));
    ck_assert_int_eq(epoch, 3);
    const char *arch;
    TG_OK_(tg_state_dict_get_str(&arch, model, "architecture"));
    ck_assert_str_eq(arch, "Conv2D(32,3x3) \xc3\xa9");
    tg_state_dict_free(model);

    /* the full state into a fresh dict of the same layout (non-contiguous target too) */
    tg_state_dict *fresh = shaped_like(sd, 0);
    tg_tensor *mt = tg_zeros(TG_F32, TG_SHAPE(3, 5));
    TG_OK_(tg_state_dict_set(fresh, "optimizer/m/model/dense/kernel", tg_transpose(mt, 0, 1)));
    TG_OK_(tg_checkpoint_load_into_ex(p, fresh, TG_CHECKPOINT_ALLOW_NONFINITE));
    assert_same_dict(sd, fresh);
    tg_state_dict_free(fresh);
    tg_state_dict_free(sd);
    tg_scope_pop(s);
}
END_TEST

typedef struct mismatch_case {
    const char *what;
    tg_status status;
    const char *says;
} mismatch_case;

static const mismatch_case mismatch_cases[] = {
    {"missing dataset", TG_ERR_FORMAT, "missing dataset 'model/dense_1/bias'"},
    {"wrong shape", TG_ERR_SHAPE,
     "'model/dense/kernel' has shape [4, 3] in the file, expected [3, 4]"},
    {"wrong dtype", TG_ERR_DTYPE, "'model/dense/bias' is f32 in the file, expected f64"},
    {"missing attribute", TG_ERR_FORMAT, "missing attribute 'step_count'"},
    {"attribute type", TG_ERR_DTYPE, "attribute 'epoch' is an integer in the file, expected a float"},
    {"several", TG_ERR_FORMAT, "(3 mismatches, nothing loaded)"},
};

START_TEST(ckpt_load_into_mismatch)
{
    const mismatch_case *c = &mismatch_cases[_i];
    tg_scope *s = tg_scope_push();
    tg_state_dict *sd = sample_dict();
    const char *p = tp("ckpt.h5");
    TG_OK_(tg_checkpoint_save(p, sd));

    tg_state_dict *want = shaped_like(sd, 5);
    TG_OK_(tg_state_dict_set_i64(want, "epoch", -1));
    switch (_i) {
    case 0:
        TG_OK_(tg_state_dict_set(want, "model/dense_1/bias", tg_zeros(TG_F32, TG_SHAPE(10))));
        break;
    case 1:
        TG_OK_(tg_state_dict_set(want, "model/dense/kernel", tg_zeros(TG_F32, TG_SHAPE(3, 4))));
        break;
    case 2:
        TG_OK_(tg_state_dict_set(want, "model/dense/bias", tg_zeros(TG_F64, TG_SHAPE(3))));
        break;
    case 3:
        TG_OK_(tg_state_dict_set_i64(want, "step_count", 0));
        break;
    case 4:
        TG_OK_(tg_state_dict_set_f64(want, "epoch", 0));
        break;
    case 5:
        TG_OK_(tg_state_dict_set(want, "model/dense/kernel", tg_zeros(TG_F32, TG_SHAPE(3, 4))));
        TG_OK_(tg_state_dict_set(want, "model/dense/bias", tg_zeros(TG_F64, TG_SHAPE(3))));
        TG_OK_(tg_state_dict_set(want, "extra", tg_zeros(TG_F64, TG_SHAPE(3))));
        break;
    }
    tg_tensor **snap = snapshot(want);
    tg_status st = tg_checkpoint_load_into(p, want);
    ck_assert_msg(st == c->status, "%s: status %d (%s)", c->what, st, tg_last_error());
    TG_ASSERT_ERROR_HAS(p);
    TG_ASSERT_ERROR_HAS(c->says);
    assert_unchanged(want, snap);
    int64_t epoch = 0;
    if (_i != 4) {
        TG_OK_(tg_state_dict_get_i64(&epoch, want, "epoch"));
        ck_assert_int_eq(epoch, -1); /* attributes unchanged too */
    }
    const char *arch = NULL;
    ck_assert_int_ne(tg_state_dict_get_str(&arch, want, "architecture"), TG_OK);
    free(snap);
    tg_state_dict_free(want);
    tg_state_dict_free(sd);
    tg_scope_pop(s);
}
END_TEST

/* Sets the format version in a version-2 file's checksum header (bytes 8-11,
 * little-endian; docs/checkpoint-format.md), as a newer writer would. */
static void set_format_version(const char *path, uint32_t v)
{
    FILE *f = fopen(path, "r+b");
    ck_assert(f != NULL);
    unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    ck_assert(fseek(f, 8, SEEK_SET) == 0 && fwrite(b, 1, 4, f) == 4);
    fclose(f);
}

START_TEST(ckpt_bad_files)
{
    tg_scope *s = tg_scope_push();
    tg_state_dict *sd = sample_dict();
    tg_state_dict *want = shaped_like(sd, 5);
    tg_tensor **snap = snapshot(want);
    tg_state_dict *out = (tg_state_dict *)&out;

    /* a newer format version */
    const char *newer = tp("newer.h5");
    TG_OK_(tg_checkpoint_save(newer, sd));
    set_format_version(newer, 3);
    ck_assert_int_eq(tg_checkpoint_load_into(newer, want), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS(newer);
    TG_ASSERT_ERROR_HAS("was written by format version 3; this library reads up to 2");
    ck_assert_int_eq(tg_checkpoint_load(&out, newer), TG_ERR_FORMAT);
    ck_assert(out == NULL);
    TG_ASSERT_ERROR_HAS("format version 3");
    char want_msg[1200];
    snprintf(want_msg, sizeof want_msg, "tg_checkpoint_load: %s: was written by format "
             "version 3; this library reads up to 2", newer);
    ck_assert_str_eq(tg_last_error(), want_msg);

    /* not HDF5 at all */
    const char *txt = tp("notes.h5");
    write_file(txt, "just some text\n", 15);
    ck_assert_int_eq(tg_checkpoint_load_into(txt, want), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS(txt);
    TG_ASSERT_ERROR_HAS(": not an HDF5 file");
    snprintf(want_msg, sizeof want_msg, "tg_checkpoint_load_into: %s: not an HDF5 file", txt);
    ck_assert_str_eq(tg_last_error(), want_msg);
    write_file(txt, "", 0);
    ck_assert_int_eq(tg_checkpoint_load(&out, txt), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("not an HDF5 file");

    /* HDF5 but someone else's */
    const char *other = tp("other.h5");
    hid_t f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    ck_assert_int_eq(tg_checkpoint_load_into(other, want), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("not a libtensor checkpoint");

    /* missing */
    ck_assert_int_eq(tg_checkpoint_load_into(tp("absent.h5"), want), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("absent.h5: cannot open: No such file or directory");
    tg_checkpoint_info info_absent;
    ck_assert_int_eq(tg_checkpoint_info_get(&info_absent, tp("absent.h5")), TG_ERR_IO);
    snprintf(want_msg, sizeof want_msg,
             "tg_checkpoint_info_get: %s: cannot open: No such file or directory",
             tp("absent.h5"));
    ck_assert_str_eq(tg_last_error(), want_msg);

    /* truncated copies of a good file, cut at several places */
    const char *good = tp("good.h5");
    TG_OK_(tg_checkpoint_save(good, sd));
    size_t n;
    uint8_t *bytes = read_file(good, &n);
    size_t cuts[] = {0, 7, 100, 600, n / 3, n / 2, n - 100, n - 1};
    const char *cut = tp("cut.h5");
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        write_file(cut, bytes, cuts[k]);
        tg_status st = tg_checkpoint_load_into(cut, want);
        ck_assert_msg(st == TG_ERR_FORMAT, "cut at %zu: status %d (%s)", cuts[k], st,
                      tg_last_error());
        TG_ASSERT_ERROR_HAS(cut);
        assert_unchanged(want, snap);
        ck_assert_int_ne(tg_checkpoint_load(&out, cut), TG_OK);
        ck_assert(out == NULL);
    }
    free(bytes);
    /* and the good one still loads into the same dict */
    TG_OK_(tg_checkpoint_load_into_ex(good, want, TG_CHECKPOINT_ALLOW_NONFINITE));
    free(snap);
    tg_state_dict_free(want);
    tg_state_dict_free(sd);
    tg_scope_pop(s);
}
END_TEST

START_TEST(ckpt_atomic_save)
{
    tg_scope *s = tg_scope_push();
    tg_state_dict *sd = sample_dict();
    const char *p = tp("last-good.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    size_t n0;
    uint8_t *before = read_file(p, &n0);

    /* a dict that fails validation: nothing is written */
    tg_state_dict *bad = tg_state_dict_new();
    TG_OK_(tg_state_dict_set(bad, "a", tg_zeros(TG_F32, TG_SHAPE(1))));
    TG_OK_(tg_state_dict_set(bad, "a/b", tg_zeros(TG_F32, TG_SHAPE(1))));
    ck_assert_int_eq(tg_checkpoint_save(p, bad), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("'a' cannot be both a tensor and the group holding 'a/b'");
    tg_state_dict_free(bad);

    /* a folder that does not exist */
    ck_assert_int_eq(tg_checkpoint_save(tp("no/such/dir/x.h5"), sd), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("no/such/dir/x.h5");

    /* the target is a folder: the rename fails after the whole file was written */
    const char *d = tp("occupied");
    ck_assert(mkdir(d, 0700) == 0);
    write_file(tp("occupied/keep"), "x", 1);
    ck_assert_int_eq(tg_checkpoint_save(d, sd), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("cannot rename");
    ck_assert_int_eq(count_entries(".tmp-"), 0);

    /* the disk fills up in the middle of the write (a file size limit) */
    tg_state_dict *big = tg_state_dict_new();
    TG_OK_(tg_state_dict_set(big, "model/w", tg_zeros(TG_F32, TG_SHAPE(256, 256))));
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    tg_status st = tg_checkpoint_save(p, big);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    ck_assert_msg(st == TG_ERR_IO, "status %d (%s)", st, tg_last_error());
    TG_ASSERT_ERROR_HAS(p);
    ck_assert_int_eq(count_entries(".tmp-"), 0);
    tg_state_dict_free(big);

    /* after every failure the last good checkpoint is still there, byte for byte */
    size_t n1;
    uint8_t *after = read_file(p, &n1);
    ck_assert_int_eq(n0, n1);
    ck_assert(memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    tg_state_dict *back;
    TG_OK_(tg_checkpoint_load_ex(&back, p, TG_CHECKPOINT_ALLOW_NONFINITE));
    assert_same_dict(sd, back);
    tg_state_dict_free(back);
    tg_state_dict_free(sd);
    tg_scope_pop(s);
}
END_TEST

START_TEST(ckpt_save_arguments)
{
    const char *names[] = {"", "/abs", "a//b", "trailing/", "a/./b", "../up"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        tg_state_dict *sd = tg_state_dict_new();
        tg_tensor *t = tg_zeros(TG_F32, TG_SHAPE(1));
        TG_OK_(tg_state_dict_set(sd, names[i], t));
        tg_release(t);
        ck_assert_msg(tg_checkpoint_save(tp("x.h5"), sd) == TG_ERR_ARG, "name '%s'", names[i]);
        TG_ASSERT_ERROR_HAS("tensor name");
        tg_state_dict_free(sd);
    }
    tg_state_dict *sd = tg_state_dict_new();
    TG_OK_(tg_state_dict_set_str(sd, "format", "mine"));
    ck_assert_int_eq(tg_checkpoint_save(tp("x.h5"), sd), TG_ERR_ARG);
    TG_ASSERT_ERROR_HAS("'format' is reserved");
    ck_assert(!exists(tp("x.h5")));
    ck_assert_int_eq(tg_checkpoint_save(NULL, sd), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_save(tp("x.h5"), NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_load_into(tp("x.h5"), NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_load(NULL, tp("x.h5")), TG_ERR_ARG);
    tg_state_dict_free(sd);

    /* an empty dict is a valid (metadata-only) checkpoint */
    sd = tg_state_dict_new();
    TG_OK_(tg_checkpoint_save(tp("empty.h5"), sd));
    tg_state_dict *back;
    TG_OK_(tg_checkpoint_load(&back, tp("empty.h5")));
    ck_assert_int_eq(tg_state_dict_size(back), 0);
    ck_assert_int_eq(tg_state_dict_attr_count(back), 0);
    tg_state_dict_free(back);
    tg_state_dict_free(sd);
}
END_TEST

/* A small CNN for inputs 1x6x6: conv (filters 3x3) relu, flatten, dense 3. */
static tg_sequential *ckpt_model(int filters, tg_dtype dt)
{
    tg_sequential *m = tg_sequential_new(TG_SHAPE(1, 6, 6));
    TG_CHECK(m != NULL);
    TG_OK_(tg_sequential_set_dtype(m, dt));
    TG_OK_(tg_sequential_add(m, tg_layer_new_conv2d(filters, 3, 3, TG_ACT_RELU, NULL)));
    TG_OK_(tg_sequential_add(m, tg_layer_new_flatten()));
    TG_OK_(tg_sequential_add(m, tg_layer_new_dense(3, TG_ACT_NONE, NULL)));
    TG_OK_(tg_sequential_build(m));
    return m;
}

/* A model's checkpoint loaded into a model with other layer shapes, or with
 * another dtype, fails naming each parameter and changes no parameter; into the
 * same architecture it loads. */
START_TEST(ckpt_wrong_model)
{
    tg_scope *s = tg_scope_push();
    tg_manual_seed(1);
    tg_sequential *a = ckpt_model(4, TG_F32);
    tg_state_dict *sa = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(a, sa, "model/"));
    const char *p = tp("model-a.h5");
    TG_OK_(tg_checkpoint_save(p, sa));

    struct {
        int filters;
        tg_dtype dt;
        tg_status status;
        const char *says[2];
    } cases[] = {
        {8, TG_F32, TG_ERR_SHAPE,
         {"'model/conv2d/kernel' has shape [4, 1, 3, 3] in the file, expected [8, 1, 3, 3]",
          "'model/dense/kernel' has shape [3, 64] in the file, expected [3, 128]"}},
        {4, TG_F64, TG_ERR_DTYPE,
         {"'model/conv2d/kernel' is f32 in the file, expected f64",
          "(4 mismatches, nothing loaded)"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_sequential *b = ckpt_model(cases[k].filters, cases[k].dt);
        tg_state_dict *sb = tg_state_dict_new();
        TG_OK_(tg_sequential_state_dict(b, sb, "model/"));
        tg_tensor **snap = snapshot(sb);
        ck_assert_int_eq(tg_checkpoint_load_into(p, sb), cases[k].status);
        TG_ASSERT_ERROR_HAS(p);
        TG_ASSERT_ERROR_HAS(cases[k].says[0]);
        TG_ASSERT_ERROR_HAS(cases[k].says[1]);
        assert_unchanged(sb, snap);
        free(snap);
        tg_state_dict_free(sb);
        tg_sequential_free(b);
    }

    tg_sequential *c = ckpt_model(4, TG_F32);
    tg_state_dict *sc = tg_state_dict_new();
    TG_OK_(tg_sequential_state_dict(c, sc, "model/"));
    TG_OK_(tg_checkpoint_load_into(p, sc));
    size_t na, nc;
    tg_tensor *const *pa = tg_sequential_params(a, &na);
    tg_tensor *const *pc = tg_sequential_params(c, &nc);
    ck_assert_int_eq(na, nc);
    for (size_t i = 0; i < na; i++)
        assert_same_bits(pc[i], pa[i], tg_tensor_name(pa[i]));
    tg_state_dict_free(sc);
    tg_sequential_free(c);
    tg_state_dict_free(sa);
    tg_sequential_free(a);
    tg_scope_pop(s);
}
END_TEST

/* ---------------------------------------------------------------- images */

START_TEST(image_png_pgm_round_trip)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *img = tg_empty(TG_U8, TG_SHAPE(5, 7));
    for (int i = 0; i < 35; i++)
        TG_DATA(img, uint8_t)[i] = (uint8_t)(i * 37);
    const char *files[] = {"a.png", "a.pgm"};
    for (int k = 0; k < 2; k++) {
        const char *p = tp(files[k]);
        TG_OK_(k ? tg_pgm_write(p, img, 0, 255) : tg_png_write(p, img, 0, 255));
        tg_tensor *r = NULL;
        TG_OK_(tg_image_read(&r, p));
        ck_assert_int_eq(tg_tensor_dtype(r), TG_U8);
        ck_assert_int_eq(tg_tensor_dim(r, 0), 5);
        ck_assert_int_eq(tg_tensor_dim(r, 1), 7);
        assert_same_bits(r, img, p);
        TG_OK_(tg_image_check_size(r, p, 5, 7));
        ck_assert_int_eq(tg_image_check_size(r, p, 28, 28), TG_ERR_SHAPE);
        TG_ASSERT_ERROR_HAS("expected a 28x28 image (width x height), got 7x5");
        TG_ASSERT_ERROR_HAS(p);
        tg_release(r);
    }

    /* floats: auto-scaled to their own range, or mapped from a given one and clamped */
    tg_tensor *f = tg_from_data(TG_F32, TG_SHAPE(1, 1, 1, 4), (const float[]){-1, 0, 1, 3});
    TG_OK_(tg_png_write(tp("auto.png"), f, 0, 0));
    tg_tensor *r;
    TG_OK_(tg_image_read(&r, tp("auto.png")));
    ck_assert_int_eq(tg_tensor_dim(r, 0), 1);
    const uint8_t *px = tg_tensor_data(r);
    ck_assert_int_eq(px[0], 0);
    ck_assert_int_eq(px[1], 64);  /* 1/4 * 255 = 63.75 */
    ck_assert_int_eq(px[2], 128); /* 127.5 rounds up */
    ck_assert_int_eq(px[3], 255);
    tg_release(r);
    TG_OK_(tg_pgm_write(tp("fixed.pgm"), f, 0, 1));
    TG_OK_(tg_image_read(&r, tp("fixed.pgm")));
    px = tg_tensor_data(r);
    ck_assert(px[0] == 0 && px[1] == 0 && px[2] == 255 && px[3] == 255);
    tg_release(r);

    /* shapes that are not one image */
    tg_tensor *three = tg_zeros(TG_F32, TG_SHAPE(3, 4, 4));
    ck_assert_int_eq(tg_png_write(tp("x.png"), three, 0, 1), TG_ERR_SHAPE);
    TG_ASSERT_ERROR_HAS("[3, 4, 4]");
    ck_assert(!exists(tp("x.png")));
    ck_assert_int_eq(tg_png_write(tp("no/dir/x.png"), img, 0, 1), TG_ERR_IO);
    /* the messages, whole: the writer's name, then the file's */
    char want[1024];
    snprintf(want, sizeof want, "tg_png_write: %s: cannot create: %s", tp("no/dir/x.png"),
             strerror(ENOENT));
    ck_assert_str_eq(tg_last_error(), want);
    ck_assert_int_eq(tg_pgm_write(tp("x.pgm"), three, 0, 1), TG_ERR_SHAPE);
    snprintf(want, sizeof want, "tg_pgm_write: %s: an image must be a non-empty (H, W) tensor "
             "(leading extents of 1 allowed), got [3, 4, 4]", tp("x.pgm"));
    ck_assert_str_eq(tg_last_error(), want);
    tg_clear_error();
    ck_assert_int_eq(tg_pgm_write(tp("x.pgm"), NULL, 0, 1), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(), "tg_pgm_write: argument 'image' is NULL");
    ck_assert_int_eq(tg_png_write(NULL, img, 0, 1), TG_ERR_ARG);
    ck_assert_str_eq(tg_last_error(),
                     "tg_png_write: argument 'path' is NULL (after an earlier failure: "
                     "tg_pgm_write: argument 'image' is NULL)");
    ck_assert(!exists(tp("x.pgm")));
    tg_scope_pop(s);
}
END_TEST

START_TEST(image_pgm_variants)
{
    tg_tensor *r = NULL;
    /* ASCII with comments and odd spacing */
    const char *p2 = "P2\n# a comment\n3  2\n# another\n15\n0 15 5\n\t10 1\n15\n";
    write_file(tp("a.pgm"), p2, strlen(p2));
    TG_OK_(tg_image_read(&r, tp("a.pgm")));
    ck_assert_int_eq(tg_tensor_dim(r, 0), 2);
    ck_assert_int_eq(tg_tensor_dim(r, 1), 3);
    const uint8_t want[6] = {0, 255, 85, 170, 17, 255};
    ck_assert(memcmp(tg_tensor_data(r), want, 6) == 0);
    tg_release(r);

    /* 16-bit binary */
    uint8_t p5[64];
    int h = snprintf((char *)p5, sizeof p5, "P5 2 1 65535\n");
    p5[h] = 0xff;
    p5[h + 1] = 0xff;
    p5[h + 2] = 0x80;
    p5[h + 3] = 0x00;
    write_file(tp("b.pgm"), p5, (size_t)h + 4);
    TG_OK_(tg_image_read(&r, tp("b.pgm")));
    ck_assert_int_eq(TG_DATA(r, uint8_t)[0], 255);
    ck_assert_int_eq(TG_DATA(r, uint8_t)[1], 128);
    tg_release(r);
}
END_TEST

/* Writes a PNG of the given colour type / depth with libpng directly. Pixel i of
 * the 4x3 image has gray level g(i) = i * 20 in every colour channel. */
static void write_test_png(const char *path, int color_type, int depth)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(!setjmp(png_jmpbuf(png)));
    png_init_io(png, f);
    png_set_IHDR(png, info, 4, 3, depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[12];
        for (int i = 0; i < 12; i++)
            pal[i].red = pal[i].green = pal[i].blue = (png_byte)(i * 20);
        png_set_PLTE(png, info, pal, 12);
    }
    png_write_info(png, info);
    int ch = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    int bytes = depth / 8;
    for (int y = 0; y < 3; y++) {
        uint8_t row[4 * 4 * 2];
        size_t k = 0;
        for (int x = 0; x < 4; x++) {
            int g = (y * 4 + x) * 20;
            for (int c = 0; c < ch; c++) {
                bool alpha = (ch == 4 && c == 3) || (ch == 2 && c == 1);
                int v = color_type == PNG_COLOR_TYPE_PALETTE ? y * 4 + x : alpha ? 255 : g;
                if (bytes == 2) {
                    int v16 = alpha ? 65535 : v * 257;
                    row[k++] = (uint8_t)(v16 >> 8);
                    row[k++] = (uint8_t)v16;
                } else {
                    row[k++] = (uint8_t)v;
                }
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

START_TEST(image_png_conversions)
{
    struct { int ct, depth; const char *name; } kinds[] = {
        {PNG_COLOR_TYPE_RGB, 8, "rgb.png"},
        {PNG_COLOR_TYPE_RGB_ALPHA, 8, "rgba.png"},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 8, "ga.png"},
        {PNG_COLOR_TYPE_PALETTE, 8, "pal.png"},
        {PNG_COLOR_TYPE_GRAY, 16, "gray16.png"},
        {PNG_COLOR_TYPE_RGB, 16, "rgb16.png"},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *p = tp(kinds[k].name);
        write_test_png(p, kinds[k].ct, kinds[k].depth);
        tg_tensor *r = NULL;
        TG_OK_(tg_image_read(&r, p));
        ck_assert_int_eq(tg_tensor_dim(r, 0), 3);
        ck_assert_int_eq(tg_tensor_dim(r, 1), 4);
        for (int i = 0; i < 12; i++)
            ck_assert_msg(abs(TG_DATA(r, uint8_t)[i] - i * 20) <= 1, "%s pixel %d: %d, want %d",
                          kinds[k].name, i, TG_DATA(r, uint8_t)[i], i * 20);
        tg_release(r);
    }
}
END_TEST

START_TEST(image_bad_files)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *img = tg_rand_uniform(TG_F32, TG_SHAPE(20, 20), 0, 1, NULL);
    const char *good = tp("good.png");
    TG_OK_(tg_png_write(good, img, 0, 1));
    size_t n;
    uint8_t *bytes = read_file(good, &n);
    tg_tensor *r = (tg_tensor *)&r;

    struct { const char *name; const void *data; size_t len; const char *says; } cases[] = {
        {"empty.png", "", 0, "empty file"},
        {"text.png", "hello world", 11, "not a PNG or PGM"},
        {"sig-only.png", bytes, 5, "truncated PNG"},
        {"half.png", bytes, n / 2, "corrupt PNG"},
        {"no-end.png", bytes, n - 12, "corrupt PNG"},
        {"p5-short.pgm", "P5 4 4 255\n\1\2\3", 14, "truncated: a 4x4 PGM needs 16 bytes of pixels, found 3"},
        {"p5-header.pgm", "P5 4", 4, "truncated PGM header"},
        {"p5-bad.pgm", "P5 4 x 255\n", 11, "malformed PGM header"},
        {"p5-zero.pgm", "P5 0 4 255\n", 11, "must be >= 1"},
        {"p2-short.pgm", "P2 2 2 255\n1 2 3  ", 18, "sample 4 of 4 is missing"},
        /* too few bytes for the samples: refused before the image is allocated */
        {"p2-cut.pgm", "P2 2 2 255\n1 2 3", 16, "truncated: a 2x2 ASCII PGM needs at least 8"},
        {"p2-bomb.pgm", "P2 16384 16384 255\n0", 21, "truncated: a 16384x16384 ASCII PGM"},
        {"p2-big.pgm", "P2 2 1 10\n1 11", 14, "sample 2 is larger than maxval 10"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *p = tp(cases[k].name);
        write_file(p, cases[k].data, cases[k].len);
        tg_status st = tg_image_read(&r, p);
        ck_assert_msg(st == TG_ERR_FORMAT, "%s: status %d (%s)", cases[k].name, st,
                      tg_last_error());
        ck_assert(r == NULL);
        TG_ASSERT_ERROR_HAS(p);
        TG_ASSERT_ERROR_HAS(cases[k].says);
    }
    /* a flipped byte in the image data breaks a CRC */
    bytes[n / 2] ^= 0x55;
    write_file(tp("flipped.png"), bytes, n);
    ck_assert_int_eq(tg_image_read(&r, tp("flipped.png")), TG_ERR_FORMAT);
    ck_assert_int_eq(tg_image_read(&r, tp("missing.png")), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("missing.png: cannot open");
    bytes[n / 2] ^= 0x55;

    /* every truncation of a good PNG: an error or (never) a crash */
    for (size_t cut = 0; cut < n; cut += 3) {
        write_file(tp("cut.png"), bytes, cut);
        ck_assert_int_ne(tg_image_read(&r, tp("cut.png")), TG_OK);
    }
    free(bytes);
    tg_scope_pop(s);
}
END_TEST

static void be32_chunk(FILE *f, const char *kind, const uint8_t *body, uint32_t n)
{
    uint8_t b[4];
    be32(b, n);
    fwrite(b, 1, 4, f);
    fwrite(kind, 1, 4, f);
    if (n)
        fwrite(body, 1, n, f);
    uLong crc = crc32(crc32(0, (const Bytef *)kind, 4), body, n);
    be32(b, (uint32_t)crc);
    fwrite(b, 1, 4, f);
}

START_TEST(image_size_claims)
{
    /* A valid PNG header claiming 16384 x 16384 gray pixels (256 MiB, within
     * the size limit) over an IDAT of a few bytes: refused from the header,
     * before the image is allocated, with a message that says why. */
    const char *p = tp("claims.png");
    FILE *f = fopen(p, "wb");
    ck_assert(f != NULL);
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    uint8_t ihdr[13] = {0};
    be32(ihdr, 16384);
    be32(ihdr + 4, 16384);
    ihdr[8] = 8; /* depth; colour type 0 (gray), no interlace */
    be32_chunk(f, "IHDR", ihdr, 13);
    uint8_t zeros[100] = {0}, idat[128];
    uLongf n = sizeof idat;
    ck_assert(compress(idat, &n, zeros, sizeof zeros) == Z_OK);
    be32_chunk(f, "IDAT", idat, (uint32_t)n);
    be32_chunk(f, "IEND", NULL, 0);
    fclose(f);
    tg_tensor *t = (tg_tensor *)&t;
    ck_assert_int_eq(tg_image_read(&t, p), TG_ERR_FORMAT);
    ck_assert(t == NULL);
    TG_ASSERT_ERROR_HAS("truncated or corrupt: a 16384x16384 PNG needs 268451840 bytes of pixel "
                        "data, more than a");
}
END_TEST

START_TEST(image_grid)
{
    tg_scope *s = tg_scope_push();
    /* three 2x2 maps, two per row: 2 rows x 2 cols of 2x2 tiles with 1-px borders */
    tg_tensor *maps = tg_from_data(TG_F32, TG_SHAPE(3, 2, 2),
                                   (const float[]){0, 1, 2, 3, 10, 10, 10, 20, -1, -2, -3, -4});
    tg_grid_opts o = TG_GRID_OPTS_INIT;
    o.ncols = 2;
    tg_tensor *g = tg_image_grid(maps, &o);
    TG_CHECK(g != NULL);
    ck_assert_int_eq(tg_tensor_dtype(g), TG_U8);
    ck_assert_int_eq(tg_tensor_dim(g, 0), 7);
    ck_assert_int_eq(tg_tensor_dim(g, 1), 7);
    const uint8_t *px = tg_tensor_data(g);
    const uint8_t want[7][7] = {
        {255, 255, 255, 255, 255, 255, 255},
        {255, 0, 85, 255, 0, 0, 255},
        {255, 170, 255, 255, 0, 255, 255},
        {255, 255, 255, 255, 255, 255, 255},
        {255, 255, 170, 255, 255, 255, 255},
        {255, 85, 0, 255, 255, 255, 255},
        {255, 255, 255, 255, 255, 255, 255},
    };
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 7; x++)
            ck_assert_msg(px[y * 7 + x] == want[y][x], "(%d, %d) = %d, want %d", y, x,
                          px[y * 7 + x], want[y][x]);

    /* (N, 1, H, W), scale 3, default columns, one range for all, then write/read */
    tg_tensor *m4 = tg_reshape(maps, TG_SHAPE(3, 1, 2, 2));
    o = (tg_grid_opts)TG_GRID_OPTS_INIT;
    o.scale = 3;
    o.per_map_scale = false;
    o.border = 128;
    g = tg_image_grid(m4, &o);
    ck_assert_int_eq(tg_tensor_dim(g, 0), 2 * 7 + 1);
    ck_assert_int_eq(tg_tensor_dim(g, 1), 2 * 7 + 1);
    px = tg_tensor_data(g);
    ck_assert_int_eq(px[0], 128);
    ck_assert_int_eq(px[1 * 15 + 1], (int)(4.0 / 24 * 255 + 0.5)); /* value 0 of [-4, 20] */
    ck_assert_int_eq(px[6 * 15 + 12], 255);                        /* value 20 */
    TG_OK_(tg_png_write(tp("grid.png"), g, 0, 255));
    tg_tensor *r;
    TG_OK_(tg_image_read(&r, tp("grid.png")));
    assert_same_bits(r, g, "grid");
    tg_release(r);

    /* errors */
    ck_assert(tg_image_grid(tg_zeros(TG_F32, TG_SHAPE(2, 2)), NULL) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    o.scale = 0;
    ck_assert(tg_image_grid(maps, &o) == NULL);
    ck_assert_int_eq(tg_last_status(), TG_ERR_ARG);
    ck_assert(tg_image_grid(NULL, NULL) == NULL);
    tg_scope_pop(s);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("io");
    TCase *tc = io_tcase("idx");
    tcase_add_test(tc, idx_u8_plain_and_gzip);
    tcase_add_test(tc, idx_other_types);
    tcase_add_test(tc, idx_write_round_trip);
    tcase_add_loop_test(tc, idx_bad_input, 0, (int)(sizeof bad_idx_cases / sizeof bad_idx_cases[0]));
    tcase_add_test(tc, idx_fuzz);
    tcase_add_test(tc, idx_gzip_integrity);
    tcase_add_test(tc, idx_gzip_bomb);
    tcase_add_test(tc, io_not_regular_files);
    tcase_add_test(tc, idx_null_arguments);
    suite_add_tcase(s, tc);

    tc = io_tcase("fashion_mnist");
    tcase_add_test(tc, fmnist_synthetic);
    tcase_add_test(tc, fmnist_directory);
    tcase_add_test(tc, fmnist_bad_files);
    tcase_add_test(tc, fmnist_class_names);
    tcase_add_test(tc, fmnist_real_test_split);
    suite_add_tcase(s, tc);

    tc = io_tcase("batches");
    tcase_add_test(tc, batches_convert_u8_like_f32_load);
    suite_add_tcase(s, tc);

    tc = io_tcase("checkpoint");
    tcase_add_test(tc, ckpt_round_trip);
    tcase_add_test(tc, ckpt_load_into);
    tcase_add_loop_test(tc, ckpt_load_into_mismatch, 0,
                        (int)(sizeof mismatch_cases / sizeof mismatch_cases[0]));
    tcase_add_test(tc, ckpt_bad_files);
    tcase_add_test(tc, ckpt_wrong_model);
    tcase_add_test(tc, ckpt_atomic_save);
    tcase_add_test(tc, ckpt_save_arguments);
    suite_add_tcase(s, tc);

    tc = io_tcase("image");
    tcase_add_test(tc, image_png_pgm_round_trip);
    tcase_add_test(tc, image_pgm_variants);
    tcase_add_test(tc, image_png_conversions);
    tcase_add_test(tc, image_bad_files);
    tcase_add_test(tc, image_size_claims);
    tcase_add_test(tc, image_grid);
    suite_add_tcase(s, tc);
    return s;
}
