// The DPLR SSM, the twin of kernels/cpu/ssm_dplr.c (mixers.md 21): the same inputs, output
// [y | u], saved kernel K [C, T] and gradients. The generating function is evaluated in double,
// as on the CPU: one thread per (channel, frequency) forms the (1 + r)^2 Cauchy sums over the N
// modes in registers and combines them (Woodbury solve or Neumann powers) into Khat; cuFFT turns
// Khat into K (Z2Z, batched over channels) and applies the causal convolution by real transforms
// of a power-of-two length >= 2T (R2C / C2R, batched over channels and rows). Backward: the two
// cross-correlations by FFT, g_Khat = DFT(g_K) / T, then one thread per (channel, frequency) for
// the sums' gradients F, one per (channel, mode) for Lambda, P, qbar, B, Ctilde (a sum over
// frequencies) and one per (channel, frequency) for the step's part (a sum over modes), reduced per
// channel in a fixed order: no atomics.
#include "../ssm_dplr.h"
#include "cufft_plans.cuh"

// ---- complex double arithmetic ----------------------------------------------------------------

struct Cx {
    double re, im;
};
__device__ inline Cx cx(double re, double im = 0) {
    Cx z;
    z.re = re, z.im = im;
    return z;
}
__device__ inline Cx operator+(Cx a, Cx b) {
    return cx(a.re + b.re, a.im + b.im);
}
__device__ inline Cx operator-(Cx a, Cx b) {
    return cx(a.re - b.re, a.im - b.im);
}
__device__ inline Cx operator-(Cx a) {
    return cx(-a.re, -a.im);
}
__device__ inline Cx operator*(Cx a, Cx b) {
    return cx(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
__device__ inline Cx operator*(double s, Cx a) {
    return cx(s * a.re, s * a.im);
}
__device__ inline Cx operator/(Cx a, Cx b) {
    double inv = 1 / (b.re * b.re + b.im * b.im);
    return cx((a.re * b.re + a.im * b.im) * inv, (a.im * b.re - a.re * b.im) * inv);
}
__device__ inline Cx &operator+=(Cx &a, Cx b) {
    return a = a + b;
}
__device__ inline Cx &operator-=(Cx &a, Cx b) {
    return a = a - b;
}
__device__ inline Cx cconj(Cx a) {
    return cx(a.re, -a.im);
}
__device__ inline double cabs_(Cx a) {
    return hypot(a.re, a.im);
}

// ---- one channel's parameters ----------------------------------------------------------------

struct DplrParams {
    const float *lam, *p, *qb, *b, *ct, *log_dt;
};

static DplrParams dplr_params_of(const float *const *in) {
    DplrParams P;
    P.lam = in[CORE_IN_PARAMS + DPLR_LAMBDA], P.p = in[CORE_IN_PARAMS + DPLR_P];
    P.qb = in[CORE_IN_PARAMS + DPLR_QBAR], P.b = in[CORE_IN_PARAMS + DPLR_B];
    P.ct = in[CORE_IN_PARAMS + DPLR_CTILDE], P.log_dt = in[CORE_IN_PARAMS + DPLR_LOG_DT];
    return P;
}

__device__ inline Cx ld(const float *p, size_t i) {
    return cx(p[2 * i], p[2 * i + 1]);
}
__device__ inline Cx lambda_of(const DplrParams &P, const DplrDims &d, int c, int n) {
    return ld(P.lam, (size_t)c * d.N + n);
}
// alpha_n = (Ctilde_n, qbar_n,0..r-1), beta_n = (B_n, P_n,0..r-1)
__device__ inline Cx alpha_of(const DplrParams &P, const DplrDims &d, int c, int n, int x) {
    return x ? ld(P.qb, ((size_t)c * d.N + n) * d.r + x - 1) : ld(P.ct, (size_t)c * d.N + n);
}
__device__ inline Cx beta_of(const DplrParams &P, const DplrDims &d, int c, int n, int y) {
    return y ? ld(P.p, ((size_t)c * d.N + n) * d.r + y - 1) : ld(P.b, (size_t)c * d.N + n);
}

// a_j = (2 / Delta)(1 - z_j), b_j = 1 + z_j, z_j = exp(-2 pi i j / T) (exact at j = 0, 2 j = T)
__device__ inline void dplr_ab(double delta, int j, int T, Cx &a, Cx &b) {
    Cx z;
    if (j == 0)
        z = cx(1);
    else if (2 * j == T)
        z = cx(-1);
    else {
        double s, c;
        sincospi(2.0 * j / T, &s, &c);
        z = cx(c, -s);
    }
    a = (2 / delta) * (cx(1) - z), b = cx(1) + z;
}

// Km[x S + y] = c_y sum_n alpha_n[x] beta_n[y] / (a - b lambda_n), c_0 = 1, c_(y>0) = b
__device__ void dplr_sums_at(const DplrParams &P, const DplrDims &d, int c, Cx a, Cx b, Cx *Km) {
    int S = d.S;
    for (int i = 0; i < S * S; i++) Km[i] = cx(0);
    for (int n = 0; n < d.N; n++) {
        Cx D = cx(1) / (a - b * lambda_of(P, d, c, n));
        for (int x = 0; x < S; x++) {
            Cx aD = alpha_of(P, d, c, n, x) * D;
            for (int y = 0; y < S; y++) Km[x * S + y] += aD * beta_of(P, d, c, n, y);
        }
    }
    for (int x = 0; x < S; x++)
        for (int y = 1; y < S; y++) Km[x * S + y] = Km[x * S + y] * b;
}

__device__ void csolve(int n, Cx *A, Cx *x) {
    for (int k = 0; k < n; k++) {
        int piv = k;
        for (int i = k + 1; i < n; i++)
            if (cabs_(A[i * n + k]) > cabs_(A[piv * n + k])) piv = i;
        if (piv != k) {
            for (int j = 0; j < n; j++) {
                Cx t = A[k * n + j];
                A[k * n + j] = A[piv * n + j], A[piv * n + j] = t;
            }
            Cx t = x[k];
            x[k] = x[piv], x[piv] = t;
        }
        for (int i = k + 1; i < n; i++) {
            Cx f = A[i * n + k] / A[k * n + k];
            for (int j = k; j < n; j++) A[i * n + j] -= f * A[k * n + j];
            x[i] -= f * x[k];
        }
    }
    for (int k = n - 1; k >= 0; k--) {
        for (int j = k + 1; j < n; j++) x[k] -= A[k * n + j] * x[j];
        x[k] = x[k] / A[k * n + k];
    }
}

// Khat from the sums, and (dK not NULL) dKhat / dKm: dplr_combine of the CPU file.
__device__ Cx dplr_combine(int r, int order, const Cx *Km, Cx *dK) {
    int S = r + 1;
    Cx k00 = Km[0], v[DPLR_MAX_RANK], w[DPLR_MAX_RANK];
    if (order == 0) {
        Cx M[DPLR_MAX_RANK * DPLR_MAX_RANK], Mt[DPLR_MAX_RANK * DPLR_MAX_RANK];
        for (int i = 0; i < r; i++) {
            v[i] = Km[(1 + i) * S], w[i] = Km[1 + i];
            for (int j = 0; j < r; j++) {
                M[i * r + j] = Km[(1 + i) * S + 1 + j] + cx(i == j);
                Mt[j * r + i] = M[i * r + j];
            }
        }
        csolve(r, M, v), csolve(r, Mt, w);
        Cx Khat = k00;
        for (int i = 0; i < r; i++) Khat -= Km[1 + i] * v[i];
        if (dK) {
            dK[0] = cx(2);
            for (int i = 0; i < r; i++) {
                dK[1 + i] = -2 * v[i], dK[(1 + i) * S] = -2 * w[i];
                for (int j = 0; j < r; j++) dK[(1 + i) * S + 1 + j] = 2 * (w[i] * v[j]);
            }
        }
        return 2 * Khat;
    }
    const int MO = 16;  // the option's maximum order
    Cx vm[MO][DPLR_MAX_RANK], wpre[MO][DPLR_MAX_RANK], p[DPLR_MAX_RANK];
    for (int i = 0; i < r; i++) vm[0][i] = Km[(1 + i) * S], w[i] = Km[1 + i], p[i] = cx(0);
    for (int m = 0; m < order; m++) {
        for (int i = 0; i < r; i++) {
            p[i] += vm[m][i];
            wpre[m][i] = (m ? wpre[m - 1][i] : cx(0)) + w[i];
        }
        if (m + 1 == order) break;
        Cx nv[DPLR_MAX_RANK], nw[DPLR_MAX_RANK];
        for (int i = 0; i < r; i++) {
            nv[i] = cx(0), nw[i] = cx(0);
            for (int j = 0; j < r; j++) {
                nv[i] -= Km[(1 + i) * S + 1 + j] * vm[m][j];
                nw[i] -= w[j] * Km[(1 + j) * S + 1 + i];
            }
        }
        for (int i = 0; i < r; i++) vm[m + 1][i] = nv[i], w[i] = nw[i];
    }
    Cx Khat = k00;
    for (int i = 0; i < r; i++) Khat -= Km[1 + i] * p[i];
    if (dK) {
        dK[0] = cx(2);
        for (int i = 0; i < r; i++) {
            dK[1 + i] = -2 * p[i], dK[(1 + i) * S] = -2 * wpre[order - 1][i];
            for (int j = 0; j < r; j++) {
                Cx acc = cx(0);
                for (int l = 0; l <= order - 2; l++) acc += wpre[order - 2 - l][i] * vm[l][j];
                dK[(1 + i) * S + 1 + j] = 2 * acc;
            }
        }
    }
    return 2 * Khat;
}

// ---- forward ----------------------------------------------------------------------------------

// khat[c, j], one thread per (channel, frequency)
__global__ void dplr_khat_kernel(Cx *khat, DplrParams P, DplrDims d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.C * d.T) return;
    int c = (int)(i / d.T), j = (int)(i % d.T);
    Cx a, b, Km[DPLR_SUMS];
    dplr_ab(exp((double)P.log_dt[c]), j, d.T, a, b);
    dplr_sums_at(P, d, c, a, b, Km);
    khat[i] = dplr_combine(d.r, d.order, Km, NULL);
}

// K[c, k] = Re(kappa[c, k]) / T into the saved buffer (K not NULL)
__global__ void dplr_kernel_real_kernel(float *K, const Cx *kappa, int C, int T) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)C * T) return;
    K[i] = (float)(kappa[i].re / T);
}

// kpad [C, n] from K [C, T], zero for k >= T
__global__ void dplr_pad_kernel(float *kpad, const float *K, int C, int T, int n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)C * n) return;
    int c = (int)(i / n), k = (int)(i % n);
    kpad[i] = k < T ? K[(size_t)c * T + k] : 0.f;
}

// pad[(b, c), t] = src[b, t, c] (row stride `stride`), zero for t >= T; rows of n
__global__ void dplr_gather_kernel(float *pad, const float *src, int B, int T, int C, int stride,
                                   int n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * C * n) return;
    int t = (int)(i % n);
    long long bc = i / n;
    int b = (int)(bc / C), c = (int)(bc % C);
    pad[i] = t < T ? src[((size_t)b * T + t) * stride + c] : 0.f;
}

// dst[b, t, c] (row stride `stride`) (+)= pad[(b, c), t] / n (cuFFT's transforms are unscaled)
__global__ void dplr_scatter_kernel(float *dst, const float *pad, int B, int T, int C, int stride,
                                    int n, int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    int c = (int)(i % C);
    long long bt = i / C;
    int b = (int)(bt / T), t = (int)(bt % T);
    float v = pad[((size_t)b * C + c) * n + t] / (float)n;
    size_t at = (size_t)bt * stride + c;
    dst[at] = add ? dst[at] + v : v;
}

// spec[(b, c), f] = (conj ? conj(k[c, f]) : k[c, f]) * x[(b, c), f]
__global__ void dplr_spec_mul_kernel(cufftComplex *spec, const cufftComplex *k,
                                     const cufftComplex *x, int B, int C, int bins, int conj) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * C * bins) return;
    int f = (int)(i % bins), c = (int)(i / bins % C);
    cufftComplex a = k[(size_t)c * bins + f], b = x[i];
    float ai = conj ? -a.y : a.y;
    spec[i] = make_cuComplex(a.x * b.x - ai * b.y, a.x * b.y + ai * b.x);
}

// acc[c, f] = sum_b conj(U[(b, c), f]) DY[(b, c), f], rows in order
__global__ void dplr_corr_kernel(cufftComplex *acc, const cufftComplex *U, const cufftComplex *DY,
                                 int B, int C, int bins) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)C * bins) return;
    int c = (int)(i / bins), f = (int)(i % bins);
    float re = 0, im = 0;
    for (int b = 0; b < B; b++) {
        size_t e = ((size_t)b * C + c) * bins + f;
        cufftComplex u = U[e], g = DY[e];
        re += u.x * g.x + u.y * g.y, im += u.x * g.y - u.y * g.x;
    }
    acc[i] = make_cuComplex(re, im);
}

// out[b, t, C + c] = u[b, t, c] (forward); din_u[b, t, c] += dout[b, t, C + c] (backward)
__global__ void dplr_skip_kernel(float *dst, const float *src, int BT, int C, int forward) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)BT * C) return;
    size_t tok = (size_t)(i / C);
    int c = (int)(i % C);
    if (forward)
        dst[tok * 2 * C + C + c] = src[tok * C + c];
    else
        dst[tok * C + c] += src[tok * 2 * C + C + c];
}

// gk[c, k] = (gpad[c, k] / n, 0), k < T: the kernel's gradient as a complex row for the DFT
__global__ void dplr_gk_kernel(Cx *gk, const float *gpad, int C, int T, int n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)C * T) return;
    int c = (int)(i / T), k = (int)(i % T);
    gk[i] = cx((double)gpad[(size_t)c * n + k] / n);
}

// The convolution's transform length: a power of two >= 2T (zero padding keeps it linear).
static int dplr_fft_len(int T) {
    int n = 1;
    while (n < 2 * T) n *= 2;
    return n;
}

static void *tmp_alloc(size_t bytes) {
    return mt_cuda_temp_alloc(bytes);
}

// The length-T complex transforms of C rows (Z2Z, unscaled); length 1 is a copy (cuFFT plans
// start at 2 points).
static void dplr_dft(Cx *src, Cx *dst, int T, int C, int direction) {
    if (T == 1) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(Cx) * C, cudaMemcpyDeviceToDevice, 0));
        return;
    }
    CUFFT_CHECK(cufftExecZ2Z(mt_cufft_plan(T, C, CUFFT_Z2Z), (cufftDoubleComplex *)src,
                             (cufftDoubleComplex *)dst, direction));
}

// The kernel K [C, T] of every channel (the saved buffer).
static void dplr_make_kernel(const DplrDims &d, const DplrParams &P, float *K) {
    size_t CT = (size_t)d.C * d.T;
    Cx *khat = (Cx *)tmp_alloc(sizeof(Cx) * 2 * CT), *kappa = khat + CT;
    dplr_khat_kernel<<<ceil_div((long long)CT, 64), 64>>>(khat, P, d);
    CUDA_LAUNCH_CHECK();
    dplr_dft(khat, kappa, d.T, d.C, CUFFT_INVERSE);
    dplr_kernel_real_kernel<<<ceil_div((long long)CT, 128), 128>>>(K, kappa, d.C, d.T);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(khat, sizeof(Cx) * 2 * CT);
}

static void dplr_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    DplrDims d = dplr_dims(s);
    DplrParams P = dplr_params_of(in);
    int T = d.T, C = d.C, B = d.B, n = dplr_fft_len(T), bins = n / 2 + 1;
    size_t kpad_n = (size_t)C * n, upad_n = (size_t)B * C * n, spec_n = (size_t)B * C * bins;
    size_t f_bytes = sizeof(float) * (kpad_n + upad_n);
    size_t c_bytes = sizeof(cufftComplex) * ((size_t)C * bins + spec_n);
    float *kpad = (float *)tmp_alloc(f_bytes), *upad = kpad + kpad_n;
    cufftComplex *kf = (cufftComplex *)tmp_alloc(c_bytes), *uf = kf + (size_t)C * bins;
    int grid_tok = ceil_div((long long)B * T * C, 128);
    dplr_make_kernel(d, P, sv);
    dplr_pad_kernel<<<ceil_div((long long)kpad_n, 128), 128>>>(kpad, sv, C, T, n);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, C, CUFFT_R2C), kpad, kf));
    dplr_gather_kernel<<<ceil_div((long long)upad_n, 128), 128>>>(upad, in[CORE_IN_QKV], B, T, C, C,
                                                                  n);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, B * C, CUFFT_R2C), upad, uf));
    dplr_spec_mul_kernel<<<ceil_div((long long)spec_n, 128), 128>>>(uf, kf, uf, B, C, bins, 0);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(n, B * C, CUFFT_C2R), uf, upad));
    dplr_scatter_kernel<<<grid_tok, 128>>>(out[0], upad, B, T, C, 2 * C, n, 0);
    CUDA_LAUNCH_CHECK();
    dplr_skip_kernel<<<grid_tok, 128>>>(out[0], in[CORE_IN_QKV], B * T, C, 1);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(kf, c_bytes);
    mt_cuda_temp_free(kpad, f_bytes);
}

// ---- backward ---------------------------------------------------------------------------------

// F[c, j, x S + y] = conj(c_y) conj(dKhat_j / dKm[x][y]) g_Khat_j, g_Khat = DFT(g_K) / T
__global__ void dplr_f_kernel(Cx *F, const Cx *G, DplrParams P, DplrDims d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.C * d.T) return;
    int c = (int)(i / d.T), j = (int)(i % d.T), S = d.S;
    Cx a, b, Km[DPLR_SUMS], dK[DPLR_SUMS];
    dplr_ab(exp((double)P.log_dt[c]), j, d.T, a, b);
    dplr_sums_at(P, d, c, a, b, Km);
    dplr_combine(d.r, d.order, Km, dK);
    Cx g = (1.0 / d.T) * G[i];
    Cx *f = F + (size_t)i * S * S;
    for (int x = 0; x < S; x++)
        for (int y = 0; y < S; y++)
            f[x * S + y] = (y ? cconj(b) : cx(1)) * cconj(dK[x * S + y]) * g;
}

// One thread per (channel, mode n): Lambda_n, alpha_n (Ctilde, qbar) and beta_n (B, P) from
// H = sum_j conj(D_jn) F_j and g_D_jn = sum conj(alpha beta) F_j.
__global__ void dplr_mode_grad_kernel(float *g_lam, float *g_p, float *g_qb, float *g_b,
                                      float *g_ct, const Cx *F, DplrParams P, DplrDims d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.C * d.N) return;
    int c = (int)(i / d.N), n = (int)(i % d.N), S = d.S, SS = S * S;
    Cx W[DPLR_SUMS], H[DPLR_SUMS], al[DPLR_MAX_RANK + 1], be[DPLR_MAX_RANK + 1], gl = cx(0);
    for (int x = 0; x < S; x++) al[x] = alpha_of(P, d, c, n, x), be[x] = beta_of(P, d, c, n, x);
    for (int x = 0; x < S; x++)
        for (int y = 0; y < S; y++) W[x * S + y] = cconj(al[x] * be[y]), H[x * S + y] = cx(0);
    Cx lam = lambda_of(P, d, c, n);
    double delta = exp((double)P.log_dt[c]);
    for (int j = 0; j < d.T; j++) {
        Cx a, b;
        dplr_ab(delta, j, d.T, a, b);
        Cx D = cx(1) / (a - b * lam), cD = cconj(D), gD = cx(0);
        const Cx *f = F + ((size_t)c * d.T + j) * SS;
        for (int k = 0; k < SS; k++) gD += W[k] * f[k], H[k] += cD * f[k];
        gl += cconj(b) * cconj(D * D) * gD;
    }
    g_lam[2 * i] += (float)gl.re, g_lam[2 * i + 1] += (float)gl.im;
    for (int x = 0; x < S; x++) {
        Cx g_al = cx(0), g_be = cx(0);
        for (int y = 0; y < S; y++)
            g_al += cconj(be[y]) * H[x * S + y], g_be += cconj(al[y]) * H[y * S + x];
        float *ga = x ? g_qb + 2 * ((size_t)i * d.r + x - 1) : g_ct + 2 * i;
        float *gb = x ? g_p + 2 * ((size_t)i * d.r + x - 1) : g_b + 2 * i;
        ga[0] += (float)g_al.re, ga[1] += (float)g_al.im;
        gb[0] += (float)g_be.re, gb[1] += (float)g_be.im;
    }
}

// One thread per (channel, frequency): part[c, j] = Re(conj(-a_j) g_a_j),
// g_a_j = sum_n conj(-D_jn^2) g_D_jn (da/dlog_dt = -a).
__global__ void dplr_dt_part_kernel(double *part, const Cx *F, DplrParams P, DplrDims d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.C * d.T) return;
    int c = (int)(i / d.T), j = (int)(i % d.T), S = d.S, SS = S * S;
    Cx a, b, ga = cx(0);
    dplr_ab(exp((double)P.log_dt[c]), j, d.T, a, b);
    const Cx *f = F + (size_t)i * SS;
    for (int n = 0; n < d.N; n++) {
        Cx D = cx(1) / (a - b * lambda_of(P, d, c, n)), gD = cx(0);
        for (int x = 0; x < S; x++) {
            Cx al = alpha_of(P, d, c, n, x);
            for (int y = 0; y < S; y++) gD += cconj(al * beta_of(P, d, c, n, y)) * f[x * S + y];
        }
        ga -= cconj(D * D) * gD;
    }
    part[i] = (cconj(-a) * ga).re;
}

__global__ void dplr_dt_grad_kernel(float *g_log_dt, const double *part, int C, int T) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double acc = 0;
    for (int j = 0; j < T; j++) acc += part[(size_t)c * T + j];
    g_log_dt[c] += (float)acc;
}

static void dplr_bwd(const OpShape *s, const float *const *in, const float *const *,
                     const float *sv, const float *const *dout, float *const *din) {
    DplrDims d = dplr_dims(s);
    DplrParams P = dplr_params_of(in);
    int T = d.T, C = d.C, B = d.B, n = dplr_fft_len(T), bins = n / 2 + 1, SS = d.S * d.S;
    size_t kpad_n = (size_t)C * n, upad_n = (size_t)B * C * n, spec_n = (size_t)B * C * bins;
    size_t f_bytes = sizeof(float) * (2 * kpad_n + upad_n);
    size_t c_bytes = sizeof(cufftComplex) * (2 * (size_t)C * bins + 3 * spec_n);
    float *kpad = (float *)tmp_alloc(f_bytes), *gpad = kpad + kpad_n, *upad = gpad + kpad_n;
    cufftComplex *kf = (cufftComplex *)tmp_alloc(c_bytes), *acc = kf + (size_t)C * bins;
    cufftComplex *uf = acc + (size_t)C * bins, *dyf = uf + spec_n, *tmp = dyf + spec_n;
    int grid_pad = ceil_div((long long)upad_n, 128), grid_tok = ceil_div((long long)B * T * C, 128);
    dplr_pad_kernel<<<ceil_div((long long)kpad_n, 128), 128>>>(kpad, sv, C, T, n);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, C, CUFFT_R2C), kpad, kf));
    dplr_gather_kernel<<<grid_pad, 128>>>(upad, in[CORE_IN_QKV], B, T, C, C, n);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, B * C, CUFFT_R2C), upad, uf));
    dplr_gather_kernel<<<grid_pad, 128>>>(upad, dout[0], B, T, C, 2 * C, n);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, B * C, CUFFT_R2C), upad, dyf));
    // du[b, s] += sum_t dy[b, t] K[t - s]: conj(Kf) DY
    dplr_spec_mul_kernel<<<ceil_div((long long)spec_n, 128), 128>>>(tmp, kf, dyf, B, C, bins, 1);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(n, B * C, CUFFT_C2R), tmp, upad));
    dplr_scatter_kernel<<<grid_tok, 128>>>(din[CORE_IN_QKV], upad, B, T, C, C, n, 1);
    CUDA_LAUNCH_CHECK();
    dplr_skip_kernel<<<grid_tok, 128>>>(din[CORE_IN_QKV], dout[0], B * T, C, 0);
    CUDA_LAUNCH_CHECK();
    // dK_k = sum_b sum_t dy[b, t] u[b, t - k]: sum_b conj(U) DY
    dplr_corr_kernel<<<ceil_div((long long)C * bins, 128), 128>>>(acc, uf, dyf, B, C, bins);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(n, C, CUFFT_C2R), acc, gpad));
    // g_Khat = DFT(g_K) / T (the 1 / T in dplr_f_kernel)
    size_t CT = (size_t)C * T;
    size_t x_bytes = sizeof(Cx) * (2 * CT + CT * SS) + sizeof(double) * CT;
    Cx *gk = (Cx *)tmp_alloc(x_bytes), *G = gk + CT, *F = G + CT;
    double *part = (double *)(F + CT * SS);
    dplr_gk_kernel<<<ceil_div((long long)CT, 128), 128>>>(gk, gpad, C, T, n);
    CUDA_LAUNCH_CHECK();
    dplr_dft(gk, G, T, C, CUFFT_FORWARD);
    dplr_f_kernel<<<ceil_div((long long)CT, 64), 64>>>(F, G, P, d);
    CUDA_LAUNCH_CHECK();
    dplr_mode_grad_kernel<<<ceil_div((long long)C * d.N, 64), 64>>>(
        din[CORE_IN_PARAMS + DPLR_LAMBDA], din[CORE_IN_PARAMS + DPLR_P],
        din[CORE_IN_PARAMS + DPLR_QBAR], din[CORE_IN_PARAMS + DPLR_B],
        din[CORE_IN_PARAMS + DPLR_CTILDE], F, P, d);
    CUDA_LAUNCH_CHECK();
    dplr_dt_part_kernel<<<ceil_div((long long)CT, 64), 64>>>(part, F, P, d);
    CUDA_LAUNCH_CHECK();
    dplr_dt_grad_kernel<<<ceil_div(C, 64), 64>>>(din[CORE_IN_PARAMS + DPLR_LOG_DT], part, C, T);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(gk, x_bytes);
    mt_cuda_temp_free(kf, c_bytes);
    mt_cuda_temp_free(kpad, f_bytes);
}

extern "C" const CudaKernels cuda_op_dplr = {dplr_fwd, dplr_bwd, NULL};
