//===- KernelLoader.cpp - loading a plan's compiled kernels on the device -===//
#include "runtime/cuda/KernelLoader.h"
#include "runtime/cuda/KernelImage.h"
#include "runtime/cuda/ModuleLoad.h"

#include "common/Error.h"

#include <cstdint>
#include <cstring>

namespace mantissa {
namespace cuda {

namespace {

void check(cudaError_t e, const std::string &what) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  }
}

} // namespace

LoadedKernels loadPlanKernels(const plan::Plan &plan, int arch, const std::string &planName,
                              std::vector<cudaLibrary_t> &libraries) {
  LoadedKernels out;
  for (const plan::CudaKernel *k : *plan.cuda()->kernels()) {
    const KernelImage chosen = chooseKernelImage(*k, arch, planName);
    if (chosen.ptx) {
      ++out.ptxModules;
      out.ptxArch = chosen.target;
    } else {
      ++out.cubinModules;
    }
    // A copy at 8-byte alignment: FlatBuffers aligns a byte vector to 4 only, and
    // the ELF loader reads 8-byte fields.
    std::vector<uint64_t> image((chosen.size + 7) / 8);
    std::memcpy(image.data(), chosen.bytes, chosen.size);
    cudaLibrary_t lib = nullptr;
    check(loadModule(&lib, image.data(), plan.cuda()->prelude()->str() + "\n" + k->source()->str()),
          planName + ": cudaLibraryLoadData(" + k->name()->str() + ", " +
              (chosen.ptx ? "PTX " : "CUBIN ") + chosen.target + ")");
    libraries.push_back(lib);
    for (const flatbuffers::String *entry : *k->entries()) {
      cudaKernel_t fn = nullptr;
      check(cudaLibraryGetKernel(&fn, lib, entry->c_str()),
            planName + ": cudaLibraryGetKernel(" + entry->str() + ") in " + k->name()->str());
      out.byEntry[entry->str()] = fn;
    }
  }
  return out;
}

std::string describeLoadedKernels(const LoadedKernels &k, int arch) {
  std::string text = "kernels: " + std::to_string(k.cubinModules + k.ptxModules) +
                     " modules from the plan";
  if (k.cubinModules)
    text += ", " + std::to_string(k.cubinModules) + " CUBIN sm_" + std::to_string(arch);
  if (k.ptxModules)
    text += ", " + std::to_string(k.ptxModules) + " JIT from PTX " + k.ptxArch;
  return text;
}

} // namespace cuda
} // namespace mantissa
