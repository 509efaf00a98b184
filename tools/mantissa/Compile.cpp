//===- Compile.cpp - the compile pipeline of `mantissa compile` -----------===//
#include "tools/mantissa/Compile.h"

#include "compiler/Passes.h"
#include "compiler/PrecisionPolicy.h"

#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <cerrno>
#include <cstdlib>

using namespace mlir;

namespace mantissa {

namespace {
LogicalResult fail(const std::string &message) {
  llvm::errs() << "error: " << message << "\n";
  return failure();
}
} // namespace

bool parseDouble(const std::string &s, double &out) {
  char *end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && errno == 0;
}

bool parseInt(const std::string &s, int64_t &out) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  out = v;
  return !s.empty() && end && *end == '\0' && errno == 0;
}

LogicalResult runCompilePipeline(ModuleOp module, const CompileOptions &o) {
  std::optional<std::string> lossScaleOption = o.lossScale;
  // Precision and the loss-scaling default that follows from it (a policy file
  // may name its own).
  bool fp16 = o.precision == "fp16";
  if (!isPrecisionName(o.precision)) {
    if (!llvm::sys::fs::exists(o.precision))
      return fail("--precision must be fp32, fp16, bf16 or a policy file; '" + o.precision +
                  "' is none of them (no such file)");
    llvm::Expected<PolicyFile> policy = readPolicyFile(o.precision);
    if (!policy)
      return fail(llvm::toString(policy.takeError()));
    fp16 = policy->usesFp16();
    if (!o.lossScale && policy->lossScaling)
      lossScaleOption = policy->lossScaling;
  }
  InsertLossScalingOptions ls;
  ls.growthFactor = o.growthFactor;
  ls.backoffFactor = o.backoffFactor;
  ls.growthInterval = o.growthInterval;
  std::string lossScale = lossScaleOption.value_or(fp16 ? "dynamic" : "none");
  if (lossScale == "dynamic" || lossScale == "none") {
    ls.mode = lossScale;
  } else {
    double s;
    if (!parseDouble(lossScale, s) || !(s > 0))
      return fail("--loss-scale must be dynamic, none or a positive number, got '" + lossScale +
                  "'");
    ls.mode = "static";
    ls.initScale = s;
  }
  if (o.optimizer != "sgd" && o.optimizer != "adam" && o.optimizer != "adamw")
    return fail("--optimizer must be sgd, adam or adamw, got '" + o.optimizer + "'");

  PassManager pm(module.getContext());
  if (o.batch > 0) {
    SetBatchOptions sb;
    sb.batch = o.batch;
    pm.addPass(createSetBatch(sb));
  }
  AssignPrecisionOptions ap;
  ap.policy = o.precision;
  pm.addPass(createAssignPrecision(ap));
  pm.addPass(createAutodiff());
  LowerOptimizerOptions lo;
  lo.optimizer = o.optimizer;
  lo.lr = o.lr;
  lo.momentum = o.momentum;
  lo.weightDecay = o.weightDecay;
  pm.addPass(createLowerOptimizer(lo));
  pm.addPass(createInsertLossScaling(ls));
  if (o.fuse)
    pm.addPass(createFuseElementwise());
  EmitPlanOptions ep;
  ep.output = o.output;
  ep.seed = o.seed;
  ep.batch = o.batch;
  ep.policy = o.precision;
  ep.tf32 = o.tf32;
  ep.source = o.model;
  pm.addPass(createEmitPlan(ep));
  return pm.run(module);
}

} // namespace mantissa
