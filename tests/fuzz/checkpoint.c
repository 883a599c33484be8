/* tests/fuzz/checkpoint.c -- libFuzzer target: the bytes as a checkpoint file.
 *
 * Loads through tg_checkpoint_load_image (io/checkpoint_impl.h), the loader's
 * own path: checksum header, then HDF5 on verified images, or the child-process
 * parse for images without one. Every input must end in TG_OK with a dict, or
 * in an error the loader documents, with a message and no dict; anything else
 * (a crash, a leak, a hang, an undocumented status) is a finding. Seeds:
 * tests/fuzz/corpus/checkpoint/ (real small checkpoints); crashers once fixed go to
 * tests/fuzz/regress/checkpoint/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "io/checkpoint_impl.h"
#include "io/h5safe_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Images without a checksum header are parsed in a child first, which is
     * killed after its time limit (10 s by default). Inputs on which HDF5 hangs
     * are common among mutated version-1 files, and libFuzzer runs each such
     * input twice (again to look for leaks): 2 s keeps a hang from costing the
     * run 20 s of its budget, and keeps such inputs under libFuzzer's own
     * slow-unit threshold. The refusal is the same at any limit. */
    static int limited;
    if (!limited) {
        if (tg_h5safe_set_default_seconds(2.0) != TG_OK)
            fuzz_fail("cannot set the child-process time limit");
        limited = 1;
    }
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
