//===- AotKernels.cpp - a plan's CUDA kernels, compiled ahead of time -----===//
#include "runtime/cuda/AotKernels.h"
#include "runtime/cuda/ConvKernels.h"

#include "common/Error.h"
#include "common/Hash.h"
#include "common/ScalarOp.h"
#include "runtime/cuda/CudaKernelSource.h"
#include "runtime/cuda/ElementwiseCodegen.h"
#include "runtime/cuda/KernelCache.h"
#include "runtime/cuda/Nvrtc.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>

namespace mantissa {
namespace cuda {

namespace {

/// The scalar operations an elementwise program computes, in program order (loads
/// and constants left out): what the kernel fuses.
std::vector<std::string> fusedOps(const plan::Elementwise &k) {
  std::vector<std::string> ops;
  if (k.program())
    for (const plan::Instr *in : *k.program()) {
      ScalarOp op = ScalarOp(in->op());
      if (int(in->op()) < kNumScalarOps && scalarOpArity(op) > 0)
        ops.push_back(scalarOpName(op));
    }
  return ops;
}

} // namespace

std::vector<ModuleSource> planModules(const plan::Plan &plan) {
  std::vector<ModuleSource> modules;
  ModuleSource fixed{kFixedModuleName, {}, {}, plan::DType::F32, fixedKernelSource()};
  int count = 0;
  const char *const *names = fixedKernelNames(&count);
  fixed.entries.assign(names, names + count);
  fixed.fuses = {"im2col", "pooling", "batch norm", "losses", "reductions", "data movement"};
  modules.push_back(std::move(fixed));
  std::map<std::string, size_t> byName;
  if (plan.functions())
    for (const plan::Function *fn : *plan.functions())
      if (fn->steps())
        for (const plan::Step *step : *fn->steps()) {
          if (step->kernel_type() == plan::Kernel::Conv2d) {
            // fp16/bf16 convolutions: one module per implicit-GEMM configuration.
            for (const ConvGemmConfig &c : convGemmConfigsFor(plan, *step->kernel_as_Conv2d())) {
              const std::string name = c.kernelName();
              if (byName.emplace(name, modules.size()).second)
                modules.push_back({name,
                                   {name},
                                   {step->op() ? step->op()->str() : "graph.conv2d"},
                                   c.dtype,
                                   convGemmSource({c})});
            }
            continue;
          }
          if (step->kernel_type() != plan::Kernel::Elementwise)
            continue;
          ElementwiseKernel ek = generateElementwise(plan, *step->kernel_as_Elementwise());
          auto [it, inserted] = byName.emplace(ek.name, modules.size());
          if (!inserted) {
            if (modules[it->second].source != ek.source)
              throw Error("internal error: two elementwise kernels hash to " + ek.name);
            continue;
          }
          std::vector<std::string> fuses = fusedOps(*step->kernel_as_Elementwise());
          if (fuses.empty()) // loads stored to outputs of other dtypes
            fuses.push_back("Copy");
          std::vector<std::string> entries = {ek.name};
          if (!ek.multiName.empty())
            entries.push_back(ek.multiName);
          modules.push_back({ek.name, std::move(entries), std::move(fuses), step->precision(),
                             ek.source});
        }
  return modules;
}

std::string moduleSourceHash(const std::string &prelude, const std::string &source) {
  return hex16(fnv1a64(prelude + "\n" + source));
}

std::vector<int> parseArchList(const std::string &list) {
  std::vector<int> archs;
  std::vector<std::string> items(1);
  for (char c : list) {
    if (c == ',')
      items.emplace_back();
    else
      items.back().push_back(c);
  }
  for (const std::string &item : items) {
    int arch = 0;
    size_t used = 0;
    bool ok = item.rfind("sm_", 0) == 0 && item.size() > 3;
    if (ok) {
      try {
        arch = std::stoi(item.substr(3), &used);
      } catch (...) {
        ok = false;
      }
      ok = ok && used == item.size() - 3;
    }
    if (!ok)
      throw Error("--arch: '" + item + "' is not an architecture like sm_90 (in '" + list + "')");
    if (!nvrtcSupportsArch(arch))
      throw Error("--arch: " + nvrtcVersionString() + " cannot compile for " + item);
    if (std::find(archs.begin(), archs.end(), arch) == archs.end())
      archs.push_back(arch);
  }
  if (archs.empty())
    throw Error("--arch needs at least one architecture, e.g. sm_90");
  return archs;
}

std::unique_ptr<plan::CudaCodeT> compileModules(const std::vector<ModuleSource> &modules,
                                                const std::vector<int> &archs, KernelCache *cache,
                                                AotStats *stats) {
  auto start = std::chrono::steady_clock::now();
  const std::string prelude = cudaPrelude();

  // Targets: a CUBIN per architecture, then PTX of the oldest.
  std::vector<std::string> targets;
  for (int a : archs)
    targets.push_back("sm_" + std::to_string(a));
  targets.push_back("compute_" + std::to_string(*std::min_element(archs.begin(), archs.end())));

  std::vector<std::string> hashes(modules.size());
  for (size_t m = 0; m < modules.size(); ++m)
    hashes[m] = moduleSourceHash(prelude, modules[m].source);
  std::vector<CompiledModule> images(modules.size() * targets.size());
  const size_t hitsBefore = cache ? cache->hits() : 0;
  parallelFor(images.size(), [&](size_t i) {
    const size_t m = i / targets.size();
    CompileUnit unit{modules[m].name + ".cu", prelude + "\n" + modules[m].source};
    const std::string &target = targets[i % targets.size()];
    images[i] = cache ? cache->compile(unit, hashes[m], target) : compileCudaFor(unit, target);
  });

  auto code = std::make_unique<plan::CudaCodeT>();
  code->nvrtc_version = nvrtcVersionString();
  code->options = nvrtcOptions();
  for (int a : archs)
    code->archs.push_back("sm_" + std::to_string(a));
  code->prelude = prelude;
  for (size_t m = 0; m < modules.size(); ++m) {
    auto k = std::make_unique<plan::CudaKernelT>();
    k->name = modules[m].name;
    k->entries = modules[m].entries;
    k->fuses = modules[m].fuses;
    k->precision = modules[m].precision;
    k->source = modules[m].source;
    k->source_hash = hashes[m];
    for (size_t t = 0; t < targets.size(); ++t) {
      CompiledModule &img = images[m * targets.size() + t];
      if (img.ptx) {
        k->ptx.assign(img.image.data(), strnlen(img.image.data(), img.image.size()));
        k->ptx_arch = img.target;
      } else {
        auto cubin = std::make_unique<plan::CudaCubinT>();
        cubin->arch = img.target;
        cubin->image.assign(img.image.begin(), img.image.end());
        k->cubins.push_back(std::move(cubin));
      }
    }
    code->kernels.push_back(std::move(k));
  }
  if (stats) {
    stats->modules = modules.size();
    stats->compiles = images.size();
    stats->cacheHits = cache ? cache->hits() - hitsBefore : 0;
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return code;
}

} // namespace cuda
} // namespace mantissa
