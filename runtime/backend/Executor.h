//===- Executor.h - what the training loop needs of a backend -------------===//
//
// A backend runs the functions of a loaded plan over tensors it owns. The training
// loop moves data in and out only through this interface, so the CPU executor and
// the CUDA executor (a plugin loaded at run time, so that mantissa-run starts on a
// machine without CUDA) are interchangeable.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cpu/PlanLoader.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mantissa {

/// The clock of the energy timeline: executors time steps on it and the trainer
/// polls the energy meter on it (seconds of std::chrono::steady_clock).
inline double timelineClock() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// One execution of one plan step, on timelineClock().
struct StepSpan {
  uint32_t function = 0; // index into the plan's functions
  uint32_t step = 0;     // index into that function's steps
  int64_t tag = -1;      // the training step it ran for (setTimelineTag)
  double start = 0.0, end = 0.0;
};

class Executor {
public:
  virtual ~Executor() = default;
  virtual const LoadedPlan &plan() const = 0;
  /// "cpu" or "cuda".
  virtual std::string backendName() const = 0;
  /// A line describing the device (CPU threads; GPU name and memory).
  virtual std::string deviceDescription() const = 0;
  /// Bytes this executor holds on a device (tensors, the temp arena, scratch and
  /// library workspaces, all allocated up front; not the CUDA context): what compares
  /// with PyTorch's torch.cuda.max_memory_allocated(). 0 for the CPU.
  virtual int64_t deviceBytes() const { return 0; }
  /// Copies `n` values (the tensor's element count) into a floating-point tensor,
  /// rounding to its dtype. A Param's working copies (LoadedPlan::workingCopies) are
  /// written too, rounded to theirs; a working copy itself is written only this way
  /// (writing one is an Error).
  void write(int id, const float *values, size_t n) {
    plan().checkWritable(id);
    store(id, values, n);
    for (int copy : plan().workingCopies(id))
      store(copy, values, n);
  }
  /// Copies `n` values into an I32 tensor (labels).
  virtual void writeIndices(int id, const int32_t *values, size_t n) = 0;
  /// Copies a floating-point tensor out (converted to float).
  virtual void read(int id, float *values, size_t n) = 0;
  /// Runs the function's steps ("train_step", "eval_step"). May be asynchronous on
  /// a device: read() synchronises.
  virtual void run(const std::string &function) = 0;

  // The energy timeline (optional: the defaults say "not supported").
  /// Starts or stops timing every step of every run; returns false if this
  /// executor cannot time steps.
  virtual bool enableTimeline(bool on) { return !on; }
  /// The tag of the spans of the runs that follow (the training step).
  virtual void setTimelineTag(int64_t tag) { (void)tag; }
  /// Appends the spans recorded since the last drain (waits for queued work).
  virtual void drainTimeline(std::vector<StepSpan> &out) { (void)out; }
  /// How the timeline is taken, for the report (e.g. "CUDA events, eager").
  virtual std::string timelineMethod() const { return "none"; }
  /// The timeline's kind in one word ("cupti", "events", "cpu", "none"), for the
  /// JSON reports and the scripts that read them; valid once enableTimeline(true).
  virtual std::string timelineName() const { return "none"; }
  /// The device kernels the timeline saw step `step` of function `function`
  /// launch (CUPTI: a cuBLAS call may launch several); empty where unknown.
  virtual std::vector<std::string> timelineDeviceKernels(uint32_t function, uint32_t step) const {
    (void)function, (void)step;
    return {};
  }
  /// Calibration by replay: runs step `step` of `function` alone `times` times
  /// (the tensors hold whatever the last run left: the kernel's work is the same).
  /// Returns false if this executor cannot replay one step.
  virtual bool replayStep(const std::string &function, uint32_t step, int64_t times) {
    (void)function, (void)step, (void)times;
    return false;
  }
  /// Waits until the queued work is done.
  virtual void synchronize() {}

protected:
  /// write() of one tensor: `n` values into it, rounded to its dtype.
  virtual void store(int id, const float *values, size_t n) = 0;
};

/// The CPU executor behind the interface (fp32 compute, exact fp16/bf16 emulation).
/// `keepTemps`: every temp keeps its own storage even under MANTISSA_CPU_ARENA=1, so
/// that a temp read after a run holds the value its step wrote (in the arena, a later
/// temp may have taken its bytes).
std::unique_ptr<Executor> makeCpuExecutor(const LoadedPlan &plan, int threads,
                                          bool keepTemps = false);

/// The CUDA executor, from the plugin libmantissa_cuda.so next to the running binary
/// (or on the library path). Throws Error with the reason (no plugin, no driver, no
/// device) if it cannot be had.
std::unique_ptr<Executor> makeCudaExecutor(const LoadedPlan &plan);

/// The C entry point the CUDA plugin exports (loaded with dlsym). Returns null and
/// fills `error` (a buffer of errorSize bytes) on failure.
extern "C" {
typedef Executor *(*CreateExecutorFn)(const LoadedPlan *plan, char *error, size_t errorSize);
}
inline constexpr const char *kCudaPluginSymbol = "mantissaCreateCudaExecutor";
inline constexpr const char *kCudaPluginName = "libmantissa_cuda.so";

} // namespace mantissa
