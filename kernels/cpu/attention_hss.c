// Linear attention with an HSS (hierarchically semi-separable) state (mixers.md section 8,
// [project-defined]). The m x D state S_t = sum_{s<=t} phi(k_s) v_s^T is replaced by
//   P(S) = blockdiag(leaf blocks of S)
//          + sum over sibling pairs (I, J') of U_I U_I^T S[I,J'] V_J' V_J'^T
// on a binary tree of depth J over the rows (features) and the columns (values): the leaves
// are dense (m / 2^J x D / 2^J), every off-diagonal sibling block is held in the rank-r
// coordinates B_IJ' = U_I^T S[I,J'] V_J' (r x r). P is linear, so each block is an ordinary
// causal linear attention in its own coordinates: leaves on (phi(q)[I], phi(k)[I], v[J]),
// off-diagonal blocks on (U_I^T phi(q)[I], U_I^T phi(k)[I], V_J'^T v[J']) lifted back by V_J'.
// The normaliser phi(q_t) . sum_s phi(k_s) stays dense. Bases are fixed orthonormal buffers
// (random QR), so P is an orthogonal projection and full rank gives the dense state exactly.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rng.h"
#include "linear_core.h"

int F(attention_hss_check)(const OpShape *s, char *err, size_t errlen) {
    if (F(fmap_check)(s, err, errlen)) return -1;
    const HssOpts ho = OPT_OF(HssOpts, s);
    int D = s->C / s->H, m = F(fmap_width)(s), leaf = ho.hss_leaf, J = 0;
    while ((D >> J) > leaf) J++;
    if (leaf < 1 || leaf >= D || D % leaf || (D >> J) != leaf || (D >> J << J) != D ||
        m % (1 << J)) {
        snprintf(err, errlen,
                 "hss needs mixer.hss_leaf = head dim / 2^J for some J >= 1 (head dim %d) and a "
                 "feature width divisible by 2^J (%d); got mixer.hss_leaf = %d",
                 D, m, leaf);
        return -1;
    }
    if (ho.hss_rank < 1) {
        snprintf(err, errlen, "hss needs mixer.hss_rank >= 1");
        return -1;
    }
    return 0;
}

int F(attention_hss_params)(const OpShape *s, OpParam *out) {
    HssTree t = hss_tree_of(s);
    out[0] = (OpParam){.name = "hss_u", .rows = t.m, .cols = t.Ru, .init = INIT_CUSTOM};
    out[1] = (OpParam){.name = "hss_v", .rows = t.D, .cols = t.Rv, .init = INIT_CUSTOM};
    return 2 + F(fmap_params)(s, out + 2);
}

// Every node of every depth gets its own orthonormal basis (not nested through transfer
// matrices: the bases are fixed buffers, not per-sequence state, so their storage does not
// enter the state memory) [project-defined].
void F(attention_hss_init_param)(const OpShape *s, int index, uint64_t key, real *w) {
    if (index >= 2) {
        F(fmap_init_param)(s, index - 2, key, w);
        return;
    }
    HssTree t = hss_tree_of(s);
    int n = index ? t.D : t.m, ld = index ? t.Rv : t.Ru;
    for (int l = 1; l <= t.J; l++)
        for (int k = 0; k < (1 << l); k++) {
            int rows = n >> l, r = index ? t.rv[l] : t.ru[l], c0 = index ? t.cv[l] : t.cu[l];
            F(orthonormal_columns)
            (rows, r, rng_key(key, (uint64_t)l, (uint64_t)k, 0), w + (size_t)k * rows * ld + c0,
             ld);
        }
}

// The coordinates of one off-diagonal block (row node k at depth l, column node k ^ 1):
// pt = phi(q)[I] U_I, ft = phi(k)[I] U_I [T, ru], vt = v[J'] V_J' [T, rv].
typedef struct {
    int rows0, cols0, mI, dJ, ru, rv;
    const real *u, *v;  // U_I (stride Ru), V_J' (stride Rv)
} Block;

static Block block_of(const HssTree *t, const real *u_basis, const real *v_basis, int l, int k) {
    Block b = {.mI = t->m >> l, .dJ = t->D >> l, .ru = t->ru[l], .rv = t->rv[l]};
    b.rows0 = k * b.mI, b.cols0 = (k ^ 1) * b.dJ;
    if (u_basis) b.u = u_basis + (size_t)b.rows0 * t->Ru + t->cu[l];
    if (v_basis) b.v = v_basis + (size_t)b.cols0 * t->Rv + t->cv[l];
    return b;
}

static void project(const HssTree *t, const Block *b, int T, const real *p, const real *f,
                    const real *v, int ldv, real *pt, real *ft, real *vt) {
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, b->ru, b->mI, 1, p + b->rows0, t->m,
               b->u, t->Ru, 0, pt, b->ru);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, b->ru, b->mI, 1, f + b->rows0, t->m,
               b->u, t->Ru, 0, ft, b->ru);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, b->rv, b->dJ, 1, v + b->cols0, ldv,
               b->v, t->Rv, 0, vt, b->rv);
}

// Per-head working set: features, their gradients, the dense readout (or its gradient), the
// running normaliser, and one block's coordinates with their gradients.
typedef struct {
    real *p, *f, *dp, *df, *num, *z, *pt, *ft, *vt, *y, *dpt, *dft, *dvt;
} Work;

static Work work_new(const HssTree *t, int T) {
    size_t tm = sizeof(real) * T * t->m, tr = sizeof(real) * T * t->rank;  // ranks <= rank
    Work w = {.p = malloc(tm),
              .f = malloc(tm),
              .dp = malloc(tm),
              .df = malloc(tm),
              .num = malloc(sizeof(real) * T * t->D),
              .z = malloc(sizeof(real) * t->m),
              .pt = malloc(tr),
              .ft = malloc(tr),
              .vt = malloc(tr),
              .y = malloc(tr),
              .dpt = malloc(tr),
              .dft = malloc(tr),
              .dvt = malloc(tr)};
    return w;
}

static void work_free(Work *w) {
    real *all[] = {w->p,  w->f,  w->dp, w->df,  w->num, w->z,  w->pt,
                   w->ft, w->vt, w->y,  w->dpt, w->dft, w->dvt};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) free(all[i]);
}

void F(attention_hss_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                              const real *u_basis, const real *v_basis,
                              const real *const *fmap_params, const OpShape *s) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = lo.chunk;
    HssTree t = hss_tree_of(s);
    int m = t.m, mJ = m >> t.J, dJ = D >> t.J;
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
#pragma omp parallel
    {
        Work w = work_new(&t, T);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            const real *head = qkv_btc3 + (size_t)b * T * 3 * C + h * D, *v = head + 2 * C;
            F(fmap_forward)(&fm, T, head, 3 * C, w.p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, w.f);
            for (int i = 0; i < (1 << t.J); i++)  // leaves cover every column: overwrite
                F(la_forward)
            (T, mJ, dJ, L, w.p + i * mJ, m, w.f + i * mJ, m, v + i * dJ, 3 * C, w.num + i * dJ, D);
            for (int l = 1; l <= t.J; l++)
                for (int k = 0; k < (1 << l); k++) {
                    Block bl = block_of(&t, u_basis, v_basis, l, k);
                    project(&t, &bl, T, w.p, w.f, v, 3 * C, w.pt, w.ft, w.vt);
                    F(la_forward)
                    (T, bl.ru, bl.rv, L, w.pt, bl.ru, w.ft, bl.ru, w.vt, bl.rv, w.y, bl.rv);
                    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, bl.dJ, bl.rv, 1, w.y,
                               bl.rv, bl.v, t.Rv, 1, w.num + bl.cols0, D);
                }
            // the dense normaliser: a running sum of m numbers, not worth a chunked form
            real *z = w.z;
            memset(z, 0, sizeof(real) * m);
            for (int tt = 0; tt < T; tt++) {
                real den = 1;
                if (lo.normalize) {
                    den = (real)lo.eps;
                    for (int i = 0; i < m; i++) {
                        z[i] += w.f[(size_t)tt * m + i];
                        den += w.p[(size_t)tt * m + i] * z[i];
                    }
                    den_bht[(size_t)bh * T + tt] = den;
                }
                real *o = out_btc + ((size_t)b * T + tt) * C + h * D;
                for (int j = 0; j < D; j++) o[j] = w.num[(size_t)tt * D + j] / den;
            }
        }
        work_free(&w);
    }
    F(fmap_close)(&fm);
}

void F(attention_hss_backward)(real *dqkv_btc3, real *const *dfmap_params, const real *dout_btc,
                               const real *out_btc, const real *den_bht, const real *qkv_btc3,
                               const real *u_basis, const real *v_basis,
                               const real *const *fmap_params, const OpShape *s) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, L = lo.chunk;
    HssTree t = hss_tree_of(s);
    int m = t.m, mJ = m >> t.J, dJ = D >> t.J;
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
#pragma omp parallel
    {
        Work w = work_new(&t, T);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * 3 * C + h * D;
            const real *head = qkv_btc3 + off, *v = head + 2 * C;
            real *dhead = dqkv_btc3 + off, *dv = dhead + 2 * C, *dn = w.num;
            F(fmap_forward)(&fm, T, head, 3 * C, w.p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, w.f);
            memset(w.dp, 0, sizeof(real) * (size_t)T * m);
            memset(w.df, 0, sizeof(real) * (size_t)T * m);
            memset(w.z, 0, sizeof(real) * m);
            // o = n / den: dn = do / den; dden = -(do . o) / den reaches p_t through z_t and
            // every f_s (s <= t) through p_t (a reverse running sum).
            for (int tt = 0; tt < T; tt++) {
                const real *g = dout_btc + ((size_t)b * T + tt) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + tt) * C + h * D;
                real den = lo.normalize ? den_bht[(size_t)bh * T + tt] : 1, dot = 0;
                for (int j = 0; j < D; j++) dn[(size_t)tt * D + j] = g[j] / den, dot += g[j] * o[j];
                if (!lo.normalize) continue;
                for (int i = 0; i < m; i++) {
                    w.z[i] += w.f[(size_t)tt * m + i];
                    w.dp[(size_t)tt * m + i] -= dot / den * w.z[i];
                }
            }
            if (lo.normalize) {
                memset(w.z, 0, sizeof(real) * m);
                for (int tt = T - 1; tt >= 0; tt--) {
                    const real *g = dout_btc + ((size_t)b * T + tt) * C + h * D;
                    const real *o = out_btc + ((size_t)b * T + tt) * C + h * D;
                    real den = den_bht[(size_t)bh * T + tt], dot = 0;
                    for (int j = 0; j < D; j++) dot += g[j] * o[j];
                    for (int i = 0; i < m; i++) {
                        w.z[i] -= dot / den * w.p[(size_t)tt * m + i];
                        w.df[(size_t)tt * m + i] += w.z[i];
                    }
                }
            }
            for (int i = 0; i < (1 << t.J); i++) F(la_backward)
            (T, mJ, dJ, L, w.p + i * mJ, m, w.f + i * mJ, m, v + i * dJ, 3 * C, dn + i * dJ, D,
             w.dp + i * mJ, m, w.df + i * mJ, m, dv + i * dJ, 3 * C);
            for (int l = 1; l <= t.J; l++)
                for (int k = 0; k < (1 << l); k++) {
                    Block bl = block_of(&t, u_basis, v_basis, l, k);
                    project(&t, &bl, T, w.p, w.f, v, 3 * C, w.pt, w.ft, w.vt);
                    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, bl.rv, bl.dJ, 1,
                               dn + bl.cols0, D, bl.v, t.Rv, 0, w.y, bl.rv);
                    memset(w.dpt, 0, sizeof(real) * (size_t)T * bl.ru);
                    memset(w.dft, 0, sizeof(real) * (size_t)T * bl.ru);
                    memset(w.dvt, 0, sizeof(real) * (size_t)T * bl.rv);
                    F(la_backward)
                    (T, bl.ru, bl.rv, L, w.pt, bl.ru, w.ft, bl.ru, w.vt, bl.rv, w.y, bl.rv, w.dpt,
                     bl.ru, w.dft, bl.ru, w.dvt, bl.rv);
                    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, bl.mI, bl.ru, 1, w.dpt,
                               bl.ru, bl.u, t.Ru, 1, w.dp + bl.rows0, m);
                    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, bl.mI, bl.ru, 1, w.dft,
                               bl.ru, bl.u, t.Ru, 1, w.df + bl.rows0, m);
                    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, bl.dJ, bl.rv, 1, w.dvt,
                               bl.rv, bl.v, t.Rv, 1, dv + bl.cols0, 3 * C);
                }
            real *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            F(fmap_backward)(&fm, T, head, 3 * C, w.p, w.dp, dhead, 3 * C, dparam);
            F(fmap_backward)(&fm, T, head + C, 3 * C, w.f, w.df, dhead + C, 3 * C, dparam);
        }
        work_free(&w);
    }
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap_params);
    free(dparam_bh);
    F(fmap_close)(&fm);
}

// ---- auxiliary figures (E005) --------------------------------------------------------------

// LAPACK's symmetric eigensolver, from the LAPACK that OpenBLAS carries (Fortran ABI, with the
// hidden lengths of the two character arguments). Eigenvalues come back ascending.
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
            double *work, const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

double F(state_effective_rank)(const double *S, int rows, int cols) {
    // sigma^2 are the eigenvalues of the smaller Gram matrix
    int n = rows < cols ? rows : cols, big = rows < cols ? cols : rows, info, lwork = 3 * n;
    double *gram = malloc(sizeof(double) * ((size_t)n * n + 4 * (size_t)n)), *ev = gram + n * n;
    double *work = ev + n;
    for (int x = 0; x < n; x++)
        for (int y = 0; y < n; y++) {
            double g = 0;
            for (int i = 0; i < big; i++)
                g += rows < cols ? S[(size_t)x * cols + i] * S[(size_t)y * cols + i]
                                 : S[(size_t)i * cols + x] * S[(size_t)i * cols + y];
            gram[x * n + y] = g;
        }
    dsyev_("N", "U", &n, gram, &n, ev, work, &lwork, &info, 1, 1);
    double r = NAN;
    if (!info) {
        double total = 0, h = 0;
        for (int i = 0; i < n; i++) total += sqrt(fmax(ev[i], 0));
        for (int i = 0; i < n && total > 0; i++) {
            double p = sqrt(fmax(ev[i], 0)) / total;
            if (p > 0) h -= p * log(p);
        }
        r = total > 0 ? exp(h) : 0;
    }
    free(gram);
    return r;
}

// The dense final state S_T = sum_t phi(k_t) v_t^T [m, D] of head bh % H of row bh / H
// (f: scratch for the T x m features).
static void dense_final_state(const OpShape *s, F(FeatureMap) * fm, const real *qkv_btc3, int bh,
                              int m, real *f, double *S) {
    int T = s->T, C = s->C, H = s->H, D = C / H;
    const real *head = qkv_btc3 + (size_t)(bh / H) * T * 3 * C + (bh % H) * D;
    F(fmap_forward)(fm, T, head + C, 3 * C, f);
    memset(S, 0, sizeof(double) * (size_t)m * D);
    for (int u = 0; u < T; u++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < D; j++)
                S[i * D + j] += f[(size_t)u * m + i] * head[(size_t)u * 3 * C + 2 * C + j];
}

double F(linear_state_erank)(const OpShape *s, const real *qkv_btc3,
                             const real *const *fmap_params) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H, m = F(fmap_width)(s);
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
    real *f = malloc(sizeof(real) * (size_t)T * m);
    double *S = malloc(sizeof(double) * (size_t)m * D), sum = 0;
    for (int bh = 0; bh < B * H; bh++) {
        dense_final_state(s, &fm, qkv_btc3, bh, m, f, S);
        sum += F(state_effective_rank)(S, m, D);
    }
    free(f), free(S);
    F(fmap_close)(&fm);
    return sum / (B * H);
}

// On the dense final state S_T = sum_t phi(k_t) v_t^T of every (batch, head): for each depth,
// the share of each off-diagonal block's energy its top-r singular values capture
// (sum_{i<=r} sigma_i^2 / sum_i sigma_i^2), averaged over the blocks, sequences and heads.
int F(hss_offdiag_energy)(const OpShape *s, const real *qkv_btc3, const real *const *fmap_params,
                          OpAux *out) {
    int B = s->B, T = s->T, C = s->C, H = s->H, D = C / H;
    HssTree t = hss_tree_of(s);
    int m = t.m;
    F(FeatureMap) fm = F(fmap_open)(s, fmap_params);
    real *f = malloc(sizeof(real) * (size_t)T * m);
    double *S = malloc(sizeof(double) * (size_t)m * D), *gram = malloc(sizeof(double) * D * D);
    double *ev = malloc(sizeof(double) * D), *energy = calloc(t.J + 1, sizeof(double));
    double *work = malloc(sizeof(double) * 3 * D);
    for (int bh = 0; bh < B * H; bh++) {
        dense_final_state(s, &fm, qkv_btc3, bh, m, f, S);
        for (int l = 1; l <= t.J; l++)
            for (int k = 0; k < (1 << l); k++) {
                Block b = block_of(&t, NULL, NULL, l, k);
                for (int x = 0; x < b.dJ; x++)  // gram = S[I,J']^T S[I,J'], eigenvalues sigma^2
                    for (int y = 0; y < b.dJ; y++) {
                        double g = 0;
                        for (int i = 0; i < b.mI; i++)
                            g += S[(b.rows0 + i) * D + b.cols0 + x] *
                                 S[(b.rows0 + i) * D + b.cols0 + y];
                        gram[x * b.dJ + y] = g;
                    }
                int n = b.dJ, lwork = 3 * D, info;
                dsyev_("N", "U", &n, gram, &n, ev, work, &lwork, &info, 1, 1);
                if (info) {  // no convergence: the figure is unknown, not 0
                    energy[l] = NAN;
                    continue;
                }
                double top = 0, all = 0;
                int r = b.ru < b.rv ? b.ru : b.rv;
                for (int i = 0; i < n; i++) all += ev[i], top += i >= n - r ? ev[i] : 0;
                energy[l] += (all > 0 ? top / all : 1) / ((1 << l) * B * H);
            }
    }
    for (int l = 1; l <= t.J; l++) {
        out[l - 1] = (OpAux){.value = energy[l]};
        snprintf(out[l - 1].name, sizeof(out[l - 1].name), "offdiag_energy_depth_%d", l);
    }
    free(f), free(S), free(gram), free(ev), free(energy), free(work);
    F(fmap_close)(&fm);
    return t.J;
}

// The effective rank of the state the HSS form holds, P(S_T) (leaves kept, off-diagonal blocks
// projected on the bases U, V), per (batch, head) averaged: next to the dense state's (linear),
// how much of it the compression keeps.
static double hss_state_erank(const OpShape *s, const real *const *in) {
    int B = s->B, T = s->T, H = s->H, D = s->C / H;
    HssTree t = hss_tree_of(s);
    int m = t.m;
    F(FeatureMap) fm = F(fmap_open)(s, in + CORE_IN_PARAMS + 2);
    real *f = malloc(sizeof(real) * (size_t)T * m);
    double *S = malloc(sizeof(double) * (size_t)m * D), *PS = malloc(sizeof(double) * m * D);
    double *U = malloc(sizeof(double) * (size_t)m * t.Ru), *V = malloc(sizeof(double) * D * t.Rv);
    for (size_t i = 0; i < (size_t)m * t.Ru; i++) U[i] = in[CORE_IN_PARAMS][i];
    for (size_t i = 0; i < (size_t)D * t.Rv; i++) V[i] = in[CORE_IN_PARAMS + 1][i];
    double sum = 0;
    for (int bh = 0; bh < B * H; bh++) {
        dense_final_state(s, &fm, in[CORE_IN_QKV], bh, m, f, S);
        ref_hss_project(s, U, V, S, PS);
        sum += F(state_effective_rank)(PS, m, D);
    }
    free(f), free(S), free(PS), free(U), free(V);
    F(fmap_close)(&fm);
    return sum / (B * H);
}

// Feature-map time; the state memory of the HSS form over the dense one,
// (2^J leaf^2 + sum over depths of 2^l r_u r_v) / (m D) per head; the held state's effective
// rank; the off-diagonal energies.
int F(attention_hss_aux)(const OpShape *s, const real *const *in, OpAux *out) {
    HssTree t = hss_tree_of(s);
    double stored = (double)(1 << t.J) * (t.m >> t.J) * (t.D >> t.J);
    for (int l = 1; l <= t.J; l++) stored += (double)(1 << l) * t.ru[l] * t.rv[l];
    out[0] = (OpAux){.name = "feature_map_ms",
                     .value = F(fmap_time_ms)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS + 2)};
    out[1] = (OpAux){.name = "state_memory_ratio", .value = stored / ((double)t.m * t.D)};
    out[2] = (OpAux){.name = "state_erank", .value = hss_state_erank(s, in)};
    return 3 + F(hss_offdiag_energy)(s, in[CORE_IN_QKV], in + CORE_IN_PARAMS + 2, out + 3);
}

// ---- the row -----------------------------------------------------------------------------------

static void hss_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    OpParam p[OP_MAX_PARAMS];
    op_core_sizes(s, in, out, 0, p, F(attention_hss_params)(s, p));
    *saved = (size_t)s->B * s->H * s->T;
}
static void hss_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_hss_forward)(out[0], sv, in[0], in[2], in[3], in + 4, s);
}
static void hss_bwd(const OpShape *s, const real *const *in, const real *const *out, const real *sv,
                    const real *const *dout, real *const *din) {
    F(attention_hss_backward)(din[0], din + 4, dout[0], out[0], sv, in[0], in[2], in[3], in + 4, s);
}

// Per head and token: the leaves' linear attentions (4 m D / 2^J + in-chunk), and per depth l
// the 2^l off-diagonal blocks (projections into the block coordinates 2 (2 mI ru + dJ rv),
// their r x r attentions, the lift back 2 rv dJ), plus the dense normaliser.
static double hss_flops(const OpShape *s) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    HssTree t = hss_tree_of(s);
    double c = o.chunk < s->T ? o.chunk : s->T, leaves = 1 << t.J;
    double mJ = (double)t.m / leaves, dJ = (double)t.D / leaves;
    double f = leaves * (4 * mJ * dJ + c * (mJ + dJ)) + 4 * t.m + c * (t.m + 1);
    for (int l = 1; l <= t.J; l++) {
        double mI = t.m >> l, dI = t.D >> l, ru = t.ru[l], rv = t.rv[l];
        f += (1 << l) * (2 * (2 * mI * ru + dI * rv) + 4 * ru * rv + c * (ru + rv) + 2 * rv * dI);
    }
    return s->H * f;
}

#ifdef MT_DOUBLE
static int hss_reference(const OpShape *s, const double *const *in, double *out) {
    if (OPT_OF(LinearOpts, s).feature_map == FEATURE_COSFORMER) return -1;  // position-dependent
    ref_hss_attention(s, in[CORE_IN_QKV], in[CORE_IN_PARAMS], in[CORE_IN_PARAMS + 1],
                      in + CORE_IN_PARAMS + 2, out);
    return 0;
}
#else
#define hss_reference NULL
#endif

static const OpOption hss_options[] = {
    LINEAR_OPTION_SPECS(offsetof(HssOpts, lin)),
    {"hss_rank", OPT_INT, "8", NULL, 1, 1 << 16, offsetof(HssOpts, hss_rank), 0,
     "rank r of the off-diagonal blocks of an HSS state"},
    {"hss_leaf", OPT_INT, "16", NULL, 1, 1 << 16, offsetof(HssOpts, hss_leaf), 0,
     "leaf block width of an HSS state (head dim / 2^J: J tree levels)"},
    {NULL}};

// Trees of depth 1-3 (head dim 8, leaves 1-4), ranks below and at full, every kind of map;
// head dim 16 with leaves of 4 at full rank 8 equals the dense state (the reference checks it).
// clang-format off
const F(OpDef) F(op_hss) = {
    .name = "hss", .n_in = CORE_IN_PARAMS + 4, .n_out = 1,
    .sizes = hss_sizes, .forward = hss_fwd, .backward = hss_bwd,
    .params = F(attention_hss_params), .init_param = F(attention_hss_init_param),
    .check = F(attention_hss_check), .aux = F(attention_hss_aux), .options = hss_options,
    .mixer = 1, .help = "linear attention with an HSS state (mixer.hss_rank, mixer.hss_leaf)",
    .flops = hss_flops, .reference = hss_reference,
    .aux_cols = {{"feature_map_ms", AUX_SUM, "feature map ms", 3},
                 {"offdiag_energy_depth", AUX_MEAN, "off-diag top-r energy", 4},
                 {"state_memory_ratio", AUX_LAST, "state memory HSS/dense", 4},
                 {"state_erank", AUX_MEAN, "state eff. rank", 2}},
    .n_tests = 6,
    .tests = {{{.B = 2, .T = 7, .C = 16, .H = 2}, "chunk=3 hss_leaf=2 hss_rank=1"},
              {{.B = 2, .T = 7, .C = 16, .H = 2}, "chunk=3 hss_leaf=4 hss_rank=4 feature_map=relu normalize=false"},
              {{.B = 2, .T = 7, .C = 16, .H = 2}, "chunk=3 hss_leaf=2 hss_rank=2 feature_map=cosformer max_len=7"},
              {{.B = 2, .T = 7, .C = 16, .H = 2}, "chunk=3 hss_leaf=2 hss_rank=3 feature_map=favor features=12"},
              {{.B = 1, .T = 65, .C = 32, .H = 2}, "chunk=16 hss_leaf=4 hss_rank=8"},
              {{.B = 1, .T = 33, .C = 32, .H = 2}, "chunk=16 hss_leaf=4 hss_rank=2"}}};
// clang-format on
