// The CUDA op table: the same rows as kernels/cpu/ops_table.c, over device buffers. Shapes
// come from the CPU row of the same name; only the saved activations may differ.
#include <string.h>

#include "cuda_common.cuh"

#define N_ROWS(s) ((size_t)(s)->B * (s)->T)
typedef const float *const *In;
typedef float *const *Out;

static void cpu_sizes(const char *name, const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    op_find_f32(name)->sizes(s, in, out, sv);
}

#define SIZES_AS_CPU(op)                                                            \
    static void op##_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) { \
        cpu_sizes(#op, s, in, out, sv);                                             \
    }
SIZES_AS_CPU(matmul)
SIZES_AS_CPU(rmsnorm)
SIZES_AS_CPU(embedding)
SIZES_AS_CPU(gelu)
SIZES_AS_CPU(swiglu)
SIZES_AS_CPU(gate)
SIZES_AS_CPU(rope)
SIZES_AS_CPU(crossentropy)
SIZES_AS_CPU(conv_causal)

static void matmul_fwd(const OpShape *s, In in, Out out, float *) {
    matmul_forward_cuda(out[0], in[0], in[1], s->B * s->T, s->C, s->OC);
}
static void matmul_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    matmul_backward_cuda(din[0], din[1], dout[0], in[0], in[1], s->B * s->T, s->C, s->OC);
}
static void rmsnorm_fwd(const OpShape *s, In in, Out out, float *sv) {
    rmsnorm_forward_cuda(out[0], sv, in[0], in[1], s->B * s->T, s->C, s->eps);
}
static void rmsnorm_bwd(const OpShape *s, In in, In, const float *sv, In dout, Out din) {
    rmsnorm_backward_cuda(din[0], din[1], dout[0], in[0], in[1], sv, s->B * s->T, s->C);
}
static void embedding_fwd(const OpShape *s, In in, Out out, float *) {
    embedding_forward_cuda(out[0], s->ids, in[0], s->B * s->T, s->C);
}
static void embedding_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    embedding_backward_cuda(din[0], dout[0], s->ids, s->B * s->T, s->C);
}
static void gelu_fwd(const OpShape *s, In in, Out out, float *) {
    gelu_forward_cuda(out[0], in[0], N_ROWS(s) * s->F);
}
static void gelu_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    gelu_backward_cuda(din[0], dout[0], in[0], N_ROWS(s) * s->F);
}
static void swiglu_fwd(const OpShape *s, In in, Out out, float *) {
    swiglu_forward_cuda(out[0], in[0], s->B * s->T, s->F);
}
static void swiglu_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    swiglu_backward_cuda(din[0], dout[0], in[0], s->B * s->T, s->F);
}
static void gate_fwd(const OpShape *s, In in, Out out, float *) {
    gate_forward_cuda(out[0], in[0], in[1], N_ROWS(s) * s->C);
}
static void gate_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    gate_backward_cuda(din[0], din[1], dout[0], in[0], in[1], N_ROWS(s) * s->C);
}
static void rope_fwd(const OpShape *s, In in, Out out, float *) {
    rope_forward_cuda(out[0], in[0], s->B, s->T, s->C, s->H, s->rope_base);
}
static void rope_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    rope_backward_cuda(din[0], dout[0], s->B, s->T, s->C, s->H, s->rope_base);
}
static void softmax_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("attention_softmax", s, in, out, sv);
    *sv = attention_softmax_saved_cuda(s->B, s->T, s->C, s->H);
}
static void softmax_fwd(const OpShape *s, In in, Out out, float *sv) {
    attention_softmax_forward_cuda(out[0], sv, in[0], s->B, s->T, s->C, s->H);
}
static void softmax_bwd(const OpShape *s, In in, In, const float *sv, In dout, Out din) {
    attention_softmax_backward_cuda(din[0], dout[0], in[0], sv, s->B, s->T, s->C, s->H);
}
static void conv_fwd(const OpShape *s, In in, Out out, float *) {
    conv_causal_forward_cuda(out[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}
static void conv_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    conv_causal_backward_cuda(din[0], din[1], dout[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}
static void linear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("attention_linear", s, in, out, sv);
}
static int linear_params(const OpShape *s, OpParam *out) {
    return op_find_f32("attention_linear")->params(s, out);
}
static void linear_fwd(const OpShape *s, In in, Out out, float *sv) {
    attention_linear_forward_cuda(out[0], sv, in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void linear_bwd(const OpShape *s, In in, In out, const float *sv, In dout, Out din) {
    attention_linear_backward_cuda(din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], out[0], sv,
                                   in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void fmap_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("feature_map", s, in, out, sv);
}
static int fmap_params(const OpShape *s, OpParam *out) {
    return op_find_f32("feature_map")->params(s, out);
}
static void fmap_fwd(const OpShape *s, In in, Out out, float *) {
    feature_map_forward_cuda(out[0], out[1], in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void fmap_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    feature_map_backward_cuda(din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], dout[1],
                              in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void loglinear_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("attention_loglinear", s, in, out, sv);
}
static int loglinear_params(const OpShape *s, OpParam *out) {
    return op_find_f32("attention_loglinear")->params(s, out);
}
static void loglinear_fwd(const OpShape *s, In in, Out out, float *sv) {
    attention_loglinear_forward_cuda(out[0], sv, in[0], in[1], in[2], in + 3, s);
}
static void loglinear_bwd(const OpShape *s, In in, In out, const float *sv, In dout, Out din) {
    attention_loglinear_backward_cuda(din[0], din[1], din[2], din + 3, dout[0], out[0], sv, in[0],
                                      in[1], in[2], in + 3, s);
}
static void hss_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("attention_hss", s, in, out, sv);
}
static int hss_params(const OpShape *s, OpParam *out) {
    return op_find_f32("attention_hss")->params(s, out);
}
static int hss_check(const OpShape *s, char *err, size_t errlen) {
    return op_find_f32("attention_hss")->check(s, err, errlen);
}
static void hss_fwd(const OpShape *s, In in, Out out, float *sv) {
    attention_hss_forward_cuda(out[0], sv, in[0], in[2], in[3], in + 4, s);
}
static void hss_bwd(const OpShape *s, In in, In out, const float *sv, In dout, Out din) {
    attention_hss_backward_cuda(din[0], din + 4, dout[0], out[0], sv, in[0], in[2], in[3], in + 4,
                                s);
}
static void hydra_sizes(const OpShape *s, size_t *in, size_t *out, size_t *sv) {
    cpu_sizes("attention_hydra", s, in, out, sv);
}
static void hydra_fwd(const OpShape *s, In in, Out out, float *) {
    attention_hydra_forward_cuda(out[0], in[CORE_IN_QKV], s);
}
static void hydra_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    attention_hydra_backward_cuda(din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], s);
}
static void ce_fwd(const OpShape *s, In in, Out out, float *) {
    crossentropy_forward_cuda(out[0], in[0], s->ids, s->B * s->T, s->V);
}
static void ce_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    crossentropy_backward_cuda(din[0], dout[0], in[0], s->ids, s->B * s->T, s->V);
}

extern "C" {
const OpDef_f32 CUDA_OPS[] = {
    {"matmul", 2, 1, matmul_sizes, matmul_fwd, matmul_bwd, 0, 0, {}},
    {"rmsnorm", 2, 1, rmsnorm_sizes, rmsnorm_fwd, rmsnorm_bwd, 0, 0, {}},
    {"embedding", 1, 1, embedding_sizes, embedding_fwd, embedding_bwd, 0, 0, {}},
    {"gelu", 1, 1, gelu_sizes, gelu_fwd, gelu_bwd, 0, 0, {}},
    {"swiglu", 1, 1, swiglu_sizes, swiglu_fwd, swiglu_bwd, 0, 0, {}},
    {"gate", 2, 1, gate_sizes, gate_fwd, gate_bwd, 0, 0, {}},
    {"rope", 1, 1, rope_sizes, rope_fwd, rope_bwd, 0, 0, {}},
    {"conv_causal", 2, 1, conv_causal_sizes, conv_fwd, conv_bwd, 0, 0, {}},
    {"attention_softmax", 1, 1, softmax_sizes, softmax_fwd, softmax_bwd, 0, 0, {}},
    {"feature_map",
     2 + 2,
     2,
     fmap_sizes,
     fmap_fwd,
     fmap_bwd,
     0,
     0,
     {},
     fmap_params,
     NULL,
     NULL,
     NULL},
    {"attention_linear",
     2 + 2,
     1,
     linear_sizes,
     linear_fwd,
     linear_bwd,
     0,
     0,
     {},
     linear_params,
     NULL,
     NULL,
     NULL},
    {"attention_loglinear",
     3 + 2,
     1,
     loglinear_sizes,
     loglinear_fwd,
     loglinear_bwd,
     0,
     0,
     {},
     loglinear_params,
     NULL,
     NULL,
     NULL},
    {"attention_hss",
     4 + 2,
     1,
     hss_sizes,
     hss_fwd,
     hss_bwd,
     0,
     0,
     {},
     hss_params,
     NULL,
     hss_check,
     NULL},
    {"attention_hydra", 1, 1, hydra_sizes, hydra_fwd, hydra_bwd, 0, 0, {}},
    {"crossentropy", 1, 1, crossentropy_sizes, ce_fwd, ce_bwd, 0, 0, {}},
};
const int N_CUDA_OPS = sizeof(CUDA_OPS) / sizeof(CUDA_OPS[0]);

const OpDef_f32 *cuda_op_find(const char *name) {
    for (int i = 0; i < N_CUDA_OPS; i++)
        if (!strcmp(CUDA_OPS[i].name, name)) return &CUDA_OPS[i];
    return NULL;
}
}
