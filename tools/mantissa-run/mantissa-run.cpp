//===- mantissa-run.cpp - the lean runtime: train a plan -------------------===//
//
// Links neither MLIR nor LLVM: it is what gets copied to a GPU node with a plan.
//===----------------------------------------------------------------------===//
#include "runtime/train/Calibration.h"
#include "runtime/train/Measure.h"
#include "common/Args.h"
#include "runtime/cost/CostModel.h"
#include "runtime/train/Numerics.h"
#include "runtime/train/Trainer.h"

#include <cstdio>
#include <cstring>
#include <string>

#ifdef MANTISSA_HAVE_INSPECT
#include "runtime/inspect/PlanPrinter.h"
#endif

static void usage(FILE *out) {
  std::fprintf(out, "usage: mantissa-run <command> ...\n"
                    "  train PLAN [options]   train a compiled plan (mantissa-run train --help)\n"
                    "  profile PLAN [options] calibrate each kernel's power by replay (profile --help)\n"
                    "  measure PLAN... --json RESULTS.json   time per training step of each plan\n"
                    "                         (mantissa-run measure --help)\n"
#ifdef MANTISSA_HAVE_INSPECT
                    "  inspect PLAN           print the plan's kernels, tensors and configuration\n"
                    "  inspect --numerics PLAN [--steps N]   tensor ranges against fp16/bf16\n"
                    "  inspect --cost h100|h200 PLAN [--json F]   modelled time per kernel\n"
#endif
  );
}

int main(int argc, char **argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "train") {
    if (argc >= 3 && (!std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h"))) {
      std::fputs(mantissa::trainUsage(), stdout);
      return 0;
    }
    return mantissa::trainMain(argc - 2, argv + 2);
  }
  if (cmd == "profile") {
    if (argc >= 3 && (!std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h"))) {
      std::fputs(mantissa::profileUsage(), stdout);
      return 0;
    }
    return mantissa::profileMain(argc - 2, argv + 2);
  }
  if (cmd == "measure")
    return mantissa::measureMain(argc - 2, argv + 2);
#ifdef MANTISSA_HAVE_INSPECT
  if (cmd == "inspect") {
    if (mantissa::hasFlag(argc - 2, argv + 2, "--numerics"))
      return mantissa::numericsMain(argc - 2, argv + 2);
    if (mantissa::hasFlag(argc - 2, argv + 2, "--cost"))
      return mantissa::costMain(argc - 2, argv + 2);
    return mantissa::inspectMain(argc - 2, argv + 2);
  }
#endif
  std::fprintf(stderr, "error: unknown command '%s'\n", cmd.c_str());
  usage(stderr);
  return 2;
}
