//===- PlanVersion.h - the version of the plan format ---------------------===//
//
// The single definition of the plan format version: the compiler writes it into
// every plan (Plan.version) and the runtime refuses any other. Bump it on every
// incompatible change of mantissa_plan.fbs.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

namespace mantissa {

// 2: initialisers (InitKind); 3: memory plan (offsets, arena); 4: CUDA kernels
// compiled ahead of time (Plan.cuda); 5: max-pool gradients from x and y (no indices);
// 6: working copies of parameters (Role.WorkingCopy, Tensor.master), the all-finite
// check's multiplier, batch norms that add their input's bias (input_bias); 7: GEMM
// epilogues (Gemm.bias, Gemm.relu); 8: the checksum of the whole file (Plan.checksum).
inline constexpr uint32_t kPlanVersion = 8;

} // namespace mantissa
