// Feature maps phi of the linear-attention family, one head at a time (mixers.md sections
// 2-5): elu+1, relu, FAVOR+ positive orthogonal random features, circulant FAVOR+ (the
// projection C(r) diag(s) applied by FFTW) and the cosFormer position re-weighting.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rng.h"
#include "linear_core.h"
#include "vexp.h"

// x / max(|x|, eps) as torch.nn.functional.normalize: an all-zero row stays finite.
#define QK_NORM_EPS 1e-6
#define PI 3.14159265358979323846

int F(fmap_width)(const OpShape *s) {
    return fmap_width_of(s);
}

// cosFormer's weight cos(pi/2 (t - s) / M) turns negative once t - s > M: M must cover the
// sequence (mixers.md section 5).
int F(fmap_check)(const OpShape *s, char *err, size_t errlen) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    if (lo.feature_map == FEATURE_COSFORMER && fmap_max_len(s) < s->pos0 + s->T) {
        snprintf(err, errlen,
                 "cosformer features need mixer.max_len (%d) >= the sequence length (%d): "
                 "cos(pi/2 (t-s)/M) turns negative past M",
                 fmap_max_len(s), s->pos0 + s->T);
        return -1;
    }
    return 0;
}

// The projection is shared by the heads of a layer (as in Performer). The circulant signs s
// stay fixed (the learned r is trained against them); its r is not weight-decayed, because
// decay would shrink every exponent and flatten the kernel [project-defined].
int F(fmap_params)(const OpShape *s, OpParam *out) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int D = s->C / s->H, m = lo.n_features;
    if (lo.feature_map == FEATURE_FAVOR) {
        out[0] =
            (OpParam){.name = "favor_proj", .rows = m, .cols = D, .init = INIT_CUSTOM, .redraw = 1};
        return 1;
    }
    if (lo.feature_map == FEATURE_CIRCULANT) {
        int nb = circ_blocks(m, D);
        out[0] =
            (OpParam){.name = "circ_r", .rows = nb, .cols = D, .init = INIT_CUSTOM, .trainable = 1};
        out[1] = (OpParam){.name = "circ_s", .rows = nb, .cols = D, .init = INIT_CUSTOM};
        return 2;
    }
    return 0;
}

void F(orthonormal_columns)(int n, int k, uint64_t key, real *w, int ldw) {
    double *a = malloc(sizeof(double) * (size_t)n * k);  // column j at a + j n
    for (size_t i = 0; i < (size_t)n * k; i++) a[i] = rng_normal(key, i);
    for (int j = 0; j < k; j++) {
        double *cj = a + (size_t)j * n;
        for (int pass = 0; pass < 2; pass++)  // Gram-Schmidt twice is orthogonal to rounding
            for (int i = 0; i < j; i++) {
                const double *ci = a + (size_t)i * n;
                double d = 0;
                for (int r = 0; r < n; r++) d += ci[r] * cj[r];
                for (int r = 0; r < n; r++) cj[r] -= d * ci[r];
            }
        double nrm = 0;
        for (int r = 0; r < n; r++) nrm += cj[r] * cj[r];
        nrm = sqrt(nrm);
        for (int r = 0; r < n; r++) cj[r] /= nrm, w[(size_t)r * ldw + j] = (real)cj[r];
    }
    free(a);
}

void F(fmap_init_param)(const OpShape *s, int index, uint64_t key, real *w) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int D = s->C / s->H, m = lo.n_features;
    if (lo.feature_map == FEATURE_FAVOR) {
        // Orthogonal random features: blocks of D orthonormal rows, row i rescaled by the norm
        // of its own N(0, I_D) draw (chi-distributed), so every row is marginally N(0, I) and
        // the estimate of exp(x.y) stays unbiased (Choromanski et al. 2021, scaling = 0).
        real *q = malloc(sizeof(real) * (size_t)D * D);
        for (int b0 = 0; b0 < m; b0 += D) {
            F(orthonormal_columns)(D, D, rng_key(key, 1, (uint64_t)b0, 0), q, D);
            for (int i = 0; i < D && b0 + i < m; i++) {
                uint64_t gk = rng_key(key, 2, (uint64_t)(b0 + i), 0);
                double nrm2 = 0;
                for (int j = 0; j < D; j++) nrm2 += pow(rng_normal(gk, (uint64_t)j), 2);
                for (int j = 0; j < D; j++)
                    w[(size_t)(b0 + i) * D + j] = (real)(q[(size_t)j * D + i] * sqrt(nrm2));
            }
        }
        free(q);
    } else if (lo.feature_map == FEATURE_CIRCULANT) {
        // r ~ N(0, I), s Rademacher: each row of C(r) diag(s) is then marginally N(0, I), as in
        // circulant binary embedding (Yu et al. 2014).
        size_t n = (size_t)circ_blocks(m, D) * D;
        for (size_t i = 0; i < n; i++)
            w[i] = index == 0 ? (real)rng_normal(key, i) : (rng_below(key, i, 2) ? 1 : -1);
    }
}

F(FeatureMap) F(fmap_open)(const OpShape *s, const real *const *params) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    F(FeatureMap)
    fm = {.kind = lo.feature_map, .D = s->C / s->H, .m = F(fmap_width)(s), .qk_norm = lo.qk_norm};
    // Performer's data normaliser d^(-1/4) on q and k, so phi(q).phi(k) estimates
    // exp(q.k / sqrt(d)), the softmax kernel; kept after the L2 normalisation [project-defined].
    fm.scale = (real)pow(fm.D, -0.25);
    fm.max_len = (real)fmap_max_len(s);
    fm.pos0 = s->pos0;
    if (fm.kind == FEATURE_FAVOR) fm.proj_md = params[0];
    if (fm.kind != FEATURE_CIRCULANT) return fm;
    int D = fm.D;
    fm.r_bd = params[0], fm.sign_bd = params[1];
    fm.nb = circ_blocks(fm.m, D), fm.bins = D / 2 + 1;
    fm.r_spec = malloc(sizeof(FFTW(complex)) * (size_t)fm.nb * fm.bins);
    real *row = malloc(sizeof(real) * D);
    // FFTW's planner is not thread-safe (its execute functions are); unaligned plans accept
    // any buffer in the new-array execute calls made from the parallel loops.
#pragma omp critical(fftw_planner)
    {
        fm.fft = FFTW(plan_dft_r2c_1d)(D, row, fm.r_spec, FFTW_ESTIMATE | FFTW_UNALIGNED);
        fm.ifft = FFTW(plan_dft_c2r_1d)(D, fm.r_spec, row, FFTW_ESTIMATE | FFTW_UNALIGNED);
    }
    for (int b = 0; b < fm.nb; b++) {
        memcpy(row, fm.r_bd + (size_t)b * D, sizeof(real) * D);
        FFTW(execute_dft_r2c)(fm.fft, row, fm.r_spec + (size_t)b * fm.bins);
    }
    free(row);
    return fm;
}

void F(fmap_close)(F(FeatureMap) * fm) {
    if (fm->kind != FEATURE_CIRCULANT) return;
#pragma omp critical(fftw_planner)
    {
        FFTW(destroy_plan)(fm->fft);
        FFTW(destroy_plan)(fm->ifft);
    }
    free(fm->r_spec);
}

// The stacked circulant matrix has nb D rows; the first nb D - m rows of the last block are
// dropped (mixers.md section 4), so row i of block b is feature b D + i - first_row(b).
static int first_row(const F(FeatureMap) * fm, int b) {
    return b == fm->nb - 1 ? fm->nb * fm->D - fm->m : 0;
}

// Scratch of the circulant transforms of one row.
typedef struct {
    real *u, *y;                   // [D]
    FFTW(complex) * spec, *spec2;  // [bins]
} CircScratch;

static CircScratch circ_scratch(const F(FeatureMap) * fm) {
    CircScratch c = {malloc(sizeof(real) * fm->D), malloc(sizeof(real) * fm->D),
                     malloc(sizeof(FFTW(complex)) * fm->bins),
                     malloc(sizeof(FFTW(complex)) * fm->bins)};
    return c;
}

static void circ_scratch_free(CircScratch *c) {
    free(c->u), free(c->y), free(c->spec), free(c->spec2);
}

// proj[m] = W xt with W = stacked C(r_b) diag(s_b): with C[i][j] = r[(j - i) mod D] (first-row
// convention), C(r) u = IFFT(conj(FFT(r)) (.) FFT(u)) (the conj is what makes it the first row).
static void circ_project(const F(FeatureMap) * fm, const real *xt, real *proj, CircScratch *c) {
    int D = fm->D;
    for (int b = 0; b < fm->nb; b++) {
        const real *sg = fm->sign_bd + (size_t)b * D;
        const FFTW(complex) *rs = fm->r_spec + (size_t)b * fm->bins;
        for (int i = 0; i < D; i++) c->u[i] = sg[i] * xt[i];
        FFTW(execute_dft_r2c)(fm->fft, c->u, c->spec);
        for (int k = 0; k < fm->bins; k++) c->spec[k] *= conj(rs[k]);
        FFTW(execute_dft_c2r)(fm->ifft, c->spec, c->y);  // unnormalised: D times the IFFT
        for (int i = first_row(fm, b); i < D; i++) proj[b * D + i - first_row(fm, b)] = c->y[i] / D;
    }
}

// xt = scale * x (L2-normalised first when qk_norm) and half its squared norm.
static void rf_inputs(const F(FeatureMap) * fm, int T, const real *x, int ldx, real *xt,
                      real *half_sq) {
    int D = fm->D;
    for (int t = 0; t < T; t++) {
        const real *xr = x + (size_t)t * ldx;
        real *o = xt + (size_t)t * D, mul = fm->scale, sq = 0;
        if (fm->qk_norm) {
            real n2 = 0;
            for (int i = 0; i < D; i++) n2 += xr[i] * xr[i];
            mul /= fmax(sqrt(n2), (real)QK_NORM_EPS);
        }
        for (int i = 0; i < D; i++) o[i] = xr[i] * mul, sq += o[i] * o[i];
        half_sq[t] = sq / 2;
    }
}

static real cos_angle(const F(FeatureMap) * fm, int t) {
    // a_i = pi i / (2M), i = t + 1 (1-based), t counted from the sequence's start
    return (real)(PI / 2) * (t + fm->pos0 + 1) / fm->max_len;
}

void F(fmap_forward)(const F(FeatureMap) * fm, int T, const real *x, int ldx, real *phi) {
    int D = fm->D, m = fm->m;
    if (fm->kind == FEATURE_ELU1 || fm->kind == FEATURE_RELU || fm->kind == FEATURE_COSFORMER) {
        for (int t = 0; t < T; t++) {
            const real *xr = x + (size_t)t * ldx;
            real *o = phi + (size_t)t * m;
            if (fm->kind == FEATURE_ELU1) {
                // exp of min(x, 0) on every lane, so the loop has no call in a branch and
                // vectorises (it was 7% of an E029 linear step as a scalar loop).
                for (int i = 0; i < D; i++) {
                    real xi = xr[i], e = vexp(xi < 0 ? xi : 0);
                    o[i] = xi > 0 ? xi + 1 : e;
                }
            } else if (fm->kind == FEATURE_RELU) {
                for (int i = 0; i < D; i++) o[i] = xr[i] > 0 ? xr[i] : 0;
            } else {  // cos(a_t - a_s) = cos a_t cos a_s + sin a_t sin a_s: 2D features
                real a = cos_angle(fm, t), ca = cos(a), sa = sin(a);
                for (int i = 0; i < D; i++) {
                    real r = xr[i] > 0 ? xr[i] : 0;
                    o[i] = r * ca, o[D + i] = r * sa;
                }
            }
        }
        return;
    }
    // Positive random features phi_i(x) = exp(w_i . x - |x|^2 / 2) / sqrt(m), without any
    // max subtraction (a per-key max would change the kernel; E029).
    real *xt = malloc(sizeof(real) * (size_t)T * D), *half_sq = malloc(sizeof(real) * T);
    rf_inputs(fm, T, x, ldx, xt, half_sq);
    if (fm->kind == FEATURE_FAVOR) {
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, m, D, 1, xt, D, fm->proj_md, D, 0,
                   phi, m);
    } else {
        CircScratch c = circ_scratch(fm);
        for (int t = 0; t < T; t++) circ_project(fm, xt + (size_t)t * D, phi + (size_t)t * m, &c);
        circ_scratch_free(&c);
    }
    real inv_sqrt_m = 1 / sqrt((real)m);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < m; i++)
            phi[(size_t)t * m + i] = vexp(phi[(size_t)t * m + i] - half_sq[t]) * inv_sqrt_m;
    free(xt);
    free(half_sq);
}

// dxt[D] += W^T g for one row (g = dphi (.) phi over the m features). With the first-row
// convention C(r)^T g = IFFT(FFT(r) (.) FFT(g)); and dr_b = IFFT(conj(FFT(g)) (.) FFT(s_b xt)),
// accumulated as spectra in dr_spec [nb, bins] (one inverse FFT per block per call).
static void circ_backward_row(const F(FeatureMap) * fm, const real *xt, const real *g, real *dxt,
                              FFTW(complex) * dr_spec, CircScratch *c) {
    int D = fm->D;
    for (int b = 0; b < fm->nb; b++) {
        const real *sg = fm->sign_bd + (size_t)b * D;
        const FFTW(complex) *rs = fm->r_spec + (size_t)b * fm->bins;
        int r0 = first_row(fm, b);
        for (int i = 0; i < D; i++) c->u[i] = i < r0 ? 0 : g[b * D + i - r0] / D;
        FFTW(execute_dft_r2c)(fm->fft, c->u, c->spec);  // FFT(g) / D
        if (dr_spec) {
            for (int i = 0; i < D; i++) c->u[i] = sg[i] * xt[i];
            FFTW(execute_dft_r2c)(fm->fft, c->u, c->spec2);
            FFTW(complex) *acc = dr_spec + (size_t)b * fm->bins;
            for (int k = 0; k < fm->bins; k++) acc[k] += conj(c->spec[k]) * c->spec2[k];
        }
        for (int k = 0; k < fm->bins; k++) c->spec[k] *= rs[k];
        FFTW(execute_dft_c2r)(fm->ifft, c->spec, c->y);
        for (int i = 0; i < D; i++) dxt[i] += sg[i] * c->y[i];
    }
}

void F(fmap_backward)(const F(FeatureMap) * fm, int T, const real *x, int ldx, const real *phi,
                      const real *dphi, real *dx, int lddx, real *dparam) {
    int D = fm->D, m = fm->m;
    if (fm->kind == FEATURE_ELU1 || fm->kind == FEATURE_RELU || fm->kind == FEATURE_COSFORMER) {
        for (int t = 0; t < T; t++) {
            const real *xr = x + (size_t)t * ldx, *p = phi + (size_t)t * m;
            const real *g = dphi + (size_t)t * m;
            real *dxr = dx + (size_t)t * lddx;
            if (fm->kind == FEATURE_ELU1) {
                for (int i = 0; i < D; i++) dxr[i] += g[i] * (xr[i] > 0 ? 1 : p[i]);
            } else if (fm->kind == FEATURE_RELU) {
                for (int i = 0; i < D; i++) dxr[i] += xr[i] > 0 ? g[i] : 0;
            } else {
                real a = cos_angle(fm, t), ca = cos(a), sa = sin(a);
                for (int i = 0; i < D; i++) dxr[i] += xr[i] > 0 ? ca * g[i] + sa * g[D + i] : 0;
            }
        }
        return;
    }
    // d phi_i / d xt = phi_i (w_i - xt): dxt = W^T (dphi (.) phi) - (dphi . phi) xt.
    real *xt = malloc(sizeof(real) * (size_t)T * D), *half_sq = malloc(sizeof(real) * T);
    real *g = malloc(sizeof(real) * (size_t)T * m), *dxt = calloc((size_t)T * D, sizeof(real));
    rf_inputs(fm, T, x, ldx, xt, half_sq);
    for (size_t i = 0; i < (size_t)T * m; i++) g[i] = dphi[i] * phi[i];
    if (fm->kind == FEATURE_FAVOR) {
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, m, 1, g, m, fm->proj_md, D, 0,
                   dxt, D);
    } else {
        CircScratch c = circ_scratch(fm);
        FFTW(complex) *dr_spec =
            dparam ? calloc((size_t)fm->nb * fm->bins, sizeof(*dr_spec)) : NULL;
        for (int t = 0; t < T; t++)
            circ_backward_row(fm, xt + (size_t)t * D, g + (size_t)t * m, dxt + (size_t)t * D,
                              dr_spec, &c);
        if (dparam) {
            // conj(G) X is the spectrum of a real signal: the half-spectrum inverse is exact.
            for (int b = 0; b < fm->nb; b++) {
                FFTW(execute_dft_c2r)(fm->ifft, dr_spec + (size_t)b * fm->bins, c.y);
                for (int i = 0; i < D; i++) dparam[(size_t)b * D + i] += c.y[i];
            }
            free(dr_spec);
        }
        circ_scratch_free(&c);
    }
    for (int t = 0; t < T; t++) {
        const real *xr = x + (size_t)t * ldx, *xtr = xt + (size_t)t * D;
        real *d = dxt + (size_t)t * D, *dxr = dx + (size_t)t * lddx, gsum = 0;
        for (int i = 0; i < m; i++) gsum += g[(size_t)t * m + i];
        for (int i = 0; i < D; i++) d[i] = (d[i] - gsum * xtr[i]) * fm->scale;
        if (!fm->qk_norm) {
            for (int i = 0; i < D; i++) dxr[i] += d[i];
            continue;
        }
        // through u / max(|u|, eps): (d - (d . uhat) uhat) / |u| above eps, d / eps below
        real n2 = 0, dot = 0;
        for (int i = 0; i < D; i++) n2 += xr[i] * xr[i];
        real n = sqrt(n2);
        if (n <= (real)QK_NORM_EPS) {
            for (int i = 0; i < D; i++) dxr[i] += d[i] / (real)QK_NORM_EPS;
            continue;
        }
        for (int i = 0; i < D; i++) dot += d[i] * xr[i] / n;
        for (int i = 0; i < D; i++) dxr[i] += (d[i] - dot * xr[i] / n) / n;
    }
    free(xt), free(half_sq), free(g), free(dxt);
}

size_t F(fmap_grad_size)(const F(FeatureMap) * fm) {
    return fm->kind == FEATURE_CIRCULANT ? (size_t)fm->nb * fm->D : 0;
}

void F(fmap_grad_reduce)(const F(FeatureMap) * fm, const real *partials, int n,
                         real *const *dfmap_params) {
    size_t len = F(fmap_grad_size)(fm);
    if (!len || !dfmap_params[0]) return;
    for (int j = 0; j < n; j++)
        for (size_t i = 0; i < len; i++) dfmap_params[0][i] += partials[(size_t)j * len + i];
}

// ---- the feature_map op: the maps alone (their gradient check, and their time) ---------

void F(feature_map_forward)(real *phiq_bhtm, real *phik_bhtm, const real *qkv_btc3,
                            const real *const *fmap_params, const OpShape *s) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, m = F(fmap_width)(s);
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        const real *head = qkv_btc3 + (size_t)(bh / H) * T * 3 * C + (bh % H) * D;
        F(fmap_forward)(&fm, T, head, 3 * C, phiq_bhtm + (size_t)bh * T * m);
        F(fmap_forward)(&fm, T, head + C, 3 * C, phik_bhtm + (size_t)bh * T * m);
    }
    F(fmap_close)(&fm);
}

void F(feature_map_backward)(real *dqkv_btc3, real *const *dfmap_params, const real *dphiq_bhtm,
                             const real *dphik_bhtm, const real *qkv_btc3,
                             const real *const *fmap_params, const OpShape *s) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, m = F(fmap_width)(s);
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
#pragma omp parallel
    {
        real *phi = malloc(sizeof(real) * (size_t)T * m);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            size_t off = (size_t)(bh / H) * T * 3 * C + (bh % H) * D;
            real *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            for (int part = 0; part < 2; part++) {  // q, then k
                const real *x = qkv_btc3 + off + part * C;
                const real *dphi = (part ? dphik_bhtm : dphiq_bhtm) + (size_t)bh * T * m;
                F(fmap_forward)(&fm, T, x, 3 * C, phi);
                F(fmap_backward)
                (&fm, T, x, 3 * C, phi, dphi, dqkv_btc3 + off + part * C, 3 * C, dparam);
            }
        }
        free(phi);
    }
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap_params);
    free(dparam_bh);
    F(fmap_close)(&fm);
}

double F(fmap_time_ms)(const OpShape *s, const real *qkv_btc3, const real *const *fmap_params) {
    size_t n = (size_t)s->B * s->H * s->T * F(fmap_width)(s);
    real *phiq = malloc(sizeof(real) * n), *phik = malloc(sizeof(real) * n);
    double t0 = omp_get_wtime();
    F(feature_map_forward)(phiq, phik, qkv_btc3, fmap_params, s);
    double ms = (omp_get_wtime() - t0) * 1e3;
    free(phiq), free(phik);
    return ms;
}

// ---- the feature_map op: the maps alone, for the gradient and parity suites and timing ------

static void feature_map_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, 0, p, F(fmap_params)(s, p));
    out[0] = out[1] = (size_t)s->B * s->H * s->T * F(fmap_width)(s);
    *saved = 0;
}
static void feature_map_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(feature_map_forward)(out[0], out[1], in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void feature_map_bwd(const OpShape *s, const real *const *in, const real *const *out,
                            const real *sv, const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(feature_map_backward)
    (din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], dout[1], in[CORE_IN_QKV], in + CORE_IN_PARAMS,
     s);
}

static const OpOption fmap_options[] = {LINEAR_OPTION_SPECS(0), {NULL}};

// clang-format off
const F(OpDef) F(op_feature_map) = {
    .name = "feature_map", .n_in = CORE_IN_PARAMS + 2, .n_out = 2,
    .sizes = feature_map_sizes, .forward = feature_map_fwd, .backward = feature_map_bwd,
    .params = F(fmap_params), .init_param = F(fmap_init_param), .options = fmap_options,
    .n_tests = 5,
    .tests = {{{.B = 2, .T = 5, .C = 8, .H = 2}, "chunk=3"},
              {{.B = 2, .T = 5, .C = 8, .H = 2}, "chunk=3 feature_map=cosformer max_len=9"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "feature_map=favor features=6"},
              {{.B = 2, .T = 7, .C = 10, .H = 2}, "feature_map=circulant features=7"},
              {{.B = 2, .T = 7, .C = 8, .H = 2}, "feature_map=circulant features=8 qk_norm=false"}}};
// clang-format on
