#include "comm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void comm_fatal(Comm *c, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c && c->world > 1)
        fprintf(stderr, "madtrain: error: [rank %d] %s\n", c->rank, msg);
    else
        fprintf(stderr, "madtrain: error: %s\n", msg);
    fflush(stderr);
    comm_abort(c, code);
}

int comm_gpus_shared(const unsigned char *uuids, int n, int *a, int *b) {
    static const unsigned char none[16] = {0};
    for (int i = 0; i < n; i++) {
        if (!memcmp(uuids + 16 * i, none, 16)) continue;
        for (int j = i + 1; j < n; j++)
            if (!memcmp(uuids + 16 * i, uuids + 16 * j, 16)) {
                *a = i, *b = j;
                return 1;
            }
    }
    return 0;
}

#ifndef MT_WITH_MPI
// Single-rank build: every collective is the identity.
void comm_init(Comm *c, int *argc, char ***argv) {
    (void)argc, (void)argv;
    c->rank = 0, c->world = 1, c->local_rank = 0, c->local_world = 1;
}
void comm_finalize(Comm *c) {
    (void)c;
}
void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n) {
    (void)c, (void)buf, (void)n;
}
void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n) {
    (void)c, (void)buf, (void)n;
}
void comm_iallreduce_sum_f32(Comm *c, float *buf, size_t n) {
    (void)c, (void)buf, (void)n;
}
void comm_progress(Comm *c) {
    (void)c;
}
void comm_wait_pending(Comm *c) {
    (void)c;
}
void comm_bcast_bytes(Comm *c, void *buf, size_t n, int root) {
    (void)c, (void)buf, (void)n, (void)root;
}
void comm_ireduce_sum_f32(Comm *c, float *buf, size_t n, int root) {
    (void)c, (void)buf, (void)n, (void)root;
}
void comm_allgather_slices_f32(Comm *c, float *all, const size_t *at) {
    (void)c, (void)all, (void)at;
}
void comm_gather_slices_f32(Comm *c, const float *mine, float *all, const size_t *at, int root) {
    (void)c, (void)root;
    if (all != mine) memmove(all + at[0], mine, sizeof(float) * (at[1] - at[0]));
}
void comm_node_allgather(Comm *c, const void *mine, void *all, size_t bytes) {
    (void)c;
    memcpy(all, mine, bytes);
}
// One rank has no neighbour: parallel.context is refused above 1 before any call.
void comm_sendrecv_bytes(Comm *c, const void *send, size_t send_bytes, int to, void *recv,
                         size_t recv_bytes, int from) {
    (void)send, (void)send_bytes, (void)recv, (void)recv_bytes;
    if (to >= 0 || from >= 0) comm_fatal(c, 3, "context parallelism needs the MPI build");
}
int comm_all_equal_u64(Comm *c, unsigned long long v) {
    (void)c, (void)v;
    return 1;
}
void comm_abort(Comm *c, int code) {
    (void)c;
    exit(code);
}
#endif
