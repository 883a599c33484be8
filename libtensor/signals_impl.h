/* libtensor/signals_impl.h -- private: the set of signals the library may hold
 * while a kernel that cannot be interrupted runs (ops/dnnl.c) and that the
 * OpenMP workers never take (libtensor/runtime.c). Apart because <signal.h>
 * brings POSIX names (link, ...) that the other files must not see. */
#ifndef TG_SIGNALS_IMPL_H
#define TG_SIGNALS_IMPL_H

#include <signal.h>

/* *set = every signal but the synchronous faults (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGTRAP, SIGSYS, raised by the faulting instruction itself, which
 * kill the process when blocked): the ones a handler may receive at any
 * instruction. */
void tg_async_signals(sigset_t *set);

#endif
