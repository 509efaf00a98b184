//===- Trainer.h - training a plan on a data set --------------------------===//
//
// The training loop shared by `mantissa train` and `mantissa-run train`: feeds
// batches in a reproducible order, runs the plan's train_step, counts skipped
// (non-finite) steps, checkpoints atomically, resumes, evaluates on held-out data
// and summarises. It owns no numerics: those are the plan's and the backend's.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"
#include "runtime/data/Dataset.h"
#include "runtime/train/EnergySession.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mantissa {

struct TrainOptions {
  std::string plan;
  std::string data = "";           // digits | nowcast | X.npy,Y.npy (default: by task)
  int64_t steps = -1;              // exclusive with epochs; -1: unset
  int64_t epochs = -1;
  bool shuffle = true;
  std::optional<uint64_t> seed;    // data order and synthetic data (default: the plan's seed)
  std::string save, load;          // .safetensors or .npz
  std::string checkpointDir;
  int64_t every = 0;               // checkpoint interval in steps
  bool resume = false;
  std::string json;
  int threads = 0;
  int64_t logEvery = 0;            // 0: about 20 lines per run
  std::string backend = "cpu";     // cpu | cuda
  int64_t trainSamples = 1024;     // nowcast only
  int64_t heldOutSamples = 256;    // nowcast only
  double heldOutFraction = 0.2;    // .npy data only
  int64_t injectNonFinite = -1;    // test hook: make the input of this step infinite
  bool fixedBatch = false;         // benchmark: feed one batch once, train on it
  bool quiet = false;
  EnergyOptions energy;            // --energy and its outputs
  int64_t warmupSteps = 0;          // steps before TrainSummary::timedSecondsPerStep starts
  bool recordLosses = false;       // read the loss every step into TrainSummary::losses
  /// Called after the last step, before evaluation (the tuner and `inspect
  /// --numerics` read tensors here). With either hook set, temps keep their own
  /// storage (makeCpuExecutor's keepTemps), so that they hold the last step's values;
  /// the CUDA backend is then refused (its temps share the arena).
  std::function<void(Executor &)> afterTraining;
  /// Called after each training step's train_step (the tuner compares the first
  /// step's outputs across precisions). Reading synchronises a device.
  std::function<void(int64_t step, Executor &)> afterStep;
};

struct EvalResult {
  double loss = 0;
  double accuracy = -1;            // classification
  double mse = -1;                 // regression
  double persistenceMse = -1;      // nowcast: MSE of repeating the last input frame
  int64_t samples = 0;
};

struct TrainSummary {
  std::string model, precision, lossScaling, optimizer, data, backend, device;
  int64_t deviceBytes = 0; // Executor::deviceBytes(): what the backend holds on a GPU
  int64_t steps = 0, startStep = 0, stepsPerEpoch = 0, skippedSteps = 0, batch = 0;
  double finalLoss = 0, lossScale = 0, wallSeconds = 0, samplesPerSecond = 0;
  EvalResult eval;
  std::shared_ptr<const EnergyRun> energy; // set when energy was asked for
  std::vector<double> losses;      // per step, with TrainOptions::recordLosses
  double timedSecondsPerStep = 0;  // after warmupSteps, device synchronised at both ends
};

/// The executor for `backend` ("cpu" | "cuda"); cuda falls back to the CPU with a
/// warning when no GPU (or plugin, or driver) can be had. `readsTemps`: the caller
/// reads temps after a run (the CPU then keeps them apart; the CUDA backend's temps
/// share its arena, so it is refused).
std::unique_ptr<Executor> openExecutor(const std::string &backend, const LoadedPlan &plan,
                                       int threads, bool readsTemps = false);

/// Parses `train` options (argv after the subcommand); throws Error on bad usage.
TrainOptions parseTrainOptions(int argc, char **argv);

/// Runs training as the options say; prints progress to stderr and the summary to stdout.
TrainSummary train(const TrainOptions &options);

/// The `train` subcommand of both tools: parse, run, report. Returns the exit code.
int trainMain(int argc, char **argv);

/// The help text of `train`.
const char *trainUsage();

} // namespace mantissa
