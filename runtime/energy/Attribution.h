//===- Attribution.h - per-kernel energy attribution with conservation ----===//
//
// How this follows ../shared/DESIGN.md, "Energy: what was measured, and the method
// it forces" (the NVML counter moves every ~100 ms; most kernels last µs):
//
//  1. Time every kernel: KernelTimeline holds each launch's (kernel id, start,
//     end, step) on one clock (CUDA events / CUPTI records fill it on the GPU; a
//     follow-up).
//  2. Measure windows of >= 1 s only: MeasuredWindows (EnergyMeter.h), the
//     counter's delta E_w over each window. attributeEnergy refuses a shorter
//     window (AttributionOptions::minWindowSeconds, 1 s).
//  3. Calibrate each distinct kernel's power by replaying it alone for >= 1 s:
//     Calibration holds, per kernel id, the average device power while it runs
//     (W, idle baseline included) and its relative spread, plus the idle power
//     and its spread. Calibration by replay itself is a follow-up.
//  4. Attribute: in each window w, launch i of kernel k gets
//     t_i,w * P_k (its time inside w times its calibrated power), the gaps get
//     gap_w * P_idle (gap = window time not covered by any launch), and all are
//     scaled by s_w = E_w / (sum of those predictions), so that the kernels plus
//     the idle/gap remainder equal E_w exactly (conservation: the idle entry is
//     computed as E_w minus the kernels). Each figure carries an uncertainty
//     that is a worst-case bound, combined linearly:
//       - the counter: +/- one tick over the window, dE_w = resolution +
//         lag_w * E_w / duration_w (lag_w = the meter's update period by
//         default: the energy the counter can lag by one update at the
//         window's average power; or the window's recorded poll lag at its
//         ends where that is longer: a poll the host delayed places the
//         boundary later than the counter change it marks); kernel k's share of
//         it is a_k,w * dE_w / E_w;
//       - the calibration: a relative error r_j in P_j moves a_k by
//         sum_w a_k,w * (delta_jk - f_j,w) * r_j (f_j,w = j's share of w's
//         prediction: the scaling absorbs a common error), summed in |.| over
//         every kernel j and the idle entry.
//  5. No meter: the result says measured = false, every joule is NaN, and the
//     formatters print "not measured", never a number.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/energy/EnergyMeter.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mantissa {

struct KernelLaunch {
  uint32_t kernel = 0; // index into KernelTimeline::names()
  double start = 0.0;  // seconds, on the windows' clock
  double end = 0.0;
  int64_t step = -1;   // training step the launch belongs to (-1: none)
};

/// Every kernel launch of a run, in any order.
class KernelTimeline {
public:
  /// The id of a kernel by name (registered on first use).
  uint32_t kernelId(const std::string &name);
  const std::vector<std::string> &names() const { return names_; }
  void record(uint32_t kernel, double start, double end, int64_t step = -1);
  const std::vector<KernelLaunch> &launches() const { return launches_; }
  void reserve(size_t n) { launches_.reserve(n); }

private:
  std::vector<std::string> names_;
  std::map<std::string, uint32_t> ids_;
  std::vector<KernelLaunch> launches_;
};

struct CalibrationEntry {
  double watts = 0.0;     // average device power while the kernel runs alone
  double relSpread = 0.0; // relative uncertainty of `watts` (a bound, e.g. 0.01)
};

struct Calibration {
  std::map<uint32_t, CalibrationEntry> kernels;
  CalibrationEntry idle; // power with no kernel running
};

struct AttributionOptions {
  double minWindowSeconds = 1.0;
  /// How far the counter may lag at a window's ends; < 0: the meter's update
  /// period (+/- one counter tick, DESIGN.md). A window whose recorded boundary
  /// lag (EnergyWindow::boundaryLagSeconds) is longer uses that instead.
  double lagSeconds = -1.0;
};

struct KernelEnergy {
  uint32_t kernel = 0;
  std::string name;
  int64_t launches = 0;
  double seconds = 0.0;          // total time of all its launches
  double secondsInWindows = 0.0; // the part inside measurement windows
  double joules = 0.0;           // NaN when not measured
  double joulesErr = 0.0;        // +/- bound
  double share = 0.0;            // joules / total measured energy
  double watts = 0.0;            // joules / secondsInWindows
};

struct StepEnergy {
  int64_t step = -1;
  int64_t launches = 0;
  double seconds = 0.0; // kernel time
  double secondsInWindows = 0.0; // the part inside measurement windows
  double joules = 0.0;  // kernels only; the idle remainder is reported apart; NaN
                        // for a step wholly outside the windows (not measured)
  double joulesErr = 0.0;
};

struct WindowEnergy {
  double start = 0.0, end = 0.0;
  double measuredJoules = 0.0;
  double meterErrJoules = 0.0; // +/- one counter tick (or the boundary lag)
  double lagSeconds = 0.0;     // the lag that bound used
  double boundaryLagSeconds = 0.0; // the recorded poll lag (EnergyWindow)
  double kernelJoules = 0.0;
  double idleJoules = 0.0;
  double busySeconds = 0.0; // union of the launches inside the window
  double scale = 1.0;       // measured / predicted (1 if the calibration is exact)
};

struct AttributionResult {
  bool measured = false;
  std::string meterName;
  std::vector<KernelEnergy> kernels; // by joules (time when not measured), largest first
  std::vector<StepEnergy> steps;     // by step
  std::vector<WindowEnergy> windows;
  double measuredJoules = 0.0;  // sum of the windows' E_w
  double measuredSeconds = 0.0; // sum of the windows' durations
  double idleSeconds = 0.0;     // gap time inside the windows
  double idleJoules = 0.0;
  double idleJoulesErr = 0.0;
  double idleShare = 0.0;
  int64_t launchesOutsideWindows = 0; // launches with no time in any window
};

/// DESIGN.md step 4. Throws mantissa::Error for a window shorter than
/// options.minWindowSeconds, overlapping windows, or a launched kernel with no
/// calibration. With windows.measured == false, no joule is produced.
AttributionResult attributeEnergy(const KernelTimeline &timeline,
                                  const Calibration &calibration,
                                  const MeasuredWindows &windows,
                                  const AttributionOptions &options = {});

} // namespace mantissa
