// The shard reader behind loader.h: a folder of HDF5 shards (shards.h) served by one
// background thread per process, which makes every HDF5 call of the process's data path and
// prefetches the next training batches of this rank while the trainer computes. Plain
// (contiguous) shards are read without libhdf5 once open; chunked or compressed ones need it
// for every read, under the process-wide HDF5 lock (h5util.h) that the trainer's own HDF5
// calls (checkpoints, on the main thread) take too.
//
// Language modelling shards are cut into windows of T+1 tokens at stride T within each shard
// (ids = the first T, targets = the last T); the training order is a keyed bijection of the
// window indices per epoch (no table: memory does not grow with the data). Sequence shards
// (inputs/targets [N, T]) are ordered by the in-process tasks' Sampler, so shards written by
// `madtrain prep synthetic` give exactly the batches of in-process generation.
//
// Evaluation over the whole eval split: LM windows of T at stride S <= T, each scoring only
// the tokens the previous window did not (every token but a shard's first is scored once,
// with at least T - S tokens of context).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data_options.h"

typedef struct Reader Reader;

// Opens o->path; NULL with one line in err. One reader per process at a time.
Reader *reader_open(const DataOptions *o, int rank, int world, char *err, size_t errlen);
void reader_close(Reader *r);
int reader_vocab(const Reader *r);
int reader_seq_len(const Reader *r);
int reader_is_lm(const Reader *r);
const char *reader_describe(const Reader *r);
int64_t reader_train_size(const Reader *r);
int64_t reader_eval_size(const Reader *r);
int reader_train(Reader *r, int64_t first, int64_t count, int *ids, int *targets, char *err,
                 size_t errlen);
int reader_eval(Reader *r, int64_t first, int64_t count, int *ids, int *targets, char *err,
                size_t errlen);

// The keyed bijection of [0, n) that orders LM windows within an epoch (a Feistel network
// with cycle walking), and the key of an epoch. Exposed for their tests: training position p
// reads window shuffle_index(p % n, n, shuffle_key(seed, p / n)) of the n windows.
uint64_t shuffle_index(uint64_t i, uint64_t n, uint64_t key);
uint64_t shuffle_key(uint64_t seed, int64_t epoch);
