//===- mantissa-opt.cpp - run Mantissa passes on graph IR -----------------===//
//
// MLIR's standard driver: `mantissa-opt model.mlir --autodiff --assign-precision=...`
// prints the IR after the passes, in MLIR's conventions. With `-o FILE` the IR goes to
// a temporary file next to FILE that replaces it only on success: mlir-opt truncates
// FILE before parsing, so a failed run would lose what FILE held.
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "mantissa/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<mantissa::graph::GraphDialect, mlir::func::FuncDialect>();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mantissa::registerMantissaPasses();
  auto [input, output] =
      mlir::registerAndParseCLIOptions(argc, argv, "Mantissa graph optimizer driver\n", registry);
  if (output == "-")
    return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, input, output, registry));
  std::string temp = output + ".tmp." + std::to_string(llvm::sys::Process::getProcessId());
  bool ok = mlir::succeeded(mlir::MlirOptMain(argc, argv, input, temp, registry));
  if (ok) {
    if (std::error_code ec = llvm::sys::fs::rename(temp, output)) {
      llvm::errs() << "error: cannot write " << output << ": " << ec.message() << "\n";
      ok = false;
    }
  }
  if (!ok)
    llvm::sys::fs::remove(temp);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
