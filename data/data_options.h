// What data/ needs to know of a run: the data.* keys, the seed and the global batch. The
// trainer fills it from its config (src/data_config.c), so data/ depends on nothing above it.
#pragma once
#include <stdint.h>

// data.task: the in-process synthetic tasks (data/synthetic.h).
// In data.task's order: then the six MAD tasks (data/tasks_mad.c), then state tracking.
enum {
    DATA_TASK_MQAR = 0,
    DATA_TASK_AR = 1,
    DATA_TASK_HCOPY = 2,
    DATA_TASK_IN_CONTEXT_RECALL = 3,
    DATA_TASK_FUZZY_RECALL = 4,
    DATA_TASK_NOISY_RECALL = 5,
    DATA_TASK_SELECTIVE_COPY = 6,
    DATA_TASK_MEMORIZATION = 7,
    DATA_TASK_COMPRESSION = 8,
    DATA_TASK_PARITY = 9,  // the state-tracking tasks and index copy (data/tasks_state.c)
    DATA_TASK_CUMULATIVE_PARITY = 10,
    DATA_TASK_MODULAR_ARITHMETIC = 11,
    DATA_TASK_WORD_PROBLEM = 12,
    DATA_TASK_INDEX_COPY = 13,
};
// ar's token layouts, in data.ar_layout's order: where the values and the filler lie.
enum {
    AR_LAYOUT_DISJOINT = 0,           // keys [0,S), values [S,2S), filler 2S
    AR_LAYOUT_SHARED = 1,             // keys and values [0,S), filler 0 (the users' MVE)
    AR_LAYOUT_SHARED_OWN_FILLER = 2,  // keys and values [0,S), filler S
    AR_LAYOUT_DISJOINT_FILLER0 = 3,   // keys [0,S), values [S,2S), filler 0
};

typedef struct {
    uint64_t seed;       // every example and the training order follow from it
    int64_t batch_size;  // global batch: training-stream positions one step consumes
    int64_t seq_len;     // T (shards of sequences fix their own, which must agree)
    // The in-process task (data.path empty).
    int task;       // DATA_TASK_*
    int64_t vocab;  // mqar and the MAD tasks: the vocabulary (data.vocab_size)
    int64_t num_kv_pairs, ar_symbols;
    int ar_layout;  // ar: AR_LAYOUT_* (data.ar_layout), where values and the filler lie
    int64_t copy_tokens, copy_levels, copy_delay, copy_symbols;  // hcopy
    double power_a;                                              // mqar query spacing
    // MAD tasks, under MAD's own names: noise tokens (the last noise_vocab_size symbols before
    // any special token) and the chance of a noise pair/token, fuzzy_recall's longest key and
    // value motifs, selective_copy's tokens to copy.
    double frac_noise;
    int64_t noise_vocab_size, k_motif_size, v_motif_size, num_tokens_to_copy;
    // State tracking (data/tasks_state.c): lengths of training/validation and of test
    // examples, the modulus, the group by name and its two-generator form.
    int64_t min_len, max_len, test_min_len, test_max_len, modulus;
    char group[32];
    int generators;
    int brackets;  // modular_arithmetic: bracketed expressions
    // Packed rows: each row holds as many whole examples as fit, in stream order (the loader
    // also hands out each token's position in its example; data/loader.h).
    int pack;
    int64_t train_examples, valid_examples, test_examples;  // 0 train: an endless stream
    // Shards (data.path set; data/reader.h).
    char path[512], eval_split[64];
    int64_t eval_stride;  // LM evaluation stride (0: T)
    int64_t prefetch;     // batches the reader thread reads ahead
    int verify;           // checksum and range-check every shard once at open
    int hdf5_errors;      // print HDF5's own error stack too
    // Image shards (data/images.h): training augmentation, a pure function of (seed, position).
    int64_t crop_pad;  // random crop of the image zero-padded (after normalisation) by this
    int hflip;         // random horizontal flip
} DataOptions;
