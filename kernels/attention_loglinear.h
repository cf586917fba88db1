// Log-linear attention's level geometry (mixers.md section 6), shared by
// kernels/cpu/attention_loglinear.c and kernels/cuda/attention_loglinear.cu.
#pragma once
#include "feature_maps.h"

// Index of the highest set bit plus one (0 for 0): the Fenwick level of (t, s) is
// bit_length(t XOR s) (mixers.md 6.1).
static inline int loglinear_bit_length(unsigned x) {
    return x ? 32 - __builtin_clz(x) : 0;
}
// L = ceil(log2 max_len) + 1 levels cover every (t, s) with t < max_len; longer sequences
// fold their oldest buckets into level L - 1 [project-defined].
static inline int loglinear_levels(const OpShape *s) {
    return loglinear_bit_length((unsigned)(fmap_max_len(s) - 1)) + 1;
}
// Chunks must be aligned on powers of two for the in-chunk levels to be those of the
// in-chunk indices: the largest power of two <= min(mixer.chunk, T) (the result does not
// depend on it).
static inline int loglinear_pow2_chunk(const OpShape *s) {
    const LinearOpts o = OPT_OF(LinearOpts, s);
    int c = o.chunk > 0 && o.chunk < s->T ? o.chunk : s->T;
    return 1 << (loglinear_bit_length((unsigned)c) - 1);
}
