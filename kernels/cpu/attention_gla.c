// Gated linear attention (GLA, Yang et al. 2024; mixers.md section 10): linear attention whose
// state decays per key channel by a data-dependent gate. Per head h (head dim D), per token t:
//   log alpha_t = logsigmoid(x_t W_x[h D .. h D + D) + gate_bias[h D ..]) / mixer.gate_norm
//   S_t         = diag(alpha_t) S_{t-1} + k_t v_t^T          (S [D, D], key-major)
//   o_t         = S_t^T (q_t / sqrt(D))
// The gate logits are low rank as the paper's (x W_a1 W_a2 + b, mixer.gate_rank R = 16): W_a1
// is the layer's W_x [R, C] (zero at initialisation), W_a2 this op's gate_up [C, R] (N(0,
// init_std)), plus gate_bias [C] (init 0, not weight-decayed); mixer.gate_rank=0 makes W_x the
// full-rank [C, C] map instead. Every gate starts at alpha = sigmoid(0)^(1 / gate_norm) =
// 2^(-1/16) ~ 0.958 per channel (a memory of ~24 tokens). The rank-R form runs as the full-rank
// one on the expanded logits x W_a1 W_a2 (recomputed in backward, whose gradient of them is
// then taken back through W_a2). The paper's swish output gate is the layer's model.gate (a sigmoid
// gate); its per-head RMSNorm of o is mixer.head_norm (default true), applied to out[0] after
// the recurrence and undone first in backward.
// Forward runs the chunkwise form (mixers.md 10) with the cumulative log gates Gc of a chunk
// kept in log space and only exponentiated as exp(Gc_r - Gc_p), r >= p, or exp(Gc_last - Gc_p):
//   O  = (Q (.) e^Gc) S + [sum_i Q_ri K_pi e^(Gc_ri - Gc_pi)]_(r >= p) V
//   S' = diag(e^Gc_last) S + (K (.) e^(Gc_last - Gc))^T V
// and saves each chunk's entering state. Backward is chunkwise too: the chunks in reverse from
// their saved states, the same products transposed, and the gates' gradient by mixers.md 10's
// identity (a reverse cumulative sum of q (.) dq - k (.) dk carried across chunks), so memory is
// O(T D^2 / chunk) + O(chunk (D + chunk)) per head. The oracle is the per-token recurrence in
// double.
#include "../attention_gla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "linear_core.h"
#include "vexp.h"

#define GLA_HEAD_NORM_EPS 1e-5  // fla's GLA norm_eps

// log sigmoid(z) without overflow for either sign.
static real gla_logsigmoid(real z) {
    return z < 0 ? z - log1p(exp(z)) : -log1p(exp(-z));
}

// mixer.chunk, or T when the sequence is shorter (the buffers are sized by it).
static int gla_chunk(const OpShape *s) {
    int L = OPT_OF(GlaOpts, s).chunk;
    return s->T > 0 && s->T < L ? s->T : L;
}
static int n_chunks(const OpShape *s) {
    int L = gla_chunk(s);
    return (s->T + L - 1) / L;
}

// The pre-activations z (logits + bias) and log alpha of token t in head h, D channels.
static void gla_gates(const OpShape *s, const real *const *in, int b, int t, int h, real *z,
                      real *la) {
    int C = s->C, D = C / s->H;
    real inv = (real)(1 / OPT_OF(GlaOpts, s).gate_norm);
    const real *x = in[CORE_IN_XPROJ] + ((size_t)b * s->T + t) * C + h * D;
    const real *bias = in[CORE_IN_PARAMS] + h * D;
    for (int i = 0; i < D; i++) {
        z[i] = x[i] + bias[i];
        la[i] = gla_logsigmoid(z[i]) * inv;
    }
}

// The saved buffer: each chunk's entering state and the final state [B, H, nc + 1, D, D]; with
// mixer.head_norm also the normalised readout o / rms [B, T, C] and 1 / rms [B, T, H]. (The
// final state is what a leaving state's gradient acts on: context parallelism.)
static size_t gla_states_size(const OpShape *s) {
    return (size_t)s->B * s->H * (n_chunks(s) + 1) * (s->C / s->H) * (s->C / s->H);
}

// y = (o / rms(o)) (.) w per (token, head), in place over o; saves o / rms and 1 / rms.
static void head_norm_forward(const OpShape *s, real *o, const real *w, real *onorm, real *rinv) {
    int D = s->C / s->H;
    size_t rows = (size_t)s->B * s->T * s->H;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        real *x = o + r * D, *xn = onorm + r * D, ss = 0;
        for (int j = 0; j < D; j++) ss += x[j] * x[j];
        real ri = 1 / sqrt(ss / D + (real)GLA_HEAD_NORM_EPS);
        rinv[r] = ri;
        for (int j = 0; j < D; j++) xn[j] = x[j] * ri, x[j] = xn[j] * w[j];
    }
}

// do = (g - xn mean(g (.) xn)) / rms with g = dy (.) w; dw += sum over rows of dy (.) xn (rows
// in order, so bitwise reproducible).
static void head_norm_backward(const OpShape *s, real *dout_raw, real *dw, const real *dy,
                               const real *w, const real *onorm, const real *rinv) {
    int D = s->C / s->H;
    size_t rows = (size_t)s->B * s->T * s->H;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const real *g = dy + r * D, *xn = onorm + r * D;
        real dot = 0;
        for (int j = 0; j < D; j++) dot += g[j] * w[j] * xn[j];
        dot /= D;
        for (int j = 0; j < D; j++) dout_raw[r * D + j] = (g[j] * w[j] - xn[j] * dot) * rinv[r];
    }
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < D; j++) dw[j] += dy[r * D + j] * onorm[r * D + j];
}

// state_in [B, H, D, D] (NULL: zero) enters, the last state is saved and, when state_out is
// given, written there.
static void gla_forward_full(const OpShape *s, const real *const *in, real *const *out, real *sv,
                             const real *state_in, real *state_out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = gla_chunk(s);
    int nc = n_chunks(s);
    const real *qkv = in[CORE_IN_QKV];
    real qscale = 1 / sqrt((real)D);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        size_t LD = (size_t)L * D;
        real *S = calloc((size_t)D * D, sizeof(real));
        if (state_in) memcpy(S, state_in + (size_t)bh * D * D, sizeof(real) * D * D);
        real *buf = malloc(sizeof(real) * (5 * LD));
        real *Q = buf, *K = Q + LD, *V = K + LD, *Gc = V + LD, *z = Gc + LD;
        for (int c = 0; c < nc; c++) {
            int t0 = c * L, n = T - t0 < L ? T - t0 : L;
            memcpy(sv + ((size_t)bh * (nc + 1) + c) * D * D, S, sizeof(real) * D * D);
            for (int r = 0; r < n; r++) {
                const real *x = qkv + ((size_t)b * T + t0 + r) * 3 * C + h * D;
                for (int i = 0; i < D; i++)
                    Q[r * D + i] = qscale * x[i], K[r * D + i] = x[C + i],
                              V[r * D + i] = x[2 * C + i];
                gla_gates(s, in, b, t0 + r, h, z + r * D, Gc + r * D);
                if (r)
                    for (int i = 0; i < D; i++) Gc[r * D + i] += Gc[(r - 1) * D + i];
            }
            for (int r = 0; r < n; r++) {
                real *o = out[0] + ((size_t)b * T + t0 + r) * C + h * D;
                for (int j = 0; j < D; j++) o[j] = 0;
                for (int i = 0; i < D; i++) {
                    real qa = Q[r * D + i] * exp(Gc[r * D + i]);
                    for (int j = 0; j < D; j++) o[j] += qa * S[i * D + j];
                }
                for (int p = 0; p <= r; p++) {
                    real coef = 0;
                    for (int i = 0; i < D; i++)
                        coef += Q[r * D + i] * K[p * D + i] * vexp(Gc[r * D + i] - Gc[p * D + i]);
                    for (int j = 0; j < D; j++) o[j] += coef * V[p * D + j];
                }
            }
            const real *Gl = Gc + (size_t)(n - 1) * D;
            for (int i = 0; i < D; i++) {
                real al = exp(Gl[i]);
                for (int j = 0; j < D; j++) S[i * D + j] *= al;
                for (int p = 0; p < n; p++) {
                    real w = K[p * D + i] * exp(Gl[i] - Gc[p * D + i]);
                    for (int j = 0; j < D; j++) S[i * D + j] += w * V[p * D + j];
                }
            }
        }
        memcpy(sv + ((size_t)bh * (nc + 1) + nc) * D * D, S, sizeof(real) * D * D);
        if (state_out) memcpy(state_out + (size_t)bh * D * D, S, sizeof(real) * D * D);
        free(S), free(buf);
    }
    if (OPT_OF(GlaOpts, s).head_norm) {
        real *onorm = sv + gla_states_size(s);
        head_norm_forward(s, out[0], in[CORE_IN_PARAMS + 1], onorm, onorm + (size_t)B * T * C);
    }
}

// The chunkwise backward: per chunk, in reverse, from its saved entering state S and dS' (the
// gradient of its exit state), with A[r, p] = sum_i Q_ri K_pi exp(Gc_ri - Gc_pi) (p <= r),
// dA = dO V^T (p <= r), w = exp(Gc_last - Gc):
//   dQ = (dO S^T) (.) e^Gc + [sum_p dA_rp K_pi exp(Gc_ri - Gc_pi)]
//   dK = [sum_r dA_rp Q_ri exp(Gc_ri - Gc_pi)] + w (.) (V dS'^T)
//   dV = A^T dO + (K (.) w) dS'
//   dS = diag(e^Gc_last) dS' + (Q (.) e^Gc)^T dO
// and the gates by mixers.md 10's identity, d log alpha_r = sum_{t >= r} (q_t (.) dq_t -
// k_t (.) dk_t) (q the scaled query), a reverse cumulative sum carried across the chunks;
// dz = d log alpha sigmoid(-z) / gate_norm. gate_bias's gradient is summed per (batch, head),
// then over the batch in a fixed order (bitwise reproducible for any thread count).
// With a leaving state's gradient dS_T (context parallelism) the pairs (end, p) have no query
// token: their share of every d log alpha_r is E = sum_j dS_T[i, j] S_T[i, j] per key channel
// i, which starts the reverse cumulative sum; dS' starts at dS_T, and after chunk 0 it is the
// entering state's gradient.
static void gla_backward_full(const OpShape *s, const real *const *in, const real *const *out,
                              const real *sv, const real *const *dout, real *const *din,
                              const real *dstate_out, real *dstate_in) {
    (void)out;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = gla_chunk(s);
    int nc = n_chunks(s);
    // The recurrence's output gradient: dout itself, or through the head norm.
    const real *dout_raw = dout[0];
    real *dnorm = NULL;
    if (OPT_OF(GlaOpts, s).head_norm) {
        const real *onorm = sv + gla_states_size(s);
        dnorm = malloc(sizeof(real) * (size_t)B * T * C);
        head_norm_backward(s, dnorm, din[CORE_IN_PARAMS + 1], dout[0], in[CORE_IN_PARAMS + 1],
                           onorm, onorm + (size_t)B * T * C);
        dout_raw = dnorm;
    }
    const real *qkv = in[CORE_IN_QKV];
    real *dqkv = din[CORE_IN_QKV], *dxp = din[CORE_IN_XPROJ];
    real qscale = 1 / sqrt((real)D), inv = (real)(1 / OPT_OF(GlaOpts, s).gate_norm);
    real *part = calloc((size_t)B * C, sizeof(real));  // per (b, channel): d gate_bias
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        size_t LD = (size_t)L * D, DD = (size_t)D * D;
        real *dSn = calloc(DD, sizeof(real));  // dS' of the chunk being swept
        real *buf = malloc(sizeof(real) * (10 * LD + (size_t)L * L + 2 * (size_t)D));
        real *Q = buf, *K = Q + LD, *V = K + LD, *Gc = V + LD, *z = Gc + LD, *dQ = z + LD;
        real *dK = dQ + LD, *dV = dK + LD, *dA = dV + LD, *carry = dA + (size_t)L * L;
        real *el = carry + D, *Kw = el + D, *Qe = Kw + LD;
        for (int i = 0; i < D; i++) carry[i] = 0;
        if (dstate_out) {
            const real *ST = sv + ((size_t)bh * (nc + 1) + nc) * DD, *dST = dstate_out + bh * DD;
            memcpy(dSn, dST, sizeof(real) * DD);
            for (int i = 0; i < D; i++)
                for (int j = 0; j < D; j++) carry[i] += dST[i * D + j] * ST[i * D + j];
        }
        for (int c = nc - 1; c >= 0; c--) {
            int t0 = c * L, n = T - t0 < L ? T - t0 : L;
            const real *S = sv + ((size_t)bh * (nc + 1) + c) * DD;
            const real *dO = dout_raw + ((size_t)b * T + t0) * C + h * D;  // row r at r C
            for (int r = 0; r < n; r++) {
                const real *x = qkv + ((size_t)b * T + t0 + r) * 3 * C + h * D;
                for (int i = 0; i < D; i++)
                    Q[r * D + i] = qscale * x[i], K[r * D + i] = x[C + i],
                              V[r * D + i] = x[2 * C + i];
                real *la = dQ + r * D;  // scratch until dQ is computed
                gla_gates(s, in, b, t0 + r, h, z + r * D, la);
                for (int i = 0; i < D; i++) Gc[r * D + i] = (r ? Gc[(r - 1) * D + i] : 0) + la[i];
            }
            const real *Gl = Gc + (size_t)(n - 1) * D;
            for (int i = 0; i < D; i++) el[i] = exp(Gl[i]);
            // dA, then the terms through S and S'
            for (int r = 0; r < n; r++)
                for (int p = 0; p <= r; p++) {
                    real acc = 0;
                    for (int j = 0; j < D; j++) acc += dO[(size_t)r * C + j] * V[p * D + j];
                    dA[r * L + p] = acc;
                }
            for (int r = 0; r < n; r++)
                for (int i = 0; i < D; i++) {
                    real ds = 0, vd = 0, w = exp(Gl[i] - Gc[r * D + i]);
                    for (int j = 0; j < D; j++)
                        ds += S[i * D + j] * dO[(size_t)r * C + j],
                            vd += V[r * D + j] * dSn[i * D + j];
                    dQ[r * D + i] = exp(Gc[r * D + i]) * ds, dK[r * D + i] = w * vd;
                }
            // Kw = K (.) exp(Gl - Gc) and Qe = Q (.) exp(Gc), once per chunk (the products below
            // would otherwise take an exp per term).
            for (int r = 0; r < n; r++)
                for (int i = 0; i < D; i++)
                    Kw[r * D + i] = K[r * D + i] * vexp(Gl[i] - Gc[r * D + i]),
                               Qe[r * D + i] = Q[r * D + i] * vexp(Gc[r * D + i]);
            for (int p = 0; p < n; p++) {
                real *dv = dV + p * D;
                for (int j = 0; j < D; j++) dv[j] = 0;
                for (int i = 0; i < D; i++) {
                    real kw = Kw[p * D + i];
                    for (int j = 0; j < D; j++) dv[j] += kw * dSn[i * D + j];
                }
            }
            // the intra-chunk pairs: A_rp recomputed, dQ, dK through dA
            for (int r = 0; r < n; r++)
                for (int p = 0; p <= r; p++) {
                    real a = 0, d = dA[r * L + p];
                    for (int i = 0; i < D; i++) {
                        real gam = vexp(Gc[r * D + i] - Gc[p * D + i]);
                        a += Q[r * D + i] * K[p * D + i] * gam;
                        dQ[r * D + i] += d * K[p * D + i] * gam;
                        dK[p * D + i] += d * Q[r * D + i] * gam;
                    }
                    for (int j = 0; j < D; j++) dV[p * D + j] += a * dO[(size_t)r * C + j];
                }
            // dS of the entering state
            for (int i = 0; i < D; i++) {
                real *ds = dSn + i * D;
                for (int j = 0; j < D; j++) ds[j] *= el[i];
                for (int r = 0; r < n; r++) {
                    real qe = Qe[r * D + i];
                    const real *g = dO + (size_t)r * C;
                    for (int j = 0; j < D; j++) ds[j] += qe * g[j];
                }
            }
            // to the inputs, the gates by the identity (reverse cumulative sum)
            for (int r = n - 1; r >= 0; r--) {
                int t = t0 + r;
                size_t row = ((size_t)b * T + t) * 3 * C + h * D;
                real *dx = dxp + ((size_t)b * T + t) * C + h * D;
                for (int i = 0; i < D; i++) {
                    real zi = z[r * D + i];
                    carry[i] += Q[r * D + i] * dQ[r * D + i] - K[r * D + i] * dK[r * D + i];
                    real dz = carry[i] * inv / (1 + exp(zi));  // d log sigmoid / dz = sigmoid(-z)
                    dx[i] += dz;
                    part[(size_t)b * C + h * D + i] += dz;
                    dqkv[row + i] += qscale * dQ[r * D + i];
                    dqkv[row + C + i] += dK[r * D + i];
                    dqkv[row + 2 * C + i] += dV[r * D + i];
                }
            }
        }
        if (dstate_in)
            for (size_t i = 0; i < DD; i++) dstate_in[bh * DD + i] += dSn[i];
        free(dSn), free(buf);
    }
    for (int ch = 0; ch < C; ch++)
        for (int b = 0; b < B; b++) din[CORE_IN_PARAMS][ch] += part[(size_t)b * C + ch];
    free(part), free(dnorm);
}

static int gla_params(const OpShape *s, OpParam *out);

// The index of gate_up among the inputs (after gate_bias and the optional head norm gain).
static int gla_up_index(const OpShape *s) {
    return CORE_IN_PARAMS + 1 + (OPT_OF(GlaOpts, s).head_norm ? 1 : 0);
}

// With a low-rank gate: the inputs with input 1 replaced by the expanded logits
// x W_a1 W_a2 [B, T, C] (a new buffer, the caller frees it); otherwise NULL and `in` as it is.
static real *gla_expand(const OpShape *s, const real *const *in, const real **in2) {
    int R = OPT_OF(GlaOpts, s).gate_rank;
    OpParam p[OP_MAX_PARAMS];
    int n_in = CORE_IN_PARAMS + gla_params(s, p);
    for (int i = 0; i < OP_MAX_IO; i++) in2[i] = i < n_in ? in[i] : NULL;
    if (!R) return NULL;
    int N = s->B * s->T;
    real *logits = malloc(sizeof(real) * (size_t)N * s->C);
    F(matmul_forward)(logits, in[CORE_IN_XPROJ], in[gla_up_index(s)], N, R, s->C);
    in2[CORE_IN_XPROJ] = logits;
    return logits;
}

static void gla_forward_carry(const OpShape *s, const real *const *in, real *const *out, real *sv,
                              const real *state_in, real *state_out) {
    const real *in2[OP_MAX_IO];
    real *logits = gla_expand(s, in, in2);
    gla_forward_full(s, in2, out, sv, state_in, state_out);
    free(logits);
}
static void gla_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    gla_forward_carry(s, in, out, sv, NULL, NULL);
}

static void gla_backward_carry(const OpShape *s, const real *const *in, const real *const *out,
                               const real *sv, const real *const *dout, real *const *din,
                               const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)state_in;  // saved with the chunk states
    int R = OPT_OF(GlaOpts, s).gate_rank, N = s->B * s->T;
    if (!R) {
        gla_backward_full(s, in, out, sv, dout, din, dstate_out, dstate_in);
        return;
    }
    const real *in2[OP_MAX_IO];
    real *logits = gla_expand(s, in, in2), *din2[OP_MAX_IO];
    real *dlogits = calloc((size_t)N * s->C, sizeof(real));
    for (int i = 0; i < OP_MAX_IO; i++) din2[i] = in2[i] ? din[i] : NULL;
    din2[CORE_IN_XPROJ] = dlogits;
    gla_backward_full(s, in2, out, sv, dout, din2, dstate_out, dstate_in);
    int up = gla_up_index(s);
    F(matmul_backward)(din[CORE_IN_XPROJ], din[up], dlogits, in[CORE_IN_XPROJ], in[up], N, R, s->C);
    free(logits), free(dlogits);
}
static void gla_backward(const OpShape *s, const real *const *in, const real *const *out,
                         const real *sv, const real *const *dout, real *const *din) {
    gla_backward_carry(s, in, out, sv, dout, din, NULL, NULL, NULL);
}

static size_t gla_carry_size(const OpShape *s) {
    return (size_t)s->B * s->H * (s->C / s->H) * (s->C / s->H);
}

// A slice's transition: row i (key channel) of every state scaled by prod_t alpha_t[i], a
// diagonal map and so its own transpose.
static void gla_carry_through(const OpShape *s, const real *const *in, real *state, int transpose) {
    (void)transpose;
    const real *in2[OP_MAX_IO];
    real *logits = gla_expand(s, in, in2);
    int B = s->B, T = s->T, H = s->H, D = s->C / H;
    real *z = malloc(sizeof(real) * D), *la = malloc(sizeof(real) * D);
    real *sum = malloc(sizeof(real) * D);
    for (int bh = 0; bh < B * H; bh++) {
        for (int i = 0; i < D; i++) sum[i] = 0;
        for (int t = 0; t < T; t++) {
            gla_gates(s, in2, bh / H, t, bh % H, z, la);
            for (int i = 0; i < D; i++) sum[i] += la[i];
        }
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) state[((size_t)bh * D + i) * D + j] *= exp(sum[i]);
    }
    free(z), free(la), free(sum), free(logits);
}

// gate_bias [C]: zero at initialisation (every gate starts at 2^(-1/gate_norm), W_x being zero
// too), trainable, not weight-decayed (decay would pull the gates back to that value).
// head_norm_weight [D]: the head norm's gain, shared by the heads (fla's g_norm), ones at
// initialisation, not decayed (as madtrain's other norm gains).
static int gla_params(const OpShape *s, OpParam *out) {
    int n = 0, R = OPT_OF(GlaOpts, s).gate_rank;
    out[n++] = (OpParam){
        .name = "gate_bias", .rows = s->C, .init = INIT_ZEROS, .trainable = 1, .decay = 0};
    if (OPT_OF(GlaOpts, s).head_norm)
        out[n++] = (OpParam){.name = "head_norm_weight",
                             .rows = s->C / s->H,
                             .init = INIT_ONES,
                             .trainable = 1,
                             .decay = 0};
    if (R)  // W_a2, a matrix like the layer's projections (weight-decayed as they are)
        out[n++] = (OpParam){.name = "gate_up",
                             .rows = s->C,
                             .cols = R,
                             .init = INIT_NORMAL,
                             .trainable = 1,
                             .decay = 1};
    return n;
}

static void gla_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    int np = gla_params(s, p);
    int R = OPT_OF(GlaOpts, s).gate_rank;
    op_core_sizes(s, in, out, (size_t)(R ? R : s->C), p, np);
    *saved = gla_states_size(s);
    if (OPT_OF(GlaOpts, s).head_norm) *saved += (size_t)s->B * s->T * (s->C + s->H);
}

// The CUDA kernels keep a head's D x D state in one block (forward a thread per value column,
// backward a thread per key row and a D x (D + 1) reduction buffer in shared memory).
static int gla_check(const OpShape *s, char *err, size_t errlen) {
    if (s->C / s->H > GLA_MAX_D) {
        snprintf(err, errlen, "gla needs a head dim (model.d_model / model.n_heads) <= %d, got %d",
                 GLA_MAX_D, s->C / s->H);
        return -1;
    }
    return 0;
}

// Per token and head (mixers.md 18, recurrent form): 5 D^2 (the decay, the rank-one update, the
// readout) and the gates' log sigmoid and exp, counted as 10 per channel; plus the low-rank
// gate's W_a2 (W_a1 is the layer's W_x, counted by bench).
static double gla_flops(const OpShape *s) {
    double D = (double)s->C / s->H;
    return s->H * (5 * D * D + 10 * D) + 2.0 * OPT_OF(GlaOpts, s).gate_rank * s->C;
}

// The mean decay alpha over tokens, heads and key channels.
// And the effective rank of the final state S <- diag(alpha_t) S + k_t v_t^T per (batch, head),
// averaged.
static int gla_aux(const OpShape *s, const real *const *in0, OpAux *out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    double sa = 0, erank = 0;
    const real *in[OP_MAX_IO];
    real *logits = gla_expand(s, in0, in);
    real *z = malloc(sizeof(real) * 2 * D), *la = z + D;
    double *S = malloc(sizeof(double) * D * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                gla_gates(s, in, b, t, h, z, la);
                const real *k = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + C + h * D;
                for (int i = 0; i < D; i++) {
                    double alpha = exp((double)la[i]);
                    sa += alpha;
                    for (int j = 0; j < D; j++)
                        S[i * D + j] = alpha * S[i * D + j] + k[i] * k[C + j];
                }
            }
            erank += F(state_effective_rank)(S, D, D) / (B * H);
        }
    free(z), free(logits), free(S);
    out[0] = (OpAux){.name = "decay_mean", .value = sa / ((double)B * T * C)};
    out[1] = (OpAux){.name = "state_erank", .value = erank};
    return 2;
}

#ifdef MT_DOUBLE
// The definition token by token: alpha = sigmoid(z)^(1 / gate_norm),
// S <- diag(alpha) S + k v^T, o = S^T q / sqrt(D).
static int gla_reference(const OpShape *s, const double *const *in, double *out) {
    int T = s->T, C = s->C, H = s->H, D = C / H, R = OPT_OF(GlaOpts, s).gate_rank;
    double gn = OPT_OF(GlaOpts, s).gate_norm;
    double *S = malloc(sizeof(double) * D * D), *xe = malloc(sizeof(double) * C);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                const double *k = q + C, *v = q + 2 * C;
                const double *bias = in[CORE_IN_PARAMS] + h * D;
                for (int i = 0; i < D; i++) {  // the logit x W_a1 W_a2 (or x W_x) of channel hD+i
                    int c = h * D + i;
                    if (!R) {
                        xe[i] = in[CORE_IN_XPROJ][((size_t)b * T + t) * C + c];
                        continue;
                    }
                    xe[i] = 0;
                    for (int r = 0; r < R; r++)
                        xe[i] += in[CORE_IN_XPROJ][((size_t)b * T + t) * R + r] *
                                 in[gla_up_index(s)][(size_t)c * R + r];
                }
                for (int i = 0; i < D; i++) {
                    double alpha = pow(1 / (1 + exp(-(xe[i] + bias[i]))), 1 / gn);
                    for (int j = 0; j < D; j++) S[i * D + j] = alpha * S[i * D + j] + k[i] * v[j];
                }
                double *o = out + ((size_t)b * T + t) * C + h * D, ss = 0;
                for (int j = 0; j < D; j++) {
                    o[j] = 0;
                    for (int i = 0; i < D; i++) o[j] += S[i * D + j] * q[i] / sqrt((double)D);
                    ss += o[j] * o[j];
                }
                if (OPT_OF(GlaOpts, s).head_norm)  // o / sqrt(mean o^2 + eps) (.) w
                    for (int j = 0; j < D; j++)
                        o[j] *= in[CORE_IN_PARAMS + 1][j] / sqrt(ss / D + GLA_HEAD_NORM_EPS);
            }
        }
    free(S), free(xe);
    return 0;
}
#else
#define gla_reference NULL
#endif

// chunk is declared exactly as decay's and deltanet's (the config refuses differing ones).
// gate_norm's range is closed ([1e-6, 1e6]: the option ranges are inclusive).
static const OpOption gla_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(GlaOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"gate_norm", OPT_FLOAT, "16", NULL, 1e-6, 1e6, offsetof(GlaOpts, gate_norm), 0,
     "gla: log alpha = logsigmoid(logits) / gate_norm (the paper's gate_logit_normalizer)"},
    {"head_norm", OPT_BOOL, "true", NULL, 0, 0, offsetof(GlaOpts, head_norm), 0,
     "gla: RMSNorm of each head's readout with a learned gain (the paper's); false: raw readout"},
    {"gate_rank", OPT_INT, "16", NULL, 0, 4096, offsetof(GlaOpts, gate_rank), 0,
     "gla: rank of the gate logits x W_a1 W_a2 (the paper's 16); 0: a full-rank W_x [C, C]"},
    {NULL}};

// T = 7 with chunk 3: a partial last chunk; T < chunk: a single one; T = 129 with chunk 64:
// two full chunks and one token; odd head dims (3, 5); gate_norm = 1: fast decays; one shape
// without the head norm.
// clang-format off
const F(OpDef) F(op_gla) = {
    .name = "gla", .n_in = CORE_IN_PARAMS + 3, .n_out = 1,
    .sizes = gla_sizes, .forward = gla_forward, .backward = gla_backward,
    .params = gla_params,
    .check = gla_check, .aux = gla_aux, .options = gla_options, .mixer = 1,
    .help = "GLA: gated linear attention, a per-key-channel data-dependent decay (mixers.md 10)",
    .flops = gla_flops, .reference = gla_reference,
    .carry_size = gla_carry_size, .forward_carry = gla_forward_carry,
    .backward_carry = gla_backward_carry, .carry_through = gla_carry_through,
    .aux_cols = {{"decay_mean", AUX_MEAN, "mean decay a_t", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 9,
    .tests = {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 gate_rank=3"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 head_norm=false gate_rank=2"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 gate_rank=0"},
              {{.B = 1, .T = 5, .C = 6, .H = 2}, "chunk=64 gate_rank=0"},
              {{.B = 1, .T = 1, .C = 4, .H = 2}, "chunk=1 gate_rank=2"},
              {{.B = 2, .T = 65, .C = 12, .H = 3}, "chunk=16 gate_rank=4"},
              {{.B = 1, .T = 129, .C = 10, .H = 2}, "chunk=64 gate_rank=0"},
              {{.B = 2, .T = 7, .C = 9, .H = 3}, "chunk=3 gate_norm=1 gate_rank=0"},
              {{.B = 1, .T = 9, .C = 15, .H = 3}, "chunk=4 gate_norm=1 gate_rank=5"}}};
// clang-format on
