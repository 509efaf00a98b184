//===- KernelImage.cpp - which compiled image of a plan's kernel a GPU loads -===//
#include "runtime/cuda/KernelImage.h"

#include "common/Error.h"

#include <cstdlib>

namespace mantissa {
namespace cuda {

namespace {

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

KernelImage chooseKernelImage(const plan::CudaKernel &k, int arch, const std::string &planName) {
  const std::string sm = "sm_" + std::to_string(arch);
  if (k.cubins())
    for (const plan::CudaCubin *c : *k.cubins())
      if (c->arch()->str() == sm)
        return {reinterpret_cast<const char *>(c->image()->data()), c->image()->size(), false, sm};
  if (ptxRunsOn(k, arch))
    return {k.ptx()->c_str(), k.ptx()->size() + 1, true, k.ptx_arch()->str()};
  throw Error(planName + ": kernel " + k.name()->str() + " has no code this GPU (" + sm +
              ") can run: the plan has " + whatThePlanHas(k) +
              "; recompile with `mantissa compile --arch " + sm + "`");
}

} // namespace cuda
} // namespace mantissa
