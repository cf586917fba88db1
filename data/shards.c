// Reading shards: opening and validating a shard, direct reads at the data's file offset,
// reads through H5Dread for chunked or compressed data, and the full verification pass.
// The writer is data/shard_writer.c, the manifest data/manifest.c.
#include "shards.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "h5util.h"
#include "util.h"

// Shards are little-endian on disk; direct reads copy their bytes as they are.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "madtrain's shard reader needs a "
               "little-endian host");

// ---- attributes, checked against the format ----------------------------------------------
static void describe_type(hid_t t, char *out, size_t n) {
    size_t bits = 8 * H5Tget_size(t);
    switch (H5Tget_class(t)) {
        case H5T_INTEGER:
            snprintf(out, n, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", bits);
            break;
        case H5T_FLOAT:
            snprintf(out, n, "float%zu", bits);
            break;
        case H5T_STRING:
            snprintf(out, n, "strings");
            break;
        default:
            snprintf(out, n, "a non-numeric type");
            break;
    }
}

// The attribute exists and holds a single value of class `want`; else err says what is wrong.
static int attr_check(hid_t obj, const char *path, const char *name, H5T_class_t want, char *err,
                      size_t errlen) {
    if (H5Aexists(obj, name) <= 0) {
        snprintf(err, errlen, "%s: missing attribute '%s' (docs/data-format.md lists them)", path,
                 name);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a);
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == want && H5Sget_simple_extent_npoints(sp) == 1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    if (!ok) {
        snprintf(err, errlen, "%s: attribute '%s' must be a single %s", path, name,
                 want == H5T_INTEGER ? "integer" : "string");
        return -1;
    }
    return 0;
}

static int attr_int(hid_t obj, const char *path, const char *name, int64_t *v, char *err,
                    size_t errlen) {
    if (attr_check(obj, path, name, H5T_INTEGER, err, errlen)) return -1;
    if (!h5_attr_read_i64(obj, name, v)) return 0;
    snprintf(err, errlen, "%s: cannot read attribute '%s'", path, name);
    return -1;
}

// Variable-length (h5py's str) and fixed-length (numpy bytes, C writers) strings alike; the
// trailing blanks of a space-padded fixed-length string are not part of the value.
static int attr_str(hid_t obj, const char *path, const char *name, char *out, size_t n, char *err,
                    size_t errlen) {
    if (attr_check(obj, path, name, H5T_STRING, err, errlen)) return -1;
    char *value = h5_attr_read_str(obj, name);
    if (!value) {
        snprintf(err, errlen, "%s: cannot read attribute '%s'", path, name);
        return -1;
    }
    for (size_t i = strlen(value); i > 0 && value[i - 1] == ' '; i--) value[i - 1] = 0;
    snprintf(out, n, "%s", value);
    free(value);
    return 0;
}

// ---- reading ----------------------------------------------------------------------------
typedef struct {
    const char *name;
    hid_t id;      // open dataset, -1 once closed
    int64_t addr;  // file offset of the data for direct reads; -1: read through H5Dread
    int elem;      // bytes per value
    hid_t mem_type;
} Dset;

struct Shard {
    char path[1024];
    ShardInfo info;
    hid_t file;  // -1 once every read can bypass libhdf5
    int fd;
    Dset tokens, targets;
    unsigned char *raw;  // bytes of the last read, before conversion to int
    size_t raw_cap;
};

const char *shard_path(const Shard *s) {
    return s->path;
}

static int open_dataset(Shard *s, Dset *d, const char *name, char *err, size_t errlen) {
    d->name = name;
    d->id = H5Dopen2(s->file, name, H5P_DEFAULT);
    d->addr = -1;
    if (d->id < 0) {
        snprintf(err, errlen, "%s: '%s' is not a dataset", s->path, name);
        return -1;
    }
    return 0;
}

// NULL when every element of the dataset has storage, else what is missing.
static const char *storage_unwritten(hid_t id, int rank, const hsize_t *dims) {
    hid_t dcpl = H5Dget_create_plist(id);
    hsize_t chunk[2] = {1, 1}, want = 1, have = 0;
    int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
                  H5Pget_chunk(dcpl, rank, chunk) == rank && chunk[0] > 0 && chunk[rank - 1] > 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (chunked) {
        for (int i = 0; i < rank; i++) want *= (dims[i] + chunk[i] - 1) / chunk[i];
        hid_t space = H5Dget_space(id);  // all of it selected (H5S_ALL is refused here)
        herr_t rc = space < 0 ? -1 : H5Dget_num_chunks(id, space, &have);
        if (space >= 0) H5Sclose(space);
        if (rc < 0) return "its chunk index cannot be read";
        return have < want ? "some chunks were never stored" : NULL;
    }
    H5D_space_status_t status;
    if (H5Dget_space_status(id, &status) < 0) return "its storage status cannot be read";
    return status == H5D_SPACE_STATUS_ALLOCATED ? NULL : "no storage allocated";
}

// Type and shape of a data set: tokens/inputs are uint16|uint32, targets int32; LM tokens
// are 1-D, sequence datasets 2-D [N, T] with identical shapes.
static int check_dataset(Shard *s, Dset *d, int is_targets, char *err, size_t errlen) {
    hid_t t = H5Dget_type(d->id), sp = H5Dget_space(d->id);
    int want_rank = s->info.kind == SHARD_LM ? 1 : 2;
    char desc[32];
    describe_type(t, desc, sizeof(desc));
    size_t size = H5Tget_size(t);
    int is_int = H5Tget_class(t) == H5T_INTEGER;
    int is_unsigned = is_int && H5Tget_sign(t) == H5T_SGN_NONE;
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[2] = {0, 0};
    if (rank == want_rank) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Tclose(t), H5Sclose(sp);
    if (is_targets ? !(is_int && !is_unsigned && size == 4)
                   : !(is_unsigned && (size == 2 || size == 4))) {
        snprintf(err, errlen, "%s: dataset '%s' holds %s; expected %s", s->path, d->name, desc,
                 is_targets ? "int32" : "uint16 or uint32 token ids");
        return -1;
    }
    if (rank != want_rank) {
        snprintf(err, errlen, "%s: dataset '%s' has %d dimension(s); expected %s", s->path, d->name,
                 rank, want_rank == 1 ? "1 ([tokens])" : "2 ([sequences, seq_len])");
        return -1;
    }
    // Storage never written reads as the fill value: a shard whose writer stopped early, or a
    // small file that declares a huge extent it never stores (verify would then check fill
    // values for as long as the extent is large). Chunked data is counted chunk by chunk:
    // libhdf5's space status calls compressed chunks "part allocated".
    if (dims[0] > 0 && (want_rank == 1 || dims[1] > 0)) {
        const char *unwritten = storage_unwritten(d->id, rank, dims);
        if (unwritten) {
            snprintf(err, errlen, "%s: dataset '%s' is not fully written (%s)", s->path, d->name,
                     unwritten);
            return -1;
        }
    }
    d->elem = (int)size;
    d->mem_type = is_targets ? H5T_STD_I32LE : size == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    if (!is_targets) {
        s->info.token_bytes = (int)size;
        s->info.rows = (int64_t)dims[0];
        s->info.row_len = want_rank == 2 ? (int64_t)dims[1] : 1;
    } else if ((int64_t)dims[0] != s->info.rows || (int64_t)dims[1] != s->info.row_len) {
        snprintf(err, errlen, "%s: dataset 'targets' is [%llu, %llu] but 'inputs' is [%lld, %lld]",
                 s->path, (unsigned long long)dims[0], (unsigned long long)dims[1],
                 (long long)s->info.rows, (long long)s->info.row_len);
        return -1;
    }
    return 0;
}

// Contiguous, unfiltered, little-endian data with storage allocated can be read with pread at
// its file offset: ~1 us per window instead of ~9 us through H5Dread (bench/bench_reader).
static int plan_direct_reads(Shard *s, Dset *d, int64_t file_size, char *err, size_t errlen) {
    hid_t dcpl = H5Dget_create_plist(d->id), t = H5Dget_type(d->id);
    int plain = H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
                H5Pget_external_count(dcpl) == 0 && H5Tget_order(t) == H5T_ORDER_LE;
    H5Pclose(dcpl), H5Tclose(t);
    int64_t bytes = s->info.rows * s->info.row_len * d->elem;
    haddr_t addr = plain && bytes > 0 ? H5Dget_offset(d->id) : HADDR_UNDEF;
    if (addr == HADDR_UNDEF) return 0;
    if ((int64_t)addr + bytes > file_size) {
        snprintf(err, errlen,
                 "%s: truncated: dataset '%s' ends at byte %lld but the file has %lld bytes",
                 s->path, d->name, (long long)((int64_t)addr + bytes), (long long)file_size);
        return -1;
    }
    d->addr = (int64_t)addr;
    return 0;
}

static void *grow_raw(Shard *s, size_t bytes) {
    if (bytes > s->raw_cap) {
        free(s->raw);
        s->raw = xmalloc(bytes);
        s->raw_cap = bytes;
    }
    return s->raw;
}

static int read_raw(Shard *s, Dset *d, int64_t first, int64_t count, char *err, size_t errlen) {
    int64_t rows = s->info.rows, T = s->info.row_len;
    if (first < 0 || count < 0 || first + count > rows) {
        snprintf(err, errlen, "%s: rows [%lld, %lld) of '%s' are outside [0, %lld)", s->path,
                 (long long)first, (long long)(first + count), d->name, (long long)rows);
        return -1;
    }
    size_t bytes = (size_t)(count * T * d->elem);
    unsigned char *buf = grow_raw(s, bytes);
    if (d->addr >= 0) {
        int64_t off = d->addr + first * T * d->elem;
        for (size_t done = 0; done < bytes;) {
            ssize_t got = pread(s->fd, buf + done, bytes - done, (off_t)(off + (int64_t)done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                snprintf(
                    err, errlen, "%s: cannot read dataset '%s' at byte %lld: %s", s->path, d->name,
                    (long long)(off + (int64_t)done),
                    got < 0 ? strerror(errno) : "the file is shorter than its data (truncated)");
                return -1;
            }
            done += (size_t)got;
        }
        return 0;
    }
    if (!bytes) return 0;
    int rank = s->info.kind == SHARD_LM ? 1 : 2;
    hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)count, (hsize_t)T};
    h5_lock();  // a compressed shard's read may run beside a checkpoint write
    hid_t fs = H5Dget_space(d->id), ms = H5Screate_simple(rank, cnt, NULL);
    int rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
                     H5Dread(d->id, d->mem_type, ms, fs, H5P_DEFAULT, buf) < 0
                 ? -1
                 : 0;
    H5Sclose(fs), H5Sclose(ms);
    if (rc) {
        char cause[256];
        snprintf(err, errlen, "%s: cannot read rows [%lld, %lld) of '%s' (corrupted?): %s", s->path,
                 (long long)first, (long long)(first + count), d->name, h5_cause(cause));
    }
    h5_unlock();
    return rc;
}

static void report_bad_id(const Shard *s, const char *dataset, int64_t flat, int64_t value,
                          char *err, size_t errlen) {
    if (s->info.kind == SHARD_LM)
        snprintf(err, errlen, "%s: token id %lld at tokens[%lld] is >= vocab_size %lld", s->path,
                 (long long)value, (long long)flat, (long long)s->info.vocab_size);
    else
        snprintf(err, errlen, "%s: id %lld at %s[%lld, %lld] is outside [0, vocab_size %lld)",
                 s->path, (long long)value, dataset, (long long)(flat / s->info.row_len),
                 (long long)(flat % s->info.row_len), (long long)s->info.vocab_size);
}

// The raw token bytes of the last read, as ints; the max is taken in a loop the compiler
// vectorises, and only a failing block is searched for the offending position.
static int convert_tokens(const Shard *s, int64_t first_flat, size_t n, int *out, char *err,
                          size_t errlen) {
    uint32_t maxv = 0;
    if (s->info.token_bytes == 2) {
        const uint16_t *p = (const uint16_t *)s->raw;
        for (size_t i = 0; i < n; i++) {
            out[i] = p[i];
            maxv = p[i] > maxv ? p[i] : maxv;
        }
    } else {
        const uint32_t *p = (const uint32_t *)s->raw;
        for (size_t i = 0; i < n; i++) {
            out[i] = (int)p[i];
            maxv = p[i] > maxv ? p[i] : maxv;
        }
    }
    if ((int64_t)maxv < s->info.vocab_size) return 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = s->info.token_bytes == 2 ? ((const uint16_t *)s->raw)[i]
                                              : ((const uint32_t *)s->raw)[i];
        if ((int64_t)v >= s->info.vocab_size) {
            report_bad_id(s, s->tokens.name, first_flat + (int64_t)i, v, err, errlen);
            break;
        }
    }
    return -1;
}

int shard_read_tokens(Shard *s, int64_t first, int64_t count, int *out, char *err, size_t errlen) {
    if (read_raw(s, &s->tokens, first, count, err, errlen)) return -1;
    return convert_tokens(s, first * s->info.row_len, (size_t)(count * s->info.row_len), out, err,
                          errlen);
}

static int convert_targets(const Shard *s, int64_t first_flat, size_t n, int *out, char *err,
                           size_t errlen) {
    const int32_t *p = (const int32_t *)s->raw;
    for (size_t i = 0; i < n; i++) {
        int64_t v = p[i];
        if (v == s->info.ignore_index) {
            out[i] = -1;
        } else if (v < 0 || v >= s->info.vocab_size) {
            report_bad_id(s, "targets", first_flat + (int64_t)i, v, err, errlen);
            return -1;
        } else {
            out[i] = (int)v;
        }
    }
    return 0;
}

int shard_read_targets(Shard *s, int64_t first, int64_t count, int *out, char *err, size_t errlen) {
    if (read_raw(s, &s->targets, first, count, err, errlen)) return -1;
    return convert_targets(s, first * s->info.row_len, (size_t)(count * s->info.row_len), out, err,
                           errlen);
}

// One pass over a dataset in blocks of about 16 MiB: CRC-32 and the range check.
static int verify_dataset(Shard *s, Dset *d, uLong *crc, char *err, size_t errlen) {
    int64_t T = s->info.row_len, rows_per_block = ((int64_t)1 << 24) / (T * d->elem) + 1;
    int *ids = xmalloc(sizeof(int) * (size_t)(rows_per_block * T));
    int rc = 0;
    *crc = crc32_z(0, Z_NULL, 0);
    for (int64_t r = 0; r < s->info.rows && !rc; r += rows_per_block) {
        int64_t k = s->info.rows - r < rows_per_block ? s->info.rows - r : rows_per_block;
        rc = read_raw(s, d, r, k, err, errlen);
        if (rc) break;
        *crc = crc32_z(*crc, s->raw, (size_t)(k * T * d->elem));
        rc = d == &s->targets ? convert_targets(s, r * T, (size_t)(k * T), ids, err, errlen)
                              : convert_tokens(s, r * T, (size_t)(k * T), ids, err, errlen);
    }
    free(ids);
    return rc;
}

static int verify_doc_offsets(Shard *s, char *err, size_t errlen) {
    hid_t d = H5Dopen2(s->file, "doc_offsets", H5P_DEFAULT);
    int64_t n = s->info.n_docs + 1, tokens = s->info.rows;
    int64_t *off = xmalloc(sizeof(int64_t) * (size_t)n);
    int rc = d < 0 || H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off) < 0 ? -1 : 0;
    if (d >= 0) H5Dclose(d);
    if (rc) {
        char cause[256];
        snprintf(err, errlen, "%s: cannot read dataset 'doc_offsets': %s", s->path,
                 h5_cause(cause));
    }
    for (int64_t i = 0; i < n && !rc; i++)
        if (off[i] < (i ? off[i - 1] : 0) || off[i] > tokens || (i == n - 1 && off[i] != tokens)) {
            snprintf(err, errlen,
                     "%s: doc_offsets[%lld] = %lld: offsets must increase from 0 and end at the "
                     "token count %lld",
                     s->path, (long long)i, (long long)off[i], (long long)tokens);
            rc = -1;
        }
    free(off);
    return rc;
}

static int verify_shard(Shard *s, char *err, size_t errlen) {
    uLong crc = 0, crc_targets = 0;
    if (verify_dataset(s, &s->tokens, &crc, err, errlen)) return -1;
    if (s->info.kind == SHARD_SEQ) {
        if (verify_dataset(s, &s->targets, &crc_targets, err, errlen)) return -1;
        z_off_t len = (z_off_t)(s->info.rows * s->info.row_len * s->targets.elem);
        crc = crc32_combine(crc, crc_targets, len);
    }
    if ((uint32_t)crc != s->info.checksum) {
        snprintf(err, errlen,
                 "%s: checksum mismatch: the data hashes to crc32 0x%08x but checksum_crc32 says "
                 "0x%08x (corrupted file)",
                 s->path, (unsigned)crc, (unsigned)s->info.checksum);
        return -1;
    }
    return s->info.n_docs > 0 ? verify_doc_offsets(s, err, errlen) : 0;
}

static int read_info(Shard *s, char *err, size_t errlen) {
    ShardInfo *in = &s->info;
    hid_t f = s->file;
    const char *p = s->path;
    if (attr_int(f, p, "format_version", &in->format_version, err, errlen)) return -1;
    if (in->format_version > SHARDS_FORMAT_VERSION || in->format_version < 1) {
        snprintf(err, errlen, "%s: format_version %lld %s (%d)%s", p, (long long)in->format_version,
                 in->format_version < 1 ? "is not valid: this madtrain reads"
                                        : "is newer than this madtrain reads",
                 SHARDS_FORMAT_VERSION, in->format_version < 1 ? "" : ": upgrade madtrain");
        return -1;
    }
    int64_t checksum;
    if (attr_int(f, p, "vocab_size", &in->vocab_size, err, errlen) ||
        attr_str(f, p, "tokenizer", in->tokenizer, sizeof(in->tokenizer), err, errlen) ||
        attr_str(f, p, "task", in->task, sizeof(in->task), err, errlen) ||
        attr_str(f, p, "split", in->split, sizeof(in->split), err, errlen) ||
        attr_int(f, p, "checksum_crc32", &checksum, err, errlen))
        return -1;
    if (in->vocab_size < 1 || in->vocab_size > INT32_MAX) {
        snprintf(err, errlen, "%s: vocab_size %lld is outside [1, 2^31)", p,
                 (long long)in->vocab_size);
        return -1;
    }
    if (checksum < 0 || checksum > 0xFFFFFFFFll) {
        snprintf(err, errlen, "%s: checksum_crc32 %lld is not a 32-bit CRC", p,
                 (long long)checksum);
        return -1;
    }
    in->checksum = (uint32_t)checksum;
    return 0;
}

static int open_datasets(Shard *s, int64_t file_size, char *err, size_t errlen) {
    ShardInfo *in = &s->info;
    int has_tokens = H5Lexists(s->file, "tokens", H5P_DEFAULT) > 0;
    int has_inputs = H5Lexists(s->file, "inputs", H5P_DEFAULT) > 0;
    int has_targets = H5Lexists(s->file, "targets", H5P_DEFAULT) > 0;
    if (!has_tokens && !has_inputs) {
        snprintf(err, errlen,
                 "%s: no dataset 'tokens' (language modelling) or 'inputs' + 'targets' "
                 "(sequences)",
                 s->path);
        return -1;
    }
    if (!has_tokens && !has_targets) {
        snprintf(err, errlen, "%s: dataset 'inputs' has no 'targets' dataset beside it", s->path);
        return -1;
    }
    in->kind = has_tokens ? SHARD_LM : SHARD_SEQ;
    if (open_dataset(s, &s->tokens, has_tokens ? "tokens" : "inputs", err, errlen) ||
        check_dataset(s, &s->tokens, 0, err, errlen) ||
        plan_direct_reads(s, &s->tokens, file_size, err, errlen))
        return -1;
    in->ignore_index = -1;
    if (in->kind == SHARD_SEQ) {
        if (open_dataset(s, &s->targets, "targets", err, errlen) ||
            check_dataset(s, &s->targets, 1, err, errlen) ||
            plan_direct_reads(s, &s->targets, file_size, err, errlen))
            return -1;
        if (H5Aexists(s->targets.id, "ignore_index") > 0 &&
            attr_int(s->targets.id, s->path, "ignore_index", &in->ignore_index, err, errlen))
            return -1;
    }
    if (in->kind == SHARD_LM && H5Lexists(s->file, "doc_offsets", H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(s->file, "doc_offsets", H5P_DEFAULT);
        hid_t t = d < 0 ? -1 : H5Dget_type(d), sp = d < 0 ? -1 : H5Dget_space(d);
        hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
        int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_ndims(sp) == 1 &&
                 n >= 1;
        if (t >= 0) H5Tclose(t);
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
        if (!ok) {
            snprintf(err, errlen, "%s: 'doc_offsets' must be a 1-D integer dataset of length >= 1",
                     s->path);
            return -1;
        }
        in->n_docs = (int64_t)n - 1;
    }
    return 0;
}

static void close_hdf5(Shard *s) {
    h5_lock();
    if (s->tokens.id >= 0) H5Dclose(s->tokens.id);
    if (s->targets.id >= 0) H5Dclose(s->targets.id);
    if (s->file >= 0) H5Fclose(s->file);
    s->tokens.id = s->targets.id = s->file = -1;
    h5_unlock();
}

Shard *shard_open(const char *path, int verify, ShardInfo *info, char *err, size_t errlen) {
    Shard *s = xcalloc(1, sizeof(Shard));
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->file = s->tokens.id = s->targets.id = -1;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) || !S_ISREG(st.st_mode)) {
        // A directory opens read-only on Linux; HDF5 would then fail with its own internals.
        if (s->fd >= 0 && !S_ISREG(st.st_mode))
            snprintf(err, errlen, "%s: is a %s, not a shard file", path,
                     S_ISDIR(st.st_mode) ? "directory" : "special file");
        else
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        if (s->fd >= 0) close(s->fd);
        free(s);
        return NULL;
    }
    // Read-only opens take no lock: on NFS/Lustre locking fails or hangs, and nothing else
    // writes a shard once prep has renamed it into place.
    h5_lock();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#else
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);  // older libraries read only the variable
#endif
    s->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    int rc = 0;
    if (s->file < 0) {  // before H5Pclose, which clears the error stack
        char cause[256];
        snprintf(err, errlen, "%s: not a readable HDF5 file (%s)", path, h5_cause(cause));
        rc = -1;
    }
    H5Pclose(fapl);
    if (!rc) rc = read_info(s, err, errlen);
    if (!rc) rc = open_datasets(s, (int64_t)st.st_size, err, errlen);
    if (!rc && verify) rc = verify_shard(s, err, errlen);
    int needs_hdf5 = s->tokens.addr < 0 || (s->info.kind == SHARD_SEQ && s->targets.addr < 0);
    s->info.direct = !needs_hdf5;
    if (rc || !needs_hdf5) close_hdf5(s);
    h5_unlock();
    if (rc) {
        close(s->fd);
        free(s->raw);
        free(s);
        return NULL;
    }
    *info = s->info;
    return s;
}

void shard_close(Shard *s) {
    if (!s) return;
    close_hdf5(s);
    close(s->fd);
    free(s->raw);
    free(s);
}
