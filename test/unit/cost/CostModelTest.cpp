// The roofline cost model against hand-computed figures (datasheet numbers of the
// built-in H100 description: 989 TFLOP/s fp16 tensor, 67 TFLOP/s fp32, 3.35 TB/s).
#include "runtime/cost/CostModel.h"

#include "common/Error.h"

#include <gtest/gtest.h>

using namespace mantissa;

namespace {

constexpr double kLaunch = 4e-6; // launch_overhead_s of devices/h100.json

TEST(CostModel, BuiltInDevicesCarryTheDatasheetRates) {
  DeviceSpec h100 = loadDeviceSpec("h100"), h200 = loadDeviceSpec("H200");
  EXPECT_EQ(h100.name, "H100");
  EXPECT_DOUBLE_EQ(h100.tensorFlops, 989e12);
  EXPECT_DOUBLE_EQ(h100.fp32Flops, 67e12);
  EXPECT_DOUBLE_EQ(h100.tf32Flops, 495e12);
  EXPECT_DOUBLE_EQ(h100.memoryBandwidth, 3.35e12);
  EXPECT_DOUBLE_EQ(h200.memoryBandwidth, 4.8e12);
  EXPECT_DOUBLE_EQ(h200.memoryBytes, 141e9);
  EXPECT_DOUBLE_EQ(h200.tensorFlops, h100.tensorFlops);
}

TEST(CostModel, HalfPrecisionGemmIsComputeBoundOnTensorCores) {
  // 4096^3 fp16 GEMM: 2*4096^3 = 137438953472 FLOPs; A, B, C at 2 bytes = 100663296 bytes.
  KernelWork w = gemmWork(4096, 4096, 4096, 1, 2, 2, 2, false, OpClass::Tensor);
  EXPECT_DOUBLE_EQ(w.flops, 137438953472.0);
  EXPECT_DOUBLE_EQ(w.bytes, 100663296.0);
  KernelTime t = roofline(w, loadDeviceSpec("h100"));
  // max(137438953472 / 989e12 = 138.967 us, 100663296 / 3.35e12 = 30.05 us) + 4 us.
  EXPECT_NEAR(t.seconds, 138.967e-6 + kLaunch, 1e-9);
  EXPECT_NEAR(t.joules, t.seconds * 700, 1e-9);
}

TEST(CostModel, Fp32GemmRunsAtTheFp32Rate) {
  KernelWork w = gemmWork(4096, 4096, 4096, 1, 4, 4, 4, false, OpClass::Fp32);
  EXPECT_DOUBLE_EQ(w.bytes, 201326592.0);
  // 137438953472 / 67e12 = 2051.33 us.
  EXPECT_NEAR(roofline(w, loadDeviceSpec("h100")).seconds, 2051.33e-6 + kLaunch, 1e-8);
}

TEST(CostModel, BatchedAccumulatingGemmReadsC) {
  KernelWork w = gemmWork(8, 16, 32, 3, 2, 2, 4, true, OpClass::Tensor);
  EXPECT_DOUBLE_EQ(w.flops, 2.0 * 8 * 16 * 32 * 3);
  EXPECT_DOUBLE_EQ(w.bytes, 3 * (8 * 32 * 2 + 32 * 16 * 2 + 8 * 16 * 4 * 2));
}

TEST(CostModel, ElementwiseAddIsMemoryBound) {
  // c = a + b over 2^24 fp32 elements: 3 * 4 * 2^24 = 201326592 bytes, 2^24 FLOPs.
  double n = 16777216;
  KernelWork w = elementwiseWork(n, 1, 2 * 4 * n, 4 * n);
  KernelTime h100 = roofline(w, loadDeviceSpec("h100"));
  KernelTime h200 = roofline(w, loadDeviceSpec("h200"));
  // 201326592 / 3.35e12 = 60.097 us; / 4.8e12 = 41.943 us.
  EXPECT_NEAR(h100.seconds, 60.097e-6 + kLaunch, 1e-9);
  EXPECT_NEAR(h200.seconds, 41.943e-6 + kLaunch, 1e-9);
  EXPECT_NEAR(h100.joules, h100.seconds * 420, 1e-9); // the memory class's power
  // The same add in fp16 moves half the bytes.
  KernelWork half = elementwiseWork(n, 1, 2 * 2 * n, 2 * n);
  EXPECT_NEAR(roofline(half, loadDeviceSpec("h100")).seconds, 30.049e-6 + kLaunch, 1e-9);
}

TEST(CostModel, BadDescriptionsNameTheField) {
  try {
    parseDeviceSpec(R"({"name": "x", "fp32_flops": 1})", "dev.json");
    FAIL() << "accepted a description without tf32_flops";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("dev.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("tf32_flops"), std::string::npos);
  }
  EXPECT_THROW(loadDeviceSpec("no-such-device"), Error);
}

} // namespace
