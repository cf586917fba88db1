#include <string.h>

#include "../ops.h"
#include "../real.h"

void F(embedding_forward)(real *out, const int *ids, const real *wte, int N, int C) {
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, sizeof(real) * C);
}

// Serial scatter-add: rows with the same id collide, and a fixed order keeps it reproducible.
void F(embedding_backward)(real *dwte, const real *dout, const int *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        real *d = dwte + (size_t)ids[n] * C;
        const real *g = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) d[i] += g[i];
    }
}
