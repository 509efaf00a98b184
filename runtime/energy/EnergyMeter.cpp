//===- EnergyMeter.cpp ----------------------------------------------------===//
#include "runtime/energy/EnergyMeter.h"

#include "common/Error.h"

#include <algorithm>
#include <cmath>
#include <dirent.h>
#include <fstream>
#include <limits>

namespace mantissa {

double NoMeter::readJoules() { return std::numeric_limits<double>::quiet_NaN(); }

namespace {

bool readU64(const std::string &path, uint64_t &out) {
  std::ifstream f(path);
  unsigned long long v = 0;
  if (!(f >> v))
    return false;
  out = v;
  return true;
}

bool isPackageDomain(const std::string &n) {
  // "intel-rapl:<digits>" exactly (sub-zones are "intel-rapl:N:M").
  const std::string prefix = "intel-rapl:";
  if (n.compare(0, prefix.size(), prefix) != 0 || n.size() == prefix.size())
    return false;
  return std::all_of(n.begin() + prefix.size(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

std::unique_ptr<RaplMeter> RaplMeter::open(const std::string &root) {
  std::vector<std::string> names;
  if (DIR *d = opendir(root.c_str())) {
    while (dirent *e = readdir(d))
      if (isPackageDomain(e->d_name))
        names.push_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::unique_ptr<RaplMeter> m(new RaplMeter());
  for (const std::string &n : names) {
    Domain dom;
    std::string dir = root + "/" + n;
    dom.path = dir + "/energy_uj";
    dom.name = n;
    if (!readU64(dom.path, dom.last) || !readU64(dir + "/max_energy_range_uj", dom.maxRange) ||
        dom.maxRange == 0)
      continue; // unreadable (energy_uj is often root-only)
    m->domains_.push_back(dom);
  }
  if (m->domains_.empty())
    return nullptr;
  return m;
}

double RaplMeter::readJoules() {
  for (Domain &d : domains_) {
    uint64_t v = 0;
    if (!readU64(d.path, v))
      throw Error("RAPL: cannot read " + d.path);
    uint64_t delta = v >= d.last ? v - d.last : v + (d.maxRange - d.last); // wrapped
    joules_ += static_cast<double>(delta) * 1e-6;
    d.last = v;
  }
  return joules_;
}

std::string RaplMeter::name() const {
  std::string s = "RAPL (";
  for (size_t i = 0; i < domains_.size(); ++i)
    s += (i ? "+" : "") + domains_[i].name;
  return s + ")";
}

std::unique_ptr<EnergyMeter> openHostMeter(const std::string &powercapRoot) {
  if (auto rapl = RaplMeter::open(powercapRoot))
    return rapl;
  return std::unique_ptr<EnergyMeter>(new NoMeter());
}

SyntheticMeter::SyntheticMeter(std::vector<PowerSegment> trace, double updatePeriod,
                               double resolution, double tickPhase)
    : trace_(std::move(trace)), period_(updatePeriod), resolution_(resolution),
      phase_(tickPhase) {
  if (!(period_ > 0.0))
    throw Error("synthetic meter: the update period must be positive");
  if (resolution_ < 0.0)
    throw Error("synthetic meter: the resolution must not be negative");
  cumulative_.resize(trace_.size());
  double e = 0.0;
  for (size_t i = 0; i < trace_.size(); ++i) {
    if (i > 0) {
      if (trace_[i].start < trace_[i - 1].start)
        throw Error("synthetic meter: the power trace is not sorted by start");
      e += trace_[i - 1].watts * (trace_[i].start - trace_[i - 1].start);
    }
    cumulative_[i] = e;
  }
}

double SyntheticMeter::exactJoulesAt(double t) const {
  if (trace_.empty() || t <= trace_.front().start)
    return 0.0;
  auto it = std::upper_bound(trace_.begin(), trace_.end(), t,
                             [](double v, const PowerSegment &s) { return v < s.start; });
  size_t i = static_cast<size_t>(it - trace_.begin()) - 1;
  return cumulative_[i] + trace_[i].watts * (t - trace_[i].start);
}

double SyntheticMeter::readJoules() {
  double tick = phase_ + std::floor((now_ - phase_) / period_) * period_;
  double e = exactJoulesAt(tick);
  if (resolution_ > 0.0)
    e = std::floor(e / resolution_) * resolution_;
  return e;
}

WindowRecorder::WindowRecorder(EnergyMeter &meter, double minWindowSeconds)
    : meter_(meter), minWindow_(minWindowSeconds) {}

void WindowRecorder::poll(double now) {
  poll([now] { return now; });
}

void WindowRecorder::poll(const std::function<double()> &clock) {
  if (!meter_.measures())
    return;
  // The time before and after the read: a change this read sees happened after the
  // previous read began and before `now`.
  double readStart = clock();
  double v = meter_.readJoules();
  double now = clock();
  if (!havePoll_) {
    havePoll_ = true;
    lastValue_ = v;
    lastReadStart_ = readStart;
    return;
  }
  if (v != lastValue_) {
    // The counter moved somewhere in (lastReadStart_, now]: a boundary candidate.
    double lag = now - lastReadStart_;
    if (!open_) {
      open_ = true;
    } else if (now - openTime_ >= minWindow_) {
      EnergyWindow w;
      w.start = openTime_;
      w.end = now;
      w.joules = v - openValue_;
      w.boundaryLagSeconds = std::max(openLag_, lag);
      windows_.push_back(w);
    } else {
      lastValue_ = v;
      lastReadStart_ = readStart;
      return; // keep the window open
    }
    openTime_ = now;
    openValue_ = v;
    openLag_ = lag;
  }
  lastValue_ = v;
  lastReadStart_ = readStart;
}

MeasuredWindows WindowRecorder::result() const {
  MeasuredWindows m;
  m.measured = meter_.measures();
  m.meterName = meter_.name();
  m.updatePeriodSeconds = meter_.updatePeriodSeconds();
  m.resolutionJoules = meter_.resolutionJoules();
  if (m.measured)
    m.windows = windows_;
  return m;
}

} // namespace mantissa
