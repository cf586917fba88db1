// AdamW on the device: the same float arithmetic as the CPU row (kernels/cpu/backend.c), so a
// GPU step moves the parameters as the CPU one does up to the gradients' rounding.
#include "cuda_common.cuh"

__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n,
                             float step_size, float b1, float b2, float eps, float decay,
                             float inv_c2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grads[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    params[i] -= step_size * m[i] / (sqrtf(v[i] * inv_c2) + eps) + decay * params[i];
}

extern "C" void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n,
                                  float step_size, float beta1, float beta2, float eps, float decay,
                                  float inv_bias_c2) {
    if (!n) return;
    adamw_kernel<<<ceil_div(n, 256), 256>>>(params, grads, m, v, n, step_size, beta1, beta2, eps,
                                            decay, inv_bias_c2);
    CUDA_LAUNCH_CHECK();
}
