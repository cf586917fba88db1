// The MAD suite's six tasks (data/tasks_mad.c), called from data/synthetic.c.
#pragma once
#include <stddef.h>

#include "../kernels/rng.h"
#include "synthetic.h"

enum { MAD_MAX_MOTIF = 8 };  // fuzzy_recall's longest key or value motif (data.*_motif_size)

// ids[T] and targets[T] of one example of t->task (a DATA_TASK_* of the MAD suite) from the
// example's stream r; split decides the recall tasks' targets (SPLIT_TRAIN: next tokens).
void mad_example(const Task *t, Rng *r, int split, int *ids, int *targets);
// Whether the data.* keys make a valid instance of o->task (a MAD task named name); on error,
// one line naming the keys in err and -1.
int mad_task_check(const DataOptions *o, const char *name, char *err, size_t errlen);
