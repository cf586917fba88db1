// Shared by the op-level tests (double precision): inputs drawn as a model would see them, and
// the relative error they are judged by. Header-only: each test is a program of its own.
#pragma once
#include <math.h>
#include <stddef.h>

#include "../kernels/ops.h"
#include "../src/rng.h"

// Fills in[i] (n[i] values, allocated by the caller) for every input of op at shape s:
// per-token inputs (q|k|v, the per-token projection) ~ N(0, 1); the op's parameters as a model
// initialises them (INIT_CUSTOM through the op, constants), the others ~ N(0, 0.5^2). stream
// keeps each test's draws its own.
static inline void op_draw_inputs(const OpDef_f64 *op, const OpShape *s, double *const *in,
                                  const size_t *n, uint64_t seed, uint64_t stream) {
    OpParam p[OP_MAX_PARAMS];
    int np = op->params ? op->params(s, p) : 0;
    for (int i = 0; i < op->n_in; i++) {
        uint64_t key = rng_key(seed, stream, (uint64_t)i, 0);
        int pi = i - CORE_IN_PARAMS;
        if (pi >= 0 && pi < np && p[pi].init == INIT_CUSTOM) {
            op->init_param(s, pi, key, in[i]);
            continue;
        }
        for (size_t j = 0; j < n[i]; j++)
            in[i][j] = pi >= 0 && pi < np && p[pi].init == INIT_CONST
                           ? p[pi].init_value
                           : (pi >= 0 ? 0.5 : 1.0) * rng_normal(key, j);
    }
}

// max |a - b| / max(1, |b|); NaN as soon as either side is not finite (so no `<= tol` holds).
static inline double max_rel_err(const double *a, const double *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return NAN;
        double e = fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        worst = e > worst ? e : worst;
    }
    return worst;
}
