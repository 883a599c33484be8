/* ops/op_table.c -- the op table, one row per entry of TG_OP_LIST (ops/op_list.h),
 * indexed by tg_op_id. The DOT writer and the gradcheck coverage test walk it; an
 * op missing here is a link error, a row too many or too few a compile error. */
#include <string.h>

#include "ops/ops_impl.h"

const tg_op_vtable *const tg_op_table[] = {
#define TG_OP_ROW_(e, n) [TG_OP_##e] = &tg_op_##n##_vtable,
    TG_OP_LIST(TG_OP_ROW_)
#undef TG_OP_ROW_
};

_Static_assert(sizeof tg_op_table / sizeof tg_op_table[0] == TG_OP_COUNT,
               "tg_op_table must have one row per op of TG_OP_LIST");

const tg_op_vtable *tg_op_lookup(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < TG_OP_COUNT; i++)
        if (strcmp(tg_op_table[i]->name, name) == 0)
            return tg_op_table[i];
    return NULL;
}
