// The CUDA twins of the op table (fp32, device pointers). Each kernels/cuda/<op>.cu mirrors
// kernels/cpu/<op>.c: same argument names and layouts, backward adds into its input gradients.
// CUDA_OPS has the table's uniform signature (OpDef_f32 over device buffers), so the parity
// suite pairs every CPU row with its twin by name.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "../ops.h"

extern const OpDef_f32 CUDA_OPS[];
extern const int N_CUDA_OPS;
const OpDef_f32 *cuda_op_find(const char *name);

int mt_cuda_device_count(void);
// Matrix products in fp32 (the default) or bf16 with fp32 accumulation (precision: bf16).
enum { MT_FP32 = 0, MT_BF16 = 1 };
void mt_cuda_set_precision(int precision);
void mt_cuda_count_bytes(long long delta);
size_t mt_cuda_memory_peak(int reset);
void mt_cuda_device_name(int dev, char *name, size_t n);
// Ends the process (through the hook, MPI_Abort in a multi-rank run) after printing
// "madtrain: error: [rank r] <call> failed: <what> (<file>:<line>)".
void mt_cuda_fail(const char *call, const char *what, const char *file, int line);
extern void (*mt_cuda_fatal_hook)(int code);
extern int mt_cuda_rank;

void matmul_forward_cuda(float *out, const float *inp, const float *w, int N, int C, int OC);
void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, int N, int C, int OC);
void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                          double eps);
void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, const float *rstd, int N, int C);
void embedding_forward_cuda(float *out, const int *ids, const float *wte, int N, int C);
void embedding_backward_cuda(float *dwte, const float *dout, const int *ids, int N, int C);
void gelu_forward_cuda(float *out, const float *inp, size_t n);
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n);
void swiglu_forward_cuda(float *out, const float *inp, int N, int F);
void swiglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F);
void gate_forward_cuda(float *out, const float *gate_pre, const float *x, size_t n);
void gate_backward_cuda(float *dgate_pre, float *dx, const float *dout, const float *gate_pre,
                        const float *x, size_t n);
void rope_forward_cuda(float *out_btc3, const float *qkv_btc3, int B, int T, int C, int H,
                       double base);
void rope_backward_cuda(float *dqkv_btc3, const float *dout_btc3, int B, int T, int C, int H,
                        double base);
// saved: att_bhtt [B,H,T,T] then q, k, v permuted to [B,H,T,D] (3 B T C floats)
size_t attention_softmax_saved_cuda(int B, int T, int C, int H);
void attention_softmax_forward_cuda(float *out_btc, float *saved, const float *qkv_btc3, int B,
                                    int T, int C, int H);
void attention_softmax_backward_cuda(float *dqkv_btc3, const float *dout_btc,
                                     const float *qkv_btc3, const float *saved, int B, int T,
                                     int C, int H);
void crossentropy_forward_cuda(float *loss, const float *logits, const int *targets, int N,
                               int V);
void crossentropy_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                const int *targets, int N, int V);
// causal linear attention, chunkwise, every feature map (fmap: the map's parameters, dfmap their
// gradients: circulant's r); saved: den [B,H,T]
void attention_linear_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                   const float *const *fmap, const OpShape *s);
void attention_linear_backward_cuda(float *dqkv_btc3, float *const *dfmap, const float *dout_btc,
                                    const float *out_btc, const float *den_bht,
                                    const float *qkv_btc3, const float *const *fmap,
                                    const OpShape *s);
// the feature maps alone (the feature_map op): phi(q), phi(k) [B,H,T,m]
void feature_map_forward_cuda(float *phiq_bhtm, float *phik_bhtm, const float *qkv_btc3,
                              const float *const *fmap, const OpShape *s);
void feature_map_backward_cuda(float *dqkv_btc3, float *const *dfmap, const float *dphiq_bhtm,
                               const float *dphik_bhtm, const float *qkv_btc3,
                               const float *const *fmap, const OpShape *s);
// circulant FAVOR+ projection z [rows, m] = W xt of rows xt [rows, D] (cuFFT), and its
// backward: dxt = W^T g (overwritten), dr += the gradient of the rows r (when dr)
void circulant_project_cuda(float *z, const float *xt, const float *r_bd, const float *s_bd,
                            int rows, int D, int m);
void circulant_project_backward_cuda(float *dxt, float *dr, const float *g, const float *xt,
                                     const float *r_bd, const float *s_bd, int rows, int D, int m);
// log-linear attention (Fenwick buckets weighted by lambda = softplus(lam_pre + lam_bias)),
// every feature map; saved: den [B,H,T]
void attention_loglinear_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                      const float *lam_pre_bthl, const float *lam_bias_hl,
                                      const float *const *fmap, const OpShape *s);
void attention_loglinear_backward_cuda(float *dqkv_btc3, float *dlam_pre_bthl,
                                       float *dlam_bias_hl, float *const *dfmap,
                                       const float *dout_btc, const float *out_btc,
                                       const float *den_bht, const float *qkv_btc3,
                                       const float *lam_pre_bthl, const float *lam_bias_hl,
                                       const float *const *fmap, const OpShape *s);
// linear attention with an HSS state (u_basis [m, Ru], v_basis [D, Rv]); saved: den [B,H,T]
void attention_hss_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                const float *u_basis, const float *v_basis,
                                const float *const *fmap, const OpShape *s);
void attention_hss_backward_cuda(float *dqkv_btc3, float *const *dfmap, const float *dout_btc,
                                 const float *out_btc, const float *den_bht,
                                 const float *qkv_btc3, const float *u_basis,
                                 const float *v_basis, const float *const *fmap,
                                 const OpShape *s);
// causal Hydra attention (heads = channels, cosine kernel)
void attention_hydra_forward_cuda(float *out_btc, const float *qkv_btc3, const OpShape *s);
void attention_hydra_backward_cuda(float *dqkv_btc3, const float *dout_btc, const float *qkv_btc3,
                                   const OpShape *s);
void conv_causal_forward_cuda(float *out_btc, const float *x_btc, const float *w_ck, int B, int T,
                              int Ch, int K);
void conv_causal_backward_cuda(float *dx_btc, float *dw_ck, const float *dout_btc,
                               const float *x_btc, const float *w_ck, int B, int T, int Ch, int K);
// AdamW on n elements of the flat buffers (one call per tensor of the parameter table), the
// arguments of the Backend's adamw row.
void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n,
                       float step_size, float beta1, float beta2, float eps, float decay,
                       float inv_bias_c2);

#ifdef __cplusplus
}
#endif
