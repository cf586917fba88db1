// Shared by the libFuzzer harnesses: a private temporary folder per process, whole-file
// writes, and HDF5 with its error stack silenced (a bad file is the normal case here, and a
// printed stack per input would bury the fuzzer's own log).
#pragma once
#include <stddef.h>
#include <stdint.h>

// The process's own folder under $TMPDIR (or /tmp), made on first use, removed at exit
// together with the files fuzz_path() named.
const char *fuzz_dir(void);
// <fuzz_dir>/<name>; the returned buffer is static, one per name slot (slot < 8).
const char *fuzz_path(int slot, const char *name);
// 0, or aborts: a harness that cannot write its input tests nothing.
void fuzz_write(const char *path, const uint8_t *data, size_t size);
void fuzz_quiet_hdf5(void);
// Inputs that hang libhdf5 itself (1.10.8, Debian 12), not madtrain: a global heap collection
// ("GCOL") holding an object of index 0 and size 0 makes H5HG__cache_heap_deserialize loop
// forever (it never advances) when a variable-length string attribute is read. The shard and
// checkpoint harnesses skip such inputs so the fuzzers keep testing madtrain's code.
int fuzz_hdf5_known_hang(const uint8_t *data, size_t size);
