/* io/file.c -- open a data file for reading, refusing what is not a regular file
 * (io/file_impl.h). Never blocks: the open is non-blocking and the type is
 * checked on the descriptor, so no race between a stat and the open. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file_impl.h"

static const char *file_type(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO (named pipe)";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "a special file";
}

tg_status tg_open_regular(FILE **f, uint64_t *size, const char *path, const char *kind)
{
    *f = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return tg_error(TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tg_error(TG_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return tg_error(TG_ERR_IO, "%s: is a directory, not %s", path, kind);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tg_error(TG_ERR_IO, "%s: is %s, not a regular file (%s must be a regular "
                        "file)", path, file_type(st.st_mode), kind);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *s = fdopen(fd, "rb");
    if (!s) {
        int e = errno;
        close(fd);
        return tg_error(TG_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *f = s;
    *size = (uint64_t)st.st_size;
    return TG_OK;
}
