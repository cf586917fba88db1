// Compares two final_state.bin files (parameters, AdamW m, AdamW v), section by section:
// `params_diff A B --bitwise` or `params_diff A B REL_TOL`, where the relative difference of a
// section is max|a - b| / max|a| over it.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load(const char *path, uint64_t *n) {
    FILE *f = fopen(path, "rb");
    char magic[8];
    if (!f || fread(magic, 1, 8, f) != 8 || memcmp(magic, "MTSTATE1", 8) ||
        fread(n, sizeof(*n), 1, f) != 1) {
        fprintf(stderr, "params_diff: cannot read '%s'\n", path);
        exit(2);
    }
    float *p = malloc(sizeof(float) * 3 * *n);
    if (fread(p, sizeof(float), 3 * *n, f) != 3 * *n) {
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
    int bitwise = !strcmp(argv[3], "--bitwise"), ok = 1;
    const char *names[3] = {"params", "adam_m", "adam_v"};
    for (int s = 0; s < 3; s++) {
        const float *x = a + s * na, *y = b + s * na;
        double maxdiff = 0, maxabs = 0;
        uint64_t differ = 0;
        for (uint64_t i = 0; i < na; i++) {
            double d = fabs((double)x[i] - y[i]);
            maxdiff = d > maxdiff ? d : maxdiff;
            maxabs = fabs(x[i]) > maxabs ? fabs(x[i]) : maxabs;
            differ += memcmp(&x[i], &y[i], sizeof(float)) != 0;
        }
        double rel = maxabs > 0 ? maxdiff / maxabs : maxdiff;
        int sok = bitwise ? differ == 0 : rel <= atof(argv[3]);
        ok &= sok;
        printf("%s %s: %llu values, %llu differ bitwise, max|a-b| %.3g, relative %.3g (%s %s)\n",
               sok ? "ok" : "FAIL", names[s], (unsigned long long)na, (unsigned long long)differ,
               maxdiff, rel, bitwise ? "required" : "tolerance", bitwise ? "bitwise" : argv[3]);
    }
    return ok ? 0 : 1;
}
