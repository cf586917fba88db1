// NCCL backend for device buffers: the communicator is created from an ncclUniqueId that
// rank 0 makes and broadcasts over the host communicator (MPI), so mpirun and srun both work.
#pragma once
#include <cuda_runtime.h>
#include <stddef.h>

#include "comm.h"

typedef struct NcclComm NcclComm;

// Picks this rank's GPU (local rank mod GPUs on the node) and returns its index.
int comm_cuda_select_device(const Comm *c);
NcclComm *comm_nccl_init(Comm *c);
void comm_nccl_free(NcclComm *n);
// In-place sum all-reduce of a device buffer on `stream` (asynchronous).
void comm_nccl_allreduce_sum_f32(NcclComm *n, float *buf, size_t count, cudaStream_t stream);
// Gradient buckets: start a sum all-reduce of buf on the communicator's own stream once the
// work queued so far on the default stream (the backward that wrote buf) is done; wait for
// every bucket started (polling, as comm_nccl_wait).
void comm_nccl_bucket_start(NcclComm *n, float *buf, size_t count);
void comm_nccl_bucket_wait(NcclComm *n, double timeout_s);
// ZeRO-1: the bucket [lo, hi) of buf summed onto the owners of its parts (rank q owns
// [owners[q], owners[q + 1])), started like a bucket's all-reduce, finished by bucket_wait.
void comm_nccl_bucket_reduce_owned(NcclComm *n, float *buf, size_t lo, size_t hi,
                                   const size_t *owners);
// ZeRO-1: every rank's slice [at[q], at[q + 1]) of the device buffer `all` to every rank
// (a broadcast per owner, grouped), after the default stream's work, waited for here.
void comm_nccl_allgather_slices_f32(NcclComm *n, float *all, const size_t *at);
// Waits for `stream` while polling NCCL's asynchronous error state, so a peer that died makes
// this rank abort its communicator and exit instead of hanging in a collective.
void comm_nccl_wait(NcclComm *n, cudaStream_t stream, double timeout_s);
