//===- HostKernels.h - run the executor's CUDA C++ kernels on the CPU --------===//
//
// A test harness, so that CI (no GPU) checks what the CUDA kernels compute and not
// only that NVRTC accepts them. The kernels' source (the prelude, then kernels) is
// compiled by the host C++ compiler with MT_HOST_EMULATION defined, after a shim that
// declares the CUDA built-ins the kernels use; a launch then runs the grid block by
// block, each block's blockDim.x threads as fibers on the calling thread (one runs
// until it waits at a barrier or ends, then the next): __syncthreads is a barrier of
// the block, the warp shuffles exchange values between the 32 threads of a warp, and
// __shared__ variables are function statics (blocks run one at a time). Threads that
// wait at a barrier the others never reach are reported as a deadlock (abort). The fp16 and
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
  /// With `cacheDir`, the compiled library is kept there under a hash of what it was
  /// compiled from, and found again instead of compiled.
  HostKernels(const std::string &source, const std::vector<std::string> &kernels,
              const std::string &cacheDir = "");
  ~HostKernels();
  HostKernels(const HostKernels &) = delete;
  HostKernels &operator=(const HostKernels &) = delete;

  /// One kernel's entry points, looked up once.
  struct Entry {
    void (*launch)(void **) = nullptr;
    /// cudaFuncGetParamInfo's answer: 0 and parameter i's offset and size, or non-zero
    /// past the last parameter.
    int (*paramInfo)(size_t i, size_t *offset, size_t *size) = nullptr;
  };
  /// Throws mantissa::Error when the library has no kernel `name`.
  Entry entry(const std::string &name) const;

  /// Runs kernel `name` over grid (gx, gy, gz) x `block` threads with cudaLaunchKernel's
  /// parameter convention (params[i] points to the i-th argument).
  void launch(const std::string &name, unsigned gx, unsigned gy, unsigned gz, unsigned block,
              void **params);
  void launch(const Entry &kernel, unsigned gx, unsigned gy, unsigned gz, unsigned block,
              void **params);

private:
  /// Loads the compiled library: "" or why it could not.
  std::string open(const std::string &lib);
  void *handle_ = nullptr;
  std::string dir_;
  using Run = void (*)(void (*)(void **), void **, unsigned, unsigned, unsigned, unsigned);
  Run run_ = nullptr; // the library's mt_host_run (the scheduler of its blocks)
};

} // namespace test
} // namespace mantissa
