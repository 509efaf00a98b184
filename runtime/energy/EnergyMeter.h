//===- EnergyMeter.h - cumulative energy counters and measurement windows -===//
//
// Part of the energy attribution of ../shared/DESIGN.md ("Energy: what was
// measured, and the method it forces"). A meter is a cumulative energy counter
// that moves only at its update period (NVML's total-energy counter: ~100 ms) and
// in steps of its resolution. Nothing here reads energy per kernel: kernels last
// microseconds, the counter moves every 100 ms. Energy is measured only over
// windows of >= 1 s (DESIGN.md step 2), whose boundaries WindowRecorder places at
// observed counter changes, so the counter's lag at either end is at most one poll
// interval rather than one update period.
//
// Meters:
//  - SyntheticMeter: a known piecewise-constant power trace over a simulated
//    clock; the counter is the integral of P(t) up to the last tick boundary
//    (ticks every updatePeriod seconds), optionally floored to the resolution.
//    For tests only (DESIGN.md step 5).
//  - NoMeter: no counter; every figure derived from it is "not measured".
//  - RaplMeter: the host's RAPL package counters
//    (/sys/class/powercap/intel-rapl:N/energy_uj, summed over packages, each
//    unwrapped at its max_energy_range_uj), where readable.
//  - NvmlMeter (NvmlMeter.h): dlopen("libnvidia-ml.so.1"),
//    nvmlDeviceGetTotalEnergyConsumption in mJ: update period ~100 ms, resolution
//    1 mJ, plus power, temperature and SM clock readings.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace mantissa {

class EnergyMeter {
public:
  virtual ~EnergyMeter() = default;
  /// The cumulative counter in joules (NaN for a meter that measures nothing).
  virtual double readJoules() = 0;
  /// How often the counter moves, in seconds (0 if unknown / not measured).
  virtual double updatePeriodSeconds() const = 0;
  /// The counter's step in joules (0 if continuous / not measured).
  virtual double resolutionJoules() const = 0;
  virtual std::string name() const = 0;
  /// False for NoMeter: no joule derived from it may be printed.
  virtual bool measures() const { return true; }
  /// The metered device's temperature now; NaN for a meter without a thermometer
  /// (only NVML has one: RAPL's package counters come with none).
  virtual double celsius() { return std::numeric_limits<double>::quiet_NaN(); }
};

/// No meter: "not measured".
class NoMeter : public EnergyMeter {
public:
  double readJoules() override;
  double updatePeriodSeconds() const override { return 0.0; }
  double resolutionJoules() const override { return 0.0; }
  std::string name() const override { return "none (not measured)"; }
  bool measures() const override { return false; }
};

/// RAPL through sysfs: the package domains (intel-rapl:N, not their sub-zones,
/// which the package already counts) summed, each counter unwrapped.
class RaplMeter : public EnergyMeter {
public:
  /// nullptr when no package domain's energy_uj is readable under `root`.
  static std::unique_ptr<RaplMeter> open(const std::string &root = "/sys/class/powercap");
  double readJoules() override;
  double updatePeriodSeconds() const override { return 1e-3; } // RAPL: ~1 ms
  double resolutionJoules() const override { return 1e-6; }    // the file's unit
  std::string name() const override;

private:
  struct Domain {
    std::string path; // .../energy_uj
    std::string name;
    uint64_t maxRange = 0;
    uint64_t last = 0;
  };
  std::vector<Domain> domains_;
  double joules_ = 0.0;
};

/// The host meter: RAPL where readable, else NoMeter.
std::unique_ptr<EnergyMeter> openHostMeter(const std::string &powercapRoot = "/sys/class/powercap");

/// One piece of a piecewise-constant power trace: `watts` from `start` until the
/// next segment's start (the last segment lasts for ever). Power before the first
/// segment is 0.
struct PowerSegment {
  double start = 0.0;
  double watts = 0.0;
};

/// A meter over a simulated clock with a known power trace (tests only).
class SyntheticMeter : public EnergyMeter {
public:
  /// `trace` must be sorted by start. The counter moves at times
  /// tickPhase + k * updatePeriod; between ticks it holds the exact integral of
  /// P(t) up to the last tick, floored to a multiple of `resolution` if > 0.
  SyntheticMeter(std::vector<PowerSegment> trace, double updatePeriod = 0.1,
                 double resolution = 0.0, double tickPhase = 0.0);

  /// The simulated clock that readJoules() reads at.
  void setNow(double seconds) { now_ = seconds; }
  double now() const { return now_; }

  double readJoules() override;
  double updatePeriodSeconds() const override { return period_; }
  double resolutionJoules() const override { return resolution_; }
  std::string name() const override { return "synthetic"; }

  /// The exact integral of P from -inf to t (what an ideal counter would read).
  double exactJoulesAt(double t) const;
  /// The exact energy over [a, b].
  double exactJoules(double a, double b) const { return exactJoulesAt(b) - exactJoulesAt(a); }

private:
  std::vector<PowerSegment> trace_;
  std::vector<double> cumulative_; // energy at each segment's start
  double period_, resolution_, phase_;
  double now_ = 0.0;
};

/// A measurement window: [start, end] on the timeline's clock, with the counter's
/// delta over it.
struct EnergyWindow {
  double start = 0.0;
  double end = 0.0;
  double joules = 0.0;
  /// How late a boundary may be relative to the counter change it marks: the
  /// change happened somewhere in the poll interval before the boundary, so the
  /// window's time is off from the counter's by less than the longer of its two
  /// boundaries' intervals. Attribution widens the counter's error bound by it
  /// when it exceeds the meter's update period (a poll delayed by a busy host).
  double boundaryLagSeconds = 0.0;
};

/// What the meter said: its windows, and whether anything was measured at all.
struct MeasuredWindows {
  bool measured = false;
  std::string meterName;
  double updatePeriodSeconds = 0.0;
  double resolutionJoules = 0.0;
  std::vector<EnergyWindow> windows;
};

/// Cuts the run into windows of >= minWindowSeconds whose boundaries are observed
/// counter changes (DESIGN.md step 2). Call poll() often (after each step, or from
/// a polling thread) with the timeline's clock: it reads the clock on both sides of
/// the counter, so each boundary's recorded lag bounds how far its time is from the
/// counter change it marks, however late the host ran the poll.
class WindowRecorder {
public:
  explicit WindowRecorder(EnergyMeter &meter, double minWindowSeconds = 1.0);
  void poll(const std::function<double()> &clock);
  /// With a clock that stands still at `now` (tests, synthetic meters).
  void poll(double now);
  MeasuredWindows result() const;

private:
  EnergyMeter &meter_;
  double minWindow_;
  bool havePoll_ = false, open_ = false;
  double lastValue_ = 0.0, lastReadStart_ = 0.0;
  double openTime_ = 0.0, openValue_ = 0.0, openLag_ = 0.0;
  std::vector<EnergyWindow> windows_;
};

} // namespace mantissa
