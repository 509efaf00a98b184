//===- EmitPlan.cpp - the emit-plan pass ----------------------------------===//
//
// Lowers the module to a plan (PlanBuilder.cpp) and writes it, atomically, to
// `output`. The IR is left unchanged.
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "compiler/PlanBuilder.h"

namespace mantissa {
#define GEN_PASS_DEF_EMITPLAN
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;

namespace {

struct EmitPlanPass : mantissa::impl::EmitPlanBase<EmitPlanPass> {
  using EmitPlanBase::EmitPlanBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    mantissa::PlanConfig config;
    config.seed = seed;
    config.policy = policy;
    config.tf32 = tf32;
    config.source = source;
    config.expectedBatch = batch;
    config.foldConvBias = foldConvBias;
    FailureOr<std::vector<uint8_t>> bytes = mantissa::emitPlan(module, config);
    if (failed(bytes) || failed(mantissa::writePlanFile(module, output, *bytes)))
      return signalPassFailure();
    markAllAnalysesPreserved();
  }
};

} // namespace
