#include "cuda_common.cuh"

__global__ void embedding_forward_kernel(float *out, const int *ids, const float *wte, int N,
                                         int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * C) return;
    size_t n = idx / C, i = idx % C;
    out[idx] = wte[(size_t)ids[n] * C + i];
}

// Thread i owns channel i of every row: rows with the same id collide only within a thread,
// where they are added in row order, so the result is deterministic (no float atomics).
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *ids, int N,
                                          int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    for (int n = 0; n < N; n++) dwte[(size_t)ids[n] * C + i] += dout[(size_t)n * C + i];
}

extern "C" void embedding_forward_cuda(float *out, const int *ids, const float *wte, int N, int C) {
    embedding_forward_kernel<<<ceil_div((long long)N * C, 256), 256>>>(out, ids, wte, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void embedding_backward_cuda(float *dwte, const float *dout, const int *ids, int N,
                                        int C) {
    embedding_backward_kernel<<<ceil_div(C, 64), 64>>>(dwte, dout, ids, N, C);
    CUDA_LAUNCH_CHECK();
}
