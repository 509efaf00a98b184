//===- Checkpoint.h - saving and loading training state -------------------===//
//
// A checkpoint holds every persistent tensor of a plan under its name: the
// parameters and buffers with PyTorch's state-dict names and layouts (so the file
// loads into the matching torch.nn.Module), the optimizer state
// (`<param>.momentum_buffer`, `<param>.exp_avg`, ..., `optimizer.step`), the loss
// scaler (`scaler.scale`, `scaler.growth_tracker`) and `trainer.step`. The format
// follows the extension: .safetensors or .npz. Writes are atomic.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"

#include <cstdint>
#include <string>

namespace mantissa {

/// Throws the Error saveCheckpoint would for a `path` of no known format (its extension
/// names it: .safetensors or .npz).
void checkCheckpointFormat(const std::string &path);

/// Writes the executor's persistent state and the global step to `path`.
void saveCheckpoint(Executor &exec, const std::string &path, int64_t step);

/// Loads `path` into the executor. Parameters and model buffers must all be there
/// with their shapes; optimizer and scaler state that is absent (a PyTorch state
/// dict) keeps its initial value. Returns `trainer.step` (0 if absent).
int64_t loadCheckpoint(Executor &exec, const std::string &path);

} // namespace mantissa
