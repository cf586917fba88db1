#pragma once
#include "../comm/comm.h"

// `madtrain ladder ...` (argv[0] = "ladder"): the compute-matched ladder of src/ladder.c;
// returns the exit code.
int ladder_main(int argc, char **argv, Comm *comm);
