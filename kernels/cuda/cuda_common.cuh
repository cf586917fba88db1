// Shared by the CUDA kernels: checked calls that name the call, file, line and rank and end
// every rank (a failed kernel must not leave the others waiting in a collective).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "ops_cuda.h"

#define CUDA_CHECK(call)                                                       \
    do {                                                                       \
        cudaError_t err_ = (call);                                             \
        if (err_ != cudaSuccess)                                               \
            mt_cuda_fail(#call, cudaGetErrorString(err_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(call)                                                       \
    do {                                                                         \
        cublasStatus_t st_ = (call);                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                        \
            mt_cuda_fail(#call, cublasGetStatusString(st_), __FILE__, __LINE__); \
    } while (0)

// Launch errors surface at the next call; checking right after each launch names the kernel.
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

static inline int ceil_div(long long a, long long b) {
    return (int)((a + b - 1) / b);
}

cublasHandle_t mt_cublas(void);

// Work memory of the kernels, counted with the backend's allocations (mt_cuda_memory_peak):
// temporaries (stream-ordered) and work buffers kept and grown on demand across calls.
void *mt_cuda_temp_alloc(size_t bytes);
void mt_cuda_temp_free(void *p, size_t bytes);
float *mt_cuda_grow(float **buf, size_t *have, size_t want);

// Every matrix product of the CUDA kernels goes through these two, with cublasSgemm's and
// cublasSgemmStridedBatched's arguments: fp32 (pedantic, no TF32) for parity with the CPU, or,
// under mt_cuda_set_precision(MT_BF16), bf16 tensor-core products with fp32 accumulation on the
// same fp32 buffers (CUBLAS_COMPUTE_32F_FAST_16BF).
cublasStatus_t mt_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                       int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                       const float *beta, float *C, int ldc);
cublasStatus_t mt_gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                       int m, int n, int k, const float *alpha, const float *A,
                                       int lda, long long sa, const float *B, int ldb, long long sb,
                                       const float *beta, float *C, int ldc, long long sc,
                                       int batch);

// Block-wide sum of one float per thread (blockDim.x a multiple of 32, at most 1024).
__device__ inline float block_sum(float v) {
    __shared__ float warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // warp_sums may still be read by a previous call
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    float total = 0;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) total += warp_sums[w];
    return total;
}

__device__ inline float block_max(float v) {
    __shared__ float warp_max[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) m = fmaxf(m, warp_max[w]);
    return m;
}

// A parameter's gradient from per-(batch, entry) partials: dst[i] += sum_b part[b stride + i]
// over b in order, one thread per entry, so the sum is bitwise reproducible (atomics would
// not be). The mixers whose backward leaves one partial per batch row and parameter entry
// (decay, gated_deltanet, gla) end with it.
static __global__ void sum_batch_partials_kernel(float *dst, const float *part, int B, int n,
                                                 size_t stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float sum = 0.f;
    for (int b = 0; b < B; b++) sum += part[(size_t)b * stride + i];
    dst[i] += sum;
}

static inline void sum_batch_partials(float *dst, const float *part, int B, int n, size_t stride) {
    sum_batch_partials_kernel<<<ceil_div(n, 64), 64>>>(dst, part, B, n, stride);
    CUDA_CHECK(cudaGetLastError());
}
