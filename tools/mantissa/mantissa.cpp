//===- mantissa.cpp - the Mantissa driver ---------------------------------===//
//
//   mantissa compile MODEL.mlir -o OUT.plan [options]   graph IR -> plan
//   mantissa inspect PLAN                               what a plan holds
//   mantissa train PLAN [options]                       train (the runtime's loop)
//
// compile parses the model with MLIR's source manager (errors carry
// file:line:col), runs [set-batch,] assign-precision, autodiff, lower-optimizer,
// insert-loss-scaling and fuse-elementwise (unless --no-fuse) in one PassManager,
// then emit-plan's lowering; with --arch (default sm_90) every kernel is generated
// and compiled with NVRTC into the plan (runtime/cuda/AotKernels.h).
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "compiler/PlanBuilder.h"
#include "mantissa/Graph/GraphOps.h"
#include "runtime/inspect/PlanPrinter.h"
#ifdef MANTISSA_HAVE_NVRTC
#include "common/Error.h"
#include "runtime/cuda/AotKernels.h"
#include "runtime/cuda/KernelCache.h"
#endif
#ifdef MANTISSA_HAVE_TRAIN
#include "runtime/train/Trainer.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

using namespace mlir;

namespace {

const char *kUsage =
    "usage: mantissa <command> ...\n"
    "  compile MODEL.mlir -o OUT.plan [options]   compile a model graph to a plan\n"
    "  inspect PLAN [--all-tensors]               print a plan's configuration, tensors, steps\n"
    "  train PLAN [options]                       train a plan (mantissa train --help)\n"
    "\n"
    "compile options:\n"
    "  --precision fp32|fp16|bf16|POLICY.json   precision policy (default fp32)\n"
    "  --loss-scale dynamic|none|S              loss scaling (default: dynamic for fp16, else\n"
    "                                           none; a number S is a static scale)\n"
    "  --growth-interval N --growth-factor F --backoff-factor F\n"
    "                                           dynamic loss scaling (default 2000, 2, 0.5)\n"
    "  --optimizer sgd|adam|adamw               optimizer (default sgd)\n"
    "  --lr F --momentum F --weight-decay F     optimizer hyper-parameters (lr default 0.01;\n"
    "                                           weight decay default as PyTorch)\n"
    "  --batch N                                retarget the model to batch N (set-batch)\n"
    "  --seed N                                 parameter initialisation seed (default 0)\n"
    "  --tf32                                   let fp32 GEMMs use TF32\n"
    "  --no-fuse                                one kernel per elementwise op (no fuse-elementwise)\n"
    "  --arch sm_90[,sm_80...]|none             compile every kernel with NVRTC to CUBIN for\n"
    "                                           each architecture plus PTX of the oldest, into\n"
    "                                           the plan (default sm_90; none: no kernels, the\n"
    "                                           CUDA backend then compiles them at startup).\n"
    "                                           NVRTC output is cached in $MANTISSA_CACHE_DIR,\n"
    "                                           else $XDG_CACHE_HOME/mantissa/nvrtc, else\n"
    "                                           ~/.cache/mantissa/nvrtc (MANTISSA_CACHE_DIR=off)\n"
    "  -v, --verbose                            print what the kernel compilation did\n"
    "  --emit-ir                                print the final IR to stdout\n";

int usageError(const std::string &message) {
  llvm::errs() << "error: " << message << "\n" << kUsage;
  return 2;
}

int fail(const std::string &message) {
  llvm::errs() << "error: " << message << "\n";
  return 1;
}

struct CompileOptions {
  std::string model, output;
  std::string precision = "fp32";
  std::optional<std::string> lossScale;
  std::string optimizer = "sgd";
  double lr = 0.01, momentum = 0.0, weightDecay = -1.0;
  double growthFactor = 2.0, backoffFactor = 0.5;
  int64_t growthInterval = 2000;
  int64_t batch = 0;
  uint64_t seed = 0;
  bool tf32 = false, emitIr = false, fuse = true, verbose = false;
#ifdef MANTISSA_HAVE_NVRTC
  std::string arch = "sm_90";
#else
  std::string arch = "none"; // built without the CUDA toolkit: no NVRTC
#endif
};

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

/// Whether a policy file puts any op in fp16 (then dynamic loss scaling is the default).
bool policyUsesFp16(const std::string &path, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer) {
    error = "cannot read policy file '" + path + "': " + buffer.getError().message();
    return false;
  }
  llvm::Expected<llvm::json::Value> json = llvm::json::parse((*buffer)->getBuffer());
  if (!json) {
    error = "policy file '" + path + "' is not JSON: " + llvm::toString(json.takeError());
    return false;
  }
  bool fp16 = false;
  if (const llvm::json::Object *obj = json->getAsObject()) {
    if (auto d = obj->getString("default"))
      fp16 |= *d == "fp16";
    if (const llvm::json::Object *ops = obj->getObject("ops"))
      for (const auto &kv : *ops)
        if (auto s = kv.second.getAsString())
          fp16 |= *s == "fp16";
  }
  return fp16;
}

int compileMain(int argc, char **argv) {
  CompileOptions o;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") {
      llvm::outs() << kUsage;
      return 0;
    }
    if (arg.empty() || arg[0] != '-') {
      if (!o.model.empty())
        return usageError("compile takes one model, got '" + o.model + "' and '" + arg + "'");
      o.model = arg;
      continue;
    }
    // --name=value or --name value.
    std::string name = arg;
    bool hasInline = false;
    if (size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      hasInline = true;
    }
    auto take = [&]() -> bool {
      if (hasInline)
        return true;
      if (i + 1 >= argc)
        return false;
      value = argv[++i];
      return true;
    };
    auto needs = [&](const std::string &what) {
      return usageError("option '" + name + "' needs " + what);
    };
    if (name == "--tf32" && !hasInline) {
      o.tf32 = true;
    } else if (name == "--emit-ir" && !hasInline) {
      o.emitIr = true;
    } else if (name == "--no-fuse" && !hasInline) {
      o.fuse = false;
    } else if ((name == "-v" || name == "--verbose") && !hasInline) {
      o.verbose = true;
    } else if (name == "--arch") {
      if (!take())
        return needs("a list of architectures like sm_90,sm_80, or none");
      o.arch = value;
    } else if (name == "-o" || name == "--output") {
      if (!take())
        return needs("a file name");
      o.output = value;
    } else if (name == "--precision") {
      if (!take())
        return needs("fp32, fp16, bf16 or a policy file");
      o.precision = value;
    } else if (name == "--loss-scale") {
      if (!take())
        return needs("dynamic, none or a number");
      o.lossScale = value;
    } else if (name == "--optimizer") {
      if (!take())
        return needs("sgd, adam or adamw");
      o.optimizer = value;
    } else if (name == "--lr" || name == "--momentum" || name == "--weight-decay") {
      double v;
      if (!take() || !parseDouble(value, v))
        return needs("a number");
      (name == "--lr" ? o.lr : name == "--momentum" ? o.momentum : o.weightDecay) = v;
    } else if (name == "--growth-factor" || name == "--backoff-factor") {
      double v;
      if (!take() || !parseDouble(value, v) || !(v > 0))
        return needs("a positive number");
      (name == "--growth-factor" ? o.growthFactor : o.backoffFactor) = v;
    } else if (name == "--growth-interval") {
      if (!take() || !parseInt(value, o.growthInterval) || o.growthInterval <= 0)
        return needs("a positive integer");
    } else if (name == "--batch") {
      if (!take() || !parseInt(value, o.batch) || o.batch <= 0)
        return needs("a positive integer");
    } else if (name == "--seed") {
      int64_t v;
      if (!take() || !parseInt(value, v) || v < 0)
        return needs("a non-negative integer");
      o.seed = uint64_t(v);
    } else {
      return usageError("unknown option '" + arg + "'");
    }
  }
  if (o.model.empty())
    return usageError("compile needs a model file (MODEL.mlir)");
  if (o.output.empty())
    return usageError("compile needs -o OUT.plan");

  // Precision and the loss-scaling default that follows from it.
  bool fp16 = o.precision == "fp16";
  if (o.precision != "fp32" && o.precision != "fp16" && o.precision != "bf16") {
    if (!llvm::sys::fs::exists(o.precision))
      return fail("--precision must be fp32, fp16, bf16 or a policy file; '" + o.precision +
                  "' is none of them (no such file)");
    std::string error;
    fp16 = policyUsesFp16(o.precision, error);
    if (!error.empty())
      return fail(error);
  }
  mantissa::InsertLossScalingOptions ls;
  ls.growthFactor = o.growthFactor;
  ls.backoffFactor = o.backoffFactor;
  ls.growthInterval = o.growthInterval;
  std::string lossScale = o.lossScale.value_or(fp16 ? "dynamic" : "none");
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

  DialectRegistry registry;
  registry.insert<mantissa::graph::GraphDialect, func::FuncDialect>();
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  context.disableMultithreading();
  context.printOpOnDiagnostic(false); // the location says where; no IR dump

  auto file = llvm::MemoryBuffer::getFileOrSTDIN(o.model);
  if (!file)
    return fail("cannot open '" + o.model + "': " + file.getError().message());
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(*file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1; // the diagnostic (file:line:col: error: ...) is printed

  PassManager pm(&context);
  if (o.batch > 0) {
    mantissa::SetBatchOptions sb;
    sb.batch = o.batch;
    pm.addPass(mantissa::createSetBatch(sb));
  }
  mantissa::AssignPrecisionOptions ap;
  ap.policy = o.precision;
  pm.addPass(mantissa::createAssignPrecision(ap));
  pm.addPass(mantissa::createAutodiff());
  mantissa::LowerOptimizerOptions lo;
  lo.optimizer = o.optimizer;
  lo.lr = o.lr;
  lo.momentum = o.momentum;
  lo.weightDecay = o.weightDecay;
  pm.addPass(mantissa::createLowerOptimizer(lo));
  pm.addPass(mantissa::createInsertLossScaling(ls));
  if (o.fuse)
    pm.addPass(mantissa::createFuseElementwise());
  // Checked before the (slower) passes run.
  std::vector<int> archs;
  if (o.arch != "none") {
#ifdef MANTISSA_HAVE_NVRTC
    try {
      archs = mantissa::cuda::parseArchList(o.arch);
    } catch (const mantissa::Error &e) {
      return fail(e.what());
    }
#else
    return fail("--arch " + o.arch + ": this mantissa was built without the CUDA toolkit "
                "(no NVRTC); use --arch none");
#endif
  }
  if (failed(pm.run(*module)))
    return 1; // the passes reported at the ops' locations
  // emit-plan as a function (what the pass does), so that the kernels can be added
  // before the one write of the plan.
  mantissa::PlanConfig config;
  config.seed = o.seed;
  config.policy = o.precision;
  config.tf32 = o.tf32;
  config.source = o.model;
  config.expectedBatch = o.batch;
  FailureOr<std::vector<uint8_t>> bytes = mantissa::emitPlan(*module, config);
  if (failed(bytes))
    return 1;
#ifdef MANTISSA_HAVE_NVRTC
  if (!archs.empty()) {
    // The kernels come from the emitted plan (the code generator reads plans), so the
    // plan is emitted a second time with them.
    mantissa::cuda::KernelCache cache(mantissa::cuda::KernelCache::defaultDir());
    mantissa::cuda::AotStats stats;
    std::unique_ptr<mantissa::plan::CudaCodeT> code;
    try {
      code = mantissa::cuda::compileModules(
          mantissa::cuda::planModules(*mantissa::plan::GetPlan(bytes->data())), archs, &cache, &stats);
    } catch (const mantissa::Error &e) {
      return fail(std::string("compiling the kernels: ") + e.what());
    }
    config.cuda = code.get();
    bytes = mantissa::emitPlan(*module, config);
    if (failed(bytes))
      return 1;
    if (o.verbose)
      llvm::errs() << "kernels: " << stats.modules << " modules for " << o.arch << " + PTX, "
                   << stats.compiles << " compilations, " << stats.cacheHits << " from the cache ("
                   << (cache.dir().empty() ? "off" : cache.dir()) << "), "
                   << llvm::format("%.2f", stats.seconds) << " s\n";
  }
#endif
  if (failed(mantissa::writePlanFile(*module, o.output, *bytes)))
    return 1;
  if (o.emitIr) {
    module->print(llvm::outs());
    llvm::outs() << "\n";
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2)
    return usageError("missing command");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    llvm::outs() << kUsage;
    return 0;
  }
  if (cmd == "compile")
    return compileMain(argc - 2, argv + 2);
  if (cmd == "inspect")
    return mantissa::inspectMain(argc - 2, argv + 2);
  if (cmd == "train") {
    // The runtime's training loop (runtime/train/Trainer.h), shared with mantissa-run.
#ifdef MANTISSA_HAVE_TRAIN
    if (argc >= 3 && (!std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h"))) {
      llvm::outs() << mantissa::trainUsage();
      return 0;
    }
    return mantissa::trainMain(argc - 2, argv + 2);
#else
    llvm::errs() << "error: mantissa train is not built yet (no MantissaTrain target)\n";
    return 2;
#endif
  }
  return usageError("unknown command '" + cmd + "'");
}
