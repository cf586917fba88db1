// Pieces shared by the linear-attention family under kernels/cpu/ (compiled twice, like the
// kernels): the chunked causal linear-attention scan, the feature maps phi, and random
// orthonormal bases. Not part of the op table: ops are built from these.
#pragma once
#include "../attention_hss.h"
#include "../attention_loglinear.h"
#include "../feature_maps.h"
#include "../real.h"

static inline real F(softplus)(real x) {
    return x > 20 ? x : log1p(exp(x));
}
static inline real F(sigmoid)(real x) {
    return 1 / (1 + exp(-x));
}
// Index of the highest set bit plus one (0 for 0): the Fenwick level of (t, s) is
// bit_length(t XOR s) (mixers.md 6.1).
static inline int bit_length(unsigned x) {
    return loglinear_bit_length(x);
}

// ---- chunked causal linear attention of one head (linear_scan.c) ------------------------
// out[t] = sum_{s<=t} (p_t . f_s) v_s, p and f [T, K], v [T, Dv], all with row strides so
// that column blocks of wider buffers can be passed; chunk length L (mixers.md section 0).
void F(la_forward)(int T, int K, int Dv, int L, const real *p, int ldp, const real *f, int ldf,
                   const real *v, int ldv, real *out, int ldo);
// Adds the gradient of sum(dout . out) to dp, df, dv: one forward-time sweep (dp) and one
// reverse-time sweep (df, dv), each chunk a few GEMMs.
void F(la_backward)(int T, int K, int Dv, int L, const real *p, int ldp, const real *f, int ldf,
                    const real *v, int ldv, const real *dout, int lddo, real *dp, int lddp,
                    real *df, int lddf, real *dv, int lddv);

// The bidirectional form: out[t] = sum_{s<T} (p_t . f_s) v_s = p_t S, S = f^T v [K, Dv]; and
// its backward (adds to dp, df, dv): dp += dout S^T, R = p^T dout, df += v R^T, dv += f R.
void F(la_full_forward)(int T, int K, int Dv, const real *p, int ldp, const real *f, int ldf,
                        const real *v, int ldv, real *out, int ldo);
void F(la_full_backward)(int T, int K, int Dv, const real *p, int ldp, const real *f, int ldf,
                         const real *v, int ldv, const real *dout, int lddo, real *dp, int lddp,
                         real *df, int lddf, real *dv, int lddv);

// ---- feature maps (feature_maps.c) ------------------------------------------------------
typedef struct {
    int kind, D, m;  // FeatureMap, head dim, feature width
    int qk_norm;
    real scale;           // favor, circulant: x -> scale * x (after the optional L2 normalisation)
    real max_len;         // cosformer: M
    const real *proj_md;  // favor: projection W [m, D]
    const real *r_bd, *sign_bd;  // circulant: first rows r and signs s of the nb blocks [nb, D]
    int nb, bins;                // circulant: blocks, D/2 + 1 frequency bins
    FFTW(complex) * r_spec;      // circulant: FFT of every r_b [nb, bins]
    FFTW(plan) fft, ifft;        // circulant: real-to-complex and back, length D
} F(FeatureMap);

int F(fmap_width)(const OpShape *s);
int F(fmap_check)(const OpShape *s, char *err, size_t errlen);  // the map fits this shape
int F(fmap_params)(const OpShape *s, OpParam *out);  // the map's parameters, in input order
void F(fmap_init_param)(const OpShape *s, int index, uint64_t key, real *w);
// Binds the parameters and, for the circulant map, plans the FFTs (call outside parallel code).
F(FeatureMap) F(fmap_open)(const OpShape *s, const real *const *params);
void F(fmap_close)(F(FeatureMap) * fm);
// phi [T, m] of the rows x_t (stride ldx) at positions t = 0..T-1 of one head.
void F(fmap_forward)(const F(FeatureMap) * fm, int T, const real *x, int ldx, real *phi);
// dx += the gradient through phi; the trainable map parameters' gradient is added to
// dparam (fmap_grad_size elements; NULL when there is none).
void F(fmap_backward)(const F(FeatureMap) * fm, int T, const real *x, int ldx, const real *phi,
                      const real *dphi, real *dx, int lddx, real *dparam);
size_t F(fmap_grad_size)(const F(FeatureMap) * fm);
// Sums n per-(batch, head) partial gradients in a fixed order (bitwise reproducible for any
// thread count) into the map's parameter gradients.
void F(fmap_grad_reduce)(const F(FeatureMap) * fm, const real *partials, int n,
                         real *const *dfmap_params);

// Wall time of the map alone on every (batch, head) of q|k|v, in milliseconds.
double F(fmap_time_ms)(const OpShape *s, const real *qkv_btc3, const real *const *fmap_params);

// n x k (k <= n) with orthonormal columns, from the Gram-Schmidt of a Gaussian matrix drawn
// from stream `key`; row stride ldw.
void F(orthonormal_columns)(int n, int k, uint64_t key, real *w, int ldw);

// ---- pieces one op of the family borrows from another ---------------------------------------
// The dense state is the baseline of an HSS one: the linear op reports, where the HSS options
// fit its shape, how much of each off-diagonal block the rank would keep.
int F(attention_hss_check)(const OpShape *s, char *err, size_t errlen);
// The effective rank of a state S [rows, cols] (double, row-major): exp of the entropy of its
// normalised singular values p_i = sigma_i / sum_j sigma_j (Roy & Vetterli 2007), between 1
// (rank one) and min(rows, cols) (all singular values equal); 0 for S = 0, NAN when the
// eigensolver fails.
double F(state_effective_rank)(const double *S, int rows, int cols);
// The same over every (batch, head) dense final state S_T = sum_t phi(k_t) v_t^T, averaged.
double F(linear_state_erank)(const OpShape *s, const real *qkv_btc3,
                             const real *const *fmap_params);
int F(hss_offdiag_energy)(const OpShape *s, const real *qkv_btc3, const real *const *fmap_params,
                          OpAux *out);

// ---- the family's explicit oracles (linear_reference.c, double only) -------------------------
#ifdef MT_DOUBLE
void ref_circulant_matrix(int m, int D, const double *r, const double *sg, double *W);
void ref_phi(const OpShape *s, const double *W, const double *x, double *phi);
double *ref_dense_projection(const OpShape *s, const double *const *fparams);
void ref_linear_attention(const OpShape *s, const double *qkv, const double *const *fparams,
                          const double *lam_pre_bthl, const double *lam_bias_hl, int causal,
                          double *out);
void ref_hss_project(const OpShape *s, const double *U, const double *V, const double *S,
                     double *PS);
void ref_hss_attention(const OpShape *s, const double *qkv, const double *U, const double *V,
                       const double *const *fparams, double *out);
#endif
