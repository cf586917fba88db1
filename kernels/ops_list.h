// The table of ops, one row each (no include guard: included with OP defined, X-macro style).
// OP(x) names the row object op_x that kernels/cpu/<file>.c defines (kernels/cpu/ops_table.c
// for the model's own ops; a mixer's row sits in its own CPU file with its kernels), and the
// CUDA twin cuda_op_x that kernels/cuda/<file>.cu defines (a row without one is refused on
// device: cuda). Adding a mixer: its two files and one line here (docs/adding-a-mixer.md).
OP(matmul)
OP(rmsnorm)
OP(layernorm)
OP(bias)
OP(embedding)
OP(gelu)
OP(gelu_erf)
OP(swiglu)
OP(gate)
OP(rope)
OP(conv_causal)
OP(crossentropy)
OP(feature_map)
// mixers, in --help order
OP(softmax)
OP(linear)
OP(favor)
OP(circulant_favor)
OP(cosformer)
OP(loglinear)
OP(cos_loglinear)
OP(hss)
OP(hydra)
OP(decay)
OP(deltanet)
OP(gated_deltanet)
OP(gla)
OP(mamba2)
