// Model assembly over the op kernels; compiled twice (float: the trainer, double: the
// whole-model gradient check).
#include "model.h"

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

// The parameter table in its one canonical order (the flat buffer's layout and the names a
// checkpoint uses).
static int lay_out_params(Model *m, ParamInfo *info) {
    const ModelConfig *c = &m->cfg;
    int n = 0, C = c->d_model, V = c->vocab_size;
    size_t off = 0;
    char name[128];
    add_param(info, &n, &off, "wte", V, C, INIT_NORMAL);
    if (c->max_positions > 0) add_param(info, &n, &off, "wpe", c->max_positions, C, INIT_NORMAL);
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof(name), "layers.%d.ln1", l);
        add_param(info, &n, &off, name, C, 0, INIT_ONES);
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
            add_param(info, &n, &off, name, C, 0, INIT_ONES);
            snprintf(name, sizeof(name), "layers.%d.mlp.w_fc", l);
            add_param(info, &n, &off, name, fc_rows, C, INIT_NORMAL);
            snprintf(name, sizeof(name), "layers.%d.mlp.w_proj", l);
            add_param(info, &n, &off, name, C, c->d_ff, INIT_NORMAL_RESIDUAL);
        }
    }
    add_param(info, &n, &off, "lnf", C, 0, INIT_ONES);
    if (!c->tie_embeddings) add_param(info, &n, &off, "lm_head", V, C, INIT_NORMAL);
    m->n_params = off;
    return n;
}

// Points the named tensors into the flat buffer `base` (params or grads), in table order.
static void bind(Model *m, real *base, real **wte, real **wpe, real **lnf, real **lm_head,
                 F(LayerWeights) *layers) {
    const ModelConfig *c = &m->cfg;
    int i = 0;
    *wte = base + m->info[i++].offset;
    *wpe = c->max_positions > 0 ? base + m->info[i++].offset : NULL;
    for (int l = 0; l < c->n_layers; l++) {
        F(LayerWeights) *w = &layers[l];
        memset(w, 0, sizeof(*w));
        w->ln1 = base + m->info[i++].offset;
        for (int k = 0; k < m->n_mixer_params[l]; k++) w->mixer[k] = base + m->info[i++].offset;
        if (c->mlp != MLP_NONE) {
            w->ln2 = base + m->info[i++].offset;
            w->w_fc = base + m->info[i++].offset;
            w->w_proj = base + m->info[i++].offset;
        }
    }
    *lnf = base + m->info[i++].offset;
    *lm_head = c->tie_embeddings ? *wte : base + m->info[i++].offset;
}

int F(model_build)(Model *m, const ModelConfig *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
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
        if (F(mixer_check)(cfg, l, err, errlen)) return -1;
    for (int l = 0; l < cfg->n_layers; l++)
        if (cfg->rope[l] && (cfg->d_model / cfg->n_heads) % 2) {
            snprintf(err, errlen,
                     "rotary embeddings need an even head dimension (d_model/n_heads "
                     "= %d); set model.rope=off",
                     cfg->d_model / cfg->n_heads);
            return -1;
        }
    m->info = calloc((size_t)cfg->n_layers * (MAX_PARAMS_PER_LAYER + 3) + 3, sizeof(ParamInfo));
    m->n_tensors = lay_out_params(m, m->info);
    m->params = calloc(m->n_params, sizeof(real));
    m->grads = calloc(m->n_params, sizeof(real));
    if (!m->params || !m->grads) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        return -1;
    }
    bind(m, m->params, &m->wte, &m->wpe, &m->lnf, &m->lm_head, m->layer);
    bind(m, m->grads, &m->g_wte, &m->g_wpe, &m->g_lnf, &m->g_lm_head, m->g_layer);
    return 0;
}

void F(model_free)(Model *m) {
    free(m->info);
    free(m->params);
    free(m->grads);
    free(m->acts);
    free(m->scratch);
    free(m->predictions);
    memset(m, 0, sizeof(*m));
}

// Stream of an INIT_CUSTOM tensor: a function of (seed, layer, index in the layer's mixer
// specs, redraw index), so a redraw needs no state and every rank draws the same values.
static uint64_t custom_key(uint64_t seed, const ParamInfo *p, int64_t redraw_index) {
    return rng_key(seed, 0xFEA7, ((uint64_t)p->layer << 16) | (uint64_t)p->index,
                   (uint64_t)redraw_index);
}

// Normal(0, init_std) for matrices; residual-branch outputs scaled by 1/sqrt(2L) (GPT-2), so
// the residual stream's variance does not grow with depth. Tensor i draws from stream
// (seed, i): the values do not depend on how many ranks or threads there are.
void F(model_init)(Model *m, uint64_t seed) {
    double resid_scale = 1.0 / sqrt(2.0 * m->cfg.n_layers);
    for (int t = 0; t < m->n_tensors; t++) {
        const ParamInfo *p = &m->info[t];
        real *w = m->params + p->offset;
        if (p->init == INIT_CUSTOM) {
            F(mixer_init_param)(&m->cfg, p->layer, p->index, custom_key(seed, p, 0), w);
            continue;
        }
        uint64_t key = rng_key(seed, 0x1417, (uint64_t)t, 0);
        double std = m->cfg.init_std * (p->init == INIT_NORMAL_RESIDUAL ? resid_scale : 1.0);
        for (size_t i = 0; i < p->size; i++) {
            if (p->init == INIT_ONES)
                w[i] = 1;
            else if (p->init == INIT_ZEROS)
                w[i] = 0;
            else if (p->init == INIT_CONST)
                w[i] = (real)p->init_value;
            else
                w[i] = (real)(std * rng_normal(key, i));
        }
    }
}

void F(model_redraw)(Model *m, uint64_t seed, int64_t redraw_index) {
    for (int t = 0; t < m->n_tensors; t++) {
        const ParamInfo *p = &m->info[t];
        if (p->redraw)
            F(mixer_init_param)(&m->cfg, p->layer, p->index, custom_key(seed, p, redraw_index),
                                m->params + p->offset);
    }
}

void F(model_zero_grad)(Model *m) {
    memset(m->grads, 0, sizeof(real) * m->n_params);
}

// Activation layout of one batch shape, as offsets into m->acts.
typedef struct {
    size_t ln1, ln1_rstd, mix, mix_out, res1, ln2, ln2_rstd, fc, act, mlp_out, res2;
} LayerActs;
typedef struct {
    size_t emb, lnf, lnf_rstd, logits, losses, total;
    LayerActs layer[MAX_LAYERS];
    // backward scratch offsets into m->scratch
    size_t s_dres, s_dln, s_dact, s_dfc, s_dlogits, s_dlosses, s_mixer, s_total;
} ActsLayout;

static ActsLayout acts_layout(const ModelConfig *c, int B, int T) {
    ActsLayout a;
    memset(&a, 0, sizeof(a));
    size_t N = (size_t)B * T, C = c->d_model, V = c->vocab_size, off = 0, mix_scratch = 0;
    size_t fc_w = c->mlp == MLP_SWIGLU ? 2 * (size_t)c->d_ff : (size_t)c->d_ff;
    a.emb = off, off += N * C;
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *la = &a.layer[l];
        la->ln1 = off, off += N * C;
        la->ln1_rstd = off, off += N;
        la->mix = off, off += F(mixer_acts_size)(c, l, B, T);
        la->mix_out = off, off += N * C;
        la->res1 = off, off += N * C;
        if (c->mlp != MLP_NONE) {
            la->ln2 = off, off += N * C;
            la->ln2_rstd = off, off += N;
            la->fc = off, off += N * fc_w;
            la->act = off, off += N * c->d_ff;
            la->mlp_out = off, off += N * C;
            la->res2 = off, off += N * C;
        } else {
            la->res2 = la->res1;
        }
        size_t s = F(mixer_scratch_size)(c, l, B, T);
        mix_scratch = s > mix_scratch ? s : mix_scratch;
    }
    a.lnf = off, off += N * C;
    a.lnf_rstd = off, off += N;
    a.logits = off, off += N * V;
    a.losses = off, off += N;
    a.total = off;
    off = 0;
    a.s_dres = off, off += N * C;
    a.s_dln = off, off += N * C;
    a.s_dact = off, off += c->mlp != MLP_NONE ? N * c->d_ff : 0;
    a.s_dfc = off, off += c->mlp != MLP_NONE ? N * fc_w : 0;
    a.s_dlogits = off, off += N * V;
    a.s_dlosses = off, off += N;
    a.s_mixer = off, off += mix_scratch;
    a.s_total = off;
    return a;
}

int F(model_set_batch)(Model *m, int B, int T) {
    if (m->B == B && m->T == T && m->acts) return 0;
    if (m->cfg.max_positions > 0 && T > m->cfg.max_positions) return -1;
    ActsLayout a = acts_layout(&m->cfg, B, T);
    free(m->acts);
    free(m->scratch);
    free(m->predictions);
    m->acts = malloc(sizeof(real) * a.total);
    m->scratch = malloc(sizeof(real) * a.s_total);
    m->predictions = malloc(sizeof(int) * (size_t)B * T);
    m->acts_size = a.total, m->scratch_size = a.s_total;
    m->B = B, m->T = T;
    return m->acts && m->scratch && m->predictions ? 0 : -1;
}

ForwardStats F(model_forward)(Model *m, const int *ids, const int *targets, real loss_scale) {
    const ModelConfig *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size;
    ActsLayout a = acts_layout(c, B, T);
    real *acts = m->acts;
    m->ids = ids, m->targets = targets, m->loss_scale = loss_scale;

    F(embedding_forward)(acts + a.emb, ids, m->wte, N, C);
    if (m->wpe)  // position t of every sequence adds row t of wpe
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)
                acts[a.emb + (size_t)n * C + i] += m->wpe[(size_t)(n % T) * C + i];
    const real *x = acts + a.emb;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerActs *la = &a.layer[l];
        F(LayerWeights) *w = &m->layer[l];
        F(rmsnorm_forward)(acts + la->ln1, acts + la->ln1_rstd, x, w->ln1, N, C, c->norm_eps);
        F(mixer_forward)(c, l, B, T, acts + la->mix_out, acts + la->ln1, w->mixer, acts + la->mix);
        real *res1 = acts + la->res1;
        for (size_t i = 0; i < (size_t)N * C; i++) res1[i] = x[i] + acts[la->mix_out + i];
        if (c->mlp != MLP_NONE) {
            int fc_w = c->mlp == MLP_SWIGLU ? 2 * c->d_ff : c->d_ff;
            F(rmsnorm_forward)(acts + la->ln2, acts + la->ln2_rstd, res1, w->ln2, N, C,
                               c->norm_eps);
            F(matmul_forward)(acts + la->fc, acts + la->ln2, w->w_fc, N, C, fc_w);
            if (c->mlp == MLP_SWIGLU)
                F(swiglu_forward)(acts + la->act, acts + la->fc, N, c->d_ff);
            else
                F(gelu_forward)(acts + la->act, acts + la->fc, (size_t)N * c->d_ff);
            F(matmul_forward)(acts + la->mlp_out, acts + la->act, w->w_proj, N, c->d_ff, C);
            real *res2 = acts + la->res2;
            for (size_t i = 0; i < (size_t)N * C; i++) res2[i] = res1[i] + acts[la->mlp_out + i];
        }
        x = acts + la->res2;
    }
    F(rmsnorm_forward)(acts + a.lnf, acts + a.lnf_rstd, x, m->lnf, N, C, c->norm_eps);
    F(matmul_forward)(acts + a.logits, acts + a.lnf, m->lm_head, N, C, V);
    F(crossentropy_forward)(acts + a.losses, acts + a.logits, targets, N, V);

    ForwardStats st = {0};
    for (int b = 0; b < B; b++) {
        int scored = 0, correct = 0;
        for (int t = 0; t < T; t++) {
            int n = b * T + t;
            m->predictions[n] = -1;
            if (targets[n] < 0) continue;
            const real *z = acts + a.logits + (size_t)n * V;
            int best = 0;
            for (int v = 1; v < V; v++) best = z[v] > z[best] ? v : best;
            m->predictions[n] = best;
            scored++;
            correct += best == targets[n];
            st.loss_sum += acts[a.losses + n];
        }
        st.n_scored += scored;
        if (scored) {
            st.example_acc_sum += (double)correct / scored;
            st.n_examples++;
        }
    }
    return st;
}

int F(model_layer_aux)(Model *m, int layer, OpAux *out) {
    ActsLayout a = acts_layout(&m->cfg, m->B, m->T);
    return F(mixer_aux)(&m->cfg, layer, m->B, m->T, m->layer[layer].mixer,
                        m->acts + a.layer[layer].mix, out);
}

void F(model_backward)(Model *m) {
    const ModelConfig *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size;
    size_t NC = (size_t)N * C;
    ActsLayout a = acts_layout(c, B, T);
    real *acts = m->acts, *s = m->scratch;
    real *dres = s + a.s_dres, *dln = s + a.s_dln, *dlogits = s + a.s_dlogits;
    real *dlosses = s + a.s_dlosses;

    for (int n = 0; n < N; n++) dlosses[n] = m->targets[n] >= 0 ? m->loss_scale : 0;
    memset(dlogits, 0, sizeof(real) * (size_t)N * V);
    F(crossentropy_backward)(dlogits, dlosses, acts + a.logits, m->targets, N, V);
    memset(dln, 0, sizeof(real) * NC);
    F(matmul_backward)(dln, m->g_lm_head, dlogits, acts + a.lnf, m->lm_head, N, C, V);
    const real *x_last = acts + (c->n_layers ? a.layer[c->n_layers - 1].res2 : a.emb);
    memset(dres, 0, sizeof(real) * NC);
    F(rmsnorm_backward)(dres, m->g_lnf, dln, x_last, m->lnf, acts + a.lnf_rstd, N, C);

    // dres is the gradient of the residual stream; each branch adds its input's gradient.
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const LayerActs *la = &a.layer[l];
        F(LayerWeights) *w = &m->layer[l], *g = &m->g_layer[l];
        const real *x = l ? acts + a.layer[l - 1].res2 : acts + a.emb;
        if (c->mlp != MLP_NONE) {
            int fc_w = c->mlp == MLP_SWIGLU ? 2 * c->d_ff : c->d_ff;
            real *dact = s + a.s_dact, *dfc = s + a.s_dfc;
            memset(dact, 0, sizeof(real) * (size_t)N * c->d_ff);
            memset(dfc, 0, sizeof(real) * (size_t)N * fc_w);
            memset(dln, 0, sizeof(real) * NC);
            F(matmul_backward)(dact, g->w_proj, dres, acts + la->act, w->w_proj, N, c->d_ff, C);
            if (c->mlp == MLP_SWIGLU)
                F(swiglu_backward)(dfc, dact, acts + la->fc, N, c->d_ff);
            else
                F(gelu_backward)(dfc, dact, acts + la->fc, (size_t)N * c->d_ff);
            F(matmul_backward)(dln, g->w_fc, dfc, acts + la->ln2, w->w_fc, N, C, fc_w);
            F(rmsnorm_backward)(dres, g->ln2, dln, acts + la->res1, w->ln2, acts + la->ln2_rstd, N,
                                C);
        }
        memset(dln, 0, sizeof(real) * NC);
        F(mixer_backward)(c, l, B, T, dln, g->mixer, dres, acts + la->ln1, w->mixer,
                          acts + la->mix, s + a.s_mixer);
        F(rmsnorm_backward)(dres, g->ln1, dln, x, w->ln1, acts + la->ln1_rstd, N, C);
    }
    F(embedding_backward)(m->g_wte, dres, m->ids, N, C);
    if (m->g_wpe)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)
                m->g_wpe[(size_t)(n % T) * C + i] += dres[(size_t)n * C + i];
}
