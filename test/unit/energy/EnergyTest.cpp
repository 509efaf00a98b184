// Unit tests for runtime/energy (DESIGN.md, "Energy: what was measured, and the
// method it forces"): a synthetic meter with a known piecewise power trace whose
// counter moves only every 100 ms (1 mJ resolution), a synthetic timeline of
// thousands of µs..ms kernels, windows of 1-2 s. Attribution must recover every
// kernel's true energy within 1 %, conserve the measured energy exactly, and report
// an uncertainty that covers the actual error; with no meter nothing prints a joule.
#include "common/Error.h"
#include "runtime/energy/Attribution.h"
#include "runtime/energy/EnergyMeter.h"
#include "runtime/energy/Report.h"
#include "runtime/io/MiniJson.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace mantissa;

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double logUniform(double lo, double hi) { return lo * std::pow(hi / lo, uniform()); }
};

struct KernelType {
  const char *name;
  double watts;          // true device power while it runs
  double minDur, maxDur; // seconds
  double weight;         // how often it is launched
  double calibError;     // the calibration's (unknown) relative error
};

const KernelType kTypes[] = {
    {"gemm_big", 690, 1e-3, 5e-3, 0.04, +0.0030},
    {"gemm_mid", 560, 100e-6, 800e-6, 0.10, -0.0025},
    {"conv_fwd", 480, 200e-6, 2e-3, 0.06, +0.0010},
    {"conv_bwd", 400, 300e-6, 3e-3, 0.06, -0.0030},
    {"elementwise", 250, 2e-6, 30e-6, 0.40, +0.0020},
    {"reduce", 320, 5e-6, 60e-6, 0.14, -0.0010},
    {"softmax", 220, 3e-6, 20e-6, 0.12, +0.0035},
    {"adam_update", 180, 10e-6, 100e-6, 0.08, -0.0020},
};
constexpr size_t kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);
constexpr double kIdleWatts = 123.0;
constexpr double kSpread = 0.005; // calibration spread reported (a bound on calibError)
constexpr double kRunSeconds = 8.3;

/// A synthetic training run: steps of ~60 launches with µs gaps between launches
/// and ms host gaps between steps; and the power trace it draws.
struct SimRun {
  KernelTimeline timeline;
  std::vector<PowerSegment> trace;
  Calibration calibration;
  std::vector<double> trueWatts; // by kernel id
};

SimRun makeRun(uint64_t seed, double calibErrorScale = 1.0, double spread = kSpread) {
  SimRun run;
  Rng rng{seed};
  for (const KernelType &k : kTypes) {
    uint32_t id = run.timeline.kernelId(k.name);
    run.trueWatts.push_back(k.watts);
    run.calibration.kernels[id] = {k.watts * (1.0 + calibErrorScale * k.calibError), spread};
  }
  run.calibration.idle = {kIdleWatts * (1.0 + calibErrorScale * 0.004), spread};
  double t = 0.0;
  run.trace.push_back({0.0, kIdleWatts});
  int64_t step = 0;
  while (t < kRunSeconds) {
    int n = 40 + static_cast<int>(rng.uniform() * 40);
    for (int i = 0; i < n; ++i) {
      double u = rng.uniform(), acc = 0.0;
      size_t k = kNumTypes - 1;
      for (size_t j = 0; j < kNumTypes; ++j) {
        acc += kTypes[j].weight;
        if (u < acc) {
          k = j;
          break;
        }
      }
      double d = rng.logUniform(kTypes[k].minDur, kTypes[k].maxDur);
      run.timeline.record(static_cast<uint32_t>(k), t, t + d, step);
      run.trace.push_back({t, kTypes[k].watts});
      run.trace.push_back({t + d, kIdleWatts});
      t += d + rng.logUniform(1e-6, 10e-6); // launch gap
    }
    t += rng.logUniform(0.5e-3, 3e-3); // host gap between steps
    ++step;
  }
  return run;
}

/// The true energy of each kernel inside the windows, and of the gaps.
std::vector<double> trueJoules(const SimRun &run, const MeasuredWindows &mw) {
  std::vector<double> e(kNumTypes, 0.0);
  for (const KernelLaunch &l : run.timeline.launches())
    for (const EnergyWindow &w : mw.windows) {
      double a = std::max(l.start, w.start), b = std::min(l.end, w.end);
      if (b > a)
        e[l.kernel] += (b - a) * run.trueWatts[l.kernel];
    }
  return e;
}

/// Windows whose boundaries are observed counter changes (polled every 1 ms).
MeasuredWindows alignedWindows(SyntheticMeter &meter) {
  WindowRecorder rec(meter, 1.0);
  for (int i = 0; i * 1e-3 <= kRunSeconds + 0.1; ++i) {
    double now = i * 1e-3;
    meter.setNow(now);
    rec.poll(now);
  }
  return rec.result();
}

struct Check {
  double maxRelError = 0.0;
  double maxErrOverBound = 0.0;
  double minRelBound = 1e9, maxRelBound = 0.0;
};

Check checkAttribution(const SimRun &run, const MeasuredWindows &mw, const AttributionResult &r,
                       double tolerance) {
  Check c;
  EXPECT_TRUE(r.measured);
  // The widest an entry's bound may be, derived from Attribution.h's formula: the
  // counter's term is at most the largest window's (lag + resolution) share, and the
  // calibration's at most r_k + sum_j f_j r_j <= 2 max r (the f_j of a window sum to 1).
  double maxMeter = 0.0, maxSpread = run.calibration.idle.relSpread;
  for (const EnergyWindow &w : mw.windows)
    maxMeter = std::max(maxMeter, (mw.resolutionJoules + std::max(mw.updatePeriodSeconds,
                                                                  w.boundaryLagSeconds) *
                                                             w.joules / (w.end - w.start)) /
                                      w.joules);
  for (const auto &kv : run.calibration.kernels)
    maxSpread = std::max(maxSpread, kv.second.relSpread);
  const double ceiling = maxMeter + 2 * maxSpread;
  std::vector<double> truth = trueJoules(run, mw);
  EXPECT_EQ(r.kernels.size(), kNumTypes);
  for (const KernelEnergy &k : r.kernels) {
    double t = truth[k.kernel];
    double err = std::fabs(k.joules - t);
    c.maxRelError = std::max(c.maxRelError, err / t);
    c.maxErrOverBound = std::max(c.maxErrOverBound, err / k.joulesErr);
    c.minRelBound = std::min(c.minRelBound, k.joulesErr / k.joules);
    c.maxRelBound = std::max(c.maxRelBound, k.joulesErr / k.joules);
    if (tolerance > 0)
      EXPECT_LT(err / t, tolerance) << k.name << ": attributed " << k.joules << " J, true " << t;
    EXPECT_LE(err, k.joulesErr) << k.name << ": error " << err << " J not covered by ± "
                                << k.joulesErr;
    EXPECT_LE(k.joulesErr, ceiling * k.joules * (1 + 1e-12))
        << k.name << ": a bound of " << 100 * k.joulesErr / k.joules << " % is wider than the "
        << 100 * ceiling << " % its terms allow";
  }
  // The gaps too.
  double idleTruth = r.idleSeconds * kIdleWatts;
  EXPECT_LE(std::fabs(r.idleJoules - idleTruth), r.idleJoulesErr);

  // Conservation, per window and overall.
  double kernelsSum = 0.0, measured = 0.0;
  for (const KernelEnergy &k : r.kernels)
    kernelsSum += k.joules;
  for (const EnergyWindow &w : mw.windows)
    measured += w.joules;
  EXPECT_LE(std::fabs(kernelsSum + r.idleJoules - measured), 1e-9 * measured);
  EXPECT_DOUBLE_EQ(r.measuredJoules, measured);
  for (const WindowEnergy &w : r.windows)
    EXPECT_LE(std::fabs(w.kernelJoules + w.idleJoules - w.measuredJoules),
              1e-9 * w.measuredJoules);
  // Per-step totals add up to the kernels; a step wholly outside the windows is
  // not measured (NaN), one with time inside them is.
  double stepSum = 0.0;
  for (const StepEnergy &s : r.steps) {
    EXPECT_EQ(std::isnan(s.joules), s.secondsInWindows == 0.0 && s.seconds > 0.0) << s.step;
    if (!std::isnan(s.joules))
      stepSum += s.joules;
  }
  EXPECT_LE(std::fabs(stepSum - kernelsSum), 1e-9 * kernelsSum);
  return c;
}

} // namespace

TEST(SyntheticMeter, CounterMovesOnlyAtTicksAndByItsResolution) {
  SyntheticMeter m({{0.0, 100.0}}, 0.1, 0.0, 0.0);
  m.setNow(0.25);
  EXPECT_NEAR(m.readJoules(), 20.0, 1e-12);
  m.setNow(0.2999);
  EXPECT_NEAR(m.readJoules(), 20.0, 1e-12);
  m.setNow(0.3001);
  EXPECT_NEAR(m.readJoules(), 30.0, 1e-9);
  SyntheticMeter q({{0.0, 100.0}, {1.0, 300.0}}, 0.1, 7.0, 0.0);
  q.setNow(0.35);
  EXPECT_DOUBLE_EQ(q.readJoules(), 28.0); // 30 J floored to 7 J steps
  EXPECT_NEAR(q.exactJoules(0.5, 1.5), 50.0 + 150.0, 1e-9);
  EXPECT_EQ(q.updatePeriodSeconds(), 0.1);
  EXPECT_EQ(q.resolutionJoules(), 7.0);
}

TEST(EnergyAttribution, RecoversEachKernelWithinOnePercentAndConserves) {
  SimRun run = makeRun(42);
  ASSERT_GT(run.timeline.launches().size(), 5000u);
  SyntheticMeter meter(run.trace, 0.1, 1e-3, 0.0137);
  MeasuredWindows mw = alignedWindows(meter);
  ASSERT_GE(mw.windows.size(), 5u);
  for (const EnergyWindow &w : mw.windows) {
    EXPECT_GE(w.end - w.start, 1.0);
    EXPECT_LE(w.end - w.start, 2.0);
  }
  AttributionResult r = attributeEnergy(run.timeline, run.calibration, mw);
  Check c = checkAttribution(run, mw, r, 0.01);
  std::printf("launches %zu, windows %zu, max |recovery error| %.4f %%, max error/bound %.3f, "
              "bound %.2f..%.2f %%\n",
              run.timeline.launches().size(), mw.windows.size(), 100 * c.maxRelError,
              c.maxErrOverBound, 100 * c.minRelBound, 100 * c.maxRelBound);
  std::printf("%s", formatAttributionTable(r).c_str());
}

TEST(EnergyAttribution, WindowsNotAlignedToTicksStayCoveredByTheUncertainty) {
  // Boundaries anywhere between ticks: the counter lags up to 100 ms at each end,
  // which the ± one tick term must cover (recovery may then miss 1 %).
  SimRun run = makeRun(7);
  SyntheticMeter meter(run.trace, 0.1, 1e-3, 0.0371);
  MeasuredWindows mw;
  mw.measured = true;
  mw.meterName = meter.name();
  mw.updatePeriodSeconds = meter.updatePeriodSeconds();
  mw.resolutionJoules = meter.resolutionJoules();
  const double cuts[] = {0.05, 1.55, 2.83, 4.9, 6.1, 8.0};
  double prev = 0.0;
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); ++i) {
    meter.setNow(cuts[i]);
    double v = meter.readJoules();
    if (i > 0)
      mw.windows.push_back({cuts[i - 1], cuts[i], v - prev, 0.0});
    prev = v;
  }
  AttributionResult r = attributeEnergy(run.timeline, run.calibration, mw);
  Check c = checkAttribution(run, mw, r, /*tolerance=*/0.0);
  std::printf("unaligned windows: max |recovery error| %.4f %%, max error/bound %.3f\n",
              100 * c.maxRelError, c.maxErrOverBound);
}

TEST(EnergyAttribution, CalibrationErrorsAndACoarseCounterStayCovered) {
  // Calibration off by up to 3.5 % (spread 4 %), a counter with 0.5 J steps: the
  // error grows, the bound still covers it, conservation still holds.
  SimRun run = makeRun(11, /*calibErrorScale=*/10.0, /*spread=*/0.04);
  SyntheticMeter meter(run.trace, 0.1, 0.5, 0.0529);
  MeasuredWindows mw = alignedWindows(meter);
  ASSERT_GE(mw.windows.size(), 5u);
  AttributionResult r = attributeEnergy(run.timeline, run.calibration, mw);
  Check c = checkAttribution(run, mw, r, /*tolerance=*/0.0);
  std::printf("calibration errors x10, 0.5 J counter: max |recovery error| %.4f %%, max "
              "error/bound %.3f\n",
              100 * c.maxRelError, c.maxErrOverBound);
}

TEST(EnergyAttribution, RejectsWindowsShorterThanOneSecond) {
  SimRun run = makeRun(1);
  MeasuredWindows mw;
  mw.measured = true;
  mw.updatePeriodSeconds = 0.1;
  mw.windows.push_back({1.0, 1.5, 300.0, 0.0});
  EXPECT_THROW(attributeEnergy(run.timeline, run.calibration, mw), Error);
}

TEST(EnergyAttribution, NoMeterProducesNoJoules) {
  SimRun run = makeRun(3);
  NoMeter none;
  WindowRecorder rec(none);
  for (int i = 0; i < 9000; ++i)
    rec.poll(i * 1e-3);
  MeasuredWindows mw = rec.result();
  EXPECT_FALSE(mw.measured);
  EXPECT_TRUE(mw.windows.empty());
  AttributionResult r = attributeEnergy(run.timeline, Calibration{}, mw);
  EXPECT_FALSE(r.measured);
  ASSERT_EQ(r.kernels.size(), kNumTypes);
  for (const KernelEnergy &k : r.kernels) {
    EXPECT_TRUE(std::isnan(k.joules));
    EXPECT_GT(k.launches, 0);
  }
  EXPECT_TRUE(std::isnan(r.idleJoules));
  std::string table = formatAttributionTable(r);
  EXPECT_NE(table.find("not measured"), std::string::npos);
  EXPECT_EQ(table.find("±"), std::string::npos);
  EXPECT_EQ(table.find(" J"), std::string::npos);
  std::string csv = attributionCsv(r);
  EXPECT_NE(csv.find("not measured"), std::string::npos);
  EXPECT_EQ(csv.find("nan"), std::string::npos);
  json::Value v = json::parse(attributionJson(r), "attribution.json");
  ASSERT_EQ(v.kind, json::Value::Kind::Object);
  bool sawMeasured = false, sawKernels = false;
  for (const auto &m : v.members) {
    if (m.first == "measured") {
      sawMeasured = true;
      EXPECT_EQ(m.second.kind, json::Value::Kind::Bool);
      EXPECT_FALSE(m.second.boolean);
    }
    if (m.first == "kernels") {
      sawKernels = true;
      for (const auto &k : m.second.items)
        for (const auto &f : k.members)
          if (f.first == "joules")
            EXPECT_EQ(f.second.kind, json::Value::Kind::Null);
    }
  }
  EXPECT_TRUE(sawMeasured && sawKernels);
  // The trace still has the kernels, but no power track.
  std::string trace = chromeTraceJson(run.timeline, r);
  EXPECT_EQ(trace.find("\"ph\": \"C\""), std::string::npos);
}

namespace {

const json::Value *member(const json::Value &o, const std::string &name) {
  for (const auto &m : o.members)
    if (m.first == name)
      return &m.second;
  return nullptr;
}

} // namespace

TEST(EnergyReports, ChromeTraceIsValidJsonWithSlicesAndPowerTrack) {
  SimRun run = makeRun(42);
  SyntheticMeter meter(run.trace, 0.1, 1e-3, 0.0137);
  MeasuredWindows mw = alignedWindows(meter);
  AttributionResult r = attributeEnergy(run.timeline, run.calibration, mw);
  std::string trace = chromeTraceJson(run.timeline, r);
  json::Value v = json::parse(trace, "trace.json");
  const json::Value *events = member(v, "traceEvents");
  ASSERT_NE(events, nullptr);
  ASSERT_EQ(events->kind, json::Value::Kind::Array);
  size_t x = 0, c = 0;
  for (const json::Value &e : events->items) {
    const json::Value *ph = member(e, "ph");
    ASSERT_NE(ph, nullptr);
    if (ph->text == "X") {
      ++x;
      ASSERT_NE(member(e, "ts"), nullptr);
      ASSERT_NE(member(e, "dur"), nullptr);
      ASSERT_NE(member(e, "name"), nullptr);
    } else if (ph->text == "C") {
      ++c;
      const json::Value *args = member(e, "args");
      ASSERT_NE(args, nullptr);
      ASSERT_NE(member(*args, "watts"), nullptr);
    }
  }
  EXPECT_EQ(x, run.timeline.launches().size());
  EXPECT_EQ(c, mw.windows.size() + 1);

  // The attribution JSON parses too, and the CSV has one row per kernel + idle.
  json::Value a = json::parse(attributionJson(r), "attribution.json");
  ASSERT_NE(member(a, "kernels"), nullptr);
  EXPECT_EQ(member(a, "kernels")->items.size(), kNumTypes);
  std::string csv = attributionCsv(r);
  EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')), kNumTypes + 2);

  // Python's json module agrees, where Python exists.
  if (access(MANTISSA_TEST_PYTHON, X_OK) != 0)
    GTEST_SKIP() << MANTISSA_TEST_PYTHON << " missing: MiniJson check only";
  char dir[] = "/tmp/mantissa-energy-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/trace.json";
  {
    std::ofstream f(path);
    f << trace;
  }
  std::string cmd = std::string(MANTISSA_TEST_PYTHON) +
                    " -c 'import json,sys; d=json.load(open(sys.argv[1])); e=d[\"traceEvents\"]; "
                    "assert any(x[\"ph\"]==\"X\" for x in e) and any(x[\"ph\"]==\"C\" for x in e)' " +
                    path;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::remove(path.c_str());
  rmdir(dir);
}

namespace {

void writeText(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

} // namespace

TEST(RaplMeter, SumsPackagesIgnoresSubZonesAndUnwraps) {
  char dir[] = "/tmp/mantissa-rapl-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string root = dir;
  // No domain: no meter, and the host meter falls back to "not measured".
  EXPECT_EQ(RaplMeter::open(root), nullptr);
  EXPECT_FALSE(openHostMeter(root)->measures());

  for (const char *d : {"/intel-rapl:0", "/intel-rapl:1", "/intel-rapl:0:0"})
    ASSERT_EQ(mkdir((root + d).c_str(), 0755), 0);
  writeText(root + "/intel-rapl:0/energy_uj", "999000000\n");
  writeText(root + "/intel-rapl:0/max_energy_range_uj", "1000000000\n");
  writeText(root + "/intel-rapl:1/energy_uj", "5000000\n");
  writeText(root + "/intel-rapl:1/max_energy_range_uj", "1000000000\n");
  writeText(root + "/intel-rapl:0:0/energy_uj", "7\n"); // a sub-zone: ignored
  writeText(root + "/intel-rapl:0:0/max_energy_range_uj", "1000000000\n");
  auto m = RaplMeter::open(root);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "RAPL (intel-rapl:0+intel-rapl:1)");
  EXPECT_DOUBLE_EQ(m->readJoules(), 0.0);
  writeText(root + "/intel-rapl:0/energy_uj", "999500000\n"); // +0.5 J
  writeText(root + "/intel-rapl:1/energy_uj", "7000000\n");   // +2 J
  EXPECT_NEAR(m->readJoules(), 2.5, 1e-9);
  writeText(root + "/intel-rapl:0/energy_uj", "1500000\n");   // wrapped: +0.5 + 1.5 J
  EXPECT_NEAR(m->readJoules(), 4.5, 1e-9);
  EXPECT_TRUE(std::isnan(m->celsius())); // no thermometer: profile does not heat-match
  EXPECT_TRUE(openHostMeter(root)->measures());
  std::system(("rm -rf " + root).c_str());
}
