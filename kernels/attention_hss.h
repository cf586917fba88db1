// HSS attention's options and tree (mixers.md section 8), shared by kernels/cpu/attention_hss.c
// and kernels/cuda/attention_hss.cu so both build the same tree from the same shape.
#pragma once
#include "feature_maps.h"

typedef struct {
    LinearOpts lin;  // first: the feature-map code reads the block as LinearOpts
    int hss_rank;    // rank r of the off-diagonal blocks
    int hss_leaf;    // leaf block width (head dim / 2^J: J tree levels)
} HssOpts;
OP_OPTIONS_STRUCT(HssOpts)

// Depth-by-depth ranks and column offsets of the bases U [m, Ru] and V [D, Rv]: depth l holds
// 2^l nodes, each with min(rows at depth l, rank) columns.
typedef struct {
    int m, D, J, rank;
    int ru[32], rv[32], cu[32], cv[32];  // per depth 1..J: ranks and column offsets in U, V
    int Ru, Rv;                          // columns of U [m, Ru] and V [D, Rv]
} HssTree;

static inline HssTree hss_tree_of(const OpShape *s) {
    const HssOpts o = OPT_OF(HssOpts, s);
    HssTree t;
    memset(&t, 0, sizeof(t));
    t.m = fmap_width_of(s), t.D = s->C / s->H, t.rank = o.hss_rank;
    while ((t.D >> t.J) > o.hss_leaf) t.J++;
    for (int l = 1; l <= t.J; l++) {
        t.ru[l] = (t.m >> l) < t.rank ? t.m >> l : t.rank;
        t.rv[l] = (t.D >> l) < t.rank ? t.D >> l : t.rank;
        t.cu[l] = t.Ru, t.cv[l] = t.Rv;
        t.Ru += t.ru[l], t.Rv += t.rv[l];
    }
    return t;
}
