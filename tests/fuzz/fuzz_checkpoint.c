// Checkpoint load (src/checkpoint.c). Input: the bytes of one ckpt-<step>.h5. The model is
// the tiny one of tests/fuzz/tiny.yaml (the seeds are its checkpoints, made by
// tests/fuzz/make_seeds.sh); the file goes through every reader a resume or warm start uses:
// the stored config alone, the full read (state, config, parameters, moments), and the
// by-name parameter load.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/checkpoint.h"
#include "../../src/train.h"
#include "fuzz_util.h"

// Keep in step with tests/fuzz/tiny.yaml.
static const char TINY_YAML[] =
    "seed: 1\n"
    "model: {mixer: softmax, d_model: 8, n_layers: 1, n_heads: 2, mlp: none}\n"
    "data: {task: mqar, seq_len: 16, vocab_size: 16, num_kv_pairs: 2, train_examples: 0,\n"
    "       test_examples: 8}\n";

static Model_f32 model;
static float *params, *adam_m, *adam_v;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    static Config cfg;
    ModelConfig mc;
    char err[1024];
    config_defaults(&cfg);
    if (config_load_string(&cfg, TINY_YAML, "tiny.yaml", err, sizeof(err)) ||
        model_config_from(&cfg, (int)cfg.data_vocab, (int)cfg.seq_len, &mc, err, sizeof(err)) ||
        model_build_f32(&model, &mc, &BACKEND_CPU_f32, err, sizeof(err))) {
        fprintf(stderr, "fuzz_checkpoint: cannot build the tiny model: %s\n", err);
        abort();
    }
    params = calloc(model.n_params, sizeof(float));
    adam_m = calloc(model.n_params, sizeof(float));
    adam_v = calloc(model.n_params, sizeof(float));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_hdf5_known_hang(data, size)) return 0;
    const char *path = fuzz_path(0, "ckpt-2.h5");
    fuzz_write(path, data, size);
    static Config stored;
    TrainState st;
    char err[2048];
    checkpoint_read_config(path, &stored, err, sizeof(err));
    checkpoint_read(path, &model, params, adam_m, adam_v, &st, &stored, err, sizeof(err));
    checkpoint_load_params(path, &model, params, err, sizeof(err));
    return 0;
}
