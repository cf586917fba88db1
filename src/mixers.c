// The mixer table. To add a mixer: write its core op (kernels/cpu/<name>.c, and the CUDA twin
// in kernels/cuda/), register the op in kernels/cpu/ops_table.c, and add one row here.
// The gradient checks, the config parser (model.mixer choices) and the help text pick it up.
#include <stdio.h>
#include <string.h>

#include "model.h"

const MixerInfo MIXERS[] = {
    {"softmax", "attention_softmax", 1, "causal multi-head softmax attention"},
    {"linear", "attention_linear", 0,
     "causal linear attention, feature map elu+1 or relu (mixer.feature_map), chunkwise"},
};
const int N_MIXERS = sizeof(MIXERS) / sizeof(MIXERS[0]);

int mixer_find(const char *name) {
    for (int i = 0; i < N_MIXERS; i++)
        if (!strcmp(MIXERS[i].name, name)) return i;
    return -1;
}

void param_spec(ParamInfo *p, const char *name, int rows, int cols, int init) {
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows, p->shape[1] = cols;
    p->size = (size_t)rows * (cols > 0 ? cols : 1);
    p->init = init;
    p->decay = p->ndim == 2;
}

// Every mixer projects x to q|k|v with one matrix and back with W_o (+ the optional gate W_g,
// o = W_o(sigmoid(x W_g) * y), mixers.md section 15).
int mixer_param_specs(const ModelConfig *cfg, int layer, ParamInfo *out) {
    (void)layer;
    int C = cfg->d_model, n = 0;
    param_spec(&out[n++], "wqkv", 3 * C, C, INIT_NORMAL);
    param_spec(&out[n++], "wo", C, C, INIT_NORMAL_RESIDUAL);
    if (cfg->gate) param_spec(&out[n++], "wg", C, C, INIT_NORMAL);
    return n;
}

OpShape mixer_core_shape(const ModelConfig *cfg, int B, int T) {
    OpShape s = {.B = B, .T = T, .C = cfg->d_model, .H = cfg->n_heads, .eps = cfg->attn_eps,
                 .rope_base = cfg->rope_base, .feature_map = cfg->feature_map,
                 .normalize = cfg->normalize, .chunk = cfg->chunk};
    return s;
}
