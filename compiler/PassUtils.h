//===- PassUtils.h - helpers shared by the passes -------------------------===//
#pragma once

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mantissa {

/// The function `name` of the module, or an error at the module naming what is
/// missing and which pass needs it.
mlir::FailureOr<mlir::func::FuncOp> getFunction(mlir::ModuleOp module, llvm::StringRef name,
                                                llvm::StringRef pass);

/// The ranked tensor type `type` with its element type replaced by `element`.
mlir::RankedTensorType withElementType(mlir::Type type, mlir::Type element);

/// `value` converted to the element type `element` by a graph.cast, or `value`
/// itself when it already has that element type.
mlir::Value castToElement(mlir::OpBuilder &b, mlir::Location loc, mlir::Value value,
                          mlir::Type element);

/// A graph.constant of type `type` filled with `value`.
mlir::Value createConstant(mlir::OpBuilder &b, mlir::Location loc, mlir::Type type, double value);

} // namespace mantissa
