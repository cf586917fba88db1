// Every mixer core against a direct quadratic-time reference written from its definition
// (shared/docs/mixers.md), in double precision, on small inputs whose lengths cross chunk and
// tree boundaries (T = 1, 7, 64, 129). The chunked, FFT and tree training forms must agree with
// the explicit forms to rounding:
//   - causal linear attention of each feature map == (phi(Q) phi(K)^T (.) M) V, normalised;
//   - cosFormer == its explicit cos(pi/2 (t-s)/M)-weighted form;
//   - log-linear == its explicit level-weighted masked form (levels from the dyadic buckets),
//     and with every lambda = 1 it is plain linear attention;
//   - HSS with full rank == the dense state; with rank r == the explicitly projected state;
//     the projection is idempotent (the generated bases are orthonormal);
//   - the circulant projection (FFT) == the explicit C(r) diag(s) product, forward and dr;
//   - FAVOR+ rows are orthogonal within a block, the kernel estimate approaches
//     exp(q.k / sqrt(d)) for many features, redraws are deterministic;
//   - Hydra == its explicit cumulative form; an identity-initialised short convolution leaves
//     a mixer layer unchanged;
//   - the auxiliary figures: HSS memory ratio and off-diagonal energies, log-linear level
//     energies against explicit bucket states, NaN counting of the layer.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"
#include "../src/model.h"
#include "../src/rng.h"

static int failures = 0;
static const double RTOL = 1e-10;  // double precision, sums of a few hundred terms
#define PI 3.14159265358979323846

static void report(const char *what, double err, double tol) {
    int ok = err <= tol;
    if (!ok) failures++;
    printf("%-4s %-64s max err %.3g (tol %.3g)%s\n", ok ? "ok" : "FAIL", what, err, tol,
           ok ? "" : " <--");
}

// max |a - b| / max(1, |b|); NaN as soon as either side is not finite.
static double max_rel_err(const double *a, const double *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return NAN;
        double e = fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        worst = e > worst ? e : worst;
    }
    return worst;
}

static double dot(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- running one op on random inputs ---------------------------------------------------

typedef struct {
    const OpDef_f64 *op;
    OpShape s;
    double *in[OP_MAX_IO], *out[2], *saved;
    size_t in_n[OP_MAX_IO], out_n[2], saved_n;
} Run;

// q|k|v and the per-token projection ~ N(0, 1); the op's parameters as a model initialises
// them (INIT_CUSTOM through the op, constants), others ~ N(0, 0.5^2).
static Run run_new(const char *op_name, OpShape s, uint64_t seed) {
    Run r = {.op = op_find_f64(op_name), .s = s};
    r.op->sizes(&s, r.in_n, r.out_n, &r.saved_n);
    OpParam p[OP_MAX_PARAMS];
    int np = r.op->params ? r.op->params(&s, p) : 0;
    for (int i = 0; i < r.op->n_in; i++) {
        r.in[i] = malloc(sizeof(double) * (r.in_n[i] ? r.in_n[i] : 1));
        uint64_t key = rng_key(seed, 77, (uint64_t)i, 0);
        int pi = i - CORE_IN_PARAMS;
        if (pi >= 0 && pi < np && p[pi].init == INIT_CUSTOM) {
            r.op->init_param(&s, pi, key, r.in[i]);
            continue;
        }
        for (size_t j = 0; j < r.in_n[i]; j++)
            r.in[i][j] = pi >= 0 && pi < np && p[pi].init == INIT_CONST
                             ? p[pi].init_value
                             : (pi >= 0 ? 0.5 : 1.0) * rng_normal(key, j);
    }
    for (int o = 0; o < r.op->n_out; o++) r.out[o] = malloc(sizeof(double) * r.out_n[o]);
    r.saved = malloc(sizeof(double) * (r.saved_n ? r.saved_n : 1));
    r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
    return r;
}

static void run_free(Run *r) {
    for (int i = 0; i < r->op->n_in; i++) free(r->in[i]);
    for (int o = 0; o < r->op->n_out; o++) free(r->out[o]);
    free(r->saved);
}

static const double *q_of(const Run *r, int b, int t, int h) {
    int C = r->s.C, D = C / r->s.H;
    return r->in[0] + ((size_t)b * r->s.T + t) * 3 * C + h * D;
}

// ---- explicit feature maps and kernel weights -----------------------------------------------

// The dense stacked circulant projection: feature j is row i of block b of C(r_b) diag(s_b),
// C[i][k] = r[(k - i) mod D]; the first nb D - m rows of the last block are dropped.
static void circulant_matrix(int m, int D, const double *r, const double *sg, double *W) {
    int nb = (m + D - 1) / D, drop = nb * D - m;
    for (int j = 0; j < m; j++) {
        int b = j < (nb - 1) * D ? j / D : nb - 1;
        int i = b < nb - 1 ? j - b * D : j - (nb - 1) * D + drop;
        for (int k = 0; k < D; k++)
            W[(size_t)j * D + k] = r[b * D + ((k - i) % D + D) % D] * sg[b * D + k];
    }
}

// x~ = d^(-1/4) x (/ |x| when qk_norm): the random-feature input.
static void rf_input(const OpShape *s, const double *x, double *xt) {
    int D = s->C / s->H;
    double n = s->qk_norm ? fmax(sqrt(dot(x, x, D)), 1e-6) : 1;
    for (int i = 0; i < D; i++) xt[i] = pow(D, -0.25) * x[i] / n;
}

// phi(x) of the maps without positions; W: the dense projection (favor, circulant).
static void ref_phi(const OpShape *s, const double *W, const double *x, double *phi) {
    int D = s->C / s->H, m = s->n_features;
    if (s->feature_map == FEATURE_ELU1 || s->feature_map == FEATURE_RELU) {
        for (int i = 0; i < D; i++)
            phi[i] = s->feature_map == FEATURE_RELU ? fmax(x[i], 0)
                     : x[i] > 0                     ? x[i] + 1
                                                    : exp(x[i]);
        return;
    }
    double xt[64];
    rf_input(s, x, xt);
    for (int i = 0; i < m; i++)
        phi[i] = exp(dot(W + (size_t)i * D, xt, D) - dot(xt, xt, D) / 2) / sqrt(m);
}

// The dense projection of a random-feature map from the op's parameter inputs (NULL else).
static double *dense_projection(const OpShape *s, double *const *fparams) {
    int D = s->C / s->H, m = s->n_features;
    if (s->feature_map != FEATURE_FAVOR && s->feature_map != FEATURE_CIRCULANT) return NULL;
    double *W = malloc(sizeof(double) * (size_t)m * D);
    if (s->feature_map == FEATURE_FAVOR)
        memcpy(W, fparams[0], sizeof(double) * (size_t)m * D);
    else
        circulant_matrix(m, D, fparams[0], fparams[1], W);
    return W;
}

// The unnormalised attention weight of (t, u): phi(q_t) . phi(k_u), or for cosFormer
// relu(q_t) . relu(k_u) cos(pi/2 (t - u) / M) written directly.
static double ref_weight(const OpShape *s, const double *W, const double *q, const double *k, int t,
                         int u) {
    int D = s->C / s->H;
    if (s->feature_map == FEATURE_COSFORMER) {
        double w = 0;
        for (int i = 0; i < D; i++) w += fmax(q[i], 0) * fmax(k[i], 0);
        return w * cos(PI / 2 * (t - u) / s->max_len);
    }
    double pq[256], pk[256];
    ref_phi(s, W, q, pq);
    ref_phi(s, W, k, pk);
    return dot(pq, pk, s->feature_map >= FEATURE_FAVOR ? s->n_features : D);
}

// o_t = sum_{u<=t} a(t,u) v_u / (sum_{u<=t} a(t,u) + eps), a = weight(t,u) * level_weight(t,u).
typedef double (*LevelWeight)(const Run *r, int b, int h, int t, int u);

static void ref_attention(const Run *r, const double *W, LevelWeight lw, double *out) {
    const OpShape *s = &r->s;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double num[64] = {0}, den = 0;
                for (int u = 0; u <= t; u++) {
                    const double *q = q_of(r, b, t, h), *k = q_of(r, b, u, h) + C;
                    double a = ref_weight(s, W, q, k, t, u) * (lw ? lw(r, b, h, t, u) : 1);
                    den += a;
                    for (int j = 0; j < D; j++) num[j] += a * k[C + j];
                }
                double *o = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) o[j] = s->normalize ? num[j] / (den + s->eps) : num[j];
            }
}

// ---- linear attention of every feature map, cosFormer -----------------------------------------

static OpShape shape(int B, int T, int C, int H, int map, int normalize, int chunk) {
    OpShape s = {.B = B,
                 .T = T,
                 .C = C,
                 .H = H,
                 .eps = 1e-6,
                 .feature_map = map,
                 .normalize = normalize,
                 .chunk = chunk,
                 .n_features = 11,
                 .qk_norm = 1,
                 .max_len = 160,
                 .hss_rank = 2,
                 .hss_leaf = 2};
    return s;
}

static const char *MAP_NAMES[] = {"elu1", "relu", "favor", "circulant", "cosformer"};

static void check_linear(void) {
    static const int Ts[] = {1, 7, 64, 129};
    for (int map = 0; map <= FEATURE_COSFORMER; map++)
        for (int ti = 0; ti < 4; ti++)
            for (int norm = 1; norm >= (ti == 1 ? 0 : 1); norm--) {
                // C = 10, H = 2: head dim 5 (an odd FFT length), 11 random features (3 blocks)
                OpShape s = shape(2, Ts[ti], 10, 2, map, norm, 16);
                Run r = run_new("attention_linear", s, 100 + ti);
                double *W = dense_projection(&s, r.in + CORE_IN_PARAMS);
                double *ref = malloc(sizeof(double) * r.out_n[0]);
                ref_attention(&r, W, NULL, ref);
                char what[128];
                snprintf(what, sizeof(what), "linear %s T=%d%s == masked quadratic form",
                         MAP_NAMES[map], Ts[ti], norm ? "" : " unnormalised");
                report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
                free(ref), free(W);
                run_free(&r);
            }
}

// ---- log-linear -----------------------------------------------------------------------------

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

static double softplus(double x) {
    return log1p(exp(x));
}

static double loglinear_weight(const Run *r, int b, int h, int t, int u) {
    const OpShape *s = &r->s;
    int L = (int)(r->in_n[2] / s->H), l = bucket_level(t, u);
    if (l > L - 1) l = L - 1;  // sequences longer than max_len fold into the top level
    size_t at = ((size_t)(b * s->T + t) * s->H + h) * L + l;
    return softplus(r->in[1][at] + r->in[2][h * L + l]);
}

static void check_loglinear(void) {
    static const int Ts[] = {1, 7, 64, 129};
    static const int maps[] = {FEATURE_ELU1, FEATURE_COSFORMER, FEATURE_FAVOR, FEATURE_RELU};
    for (int mi = 0; mi < 4; mi++)
        for (int ti = 0; ti < 4; ti++) {
            // chunk 8 (T = 129: 17 chunks, a tree of height 5); relu unnormalised; max_len < T
            // once, to check the folding of the oldest buckets.
            OpShape s = shape(2, Ts[ti], 8, 2, maps[mi], maps[mi] != FEATURE_RELU, 8);
            s.max_len = ti == 3 && mi == 0 ? 100 : 129;
            Run r = run_new("attention_loglinear", s, 200 + ti);
            for (size_t j = 0; j < r.in_n[2]; j++)  // data-dependent and per-level lambdas
                r.in[2][j] = rng_normal(rng_key(5, 5, 0, 0), j);
            r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
            double *W = dense_projection(&s, r.in + CORE_IN_PARAMS + 1);
            double *ref = malloc(sizeof(double) * r.out_n[0]);
            ref_attention(&r, W, loglinear_weight, ref);
            char what[128];
            snprintf(what, sizeof(what), "loglinear %s T=%d max_len=%d == level-weighted form",
                     MAP_NAMES[maps[mi]], Ts[ti], s.max_len);
            report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
            free(ref), free(W);
            run_free(&r);
        }
    // lambda == 1 (W_x = 0 and the initial bias): plain linear attention, for any chunk.
    for (int chunk = 1; chunk <= 64; chunk *= 4) {
        OpShape s = shape(2, 77, 8, 2, FEATURE_ELU1, 1, chunk);
        Run r = run_new("attention_loglinear", s, 300);
        memset(r.in[1], 0, sizeof(double) * r.in_n[1]);
        r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
        Run lin = run_new("attention_linear", s, 300);
        char what[128];
        snprintf(what, sizeof(what), "loglinear with lambda = 1, chunk %d == linear attention",
                 chunk);
        report(what, max_rel_err(r.out[0], lin.out[0], r.out_n[0]), RTOL);
        run_free(&r), run_free(&lin);
    }
}

// ---- HSS ------------------------------------------------------------------------------------

// P(S) of one m x D state with the op's bases (layout: depth l's node bases side by side,
// node k of depth l owning rows [k n / 2^l, (k+1) n / 2^l)): leaves kept, every off-diagonal
// sibling block (I, J') replaced by U_I U_I^T S[I,J'] V_J' V_J'^T.
static void hss_project(const OpShape *s, const double *U, const double *V, const double *S,
                        double *PS) {
    int m = s->C / s->H, D = m, J = 0, r = s->hss_rank, Ru = 0, Rv = 0;
    while ((D >> J) > s->hss_leaf) J++;
    for (int l = 1; l <= J; l++) Ru += (m >> l) < r ? m >> l : r, Rv += (D >> l) < r ? D >> l : r;
    int mJ = m >> J, dJ = D >> J;
    memset(PS, 0, sizeof(double) * m * D);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < D; j++)
            if (i / mJ == j / dJ) PS[i * D + j] = S[i * D + j];
    int cu = 0, cv = 0;
    for (int l = 1; l <= J; l++) {
        int mI = m >> l, dI = D >> l, ru = mI < r ? mI : r, rv = dI < r ? dI : r;
        for (int k = 0; k < (1 << l); k++) {
            int r0 = k * mI, c0 = (k ^ 1) * dI;
            double core[64 * 64] = {0};  // U_I^T S[I,J'] V_J'
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
}

// o_t = P(S_t)^T phi(q_t) / (phi(q_t) . z_t + eps), S_t = sum_{u<=t} phi(k_u) v_u^T (elu+1).
static void ref_hss(const Run *r, double *out) {
    const OpShape *s = &r->s;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    double *S = malloc(sizeof(double) * D * D), *PS = malloc(sizeof(double) * D * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            double z[64] = {0};
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                const double *q = q_of(r, b, t, h);
                double pq[64], pk[64];
                ref_phi(s, NULL, q, pq);
                ref_phi(s, NULL, q + C, pk);
                for (int i = 0; i < D; i++) {
                    z[i] += pk[i];
                    for (int j = 0; j < D; j++) S[i * D + j] += pk[i] * q[2 * C + j];
                }
                hss_project(s, r->in[CORE_IN_PARAMS], r->in[CORE_IN_PARAMS + 1], S, PS);
                double den = s->normalize ? dot(pq, z, D) + s->eps : 1;
                double *o = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) {
                    o[j] = 0;
                    for (int i = 0; i < D; i++) o[j] += PS[i * D + j] * pq[i];
                    o[j] /= den;
                }
            }
        }
    free(S), free(PS);
}

static void check_hss(void) {
    static const int Ts[] = {1, 7, 64, 129};
    for (int ti = 0; ti < 4; ti++) {
        // head dim 16, leaves of 4 (tree depth 2): full rank 8 (the largest off-diagonal block)
        OpShape s = shape(2, Ts[ti], 32, 2, FEATURE_ELU1, 1, 16);
        s.hss_leaf = 4, s.hss_rank = 8;
        Run full = run_new("attention_hss", s, 400 + ti);
        Run dense = run_new("attention_linear", s, 400 + ti);
        char what[128];
        snprintf(what, sizeof(what), "hss full rank T=%d == dense state", Ts[ti]);
        report(what, max_rel_err(full.out[0], dense.out[0], full.out_n[0]), RTOL);
        run_free(&full), run_free(&dense);
        s.hss_rank = 2;
        Run low = run_new("attention_hss", s, 400 + ti);
        double *ref = malloc(sizeof(double) * low.out_n[0]);
        ref_hss(&low, ref);
        snprintf(what, sizeof(what), "hss rank 2 T=%d == explicitly projected state", Ts[ti]);
        report(what, max_rel_err(low.out[0], ref, low.out_n[0]), RTOL);
        free(ref);
        if (ti == 3) {  // P(P(S)) == P(S) for a random S: orthonormal bases
            int D = 16;
            double S[256], PS[256], PPS[256];
            for (int i = 0; i < D * D; i++) S[i] = rng_normal(rng_key(9, 9, 0, 0), (uint64_t)i);
            hss_project(&low.s, low.in[CORE_IN_PARAMS], low.in[CORE_IN_PARAMS + 1], S, PS);
            hss_project(&low.s, low.in[CORE_IN_PARAMS], low.in[CORE_IN_PARAMS + 1], PS, PPS);
            report("hss projection is idempotent (orthonormal bases)", max_rel_err(PPS, PS, 256),
                   RTOL);
        }
        run_free(&low);
    }
}

// ---- circulant projection and FAVOR+ features -------------------------------------------------

static void check_circulant(void) {
    static const int dims[][2] = {{5, 11}, {8, 8}, {16, 64}};  // head dim, features
    for (int c = 0; c < 3; c++) {
        int D = dims[c][0], m = dims[c][1];
        OpShape s = shape(2, 9, 2 * D, 2, FEATURE_CIRCULANT, 1, 16);
        s.n_features = m;
        Run r = run_new("feature_map", s, 500 + c);
        const double *sg = r.in[CORE_IN_PARAMS + 1];
        double *W = dense_projection(&s, r.in + CORE_IN_PARAMS);
        double *ref = malloc(sizeof(double) * r.out_n[0]), *xt = malloc(sizeof(double) * D);
        for (int bh = 0; bh < s.B * s.H; bh++)
            for (int t = 0; t < s.T; t++)
                ref_phi(&s, W, q_of(&r, bh / s.H, t, bh % s.H), ref + ((size_t)bh * s.T + t) * m);
        char what[128];
        snprintf(what, sizeof(what), "circulant d=%d m=%d: FFT features == explicit C(r) diag(s)",
                 D, m);
        report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
        // dr: with g = dphi (.) phi, dW[j][k] = sum over tokens g_j xt_k, and W[j][k] =
        // r_b[(k - i) mod D] s_b[k] sends it to dr_b[(k - i) mod D] with the sign s_b[k].
        size_t nr = r.in_n[CORE_IN_PARAMS];
        double *dphi = malloc(sizeof(double) * r.out_n[0]),
               *zero = calloc(r.out_n[0], sizeof(double));
        double *din[OP_MAX_IO] = {calloc(r.in_n[0], sizeof(double)), NULL,
                                  calloc(nr, sizeof(double)), calloc(nr, sizeof(double))};
        double *dr_ref = calloc(nr, sizeof(double));
        for (size_t i = 0; i < r.out_n[0]; i++) dphi[i] = rng_normal(rng_key(6, 6, 0, 0), i);
        const double *douts[2] = {dphi, zero};
        r.op->backward(&r.s, (const double *const *)r.in, (const double *const *)r.out, r.saved,
                       douts, din);
        int nb = (m + D - 1) / D, drop = nb * D - m;
        for (int bh = 0; bh < s.B * s.H; bh++)
            for (int t = 0; t < s.T; t++) {
                rf_input(&s, q_of(&r, bh / s.H, t, bh % s.H), xt);
                const double *ph = r.out[0] + ((size_t)bh * s.T + t) * m;
                const double *dp = dphi + ((size_t)bh * s.T + t) * m;
                for (int j = 0; j < m; j++) {
                    int b = j < (nb - 1) * D ? j / D : nb - 1;
                    int i = b < nb - 1 ? j - b * D : j - (nb - 1) * D + drop;
                    for (int k = 0; k < D; k++)
                        dr_ref[b * D + ((k - i) % D + D) % D] +=
                            dp[j] * ph[j] * xt[k] * sg[b * D + k];
                }
            }
        snprintf(what, sizeof(what), "circulant d=%d m=%d: FFT dr == explicit dr", D, m);
        report(what, max_rel_err(din[CORE_IN_PARAMS], dr_ref, nr), RTOL);
        free(dphi), free(zero), free(dr_ref), free(din[0]), free(din[2]), free(din[3]);
        free(ref), free(xt), free(W);
        run_free(&r);
    }
}

static void check_favor(void) {
    // Orthogonal random features: rows orthogonal inside each block of d rows.
    OpShape s = shape(1, 1, 16, 2, FEATURE_FAVOR, 1, 16);  // head dim 8
    s.n_features = 4096, s.qk_norm = 0;
    const OpDef_f64 *op = op_find_f64("feature_map");
    int D = 8, m = s.n_features;
    double *W = malloc(sizeof(double) * m * D), *W2 = malloc(sizeof(double) * m * D);
    op->init_param(&s, 0, rng_key(1, 2, 3, 0), W);
    double worst = max_rel_err(W, W, (size_t)m * D);  // NaN if any entry is not finite
    for (int b0 = 0; b0 < m; b0 += D)
        for (int i = b0; i < b0 + D; i++)
            for (int j = b0; j < i; j++) {
                double c = dot(W + i * D, W + j * D, D);
                c /= sqrt(dot(W + i * D, W + i * D, D) * dot(W + j * D, W + j * D, D));
                worst = fabs(c) > worst ? fabs(c) : worst;
            }
    report("favor: rows orthogonal within each block (max |cos|)", worst, 1e-12);
    // E[phi(x).phi(y)] = exp(x~ . y~) = exp(q.k / sqrt(d)). The relative variance of one
    // feature is about exp(|x~ + y~|^2) - 1 (~0.6 here): 4096 features give ~1.3 % standard
    // error, so 5 % is a 4-sigma bound (statistical check, loose on purpose).
    double worst_rel = 0, x[8], y[8], px[4096], py[4096];
    for (int pair = 0; pair < 8; pair++) {
        for (int i = 0; i < D; i++)
            x[i] = 0.3 * rng_normal(rng_key(3, 3, (uint64_t)pair, 0), (uint64_t)i),
            y[i] = 0.3 * rng_normal(rng_key(3, 4, (uint64_t)pair, 0), (uint64_t)i);
        ref_phi(&s, W, x, px);
        ref_phi(&s, W, y, py);
        double est = dot(px, py, m), exact = exp(dot(x, y, D) / sqrt(D));
        if (!isfinite(est)) {
            worst_rel = NAN;
            break;
        }
        worst_rel = fmax(worst_rel, fabs(est / exact - 1));
    }
    report("favor: 4096-feature kernel estimate vs exp(q.k / sqrt(d)) (relative)", worst_rel, 0.05);
    op->init_param(&s, 0, rng_key(1, 2, 3, 0), W2);
    report("favor: a draw is a pure function of its key", max_rel_err(W, W2, (size_t)m * D), 0);
    free(W), free(W2);

    // Through the model: draw 0 is the initialisation, draw 1 differs, the buffer is not
    // trainable.
    ModelConfig cfg = {.vocab_size = 5,
                       .d_model = 16,
                       .n_layers = 2,
                       .n_heads = 2,
                       .d_ff = 8,
                       .mlp = MLP_NONE,
                       .tie_embeddings = 1,
                       .norm_eps = 1e-5,
                       .init_std = 0.02,
                       .normalize = 1,
                       .chunk = 8,
                       .attn_eps = 1e-6,
                       .n_features = 12,
                       .qk_norm = 1,
                       .max_len = 8};
    cfg.mixer[0] = cfg.mixer[1] = mixer_find("favor");
    Model_f64 model;
    char err[256];
    if (model_build_f64(&model, &cfg, &BACKEND_CPU_f64, err, sizeof(err))) {
        printf("FAIL model build: %s\n", err);
        failures++;
        return;
    }
    model_init_f64(&model, 42);
    double *init = malloc(sizeof(double) * model.n_params);
    memcpy(init, model.params, sizeof(double) * model.n_params);
    const ParamInfo *p0 = NULL, *p1 = NULL;
    for (int t = 0; t < model.n_tensors; t++)
        if (model.info[t].redraw && !p0)
            p0 = &model.info[t];
        else if (model.info[t].redraw)
            p1 = &model.info[t];
    int ok = p0 && p1 && !p0->trainable && !strcmp(p0->name, "layers.0.mixer.favor_proj");
    report("favor: each layer's projection is a non-trainable, redrawable buffer", !ok, 0);
    model_redraw_f64(&model, 42, 0);
    report("favor: redraw 0 == the initial draw", max_rel_err(model.params, init, model.n_params),
           0);
    model_redraw_f64(&model, 42, 1);
    double moved = max_rel_err(model.params + p0->offset, init + p0->offset, p0->size), other = 0;
    for (int t = 0; t < model.n_tensors; t++) {
        const ParamInfo *p = &model.info[t];
        if (!p->redraw)
            other = fmax(other, max_rel_err(model.params + p->offset, init + p->offset, p->size));
    }
    report("favor: redraw 1 changes the projection (1 / max change)", 1 / fmax(moved, 1e-300), 10);
    report("favor: and nothing else", other, 0);
    report("favor: the layers draw different projections (1 / max difference)",
           1 / fmax(max_rel_err(model.params + p0->offset, model.params + p1->offset, p0->size),
                    1e-300),
           10);
    free(init);
    model_free_f64(&model);
}

// ---- Hydra, the short convolution -------------------------------------------------------------

static void check_hydra(void) {
    static const int Ts[] = {1, 7, 64, 129};
    for (int norm = 0; norm <= 1; norm++)
        for (int ti = 0; ti < 4; ti++) {
            OpShape s = {.B = 2, .T = Ts[ti], .C = 12, .H = 3, .hydra_norm = norm};
            Run r = run_new("attention_hydra", s, 600 + ti);
            int C = s.C, T = s.T;
            double *ref = malloc(sizeof(double) * r.out_n[0]);
            for (int b = 0; b < s.B; b++)
                for (int t = 0; t < T; t++) {
                    const double *q = q_of(&r, b, t, 0);
                    for (int i = 0; i < C; i++) {
                        double acc = 0;  // sum_{u<=t} kh_u v_u, recomputed for every t
                        for (int u = 0; u <= t; u++) {
                            const double *k = q_of(&r, b, u, 0) + C;
                            acc += k[i] / sqrt(dot(k, k, C)) * k[C + i];
                        }
                        double c = norm == HYDRA_NORM_COUNT ? 1.0 / (t + 1) : 1;
                        ref[((size_t)b * T + t) * C + i] = q[i] / sqrt(dot(q, q, C)) * acc * c;
                    }
                }
            char what[128];
            snprintf(what, sizeof(what), "hydra %s T=%d == explicit causal cosine form",
                     norm ? "none" : "count", Ts[ti]);
            report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
            free(ref);
            run_free(&r);
        }
}

// A mixer layer with the identity-initialised convolution computes what it computes without.
static void check_conv_identity(void) {
    for (int mx = 0; mx < N_MIXERS; mx++) {
        ModelConfig cfg = {.d_model = 8,
                           .n_heads = 2,
                           .gate = 1,
                           .rope_base = 10000,
                           .feature_map = FEATURE_ELU1,
                           .normalize = 1,
                           .chunk = 4,
                           .attn_eps = 1e-6,
                           .n_features = 6,
                           .qk_norm = 1,
                           .max_len = 16,
                           .hss_rank = 1,
                           .hss_leaf = 2,
                           .conv_kernel = 4};
        cfg.mixer[0] = mx, cfg.rope[0] = MIXERS[mx].rope_default;
        int B = 2, T = 9, N = B * T, C = 8;
        ParamInfo with[MAX_PARAMS_PER_LAYER], without[MAX_PARAMS_PER_LAYER];
        int kw = mixer_param_specs(&cfg, 0, with);
        double *w[MAX_PARAMS_PER_LAYER], *w2[MAX_PARAMS_PER_LAYER];
        for (int i = 0; i < kw; i++) {
            w[i] = malloc(sizeof(double) * with[i].size);
            if (with[i].init == INIT_CUSTOM)
                mixer_init_param_f64(&cfg, 0, i, rng_key(8, (uint64_t)i, 0, 0), w[i]);
            else
                for (size_t j = 0; j < with[i].size; j++)
                    w[i][j] = 0.3 * rng_normal(rng_key(8, (uint64_t)i, 1, 0), j);
        }
        ModelConfig plain = cfg;
        plain.conv_kernel = 0;
        int k2 = mixer_param_specs(&plain, 0, without);
        for (int i = 0, j = 0; i < kw; i++)  // the same tensors, less the convolution
            if (strcmp(with[i].name, "wconv")) w2[j++] = w[i];
        double *x = malloc(sizeof(double) * N * C), *y = malloc(sizeof(double) * N * C);
        double *y2 = malloc(sizeof(double) * N * C);
        for (int i = 0; i < N * C; i++) x[i] = rng_normal(rng_key(8, 99, 0, 0), (uint64_t)i);
        double *acts = malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, B, T));
        double *acts2 = malloc(sizeof(double) * mixer_acts_size_f64(&plain, 0, &BACKEND_CPU_f64, B, T));
        mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, B, T, y, x, w, acts);
        mixer_forward_f64(&plain, 0, &BACKEND_CPU_f64, B, T, y2, x, w2, acts2);
        char what[128];
        snprintf(what, sizeof(what), "%s: identity-initialised conv == no conv (%d vs %d tensors)",
                 MIXERS[mx].name, kw, k2);
        report(what, max_rel_err(y, y2, (size_t)N * C), 1e-14);
        for (int i = 0; i < kw; i++) free(w[i]);
        free(x), free(y), free(y2), free(acts), free(acts2);
    }
}

// ---- auxiliary figures ------------------------------------------------------------------------

static double aux_value(const OpAux *a, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(a[i].name, name)) return a[i].value;
    return NAN;
}

static void check_aux(void) {
    // HSS memory ratio of E005 (D = 64, leaf 16, r = 8): (4 16^2 + 2 8^2 + 4 8^2) / 64^2.
    OpShape s = shape(1, 20, 64, 1, FEATURE_ELU1, 1, 8);
    s.hss_leaf = 16, s.hss_rank = 8;
    Run r = run_new("attention_hss", s, 700);
    OpAux a[OP_MAX_AUX];
    int n = r.op->aux(&r.s, (const double *const *)r.in, a);
    report("hss state_memory_ratio (d 64, leaf 16, r 8) == 1408 / 4096",
           fabs(aux_value(a, n, "state_memory_ratio") - 1408.0 / 4096), 1e-15);
    report("hss feature_map_ms is reported", !(aux_value(a, n, "feature_map_ms") >= 0), 0);
    run_free(&r);
    // Full rank keeps every off-diagonal block: top-r energy 1 at both depths; a rank-1 share
    // lies in (0, 1].
    s.hss_rank = 32;
    Run full = run_new("attention_linear", s, 701);
    n = full.op->aux(&full.s, (const double *const *)full.in, a);
    report("dense baseline: top-r energy at full rank == 1 (depth 1, 2)",
           fmax(fabs(aux_value(a, n, "offdiag_energy_depth_1") - 1),
                fabs(aux_value(a, n, "offdiag_energy_depth_2") - 1)),
           1e-12);
    // Rank 1: the share of sigma_1^2, by power iteration on each depth-1 block of the dense
    // state S = sum_t phi(k_t) v_t^T (one sequence, one head: two blocks).
    s.hss_rank = 1;
    full.s = s;
    n = full.op->aux(&full.s, (const double *const *)full.in, a);
    double *S = calloc(64 * 64, sizeof(double)), pk[64], share = 0;
    for (int t = 0; t < s.T; t++) {
        const double *k = q_of(&full, 0, t, 0) + 64;
        ref_phi(&s, NULL, k, pk);
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++) S[i * 64 + j] += pk[i] * k[64 + j];
    }
    for (int blk = 0; blk < 2; blk++) {
        int r0 = blk * 32, c0 = (1 - blk) * 32;
        double v[32], u[32], frob = 0, sigma2 = 0;
        for (int j = 0; j < 32; j++) v[j] = 1;
        for (int it = 0; it < 2000; it++) {  // v <- B^T B v / |.|
            for (int i = 0; i < 32; i++) u[i] = 0;
            for (int i = 0; i < 32; i++)
                for (int j = 0; j < 32; j++) u[i] += S[(r0 + i) * 64 + c0 + j] * v[j];
            double nv = 0;
            for (int j = 0; j < 32; j++) {
                v[j] = 0;
                for (int i = 0; i < 32; i++) v[j] += S[(r0 + i) * 64 + c0 + j] * u[i];
                nv += v[j] * v[j];
            }
            sigma2 = dot(u, u, 32);  // |B v|^2 with |v| = 1 from the previous step
            for (int j = 0; j < 32; j++) v[j] /= sqrt(nv);
        }
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 32; j++) frob += pow(S[(r0 + i) * 64 + c0 + j], 2);
        share += sigma2 / frob / 2;
    }
    report("dense baseline: rank-1 energy share == power iteration (depth 1)",
           fabs(aux_value(a, n, "offdiag_energy_depth_1") - share), 1e-10);
    free(S);
    run_free(&full);

    // Log-linear level energies == |sum of f_u v_u^T over bucket l of t = T-1|_F^2 (buckets from
    // the dyadic definition), averaged over sequences and heads.
    OpShape ls = shape(2, 23, 8, 2, FEATURE_ELU1, 1, 4);
    ls.max_len = 32;
    Run lr = run_new("attention_loglinear", ls, 702);
    n = lr.op->aux(&lr.s, (const double *const *)lr.in, a);
    int L = (int)(lr.in_n[2] / ls.H), D = 4, T = ls.T;
    double worst = n == 1 + L ? 0 : NAN;
    for (int l = 0; l < L; l++) {
        double e = 0;
        for (int bh = 0; bh < 4; bh++) {
            double S[16] = {0}, pk[4];
            for (int u = 0; u < T; u++) {
                if (bucket_level(T - 1, u) != l) continue;
                const double *k = q_of(&lr, bh / 2, u, bh % 2) + 8;
                ref_phi(&ls, NULL, k, pk);
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++) S[i * D + j] += pk[i] * k[8 + j];
            }
            e += dot(S, S, 16) / 4;
        }
        char name[40];
        snprintf(name, sizeof(name), "level_energy_%d", l);
        worst = fmax(worst, fabs(aux_value(a, n, name) - e) / fmax(1, e));
    }
    report("loglinear level_energy_l == explicit bucket states", worst, RTOL);
    run_free(&lr);

    // The layer counts NaN/Inf in the core's input and output.
    ModelConfig cfg = {.d_model = 8,
                       .n_heads = 2,
                       .feature_map = FEATURE_ELU1,
                       .normalize = 1,
                       .chunk = 4,
                       .attn_eps = 1e-6,
                       .max_len = 8};
    cfg.mixer[0] = mixer_find("linear");
    ParamInfo specs[MAX_PARAMS_PER_LAYER];
    int k = mixer_param_specs(&cfg, 0, specs);
    double *w[MAX_PARAMS_PER_LAYER], x[2 * 8 * 8], y[2 * 8 * 8];
    for (int i = 0; i < k; i++) {
        w[i] = malloc(sizeof(double) * specs[i].size);
        for (size_t j = 0; j < specs[i].size; j++)
            w[i][j] = 0.3 * rng_normal(rng_key(4, 4, (uint64_t)i, 0), j);
    }
    for (int i = 0; i < 128; i++) x[i] = rng_normal(rng_key(4, 5, 0, 0), (uint64_t)i);
    double *acts = malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8));
    mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, y, x, w, acts);
    n = mixer_aux_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, w, acts, a);
    report("mixer_aux: no nonfinite values on finite input", aux_value(a, n, "nonfinite"), 0);
    x[3 * 8 + 1] = NAN;  // token 3 of sequence 0: its q|k|v, and every later output of it
    mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, y, x, w, acts);
    n = mixer_aux_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, w, acts, a);
    report("mixer_aux: counts NaN (1 / count)", 1 / aux_value(a, n, "nonfinite"), 1.0 / 24);
    for (int i = 0; i < k; i++) free(w[i]);
    free(acts);
}

int main(void) {
    check_linear();
    check_loglinear();
    check_hss();
    check_circulant();
    check_favor();
    check_hydra();
    check_conv_identity();
    check_aux();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
