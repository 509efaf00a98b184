//===- mantissa-opt.cpp - run Mantissa passes on graph IR -----------------===//
//
// MLIR's standard driver: `mantissa-opt model.mlir --autodiff --assign-precision=...`
// prints the IR after the passes, in MLIR's conventions.
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "mantissa/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<mantissa::graph::GraphDialect, mlir::func::FuncDialect>();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mantissa::registerMantissaPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "Mantissa graph optimizer driver\n", registry));
}
