/* tests/fuzz/image.c -- libFuzzer target: the PNG and PGM readers.
 *
 * The input is parsed as tg_image_read parses a file. A success must be a u8
 * (H, W) tensor; it is then written here as a binary PGM (encoded by hand, not
 * by the library) and read back, and must come back identical. Every error
 * must be one io/image.h documents, with no tensor and nothing leaked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "io/image_impl.h"
#include "libtensor.h"

static tg_status parse(tg_tensor **t, const char *name, const uint8_t *data, size_t size)
{
    tg_status st = tg_image_read_mem(t, name, data, size);
    if (st == TG_OK) {
        if (!*t)
            fuzz_fail("TG_OK without a tensor");
        if (tg_tensor_dtype(*t) != TG_U8 || tg_tensor_ndim(*t) != 2 ||
            tg_tensor_dim(*t, 0) < 1 || tg_tensor_dim(*t, 1) < 1)
            fuzz_fail("an image that is not a non-empty u8 (H, W) tensor");
    } else {
        if (*t)
            fuzz_fail("an error with a tensor");
        if (st != TG_ERR_FORMAT && st != TG_ERR_NOMEM)
            fuzz_fail("a status io/image.h does not document for content");
        if (strncmp(tg_last_error(), name, strlen(name)) != 0)
            fuzz_fail("a message that does not start with the input's name");
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_tensor *t = NULL;
    if (parse(&t, "fuzz-input", data, size) == TG_OK) {
        int64_t h = tg_tensor_dim(t, 0), w = tg_tensor_dim(t, 1);
        char head[64];
        int hl = snprintf(head, sizeof head, "P5\n%lld %lld\n255\n", (long long)w,
                          (long long)h);
        size_t n = (size_t)hl + (size_t)(h * w);
        uint8_t *pgm = malloc(n);
        if (pgm) {
            memcpy(pgm, head, (size_t)hl);
            memcpy(pgm + hl, tg_tensor_data(t), (size_t)(h * w));
            tg_tensor *u = NULL;
            if (parse(&u, "fuzz-pgm", pgm, n) == TG_OK &&
                (tg_tensor_dim(u, 0) != h || tg_tensor_dim(u, 1) != w ||
                 memcmp(tg_tensor_data(u), tg_tensor_data(t), (size_t)(h * w)) != 0))
                fuzz_fail("the image written as PGM reads back different");
            tg_release(u);
            free(pgm);
        }
    }
    tg_release(t);
    fuzz_check_no_leak();
    return 0;
}
