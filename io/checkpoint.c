/* io/checkpoint.c -- HDF5 checkpoints of state dicts (format described in
 * docs/checkpoint-format.md; keep the two in step).
 *
 * Saving lets HDF5 build the file in memory, adds the checksum header (in the
 * user block) and writes, fsyncs and renames a temporary file beside the
 * target; the target is never touched before a complete file exists. Loading reads the file into memory and verifies its checksums before
 * HDF5 sees a byte; files that carry none (version 1, other tools') are parsed
 * first in a child process (io/h5safe.c). The whole file is inspected before
 * any caller tensor changes. HDF5's own error printing is off during our calls:
 * the messages carry the part of its error stack that matters. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/checkpoint.h"
#include "io/checkpoint_impl.h"
#include "io/h5safe_impl.h"
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

/* ---------------------------------------------------------------- the checksum header
 *
 * A version-2 file starts with an HDF5 user block (bytes HDF5 skips) holding,
 * little-endian: the magic, the format version, the block's size, the length
 * and crc32 of everything after the block, the tensor count, the crc32 of the
 * block itself (computed with that field zero), then per tensor the file
 * offset, length and crc32 of its data and its name. The data checksums only
 * name the damaged tensor once the whole-file checksum has failed. */

static const unsigned char ub_magic[8] = {0x89, 'T', 'G', 'C', 'K', 'P', 'T', '\n'};
static const unsigned char hdf5_magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
enum { UB_HEAD = 40, UB_ENTRY = 22, UB_MIN = 512 };

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* crc32 over any length (zlib's takes a uInt). */
static uint32_t crc_of(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* A tensor's data as the file holds it: where, how long, its crc32. */
typedef struct span {
    uint64_t offset, size;
    uint32_t crc;
} span;

/* The user block size for these names: a power of two, at least 512. */
static size_t ub_size_for(const tg_state_dict *sd)
{
    size_t need = UB_HEAD;
    for (size_t i = 0; i < tg_state_dict_size(sd); i++)
        need += UB_ENTRY + strlen(tg_state_dict_name_at(sd, i));
    size_t ub = UB_MIN;
    while (ub < need)
        ub *= 2;
    return ub;
}

/* Fills the user block ub (ubn bytes, zeroed by the caller) of a file whose
 * bytes after the block are body (n bytes). */
static void ub_fill(unsigned char *ub, size_t ubn, const unsigned char *body, size_t n,
                    const tg_state_dict *sd, const span *spans)
{
    memcpy(ub, ub_magic, 8);
    put_le(ub + 8, TG_CHECKPOINT_FORMAT_VERSION, 4);
    put_le(ub + 12, ubn, 4);
    put_le(ub + 16, n, 8);
    put_le(ub + 24, crc_of(body, n), 4);
    size_t nt = tg_state_dict_size(sd);
    put_le(ub + 28, nt, 4);
    unsigned char *e = ub + UB_HEAD;
    for (size_t i = 0; i < nt; i++) {
        const char *name = tg_state_dict_name_at(sd, i);
        size_t len = strlen(name);
        put_le(e, spans[i].offset, 8);
        put_le(e + 8, spans[i].size, 8);
        put_le(e + 16, spans[i].crc, 4);
        put_le(e + 20, len, 2);
        memcpy(e + UB_ENTRY, name, len);
        e += UB_ENTRY + len;
    }
    put_le(ub + 32, crc_of(ub, ubn), 4);
}

/* What the first bytes of a file say it is. */
typedef enum file_kind { K_NOT_HDF5, K_UNVERIFIED, K_VERIFIED } file_kind;

static file_kind kind_of(const unsigned char *b, size_t n)
{
    if (n >= 8 && memcmp(b, ub_magic, 8) == 0)
        return K_VERIFIED;
    /* HDF5 looks for its signature at 0, 512, 1024, 2048, ... */
    for (size_t at = 0; at + 8 <= n; at = at ? 2 * at : 512)
        if (memcmp(b + at, hdf5_magic, 8) == 0)
            return K_UNVERIFIED;
    return K_NOT_HDF5;
}

/* Checks a K_VERIFIED image. TG_OK, or TG_ERR_FORMAT with the reason in why:
 * which tensor's data is damaged, or that the metadata is. */
static tg_status ub_verify(const unsigned char *b, size_t n, char *why, size_t whyn)
{
    if (n < UB_MIN) {
        snprintf(why, whyn, "truncated (%zu bytes, shorter than its checksum header)", n);
        return TG_ERR_FORMAT;
    }
    uint64_t ubn = get_le(b + 12, 4);
    if (ubn < UB_MIN || (ubn & (ubn - 1)) || ubn > n) {
        snprintf(why, whyn, "metadata damaged (the checksum header is invalid)");
        return TG_ERR_FORMAT;
    }
    unsigned char *copy = malloc(ubn);
    if (!copy) {
        snprintf(why, whyn, "out of memory");
        return TG_ERR_NOMEM;
    }
    uint64_t version = get_le(b + 8, 4);
    if (version > TG_CHECKPOINT_FORMAT_VERSION && version < 1000) {
        /* a newer layout this reader cannot check */
        snprintf(why, whyn, "was written by format version %" PRIu64 "; this library reads up "
                 "to %d", version, TG_CHECKPOINT_FORMAT_VERSION);
        free(copy);
        return TG_ERR_FORMAT;
    }
    memcpy(copy, b, ubn);
    memset(copy + 32, 0, 4);
    bool head_ok = crc_of(copy, ubn) == (uint32_t)get_le(b + 32, 4);
    free(copy);
    if (!head_ok) {
        snprintf(why, whyn, "metadata damaged (the checksum header does not match)");
        return TG_ERR_FORMAT;
    }
    if (version != TG_CHECKPOINT_FORMAT_VERSION) {
        snprintf(why, whyn, "metadata damaged (format version %" PRIu64 " in the checksum "
                 "header)", version);
        return TG_ERR_FORMAT;
    }
    uint64_t len = get_le(b + 16, 8);
    if (len != n - ubn) {
        snprintf(why, whyn, "%s (%zu bytes, the header says %" PRIu64 ")",
                 len > n - ubn ? "truncated" : "has extra bytes", n, len + ubn);
        return TG_ERR_FORMAT;
    }
    if (crc_of(b + ubn, n - ubn) == (uint32_t)get_le(b + 24, 4))
        return TG_OK;
    /* find the damaged tensor, if the damage is in one */
    uint64_t nt = get_le(b + 28, 4);
    const unsigned char *e = b + UB_HEAD, *end = b + ubn;
    for (uint64_t i = 0; i < nt && e + UB_ENTRY <= end; i++) {
        uint64_t off = get_le(e, 8), size = get_le(e + 8, 8), nl = get_le(e + 20, 2);
        if (e + UB_ENTRY + nl > end)
            break;
        if (off >= ubn && off <= n && size <= n - off &&
            crc_of(b + off, size) != (uint32_t)get_le(e + 16, 4)) {
            snprintf(why, whyn, "tensor '%.*s' is damaged (its data does not match its "
                     "checksum)", (int)nl, (const char *)e + UB_ENTRY);
            return TG_ERR_FORMAT;
        }
        e += UB_ENTRY + nl;
    }
    snprintf(why, whyn, "metadata damaged (the file does not match its checksum, the "
             "tensors' data does)");
    return TG_ERR_FORMAT;
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

/* Fixed-length UTF-8, null-terminated: its bytes sit in the attribute's
 * (checksummed) object header, where a variable-length string would sit in a
 * global heap that HDF5 does not checksum. h5py reads it as bytes. */
static herr_t write_attr_str(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    herr_t r = write_attr(loc, name, t, t, v);
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

/* Writes t as dataset name and records where its data landed in *sp. */
static herr_t write_tensor(hid_t file, const char *name, const tg_tensor *t, hid_t gcpl,
                           hid_t dcpl, span *sp_out)
{
    memset(sp_out, 0, sizeof *sp_out);
    if (make_parents(file, name, gcpl) < 0)
        return -1;
    int nd = tg_tensor_ndim(t);
    hsize_t dims[TG_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        dims[i] = (hsize_t)tg_tensor_shape(t)[i];
    hid_t sp = nd == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(nd, dims, NULL);
    if (sp < 0)
        return -1;
    hid_t ds = H5Dcreate2(file, name, file_type(tg_tensor_dtype(t)), sp, H5P_DEFAULT, dcpl,
                          H5P_DEFAULT);
    herr_t r = ds < 0 ? -1 : 0;
    size_t bytes = (size_t)tg_tensor_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
    if (r == 0 && bytes > 0) {
        r = H5Dwrite(ds, mem_type(tg_tensor_dtype(t)), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     tg_tensor_data(t));
        /* contiguous storage: the bytes written, little-endian as in memory */
        haddr_t at = r < 0 ? HADDR_UNDEF : H5Dget_offset(ds);
        if (at == HADDR_UNDEF)
            r = -1;
        sp_out->offset = (uint64_t)at;
        sp_out->size = bytes;
        sp_out->crc = crc_of(tg_tensor_data(t), bytes);
    }
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
static tg_status write_all(hid_t file, const char *path, const tg_state_dict *sd, hid_t gcpl,
                           hid_t dcpl, span *spans)
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
        r = write_tensor(file, name, c, gcpl, dcpl, &spans[i]);
        if (c != t)
            tg_release(c);
        if (r < 0)
            return tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot write tensor '%s': %s",
                            path, name, h5_detail(det));
    }
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

/* Reads the whole of the open file fd (n bytes) into buf. */
static bool read_exact(int fd, unsigned char *buf, size_t n, off_t at)
{
    while (n > 0) {
        ssize_t k = pread(fd, buf, n, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return false;
        }
        buf += k;
        at += k;
        n -= (size_t)k;
    }
    return true;
}

static bool write_exact(int fd, const unsigned char *buf, size_t n, off_t at)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, buf, n, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = ENOSPC;
            return false;
        }
        buf += k;
        at += k;
        n -= (size_t)k;
    }
    return true;
}

/* Writes n bytes to a new file at p and fsyncs it. *created tells whether p
 * exists afterwards (so the caller can remove it on failure); errno says why
 * on failure. */
static bool write_synced(const char *p, const unsigned char *buf, size_t n, bool *created)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return false;
    *created = true;
    if (!write_exact(fd, buf, n, 0) || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return false;
    }
    return close(fd) == 0;
}

/* The core driver's buffer, kept when HDF5 closes the file: the complete file
 * as HDF5 would have written it (status flags cleared, checksums right),
 * which H5Fget_file_image does not give for these format versions. */
typedef struct capture {
    void *mem;
    size_t size; /* of the last buffer handed out */
} capture;

static void *cap_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    ((capture *)udata)->size = size;
    return malloc(size);
}

static void *cap_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                        void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dest, src, size);
}

static void *cap_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    void *p = realloc(ptr, size);
    if (p)
        ((capture *)udata)->size = size;
    return p;
}

static herr_t cap_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    capture *c = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !c->mem)
        c->mem = ptr;
    else
        free(ptr);
    return 0;
}

static void *cap_udata_copy(void *udata)
{
    return udata;
}

static herr_t cap_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* Where a save to path really goes: path itself, or for a symbolic link the
 * file it points to (so the link stays a link). New string or NULL (errno). */
static char *save_target(const char *path)
{
    char *cur = strdup(path);
    for (int depth = 0; cur && depth < 40; depth++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode))
            return cur;
        char link[4096];
        ssize_t k = readlink(cur, link, sizeof link - 1);
        if (k < 0) {
            free(cur);
            return NULL;
        }
        link[k] = '\0';
        char *next;
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            next = strdup(link);
        } else { /* relative to the link's folder */
            size_t dl = (size_t)(slash - cur) + 1;
            next = malloc(dl + (size_t)k + 1);
            if (next) {
                memcpy(next, cur, dl);
                memcpy(next + dl, link, (size_t)k + 1);
            }
        }
        free(cur);
        cur = next;
    }
    if (cur) {
        free(cur);
        errno = ELOOP;
    }
    return NULL;
}

/* Removes "<base>.tmp-<pid>" files in dir left by saves whose process is gone
 * (a kill during a save leaves one). A live pid's file may be a save in
 * progress and stays. */
static void remove_stale_temps(const char *dir, const char *target)
{
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, bl) != 0 || strncmp(nm + bl, ".tmp-", 5) != 0)
            continue;
        const char *digits = nm + bl + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (!*digits || *end || errno || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        size_t need = strlen(dir) + strlen(nm) + 2;
        char *full = malloc(need);
        if (full) {
            snprintf(full, need, "%s/%s", dir, nm);
            unlink(full);
            free(full);
        }
    }
    closedir(d);
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

    char *target = save_target(path);
    if (!target)
        return tg_error(errno == ENOMEM ? TG_ERR_NOMEM : TG_ERR_IO,
                        "tg_checkpoint_save: %s: cannot follow the symbolic link: %s", path,
                        strerror(errno));
    struct stat st;
    if (stat(target, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: is not a regular file (%s); "
                     "checkpoints are regular files", path,
                     S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISSOCK(st.st_mode) ? "a socket"
                     : "a device");
        free(target);
        return s;
    }
    size_t tn = strlen(target) + 32;
    char *tmp = malloc(tn);
    char *dir = malloc(strlen(target) + 2);
    span *spans = calloc(tg_state_dict_size(sd) + 1, sizeof *spans);
    if (!tmp || !dir || !spans) {
        free(tmp);
        free(dir);
        free(spans);
        free(target);
        return tg_error(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory");
    }
    snprintf(tmp, tn, "%s.tmp-%ld", target, (long)getpid());
    strcpy(dir, target);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    remove_stale_temps(dir, target);

    /* HDF5 builds the file in memory (the core driver, no backing store) and
     * we keep its buffer when it closes the file; the checksum header goes
     * into the user block HDF5 left free, and the bytes reach the disk through
     * our own write/fsync/rename. A failing disk then never leaves HDF5
     * holding a half-closed file, and the only file operations that can fail
     * are ours, each with its errno. Superblock v2 and v2 object headers
     * (1.8's format) checksum all metadata. Object timestamps are off, so the
     * same dict always gives the same bytes. */
    quiet q;
    quiet_begin(&q);
    char det[256];
    bool created = false;
    capture cap = {NULL, 0};
    size_t ubn = ub_size_for(sd);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS),
          gcpl = H5Pcreate(H5P_GROUP_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* Creation order kept so a load returns the dict in the order it was saved. */
    unsigned order = H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED;
    H5Pset_link_creation_order(fcpl, order);
    H5Pset_attr_creation_order(fcpl, order);
    H5Pset_link_creation_order(gcpl, order);
    H5Pset_obj_track_times(fcpl, false);
    H5Pset_obj_track_times(gcpl, false);
    H5Pset_obj_track_times(dcpl, false);
    H5Pset_userblock(fcpl, ubn);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    H5Pset_fapl_core(fapl, 1 << 20, false);
    H5FD_file_image_callbacks_t cb = {cap_malloc, cap_memcpy, cap_realloc, cap_free,
                                      cap_udata_copy, cap_udata_free, &cap};
    H5Pset_file_image_callbacks(fapl, &cb);
    /* a name no file can have: the core driver would refuse an existing one */
    hid_t file = H5Fcreate("/dev/null/libtensor-checkpoint-save", H5F_ACC_TRUNC, fcpl, fapl);
    if (file < 0) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot create the HDF5 image: %s",
                     path, h5_detail(det));
        goto done;
    }
    s = write_all(file, path, sd, gcpl, dcpl, spans);
    if (H5Fclose(file) < 0 && s == TG_OK)
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: closing the HDF5 image failed: %s",
                     path, h5_detail(det));
    /* the buffer is the allocation (grown in 1 MB steps); the file's length is
     * the end of file the superblock (v2) records at its byte 28 */
    unsigned char *img = cap.mem;
    size_t len = 0;
    if (s == TG_OK && img && cap.size >= ubn + 48 && memcmp(img + ubn, hdf5_magic, 8) == 0)
        len = (size_t)get_le(img + ubn + 28, 8);
    if (s == TG_OK && (len < ubn + 48 || len > cap.size))
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: the HDF5 image is not as expected "
                     "(no superblock at byte %zu, or an end of file outside it)", path, ubn);
    if (s != TG_OK)
        goto done;
    memset(img, 0, ubn);
    ub_fill(img, ubn, img + ubn, len - ubn, sd, spans);

    errno = 0;
    if (!write_synced(tmp, img, len, &created)) {
        s = tg_error(TG_ERR_IO, "tg_checkpoint_save: %s: cannot write %s: %s", path, tmp,
                     strerror(errno));
        goto done;
    }
    if (rename(tmp, target) != 0) {
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
    free(cap.mem);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    H5Pclose(gcpl);
    H5Pclose(dcpl);
    quiet_end(&q);
    free(spans);
    free(tmp);
    free(dir);
    free(target);
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

/* Longest string attribute read (a model's architecture is a few KB). */
enum { MAX_STR_ATTR = 1 << 20 };

/* True when attribute a holds exactly one value (a scalar or one-element
 * dataspace): only then may H5Aread fill room for one. Else why says what. */
static bool holds_one(hid_t a, const char *name, char *why, size_t n)
{
    hid_t sp = H5Aget_space(a);
    H5S_class_t cls = sp >= 0 ? H5Sget_simple_extent_type(sp) : H5S_NO_CLASS;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (cls == H5S_SCALAR || (cls == H5S_SIMPLE && np == 1))
        return true;
    if (cls == H5S_SIMPLE)
        snprintf(why, n, "attribute '%s' holds %lld values; checkpoints hold scalar "
                 "attributes only", name, (long long)np);
    else
        snprintf(why, n, "attribute '%s' has %s dataspace", name,
                 cls == H5S_NULL ? "an empty (null)" : "an unreadable");
    return false;
}

/* Reads string attribute a (one value, checked) into a new malloc'd string *out.
 * False with the reason in why: not one value, not a string, too long. */
static bool read_str_attr(hid_t a, const char *name, char **out, char *why, size_t n)
{
    *out = NULL;
    if (!holds_one(a, name, why, n))
        return false;
    hid_t ft = H5Aget_type(a);
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        snprintf(why, n, "attribute '%s' is not a string", name);
        if (ft >= 0)
            H5Tclose(ft);
        return false;
    }
    char *res = NULL;
    htri_t var = H5Tis_variable_str(ft);
    size_t size = H5Tget_size(ft);
    if (var > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0) {
            if (v && strnlen(v, MAX_STR_ATTR + 1) > MAX_STR_ATTR)
                snprintf(why, n, "attribute '%s' is a string longer than %d bytes", name,
                         MAX_STR_ATTR);
            else if (!(res = strdup(v ? v : ""))) /* an empty string may come back NULL */
                snprintf(why, n, "out of memory");
            if (v)
                H5free_memory(v);
        } else {
            snprintf(why, n, "cannot read attribute '%s'", name);
        }
        H5Tclose(mt);
    } else if (var == 0 && size > 0 && size <= MAX_STR_ATTR) {
        res = calloc(size + 1, 1);
        if (!res)
            snprintf(why, n, "out of memory");
        else if (H5Aread(a, ft, res) < 0) {
            snprintf(why, n, "cannot read attribute '%s'", name);
            free(res);
            res = NULL;
        }
    } else {
        snprintf(why, n, var < 0 ? "attribute '%s' has an unreadable string type"
                 : "attribute '%s' is a string of %zu bytes (at most %d)", name, size,
                 MAX_STR_ATTR);
    }
    H5Tclose(ft);
    *out = res;
    return res != NULL;
}

/* Reads a one-value integer (as i64) or float (as f64) attribute after checking
 * its dataspace and type class. */
static bool read_num_attr(hid_t a, const char *name, bool is_float, void *out, char *why,
                          size_t n)
{
    if (!holds_one(a, name, why, n))
        return false;
    hid_t ft = H5Aget_type(a);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    size_t size = ft >= 0 ? H5Tget_size(ft) : 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (cls != (is_float ? H5T_FLOAT : H5T_INTEGER) || size == 0 || size > 8) {
        snprintf(why, n, "attribute '%s' is not %s of at most 8 bytes", name,
                 is_float ? "a float" : "an integer");
        return false;
    }
    if (H5Aread(a, is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, out) < 0) {
        snprintf(why, n, "cannot read attribute '%s'", name);
        return false;
    }
    return true;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    contents *c = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        c->status = TG_ERR_FORMAT;
        return -1;
    }
    char why[160] = "";
    bool ok = true;
    hid_t ft = H5Aget_type(a);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    if (ft >= 0)
        H5Tclose(ft);
    if (strcmp(name, "format_version") == 0) {
        ok = read_num_attr(a, name, false, &c->format_version, why, sizeof why);
    } else if (strcmp(name, "library_version") == 0) {
        char *v = NULL;
        ok = read_str_attr(a, name, &v, why, sizeof why);
        if (ok)
            snprintf(c->library_version, sizeof c->library_version, "%s", v);
        free(v);
    } else if (strcmp(name, "format") == 0) {
        /* read and checked by scan_file */
    } else {
        attr *at = add_attr(c, name);
        if (!at) {
            snprintf(why, sizeof why, "out of memory");
            c->status = TG_ERR_NOMEM;
            ok = false;
        } else if (cls == H5T_INTEGER) {
            at->type = TG_ATTR_I64;
            ok = read_num_attr(a, name, false, &at->i, why, sizeof why);
        } else if (cls == H5T_FLOAT) {
            at->type = TG_ATTR_F64;
            ok = read_num_attr(a, name, true, &at->f, why, sizeof why);
        } else if (cls == H5T_STRING) {
            at->type = TG_ATTR_STR;
            ok = read_str_attr(a, name, &at->s, why, sizeof why);
        } else {
            snprintf(why, sizeof why, "attribute '%s' is neither an integer, a float nor a "
                     "string", name);
            ok = false;
        }
    }
    H5Aclose(a);
    if (ok)
        return 0;
    if (c->status == TG_OK)
        c->status = TG_ERR_FORMAT;
    tg_error(c->status, "%s", why);
    return -1;
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

/* Checks that the open file is a libtensor checkpoint of a version we read
 * and fills c with its datasets and attributes. Call between
 * quiet_begin/quiet_end; messages name path. */
static tg_status scan_file(hid_t file, contents *c, const char *path)
{
    char det[256];
    memset(c, 0, sizeof *c);
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0)
        return tg_error_here(TG_ERR_FORMAT, "%s: cannot open the root group: %s", path,
                             h5_detail(det));
    tg_status s = TG_OK;
    htri_t has = H5Aexists(root, "format");
    char *format = NULL;
    char why[160] = "not a string";
    if (has > 0) {
        hid_t a = H5Aopen(root, "format", H5P_DEFAULT);
        if (a >= 0) {
            read_str_attr(a, "format", &format, why, sizeof why);
            H5Aclose(a);
        }
    }
    if (!format || strcmp(format, TG_CHECKPOINT_FORMAT) != 0) {
        if (has > 0 && format)
            s = tg_error_here(TG_ERR_FORMAT, "%s: not a libtensor checkpoint (its 'format' "
                              "attribute is '%.64s', expected '%s')",
                              path, format, TG_CHECKPOINT_FORMAT);
        else if (has > 0)
            s = tg_error_here(TG_ERR_FORMAT, "%s: not a libtensor checkpoint (%s)", path, why);
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
            char msg[512];
            snprintf(msg, sizeof msg, "%s", tg_last_error());
            return tg_error_here(tg_last_status(), "%s: %s", path, msg);
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

/* The first non-finite value of an f32/f64 tensor t (new, contiguous) as an
 * error naming the tensor and the index; TG_OK when all are finite. */
static tg_status check_finite(const tg_tensor *t, const char *name, const char *path)
{
    tg_dtype dt = tg_tensor_dtype(t);
    if (dt != TG_F32 && dt != TG_F64)
        return TG_OK;
    int64_t n = tg_tensor_numel(t), k = 0;
    double bad = 0;
    if (dt == TG_F32) {
        const float *d = tg_tensor_data(t);
        while (k < n && isfinite(d[k]))
            k++;
        if (k < n)
            bad = d[k];
    } else {
        const double *d = tg_tensor_data(t);
        while (k < n && isfinite(d[k]))
            k++;
        if (k < n)
            bad = d[k];
    }
    if (k == n)
        return TG_OK;
    int nd = tg_tensor_ndim(t);
    const int64_t *shape = tg_tensor_shape(t);
    int64_t idx[TG_MAX_DIMS];
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = k % shape[i];
        k /= shape[i];
    }
    char where[TG_MAX_DIMS * 22 + 4] = "[";
    size_t at = 1;
    for (int i = 0; i < nd; i++)
        at += (size_t)snprintf(where + at, sizeof where - at, "%s%" PRId64, i ? ", " : "",
                               idx[i]);
    snprintf(where + at, sizeof where - at, "]");
    return tg_error_here(TG_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (%s) at "
                         "index %s; refusing to load it (TG_CHECKPOINT_ALLOW_NONFINITE "
                         "loads it anyway)", path, name,
                         isnan(bad) ? "nan" : bad > 0 ? "inf" : "-inf", where);
}

/* An open checkpoint being read: HDF5's error printing off, the file's bytes
 * in memory and verified (or parsed once in a child), the image open and its
 * contents listed (scan_file). reader_close undoes all of it, also after a
 * failed reader_open. The loaders enter their name as the error context from
 * reader_open to reader_close. */
typedef struct reader {
    quiet q;
    unsigned char *buf;
    size_t len;
    bool own_buf;
    hid_t fapl, file;
    contents c;
} reader;

/* Reads the regular file at path into a new buffer. Never blocks on a FIFO. */
static tg_status read_whole(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return tg_error_here(TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    tg_status s = TG_OK;
    if (fstat(fd, &st) != 0)
        s = tg_error_here(TG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        s = tg_error_here(TG_ERR_IO, "%s: is a directory", path);
    else if (!S_ISREG(st.st_mode))
        s = tg_error_here(TG_ERR_IO, "%s: is not a regular file (%s); checkpoints are regular "
                          "files", path, S_ISFIFO(st.st_mode) ? "a FIFO"
                          : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
    unsigned char *buf = NULL;
    size_t n = s == TG_OK ? (size_t)st.st_size : 0;
    if (s == TG_OK && !(buf = malloc(n ? n : 1)))
        s = tg_error_here(TG_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    if (s == TG_OK && !read_exact(fd, buf, n, 0))
        s = tg_error_here(TG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    close(fd);
    if (s != TG_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    *len = n;
    return TG_OK;
}

/* File image callbacks that hand HDF5 our buffer instead of copies of it (the
 * file is read-only and closed before the buffer is freed): an 8 MB load is
 * then no slower than HDF5 reading the file itself. */
static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)size;
    (void)op;
    return udata;
}

static void *image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata)
{
    (void)size;
    (void)op;
    (void)udata;
    return dest == src ? dest : NULL; /* anything else would be a copy we did not plan */
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    (void)ptr;
    (void)op;
    (void)udata;
    return 0;
}

static void *image_udata_copy(void *udata)
{
    return udata;
}

static herr_t image_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* Opens the image buf (n bytes, borrowed: it must outlive the file and *fapl)
 * read-only. The core driver refuses an image under the name of a file that
 * exists, so the name is one that can exist nowhere; our messages name the
 * real path. */
static hid_t open_image(const void *buf, size_t n, hid_t *fapl)
{
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, NULL, image_free,
                                      image_udata_copy, image_udata_free, (void *)buf};
    *fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (*fapl < 0 || H5Pset_fapl_core(*fapl, 1 << 20, false) < 0 ||
        H5Pset_file_image_callbacks(*fapl, &cb) < 0 ||
        H5Pset_file_image(*fapl, (void *)buf, n) < 0)
        return -1;
    return H5Fopen("/dev/null/libtensor-checkpoint-image", H5F_ACC_RDONLY, *fapl);
}

/* The child's parse of an unverified file: everything the parent will do. */
typedef struct trial {
    const unsigned char *buf;
    size_t len;
    const char *path;
} trial;

static int trial_parse(void *arg, char *msg, size_t n)
{
    trial *t = arg;
    char det[256];
    hid_t fapl = -1;
    hid_t file = open_image(t->buf, t->len, &fapl);
    if (file < 0) {
        tg_error_here(TG_ERR_FORMAT, "%s: cannot open as HDF5 (truncated or corrupt): %s",
                      t->path, h5_detail(det));
        snprintf(msg, n, "%s", tg_last_error());
        H5Pclose(fapl);
        return 1;
    }
    contents c;
    tg_clear_error();
    int rc = 0;
    if (scan_file(file, &c, t->path) != TG_OK) {
        snprintf(msg, n, "%s", tg_last_error());
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < c.ne; i++) {
        const entry *e = &c.e[i];
        if (!e->readable)
            continue; /* the parent names it */
        size_t count = 1;
        for (int d = 0; d < e->ndim; d++)
            count *= (size_t)e->shape[d];
        void *data = malloc(count * tg_dtype_size(e->dtype) + 1);
        hid_t ds = H5Dopen2(file, e->name, H5P_DEFAULT);
        if (!data || ds < 0 || (count > 0 && H5Dread(ds, mem_type(e->dtype), H5S_ALL, H5S_ALL,
                                                     H5P_DEFAULT, data) < 0)) {
            tg_error_here(TG_ERR_FORMAT, "%s: cannot read dataset '%s' (truncated or "
                          "corrupt?): %s", t->path, e->name,
                          data ? h5_detail(det) : "out of memory");
            snprintf(msg, n, "%s", tg_last_error());
            rc = 1;
        }
        if (ds >= 0)
            H5Dclose(ds);
        free(data);
    }
    contents_free(&c);
    H5Fclose(file);
    H5Pclose(fapl);
    return rc;
}

/* buf: the file's bytes (borrowed) or NULL to read path. */
static tg_status reader_open(reader *r, const char *path, const void *buf, size_t len)
{
    char det[256];
    memset(r, 0, sizeof *r);
    r->file = r->fapl = -1;
    quiet_begin(&r->q);
    tg_status s;
    if (buf) {
        r->buf = (unsigned char *)buf;
        r->len = len;
    } else {
        if ((s = read_whole(path, &r->buf, &r->len)) != TG_OK)
            return s;
        r->own_buf = true;
    }
    file_kind k = kind_of(r->buf, r->len);
    if (k == K_NOT_HDF5)
        return tg_error_here(TG_ERR_FORMAT, "%s: not an HDF5 file", path);
    if (k == K_VERIFIED) {
        char why[256];
        if ((s = ub_verify(r->buf, r->len, why, sizeof why)) != TG_OK)
            return tg_error_here(s, "%s: %s", path, why);
    } else {
        /* no checksum to trust (a version-1 or another tool's file): HDF5 parses
         * it first in a child process, which may crash or hang instead of us */
        char why[512];
        trial t = {r->buf, r->len, path};
        bool crashed = false;
        s = tg_h5safe_run(trial_parse, &t, NULL, why, sizeof why, &crashed);
        if (s == TG_ERR_IO)
            return tg_error_here(s, "%s: %s", path, why);
        if (s != TG_OK && !crashed)
            return tg_error(s, "%s", why); /* the parse's own message, context included */
        if (s != TG_OK)
            return tg_error_here(s, "%s: has no checksums and HDF5 could not parse it safely "
                                 "(%s); refusing it", path, why);
    }
    r->file = open_image(r->buf, r->len, &r->fapl);
    if (r->file < 0)
        return tg_error_here(TG_ERR_FORMAT, "%s: cannot open as HDF5 (truncated or corrupt): %s",
                             path, h5_detail(det));
    if ((s = scan_file(r->file, &r->c, path)) != TG_OK)
        return s;
    if (k == K_UNVERIFIED && r->c.format_version >= 2)
        return tg_error_here(TG_ERR_FORMAT, "%s: metadata damaged (a format version %" PRId64
                             " file without its checksum header)", path, r->c.format_version);
    return TG_OK;
}

static void reader_close(reader *r)
{
    if (r->file >= 0)
        H5Fclose(r->file);
    if (r->fapl >= 0)
        H5Pclose(r->fapl);
    contents_free(&r->c);
    if (r->own_buf)
        free(r->buf);
    quiet_end(&r->q);
}

/* tg_checkpoint_load_ex's body; buf NULL reads path, else path names buf. */
static tg_status load_dict(tg_state_dict **out, const char *path, const void *buf, size_t len,
                           unsigned flags, const char *fn)
{
    *out = NULL;
    reader r;
    tg_state_dict *sd = NULL;
    const char *prev = tg_error_enter(fn);
    tg_status s = reader_open(&r, path, buf, len);
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
        s = flags & TG_CHECKPOINT_ALLOW_NONFINITE ? TG_OK : check_finite(t, e->name, path);
        if (s == TG_OK)
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

tg_status tg_checkpoint_load_ex(tg_state_dict **out, const char *path, unsigned flags)
{
    static const char fn[] = "tg_checkpoint_load";
    if (!out)
        return tg_null_arg(fn, "out");
    *out = NULL;
    if (!path)
        return tg_null_arg(fn, "path");
    return load_dict(out, path, NULL, 0, flags, fn);
}

tg_status tg_checkpoint_load(tg_state_dict **out, const char *path)
{
    return tg_checkpoint_load_ex(out, path, 0);
}

tg_status tg_checkpoint_load_image(tg_state_dict **out, const void *data, size_t size,
                                   const char *name, unsigned flags)
{
    static const char fn[] = "tg_checkpoint_load_image";
    if (!out)
        return tg_null_arg(fn, "out");
    *out = NULL;
    if (!data)
        return tg_null_arg(fn, "data");
    return load_dict(out, name ? name : "(image)", data, size, flags, fn);
}

tg_status tg_checkpoint_load_into_ex(const char *path, tg_state_dict *expected, unsigned flags)
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
    tg_status s = reader_open(&r, path, NULL, 0);
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

    /* Read (and check) everything before touching the caller's tensors; then
     * the apply. */
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
        s = flags & TG_CHECKPOINT_ALLOW_NONFINITE ? TG_OK : check_finite(t, name, path);
        if (s == TG_OK)
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

tg_status tg_checkpoint_load_into(const char *path, tg_state_dict *expected)
{
    return tg_checkpoint_load_into_ex(path, expected, 0);
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
    tg_status s = reader_open(&r, path, NULL, 0);
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

/* ---------------------------------------------------------------- the advisory lock */

struct tg_checkpoint_lock {
    int fd;
    char *file;
};

tg_status tg_checkpoint_lock(const char *path, struct tg_checkpoint_lock **out)
{
    static const char fn[] = "tg_checkpoint_lock";
    if (!out)
        return tg_null_arg(fn, "out");
    *out = NULL;
    if (!path)
        return tg_null_arg(fn, "path");
    struct tg_checkpoint_lock *l = calloc(1, sizeof *l);
    size_t n = strlen(path) + 6;
    char *file = malloc(n);
    if (!l || !file) {
        free(l);
        free(file);
        return tg_error(TG_ERR_NOMEM, "%s: out of memory", fn);
    }
    snprintf(file, n, "%s.lock", path);
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        tg_status s = tg_error(TG_ERR_IO, "%s: %s: cannot open the lock file %s: %s", fn, path,
                               file, strerror(errno));
        free(l);
        free(file);
        return s;
    }
    /* flock: held by this open file, so a second lock conflicts also inside one
     * process, and the kernel drops it when the holder dies */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char held[32] = "";
        ssize_t k = pread(fd, held, sizeof held - 1, 0);
        held[k > 0 ? k : 0] = '\0';
        held[strcspn(held, "\n")] = '\0';
        close(fd);
        tg_status s = e == EWOULDBLOCK
            ? tg_error(TG_ERR_STATE, "%s: %s: another process is using this checkpoint path "
                       "(lock file %s held by pid %s)", fn, path, file, *held ? held : "?")
            : tg_error(TG_ERR_IO, "%s: %s: cannot lock %s: %s", fn, path, file, strerror(e));
        free(l);
        free(file);
        return s;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the pid is only for the message; the lock holds without it */
    }
    l->fd = fd;
    l->file = file;
    *out = l;
    return TG_OK;
}

void tg_checkpoint_unlock(struct tg_checkpoint_lock *lock)
{
    if (!lock)
        return;
    /* the lock file stays: removing it would let a third process lock a new
     * file while a second still waits on the old one */
    close(lock->fd);
    free(lock->file);
    free(lock);
}
