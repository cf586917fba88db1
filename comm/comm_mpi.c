// MPI backend: in-place all-reduce of host buffers. Large buffers go in chunks so counts stay
// within int range.
#include <mpi.h>
#include <stdlib.h>

#include "comm.h"

// The ranks of this process's node (comm_node_allgather), kept from comm_init to the end.
static MPI_Comm node_comm = MPI_COMM_NULL;

void comm_init(Comm *c, int *argc, char ***argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    // Ranks sharing a node, from the MPI library itself: right under mpirun and srun alike.
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node_comm);
    MPI_Comm_rank(node_comm, &c->local_rank);
    MPI_Comm_size(node_comm, &c->local_world);
}

void comm_finalize(Comm *c) {
    (void)c;
    MPI_Comm_free(&node_comm);
    MPI_Finalize();
}

static void allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem) {
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)k, type, MPI_SUM,
                      MPI_COMM_WORLD);
    }
}

void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n) {
    if (c->world > 1) allreduce(buf, n, MPI_FLOAT, sizeof(float));
}

void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n) {
    if (c->world > 1) allreduce(buf, n, MPI_DOUBLE, sizeof(double));
}

enum { MAX_PENDING = 4096 };
static MPI_Request pending[MAX_PENDING];
static int n_pending = 0;

void comm_iallreduce_sum_f32(Comm *c, float *buf, size_t n) {
    const size_t chunk = (size_t)1 << 30;
    if (c->world == 1) return;
    for (size_t off = 0; off < n; off += chunk) {
        if (n_pending == MAX_PENDING) comm_wait_pending(c);
        size_t k = n - off < chunk ? n - off : chunk;
        MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       &pending[n_pending++]);
    }
}

void comm_progress(Comm *c) {
    (void)c;
    int done;
    if (n_pending) MPI_Testall(n_pending, pending, &done, MPI_STATUSES_IGNORE);
}

void comm_wait_pending(Comm *c) {
    (void)c;
    MPI_Waitall(n_pending, pending, MPI_STATUSES_IGNORE);
    n_pending = 0;
}

void comm_ireduce_sum_f32(Comm *c, float *buf, size_t n, int root) {
    const size_t chunk = (size_t)1 << 30;
    if (c->world == 1) return;
    for (size_t off = 0; off < n; off += chunk) {
        if (n_pending == MAX_PENDING) comm_wait_pending(c);
        size_t k = n - off < chunk ? n - off : chunk;
        MPI_Ireduce(c->rank == root ? MPI_IN_PLACE : buf + off, buf + off, (int)k, MPI_FLOAT,
                    MPI_SUM, root, MPI_COMM_WORLD, &pending[n_pending++]);
    }
}

// Slice counts and offsets as MPI's int arrays (a slice of 2^31 floats or more, 8 GiB of one
// rank's share of one buffer, is refused rather than truncated).
static void slices(Comm *c, const size_t *at, int *counts, int *displs) {
    for (int r = 0; r < c->world; r++) {
        if (at[r + 1] - at[r] > (size_t)1 << 30 || at[r] > (size_t)1 << 30)
            comm_fatal(c, 1, "optim.zero: a parameter slice beyond 2^30 floats is not supported");
        counts[r] = (int)(at[r + 1] - at[r]), displs[r] = (int)at[r];
    }
}

void comm_allgather_slices_f32(Comm *c, float *all, const size_t *at) {
    if (c->world == 1) return;
    int *counts = malloc(sizeof(int) * 2 * (size_t)c->world), *displs = counts + c->world;
    slices(c, at, counts, displs);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, counts, displs, MPI_FLOAT,
                   MPI_COMM_WORLD);
    free(counts);
}

void comm_gather_slices_f32(Comm *c, const float *mine, float *all, const size_t *at, int root) {
    int *counts = malloc(sizeof(int) * 2 * (size_t)c->world), *displs = counts + c->world;
    slices(c, at, counts, displs);
    int n = counts[c->rank];
    if (c->rank == root && mine == all + at[c->rank])
        MPI_Gatherv(MPI_IN_PLACE, n, MPI_FLOAT, all, counts, displs, MPI_FLOAT, root,
                    MPI_COMM_WORLD);
    else
        MPI_Gatherv(mine, n, MPI_FLOAT, all, counts, displs, MPI_FLOAT, root, MPI_COMM_WORLD);
    free(counts);
}

void comm_bcast_bytes(Comm *c, void *buf, size_t n, int root) {
    (void)c;
    MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
}

void comm_node_allgather(Comm *c, const void *mine, void *all, size_t bytes) {
    (void)c;
    MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, node_comm);
}

void comm_sendrecv_bytes(Comm *c, const void *send, size_t send_bytes, int to, void *recv,
                         size_t recv_bytes, int from) {
    (void)c;
    enum { TAG_CONTEXT = 17 };  // apart from every collective's matching
    MPI_Sendrecv(send, to >= 0 ? (int)send_bytes : 0, MPI_BYTE, to >= 0 ? to : MPI_PROC_NULL,
                 TAG_CONTEXT, recv, from >= 0 ? (int)recv_bytes : 0, MPI_BYTE,
                 from >= 0 ? from : MPI_PROC_NULL, TAG_CONTEXT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

int comm_all_equal_u64(Comm *c, unsigned long long v) {
    if (c->world == 1) return 1;
    // max(v) and max(~v) = ~min(v) in one reduction: equal everywhere iff max == min.
    unsigned long long pair[2] = {v, ~v};
    MPI_Allreduce(MPI_IN_PLACE, pair, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return pair[0] == ~pair[1];
}

void comm_abort(Comm *c, int code) {
    if (c && c->world > 1) MPI_Abort(MPI_COMM_WORLD, code);
    MPI_Finalize();
    exit(code);
}
