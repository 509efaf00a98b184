//===- KernelLoader.h - loading a plan's compiled kernels on the device ---===//
//
// A plan compiled with `mantissa compile --arch ...` carries every kernel module as
// CUBIN per architecture plus PTX of the oldest (Plan.cuda). For the device's
// compute capability sm_XY each module is loaded with cudaLibraryLoadData (runtime
// API: no -lcuda) from the CUBIN of exactly sm_XY, else from the PTX, which the
// driver JIT-compiles (PTX of compute_AB runs on any device of sm_AB or newer); a
// module with neither is one clear error naming the plan, the device and what the
// plan has (the choice: KernelImage.h). Used only by the CUDA plugin.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include <cuda_runtime.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace mantissa {
namespace cuda {

struct LoadedKernels {
  std::unordered_map<std::string, cudaKernel_t> byEntry; // every entry point of every module
  size_t cubinModules = 0, ptxModules = 0;
  std::string ptxArch;   // the PTX's architecture when any module was JIT-compiled
};

/// Loads every module of `plan.cuda()` (which must be present) for a device of
/// compute capability `arch`; appends each library to `libraries` (the caller
/// unloads them, also after an error). `planName` names the plan in errors.
LoadedKernels loadPlanKernels(const plan::Plan &plan, int arch, const std::string &planName,
                              std::vector<cudaLibrary_t> &libraries);

/// One line for the user: "kernels: 38 modules from the plan, CUBIN sm_90" (or the
/// PTX JIT, or both).
std::string describeLoadedKernels(const LoadedKernels &k, int arch);

} // namespace cuda
} // namespace mantissa
