// Collectives behind one interface. Backends: MPI (host buffers, comm_mpi.c) and a single-rank
// build without MPI (comm.c); NCCL for device buffers joins with the CUDA backend.
#pragma once
#include <stddef.h>

typedef struct {
    int rank, world;
    int local_rank, local_world;  // ranks on this node (for threads and, later, GPU choice)
} Comm;

void comm_init(Comm *c, int *argc, char ***argv);
void comm_finalize(Comm *c);
void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n);
void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n);
// Non-blocking in-place sum of a host buffer: started now, completed (with every other one
// started since) by comm_wait_pending; comm_progress lets the library move them meanwhile.
// Every rank starts the same sequence, as for any collective.
void comm_iallreduce_sum_f32(Comm *c, float *buf, size_t n);
void comm_progress(Comm *c);
void comm_wait_pending(Comm *c);
void comm_bcast_bytes(Comm *c, void *buf, size_t n, int root);
// ZeRO-1 (optim.zero): non-blocking in-place sum of buf onto rank `root` alone (the other
// ranks' buffers are unchanged), completed by comm_wait_pending like the all-reduces.
void comm_ireduce_sum_f32(Comm *c, float *buf, size_t n, int root);
// The flat buffer all is cut into the ranks' slices [at[r], at[r + 1]); every rank holds its
// own slice. allgather: every rank receives every slice (in place); gather: rank `root`
// receives them in all, the others send `mine` (their slice, anywhere) and receive nothing.
void comm_allgather_slices_f32(Comm *c, float *all, const size_t *at);
void comm_gather_slices_f32(Comm *c, const float *mine, float *all, const size_t *at, int root);
// Every rank of this node gets every node rank's `bytes` bytes, in local-rank order:
// all[local_rank * bytes, ...) is that rank's `mine`.
void comm_node_allgather(Comm *c, const void *mine, void *all, size_t bytes);
// Context parallelism: sends send_bytes of `send` to world rank `to` while receiving
// recv_bytes into `recv` from world rank `from` (either < 0: that half is skipped), blocking
// until both are done. Chains of these pass states and halos along a context group.
void comm_sendrecv_bytes(Comm *c, const void *send, size_t send_bytes, int to, void *recv,
                         size_t recv_bytes, int from);
// 1 when every rank passed the same value (replica checks), else 0; on every rank.
int comm_all_equal_u64(Comm *c, unsigned long long v);
// Ends every rank at once with this exit code (a failure on one rank must not hang the rest).
_Noreturn void comm_abort(Comm *c, int code);
// Prints "madtrain: error: <msg>" (with the rank when there are several) and ends all ranks.
_Noreturn void comm_fatal(Comm *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Which ranks of a node share a GPU, from the GPUs' UUIDs (cudaDeviceProp.uuid), not from
// device counts: a launcher that gives each rank its own CUDA_VISIBLE_DEVICES makes every
// rank see one device, numbered 0, while the GPUs differ. uuids: n entries of 16 bytes, one
// per local rank (comm_node_allgather); all zero for a rank without a GPU. Returns 1 and the
// first pair of local ranks *a < *b with the same non-zero UUID, else 0.
int comm_gpus_shared(const unsigned char *uuids, int n, int *a, int *b);
