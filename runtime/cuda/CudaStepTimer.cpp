//===- CudaStepTimer.cpp --------------------------------------------------===//
#include "runtime/cuda/CudaStepTimer.h"

#include "common/Error.h"

namespace mantissa {
namespace {

void check(cudaError_t e, const char *call) {
  if (e != cudaSuccess)
    throw Error(std::string("energy timeline: ") + call + ": " + cudaGetErrorString(e));
}

/// Runs recorded before a drain is forced: bounds the events held (a unet step
/// has a few hundred steps) without a synchronisation per run.
constexpr size_t kMaxEventsHeld = 1 << 16;

} // namespace

CudaStepTimer::CudaStepTimer(cudaStream_t stream) : stream_(stream) {
  check(cudaEventCreate(&anchor_), "cudaEventCreate");
  anchor();
}

CudaStepTimer::~CudaStepTimer() {
  for (auto *list : {&events_, &free_})
    for (cudaEvent_t e : *list)
      cudaEventDestroy(e);
  if (anchor_)
    cudaEventDestroy(anchor_);
}

void CudaStepTimer::anchor() {
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  check(cudaEventRecord(anchor_, stream_), "cudaEventRecord");
  check(cudaEventSynchronize(anchor_), "cudaEventSynchronize");
  anchorHost_ = timelineClock();
}

cudaEvent_t CudaStepTimer::event() {
  cudaEvent_t e = nullptr;
  if (!free_.empty()) {
    e = free_.back();
    free_.pop_back();
  } else {
    check(cudaEventCreate(&e), "cudaEventCreate");
  }
  events_.push_back(e);
  return e;
}

void CudaStepTimer::beginRun(uint32_t function, uint32_t steps) {
  if (events_.size() + steps + 1 > kMaxEventsHeld) {
    std::vector<StepSpan> pending;
    drain(pending);
    held_.insert(held_.end(), pending.begin(), pending.end());
  }
  runs_.push_back({function, tag_, events_.size(), steps});
}

void CudaStepTimer::mark(uint32_t) { check(cudaEventRecord(event(), stream_), "cudaEventRecord"); }

void CudaStepTimer::drain(std::vector<StepSpan> &out) {
  out.insert(out.end(), held_.begin(), held_.end());
  held_.clear();
  if (!events_.empty())
    check(cudaEventSynchronize(events_.back()), "cudaEventSynchronize");
  for (const Run &r : runs_) {
    if (r.firstEvent + r.steps >= events_.size())
      throw Error("energy timeline: a run without its final event (internal)");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, anchor_, events_[r.firstEvent]), "cudaEventElapsedTime");
    double t = anchorHost_ + ms * 1e-3;
    for (uint32_t i = 0; i < r.steps; ++i) {
      // Durations between neighbouring events (float ms is exact to ~0.5 us
      // there; far from the anchor it would not be).
      check(cudaEventElapsedTime(&ms, events_[r.firstEvent + i], events_[r.firstEvent + i + 1]),
            "cudaEventElapsedTime");
      double end = t + ms * 1e-3;
      out.push_back({r.function, i, r.tag, t, end});
      t = end;
    }
  }
  free_.insert(free_.end(), events_.begin(), events_.end());
  events_.clear();
  runs_.clear();
  anchor();
}

} // namespace mantissa
