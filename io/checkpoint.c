/* io/checkpoint.c -- HDF5 checkpoints of state dicts (format described in
 * docs/checkpoint-format.md; keep the two in step).
 *
 * Saving builds the file in memory and never touches the target until a
 * complete, fsync'ed file exists beside it; loading inspects the whole file
 * before it changes any caller tensor. HDF5's own error printing is off during
 * our calls: the messages carry the part of its error stack that matters. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "libtensor/state_dict_impl.h"
#include "libtensor/tensor_impl.h"

static const char *const reserved_attrs[] = {"format", "format_version", "library_version"};

static bool is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof reserved_attrs / sizeof reserved_attrs[0]; i++)
        if (strcmp(name, reserved_attrs[i]) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- HDF5 helpers */

typedef struct quiet {
    H5E_auto2_t func;
    void *data;
} quiet;

static void quiet_begin(quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(quiet *q)
{
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data)
{
    /* Walking downward, the last entry is the most specific one. */
    if (err->desc && *err->desc)
        snprintf(data, 256, "%s", err->desc);
    return 0;
}

/* The most specific message on HDF5's error stack (then clears it). */
static const char *h5_detail(char buf[256])
{
    snprintf(buf, 256, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

static hid_t file_type(tg_dtype dt)
{
    switch (dt) {
    case TG_F32: return H5T_IEEE_F32LE;
    case TG_F64: return H5T_IEEE_F64LE;
    case TG_I32: return H5T_STD_I32LE;
    case TG_I64: return H5T_STD_I64LE;
    case TG_U8: return H5T_STD_U8LE;
    default: return -1;
    }
}

static hid_t mem_type(tg_dtype dt)
{
    switch (dt) {
    case TG_F32: return H5T_NATIVE_FLOAT;
    case TG_F64: return H5T_NATIVE_DOUBLE;
    case TG_I32: return H5T_NATIVE_INT32;
    case TG_I64: return H5T_NATIVE_INT64;
    case TG_U8: return H5T_NATIVE_UINT8;
    default: return -1;
    }
}

/* The dtype an HDF5 type reads into, or false with a description in why. */
static bool dtype_of(hid_t type, tg_dtype *out, char *why, size_t n)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT && (size == 4 || size == 8)) {
        *out = size == 4 ? TG_F32 : TG_F64;
        return true;
    }
    if (cls == H5T_INTEGER) {
        bool sign = H5Tget_sign(type) == H5T_SGN_2;
        if (!sign && size == 1)
            *out = TG_U8;
        else if ((sign && size <= 4) || (!sign && size == 2))
            *out = TG_I32;
        else if (sign && size == 8)
            *out = TG_I64;
        else if (!sign && size == 4)
            *out = TG_I64;
        else
            goto unsupported;
        return true;
    }
unsupported:
    snprintf(why, n, "an HDF5 %s of %zu bytes, which libtensor does not read",
             cls == H5T_INTEGER ? "integer" : cls == H5T_FLOAT ? "float" :
             cls == H5T_STRING ? "string" : cls == H5T_COMPOUND ? "compound" :
             cls == H5T_ENUM ? "enum" : "type", size);
    return false;
}

/* ---------------------------------------------------------------- saving */

static tg_status check_name(const char *path, const char *name)
{
    const char *bad = NULL;
    if (!*name)
        bad = "is empty";
    else if (name[0] == '/')
        bad = "starts with '/'";
    else if (name[strlen(name) - 1] == '/')
        bad = "ends with '/'";
    else if (strstr(name, "//"))
        bad = "has an empty component";
    else {
        for (const char *c = name; *c;) {
            size_t len = strcspn(c, "/");
            if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                bad = "has a '.' or '..' component";
            c += len;
            if (*c)
                c++;
        }
    }
    if (bad)
        return tg_error(TG_ERR_ARG, "tg_checkpoint_save: %s: tensor name '%s' %s", path,
                        name, bad);
    return TG_OK;
}

/* A scalar attribute of file type ftype holding *v (laid out as mtype). */
static herr_t write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return r;
}

static herr_t write_attr_i64(hid_t loc, const char *name, int64_t v)
{
    return write_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static herr_t write_attr_f64(hid_t loc, const char *name, double v)
{
    return write_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* Variable-length UTF-8: h5py reads it as str, h5dump prints it plainly. */
static herr_t write_attr_str(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    herr_t r = write_attr(loc, name, t, t, &v);
    H5Tclose(t);
    return r;
}

/* Creates the groups above dataset `name` that do not exist yet. */
static herr_t make_parents(hid_t file, const char *name, hid_t gcpl)
{
    char buf[1024];
    size_t n = strlen(name);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, name, n + 1);
    for (char *slash = strchr(buf, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        htri_t ex = H5Lexists(file, buf, H5P_DEFAULT);
        if (ex < 0)
            return -1;
        if (!ex) {
            hid_t g = H5Gcreate2(file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            if (g < 0)
                return -1;
            H5Gclose(g);
        }
        *slash = '/';
    }
    return 0;
}

static herr_t write_tensor(hid_t file, const char *name, const tg_tensor *t, hid_t gcpl)
{
    if (make_parents(file, name, gcpl) < 0)
        return -1;
    int nd = tg_tensor_ndim(t);
    hsize_t dims[TG_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        dims[i] = (hsize_t)tg_tensor_shape(t)[i];
    hid_t sp = nd == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(nd, dims, NULL);
    if (sp < 0)
        return -1;
    hid_t ds = H5Dcreate2(file, name, file_type(tg_tensor_dtype(t)), sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = ds < 0 ? -1 : 0;
    if (r == 0 && tg_tensor_numel(t) > 0)
        r = H5Dwrite(ds, mem_type(tg_tensor_dtype(t)), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     tg_tensor_data(t));
    if (ds >= 0 && H5Dclose(ds) < 0)
        r = -1;
    H5Sclose(sp);
    return r;
}

static tg_status fsync_dir(const char *p)
{
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return TG_ERR_IO;
    int r = fsync(fd);
    close(fd);
    return r == 0 ? TG_OK : TG_ERR_IO;
}

/* Everything between creating and closing the temporary file. */
static tg_status write_all(hid_t file, const char *path, const tg_state_dict *sd, hid_t gcpl)
{
    char det[256];
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0)
        return tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: %s", path, h5_detail(det));
    herr_t r = write_attr_str(root, "format", TG_CHECKPOINT_FORMAT);
    if (r >= 0)
        r = write_attr_i64(root, "format_version", TG_CHECKPOINT_FORMAT_VERSION);
    if (r >= 0)
        r = write_attr_str(root, "library_version", tg_version());
    const char *what = "the metadata";
    for (size_t i = 0; r >= 0 && i < tg_state_dict_attr_count(sd); i++) {
        const char *name = tg_state_dict_attr_name_at(sd, i);
        what = name;
        int64_t iv;
        double fv;
        const char *sv;
        switch (tg_state_dict_attr_type_at(sd, i)) {
        case TG_ATTR_I64:
            r = tg_state_dict_get_i64(&iv, sd, name) == TG_OK ? write_attr_i64(root, name, iv) : -1;
            break;
        case TG_ATTR_F64:
            r = tg_state_dict_get_f64(&fv, sd, name) == TG_OK ? write_attr_f64(root, name, fv) : -1;
            break;
        case TG_ATTR_STR:
            r = tg_state_dict_get_str(&sv, sd, name) == TG_OK ? write_attr_str(root, name, sv) : -1;
            break;
        }
    }
    H5Gclose(root);
    if (r < 0)
        return tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot write attribute '%s': %s",
                        path, what, h5_detail(det));

    for (size_t i = 0; i < tg_state_dict_size(sd); i++) {
        const char *name = tg_state_dict_name_at(sd, i);
        tg_tensor *t = tg_state_dict_tensor_at(sd, i);
        tg_tensor *c = t;
        if (!tg_tensor_is_contiguous(t)) {
            c = tg_tensor_new_named("tg_checkpoint_save", tg_tensor_dtype(t),
                                    tg_tensor_ndim(t), tg_tensor_shape(t));
            if (!c || tg_tensor_copy_into(c, t) != TG_OK) {
                tg_release(c);
                return tg_last_status();
            }
        }
        r = write_tensor(file, name, c, gcpl);
        if (c != t)
            tg_release(c);
        if (r < 0)
            return tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot write tensor '%s': %s",
                            path, name, h5_detail(det));
    }
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0)
        return tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: flush failed: %s", path,
                        h5_detail(det));
    return TG_OK;
}

static tg_status validate_dict(const char *path, const tg_state_dict *sd)
{
    size_t n = tg_state_dict_size(sd);
    for (size_t i = 0; i < n; i++) {
        const char *name = tg_state_dict_name_at(sd, i);
        tg_status s = check_name(path, name);
        if (s != TG_OK)
            return s;
        if (strlen(name) >= 1024)
            return tg_error(TG_ERR_ARG, "tg_checkpoint_save: %s: tensor name '%.40s...' is "
                            "longer than 1023 bytes", path, name);
        tg_tensor *t = tg_state_dict_tensor_at(sd, i);
        /* a pending backend layout is settled here, before anything is written,
         * so a failure leaves no file and write_tensor reads plain data */
        if (tg_tensor_settle(t) != TG_OK)
            return tg_error(tg_last_status(), "tg_checkpoint_save: %s: tensor '%s': %s", path,
                            name, tg_last_error());
        if (file_type(tg_tensor_dtype(t)) < 0)
            return tg_error(TG_ERR_DTYPE, "tg_checkpoint_save: %s: tensor '%s' has dtype %s, "
                            "which checkpoints do not store", path, name,
                            tg_dtype_name(tg_tensor_dtype(t)));
        size_t len = strlen(name);
        for (size_t j = 0; j < n; j++) {
            const char *other = tg_state_dict_name_at(sd, j);
            if (j != i && strncmp(other, name, len) == 0 && other[len] == '/')
                return tg_error(TG_ERR_ARG, "tg_checkpoint_save: %s: '%s' cannot be both a "
                                "tensor and the group holding '%s'", path, name, other);
        }
    }
    for (size_t i = 0; i < tg_state_dict_attr_count(sd); i++) {
        const char *name = tg_state_dict_attr_name_at(sd, i);
        if (is_reserved(name))
            return tg_error(TG_ERR_ARG, "tg_checkpoint_save: %s: attribute name '%s' is "
                            "reserved for the checkpoint's metadata", path, name);
        if (!*name)
            return tg_error(TG_ERR_ARG, "tg_checkpoint_save: %s: empty attribute name", path);
    }
    return TG_OK;
}

/* Writes n bytes to a new file at p and fsyncs it. *created tells whether p
 * exists afterwards (so the caller can remove it on failure). */
static tg_status write_synced(const char *p, const void *buf, size_t n, bool *created)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return TG_ERR_IO;
    *created = true;
    const char *b = buf;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            errno = e;
            return TG_ERR_IO;
        }
        b += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return TG_ERR_IO;
    }
    return close(fd) == 0 ? TG_OK : TG_ERR_IO;
}

tg_status tg_checkpoint_save(const char *path, const tg_state_dict *sd)
{
    if (!path)
        return tg_null_arg("tg_checkpoint_save", "path");
    if (!sd)
        return tg_null_arg("tg_checkpoint_save", "sd");
    tg_status s = validate_dict(path, sd);
    if (s != TG_OK)
        return s;

    size_t tn = strlen(path) + 32;
    char *tmp = malloc(tn);
    char *dir = malloc(strlen(path) + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return tg_error(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory");
    }
    snprintf(tmp, tn, "%s.tmp-%ld", path, (long)getpid());
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';

    /* HDF5 builds the file in memory (the core driver, no backing store); the
     * bytes reach the disk through our own write/fsync/rename. A failing disk
     * then never leaves HDF5 holding a half-closed file, and the only file
     * operations that can fail are ours, each with its errno. */
    quiet q;
    quiet_begin(&q);
    char det[256];
    bool created = false;
    void *image = NULL;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS),
          gcpl = H5Pcreate(H5P_GROUP_CREATE);
    /* Creation order kept so a load returns the dict in the order it was saved. */
    unsigned order = H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED;
    H5Pset_link_creation_order(fcpl, order);
    H5Pset_attr_creation_order(fcpl, order);
    H5Pset_link_creation_order(gcpl, order);
    /* The library's default (earliest possible) format versions, the most widely
     * readable. Raising them to 1.8's (superblock v2) made the in-memory image
     * unreadable in HDF5 1.10.8: its status flags and checksum disagree. */
    H5Pset_fapl_core(fapl, 1 << 20, false);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (file < 0) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot create the HDF5 image: %s",
                     path, h5_detail(det));
        goto done;
    }
    s = write_all(file, path, sd, gcpl);
    ssize_t len = s == TG_OK ? H5Fget_file_image(file, NULL, 0) : -1;
    if (s == TG_OK && len <= 0)
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot size the HDF5 image: %s",
                     path, h5_detail(det));
    if (s == TG_OK && !(image = malloc((size_t)len)))
        s = tg_error(TG_ERR_NOMEM, "tg_checkpoint_save: %s: out of memory for %zd bytes",
                     path, len);
    if (s == TG_OK && H5Fget_file_image(file, image, (size_t)len) != len)
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot copy the HDF5 image: %s",
                     path, h5_detail(det));
    if (H5Fclose(file) < 0 && s == TG_OK)
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: closing the HDF5 image failed: %s",
                     path, h5_detail(det));
    if (s != TG_OK)
        goto done;

    errno = 0;
    if (write_synced(tmp, image, (size_t)len, &created) != TG_OK) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot write %s: %s", path, tmp,
                     strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot rename %s over it: %s", path,
                     tmp, strerror(errno));
        goto done;
    }
    created = false;
    /* The rename itself is durable only once the folder is synced. */
    if (fsync_dir(dir) != TG_OK)
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: fsync of folder %s failed: %s", path,
                     dir, strerror(errno));

done:
    if (created)
        unlink(tmp);
    free(image);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    H5Pclose(gcpl);
    quiet_end(&q);
    free(tmp);
    free(dir);
    return s;
}

/* ---------------------------------------------------------------- reading the file */

/* entry and attr start with their name: add_named fills it. */
typedef struct entry {
    char *name;
    bool readable;
    char why[96];  /* when not readable */
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
} entry;

typedef struct attr {
    char *name;
    tg_attr_type type;
    int64_t i;
    double f;
    char *s;
} attr;

typedef struct contents {
    entry *e;
    size_t ne, cape;
    attr *a;
    size_t na, capa;
    int64_t format_version;
    char library_version[32];
    tg_status status; /* of a failure inside an iteration callback */
} contents;

static void contents_free(contents *c)
{
    for (size_t i = 0; i < c->ne; i++)
        free(c->e[i].name);
    for (size_t i = 0; i < c->na; i++) {
        free(c->a[i].name);
        free(c->a[i].s);
    }
    free(c->e);
    free(c->a);
}

/* Appends to the growing array *items (*n used, *cap allocated) a zeroed element
 * of `size` bytes whose first member, a char *, gets a copy of name. NULL when
 * out of memory (nothing appended). */
static void *add_named(void **items, size_t *n, size_t *cap, size_t size, const char *name)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void *p = realloc(*items, c * size);
        if (!p)
            return NULL;
        *items = p;
        *cap = c;
    }
    void *it = (char *)*items + *n * size;
    memset(it, 0, size);
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    memcpy(it, &copy, sizeof copy);
    (*n)++;
    return it;
}

static entry *add_entry(contents *c, const char *name)
{
    void *items = c->e;
    entry *e = add_named(&items, &c->ne, &c->cape, sizeof *e, name);
    c->e = items;
    return e;
}

static attr *add_attr(contents *c, const char *name)
{
    void *items = c->a;
    attr *a = add_named(&items, &c->na, &c->capa, sizeof *a, name);
    c->a = items;
    return a;
}

/* Reads a scalar (or one-element) string attribute into a malloc'd string. */
static char *read_str_attr(hid_t a)
{
    hid_t ft = H5Aget_type(a);
    if (ft < 0)
        return NULL;
    char *res = NULL;
    if (H5Tget_class(ft) != H5T_STRING) {
        H5Tclose(ft);
        return NULL;
    }
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0) {
            res = strdup(s ? s : ""); /* an empty string may come back as NULL */
            if (s)
                H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        res = calloc(n + 1, 1);
        hid_t mt = H5Tcopy(ft);
        if (res && H5Aread(a, mt, res) < 0) {
            free(res);
            res = NULL;
        }
        H5Tclose(mt);
    }
    H5Tclose(ft);
    return res;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    contents *c = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        c->status = TG_ERR_FORMAT;
        return -1;
    }
    herr_t r = 0;
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    hssize_t npoints = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    bool meta = is_reserved(name);
    if (strcmp(name, "format_version") == 0) {
        if (cls != H5T_INTEGER || npoints != 1 ||
            H5Aread(a, H5T_NATIVE_INT64, &c->format_version) < 0)
            c->format_version = -1;
    } else if (strcmp(name, "library_version") == 0) {
        char *s = read_str_attr(a);
        snprintf(c->library_version, sizeof c->library_version, "%s", s ? s : "?");
        free(s);
    } else if (!meta) {
        attr *at = add_attr(c, name);
        if (!at) {
            c->status = TG_ERR_NOMEM;
            r = -1;
        } else if (npoints != 1) {
            c->status = TG_ERR_FORMAT;
            tg_error(TG_ERR_FORMAT, "attribute '%s' holds %lld values; checkpoints hold "
                     "scalar attributes only", name, (long long)npoints);
            r = -1;
        } else if (cls == H5T_INTEGER) {
            at->type = TG_ATTR_I64;
            r = H5Aread(a, H5T_NATIVE_INT64, &at->i);
        } else if (cls == H5T_FLOAT) {
            at->type = TG_ATTR_F64;
            r = H5Aread(a, H5T_NATIVE_DOUBLE, &at->f);
        } else if (cls == H5T_STRING) {
            at->type = TG_ATTR_STR;
            at->s = read_str_attr(a);
            r = at->s ? 0 : -1;
        } else {
            c->status = TG_ERR_FORMAT;
            tg_error(TG_ERR_FORMAT, "attribute '%s' is neither an integer, a float nor a "
                     "string", name);
            r = -1;
        }
    }
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    H5Aclose(a);
    return r;
}

/* Iterating by creation order needs the index; files from other writers may
 * not have it, and then name order is what there is. */
static bool tracks_order(hid_t obj, bool links)
{
    H5I_type_t kind = H5Iget_type(obj);
    hid_t cpl = kind == H5I_GROUP ? H5Gget_create_plist(obj) : -1;
    if (cpl < 0)
        return false;
    unsigned flags = 0;
    herr_t r = links ? H5Pget_link_creation_order(cpl, &flags)
                     : H5Pget_attr_creation_order(cpl, &flags);
    H5Pclose(cpl);
    return r >= 0 && (flags & H5P_CRT_ORDER_TRACKED) && (flags & H5P_CRT_ORDER_INDEXED);
}

typedef struct walk {
    contents *c;
    char prefix[1024];
} walk;

static herr_t link_cb(hid_t group, const char *name, const H5L_info_t *info, void *data);

static herr_t walk_group(hid_t g, walk *w)
{
    hsize_t idx = 0;
    H5_index_t index = tracks_order(g, true) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    return H5Literate(g, index, H5_ITER_INC, &idx, link_cb, w);
}

static void describe_dataset(entry *e, hid_t ds)
{
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    e->readable = false;
    if (ft < 0 || sp < 0) {
        snprintf(e->why, sizeof e->why, "an unreadable dataset");
        goto out;
    }
    if (!dtype_of(ft, &e->dtype, e->why, sizeof e->why))
        goto out;
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    if (cls == H5S_SCALAR) {
        e->ndim = 0;
    } else if (cls == H5S_SIMPLE) {
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd < 0 || nd > TG_MAX_DIMS) {
            snprintf(e->why, sizeof e->why, "a dataset of %d dimensions (at most %d)", nd,
                     TG_MAX_DIMS);
            goto out;
        }
        hsize_t dims[TG_MAX_DIMS];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        e->ndim = nd;
        for (int i = 0; i < nd; i++)
            e->shape[i] = (int64_t)dims[i];
    } else {
        snprintf(e->why, sizeof e->why, "a dataset without a dataspace");
        goto out;
    }
    e->readable = true;
out:
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
}

static herr_t link_cb(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    walk *w = data;
    if (info->type != H5L_TYPE_HARD)
        return 0; /* soft and external links are not ours */
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) {
        w->c->status = TG_ERR_FORMAT;
        return -1;
    }
    char full[1024];
    int len = snprintf(full, sizeof full, "%s%s%s", w->prefix, *w->prefix ? "/" : "", name);
    herr_t r = 0;
    if (len < 0 || (size_t)len >= sizeof full) {
        r = -1;
        w->c->status = TG_ERR_FORMAT;
    } else if (H5Iget_type(obj) == H5I_GROUP) {
        walk sub;
        sub.c = w->c;
        memcpy(sub.prefix, full, (size_t)len + 1);
        r = walk_group(obj, &sub);
    } else if (H5Iget_type(obj) == H5I_DATASET) {
        entry *e = add_entry(w->c, full);
        if (!e) {
            w->c->status = TG_ERR_NOMEM;
            r = -1;
        } else {
            describe_dataset(e, obj);
        }
    }
    H5Oclose(obj);
    return r;
}

/* Opens path (read-only) after checking it is an HDF5 file and a libtensor
 * checkpoint of a version we read; fills c with its datasets and attributes.
 * Call between quiet_begin/quiet_end. */
static tg_status open_and_scan(hid_t *file_out, contents *c, const char *path)
{
    char det[256];
    *file_out = -1;
    memset(c, 0, sizeof *c);
    struct stat st;
    if (stat(path, &st) != 0)
        return tg_error_here(TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return tg_error_here(TG_ERR_IO, "%s: is a directory", path);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0) {
        int e = access(path, R_OK) != 0 ? errno : 0;
        return tg_error_here(TG_ERR_IO, "%s: cannot read: %s", path,
                             e ? strerror(e) : h5_detail(det));
    }
    if (is == 0)
        return tg_error_here(TG_ERR_FORMAT, "%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return tg_error_here(TG_ERR_FORMAT, "%s: cannot open as HDF5 (truncated or corrupt): %s",
                             path, h5_detail(det));
    *file_out = file;

    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0)
        return tg_error_here(TG_ERR_FORMAT, "%s: cannot open the root group: %s", path,
                             h5_detail(det));
    tg_status s = TG_OK;
    htri_t has = H5Aexists(root, "format");
    char *format = NULL;
    if (has > 0) {
        hid_t a = H5Aopen(root, "format", H5P_DEFAULT);
        if (a >= 0) {
            format = read_str_attr(a);
            H5Aclose(a);
        }
    }
    if (!format || strcmp(format, TG_CHECKPOINT_FORMAT) != 0) {
        if (has > 0)
            s = tg_error_here(TG_ERR_FORMAT, "%s: not a libtensor checkpoint (its 'format' "
                              "attribute is '%s', expected '%s')",
                              path, format ? format : "(not a string)", TG_CHECKPOINT_FORMAT);
        else
            s = tg_error_here(TG_ERR_FORMAT, "%s: an HDF5 file but not a libtensor checkpoint "
                              "(no 'format' attribute on the root group)", path);
        free(format);
        H5Gclose(root);
        return s;
    }
    free(format);

    c->format_version = -1;
    snprintf(c->library_version, sizeof c->library_version, "?");
    hsize_t idx = 0;
    H5_index_t index = tracks_order(root, false) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    tg_clear_error();
    herr_t r = H5Aiterate2(root, index, H5_ITER_INC, &idx, attr_cb, c);
    if (r < 0) {
        H5Gclose(root);
        if (tg_last_status() != TG_OK) { /* attr_cb said what */
            char why[512];
            snprintf(why, sizeof why, "%s", tg_last_error());
            return tg_error_here(tg_last_status(), "%s: %s", path, why);
        }
        return tg_error_here(c->status == TG_ERR_NOMEM ? TG_ERR_NOMEM : TG_ERR_FORMAT,
                             "%s: cannot read the attributes: %s", path, h5_detail(det));
    }
    if (c->format_version < 1) {
        H5Gclose(root);
        return tg_error_here(TG_ERR_FORMAT, "%s: missing or invalid 'format_version' attribute",
                             path);
    }
    if (c->format_version > TG_CHECKPOINT_FORMAT_VERSION) {
        H5Gclose(root);
        return tg_error_here(TG_ERR_FORMAT, "%s: was written by format version %" PRId64
                             "; this library reads up to %d",
                             path, c->format_version, TG_CHECKPOINT_FORMAT_VERSION);
    }
    walk w;
    w.c = c;
    w.prefix[0] = '\0';
    r = walk_group(root, &w);
    H5Gclose(root);
    if (r < 0)
        return tg_error_here(c->status == TG_ERR_NOMEM ? TG_ERR_NOMEM : TG_ERR_FORMAT,
                             "%s: cannot read the file's structure: %s", path,
                             h5_detail(det));
    return s;
}

/* Reads dataset e into a new contiguous tensor (new reference) or NULL. Errors
 * name the context (the public loader) and path, the file read. */
static tg_tensor *read_dataset(hid_t file, const entry *e, const char *path)
{
    char det[256];
    tg_tensor *t = tg_tensor_new_owned(e->dtype, e->ndim, e->shape);
    if (!t)
        return NULL;
    if (tg_tensor_numel(t) == 0)
        return t;
    hid_t ds = H5Dopen2(file, e->name, H5P_DEFAULT);
    herr_t r = ds < 0 ? -1 : H5Dread(ds, mem_type(e->dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                     tg_tensor_data(t));
    if (ds >= 0)
        H5Dclose(ds);
    if (r < 0) {
        tg_error_here(TG_ERR_FORMAT, "%s: cannot read dataset '%s' (truncated or corrupt?): %s",
                      path, e->name, h5_detail(det));
        tg_release(t);
        return NULL;
    }
    return t;
}

static tg_status copy_attrs(tg_state_dict *sd, const contents *c)
{
    for (size_t i = 0; i < c->na; i++) {
        const attr *a = &c->a[i];
        tg_status s = a->type == TG_ATTR_I64   ? tg_state_dict_set_i64(sd, a->name, a->i)
                      : a->type == TG_ATTR_F64 ? tg_state_dict_set_f64(sd, a->name, a->f)
                                               : tg_state_dict_set_str(sd, a->name, a->s);
        if (s != TG_OK)
            return s;
    }
    return TG_OK;
}

/* The dataset called name, or NULL. */
static const entry *find_entry(const contents *c, const char *name)
{
    for (size_t k = 0; k < c->ne; k++)
        if (strcmp(c->e[k].name, name) == 0)
            return &c->e[k];
    return NULL;
}

/* An open checkpoint being read: HDF5's error printing off, the file checked and
 * its contents listed (open_and_scan). reader_close undoes all of it, also after
 * a failed reader_open. The loaders enter their name as the error context from
 * reader_open to reader_close. */
typedef struct reader {
    quiet q;
    hid_t file;
    contents c;
} reader;

static tg_status reader_open(reader *r, const char *path)
{
    quiet_begin(&r->q);
    return open_and_scan(&r->file, &r->c, path);
}

static void reader_close(reader *r)
{
    if (r->file >= 0)
        H5Fclose(r->file);
    contents_free(&r->c);
    quiet_end(&r->q);
}

tg_status tg_checkpoint_load(tg_state_dict **out, const char *path)
{
    static const char fn[] = "tg_checkpoint_load";
    if (!out)
        return tg_null_arg(fn, "out");
    *out = NULL;
    if (!path)
        return tg_null_arg(fn, "path");
    reader r;
    tg_state_dict *sd = NULL;
    const char *prev = tg_error_enter(fn);
    tg_status s = reader_open(&r, path);
    if (s != TG_OK)
        goto done;
    if (!(sd = tg_state_dict_new())) {
        s = tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (size_t i = 0; i < r.c.ne; i++) {
        const entry *e = &r.c.e[i];
        if (!e->readable) {
            s = tg_error(TG_ERR_FORMAT, "%s: %s: dataset '%s' is %s", fn, path, e->name, e->why);
            goto done;
        }
        tg_tensor *t = read_dataset(r.file, e, path);
        if (!t) {
            s = tg_last_status();
            goto done;
        }
        s = tg_state_dict_set(sd, e->name, t);
        tg_release(t);
        if (s != TG_OK)
            goto done;
    }
    s = copy_attrs(sd, &r.c);

done:
    reader_close(&r);
    tg_error_leave(prev);
    if (s != TG_OK) {
        tg_state_dict_free(sd);
        return s ? s : TG_ERR_FORMAT;
    }
    *out = sd;
    return TG_OK;
}

tg_status tg_checkpoint_load_into(const char *path, tg_state_dict *expected)
{
    static const char fn[] = "tg_checkpoint_load_into";
    if (!path)
        return tg_null_arg(fn, "path");
    if (!expected)
        return tg_null_arg(fn, "expected");
    reader r;
    size_t n = tg_state_dict_size(expected);
    tg_state_dict *loaded = NULL;
    const char *prev = tg_error_enter(fn);
    tg_status s = reader_open(&r, path);
    if (s != TG_OK)
        goto done;

    /* The check: the file's datasets and attributes as scanned, before reading. */
    tg_sd_check c;
    tg_sd_check_init(&c, " in the file");
    for (size_t i = 0; i < n; i++) {
        const char *name = tg_state_dict_name_at(expected, i);
        const entry *e = find_entry(&r.c, name);
        if (!e)
            tg_sd_check_missing(&c, "dataset", name);
        else if (!e->readable)
            tg_sd_check_problem(&c, "dataset '%s' is %s", name, e->why);
        else
            tg_sd_check_meta(&c, name, tg_state_dict_tensor_at(expected, i), e->dtype, e->ndim,
                             e->shape);
    }
    for (size_t i = 0; i < tg_state_dict_attr_count(expected); i++) {
        const char *name = tg_state_dict_attr_name_at(expected, i);
        const attr *at = NULL;
        for (size_t k = 0; k < r.c.na && !at; k++)
            if (strcmp(r.c.a[k].name, name) == 0)
                at = &r.c.a[k];
        tg_sd_check_attr(&c, name, tg_state_dict_attr_type_at(expected, i),
                         at ? &at->type : NULL);
    }
    if ((s = tg_sd_check_done(&c, 0, fn, "%s does not match the expected state", path)) != TG_OK)
        goto done;

    /* Read everything before touching the caller's tensors; then the apply. */
    if (!(loaded = tg_state_dict_new())) {
        s = tg_last_status();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = tg_state_dict_name_at(expected, i);
        tg_tensor *t = read_dataset(r.file, find_entry(&r.c, name), path);
        if (!t) {
            s = tg_last_status() ? tg_last_status() : TG_ERR_FORMAT;
            goto done;
        }
        s = tg_state_dict_set(loaded, name, t);
        tg_release(t);
        if (s != TG_OK)
            goto done;
    }
    if ((s = tg_sd_apply(expected, loaded, NULL)) != TG_OK)
        goto done;
    s = copy_attrs(expected, &r.c);

done:
    tg_state_dict_free(loaded);
    reader_close(&r);
    tg_error_leave(prev);
    return s;
}

tg_status tg_checkpoint_info_get(tg_checkpoint_info *out, const char *path)
{
    static const char fn[] = "tg_checkpoint_info_get";
    if (!out)
        return tg_null_arg(fn, "out");
    memset(out, 0, sizeof *out);
    if (!path)
        return tg_null_arg(fn, "path");
    reader r;
    const char *prev = tg_error_enter(fn);
    tg_status s = reader_open(&r, path);
    if (s == TG_OK) {
        out->format_version = r.c.format_version;
        snprintf(out->library_version, sizeof out->library_version, "%s", r.c.library_version);
        out->num_tensors = (int64_t)r.c.ne;
        out->num_attrs = (int64_t)r.c.na;
    }
    reader_close(&r);
    tg_error_leave(prev);
    return s;
}
