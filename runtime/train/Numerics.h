//===- Numerics.h - the range of a plan's tensors against fp16 and bf16 ---===//
//
// `mantissa inspect --numerics PLAN --steps N`: trains N steps on the CPU backend
// (whose tensors each keep the last step's values), then, per floating-point
// tensor of train_step, the histogram of binary exponents and the share of values
// that would round to zero (underflow) or to infinity (overflow) in fp16 and in
// bf16, as common/Float16.h rounds them. Gradients are judged at the loss scale
// they are computed at: as stored when the plan scales the loss (they already
// carry the scale), else multiplied by --loss-scale S (default 1: none). This is
// the "gradient range" picture of mixed-precision training.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {

/// Binary exponents floor(log2|x|) from kMinExponent to kMaxExponent (clamped).
inline constexpr int kMinExponent = -150, kMaxExponent = 128;

struct RangeStats {
  int64_t count = 0, zeros = 0, nonFinite = 0;
  int64_t fp16Underflow = 0, fp16Overflow = 0; // nonzero -> 0, finite -> inf
  int64_t bf16Underflow = 0, bf16Overflow = 0;
  std::array<int64_t, kMaxExponent - kMinExponent + 1> exponents{};
  /// Shares of `count`.
  double share(int64_t n) const { return count ? double(n) / double(count) : 0; }
};

/// Statistics of `values` multiplied by `scale`.
RangeStats rangeStats(const float *values, size_t n, double scale);

enum class TensorRegion { Forward, Gradient, Update };

struct TensorNumerics {
  int id = 0;
  std::string step;     // the name of the (last) step that writes it
  std::string producer; // that step's name and op
  std::string dtype;
  TensorRegion region = TensorRegion::Forward;
  double scale = 1;     // the loss scale the values carry, or the one assumed
  bool alreadyScaled = false;
  RangeStats stats;
};

/// Every floating-point tensor train_step writes (listed at its last writer), with
/// its range statistics, from the values the executor holds now. `assumedScale` multiplies gradients of a plan
/// without loss scaling.
std::vector<TensorNumerics> planNumerics(Executor &exec, double assumedScale);

/// The gradient the optimizer applies to one parameter, as a tensor of train_step.
struct ParameterGradient {
  std::string param; // the parameter's name ("fc2.weight")
  int paramId = -1, gradId = -1;
  bool carriesScale = false; // written while the loss scale is applied (divide by it)
};

/// Every parameter's gradient in train_step, as the kernel that computed it wrote
/// it: the one tensor of the parameter's size that the step updating it (the
/// elementwise step writing the parameter) reads besides the parameter, followed
/// back through elementwise steps with one such input (casts, constant factors,
/// the unscale). Plans of any precision, loss scaling and fusion so give the same
/// quantity, up to the loss scale (`carriesScale`, as planNumerics judges it). A
/// parameter whose update reads several such tensors (or none) is left out.
std::vector<ParameterGradient> parameterGradients(const LoadedPlan &plan);

/// The `inspect --numerics` command (argv after `inspect`). Returns the exit code.
int numericsMain(int argc, char **argv);

} // namespace mantissa
