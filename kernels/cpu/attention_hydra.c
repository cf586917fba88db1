// Hydra attention (Bolya et al. 2022; mixers.md section 13): as many heads as channels, each of
// width 1, with the cosine kernel. Per sequence:
//   qh_t = q_t / max(|q_t|, eps), kh_t likewise (norms over all C channels),
//   kv_t = sum_{s<=t} kh_s (.) v_s,   o_t = qh_t (.) kv_t * c_t,
// a running sum over t per channel (no chunking needed: the state is one C-vector). The
// cosine kernel can be negative, so kv_t cannot be divided by its own sum; c_t = 1/(t+1)
// (mixer.hydra_norm = count, the default) keeps |o_t| bounded as t grows, c_t = 1 (none) is the
// paper's unnormalised sum [project-defined]. mixer.causal = false is the paper's own
// (non-causal) form: one kv = sum over all s < T for every t, c_t = 1/T under count.
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

// t counts from the call's start; its position in the sequence is pos0 + t (a slice under
// context parallelism).
static real count_scale(const OpShape *s, int t) {
    const HydraOpts yo = OPT_OF(HydraOpts, s);
    return (real)hydra_count_scale(yo.hydra_norm, yo.causal, s->pos0 + t, s->T);
}

// kv [C] += kh_t (.) v_t for the rows t of [t0, t1) of sequence b.
static void add_kv(real *kv, const real *qkv_btc3, int b, int T, int C, int t0, int t1) {
    for (int t = t0; t < t1; t++) {
        const real *k = qkv_btc3 + ((size_t)b * T + t) * 3 * C + C, *v = k + C;
        real ik = inv_norm(k, C);
        for (int i = 0; i < C; i++) kv[i] += k[i] * ik * v[i];
    }
}

// Context parallelism (causal): the running sums kv [B, C] enter (state_in, NULL = zero) and
// leave (state_out, may be NULL) the call; the transition is the identity.
static void hydra_forward_carry(real *out_btc, const real *qkv_btc3, const OpShape *s,
                                const real *state_in, real *state_out) {
    int B = s->B, T = s->T, C = s->C, causal = OPT_OF(HydraOpts, s).causal;
#pragma omp parallel
    {
        real *kv = malloc(sizeof(real) * C);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            if (state_in)
                memcpy(kv, state_in + (size_t)b * C, sizeof(real) * C);
            else
                memset(kv, 0, sizeof(real) * C);
            if (!causal) add_kv(kv, qkv_btc3, b, T, C, 0, T);
            for (int t = 0; t < T; t++) {
                const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C;
                real *o = out_btc + ((size_t)b * T + t) * C;
                real iq = inv_norm(q, C) * count_scale(s, t);
                if (causal) add_kv(kv, qkv_btc3, b, T, C, t, t + 1);
                for (int i = 0; i < C; i++) o[i] = q[i] * iq * kv[i];
            }
            if (state_out) memcpy(state_out + (size_t)b * C, kv, sizeof(real) * C);
        }
        free(kv);
    }
}

void F(attention_hydra_forward)(real *out_btc, const real *qkv_btc3, const OpShape *s) {
    hydra_forward_carry(out_btc, qkv_btc3, s, NULL, NULL);
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

// G [C] += do_t (.) qh_t c_t for the rows t of [t0, t1) of sequence b.
static void add_g(real *g_acc, const real *dout_btc, const real *qkv_btc3, const OpShape *s, int b,
                  int t0, int t1) {
    int T = s->T, C = s->C;
    for (int t = t0; t < t1; t++) {
        const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C;
        const real *g = dout_btc + ((size_t)b * T + t) * C;
        real iq = inv_norm(q, C) * count_scale(s, t);
        for (int i = 0; i < C; i++) g_acc[i] += g[i] * q[i] * iq;
    }
}

// dqh_t = do_t (.) kv_t c_t; G_s = sum_{t>=s} do_t (.) qh_t c_t (reverse running sum; the sum
// over every t when not causal); dkh_s = G_s (.) v_s, dv_s = G_s (.) kh_s.
// With a carry: kv starts from state_in; the leaving sums' gradient dstate_out joins G_s at
// every s (kv_T sums every term), and G_0 is the entering sums' gradient (added to dstate_in).
static void hydra_backward_carry(real *dqkv_btc3, const real *dout_btc, const real *qkv_btc3,
                                 const OpShape *s, const real *state_in, const real *dstate_out,
                                 real *dstate_in) {
    int B = s->B, T = s->T, C = s->C, causal = OPT_OF(HydraOpts, s).causal;
#pragma omp parallel
    {
        real *acc = malloc(sizeof(real) * C), *dh = malloc(sizeof(real) * C);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            if (state_in)  // kv_t, forward in time
                memcpy(acc, state_in + (size_t)b * C, sizeof(real) * C);
            else
                memset(acc, 0, sizeof(real) * C);
            if (!causal) add_kv(acc, qkv_btc3, b, T, C, 0, T);
            for (int t = 0; t < T; t++) {
                const real *q = qkv_btc3 + ((size_t)b * T + t) * 3 * C;
                const real *g = dout_btc + ((size_t)b * T + t) * C;
                real c = count_scale(s, t);
                if (causal) add_kv(acc, qkv_btc3, b, T, C, t, t + 1);
                for (int i = 0; i < C; i++) dh[i] = g[i] * acc[i] * c;
                add_norm_grad(dqkv_btc3 + ((size_t)b * T + t) * 3 * C, dh, q, C);
            }
            if (dstate_out)  // G_s, reverse in time
                memcpy(acc, dstate_out + (size_t)b * C, sizeof(real) * C);
            else
                memset(acc, 0, sizeof(real) * C);
            if (!causal) add_g(acc, dout_btc, qkv_btc3, s, b, 0, T);
            for (int t = T - 1; t >= 0; t--) {
                const real *k = qkv_btc3 + ((size_t)b * T + t) * 3 * C + C, *v = k + C;
                real *dk = dqkv_btc3 + ((size_t)b * T + t) * 3 * C + C, *dv = dk + C;
                real ik = inv_norm(k, C);
                if (causal) add_g(acc, dout_btc, qkv_btc3, s, b, t, t + 1);
                for (int i = 0; i < C; i++) {
                    dh[i] = acc[i] * v[i];
                    dv[i] += acc[i] * k[i] * ik;
                }
                add_norm_grad(dk, dh, k, C);
            }
            if (dstate_in)
                for (int i = 0; i < C; i++) dstate_in[(size_t)b * C + i] += acc[i];
        }
        free(acc), free(dh);
    }
}

void F(attention_hydra_backward)(real *dqkv_btc3, const real *dout_btc, const real *qkv_btc3,
                                 const OpShape *s) {
    hydra_backward_carry(dqkv_btc3, dout_btc, qkv_btc3, s, NULL, NULL, NULL);
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
static size_t hydra_carry_size(const OpShape *s) {
    return (size_t)s->B * s->C;
}
static void hydra_fwd_carry(const OpShape *s, const real *const *in, real *const *out, real *sv,
                            const real *state_in, real *state_out) {
    (void)sv;
    hydra_forward_carry(out[0], in[CORE_IN_QKV], s, state_in, state_out);
}
static void hydra_bwd_carry(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din,
                            const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)out, (void)sv;
    hydra_backward_carry(din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], s, state_in, dstate_out,
                         dstate_in);
}

// Per token: the two norms (2 C each), the state update and the readout (2 C each), causal or
// not (the non-causal form sums the same T terms once).
static double hydra_flops(const OpShape *s) {
    return 8.0 * s->C;
}

#ifdef MT_DOUBLE
// o_t = qh_t (.) sum_{u in U_t} kh_u (.) v_u * c_t, the sum recomputed for every t; U_t =
// {u <= t} and c_t = 1/(t+1) (causal), or U_t = {u < T} and c_t = 1/T; c_t = 1 under none.
static int hydra_reference(const OpShape *s, const double *const *in, double *out) {
    int C = s->C, T = s->T, count = OPT_OF(HydraOpts, s).hydra_norm == HYDRA_NORM_COUNT;
    int causal = OPT_OF(HydraOpts, s).causal;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < T; t++) {
            const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C;
            double nq = 0;
            for (int i = 0; i < C; i++) nq += q[i] * q[i];
            for (int i = 0; i < C; i++) {
                double acc = 0;
                for (int u = 0; u <= (causal ? t : T - 1); u++) {
                    const double *k = in[CORE_IN_QKV] + ((size_t)b * T + u) * 3 * C + C;
                    double nk = 0;
                    for (int j = 0; j < C; j++) nk += k[j] * k[j];
                    acc += k[i] / sqrt(nk) * k[C + i];
                }
                out[((size_t)b * T + t) * C + i] =
                    q[i] / sqrt(nq) * acc * (count ? 1.0 / (causal ? t + 1 : T) : 1);
            }
        }
    return 0;
}
#else
#define hydra_reference NULL
#endif

static const OpOption hydra_options[] = {
    {"hydra_norm", OPT_ENUM, "count", "count|none", 0, 0, offsetof(HydraOpts, hydra_norm), 0,
     "hydra: divide the sum at t by its term count, t+1 or T (count), or not (none)"},
    MIXER_CAUSAL_OPTION(offsetof(HydraOpts, causal)),
    {NULL}};

// The state's effective rank: kv_T = sum_t kh_t (.) v_t is a diagonal C x C state, whose
// singular values are |kv_i|: exp of the entropy of |kv_i| / sum_j |kv_j|, per sequence
// averaged (1: one channel carries it, C: every channel alike).
static int hydra_aux(const OpShape *s, const real *const *in, OpAux *out) {
    int B = s->B, T = s->T, C = s->C;
    real *kv = malloc(sizeof(real) * C);
    double sum = 0;
    for (int b = 0; b < B; b++) {
        memset(kv, 0, sizeof(real) * C);
        add_kv(kv, in[0], b, T, C, 0, T);
        double total = 0, h = 0;
        for (int i = 0; i < C; i++) total += fabs(kv[i]);
        for (int i = 0; i < C && total > 0; i++) {
            double p = fabs(kv[i]) / total;
            if (p > 0) h -= p * log(p);
        }
        sum += total > 0 ? exp(h) : 0;
    }
    free(kv);
    out[0] = (OpAux){.name = "state_erank", .value = sum / B};
    return 1;
}

// clang-format off
const F(OpDef) F(op_hydra) = {
    .name = "hydra", .n_in = 1, .n_out = 1,
    .sizes = hydra_sizes, .forward = hydra_fwd, .backward = hydra_bwd, .options = hydra_options,
    .mixer = 1,
    .help = "Hydra attention: heads = channels, cosine kernel (mixer.hydra_norm, mixer.causal)",
    .flops = hydra_flops, .reference = hydra_reference, .aux = hydra_aux,
    .aux_cols = {{"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .carry_size = hydra_carry_size, .forward_carry = hydra_fwd_carry,
    .backward_carry = hydra_bwd_carry,
    .n_tests = 8,
    .tests = {{{.B = 2, .T = 6, .C = 8}, "hydra_norm=count"},
              {{.B = 1, .T = 5, .C = 6}, "hydra_norm=none"},
              {{.B = 2, .T = 65, .C = 12, .H = 3}, "hydra_norm=count"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "hydra_norm=none"},
              {{.B = 2, .T = 6, .C = 8}, "hydra_norm=count causal=false"},
              {{.B = 1, .T = 5, .C = 6}, "hydra_norm=none causal=false"},
              {{.B = 2, .T = 65, .C = 12, .H = 3}, "causal=false"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "causal=false"}}};
// clang-format on
