/* libtensor/scope.c -- per-thread stacks of scopes (autorelease pools).
 *
 * A scope is a growable array of references it owns. Popped scope objects go to
 * a per-thread free list with their arrays, so after the first training step
 * pushing and filling scopes allocates nothing. */
#include <pthread.h>
#include <stdlib.h>

#include "libtensor/tensor_impl.h"

struct tg_scope {
    tg_tensor **items;
    size_t n, cap;
    tg_scope *next_free;
};

typedef struct scope_stack {
    tg_scope **open; /* open[0] is the outermost */
    int depth, cap;
    tg_scope *free_list;
} scope_stack;

static _Thread_local scope_stack stack;

static void free_scope(tg_scope *s)
{
    free(s->items);
    free(s);
}

/* Frees a thread's scope bookkeeping. Scopes still open are popped first (their
 * tensors released): a thread that exits inside a scope must not leak it. */
static void release_stack(scope_stack *st)
{
    while (st->depth > 0) {
        tg_scope *s = st->open[st->depth - 1];
        tg_scope_pop(s);
    }
    while (st->free_list) {
        tg_scope *s = st->free_list;
        st->free_list = s->next_free;
        free_scope(s);
    }
    free(st->open);
    st->open = NULL;
    st->cap = 0;
}

/* Threads other than the main one clean up through a pthread key destructor;
 * the main thread (whose key destructors never run) at process exit. */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg)
{
    release_stack(arg);
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

__attribute__((destructor)) static void on_process_exit(void)
{
    /* only the caches: tensors of scopes left open at exit are the program's */
    while (stack.free_list) {
        tg_scope *s = stack.free_list;
        stack.free_list = s->next_free;
        free_scope(s);
    }
    if (stack.depth == 0) {
        free(stack.open);
        stack.open = NULL;
        stack.cap = 0;
    }
}

tg_scope *tg_scope_push(void)
{
    if (!stack.open) {
        /* first use on this thread: arrange the cleanup at its exit */
        pthread_once(&exit_key_once, make_exit_key);
        pthread_setspecific(exit_key, &stack);
    }
    if (stack.depth == stack.cap) {
        int cap = stack.cap ? 2 * stack.cap : 8;
        tg_scope **open = realloc(stack.open, (size_t)cap * sizeof *open);
        if (!open)
            return tg_error(TG_ERR_NOMEM, "tg_scope_push: out of memory"), NULL;
        stack.open = open;
        stack.cap = cap;
    }
    tg_scope *s = stack.free_list;
    if (s) {
        stack.free_list = s->next_free;
    } else {
        s = calloc(1, sizeof *s);
        if (!s)
            return tg_error(TG_ERR_NOMEM, "tg_scope_push: out of memory"), NULL;
    }
    s->n = 0;
    s->next_free = NULL;
    stack.open[stack.depth++] = s;
    return s;
}

/* Releases the references of the innermost scope, in reverse order of adoption,
 * after taking it off the stack: whatever a destructor hands to a scope then
 * lands in the enclosing one, never in the array being drained. */
static void pop_top(void)
{
    tg_scope *s = stack.open[--stack.depth];
    while (s->n > 0) {
        tg_tensor *t = s->items[--s->n];
        if (tg_tensor_dead(t)) /* freed behind the scope's back: reported at the time */
            continue;
        t->scope_refs--;
        t->died_in_scope = t->refcount == 1; /* for the message of a later use */
        tg_release(t);
    }
    s->next_free = stack.free_list;
    stack.free_list = s;
}

tg_status tg_scope_pop(tg_scope *s)
{
    if (!s)
        return tg_null_arg("tg_scope_pop", "s");
    int i = stack.depth - 1;
    while (i >= 0 && stack.open[i] != s)
        i--;
    if (i < 0)
        return tg_error(TG_ERR_ARG, "tg_scope_pop: scope %p is not open on this thread",
                        (void *)s);
    while (stack.depth > i)
        pop_top();
    return TG_OK;
}

tg_tensor *tg_scope_adopt_steal(tg_tensor *t)
{
    if (!t || stack.depth == 0)
        return t;
    tg_scope *s = stack.open[stack.depth - 1];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        tg_tensor **items = realloc(s->items, cap * sizeof *items);
        if (!items) {
            /* The reference cannot be parked: drop it rather than leak it. */
            tg_release(t);
            return tg_error(TG_ERR_NOMEM, "tg_scope_adopt_steal: out of memory"), NULL;
        }
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = t;
    t->scope_refs++;
    return t;
}

tg_tensor *tg_scope_keep(tg_tensor *t)
{
    if (!t)
        return tg_null_arg("tg_scope_keep", "t"), NULL;
    if (tg_tensor_dead(t))
        return tg_dead_arg("tg_scope_keep", "t", t), NULL;
    if (t->scope_refs > 0)
        tg_retain(t);
    return t;
}

int tg_scope_depth(void)
{
    return stack.depth;
}
