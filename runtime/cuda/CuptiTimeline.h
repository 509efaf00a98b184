//===- CuptiTimeline.h - device kernel times inside CUDA graph replays ----===//
//
// The CUDA executor's preferred energy timeline: CUPTI activity records
// (CONCURRENT_KERNEL, MEMSET, MEMCPY) give every device kernel's start and end,
// also inside a replayed CUDA graph, so measuring does not change how the step
// runs (CudaStepTimer.h, the fallback, runs the steps eagerly with events between
// them). KernelRecords.h maps the records to plan steps and runs and converts
// their clock; this file is the CUPTI side:
//
//  - libcupti is loaded with dlopen ($MANTISSA_CUPTI if set, else
//    "libcupti.so.13", then "libcupti.so"); the toolkit's headers give only types
//    and constants, and the few entry points used are resolved with dlsym. The
//    plugin never links libcupti (nor libcuda).
//  - Callbacks: graph node created (tags nodes made while a plan step is being
//    captured), graph node cloned (cudaGraphInstantiate's copies get the same
//    tag) and cuGraphLaunch (the launch's correlation id names the run).
//  - Records are copied out of CUPTI's buffers as they complete (CUPTI's thread)
//    and folded at drain, after the executor has synchronised its stream and
//    cuptiActivityFlushAll has handed over the rest.
//  - Clock: cuptiActivityRegisterTimestampCallback puts CUPTI's timestamps on
//    steady_clock (timelineClock()'s); anchors read at each drain map them either way.
//
// One CuptiTimeline at a time per process (CUPTI's buffer callbacks are global).
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cuda/KernelRecords.h"

#include <memory>
#include <string>
#include <vector>

namespace mantissa {

/// Loads libcupti and resolves the entry points the timeline uses, without
/// starting anything. Returns false with `reason` naming what is missing.
/// On success `description` says which library and version.
bool loadCupti(std::string &description, std::string &reason);
/// The same for one library path, not cached (tests).
bool loadCuptiFrom(const std::string &path, std::string &description, std::string &reason);

/// MANTISSA_TIMELINE: which timeline the CUDA executor measures with.
enum class TimelineMode { Auto, Cupti, Events };
/// "" and "auto", "cupti", "events"; anything else is an Error that names the variable.
TimelineMode parseTimelineMode(const std::string &value);

/// The choice enableTimeline makes before trying CUPTI: `tryCupti`, or the reason the
/// events timeline is used. Throws Error when CUPTI is demanded but cannot apply
/// (`graphs` false: every run is eager, nothing is replayed).
struct TimelinePlan {
  bool tryCupti = false;
  std::string eventsBecause;
};
TimelinePlan planTimeline(TimelineMode mode, bool graphs);
/// After a failed CuptiTimeline::open: the reason for the events timeline, or an
/// Error when CUPTI was demanded.
std::string cuptiFailed(TimelineMode mode, const std::string &reason);

class CuptiTimeline {
public:
  /// Starts CUPTI (subscription, callbacks, activity kinds) for `functions`
  /// functions; nullptr with `reason` (no library, a missing entry point, or the
  /// CUPTI call that failed with CUPTI's message, e.g. another profiler attached).
  static std::unique_ptr<CuptiTimeline> open(size_t functions, std::string &reason);
  ~CuptiTimeline();
  CuptiTimeline(const CuptiTimeline &) = delete;
  CuptiTimeline &operator=(const CuptiTimeline &) = delete;

  // Capture of function `function` (the record-giving nodes of a previous capture
  // of it are forgotten; their ids stay mapped, harmlessly: ids are never reused).
  void beginCapture(uint32_t function);
  /// Step `step` is about to be launched into the capture.
  void captureStep(uint32_t step);
  /// Capture over (before cudaGraphInstantiate); returns the nodes tagged.
  size_t endCapture();

  void setTag(int64_t tag) { tag_ = tag; }
  /// Around the cudaGraphLaunch of function `function`'s graph.
  void beforeLaunch(uint32_t function);
  void afterLaunch();

  /// After the executor's stream is synchronised: flushes CUPTI and appends the
  /// spans of the graph runs since the last drain.
  void drain(std::vector<StepSpan> &out);

  /// "CUPTI 13.0, libcupti.so.13, timestamps on steady_clock".
  std::string description() const;
  /// The distinct device kernels seen for each step so far ([function][step]).
  const std::vector<std::vector<std::vector<std::string>>> &deviceKernels() const {
    return deviceKernels_;
  }
  /// Totals over all drains (for the GPU test and the report).
  const FoldStats &lastStats() const { return stats_; }
  size_t droppedRecords() const;

  struct State; // what the CUPTI callbacks write (CuptiTimeline.cpp)

private:
  CuptiTimeline() = default;
  std::unique_ptr<State> state_;
  int64_t tag_ = -1;
  ClockAnchor previous_, anchor_;
  FoldStats stats_;
  std::vector<std::vector<std::vector<std::string>>> deviceKernels_;
};

} // namespace mantissa
