// Where the trainer's sequences come from. One interface for the in-process synthetic tasks
// and HDF5 shards (data.path; data/reader.h), so the trainer never knows which it reads.
//
// The training stream is a global sequence of examples: position p of it is a pure function
// of (seed, p) (epochs are deterministic shuffles), so a rank asking for its slice of global
// batch s reads positions [s*GB + rank*GB/W, ...) and 1 rank and 8 ranks see the same global
// batches. The reader's whole state is that position, which a checkpoint stores: epoch,
// cursor and shuffle key all follow from it and the seed, so a run resumes at any position,
// also on a different number of ranks. The loader functions are called from one thread.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data_options.h"

typedef struct Loader Loader;

// NULL with a message in err when the data cannot be opened.
Loader *loader_open(const DataOptions *o, int rank, int world, char *err, size_t errlen);
void loader_close(Loader *l);
// Image shards (images.h): loader_vocab is the number of classes and loader_seq_len 0.
int loader_vocab(const Loader *l);           // token ids the data uses are < this
int loader_seq_len(const Loader *l);         // T
int64_t loader_train_size(const Loader *l);  // examples per epoch (0 = endless stream)
// The held-out splits: valid (evaluated during training; in-process tasks with
// data.valid_examples > 0) and test (the shards' data.eval_split, or the task's test set).
typedef enum { EVAL_VALID = 0, EVAL_TEST = 1 } EvalSplit;
int64_t loader_eval_size(const Loader *l, EvalSplit split);  // held-out examples
// The split's name for logs and metrics: valid or test, or the shards' data.eval_split.
const char *loader_eval_name(const Loader *l, EvalSplit split);
// 1 when the data is language modelling (every position scored: report perplexity).
int loader_is_lm(const Loader *l);
const char *loader_describe(const Loader *l);  // e.g. "mqar (in-process)", for the log
// data.pack: the streams' positions are packed rows instead of examples. Row r holds whole
// examples, as many as fit in T tokens in stream order, then padding (targets -1), so a row
// is again a pure function of (seed, r) and everything above (global batches, ranks,
// checkpoints, evaluation blocks) is unchanged. The sizes above count rows: an epoch is the
// rows that hold one pass over data.train_examples, counted once at open. pos [count, T] gets
// each token's position in its example (0 opens one; the padding is a segment of its own):
// the model's segments (model_forward_packed).
int loader_packed(const Loader *l);
// Examples (rows, packed) [first, first + count) of the training stream into ids/targets
// [count, T] (targets < 0 are not scored); pos (may be NULL) is filled when packed. 0, or -1
// with err (a read or format error).
int loader_train(Loader *l, int64_t first, int64_t count, int *ids, int *targets, int *pos,
                 char *err, size_t errlen);
// Held-out examples (rows, packed) [first, first + count) of a split. levels (may be NULL):
// [count, T], the hierarchy level or length bucket of each scored position, 0 where there is
// none; pos as for loader_train.
int loader_eval(Loader *l, EvalSplit split, int64_t first, int64_t count, int *ids, int *targets,
                int *levels, int *pos, char *err, size_t errlen);
