// DPLR SSM (mixers.md 21; S4, Gu et al. 2022, with E011's Neumann-series resolvent): a
// time-invariant state space model per channel c of the C channels (each its own SISO system),
//   x' = A x + B u,  y = Re(C x),   A = diag(Lambda) - P Q^*   (N x N complex, rank r),
// discretised by the bilinear rule with step Delta = exp(log_dt), and applied as a causal
// convolution y = K * u with the kernel K_k = Re(C Abar^k Bbar), k < T (T: the call's sequence
// length; with packed rows a call is one example). The kernel comes from its generating function
// at the T roots of unity z_j = exp(-2 pi i j / T), in the form that stays finite at z = -1
// (even T):
//   Khat_j = 2 Ctilde (a_j I - b_j A)^-1 B,   a_j = (2 / Delta)(1 - z_j),   b_j = 1 + z_j,
//   Ctilde = C (I - Abar^T)   (learned directly, as S4 does),   K = Re(IFFT_T(Khat)).
// With D_n = 1 / (a_j - b_j lambda_n), (a I - b A)^-1 = (D^-1 + (b P) Q^*)^-1 is
//   Woodbury (exact, mixer.neumann_order = 0):  D - D (b P) (I_r + Q^* D b P)^-1 Q^* D
//   Neumann order k (1..16):                    sum_{i=0..k} (-D b P Q^*)^i D
// and both need only four Cauchy sums per frequency, which form one (1 + r) x (1 + r) matrix
//   Km[x][y] = c_y sum_n alpha_n[x] beta_n[y] D_n,   alpha_n = (Ctilde_n, qbar_n,0..r-1),
//   beta_n = (B_n, P_n,0..r-1),  c_0 = 1, c_(y>0) = b_j:
// k00 = Km[0][0], k01 = Km[0][1..], k10 = Km[1..][0], k11 = Km[1..][1..] (r x r), and
//   Woodbury  Khat = 2 (k00 - k01 (I + k11)^-1 k10)
//   Neumann   Khat = 2 (k00 - k01 sum_{m<k} (-k11)^m k10).
// The convolution is applied by real FFTs of length 2T (FFTW); the output is [y (C) | u (C)],
// so the layer's W_o holds the skip D (kernels/ssm_dplr.h).
//
// Gradients: Q is stored conjugated (qbar = conj(Q)), so every sum is holomorphic in Lambda, P,
// qbar, B, Ctilde and a_j. For a real loss and g_w = dL/dRe w + i dL/dIm w, a holomorphic
// w = f(z) gives g_z = conj(f'(z)) g_w; K = Re(IFFT(Khat)) gives g_Khat = DFT(g_K) / T, and
// log_dt enters through a_j (da/dlog_dt = -a). The convolution's backward is two
// cross-correlations (dK with u, du with K), by FFT as well.
//
// The generating function is evaluated in double in both builds (its few parameters are cheap
// next to the convolution, and the Woodbury solve sits near 1 + k11 = 2 at HiPPO's s = 0).
//
// Initialisation: HiPPO-LegS in its normal-plus-low-rank form, every channel alike, all N complex
// modes kept (S4 keeps N/2 of each conjugate pair and doubles the real part; here the output is
// the real part of all N, which is the same model with twice the storage). The normal part
// S = A_LegS + P P^T = -I/2 + (real skew) is diagonalised from the real Schur form of its skew
// part (LAPACK dgees, as bench/bench_dplr.c, which explains why not zheev), giving
// Lambda = -1/2 + i mu, P~ = V^* P, B~ = V^* B, qbar = conj(P~). Oracle: dense N x N complex
// matrices, the discretisation solved by Gaussian elimination, K_k = Re(C Abar^k Bbar) by
// repeated products and a direct convolution (Woodbury shapes); for Neumann shapes the
// truncated resolvent is built densely per frequency and inverted by an explicit DFT.
#include "../ssm_dplr.h"

#include <complex.h>
// glibc defines CMPLX only where the compiler has __builtin_complex (not clang 14, the
// fuzzers' compiler): the plain form is the same for the finite values used here.
#ifndef CMPLX
#define CMPLX(x, y) ((double complex)((double)(x) + I * (double)(y)))
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../rng.h"

typedef double complex cplx;

// LAPACK from OpenBLAS, Fortran ABI (column-major, arguments by reference; gfortran passes each
// character argument's length as a hidden trailing size_t).
extern void dgees_(char *jobvs, char *sort, void *select, int *n, double *a, int *lda, int *sdim,
                   double *wr, double *wi, double *vs, int *ldvs, double *work, int *lwork,
                   int *bwork, int *info, size_t jobvs_len, size_t sort_len);

// ---- one channel's parameters --------------------------------------------------------------

typedef struct {
    int N, r, S;
    double delta;
    cplx *lam;    // [N]
    cplx *alpha;  // [N, S]: Ctilde_n, qbar_n,0..r-1 (the left factors of the Cauchy sums)
    cplx *beta;   // [N, S]: B_n, P_n,0..r-1 (the right factors)
} DplrChan;

static cplx cx(const real *p, size_t i) {
    return CMPLX((double)p[2 * i], (double)p[2 * i + 1]);
}

// mem: N (1 + 2 S) complex values.
static DplrChan chan_load(const DplrDims *d, const real *const *in, int c, cplx *mem) {
    DplrChan ch = {.N = d->N, .r = d->r, .S = d->S};
    ch.lam = mem, ch.alpha = mem + d->N, ch.beta = mem + d->N + (size_t)d->N * d->S;
    const real *lam = in[CORE_IN_PARAMS + DPLR_LAMBDA] + (size_t)c * 2 * d->N;
    const real *p = in[CORE_IN_PARAMS + DPLR_P] + (size_t)c * 2 * d->N * d->r;
    const real *qb = in[CORE_IN_PARAMS + DPLR_QBAR] + (size_t)c * 2 * d->N * d->r;
    const real *b = in[CORE_IN_PARAMS + DPLR_B] + (size_t)c * 2 * d->N;
    const real *ct = in[CORE_IN_PARAMS + DPLR_CTILDE] + (size_t)c * 2 * d->N;
    for (int n = 0; n < d->N; n++) {
        ch.lam[n] = cx(lam, n);
        cplx *al = ch.alpha + (size_t)n * d->S, *be = ch.beta + (size_t)n * d->S;
        al[0] = cx(ct, n), be[0] = cx(b, n);
        for (int j = 0; j < d->r; j++)
            al[1 + j] = cx(qb, (size_t)n * d->r + j), be[1 + j] = cx(p, (size_t)n * d->r + j);
    }
    ch.delta = exp((double)in[CORE_IN_PARAMS + DPLR_LOG_DT][c]);
    return ch;
}

// z_j = exp(-2 pi i j / T), exact at j = 0 and at 2 j = T (there b_j = 1 + z_j is exactly 0 and
// the low-rank terms vanish, the limit of the resolvent form).
static cplx dplr_root(int j, int T) {
    if (j == 0) return 1;
    if (2 * j == T) return -1;
    double th = 2 * M_PI * ((double)j / T);
    return CMPLX(cos(th), -sin(th));
}

static void dplr_ab(const DplrChan *ch, int j, int T, cplx *a, cplx *b) {
    cplx z = dplr_root(j, T);
    *a = (2 / ch->delta) * (1 - z), *b = 1 + z;
}

// Km[x S + y] = c_y sum_n alpha_n[x] beta_n[y] / (a - b lambda_n).
static void dplr_sums_at(const DplrChan *ch, cplx a, cplx b, cplx *Km) {
    int S = ch->S;
    for (int i = 0; i < S * S; i++) Km[i] = 0;
    for (int n = 0; n < ch->N; n++) {
        cplx D = 1 / (a - b * ch->lam[n]);
        const cplx *al = ch->alpha + (size_t)n * S, *be = ch->beta + (size_t)n * S;
        for (int x = 0; x < S; x++) {
            cplx aD = al[x] * D;
            for (int y = 0; y < S; y++) Km[x * S + y] += aD * be[y];
        }
    }
    for (int x = 0; x < S; x++)
        for (int y = 1; y < S; y++) Km[x * S + y] *= b;
}

// Solves A x = rhs in place (A: n x n row-major, destroyed) by Gaussian elimination with partial
// pivoting; n <= DPLR_MAX_RANK here (the Woodbury capacitance matrix).
static void csolve(int n, cplx *A, cplx *x) {
    for (int k = 0; k < n; k++) {
        int piv = k;
        for (int i = k + 1; i < n; i++)
            if (cabs(A[i * n + k]) > cabs(A[piv * n + k])) piv = i;
        if (piv != k) {
            for (int j = 0; j < n; j++) {
                cplx t = A[k * n + j];
                A[k * n + j] = A[piv * n + j], A[piv * n + j] = t;
            }
            cplx t = x[k];
            x[k] = x[piv], x[piv] = t;
        }
        for (int i = k + 1; i < n; i++) {
            cplx f = A[i * n + k] / A[k * n + k];
            for (int j = k; j < n; j++) A[i * n + j] -= f * A[k * n + j];
            x[i] -= f * x[k];
        }
    }
    for (int k = n - 1; k >= 0; k--) {
        for (int j = k + 1; j < n; j++) x[k] -= A[k * n + j] * x[j];
        x[k] /= A[k * n + k];
    }
}

// Khat at one frequency from its sums Km, and (dK not NULL) dKhat / dKm[x][y].
//   Woodbury: v = (I + k11)^-1 k10, w = k01 (I + k11)^-1; Khat = 2 (k00 - k01 v);
//             d/dk01 = -2 v, d/dk10 = -2 w, d/dk11[i][j] = 2 w_i v_j.
//   Neumann:  v_m = (-k11)^m k10, w_m = k01 (-k11)^m (m < k); p = sum v_m; Khat = 2 (k00 - k01 p);
//             d/dk01 = -2 p, d/dk10 = -2 sum_m w_m, d/dk11[i][j] = 2 sum_{m+l <= k-2} w_m,i v_l,j.
static cplx dplr_combine(int r, int order, const cplx *Km, cplx *dK) {
    int S = r + 1;
    cplx k00 = Km[0], v[DPLR_MAX_RANK], w[DPLR_MAX_RANK];
    if (order == 0) {
        cplx M[DPLR_MAX_RANK * DPLR_MAX_RANK], Mt[DPLR_MAX_RANK * DPLR_MAX_RANK];
        for (int i = 0; i < r; i++) {
            v[i] = Km[(1 + i) * S], w[i] = Km[1 + i];
            for (int j = 0; j < r; j++) {
                M[i * r + j] = Km[(1 + i) * S + 1 + j] + (i == j);
                Mt[j * r + i] = M[i * r + j];
            }
        }
        csolve(r, M, v), csolve(r, Mt, w);
        cplx Khat = k00;
        for (int i = 0; i < r; i++) Khat -= Km[1 + i] * v[i];
        if (dK) {
            dK[0] = 2;
            for (int i = 0; i < r; i++) {
                dK[1 + i] = -2 * v[i], dK[(1 + i) * S] = -2 * w[i];
                for (int j = 0; j < r; j++) dK[(1 + i) * S + 1 + j] = 2 * w[i] * v[j];
            }
        }
        return 2 * Khat;
    }
    // Neumann: the powers, their sums p = sum v_m and wsum = sum w_m, and (for dK) the prefix sums
    // wpre_q = sum_{m <= q} w_m.
    enum { MO = 16 };  // the option's maximum order
    cplx vm[MO][DPLR_MAX_RANK], wpre[MO][DPLR_MAX_RANK], p[DPLR_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) vm[0][i] = Km[(1 + i) * S], w[i] = Km[1 + i];
    for (int m = 0; m < order; m++) {
        for (int i = 0; i < r; i++) {
            p[i] += vm[m][i];
            wpre[m][i] = (m ? wpre[m - 1][i] : 0) + w[i];
        }
        if (m + 1 == order) break;
        cplx nv[DPLR_MAX_RANK], nw[DPLR_MAX_RANK];
        for (int i = 0; i < r; i++) {
            nv[i] = 0, nw[i] = 0;
            for (int j = 0; j < r; j++) {
                nv[i] -= Km[(1 + i) * S + 1 + j] * vm[m][j];  // (-k11 v)_i
                nw[i] -= w[j] * Km[(1 + j) * S + 1 + i];      // (-w k11)_i
            }
        }
        for (int i = 0; i < r; i++) vm[m + 1][i] = nv[i], w[i] = nw[i];
    }
    cplx Khat = k00;
    for (int i = 0; i < r; i++) Khat -= Km[1 + i] * p[i];
    if (dK) {
        dK[0] = 2;
        for (int i = 0; i < r; i++) {
            dK[1 + i] = -2 * p[i], dK[(1 + i) * S] = -2 * wpre[order - 1][i];
            for (int j = 0; j < r; j++) {
                cplx acc = 0;
                for (int l = 0; l <= order - 2; l++) acc += wpre[order - 2 - l][i] * vm[l][j];
                dK[(1 + i) * S + 1 + j] = 2 * acc;
            }
        }
    }
    return 2 * Khat;
}

// ---- kernels --------------------------------------------------------------------------------

// Complex transforms of length T, planned once per call (FFTW's planner is not thread-safe; its
// execute functions are, and unaligned plans accept any buffer in the new-array calls).
typedef struct {
    fftw_plan inv, fwd;  // e^{+2 pi i jk/T} (Khat -> T kappa), e^{-2 pi i jk/T} (g_K -> T g_Khat)
} DplrPlans;

static DplrPlans dplr_plans(int T, int want_fwd) {
    DplrPlans pl = {NULL, NULL};
    cplx *buf = fftw_malloc(sizeof(cplx) * 2 * (size_t)T);
#pragma omp critical(fftw_planner)
    {
        pl.inv = fftw_plan_dft_1d(T, buf, buf + T, FFTW_BACKWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
        if (want_fwd)
            pl.fwd =
                fftw_plan_dft_1d(T, buf, buf + T, FFTW_FORWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
    }
    fftw_free(buf);
    return pl;
}

static void dplr_plans_free(DplrPlans *pl) {
#pragma omp critical(fftw_planner)
    {
        fftw_destroy_plan(pl->inv);
        if (pl->fwd) fftw_destroy_plan(pl->fwd);
    }
}

// K[c][k] = Re(IFFT_T(Khat))_k of every channel, with the given Neumann order (0: Woodbury);
// rho (not NULL): [C, T] the spectral radius of k11 at every frequency (the aux figure).
static double dplr_spectral_radius(int r, const cplx *Km);

static void dplr_kernels(const DplrDims *d, const real *const *in, int order, double *K,
                         double *rho) {
    DplrPlans pl = dplr_plans(d->T, 0);
    int T = d->T, S = d->S;
#pragma omp parallel
    {
        cplx *mem = malloc(sizeof(cplx) * ((size_t)d->N * (1 + 2 * S) + 2 * (size_t)T + S * S));
        cplx *khat = mem + (size_t)d->N * (1 + 2 * S), *kappa = khat + T, *Km = kappa + T;
#pragma omp for schedule(static)
        for (int c = 0; c < d->C; c++) {
            DplrChan ch = chan_load(d, in, c, mem);
            for (int j = 0; j < T; j++) {
                cplx a, b;
                dplr_ab(&ch, j, T, &a, &b);
                dplr_sums_at(&ch, a, b, Km);
                khat[j] = dplr_combine(d->r, order, Km, NULL);
                if (rho) rho[(size_t)c * T + j] = dplr_spectral_radius(d->r, Km);
            }
            fftw_execute_dft(pl.inv, khat, kappa);
            for (int k = 0; k < T; k++) K[(size_t)c * T + k] = creal(kappa[k]) / T;
        }
        free(mem);
    }
    dplr_plans_free(&pl);
}

// The convolution's real transforms of length 2T.
typedef struct {
    FFTW(plan) r2c, c2r;
    int n, bins;
} ConvPlans;

static ConvPlans conv_plans(int T) {
    ConvPlans cp = {.n = 2 * T, .bins = T + 1};
    real *x = FFTW(malloc)(sizeof(real) * cp.n);
    FFTW(complex) *X = FFTW(malloc)(sizeof(FFTW(complex)) * cp.bins);
#pragma omp critical(fftw_planner)
    {
        cp.r2c = FFTW(plan_dft_r2c_1d)(cp.n, x, X, FFTW_ESTIMATE | FFTW_UNALIGNED);
        cp.c2r = FFTW(plan_dft_c2r_1d)(cp.n, X, x, FFTW_ESTIMATE | FFTW_UNALIGNED);
    }
    FFTW(free)(x), FFTW(free)(X);
    return cp;
}

static void conv_plans_free(ConvPlans *cp) {
#pragma omp critical(fftw_planner)
    {
        FFTW(destroy_plan)(cp->r2c);
        FFTW(destroy_plan)(cp->c2r);
    }
}

// Kf[c] = FFT_2T of channel c's kernel, zero-padded: [C, T + 1].
static FFTW(complex) * kernel_spectra(const DplrDims *d, const ConvPlans *cp, const real *K) {
    FFTW(complex) *Kf = malloc(sizeof(FFTW(complex)) * (size_t)d->C * cp->bins);
#pragma omp parallel
    {
        real *x = malloc(sizeof(real) * cp->n);
#pragma omp for schedule(static)
        for (int c = 0; c < d->C; c++) {
            memcpy(x, K + (size_t)c * d->T, sizeof(real) * d->T);
            memset(x + d->T, 0, sizeof(real) * d->T);
            FFTW(execute_dft_r2c)(cp->r2c, x, Kf + (size_t)c * cp->bins);
        }
        free(x);
    }
    return Kf;
}

// x = column c of a [T, stride] token-major buffer, zero-padded to 2T, then its spectrum.
static void column_spectrum(const ConvPlans *cp, const real *src, int T, int stride, real *x,
                            FFTW(complex) * X) {
    for (int t = 0; t < T; t++) x[t] = src[(size_t)t * stride];
    memset(x + T, 0, sizeof(real) * T);
    FFTW(execute_dft_r2c)(cp->r2c, x, X);
}

static void dplr_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    DplrDims d = dplr_dims(s);
    int T = d.T, C = d.C, W = 2 * C;
    double *K = malloc(sizeof(double) * (size_t)C * T);
    dplr_kernels(&d, in, d.order, K, NULL);
    for (size_t i = 0; i < (size_t)C * T; i++) sv[i] = (real)K[i];  // saved: K [C, T]
    free(K);
    ConvPlans cp = conv_plans(T);
    FFTW(complex) *Kf = kernel_spectra(&d, &cp, sv);
    const real *u = in[CORE_IN_QKV];
#pragma omp parallel
    {
        real *x = malloc(sizeof(real) * cp.n);
        FFTW(complex) *X = malloc(sizeof(FFTW(complex)) * cp.bins);
#pragma omp for schedule(static)
        for (int bc = 0; bc < d.B * C; bc++) {
            int b = bc / C, c = bc % C;
            column_spectrum(&cp, u + (size_t)b * T * C + c, T, C, x, X);
            const FFTW(complex) *k = Kf + (size_t)c * cp.bins;
            for (int f = 0; f < cp.bins; f++) X[f] *= k[f];
            FFTW(execute_dft_c2r)(cp.c2r, X, x);
            real *o = out[0] + (size_t)b * T * W + c;
            for (int t = 0; t < T; t++) o[(size_t)t * W] = x[t] / cp.n;
        }
        free(x), free(X);
    }
    // u passes through to the output's last C columns (W_o's skip D)
    for (size_t tok = 0; tok < (size_t)d.B * T; tok++)
        memcpy(out[0] + tok * W + C, u + tok * C, sizeof(real) * C);
    free(Kf);
    conv_plans_free(&cp);
}

// Channel c's parameter gradients from g_K [T] (dL/dK_k), added into din.
static void dplr_channel_backward(const DplrDims *d, const real *const *in, int c,
                                  const DplrPlans *pl, const double *gK, cplx *mem,
                                  real *const *din) {
    int T = d->T, S = d->S, N = d->N, SS = S * S;
    DplrChan ch = chan_load(d, in, c, mem);
    cplx *G = mem + (size_t)N * (1 + 2 * S), *F = G + T, *A = F + (size_t)T * SS, *Bj = A + T;
    cplx *ga = Bj + T, *Km = ga + T, *dK = Km + SS, *H = dK + SS;
    // g_Khat_j = DFT(g_K)_j / T
    for (int k = 0; k < T; k++) A[k] = gK[k];  // A as the transform's input until a_j
    fftw_execute_dft(pl->fwd, A, G);
    // F_j[x][y] = conj(c_y) conj(dKhat_j / dKm[x][y]) g_Khat_j: the gradient of each sum with
    // the b_j of its right factor folded in.
    for (int j = 0; j < T; j++) {
        G[j] /= T;
        dplr_ab(&ch, j, T, &A[j], &Bj[j]);
        dplr_sums_at(&ch, A[j], Bj[j], Km);
        dplr_combine(d->r, d->order, Km, dK);
        for (int x = 0; x < S; x++)
            for (int y = 0; y < S; y++)
                F[(size_t)j * SS + x * S + y] = (y ? conj(Bj[j]) : 1) * conj(dK[x * S + y]) * G[j];
        ga[j] = 0;
    }
    real *g_lam = din[CORE_IN_PARAMS + DPLR_LAMBDA] + (size_t)c * 2 * N;
    real *g_p = din[CORE_IN_PARAMS + DPLR_P] + (size_t)c * 2 * N * d->r;
    real *g_qb = din[CORE_IN_PARAMS + DPLR_QBAR] + (size_t)c * 2 * N * d->r;
    real *g_b = din[CORE_IN_PARAMS + DPLR_B] + (size_t)c * 2 * N;
    real *g_ct = din[CORE_IN_PARAMS + DPLR_CTILDE] + (size_t)c * 2 * N;
    for (int n = 0; n < N; n++) {
        const cplx *al = ch.alpha + (size_t)n * S, *be = ch.beta + (size_t)n * S;
        cplx W[DPLR_SUMS], gl = 0;  // conj(alpha_x beta_y)
        for (int x = 0; x < S; x++)
            for (int y = 0; y < S; y++) W[x * S + y] = conj(al[x] * be[y]);
        for (int i = 0; i < SS; i++) H[i] = 0;
        for (int j = 0; j < T; j++) {
            cplx D = 1 / (A[j] - Bj[j] * ch.lam[n]), gD = 0, cD = conj(D);
            const cplx *f = F + (size_t)j * SS;
            for (int i = 0; i < SS; i++) gD += W[i] * f[i], H[i] += cD * f[i];
            cplx D2 = conj(D * D);
            gl += conj(Bj[j]) * D2 * gD;  // dD/dlambda = b D^2
            ga[j] -= D2 * gD;             // dD/da = -D^2
        }
        g_lam[2 * n] += (real)creal(gl), g_lam[2 * n + 1] += (real)cimag(gl);
        for (int x = 0; x < S; x++) {
            cplx g_al = 0, g_be = 0;  // alpha_x's and beta_x's gradients
            for (int y = 0; y < S; y++)
                g_al += conj(be[y]) * H[x * S + y], g_be += conj(al[y]) * H[y * S + x];
            real *ga_dst = x ? g_qb + 2 * ((size_t)n * d->r + x - 1) : g_ct + 2 * n;
            real *gb_dst = x ? g_p + 2 * ((size_t)n * d->r + x - 1) : g_b + 2 * n;
            ga_dst[0] += (real)creal(g_al), ga_dst[1] += (real)cimag(g_al);
            gb_dst[0] += (real)creal(g_be), gb_dst[1] += (real)cimag(g_be);
        }
    }
    // log_dt: a_j = (2 / Delta)(1 - z_j), da/dlog_dt = -a
    double g_dt = 0;
    for (int j = 0; j < T; j++) g_dt += creal(conj(-A[j]) * ga[j]);
    din[CORE_IN_PARAMS + DPLR_LOG_DT][c] += (real)g_dt;
}

static void dplr_backward(const OpShape *s, const real *const *in, const real *const *out,
                          const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    DplrDims d = dplr_dims(s);
    int T = d.T, C = d.C, W = 2 * C, S = d.S;
    const real *u = in[CORE_IN_QKV];
    ConvPlans cp = conv_plans(T);
    FFTW(complex) *Kf = kernel_spectra(&d, &cp, sv);
    double *gK = malloc(sizeof(double) * (size_t)C * T);
    // Per channel: dK_k = sum_b sum_t dy[b, t] u[b, t - k] (the spectra summed over rows first)
    // and du[b, s] += sum_t dy[b, t] K[t - s]: cross-correlations, conj(.) times the spectrum
    // of dy. The zero padding to 2T keeps the wrapped-around lags at zero.
#pragma omp parallel
    {
        real *x = malloc(sizeof(real) * cp.n);
        FFTW(complex) *U = malloc(sizeof(FFTW(complex)) * cp.bins * 3), *DY = U + cp.bins,
                      *acc = DY + cp.bins;
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            const FFTW(complex) *k = Kf + (size_t)c * cp.bins;
            for (int f = 0; f < cp.bins; f++) acc[f] = 0;
            for (int b = 0; b < d.B; b++) {
                column_spectrum(&cp, u + (size_t)b * T * C + c, T, C, x, U);
                column_spectrum(&cp, dout[0] + (size_t)b * T * W + c, T, W, x, DY);
                for (int f = 0; f < cp.bins; f++)
                    acc[f] += conj(U[f]) * DY[f], U[f] = conj(k[f]) * DY[f];
                FFTW(execute_dft_c2r)(cp.c2r, U, x);
                real *du = din[CORE_IN_QKV] + (size_t)b * T * C + c;
                for (int t = 0; t < T; t++) du[(size_t)t * C] += x[t] / cp.n;
            }
            FFTW(execute_dft_c2r)(cp.c2r, acc, x);
            for (int t = 0; t < T; t++) gK[(size_t)c * T + t] = (double)x[t] / cp.n;
        }
        free(x), free(U);
    }
    for (size_t tok = 0; tok < (size_t)d.B * T; tok++)
        for (int c = 0; c < C; c++) din[CORE_IN_QKV][tok * C + c] += dout[0][tok * W + C + c];
    free(Kf);
    conv_plans_free(&cp);
    DplrPlans pl = dplr_plans(T, 1);
#pragma omp parallel
    {
        size_t n_mem = (size_t)d.N * (1 + 2 * S) + (size_t)T * (4 + S * S) + 3 * S * S;
        cplx *mem = malloc(sizeof(cplx) * n_mem);
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++)
            dplr_channel_backward(&d, in, c, &pl, gK + (size_t)c * T, mem, din);
        free(mem);
    }
    dplr_plans_free(&pl);
    free(gK);
}

// ---- HiPPO-LegS initialisation ---------------------------------------------------------------

// Lambda, P~ (rank-1 column) and B~ of HiPPO-LegS of size N in the eigenbasis of its normal part
// (bench/bench_dplr.c, make_problem, for the derivation): A_LegS = S - P P^T,
// S = -I/2 + K with K real skew; dgees gives K = Z T Z^T with 2 x 2 blocks [[0, b], [-b, 0]],
// whose complex eigenvectors (z1 +- i z2) / sqrt 2 have eigenvalues +-i b. Returns 0, or -1
// when dgees fails.
static int dplr_hippo(int N, cplx *lam, cplx *P, cplx *B) {
    size_t NN = (size_t)N * N;
    double *K = malloc(sizeof(double) * NN), *Z = malloc(sizeof(double) * NN);
    double *wr = malloc(sizeof(double) * N), *wi = malloc(sizeof(double) * N);
    cplx *V = malloc(sizeof(cplx) * NN);  // column-major: V[r + N m] is row r of eigenvector m
    // K = S + I/2 column-major: S[n][k] = A_LegS[n][k] + sqrt(n + 1/2) sqrt(k + 1/2); below the
    // diagonal that is -sqrt(2n+1) sqrt(2k+1) + sqrt(2n+1) sqrt(2k+1) / 2; the upper triangle is
    // written as the exact negative of the lower, the diagonal as 0.
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            int hi = n > k ? n : k, lo = n > k ? k : n;
            double low = -0.5 * sqrt(2.0 * hi + 1) * sqrt(2.0 * lo + 1);  // S[hi][lo]
            K[n + (size_t)N * k] = n == k ? 0 : n > k ? low : -low;
        }
    char jobvs = 'V', sort = 'N';
    int n_ = N, lda = N, sdim = 0, lwork = -1, info = 0;
    double query = 0;
    dgees_(&jobvs, &sort, NULL, &n_, K, &lda, &sdim, wr, wi, Z, &lda, &query, &lwork, NULL, &info,
           1, 1);
    lwork = info == 0 && query >= 1 ? (int)query : 3 * N;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    dgees_(&jobvs, &sort, NULL, &n_, K, &lda, &sdim, wr, wi, Z, &lda, work, &lwork, NULL, &info, 1,
           1);
    free(work);
    if (info == 0) {
        for (int m = 0; m < N;) {
            const double *z1 = Z + (size_t)N * m;
            if (m + 1 == N || wi[m] == 0) {  // a real eigenvalue: 0 for a skew matrix
                for (int r = 0; r < N; r++) V[r + (size_t)N * m] = z1[r];
                lam[m] = -0.5;
                m += 1;
                continue;
            }
            const double *z2 = z1 + N;
            double b = 0.5 * (K[m + (size_t)N * (m + 1)] - K[m + 1 + (size_t)N * m]);
            for (int r = 0; r < N; r++) {
                V[r + (size_t)N * m] = CMPLX(z1[r], z2[r]) * M_SQRT1_2;
                V[r + (size_t)N * (m + 1)] = CMPLX(z1[r], -z2[r]) * M_SQRT1_2;
            }
            lam[m] = CMPLX(-0.5, b), lam[m + 1] = CMPLX(-0.5, -b);
            m += 2;
        }
        for (int m = 0; m < N; m++) {  // P~ = V^* P, B~ = V^* B
            cplx pm = 0, bm = 0;
            for (int r = 0; r < N; r++) {
                pm += conj(V[r + (size_t)N * m]) * sqrt(r + 0.5);
                bm += conj(V[r + (size_t)N * m]) * sqrt(2.0 * r + 1);
            }
            P[m] = pm, B[m] = bm;
        }
    }
    free(K), free(Z), free(wr), free(wi), free(V);
    return info == 0 ? 0 : -1;
}

// Every channel alike: Lambda, P (column 0), qbar = conj(P) (column 0) and B from HiPPO-LegS.
// P's further columns ~ complex normal (std 0.1 per part) and qbar's are 0: A starts exactly at
// HiPPO-LegS and both get a gradient (zero in both would stay zero). Ctilde ~ complex normal with
// std sqrt(0.5) per part (S4's); log_dt ~ U[log 1e-3, log 1e-1] (S4's range). None decayed.
static void dplr_init(const OpShape *s, int index, uint64_t key, real *w) {
    DplrDims d = dplr_dims(s);
    int N = d.N, cols = dplr_param_cols(&d, index);
    if (index == DPLR_LOG_DT) {
        for (int c = 0; c < d.C; c++)
            w[c] = (real)(log(1e-3) + rng_uniform(key, (uint64_t)c) * (log(1e-1) - log(1e-3)));
        return;
    }
    if (index == DPLR_CTILDE) {
        for (size_t i = 0; i < (size_t)d.C * cols; i++)
            w[i] = (real)(sqrt(0.5) * rng_normal(key, i));
        return;
    }
    cplx *h = malloc(sizeof(cplx) * 3 * N), *lam = h, *P = h + N, *B = h + 2 * N;
    if (dplr_hippo(N, lam, P, B)) {
        fprintf(stderr, "dplr: LAPACK dgees failed on HiPPO-LegS of size %d\n", N);
        exit(1);
    }
    for (int c = 0; c < d.C; c++) {
        real *row = w + (size_t)c * cols;
        for (int n = 0; n < N; n++) {
            if (index == DPLR_LAMBDA || index == DPLR_B) {
                cplx v = index == DPLR_LAMBDA ? lam[n] : B[n];
                row[2 * n] = (real)creal(v), row[2 * n + 1] = (real)cimag(v);
                continue;
            }
            for (int j = 0; j < d.r; j++) {
                size_t at = 2 * ((size_t)n * d.r + j);
                cplx v = index == DPLR_P ? P[n] : conj(P[n]);
                if (j > 0)
                    v = index == DPLR_P ? CMPLX(0.1 * rng_normal(key, (uint64_t)c * cols + at),
                                                0.1 * rng_normal(key, (uint64_t)c * cols + at + 1))
                                        : 0;
                row[at] = (real)creal(v), row[at + 1] = (real)cimag(v);
            }
        }
    }
    free(h);
}

static int dplr_params(const OpShape *s, OpParam *out) {
    DplrDims d = dplr_dims(s);
    static const char *names[DPLR_NPARAMS] = {"lambda", "p", "qbar", "b", "ctilde", "log_dt"};
    for (int i = 0; i < DPLR_NPARAMS; i++)
        out[i] = (OpParam){.name = names[i],
                           .rows = d.C,
                           .cols = i == DPLR_LOG_DT ? 0 : dplr_param_cols(&d, i),
                           .init = INIT_CUSTOM,
                           .trainable = 1};
    return DPLR_NPARAMS;
}

static void dplr_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    DplrDims d = dplr_dims(s);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.C, in[CORE_IN_XPROJ] = 0;
    for (int i = 0; i < DPLR_NPARAMS; i++)
        in[CORE_IN_PARAMS + i] = (size_t)d.C * dplr_param_cols(&d, i);
    out[0] = NT * 2 * d.C;
    *saved = (size_t)d.C * s->T;  // the kernel K [C, T]
}

// Per token and channel (forward): the (1 + r)^2 Cauchy sums of all T frequencies (one complex
// multiply-add, 8 FLOPs, per term, and the reciprocal 1 / (a - b lambda), about 10) divided by
// T; the per-frequency combine (an r x r solve or k products of r x r by r, both ~8 k r^2 / T,
// counted as 8 (k + r) r^2); the kernel's complex inverse FFT (5 log2 T); and the convolution:
// the real FFTs of u and of the product and the kernel's (3 x 2.5 x 2T log2(2T) / T) and the
// spectrum product (6 (T + 1) / T).
static double dplr_flops(const OpShape *s) {
    DplrDims d = dplr_dims(s);
    double T = s->T > 0 ? s->T : 1, S = d.S;
    double gen = d.N * (8 * S * S + 10) + 8.0 * (d.order + d.r) * d.r * d.r / T + 5 * log2(T);
    double conv = 15 * log2(2 * T) + 6;
    return d.C * (gen + conv);
}

// The largest eigenvalue modulus of k11 = Q^* D b P (r x r; its nonzero eigenvalues are those of
// the Neumann term D b P Q^*). r = 1: |k11|. Otherwise Gelfand's formula on repeated squarings,
// rho = lim ||M^(2^i)||^(2^-i), normalised at each step (2^40 powers: the constant of a
// non-normal M contributes its log / 2^40).
static double dplr_spectral_radius(int r, const cplx *Km) {
    int S = r + 1;
    if (r == 1) return cabs(Km[S + 1]);
    cplx M[DPLR_MAX_RANK * DPLR_MAX_RANK], M2[DPLR_MAX_RANK * DPLR_MAX_RANK];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) M[i * r + j] = Km[(1 + i) * S + 1 + j];
    double log_rho = 0, scale = 1;
    for (int it = 0; it < 40; it++) {
        double nrm = 0;
        for (int i = 0; i < r * r; i++) nrm = fmax(nrm, cabs(M[i]));
        if (nrm == 0) return 0;
        log_rho += log(nrm) * scale;
        for (int i = 0; i < r * r; i++) M[i] /= nrm;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                cplx acc = 0;
                for (int k = 0; k < r; k++) acc += M[i * r + k] * M[k * r + j];
                M2[i * r + j] = acc;
            }
        memcpy(M, M2, sizeof(cplx) * r * r);
        scale /= 2;
    }
    double nrm = 0;
    for (int i = 0; i < r * r; i++) nrm = fmax(nrm, cabs(M[i]));
    return nrm == 0 ? 0 : exp(log_rho + log(nrm) * scale);
}

// neumann_radius_max: max over channels and frequencies of rho(D b P Q^*); neumann_diverging:
// the (channel, frequency) pairs where it reaches 1 (>= 1 - 1e-6: HiPPO-LegS has rho = 1 exactly
// at s = 0, which rounding puts on either side of 1; there the truncated series does not converge:
// counted with neumann_order > 0 only, whose kernel is then wrong there, and the trainer's aux
// report prints a warning naming the layer);
// neumann_error: ||K_neumann - K_woodbury|| / ||K_woodbury|| over all channels on the current
// parameters (0 when neumann_order = 0); dt_mean: the mean step Delta.
#define DPLR_RHO_ONE (1 - 1e-6)

static int dplr_aux(const OpShape *s, const real *const *in, OpAux *out) {
    DplrDims d = dplr_dims(s);
    size_t CT = (size_t)d.C * d.T;
    double *Kw = malloc(sizeof(double) * CT * 3), *Kn = Kw + CT, *rho = Kn + CT;
    dplr_kernels(&d, in, 0, Kw, rho);
    double rmax = 0, diverging = 0, err = 0, dt = 0;
    // Diverging pairs matter only to a Neumann kernel: Woodbury (order 0) is exact at any rho.
    for (size_t i = 0; i < CT; i++)
        rmax = fmax(rmax, rho[i]), diverging += d.order > 0 && rho[i] >= DPLR_RHO_ONE;
    if (d.order > 0) {
        dplr_kernels(&d, in, d.order, Kn, NULL);
        double e2 = 0, r2 = 0;
        for (size_t i = 0; i < CT; i++) e2 += pow(Kn[i] - Kw[i], 2), r2 += Kw[i] * Kw[i];
        err = r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
    }
    for (int c = 0; c < d.C; c++) dt += exp((double)in[CORE_IN_PARAMS + DPLR_LOG_DT][c]) / d.C;
    free(Kw);
    out[0] = (OpAux){.name = "neumann_radius_max", .value = rmax};
    out[1] = (OpAux){.name = "neumann_diverging", .value = diverging};
    out[2] = (OpAux){.name = "neumann_error", .value = err};
    out[3] = (OpAux){.name = "dt_mean", .value = dt};
    return 4;
}

#ifdef MT_DOUBLE
// ---- the oracle: dense matrices, from the definition ------------------------------------------

// Solves A X = R for X (A: n x n, R: n x m, both row-major; A and R are overwritten, X in R).
static void ref_solve(int n, int m, cplx *A, cplx *R) {
    for (int k = 0; k < n; k++) {
        int piv = k;
        for (int i = k + 1; i < n; i++)
            if (cabs(A[i * n + k]) > cabs(A[piv * n + k])) piv = i;
        for (int j = 0; j < n; j++) {
            cplx t = A[k * n + j];
            A[k * n + j] = A[piv * n + j], A[piv * n + j] = t;
        }
        for (int j = 0; j < m; j++) {
            cplx t = R[k * m + j];
            R[k * m + j] = R[piv * m + j], R[piv * m + j] = t;
        }
        for (int i = k + 1; i < n; i++) {
            cplx f = A[i * n + k] / A[k * n + k];
            for (int j = k; j < n; j++) A[i * n + j] -= f * A[k * n + j];
            for (int j = 0; j < m; j++) R[i * m + j] -= f * R[k * m + j];
        }
    }
    for (int k = n - 1; k >= 0; k--)
        for (int j = 0; j < m; j++) {
            cplx acc = R[k * m + j];
            for (int i = k + 1; i < n; i++) acc -= A[k * n + i] * R[i * m + j];
            R[k * m + j] = acc / A[k * n + k];
        }
}

static cplx ref_cx(const double *p, size_t i) {
    return CMPLX(p[2 * i], p[2 * i + 1]);
}

// Woodbury shapes: A = diag(Lambda) - P Q^* dense (Q^*[j][m] = qbar[m][j]); [Abar | Bbar] from
// (I - Delta/2 A) [Abar | Bbar] = [I + Delta/2 A | Delta B]; C from C (I - Abar^T) = Ctilde;
// K_k = Re(C Abar^k Bbar) by repeated products. Neumann shapes: per frequency the truncated
// resolvent R_j = sum_{i<=k} (-diag(D) b P Q^*)^i diag(D) as a dense matrix, Khat_j =
// 2 Ctilde R_j B, and K by an explicit inverse DFT. Then y_t = sum_k K_k u_{t-k} directly.
static int dplr_reference(const OpShape *s, const double *const *in, double *out) {
    DplrDims d = dplr_dims(s);
    int N = d.N, T = d.T, C = d.C, r = d.r;
    size_t NN = (size_t)N * N;
    cplx *A = malloc(sizeof(cplx) * NN), *M = malloc(sizeof(cplx) * NN);
    cplx *R = malloc(sizeof(cplx) * NN * 2 + N), *X = malloc(sizeof(cplx) * NN * 2);
    cplx *Bv = malloc(sizeof(cplx) * N), *Ct = malloc(sizeof(cplx) * N);
    cplx *x = malloc(sizeof(cplx) * N), *y = malloc(sizeof(cplx) * N),
         *Cr = malloc(sizeof(cplx) * N);
    double *K = malloc(sizeof(double) * T);
    cplx *khat = malloc(sizeof(cplx) * T);
    for (int c = 0; c < C; c++) {
        const double *lam = in[CORE_IN_PARAMS + DPLR_LAMBDA] + (size_t)c * 2 * N;
        const double *P = in[CORE_IN_PARAMS + DPLR_P] + (size_t)c * 2 * N * r;
        const double *qb = in[CORE_IN_PARAMS + DPLR_QBAR] + (size_t)c * 2 * N * r;
        double delta = exp(in[CORE_IN_PARAMS + DPLR_LOG_DT][c]);
        for (int n = 0; n < N; n++) {
            Bv[n] = ref_cx(in[CORE_IN_PARAMS + DPLR_B] + (size_t)c * 2 * N, n);
            Ct[n] = ref_cx(in[CORE_IN_PARAMS + DPLR_CTILDE] + (size_t)c * 2 * N, n);
        }
        // PQ[n][m] = sum_j P[n][j] Q^*[j][m]
        for (int n = 0; n < N; n++)
            for (int m = 0; m < N; m++) {
                cplx pq = 0;
                for (int j = 0; j < r; j++)
                    pq += ref_cx(P, (size_t)n * r + j) * ref_cx(qb, (size_t)m * r + j);
                A[n * N + m] = (n == m ? ref_cx(lam, n) : 0) - pq;
            }
        if (d.order == 0) {
            // R = [I + Delta/2 A | Delta B] (N x (N + 1)), M = I - Delta/2 A
            int m1 = N + 1;
            for (int n = 0; n < N; n++) {
                for (int m = 0; m < N; m++) {
                    M[n * N + m] = (n == m) - delta / 2 * A[n * N + m];
                    R[n * m1 + m] = (n == m) + delta / 2 * A[n * N + m];
                }
                R[n * m1 + N] = delta * Bv[n];
            }
            ref_solve(N, m1, M, R);  // R = [Abar | Bbar]
            // Abar^T by T products, then (I - Abar^T)^T C^T = Ctilde^T
            cplx *Ap = X, *tmp = X + NN;
            for (size_t i = 0; i < NN; i++) Ap[i] = (i / N == i % N);
            for (int t = 0; t < T; t++) {
                for (int n = 0; n < N; n++)
                    for (int m = 0; m < N; m++) {
                        cplx acc = 0;
                        for (int k = 0; k < N; k++) acc += Ap[n * N + k] * R[k * m1 + m];
                        tmp[n * N + m] = acc;
                    }
                memcpy(Ap, tmp, sizeof(cplx) * NN);
            }
            for (int n = 0; n < N; n++)
                for (int m = 0; m < N; m++) M[n * N + m] = (n == m) - Ap[m * N + n];
            memcpy(Cr, Ct, sizeof(cplx) * N);
            ref_solve(N, 1, M, Cr);
            for (int n = 0; n < N; n++) x[n] = R[n * m1 + N];
            for (int k = 0; k < T; k++) {
                cplx acc = 0;
                for (int n = 0; n < N; n++) acc += Cr[n] * x[n];
                K[k] = creal(acc);
                for (int n = 0; n < N; n++) {
                    cplx v = 0;
                    for (int m = 0; m < N; m++) v += R[n * m1 + m] * x[m];
                    y[n] = v;
                }
                memcpy(x, y, sizeof(cplx) * N);
            }
        } else {
            for (int j = 0; j < T; j++) {
                double th = 2 * M_PI * j / T;
                cplx z = cexp(CMPLX(0, -th));
                if (2 * j == T) z = -1;
                cplx a = 2 / delta * (1 - z), b = 1 + z, *D = y;  // D_n = 1 / (a - b lambda_n)
                for (int n = 0; n < N; n++) D[n] = 1 / (a - b * ref_cx(lam, n));
                // Mn = -diag(D) b P Q^*; X = diag(D); Rs = X; X <- Mn X, Rs += X (k times)
                for (int n = 0; n < N; n++)
                    for (int m = 0; m < N; m++) {
                        cplx pq = 0;
                        for (int q = 0; q < r; q++)
                            pq += ref_cx(P, (size_t)n * r + q) * ref_cx(qb, (size_t)m * r + q);
                        M[n * N + m] = -D[n] * b * pq;
                        X[n * N + m] = n == m ? D[n] : 0;
                        R[n * N + m] = X[n * N + m];
                    }
                for (int i = 1; i <= d.order; i++) {
                    cplx *tmp = X + NN;
                    for (int n = 0; n < N; n++)
                        for (int m = 0; m < N; m++) {
                            cplx acc = 0;
                            for (int k = 0; k < N; k++) acc += M[n * N + k] * X[k * N + m];
                            tmp[n * N + m] = acc;
                        }
                    memcpy(X, tmp, sizeof(cplx) * NN);
                    for (size_t e = 0; e < NN; e++) R[e] += X[e];
                }
                cplx acc = 0;
                for (int n = 0; n < N; n++)
                    for (int m = 0; m < N; m++) acc += Ct[n] * R[n * N + m] * Bv[m];
                khat[j] = 2 * acc;
            }
            for (int k = 0; k < T; k++) {
                cplx acc = 0;
                for (int j = 0; j < T; j++) acc += khat[j] * cexp(CMPLX(0, 2 * M_PI * j * k / T));
                K[k] = creal(acc) / T;
            }
        }
        for (int b = 0; b < d.B; b++)
            for (int t = 0; t < T; t++) {
                double acc = 0;
                for (int k = 0; k <= t; k++)
                    acc += K[k] * in[CORE_IN_QKV][((size_t)b * T + t - k) * C + c];
                out[((size_t)b * T + t) * 2 * C + c] = acc;
            }
    }
    for (size_t tok = 0; tok < (size_t)d.B * T; tok++)
        for (int c = 0; c < C; c++) out[tok * 2 * C + C + c] = in[CORE_IN_QKV][tok * C + c];
    free(A), free(M), free(R), free(X), free(Bv), free(Ct), free(x), free(y), free(Cr), free(K);
    free(khat);
    return 0;
}
#else
#define dplr_reference NULL
#endif

static const OpOption dplr_options[] = {
    {"dplr_state", OPT_INT, "64", NULL, 1, 4096, offsetof(DplrOpts, state), 0,
     "dplr: complex modes N per channel (HiPPO-LegS of size N, all N kept)"},
    {"dplr_rank", OPT_INT, "1", NULL, 1, DPLR_MAX_RANK, offsetof(DplrOpts, rank), 0,
     "dplr: rank r of the low-rank part P Q^* (HiPPO-LegS: 1)"},
    {"neumann_order", OPT_INT, "0", NULL, 0, 16, offsetof(DplrOpts, neumann_order), 0,
     "dplr: 0 = the exact Woodbury resolvent; k = the order-k Neumann series (converges only "
     "where rho(D b P Q^*) < 1: see the neumann_* aux figures)"},
    {NULL}};

// Shapes: N odd and even, r 1 and 2, T = 1, T odd and even (the z = -1 root), Neumann order 3,
// two longer T = 65 for the oracle (Woodbury and Neumann).
// clang-format off
const F(OpDef) F(op_dplr) = {
    .name = "dplr", .n_in = CORE_IN_PARAMS + DPLR_NPARAMS, .n_out = 1,
    .sizes = dplr_sizes, .forward = dplr_forward, .backward = dplr_backward,
    .params = dplr_params, .init_param = dplr_init, .aux = dplr_aux,
    .options = dplr_options, .mixer = 1,
    .help = "DPLR SSM (S4-style, HiPPO-LegS), kernel by Woodbury or a Neumann-series resolvent, "
            "FFT convolution (mixers.md 21)",
    .flops = dplr_flops, .reference = dplr_reference,
    .aux_cols = {{"neumann_radius_max", AUX_MAX, "max rho(DbPQ*)", 4},
                 {"neumann_diverging", AUX_SUM, "rho>=1 freqs", 0},
                 {"neumann_error", AUX_MAX, "neumann err", 3},
                 {"dt_mean", AUX_MEAN, "Delta", 4}},
    .n_tests = 8,
    .tests = {{{.B = 2, .T = 7, .C = 3, .H = 1}, "dplr_state=3 dplr_rank=1"},
              {{.B = 2, .T = 8, .C = 2, .H = 1}, "dplr_state=4 dplr_rank=2"},
              {{.B = 1, .T = 1, .C = 2, .H = 1}, "dplr_state=4 dplr_rank=1"},
              {{.B = 2, .T = 6, .C = 3, .H = 1}, "dplr_state=3 dplr_rank=2 neumann_order=3"},
              {{.B = 1, .T = 9, .C = 2, .H = 1}, "dplr_state=4 dplr_rank=1 neumann_order=3"},
              {{.B = 2, .T = 16, .C = 2, .H = 1}, "dplr_state=4 dplr_rank=1"},
              {{.B = 1, .T = 65, .C = 2, .H = 1}, "dplr_state=5 dplr_rank=1"},
              {{.B = 1, .T = 65, .C = 2, .H = 1}, "dplr_state=4 dplr_rank=2 neumann_order=2"}}};
// clang-format on
