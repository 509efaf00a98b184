//===- GradientRules.h - reverse-mode rules of the graph ops ---------------===//
//
// One rule per forward op of the graph dialect, used by the autodiff pass.
//===----------------------------------------------------------------------===//
#pragma once

#include "mlir/IR/Builders.h"
#include "mlir/IR/Operation.h"

namespace mantissa {

/// Appends to `b` the ops that compute the adjoints of the operands of `op`
/// from the adjoints of its results (`resultGrads[i]` is null where result i
/// has none, otherwise it has exactly the result's type). Adjoints are computed
/// only for operands with `wanted[i]` set; each returned adjoint has exactly
/// its operand's type (null where not wanted). Fails, with an error at `op`,
/// for ops that have no gradient rule.
mlir::FailureOr<llvm::SmallVector<mlir::Value>>
buildOperandGradients(mlir::OpBuilder &b, mlir::Operation *op, mlir::ArrayRef<mlir::Value> resultGrads,
                      llvm::ArrayRef<bool> wanted);

} // namespace mantissa
