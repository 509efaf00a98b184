//===- DType.h - facts about a plan's element types -----------------------===//
//
// One definition for both halves (compiler, runtime, CUDA plugin, inspect).
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

namespace mantissa {

/// Bytes per element as a plan stores it (F32/I32 4, F16/BF16 2).
inline unsigned dtypeBytes(plan::DType d) {
  return d == plan::DType::F16 || d == plan::DType::BF16 ? 2 : 4;
}

/// "f32", "f16", "bf16" or "i32".
inline const char *dtypeName(plan::DType d) {
  switch (d) {
  case plan::DType::F32:
    return "f32";
  case plan::DType::F16:
    return "f16";
  case plan::DType::BF16:
    return "bf16";
  case plan::DType::I32:
    return "i32";
  }
  return "?";
}

} // namespace mantissa
