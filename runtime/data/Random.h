//===- Random.h - portable seeded random numbers (runtime/data) -----------===//
//
// splitmix64 for seeding, xoshiro256** for streams, and our own conversions to
// doubles and bounded integers: the output is the same on every compiler and
// standard library (std::*_distribution is not).
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Init.h" // splitmix64, shared with parameter initialisation

#include <cmath>
#include <cstdint>

namespace mantissa {

/// A well-mixed 64-bit value from a list of keys (seed, epoch, sample, ...).
inline uint64_t mixKeys(uint64_t a, uint64_t b, uint64_t c = 0) {
  uint64_t s = a;
  uint64_t h = splitmix64(s);
  s = h ^ b;
  h = splitmix64(s);
  s = h ^ c;
  return splitmix64(s);
}

class Xoshiro256 {
public:
  explicit Xoshiro256(uint64_t seed) {
    uint64_t s = seed;
    for (uint64_t &w : s_)
      w = splitmix64(s);
  }
  uint64_t next() {
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, bound), bound >= 1, unbiased (rejection).
  uint64_t below(uint64_t bound) {
    uint64_t limit = ~0ull - (~0ull % bound); // multiple of bound
    uint64_t r;
    do
      r = next();
    while (r >= limit);
    return r % bound;
  }
  /// Standard normal (Box–Muller on our own uniforms).
  double normal() {
    double u1 = 1.0 - uniform(); // (0, 1]
    double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

} // namespace mantissa
