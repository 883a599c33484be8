/* io/h5safe_impl.h -- run a parser over untrusted bytes in a child process.
 *
 * For files that cannot be verified before a library parses them (version-1
 * checkpoints, other tools' .h5 files): the parse runs first in a forked child
 * with a time limit and an address-space limit, and the caller goes on only if
 * the child finished cleanly. A crash, a hang or a memory blow-up of the parser
 * becomes an error in the parent. Internal (not installed). */
#ifndef TG_H5SAFE_IMPL_H
#define TG_H5SAFE_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "libtensor/error.h"

/* Runs in the child. Returns 0 when the bytes parsed cleanly; otherwise writes
 * a one-line reason into msg (n bytes) and returns non-zero. It must use only
 * the parser, malloc and plain computation: the child of a threaded process
 * (OpenMP, oneDNN) may use nothing that another thread could have held locked. */
typedef int (*tg_h5safe_fn)(void *arg, char *msg, size_t n);

typedef struct tg_h5safe_limits {
    double seconds;        /* wall-clock limit; the child is killed after it */
    size_t extra_bytes;    /* address space the child may map beyond the parent's */
} tg_h5safe_limits;

#define TG_H5SAFE_LIMITS_INIT {10.0, (size_t)1 << 30}

/* Forks, runs fn(arg, ...) in the child and waits for it. TG_OK when fn
 * returned 0. Otherwise TG_ERR_FORMAT with a reason in msg (n bytes, always
 * terminated): fn's own message (*crashed false), or (*crashed true) "the
 * parser crashed (signal 11, Segmentation fault)", "the parser did not finish
 * within 10 s", "the parser stopped early (exit status 1)" (a sanitizer's exit);
 * TG_ERR_IO when no child could be started. Sets no last error: the caller
 * words it. lim may be NULL (the defaults). */
tg_status tg_h5safe_run(tg_h5safe_fn fn, void *arg, const tg_h5safe_limits *lim, char *msg,
                        size_t n, bool *crashed);

/* Sets the time limit used when lim is NULL (10 s unless changed), for every
 * later call in the process: 0 < seconds <= 3600, else TG_ERR_RANGE and no
 * change. Not thread-safe; for test harnesses (tests/fuzz/checkpoint.c), set
 * once before the first call. Sets no last error. */
tg_status tg_h5safe_set_default_seconds(double seconds);

#endif
