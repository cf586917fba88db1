// The device a run trains on (device: auto | cpu | cuda) and how its gradients are summed
// across ranks (comm.backend: auto | mpi | nccl).
#include <stdlib.h>
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
        snprintf(describe, dn, "device cpu (OpenBLAS kernels %s)", blas_kernels());
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

static void append(char *buf, size_t n, const char *text) {
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s", text);
}

// The checks each rank makes alone (no collective: ranks may disagree, see device_open).
static int pick_device(const Config *cfg, Comm *comm, Device *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->reduce = REDUCE_HOST;
    int gpus;
    if (select_backend(cfg, comm, &d->k, &gpus, d->describe, sizeof(d->describe), err, errlen))
        return -1;
    if (d->k == &BACKEND_CPU_f32 && cfg->comm_backend == COMM_NCCL) {
        snprintf(err, errlen, "comm.backend: nccl needs device: cuda (this run is on the cpu)");
        return -1;
    }
    return 0;
}

// Every rank prints nothing or one line: rank 0 when it failed, else each rank that failed.
// Returns whether any rank failed (the same on every rank).
static int any_failed(Comm *comm, int failed, const char *err) {
    double anyone[2] = {failed, comm->rank == 0 && failed};
    comm_allreduce_sum_f64(comm, anyone, 2);
    if (failed && (comm->rank == 0 || anyone[1] == 0)) {
        if (comm->world > 1 && comm->rank)
            fprintf(stderr, "madtrain: error: [rank %d] %s\n", comm->rank, err);
        else
            fprintf(stderr, "madtrain: error: %s\n", err);
    }
    return anyone[0] > 0;
}

#ifdef MT_WITH_CUDA
static void format_uuid(const unsigned char *u, char *out, size_t n) {
    snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

// comm.backend on top of the device, the same on every rank. NCCL needs a GPU per rank, so
// when ranks share one (the same UUID on a node, whatever each rank's device number) all
// reduce through MPI (host-staged). A collective: every rank calls it.
static int choose_reduce(const Config *cfg, Comm *comm, Device *d) {
    char err[512] = "";
    int on_gpu = d->k != &BACKEND_CPU_f32;
    unsigned char mine[16] = {0};
    if (on_gpu) mt_cuda_device_uuid(mine);
    unsigned char *node = xcalloc((size_t)comm->local_world, 16);
    comm_node_allgather(comm, mine, node, 16);
    int a = 0, b = 0, shared_here = comm_gpus_shared(node, comm->local_world, &a, &b);
    char uuid[64] = "";
    if (shared_here) format_uuid(node + 16 * a, uuid, sizeof(uuid));
    free(node);
    // Ranks on a GPU, and nodes whose ranks share one (counted by their local rank 0).
    double counts[2] = {on_gpu, shared_here && comm->local_rank == 0};
    comm_allreduce_sum_f64(comm, counts, 2);
    int gpu_ranks = (int)counts[0], shared = counts[1] > 0;
    if (gpu_ranks != 0 && gpu_ranks != comm->world) {
        // device: auto on nodes that differ: one all-reduce cannot mix host and device ranks.
        snprintf(err, sizeof(err),
                 "device: %d of %d ranks found a GPU; set device: cpu, or cuda with a GPU "
                 "visible to every rank",
                 gpu_ranks, comm->world);
        return any_failed(comm, comm->rank == 0, err);
    }
    if (!on_gpu) {
        if (comm->world > 1) append(d->describe, sizeof(d->describe), " | comm mpi");
        return 0;
    }
    int nccl = cfg->comm_backend == COMM_NCCL || (cfg->comm_backend == COMM_AUTO && !shared);
    if (nccl && shared) {
        snprintf(err, sizeof(err),
                 "comm.backend: nccl needs one GPU per rank (local ranks %d and %d of this node "
                 "share %s); use comm.backend: mpi",
                 a, b, uuid);
        return any_failed(comm, shared_here && comm->local_rank == 0, err);
    }
    d->reduce = nccl ? REDUCE_NCCL : REDUCE_STAGED;
    append(d->describe, sizeof(d->describe), nccl ? " | comm nccl" : " | comm mpi (host-staged)");
    return 0;
}
#endif

int device_open(const Config *cfg, Comm *comm, Device *d) {
    char err[1400];
    // The device checks read each node's own GPUs, so ranks can disagree (nodes that differ):
    // all learn whether any failed before a collective (NCCL's start) could wait on it.
    if (any_failed(comm, pick_device(cfg, comm, d, err, sizeof(err)) != 0, err))
        return MT_EXIT_USAGE;
#ifdef MT_WITH_CUDA
    if (choose_reduce(cfg, comm, d)) return MT_EXIT_USAGE;
    if (d->reduce == REDUCE_NCCL) d->nccl = comm_nccl_init(comm);
#else
    if (comm->world > 1) append(d->describe, sizeof(d->describe), " | comm mpi");
#endif
    return 0;
}

void device_nccl_allgather(const Device *d, float *all, const size_t *at) {
#ifdef MT_WITH_CUDA
    comm_nccl_allgather_slices_f32(d->nccl, all, at);
#else
    (void)d, (void)all, (void)at;
#endif
}

void device_close(Device *d) {
#ifdef MT_WITH_CUDA
    comm_nccl_free(d->nccl);
#endif
    d->nccl = NULL;
}
