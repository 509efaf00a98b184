//===- NvmlMeter.h - the GPU's energy counter through NVML (dlopen) -------===//
//
// NVML is loaded at run time with dlopen("libnvidia-ml.so.1") so that mantissa-run
// starts (and says "not measured") on a machine without the NVIDIA driver
// (DESIGN.md: the runtime may depend only on glibc, libstdc++ and the toolkit). The
// few NVML entry points used are declared in NvmlMeter.cpp: the build machine has
// no nvml.h.
//
// The counter is nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded):
// measured on an H100 to move every ~100 ms (never under ~70 ms), in steps of
// 1 mJ (DESIGN.md, "Energy: what was measured").
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/energy/EnergyMeter.h"

#include <memory>
#include <string>

namespace mantissa {

/// Instantaneous readings that come with a calibration or a report (NaN where
/// NVML does not give them).
struct GpuReadings {
  double watts = 0.0;      // nvmlDeviceGetPowerUsage (mW -> W)
  double celsius = 0.0;    // nvmlDeviceGetTemperature (GPU die)
  double smClockMHz = 0.0; // nvmlDeviceGetClockInfo (SM clock)
};

class NvmlMeter : public EnergyMeter {
public:
  ~NvmlMeter() override;
  double readJoules() override;
  double updatePeriodSeconds() const override { return 0.1; } // DESIGN.md: ~100 ms
  double resolutionJoules() const override { return 1e-3; }   // 1 mJ
  std::string name() const override;
  double celsius() override; // nvmlDeviceGetTemperature (GPU die), whole degrees

  GpuReadings readings();
  const std::string &deviceName() const { return deviceName_; }
  const std::string &driverVersion() const { return driverVersion_; }
  int deviceIndex() const { return index_; }

private:
  friend std::unique_ptr<NvmlMeter> openGpuMeter(int, std::string &, const std::string &);
  struct Api;
  NvmlMeter() = default;
  std::unique_ptr<Api> api_;
  void *device_ = nullptr; // nvmlDevice_t
  int index_ = 0;
  std::string deviceName_, driverVersion_;
};

/// NVML's meter for GPU `deviceIndex`, or nullptr with `reason` set (no library,
/// no device, energy counter unsupported). `library` is for tests (a fake NVML).
std::unique_ptr<NvmlMeter> openGpuMeter(int deviceIndex, std::string &reason,
                                        const std::string &library = "libnvidia-ml.so.1");

} // namespace mantissa
