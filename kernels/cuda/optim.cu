// AdamW on the device, the same update as src/optim.c (decoupled decay, bias correction).
#include "cuda_common.cuh"

__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float decay,
                             float bias_c1, float bias_c2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grads[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    params[i] -= (lr / bias_c1) * m[i] / (sqrtf(v[i] / bias_c2) + eps) + lr * decay * params[i];
}

extern "C" void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n,
                                  float lr, float beta1, float beta2, float eps, float decay,
                                  float bias_c1, float bias_c2) {
    adamw_kernel<<<ceil_div(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps, decay,
                                            bias_c1, bias_c2);
    CUDA_LAUNCH_CHECK();
}
