// The layer around every mixer's core op: qkv projection -> [rotary] -> core -> [gate] -> W_o.
// Compiled twice (float and double) like the kernels.
#include <string.h>

#include "../kernels/real.h"
#include "model.h"

#define Op F(OpDef)

// Activation layout of one mixer layer, as offsets from its acts pointer.
typedef struct {
    size_t qkv, qkv_rot, core_saved, core_out, gate_pre, gated, total;
    size_t s_dcore, s_dcore_in, s_dqkv, s_dgated, s_dgate_pre, s_total;  // backward scratch
    const Op *core;
    OpShape shape;
    int rope, gate;
} MixerLayout;

static MixerLayout layout(const ModelConfig *cfg, int layer, int B, int T) {
    MixerLayout l;
    memset(&l, 0, sizeof(l));
    size_t N = (size_t)B * T, C = cfg->d_model, in[OP_MAX_IO], out[OP_MAX_IO], saved = 0;
    l.core = F(op_find)(MIXERS[cfg->mixer[layer]].core_op);
    l.shape = mixer_core_shape(cfg, B, T);
    l.core->sizes(&l.shape, in, out, &saved);
    l.rope = cfg->rope[layer];
    l.gate = cfg->gate;
    size_t off = 0;
    l.qkv = off, off += N * 3 * C;
    l.qkv_rot = off, off += l.rope ? N * 3 * C : 0;
    l.core_saved = off, off += saved;
    l.core_out = off, off += N * C;
    l.gate_pre = off, off += l.gate ? N * C : 0;
    l.gated = off, off += l.gate ? N * C : 0;
    l.total = off;
    off = 0;
    l.s_dcore = off, off += N * C;
    l.s_dcore_in = off, off += N * 3 * C;
    l.s_dqkv = off, off += l.rope ? N * 3 * C : 0;
    l.s_dgated = off, off += l.gate ? N * C : 0;
    l.s_dgate_pre = off, off += l.gate ? N * C : 0;
    l.s_total = off;
    return l;
}

size_t F(mixer_acts_size)(const ModelConfig *cfg, int layer, int B, int T) {
    return layout(cfg, layer, B, T).total;
}

size_t F(mixer_scratch_size)(const ModelConfig *cfg, int layer, int B, int T) {
    return layout(cfg, layer, B, T).s_total;
}

void F(mixer_forward)(const ModelConfig *cfg, int layer, int B, int T, real *y, const real *x,
                      real *const *w, real *acts) {
    MixerLayout l = layout(cfg, layer, B, T);
    int N = B * T, C = cfg->d_model;
    real *qkv = acts + l.qkv, *core_in = qkv, *core_out = acts + l.core_out, *readout = core_out;
    F(matmul_forward)(qkv, x, w[0], N, C, 3 * C);
    if (l.rope) {
        core_in = acts + l.qkv_rot;
        F(rope_forward)(core_in, qkv, B, T, C, cfg->n_heads, cfg->rope_base);
    }
    const real *core_inputs[1] = {core_in};
    real *core_outputs[1] = {core_out};
    l.core->forward(&l.shape, core_inputs, core_outputs, acts + l.core_saved);
    if (l.gate) {
        F(matmul_forward)(acts + l.gate_pre, x, w[2], N, C, C);
        readout = acts + l.gated;
        F(gate_forward)(readout, acts + l.gate_pre, core_out, (size_t)N * C);
    }
    F(matmul_forward)(y, readout, w[1], N, C, C);
}

void F(mixer_backward)(const ModelConfig *cfg, int layer, int B, int T, real *dx,
                       real *const *dw, const real *dy, const real *x, real *const *w,
                       const real *acts, real *scratch) {
    MixerLayout l = layout(cfg, layer, B, T);
    int N = B * T, C = cfg->d_model;
    const real *qkv = acts + l.qkv, *core_in = l.rope ? acts + l.qkv_rot : qkv;
    const real *core_out = acts + l.core_out;
    real *dcore = scratch + l.s_dcore;
    memset(scratch, 0, sizeof(real) * l.s_total);
    if (l.gate) {
        real *dgated = scratch + l.s_dgated, *dgate_pre = scratch + l.s_dgate_pre;
        F(matmul_backward)(dgated, dw[1], dy, acts + l.gated, w[1], N, C, C);
        F(gate_backward)(dgate_pre, dcore, dgated, acts + l.gate_pre, core_out, (size_t)N * C);
        F(matmul_backward)(dx, dw[2], dgate_pre, x, w[2], N, C, C);
    } else {
        F(matmul_backward)(dcore, dw[1], dy, core_out, w[1], N, C, C);
    }
    real *dcore_in = scratch + l.s_dcore_in;
    const real *core_inputs[1] = {core_in};
    const real *core_outputs[1] = {core_out};
    const real *core_douts[1] = {dcore};
    real *core_dins[1] = {dcore_in};
    l.core->backward(&l.shape, core_inputs, core_outputs, acts + l.core_saved, core_douts,
                     core_dins);
    real *dqkv = dcore_in;
    if (l.rope) {
        dqkv = scratch + l.s_dqkv;
        F(rope_backward)(dqkv, dcore_in, B, T, C, cfg->n_heads, cfg->rope_base);
    }
    F(matmul_backward)(dx, dw[0], dqkv, x, w[0], N, C, 3 * C);
}
