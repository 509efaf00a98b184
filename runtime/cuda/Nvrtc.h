//===- Nvrtc.h - compiling CUDA C++ text with NVRTC -----------------------===//
//
// NVRTC needs no GPU and no driver: this part is usable (and tested) on a machine
// without either. Options: fp32 math as the CPU oracle does it (no FMA contraction,
// IEEE division and square root, no flush-to-zero); CUBIN for the device's own
// architecture, or PTX of the newest architecture NVRTC knows when the device is
// newer than this NVRTC (the driver then JIT-compiles it).
//===----------------------------------------------------------------------===//
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mantissa {
namespace cuda {

struct CompiledModule {
  std::vector<char> image; // CUBIN, or NUL-terminated PTX
  bool ptx = false;
  std::string target;      // "sm_90" or "compute_90"
};

struct CompileUnit {
  std::string name;   // shown in messages, e.g. "mantissa_fixed.cu"
  std::string source;
};

/// Compiles for compute capability `arch` (major*10 + minor): its CUBIN, or PTX of the
/// newest older architecture when this NVRTC does not know `arch`. Throws Error with
/// the NVRTC log and the source lines it names.
CompiledModule compileCuda(const CompileUnit &unit, int arch);

/// Compiles for an explicit target: "sm_90" gives CUBIN, "compute_80" gives PTX.
CompiledModule compileCudaFor(const CompileUnit &unit, const std::string &target);

/// The NVRTC options besides --gpu-architecture (plans and the cache record them).
const std::vector<std::string> &nvrtcOptions();

/// Whether this NVRTC compiles CUBIN for sm_<arch>.
bool nvrtcSupportsArch(int arch);

/// Runs job(i) for i in [0, n) on all cores (NVRTC is thread-safe); the first error
/// (by index) is rethrown after all have run.
void parallelFor(size_t n, const std::function<void(size_t)> &job);

/// Compiles several units in parallel threads (NVRTC is thread-safe); results in order.
std::vector<CompiledModule> compileCudaParallel(const std::vector<CompileUnit> &units, int arch);

/// "NVRTC 13.0".
std::string nvrtcVersionString();

} // namespace cuda
} // namespace mantissa
