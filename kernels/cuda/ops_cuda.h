// The CUDA twins of the op table (fp32, device pointers). Each kernels/cuda/<op>.cu mirrors
// kernels/cpu/<op>.c: same argument names and layouts, backward adds into its input gradients.
// A .cu file gives each of its rows a CudaKernels object cuda_op_<row> (kernels/ops_list.h);
// the CUDA row is the CPU row with these replaced, so nothing else is typed twice.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "../ops.h"

typedef struct {
    // NULL forward: no CUDA kernel yet (the row is refused on device: cuda)
    void (*forward)(const OpShape *s, const float *const *in, float *const *out, float *saved);
    void (*backward)(const OpShape *s, const float *const *in, const float *const *out,
                     const float *saved, const float *const *dout, float *const *din);
    size_t (*saved)(const OpShape *s);  // NULL: the CPU row's saved-activation size
} CudaKernels;
// The CUDA row of op table entry `index` (NULL without a kernel).
const OpDef_f32 *cuda_op_row(int index);

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
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int N, int C, double eps);
void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, int N, int C);
void bias_forward_cuda(float *out, const float *b, int N, int OC);
void bias_backward_cuda(float *db, const float *dout, int N, int OC);
void embedding_forward_cuda(float *out, const int *ids, const float *wte, int N, int C);
void embedding_backward_cuda(float *dwte, const float *dout, const int *ids, int N, int C);
void gelu_forward_cuda(float *out, const float *inp, size_t n);
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n);
void gelu_erf_forward_cuda(float *out, const float *inp, size_t n);
void gelu_erf_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n);
void swiglu_forward_cuda(float *out, const float *inp, int N, int F);
void swiglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F);
void gate_forward_cuda(float *out, const float *gate_pre, const float *x, size_t n);
void gate_backward_cuda(float *dgate_pre, float *dx, const float *dout, const float *gate_pre,
                        const float *x, size_t n);
void rope_forward_cuda(float *out_btc3, const float *qkv_btc3, int B, int T, int C, int H,
                       double base, int pos0);
void rope_backward_cuda(float *dqkv_btc3, const float *dout_btc3, int B, int T, int C, int H,
                        double base, int pos0);
void crossentropy_forward_cuda(float *loss, const float *logits, const int *targets, int N, int V);
void crossentropy_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                const int *targets, int N, int V);
void conv_causal_forward_cuda(float *out_btc, const float *x_btc, const float *w_ck, int B, int T,
                              int Ch, int K);
void conv_causal_backward_cuda(float *dx_btc, float *dw_ck, const float *dout_btc,
                               const float *x_btc, const float *w_ck, int B, int T, int Ch, int K);
// the ViT path's ops (kernels/vision.h; kernels/cuda/vision.cu)
void dropout_forward_cuda(float *out, const float *in, size_t rows, int width, double p,
                          uint64_t key, uint64_t row0);
void dropout_backward_cuda(float *din, const float *dout, size_t rows, int width, double p,
                           uint64_t key, uint64_t row0);
void mean_pool_forward_cuda(float *out_bc, const float *x_btc, int B, int T, int C);
void mean_pool_backward_cuda(float *dx_btc, const float *dout_bc, int B, int T, int C);
void crossentropy_smooth_forward_cuda(float *loss, const float *logits, const int *targets, int N,
                                      int V, double smoothing);
void crossentropy_smooth_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                       const int *targets, int N, int V, double smoothing);
// AdamW on n elements of the flat buffers (one call per tensor of the parameter table), the
// arguments of the Backend's adamw row.
void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n,
                       float step_size, float beta1, float beta2, float eps, float decay,
                       float inv_bias_c2);

#ifdef __cplusplus
}
#endif
