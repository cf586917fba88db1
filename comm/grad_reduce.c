#include "grad_reduce.h"

#include <stdlib.h>

#ifdef MT_WITH_CUDA
#include "comm_nccl.h"
#endif

struct GradReducer {
    Comm *comm;
    const Backend_f32 *k;
    ReduceMode mode;
    void *nccl;
    float *grads, *staging;  // staging: host copy of the gradients (REDUCE_STAGED)
    size_t n, bucket;
    int n_buckets, next;   // buckets are started from the last (backward's order) to the first
    const size_t *owners;  // ZeRO-1: rank r's slice [owners[r], owners[r + 1]), or NULL
};

void grad_reducer_owners(GradReducer *r, const size_t *owners) {
    r->owners = owners;
}

// The bucket [lo, hi) of buf: all-reduced, or each owner's part summed onto its owner.
static void reduce_range(GradReducer *r, float *buf, size_t lo, size_t hi) {
    if (!r->owners) {
        comm_iallreduce_sum_f32(r->comm, buf + lo, hi - lo);
        return;
    }
    for (int q = 0; q < r->comm->world; q++) {
        size_t a = r->owners[q] > lo ? r->owners[q] : lo;
        size_t b = r->owners[q + 1] < hi ? r->owners[q + 1] : hi;
        if (a < b) comm_ireduce_sum_f32(r->comm, buf + a, b - a, q);
    }
}

GradReducer *grad_reducer_create(Comm *c, const Backend_f32 *k, ReduceMode mode, void *nccl,
                                 float *grads, size_t n, size_t bucket_elems) {
    GradReducer *r = calloc(1, sizeof(*r));
    r->comm = c, r->k = k, r->mode = mode, r->nccl = nccl, r->grads = grads, r->n = n;
    r->bucket = bucket_elems ? bucket_elems : 1;
    r->n_buckets = (int)((n + r->bucket - 1) / r->bucket);
    if (mode == REDUCE_STAGED) r->staging = malloc(sizeof(float) * (n ? n : 1));
    grad_reducer_begin(r);
    return r;
}

void grad_reducer_free(GradReducer *r) {
    if (!r) return;
    free(r->staging);
    free(r);
}

int grad_reducer_buckets(const GradReducer *r) {
    return r->n_buckets;
}

void grad_reducer_begin(GradReducer *r) {
    r->next = r->n_buckets - 1;
}

static void start_bucket(GradReducer *r, int b) {
    size_t lo = (size_t)b * r->bucket, hi = lo + r->bucket < r->n ? lo + r->bucket : r->n;
    switch (r->mode) {
        case REDUCE_HOST:
            reduce_range(r, r->grads, lo, hi);
            break;
        case REDUCE_STAGED:
            r->k->download(r->staging + lo, r->grads + lo, sizeof(float) * (hi - lo));
            reduce_range(r, r->staging, lo, hi);
            break;
        case REDUCE_NCCL:
#ifdef MT_WITH_CUDA
            if (r->owners)
                comm_nccl_bucket_reduce_owned(r->nccl, r->grads, lo, hi, r->owners);
            else
                comm_nccl_bucket_start(r->nccl, r->grads + lo, hi - lo);
#endif
            break;
    }
}

// One rank has nothing to sum; NCCL still runs then, so a 1-rank NCCL run tests its path.
static int idle(const GradReducer *r) {
    return r->comm->world == 1 && r->mode != REDUCE_NCCL;
}

void grad_reducer_ready(GradReducer *r, size_t from) {
    if (idle(r)) return;
    while (r->next >= 0 && (size_t)r->next * r->bucket >= from) start_bucket(r, r->next--);
    if (r->mode != REDUCE_NCCL) comm_progress(r->comm);
}

void grad_reducer_hook(void *ctx, size_t from) {
    grad_reducer_ready(ctx, from);
}

void grad_reducer_finish(GradReducer *r) {
    if (idle(r)) return;
    grad_reducer_ready(r, 0);
    if (r->mode == REDUCE_NCCL) {
#ifdef MT_WITH_CUDA
        comm_nccl_bucket_wait(r->nccl, 600);
#endif
        return;
    }
    comm_wait_pending(r->comm);
    if (r->mode == REDUCE_STAGED) r->k->upload(r->grads, r->staging, sizeof(float) * r->n);
}
