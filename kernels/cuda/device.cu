// CUDA device discovery. The CUDA kernels proper (one .cu per op family, the same file names
// as kernels/cpu/) come with the CUDA backend; this keeps the toolchain, cudart, cuBLAS, cuFFT
// and NCCL compiled and linked in every build where nvcc exists.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cufft.h>
#include <nccl.h>

extern "C" int mt_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

// Versions of the linked libraries, for the start-up log.
extern "C" void mt_cuda_versions(int *runtime, int *cublas, int *nccl) {
    *runtime = 0, *cublas = 0, *nccl = 0;
    cudaRuntimeGetVersion(runtime);
    ncclGetVersion(nccl);
    cublasHandle_t h;
    if (cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
        cublasGetVersion(h, cublas);
        cublasDestroy(h);
    }
    int fft = 0;
    cufftGetVersion(&fft);
}
