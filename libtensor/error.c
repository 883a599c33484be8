/* libtensor/error.c -- the thread-local last error and error context.
 *
 * Each thread keeps its own status and message so concurrent callers never see
 * each other's failures, and its own context (the public function being run,
 * libtensor/tensor_impl.h) that tg_error_here prefixes. Nothing here allocates,
 * so reporting NOMEM cannot fail. */
#include <stdio.h>
#include <string.h>

#include "libtensor/tensor_impl.h"

#define MSG_CAP 1024

static _Thread_local tg_status last_status = TG_OK;
static _Thread_local char last_msg[MSG_CAP] = "no error";
_Thread_local const char *tg_error_ctx_ TG_TLS_IE_ = NULL;

const char *tg_last_error(void)
{
    return last_msg;
}

tg_status tg_last_status(void)
{
    return last_status;
}

void tg_clear_error(void)
{
    last_status = TG_OK;
    strcpy(last_msg, "no error");
}

const char *tg_status_str(tg_status status)
{
    switch (status) {
    case TG_OK: return "ok";
    case TG_ERR_ARG: return "invalid argument";
    case TG_ERR_SHAPE: return "shape error";
    case TG_ERR_DTYPE: return "dtype error";
    case TG_ERR_RANGE: return "out of range";
    case TG_ERR_NOMEM: return "out of memory";
    case TG_ERR_IO: return "I/O error";
    case TG_ERR_FORMAT: return "format error";
    case TG_ERR_STATE: return "invalid state";
    case TG_ERR_BACKEND: return "backend error";
    case TG_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

tg_status tg_verror(tg_status status, const char *fmt, va_list ap)
{
    /* Format into a temporary first: callers may pass tg_last_error() itself as
     * an argument (wrapping a lower-level message), and vsnprintf must not read
     * the buffer it writes. */
    char tmp[MSG_CAP];
    if (!fmt)
        fmt = "(no message)";
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    memcpy(last_msg, tmp, sizeof tmp);
    last_status = status;
    return status;
}

tg_status tg_error(tg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_verror(status, fmt, ap);
    va_end(ap);
    return status;
}

tg_status tg_null_arg(const char *fn, const char *arg)
{
    /* In a chain such as tg_relu(tg_conv2d(...)) the NULL is the symptom of an
     * earlier failure; keep that cause in the message rather than overwrite it. */
    if (last_status != TG_OK)
        return tg_error(TG_ERR_ARG, "%s: argument '%s' is NULL (after an earlier failure: %s)",
                        fn ? fn : "?", arg ? arg : "?", last_msg);
    return tg_error(TG_ERR_ARG, "%s: argument '%s' is NULL", fn ? fn : "?", arg ? arg : "?");
}

tg_status tg_error_here(tg_status status, const char *fmt, ...)
{
    /* One vsnprintf into a temporary (the arguments may include tg_last_error()),
     * after the prefix, then the same copy tg_verror makes. */
    char tmp[MSG_CAP];
    int k = snprintf(tmp, sizeof tmp, "%s: ", tg_error_context());
    if (k < 0 || (size_t)k >= sizeof tmp)
        k = (int)strlen(tmp);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp + k, sizeof tmp - (size_t)k, fmt ? fmt : "(no message)", ap);
    va_end(ap);
    memcpy(last_msg, tmp, sizeof tmp);
    last_status = status;
    return status;
}

tg_status tg_null_arg_here(const char *arg)
{
    return tg_null_arg(tg_error_context(), arg);
}
