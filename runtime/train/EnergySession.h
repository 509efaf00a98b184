//===- EnergySession.h - measuring the energy of a training run -----------===//
//
// `train --energy` and its outputs (DESIGN.md, "Energy: what was measured, and the
// method it forces"): picks a meter, polls it from a thread into >= 1 s windows,
// has the executor time every plan step (Executor::enableTimeline), records the
// loss where the trainer reads it, and at the end attributes the windows' energy to
// the steps' kernels (attributeEnergy) with the plan's calibration when one is
// cached (`mantissa-run profile`), else a stated fallback. All times are seconds
// since the session began.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"
#include "runtime/energy/EnergyMeter.h"
#include "runtime/energy/RunReport.h"

#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mantissa {

struct EnergyOptions {
  bool table = false;         // --energy: the table at the end
  std::string meter = "auto"; // --meter nvml|rapl|none|auto (synthetic:W[:C]: tests only)
  std::string html, trace, csv;
  double targetLoss = NAN; // --target-loss
  bool wanted() const {
    return table || !html.empty() || !trace.empty() || !csv.empty() || !std::isnan(targetLoss);
  }
};

/// The meter `--meter` names for a run on `backend` ("cpu" | "cuda"); never null
/// (NoMeter with `note` saying why, when the asked meter is unavailable). Throws
/// Error for an unknown choice.
std::unique_ptr<EnergyMeter> openMeter(const std::string &choice, const std::string &backend,
                                       std::string &note);

/// Kernel names and labels for every step of every function of a plan: the
/// timeline's vocabulary (a step's name, made unique within its function).
struct PlanKernels {
  std::vector<std::vector<std::string>> names; // [function][step]
  KernelLabels labels;
};
PlanKernels planKernels(const LoadedPlan &plan);

class EnergySession {
public:
  EnergySession(const EnergyOptions &options, Executor &exec);
  ~EnergySession();
  /// Starts the meter's polling and the executor's timeline.
  void begin();
  /// Before running training step `step`.
  void beforeStep(int64_t step) { exec_.setTimelineTag(step); }
  /// The trainer read the loss of `step` (the step has finished).
  void loss(int64_t step, double loss);
  /// The target-loss measure needs every step's loss.
  bool wantsEveryLoss() const { return !std::isnan(options_.targetLoss); }
  /// Stops polling and timing; attributes. Call once, after the last step.
  void end();
  const EnergyRun &run() const { return run_; }
  /// Writes the files asked for (CSV, trace, HTML page titled `title`).
  void writeFiles(const std::string &title) const;

private:
  void poller();
  void drain();

  EnergyOptions options_;
  Executor &exec_;
  std::unique_ptr<EnergyMeter> meter_;
  std::string meterNote_;
  std::unique_ptr<WindowRecorder> recorder_;
  double t0_ = 0.0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;      // the recorder: polled by the thread, read at the end
  std::string pollError_; // the meter's failure, if it failed (under mutex_)
  bool timing_ = false;   // the executor times its steps
  PlanKernels kernels_;
  std::vector<StepSpan> spans_;
  KernelTimeline timeline_;
  std::vector<std::vector<uint32_t>> ids_; // [function][step] -> kernel id
  EnergyRun run_;
};

} // namespace mantissa
