// Synthetic recall tasks, generated in-process. Example i of a split is a pure function of
// (seed, split, i): any rank can make any example, train and test never share a stream, and
// the global batches do not depend on the number of ranks.
#pragma once
#include <stdint.h>

#include "data_options.h"

// Each split draws its examples from its own stream, so train, test and valid never overlap.
enum { SPLIT_TRAIN = 0, SPLIT_TEST = 1, SPLIT_VALID = 2 };

// word_problem's group (data.group, e.g. "A4xZ5"; data/tasks_state.c): up to 3 factors.
enum { GROUP_MAX_FACTORS = 3, GROUP_MAX_PERM = 7 };
typedef struct {
    char kind;      // 'Z', 'S' or 'A'
    int n;          // Z_n, S_n, A_n
    int64_t codes;  // codes of its elements: n (Z) or n! (S, A: a permutation's rank)
    int64_t order;  // its number of elements
} TaskGroupFactor;
typedef struct {
    int n_factors;
    TaskGroupFactor f[GROUP_MAX_FACTORS];
    int64_t vocab;  // 1 + the product of the codes (token 0: padding)
} TaskGroup;

typedef struct {
    int task;  // DATA_TASK_*
    int T, num_kv_pairs;
    int vocab;       // tokens the task uses (the model's vocab must be at least this)
    int ar_symbols;  // ar: key tokens [0, S)
    int ar_value0;   // ar: value tokens [ar_value0, ar_value0 + S)
    int ar_filler;   // ar: the token every position outside the pairs and the query holds
    int copy_tokens, copy_levels, copy_delay, copy_symbols;                // hcopy
    int noise_vocab_size, k_motif_size, v_motif_size, num_tokens_to_copy;  // MAD tasks
    double frac_noise;
    // state tracking: example lengths (training/validation, test), modulus, group
    int min_len, max_len, test_min_len, test_max_len, modulus, generators, brackets;
    TaskGroup group;
    double power_a;
    uint64_t seed;
    int64_t n_train, n_test, n_valid;
} Task;

Task task_from_options(const DataOptions *o);
const char *task_name(int task);  // data.task's values: "mqar", "ar", "hcopy", MAD's six
// Writes ids[T] and targets[T] (targets < 0 are not scored).
void task_example(const Task *t, int split, int64_t index, int *ids, int *targets);
// The same example, plus levels[T]: the hierarchy level (1..copy_levels) of the token each
// scored position must copy (hcopy; 0 elsewhere and for the other tasks), for accuracy per
// level.
void task_example_levels(const Task *t, int split, int64_t index, int *ids, int *targets,
                         int *levels);

// Tokens example `index` of a split fills before its padding (T for the fixed-length tasks).
int task_example_length(const Task *t, int split, int64_t index);

// Which training example fills position p of the global stream: epochs are deterministic
// shuffles of [0, n_train) keyed by (seed, epoch); n_train = 0 is an endless stream.
typedef struct {
    const Task *task;
    int64_t epoch;  // epoch whose permutation is cached (-1: none)
    int64_t *perm;
} Sampler;

void sampler_init(Sampler *s, const Task *t);
void sampler_free(Sampler *s);
int64_t sampler_example(Sampler *s, int64_t position);
