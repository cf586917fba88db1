// The data layer's options (data/data_options.h) from a run's config.
#pragma once
#include "../data/data_options.h"
#include "config.h"

DataOptions data_options_from_config(const Config *c);
