//===- Compile.cpp - the compile pipeline of `mantissa compile` -----------===//
#include "tools/mantissa/Compile.h"

#include "compiler/Passes.h"
#include "compiler/PlanBuilder.h"
#include "compiler/PrecisionPolicy.h"
#ifdef MANTISSA_HAVE_NVRTC
#include "common/Error.h"
#include "runtime/cuda/AotKernels.h"
#include "runtime/cuda/KernelCache.h"
#endif

#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <cerrno>
#include <cmath>
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
    if (!parseDouble(lossScale, s) || !(s > 0) || !std::isfinite(s))
      return fail("--loss-scale must be dynamic, none or a positive finite number, got '" + lossScale +
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
  if (o.rematConcat)
    pm.addPass(createRematConcat());
  if (o.workingCopies)
    pm.addPass(createPersistWorkingCopies());
  if (o.fuse) {
    FuseElementwiseOptions fe;
    fe.gemmEpilogue = o.gemmEpilogue;
    pm.addPass(createFuseElementwise(fe));
  }
  // Checked before the (slower) passes run.
  std::vector<int> archs;
  if (o.arch != "none") {
#ifdef MANTISSA_HAVE_NVRTC
    try {
      archs = cuda::parseArchList(o.arch);
    } catch (const Error &e) {
      return fail(e.what());
    }
#else
    return fail("--arch " + o.arch + ": this mantissa was built without the CUDA toolkit "
                "(no NVRTC); use --arch none");
#endif
  }
  if (failed(pm.run(module)))
    return failure(); // the passes reported at the ops' locations
  // emit-plan as a function (what the pass does), so that the kernels can be added
  // before the one write of the plan.
  PlanConfig config;
  config.seed = o.seed;
  config.policy = o.precision;
  config.tf32 = o.tf32;
  config.source = o.model;
  config.expectedBatch = o.batch;
  config.foldConvBias = o.fuse && o.foldConvBias;
  FailureOr<std::vector<uint8_t>> bytes = emitPlan(module, config);
  if (failed(bytes))
    return failure();
#ifdef MANTISSA_HAVE_NVRTC
  if (!archs.empty()) {
    // The kernels come from the emitted plan (the code generator reads plans), so the
    // plan is emitted a second time with them.
    cuda::KernelCache cache(cuda::KernelCache::defaultDir());
    cuda::AotStats stats;
    std::unique_ptr<plan::CudaCodeT> code;
    try {
      code = cuda::compileModules(cuda::planModules(*plan::GetPlan(bytes->data())), archs, &cache,
                                  &stats);
    } catch (const Error &e) {
      return fail(std::string("compiling the kernels: ") + e.what());
    }
    config.cuda = code.get();
    bytes = emitPlan(module, config);
    if (failed(bytes))
      return failure();
    if (o.verbose)
      llvm::errs() << "kernels: " << stats.modules << " modules for " << o.arch << " + PTX, "
                   << stats.compiles << " compilations, " << stats.cacheHits << " from the cache ("
                   << (cache.dir().empty() ? "off" : cache.dir()) << "), "
                   << llvm::format("%.2f", stats.seconds) << " s\n";
  }
#endif
  return writePlanFile(module, o.output, *bytes);
}

} // namespace mantissa
