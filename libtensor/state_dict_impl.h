/* libtensor/state_dict_impl.h -- private: the one all-or-nothing loader of state
 * dicts, shared by every import (models, optimizers, training states, checkpoint
 * files).
 *
 * A load is a pure check, then an apply. The check compares what a source has
 * (a dict, or a file's datasets before they are read) with the target tensors,
 * collects every mismatch and gives one error naming them all; the apply copies
 * only after a check passed, so a failed load changes nothing. */
#ifndef TG_STATE_DICT_IMPL_H
#define TG_STATE_DICT_IMPL_H

#include "libtensor/state_dict.h"
#include "libtensor/strbuf_impl.h"

/* The mismatches found so far. Messages name every entry by its full name:
 *   missing <noun> 'name'
 *   'name' is f32<place>, expected f64
 *   'name' has shape [4, 3]<place>, expected [3, 4]
 *   unexpected entry 'name'
 *   missing attribute 'name' / attribute 'name' is an integer<place>, expected a float
 * where place is the source: " in the file", " in the state dict". */
typedef struct tg_sd_check {
    const char *place;
    tg_strbuf list;  /* the first TG_SD_CHECK_LISTED messages, "; "-separated */
    int count;       /* all mismatches */
    int shape, dtype, other;
} tg_sd_check;

#define TG_SD_CHECK_LISTED 8

void tg_sd_check_init(tg_sd_check *c, const char *place);
/* A mismatch in free form (counted as "other"). */
void tg_sd_check_problem(tg_sd_check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The source lacks entry name (noun: "dataset", "entry"). */
void tg_sd_check_missing(tg_sd_check *c, const char *noun, const char *name);
/* The source has entry name as dtype/ndim/shape; the target is want. */
void tg_sd_check_meta(tg_sd_check *c, const char *name, const tg_tensor *want, tg_dtype dtype,
                      int ndim, const int64_t *shape);
/* The source's attribute name has type *have (have NULL: it has none); want is
 * the target's type. */
void tg_sd_check_attr(tg_sd_check *c, const char *name, tg_attr_type want,
                      const tg_attr_type *have);
/* For every entry "n" of target, src must hold "<prefix>n" of the same dtype and
 * shape; with strict, every entry of src under prefix must be one of those
 * (an empty prefix claims every entry of src). Attributes are not compared. */
void tg_sd_check_entries(tg_sd_check *c, const tg_state_dict *target, const tg_state_dict *src,
                         const char *prefix, bool strict);
/* The verdict, freeing the list: TG_OK without mismatches; otherwise the error
 *   "<fn>: <what> (N mismatches, nothing loaded): <list>[; and K more]"
 * with status (0: TG_ERR_SHAPE when every mismatch is a shape, TG_ERR_DTYPE when
 * every one is a dtype, TG_ERR_FORMAT otherwise). what is printf-formatted. */
tg_status tg_sd_check_done(tg_sd_check *c, tg_status status, const char *fn, const char *what,
                           ...) __attribute__((format(printf, 4, 5)));

/* Whether sd has an attribute called name, and its type in *type. */
bool tg_sd_attr_type(const tg_state_dict *sd, const char *name, tg_attr_type *type);

/* The apply of tg_sd_check_entries: copies each "<prefix>n" of src into target's
 * "n" (skipping one that is the target tensor itself, as when a model loads its
 * own export) and bumps its version. Call only after a passing check. */
tg_status tg_sd_apply(const tg_state_dict *target, const tg_state_dict *src, const char *prefix);

#endif
