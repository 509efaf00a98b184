// The range statistics of inspect --numerics against the formats' known limits:
// fp16's largest finite value 65504 (65520 and above round to infinity), its smallest
// subnormal 2^-24 (2^-25 and below round to zero, ties to even); bf16's smallest
// subnormal 2^-133 and largest finite value (2 - 2^-7) * 2^127.
#include "runtime/train/Numerics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace mantissa;

namespace {

TEST(RangeStats, Fp16Limits) {
  std::vector<float> v = {65504.0f, 65519.0f, 65520.0f, 1e6f, std::ldexp(1.0f, -24),
                          std::ldexp(1.5f, -25), std::ldexp(1.0f, -25), 1e-30f, 0.0f, INFINITY};
  RangeStats s = rangeStats(v.data(), v.size(), 1.0);
  EXPECT_EQ(s.count, 10);
  EXPECT_EQ(s.zeros, 1);
  EXPECT_EQ(s.nonFinite, 1);
  EXPECT_EQ(s.fp16Overflow, 2);  // 65520 and 1e6
  EXPECT_EQ(s.fp16Underflow, 2); // 2^-25 (a tie, to even: zero) and 1e-30; 1.5 * 2^-25 rounds up
  EXPECT_EQ(s.bf16Overflow, 0);
  EXPECT_EQ(s.bf16Underflow, 0);
}

TEST(RangeStats, Bf16LimitsAndScale) {
  std::vector<float> v = {std::ldexp(1.0f, -134), std::ldexp(1.0f, -133), 3.0e38f};
  RangeStats s = rangeStats(v.data(), v.size(), 1.0);
  EXPECT_EQ(s.bf16Underflow, 1); // 2^-134 is half the smallest subnormal: ties to even, zero
  EXPECT_EQ(s.bf16Overflow, 0);
  // A loss scale of 2^20 lifts 2^-30 out of fp16's underflow and pushes 0.1 past 65504.
  std::vector<float> g = {std::ldexp(1.0f, -30), 0.1f};
  RangeStats unscaled = rangeStats(g.data(), g.size(), 1.0);
  RangeStats scaled = rangeStats(g.data(), g.size(), std::ldexp(1.0, 20));
  EXPECT_EQ(unscaled.fp16Underflow, 1);
  EXPECT_EQ(unscaled.fp16Overflow, 0);
  EXPECT_EQ(scaled.fp16Underflow, 0);
  EXPECT_EQ(scaled.fp16Overflow, 1);
}

TEST(RangeStats, ExponentHistogram) {
  std::vector<float> v = {1.0f, 1.5f, 0.25f, -8.0f, 0.0f};
  RangeStats s = rangeStats(v.data(), v.size(), 1.0);
  EXPECT_EQ(s.exponents[size_t(0 - kMinExponent)], 2); // 1 and 1.5
  EXPECT_EQ(s.exponents[size_t(-2 - kMinExponent)], 1);
  EXPECT_EQ(s.exponents[size_t(3 - kMinExponent)], 1);
  EXPECT_DOUBLE_EQ(s.share(s.zeros), 0.2);
}

} // namespace
