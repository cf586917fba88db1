// Which ranks of a node share a GPU (comm_gpus_shared), decided from the GPUs' UUIDs as the
// trainer gathers them over the node's ranks; CPU-only, since the decision is a pure function.
#include <stdio.h>
#include <string.h>

#include "../comm/comm.h"

static int failures = 0;
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond)) {                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
            failures++;                                 \
        }                                               \
    } while (0)

// A node's list: rank r's UUID ends in gpu[r] (0: the rank has no GPU, an all-zero UUID).
static void node(unsigned char *uuids, const int *gpu, int n) {
    memset(uuids, 0, 16 * (size_t)n);
    for (int r = 0; r < n; r++)
        if (gpu[r]) uuids[16 * r] = 0xA7, uuids[16 * r + 15] = (unsigned char)gpu[r];
}

int main(void) {
    unsigned char u[16 * 8];
    int a = -1, b = -1;

    // One GPU per rank, each rank launched with its own CUDA_VISIBLE_DEVICES: every rank sees
    // device 0 (a device count of 1 with 4 ranks on the node), yet no two share a GPU.
    int own[4] = {1, 2, 3, 4};
    node(u, own, 4);
    CHECK(!comm_gpus_shared(u, 4, &a, &b), "4 ranks on 4 GPUs reported as sharing");

    // 4 ranks round-robin on 2 GPUs (local rank mod 2): ranks 0 and 2 share first.
    int two[4] = {1, 2, 1, 2};
    node(u, two, 4);
    CHECK(comm_gpus_shared(u, 4, &a, &b) && a == 0 && b == 2,
          "4 ranks on 2 GPUs: got shared=%d pair (%d, %d), expected (0, 2)",
          comm_gpus_shared(u, 4, &a, &b), a, b);

    // A later pair only: ranks 3 and 5 on the same GPU.
    int late[6] = {1, 2, 3, 4, 5, 4};
    node(u, late, 6);
    CHECK(comm_gpus_shared(u, 6, &a, &b) && a == 3 && b == 5, "pair (3, 5) not found (got %d, %d)",
          a, b);

    // Ranks without a GPU (all-zero UUIDs) never count as sharing, with each other or anyone.
    int cpu[3] = {0, 0, 1};
    node(u, cpu, 3);
    CHECK(!comm_gpus_shared(u, 3, &a, &b), "ranks without a GPU reported as sharing one");

    // UUIDs that differ in one middle byte only are different GPUs.
    node(u, own, 2);
    memcpy(u + 16, u, 16);
    u[16 + 7] ^= 1;
    CHECK(!comm_gpus_shared(u, 2, &a, &b), "UUIDs differing in byte 7 reported as one GPU");

    // One rank alone never shares.
    node(u, own, 1);
    CHECK(!comm_gpus_shared(u, 1, &a, &b), "a single rank reported as sharing");

    if (failures) return 1;
    printf("gpu sharing from UUIDs: all checks passed\n");
    return 0;
}
