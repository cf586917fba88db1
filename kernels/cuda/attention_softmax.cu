// Softmax attention, causal or bidirectional (mixer.causal), as kernels/cpu/attention_softmax.c: q,
// k, v are permuted to [B,H,T,D] so every product is one strided-batched cuBLAS call over B*H
// heads; the probabilities [B,H,T,T] are saved for backward (the fp32 reference form; the fast path
// for long T is a fused flash-style kernel that recomputes them).
#include "../attention_softmax.h"
#include "cuda_common.cuh"

// qkv [B,T,3,H,D] <-> three [B,H,T,D] buffers. dir = 0: gather; dir = 1: scatter-add back.
__global__ void permute_qkv_kernel(float *q, float *k, float *v, float *qkv, int B, int T, int C,
                                   int H, int dir) {
    int D = C / H;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    int d = (int)(idx % D), t = (int)((idx / D) % T), h = (int)((idx / ((size_t)D * T)) % H);
    int b = (int)(idx / ((size_t)D * T * H));
    size_t src = ((size_t)b * T + t) * 3 * C + h * D + d;
    if (dir == 0) {
        q[idx] = qkv[src], k[idx] = qkv[src + C], v[idx] = qkv[src + 2 * C];
    } else {
        qkv[src] += q[idx], qkv[src + C] += k[idx], qkv[src + 2 * C] += v[idx];
    }
}

// [B,H,T,D] <-> [B,T,C]. dir = 0: out_btc = y_bhtd; dir = 1: y_bhtd = out_btc.
__global__ void permute_heads_kernel(float *btc, float *bhtd, int B, int T, int C, int H, int dir) {
    int D = C / H;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * C) return;
    int d = (int)(idx % D), t = (int)((idx / D) % T), h = (int)((idx / ((size_t)D * T)) % H);
    int b = (int)(idx / ((size_t)D * T * H));
    size_t o = ((size_t)b * T + t) * C + h * D + d;
    if (dir == 0)
        btc[o] = bhtd[idx];
    else
        bhtd[idx] = btc[o];
}

// One warp per row t: softmax over j <= last (t when causal, else T - 1), zeros after it.
__global__ void softmax_rows_kernel(float *att, int rows, int T, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = causal ? row % T : T - 1;
    float *a = att + (size_t)row * T;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, a[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, o));
    float sum = 0;
    for (int j = lane; j <= t; j += 32) sum += expf(a[j] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, o);
    float inv = 1.f / sum;
    for (int j = lane; j < T; j += 32) a[j] = j <= t ? expf(a[j] - mx) * inv : 0.f;
}

// dS = P (.) (dP - rowsum(dP (.) P)), in place on dP; zero after the last key read.
__global__ void softmax_backward_kernel(float *dp, const float *att, int rows, int T, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = causal ? row % T : T - 1;
    float *g = dp + (size_t)row * T;
    const float *p = att + (size_t)row * T;
    float dot = 0;
    for (int j = lane; j <= t; j += 32) dot += g[j] * p[j];
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
    for (int j = lane; j < T; j += 32) g[j] = j <= t ? p[j] * (g[j] - dot) : 0.f;
}

extern "C" size_t attention_softmax_saved_cuda(int B, int T, int C, int H) {
    return (size_t)B * H * T * T + (size_t)3 * B * T * C;
}

// Column-major cuBLAS view of row-major [T, D] heads (see matmul.cu): every product below is
// written as the transpose it computes.
extern "C" void attention_softmax_forward_cuda(float *out_btc, float *saved, const float *qkv_btc3,
                                               int B, int T, int C, int H, int causal) {
    int D = C / H, BH = B * H;
    size_t BTC = (size_t)B * T * C;
    long long sTT = (long long)T * T, sTD = (long long)T * D;
    float *att = saved, *q = saved + (size_t)BH * T * T, *k = q + BTC, *v = k + BTC, *o;
    permute_qkv_kernel<<<ceil_div(BTC, 256), 256>>>(q, k, v, (float *)qkv_btc3, B, T, C, H, 0);
    CUDA_LAUNCH_CHECK();
    const float scale = 1.f / sqrtf((float)D), one = 1, zero = 0;
    // att^T (col-major) = K Q^T  <=>  att[t][s] = q_t . k_s * scale (row-major)
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &scale, k,
                                         D, sTD, q, D, sTD, &zero, att, T, sTT, BH));
    softmax_rows_kernel<<<ceil_div((long long)BH * T, 8), 256>>>(att, BH * T, T, causal);
    CUDA_LAUNCH_CHECK();
    o = (float *)mt_cuda_temp_alloc(sizeof(float) * BTC);
    // O^T = V^T P^T  <=>  O = P V
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &one, v, D,
                                         sTD, att, T, sTT, &zero, o, D, sTD, BH));
    permute_heads_kernel<<<ceil_div(BTC, 256), 256>>>(out_btc, o, B, T, C, H, 0);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(o, sizeof(float) * BTC);
}

extern "C" void attention_softmax_backward_cuda(float *dqkv_btc3, const float *dout_btc,
                                                const float *qkv_btc3, const float *saved, int B,
                                                int T, int C, int H, int causal) {
    (void)qkv_btc3;  // q, k, v are read from their permuted copies in saved
    int D = C / H, BH = B * H;
    size_t BTC = (size_t)B * T * C;
    long long sTT = (long long)T * T, sTD = (long long)T * D;
    const float *att = saved, *q = saved + (size_t)BH * T * T, *k = q + BTC, *v = k + BTC;
    float *dO, *dq, *dk, *dv, *ds;
    dO = (float *)mt_cuda_temp_alloc(sizeof(float) * 4 * BTC);
    dq = dO + BTC, dk = dq + BTC, dv = dk + BTC;
    ds = (float *)mt_cuda_temp_alloc(sizeof(float) * (size_t)BH * T * T);
    permute_heads_kernel<<<ceil_div(BTC, 256), 256>>>((float *)dout_btc, dO, B, T, C, H, 1);
    CUDA_LAUNCH_CHECK();
    const float scale = 1.f / sqrtf((float)D), one = 1, zero = 0;
    // dV = P^T dO
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, &one, dO,
                                         D, sTD, att, T, sTT, &zero, dv, D, sTD, BH));
    // dP = dO V^T
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &one, v, D,
                                         sTD, dO, D, sTD, &zero, ds, T, sTT, BH));
    softmax_backward_kernel<<<ceil_div((long long)BH * T, 8), 256>>>(ds, att, BH * T, T, causal);
    CUDA_LAUNCH_CHECK();
    // dQ = dS K * scale, dK = dS^T Q * scale
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &scale, k,
                                         D, sTD, ds, T, sTT, &zero, dq, D, sTD, BH));
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, &scale, q,
                                         D, sTD, ds, T, sTT, &zero, dk, D, sTD, BH));
    permute_qkv_kernel<<<ceil_div(BTC, 256), 256>>>(dq, dk, dv, dqkv_btc3, B, T, C, H, 1);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(ds, sizeof(float) * (size_t)BH * T * T);
    mt_cuda_temp_free(dO, sizeof(float) * 4 * BTC);
}

// ---- the row's kernels (kernels/cpu/attention_softmax.c has the row)
// -----------------------------
static void softmax_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    attention_softmax_forward_cuda(out[0], sv, in[CORE_IN_QKV], s->B, s->T, s->C, s->H,
                                   OPT_OF(SoftmaxOpts, s).causal);
}
static void softmax_bwd(const OpShape *s, const float *const *in, const float *const *,
                        const float *sv, const float *const *dout, float *const *din) {
    attention_softmax_backward_cuda(din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], sv, s->B, s->T,
                                    s->C, s->H, OPT_OF(SoftmaxOpts, s).causal);
}
static size_t softmax_saved(const OpShape *s) {
    return attention_softmax_saved_cuda(s->B, s->T, s->C, s->H);
}
extern "C" const CudaKernels cuda_op_softmax = {softmax_fwd, softmax_bwd, softmax_saved};
