// Pointwise activations: GELU (tanh form), SwiGLU and the sigmoid output gate.
#include "cuda_common.cuh"

#define GELU_K 0.7978845608028654f

__global__ void gelu_forward_kernel(float *out, const float *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    out[i] = 0.5f * x * (1.f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
}

__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i], th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
    float du = GELU_K * (1.f + 3.f * 0.044715f * x * x);
    dinp[i] += dout[i] * (0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * du);
}

__global__ void gelu_erf_forward_kernel(float *out, const float *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    out[i] = 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}

__global__ void gelu_erf_backward_kernel(float *dinp, const float *dout, const float *inp,
                                         size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i], cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;  // 1 / sqrt(2 pi)
    dinp[i] += dout[i] * (cdf + x * pdf);
}

__device__ inline float sigmoidf_(float x) {
    return 1.f / (1.f + expf(-x));
}

__global__ void swiglu_forward_kernel(float *out, const float *inp, int N, int F) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * F) return;
    size_t n = idx / F, i = idx % F;
    float a = inp[n * 2 * F + i], b = inp[n * 2 * F + F + i];
    out[idx] = a * sigmoidf_(a) * b;
}

__global__ void swiglu_backward_kernel(float *dinp, const float *dout, const float *inp, int N,
                                       int F) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * F) return;
    size_t n = idx / F, i = idx % F;
    float a = inp[n * 2 * F + i], b = inp[n * 2 * F + F + i], s = sigmoidf_(a), dy = dout[idx];
    dinp[n * 2 * F + i] += dy * b * s * (1.f + a * (1.f - s));
    dinp[n * 2 * F + F + i] += dy * a * s;
}

__global__ void gate_forward_kernel(float *out, const float *gate_pre, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = sigmoidf_(gate_pre[i]) * x[i];
}

__global__ void gate_backward_kernel(float *dgate_pre, float *dx, const float *dout,
                                     const float *gate_pre, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = sigmoidf_(gate_pre[i]);
    dx[i] += dout[i] * g;
    dgate_pre[i] += dout[i] * x[i] * g * (1.f - g);
}

extern "C" void gelu_forward_cuda(float *out, const float *inp, size_t n) {
    gelu_forward_kernel<<<ceil_div(n, 256), 256>>>(out, inp, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n) {
    gelu_backward_kernel<<<ceil_div(n, 256), 256>>>(dinp, dout, inp, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void gelu_erf_forward_cuda(float *out, const float *inp, size_t n) {
    gelu_erf_forward_kernel<<<ceil_div(n, 256), 256>>>(out, inp, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void gelu_erf_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n) {
    gelu_erf_backward_kernel<<<ceil_div(n, 256), 256>>>(dinp, dout, inp, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void swiglu_forward_cuda(float *out, const float *inp, int N, int F) {
    swiglu_forward_kernel<<<ceil_div((long long)N * F, 256), 256>>>(out, inp, N, F);
    CUDA_LAUNCH_CHECK();
}
extern "C" void swiglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N,
                                     int F) {
    swiglu_backward_kernel<<<ceil_div((long long)N * F, 256), 256>>>(dinp, dout, inp, N, F);
    CUDA_LAUNCH_CHECK();
}
extern "C" void gate_forward_cuda(float *out, const float *gate_pre, const float *x, size_t n) {
    gate_forward_kernel<<<ceil_div(n, 256), 256>>>(out, gate_pre, x, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void gate_backward_cuda(float *dgate_pre, float *dx, const float *dout,
                                   const float *gate_pre, const float *x, size_t n) {
    gate_backward_kernel<<<ceil_div(n, 256), 256>>>(dgate_pre, dx, dout, gate_pre, x, n);
    CUDA_LAUNCH_CHECK();
}
