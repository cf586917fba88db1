// Model assembly over the op kernels; compiled twice (float: the trainer, double: the
// whole-model gradient check).
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/real.h"
#include "rng.h"

#define Model F(Model)

static void add_param(ParamInfo *info, int *n, size_t *off, const char *name, int rows, int cols,
                      int init) {
    ParamInfo *p = &info[(*n)++];
    param_spec(p, name, rows, cols, init);
    p->offset = *off;
    *off += p->size;
}

// Places the spec just filled in info[*n] (param_linear, param_bias) in the flat buffer.
static void place(ParamInfo *info, int *n, size_t *off) {
    info[*n].offset = *off;
    *off += info[(*n)++].size;
}

// A norm's tensors: its gain [C] `name`, and under LayerNorm its bias `name`_bias.
static void add_norm(const ModelConfig *c, ParamInfo *info, int *n, size_t *off, const char *name) {
    add_param(info, n, off, name, c->d_model, 0, INIT_ONES);
    if (c->norm != NORM_LAYERNORM) return;
    char bias[64];
    snprintf(bias, sizeof(bias), "%.50s_bias", name);
    add_param(info, n, off, bias, c->d_model, 0, INIT_ZEROS);
}

// The ViT's input tensors, in place of wte/wpe: the patch embedding and its bias, the class
// token (pool cls), the positions. The class token and positions do not decay (as timm's
// no_weight_decay: they are embeddings, not weights).
static void vit_lay_out_params(const ModelConfig *c, ParamInfo *info, int *n, size_t *off) {
    const VisionConfig *v = &c->vision;
    int C = c->d_model, in_w = v->patch * v->patch * v->channels, T = vit_tokens(v);
    param_linear(&info[*n], c, "patch_w", C, in_w, INIT_NORMAL), place(info, n, off);
    param_bias(&info[*n], c, "patch_b", C, in_w), place(info, n, off);
    if (v->pool == VIT_POOL_CLS) add_param(info, n, off, "cls_token", C, 0, INIT_NORMAL);
    add_param(info, n, off, "pos_embed", T, C,
              v->pos == VIT_POS_SINCOS2D ? INIT_CUSTOM : INIT_NORMAL);
    info[*n - 1].decay = 0;
    if (v->pos == VIT_POS_SINCOS2D) info[*n - 1].trainable = 0;  // a fixed buffer
}

// MAE's 2-D sin-cos positions (get_2d_sincos_pos_embed): the first C/2 channels encode the
// patch's column, the last C/2 its row, each as [sin(x w_i), cos(x w_i)] with
// w_i = 10000^(-i / (C/4)), i < C/4; the class token's row (row 0 under pool cls) is zero.
static void vit_sincos2d(const VisionConfig *v, int C, real *pos) {
    int gw = v->width / v->patch, np = vit_patches(v), first = v->pool == VIT_POOL_CLS, q = C / 4;
    memset(pos, 0, sizeof(real) * (size_t)vit_tokens(v) * C);
    for (int p = 0; p < np; p++) {
        real *row = pos + (size_t)(first + p) * C;
        double coord[2] = {p % gw, p / gw};  // column, row
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < q; i++) {
                double w = pow(10000.0, -(double)i / q);
                row[h * 2 * q + i] = (real)sin(coord[h] * w);
                row[h * 2 * q + q + i] = (real)cos(coord[h] * w);
            }
    }
}

// The parameter table in its one canonical order (the flat buffer's layout and the names a
// checkpoint uses).
static int lay_out_params(Model *m, ParamInfo *info) {
    const ModelConfig *c = &m->cfg;
    int n = 0, C = c->d_model, V = c->vocab_size;
    size_t off = 0;
    char name[128];
    int emb_init = c->init_scheme == INIT_SCHEME_PYTORCH ? INIT_NORMAL_UNIT : INIT_NORMAL;
    if (c->vision.patch) {
        vit_lay_out_params(c, info, &n, &off);
    } else {
        add_param(info, &n, &off, "wte", V, C, emb_init);
        if (c->max_positions > 0) add_param(info, &n, &off, "wpe", c->max_positions, C, emb_init);
    }
    for (int l = 0; l < c->n_layers; l++) {
        m->layer_offset[l] = off;
        snprintf(name, sizeof(name), "layers.%d.ln1", l);
        add_norm(c, info, &n, &off, name);
        ParamInfo specs[MAX_PARAMS_PER_LAYER];
        int k = mixer_param_specs(c, l, specs);
        m->n_mixer_params[l] = k;
        for (int i = 0; i < k; i++) {
            ParamInfo *p = &info[n++];
            *p = specs[i];
            snprintf(p->name, sizeof(p->name), "layers.%d.mixer.%.36s", l, specs[i].name);
            p->offset = off;
            off += p->size;
        }
        if (c->mlp != MLP_NONE) {
            int fc_rows = c->mlp == MLP_SWIGLU ? 2 * c->d_ff : c->d_ff;
            snprintf(name, sizeof(name), "layers.%d.ln2", l);
            add_norm(c, info, &n, &off, name);
            snprintf(name, sizeof(name), "layers.%d.mlp.w_fc", l);
            param_linear(&info[n], c, name, fc_rows, C, INIT_NORMAL), place(info, &n, &off);
            if (c->mlp_bias) {
                snprintf(name, sizeof(name), "layers.%d.mlp.b_fc", l);
                param_bias(&info[n], c, name, fc_rows, C), place(info, &n, &off);
            }
            snprintf(name, sizeof(name), "layers.%d.mlp.w_proj", l);
            param_linear(&info[n], c, name, C, c->d_ff, INIT_NORMAL_RESIDUAL);
            place(info, &n, &off);
            if (c->mlp_bias) {
                snprintf(name, sizeof(name), "layers.%d.mlp.b_proj", l);
                param_bias(&info[n], c, name, C, c->d_ff), place(info, &n, &off);
            }
        }
    }
    m->dec_offset = off;
    if (c->head == HEAD_AUTOENCODER) {  // MAD's decoder; its positions are a fixed buffer
        add_param(info, &n, &off, "dec.pos", c->seq_len, C, INIT_CUSTOM);
        info[n - 1].trainable = 0, info[n - 1].decay = 0;
        for (int i = 1; i <= 2; i++) {
            snprintf(name, sizeof(name), "dec.ln%d", i);
            add_norm(c, info, &n, &off, name);
            snprintf(name, sizeof(name), "dec.w%d", i);
            param_linear(&info[n], c, name, C, C, INIT_NORMAL), place(info, &n, &off);
            snprintf(name, sizeof(name), "dec.b%d", i);
            param_bias(&info[n], c, name, C, C), place(info, &n, &off);
        }
    }
    m->lnf_offset = off;
    add_norm(c, info, &n, &off, "lnf");
    if (!c->tie_embeddings)
        param_linear(&info[n], c, c->vision.patch ? "head" : "lm_head", V, C, INIT_NORMAL),
            place(info, &n, &off);
    if (c->head == HEAD_AUTOENCODER || c->vision.patch)
        param_bias(&info[n], c, c->vision.patch ? "head_bias" : "lm_head_bias", V, C),
            place(info, &n, &off);
    m->n_params = off;
    if (c->decay_all)
        for (int t = 0; t < n; t++) info[t].decay = info[t].trainable;
    return n;
}

// Points the named tensors into the flat buffer `base` (params or grads), in table order.
static void bind(Model *m, real *base, real **wte, real **wpe, real **lnf, real **lnf_b,
                 real **lm_head, F(LayerWeights) * layers, F(DecoderWeights) * dec,
                 F(VisionWeights) * vis) {
    const ModelConfig *c = &m->cfg;
    int i = 0, ln = c->norm == NORM_LAYERNORM;
    memset(vis, 0, sizeof(*vis));
    if (c->vision.patch) {
        *wte = *wpe = NULL;
        vis->patch_w = base + m->info[i++].offset;
        vis->patch_b = base + m->info[i++].offset;
        if (c->vision.pool == VIT_POOL_CLS) vis->cls = base + m->info[i++].offset;
        vis->pos = base + m->info[i++].offset;
    } else {
        *wte = base + m->info[i++].offset;
        *wpe = c->max_positions > 0 ? base + m->info[i++].offset : NULL;
    }
    for (int l = 0; l < c->n_layers; l++) {
        F(LayerWeights) *w = &layers[l];
        memset(w, 0, sizeof(*w));
        w->ln1 = base + m->info[i++].offset;
        if (ln) w->ln1_b = base + m->info[i++].offset;
        for (int k = 0; k < m->n_mixer_params[l]; k++) w->mixer[k] = base + m->info[i++].offset;
        if (c->mlp != MLP_NONE) {
            w->ln2 = base + m->info[i++].offset;
            if (ln) w->ln2_b = base + m->info[i++].offset;
            w->w_fc = base + m->info[i++].offset;
            if (c->mlp_bias) w->b_fc = base + m->info[i++].offset;
            w->w_proj = base + m->info[i++].offset;
            if (c->mlp_bias) w->b_proj = base + m->info[i++].offset;
        }
    }
    memset(dec, 0, sizeof(*dec));
    if (c->head == HEAD_AUTOENCODER) {
        dec->pos = base + m->info[i++].offset;
        dec->ln1 = base + m->info[i++].offset;
        if (ln) dec->ln1_b = base + m->info[i++].offset;
        dec->w1 = base + m->info[i++].offset;
        dec->b1 = base + m->info[i++].offset;
        dec->ln2 = base + m->info[i++].offset;
        if (ln) dec->ln2_b = base + m->info[i++].offset;
        dec->w2 = base + m->info[i++].offset;
        dec->b2 = base + m->info[i++].offset;
    }
    *lnf = base + m->info[i++].offset;
    *lnf_b = ln ? base + m->info[i++].offset : NULL;
    *lm_head = c->tie_embeddings ? *wte : base + m->info[i++].offset;
    if (c->head == HEAD_AUTOENCODER) dec->head_b = base + m->info[i++].offset;
    if (c->vision.patch) vis->head_b = base + m->info[i++].offset;
}

// A mixer whose row has an option `causal` set false mixes every position with every other: on
// token data each position would see the tokens it is asked to predict. Found through the row's
// options, so no mixer is named here.
static int causal_check(const ModelConfig *cfg, char *err, size_t errlen) {
    for (int l = 0; l < cfg->n_layers; l++) {
        const OpDef_f32 *row = OPS_f32[cfg->mixer[l]];
        if (!op_option_int(row->options, "causal", &cfg->core_opts[l], 1)) {
            snprintf(err, errlen,
                     "model.mixer %s with mixer.causal: false (layer %d) sees the future tokens of "
                     "a token task; set mixer.causal: true (non-causal mixers are for image data)",
                     row->name, l);
            return -1;
        }
    }
    return 0;
}

int F(model_build)(Model *m, const ModelConfig *cfg, const F(Backend) * k, char *err,
                   size_t errlen) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->k = k;
    if (cfg->n_layers < 1 || cfg->n_layers > MAX_LAYERS) {
        snprintf(err, errlen, "model.n_layers must be in [1, %d]", MAX_LAYERS);
        return -1;
    }
    if (cfg->d_model % cfg->n_heads) {
        snprintf(err, errlen, "model.d_model (%d) must be a multiple of model.n_heads (%d)",
                 cfg->d_model, cfg->n_heads);
        return -1;
    }
    for (int l = 0; l < cfg->n_layers; l++)
        if (F(mixer_check)(cfg, l, k, err, errlen)) return -1;
    if (!cfg->vision.patch && causal_check(cfg, err, errlen)) return -1;
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->rope[l] && (cfg->d_model / cfg->n_heads) % 2) {
            snprintf(err, errlen,
                     "rotary embeddings need an even head dimension (d_model/n_heads "
                     "= %d); set model.rope=off",
                     cfg->d_model / cfg->n_heads);
            return -1;
        }
    // Per layer: the mixer's, two norms with biases and two linears with biases; then wte, wpe,
    // the final norm with its bias and the head.
    m->info = calloc((size_t)cfg->n_layers * (MAX_PARAMS_PER_LAYER + 8) + 20, sizeof(ParamInfo));
    m->n_tensors = lay_out_params(m, m->info);
    m->params = k->alloc(m->n_params * sizeof(real));
    m->grads = k->alloc(m->n_params * sizeof(real));
    if (!m->params || !m->grads) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        return -1;
    }
    bind(m, m->params, &m->wte, &m->wpe, &m->lnf, &m->lnf_b, &m->lm_head, m->layer, &m->dec,
         &m->vis);
    bind(m, m->grads, &m->g_wte, &m->g_wpe, &m->g_lnf, &m->g_lnf_b, &m->g_lm_head, m->g_layer,
         &m->g_dec, &m->g_vis);
    return 0;
}

static void free_batch(Model *m) {
    const F(Backend) *k = m->k;
    k->release(m->acts), k->release(m->scratch);
    k->release(m->ids_dev), k->release(m->targets_dev), k->release(m->predictions_dev);
    k->release(m->head_dev);
    free(m->predictions), free(m->losses), free(m->head_idx), free(m->seg.row);
    free(m->host_patches), free(m->host_logits);
    m->host_patches = m->host_logits = NULL;
    memset(&m->seg, 0, sizeof(m->seg));
    m->acts = m->scratch = NULL, m->ids_dev = m->targets_dev = m->predictions_dev = NULL;
    m->head_dev = NULL, m->head_idx = NULL;
    m->predictions = NULL, m->losses = NULL;
}

void F(model_free)(Model *m) {
    if (m->k) {
        free_batch(m);
        m->k->release(m->params);
        m->k->release(m->grads);
    }
    free(m->info);
    memset(m, 0, sizeof(*m));
}

// Stream of an INIT_CUSTOM tensor: a function of (seed, layer, index in the layer's mixer
// specs, redraw index), so a redraw needs no state and every rank draws the same values.
static uint64_t custom_key(uint64_t seed, const ParamInfo *p, int64_t redraw_index) {
    return rng_key(seed, 0xFEA7, ((uint64_t)p->layer << 16) | (uint64_t)p->index,
                   (uint64_t)redraw_index);
}

// model.init madtrain: Normal(0, init_std) for matrices; residual-branch outputs scaled by
// 1/sqrt(2L) (GPT-2), so the residual stream's variance does not grow with depth. model.init
// pytorch: the table already holds each layer's PyTorch default (INIT_UNIFORM with the bound,
// INIT_NORMAL_UNIT). Tensor i draws from stream (seed, i): the values do not depend on how many
// ranks or threads there are.
void F(model_init)(Model *m, uint64_t seed) {
    double resid_scale = 1.0 / sqrt(2.0 * m->cfg.n_layers);
    real *host = malloc(sizeof(real) * m->n_params);
    for (int t = 0; t < m->n_tensors; t++) {
        const ParamInfo *p = &m->info[t];
        real *w = host + p->offset;
        if (p->init == INIT_CUSTOM && !strcmp(p->name, "pos_embed")) {
            vit_sincos2d(&m->cfg.vision, m->cfg.d_model, w);
            continue;
        }
        if (p->init == INIT_CUSTOM && p->layer < 0) {  // dec.pos: MAD's posemb_sincos_1d
            int C = m->cfg.d_model, half = C / 2;
            for (size_t i = 0; i < p->size; i++) {
                int t = (int)(i / C), j = (int)(i % C), f = j < half ? j : j - half;
                double freq = exp(-f * log(10000.0) / (half > 1 ? half - 1 : 1));
                w[i] = j >= 2 * half ? 0 : (real)(j < half ? sin(t * freq) : cos(t * freq));
            }
            continue;
        }
        if (p->init == INIT_CUSTOM) {
            F(mixer_init_param)(&m->cfg, p->layer, p->index, custom_key(seed, p, 0), w);
            continue;
        }
        uint64_t key = rng_key(seed, 0x1417, (uint64_t)t, 0);
        double std = m->cfg.init_std * (p->init == INIT_NORMAL_RESIDUAL ? resid_scale : 1.0);
        // each value a function of (key, i) alone: threads change nothing but the time (GPT-2's
        // 124M draws take seconds on one thread)
#pragma omp parallel for schedule(static) if (p->size > 65536)
        for (size_t i = 0; i < p->size; i++) {
            if (p->init == INIT_ONES)
                w[i] = 1;
            else if (p->init == INIT_ZEROS)
                w[i] = 0;
            else if (p->init == INIT_CONST)
                w[i] = (real)p->init_value;
            else if (p->init == INIT_UNIFORM)
                w[i] = (real)(p->init_value * (2 * rng_uniform(key, i) - 1));
            else if (p->init == INIT_NORMAL_UNIT)
                w[i] = (real)rng_normal(key, i);
            else
                w[i] = (real)(std * rng_normal(key, i));
        }
    }
    m->k->upload(m->params, host, sizeof(real) * m->n_params);
    free(host);
}

void F(model_redraw)(Model *m, uint64_t seed, int64_t redraw_index) {
    for (int t = 0; t < m->n_tensors; t++) {
        const ParamInfo *p = &m->info[t];
        if (!p->redraw) continue;
        real *host = malloc(sizeof(real) * p->size);
        F(mixer_init_param)(&m->cfg, p->layer, p->index, custom_key(seed, p, redraw_index), host);
        m->k->upload(m->params + p->offset, host, sizeof(real) * p->size);
        free(host);
    }
}

void F(model_zero_grad)(Model *m) {
    m->k->zero(m->grads, m->n_params);
}

// Activation layout of one batch shape, as offsets into m->acts. A norm's stats: rstd [N]
// (RMSNorm), or mean [N] then rstd [N] (LayerNorm).
typedef struct {
    size_t ln1, ln1_stats, mix, mix_out, res1, ln2, ln2_stats, fc, act, mlp_out, res2;
} LayerActs;
typedef struct {
    size_t emb, lnf, lnf_stats, head_in, logits, losses, total;
    // ViT: the flattened patches [B*patches, P*P*channels], their embedding [B*patches, C]
    // (pool cls: before it is placed behind each class token), dropout's masked gradient
    size_t v_patches, v_patch_out, s_drop;
    size_t arena;  // the intermediates of the layers under model.recompute (one layer's worth)
    LayerActs layer[MAX_LAYERS];
    // autoencoder head: pooled + positions, norm, linear, GELU, norm, linear, GELU ([N, C] each)
    size_t d_in, d_ln1, d_ln1_stats, d_fc1, d_act1, d_ln2, d_ln2_stats, d_fc2, d_act2;
    // backward scratch offsets into m->scratch
    size_t s_dres, s_dln, s_dact, s_dfc, s_dlogits, s_dlosses, s_mixer, s_dec, s_total;
} ActsLayout;

static ActsLayout acts_layout(const ModelConfig *c, const F(Backend) * k, int B, int T,
                              const Segments *seg) {
    ActsLayout a;
    memset(&a, 0, sizeof(a));
    size_t N = (size_t)B * T, C = c->d_model, V = c->vocab_size, off = 0, mix_scratch = 0;
    size_t fc_w = c->mlp == MLP_SWIGLU ? 2 * (size_t)c->d_ff : (size_t)c->d_ff;
    size_t NS = c->norm == NORM_LAYERNORM ? 2 * N : N;
    a.emb = off, off += N * C;
    // A layer under model.recompute keeps only its output (the next layer's input) in its own
    // place; its intermediates go to one arena that every such layer shares (offsets counted
    // from 0 there, moved behind the kept activations below), and backward recomputes them.
    size_t arena_size = 0;
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *la = &a.layer[l];
        size_t arena = 0, *o = c->recompute[l] ? &arena : &off;
        la->ln1 = *o, *o += N * C;
        la->ln1_stats = *o, *o += NS;
        la->mix = *o, *o += F(mixer_acts_size)(c, l, k, B, T, seg);
        la->mix_out = *o, *o += N * C;
        if (c->mlp != MLP_NONE) {
            la->res1 = *o, *o += N * C;
            la->ln2 = *o, *o += N * C;
            la->ln2_stats = *o, *o += NS;
            la->fc = *o, *o += N * fc_w;
            la->act = *o, *o += N * c->d_ff;
            la->mlp_out = *o, *o += N * C;
            la->res2 = off, off += N * C;
        } else {
            la->res1 = la->res2 = off, off += N * C;
        }
        if (c->recompute[l]) arena_size = arena > arena_size ? arena : arena_size;
        size_t s = F(mixer_scratch_size)(c, l, k, B, T);
        mix_scratch = s > mix_scratch ? s : mix_scratch;
    }
    a.arena = off, off += arena_size;
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *la = &a.layer[l];
        if (!c->recompute[l]) continue;
        la->ln1 += a.arena, la->ln1_stats += a.arena, la->mix += a.arena, la->mix_out += a.arena;
        if (c->mlp != MLP_NONE) {
            la->res1 += a.arena, la->ln2 += a.arena, la->ln2_stats += a.arena;
            la->fc += a.arena, la->act += a.arena, la->mlp_out += a.arena;
        }
    }
    if (c->head == HEAD_AUTOENCODER) {
        a.d_in = off, off += N * C;
        a.d_ln1 = off, off += N * C;
        a.d_ln1_stats = off, off += NS;
        a.d_fc1 = off, off += N * C;
        a.d_act1 = off, off += N * C;
        a.d_ln2 = off, off += N * C;
        a.d_ln2_stats = off, off += NS;
        a.d_fc2 = off, off += N * C;
        a.d_act2 = off, off += N * C;
    }
    a.lnf = off, off += N * C;
    a.lnf_stats = off, off += NS;
    a.head_in = off, off += N * C;  // the scored positions' rows of lnf, gathered
    a.logits = off, off += N * V;
    a.losses = off, off += N;
    if (c->vision.patch) {
        size_t np = (size_t)B * vit_patches(&c->vision);
        a.v_patches = off, off += np * c->vision.patch * c->vision.patch * c->vision.channels;
        a.v_patch_out = off, off += c->vision.pool == VIT_POOL_CLS ? np * C : 0;
    }
    a.total = off;
    off = 0;
    a.s_dres = off, off += N * C;
    a.s_dln = off, off += N * C;
    a.s_dact = off, off += c->mlp != MLP_NONE ? N * c->d_ff : 0;
    a.s_dfc = off, off += c->mlp != MLP_NONE ? N * fc_w : 0;
    a.s_dlogits = off, off += N * V;
    a.s_dlosses = off, off += N;
    a.s_mixer = off, off += mix_scratch;
    a.s_dec = off, off += c->head == HEAD_AUTOENCODER ? 3 * N * C : 0;
    a.s_drop = off, off += c->vision.dropout > 0 ? N * C : 0;
    a.s_total = off;
    return a;
}

size_t F(model_memory_estimate)(const ModelConfig *cfg, const F(Backend) * k, int B, int T,
                                size_t *n_params, size_t *acts_bytes) {
    Model tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.cfg = *cfg, tmp.k = k;
    tmp.info = calloc((size_t)cfg->n_layers * (MAX_PARAMS_PER_LAYER + 8) + 20, sizeof(ParamInfo));
    lay_out_params(&tmp, tmp.info);
    free(tmp.info);
    ActsLayout a = acts_layout(cfg, k, B, T, NULL);
    *n_params = tmp.n_params;
    *acts_bytes = sizeof(real) * (a.total + a.s_total);
    return 4 * sizeof(real) * tmp.n_params + *acts_bytes;
}

static int vit_set_batch(Model *m);

int F(model_set_batch)(Model *m, int B, int T) {
    if (m->B == B && m->T == T && m->acts) return 0;
    if (m->cfg.max_positions > 0 && m->cfg.cp.pos0 + T > m->cfg.max_positions) return -1;
    if (m->cfg.head == HEAD_AUTOENCODER && T > m->cfg.seq_len) return -1;  // dec.pos rows
    ActsLayout a = acts_layout(&m->cfg, m->k, B, T, NULL);
    const F(Backend) *k = m->k;
    size_t N = (size_t)B * T;
    free_batch(m);
    m->acts = k->alloc(sizeof(real) * a.total);
    m->scratch = k->alloc(sizeof(real) * a.s_total);
    m->ids_dev = k->alloc(sizeof(int) * N);
    m->targets_dev = k->alloc(sizeof(int) * N);
    m->predictions_dev = k->alloc(sizeof(int) * N);
    m->head_dev = k->alloc(sizeof(int) * N);
    m->head_idx = malloc(sizeof(int) * N);
    m->seg.row = malloc(sizeof(int) * 3 * N);
    if (m->seg.row) m->seg.start = m->seg.row + N, m->seg.len = m->seg.row + 2 * N;
    m->predictions = malloc(sizeof(int) * N);
    m->losses = malloc(sizeof(real) * N);
    m->acts_size = a.total, m->scratch_size = a.s_total;
    m->B = B, m->T = T;
    if (m->cfg.vision.patch && vit_set_batch(m)) return -1;
    return m->acts && m->scratch && m->ids_dev && m->targets_dev && m->predictions_dev &&
                   m->head_dev && m->head_idx && m->seg.row && m->predictions && m->losses
               ? 0
               : -1;
}

// The block and final norms (model.norm): RMSNorm reads no bias.
static void norm_forward(const Model *m, real *out, real *stats, const real *x, const real *w,
                         const real *b, int N) {
    const ModelConfig *c = &m->cfg;
    if (c->norm == NORM_LAYERNORM)
        m->k->layernorm_forward(out, stats, stats + N, x, w, b, N, c->d_model, c->norm_eps);
    else
        m->k->rmsnorm_forward(out, stats, x, w, N, c->d_model, c->norm_eps);
}

static void norm_backward(const Model *m, real *dx, real *dw, real *db, const real *dout,
                          const real *x, const real *w, const real *stats, int N) {
    if (m->cfg.norm == NORM_LAYERNORM)
        m->k->layernorm_backward(dx, dw, db, dout, x, w, stats, stats + N, N, m->cfg.d_model);
    else
        m->k->rmsnorm_backward(dx, dw, dout, x, w, stats, N, m->cfg.d_model);
}

static void grads_final(Model *m, size_t from) {
    if (m->on_grads_final) m->on_grads_final(m->grads_final_ctx, from);
}

static void phase_done(Model *m, const char *stage, int layer) {
    if (m->on_phase) m->on_phase(m->phase_ctx, stage, layer);
}

// model.head autoencoder: every position t of row b reads the row's last residual state plus
// position t's sin-cos vector, then the decoder MLP. The broadcast is a copy per position and
// its gradient a sum of adds (row counts are small: MAD's compression rows are 32-256 long).
static const real *decoder_forward(Model *m, const ActsLayout *a, const real *x) {
    const F(Backend) *k = m->k;
    const F(DecoderWeights) *d = &m->dec;
    int B = m->B, T = m->T, N = B * T, C = m->cfg.d_model;
    real *acts = m->acts, *in = acts + a->d_in;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            k->copy(in + ((size_t)b * T + t) * C, x + ((size_t)b * T + T - 1) * C,
                    sizeof(real) * C);
    k->positions_forward(in, d->pos, N, T, C);
    norm_forward(m, acts + a->d_ln1, acts + a->d_ln1_stats, in, d->ln1, d->ln1_b, N);
    k->matmul_forward(acts + a->d_fc1, acts + a->d_ln1, d->w1, N, C, C);
    k->bias_forward(acts + a->d_fc1, d->b1, N, C);
    k->gelu_erf_forward(acts + a->d_act1, acts + a->d_fc1, (size_t)N * C);
    norm_forward(m, acts + a->d_ln2, acts + a->d_ln2_stats, acts + a->d_act1, d->ln2, d->ln2_b, N);
    k->matmul_forward(acts + a->d_fc2, acts + a->d_ln2, d->w2, N, C, C);
    k->bias_forward(acts + a->d_fc2, d->b2, N, C);
    k->gelu_erf_forward(acts + a->d_act2, acts + a->d_fc2, (size_t)N * C);
    return acts + a->d_act2;
}

// dres: the gradient of the decoder's output [N, C] in; on return, the gradient of the
// blocks' residual output (nonzero only at each row's last position).
static void decoder_backward(Model *m, const ActsLayout *a, real *dres) {
    const F(Backend) *k = m->k;
    const F(DecoderWeights) *d = &m->dec, *g = &m->g_dec;
    int B = m->B, T = m->T, N = B * T, C = m->cfg.d_model;
    size_t NC = (size_t)N * C;
    real *acts = m->acts, *s0 = m->scratch + a->s_dec, *s1 = s0 + NC, *s2 = s1 + NC;
    k->zero(s0, NC);
    k->gelu_erf_backward(s0, dres, acts + a->d_fc2, NC);  // dfc2
    k->bias_backward(g->b2, s0, N, C);
    k->zero(s1, NC);
    k->matmul_backward(s1, g->w2, s0, acts + a->d_ln2, d->w2, N, C, C);  // dln2
    k->zero(s2, NC);
    norm_backward(m, s2, g->ln2, g->ln2_b, s1, acts + a->d_act1, d->ln2, acts + a->d_ln2_stats,
                  N);  // dact1
    k->zero(s0, NC);
    k->gelu_erf_backward(s0, s2, acts + a->d_fc1, NC);  // dfc1
    k->bias_backward(g->b1, s0, N, C);
    k->zero(s1, NC);
    k->matmul_backward(s1, g->w1, s0, acts + a->d_ln1, d->w1, N, C, C);  // dln1
    k->zero(s2, NC);
    norm_backward(m, s2, g->ln1, g->ln1_b, s1, acts + a->d_in, d->ln1, acts + a->d_ln1_stats,
                  N);  // din
    k->zero(dres, NC);
    for (int b = 0; b < B; b++) {
        real *last = dres + ((size_t)b * T + T - 1) * C;
        for (int t = 0; t < T; t++) k->add(last, last, s2 + ((size_t)b * T + t) * C, C);
    }
}

ForwardStats F(model_forward)(Model *m, const int *ids, const int *targets, real loss_scale) {
    return F(model_forward_packed)(m, ids, targets, NULL, loss_scale);
}

// Dropout (ViT training only): site 0 is the embedding, 1 + 3l block l's mixer output, 2 + 3l
// its MLP hidden activation, 3 + 3l its MLP output. Each site draws from its own stream of the
// step's key; the element index counts from the batch's first image (ImageStep).
static int dropping(const Model *m) {
    return m->cfg.vision.dropout > 0 && m->image_step.train;
}
static void drop(const Model *m, real *x, int rows, int width, int site) {
    if (!dropping(m)) return;
    m->k->dropout_forward(x, x, (size_t)rows, width, m->cfg.vision.dropout,
                          rng_key(m->image_step.dropout_key, (uint64_t)site, 0, 0),
                          (uint64_t)m->image_step.first_image * (uint64_t)m->T);
}
// The branch's gradient through site's mask: into out (zeroed here), or dres itself when no
// dropout runs.
static const real *drop_grad(const Model *m, real *out, const real *dres, int rows, int width,
                             int site) {
    if (!dropping(m)) return dres;
    m->k->zero(out, (size_t)rows * width);
    m->k->dropout_backward(out, dres, (size_t)rows, width, m->cfg.vision.dropout,
                           rng_key(m->image_step.dropout_key, (uint64_t)site, 0, 0),
                           (uint64_t)m->image_step.first_image * (uint64_t)m->T);
    return out;
}

// Cuts the rows into examples at pos == 0 (a row's first token always opens one).
// Block l's forward from its input (the embedding, or block l-1's output) into its activations.
// Backward calls it again for a block under model.recompute: the same kernels on the same
// input give the same bits, so the gradients equal the stored form's exactly.
static void layer_forward(Model *m, const ActsLayout *a, int l, const Segments *seg) {
    const ModelConfig *c = &m->cfg;
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model;
    real *acts = m->acts;
    const real *x = acts + (l ? a->layer[l - 1].res2 : a->emb);
    const LayerActs *la = &a->layer[l];
    F(LayerWeights) *w = &m->layer[l];
    norm_forward(m, acts + la->ln1, acts + la->ln1_stats, x, w->ln1, w->ln1_b, N);
    F(mixer_forward)
    (c, l, k, B, T, seg, acts + la->mix_out, acts + la->ln1, w->mixer, acts + la->mix);
    drop(m, acts + la->mix_out, N, C, 1 + 3 * l);
    real *res1 = acts + la->res1;
    k->add(res1, x, acts + la->mix_out, (size_t)N * C);
    if (c->mlp != MLP_NONE) {
        int fc_w = c->mlp == MLP_SWIGLU ? 2 * c->d_ff : c->d_ff;
        norm_forward(m, acts + la->ln2, acts + la->ln2_stats, res1, w->ln2, w->ln2_b, N);
        k->matmul_forward(acts + la->fc, acts + la->ln2, w->w_fc, N, C, fc_w);
        if (w->b_fc) k->bias_forward(acts + la->fc, w->b_fc, N, fc_w);
        if (c->mlp == MLP_SWIGLU)
            k->swiglu_forward(acts + la->act, acts + la->fc, N, c->d_ff);
        else if (c->mlp == MLP_GELU_ERF)
            k->gelu_erf_forward(acts + la->act, acts + la->fc, (size_t)N * c->d_ff);
        else
            k->gelu_forward(acts + la->act, acts + la->fc, (size_t)N * c->d_ff);
        drop(m, acts + la->act, N, c->d_ff, 2 + 3 * l);
        k->matmul_forward(acts + la->mlp_out, acts + la->act, w->w_proj, N, c->d_ff, C);
        if (w->b_proj) k->bias_forward(acts + la->mlp_out, w->b_proj, N, C);
        drop(m, acts + la->mlp_out, N, C, 3 + 3 * l);
        k->add(acts + la->res2, res1, acts + la->mlp_out, (size_t)N * C);
    }
}

// Every block in order, each marked when its work is queued (train.profile_step).
static void blocks_forward(Model *m, const ActsLayout *a, const Segments *seg) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_forward(m, a, l, seg);
        phase_done(m, "forward layer", l);
    }
}

static void find_segments(Model *m, const int *pos) {
    Segments *s = &m->seg;
    s->n = 0;
    if (!pos) return;
    for (int b = 0; b < m->B; b++)
        for (int t = 0; t < m->T; t++) {
            if (t == 0 || pos[(size_t)b * m->T + t] == 0)
                s->row[s->n] = b, s->start[s->n] = t, s->len[s->n++] = 0;
            s->len[s->n - 1]++;
        }
}

ForwardStats F(model_forward_packed)(Model *m, const int *ids, const int *targets, const int *pos,
                                     real loss_scale) {
    const ModelConfig *c = &m->cfg;
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size;
    find_segments(m, pos);
    const Segments *seg = m->seg.n ? &m->seg : NULL;
    ActsLayout a = acts_layout(c, k, B, T, seg);
    // The cores' saved activations of many short examples can outgrow one row's (per-chunk
    // states): the activations grow to this batch's need and stay.
    if (a.total > m->acts_size) {
        k->release(m->acts);
        m->acts = k->alloc(sizeof(real) * a.total);
        if (!m->acts) {
            fprintf(stderr, "madtrain: error: out of memory for the packed batch's activations\n");
            exit(1);
        }
        m->acts_size = a.total;
    }
    real *acts = m->acts;
    k->upload(m->ids_dev, ids, sizeof(int) * N);
    // The head's rows: the scored positions, in order (their targets go up compacted).
    int n_head = 0, *head_targets = m->predictions;  // host scratch until the download below
    for (int n = 0; n < N; n++)
        if (targets[n] >= 0) m->head_idx[n_head] = n, head_targets[n_head++] = targets[n];
    int gather = n_head < N;
    m->n_head = n_head;
    if (gather) {
        k->upload(m->head_dev, m->head_idx, sizeof(int) * (size_t)n_head);
        k->upload(m->targets_dev, head_targets, sizeof(int) * (size_t)n_head);
    } else {
        k->upload(m->targets_dev, targets, sizeof(int) * N);
    }
    m->targets = targets, m->loss_scale = loss_scale;

    k->embedding_forward(acts + a.emb, m->ids_dev, m->wte, N, C);
    if (m->wpe && seg) {  // positions count from each example's start
        for (int i = 0; i < seg->n; i++)
            k->positions_forward(acts + a.emb + ((size_t)seg->row[i] * T + seg->start[i]) * C,
                                 m->wpe, seg->len[i], seg->len[i], C);
    } else if (m->wpe) {  // a context-parallel slice reads its own rows of the table
        k->positions_forward(acts + a.emb, m->wpe + (size_t)c->cp.pos0 * C, N, T, C);
    }
    phase_done(m, "forward embedding", -1);
    blocks_forward(m, &a, seg);
    const real *x = acts + (c->n_layers ? a.layer[c->n_layers - 1].res2 : a.emb);
    if (c->head == HEAD_AUTOENCODER) x = decoder_forward(m, &a, x);
    norm_forward(m, acts + a.lnf, acts + a.lnf_stats, x, m->lnf, m->lnf_b, N);
    const real *head_in = acts + a.lnf;
    if (gather) {  // a gather of rows is an embedding lookup with lnf as the table
        k->embedding_forward(acts + a.head_in, m->head_dev, acts + a.lnf, n_head, C);
        head_in = acts + a.head_in;
    }
    if (n_head) {
        k->matmul_forward(acts + a.logits, head_in, m->lm_head, n_head, C, V);
        if (m->dec.head_b) k->bias_forward(acts + a.logits, m->dec.head_b, n_head, V);
        k->crossentropy_forward(acts + a.losses, acts + a.logits, m->targets_dev, n_head, V);
        k->argmax(m->predictions_dev, acts + a.logits, m->targets_dev, n_head, V);
    }
    // The host sees only the per-position losses and predictions (n_head values each),
    // spread back to [B*T]: -1 and 0 at the positions that score nothing.
    if (gather) {
        k->download(m->losses, acts + a.losses, sizeof(real) * (size_t)n_head);
        k->download(m->predictions, m->predictions_dev, sizeof(int) * (size_t)n_head);
        for (int i = n_head - 1; i >= 0; i--) {  // back to front: index n >= i never overtakes
            int n = m->head_idx[i];
            real loss = m->losses[i];
            int pred = m->predictions[i];
            for (int z = i ? m->head_idx[i - 1] + 1 : 0; z <= n; z++)
                m->losses[z] = 0, m->predictions[z] = -1;
            m->losses[n] = loss, m->predictions[n] = pred;
        }
        for (int z = n_head ? m->head_idx[n_head - 1] + 1 : 0; z < N; z++)
            m->losses[z] = 0, m->predictions[z] = -1;
    } else {
        k->download(m->losses, acts + a.losses, sizeof(real) * N);
        k->download(m->predictions, m->predictions_dev, sizeof(int) * N);
    }
    phase_done(m, "forward head and loss", -1);

    ForwardStats st = {0};
    int n_examples = seg ? seg->n : B;
    for (int e = 0; e < n_examples; e++) {
        int scored = 0, correct = 0, len = seg ? seg->len[e] : T;
        size_t n0 = seg ? (size_t)seg->row[e] * T + seg->start[e] : (size_t)e * T;
        for (int t = 0; t < len; t++) {
            size_t n = n0 + t;
            if (targets[n] < 0) continue;
            scored++;
            correct += m->predictions[n] == targets[n];
            st.loss_sum += m->losses[n];
        }
        st.n_scored += scored;
        if (scored) {
            st.example_acc_sum += (double)correct / scored;
            st.n_examples++;
        }
    }
    return st;
}

// The mixer's figures are host code over host buffers: on a device, the layer's activations and
// weights are copied down first (once, after training).
int F(model_layer_aux)(Model *m, int layer, OpAux *out) {
    const F(Backend) *k = m->k;
    const Segments *seg = m->seg.n ? &m->seg : NULL;
    ActsLayout a = acts_layout(&m->cfg, k, m->B, m->T, seg);
    size_t n_acts = F(mixer_acts_size)(&m->cfg, layer, k, m->B, m->T, seg);
    if (m->cfg.recompute[layer]) layer_forward(m, &a, layer, seg);  // the arena holds another's
    real *acts = malloc(sizeof(real) * (n_acts ? n_acts : 1)), *w[MAX_PARAMS_PER_LAYER] = {0};
    k->download(acts, m->acts + a.layer[layer].mix, sizeof(real) * n_acts);
    const ParamInfo *info = m->info;
    int t0 = 0;
    while (info[t0].layer != layer) t0++;  // the layer's mixer tensors are contiguous
    for (int i = 0; i < m->n_mixer_params[layer]; i++) {
        const ParamInfo *p = &info[t0 + i];
        w[i] = malloc(sizeof(real) * p->size);
        k->download(w[i], m->params + p->offset, sizeof(real) * p->size);
    }
    int n = F(mixer_aux)(&m->cfg, layer, k, m->B, m->T, seg, w, acts, out);
    for (int i = 0; i < m->n_mixer_params[layer]; i++) free(w[i]);
    free(acts);
    return n;
}

// dres: the gradient of the last block's output; on return, that of the first block's input.
// Each branch adds its input's gradient to dres, the residual stream's.
static void blocks_backward(Model *m, const ActsLayout *a, const Segments *seg, real *dres) {
    const ModelConfig *c = &m->cfg;
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model;
    size_t NC = (size_t)N * C;
    real *acts = m->acts, *s = m->scratch, *dln = s + a->s_dln;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const LayerActs *la = &a->layer[l];
        F(LayerWeights) *w = &m->layer[l], *g = &m->g_layer[l];
        const real *x = l ? acts + a->layer[l - 1].res2 : acts + a->emb;
        if (c->recompute[l]) layer_forward(m, a, l, seg);
        if (c->mlp != MLP_NONE) {
            int fc_w = c->mlp == MLP_SWIGLU ? 2 * c->d_ff : c->d_ff;
            real *dact = s + a->s_dact, *dfc = s + a->s_dfc;
            k->zero(dact, (size_t)N * c->d_ff);
            k->zero(dfc, (size_t)N * fc_w);
            k->zero(dln, NC);
            const real *dbranch = drop_grad(m, s + a->s_drop, dres, N, C, 3 + 3 * l);
            if (g->b_proj) k->bias_backward(g->b_proj, dbranch, N, C);
            k->matmul_backward(dact, g->w_proj, dbranch, acts + la->act, w->w_proj, N, c->d_ff, C);
            drop(m, dact, N, c->d_ff, 2 + 3 * l);
            if (c->mlp == MLP_SWIGLU)
                k->swiglu_backward(dfc, dact, acts + la->fc, N, c->d_ff);
            else if (c->mlp == MLP_GELU_ERF)
                k->gelu_erf_backward(dfc, dact, acts + la->fc, (size_t)N * c->d_ff);
            else
                k->gelu_backward(dfc, dact, acts + la->fc, (size_t)N * c->d_ff);
            if (g->b_fc) k->bias_backward(g->b_fc, dfc, N, fc_w);
            k->matmul_backward(dln, g->w_fc, dfc, acts + la->ln2, w->w_fc, N, C, fc_w);
            norm_backward(m, dres, g->ln2, g->ln2_b, dln, acts + la->res1, w->ln2,
                          acts + la->ln2_stats, N);
        }
        k->zero(dln, NC);
        const real *dmix = drop_grad(m, s + a->s_drop, dres, N, C, 1 + 3 * l);
        F(mixer_backward)
        (c, l, k, B, T, seg, dln, g->mixer, dmix, acts + la->ln1, w->mixer, acts + la->mix,
         s + a->s_mixer);
        norm_backward(m, dres, g->ln1, g->ln1_b, dln, x, w->ln1, acts + la->ln1_stats, N);
        grads_final(m, m->layer_offset[l]);
        phase_done(m, "backward layer", l);
    }
}

static void vit_backward(Model *m);

void F(model_backward)(Model *m) {
    const ModelConfig *c = &m->cfg;
    if (c->vision.patch) {
        vit_backward(m);
        return;
    }
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size;
    size_t NC = (size_t)N * C;
    const Segments *seg = m->seg.n ? &m->seg : NULL;
    ActsLayout a = acts_layout(c, k, B, T, seg);
    real *acts = m->acts, *s = m->scratch;
    real *dres = s + a.s_dres, *dln = s + a.s_dln, *dlogits = s + a.s_dlogits;
    real *dlosses = s + a.s_dlosses;

    int n_head = m->n_head, gather = n_head < N;
    k->zero(dln, NC);
    if (n_head) {
        k->loss_seed(dlosses, m->targets_dev, m->loss_scale, n_head);
        k->zero(dlogits, (size_t)n_head * V);
        k->crossentropy_backward(dlogits, dlosses, acts + a.logits, m->targets_dev, n_head, V);
        // gathered: the head's input gradient [n_head, C] in dres, then scattered into dln
        real *dhead = gather ? dres : dln;
        if (gather) k->zero(dres, (size_t)n_head * C);
        k->matmul_backward(dhead, m->g_lm_head, dlogits, acts + (gather ? a.head_in : a.lnf),
                           m->lm_head, n_head, C, V);
        if (gather) k->embedding_backward(dln, dres, m->head_dev, n_head, C);
        if (m->g_dec.head_b) k->bias_backward(m->g_dec.head_b, dlogits, n_head, V);
    }
    int ae = c->head == HEAD_AUTOENCODER;
    const real *x_last = acts + (ae            ? a.d_act2
                                 : c->n_layers ? a.layer[c->n_layers - 1].res2
                                               : a.emb);
    k->zero(dres, NC);
    norm_backward(m, dres, m->g_lnf, m->g_lnf_b, dln, x_last, m->lnf, acts + a.lnf_stats, N);
    grads_final(m, m->lnf_offset);
    if (ae) {
        decoder_backward(m, &a, dres);
        grads_final(m, m->dec_offset);
    }
    phase_done(m, "backward head", -1);

    blocks_backward(m, &a, seg, dres);
    k->embedding_backward(m->g_wte, dres, m->ids_dev, N, C);
    if (m->g_wpe && seg) {
        for (int i = 0; i < seg->n; i++)
            k->positions_backward(m->g_wpe, dres + ((size_t)seg->row[i] * T + seg->start[i]) * C,
                                  seg->len[i], seg->len[i], C);
    } else if (m->g_wpe) {
        k->positions_backward(m->g_wpe + (size_t)m->cfg.cp.pos0 * C, dres, N, T, C);
    }
    grads_final(m, 0);
    phase_done(m, "backward embedding", -1);
}

// ---- the ViT path (model.vision.patch > 0) --------------------------------------------------
// Device index lists that place and gather rows: head_dev [B] holds each image's first token
// row (b * T: the class token, pooled under pool cls); ids_dev [B * patches] each patch's row
// in the token grid (b * T + 1 + p under pool cls).
static int vit_set_batch(Model *m) {
    const VisionConfig *v = &m->cfg.vision;
    int B = m->B, T = m->T, np = vit_patches(v), first = v->pool == VIT_POOL_CLS;
    size_t in_w = (size_t)v->patch * v->patch * v->channels;
    m->host_patches = malloc(sizeof(real) * (size_t)B * np * in_w);
    m->host_logits = malloc(sizeof(real) * (size_t)B * m->cfg.vocab_size);
    int *rows = malloc(sizeof(int) * (size_t)B * np);
    if (!m->host_patches || !m->host_logits || !rows) return free(rows), -1;
    for (int b = 0; b < B; b++) rows[b] = b * T;
    m->k->upload(m->head_dev, rows, sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < np; p++) rows[(size_t)b * np + p] = b * T + first + p;
    m->k->upload(m->ids_dev, rows, sizeof(int) * (size_t)B * np);
    free(rows);
    return 0;
}

// [B, H, W, ch] -> [B, patches, P * P * ch]: patch (gy, gx) in row-major grid order, each
// flattened in (y, x, channel) order within the patch (the pixels' own NHWC order).
static void patchify(const VisionConfig *v, int B, const float *px, real *out) {
    int P = v->patch, Ch = v->channels, W = v->width, gh = v->height / P, gw = W / P;
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++)
                for (int y = 0; y < P; y++) {
                    const float *src =
                        px + (((size_t)b * v->height + gy * P + y) * W + gx * P) * Ch;
                    real *dst = out + ((((size_t)b * gh + gy) * gw + gx) * P + y) * P * Ch;
                    for (int i = 0; i < P * Ch; i++) dst[i] = (real)src[i];
                }
}

static double vit_smoothing(const Model *m) {
    return m->image_step.train ? m->cfg.vision.label_smoothing : 0.0;
}

ForwardStats F(model_forward_images)(Model *m, const float *pixels, const int *labels,
                                     const ImageStep *step, real loss_scale) {
    const ModelConfig *c = &m->cfg;
    const VisionConfig *v = &c->vision;
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, K = c->vocab_size, np = vit_patches(v);
    int in_w = v->patch * v->patch * v->channels, rows = B * np;
    ActsLayout a = acts_layout(c, k, B, T, NULL);
    real *acts = m->acts, *emb = acts + a.emb;
    m->image_step = *step, m->loss_scale = loss_scale, m->targets = labels, m->n_head = B;
    m->seg.n = 0;
    patchify(v, B, pixels, m->host_patches);
    k->upload(acts + a.v_patches, m->host_patches, sizeof(real) * (size_t)rows * in_w);
    k->upload(m->targets_dev, labels, sizeof(int) * (size_t)B);

    // patch embedding, then each image's tokens: [class token,] patches
    real *patch_out = v->pool == VIT_POOL_CLS ? acts + a.v_patch_out : emb;
    k->matmul_forward(patch_out, acts + a.v_patches, m->vis.patch_w, rows, in_w, C);
    k->bias_forward(patch_out, m->vis.patch_b, rows, C);
    if (v->pool == VIT_POOL_CLS)
        for (int b = 0; b < B; b++) {
            k->copy(emb + (size_t)b * T * C, m->vis.cls, sizeof(real) * C);
            k->copy(emb + ((size_t)b * T + 1) * C, patch_out + (size_t)b * np * C,
                    sizeof(real) * (size_t)np * C);
        }
    k->positions_forward(emb, m->vis.pos, N, T, C);
    drop(m, emb, N, C, 0);
    phase_done(m, "forward embedding", -1);
    blocks_forward(m, &a, NULL);
    const real *x = acts + a.layer[c->n_layers - 1].res2;
    norm_forward(m, acts + a.lnf, acts + a.lnf_stats, x, m->lnf, m->lnf_b, N);
    real *pooled = acts + a.head_in;
    if (v->pool == VIT_POOL_CLS)
        k->embedding_forward(pooled, m->head_dev, acts + a.lnf, B, C);
    else
        k->mean_pool_forward(pooled, acts + a.lnf, B, T, C);
    k->matmul_forward(acts + a.logits, pooled, m->lm_head, B, C, K);
    k->bias_forward(acts + a.logits, m->vis.head_b, B, K);
    k->crossentropy_smooth_forward(acts + a.losses, acts + a.logits, m->targets_dev, B, K,
                                   vit_smoothing(m));
    k->download(m->losses, acts + a.losses, sizeof(real) * (size_t)B);
    k->download(m->host_logits, acts + a.logits, sizeof(real) * (size_t)B * K);
    phase_done(m, "forward head and loss", -1);

    // top-1 and top-5 on the host: B x classes values, the first maximum wins ties
    ForwardStats st = {0};
    for (int b = 0; b < B; b++) {
        const real *z = m->host_logits + (size_t)b * K;
        int y = labels[b], best = 0, above = 0;
        if (y < 0) {  // padding of a last, partial evaluation batch
            m->predictions[b] = -1;
            continue;
        }
        for (int i = 1; i < K; i++) best = z[i] > z[best] ? i : best;
        for (int i = 0; i < K; i++) above += z[i] > z[y] || (z[i] == z[y] && i < y);
        m->predictions[b] = best;
        st.loss_sum += m->losses[b];
        st.example_acc_sum += best == y;
        st.top5_sum += above < 5;
        st.n_scored++, st.n_examples++;
    }
    return st;
}

static void vit_backward(Model *m) {
    const ModelConfig *c = &m->cfg;
    const VisionConfig *v = &c->vision;
    const F(Backend) *k = m->k;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, K = c->vocab_size, np = vit_patches(v);
    int in_w = v->patch * v->patch * v->channels, rows = B * np;
    size_t NC = (size_t)N * C;
    ActsLayout a = acts_layout(c, k, B, T, NULL);
    real *acts = m->acts, *s = m->scratch;
    real *dres = s + a.s_dres, *dln = s + a.s_dln, *dlogits = s + a.s_dlogits;
    real *dlosses = s + a.s_dlosses;
    k->loss_seed(dlosses, m->targets_dev, m->loss_scale, B);
    k->zero(dlogits, (size_t)B * K);
    k->crossentropy_smooth_backward(dlogits, dlosses, acts + a.logits, m->targets_dev, B, K,
                                    vit_smoothing(m));
    k->bias_backward(m->g_vis.head_b, dlogits, B, K);
    real *dpooled = dres;  // [B, C], read before dres takes the final norm's input gradient
    k->zero(dpooled, (size_t)B * C);
    k->matmul_backward(dpooled, m->g_lm_head, dlogits, acts + a.head_in, m->lm_head, B, C, K);
    k->zero(dln, NC);
    if (v->pool == VIT_POOL_CLS)
        k->embedding_backward(dln, dpooled, m->head_dev, B, C);
    else
        k->mean_pool_backward(dln, dpooled, B, T, C);
    k->zero(dres, NC);
    norm_backward(m, dres, m->g_lnf, m->g_lnf_b, dln, acts + a.layer[c->n_layers - 1].res2, m->lnf,
                  acts + a.lnf_stats, N);
    grads_final(m, m->lnf_offset);
    phase_done(m, "backward head", -1);
    blocks_backward(m, &a, NULL, dres);
    const real *demb = drop_grad(m, s + a.s_drop, dres, N, C, 0);
    if (v->pos == VIT_POS_LEARNED) k->positions_backward(m->g_vis.pos, demb, N, T, C);
    const real *dpatch = demb;
    if (v->pool == VIT_POOL_CLS) {  // the class tokens' rows summed; the patches' gathered
        k->embedding_forward(dln, m->head_dev, demb, B, C);
        k->bias_backward(m->g_vis.cls, dln, B, C);
        k->embedding_forward(dln, m->ids_dev, demb, rows, C);
        dpatch = dln;
    }
    k->bias_backward(m->g_vis.patch_b, dpatch, rows, C);
    k->matmul_backward(NULL, m->g_vis.patch_w, dpatch, acts + a.v_patches, m->vis.patch_w, rows,
                       in_w, C);
    grads_final(m, 0);
    phase_done(m, "backward embedding", -1);
}
