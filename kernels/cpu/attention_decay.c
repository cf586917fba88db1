// Data-dependent scalar-decay linear attention: the state-space core of Mamba-2 (SSD, mixers.md
// section 9) with q, k, v in the roles of C, B, x. Per head h (head dim D), per token t:
//   Delta_t = softplus(x_t W_x[h] + dt_bias_h),   log a_t = -Delta_t exp(a_log_h)
//   S_t     = a_t S_{t-1} + k_t (Delta_t v_t)^T   (S [D, D], key-major)
//   o_t     = S_t^T q_t
// i.e. o = (L (.) Q K^T) (Delta (.) V) with L[t, s] = prod_{r=s+1..t} a_r: linear attention
// whose past decays by a per-token, per-head factor in (0, 1). Unnormalised, as Mamba-2 (the
// skip D x_t and the output gate are the mixer layer's model.gate).
// The CPU form is the recurrence (4 D^2 per token and head, the same as the chunked products at
// these sizes); forward saves the state every mixer.chunk tokens, and backward recomputes each
// chunk's states from there before its reverse sweep, so memory is O(T D^2 / chunk).
#include "../attention_decay.h"

#include <stdlib.h>
#include <string.h>

#include "../mamba_init.h"
#include "../ops.h"
#include "../real.h"
#include "../rng.h"
#include "linear_core.h"

static int n_chunks(const OpShape *s) {
    int L = OPT_OF(DecayOpts, s).chunk;
    return (s->T + L - 1) / L;
}

// in: qkv [B,T,3C], xproj [B,T,H] (the per-token dt pre-activations), a_log [H], dt_bias [H].
// Context parallelism: the recurrence starts from state_in [B, H, D, D] (NULL: zero) and
// leaves its last state in state_out (NULL: not wanted).
static void decay_forward_carry(const OpShape *s, const real *const *in, real *const *out, real *sv,
                                const real *state_in, real *state_out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = OPT_OF(DecayOpts, s).chunk;
    int nc = n_chunks(s);
    const real *qkv = in[CORE_IN_QKV], *xp = in[CORE_IN_XPROJ];
    const real *a_log = in[CORE_IN_PARAMS], *dt_bias = in[CORE_IN_PARAMS + 1];
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        real *S = sv + (size_t)bh * nc * D * D;  // chunk c's entering state at S + c D^2
        real *cur = malloc(sizeof(real) * D * D);
        if (state_in)
            memcpy(cur, state_in + (size_t)bh * D * D, sizeof(real) * D * D);
        else
            memset(cur, 0, sizeof(real) * D * D);
        real A = exp(a_log[h]);
        for (int t = 0; t < T; t++) {
            if (t % L == 0) memcpy(S + (size_t)(t / L) * D * D, cur, sizeof(real) * D * D);
            const real *q = qkv + ((size_t)b * T + t) * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
            real delta = mamba_softplus(xp[((size_t)b * T + t) * H + h] + dt_bias[h]);
            real a = exp(-delta * A);
            for (int i = 0; i < D; i++)
                for (int j = 0; j < D; j++)
                    cur[i * D + j] = a * cur[i * D + j] + k[i] * delta * v[j];
            real *o = out[0] + ((size_t)b * T + t) * C + h * D;
            for (int j = 0; j < D; j++) {
                real acc = 0;
                for (int i = 0; i < D; i++) acc += cur[i * D + j] * q[i];
                o[j] = acc;
            }
        }
        if (state_out) memcpy(state_out + (size_t)bh * D * D, cur, sizeof(real) * D * D);
        free(cur);
    }
}
static void decay_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    decay_forward_carry(s, in, out, sv, NULL, NULL);
}

// Reverse sweep: dS collects q_t do_t^T, then S_t = a_t S_{t-1} + k_t u_t^T (u = Delta v) gives
// dk = dS u, du = dS^T k, da = <dS, S_{t-1}>, and dS_{t-1} = a_t dS. The parameters' gradients
// are summed per (batch, head) and then over the batch in a fixed order (bitwise reproducible
// for any thread count).
// The leaving state's gradient (dstate_out) seeds dS; what dS holds after the first token is
// the entering state's gradient (added to dstate_in). The saved chunk states include the
// entering state, so the recomputation needs nothing else.
static void decay_backward_carry(const OpShape *s, const real *const *in, const real *const *out,
                                 const real *sv, const real *const *dout, real *const *din,
                                 const real *state_in, const real *dstate_out, real *dstate_in) {
    (void)out, (void)state_in;
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = OPT_OF(DecayOpts, s).chunk;
    int nc = n_chunks(s);
    const real *qkv = in[CORE_IN_QKV], *xp = in[CORE_IN_XPROJ];
    const real *a_log = in[CORE_IN_PARAMS], *dt_bias = in[CORE_IN_PARAMS + 1];
    real *dqkv = din[CORE_IN_QKV], *dxp = din[CORE_IN_XPROJ];
    real *part = calloc((size_t)2 * B * H, sizeof(real));  // per bh: d a_log, d dt_bias
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        real A = exp(a_log[h]);
        real *states = malloc(sizeof(real) * (size_t)(L + 1) * D * D);  // S before, then each t
        real *dS = calloc((size_t)D * D, sizeof(real)), *du = malloc(sizeof(real) * D);
        if (dstate_out) memcpy(dS, dstate_out + (size_t)bh * D * D, sizeof(real) * D * D);
        real *delta = malloc(sizeof(real) * L), *a = malloc(sizeof(real) * L);
        real *z = malloc(sizeof(real) * L);
        for (int c = nc - 1; c >= 0; c--) {
            int t0 = c * L, len = T - t0 < L ? T - t0 : L;
            memcpy(states, sv + ((size_t)bh * nc + c) * D * D, sizeof(real) * D * D);
            for (int r = 0; r < len; r++) {
                int t = t0 + r;
                const real *k = qkv + ((size_t)b * T + t) * 3 * C + C + h * D, *v = k + C;
                z[r] = xp[((size_t)b * T + t) * H + h] + dt_bias[h];
                delta[r] = mamba_softplus(z[r]), a[r] = exp(-delta[r] * A);
                const real *prev = states + (size_t)r * D * D;
                real *next = states + (size_t)(r + 1) * D * D;
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++)
                        next[i * D + j] = a[r] * prev[i * D + j] + k[i] * delta[r] * v[j];
            }
            for (int r = len - 1; r >= 0; r--) {
                int t = t0 + r;
                size_t row = ((size_t)b * T + t) * 3 * C + h * D;
                const real *q = qkv + row, *k = q + C, *v = q + 2 * C;
                const real *g = dout[0] + ((size_t)b * T + t) * C + h * D;
                real *dq = dqkv + row, *dk = dq + C, *dv = dq + 2 * C;
                const real *St = states + (size_t)(r + 1) * D * D, *Sp = states + (size_t)r * D * D;
                real da = 0, ddelta = 0;
                for (int i = 0; i < D; i++) {
                    real acc = 0;
                    for (int j = 0; j < D; j++) {
                        acc += St[i * D + j] * g[j];
                        dS[i * D + j] += q[i] * g[j];
                    }
                    dq[i] += acc;
                }
                for (int j = 0; j < D; j++) du[j] = 0;
                for (int i = 0; i < D; i++) {
                    real acc = 0;
                    for (int j = 0; j < D; j++) {
                        real d = dS[i * D + j];
                        acc += d * delta[r] * v[j];
                        du[j] += d * k[i];
                        da += d * Sp[i * D + j];
                        dS[i * D + j] = a[r] * d;
                    }
                    dk[i] += acc;
                }
                for (int j = 0; j < D; j++) dv[j] += delta[r] * du[j], ddelta += du[j] * v[j];
                real dlog_a = da * a[r];  // a = exp(-Delta A)
                ddelta += -A * dlog_a;
                real dz = ddelta / (1 + exp(-z[r]));  // softplus' = sigmoid
                dxp[((size_t)b * T + t) * H + h] += dz;
                part[2 * bh] += -delta[r] * dlog_a * A;  // d/d a_log through A = exp(a_log)
                part[2 * bh + 1] += dz;
            }
        }
        if (dstate_in)
            for (size_t i = 0; i < (size_t)D * D; i++) dstate_in[(size_t)bh * D * D + i] += dS[i];
        free(states), free(dS), free(du), free(delta), free(a), free(z);
    }
    for (int h = 0; h < H; h++)
        for (int b = 0; b < B; b++)
            din[CORE_IN_PARAMS][h] += part[2 * (b * H + h)],
                din[CORE_IN_PARAMS + 1][h] += part[2 * (b * H + h) + 1];
    free(part);
}

static void decay_backward(const OpShape *s, const real *const *in, const real *const *out,
                           const real *sv, const real *const *dout, real *const *din) {
    decay_backward_carry(s, in, out, sv, dout, din, NULL, NULL, NULL);
}

static size_t decay_carry_size(const OpShape *s) {
    return (size_t)s->B * s->H * (s->C / s->H) * (s->C / s->H);
}

// A slice's transition is the scalar prod_t a_t = exp(-exp(a_log) sum_t Delta_t) per (batch,
// head): its own transpose.
static void decay_carry_through(const OpShape *s, const real *const *in, real *state,
                                int transpose) {
    (void)transpose;
    int T = s->T, H = s->H, D = s->C / s->H;
    for (int bh = 0; bh < s->B * H; bh++) {
        int b = bh / H, h = bh % H;
        real sum = 0;
        for (int t = 0; t < T; t++)
            sum += mamba_softplus(in[CORE_IN_XPROJ][((size_t)b * T + t) * H + h] +
                                  in[CORE_IN_PARAMS + 1][h]);
        real a = exp(-sum * exp(in[CORE_IN_PARAMS][h]));
        for (size_t i = 0; i < (size_t)D * D; i++) state[(size_t)bh * D * D + i] *= a;
    }
}

// Mamba-2's A and dt initialisation (kernels/mamba_init.h).
static int decay_params(const OpShape *s, OpParam *out) {
    return mamba_decay_params(s, "a_log", out);
}
static void decay_init(const OpShape *s, int index, uint64_t key, real *w) {
    DecayOpts o = OPT_OF(DecayOpts, s);
    mamba_decay_init(s, &o.init, index, key, w);
}

static void decay_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, (size_t)s->H, p, decay_params(s, p));
    *saved = (size_t)s->B * s->H * n_chunks(s) * (s->C / s->H) * (s->C / s->H);
}

// The CUDA kernel keeps a head's D x D state and its reductions in one block's shared memory.
static int decay_check(const OpShape *s, char *err, size_t errlen) {
    DecayOpts o = OPT_OF(DecayOpts, s);
    if (mamba_init_check(&o.init, err, errlen)) return -1;
    if (s->C / s->H > 128) {
        snprintf(err, errlen,
                 "decay needs a head dim (model.d_model / model.n_heads) <= 128, got %d",
                 s->C / s->H);
        return -1;
    }
    return 0;
}

// Per token and head: the state update (2 D^2), the readout (2 D^2), the decay and input scale.
static double decay_flops(const OpShape *s) {
    double D = (double)s->C / s->H;
    return s->H * (4 * D * D + 2 * D + 8);
}

// The mean decay factor a_t over tokens and heads on these inputs: how much of the state each
// step keeps (near 1: long memory; near 0: the mixer looks at the current token only); and the
// effective rank of the final state S_T = sum_s (a_{s+1} ... a_T) Delta_s k_s v_s^T per
// (batch, head), averaged.
static int decay_aux(const OpShape *s, const real *const *in, OpAux *out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    double sum = 0, erank = 0;
    double *S = malloc(sizeof(double) * D * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * D * D);
            for (int t = 0; t < T; t++) {
                size_t i = ((size_t)b * T + t) * H + h;
                double delta = mamba_softplus(in[CORE_IN_XPROJ][i] + in[CORE_IN_PARAMS + 1][h]);
                double a = exp(-delta * exp(in[CORE_IN_PARAMS][h]));
                const real *k = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + C + h * D;
                sum += a;
                for (int r = 0; r < D; r++)
                    for (int j = 0; j < D; j++)
                        S[r * D + j] = a * S[r * D + j] + delta * k[r] * k[C + j];
            }
            erank += F(state_effective_rank)(S, D, D) / (B * H);
        }
    free(S);
    out[0] = (OpAux){.name = "decay_mean", .value = sum / ((double)B * T * H)};
    out[1] = (OpAux){.name = "state_erank", .value = erank};
    return 2;
}

#ifdef MT_DOUBLE
// The parallel form: o_t = sum_{s<=t} L[t,s] (q_t . k_s) Delta_s v_s, with L[t,s] the product
// of the decays a_{s+1..t} taken as exp of their summed logs, term by term.
static int decay_reference(const OpShape *s, const double *const *in, double *out) {
    int T = s->T, C = s->C, H = s->H, D = C / H;
    double *logc = malloc(sizeof(double) * T), *delta = malloc(sizeof(double) * T);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            for (int t = 0; t < T; t++) {
                double zt =
                    in[CORE_IN_XPROJ][((size_t)b * T + t) * H + h] + in[CORE_IN_PARAMS + 1][h];
                delta[t] = log1p(exp(zt));
                logc[t] = -delta[t] * exp(in[CORE_IN_PARAMS][h]);  // log a_t
            }
            for (int t = 0; t < T; t++) {
                const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                double *o = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) o[j] = 0;
                for (int u = 0; u <= t; u++) {
                    const double *k = in[CORE_IN_QKV] + ((size_t)b * T + u) * 3 * C + C + h * D;
                    double seg = 0, dot = 0;
                    for (int r = u + 1; r <= t; r++) seg += logc[r];
                    for (int i = 0; i < D; i++) dot += q[i] * k[i];
                    for (int j = 0; j < D; j++) o[j] += exp(seg) * dot * delta[u] * k[C + j];
                }
            }
        }
    free(logc), free(delta);
    return 0;
}
#else
#define decay_reference NULL
#endif

static const OpOption decay_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(DecayOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    MAMBA_INIT_OPTIONS(DecayOpts),
    {NULL}};

// T = 7 with chunk 3 recomputes a partial last chunk; T < chunk a single one.
// clang-format off
const F(OpDef) F(op_decay) = {
    .name = "decay", .n_in = CORE_IN_PARAMS + 2, .n_out = 1,
    .sizes = decay_sizes, .forward = decay_forward, .backward = decay_backward,
    .params = decay_params, .init_param = decay_init, .check = decay_check, .aux = decay_aux,
    .options = decay_options, .mixer = 1,
    .help = "data-dependent scalar-decay linear attention (the Mamba-2 SSD core, mixers.md 9)",
    .flops = decay_flops, .reference = decay_reference,
    .carry_size = decay_carry_size, .forward_carry = decay_forward_carry,
    .backward_carry = decay_backward_carry, .carry_through = decay_carry_through,
    .aux_cols = {{"decay_mean", AUX_MEAN, "mean decay a_t", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 4,
    .tests = {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3"},
              {{.B = 1, .T = 5, .C = 6, .H = 1}, "chunk=64"},
              {{.B = 1, .T = 1, .C = 4, .H = 2}, "chunk=1"},
              {{.B = 2, .T = 65, .C = 12, .H = 3}, "chunk=16"}}};
// clang-format on
