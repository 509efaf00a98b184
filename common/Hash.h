//===- Hash.h - FNV-1a, the one content hash of Mantissa -------------------===//
//
// Used for parameter initialisation keys (Init.h), generated kernel names
// (mt_ew_<hash>), and the source hash that keys compiled kernels in a plan and in
// the NVRTC cache. Not cryptographic: it names content, it does not authenticate it.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mantissa {

inline uint64_t fnv1a64(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : text)
    h = (h ^ ch) * 0x100000001b3ULL;
  return h;
}

/// 16 lower-case hex digits.
inline std::string hex16(uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)value);
  return buf;
}

} // namespace mantissa
