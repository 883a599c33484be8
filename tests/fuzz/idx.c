/* tests/fuzz/idx.c -- libFuzzer target: the IDX reader, plain and gzip.
 *
 * The input is parsed as an IDX file (plain or gzip, told by content, as
 * tg_idx_read does). Then, when it is not gzip already, the same bytes are
 * gzip-compressed here and parsed again: the answer must be the same (status,
 * dtype, shape, values), so the fuzzer explores the IDX parser behind a valid
 * gzip stream too; and that stream without its trailer, or with a byte after
 * it, must be refused. Every error must be one io/idx.h documents, with no
 * tensor and nothing leaked. The input is also written to a memory file and
 * read by tg_idx_read through its path: the file reader must agree with the
 * memory one (the fuzz build reads files in 13-byte chunks, so every input
 * crosses buffer refills). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "tests/fuzz/fuzz.h"
#include "io/idx_impl.h"
#include "libtensor.h"

/* Parses and checks the promises that hold for any input; *t is the result. */
static tg_status parse(tg_tensor **t, const uint8_t *data, size_t size)
{
    tg_status st = tg_idx_read_mem(t, "fuzz-input", data, size);
    if (st == TG_OK) {
        if (!*t)
            fuzz_fail("TG_OK without a tensor");
        int nd = tg_tensor_ndim(*t);
        if (nd < 1 || nd > TG_MAX_DIMS || !tg_tensor_is_contiguous(*t))
            fuzz_fail("a tensor of a shape no IDX file has");
    } else {
        if (*t)
            fuzz_fail("an error with a tensor");
        if (st != TG_ERR_FORMAT && st != TG_ERR_NOMEM)
            fuzz_fail("a status io/idx.h does not document for content");
        if (strncmp(tg_last_error(), "fuzz-input: ", 12) != 0)
            fuzz_fail("a message that does not start with the input's name");
    }
    return st;
}

static bool same(const tg_tensor *a, const tg_tensor *b)
{
    if (tg_tensor_dtype(a) != tg_tensor_dtype(b) || tg_tensor_ndim(a) != tg_tensor_ndim(b))
        return false;
    for (int i = 0; i < tg_tensor_ndim(a); i++)
        if (tg_tensor_dim(a, i) != tg_tensor_dim(b, i))
            return false;
    return memcmp(tg_tensor_data((tg_tensor *)a), tg_tensor_data((tg_tensor *)b),
                  tg_tensor_nbytes(a)) == 0;
}

/* size bytes gzip-compressed (malloc'd, *n bytes, room for one more), or NULL. */
static uint8_t *gzip(const uint8_t *data, size_t size, size_t *n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)size) + 1;
    uint8_t *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *n = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* The same bytes through tg_idx_read and a path (a memfd: a regular file). */
static void check_file_reader(const uint8_t *data, size_t size, tg_status st,
                              const tg_tensor *t)
{
    static int fd = -2;
    if (fd == -2)
        fd = memfd_create("fuzz-idx", 0);
    if (fd < 0 || ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0 ||
        (size && write(fd, data, size) != (ssize_t)size))
        return; /* no memory file here: only the memory reader is checked */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    tg_tensor *u = NULL;
    tg_status su = tg_idx_read(&u, path);
    if ((su == TG_OK) != (u != NULL))
        fuzz_fail("tg_idx_read: a status that disagrees with its tensor");
    if (su != st && su != TG_ERR_NOMEM && st != TG_ERR_NOMEM)
        fuzz_fail("tg_idx_read on a file and tg_idx_read_mem disagree on the status");
    if (st == TG_OK && su == TG_OK && !same(t, u))
        fuzz_fail("tg_idx_read on a file and tg_idx_read_mem give different tensors");
    tg_release(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_tensor *t = NULL;
    tg_status st = parse(&t, data, size);
    check_file_reader(data, size, st, t);
    bool is_gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    size_t n = 0;
    uint8_t *gz = !is_gz && size > 0 && size <= (1u << 20) ? gzip(data, size, &n) : NULL;
    if (gz) {
        tg_tensor *u = NULL;
        tg_status su = parse(&u, gz, n);
        if (su != st && su != TG_ERR_NOMEM && st != TG_ERR_NOMEM)
            fuzz_fail("the gzip'd input gives another status than the plain one");
        if (st == TG_OK && su == TG_OK && !same(t, u))
            fuzz_fail("the gzip'd input gives another tensor than the plain one");
        tg_release(u);
        u = NULL;
        if (parse(&u, gz, n - 8) == TG_OK) /* no CRC/length trailer */
            fuzz_fail("a gzip stream without its trailer was accepted");
        gz[n] = data[0];
        if (parse(&u, gz, n + 1) == TG_OK) /* one byte after the stream */
            fuzz_fail("a byte after the gzip stream was accepted");
        free(gz);
    }
    tg_release(t);
    fuzz_check_no_leak();
    return 0;
}
