#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../data/tasks_mad.h"
#include "../data/tasks_state.h"
#include "data_config.h"

#define OFF(field) offsetof(Config, field)
#define SZ(field) sizeof(((Config *)0)->field)
#define KEY(name_, type_, def_, choices_, lo_, hi_, off_, size_, doc_)                        \
    {                                                                                         \
        .name = name_, .type = type_, .def = def_, .choices = choices_, .lo = lo_, .hi = hi_, \
        .offset = off_, .size = size_, .doc = doc_                                            \
    }
#define INT(name, def, lo, hi, field, doc) KEY(name, KEY_INT, def, NULL, lo, hi, OFF(field), 0, doc)
#define FLT(name, def, lo, hi, field, doc) \
    KEY(name, KEY_FLOAT, def, NULL, lo, hi, OFF(field), 0, doc)
#define BOOL(name, def, field, doc) KEY(name, KEY_BOOL, def, NULL, 0, 1, OFF(field), 0, doc)
#define ENUM(name, def, choices, field, doc) \
    KEY(name, KEY_ENUM, def, choices, 0, 0, OFF(field), 0, doc)
#define STR(name, def, field, doc) KEY(name, KEY_STR, def, NULL, 0, 0, OFF(field), SZ(field), doc)

static const ConfigKey CONFIG_KEYS[] = {
    STR("run.dir", "runs/default", run_dir,
        "run directory: resolved config, metrics.jsonl, params"),
    STR("run.name", "", run_name, "label of the run in reports (default: its mixer list)"),
    INT("seed", "1234", 0, 9.2e18, seed, "seed of initialisation and data (same on every rank)"),

    INT("model.vocab_size", "0", 0, 1 << 30, vocab_size, "vocabulary size; 0 = the task's"),
    INT("model.d_model", "64", 1, 65536, d_model, "model width C"),
    INT("model.n_layers", "2", 1, MAX_LAYERS, n_layers, "number of blocks L"),
    INT("model.n_heads", "4", 1, 4096, n_heads, "attention heads H (head dim = d_model / n_heads)"),
    INT("model.d_ff", "0", 0, 1 << 20, d_ff, "MLP hidden width; 0 = 4 * d_model"),
    KEY("model.mixer", KEY_MIXERS, "softmax", NULL, 0, 0, OFF(mixer), SZ(mixer),
        "sequence mixer: one name for all layers, or a list with one per layer (hybrids)"),
    STR("model.recompute", "none", recompute,
        "activation checkpointing: none, all, or a list of blocks (\"0,2\") whose activations "
        "are recomputed in backward instead of kept (less memory, one more forward of those "
        "blocks; the gradients are bitwise the same)"),
    ENUM("model.mlp", "gelu", "gelu|swiglu|none|gelu_erf", mlp,
         "MLP of each block: gelu (tanh form, GPT-2's), swiglu, none, or gelu_erf (the erf "
         "form, nn.GELU()'s default)"),
    BOOL("model.tie_embeddings", "true", tie_embeddings, "LM head shares the token embedding"),
    BOOL("model.pos_embedding", "false", pos_embedding,
         "learned absolute position embeddings (data.seq_len rows) added to the token embedding"),
    ENUM("model.rope", "auto", "auto|on|off", rope,
         "rotary positions on q, k (auto: on for mixers that want them, e.g. softmax)"),
    FLT("model.rope_base", "10000", 1, 1e12, rope_base, "rotary base frequency"),
    BOOL("model.gate", "false", gate,
         "post-readout sigmoid output gate o = W_o(sigmoid(x W_g) * y)"),
    ENUM("model.norm", "rmsnorm", "rmsnorm|layernorm", norm,
         "block and final norms: rmsnorm (gain only) or layernorm (gain and bias, nn.LayerNorm)"),
    FLT("model.norm_eps", "1e-5", 0, 1, norm_eps, "RMSNorm / LayerNorm epsilon"),
    BOOL("model.mlp_bias", "false", mlp_bias, "biases on both MLP linears (nn.Linear's default)"),
    BOOL("model.proj_bias", "false", proj_bias,
         "biases on the mixer's q|k|v, output and (with model.gate) gate projections"),
    ENUM("model.head", "lm", "lm|autoencoder", head,
         "lm: next-token head at every position; autoencoder: MAD's encoder-pool-decoder (the "
         "last position's state plus sin-cos positions through a 2-layer GELU MLP, then the head "
         "with a bias) for data.task compression"),
    ENUM("model.init", "madtrain", "madtrain|pytorch", init_scheme,
         "madtrain: N(0, init_std), residual outputs / sqrt(2L), biases 0; pytorch: each layer's "
         "PyTorch default (embeddings N(0,1), Linear weights and biases U(+-1/sqrt(fan_in)))"),
    FLT("model.init_std", "0.02", 0, 10, init_std,
        "std of the normal initialisation (model.init madtrain)"),
    INT("model.patch", "4", 1, 4096, patch,
        "ViT (image data): patch side P; the image's height and width must be multiples of it"),
    ENUM("model.pool", "cls", "cls|mean", pool,
         "ViT: classify from a class token (cls) or from the mean of the patch tokens (mean)"),
    ENUM("model.pos", "learned", "learned|sincos2d", vit_pos,
         "ViT positions: learned [tokens, C], or MAE's fixed 2-D sin-cos (d_model a multiple of "
         "4)"),
    FLT("model.dropout", "0", 0, 0.9, dropout,
        "ViT, training only: dropout on the embedding, each residual branch's output and the MLP "
        "hidden activation (not on attention probabilities)"),

    INT("mixer.redraw_interval", "0", 0, 9.2e18, redraw_interval,
        "steps between redraws of a mixer's random projections (0 = fixed)"),
    INT("mixer.conv_kernel", "0", 0, 1024, conv_kernel,
        "causal depthwise convolution on q, k, v: taps (0 = none)"),

    ENUM("data.task", "mqar",
         "mqar|ar|hcopy|in_context_recall|fuzzy_recall|noisy_recall|selective_copy|"
         "memorization|compression|parity|cumulative_parity|modular_arithmetic|word_problem|"
         "index_copy",
         task,
         "synthetic task: mqar (Zoology multi-query recall), ar (E029 associative recall), "
         "hcopy (E005 hierarchical copying), one of the six MAD tasks, a state-tracking task "
         "or index_copy (docs/tasks.md)"),
    INT("data.seq_len", "64", 2, 1 << 24, seq_len, "sequence length T"),
    INT("data.vocab_size", "64", 4, 1 << 30, data_vocab,
        "mqar and the MAD tasks: vocabulary (special tokens included, as MAD counts)"),
    INT("data.num_kv_pairs", "4", 1, 1 << 20, num_kv_pairs, "key-value pairs per sequence"),
    INT("data.ar_symbols", "16", 2, 1 << 20, ar_symbols,
        "ar: number of key tokens (and of value tokens)"),
    ENUM("data.ar_layout", "disjoint", "disjoint|shared|shared_own_filler|disjoint_filler0",
         ar_layout,
         "ar: disjoint (keys from [0,S), values from [S,2S), filler 2S: vocabulary 2S+1), "
         "shared (keys and values from one set [0,S), filler 0, as the users' PyTorch MVE: "
         "vocabulary S); the two crossings, to tell which of the two differences matters: "
         "shared_own_filler (shared symbols, filler S: vocabulary S+1) and disjoint_filler0 "
         "(disjoint symbols, filler 0: vocabulary 2S)"),
    FLT("data.power_a", "0.01", 1e-6, 1, power_a, "mqar: power-law exponent of query spacing"),
    FLT("data.frac_noise", "0", 0, 0.999, frac_noise,
        "MAD noisy_recall / fuzzy_recall / compression: chance of a noise pair or token"),
    INT("data.noise_vocab_size", "0", 0, 1 << 20, noise_vocab_size,
        "MAD tasks: noise symbols, counted in data.vocab_size"),
    INT("data.k_motif_size", "1", 1, 8, k_motif_size, "MAD fuzzy_recall: longest key motif"),
    INT("data.v_motif_size", "1", 1, 8, v_motif_size, "MAD fuzzy_recall: longest value motif"),
    INT("data.num_tokens_to_copy", "16", 1, 1 << 20, num_tokens_to_copy,
        "MAD selective_copy: tokens to copy"),
    INT("data.min_len", "3", 1, 1 << 24, min_len,
        "state tracking: shortest training/validation example"),
    INT("data.max_len", "40", 1, 1 << 24, max_len,
        "state tracking: longest training/validation example"),
    INT("data.test_min_len", "40", 1, 1 << 24, test_min_len,
        "state tracking: shortest test example (length generalisation)"),
    INT("data.test_max_len", "256", 1, 1 << 24, test_max_len,
        "state tracking: longest test example"),
    INT("data.modulus", "5", 2, 1000, modulus, "modular_arithmetic: the modulus"),
    STR("data.group", "S5", group,
        "word_problem: the group, factors Z<n>, S<n>, A<n> joined by x (S5, A5, Z60, A4xZ5)"),
    BOOL("data.generators", "false", generators,
         "word_problem: inputs are two generators only (the two-generator form)"),
    BOOL("data.brackets", "false", brackets,
         "modular_arithmetic: recursively bracketed expressions, ( and ) as two more tokens"),
    BOOL("data.pack", "false", pack,
         "packed rows: as many whole examples per row as fit, every mixer reset at each example "
         "(parity, cumulative_parity, modular_arithmetic, word_problem)"),
    INT("data.copy_tokens", "8", 1, 1 << 20, copy_tokens, "hcopy: tokens to copy"),
    INT("data.copy_levels", "3", 1, 64, copy_levels, "hcopy: hierarchy levels"),
    INT("data.copy_delay", "4", 0, 1 << 20, copy_delay,
        "hcopy: extra delay per level (level l is copied (l-1) x delay steps later)"),
    INT("data.copy_symbols", "8", 1, 1 << 20, copy_symbols, "hcopy: token symbols per level"),
    INT("data.train_examples", "100000", 0, 9.2e18, train_examples,
        "training set size (0 = an endless stream of fresh examples)"),
    INT("data.valid_examples", "0", 0, 9.2e18, valid_examples,
        "validation set size: evaluated every train.eval_every steps (0 = evaluate the test set)"),
    INT("data.test_examples", "1000", 0, 9.2e18, test_examples, "held-out test set size"),
    STR("data.path", "", data_path,
        "folder of HDF5 shards (docs/data-format.md); empty = the synthetic task above, "
        "in-process"),
    STR("data.eval_split", "valid", eval_split, "shards: the split evaluated (empty = none)"),
    INT("data.eval_stride", "0", 0, 1 << 24, eval_stride,
        "language modelling eval: window stride <= seq_len (0 = seq_len); every token scored once"),
    BOOL("data.verify", "true", verify_data,
         "shards: check checksums and token ids on open (each rank its share of the shards)"),
    INT("data.prefetch", "4", 1, 1024, prefetch, "shards: batches the reader thread reads ahead"),
    INT("data.crop_pad", "0", 0, 4096, crop_pad,
        "image shards: random crop of the training image padded by this many pixels on each "
        "side (padding = the channel mean, 0 after normalisation; 0 = no crop)"),
    BOOL("data.hflip", "false", hflip,
         "image shards: mirror each training image left-right with probability 1/2"),

    INT("train.batch_size", "64", 1, 1 << 30, batch_size,
        "global batch (sequences per step, all ranks)"),
    INT("train.grad_accum", "1", 1, 1 << 20, grad_accum, "micro-steps per optimizer step"),
    INT("train.steps", "1000", 0, 9.2e18, steps, "optimizer steps"),
    FLT("train.epochs", "0", 0, 1e9, epochs, "if > 0: train this many epochs (overrides steps)"),
    FLT("train.label_smoothing", "0", 0, 0.99, label_smoothing,
        "ViT: training loss against targets smoothed toward uniform (evaluation: plain "
        "cross-entropy)"),
    INT("train.eval_every", "200", 0, 9.2e18, eval_every,
        "evaluate every N steps (0 = only at the end)"),
    INT("train.log_every", "50", 1, 9.2e18, log_every, "progress line every N steps"),
    INT("train.profile_step", "0", 0, 9.2e18, profile_step,
        "time step N (1-based) by phase: forward and backward by layer, all-reduce, optimizer"),
    INT("train.eval_examples", "0", 0, 9.2e18, eval_examples,
        "examples per evaluation (0 = whole test set)"),

    FLT("optim.lr", "3e-3", 0, 10, lr, "peak learning rate"),
    FLT("optim.min_lr", "0", 0, 10, min_lr, "final learning rate of the cosine schedule"),
    ENUM("optim.schedule", "cosine", "cosine|constant", schedule,
         "learning-rate schedule after warmup"),
    INT("optim.warmup_steps", "50", 0, 9.2e18, warmup_steps, "linear warmup steps"),
    FLT("optim.weight_decay", "0.1", 0, 10, weight_decay, "AdamW decoupled weight decay"),
    ENUM("optim.decay", "matrices", "matrices|all", decay,
         "what AdamW decays: matrices (not norms, biases, vectors) or every trainable parameter "
         "(torch.optim.AdamW(model.parameters()))"),
    FLT("optim.beta1", "0.9", 0, 0.999999, beta1, "AdamW beta1"),
    FLT("optim.beta2", "0.95", 0, 0.99999999, beta2, "AdamW beta2"),
    FLT("optim.eps", "1e-8", 0, 1, adam_eps, "AdamW epsilon"),
    FLT("optim.grad_clip", "1.0", 0, 1e30, grad_clip, "clip the global gradient norm (0 = off)"),
    INT("optim.zero", "0", 0, 1, zero,
        "1: ZeRO-1, each rank keeps the AdamW moments of its slice of the parameters, gets that "
        "slice's summed gradient and updates it, then the parameters are all-gathered (the "
        "same result bitwise; checkpoints hold the whole state)"),

    INT("checkpoint.every_steps", "0", 0, 9.2e18, ckpt_every_steps,
        "checkpoint every N steps (0 = off)"),
    FLT("checkpoint.every_minutes", "0", 0, 1e9, ckpt_every_minutes,
        "checkpoint every N minutes (0 = off)"),
    INT("checkpoint.keep", "3", 1, 1 << 30, ckpt_keep, "keep the newest K checkpoints"),
    INT("checkpoint.keep_every", "0", 0, 9.2e18, ckpt_keep_every,
        "also keep every M-th step's checkpoint (0 = none)"),
    STR("checkpoint.resume", "", resume,
        "resume from a checkpoint file or run dir; auto = this run dir's latest if any"),
    STR("checkpoint.init_from", "", init_from,
        "warm start: load parameters only from this checkpoint"),
    BOOL("checkpoint.hdf5_errors", "false", hdf5_errors,
         "print HDF5's own error stack too (checkpoints, data shards)"),
    INT("train.max_bad_steps", "10", 1, 1 << 30, max_bad_steps,
        "stop after this many non-finite steps in a row"),
    BOOL("train.rollback_on_nan", "false", rollback_on_nan,
         "after max_bad_steps: reload the last checkpoint and go on instead of stopping"),
    INT("train.check_replicas_every", "100", 0, 9.2e18, check_replicas_every,
        "compare a hash of the parameters across ranks every N steps (0 = off)"),
    INT("debug.nan_at_step", "0", 0, 9.2e18, debug_nan_at_step,
        "testing: poison the gradient at this step"),
    INT("debug.nan_count", "1", 1, 9.2e18, debug_nan_count,
        "testing: poison this many steps in a row"),
    STR("debug.inf_param", "", debug_inf_param,
        "testing: from step debug.nan_at_step on, set this parameter tensor's first element to "
        "+Inf instead of poisoning the gradient (the forward then overflows in its layer)"),
    INT("debug.stop_at_step", "0", 0, 9.2e18, debug_stop_at_step,
        "testing: act as if SIGUSR1 arrived after this many steps"),
    INT("debug.file_size_limit", "0", 0, 9.2e18, debug_file_size_limit,
        "testing: largest file (bytes) this process may write, as a full disk would (0 = off)"),
    INT("debug.fail_at_step", "0", 0, 9.2e18, debug_fail_at_step,
        "testing: rank debug.fail_rank fails at this step"),
    INT("debug.fail_rank", "0", 0, 1 << 30, debug_fail_rank, "testing: the rank that fails"),
    INT("debug.diverge_at_step", "0", 0, 9.2e18, debug_diverge_at_step,
        "testing: the last rank perturbs its parameters at this step"),

    BOOL("debug.host_mirrors", "false", debug_host_mirrors,
         "testing: separate host copies of parameters and moments on the cpu, as on a GPU"),
    INT("cpu.threads", "0", 0, 4096, threads, "threads per rank (0 = cores / ranks on the node)"),
    ENUM("device", "auto", "auto|cpu|cuda", device,
         "where the model trains (auto: cuda when a GPU is visible and built in, else cpu)"),
    ENUM("precision", "fp32", "fp32|bf16", precision,
         "cuda matrix products: fp32, or bf16 tensor cores with fp32 accumulation "
         "(parameters, optimizer state, loss and norms stay fp32)"),
    ENUM("comm.backend", "auto", "auto|mpi|nccl", comm_backend,
         "gradient all-reduce: nccl (device buffers) or mpi (host-staged); auto: nccl on cuda "
         "when every rank has a GPU of its own, else mpi"),
    INT("parallel.context", "1", 1, 4096, context,
        "context parallelism: groups of N consecutive ranks split every sequence into N slices "
        "of data.seq_len / N tokens, passing the mixers' states along the group (the linear "
        "family; 1 = off); ranks / N groups share the batch"),
    FLT("comm.bucket_mb", "25", 0.001, 1e6, bucket_mb,
        "gradient all-reduce bucket size in MB, each launched as soon as backward finishes it"),
};
enum { N_RUN_KEYS = sizeof(CONFIG_KEYS) / sizeof(CONFIG_KEYS[0]) };

// The full key table: the run's keys with the mixers' options inserted after the model.*
// keys, one per option name. A name several rows declare (the linear family's feature_map)
// must be declared alike; the first row's spec and help stand, and --help lists the mixers
// that read it.
static ConfigKey ALL_KEYS[N_RUN_KEYS + CONFIG_MAX_OPTIONS];
static int N_ALL_KEYS;

static int same_spec(const OpOption *a, const OpOption *b) {
    return a->type == b->type && !strcmp(a->def, b->def) && a->lo == b->lo && a->hi == b->hi &&
           a->flags == b->flags &&
           !strcmp(a->choices ? a->choices : "", b->choices ? b->choices : "");
}

static void build_keys(void) {
    int n = 0, n_opt = 0, i = 0;
    for (; i < N_RUN_KEYS && strncmp(CONFIG_KEYS[i].name, "mixer.", 6); i++)
        ALL_KEYS[n++] = CONFIG_KEYS[i];
    for (int r = 0; r < N_OPS_f32; r++) {
        const OpDef_f32 *op = OPS_f32[r];
        for (const OpOption *o = op->options; op->mixer && o && o->key; o++) {
            char name[64];
            snprintf(name, sizeof(name), "mixer.%s", o->key);
            ConfigKey *k = NULL;
            for (int j = 0; j < n; j++)
                if (!strcmp(ALL_KEYS[j].name, name)) k = &ALL_KEYS[j];
            if (k && !same_spec(k->opt, o)) {
                fprintf(stderr,
                        "madtrain: internal error: option %s is declared differently by %s\n", name,
                        op->name);
                abort();
            }
            if (!k) {
                if (n_opt == CONFIG_MAX_OPTIONS) {
                    fprintf(stderr, "madtrain: internal error: more than %d mixer options\n",
                            CONFIG_MAX_OPTIONS);
                    abort();
                }
                k = &ALL_KEYS[n++];
                char *key_name = malloc(strlen(name) + 1);  // lives as long as the process
                strcpy(key_name, name);
                *k = (ConfigKey)KEY(key_name, KEY_OPTION, o->def, o->choices, o->lo, o->hi,
                                    OFF(mixer_opt) + (size_t)n_opt++ * CONFIG_OPTION_LEN,
                                    CONFIG_OPTION_LEN, o->help);
                k->opt = o;
            }
            snprintf(k->used_by + strlen(k->used_by), sizeof(k->used_by) - strlen(k->used_by),
                     "%s%s", k->used_by[0] ? "," : "", op->name);
        }
    }
    for (; i < N_RUN_KEYS; i++) ALL_KEYS[n++] = CONFIG_KEYS[i];
    N_ALL_KEYS = n;
}

const ConfigKey *config_keys(int *n) {
    if (!N_ALL_KEYS) build_keys();
    *n = N_ALL_KEYS;
    return ALL_KEYS;
}

const ConfigKey *config_find_key(const char *name) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

// The closest key: by edit distance on the full name, or on the part after the section
// (so "lr" or "model.lr" finds "optim.lr").
static const char *closest_key(const char *name) {
    const char *best = NULL;
    int best_d = 1 << 30;
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    int n_keys;
    const ConfigKey *keys = config_keys(&n_keys);
    for (int i = 0; i < n_keys; i++) {
        const char *k = keys[i].name, *kleaf = strrchr(k, '.');
        kleaf = kleaf ? kleaf + 1 : k;
        int d = edit_distance(name, k), dl = edit_distance(leaf, kleaf) + 1;
        if (dl < d) d = dl;
        if (d < best_d) best_d = d, best = k;
    }
    return best_d <= 3 ? best : NULL;
}

const char *config_enum_name(const char *key, int value) {
    static char buf[64];
    const ConfigKey *k = config_find_key(key);
    const char *p = k->choices;
    for (int i = 0; i < value && p; i++) p = strchr(p, '|'), p = p ? p + 1 : NULL;
    size_t n = p ? strcspn(p, "|") : 0;
    snprintf(buf, sizeof(buf), "%.*s", (int)n, p ? p : "");
    return buf;
}

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as libyaml's
// reader demands: a YAML file's values always are, a command-line value may not be, and
// libyaml's emitter does not check its input (invalid bytes made config_write_yaml loop).
static int utf8_valid(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, n = c < 0x80                 ? 0
                             : c >= 0xC2 && c <= 0xDF ? 1
                             : (c & 0xF0) == 0xE0     ? 2
                             : c >= 0xF0 && c <= 0xF4 ? 3
                                                      : 4;
        if (n == 4) return 0;
        uint32_t cp = n ? c & (0x3F >> n) : c;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        s += n + 1;
    }
    return 1;
}

static const char *type_name(const ConfigKey *k) {
    switch (k->type) {
        case KEY_INT:
            return "int";
        case KEY_FLOAT:
            return "float";
        case KEY_BOOL:
            return "bool";
        case KEY_STR:
            return "string";
        case KEY_ENUM:
            return k->choices;
        case KEY_MIXERS:
            return "mixer list";
        case KEY_OPTION:
            return k->opt->type == OPT_ENUM    ? k->choices
                   : k->opt->type == OPT_INT   ? "int"
                   : k->opt->type == OPT_FLOAT ? "float"
                                               : "bool";
    }
    return "?";
}

int config_set(Config *c, const char *name, const char *value, const char *source, char *err,
               size_t errlen) {
    const ConfigKey *k = config_find_key(name);
    if (!k) {
        const char *near = closest_key(name);
        if (near)
            snprintf(err, errlen, "%s: unknown key '%s' (did you mean '%s'?)", source, name, near);
        else
            snprintf(err, errlen, "%s: unknown key '%s' (madtrain --help lists the keys)", source,
                     name);
        return -1;
    }
    char *field = (char *)c + k->offset, *end = NULL;
    errno = 0;
    switch (k->type) {
        case KEY_INT: {
            double d = strtod(value, &end);
            if (!*value || *end || errno || d != floor(d)) {
                snprintf(err, errlen, "%s: key '%s' expects an integer, got '%s'", source, name,
                         value);
                return -1;
            }
            if (d < k->lo || d > k->hi) {
                snprintf(err, errlen, "%s: key '%s' = %s is out of range [%.15g, %.15g]", source,
                         name, value, k->lo, k->hi);
                return -1;
            }
            *(int64_t *)field = (int64_t)d;
            return 0;
        }
        case KEY_FLOAT: {
            double d = strtod(value, &end);
            if (!*value || *end || errno || !isfinite(d)) {
                snprintf(err, errlen, "%s: key '%s' expects a number, got '%s'", source, name,
                         value);
                return -1;
            }
            if (d < k->lo || d > k->hi) {
                snprintf(err, errlen, "%s: key '%s' = %s is out of range [%.15g, %.15g]", source,
                         name, value, k->lo, k->hi);
                return -1;
            }
            *(double *)field = d;
            return 0;
        }
        case KEY_BOOL: {
            int v = op_choice_index("false|true|no|yes|off|on|0|1", value);
            if (v < 0) {
                snprintf(err, errlen, "%s: key '%s' expects true or false, got '%s'", source, name,
                         value);
                return -1;
            }
            *(int *)field = v % 2;
            return 0;
        }
        case KEY_ENUM: {
            int v = op_choice_index(k->choices, value);
            if (v < 0) {
                snprintf(err, errlen, "%s: key '%s' expects one of %s, got '%s'", source, name,
                         k->choices, value);
                return -1;
            }
            *(int *)field = v;
            return 0;
        }
        case KEY_OPTION: {  // validated by the op's own parser, stored as the text given
            unsigned char block[OP_OPT_BYTES];
            if (op_option_parse(k->opt, value, block, err, errlen)) {
                size_t n = strlen(err) + 1, m = strlen(source) + 2;  // prefix the source
                if (n + m < errlen) {
                    memmove(err + m, err, n);
                    memcpy(err, source, m - 2), err[m - 2] = ':', err[m - 1] = ' ';
                }
                return -1;
            }
            // Stored in the canonical spelling (1e-6 and 0.000001 compare equal on resume).
            op_option_format(k->opt, block, field, k->size);
            return 0;
        }
        case KEY_MIXERS: {
            char *buf = malloc(strlen(value) + 1);
            strcpy(buf, value);
            int bad = 0;
            for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok && !bad;
                 tok = strtok_r(NULL, ", ", &save))
                if (!op_find_f32(tok) || !op_find_f32(tok)->mixer) {
                    char names[2048] = "";
                    for (int i = 0; i < N_OPS_f32; i++)
                        if (OPS_f32[i]->mixer)
                            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                                     names[0] ? "|" : "", OPS_f32[i]->name);
                    snprintf(err, errlen, "%s: key '%s' expects mixers from %s, got '%s'", source,
                             name, names, tok);
                    bad = 1;
                }
            free(buf);
            if (bad) return -1;
        }  // fall through: stored as text, split per layer when the model is built
        /* FALLTHROUGH */
        case KEY_STR:
            if (!utf8_valid(value)) {
                snprintf(err, errlen, "%s: key '%s' value is not valid UTF-8", source, name);
                return -1;
            }
            if (strlen(value) >= k->size) {
                snprintf(err, errlen, "%s: key '%s' value is longer than %zu characters", source,
                         name, k->size - 1);
                return -1;
            }
            snprintf(field, k->size, "%s", value);
            return 0;
    }
    return -1;
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof(*c));
    char err[256];
    int n_keys;
    const ConfigKey *keys = config_keys(&n_keys);
    for (int i = 0; i < n_keys; i++)
        if (config_set(c, keys[i].name, keys[i].def, "defaults", err, sizeof(err))) {
            fprintf(stderr, "madtrain: internal error: %s\n", err);
            abort();
        }
}

int config_override(Config *c, const char *arg, char *err, size_t errlen) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        snprintf(err, errlen, "command line: '%s' is not key=value", arg);
        return -1;
    }
    char key[128];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - arg), arg);
    return config_set(c, key, eq + 1, "command line", err, errlen);
}

// Whether name is one of the comma-separated list's entries.
static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && !strncmp(p, name, n)) return 1;
        p += k + (p[k] == ',');
    }
    return 0;
}

// A mixer option set away from its default that no layer's mixer reads (a negative-eigenvalue
// flag on a mixer without one, mamba2's d_state on linear attention) is refused: it would
// otherwise be silently ignored.
static int check_mixer_options(const Config *c, char *err, size_t errlen) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        const ConfigKey *k = &keys[i];
        if (k->type != KEY_OPTION) continue;
        unsigned char block[OP_OPT_BYTES];
        char def[CONFIG_OPTION_LEN], e[128];
        if (op_option_parse(k->opt, k->opt->def, block, e, sizeof(e))) continue;
        op_option_format(k->opt, block, def, sizeof(def));
        const char *value = (const char *)c + k->offset;
        if (!strcmp(value, def)) continue;
        int read = 0;
        for (const char *p = c->mixer; *p && !read;) {
            size_t len = strcspn(p, ",");
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(len < 63 ? len : 63), p);
            read = in_list(k->used_by, name);
            p += len + (p[len] == ',');
        }
        if (!read) {
            snprintf(err, errlen, "%s = %s: model.mixer %s does not read it (an option of %s)",
                     k->name, value, c->mixer, k->used_by);
            return -1;
        }
    }
    return 0;
}

int config_validate(const Config *c, int world, char *err, size_t errlen) {
    if (check_mixer_options(c, err, errlen)) return -1;
    if (c->min_lr > c->lr) {
        snprintf(err, errlen,
                 "optim.min_lr (%g) is above optim.lr (%g): the schedule would climb, not decay",
                 c->min_lr, c->lr);
        return -1;
    }
    if (c->d_model % c->n_heads) {
        snprintf(err, errlen, "model.d_model (%lld) must be a multiple of model.n_heads (%lld)",
                 (long long)c->d_model, (long long)c->n_heads);
        return -1;
    }
    if (world % c->context) {
        snprintf(err, errlen,
                 "parallel.context (%lld) must divide the number of ranks (%d): each group of "
                 "that many ranks splits its sequences",
                 (long long)c->context, world);
        return -1;
    }
    if (c->context > 1 && c->pack) {
        snprintf(err, errlen,
                 "parallel.context > 1 does not split packed rows (data.pack: true): their "
                 "examples would cross slices; set data.pack: false");
        return -1;
    }
    if (c->context > 1 && c->head == HEAD_AUTOENCODER) {
        snprintf(err, errlen,
                 "parallel.context > 1: model.head autoencoder pools over the whole sequence; "
                 "use model.head: lm");
        return -1;
    }
    int groups = world / (int)c->context;  // data-parallel replicas
    int64_t per = groups * c->grad_accum;
    if (c->batch_size % per) {
        if (c->context > 1)
            snprintf(err, errlen,
                     "train.batch_size (%lld) must be a multiple of context groups x "
                     "train.grad_accum (%d x %lld)",
                     (long long)c->batch_size, groups, (long long)c->grad_accum);
        else
            snprintf(err, errlen,
                     "train.batch_size (%lld) must be a multiple of ranks x train.grad_accum (%d "
                     "x %lld)",
                     (long long)c->batch_size, world, (long long)c->grad_accum);
        return -1;
    }
    if (!c->data_path[0] && (c->crop_pad > 0 || c->hflip)) {
        snprintf(err, errlen,
                 "data.crop_pad and data.hflip augment image shards (data.path of `madtrain prep "
                 "images`); the in-process tasks have no images");
        return -1;
    }
    if (c->data_path[0]) {
        // Shards: the synthetic-task keys below are not used.
        if (c->valid_examples > 0) {
            snprintf(err, errlen,
                     "data.valid_examples is for the in-process tasks; with data.path the "
                     "held-out split is data.eval_split");
            return -1;
        }
    } else if (c->task == TASK_MQAR) {
        if (c->seq_len < 4 * c->num_kv_pairs) {
            snprintf(err, errlen,
                     "data.seq_len (%lld) must be at least 4 x data.num_kv_pairs (%lld)",
                     (long long)c->seq_len, (long long)c->num_kv_pairs);
            return -1;
        }
        if (c->num_kv_pairs > c->data_vocab / 2 - 1) {
            snprintf(err, errlen,
                     "data.num_kv_pairs (%lld) must be below data.vocab_size / 2 (%lld): keys are "
                     "distinct tokens of the lower half",
                     (long long)c->num_kv_pairs, (long long)c->data_vocab / 2);
            return -1;
        }
    } else if (c->task >= TASK_STATE_FIRST) {
        DataOptions o = data_options_from_config(c);
        if (state_task_check(&o, task_name(o.task), err, errlen)) return -1;
    } else if (c->task >= TASK_MAD_FIRST) {
        DataOptions o = data_options_from_config(c);
        if (mad_task_check(&o, task_name(o.task), err, errlen)) return -1;
        if (o.task == DATA_TASK_COMPRESSION && c->head != HEAD_AUTOENCODER) {
            snprintf(err, errlen,
                     "data.task compression needs model.head: autoencoder (read at every "
                     "position, the task is the identity)");
            return -1;
        }
    } else if (c->task == TASK_HCOPY) {
        int64_t need = 2 * c->copy_tokens + 1 + (c->copy_levels - 1) * c->copy_delay;
        if (c->seq_len < need) {
            snprintf(err, errlen,
                     "data.seq_len (%lld) must be at least 2 x data.copy_tokens + 1 + "
                     "(data.copy_levels - 1) x data.copy_delay = %lld",
                     (long long)c->seq_len, (long long)need);
            return -1;
        }
    } else {
        if (c->num_kv_pairs > c->ar_symbols) {
            snprintf(err, errlen, "data.num_kv_pairs (%lld) must be at most data.ar_symbols (%lld)",
                     (long long)c->num_kv_pairs, (long long)c->ar_symbols);
            return -1;
        }
        if (c->seq_len < 2 * c->num_kv_pairs + 1) {
            snprintf(err, errlen, "data.seq_len (%lld) must be at least 2 x data.num_kv_pairs + 1",
                     (long long)c->seq_len);
            return -1;
        }
    }
    if (c->pack) {
        // Packing pays where examples are shorter than the row: the variable-length tasks.
        // Shards carry no example boundaries, and MAD's decoder reads one example per row.
        int variable =
            !c->data_path[0] && c->task >= TASK_STATE_FIRST && c->task != DATA_TASK_INDEX_COPY;
        if (!variable) {
            snprintf(err, errlen,
                     "data.pack needs an in-process task with variable-length examples (parity, "
                     "cumulative_parity, modular_arithmetic, word_problem)%s",
                     c->data_path[0] ? "; data.path shards carry no example boundaries" : "");
            return -1;
        }
        if (c->head == HEAD_AUTOENCODER) {
            snprintf(err, errlen,
                     "data.pack is for model.head lm (the autoencoder pools one example per row)");
            return -1;
        }
    }
    int layers = 0;
    for (const char *p = c->mixer; *p;) {  // names separated by commas or spaces
        p += strspn(p, ", ");
        if (*p) layers++;
        p += strcspn(p, ", ");
    }
    if (layers != 1 && layers != c->n_layers) {
        snprintf(err, errlen, "model.mixer lists %d mixers but model.n_layers is %lld", layers,
                 (long long)c->n_layers);
        return -1;
    }
    int flags[MAX_LAYERS];
    return config_recompute_layers(c->recompute, (int)c->n_layers, flags, err, errlen);
}

int config_recompute_layers(const char *value, int n_layers, int *flags, char *err, size_t errlen) {
    int all = !strcmp(value, "all") || !strcmp(value, "true");
    for (int l = 0; l < n_layers; l++) flags[l] = all;
    if (all || !strcmp(value, "none") || !strcmp(value, "false") || !value[0]) return 0;
    for (const char *p = value; *p;) {
        p += strspn(p, ", ");
        if (!*p) break;
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || (*end && !strchr(", ", *end)) || l < 0 || l >= n_layers) {
            snprintf(err, errlen,
                     "model.recompute '%s': expected none, all or block indices 0..%d separated "
                     "by commas",
                     value, n_layers - 1);
            return -1;
        }
        flags[l] = 1;
        p = end;
    }
    return 0;
}

static void format_value(const Config *c, const ConfigKey *k, char *out, size_t n) {
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
        case KEY_INT:
            snprintf(out, n, "%lld", (long long)*(const int64_t *)field);
            break;
        case KEY_FLOAT:
            snprintf(out, n, "%.17g", *(const double *)field);
            break;
        case KEY_BOOL:
            snprintf(out, n, "%s", *(const int *)field ? "true" : "false");
            break;
        case KEY_ENUM:
            snprintf(out, n, "%s", config_enum_name(k->name, *(const int *)field));
            break;
        case KEY_STR:
            snprintf(out, n, "\"%s\"", field);
            break;
        case KEY_MIXERS:
            snprintf(out, n, "[%s]", field);
            break;
        case KEY_OPTION:
            snprintf(out, n, "%s", field);
            break;
    }
}

int config_fixed_on_resume(const char *key) {
    // Memory, not math: a run that no longer fits may resume with more blocks recomputed.
    if (!strcmp(key, "model.recompute")) return 0;
    static const char *fixed[] = {"model.", "mixer.", "data.", "seed", "train.batch_size"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (!strncmp(key, fixed[i], strlen(fixed[i]))) return 1;
    return 0;
}

int config_diff(const Config *stored, const Config *now, char *refused, size_t rn, char *changed,
                size_t cn) {
    int n_refused = 0;
    refused[0] = changed[0] = 0;
    int n_keys;
    const ConfigKey *keys = config_keys(&n_keys);
    for (int i = 0; i < n_keys; i++) {
        const ConfigKey *k = &keys[i];
        if (!strncmp(k->name, "checkpoint.", 11) || !strncmp(k->name, "run.", 4)) continue;
        char a[2048], b[2048];
        format_value(stored, k, a, sizeof(a));
        format_value(now, k, b, sizeof(b));
        if (!strcmp(a, b)) continue;
        int fixed = config_fixed_on_resume(k->name);
        char *out = fixed ? refused : changed;
        size_t n = fixed ? rn : cn;
        snprintf(out + strlen(out), n - strlen(out), "%s%s: %s -> %s", out[0] ? ", " : "", k->name,
                 a, b);
        n_refused += fixed;
    }
    return n_refused;
}

void config_print_help(FILE *f) {
    fprintf(f, "Config keys (YAML file via --config, or key=value on the command line):\n");
    int n_keys;
    const ConfigKey *keys = config_keys(&n_keys);
    for (int i = 0; i < n_keys; i++) {
        const ConfigKey *k = &keys[i];
        fprintf(f, "  %-22s %-18s default %-14s %s", k->name, type_name(k), k->def, k->doc);
        if (k->type == KEY_OPTION) fprintf(f, " [%s]", k->used_by);
        fprintf(f, "\n");
    }
}
