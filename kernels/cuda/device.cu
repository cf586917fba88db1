// Device discovery, the process-wide cuBLAS handle and the fatal-error path of the CUDA code.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_common.cuh"

static void exit_hook(int code) { exit(code); }
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
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) snprintf(name, n, "%s", prop.name);
    else snprintf(name, n, "unknown");
}

void mt_cuda_fail(const char *call, const char *what, const char *file, int line) {
    fprintf(stderr, "madtrain: error: [rank %d] %s failed: %s (%s:%d)\n", mt_cuda_rank, call, what,
            file, line);
    fflush(stderr);
    mt_cuda_fatal_hook(1);
}
}

cublasHandle_t mt_cublas(void) {
    static cublasHandle_t handle = NULL;
    if (!handle) {
        CUBLAS_CHECK(cublasCreate(&handle));
        // fp32 reference products: no TF32, so parity with the CPU holds at 1e-5.
        CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH));
    }
    return handle;
}
