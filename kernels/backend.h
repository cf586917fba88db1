// The device a model runs on, as one table of functions: memory, the kernels model.c and
// mixer_layer.c call directly, and the few reductions the trainer needs. The CPU table
// (kernels/cpu/backend.c) and its CUDA twin (kernels/cuda/backend.cu) have the same rows, so
// the model and the trainer are written once and run on either; mixer cores are reached
// through the backend's op table (ops_find), so a mixer is still one row there.
#pragma once
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif
// how many marks (mark, mark_ms) a backend holds at once
#define BACKEND_MARKS 512
#define OPS_REAL float
#define OPS_S(n) n##_f32
#include "backend_decl.inc"
#undef OPS_REAL
#undef OPS_S
#define OPS_REAL double
#define OPS_S(n) n##_f64
#include "backend_decl.inc"
#undef OPS_REAL
#undef OPS_S

// The CUDA table (fp32), NULL in a build without CUDA. ids/targets arguments are device
// pointers there, like every buffer.
extern const Backend_f32 *const BACKEND_CUDA;
// CUDA builds only: the 16-byte UUID (cudaDeviceProp.uuid) of the GPU this process uses, the
// one identity that tells two ranks on one GPU from two GPUs each numbered 0 in its own
// CUDA_VISIBLE_DEVICES. A failed query ends the process (mt_cuda_fail).
void mt_cuda_device_uuid(unsigned char uuid[16]);
#ifdef __cplusplus
}
#endif
