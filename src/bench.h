#pragma once
#include "../comm/comm.h"
#include "model.h"

// `madtrain bench ...` (argv[0] = "bench"); returns the exit code.
int bench_main(int argc, char **argv, Comm *comm);

// Model FLOPs per trained token of a model at sequence length T (llm.c's convention: 6 per
// matmul weight, plus 3x the mixer cores' forward FLOPs from their op-table rows).
double bench_flops_per_token(const ModelConfig *mc, int T);
