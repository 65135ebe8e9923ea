/* test_rng.h: the small seeded random generators the tests draw their cases
 * from, written once. Each test program keeps its own state, a uint64_t
 * seeded with a constant, so every run draws the same cases and a failure
 * repeats. Two generators, because the tests' recorded cases came from both:
 * xorshift64 (Marsaglia's 13/7/17; state never 0) and splitmix64 (any state).
 * Header-only (static inline): each test is a program of its own. bench/
 * keeps its own copies, so that benchmark inputs never move with the tests. */
#ifndef NEARESTD_TEST_RNG_H
#define NEARESTD_TEST_RNG_H

#include <math.h>
#include <stdint.h>

/* Advances *state by one xorshift64 step and returns the new state. */
static inline uint64_t test_rng_xorshift64(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Advances *state by one splitmix64 step and returns the mixed output. */
static inline uint64_t test_rng_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The top 53 bits of `bits` as a uniform double in [0, 1). */
static inline double test_rng_unit(uint64_t bits) {
    return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

/* `bits` as a uniform double in [lo, hi). */
static inline double test_rng_range(uint64_t bits, double lo, double hi) {
    return lo + (hi - lo) * test_rng_unit(bits);
}

/* `bits` as a uniform value in [lo_deg, hi_deg] on the microdegree grid, so
 * that it survives "%.6f" text unchanged. */
static inline double test_rng_microdeg(uint64_t bits, double lo_deg, double hi_deg) {
    int64_t a = llround(lo_deg * 1e6), b = llround(hi_deg * 1e6);
    return (double)(a + (int64_t)(bits % (uint64_t)(b - a + 1))) / 1e6;
}

/* A mixing hash of 32 bits (xorshift-multiply, Wang/Jenkins style): filters
 * keep a pseudo-random share of handles by hash % 100. */
static inline uint32_t test_rng_hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

#endif
