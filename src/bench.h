#pragma once
#include "../comm/comm.h"

// `madtrain bench ...` (argv[0] = "bench"); returns the exit code.
int bench_main(int argc, char **argv, Comm *comm);
