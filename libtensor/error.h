/* libtensor/error.h -- status codes and the thread-local last error.
 *
 * Every fallible call returns a tg_status (or NULL) and leaves a message in a
 * per-thread buffer that tg_last_error() returns. It must never call exit/abort. */
#ifndef TG_ERROR_H
#define TG_ERROR_H

#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef enum tg_status {
    TG_OK = 0,
    TG_ERR_ARG = -1,         /* invalid argument: NULL, bad flag, value out of its domain */
    TG_ERR_SHAPE = -2,       /* shapes do not fit the operation */
    TG_ERR_DTYPE = -3,       /* dtype not supported by the operation */
    TG_ERR_RANGE = -4,       /* index, axis or label out of range */
    TG_ERR_NOMEM = -5,       /* allocation failed */
    TG_ERR_IO = -6,          /* a file could not be opened, read or written */
    TG_ERR_FORMAT = -7,      /* a file's content is not what it must be (corrupt, truncated) */
    TG_ERR_STATE = -8,       /* call not valid in the current state (freed graph, no scope) */
    TG_ERR_BACKEND = -9,     /* oneDNN (or another backend) reported a failure */
    TG_ERR_UNSUPPORTED = -10 /* a valid request this build does not implement */
} tg_status;

/* The message of the last failure on this thread. Never NULL; "no error" when
 * nothing failed since the last tg_clear_error(). Borrowed: valid until the next
 * libtensor call on this thread. */
const char *tg_last_error(void);

/* The status of the last failure on this thread (TG_OK if none). */
tg_status tg_last_status(void);

/* Forget the last error on this thread. */
void tg_clear_error(void);

/* A short constant name for a status ("shape error", ...): a static string, never
 * NULL. */
const char *tg_status_str(tg_status status);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
