//===- Calibration.cpp ----------------------------------------------------===//
#include "runtime/train/Calibration.h"
#include "runtime/train/EnergySession.h"
#include "runtime/train/Trainer.h"

#include "common/Error.h"
#include "common/Hash.h"
#include "runtime/energy/HeatMatch.h"
#include "runtime/energy/NvmlMeter.h"
#include "runtime/energy/ReportFormat.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <thread>

namespace mantissa {
using namespace report;
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
/// The fallback's spread of a kernel's power (Calibration.h).
constexpr double kUncalibratedSpread = 1.0;

double number(const json::Value &v, const char *key, const std::string &where) {
  for (const auto &[k, m] : v.members)
    if (k == key) {
      if (m.kind == json::Value::Kind::Null)
        return kNaN;
      if (m.kind != json::Value::Kind::Number)
        throw Error(where + ": '" + key + "' is not a number");
      return std::strtod(m.text.c_str(), nullptr);
    }
  throw Error(where + ": no '" + key + "'");
}

/// A number written by newer versions only: NaN where absent.
double optionalNumber(const json::Value &v, const char *key, const std::string &where) {
  for (const auto &[k, m] : v.members)
    if (k == key)
      return number(v, key, where);
  return kNaN;
}

const json::Value &member(const json::Value &v, const char *key, const std::string &where) {
  for (const auto &[k, m] : v.members)
    if (k == key)
      return m;
  throw Error(where + ": no '" + key + "'");
}

KernelCalibration readKernel(const json::Value &v, const std::string &where) {
  KernelCalibration k;
  k.name = member(v, "name", where).text;
  k.watts = number(v, "watts", where);
  k.relSpread = number(v, "rel_spread", where);
  k.joulesPerLaunch = number(v, "joules_per_launch", where);
  k.secondsPerLaunch = number(v, "seconds_per_launch", where);
  k.celsius = number(v, "celsius", where);
  k.celsiusStart = optionalNumber(v, "celsius_start", where);
  k.smClockMHz = number(v, "sm_clock_mhz", where);
  k.repeats = int(number(v, "repeats", where));
  if (!(k.watts > 0) || !(k.relSpread >= 0))
    throw Error(where + ": kernel '" + k.name + "' has no positive power and spread");
  return k;
}

std::string kernelJson(const KernelCalibration &k) {
  std::ostringstream o;
  o << "{\"name\": " << json::quote(k.name) << ", \"watts\": " << num(k.watts)
    << ", \"rel_spread\": " << num(k.relSpread)
    << ", \"joules_per_launch\": " << num(k.joulesPerLaunch)
    << ", \"seconds_per_launch\": " << num(k.secondsPerLaunch)
    << ", \"celsius_start\": " << num(k.celsiusStart) << ", \"celsius\": " << num(k.celsius)
    << ", \"sm_clock_mhz\": " << num(k.smClockMHz) << ", \"repeats\": " << k.repeats << "}";
  return o.str();
}

} // namespace

std::string calibrationCachePath(const Executor &exec, const std::string &meterName) {
  std::string root;
  if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x)
    root = x;
  else if (const char *h = std::getenv("HOME"); h && *h)
    root = std::string(h) + "/.cache";
  else
    root = "/tmp";
  // The plan's checksum (verified on load) is the hash of its bytes: not hashed again.
  std::string device = exec.deviceDescription() + "|" + meterName;
  return root + "/mantissa/calib/" + hex16(exec.plan()->checksum()) + "-" + hex16(fnv1a64(device)) +
         ".json";
}

void writeCalibration(const std::string &path, const CalibrationFile &c) {
  std::ostringstream o;
  o << "{\"plan\": " << json::quote(c.plan) << ", \"device\": " << json::quote(c.device)
    << ", \"meter\": " << json::quote(c.meter)
    << (c.timeline.empty() ? "" : ", \"timeline\": " + json::quote(c.timeline))
    << ", \"training_celsius\": " << num(c.trainingCelsius)
    << ",\n \"idle\": " << kernelJson(c.idle) << ",\n \"kernels\": [";
  for (size_t i = 0; i < c.kernels.size(); ++i)
    o << (i ? ",\n  " : "\n  ") << kernelJson(c.kernels[i]);
  o << "]}\n";
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::string text = o.str();
  writeFileAtomic(path, text.data(), text.size());
}

CalibrationFile readCalibration(const std::string &path) {
  json::Value v = json::parseFile(path); // a missing file or a directory: an Error naming it
  CalibrationFile c;
  c.plan = member(v, "plan", path).text;
  c.device = member(v, "device", path).text;
  c.meter = member(v, "meter", path).text;
  c.trainingCelsius = optionalNumber(v, "training_celsius", path);
  c.idle = readKernel(member(v, "idle", path), path + ": idle");
  for (const json::Value &k : member(v, "kernels", path).items)
    c.kernels.push_back(readKernel(k, path + ": kernels"));
  return c;
}

CalibrationChoice chooseCalibration(const Executor &exec, const KernelTimeline &timeline,
                                    const std::string &meterName) {
  CalibrationChoice choice;
  const size_t K = timeline.names().size();
  std::string path = calibrationCachePath(exec, meterName);
  auto fallback = [&](const std::string &why) {
    choice.calibration = {};
    for (uint32_t k = 0; k < K; ++k)
      choice.calibration.kernels[k] = {1.0, kUncalibratedSpread};
    choice.calibration.idle = {1.0, kUncalibratedSpread};
    choice.calibrated = false;
    choice.description =
        why + "; fallback: every kernel and the gaps at each window's average power, "
              "each power uncertain by ±100 % (run `mantissa-run profile PLAN` to calibrate)";
    return choice;
  };
  if (!std::filesystem::exists(path))
    return fallback("none cached for this plan, device and meter (" + path + ")");
  CalibrationFile file;
  try {
    file = readCalibration(path);
  } catch (const Error &e) {
    return fallback(std::string("unreadable: ") + e.what());
  }
  std::map<std::string, const KernelCalibration *> byName;
  for (const KernelCalibration &k : file.kernels)
    byName[k.name] = &k;
  // Kernels the profile did not replay (profile --top N) take the time-weighted
  // mean power of those it did, uncertain by the fallback's spread.
  std::vector<double> secondsOf(K, 0.0);
  for (const KernelLaunch &l : timeline.launches())
    secondsOf[l.kernel] += l.end - l.start;
  double wSum = 0, tSum = 0, tAll = 0;
  size_t covered = 0;
  size_t launched = 0;
  for (uint32_t k = 0; k < K; ++k) {
    launched += secondsOf[k] > 0;
    tAll += secondsOf[k];
    if (auto it = byName.find(timeline.names()[k]); it != byName.end()) {
      wSum += it->second->watts * secondsOf[k];
      tSum += secondsOf[k];
    }
  }
  double meanWatts = tSum > 0 ? wSum / tSum : file.idle.watts;
  for (uint32_t k = 0; k < K; ++k) {
    auto it = byName.find(timeline.names()[k]);
    if (it != byName.end()) {
      choice.calibration.kernels[k] = {it->second->watts, it->second->relSpread};
      covered += secondsOf[k] > 0;
    } else {
      choice.calibration.kernels[k] = {meanWatts, kUncalibratedSpread};
    }
  }
  choice.calibration.idle = {file.idle.watts, file.idle.relSpread};
  choice.calibrated = true;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s (%zu of %zu kernels replayed, %.1f %% of kernel time",
                path.c_str(), covered, launched, tAll > 0 ? 100 * tSum / tAll : 0.0);
  choice.description =
      std::string(buf) + (covered < launched ? "; the rest at their mean power ±100 %" : "") +
      (std::isnan(file.trainingCelsius) ? ")"
                                        : fmt("; heat-matched at %.0f °C)", file.trainingCelsius));
  return choice;
}

//===--- profile: calibration by replay ----------------------------------------===//

namespace {

struct ProfileOptions {
  std::string plan, backend = "cpu", meter = "auto", function = "train_step", out;
  double window = 1.0;  // seconds, >= 1 (DESIGN.md)
  double spread = 0.02; // stop repeating when the repeats agree within this
  int minRepeats = 3, maxRepeats = 8;
  int64_t top = 0; // only the N kernels with the most time (0: all)
  int threads = 0;
  bool heat = true; // heat-match the windows where the meter has a thermometer
  HeatOptions heatOptions;
};

/// One measurement of `work` (which runs some launches and returns how many):
/// boundaries at observed counter changes, >= window seconds apart, `work`
/// called back to back in between (each call ~10 ms) so the device stays busy. A
/// counter change seen after a call happened during it: the boundary is placed at
/// the call's middle (time and launches), and half the call's length is how far
/// off it may be (`lagSeconds`, both ends together).
struct Measurement {
  double joules = 0, seconds = 0, launches = 0, lagSeconds = 0;
};

Measurement measure(EnergyMeter &meter, double window, const std::function<int64_t()> &work) {
  struct Boundary {
    double t, joules, launches, halfCall;
  };
  int64_t launches = 0;
  auto waitForTick = [&]() {
    double v0 = meter.readJoules();
    for (;;) {
      double before = timelineClock();
      int64_t n = work();
      double after = timelineClock();
      launches += n;
      double v = meter.readJoules();
      if (v != v0)
        return Boundary{(before + after) / 2, v, double(launches) - double(n) / 2,
                        (after - before) / 2};
    }
  };
  Boundary a = waitForTick();
  while (timelineClock() - a.t < window)
    launches += work();
  Boundary b = waitForTick();
  return {b.joules - a.joules, b.t - a.t, b.launches - a.launches, a.halfCall + b.halfCall};
}

double relSpread(const std::vector<double> &xs) {
  double mean = 0;
  for (double x : xs)
    mean += x;
  mean /= double(xs.size());
  double dev = 0;
  for (double x : xs)
    dev = std::max(dev, std::fabs(x - mean));
  return mean != 0 ? dev / std::fabs(mean) : 0.0;
}

/// Heat matching (HeatMatch.h): each window starts within a tolerance of `celsius`.
struct HeatMatching {
  HeatDevice device;
  HeatOptions options;
  double celsius;
};

/// Repeats `m` until `minRepeats` agree within `spread` (or maxRepeats); fills the
/// mean power, J/launch and their spread. With `heat`, each window starts near the
/// training temperature.
KernelCalibration calibrate(const std::string &name, EnergyMeter &meter, const ProfileOptions &o,
                            const HeatMatching *heat, const std::function<int64_t()> &work) {
  std::vector<double> watts, jpl, spl;
  KernelCalibration k;
  k.name = name;
  auto *nvml = dynamic_cast<NvmlMeter *>(&meter);
  double c0 = 0, c = 0, clk = 0, lag = 0; // lag: the largest relative boundary error of a repeat
  for (int r = 0; r < o.maxRepeats; ++r) {
    if (heat)
      k.heatCapped += reheatTo(heat->device, heat->celsius, heat->options).capped;
    c0 += meter.celsius();
    Measurement m = measure(meter, o.window, work);
    c += meter.celsius();
    watts.push_back(m.joules / m.seconds);
    lag = std::max(lag, m.lagSeconds / m.seconds);
    if (m.launches > 0) {
      jpl.push_back(m.joules / m.launches);
      spl.push_back(m.seconds / m.launches);
    }
    if (nvml)
      clk += nvml->readings().smClockMHz;
    // The counter's tick over a window bounds each repeat too.
    double tick = meter.resolutionJoules() / m.joules;
    if (int(watts.size()) >= o.minRepeats && relSpread(watts) + tick + lag <= o.spread)
      break;
  }
  k.repeats = int(watts.size());
  auto mean = [](const std::vector<double> &v) {
    double s = 0;
    for (double x : v)
      s += x;
    return v.empty() ? kNaN : s / double(v.size());
  };
  k.watts = mean(watts);
  // The repeats' spread, plus the counter's resolution over a window and the
  // boundaries' placement (half a work call at each end, measured).
  k.relSpread = relSpread(watts) + meter.resolutionJoules() / (k.watts * o.window) + lag;
  k.joulesPerLaunch = mean(jpl);
  k.secondsPerLaunch = mean(spl);
  k.celsiusStart = c0 / k.repeats; // NaN without a thermometer
  k.celsius = c / k.repeats;
  k.smClockMHz = nvml ? clk / k.repeats : kNaN;
  return k;
}

ProfileOptions parseProfileOptions(int argc, char **argv) {
  ProfileOptions o;
  auto need = [&](int &i) -> std::string {
    if (i + 1 >= argc)
      throw Error(std::string(argv[i]) + " needs a value\n" + profileUsage());
    return argv[++i];
  };
  auto positive = [&](int &i) {
    std::string flag = argv[i], v = need(i);
    char *end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !(x > 0) || !std::isfinite(x)) // inf: a window that never closes
      throw Error(flag + " '" + v + "': expected a positive number");
    return x;
  };
  auto count = [&](int &i) {
    std::string flag = argv[i], v = need(i);
    char *end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x <= 0 || errno == ERANGE || x > std::numeric_limits<int>::max())
      throw Error(flag + " '" + v + "': expected a positive integer");
    return int(x);
  };
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--backend")
      o.backend = need(i);
    else if (a == "--meter")
      o.meter = need(i);
    else if (a == "--function")
      o.function = need(i);
    else if (a == "--window")
      o.window = positive(i);
    else if (a == "--spread")
      o.spread = positive(i);
    else if (a == "--max-repeats")
      o.maxRepeats = count(i);
    else if (a == "--top")
      o.top = count(i);
    else if (a == "--threads")
      o.threads = count(i);
    else if (a == "--out")
      o.out = need(i);
    else if (a == "--no-heat")
      o.heat = false;
    else if (a == "--heat-steady")
      o.heatOptions.steadyRiseCelsius = positive(i);
    else if (a == "--heat-max")
      o.heatOptions.maxSeconds = positive(i);
    else if (a == "--heat-tolerance")
      o.heatOptions.toleranceCelsius = positive(i);
    else if (a == "--reheat-max")
      o.heatOptions.reheatMaxSeconds = positive(i);
    else if (!a.empty() && a[0] == '-')
      throw Error("profile: unknown option '" + a + "'\n" + profileUsage());
    else if (o.plan.empty())
      o.plan = a;
    else
      throw Error("profile: unexpected argument '" + a + "'\n" + profileUsage());
  }
  if (o.plan.empty())
    throw Error(std::string("profile: which plan?\n") + profileUsage());
  if (o.window < 1.0)
    throw Error(
        "--window " + std::to_string(o.window) +
        ": windows shorter than 1 s are not measured (DESIGN.md: the counter moves every ~100 ms)");
  o.minRepeats = std::min(o.minRepeats, o.maxRepeats);
  return o;
}

} // namespace

const char *profileUsage() {
  return R"(usage: profile PLAN [options]
Calibrates each distinct kernel (plan step) of a function by replaying it alone for
windows of >= 1 s, the idle baseline measured the same way, repeated until the
repeats agree; prints J/launch and watts with their spread and caches them for
`train --energy` (per plan, device and meter).
Static power rises with temperature, so with a thermometer (NVML) the windows are
heat-matched: the function first runs back to back until the temperature is steady
(the training temperature), and each window starts within a tolerance of it
(whole-function runs while colder, rest while hotter).
  --backend cpu|cuda      the backend (default cpu)
  --meter nvml|rapl|none|auto   the meter (default auto: NVML for cuda, RAPL for cpu)
  --function NAME         the function whose steps are replayed (default train_step)
  --window S              seconds per measurement window, >= 1 (default 1)
  --spread F              stop repeating when the repeats agree within F (default 0.02)
  --max-repeats N         at most N windows per kernel (default 8)
  --top N                 only the N kernels with the most time in one run (default: all)
  --out FILE              also write the calibration there
  --no-heat               no heat matching: each kernel at the temperature it finds
  --heat-steady C         steady: the temperature moves less than C °C over 5 s (default 0.5)
  --heat-max S            stop heating after S s even if not steady (default 60)
  --heat-tolerance C      each window starts within C °C of the training temperature (default 1)
  --reheat-max S          at most S s of re-heating or rest before a window (default 15)
  --threads N             CPU threads
)";
}

int profileMain(int argc, char **argv) {
  try {
    ProfileOptions o = parseProfileOptions(argc, argv);
    LoadedPlan plan = LoadedPlan::load(o.plan);
    std::unique_ptr<Executor> exec = openExecutor(o.backend, plan, o.threads);
    std::string note;
    std::unique_ptr<EnergyMeter> meter = openMeter(o.meter, exec->backendName(), note);
    const plan::Function *fn = plan.findFunction(o.function);
    if (!fn || !fn->steps())
      throw Error(o.plan + ": no function '" + o.function + "' with steps");
    uint32_t fnIndex = 0;
    for (uint32_t i = 0; i < plan->functions()->size(); ++i)
      if (plan->functions()->Get(i) == fn)
        fnIndex = i;

    // Inputs are zeros (class 0): the kernels do the same work whatever the data, and
    // a device's uninitialised memory could hold labels out of range.
    for (uint32_t id = 0; id < plan->tensors()->size(); ++id) {
      if (plan->tensors()->Get(id)->role() != plan::Role::Input)
        continue;
      size_t n = size_t(plan.numElements(int(id)));
      if (plan->tensors()->Get(id)->dtype() == plan::DType::I32) {
        std::vector<int32_t> zeros(n, 0);
        exec->writeIndices(int(id), zeros.data(), n);
      } else {
        std::vector<float> zeros(n, 0.0f);
        exec->write(int(id), zeros.data(), n);
      }
    }
    // One timed run (after a warm-up run) ranks the kernels and sizes the replays.
    exec->run(o.function);
    exec->synchronize();
    if (!exec->enableTimeline(true))
      throw Error("the " + exec->backendName() + " backend cannot time its steps");
    exec->run(o.function);
    std::vector<StepSpan> spans;
    exec->drainTimeline(spans);
    const std::string timeline = exec->timelineName(), timelineMethod = exec->timelineMethod();
    exec->enableTimeline(false);
    PlanKernels pk = planKernels(plan);
    std::vector<std::pair<double, uint32_t>> order; // (seconds, step)
    for (const StepSpan &s : spans)
      if (s.function == fnIndex)
        order.push_back({s.end - s.start, s.step});
    std::sort(order.rbegin(), order.rend());
    if (o.top > 0 && size_t(o.top) < order.size())
      order.resize(size_t(o.top));

    std::printf("profile %s (%s) on %s\nmeter: %s\ntimeline: %s: %s\n", o.plan.c_str(),
                o.function.c_str(), exec->deviceDescription().c_str(), meter->name().c_str(),
                timeline.c_str(), timelineMethod.c_str());
    if (!meter->measures()) {
      std::printf("energy: not measured%s%s; time per launch from one run:\n",
                  note.empty() ? "" : ": ", note.c_str());
      for (auto [secs, step] : order)
        std::printf("  %-40.40s %12s\n", pk.names[fnIndex][step].c_str(), seconds(secs).c_str());
      // Said, not skipped in silence: a calibration needs measured energy.
      if (!o.out.empty())
        std::fprintf(stderr, "note: --out %s not written: no energy was measured, so there is no "
                             "calibration to write\n",
                     o.out.c_str());
      return 0;
    }
    CalibrationFile file;
    file.plan = o.plan;
    file.device = exec->deviceDescription();
    file.meter = meter->name();
    file.timeline = timeline;

    // Heat matching (HeatMatch.h): the whole function back to back until steady.
    // A heating unit is ~10 ms of runs, as a replay call is, sized from the last
    // unit: one synchronize per run would leave the device idle between short runs.
    auto rest = [] { std::this_thread::sleep_for(std::chrono::milliseconds(10)); };
    int runsPerUnit = 1;
    auto heatUnit = [&] {
      double t0 = timelineClock();
      for (int i = 0; i < runsPerUnit; ++i)
        exec->run(o.function);
      exec->synchronize();
      double perRun = (timelineClock() - t0) / runsPerUnit;
      runsPerUnit = std::clamp(int(0.01 / std::max(perRun, 1e-6)), 1, 10000);
    };
    HeatMatching heat{
        {[&] { return meter->celsius(); }, heatUnit, rest, timelineClock}, o.heatOptions, kNaN};
    const HeatResult steady = o.heat ? heatUntilSteady(heat.device, heat.options) : HeatResult{};
    if (!o.heat)
      std::printf("heat: off (--no-heat): each kernel at the temperature the replays before it "
                  "left\n");
    else if (!steady.measured)
      std::printf("heat: not matched: the meter has no thermometer; each kernel at the "
                  "temperature the replays before it left\n");
    else {
      heat.celsius = file.trainingCelsius = steady.celsius;
      std::printf("heat: training temperature %.1f °C: %s after %.1f s of %s back to back; each "
                  "window starts within %g °C of it (re-heating or resting for at most %g s)\n",
                  steady.celsius, steady.capped ? "not steady (--heat-max)" : "steady",
                  steady.seconds, o.function.c_str(), heat.options.toleranceCelsius,
                  heat.options.reheatMaxSeconds);
    }
    const HeatMatching *matching = std::isnan(heat.celsius) ? nullptr : &heat;
    file.idle = calibrate("(idle)", *meter, o, matching, [&] {
      rest();
      return int64_t(0);
    });
    std::printf("%-36s %11s %12s %12s %8s %7s %3s %s %5s\n", "kernel", "time/launch", "J/launch",
                "J>idle", "W", "spread", "rep", report::padLeft("°C", 9).c_str(), "MHz");
    std::printf("(windows of >= %g s between counter ticks; J>idle: J/launch above the idle "
                "baseline; spread: the repeats' largest deviation plus the counter's resolution "
                "and boundary lag; °C: at the windows' start>end, means)\n",
                o.window);
    auto reading = [](double v) { return std::isnan(v) ? std::string("-") : fmt("%.0f", v); };
    auto row = [&](const KernelCalibration &k) {
      bool idle = &k == &file.idle;
      std::string jpl = idle ? "" : fmt("%.6g", k.joulesPerLaunch);
      std::string above = idle ? "" : fmt("%.6g", (k.watts - file.idle.watts) * k.secondsPerLaunch);
      std::string celsius =
          std::isnan(k.celsius) ? "-" : fmt("%.1f", k.celsiusStart) + ">" + fmt("%.1f", k.celsius);
      std::printf("%-36.36s %11s %12s %12s %8.1f %6.2f%% %3d %9s %5s\n", k.name.c_str(),
                  idle ? "" : seconds(k.secondsPerLaunch).c_str(), jpl.c_str(), above.c_str(),
                  k.watts, 100 * k.relSpread, k.repeats, celsius.c_str(),
                  reading(k.smClockMHz).c_str());
      if (k.heatCapped)
        std::printf("  ^ %d of %d windows started outside %g °C of %.1f °C: re-heating hit "
                    "--reheat-max %g s\n",
                    k.heatCapped, k.repeats, heat.options.toleranceCelsius, heat.celsius,
                    heat.options.reheatMaxSeconds);
    };
    row(file.idle);
    for (auto [secs, step] : order) {
      // ~10 ms of launches per call, then a wait: the device stays busy and the
      // launches counted are the ones done.
      int64_t batch = std::max<int64_t>(1, int64_t(0.01 / std::max(secs, 1e-7)));
      std::string fname = o.function;
      uint32_t s = step;
      KernelCalibration k = calibrate(pk.names[fnIndex][step], *meter, o, matching, [&] {
        exec->replayStep(fname, s, batch);
        exec->synchronize();
        return batch;
      });
      file.kernels.push_back(k);
      row(file.kernels.back());
    }
    std::string path = calibrationCachePath(*exec, meter->name());
    writeCalibration(path, file);
    std::printf("cached: %s\n", path.c_str());
    if (!o.out.empty())
      writeCalibration(o.out, file);
    return 0;
  } catch (const Error &e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

} // namespace mantissa
