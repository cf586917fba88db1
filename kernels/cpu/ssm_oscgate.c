// OscGate (mixers.md 16 and 20): selective damped oscillators whose frequency omega_t and
// damping zeta_t depend on the input, per oscillator j of m, with the fixed step dt
// (mixer.osc_dt) and, per token, the layer's per-token projection giving their
// pre-activations (W_x = 0 at initialisation, biases b_om = 1, b_ze = 0, as the experiment):
//   omega_t = clamp(softplus(x W_om + b_om), 1e-4, 100),   zeta_t = sigmoid(x W_ze + b_ze).
// Two rows:
// - `oscgate`, the default: the stable complex-diagonal form of mixers.md 20,
//       h_t = (1 - zeta_t) (1 + dt^2 omega_t^2)^(-1/2) e^(i atan(dt omega_t)) h_{t-1} + b_t,
//   |lambda_t| < 1 for every input sequence, so the state is bounded whatever omega_t does
//   (tests/test_osc_stability.c drives it with an adversarial omega schedule). It equals
//   LinOSS-IM when omega and zeta are constant.
// - `oscgate_mve`, the experiment's exact form, kept to reproduce it:
//       [z; y]_t = (1 - zeta_t) [[S, -dt omega^2 S], [dt S, S]] [z; y]_{t-1} + b_t,
//   S = 1 / (1 + dt^2 omega_t^2). Its eigenvalues have modulus < 1 but the matrix is not
//   normal (||M|| = 50 at omega 100, dt 0.01), so an input-dependent omega can grow the state
//   without bound (the same test shows it); it worked in the experiment because zeta stayed
//   large and T was 32. Not the default for that reason; its aux figure state_max logs the
//   growth, and a run whose state overflows stops naming the layer (train.c).
// Both are 2 x 2 recurrences per oscillator, one lane each (the complex multiply of the stable
// form is a scaled rotation of (Re h, Im h)), trained by the chunked scan of osc_scan.h; b_t
// is the oscillator's two input channels (Re, Im of b; the experiment's z and y inputs) and the
// output the two state components (kernels/ssm_osc.h for the widths). Oracles: complex
// arithmetic from the e^(i atan) definition (oscgate) and dense 2m x 2m matrices (oscgate_mve).
#include <complex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../ssm_osc.h"
#include "osc_scan.h"

static real og_sigmoid(real x) {
    return 1 / (1 + exp(-x));
}

// One step's M from the pre-activations, and dM/d(om_pre), dM/d(ze_pre).
static void og_step(int mve, real dt, real om_pre, real ze_pre, real *m, real *dm_dom,
                    real *dm_dze) {
    real sp = om_pre > 20 ? om_pre : log1p(exp(om_pre));
    real w = sp, clamped = 0;
    if (w < (real)OSC_OMEGA_MIN) w = (real)OSC_OMEGA_MIN, clamped = 1;
    if (w > (real)OSC_OMEGA_MAX) w = (real)OSC_OMEGA_MAX, clamped = 1;
    real dw = clamped ? 0 : og_sigmoid(om_pre);  // d omega / d om_pre
    real z = og_sigmoid(ze_pre), dz = z * (1 - z), k = 1 - z;
    real S = 1 / (1 + dt * dt * w * w), S_w = -2 * dt * dt * w * S * S;
    if (!mve) {
        real a = k * S, c = k * S * dt * w;
        real a_w = k * S_w, c_w = k * dt * (S + w * S_w), a_z = -S, c_z = -S * dt * w;
        m[0] = a, m[1] = -c, m[2] = c, m[3] = a;
        dm_dom[0] = a_w * dw, dm_dom[1] = -c_w * dw, dm_dom[2] = c_w * dw, dm_dom[3] = a_w * dw;
        dm_dze[0] = a_z * dz, dm_dze[1] = -c_z * dz, dm_dze[2] = c_z * dz, dm_dze[3] = a_z * dz;
    } else {
        real e[4] = {S, -dt * w * w * S, dt * S, S};
        real e_w[4] = {S_w, -dt * (2 * w * S + w * w * S_w), dt * S_w, S_w};
        for (int i = 0; i < 4; i++) {
            m[i] = k * e[i];
            dm_dom[i] = k * e_w[i] * dw;
            dm_dze[i] = -e[i] * dz;
        }
    }
}

typedef struct {
    OscDims d;
    int mve;
    const real *b_in, *pre, *b_om, *b_ze;  // input 0 [B,T,W], input 1 [B,T,2m], biases [m]
    real *out, *din, *dpre;
    const real *dout;
    // Each step's M [B, T, m, 4] and, for backward, dM/d(om_pre) and dM/d(ze_pre) [B, T, m, 8],
    // computed once per call (the scan reads a step two or three times).
    real *mt, *dmt;
} OgCtx;

static void og_pre(const OgCtx *x, int b, int j, int t, real *om, real *ze) {
    const real *p = x->pre + ((size_t)b * x->d.T + t) * 2 * x->d.m;
    *om = p[j] + x->b_om[j], *ze = p[x->d.m + j] + x->b_ze[j];
}

// Fills x->mt (and x->dmt when it is not NULL) for every (batch, token, oscillator).
static void og_precompute(OgCtx *x) {
    size_t NT = (size_t)x->d.B * x->d.T;
    int m = x->d.m;
#pragma omp parallel for schedule(static)
    for (size_t tok = 0; tok < NT; tok++)
        for (int j = 0; j < m; j++) {
            real om, ze, d1[4], d2[4];
            og_pre(x, (int)(tok / x->d.T), j, (int)(tok % x->d.T), &om, &ze);
            og_step(x->mve, (real)x->d.dt, om, ze, x->mt + (tok * m + j) * 4, d1, d2);
            if (x->dmt) {
                memcpy(x->dmt + (tok * m + j) * 8, d1, sizeof(d1));
                memcpy(x->dmt + (tok * m + j) * 8 + 4, d2, sizeof(d2));
            }
        }
}

static void og_fill(const void *vc, int b, int j, int t0, int len, OscStep *st) {
    const OgCtx *x = vc;
    for (int r = 0; r < len; r++) {
        size_t tok = (size_t)b * x->d.T + t0 + r;
        memcpy(st[r].m, x->mt + (tok * x->d.m + j) * 4, sizeof(real) * 4);
        const real *u = x->b_in + tok * x->d.W;
        st[r].f[0] = u[j], st[r].f[1] = u[x->d.m + j];
    }
}

static void og_emit(const void *vc, int b, int j, int t0, int len, const real *s) {
    const OgCtx *x = vc;
    for (int r = 0; r < len; r++) {
        real *o = x->out + ((size_t)b * x->d.T + t0 + r) * x->d.W;
        o[j] = s[2 * r], o[x->d.m + j] = s[2 * r + 1];
    }
}

static void og_dout(const void *vc, int b, int j, int t0, int len, real *ds) {
    const OgCtx *x = vc;
    for (int r = 0; r < len; r++) {
        const real *g = x->dout + ((size_t)b * x->d.T + t0 + r) * x->d.W;
        ds[2 * r] = g[j], ds[2 * r + 1] = g[x->d.m + j];
    }
}

// Per step: dM = g s_prev^T through dM/d(pre-activations) into input 1's gradient, df = g into
// input 0's; part: the biases' partial sums (d b_om, d b_ze).
static void og_chain(const void *vc, int b, int j, int t0, int len, const OscStep *st,
                     const real *sp, const real *g, real *part) {
    (void)st;
    const OgCtx *x = vc;
    // Last step first, as the CUDA twin walks the chunk: the same summation order for the
    // parameter partials on both backends.
    for (int r = len - 1; r >= 0; r--) {
        int t = t0 + r;
        const real *d1 = x->dmt + (((size_t)b * x->d.T + t) * x->d.m + j) * 8, *d2 = d1 + 4;
        real g0 = g[2 * r], g1 = g[2 * r + 1], s0 = sp[2 * r], s1 = sp[2 * r + 1];
        real G[4] = {g0 * s0, g0 * s1, g1 * s0, g1 * s1}, dom = 0, dze = 0;
        for (int i = 0; i < 4; i++) dom += G[i] * d1[i], dze += G[i] * d2[i];
        real *dp = x->dpre + ((size_t)b * x->d.T + t) * 2 * x->d.m;
        dp[j] += dom, dp[x->d.m + j] += dze;
        part[0] += dom, part[1] += dze;
        real *di = x->din + ((size_t)b * x->d.T + t) * x->d.W;
        di[j] += g0, di[x->d.m + j] += g1;
    }
}

static OscScan og_scan(const OgCtx *x) {
    return (OscScan){.ctx = x,
                     .B = x->d.B,
                     .T = x->d.T,
                     .lanes = x->d.m,
                     .L = x->d.L,
                     .nc = x->d.nc,
                     .fill = og_fill,
                     .emit = og_emit,
                     .dout = og_dout,
                     .chain = og_chain,
                     .npart = 2};
}

static OgCtx og_ctx(const OpShape *s, int mve, const real *const *in) {
    return (OgCtx){.d = osc_dims(s),
                   .mve = mve,
                   .b_in = in[CORE_IN_QKV],
                   .pre = in[CORE_IN_XPROJ],
                   .b_om = in[CORE_IN_PARAMS],
                   .b_ze = in[CORE_IN_PARAMS + 1]};
}

// Context parallelism: the oscillators' states [B, m lanes, 2] enter and leave the call.
static void og_forward(const OpShape *s, int mve, const real *const *in, real *const *out, real *sv,
                       const real *state_in, real *state_out) {
    OgCtx x = og_ctx(s, mve, in);
    x.out = out[0];
    x.mt = malloc(sizeof(real) * (size_t)x.d.B * x.d.T * x.d.m * 4 + 1);
    og_precompute(&x);
    OscScan o = og_scan(&x);
    osc_forward(&o, sv, state_in, state_out);
    free(x.mt);
    for (size_t tok = 0; tok < (size_t)x.d.B * x.d.T; tok++)  // u through to W_o's skip D
        memcpy(out[0] + tok * x.d.W + 2 * x.d.m, in[CORE_IN_QKV] + tok * x.d.W + 2 * x.d.m,
               sizeof(real) * x.d.C);
}

static void og_backward(const OpShape *s, int mve, const real *const *in, const real *sv,
                        const real *const *dout, real *const *din, const real *dstate_out,
                        real *dstate_in) {
    OgCtx x = og_ctx(s, mve, in);
    x.din = din[CORE_IN_QKV], x.dpre = din[CORE_IN_XPROJ], x.dout = dout[0];
    OscDims d = x.d;
    x.mt = malloc(sizeof(real) * (size_t)d.B * d.T * d.m * 4 + 1);
    x.dmt = malloc(sizeof(real) * (size_t)d.B * d.T * d.m * 8 + 1);
    og_precompute(&x);
    OscScan o = og_scan(&x);
    real *part = malloc(sizeof(real) * (size_t)d.B * d.m * d.nc * 2 + 1);
    osc_backward(&o, sv, part, dstate_out, dstate_in);
    free(x.mt), free(x.dmt);
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int c = 0; c < d.C; c++)
            din[CORE_IN_QKV][tok * d.W + 2 * d.m + c] += dout[0][tok * d.W + 2 * d.m + c];
    for (int j = 0; j < d.m; j++) {  // batch rows, then chunks: a fixed order
        real acc[2] = {0, 0};
        for (int b = 0; b < d.B; b++)
            for (int c = 0; c < d.nc; c++)
                for (int i = 0; i < 2; i++)
                    acc[i] += part[(((size_t)b * d.m + j) * d.nc + c) * 2 + i];
        din[CORE_IN_PARAMS][j] += acc[0], din[CORE_IN_PARAMS + 1][j] += acc[1];
    }
    free(part);
}

static void oscgate_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    og_forward(s, 0, in, out, sv, NULL, NULL);
}
static void oscgate_backward(const OpShape *s, const real *const *in, const real *const *out,
                             const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    og_backward(s, 0, in, sv, dout, din, NULL, NULL);
}
static void oscgate_mve_forward(const OpShape *s, const real *const *in, real *const *out,
                                real *sv) {
    og_forward(s, 1, in, out, sv, NULL, NULL);
}
static void oscgate_mve_backward(const OpShape *s, const real *const *in, const real *const *out,
                                 const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    og_backward(s, 1, in, sv, dout, din, NULL, NULL);
}

// The carried forms (the entering state's own part sits in the saved chunk states, so
// backward needs only the leaving state's gradient).
static void oscgate_forward_carry(const OpShape *s, const real *const *in, real *const *out,
                                  real *sv, const real *state_in, real *state_out) {
    og_forward(s, 0, in, out, sv, state_in, state_out);
}
static void oscgate_backward_carry(const OpShape *s, const real *const *in, const real *const *out,
                                   const real *sv, const real *const *dout, real *const *din,
                                   const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)out, (void)state_in;
    og_backward(s, 0, in, sv, dout, din, dstate_out, dstate_in);
}
static void oscgate_mve_forward_carry(const OpShape *s, const real *const *in, real *const *out,
                                      real *sv, const real *state_in, real *state_out) {
    og_forward(s, 1, in, out, sv, state_in, state_out);
}
static void oscgate_mve_backward_carry(const OpShape *s, const real *const *in,
                                       const real *const *out, const real *sv,
                                       const real *const *dout, real *const *din,
                                       const real *state_in, const real *dstate_out,
                                       real *dstate_in) {
    (void)out, (void)state_in;
    og_backward(s, 1, in, sv, dout, din, dstate_out, dstate_in);
}
static size_t og_carry_size(const OpShape *s) {
    OscDims d = osc_dims(s);
    return (size_t)d.B * d.m * 2;
}
static void og_carry_through(const OpShape *s, int mve, const real *const *in, real *state,
                             int transpose) {
    OgCtx x = og_ctx(s, mve, in);
    x.mt = malloc(sizeof(real) * (size_t)x.d.B * x.d.T * x.d.m * 4 + 1);
    og_precompute(&x);
    OscScan o = og_scan(&x);
    osc_carry_through(&o, state, transpose);
    free(x.mt);
}
static void oscgate_carry_through(const OpShape *s, const real *const *in, real *state,
                                  int transpose) {
    og_carry_through(s, 0, in, state, transpose);
}
static void oscgate_mve_carry_through(const OpShape *s, const real *const *in, real *state,
                                      int transpose) {
    og_carry_through(s, 1, in, state, transpose);
}

// b_om = 1 (omega = softplus(1) = 1.31) and b_ze = mixer.osc_zeta_bias at initialisation, with
// the layer's W_x at zero. The default b_ze = 0 is the experiment's start: zeta = 0.5, so every
// step multiplies the state by (1 - zeta) = 0.5 until training lowers zeta; a negative bias
// starts with a long memory instead (E007 in docs/results.md). Not weight-decayed.
static int oscgate_params(const OpShape *s, OpParam *out) {
    OscDims d = osc_dims(s);
    out[0] = (OpParam){
        .name = "omega_bias", .rows = d.m, .init = INIT_CONST, .init_value = 1, .trainable = 1};
    out[1] = (OpParam){.name = "zeta_bias",
                       .rows = d.m,
                       .init = INIT_CONST,
                       .init_value = OPT_OF(OscOpts, s).zeta_bias,
                       .trainable = 1};
    return 2;
}

static void oscgate_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OscDims d = osc_dims(s);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.W, in[CORE_IN_XPROJ] = NT * 2 * d.m;
    in[CORE_IN_PARAMS] = in[CORE_IN_PARAMS + 1] = (size_t)d.m;
    out[0] = NT * d.W;
    *saved = (size_t)s->B * d.m * d.nc * 2;
}

static int oscgate_check(const OpShape *s, char *err, size_t errlen) {
    OscOpts o = OPT_OF(OscOpts, s);
    if (!(o.dt > 0)) {
        snprintf(err, errlen, "mixer.osc_dt must be > 0 (got %g)", o.dt);
        return -1;
    }
    return 0;
}

// Per token and oscillator: the step's M from the pre-activations (about 30 operations,
// softplus and sigmoid included), twice (the reduce and the rerun), the step itself twice
// (2 x 6) and the chunk product (8).
static double oscgate_flops(const OpShape *s) {
    OscDims d = osc_dims(s);
    return (double)d.m * (2 * 30 + 2 * 6 + 8);
}

// The state's largest component over the batch (the growth the experiment's form can show),
// the mean omega and zeta, and the largest transition norm ||M_t||_2 seen.
static int og_aux(const OpShape *s, int mve, const real *const *in, OpAux *out) {
    OscDims d = osc_dims(s);
    OgCtx x = og_ctx(s, mve, in);
    double smax = 0, wsum = 0, zsum = 0, nmax = 0;
    for (int b = 0; b < d.B; b++)
        for (int j = 0; j < d.m; j++) {
            double s0 = 0, s1 = 0;
            for (int t = 0; t < d.T; t++) {
                real om, ze, m[4], d1[4], d2[4];
                og_pre(&x, b, j, t, &om, &ze);
                og_step(mve, (real)d.dt, om, ze, m, d1, d2);
                const real *u = in[CORE_IN_QKV] + ((size_t)b * d.T + t) * d.W;
                double n0 = m[0] * s0 + m[1] * s1 + u[j], n1 = m[2] * s0 + m[3] * s1 + u[d.m + j];
                s0 = n0, s1 = n1;
                smax = fmax(smax, fmax(fabs(s0), fabs(s1)));
                if (isnan(s0) || isnan(s1)) smax = INFINITY;
                double w = om > 20 ? om : log1p(exp(om));
                wsum += fmin(fmax(w, OSC_OMEGA_MIN), OSC_OMEGA_MAX), zsum += 1 / (1 + exp(-ze));
                // ||M||_2 of a 2 x 2: the largest singular value
                double a = m[0], bb = m[1], c = m[2], dd = m[3];
                double f = a * a + bb * bb + c * c + dd * dd, det = a * dd - bb * c;
                nmax = fmax(nmax, sqrt((f + sqrt(fmax(f * f - 4 * det * det, 0))) / 2));
            }
        }
    double n = (double)d.B * d.m * d.T;
    out[0] = (OpAux){.name = "state_max", .value = smax};
    out[1] = (OpAux){.name = "omega_mean", .value = n ? wsum / n : 0};
    out[2] = (OpAux){.name = "zeta_mean", .value = n ? zsum / n : 0};
    out[3] = (OpAux){.name = "transition_norm_max", .value = nmax};
    return 4;
}
static int oscgate_aux(const OpShape *s, const real *const *in, OpAux *out) {
    return og_aux(s, 0, in, out);
}
static int oscgate_mve_aux(const OpShape *s, const real *const *in, OpAux *out) {
    return og_aux(s, 1, in, out);
}

#ifdef MT_DOUBLE
static double og_omega(double pre) {
    double w = log1p(exp(pre));
    return fmin(fmax(w, OSC_OMEGA_MIN), OSC_OMEGA_MAX);
}

// The stable form from its definition: h complex, lambda = (1 - zeta)(1 + dt^2 w^2)^(-1/2)
// e^(i atan(dt w)), in complex double arithmetic.
static int oscgate_reference(const OpShape *s, const double *const *in, double *out) {
    OscDims d = osc_dims(s);
    for (int b = 0; b < d.B; b++)
        for (int j = 0; j < d.m; j++) {
            double complex h = 0;
            for (int t = 0; t < d.T; t++) {
                size_t tok = (size_t)b * d.T + t;
                const double *pre = in[CORE_IN_XPROJ] + tok * 2 * d.m,
                             *u = in[CORE_IN_QKV] + tok * d.W;
                double w = og_omega(pre[j] + in[CORE_IN_PARAMS][j]);
                double zeta = 1 / (1 + exp(-(pre[d.m + j] + in[CORE_IN_PARAMS + 1][j])));
                double complex lambda =
                    (1 - zeta) / sqrt(1 + d.dt * d.dt * w * w) * cexp(I * atan(d.dt * w));
                h = lambda * h + (u[j] + I * u[d.m + j]);
                out[tok * d.W + j] = creal(h), out[tok * d.W + d.m + j] = cimag(h);
            }
        }
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int c = 0; c < d.C; c++)
            out[tok * d.W + 2 * d.m + c] = in[CORE_IN_QKV][tok * d.W + 2 * d.m + c];
    return 0;
}

// The experiment's form with the whole state as one vector [z (m) | y (m)] and M_t as a dense
// 2m x 2m matrix (oscillator j couples z_j and y_j only), multiplied out each token.
static int oscgate_mve_reference(const OpShape *s, const double *const *in, double *out) {
    OscDims d = osc_dims(s);
    int n = 2 * d.m;
    double *M = malloc(sizeof(double) * n * n), *h = malloc(sizeof(double) * n);
    double *nh = malloc(sizeof(double) * n);
    for (int b = 0; b < d.B; b++) {
        memset(h, 0, sizeof(double) * n);
        for (int t = 0; t < d.T; t++) {
            size_t tok = (size_t)b * d.T + t;
            const double *pre = in[CORE_IN_XPROJ] + tok * 2 * d.m, *u = in[CORE_IN_QKV] + tok * d.W;
            memset(M, 0, sizeof(double) * n * n);
            for (int j = 0; j < d.m; j++) {
                double w = og_omega(pre[j] + in[CORE_IN_PARAMS][j]);
                double zeta = 1 / (1 + exp(-(pre[d.m + j] + in[CORE_IN_PARAMS + 1][j])));
                double S = 1 / (1 + d.dt * d.dt * w * w), k = 1 - zeta;
                M[j * n + j] = k * S, M[j * n + d.m + j] = -k * d.dt * w * w * S;
                M[(d.m + j) * n + j] = k * d.dt * S, M[(d.m + j) * n + d.m + j] = k * S;
            }
            for (int r = 0; r < n; r++) {
                double acc = u[r];  // input channels [z-input (m) | y-input (m)]
                for (int c = 0; c < n; c++) acc += M[r * n + c] * h[c];
                nh[r] = acc;
            }
            memcpy(h, nh, sizeof(double) * n);
            for (int r = 0; r < n; r++) out[tok * d.W + r] = h[r];
            for (int c = 0; c < d.C; c++) out[tok * d.W + n + c] = u[n + c];
        }
    }
    free(M), free(h), free(nh);
    return 0;
}
#else
#define oscgate_reference NULL
#define oscgate_mve_reference NULL
#endif

static const OpOption oscgate_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(OscOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"oscillators", OPT_INT, "64", NULL, 1, 1 << 16, offsetof(OscOpts, oscillators), 0,
     "linoss, oscgate, oscgate_mve: oscillators per layer (LinOSS's P)"},
    {"osc_dt", OPT_FLOAT, "0.01", NULL, 1e-6, 10, offsetof(OscOpts, dt), 0,
     "oscgate, oscgate_mve: the fixed step dt (the experiment's 0.01)"},
    {"osc_zeta_bias", OPT_FLOAT, "0", NULL, -30, 30, offsetof(OscOpts, zeta_bias), 0,
     "oscgate, oscgate_mve: zeta's bias at initialisation (the experiment's 0: zeta = 0.5, the "
     "state halves each step until trained)"},
    {NULL}};

// Shapes: a partial last chunk, T = 1, one chunk, T = 65 over chunks of 16; dt large enough
// (0.5) that omega's rotation and the clamp-free softplus are exercised at test sizes.
#define OSCGATE_TESTS                                                                           \
    .n_tests = 5, .tests = {                                                                    \
                      {{.B = 2, .T = 7, .C = 4, .H = 1}, "chunk=3 oscillators=3 osc_dt=0.5"},   \
                      {{.B = 1, .T = 1, .C = 3, .H = 1}, "chunk=1 oscillators=2 osc_dt=0.3"},   \
                      {{.B = 1, .T = 9, .C = 2, .H = 1}, "chunk=64 oscillators=2"},             \
                      {{.B = 1, .T = 65, .C = 4, .H = 1}, "chunk=16 oscillators=3 osc_dt=0.2"}, \
                      {{.B = 2, .T = 65, .C = 4, .H = 1}, "chunk=16 oscillators=2 osc_dt=1"},   \
    }

// clang-format off
const F(OpDef) F(op_oscgate) = {
    .name = "oscgate", .n_in = CORE_IN_PARAMS + 2, .n_out = 1,
    .sizes = oscgate_sizes, .forward = oscgate_forward, .backward = oscgate_backward,
    .params = oscgate_params, .check = oscgate_check, .aux = oscgate_aux,
    .options = oscgate_options, .mixer = 1,
    .carry_size = og_carry_size, .forward_carry = oscgate_forward_carry,
    .backward_carry = oscgate_backward_carry, .carry_through = oscgate_carry_through,
    .help = "OscGate: selective damped oscillators in the stable complex-diagonal form "
            "(|lambda_t| < 1 for any input; mixers.md 20)",
    .flops = oscgate_flops, .reference = oscgate_reference,
    .aux_cols = {{"state_max", AUX_MAX, "max |state|", 4}, {"omega_mean", AUX_MEAN, "omega", 3},
                 {"zeta_mean", AUX_MEAN, "zeta", 3}},
    OSCGATE_TESTS};

const F(OpDef) F(op_oscgate_mve) = {
    .name = "oscgate_mve", .n_in = CORE_IN_PARAMS + 2, .n_out = 1,
    .sizes = oscgate_sizes, .forward = oscgate_mve_forward, .backward = oscgate_mve_backward,
    .params = oscgate_params, .check = oscgate_check, .aux = oscgate_mve_aux,
    .options = oscgate_options, .mixer = 1,
    .carry_size = og_carry_size, .forward_carry = oscgate_mve_forward_carry,
    .backward_carry = oscgate_mve_backward_carry, .carry_through = oscgate_mve_carry_through,
    .help = "OscGate as the experiment ran it (non-normal transition: can grow the state when "
            "omega varies; for reproduction, mixers.md 20)",
    .flops = oscgate_flops, .reference = oscgate_mve_reference,
    .aux_cols = {{"state_max", AUX_MAX, "max |state|", 4},
                 {"transition_norm_max", AUX_MAX, "max ||M_t||", 3}},
    OSCGATE_TESTS};
// clang-format on
