// A training step timed by phase on the device's own clock (train.profile_step): the data,
// forward by layer, backward by layer, the wait for the gradient all-reduce, the norm and the
// optimizer. Marks are recorded behind the queued work (CUDA events on the compute stream) and
// read once the step is over, so profiling adds no synchronisation inside the step beyond the
// ones the step already has. A phase's time is from the mark before it to its own mark: on a
// GPU, the device time of the work queued between two marks; what overlaps the compute stream
// (NCCL on its own stream) shows only where the compute stream waits for it.
#pragma once
#include "../kernels/backend.h"

typedef struct {
    const Backend_f32 *k;
    int n;                          // marks recorded; mark 0 is the step's start
    char label[BACKEND_MARKS][48];  // mark i ends the phase labelled label[i]
} PhaseMarks;

typedef struct {
    char label[48];
    double ms;
    int count;  // marks with this label (micro-steps of an accumulation)
} PhaseRow;

void phases_begin(PhaseMarks *p, const Backend_f32 *k);
// Ends the phase running since the last mark; labels repeat across micro-steps and sum. Marks
// beyond BACKEND_MARKS join the last one.
void phases_mark(PhaseMarks *p, const char *label);
// The model's on_phase hook: ctx is a PhaseMarks ("forward layer", 3 -> "forward layer 3").
void phases_model_hook(void *ctx, const char *stage, int layer);
// Waits for the last mark and sums each label's intervals, in the order labels first appear;
// returns the number of rows (at most max) and the step's total milliseconds in *total_ms.
int phases_rows(const PhaseMarks *p, PhaseRow *rows, int max, double *total_ms);
