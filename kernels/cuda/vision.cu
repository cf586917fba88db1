// CUDA twins of kernels/cpu/vision.c: dropout (the same counter-based mask, bit for bit), mean
// pooling and cross-entropy with label smoothing.
#include <string.h>

#include "../rng.h"
#include "../vision.h"
#include "cuda_common.cuh"

// kernels/rng.h's rng_u64, as device code (the host header's functions are not __device__).
__device__ inline uint64_t dev_rng_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
__device__ inline uint64_t dev_rng_u64(uint64_t key, uint64_t i) {
    return dev_rng_mix(key ^ dev_rng_mix(i));
}

__global__ void dropout_apply_kernel(float *out, const float *in, size_t n, uint64_t key,
                                     uint64_t idx0, uint64_t thr, float keep_scale,
                                     int accumulate) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int keep = (dev_rng_u64(key, idx0 + i) >> 11) >= thr;
    if (accumulate) {
        if (keep) out[i] += in[i] * keep_scale;
    } else {
        out[i] = keep ? in[i] * keep_scale : 0.f;
    }
}

extern "C" void dropout_forward_cuda(float *out, const float *in, size_t rows, int width, double p,
                                     uint64_t key, uint64_t row0) {
    size_t n = rows * (size_t)width;
    if (!n) return;
    dropout_apply_kernel<<<ceil_div((long long)n, 256), 256>>>(
        out, in, n, key, row0 * (uint64_t)width, dropout_threshold(p), (float)(1.0 / (1.0 - p)), 0);
    CUDA_LAUNCH_CHECK();
}

extern "C" void dropout_backward_cuda(float *din, const float *dout, size_t rows, int width,
                                      double p, uint64_t key, uint64_t row0) {
    size_t n = rows * (size_t)width;
    if (!n) return;
    dropout_apply_kernel<<<ceil_div((long long)n, 256), 256>>>(
        din, dout, n, key, row0 * (uint64_t)width, dropout_threshold(p), (float)(1.0 / (1.0 - p)),
        1);
    CUDA_LAUNCH_CHECK();
}

// One thread per (b, c), summing its T positions in order (as the CPU does, in float here).
__global__ void mean_pool_forward_kernel(float *out, const float *x, int B, int T, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * C) return;
    int b = i / C, c = i % C;
    float s = 0;
    for (int t = 0; t < T; t++) s += x[((size_t)b * T + t) * C + c];
    out[i] = s / T;
}
__global__ void mean_pool_backward_kernel(float *dx, const float *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * T * C) return;
    size_t b = i / ((size_t)T * C), c = i % C;
    dx[i] += dout[b * C + c] / T;
}
extern "C" void mean_pool_forward_cuda(float *out_bc, const float *x_btc, int B, int T, int C) {
    mean_pool_forward_kernel<<<ceil_div((long long)B * C, 256), 256>>>(out_bc, x_btc, B, T, C);
    CUDA_LAUNCH_CHECK();
}
extern "C" void mean_pool_backward_cuda(float *dx_btc, const float *dout_bc, int B, int T, int C) {
    mean_pool_backward_kernel<<<ceil_div((long long)B * T * C, 256), 256>>>(dx_btc, dout_bc, B, T,
                                                                            C);
    CUDA_LAUNCH_CHECK();
}

// ---- rows ---------------------------------------------------------------------------------
#define N_ROWS(s) ((size_t)(s)->B * (s)->T)
typedef const float *const *In;
typedef float *const *Out;

static void dropout_fwd(const OpShape *s, In in, Out out, float *) {
    DropoutOpts o = OPT_OF(DropoutOpts, s);
    dropout_forward_cuda(out[0], in[0], N_ROWS(s), s->C, o.p, rng_key((uint64_t)o.key, 0, 0, 0), 1);
}
static void dropout_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    DropoutOpts o = OPT_OF(DropoutOpts, s);
    dropout_backward_cuda(din[0], dout[0], N_ROWS(s), s->C, o.p, rng_key((uint64_t)o.key, 0, 0, 0),
                          1);
}
static void pool_fwd(const OpShape *s, In in, Out out, float *) {
    mean_pool_forward_cuda(out[0], in[0], s->B, s->T, s->C);
}
static void pool_bwd(const OpShape *s, In, In, const float *, In dout, Out din) {
    mean_pool_backward_cuda(din[0], dout[0], s->B, s->T, s->C);
}
static void ces_fwd(const OpShape *s, In in, Out out, float *) {
    crossentropy_smooth_forward_cuda(out[0], in[0], s->ids, s->B * s->T, s->V,
                                     OPT_OF(SmoothOpts, s).smoothing);
}
static void ces_bwd(const OpShape *s, In in, In, const float *, In dout, Out din) {
    crossentropy_smooth_backward_cuda(din[0], dout[0], in[0], s->ids, s->B * s->T, s->V,
                                      OPT_OF(SmoothOpts, s).smoothing);
}

extern "C" const CudaKernels cuda_op_dropout = {dropout_fwd, dropout_bwd, NULL};
extern "C" const CudaKernels cuda_op_mean_pool = {pool_fwd, pool_bwd, NULL};
extern "C" const CudaKernels cuda_op_crossentropy_smooth = {ces_fwd, ces_bwd, NULL};
