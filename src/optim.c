#include "optim.h"

#include <math.h>
#include <stdlib.h>

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

void adamw_update_range(const Backend_f32 *k, float *params, const float *grads, float *m, float *v,
                        const ParamInfo *info, int n_tensors, AdamWParams p, int64_t step,
                        size_t lo, size_t hi) {
    double c1 = 1 - pow(p.beta1, (double)step), c2 = 1 - pow(p.beta2, (double)step);
    for (int t = 0; t < n_tensors; t++) {
        if (!info[t].trainable) continue;
        size_t a = info[t].offset > lo ? info[t].offset : lo;
        size_t b = info[t].offset + info[t].size < hi ? info[t].offset + info[t].size : hi;
        if (a >= b) continue;
        float decay = info[t].decay ? (float)(p.lr * p.weight_decay) : 0.0f;
        k->adamw(params + a, grads + a, m + (a - lo), v + (a - lo), b - a, (float)(p.lr / c1),
                 (float)p.beta1, (float)p.beta2, (float)p.eps, decay, (float)(1.0 / c2));
    }
}

void shards_init(Shards *s, size_t n, int world, int rank, int on) {
    s->n = n, s->world = world, s->rank = rank, s->on = on;
    size_t per = (n + 255) / 256;
    s->block = per < 1024 ? 1024 : (per + 1023) / 1024 * 1024;  // at most 256 blocks
    s->n_blocks = (n + s->block - 1) / s->block;
    s->at = malloc(sizeof(size_t) * ((size_t)world + 1));
    size_t blocks_per_rank = (s->n_blocks + (size_t)world - 1) / (size_t)world;
    for (int r = 0; r <= world; r++) {
        size_t at = on ? (size_t)r * blocks_per_rank * s->block : (r ? n : 0);
        s->at[r] = at < n ? at : n;
    }
}

void shards_free(Shards *s) {
    free(s->at);
    s->at = NULL;
}

double grad_norm_sq(const Backend_f32 *k, const float *grads, const Shards *s, Comm *comm) {
    double *part = calloc(s->n_blocks ? s->n_blocks : 1, sizeof(double));
    size_t lo = shard_lo(s), hi = shard_hi(s);
    for (size_t b = lo / s->block; b * s->block < hi; b++) {
        size_t a = b * s->block, e = a + s->block < s->n ? a + s->block : s->n;
        part[b] = k->norm_sq(grads + a, e - a);
    }
    // Every block has one owner and zeros elsewhere: the sum over ranks is exact in any order.
    if (s->on) comm_allreduce_sum_f64(comm, part, s->n_blocks);
    double total = 0;
    for (size_t b = 0; b < s->n_blocks; b++) total += part[b];
    free(part);
    return total;
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr, int cosine) {
    if (step < warmup) return lr * (step + 1) / warmup;
    if (!cosine || total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1 + cos(3.141592653589793 * progress));
}
