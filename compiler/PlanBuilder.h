//===- PlanBuilder.h - lowering graph IR to a plan ------------------------===//
//
// The logic behind `emit-plan`, callable as a function (the `mantissa compile`
// driver and tests use it directly): lowers @train_step and @forward (as
// eval_step) of a module to the FlatBuffers plan of plan/mantissa_plan.fbs.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include "mlir/IR/BuiltinOps.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mantissa {

/// Optimizer configuration, as the plan records it. The IR is the source of truth
/// (the attributes of the sgd_update / adam_update ops); this is the fallback for a
/// module without updates.
struct OptimizerConfig {
  std::string kind = "sgd"; // sgd | adam | adamw
  double lr = 0.01, momentum = 0.0, weightDecay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

/// Loss-scaling configuration. Read from the IR where it shows (a
/// loss_scale_update op: dynamic; a "scaler.scale" buffer alone: static); this is
/// the fallback.
struct LossScalingConfig {
  std::string mode = "none"; // none | static | dynamic
  double initScale = 65536.0, growthFactor = 2.0, backoffFactor = 0.5;
  int64_t growthInterval = 2000;
};

/// What emitPlan needs beyond the IR. (Not `EmitPlanOptions`: that name is the
/// pass's ODS-generated option struct.)
struct PlanConfig {
  uint64_t seed = 0;           // parameter initialisation
  std::string policy = "fp32"; // fp32 | fp16 | bf16 | the policy file's path
  bool tf32 = false;
  std::string source;                           // the .mlir file; empty: from the module's location
  int64_t expectedBatch = 0;                    // 0: whatever the IR says; else must match
  std::optional<OptimizerConfig> optimizer;     // fallback only (see above)
  std::optional<LossScalingConfig> lossScaling; // fallback only
  /// The compiled kernels (Plan.cuda), made from a first emission of the same module
  /// (runtime/cuda/AotKernels.h); null: none.
  const plan::CudaCodeT *cuda = nullptr;
  /// A convolution's bias add moves into the batch norms that read its result (their
  /// input_bias): x is stored without the bias and read as round(x + bias). Off with
  /// `mantissa compile --no-fuse`.
  bool foldConvBias = true;
};

/// Lowers `module` to plan bytes. Every problem is an error diagnostic at the
/// location of the op concerned (or the module), and failure.
mlir::FailureOr<std::vector<uint8_t>> emitPlan(mlir::ModuleOp module, const PlanConfig &config);

/// Writes `bytes` to `path` atomically (temporary file + rename); "-" is stdout.
mlir::LogicalResult writePlanFile(mlir::ModuleOp module, llvm::StringRef path,
                                  const std::vector<uint8_t> &bytes);

} // namespace mantissa
