// The options of the Mamba-2 family's decay initialisation (decay, gated_deltanet, mamba2),
// shared by the CPU files and the CUDA twins (no precision: the option structs of the rows
// hold one MambaInitOpts). kernels/mamba_init.h draws the values.
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "ops.h"

// The initialisation ranges, options of every row that uses these parameters (mixer.dt_min,
// mixer.dt_max, mixer.a_min, mixer.a_max; Mamba-2's defaults). A row's option struct holds one
// MambaInitOpts as `init` and lists MAMBA_INIT_OPTIONS(its struct) among its options.
typedef struct {
    double dt_min, dt_max;  // dt = softplus(dt_bias) ~ log-U[dt_min, dt_max]
    double a_min, a_max;    // A = exp(a_log) ~ U[a_min, a_max]
} MambaInitOpts;

#define MAMBA_INIT_OPTIONS(type)                                                            \
    {"dt_min",                                                                              \
     OPT_FLOAT,                                                                             \
     "0.001",                                                                               \
     NULL,                                                                                  \
     1e-6,                                                                                  \
     10,                                                                                    \
     offsetof(type, init.dt_min),                                                           \
     0,                                                                                     \
     "decay, gated_deltanet, mamba2: dt_bias init, dt = softplus(dt_bias) ~ log-U[dt_min, " \
     "dt_max]"},                                                                            \
        {"dt_max",                                                                          \
         OPT_FLOAT,                                                                         \
         "0.1",                                                                             \
         NULL,                                                                              \
         1e-6,                                                                              \
         10,                                                                                \
         offsetof(type, init.dt_max),                                                       \
         0,                                                                                 \
         "decay, gated_deltanet, mamba2: the top of dt's initial range"},                   \
        {"a_min",                                                                           \
         OPT_FLOAT,                                                                         \
         "1",                                                                               \
         NULL,                                                                              \
         1e-6,                                                                              \
         1e4,                                                                               \
         offsetof(type, init.a_min),                                                        \
         0,                                                                                 \
         "decay, gated_deltanet, mamba2: a_log init, A = exp(a_log) ~ U[a_min, a_max]"},    \
    {                                                                                       \
        "a_max", OPT_FLOAT, "16", NULL, 1e-6, 1e4, offsetof(type, init.a_max), 0,           \
            "decay, gated_deltanet, mamba2: the top of A's initial range"                   \
    }

// 0, or -1 with one line when a range is upside down.
static inline int mamba_init_check(const MambaInitOpts *o, char *err, size_t errlen) {
    if (o->dt_min > o->dt_max) {
        snprintf(err, errlen, "mixer.dt_min (%g) must not exceed mixer.dt_max (%g)", o->dt_min,
                 o->dt_max);
        return -1;
    }
    if (o->a_min > o->a_max) {
        snprintf(err, errlen, "mixer.a_min (%g) must not exceed mixer.a_max (%g)", o->a_min,
                 o->a_max);
        return -1;
    }
    return 0;
}
