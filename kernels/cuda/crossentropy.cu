#include "cuda_common.cuh"

// One block per row; rows with a negative target get loss 0 and no gradient.

// The row's max (subtracted so exp never overflows) and its sum of exp(z - max), block-reduced.
static __device__ float row_expsum(const float *z, int V, float *max) {
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
    mx = block_max(mx);
    float s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(z[i] - mx);
    *max = mx;
    return block_sum(s);
}

__global__ void crossentropy_forward_kernel(float *loss, const float *logits, const int *targets,
                                            int V) {
    int n = blockIdx.x;
    if (targets[n] < 0) {
        if (threadIdx.x == 0) loss[n] = 0;
        return;
    }
    const float *z = logits + (size_t)n * V;
    float mx, s = row_expsum(z, V, &mx);
    if (threadIdx.x == 0) loss[n] = logf(s) + mx - z[targets[n]];
}

__global__ void crossentropy_backward_kernel(float *dlogits, const float *dloss,
                                             const float *logits, const int *targets, int V) {
    int n = blockIdx.x, tgt = targets[n];
    if (tgt < 0) return;
    const float *z = logits + (size_t)n * V;
    float *dz = dlogits + (size_t)n * V;
    float mx, s = row_expsum(z, V, &mx);
    float g = dloss[n], inv = 1.f / s;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        dz[i] += g * (expf(z[i] - mx) * inv - (i == tgt ? 1.f : 0.f));
}

// Label smoothing s (the ViT's training loss), as kernels/cpu/crossentropy.c.
__global__ void ce_smooth_forward_kernel(float *loss, const float *logits, const int *targets,
                                         int V, float s) {
    int n = blockIdx.x;
    if (targets[n] < 0) {
        if (threadIdx.x == 0) loss[n] = 0;
        return;
    }
    const float *z = logits + (size_t)n * V;
    float mx, e = row_expsum(z, V, &mx), zs = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) zs += z[i];
    zs = block_sum(zs);
    if (threadIdx.x == 0) loss[n] = logf(e) + mx - (1.f - s) * z[targets[n]] - s / V * zs;
}

__global__ void ce_smooth_backward_kernel(float *dlogits, const float *dloss, const float *logits,
                                          const int *targets, int V, float s) {
    int n = blockIdx.x, tgt = targets[n];
    if (tgt < 0) return;
    const float *z = logits + (size_t)n * V;
    float *dz = dlogits + (size_t)n * V;
    float mx, e = row_expsum(z, V, &mx);
    float g = dloss[n], inv = 1.f / e, u = s / V;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        dz[i] += g * (expf(z[i] - mx) * inv - u - (i == tgt ? 1.f - s : 0.f));
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

extern "C" void crossentropy_smooth_forward_cuda(float *loss, const float *logits,
                                                 const int *targets, int N, int V,
                                                 double smoothing) {
    if (!N) return;
    ce_smooth_forward_kernel<<<N, 256>>>(loss, logits, targets, V, (float)smoothing);
    CUDA_LAUNCH_CHECK();
}

extern "C" void crossentropy_smooth_backward_cuda(float *dlogits, const float *dloss,
                                                  const float *logits, const int *targets, int N,
                                                  int V, double smoothing) {
    if (!N) return;
    ce_smooth_backward_kernel<<<N, 256>>>(dlogits, dloss, logits, targets, V, (float)smoothing);
    CUDA_LAUNCH_CHECK();
}
