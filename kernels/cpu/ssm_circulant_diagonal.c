// Circulant-diagonal SSM (mixers.md 17; cyclic reduction, mixers.md 23) [project-defined]:
//   h_t = A_t h_{t-1} + B x_t,   y_t = Cout h_t,   h in R^n (real), h_{-1} = 0,
//   A_t = diag(d1_t) Circ(c_t) diag(d2_t),   A_t h = d1 (.) IFFT(lam (.) FFT(d2 (.) h)),
// lam_t = FFT(c_t), per token from the layer's input projection (kernels/ssm_circulant_diagonal.h
// for the layout) and this op's biases:
//   d1 = tanh(a1 + b_d1), d2 = tanh(a2 + b_d2)                                  |d| < 1
//   lam_k = rho_k e^{i th_k}, rho = CD_RHO_MAX sigmoid(r + b_rho), th = t + b_th  (k < n/2)
//   lam_0, lam_{n/2} = rho cos(th) (real),  lam_{n-k} = conj(lam_k)             (c real)
// so ||A_t||_2 <= max|d1| max|lam| max|d2| < 1 for every input sequence (the norm bound that
// holds under time variation, which eigenvalues alone would not give).
//
// Products of such factors leave the class (D2 D1' between two circulants is dense in Fourier
// coordinates), so the training form is chunkwise with dense chunk composites:
//   1. every (batch row, chunk) at once: the chunk's end state from a zero start (n log n per
//      step) and its composite P_c = A_t1 ... A_t0, built by applying the steps to the n columns
//      of the identity (one batched FFT of n + 1 vectors per step, the end state the extra one);
//   2. every batch row: the chunks' entering states from the affine pairs (P_c, end_c) by cyclic
//      reduction (dense n x n GEMMs, log2(T / L) levels);
//   3. every (batch row, chunk) at once: the chunk rerun from its entering state, states out.
// The composites cost about n times the sequential steps; they buy parallelism over T, which
// a GPU needs when batch rows are few. With chunk >= T it is the plain sequential loop.
// Backward runs the adjoint g_{t-1} = A_t^T g_t + dout_{t-1} by the same three phases in
// reverse time with the saved composites transposed (P_c^T), and per step the parameters'
// gradients from h_{t-1} and g_t. The oracle builds every A_t as a dense matrix, c by an
// explicit inverse DFT sum.
#include "../ssm_circulant_diagonal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../rng.h"

#ifdef MT_DOUBLE
#define cd_gemv cblas_dgemv
#else
#define cd_gemv cblas_sgemv
#endif

typedef FFTW(complex) cplx;

static real cd_sigmoid(real x) {
    return 1 / (1 + exp(-x));
}

// The op's inputs and FFTW plans for one call. FFTW's planner is not thread-safe (its execute
// functions are): plans are made once per call and executed with new arrays from the parallel
// loops (FFTW_UNALIGNED: any buffer).
typedef struct {
    CdDims d;
    const real *in0, *b_d1, *b_d2, *b_rho, *b_th;
    FFTW(plan) fft, ifft;            // one vector of n
    FFTW(plan) fft_cols, ifft_cols;  // n + 1 vectors of n (the composites and the end state)
} CdCtx;

static CdCtx cd_open(const OpShape *s, const real *const *in, int cols) {
    CdCtx x = {.d = cd_dims(s),
               .in0 = in[CORE_IN_QKV],
               .b_d1 = in[CORE_IN_PARAMS],
               .b_d2 = in[CORE_IN_PARAMS + 1],
               .b_rho = in[CORE_IN_PARAMS + 2],
               .b_th = in[CORE_IN_PARAMS + 3]};
    int n = x.d.n, K = x.d.K, m = n + 1;
    real *r = malloc(sizeof(real) * (size_t)m * n);
    cplx *c = malloc(sizeof(cplx) * (size_t)m * K);
    unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
#pragma omp critical(fftw_planner)
    {
        x.fft = FFTW(plan_dft_r2c_1d)(n, r, c, flags);
        x.ifft = FFTW(plan_dft_c2r_1d)(n, c, r, flags);
        if (cols) {
            x.fft_cols = FFTW(plan_many_dft_r2c)(1, &n, m, r, NULL, 1, n, c, NULL, 1, K, flags);
            x.ifft_cols = FFTW(plan_many_dft_c2r)(1, &n, m, c, NULL, 1, K, r, NULL, 1, n, flags);
        }
    }
    free(r), free(c);
    return x;
}

static void cd_close(CdCtx *x) {
#pragma omp critical(fftw_planner)
    {
        FFTW(destroy_plan)(x->fft);
        FFTW(destroy_plan)(x->ifft);
        if (x->fft_cols) FFTW(destroy_plan)(x->fft_cols);
        if (x->ifft_cols) FFTW(destroy_plan)(x->ifft_cols);
    }
}

// One thread's buffers for one chunk.
typedef struct {
    real *d1, *d2;  // [L][n]
    cplx *lamn;     // [L][K]: lam / n (FFTW's c2r is n times the inverse DFT)
    real *a, *v;    // [n]
    cplx *sa, *sb;  // [K]
    real *rows;     // [n + 1][n]: the end state then P's columns (forward), or the chunk's
                    // states h_{t0-1} .. h_{t1} (backward)
    cplx *spec;     // [n + 1][K]
} CdWork;

static CdWork cd_work(const CdDims *d) {
    int n = d->n, K = d->K, L = d->L, m = (n > L ? n : L) + 1;
    CdWork w = {malloc(sizeof(real) * (size_t)L * n),
                malloc(sizeof(real) * (size_t)L * n),
                malloc(sizeof(cplx) * (size_t)L * K),
                malloc(sizeof(real) * n),
                malloc(sizeof(real) * n),
                malloc(sizeof(cplx) * K),
                malloc(sizeof(cplx) * K),
                malloc(sizeof(real) * (size_t)m * n),
                malloc(sizeof(cplx) * (size_t)(n + 1) * K)};
    return w;
}

static void cd_work_free(CdWork *w) {
    free(w->d1), free(w->d2), free(w->lamn), free(w->a), free(w->v), free(w->sa), free(w->sb);
    free(w->rows), free(w->spec);
}

static const real *cd_raw(const CdCtx *x, int b, int t) {
    return x->in0 + ((size_t)b * x->d.T + t) * x->d.W_in;
}

// rho_k, th_k and e^{i th_k} of one token (rho with its cap, mixers.md 17).
static void cd_bin(const CdCtx *x, const real *raw, int k, real *s, real *rho, real *th) {
    *s = cd_sigmoid(raw[x->d.o_rho + k] + x->b_rho[k]);
    *rho = (real)CD_RHO_MAX * *s;
    *th = raw[x->d.o_th + k] + x->b_th[k];
}

// d1, d2 and lam / n of the steps t0 .. t0 + len of batch row b.
static void cd_coefs(const CdCtx *x, int b, int t0, int len, CdWork *w) {
    int n = x->d.n, K = x->d.K;
    for (int r = 0; r < len; r++) {
        const real *raw = cd_raw(x, b, t0 + r);
        real *d1 = w->d1 + (size_t)r * n, *d2 = w->d2 + (size_t)r * n;
        cplx *lamn = w->lamn + (size_t)r * K;
        for (int i = 0; i < n; i++) {
            d1[i] = tanh(raw[x->d.o_d1 + i] + x->b_d1[i]);
            d2[i] = tanh(raw[x->d.o_d2 + i] + x->b_d2[i]);
        }
        for (int k = 0; k < K; k++) {
            real s, rho, th;
            cd_bin(x, raw, k, &s, &rho, &th);
            lamn[k] = cd_real_bin(k, n) ? rho * cos(th) / n : (rho / n) * (cos(th) + I * sin(th));
        }
    }
}

// h_out = A_r h_in (+ bx when not NULL); h_out may be h_in.
static void cd_step(const CdCtx *x, CdWork *w, int r, const real *h_in, real *h_out,
                    const real *bx) {
    int n = x->d.n, K = x->d.K;
    const real *d1 = w->d1 + (size_t)r * n, *d2 = w->d2 + (size_t)r * n;
    const cplx *lamn = w->lamn + (size_t)r * K;
    for (int i = 0; i < n; i++) w->a[i] = d2[i] * h_in[i];
    FFTW(execute_dft_r2c)(x->fft, w->a, w->sa);
    for (int k = 0; k < K; k++) w->sa[k] *= lamn[k];
    FFTW(execute_dft_c2r)(x->ifft, w->sa, w->a);
    for (int i = 0; i < n; i++) h_out[i] = d1[i] * w->a[i] + (bx ? bx[i] : 0);
}

// g_out = A_r^T g_in = d2 (.) IFFT(conj(lam) (.) FFT(d1 (.) g_in)) (Circ^T's spectrum is
// conj(lam)); g_out may be g_in.
static void cd_step_t(const CdCtx *x, CdWork *w, int r, const real *g_in, real *g_out) {
    int n = x->d.n, K = x->d.K;
    const real *d1 = w->d1 + (size_t)r * n, *d2 = w->d2 + (size_t)r * n;
    const cplx *lamn = w->lamn + (size_t)r * K;
    for (int i = 0; i < n; i++) w->a[i] = d1[i] * g_in[i];
    FFTW(execute_dft_r2c)(x->fft, w->a, w->sa);
    for (int k = 0; k < K; k++) w->sa[k] *= conj(lamn[k]);
    FFTW(execute_dft_c2r)(x->ifft, w->sa, w->a);
    for (int i = 0; i < n; i++) g_out[i] = d2[i] * w->a[i];
}

// ---- cyclic reduction over the chunks (mixers.md 23, bench/bench_cyclic.c) ----------------
// Per batch row, m equations x_k = op(M_k) x_{k-1} + x_k (x_{-1} = 0) solved in place in
// X [B][m][n]. Forward: M_k = P_k, x_k the state leaving chunk k. Backward (adjoint = 1):
// M_k = P_{nc-1-k}^T, x_k the adjoint leaving chunk nc-2-k towards the past. Level l keeps its
// unknown k at position (k + 1) 2^l - 1 of X; its matrices (l >= 1) are formed products, stored
// plainly (the transpose only applies to the saved composites of level 0).

static inline long cd_cr_pos(long k, int level) {
    return ((k + 1) << level) - 1;
}

typedef struct {
    const real *base;  // level 0: the saved composites; level >= 1: this level's products
    int m, trans, rev;
} CdLevel;

static const real *cd_level_mat(const CdDims *d, const CdLevel *lv, int level, int b, long k) {
    size_t nn = (size_t)d->n * d->n;
    if (level == 0) return lv->base + ((size_t)b * d->nc + (lv->rev ? d->nc - 1 - k : k)) * nn;
    return lv->base + ((size_t)b * lv->m + k) * nn;
}

static void cd_cyclic_reduction(const CdDims *d, const real *comp, int adjoint, int m, real *X) {
    if (m < 2) return;
    int n = d->n, B = d->B;
    enum { MAX_LEVELS = 40 };
    CdLevel lv[MAX_LEVELS];
    lv[0] = (CdLevel){comp, m, adjoint ? CblasTrans : CblasNoTrans, adjoint};
    int levels = 1;
    while (lv[levels - 1].m > 1) {
        const CdLevel *cur = &lv[levels - 1];
        int l = levels - 1, half = cur->m / 2;
        real *next = malloc(sizeof(real) * (size_t)B * half * n * n);
        // Eliminating the odd steps: x'_i = M_{2i+1} x_{2i} + x_{2i+1} in place, and
        // M'_i = M_{2i+1} M_{2i} (not for i = 0: it would multiply x_{-1} = 0).
#pragma omp parallel for schedule(static)
        for (long j = 0; j < (long)B * half; j++) {
            int b = (int)(j / half);
            long i = j % half;
            real *Xb = X + (size_t)b * m * n;
            const real *odd = cd_level_mat(d, cur, l, b, 2 * i + 1);
            cd_gemv(CblasColMajor, cur->trans, n, n, 1, odd, n, Xb + cd_cr_pos(2 * i, l) * n, 1, 1,
                    Xb + cd_cr_pos(2 * i + 1, l) * n, 1);
            if (i > 0)
                cblas_gemm(CblasColMajor, cur->trans, cur->trans, n, n, n, 1, odd, n,
                           cd_level_mat(d, cur, l, b, 2 * i), n, 0,
                           next + ((size_t)b * half + i) * n * n, n);
        }
        lv[levels++] = (CdLevel){next, half, CblasNoTrans, 0};
    }
    // Back-substitution, coarsest level first: the odd unknowns of level l are level l+1's,
    // solved; each even k > 0 takes one product (k = 0 is its own right-hand side).
    for (int l = levels - 2; l >= 0; l--) {
        const CdLevel *cur = &lv[l];
        long evens = (cur->m + 1) / 2;
        if (evens < 2) continue;
#pragma omp parallel for schedule(static)
        for (long j = 0; j < (long)B * (evens - 1); j++) {
            int b = (int)(j / (evens - 1));
            long i = 1 + j % (evens - 1);
            real *Xb = X + (size_t)b * m * n;
            cd_gemv(CblasColMajor, cur->trans, n, n, 1, cd_level_mat(d, cur, l, b, 2 * i), n,
                    Xb + cd_cr_pos(2 * i - 1, l) * n, 1, 1, Xb + cd_cr_pos(2 * i, l) * n, 1);
        }
    }
    for (int l = 1; l < levels; l++) free((void *)lv[l].base);
}

// ---- forward ---------------------------------------------------------------------------------

// Phase 1 of chunk c (0 <= c <= nc - 2) of row b: its end state from a zero start into end [n]
// and, for c >= 1, its composite into comp [n][n] (column-major): the n + 1 vectors
// [state | e_0 .. e_{n-1}] go through the chunk's steps together, one batched FFT per step.
static void cd_reduce_chunk(const CdCtx *x, CdWork *w, int b, int c, real *end, real *comp) {
    int n = x->d.n, K = x->d.K, t0 = c * x->d.L, len = cd_chunk_len(&x->d, c);
    cd_coefs(x, b, t0, len, w);
    if (!comp) {
        memset(end, 0, sizeof(real) * n);
        for (int r = 0; r < len; r++) cd_step(x, w, r, end, end, cd_raw(x, b, t0 + r) + x->d.o_bx);
        return;
    }
    int m = n + 1;
    memset(w->rows, 0, sizeof(real) * (size_t)m * n);
    for (int j = 0; j < n; j++) w->rows[(size_t)(j + 1) * n + j] = 1;
    for (int r = 0; r < len; r++) {
        const real *d1 = w->d1 + (size_t)r * n, *d2 = w->d2 + (size_t)r * n;
        const cplx *lamn = w->lamn + (size_t)r * K;
        const real *bx = cd_raw(x, b, t0 + r) + x->d.o_bx;
        for (int j = 0; j < m; j++)
            for (int i = 0; i < n; i++) w->rows[(size_t)j * n + i] *= d2[i];
        FFTW(execute_dft_r2c)(x->fft_cols, w->rows, w->spec);
        for (int j = 0; j < m; j++)
            for (int k = 0; k < K; k++) w->spec[(size_t)j * K + k] *= lamn[k];
        FFTW(execute_dft_c2r)(x->ifft_cols, w->spec, w->rows);
        for (int j = 0; j < m; j++)
            for (int i = 0; i < n; i++) w->rows[(size_t)j * n + i] *= d1[i];
        for (int i = 0; i < n; i++) w->rows[i] += bx[i];
    }
    memcpy(end, w->rows, sizeof(real) * n);
    memcpy(comp, w->rows + n, sizeof(real) * (size_t)n * n);
}

// Context parallelism. The recurrence is affine, so a state entering the call adds
// A_t ... A_0 h_in to every state: the chunks' entering states (from a zero start) take that
// homogeneous part, one pass of the steps per batch row (as long as phase 3), and phase 3 then
// runs from them; backward adds the leaving state's gradient to the adjoint entering each chunk
// the same way (A^T in reverse time), and the entering state's gradient is the adjoint chunk 0
// leaves. h [B][n]; per batch row along the chunks: at chunk c, add[c] += the current vector
// (add [B][nc][n], may be NULL), then the vector goes through chunk c's steps (adjoint: chunks
// in reverse, A^T); h_end [B][n] (may be NULL, may be h) receives it after the last.
static void cd_propagate(const CdCtx *x, const real *h, real *add, real *h_end, int adjoint) {
    const CdDims *d = &x->d;
    int n = d->n;
#pragma omp parallel
    {
        CdWork w = cd_work(d);
        real *v = malloc(sizeof(real) * n);
#pragma omp for schedule(static)
        for (int b = 0; b < d->B; b++) {
            memcpy(v, h + (size_t)b * n, sizeof(real) * n);
            for (int k = 0; k < d->nc; k++) {
                int c = adjoint ? d->nc - 1 - k : k, len = cd_chunk_len(d, c);
                if (add)
                    for (int i = 0; i < n; i++) add[((size_t)b * d->nc + c) * n + i] += v[i];
                cd_coefs(x, b, c * d->L, len, &w);
                for (int r = 0; r < len; r++) {
                    if (adjoint)
                        cd_step_t(x, &w, len - 1 - r, v, v);
                    else
                        cd_step(x, &w, r, v, v, NULL);
                }
            }
            if (h_end) memcpy(h_end + (size_t)b * n, v, sizeof(real) * n);
        }
        free(v);
        cd_work_free(&w);
    }
}

static void circulant_diagonal_forward_carry(const OpShape *s, const real *const *in,
                                             real *const *out, real *saved, const real *state_in,
                                             real *state_out) {
    CdCtx x = cd_open(s, in, 1);
    CdDims d = x.d;
    int n = d.n, m = d.nc - 1;  // m: equations of the reduction (the states leaving chunks 0..nc-2)
    real *enter = saved, *comp = saved + cd_saved_states(&d);
    real *X = malloc(sizeof(real) * ((size_t)d.B * (m > 0 ? m : 0) * n + 1));
    if (m > 0) {
#pragma omp parallel
        {
            CdWork w = cd_work(&d);
#pragma omp for schedule(dynamic)
            for (long j = 0; j < (long)d.B * m; j++) {
                int b = (int)(j / m), c = (int)(j % m);
                cd_reduce_chunk(&x, &w, b, c, X + ((size_t)b * m + c) * n,
                                c ? comp + ((size_t)b * d.nc + c) * n * n : NULL);
            }
            cd_work_free(&w);
        }
        cd_cyclic_reduction(&d, comp, 0, m, X);
    }
    for (int b = 0; b < d.B; b++)
        for (int c = 0; c < d.nc; c++) {
            real *e = enter + ((size_t)b * d.nc + c) * n;
            if (c)
                memcpy(e, X + ((size_t)b * m + c - 1) * n, sizeof(real) * n);
            else
                memset(e, 0, sizeof(real) * n);
        }
    free(X);
    if (state_in) cd_propagate(&x, state_in, enter, NULL, 0);
#pragma omp parallel
    {
        CdWork w = cd_work(&d);
#pragma omp for schedule(dynamic)
        for (long j = 0; j < (long)d.B * d.nc; j++) {
            int b = (int)(j / d.nc), c = (int)(j % d.nc), t0 = c * d.L;
            int len = cd_chunk_len(&d, c);
            cd_coefs(&x, b, t0, len, &w);
            real *h = w.v;
            memcpy(h, enter + (size_t)j * n, sizeof(real) * n);
            for (int r = 0; r < len; r++) {
                size_t tok = (size_t)b * d.T + t0 + r;
                cd_step(&x, &w, r, h, h, cd_raw(&x, b, t0 + r) + d.o_bx);
                memcpy(out[0] + tok * d.W_out, h, sizeof(real) * n);
                // u through to W_o's skip D
                memcpy(out[0] + tok * d.W_out + n, in[CORE_IN_QKV] + tok * d.W_in + d.o_u,
                       sizeof(real) * d.C);
            }
            if (state_out && c == d.nc - 1) memcpy(state_out + (size_t)b * n, h, sizeof(real) * n);
        }
        cd_work_free(&w);
    }
    cd_close(&x);
}

static void circulant_diagonal_forward(const OpShape *s, const real *const *in, real *const *out,
                                       real *saved) {
    circulant_diagonal_forward_carry(s, in, out, saved, NULL, NULL);
}

// ---- backward --------------------------------------------------------------------------------

static const real *cd_dout_h(const CdDims *d, const real *dout, int b, int t) {
    return dout + ((size_t)b * d->T + t) * d->W_out;
}

// Per step r of the chunk in w, with h = h_{t-1} and g = dL/dh_t: the gradients of the token's
// raw inputs (added into draw, the token's row of input 0's gradient, and into part
// [d1 (n) | d2 (n) | rho (K) | theta (K)], the biases' partial sums) and g_prev = A_t^T g.
// With u = d2 h, U = FFT(u), v = IFFT(lam U), out = d1 v:
//   dd1 = g v,  dv = d1 g,  du = IFFT(conj(lam) FFT(dv)),  dd2 = du h,  g_prev = d2 du,
//   dL/dlam_k = (w_k / n) FFT(dv)_k conj(U_k) as dRe + i dIm (w = 2 for the bins that stand
//   for two, 1 and the real part only for the real bins),
//   then lam = rho e^{i th}: d rho = Re(conj(e^{i th}) G), d th = Im(conj(lam) G).
static void cd_step_grad(const CdCtx *x, CdWork *w, int r, const real *raw, const real *h,
                         const real *g, real *draw, real *part, real *g_prev) {
    int n = x->d.n, K = x->d.K;
    const real *d1 = w->d1 + (size_t)r * n, *d2 = w->d2 + (size_t)r * n;
    const cplx *lamn = w->lamn + (size_t)r * K;
    for (int i = 0; i < n; i++) w->a[i] = d2[i] * h[i];
    FFTW(execute_dft_r2c)(x->fft, w->a, w->sa);  // U
    for (int k = 0; k < K; k++) w->sb[k] = lamn[k] * w->sa[k];
    FFTW(execute_dft_c2r)(x->ifft, w->sb, w->a);  // v
    for (int i = 0; i < n; i++) {
        real da = g[i] * w->a[i] * (1 - d1[i] * d1[i]);
        draw[x->d.o_d1 + i] += da, part[i] += da;
        w->a[i] = d1[i] * g[i];  // dv
    }
    FFTW(execute_dft_r2c)(x->fft, w->a, w->sb);  // FFT(dv)
    for (int k = 0; k < K; k++) {
        int real_bin = cd_real_bin(k, n);
        cplx G = (real)(real_bin ? 1 : 2) / n * w->sb[k] * conj(w->sa[k]);
        if (real_bin) G = creal(G);
        real sg, rho, th;
        cd_bin(x, raw, k, &sg, &rho, &th);
        cplx e = cos(th) + I * sin(th);
        real drho = (real)CD_RHO_MAX * sg * (1 - sg) * creal(conj(e) * G);
        real dth = cimag(conj(rho * e) * G);
        draw[x->d.o_rho + k] += drho, part[2 * n + k] += drho;
        draw[x->d.o_th + k] += dth, part[2 * n + K + k] += dth;
        w->sb[k] *= conj(lamn[k]);
    }
    FFTW(execute_dft_c2r)(x->ifft, w->sb, w->a);  // du
    for (int i = 0; i < n; i++) {
        real da = w->a[i] * h[i] * (1 - d2[i] * d2[i]);
        draw[x->d.o_d2 + i] += da, part[n + i] += da;
        g_prev[i] = d2[i] * w->a[i];
    }
}

// The entering state's own part is in the saved chunk states (chunk 0's).
static void circulant_diagonal_backward_carry(const OpShape *s, const real *const *in,
                                              const real *const *out, const real *saved,
                                              const real *const *dout, real *const *din,
                                              const real *state_in, const real *dstate_out,
                                              real *dstate_in) {
    (void)out, (void)state_in;
    CdCtx x = cd_open(s, in, 0);
    CdDims d = x.d;
    int n = d.n, K = d.K, m = d.nc - 1, np = 2 * n + 2 * K;
    const real *enter = saved, *comp = saved + cd_saved_states(&d);
    real *din0 = din[CORE_IN_QKV];
    // X [B][m][n]: equation k's right-hand side, the adjoint chunk nc-1-k sends to the past from
    // a zero start (q = 0 entering it), then by the reduction the adjoint leaving chunk nc-1-k.
    real *X = malloc(sizeof(real) * ((size_t)d.B * (m > 0 ? m : 0) * n + 1));
    if (m > 0) {
#pragma omp parallel
        {
            CdWork w = cd_work(&d);
#pragma omp for schedule(dynamic)
            for (long j = 0; j < (long)d.B * m; j++) {
                int b = (int)(j / m), k = (int)(j % m), c = d.nc - 1 - k, t0 = c * d.L;
                int len = cd_chunk_len(&d, c);
                cd_coefs(&x, b, t0, len, &w);
                real *g = X + ((size_t)b * m + k) * n;
                memcpy(g, cd_dout_h(&d, dout[0], b, t0 + len - 1), sizeof(real) * n);
                for (int r = len - 1; r >= 0; r--) {
                    cd_step_t(&x, &w, r, g, g);
                    if (r > 0) {
                        const real *dh = cd_dout_h(&d, dout[0], b, t0 + r - 1);
                        for (int i = 0; i < n; i++) g[i] += dh[i];
                    }
                }
            }
            cd_work_free(&w);
        }
        cd_cyclic_reduction(&d, comp, 1, m, X);
    }
    // the leaving state's gradient, carried to the adjoint entering every chunk from the future
    real *qout = dstate_out ? calloc((size_t)d.B * d.nc * n, sizeof(real)) : NULL;
    if (dstate_out) cd_propagate(&x, dstate_out, qout, NULL, 1);
    real *part = calloc((size_t)d.B * d.nc * np + 1, sizeof(real));
#pragma omp parallel
    {
        CdWork w = cd_work(&d);
        real *g = malloc(sizeof(real) * n);
#pragma omp for schedule(dynamic)
        for (long j = 0; j < (long)d.B * d.nc; j++) {
            int b = (int)(j / d.nc), c = (int)(j % d.nc), t0 = c * d.L;
            int len = cd_chunk_len(&d, c);
            cd_coefs(&x, b, t0, len, &w);
            // The chunk's states h_{t0-1} .. h_{t1} rerun from its entering state.
            real *hs = w.rows;
            memcpy(hs, enter + (size_t)j * n, sizeof(real) * n);
            for (int r = 0; r < len; r++)
                cd_step(&x, &w, r, hs + (size_t)r * n, hs + (size_t)(r + 1) * n,
                        cd_raw(&x, b, t0 + r) + d.o_bx);
            // The adjoint entering from the future: the reduction's unknown nc-2-c.
            const real *q = c < d.nc - 1 ? X + ((size_t)b * m + (d.nc - 2 - c)) * n : NULL;
            const real *dh = cd_dout_h(&d, dout[0], b, t0 + len - 1);
            for (int i = 0; i < n; i++)
                g[i] = dh[i] + (q ? q[i] : 0) + (qout ? qout[(size_t)j * n + i] : 0);
            real *pj = part + (size_t)j * np;
            for (int r = len - 1; r >= 0; r--) {
                size_t tok = (size_t)b * d.T + t0 + r;
                real *draw = din0 + tok * d.W_in;
                for (int i = 0; i < n; i++) draw[d.o_bx + i] += g[i];
                cd_step_grad(&x, &w, r, cd_raw(&x, b, t0 + r), hs + (size_t)r * n, g, draw, pj, g);
                if (r > 0) {
                    dh = cd_dout_h(&d, dout[0], b, t0 + r - 1);
                    for (int i = 0; i < n; i++) g[i] += dh[i];
                }
            }
            if (dstate_in && c == 0)  // g = A_t0^T g_t0: the adjoint leaving the call
                for (int i = 0; i < n; i++) dstate_in[(size_t)b * n + i] += g[i];
        }
        free(g);
        cd_work_free(&w);
    }
    free(X);
    for (size_t tok = 0; tok < (size_t)d.B * d.T; tok++)
        for (int c = 0; c < d.C; c++)
            din0[tok * d.W_in + d.o_u + c] += dout[0][tok * d.W_out + n + c];
    // The biases: batch rows, then chunks, a fixed order.
    for (int p = 0; p < np; p++) {
        real acc = 0;
        for (long j = 0; j < (long)d.B * d.nc; j++) acc += part[(size_t)j * np + p];
        int which = p < n ? 0 : p < 2 * n ? 1 : p < 2 * n + K ? 2 : 3;
        int at = which == 0 ? p : which == 1 ? p - n : which == 2 ? p - 2 * n : p - 2 * n - K;
        din[CORE_IN_PARAMS + which][at] += acc;
    }
    free(part), free(qout);
    cd_close(&x);
}

static void circulant_diagonal_backward(const OpShape *s, const real *const *in,
                                        const real *const *out, const real *saved,
                                        const real *const *dout, real *const *din) {
    circulant_diagonal_backward_carry(s, in, out, saved, dout, din, NULL, NULL, NULL);
}

static size_t circulant_diagonal_carry_size(const OpShape *s) {
    CdDims d = cd_dims(s);
    return (size_t)d.B * d.n;
}

static void circulant_diagonal_carry_through(const OpShape *s, const real *const *in, real *state,
                                             int transpose) {
    CdCtx x = cd_open(s, in, 0);
    cd_propagate(&x, state, NULL, state, transpose);
    cd_close(&x);
}

// ---- the row ---------------------------------------------------------------------------------

static void circulant_diagonal_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    CdDims d = cd_dims(s);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.W_in, in[CORE_IN_XPROJ] = 0;
    in[CORE_IN_PARAMS] = in[CORE_IN_PARAMS + 1] = (size_t)d.n;
    in[CORE_IN_PARAMS + 2] = in[CORE_IN_PARAMS + 3] = (size_t)d.K;
    out[0] = NT * d.W_out;
    *saved = cd_saved_size(&d);
}

// d1, d2 biases CD_D_BIAS (tanh 0.995); |lam_k| = CD_RHO_MAX sigmoid(b_rho) log-uniform in
// 1 - |lam| over [1 - 0.999, 1 - 0.9] (INIT_CUSTOM); phases 0 (lam real and positive: the
// circulant starts as a symmetric near-identity decay, mixing comes from training). Not
// weight-decayed.
static int circulant_diagonal_params(const OpShape *s, OpParam *out) {
    CdDims d = cd_dims(s);
    out[0] = (OpParam){.name = "d1_bias",
                       .rows = d.n,
                       .init = INIT_CONST,
                       .init_value = CD_D_BIAS,
                       .trainable = 1};
    out[1] = (OpParam){.name = "d2_bias",
                       .rows = d.n,
                       .init = INIT_CONST,
                       .init_value = CD_D_BIAS,
                       .trainable = 1};
    out[2] = (OpParam){.name = "rho_bias", .rows = d.K, .init = INIT_CUSTOM, .trainable = 1};
    out[3] = (OpParam){.name = "theta_bias", .rows = d.K, .init = INIT_ZEROS, .trainable = 1};
    return 4;
}

static void circulant_diagonal_init_param(const OpShape *s, int index, uint64_t key, real *w) {
    CdDims d = cd_dims(s);
    if (index != 2) return;
    for (int k = 0; k < d.K; k++) {
        double lo = log(1 - CD_RHO_INIT_HI), hi = log(1 - CD_RHO_INIT_LO);
        double rho = 1 - exp(lo + (hi - lo) * rng_uniform(key, (uint64_t)k));
        double sg = rho / CD_RHO_MAX;
        w[k] = (real)log(sg / (1 - sg));
    }
}

// Forward FLOPs per token (multiply-add = 2). One step: an r2c and a c2r FFT of n (~5 n log2 n
// together) and ~6 n for the diagonals, the spectrum product and B x; the coefficients ~10 per
// diagonal entry and ~20 per bin (sigmoid, sin, cos). Phase 1 steps chunks 0..nc-2 once for the
// end state and chunks 1..nc-2 n more times for the composites; the reduction makes ~nc GEMMs
// (2 n^3) and 2 nc GEMVs; phase 3 steps every token again.
static double circulant_diagonal_flops(const OpShape *s) {
    CdDims d = cd_dims(s);
    if (d.T <= 0) return 0;
    double n = d.n, step = 5 * n * log2(n) + 6 * n, coef = 10 * 2 * n + 20 * d.K;
    double ends = 0, comps = 0;
    for (int c = 0; c + 1 < d.nc; c++) {
        ends += cd_chunk_len(&d, c);
        if (c) comps += cd_chunk_len(&d, c);
    }
    double cr = d.nc > 1 ? (d.nc - 1) * (2 * n * n * n + 4 * n * n) : 0;
    return (ends * (step + coef) + comps * n * step + cr + d.T * (step + coef)) / d.T;
}

// The norm bound max|d1| max|lam| max|d2| of every step (mixers.md 17), its largest over tokens.
static int circulant_diagonal_aux(const OpShape *s, const real *const *in, OpAux *out) {
    CdCtx x = {.d = cd_dims(s),
               .in0 = in[CORE_IN_QKV],
               .b_d1 = in[CORE_IN_PARAMS],
               .b_d2 = in[CORE_IN_PARAMS + 1],
               .b_rho = in[CORE_IN_PARAMS + 2],
               .b_th = in[CORE_IN_PARAMS + 3]};
    double worst = 0;
    for (int b = 0; b < x.d.B; b++)
        for (int t = 0; t < x.d.T; t++) {
            const real *raw = cd_raw(&x, b, t);
            double m1 = 0, m2 = 0, ml = 0;
            for (int i = 0; i < x.d.n; i++) {
                m1 = fmax(m1, fabs(tanh(raw[x.d.o_d1 + i] + x.b_d1[i])));
                m2 = fmax(m2, fabs(tanh(raw[x.d.o_d2 + i] + x.b_d2[i])));
            }
            for (int k = 0; k < x.d.K; k++) {
                real sg, rho, th;
                cd_bin(&x, raw, k, &sg, &rho, &th);
                ml = fmax(ml, cd_real_bin(k, x.d.n) ? fabs(rho * cos(th)) : rho);
            }
            worst = fmax(worst, m1 * m2 * ml);
        }
    out[0] = (OpAux){.name = "norm_bound_max", .value = worst};
    return 1;
}

#ifdef MT_DOUBLE
// From the definition, with no FFT: per token the spectrum lam (conjugate-symmetric, from rho
// and theta), the first column c by the inverse DFT sum c_j = (1/n) sum_k lam_k e^{2 pi i jk/n},
// the dense A_t[r][q] = d1_r c_{(r - q) mod n} d2_q, and h_t = A_t h_{t-1} + B x_t.
static int circulant_diagonal_reference(const OpShape *s, const double *const *in, double *out) {
    CdDims d = cd_dims(s);
    int n = d.n, K = d.K;
    const double *bd1 = in[CORE_IN_PARAMS], *bd2 = in[CORE_IN_PARAMS + 1];
    const double *brho = in[CORE_IN_PARAMS + 2], *bth = in[CORE_IN_PARAMS + 3];
    double *A = malloc(sizeof(double) * n * n), *c = malloc(sizeof(double) * n);
    double *h = malloc(sizeof(double) * n), *nh = malloc(sizeof(double) * n);
    double complex *lam = malloc(sizeof(double complex) * n);
    const double two_pi = 6.283185307179586;
    for (int b = 0; b < d.B; b++) {
        for (int i = 0; i < n; i++) h[i] = 0;
        for (int t = 0; t < d.T; t++) {
            size_t tok = (size_t)b * d.T + t;
            const double *raw = in[CORE_IN_QKV] + tok * d.W_in;
            for (int k = 0; k < K; k++) {
                double rho = CD_RHO_MAX / (1 + exp(-(raw[d.o_rho + k] + brho[k])));
                double th = raw[d.o_th + k] + bth[k];
                lam[k] = (k == 0 || 2 * k == n) ? rho * cos(th) : rho * cexp(I * th);
            }
            for (int k = K; k < n; k++) lam[k] = conj(lam[n - k]);
            for (int j = 0; j < n; j++) {
                double complex sum = 0;
                for (int k = 0; k < n; k++) sum += lam[k] * cexp(I * two_pi * j * k / n);
                c[j] = creal(sum) / n;
            }
            for (int r = 0; r < n; r++)
                for (int q = 0; q < n; q++)
                    A[r * n + q] = tanh(raw[d.o_d1 + r] + bd1[r]) * c[((r - q) % n + n) % n] *
                                   tanh(raw[d.o_d2 + q] + bd2[q]);
            for (int r = 0; r < n; r++) {
                double acc = raw[d.o_bx + r];
                for (int q = 0; q < n; q++) acc += A[r * n + q] * h[q];
                nh[r] = acc;
            }
            for (int r = 0; r < n; r++) h[r] = nh[r], out[tok * d.W_out + r] = h[r];
            for (int j = 0; j < d.C; j++) out[tok * d.W_out + n + j] = raw[d.o_u + j];
        }
    }
    free(A), free(c), free(h), free(nh), free(lam);
    return 0;
}
#else
#define circulant_diagonal_reference NULL
#endif

static const OpOption circulant_diagonal_options[] = {
    {"chunk", OPT_INT, "64", NULL, 1, 1 << 20, offsetof(CdOpts, chunk), 0,
     "chunk length of the chunkwise training form"},
    {"circulant_n", OPT_INT, "64", NULL, 2, 4096, offsetof(CdOpts, n), 0,
     "circulant_diagonal: state size n of A_t = diag(d1) Circ(c) diag(d2)"},
    {NULL}};

// Shapes: even and odd n (odd: no Nyquist bin), n = 2 (both bins real), T = 1, a partial last
// chunk, one chunk, T = 13 over chunks of 2 (7 chunks: cyclic reduction over 3 levels forward
// and backward), B = 2, and T = 65 and 129 for the oracle.
// clang-format off
const F(OpDef) F(op_circulant_diagonal) = {
    .name = "circulant_diagonal", .n_in = CORE_IN_PARAMS + 4, .n_out = 1,
    .sizes = circulant_diagonal_sizes, .forward = circulant_diagonal_forward,
    .backward = circulant_diagonal_backward, .params = circulant_diagonal_params,
    .init_param = circulant_diagonal_init_param, .aux = circulant_diagonal_aux,
    .options = circulant_diagonal_options, .mixer = 1,
    .carry_size = circulant_diagonal_carry_size,
    .forward_carry = circulant_diagonal_forward_carry,
    .backward_carry = circulant_diagonal_backward_carry,
    .carry_through = circulant_diagonal_carry_through,
    .help = "circulant-diagonal SSM: h_t = diag(d1) Circ(c) diag(d2) h_{t-1} + B x_t, "
            "||A_t|| < 1 for any input (mixers.md 17)",
    .flops = circulant_diagonal_flops, .reference = circulant_diagonal_reference,
    .aux_cols = {{"norm_bound_max", AUX_MAX, "A_t norm bound", 4}},
    .n_tests = 8, .tests = {
        {{.B = 2, .T = 7, .C = 4, .H = 1}, "chunk=3 circulant_n=6"},
        {{.B = 1, .T = 1, .C = 3, .H = 1}, "chunk=4 circulant_n=5"},
        {{.B = 2, .T = 13, .C = 3, .H = 1}, "chunk=2 circulant_n=7"},
        {{.B = 1, .T = 9, .C = 2, .H = 1}, "chunk=64 circulant_n=8"},
        {{.B = 2, .T = 16, .C = 2, .H = 1}, "chunk=3 circulant_n=4"},
        {{.B = 1, .T = 5, .C = 2, .H = 1}, "chunk=2 circulant_n=2"},
        {{.B = 1, .T = 65, .C = 4, .H = 1}, "chunk=8 circulant_n=6"},
        {{.B = 2, .T = 129, .C = 3, .H = 1}, "chunk=16 circulant_n=9"},
    }};
// clang-format on
