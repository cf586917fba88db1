#include "comm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
int comm_all_equal_u64(Comm *c, unsigned long long v) {
    (void)c, (void)v;
    return 1;
}
void comm_abort(Comm *c, int code) {
    (void)c;
    exit(code);
}
#endif
