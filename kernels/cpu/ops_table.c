// The op table: one row per op. The adapters below give every kernel the table's uniform
// signature; the kernels themselves keep plain, shape-named arguments.
#include <string.h>

#include "../ops.h"
#include "../real.h"

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

static void qkv_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * 3 * s->C, out[0] = N_ROWS(s) * s->C, *saved = 0;
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

static void softmax_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    qkv_sizes(s, in, out, saved);
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

static void linear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    qkv_sizes(s, in, out, saved);
    *saved = (size_t)s->B * s->H * s->T;
}
static void linear_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_linear_forward)(out[0], sv, in[0], s);
}
static void linear_bwd(const OpShape *s, const real *const *in, const real *const *out,
                       const real *sv, const real *const *dout, real *const *din) {
    F(attention_linear_backward)(din[0], dout[0], out[0], sv, in[0], s);
}

static void ce_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->V, out[0] = N_ROWS(s), *saved = 0;
}
static void ce_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(crossentropy_forward)(out[0], in[0], s->ids, s->B * s->T, s->V);
}
static void ce_bwd(const OpShape *s, const real *const *in, const real *const *out,
                   const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(crossentropy_backward)(din[0], dout[0], in[0], s->ids, s->B * s->T, s->V);
}

// Test shapes: small, odd where possible (T = 7 with chunk 3 crosses chunk boundaries and
// leaves a partial last chunk; T < chunk checks the single-chunk path).
#define LIN(T_, chunk_, map_, norm_) \
    {.B = 2, .T = T_, .C = 8, .H = 2, .eps = 1e-6, .feature_map = map_, .normalize = norm_, \
     .chunk = chunk_}

const F(OpDef) F(OPS)[] = {
    {"matmul", 2, 1, matmul_sizes, matmul_fwd, matmul_bwd, 0, 1,
     {{.B = 2, .T = 3, .C = 5, .OC = 7}}},
    {"rmsnorm", 2, 1, rmsnorm_sizes, rmsnorm_fwd, rmsnorm_bwd, 0, 1,
     {{.B = 2, .T = 3, .C = 6, .eps = 1e-5}}},
    {"embedding", 1, 1, embedding_sizes, embedding_fwd, embedding_bwd, 0, 1,
     {{.B = 2, .T = 4, .C = 5, .V = 6}}},
    {"gelu", 1, 1, gelu_sizes, gelu_fwd, gelu_bwd, 0, 1, {{.B = 2, .T = 3, .F = 5}}},
    {"swiglu", 1, 1, swiglu_sizes, swiglu_fwd, swiglu_bwd, 0, 1, {{.B = 2, .T = 3, .F = 5}}},
    {"gate", 2, 1, gate_sizes, gate_fwd, gate_bwd, 0, 1, {{.B = 2, .T = 3, .C = 4}}},
    {"rope", 1, 1, rope_sizes, rope_fwd, rope_bwd, 0, 1,
     {{.B = 2, .T = 5, .C = 8, .H = 2, .rope_base = 10000}}},
    {"attention_softmax", 1, 1, softmax_sizes, softmax_fwd, softmax_bwd, 0, 2,
     {{.B = 2, .T = 5, .C = 8, .H = 2}, {.B = 1, .T = 1, .C = 4, .H = 1}}},
    {"attention_linear", 1, 1, linear_sizes, linear_fwd, linear_bwd, 0, 4,
     {LIN(7, 3, FEATURE_ELU1, 1), LIN(7, 3, FEATURE_RELU, 1), LIN(7, 3, FEATURE_ELU1, 0),
      LIN(5, 64, FEATURE_ELU1, 1)}},
    {"crossentropy", 1, 1, ce_sizes, ce_fwd, ce_bwd, 0, 1, {{.B = 2, .T = 3, .V = 7}}},
};
const int F(N_OPS) = sizeof(F(OPS)) / sizeof(F(OPS)[0]);

const F(OpDef) *F(op_find)(const char *name) {
    for (int i = 0; i < F(N_OPS); i++)
        if (!strcmp(F(OPS)[i].name, name)) return &F(OPS)[i];
    return NULL;
}
