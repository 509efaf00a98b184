//===- HeatMatch.h - calibrate kernels at the training temperature --------===//
//
// Why: a device's static (leakage) power rises with its temperature, and
// attribution (Attribution.h) scales every kernel's calibrated power so that the
// kernels and the gaps add up to each window's measured energy. A kernel calibrated
// colder than training carries less static power than it draws in training, and
// the scaling then moves every kernel's share. On an H100, `profile` without this
// measured the idle baseline at 47 °C, low-power reductions at 47-48 °C and GEMMs
// at 62-63 °C, while training ran at about 60 °C.
//
// So `profile` first runs the whole training step back to back until the
// temperature is steady (heatUntilSteady: the training temperature), then brings
// the device back within a tolerance of it before each measurement window
// (reheatTo: whole steps while colder, rest while hotter). A window lasts ~1 s and
// a device's thermal time constant is tens of seconds, so a window that starts at
// the training temperature stays near it.
//
// The control takes callbacks (a thermometer, one unit of heating work, one unit
// of rest, a clock) so that it is tested on a simulated device.
//===----------------------------------------------------------------------===//
#pragma once

#include <functional>
#include <limits>

namespace mantissa {

struct HeatDevice {
  std::function<double()> celsius; // the device's temperature now; NaN: no thermometer
  std::function<void()> heat;      // one short unit (~10 ms) of the training step's work
  std::function<void()> rest;      // one short unit of no work: the device cools
  std::function<double()> now;     // seconds, any origin
};

struct HeatOptions {
  /// Steady: the mean temperature over the last second differs from the mean over
  /// the second `steadyOverSeconds` earlier by less than this. Means, not single
  /// readings, so that a thermometer in whole degrees (NVML's) settles.
  double steadyRiseCelsius = 0.5;
  double steadyOverSeconds = 5.0;
  double maxSeconds = 60.0; // heatUntilSteady gives up after this
  /// reheatTo stops within this of its target, or after reheatMaxSeconds.
  double toleranceCelsius = 1.0;
  double reheatMaxSeconds = 15.0;
};

struct HeatResult {
  bool measured = false; // false: no thermometer; nothing was run
  /// Where it stopped.
  double celsius = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0.0; // time spent
  bool capped = false;  // stopped by the time cap, not by the criterion
};

/// Runs `heat` until the temperature is steady (HeatOptions) or maxSeconds pass.
/// `celsius` of the result is the mean over the last second: the training temperature.
HeatResult heatUntilSteady(const HeatDevice &device, const HeatOptions &options = {});

/// Runs `heat` while colder than `targetCelsius` - tolerance, `rest` while hotter
/// than `targetCelsius` + tolerance, until within it or reheatMaxSeconds pass.
HeatResult reheatTo(const HeatDevice &device, double targetCelsius,
                    const HeatOptions &options = {});

} // namespace mantissa
