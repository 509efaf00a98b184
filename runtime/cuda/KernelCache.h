//===- KernelCache.h - the on-disk cache of NVRTC output ------------------===//
//
// `mantissa compile --arch` compiles every kernel module for several targets; most
// modules (the fixed kernels, common elementwise chains) are the same across models
// and precisions, so their CUBIN/PTX is kept on disk, one file per
// (source hash, target, NVRTC version, options):
//
//   $MANTISSA_CACHE_DIR, else $XDG_CACHE_HOME/mantissa/nvrtc, else ~/.cache/mantissa/nvrtc
//   <source hash>-<target>-<hash of NVRTC version and options>.bin
//
// Entries are written atomically (runtime/io/AtomicFile), so concurrent compiles and a
// crash mid-write never leave a torn entry; an entry that does not look like what its
// target produces (ELF for CUBIN, text for PTX) is ignored and rewritten. Failing to
// write is not an error: the cache only saves time. MANTISSA_CACHE_DIR=off disables it.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cuda/Nvrtc.h"

#include <atomic>
#include <optional>
#include <string>
#include <vector>

namespace mantissa {
namespace cuda {

class KernelCache {
public:
  /// The directory described above; empty when the cache is off or no home is known.
  static std::string defaultDir();

  explicit KernelCache(std::string dir) : dir_(std::move(dir)) {}
  const std::string &dir() const { return dir_; }

  /// `unit` compiled for `target` ("sm_90", "compute_80"): from the cache, or by NVRTC
  /// (then stored). `sourceHash` names unit.source. Thread-safe.
  CompiledModule compile(const CompileUnit &unit, const std::string &sourceHash,
                         const std::string &target);

  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }

private:
  std::string entryPath(const std::string &sourceHash, const std::string &target) const;
  std::string dir_;
  std::atomic<size_t> hits_{0}, misses_{0};
  std::atomic<bool> warned_{false};
};

} // namespace cuda
} // namespace mantissa
