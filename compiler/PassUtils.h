//===- PassUtils.h - helpers shared by the passes -------------------------===//
#pragma once

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mantissa {

/// The function `name` of the module, or an error at the module naming what is
/// missing and which pass needs it.
mlir::FailureOr<mlir::func::FuncOp> getFunction(mlir::ModuleOp module, llvm::StringRef name,
                                                llvm::StringRef pass);

} // namespace mantissa
