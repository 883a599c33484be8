/* io/h5safe.c -- a parse of untrusted bytes in a forked child with limits
 * (io/h5safe_impl.h).
 *
 * The child reports through a pipe: one byte ('0' clean, '1' refused) and the
 * refusal's message, then _exit. Anything else -- EOF before the byte, a
 * signal, the deadline -- is a failed parse. The answer is read from the pipe,
 * not from the exit status, so a caller that ignores SIGCHLD still gets it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/h5safe_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#define TG_H5SAFE_NO_AS_LIMIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG_H5SAFE_NO_AS_LIMIT 1
#endif
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The child's address space so far (Linux), or 0 when unknown. */
static size_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void write_all_fd(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

/* Set by a sanitizer runtime (weak: absent otherwise). libFuzzer registers a
 * death callback that writes the input as a crash artifact. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void run_child(int fd, tg_h5safe_fn fn, void *arg, const tg_h5safe_limits *lim)
{
    /* the crash of a parse is contained here and reported by the parent: a
     * fuzzer's or sanitizer's handler inherited from the parent must not take
     * it for the parent's own crash (and write artifacts) */
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(NULL);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM, SIGTRAP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
#ifndef TG_H5SAFE_NO_AS_LIMIT
    /* ASan reserves terabytes of shadow memory up front; a limit breaks it */
    size_t have = mapped_bytes();
    if (have > 0) {
        struct rlimit r;
        r.rlim_cur = r.rlim_max = (rlim_t)(have + lim->extra_bytes);
        setrlimit(RLIMIT_AS, &r);
    }
#else
    (void)mapped_bytes;
#endif
    /* the parser's own crash reports (a sanitizer's, HDF5's) are not the
     * caller's output: the parent reports the failure */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
        close(null);
    }
    /* a second guard should the parent die: the child never outlives it long */
    alarm((unsigned)lim->seconds + 2);
    char msg[512] = "";
    int rc = fn(arg, msg, sizeof msg);
    char tag = rc == 0 ? '0' : '1';
    write_all_fd(fd, &tag, 1);
    if (rc != 0)
        write_all_fd(fd, msg, strnlen(msg, sizeof msg - 1));
    _exit(0);
}

/* The limits used when a caller passes none; only the time can be changed. */
static tg_h5safe_limits defaults = TG_H5SAFE_LIMITS_INIT;

tg_status tg_h5safe_set_default_seconds(double seconds)
{
    if (!(seconds > 0 && seconds <= 3600))
        return TG_ERR_RANGE;
    defaults.seconds = seconds;
    return TG_OK;
}

tg_status tg_h5safe_run(tg_h5safe_fn fn, void *arg, const tg_h5safe_limits *lim, char *msg,
                        size_t n, bool *crashed)
{
    *crashed = false;
    if (!lim)
        lim = &defaults;
    if (n > 0)
        msg[0] = '\0';
    int p[2];
    if (pipe(p) != 0) {
        snprintf(msg, n, "cannot create a pipe for the checking process: %s", strerror(errno));
        return TG_ERR_IO;
    }
    fflush(NULL); /* no buffered output is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        snprintf(msg, n, "cannot start the checking process: %s", strerror(e));
        return TG_ERR_IO;
    }
    if (pid == 0) {
        close(p[0]);
        run_child(p[1], fn, arg, lim);
    }
    close(p[1]);

    char buf[512];
    size_t got = 0;
    bool timed_out = false, eof = false;
    double deadline = now() + lim->seconds;
    while (!eof) {
        double left = deadline - now();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue; /* the deadline is checked at the top */
        ssize_t k = read(p[0], buf + got, sizeof buf - 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            eof = true;
        else if ((got += (size_t)k) == sizeof buf - 1)
            eof = true; /* the message is complete enough */
    }
    close(p[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    bool known = w == pid;
    buf[got] = '\0';

    *crashed = true;
    if (timed_out) {
        snprintf(msg, n, "the parser did not finish within %g s", lim->seconds);
        return TG_ERR_FORMAT;
    }
    if (got >= 1 && buf[0] == '0' && (!known || (WIFEXITED(status) && !WEXITSTATUS(status)))) {
        *crashed = false;
        return TG_OK;
    }
    if (got >= 1 && buf[0] == '1') {
        *crashed = false;
        snprintf(msg, n, "%s", buf + 1);
        return TG_ERR_FORMAT;
    }
    if (known && WIFSIGNALED(status))
        snprintf(msg, n, "the parser crashed (signal %d, %s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (known && WIFEXITED(status))
        snprintf(msg, n, "the parser stopped early (exit status %d)",
                 WEXITSTATUS(status));
    else
        snprintf(msg, n, "the parser stopped without an answer");
    return TG_ERR_FORMAT;
}
