//===- CostModel.h - modelled time and energy of a plan on a device -------===//
//
// A roofline model: each kernel of a plan does some floating-point work (FLOPs)
// and moves some bytes (every operand read once, every result written once, at
// its dtype's size). On a device with a peak rate for its op class and a memory
// bandwidth it takes
//
//   time = max(flops / peak, bytes / bandwidth) + launch overhead
//
// and its energy is modelled as time x the class's power (DeviceSpec::power).
// Op classes: GEMMs and convolutions with fp16/bf16 operands run on tensor cores,
// fp32 ones at the fp32 (or, with --tf32, the TF32) rate; everything else is
// counted at the fp32 rate and is in practice memory-bound. Device descriptions
// are JSON files (runtime/cost/devices/*.json, with their sources); H100 and H200
// are built in. It is a model: `mantissa-run measure` measures the real thing.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cpu/PlanLoader.h"

#include <string>
#include <vector>

namespace mantissa {

enum class OpClass { Tensor, Fp32, Memory };
const char *opClassName(OpClass c);

struct DeviceSpec {
  std::string name;
  double fp32Flops = 0, tf32Flops = 0, tensorFlops = 0; // FLOP/s
  double memoryBandwidth = 0;                           // bytes/s
  double memoryBytes = 0;
  double launchOverhead = 0;                            // seconds per kernel
  double tensorPower = 0, fp32Power = 0, memoryPower = 0; // watts
};

/// Parses a device description (runtime/cost/devices/h100.json is the reference);
/// throws Error naming `where` and the missing or bad field.
DeviceSpec parseDeviceSpec(const std::string &text, const std::string &where);
/// A built-in description ("h100", "h200", any case) or a JSON file's path.
DeviceSpec loadDeviceSpec(const std::string &nameOrPath);

/// The work of one kernel.
struct KernelWork {
  double flops = 0, bytes = 0;
  OpClass opClass = OpClass::Memory;
};

/// A (batched) GEMM C[m,n] = A[m,k] B[k,n]: 2mnk FLOPs per matrix; reads A and B
/// (and C when beta != 0), writes C. Sizes are bytes per element.
KernelWork gemmWork(double m, double n, double k, double batch, int bytesA, int bytesB,
                    int bytesC, bool accumulate, OpClass opClass);
/// An elementwise kernel over `elements` points with `instructions` arithmetic
/// instructions per point, reading `bytesIn` and writing `bytesOut` bytes in all.
KernelWork elementwiseWork(double elements, double instructions, double bytesIn, double bytesOut);

struct KernelTime {
  double seconds = 0, joules = 0;
};
/// The roofline time of `work` on `device`, plus the launch overhead, and its energy.
KernelTime roofline(const KernelWork &work, const DeviceSpec &device);

struct KernelCost {
  std::string step, op, kernel;
  KernelWork work;
  KernelTime time;
};

struct PlanCost {
  double seconds = 0, joules = 0;
  std::vector<KernelCost> kernels;
};

/// The modelled cost of one call of `function` ("train_step") of a plan.
PlanCost costPlan(const LoadedPlan &plan, const DeviceSpec &device,
                  const std::string &function = "train_step");

} // namespace mantissa

namespace mantissa {

/// `inspect --cost DEVICE PLAN [--json OUT]`: the modelled cost of every step of
/// train_step, one line each ("step N 'name' (Kernel)", as the CUDA executor's
/// MANTISSA_CUDA_PROFILE report names them), and the total. Returns the exit code.
int costMain(int argc, char **argv);

} // namespace mantissa
