//===- PlanPrinter.h - a readable listing of a plan -----------------------===//
//
// What `mantissa inspect` prints: the model, the precision / loss-scaling /
// optimizer configuration, a summary of the tensors by role, and every step of
// every function with its kernel, precision, tensors and (for elementwise
// kernels) its program; the compiled kernels (what each fuses, its precision, its
// CUBIN per architecture and PTX) and, on request, a kernel's source or PTX. Part of the runtime: no MLIR, so the lean runtime binary
// can print plans too. Reads the FlatBuffer directly after the FlatBuffers
// Verifier has checked it (no semantic checks: a broken plan still prints).
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

namespace mantissa {

struct PlanPrintOptions {
  bool allTensors = false; // list temporaries too, not only state and inputs
  std::string source, ptx;  // print only this kernel's source / PTX (name or k<N>)
};

/// Prints the plan in `data`; returns "" or what is wrong (not a plan, corrupt).
std::string printPlan(const uint8_t *data, size_t size, std::ostream &os,
                      const PlanPrintOptions &options = {});

/// Reads `path` and prints it; returns "" or "<path>: what is wrong".
std::string printPlanFile(const std::string &path, std::ostream &os,
                          const PlanPrintOptions &options = {});

/// The `inspect` subcommand of both tools (`mantissa`, `mantissa-run`): argv after
/// the subcommand, `PLAN [--all-tensors]`. Prints "error: ..." and returns non-zero
/// on a bad plan or usage.
int inspectMain(int argc, char **argv);

} // namespace mantissa
