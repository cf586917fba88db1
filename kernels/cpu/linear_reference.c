// The explicit oracles of the linear-attention family (mixers.md sections 2-8), written from
// the definitions and not from the kernels: the masked quadratic form of every feature map,
// cosFormer's explicit cos weights, the dense circulant matrix, the level-weighted mask of
// log-linear attention from its dyadic buckets, HSS's explicitly projected state. Double
// precision only (the reference test); the rows point at these through linear_core.h.
#ifdef MT_DOUBLE
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

#define PI 3.14159265358979323846

static double dotd(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// The dense stacked circulant projection: feature j is row i of block b of C(r_b) diag(s_b),
// C[i][k] = r[(k - i) mod D]; the first nb D - m rows of the last block are dropped.
void ref_circulant_matrix(int m, int D, const double *r, const double *sg, double *W) {
    int nb = (m + D - 1) / D, drop = nb * D - m;
    for (int j = 0; j < m; j++) {
        int b = j < (nb - 1) * D ? j / D : nb - 1;
        int i = b < nb - 1 ? j - b * D : j - (nb - 1) * D + drop;
        for (int k = 0; k < D; k++)
            W[(size_t)j * D + k] = r[b * D + ((k - i) % D + D) % D] * sg[b * D + k];
    }
}

// phi(x) of the maps without positions; W: the dense projection (favor, circulant).
// Random-feature input x~ = d^(-1/4) x (/ |x| when qk_norm).
void ref_phi(const OpShape *s, const double *W, const double *x, double *phi) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int D = s->C / s->H, m = o.n_features;
    if (o.feature_map == FEATURE_ELU1 || o.feature_map == FEATURE_RELU) {
        for (int i = 0; i < D; i++)
            phi[i] = o.feature_map == FEATURE_RELU ? fmax(x[i], 0)
                     : x[i] > 0                    ? x[i] + 1
                                                   : exp(x[i]);
        return;
    }
    double xt[512], n = o.qk_norm ? fmax(sqrt(dotd(x, x, D)), 1e-6) : 1;
    for (int i = 0; i < D; i++) xt[i] = pow(D, -0.25) * x[i] / n;
    for (int i = 0; i < m; i++)
        phi[i] = exp(dotd(W + (size_t)i * D, xt, D) - dotd(xt, xt, D) / 2) / sqrt(m);
}

// The dense projection of a random-feature map from its parameters (NULL for other maps).
double *ref_dense_projection(const OpShape *s, const double *const *fparams) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int D = s->C / s->H, m = o.n_features;
    if (!fmap_is_random(o.feature_map)) return NULL;
    double *W = malloc(sizeof(double) * (size_t)m * D);
    if (o.feature_map == FEATURE_FAVOR)
        memcpy(W, fparams[0], sizeof(double) * (size_t)m * D);
    else
        ref_circulant_matrix(m, D, fparams[0], fparams[1], W);
    return W;
}

// The unnormalised attention weight of (t, u): phi(q_t) . phi(k_u), or for cosFormer
// relu(q_t) . relu(k_u) cos(pi/2 (t - u) / M) written directly.
static double weight(const OpShape *s, const double *W, const double *q, const double *k, int t,
                     int u) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int D = s->C / s->H;
    if (o.feature_map == FEATURE_COSFORMER) {
        double w = 0;
        for (int i = 0; i < D; i++) w += fmax(q[i], 0) * fmax(k[i], 0);
        return w * cos(PI / 2 * (t - u) / fmap_max_len(s));
    }
    double pq[512], pk[512];
    ref_phi(s, W, q, pq);
    ref_phi(s, W, k, pk);
    return dotd(pq, pk, fmap_is_random(o.feature_map) ? o.n_features : D);
}

// Level of source u for target t from the dyadic buckets (mixers.md 6.1), not from the XOR
// identity the op uses: level l >= 1 holds [t - t mod 2^l, + 2^(l-1)) when bit l-1 of t is set.
static int bucket_level(int t, int u) {
    if (u == t) return 0;
    for (int l = 1; l < 31; l++) {
        int lo = t - t % (1 << l);
        if (((t >> (l - 1)) & 1) && u >= lo && u < lo + (1 << (l - 1))) return l;
    }
    return -1;
}

// o_t = sum_{u<=t} a(t,u) v_u / (sum_{u<=t} a(t,u) + eps), a = weight(t,u) * lambda_t^(level),
// lambda = softplus(lam_pre + lam_bias) from the dyadic buckets (lam_pre NULL: every
// lambda = 1, plain linear attention). causal = 0: the sums run over every u < T (plain linear
// attention only; cosFormer's cos(pi/2 (t - u) / M) is even in t - u).
void ref_linear_attention(const OpShape *s, const double *qkv, const double *const *fparams,
                          const double *lam_pre_bthl, const double *lam_bias_hl, int causal,
                          double *out) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = loglinear_levels(s);
    double *W = ref_dense_projection(s, fparams);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double num[512] = {0}, den = 0;
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * D;
                for (int u = 0; u <= (causal ? t : T - 1); u++) {
                    const double *k = qkv + ((size_t)b * T + u) * 3 * C + C + h * D;
                    double a = weight(s, W, q, k, t, u);
                    if (lam_pre_bthl) {
                        int l = bucket_level(t, u);
                        if (l > L - 1) l = L - 1;  // longer than max_len: the top level
                        double x = lam_pre_bthl[((size_t)(b * T + t) * H + h) * L + l] +
                                   lam_bias_hl[h * L + l];
                        a *= log1p(exp(x));
                    }
                    den += a;
                    for (int j = 0; j < D; j++) num[j] += a * k[C + j];
                }
                double *y = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) y[j] = o.normalize ? num[j] / (den + o.eps) : num[j];
            }
    free(W);
}

// P(S) of one m x D state with the bases (layout: depth l's node bases side by side, node k of
// depth l owning rows [k n / 2^l, (k+1) n / 2^l)): leaves kept, every off-diagonal sibling
// block (I, J') replaced by U_I U_I^T S[I,J'] V_J' V_J'^T.
void ref_hss_project(const OpShape *s, const double *U, const double *V, const double *S,
                     double *PS) {
    HssTree t = hss_tree_of(s);
    int m = t.m, D = t.D, J = t.J, r = t.rank, Ru = t.Ru, Rv = t.Rv;
    int mJ = m >> J, dJ = D >> J;
    memset(PS, 0, sizeof(double) * m * D);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < D; j++)
            if (i / mJ == j / dJ) PS[i * D + j] = S[i * D + j];
    int cu = 0, cv = 0;
    double *core = malloc(sizeof(double) * (size_t)r * r);
    for (int l = 1; l <= J; l++) {
        int mI = m >> l, dI = D >> l, ru = mI < r ? mI : r, rv = dI < r ? dI : r;
        for (int k = 0; k < (1 << l); k++) {
            int r0 = k * mI, c0 = (k ^ 1) * dI;
            memset(core, 0, sizeof(double) * (size_t)r * r);  // U_I^T S[I,J'] V_J'
            for (int a = 0; a < ru; a++)
                for (int c = 0; c < rv; c++)
                    for (int i = 0; i < mI; i++)
                        for (int j = 0; j < dI; j++)
                            core[a * rv + c] += U[(r0 + i) * Ru + cu + a] *
                                                S[(r0 + i) * D + c0 + j] *
                                                V[(c0 + j) * Rv + cv + c];
            for (int i = 0; i < mI; i++)
                for (int j = 0; j < dI; j++) {
                    double v = 0;
                    for (int a = 0; a < ru; a++)
                        for (int c = 0; c < rv; c++)
                            v += U[(r0 + i) * Ru + cu + a] * core[a * rv + c] *
                                 V[(c0 + j) * Rv + cv + c];
                    PS[(r0 + i) * D + c0 + j] = v;
                }
        }
        cu += ru, cv += rv;
    }
    free(core);
}

// o_t = P(S_t)^T phi(q_t) / (phi(q_t) . z_t + eps), S_t = sum_{u<=t} phi(k_u) v_u^T: the state
// projected explicitly at every t.
void ref_hss_attention(const OpShape *s, const double *qkv, const double *U, const double *V,
                       const double *const *fparams, double *out) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, m = fmap_width_of(s);
    double *W = ref_dense_projection(s, fparams);
    double *S = malloc(sizeof(double) * m * D), *PS = malloc(sizeof(double) * m * D);
    double *z = malloc(sizeof(double) * m), *pq = malloc(sizeof(double) * m);
    double *pk = malloc(sizeof(double) * m);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            memset(z, 0, sizeof(double) * m);
            memset(S, 0, sizeof(double) * m * D);
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * D;
                ref_phi(s, W, q, pq);
                ref_phi(s, W, q + C, pk);
                for (int i = 0; i < m; i++) {
                    z[i] += pk[i];
                    for (int j = 0; j < D; j++) S[i * D + j] += pk[i] * q[2 * C + j];
                }
                ref_hss_project(s, U, V, S, PS);
                double den = o.normalize ? dotd(pq, z, m) + o.eps : 1;
                double *y = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) {
                    y[j] = 0;
                    for (int i = 0; i < m; i++) y[j] += PS[i * D + j] * pq[i];
                    y[j] /= den;
                }
            }
        }
    free(S), free(PS), free(z), free(pq), free(pk), free(W);
}
#endif
