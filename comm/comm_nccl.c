#define _POSIX_C_SOURCE 200809L  // clock_gettime, nanosleep
#include "comm_nccl.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct NcclComm {
    Comm *host;
    ncclComm_t comm;
    // Buckets reduce on their own stream (non-blocking: the legacy default stream, where the
    // kernels run, must not serialise with it), each after an event that marks its gradients
    // as written.
    cudaStream_t stream;
    cudaEvent_t ready;
};

#define NCCL_CHECK(c, call)                                                                      \
    do {                                                                                         \
        ncclResult_t r_ = (call);                                                                \
        if (r_ != ncclSuccess)                                                                   \
            comm_fatal((c), 1, "%s failed: %s (%s:%d)", #call, ncclGetErrorString(r_), __FILE__, \
                       __LINE__);                                                                \
    } while (0)

#define CUDA_CHECK_C(c, call)                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess)                                                                   \
            comm_fatal((c), 1, "%s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, \
                       __LINE__);                                                                \
    } while (0)

int comm_cuda_select_device(const Comm *c) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1)
        comm_fatal((Comm *)c, 1, "device: cuda was asked for, but no CUDA device is visible");
    int dev = c->local_rank % n;
    CUDA_CHECK_C((Comm *)c, cudaSetDevice(dev));
    return dev;
}

NcclComm *comm_nccl_init(Comm *c) {
    NcclComm *n = calloc(1, sizeof(NcclComm));
    n->host = c;
    ncclUniqueId id;
    if (c->rank == 0) NCCL_CHECK(c, ncclGetUniqueId(&id));
    comm_bcast_bytes(c, &id, sizeof(id), 0);
    NCCL_CHECK(c, ncclCommInitRank(&n->comm, c->world, id, c->rank));
    CUDA_CHECK_C(c, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CUDA_CHECK_C(c, cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
    return n;
}

void comm_nccl_free(NcclComm *n) {
    if (!n) return;
    cudaEventDestroy(n->ready);
    cudaStreamDestroy(n->stream);
    ncclCommDestroy(n->comm);
    free(n);
}

void comm_nccl_bucket_start(NcclComm *n, float *buf, size_t count) {
    CUDA_CHECK_C(n->host, cudaEventRecord(n->ready, 0));
    CUDA_CHECK_C(n->host, cudaStreamWaitEvent(n->stream, n->ready, 0));
    comm_nccl_allreduce_sum_f32(n, buf, count, n->stream);
}

void comm_nccl_bucket_reduce_owned(NcclComm *n, float *buf, size_t lo, size_t hi,
                                   const size_t *owners) {
    CUDA_CHECK_C(n->host, cudaEventRecord(n->ready, 0));
    CUDA_CHECK_C(n->host, cudaStreamWaitEvent(n->stream, n->ready, 0));
    NCCL_CHECK(n->host, ncclGroupStart());
    for (int q = 0; q < n->host->world; q++) {
        size_t a = owners[q] > lo ? owners[q] : lo, b = owners[q + 1] < hi ? owners[q + 1] : hi;
        if (a < b)  // in place: the owner's part becomes the sum, the others' are left as they were
            NCCL_CHECK(n->host, ncclReduce(buf + a, buf + a, b - a, ncclFloat32, ncclSum, q,
                                           n->comm, n->stream));
    }
    NCCL_CHECK(n->host, ncclGroupEnd());
}

// NCCL's all-gather wants equal counts; the slices (whole blocks, optim.h) need not be equal,
// so each owner broadcasts its own, all in one group.
void comm_nccl_allgather_slices_f32(NcclComm *n, float *all, const size_t *at) {
    CUDA_CHECK_C(n->host, cudaEventRecord(n->ready, 0));
    CUDA_CHECK_C(n->host, cudaStreamWaitEvent(n->stream, n->ready, 0));
    NCCL_CHECK(n->host, ncclGroupStart());
    for (int q = 0; q < n->host->world; q++)
        if (at[q + 1] > at[q])
            NCCL_CHECK(n->host, ncclBroadcast(all + at[q], all + at[q], at[q + 1] - at[q],
                                              ncclFloat32, q, n->comm, n->stream));
    NCCL_CHECK(n->host, ncclGroupEnd());
    comm_nccl_wait(n, n->stream, 600);
}

void comm_nccl_bucket_wait(NcclComm *n, double timeout_s) {
    comm_nccl_wait(n, n->stream, timeout_s);
}

void comm_nccl_allreduce_sum_f32(NcclComm *n, float *buf, size_t count, cudaStream_t stream) {
    NCCL_CHECK(n->host, ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, n->comm, stream));
}

void comm_nccl_wait(NcclComm *n, cudaStream_t stream, double timeout_s) {
    struct timespec t0, now, nap = {0, 100000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        cudaError_t q = cudaStreamQuery(stream);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) CUDA_CHECK_C(n->host, q);
        ncclResult_t async;
        NCCL_CHECK(n->host, ncclCommGetAsyncError(n->comm, &async));
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited =
            (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
        if (async != ncclSuccess || (timeout_s > 0 && waited > timeout_s)) {
            ncclCommAbort(n->comm);
            comm_fatal(n->host, 1,
                       "NCCL collective did not complete (%s after %.0fs): a peer rank "
                       "failed or is unreachable",
                       async != ncclSuccess ? ncclGetErrorString(async) : "timeout", waited);
        }
        nanosleep(&nap, NULL);
    }
}
