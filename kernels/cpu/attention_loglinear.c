// Log-linear attention (Guo et al. 2025; mixers.md sections 6 and 7) with any feature map.
// The prefix of position t is split into Fenwick buckets: source s <= t is at level
// l = bit_length(t XOR s) (level 0 is t itself), and bucket l is weighted by the
// data-dependent lambda_t^(l) = softplus(x_t W_x + b) >= 0:
//   o_t = sum_s lambda_t^(level(t,s)) (p_t . f_s) v_s / (same sum with v_s = 1, + eps).
// Training form (section 6.5), per (batch, head), with chunks of Lc = 2^c positions:
//   - inside a chunk the level is bit_length(i XOR j) of the in-chunk indices: a masked,
//     level-weighted Lc x Lc product;
//   - chunk states N_0[j] = Fk_j^T V'_j sit at the leaves of a segment tree of exact pairwise
//     sums N_h[i] = N_{h-1}[2i] + N_{h-1}[2i+1]; chunk ct reads, for every set bit h of ct,
//     the node (ct >> h) XOR 1 of height h, which holds exactly its level c + 1 + h bucket.
// Everything is a GEMM over whole chunks: parallel over the sequence, no per-token loop.
// Backward runs the same tree transposed: node gradients are gathered from the chunks that
// read them, pushed down to the leaves, and turned into dFk, dV' there.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

static int level_of(unsigned x, int L) {
    int l = bit_length(x);
    return l < L ? l : L - 1;
}

typedef struct {
    int T, m, Dv, Lc, cbits, nc, heights, L;
    int node_off[32];  // first node of each height in the tree buffer
    size_t n_nodes;
} Plan;

static Plan plan_of(const OpShape *s, int m, int Dv) {
    Plan p = {.T = s->T, .m = m, .Dv = Dv, .Lc = loglinear_pow2_chunk(s), .L = loglinear_levels(s)};
    p.cbits = bit_length((unsigned)p.Lc) - 1;
    p.nc = (p.T + p.Lc - 1) / p.Lc;
    p.heights = p.nc > 1 ? bit_length((unsigned)(p.nc - 1)) : 0;
    for (int h = 0; h < p.heights; h++) {
        p.node_off[h] = (int)p.n_nodes;
        p.n_nodes += (size_t)((p.nc + (1 << h) - 1) >> h);
    }
    return p;
}

static real *node(const Plan *p, real *tree, int h, int i) {
    return tree + ((size_t)p->node_off[h] + i) * p->m * p->Dv;
}

// Leaves N_0[j] = Fk_j^T V'_j, then the pairwise sums up the tree.
static void build_tree(const Plan *p, const real *f, const real *v, real *tree) {
    size_t sz = (size_t)p->m * p->Dv;
    if (!p->heights) return;
    for (int j = 0; j < p->nc; j++) {
        int t0 = j * p->Lc, n = p->T - t0 < p->Lc ? p->T - t0 : p->Lc;
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->m, p->Dv, n, 1,
                   f + (size_t)t0 * p->m, p->m, v + (size_t)t0 * p->Dv, p->Dv, 0,
                   node(p, tree, 0, j), p->Dv);
    }
    for (int h = 1; h < p->heights; h++) {
        int count = (p->nc + (1 << h) - 1) >> h, below = (p->nc + (1 << (h - 1)) - 1) >> (h - 1);
        for (int i = 0; i < count; i++) {
            real *dst = node(p, tree, h, i);
            memcpy(dst, node(p, tree, h - 1, 2 * i), sizeof(real) * sz);
            if (2 * i + 1 < below) {
                const real *b = node(p, tree, h - 1, 2 * i + 1);
                for (size_t k = 0; k < sz; k++) dst[k] += b[k];
            }
        }
    }
}

// Per-head working set.
typedef struct {
    real *p, *f, *v, *lam, *num, *tree, *scores, *tmp;
} Work;

static Work work_new(const Plan *p) {
    Work w;
    w.p = malloc(sizeof(real) * (size_t)p->T * p->m);
    w.f = malloc(sizeof(real) * (size_t)p->T * p->m);
    w.v = malloc(sizeof(real) * (size_t)p->T * p->Dv);
    w.lam = malloc(sizeof(real) * (size_t)p->T * p->L);
    w.num = malloc(sizeof(real) * (size_t)p->T * p->Dv);
    w.tree = malloc(sizeof(real) * (p->n_nodes ? p->n_nodes : 1) * p->m * p->Dv);
    w.scores = malloc(sizeof(real) * (size_t)p->Lc * p->Lc * 2);
    w.tmp = malloc(sizeof(real) * (size_t)p->Lc * p->Dv);
    return w;
}

static void work_free(Work *w) {
    free(w->p), free(w->f), free(w->v), free(w->lam), free(w->num), free(w->tree);
    free(w->scores), free(w->tmp);
}

// Features, V' (ones column when normalised) and lambda of head h of sequence b.
static void load_head(const Plan *pl, Work *w, const F(FeatureMap) * fm, const OpShape *s, int b,
                      int h, const real *qkv_btc3, const real *lam_pre, const real *lam_bias) {
    int T = s->T, C = s->C, H = s->H, D = C / H, L = pl->L;
    const real *head = qkv_btc3 + (size_t)b * T * 3 * C + h * D;
    F(fmap_forward)(fm, T, head, 3 * C, w->p);
    F(fmap_forward)(fm, T, head + C, 3 * C, w->f);
    for (int t = 0; t < T; t++) {
        memcpy(w->v + (size_t)t * pl->Dv, head + (size_t)t * 3 * C + 2 * C, sizeof(real) * D);
        if (pl->Dv > D) w->v[(size_t)t * pl->Dv + D] = 1;
        const real *pre = lam_pre + ((size_t)(b * T + t) * H + h) * L;
        for (int l = 0; l < L; l++)
            w->lam[(size_t)t * L + l] = F(softplus)(pre[l] + lam_bias[h * L + l]);
    }
}

// num = unnormalised log-linear readout N' [T, Dv] of the loaded head.
static void head_forward(const Plan *pl, Work *w) {
    int m = pl->m, Dv = pl->Dv, L = pl->L;
    build_tree(pl, w->f, w->v, w->tree);
    for (int ct = 0; ct < pl->nc; ct++) {
        int t0 = ct * pl->Lc, n = pl->T - t0 < pl->Lc ? pl->T - t0 : pl->Lc;
        const real *pc = w->p + (size_t)t0 * m, *lam = w->lam + (size_t)t0 * L;
        real *oc = w->num + (size_t)t0 * Dv, *sc = w->scores;
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, m, 1, pc, m,
                   w->f + (size_t)t0 * m, m, 0, sc, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                sc[i * n + j] = j <= i ? sc[i * n + j] * lam[i * L + level_of(i ^ j, L)] : 0;
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, n, 1, sc, n,
                   w->v + (size_t)t0 * Dv, Dv, 0, oc, Dv);
        for (int h = 0; h < pl->heights; h++) {
            if (!((ct >> h) & 1)) continue;
            int l = level_of(1u << (pl->cbits + h), L);  // level c + 1 + h
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, m, 1, pc, m,
                       node(pl, w->tree, h, (ct >> h) ^ 1), Dv, 0, w->tmp, Dv);
            for (int i = 0; i < n; i++)
                for (int k = 0; k < Dv; k++) oc[i * Dv + k] += lam[i * L + l] * w->tmp[i * Dv + k];
        }
    }
}

void F(attention_loglinear_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                                    const real *lam_pre_bthl, const real *lam_bias_hl,
                                    const real *const *fmap_params, const OpShape *s) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    Plan pl = plan_of(s, F(fmap_width)(s), lo.normalize ? D + 1 : D);
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
#pragma omp parallel
    {
        Work w = work_new(&pl);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            load_head(&pl, &w, &fm, s, b, h, qkv_btc3, lam_pre_bthl, lam_bias_hl);
            head_forward(&pl, &w);
            for (int t = 0; t < T; t++) {
                real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                const real *nr = w.num + (size_t)t * pl.Dv;
                real den = lo.normalize ? nr[D] + (real)lo.eps : 1;
                if (lo.normalize) den_bht[(size_t)bh * T + t] = den;
                for (int j = 0; j < D; j++) o[j] = nr[j] / den;
            }
        }
        work_free(&w);
    }
    F(fmap_close)(&fm);
}

// Gradients of the loaded head given dN' [T, Dv]: dp, df, dv += ..., dlam = ... [T, L].
static void head_backward(const Plan *pl, Work *w, const real *dn, real *dp, real *df, real *dv,
                          real *dlam, real *dtree) {
    int m = pl->m, Dv = pl->Dv, L = pl->L;
    size_t sz = (size_t)m * Dv;
    build_tree(pl, w->f, w->v, w->tree);
    memset(dtree, 0, sizeof(real) * pl->n_nodes * sz);
    for (int ct = 0; ct < pl->nc; ct++) {
        int t0 = ct * pl->Lc, n = pl->T - t0 < pl->Lc ? pl->T - t0 : pl->Lc;
        const real *pc = w->p + (size_t)t0 * m, *fc = w->f + (size_t)t0 * m;
        const real *vc = w->v + (size_t)t0 * Dv, *dnc = dn + (size_t)t0 * Dv;
        const real *lam = w->lam + (size_t)t0 * L;
        real *dlc = dlam + (size_t)t0 * L, *sc = w->scores, *gc = w->scores + (size_t)n * n;
        // In-chunk: with S = P Fk^T and G = dN' V'^T, dlambda^(level(i,j)) += S (.) G, and the
        // level-weighted masks give dP += (Lam.G) Fk, dFk += (Lam.G)^T P, dV' += (Lam.S)^T dN'.
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, m, 1, pc, m, fc, m, 0, sc, n);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Dv, 1, dnc, Dv, vc, Dv, 0, gc, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (j > i) {
                    sc[i * n + j] = gc[i * n + j] = 0;
                    continue;
                }
                int l = level_of(i ^ j, L);
                dlc[i * L + l] += sc[i * n + j] * gc[i * n + j];
                sc[i * n + j] *= lam[i * L + l];
                gc[i * n + j] *= lam[i * L + l];
            }
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m, n, 1, gc, n, fc, m, 1,
                   dp + (size_t)t0 * m, m);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, m, n, 1, gc, n, pc, m, 1,
                   df + (size_t)t0 * m, m);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, Dv, n, 1, sc, n, dnc, Dv, 1,
                   dv + (size_t)t0 * Dv, Dv);
        // Tree reads: R = P N_h gives dlambda^(l) += dN' . R; with dN'_l = diag(lambda^(l)) dN',
        // dP += dN'_l N_h^T and the node's gradient dN_h += P^T dN'_l.
        for (int h = 0; h < pl->heights; h++) {
            if (!((ct >> h) & 1)) continue;
            int l = level_of(1u << (pl->cbits + h), L), id = (ct >> h) ^ 1;
            const real *nd = node(pl, w->tree, h, id);
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, m, 1, pc, m, nd, Dv, 0,
                       w->tmp, Dv);
            for (int i = 0; i < n; i++) {
                real d = 0;
                for (int k = 0; k < Dv; k++) d += dnc[i * Dv + k] * w->tmp[i * Dv + k];
                dlc[i * L + l] += d;
                for (int k = 0; k < Dv; k++) w->tmp[i * Dv + k] = lam[i * L + l] * dnc[i * Dv + k];
            }
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, Dv, 1, w->tmp, Dv, nd, Dv, 1,
                       dp + (size_t)t0 * m, m);
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, Dv, n, 1, pc, m, w->tmp, Dv, 1,
                       node(pl, dtree, h, id), Dv);
        }
    }
    // A parent is the sum of its children: each child receives the parent's gradient.
    for (int h = pl->heights - 1; h >= 1; h--) {
        int count = (pl->nc + (1 << h) - 1) >> h, below = (pl->nc + (1 << (h - 1)) - 1) >> (h - 1);
        for (int i = 0; i < count; i++)
            for (int c = 2 * i; c < 2 * i + 2 && c < below; c++) {
                const real *src = node(pl, dtree, h, i);
                real *dst = node(pl, dtree, h - 1, c);
                for (size_t k = 0; k < sz; k++) dst[k] += src[k];
            }
    }
    // Leaves N_0[j] = Fk_j^T V'_j: dFk_j += V'_j dN_0^T, dV'_j += Fk_j dN_0.
    for (int j = 0; pl->heights && j < pl->nc; j++) {
        int t0 = j * pl->Lc, n = pl->T - t0 < pl->Lc ? pl->T - t0 : pl->Lc;
        const real *dnode = node(pl, dtree, 0, j);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, Dv, 1, w->v + (size_t)t0 * Dv, Dv,
                   dnode, Dv, 1, df + (size_t)t0 * m, m);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, m, 1, w->f + (size_t)t0 * m, m,
                   dnode, Dv, 1, dv + (size_t)t0 * Dv, Dv);
    }
}

void F(attention_loglinear_backward)(real *dqkv_btc3, real *dlam_pre_bthl, real *dlam_bias_hl,
                                     real *const *dfmap_params, const real *dout_btc,
                                     const real *out_btc, const real *den_bht, const real *qkv_btc3,
                                     const real *lam_pre_bthl, const real *lam_bias_hl,
                                     const real *const *fmap_params, const OpShape *s) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    Plan pl = plan_of(s, F(fmap_width)(s), lo.normalize ? D + 1 : D);
    int m = pl.m, Dv = pl.Dv, L = pl.L;
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
    real *dbias_bh = calloc((size_t)B * H * L, sizeof(real));
#pragma omp parallel
    {
        Work w = work_new(&pl);
        real *dn = malloc(sizeof(real) * (size_t)T * Dv),
             *dp = malloc(sizeof(real) * (size_t)T * m);
        real *df = malloc(sizeof(real) * (size_t)T * m),
             *dv = malloc(sizeof(real) * (size_t)T * Dv);
        real *dlam = malloc(sizeof(real) * (size_t)T * L);
        real *dtree = malloc(sizeof(real) * (pl.n_nodes ? pl.n_nodes : 1) * m * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            load_head(&pl, &w, &fm, s, b, h, qkv_btc3, lam_pre_bthl, lam_bias_hl);
            for (int t = 0; t < T; t++) {  // o = n / den: dn = do / den, dden = -(do . o) / den
                const real *g = dout_btc + ((size_t)b * T + t) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                real *dnr = dn + (size_t)t * Dv;
                real den = lo.normalize ? den_bht[(size_t)bh * T + t] : 1, dot = 0;
                for (int j = 0; j < D; j++) dnr[j] = g[j] / den, dot += g[j] * o[j];
                if (lo.normalize) dnr[D] = -dot / den;
            }
            memset(dp, 0, sizeof(real) * (size_t)T * m);
            memset(df, 0, sizeof(real) * (size_t)T * m);
            memset(dv, 0, sizeof(real) * (size_t)T * Dv);
            memset(dlam, 0, sizeof(real) * (size_t)T * L);
            head_backward(&pl, &w, dn, dp, df, dv, dlam, dtree);
            size_t off = (size_t)b * T * 3 * C + h * D;
            const real *head = qkv_btc3 + off;
            real *dhead = dqkv_btc3 + off, *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            F(fmap_backward)(&fm, T, head, 3 * C, w.p, dp, dhead, 3 * C, dparam);
            F(fmap_backward)(&fm, T, head + C, 3 * C, w.f, df, dhead + C, 3 * C, dparam);
            for (int t = 0; t < T; t++) {
                for (int j = 0; j < D; j++)
                    dhead[(size_t)t * 3 * C + 2 * C + j] += dv[(size_t)t * Dv + j];
                size_t at = ((size_t)(b * T + t) * H + h) * L;
                for (int l = 0; l < L; l++) {  // softplus' = sigmoid
                    real g = dlam[(size_t)t * L + l] *
                             F(sigmoid)(lam_pre_bthl[at + l] + lam_bias_hl[h * L + l]);
                    dlam_pre_bthl[at + l] += g;
                    dbias_bh[(size_t)bh * L + l] += g;
                }
            }
        }
        work_free(&w);
        free(dn), free(dp), free(df), free(dv), free(dlam), free(dtree);
    }
    for (int bh = 0; bh < B * H; bh++)  // fixed order: reproducible for any thread count
        for (int l = 0; l < L; l++) dlam_bias_hl[(bh % H) * L + l] += dbias_bh[(size_t)bh * L + l];
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap_params);
    free(dparam_bh), free(dbias_bh);
    F(fmap_close)(&fm);
}

// The Fenwick bucket states at the last position, S^(l) = sum over bucket l of f_s v_s^T
// (unweighted, as the recurrent form stores them), their energy |S^(l)|_F^2 and their
// effective rank (E008's question: how much of each level's state is used), averaged over
// sequences and heads (mixers.md 6.8), after the feature-map time.
int F(attention_loglinear_aux)(const OpShape *s, const real *const *in, OpAux *out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, m = F(fmap_width)(s);
    int L = loglinear_levels(s);
    out[0] = (OpAux){.name = "feature_map_ms",
                     .value = F(fmap_time_ms)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS + 1)};
    F(FeatureMap) fm = F(fmap_open)(s, in + CORE_IN_PARAMS + 1);
    real *f = malloc(sizeof(real) * (size_t)T * m);
    double *state = malloc(sizeof(double) * (size_t)L * m * D), *energy = calloc(L, sizeof(double));
    double *erank = calloc(L, sizeof(double));
    for (int bh = 0; bh < B * H; bh++) {
        const real *head = in[CORE_IN_QKV] + (size_t)(bh / H) * T * 3 * C + (bh % H) * D;
        F(fmap_forward)(&fm, T, head + C, 3 * C, f);
        memset(state, 0, sizeof(double) * (size_t)L * m * D);
        for (int u = 0; u < T; u++) {
            double *sl = state + (size_t)level_of((unsigned)((T - 1) ^ u), L) * m * D;
            const real *v = head + (size_t)u * 3 * C + 2 * C;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < D; j++) sl[i * D + j] += f[(size_t)u * m + i] * v[j];
        }
        for (int l = 0; l < L; l++) {
            for (size_t i = 0; i < (size_t)m * D; i++)
                energy[l] += pow(state[(size_t)l * m * D + i], 2) / (B * H);
            erank[l] += F(state_effective_rank)(state + (size_t)l * m * D, m, D) / (B * H);
        }
    }
    for (int l = 0; l < L; l++) {
        out[1 + l] = (OpAux){.value = energy[l]};
        snprintf(out[1 + l].name, sizeof(out[1 + l].name), "level_energy_%d", l);
        if (1 + 2 * L > OP_MAX_AUX) continue;  // (more levels than the figures hold: energies only)
        out[1 + L + l] = (OpAux){.value = erank[l]};
        snprintf(out[1 + L + l].name, sizeof(out[1 + L + l].name), "state_erank_%d", l);
    }
    free(f), free(state), free(energy), free(erank);
    F(fmap_close)(&fm);
    return 1 + 2 * L > OP_MAX_AUX ? 1 + L : 1 + 2 * L;
}

// ---- the rows: log-linear attention, with any feature map or cosFormer's ---------------------

// x W_x^T gives the per-level pre-activations [B, T, H, L]; the bias b starts at log(e - 1)
// and W_x at zero (the mixer layer), so every lambda = softplus(b) = 1 at initialisation:
// exactly the plain linear attention of the same features (mixers.md 6.2).
#define LOG_E_MINUS_1 0.5413248546129181
static int loglinear_params(const OpShape *s, OpParam *out) {
    out[0] = (OpParam){.name = "lam_bias",
                       .rows = s->H,
                       .cols = loglinear_levels(s),
                       .init = INIT_CONST,
                       .init_value = LOG_E_MINUS_1,
                       .trainable = 1};
    return 1 + F(fmap_params)(s, out + 1);
}
static void loglinear_init(const OpShape *s, int index, uint64_t key, real *w) {
    F(fmap_init_param)(s, index - 1, key, w);  // lam_bias is INIT_CONST, never custom
}
static void loglinear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, (size_t)s->H * loglinear_levels(s), p, loglinear_params(s, p));
    *saved = (size_t)s->B * s->H * s->T;
}
static void loglinear_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_loglinear_forward)(out[0], sv, in[0], in[1], in[2], in + 3, s);
}
static void loglinear_bwd(const OpShape *s, const real *const *in, const real *const *out,
                          const real *sv, const real *const *dout, real *const *din) {
    F(attention_loglinear_backward)
    (din[0], din[1], din[2], din + 3, dout[0], out[0], sv, in[0], in[1], in[2], in + 3, s);
}

// Per head and token: the linear attention of the same map (in-chunk part, state update) plus
// one m x Dv state read per level above the chunk's, and the level weights of the in-chunk
// products.
static double loglinear_flops(const OpShape *s) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    double D = (double)s->C / s->H, m = fmap_width_of(s), Dv = o.normalize ? D + 1 : D;
    double c = loglinear_pow2_chunk(s), L = loglinear_levels(s), map = 0;
    if (o.feature_map == FEATURE_FAVOR) map = 2 * 2 * m * D;
    if (o.feature_map == FEATURE_CIRCULANT)
        map = 2 * circ_blocks((int)m, (int)D) * 2 * 5 * D * log2(D > 1 ? D : 2);
    return s->H * (map + 2 * m * Dv * (1 + L) + c * (m + Dv + 1));
}

#ifdef MT_DOUBLE
static int loglinear_reference(const OpShape *s, const double *const *in, double *out) {
    ref_linear_attention(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS + 1, in[CORE_IN_XPROJ],
                         in[CORE_IN_PARAMS], 1, out);
    return 0;
}
#define LOGLINEAR_REFERENCE loglinear_reference
#else
#define LOGLINEAR_REFERENCE NULL
#endif

static const OpOption loglinear_options[] = {LINEAR_OPTION_SPECS(0), {NULL}};

#define LOGLINEAR_ROW(name_, help_, fixed_, ...)                                           \
    const F(OpDef)                                                                         \
        F(op_##name_) = {.name = #name_,                                                   \
                         .n_in = CORE_IN_PARAMS + 3,                                       \
                         .n_out = 1,                                                       \
                         .sizes = loglinear_sizes,                                         \
                         .forward = loglinear_fwd,                                         \
                         .backward = loglinear_bwd,                                        \
                         .params = loglinear_params,                                       \
                         .init_param = loglinear_init,                                     \
                         .aux = F(attention_loglinear_aux),                                \
                         .options = loglinear_options,                                     \
                         .fixed = fixed_,                                                  \
                         .check = F(fmap_check),                                           \
                         .mixer = 1,                                                       \
                         .help = help_,                                                    \
                         .flops = loglinear_flops,                                         \
                         .reference = LOGLINEAR_REFERENCE,                                 \
                         .aux_cols = {{"feature_map_ms", AUX_SUM, "feature map ms", 3},    \
                                      {"level_energy", AUX_MEAN, "level state energy", 4}, \
                                      {"state_erank", AUX_MEAN, "state eff. rank", 2}},    \
                         __VA_ARGS__}

// Chunks of 2 and 4 over T = 7..13 build Fenwick trees of height 1-2; max_len below T folds
// the oldest buckets into the top level.
// clang-format off
LOGLINEAR_ROW(loglinear,
    "log-linear attention: Fenwick buckets with learned per-level weights, any feature map", NULL,
    .n_tests = 7,
    .tests = {{{.B = 2, .T = 13, .C = 8, .H = 2}, "chunk=4 max_len=13"},
              {{.B = 2, .T = 13, .C = 8, .H = 2}, "chunk=2 max_len=16 feature_map=relu normalize=false"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=2 max_len=7 feature_map=favor features=6"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=4 max_len=8 feature_map=circulant features=6"},
              {{.B = 2, .T = 5, .C = 8, .H = 2}, "chunk=64 max_len=4"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "chunk=8"},
              {{.B = 1, .T = 129, .C = 8, .H = 2}, "chunk=8 max_len=100"}});
LOGLINEAR_ROW(cos_loglinear, "log-linear attention with cosFormer features",
    "feature_map=cosformer",
    .n_tests = 3,
    .tests = {{{.B = 2, .T = 9, .C = 8, .H = 2}, "chunk=3"},
              {{.B = 2, .T = 9, .C = 8, .H = 2}, "chunk=3 max_len=16"},
              {{.B = 1, .T = 65, .C = 8, .H = 2}, "chunk=8 max_len=65"}});
// clang-format on
