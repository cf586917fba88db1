// Ripple attention's options and grid geometry (mixers.md section 14; Zheng, Pan, Kong 2022),
// shared by kernels/cpu/attention_ripple.c and kernels/cuda/attention_ripple.cu.
#pragma once
#include "feature_maps.h"
#include "ops.h"

typedef struct {
    LinearOpts lin;     // first: the feature-map code reads the block as LinearOpts
    int grid_w;         // patch grid width (0: the smallest square that holds the grid tokens)
    int prefix_tokens;  // leading tokens not on the grid (a ViT's class token)
    int rings;          // r^: rings 0..r^-1 get their own weight, the rest share one
} RippleOpts;
OP_OPTIONS_STRUCT(RippleOpts)

// Where the tokens of one call of T tokens sit: P prefix tokens, then n = T - P grid tokens
// row-major on Hg rows of W cells (the last row partial when W does not divide n: a call
// shorter than the configured grid, e.g. a packed example, still runs; the row's check
// refuses a configured length that does not tile).
typedef struct {
    int P, n, W, Hg, R;
} RippleGrid;

#ifdef __CUDACC__
#define RIPPLE_HOST_DEVICE __host__ __device__
#else
#define RIPPLE_HOST_DEVICE
#endif

static inline RippleGrid ripple_grid(const OpShape *s) {
    const RippleOpts o = OPT_OF(RippleOpts, s);
    RippleGrid g;
    g.P = o.prefix_tokens < s->T ? o.prefix_tokens : s->T;
    g.n = s->T - g.P;
    g.W = o.grid_w;
    if (g.W <= 0)
        for (g.W = 1; g.W * g.W < g.n;) g.W++;
    g.Hg = g.n > 0 ? (g.n + g.W - 1) / g.W : 0;
    g.R = o.rings;
    return g;
}

// The group of key u for query t, both grid tokens (index t - P, u - P): their Chebyshev
// distance on the grid, capped at R (the far group, rings >= r^ and the prefix tokens).
static inline RIPPLE_HOST_DEVICE int ripple_group(int W, int R, int gt, int gu) {
    int dr = gt / W - gu / W, dc = gt % W - gu % W;
    dr = dr < 0 ? -dr : dr, dc = dc < 0 ? -dc : dc;
    int d = dr > dc ? dr : dc;
    return d < R ? d : R;
}
