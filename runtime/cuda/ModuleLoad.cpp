//===- ModuleLoad.cpp - cudaLibraryLoadData (ModuleLoad.h) ------------------===//
#include "runtime/cuda/ModuleLoad.h"

namespace mantissa {
namespace cuda {

cudaError_t loadModule(cudaLibrary_t *lib, const void *image, const std::string &) {
  return cudaLibraryLoadData(lib, image, nullptr, nullptr, 0, nullptr, nullptr, 0);
}

} // namespace cuda
} // namespace mantissa
