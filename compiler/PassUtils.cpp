//===- PassUtils.cpp - helpers shared by the passes -----------------------===//
#include "compiler/PassUtils.h"

#include "mantissa/Graph/GraphOps.h"

using namespace mlir;

FailureOr<func::FuncOp> mantissa::getFunction(ModuleOp module, StringRef name, StringRef pass) {
  if (auto fn = module.lookupSymbol<func::FuncOp>(name))
    return fn;
  return module.emitError() << pass << ": the module has no func.func @" << name;
}

RankedTensorType mantissa::withElementType(Type type, Type element) {
  return cast<RankedTensorType>(type).clone(element);
}

Value mantissa::castToElement(OpBuilder &b, Location loc, Value value, Type element) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getElementType() == element)
    return value;
  return graph::CastOp::create(b, loc, type.clone(element), value);
}

Value mantissa::createConstant(OpBuilder &b, Location loc, Type type, double value) {
  return graph::ConstantOp::create(b, loc, type, b.getF64FloatAttr(value));
}
