// Bit-exact fp16/bf16 rounding against hand-derived bit patterns.
#include "common/Float16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace mantissa;

namespace {
float f(uint32_t bits) { return detail::bitsFloat(bits); }
} // namespace

TEST(Float16, ExactValuesRoundTrip) {
  EXPECT_EQ(floatToHalfBits(0.0f), 0x0000);
  EXPECT_EQ(floatToHalfBits(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalfBits(1.0f), 0x3C00);
  EXPECT_EQ(floatToHalfBits(-2.0f), 0xC000);
  EXPECT_EQ(floatToHalfBits(0.5f), 0x3800);
  EXPECT_EQ(floatToHalfBits(65504.0f), 0x7BFF);                   // largest finite
  EXPECT_EQ(floatToHalfBits(6.103515625e-05f), 0x0400);           // 2^-14, smallest normal
  EXPECT_EQ(floatToHalfBits(5.9604644775390625e-08f), 0x0001);    // 2^-24, smallest subnormal
  EXPECT_EQ(floatToHalfBits(6.0975551605224609375e-05f), 0x03FF); // largest subnormal
  EXPECT_EQ(halfBitsToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(halfBitsToFloat(0x0001), 5.9604644775390625e-08f);
  EXPECT_EQ(halfBitsToFloat(0x03FF), 6.0975551605224609375e-05f);
  EXPECT_EQ(halfBitsToFloat(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::signbit(halfBitsToFloat(0x8000)));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF))
      continue; // NaNs are checked separately
    EXPECT_EQ(floatToHalfBits(halfBitsToFloat(uint16_t(h))), h) << std::hex << h;
  }
}

TEST(Float16, OverflowToInfinity) {
  EXPECT_EQ(floatToHalfBits(65519.996f), 0x7BFF); // below the half-way point
  EXPECT_EQ(floatToHalfBits(65520.0f), 0x7C00);   // tie: 0x7BFF is odd, so up to inf
  EXPECT_EQ(floatToHalfBits(-65520.0f), 0xFC00);
  EXPECT_EQ(floatToHalfBits(1e10f), 0x7C00);
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(roundToF16(65519.0f), 65504.0f);
  EXPECT_TRUE(std::isinf(roundToF16(65520.0f)));
  EXPECT_EQ(roundToF16(65519.0), 65504.0);
  EXPECT_EQ(roundToF16(65519.99999999), 65504.0);
  EXPECT_TRUE(std::isinf(roundToF16(65520.0)));
  EXPECT_TRUE(std::isinf(roundToF16(-1e300)) && roundToF16(-1e300) < 0);
}

TEST(Float16, TiesToEven) {
  // 1 + 2^-11 is half-way between 1 (even, 0x3C00) and 1 + 2^-10 (odd): down.
  EXPECT_EQ(floatToHalfBits(1.00048828125f), 0x3C00);
  // 1 + 3 * 2^-11 is half-way between 1+2^-10 (odd) and 1+2^-9 (even): up.
  EXPECT_EQ(floatToHalfBits(1.00146484375f), 0x3C02);
  // Just above a tie rounds up.
  EXPECT_EQ(floatToHalfBits(f(0x3F801001)), 0x3C01);
  // Subnormal ties: 2^-25 (half the smallest subnormal) goes to 0, 3 * 2^-25 to 2 * 2^-24.
  EXPECT_EQ(floatToHalfBits(2.98023223876953125e-08f), 0x0000);
  EXPECT_EQ(floatToHalfBits(8.94069671630859375e-08f), 0x0002);
  EXPECT_EQ(floatToHalfBits(f(0x33000001)), 0x0001); // just above 2^-25
  EXPECT_EQ(floatToHalfBits(1e-9f), 0x0000);
  EXPECT_EQ(floatToHalfBits(-1e-9f), 0x8000);
  // Rounding up out of the subnormals into the smallest normal.
  EXPECT_EQ(floatToHalfBits(6.1005353927612305e-05f), 0x0400); // 2^-14 - 2^-25 (tie, odd->up)
  // Rounding that carries into the exponent: 2047/1024 + tie -> 2.
  EXPECT_EQ(floatToHalfBits(1.99951171875f), 0x4000);
}

TEST(Float16, NaNPreserved) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  uint16_t h = floatToHalfBits(nan);
  EXPECT_EQ(h & 0x7C00, 0x7C00);
  EXPECT_NE(h & 0x3FF, 0);
  EXPECT_TRUE(std::isnan(roundToF16(nan)));
  EXPECT_TRUE(std::isnan(roundToF16(-nan)));
  // A signalling NaN whose payload lies only in the low bits must not become inf.
  EXPECT_TRUE(std::isnan(roundToF16(f(0x7F800001))));
  EXPECT_TRUE(std::isnan(halfBitsToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(roundToF16(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(roundToBF16(f(0x7F800001))));
  EXPECT_TRUE(std::isnan(roundToBF16(std::numeric_limits<double>::quiet_NaN())));
}

TEST(Float16, DoubleRoundsOnceNotTwice) {
  // 1 + 2^-11 + 2^-40: just above the f16 tie, so the correct result is 1 + 2^-10.
  // Via float it would first become exactly the tie and then go down to 1.
  double x = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  EXPECT_EQ(float(x), 1.00048828125f); // the trap is real
  EXPECT_EQ(roundToF16(float(x)), 1.0f);
  EXPECT_EQ(roundToF16(x), 1.0009765625);
  // Same for bf16: 1 + 2^-8 + 2^-40 must go up to 1 + 2^-7.
  double y = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  EXPECT_EQ(roundToBF16(y), 1.0078125);
  EXPECT_EQ(roundToBF16(float(y)), 1.0f);
  // Exact ties from double behave like float.
  EXPECT_EQ(roundToF16(1.00048828125), 1.0);
  EXPECT_EQ(roundToF16(1.00146484375), 1.001953125);
  EXPECT_EQ(roundToF16(5.9604644775390625e-08), 5.9604644775390625e-08);
  EXPECT_EQ(roundToF16(2.98023223876953125e-08), 0.0);
  EXPECT_EQ(roundToF16(std::nextafter(std::ldexp(1.0, -25), 1.0)), std::ldexp(1.0, -24));
  EXPECT_TRUE(std::signbit(roundToF16(-1e-30)));
  EXPECT_EQ(roundToF16(0.1), 0.0999755859375);
  // Float and double paths agree on every float that is a sample of the range.
  for (uint32_t bits = 0; bits < 0x7F800000u; bits += 0x1F3) {
    float v = f(bits);
    ASSERT_EQ(double(roundToF16(v)), roundToF16(double(v))) << std::hex << bits;
    ASSERT_EQ(double(roundToBF16(v)), roundToBF16(double(v))) << std::hex << bits;
  }
}

TEST(BFloat16, Values) {
  EXPECT_EQ(floatToBF16Bits(1.0f), 0x3F80);
  EXPECT_EQ(floatToBF16Bits(-2.0f), 0xC000);
  EXPECT_EQ(floatToBF16Bits(f(0x3F808000)), 0x3F80); // tie, even: down
  EXPECT_EQ(floatToBF16Bits(f(0x3F818000)), 0x3F82); // tie, odd: up
  EXPECT_EQ(floatToBF16Bits(f(0x3F808001)), 0x3F81); // above tie
  EXPECT_EQ(floatToBF16Bits(3.0e38f), 0x7F62);
  EXPECT_EQ(floatToBF16Bits(f(0x7F7F8000)), 0x7F80); // max bf16 + half ulp: tie to inf
  EXPECT_EQ(floatToBF16Bits(f(0x7F7F7FFF)), 0x7F7F);
  EXPECT_EQ(floatToBF16Bits(f(0x00010000)), 0x0001); // smallest bf16 subnormal
  EXPECT_EQ(floatToBF16Bits(f(0x00008000)), 0x0000); // half of it: tie to 0
  EXPECT_EQ(bf16BitsToFloat(0x4049), 3.140625f);
  EXPECT_EQ(roundToBF16(3.14159265f), 3.140625f);
  EXPECT_EQ(roundToBF16(3.14159265358979), 3.140625);
  EXPECT_TRUE(std::isinf(roundToBF16(3.4e38)));
  EXPECT_EQ(roundToBF16(std::ldexp(1.0, -133)), std::ldexp(1.0, -133));
  EXPECT_EQ(roundToBF16(std::ldexp(1.0, -134)), 0.0);
  EXPECT_EQ(roundToBF16(std::ldexp(1.5, -134)), std::ldexp(1.0, -133));
}
