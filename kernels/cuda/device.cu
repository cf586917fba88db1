// Device discovery, the process-wide cuBLAS handle and the fatal-error path of the CUDA code.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend.h"
#include "cuda_common.cuh"

static void exit_hook(int code) {
    exit(code);
}
extern "C" {
void (*mt_cuda_fatal_hook)(int code) = exit_hook;
int mt_cuda_rank = 0;

int mt_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

void mt_cuda_device_name(int dev, char *name, size_t n) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        snprintf(name, n, "%s", prop.name);
    else
        snprintf(name, n, "unknown");
}

void mt_cuda_device_uuid(unsigned char uuid[16]) {
    int dev;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    memcpy(uuid, prop.uuid.bytes, 16);
}

void mt_cuda_fail(const char *call, const char *what, const char *file, int line) {
    fprintf(stderr, "madtrain: error: [rank %d] %s failed: %s (%s:%d)\n", mt_cuda_rank, call, what,
            file, line);
    fflush(stderr);
    mt_cuda_fatal_hook(1);
}
}

static int precision = MT_FP32;

// Device bytes held by madtrain's own allocations (the backend table's and the kernels' work
// buffers and temporaries), for the benchmark's peak-memory column.
static size_t bytes_in_use = 0, bytes_peak = 0;

extern "C" void mt_cuda_count_bytes(long long delta) {
    bytes_in_use += delta;
    if (bytes_in_use > bytes_peak) bytes_peak = bytes_in_use;
}

extern "C" size_t mt_cuda_memory_peak(int reset) {
    size_t peak = bytes_peak;
    if (reset) bytes_peak = bytes_in_use;
    return peak;
}

// Stream-ordered (cudaMallocAsync on the default stream): no device-wide synchronisation, so a
// temporary never stalls a gradient bucket in flight on the NCCL stream.
void *mt_cuda_temp_alloc(size_t bytes) {
    void *p;
    CUDA_CHECK(cudaMallocAsync(&p, bytes ? bytes : 1, 0));
    mt_cuda_count_bytes((long long)bytes);
    return p;
}

void mt_cuda_temp_free(void *p, size_t bytes) {
    CUDA_CHECK(cudaFreeAsync(p, 0));
    mt_cuda_count_bytes(-(long long)bytes);
}

float *mt_cuda_grow(float **buf, size_t *have, size_t want) {
    if (want > *have) {
        if (*buf) mt_cuda_temp_free(*buf, sizeof(float) * *have);
        *buf = (float *)mt_cuda_temp_alloc(sizeof(float) * want);
        *have = want;
    }
    return *buf;
}

cublasHandle_t mt_cublas(void) {
    static cublasHandle_t handle = NULL;
    static int mode = -1;
    if (!handle) CUBLAS_CHECK(cublasCreate(&handle));
    if (mode != precision) {
        // fp32 reference products: no TF32, so parity with the CPU holds at 1e-5; bf16 asks for
        // tensor cores through the compute type, which pedantic mode would refuse.
        CUBLAS_CHECK(cublasSetMathMode(
            handle, precision == MT_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
        mode = precision;
    }
    return handle;
}

extern "C" void mt_cuda_set_precision(int p) {
    precision = p;
}

cublasStatus_t mt_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                       int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                       const float *beta, float *C, int ldc) {
    if (precision == MT_FP32)
        return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C,
                        CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t mt_gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                       int m, int n, int k, const float *alpha, const float *A,
                                       int lda, long long sa, const float *B, int ldb, long long sb,
                                       const float *beta, float *C, int ldc, long long sc,
                                       int batch) {
    if (precision == MT_FP32)
        return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C,
                                         ldc, sc, batch);
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B,
                                      CUDA_R_32F, ldb, sb, beta, C, CUDA_R_32F, ldc, sc, batch,
                                      CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
}
