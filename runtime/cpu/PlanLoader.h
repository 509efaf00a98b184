//===- PlanLoader.h - reading and verifying a .plan file -------------------===//
//
// A plan is untrusted input: it is checked with the FlatBuffers Verifier (bounds of
// every offset), its identifier and version, and then semantically (tensor indices,
// shapes, init sizes, every step's operand sizes against its kernel's parameters,
// elementwise programs, dtypes), so that the executor can run it without further
// checks. Every problem is one mantissa::Error naming the file, and where relevant
// the function, the step index and name, the kernel and what is wrong.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/PlanVersion.h" // kPlanVersion: the one definition, shared with the compiler
#include "plan/mantissa_plan_generated.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mantissa {

class LoadedPlan {
public:
  /// Reads and verifies `path`; throws Error on a missing, truncated or invalid file.
  static LoadedPlan load(const std::string &path);
  /// Verifies a plan held in memory; `name` stands for the file in messages.
  static LoadedPlan fromBytes(std::vector<uint8_t> bytes, const std::string &name = "<memory>");

  const plan::Plan &plan() const { return *plan_; }
  const plan::Plan *operator->() const { return plan_; }
  const std::string &name() const { return name_; }
  const std::vector<uint8_t> &bytes() const { return bytes_; }

  /// Number of elements of tensor `id` (the product of its shape).
  int64_t numElements(int id) const;
  /// The initial value of tensor `id` (from its initialiser: stored values, a seeded
  /// uniform stream or a fill; zeros for tensors without one).
  std::vector<float> initialValues(int id) const;
  /// The WorkingCopy tensors of Param `id` (empty for any other tensor). An executor
  /// that writes a Param from outside (write()) writes these too, rounded.
  const std::vector<int> &workingCopies(int id) const;
  /// Throws if tensor `id` is a WorkingCopy: it is written through its master only.
  void checkWritable(int id) const;
  /// The function called `name`, or null.
  const plan::Function *findFunction(const std::string &name) const;

  /// A temp in the arena and the steps of one function it is live at (from its first to
  /// its last reference; to the end for the function's outputs and found_finite): the
  /// liveness that the memory plan was verified against on load.
  struct ArenaTemp {
    int64_t start, end;    // steps, inclusive
    uint64_t begin, bytes; // its bytes in the arena
    int id;
  };
  /// The arena temps of function `function` (its index in the plan), by start step.
  const std::vector<ArenaTemp> &arenaTemps(uint32_t function) const;
  /// The lowest arena offset, a multiple of `align`, where `bytes` bytes touch no temp
  /// live at step `step` of function `function`; -1 where there is none. A backend may put
  /// a step's own scratch there (it lives only while that step runs).
  int64_t freeArenaOffset(uint32_t function, int64_t step, uint64_t bytes, uint64_t align) const;
  /// The largest such span at that step (0 when the arena is full there).
  uint64_t largestFreeArenaSpan(uint32_t function, int64_t step, uint64_t align) const;
  /// Every maximal span of arena bytes [begin, end) that no temp live at that step holds.
  std::vector<std::pair<uint64_t, uint64_t>> freeArenaSpans(uint32_t function, int64_t step) const;

  // Moving keeps the byte buffer (and so plan()) where it is.
  LoadedPlan(LoadedPlan &&) noexcept = default;
  LoadedPlan &operator=(LoadedPlan &&) noexcept = default;
  LoadedPlan(const LoadedPlan &) = delete;
  LoadedPlan &operator=(const LoadedPlan &) = delete;

private:
  LoadedPlan() = default;
  void verify();

  std::vector<uint8_t> bytes_;
  std::string name_;
  const plan::Plan *plan_ = nullptr;
  std::vector<int64_t> numElements_;
  std::map<int, std::vector<int>> workingCopies_;
  std::vector<std::vector<ArenaTemp>> arenaTemps_; // per function, filled by the checker
};

} // namespace mantissa
