// DeltaNet and Gated DeltaNet: linear attention whose state is written by the delta rule
// (mixers.md sections 11 and 12). Per head h (head dim D), per token t, with q and k
// L2-normalised inside the op (q also scaled by 1/sqrt(D)):
//   beta_t  = sigmoid(x_t W_x[h])               (2 sigmoid under mixer.neg_eigval: in (0, 2))
//   g_t     = -exp(A_log_h) softplus(x_t W_x[H + h] + dt_bias_h),   alpha_t = exp(g_t)
//   S_t     = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T   (S [D, D], key-major)
//           = P_t + k_t u_t^T,   P_t = alpha_t S_{t-1},   u_t = beta_t (v_t - P_t^T k_t)
//   o_t     = S_t^T q_t
// deltanet is the same with alpha_t = 1 (no A_log, dt_bias; x W_x holds beta only).
// Training runs the chunkwise UT form (mixers.md 11-12) both ways: forward saves each chunk's
// entering state; backward sweeps the chunks in reverse from those states, recomputing a
// chunk's U by forward substitution and its gradients with one back substitution, so memory is
// O(T D^2 / chunk) plus O(chunk^2) per head. The oracle is the per-token recurrence.
#include "../attention_delta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mamba_init.h"
#include "../ops.h"
#include "../real.h"
#include "../rng.h"
#include "linear_core.h"
#include "vexp.h"

#define DELTA_NORM_EPS 1e-6

static int n_chunks(const OpShape *s) {
    int L = delta_chunk(s);
    return (s->T + L - 1) / L;
}

// beta_t, and log alpha_t for the gated row (0 otherwise), of token t in head h. xproj is
// [B, T, E]: E = H (beta) for deltanet, 2H (beta, then the decay's a) for gated_deltanet.
static void delta_gates(const OpShape *s, int gated, const real *const *in, int b, int t, int h,
                        real *beta, real *g) {
    int H = s->H, E = gated ? 2 * H : H;
    const real *x = in[CORE_IN_XPROJ] + ((size_t)b * s->T + t) * E;
    real sg = vsigmoid(x[h]);
    *beta = OPT_OF(DeltaOpts, s).neg_eigval ? 2 * sg : sg;
    *g = 0;
    if (gated)
        *g = -exp(in[CORE_IN_PARAMS][h]) * mamba_softplus(x[H + h] + in[CORE_IN_PARAMS + 1][h]);
}

// y = scale x / sqrt(|x|^2 + eps); returns the norm.
static real delta_l2n(const real *x, int D, real scale, real *y) {
    real ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    real n = sqrt(ss + (real)DELTA_NORM_EPS);
    for (int i = 0; i < D; i++) y[i] = scale * x[i] / n;
    return n;
}

// dx += scale (dy - yh (yh . dy)) / n with yh = y / scale, the normalisation's Jacobian.
static void delta_l2n_back(const real *y, const real *dy, int D, real scale, real n, real *dx) {
    real dot = 0;
    for (int i = 0; i < D; i++) dot += y[i] * dy[i];
    dot /= scale;
    for (int i = 0; i < D; i++) dx[i] += scale * (dy[i] - y[i] / scale * dot) / n;
}

// The chunkwise (UT transform) form of one chunk of n tokens, with Gc the cumulative log decay
// inside the chunk and Gam[r, s] = exp(Gc_r - Gc_s) for r >= s (never exponentiated for r < s):
//   U  = (I + tril(diag(beta) (Gam (.) K K^T), -1))^{-1} diag(beta) (V - diag(exp Gc) K S)
//      (Tm V - Tm diag(exp Gc) K S = U - W S of mixers.md: "Unew", by forward substitution)
//   O  = diag(exp Gc) Q S + ((Q K^T) (.) Gam (.) M) U          (M: causal, diagonal included)
//   S' = exp(Gc_last) S + (exp(Gc_last - Gc) (.) K)^T U
// Context parallelism: S starts at state_in [B, H, D, D] (NULL: zero); the last S goes to
// state_out (NULL: not wanted).
static void delta_forward(const OpShape *s, int gated, const real *const *in, real *const *out,
                          real *sv, const real *state_in, real *state_out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = delta_chunk(s);
    int nc = n_chunks(s);
    const real *qkv = in[CORE_IN_QKV];
    real qscale = 1 / sqrt((real)D);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        real *S = calloc((size_t)D * D, sizeof(real));
        if (state_in) memcpy(S, state_in + (size_t)bh * D * D, sizeof(real) * D * D);
        real *Q = malloc(sizeof(real) * L * D), *K = malloc(sizeof(real) * L * D);
        real *U = malloc(sizeof(real) * L * D), *beta = malloc(sizeof(real) * L);
        real *Gc = malloc(sizeof(real) * L);
        for (int c = 0; c < nc; c++) {
            int t0 = c * L, n = T - t0 < L ? T - t0 : L;
            memcpy(sv + ((size_t)bh * nc + c) * D * D, S, sizeof(real) * D * D);
            for (int r = 0; r < n; r++) {
                const real *q = qkv + ((size_t)b * T + t0 + r) * 3 * C + h * D;
                real g;
                delta_l2n(q, D, qscale, Q + r * D);
                delta_l2n(q + C, D, 1, K + r * D);
                delta_gates(s, gated, in, b, t0 + r, h, beta + r, &g);
                Gc[r] = (r ? Gc[r - 1] : 0) + g;
            }
            for (int r = 0; r < n; r++) {
                const real *v = qkv + ((size_t)b * T + t0 + r) * 3 * C + 2 * C + h * D;
                real ar = exp(Gc[r]), *u = U + r * D;
                for (int j = 0; j < D; j++) u[j] = 0;  // k_r^T S, rows of S in order (vectorises)
                for (int i = 0; i < D; i++) {
                    real kr = K[r * D + i];
                    for (int j = 0; j < D; j++) u[j] += kr * S[i * D + j];
                }
                for (int j = 0; j < D; j++) u[j] = beta[r] * (v[j] - ar * u[j]);
                for (int p = 0; p < r; p++) {
                    real kk = 0;
                    for (int i = 0; i < D; i++) kk += K[r * D + i] * K[p * D + i];
                    real coef = beta[r] * exp(Gc[r] - Gc[p]) * kk;
                    for (int j = 0; j < D; j++) U[r * D + j] -= coef * U[p * D + j];
                }
            }
            for (int r = 0; r < n; r++) {
                real *o = out[0] + ((size_t)b * T + t0 + r) * C + h * D, ar = exp(Gc[r]);
                for (int j = 0; j < D; j++) o[j] = 0;
                for (int i = 0; i < D; i++) {
                    real qa = ar * Q[r * D + i];
                    for (int j = 0; j < D; j++) o[j] += qa * S[i * D + j];
                }
                for (int p = 0; p <= r; p++) {
                    real qk = 0;
                    for (int i = 0; i < D; i++) qk += Q[r * D + i] * K[p * D + i];
                    real coef = exp(Gc[r] - Gc[p]) * qk;
                    for (int j = 0; j < D; j++) o[j] += coef * U[p * D + j];
                }
            }
            real alast = exp(Gc[n - 1]);
            for (int i = 0; i < D * D; i++) S[i] *= alast;
            for (int p = 0; p < n; p++) {
                real w = exp(Gc[n - 1] - Gc[p]);
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++) S[i * D + j] += w * K[p * D + i] * U[p * D + j];
            }
        }
        if (state_out) memcpy(state_out + (size_t)bh * D * D, S, sizeof(real) * D * D);
        free(S), free(Q), free(K), free(U), free(beta), free(Gc);
    }
}

// The chunkwise backward: per chunk, in reverse, from its saved entering state S and dS' (the
// gradient of its exit state), with A[r, s] = beta_r Gam[r, s] (k_r . k_s) (s < r) and
// X = diag(beta) (V - diag(a) K S), a = exp(Gc), w = exp(Gc_last - Gc):
//   dU  = ((Q K^T) (.) Gam (.) M)^T dO + diag(w) K dS'
//   dX  = (I + A)^{-T} dU (back substitution),  dA = -dX U^T (strictly lower)
//   dQ  = diag(a) dO S^T + ((dO U^T) (.) Gam (.) M) K
//   dK  = ((dO U^T) (.) Gam (.) M)^T Q + diag(w) U dS'^T - diag(beta a) dX S^T
//         + (dA (.) diag(beta) Gam) K + (dA (.) diag(beta) Gam)^T K
//   dV  = diag(beta) dX,  dbeta_r = dX_r . (V_r - a_r (K S)_r) + sum_s dA[r, s] Gam[r, s] kk[r, s]
//   dS  = a_last dS' + (diag(a) Q)^T dO - (diag(beta a) K)^T dX
// and the decays' gradients in log space (dGc from a, w and Gam, then a reverse cumulative sum
// to the per-token g). dq, dk of the normalised vectors then go through the normalisations.
// The parameters' gradients are summed per (batch, head), then over the batch in a fixed order
// (bitwise reproducible for any thread count).
// The leaving state's gradient starts dS' (the chunk code already carries any dS', with its
// decay terms); after chunk 0, dS' is the entering state's gradient.
static void delta_backward(const OpShape *s, int gated, const real *const *in,
                           const real *const *out, const real *sv, const real *const *dout,
                           real *const *din, const real *dstate_out, real *dstate_in) {
    (void)out;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = delta_chunk(s);
    int nc = n_chunks(s), E = gated ? 2 * H : H, neg = OPT_OF(DeltaOpts, s).neg_eigval;
    const real *qkv = in[CORE_IN_QKV], *xp = in[CORE_IN_XPROJ];
    real *dqkv = din[CORE_IN_QKV], *dxp = din[CORE_IN_XPROJ];
    real qscale = 1 / sqrt((real)D);
    real *part = calloc((size_t)2 * B * H, sizeof(real));  // per bh: d A_log, d dt_bias
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        size_t LD = (size_t)L * D, LL = (size_t)L * L;
        real *dSn = calloc((size_t)D * D, sizeof(real));  // dS' of the chunk being swept
        if (dstate_out) memcpy(dSn, dstate_out + (size_t)bh * D * D, sizeof(real) * D * D);
        real *dSp = malloc(sizeof(real) * D * D);  // dS of its entering state
        real *qs = malloc(sizeof(real) * D);       // q_r^T S
        real *buf = malloc(sizeof(real) * (10 * LD + 2 * LL + 7 * (size_t)L));
        real *Q = buf, *K = Q + LD, *U = K + LD, *KS = U + LD, *KdS = KS + LD, *dU = KdS + LD;
        real *dX = dU + LD, *dQ = dX + LD, *dK = dQ + LD, *Vb = dK + LD;
        real *KK = Vb + LD, *QK = KK + LL;
        real *qn = QK + LL, *kn = qn + L, *beta = kn + L, *g = beta + L, *Gc = g + L;
        real *dGc = Gc + L, *dbeta = dGc + L;
        for (int c = nc - 1; c >= 0; c--) {
            int t0 = c * L, n = T - t0 < L ? T - t0 : L;
            const real *S = sv + ((size_t)bh * nc + c) * D * D;
            const real *dO = dout[0] + ((size_t)b * T + t0) * C + h * D;  // row r at r C
            for (int r = 0; r < n; r++) {
                const real *q = qkv + ((size_t)b * T + t0 + r) * 3 * C + h * D;
                qn[r] = delta_l2n(q, D, qscale, Q + r * D);
                kn[r] = delta_l2n(q + C, D, 1, K + r * D);
                memcpy(Vb + r * D, q + 2 * C, sizeof(real) * D);
                delta_gates(s, gated, in, b, t0 + r, h, beta + r, g + r);
                Gc[r] = (r ? Gc[r - 1] : 0) + g[r];
                dGc[r] = 0, dbeta[r] = 0;
            }
            real glast = Gc[n - 1], alast = exp(glast);
            // the forward's U, and K S, K dS', K K^T, Q K^T
            for (int r = 0; r < n; r++) {
                real *ks = KS + r * D, *kd = KdS + r * D, ar = exp(Gc[r]);
                for (int j = 0; j < D; j++) ks[j] = 0, kd[j] = 0;
                for (int i = 0; i < D; i++) {  // rows of S and dS' in order (vectorises)
                    real kr = K[r * D + i];
                    for (int j = 0; j < D; j++)
                        ks[j] += kr * S[i * D + j], kd[j] += kr * dSn[i * D + j];
                }
                for (int j = 0; j < D; j++) U[r * D + j] = beta[r] * (Vb[r * D + j] - ar * ks[j]);
                for (int p = 0; p < n; p++) {
                    real kk = 0, qk = 0;
                    for (int i = 0; i < D; i++)
                        kk += K[r * D + i] * K[p * D + i], qk += Q[r * D + i] * K[p * D + i];
                    KK[r * L + p] = kk, QK[r * L + p] = qk;
                }
                for (int p = 0; p < r; p++) {
                    real coef = beta[r] * exp(Gc[r] - Gc[p]) * KK[r * L + p];
                    for (int j = 0; j < D; j++) U[r * D + j] -= coef * U[p * D + j];
                }
            }
            // dU, then dX by back substitution
            for (int p = 0; p < n; p++) {
                real w = exp(glast - Gc[p]);
                for (int j = 0; j < D; j++) dU[p * D + j] = w * KdS[p * D + j];
                for (int r = p; r < n; r++) {
                    real coef = exp(Gc[r] - Gc[p]) * QK[r * L + p];
                    for (int j = 0; j < D; j++) dU[p * D + j] += coef * dO[(size_t)r * C + j];
                }
            }
            for (int p = n - 1; p >= 0; p--) {
                for (int j = 0; j < D; j++) dX[p * D + j] = dU[p * D + j];
                for (int r = p + 1; r < n; r++) {
                    real coef = beta[r] * exp(Gc[r] - Gc[p]) * KK[r * L + p];
                    for (int j = 0; j < D; j++) dX[p * D + j] -= coef * dX[r * D + j];
                }
            }
            // the terms through S, S' and X, row by row
            for (int r = 0; r < n; r++) {
                real ar = exp(Gc[r]), w = exp(glast - Gc[r]), da = 0, dw = 0;
                for (int i = 0; i < D; i++) {
                    real dq = 0, dk = 0;
                    for (int j = 0; j < D; j++) {
                        dq += dO[(size_t)r * C + j] * S[i * D + j];
                        dk += w * U[r * D + j] * dSn[i * D + j] -
                              beta[r] * ar * dX[r * D + j] * S[i * D + j];
                    }
                    dQ[r * D + i] = ar * dq, dK[r * D + i] = dk;
                }
                for (int j = 0; j < D; j++) qs[j] = 0;
                for (int i = 0; i < D; i++) {
                    real qr = Q[r * D + i];
                    for (int j = 0; j < D; j++) qs[j] += qr * S[i * D + j];
                }
                for (int j = 0; j < D; j++) {
                    da += dO[(size_t)r * C + j] * qs[j] - beta[r] * dX[r * D + j] * KS[r * D + j];
                    dbeta[r] += dX[r * D + j] * (Vb[r * D + j] - ar * KS[r * D + j]);
                    dw += KdS[r * D + j] * U[r * D + j];
                }
                dGc[r] += ar * da - w * dw;
                dGc[n - 1] += w * dw;
            }
            // the pair terms: the intra-chunk readout (r >= p) and A (r > p)
            for (int r = 0; r < n; r++)
                for (int p = 0; p <= r; p++) {
                    real gam = exp(Gc[r] - Gc[p]), dou = 0, dxu = 0;
                    for (int j = 0; j < D; j++)
                        dou += dO[(size_t)r * C + j] * U[p * D + j],
                            dxu += dX[r * D + j] * U[p * D + j];
                    real dgam = dou * QK[r * L + p], ck = gam * dou, dkk = 0;
                    if (p < r) {
                        real dA = -dxu;
                        dbeta[r] += dA * gam * KK[r * L + p];
                        dgam += dA * beta[r] * KK[r * L + p];
                        dkk = dA * beta[r] * gam;
                    }
                    for (int i = 0; i < D; i++) {
                        dQ[r * D + i] += ck * K[p * D + i];
                        dK[p * D + i] += ck * Q[r * D + i] + dkk * K[r * D + i];
                        dK[r * D + i] += dkk * K[p * D + i];
                    }
                    dGc[r] += dgam * gam, dGc[p] -= dgam * gam;
                }
            // dS of the entering state
            for (int i = 0; i < D; i++) {  // token by token over rows (vectorises)
                real *ds = dSp + i * D;
                for (int j = 0; j < D; j++) ds[j] = alast * dSn[i * D + j];
                for (int r = 0; r < n; r++) {
                    real ar = exp(Gc[r]), qa = ar * Q[r * D + i], kb = ar * beta[r] * K[r * D + i];
                    const real *g = dO + (size_t)r * C, *dx = dX + r * D;
                    for (int j = 0; j < D; j++) ds[j] += qa * g[j] - kb * dx[j];
                }
            }
            real dacc = 0;
            for (int i = 0; i < D * D; i++) dacc += dSn[i] * S[i];
            dGc[n - 1] += alast * dacc;
            memcpy(dSn, dSp, sizeof(real) * D * D);
            // to the inputs: v, the normalisations, beta's and g's pre-activations
            real dgsum = 0;
            for (int r = n - 1; r >= 0; r--) {
                int t = t0 + r;
                size_t row = ((size_t)b * T + t) * 3 * C + h * D;
                for (int j = 0; j < D; j++) dqkv[row + 2 * C + j] += beta[r] * dX[r * D + j];
                delta_l2n_back(Q + r * D, dQ + r * D, D, qscale, qn[r], dqkv + row);
                delta_l2n_back(K + r * D, dK + r * D, D, 1, kn[r], dqkv + row + C);
                const real *x = xp + ((size_t)b * T + t) * E;
                real sg = vsigmoid(x[h]);
                dxp[((size_t)b * T + t) * E + h] += dbeta[r] * (neg ? 2 : 1) * sg * (1 - sg);
                dgsum += dGc[r];  // dg_r = sum_{r' >= r} dGc_r'
                if (gated) {
                    real A = exp(in[CORE_IN_PARAMS][h]), z = x[H + h] + in[CORE_IN_PARAMS + 1][h];
                    real dz = -dgsum * A * vsigmoid(z);  // g = -A softplus(z)
                    dxp[((size_t)b * T + t) * E + H + h] += dz;
                    part[2 * bh] += dgsum * g[r];  // dg/dA_log = g
                    part[2 * bh + 1] += dz;
                }
            }
        }
        if (dstate_in)
            for (size_t i = 0; i < (size_t)D * D; i++) dstate_in[(size_t)bh * D * D + i] += dSn[i];
        free(dSn), free(dSp), free(qs), free(buf);
    }
    if (gated)
        for (int h = 0; h < H; h++)
            for (int b = 0; b < B; b++)
                din[CORE_IN_PARAMS][h] += part[2 * (b * H + h)],
                    din[CORE_IN_PARAMS + 1][h] += part[2 * (b * H + h) + 1];
    free(part);
}

// Mamba-2's A and dt initialisation (kernels/mamba_init.h).
static int gdelta_params(const OpShape *s, OpParam *out) {
    return mamba_decay_params(s, "A_log", out);
}

static void delta_sizes_any(const OpShape *s, int gated, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    int np = gated ? gdelta_params(s, p) : 0;
    op_core_sizes(s, in, out, (size_t)(gated ? 2 : 1) * s->H, p, np);
    *saved = (size_t)s->B * s->H * n_chunks(s) * (s->C / s->H) * (s->C / s->H);
}

// The CUDA kernels keep a head's D x D state in one block, one thread per value column.
static int delta_check(const OpShape *s, char *err, size_t errlen) {
    if (s->C / s->H > DELTA_MAX_D) {
        snprintf(err, errlen,
                 "deltanet and gated_deltanet need a head dim (model.d_model / model.n_heads) "
                 "<= %d, got %d",
                 DELTA_MAX_D, s->C / s->H);
        return -1;
    }
    return 0;
}

// Per token and head (mixers.md 18, recurrent form): 6 D^2 (P^T k, the rank-one update, the
// readout), the two normalisations and the gates; the gated row adds D^2 for the state decay.
static double delta_flops_any(const OpShape *s, int gated) {
    double D = (double)s->C / s->H;
    return s->H * ((6 + gated) * D * D + 8 * D + 10);
}

// The mean write strength beta_t (and, gated, the mean decay alpha_t) over tokens and heads.
// The mean beta (and decay), and the effective rank of the final state, the recurrence
// S <- alpha (I - beta k k^T) S + beta k v^T (k L2-normalised) run per (batch, head) in double.
static int delta_aux_any(const OpShape *s, int gated, const real *const *in, OpAux *out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    double sb = 0, sa = 0, erank = 0;
    size_t n = (size_t)B * T * H;
    double *S = malloc(sizeof(double) * D * D), *kS = malloc(sizeof(double) * D);
    real *k = malloc(sizeof(real) * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                real beta, g;
                delta_gates(s, gated, in, b, t, h, &beta, &g);
                sb += beta, sa += exp(g);
                const real *x = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                delta_l2n(x + C, D, 1, k);
                double alpha = exp((double)g);
                for (int j = 0; j < D; j++) {
                    kS[j] = 0;
                    for (int i = 0; i < D; i++) kS[j] += k[i] * S[i * D + j];
                }
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++)
                        S[i * D + j] = alpha * (S[i * D + j] - beta * k[i] * kS[j]) +
                                       beta * k[i] * x[2 * C + j];
            }
            erank += F(state_effective_rank)(S, D, D) / (B * H);
        }
    free(S), free(kS), free(k);
    out[0] = (OpAux){.name = "beta_mean", .value = sb / (double)n};
    out[1] = (OpAux){.name = "state_erank", .value = erank};
    if (!gated) return 2;
    out[2] = (OpAux){.name = "decay_mean", .value = sa / (double)n};
    return 3;
}

#ifdef MT_DOUBLE
// The definition token by token: S <- alpha (I - beta k k^T) S + beta k v^T, o = S^T q.
static int delta_reference_any(const OpShape *s, int gated, const double *const *in, double *out) {
    int T = s->T, C = s->C, H = s->H, D = C / H, E = gated ? 2 * H : H;
    int neg = OPT_OF(DeltaOpts, s).neg_eigval;
    double *S = malloc(sizeof(double) * D * D), *kS = malloc(sizeof(double) * D);
    double *q = malloc(sizeof(double) * D), *k = malloc(sizeof(double) * D);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                const double *x = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                const double *v = x + 2 * C, *xe = in[CORE_IN_XPROJ] + ((size_t)b * T + t) * E;
                double nq = 0, nk = 0;
                for (int i = 0; i < D; i++) nq += x[i] * x[i], nk += x[C + i] * x[C + i];
                for (int i = 0; i < D; i++)
                    q[i] = x[i] / sqrt(nq + DELTA_NORM_EPS) / sqrt((double)D),
                    k[i] = x[C + i] / sqrt(nk + DELTA_NORM_EPS);
                double beta = (neg ? 2.0 : 1.0) / (1 + exp(-xe[h])), alpha = 1;
                if (gated) {
                    double z = xe[H + h] + in[CORE_IN_PARAMS + 1][h];
                    alpha = exp(-exp(in[CORE_IN_PARAMS][h]) * log1p(exp(z)));
                }
                for (int j = 0; j < D; j++) {
                    kS[j] = 0;
                    for (int i = 0; i < D; i++) kS[j] += k[i] * S[i * D + j];
                }
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++)
                        S[i * D + j] =
                            alpha * (S[i * D + j] - beta * k[i] * kS[j]) + beta * k[i] * v[j];
                double *o = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) {
                    o[j] = 0;
                    for (int i = 0; i < D; i++) o[j] += S[i * D + j] * q[i];
                }
            }
        }
    free(S), free(kS), free(q), free(k);
    return 0;
}
static int delta_reference(const OpShape *s, const double *const *in, double *out) {
    return delta_reference_any(s, 0, in, out);
}
static int gdelta_reference(const OpShape *s, const double *const *in, double *out) {
    return delta_reference_any(s, 1, in, out);
}
#else
#define delta_reference NULL
#define gdelta_reference NULL
#endif

// A slice's transition S -> A_T ... A_1 S, A_t = alpha_t (I - beta_t k_t k_t^T) (k_t normalised),
// applied token by token; every A_t is symmetric, so the transpose is the same steps in
// reverse order.
static void delta_carry_through(const OpShape *s, int gated, const real *const *in, real *state,
                                int transpose) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    real *k = malloc(sizeof(real) * D), *kS = malloc(sizeof(real) * D);
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        real *S = state + (size_t)bh * D * D;
        for (int step = 0; step < T; step++) {
            int t = transpose ? T - 1 - step : step;
            real beta, g;
            delta_l2n(in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + C + h * D, D, 1, k);
            delta_gates(s, gated, in, b, t, h, &beta, &g);
            real a = exp(g);
            for (int j = 0; j < D; j++) kS[j] = 0;
            for (int i = 0; i < D; i++)
                for (int j = 0; j < D; j++) kS[j] += k[i] * S[i * D + j];
            for (int i = 0; i < D; i++)
                for (int j = 0; j < D; j++) S[i * D + j] = a * (S[i * D + j] - beta * k[i] * kS[j]);
        }
    }
    free(k), free(kS);
}

// The two rows' entry points: the kernels above with the gate off (deltanet) or on.
static void delta_fwd_carry(const OpShape *s, const real *const *in, real *const *out, real *sv,
                            const real *state_in, real *state_out) {
    delta_forward(s, 0, in, out, sv, state_in, state_out);
}
static void gdelta_fwd_carry(const OpShape *s, const real *const *in, real *const *out, real *sv,
                             const real *state_in, real *state_out) {
    delta_forward(s, 1, in, out, sv, state_in, state_out);
}
static void delta_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    delta_forward(s, 0, in, out, sv, NULL, NULL);
}
static void gdelta_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    delta_forward(s, 1, in, out, sv, NULL, NULL);
}
static void delta_bwd_carry(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din,
                            const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)state_in;  // saved with the chunk states
    delta_backward(s, 0, in, out, sv, dout, din, dstate_out, dstate_in);
}
static void gdelta_bwd_carry(const OpShape *s, const real *const *in, const real *const *out,
                             const real *sv, const real *const *dout, real *const *din,
                             const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)state_in;
    delta_backward(s, 1, in, out, sv, dout, din, dstate_out, dstate_in);
}
static void delta_bwd(const OpShape *s, const real *const *in, const real *const *out,
                      const real *sv, const real *const *dout, real *const *din) {
    delta_backward(s, 0, in, out, sv, dout, din, NULL, NULL);
}
static void gdelta_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    delta_backward(s, 1, in, out, sv, dout, din, NULL, NULL);
}
static void delta_through(const OpShape *s, const real *const *in, real *state, int transpose) {
    delta_carry_through(s, 0, in, state, transpose);
}
static void gdelta_through(const OpShape *s, const real *const *in, real *state, int transpose) {
    delta_carry_through(s, 1, in, state, transpose);
}
static size_t delta_carry_size(const OpShape *s) {
    return (size_t)s->B * s->H * (s->C / s->H) * (s->C / s->H);
}
static void delta_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    delta_sizes_any(s, 0, in, out, saved);
}
static void gdelta_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    delta_sizes_any(s, 1, in, out, saved);
}
static double delta_flops(const OpShape *s) {
    return delta_flops_any(s, 0);
}
static double gdelta_flops(const OpShape *s) {
    return delta_flops_any(s, 1);
}
static int delta_aux(const OpShape *s, const real *const *in, OpAux *out) {
    return delta_aux_any(s, 0, in, out);
}
static int gdelta_aux(const OpShape *s, const real *const *in, OpAux *out) {
    return delta_aux_any(s, 1, in, out);
}

static const OpOption delta_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(DeltaOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"neg_eigval", OPT_BOOL, "false", NULL, 0, 0, offsetof(DeltaOpts, neg_eigval), 0,
     "deltanet, gated_deltanet: beta = 2 sigmoid in (0, 2), so I - beta k k^T may flip signs"},
    {NULL}};
static const OpOption gdelta_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(DeltaOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"neg_eigval", OPT_BOOL, "false", NULL, 0, 0, offsetof(DeltaOpts, neg_eigval), 0,
     "deltanet, gated_deltanet: beta = 2 sigmoid in (0, 2), so I - beta k k^T may flip signs"},
    MAMBA_INIT_OPTIONS(DeltaOpts),
    {NULL}};
static void gdelta_init(const OpShape *s, int index, uint64_t key, real *w) {
    DeltaOpts o = OPT_OF(DeltaOpts, s);
    mamba_decay_init(s, &o.init, index, key, w);
}
static int gdelta_check(const OpShape *s, char *err, size_t errlen) {
    DeltaOpts o = OPT_OF(DeltaOpts, s);
    if (mamba_init_check(&o.init, err, errlen)) return -1;
    return delta_check(s, err, errlen);
}

// Both rows' test shapes. T = 7 with chunk 3: a partial last chunk; T < chunk: a single one;
// T = 129 with chunk 64: two full chunks and one token; odd head dims (3, 5).
// clang-format off
#define DELTA_TESTS                                         \
    {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3"},          \
     {{.B = 1, .T = 5, .C = 6, .H = 2}, "chunk=64"},         \
     {{.B = 1, .T = 1, .C = 4, .H = 2}, "chunk=1"},          \
     {{.B = 2, .T = 65, .C = 12, .H = 3}, "chunk=16"},       \
     {{.B = 1, .T = 129, .C = 10, .H = 2}, "chunk=64"},      \
     {{.B = 2, .T = 7, .C = 9, .H = 3}, "chunk=3 neg_eigval=true"}}
const F(OpDef) F(op_deltanet) = {
    .name = "deltanet", .n_in = CORE_IN_PARAMS, .n_out = 1,
    .sizes = delta_sizes, .forward = delta_fwd, .backward = delta_bwd,
    .check = delta_check, .aux = delta_aux, .options = delta_options, .mixer = 1,
    .help = "DeltaNet: linear attention with a delta-rule state update (mixers.md 11)",
    .flops = delta_flops, .reference = delta_reference,
    .carry_size = delta_carry_size, .forward_carry = delta_fwd_carry,
    .backward_carry = delta_bwd_carry, .carry_through = delta_through,
    .aux_cols = {{"beta_mean", AUX_MEAN, "mean beta_t", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 6, .tests = DELTA_TESTS};

const F(OpDef) F(op_gated_deltanet) = {
    .name = "gated_deltanet", .n_in = CORE_IN_PARAMS + 2, .n_out = 1,
    .sizes = gdelta_sizes, .forward = gdelta_fwd, .backward = gdelta_bwd,
    .params = gdelta_params, .init_param = gdelta_init,
    .check = gdelta_check, .aux = gdelta_aux, .options = gdelta_options, .mixer = 1,
    .help = "Gated DeltaNet: DeltaNet with a Mamba-2 style per-token decay (mixers.md 12)",
    .flops = gdelta_flops, .reference = gdelta_reference,
    .carry_size = delta_carry_size, .forward_carry = gdelta_fwd_carry,
    .backward_carry = gdelta_bwd_carry, .carry_through = gdelta_through,
    .aux_cols = {{"beta_mean", AUX_MEAN, "mean beta_t", 4},
                 {"decay_mean", AUX_MEAN, "mean decay a_t", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 6, .tests = DELTA_TESTS};
// clang-format on
