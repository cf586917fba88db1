// cuFFT plans shared by the kernels that transform (circulant FAVOR+, circulant_diagonal, dplr).
#pragma once
#include <cufft.h>

#include "cuda_common.cuh"

#define CUFFT_CHECK(call)                                                                \
    do {                                                                                 \
        cufftResult r_ = (call);                                                         \
        if (r_ != CUFFT_SUCCESS) mt_cuda_fail(#call, "cuFFT error", __FILE__, __LINE__); \
    } while (0)

// The plan of a batched 1-D transform (length n, batch transforms, type) on stream 0, made once
// and kept. Packed rows make a shape per example length, so the cache is bounded: it evicts the
// least recently used plan, after the device has finished any transform queued on it. Fetch a
// handle where it is used: a later call may evict one held across it.
cufftHandle mt_cufft_plan(int n, int batch, cufftType type);
