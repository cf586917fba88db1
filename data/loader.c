// The loader: the in-process synthetic tasks (examples generated from (seed, split, index)),
// or HDF5 shards through the reader thread when data.path is set.
#include "loader.h"

#include <stdio.h>
#include <stdlib.h>

#include "reader.h"
#include "synthetic.h"
#include "util.h"

struct Loader {
    Reader *shards;  // NULL: in-process task
    Task task;
    Sampler sampler;
    char describe[64];
    char eval_split[64];  // shards: the split evaluated
};

Loader *loader_open(const DataOptions *o, int rank, int world, char *err, size_t errlen) {
    Loader *l = xcalloc(1, sizeof(Loader));
    snprintf(l->eval_split, sizeof(l->eval_split), "%s", o->eval_split);
    if (o->path[0]) {
        l->shards = reader_open(o, rank, world, err, errlen);
        if (!l->shards) {
            free(l);
            return NULL;
        }
        return l;
    }
    l->task = task_from_options(o);
    sampler_init(&l->sampler, &l->task);
    snprintf(l->describe, sizeof(l->describe), "%s (in-process)", task_name(o->task));
    return l;
}

void loader_close(Loader *l) {
    if (!l) return;
    if (l->shards)
        reader_close(l->shards);
    else
        sampler_free(&l->sampler);
    free(l);
}

int loader_vocab(const Loader *l) {
    return l->shards ? reader_vocab(l->shards) : l->task.vocab;
}
int loader_seq_len(const Loader *l) {
    return l->shards ? reader_seq_len(l->shards) : l->task.T;
}
int64_t loader_train_size(const Loader *l) {
    return l->shards ? reader_train_size(l->shards) : l->task.n_train;
}
int64_t loader_eval_size(const Loader *l, EvalSplit split) {
    if (l->shards) return split == EVAL_TEST ? reader_eval_size(l->shards) : 0;
    return split == EVAL_TEST ? l->task.n_test : l->task.n_valid;
}
const char *loader_eval_name(const Loader *l, EvalSplit split) {
    if (l->shards) return l->eval_split;
    return split == EVAL_TEST ? "test" : "valid";
}
int loader_is_lm(const Loader *l) {
    return l->shards && reader_is_lm(l->shards);
}
const char *loader_describe(const Loader *l) {
    return l->shards ? reader_describe(l->shards) : l->describe;
}

int loader_train(Loader *l, int64_t first, int64_t count, int *ids, int *targets, char *err,
                 size_t errlen) {
    if (l->shards) return reader_train(l->shards, first, count, ids, targets, err, errlen);
    int T = l->task.T;
    for (int64_t j = 0; j < count; j++)
        task_example(&l->task, SPLIT_TRAIN, sampler_example(&l->sampler, first + j), ids + j * T,
                     targets + j * T);
    return 0;
}

int loader_eval(Loader *l, EvalSplit split, int64_t first, int64_t count, int *ids, int *targets,
                int *levels, char *err, size_t errlen) {
    int T = loader_seq_len(l);
    if (l->shards) {
        if (levels)
            for (int64_t i = 0; i < count * T; i++) levels[i] = 0;
        return reader_eval(l->shards, first, count, ids, targets, err, errlen);
    }
    int split_id = split == EVAL_TEST ? SPLIT_TEST : SPLIT_VALID;
    for (int64_t j = 0; j < count; j++) {
        if (levels)
            task_example_levels(&l->task, split_id, first + j, ids + j * T, targets + j * T,
                                levels + j * T);
        else
            task_example(&l->task, split_id, first + j, ids + j * T, targets + j * T);
    }
    return 0;
}
