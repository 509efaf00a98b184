//===- CudaPlugin.cpp - loading the CUDA executor plugin at run time -------===//
//
// The CUDA backend lives in libmantissa_cuda.so so that the runtime binary starts
// (and runs on the CPU) where no CUDA library exists. It is looked for next to the
// running executable first (how the runtime is carried to a GPU machine: one folder),
// then on the default library search path; MANTISSA_CUDA_PLUGIN names another file. The plugin
// stays loaded for the life of the process: executors it made may outlive any one caller.
//===----------------------------------------------------------------------===//
#include "runtime/backend/Executor.h"

#include "common/Error.h"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace mantissa {

namespace {

std::string executableDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return "";
  std::string path(buf, size_t(n));
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

struct Plugin {
  CreateExecutorFn create = nullptr;
  std::string error; // why it could not be loaded
};

const Plugin &loadPlugin() {
  static Plugin plugin;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    void *handle = nullptr;
    if (const char *chosen = std::getenv("MANTISSA_CUDA_PLUGIN"); chosen && *chosen) {
      // Named by the user (or a test: the host emulation in test/fakegpu): that one only.
      handle = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char *e = dlerror();
        plugin.error = std::string("cannot load MANTISSA_CUDA_PLUGIN=") + chosen + ": " +
                       (e ? e : "unknown error");
        return;
      }
    }
    std::string dir = executableDir();
    if (!handle && !dir.empty()) {
      std::string path = dir + "/" + kCudaPluginName;
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char *e = dlerror();
        if (access(path.c_str(), F_OK) == 0) {
          // It is there but does not load (usually a missing CUDA library): say so.
          plugin.error = std::string("cannot load ") + path + ": " + (e ? e : "unknown error");
          return;
        }
        tried = path;
      }
    }
    if (!handle) {
      handle = dlopen(kCudaPluginName, RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char *e = dlerror();
        plugin.error = std::string("the CUDA backend plugin ") + kCudaPluginName +
                       " was not found (looked in " + (tried.empty() ? "" : tried + " and ") +
                       "the library search path: " + (e ? e : "unknown error") +
                       "); build with the CUDA toolkit and keep the plugin next to the binary";
        return;
      }
    }
    dlerror();
    void *sym = dlsym(handle, kCudaPluginSymbol);
    if (!sym) {
      const char *e = dlerror();
      plugin.error = std::string(kCudaPluginName) + " has no entry point " + kCudaPluginSymbol +
                     ": " + (e ? e : "unknown error");
      return;
    }
    plugin.create = reinterpret_cast<CreateExecutorFn>(sym);
  });
  return plugin;
}

} // namespace

std::unique_ptr<Executor> makeCudaExecutor(const LoadedPlan &plan) {
  const Plugin &plugin = loadPlugin();
  if (!plugin.create)
    throw Error("CUDA backend unavailable: " + plugin.error);
  char error[4096] = {0};
  Executor *exec = plugin.create(&plan, error, sizeof error);
  if (!exec)
    throw Error(std::string("CUDA backend unavailable: ") + (error[0] ? error : "unknown error"));
  return std::unique_ptr<Executor>(exec);
}

} // namespace mantissa
