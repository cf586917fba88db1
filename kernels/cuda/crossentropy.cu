#include "cuda_common.cuh"

// One block per row; rows with a negative target get loss 0 and no gradient.
__global__ void crossentropy_forward_kernel(float *loss, const float *logits, const int *targets,
                                            int V) {
    int n = blockIdx.x;
    if (targets[n] < 0) {
        if (threadIdx.x == 0) loss[n] = 0;
        return;
    }
    const float *z = logits + (size_t)n * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
    mx = block_max(mx);
    float s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(z[i] - mx);
    s = block_sum(s);
    if (threadIdx.x == 0) loss[n] = logf(s) + mx - z[targets[n]];
}

__global__ void crossentropy_backward_kernel(float *dlogits, const float *dloss,
                                             const float *logits, const int *targets, int V) {
    int n = blockIdx.x, tgt = targets[n];
    if (tgt < 0) return;
    const float *z = logits + (size_t)n * V;
    float *dz = dlogits + (size_t)n * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
    mx = block_max(mx);
    float s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(z[i] - mx);
    s = block_sum(s);
    float g = dloss[n], inv = 1.f / s;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        dz[i] += g * (expf(z[i] - mx) * inv - (i == tgt ? 1.f : 0.f));
}

extern "C" void crossentropy_forward_cuda(float *loss, const float *logits, const int *targets,
                                          int N, int V) {
    crossentropy_forward_kernel<<<N, 256>>>(loss, logits, targets, V);
    CUDA_LAUNCH_CHECK();
}

extern "C" void crossentropy_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                           const int *targets, int N, int V) {
    crossentropy_backward_kernel<<<N, 256>>>(dlogits, dloss, logits, targets, V);
    CUDA_LAUNCH_CHECK();
}
