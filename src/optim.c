#include "optim.h"

#include <math.h>

void adamw_update(const Backend_f32 *k, float *params, const float *grads, float *m, float *v,
                  const ParamInfo *info, int n_tensors, AdamWParams p, int64_t step) {
    double c1 = 1 - pow(p.beta1, (double)step), c2 = 1 - pow(p.beta2, (double)step);
    for (int t = 0; t < n_tensors; t++) {
        if (!info[t].trainable) continue;  // buffers: random features, fixed bases
        size_t lo = info[t].offset;
        float decay = info[t].decay ? (float)(p.lr * p.weight_decay) : 0.0f;
        k->adamw(params + lo, grads + lo, m + lo, v + lo, info[t].size, (float)(p.lr / c1),
                 (float)p.beta1, (float)p.beta2, (float)p.eps, decay, (float)(1.0 / c2));
    }
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr, int cosine) {
    if (step < warmup) return lr * (step + 1) / warmup;
    if (!cosine || total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1 + cos(3.141592653589793 * progress));
}
