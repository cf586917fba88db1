// The CUDA op table: for each row of the CPU table (kernels/ops_list.h order), the CPU row with
// forward and backward (and, where the kernel saves other activations, the sizes) replaced by
// the CudaKernels its .cu file gives. The model's own ops (matmul, norms, ...) are adapted here,
// as kernels/cpu/ops_table.c does for the CPU; mixers' kernels sit in their own files.
#include <string.h>

#include "cuda_common.cuh"

#define N_ROWS(s) ((size_t)(s)->B * (s)->T)
typedef const float *const *In;
typedef float *const *Out;

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
static void layernorm_fwd(const OpShape *s, In in, Out out, float *sv) {
    int N = s->B * s->T;
    layernorm_forward_cuda(out[0], sv, sv + N, in[0], in[1], in[2], N, s->C, s->eps);
}
static void layernorm_bwd(const OpShape *s, In in, In, const float *sv, In dout, Out din) {
    int N = s->B * s->T;
    layernorm_backward_cuda(din[0], din[1], din[2], dout[0], in[0], in[1], sv, sv + N, N, s->C);
}
// The row is out-of-place (out = inp + b); the model adds the bias in place.
static void bias_fwd(const OpShape *s, In in, Out out, float *) {
    CUDA_CHECK(
        cudaMemcpy(out[0], in[0], sizeof(float) * N_ROWS(s) * s->OC, cudaMemcpyDeviceToDevice));
    bias_forward_cuda(out[0], in[1], s->B * s->T, s->OC);
}
static void bias_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    const float one = 1;
    CUBLAS_CHECK(cublasSaxpy(mt_cublas(), (int)(N_ROWS(s) * s->OC), &one, dout[0], 1, din[0], 1));
    bias_backward_cuda(din[1], dout[0], s->B * s->T, s->OC);
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
    rope_forward_cuda(out[0], in[0], s->B, s->T, s->C, s->H, s->rope_base, s->pos0);
}
static void rope_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    rope_backward_cuda(din[0], dout[0], s->B, s->T, s->C, s->H, s->rope_base, s->pos0);
}
static void conv_fwd(const OpShape *s, In in, Out out, float *) {
    conv_causal_forward_cuda(out[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}
static void conv_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    conv_causal_backward_cuda(din[0], din[1], dout[0], in[0], in[1], s->B, s->T, s->C, s->kernel);
}
static void ce_fwd(const OpShape *s, In in, Out out, float *) {
    crossentropy_forward_cuda(out[0], in[0], s->ids, s->B * s->T, s->V);
}
static void ce_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    crossentropy_backward_cuda(din[0], dout[0], in[0], s->ids, s->B * s->T, s->V);
}

// Declared extern "C" (a namespace-scope const is otherwise internal in C++): the table below
// and the mixers' files reach one another by these names.
extern "C" const CudaKernels cuda_op_matmul = {matmul_fwd, matmul_bwd, NULL};
extern "C" const CudaKernels cuda_op_rmsnorm = {rmsnorm_fwd, rmsnorm_bwd, NULL};
extern "C" const CudaKernels cuda_op_layernorm = {layernorm_fwd, layernorm_bwd, NULL};
extern "C" const CudaKernels cuda_op_bias = {bias_fwd, bias_bwd, NULL};
extern "C" const CudaKernels cuda_op_embedding = {embedding_fwd, embedding_bwd, NULL};
extern "C" const CudaKernels cuda_op_gelu = {gelu_fwd, gelu_bwd, NULL};
static void gelu_erf_fwd(const OpShape *s, In in, Out out, float *) {
    gelu_erf_forward_cuda(out[0], in[0], N_ROWS(s) * s->F);
}
static void gelu_erf_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    gelu_erf_backward_cuda(din[0], dout[0], in[0], N_ROWS(s) * s->F);
}
extern "C" const CudaKernels cuda_op_gelu_erf = {gelu_erf_fwd, gelu_erf_bwd, NULL};
extern "C" const CudaKernels cuda_op_swiglu = {swiglu_fwd, swiglu_bwd, NULL};
extern "C" const CudaKernels cuda_op_gate = {gate_fwd, gate_bwd, NULL};
extern "C" const CudaKernels cuda_op_rope = {rope_fwd, rope_bwd, NULL};
extern "C" const CudaKernels cuda_op_conv_causal = {conv_fwd, conv_bwd, NULL};
extern "C" const CudaKernels cuda_op_crossentropy = {ce_fwd, ce_bwd, NULL};
#define OP(name) extern "C" const CudaKernels cuda_op_##name;
#include "../ops_list.h"
#undef OP

static const CudaKernels *const KERNELS[] = {
#define OP(name) &cuda_op_##name,
#include "../ops_list.h"
#undef OP
};
enum { N_KERNELS = sizeof(KERNELS) / sizeof(KERNELS[0]) };

// A kernel's own saved size goes through sizes(): the CPU row's sizes, then the override. The
// row is found again from the shape's caller, so each CUDA row gets its own sizes function.
static OpDef_f32 ROWS[N_KERNELS];
static size_t (*SAVED[N_KERNELS])(const OpShape *);
template <int I>
static void sizes_with_saved(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OPS_f32[I]->sizes(s, in, out, saved);
    *saved = SAVED[I](s);
}
template <int I>
static void fill_rows() {
    if constexpr (I < N_KERNELS) {
        ROWS[I] = *OPS_f32[I];
        ROWS[I].forward = KERNELS[I]->forward;
        ROWS[I].backward = KERNELS[I]->backward;
        // the context-parallel forms are CPU functions (parallel.context runs on the cpu)
        ROWS[I].carry_size = NULL, ROWS[I].forward_carry = NULL, ROWS[I].backward_carry = NULL;
        ROWS[I].carry_through = NULL, ROWS[I].prefix_width = NULL, ROWS[I].prefix_pack = NULL;
        ROWS[I].prefix_unpack_add = NULL, ROWS[I].forward_prefix = NULL;
        ROWS[I].backward_prefix = NULL;
        if (KERNELS[I]->saved) SAVED[I] = KERNELS[I]->saved, ROWS[I].sizes = sizes_with_saved<I>;
        fill_rows<I + 1>();
    }
}

extern "C" const OpDef_f32 *cuda_op_row(int index) {
    static bool filled = false;
    if (!filled) fill_rows<0>(), filled = true;
    if (index < 0 || index >= N_KERNELS || !KERNELS[index]->forward) return NULL;
    return &ROWS[index];
}
