//===- Nvrtc.cpp - compiling CUDA C++ text with NVRTC ---------------------===//
#include "runtime/cuda/Nvrtc.h"

#include "common/Error.h"

#include <nvrtc.h>

#include <algorithm>
#include <exception>
#include <regex>
#include <sstream>
#include <thread>

namespace mantissa {
namespace cuda {

namespace {

/// The source lines an NVRTC log points at ("name(123): error: ..."), with context.
std::string quoteLines(const CompileUnit &unit, const std::string &log) {
  std::vector<std::string> lines;
  std::istringstream in(unit.source);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  std::string quoted;
  std::regex where("\\((\\d+)\\): (error|catastrophic error)");
  int shown = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), where);
       it != std::sregex_iterator() && shown < 10; ++it, ++shown) {
    size_t line = std::stoul((*it)[1].str());
    if (line >= 1 && line <= lines.size())
      quoted += "\n  " + unit.name + ":" + std::to_string(line) + ": " + lines[line - 1];
  }
  return quoted;
}

/// The target for `arch`: its own CUBIN if NVRTC supports it, else PTX of the newest
/// supported architecture below it.
std::pair<std::string, bool> chooseTarget(int arch) {
  int count = 0;
  if (nvrtcGetNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0)
    return {"sm_" + std::to_string(arch), false};
  std::vector<int> archs(size_t(count), 0);
  nvrtcGetSupportedArchs(archs.data());
  if (std::find(archs.begin(), archs.end(), arch) != archs.end())
    return {"sm_" + std::to_string(arch), false};
  int best = -1;
  for (int a : archs)
    if (a < arch)
      best = std::max(best, a);
  if (best < 0)
    throw Error("the GPU's architecture sm_" + std::to_string(arch) + " is older than any that " +
                nvrtcVersionString() + " compiles for (oldest: sm_" +
                std::to_string(*std::min_element(archs.begin(), archs.end())) + ")");
  return {"compute_" + std::to_string(best), true};
}

} // namespace

std::string nvrtcVersionString() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return "NVRTC " + std::to_string(major) + "." + std::to_string(minor);
}

const std::vector<std::string> &nvrtcOptions() {
  static const std::vector<std::string> options = {"--std=c++17", "--fmad=false",
                                                   "--prec-div=true", "--prec-sqrt=true",
                                                   "--ftz=false"};
  return options;
}

bool nvrtcSupportsArch(int arch) {
  int count = 0;
  if (nvrtcGetNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0)
    return false;
  std::vector<int> archs(size_t(count), 0);
  nvrtcGetSupportedArchs(archs.data());
  return std::find(archs.begin(), archs.end(), arch) != archs.end();
}

CompiledModule compileCuda(const CompileUnit &unit, int arch) {
  return compileCudaFor(unit, chooseTarget(arch).first);
}

CompiledModule compileCudaFor(const CompileUnit &unit, const std::string &target) {
  const bool ptx = target.rfind("compute_", 0) == 0;
  nvrtcProgram prog = nullptr;
  nvrtcResult rc = nvrtcCreateProgram(&prog, unit.source.c_str(), unit.name.c_str(), 0, nullptr,
                                      nullptr);
  if (rc != NVRTC_SUCCESS)
    throw Error("nvrtcCreateProgram(" + unit.name + "): " + nvrtcGetErrorString(rc));
  struct Guard {
    nvrtcProgram *p;
    ~Guard() { nvrtcDestroyProgram(p); }
  } guard{&prog};

  std::string archOption = "--gpu-architecture=" + target;
  std::vector<const char *> options = {archOption.c_str()};
  for (const std::string &o : nvrtcOptions())
    options.push_back(o.c_str());
  rc = nvrtcCompileProgram(prog, int(options.size()), options.data());
  size_t logSize = 0;
  nvrtcGetProgramLogSize(prog, &logSize);
  std::string log(logSize, '\0');
  if (logSize > 1)
    nvrtcGetProgramLog(prog, &log[0]);
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n'))
    log.pop_back();
  if (rc != NVRTC_SUCCESS)
    throw Error(nvrtcVersionString() + " failed to compile " + unit.name + " for " + target +
                ": " + nvrtcGetErrorString(rc) + "\n" + log + quoteLines(unit, log));

  CompiledModule out;
  out.ptx = ptx;
  out.target = target;
  size_t size = 0;
  if (ptx) {
    rc = nvrtcGetPTXSize(prog, &size);
    if (rc == NVRTC_SUCCESS) {
      out.image.resize(size);
      rc = nvrtcGetPTX(prog, out.image.data());
    }
  } else {
    rc = nvrtcGetCUBINSize(prog, &size);
    if (rc == NVRTC_SUCCESS) {
      out.image.resize(size);
      rc = nvrtcGetCUBIN(prog, out.image.data());
    }
  }
  if (rc != NVRTC_SUCCESS || out.image.empty())
    throw Error("NVRTC produced no " + std::string(ptx ? "PTX" : "CUBIN") + " for " + unit.name +
                ": " + nvrtcGetErrorString(rc));
  return out;
}

void parallelFor(size_t n, const std::function<void(size_t)> &job) {
  std::vector<std::exception_ptr> errors(n);
  unsigned workers =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), unsigned(n)));
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      for (size_t i = w; i < n; i += workers) {
        try {
          job(i);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
    });
  for (auto &t : threads)
    t.join();
  for (auto &e : errors)
    if (e)
      std::rethrow_exception(e);
}

std::vector<CompiledModule> compileCudaParallel(const std::vector<CompileUnit> &units, int arch) {
  std::vector<CompiledModule> results(units.size());
  parallelFor(units.size(), [&](size_t i) { results[i] = compileCuda(units[i], arch); });
  return results;
}

} // namespace cuda
} // namespace mantissa
