// The roofline cost model against hand-computed figures (datasheet numbers of the
// built-in H100 description: 989 TFLOP/s fp16 tensor, 67 TFLOP/s fp32, 3.35 TB/s).
#include "runtime/cost/CostModel.h"

#include "common/Error.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

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

TEST(CostModel, EfficiencyDividesTheRooflineOfItsClassOnly) {
  DeviceSpec d = loadDeviceSpec("h100");
  d.efficiency["Conv2d.Forward.tensor"] = 0.25;
  KernelWork conv = gemmWork(4096, 4096, 4096, 1, 2, 2, 2, false, OpClass::Tensor);
  conv.costClass = "Conv2d.Forward.tensor";
  KernelWork gemm = conv;
  gemm.costClass = "Gemm.tensor";
  // 138.967 us of roofline at a quarter of it; the GEMM's class has no factor.
  EXPECT_NEAR(roofline(conv, d).seconds, 4 * 138.967e-6 + kLaunch, 1e-8);
  EXPECT_NEAR(roofline(gemm, d).seconds, 138.967e-6 + kLaunch, 1e-9);
}

TEST(CostModel, FitRecoversEachClassEfficiency) {
  // Kernels generated at known efficiencies: roofline / e + launch each.
  const std::map<std::string, double> planted = {{"Conv2d.BackwardWeight.tensor", 0.08},
                                                 {"Elementwise", 0.7},
                                                 {"BatchNorm", 0.35}};
  std::vector<FitSample> samples;
  double r = 1e-6;
  for (int i = 0; i < 12; ++i)
    for (const auto &[costClass, e] : planted) {
      r = r * 1.7 + 3e-6; // rooflines of different sizes
      samples.push_back({costClass, r, r / e + kLaunch});
    }
  // A class of launch-sized kernels: measured no longer than the overheads.
  samples.push_back({"Slice", 1e-7, 3e-6});
  const std::map<std::string, double> fitted = fitEfficiency(samples, kLaunch);
  EXPECT_EQ(fitted.size(), planted.size()) << "the launch-sized class is left out";
  for (const auto &[costClass, e] : planted) {
    ASSERT_TRUE(fitted.count(costClass)) << costClass;
    EXPECT_NEAR(fitted.at(costClass), e, 1e-9 * e) << costClass;
  }
}

TEST(CostModel, FittedDescriptionsRoundTripAndBadFactorsAreNamed) {
  DeviceSpec d = loadDeviceSpec("h100");
  d.efficiency = {{"Elementwise", 0.625}, {"Gemm.tensor", 0.5}};
  DeviceSpec back = parseDeviceSpec(formatDeviceSpec(d, "fitted"), "fitted.json");
  EXPECT_EQ(back.name, "H100");
  EXPECT_DOUBLE_EQ(back.tensorFlops, d.tensorFlops);
  EXPECT_DOUBLE_EQ(back.launchOverhead, d.launchOverhead);
  EXPECT_EQ(back.efficiency, d.efficiency);
  std::string text = formatDeviceSpec(d, "fitted");
  text.replace(text.find("0.625"), 5, "-1");
  try {
    parseDeviceSpec(text, "fitted.json");
    FAIL() << "accepted a negative efficiency";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("fitted.json: efficiency"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Elementwise"), std::string::npos) << e.what();
  }
}

} // namespace
