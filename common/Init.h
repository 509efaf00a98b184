//===- Init.h - seeded parameter initialisation ---------------------------===//
//
// The one definition of a "uniform" parameter's initial values, shared by the
// compiler (which may store them in the plan) and the runtime (which regenerates
// them from a plan's initialiser spec): a splitmix64 stream keyed by the seed and
// the FNV-1a hash of the parameter's name, so each parameter's values are the same
// on every machine and do not depend on the other parameters. Integer arithmetic
// and one correctly rounded conversion per value: no libm, no platform drift.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Hash.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace mantissa {

inline uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// `count` values uniform in [-bound, bound).
inline std::vector<float> uniformInit(uint64_t seed, std::string_view name, int64_t count,
                                      double bound) {
  uint64_t state = seed ^ fnv1a64(name);
  std::vector<float> values(static_cast<size_t>(count));
  for (float &v : values) {
    double u = double(splitmix64(state) >> 11) * 0x1.0p-53; // [0, 1)
    v = float(-bound + 2.0 * bound * u);
  }
  return values;
}

} // namespace mantissa
