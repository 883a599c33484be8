/* tests/ckpt_edit.c -- rewrites one root attribute of a checkpoint, for the
 * shell tests that need a damaged or foreign file the app could not write
 * itself (a counter at INT64_MAX, another architecture string).
 *
 *   ckpt_edit FILE i64 NAME VALUE      set an i64 attribute
 *   ckpt_edit FILE f64 NAME VALUE      set an f64 attribute
 *   ckpt_edit FILE sub NAME OLD NEW    replace the first OLD in a string attribute
 *   ckpt_edit FILE iota NAME N         add (or replace) an i64 tensor 0, 1, ..., N-1
 *
 * Loads the whole file (tg_checkpoint_load), changes the attribute and saves it
 * back through the library, so the result is a well-formed checkpoint whose
 * only fault is the value. Public API only. Exit 0, or 1 with a message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libtensor.h"

static int fail(const char *what)
{
    fprintf(stderr, "ckpt_edit: %s: %s\n", what, tg_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[2], "sub") == 0 && argc != 6)) {
        fprintf(stderr, "usage: ckpt_edit FILE i64|f64|iota NAME VALUE | FILE sub NAME OLD "
                "NEW\n");
        return 2;
    }
    const char *path = argv[1], *kind = argv[2], *name = argv[3];
    tg_state_dict *sd = NULL;
    if (tg_checkpoint_load(&sd, path) != TG_OK)
        return fail("load");
    tg_status st;
    if (strcmp(kind, "i64") == 0) {
        errno = 0;
        long long v = strtoll(argv[4], NULL, 10);
        st = errno ? TG_ERR_ARG : tg_state_dict_set_i64(sd, name, v);
    } else if (strcmp(kind, "f64") == 0) {
        st = tg_state_dict_set_f64(sd, name, strtod(argv[4], NULL));
    } else if (strcmp(kind, "iota") == 0) {
        long long n = strtoll(argv[4], NULL, 10);
        tg_tensor *t = n > 0 ? tg_empty(TG_I64, TG_SHAPE(n)) : NULL;
        if (t) {
            int64_t *d = tg_tensor_data(t);
            for (long long i = 0; i < n; i++)
                d[i] = i;
        }
        st = t ? tg_state_dict_set(sd, name, t) : TG_ERR_ARG;
        tg_release(t);
    } else if (strcmp(kind, "sub") == 0) {
        const char *old = NULL;
        st = tg_state_dict_get_str(&old, sd, name);
        const char *at = st == TG_OK ? strstr(old, argv[4]) : NULL;
        if (st == TG_OK && !at) {
            fprintf(stderr, "ckpt_edit: '%s' is not in attribute %s\n", argv[4], name);
            tg_state_dict_free(sd);
            return 1;
        }
        if (st == TG_OK) {
            size_t n = strlen(old) - strlen(argv[4]) + strlen(argv[5]) + 1;
            char *s = malloc(n);
            if (!s) {
                tg_state_dict_free(sd);
                return 1;
            }
            snprintf(s, n, "%.*s%s%s", (int)(at - old), old, argv[5], at + strlen(argv[4]));
            st = tg_state_dict_set_str(sd, name, s);
            free(s);
        }
    } else {
        fprintf(stderr, "ckpt_edit: unknown kind '%s'\n", kind);
        tg_state_dict_free(sd);
        return 2;
    }
    if (st != TG_OK) {
        tg_state_dict_free(sd);
        return fail(name);
    }
    st = tg_checkpoint_save(path, sd);
    tg_state_dict_free(sd);
    return st == TG_OK ? 0 : fail("save");
}
