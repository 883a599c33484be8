/* libtensor/strbuf_impl.h -- private: a growable string for JSON descriptions and
 * lists of problems (state dict mismatches, layer configs).
 *
 * On allocation failure the buffer sets `failed` and stops growing; its owner
 * reports TG_ERR_NOMEM. It never sets the last error itself. */
#ifndef TG_STRBUF_IMPL_H
#define TG_STRBUF_IMPL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tg_strbuf {
    char *s;    /* NUL-terminated once anything was appended; NULL before */
    size_t len, cap;
    bool failed;
} tg_strbuf;

#define TG_STRBUF_INIT { NULL, 0, 0, false }

void tg_strbuf_printf(tg_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s (NULL: "") as a JSON string literal, quotes and escapes included. */
void tg_strbuf_json_str(tg_strbuf *b, const char *s);
void tg_strbuf_free(tg_strbuf *b);

#endif
