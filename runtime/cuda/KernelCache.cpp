//===- KernelCache.cpp - the on-disk cache of NVRTC output ----------------===//
#include "runtime/cuda/KernelCache.h"

#include "common/Error.h"
#include "common/Hash.h"
#include "runtime/io/AtomicFile.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace mantissa {
namespace cuda {

namespace {

/// What a valid entry for `ptx` looks like: PTX text (NUL-terminated, as NVRTC gives
/// it) or an ELF image.
bool plausible(const std::vector<char> &image, bool ptx) {
  if (image.size() < 16)
    return false;
  if (ptx)
    return image.back() == '\0' && std::memchr(image.data(), '\0', image.size() - 1) == nullptr;
  return std::memcmp(image.data(), "\x7f" "ELF", 4) == 0;
}

} // namespace

std::string KernelCache::defaultDir() {
  if (const char *dir = std::getenv("MANTISSA_CACHE_DIR"))
    return std::string(dir) == "off" ? "" : dir;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/mantissa/nvrtc";
  if (const char *home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/mantissa/nvrtc";
  return "";
}

std::string KernelCache::entryPath(const std::string &sourceHash, const std::string &target) const {
  std::string compiler = nvrtcVersionString();
  for (const std::string &o : nvrtcOptions())
    compiler += " " + o;
  return dir_ + "/" + sourceHash + "-" + target + "-" + hex16(fnv1a64(compiler)) + ".bin";
}

CompiledModule KernelCache::compile(const CompileUnit &unit, const std::string &sourceHash,
                                    const std::string &target) {
  const bool ptx = target.rfind("compute_", 0) == 0;
  const std::string path = dir_.empty() ? "" : entryPath(sourceHash, target);
  if (!path.empty()) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.good() || in.eof()) {
      if (plausible(image, ptx)) {
        ++hits_;
        return CompiledModule{std::move(image), ptx, target};
      }
    }
  }
  ++misses_;
  CompiledModule out = compileCudaFor(unit, target);
  if (!path.empty()) {
    try {
      std::error_code ec;
      std::filesystem::create_directories(dir_, ec);
      writeFileAtomic(path, out.image.data(), out.image.size());
    } catch (const Error &e) {
      if (!warned_.exchange(true))
        std::fprintf(stderr, "warning: NVRTC cache %s not written: %s\n", dir_.c_str(), e.what());
    }
  }
  return out;
}

} // namespace cuda
} // namespace mantissa
