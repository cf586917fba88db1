#include "../ops.h"
#include "../real.h"

// loss = logsumexp(logits) - logits[target]; the max is subtracted so exp never overflows.
void F(crossentropy_forward)(real *loss, const real *logits, const int *targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            loss[n] = 0;
            continue;
        }
        const real *z = logits + (size_t)n * V;
        real mx = z[0];
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp(z[i] - mx);
        loss[n] = (real)(log(sum) + mx - z[targets[n]]);
    }
}

void F(crossentropy_backward)(real *dlogits, const real *dloss, const real *logits,
                              const int *targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const real *z = logits + (size_t)n * V;
        real *dz = dlogits + (size_t)n * V;
        real mx = z[0];
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp(z[i] - mx);
        real inv = (real)(1.0 / sum), g = dloss[n];
        for (int i = 0; i < V; i++) dz[i] += g * exp(z[i] - mx) * inv;
        dz[targets[n]] -= g;
    }
}
