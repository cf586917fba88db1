// The CUDA backend: device memory, the kernels of kernels/cuda and the CUDA op table, row for
// row the twin of kernels/cpu/backend.c. Everything runs on the legacy default stream, in
// order; only the gradient all-reduce has a stream of its own (comm/comm_nccl.c).
#include <cuda_bf16.h>
#include <math.h>

#include "../backend.h"
#include "cuda_common.cuh"

// The allocation's size sits in a header before the block the caller sees (256 bytes, so
// alignment is kept), so release can count it off (mt_cuda_count_bytes).
enum { ALLOC_HEADER = 256 };

static void *cuda_alloc(size_t bytes) {
    char *p = NULL;
    cudaError_t e = cudaMalloc((void **)&p, bytes + ALLOC_HEADER);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear it: the caller reports the shortage and stops
        return NULL;
    }
    CUDA_CHECK(e);
    CUDA_CHECK(cudaMemset(p, 0, bytes + ALLOC_HEADER));
    CUDA_CHECK(cudaMemcpy(p, &bytes, sizeof(bytes), cudaMemcpyHostToDevice));
    mt_cuda_count_bytes((long long)bytes);
    return p + ALLOC_HEADER;
}
static void cuda_release(void *p) {
    if (!p) return;
    char *base = (char *)p - ALLOC_HEADER;
    size_t bytes;
    CUDA_CHECK(cudaMemcpy(&bytes, base, sizeof(bytes), cudaMemcpyDeviceToHost));
    mt_cuda_count_bytes(-(long long)bytes);
    CUDA_CHECK(cudaFree(base));
}

// The tensor-core peak the issue asks MFU against: an 8192^3 bf16 GEMM with fp32 accumulation
// through cuBLAS, mean of 10 after 3 warm-ups, timed with CUDA events.
static double gemm_peak(void) {
    const int G = 8192;
    size_t n = (size_t)G * G;
    __nv_bfloat16 *a, *b, *c;
    CUDA_CHECK(cudaMalloc((void **)&a, n * sizeof(*a)));
    CUDA_CHECK(cudaMalloc((void **)&b, n * sizeof(*b)));
    CUDA_CHECK(cudaMalloc((void **)&c, n * sizeof(*c)));
    CUDA_CHECK(cudaMemset(a, 0x3c, n * sizeof(*a)));  // 0x3c3c: about 0.0115, finite
    CUDA_CHECK(cudaMemset(b, 0x3c, n * sizeof(*b)));
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    const float one = 1, zero = 0;
    cudaEvent_t t0, t1;
    CUDA_CHECK(cudaEventCreate(&t0));
    CUDA_CHECK(cudaEventCreate(&t1));
    for (int rep = 0; rep < 13; rep++) {
        if (rep == 3) CUDA_CHECK(cudaEventRecord(t0, 0));
        CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, G, G, G, &one, a, CUDA_R_16BF, G, b,
                                  CUDA_R_16BF, G, &zero, c, CUDA_R_16BF, G, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    }
    CUDA_CHECK(cudaEventRecord(t1, 0));
    CUDA_CHECK(cudaEventSynchronize(t1));
    float ms;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    cublasDestroy(h);
    cudaEventDestroy(t0), cudaEventDestroy(t1);
    cudaFree(a), cudaFree(b), cudaFree(c);
    return 10 * 2.0 * G * G * (double)G / (ms * 1e-3);
}
static void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void cuda_download(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
static void cuda_synchronize(void) {
    CUDA_CHECK(cudaDeviceSynchronize());
}

static void zero(float *x, size_t n) {
    if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * n, 0));
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}
static void add(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    add_kernel<<<ceil_div(n, 256), 256>>>(out, a, b, n);
    CUDA_LAUNCH_CHECK();
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}
static void scale(float *x, float s, size_t n) {
    if (!n) return;
    scale_kernel<<<ceil_div(n, 256), 256>>>(x, s, n);
    CUDA_LAUNCH_CHECK();
}

__global__ void positions_forward_kernel(float *x, const float *wpe, int N, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    x[i] += wpe[(n % T) * C + c];
}
static void positions_forward(float *x, const float *wpe, int N, int T, int C) {
    positions_forward_kernel<<<ceil_div((long long)N * C, 256), 256>>>(x, wpe, N, T, C);
    CUDA_LAUNCH_CHECK();
}

// One thread per element of dwpe, summing its rows in order: no atomics, the same every run.
__global__ void positions_backward_kernel(float *dwpe, const float *dx, int N, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    size_t t = i / C, c = i % C;
    float acc = 0;
    for (size_t n = t; n < (size_t)N; n += T) acc += dx[n * C + c];
    dwpe[i] += acc;
}
static void positions_backward(float *dwpe, const float *dx, int N, int T, int C) {
    positions_backward_kernel<<<ceil_div((long long)T * C, 256), 256>>>(dwpe, dx, N, T, C);
    CUDA_LAUNCH_CHECK();
}

__global__ void loss_seed_kernel(float *dlosses, const int *targets, float s, int N) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) dlosses[n] = targets[n] >= 0 ? s : 0.f;
}
static void loss_seed(float *dlosses, const int *targets, float s, int N) {
    loss_seed_kernel<<<ceil_div(N, 256), 256>>>(dlosses, targets, s, N);
    CUDA_LAUNCH_CHECK();
}

// One block per row; ties go to the lowest index, as the CPU loop's strict '>' does.
__global__ void argmax_kernel(int *pred, const float *logits, const int *targets, int V) {
    int n = blockIdx.x;
    if (targets[n] < 0) {
        if (threadIdx.x == 0) pred[n] = -1;
        return;
    }
    const float *z = logits + (size_t)n * V;
    float best = -INFINITY;
    int best_i = V;
    // As the CPU loop: NaN never wins (no comparison with it is true), and a NaN at index 0
    // keeps index 0.
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        if (z[v] == z[v] && (best_i == V || z[v] > best)) best = z[v], best_i = v;
    __shared__ float vals[256];
    __shared__ int idxs[256];
    vals[threadIdx.x] = best, idxs[threadIdx.x] = best_i;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ov = vals[threadIdx.x + s];
            int oi = idxs[threadIdx.x + s];
            if (ov > vals[threadIdx.x] || (ov == vals[threadIdx.x] && oi < idxs[threadIdx.x]))
                vals[threadIdx.x] = ov, idxs[threadIdx.x] = oi;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) pred[n] = z[0] != z[0] || idxs[0] == V ? 0 : idxs[0];
}
static void argmax(int *pred, const float *logits, const int *targets, int N, int V) {
    argmax_kernel<<<N, 256>>>(pred, logits, targets, V);
    CUDA_LAUNCH_CHECK();
}

// Sum of squares in double, in a fixed order (per-block partials, then one block over them):
// every rank holds the same reduced gradient, so each must compute the bitwise same norm and
// take the same clip and skip decisions.
enum { NORM_BLOCKS = 1024, NORM_THREADS = 256 };
__global__ void norm_sq_partial_kernel(double *partial, const float *x, size_t n) {
    __shared__ double sums[NORM_THREADS];
    double acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += (double)x[i] * x[i];
    sums[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sums[threadIdx.x] += sums[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}
__global__ void sum_partials_kernel(double *out, const double *partial, int n) {
    __shared__ double sums[NORM_THREADS];
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    sums[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sums[threadIdx.x] += sums[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = sums[0];
}
static double norm_sq(const float *x, size_t n) {
    static double *partial = NULL;
    if (!partial) partial = (double *)mt_cuda_temp_alloc(sizeof(double) * (NORM_BLOCKS + 1));
    norm_sq_partial_kernel<<<NORM_BLOCKS, NORM_THREADS>>>(partial, x, n);
    CUDA_LAUNCH_CHECK();
    sum_partials_kernel<<<1, NORM_THREADS>>>(partial + NORM_BLOCKS, partial, NORM_BLOCKS);
    CUDA_LAUNCH_CHECK();
    double s;
    CUDA_CHECK(cudaMemcpy(&s, partial + NORM_BLOCKS, sizeof(s), cudaMemcpyDeviceToHost));
    return s;
}

// Events are created on first use and kept: a profiled step records a few dozen of them.
static cudaEvent_t mark_events[BACKEND_MARKS];
static void mark(int i) {
    if (!mark_events[i]) CUDA_CHECK(cudaEventCreate(&mark_events[i]));
    CUDA_CHECK(cudaEventRecord(mark_events[i], 0));
}
static double mark_ms(int a, int b) {
    float ms;
    CUDA_CHECK(cudaEventSynchronize(mark_events[b]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, mark_events[a], mark_events[b]));
    return ms;
}

static size_t cuda_memory_available(void) {
    size_t free_bytes = 0, total = 0;
    return cudaMemGetInfo(&free_bytes, &total) == cudaSuccess ? free_bytes : 0;
}

extern "C" {
static const Backend_f32 CUDA_BACKEND = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .zero = zero,
    .add = add,
    .scale = scale,
    .positions_forward = positions_forward,
    .positions_backward = positions_backward,
    .loss_seed = loss_seed,
    .argmax = argmax,
    .norm_sq = norm_sq,
    .adamw = adamw_update_cuda,
    .matmul_forward = matmul_forward_cuda,
    .matmul_backward = matmul_backward_cuda,
    .rmsnorm_forward = rmsnorm_forward_cuda,
    .rmsnorm_backward = rmsnorm_backward_cuda,
    .layernorm_forward = layernorm_forward_cuda,
    .layernorm_backward = layernorm_backward_cuda,
    .bias_forward = bias_forward_cuda,
    .bias_backward = bias_backward_cuda,
    .embedding_forward = embedding_forward_cuda,
    .embedding_backward = embedding_backward_cuda,
    .gelu_forward = gelu_forward_cuda,
    .gelu_backward = gelu_backward_cuda,
    .gelu_erf_forward = gelu_erf_forward_cuda,
    .gelu_erf_backward = gelu_erf_backward_cuda,
    .swiglu_forward = swiglu_forward_cuda,
    .swiglu_backward = swiglu_backward_cuda,
    .gate_forward = gate_forward_cuda,
    .gate_backward = gate_backward_cuda,
    .rope_forward = rope_forward_cuda,
    .rope_backward = rope_backward_cuda,
    .conv_causal_forward = conv_causal_forward_cuda,
    .conv_causal_backward = conv_causal_backward_cuda,
    .crossentropy_forward = crossentropy_forward_cuda,
    .crossentropy_backward = crossentropy_backward_cuda,
    .dropout_forward = dropout_forward_cuda,
    .dropout_backward = dropout_backward_cuda,
    .mean_pool_forward = mean_pool_forward_cuda,
    .mean_pool_backward = mean_pool_backward_cuda,
    .crossentropy_smooth_forward = crossentropy_smooth_forward_cuda,
    .crossentropy_smooth_backward = crossentropy_smooth_backward_cuda,
    .gemm_peak = gemm_peak,
    .mark = mark,
    .mark_ms = mark_ms,
    .memory_peak = mt_cuda_memory_peak,
    .memory_available = cuda_memory_available,
    .op_row = cuda_op_row,
};
const Backend_f32 *const BACKEND_CUDA = &CUDA_BACKEND;
}
