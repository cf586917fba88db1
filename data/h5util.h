// HDF5 helpers shared by the shards (data/) and the checkpoints (src/checkpoint.c): the
// process-wide lock, error setup and messages, and scalar attributes.
//
// libhdf5 is thread-safe only when built so (--enable-threadsafe: Debian's is, a default
// source build is not; H5is_library_threadsafe tells), and a training process calls it from
// two threads: the shard reader's (data/reader.c, chunked or compressed shards) and the
// trainer's (checkpoints). So every sequence of HDF5 calls, up to and including the H5Ewalk
// that reads its error, runs between h5_lock() and h5_unlock(), whichever the library. The
// lock is recursive: a locked function may call another that locks. The helpers below do not
// lock; their callers hold the lock around the whole sequence, and a helper called without it
// stops the process (an internal error: the call site forgot the lock).
#pragma once
#include <hdf5.h>
#include <stdint.h>

void h5_lock(void);
void h5_unlock(void);

// Once per process, before any other HDF5 use and before threads start: read-only opens take
// no file lock (NFS/Lustre), and HDF5's own error stack is printed (verbose) or not.
void h5_setup(int verbose);
// HDF5's error stack printed (verbose) or silenced (madtrain's messages already name the file
// and the problem). Call on each thread that uses HDF5 (thread-safe builds keep it per thread).
void h5_errors(int verbose);
// The most specific message on HDF5's error stack (e.g. "truncated file: eof = ..."), so a
// failure reads as one line even with the stack silenced. Returns buf.
const char *h5_cause(char buf[256]);

// Scalar attributes. Writers return 0, or -1.
int h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *value);
int h5_attr_write_i64(hid_t obj, const char *name, int64_t value);
int h5_attr_write_u64(hid_t obj, const char *name, uint64_t value);
// Fixed-length, NUL-terminated (reads back as bytes in h5py).
int h5_attr_write_str(hid_t obj, const char *name, const char *value);
// Variable-length UTF-8, as h5py writes a Python str (reads back as str).
int h5_attr_write_utf8(hid_t obj, const char *name, const char *value);
// Readers return 0, or -1 when the attribute is missing, holds more (or fewer) than one value,
// or cannot be read as asked.
int h5_attr_read_i64(hid_t obj, const char *name, int64_t *value);
int h5_attr_read_u64(hid_t obj, const char *name, uint64_t *value);
// A string attribute, fixed- or variable-length, malloc'ed; NULL when missing or unreadable.
char *h5_attr_read_str(hid_t obj, const char *name);
