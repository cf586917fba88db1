// Writing shards (shards.h): a .partial file with the datasets at their final size, rows
// appended in order with their CRC-32 kept as they go, renamed into place once complete.
// Every public function holds the process-wide HDF5 lock (h5util.h) over its HDF5 calls.
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "h5util.h"
#include "shards.h"
#include "util.h"

struct ShardWriter {
    char path[1024], partial[1040];
    ShardInfo info;
    hid_t file, tokens, targets;
    int64_t written;  // rows
    uLong crc_tokens, crc_targets;
    void *raw;
    size_t raw_cap;
};

static int writer_fail(ShardWriter *w, const char *what, char *err, size_t errlen) {
    char cause[256];
    snprintf(err, errlen, "%s: cannot %s: %s", w->partial, what, h5_cause(cause));
    return -1;
}

static int set_attr(ShardWriter *w, const char *name, hid_t file_type, hid_t mem_type,
                    const void *value, char *err, size_t errlen) {
    h5_lock();
    int rc = h5_attr_write(w->file, name, file_type, mem_type, value)
                 ? writer_fail(w, "write an attribute", err, errlen)
                 : 0;
    h5_unlock();
    return rc;
}

int shard_set_attr_int(ShardWriter *w, const char *name, int64_t value, char *err, size_t errlen) {
    return set_attr(w, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, err, errlen);
}

int shard_set_attr_float(ShardWriter *w, const char *name, double value, char *err, size_t errlen) {
    return set_attr(w, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, err, errlen);
}

static hid_t create_dataset(ShardWriter *w, const char *name, hid_t type, int gzip_level) {
    const ShardInfo *in = &w->info;
    int rank = in->kind == SHARD_LM ? 1 : 2;
    hsize_t dims[2] = {(hsize_t)in->rows, (hsize_t)in->row_len};
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    // Every value gets written, so filling the storage first would only double the I/O.
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    if (gzip_level > 0 && in->rows > 0) {
        // ~16K values a chunk: a random window decompresses one or two chunks (tens of us).
        hsize_t rows = (hsize_t)(16384 / in->row_len + 1);
        hsize_t chunk[2] = {rows < dims[0] ? rows : dims[0], dims[1]};
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, (unsigned)gzip_level);
    }
    hid_t d = H5Dcreate2(w->file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl), H5Sclose(sp);
    return d;
}

static ShardWriter *create_writer(const char *path, const ShardInfo *info, int gzip_level,
                                  char *err, size_t errlen) {
    if (info->token_bytes == 2 && info->vocab_size > 65536) {
        snprintf(err, errlen, "%s: vocab_size %lld does not fit uint16 token ids", path,
                 (long long)info->vocab_size);
        return NULL;
    }
    ShardWriter *w = xcalloc(1, sizeof(ShardWriter));
    snprintf(w->path, sizeof(w->path), "%s", path);
    snprintf(w->partial, sizeof(w->partial), "%s.partial", path);
    w->info = *info;
    w->tokens = w->targets = -1;
    w->crc_tokens = w->crc_targets = crc32_z(0, Z_NULL, 0);
    w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        char cause[256];
        snprintf(err, errlen, "%s: cannot create: %s", w->partial, h5_cause(cause));
        free(w);
        return NULL;
    }
    hid_t token_type = info->token_bytes == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int seq = info->kind == SHARD_SEQ;
    int64_t version = SHARDS_FORMAT_VERSION, vocab = info->vocab_size, ignore = -1;
    int rc = (w->tokens = create_dataset(w, seq ? "inputs" : "tokens", token_type, gzip_level)) < 0;
    if (!rc && seq) {
        w->targets = create_dataset(w, "targets", H5T_STD_I32LE, gzip_level);
        rc = w->targets < 0 ||
             h5_attr_write(w->targets, "ignore_index", H5T_STD_I64LE, H5T_NATIVE_INT64, &ignore);
    }
    rc = rc ||
         h5_attr_write(w->file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version) ||
         h5_attr_write(w->file, "vocab_size", H5T_STD_I64LE, H5T_NATIVE_INT64, &vocab) ||
         h5_attr_write_utf8(w->file, "tokenizer", info->tokenizer) ||
         h5_attr_write_utf8(w->file, "task", info->task) ||
         h5_attr_write_utf8(w->file, "split", info->split);
    if (rc) {
        writer_fail(w, "create the datasets", err, errlen);
        shard_abandon(w);
        return NULL;
    }
    return w;
}

static int write_rows(ShardWriter *w, hid_t d, const void *raw, int64_t rows) {
    int rank = w->info.kind == SHARD_LM ? 1 : 2;
    hsize_t start[2] = {(hsize_t)w->written, 0}, cnt[2] = {(hsize_t)rows, (hsize_t)w->info.row_len};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, cnt, NULL);
    hid_t type = H5Dget_type(d);
    int rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
                     H5Dwrite(d, type, ms, fs, H5P_DEFAULT, raw) < 0
                 ? -1
                 : 0;
    H5Tclose(type), H5Sclose(fs), H5Sclose(ms);
    return rc;
}

static int append_rows(ShardWriter *w, const int *tokens, const int *targets, int64_t rows,
                       char *err, size_t errlen) {
    if (rows <= 0) return 0;
    if (w->written + rows > w->info.rows) {
        snprintf(err, errlen, "%s: more rows appended than the %lld it was created for", w->partial,
                 (long long)w->info.rows);
        return -1;
    }
    size_t n = (size_t)(rows * w->info.row_len), bytes = n * sizeof(uint32_t);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= w->info.vocab_size ||
            (targets && targets[i] >= w->info.vocab_size)) {
            snprintf(err, errlen, "%s: id %d (or its target) is outside [0, vocab_size %lld)",
                     w->partial, tokens[i], (long long)w->info.vocab_size);
            return -1;
        }
    if (bytes > w->raw_cap) {
        free(w->raw);
        w->raw = xmalloc(bytes);
        w->raw_cap = bytes;
    }
    if (w->info.token_bytes == 2) {
        uint16_t *p = w->raw;
        for (size_t i = 0; i < n; i++) p[i] = (uint16_t)tokens[i];
    } else {
        uint32_t *p = w->raw;
        for (size_t i = 0; i < n; i++) p[i] = (uint32_t)tokens[i];
    }
    w->crc_tokens = crc32_z(w->crc_tokens, w->raw, n * (size_t)w->info.token_bytes);
    if (write_rows(w, w->tokens, w->raw, rows)) return writer_fail(w, "write tokens", err, errlen);
    if (w->info.kind == SHARD_SEQ) {
        int32_t *p = w->raw;
        for (size_t i = 0; i < n; i++) p[i] = targets[i] < 0 ? -1 : targets[i];
        w->crc_targets = crc32_z(w->crc_targets, w->raw, n * sizeof(int32_t));
        if (write_rows(w, w->targets, w->raw, rows))
            return writer_fail(w, "write targets", err, errlen);
    }
    w->written += rows;
    return 0;
}

static void writer_free(ShardWriter *w) {
    if (w->tokens >= 0) H5Dclose(w->tokens);
    if (w->targets >= 0) H5Dclose(w->targets);
    free(w->raw);
    free(w);
}

void shard_abandon(ShardWriter *w) {
    h5_lock();
    if (w->tokens >= 0) H5Dclose(w->tokens);
    if (w->targets >= 0) H5Dclose(w->targets);
    w->tokens = w->targets = -1;
    if (w->file >= 0) H5Fclose(w->file);
    unlink(w->partial);
    writer_free(w);
    h5_unlock();
}

static int finish_writer(ShardWriter *w, const int64_t *doc_offsets, int64_t n_offsets, char *err,
                         size_t errlen) {
    int rc = 0;
    if (w->written != w->info.rows) {
        snprintf(err, errlen, "%s: %lld of %lld rows written", w->partial, (long long)w->written,
                 (long long)w->info.rows);
        rc = -1;
    }
    uLong crc = w->crc_tokens;
    if (w->info.kind == SHARD_SEQ)
        crc = crc32_combine(crc, w->crc_targets,
                            (z_off_t)(w->info.rows * w->info.row_len * (int64_t)sizeof(int32_t)));
    uint32_t checksum = (uint32_t)crc;
    if (!rc &&
        h5_attr_write(w->file, "checksum_crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &checksum))
        rc = writer_fail(w, "write the checksum", err, errlen);
    if (!rc && doc_offsets && n_offsets > 0) {
        hsize_t n = (hsize_t)n_offsets;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t d = H5Dcreate2(w->file, "doc_offsets", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (d < 0 || H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, doc_offsets) < 0)
            rc = writer_fail(w, "write doc_offsets", err, errlen);
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
    }
    if (rc) {
        shard_abandon(w);
        return -1;
    }
    H5Dclose(w->tokens);
    if (w->targets >= 0) H5Dclose(w->targets);
    w->tokens = w->targets = -1;
    if (H5Fclose(w->file) < 0) {
        w->file = -1;
        writer_fail(w, "close", err, errlen);
        unlink(w->partial);
        writer_free(w);
        return -1;
    }
    if (rename(w->partial, w->path)) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", w->partial, w->path, strerror(errno));
        unlink(w->partial);
        rc = -1;
    }
    writer_free(w);
    return rc;
}

// ---- the public functions: each one HDF5 call sequence under the lock ------------------------
ShardWriter *shard_create(const char *path, const ShardInfo *info, int gzip_level, char *err,
                          size_t errlen) {
    h5_lock();
    ShardWriter *w = create_writer(path, info, gzip_level, err, errlen);
    h5_unlock();
    return w;
}

int shard_append(ShardWriter *w, const int *tokens, const int *targets, int64_t rows, char *err,
                 size_t errlen) {
    h5_lock();
    int rc = append_rows(w, tokens, targets, rows, err, errlen);
    h5_unlock();
    return rc;
}

int shard_finish(ShardWriter *w, const int64_t *doc_offsets, int64_t n_offsets, char *err,
                 size_t errlen) {
    h5_lock();
    int rc = finish_writer(w, doc_offsets, n_offsets, err, errlen);
    h5_unlock();
    return rc;
}
