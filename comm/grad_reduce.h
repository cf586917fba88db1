// The data-parallel gradient all-reduce, in buckets: the flat gradient buffer is cut into
// fixed ranges (comm.bucket_mb), and a bucket starts reducing as soon as backward reports that
// every gradient in it is final (the model's on_grads_final hook), so communication overlaps
// the rest of backward. Three ways, one interface:
//   host   the gradients are host memory (CPU backend): MPI, non-blocking
//   staged device gradients copied to the host per bucket, MPI, copied back (ranks that share
//          a GPU, or no NCCL)
//   nccl   device gradients reduced in place by NCCL on a communication stream
// The sum is exact for any bucketing: buckets only change when each element is sent.
#pragma once
#include <stddef.h>

#include "../kernels/backend.h"
#include "comm.h"

typedef enum { REDUCE_HOST = 0, REDUCE_STAGED = 1, REDUCE_NCCL = 2 } ReduceMode;

typedef struct GradReducer GradReducer;

// grads: n floats on backend k's device. nccl: the NCCL communicator (REDUCE_NCCL), else NULL.
GradReducer *grad_reducer_create(Comm *c, const Backend_f32 *k, ReduceMode mode, void *nccl,
                                 float *grads, size_t n, size_t bucket_elems);
void grad_reducer_free(GradReducer *r);
// A new step: no bucket started yet.
void grad_reducer_begin(GradReducer *r);
// The gradients [from, n) are final: start every bucket inside that range not yet started.
void grad_reducer_ready(GradReducer *r, size_t from);
// ZeRO-1: each bucket is summed onto the owners of its parameters alone (owners [world + 1]:
// rank r owns [owners[r], owners[r + 1])), a reduce-scatter in bucket pieces; NULL: all-reduce.
// Host and staged modes (the NCCL mode all-reduces).
void grad_reducer_owners(GradReducer *r, const size_t *owners);
// Starts what is left and waits until every bucket holds the sum over ranks (with owners: each
// rank's own slice does; the rest of its buffer is left as it was or partly summed).
void grad_reducer_finish(GradReducer *r);
int grad_reducer_buckets(const GradReducer *r);
// The model hook: ctx is a GradReducer.
void grad_reducer_hook(void *ctx, size_t from);
