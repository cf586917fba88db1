// Data-dependent scalar-decay linear attention, the twin of kernels/cpu/attention_decay.c (the
// recurrence, its saved chunk states and its reverse sweep, in the same order). One block per
// (batch, head), one thread per value column j of the D x D state: the state update and the
// readout of column j need no other thread; the sums over columns (dq, dk) and over the whole
// state (d log a) go through shared memory in a fixed order, so a run is bitwise repeatable.
#include "../attention_decay.h"
#include "cuda_common.cuh"

__device__ inline float decay_softplus(float x) {
    return x > 20.f ? x : log1pf(expf(x));
}

// states: [BH, nc, D, D] the entering state of every chunk (written here).
__global__ void decay_forward_kernel(float *out, float *states, const float *qkv, const float *xp,
                                     const float *a_log, const float *dt_bias, int T, int C, int H,
                                     int L, int nc, float *cur_all) {
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, j = threadIdx.x;
    float *cur = cur_all + (size_t)bh * D * D, A = expf(a_log[h]);
    for (int i = 0; i < D; i++) cur[i * D + j] = 0.f;
    for (int t = 0; t < T; t++) {
        if (t % L == 0)
            for (int i = 0; i < D; i++)
                states[((size_t)bh * nc + t / L) * D * D + i * D + j] = cur[i * D + j];
        const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
        float delta = decay_softplus(xp[((size_t)b * T + t) * H + h] + dt_bias[h]);
        float a = expf(-delta * A), u = delta * v[j], acc = 0.f;
        for (int i = 0; i < D; i++) {
            float s = a * cur[i * D + j] + k[i] * u;
            cur[i * D + j] = s;
            acc += s * q[i];
        }
        out[((size_t)b * T + t) * C + h * D + j] = acc;
    }
}

// Shared memory: red [D][D + 1] (a row per i, one column per thread j), then per thread its
// share of d log a and of d Delta.
__global__ void decay_backward_kernel(float *dqkv, float *dxp, float *part, const float *dout,
                                      const float *qkv, const float *xp, const float *a_log,
                                      const float *dt_bias, const float *saved, int T, int C, int H,
                                      int L, int nc, float *states_all, float *dS_all) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, j = threadIdx.x, ld = D + 1;
    float *red = sh, *dar = sh + (size_t)D * ld, *ddr = dar + D;
    float *states = states_all + (size_t)bh * (L + 1) * D * D, *dS = dS_all + (size_t)bh * D * D;
    float A = expf(a_log[h]), pa = 0.f, pb = 0.f;
    for (int i = 0; i < D; i++) dS[i * D + j] = 0.f;
    for (int c = nc - 1; c >= 0; c--) {
        int t0 = c * L, len = T - t0 < L ? T - t0 : L;
        for (int i = 0; i < D; i++)
            states[i * D + j] = saved[((size_t)bh * nc + c) * D * D + i * D + j];
        for (int r = 0; r < len; r++) {
            int t = t0 + r;
            const float *k = qkv + ((size_t)b * T + t) * 3 * C + C + h * D, *v = k + C;
            float delta = decay_softplus(xp[((size_t)b * T + t) * H + h] + dt_bias[h]);
            float a = expf(-delta * A), u = delta * v[j];
            const float *prev = states + (size_t)r * D * D;
            float *next = states + (size_t)(r + 1) * D * D;
            for (int i = 0; i < D; i++) next[i * D + j] = a * prev[i * D + j] + k[i] * u;
        }
        for (int r = len - 1; r >= 0; r--) {
            int t = t0 + r;
            size_t row = ((size_t)b * T + t) * 3 * C + h * D;
            const float *q = qkv + row, *k = q + C, *v = q + 2 * C;
            float g = dout[((size_t)b * T + t) * C + h * D + j];
            float z = xp[((size_t)b * T + t) * H + h] + dt_bias[h];
            float delta = decay_softplus(z), a = expf(-delta * A);
            const float *St = states + (size_t)(r + 1) * D * D, *Sp = states + (size_t)r * D * D;
            // dq[i] = sum_j St[i,j] g_j; dS += q g^T
            for (int i = 0; i < D; i++) {
                red[i * ld + j] = St[i * D + j] * g;
                dS[i * D + j] += q[i] * g;
            }
            __syncthreads();
            {
                int i = j;
                float acc = 0.f;
                for (int jj = 0; jj < D; jj++) acc += red[i * ld + jj];
                dqkv[row + i] += acc;
            }
            __syncthreads();
            // du_j = sum_i dS[i,j] k_i; dk[i] = sum_j dS[i,j] u_j; da = <dS, S_prev>
            float du = 0.f, da = 0.f, u = delta * v[j];
            for (int i = 0; i < D; i++) {
                float d = dS[i * D + j];
                du += d * k[i];
                da += d * Sp[i * D + j];
                red[i * ld + j] = d * u;
                dS[i * D + j] = a * d;
            }
            dar[j] = da;
            __syncthreads();
            float da_all = 0.f, dd = 0.f;
            {
                int i = j;
                float acc = 0.f;
                for (int jj = 0; jj < D; jj++) acc += red[i * ld + jj];
                dqkv[row + C + i] += acc;
            }
            for (int jj = 0; jj < D; jj++) da_all += dar[jj];
            dqkv[row + 2 * C + j] += delta * du;
            ddr[j] = du * v[j];
            __syncthreads();
            for (int jj = 0; jj < D; jj++) dd += ddr[jj];
            __syncthreads();
            float dlog_a = da_all * a;
            float dz = (dd - A * dlog_a) / (1.f + expf(-z));
            if (j == 0) {
                dxp[((size_t)b * T + t) * H + h] += dz;
                pa += -delta * dlog_a * A, pb += dz;
            }
        }
    }
    // part [B, 2, H]: the log-rate partials of batch row b, then dt_bias's.
    if (j == 0) part[(size_t)b * 2 * H + h] = pa, part[(size_t)b * 2 * H + H + h] = pb;
}

static void decay_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    static float *cur;
    static size_t have;
    int D = s->C / s->H, L = OPT_OF(DecayOpts, s).chunk, nc = (s->T + L - 1) / L;
    float *c = mt_cuda_grow(&cur, &have, (size_t)s->B * s->H * D * D);
    decay_forward_kernel<<<s->B * s->H, D>>>(out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ],
                                             in[CORE_IN_PARAMS], in[CORE_IN_PARAMS + 1], s->T, s->C,
                                             s->H, L, nc, c);
    CUDA_CHECK(cudaGetLastError());
}

static void decay_bwd(const OpShape *s, const float *const *in, const float *const *,
                      const float *sv, const float *const *dout, float *const *din) {
    static float *bufs[3];
    static size_t have[3];
    int B = s->B, H = s->H, D = s->C / H, L = OPT_OF(DecayOpts, s).chunk, nc = (s->T + L - 1) / L;
    float *states = mt_cuda_grow(&bufs[0], &have[0], (size_t)B * H * (L + 1) * D * D);
    float *dS = mt_cuda_grow(&bufs[1], &have[1], (size_t)B * H * D * D);
    float *part = mt_cuda_grow(&bufs[2], &have[2], (size_t)2 * B * H);
    size_t shared = sizeof(float) * ((size_t)D * (D + 1) + 2 * D);
    CUDA_CHECK(cudaFuncSetAttribute(decay_backward_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared));
    decay_backward_kernel<<<B * H, D, shared>>>(
        din[CORE_IN_QKV], din[CORE_IN_XPROJ], part, dout[0], in[CORE_IN_QKV], in[CORE_IN_XPROJ],
        in[CORE_IN_PARAMS], in[CORE_IN_PARAMS + 1], sv, s->T, s->C, H, L, nc, states, dS);
    CUDA_CHECK(cudaGetLastError());
    sum_batch_partials(din[CORE_IN_PARAMS], part, B, H, (size_t)2 * H);
    sum_batch_partials(din[CORE_IN_PARAMS + 1], part + H, B, H, (size_t)2 * H);
}

extern "C" const CudaKernels cuda_op_decay = {decay_fwd, decay_bwd, NULL};
