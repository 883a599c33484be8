/* libtensor/print.c -- numpy-like text for tensors.
 *
 * Two passes over the shown elements: the first measures the widest value so
 * columns line up, the second prints. Beyond 1000 elements only the first and
 * last 3 entries of each long dim are shown, with "..." between. An empty tensor
 * prints as [] whatever its shape (the shape follows). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor/tensor_impl.h"

#define SUMMARY_THRESHOLD 1000
#define EDGE 3
#define PREFIX "tensor("

typedef struct printer {
    const tg_tensor *t;
    FILE *out;          /* NULL while measuring */
    bool summarize;
    bool integral;      /* a float tensor whose values are all whole numbers */
    int width;
} printer;

static bool is_float(const tg_tensor *t)
{
    return tg_dtype_is_float(t->dtype);
}

static double elem_at(const tg_tensor *t, int64_t off)
{
    const char *p = (const char *)tg_storage_data(t->storage) + off * (int64_t)tg_dtype_size(t->dtype);
    double v = 0;
    tg_convert(&v, TG_F64, p, t->dtype, 1);
    return v;
}

static int format_value(const printer *pr, char *buf, size_t n, int64_t off)
{
    const tg_tensor *t = pr->t;
    if (t->dtype == TG_I64) {
        const int64_t *p = (const int64_t *)tg_storage_data(t->storage) + off;
        return snprintf(buf, n, "%lld", (long long)*p);
    }
    double v = elem_at(t, off);
    if (!is_float(t))
        return snprintf(buf, n, "%.0f", v);
    if (isnan(v))
        return snprintf(buf, n, "nan");
    if (isinf(v))
        return snprintf(buf, n, "%sinf", v < 0 ? "-" : "");
    if (pr->integral)
        return snprintf(buf, n, "%.0f.", v);
    int k = snprintf(buf, n, "%.*g", t->dtype == TG_F32 ? 6 : 8, v);
    /* keep floats recognisable: "2" -> "2." as numpy prints them */
    if (k > 0 && (size_t)k + 1 < n && !strpbrk(buf, ".e")) {
        buf[k++] = '.';
        buf[k] = '\0';
    }
    return k;
}

static void emit(printer *pr, const char *s)
{
    if (pr->out)
        fputs(s, pr->out);
}

static void emit_value(printer *pr, int64_t off)
{
    char buf[64];
    int k = format_value(pr, buf, sizeof buf, off);
    if (!pr->out) {
        if (k > pr->width)
            pr->width = k;
        return;
    }
    fprintf(pr->out, "%*s", pr->width, buf);
}

static void newline_indent(printer *pr, int blank_lines, int indent)
{
    if (!pr->out)
        return;
    for (int i = 0; i <= blank_lines; i++)
        fputc('\n', pr->out);
    fprintf(pr->out, "%*s", indent, "");
}

static void print_dim(printer *pr, int d, int64_t off)
{
    const tg_tensor *t = pr->t;
    int64_t n = t->shape[d];
    bool cut = pr->summarize && n > 2 * EDGE;
    bool last = d == t->ndim - 1;
    emit(pr, "[");
    for (int64_t i = 0; i < n; i++) {
        if (cut && i == EDGE) {
            emit(pr, "...");
            i = n - EDGE - 1; /* the loop's ++ lands on the first tail entry */
        } else {
            int64_t o = off + i * t->strides[d];
            if (last)
                emit_value(pr, o);
            else
                print_dim(pr, d + 1, o);
        }
        if (i + 1 < n) {
            emit(pr, ",");
            if (last)
                emit(pr, " ");
            else
                newline_indent(pr, t->ndim - d - 2, (int)strlen(PREFIX) + d + 1);
        }
    }
    emit(pr, "]");
}

/* Whether every shown float is a whole number of modest size (printed "3."). */
static bool all_integral(const tg_tensor *t)
{
    int64_t n = tg_shape_numel(t->ndim, t->shape);
    if (n > SUMMARY_THRESHOLD)
        n = SUMMARY_THRESHOLD; /* a sample is enough to pick a style */
    for (int64_t i = 0; i < n; i++) {
        double v = tg_get_flat(t, i);
        if (isfinite(v) && (v != floor(v) || fabs(v) >= 1e16))
            return false;
    }
    return true;
}

tg_status tg_tensor_print(const tg_tensor *t, FILE *out)
{
    if (!t)
        return tg_null_arg("tg_tensor_print", "t");
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_tensor_print", "t", t);
    if (!out)
        return tg_null_arg("tg_tensor_print", "out");
    /* settle a pending layout once, here, where a failure can be reported:
     * the element reads below then cannot fail */
    tg_status st = tg_tensor_settle(t);
    if (st != TG_OK)
        return st;
    printer pr = {
        .t = t,
        .out = NULL,
        .summarize = tg_shape_numel(t->ndim, t->shape) > SUMMARY_THRESHOLD,
        .integral = is_float(t) && all_integral(t),
        .width = 0,
    };
    fputs(PREFIX, out);
    if (tg_shape_numel(t->ndim, t->shape) == 0) {
        /* as numpy does; walking the dims could take 2^59 steps for [2^59, 0] */
        fputs("[]", out);
    } else if (t->ndim == 0) {
        emit_value(&pr, t->offset);
        pr.out = out;
        emit_value(&pr, t->offset);
    } else {
        print_dim(&pr, 0, t->offset);
        pr.out = out;
        print_dim(&pr, 0, t->offset);
    }
    char shape[160];
    fprintf(out, ", shape=%s, dtype=%s)", tg_shape_str(shape, sizeof shape, t->ndim, t->shape),
            tg_dtype_name(t->dtype));
    if (ferror(out))
        return tg_error(TG_ERR_IO, "tg_tensor_print: write failed");
    return TG_OK;
}

char *tg_tensor_to_string(const tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_tensor_to_string", "t"), NULL;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_tensor_to_string", "t", t), NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return tg_error(TG_ERR_NOMEM, "tg_tensor_to_string: out of memory"), NULL;
    tg_status st = tg_tensor_print(t, f);
    /* glibc's fclose reports success when its last realloc fails, leaving buf NULL */
    if ((fclose(f) != 0 || !buf) && st == TG_OK)
        st = tg_error(TG_ERR_NOMEM, "tg_tensor_to_string: out of memory");
    if (st != TG_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}
