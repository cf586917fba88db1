// Causal depthwise convolution over time, the twin of kernels/cpu/conv_causal.c:
//   out[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]
#include "cuda_common.cuh"

__global__ void conv_causal_forward_kernel(float *out, const float *x, const float *w, int B, int T,
                                           int Ch, int K) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * Ch) return;
    int c = (int)(idx % Ch), t = (int)(idx / Ch % T);
    size_t row0 = idx / Ch - t;  // (b, 0)
    float acc = 0;
    for (int j = 0; j < K; j++) {
        int src = t - K + 1 + j;
        if (src >= 0) acc += w[(size_t)c * K + j] * x[(row0 + src) * Ch + c];
    }
    out[idx] = acc;
}

// dx[b,s,c] += sum_j w[c,j] dout[b, s+K-1-j, c]: a gather, so no two threads write one element.
__global__ void conv_causal_dx_kernel(float *dx, const float *dout, const float *w, int B, int T,
                                      int Ch, int K) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * Ch) return;
    int c = (int)(idx % Ch), s = (int)(idx / Ch % T);
    size_t row0 = idx / Ch - s;
    float acc = 0;
    for (int j = 0; j < K; j++) {
        int t = s + K - 1 - j;
        if (t < T) acc += w[(size_t)c * K + j] * dout[(row0 + t) * Ch + c];
    }
    dx[idx] += acc;
}

// dw[c,j] += sum_{b,t} dout[b,t,c] x[b,t-K+1+j,c]: one block per (c, j), a fixed-order sum.
__global__ void conv_causal_dw_kernel(float *dw, const float *dout, const float *x, int B, int T,
                                      int Ch, int K) {
    int c = blockIdx.x / K, j = blockIdx.x % K;
    float acc = 0;
    for (size_t bt = threadIdx.x; bt < (size_t)B * T; bt += blockDim.x) {
        int t = (int)(bt % T), src = t - K + 1 + j;
        if (src >= 0) acc += dout[bt * Ch + c] * x[(bt - t + src) * Ch + c];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[blockIdx.x] += acc;
}

extern "C" void conv_causal_forward_cuda(float *out_btc, const float *x_btc, const float *w_ck,
                                         int B, int T, int Ch, int K) {
    conv_causal_forward_kernel<<<ceil_div((long long)B * T * Ch, 256), 256>>>(out_btc, x_btc, w_ck,
                                                                              B, T, Ch, K);
    CUDA_LAUNCH_CHECK();
}

extern "C" void conv_causal_backward_cuda(float *dx_btc, float *dw_ck, const float *dout_btc,
                                          const float *x_btc, const float *w_ck, int B, int T,
                                          int Ch, int K) {
    conv_causal_dx_kernel<<<ceil_div((long long)B * T * Ch, 256), 256>>>(dx_btc, dout_btc, w_ck, B,
                                                                         T, Ch, K);
    CUDA_LAUNCH_CHECK();
    conv_causal_dw_kernel<<<Ch * K, 256>>>(dw_ck, dout_btc, x_btc, B, T, Ch, K);
    CUDA_LAUNCH_CHECK();
}
