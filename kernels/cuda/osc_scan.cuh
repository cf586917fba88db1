// The chunked parallel scan of 2 x 2 linear recurrences, the twin of kernels/cpu/osc_scan.h
// (the math and the three phases are described there): one thread per (batch, lane, chunk)
// for the chunk passes, one per (batch, lane) for the carries across chunks. A mixer is a
// struct with device methods
//   step(b, lane, t, m[4], f[2])             its M_t and f_t
//   emit(b, lane, t, s0, s1)                 where the state goes
//   dout(b, lane, t, &d0, &d1)               the gradient reaching the state
//   chain(b, lane, t, m, sp0, sp1, g0, g1, part)  input gradients, parameter partials
// and the partials per (batch, lane, chunk) are left for the mixer to reduce in a fixed order.
#pragma once
#include "cuda_common.cuh"

struct OscGrid {
    int B, T, lanes, L, nc, npart;
};

__device__ inline void osc_unit(const OscGrid &o, long long u, int &b, int &lane, int &c, int &t0,
                                int &len) {
    c = (int)(u % o.nc), lane = (int)(u / o.nc % o.lanes), b = (int)(u / o.nc / o.lanes);
    t0 = c * o.L, len = o.T - t0 < o.L ? o.T - t0 : o.L;
}

// ends [units, 6]: the chunk's end state from zero (2) and its product P_c (4).
template <class Mx>
__global__ void osc_reduce_kernel(Mx mx, OscGrid o, float *ends) {
    long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= (long long)o.B * o.lanes * o.nc) return;
    int b, lane, c, t0, len;
    osc_unit(o, u, b, lane, c, t0, len);
    float s0 = 0.f, s1 = 0.f, P[4] = {1.f, 0.f, 0.f, 1.f};
    for (int r = 0; r < len; r++) {
        float m[4], f[2];
        mx.step(b, lane, t0 + r, m, f);
        float n0 = m[0] * s0 + m[1] * s1 + f[0], n1 = m[2] * s0 + m[3] * s1 + f[1];
        s0 = n0, s1 = n1;
        float p0 = m[0] * P[0] + m[1] * P[2], p1 = m[0] * P[1] + m[1] * P[3];
        float p2 = m[2] * P[0] + m[3] * P[2], p3 = m[2] * P[1] + m[3] * P[3];
        P[0] = p0, P[1] = p1, P[2] = p2, P[3] = p3;
    }
    float *e = ends + u * 6;
    e[0] = s0, e[1] = s1, e[2] = P[0], e[3] = P[1], e[4] = P[2], e[5] = P[3];
}

// Entering states saved [B, lanes, nc, 2].
static __global__ void osc_carry_kernel(OscGrid o, const float *ends, float *saved) {
    long long bl = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (bl >= (long long)o.B * o.lanes) return;
    float s0 = 0.f, s1 = 0.f;
    for (int c = 0; c < o.nc; c++) {
        const float *e = ends + (bl * o.nc + c) * 6;
        float *in = saved + (bl * o.nc + c) * 2;
        in[0] = s0, in[1] = s1;
        float n0 = e[2] * s0 + e[3] * s1 + e[0], n1 = e[4] * s0 + e[5] * s1 + e[1];
        s0 = n0, s1 = n1;
    }
}

template <class Mx>
__global__ void osc_emit_kernel(Mx mx, OscGrid o, const float *saved) {
    long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= (long long)o.B * o.lanes * o.nc) return;
    int b, lane, c, t0, len;
    osc_unit(o, u, b, lane, c, t0, len);
    float s0 = saved[u * 2], s1 = saved[u * 2 + 1];
    for (int r = 0; r < len; r++) {
        float m[4], f[2];
        mx.step(b, lane, t0 + r, m, f);
        float n0 = m[0] * s0 + m[1] * s1 + f[0], n1 = m[2] * s0 + m[3] * s1 + f[1];
        s0 = n0, s1 = n1;
        mx.emit(b, lane, t0 + r, s0, s1);
    }
}

template <class Mx>
static void osc_forward_cuda(const Mx &mx, OscGrid o, float *saved) {
    static float *buf;
    static size_t have;
    long long units = (long long)o.B * o.lanes * o.nc;
    if (!units) return;
    float *ends = mt_cuda_grow(&buf, &have, (size_t)units * 6);
    osc_reduce_kernel<<<ceil_div(units, 128), 128>>>(mx, o, ends);
    CUDA_LAUNCH_CHECK();
    osc_carry_kernel<<<ceil_div((long long)o.B * o.lanes, 128), 128>>>(o, ends, saved);
    CUDA_LAUNCH_CHECK();
    osc_emit_kernel<<<ceil_div(units, 128), 128>>>(mx, o, saved);
    CUDA_LAUNCH_CHECK();
}

// heads [units, 6]: M_t0^T times the chunk's adjoint at t0 from a zero carry (2), P_c (4).
template <class Mx>
__global__ void osc_reduce_back_kernel(Mx mx, OscGrid o, float *heads) {
    long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= (long long)o.B * o.lanes * o.nc) return;
    int b, lane, c, t0, len;
    osc_unit(o, u, b, lane, c, t0, len);
    float q0 = 0.f, q1 = 0.f;
    for (int r = len - 1; r >= 0; r--) {
        float m[4], f[2], d0, d1;
        mx.step(b, lane, t0 + r, m, f);
        mx.dout(b, lane, t0 + r, d0, d1);
        float g0 = d0 + q0, g1 = d1 + q1;
        q0 = m[0] * g0 + m[2] * g1, q1 = m[1] * g0 + m[3] * g1;
    }
    float P[4] = {1.f, 0.f, 0.f, 1.f};
    for (int r = 0; r < len; r++) {
        float m[4], f[2];
        mx.step(b, lane, t0 + r, m, f);
        float p0 = m[0] * P[0] + m[1] * P[2], p1 = m[0] * P[1] + m[1] * P[3];
        float p2 = m[2] * P[0] + m[3] * P[2], p3 = m[2] * P[1] + m[3] * P[3];
        P[0] = p0, P[1] = p1, P[2] = p2, P[3] = p3;
    }
    float *h = heads + u * 6;
    h[0] = q0, h[1] = q1, h[2] = P[0], h[3] = P[1], h[4] = P[2], h[5] = P[3];
}

// carry [units, 2]: q_c, the adjoint flowing into chunk c from the chunks after it.
static __global__ void osc_carry_back_kernel(OscGrid o, const float *heads, float *carry) {
    long long bl = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (bl >= (long long)o.B * o.lanes) return;
    float q0 = 0.f, q1 = 0.f;
    for (int c = o.nc - 1; c >= 0; c--) {
        const float *h = heads + (bl * o.nc + c) * 6;
        float *cq = carry + (bl * o.nc + c) * 2;
        cq[0] = q0, cq[1] = q1;
        float n0 = h[2] * q0 + h[4] * q1 + h[0], n1 = h[3] * q0 + h[5] * q1 + h[1];
        q0 = n0, q1 = n1;
    }
}

// sprev [B, lanes, T, 2]: the states before each step, rebuilt from the saved entering states.
template <class Mx>
__global__ void osc_chain_kernel(Mx mx, OscGrid o, const float *saved, const float *carry,
                                 float *sprev, float *part) {
    long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= (long long)o.B * o.lanes * o.nc) return;
    int b, lane, c, t0, len;
    osc_unit(o, u, b, lane, c, t0, len);
    float *sp = sprev + (((long long)b * o.lanes + lane) * o.T + t0) * 2;
    float s0 = saved[u * 2], s1 = saved[u * 2 + 1];
    for (int r = 0; r < len; r++) {
        float m[4], f[2];
        mx.step(b, lane, t0 + r, m, f);
        sp[2 * r] = s0, sp[2 * r + 1] = s1;
        float n0 = m[0] * s0 + m[1] * s1 + f[0], n1 = m[2] * s0 + m[3] * s1 + f[1];
        s0 = n0, s1 = n1;
    }
    float *pu = part + u * o.npart;
    for (int i = 0; i < o.npart; i++) pu[i] = 0.f;
    float q0 = carry[u * 2], q1 = carry[u * 2 + 1];
    for (int r = len - 1; r >= 0; r--) {
        float m[4], f[2], d0, d1;
        mx.step(b, lane, t0 + r, m, f);
        mx.dout(b, lane, t0 + r, d0, d1);
        float g0 = d0 + q0, g1 = d1 + q1;
        mx.chain(b, lane, t0 + r, m, sp[2 * r], sp[2 * r + 1], g0, g1, pu);
        q0 = m[0] * g0 + m[2] * g1, q1 = m[1] * g0 + m[3] * g1;
    }
}

// Leaves the partials [B, lanes, nc, npart] in *part_out (a work buffer of this file).
template <class Mx>
static void osc_backward_cuda(const Mx &mx, OscGrid o, const float *saved, float **part_out) {
    static float *bufs[4];
    static size_t have[4];
    long long units = (long long)o.B * o.lanes * o.nc;
    float *heads = mt_cuda_grow(&bufs[0], &have[0], (size_t)units * 6 + 1);
    float *carry = mt_cuda_grow(&bufs[1], &have[1], (size_t)units * 2 + 1);
    float *sprev = mt_cuda_grow(&bufs[2], &have[2], (size_t)o.B * o.lanes * o.T * 2 + 1);
    float *part = mt_cuda_grow(&bufs[3], &have[3], (size_t)units * o.npart + 1);
    *part_out = part;
    if (!units) return;
    osc_reduce_back_kernel<<<ceil_div(units, 128), 128>>>(mx, o, heads);
    CUDA_LAUNCH_CHECK();
    osc_carry_back_kernel<<<ceil_div((long long)o.B * o.lanes, 128), 128>>>(o, heads, carry);
    CUDA_LAUNCH_CHECK();
    osc_chain_kernel<<<ceil_div(units, 128), 128>>>(mx, o, saved, carry, sprev, part);
    CUDA_LAUNCH_CHECK();
}
