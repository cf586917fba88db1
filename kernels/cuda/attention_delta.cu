// DeltaNet and Gated DeltaNet, the twin of kernels/cpu/attention_delta.c. One block per
// (batch, head), one thread per value column j of the D x D state (key-major, in global
// memory, column j touched by thread j only): the delta rule's P^T k, rank-one update and
// readout of column j need no other thread. Forward runs the recurrence token by token (the
// CPU row runs the chunkwise form of the same function) and saves each chunk's entering state,
// the CPU row's layout. Backward recomputes a chunk's per-token states from there and sweeps
// them in reverse (not yet the CPU's chunkwise backward); sums over columns (dq, dk, dbeta,
// dalpha) go through shared memory in a fixed order, so a run is bitwise repeatable.
#include "../attention_delta.h"
#include "cuda_common.cuh"

#define DELTA_NORM_EPS 1e-6f

__device__ inline float delta_softplus(float x) {
    return x > 20.f ? x : log1pf(expf(x));
}
__device__ inline float delta_sigmoid(float x) {
    return 1.f / (1.f + expf(-x));
}

// beta and log alpha of one token (row = b T + t) in head h; xproj [B, T, E], E = H or 2H.
__device__ inline void delta_gates(const float *xp, const float *A_log, const float *dt_bias,
                                   int gated, int neg, int H, size_t row, int h, float *beta,
                                   float *g) {
    int E = gated ? 2 * H : H;
    float sg = delta_sigmoid(xp[row * E + h]);
    *beta = neg ? 2.f * sg : sg;
    *g = gated ? -expf(A_log[h]) * delta_softplus(xp[row * E + H + h] + dt_bias[h]) : 0.f;
}

// Every thread computes the norm of a shared vector itself, in the same order.
__device__ inline float delta_norm(const float *x, int D) {
    float ss = 0.f;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    return sqrtf(ss + DELTA_NORM_EPS);
}

// Shared memory: qs, ks [D] (the token's raw q and k).
__global__ void delta_forward_kernel(float *out, float *states, const float *qkv, const float *xp,
                                     const float *A_log, const float *dt_bias, int gated, int neg,
                                     int T, int C, int H, int L, int nc, float *cur_all) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, j = threadIdx.x;
    float *qs = sh, *ks = sh + D, *cur = cur_all + (size_t)bh * D * D;
    float qscale = rsqrtf((float)D);
    for (int i = 0; i < D; i++) cur[i * D + j] = 0.f;
    for (int t = 0; t < T; t++) {
        if (t % L == 0)
            for (int i = 0; i < D; i++)
                states[((size_t)bh * nc + t / L) * D * D + i * D + j] = cur[i * D + j];
        size_t row = (size_t)b * T + t;
        const float *q = qkv + row * 3 * C + h * D;
        qs[j] = q[j], ks[j] = q[C + j];
        __syncthreads();
        float qn = qscale / delta_norm(qs, D), kn = 1.f / delta_norm(ks, D), beta, g;
        delta_gates(xp, A_log, dt_bias, gated, neg, H, row, h, &beta, &g);
        float a = expf(g), kp = 0.f, acc = 0.f;
        for (int i = 0; i < D; i++) kp += cur[i * D + j] * ks[i] * kn;
        float u = beta * (q[2 * C + j] - a * kp);
        for (int i = 0; i < D; i++) {
            float s = a * cur[i * D + j] + ks[i] * kn * u;
            cur[i * D + j] = s;
            acc += s * qs[i] * qn;
        }
        out[row * C + h * D + j] = acc;
        __syncthreads();
    }
}

// Shared memory: red [D][D + 1] (a row per i, one column per thread j), then qh, kh (the
// normalised q, k), dqh, dkh, and per thread its share of dbeta and of dalpha.
__global__ void delta_backward_kernel(float *dqkv, float *dxp, float *part, const float *dout,
                                      const float *qkv, const float *xp, const float *A_log,
                                      const float *dt_bias, const float *saved, int gated, int neg,
                                      int T, int C, int H, int L, int nc, float *states_all,
                                      float *dS_all, float *ur_all) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, j = threadIdx.x, ld = D + 1;
    int E = gated ? 2 * H : H;
    float *red = sh, *qh = red + (size_t)D * ld, *kh = qh + D, *dqh = kh + D, *dkh = dqh + D;
    float *dbr = dkh + D, *dar = dbr + D;
    float *states = states_all + (size_t)bh * (L + 1) * D * D, *dS = dS_all + (size_t)bh * D * D;
    float *U = ur_all + (size_t)bh * 2 * L * D, *R = U + (size_t)L * D;  // u_t, v_t - P_t^T k_t
    float qscale = rsqrtf((float)D), pa = 0.f, pb = 0.f;
    for (int i = 0; i < D; i++) dS[i * D + j] = 0.f;
    for (int c = nc - 1; c >= 0; c--) {
        int t0 = c * L, len = T - t0 < L ? T - t0 : L;
        for (int i = 0; i < D; i++)
            states[i * D + j] = saved[((size_t)bh * nc + c) * D * D + i * D + j];
        for (int r = 0; r < len; r++) {
            size_t row = (size_t)b * T + t0 + r;
            const float *k = qkv + row * 3 * C + C + h * D;
            kh[j] = k[j];
            __syncthreads();
            float kn = 1.f / delta_norm(kh, D), beta, g;
            delta_gates(xp, A_log, dt_bias, gated, neg, H, row, h, &beta, &g);
            float a = expf(g), kp = 0.f;
            const float *prev = states + (size_t)r * D * D;
            float *next = states + (size_t)(r + 1) * D * D;
            for (int i = 0; i < D; i++) kp += prev[i * D + j] * kh[i] * kn;
            float rr = k[C + j] - a * kp, u = beta * rr;
            R[r * D + j] = rr, U[r * D + j] = u;
            for (int i = 0; i < D; i++) next[i * D + j] = a * prev[i * D + j] + kh[i] * kn * u;
            __syncthreads();
        }
        for (int r = len - 1; r >= 0; r--) {
            size_t row = (size_t)b * T + t0 + r, qrow = row * 3 * C + h * D;
            const float *q = qkv + qrow;
            qh[j] = q[j], kh[j] = q[C + j];
            __syncthreads();
            float qn = delta_norm(qh, D), kn = delta_norm(kh, D), beta, g;
            __syncthreads();
            qh[j] *= qscale / qn, kh[j] /= kn;
            delta_gates(xp, A_log, dt_bias, gated, neg, H, row, h, &beta, &g);
            float a = expf(g), go = dout[row * C + h * D + j], u = U[r * D + j];
            const float *St = states + (size_t)(r + 1) * D * D, *Sp = states + (size_t)r * D * D;
            __syncthreads();
            // dqh = S_t do; dS += qh do^T
            for (int i = 0; i < D; i++) {
                red[i * ld + j] = St[i * D + j] * go;
                dS[i * D + j] += qh[i] * go;
            }
            __syncthreads();
            {
                float acc = 0.f;
                for (int jj = 0; jj < D; jj++) acc += red[j * ld + jj];
                dqh[j] = acc;
            }
            __syncthreads();
            // du = dS^T kh; dkh = dS u
            float du = 0.f;
            for (int i = 0; i < D; i++) {
                float d = dS[i * D + j];
                du += d * kh[i];
                red[i * ld + j] = d * u;
            }
            __syncthreads();
            float dk_acc = 0.f;
            for (int jj = 0; jj < D; jj++) dk_acc += red[j * ld + jj];
            __syncthreads();
            dbr[j] = du * R[r * D + j];
            dqkv[qrow + 2 * C + j] += beta * du;
            float dkp = -beta * du, da = 0.f;
            // dP = dS + kh dkp^T; dkh += P dkp; dalpha = <dP, S_{t-1}>; dS_{t-1} = alpha dP
            for (int i = 0; i < D; i++) {
                float sp = Sp[i * D + j], d = dS[i * D + j] + kh[i] * dkp;
                da += d * sp;
                red[i * ld + j] = sp * dkp;
                dS[i * D + j] = a * d;
            }
            dar[j] = da;
            __syncthreads();
            for (int jj = 0; jj < D; jj++) dk_acc += a * red[j * ld + jj];
            dkh[j] = dk_acc;
            __syncthreads();
            // through the normalisations: dx = scale (dy - yh (yh . dy)) / n, yh = y / scale
            float dotq = 0.f, dotk = 0.f, dbeta = 0.f, dalpha = 0.f;
            for (int i = 0; i < D; i++) {
                dotq += qh[i] * dqh[i], dotk += kh[i] * dkh[i];
                dbeta += dbr[i], dalpha += dar[i];
            }
            dqkv[qrow + j] += (qscale * dqh[j] - qh[j] * dotq / qscale) / qn;
            dqkv[qrow + C + j] += (dkh[j] - kh[j] * dotk) / kn;
            if (j == 0) {
                float sg = delta_sigmoid(xp[row * E + h]);
                dxp[row * E + h] += dbeta * (neg ? 2.f : 1.f) * sg * (1.f - sg);
                if (gated) {
                    float A = expf(A_log[h]), z = xp[row * E + H + h] + dt_bias[h];
                    float dg = dalpha * a, dz = -dg * A * delta_sigmoid(z);
                    dxp[row * E + H + h] += dz;
                    pa += dg * g, pb += dz;
                }
            }
            __syncthreads();
        }
    }
    // part [B, 2, H]: the log-rate partials of batch row b, then dt_bias's.
    if (j == 0) part[(size_t)b * 2 * H + h] = pa, part[(size_t)b * 2 * H + H + h] = pb;
}

static void delta_fwd_any(const OpShape *s, int gated, const float *const *in, float *const *out,
                          float *sv) {
    static float *cur;
    static size_t have;
    DeltaOpts o = OPT_OF(DeltaOpts, s);
    int D = s->C / s->H, L = delta_chunk(s), nc = (s->T + L - 1) / L;
    float *c = mt_cuda_grow(&cur, &have, (size_t)s->B * s->H * D * D);
    const float *A_log = gated ? in[CORE_IN_PARAMS] : NULL;
    const float *dt_bias = gated ? in[CORE_IN_PARAMS + 1] : NULL;
    delta_forward_kernel<<<s->B * s->H, D, sizeof(float) * 2 * D>>>(
        out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ], A_log, dt_bias, gated, o.neg_eigval, s->T,
        s->C, s->H, L, nc, c);
    CUDA_CHECK(cudaGetLastError());
}

static void delta_bwd_any(const OpShape *s, int gated, const float *const *in, const float *sv,
                          const float *const *dout, float *const *din) {
    static float *bufs[4];
    static size_t have[4];
    DeltaOpts o = OPT_OF(DeltaOpts, s);
    int B = s->B, H = s->H, D = s->C / H, L = delta_chunk(s), nc = (s->T + L - 1) / L;
    float *states = mt_cuda_grow(&bufs[0], &have[0], (size_t)B * H * (L + 1) * D * D);
    float *dS = mt_cuda_grow(&bufs[1], &have[1], (size_t)B * H * D * D);
    float *part = mt_cuda_grow(&bufs[2], &have[2], (size_t)2 * B * H);
    float *ur = mt_cuda_grow(&bufs[3], &have[3], (size_t)B * H * 2 * L * D);
    const float *A_log = gated ? in[CORE_IN_PARAMS] : NULL;
    const float *dt_bias = gated ? in[CORE_IN_PARAMS + 1] : NULL;
    size_t shared = sizeof(float) * ((size_t)D * (D + 1) + 6 * D);
    CUDA_CHECK(cudaFuncSetAttribute(delta_backward_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared));
    delta_backward_kernel<<<B * H, D, shared>>>(
        din[CORE_IN_QKV], din[CORE_IN_XPROJ], part, dout[0], in[CORE_IN_QKV], in[CORE_IN_XPROJ],
        A_log, dt_bias, sv, gated, o.neg_eigval, s->T, s->C, H, L, nc, states, dS, ur);
    CUDA_CHECK(cudaGetLastError());
    if (gated) {
        sum_batch_partials(din[CORE_IN_PARAMS], part, B, H, (size_t)2 * H);
        sum_batch_partials(din[CORE_IN_PARAMS + 1], part + H, B, H, (size_t)2 * H);
    }
}

static void delta_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    delta_fwd_any(s, 0, in, out, sv);
}
static void gdelta_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    delta_fwd_any(s, 1, in, out, sv);
}
static void delta_bwd(const OpShape *s, const float *const *in, const float *const *,
                      const float *sv, const float *const *dout, float *const *din) {
    delta_bwd_any(s, 0, in, sv, dout, din);
}
static void gdelta_bwd(const OpShape *s, const float *const *in, const float *const *,
                       const float *sv, const float *const *dout, float *const *din) {
    delta_bwd_any(s, 1, in, sv, dout, din);
}

extern "C" const CudaKernels cuda_op_deltanet = {delta_fwd, delta_bwd, NULL};
extern "C" const CudaKernels cuda_op_gated_deltanet = {gdelta_fwd, gdelta_bwd, NULL};
