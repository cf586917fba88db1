#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../comm/comm.h"
#include "model.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} AdamWParams;

// AdamW (Loshchilov & Hutter): decoupled decay, bias-corrected moments. step counts from 1.
// Decay applies only to the tensors the parameter table marks (matrices, not norm gains);
// non-trainable tensors (buffers) are left untouched.
// All buffers on backend k's device.
void adamw_update(const Backend_f32 *k, float *params, const float *grads, float *m, float *v,
                  const ParamInfo *info, int n_tensors, AdamWParams p, int64_t step);
// AdamW on the parameters [lo, hi) alone (ZeRO-1: a rank's slice), m and v holding that slice
// (m[0] is parameter lo's moment). Elementwise, so the slices of all ranks together update
// bitwise as adamw_update does.
void adamw_update_range(const Backend_f32 *k, float *params, const float *grads, float *m, float *v,
                        const ParamInfo *info, int n_tensors, AdamWParams p, int64_t step,
                        size_t lo, size_t hi);

// ZeRO-1 (optim.zero: 1): the flat parameter buffer cut into one slice per rank, each rank
// keeping the AdamW moments of its slice alone, receiving its slice's summed gradient
// (a reduce to the owner instead of an all-reduce) and updating its slice; the parameters
// are then all-gathered. Slices are whole blocks of `block` parameters, a function of the
// parameter count alone: the gradient norm is the sum, in block order, of per-block sums of
// squares, so it is bitwise the same for every number of ranks and with or without ZeRO.
typedef struct {
    size_t n, block, n_blocks;
    size_t *at;  // [world + 1]: rank r's slice is [at[r], at[r + 1]); with ZeRO off, rank 0's
                 // slice is everything (at[0] = 0, at[1..] = n)
    int world, rank, on;
} Shards;
void shards_init(Shards *s, size_t n, int world, int rank, int on);
void shards_free(Shards *s);
static inline size_t shard_lo(const Shards *s) {
    return s->on ? s->at[s->rank] : 0;
}
static inline size_t shard_hi(const Shards *s) {
    return s->on ? s->at[s->rank + 1] : s->n;
}
// The squared global gradient norm in block order (with ZeRO, each rank's blocks from its own
// slice, exchanged in one small all-reduce); the same value on every rank.
double grad_norm_sq(const Backend_f32 *k, const float *grads, const Shards *s, Comm *comm);

// Warmup (linear from lr/warmup) then cosine to min_lr, or constant.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr, int cosine);
