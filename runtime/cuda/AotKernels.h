//===- AotKernels.h - a plan's CUDA kernels, compiled ahead of time -------===//
//
// `mantissa compile --arch sm_90,sm_80` runs this on a machine with no GPU: the same
// code generator the CUDA plugin uses (ElementwiseCodegen.cpp, FixedKernels.cpp)
// gives every module's CUDA C++, NVRTC compiles it to CUBIN for each architecture and
// to PTX for the oldest (compute_XX, which the driver JIT-compiles on any newer GPU),
// through the on-disk cache (KernelCache.h), and the result is stored in the plan
// (Plan.cuda, mantissa_plan.fbs) by emit-plan (PlanConfig::cuda: the plan is emitted
// once to derive the modules, then again with them; FlatBuffers' object API cannot
// round-trip a whole plan, as it drops empty vectors that the plan gives meaning).
// One module per distinct elementwise kernel, one per implicit-GEMM convolution
// configuration (ConvKernels.h), one for the fixed kernels; identical sources are one
// module.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mantissa {
namespace cuda {

class KernelCache;

/// A module's CUDA C++, before compilation.
struct ModuleSource {
  std::string name;                 // mt_ew_<hash>, mt_conv_<config>, or mantissa_fixed
  std::vector<std::string> entries; // extern "C" entry points
  std::vector<std::string> fuses;   // the graph ops it computes
  plan::DType precision = plan::DType::F32;
  std::string source;               // compiled after cudaPrelude()
};

/// Every module a plan needs (the fixed kernels first, then the elementwise and
/// convolution kernels in order of first use); the executor and the ahead-of-time compiler both use it.
std::vector<ModuleSource> planModules(const plan::Plan &plan);

/// FNV-1a of what NVRTC compiles for `source`: prelude + "\n" + source (16 hex digits).
std::string moduleSourceHash(const std::string &prelude, const std::string &source);

/// The name of the fixed kernels' module.
inline constexpr const char *kFixedModuleName = "mantissa_fixed";

/// "sm_90,sm_80" -> {90, 80} (order kept, duplicates dropped). Error naming the bad
/// item, or an architecture this NVRTC cannot compile for.
std::vector<int> parseArchList(const std::string &list);

struct AotStats {
  size_t modules = 0;     // distinct modules
  size_t compiles = 0;    // (module, target) pairs
  size_t cacheHits = 0;   // of those, taken from the cache
  double seconds = 0;
};

/// `modules` compiled with NVRTC, as the plan stores them.
std::unique_ptr<plan::CudaCodeT> compileModules(const std::vector<ModuleSource> &modules,
                                                const std::vector<int> &archs, KernelCache *cache,
                                                AotStats *stats);

} // namespace cuda
} // namespace mantissa
