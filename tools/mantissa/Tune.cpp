//===- Tune.cpp - mantissa tune: the precision auto-tuner -----------------===//
//
// Searches which op groups (compiler/PrecisionPolicy.h) run in fp32, bf16 or fp16,
// with the loss scaling that goes with them, for the cheapest placement whose
// held-out metric stays within --max-metric-gap of fp32's:
//
//  1. Baseline: fp32 trained K steps on the CPU backend (exact fp16/bf16 emulation),
//     and the uniform fp16 (autocast default) and bf16 policies as references.
//  2. Sensitivity: each group demoted alone, to fp16 and to bf16, trained from the
//     same initialisation and data order; its divergence is the mean relative
//     distance of its loss trajectory from fp32's; its gradient error the relative
//     L2 distance of its parameters' gradients from fp32's (at the first step, and
//     the mean over sampled steps), and of those of the groups its input depends on;
//     its saving the modelled cost (runtime/cost) it removes. A demotion passes
//     when the held-out gap is within --max-metric-gap and, in fp16, at most
//     --max-grad-underflow of the group's fp32 gradients underflow at the starting
//     loss scale (and, if asked for, its first-step gradient error is within
//     --max-grad-error).
//  3. Greedy with bisection: the demotions that passed alone, ordered by saving
//     over sensitivity (divergence + mean gradient error), are verified together;
//     a failing set is split in halves and each half verified on top of what was
//     kept (as Polygraphy's debug precision bisects for inference), down to single
//     demotions.
//  4. Loss scaling off, if fp16 remains and the budget allows (and --loss-scaling
//     none did not already turn it off for every candidate).
// Every training run counts against --budget and is reported; the chosen policy
// is the cheapest candidate within the bound, on the Pareto front of modelled
// cost against metric gap, and a final, longer validation run compares it with
// fp32 on held-out data.
//===----------------------------------------------------------------------===//
#include "tools/mantissa/Tune.h"

#include "common/Error.h"
#include "compiler/PrecisionPolicy.h"
#include "mantissa/Graph/GraphOps.h"
#include "runtime/cost/CostModel.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"
#include "runtime/train/Numerics.h"
#include "runtime/train/Trainer.h"
#include "tools/mantissa/Compile.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

using namespace mlir;

namespace mantissa {
namespace {

/// The scale dynamic loss scaling starts at (insert-loss-scaling's default, GradScaler's).
constexpr double kInitialLossScale = 65536.0;

const char *kTuneUsage =
    "usage: mantissa tune MODEL.mlir -o POLICY.json [options]\n"
    "       mantissa tune MODEL.mlir --list-groups   print the op groups (the search space)\n"
    "  --objective time|energy      what to minimise (modelled per training step; default time)\n"
    "  --max-metric-gap G           allowed held-out metric loss against fp32 (default 0.01):\n"
    "                               classification: accuracy points (0.01 = 1%); regression:\n"
    "                               relative MSE increase (0.01 = 1%)\n"
    "  --budget N                   training runs the search may use (default 40)\n"
    "  --max-grad-underflow U       an fp16 demotion fails when more than this share of the\n"
    "                               group's fp32 parameter gradients would underflow fp16 at\n"
    "                               the candidate's starting loss scale (default 0.1)\n"
    "  --max-grad-error E           also fail a demoted group when the relative error of its\n"
    "                               parameter gradients against fp32's, at the first step\n"
    "                               with finite gradients, exceeds E (default: off; rounding\n"
    "                               through batch norm's backward alone reaches 0.4 in bf16)\n"
    "  --loss-scaling dynamic|none  loss scaling of the candidates with fp16 (default dynamic,\n"
    "                               then the kept set is tried without; none: for training\n"
    "                               that runs without a loss scaler)\n"
    "  --device h100|h200|FILE.json device description of the cost model (default h100)\n"
    "  --cost-batch N               cost the plans at batch N (default: the training batch);\n"
    "                               train small on the CPU, price the size that runs on the GPU\n"
    "  --cost-model FULL.mlir       cost the plans of this model instead (the same op groups at\n"
    "                               another size, e.g. unet w32 at 384x384 for a w4 CPU proxy)\n"
    "  --data digits|nowcast|X.npy,Y.npy   training data (default: by task)\n"
    "  --steps K                    steps per candidate (default 100)\n"
    "  --final-steps M              steps of the final validation runs (default 2K)\n"
    "  --plot FRONT.svg             write the Pareto front as an SVG plot\n"
    "  --emit-candidates DIR        keep every candidate's policy and plan in DIR with a\n"
    "                               manifest.json (for mantissa-run measure)\n"
    "  --select RESULTS.json        finish a search from measured costs (mantissa-run measure\n"
    "                               --json) and DIR/manifest.json; no training\n"
    "  --optimizer, --lr, --momentum, --weight-decay, --batch, --seed   as for compile\n"
    "  --threads N --train-samples N --held-out-samples N            as for train\n";

struct TuneOptions {
  CompileOptions compile;
  std::string output, objective = "time", device = "h100", data, plot, emitDir, select, costModel;
  std::string lossScaling = "dynamic";
  double maxGap = 0.01, maxGradError = INFINITY, maxGradUnderflow = 0.1;
  bool listGroups = false;
  int64_t budget = 40, steps = 100, finalSteps = 0, threads = 0, costBatch = 0;
  int64_t trainSamples = 1024, heldOutSamples = 256;
};

TuneOptions parseTuneOptions(int argc, char **argv) {
  TuneOptions o;
  o.compile.optimizer = "sgd";
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.empty() || arg[0] != '-') {
      if (!o.compile.model.empty())
        throw Error("tune takes one model, got '" + o.compile.model + "' and '" + arg + "'");
      o.compile.model = arg;
      continue;
    }
    if (arg == "--list-groups") {
      o.listGroups = true;
      continue;
    }
    if (i + 1 >= argc)
      throw Error("option '" + arg + "' needs a value");
    std::string value = argv[++i];
    auto number = [&](double lo) {
      double v;
      if (!parseDouble(value, v) || !(v >= lo) || !std::isfinite(v)) // "inf" is no bound
      {
        char bound[32];
        std::snprintf(bound, sizeof bound, "%g", lo);
        throw Error("option '" + arg + "' needs a finite number >= " + bound + ", got '" + value + "'");
      }
      return v;
    };
    auto integer = [&](int64_t lo) {
      int64_t v;
      if (!parseInt(value, v) || v < lo)
        throw Error("option '" + arg + "' needs an integer >= " + std::to_string(lo) + ", got '" +
                    value + "'");
      return v;
    };
    if (arg == "-o" || arg == "--output")
      o.output = value;
    else if (arg == "--objective") {
      if (value != "time" && value != "energy")
        throw Error("--objective must be time or energy, got '" + value + "'");
      o.objective = value;
    } else if (arg == "--max-metric-gap")
      o.maxGap = number(0);
    else if (arg == "--budget")
      o.budget = integer(1);
    else if (arg == "--max-grad-error")
      o.maxGradError = number(0);
    else if (arg == "--max-grad-underflow") {
      o.maxGradUnderflow = number(0);
      if (o.maxGradUnderflow > 1) // a share: 1 already lets every gradient underflow
        throw Error(
            "option '--max-grad-underflow' is a share of the gradients, a number in [0, 1]; "
            "got '" +
            value + "'");
    } else if (arg == "--loss-scaling") {
      if (value != "dynamic" && value != "none")
        throw Error("--loss-scaling must be dynamic or none, got '" + value + "'");
      o.lossScaling = value;
    } else if (arg == "--device")
      o.device = value;
    else if (arg == "--cost-batch")
      o.costBatch = integer(1);
    else if (arg == "--cost-model")
      o.costModel = value;
    else if (arg == "--data")
      o.data = value;
    else if (arg == "--steps")
      o.steps = integer(1);
    else if (arg == "--final-steps")
      o.finalSteps = integer(1);
    else if (arg == "--plot")
      o.plot = value;
    else if (arg == "--emit-candidates")
      o.emitDir = value;
    else if (arg == "--select")
      o.select = value;
    else if (arg == "--optimizer")
      o.compile.optimizer = value;
    else if (arg == "--lr")
      o.compile.lr = number(0);
    else if (arg == "--momentum")
      o.compile.momentum = number(0);
    else if (arg == "--weight-decay")
      o.compile.weightDecay = number(0);
    else if (arg == "--batch")
      o.compile.batch = integer(1);
    else if (arg == "--seed")
      o.compile.seed = uint64_t(integer(0));
    else if (arg == "--threads")
      o.threads = integer(0);
    else if (arg == "--train-samples")
      o.trainSamples = integer(1);
    else if (arg == "--held-out-samples")
      o.heldOutSamples = integer(1);
    else
      throw Error("unknown tune option '" + arg + "' (mantissa tune --help)");
  }
  if (o.output.empty() && !o.listGroups)
    throw Error("tune needs -o POLICY.json");
  if (o.select.empty() && o.compile.model.empty())
    throw Error("tune needs a model (MODEL.mlir), or --select RESULTS.json");
  // The policy would replace an input after the whole search.
  for (const std::string &input : {o.compile.model, o.select})
    if (!o.output.empty() && !input.empty() && llvm::sys::fs::equivalent(input, o.output))
      throw Error("-o " + o.output + " is the input " + input + "; name the policy differently");
  // Files written after the whole search: a folder that is not there is said now, not after it.
  if (!o.output.empty())
    checkOutputPath("-o", o.output);
  if (!o.plot.empty())
    checkOutputPath("--plot", o.plot);
  if (o.finalSteps == 0)
    o.finalSteps = 2 * o.steps;
  return o;
}

/// The relative L2 (normwise) error ||g - g32|| / ||g32|| of a set of parameter
/// gradients, taken together, against the fp32 run's from the same initial state
/// and batches. (Per parameter it would be noise-dominated: a convolution's bias
/// before a batch norm has a gradient of zero up to fp32 rounding.)
struct GradientError {
  double first = NAN;     // at the first compared step whose gradients are finite
  int64_t firstStep = -1; // that step (0 unless the loss scaler skipped steps)
  double mean = NAN;      // over the compared steps with finite gradients
  int64_t steps = 0, nonFinite = 0;
  double sum = 0;
};

/// One trained (or, with --select, measured) policy.
struct Candidate {
  std::string label;
  PolicyFile policy;
  std::string policyPath, planPath; // planPath: the plan trained on the CPU
  std::string costPlanPath;         // the plan priced (and measured): at --cost-batch, of
                                    // --cost-model, with the convolution bias fold
  double seconds = 0, joules = 0; // per training step: modelled, or measured with --select
  bool measured = false;
  double metric = NAN, gap = INFINITY, divergence = INFINITY;
  std::map<std::string, std::vector<float>> outputs; // anchor outputs after step 1
  std::map<std::string, GradientError> gradErrors;   // of each op group's parameters
  /// Of the parameters of the groups each group's input depends on: the error the
  /// group adds to the gradient flowing out of its input, as those parameters see it.
  std::map<std::string, GradientError> inputGradErrors;
  int64_t skippedSteps = 0;
  std::string failure; // why training failed (non-finite loss, ...)
  std::string gradFailure; // the demoted group whose gradients fail a bound (below)
  std::string gradReason;  // which bound, with the figures
  bool passes = false;
};

/// A set of demotions: group name -> fp16 | bf16.
using Demotions = std::map<std::string, std::string>;

std::string describe(const Demotions &d) {
  std::string s;
  for (const auto &[group, precision] : d)
    s += (s.empty() ? "" : " ") + group + ":" + (precision == "fp16" ? "h" : "b");
  return s.empty() ? "fp32" : s;
}

class Tuner {
public:
  Tuner(const TuneOptions &o, ModuleOp module, ModuleOp costModule, std::vector<std::string> groups,
        const std::string &workDir)
      : o_(o), module_(module), costModule_(costModule ? costModule : module),
        groups_(std::move(groups)), workDir_(workDir),
        device_(loadDeviceSpec(o.device)) {
    if (!o.select.empty())
      device_.name = "the measuring device";
  }

  int run();
  /// The parameters (graph.param names) each op group's members use, and those of
  /// the groups each group's input depends on.
  void setGroupParams(std::map<std::string, std::vector<std::string>> groupParams,
                      std::map<std::string, std::vector<std::string>> upstreamParams) {
    groupParams_ = std::move(groupParams);
    upstreamParams_ = std::move(upstreamParams);
  }
  /// --select: the manifest's candidates with measured costs; no training.
  int select(const std::string &resultsPath);

private:
  bool canTrain() const { return trained_ < o_.budget; }
  double objective(const Candidate &c) const { return o_.objective == "time" ? c.seconds : c.joules; }

  PolicyFile policyOf(const Demotions &d, std::optional<std::string> lossScaling = {}) const {
    PolicyFile p;
    p.groups = d;
    p.lossScaling = lossScaling ? *lossScaling : p.usesFp16() ? o_.lossScaling : "none";
    return p;
  }

  /// Compiles `policy` for `module` to a plan and returns the plan's path. A plan to
  /// train (`toTrain`) keeps each convolution's bias add as a step of its own: the
  /// sensitivity analysis reads a group's output with its bias (anchorOutputs), which
  /// the fold into batch norm would leave unstored. The fold changes no value (e2e.fusion
  /// compares the two bit for bit); priced plans keep it, as `mantissa compile` does.
  std::string compile(ModuleOp module, const PolicyFile &policy, const std::string &stem,
                      int64_t batch, bool toTrain) {
    std::string policyPath = workDir_ + "/" + stem + ".json", planPath = workDir_ + "/" + stem + ".plan";
    std::ofstream(policyPath) << formatPolicyFile(policy);
    CompileOptions c = o_.compile;
    if (batch)
      c.batch = batch;
    c.precision = policyPath;
    c.output = planPath;
    // Candidates train on the CPU: no NVRTC here. An emitted candidate measured on a
    // GPU has its kernels compiled there at startup (or recompile it with --arch).
    c.arch = "none";
    c.foldConvBias = !toTrain;
    OwningOpRef<ModuleOp> clone = module.clone();
    if (failed(runCompilePipeline(*clone, c)))
      throw Error("compiling candidate policy " + policyPath + " failed (see above)");
    return planPath;
  }

  TrainSummary train(const std::string &planPath, int64_t steps,
                     std::function<void(Executor &)> afterTraining = {},
                     std::function<void(int64_t, Executor &)> afterStep = {}) {
    TrainOptions t;
    t.afterTraining = std::move(afterTraining);
    t.afterStep = std::move(afterStep);
    t.plan = planPath;
    t.data = o_.data;
    t.steps = steps;
    t.seed = o_.compile.seed; // the same data order for every candidate
    t.threads = int(o_.threads);
    t.trainSamples = o_.trainSamples;
    t.heldOutSamples = o_.heldOutSamples;
    t.quiet = true;
    t.recordLosses = true;
    return mantissa::train(t);
  }

  double metricOf(const TrainSummary &s) const {
    return s.eval.accuracy >= 0 ? s.eval.accuracy : s.eval.mse;
  }
  /// How much worse than fp32 a metric is (positive: worse).
  double gapOf(double metric) const {
    if (classification_)
      return baselineMetric_ - metric;
    return (metric - baselineMetric_) / baselineMetric_;
  }

  /// Mean |L - L0| over the steps, relative to fp32's mean loss; non-finite (skipped) steps count as diverged.
  double divergence(const std::vector<double> &losses) const {
    if (baselineLosses_.empty() || losses.size() != baselineLosses_.size())
      return INFINITY;
    double diff = 0, scale = 0;
    for (size_t i = 0; i < losses.size(); ++i) {
      if (!std::isfinite(losses[i]))
        return INFINITY;
      diff += std::fabs(losses[i] - baselineLosses_[i]);
      scale += std::fabs(baselineLosses_[i]);
    }
    return scale > 0 ? diff / scale : 0;
  }

  /// Compiles, costs and trains one policy; counts it against the budget. A
  /// policy trained before is not trained again (nor counted).
  const Candidate &evaluate(const PolicyFile &policy, const std::string &label) {
    std::string key = formatPolicyFile(policy);
    for (const Candidate &seen : candidates_)
      if (formatPolicyFile(seen.policy) == key)
        return seen;
    Candidate c;
    c.label = label;
    c.policy = policy;
    std::string stem = "candidate-" + std::to_string(candidates_.size());
    c.planPath = compile(module_, policy, stem, 0, true);
    c.policyPath = workDir_ + "/" + stem + ".json";
    c.costPlanPath = compile(costModule_, policy, stem + "-cost", o_.costBatch, false);
    PlanCost cost = costPlan(LoadedPlan::load(c.costPlanPath), device_);
    c.seconds = cost.seconds;
    c.joules = cost.joules;
    ++trained_;
    try {
      // The fp32 baseline's activations tell which anchors fp16 cannot carry.
      std::function<void(Executor &)> hook;
      if (candidates_.empty())
        hook = [&](Executor &exec) {
          // By anchor, of its output with the bias (which may be added in place, so
          // that the tensor is listed under the bias add's step).
          std::vector<std::pair<std::string, int>> anchors = anchorOutputs(exec.plan());
          for (const TensorNumerics &n : planNumerics(exec, 1.0))
            if (n.region == TensorRegion::Forward)
              for (const auto &[name, id] : anchors)
                if (n.id == id)
                  fp32Range_[name] = n.stats;
        };
      // After the first step (same initialisation, same batch), each group anchor's
      // output against fp32's: the error a demotion adds before training amplifies it.
      // After each sampled step, the parameter gradients against fp32's.
      GradientReader grads(*this, c, candidates_.empty());
      auto afterStep = [&](int64_t step, Executor &exec) {
        grads.afterStep(step, exec);
        if (step != 0)
          return;
        for (const auto &[name, id] : anchorOutputs(exec.plan())) {
          std::vector<float> &v = candidates_.empty() ? fp32Outputs_[name] : c.outputs[name];
          v.resize(size_t(exec.plan().numElements(id)));
          exec.read(id, v.data(), v.size());
        }
      };
      TrainSummary s = train(c.planPath, o_.steps, hook, afterStep);
      for (auto *errors : {&c.gradErrors, &c.inputGradErrors})
        for (auto &[group, e] : *errors)
          e.mean = e.steps ? e.sum / double(e.steps) : NAN;
      c.metric = metricOf(s);
      c.skippedSteps = s.skippedSteps;
      if (candidates_.empty()) { // the fp32 baseline
        classification_ = s.eval.accuracy >= 0;
        baselineMetric_ = c.metric;
        baselineLosses_ = s.losses;
      }
      c.gap = gapOf(c.metric);
      c.divergence = divergence(s.losses);
      if (!std::isfinite(c.metric))
        c.failure = "non-finite held-out metric";
    } catch (const Error &e) {
      c.failure = e.what();
    }
    // A demoted group fails, even when the short run's metric hides it, when its
    // gradients leave fp16's range: more than --max-grad-underflow of its fp32
    // parameter gradients (first step) round to zero in fp16 at the candidate's
    // starting loss scale, so that the layer stops learning. Optionally also when its
    // first-step gradients are far from fp32's (same parameters, same batch): rounding
    // alone gives a few percent in GEMMs but up to 0.4 in bf16 through batch norm's
    // backward, which cancels (a unet proxy), so that bound is off unless asked for.
    for (const std::string &group : demotedGroups(c.policy)) {
      auto prec = c.policy.groups.find(group);
      const std::string &precision =
          prec != c.policy.groups.end() ? prec->second : c.policy.defaultPrecision;
      const double scale = c.policy.lossScaling == "none" ? 1.0 : kInitialLossScale;
      const double unf = precision == "fp16" ? gradUnderflowShare(group, scale) : NAN;
      if (std::isfinite(unf) && unf > o_.maxGradUnderflow) {
        c.gradFailure = group;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%.1f%% of %s's gradients underflow fp16 at scale %g > %.1f%%",
                      100 * unf, group.c_str(), scale, 100 * o_.maxGradUnderflow);
        c.gradReason = buf;
        break;
      }
      auto it = c.gradErrors.find(group);
      if (it != c.gradErrors.end() && it->second.first > o_.maxGradError) {
        c.gradFailure = group;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s's gradient error %.3g > %.3g", group.c_str(),
                      it->second.first, o_.maxGradError);
        c.gradReason = buf;
        break;
      }
    }
    c.passes = c.failure.empty() && c.gap <= o_.maxGap && c.gradFailure.empty();
    const std::string gradNote = c.gradFailure.empty() ? "" : "  " + c.gradReason;
    std::fprintf(
        stderr, "tune: [%lld/%lld] %-40s %s %.4f  gap %+.4f  %s %.4g%s\n", (long long)trained_,
        (long long)o_.budget, label.c_str(), classification_ ? "accuracy" : "mse", c.metric, c.gap,
        o_.objective == "time" ? "ms/step" : "mJ/step", objective(c) * 1e3, gradNote.c_str());
    candidates_.push_back(std::move(c));
    return candidates_.back();
  }

  /// The op groups a tuner policy computes below fp32 (it writes groups and a
  /// default only; an anchor takes its group's precision, else the default).
  std::vector<std::string> demotedGroups(const PolicyFile &policy) const {
    std::vector<std::string> out;
    for (const std::string &group : groups_) {
      auto it = policy.groups.find(group);
      if ((it != policy.groups.end() ? it->second : policy.defaultPrecision) != "fp32")
        out.push_back(group);
    }
    return out;
  }

  /// The share of `group`'s fp32 parameter gradients after the first step (as their
  /// kernels write them) that fp16 rounds to zero at loss scale `scale`; NaN unknown.
  double gradUnderflowShare(const std::string &group, double scale) const {
    auto first = fp32Grads_.find(0);
    auto params = groupParams_.find(group);
    if (first == fp32Grads_.end() || params == groupParams_.end())
      return NAN;
    int64_t lost = 0, count = 0;
    for (const std::string &param : params->second)
      if (auto v = first->second.find(param); v != first->second.end()) {
        RangeStats r = rangeStats(v->second.data(), v->second.size(), scale);
        lost += r.fp16Underflow;
        count += r.count;
      }
    return count ? double(lost) / double(count) : NAN;
  }

  /// Whether the gradients of `step` are compared with fp32's. Every step would
  /// keep K copies of the fp32 gradients; the first four (the first step the loss
  /// scaler lets through) and about 16 more spread over the run are enough for a
  /// mean, within 1 GiB of fp32 gradients.
  bool gradientStep(int64_t step) const {
    return step < gradFirstSteps_ || step % gradStride_ == 0;
  }

  /// Reads the parameter gradients after each compared step: the fp32 baseline's
  /// are kept, a candidate's are compared with them per op group and over all
  /// parameters. Gradients computed under loss scaling are divided by the scale
  /// that step ran at (the scale after the previous step; the initial scale first).
  class GradientReader {
  public:
    GradientReader(Tuner &tuner, Candidate &c, bool baseline)
        : t_(tuner), c_(c), baseline_(baseline) {}

    void afterStep(int64_t step, Executor &exec) {
      const LoadedPlan &plan = exec.plan();
      if (!started_) {
        started_ = true;
        grads_ = parameterGradients(plan);
        const plan::LossScaling *ls = plan->loss_scaling();
        if (ls && ls->mode() != plan::LossScaleMode::None && ls->scale() >= 0) {
          scaleId_ = ls->scale();
          scale_ = ls->init_scale();
        }
        if (baseline_) {
          int64_t elements = 0;
          for (const ParameterGradient &g : grads_)
            elements += plan.numElements(g.gradId);
          int64_t fit =
              std::clamp<int64_t>((int64_t(1) << 30) / std::max<int64_t>(4 * elements, 1), 1, 20);
          t_.gradFirstSteps_ = std::min<int64_t>(4, fit);
          t_.gradStride_ = fit > 4 ? std::max<int64_t>(1, (t_.o_.steps + fit - 5) / (fit - 4))
                                   : std::numeric_limits<int64_t>::max();
        }
      }
      double scale = scale_;
      if (scaleId_ >= 0) {
        float v = 0;
        exec.read(scaleId_, &v, 1);
        scale_ = v;
      }
      if (!t_.gradientStep(step))
        return;
      std::map<std::string, std::vector<float>> values;
      for (const ParameterGradient &g : grads_) {
        std::vector<float> &v = values[g.param];
        v.resize(size_t(plan.numElements(g.gradId)));
        exec.read(g.gradId, v.data(), v.size());
        if (g.carriesScale)
          for (float &x : v)
            x = float(double(x) / scale);
      }
      if (baseline_) {
        t_.fp32Grads_[step] = std::move(values);
        return;
      }
      auto ref = t_.fp32Grads_.find(step);
      if (ref == t_.fp32Grads_.end())
        return;
      auto compare = [&](std::map<std::string, GradientError> &into, const std::string &key,
                         const std::vector<std::string> &params) {
        double diff = 0, norm = 0;
        bool finite = true, any = false;
        for (const std::string &param : params) {
          auto v = values.find(param);
          auto r = ref->second.find(param);
          if (v == values.end() || r == ref->second.end() || r->second.size() != v->second.size())
            continue;
          any = true;
          for (size_t i = 0; i < v->second.size(); ++i) {
            finite = finite && std::isfinite(v->second[i]);
            double d = double(v->second[i]) - r->second[i];
            diff += d * d;
            norm += double(r->second[i]) * r->second[i];
          }
        }
        if (!any)
          return;
        GradientError &e = into[key];
        if (!finite) {
          ++e.nonFinite;
          return;
        }
        if (!(norm > 0))
          return; // zero gradients in fp32
        double error = std::sqrt(diff / norm);
        if (e.firstStep < 0) {
          e.first = error;
          e.firstStep = step;
        }
        e.sum += error;
        ++e.steps;
      };
      for (const auto &[group, params] : t_.groupParams_)
        compare(c_.gradErrors, group, params);
      for (const auto &[group, params] : t_.upstreamParams_)
        compare(c_.inputGradErrors, group, params);
    }

  private:
    Tuner &t_;
    Candidate &c_;
    bool baseline_, started_ = false;
    std::vector<ParameterGradient> grads_;
    int scaleId_ = -1;
    double scale_ = 1;
  };

  /// Verifies the demotions `s` on top of the kept set `base`; bisects on failure.
  Demotions accept(const std::vector<std::pair<std::string, std::string>> &s, Demotions base) {
    if (s.empty())
      return base;
    if (!canTrain()) {
      for (const auto &[group, precision] : s)
        unverified_.push_back(group + ":" + precision);
      return base;
    }
    Demotions trial = base;
    for (const auto &[group, precision] : s)
      trial[group] = precision;
    const Candidate &c = evaluate(policyOf(trial), describe(trial));
    if (c.passes)
      return trial;
    if (s.size() == 1)
      return base;
    size_t half = s.size() / 2;
    base = accept({s.begin(), s.begin() + long(half)}, base);
    return accept({s.begin() + long(half), s.end()}, base);
  }

  std::vector<size_t> paretoFront() const;
  /// The cheapest candidate within the bound (the fp32 baseline, first, always is).
  size_t cheapestWithinBound() const {
    size_t chosen = 0;
    for (size_t i = 0; i < candidates_.size(); ++i)
      if (candidates_[i].passes && objective(candidates_[i]) < objective(candidates_[chosen]))
        chosen = i;
    return chosen;
  }
  void printTable(const std::vector<size_t> &front, size_t chosen) const;
  void printSensitivity() const;
  void writePlot(const std::vector<size_t> &front, size_t chosen) const;
  void writeManifest() const;
  void report(size_t chosen);

  const TuneOptions &o_;
  ModuleOp module_;
  ModuleOp costModule_; // the model priced (--cost-model), else module_
  std::vector<std::string> groups_;
  std::string workDir_;
  DeviceSpec device_;
  std::vector<Candidate> candidates_;
  int64_t trained_ = 0;
  bool classification_ = true;
  double baselineMetric_ = 0;
  std::vector<double> baselineLosses_;
  std::vector<std::string> unverified_;
  /// One single-group demotion of the sensitivity analysis.
  struct SensitivityRow {
    std::string group, precision;
    double overflow = 0, underflow = 0; // fp16 shares of the fp32 anchor outputs
    double gradUnderflow = NAN; // of the group's fp32 parameter gradients after step 1, at the
                                // loss scale fp16 candidates start with
    int64_t candidate = -1;     // its run in candidates_, -1: not trained
    std::string verdict;
  };
  std::vector<SensitivityRow> sensitivity_;
  std::map<std::string, RangeStats> fp32Range_; // anchor outputs of the fp32 baseline, by group
  std::map<std::string, std::vector<float>> fp32Outputs_; // anchor outputs after fp32's step 1
  std::map<std::string, std::vector<std::string>> groupParams_; // op group -> its parameters
  /// Op group -> the parameters of the groups its input depends on.
  std::map<std::string, std::vector<std::string>> upstreamParams_;
  std::map<int64_t, std::map<std::string, std::vector<float>>> fp32Grads_; // by step, by parameter
  int64_t gradFirstSteps_ = 4, gradStride_ = 1; // gradientStep(); set by the fp32 run

  /// The output tensor of each group anchor's forward step, with its bias added if it
  /// has one (steps carry the op's graph.name).
  std::vector<std::pair<std::string, int>> anchorOutputs(const LoadedPlan &plan) const {
    std::vector<std::pair<std::string, int>> out;
    const plan::Function *fn = plan.findFunction("train_step");
    std::vector<const plan::Step *> steps(fn->steps()->begin(), fn->steps()->end());
    for (size_t i = 0; i < steps.size(); ++i) {
      std::string name = steps[i]->name() ? steps[i]->name()->str() : "";
      if (std::find(groups_.begin(), groups_.end(), name) == groups_.end())
        continue;
      int id = -1;
      if (steps[i]->kernel_type() == plan::Kernel::Gemm)
        id = steps[i]->kernel_as_Gemm()->c();
      else if (steps[i]->kernel_type() == plan::Kernel::Conv2d)
        id = steps[i]->kernel_as_Conv2d()->out();
      if (id < 0)
        continue;
      // The output with its bias: the bias add (`NAME.bias_add`, or a fused step
      // that starts with it, `NAME+...`) writes it in place in some plans and to a
      // new tensor (its first output) in others, where fusion takes a cast along.
      for (size_t j = i + 1; j < steps.size(); ++j) {
        std::string next = steps[j]->name() ? steps[j]->name()->str() : "";
        bool biasAdd = next == name + ".bias_add" || next.rfind(name + ".bias_add+", 0) == 0 ||
                       next.rfind(name + "+", 0) == 0;
        if (!biasAdd || steps[j]->kernel_type() != plan::Kernel::Elementwise)
          continue;
        const plan::Elementwise *ew = steps[j]->kernel_as_Elementwise();
        bool reads = std::any_of(ew->inputs()->begin(), ew->inputs()->end(),
                                 [&](const plan::Operand *in) { return in->tensor() == id; });
        int first = ew->outputs()->size() ? ew->outputs()->Get(0) : -1;
        if (reads && first >= 0 && plan.numElements(first) == plan.numElements(id))
          id = first;
        break;
      }
      out.push_back({name, id});
    }
    return out;
  }

  /// Relative L2 distance of a candidate's anchor output from fp32's after step 1.
  double outputError(const Candidate &c, const std::string &group) const {
    auto a = c.outputs.find(group), b = fp32Outputs_.find(group);
    if (a == c.outputs.end() || b == fp32Outputs_.end() || a->second.size() != b->second.size())
      return NAN;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a->second.size(); ++i) {
      diff += (double(a->second[i]) - b->second[i]) * (double(a->second[i]) - b->second[i]);
      norm += double(b->second[i]) * b->second[i];
    }
    return norm > 0 ? std::sqrt(diff / norm) : NAN;
  }
  int64_t metricSteps_ = o_.steps; // the steps behind the metrics (the manifest's with --select)
  double maxGap_ = o_.maxGap;       // the bound (the manifest's with --select)
};

int Tuner::run() {
  std::fprintf(stderr, "tune: %zu op groups with a matmul or convolution; budget %lld training runs of %lld steps\n",
               groups_.size(), (long long)o_.budget, (long long)o_.steps);
  const Candidate &base = evaluate(policyOf({}), "fp32");
  if (!base.failure.empty())
    throw Error("the fp32 baseline does not train: " + base.failure);
  if (canTrain()) {
    PolicyFile fp16;
    fp16.defaultPrecision = "fp16";
    fp16.lossScaling = "dynamic";
    evaluate(fp16, "uniform fp16 (autocast)");
  }
  if (canTrain()) {
    PolicyFile bf16;
    bf16.defaultPrecision = "bf16";
    bf16.lossScaling = "none";
    evaluate(bf16, "uniform bf16");
  }

  // Sensitivity: each group alone, each low precision.
  struct Choice {
    std::string group, precision;
    double saving, sensitivity;
  };
  std::vector<Choice> choices;
  for (const std::string &group : groups_) {
    std::optional<Choice> best;
    // An anchor whose fp32 outputs overflow fp16 gives an infinite forward pass in
    // fp16, which no loss scale repairs: no need to train that.
    auto range = fp32Range_.find(group);
    double overflow = range == fp32Range_.end() ? 0 : range->second.share(range->second.fp16Overflow);
    double underflow =
        range == fp32Range_.end() ? 0 : range->second.share(range->second.fp16Underflow);
    // The share of its fp32 parameter gradients (as their kernels write them) after the
    // first step that fp16 rounds to zero at the scale an fp16 candidate starts with.
    const double gradUnderflow =
        gradUnderflowShare(group, o_.lossScaling == "dynamic" ? kInitialLossScale : 1.0);
    for (const char *precision : {"fp16", "bf16"}) {
      SensitivityRow row{group, precision, overflow, underflow, gradUnderflow};
      if (!std::strcmp(precision, "fp16") && overflow > 0) {
        row.verdict = "not trained: outputs overflow fp16";
        sensitivity_.push_back(row);
        continue;
      }
      if (!canTrain()) {
        unverified_.push_back(group + ":" + precision + " (no sensitivity run)");
        row.verdict = "not trained: budget";
        sensitivity_.push_back(row);
        continue;
      }
      const Candidate &c = evaluate(policyOf({{group, precision}}), group + "=" + precision);
      row.candidate = int64_t(&c - candidates_.data());
      double saving = objective(candidates_[0]) - objective(c);
      row.verdict = !c.failure.empty()       ? "failed: " + c.failure
                    : c.gap > o_.maxGap      ? "metric over bound"
                    : !c.gradFailure.empty() ? (c.gradReason.find("underflow") != std::string::npos
                                                    ? "gradients underflow fp16"
                                                    : "gradient error over bound")
                    : saving <= 0            ? "passes, saves nothing"
                                             : "passes";
      sensitivity_.push_back(row);
      if (!c.passes || saving <= 0)
        continue;
      // How far from fp32 the demotion moves training: its loss trajectory's
      // divergence plus the mean gradient error of its parameters over the run
      // (the mean, not the max: late steps near a minimum have small gradients whose
      // relative error is large without mattering).
      auto grad = c.gradErrors.find(group);
      double gradMean =
          grad != c.gradErrors.end() && std::isfinite(grad->second.mean) ? grad->second.mean : 0;
      double sensitivity = c.divergence + gradMean;
      // Equal savings (the model prices fp16 and bf16 alike) go to the smaller sensitivity.
      bool better = !best || saving > best->saving * (1 + 1e-9) ||
                    (saving >= best->saving * (1 - 1e-9) && sensitivity < best->sensitivity);
      if (better)
        best = Choice{group, precision, saving, sensitivity};
    }
    if (best)
      choices.push_back(*best);
  }
  printSensitivity();
  std::stable_sort(choices.begin(), choices.end(), [](const Choice &a, const Choice &b) {
    return a.saving / (a.sensitivity + 1e-3) > b.saving / (b.sensitivity + 1e-3);
  });
  std::fprintf(stderr, "tune: %zu of %zu groups pass alone; verifying them together\n",
               choices.size(), groups_.size());
  std::vector<std::pair<std::string, std::string>> order;
  for (const Choice &c : choices)
    order.push_back({c.group, c.precision});
  Demotions kept = accept(order, {});

  // Loss scaling costs kernels; without fp16 it is off already.
  PolicyFile keptPolicy = policyOf(kept);
  if (keptPolicy.usesFp16() && o_.lossScaling != "none" && canTrain())
    evaluate(policyOf(kept, "none"), describe(kept) + " no loss scaling");

  size_t chosen = cheapestWithinBound();
  printTable(paretoFront(), chosen);
  if (!unverified_.empty()) {
    std::printf("budget exhausted: %zu demotion(s) not verified:", unverified_.size());
    for (const std::string &d : unverified_)
      std::printf(" %s", d.c_str());
    std::printf("\n");
  }

  // Final validation, longer, on held-out data.
  const Candidate &pick = candidates_[chosen];
  TrainSummary ref = train(candidates_[0].planPath, o_.finalSteps);
  TrainSummary fin = train(pick.planPath, o_.finalSteps);
  double refMetric = metricOf(ref), finMetric = metricOf(fin);
  double finGap = classification_ ? refMetric - finMetric : (finMetric - refMetric) / refMetric;
  const char *metricName = classification_ ? "accuracy" : "MSE";
  std::printf("final validation (%lld steps, held-out %s): fp32 %.4f, chosen %.4f, gap %+.4f "
              "(bound %.4f): %s\n",
              (long long)o_.finalSteps, metricName, refMetric, finMetric, finGap, o_.maxGap,
              finGap <= o_.maxGap ? "within the bound" : "OUTSIDE the bound");
  std::printf("candidates trained: %lld of budget %lld (+2 final validation runs)\n",
              (long long)trained_, (long long)o_.budget);

  report(chosen);
  if (!o_.emitDir.empty())
    writeManifest();
  return 0;
}

/// The policy file and the plot of the chosen candidate.
void Tuner::report(size_t chosen) {
  const Candidate &pick = candidates_[chosen];
  std::string policy = formatPolicyFile(pick.policy);
  writeFileAtomic(o_.output, policy.data(), policy.size()); // an Error naming the path, not "wrote"
  std::printf("wrote %s (%s)\n", o_.output.c_str(), pick.label.c_str());
  if (!o_.plot.empty())
    writePlot(paretoFront(), chosen);
}

int Tuner::select(const std::string &resultsPath) {
  auto read = [](const std::string &path) { return json::parseFile(path); };
  auto field = [](const json::Value &v, const std::string &key) -> const json::Value * {
    for (const auto &[name, value] : v.members)
      if (name == key)
        return &value;
    return nullptr;
  };
  // A finite number >= lo (> lo where `open`): a time, a count or a bound, not 0 ms or 1e999.
  auto checked = [](const json::Value &x, const std::string &key, const std::string &where,
                    double lo, bool open) {
    double d = std::strtod(x.text.c_str(), nullptr);
    if (!std::isfinite(d) || d < lo || (open && d == lo)) {
      char bound[32];
      std::snprintf(bound, sizeof bound, "%g", lo);
      throw Error(where + ": \"" + key + "\" is " + x.text + "; expected a finite number " +
                  (open ? "> " : ">= ") + bound);
    }
    return d;
  };
  auto number = [&](const json::Value &v, const std::string &key, const std::string &where,
                    double lo, bool open = false) {
    const json::Value *x = field(v, key);
    if (!x || x->kind != json::Value::Kind::Number)
      throw Error(where + ": needs a number \"" + key + "\"");
    return checked(*x, key, where, lo, open);
  };
  auto string = [&](const json::Value &v, const std::string &key, const std::string &where) {
    const json::Value *x = field(v, key);
    if (!x || x->kind != json::Value::Kind::String)
      throw Error(where + ": needs a string \"" + key + "\"");
    return x->text;
  };

  // Measured seconds (and joules, where the GPU had a meter) per plan file name.
  json::Value results = read(resultsPath);
  const json::Value *plans = field(results, "plans");
  if (!plans || plans->kind != json::Value::Kind::Array || plans->items.empty())
    throw Error(resultsPath + ": needs \"plans\": [{\"plan\", \"ms_per_step\"}, ...] (mantissa-run measure --json)");
  std::map<std::string, std::pair<double, double>> measured;
  std::string dir;
  if (const json::Value *device = field(results, "device"); device && device->kind == json::Value::Kind::String)
    device_.name = device->text;
  for (const json::Value &p : plans->items) {
    std::filesystem::path plan = string(p, "plan", resultsPath);
    const json::Value *j = field(p, "joules_per_step");
    measured[plan.filename().string()] = {
        number(p, "ms_per_step", resultsPath, 0, /*open=*/true) * 1e-3,
        j && j->kind == json::Value::Kind::Number
            ? checked(*j, "joules_per_step", resultsPath, 0, false)
            : NAN};
    if (dir.empty())
      dir = plan.parent_path().string();
  }
  if (!o_.emitDir.empty())
    dir = o_.emitDir;
  std::string manifestPath = (std::filesystem::path(dir.empty() ? "." : dir) / "manifest.json").string();
  json::Value manifest = read(manifestPath);
  classification_ = string(manifest, "metric", manifestPath) == "accuracy";
  metricSteps_ = int64_t(number(manifest, "steps", manifestPath, 1));
  maxGap_ = number(manifest, "max_metric_gap", manifestPath, 0);
  const json::Value *list = field(manifest, "candidates");
  if (!list || list->kind != json::Value::Kind::Array || list->items.empty())
    throw Error(manifestPath + ": needs a non-empty \"candidates\" array");
  for (const json::Value &m : list->items) {
    Candidate c;
    c.label = string(m, "label", manifestPath);
    c.planPath = string(m, "plan", manifestPath);
    c.policyPath = (std::filesystem::path(dir) / string(m, "policy", manifestPath)).string();
    llvm::Expected<PolicyFile> policy = readPolicyFile(c.policyPath);
    if (!policy)
      throw Error(llvm::toString(policy.takeError()));
    c.policy = *policy;
    const json::Value *metric = field(m, "metric"), *gap = field(m, "gap"), *passes = field(m, "passes");
    c.metric = metric && metric->kind == json::Value::Kind::Number ? std::strtod(metric->text.c_str(), nullptr) : NAN;
    c.gap = gap && gap->kind == json::Value::Kind::Number ? std::strtod(gap->text.c_str(), nullptr) : INFINITY;
    c.passes = passes && passes->boolean;
    if (!std::isfinite(c.metric))
      c.failure = "did not train";
    // The priced plan (--cost-batch) is what a GPU measures; the trained one works too.
    auto it = measured.find(c.planPath);
    if (const json::Value *trainPlan = field(m, "train_plan");
        it == measured.end() && trainPlan && trainPlan->kind == json::Value::Kind::String)
      it = measured.find(trainPlan->text);
    if (it == measured.end()) {
      std::fprintf(stderr, "tune: %s (%s) was not measured; left out\n", c.planPath.c_str(), c.label.c_str());
      continue;
    }
    c.seconds = it->second.first;
    c.joules = it->second.second;
    c.measured = true;
    if (o_.objective == "energy" && !std::isfinite(c.joules))
      throw Error(resultsPath + ": --objective energy needs joules_per_step for " + c.planPath);
    candidates_.push_back(std::move(c));
  }
  if (candidates_.empty() || candidates_[0].label != "fp32")
    throw Error(resultsPath + ": the fp32 baseline (" + manifestPath + "'s first candidate) was not measured");
  size_t chosen = cheapestWithinBound();
  printTable(paretoFront(), chosen);
  report(chosen);
  return 0;
}

/// Candidates no other candidate beats on both the objective and the gap (of those
/// that trained and whose gradients stayed within --max-grad-error).
std::vector<size_t> Tuner::paretoFront() const {
  std::vector<size_t> front;
  auto eligible = [](const Candidate &c) { return c.failure.empty() && c.gradFailure.empty(); };
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const Candidate &a = candidates_[i];
    if (!eligible(a))
      continue;
    bool dominated = false;
    for (const Candidate &b : candidates_)
      if (eligible(b) && objective(b) <= objective(a) && b.gap <= a.gap &&
          (objective(b) < objective(a) || b.gap < a.gap))
        dominated = true;
    if (!dominated)
      front.push_back(i);
  }
  std::sort(front.begin(), front.end(),
            [&](size_t a, size_t b) { return objective(candidates_[a]) < objective(candidates_[b]); });
  return front;
}

void Tuner::printTable(const std::vector<size_t> &front, size_t chosen) const {
  // The front, the choice (always), then the references (fp32, the uniform policies)
  // wherever they lie.
  std::vector<size_t> rows = front;
  if (!std::count(rows.begin(), rows.end(), chosen))
    rows.push_back(chosen);
  for (size_t i = 0; i < std::min<size_t>(3, candidates_.size()); ++i)
    if (!std::count(rows.begin(), rows.end(), i))
      rows.push_back(i);
  const char *unit = candidates_[0].measured ? "measured" : "modelled";
  std::printf("Pareto front (%s %s on %s; metric on held-out data after %lld steps; bound %.4f)\n",
              unit, o_.objective.c_str(), device_.name.c_str(), (long long)metricSteps_, maxGap_);
  std::printf("%-4s %-5s %-44s %-8s %10s %10s %9s %9s %s\n", "#", "front", "policy", "loss-sc",
              "ms/step", "mJ/step", classification_ ? "accuracy" : "mse", "gap", "");
  for (size_t i : rows) {
    const Candidate &c = candidates_[i];
    std::string label = c.label.size() > 44 ? c.label.substr(0, 41) + "..." : c.label;
    char joules[32] = "-";
    if (std::isfinite(c.joules))
      std::snprintf(joules, sizeof joules, "%.4f", c.joules * 1e3);
    std::printf("%-4zu %-5s %-44s %-8s %10.4f %10s %9.4f %+9.4f %s%s\n", i + 1,
                std::count(front.begin(), front.end(), i) ? "*" : "", label.c_str(),
                c.policy.lossScaling.value_or("none").c_str(), c.seconds * 1e3, joules, c.metric,
                c.gap,
                !c.failure.empty() ? "failed"
                : c.passes         ? "ok"
                : c.gap > maxGap_  ? "over bound"
                                   : "grad error",
                i == chosen ? "  <- chosen" : "");
  }
}

/// The sensitivity analysis as a table: one row per group and precision tried.
void Tuner::printSensitivity() const {
  size_t width = 5;
  for (const SensitivityRow &r : sensitivity_)
    width = std::max(width, r.group.size());
  std::printf("Sensitivity: each group alone against fp32 (same initial state and batches, %lld "
              "steps)\n",
              (long long)o_.steps);
  std::printf("%-*s %-4s %9s %9s %9s %9s %9s %10s %10s %10s %10s %9s  %s\n", int(width), "group",
              "prec", "fp16-ovf", "fp16-unf", "grad-unf", "loss-div", "out@1", "grad@1",
              "grad-mean", "in@1", o_.objective == "time" ? "saving-ms" : "saving-mJ", "gap",
              "verdict");
  auto number = [](double v, int64_t step = 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, step > 0 ? "%.3g@%lld" : "%.3g", v, (long long)step);
    return std::string(buf);
  };
  for (const SensitivityRow &r : sensitivity_) {
    std::string div = "-", out = "-", grad = "-", mean = "-", in = "-", saving = "-", gap = "-";
    if (r.candidate >= 0) {
      const Candidate &c = candidates_[size_t(r.candidate)];
      div = number(c.divergence);
      out = number(outputError(c, r.group));
      if (auto it = c.gradErrors.find(r.group); it != c.gradErrors.end()) {
        grad = number(it->second.first, it->second.firstStep);
        mean = number(it->second.mean);
      }
      if (auto it = c.inputGradErrors.find(r.group); it != c.inputGradErrors.end())
        in = number(it->second.first, it->second.firstStep);
      saving = number((objective(candidates_[0]) - objective(c)) * 1e3);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%+.4f", c.gap);
      gap = buf;
    }
    std::printf("%-*s %-4s %8.3f%% %8.3f%% %8.3f%% %9s %9s %10s %10s %10s %10s %9s  %s\n",
                int(width), r.group.c_str(), r.precision.c_str(), 100 * r.overflow,
                100 * r.underflow, 100 * r.gradUnderflow, div.c_str(), out.c_str(), grad.c_str(),
                mean.c_str(), in.c_str(), saving.c_str(), gap.c_str(), r.verdict.c_str());
  }
  std::printf(
      "(fp16-ovf/unf: share of its fp32 outputs out of fp16's range; grad-unf: share of its\n"
      " fp32 parameter gradients after step 1 that fp16 rounds to zero at the loss scale fp16\n"
      " candidates start at; loss-div: divergence of the loss trajectory; relative L2 errors:\n"
      " out@1 of its output, grad@1 of its parameters' gradients after the first step (@N: the\n"
      " first with finite gradients), grad-mean their mean over the run, in@1 of the gradients\n"
      " of the groups its input depends on; an fp16 demotion fails when grad-unf > %.3g%%%s)\n\n",
      100 * o_.maxGradUnderflow,
      std::isfinite(o_.maxGradError)
          ? (", and any when grad@1 > " + std::to_string(o_.maxGradError)).c_str()
          : "");
}

void Tuner::writePlot(const std::vector<size_t> &front, size_t chosen) const {
  const double W = 640, H = 420, L = 80, R = 20, T = 30, B = 60;
  double xmin = 0, xmax = maxGap_, ymin = INFINITY, ymax = 0;
  for (const Candidate &c : candidates_) {
    if (!c.failure.empty())
      continue;
    xmin = std::min(xmin, c.gap);
    xmax = std::max(xmax, c.gap);
    ymin = std::min(ymin, objective(c));
    ymax = std::max(ymax, objective(c));
  }
  if (xmax <= xmin)
    xmax = xmin + 1e-3;
  if (ymax <= ymin)
    ymax = ymin * 1.1 + 1e-12;
  double padX = (xmax - xmin) * 0.05, padY = (ymax - ymin) * 0.05;
  xmin -= padX, xmax += padX, ymin -= padY, ymax += padY;
  auto px = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - ymin) / (ymax - ymin) * (H - T - B); };
  double scale = 1e3; // ms or mJ
  std::ostringstream f;
  f << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  f << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B
    << "\" stroke=\"black\"/>\n<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\""
    << H - B << "\" stroke=\"black\"/>\n";
  auto text = [&](double x, double y, const std::string &s, const char *anchor = "middle") {
    f << "<text x=\"" << x << "\" y=\"" << y << "\" text-anchor=\"" << anchor << "\">" << s << "</text>\n";
  };
  char buf[64];
  for (double t : {xmin, (xmin + xmax) / 2, xmax}) {
    std::snprintf(buf, sizeof buf, "%.4f", t);
    text(px(t), H - B + 16, buf);
  }
  for (double t : {ymin, (ymin + ymax) / 2, ymax}) {
    std::snprintf(buf, sizeof buf, "%.4g", t * scale);
    text(L - 6, py(t) + 4, buf, "end");
  }
  text((L + W - R) / 2, H - 20, std::string("metric gap against fp32 (held-out ") +
                                    (classification_ ? "accuracy" : "relative MSE") + ")");
  text(L, T - 10, std::string(o_.objective == "time" ? "ms/step" : "mJ/step") + " (" +
                      (candidates_[0].measured ? "measured" : "modelled, " + device_.name) + ")", "start");
  f << "<line x1=\"" << px(maxGap_) << "\" y1=\"" << T << "\" x2=\"" << px(maxGap_) << "\" y2=\""
    << H - B << "\" stroke=\"gray\" stroke-dasharray=\"4 4\"/>\n";
  for (const Candidate &c : candidates_)
    if (c.failure.empty())
      f << "<circle cx=\"" << px(c.gap) << "\" cy=\"" << py(objective(c)) << "\" r=\"3\" fill=\"#999\"/>\n";
  f << "<polyline fill=\"none\" stroke=\"#c00\" points=\"";
  for (size_t i : front)
    f << px(candidates_[i].gap) << "," << py(objective(candidates_[i])) << " ";
  f << "\"/>\n";
  for (size_t i : front)
    f << "<circle cx=\"" << px(candidates_[i].gap) << "\" cy=\"" << py(objective(candidates_[i]))
      << "\" r=\"4\" fill=\"#c00\"><title>" << candidates_[i].label << "</title></circle>\n";
  f << "<circle cx=\"" << px(candidates_[chosen].gap) << "\" cy=\"" << py(objective(candidates_[chosen]))
    << "\" r=\"7\" fill=\"none\" stroke=\"#080\" stroke-width=\"2\"/>\n</svg>\n";
  std::string svg = f.str();
  writeFileAtomic(o_.plot, svg.data(), svg.size());
  std::printf("wrote %s\n", o_.plot.c_str());
}

/// DIR/manifest.json: every candidate with its policy, plan, modelled cost and
/// metric, for `mantissa-run measure` and `tune --select`.
void Tuner::writeManifest() const {
  std::ofstream f(o_.emitDir + "/manifest.json");
  auto num = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return std::isfinite(v) ? std::string(buf) : std::string("null");
  };
  f << "{\n  \"objective\": " << json::quote(o_.objective) << ",\n  \"max_metric_gap\": "
    << num(o_.maxGap) << ",\n  \"device\": " << json::quote(device_.name)
    << ",\n  \"metric\": " << json::quote(classification_ ? "accuracy" : "mse")
    << ",\n  \"steps\": " << o_.steps << ",\n  \"candidates\": [\n";
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const Candidate &c = candidates_[i];
    f << "    {\"label\": " << json::quote(c.label)
      << ", \"policy\": " << json::quote(std::filesystem::path(c.policyPath).filename().string())
      << ", \"plan\": " << json::quote(std::filesystem::path(c.costPlanPath).filename().string())
      << ", \"train_plan\": " << json::quote(std::filesystem::path(c.planPath).filename().string())
      << ", \"modelled_seconds\": " << num(c.seconds) << ", \"modelled_joules\": " << num(c.joules)
      << ", \"metric\": " << num(c.metric) << ", \"gap\": " << num(c.gap)
      << ", \"passes\": " << (c.passes ? "true" : "false");
    if (!c.gradErrors.empty()) {
      // Per op group: the relative L2 error of its parameters' gradients (and of
      // those of the groups its input depends on) against fp32's at the first step
      // with finite gradients, and the mean over the run.
      auto errors = [&](const char *key, const std::map<std::string, GradientError> &m) {
        f << ", \"" << key << "\": {";
        bool first = true;
        for (const auto &[group, e] : m) {
          f << (first ? "" : ", ") << json::quote(group) << ": {\"first\": " << num(e.first)
            << ", \"first_step\": " << e.firstStep << ", \"mean\": " << num(e.mean)
            << ", \"steps\": " << e.steps << ", \"non_finite_steps\": " << e.nonFinite << "}";
          first = false;
        }
        f << "}";
      };
      errors("grad_error", c.gradErrors);
      errors("input_grad_error", c.inputGradErrors);
    }
    f << "}" << (i + 1 < candidates_.size() ? "," : "") << "\n";
  }
  f << "  ],\n  \"max_grad_error\": " << num(o_.maxGradError) << ",\n  \"sensitivity\": [\n";
  for (size_t i = 0; i < sensitivity_.size(); ++i) {
    const SensitivityRow &r = sensitivity_[i];
    f << "    {\"group\": " << json::quote(r.group)
      << ", \"precision\": " << json::quote(r.precision)
      << ", \"fp16_overflow\": " << num(r.overflow) << ", \"fp16_underflow\": " << num(r.underflow)
      << ", \"grad_fp16_underflow\": " << num(r.gradUnderflow);
    if (r.candidate >= 0) {
      const Candidate &c = candidates_[size_t(r.candidate)];
      auto grad = c.gradErrors.find(r.group), in = c.inputGradErrors.find(r.group);
      f << ", \"candidate\": " << r.candidate + 1 << ", \"loss_divergence\": " << num(c.divergence)
        << ", \"output_error_step1\": " << num(outputError(c, r.group))
        << ", \"grad_error_first\": " << num(grad != c.gradErrors.end() ? grad->second.first : NAN)
        << ", \"grad_error_mean\": " << num(grad != c.gradErrors.end() ? grad->second.mean : NAN)
        << ", \"input_grad_error_first\": "
        << num(in != c.inputGradErrors.end() ? in->second.first : NAN)
        << ", \"saving\": " << num(objective(candidates_[0]) - objective(c))
        << ", \"gap\": " << num(c.gap);
    }
    f << ", \"verdict\": " << json::quote(r.verdict) << "}"
      << (i + 1 < sensitivity_.size() ? "," : "") << "\n";
  }
  f << "  ]\n}\n";
  std::printf("wrote %s/manifest.json (%zu candidates)\n", o_.emitDir.c_str(), candidates_.size());
}

} // namespace

const char *tuneUsage() { return kTuneUsage; }

int tuneMain(int argc, char **argv) {
  for (int i = 0; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      llvm::outs() << kTuneUsage;
      return 0;
    }
  try {
    TuneOptions o = parseTuneOptions(argc, argv);
    if (!o.select.empty())
      return Tuner(o, ModuleOp(), ModuleOp(), {}, o.emitDir).select(o.select);

    DialectRegistry registry;
    registry.insert<graph::GraphDialect, func::FuncDialect>();
    MLIRContext context(registry);
    context.loadAllAvailableDialects();
    context.disableMultithreading();
    context.printOpOnDiagnostic(false);
    auto file = llvm::MemoryBuffer::getFile(o.compile.model);
    if (!file)
      throw Error("cannot open '" + o.compile.model + "': " + file.getError().message());
    llvm::SourceMgr sourceMgr;
    sourceMgr.AddNewSourceBuffer(std::move(*file), llvm::SMLoc());
    SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
    OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      return 1;
    OwningOpRef<ModuleOp> costModule;
    llvm::SourceMgr costSourceMgr;
    if (!o.costModel.empty()) {
      auto costFile = llvm::MemoryBuffer::getFile(o.costModel);
      if (!costFile)
        throw Error("--cost-model: cannot open '" + o.costModel + "': " + costFile.getError().message());
      costSourceMgr.AddNewSourceBuffer(std::move(*costFile), llvm::SMLoc());
      costModule = parseSourceFile<ModuleOp>(costSourceMgr, &context);
      if (!costModule)
        return 1;
    }
    auto forward = module->lookupSymbol<func::FuncOp>("forward");
    if (!forward)
      throw Error(o.compile.model + ": the model has no @forward function");
    std::vector<std::string> groups;
    std::vector<OpGroup> opGroups = listOpGroups(forward);
    // The parameters each anchored group reads, directly or through ops outside
    // anchored groups (a weight scaled by a constant); one two groups share counts in both.
    std::map<std::string, std::vector<std::string>> groupParams;
    llvm::DenseSet<Operation *> anchored;
    for (const OpGroup &g : opGroups)
      if (g.hasAnchor())
        anchored.insert(g.members.begin(), g.members.end());
    std::function<void(Value, std::vector<std::string> &)> collectParams =
        [&](Value v, std::vector<std::string> &out) {
          Operation *def = v.getDefiningOp();
          if (!def || anchored.contains(def))
            return;
          if (auto param = dyn_cast<graph::ParamOp>(def)) {
            if (!llvm::is_contained(out, param.getName().str()))
              out.push_back(param.getName().str());
            return;
          }
          for (Value operand : def->getOperands())
            collectParams(operand, out);
        };
    llvm::DenseMap<Operation *, std::string> groupOf;
    for (const OpGroup &g : opGroups) {
      if (g.hasAnchor()) {
        groups.push_back(g.name);
        for (Operation *member : g.members) {
          groupOf[member] = g.name;
          for (Value operand : member->getOperands())
            collectParams(operand, groupParams[g.name]);
        }
      }
      if (o.listGroups) {
        std::printf("%s (%s):", g.name.c_str(), g.hasAnchor() ? g.anchorKind.c_str() : "follows its inputs");
        for (const std::string &m : g.memberNames)
          std::printf(" %s", m.c_str());
        std::printf("\n");
      }
    }
    if (o.listGroups)
      return 0;
    if (groups.empty())
      throw Error(o.compile.model + ": no matmul, linear or convolution to tune");

    std::string workDir = o.emitDir;
    bool temporary = workDir.empty();
    if (temporary) {
      char tmpl[] = "/tmp/mantissa-tune-XXXXXX";
      if (!mkdtemp(tmpl))
        throw Error("cannot create a temporary directory in /tmp");
      workDir = tmpl;
    } else {
      std::error_code ec; // an Error naming the option, not std::terminate
      std::filesystem::create_directories(workDir, ec);
      if (ec || !std::filesystem::is_directory(workDir))
        throw Error("--emit-candidates " + workDir + ": cannot make it a directory (" +
                    (ec ? ec.message() : std::string("a file of that name exists")) + ")");
    }
    struct RemoveOnExit {
      std::string dir;
      ~RemoveOnExit() {
        if (!dir.empty())
          std::filesystem::remove_all(dir);
      }
    } cleanup{temporary ? workDir : ""};
    if (costModule) {
      auto costForward = costModule->lookupSymbol<func::FuncOp>("forward");
      std::vector<std::string> costGroups;
      if (costForward)
        for (const OpGroup &g : listOpGroups(costForward))
          if (g.hasAnchor())
            costGroups.push_back(g.name);
      if (costGroups != groups)
        throw Error("--cost-model " + o.costModel + " has other op groups than " + o.compile.model +
                    " (it must be the same model at another size)");
    }
    // The groups each group's input depends on (the ops its members' operands come from,
    // transitively), whose parameter gradients the gradient out of its input feeds.
    std::map<std::string, std::vector<std::string>> upstreamParams;
    for (const OpGroup &g : opGroups) {
      if (!g.hasAnchor())
        continue;
      llvm::DenseSet<Operation *> seen;
      std::vector<Operation *> work(g.members.begin(), g.members.end());
      std::vector<std::string> &params = upstreamParams[g.name];
      while (!work.empty()) {
        Operation *op = work.back();
        work.pop_back();
        for (Value operand : op->getOperands()) {
          Operation *def = operand.getDefiningOp();
          if (!def || !seen.insert(def).second)
            continue;
          auto it = groupOf.find(def);
          if (it != groupOf.end() && it->second != g.name)
            for (const std::string &p : groupParams[it->second])
              if (!llvm::is_contained(params, p) && !llvm::is_contained(groupParams[g.name], p))
                params.push_back(p);
          work.push_back(def);
        }
      }
    }
    Tuner tuner(o, *module, costModule ? *costModule : ModuleOp(), groups, workDir);
    tuner.setGroupParams(std::move(groupParams), std::move(upstreamParams));
    return tuner.run();
  } catch (const Error &e) {
    llvm::errs() << "error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace mantissa
