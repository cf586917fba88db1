#include "optim.h"

#include <math.h>

void adamw_update(float *params, const float *grads, float *m, float *v, const ParamInfo *info,
                  int n_tensors, AdamWParams p, int64_t step) {
    double c1 = 1 - pow(p.beta1, (double)step), c2 = 1 - pow(p.beta2, (double)step);
    float b1 = (float)p.beta1, b2 = (float)p.beta2;
    for (int t = 0; t < n_tensors; t++) {
        if (!info[t].trainable) continue;  // buffers: random features, fixed bases
        size_t lo = info[t].offset, hi = lo + info[t].size;
        float decay = info[t].decay ? (float)(p.lr * p.weight_decay) : 0.0f;
        float step_size = (float)(p.lr / c1), inv_c2 = (float)(1.0 / c2), eps = (float)p.eps;
#pragma omp parallel for schedule(static)
        for (size_t i = lo; i < hi; i++) {
            float g = grads[i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            params[i] -= step_size * m[i] / (sqrtf(v[i] * inv_c2) + eps) + decay * params[i];
        }
    }
}

double global_norm(const float *x, size_t n) {
    double s = 0;  // serial double sum: identical on every rank, whatever the thread count
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr, int cosine) {
    if (step < warmup) return lr * (step + 1) / warmup;
    if (!cosine || total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1 + cos(3.141592653589793 * progress));
}
