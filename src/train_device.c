// The device a run trains on (device: auto | cpu | cuda) and how its gradients are summed
// across ranks (comm.backend: auto | mpi | nccl).
#include <string.h>

#include "train_internal.h"
#include "util.h"
#ifdef MT_WITH_CUDA
#include "../comm/comm_nccl.h"
#include "../kernels/cuda/ops_cuda.h"
#endif

#ifdef MT_WITH_CUDA
static Comm *fatal_comm;  // a failed CUDA call on any rank ends every rank
static void cuda_fatal(int code) {
    comm_abort(fatal_comm, code);
}
#endif

int select_backend(const Config *cfg, Comm *comm, const Backend_f32 **k, int *gpus_on_node,
                   char *describe, size_t dn, char *err, size_t errlen) {
    *k = &BACKEND_CPU_f32;
    int gpus = 0;
#ifdef MT_WITH_CUDA
    gpus = mt_cuda_device_count();
#endif
    *gpus_on_node = gpus;
    int want = cfg->device == DEVICE_AUTO ? (gpus > 0 ? DEVICE_CUDA : DEVICE_CPU) : cfg->device;
    if (want == DEVICE_CPU) {
        if (cfg->precision == PRECISION_BF16) {
            snprintf(err, errlen, "precision: bf16 needs device: cuda (the cpu backend is fp32)");
            return -1;
        }
        snprintf(describe, dn, "device cpu");
        return 0;
    }
#ifndef MT_WITH_CUDA
    (void)comm;
    snprintf(err, errlen,
             "device: cuda, but this madtrain was built without CUDA (nvcc and NCCL not found, or "
             "-DMADTRAIN_WITH_CUDA=OFF)");
    return -1;
#else
    if (gpus < 1) {
        snprintf(err, errlen, "device: cuda, but no CUDA device is visible on this node");
        return -1;
    }
    fatal_comm = comm;
    mt_cuda_rank = comm->rank;
    mt_cuda_fatal_hook = cuda_fatal;
    int dev = comm_cuda_select_device(comm);
    *k = BACKEND_CUDA;
    mt_cuda_set_precision(cfg->precision == PRECISION_BF16 ? MT_BF16 : MT_FP32);
    char name[128];
    mt_cuda_device_name(dev, name, sizeof(name));
    snprintf(describe, dn, "device cuda:%d (%s) | %s", dev, name,
             cfg->precision == PRECISION_BF16 ? "bf16 matmuls, fp32 accumulate" : "fp32");
    return 0;
#endif
}

// comm.backend on top of the device. NCCL needs a GPU per rank, so ranks that share one reduce
// through MPI (host-staged).
static int pick_device(const Config *cfg, Comm *comm, Device *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->reduce = REDUCE_HOST;
    int gpus;
    char where[160];
    if (select_backend(cfg, comm, &d->k, &gpus, where, sizeof(where), err, errlen)) return -1;
    if (d->k == &BACKEND_CPU_f32) {
        if (cfg->comm_backend == COMM_NCCL) {
            snprintf(err, errlen, "comm.backend: nccl needs device: cuda (this run is on the cpu)");
            return -1;
        }
        snprintf(d->describe, sizeof(d->describe), "%s%s", where,
                 comm->world > 1 ? " | comm mpi" : "");
        return 0;
    }
    int shared = comm->local_world > gpus;
    int nccl = cfg->comm_backend == COMM_NCCL || (cfg->comm_backend == COMM_AUTO && !shared);
    if (nccl && shared) {
        snprintf(err, errlen,
                 "comm.backend: nccl needs one GPU per rank (%d ranks on this node share %d "
                 "GPU(s)); use comm.backend: mpi",
                 comm->local_world, gpus);
        return -1;
    }
    d->reduce = nccl ? REDUCE_NCCL : REDUCE_STAGED;
    snprintf(d->describe, sizeof(d->describe), "%s | comm %s", where,
             nccl ? "nccl" : "mpi (host-staged)");
    return 0;
}

int device_open(const Config *cfg, Comm *comm, Device *d) {
    char err[1400];
    // The device checks read each node's own GPUs, so ranks can disagree (nodes that differ):
    // all learn whether any failed before a collective (NCCL's start) could wait on it.
    int failed = pick_device(cfg, comm, d, err, sizeof(err)) != 0;
    double anyone[2] = {failed, comm->rank == 0 && failed};
    comm_allreduce_sum_f64(comm, anyone, 2);
    if (anyone[0] > 0) {
        if (failed && (comm->rank == 0 || anyone[1] == 0)) {
            if (comm->world > 1 && comm->rank)
                fprintf(stderr, "madtrain: error: [rank %d] %s\n", comm->rank, err);
            else
                fprintf(stderr, "madtrain: error: %s\n", err);
        }
        return MT_EXIT_USAGE;
    }
#ifdef MT_WITH_CUDA
    if (d->reduce == REDUCE_NCCL) d->nccl = comm_nccl_init(comm);
#endif
    return 0;
}

void device_close(Device *d) {
#ifdef MT_WITH_CUDA
    comm_nccl_free(d->nccl);
#endif
    d->nccl = NULL;
}
