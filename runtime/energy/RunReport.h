//===- RunReport.h - the energy of a training run, for people and tools ---===//
//
// What `train --energy` reports: the attribution (Attribution.h) with each
// kernel's op class and precision, totals per step, op class and precision, the
// idle/gap remainder apart, the loss against cumulative energy and the energy to a
// target loss. As a table, CSV, JSON (every figure) and one self-contained HTML page
// (inline SVG, no external asset). Without a meter every joule is "not measured"
// (text, CSV, HTML) or null (JSON); times are still reported.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/energy/Report.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mantissa {

/// Kernels summed by a label: joules and their worst-case bounds add.
struct GroupEnergy {
  std::string group;
  int64_t launches = 0;
  double seconds = 0.0;
  double joules = 0.0, joulesErr = 0.0, share = 0.0; // NaN when not measured
};

struct LossPoint {
  int64_t step = 0;     // the training step whose loss this is (0-based)
  double seconds = 0.0; // on the run's clock, when the step had finished
  double loss = 0.0;
};

/// Energy measured from the run's start to `t`, with its +/- bound: the windows
/// before t, the window holding t pro rata, and the stretches no window covers
/// (before the first, after the last) at the nearest window's average power, each
/// such stretch's whole estimate added to the bound. NaN if nothing was measured.
struct CumulativeEnergy {
  double joules = 0.0, joulesErr = 0.0;
};
CumulativeEnergy cumulativeEnergyAt(const AttributionResult &r, double runStart, double t);

/// The energy of one training step, from the steps the windows cover: `covered`
/// steps' worth of kernel time lies inside the windows (partial steps count by
/// their fraction), so the windows' energy divided by it is the energy per step.
struct PerStepEnergy {
  double covered = 0.0;       // steps' worth inside the windows
  int64_t steps = 0;          // steps timed in all
  double kernelSeconds = 0.0; // mean kernel time per step
  double kernelJoules = 0.0, kernelJoulesErr = 0.0;
  double idleJoules = 0.0, idleJoulesErr = 0.0;
  double totalJoules = 0.0, totalJoulesErr = 0.0; // kernels + idle/gaps = measured
};
PerStepEnergy perStepEnergy(const AttributionResult &r);

struct EnergyRun {
  AttributionResult attribution;
  KernelLabels labels;
  std::string timeline; // the timeline's kind: "cupti", "events", "cpu" or "none"
  std::string timelineMethod;
  /// The device kernels each plan kernel launched, where the timeline saw them (CUPTI).
  std::map<std::string, std::vector<std::string>> deviceKernels;
  std::string calibration; // where the calibration came from, or the fallback used
  bool calibrated = false;
  double runStart = 0.0, runEnd = 0.0; // the training loop, on the run's clock
  double clockOrigin = 0.0; // the run's clock's zero in steady_clock (CLOCK_MONOTONIC) seconds
  std::vector<LossPoint> losses;
  // Energy to target (targetLoss NaN: not asked; targetStep -1: not reached).
  double targetLoss = 0.0;
  int64_t targetStep = -1;
  double targetSeconds = 0.0;
  CumulativeEnergy targetEnergy;

  std::vector<GroupEnergy> byOpClass() const;
  std::vector<GroupEnergy> byPrecision() const;
};

/// Finds the first loss <= target and fills the target fields.
void setTarget(EnergyRun &run, double targetLoss);

std::string formatEnergyRun(const EnergyRun &run, size_t maxKernels = 20);
/// The energy-to-target line alone ("" when no target was asked).
std::string formatEnergyTarget(const EnergyRun &run);
std::string energyRunCsv(const EnergyRun &run);
std::string energyRunJson(const EnergyRun &run);
std::string energyRunHtml(const EnergyRun &run, const std::string &title);

} // namespace mantissa
