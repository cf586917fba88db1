#pragma once
#include <stddef.h>
#include <stdint.h>

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
// Warmup (linear from lr/warmup) then cosine to min_lr, or constant.
double lr_at(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr, int cosine);
