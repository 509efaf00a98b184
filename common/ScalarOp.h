//===- ScalarOp.h - the scalar operations, enumerated from ScalarOps.def ---===//
#pragma once

#include <cstdint>

namespace mantissa {

enum class ScalarOp : uint8_t {
#define MANTISSA_SCALAR_OP(Name, Arity, Cpu, Cuda) Name,
#include "common/ScalarOps.def"
};

inline constexpr int kNumScalarOps = 0
#define MANTISSA_SCALAR_OP(Name, Arity, Cpu, Cuda) +1
#include "common/ScalarOps.def"
    ;

inline const char *scalarOpName(ScalarOp op) {
  static const char *const names[] = {
#define MANTISSA_SCALAR_OP(Name, Arity, Cpu, Cuda) #Name,
#include "common/ScalarOps.def"
  };
  return names[static_cast<int>(op)];
}

inline int scalarOpArity(ScalarOp op) {
  static const int arities[] = {
#define MANTISSA_SCALAR_OP(Name, Arity, Cpu, Cuda) Arity,
#include "common/ScalarOps.def"
  };
  return arities[static_cast<int>(op)];
}

inline const char *scalarOpCuda(ScalarOp op) {
  static const char *const exprs[] = {
#define MANTISSA_SCALAR_OP(Name, Arity, Cpu, Cuda) Cuda,
#include "common/ScalarOps.def"
  };
  return exprs[static_cast<int>(op)];
}

} // namespace mantissa
