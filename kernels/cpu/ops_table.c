// The model's own ops (matmul, norms, embeddings, activations, rotary, the short convolution,
// cross-entropy) as rows of the op table, and the table itself (kernels/ops_list.h). The
// adapters give every kernel the table's uniform signature; the kernels keep plain,
// shape-named arguments. Mixer rows live in their own files.
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

// saved: mean [N] then rstd [N]
static void layernorm_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->C, in[1] = in[2] = s->C, out[0] = in[0], *saved = 2 * N_ROWS(s);
}
static void layernorm_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    int N = s->B * s->T;
    F(layernorm_forward)(out[0], sv, sv + N, in[0], in[1], in[2], N, s->C, s->eps);
}
static void layernorm_bwd(const OpShape *s, const real *const *in, const real *const *out,
                          const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    int N = s->B * s->T;
    F(layernorm_backward)(din[0], din[1], din[2], dout[0], in[0], in[1], sv, sv + N, N, s->C);
}

// The table's ops are out-of-place: out = inp + b per row (the model adds in place).
static void bias_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = out[0] = N_ROWS(s) * s->OC, in[1] = s->OC, *saved = 0;
}
static void bias_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    memcpy(out[0], in[0], sizeof(real) * N_ROWS(s) * s->OC);
    F(bias_forward)(out[0], in[1], s->B * s->T, s->OC);
}
static void bias_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    for (size_t i = 0; i < N_ROWS(s) * s->OC; i++) din[0][i] += dout[0][i];
    F(bias_backward)(din[1], dout[0], s->B * s->T, s->OC);
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
static void gelu_erf_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(gelu_erf_forward)(out[0], in[0], N_ROWS(s) * s->F);
}
static void gelu_erf_bwd(const OpShape *s, const real *const *in, const real *const *out,
                         const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(gelu_erf_backward)(din[0], dout[0], in[0], N_ROWS(s) * s->F);
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
    F(rope_forward)(out[0], in[0], s->B, s->T, s->C, s->H, s->rope_base, s->pos0);
}
static void rope_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    F(rope_backward)(din[0], dout[0], s->B, s->T, s->C, s->H, s->rope_base, s->pos0);
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

#define ROW(name_, nin, fwd, bwd, sz, ...) \
    const F(OpDef) F(op_##name_) = {#name_, nin, 1, sz, fwd, bwd, __VA_ARGS__};
// clang-format off
ROW(matmul, 2, matmul_fwd, matmul_bwd, matmul_sizes,
    .n_tests = 1, .tests = {{{.B = 2, .T = 3, .C = 5, .OC = 7}}})
ROW(rmsnorm, 2, rmsnorm_fwd, rmsnorm_bwd, rmsnorm_sizes,
    .n_tests = 1, .tests = {{{.B = 2, .T = 3, .C = 6, .eps = 1e-5}}})
ROW(layernorm, 3, layernorm_fwd, layernorm_bwd, layernorm_sizes,
    .n_tests = 2, .tests = {{{.B = 2, .T = 3, .C = 6, .eps = 1e-5}},
                            {{.B = 1, .T = 2, .C = 7, .eps = 1e-5}}})
ROW(bias, 2, bias_fwd, bias_bwd, bias_sizes, .n_tests = 1, .tests = {{{.B = 2, .T = 3, .OC = 5}}})
ROW(embedding, 1, embedding_fwd, embedding_bwd, embedding_sizes,
    .n_tests = 1, .tests = {{{.B = 2, .T = 4, .C = 5, .V = 6}}})
ROW(gelu, 1, gelu_fwd, gelu_bwd, gelu_sizes, .n_tests = 1, .tests = {{{.B = 2, .T = 3, .F = 5}}})
ROW(gelu_erf, 1, gelu_erf_fwd, gelu_erf_bwd, gelu_sizes,
    .n_tests = 1, .tests = {{{.B = 2, .T = 3, .F = 5}}})
ROW(swiglu, 1, swiglu_fwd, swiglu_bwd, swiglu_sizes,
    .n_tests = 1, .tests = {{{.B = 2, .T = 3, .F = 5}}})
ROW(gate, 2, gate_fwd, gate_bwd, gate_sizes, .n_tests = 1, .tests = {{{.B = 2, .T = 3, .C = 4}}})
ROW(rope, 1, rope_fwd, rope_bwd, rope_sizes,
    .n_tests = 2, .tests = {{{.B = 2, .T = 5, .C = 8, .H = 2, .rope_base = 10000}},
                            {{.B = 2, .T = 5, .C = 8, .H = 2, .rope_base = 10000, .pos0 = 7}}})
ROW(conv_causal, 2, conv_fwd, conv_bwd, conv_sizes,
    .n_tests = 3, .tests = {{{.B = 2, .T = 5, .C = 6, .kernel = 3}},
                            {{.B = 1, .T = 4, .C = 3, .kernel = 1}},
                            {{.B = 2, .T = 3, .C = 2, .kernel = 5}}})
ROW(crossentropy, 1, ce_fwd, ce_bwd, ce_sizes, .n_tests = 1, .tests = {{{.B = 2, .T = 3, .V = 7}}})
// clang-format on

#define OP(name) extern const F(OpDef) F(op_##name);
#include "../ops_list.h"
#undef OP
const F(OpDef) *const F(OPS)[] = {
#define OP(name) &F(op_##name),
#include "../ops_list.h"
#undef OP
};
const int F(N_OPS) = sizeof(F(OPS)) / sizeof(F(OPS)[0]);

const F(OpDef) * F(op_find)(const char *name) {
    for (int i = 0; i < F(N_OPS); i++)
        if (!strcmp(F(OPS)[i]->name, name)) return F(OPS)[i];
    return NULL;
}
