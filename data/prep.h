// `madtrain prep wikitext|synthetic|check`: the tools that write (and check) shard folders
// in the format of docs/data-format.md. src/prep_cli.c reads the command line and calls them;
// each returns the process exit code (0, 1 runtime failure, 2 usage).
#pragma once
#include <stdint.h>

#include "data_options.h"
#include "shards.h"

void prep_clock_start(void);  // the start of the command, for progress lines and totals
// argv[0] is the tool's name; the tool reads its own options.
int prep_wikitext(int argc, char **argv);
int prep_check(int argc, char **argv);
// `prep images`: CIFAR, PNG/JPEG folders or an .npz into image shards (prep_images.c).
int prep_images(int argc, char **argv);
// The in-process task of o as sequence shards in out: train (o->train_examples) and valid
// (o->test_examples), per_shard sequences a shard, gzip level 0 (contiguous) to 9.
int prep_synthetic(const DataOptions *o, const char *out, int64_t per_shard, int gzip);

// ---- shared by the prep tools -----------------------------------------------------------

// Streams one split into shards of at most rows_per_shard rows: <out_dir>/<split>-NNNNN.h5,
// each listed in the manifest when complete. The split's row count is known up front (a
// counting pass), so every dataset is created contiguous at its final size.
typedef struct {
    const char *out_dir;
    ShardInfo info;  // kind, vocab_size, tokenizer, task, split, row_len, token_bytes
    int gzip_level;
    int64_t total_rows, rows_per_shard;
    int n_attrs;  // task parameters written on every shard (task.*)
    struct {
        const char *name;
        int is_float;
        int64_t i;
        double f;
    } attrs[8];
    Manifest *manifest;
    // progress
    int shards;
    int64_t written;
    ShardWriter *w;
    int64_t shard_rows, in_shard;
    int64_t *docs, n_docs, cap_docs;  // document starts in the current shard
} SplitWriter;

int split_put(SplitWriter *sw, const int *tokens, const int *targets, int64_t rows, char *err,
              size_t errlen);
// A document starts at the next row (language modelling shards: doc_offsets).
void split_doc_start(SplitWriter *sw);
// Completes the last shard; every row announced must have been put. Frees the buffers.
int split_end(SplitWriter *sw, char *err, size_t errlen);

// A progress line at most every 5 s of a long pass: "<what>: 41% (...)".
void prep_progress(const char *what, int64_t done, int64_t total, int64_t tokens);
double prep_elapsed(void);  // seconds since the prep command started
