/* tests/fuzz/replay.c -- a main for a fuzz target built without libFuzzer.
 *
 *   replay_<target> PATH...
 * Each PATH is a file or a folder of files (not recursive; names starting with
 * '.' are skipped); each file's bytes go to LLVMFuzzerTestOneInput once, in a
 * buffer of exactly that size (so an ASan build catches a read past the end).
 * `make check` runs it over tests/fuzz/corpus/<target>/ and tests/fuzz/regress/<target>/
 * (tests/fuzz_replay.sh). Exits 0 when every input ran (a broken promise aborts
 * in the target), 1 when a path cannot be read or no input was found. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        perror(path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(n ? buf : NULL, n);
    free(buf);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int ran = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            bad++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) == 0)
                ran++;
            else
                bad++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            bad++;
            continue;
        }
        char **names = NULL;
        size_t count = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            if (count == cap) {
                cap = cap ? 2 * cap : 64;
                names = realloc(names, cap * sizeof *names);
                if (!names)
                    return 1;
            }
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[count] = malloc(len);
            if (!names[count])
                return 1;
            snprintf(names[count++], len, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        if (count) /* the same order every run */
            qsort(names, count, sizeof *names, cmp_names);
        for (size_t k = 0; k < count; k++) {
            if (run_file(names[k]) == 0)
                ran++;
            else
                bad++;
            free(names[k]);
        }
        free(names);
    }
    printf("replay: %d input(s) run, %d unreadable\n", ran, bad);
    return bad || ran == 0 ? 1 : 0;
}
