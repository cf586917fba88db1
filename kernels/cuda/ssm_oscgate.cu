// OscGate, both rows (the stable complex-diagonal `oscgate` and the experiment's `oscgate_mve`),
// the twin of kernels/cpu/ssm_oscgate.c: the same inputs, saved entering states and gradients,
// through the chunked scan of osc_scan.cuh; the biases' gradients are summed per oscillator
// over batch rows, then chunks (the CPU's order).
#include "../ssm_osc.h"
#include "osc_scan.cuh"

// One step's M from the pre-activations, and dM/d(om_pre), dM/d(ze_pre) (ssm_oscgate.c og_step).
__device__ inline void og_step(int mve, float dt, float om_pre, float ze_pre, float *m,
                               float *dm_dom, float *dm_dze) {
    float sp = om_pre > 20.f ? om_pre : log1pf(expf(om_pre));
    float w = sp;
    int clamped = 0;
    if (w < (float)OSC_OMEGA_MIN) w = (float)OSC_OMEGA_MIN, clamped = 1;
    if (w > (float)OSC_OMEGA_MAX) w = (float)OSC_OMEGA_MAX, clamped = 1;
    float dw = clamped ? 0.f : 1.f / (1.f + expf(-om_pre));
    float z = 1.f / (1.f + expf(-ze_pre)), dz = z * (1.f - z), k = 1.f - z;
    float S = 1.f / (1.f + dt * dt * w * w), S_w = -2.f * dt * dt * w * S * S;
    if (!mve) {
        float a = k * S, c = k * S * dt * w;
        float a_w = k * S_w, c_w = k * dt * (S + w * S_w), a_z = -S, c_z = -S * dt * w;
        m[0] = a, m[1] = -c, m[2] = c, m[3] = a;
        dm_dom[0] = a_w * dw, dm_dom[1] = -c_w * dw, dm_dom[2] = c_w * dw, dm_dom[3] = a_w * dw;
        dm_dze[0] = a_z * dz, dm_dze[1] = -c_z * dz, dm_dze[2] = c_z * dz, dm_dze[3] = a_z * dz;
    } else {
        float e[4] = {S, -dt * w * w * S, dt * S, S};
        float e_w[4] = {S_w, -dt * (2.f * w * S + w * w * S_w), dt * S_w, S_w};
        for (int i = 0; i < 4; i++) {
            m[i] = k * e[i];
            dm_dom[i] = k * e_w[i] * dw;
            dm_dze[i] = -e[i] * dz;
        }
    }
}

struct OgMx {
    OscDims d;
    int mve;
    const float *b_in, *pre, *b_om, *b_ze, *gout;  // gout: the output's gradient
    float *out, *din, *dpre;
    __device__ void pre_at(int b, int j, int t, float &om, float &ze) const {
        const float *p = pre + ((size_t)b * d.T + t) * 2 * d.m;
        om = p[j] + b_om[j], ze = p[d.m + j] + b_ze[j];
    }
    __device__ void step(int b, int j, int t, float *m, float *f) const {
        float om, ze, d1[4], d2[4];
        pre_at(b, j, t, om, ze);
        og_step(mve, (float)d.dt, om, ze, m, d1, d2);
        const float *u = b_in + ((size_t)b * d.T + t) * d.W;
        f[0] = u[j], f[1] = u[d.m + j];
    }
    __device__ void emit(int b, int j, int t, float s0, float s1) const {
        float *o = out + ((size_t)b * d.T + t) * d.W;
        o[j] = s0, o[d.m + j] = s1;
    }
    __device__ void dout(int b, int j, int t, float &d0, float &d1) const {
        const float *g = gout + ((size_t)b * d.T + t) * d.W;
        d0 = g[j], d1 = g[d.m + j];
    }
    __device__ void chain(int b, int j, int t, const float *, float s0, float s1, float g0,
                          float g1, float *part) const {
        float om, ze, m[4], d1[4], d2[4];
        pre_at(b, j, t, om, ze);
        og_step(mve, (float)d.dt, om, ze, m, d1, d2);
        float G[4] = {g0 * s0, g0 * s1, g1 * s0, g1 * s1}, dom = 0.f, dze = 0.f;
        for (int i = 0; i < 4; i++) dom += G[i] * d1[i], dze += G[i] * d2[i];
        float *dp = dpre + ((size_t)b * d.T + t) * 2 * d.m;
        dp[j] += dom, dp[d.m + j] += dze;
        part[0] += dom, part[1] += dze;
        float *di = din + ((size_t)b * d.T + t) * d.W;
        di[j] += g0, di[d.m + j] += g1;
    }
};

__global__ void og_skip_kernel(float *dst, const float *src, OscDims d, int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.B * d.T * d.C) return;
    size_t at = (size_t)(i / d.C) * d.W + 2 * d.m + (size_t)(i % d.C);
    dst[at] = add ? dst[at] + src[at] : src[at];
}

__global__ void og_bias_grad_kernel(float *db_om, float *db_ze, const float *part, OscDims d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d.m) return;
    float a0 = 0.f, a1 = 0.f;
    for (int b = 0; b < d.B; b++)
        for (int c = 0; c < d.nc; c++) {
            const float *q = part + (((size_t)b * d.m + j) * d.nc + c) * 2;
            a0 += q[0], a1 += q[1];
        }
    db_om[j] += a0, db_ze[j] += a1;
}

static OgMx og_mx(const OpShape *s, int mve, const float *const *in) {
    OgMx mx = {};
    mx.d = osc_dims(s), mx.mve = mve, mx.b_in = in[CORE_IN_QKV], mx.pre = in[CORE_IN_XPROJ];
    mx.b_om = in[CORE_IN_PARAMS], mx.b_ze = in[CORE_IN_PARAMS + 1];
    return mx;
}

static void og_fwd(const OpShape *s, int mve, const float *const *in, float *const *out,
                   float *sv) {
    OgMx mx = og_mx(s, mve, in);
    mx.out = out[0];
    OscDims d = mx.d;
    osc_forward_cuda(mx, OscGrid{d.B, d.T, d.m, d.L, d.nc, 2}, sv);
    og_skip_kernel<<<ceil_div((long long)d.B * d.T * d.C, 128), 128>>>(out[0], in[CORE_IN_QKV], d,
                                                                       0);
    CUDA_LAUNCH_CHECK();
}

static void og_bwd(const OpShape *s, int mve, const float *const *in, const float *sv,
                   const float *const *dout, float *const *din) {
    OgMx mx = og_mx(s, mve, in);
    mx.gout = dout[0], mx.din = din[CORE_IN_QKV], mx.dpre = din[CORE_IN_XPROJ];
    OscDims d = mx.d;
    float *part;
    osc_backward_cuda(mx, OscGrid{d.B, d.T, d.m, d.L, d.nc, 2}, sv, &part);
    og_skip_kernel<<<ceil_div((long long)d.B * d.T * d.C, 128), 128>>>(din[CORE_IN_QKV], dout[0], d,
                                                                       1);
    CUDA_LAUNCH_CHECK();
    og_bias_grad_kernel<<<ceil_div(d.m, 64), 64>>>(din[CORE_IN_PARAMS], din[CORE_IN_PARAMS + 1],
                                                   part, d);
    CUDA_LAUNCH_CHECK();
}

static void oscgate_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    og_fwd(s, 0, in, out, sv);
}
static void oscgate_bwd(const OpShape *s, const float *const *in, const float *const *,
                        const float *sv, const float *const *dout, float *const *din) {
    og_bwd(s, 0, in, sv, dout, din);
}
static void oscgate_mve_fwd(const OpShape *s, const float *const *in, float *const *out,
                            float *sv) {
    og_fwd(s, 1, in, out, sv);
}
static void oscgate_mve_bwd(const OpShape *s, const float *const *in, const float *const *,
                            const float *sv, const float *const *dout, float *const *din) {
    og_bwd(s, 1, in, sv, dout, din);
}

extern "C" const CudaKernels cuda_op_oscgate = {oscgate_fwd, oscgate_bwd, NULL};
extern "C" const CudaKernels cuda_op_oscgate_mve = {oscgate_mve_fwd, oscgate_mve_bwd, NULL};
