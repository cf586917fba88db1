// Hydra attention, the twin of kernels/cpu/attention_hydra.c: per sequence and channel a
// running sum over time, kv_t = sum_{s<=t} kh_s v_s, o_t = qh_t kv_t c_t, with q and k
// cosine-normalised over the C channels; not causal, kv_t is the sum over the whole sequence
// (one extra pass first). One thread per (batch, channel) walks the sequence
// (adjacent threads read adjacent channels of a row, so every step is one coalesced row read).
#include "../attention_hydra.h"
#include "cuda_common.cuh"

#define HYDRA_EPS 1e-6f

// 1 / max(|x|, eps) of the q (which = 0) or k (1) part of every row; one block per row.
__global__ void hydra_inv_norm_kernel(float *inv, const float *qkv, int C, int which) {
    const float *x = qkv + (size_t)blockIdx.x * 3 * C + which * C;
    float s = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) inv[blockIdx.x] = 1.f / fmaxf(sqrtf(s), HYDRA_EPS);
}

// kh v of channel i at row n (kv's term), and do qh c (G's term).
__device__ inline float kv_term(const float *qkv, const float *ik, size_t n, int C, int i) {
    const float *r = qkv + n * 3 * C;
    return r[C + i] * ik[n] * r[2 * C + i];
}
__device__ inline float g_term(const float *dout, const float *qkv, const float *iq, size_t n,
                               int C, int i, float c) {
    return dout[n * C + i] * qkv[n * 3 * C + i] * iq[n] * c;
}

__global__ void hydra_forward_kernel(float *out, const float *qkv, const float *iq, const float *ik,
                                     int B, int T, int C, int norm, int causal) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    int b = idx / C, i = idx % C;
    float kv = 0;
    if (!causal)
        for (int t = 0; t < T; t++) kv += kv_term(qkv, ik, (size_t)b * T + t, C, i);
    for (int t = 0; t < T; t++) {
        size_t n = (size_t)b * T + t;
        if (causal) kv += kv_term(qkv, ik, n, C, i);
        out[n * C + i] =
            qkv[n * 3 * C + i] * iq[n] * (float)hydra_count_scale(norm, causal, t, T) * kv;
    }
}

// dqh_t = do_t kv_t c_t (forward in time); then G_s = sum_{t>=s} do_t qh_t c_t (reverse):
// dkh_s = G_s v_s, dv_s += G_s kh_s.
__global__ void hydra_backward_scan_kernel(float *dqh, float *dkh, float *dqkv, const float *dout,
                                           const float *qkv, const float *iq, const float *ik,
                                           int B, int T, int C, int norm, int causal) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    int b = idx / C, i = idx % C;
    float acc = 0;
    if (!causal)
        for (int t = 0; t < T; t++) acc += kv_term(qkv, ik, (size_t)b * T + t, C, i);
    for (int t = 0; t < T; t++) {
        size_t n = (size_t)b * T + t;
        if (causal) acc += kv_term(qkv, ik, n, C, i);
        dqh[n * C + i] = dout[n * C + i] * acc * (float)hydra_count_scale(norm, causal, t, T);
    }
    acc = 0;
    if (!causal)
        for (int t = 0; t < T; t++)
            acc += g_term(dout, qkv, iq, (size_t)b * T + t, C, i,
                          (float)hydra_count_scale(norm, causal, t, T));
    for (int t = T - 1; t >= 0; t--) {
        size_t n = (size_t)b * T + t;
        const float *r = qkv + n * 3 * C;
        if (causal)
            acc += g_term(dout, qkv, iq, n, C, i, (float)hydra_count_scale(norm, causal, t, T));
        dkh[n * C + i] = acc * r[2 * C + i];
        dqkv[n * 3 * C + 2 * C + i] += acc * r[C + i] * ik[n];
    }
}

// Through u / |u|: du += (duh - (duh . uh) uh) / |u| (duh / eps below eps); one block per row.
__global__ void hydra_norm_backward_kernel(float *dqkv, const float *duh, const float *qkv, int C,
                                           int which) {
    size_t n = blockIdx.x;
    const float *u = qkv + n * 3 * C + which * C, *g = duh + n * C;
    float n2 = 0, dot = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) n2 += u[i] * u[i], dot += g[i] * u[i];
    n2 = block_sum(n2);
    dot = block_sum(dot);
    float norm = sqrtf(n2);
    float *du = dqkv + n * 3 * C + which * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        du[i] += norm <= HYDRA_EPS ? g[i] / HYDRA_EPS : (g[i] - dot / norm * u[i] / norm) / norm;
}

static void inv_norms(float **iq, float **ik, const float *qkv, int N, int C) {
    static float *buf = NULL;
    static size_t have = 0;
    float *b = mt_cuda_grow(&buf, &have, 2 * (size_t)N);
    *iq = b, *ik = b + N;
    hydra_inv_norm_kernel<<<N, 256>>>(*iq, qkv, C, 0);
    CUDA_LAUNCH_CHECK();
    hydra_inv_norm_kernel<<<N, 256>>>(*ik, qkv, C, 1);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_hydra_forward_cuda(float *out_btc, const float *qkv_btc3,
                                             const OpShape *s) {
    const HydraOpts yo = OPT_OF(HydraOpts, s);
    int B = s->B, T = s->T, C = s->C;
    float *iq, *ik;
    inv_norms(&iq, &ik, qkv_btc3, B * T, C);
    hydra_forward_kernel<<<ceil_div((long long)B * C, 128), 128>>>(out_btc, qkv_btc3, iq, ik, B, T,
                                                                   C, yo.hydra_norm, yo.causal);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_hydra_backward_cuda(float *dqkv_btc3, const float *dout_btc,
                                              const float *qkv_btc3, const OpShape *s) {
    const HydraOpts yo = OPT_OF(HydraOpts, s);
    int B = s->B, T = s->T, C = s->C, N = B * T;
    static float *bufs[2];
    static size_t have[2];
    float *dqh = mt_cuda_grow(&bufs[0], &have[0], (size_t)N * C);
    float *dkh = mt_cuda_grow(&bufs[1], &have[1], (size_t)N * C);
    float *iq, *ik;
    inv_norms(&iq, &ik, qkv_btc3, N, C);
    hydra_backward_scan_kernel<<<ceil_div((long long)B * C, 128), 128>>>(
        dqh, dkh, dqkv_btc3, dout_btc, qkv_btc3, iq, ik, B, T, C, yo.hydra_norm, yo.causal);
    CUDA_LAUNCH_CHECK();
    hydra_norm_backward_kernel<<<N, 256>>>(dqkv_btc3, dqh, qkv_btc3, C, 0);
    CUDA_LAUNCH_CHECK();
    hydra_norm_backward_kernel<<<N, 256>>>(dqkv_btc3, dkh, qkv_btc3, C, 1);
    CUDA_LAUNCH_CHECK();
}

// ---- the row's kernels (kernels/cpu/attention_hydra.c has the row)
// -------------------------------
static void hydra_fwd(const OpShape *s, const float *const *in, float *const *out, float *) {
    attention_hydra_forward_cuda(out[0], in[CORE_IN_QKV], s);
}
static void hydra_bwd(const OpShape *s, const float *const *in, const float *const *, const float *,
                      const float *const *dout, float *const *din) {
    attention_hydra_backward_cuda(din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], s);
}
extern "C" const CudaKernels cuda_op_hydra = {hydra_fwd, hydra_bwd, NULL};
