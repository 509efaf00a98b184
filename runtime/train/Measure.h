//===- Measure.h - mantissa-run measure: time per training step of plans --===//
//
//   mantissa-run measure A.plan B.plan ... --json results.json
//
// Trains each plan on one fixed batch for --warmup steps, then times --steps more
// (host wall clock between two device synchronisations) through the Executor
// interface, so it measures the CPU or the CUDA backend alike. The results feed
// `mantissa tune --select`.
//===----------------------------------------------------------------------===//
#pragma once

namespace mantissa {

/// The `measure` subcommand (argv after it). Returns the exit code.
int measureMain(int argc, char **argv);

} // namespace mantissa
