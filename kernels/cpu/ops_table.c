// The op table: one row per op. The adapters below give every kernel the table's uniform
// signature; the kernels themselves keep plain, shape-named arguments.
#include <string.h>

#include "linear_core.h"

#define N_ROWS(s) ((size_t)(s)->B * (s)->T)

static void matmul_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->C, in[1] = (size_t)s->OC * s->C, out[0] = N_ROWS(s) * s->OC;
    *saved = 0;
}
static void matmul_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(matmul_forward)(out[0], in[0], in[1], s->B * s->T, s->C, s->OC);
}
static void matmul_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(matmul_backward)(din[0], din[1], dout[0], in[0], in[1], s->B * s->T, s->C, s->OC);
}

static void rmsnorm_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->C, in[1] = s->C, out[0] = in[0], *saved = N_ROWS(s);
}
static void rmsnorm_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(rmsnorm_forward)(out[0], sv, in[0], in[1], s->B * s->T, s->C, s->eps);
}
static void rmsnorm_bwd(const OpShape *s, const real *const *in, const real *const *out,
                        const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    F(rmsnorm_backward)(din[0], din[1], dout[0], in[0], in[1], sv, s->B * s->T, s->C);
}

static void embedding_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = (size_t)s->V * s->C, out[0] = N_ROWS(s) * s->C, *saved = 0;
}
static void embedding_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(embedding_forward)(out[0], s->ids, in[0], s->B * s->T, s->C);
}
static void embedding_bwd(const OpShape *s, const real *const *in, const real *const *out,
                          const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    F(embedding_backward)(din[0], dout[0], s->ids, s->B * s->T, s->C);
}

static void gelu_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = out[0] = N_ROWS(s) * s->F, *saved = 0;
}
static void gelu_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(gelu_forward)(out[0], in[0], N_ROWS(s) * s->F);
}
static void gelu_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(gelu_backward)(din[0], dout[0], in[0], N_ROWS(s) * s->F);
}

static void swiglu_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * 2 * s->F, out[0] = N_ROWS(s) * s->F, *saved = 0;
}
static void swiglu_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(swiglu_forward)(out[0], in[0], s->B * s->T, s->F);
}
static void swiglu_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(swiglu_backward)(din[0], dout[0], in[0], s->B * s->T, s->F);
}

static void gate_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = in[1] = out[0] = N_ROWS(s) * s->C, *saved = 0;
}
static void gate_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(gate_forward)(out[0], in[0], in[1], N_ROWS(s) * s->C);
}
static void gate_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(gate_backward)(din[0], din[1], dout[0], in[0], in[1], N_ROWS(s) * s->C);
}

static void rope_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = out[0] = N_ROWS(s) * 3 * s->C, *saved = 0;
}
static void rope_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(rope_forward)(out[0], in[0], s->B, s->T, s->C, s->H, s->rope_base);
}
static void rope_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    F(rope_backward)(din[0], dout[0], s->B, s->T, s->C, s->H, s->rope_base);
}

// ---- mixer cores: in[0] = qkv [B,T,3C], in[1] = x W_x^T [B,T,E], in[2...] = the op's params --

static void core_sizes(const OpShape *s, size_t *in, size_t *out, size_t E,
                       int (*params)(const OpShape *, OpParam *)) {
    OpParam p[OP_MAX_PARAMS];
    int n = params ? params(s, p) : 0;
    in[CORE_IN_QKV] = N_ROWS(s) * 3 * s->C, in[CORE_IN_XPROJ] = N_ROWS(s) * E;
    for (int i = 0; i < n; i++)
        in[CORE_IN_PARAMS + i] = (size_t)p[i].rows * (p[i].cols > 0 ? p[i].cols : 1);
    out[0] = N_ROWS(s) * s->C;
}

static void softmax_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, 0, NULL);
    *saved = (size_t)s->B * s->H * s->T * s->T;
}
static void softmax_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_softmax_forward)(out[0], sv, in[0], s->B, s->T, s->C, s->H);
}
static void softmax_bwd(const OpShape *s, const real *const *in, const real *const *out,
                        const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    F(attention_softmax_backward)(din[0], dout[0], in[0], sv, s->B, s->T, s->C, s->H);
}

static void feature_map_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, 0, F(fmap_params));
    out[0] = out[1] = (size_t)s->B * s->H * s->T * F(fmap_width)(s);
    *saved = 0;
}
static void feature_map_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(feature_map_forward)(out[0], out[1], in[0], in + CORE_IN_PARAMS, s);
}
static void feature_map_bwd(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(feature_map_backward)(din[0], din + CORE_IN_PARAMS, dout[0], dout[1], in[0],
                            in + CORE_IN_PARAMS, s);
}

static void linear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, 0, F(fmap_params));
    *saved = (size_t)s->B * s->H * s->T;
}
static void linear_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_linear_forward)(out[0], sv, in[0], in + CORE_IN_PARAMS, s);
}
static void linear_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    F(attention_linear_backward)(din[0], din + CORE_IN_PARAMS, dout[0], out[0], sv, in[0],
                                 in + CORE_IN_PARAMS, s);
}

// Log-linear: x W_x^T gives the per-level pre-activations [B, T, H, L]; the bias b starts at
// log(e - 1) and W_x at zero (mixer_layer.c), so every lambda = softplus(b) = 1 at
// initialisation: exactly the plain linear attention of the same features (mixers.md 6.2).
#define LOG_E_MINUS_1 0.5413248546129181
static int loglinear_params(const OpShape *s, OpParam *out) {
    out[0] = (OpParam){.name = "lam_bias",
                       .rows = s->H,
                       .cols = F(attention_loglinear_levels)(s),
                       .init = INIT_CONST,
                       .init_value = LOG_E_MINUS_1,
                       .trainable = 1};
    return 1 + F(fmap_params)(s, out + 1);
}
static void loglinear_init(const OpShape *s, int index, uint64_t key, real *w) {
    F(fmap_init_param)(s, index - 1, key, w);  // lam_bias is INIT_CONST, never custom
}
static void loglinear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, (size_t)s->H * F(attention_loglinear_levels)(s), loglinear_params);
    *saved = (size_t)s->B * s->H * s->T;
}
static void loglinear_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_loglinear_forward)(out[0], sv, in[0], in[1], in[2], in + 3, s);
}
static void loglinear_bwd(const OpShape *s, const real *const *in, const real *const *out,
                          const real *sv, const real *const *dout, real *const *din) {
    F(attention_loglinear_backward)(din[0], din[1], din[2], din + 3, dout[0], out[0], sv, in[0],
                                    in[1], in[2], in + 3, s);
}

// The dense state is also the baseline of an HSS one: where mixer.hss_leaf / hss_rank fit this
// shape, report how much of each off-diagonal block the rank would keep.
static int linear_aux(const OpShape *s, const real *const *in, OpAux *out) {
    char err[256];
    out[0] = (OpAux){.name = "feature_map_ms",
                     .value = F(fmap_time_ms)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS)};
    if (F(attention_hss_check)(s, err, sizeof(err))) return 1;
    return 1 + F(hss_offdiag_energy)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS, out + 1);
}

static void hss_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, 0, F(attention_hss_params));
    *saved = (size_t)s->B * s->H * s->T;
}
static void hss_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_hss_forward)(out[0], sv, in[0], in[2], in[3], in + 4, s);
}
static void hss_bwd(const OpShape *s, const real *const *in, const real *const *out, const real *sv,
                    const real *const *dout, real *const *din) {
    F(attention_hss_backward)(din[0], din + 4, dout[0], out[0], sv, in[0], in[2], in[3], in + 4, s);
}

static void hydra_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    core_sizes(s, in, out, 0, NULL);
    *saved = 0;
}
static void hydra_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(attention_hydra_forward)(out[0], in[0], s);
}
static void hydra_bwd(const OpShape *s, const real *const *in, const real *const *out,
                      const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(attention_hydra_backward)(din[0], dout[0], in[0], s);
}

// ---- the short convolution of the mixer layer: C channels, s->kernel taps --------------------

static void conv_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = out[0] = N_ROWS(s) * s->C, in[1] = (size_t)s->C * s->kernel, *saved = 0;
}
static void conv_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(conv_causal_forward)(out[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}
static void conv_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(conv_causal_backward)(din[0], din[1], dout[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}

static void ce_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->V, out[0] = N_ROWS(s), *saved = 0;
}
static void ce_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(crossentropy_forward)(out[0], in[0], s->ids, s->B * s->T, s->V);
}
static void ce_bwd(const OpShape *s, const real *const *in, const real *const *out, const real *sv,
                   const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(crossentropy_backward)(din[0], dout[0], in[0], s->ids, s->B * s->T, s->V);
}

// Test shapes: small, odd where possible (T = 7 with chunk 3 crosses chunk boundaries and
// leaves a partial last chunk; T < chunk checks the single-chunk path). Random-feature shapes
// use m > D with m not a multiple of D (a partial last block), and an odd D for the FFT.
#define LIN(T_, chunk_, map_, norm_)                                                           \
    {                                                                                          \
        .B = 2, .T = T_, .C = 8, .H = 2, .eps = 1e-6, .feature_map = map_, .normalize = norm_, \
        .chunk = chunk_, .n_features = 6, .qk_norm = 1, .max_len = 9                           \
    }
#define RF(C_, m_, map_, qkn_)                                                             \
    {                                                                                      \
        .B = 2, .T = 7, .C = C_, .H = 2, .eps = 1e-6, .feature_map = map_, .normalize = 1, \
        .chunk = 3, .n_features = m_, .qk_norm = qkn_                                      \
    }
#define LOGLIN(T_, chunk_, M_, map_, norm_)                                                    \
    {                                                                                          \
        .B = 2, .T = T_, .C = 8, .H = 2, .eps = 1e-6, .feature_map = map_, .normalize = norm_, \
        .chunk = chunk_, .n_features = 6, .qk_norm = 1, .max_len = M_                          \
    }
#define HSS(map_, leaf_, rank_, norm_, m_)                                                     \
    {                                                                                          \
        .B = 2, .T = 7, .C = 16, .H = 2, .eps = 1e-6, .feature_map = map_, .normalize = norm_, \
        .chunk = 3, .n_features = m_, .qk_norm = 1, .max_len = 7, .hss_leaf = leaf_,           \
        .hss_rank = rank_                                                                      \
    }

// clang-format off
const F(OpDef) F(OPS)[] = {
    {"matmul", 2, 1, matmul_sizes, matmul_fwd, matmul_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .C = 5, .OC = 7}}},
    {"rmsnorm", 2, 1, rmsnorm_sizes, rmsnorm_fwd, rmsnorm_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .C = 6, .eps = 1e-5}}},
    {"embedding", 1, 1, embedding_sizes, embedding_fwd, embedding_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 4, .C = 5, .V = 6}}},
    {"gelu", 1, 1, gelu_sizes, gelu_fwd, gelu_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .F = 5}}},
    {"swiglu", 1, 1, swiglu_sizes, swiglu_fwd, swiglu_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .F = 5}}},
    {"gate", 2, 1, gate_sizes, gate_fwd, gate_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .C = 4}}},
    {"rope", 1, 1, rope_sizes, rope_fwd, rope_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 5, .C = 8, .H = 2, .rope_base = 10000}}},
    {"conv_causal", 2, 1, conv_sizes, conv_fwd, conv_bwd,
     .n_tests = 3, .tests = {{.B = 2, .T = 5, .C = 6, .kernel = 3},
                             {.B = 1, .T = 4, .C = 3, .kernel = 1},
                             {.B = 2, .T = 3, .C = 2, .kernel = 5}}},
    {"attention_softmax", 1, 1, softmax_sizes, softmax_fwd, softmax_bwd,
     .n_tests = 2, .tests = {{.B = 2, .T = 5, .C = 8, .H = 2}, {.B = 1, .T = 1, .C = 4, .H = 1}}},
    {"feature_map", 2 + 2, 2, feature_map_sizes, feature_map_fwd, feature_map_bwd,
     .n_tests = 5, .tests = {LIN(5, 3, FEATURE_ELU1, 1), LIN(5, 3, FEATURE_COSFORMER, 1),
                             RF(8, 6, FEATURE_FAVOR, 1), RF(10, 7, FEATURE_CIRCULANT, 1),
                             RF(8, 8, FEATURE_CIRCULANT, 0)},
     .params = F(fmap_params), .init_param = F(fmap_init_param)},
    {"attention_linear", 2 + 2, 1, linear_sizes, linear_fwd, linear_bwd,
     .n_tests = 8, .tests = {LIN(7, 3, FEATURE_ELU1, 1), LIN(7, 3, FEATURE_RELU, 1),
                             LIN(7, 3, FEATURE_ELU1, 0), LIN(5, 64, FEATURE_ELU1, 1),
                             LIN(7, 3, FEATURE_COSFORMER, 1), RF(8, 6, FEATURE_FAVOR, 1),
                             RF(10, 7, FEATURE_CIRCULANT, 1), RF(8, 8, FEATURE_CIRCULANT, 0)},
     .params = F(fmap_params), .init_param = F(fmap_init_param), .aux = linear_aux},
    {"attention_loglinear", 3 + 2, 1, loglinear_sizes, loglinear_fwd, loglinear_bwd,
     .n_tests = 6, .tests = {LOGLIN(13, 4, 13, FEATURE_ELU1, 1), LOGLIN(13, 2, 16, FEATURE_RELU, 0),
                             LOGLIN(7, 2, 7, FEATURE_FAVOR, 1),
                             LOGLIN(9, 3, 16, FEATURE_COSFORMER, 1),
                             LOGLIN(7, 4, 8, FEATURE_CIRCULANT, 1),
                             LOGLIN(5, 64, 4, FEATURE_ELU1, 1)},
     .params = loglinear_params, .init_param = loglinear_init,
     .aux = F(attention_loglinear_aux)},
    {"attention_hss", 4 + 2, 1, hss_sizes, hss_fwd, hss_bwd,
     .n_tests = 4, .tests = {HSS(FEATURE_ELU1, 2, 1, 1, 0), HSS(FEATURE_RELU, 4, 4, 0, 0),
                             HSS(FEATURE_COSFORMER, 2, 2, 1, 0), HSS(FEATURE_FAVOR, 2, 3, 1, 12)},
     .params = F(attention_hss_params), .init_param = F(attention_hss_init_param),
     .check = F(attention_hss_check), .aux = F(attention_hss_aux)},
    {"attention_hydra", 1, 1, hydra_sizes, hydra_fwd, hydra_bwd,
     .n_tests = 2, .tests = {{.B = 2, .T = 6, .C = 8, .hydra_norm = HYDRA_NORM_COUNT},
                             {.B = 1, .T = 5, .C = 6, .hydra_norm = HYDRA_NORM_NONE}}},
    {"crossentropy", 1, 1, ce_sizes, ce_fwd, ce_bwd,
     .n_tests = 1, .tests = {{.B = 2, .T = 3, .V = 7}}},
};
// clang-format on
const int F(N_OPS) = sizeof(F(OPS)) / sizeof(F(OPS)[0]);

const F(OpDef) * F(op_find)(const char *name) {
    for (int i = 0; i < F(N_OPS); i++)
        if (!strcmp(F(OPS)[i].name, name)) return &F(OPS)[i];
    return NULL;
}
