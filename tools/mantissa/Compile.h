//===- Compile.h - the compile pipeline of `mantissa compile` -------------===//
//
// One definition of the pipeline, used by `mantissa compile` and by `mantissa
// tune` (which compiles every candidate policy with it).
//===----------------------------------------------------------------------===//
#pragma once

#include "mlir/IR/BuiltinOps.h"

#include <cstdint>
#include <optional>
#include <string>

namespace mantissa {

struct CompileOptions {
  std::string model, output;
  std::string precision = "fp32"; // fp32 | fp16 | bf16 | a policy file (PrecisionPolicy.h)
  std::optional<std::string> lossScale; // unset: the policy file's, else dynamic with fp16
  std::string optimizer = "sgd";
  double lr = 0.01, momentum = 0.0, weightDecay = -1.0;
  double growthFactor = 2.0, backoffFactor = 0.5;
  int64_t growthInterval = 2000;
  int64_t batch = 0;
  uint64_t seed = 0;
  bool tf32 = false, emitIr = false, fuse = true, workingCopies = true;
  /// remat-concat: a concatenation's inputs read after it are slices of it (memory for
  /// copies); off, they stay alive until the backward pass.
  bool rematConcat = true;
  /// With fuse: a convolution's bias add folded into the batch norms that read its result
  /// (emit-plan's fold-conv-bias). The result is then stored without the bias.
  bool foldConvBias = true;
  /// With fuse: a linear's bias and relu in its GEMM (fuse-elementwise's gemm-epilogue),
  /// one rounding fewer in fp16/bf16.
  bool gemmEpilogue = true;
  bool verbose = false; // print what the kernel compilation did
  /// Architectures to compile every kernel for with NVRTC ("sm_90,sm_80"), or "none".
#ifdef MANTISSA_HAVE_NVRTC
  std::string arch = "sm_90";
#else
  std::string arch = "none"; // built without the CUDA toolkit: no NVRTC
#endif
};

bool parseDouble(const std::string &s, double &out);
bool parseInt(const std::string &s, int64_t &out);

/// Runs [set-batch,] assign-precision, autodiff, lower-optimizer,
/// insert-loss-scaling, [remat-concat,] [persist-working-copies,] [fuse-elementwise,]
/// then emit-plan's lowering on `module`,
/// with the kernels compiled for `options.arch` (AotKernels.h), writing
/// `options.output`. Problems are printed (`error: ...` or at the ops' locations).
mlir::LogicalResult runCompilePipeline(mlir::ModuleOp module, const CompileOptions &options);

} // namespace mantissa
