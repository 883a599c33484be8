/* tests/fuzz/fuzz.h -- what every fuzz target and the replay main share.
 *
 * A target is one file defining LLVMFuzzerTestOneInput (libFuzzer's entry
 * point). Built with clang's -fsanitize=fuzzer by `make fuzz`; built with the
 * normal compiler and tests/fuzz/replay.c by `make check`, which replays the seed
 * corpus tests/fuzz/corpus/<target>/ and the crashers tests/fuzz/regress/<target>/. A target
 * reports a broken promise (a status the header does not document, a tensor
 * and an error together, a leak) with fuzz_fail, which aborts: to libFuzzer
 * that is a crash, to the replay a failed test. */
#ifndef TG_FUZZ_H
#define TG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "fuzz: <what>" and the library's last error, then aborts. */
_Noreturn void fuzz_fail(const char *what);

/* Aborts unless no tensor, storage or node is alive beyond what was alive at
 * the first call (the targets run many inputs in one process). */
void fuzz_check_no_leak(void);

#endif
