// train.profile_step: see phases.h.
#include "phases.h"

#include <stdio.h>
#include <string.h>

void phases_begin(PhaseMarks *p, const Backend_f32 *k) {
    p->k = k;
    p->n = 1;
    snprintf(p->label[0], sizeof(p->label[0]), "start");
    k->mark(0);
}

void phases_mark(PhaseMarks *p, const char *label) {
    int i = p->n < BACKEND_MARKS ? p->n++ : BACKEND_MARKS - 1;
    snprintf(p->label[i], sizeof(p->label[i]), "%s", label);
    p->k->mark(i);
}

void phases_model_hook(void *ctx, const char *stage, int layer) {
    char label[48];
    if (layer >= 0)
        snprintf(label, sizeof(label), "%s %d", stage, layer);
    else
        snprintf(label, sizeof(label), "%s", stage);
    phases_mark(ctx, label);
}

int phases_rows(const PhaseMarks *p, PhaseRow *rows, int max, double *total_ms) {
    int n = 0;
    *total_ms = p->n > 1 ? p->k->mark_ms(0, p->n - 1) : 0;
    for (int i = 1; i < p->n; i++) {
        double ms = p->k->mark_ms(i - 1, i);
        int r = 0;
        while (r < n && strcmp(rows[r].label, p->label[i])) r++;
        if (r == n) {
            if (n == max) continue;
            snprintf(rows[n].label, sizeof(rows[n].label), "%s", p->label[i]);
            rows[n].ms = 0, rows[n].count = 0;
            n++;
        }
        rows[r].ms += ms;
        rows[r].count++;
    }
    return n;
}
