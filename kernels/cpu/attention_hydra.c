// Causal Hydra attention (Bolya et al. 2022; mixers.md section 13): as many heads as
// channels, each of width 1, with the cosine kernel. Per sequence:
//   qh_t = q_t / max(|q_t|, eps), kh_t likewise (norms over all C channels),
//   kv_t = sum_{s<=t} kh_s (.) v_s,   o_t = qh_t (.) kv_t * c_t,
// a running sum over t per channel (no chunking needed: the state is one C-vector). The
// cosine kernel can be negative, so kv_t cannot be divided by its own sum; c_t = 1/(t+1)
// (mixer.hydra_norm = count, the default) keeps |o_t| bounded as t grows, c_t = 1 (none) is the
// paper's unnormalised sum [project-defined].
#include "../attention_hydra.h"

#include <stdlib.h>
#include <string.h>

#include "../real.h"

#define HYDRA_EPS 1e-6  // as torch.nn.functional.normalize: an all-zero row stays finite

static real inv_norm(const real *x, int C) {
    real n2 = 0;
    for (int i = 0; i < C; i++) n2 += x[i] * x[i];
    return 1 / fmax(sqrt(n2), (real)HYDRA_EPS);
}

static real count_scale(const OpShape *s, int t) {
    const HydraOpts yo = OPT_OF(HydraOpts, s);
    return yo.hydra_norm == HYDRA_NORM_COUNT ? (real)1 / (t + 1) : 1;
}

void F(attention_hydra_forward)(real *out_btc, const real *qkv_btc3, const OpShape *s) {
    int B = s->B, T = s->T, C = s->C;
#pragma omp parallel
    {
        real *kv = malloc(sizeof(real) * C);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            memset(kv, 0, sizeof(real) * C);
            for (int t = 0; t < T; t++) {
                const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C, *k = q + C, *v = q + 2 * C;
                real *o = out_btc + ((size_t)b * T + t) * C;
                real iq = inv_norm(q, C) * count_scale(s, t), ik = inv_norm(k, C);
                for (int i = 0; i < C; i++) {
                    kv[i] += k[i] * ik * v[i];
                    o[i] = q[i] * iq * kv[i];
                }
            }
        }
        free(kv);
    }
}

// Through u / |u|: du = (duh - (duh . uh) uh) / |u| (just duh / eps below eps).
static void add_norm_grad(real *du, const real *duh, const real *u, int C) {
    real n2 = 0, dot = 0;
    for (int i = 0; i < C; i++) n2 += u[i] * u[i];
    real n = sqrt(n2);
    if (n <= (real)HYDRA_EPS) {
        for (int i = 0; i < C; i++) du[i] += duh[i] / (real)HYDRA_EPS;
        return;
    }
    for (int i = 0; i < C; i++) dot += duh[i] * u[i] / n;
    for (int i = 0; i < C; i++) du[i] += (duh[i] - dot * u[i] / n) / n;
}

// dqh_t = do_t (.) kv_t c_t; G_s = sum_{t>=s} do_t (.) qh_t c_t (reverse running sum);
// dkh_s = G_s (.) v_s, dv_s = G_s (.) kh_s.
void F(attention_hydra_backward)(real *dqkv_btc3, const real *dout_btc, const real *qkv_btc3,
                                 const OpShape *s) {
    int B = s->B, T = s->T, C = s->C;
#pragma omp parallel
    {
        real *acc = malloc(sizeof(real) * C), *dh = malloc(sizeof(real) * C);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            memset(acc, 0, sizeof(real) * C);  // kv_t, forward in time
            for (int t = 0; t < T; t++) {
                const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C, *k = q + C, *v = q + 2 * C;
                const real *g = dout_btc + ((size_t)b * T + t) * C;
                real ik = inv_norm(k, C), c = count_scale(s, t);
                for (int i = 0; i < C; i++) {
                    acc[i] += k[i] * ik * v[i];
                    dh[i] = g[i] * acc[i] * c;
                }
                add_norm_grad(dqkv_btc3 + ((size_t)b * T + t) * 3 * C, dh, q, C);
            }
            memset(acc, 0, sizeof(real) * C);  // G_s, reverse in time
            for (int t = T - 1; t >= 0; t--) {
                const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C, *k = q + C, *v = q + 2 * C;
                const real *g = dout_btc + ((size_t)b * T + t) * C;
                real *dq = dqkv_btc3 + ((size_t)b * T + t) * 3 * C, *dv = dq + 2 * C;
                real iq = inv_norm(q, C) * count_scale(s, t), ik = inv_norm(k, C);
                for (int i = 0; i < C; i++) {
                    acc[i] += g[i] * q[i] * iq;
                    dh[i] = acc[i] * v[i];
                    dv[i] += acc[i] * k[i] * ik;
                }
                add_norm_grad(dq + C, dh, k, C);
            }
        }
        free(acc), free(dh);
    }
}

// ---- the row -----------------------------------------------------------------------------------

static void hydra_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    op_core_sizes(s, in, out, 0, NULL, 0);
    *saved = 0;
}
static void hydra_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(attention_hydra_forward)(out[0], in[CORE_IN_QKV], s);
}
static void hydra_bwd(const OpShape *s, const real *const *in, const real *const *out,
                      const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(attention_hydra_backward)(din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], s);
}

// Per token: the two norms (2 C each), the state update and the readout (2 C each).
static double hydra_flops(const OpShape *s) {
    return 8.0 * s->C;
}

#ifdef MT_DOUBLE
// o_t = qh_t (.) sum_{u<=t} kh_u (.) v_u * c_t, the sum recomputed for every t.
static int hydra_reference(const OpShape *s, const double *const *in, double *out) {
    int C = s->C, T = s->T, count = OPT_OF(HydraOpts, s).hydra_norm == HYDRA_NORM_COUNT;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < T; t++) {
            const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C;
            double nq = 0;
            for (int i = 0; i < C; i++) nq += q[i] * q[i];
            for (int i = 0; i < C; i++) {
                double acc = 0;
                for (int u = 0; u <= t; u++) {
                    const double *k = in[CORE_IN_QKV] + ((size_t)b * T + u) * 3 * C + C;
                    double nk = 0;
                    for (int j = 0; j < C; j++) nk += k[j] * k[j];
                    acc += k[i] / sqrt(nk) * k[C + i];
                }
                out[((size_t)b * T + t) * C + i] =
                    q[i] / sqrt(nq) * acc * (count ? 1.0 / (t + 1) : 1);
            }
        }
    return 0;
}
#else
#define hydra_reference NULL
#endif

static const OpOption hydra_options[] = {
    {"hydra_norm", OPT_ENUM, "count", "count|none", 0, 0, offsetof(HydraOpts, hydra_norm), 0,
     "hydra: divide the causal sum at t by t+1 (count) or not (none)"},
    {NULL}};

// clang-format off
const F(OpDef) F(op_hydra) = {
    .name = "hydra", .n_in = 1, .n_out = 1,
    .sizes = hydra_sizes, .forward = hydra_fwd, .backward = hydra_bwd, .options = hydra_options,
    .mixer = 1, .help = "causal Hydra attention: heads = channels, cosine kernel (mixer.hydra_norm)",
    .flops = hydra_flops, .reference = hydra_reference,
    .n_tests = 4,
    .tests = {{{.B = 2, .T = 6, .C = 8}, "hydra_norm=count"},
              {{.B = 1, .T = 5, .C = 6}, "hydra_norm=none"},
              {{.B = 2, .T = 65, .C = 12, .H = 3}, "hydra_norm=count"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "hydra_norm=none"}}};
// clang-format on
