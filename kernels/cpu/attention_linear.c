// Causal linear attention, chunkwise (mixers.md sections 0 and 2). Per (batch, head):
//   P = phi(Q), Fk = phi(K), V' = [V | 1] when normalised (the ones column carries the
//   normaliser z through the same products), state S' = sum_{s < chunk start} Fk_s^T V'_s,
//   N'_c = P_c S' + tril(P_c Fk_c^T) V'_c,   o = N'[:, :D] / (N'[:, D] + eps).
// Backward is two more chunked sweeps: forward in time for dP, reverse in time for dFk, dV'.
// Only the normaliser is saved; features and chunk states are recomputed (cheap next to the
// GEMMs, and it keeps memory at O(T D) instead of O(T D^2 / chunk)).
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"

static inline real feature(int map, real x) {
    if (map == FEATURE_RELU) return x > 0 ? x : 0;
    return x > 0 ? x + 1 : exp(x);  // elu(x) + 1, strictly positive
}

static inline real feature_grad(int map, real x) {
    if (map == FEATURE_RELU) return x > 0 ? 1 : 0;
    return x > 0 ? 1 : exp(x);
}

// Per-thread scratch for one (batch, head).
typedef struct {
    real *p, *f, *v, *dn;  // [T, D] features, [T, Dv] augmented values, [T, Dv] dN'
    real *state;           // [D, Dv]
    real *tri;             // [chunk, chunk]
} Scratch;

static Scratch scratch_new(int T, int D, int Dv, int L) {
    Scratch s;
    s.p = malloc(sizeof(real) * (size_t)T * D);
    s.f = malloc(sizeof(real) * (size_t)T * D);
    s.v = malloc(sizeof(real) * (size_t)T * Dv);
    s.dn = malloc(sizeof(real) * (size_t)T * Dv);
    s.state = malloc(sizeof(real) * (size_t)D * Dv);
    s.tri = malloc(sizeof(real) * (size_t)L * L);
    return s;
}

static void scratch_free(Scratch *s) {
    free(s->p);
    free(s->f);
    free(s->v);
    free(s->dn);
    free(s->state);
    free(s->tri);
}

// Features and augmented values of head h of sequence b.
static void load_head(Scratch *s, const real *qkv, int T, int C, int D, int Dv, int map) {
    for (int t = 0; t < T; t++) {
        const real *row = qkv + (size_t)t * 3 * C;
        for (int i = 0; i < D; i++) {
            s->p[(size_t)t * D + i] = feature(map, row[i]);
            s->f[(size_t)t * D + i] = feature(map, row[C + i]);
            s->v[(size_t)t * Dv + i] = row[2 * C + i];
        }
        if (Dv > D) s->v[(size_t)t * Dv + D] = 1;
    }
}

// tri[L,L] = a[L,D] b[L,D]^T with the strictly upper triangle (future positions) zeroed.
static void causal_scores(real *tri, const real *a, const real *b, int L, int D) {
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1, a, D, b, D, 0, tri, L);
    for (int t = 0; t < L; t++)
        for (int s = t + 1; s < L; s++) tri[(size_t)t * L + s] = 0;
}

void F(attention_linear_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                                 const OpShape *shape) {
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int Dv = shape->normalize ? D + 1 : D, L = shape->chunk > 0 ? shape->chunk : T;
    if (L > T) L = T;
#pragma omp parallel
    {
        Scratch s = scratch_new(T, D, Dv, L);
        real *nbuf = malloc(sizeof(real) * (size_t)L * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            load_head(&s, qkv_btc3 + (size_t)b * T * 3 * C + h * D, T, C, D, Dv,
                      shape->feature_map);
            memset(s.state, 0, sizeof(real) * (size_t)D * Dv);
            for (int t0 = 0; t0 < T; t0 += L) {
                int n = T - t0 < L ? T - t0 : L;
                const real *pc = s.p + (size_t)t0 * D, *fc = s.f + (size_t)t0 * D;
                const real *vc = s.v + (size_t)t0 * Dv;
                causal_scores(s.tri, pc, fc, n, D);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, D, 1, pc, D, s.state,
                           Dv, 0, nbuf, Dv);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, n, 1, s.tri, n, vc, Dv,
                           1, nbuf, Dv);
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, Dv, n, 1, fc, D, vc, Dv, 1,
                           s.state, Dv);
                for (int i = 0; i < n; i++) {
                    int t = t0 + i;
                    real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                    const real *nr = nbuf + (size_t)i * Dv;
                    if (shape->normalize) {
                        real den = nr[D] + (real)shape->eps;
                        den_bht[(size_t)bh * T + t] = den;
                        for (int j = 0; j < D; j++) o[j] = nr[j] / den;
                    } else {
                        for (int j = 0; j < D; j++) o[j] = nr[j];
                    }
                }
            }
        }
        free(nbuf);
        scratch_free(&s);
    }
}

void F(attention_linear_backward)(real *dqkv_btc3, const real *dout_btc, const real *out_btc,
                                  const real *den_bht, const real *qkv_btc3,
                                  const OpShape *shape) {
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int Dv = shape->normalize ? D + 1 : D, L = shape->chunk > 0 ? shape->chunk : T;
    if (L > T) L = T;
#pragma omp parallel
    {
        Scratch s = scratch_new(T, D, Dv, L);
        real *dp = malloc(sizeof(real) * (size_t)T * D);
        real *df = malloc(sizeof(real) * (size_t)T * D);
        real *dvv = malloc(sizeof(real) * (size_t)T * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t head = (size_t)b * T * 3 * C + h * D;
            load_head(&s, qkv_btc3 + head, T, C, D, Dv, shape->feature_map);
            // dN' from dO: o = n / den gives dn = do / den and dden = -(do . o) / den.
            for (int t = 0; t < T; t++) {
                const real *g = dout_btc + ((size_t)b * T + t) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                real *dn = s.dn + (size_t)t * Dv;
                if (shape->normalize) {
                    real den = den_bht[(size_t)bh * T + t], dot = 0;
                    for (int j = 0; j < D; j++) {
                        dn[j] = g[j] / den;
                        dot += g[j] * o[j];
                    }
                    dn[D] = -dot / den;
                } else {
                    for (int j = 0; j < D; j++) dn[j] = g[j];
                }
            }
            // Forward sweep: dP_c = dN'_c S'^T + tril(dN'_c V'_c^T) Fk_c.
            memset(s.state, 0, sizeof(real) * (size_t)D * Dv);
            for (int t0 = 0; t0 < T; t0 += L) {
                int n = T - t0 < L ? T - t0 : L;
                const real *fc = s.f + (size_t)t0 * D, *vc = s.v + (size_t)t0 * Dv;
                const real *dnc = s.dn + (size_t)t0 * Dv;
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Dv, 1, dnc, Dv, vc, Dv, 0,
                           s.tri, n);
                for (int t = 0; t < n; t++)
                    for (int u = t + 1; u < n; u++) s.tri[(size_t)t * n + u] = 0;
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, Dv, 1, dnc, Dv, s.state,
                           Dv, 0, dp + (size_t)t0 * D, D);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, 1, s.tri, n, fc, D,
                           1, dp + (size_t)t0 * D, D);
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, Dv, n, 1, fc, D, vc, Dv, 1,
                           s.state, Dv);
            }
            // Reverse sweep with R = sum over later chunks of P^T dN' (reusing s.state):
            // dFk_c = tril(dN'_c V'_c^T)^T P_c + V'_c R^T,  dV'_c = tril(P_c Fk_c^T)^T dN'_c + Fk_c R.
            memset(s.state, 0, sizeof(real) * (size_t)D * Dv);
            int last = ((T - 1) / L) * L;
            for (int t0 = last; t0 >= 0; t0 -= L) {
                int n = T - t0 < L ? T - t0 : L;
                const real *pc = s.p + (size_t)t0 * D, *fc = s.f + (size_t)t0 * D;
                const real *vc = s.v + (size_t)t0 * Dv, *dnc = s.dn + (size_t)t0 * Dv;
                real *dfc = df + (size_t)t0 * D, *dvc = dvv + (size_t)t0 * Dv;
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Dv, 1, dnc, Dv, vc, Dv, 0,
                           s.tri, n);
                for (int t = 0; t < n; t++)
                    for (int u = t + 1; u < n; u++) s.tri[(size_t)t * n + u] = 0;
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1, s.tri, n, pc, D, 0,
                           dfc, D);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, Dv, 1, vc, Dv, s.state, Dv,
                           1, dfc, D);
                causal_scores(s.tri, pc, fc, n, D);
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, Dv, n, 1, s.tri, n, dnc, Dv,
                           0, dvc, Dv);
                cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, D, 1, fc, D, s.state,
                           Dv, 1, dvc, Dv);
                cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, Dv, n, 1, pc, D, dnc, Dv, 1,
                           s.state, Dv);
            }
            for (int t = 0; t < T; t++) {
                const real *row = qkv_btc3 + head + (size_t)t * 3 * C;
                real *drow = dqkv_btc3 + head + (size_t)t * 3 * C;
                for (int i = 0; i < D; i++) {
                    drow[i] += dp[(size_t)t * D + i] * feature_grad(shape->feature_map, row[i]);
                    drow[C + i] +=
                        df[(size_t)t * D + i] * feature_grad(shape->feature_map, row[C + i]);
                    drow[2 * C + i] += dvv[(size_t)t * Dv + i];
                }
            }
        }
        free(dp);
        free(df);
        free(dvv);
        scratch_free(&s);
    }
}
