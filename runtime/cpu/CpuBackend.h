//===- CpuBackend.h - executing a plan on the CPU --------------------------===//
//
// The CPU executor runs a verified plan step by step: library kernels (GEMM,
// convolution) through OpenBLAS, fused elementwise kernels through the program
// interpreter. Every tensor is stored in the compute type T; fp16/bf16 tensors hold
// values already rounded to their format (each step's outputs are rounded to the
// output's dtype), which makes AMP numerics reproducible without a GPU. T = double
// is the reference mode for finite-difference gradient checks (fp32 tensors are then
// not rounded to float). I32 tensors (max-pool indices) live in a separate store.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cpu/PlanLoader.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mantissa {

class ThreadPool;
namespace kernels {
class ElementwiseProgram;
}

template <class T> class CpuExecutor {
public:
  /// `plan` must outlive the executor. threads: 0 = the hardware thread count.
  /// Allocates every tensor; persistent ones start from their `init` values.
  ///
  /// `arena`: floating-point temps live in one arena at their memory-plan offsets, as
  /// on the GPU, so that temps the plan lets share bytes (by liveness, or a result in
  /// place of a dying input) really share them; a plan whose memory plan were wrong
  /// would then compute other numbers than with one array per tensor (the default).
  /// A temp of n elements at byte offset o takes elements [o, o + n) of an arena of
  /// arena_bytes elements: byte ranges that do not overlap give element ranges that
  /// do not either, and a result in place of its input shares its elements exactly.
  explicit CpuExecutor(const LoadedPlan &plan, int threads = 0, bool arena = false);
  ~CpuExecutor();
  CpuExecutor(const CpuExecutor &) = delete;
  CpuExecutor &operator=(const CpuExecutor &) = delete;

  /// Storage of a floating-point tensor (throws Error for an I32 tensor, a bad id, or
  /// a temp in the arena: data()).
  std::vector<T> &tensor(int id);
  const std::vector<T> &tensor(int id) const;
  /// The elements of any floating-point tensor, in the arena or not, and their count.
  T *data(int id);
  const T *data(int id) const;
  size_t count(int id) const;
  /// Storage of an I32 tensor (throws Error for a floating-point one).
  std::vector<int32_t> &indexTensor(int id);
  /// The id of the tensor called `name`, or -1.
  int findTensor(const std::string &name) const;

  /// Runs the function's steps in order; throws Error naming the step on failure
  /// (e.g. a label out of range) or if there is no such function.
  void run(const std::string &function);
  /// Runs one step of the function alone (calibration by replay).
  void runOneStep(const std::string &function, uint32_t step);

  /// Called after each step with its index and its start and end (the energy
  /// timeline); empty: no timing.
  using StepObserver = std::function<void(const plan::Function &, uint32_t step,
                                          std::chrono::steady_clock::time_point start,
                                          std::chrono::steady_clock::time_point end)>;
  void setStepObserver(StepObserver observer) { observer_ = std::move(observer); }

  const LoadedPlan &plan() const { return plan_; }
  int threads() const;

  /// Arena mode only: before each step, every arena element that no temp live at that
  /// step holds is set to NaN (LoadedPlan::arenaTemps). The CUDA backend puts a step's
  /// scratch in those bytes, so a kernel that read a temp it had not written, or a temp
  /// outside its liveness, would compute other numbers (MANTISSA_CPU_ARENA=poison).
  void poisonFreeArena(bool on) { poison_ = on; }

private:
  struct PreparedFunction;
  const PreparedFunction &prepare(const plan::Function &fn);
  const plan::Function &function(const std::string &name) const;
  void runSteps(const plan::Function &fn, uint32_t first, uint32_t last);
  void runStep(const plan::Step &step, const kernels::ElementwiseProgram *program);
  T scalar(int id) const { return data(id)[0]; }
  T *ptr(int id) { return id < 0 ? nullptr : data(id); }
  void roundOutput(int id);
  /// A batch norm's x, or with an input bias (BatchNorm.input_bias) x + bias[channel]
  /// rounded to x's dtype in `scratch`: what the folded bias add would have stored.
  const T *withInputBias(int64_t channels, int64_t hw, int x, int bias, std::vector<T> &scratch);
  const T *labels(int id);
  /// A GEMM's epilogue (Gemm.bias, Gemm.relu): every row of the [m, n] product plus
  /// bias, then the elementwise Relu's rule, before the one rounding (roundOutput).
  void addBiasRows(T *c, const T *bias, int64_t m, int64_t n, bool relu);

  const LoadedPlan &plan_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::vector<T>> data_;
  std::vector<T> arena_;              // arena mode: the temps' elements
  std::vector<int64_t> arenaOffset_;  // per tensor: its first element in arena_, or -1
  std::vector<std::vector<int32_t>> indices_;
  std::vector<T> labelScratch_;
  std::vector<T> biasScratch_; // withInputBias: x + bias, reused from step to step
  std::unordered_map<std::string, int> byName_;
  std::unordered_map<const plan::Function *, std::unique_ptr<PreparedFunction>> prepared_;
  StepObserver observer_;
  bool poison_ = false;
  void poisonArenaAt(const plan::Function &fn, uint32_t step);
};

extern template class CpuExecutor<float>;
extern template class CpuExecutor<double>;

} // namespace mantissa
