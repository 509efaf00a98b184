//===- Calibration.h - kernel power by replay, cached per plan and device -===//
//
// DESIGN.md, energy step 3: each distinct kernel (plan step) is replayed alone for
// windows of >= 1 s, the idle baseline measured the same way, until the spread of
// the repeats is small. Static power rises with temperature, so where the meter
// has a thermometer (NVML) the windows are heat-matched (HeatMatch.h): the whole
// function first runs back to back until the temperature is steady (the training
// temperature), and each window starts within a tolerance of it. The result
// (J/launch, W, spread, temperature at the windows' start and end, SM clock, the
// training temperature) is cached per plan, device and meter (which names the driver) under
// $XDG_CACHE_HOME/mantissa/calib or ~/.cache/mantissa/calib, and `train --energy`
// attributes with it. Without one, attribution uses a stated fallback: every kernel
// and the gaps at the same power (each window's average), each power's spread taken
// as ±100 % (a kernel may draw anything from nothing to twice the average) — wide
// error bars rather than invented precision.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"
#include "runtime/energy/Attribution.h"

#include <limits>
#include <string>
#include <vector>

namespace mantissa {

struct KernelCalibration {
  std::string name;
  double watts = 0.0, relSpread = 0.0; // device power while it runs (idle included)
  double joulesPerLaunch = 0.0, secondsPerLaunch = 0.0;
  // Means over the windows; NaN where the meter has no such reading.
  double celsius = 0.0;      // at each window's end
  double celsiusStart = 0.0; // at each window's start (NaN in files without it)
  double smClockMHz = 0.0;
  int repeats = 0;    // windows measured
  int heatCapped = 0; // windows whose re-heat hit its time cap (printed, not cached)
};

struct CalibrationFile {
  std::string plan, device, meter;
  std::string timeline; // the timeline that timed the ranking run (written, not read)
  /// Where the whole function's back-to-back runs settled and each window started
  /// from; NaN when not heat-matched (no thermometer, --no-heat, older files).
  double trainingCelsius = std::numeric_limits<double>::quiet_NaN();
  KernelCalibration idle; // name "(idle)"; joules/seconds per launch unused
  std::vector<KernelCalibration> kernels;
};

/// Where the calibration of this plan on this executor's device with this meter is cached.
std::string calibrationCachePath(const Executor &exec, const std::string &meterName);
void writeCalibration(const std::string &path, const CalibrationFile &c);
/// Throws Error for a malformed file.
CalibrationFile readCalibration(const std::string &path);

struct CalibrationChoice {
  Calibration calibration;
  bool calibrated = false;
  std::string description; // where it came from, or the fallback and why
};

/// The cached calibration when it covers every kernel of `timeline`, else the
/// fallback (the header says which).
CalibrationChoice chooseCalibration(const Executor &exec, const KernelTimeline &timeline,
                                    const std::string &meterName);

/// `mantissa-run profile PLAN [options]`. Returns the exit code.
int profileMain(int argc, char **argv);
const char *profileUsage();

} // namespace mantissa
