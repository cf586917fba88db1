// The checked helpers of data/util.h (xmalloc, write_file_atomic, ...) and the trainer's own.
#pragma once
#include <stddef.h>

#include "../data/util.h"

void format_duration(double seconds, char *out, size_t n);
