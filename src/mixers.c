// The mixer table. To add a mixer: write its core op (kernels/cpu/<name>.c, and the CUDA twin
// in kernels/cuda/), register the op in kernels/cpu/ops_table.c, and add one row here.
// The gradient checks, the config parser (model.mixer choices) and the help text pick it up.
#include <stdio.h>
#include <string.h>

#include "model.h"

const MixerInfo MIXERS[] = {
    {"softmax", "attention_softmax", 1, NULL, "causal multi-head softmax attention"},
    {"linear", "attention_linear", 0, NULL,
     "causal linear attention, feature map mixer.feature_map (elu1, relu, ...), chunkwise"},
    {"favor", "attention_linear", 0, "favor",
     "FAVOR+: positive orthogonal random features (mixer.features, mixer.qk_norm)"},
    {"circulant_favor", "attention_linear", 0, "circulant",
     "FAVOR+ with a circulant projection C(r) diag(s) by FFT, r learned, s fixed"},
    {"cosformer", "attention_linear", 0, "cosformer",
     "cosFormer: relu features re-weighted by cos(pi/2 (t-s)/M), M = mixer.max_len"},
    {"loglinear", "attention_loglinear", 0, NULL,
     "log-linear attention: Fenwick buckets with learned per-level weights, any feature map"},
    {"cos_loglinear", "attention_loglinear", 0, "cosformer",
     "log-linear attention with cosFormer features"},
    {"hss", "attention_hss", 0, NULL,
     "linear attention with an HSS state (mixer.hss_rank, mixer.hss_leaf)"},
    {"hydra", "attention_hydra", 0, NULL,
     "causal Hydra attention: heads = channels, cosine kernel (mixer.hydra_norm)"},
};
const int N_MIXERS = sizeof(MIXERS) / sizeof(MIXERS[0]);

int mixer_find(const char *name) {
    for (int i = 0; i < N_MIXERS; i++)
        if (!strcmp(MIXERS[i].name, name)) return i;
    return -1;
}

void mixer_options_from(const Config *c, ModelConfig *mc) {
    mc->feature_map = c->feature_map, mc->normalize = c->normalize, mc->chunk = (int)c->chunk;
    mc->attn_eps = c->attn_eps;
    mc->n_features = (int)c->features, mc->qk_norm = c->qk_norm;
    mc->max_len = (int)(c->max_len ? c->max_len : c->seq_len);
    mc->hss_rank = (int)c->hss_rank, mc->hss_leaf = (int)c->hss_leaf;
    mc->hydra_norm = c->hydra_norm, mc->conv_kernel = (int)c->conv_kernel;
}

void param_spec(ParamInfo *p, const char *name, int rows, int cols, int init) {
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows, p->shape[1] = cols;
    p->size = (size_t)rows * (cols > 0 ? cols : 1);
    p->init = init;
    p->decay = p->ndim == 2;
    p->trainable = 1;
    p->layer = p->index = -1;
}

static int feature_map_index(const char *name) {
    const char *p = FEATURE_MAP_NAMES;
    for (int i = 0; p; i++) {
        size_t n = strcspn(p, "|");
        if (strlen(name) == n && !strncmp(p, name, n)) return i;
        p = strchr(p, '|');
        if (p) p++;
    }
    return -1;
}

OpShape mixer_core_shape(const ModelConfig *cfg, int layer, int B, int T) {
    const char *fixed = MIXERS[cfg->mixer[layer]].feature_map;
    OpShape s = {.B = B,
                 .T = T,
                 .C = cfg->d_model,
                 .H = cfg->n_heads,
                 .eps = cfg->attn_eps,
                 .rope_base = cfg->rope_base,
                 .feature_map = fixed ? feature_map_index(fixed) : cfg->feature_map,
                 .normalize = cfg->normalize,
                 .chunk = cfg->chunk,
                 .n_features = cfg->n_features,
                 .qk_norm = cfg->qk_norm,
                 .max_len = cfg->max_len,
                 .hss_rank = cfg->hss_rank,
                 .hss_leaf = cfg->hss_leaf,
                 .hydra_norm = cfg->hydra_norm,
                 .kernel = cfg->conv_kernel};
    return s;
}

// Every mixer projects x to q|k|v with one matrix and back with W_o (+ the optional gate W_g,
// o = W_o(sigmoid(x W_g) * y), mixers.md section 15), optionally convolves q|k|v over time,
// and adds what its core op declares: a per-token projection W_x (width E from the op's
// input 1) and the op's own parameters.
MixerSlots mixer_slots(const ModelConfig *cfg, int layer) {
    MixerSlots s = {.wqkv = 0, .wo = 1, .wg = -1, .wconv = -1, .wx = -1};
    int n = 2;
    if (cfg->gate) s.wg = n++;
    if (cfg->conv_kernel > 0) s.wconv = n++;
    const OpDef_f32 *op = op_find_f32(MIXERS[cfg->mixer[layer]].core_op);
    OpShape one = mixer_core_shape(cfg, layer, 1, 1);
    if (op->n_in > CORE_IN_XPROJ) {
        size_t in[OP_MAX_IO] = {0}, out[OP_MAX_IO], saved;
        op->sizes(&one, in, out, &saved);
        s.E = (int)in[CORE_IN_XPROJ];
    }
    if (s.E) s.wx = n++;
    OpParam p[OP_MAX_PARAMS];
    s.core = n;
    s.n_core = op->params ? op->params(&one, p) : 0;
    s.n = n + s.n_core;
    return s;
}

int mixer_param_specs(const ModelConfig *cfg, int layer, ParamInfo *out) {
    int C = cfg->d_model;
    MixerSlots s = mixer_slots(cfg, layer);
    param_spec(&out[s.wqkv], "wqkv", 3 * C, C, INIT_NORMAL);
    param_spec(&out[s.wo], "wo", C, C, INIT_NORMAL_RESIDUAL);
    if (s.wg >= 0) param_spec(&out[s.wg], "wg", C, C, INIT_NORMAL);
    // The convolution starts as the identity (all weight on the current token), so a layer
    // with it computes at initialisation exactly what it computes without it.
    if (s.wconv >= 0) param_spec(&out[s.wconv], "wconv", 3 * C, cfg->conv_kernel, INIT_CUSTOM);
    // Zero: the core op's own bias alone sets what the projection feeds at initialisation.
    if (s.wx >= 0) param_spec(&out[s.wx], "wx", s.E, C, INIT_ZEROS);
    OpParam p[OP_MAX_PARAMS];
    OpShape one = mixer_core_shape(cfg, layer, 1, 1);
    const OpDef_f32 *op = op_find_f32(MIXERS[cfg->mixer[layer]].core_op);
    if (s.n_core) op->params(&one, p);
    for (int i = 0; i < s.n_core; i++) {
        ParamInfo *q = &out[s.core + i];
        param_spec(q, p[i].name, p[i].rows, p[i].cols, p[i].init);
        q->init_value = p[i].init_value;
        q->trainable = p[i].trainable, q->decay = p[i].decay, q->redraw = p[i].redraw;
    }
    for (int i = 0; i < s.n; i++) out[i].layer = layer, out[i].index = i;
    return s.n;
}
