// DeltaNet and Gated DeltaNet (kernels/cpu/attention_delta.c): CUDA kernels not written yet,
// so device: cuda refuses both rows with one line.
#include "cuda_common.cuh"

extern "C" const CudaKernels cuda_op_deltanet = {NULL, NULL, NULL};
extern "C" const CudaKernels cuda_op_gated_deltanet = {NULL, NULL, NULL};
