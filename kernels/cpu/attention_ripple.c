// Ripple attention (Zheng, Pan, Kong, ICML 2022; mixers.md section 14): bidirectional
// kernelised attention over a patch grid whose keys are weighted by the ring (Chebyshev
// distance) they lie on around the query. Per (batch, head), with P prefix tokens and the grid
// tokens row-major on Hg x W cells (kernels/attention_ripple.h):
//   phi(q), phi(k) [T, m] (the linear family's feature maps), V' = [V | 1] [T, D+1];
//   SAT(i, j) = sum_{cells (i', j') <= (i, j)} phi(k) v'^T       (m x (D+1) each)
//   A_r(t)    = phi(q_t) . Box_r(t),  Box_r = the square of half-width r around t, from four
//               SAT corners (clamped at the border); A_R(t) = phi(q_t) . (every key)
//   N'_t      = sum_{r=0..R} alpha_r(t) (A_r - A_{r-1})   (A_{-1} = 0: ring r = box r - box r-1)
//   o_t       = N'_t[:D] / (N'_t[D] + eps)
// with alpha the stick-breaking weights of the logits z_r(t) = x_t W_x[h, r] + b[h, r] (r < R):
// alpha_r = sigmoid(z_r) prod_{r' < r} (1 - sigmoid(z_r')), and the far group (rings >= R and the
// prefix keys) alpha_R = prod_{r' < R} (1 - sigmoid(z_r')): the weights sum to 1. A prefix
// query (the class token has no place on the grid) weighs every key alike: plain linear
// attention. Only the normaliser is saved; features and tables are rebuilt in backward.
#include "../attention_ripple.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

// Stick-breaking in log space: log alpha_r = log sigmoid(z_r) + sum_{r'<r} log sigmoid(-z_r'),
// so a long run of betas near 1 underflows to 0 instead of to NaN. alpha [R + 1].
static void stick_break(int R, const real *z, real *alpha) {
    real log_rest = 0;  // log of the stick left before ring r
    for (int r = 0; r < R; r++) {
        alpha[r] = exp(log_rest - F(softplus)(-z[r]));
        log_rest -= F(softplus)(z[r]);
    }
    alpha[R] = exp(log_rest);
}

// dz of the logits from dalpha [R + 1]: with g_r = dalpha_r alpha_r (the gradient of log
// alpha_r), d log alpha_r / dz_r = 1 - beta_r and d log alpha_r' / dz_r = -beta_r for r' > r.
static void stick_break_backward(int R, const real *z, const real *alpha, const real *dalpha,
                                 real *dz) {
    real later = dalpha[R] * alpha[R];  // sum of g_r' over r' > r
    for (int r = R - 1; r >= 0; r--) {
        real beta = F(sigmoid)(z[r]), g = dalpha[r] * alpha[r];
        dz[r] = (1 - beta) * g - beta * later;
        later += g;
    }
}

// The logits z [R] of query t of head h (xproj [B, T, H R], bias [H, R]).
static void logits_of(const OpShape *s, int R, const real *xproj, const real *bias, int b, int h,
                      int t, real *z) {
    const real *x = xproj + (((size_t)b * s->T + t) * s->H + h) * R;
    for (int r = 0; r < R; r++) z[r] = x[r] + bias[h * R + r];
}

// The signed SAT corners of box r around grid token gt (at most four).
typedef struct {
    int cell[4], n;
    real sign[4];
} Corners;
static Corners box_corners(const RippleGrid *g, int gt, int r) {
    int ti = gt / g->W, tj = gt % g->W;
    int r0 = ti - r < 0 ? 0 : ti - r, r1 = ti + r > g->Hg - 1 ? g->Hg - 1 : ti + r;
    int c0 = tj - r < 0 ? 0 : tj - r, c1 = tj + r > g->W - 1 ? g->W - 1 : tj + r;
    Corners k = {.n = 0};
    int rows[2] = {r1, r0 - 1}, cols[2] = {c1, c0 - 1};
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 2; c++)
            if (rows[a] >= 0 && cols[c] >= 0) {
                k.cell[k.n] = rows[a] * g->W + cols[c];
                k.sign[k.n++] = (a + c) % 2 ? -1 : 1;
            }
    return k;
}

// out [Dv] = p [m] . S [m, Dv] (scaled by sign, added).
static void add_pS(real *out, real sign, const real *p, const real *S, int m, int Dv) {
    for (int a = 0; a < m; a++) {
        real pa = sign * p[a];
        for (int c = 0; c < Dv; c++) out[c] += pa * S[(size_t)a * Dv + c];
    }
}
// S [m, Dv] += w p [m] dn [Dv]^T.
static void add_outer(real *S, real w, const real *p, const real *dn, int m, int Dv) {
    for (int a = 0; a < m; a++) {
        real pa = w * p[a];
        for (int c = 0; c < Dv; c++) S[(size_t)a * Dv + c] += pa * dn[c];
    }
}

// One head of one sequence: features, values, the table and the sum over every key.
typedef struct {
    real *p, *f, *v;  // phi(q), phi(k) [T, m], V' [T, Dv]
    real *sat;        // [Hg W, m Dv]: summed-area table of phi(k) v'^T over the grid
    real *total;      // [m Dv]: the whole grid plus the prefix keys
    real *A, *z, *alpha, *dnum, *dalpha, *dz;  // per query: [(R+1) Dv], [R], [R+1], [Dv], ...
} Head;

static Head head_alloc(const RippleGrid *g, int T, int m, int Dv) {
    Head w;
    size_t e = (size_t)m * Dv, cells = (size_t)g->Hg * g->W;
    w.p = malloc(sizeof(real) * T * m), w.f = malloc(sizeof(real) * T * m);
    w.v = malloc(sizeof(real) * T * Dv);
    w.sat = malloc(sizeof(real) * (cells ? cells : 1) * e), w.total = malloc(sizeof(real) * e);
    w.A = malloc(sizeof(real) * (g->R + 1) * Dv), w.z = malloc(sizeof(real) * g->R);
    w.alpha = malloc(sizeof(real) * (g->R + 1)), w.dnum = malloc(sizeof(real) * Dv);
    w.dalpha = malloc(sizeof(real) * (g->R + 1)), w.dz = malloc(sizeof(real) * g->R);
    return w;
}
static void head_free(Head *w) {
    free(w->p), free(w->f), free(w->v), free(w->sat), free(w->total), free(w->A), free(w->z);
    free(w->alpha), free(w->dnum), free(w->dalpha), free(w->dz);
}

static void head_load(Head *w, const F(FeatureMap) * fm, const RippleGrid *g, const OpShape *s,
                      int b, int h, const real *qkv_btc3) {
    int T = s->T, C = s->C, D = C / s->H, m = fm->m, Dv = D + 1;
    size_t e = (size_t)m * Dv;
    const real *head = qkv_btc3 + (size_t)b * T * 3 * C + h * D;
    F(fmap_forward)(fm, T, head, 3 * C, w->p);
    F(fmap_forward)(fm, T, head + C, 3 * C, w->f);
    for (int t = 0; t < T; t++) {
        memcpy(w->v + (size_t)t * Dv, head + (size_t)t * 3 * C + 2 * C, sizeof(real) * D);
        w->v[(size_t)t * Dv + D] = 1;
    }
    // SAT(i, j) = cell + SAT(i-1, j) + SAT(i, j-1) - SAT(i-1, j-1); cells past n are empty.
    for (int cell = 0; cell < g->Hg * g->W; cell++) {
        real *S = w->sat + cell * e;
        int i = cell / g->W, j = cell % g->W, u = g->P + cell;
        memset(S, 0, sizeof(real) * e);
        if (cell < g->n) add_outer(S, 1, w->f + (size_t)u * m, w->v + (size_t)u * Dv, m, Dv);
        const real *up = i > 0 ? S - (size_t)g->W * e : NULL, *left = j > 0 ? S - e : NULL;
        const real *diag = i > 0 && j > 0 ? S - (size_t)(g->W + 1) * e : NULL;
        for (size_t x = 0; x < e; x++)
            S[x] += (up ? up[x] : 0) + (left ? left[x] : 0) - (diag ? diag[x] : 0);
    }
    if (g->n)
        memcpy(w->total, w->sat + ((size_t)g->Hg * g->W - 1) * e, sizeof(real) * e);
    else
        memset(w->total, 0, sizeof(real) * e);
    for (int u = 0; u < g->P; u++)
        add_outer(w->total, 1, w->f + (size_t)u * m, w->v + (size_t)u * Dv, m, Dv);
}

// A_r (r < R) and A_R of grid query t into w->A.
static void query_reads(Head *w, const RippleGrid *g, int t, int m, int Dv) {
    const real *pt = w->p + (size_t)t * m;
    memset(w->A, 0, sizeof(real) * (g->R + 1) * Dv);
    for (int r = 0; r < g->R; r++) {
        Corners k = box_corners(g, t - g->P, r);
        for (int c = 0; c < k.n; c++)
            add_pS(w->A + (size_t)r * Dv, k.sign[c], pt, w->sat + (size_t)k.cell[c] * m * Dv, m,
                   Dv);
    }
    add_pS(w->A + (size_t)g->R * Dv, 1, pt, w->total, m, Dv);
}

// N'_t into num [Dv] (w->A, w->alpha filled for grid queries).
static void query_num(const Head *w, const RippleGrid *g, int t, int m, int Dv, real *num) {
    memset(num, 0, sizeof(real) * Dv);
    if (t < g->P) {
        add_pS(num, 1, w->p + (size_t)t * m, w->total, m, Dv);
        return;
    }
    for (int r = 0; r <= g->R; r++)
        for (int c = 0; c < Dv; c++)
            num[c] +=
                w->alpha[r] * (w->A[(size_t)r * Dv + c] - (r ? w->A[(size_t)(r - 1) * Dv + c] : 0));
}

void F(attention_ripple_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                                 const real *xproj, const real *bias, const real *const *fmap,
                                 const OpShape *s) {
    const RippleGrid g = ripple_grid(s);
    const real eps = (real)OPT_OF(LinearOpts, s).eps;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, Dv = D + 1;
    F(FeatureMap) fm = F(fmap_open)(s, fmap);
    int m = fm.m;
#pragma omp parallel
    {
        Head w = head_alloc(&g, T, m, Dv);
        real *num = malloc(sizeof(real) * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            head_load(&w, &fm, &g, s, b, h, qkv_btc3);
            for (int t = 0; t < T; t++) {
                if (t >= g.P) {
                    query_reads(&w, &g, t, m, Dv);
                    logits_of(s, g.R, xproj, bias, b, h, t, w.z);
                    stick_break(g.R, w.z, w.alpha);
                }
                query_num(&w, &g, t, m, Dv, num);
                real den = num[D] + eps, *o = out_btc + ((size_t)b * T + t) * C + h * D;
                den_bht[(size_t)bh * T + t] = den;
                for (int j = 0; j < D; j++) o[j] = num[j] / den;
            }
        }
        head_free(&w);
        free(num);
    }
    F(fmap_close)(&fm);
}

// The gradient: per query, dN' = [do / den | -(do . o) / den]; dalpha_r = dN' . (A_r - A_{r-1})
// through the stick-breaking to dz (dxproj, dbias); dA_r = c_r dN' with c_r = alpha_r -
// alpha_{r+1} (c_R = alpha_R): dphi(q_t) += c_r Box_r dN', and the box's four SAT corners get
// +-c_r phi(q_t) dN'^T. A 2-D suffix sum of those corner gradients (plus the every-key part)
// is the gradient of each cell's phi(k_u) v'_u^T, which goes to phi(k_u) and v_u.
void F(attention_ripple_backward)(real *dqkv_btc3, real *dxproj, real *dbias, real *const *dfmap,
                                  const real *dout_btc, const real *out_btc, const real *den_bht,
                                  const real *qkv_btc3, const real *xproj, const real *bias,
                                  const real *const *fmap, const OpShape *s) {
    const RippleGrid g = ripple_grid(s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, Dv = D + 1, R = g.R;
    F(FeatureMap) fm = F(fmap_open)(s, fmap);
    int m = fm.m;
    size_t e = (size_t)m * Dv, cells = (size_t)g.Hg * g.W;
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
    real *dbias_bh = calloc((size_t)B * H * R, sizeof(real));
#pragma omp parallel
    {
        Head w = head_alloc(&g, T, m, Dv);
        real *gsat = malloc(sizeof(real) * (cells ? cells : 1) * e);
        real *gtotal = malloc(sizeof(real) * e), *dp = malloc(sizeof(real) * T * m);
        real *df = malloc(sizeof(real) * T * m), *dkv = malloc(sizeof(real) * e);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            head_load(&w, &fm, &g, s, b, h, qkv_btc3);
            memset(gsat, 0, sizeof(real) * cells * e);
            memset(gtotal, 0, sizeof(real) * e);
            memset(dp, 0, sizeof(real) * T * m);
            memset(df, 0, sizeof(real) * T * m);
            for (int t = 0; t < T; t++) {
                const real *gy = dout_btc + ((size_t)b * T + t) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                const real *pt = w.p + (size_t)t * m;
                real *dpt = dp + (size_t)t * m, den = den_bht[(size_t)bh * T + t], dot = 0;
                for (int j = 0; j < D; j++) w.dnum[j] = gy[j] / den, dot += gy[j] * o[j];
                w.dnum[D] = -dot / den;
                if (t < g.P) {  // every key with weight 1
                    for (int a = 0; a < m; a++)
                        for (int c = 0; c < Dv; c++) dpt[a] += w.total[a * Dv + c] * w.dnum[c];
                    add_outer(gtotal, 1, pt, w.dnum, m, Dv);
                    continue;
                }
                query_reads(&w, &g, t, m, Dv);
                logits_of(s, R, xproj, bias, b, h, t, w.z);
                stick_break(R, w.z, w.alpha);
                for (int r = 0; r <= R; r++) {
                    real d = 0;
                    for (int c = 0; c < Dv; c++)
                        d += w.dnum[c] *
                             (w.A[(size_t)r * Dv + c] - (r ? w.A[(size_t)(r - 1) * Dv + c] : 0));
                    w.dalpha[r] = d;
                }
                stick_break_backward(R, w.z, w.alpha, w.dalpha, w.dz);
                real *dx = dxproj + (((size_t)b * T + t) * H + h) * R;
                for (int r = 0; r < R; r++)
                    dx[r] += w.dz[r], dbias_bh[(size_t)bh * R + r] += w.dz[r];
                for (int r = 0; r < R; r++) {
                    real cr = w.alpha[r] - w.alpha[r + 1];
                    Corners k = box_corners(&g, t - g.P, r);
                    for (int c = 0; c < k.n; c++) {
                        const real *S = w.sat + (size_t)k.cell[c] * e;
                        for (int a = 0; a < m; a++) {
                            real acc = 0;
                            for (int x = 0; x < Dv; x++) acc += S[a * Dv + x] * w.dnum[x];
                            dpt[a] += cr * k.sign[c] * acc;
                        }
                        add_outer(gsat + (size_t)k.cell[c] * e, cr * k.sign[c], pt, w.dnum, m, Dv);
                    }
                }
                for (int a = 0; a < m; a++)
                    for (int c = 0; c < Dv; c++)
                        dpt[a] += w.alpha[R] * w.total[a * Dv + c] * w.dnum[c];
                add_outer(gtotal, w.alpha[R], pt, w.dnum, m, Dv);
            }
            // The transpose of the SAT: X(i, j) = G(i, j) + X(i+1, j) + X(i, j+1) - X(i+1, j+1).
            for (long cell = (long)cells - 1; cell >= 0; cell--) {
                int i = (int)(cell / g.W), j = (int)(cell % g.W);
                real *X = gsat + cell * e;
                for (size_t x = 0; x < e; x++) {
                    if (i + 1 < g.Hg) X[x] += X[x + g.W * e];
                    if (j + 1 < g.W) X[x] += X[x + e];
                    if (i + 1 < g.Hg && j + 1 < g.W) X[x] -= X[x + (g.W + 1) * e];
                }
            }
            real *dhead = dqkv_btc3 + (size_t)b * T * 3 * C + h * D;
            for (int u = 0; u < T; u++) {
                const real *G = gtotal;
                if (u >= g.P) {
                    const real *X = gsat + (size_t)(u - g.P) * e;
                    for (size_t x = 0; x < e; x++) dkv[x] = X[x] + gtotal[x];
                    G = dkv;
                }
                const real *fu = w.f + (size_t)u * m, *vu = w.v + (size_t)u * Dv;
                real *dv = dhead + (size_t)u * 3 * C + 2 * C;
                for (int a = 0; a < m; a++) {
                    real acc = 0;
                    for (int c = 0; c < Dv; c++) acc += G[a * Dv + c] * vu[c];
                    df[(size_t)u * m + a] = acc;
                }
                for (int c = 0; c < D; c++) {
                    real acc = 0;
                    for (int a = 0; a < m; a++) acc += G[a * Dv + c] * fu[a];
                    dv[c] += acc;
                }
            }
            real *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            F(fmap_backward)
            (&fm, T, qkv_btc3 + (size_t)b * T * 3 * C + h * D, 3 * C, w.p, dp, dhead, 3 * C,
             dparam);
            F(fmap_backward)
            (&fm, T, qkv_btc3 + (size_t)b * T * 3 * C + C + h * D, 3 * C, w.f, df, dhead + C, 3 * C,
             dparam);
        }
        head_free(&w);
        free(gsat), free(gtotal), free(dp), free(df), free(dkv);
    }
    for (int bh = 0; bh < B * H; bh++)  // in a fixed order: reproducible for any thread count
        for (int r = 0; r < R; r++) dbias[(bh % H) * R + r] += dbias_bh[(size_t)bh * R + r];
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap);
    free(dparam_bh), free(dbias_bh);
    F(fmap_close)(&fm);
}

// ---- the row -----------------------------------------------------------------------------------

// ripple_beta_bias [H, R] first, then the feature map's parameters.
static int ripple_params(const OpShape *s, OpParam *out) {
    out[0] = (OpParam){.name = "ripple_beta_bias",
                       .rows = s->H,
                       .cols = OPT_OF(RippleOpts, s).rings,
                       .init = INIT_ZEROS,
                       .trainable = 1};
    return 1 + F(fmap_params)(s, out + 1);
}
static void ripple_init_param(const OpShape *s, int index, uint64_t key, real *w) {
    F(fmap_init_param)(s, index - 1, key, w);  // the bias is INIT_ZEROS, never custom
}
static void ripple_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, (size_t)s->H * OPT_OF(RippleOpts, s).rings, p, ripple_params(s, p));
    *saved = (size_t)s->B * s->H * s->T;
}
static void ripple_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_ripple_forward)
    (out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ], in[CORE_IN_PARAMS], in + CORE_IN_PARAMS + 1,
     s);
}
static void ripple_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    F(attention_ripple_backward)
    (din[CORE_IN_QKV], din[CORE_IN_XPROJ], din[CORE_IN_PARAMS], din + CORE_IN_PARAMS + 1, dout[0],
     out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ], in[CORE_IN_PARAMS], in + CORE_IN_PARAMS + 1,
     s);
}

// The configured length must tile the grid (a shorter call, e.g. a packed example, fills it
// row-major); cosFormer's features carry 1-D positions and have no meaning on a grid.
static int ripple_check(const OpShape *s, char *err, size_t errlen) {
    const RippleOpts o = OPT_OF(RippleOpts, s);
    if (o.lin.feature_map == FEATURE_COSFORMER) {
        snprintf(err, errlen,
                 "ripple: mixer.feature_map = cosformer has 1-D positions; use elu1, relu, favor "
                 "or circulant");
        return -1;
    }
    if (F(fmap_check)(s, err, errlen)) return -1;
    int n = s->T - o.prefix_tokens;
    if (n < 1) {
        snprintf(err, errlen,
                 "ripple: mixer.prefix_tokens (%d) leaves no grid tokens in a sequence of %d",
                 o.prefix_tokens, s->T);
        return -1;
    }
    RippleGrid g = ripple_grid(s);
    if (g.W * g.Hg != n) {
        if (o.grid_w)
            snprintf(err, errlen,
                     "ripple: %d grid tokens (sequence %d - mixer.prefix_tokens %d) do not fill "
                     "rows of mixer.grid_w = %d",
                     n, s->T, o.prefix_tokens, o.grid_w);
        else
            snprintf(err, errlen,
                     "ripple: %d grid tokens (sequence %d - mixer.prefix_tokens %d) are not a "
                     "square grid; set mixer.grid_w to the patch grid's width",
                     n, s->T, o.prefix_tokens);
        return -1;
    }
    return 0;
}

// Per head and token: the map of q and k (as linear attention), the cell's phi(k) v'^T and its
// table entry (2 m Dv + 3 m Dv), R boxes of four corner reads (8 R m Dv) and the every-key read
// (2 m Dv).
static double ripple_flops(const OpShape *s) {
    const RippleOpts o = OPT_OF(RippleOpts, s);
    double D = (double)s->C / s->H, m = fmap_width_of(s), Dv = D + 1, map = 0;
    if (o.lin.feature_map == FEATURE_FAVOR) map = 2 * 2 * m * D;
    if (o.lin.feature_map == FEATURE_CIRCULANT)
        map = 2 * circ_blocks((int)m, (int)D) * 2 * 5 * D * log2(D > 1 ? D : 2);
    return s->H * (map + (7.0 + 8.0 * o.rings) * m * Dv);
}

// The mean ring weights over the grid queries: how local each layer has become.
static int ripple_aux(const OpShape *s, const real *const *in, OpAux *out) {
    const RippleGrid g = ripple_grid(s);
    int R = g.R, n = 0;
    double *mean = calloc(R + 1, sizeof(double));
    real *z = malloc(sizeof(real) * R), *alpha = malloc(sizeof(real) * (R + 1));
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int t = g.P; t < s->T; t++, n++) {
                logits_of(s, R, in[CORE_IN_XPROJ], in[CORE_IN_PARAMS], b, h, t, z);
                stick_break(R, z, alpha);
                for (int r = 0; r <= R; r++) mean[r] += alpha[r];
            }
    for (int r = 0; r <= R; r++) {
        out[r].value = n ? mean[r] / n : 0;
        if (r < R)
            snprintf(out[r].name, sizeof(out[r].name), "ring_weight_%d", r);
        else
            snprintf(out[r].name, sizeof(out[r].name), "ring_weight_far");
    }
    free(mean), free(z), free(alpha);
    return R + 1;
}

#ifdef MT_DOUBLE
// o_t = sum_u w(t, u) phi(q_t).phi(k_u) v_u / (sum_u w(t, u) phi(q_t).phi(k_u) + eps) over every
// key u, w(t, u) = alpha_{min(d, R)}(t) with d the Chebyshev distance of the two patches on the
// grid, taken ring by ring from the definition (alpha as the product of the sticks, not in log
// space); w = alpha_R for a prefix key, w = 1 for a prefix query.
static int ripple_reference(const OpShape *s, const double *const *in, double *out) {
    const RippleOpts o = OPT_OF(RippleOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, R = o.rings, m = fmap_width_of(s);
    int P = o.prefix_tokens < T ? o.prefix_tokens : T, n = T - P, W = o.grid_w;
    if (W <= 0)
        for (W = 1; W * W < n;) W++;
    double *Wp = ref_dense_projection(s, in + CORE_IN_PARAMS + 1);
    double *pq = malloc(sizeof(double) * m), *pk = malloc(sizeof(double) * m);
    double *alpha = malloc(sizeof(double) * (R + 1));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                double stick = 1, num[512] = {0}, den = 0;
                for (int r = 0; r < R; r++) {
                    double z = in[CORE_IN_XPROJ][(((size_t)b * T + t) * H + h) * R + r] +
                               in[CORE_IN_PARAMS][h * R + r];
                    double beta = 1 / (1 + exp(-z));
                    alpha[r] = stick * beta, stick *= 1 - beta;
                }
                alpha[R] = stick;
                ref_phi(s, Wp, q, pq);
                for (int u = 0; u < T; u++) {
                    const double *k = in[CORE_IN_QKV] + ((size_t)b * T + u) * 3 * C + C + h * D;
                    double w = 1;
                    if (t >= P && u < P) w = alpha[R];
                    if (t >= P && u >= P) {
                        int ti = (t - P) / W, tj = (t - P) % W, ui = (u - P) / W, uj = (u - P) % W;
                        int d = (int)fmax(fabs((double)ti - ui), fabs((double)tj - uj));
                        w = alpha[d < R ? d : R];
                    }
                    ref_phi(s, Wp, k, pk);
                    double a = 0;
                    for (int i = 0; i < m; i++) a += pq[i] * pk[i];
                    a *= w;
                    den += a;
                    for (int j = 0; j < D; j++) num[j] += a * k[C + j];
                }
                double *y = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) y[j] = num[j] / (den + o.lin.eps);
            }
    free(Wp), free(pq), free(pk), free(alpha);
    return 0;
}
#else
#define ripple_reference NULL
#endif

// The feature-map keys as the linear family declares them (same type, default and range).
static const OpOption ripple_options[] = {
    {"feature_map", OPT_ENUM, "elu1", "elu1|relu|favor|circulant|cosformer", 0, 0,
     offsetof(RippleOpts, lin) + offsetof(LinearOpts, feature_map), 0,
     "feature map phi of the linear-attention family"},
    {"eps", OPT_FLOAT, "1e-6", NULL, 0, 1, offsetof(RippleOpts, lin) + offsetof(LinearOpts, eps), 0,
     "denominator epsilon of the normalised form"},
    {"features", OPT_INT, "64", NULL, 1, 1 << 16,
     offsetof(RippleOpts, lin) + offsetof(LinearOpts, n_features), 0,
     "random features m per head (favor and circulant maps)"},
    {"qk_norm", OPT_BOOL, "true", NULL, 0, 1,
     offsetof(RippleOpts, lin) + offsetof(LinearOpts, qk_norm), 0,
     "L2-normalise q and k per head before a random-feature map"},
    {"grid_w", OPT_INT, "0", NULL, 0, 1 << 15, offsetof(RippleOpts, grid_w), 0,
     "ripple: patch grid width (0 = square grid of the sequence minus the prefix tokens)"},
    {"prefix_tokens", OPT_INT, "0", NULL, 0, 1 << 15, offsetof(RippleOpts, prefix_tokens), 0,
     "ripple: leading tokens off the grid (class token): far group as keys, plain linear "
     "attention as queries"},
    {"ripple_rings", OPT_INT, "4", NULL, 1, 32, offsetof(RippleOpts, rings), 0,
     "ripple: r^, rings 0..r^-1 weighted by stick-breaking, farther rings share the rest"},
    {NULL}};

// clang-format off
const F(OpDef) F(op_ripple) = {
    .name = "ripple", .n_in = CORE_IN_PARAMS + 3, .n_out = 1,
    .sizes = ripple_sizes, .forward = ripple_fwd, .backward = ripple_bwd,
    .params = ripple_params, .init_param = ripple_init_param, .check = ripple_check,
    .options = ripple_options, .aux = ripple_aux,
    .aux_cols = {{"ring_weight", AUX_MEAN, "mean ring weight", 3}},
    .mixer = 1,
    .help = "Ripple attention (bidirectional): ring weights by stick-breaking on a patch grid, SAT",
    .flops = ripple_flops, .reference = ripple_reference,
    .n_tests = 10,
    .tests = {{{.B = 1, .T = 8, .C = 8, .H = 2}, "grid_w=4 ripple_rings=2"},
              {{.B = 2, .T = 9, .C = 8, .H = 2}, "ripple_rings=1"},
              {{.B = 2, .T = 13, .C = 8, .H = 2}, "grid_w=3 prefix_tokens=1 ripple_rings=2"},
              {{.B = 1, .T = 10, .C = 8, .H = 2}, "prefix_tokens=1 ripple_rings=6"},
              {{.B = 1, .T = 7, .C = 8, .H = 2}, "grid_w=3 prefix_tokens=1 feature_map=relu"},
              {{.B = 2, .T = 9, .C = 8, .H = 2}, "feature_map=favor features=6 ripple_rings=2"},
              {{.B = 1, .T = 10, .C = 10, .H = 2}, "prefix_tokens=1 feature_map=circulant features=7"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "ripple_rings=1"},
              {{.B = 1, .T = 2, .C = 4, .H = 1}, "prefix_tokens=1"},
              {{.B = 1, .T = 65, .C = 8, .H = 2}, "prefix_tokens=1 ripple_rings=3"}}};
// clang-format on
