/* io/checkpoint.h -- state dicts as HDF5 files: atomic save, verified load.
 *
 * Every tensor of a state dict becomes a dataset at its '/'-separated name and
 * every scalar attribute a root attribute; a checksum header in the file's
 * HDF5 user block lets the loader verify every byte before HDF5 parses it.
 * docs/checkpoint-format.md describes the layout. Not thread-safe (Debian's
 * HDF5 is built without thread safety): call these from one thread at a time. */
#ifndef TG_CHECKPOINT_H
#define TG_CHECKPOINT_H

#include <stdint.h>

#include "../libtensor/state_dict.h"
#include "../libtensor/export.h"

TG_API_BEGIN
#ifdef __cplusplus
extern "C" {
#endif

#define TG_CHECKPOINT_FORMAT "libtensor-checkpoint"
#define TG_CHECKPOINT_FORMAT_VERSION 2

/* Writes sd (borrowed) to path atomically: the file is written as
 * "<path>.tmp-<pid>" in the same folder, given its checksum header, fsync'ed,
 * then renamed over path, and the folder is fsync'ed. On any failure before
 * the rename the temporary file is removed and an existing file at path is
 * left untouched (a failed fsync of the folder, after the rename, is reported
 * too: path then holds the new checkpoint). A symbolic link at path is
 * followed: the file it points to is replaced and the link stays. A path that
 * is a FIFO, socket or device fails at once (TG_ERR_IO). Temporary files of
 * earlier saves of the same path whose process is gone are removed. The same
 * dict gives the same bytes. Tensor names must be
 * non-empty '/'-separated paths without empty, "." or ".." components, and no
 * name may be both a tensor and a group of another name. The attribute names
 * "format", "format_version" and "library_version" are reserved for the
 * metadata written here. */
tg_status tg_checkpoint_save(const char *path, const tg_state_dict *sd);

/* Reads every dataset (as a new contiguous tensor, in the file's creation order)
 * and every non-metadata root attribute into a new dict *out (the caller frees
 * it with tg_state_dict_free). path must be a regular file (else TG_ERR_IO at
 * once, a FIFO never blocks). Its checksums are verified before HDF5 parses
 * it: damage is TG_ERR_FORMAT naming the damaged tensor, or "metadata
 * damaged". A file without checksums (format version 1, another tool's) is
 * parsed first in a child process with a time limit, so a crash or hang of
 * HDF5 is an error, not the caller's. Then the format name and version and
 * every attribute's dataspace and type are checked, and f32/f64 tensors must
 * be finite (see TG_CHECKPOINT_ALLOW_NONFINITE). On error *out is NULL and the
 * message starts with the function and the path. */
tg_status tg_checkpoint_load(tg_state_dict **out, const char *path);

/* Flags of the _ex loaders. By default a loader refuses (TG_ERR_FORMAT, naming
 * the tensor and the first bad index) a file whose f32 or f64 tensors hold a
 * NaN or an infinity: parameters, buffers and optimizer state must be finite.
 * TG_CHECKPOINT_ALLOW_NONFINITE loads them as stored. */
#define TG_CHECKPOINT_ALLOW_NONFINITE 1u

/* tg_checkpoint_load with flags (TG_CHECKPOINT_* or 0). */
tg_status tg_checkpoint_load_ex(tg_state_dict **out, const char *path, unsigned flags);

/* Loads path into the tensors already in expected (a model's or optimizer's
 * state dict, borrowed). Checks, before changing anything: the file as
 * tg_checkpoint_load does (checksums, format name and version, attributes); that every tensor name of expected exists in the file as a dataset of
 * the same shape and dtype; that every attribute of expected exists with the
 * same type. Any mismatch fails with TG_ERR_FORMAT (TG_ERR_SHAPE / TG_ERR_DTYPE
 * when that is the only kind of mismatch) listing what does not match, and
 * leaves expected unchanged. Then copies each dataset into its tensor
 * (tg_tensor_copy_into; the tensors keep their identity) once all are read
 * and found finite (a non-finite value changes nothing), and every
 * non-metadata attribute of the file into expected. Datasets the file has but
 * expected lacks are ignored, so a model's weights load from a full training
 * checkpoint. */
tg_status tg_checkpoint_load_into(const char *path, tg_state_dict *expected);

/* tg_checkpoint_load_into with flags (TG_CHECKPOINT_* or 0). */
tg_status tg_checkpoint_load_into_ex(const char *path, tg_state_dict *expected,
                                     unsigned flags);

/* The initialiser of nn's tg_state_io (nn/fit.h) with the two functions above,
 * for tg_fit's checkpoints (nn/ does not include io/):
 *   opts.checkpoint_io = (tg_state_io)TG_CHECKPOINT_IO; */
#define TG_CHECKPOINT_IO { tg_checkpoint_save, tg_checkpoint_load_into }

typedef struct tg_checkpoint_info {
    int64_t format_version;
    char library_version[32]; /* of the library that wrote the file */
    int64_t num_tensors;
    int64_t num_attrs;        /* not counting the metadata */
} tg_checkpoint_info;

/* Reads the metadata of a checkpoint without loading its tensors (the file is
 * verified as for a load). */
tg_status tg_checkpoint_info_get(tg_checkpoint_info *out, const char *path);

/* An advisory lock on a checkpoint path, for a process that will save there
 * repeatedly (a training run). Opaque. The type is spelt with its struct tag:
 * C gives typedefs and functions one namespace, and the function has the name. */
struct tg_checkpoint_lock;

/* Locks path for this caller: flock(2) on the file "<path>.lock" beside it
 * (created if needed, holding the holder's pid; it stays after the unlock).
 * A path locked by another process -- or by another lock in this one -- fails
 * at once with TG_ERR_STATE and a message naming the path and the holder's
 * pid. The lock ends with tg_checkpoint_unlock or the process's death. Saves
 * and loads do not take it: only lockers exclude each other. *out is a new
 * lock, or NULL on error. */
tg_status tg_checkpoint_lock(const char *path, struct tg_checkpoint_lock **out);

/* Releases a lock and frees it; NULL does nothing. */
void tg_checkpoint_unlock(struct tg_checkpoint_lock *lock);

#ifdef __cplusplus
}
#endif
TG_API_END
#endif
