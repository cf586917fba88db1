#include "data_config.h"

#include <stdio.h>

DataOptions data_options_from_config(const Config *c) {
    DataOptions o = {
        .seed = (uint64_t)c->seed,
        .batch_size = c->batch_size,
        .seq_len = c->seq_len,
        .task = (int)c->task,  // data.task's choices are in DATA_TASK_* order
        .vocab = c->data_vocab,
        .num_kv_pairs = c->num_kv_pairs,
        .ar_symbols = c->ar_symbols,
        .ar_layout = (int)c->ar_layout,
        .copy_tokens = c->copy_tokens,
        .copy_levels = c->copy_levels,
        .copy_delay = c->copy_delay,
        .copy_symbols = c->copy_symbols,
        .power_a = c->power_a,
        .frac_noise = c->frac_noise,
        .noise_vocab_size = c->noise_vocab_size,
        .k_motif_size = c->k_motif_size,
        .v_motif_size = c->v_motif_size,
        .num_tokens_to_copy = c->num_tokens_to_copy,
        .min_len = c->min_len,
        .max_len = c->max_len,
        .test_min_len = c->test_min_len,
        .test_max_len = c->test_max_len,
        .modulus = c->modulus,
        .generators = c->generators,
        .brackets = c->brackets,
        .pack = c->pack,
        .train_examples = c->train_examples,
        .valid_examples = c->valid_examples,
        .test_examples = c->test_examples,
        .eval_stride = c->eval_stride,
        .prefetch = c->prefetch,
        .verify = c->verify_data,
        .hdf5_errors = c->hdf5_errors,
        .crop_pad = c->crop_pad,
        .hflip = c->hflip,
    };
    snprintf(o.path, sizeof(o.path), "%s", c->data_path);
    snprintf(o.eval_split, sizeof(o.eval_split), "%s", c->eval_split);
    snprintf(o.group, sizeof(o.group), "%s", c->group);
    return o;
}
