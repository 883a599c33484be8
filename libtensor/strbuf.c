/* libtensor/strbuf.c -- the growable string of strbuf_impl.h: printf-style
 * appends that double the capacity as needed, and JSON string escaping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "libtensor/strbuf_impl.h"

void tg_strbuf_printf(tg_strbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if (b->s && (size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)k + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

void tg_strbuf_json_str(tg_strbuf *b, const char *s)
{
    tg_strbuf_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            tg_strbuf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            tg_strbuf_printf(b, "\\u%04x", *p);
        else
            tg_strbuf_printf(b, "%c", *p);
    }
    tg_strbuf_printf(b, "\"");
}

void tg_strbuf_free(tg_strbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
