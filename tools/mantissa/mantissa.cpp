//===- mantissa.cpp - the Mantissa driver ---------------------------------===//
//
//   mantissa compile MODEL.mlir -o OUT.plan [options]   graph IR -> plan
//   mantissa inspect PLAN                               what a plan holds
//   mantissa train PLAN [options]                       train (the runtime's loop)
//
// compile parses the model with MLIR's source manager (errors carry
// file:line:col), runs [set-batch,] assign-precision, autodiff, lower-optimizer,
// insert-loss-scaling, remat-concat (unless --no-remat-concat), persist-working-copies (unless
// --no-working-copies) and fuse-elementwise (unless --no-fuse) in one PassManager
// (tools/mantissa/Compile.cpp), then emit-plan's lowering; with --arch (default
// sm_90) every kernel is generated and compiled with NVRTC into the plan
// (runtime/cuda/AotKernels.h).
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "tools/mantissa/Compile.h"
#include "mantissa/Graph/GraphOps.h"
#include "runtime/inspect/PlanPrinter.h"
#ifdef MANTISSA_HAVE_TRAIN
#include "common/Args.h"
#include "runtime/cost/CostModel.h"
#include "runtime/train/Numerics.h"
#include "runtime/train/Trainer.h"
#include "tools/mantissa/Tune.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
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
    "  inspect --numerics PLAN [--steps N] ...    per tensor after N training steps: exponent\n"
    "                                           histogram, fp16/bf16 underflow and overflow\n"
    "  inspect --cost h100|h200 PLAN [--json F]   the cost model's time and energy per step\n"
    "  train PLAN [options]                       train a plan (mantissa train --help)\n"
    "  tune MODEL.mlir -o POLICY.json [options]   search a precision policy (mantissa tune "
    "--help)\n"
    "\n"
    "compile options:\n"
    "  --precision fp32|fp16|bf16|POLICY.json   precision policy (default fp32); a policy file\n"
    "                                           sets op groups and ops, and may set loss_scaling\n"
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
    "  --no-fuse                                one kernel per elementwise op (no\n"
    "                                           fuse-elementwise, convolution biases not\n"
    "                                           folded into batch norms, no GEMM epilogues)\n"
    "  --no-gemm-epilogue                       keep a linear's bias (and relu) out of its\n"
    "                                           GEMM: the unfused plan's roundings, bit for bit\n"
    "  --no-remat-concat                        keep a concatenation's inputs for the backward\n"
    "                                           pass instead of slicing them back out of it\n"
    "  --no-working-copies                      cast the fp32 masters every step instead of\n"
    "                                           keeping low-precision copies the update writes\n"
    "                                           (no persist-working-copies)\n"
    "  --arch sm_90[,sm_80...]|none             compile every kernel with NVRTC to CUBIN for\n"
    "                                           each architecture plus PTX of the oldest, into\n"
    "                                           the plan (default sm_90; none: no kernels, the\n"
    "                                           CUDA backend then compiles them at startup).\n"
    "                                           NVRTC output is cached in $MANTISSA_CACHE_DIR,\n"
    "                                           else $XDG_CACHE_HOME/mantissa/nvrtc, else\n"
    "                                           ~/.cache/mantissa/nvrtc (MANTISSA_CACHE_DIR=off)\n"
    "  -v, --verbose                            print what the kernel compilation did\n"
    "  --emit-ir                                print the final IR to stdout\n";

using mantissa::parseDouble;
using mantissa::parseInt;

int usageError(const std::string &message) {
  llvm::errs() << "error: " << message << "\n" << kUsage;
  return 2;
}

int fail(const std::string &message) {
  llvm::errs() << "error: " << message << "\n";
  return 1;
}

int compileMain(int argc, char **argv) {
  mantissa::CompileOptions o;
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
      // The next option is not this one's value (`--arch -o x.plan` lacks the arch).
      if (i + 1 >= argc || std::strncmp(argv[i + 1], "--", 2) == 0 ||
          !std::strcmp(argv[i + 1], "-o") || !std::strcmp(argv[i + 1], "-v") ||
          !std::strcmp(argv[i + 1], "-h"))
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
    } else if (name == "--no-remat-concat" && !hasInline) {
      o.rematConcat = false;
    } else if (name == "--no-gemm-epilogue" && !hasInline) {
      o.gemmEpilogue = false;
    } else if (name == "--no-working-copies" && !hasInline) {
      o.workingCopies = false;
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
  // The plan would replace the model's source.
  if (llvm::sys::fs::equivalent(o.model, o.output))
    return usageError("-o " + o.output + " is the model file itself; name the plan differently");

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

  if (failed(mantissa::runCompilePipeline(*module, o)))
    return 1; // the passes and the policy reader reported the problem
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
  if (cmd == "inspect") {
#ifdef MANTISSA_HAVE_TRAIN
    if (mantissa::hasFlag(argc - 2, argv + 2, "--numerics"))
      return mantissa::numericsMain(argc - 2, argv + 2);
    if (mantissa::hasFlag(argc - 2, argv + 2, "--cost"))
      return mantissa::costMain(argc - 2, argv + 2);
#endif
    return mantissa::inspectMain(argc - 2, argv + 2);
  }
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
  if (cmd == "tune") {
#ifdef MANTISSA_HAVE_TRAIN
    return mantissa::tuneMain(argc - 2, argv + 2);
#else
    llvm::errs() << "error: mantissa tune needs the training loop (no MantissaTrain target)\n";
    return 2;
#endif
  }
  return usageError("unknown command '" + cmd + "'");
}
