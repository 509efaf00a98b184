//===- Elementwise.h - the interpreter of elementwise programs -------------===//
//
// A fused elementwise kernel of a plan is a straight-line program of ScalarOps over
// an iteration shape. The CPU backend interprets it in blocks: each instruction is
// applied to a column of kBlock elements at a time, so the dispatch on the opcode
// costs once per block rather than once per element, and the loops vectorise.
// Registers get columns by liveness, so a long program stays in cache.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Float16.h"
#include "plan/mantissa_plan_generated.h"
#include "common/ScalarOp.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {
namespace kernels {

/// Rounds a value to what a tensor of `dtype` stores. F32 is not rounded in either
/// mode: in the double reference mode fp32 tensors are kept in double on purpose.
template <class T> inline T roundToStorage(T v, plan::DType dtype) {
  switch (dtype) {
  case plan::DType::F16:
    return roundToF16(v);
  case plan::DType::BF16:
    return roundToBF16(v);
  default:
    return v;
  }
}

/// Rounds `count` values in place to `dtype` (no-op for F32 and I32).
template <class T> void roundToDType(plan::DType dtype, T *data, int64_t count);

/// A validated program with its register-to-column assignment.
class ElementwiseProgram {
public:
  /// Throws Error (without file context: the plan loader checks first and names the
  /// step) if an op index, operand register, arity or Load input number is invalid.
  ElementwiseProgram(std::vector<plan::Instr> instrs, std::vector<int> outputRegs, int numInputs);

  /// Checks a program without building it; returns "" or what is wrong.
  static std::string check(const plan::Instr *instrs, size_t count,
                           const std::vector<int> &outputRegs, int numInputs);

  const std::vector<plan::Instr> &instrs() const { return instrs_; }
  const std::vector<int> &outputRegs() const { return outputRegs_; }
  int numInputs() const { return numInputs_; }
  /// Column of register i.
  int slot(int reg) const { return slots_[reg]; }
  int numSlots() const { return numSlots_; }

private:
  std::vector<plan::Instr> instrs_;
  std::vector<int> outputRegs_;
  std::vector<int> slots_;
  int numInputs_;
  int numSlots_ = 0;
};

/// An input read with one stride (in elements, 0 = broadcast) per iteration dimension.
template <class T> struct ElementwiseInput {
  const T *data;
  std::vector<int64_t> strides;
};

/// Output i receives register program.outputRegs()[i], contiguous over the iteration
/// shape, rounded to `dtype` on store.
template <class T> struct ElementwiseOutput {
  T *data;
  plan::DType dtype = plan::DType::F32;
};

/// Evaluates the program over `shape`. An output may be the same memory as an input
/// provided that input is read contiguously (strides of a contiguous tensor of
/// `shape`): every block loads before it stores, and blocks are disjoint.
template <class T>
void runElementwise(const ElementwiseProgram &program, const std::vector<int64_t> &shape,
                    const std::vector<ElementwiseInput<T>> &inputs,
                    const std::vector<ElementwiseOutput<T>> &outputs);

} // namespace kernels
} // namespace mantissa
