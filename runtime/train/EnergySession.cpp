//===- EnergySession.cpp --------------------------------------------------===//
#include "runtime/train/EnergySession.h"
#include "runtime/train/Calibration.h"

#include "common/Error.h"
#include "runtime/energy/NvmlMeter.h"
#include "runtime/energy/Report.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

namespace mantissa {
namespace {

/// Polling interval of the meter thread: a window boundary is late by at most this
/// (well under the NVML counter's ~100 ms update period).
constexpr auto kPollInterval = std::chrono::milliseconds(5);

/// `--meter synthetic:W[:C]` (tests only, not in --help): a constant W watts on the
/// real clock, counter moving every 100 ms in 1 mJ steps like NVML's, so that the
/// whole path of `train --energy` runs in CI with a known answer; with C, a
/// thermometer that reads a constant C °C (profile's heat matching then runs).
class ClockedSyntheticMeter : public EnergyMeter {
public:
  ClockedSyntheticMeter(double watts, double celsius)
      : meter_({{timelineClock(), watts}}, 0.1, 1e-3), watts_(watts), celsius_(celsius) {}
  double readJoules() override {
    meter_.setNow(timelineClock());
    return meter_.readJoules();
  }
  double updatePeriodSeconds() const override { return meter_.updatePeriodSeconds(); }
  double resolutionJoules() const override { return meter_.resolutionJoules(); }
  std::string name() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "synthetic %g W (tests only)", watts_);
    return buf;
  }
  double celsius() override { return celsius_; }

private:
  SyntheticMeter meter_;
  double watts_, celsius_;
};

std::string lower(std::string s) {
  for (char &c : s)
    c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string precisionLabel(plan::DType t) {
  switch (t) {
  case plan::DType::F32:
    return "fp32";
  case plan::DType::F16:
    return "fp16";
  case plan::DType::BF16:
    return "bf16";
  case plan::DType::I32:
    return "i32";
  }
  return "?";
}

void writeFile(const std::string &path, const std::string &text, const char *what) {
  std::ofstream f(path);
  if (!f || !(f << text))
    throw Error(path + ": cannot write the " + what);
}

} // namespace

std::unique_ptr<EnergyMeter> openMeter(const std::string &choice, const std::string &backend,
                                       std::string &note) {
  std::string c = choice == "auto" ? (backend == "cuda"  ? "nvml"
                                      : backend == "cpu" ? "rapl"
                                                         : "none")
                                   : choice;
  if (c == "none")
    return std::make_unique<NoMeter>();
  if (c == "nvml") {
    if (auto m = openGpuMeter(0, note))
      return m;
    return std::make_unique<NoMeter>();
  }
  if (c == "rapl") {
    if (auto m = RaplMeter::open())
      return m;
    note = "RAPL is not readable (/sys/class/powercap/intel-rapl:N/energy_uj: absent or root-only)";
    return std::make_unique<NoMeter>();
  }
  if (c.rfind("synthetic:", 0) == 0) {
    char *end = nullptr;
    double w = std::strtod(c.c_str() + 10, &end), celsius = NAN;
    if (*end == ':' && end[1])
      celsius = std::strtod(end + 1, &end);
    if (*end || !(w > 0) || std::isinf(celsius))
      throw Error("--meter " + choice + ": expected synthetic:WATTS[:CELSIUS] with WATTS > 0");
    return std::make_unique<ClockedSyntheticMeter>(w, celsius);
  }
  throw Error("--meter " + choice + ": expected nvml, rapl, none or auto");
}

PlanKernels planKernels(const LoadedPlan &plan) {
  PlanKernels pk;
  for (const plan::Function *fn : *plan->functions()) {
    std::vector<std::string> names;
    std::map<std::string, int> seen;
    const std::string prefix = fn->name()->str() == "train_step" ? "" : fn->name()->str() + ":";
    if (fn->steps())
      for (uint32_t s = 0; s < fn->steps()->size(); ++s)
        ++seen[fn->steps()->Get(s)->name() ? fn->steps()->Get(s)->name()->str() : ""];
    if (fn->steps())
      for (uint32_t s = 0; s < fn->steps()->size(); ++s) {
        const plan::Step *step = fn->steps()->Get(s);
        std::string base = step->name() ? step->name()->str() : "";
        // A name shared by several steps gets the step index: one kernel per step.
        std::string name = prefix + (base.empty() ? "step" : base) +
                           (seen[base] > 1 || base.empty() ? "#" + std::to_string(s) : "");
        names.push_back(name);
        pk.labels[name] = {plan::EnumNameKernel(step->kernel_type()),
                           precisionLabel(step->precision())};
      }
    pk.names.push_back(std::move(names));
  }
  return pk;
}

EnergySession::EnergySession(const EnergyOptions &options, Executor &exec)
    : options_(options), exec_(exec) {
  meter_ = openMeter(options.meter, exec.backendName(), meterNote_);
  if (!meterNote_.empty())
    std::fprintf(stderr, "energy: not measured: %s\n", meterNote_.c_str());
  recorder_ = std::make_unique<WindowRecorder>(*meter_);
  kernels_ = planKernels(exec.plan());
  for (const auto &fn : kernels_.names) {
    std::vector<uint32_t> ids;
    for (const std::string &n : fn)
      ids.push_back(timeline_.kernelId(n));
    ids_.push_back(std::move(ids));
  }
  run_.labels = kernels_.labels;
  run_.targetLoss = options.targetLoss;
}

EnergySession::~EnergySession() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void EnergySession::begin() {
  t0_ = timelineClock();
  timing_ = exec_.enableTimeline(true);
  run_.timelineMethod =
      timing_ ? exec_.timelineMethod() : "none (this backend cannot time its steps)";
  run_.timeline = timing_ ? exec_.timelineName() : "none";
  run_.runStart = 0.0;
  run_.clockOrigin = t0_;
  if (meter_->measures())
    thread_ = std::thread([this] { poller(); });
}

void EnergySession::poller() {
  while (!stop_) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      try {
        recorder_->poll([this] { return timelineClock() - t0_; });
      } catch (const std::exception &e) {
        pollError_ = e.what(); // reported by end(): the run is then "not measured"
        return;
      }
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

void EnergySession::drain() {
  if (!timing_)
    return;
  spans_.clear();
  exec_.drainTimeline(spans_);
  for (const StepSpan &s : spans_)
    timeline_.record(ids_.at(s.function).at(s.step), s.start - t0_, s.end - t0_, s.tag);
}

void EnergySession::loss(int64_t step, double loss) {
  run_.losses.push_back({step, timelineClock() - t0_, loss});
  drain(); // the loss read synchronised: the spans so far are complete
}

void EnergySession::end() {
  exec_.synchronize();
  drain();
  run_.runEnd = timelineClock() - t0_;
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  if (timing_) {
    // Before the timeline is off: what each plan kernel launched on the device.
    for (uint32_t f = 0; f < kernels_.names.size(); ++f)
      for (uint32_t st = 0; st < kernels_.names[f].size(); ++st) {
        std::vector<std::string> device = exec_.timelineDeviceKernels(f, st);
        if (!device.empty())
          run_.deviceKernels[kernels_.names[f][st]] = std::move(device);
      }
    exec_.enableTimeline(false);
  }
  MeasuredWindows windows;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pollError_.empty()) {
      try {
        recorder_->poll([this] { return timelineClock() - t0_; });
      } catch (const std::exception &e) {
        pollError_ = e.what();
      }
    }
    windows = recorder_->result();
  }
  if (!pollError_.empty()) {
    std::fprintf(stderr, "energy: not measured: the meter failed during the run: %s\n",
                 pollError_.c_str());
    windows.measured = false;
    meterNote_ = "failed: " + pollError_;
  }
  if (windows.measured && windows.windows.empty()) {
    // No counter interval of >= 1 s closed: DESIGN.md measures nothing shorter.
    std::fprintf(stderr,
                 "energy: not measured: the run lasted %.2f s and the meter (%s) needs windows "
                 "of >= 1 s (train longer)\n",
                 run_.runEnd, windows.meterName.c_str());
    windows.measured = false;
    meterNote_ = "no window of >= 1 s closed (train longer)";
  }
  CalibrationChoice cal = chooseCalibration(exec_, timeline_, meter_->name());
  run_.calibration = cal.description;
  run_.calibrated = cal.calibrated;
  run_.attribution = attributeEnergy(timeline_, cal.calibration, windows);
  if (!meterNote_.empty())
    run_.attribution.meterName += "; " + meterNote_; // why the asked meter is not there
  if (!std::isnan(options_.targetLoss))
    setTarget(run_, options_.targetLoss);
}

void EnergySession::writeFiles(const std::string &title) const {
  if (!options_.csv.empty())
    writeFile(options_.csv, energyRunCsv(run_), "energy CSV");
  if (!options_.trace.empty())
    writeFile(options_.trace, chromeTraceJson(timeline_, run_.attribution), "trace");
  if (!options_.html.empty())
    writeFile(options_.html, energyRunHtml(run_, title), "energy report");
}

} // namespace mantissa
