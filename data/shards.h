// The on-disk data format (docs/data-format.md): a folder with manifest.tsv (the index: split,
// file, token count per shard), one HDF5 file per shard, and vocab.txt for word-level text.
//
// A shard holds either a language-modelling token stream (`tokens` [n], uint16 or uint32) or
// fixed-length supervised sequences (`inputs` [N, T] and `targets` [N, T] int32, whose
// `ignore_index` marks unscored positions). Root attributes describe it: format_version,
// vocab_size, tokenizer, task (+ task.* parameters), split and checksum_crc32, the CRC-32
// (zlib) of the token data's little-endian bytes (`tokens`, or `inputs` then `targets`).
//
// libhdf5 is not thread-safe: every function here that calls it holds the process-wide HDF5
// lock (h5util.h), so shards may be read on one thread while another writes a checkpoint.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SHARDS_FORMAT_VERSION 1
#define SHARDS_MANIFEST "manifest.tsv"
#define SHARDS_MANIFEST_MAGIC "madtrain-shards"

enum { SHARD_LM = 1, SHARD_SEQ = 2 };

typedef struct {
    char split[64];
    char file[448];  // as listed: relative to the manifest's folder, or absolute
    int64_t tokens;  // token count of the shard (N * T for sequences)
} ManifestEntry;

typedef struct {
    int version, n;
    ManifestEntry *entries;
} Manifest;

// <dir>/manifest.tsv (manifest.c). Both return 0, or -1 with one line in err naming the file.
int manifest_read(const char *dir, Manifest *m, char *err, size_t errlen);
int manifest_write(const char *dir, const Manifest *m, char *err, size_t errlen);
void manifest_add(Manifest *m, const char *split, const char *file, int64_t tokens);
void manifest_free(Manifest *m);

// What a shard says about itself (read), or will say (write).
typedef struct {
    int kind;  // SHARD_LM or SHARD_SEQ
    int64_t format_version, vocab_size;
    char tokenizer[32], task[32], split[64];
    uint32_t checksum;      // checksum_crc32 as stored
    int64_t rows, row_len;  // LM: rows = tokens, row_len = 1; sequences: N and T
    int token_bytes;        // 2 (uint16) or 4 (uint32)
    int64_t ignore_index;   // sequences: the targets value that is not scored
    int64_t n_docs;         // documents listed in doc_offsets (0: none stored)
    int direct;             // read: reads bypass libhdf5 (plain contiguous data)
} ShardInfo;

// ---- reading ----------------------------------------------------------------------------
typedef struct Shard Shard;

// Opens and validates a shard: attributes, dataset names, types and shapes; with verify, also
// reads everything once (checksum, every id < vocab_size, targets in range, doc_offsets
// increasing within [0, tokens]). Reads of plain (contiguous, uncompressed, little-endian)
// datasets then bypass libhdf5 (pread at the dataset's file offset), so a shard set of such
// files makes no HDF5 call after opening; chunked or compressed data goes through H5Dread.
Shard *shard_open(const char *path, int verify, ShardInfo *info, char *err, size_t errlen);
void shard_close(Shard *s);
const char *shard_path(const Shard *s);
// Token rows [first, first + count) (LM: tokens; sequences: rows of `inputs`) as ints; every
// id is checked against vocab_size. 0, or -1 with err.
int shard_read_tokens(Shard *s, int64_t first, int64_t count, int *out, char *err, size_t errlen);
// Target rows [first, first + count) of a sequence shard, ignore_index mapped to -1.
int shard_read_targets(Shard *s, int64_t first, int64_t count, int *out, char *err, size_t errlen);

// ---- writing (shard_writer.c) -------------------------------------------------------------
typedef struct ShardWriter ShardWriter;

// Creates <path>.partial with the datasets sized by info (kind, rows, row_len, token_bytes)
// and its attributes; gzip_level > 0 stores the data chunked and compressed instead of
// contiguous. shard_finish renames it into place, so a killed prep never leaves a
// half-written shard under a real name.
ShardWriter *shard_create(const char *path, const ShardInfo *info, int gzip_level, char *err,
                          size_t errlen);
int shard_set_attr_int(ShardWriter *w, const char *name, int64_t value, char *err, size_t errlen);
int shard_set_attr_float(ShardWriter *w, const char *name, double value, char *err, size_t errlen);
// Appends rows (tokens, and targets for sequence shards; -1 = not scored) in order.
int shard_append(ShardWriter *w, const int *tokens, const int *targets, int64_t rows, char *err,
                 size_t errlen);
// All rows must have been appended. doc_offsets (n_offsets entries, may be NULL) is stored as
// the document boundaries. Writes the checksum, closes, renames. Frees w in every case.
int shard_finish(ShardWriter *w, const int64_t *doc_offsets, int64_t n_offsets, char *err,
                 size_t errlen);
// Gives up: closes and deletes the partial file.
void shard_abandon(ShardWriter *w);
