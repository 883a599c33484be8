/* fuzz/checkpoint.c -- libFuzzer target: the bytes as a checkpoint file.
 *
 * Loads through tg_checkpoint_load_image (io/checkpoint_impl.h), the loader's
 * own path: checksum header, then HDF5 on verified images, or the child-process
 * parse for images without one. Every input must end in TG_OK or a clear
 * error; anything else (a crash, a leak, a hang) is a finding. Seeds:
 * fuzz/corpus/checkpoint/ (real small checkpoints); crashers once fixed go to
 * fuzz/regress/checkpoint/. */
#include <stddef.h>
#include <stdint.h>

#include "io/checkpoint_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_state_dict *sd = NULL;
    /* non-finite values are a refusal like any other; let them through to
     * exercise the whole read */
    if (tg_checkpoint_load_image(&sd, data, size, "fuzz.h5", TG_CHECKPOINT_ALLOW_NONFINITE) ==
        TG_OK)
        tg_state_dict_free(sd);
    return 0;
}
