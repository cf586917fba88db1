#include "../attention_ripple.h"
#include "cuda_common.cuh"
extern "C" const CudaKernels cuda_op_ripple = {NULL, NULL, NULL};
