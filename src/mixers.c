// The mixer layer's glue to the op table: which row a layer's mixer is, its option block from
// the config, and the parameter table of the layer (the shared projections plus whatever the
// row declares). Nothing here names a mixer: everything comes from the rows.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int mixer_find(const char *name) {
    for (int i = 0; i < N_OPS_f32; i++)
        if (OPS_f32[i]->mixer && !strcmp(OPS_f32[i]->name, name)) return i;
    return -1;
}

void mixer_options_from(const Config *c, ModelConfig *mc) {
    mc->conv_kernel = (int)c->conv_kernel;  // the layer's own option, for every mixer
    mc->seq_len = (int)c->seq_len;
    for (int l = 0; l < mc->n_layers; l++) {
        const OpDef_f32 *row = OPS_f32[mc->mixer[l]];
        OpShape *s = &mc->core_opts[l];
        char overrides[CONFIG_MAX_OPTIONS * (CONFIG_OPTION_LEN + 64)] = "", err[256];
        for (const OpOption *o = row->options; o && o->key; o++) {
            char key[80];
            snprintf(key, sizeof(key), "mixer.%s", o->key);
            const ConfigKey *k = config_find_key(key);
            snprintf(overrides + strlen(overrides), sizeof(overrides) - strlen(overrides), "%s=%s ",
                     o->key, (const char *)c + k->offset);
        }
        // The values were validated when the config was read; a failure here is a bug.
        if (op_options_apply(row->options, row->fixed, overrides, (int)c->seq_len, s, err,
                             sizeof(err))) {
            fprintf(stderr, "madtrain: internal error: %s\n", err);
            abort();
        }
    }
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

void param_linear(ParamInfo *p, const ModelConfig *cfg, const char *name, int rows, int cols,
                  int madtrain_init) {
    int pytorch = cfg->init_scheme == INIT_SCHEME_PYTORCH;
    param_spec(p, name, rows, cols, pytorch ? INIT_UNIFORM : madtrain_init);
    // kaiming_uniform_(a = sqrt(5)) as nn.Linear.reset_parameters calls it: gain sqrt(1/3)
    // times sqrt(3 / fan_in) is 1/sqrt(fan_in).
    if (pytorch) p->init_value = 1.0 / sqrt((double)cols);
}

void param_bias(ParamInfo *p, const ModelConfig *cfg, const char *name, int rows, int fan_in) {
    int pytorch = cfg->init_scheme == INIT_SCHEME_PYTORCH;
    param_spec(p, name, rows, 0, pytorch ? INIT_UNIFORM : INIT_ZEROS);
    if (pytorch) p->init_value = 1.0 / sqrt((double)fan_in);
}

OpShape mixer_core_shape(const ModelConfig *cfg, int layer, int B, int T) {
    OpShape s = cfg->core_opts[layer];
    s.B = B, s.T = T, s.C = cfg->d_model, s.H = cfg->n_heads, s.rope_base = cfg->rope_base;
    s.pos0 = cfg->cp.pos0;  // a context-parallel slice starts at pos0 of its sequences
    return s;
}

// Every mixer projects x to q|k|v with one matrix and back with W_o (+ the optional gate W_g,
// o = W_o(sigmoid(x W_g) * y), mixers.md section 15), optionally convolves q|k|v over time,
// and adds what its core op declares: a per-token projection W_x (width E from the op's
// input 1) and the op's own parameters. A core whose input 0 or output is not 3C or C wide per
// token (sizes() says so) gets projections of those widths instead.
MixerSlots mixer_slots(const ModelConfig *cfg, int layer) {
    MixerSlots s = {
        .wqkv = 0, .wo = 1, .wg = -1, .wconv = -1, .wx = -1, .bqkv = -1, .bo = -1, .bg = -1};
    int n = 2;
    if (cfg->gate) s.wg = n++;
    if (cfg->conv_kernel > 0) s.wconv = n++;
    const OpDef_f32 *op = OPS_f32[cfg->mixer[layer]];
    OpShape one = mixer_core_shape(cfg, layer, 1, 1);
    size_t in[OP_MAX_IO] = {0}, out[OP_MAX_IO] = {0}, saved;
    op->sizes(&one, in, out, &saved);  // B = T = 1: the widths per token
    if (op->n_in > CORE_IN_XPROJ) s.E = (int)in[CORE_IN_XPROJ];
    s.in_w = (int)in[CORE_IN_QKV], s.out_w = (int)out[0];
    if (s.E) s.wx = n++;
    OpParam p[OP_MAX_PARAMS];
    s.core = n;
    s.n_core = op->params ? op->params(&one, p) : 0;
    n += s.n_core;
    // After the core's own tensors, so the core's indices (and so its INIT_CUSTOM streams) do
    // not move with the option.
    if (cfg->proj_bias) {
        s.bqkv = n++, s.bo = n++;
        if (cfg->gate) s.bg = n++;
    }
    s.n = n;
    return s;
}

int mixer_param_specs(const ModelConfig *cfg, int layer, ParamInfo *out) {
    int C = cfg->d_model;
    MixerSlots s = mixer_slots(cfg, layer);
    const OpDef_f32 *op = OPS_f32[cfg->mixer[layer]];
    param_linear(&out[s.wqkv], cfg, "wqkv", s.in_w, C, INIT_NORMAL);
    param_linear(&out[s.wo], cfg, "wo", C, s.out_w, INIT_NORMAL_RESIDUAL);
    if (s.wg >= 0) param_linear(&out[s.wg], cfg, "wg", s.out_w, C, INIT_NORMAL);
    if (s.bqkv >= 0) param_bias(&out[s.bqkv], cfg, "bqkv", s.in_w, C);
    if (s.bo >= 0) param_bias(&out[s.bo], cfg, "bo", C, s.out_w);
    if (s.bg >= 0) param_bias(&out[s.bg], cfg, "bg", s.out_w, C);
    // The convolution starts as the identity (all weight on the current token), so a layer
    // with it computes at initialisation exactly what it computes without it.
    if (s.wconv >= 0) param_spec(&out[s.wconv], "wconv", s.in_w, cfg->conv_kernel, INIT_CUSTOM);
    // Zero by default: the core op's own bias alone sets what the projection feeds at
    // initialisation. A core that reads W_x as an ordinary projection (xproj_linear) gets the
    // initialisation of one.
    if (s.wx >= 0) {
        if (op->xproj_linear)
            param_linear(&out[s.wx], cfg, "wx", s.E, C, INIT_NORMAL);
        else
            param_spec(&out[s.wx], "wx", s.E, C, INIT_ZEROS);
    }
    OpParam p[OP_MAX_PARAMS];
    OpShape one = mixer_core_shape(cfg, layer, 1, 1);
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

// Once for both precisions (model.c is compiled twice).
int vit_patches(const VisionConfig *v) {
    return v->patch ? (v->height / v->patch) * (v->width / v->patch) : 0;
}
int vit_tokens(const VisionConfig *v) {
    return vit_patches(v) + (v->pool == VIT_POOL_CLS);
}
