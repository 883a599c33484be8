/* libtensor/layout_impl.h -- private: a storage whose contents a backend holds
 * in its own memory layout (a oneDNN blocked format), and the one way to attach,
 * look at, settle and drop such a pending layout. docs/layouts.md is the page
 * to read first. libtensor knows nothing of the layouts themselves; it must not
 * grow any other kind of mark here (autograd's "gradient is zero" lives in
 * autograd/engine.c). */
#ifndef TG_LAYOUT_IMPL_H
#define TG_LAYOUT_IMPL_H

#include "libtensor/tensor_impl.h"

/* A backend's record of a storage's contents in its own layout. The backend
 * allocates it (usually as the first member of a larger struct), attaches it
 * with tg_layout_attach and from then on the record, not the plain buffer, is
 * the authoritative copy. */
struct tg_layout {
    void *buf; /* the data in the backend's layout */
    /* Writes the plain row-major form of the data into plain (nbytes bytes, the
     * storage's buffer). Must not touch the storage itself. On failure sets the
     * last error and returns its status; the record stays attached, so the data
     * is not lost and a later read tries again. */
    tg_status (*settle)(const tg_layout *l, void *plain, size_t nbytes);
    /* Frees the record and its buffer (after a settle, or without one when the
     * storage dies or its owner overwrites every byte). */
    void (*free)(tg_layout *l);
};

/* Attaches l to s as its pending layout: s must have none (TG_ERR_STATE
 * otherwise, l not taken). Steals l on success. */
tg_status tg_layout_attach(tg_storage *s, tg_layout *l);

/* s's pending layout (borrowed) or NULL. */
static inline tg_layout *tg_layout_pending(const tg_storage *s)
{
    return s->layout;
}

/* Drops s's pending layout without settling it: for a caller about to
 * overwrite every byte of s->data. A no-op when nothing is pending. */
void tg_layout_discard(tg_storage *s);

/* Test hook: the next n settles fail (TG_ERR_BACKEND) before reaching the
 * backend, as a failing reorder would; 0 turns it off. Process-wide. */
void tg_layout_fail_next_settles(int n);

#endif
