/* tests/kill_save.c -- SIGKILL during checkpoint saves (tests/kill_save.sh): a
 * small real model (an MLP 64 -> 32 relu -> 10 softmax, Adam) trained one step
 * at a time, with the full training state (tg_train_state_export) saved after
 * every step.
 *
 *   kill_save loop FILE RUNS    RUNS times: fork a run that resumes from FILE
 *                               (or starts from seed 1) and steps and saves until
 *                               killed, reporting "saving S H" before each save
 *                               and "saved S H" after it on a pipe (S the step,
 *                               H a hash of every tensor and counter); SIGKILL it
 *                               0-40 ms after its first report; then load FILE
 *                               in a fresh process and check that it holds the
 *                               last state loaded or saved, or the one whose
 *                               save was in progress. Prints the count; exit 0
 *                               when every run passed.
 *   kill_save run FILE [STEPS]  one run on stdout (STEPS 0: until killed).
 *   kill_save hash FILE         loads FILE into fresh objects, prints "S H".
 *
 * The controller never calls the library: each run and each check is a fresh
 * fork (no exec: the whole loop stays within seconds, not minutes), so no
 * thread or library state crosses a fork. Public API only. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libtensor.h"

enum { N_IN = 64, N_EX = 32, CLASSES = 10 };

typedef struct run {
    tg_rng rng;
    tg_sequential *model;
    tg_optimizer *opt;
    tg_tensor *x, *y;
    tg_train_progress pr;
} run;

static int fail(const char *what)
{
    fprintf(stderr, "kill_save: %s: %s\n", what, tg_last_error());
    return 1;
}

static bool run_new(run *r)
{
    memset(r, 0, sizeof *r);
    tg_rng_seed(&r->rng, 1);
    r->model = tg_sequential_new(TG_SHAPE(N_IN));
    if (!r->model || tg_sequential_set_rng(r->model, &r->rng) != TG_OK ||
        tg_sequential_add(r->model, tg_layer_new_dense(32, TG_ACT_RELU, NULL)) != TG_OK ||
        tg_sequential_add(r->model, tg_layer_new_dense(CLASSES, TG_ACT_SOFTMAX, NULL)) != TG_OK)
        return false;
    size_t n = 0;
    tg_tensor *const *p = tg_sequential_params(r->model, &n);
    r->opt = p ? tg_optimizer_new_adam(p, n, NULL) : NULL;
    /* Fixed data from its own generator: the same in every process. */
    tg_rng data_rng;
    tg_rng_seed(&data_rng, 99);
    r->x = tg_rand_uniform(TG_F32, TG_SHAPE(N_EX, N_IN), 0, 1, &data_rng);
    r->y = tg_empty(TG_I64, TG_SHAPE(N_EX));
    if (!r->opt || !r->x || !r->y)
        return false;
    int64_t *y = tg_tensor_data(r->y);
    for (int i = 0; i < N_EX; i++)
        y[i] = i % CLASSES;
    r->pr.seed = 1;
    return true;
}

static void run_free(run *r)
{
    tg_release(r->x);
    tg_release(r->y);
    tg_optimizer_free(r->opt);
    tg_sequential_free(r->model);
}

/* FNV-1a over every tensor's bytes, in the dict's order, and the counters. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211u;
    return h;
}

static bool state_hash(run *r, uint64_t *out)
{
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd || tg_train_state_export(sd, r->model, r->opt, &r->rng, &r->pr) != TG_OK) {
        tg_state_dict_free(sd);
        return false;
    }
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < tg_state_dict_size(sd); i++) {
        const tg_tensor *t = tg_state_dict_tensor_at(sd, i);
        h = fnv(h, tg_tensor_data(t), tg_tensor_nbytes(t));
    }
    int64_t c[3] = { r->pr.epoch, r->pr.step, tg_optimizer_steps(r->opt) };
    *out = fnv(h, c, sizeof c);
    tg_state_dict_free(sd);
    return true;
}

static tg_status save(run *r, const char *path)
{
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd)
        return tg_last_status();
    tg_status st = tg_train_state_export(sd, r->model, r->opt, &r->rng, &r->pr);
    if (st == TG_OK)
        st = tg_checkpoint_save(path, sd);
    tg_state_dict_free(sd);
    return st;
}

static tg_status load(run *r, const char *path)
{
    tg_state_dict *sd = tg_state_dict_new();
    if (!sd)
        return tg_last_status();
    tg_train_progress zero = TG_TRAIN_PROGRESS_INIT;
    tg_status st = tg_train_state_export(sd, r->model, r->opt, &r->rng, &zero);
    if (st == TG_OK)
        st = tg_checkpoint_load_into(path, sd);
    if (st == TG_OK)
        st = tg_train_state_import(&r->pr, r->model, r->opt, &r->rng, sd);
    tg_state_dict_free(sd);
    return st;
}

static tg_status step(run *r)
{
    tg_scope *s = tg_scope_push();
    tg_tensor *loss = tg_cross_entropy(tg_sequential_forward_logits(r->model, r->x), r->y);
    tg_status st = loss ? TG_OK : tg_last_status();
    if (st == TG_OK && (st = tg_optimizer_zero_grad(r->opt)) == TG_OK &&
        (st = tg_backward(loss)) == TG_OK)
        st = tg_optimizer_step(r->opt);
    tg_scope_pop(s);
    if (st == TG_OK)
        r->pr.step++;
    return st;
}

/* The "run" mode, reporting on out (flushed after every line). */
static int run_mode(const char *path, long steps, FILE *out)
{
    run r;
    int rc = 0;
    uint64_t h = 0;
    if (!run_new(&r)) {
        rc = fail("cannot build the model");
    } else {
        bool resumed = access(path, F_OK) == 0;
        if (resumed && load(&r, path) != TG_OK)
            rc = fail(path);
        else if (!state_hash(&r, &h))
            rc = fail("hash");
        else
            fprintf(out, "%s %lld %016llx\n", resumed ? "loaded" : "fresh",
                    (long long)r.pr.step, (unsigned long long)h);
        fflush(out);
        for (long k = 0; rc == 0 && (steps <= 0 || k < steps); k++) {
            if (step(&r) != TG_OK || !state_hash(&r, &h)) {
                rc = fail("step");
                break;
            }
            fprintf(out, "saving %lld %016llx\n", (long long)r.pr.step, (unsigned long long)h);
            fflush(out);
            if (save(&r, path) != TG_OK) {
                rc = fail("save");
                break;
            }
            fprintf(out, "saved %lld %016llx\n", (long long)r.pr.step, (unsigned long long)h);
            fflush(out);
        }
    }
    run_free(&r);
    return rc;
}

static int hash_mode(const char *path, FILE *out)
{
    run r;
    int rc = 0;
    uint64_t h = 0;
    if (!run_new(&r))
        rc = fail("cannot build the model");
    else if (load(&r, path) != TG_OK)
        rc = fail(path);
    else if (!state_hash(&r, &h))
        rc = fail("hash");
    else
        fprintf(out, "%lld %016llx\n", (long long)r.pr.step, (unsigned long long)h);
    fflush(out);
    run_free(&r);
    return rc;
}

/* Forks a child running mode on the write end of a pipe; *rd gets the read end. */
static pid_t spawn(int mode, const char *path, FILE **rd)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        FILE *out = fdopen(fd[1], "w");
        tg_set_num_threads(1);
        _exit(mode ? hash_mode(path, out) : run_mode(path, 0, out));
    }
    close(fd[1]);
    *rd = pid > 0 ? fdopen(fd[0], "r") : NULL;
    return pid;
}

static int loop_mode(const char *path, long runs)
{
    char tmp_pattern[4200];
    snprintf(tmp_pattern, sizeof tmp_pattern, "%s.tmp-", path);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    long ok = 0, in_save = 0, tmp_left = 0;
    /* A first state on disk, so that every killed run has a previous state. */
    pid_t first = fork();
    if (first == 0) {
        FILE *out = fopen("/dev/null", "w");
        tg_set_num_threads(1);
        _exit(out ? run_mode(path, 1, out) : 1);
    }
    int st0 = 1;
    if (first < 0 || waitpid(first, &st0, 0) != first || !WIFEXITED(st0) ||
        WEXITSTATUS(st0) != 0) {
        fprintf(stderr, "FAIL: the first run (one step and a save) failed\n");
        return 1;
    }
    for (long n = 1; n <= runs; n++) {
        FILE *rd;
        pid_t pid = spawn(0, path, &rd);
        if (pid < 0 || !rd) {
            perror("kill_save: fork");
            return 1;
        }
        /* Read until the first "saving" line, then kill 0-40 ms later; what was
         * written before the kill is read after it. */
        char line[128], good[128] = "", pending[128] = "";
        bool started = false;
        while (!started && fgets(line, sizeof line, rd)) {
            line[strcspn(line, "\n")] = '\0';
            if (strncmp(line, "saving ", 7) == 0) {
                snprintf(pending, sizeof pending, "%s", line + 7);
                started = true;
            } else {
                snprintf(good, sizeof good, "%s", strchr(line, ' ') ? strchr(line, ' ') + 1 : "");
            }
        }
        if (started)
            usleep((useconds_t)(rand() % 40000));
        kill(pid, SIGKILL);
        while (fgets(line, sizeof line, rd)) {
            line[strcspn(line, "\n")] = '\0';
            if (strncmp(line, "saving ", 7) == 0) {
                snprintf(pending, sizeof pending, "%s", line + 7);
            } else if (strchr(line, ' ')) {
                snprintf(good, sizeof good, "%s", strchr(line, ' ') + 1);
                pending[0] = '\0';
            }
        }
        fclose(rd);
        int status;
        waitpid(pid, &status, 0);
        if (!started || !WIFSIGNALED(status)) {
            fprintf(stderr, "FAIL: run %ld ended before the kill (status %d)\n", n, status);
            continue;
        }
        if (pending[0])
            in_save++;
        /* Leftover temporary files: counted and removed (their cleanup is
         * io/checkpoint.c's business, not this test's). */
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "n=0; for f in '%s'*; do [ -e \"$f\" ] && n=$((n+1)) && "
                 "rm -f \"$f\"; done; exit $n", tmp_pattern);
        int left = system(cmd);
        if (left > 0 && WIFEXITED(left))
            tmp_left += WEXITSTATUS(left);
        /* The check, in a fresh process. */
        pid = spawn(1, path, &rd);
        char got[128] = "";
        if (pid < 0 || !rd || !fgets(got, sizeof got, rd))
            got[0] = '\0';
        got[strcspn(got, "\n")] = '\0';
        if (rd)
            fclose(rd);
        if (pid > 0)
            waitpid(pid, &status, 0);
        if (!got[0])
            fprintf(stderr, "FAIL: run %ld: the checkpoint does not load\n", n);
        else if (strcmp(got, good) == 0 || (pending[0] && strcmp(got, pending) == 0))
            ok++;
        else
            fprintf(stderr, "FAIL: run %ld: the checkpoint holds '%s', expected '%s' or '%s'\n",
                    n, got, good, pending);
    }
    printf("kill during save: %ld/%ld checkpoints loaded and held the previous or the new "
           "state (%ld kills landed inside a save; %ld temporary files of killed saves left)\n",
           ok, runs, in_save, tmp_left);
    if (in_save < runs / 2) {
        fprintf(stderr, "FAIL: only %ld of %ld kills landed inside a save\n", in_save, runs);
        return 1;
    }
    return ok == runs ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 2 ? argv[1] : "";
    if (strcmp(mode, "run") == 0) {
        tg_set_num_threads(1);
        return run_mode(argv[2], argc > 3 ? strtol(argv[3], NULL, 10) : 0, stdout);
    }
    if (strcmp(mode, "hash") == 0) {
        tg_set_num_threads(1);
        return hash_mode(argv[2], stdout);
    }
    if (strcmp(mode, "loop") == 0 && argc == 4)
        return loop_mode(argv[2], strtol(argv[3], NULL, 10));
    fprintf(stderr, "usage: kill_save loop FILE RUNS | run FILE [STEPS] | hash FILE\n");
    return 2;
}
