// Rotary embedding (half-split layout), as kernels/cpu/rope.c. Angles in double, as the CPU
// reference computes its table, so parity holds at float rounding.
#include "cuda_common.cuh"

// One thread per (row bt, q or k, head, j < D/2); v is copied by the same launch.
__global__ void rope_kernel(float *out, const float *in, int B, int T, int C, int H, double base,
                            int pos0, float sign, int accumulate) {
    int D = C / H, half = D / 2;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t per_row = (size_t)2 * H * half;
    if (idx >= (size_t)B * T * per_row) return;
    size_t bt = idx / per_row;
    int rem = (int)(idx % per_row), part = rem / (H * half), h = (rem / half) % H, j = rem % half;
    int t = (int)(bt % T);
    double ang = (double)(pos0 + t) * pow(base, -2.0 * j / D);
    float c = (float)cos(ang), s = sign * (float)sin(ang);
    const float *x = in + bt * 3 * C + part * C + h * D;
    float *y = out + bt * 3 * C + part * C + h * D;
    float x1 = x[j], x2 = x[j + half], y1 = x1 * c - x2 * s, y2 = x1 * s + x2 * c;
    if (accumulate) {
        y[j] += y1;
        y[j + half] += y2;
    } else {
        y[j] = y1;
        y[j + half] = y2;
    }
    if (D % 2 && j == half - 1)  // an odd head dim's last dimension passes through
        y[D - 1] = accumulate ? y[D - 1] + x[D - 1] : x[D - 1];
    // v: the first 2*H*half threads of the row cover its C values when D is even.
    for (int i = rem; i < C; i += (int)per_row) {
        float v = in[bt * 3 * C + 2 * C + i];
        out[bt * 3 * C + 2 * C + i] = accumulate ? out[bt * 3 * C + 2 * C + i] + v : v;
    }
}

static void rope(float *out, const float *in, int B, int T, int C, int H, double base, int pos0,
                 float sign, int accumulate) {
    size_t n = (size_t)B * T * 2 * H * ((C / H) / 2);
    rope_kernel<<<ceil_div(n, 256), 256>>>(out, in, B, T, C, H, base, pos0, sign, accumulate);
    CUDA_LAUNCH_CHECK();
}

extern "C" void rope_forward_cuda(float *out_btc3, const float *qkv_btc3, int B, int T, int C,
                                  int H, double base, int pos0) {
    rope(out_btc3, qkv_btc3, B, T, C, H, base, pos0, 1.f, 0);
}

extern "C" void rope_backward_cuda(float *dqkv_btc3, const float *dout_btc3, int B, int T, int C,
                                   int H, double base, int pos0) {
    rope(dqkv_btc3, dout_btc3, B, T, C, H, base, pos0, -1.f, 1);
}
