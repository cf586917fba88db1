// The trainer's side of context parallelism (parallel.context; the mixers' side is in
// mixer_layer.c): which slice of which rows a rank holds, and the per-example figures that
// need every slice of an example.
#include <string.h>

#include "train_internal.h"

ContextGroup context_group(Comm *comm, int size, int T) {
    ContextGroup g = {.rank = comm->rank % size, .size = size, .comm = comm};
    g.first = comm->rank - g.rank;
    g.pos0 = g.rank * (T / size);
    return g;
}

void context_slice_rows(int *buf, int64_t n, int T, const ContextGroup *g) {
    if (!buf || g->size <= 1) return;
    int Tl = T / g->size;
    // Row i moves from i T + pos0 to i Tl: never past its source, so in place in row order.
    for (int64_t i = 0; i < n; i++)
        memmove(buf + i * Tl, buf + i * T + g->pos0, sizeof(int) * (size_t)Tl);
}

void context_row_counts(const Model_f32 *m, const int *targets, int n_rows, int64_t first,
                        double *rows) {
    int T = m->T;
    for (int i = 0; i < n_rows; i++)
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)i * T + t;
            if (targets[n] < 0) continue;
            rows[2 * (first + i)] += m->predictions[n] == targets[n];
            rows[2 * (first + i) + 1] += 1;
        }
}

void context_example_acc(const double *rows, int64_t n, double *acc_sum, double *examples) {
    *acc_sum = 0, *examples = 0;
    for (int64_t i = 0; i < n; i++)
        if (rows[2 * i + 1] > 0) *acc_sum += rows[2 * i] / rows[2 * i + 1], *examples += 1;
}
