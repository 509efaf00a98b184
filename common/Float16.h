//===- Float16.h - exact binary16 and bfloat16 rounding -------------------===//
//
// The CPU backend emulates fp16/bf16 storage by keeping values in float (or double)
// and rounding them to the narrow format on every store. For that emulation to be
// an oracle for the GPU, the rounding must be bit-exact IEEE round-to-nearest-even
// (what __float2half_rn / __float2bfloat16_rn do): subnormals kept, overflow to
// +-inf, NaN stays NaN. Header-only and dependency-free so that both the compiler
// (constant folding) and the runtime can use it.
//===----------------------------------------------------------------------===//
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mantissa {

namespace detail {

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Rounds |x| (finite, non-zero) to a binary format with `mantBits` explicit
/// mantissa bits, smallest normal exponent `emin` and largest exponent `emax`,
/// returning the rounded value as a double (every such value is exact in double).
/// Working from the double directly matters: double -> float -> half rounds twice,
/// and a double just above a half-way point of the narrow format can first round
/// *onto* the half-way point in float and then tie-to-even the wrong way.
inline double roundDoubleToFormat(double x, int mantBits, int emin, int emax) {
  if (!std::isfinite(x) || x == 0.0)
    return x; // NaN (payload kept), inf and signed zero are already representable.
  double ax = std::fabs(x);
  int e;
  std::frexp(ax, &e); // ax = f * 2^e, f in [0.5, 1): the leading bit is 2^(e-1).
  int lead = e - 1;
  if (lead < emin)
    lead = emin; // Subnormal range: the quantum stays that of the smallest binade.
  // Scaling by a power of two is exact, so nearbyint sees the true value; in the
  // default floating-point environment it rounds to nearest, ties to even.
  int quantumExp = lead - mantBits;
  double r = std::ldexp(std::nearbyint(std::ldexp(ax, -quantumExp)), quantumExp);
  if (r >= std::ldexp(1.0, emax + 1))
    r = HUGE_VAL; // Rounded past the largest finite value: overflow to infinity.
  return std::signbit(x) ? -r : r;
}

} // namespace detail

/// float -> IEEE binary16 bits, round to nearest even. NaNs stay NaN (quieted, sign
/// and the top payload bits kept); |x| >= 65520 becomes inf.
inline uint16_t floatToHalfBits(float f) {
  uint32_t x = detail::floatBits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {
    if (ax == 0x7F800000u)
      return uint16_t(sign | 0x7C00u);
    return uint16_t(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  }
  if (ax >= 0x477FF000u) // 65520 = 65504 + half an ulp: ties go to even = 2^16 = inf.
    return uint16_t(sign | 0x7C00u);
  if (ax >= 0x38800000u) { // >= 2^-14: a normal half.
    // Add just under half an ulp plus the kept lsb: the carry implements RNE and may
    // ripple into the exponent, which is exactly the right result.
    uint32_t rounded = ax + 0xFFFu + ((ax >> 13) & 1u);
    return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
  }
  // Subnormal half (or zero): the result is round(|x| / 2^-24) as an integer.
  uint32_t e = ax >> 23;
  if (e < 102) // |x| < 2^-25: below half the smallest subnormal (2^-25 itself ties to 0).
    return uint16_t(sign);
  uint32_t m = (ax & 0x7FFFFFu) | 0x800000u; // |x| = m * 2^(e - 150)
  uint32_t shift = 126 - e;                  // 14..24
  uint32_t q = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u)))
    ++q; // May become 0x400, the smallest normal: still the right encoding.
  return uint16_t(sign | q);
}

inline float halfBitsToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1Fu;
  uint32_t m = h & 0x3FFu;
  if (e == 0) {
    // Zero or subnormal: m * 2^-24 is exact in float.
    float v = float(m) * 5.9604644775390625e-8f;
    return detail::bitsFloat(detail::floatBits(v) | sign);
  }
  if (e == 31)
    return detail::bitsFloat(sign | 0x7F800000u | (m << 13));
  return detail::bitsFloat(sign | ((e + 112u) << 23) | (m << 13));
}

/// float -> bfloat16 bits, round to nearest even (bf16 shares float's exponent
/// range, so float subnormals round in place and overflow carries into inf).
inline uint16_t floatToBF16Bits(float f) {
  uint32_t x = detail::floatBits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u)
    return uint16_t((x >> 16) | 0x40u); // NaN: keep it NaN even if the payload was low.
  return uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16BitsToFloat(uint16_t b) { return detail::bitsFloat(uint32_t(b) << 16); }

inline float roundToF16(float x) { return halfBitsToFloat(floatToHalfBits(x)); }
inline float roundToBF16(float x) { return bf16BitsToFloat(floatToBF16Bits(x)); }

/// Correct rounding from double (see roundDoubleToFormat for why not via float).
inline double roundToF16(double x) { return detail::roundDoubleToFormat(x, 10, -14, 15); }
inline double roundToBF16(double x) { return detail::roundDoubleToFormat(x, 7, -126, 127); }

} // namespace mantissa
