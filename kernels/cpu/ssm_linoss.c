// LinOSS (Rusch & Rus 2024; mixers.md 16): time-invariant oscillatory state space model. Per
// oscillator p of m: A_p = relu(a_hat_p) >= 0, Delta_p = sigmoid(steps_p), and the ODE
// y'' = -A y + B u discretised, on the state (z, y) with z = y', by
//   IM   (implicit, dissipative):  S = 1 / (1 + Delta^2 A),
//        M = [[S, -Delta A S], [Delta S, S]],          f_t = [Delta S, Delta^2 S] (B u)_t
//   IMEX (symplectic, conservative while Delta^2 A <= 4):
//        M = [[1, -Delta A], [Delta, 1 - Delta^2 A]],  f_t = [Delta, Delta^2] (B u)_t
// (mixer.linoss_form). B u is complex; its real and imaginary parts evolve under the same real
// M, so each oscillator is two lanes of the shared 2 x 2 scan (osc_scan.h), and the output is
// y of every lane: (Re y, Im y). The layer's W_o is the readout C (Re(C y) is linear in
// (Re y, Im y)) and, through the u columns the core passes on, the skip D (kernels/ssm_osc.h).
// Trained by the chunked parallel scan of osc_scan.h, not a per-token loop; the oracle is the
// scheme itself (the implicit step solved as a 2 x 2 system each token, in double).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../rng.h"
#include "../ssm_osc.h"
#include "osc_scan.h"

// Per oscillator: M (4), the input coefficients (2), and their derivatives in Delta and A.
typedef struct {
    real m[4], c[2];
    real dm_ddelta[4], dc_ddelta[2], dm_da[4], dc_da[2];
} LinossCoef;

static real lo_sigmoid(real x) {
    return 1 / (1 + exp(-x));
}

static void linoss_coef(int form, real a_hat, real steps, LinossCoef *k) {
    real A = a_hat > 0 ? a_hat : 0, D = lo_sigmoid(steps);
    if (form == LINOSS_IM) {
        real S = 1 / (1 + D * D * A), S_d = -2 * D * A * S * S, S_a = -D * D * S * S;
        real m[4] = {S, -D * A * S, D * S, S}, c[2] = {D * S, D * D * S};
        real md[4] = {S_d, -A * S - D * A * S_d, S + D * S_d, S_d};
        real cd[2] = {S + D * S_d, 2 * D * S + D * D * S_d};
        real ma[4] = {S_a, -D * S - D * A * S_a, D * S_a, S_a}, ca[2] = {D * S_a, D * D * S_a};
        memcpy(k->m, m, sizeof m), memcpy(k->c, c, sizeof c);
        memcpy(k->dm_ddelta, md, sizeof md), memcpy(k->dc_ddelta, cd, sizeof cd);
        memcpy(k->dm_da, ma, sizeof ma), memcpy(k->dc_da, ca, sizeof ca);
    } else {
        real m[4] = {1, -D * A, D, 1 - D * D * A}, c[2] = {D, D * D};
        real md[4] = {0, -A, 1, -2 * D * A}, cd[2] = {1, 2 * D};
        real ma[4] = {0, -D, 0, -D * D}, ca[2] = {0, 0};
        memcpy(k->m, m, sizeof m), memcpy(k->c, c, sizeof c);
        memcpy(k->dm_ddelta, md, sizeof md), memcpy(k->dc_ddelta, cd, sizeof cd);
        memcpy(k->dm_da, ma, sizeof ma), memcpy(k->dc_da, ca, sizeof ca);
    }
}

typedef struct {
    OscDims d;
    const LinossCoef *coef;  // [m]
    const real *u;           // input 0 [B, T, W]: lanes 0..2m-1 are (Re, Im) of B u
    real *out, *din;         // output [B, T, W], input 0's gradient
    const real *dout;
} LinossCtx;

static void lo_fill(const void *vc, int b, int lane, int t0, int len, OscStep *st) {
    const LinossCtx *x = vc;
    const LinossCoef *k = &x->coef[lane % x->d.m];
    const real *u = x->u + ((size_t)b * x->d.T + t0) * x->d.W + lane;
    for (int r = 0; r < len; r++) {
        memcpy(st[r].m, k->m, sizeof(k->m));
        real ur = u[(size_t)r * x->d.W];
        st[r].f[0] = k->c[0] * ur, st[r].f[1] = k->c[1] * ur;
    }
}

static void lo_emit(const void *vc, int b, int lane, int t0, int len, const real *s) {
    const LinossCtx *x = vc;
    real *o = x->out + ((size_t)b * x->d.T + t0) * x->d.W + lane;
    for (int r = 0; r < len; r++) o[(size_t)r * x->d.W] = s[2 * r + 1];  // y
}

static void lo_dout(const void *vc, int b, int lane, int t0, int len, real *ds) {
    const LinossCtx *x = vc;
    const real *g = x->dout + ((size_t)b * x->d.T + t0) * x->d.W + lane;
    for (int r = 0; r < len; r++) ds[2 * r] = 0, ds[2 * r + 1] = g[(size_t)r * x->d.W];
}

// part: sum g s_prev^T (4), sum g u (2); din += the coefficients' transpose times g.
static void lo_chain(const void *vc, int b, int lane, int t0, int len, const OscStep *st,
                     const real *sp, const real *g, real *part) {
    (void)st;
    const LinossCtx *x = vc;
    const LinossCoef *k = &x->coef[lane % x->d.m];
    size_t at = ((size_t)b * x->d.T + t0) * x->d.W + lane;
    // Last step first, as the CUDA twin walks the chunk: the same summation order for the
    // parameter partials on both backends.
    for (int r = len - 1; r >= 0; r--) {
        real g0 = g[2 * r], g1 = g[2 * r + 1], s0 = sp[2 * r], s1 = sp[2 * r + 1];
        real ur = x->u[at + (size_t)r * x->d.W];
        part[0] += g0 * s0, part[1] += g0 * s1, part[2] += g1 * s0, part[3] += g1 * s1;
        part[4] += g0 * ur, part[5] += g1 * ur;
        x->din[at + (size_t)r * x->d.W] += k->c[0] * g0 + k->c[1] * g1;
    }
}

static OscScan linoss_scan(const LinossCtx *x) {
    return (OscScan){.ctx = x,
                     .B = x->d.B,
                     .T = x->d.T,
                     .lanes = 2 * x->d.m,
                     .L = x->d.L,
                     .nc = x->d.nc,
                     .fill = lo_fill,
                     .emit = lo_emit,
                     .dout = lo_dout,
                     .chain = lo_chain,
                     .npart = 6};
}

static LinossCoef *linoss_coefs(const OscDims *d, const real *const *in) {
    LinossCoef *k = malloc(sizeof(LinossCoef) * d->m);
    for (int p = 0; p < d->m; p++)
        linoss_coef(d->form, in[CORE_IN_PARAMS][p], in[CORE_IN_PARAMS + 1][p], &k[p]);
    return k;
}

// Context parallelism: the oscillators' states [B, 2m lanes, 2] enter and leave the call (the
// scan's phase 2 starts from them; osc_scan.h).
static void linoss_forward_carry(const OpShape *s, const real *const *in, real *const *out,
                                 real *sv, const real *state_in, real *state_out) {
    OscDims d = osc_dims(s);
    LinossCoef *coef = linoss_coefs(&d, in);
    LinossCtx x = {.d = d, .coef = coef, .u = in[CORE_IN_QKV], .out = out[0]};
    OscScan o = linoss_scan(&x);
    osc_forward(&o, sv, state_in, state_out);
    // u passes through to the u columns of the output (W_o's skip D)
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        memcpy(out[0] + tok * d.W + 2 * d.m, in[CORE_IN_QKV] + tok * d.W + 2 * d.m,
               sizeof(real) * d.C);
    free(coef);
}

static void linoss_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    linoss_forward_carry(s, in, out, sv, NULL, NULL);
}

// The entering state's own part is in the saved chunk states (chunk 0's), so backward needs
// only the leaving state's gradient.
static void linoss_backward_carry(const OpShape *s, const real *const *in, const real *const *out,
                                  const real *sv, const real *const *dout, real *const *din,
                                  const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)out, (void)state_in;
    OscDims d = osc_dims(s);
    LinossCoef *coef = linoss_coefs(&d, in);
    LinossCtx x = {
        .d = d, .coef = coef, .u = in[CORE_IN_QKV], .din = din[CORE_IN_QKV], .dout = dout[0]};
    OscScan o = linoss_scan(&x);
    real *part = malloc(sizeof(real) * (size_t)d.B * 2 * d.m * d.nc * 6);
    osc_backward(&o, sv, part, dstate_out, dstate_in);
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int c = 0; c < d.C; c++)
            din[CORE_IN_QKV][tok * d.W + 2 * d.m + c] += dout[0][tok * d.W + 2 * d.m + c];
    // Per oscillator: its two lanes' partials over batch rows and chunks in a fixed order,
    // then through M's and the input coefficients' derivatives to Delta, A and the raw
    // parameters (sigmoid, relu).
    for (int p = 0; p < d.m; p++) {
        real acc[6] = {0};
        for (int b = 0; b < d.B; b++)
            for (int half = 0; half < 2; half++)
                for (int c = 0; c < d.nc; c++) {
                    const real *q = part + (((size_t)b * 2 * d.m + half * d.m + p) * d.nc + c) * 6;
                    for (int i = 0; i < 6; i++) acc[i] += q[i];
                }
        const LinossCoef *k = &coef[p];
        real g_delta = 0, g_a = 0;
        for (int i = 0; i < 4; i++)
            g_delta += acc[i] * k->dm_ddelta[i], g_a += acc[i] * k->dm_da[i];
        for (int i = 0; i < 2; i++)
            g_delta += acc[4 + i] * k->dc_ddelta[i], g_a += acc[4 + i] * k->dc_da[i];
        real a_hat = in[CORE_IN_PARAMS][p], D = lo_sigmoid(in[CORE_IN_PARAMS + 1][p]);
        din[CORE_IN_PARAMS][p] += a_hat > 0 ? g_a : 0;
        din[CORE_IN_PARAMS + 1][p] += g_delta * D * (1 - D);
    }
    free(part), free(coef);
}

static void linoss_backward(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din) {
    linoss_backward_carry(s, in, out, sv, dout, din, NULL, NULL, NULL);
}

static size_t linoss_carry_size(const OpShape *s) {
    OscDims d = osc_dims(s);
    return (size_t)d.B * 2 * d.m * 2;
}

static void linoss_carry_through(const OpShape *s, const real *const *in, real *state,
                                 int transpose) {
    OscDims d = osc_dims(s);
    LinossCoef *coef = linoss_coefs(&d, in);
    LinossCtx x = {.d = d, .coef = coef, .u = in[CORE_IN_QKV]};
    OscScan o = linoss_scan(&x);
    osc_carry_through(&o, state, transpose);
    free(coef);
}

// a_hat ~ U[0, 1] (A = relu(a_hat)) and steps ~ U[0, 1] (Delta = sigmoid(steps) in
// [0.5, 0.73]), as LinOSS draws them; neither weight-decayed.
static int linoss_params(const OpShape *s, OpParam *out) {
    OscDims d = osc_dims(s);
    out[0] = (OpParam){.name = "a_hat", .rows = d.m, .init = INIT_CUSTOM, .trainable = 1};
    out[1] = (OpParam){.name = "steps", .rows = d.m, .init = INIT_CUSTOM, .trainable = 1};
    return 2;
}

static void linoss_init(const OpShape *s, int index, uint64_t key, real *w) {
    (void)index;
    OscDims d = osc_dims(s);
    for (int p = 0; p < d.m; p++) w[p] = (real)rng_uniform(key, (uint64_t)p);
}

static void linoss_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OscDims d = osc_dims(s);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.W, in[CORE_IN_XPROJ] = 0;
    in[CORE_IN_PARAMS] = in[CORE_IN_PARAMS + 1] = (size_t)d.m;
    out[0] = NT * d.W;
    *saved = (size_t)s->B * 2 * d.m * d.nc * 2;
}

// Per token: every lane's step twice (the reduce and the rerun: 2 x 6 multiply-adds) and the
// chunk product (8 multiply-adds per step) for 2 m lanes.
static double linoss_flops(const OpShape *s) {
    OscDims d = osc_dims(s);
    return 2.0 * d.m * 2 * (6 + 6 + 8);
}

// The largest eigenvalue modulus of the oscillators' M (IM: sqrt(S) < 1; IMEX: 1 while
// Delta^2 A <= 4, above it the scheme is unstable and the figure says so).
static int linoss_aux(const OpShape *s, const real *const *in, OpAux *out) {
    OscDims d = osc_dims(s);
    double worst = 0;
    for (int p = 0; p < d.m; p++) {
        LinossCoef k;
        linoss_coef(d.form, in[CORE_IN_PARAMS][p], in[CORE_IN_PARAMS + 1][p], &k);
        double tr = (double)k.m[0] + k.m[3],
               det = (double)k.m[0] * k.m[3] - (double)k.m[1] * k.m[2];
        double disc = tr * tr / 4 - det, rho;
        if (disc < 0)
            rho = sqrt(det);  // complex pair: |lambda|^2 = det
        else
            rho = fmax(fabs(tr / 2 + sqrt(disc)), fabs(tr / 2 - sqrt(disc)));
        worst = fmax(worst, rho);
    }
    out[0] = (OpAux){.name = "spectral_radius_max", .value = worst};
    return 1;
}

#ifdef MT_DOUBLE
// The discretised ODE itself, token by token: IM solves [[1, Delta A], [-Delta, 1]] (z_t, y_t)
// = (z_{t-1} + Delta B u_t, y_{t-1}); IMEX updates z explicitly in y_{t-1}, then y
// implicitly in z_t. No M, no chunks.
static int linoss_reference(const OpShape *s, const double *const *in, double *out) {
    OscDims d = osc_dims(s);
    for (int b = 0; b < d.B; b++)
        for (int k = 0; k < 2 * d.m; k++) {
            int p = k % d.m;
            double A = fmax(in[CORE_IN_PARAMS][p], 0);
            double D = 1 / (1 + exp(-in[CORE_IN_PARAMS + 1][p]));
            double z = 0, y = 0;
            for (int t = 0; t < d.T; t++) {
                size_t at = ((size_t)b * d.T + t) * d.W;
                double bu = in[CORE_IN_QKV][at + k];
                if (d.form == LINOSS_IM) {
                    double r0 = z + D * bu, r1 = y, det = 1 + D * D * A;
                    z = (r0 - D * A * r1) / det;  // Cramer's rule on the 2 x 2 system
                    y = (r1 + D * r0) / det;
                } else {
                    z = z + D * (-A * y + bu);
                    y = y + D * z;
                }
                out[at + k] = y;
            }
        }
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int c = 0; c < d.C; c++)
            out[tok * d.W + 2 * d.m + c] = in[CORE_IN_QKV][tok * d.W + 2 * d.m + c];
    return 0;
}
#else
#define linoss_reference NULL
#endif

static const OpOption linoss_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(OscOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"oscillators", OPT_INT, "64", NULL, 1, 1 << 16, offsetof(OscOpts, oscillators), 0,
     "linoss, oscgate, oscgate_mve: oscillators per layer (LinOSS's P)"},
    {"linoss_form", OPT_ENUM, "im", "im|imex", 0, 0, offsetof(OscOpts, form), 0,
     "linoss: the discretisation, implicit (im, dissipative) or implicit-explicit (imex, "
     "conservative)"},
    {NULL}};

// Shapes: a partial last chunk, T = 1, both forms, T = 65 over chunks of 16.
// clang-format off
const F(OpDef) F(op_linoss) = {
    .name = "linoss", .n_in = CORE_IN_PARAMS + 2, .n_out = 1,
    .sizes = linoss_sizes, .forward = linoss_forward, .backward = linoss_backward,
    .params = linoss_params, .init_param = linoss_init, .aux = linoss_aux,
    .options = linoss_options, .mixer = 1,
    .carry_size = linoss_carry_size, .forward_carry = linoss_forward_carry,
    .backward_carry = linoss_backward_carry, .carry_through = linoss_carry_through,
    .help = "LinOSS: time-invariant oscillators, IM or IMEX, by a chunked parallel scan "
            "(mixers.md 16)",
    .flops = linoss_flops, .reference = linoss_reference,
    .aux_cols = {{"spectral_radius_max", AUX_MAX, "max |eig M|", 4}},
    .n_tests = 6,
    .tests = {{{.B = 2, .T = 7, .C = 4, .H = 1}, "chunk=3 oscillators=3"},
              {{.B = 2, .T = 7, .C = 4, .H = 1}, "chunk=3 oscillators=3 linoss_form=imex"},
              {{.B = 1, .T = 1, .C = 3, .H = 1}, "chunk=1 oscillators=2"},
              {{.B = 1, .T = 9, .C = 2, .H = 1}, "chunk=64 oscillators=4 linoss_form=imex"},
              {{.B = 1, .T = 65, .C = 4, .H = 1}, "chunk=16 oscillators=3"},
              {{.B = 2, .T = 65, .C = 4, .H = 1}, "chunk=16 oscillators=2 linoss_form=imex"}}};
// clang-format on
