//===- Numerics.cpp - the range of a plan's tensors against fp16 and bf16 -===//
#include "runtime/train/Numerics.h"

#include "common/Error.h"
#include "common/Float16.h"
#include "plan/DType.h"
#include "runtime/train/Trainer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace mantissa {

RangeStats rangeStats(const float *values, size_t n, double scale) {
  RangeStats s;
  s.count = int64_t(n);
  for (size_t i = 0; i < n; ++i) {
    float x = float(double(values[i]) * scale);
    if (!std::isfinite(values[i])) {
      ++s.nonFinite;
      continue;
    }
    if (values[i] == 0) {
      ++s.zeros;
      continue;
    }
    s.fp16Underflow += roundToF16(x) == 0;
    s.fp16Overflow += std::isinf(roundToF16(x));
    s.bf16Underflow += roundToBF16(x) == 0;
    s.bf16Overflow += std::isinf(roundToBF16(x));
    int e = x == 0 ? kMinExponent : std::ilogb(x); // x == 0: the scale itself underflowed fp32
    s.exponents[size_t(std::clamp(e, kMinExponent, kMaxExponent) - kMinExponent)]++;
  }
  return s;
}

namespace {

/// The floating-point tensors a step writes.
std::vector<int> stepOutputs(const plan::Step &step) {
  using K = plan::Kernel;
  switch (step.kernel_type()) {
  case K::Elementwise:
    return {step.kernel_as_Elementwise()->outputs()->begin(), step.kernel_as_Elementwise()->outputs()->end()};
  case K::Gemm:
    return {step.kernel_as_Gemm()->c()};
  case K::Conv2d:
    return {step.kernel_as_Conv2d()->out()};
  case K::MaxPool2d:
    return {step.kernel_as_MaxPool2d()->y()};
  case K::MaxPool2dBackward:
    return {step.kernel_as_MaxPool2dBackward()->dx()};
  case K::BatchNorm:
    return {step.kernel_as_BatchNorm()->y()};
  case K::BatchNormBackward: {
    const auto *k = step.kernel_as_BatchNormBackward();
    return {k->dx(), k->dgamma(), k->dbeta()};
  }
  case K::SoftmaxCrossEntropy:
    return {step.kernel_as_SoftmaxCrossEntropy()->loss()};
  case K::SoftmaxCrossEntropyBackward:
    return {step.kernel_as_SoftmaxCrossEntropyBackward()->dlogits()};
  case K::MseLoss:
    return {step.kernel_as_MseLoss()->loss()};
  case K::MseLossBackward:
    return {step.kernel_as_MseLossBackward()->da()};
  case K::Reduce:
    return {step.kernel_as_Reduce()->output()};
  case K::Concat:
    return {step.kernel_as_Concat()->output()};
  case K::Slice:
    return {step.kernel_as_Slice()->output()};
  case K::Transpose:
    return {step.kernel_as_Transpose()->output()};
  case K::Copy:
    return {step.kernel_as_Copy()->output()};
  case K::AllFinite:
    return {step.kernel_as_AllFinite()->output()};
  default:
    return {};
  }
}

/// Whether an elementwise step reads tensor `id`.
bool readsTensor(const plan::Step &step, int id) {
  if (step.kernel_type() != plan::Kernel::Elementwise)
    return false;
  for (const plan::Operand *in : *step.kernel_as_Elementwise()->inputs())
    if (in->tensor() == id)
      return true;
  return false;
}

} // namespace

std::vector<TensorNumerics> planNumerics(Executor &exec, double assumedScale) {
  const LoadedPlan &plan = exec.plan();
  const plan::Function *fn = plan.findFunction("train_step");
  if (!fn || !fn->outputs() || fn->outputs()->size() < 1)
    throw Error(plan.name() + ": the plan has no train_step with a loss output");
  int lossId = fn->outputs()->Get(0);
  const plan::LossScaling *ls = plan->loss_scaling();
  int scaleId = ls && ls->mode() != plan::LossScaleMode::None ? ls->scale() : -1;
  double currentScale = 1;
  if (scaleId >= 0) {
    float v = 0;
    exec.read(scaleId, &v, 1);
    currentScale = v;
  }

  // Regions: forward up to the loss; gradients until the first optimizer update.
  // With loss scaling, the values from the first step that reads the scale (the
  // scaled loss) until the next one (the unscale) carry the scale.
  std::vector<TensorNumerics> out;
  TensorRegion region = TensorRegion::Forward;
  int scaleReads = 0;
  for (const plan::Step *step : *fn->steps()) {
    std::string op = step->op() ? step->op()->str() : "";
    if (op.size() > 7 && op.compare(op.size() - 7, 7, "_update") == 0)
      region = TensorRegion::Update;
    if (scaleId >= 0 && readsTensor(*step, scaleId))
      ++scaleReads;
    bool carriesScale = scaleReads == 1;
    std::vector<int> outputs = stepOutputs(*step);
    for (int id : outputs) {
      const plan::Tensor *t = plan->tensors()->Get(id);
      if (t->dtype() == plan::DType::I32)
        continue;
      TensorNumerics n;
      n.id = id;
      n.step = step->name() ? step->name()->str() : "?";
      n.producer = n.step + " " + op;
      n.dtype = dtypeName(t->dtype());
      n.region = region;
      n.alreadyScaled = region == TensorRegion::Gradient && carriesScale;
      n.scale = n.alreadyScaled ? currentScale
                : region == TensorRegion::Gradient && scaleId < 0 ? assumedScale
                                                                 : 1.0;
      std::vector<float> values(size_t(plan.numElements(id)));
      exec.read(id, values.data(), values.size());
      n.stats = rangeStats(values.data(), values.size(), n.alreadyScaled ? 1.0 : n.scale);
      // A tensor written in place (a bias add into a convolution's output) holds its
      // last writer's values.
      out.erase(std::remove_if(out.begin(), out.end(), [&](const TensorNumerics &o) { return o.id == id; }),
                out.end());
      out.push_back(std::move(n));
    }
    if (region == TensorRegion::Forward && std::count(outputs.begin(), outputs.end(), lossId))
      region = TensorRegion::Gradient;
  }
  return out;
}

std::vector<ParameterGradient> parameterGradients(const LoadedPlan &plan) {
  const plan::Function *fn = plan.findFunction("train_step");
  if (!fn)
    throw Error(plan.name() + ": the plan has no train_step");
  const plan::LossScaling *ls = plan->loss_scaling();
  int scaleId = ls && ls->mode() != plan::LossScaleMode::None ? ls->scale() : -1;
  std::vector<const plan::Step *> steps(fn->steps()->begin(), fn->steps()->end());
  // Per step, how many steps up to it read the scale: the loss scale is on from
  // the first (the scaled seed) to the next (the unscale), as in planNumerics.
  std::vector<int> scaleReads(steps.size(), 0);
  std::vector<std::vector<size_t>> writers(plan->tensors()->size());
  for (size_t i = 0; i < steps.size(); ++i) {
    scaleReads[i] = (i ? scaleReads[i - 1] : 0) + (scaleId >= 0 && readsTensor(*steps[i], scaleId));
    for (int id : stepOutputs(*steps[i]))
      writers[size_t(id)].push_back(i);
  }
  auto writerBefore = [&](int id, size_t before) -> long {
    for (auto it = writers[size_t(id)].rbegin(); it != writers[size_t(id)].rend(); ++it)
      if (*it < before)
        return long(*it);
    return -1;
  };
  // The one Temp floating-point input of elementwise step `i`, other than `except`,
  // with `n` elements; -1 if none or several.
  auto sameSizeInput = [&](size_t i, int except, int64_t n) {
    int found = -1, count = 0;
    for (const plan::Operand *in : *steps[i]->kernel_as_Elementwise()->inputs()) {
      const plan::Tensor *t = plan->tensors()->Get(in->tensor());
      if (in->tensor() != except && in->tensor() != found && t->role() == plan::Role::Temp &&
          t->dtype() != plan::DType::I32 && plan.numElements(in->tensor()) == n) {
        found = in->tensor();
        ++count;
      }
    }
    return count == 1 ? found : -1;
  };

  std::vector<ParameterGradient> out;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i]->kernel_type() != plan::Kernel::Elementwise)
      continue;
    for (int param : *steps[i]->kernel_as_Elementwise()->outputs()) {
      const plan::Tensor *p = plan->tensors()->Get(param);
      if (p->role() != plan::Role::Param)
        continue;
      int64_t n = plan.numElements(param);
      int grad = sameSizeInput(i, param, n);
      if (grad < 0)
        continue;
      // Back through elementwise steps (casts, constant factors, the unscale, which
      // fusion may or may not fold into the update) to the kernel that computed it,
      // so that plans of any precision and loss scaling give the same quantity.
      long w = writerBefore(grad, i);
      while (w >= 0 && steps[size_t(w)]->kernel_type() == plan::Kernel::Elementwise) {
        int earlier = sameSizeInput(size_t(w), grad, n);
        if (earlier < 0)
          break;
        grad = earlier;
        w = writerBefore(grad, size_t(w));
      }
      out.push_back(
          {p->name()->str(), param, grad, w >= 0 && scaleId >= 0 && scaleReads[size_t(w)] == 1});
    }
  }
  return out;
}

namespace {

/// 10 levels of a count against the largest bucket, as one character.
char level(int64_t count, int64_t most) {
  static const char kLevels[] = " .:-=+*#%@";
  if (count == 0)
    return ' ';
  return kLevels[std::clamp<int64_t>(1 + count * 8 / std::max<int64_t>(most, 1), 1, 9)];
}

const char *kNumericsUsage =
    "usage: mantissa inspect --numerics PLAN [--steps N] [--data D] [--loss-scale S] [--load CKPT]\n"
    "  trains up to step N (default 10; counted from step 0, so past a checkpoint's step) on the\n"
    "  CPU backend, from the plan's initial values or a checkpoint (--load), then prints per tensor of train_step the binary-exponent histogram\n"
    "  (2^-40 .. 2^24, one column per 4 exponents) and the share of values that would underflow\n"
    "  (nonzero -> 0) or overflow (-> inf) in fp16 and bf16. Gradients are judged at the plan's\n"
    "  current loss scale, or at S (default 1) for a plan without loss scaling.\n";

} // namespace

int numericsMain(int argc, char **argv) {
  try {
    TrainOptions t;
    t.steps = 10;
    t.quiet = true;
    double assumed = 1;
    for (int i = 0; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--numerics")
        continue;
      if (arg == "--help" || arg == "-h") {
        std::fputs(kNumericsUsage, stdout);
        return 0;
      }
      if (arg.empty() || arg[0] != '-') {
        if (!t.plan.empty())
          throw Error("inspect --numerics takes one plan, got '" + t.plan + "' and '" + arg + "'");
        t.plan = arg;
        continue;
      }
      if (i + 1 >= argc)
        throw Error("option '" + arg + "' needs a value");
      std::string value = argv[++i];
      char *end = nullptr;
      if (arg == "--steps") {
        errno = 0;
        t.steps = std::strtoll(value.c_str(), &end, 10);
        if (value.empty() || *end || t.steps < 0 || errno == ERANGE)
          throw Error("--steps needs a non-negative integer, got '" + value + "'");
      } else if (arg == "--loss-scale") {
        assumed = std::strtod(value.c_str(), &end);
        if (*end || !(assumed > 0))
          throw Error("--loss-scale needs a positive number, got '" + value + "'");
      } else if (arg == "--data") {
        t.data = value;
      } else if (arg == "--load") {
        t.load = value;
      } else if (arg == "--threads") {
        long threads = std::strtol(value.c_str(), &end, 10);
        if (value.empty() || *end || threads < 0 || threads > std::numeric_limits<int>::max())
          throw Error("--threads needs a non-negative integer, got '" + value + "'");
        t.threads = int(threads);
      } else {
        throw Error("unknown inspect --numerics option '" + arg + "'\n" + kNumericsUsage);
      }
    }
    if (t.plan.empty())
      throw Error("inspect --numerics needs a plan\n" + std::string(kNumericsUsage));
    std::vector<TensorNumerics> table;
    t.afterTraining = [&](Executor &exec) { table = planNumerics(exec, assumed); };
    TrainSummary s = train(t);
    // The temporaries hold the last step's values: at least one step must have run.
    if (s.steps <= s.startStep)
      throw Error("no training step ran (the checkpoint is at step " + std::to_string(s.startStep) +
                  "): --steps counts from step 0, so give more steps than the checkpoint has");
    std::printf("numerics of %s after %lld training steps (%s, loss scale %g)\n", t.plan.c_str(),
                (long long)s.steps, s.precision.c_str(), s.lossScale);
    std::printf("exponent histogram columns: 2^-40 .. 2^24 by 4; | marks 2^-24 (fp16 underflow) and "
                "2^16 (fp16 overflow)\n");
    std::printf("%-5s %-34s %-4s %-8s %10s  %-18s %8s %8s %8s %8s\n", "id", "written by", "type",
                "region", "scale", "exponents", "f16 unf", "f16 ovf", "bf16 unf", "bf16 ovf");
    for (const TensorNumerics &n : table) {
      // 16 columns of 4 exponents from -40; fp16 limits drawn between columns.
      std::array<int64_t, 16> cols{};
      for (int e = kMinExponent; e <= kMaxExponent; ++e) {
        int c = e + 40 < 0 ? 0 : std::min((e + 40) / 4, 15);
        cols[size_t(c)] += n.stats.exponents[size_t(e - kMinExponent)];
      }
      int64_t most = *std::max_element(cols.begin(), cols.end());
      std::string hist;
      for (int c = 0; c < 16; ++c) {
        if (c == 4 || c == 14) // 2^-24 and 2^16
          hist += '|';
        hist += level(cols[size_t(c)], most);
      }
      const char *region = n.region == TensorRegion::Forward ? "forward"
                           : n.region == TensorRegion::Gradient ? "gradient"
                                                                : "update";
      std::string producer = n.producer.size() > 34 ? n.producer.substr(0, 31) + "..." : n.producer;
      std::printf("t%-4d %-34s %-4s %-8s %10g  %-18s %7.3f%% %7.3f%% %7.3f%% %7.3f%%\n", n.id,
                  producer.c_str(), n.dtype.c_str(), region, n.scale, hist.c_str(),
                  100 * n.stats.share(n.stats.fp16Underflow), 100 * n.stats.share(n.stats.fp16Overflow),
                  100 * n.stats.share(n.stats.bf16Underflow), 100 * n.stats.share(n.stats.bf16Overflow));
    }
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

} // namespace mantissa
