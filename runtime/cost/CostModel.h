//===- CostModel.h - modelled time and energy of a plan on a device -------===//
//
// A roofline model: each kernel of a plan does some floating-point work (FLOPs)
// and moves some bytes (every operand read once, every result written once, at
// its dtype's size). On a device with a peak rate for its op class and a memory
// bandwidth it takes
//
//   time = max(flops / peak, bytes / bandwidth) / efficiency + launch overhead
//
// where the efficiency of the kernel's cost class (KernelWork::costClass: its kind,
// and for GEMMs and convolutions the direction and the rate it runs at) is 1 unless
// the device description says otherwise: `inspect --cost DEVICE --fit MEASURED.json`
// fits each class's efficiency to measured kernel times (fitEfficiency), so that the
// modelled time of each class adds up to the measured one.
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

#include <map>
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
  /// Achieved fraction of the roofline, per cost class (absent: 1).
  std::map<std::string, double> efficiency;
};

/// Parses a device description (runtime/cost/devices/h100.json is the reference);
/// throws Error naming `where` and the missing or bad field.
DeviceSpec parseDeviceSpec(const std::string &text, const std::string &where);
/// A built-in description ("h100", "h200", any case) or a JSON file's path.
DeviceSpec loadDeviceSpec(const std::string &nameOrPath);
/// The description as JSON (parseDeviceSpec reads it back), with `note` as its
/// "description".
std::string formatDeviceSpec(const DeviceSpec &device, const std::string &note);

/// The device's power while a kernel of `c` runs (DeviceSpec::tensorPower, ...).
const double &opClassPower(const DeviceSpec &device, OpClass c);
double &opClassPower(DeviceSpec &device, OpClass c);
/// The efficiency of `costClass` on `device` (1 where it has none).
double efficiencyOf(const DeviceSpec &device, const std::string &costClass);

/// The work of one kernel.
struct KernelWork {
  double flops = 0, bytes = 0;
  OpClass opClass = OpClass::Memory;
  /// What its efficiency is fitted per: the plan kernel ("Elementwise", "BatchNorm",
  /// ...), for GEMMs and convolutions with the rate ("Gemm.tensor", "Gemm.fp32") and
  /// the convolution's direction ("Conv2d.Forward.tensor", "Conv2d.BackwardWeight.fp32").
  std::string costClass;
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

/// One kernel measured: its class, its roofline time at efficiency 1 without the
/// launch overhead, and its measured time.
struct FitSample {
  std::string costClass;
  double rooflineSeconds = 0, measuredSeconds = 0;
};

/// Per class, the efficiency e that makes the modelled time of its kernels add up to
/// their measured time: sum(roofline) / e + n * launch = sum(measured). A class whose
/// measured time is not above its launch overheads is left out (the model's overhead
/// already explains it). Clamped to [1e-3, 10].
std::map<std::string, double> fitEfficiency(const std::vector<FitSample> &samples,
                                            double launchOverhead);

} // namespace mantissa

namespace mantissa {

/// `inspect --cost DEVICE PLAN [--json OUT]`: the modelled cost of every step of
/// train_step, one line each ("step N 'name' (Kernel)", as the CUDA executor's
/// MANTISSA_CUDA_PROFILE report names them), and the total.
/// `inspect --cost DEVICE --fit MEASURED.json -o OUT.json`: fits the device's
/// efficiencies (fitEfficiency) to the measured kernel times of one or more plans,
/// {"plans": [{"plan": PATH, "steps": [{"index": I, "seconds": S}, ...]}, ...]} (a step may
/// also carry "watts", the device's power while it runs: then each op class's power is
/// fitted too, as the time-weighted mean of its kernels' watts), prints
/// them with the model's error before and after, and writes the fitted description.
/// Returns the exit code.
int costMain(int argc, char **argv);

} // namespace mantissa
