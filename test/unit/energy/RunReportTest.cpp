//===- RunReportTest.cpp - cumulative energy, target, per step, groups -----===//
#include "runtime/energy/RunReport.h"
#include "runtime/io/MiniJson.h"

#include <cmath>
#include <map>
#include <gtest/gtest.h>

using namespace mantissa;

namespace {

/// Two contiguous windows: [1, 2] 100 J (+-1 J), [2, 3.5] 300 J (+-2 J).
AttributionResult twoWindows() {
  AttributionResult r;
  r.measured = true;
  WindowEnergy a, b;
  a.start = 1, a.end = 2, a.measuredJoules = 100, a.meterErrJoules = 1;
  b.start = 2, b.end = 3.5, b.measuredJoules = 300, b.meterErrJoules = 2;
  r.windows = {a, b};
  r.measuredJoules = 400;
  return r;
}

} // namespace

TEST(CumulativeEnergy, WindowsProRataAndUnmeasuredStretchesWhollyUncertain) {
  AttributionResult r = twoWindows();
  // Before the first window: its average power (100 W), all of it uncertain.
  CumulativeEnergy c = cumulativeEnergyAt(r, 0.5, 0.7);
  EXPECT_NEAR(c.joules, 20, 1e-12);
  EXPECT_NEAR(c.joulesErr, 20, 1e-12);
  // Half way through the first window: 50 J before it + 50 J of it.
  c = cumulativeEnergyAt(r, 0.5, 1.5);
  EXPECT_NEAR(c.joules, 100, 1e-12);
  EXPECT_NEAR(c.joulesErr, 51, 1e-12);
  // After the last window: everything, plus 0.5 s at the last window's 200 W.
  c = cumulativeEnergyAt(r, 0.5, 4.0);
  EXPECT_NEAR(c.joules, 50 + 100 + 300 + 100, 1e-12);
  EXPECT_NEAR(c.joulesErr, 50 + 1 + 2 + 100, 1e-12);
  r.measured = false;
  EXPECT_TRUE(std::isnan(cumulativeEnergyAt(r, 0.5, 4.0).joules));
}

TEST(EnergyTarget, TheFirstLossAtOrBelowTheTarget) {
  EnergyRun run;
  run.attribution = twoWindows();
  run.runStart = 0.5;
  run.losses = {{0, 1.0, 2.0}, {1, 1.5, 0.9}, {2, 2.5, 0.4}, {3, 3.0, 0.3}};
  setTarget(run, 0.5);
  EXPECT_EQ(run.targetStep, 2);
  EXPECT_DOUBLE_EQ(run.targetSeconds, 2.0);
  EXPECT_NEAR(run.targetEnergy.joules, 50 + 100 + 100, 1e-12); // 0.5 s of the 200 W window
  setTarget(run, 0.1);
  EXPECT_EQ(run.targetStep, -1);
  EXPECT_NE(formatEnergyTarget(run).find("not reached"), std::string::npos);
}

TEST(EnergyGroups, SumByOpClassAndPrecisionAndPerStep) {
  EnergyRun run;
  AttributionResult &r = run.attribution;
  r = twoWindows();
  auto kernel = [](const char *name, double j, double err, double s) {
    KernelEnergy k;
    k.name = name, k.joules = j, k.joulesErr = err, k.seconds = k.secondsInWindows = s,
    k.launches = 10;
    return k;
  };
  r.kernels = {kernel("a", 200, 10, 1.0), kernel("b", 100, 5, 0.5), kernel("c", 60, 3, 0.3)};
  r.idleJoules = 40, r.idleJoulesErr = 4;
  run.labels = {{"a", {"Gemm", "fp16"}}, {"b", {"Elementwise", "fp16"}}, {"c", {"Gemm", "fp32"}}};
  auto ops = run.byOpClass();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].group, "Gemm");
  EXPECT_DOUBLE_EQ(ops[0].joules, 260);
  EXPECT_DOUBLE_EQ(ops[0].joulesErr, 13);
  EXPECT_DOUBLE_EQ(ops[0].share, 260.0 / 400);
  auto prec = run.byPrecision();
  ASSERT_EQ(prec.size(), 2u);
  EXPECT_EQ(prec[0].group, "fp16");
  EXPECT_DOUBLE_EQ(prec[0].joules, 300);
  EXPECT_EQ(prec[0].launches, 20);
  // 4 steps of 0.45 s kernel time, 3.6 of them inside the windows.
  for (int s = 0; s < 4; ++s) {
    StepEnergy st;
    st.step = s, st.seconds = 0.45, st.secondsInWindows = s == 0 ? 0.18 : 0.45, st.launches = 3;
    r.steps.push_back(st);
  }
  PerStepEnergy ps = perStepEnergy(r);
  EXPECT_NEAR(ps.covered, 3.4, 1e-12);
  EXPECT_NEAR(ps.totalJoules, 400 / 3.4, 1e-9);
  EXPECT_NEAR(ps.kernelJoules + ps.idleJoules, ps.totalJoules, 1e-9);
  EXPECT_NEAR(ps.totalJoulesErr, 3 / 3.4, 1e-12);
}

TEST(EnergyReportHtml, NotMeasuredPrintsNoJoules) {
  EnergyRun run;
  run.attribution.measured = false;
  run.attribution.meterName = "none";
  KernelEnergy k;
  k.name = "fc1", k.launches = 3, k.seconds = 0.01, k.joules = NAN;
  run.attribution.kernels = {k};
  run.labels = {{"fc1", {"Gemm", "fp16"}}};
  std::string html = energyRunHtml(run, "t"), text = formatEnergyRun(run);
  EXPECT_NE(html.find("energy not measured"), std::string::npos);
  EXPECT_EQ(html.find(" J<"), std::string::npos);
  EXPECT_NE(text.find("not measured"), std::string::npos);
  EXPECT_EQ(text.find(" J"), std::string::npos) << text;
}

TEST(EnergyReportJson, NamesTheTimelineAndTheDeviceKernels) {
  EnergyRun run;
  run.attribution.measured = false;
  run.timeline = "cupti";
  run.timelineMethod = "CUPTI activity records of the device kernels";
  run.deviceKernels = {{"fc1", {"sm90_xmma_gemm", "splitKreduce_kernel"}}, {"relu", {"mt_ew_3"}}};
  json::Value v = json::parse(energyRunJson(run), "energy json");
  ASSERT_EQ(v.kind, json::Value::Kind::Object);
  std::map<std::string, const json::Value *> m;
  for (const auto &kv : v.members)
    m[kv.first] = &kv.second;
  ASSERT_TRUE(m.count("timeline") && m.count("timeline_method") && m.count("device_kernels"));
  EXPECT_EQ(m["timeline"]->text, "cupti");
  const json::Value &dk = *m["device_kernels"];
  ASSERT_EQ(dk.members.size(), 2u);
  EXPECT_EQ(dk.members[0].first, "fc1");
  ASSERT_EQ(dk.members[0].second.items.size(), 2u);
  EXPECT_EQ(dk.members[0].second.items[1].text, "splitKreduce_kernel");
  // The text report's header says which timeline ran, and the table's kernels list
  // their device kernels (those of the run's kernels only).
  KernelEnergy k;
  k.name = "fc1", k.launches = 3, k.seconds = 0.01, k.joules = NAN;
  run.attribution.kernels = {k};
  std::string text = formatEnergyRun(run);
  EXPECT_NE(text.find("energy (timeline: cupti: CUPTI activity records"), std::string::npos) << text;
  EXPECT_NE(text.find("  fc1: sm90_xmma_gemm, splitKreduce_kernel\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("mt_ew_3"), std::string::npos) << text;
}
