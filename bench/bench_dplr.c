// DPLR SSM convolution kernel: truncated Neumann resolvent against the exact Woodbury resolvent
// and against a dense computation (float64, C99 complex double)
//
// Why: the users' experiment E011 (design notes, shared/docs/mixers.md section 21) proposes
// computing the S4-style kernel with a truncated Neumann series instead of the Woodbury identity,
// and reports that order 4 gives 6.65e-5 relative error against the exact resolvent, runs up to
// 8.92x faster at N = 256, and that the spectral radius of the Neumann term stays below 0.11 with
// HiPPO initialisation. This program measures all three claims on this machine, on the same
// problem, before anything is built on them.
//
// The layer (one channel, mixers.md section 21): continuous A = Lambda - P Q^* (N x N, Lambda
// diagonal, P, Q in C^{N x r}), B, C in C^N, step Delta, bilinear discretisation
//     Abar = (I - Delta/2 A)^-1 (I + Delta/2 A),   Bbar = (I - Delta/2 A)^-1 Delta B,
// kernel K_k = C Abar^k Bbar, k = 0..L-1. With z^L = 1 its generating function is
//     Khat(z) = sum_k K_k z^k = Ctilde (I - z Abar)^-1 Bbar = (2 / (1 + z)) Ctilde R(s) B,
//     s = (2 / Delta) (1 - z) / (1 + z),  R(s) = (s I - A)^-1,  Ctilde = C (I - Abar^L),
// so K = IFFT_L(Khat(z_j)) at z_j = exp(-2 pi i j / L).
//
// Initialisation: HiPPO-LegS in its normal-plus-low-rank form, as S4 / S4D do:
//     A_LegS[n,k] = -sqrt(2n+1) sqrt(2k+1) (n > k),  -(n+1) (n = k),  0 (n < k)
//     P_n = sqrt(n + 1/2) (rank r = 1),  B_n = sqrt(2n+1)
// S = A_LegS + P P^T = -I/2 + (skew-symmetric), so S is normal. The real Schur form of the skew
// part (LAPACK's dgees) gives S = V Lambda V^* with Lambda = -1/2 - i mu, mu the eigenvalues of
// the Hermitian i (S + I/2)
// (the real part is exactly -1/2, as in S4), and in the eigenbasis A = Lambda - P~ Q~^* with
// P~ = Q~ = V^* P, B~ = V^* B. C~ (the learned output row, in the eigenbasis as S4 keeps it) is
// complex Gaussian from a fixed splitmix64 seed; the original-basis row is C = C~ V^*.
//
// Methods, each producing the complex kernel K[0..L) (all single-threaded):
//   dense      the oracle: Abar, Bbar from one LU solve with the real LegS matrix in the ORIGINAL
//              basis (so the eigendecomposition is checked too), then K_k = C Abar^k Bbar by L
//              matrix-vector products (zgemv): O(N^3 + L N^2). Timed including the solve.
//   woodbury   Khat at the L roots of unity with the exact resolvent
//                  R = D - D P (I_r + Q^* D P)^-1 Q^* D,   D = (s I - Lambda)^-1,
//              then one inverse FFT (FFTW).
//   neumann k  the same with R ~= sum_{i=0..k} (-D P Q^*)^i D (valid while rho(D P Q^*) < 1).
// Both generating-function methods reduce to Cauchy sums sum_n a_n b_n / (s - lambda_n). With
// rank 1 every Neumann term is (-1)^i (Ctilde D P)(Q^* D P)^(i-1)(Q^* D B): the SAME four sums
// Woodbury needs (Ctilde D B, Ctilde D P, Q^* D B, Q^* D P), then a degree k-1 polynomial in
// Q^* D P instead of one scalar division 1 / (1 + Q^* D P). So at r = 1 the two methods cost the
// same O(L N) Cauchy sums and differ in O(L) work; this program times them as they are.
// Outside the timing (made once, as a layer would hold them): Ctilde = C (I - Abar^L), which S4
// learns directly; the roots of unity z_j; the FFTW plan. s_j and 2 / (1 + z_j) depend on Delta
// (learned) and are recomputed inside each timed call.
//
// Errors are relative 2-norms over the complex kernel, ||K - K_ref|| / ||K_ref||. All N
// eigenvalues are kept (no conjugate-pair halving): with a real C, S4 halves the storage and work
// of each Cauchy sum by pairing conjugate eigenvalues, which changes no algebra compared here.
// Spectral radius: for r = 1, rho(D(s) P Q^*) = |Q^* D(s) P|, reported as its maximum over the L
// frequencies. The Neumann truncation error is exactly, per frequency,
//     Khat_neumann_k - Khat_woodbury = g (Ctilde D P) (Q^* D B) (-Q^* D P)^k / (1 + Q^* D P),
// with g = 2 / (1 + z),
// so each extra order multiplies the error at frequency j by rho_j: the kernel error shrinks by at
// least rho_max per order (Parseval) when rho_max < 1, and grows where rho_j > 1. For HiPPO-LegS,
// rho = 1 exactly at s = 0 (frequency j = 0) for every N: the first column of S is -P / sqrt(2),
// so Q^* D(0) P = -P^T S^-1 P = sqrt(2) P_0 = 1. The run prints rho and says where it is >= 1.
//
// Output: a header (machine, command line, conventions), then one markdown table per N: relative
// error against dense and against woodbury, best time of --repeat runs after one warm-up, and the
// speedups. --check runs N 4 and 16 at L 64 for the test suite (HiPPO-LegS, and the same problem
// with P = Q shrunk so that the series converges) and exits 1 on a failed check (run_check).
//
// usage: bench_dplr [--N 16,32,64,128,256] [--L 1024] [--orders 1,2,3,4,5,6,7,8] [--repeat 5]
//                   [--delta 0.01 | --delta loguniform] [--check]
//        --delta loguniform draws Delta per N from log-uniform [1e-3, 1e-1] (fixed seed);
//        the default is Delta = 0.01.
// build: the bench_dplr target (CMakeLists.txt); run as build/bench_dplr.
#include <cblas.h>
#include <complex.h>  // before fftw3.h, so fftw_complex is double complex
#ifndef CMPLX         // glibc's needs __builtin_complex, which clang 14 lacks
#define CMPLX(x, y) ((double complex)((double)(x) + I * (double)(y)))
#endif
#include <errno.h>
#include <fftw3.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

// madtrain's (src/util.c): re-exec with the OpenBLAS kernels the CPU supports
void blas_pick_kernels(char **argv);

// LAPACK from OpenBLAS, Fortran ABI (column-major, arguments by reference; gfortran passes each
// character argument's length as a hidden trailing size_t).
extern void dgees_(char *jobvs, char *sort, void *select, int *n, double *a, int *lda, int *sdim,
                   double *wr, double *wi, double *vs, int *ldvs, double *work, int *lwork,
                   int *bwork, int *info, size_t jobvs_len, size_t sort_len);
extern void zgesv_(int *n, int *nrhs, double complex *a, int *lda, int *ipiv, double complex *b,
                   int *ldb, int *info);

#define MAX_N 4096
#define MAX_L (1L << 22)
#define MAX_ORDER 64
#define CAUCHY_BLOCK 256  // frequencies per block: the 8 accumulator rows stay in L1 (16 KiB)

// --check thresholds (see run_check for where each comes from).
#define CHECK_DIAG_TOL 1e-12     // ||V Lambda V^* - S||_F / ||S||_F
#define CHECK_WOODBURY_TOL 1e-9  // woodbury against dense
#define CHECK_NEUMANN8_TOL 1e-6  // neumann 8 against woodbury, when rho allows it (see run_check)
#define CHECK_ROUNDING_FLOOR 1e-12  // below this a Neumann error is rounding, not truncation

static void die_usage(const char *msg, const char *detail) {
    fprintf(stderr, "bench_dplr: error: %s%s\n", msg, detail);
    exit(2);
}

static void die_runtime(const char *msg) {
    fprintf(stderr, "bench_dplr: error: %s\n", msg);
    exit(1);
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die_runtime("out of memory");
    return p;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- complex helpers -------------------------------------------------------------------------
// gcc (without -ffast-math) turns a * b on complex double into a NaN-checking sequence and a / b
// into a call to __divdc3. The per-frequency combine steps use these plain formulas instead, so
// that woodbury's one division is not charged a library call that neumann's products avoid.
// No operand here nears the overflow range: |1 + z| >= 1e-16 and Delta >= 1e-6 keep |s| < 1e23.

static inline double complex cmul(double complex a, double complex b) {
    double ar = creal(a), ai = cimag(a), br = creal(b), bi = cimag(b);
    return CMPLX(ar * br - ai * bi, ar * bi + ai * br);
}

static inline double complex cdiv(double complex a, double complex b) {
    double br = creal(b), bi = cimag(b), inv = 1.0 / (br * br + bi * bi);
    return CMPLX((creal(a) * br + cimag(a) * bi) * inv, (cimag(a) * br - creal(a) * bi) * inv);
}

// ---- random numbers --------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) {  // in (0, 1]
    return (double)((splitmix64(state) >> 11) + 1) * 0x1.0p-53;
}

// Standard normal by Box-Muller; u1 is in (0, 1] so the log is finite.
static double gaussian(uint64_t *state) {
    double u1 = uniform01(state), u2 = uniform01(state);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

// ---- the problem for one N -------------------------------------------------------------------

typedef struct {
    int N;         // state size
    long L;        // kernel length = number of frequencies
    double delta;  // step Delta
    // Original (HiPPO-LegS) basis, for the dense oracle. Matrices column-major (LAPACK).
    double complex *A_orig_cm;  // [N, N] A_LegS + (1 - scale^2) P P^T, real, stored complex
    double complex *B_orig;     // [N]  B_n = sqrt(2n+1)
    double complex *C_orig;     // [N]  C = C~ V^*
    // Eigenbasis, for the generating-function methods (r = 1, Q~ = P~).
    double *lambda_re, *lambda_im;  // [N] Lambda = lambda_re + i lambda_im
    double complex *P_eig;          // [N] P~ = V^* P
    double complex *B_eig;          // [N] B~ = V^* B
    double complex *C_eig;          // [N] C~ (random)
    double complex *Ctilde_eig;     // [N] Ctilde~ = C~ (I - Abar~^L), precomputed (S4 learns it)
    double complex *z_roots;        // [L] z_j = exp(-2 pi i j / L)
    double diag_error;              // ||V Lambda V^* - S||_F / ||S||_F
    double lowrank_scale;           // 1 = HiPPO-LegS; --check also runs a shrunken P = Q
} Problem;

// Scratch for all methods. The FFTW plan transforms fft_in -> fft_out and is made once per L.
typedef struct {
    // dense
    double complex *M_cm;  // [N, N] I - Delta/2 A, overwritten by its LU factors
    // [N, N+1] right-hand side [I + Delta/2 A | Delta B], overwritten by [Abar | Bbar]
    double complex *abar_bbar_cm;
    int *pivots;            // [N]
    double complex *x, *y;  // [N] Abar^k Bbar, ping-pong
    // generating function
    double *weight_re, *weight_im;   // [4, N] Cauchy weights, rows SUM_CB, SUM_CP, SUM_QB, SUM_QP
    double *s_re, *s_im;             // [L] s_j
    double complex *g;               // [L] 2 / (1 + z_j)
    double *sum_re, *sum_im;         // [4, L] Cauchy sums at every frequency, same row order
    fftw_complex *fft_in, *fft_out;  // [L] Khat(z_j) -> L K_k
    fftw_plan plan_backward;
} Work;

enum { SUM_CB = 0, SUM_CP = 1, SUM_QB = 2, SUM_QP = 3, NUM_SUMS = 4 };

static void dense_discretise(const Problem *p, Work *w);

// Eigendecomposition of the normal part and the change of basis. V is column-major:
// V_cm[n + N m] is component n of eigenvector m. lowrank_scale multiplies P and Q (so A = S -
// scale^2 P P^T); the benchmark uses 1, HiPPO-LegS itself. Only --check uses a smaller one, to
// exercise the Neumann series where it converges, and then also draws B at random: HiPPO's
// B = sqrt(2) P makes the sums Ctilde D B and Q^* D B multiples of Ctilde D P and Q^* D P, which
// would hide a mistake in either.
static void make_problem(Problem *p, int N, long L, double delta, double lowrank_scale,
                         uint64_t seed, Work *w) {
    size_t NN = (size_t)N * N;
    p->N = N, p->L = L, p->delta = delta, p->lowrank_scale = lowrank_scale;
    p->A_orig_cm = xmalloc(sizeof(double complex) * NN);
    p->B_orig = xmalloc(sizeof(double complex) * N);
    p->C_orig = xmalloc(sizeof(double complex) * N);
    p->lambda_re = xmalloc(sizeof(double) * N);
    p->lambda_im = xmalloc(sizeof(double) * N);
    p->P_eig = xmalloc(sizeof(double complex) * N);
    p->B_eig = xmalloc(sizeof(double complex) * N);
    p->C_eig = xmalloc(sizeof(double complex) * N);
    p->Ctilde_eig = xmalloc(sizeof(double complex) * N);
    p->z_roots = xmalloc(sizeof(double complex) * L);
    double *P_legs = xmalloc(sizeof(double) * N);
    double *S_cm = xmalloc(sizeof(double) * NN);  // [N, N] S = A_LegS + P P^T
    double complex *V_cm = xmalloc(sizeof(double complex) * NN);
    double *mu = xmalloc(sizeof(double) * N);

    uint64_t B_state = seed ^ 0xb0b0b0ull;
    for (int n = 0; n < N; n++) {
        P_legs[n] = sqrt(n + 0.5);
        if (lowrank_scale == 1) {
            p->B_orig[n] = sqrt(2.0 * n + 1.0);
        } else {
            double re = gaussian(&B_state), im = gaussian(&B_state);
            p->B_orig[n] = CMPLX(re, im);
        }
    }
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            double a = n > k ? -sqrt(2.0 * n + 1.0) * sqrt(2.0 * k + 1.0) : n == k ? -(n + 1.0) : 0;
            double pp = P_legs[n] * P_legs[k];
            // scale 1 leaves A_LegS exactly as written above
            p->A_orig_cm[n + (size_t)N * k] =
                lowrank_scale == 1 ? a : a + (1 - lowrank_scale * lowrank_scale) * pp;
            S_cm[n + (size_t)N * k] = a + pp;
        }
    // K = S + I/2 is real skew-symmetric (its diagonal is exactly -(n+1) + (n+1/2) + 1/2 = 0; the
    // upper triangle is written as the exact negative of the lower). A real normal matrix has a
    // block-diagonal real Schur form K = Z T Z^T with 2x2 blocks [[0, b], [-b, 0]], and
    // K (z1 + i z2) = i b (z1 + i z2) for the block's Schur vectors z1, z2; so the complex
    // eigenvectors are (z1 +- i z2) / sqrt 2 with eigenvalues +-i b, and those of S are -1/2 +- i
    // b. Real LAPACK (dgees) rather than zheev on i K: OpenBLAS 0.3.21's AVX2 / AVX-512 zgemv_n
    // kernels read past their operands inside zheev's zlatrd (valgrind shows it; it crashed about
    // one run in eight at N >= 64), and madtrain itself uses no complex BLAS.
    double *K_cm = xmalloc(sizeof(double) * NN), *Z_cm = xmalloc(sizeof(double) * NN);
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++)
            K_cm[n + (size_t)N * k] = n == k  ? 0
                                      : n < k ? -S_cm[k + (size_t)N * n]
                                              : S_cm[n + (size_t)N * k];
    {
        char jobvs = 'V', sort = 'N';
        int n = N, lda = N, sdim = 0, lwork = -1, info = 0;
        double query = 0, *wr = xmalloc(sizeof(double) * N), *wi = xmalloc(sizeof(double) * N);
        dgees_(&jobvs, &sort, NULL, &n, K_cm, &lda, &sdim, wr, wi, Z_cm, &lda, &query, &lwork, NULL,
               &info, 1, 1);
        lwork = info == 0 && query >= 1 ? (int)query : 3 * N;
        double *work = xmalloc(sizeof(double) * (size_t)lwork);
        dgees_(&jobvs, &sort, NULL, &n, K_cm, &lda, &sdim, wr, wi, Z_cm, &lda, work, &lwork, NULL,
               &info, 1, 1);
        free(work), free(wr);
        if (info != 0) die_runtime("dgees failed to find the real Schur form of S + I/2");
        for (int m = 0; m < N;) {
            const double *z1 = Z_cm + (size_t)N * m;
            if (m + 1 == N || wi[m] == 0) {  // a real eigenvalue: 0 for a skew matrix
                for (int r = 0; r < N; r++) V_cm[r + (size_t)N * m] = z1[r];
                mu[m] = 0;
                m += 1;
                continue;
            }
            const double *z2 = z1 + N;
            double b_blk = 0.5 * (K_cm[m + (size_t)N * (m + 1)] - K_cm[m + 1 + (size_t)N * m]);
            for (int r = 0; r < N; r++) {
                V_cm[r + (size_t)N * m] = CMPLX(z1[r], z2[r]) * M_SQRT1_2;
                V_cm[r + (size_t)N * (m + 1)] = CMPLX(z1[r], -z2[r]) * M_SQRT1_2;
            }
            // mu: eigenvalues of i K, the convention below (Lambda = -1/2 - i mu)
            mu[m] = -b_blk, mu[m + 1] = b_blk;
            m += 2;
        }
        free(wi);
    }
    free(K_cm), free(Z_cm);
    for (int m = 0; m < N; m++) {
        p->lambda_re[m] = -0.5;
        p->lambda_im[m] = -mu[m];
    }
    // Diagonalisation check against S itself (not the Hermitian copy).
    double err2 = 0, ref2 = 0;
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) {
            double complex sum = 0;
            for (int m = 0; m < N; m++)
                sum += V_cm[n + (size_t)N * m] * CMPLX(p->lambda_re[m], p->lambda_im[m]) *
                       conj(V_cm[k + (size_t)N * m]);
            double s = S_cm[n + (size_t)N * k];
            err2 += creal((sum - s) * conj(sum - s));
            ref2 += s * s;
        }
    p->diag_error = sqrt(err2 / ref2);

    uint64_t state = seed;
    for (int m = 0; m < N; m++) {
        double complex P_m = 0, B_m = 0;
        for (int n = 0; n < N; n++) {
            P_m += conj(V_cm[n + (size_t)N * m]) * P_legs[n];
            B_m += conj(V_cm[n + (size_t)N * m]) * p->B_orig[n];
        }
        p->P_eig[m] = lowrank_scale * P_m, p->B_eig[m] = B_m;
        double re = gaussian(&state), im = gaussian(&state);
        p->C_eig[m] = CMPLX(re, im) * M_SQRT1_2;  // unit variance
    }
    for (int n = 0; n < N; n++) {
        double complex c = 0;
        for (int m = 0; m < N; m++) c += p->C_eig[m] * conj(V_cm[n + (size_t)N * m]);
        p->C_orig[n] = c;
    }

    // Ctilde = C (I - Abar^L), computed in the original basis with the dense Abar (row vector
    // times Abar, L times), then carried to the eigenbasis: Ctilde~ = Ctilde V.
    dense_discretise(p, w);
    const double complex one = 1, zero = 0;
    double complex *row = w->x, *next = w->y;
    memcpy(row, p->C_orig, sizeof(double complex) * N);
    for (long k = 0; k < L; k++) {
        cblas_zgemv(CblasColMajor, CblasTrans, N, N, &one, w->abar_bbar_cm, N, row, 1, &zero, next,
                    1);
        double complex *t = row;
        row = next, next = t;
    }
    for (int m = 0; m < N; m++) {
        double complex c = 0;
        for (int n = 0; n < N; n++) c += (p->C_orig[n] - row[n]) * V_cm[n + (size_t)N * m];
        p->Ctilde_eig[m] = c;
    }

    // z_j = exp(-2 pi i j / L). At j = L/2 this is -1 + 1.2e-16 i (sin of the rounded pi): 1 + z
    // is tiny but not 0, s is huge and 2 / (1 + z) / (s - lambda) tends to Delta / 2, the exact
    // limit, so the formulas stay finite there.
    for (long j = 0; j < L; j++) {
        double theta = 2.0 * M_PI * ((double)j / (double)L);
        p->z_roots[j] = CMPLX(cos(theta), -sin(theta));
        if (p->z_roots[j] == -1.0) die_runtime("a root of unity is exactly -1; 1 + z would be 0");
    }
    free(P_legs), free(S_cm), free(V_cm), free(mu);
}

static void free_problem(Problem *p) {
    free(p->A_orig_cm), free(p->B_orig), free(p->C_orig), free(p->lambda_re), free(p->lambda_im);
    free(p->P_eig), free(p->B_eig), free(p->C_eig), free(p->Ctilde_eig), free(p->z_roots);
}

static void alloc_work(Work *w, int N, long L) {
    size_t NN = (size_t)N * N;
    w->M_cm = xmalloc(sizeof(double complex) * NN);
    w->abar_bbar_cm = xmalloc(sizeof(double complex) * (NN + N));
    w->pivots = xmalloc(sizeof(int) * N);
    w->x = xmalloc(sizeof(double complex) * N);
    w->y = xmalloc(sizeof(double complex) * N);
    w->weight_re = xmalloc(sizeof(double) * NUM_SUMS * N);
    w->weight_im = xmalloc(sizeof(double) * NUM_SUMS * N);
    w->s_re = xmalloc(sizeof(double) * L);
    w->s_im = xmalloc(sizeof(double) * L);
    w->g = xmalloc(sizeof(double complex) * L);
    w->sum_re = xmalloc(sizeof(double) * NUM_SUMS * L);
    w->sum_im = xmalloc(sizeof(double) * NUM_SUMS * L);
    w->fft_in = fftw_malloc(sizeof(fftw_complex) * L);
    w->fft_out = fftw_malloc(sizeof(fftw_complex) * L);
    if (!w->fft_in || !w->fft_out) die_runtime("out of memory (fftw_malloc)");
    // FFTW_MEASURE overwrites the buffers while planning; nothing is in them yet.
    w->plan_backward = fftw_plan_dft_1d((int)L, w->fft_in, w->fft_out, FFTW_BACKWARD, FFTW_MEASURE);
    if (!w->plan_backward) die_runtime("FFTW could not plan the inverse transform");
}

static void free_work(Work *w) {
    free(w->M_cm), free(w->abar_bbar_cm), free(w->pivots), free(w->x), free(w->y);
    free(w->weight_re), free(w->weight_im), free(w->s_re), free(w->s_im), free(w->g);
    free(w->sum_re), free(w->sum_im);
    fftw_destroy_plan(w->plan_backward);
    fftw_free(w->fft_in), fftw_free(w->fft_out);
}

// ---- dense oracle ----------------------------------------------------------------------------

// [Abar | Bbar] = (I - Delta/2 A)^-1 [I + Delta/2 A | Delta B], one LU solve with N+1 columns.
static void dense_discretise(const Problem *p, Work *w) {
    int N = p->N;
    size_t NN = (size_t)N * N;
    double h = 0.5 * p->delta;
    for (size_t i = 0; i < NN; i++) {
        w->M_cm[i] = -h * p->A_orig_cm[i];
        w->abar_bbar_cm[i] = h * p->A_orig_cm[i];
    }
    for (int n = 0; n < N; n++) {
        w->M_cm[n + (size_t)N * n] += 1;
        w->abar_bbar_cm[n + (size_t)N * n] += 1;
        w->abar_bbar_cm[NN + n] = p->delta * p->B_orig[n];
    }
    int n = N, nrhs = N + 1, lda = N, ldb = N, info = 0;
    zgesv_(&n, &nrhs, w->M_cm, &lda, w->pivots, w->abar_bbar_cm, &ldb, &info);
    if (info != 0) die_runtime("zgesv: I - Delta/2 A is singular");
}

// K_k = C Abar^k Bbar by L matrix-vector products.
static void kernel_dense(const Problem *p, Work *w, int order, double complex *K) {
    (void)order;
    int N = p->N;
    const double complex one = 1, zero = 0;
    dense_discretise(p, w);
    double complex *state = w->x, *next = w->y;  // Abar^k Bbar
    memcpy(state, w->abar_bbar_cm + (size_t)N * N, sizeof(double complex) * N);
    for (long k = 0; k < p->L; k++) {
        cblas_zdotu_sub(N, p->C_orig, 1, state, 1, &K[k]);
        if (k + 1 == p->L) break;
        cblas_zgemv(CblasColMajor, CblasNoTrans, N, N, &one, w->abar_bbar_cm, N, state, 1, &zero,
                    next, 1);
        double complex *t = state;
        state = next, next = t;
    }
}

// ---- generating-function methods ------------------------------------------------------------

// s_j, 2 / (1 + z_j) (they depend on Delta) and the weights a_n b_n of the four Cauchy sums.
static void gen_prepare(const Problem *p, Work *w) {
    int N = p->N;
    for (long j = 0; j < p->L; j++) {
        double complex z = p->z_roots[j];
        double complex s = (2.0 / p->delta) * cdiv(1.0 - z, 1.0 + z);
        w->s_re[j] = creal(s), w->s_im[j] = cimag(s);
        w->g[j] = cdiv(2.0, 1.0 + z);
    }
    for (int n = 0; n < N; n++) {
        double complex ct = p->Ctilde_eig[n], pn = p->P_eig[n], bn = p->B_eig[n];
        double complex qn_conj = conj(pn);  // Q~ = P~
        double complex weight[NUM_SUMS] = {cmul(ct, bn), cmul(ct, pn), cmul(qn_conj, bn),
                                           cmul(qn_conj, pn)};
        for (int t = 0; t < NUM_SUMS; t++) {
            w->weight_re[t * N + n] = creal(weight[t]);
            w->weight_im[t * N + n] = cimag(weight[t]);
        }
    }
}

// One state n over a block of frequencies: sum[t][j] += weight[t] / (s_j - lambda), for the four
// rows t at once, so one reciprocal serves all four. The loop runs over frequencies, not states:
// there is no reduction, so it vectorises without reassociating sums. A separate function with
// restrict parameters, because gcc does not vectorise it inlined in cauchy_sums' loop nest.
static void cauchy_block(long count, double lambda_re, double lambda_im,
                         const double *weight /* [4] re, [4] im */, const double *restrict s_re,
                         const double *restrict s_im, double *restrict cb_re,
                         double *restrict cb_im, double *restrict cp_re, double *restrict cp_im,
                         double *restrict qb_re, double *restrict qb_im, double *restrict qp_re,
                         double *restrict qp_im) {
    double w0r = weight[SUM_CB], w1r = weight[SUM_CP], w2r = weight[SUM_QB], w3r = weight[SUM_QP];
    double w0i = weight[NUM_SUMS + SUM_CB], w1i = weight[NUM_SUMS + SUM_CP];
    double w2i = weight[NUM_SUMS + SUM_QB], w3i = weight[NUM_SUMS + SUM_QP];
    for (long j = 0; j < count; j++) {
        double a = s_re[j] - lambda_re, b = s_im[j] - lambda_im;
        double inv = 1.0 / (a * a + b * b);
        double dr = a * inv, di = -b * inv;  // 1 / (s - lambda)
        cb_re[j] += w0r * dr - w0i * di, cb_im[j] += w0r * di + w0i * dr;
        cp_re[j] += w1r * dr - w1i * di, cp_im[j] += w1r * di + w1i * dr;
        qb_re[j] += w2r * dr - w2i * di, qb_im[j] += w2r * di + w2i * dr;
        qp_re[j] += w3r * dr - w3i * di, qp_im[j] += w3r * di + w3i * dr;
    }
}

// sum[t][j] = sum_n weight[t][n] / (s_j - lambda_n), t = SUM_CB..SUM_QP, all j. Blocks of
// CAUCHY_BLOCK frequencies keep the eight accumulator rows in L1 while n sweeps all states.
static void cauchy_sums(const Problem *p, Work *w) {
    int N = p->N;
    long L = p->L;
    memset(w->sum_re, 0, sizeof(double) * NUM_SUMS * L);
    memset(w->sum_im, 0, sizeof(double) * NUM_SUMS * L);
    double *re = w->sum_re, *im = w->sum_im;
    for (long j0 = 0; j0 < L; j0 += CAUCHY_BLOCK) {
        long count = j0 + CAUCHY_BLOCK < L ? CAUCHY_BLOCK : L - j0;
        for (int n = 0; n < N; n++) {
            double weight[2 * NUM_SUMS];
            for (int t = 0; t < NUM_SUMS; t++) {
                weight[t] = w->weight_re[t * N + n];
                weight[NUM_SUMS + t] = w->weight_im[t * N + n];
            }
            cauchy_block(count, p->lambda_re[n], p->lambda_im[n], weight, w->s_re + j0,
                         w->s_im + j0, re + SUM_CB * L + j0, im + SUM_CB * L + j0,
                         re + SUM_CP * L + j0, im + SUM_CP * L + j0, re + SUM_QB * L + j0,
                         im + SUM_QB * L + j0, re + SUM_QP * L + j0, im + SUM_QP * L + j0);
        }
    }
}

static inline double complex sum_at(const Work *w, int t, long L, long j) {
    return CMPLX(w->sum_re[t * L + j], w->sum_im[t * L + j]);
}

// fft_in holds Khat(z_j); K_k = (1/L) sum_j Khat_j exp(+2 pi i j k / L) (FFTW's backward sign).
static void inverse_fft(const Problem *p, Work *w, double complex *K) {
    fftw_execute(w->plan_backward);
    double scale = 1.0 / (double)p->L;
    for (long k = 0; k < p->L; k++) K[k] = w->fft_out[k] * scale;
}

// Khat = g (cb - cp qb / (1 + qp)): Woodbury with the r x r = 1 x 1 inverse.
static void kernel_woodbury(const Problem *p, Work *w, int order, double complex *K) {
    (void)order;
    long L = p->L;
    gen_prepare(p, w);
    cauchy_sums(p, w);
    for (long j = 0; j < L; j++) {
        double complex cb = sum_at(w, SUM_CB, L, j), cp = sum_at(w, SUM_CP, L, j);
        double complex qb = sum_at(w, SUM_QB, L, j), qp = sum_at(w, SUM_QP, L, j);
        w->fft_in[j] = cmul(w->g[j], cb - cdiv(cmul(cp, qb), 1.0 + qp));
    }
    inverse_fft(p, w, K);
}

// Khat = g (cb - cp qb sum_{i<k} (-qp)^i): the order-k Neumann resolvent, whose term i >= 1 is
// (-1)^i cp qp^(i-1) qb; the geometric polynomial is evaluated by Horner's rule.
static void kernel_neumann(const Problem *p, Work *w, int order, double complex *K) {
    long L = p->L;
    gen_prepare(p, w);
    cauchy_sums(p, w);
    for (long j = 0; j < L; j++) {
        double complex cb = sum_at(w, SUM_CB, L, j), cp = sum_at(w, SUM_CP, L, j);
        double complex qb = sum_at(w, SUM_QB, L, j), qp = sum_at(w, SUM_QP, L, j);
        double complex poly = order >= 1 ? 1.0 : 0.0;
        for (int i = 1; i < order; i++) poly = 1.0 - cmul(qp, poly);
        w->fft_in[j] = cmul(w->g[j], cb - cmul(cmul(cp, qb), poly));
    }
    inverse_fft(p, w, K);
}

// Spectral radius of the Neumann term at every frequency, outside any timing: for rank 1,
// rho_j = |Q^* D(s_j) P|, the only nonzero eigenvalue of D P Q^*. Leaves the sums in w.
typedef struct {
    double max;               // max_j rho_j
    long argmax;              // its frequency index j
    long at_least_one;        // number of j with rho_j >= 1 (the series diverges there)
    double complex qp_at_dc;  // Q^* D(0) P at j = 0, z = 1, s = 0
} Radius;

static Radius spectral_radius(const Problem *p, Work *w) {
    gen_prepare(p, w);
    cauchy_sums(p, w);
    Radius r = {.max = 0, .argmax = 0, .at_least_one = 0, .qp_at_dc = sum_at(w, SUM_QP, p->L, 0)};
    for (long j = 0; j < p->L; j++) {
        double rho = cabs(sum_at(w, SUM_QP, p->L, j));
        if (rho >= 1) r.at_least_one++;
        if (!(rho <= r.max)) r.max = rho, r.argmax = j;
    }
    return r;
}

// The order-k Neumann error against woodbury predicted by the exact identity of the header,
// ||g cp qb (-qp)^k / (1 + qp)|| over the frequencies, carried to the kernel by Parseval
// (||Khat||^2 = L ||K||^2) and made relative to ||K_woodbury||. Uses the sums left in w.
static double predicted_neumann_error(const Problem *p, const Work *w, int order,
                                      const double complex *K_woodbury) {
    long L = p->L;
    double pred2 = 0, ref2 = 0;
    for (long j = 0; j < L; j++) {
        double complex cp = sum_at(w, SUM_CP, L, j), qb = sum_at(w, SUM_QB, L, j);
        double complex qp = sum_at(w, SUM_QP, L, j);
        double complex e = w->g[j] * cp * qb * cpow(-qp, order) / (1.0 + qp);
        pred2 += creal(e) * creal(e) + cimag(e) * cimag(e);
    }
    for (long k = 0; k < L; k++)
        ref2 += creal(K_woodbury[k]) * creal(K_woodbury[k]) +
                cimag(K_woodbury[k]) * cimag(K_woodbury[k]);
    return sqrt(pred2 / (double)L / ref2);
}

// ---- measurement -----------------------------------------------------------------------------

typedef void (*Method)(const Problem *, Work *, int order, double complex *K);

// Best wall time in seconds of `repeat` runs after one warm-up; K holds the kernel.
static double time_method(Method method, const Problem *p, Work *w, int order, double complex *K,
                          int repeat) {
    method(p, w, order, K);
    double best = INFINITY;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_seconds();
        method(p, w, order, K);
        double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    return best;
}

// ||K - K_ref||_2 / ||K_ref||_2 over the complex kernel; NaN in K gives NaN.
static double relative_error(long L, const double complex *K, const double complex *K_ref) {
    double diff2 = 0, ref2 = 0;
    for (long k = 0; k < L; k++) {
        double complex d = K[k] - K_ref[k];
        diff2 += creal(d) * creal(d) + cimag(d) * cimag(d);
        ref2 += creal(K_ref[k]) * creal(K_ref[k]) + cimag(K_ref[k]) * cimag(K_ref[k]);
    }
    return sqrt(diff2 / ref2);
}

// Results for one N: kernels and times of dense, woodbury and each Neumann order.
typedef struct {
    double complex *K_dense, *K_woodbury, *K_neumann;  // [L], [L], [orders, L]
    double time_dense, time_woodbury, *time_neumann;   // seconds; [orders]
    Radius rho;
} Result;

static void measure(const Problem *p, Work *w, const long *orders, int num_orders, int repeat,
                    Result *res) {
    long L = p->L;
    res->K_dense = xmalloc(sizeof(double complex) * L);
    res->K_woodbury = xmalloc(sizeof(double complex) * L);
    res->K_neumann = xmalloc(sizeof(double complex) * L * num_orders);
    res->time_neumann = xmalloc(sizeof(double) * num_orders);
    res->time_dense = time_method(kernel_dense, p, w, 0, res->K_dense, repeat);
    res->time_woodbury = time_method(kernel_woodbury, p, w, 0, res->K_woodbury, repeat);
    for (int i = 0; i < num_orders; i++)
        res->time_neumann[i] =
            time_method(kernel_neumann, p, w, (int)orders[i], res->K_neumann + L * i, repeat);
    res->rho = spectral_radius(p, w);
}

static void free_result(Result *res) {
    free(res->K_dense), free(res->K_woodbury), free(res->K_neumann), free(res->time_neumann);
}

static void print_rho(const char *indent, const Problem *p, const Radius *rho) {
    double complex z = p->z_roots[rho->argmax];
    double complex s = (2.0 / p->delta) * cdiv(1.0 - z, 1.0 + z);
    printf(
        "%sspectral radius rho(D(s) P Q^*) = |Q^* D(s) P|: max %.3g over the %ld frequencies, "
        "at j = %ld (s = %.3g%+.3gi); rho >= 1 at %ld of them; Q^* D(0) P = %.12g%+.1ei (j = 0)\n",
        indent, rho->max, p->L, rho->argmax, creal(s), cimag(s), rho->at_least_one,
        creal(rho->qp_at_dc), cimag(rho->qp_at_dc));
    if (rho->at_least_one)
        printf(
            "%sNOTE: the Neumann series diverges at those %ld frequencies: its error there is "
            "multiplied by rho_j >= 1 at each order, so it does not go to 0 as the order grows\n",
            indent, rho->at_least_one);
}

// ---- --check ---------------------------------------------------------------------------------

// Four cases, N 4 and 16 at L 64, Delta 0.01: HiPPO-LegS itself, and the same Lambda and C with
// P = Q shrunk by CHECK_SMALL_SCALE so that rho < 1 and the Neumann series converges, and a random
// complex B (see make_problem). Checks:
//  - the eigendecomposition reproduces S (relative Frobenius error <= 1e-12);
//  - woodbury matches dense to 1e-9 (relative 2-norm): the algebra, the change of basis, Ctilde
//    and the FFT convention all have to be right for that;
//  - Q^* D(0) P = scale^2. For HiPPO-LegS this is exactly 1: the first column of S is -P / sqrt(2)
//    (S e_0 = -P / sqrt(2)), so Q^* D(0) P = -P^T S^-1 P = sqrt(2) P_0 = 1 for every N. rho = 1 at
//    the j = 0 frequency is therefore a property of the initialisation, not of this code;
//  - every order k = 1..8: the measured Neumann error against woodbury equals the error the exact
//    identity predicts from the sums (1e-6 relative, plus CHECK_ROUNDING_FLOOR), so a wrong
//    polynomial or a wrong combine fails whatever rho is;
//  - when rho_max < 1 (only then is it true): the error decreases strictly with the order (until
//    both sides are below CHECK_ROUNDING_FLOOR), each order shrinks it by at least rho_max, and
//    order 8 is within max(1e-6, rho_max^7 x order-1 error) of woodbury. The brief asked for 1e-6;
//    the rho^7 term is the bound the measured rho proves (the identity makes each order's error
//    rho_j times the previous one at frequency j), and it is printed. With HiPPO-LegS rho_max > 1
//    at these sizes, so for those cases the decrease is not demanded and the run says why.
#define CHECK_SMALL_SCALE 0.05

static int run_check(void) {
    static const struct {
        int N;
        double scale;
    } cases[] = {{4, 1}, {16, 1}, {4, CHECK_SMALL_SCALE}, {16, CHECK_SMALL_SCALE}};
    enum { ORDERS = 8 };
    const long L = 64;
    const double delta = 0.01;
    long orders[ORDERS];
    for (int i = 0; i < ORDERS; i++) orders[i] = i + 1;
    int failures = 0, num_cases = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int c = 0; c < num_cases; c++) {
        int N = cases[c].N;
        double scale = cases[c].scale;
        Problem p;
        Work w;
        Result res;
        alloc_work(&w, N, L);
        make_problem(&p, N, L, delta, scale, 0xd91f011ull ^ (uint64_t)N, &w);
        measure(&p, &w, orders, ORDERS, 1, &res);
        double e_wood = relative_error(L, res.K_woodbury, res.K_dense);
        double dc_error = cabs(res.rho.qp_at_dc - scale * scale);
        printf("N %d  L %ld  Delta %g  P = Q scaled by %g%s\n", N, L, delta, scale,
               scale == 1 ? " (HiPPO-LegS)" : ", random B (rho < 1 case)");
        printf("  diagonalisation %.1e  woodbury vs dense %.1e  |Q^* D(0) P - scale^2| %.1e\n",
               p.diag_error, e_wood, dc_error);
        print_rho("  ", &p, &res.rho);
        int ok_diag = p.diag_error <= CHECK_DIAG_TOL, ok_wood = e_wood <= CHECK_WOODBURY_TOL;
        int ok_dc = dc_error <= 1e-9, ok_identity = 1, ok_decrease = 1;
        double err[ORDERS], pred[ORDERS];
        for (int i = 0; i < ORDERS; i++) {
            err[i] = relative_error(L, res.K_neumann + L * i, res.K_woodbury);
            pred[i] = predicted_neumann_error(&p, &w, (int)orders[i], res.K_woodbury);
            ok_identity =
                ok_identity && fabs(err[i] - pred[i]) <= 1e-6 * pred[i] + CHECK_ROUNDING_FLOOR;
        }
        printf("  neumann vs woodbury, orders 1..%d, measured: ", ORDERS);
        for (int i = 0; i < ORDERS; i++) printf(" %.3e", err[i]);
        printf("\n  predicted by the identity:                  ");
        for (int i = 0; i < ORDERS; i++) printf(" %.3e", pred[i]);
        printf("\n");
        if (res.rho.max < 1) {
            for (int i = 0; i + 1 < ORDERS; i++) {
                if (err[i + 1] <= CHECK_ROUNDING_FLOOR && err[i] <= CHECK_ROUNDING_FLOOR) continue;
                int ok = err[i + 1] < err[i] &&
                         err[i + 1] <= res.rho.max * err[i] * (1 + 1e-6) + CHECK_ROUNDING_FLOOR;
                if (!ok)
                    printf("  order %d error %.3e is not below rho_max %.3g x order %d error\n",
                           i + 2, err[i + 1], res.rho.max, i + 1);
                ok_decrease = ok_decrease && ok;
            }
            double bound8 =
                fmax(CHECK_NEUMANN8_TOL, pow(res.rho.max, ORDERS - 1) * err[0] * (1 + 1e-6));
            printf("  order %d vs woodbury %.1e, bound max(1e-6, rho_max^7 x order-1 error) %.1e\n",
                   ORDERS, err[ORDERS - 1], bound8);
            ok_decrease = ok_decrease && err[ORDERS - 1] <= bound8;
        } else {
            printf("  rho_max %.3g >= 1: no decrease with the order is expected (not checked)\n",
                   res.rho.max);
        }
        int ok = ok_diag && ok_wood && ok_dc && ok_identity && ok_decrease;
        printf("  %s%s%s%s%s%s\n", ok ? "ok" : "FAIL:", ok_diag ? "" : " diagonalisation",
               ok_wood ? "" : " woodbury-vs-dense", ok_dc ? "" : " Q^*D(0)P",
               ok_identity ? "" : " neumann-vs-identity", ok_decrease ? "" : " neumann-decrease");
        failures += !ok;
        free_result(&res);
        free_problem(&p);
        free_work(&w);
    }
    printf("check: %d of %d cases failed\n", failures, num_cases);
    return failures;
}

// ---- command line ----------------------------------------------------------------------------

// Digits only (no sign, space or suffix), min <= value <= max.
static long parse_count(const char *flag, const char *text, long min, long max) {
    char detail[256];
    snprintf(detail, sizeof(detail), "%s: '%s' is not an integer in %ld..%ld", flag, text, min,
             max);
    if (text[0] < '0' || text[0] > '9') die_usage(detail, "");
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < min || v > max) die_usage(detail, "");
    return v;
}

// Comma-separated counts, e.g. "16,64"; empty items are errors.
static long *parse_list(const char *flag, const char *text, long min, long max, int *count) {
    int items = 1;
    for (const char *s = text; *s; s++) items += *s == ',';
    long *values = xmalloc(sizeof(long) * (size_t)items);
    char *copy = xmalloc(strlen(text) + 1);
    strcpy(copy, text);
    char *item = copy;
    for (int i = 0; i < items; i++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        values[i] = parse_count(flag, item, min, max);
        item = comma + 1;
    }
    free(copy);
    *count = items;
    return values;
}

// A positive finite step, or "loguniform" (returned as 0).
static double parse_delta(const char *text) {
    if (!strcmp(text, "loguniform")) return 0;
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 1e-6) || !(v <= 1e3))
        die_usage("--delta: expected a number in [1e-6, 1000] or 'loguniform', got ", text);
    return v;
}

// Dense matrices (A, LU, [Abar | Bbar], S, V: about 5 N^2 complex) and the kernels and sums
// ((orders + 6) L complex); refuse rather than let overcommit turn it into an OOM kill mid-run.
static void check_memory(int N, long L, int num_orders) {
    double need = 16.0 * (5.0 * N * (double)N + (num_orders + 6.0) * (double)L);
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (have > 0 && need > 0.8 * have) {
        char msg[160];
        snprintf(msg, sizeof(msg), "N %d, L %ld needs %.1f GiB, more than this machine can give", N,
                 L, need / (1 << 30));
        die_runtime(msg);
    }
}

static void cpu_model(char *out, size_t size) {
    snprintf(out, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, size, "%s", colon);
        break;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    // OpenBLAS 0.3.21 runs its SSE3 kernels on CPUs newer than it knows, which would make the
    // dense oracle's products (and every "speedup over dense") look better than they are.
    blas_pick_kernels(argv);
    long default_N[] = {16, 32, 64, 128, 256}, default_orders[] = {1, 2, 3, 4, 5, 6, 7, 8};
    long *Ns = NULL, *orders = NULL, L = 1024;
    int count_N = 5, count_orders = 8, repeat = 5, check = 0, other_flags = 0;
    double delta = 0.01;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--check")) {
            check = 1;
            continue;
        }
        if (strcmp(a, "--N") && strcmp(a, "--L") && strcmp(a, "--orders") &&
            strcmp(a, "--repeat") && strcmp(a, "--delta"))
            die_usage("unknown argument ", a);
        if (i + 1 >= argc) die_usage("missing value after ", a);
        const char *v = argv[++i];
        other_flags = 1;
        if (!strcmp(a, "--N")) {
            free(Ns);
            Ns = parse_list(a, v, 1, MAX_N, &count_N);
        } else if (!strcmp(a, "--orders")) {
            free(orders);
            orders = parse_list(a, v, 1, MAX_ORDER, &count_orders);
        } else if (!strcmp(a, "--L")) {
            L = parse_count(a, v, 1, MAX_L);
        } else if (!strcmp(a, "--repeat")) {
            repeat = (int)parse_count(a, v, 1, 1000000);
        } else {
            delta = parse_delta(v);
        }
    }
    if (check && other_flags) {
        free(Ns), free(orders);
        die_usage("--check runs fixed cases (N 4 and 16, L 64) and takes no other option", "");
    }
    // One thread everywhere: the generating-function methods are single-threaded loops, so the
    // dense oracle's BLAS must be too for the speedups to compare like with like.
    openblas_set_num_threads(1);

    if (check) {
        int failures = run_check();
        fftw_cleanup();
        return failures ? 1 : 0;
    }

    const long *N_list = Ns ? Ns : default_N, *order_list = orders ? orders : default_orders;
    // Refuse a case too big for this machine before anything is printed or timed.
    for (int c = 0; c < count_N; c++) check_memory((int)N_list[c], L, count_orders);
    char delta_text[64];
    if (delta > 0)
        snprintf(delta_text, sizeof(delta_text), "%g", delta);
    else
        snprintf(delta_text, sizeof(delta_text), "log-uniform in [1e-3, 1e-1] per N (fixed seed)");
    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    printf("machine: %s, 1 thread, OpenBLAS kernels %s, FFTW %s\n", cpu, openblas_get_corename(),
           fftw_version);
    printf("command:");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    printf(
        "DPLR kernel, HiPPO-LegS (rank 1), float64, complex C, all N states (no conjugate "
        "halving); L %ld; Delta %s\n",
        L, delta_text);
    printf(
        "times: best of %d after one warm-up. dense includes its LU discretisation. woodbury "
        "and neumann: Ctilde = C (I - Abar^L), the roots of unity and the FFTW plan are made "
        "once outside the timing (S4 learns Ctilde directly); the Cauchy sums, the per-"
        "frequency combine and the inverse FFT are timed\n",
        repeat);
    printf("errors: relative 2-norm over the complex kernel K[0..L)\n");
    printf(
        "note: for HiPPO-LegS Q^* D(0) P = 1 exactly for every N (S e_0 = -P / sqrt 2), so the "
        "Neumann series never converges at j = 0 (s = 0)\n");
    fflush(stdout);

    Work w;
    for (int c = 0; c < count_N; c++) {
        int N = (int)N_list[c];
        uint64_t seed = 0xd91f011ull ^ (uint64_t)N;
        double delta_N = delta;
        if (!(delta > 0)) {
            uint64_t state = seed ^ 0xde17aull;
            delta_N = exp(log(1e-3) + uniform01(&state) * (log(1e-1) - log(1e-3)));
        }
        Problem p;
        alloc_work(&w, N, L);
        make_problem(&p, N, L, delta_N, 1.0, seed, &w);
        Result res;
        measure(&p, &w, order_list, count_orders, repeat, &res);
        printf("\n### N = %d, L = %ld, Delta = %.4g\n\n", N, L, delta_N);
        printf("diagonalisation ||V Lambda V^* - S||_F / ||S||_F = %.1e\n", p.diag_error);
        print_rho("", &p, &res.rho);
        printf(
            "\n| method | error vs dense | error vs woodbury | time ms | speedup vs woodbury | "
            "speedup vs dense |\n");
        printf("|---|---:|---:|---:|---:|---:|\n");
        printf("| dense | - | %.2e | %.4f | %.2fx | 1.00x |\n",
               relative_error(L, res.K_dense, res.K_woodbury), 1e3 * res.time_dense,
               res.time_woodbury / res.time_dense);
        printf("| woodbury | %.2e | - | %.4f | 1.00x | %.2fx |\n",
               relative_error(L, res.K_woodbury, res.K_dense), 1e3 * res.time_woodbury,
               res.time_dense / res.time_woodbury);
        for (int i = 0; i < count_orders; i++) {
            const double complex *K = res.K_neumann + L * i;
            printf("| neumann %ld | %.2e | %.2e | %.4f | %.2fx | %.2fx |\n", order_list[i],
                   relative_error(L, K, res.K_dense), relative_error(L, K, res.K_woodbury),
                   1e3 * res.time_neumann[i], res.time_woodbury / res.time_neumann[i],
                   res.time_dense / res.time_neumann[i]);
        }
        fflush(stdout);
        free_result(&res);
        free_problem(&p);
        free_work(&w);
    }
    free(Ns), free(orders);
    fftw_cleanup();
    return 0;
}
