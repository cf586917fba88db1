// State tracking and index copy (data/tasks_state.c), called from data/synthetic.c.
#pragma once
#include <stddef.h>

#include "../kernels/rng.h"
#include "synthetic.h"

enum {
    STATE_LENGTH_BUCKETS = 4,  // test lengths are reported in this many equal buckets
    STATE_INDEX_COPY_N = 8,    // index_copy's content tokens
};

// data.group by name ("S5", "A5", "Z60", "A4xZ5"): 0, or -1 with one line in err.
int group_parse(const char *name, TaskGroup *g, char *err, size_t errlen);
// ids, targets and levels (the length bucket 1..4 of a scored test position, else 0) [T].
void state_example(const Task *t, Rng *r, int split, int *ids, int *targets, int *levels);
int state_task_vocab(const Task *t);
// The tokens state_example fills before its padding (r seeded as for state_example): its
// first draw is the example's length, so this costs one draw.
int state_example_tokens(const Task *t, Rng *r, int split);
// Whether the data.* keys make a valid instance of o->task (named name): 0, or -1 and err.
int state_task_check(const DataOptions *o, const char *name, char *err, size_t errlen);
