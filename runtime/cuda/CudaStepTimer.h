//===- CudaStepTimer.h - the energy timeline of the CUDA executor ---------===//
//
// Times every plan step of every run with CUDA events, on the host's
// timelineClock() (Executor.h), so that the energy meter's windows and the steps
// share one clock. Used in the executor's eager path (a measure mode: the runs are
// not CUDA graphs while the timeline is on; the report says so).
//
// One event is recorded before each step and one after the last (n + 1 per run):
// step i spans [event i, event i + 1]. The stream runs the steps in order, so a
// step's span holds its kernels (cuBLAS may launch several) and, when the GPU
// waits for the host, the launch latency before them.
//
// Host clock: an anchor event is recorded on an idle stream and waited for; its
// GPU time maps to the host time at which the wait returned (late by the wake-up,
// microseconds). Every span is anchor + cudaEventElapsedTime(anchor, event). The
// anchor is renewed at each drain, so clock drift stays within one drain interval.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"

#include <cuda_runtime.h>
#include <vector>

namespace mantissa {

class CudaStepTimer {
public:
  explicit CudaStepTimer(cudaStream_t stream);
  ~CudaStepTimer();
  CudaStepTimer(const CudaStepTimer &) = delete;
  CudaStepTimer &operator=(const CudaStepTimer &) = delete;

  void setTag(int64_t tag) { tag_ = tag; }
  /// Before launching a run of `steps` steps of function `function`.
  void beginRun(uint32_t function, uint32_t steps);
  /// Before step i (i < steps) and once after the last step (i == steps).
  void mark(uint32_t i);
  /// Waits for the recorded runs and appends their spans.
  void drain(std::vector<StepSpan> &out);

private:
  struct Run {
    uint32_t function = 0;
    int64_t tag = -1;
    size_t firstEvent = 0; // index into events_ of its event 0
    uint32_t steps = 0;
  };
  cudaEvent_t event();
  void anchor();

  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_; // recorded since the last drain, in order
  std::vector<cudaEvent_t> free_;   // recycled after a drain
  std::vector<Run> runs_;
  std::vector<StepSpan> held_; // drained early (kMaxEventsHeld), not yet handed out
  cudaEvent_t anchor_ = nullptr;
  double anchorHost_ = 0.0;
  int64_t tag_ = -1;
};

} // namespace mantissa
