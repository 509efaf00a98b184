//===- PassUtils.cpp - helpers shared by the passes -----------------------===//
#include "compiler/PassUtils.h"

using namespace mlir;

FailureOr<func::FuncOp> mantissa::getFunction(ModuleOp module, StringRef name, StringRef pass) {
  if (auto fn = module.lookupSymbol<func::FuncOp>(name))
    return fn;
  return module.emitError() << pass << ": the module has no func.func @" << name;
}
