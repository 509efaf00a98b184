//===- NvmlMeter.cpp ------------------------------------------------------===//
#include "runtime/energy/NvmlMeter.h"

#include "common/Error.h"

#include <cmath>
#include <dlfcn.h>

namespace mantissa {
namespace {

// The subset of nvml.h used here (NVML's ABI: these signatures and values are
// stable across driver versions; the _v2 entry points exist since driver 325).
using nvmlReturn_t = int;
using nvmlDevice_t = void *;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr int NVML_TEMPERATURE_GPU = 0;
constexpr int NVML_CLOCK_SM = 1;

} // namespace

struct NvmlMeter::Api {
  void *lib = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  const char *(*errorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*handleByIndex)(unsigned, nvmlDevice_t *) = nullptr;
  nvmlReturn_t (*totalEnergy)(nvmlDevice_t, unsigned long long *) = nullptr;
  nvmlReturn_t (*powerUsage)(nvmlDevice_t, unsigned *) = nullptr;
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned *) = nullptr;
  nvmlReturn_t (*clockInfo)(nvmlDevice_t, int, unsigned *) = nullptr;
  nvmlReturn_t (*driverVersion)(char *, unsigned) = nullptr;
  nvmlReturn_t (*deviceName)(nvmlDevice_t, char *, unsigned) = nullptr;
  bool initialised = false;

  std::string error(const char *call, nvmlReturn_t r) const {
    return std::string(call) + " failed: " +
           (errorString ? errorString(r) : ("NVML error " + std::to_string(r)).c_str());
  }
  ~Api() {
    if (initialised && shutdown)
      shutdown();
    if (lib)
      dlclose(lib);
  }
};

NvmlMeter::~NvmlMeter() = default;

std::unique_ptr<NvmlMeter> openGpuMeter(int deviceIndex, std::string &reason,
                                        const std::string &library) {
  auto api = std::make_unique<NvmlMeter::Api>();
  api->lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!api->lib) {
    const char *e = dlerror();
    reason = "NVML is not available (" + std::string(e ? e : library) + ")";
    return nullptr;
  }
  auto sym = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api->lib, name));
    if (!fn)
      reason = library + " has no " + name;
    return fn != nullptr;
  };
  if (!sym(api->init, "nvmlInit_v2") || !sym(api->shutdown, "nvmlShutdown") ||
      !sym(api->errorString, "nvmlErrorString") ||
      !sym(api->handleByIndex, "nvmlDeviceGetHandleByIndex_v2") ||
      !sym(api->totalEnergy, "nvmlDeviceGetTotalEnergyConsumption") ||
      !sym(api->powerUsage, "nvmlDeviceGetPowerUsage") ||
      !sym(api->temperature, "nvmlDeviceGetTemperature") ||
      !sym(api->clockInfo, "nvmlDeviceGetClockInfo") ||
      !sym(api->driverVersion, "nvmlSystemGetDriverVersion") ||
      !sym(api->deviceName, "nvmlDeviceGetName"))
    return nullptr;
  if (nvmlReturn_t r = api->init(); r != NVML_SUCCESS) {
    reason = api->error("nvmlInit_v2", r);
    return nullptr;
  }
  api->initialised = true;
  std::unique_ptr<NvmlMeter> m(new NvmlMeter());
  if (nvmlReturn_t r = api->handleByIndex(unsigned(deviceIndex), &m->device_); r != NVML_SUCCESS) {
    reason = api->error(
        ("nvmlDeviceGetHandleByIndex_v2(" + std::to_string(deviceIndex) + ")").c_str(), r);
    return nullptr;
  }
  unsigned long long mj = 0;
  if (nvmlReturn_t r = api->totalEnergy(m->device_, &mj); r != NVML_SUCCESS) {
    // Pre-Volta GPUs have no energy counter: integrating power readings would be a
    // different (and much coarser) meter, so it is "not measured" here.
    reason = api->error("nvmlDeviceGetTotalEnergyConsumption", r);
    return nullptr;
  }
  char buf[96] = {};
  if (api->deviceName(m->device_, buf, sizeof buf) == NVML_SUCCESS)
    m->deviceName_ = buf;
  char drv[96] = {};
  if (api->driverVersion(drv, sizeof drv) == NVML_SUCCESS)
    m->driverVersion_ = drv;
  m->index_ = deviceIndex;
  m->api_ = std::move(api);
  return m;
}

double NvmlMeter::readJoules() {
  unsigned long long mj = 0;
  if (nvmlReturn_t r = api_->totalEnergy(device_, &mj); r != NVML_SUCCESS)
    throw Error(api_->error("nvmlDeviceGetTotalEnergyConsumption", r));
  return double(mj) * 1e-3;
}

GpuReadings NvmlMeter::readings() {
  GpuReadings g;
  unsigned v = 0;
  g.watts = api_->powerUsage(device_, &v) == NVML_SUCCESS ? v * 1e-3 : NAN;
  g.celsius = celsius();
  g.smClockMHz = api_->clockInfo(device_, NVML_CLOCK_SM, &v) == NVML_SUCCESS ? v : NAN;
  return g;
}

double NvmlMeter::celsius() {
  unsigned v = 0;
  return api_->temperature(device_, NVML_TEMPERATURE_GPU, &v) == NVML_SUCCESS ? v : NAN;
}

std::string NvmlMeter::name() const {
  return "NVML (GPU " + std::to_string(index_) + (deviceName_.empty() ? "" : ": " + deviceName_) +
         (driverVersion_.empty() ? "" : ", driver " + driverVersion_) + ")";
}

} // namespace mantissa
