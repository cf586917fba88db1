// The oscillator mixers' option blocks and widths (linoss, oscgate, oscgate_mve; mixers.md 16
// and 20), shared by the CPU rows and their CUDA twins so the two read one struct.
// All three map the layer's input projection, per token, to [b (2 m) | u (C)]: the oscillators'
// 2-channel forcing (LinOSS: Re and Im of B u; OscGate: Re and Im of b_t; the experiment's
// form: its z and y inputs) and the layer's input u, and write [state readout (2 m) | u (C)]:
// the layer's output projection W_o is then the readout C (Re(C y) is a real linear map of
// (Re y, Im y)) and, on the u columns, the skip D (a full C x C matrix, as the experiment's D).
#pragma once
#include "ops.h"

typedef struct {
    int chunk;         // steps per chunk of the scan (and between saved states)
    int oscillators;   // m (LinOSS's P)
    int form;          // linoss: 0 = IM (implicit), 1 = IMEX (symplectic)
    double dt;         // oscgate, oscgate_mve: the fixed step
    double zeta_bias;  // oscgate, oscgate_mve: b_ze at initialisation
} OscOpts;
OP_OPTIONS_STRUCT(OscOpts)

enum { LINOSS_IM = 0, LINOSS_IMEX = 1 };

// The experiment's clamp of omega (mixers.md 20), kept by both OscGate forms.
#define OSC_OMEGA_MIN 1e-4
#define OSC_OMEGA_MAX 100.0

typedef struct {
    int B, T, C, m, W, L, nc, form;  // W = 2 m + C: input 0 and output width
    double dt;
} OscDims;

static inline OscDims osc_dims(const OpShape *s) {
    OscOpts o = OPT_OF(OscOpts, s);
    OscDims d;
    d.B = s->B, d.T = s->T, d.C = s->C, d.m = o.oscillators, d.W = 2 * o.oscillators + s->C;
    d.L = s->T > 0 && s->T < o.chunk ? s->T : o.chunk;
    d.nc = s->T > 0 ? (s->T + d.L - 1) / d.L : 0;
    d.form = o.form, d.dt = o.dt;
    return d;
}
