// The per-head decay parameters of the Mamba-2 family (decay, gated_deltanet, mamba2): A =
// exp(A_log) ~ U[1, 16] and dt = softplus(dt_bias) ~ log-U[1e-3, 1e-1] by default (the ranges
// are options: MambaInitOpts), as mamba2_simple.py draws them, so
// at initialisation (W_x = 0) head h forgets at its own rate exp(-dt A) between 0.98 and 0.2.
// Neither is weight-decayed (Mamba-2's _no_weight_decay). Also the softplus that turns the
// per-token pre-activation into dt. For the CPU files, which are compiled once per precision
// (real.h).
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "mamba_opts.h"
#include "ops.h"
#include "real.h"
#include "rng.h"

// Parameter 0 is the log rate (named a_log_name: each row keeps its checkpoint name), 1 dt_bias.
static inline int mamba_decay_params(const OpShape *s, const char *a_log_name, OpParam *out) {
    out[0] = (OpParam){.name = a_log_name, .rows = s->H, .init = INIT_CUSTOM, .trainable = 1};
    out[1] = (OpParam){.name = "dt_bias", .rows = s->H, .init = INIT_CUSTOM, .trainable = 1};
    return 2;
}

static inline void mamba_decay_init(const OpShape *s, const MambaInitOpts *o, int index,
                                    uint64_t key, real *w) {
    for (int h = 0; h < s->H; h++) {
        double u = rng_uniform(key, (uint64_t)h);
        if (index == 0) {
            w[h] = (real)log(o->a_min + (o->a_max - o->a_min) * u);
        } else {
            double dt = exp(log(o->dt_min) + u * (log(o->dt_max) - log(o->dt_min)));
            w[h] = (real)(dt + log(-expm1(-dt)));  // softplus^-1(dt)
        }
    }
}

// dt = softplus(z), z = x W_x + dt_bias; above 20 softplus(z) = z to float and double precision.
static inline real mamba_softplus(real z) {
    return z > 20 ? z : log1p(exp(z));
}
