// Causal linear attention of any feature map (mixers.md sections 0, 2-5). Per (batch, head):
//   P = phi(Q), Fk = phi(K) [T, m], V' = [V | 1] when normalised (the ones column carries the
//   normaliser z through the same products), N' = causal linear attention (P, Fk, V') in
//   chunkwise form, o = N'[:, :D] / (N'[:, D] + eps).
// Only the normaliser is saved; features and chunk states are recomputed (cheap next to the
// GEMMs, and it keeps memory at O(T D) instead of O(T D^2 / chunk)).
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

// V' of head h of one sequence: [T, Dv] with the ones column when Dv > D.
static void load_values(real *v, const real *qkv_head, int T, int C, int D, int Dv) {
    for (int t = 0; t < T; t++) {
        memcpy(v + (size_t)t * Dv, qkv_head + (size_t)t * 3 * C + 2 * C, sizeof(real) * D);
        if (Dv > D) v[(size_t)t * Dv + D] = 1;
    }
}

void F(attention_linear_forward)(real *out_btc, real *den_bht, const real *qkv_btc3,
                                 const real *const *fmap_params, const OpShape *shape) {
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int m = F(fmap_width)(shape), Dv = shape->normalize ? D + 1 : D;
    F(FeatureMap) fm = F(fmap_open)(shape, fmap_params);
#pragma omp parallel
    {
        real *p = malloc(sizeof(real) * (size_t)T * m), *f = malloc(sizeof(real) * (size_t)T * m);
        real *v = malloc(sizeof(real) * (size_t)T * Dv);
        real *num = malloc(sizeof(real) * (size_t)T * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            const real *head = qkv_btc3 + (size_t)b * T * 3 * C + h * D;
            F(fmap_forward)(&fm, T, head, 3 * C, p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, f);
            load_values(v, head, T, C, D, Dv);
            F(la_forward)(T, m, Dv, shape->chunk, p, m, f, m, v, Dv, num, Dv);
            for (int t = 0; t < T; t++) {
                real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                const real *nr = num + (size_t)t * Dv;
                real den = shape->normalize ? nr[D] + (real)shape->eps : 1;
                if (shape->normalize) den_bht[(size_t)bh * T + t] = den;
                for (int j = 0; j < D; j++) o[j] = nr[j] / den;
            }
        }
        free(p), free(f), free(v), free(num);
    }
    F(fmap_close)(&fm);
}

void F(attention_linear_backward)(real *dqkv_btc3, real *const *dfmap_params, const real *dout_btc,
                                  const real *out_btc, const real *den_bht, const real *qkv_btc3,
                                  const real *const *fmap_params, const OpShape *shape) {
    int B = shape->B, T = shape->T, C = shape->C, H = shape->H, D = C / H;
    int m = F(fmap_width)(shape), Dv = shape->normalize ? D + 1 : D;
    F(FeatureMap) fm = F(fmap_open)(shape, fmap_params);
    size_t gsize = F(fmap_grad_size)(&fm);
    real *dparam_bh = gsize ? calloc((size_t)B * H * gsize, sizeof(real)) : NULL;
#pragma omp parallel
    {
        real *p = malloc(sizeof(real) * (size_t)T * m), *f = malloc(sizeof(real) * (size_t)T * m);
        real *v = malloc(sizeof(real) * (size_t)T * Dv),
             *dn = malloc(sizeof(real) * (size_t)T * Dv);
        real *dp = malloc(sizeof(real) * (size_t)T * m), *df = malloc(sizeof(real) * (size_t)T * m);
        real *dv = malloc(sizeof(real) * (size_t)T * Dv);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * 3 * C + h * D;
            const real *head = qkv_btc3 + off;
            F(fmap_forward)(&fm, T, head, 3 * C, p);
            F(fmap_forward)(&fm, T, head + C, 3 * C, f);
            load_values(v, head, T, C, D, Dv);
            // o = n / den gives dn = do / den and dden = -(do . o) / den.
            for (int t = 0; t < T; t++) {
                const real *g = dout_btc + ((size_t)b * T + t) * C + h * D;
                const real *o = out_btc + ((size_t)b * T + t) * C + h * D;
                real *dnr = dn + (size_t)t * Dv;
                real den = shape->normalize ? den_bht[(size_t)bh * T + t] : 1, dot = 0;
                for (int j = 0; j < D; j++) dnr[j] = g[j] / den, dot += g[j] * o[j];
                if (shape->normalize) dnr[D] = -dot / den;
            }
            memset(dp, 0, sizeof(real) * (size_t)T * m);
            memset(df, 0, sizeof(real) * (size_t)T * m);
            memset(dv, 0, sizeof(real) * (size_t)T * Dv);
            F(la_backward)(T, m, Dv, shape->chunk, p, m, f, m, v, Dv, dn, Dv, dp, m, df, m, dv, Dv);
            real *dhead = dqkv_btc3 + off, *dparam = gsize ? dparam_bh + bh * gsize : NULL;
            F(fmap_backward)(&fm, T, head, 3 * C, p, dp, dhead, 3 * C, dparam);
            F(fmap_backward)(&fm, T, head + C, 3 * C, f, df, dhead + C, 3 * C, dparam);
            for (int t = 0; t < T; t++)
                for (int j = 0; j < D; j++)
                    dhead[(size_t)t * 3 * C + 2 * C + j] += dv[(size_t)t * Dv + j];
        }
        free(p), free(f), free(v), free(dn), free(dp), free(df), free(dv);
    }
    F(fmap_grad_reduce)(&fm, dparam_bh, B * H, dfmap_params);
    free(dparam_bh);
    F(fmap_close)(&fm);
}
