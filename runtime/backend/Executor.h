//===- Executor.h - what the training loop needs of a backend -------------===//
//
// A backend runs the functions of a loaded plan over tensors it owns. The training
// loop moves data in and out only through this interface, so the CPU executor and
// the CUDA executor (a plugin loaded at run time, so that mantissa-run starts on a
// machine without CUDA) are interchangeable.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cpu/PlanLoader.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mantissa {

class Executor {
public:
  virtual ~Executor() = default;
  virtual const LoadedPlan &plan() const = 0;
  /// "cpu" or "cuda".
  virtual std::string backendName() const = 0;
  /// A line describing the device (CPU threads; GPU name and memory).
  virtual std::string deviceDescription() const = 0;
  /// Copies `n` values (the tensor's element count) into a floating-point tensor,
  /// rounding to its dtype.
  virtual void write(int id, const float *values, size_t n) = 0;
  /// Copies `n` values into an I32 tensor (labels).
  virtual void writeIndices(int id, const int32_t *values, size_t n) = 0;
  /// Copies a floating-point tensor out (converted to float).
  virtual void read(int id, float *values, size_t n) = 0;
  /// Runs the function's steps ("train_step", "eval_step"). May be asynchronous on
  /// a device: read() synchronises.
  virtual void run(const std::string &function) = 0;
};

/// The CPU executor behind the interface (fp32 compute, exact fp16/bf16 emulation).
std::unique_ptr<Executor> makeCpuExecutor(const LoadedPlan &plan, int threads);

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
