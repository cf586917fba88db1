// Rotary position embedding (half-split layout, as GPT-NeoX/Llama): dimension j of a head is
// rotated together with j + D/2 by the angle t * base^(-2j/D); an odd head dim's last
// dimension passes through. t = pos0 + the row's index: a context-parallel slice of a sequence
// starts at pos0.
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"

// cos/sin table [T, D/2], built per call: T*D/2 transcendentals instead of B*T*H*D.
static real *rope_table(int T, int D, double base, int pos0) {
    int half = D / 2;
    real *tab = malloc(sizeof(real) * 2 * (size_t)T * half);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < half; j++) {
            double ang = (double)(pos0 + t) * pow(base, -2.0 * j / D);
            tab[((size_t)t * half + j) * 2] = (real)cos(ang);
            tab[((size_t)t * half + j) * 2 + 1] = (real)sin(ang);
        }
    return tab;
}

// sign = +1 rotates forward; sign = -1 applies the transpose (the backward of a rotation).
static void rope_apply(real *out, const real *in, int B, int T, int C, int H, double base, int pos0,
                       real sign, int accumulate) {
    int D = C / H, half = D / 2;
    real *tab = rope_table(T, D, base, pos0);
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        const real *src = in + (size_t)bt * 3 * C;
        real *dst = out + (size_t)bt * 3 * C;
        for (int part = 0; part < 2; part++)  // q then k; v is passed through below
            for (int h = 0; h < H; h++) {
                const real *x = src + part * C + h * D;
                real *y = dst + part * C + h * D;
                for (int j = 0; j < half; j++) {
                    real c = tab[((size_t)t * half + j) * 2];
                    real s = sign * tab[((size_t)t * half + j) * 2 + 1];
                    real x1 = x[j], x2 = x[j + half];
                    real y1 = x1 * c - x2 * s, y2 = x1 * s + x2 * c;
                    if (accumulate) {
                        y[j] += y1;
                        y[j + half] += y2;
                    } else {
                        y[j] = y1;
                        y[j + half] = y2;
                    }
                }
                if (D % 2) y[D - 1] = accumulate ? y[D - 1] + x[D - 1] : x[D - 1];  // unrotated
            }
        for (int i = 0; i < C; i++)
            dst[2 * C + i] = accumulate ? dst[2 * C + i] + src[2 * C + i] : src[2 * C + i];
    }
    free(tab);
}

void F(rope_forward)(real *out_btc3, const real *qkv_btc3, int B, int T, int C, int H, double base,
                     int pos0) {
    rope_apply(out_btc3, qkv_btc3, B, T, C, H, base, pos0, 1, 0);
}

void F(rope_backward)(real *dqkv_btc3, const real *dout_btc3, int B, int T, int C, int H,
                      double base, int pos0) {
    rope_apply(dqkv_btc3, dout_btc3, B, T, C, H, base, pos0, -1, 1);
}
