#include "../ops.h"
#include "../real.h"

// The row's max (subtracted so exp never overflows) and sum of exp(z - max), in double.
static double row_expsum(const real *z, int V, real *max) {
    real mx = z[0];
    for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp(z[i] - mx);
    *max = mx;
    return sum;
}

// loss = logsumexp(logits) - logits[target].
void F(crossentropy_forward)(real *loss, const real *logits, const int *targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            loss[n] = 0;
            continue;
        }
        const real *z = logits + (size_t)n * V;
        real mx;
        double sum = row_expsum(z, V, &mx);
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
        real mx;
        double sum = row_expsum(z, V, &mx);
        real inv = (real)(1.0 / sum), g = dloss[n];
        for (int i = 0; i < V; i++) dz[i] += g * exp(z[i] - mx) * inv;
        dz[targets[n]] -= g;
    }
}

// Label smoothing (the ViT's training loss): loss = logsumexp(z) - (1 - s) z_y - (s / V) sum_v
// z_v, the cross-entropy against the smoothed target q = (1 - s) onehot(y) + s / V; its
// gradient is softmax(z) - q.
void F(crossentropy_smooth_forward)(real *loss, const real *logits, const int *targets, int N,
                                    int V, double smoothing) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            loss[n] = 0;
            continue;
        }
        const real *z = logits + (size_t)n * V;
        real mx;
        double sum = row_expsum(z, V, &mx), zsum = 0;
        for (int i = 0; i < V; i++) zsum += z[i];
        loss[n] = (real)(log(sum) + mx - (1 - smoothing) * z[targets[n]] - smoothing / V * zsum);
    }
}

void F(crossentropy_smooth_backward)(real *dlogits, const real *dloss, const real *logits,
                                     const int *targets, int N, int V, double smoothing) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const real *z = logits + (size_t)n * V;
        real *dz = dlogits + (size_t)n * V;
        real mx;
        double sum = row_expsum(z, V, &mx);
        real inv = (real)(1.0 / sum), g = dloss[n], u = (real)(smoothing / V);
        for (int i = 0; i < V; i++) dz[i] += g * (exp(z[i] - mx) * inv - u);
        dz[targets[n]] -= g * (real)(1 - smoothing);
    }
}
