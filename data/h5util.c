#include "h5util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ---- the process-wide lock ------------------------------------------------------------------
static pthread_mutex_t h5_mutex;
static pthread_once_t h5_mutex_once = PTHREAD_ONCE_INIT;
static _Thread_local int h5_depth;  // how often this thread holds the lock

static void h5_mutex_init(void) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h5_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
}

void h5_lock(void) {
    pthread_once(&h5_mutex_once, h5_mutex_init);
    pthread_mutex_lock(&h5_mutex);
    h5_depth++;
}

void h5_unlock(void) {
    h5_depth--;
    pthread_mutex_unlock(&h5_mutex);
}

// A helper called without the lock is a call site that forgot it: stop at once, so a test of
// that path fails every time rather than only when the other thread happens to be in libhdf5
// (never, where libhdf5 is built thread-safe).
static void require_lock(const char *helper) {
    if (h5_depth > 0) return;
    fprintf(stderr, "madtrain: internal error: %s called without the HDF5 lock (data/h5util.h)\n",
            helper);
    abort();
}

// ---- errors ---------------------------------------------------------------------------------
void h5_setup(int verbose) {
    // Read-only opens on shared file systems: locking there fails or hangs (HDF5 >= 1.10.7
    // honours this variable; shard_open also sets it per file).
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
    h5_errors(verbose);
}

void h5_errors(int verbose) {
    h5_lock();
    if (verbose)
        H5Eset_auto2(H5E_DEFAULT, (H5E_auto2_t)H5Eprint2, stderr);
    else
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5_unlock();
}

static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *out) {
    if (n == 0) snprintf(out, 256, "%s", e->desc);
    return 0;
}

const char *h5_cause(char buf[256]) {
    require_lock(__func__);
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, buf);
    if (!buf[0]) snprintf(buf, 256, "HDF5 error");
    return buf;
}

// ---- attributes -----------------------------------------------------------------------------
int h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *value) {
    require_lock(__func__);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mem_type, value) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int h5_attr_write_i64(hid_t obj, const char *name, int64_t value) {
    return h5_attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int h5_attr_write_u64(hid_t obj, const char *name, uint64_t value) {
    return h5_attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

int h5_attr_write_str(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    int rc = h5_attr_write(obj, name, t, t, value);
    H5Tclose(t);
    return rc;
}

int h5_attr_write_utf8(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = h5_attr_write(obj, name, t, t, &value);
    H5Tclose(t);
    return rc;
}

// H5Aread writes every element of the attribute: an array where one value belongs (a file
// written by another tool, or corrupted) would overrun the caller's buffer.
static int single_value(hid_t a) {
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0) H5Sclose(sp);
    return n == 1;
}

static int read_scalar(hid_t obj, const char *name, hid_t mem_type, void *value) {
    require_lock(__func__);
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int rc = !single_value(a) || H5Aread(a, mem_type, value) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    return rc;
}

int h5_attr_read_i64(hid_t obj, const char *name, int64_t *value) {
    return read_scalar(obj, name, H5T_NATIVE_INT64, value);
}

int h5_attr_read_u64(hid_t obj, const char *name, uint64_t *value) {
    return read_scalar(obj, name, H5T_NATIVE_UINT64, value);
}

char *h5_attr_read_str(hid_t obj, const char *name) {
    require_lock(__func__);
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    if (!single_value(a)) {
        H5Aclose(a);
        return NULL;
    }
    hid_t ft = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    char *out = NULL;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (H5Aread(a, mt, &s) >= 0 && s) {
            out = xcalloc(strlen(s) + 1, 1);
            memcpy(out, s, strlen(s));
            H5free_memory(s);
        }
    } else if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        // One more byte than stored, so a string that fills its whole size still ends in NUL.
        size_t len = H5Tget_size(ft);
        out = xcalloc(len + 1, 1);
        H5Tset_size(mt, len + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        if (H5Aread(a, mt, out) < 0) free(out), out = NULL;
    }
    H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return out;
}
