/* io/file_impl.h -- opening a data file the readers can trust not to block.
 *
 * Private to io/. A FIFO, a terminal or a device opened with plain fopen can
 * block the reader forever or feed it endless bytes; the readers of IDX and
 * image files accept regular files only and learn their size up front. */
#ifndef TG_IO_FILE_IMPL_H
#define TG_IO_FILE_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "libtensor/tensor_impl.h"

/* Opens path for reading without blocking (O_NONBLOCK, so a FIFO without a
 * writer returns at once) and accepts it only when it is a regular file. On
 * success *f is the open stream (blocking again) and *size its length in bytes.
 * On error *f is NULL and the status is TG_ERR_IO with a message "PATH: ..."
 * that says what the path is instead ("is a directory, not KIND", "is a FIFO
 * (named pipe), not a regular file"). kind names what was expected ("an IDX
 * file", "an image"). */
tg_status tg_open_regular(FILE **f, uint64_t *size, const char *path, const char *kind);

#endif
