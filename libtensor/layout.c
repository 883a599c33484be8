/* libtensor/layout.c -- pending backend layouts on storages: attach, settle on
 * the first plain access, discard (docs/layouts.md). The layouts themselves
 * belong to the backend that attaches them (ops/dnnl.c); nothing here knows
 * what they are, and nothing but a backend layout is ever attached. */
#include <stdatomic.h>

#include "libtensor/layout_impl.h"

static _Atomic int fail_settles; /* tg_layout_fail_next_settles */

tg_status tg_layout_attach(tg_storage *s, tg_layout *l)
{
    if (!s || !l)
        return tg_null_arg("tg_layout_attach", s ? "l" : "s");
    if (s->layout)
        return tg_error(TG_ERR_STATE, "tg_layout_attach: the storage already holds a "
                        "pending layout");
    s->layout = l;
    return TG_OK;
}

void tg_layout_discard(tg_storage *s)
{
    tg_layout *l = s->layout;
    s->layout = NULL;
    if (l)
        l->free(l);
}

tg_status tg_layout_settle(tg_storage *s)
{
    tg_layout *l = s->layout;
    if (!l)
        return TG_OK;
    int n = atomic_load(&fail_settles);
    while (n > 0 && !atomic_compare_exchange_weak(&fail_settles, &n, n - 1))
        ;
    if (n > 0)
        return tg_error(TG_ERR_BACKEND, "reading a tensor: its data is held in a backend "
                        "layout that could not be converted back to plain (injected "
                        "failure); the layout stays pending");
    tg_status rc = l->settle(l, s->data, s->nbytes);
    if (rc != TG_OK)
        return rc;
    s->layout = NULL;
    l->free(l);
    return TG_OK;
}

void tg_layout_fail_next_settles(int n)
{
    atomic_store(&fail_settles, n > 0 ? n : 0);
}
