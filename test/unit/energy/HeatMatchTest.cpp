// Unit tests for HeatMatch (heat-matched calibration) on a simulated device: a
// first-order thermal model, C dT/dt = P - (T - ambient) / Rth, i.e.
// T' = (ambient + Rth P - T) / tau, with P = dynamic (the work running) + static
// (leakage, rising linearly with T). Linear in T, so every interval is solved
// exactly and the oracles (equilibria, the steady test's bound) are closed forms.
// The parameters are a model, not measured figures of any GPU.
#include "runtime/energy/HeatMatch.h"
#include "runtime/energy/Attribution.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

using namespace mantissa;

namespace {

struct SimDevice {
  double ambient = 30, rth = 0.1, tau = 20; // °C, °C/W, s
  double static0 = 0, staticPerC = 0;       // static W at ambient, and its slope
  double t = 0, celsius = 30, joules = 0;
  int heats = 0, rests = 0;

  double staticWatts(double c) const { return static0 + staticPerC * (c - ambient); }
  /// Where the device settles with `dynamic` W of work running.
  double equilibrium(double dynamic) const {
    return ambient + rth * (dynamic + static0) / (1 - rth * staticPerC);
  }
  /// `dynamic` W of work for `dt` s: temperature, clock and energy, exactly.
  void run(double dynamic, double dt) {
    double tauEff = tau / (1 - rth * staticPerC), eq = equilibrium(dynamic);
    double decay = std::exp(-dt / tauEff);
    double meanCelsius = eq + (celsius - eq) * tauEff * (1 - decay) / dt;
    joules += (dynamic + staticWatts(meanCelsius)) * dt;
    celsius = eq + (celsius - eq) * decay;
    t += dt;
  }
  /// Heating units run `heatWatts` of work for 10 ms; rest units nothing.
  HeatDevice device(double heatWatts) {
    return {[this] { return celsius; }, [this, heatWatts] { ++heats, run(heatWatts, 0.01); },
            [this] { ++rests, run(0, 0.01); }, [this] { return t; }};
  }
};

/// How far from equilibrium the steady test stops on this model: the last
/// second's mean is `rise` from the mean `over` seconds before, and a gap g
/// `over` seconds back is g exp(-over / tau) now.
double steadyBound(const SimDevice &d, const HeatOptions &o) {
  double tauEff = d.tau / (1 - d.rth * d.staticPerC);
  return o.steadyRiseCelsius / std::expm1(o.steadyOverSeconds / tauEff);
}

TEST(HeatMatch, HeatsUntilSteadyAtTheBoundOfTheSteadyTest) {
  HeatOptions o;
  o.maxSeconds = 1000;
  for (double tau : {4.0, 30.0})
    for (double start : {30.0, 80.0}) { // from cold, and from hotter than the step settles
      SimDevice d;
      d.tau = tau, d.celsius = start;
      const double eq = d.equilibrium(300); // 60 °C
      HeatResult r = heatUntilSteady(d.device(300), o);
      SCOPED_TRACE("tau " + std::to_string(tau) + " s, from " + std::to_string(start) + " °C");
      ASSERT_TRUE(r.measured);
      EXPECT_FALSE(r.capped);
      EXPECT_EQ(d.rests, 0);
      EXPECT_NEAR(r.seconds, d.t, 1e-9);
      // Stopped as soon as the criterion held: just inside its bound, not earlier or later.
      double gap = std::fabs(eq - r.celsius), bound = steadyBound(d, o);
      EXPECT_LE(gap, bound);
      EXPECT_GE(gap, 0.9 * bound);
      if (tau == 4.0)
        EXPECT_LT(gap, 0.5); // a fast device ends within half a degree of equilibrium
    }
}

TEST(HeatMatch, SettlesWithAThermometerInWholeDegrees) {
  // NVML reads whole degrees; with noise, single readings differ by a degree at
  // random. The steady test compares one-second means, so it still settles.
  SimDevice d;
  uint64_t s = 1;
  auto noise = [&s] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double(s >> 11) * 0x1.0p-53 - 0.5;
  };
  HeatDevice dev = d.device(300);
  dev.celsius = [&] { return std::floor(d.celsius + noise()); };
  HeatOptions o;
  o.maxSeconds = 1000;
  HeatResult r = heatUntilSteady(dev, o);
  EXPECT_FALSE(r.capped) << r.seconds << " s";
  EXPECT_LE(std::fabs(d.equilibrium(300) - r.celsius), steadyBound(d, o) + 1);
}

TEST(HeatMatch, ReheatStopsWithinToleranceHeatingOrResting) {
  HeatOptions o;
  for (double start : {56.0, 64.0}) {
    SimDevice d;
    d.tau = 10, d.celsius = start;
    HeatResult r = reheatTo(d.device(300), 60, o);
    SCOPED_TRACE("from " + std::to_string(start) + " °C");
    ASSERT_TRUE(r.measured);
    EXPECT_FALSE(r.capped);
    EXPECT_DOUBLE_EQ(r.celsius, d.celsius);
    EXPECT_LE(std::fabs(d.celsius - 60), o.toleranceCelsius);
    // It stops on entering the band: within one 10 ms unit of its edge.
    EXPECT_GE(std::fabs(d.celsius - 60), o.toleranceCelsius - 0.1);
    EXPECT_EQ(start < 60 ? d.rests : d.heats, 0) << "heats while hot or rests while cold";
  }
  SimDevice d; // already there: nothing runs
  d.celsius = 60.5;
  reheatTo(d.device(300), 60, o);
  EXPECT_EQ(d.heats + d.rests, 0);
}

TEST(HeatMatch, TimeCapsAreHonouredAndReported) {
  HeatOptions o;
  o.maxSeconds = 10, o.reheatMaxSeconds = 3;
  SimDevice slow;
  slow.tau = 1000; // still rising by ~3 °C/s when the cap comes
  HeatResult r = heatUntilSteady(slow.device(100000), o);
  EXPECT_TRUE(r.measured && r.capped);
  EXPECT_GE(r.seconds, 10);
  EXPECT_LT(r.seconds, 10.02);

  SimDevice d;
  d.celsius = d.equilibrium(300); // 60 °C: the work cannot reach 90 °C
  r = reheatTo(d.device(300), 90, o);
  EXPECT_TRUE(r.measured && r.capped);
  EXPECT_GE(r.seconds, 3);
  EXPECT_LT(r.seconds, 3.02);
  EXPECT_GT(90 - r.celsius, o.toleranceCelsius);
}

TEST(HeatMatch, NoThermometerRunsNothing) {
  SimDevice d;
  HeatDevice dev = d.device(300);
  dev.celsius = [] { return std::nan(""); };
  for (HeatResult r : {heatUntilSteady(dev), reheatTo(dev, 60)}) {
    EXPECT_FALSE(r.measured);
    EXPECT_TRUE(std::isnan(r.celsius));
    EXPECT_EQ(r.seconds, 0);
  }
  EXPECT_EQ(d.heats + d.rests, 0);
}

// The point of the feature. A training step is a GEMM (high power), a reduction (low
// power) and a gap; static power rises with temperature. `profile` replays the idle
// baseline, the GEMM and the reduction for 3 windows of 1 s each, cold (from idle,
// as before) or heat-matched; attribution then splits a training window measured at
// the step's equilibrium. Heat-matched, the reduction's attributed J/launch is its
// true one within a few %; cold, it is not.
TEST(HeatMatch, HeatMatchedCalibrationRecoversTheTrainingJoulesPerLaunch) {
  struct Kernel {
    const char *name;
    double watts, seconds; // dynamic power, time per launch
  };
  const Kernel gemm{"gemm", 400, 0.6e-3}, reduce{"reduce", 20, 0.3e-3};
  const double gap = 0.1e-3, step = gemm.seconds + reduce.seconds + gap;
  const double stepWatts = (gemm.watts * gemm.seconds + reduce.watts * reduce.seconds) / step;
  SimDevice model;
  model.static0 = 60, model.staticPerC = 1.5;

  auto profile = [&](bool heated) {
    SimDevice d = model;
    d.celsius = d.equilibrium(0); // idle before the profile
    HeatDevice dev = d.device(stepWatts);
    HeatResult train;
    if (heated)
      train = heatUntilSteady(dev);
    auto calibrate = [&](double dynamic) {
      double watts = 0;
      for (int r = 0; r < 3; ++r) {
        if (heated)
          reheatTo(dev, train.celsius);
        double e0 = d.joules;
        d.run(dynamic, 1.0);
        watts += (d.joules - e0) / 3;
      }
      return CalibrationEntry{watts, 0.01};
    };
    Calibration c;
    c.idle = calibrate(0);
    c.kernels[0] = calibrate(gemm.watts);
    c.kernels[1] = calibrate(reduce.watts);
    return c;
  };

  // Training long enough to sit at the step's equilibrium: constant static power.
  const double trainStatic = model.staticWatts(model.equilibrium(stepWatts));
  KernelTimeline tl;
  tl.kernelId(gemm.name), tl.kernelId(reduce.name);
  MeasuredWindows w;
  w.measured = true;
  const int steps = 1500;
  double joules = 0;
  for (int i = 0; i < steps; ++i) {
    double t = i * step;
    tl.record(0, t, t + gemm.seconds, i);
    tl.record(1, t + gemm.seconds, t + gemm.seconds + reduce.seconds, i);
    joules += stepWatts * step + trainStatic * step;
  }
  w.windows.push_back({0.0, steps * step, joules, 0.0});
  const double truth = (reduce.watts + trainStatic) * reduce.seconds;

  auto attributed = [&](const Calibration &c) {
    AttributionOptions ao;
    ao.lagSeconds = 0;
    for (const KernelEnergy &k : attributeEnergy(tl, c, w, ao).kernels)
      if (k.name == reduce.name)
        return k.joules / double(k.launches);
    return std::nan("");
  };
  double cold = attributed(profile(false)) / truth - 1;
  double heated = attributed(profile(true)) / truth - 1;
  EXPECT_LT(std::fabs(heated), 0.03) << "heat-matched: " << 100 * heated << " %";
  EXPECT_GT(std::fabs(cold), 0.10) << "cold: " << 100 * cold << " %";
  std::printf("reduce J/launch against training: cold %+.1f %%, heat-matched %+.1f %%\n",
              100 * cold, 100 * heated);
}

} // namespace
