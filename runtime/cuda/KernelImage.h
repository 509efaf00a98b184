//===- KernelImage.h - which compiled image of a plan's kernel a GPU loads -===//
//
// The decision of KernelLoader.h, kept apart from the CUDA runtime so that it is
// tested without a GPU: for a GPU of compute capability sm_XY, the CUBIN of exactly
// sm_XY, else the PTX if its compute_N has N <= XY (the driver JIT-compiles it), else
// one error naming the plan, the kernel, the GPU and what the plan has.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include <cstddef>
#include <string>

namespace mantissa {
namespace cuda {

struct KernelImage {
  const char *bytes = nullptr; // CUBIN, or NUL-terminated PTX (size counts the NUL)
  size_t size = 0;
  bool ptx = false;
  std::string target;          // "sm_90" or "compute_80"
};

/// The image of `kernel` (of a verified plan) for a GPU of sm_<arch>; Error if none.
KernelImage chooseKernelImage(const plan::CudaKernel &kernel, int arch, const std::string &planName);

} // namespace cuda
} // namespace mantissa
