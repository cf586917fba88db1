// LinOSS, the twin of kernels/cpu/ssm_linoss.c: the same inputs, saved entering states and
// gradients, through the chunked scan of osc_scan.cuh. One kernel turns the parameters into
// each oscillator's M, input coefficients and their derivatives in Delta and A; one thread per
// oscillator sums its lanes' partials (batch rows, then Re / Im, then chunks: the CPU's order).
#include "../ssm_osc.h"
#include "osc_scan.cuh"

enum { LO_COEF = 20 };  // m[4], c[2], dm/dDelta[4], dc/dDelta[2], dm/dA[4], dc/dA[2]

__global__ void linoss_coef_kernel(float *coef, const float *a_hat, const float *steps, int m,
                                   int form) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= m) return;
    float A = a_hat[p] > 0.f ? a_hat[p] : 0.f, D = 1.f / (1.f + expf(-steps[p]));
    float *k = coef + (size_t)p * LO_COEF;
    if (form == LINOSS_IM) {
        float S = 1.f / (1.f + D * D * A), S_d = -2.f * D * A * S * S, S_a = -D * D * S * S;
        float v[LO_COEF] = {
            S,   -D * A * S,           D * S,       S,   D * S,       D * D * S,
            S_d, -A * S - D * A * S_d, S + D * S_d, S_d, S + D * S_d, 2.f * D * S + D * D * S_d,
            S_a, -D * S - D * A * S_a, D * S_a,     S_a, D * S_a,     D * D * S_a};
        for (int i = 0; i < LO_COEF; i++) k[i] = v[i];
    } else {
        float v[LO_COEF] = {1.f, -D * A, D,   1.f - D * D * A, D,   D * D,
                            0.f, -A,     1.f, -2.f * D * A,    1.f, 2.f * D,
                            0.f, -D,     0.f, -D * D,          0.f, 0.f};
        for (int i = 0; i < LO_COEF; i++) k[i] = v[i];
    }
}

struct LinossMx {
    OscDims d;
    const float *coef, *u, *gout;  // gout: the output's gradient
    float *out, *din;
    __device__ void step(int b, int lane, int t, float *m, float *f) const {
        const float *k = coef + (size_t)(lane % d.m) * LO_COEF;
        float ur = u[((size_t)b * d.T + t) * d.W + lane];
        m[0] = k[0], m[1] = k[1], m[2] = k[2], m[3] = k[3];
        f[0] = k[4] * ur, f[1] = k[5] * ur;
    }
    __device__ void emit(int b, int lane, int t, float, float s1) const {
        out[((size_t)b * d.T + t) * d.W + lane] = s1;
    }
    __device__ void dout(int b, int lane, int t, float &d0, float &d1) const {
        d0 = 0.f, d1 = gout[((size_t)b * d.T + t) * d.W + lane];
    }
    __device__ void chain(int b, int lane, int t, const float *, float s0, float s1, float g0,
                          float g1, float *part) const {
        const float *k = coef + (size_t)(lane % d.m) * LO_COEF;
        size_t at = ((size_t)b * d.T + t) * d.W + lane;
        float ur = u[at];
        part[0] += g0 * s0, part[1] += g0 * s1, part[2] += g1 * s0, part[3] += g1 * s1;
        part[4] += g0 * ur, part[5] += g1 * ur;
        din[at] += k[4] * g0 + k[5] * g1;
    }
};

// u passes through to the output's last C columns (the layer's W_o reads them as the skip D).
__global__ void osc_skip_kernel(float *dst, const float *src, OscDims d, int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.B * d.T * d.C) return;
    size_t at = (size_t)(i / d.C) * d.W + 2 * d.m + (size_t)(i % d.C);
    dst[at] = add ? dst[at] + src[at] : src[at];
}

__global__ void linoss_param_grad_kernel(float *da_hat, float *dsteps, const float *part,
                                         const float *coef, const float *a_hat, const float *steps,
                                         OscDims d) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= d.m) return;
    float acc[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (int b = 0; b < d.B; b++)
        for (int half = 0; half < 2; half++)
            for (int c = 0; c < d.nc; c++) {
                const float *q = part + (((size_t)b * 2 * d.m + half * d.m + p) * d.nc + c) * 6;
                for (int i = 0; i < 6; i++) acc[i] += q[i];
            }
    const float *k = coef + (size_t)p * LO_COEF;
    float g_delta = 0.f, g_a = 0.f;
    for (int i = 0; i < 4; i++) g_delta += acc[i] * k[6 + i], g_a += acc[i] * k[12 + i];
    for (int i = 0; i < 2; i++) g_delta += acc[4 + i] * k[10 + i], g_a += acc[4 + i] * k[16 + i];
    float D = 1.f / (1.f + expf(-steps[p]));
    da_hat[p] += a_hat[p] > 0.f ? g_a : 0.f;
    dsteps[p] += g_delta * D * (1.f - D);
}

static float *linoss_coefs(const OscDims &d, const float *const *in) {
    static float *buf;
    static size_t have;
    float *coef = mt_cuda_grow(&buf, &have, (size_t)d.m * LO_COEF);
    linoss_coef_kernel<<<ceil_div(d.m, 64), 64>>>(coef, in[CORE_IN_PARAMS], in[CORE_IN_PARAMS + 1],
                                                  d.m, d.form);
    CUDA_LAUNCH_CHECK();
    return coef;
}

static void linoss_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    OscDims d = osc_dims(s);
    LinossMx mx = {d, linoss_coefs(d, in), in[CORE_IN_QKV], NULL, out[0], NULL};
    osc_forward_cuda(mx, OscGrid{d.B, d.T, 2 * d.m, d.L, d.nc, 6}, sv);
    osc_skip_kernel<<<ceil_div((long long)d.B * d.T * d.C, 128), 128>>>(out[0], in[CORE_IN_QKV], d,
                                                                        0);
    CUDA_LAUNCH_CHECK();
}

static void linoss_bwd(const OpShape *s, const float *const *in, const float *const *,
                       const float *sv, const float *const *dout, float *const *din) {
    OscDims d = osc_dims(s);
    float *coef = linoss_coefs(d, in), *part;
    LinossMx mx = {d, coef, in[CORE_IN_QKV], dout[0], NULL, din[CORE_IN_QKV]};
    osc_backward_cuda(mx, OscGrid{d.B, d.T, 2 * d.m, d.L, d.nc, 6}, sv, &part);
    osc_skip_kernel<<<ceil_div((long long)d.B * d.T * d.C, 128), 128>>>(din[CORE_IN_QKV], dout[0],
                                                                        d, 1);
    CUDA_LAUNCH_CHECK();
    linoss_param_grad_kernel<<<ceil_div(d.m, 64), 64>>>(
        din[CORE_IN_PARAMS], din[CORE_IN_PARAMS + 1], part, coef, in[CORE_IN_PARAMS],
        in[CORE_IN_PARAMS + 1], d);
    CUDA_LAUNCH_CHECK();
}

extern "C" const CudaKernels cuda_op_linoss = {linoss_fwd, linoss_bwd, NULL};
