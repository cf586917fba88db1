// Compares two params.bin files: `params_diff A B --bitwise` or `params_diff A B REL_TOL`.
// The relative difference is max|a - b| / max|a| over the whole flat buffer.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load(const char *path, uint64_t *n) {
    FILE *f = fopen(path, "rb");
    char magic[8];
    if (!f || fread(magic, 1, 8, f) != 8 || memcmp(magic, "MTPARAMS", 8) ||
        fread(n, sizeof(*n), 1, f) != 1) {
        fprintf(stderr, "params_diff: cannot read '%s'\n", path);
        exit(2);
    }
    float *p = malloc(sizeof(float) * *n);
    if (fread(p, sizeof(float), *n, f) != *n) {
        fprintf(stderr, "params_diff: '%s' is truncated\n", path);
        exit(2);
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: params_diff A B (--bitwise | REL_TOL)\n");
        return 2;
    }
    uint64_t na, nb;
    float *a = load(argv[1], &na), *b = load(argv[2], &nb);
    if (na != nb) {
        printf("FAIL: %llu vs %llu parameters\n", (unsigned long long)na, (unsigned long long)nb);
        return 1;
    }
    double maxdiff = 0, maxabs = 0;
    uint64_t differ = 0;
    for (uint64_t i = 0; i < na; i++) {
        double d = fabs((double)a[i] - b[i]);
        maxdiff = d > maxdiff ? d : maxdiff;
        maxabs = fabs(a[i]) > maxabs ? fabs(a[i]) : maxabs;
        differ += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    }
    double rel = maxabs > 0 ? maxdiff / maxabs : maxdiff;
    int bitwise = !strcmp(argv[3], "--bitwise");
    int ok = bitwise ? differ == 0 : rel <= atof(argv[3]);
    printf("%s: %llu parameters, %llu differ bitwise, max|a-b| %.3g, relative %.3g (%s %s)\n",
           ok ? "ok" : "FAIL", (unsigned long long)na, (unsigned long long)differ, maxdiff, rel,
           bitwise ? "required" : "tolerance", bitwise ? "bitwise" : argv[3]);
    return ok ? 0 : 1;
}
