// Mamba-2 (SSD, Dao & Gu 2024; mixers.md section 9): the whole Mamba-2 mixer between the
// layer's input and output projections. Per token the layer's input projection gives
// x|B|C [d_in + 2 G N] (through the layer's short convolution, model.conv_kernel, Mamba-2's 4)
// and its per-token projection W_x gives z|dt [d_in + H]; then, per head h of P = d_in / H
// channels and its group g (G groups share B and C, mixer.n_groups):
//   x, B, C  <- silu(x), silu(B), silu(C)           (the activation after Mamba-2's conv)
//   Delta_t  = softplus(dt_t + dt_bias_h),   a_t = exp(-Delta_t exp(a_log_h)) in (0, 1)
//              (mixer.neg_eigval: a_t = 2 exp(-Delta_t exp(a_log_h)) - 1 in (-1, 1), so the
//              transition can flip signs: what parity needs, tasks.md section 4)
//   S_t      = a_t S_{t-1} + B_t (Delta_t x_t)^T     (S [N, P])
//   y_t      = S_t^T C_t + D_h x_t
//   out_t    = RMSNorm_g(y_t (.) silu(z_t)) (.) norm_weight   (per group of d_in / G channels:
//              mamba_ssm's RMSNormGated, norm_before_gate = False, eps 1e-5)
// and the layer's W_o maps out [d_in] back to d_model. d_in = mixer.expand d_model,
// N = mixer.d_state.
// Training runs the chunked SSD algorithm (mixers.md 9: intra-chunk masked products with the
// decays exp(cum_r - cum_s) of the chunk's cumulative log decays, the chunk's state decayed to
// its end, and the state carried across chunks), saving each chunk's entering state; backward
// runs the chunks in reverse from those states with the same products transposed, and the
// decays' gradient as the gradient of the cumulative sums. Under neg_eigval the chunk works on
// log |a_t| and carries the sign of the product apart: every decay between positions s <= r is
// (sign_r sign_s) exp(cum_r - cum_s), with sign_r the product of the chunk's signs up to r. The
// oracle is the per-token recurrence in double.
#include "../ssm_mamba2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mamba_init.h"
#include "../ops.h"
#include "../real.h"
#include "linear_core.h"
#include "vexp.h"

static real m2_silu(real x) {
    return x * vsigmoid(x);
}
static real m2_dsilu(real x) {  // d silu / dx
    real sg = vsigmoid(x);
    return sg * (1 + x * (1 - sg));
}

// Saved: each chunk's entering state [B, H, nc, N, P], then y (before the gate) [B, T, d_in]
// and the gated norm's 1 / rms [B, T, G].
static size_t m2_states_size(const M2Dims *d) {
    return (size_t)d->B * d->H * d->nc * d->N * d->P;
}

// One (batch, group)'s activated inputs: B and C [T, N] of the group, and per head of the group
// x [T, P], Delta [T], log |a| [T] and the sign of a [T] (+1 without neg_eigval).
typedef struct {
    real *Bm, *Cm, *xs, *delta, *la, *sg;
} M2Acts;

// log |a_t| and sign(a_t) from u = -Delta A; |a| is kept >= 1e-30 so that log |a| stays finite
// where 2 e^u - 1 crosses zero (the decay there is below any float's resolution anyway).
static void m2_decay(const M2Dims *d, real u, real *la, real *sg) {
    if (!d->neg) {
        *la = u, *sg = 1;
        return;
    }
    real a = 2 * exp(u) - 1, m = fabs(a);
    *la = log(m > 1e-30 ? m : 1e-30), *sg = a < 0 ? -1 : 1;
}

static void m2_acts(const M2Dims *d, const real *const *in, int b, int g, M2Acts *a) {
    const real *xbc = in[CORE_IN_QKV], *zdt = in[CORE_IN_XPROJ];
    const real *a_log = in[CORE_IN_PARAMS], *dt_bias = in[CORE_IN_PARAMS + 1];
    int hpg = d->H / d->G, N = d->N, P = d->P;
    // The activations in contiguous runs (vectorised silu), then the per-token scalars.
    for (int t = 0; t < d->T; t++) {
        const real *row = xbc + ((size_t)b * d->T + t) * d->W;
        const real *rb = row + d->d_in + g * N, *rc = row + d->d_in + (d->G + g) * N;
        real *Bt = a->Bm + (size_t)t * N, *Ct = a->Cm + (size_t)t * N;
        for (int n = 0; n < N; n++) Bt[n] = m2_silu(rb[n]);
        for (int n = 0; n < N; n++) Ct[n] = m2_silu(rc[n]);
        for (int j = 0; j < hpg; j++) {
            const real *rx = row + (g * hpg + j) * P;
            real *xt = a->xs + ((size_t)j * d->T + t) * P;
            for (int p = 0; p < P; p++) xt[p] = m2_silu(rx[p]);
        }
    }
    for (int j = 0; j < hpg; j++) {
        int h = g * hpg + j;
        real A = exp(a_log[h]);
        for (int t = 0; t < d->T; t++) {
            real dt = zdt[((size_t)b * d->T + t) * d->E + d->d_in + h] + dt_bias[h];
            real delta = mamba_softplus(dt);
            a->delta[(size_t)j * d->T + t] = delta;
            m2_decay(d, -delta * A, &a->la[(size_t)j * d->T + t], &a->sg[(size_t)j * d->T + t]);
        }
    }
}

static void m2_acts_alloc(const M2Dims *d, M2Acts *a) {
    int hpg = d->H / d->G;
    a->Bm = malloc(sizeof(real) * d->T * d->N), a->Cm = malloc(sizeof(real) * d->T * d->N);
    a->xs = malloc(sizeof(real) * hpg * d->T * d->P);
    a->delta = malloc(sizeof(real) * hpg * d->T), a->la = malloc(sizeof(real) * hpg * d->T);
    a->sg = malloc(sizeof(real) * hpg * d->T);
}
static void m2_acts_free(M2Acts *a) {
    free(a->Bm), free(a->Cm), free(a->xs), free(a->delta), free(a->la), free(a->sg);
}

// y [B, T, d_in] += the SSD output of every head (D skip included); saves the chunk states.
// The state enters as state_in [B, H, N, P] (NULL: zero) and leaves into state_out (NULL: not
// wanted): context parallelism.
static void m2_ssd_forward(const M2Dims *d, const real *const *in, real *y, real *states,
                           const real *state_in, real *state_out) {
    const real *d_skip = in[CORE_IN_PARAMS + 2];
    int hpg = d->H / d->G, N = d->N, P = d->P, L = d->L;
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < d->B * d->G; bg++) {
        int b = bg / d->G, g = bg % d->G;
        M2Acts a;
        m2_acts_alloc(d, &a);
        m2_acts(d, in, b, g, &a);
        real *S = malloc(sizeof(real) * N * P), *cum = malloc(sizeof(real) * L);
        real *ux = malloc(sizeof(real) * L * P), *cb = malloc(sizeof(real) * L * L);
        real *Ce = malloc(sizeof(real) * L * N), *csg = malloc(sizeof(real) * L);
        for (int j = 0; j < hpg; j++) {
            int h = g * hpg + j;
            const real *xs = a.xs + (size_t)j * d->T * P, *la = a.la + (size_t)j * d->T;
            const real *sg = a.sg + (size_t)j * d->T;
            size_t so = ((size_t)b * d->H + h) * N * P;
            if (state_in)
                memcpy(S, state_in + so, sizeof(real) * N * P);
            else
                memset(S, 0, sizeof(real) * N * P);
            for (int c = 0; c < d->nc; c++) {
                int t0 = c * L, len = d->T - t0 < L ? d->T - t0 : L;
                const real *Cc = a.Cm + (size_t)t0 * N, *Bc = a.Bm + (size_t)t0 * N;
                real *yc = y + ((size_t)b * d->T + t0) * d->d_in + h * P;  // row stride d_in
                memcpy(states + (((size_t)b * d->H + h) * d->nc + c) * N * P, S,
                       sizeof(real) * N * P);
                real run = 0, sign = 1;
                for (int r = 0; r < len; r++) {
                    run += la[t0 + r], cum[r] = run, sign *= sg[t0 + r], csg[r] = sign;
                    real dl = a.delta[(size_t)j * d->T + t0 + r], e = sign * exp(run);
                    for (int p = 0; p < P; p++) {
                        ux[r * P + p] = dl * xs[(size_t)(t0 + r) * P + p];
                        yc[(size_t)r * d->d_in + p] = d_skip[h] * xs[(size_t)(t0 + r) * P + p];
                    }
                    for (int n = 0; n < N; n++) Ce[r * N + n] = e * Cc[(size_t)r * N + n];
                }
                // Intra-chunk: cb = (C B^T) (.) exp(cum_r - cum_s), s <= r; y += cb (Delta x).
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, N, 1, Cc, N, Bc, N, 0,
                           cb, L);
                for (int r = 0; r < len; r++) {  // split at the diagonal so both halves vectorise
                    real *row = cb + (size_t)r * L, cr = cum[r], sr = csg[r];
                    for (int s2 = 0; s2 <= r; s2++)
                        row[s2] = row[s2] * sr * csg[s2] * vexp(cr - cum[s2]);
                    for (int s2 = r + 1; s2 < len; s2++) row[s2] = 0;
                }
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, P, len, 1, cb, L, ux, P,
                           1, yc, d->d_in);
                // Inter-chunk: y_r += exp(cum_r) S^T C_r.
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, P, N, 1, Ce, N, S, P, 1,
                           yc, d->d_in);
                // S <- exp(cum_last) S + B^T (exp(cum_last - cum) (.) Delta x)
                real cl = cum[len - 1], sl = csg[len - 1];
                for (int r = 0; r < len; r++) {
                    real w = sl * csg[r] * exp(cl - cum[r]);
                    for (int p = 0; p < P; p++) ux[r * P + p] *= w;
                }
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, P, len, 1, Bc, N, ux, P,
                           sl * exp(cl), S, P);
            }
            if (state_out) memcpy(state_out + so, S, sizeof(real) * N * P);
        }
        free(Ce), free(csg);
        free(S), free(cum), free(ux), free(cb);
        m2_acts_free(&a);
    }
}

static void mamba2_forward_carry(const OpShape *s, const real *const *in, real *const *out,
                                 real *sv, const real *state_in, real *state_out) {
    M2Dims d = m2_dims(s);
    real *y = sv + m2_states_size(&d), *rstd = y + (size_t)d.B * d.T * d.d_in;
    m2_ssd_forward(&d, in, y, sv, state_in, state_out);
    const real *w = in[CORE_IN_PARAMS + 3];
    int gs = d.d_in / d.G;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)d.B * d.T * d.G; i++) {
        size_t tok = i / d.G;
        int g = (int)(i % d.G);
        const real *yr = y + tok * d.d_in + g * gs, *z = in[CORE_IN_XPROJ] + tok * d.E + g * gs;
        real *o = out[0] + tok * d.d_in + g * gs, ss = 0;
        for (int j = 0; j < gs; j++) {
            o[j] = yr[j] * m2_silu(z[j]);
            ss += o[j] * o[j];
        }
        real r = 1 / sqrt(ss / gs + MAMBA2_NORM_EPS);
        rstd[i] = r;
        for (int j = 0; j < gs; j++) o[j] *= r * w[g * gs + j];
    }
}

static void mamba2_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    mamba2_forward_carry(s, in, out, sv, NULL, NULL);
}

// The leaving state's gradient seeds dS; after chunk 0, dS is the entering state's. The saved
// chunk states include the entering state.
static void mamba2_backward_carry(const OpShape *s, const real *const *in, const real *const *out,
                                  const real *sv, const real *const *dout, real *const *din,
                                  const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)out, (void)state_in;
    M2Dims d = m2_dims(s);
    int hpg = d.H / d.G, N = d.N, P = d.P, L = d.L, gs = d.d_in / d.G;
    const real *y = sv + m2_states_size(&d), *rstd = y + (size_t)d.B * d.T * d.d_in;
    const real *zdt = in[CORE_IN_XPROJ], *w = in[CORE_IN_PARAMS + 3];
    const real *a_log = in[CORE_IN_PARAMS], *dt_bias = in[CORE_IN_PARAMS + 1];
    const real *d_skip = in[CORE_IN_PARAMS + 2];
    real *dxbc = din[CORE_IN_QKV], *dzdt = din[CORE_IN_XPROJ];
    size_t NT = (size_t)d.B * d.T;
    // The gated norm: dy (into a buffer), dz, and the norm weight's gradient.
    real *dy = malloc(sizeof(real) * NT * d.d_in);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < NT * d.G; i++) {
        size_t tok = i / d.G;
        int g = (int)(i % d.G);
        const real *yr = y + tok * d.d_in + g * gs, *z = zdt + tok * d.E + g * gs;
        const real *go = dout[0] + tok * d.d_in + g * gs;
        real r = rstd[i], dot = 0;
        for (int j = 0; j < gs; j++) dot += go[j] * w[g * gs + j] * yr[j] * m2_silu(z[j]);
        real m = dot * r * r / gs;  // mean(dghat (.) ghat) / rms, with ghat = g r
        real *dyr = dy + tok * d.d_in + g * gs, *dz = dzdt + tok * d.E + g * gs;
        for (int j = 0; j < gs; j++) {
            real sz = m2_silu(z[j]), gj = yr[j] * sz;
            real dg = r * (go[j] * w[g * gs + j] - gj * m);
            dyr[j] = dg * sz;
            dz[j] += dg * yr[j] * m2_dsilu(z[j]);
        }
    }
    // d norm_weight: per channel, the tokens in a fixed order (any thread count, same bits),
    // walked token by token over a block of channels so that the reads are rows, not columns.
    enum { NW_BLOCK = 16 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < d.d_in; c0 += NW_BLOCK) {
        int nc = d.d_in - c0 < NW_BLOCK ? d.d_in - c0 : NW_BLOCK;
        real acc[NW_BLOCK] = {0};
        for (size_t tok = 0; tok < NT; tok++) {
            const real *yr = y + tok * d.d_in + c0, *z = zdt + tok * d.E + c0;
            const real *go = dout[0] + tok * d.d_in + c0;
            for (int k = 0; k < nc; k++)
                acc[k] += go[k] * (yr[k] * m2_silu(z[k])) * rstd[tok * d.G + (c0 + k) / gs];
        }
        for (int k = 0; k < nc; k++) din[CORE_IN_PARAMS + 3][c0 + k] += acc[k];
    }
    // The SSD, chunk by chunk in reverse. Per (batch, head) partials of d a_log, d dt_bias, d D.
    real *part = calloc((size_t)3 * d.B * d.H, sizeof(real));
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < d.B * d.G; bg++) {
        int b = bg / d.G, g = bg % d.G;
        M2Acts a;
        m2_acts_alloc(&d, &a);
        m2_acts(&d, in, b, g, &a);
        real *dBm = calloc((size_t)d.T * N, sizeof(real)),
             *dCm = calloc((size_t)d.T * N, sizeof(real));
        real *dS = malloc(sizeof(real) * N * P), *cum = malloc(sizeof(real) * L);
        real *ux = malloc(sizeof(real) * L * P), *dux = malloc(sizeof(real) * L * P);
        real *dcum = malloc(sizeof(real) * L), *wl = malloc(sizeof(real) * L);
        real *M1 = malloc(sizeof(real) * L * L), *M2 = malloc(sizeof(real) * L * L);
        real *tB = malloc(sizeof(real) * L * N), *Ce = malloc(sizeof(real) * L * N);
        real *csg = malloc(sizeof(real) * L), *mrow = malloc(sizeof(real) * L);
        for (int j = 0; j < hpg; j++) {
            int h = g * hpg + j;
            const real *xs = a.xs + (size_t)j * d.T * P, *la = a.la + (size_t)j * d.T;
            const real *sg = a.sg + (size_t)j * d.T;
            const real *delta = a.delta + (size_t)j * d.T;
            real A = exp(a_log[h]);
            size_t so = ((size_t)b * d.H + h) * N * P;
            if (dstate_out)
                memcpy(dS, dstate_out + so, sizeof(real) * N * P);
            else
                memset(dS, 0, sizeof(real) * N * P);
            for (int c = d.nc - 1; c >= 0; c--) {
                int t0 = c * L, len = d.T - t0 < L ? d.T - t0 : L;
                const real *S = sv + (((size_t)b * d.H + h) * d.nc + c) * N * P;
                const real *Cc = a.Cm + (size_t)t0 * N, *Bc = a.Bm + (size_t)t0 * N;
                const real *dyc = dy + ((size_t)b * d.T + t0) * d.d_in + h * P;  // stride d_in
                real *dBc = dBm + (size_t)t0 * N, *dCc = dCm + (size_t)t0 * N;
                real run = 0, sign = 1;
                for (int r = 0; r < len; r++) {
                    run += la[t0 + r], cum[r] = run, dcum[r] = 0;
                    sign *= sg[t0 + r], csg[r] = sign;
                    for (int p = 0; p < P; p++)
                        ux[r * P + p] = delta[t0 + r] * xs[(size_t)(t0 + r) * P + p];
                }
                // the decays as the forward used them, signs included (they are constants to
                // the cumulative sums' gradient)
                real cl = cum[len - 1], sl = csg[len - 1], el = sl * exp(cl);
                for (int r = 0; r < len; r++) wl[r] = sl * csg[r] * exp(cl - cum[r]);
                // Through S_out = exp(cum_last) S + B^T (w (.) ux), w_s = exp(cum_last - cum_s):
                // dux = w (.) (B dS), dB += w (.) (ux dS^T), and the decays through <., dS>.
                real sd = 0;
                for (int i = 0; i < N * P; i++) sd += S[i] * dS[i];
                dcum[len - 1] += el * sd;
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, P, N, 1, Bc, N, dS, P, 0,
                           dux, P);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, N, P, 1, ux, P, dS, P, 0,
                           tB, N);
                for (int r = 0; r < len; r++) {
                    real wsum = 0;
                    for (int p = 0; p < P; p++) dux[r * P + p] *= wl[r];
                    for (int n = 0; n < N; n++) {
                        wsum += Bc[(size_t)r * N + n] * tB[r * N + n];
                        dBc[(size_t)r * N + n] += wl[r] * tB[r * N + n];
                    }
                    dcum[len - 1] += wl[r] * wsum, dcum[r] -= wl[r] * wsum;
                }
                // The inter-chunk readout y_r += exp(cum_r) S^T C_r: dC_r += exp(cum_r) S dy_r.
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, N, P, 1, dyc, d.d_in, S, P,
                           0, tB, N);
                for (int r = 0; r < len; r++) {
                    real e = csg[r] * exp(cum[r]), acc = 0;
                    for (int n = 0; n < N; n++) {
                        dCc[(size_t)r * N + n] += e * tB[r * N + n];
                        acc += Cc[(size_t)r * N + n] * tB[r * N + n];
                        Ce[r * N + n] = e * Cc[(size_t)r * N + n];
                    }
                    dcum[r] += e * acc;
                }
                // The intra-chunk sum y_r += sum_{s <= r} e2_rs (C_r . B_s) ux_s, e2 =
                // exp(cum_r - cum_s): M1 = e2 (.) C B^T, M2 = e2 (.) dy ux^T (masked, s <= r);
                // dux += M1^T dy, dC += M2 B, dB += M2^T C, and the decays through M1 (.) M2.
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, N, 1, Cc, N, Bc, N, 0,
                           M1, L);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, P, 1, dyc, d.d_in, ux,
                           P, 0, M2, L);
                // Row by row: below the diagonal the products in a vector loop (m kept in mrow),
                // the decays' sums in a scalar one; the diagonal's e2 is exactly 1, above it 0.
                for (int r = 0; r < len; r++) {
                    real *m1r = M1 + (size_t)r * L, *m2r = M2 + (size_t)r * L;
                    real cr = cum[r], sr = csg[r], acc = 0;
                    for (int s2 = 0; s2 < r; s2++) {
                        real e2 = sr * csg[s2] * vexp(cr - cum[s2]);
                        real m1 = e2 * m1r[s2];
                        mrow[s2] = m1 * m2r[s2];
                        m2r[s2] *= e2, m1r[s2] = m1;
                    }
                    for (int s2 = 0; s2 < r; s2++) acc += mrow[s2], dcum[s2] -= mrow[s2];
                    dcum[r] += acc;
                    for (int s2 = r + 1; s2 < len; s2++) m1r[s2] = 0, m2r[s2] = 0;
                }
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, P, len, 1, M1, L, dyc,
                           d.d_in, 1, dux, P);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, N, len, 1, M2, L, Bc, N,
                           1, dCc, N);
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, N, len, 1, M2, L, Cc, N, 1,
                           dBc, N);
                // dS for the previous chunk: exp(cum_last) dS + (exp(cum) (.) C)^T dy.
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, P, len, 1, Ce, N, dyc,
                           d.d_in, el, dS, P);
                // Per token: d log a = reverse cumsum of dcum; then Delta, dt and x.
                real rc = 0;
                for (int r = len - 1; r >= 0; r--) {
                    int t = t0 + r;
                    rc += dcum[r];
                    // d/du of log |a| with u = -Delta A: 1, or 2 e^u / a under neg_eigval
                    real du_la = 1;
                    if (d.neg) {
                        real eu = exp(-delta[t] * A), av = 2 * eu - 1;
                        du_la = fabs(av) > 1e-30 ? 2 * eu / av : 0;
                    }
                    real rcu = rc * du_la;
                    const real *dyr = dy + ((size_t)b * d.T + t) * d.d_in + h * P;
                    const real *xr = xs + (size_t)t * P;
                    const real *xpre = in[CORE_IN_QKV] + ((size_t)b * d.T + t) * d.W + h * P;
                    real *dx = dxbc + ((size_t)b * d.T + t) * d.W + h * P;
                    real ddelta = -A * rcu, dD = 0;
                    part[3 * (b * d.H + h)] += -delta[t] * A * rcu;
                    for (int p = 0; p < P; p++) {
                        real du = dux[r * P + p];
                        ddelta += du * xr[p];
                        dD += dyr[p] * xr[p];
                        dx[p] += (delta[t] * du + d_skip[h] * dyr[p]) * m2_dsilu(xpre[p]);
                    }
                    part[3 * (b * d.H + h) + 2] += dD;
                    real dtpre = zdt[((size_t)b * d.T + t) * d.E + d.d_in + h] + dt_bias[h];
                    real ddt = ddelta / (1 + exp(-dtpre));  // softplus' = sigmoid
                    dzdt[((size_t)b * d.T + t) * d.E + d.d_in + h] += ddt;
                    part[3 * (b * d.H + h) + 1] += ddt;
                }
            }
            if (dstate_in)
                for (int i = 0; i < N * P; i++) dstate_in[so + i] += dS[i];
        }
        for (int t = 0; t < d.T; t++) {
            const real *row = in[CORE_IN_QKV] + ((size_t)b * d.T + t) * d.W + d.d_in;
            real *drow = dxbc + ((size_t)b * d.T + t) * d.W + d.d_in;
            for (int n = 0; n < N; n++) {
                drow[g * N + n] += dBm[(size_t)t * N + n] * m2_dsilu(row[g * N + n]);
                drow[(d.G + g) * N + n] +=
                    dCm[(size_t)t * N + n] * m2_dsilu(row[(d.G + g) * N + n]);
            }
        }
        free(dBm), free(dCm), free(dS), free(cum), free(ux), free(dux), free(dcum), free(wl);
        free(M1), free(M2), free(tB), free(Ce), free(csg), free(mrow);
        m2_acts_free(&a);
    }
    for (int h = 0; h < d.H; h++)
        for (int b = 0; b < d.B; b++)
            for (int k = 0; k < 3; k++) din[CORE_IN_PARAMS + k][h] += part[3 * (b * d.H + h) + k];
    free(part), free(dy);
}

static void mamba2_backward(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din) {
    mamba2_backward_carry(s, in, out, sv, dout, din, NULL, NULL, NULL);
}

static size_t mamba2_carry_size(const OpShape *s) {
    M2Dims d = m2_dims(s);
    return (size_t)d.B * d.H * d.N * d.P;
}

// A slice's transition per (batch, head): the scalar prod_t a_t (its sign kept apart under
// neg_eigval), its own transpose.
static void mamba2_carry_through(const OpShape *s, const real *const *in, real *state,
                                 int transpose) {
    (void)transpose;
    M2Dims d = m2_dims(s);
    const real *zdt = in[CORE_IN_XPROJ];
    const real *a_log = in[CORE_IN_PARAMS], *dt_bias = in[CORE_IN_PARAMS + 1];
    for (int bh = 0; bh < d.B * d.H; bh++) {
        int b = bh / d.H, h = bh % d.H;
        real sum = 0, sign = 1, A = exp(a_log[h]);
        for (int t = 0; t < d.T; t++) {
            real la, sg;
            real delta = mamba_softplus(zdt[((size_t)b * d.T + t) * d.E + d.d_in + h] + dt_bias[h]);
            m2_decay(&d, -delta * A, &la, &sg);
            sum += la, sign *= sg;
        }
        real a = sign * exp(sum);
        for (size_t i = 0; i < (size_t)d.N * d.P; i++) state[(size_t)bh * d.N * d.P + i] *= a;
    }
}

// a_log and dt_bias as Mamba-2 draws them (kernels/mamba_init.h), the skip D (ones) and the
// gated norm's weight (ones); none weight-decayed (Mamba-2's _no_weight_decay).
static int mamba2_params(const OpShape *s, OpParam *out) {
    M2Dims d = m2_dims(s);
    mamba_decay_params(s, "a_log", out);
    out[2] = (OpParam){.name = "d_skip", .rows = s->H, .init = INIT_ONES, .trainable = 1};
    out[3] = (OpParam){.name = "norm_weight", .rows = d.d_in, .init = INIT_ONES, .trainable = 1};
    return 4;
}

static void mamba2_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    M2Dims d = m2_dims(s);
    OpParam p[OP_MAX_PARAMS];
    int n = mamba2_params(s, p);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.W, in[CORE_IN_XPROJ] = NT * d.E;
    for (int i = 0; i < n; i++) in[CORE_IN_PARAMS + i] = (size_t)p[i].rows;
    out[0] = NT * d.d_in;
    *saved = m2_states_size(&d) + NT * d.d_in + NT * d.G;
}

static void mamba2_init(const OpShape *s, int index, uint64_t key, real *w) {
    Mamba2Opts o = OPT_OF(Mamba2Opts, s);
    mamba_decay_init(s, &o.init, index, key, w);
}

static int mamba2_check(const OpShape *s, char *err, size_t errlen) {
    Mamba2Opts o = OPT_OF(Mamba2Opts, s);
    if (mamba_init_check(&o.init, err, errlen)) return -1;
    if (s->H % o.n_groups) {
        snprintf(err, errlen, "mixer.n_groups (%d) must divide model.n_heads (%d)", o.n_groups,
                 s->H);
        return -1;
    }
    if ((o.expand * s->C) % s->H) {
        snprintf(err, errlen,
                 "mixer.expand x model.d_model (%d) must be a multiple of model.n_heads (%d)",
                 o.expand * s->C, s->H);
        return -1;
    }
    M2Dims d = m2_dims(s);
    // The CUDA kernels run a thread per head channel and reduce an N x P tile in shared memory.
    if (d.N * d.P > 128 * 128 || d.P > 1024) {
        snprintf(err, errlen,
                 "mamba2 needs mixer.d_state x head dim (%d x %d) <= 16384 and a head dim <= "
                 "1024 (head dim = mixer.expand x model.d_model / model.n_heads)",
                 d.N, d.P);
        return -1;
    }
    return 0;
}

// Per token (all heads): the chunked SSD, 4 N P + 2 L (N + P) per head (mixers.md 18), the skip,
// the gate and the norm.
static double mamba2_flops(const OpShape *s) {
    M2Dims d = m2_dims(s);
    double N = d.N, P = d.P, L = d.L;
    return d.H * (4 * N * P + 2 * L * (N + P) + 2 * P) + 8.0 * d.d_in;
}

// The mean decay factor a_t over tokens and heads on these inputs (as the decay mixer's).
// The mean decay, and the effective rank of each head's final N x P state
// S <- a_t S + Delta_t B_t x_t^T (the SSD recurrence, in double), averaged.
static int mamba2_aux(const OpShape *s, const real *const *in, OpAux *out) {
    M2Dims d = m2_dims(s);
    int hpg = d.H / d.G, N = d.N, P = d.P;
    double sum = 0, erank = 0, *S = malloc(sizeof(double) * N * P);
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            int g = h / hpg;
            memset(S, 0, sizeof(double) * N * P);
            for (int t = 0; t < d.T; t++) {
                size_t tok = (size_t)b * d.T + t;
                const real *row = in[CORE_IN_QKV] + tok * d.W;
                real delta = mamba_softplus(in[CORE_IN_XPROJ][tok * d.E + d.d_in + h] +
                                            in[CORE_IN_PARAMS + 1][h]);
                double e = exp(-delta * exp(in[CORE_IN_PARAMS][h])), a = d.neg ? 2 * e - 1 : e;
                sum += a;
                for (int n = 0; n < N; n++) {
                    double Bn = m2_silu(row[d.d_in + g * N + n]);
                    for (int p = 0; p < P; p++)
                        S[n * P + p] = a * S[n * P + p] + Bn * delta * m2_silu(row[h * P + p]);
                }
            }
            erank += F(state_effective_rank)(S, N, P) / ((double)d.B * d.H);
        }
    free(S);
    out[0] = (OpAux){.name = "decay_mean", .value = sum / ((double)d.B * d.T * d.H)};
    out[1] = (OpAux){.name = "state_erank", .value = erank};
    return 2;
}

#ifdef MT_DOUBLE
// The per-token recurrence S_t = a_t S_{t-1} + B_t (Delta_t x_t)^T, y_t = S_t^T C_t + D x_t,
// then the gated norm: independent of the chunking.
static int mamba2_reference(const OpShape *s, const double *const *in, double *out) {
    M2Dims d = m2_dims(s);
    int hpg = d.H / d.G, N = d.N, P = d.P, gs = d.d_in / d.G;
    double *S = malloc(sizeof(double) * N * P);
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            int g = h / hpg;
            memset(S, 0, sizeof(double) * N * P);
            for (int t = 0; t < d.T; t++) {
                const double *row = in[CORE_IN_QKV] + ((size_t)b * d.T + t) * d.W;
                double dt = in[CORE_IN_XPROJ][((size_t)b * d.T + t) * d.E + d.d_in + h] +
                            in[CORE_IN_PARAMS + 1][h];
                double delta = log1p(exp(dt)), a = exp(-delta * exp(in[CORE_IN_PARAMS][h]));
                if (d.neg) a = 2 * a - 1;
                double *o = out + ((size_t)b * d.T + t) * d.d_in + h * P;
                for (int n = 0; n < N; n++) {
                    double Bn = m2_silu(row[d.d_in + g * N + n]);
                    for (int p = 0; p < P; p++)
                        S[n * P + p] = a * S[n * P + p] + Bn * delta * m2_silu(row[h * P + p]);
                }
                for (int p = 0; p < P; p++) {
                    double acc = in[CORE_IN_PARAMS + 2][h] * m2_silu(row[h * P + p]);
                    for (int n = 0; n < N; n++)
                        acc += S[n * P + p] * m2_silu(row[d.d_in + (d.G + g) * N + n]);
                    o[p] = acc;  // y, gated and normalised below once every head is done
                }
            }
        }
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int g = 0; g < d.G; g++) {
            double *o = out + tok * d.d_in + g * gs, ss = 0;
            for (int j = 0; j < gs; j++) {
                o[j] *= m2_silu(in[CORE_IN_XPROJ][tok * d.E + g * gs + j]);
                ss += o[j] * o[j];
            }
            double r = 1 / sqrt(ss / gs + MAMBA2_NORM_EPS);
            for (int j = 0; j < gs; j++) o[j] *= r * in[CORE_IN_PARAMS + 3][g * gs + j];
        }
    free(S);
    return 0;
}
#else
#define mamba2_reference NULL
#endif

static const OpOption mamba2_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(Mamba2Opts, chunk), 0,
     "chunk length of the chunked SSD training form"},
    {"d_state", OPT_INT, "64", NULL, 1, 4096, offsetof(Mamba2Opts, d_state), 0,
     "state size N per head (Mamba-2's d_state)"},
    {"expand", OPT_INT, "2", NULL, 1, 16, offsetof(Mamba2Opts, expand), 0,
     "inner width d_in = expand x d_model (head dim d_in / n_heads)"},
    {"n_groups", OPT_INT, "1", NULL, 1, 1024, offsetof(Mamba2Opts, n_groups), 0,
     "groups of heads sharing B and C (Mamba-2's ngroups)"},
    {"neg_eigval", OPT_BOOL, "false", NULL, 0, 0, offsetof(Mamba2Opts, neg_eigval), 0,
     "transition a_t = 2 exp(-Delta A) - 1 in (-1, 1) (negative eigenvalues) instead of "
     "exp(-Delta A) in (0, 1)"},
    MAMBA_INIT_OPTIONS(Mamba2Opts),
    {NULL}};

// Shapes: T = 7 with chunk 3 (a partial last chunk), T = 1, T < chunk, two groups, N != P, and
// T = 65 over chunks of 16.
// clang-format off
const F(OpDef) F(op_mamba2) = {
    .name = "mamba2", .n_in = CORE_IN_PARAMS + 4, .n_out = 1,
    .sizes = mamba2_sizes, .forward = mamba2_forward, .backward = mamba2_backward,
    .params = mamba2_params, .init_param = mamba2_init, .check = mamba2_check,
    .aux = mamba2_aux, .options = mamba2_options, .mixer = 1, .xproj_linear = 1,
    .help = "Mamba-2: the SSD layer (silu, scalar decay, skip D, gated RMSNorm; mixers.md 9)",
    .flops = mamba2_flops, .reference = mamba2_reference,
    .carry_size = mamba2_carry_size, .forward_carry = mamba2_forward_carry,
    .backward_carry = mamba2_backward_carry, .carry_through = mamba2_carry_through,
    .aux_cols = {{"decay_mean", AUX_MEAN, "mean decay a_t", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 7,
    .tests = {{{.B = 2, .T = 7, .C = 4, .H = 2}, "chunk=3 d_state=3"},
              {{.B = 2, .T = 9, .C = 4, .H = 2}, "chunk=4 d_state=3 neg_eigval=true"},
              {{.B = 1, .T = 65, .C = 8, .H = 2}, "chunk=16 d_state=4 neg_eigval=true n_groups=2"},
              {{.B = 1, .T = 1, .C = 4, .H = 2}, "chunk=1 d_state=2"},
              {{.B = 1, .T = 5, .C = 6, .H = 2}, "chunk=64 d_state=4 n_groups=2 expand=1"},
              {{.B = 1, .T = 9, .C = 4, .H = 4}, "chunk=4 d_state=5 n_groups=2"},
              {{.B = 2, .T = 65, .C = 8, .H = 2}, "chunk=16 d_state=4"}}};
// clang-format on
