//===- Hash.h - FNV-1a, the one content hash of Mantissa -------------------===//
//
// Used for parameter initialisation keys (Init.h), generated kernel names
// (mt_ew_<hash>), and the source hash that keys compiled kernels in a plan and in
// the NVRTC cache. Not cryptographic: it names content, it does not authenticate it.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mantissa {

inline constexpr uint64_t kFnv1a64Basis = 0xcbf29ce484222325ULL;

/// FNV-1a 64 of `n` bytes, continuing from `h` (the basis to start). Every single-byte
/// change changes the result: each step is a bijection of h for a given byte.
inline uint64_t fnv1a64(const void *data, size_t n, uint64_t h = kFnv1a64Basis) {
  const unsigned char *p = static_cast<const unsigned char *>(data);
  for (size_t i = 0; i < n; ++i)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

inline uint64_t fnv1a64(std::string_view text) { return fnv1a64(text.data(), text.size()); }

/// 16 lower-case hex digits.
inline std::string hex16(uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)value);
  return buf;
}

} // namespace mantissa
