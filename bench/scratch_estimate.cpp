// Where the CUDA executor's convolution scratch would go for a plan, without a GPU: each
// convolution step's scratch as the executor sizes it (its default kernel choice,
// convNhwcConfigFor / convGemmConfigFor; convNhwcScratch / convGemmSplit with the default
// budgets, MANTISSA_CUDA_NHWC_MB=128 and MANTISSA_CUDA_CONV_WORKSPACE_MB=256), and
// whether it fits in the temp arena's bytes free at that step (LoadedPlan::freeArenaOffset,
// as CudaExecutor::closeScratch places it). A model of the placement, not a measurement:
// MANTISSA_VERBOSE=1 mantissa-run train --backend cuda prints the executor's own on a GPU.
// Build after the project (from the repository root):
//   g++ -std=c++20 -O1 -I. -Ibuild -I/usr/local/cuda/include bench/scratch_estimate.cpp \
//     build/runtime/cuda/libMantissaCudaCodegen.a build/runtime/cpu/libMantissaCpuBackend.a \
//     build/runtime/kernels/libMantissaKernels.a build/runtime/io/libMantissaIO.a \
//     -L/usr/local/cuda/lib64 -lnvrtc -o build/scratch_estimate
//   build/scratch_estimate PLAN [SMS=132]
#include "common/Error.h"
#include "runtime/cpu/PlanLoader.h"
#include "runtime/cuda/ConvKernels.h"
#include "runtime/cuda/FixedLaunch.h"
#include "runtime/cuda/ScratchMap.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

using namespace mantissa;

int main(int argc, char **argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: scratch_estimate PLAN [SMS=132]\n");
    return 2;
  }
  LoadedPlan lp = LoadedPlan::load(argv[1]);
  const int sms = argc > 2 ? std::atoi(argv[2]) : 132;
  const size_t budget = size_t(256) << 20, nhwcBudget = size_t(128) << 20;
  auto mb = [](size_t b) { return double(b) / double(1 << 20); };
  uint32_t fi = 0;
  for (const plan::Function *fn : *lp->functions()) {
    size_t largest = 0, buffer = 0;
    int convs = 0, inArena = 0;
    for (uint32_t s = 0; fn->steps() && s < fn->steps()->size(); ++s) {
      const plan::Step *st = fn->steps()->Get(s);
      if (st->kernel_type() != plan::Kernel::Conv2d)
        continue;
      const plan::Conv2d &k = *st->kernel_as_Conv2d();
      auto cfg = cuda::convNhwcConfigFor(lp.plan(), k);
      if (!cfg)
        cfg = cuda::convGemmConfigFor(lp.plan(), k);
      if (!cfg)
        continue; // fp32: im2col + cuBLAS, sized by the workspace budget
      auto ref = [&](int id) {
        return cuda::TensorRef{nullptr,
                               id < 0 ? cuda::kF32 : int(lp->tensors()->Get(uint32_t(id))->dtype())};
      };
      const cuda::ConvGemmArgs a = cuda::convGemmArgs(k, *cfg, ref);
      // Laid out as CudaExecutor::prepareConvGemm takes it (a workspace only when there is one).
      cuda::ScratchLayout sl;
      if (cfg->nhwc) {
        const cuda::ConvNhwcScratch x = cuda::convNhwcScratch(a, cfg->bn, sms, budget, nhwcBudget);
        sl.take(x.in0Bytes), sl.take(x.in1Bytes);
        if (x.split.workspaceBytes)
          sl.take(x.split.workspaceBytes);
      } else if (size_t ws = cuda::convGemmSplit(a, cfg->bn, sms, budget).workspaceBytes) {
        sl.take(ws);
      }
      const size_t need = sl.size;
      ++convs;
      largest = std::max(largest, need);
      const bool fits = need == 0 || lp.freeArenaOffset(fi, s, need, 256) >= 0;
      inArena += fits;
      if (!fits)
        buffer = std::max(buffer, need);
      std::printf("%s step %u %-30s %-6s scratch %8.1f MB, largest free arena span %8.1f MB: %s\n",
                  fn->name()->c_str(), s, st->name() ? st->name()->c_str() : "",
                  cfg->nhwc ? "nhwc" : "gemm", mb(need), mb(lp.largestFreeArenaSpan(fi, s, 256)),
                  fits ? "arena" : "buffer");
    }
    std::printf("%s: %d convolution steps, %d with their scratch in the arena; the largest "
                "needs %.1f MB; the buffer needs %.1f MB (one buffer for all: %.1f MB)\n",
                fn->name()->c_str(), convs, inArena, mb(largest), mb(buffer), mb(largest));
    ++fi;
  }
  std::printf("arena %.1f MB\n", mb(lp->arena_bytes()));
  return 0;
} catch (const Error &e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
