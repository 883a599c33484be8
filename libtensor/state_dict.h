/* libtensor/state_dict.h -- ordered name -> tensor map with scalar attributes.
 *
 * The unit of checkpointing: models and optimizers (nn/) export and import
 * state dicts; io/ writes and reads them as HDF5. Names are '/'-separated paths
 * ("model/dense/kernel"). Insertion order is kept. */
#ifndef TG_STATE_DICT_H
#define TG_STATE_DICT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"
#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_state_dict tg_state_dict;

typedef enum tg_attr_type { TG_ATTR_I64, TG_ATTR_F64, TG_ATTR_STR } tg_attr_type;

/* New empty dict (caller frees with tg_state_dict_free); NULL on allocation failure. */
tg_state_dict *tg_state_dict_new(void);
void tg_state_dict_free(tg_state_dict *sd);

/* Stores t under name (retains t, copies name; replaces and releases an existing
 * entry). */
tg_status tg_state_dict_set(tg_state_dict *sd, const char *name, tg_tensor *t);
/* Borrowed; NULL (and TG_ERR_ARG "no entry 'x'") when absent. */
tg_tensor *tg_state_dict_get(const tg_state_dict *sd, const char *name);
bool tg_state_dict_has(const tg_state_dict *sd, const char *name);
size_t tg_state_dict_size(const tg_state_dict *sd);
/* The i-th entry in insertion order (borrowed); NULL when out of range. */
const char *tg_state_dict_name_at(const tg_state_dict *sd, size_t i);
tg_tensor *tg_state_dict_tensor_at(const tg_state_dict *sd, size_t i);

/* Scalar attributes (hyper-parameters, counters, metadata). Set replaces. Names
 * and string values are copied (the caller keeps its own). */
tg_status tg_state_dict_set_i64(tg_state_dict *sd, const char *name, int64_t v);
tg_status tg_state_dict_set_f64(tg_state_dict *sd, const char *name, double v);
tg_status tg_state_dict_set_str(tg_state_dict *sd, const char *name, const char *v);
/* Out-parameter first; TG_ERR_ARG when absent, TG_ERR_DTYPE when of another type. */
tg_status tg_state_dict_get_i64(int64_t *out, const tg_state_dict *sd, const char *name);
tg_status tg_state_dict_get_f64(double *out, const tg_state_dict *sd, const char *name);
/* *out is borrowed from the dict. */
tg_status tg_state_dict_get_str(const char **out, const tg_state_dict *sd, const char *name);
size_t tg_state_dict_attr_count(const tg_state_dict *sd);
/* The i-th attribute in insertion order: its name (borrowed; NULL when out of
 * range) and its type. */
const char *tg_state_dict_attr_name_at(const tg_state_dict *sd, size_t i);
tg_attr_type tg_state_dict_attr_type_at(const tg_state_dict *sd, size_t i);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
