// Run configuration. Every key is declared once: the run's own keys in CONFIG_KEYS (config.c),
// the mixers' options (mixer.*) in their rows of the op table (kernels/). The YAML parser, the
// key=value overrides, --help and the resolved config written into the run directory are all
// generated from config_keys(), which joins the two.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../kernels/ops.h"

// KEY_OPTION: a mixer option declared by op rows (OpOption), its text kept in the Config and
// parsed into each layer's option block when the model is built.
typedef enum { KEY_INT, KEY_FLOAT, KEY_BOOL, KEY_STR, KEY_ENUM, KEY_MIXERS, KEY_OPTION } KeyType;
enum { CONFIG_MAX_OPTIONS = 48, CONFIG_OPTION_LEN = 40, MAX_LAYERS = 64 };

typedef struct {
    char run_dir[512], run_name[128];
    int64_t seed;
    // model
    int64_t vocab_size, d_model, n_layers, n_heads, d_ff;
    char mixer[MAX_LAYERS * 24];     // one mixer name, or a comma list with one entry per layer
    char recompute[MAX_LAYERS * 4];  // none, all, or the blocks recomputed in backward: "0,2"
    int mlp, tie_embeddings, rope, gate, pos_embedding;
    int norm, mlp_bias, proj_bias, init_scheme;  // the PyTorch-matching options
    int head;                                    // HEAD_*
    // the ViT path (image data): patch side, pooling, positions, dropout, label smoothing
    int64_t patch;
    int pool, vit_pos;
    double dropout, label_smoothing;
    double rope_base, norm_eps, init_std;
    // mixer layer options; the mixers' own options, as text, in config_keys() order
    int64_t redraw_interval, conv_kernel;
    char mixer_opt[CONFIG_MAX_OPTIONS][CONFIG_OPTION_LEN];
    // data
    int task, ar_layout;
    int64_t seq_len, num_kv_pairs, ar_symbols, train_examples, test_examples, data_vocab;
    int64_t valid_examples;
    int64_t copy_tokens, copy_levels, copy_delay, copy_symbols;  // hcopy
    double power_a, frac_noise;
    int64_t noise_vocab_size, k_motif_size, v_motif_size, num_tokens_to_copy;  // MAD tasks
    int64_t min_len, max_len, test_min_len, test_max_len, modulus;             // state tracking
    char group[32];
    int generators, brackets;
    int pack;  // data.pack: several examples per row (variable-length tasks)
    char data_path[512], eval_split[64];  // shards (empty path: the in-process task)
    // `madtrain eval --dump FILE.h5`: per-position results of the evaluated splits (a command
    // line option, not a config key: it is not written to config.yaml)
    char eval_dump[1024];
    int64_t eval_stride, prefetch;
    int verify_data;
    int64_t crop_pad;  // image shards: data.crop_pad, data.hflip (augmentation)
    int hflip;
    // training
    int64_t batch_size, grad_accum, steps, eval_every, log_every, eval_examples, profile_step;
    double epochs;
    // optimiser
    double lr, min_lr, weight_decay, beta1, beta2, adam_eps, grad_clip;
    int64_t zero;     // optim.zero: 1 = ZeRO-1 (moments sharded across ranks)
    int64_t context;  // parallel.context: ranks per group splitting each sequence (1 = off)
    int64_t warmup_steps;
    int schedule, decay;
    // checkpoints and faults
    int64_t ckpt_every_steps, ckpt_keep, ckpt_keep_every, max_bad_steps, check_replicas_every;
    double ckpt_every_minutes;
    char resume[512], init_from[512];
    int rollback_on_nan, hdf5_errors;
    int64_t debug_nan_at_step, debug_nan_count, debug_fail_at_step, debug_fail_rank;
    int64_t debug_diverge_at_step, debug_stop_at_step, debug_file_size_limit;
    int debug_host_mirrors;
    char debug_inf_param[128];
    // cpu
    int64_t threads;
    // device and communication
    int device, comm_backend, precision;
    double bucket_mb;
} Config;

typedef struct {
    const char *name;
    KeyType type;
    const char *def;      // default, as it would be written in YAML
    const char *choices;  // KEY_ENUM: "a|b|c" (the stored value is the index)
    double lo, hi;        // KEY_INT / KEY_FLOAT: allowed range
    size_t offset;
    size_t size;  // KEY_STR / KEY_MIXERS / KEY_OPTION: buffer size
    const char *doc;
    const OpOption *opt;  // KEY_OPTION: the spec (the first row that declares the key)
    char used_by[160];    // KEY_OPTION: the mixers that read it, for --help
} ConfigKey;

// Every key: the run's own, then (after model.*) one per mixer option name of the op table.
const ConfigKey *config_keys(int *n);
const ConfigKey *config_find_key(const char *name);

// DATA_TASK_* order: MAD's six from TASK_MAD_FIRST, state tracking from TASK_STATE_FIRST
enum { TASK_MQAR = 0, TASK_AR = 1, TASK_HCOPY = 2, TASK_MAD_FIRST = 3, TASK_STATE_FIRST = 9 };
enum { ROPE_AUTO = 0, ROPE_ON = 1, ROPE_OFF = 2 };
enum { SCHEDULE_COSINE = 0, SCHEDULE_CONSTANT = 1 };
enum { NORM_RMSNORM = 0, NORM_LAYERNORM = 1 };
enum { HEAD_LM = 0, HEAD_AUTOENCODER = 1 };          // model.head
enum { VIT_POOL_CLS = 0, VIT_POOL_MEAN = 1 };        // model.pool
enum { VIT_POS_LEARNED = 0, VIT_POS_SINCOS2D = 1 };  // model.pos
enum { INIT_SCHEME_MADTRAIN = 0, INIT_SCHEME_PYTORCH = 1 };
enum { DECAY_MATRICES = 0, DECAY_ALL = 1 };
enum { DEVICE_AUTO = 0, DEVICE_CPU = 1, DEVICE_CUDA = 2 };
enum { COMM_AUTO = 0, COMM_MPI = 1, COMM_NCCL = 2 };
enum { PRECISION_FP32 = 0, PRECISION_BF16 = 1 };

// All return 0, or -1 with one line in err (without the "madtrain: error: " prefix).
void config_defaults(Config *c);
int config_load_file(Config *c, const char *path, char *err, size_t errlen);
int config_load_string(Config *c, const char *yaml, const char *name, char *err, size_t errlen);
int config_set(Config *c, const char *key, const char *value, const char *source, char *err,
               size_t errlen);
int config_override(Config *c, const char *arg, char *err, size_t errlen);  // "key=value"
int config_validate(const Config *c, int world, char *err, size_t errlen);
void config_write_yaml(const Config *c, FILE *f);
// config_write_yaml as a write_file_atomic writer (ctx: the Config): 0, or -1 on a write error.
int config_yaml_writer(FILE *f, void *ctx);
// Keys a resumed run must keep (model shape, mixer, data, seed, global batch).
int config_fixed_on_resume(const char *key);
// Compares a checkpoint's config with this run's: refused (fixed keys that differ) and
// changed (the others) get "key: old -> new" lists; returns the number of refused keys.
int config_diff(const Config *stored, const Config *now, char *refused, size_t rn, char *changed,
                size_t cn);
void config_print_help(FILE *f);
const char *config_enum_name(const char *key, int value);

// model.recompute as per-layer flags (flags[l] = 1: block l is recomputed in backward):
// "none" (or false), "all" (or true), or a comma list of block indices. 0, or -1 with one line.
int config_recompute_layers(const char *value, int n_layers, int *flags, char *err, size_t errlen);
