// The synthetic-task loader: examples are generated in-process from (seed, split, index).
#include "loader.h"

#include <stdlib.h>

#include "../src/util.h"
#include "synthetic.h"

struct Loader {
    Task task;
    Sampler sampler;
};

Loader *loader_open(const Config *c, int rank, int world, char *err, size_t errlen) {
    (void)rank, (void)world, (void)err, (void)errlen;
    Loader *l = xcalloc(1, sizeof(Loader));
    l->task = task_from_config(c);
    sampler_init(&l->sampler, &l->task);
    return l;
}

void loader_close(Loader *l) {
    if (!l) return;
    sampler_free(&l->sampler);
    free(l);
}

int loader_vocab(const Loader *l) { return l->task.vocab; }
int loader_seq_len(const Loader *l) { return l->task.T; }
int64_t loader_train_size(const Loader *l) { return l->task.n_train; }
int64_t loader_eval_size(const Loader *l) { return l->task.n_test; }

int loader_train(Loader *l, int64_t first, int64_t count, int *ids, int *targets, char *err,
                 size_t errlen) {
    (void)err, (void)errlen;
    int T = l->task.T;
    for (int64_t j = 0; j < count; j++)
        task_example(&l->task, SPLIT_TRAIN, sampler_example(&l->sampler, first + j), ids + j * T,
                     targets + j * T);
    return 0;
}

int loader_eval(Loader *l, int64_t first, int64_t count, int *ids, int *targets, char *err,
                size_t errlen) {
    (void)err, (void)errlen;
    int T = l->task.T;
    for (int64_t j = 0; j < count; j++)
        task_example(&l->task, SPLIT_TEST, first + j, ids + j * T, targets + j * T);
    return 0;
}
