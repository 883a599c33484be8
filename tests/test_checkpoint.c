/* tests/test_checkpoint.c -- checkpoints that survive anything: attribute
 * checks, the checksummed version-2 file, non-finite values, FIFOs, symbolic
 * links, stale temporary files, the advisory lock, version-1 and other
 * unverified files (the child-process parse of io/h5safe.c).
 *
 * Bad files are crafted here with the HDF5 C API and raw bytes, and the
 * checksum header is rebuilt from docs/checkpoint-format.md (zlib's crc32), so
 * the reader is not only checked against its own writer. The basic round trip,
 * atomic saves and load_into checks stay in tests/test_io.c. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "io/checkpoint_impl.h"
#include "io/h5safe_impl.h"
#include "tests/tg_test.h"

/* ---------------------------------------------------------------- temp folder */

static char tmpdir[512];

static void tmp_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/tg-ckpt-XXXXXX", base && *base ? base : "/tmp");
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

static const char *tp(const char *name)
{
    static char bufs[8][640];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static uint8_t *read_bytes(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_bytes(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(b, 1, n, f) == n);
    fclose(f);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* ---------------------------------------------------------------- a realistic state */

/* A small CNN's training state, laid out as tg_train_state_export lays out the
 * tutorial's: parameters, Adam moments, step, RNG state, counters, architecture.
 * All values finite. */
static tg_state_dict *model_state(void)
{
    static const struct {
        const char *name;
        int nd;
        int64_t shape[4];
    } params[] = {
        {"model/conv2d/kernel", 4, {8, 1, 3, 3}}, {"model/conv2d/bias", 1, {8}},
        {"model/dense/kernel", 2, {72, 16}},      {"model/dense/bias", 1, {16}},
        {"model/dense_1/kernel", 2, {16, 10}},    {"model/dense_1/bias", 1, {10}},
    };
    tg_state_dict *sd = tg_state_dict_new();
    tg_scope *s = tg_scope_push();
    for (int slot = 0; slot < 3; slot++) {
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", slot == 0 ? "" : slot == 1 ? "optimizer/m/"
                     : "optimizer/v/", params[i].name);
            tg_tensor *t = tg_rand_normal(TG_F32, params[i].nd, params[i].shape, 0.0,
                                          slot == 0 ? 0.1 : 0.01, NULL);
            if (slot == 2) /* second moments are positive */
                t = tg_abs(t);
            TG_OK_(tg_state_dict_set(sd, name, t));
        }
    }
    TG_OK_(tg_state_dict_set(sd, "optimizer/step", tg_full(TG_I64, 0, NULL, 42)));
    tg_tensor *rng = tg_zeros(TG_I64, 1, (int64_t[]){4});
    for (int i = 0; i < 4; i++)
        ((int64_t *)tg_tensor_data(rng))[i] = 0x9e3779b97f4a7c15LL * (i + 1);
    TG_OK_(tg_state_dict_set(sd, "rng/state", rng));
    TG_OK_(tg_state_dict_set_i64(sd, "epoch", 2));
    TG_OK_(tg_state_dict_set_i64(sd, "batch", 0));
    TG_OK_(tg_state_dict_set_f64(sd, "optimizer/lr", 1e-3));
    TG_OK_(tg_state_dict_set_str(sd, "model/architecture",
                                 "{\"layers\":[\"Conv2D(8,3x3,relu)\",\"MaxPool(2)\",\"Flatten\","
                                 "\"Dense(16,relu)\",\"Dense(10)\"]}"));
    tg_scope_pop(s);
    return sd;
}

/* The file offset of dataset name's data (contiguous storage), read with HDF5. */
static long data_offset(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert(d >= 0);
    haddr_t at = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    ck_assert(at != HADDR_UNDEF);
    return (long)at;
}

/* ---------------------------------------------------------------- the checksum header, by the doc */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Gives a file written by HDF5 with a 512-byte user block the version-2
 * checksum header of docs/checkpoint-format.md (with no tensor table), so a
 * crafted file reaches the in-process reader. */
static void seal(const char *path)
{
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    ck_assert(n > 512);
    memset(b, 0, 512);
    memcpy(b, "\x89TGCKPT\n", 8);
    put_le(b + 8, 2, 4);
    put_le(b + 12, 512, 4);
    put_le(b + 16, n - 512, 8);
    put_le(b + 24, crc32(0, b + 512, (uInt)(n - 512)), 4);
    put_le(b + 28, 0, 4);
    put_le(b + 32, crc32(0, b, 512), 4);
    write_bytes(path, b, n);
    free(b);
}

/* ---------------------------------------------------------------- crafted attributes */

static void attr_str(hid_t loc, const char *name, const char *v, hsize_t count, bool var)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, var ? H5T_VARIABLE : strlen(v) + 1);
    hid_t sp = count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, NULL);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    size_t k = count ? (size_t)count : 1;
    if (var) {
        const char **vals = malloc(k * sizeof *vals);
        for (size_t i = 0; i < k; i++)
            vals[i] = v;
        ck_assert(H5Awrite(a, t, vals) >= 0);
        free(vals);
    } else {
        size_t len = strlen(v) + 1;
        char *vals = calloc(k, len);
        for (size_t i = 0; i < k; i++)
            memcpy(vals + i * len, v, len);
        ck_assert(H5Awrite(a, t, vals) >= 0);
        free(vals);
    }
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void attr_i64(hid_t loc, const char *name, int64_t v, hsize_t count)
{
    hid_t sp = count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, NULL);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t vals[8] = {v, v, v, v, v, v, v, v};
    ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, vals) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void attr_null(hid_t loc, const char *name)
{
    hid_t sp = H5Screate(H5S_NULL);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 8);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(sp);
}

/* One crafted checkpoint per case: the metadata right except for one attribute. */
static const struct {
    const char *what;
    const char *expect;
} attr_cases[] = {
    {"format: 64 fixed-length strings", "attribute 'format' holds 64 values"},
    {"format: 64 variable-length strings", "attribute 'format' holds 64 values"},
    {"library_version: 64 fixed-length strings", "attribute 'library_version' holds 64 values"},
    {"library_version: 64 variable-length strings",
     "attribute 'library_version' holds 64 values"},
    {"format: an integer", "attribute 'format' is not a string"},
    {"format_version: a string", "attribute 'format_version' is not an integer"},
    {"format_version: 4 integers", "attribute 'format_version' holds 4 values"},
    {"library_version: null dataspace", "attribute 'library_version' has an empty (null)"},
    {"epoch: 8 integers", "attribute 'epoch' holds 8 values"},
    {"note: a 2 MB string", "attribute 'note' is a string of 2097153 bytes (at most 1048576)"},
    {"note: a 2 MB variable-length string", "attribute 'note' is a string longer than"},
};

static void craft(const char *path, int k, bool sealed)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (sealed)
        H5Pset_userblock(fcpl, 512);
    if (k == 9) { /* over 64 KB: dense attribute storage (1.8's format) */
        H5Pset_attr_phase_change(fcpl, 0, 0);
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    ck_assert(f >= 0);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    static const char lib[] = "0.1.0";
    if (k == 0)
        attr_str(f, "format", "libtensor-checkpoint", 64, false);
    else if (k == 1)
        attr_str(f, "format", "libtensor-checkpoint", 64, true);
    else if (k == 4)
        attr_i64(f, "format", 7, 0);
    else
        attr_str(f, "format", "libtensor-checkpoint", 0, k % 2 == 1);
    if (k == 5)
        attr_str(f, "format_version", "2", 0, false);
    else if (k == 6)
        attr_i64(f, "format_version", 1, 4);
    else
        attr_i64(f, "format_version", sealed ? 2 : 1, 0);
    if (k == 2)
        attr_str(f, "library_version", lib, 64, false);
    else if (k == 3)
        attr_str(f, "library_version", lib, 64, true);
    else if (k == 7)
        attr_null(f, "library_version");
    else
        attr_str(f, "library_version", lib, 0, false);
    attr_i64(f, "epoch", 3, k == 8 ? 8 : 0);
    if (k == 9 || k == 10) {
        size_t n = 2u << 20;
        char *big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = '\0';
        attr_str(f, "note", big, 0, k == 10);
        free(big);
    }
    hsize_t d = 3;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    float v[3] = {1, 2, 3};
    hid_t ds = H5Dcreate2(f, "w", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    if (sealed)
        seal(path);
}

/* Each attribute read checks the dataspace and type first: a string array
 * where one string belongs was a heap (fixed-length) or stack (variable-length)
 * overflow inside H5Aread. Both paths: unverified (parsed in the child, then
 * here) and sealed (verified, parsed here only). */
START_TEST(ckpt_attribute_checks)
{
    tg_scope *scope = tg_scope_push();
    int k = _i / 2;
    bool sealed = _i % 2;
    const char *p = tp("crafted.h5");
    craft(p, k, sealed);
    tg_state_dict *out = (tg_state_dict *)&out;
    tg_status st = tg_checkpoint_load(&out, p);
    ck_assert_msg(st == TG_ERR_FORMAT, "%s (%s): status %d: %s", attr_cases[k].what,
                  sealed ? "sealed" : "unverified", st, tg_last_error());
    ck_assert(out == NULL);
    TG_ASSERT_ERROR_HAS(p);
    TG_ASSERT_ERROR_HAS(attr_cases[k].expect);
    tg_checkpoint_info info;
    ck_assert_int_eq(tg_checkpoint_info_get(&info, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS(attr_cases[k].expect);
    tg_state_dict *want = tg_state_dict_new();
    TG_OK_(tg_state_dict_set(want, "w", tg_zeros(TG_F32, TG_SHAPE(3))));
    ck_assert_int_eq(tg_checkpoint_load_into(p, want), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS(attr_cases[k].expect);
    ck_assert(((float *)tg_tensor_data(tg_state_dict_get(want, "w")))[2] == 0.0f);
    tg_state_dict_free(want);
    tg_scope_pop(scope);
}
END_TEST

/* The same crafted files minus the fault load, so the cases above fail for the
 * reason they name (and the test's own sealing is the documented layout). */
START_TEST(ckpt_attribute_control)
{
    tg_scope *scope = tg_scope_push();
    for (int sealed = 0; sealed < 2; sealed++) {
        const char *p = tp("fine.h5");
        craft(p, 99, sealed);
        tg_state_dict *out;
        TG_OK_(tg_checkpoint_load(&out, p));
        ck_assert_int_eq(tg_state_dict_size(out), 1);
        int64_t epoch;
        TG_OK_(tg_state_dict_get_i64(&epoch, out, "epoch"));
        ck_assert_int_eq(epoch, 3);
        ck_assert(((float *)tg_tensor_data(tg_state_dict_get(out, "w")))[2] == 3.0f);
        tg_state_dict_free(out);
        tg_checkpoint_info info;
        TG_OK_(tg_checkpoint_info_get(&info, p));
        ck_assert_int_eq(info.format_version, sealed ? 2 : 1);
        ck_assert_str_eq(info.library_version, "0.1.0");
    }
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- the checksummed file */

START_TEST(ckpt_v2_layout)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    const char *p = tp("run.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    size_t n;
    uint8_t *b = read_bytes(p, &n);
    /* the header of docs/checkpoint-format.md, checked independently */
    ck_assert(memcmp(b, "\x89TGCKPT\n", 8) == 0);
    uint32_t ub = b[12] | b[13] << 8 | (uint32_t)b[14] << 16 | (uint32_t)b[15] << 24;
    ck_assert_int_eq(ub, 1024); /* 40 + 20 entries: over 512 */
    ck_assert(memcmp(b + ub, "\x89HDF\r\n\x1a\n", 8) == 0);
    ck_assert_int_eq(b[ub + 8], 2); /* superblock version 2: checksummed */
    uint32_t body_crc = b[24] | b[25] << 8 | (uint32_t)b[26] << 16 | (uint32_t)b[27] << 24;
    ck_assert_uint_eq(body_crc, crc32(0, b + ub, (uInt)(n - ub)));
    ck_assert_int_eq(b[28], 20);
    free(b);
    /* HDF5 itself reads it (as h5py does) with fixed-length strings */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t a = H5Aopen(f, "format", H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    ck_assert(H5Tis_variable_str(t) == 0);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
    tg_state_dict *back;
    TG_OK_(tg_checkpoint_load(&back, p));
    ck_assert_int_eq(tg_state_dict_size(back), tg_state_dict_size(sd));
    for (size_t i = 0; i < tg_state_dict_size(sd); i++) {
        const char *name = tg_state_dict_name_at(sd, i);
        tg_tensor *x = tg_state_dict_tensor_at(sd, i), *y = tg_state_dict_get(back, name);
        ck_assert_msg(y && memcmp(tg_tensor_data(x), tg_tensor_data(y),
                                  tg_tensor_nbytes(x)) == 0, "%s differs", name);
    }
    const char *arch;
    TG_OK_(tg_state_dict_get_str(&arch, back, "model/architecture"));
    ck_assert(strstr(arch, "Dense(16,relu)") != NULL);
    tg_state_dict_free(back);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* The flip: one exponent bit of model/dense_1/kernel[0,0] made 5.3e37
 * and loaded silently. Now it is refused, naming the tensor. */
START_TEST(ckpt_flip_names_tensor)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    const char *p = tp("run.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    long at = data_offset(p, "model/dense_1/kernel");
    size_t n;
    uint8_t *b = read_bytes(p, &n);
    float before;
    memcpy(&before, b + at, 4);
    ck_assert(before == ((float *)tg_tensor_data(tg_state_dict_get(sd, "model/dense_1/kernel")))[0]);
    b[at + 3] ^= 0x40; /* the exponent's top bit (little-endian float) */
    const char *bad = tp("flipped.h5");
    write_bytes(bad, b, n);
    tg_state_dict *out = (tg_state_dict *)&out;
    ck_assert_int_eq(tg_checkpoint_load(&out, bad), TG_ERR_FORMAT);
    ck_assert(out == NULL);
    char want[1024];
    snprintf(want, sizeof want, "tg_checkpoint_load: %s: tensor 'model/dense_1/kernel' is "
             "damaged (its data does not match its checksum)", bad);
    ck_assert_str_eq(tg_last_error(), want);
    /* load_into changes nothing */
    tg_state_dict *target = tg_state_dict_new();
    TG_OK_(tg_state_dict_set(target, "model/dense_1/kernel", tg_zeros(TG_F32, TG_SHAPE(16, 10))));
    ck_assert_int_eq(tg_checkpoint_load_into(bad, target), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("model/dense_1/kernel' is damaged");
    ck_assert(((float *)tg_tensor_data(tg_state_dict_get(target, "model/dense_1/kernel")))[0] == 0);
    tg_state_dict_free(target);
    /* a flip in the metadata (the superblock's end-of-file address) */
    b[at + 3] ^= 0x40;
    b[1024 + 28] ^= 0x01;
    write_bytes(bad, b, n);
    ck_assert_int_eq(tg_checkpoint_load(&out, bad), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("metadata damaged");
    free(b);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* ~120 random single-bit flips anywhere in a real checkpoint: every one is
 * refused with a clear error (none loads, none crashes). */
START_TEST(ckpt_random_flips)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    const char *p = tp("run.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    size_t n;
    uint8_t *b = read_bytes(p, &n);
    srand(1234);
    int refused = 0, named = 0, meta = 0;
    enum { FLIPS = 120 };
    for (int k = 0; k < FLIPS; k++) {
        size_t at = (size_t)rand() % n;
        int bit = rand() % 8;
        b[at] ^= (uint8_t)(1 << bit);
        tg_state_dict *out = (tg_state_dict *)&out;
        tg_status st = tg_checkpoint_load_image(&out, b, n, "flip.h5", 0);
        b[at] ^= (uint8_t)(1 << bit);
        ck_assert_msg(st == TG_ERR_FORMAT, "flip of bit %d at byte %zu: status %d (%s)", bit,
                      at, st, tg_last_error());
        ck_assert(out == NULL);
        ck_assert_msg(strncmp(tg_last_error(), "tg_checkpoint_load_image: flip.h5: ", 35) == 0,
                      "%s", tg_last_error());
        refused++;
        named += strstr(tg_last_error(), "' is damaged") != NULL;
        meta += strstr(tg_last_error(), "metadata damaged") != NULL;
    }
    ck_assert_int_eq(refused, FLIPS);
    ck_assert_int_gt(named, 0);
    ck_assert_int_gt(meta, 0);
    printf("ckpt_random_flips: %d of %d flips refused (%d naming a tensor, %d metadata)\n",
           refused, FLIPS, named, meta);
    /* and the unflipped bytes load */
    tg_state_dict *out;
    TG_OK_(tg_checkpoint_load_image(&out, b, n, "flip.h5", 0));
    tg_state_dict_free(out);
    free(b);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* Object timestamps are off: the same dict gives the same bytes, also a
 * second later. */
START_TEST(ckpt_identical_saves)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    const char *a = tp("a.h5"), *b = tp("b.h5");
    TG_OK_(tg_checkpoint_save(a, sd));
    TG_OK_(tg_checkpoint_save(b, sd));
    size_t na, nb;
    uint8_t *ba = read_bytes(a, &na), *bb = read_bytes(b, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert(memcmp(ba, bb, na) == 0);
    free(bb);
    usleep(1100 * 1000);
    TG_OK_(tg_checkpoint_save(b, sd));
    bb = read_bytes(b, &nb);
    ck_assert_int_eq(na, nb);
    size_t diff = 0;
    for (size_t i = 0; i < na; i++)
        diff += ba[i] != bb[i];
    ck_assert_msg(diff == 0, "%zu bytes differ after a pause", diff);
    free(ba);
    free(bb);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- non-finite values */

START_TEST(ckpt_nonfinite_refused)
{
    tg_scope *scope = tg_scope_push();
    static const char *const names[] = {"model/dense/kernel", "optimizer/v/model/dense/bias",
                                        "model/conv2d/kernel"};
    for (int k = 0; k < 3; k++) {
        tg_state_dict *sd = model_state();
        tg_tensor *t = tg_state_dict_get(sd, names[k]);
        float *d = tg_tensor_data(t);
        const char *where;
        if (k == 0) {
            d[1 * 16 + 2] = NAN; /* [1, 2] of (72, 16) */
            d[5 * 16] = NAN;     /* a later one is not the one named */
            where = "holds a non-finite value (nan) at index [1, 2]";
        } else if (k == 1) {
            d[15] = INFINITY;
            where = "holds a non-finite value (inf) at index [15]";
        } else {
            d[(3 * 1 + 0) * 9 + 2 * 3 + 1] = -INFINITY; /* [3, 0, 2, 1] of (8, 1, 3, 3) */
            where = "holds a non-finite value (-inf) at index [3, 0, 2, 1]";
        }
        tg_tensor_bump_version(t);
        const char *p = tp("nan.h5");
        TG_OK_(tg_checkpoint_save(p, sd));
        tg_state_dict *out = (tg_state_dict *)&out;
        ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
        ck_assert(out == NULL);
        char want[256];
        snprintf(want, sizeof want, "tensor '%s' %s", names[k], where);
        TG_ASSERT_ERROR_HAS(want);
        /* load_into refuses before changing anything */
        tg_state_dict *target = tg_state_dict_new();
        tg_tensor *z = tg_zeros(TG_F32, tg_tensor_ndim(t), tg_tensor_shape(t));
        TG_OK_(tg_state_dict_set(target, names[k], z));
        ck_assert_int_eq(tg_checkpoint_load_into(p, target), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS(want);
        float *zd = tg_tensor_data(tg_state_dict_get(target, names[k]));
        for (int64_t i = 0; i < tg_tensor_numel(t); i++)
            ck_assert(zd[i] == 0.0f);
        /* the explicit opt-out loads the values as stored */
        TG_OK_(tg_checkpoint_load_into_ex(p, target, TG_CHECKPOINT_ALLOW_NONFINITE));
        ck_assert(memcmp(tg_tensor_data(tg_state_dict_get(target, names[k])), d,
                         tg_tensor_nbytes(t)) == 0);
        TG_OK_(tg_checkpoint_load_ex(&out, p, TG_CHECKPOINT_ALLOW_NONFINITE));
        tg_state_dict_free(out);
        tg_state_dict_free(target);
        tg_state_dict_free(sd);
    }
    /* f64 too; integers are not checked */
    tg_state_dict *sd = tg_state_dict_new();
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(2, 2));
    ((double *)tg_tensor_data(x))[3] = NAN;
    TG_OK_(tg_state_dict_set(sd, "buf/x", x));
    const char *p = tp("nan64.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    tg_state_dict *out;
    ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("tensor 'buf/x' holds a non-finite value (nan) at index [1, 1]");
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- files that are not files */

static void on_alarm(int sig)
{
    (void)sig;
    const char msg[] = "blocked on a FIFO\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

START_TEST(ckpt_not_regular)
{
    tg_scope *scope = tg_scope_push();
    signal(SIGALRM, on_alarm);
    alarm(10); /* a blocked open fails the test instead of hanging it */
    const char *fifo = tp("pipe.h5");
    ck_assert(mkfifo(fifo, 0600) == 0);
    tg_state_dict *out = (tg_state_dict *)&out;
    ck_assert_int_eq(tg_checkpoint_load(&out, fifo), TG_ERR_IO);
    ck_assert(out == NULL);
    char want[1024];
    snprintf(want, sizeof want, "tg_checkpoint_load: %s: is not a regular file (a FIFO); "
             "checkpoints are regular files", fifo);
    ck_assert_str_eq(tg_last_error(), want);
    tg_checkpoint_info info;
    ck_assert_int_eq(tg_checkpoint_info_get(&info, fifo), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("a FIFO");
    tg_state_dict *sd = model_state();
    ck_assert_int_eq(tg_checkpoint_save(fifo, sd), TG_ERR_IO);
    snprintf(want, sizeof want, "tg_checkpoint_save: %s: is not a regular file (a FIFO); "
             "checkpoints are regular files", fifo);
    ck_assert_str_eq(tg_last_error(), want);
    struct stat st;
    ck_assert(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    ck_assert(!exists(tp("pipe.h5.tmp-0")));
    /* a device (read only: a save over /dev/null is refused by the same check) */
    ck_assert_int_eq(tg_checkpoint_load(&out, "/dev/null"), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("/dev/null: is not a regular file (a device)");
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* A checkpoint path that is a symbolic link: the save replaces the file the
 * link points to, and the link stays a link (also a dangling one, and one
 * through a relative path into another folder). */
START_TEST(ckpt_symlink)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    ck_assert(mkdir(tp("store"), 0700) == 0);
    const char *real = tp("store/real.h5"), *link = tp("link.h5");
    write_bytes(real, "old", 3);
    ck_assert(symlink("store/real.h5", link) == 0);
    TG_OK_(tg_checkpoint_save(link, sd));
    struct stat st;
    ck_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    ck_assert(lstat(real, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 1000);
    tg_state_dict *out;
    TG_OK_(tg_checkpoint_load(&out, real));
    ck_assert_int_eq(tg_state_dict_size(out), tg_state_dict_size(sd));
    tg_state_dict_free(out);
    TG_OK_(tg_checkpoint_load(&out, link));
    tg_state_dict_free(out);
    /* a link to a link to a file that does not exist yet */
    const char *l2 = tp("l2.h5"), *l1 = tp("l1.h5");
    ck_assert(symlink("l1.h5", l2) == 0);
    ck_assert(symlink(tp("store/new.h5"), l1) == 0);
    TG_OK_(tg_checkpoint_save(l2, sd));
    ck_assert(lstat(l2, &st) == 0 && S_ISLNK(st.st_mode));
    ck_assert(lstat(l1, &st) == 0 && S_ISLNK(st.st_mode));
    ck_assert(lstat(tp("store/new.h5"), &st) == 0 && S_ISREG(st.st_mode));
    /* the temporary file was beside the target, and is gone */
    DIR *d = opendir(tp("store"));
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".tmp-") != NULL;
    closedir(d);
    ck_assert_int_eq(n, 0);
    /* a loop of links is an error, not a hang */
    ck_assert(symlink("loop-b.h5", tp("loop-a.h5")) == 0);
    ck_assert(symlink("loop-a.h5", tp("loop-b.h5")) == 0);
    ck_assert_int_eq(tg_checkpoint_save(tp("loop-a.h5"), sd), TG_ERR_IO);
    TG_ASSERT_ERROR_HAS("cannot follow the symbolic link");
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* Temporary files of killed saves of the same path are removed by the next
 * save when their pid is gone; a live pid's file stays (it may be a save in
 * progress), and other paths' files are not touched. */
START_TEST(ckpt_stale_temps)
{
    tg_scope *scope = tg_scope_push();
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    ck_assert(dead > 0);
    waitpid(dead, NULL, 0);
    char name[128];
    snprintf(name, sizeof name, "run.h5.tmp-%ld", (long)dead);
    const char *stale = tp(name);
    write_bytes(stale, "half a checkpoint", 17);
    snprintf(name, sizeof name, "run.h5.tmp-%ld", (long)getppid());
    const char *live = tp(name);
    write_bytes(live, "in progress", 11);
    snprintf(name, sizeof name, "other.h5.tmp-%ld", (long)dead);
    const char *other = tp(name);
    write_bytes(other, "x", 1);
    const char *odd = tp("run.h5.tmp-12x");
    write_bytes(odd, "x", 1);
    tg_state_dict *sd = model_state();
    TG_OK_(tg_checkpoint_save(tp("run.h5"), sd));
    ck_assert_msg(!exists(stale), "%s was not removed", stale);
    ck_assert(exists(live));
    ck_assert(exists(other));
    ck_assert(exists(odd));
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- the advisory lock */

START_TEST(ckpt_lock)
{
    tg_scope *scope = tg_scope_push();
    const char *p = tp("run.h5");
    struct tg_checkpoint_lock *lock = NULL;
    TG_OK_(tg_checkpoint_lock(p, &lock));
    ck_assert(lock != NULL);
    ck_assert(exists(tp("run.h5.lock")));
    /* another process fails at once, told the path and our pid */
    int fds[2];
    ck_assert(pipe(fds) == 0);
    pid_t c = fork();
    if (c == 0) {
        close(fds[0]);
        struct tg_checkpoint_lock *l2 = NULL;
        tg_status st = tg_checkpoint_lock(p, &l2);
        char msg[1024];
        int len = snprintf(msg, sizeof msg, "%d %s", (int)st, tg_last_error());
        ssize_t w = write(fds[1], msg, (size_t)len);
        (void)w;
        _exit(l2 == NULL ? 0 : 1);
    }
    close(fds[1]);
    char got[1024] = "";
    ssize_t k = 0, r;
    while ((r = read(fds[0], got + k, sizeof got - 1 - (size_t)k)) > 0)
        k += r;
    got[k > 0 ? k : 0] = '\0';
    close(fds[0]);
    int status;
    waitpid(c, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char want[1024];
    snprintf(want, sizeof want, "%d tg_checkpoint_lock: %s: another process is using this "
             "checkpoint path (lock file %s.lock held by pid %ld)", (int)TG_ERR_STATE, p, p,
             (long)getpid());
    ck_assert_str_eq(got, want);
    /* a second lock in this process conflicts too */
    struct tg_checkpoint_lock *again = (struct tg_checkpoint_lock *)&again;
    ck_assert_int_eq(tg_checkpoint_lock(p, &again), TG_ERR_STATE);
    ck_assert(again == NULL);
    /* released: the next one gets it; the lock file stays */
    tg_checkpoint_unlock(lock);
    ck_assert(exists(tp("run.h5.lock")));
    TG_OK_(tg_checkpoint_lock(p, &again));
    tg_checkpoint_unlock(again);
    tg_checkpoint_unlock(NULL);
    ck_assert_int_eq(tg_checkpoint_lock(NULL, &again), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_lock(p, NULL), TG_ERR_ARG);
    ck_assert_int_eq(tg_checkpoint_lock(tp("no/such/dir/x.h5"), &again), TG_ERR_IO);
    /* a holder that dies releases it */
    c = fork();
    if (c == 0) {
        struct tg_checkpoint_lock *l3;
        _exit(tg_checkpoint_lock(p, &l3) == TG_OK ? 0 : 1); /* never unlocked */
    }
    waitpid(c, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TG_OK_(tg_checkpoint_lock(p, &again));
    tg_checkpoint_unlock(again);
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- unverified files */

static const char *v1_path(void)
{
    static char buf[1024];
    const char *top = getenv("top_srcdir");
    snprintf(buf, sizeof buf, "%s/tests/data/ckpt_v1.h5", top && *top ? top : "..");
    return buf;
}

/* tests/data/ckpt_v1.h5 was written by the version-1 writer (before the
 * checksums): it still loads, through the child-process parse. */
START_TEST(ckpt_v1_loads)
{
    tg_scope *scope = tg_scope_push();
    /* the caller's OpenMP/oneDNN threads exist when the child is forked */
    tg_tensor *big = tg_abs(tg_rand_normal(TG_F32, TG_SHAPE(1024, 1024), 0, 1, NULL));
    ck_assert(big != NULL);
    tg_state_dict *out;
    TG_OK_(tg_checkpoint_load(&out, v1_path()));
    ck_assert_int_eq(tg_state_dict_size(out), 4);
    float *k = tg_tensor_data(tg_state_dict_get(out, "model/dense/kernel"));
    for (int i = 0; i < 12; i++)
        ck_assert(k[i] == (float)i);
    ck_assert(((float *)tg_tensor_data(tg_state_dict_get(out, "model/dense/bias")))[2] == 0.5f);
    ck_assert_int_eq(((int64_t *)tg_tensor_data(tg_state_dict_get(out, "rng/state")))[3], 13);
    ck_assert_int_eq(*(int64_t *)tg_tensor_data(tg_state_dict_get(out, "optimizer/step")), 17);
    int64_t epoch;
    double lr;
    const char *arch;
    TG_OK_(tg_state_dict_get_i64(&epoch, out, "epoch"));
    TG_OK_(tg_state_dict_get_f64(&lr, out, "optimizer/lr"));
    TG_OK_(tg_state_dict_get_str(&arch, out, "model/architecture"));
    ck_assert_int_eq(epoch, 3);
    ck_assert(lr == 0.001);
    ck_assert_str_eq(arch, "dense(3)");
    tg_state_dict_free(out);
    tg_checkpoint_info info;
    TG_OK_(tg_checkpoint_info_get(&info, v1_path()));
    ck_assert_int_eq(info.format_version, 1);
    /* and saving it again gives a version-2 file with the same contents */
    TG_OK_(tg_checkpoint_load(&out, v1_path()));
    TG_OK_(tg_checkpoint_save(tp("v2.h5"), out));
    tg_state_dict_free(out);
    TG_OK_(tg_checkpoint_info_get(&info, tp("v2.h5")));
    ck_assert_int_eq(info.format_version, 2);
    tg_scope_pop(scope);
}
END_TEST

/* Corrupted copies of the version-1 file: each loads (v1 has no checksums: a
 * flip inside a tensor's data is not seen) or fails with a clear error; none
 * crashes or hangs the caller. The superblock and root header are always
 * refused. */
START_TEST(ckpt_v1_corrupt)
{
    tg_scope *scope = tg_scope_push();
    size_t n;
    uint8_t *b = read_bytes(v1_path(), &n);
    const char *p = tp("v1-bad.h5");
    int refused = 0, loaded = 0;
    for (size_t at = 0; at < n; at += 211) {
        uint8_t keep = b[at];
        b[at] ^= 0xff;
        write_bytes(p, b, n);
        b[at] = keep;
        tg_state_dict *out = (tg_state_dict *)&out;
        tg_status st = tg_checkpoint_load(&out, p);
        if (st == TG_OK) {
            loaded++;
            tg_state_dict_free(out);
            continue;
        }
        ck_assert_msg(st == TG_ERR_FORMAT, "byte %zu: status %d (%s)", at, st, tg_last_error());
        ck_assert(out == NULL);
        TG_ASSERT_ERROR_HAS(p);
        refused++;
    }
    ck_assert_int_gt(refused, 0);
    printf("ckpt_v1_corrupt: %d corrupted copies refused, %d loaded\n", refused, loaded);
    /* single-bit flips that crash HDF5 1.10.8 when it parses them in-process (a
     * null read, memcpy overlaps in the global heap; also in
     * tests/fuzz/regress/checkpoint/): here they are errors */
    static const struct {
        size_t at;
        int bit;
    } crashers[] = {{2139, 2}, {2116, 6}, {1762, 3}};
    for (size_t i = 0; i < sizeof crashers / sizeof crashers[0]; i++) {
        b[crashers[i].at] ^= (uint8_t)(1 << crashers[i].bit);
        write_bytes(p, b, n);
        b[crashers[i].at] ^= (uint8_t)(1 << crashers[i].bit);
        tg_state_dict *out = (tg_state_dict *)&out;
        ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
        ck_assert(out == NULL);
        TG_ASSERT_ERROR_HAS(p);
        printf("ckpt_v1_corrupt: flip %zu/%d: %s\n", crashers[i].at, crashers[i].bit,
               tg_last_error() + strlen("tg_checkpoint_load: ") + strlen(p) + 2);
    }
    /* the superblock's signature and the cut file */
    b[0] ^= 0xff;
    write_bytes(p, b, n);
    tg_state_dict *out;
    ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("not an HDF5 file");
    b[0] ^= 0xff;
    write_bytes(p, b, n / 2);
    ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS(p);
    /* a version-2 file stripped of its checksum header is damaged, not version 1 */
    tg_state_dict *sd = model_state();
    TG_OK_(tg_checkpoint_save(tp("v2.h5"), sd));
    free(b);
    b = read_bytes(tp("v2.h5"), &n);
    b[0] = 0;
    write_bytes(p, b, n);
    ck_assert_int_eq(tg_checkpoint_load(&out, p), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("metadata damaged (a format version 2 file without its checksum header)");
    free(b);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

/* A mutation of the version-1 file (found by tests/fuzz/checkpoint.c) on which HDF5
 * 1.10.8 loops forever, at full CPU: the child is killed at the 10 s limit and
 * the load is an error. (The old loader still ran after 40 s.) */
START_TEST(ckpt_v1_hang)
{
    tg_scope *scope = tg_scope_push();
    char path[1024];
    const char *top = getenv("top_srcdir");
    snprintf(path, sizeof path, "%s/tests/fuzz/regress/checkpoint/v1_hang.h5", top && *top ? top : "..");
    tg_state_dict *out = (tg_state_dict *)&out;
    ck_assert_int_eq(tg_checkpoint_load(&out, path), TG_ERR_FORMAT);
    ck_assert(out == NULL);
    TG_ASSERT_ERROR_HAS(path);
    TG_ASSERT_ERROR_HAS("could not parse it safely (the parser did not finish within 10 s)");
    tg_scope_pop(scope);
}
END_TEST

/* ---------------------------------------------------------------- the child-process parse */

static int parse_crashes(void *arg, char *msg, size_t n)
{
    (void)arg;
    (void)msg;
    (void)n;
    raise(SIGSEGV);
    return 0;
}

static int parse_hangs(void *arg, char *msg, size_t n)
{
    (void)arg;
    (void)msg;
    (void)n;
    for (;;)
        pause();
    return 0;
}

static int parse_refuses(void *arg, char *msg, size_t n)
{
    snprintf(msg, n, "bad magic in %s", (const char *)arg);
    return 1;
}

static int parse_fine(void *arg, char *msg, size_t n)
{
    (void)msg;
    (void)n;
    return *(int *)arg == 42 ? 0 : 1;
}

/* Allocates and touches 3 GB: more than the child may map. */
static int parse_eats(void *arg, char *msg, size_t n)
{
    (void)arg;
    size_t big = (size_t)3 << 30;
    char *p = malloc(big);
    if (!p) {
        snprintf(msg, n, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < big; i += 4096)
        p[i] = 1;
    free(p);
    return 0;
}

START_TEST(ckpt_h5safe)
{
    tg_scope *scope = tg_scope_push();
    char msg[512];
    bool crashed;
    int answer = 42;
    ck_assert_int_eq(tg_h5safe_run(parse_fine, &answer, NULL, msg, sizeof msg, &crashed), TG_OK);
    ck_assert(!crashed);
    ck_assert_int_eq(tg_h5safe_run(parse_refuses, "x.h5", NULL, msg, sizeof msg, &crashed),
                     TG_ERR_FORMAT);
    ck_assert(!crashed);
    ck_assert_str_eq(msg, "bad magic in x.h5");
    ck_assert_int_eq(tg_h5safe_run(parse_crashes, NULL, NULL, msg, sizeof msg, &crashed),
                     TG_ERR_FORMAT);
    ck_assert(crashed);
    /* also under ASan: the child drops inherited crash handlers */
    ck_assert_msg(strstr(msg, "the parser crashed (signal 11") != NULL, "%s", msg);
    tg_h5safe_limits lim = TG_H5SAFE_LIMITS_INIT;
    lim.seconds = 0.5;
    ck_assert_int_eq(tg_h5safe_run(parse_hangs, NULL, &lim, msg, sizeof msg, &crashed),
                     TG_ERR_FORMAT);
    ck_assert(crashed);
    ck_assert_str_eq(msg, "the parser did not finish within 0.5 s");
#if !defined(__SANITIZE_ADDRESS__)
    lim.seconds = 20;
    lim.extra_bytes = (size_t)256 << 20;
    ck_assert_int_eq(tg_h5safe_run(parse_eats, NULL, &lim, msg, sizeof msg, &crashed),
                     TG_ERR_FORMAT);
    ck_assert_str_eq(msg, "out of memory");
#else
    (void)parse_eats;
#endif
    /* SIGCHLD ignored (children reaped by the kernel): the answer still arrives */
    void (*old)(int) = signal(SIGCHLD, SIG_IGN);
    ck_assert_int_eq(tg_h5safe_run(parse_fine, &answer, NULL, msg, sizeof msg, &crashed), TG_OK);
    ck_assert_int_eq(tg_h5safe_run(parse_crashes, NULL, NULL, msg, sizeof msg, &crashed),
                     TG_ERR_FORMAT);
    ck_assert(crashed);
    signal(SIGCHLD, old);
    tg_scope_pop(scope);
}
END_TEST

/* The in-memory entry point (the fuzz target's) says what the file loader says. */
START_TEST(ckpt_load_image)
{
    tg_scope *scope = tg_scope_push();
    tg_state_dict *sd = model_state();
    const char *p = tp("run.h5");
    TG_OK_(tg_checkpoint_save(p, sd));
    size_t n;
    uint8_t *b = read_bytes(p, &n);
    tg_state_dict *out;
    TG_OK_(tg_checkpoint_load_image(&out, b, n, "mem.h5", 0));
    ck_assert_int_eq(tg_state_dict_size(out), tg_state_dict_size(sd));
    tg_state_dict_free(out);
    for (size_t cut = 0; cut < n; cut += n / 7 + 1) {
        ck_assert_int_eq(tg_checkpoint_load_image(&out, b, cut, "mem.h5", 0), TG_ERR_FORMAT);
        TG_ASSERT_ERROR_HAS("tg_checkpoint_load_image: mem.h5: ");
    }
    ck_assert_int_eq(tg_checkpoint_load_image(&out, "garbage", 7, NULL, 0), TG_ERR_FORMAT);
    TG_ASSERT_ERROR_HAS("(image): not an HDF5 file");
    ck_assert_int_eq(tg_checkpoint_load_image(&out, NULL, 7, NULL, 0), TG_ERR_ARG);
    free(b);
    tg_state_dict_free(sd);
    tg_scope_pop(scope);
}
END_TEST

Suite *tg_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tg_tcase("attributes");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_loop_test(tc, ckpt_attribute_checks, 0,
                        2 * (int)(sizeof attr_cases / sizeof attr_cases[0]));
    tcase_add_test(tc, ckpt_attribute_control);
    suite_add_tcase(s, tc);

    tc = tg_tcase("integrity");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, ckpt_v2_layout);
    tcase_add_test(tc, ckpt_flip_names_tensor);
    tcase_add_test(tc, ckpt_random_flips);
    tcase_add_test(tc, ckpt_identical_saves);
    tcase_add_test(tc, ckpt_nonfinite_refused);
    tcase_add_test(tc, ckpt_load_image);
    suite_add_tcase(s, tc);

    tc = tg_tcase("paths");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, ckpt_not_regular);
    tcase_add_test(tc, ckpt_symlink);
    tcase_add_test(tc, ckpt_stale_temps);
    tcase_add_test(tc, ckpt_lock);
    suite_add_tcase(s, tc);

    tc = tg_tcase("unverified");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, ckpt_v1_loads);
    tcase_add_test(tc, ckpt_v1_corrupt);
    tcase_add_test(tc, ckpt_v1_hang);
    tcase_add_test(tc, ckpt_h5safe);
    suite_add_tcase(s, tc);
    return s;
}
