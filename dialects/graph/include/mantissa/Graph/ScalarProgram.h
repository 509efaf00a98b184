//===- ScalarProgram.h - building elementwise programs --------------------===//
//
// The straight-line per-element programs that elementwise graph ops declare
// (GraphOps.td) and that plans carry. Register i is the value of instruction i.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/ScalarOp.h"

#include <cassert>
#include <vector>

namespace mantissa::graph {

struct ScalarInstr {
  ScalarOp op;
  int a = -1, b = -1, c = -1;
  float imm = 0.0f;
};

class ScalarProgramBuilder {
public:
  int emit(ScalarOp op, int a = -1, int b = -1, int c = -1, float imm = 0.0f) {
    assert(scalarOpArity(op) == (a >= 0) + (b >= 0) + (c >= 0) && "arity mismatch");
    instrs.push_back({op, a, b, c, imm});
    return static_cast<int>(instrs.size()) - 1;
  }
  int load(int input) { return emit(ScalarOp::Load, -1, -1, -1, static_cast<float>(input)); }
  int constant(double value) { return emit(ScalarOp::Const, -1, -1, -1, static_cast<float>(value)); }

  const std::vector<ScalarInstr> &instructions() const { return instrs; }
  std::vector<ScalarInstr> &instructions() { return instrs; }

private:
  std::vector<ScalarInstr> instrs;
};

} // namespace mantissa::graph
