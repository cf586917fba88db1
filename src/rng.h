// Moved to kernels/rng.h (the lowest layer, so kernels and data may include it); this header
// forwards for the files that still include it here (src/model.c, src/bench.c and three tests
// owned by another change).
#pragma once
#include "../kernels/rng.h"
