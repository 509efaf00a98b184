//===- ModuleLoad.h - loading one compiled CUDA module ----------------------===//
//
// The plugin's one call of cudaLibraryLoadData, with the CUDA C++ the image was
// compiled from beside it. ModuleLoad.cpp ignores the source; the host emulation of
// the CUDA runtime (test/fakegpu: the plugin built against a CUDA runtime and cuBLAS
// that run on the CPU, so that CI runs the executor end to end) links its own
// definition instead, which compiles the source for the CPU, as no CUBIN can run there.
//===----------------------------------------------------------------------===//
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace mantissa {
namespace cuda {

/// cudaLibraryLoadData(lib, image) for a module (CUBIN or PTX) compiled from `source`
/// (the prelude included).
cudaError_t loadModule(cudaLibrary_t *lib, const void *image, const std::string &source);

} // namespace cuda
} // namespace mantissa
