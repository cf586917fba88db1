// Hydra attention's options (mixers.md section 13), shared by kernels/cpu/attention_hydra.c and
// kernels/cuda/attention_hydra.cu.
#pragma once
#include "ops.h"

typedef enum { HYDRA_NORM_COUNT = 0, HYDRA_NORM_NONE = 1 } HydraNorm;
typedef struct {
    int hydra_norm;  // HydraNorm: divide the sum at t by its term count (t + 1, or T), or not
    int causal;      // 0: the paper's non-causal form, one kv = sum over the whole sequence
} HydraOpts;
OP_OPTIONS_STRUCT(HydraOpts)

#ifdef __CUDACC__
#define HYDRA_HOST_DEVICE __host__ __device__
#else
#define HYDRA_HOST_DEVICE
#endif
// c_t, the output scale at t: 1 / (number of terms in kv_t) under hydra_norm = count (t + 1
// when causal, T when not), else 1. The CPU and CUDA files both call it.
static inline HYDRA_HOST_DEVICE double hydra_count_scale(int hydra_norm, int causal, int t, int T) {
    if (hydra_norm != HYDRA_NORM_COUNT) return 1;
    return 1.0 / (causal ? t + 1 : T);
}
