// Linear attention of any feature map (mixers.md sections 0, 2-5), causal or bidirectional
// (mixer.causal). Per (batch, head):
//   P = phi(Q), Fk = phi(K) [T, m], V' = [V | 1] when normalised (the ones column carries the
//   normaliser z through the same products), N' = causal linear attention (P, Fk, V') in
//   chunkwise form, or P (Fk^T V') when bidirectional, o = N'[:, :D] / (N'[:, D] + eps).
// Only the normaliser is saved; features and chunk states are recomputed (cheap next to the
// GEMMs, and it keeps memory at O(T D) instead of O(T D^2 / chunk)).
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

// V' of head h of one sequence: [T, Dv] with the ones column when Dv > D.
static void load_values(real *v, const real *qkv_head, int T, int C, int D, int Dv) {
    for (int t = 0; t < T; t++) {
        memcpy(v + (size_t)t * Dv, qkv_head + (size_t)t * 3 * C + 2 * C, sizeof(real) * D);
        if (Dv > D) v[(size_t)t * Dv + D] = 1;
    }
}

void F(attention_linear_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                                 const real *const *fmap_params, const OpShape *shape) {
    const LinearOpts lo = OPT_OF(LinearOpts, shape);
    const int causal = OPT_OF(LinearRowOpts, shape).causal;
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int m = F(fmap_width)(shape), Dv = lo.normalize ? D + 1 : D;
    F(FeatureMap) fm = F(fmap_open)(shape, fmap_params);
#pragma omp parallel
    {
        real *p = malloc(sizeof(real) * (size_t)T * m), *f = malloc(sizeof(real) * (size_t)T * m);
        real *v = malloc(sizeof(real) * (size_t)T * Dv);
        real *num = malloc(sizeof(real) * (size_t)T * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            const real *head = qkv_btc3 + (size_t)b * T * 3 * C + h * D;
            F(fmap_forward)(&fm, T, head, 3 * C, p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, f);
            load_values(v, head, T, C, D, Dv);
            if (causal)
                F(la_forward)(T, m, Dv, lo.chunk, p, m, f, m, v, Dv, num, Dv);
            else
                F(la_full_forward)(T, m, Dv, p, m, f, m, v, Dv, num, Dv);
            for (int t = 0; t < T; t++) {
                real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                const real *nr = num + (size_t)t * Dv;
                real den = lo.normalize ? nr[D] + (real)lo.eps : 1;
                if (lo.normalize) den_bht[(size_t)bh * T + t] = den;
                for (int j = 0; j < D; j++) o[j] = nr[j] / den;
            }
        }
        free(p), free(f), free(v), free(num);
    }
    F(fmap_close)(&fm);
}

void F(attention_linear_backward)(real *dqkv_btc3, real *const *dfmap_params, const real *dout_btc,
                                  const real *out_btc, const real *den_bht, const real *qkv_btc3,
                                  const real *const *fmap_params, const OpShape *shape) {
    const LinearOpts lo = OPT_OF(LinearOpts, shape);
    const int causal = OPT_OF(LinearRowOpts, shape).causal;
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int m = F(fmap_width)(shape), Dv = lo.normalize ? D + 1 : D;
    F(FeatureMap) fm = F(fmap_open)(shape, fmap_params);
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
#pragma omp parallel
    {
        real *p = malloc(sizeof(real) * (size_t)T * m), *f = malloc(sizeof(real) * (size_t)T * m);
        real *v = malloc(sizeof(real) * (size_t)T * Dv),
             *dn = malloc(sizeof(real) * (size_t)T * Dv);
        real *dp = malloc(sizeof(real) * (size_t)T * m), *df = malloc(sizeof(real) * (size_t)T * m);
        real *dv = malloc(sizeof(real) * (size_t)T * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * 3 * C + h * D;
            const real *head = qkv_btc3 + off;
            F(fmap_forward)(&fm, T, head, 3 * C, p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, f);
            load_values(v, head, T, C, D, Dv);
            // o = n / den gives dn = do / den and dden = -(do . o) / den.
            for (int t = 0; t < T; t++) {
                const real *g = dout_btc + ((size_t)b * T + t) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                real *dnr = dn + (size_t)t * Dv;
                real den = lo.normalize ? den_bht[(size_t)bh * T + t] : 1, dot = 0;
                for (int j = 0; j < D; j++) dnr[j] = g[j] / den, dot += g[j] * o[j];
                if (lo.normalize) dnr[D] = -dot / den;
            }
            memset(dp, 0, sizeof(real) * (size_t)T * m);
            memset(df, 0, sizeof(real) * (size_t)T * m);
            memset(dv, 0, sizeof(real) * (size_t)T * Dv);
            if (causal)
                F(la_backward)(T, m, Dv, lo.chunk, p, m, f, m, v, Dv, dn, Dv, dp, m, df, m, dv, Dv);
            else
                F(la_full_backward)(T, m, Dv, p, m, f, m, v, Dv, dn, Dv, dp, m, df, m, dv, Dv);
            real *dhead = dqkv_btc3 + off, *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            F(fmap_backward)(&fm, T, head, 3 * C, p, dp, dhead, 3 * C, dparam);
            F(fmap_backward)(&fm, T, head + C, 3 * C, f, df, dhead + C, 3 * C, dparam);
            for (int t = 0; t < T; t++)
                for (int j = 0; j < D; j++)
                    dhead[(size_t)t * 3 * C + 2 * C + j] += dv[(size_t)t * Dv + j];
        }
        free(p), free(f), free(v), free(dn), free(dp), free(df), free(dv);
    }
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap_params);
    free(dparam_bh);
    F(fmap_close)(&fm);
}

// ---- the rows: linear attention and the mixers that fix its feature map ----------------------

static void linear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, 0, p, F(fmap_params)(s, p));
    *saved = (size_t)s->B * s->H * s->T;
}
static void linear_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_linear_forward)(out[0], sv, in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void linear_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    F(attention_linear_backward)
    (din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], out[0], sv, in[CORE_IN_QKV],
     in + CORE_IN_PARAMS, s);
}

// The dense state is also the baseline of an HSS one: where mixer.hss_leaf / hss_rank fit this
// shape, report how much of each off-diagonal block the rank would keep.
// And the state's effective rank (exp of the entropy of its normalised singular values), per
// (batch, head) averaged: how much of its m x D capacity the final state uses.
static int linear_aux(const OpShape *s, const real *const *in, OpAux *out) {
    char err[256];
    out[0] = (OpAux){.name = "feature_map_ms",
                     .value = F(fmap_time_ms)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS)};
    out[1] = (OpAux){.name = "state_erank",
                     .value = F(linear_state_erank)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS)};
    if (F(attention_hss_check)(s, err, sizeof(err))) return 2;
    return 2 + F(hss_offdiag_energy)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS, out + 2);
}

// Per head and token: the map of q and k (a D x m projection each for FAVOR+; five D log2 D
// per FFT of a circulant block, forward and back), the state update and readout (2 m Dv each)
// and, when causal, the in-chunk part (c (m + Dv) on average over the chunk).
static double linear_flops(const OpShape *s) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    const int causal = OPT_OF(LinearRowOpts, s).causal;
    double D = (double)s->C / s->H, m = fmap_width_of(s), Dv = o.normalize ? D + 1 : D;
    double c = o.chunk < s->T ? o.chunk : s->T, map = 0;
    if (o.feature_map == FEATURE_FAVOR) map = 2 * 2 * m * D;
    if (o.feature_map == FEATURE_CIRCULANT)
        map = 2 * circ_blocks((int)m, (int)D) * 2 * 5 * D * log2(D > 1 ? D : 2);
    return s->H * (map + 4 * m * Dv + (causal ? c * (m + Dv) : 0));
}

#ifdef MT_DOUBLE
static int linear_reference(const OpShape *s, const double *const *in, double *out) {
    ref_linear_attention(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS, NULL, NULL,
                         OPT_OF(LinearRowOpts, s).causal, out);
    return 0;
}
#define LINEAR_REFERENCE linear_reference
#else
#define LINEAR_REFERENCE NULL
#endif

static const OpOption linear_options[] = {LINEAR_OPTION_SPECS(offsetof(LinearRowOpts, lin)),
                                          MIXER_CAUSAL_OPTION(offsetof(LinearRowOpts, causal)),
                                          {NULL}};

// Test shapes: small, odd where possible (T = 7 with chunk 3 crosses chunk boundaries and
// leaves a partial last chunk; T < chunk checks the single-chunk path). Random-feature shapes
// use m > D with m not a multiple of D (a partial last block), and an odd D for the FFT.
#define LINEAR_ROW(name_, help_, fixed_, ...)                                        \
    const F(OpDef) F(op_##name_) = {                                                 \
        .name = #name_,                                                              \
        .n_in = CORE_IN_PARAMS + 2,                                                  \
        .n_out = 1,                                                                  \
        .sizes = linear_sizes,                                                       \
        .forward = linear_fwd,                                                       \
        .backward = linear_bwd,                                                      \
        .params = F(fmap_params),                                                    \
        .init_param = F(fmap_init_param),                                            \
        .aux = linear_aux,                                                           \
        .check = F(fmap_check),                                                      \
        .options = linear_options,                                                   \
        .fixed = fixed_,                                                             \
        .mixer = 1,                                                                  \
        .help = help_,                                                               \
        .flops = linear_flops,                                                       \
        .reference = LINEAR_REFERENCE,                                               \
        .aux_cols = {{"feature_map_ms", AUX_SUM, "feature map ms", 3},               \
                     {"offdiag_energy_depth", AUX_MEAN, "off-diag top-r energy", 4}, \
                     {"state_erank", AUX_MEAN, "state eff. rank", 2}},               \
        __VA_ARGS__}

// clang-format off
LINEAR_ROW(linear,
    "linear attention, feature map mixer.feature_map (elu1, relu, ...), chunkwise when causal",
    NULL,
    .n_tests = 10,
    .tests = {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 feature_map=relu"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 normalize=false"},
              {{.B = 2, .T = 5, .C = 8, .H = 2}, "chunk=64"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "chunk=4"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "chunk=16 feature_map=relu"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 causal=false"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "feature_map=relu normalize=false causal=false"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "causal=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "chunk=16 causal=false"}});
LINEAR_ROW(favor, "FAVOR+: positive orthogonal random features (mixer.features, mixer.qk_norm)",
    "feature_map=favor",
    .n_tests = 5,
    .tests = {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 features=6"},
              {{.B = 2, .T = 5, .C = 8, .H = 2}, "chunk=64 features=12 qk_norm=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "chunk=16 features=11"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "features=6 causal=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "features=11 qk_norm=false causal=false"}});
LINEAR_ROW(circulant_favor,
    "FAVOR+ with a circulant projection C(r) diag(s) by FFT, r learned, s fixed",
    "feature_map=circulant",
    .n_tests = 5,
    .tests = {{{.B = 2, .T = 7, .C = 10, .H = 2}, "chunk=3 features=7"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 features=8 qk_norm=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "chunk=16 features=11"},
              {{.B = 2, .T = 7, .C = 10, .H = 2}, "features=7 causal=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "features=11 causal=false"}});
LINEAR_ROW(cosformer,
    "cosFormer: relu features re-weighted by cos(pi/2 (t-s)/M), M = mixer.max_len",
    "feature_map=cosformer",
    .n_tests = 7,
    .tests = {{{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "chunk=3 max_len=9"},
              {{.B = 2, .T = 6, .C = 8, .H = 2}, "chunk=4 normalize=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "chunk=16 max_len=160"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "causal=false"},
              {{.B = 2, .T = 6, .C = 8, .H = 2}, "max_len=9 normalize=false causal=false"},
              {{.B = 1, .T = 65, .C = 10, .H = 2}, "max_len=160 causal=false"}});
// clang-format on
