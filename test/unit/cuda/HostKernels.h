//===- HostKernels.h - run the executor's CUDA C++ kernels on the CPU --------===//
//
// A test harness, so that CI (no GPU) checks what the CUDA kernels compute and not
// only that NVRTC accepts them. The kernels' source (the prelude, then kernels) is
// compiled by the host C++ compiler with MT_HOST_EMULATION defined, after a shim that
// declares the CUDA built-ins the kernels use; a launch then runs the grid block by
// block, each block as blockDim.x host threads: __syncthreads is a barrier of the
// block, the warp shuffles exchange values between the 32 threads of a warp, and
// __shared__ variables are function statics (blocks run one at a time). The fp16 and
// bf16 conversions are the CPU backend's (common/Float16.h), which round as the PTX
// `cvt` instructions do.
//
// The convolutions' inline PTX has host forms: mma.sync m16n8k16 and ldmatrix.x4 are
// warp exchanges (the layouts in runtime/cuda/ConvKernels.cpp), cp.async a plain copy.
// Not emulated: other inline PTX, warp-synchronous code that relies on lockstep
// execution without a shuffle, and timing. Float functions (expf, tanhf, ...) are the host's libm,
// as in the CPU backend, not CUDA's.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {
namespace test {

class HostKernels {
public:
  /// Compiles `source` (the CUDA prelude followed by kernels) and exposes the kernels
  /// named in `kernels`. Throws mantissa::Error with the compiler's output on failure.
  HostKernels(const std::string &source, const std::vector<std::string> &kernels);
  ~HostKernels();
  HostKernels(const HostKernels &) = delete;
  HostKernels &operator=(const HostKernels &) = delete;

  /// Runs kernel `name` over grid (gx, gy, gz) x `block` threads with cudaLaunchKernel's
  /// parameter convention (params[i] points to the i-th argument).
  void launch(const std::string &name, unsigned gx, unsigned gy, unsigned gz, unsigned block,
              void **params);

private:
  void *handle_ = nullptr;
  std::string dir_;
};

} // namespace test
} // namespace mantissa
