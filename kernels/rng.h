// Counter-based random numbers: value i of stream `key` is a pure function of (key, i), so
// every rank (and later every GPU thread) draws the same numbers without sharing a state.
// Also the one byte hash of the project (checkpoint checksums, replica checks, vocabularies).
// Header-only and free of any other madtrain header: the lowest layer (kernels/) includes it,
// and so may every layer above.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t rng_mix(uint64_t x) {  // splitmix64 finaliser
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// A stream key from a seed and up to three integers (e.g. seed, purpose, index).
static inline uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    return rng_mix(rng_mix(rng_mix(rng_mix(seed) ^ a) ^ b) ^ c);
}

static inline uint64_t rng_u64(uint64_t key, uint64_t i) {
    return rng_mix(key ^ rng_mix(i));
}

// Uniform in (0, 1): 53 random bits, never exactly 0 (log() of it is safe).
static inline double rng_uniform(uint64_t key, uint64_t i) {
    return ((rng_u64(key, i) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline double rng_normal(uint64_t key, uint64_t i) {  // Box-Muller, one value per i
    double u1 = rng_uniform(key, 2 * i), u2 = rng_uniform(key, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Uniform integer in [0, n) (n small next to 2^64, so the modulo bias is negligible).
static inline uint64_t rng_below(uint64_t key, uint64_t i, uint64_t n) {
    return rng_u64(key, i) % n;
}

// A sequential generator for code that draws many numbers in order (data generation).
typedef struct {
    uint64_t key, counter;
} Rng;

static inline uint64_t rng_next(Rng *r) {
    return rng_u64(r->key, r->counter++);
}
static inline double rng_next_uniform(Rng *r) {
    return rng_uniform(r->key, r->counter++);
}
static inline uint64_t rng_next_below(Rng *r, uint64_t n) {
    return rng_next(r) % n;
}

// FNV-1a 64 of n bytes: the checksum stored in checkpoints (docs/checkpoints.md), so its value
// for given bytes must never change.
static inline uint64_t hash_fnv1a64(const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
