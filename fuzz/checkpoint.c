/* fuzz/checkpoint.c -- libFuzzer target: the bytes as a checkpoint file.
 *
 * Loads through tg_checkpoint_load_image (io/checkpoint_impl.h), the loader's
 * own path: checksum header, then HDF5 on verified images, or the child-process
 * parse for images without one. Every input must end in TG_OK with a dict, or
 * in an error the loader documents, with a message and no dict; anything else
 * (a crash, a leak, a hang, an undocumented status) is a finding. Seeds:
 * fuzz/corpus/checkpoint/ (real small checkpoints); crashers once fixed go to
 * fuzz/regress/checkpoint/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "io/checkpoint_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_state_dict *sd = NULL;
    /* Non-finite values are a refusal like any other; let them through to
     * exercise the whole read. */
    tg_status s = tg_checkpoint_load_image(&sd, data, size, "fuzz.h5",
                                           TG_CHECKPOINT_ALLOW_NONFINITE);
    if (s == TG_OK) {
        if (!sd)
            fuzz_fail("TG_OK without a state dict");
        tg_state_dict_free(sd);
    } else {
        if (sd)
            fuzz_fail("an error with a state dict");
        if (s != TG_ERR_FORMAT && s != TG_ERR_NOMEM && s != TG_ERR_IO)
            fuzz_fail("a status io/checkpoint.h does not document for content");
        if (!strstr(tg_last_error(), "fuzz.h5"))
            fuzz_fail("a message that does not name the input");
    }
    fuzz_check_no_leak();
    return 0;
}
