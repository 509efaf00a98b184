//===- KernelLoader.cpp - loading a plan's compiled kernels on the device -===//
#include "runtime/cuda/KernelLoader.h"

#include "common/Error.h"

#include <cstdint>
#include <cstdlib>
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

/// PTX of compute_N runs on sm_arch when N <= arch.
bool ptxRunsOn(const plan::CudaKernel &k, int arch) {
  if (!k.ptx() || k.ptx()->size() == 0 || !k.ptx_arch())
    return false;
  const std::string a = k.ptx_arch()->str();
  return a.rfind("compute_", 0) == 0 && std::atoi(a.c_str() + 8) <= arch;
}

std::string whatThePlanHas(const plan::CudaKernel &k) {
  std::string has;
  if (k.cubins())
    for (const plan::CudaCubin *c : *k.cubins())
      has += (has.empty() ? "" : ", ") + std::string("CUBIN ") + c->arch()->str();
  if (k.ptx() && k.ptx()->size())
    has += (has.empty() ? "" : ", ") + std::string("PTX ") + k.ptx_arch()->str();
  return has.empty() ? "nothing" : has;
}

} // namespace

LoadedKernels loadPlanKernels(const plan::Plan &plan, int arch, const std::string &planName,
                              std::vector<cudaLibrary_t> &libraries) {
  const std::string sm = "sm_" + std::to_string(arch);
  LoadedKernels out;
  for (const plan::CudaKernel *k : *plan.cuda()->kernels()) {
    const plan::CudaCubin *cubin = nullptr;
    if (k->cubins())
      for (const plan::CudaCubin *c : *k->cubins())
        if (c->arch()->str() == sm)
          cubin = c;
    // A copy at 8-byte alignment: FlatBuffers aligns a byte vector to 4 only, and
    // the ELF loader reads 8-byte fields. PTX is NUL-terminated text, as it must be.
    const char *bytes = nullptr;
    size_t size = 0;
    if (cubin) {
      bytes = reinterpret_cast<const char *>(cubin->image()->data());
      size = cubin->image()->size();
      ++out.cubinModules;
    } else if (ptxRunsOn(*k, arch)) {
      bytes = k->ptx()->c_str();
      size = k->ptx()->size() + 1;
      ++out.ptxModules;
      out.ptxArch = k->ptx_arch()->str();
    } else {
      throw Error(planName + ": kernel " + k->name()->str() + " has no code this GPU (" + sm +
                  ") can run: the plan has " + whatThePlanHas(*k) +
                  "; recompile with `mantissa compile --arch " + sm + "`");
    }
    std::vector<uint64_t> image((size + 7) / 8);
    std::memcpy(image.data(), bytes, size);
    cudaLibrary_t lib = nullptr;
    check(cudaLibraryLoadData(&lib, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
          planName + ": cudaLibraryLoadData(" + k->name()->str() + ", " +
              (cubin ? "CUBIN " + sm : "PTX " + k->ptx_arch()->str()) + ")");
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
