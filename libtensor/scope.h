/* libtensor/scope.h -- scopes: autorelease pools that keep model code leak-free.
 *
 * Every function that returns a "scoped reference" hands it to the innermost
 * scope of the calling thread; tg_scope_pop() releases all of them. A training
 * step is one scope. Scopes nest; they are per thread. */
#ifndef TG_SCOPE_H
#define TG_SCOPE_H

#include "tensor.h"
#include "export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_scope tg_scope;

/* Opens a scope on this thread; returns its handle (NULL on allocation failure). */
tg_scope *tg_scope_push(void);
/* Releases every reference the scope holds and closes it. Scopes opened inside
 * s and still open are popped first. A NULL or unknown s is an error (ignored). */
tg_status tg_scope_pop(tg_scope *s);
/* Returns a reference the caller owns (new reference): retains t when a scope
 * holds it, so it outlives the scope; a no-op for an unscoped t. */
tg_tensor *tg_scope_keep(tg_tensor *t);
/* Hands an owned reference to the innermost scope (steals t). With no scope
 * active it stays the caller's. Returns t. A NULL t is returned as is and leaves
 * the last error alone, so a failed constructor's result can be passed straight
 * in: tg_scope_adopt_steal(make_tensor()). On allocation failure t is released
 * and NULL returned. */
tg_tensor *tg_scope_adopt_steal(tg_tensor *t);
/* Number of scopes open on this thread. */
int tg_scope_depth(void);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
