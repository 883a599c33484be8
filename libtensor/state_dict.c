/* libtensor/state_dict.c -- ordered name -> tensor map plus typed scalar
 * attributes: what nn/ exports and io/ writes to checkpoints; and the one
 * check-then-copy loader every import uses (state_dict_impl.h).
 *
 * Plain arrays with linear lookup: a model has tens of entries, and insertion
 * order must be kept for stable checkpoint layouts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor/state_dict_impl.h"
#include "libtensor/tensor_impl.h"

typedef struct entry {
    char *name;
    tg_tensor *tensor; /* owned reference */
} entry;

typedef struct attr {
    char *name;
    tg_attr_type type;
    union {
        int64_t i;
        double f;
        char *s;
    } v;
} attr;

struct tg_state_dict {
    entry *entries;
    size_t n, cap;
    attr *attrs;
    size_t n_attrs, cap_attrs;
};

/* Grows *arr (of elements of size es) to hold one more; false on NOMEM. */
static bool grow(void **arr, size_t *cap, size_t n, size_t es)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(*arr, c * es);
    if (!p)
        return false;
    *arr = p;
    *cap = c;
    return true;
}

tg_state_dict *tg_state_dict_new(void)
{
    tg_state_dict *sd = calloc(1, sizeof *sd);
    if (!sd)
        tg_error(TG_ERR_NOMEM, "tg_state_dict_new: out of memory");
    return sd;
}

void tg_state_dict_free(tg_state_dict *sd)
{
    if (!sd)
        return;
    for (size_t i = 0; i < sd->n; i++) {
        free(sd->entries[i].name);
        tg_release(sd->entries[i].tensor);
    }
    for (size_t i = 0; i < sd->n_attrs; i++) {
        free(sd->attrs[i].name);
        if (sd->attrs[i].type == TG_ATTR_STR)
            free(sd->attrs[i].v.s);
    }
    free(sd->entries);
    free(sd->attrs);
    free(sd);
}

static entry *find_entry(const tg_state_dict *sd, const char *name)
{
    for (size_t i = 0; i < sd->n; i++)
        if (strcmp(sd->entries[i].name, name) == 0)
            return &sd->entries[i];
    return NULL;
}

static attr *find_attr(const tg_state_dict *sd, const char *name)
{
    for (size_t i = 0; i < sd->n_attrs; i++)
        if (strcmp(sd->attrs[i].name, name) == 0)
            return &sd->attrs[i];
    return NULL;
}

tg_status tg_state_dict_set(tg_state_dict *sd, const char *name, tg_tensor *t)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_set", "sd");
    if (!name)
        return tg_null_arg("tg_state_dict_set", "name");
    if (!t)
        return tg_null_arg("tg_state_dict_set", "t");
    entry *e = find_entry(sd, name);
    if (e) {
        tg_retain(t); /* before the release: t may be the entry's own tensor */
        tg_release(e->tensor);
        e->tensor = t;
        return TG_OK;
    }
    if (!grow((void **)&sd->entries, &sd->cap, sd->n, sizeof *sd->entries))
        return tg_error(TG_ERR_NOMEM, "tg_state_dict_set: out of memory adding '%s'", name);
    char *copy = strdup(name);
    if (!copy)
        return tg_error(TG_ERR_NOMEM, "tg_state_dict_set: out of memory adding '%s'", name);
    sd->entries[sd->n].name = copy;
    sd->entries[sd->n].tensor = tg_retain(t);
    sd->n++;
    return TG_OK;
}

tg_tensor *tg_state_dict_get(const tg_state_dict *sd, const char *name)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_get", "sd"), NULL;
    if (!name)
        return tg_null_arg("tg_state_dict_get", "name"), NULL;
    entry *e = find_entry(sd, name);
    if (!e)
        return tg_error(TG_ERR_ARG, "tg_state_dict_get: no entry '%s'", name), NULL;
    return e->tensor;
}

bool tg_state_dict_has(const tg_state_dict *sd, const char *name)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_has", "sd"), false;
    if (!name)
        return tg_null_arg("tg_state_dict_has", "name"), false;
    return find_entry(sd, name) != NULL;
}

size_t tg_state_dict_size(const tg_state_dict *sd)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_size", "sd"), 0;
    return sd->n;
}

const char *tg_state_dict_name_at(const tg_state_dict *sd, size_t i)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_name_at", "sd"), NULL;
    if (i >= sd->n)
        return tg_error(TG_ERR_RANGE, "tg_state_dict_name_at: index %zu is out of range "
                        "(size %zu)", i, sd->n), NULL;
    return sd->entries[i].name;
}

tg_tensor *tg_state_dict_tensor_at(const tg_state_dict *sd, size_t i)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_tensor_at", "sd"), NULL;
    if (i >= sd->n)
        return tg_error(TG_ERR_RANGE, "tg_state_dict_tensor_at: index %zu is out of range "
                        "(size %zu)", i, sd->n), NULL;
    return sd->entries[i].tensor;
}

/* ---------------------------------------------------------------- attributes */

/* The attribute called name, created (untyped, value zero) when absent. Errors
 * name the context, which the public setter enters. */
static attr *attr_slot(tg_state_dict *sd, const char *name)
{
    if (!sd)
        return tg_null_arg_here("sd"), NULL;
    if (!name)
        return tg_null_arg_here("name"), NULL;
    attr *a = find_attr(sd, name);
    if (a)
        return a;
    if (!grow((void **)&sd->attrs, &sd->cap_attrs, sd->n_attrs, sizeof *sd->attrs))
        return tg_error_here(TG_ERR_NOMEM, "out of memory adding '%s'", name), NULL;
    char *copy = strdup(name);
    if (!copy)
        return tg_error_here(TG_ERR_NOMEM, "out of memory adding '%s'", name), NULL;
    a = &sd->attrs[sd->n_attrs++];
    a->name = copy;
    a->type = TG_ATTR_I64;
    a->v.i = 0;
    return a;
}

static void attr_clear(attr *a)
{
    if (a->type == TG_ATTR_STR)
        free(a->v.s);
    a->type = TG_ATTR_I64;
    a->v.i = 0;
}

tg_status tg_state_dict_set_i64(tg_state_dict *sd, const char *name, int64_t v)
{
    const char *prev = tg_error_enter("tg_state_dict_set_i64");
    attr *a = attr_slot(sd, name);
    tg_error_leave(prev);
    if (!a)
        return tg_last_status();
    attr_clear(a);
    a->type = TG_ATTR_I64;
    a->v.i = v;
    return TG_OK;
}

tg_status tg_state_dict_set_f64(tg_state_dict *sd, const char *name, double v)
{
    const char *prev = tg_error_enter("tg_state_dict_set_f64");
    attr *a = attr_slot(sd, name);
    tg_error_leave(prev);
    if (!a)
        return tg_last_status();
    attr_clear(a);
    a->type = TG_ATTR_F64;
    a->v.f = v;
    return TG_OK;
}

tg_status tg_state_dict_set_str(tg_state_dict *sd, const char *name, const char *v)
{
    if (!v)
        return tg_null_arg("tg_state_dict_set_str", "v");
    char *copy = strdup(v);
    if (!copy)
        return tg_error(TG_ERR_NOMEM, "tg_state_dict_set_str: out of memory");
    const char *prev = tg_error_enter("tg_state_dict_set_str");
    attr *a = attr_slot(sd, name);
    tg_error_leave(prev);
    if (!a) {
        free(copy);
        return tg_last_status();
    }
    attr_clear(a);
    a->type = TG_ATTR_STR;
    a->v.s = copy;
    return TG_OK;
}

static const char *type_name(tg_attr_type t)
{
    switch (t) {
    case TG_ATTR_I64: return "i64";
    case TG_ATTR_F64: return "f64";
    case TG_ATTR_STR: return "str";
    }
    return "invalid";
}

/* The attribute, checked for presence and type; NULL with the error set,
 * naming the context, which the public getter enters. */
static const attr *attr_get(const void *out, const tg_state_dict *sd, const char *name,
                            tg_attr_type type)
{
    if (!out)
        return tg_null_arg_here("out"), NULL;
    if (!sd)
        return tg_null_arg_here("sd"), NULL;
    if (!name)
        return tg_null_arg_here("name"), NULL;
    const attr *a = find_attr(sd, name);
    if (!a)
        return tg_error_here(TG_ERR_ARG, "no attribute '%s'", name), NULL;
    if (a->type != type)
        return tg_error_here(TG_ERR_DTYPE, "attribute '%s' is %s, not %s", name,
                             type_name(a->type), type_name(type)), NULL;
    return a;
}

tg_status tg_state_dict_get_i64(int64_t *out, const tg_state_dict *sd, const char *name)
{
    const char *prev = tg_error_enter("tg_state_dict_get_i64");
    const attr *a = attr_get(out, sd, name, TG_ATTR_I64);
    tg_error_leave(prev);
    if (!a)
        return tg_last_status();
    *out = a->v.i;
    return TG_OK;
}

tg_status tg_state_dict_get_f64(double *out, const tg_state_dict *sd, const char *name)
{
    const char *prev = tg_error_enter("tg_state_dict_get_f64");
    const attr *a = attr_get(out, sd, name, TG_ATTR_F64);
    tg_error_leave(prev);
    if (!a)
        return tg_last_status();
    *out = a->v.f;
    return TG_OK;
}

tg_status tg_state_dict_get_str(const char **out, const tg_state_dict *sd, const char *name)
{
    const char *prev = tg_error_enter("tg_state_dict_get_str");
    const attr *a = attr_get(out, sd, name, TG_ATTR_STR);
    tg_error_leave(prev);
    if (!a)
        return tg_last_status();
    *out = a->v.s;
    return TG_OK;
}

size_t tg_state_dict_attr_count(const tg_state_dict *sd)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_attr_count", "sd"), 0;
    return sd->n_attrs;
}

const char *tg_state_dict_attr_name_at(const tg_state_dict *sd, size_t i)
{
    if (!sd)
        return tg_null_arg("tg_state_dict_attr_name_at", "sd"), NULL;
    if (i >= sd->n_attrs)
        return tg_error(TG_ERR_RANGE, "tg_state_dict_attr_name_at: index %zu is out of range "
                        "(%zu attributes)", i, sd->n_attrs), NULL;
    return sd->attrs[i].name;
}

tg_attr_type tg_state_dict_attr_type_at(const tg_state_dict *sd, size_t i)
{
    /* There is no "invalid" member to return; callers index within attr_count. */
    if (!sd)
        return tg_null_arg("tg_state_dict_attr_type_at", "sd"), TG_ATTR_I64;
    if (i >= sd->n_attrs)
        return tg_error(TG_ERR_RANGE, "tg_state_dict_attr_type_at: index %zu is out of range "
                        "(%zu attributes)", i, sd->n_attrs), TG_ATTR_I64;
    return sd->attrs[i].type;
}

/* ---------------------------------------------------------------- check, then apply */

void tg_sd_check_init(tg_sd_check *c, const char *place)
{
    memset(c, 0, sizeof *c);
    c->place = place ? place : "";
}

static void vadd(tg_sd_check *c, int *kind, const char *fmt, va_list ap)
{
    (*kind)++;
    if (c->count++ >= TG_SD_CHECK_LISTED)
        return;
    if (c->list.len)
        tg_strbuf_printf(&c->list, "; ");
    va_list aq;
    va_copy(aq, ap);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, aq);
    va_end(aq);
    tg_strbuf_printf(&c->list, "%s", msg);
}

static void __attribute__((format(printf, 3, 4))) add(tg_sd_check *c, int *kind,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vadd(c, kind, fmt, ap);
    va_end(ap);
}

void tg_sd_check_problem(tg_sd_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vadd(c, &c->other, fmt, ap);
    va_end(ap);
}

void tg_sd_check_missing(tg_sd_check *c, const char *noun, const char *name)
{
    add(c, &c->other, "missing %s '%s'", noun, name);
}

void tg_sd_check_meta(tg_sd_check *c, const char *name, const tg_tensor *want, tg_dtype dtype,
                      int ndim, const int64_t *shape)
{
    char a[128], b[128];
    if (dtype != tg_tensor_dtype(want))
        add(c, &c->dtype, "'%s' is %s%s, expected %s", name, tg_dtype_name(dtype), c->place,
            tg_dtype_name(tg_tensor_dtype(want)));
    else if (ndim != tg_tensor_ndim(want) ||
             (ndim > 0 && memcmp(shape, tg_tensor_shape(want), (size_t)ndim * sizeof *shape)))
        add(c, &c->shape, "'%s' has shape %s%s, expected %s", name,
            tg_shape_str(a, sizeof a, ndim, shape), c->place,
            tg_shape_str(b, sizeof b, tg_tensor_ndim(want), tg_tensor_shape(want)));
}

static const char *attr_kind(tg_attr_type t)
{
    return t == TG_ATTR_I64 ? "an integer" : t == TG_ATTR_F64 ? "a float" : "a string";
}

void tg_sd_check_attr(tg_sd_check *c, const char *name, tg_attr_type want,
                      const tg_attr_type *have)
{
    if (!have)
        add(c, &c->other, "missing attribute '%s'", name);
    else if (*have != want)
        add(c, &c->dtype, "attribute '%s' is %s%s, expected %s", name, attr_kind(*have),
            c->place, attr_kind(want));
}

/* "<prefix><name>" into buf; false (with a problem recorded) when too long. */
static bool join(char *buf, size_t n, tg_sd_check *c, const char *prefix, const char *name)
{
    if ((size_t)snprintf(buf, n, "%s%s", prefix, name) < n)
        return true;
    tg_sd_check_problem(c, "name '%s%s' is too long", prefix, name);
    return false;
}

void tg_sd_check_entries(tg_sd_check *c, const tg_state_dict *target, const tg_state_dict *src,
                         const char *prefix, bool strict)
{
    const char *pre = prefix ? prefix : "";
    size_t plen = strlen(pre);
    char key[1024];
    for (size_t i = 0; i < target->n; i++) {
        const entry *want = &target->entries[i];
        if (!join(key, sizeof key, c, pre, want->name))
            continue;
        const entry *e = find_entry(src, key);
        if (!e)
            tg_sd_check_missing(c, "entry", key);
        else
            tg_sd_check_meta(c, key, want->tensor, tg_tensor_dtype(e->tensor),
                             tg_tensor_ndim(e->tensor), tg_tensor_shape(e->tensor));
    }
    for (size_t i = 0; strict && i < src->n; i++) {
        const char *name = src->entries[i].name;
        if (strncmp(name, pre, plen) == 0 && !find_entry(target, name + plen))
            add(c, &c->other, "unexpected entry '%s'", name);
    }
}

tg_status tg_sd_check_done(tg_sd_check *c, tg_status status, const char *fn, const char *what,
                           ...)
{
    if (c->count == 0) {
        tg_strbuf_free(&c->list);
        return TG_OK;
    }
    if (!status)
        status = c->shape == c->count   ? TG_ERR_SHAPE
                 : c->dtype == c->count ? TG_ERR_DTYPE
                                        : TG_ERR_FORMAT;
    char head[1024];
    va_list ap;
    va_start(ap, what);
    vsnprintf(head, sizeof head, what, ap);
    va_end(ap);
    char more[48] = "";
    if (c->count > TG_SD_CHECK_LISTED)
        snprintf(more, sizeof more, "; and %d more", c->count - TG_SD_CHECK_LISTED);
    tg_status st = tg_error(status, "%s: %s (%d mismatch%s, nothing loaded): %s%s", fn, head,
                            c->count, c->count == 1 ? "" : "es",
                            c->list.failed || !c->list.s ? "(out of memory listing them)"
                                                         : c->list.s,
                            more);
    tg_strbuf_free(&c->list);
    return st;
}

bool tg_sd_attr_type(const tg_state_dict *sd, const char *name, tg_attr_type *type)
{
    const attr *a = find_attr(sd, name);
    if (a)
        *type = a->type;
    return a != NULL;
}

tg_status tg_sd_apply(const tg_state_dict *target, const tg_state_dict *src, const char *prefix)
{
    const char *pre = prefix ? prefix : "";
    char key[1024];
    for (size_t i = 0; i < target->n; i++) {
        tg_tensor *dst = target->entries[i].tensor;
        snprintf(key, sizeof key, "%s%s", pre, target->entries[i].name);
        const entry *e = find_entry(src, key);
        if (!e)
            return tg_error(TG_ERR_STATE, "tg_sd_apply: no entry '%s' (apply without a check)",
                            key);
        if (e->tensor == dst)
            continue;
        tg_status st = tg_tensor_copy_into(dst, e->tensor);
        if (st != TG_OK)
            return st;
        tg_tensor_bump_version(dst);
    }
    return TG_OK;
}
