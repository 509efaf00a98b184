//===- Trainer.cpp - training a plan on a data set ------------------------===//
#include "runtime/train/Trainer.h"
#include "runtime/train/Checkpoint.h"

#include "common/Error.h"
#include "runtime/data/Digits.h"
#include "runtime/data/Nowcast.h"
#include "runtime/data/NpyData.h"
#include "runtime/io/AtomicFile.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <stdexcept>
#include <sstream>
#include <unistd.h>

namespace mantissa {
namespace {

using Clock = std::chrono::steady_clock;

const char *precisionName(const plan::Plan &p) {
  return p.precision() && p.precision()->policy() ? p.precision()->policy()->c_str() : "fp32";
}

std::string lossScalingName(const plan::Plan &p) {
  const plan::LossScaling *ls = p.loss_scaling();
  if (!ls || ls->mode() == plan::LossScaleMode::None)
    return "none";
  char buf[64];
  if (ls->mode() == plan::LossScaleMode::Static) {
    std::snprintf(buf, sizeof buf, "static %g", ls->init_scale());
    return buf;
  }
  return "dynamic";
}

std::string optimizerName(const plan::Plan &p) {
  const plan::Optimizer *o = p.optimizer();
  if (!o)
    return "unknown";
  char buf[128];
  switch (o->kind()) {
  case plan::OptimizerKind::SGD:
    std::snprintf(buf, sizeof buf, "sgd lr %g momentum %g weight decay %g", o->lr(),
                  o->momentum(), o->weight_decay());
    break;
  case plan::OptimizerKind::Adam:
  case plan::OptimizerKind::AdamW:
    std::snprintf(buf, sizeof buf, "%s lr %g betas (%g, %g) weight decay %g",
                  o->kind() == plan::OptimizerKind::Adam ? "adam" : "adamw", o->lr(), o->beta1(),
                  o->beta2(), o->weight_decay());
    break;
  }
  return buf;
}

std::vector<int64_t> vec(const flatbuffers::Vector<int64_t> *v) {
  return v ? std::vector<int64_t>(v->begin(), v->end()) : std::vector<int64_t>{};
}

int findPersistent(const LoadedPlan &plan, const char *name) {
  const auto *tensors = plan->tensors();
  for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
    const plan::Tensor *t = tensors->Get(i);
    if (t->role() != plan::Role::Input && t->role() != plan::Role::Temp && t->name() &&
        t->name()->str() == name)
      return static_cast<int>(i);
  }
  return -1;
}

int findInput(const LoadedPlan &plan, const char *name) {
  const auto *tensors = plan->tensors();
  for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
    const plan::Tensor *t = tensors->Get(i);
    if (t->role() == plan::Role::Input && t->name() && t->name()->str() == name)
      return static_cast<int>(i);
  }
  throw Error(plan.name() + ": the plan has no input tensor '" + name + "'");
}

/// The data set the options name, shaped as the plan's inputs.
DataSplit loadData(const TrainOptions &o, const plan::ModelInfo &model, uint64_t seed,
                   std::string &dataName) {
  std::vector<int64_t> xShape = vec(model.input_shape()), yShape = vec(model.label_shape());
  bool classification = model.task() == plan::Task::Classification;
  std::string data = o.data;
  if (data.empty())
    data = classification ? "digits" : "nowcast";
  dataName = data;
  if (data == "digits") {
    if (!classification)
      throw Error("--data digits: the plan's model '" + model.name()->str() +
                  "' is a regression model; digits has class labels");
    return loadDigits(xShape);
  }
  if (data == "nowcast") {
    if (xShape.size() != 3 || xShape[0] != kNowcastInFrames || yShape.size() != 3 ||
        yShape[0] != kNowcastOutFrames || yShape[1] != xShape[1] || yShape[2] != xShape[2])
      throw Error("--data nowcast: the plan's model takes inputs of shape " +
                  std::to_string(xShape.size()) +
                  "-D per sample; nowcast needs x [13,H,W] and y [12,H,W]");
    // Generated in host memory up front: say which sizes asked for too much.
    auto tooMuch = [&] {
      double gb = double(kNowcastInFrames + kNowcastOutFrames) * xShape[1] * xShape[2] * 4 *
                  (double(o.trainSamples) + double(o.heldOutSamples)) / 1e9;
      return Error("--data nowcast: out of memory generating " + std::to_string(o.trainSamples) +
                   " training and " + std::to_string(o.heldOutSamples) + " held-out samples of " +
                   std::to_string(xShape[1]) + "x" + std::to_string(xShape[2]) + " (about " +
                   std::to_string(int64_t(gb + 0.5)) +
                   " GB as float32); use a smaller --train-samples or --held-out-samples");
    };
    try {
      return loadNowcast(xShape[1], xShape[2], o.trainSamples, o.heldOutSamples, seed);
    } catch (const std::bad_alloc &) {
      throw tooMuch();
    } catch (const std::length_error &) {
      throw tooMuch();
    }
  }
  size_t comma = data.find(',');
  if (comma == std::string::npos || comma == 0 || comma + 1 == data.size())
    throw Error("--data '" + data + "': expected digits, nowcast or X.npy,Y.npy");
  return loadNpyPair(data.substr(0, comma), data.substr(comma + 1), xShape, yShape,
                     classification, o.heldOutFraction, model.num_classes());
}

/// Writes one batch of rows into the plan's input tensors.
void feed(Executor &exec, int xId, int yId, const Dataset &d,
          const std::vector<int64_t> &rows, std::vector<float> &xBuf, std::vector<float> &yBuf) {
  xBuf.resize(rows.size() * size_t(d.xSampleSize()));
  yBuf.resize(rows.size() * size_t(d.ySampleSize()));
  gather(d, rows, xBuf.data(), yBuf.data());
  exec.write(xId, xBuf.data(), xBuf.size());
  if (exec.plan()->tensors()->Get(yId)->dtype() == plan::DType::I32) {
    std::vector<int32_t> labels(yBuf.begin(), yBuf.end());
    exec.writeIndices(yId, labels.data(), labels.size());
  } else {
    exec.write(yId, yBuf.data(), yBuf.size());
  }
}

EvalResult evaluate(Executor &exec, int xId, int yId, const Dataset &d, int64_t batch) {
  const LoadedPlan &plan = exec.plan();
  const plan::Function *fn = plan.findFunction("eval_step");
  if (!fn || !fn->outputs() || fn->outputs()->size() < 2)
    throw Error(plan.name() + ": the plan has no eval_step with a prediction output");
  int predId = fn->outputs()->Get(1);
  EvalResult r;
  r.samples = d.n;
  int64_t correct = 0, ySize = d.ySampleSize();
  int64_t predSize = plan.numElements(predId) / batch;
  double lossSum = 0, sqSum = 0;
  std::vector<float> xBuf, yBuf, pred(size_t(plan.numElements(predId)));
  for (int64_t start = 0; start < d.n; start += batch) {
    int64_t valid = std::min(batch, d.n - start);
    std::vector<int64_t> rows(size_t(batch), start); // pad a partial batch with its first row
    for (int64_t i = 0; i < valid; ++i)
      rows[size_t(i)] = start + i;
    feed(exec, xId, yId, d, rows, xBuf, yBuf);
    exec.run("eval_step");
    exec.read(predId, pred.data(), pred.size());
    for (int64_t i = 0; i < valid; ++i) {
      const float *p = pred.data() + i * predSize;
      if (d.classification) {
        int64_t label = static_cast<int64_t>(yBuf[size_t(i)]);
        int64_t best = std::max_element(p, p + predSize) - p;
        correct += best == label;
        double m = *std::max_element(p, p + predSize), s = 0;
        for (int64_t c = 0; c < predSize; ++c)
          s += std::exp(double(p[c]) - m);
        lossSum += m + std::log(s) - p[label];
      } else {
        const float *t = yBuf.data() + i * ySize;
        double e = 0;
        for (int64_t k = 0; k < ySize; ++k)
          e += (double(p[k]) - t[k]) * (double(p[k]) - t[k]);
        sqSum += e / double(ySize);
      }
    }
  }
  if (d.classification) {
    r.accuracy = double(correct) / double(d.n);
    r.loss = lossSum / double(d.n);
  } else {
    r.mse = sqSum / double(d.n);
    r.loss = r.mse;
  }
  return r;
}

std::string jsonNumber(double v) {
  if (!std::isfinite(v))
    return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

void writeJson(const std::string &path, const TrainOptions &o, const TrainSummary &s) {
  std::ostringstream j;
  j << "{\n"
    << "  \"plan\": " << jsonString(o.plan) << ",\n"
    << "  \"model\": " << jsonString(s.model) << ",\n"
    << "  \"precision\": " << jsonString(s.precision) << ",\n"
    << "  \"loss_scaling\": " << jsonString(s.lossScaling) << ",\n"
    << "  \"optimizer\": " << jsonString(s.optimizer) << ",\n"
    << "  \"data\": " << jsonString(s.data) << ",\n"
    << "  \"backend\": " << jsonString(s.backend) << ",\n"
    << "  \"device\": " << jsonString(s.device) << ",\n"
    << "  \"device_bytes\": " << s.deviceBytes << ",\n"
    << "  \"batch\": " << s.batch << ",\n"
    << "  \"steps\": " << s.steps << ",\n"
    << "  \"start_step\": " << s.startStep << ",\n"
    << "  \"steps_per_epoch\": " << s.stepsPerEpoch << ",\n"
    << "  \"final_loss\": " << jsonNumber(s.finalLoss) << ",\n"
    << "  \"skipped_steps\": " << s.skippedSteps << ",\n"
    << "  \"loss_scale\": " << jsonNumber(s.lossScale) << ",\n"
    << "  \"wall_seconds\": " << jsonNumber(s.wallSeconds) << ",\n"
    << "  \"samples_per_second\": " << jsonNumber(s.samplesPerSecond) << ",\n"
    << "  \"eval\": {";
  if (s.eval.accuracy >= 0)
    j << "\"accuracy\": " << jsonNumber(s.eval.accuracy) << ", ";
  if (s.eval.mse >= 0)
    j << "\"mse\": " << jsonNumber(s.eval.mse) << ", ";
  if (s.eval.persistenceMse >= 0)
    j << "\"persistence_mse\": " << jsonNumber(s.eval.persistenceMse) << ", ";
  j << "\"loss\": " << jsonNumber(s.eval.loss) << ", \"samples\": " << s.eval.samples << "}";
  if (s.energy)
    j << ",\n  \"energy\": " << energyRunJson(*s.energy);
  j << "\n}\n";
  std::ofstream f(path);
  if (!f)
    throw Error(path + ": cannot write the JSON summary");
  f << j.str();
}

class Progress {
public:
  Progress(int64_t start, int64_t total, bool quiet)
      : start_(start), total_(total), quiet_(quiet), tty_(isatty(2)) {}
  void update(int64_t step, double loss, double scale, int64_t skipped, double samplesPerSec) {
    if (quiet_)
      return;
    bool last = step + 1 == total_;
    if (tty_) {
      int width = 30, filled = int(double(step + 1 - start_) / double(total_ - start_) * width);
      std::fprintf(stderr, "\r[%.*s%*s] step %lld/%lld  loss %.4f  scale %g  skipped %lld  %.0f samples/s ",
                   filled, "##############################", width - filled, "",
                   (long long)(step + 1), (long long)total_, loss, scale, (long long)skipped,
                   samplesPerSec);
      if (last)
        std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  scale %g  skipped %lld  %.0f samples/s\n",
                   (long long)(step + 1), (long long)total_, loss, scale, (long long)skipped,
                   samplesPerSec);
    }
  }

private:
  int64_t start_, total_;
  bool quiet_, tty_;
};

} // namespace

std::unique_ptr<Executor> openExecutor(const std::string &backend, const LoadedPlan &plan,
                                       int threads, bool readsTemps) {
  if (backend != "cpu" && backend != "cuda")
    throw Error("--backend " + backend + ": expected cpu or cuda");
  if (backend == "cuda" && readsTemps)
    throw Error("this command reads every temporary after the step, and the CUDA backend "
                "shares their memory (its arena): use --backend cpu");
  if (backend == "cuda") {
    try {
      return makeCudaExecutor(plan);
    } catch (const Error &e) {
      // DESIGN.md: a machine without a GPU (or driver) falls back to the CPU backend,
      // saying so; the summary and --json name the backend that actually ran.
      std::fprintf(stderr, "warning: %s\nwarning: falling back to the CPU backend\n", e.what());
    }
  }
  return makeCpuExecutor(plan, threads, readsTemps);
}

TrainSummary train(const TrainOptions &o) {
  if (o.backend != "cpu" && o.backend != "cuda")
    throw Error("--backend " + o.backend + ": expected cpu or cuda");
  LoadedPlan plan = LoadedPlan::load(o.plan);
  const plan::ModelInfo *model = plan->model();
  if (!model)
    throw Error(o.plan + ": the plan has no model information");
  uint64_t seed = o.seed ? *o.seed : model->seed();
  int64_t batch = model->batch();

  TrainSummary s;
  s.model = model->name() ? model->name()->str() : "?";
  s.precision = precisionName(plan.plan());
  s.lossScaling = lossScalingName(plan.plan());
  s.optimizer = optimizerName(plan.plan());
  s.batch = batch;

  DataSplit data = loadData(o, *model, seed, s.data);
  BatchOrder order(data.train.n, batch, o.shuffle, seed);
  s.stepsPerEpoch = order.stepsPerEpoch();

  std::unique_ptr<Executor> execPtr =
      openExecutor(o.backend, plan, o.threads, bool(o.afterTraining) || bool(o.afterStep));
  Executor &exec = *execPtr;
  s.backend = exec.backendName();
  s.device = exec.deviceDescription();
  s.deviceBytes = exec.deviceBytes();
  auto scalar = [&](int id) {
    float v = 0;
    exec.read(id, &v, 1);
    return double(v);
  };
  int xId = findInput(plan, "x"), yId = findInput(plan, "y");
  const plan::Function *trainFn = plan.findFunction("train_step");
  if (!trainFn || !trainFn->outputs() || trainFn->outputs()->size() < 1)
    throw Error(o.plan + ": the plan has no train_step with a loss output");
  int lossId = trainFn->outputs()->Get(0);
  const plan::LossScaling *ls = plan->loss_scaling();
  int finiteId = ls ? ls->found_finite() : -1, scaleId = ls ? ls->scale() : -1;

  int64_t start = 0;
  std::string ckptPath;
  if (!o.checkpointDir.empty())
    ckptPath = (std::filesystem::path(o.checkpointDir) / "checkpoint.safetensors").string();
  if (o.resume) {
    if (ckptPath.empty())
      throw Error("--resume needs --checkpoint DIR");
    // Nothing to resume from is an error (as Hugging Face's resume_from_checkpoint): a
    // mistyped DIR would otherwise retrain from step 0 and checkpoint over nothing.
    if (!std::filesystem::exists(ckptPath))
      throw Error("--resume: no checkpoint in " + o.checkpointDir + " (" + ckptPath +
                  " does not exist); leave out --resume to start from step 0");
    start = loadCheckpoint(exec, ckptPath);
    if (!o.quiet)
      std::fprintf(stderr, "resuming from %s at step %lld\n", ckptPath.c_str(), (long long)start);
  } else if (!o.load.empty()) {
    start = loadCheckpoint(exec, o.load);
  }
  if (!o.checkpointDir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.checkpointDir, ec);
    if (ec || !std::filesystem::is_directory(o.checkpointDir))
      throw Error("--checkpoint " + o.checkpointDir + ": cannot make it a directory (" +
                  (ec ? ec.message() : std::string("a file of that name exists")) + ")");
  }

  int64_t total = o.steps >= 0 ? o.steps : (o.epochs >= 0 ? o.epochs : 1) * s.stepsPerEpoch;
  if (start > total)
    throw Error("the checkpoint is at step " + std::to_string(start) + ", past the " +
                std::to_string(total) + " steps asked for");
  s.startStep = start;
  int64_t every = o.logEvery > 0 ? o.logEvery : std::max<int64_t>(1, (total - start) / 20);
  if (isatty(2) && o.logEvery == 0 && !o.quiet)
    every = std::max<int64_t>(1, (total - start) / 200); // a smoother bar on a terminal
  Progress progress(start, total, o.quiet);

  // The host reads the device only at log points and checkpoints: no synchronisation
  // per step. Skipped steps are counted from the optimizer's step count, which only
  // advances on finite steps.
  int optStepId = findPersistent(plan, "optimizer.step");
  double optStep0 = optStepId >= 0 ? scalar(optStepId) : 0;
  std::vector<float> xBuf, yBuf;
  int64_t lastLogStep = start, skippedAtLastLog = 0;
  double checkpointSeconds = 0;
  std::unique_ptr<EnergySession> energy;
  if (o.energy.wanted()) {
    energy = std::make_unique<EnergySession>(o.energy, exec);
    energy->begin();
  }
  auto loopStart = Clock::now();
  auto timedStart = loopStart;
  int64_t timedFrom = std::min(total, start + o.warmupSteps);
  for (int64_t step = start; step < total; ++step) {
    if (step == timedFrom && o.warmupSteps > 0) {
      scalar(lossId); // synchronise: the warmup steps are done
      timedStart = Clock::now();
    }
    if (!o.fixedBatch || step == start)
      feed(exec, xId, yId, data.train, order.rows(step), xBuf, yBuf);
    if (step == o.injectNonFinite) {
      xBuf[0] = INFINITY;
      exec.write(xId, xBuf.data(), xBuf.size());
    }
    if (energy)
      energy->beforeStep(step);
    exec.run("train_step");
    if (o.afterStep)
      o.afterStep(step, exec);
    if (o.recordLosses)
      s.losses.push_back(scalar(lossId));
    bool last = step + 1 == total;
    bool checkpoint = !ckptPath.empty() && o.every > 0 && (step + 1) % o.every == 0;
    bool logPoint = last || checkpoint || (step + 1 - start) % every == 0;
    // Energy to a target loss needs every step's loss (one device read per step).
    bool everyLoss = energy && energy->wantsEveryLoss();
    if (!logPoint && !everyLoss)
      continue;
    double loss = scalar(lossId);
    if (energy)
      energy->loss(step, loss);
    if (!logPoint)
      continue;
    s.skippedSteps = optStepId >= 0 ? (step + 1 - start) - int64_t(scalar(optStepId) - optStep0)
                                    : 0;
    s.finalLoss = loss;
    s.lossScale = scaleId >= 0 ? scalar(scaleId) : 1.0;
    if (finiteId < 0 && !std::isfinite(loss))
      throw Error("step " + std::to_string(step) + ": the loss is " + std::to_string(loss) +
                  " and this plan has no loss scaling to skip such steps; the parameters are "
                  "no longer finite (lower --lr, or compile with --loss-scale dynamic)");
    int64_t window = step + 1 - lastLogStep;
    if (window >= 100 && s.skippedSteps - skippedAtLastLog == window)
      throw Error("steps " + std::to_string(lastLogStep) + " to " + std::to_string(step) +
                  ": every step had non-finite gradients; the loss scale is down to " +
                  std::to_string(s.lossScale) + " (check the data and the learning rate)");
    lastLogStep = step + 1;
    skippedAtLastLog = s.skippedSteps;
    double elapsed = std::chrono::duration<double>(Clock::now() - loopStart).count() -
                     checkpointSeconds;
    progress.update(step, loss, s.lossScale, s.skippedSteps,
                    elapsed > 0 ? double((step + 1 - start) * batch) / elapsed : 0);
    if (checkpoint) {
      auto c0 = Clock::now();
      saveCheckpoint(exec, ckptPath, step + 1);
      checkpointSeconds += std::chrono::duration<double>(Clock::now() - c0).count();
    }
  }
  if (energy)
    energy->end();
  // The last step read the loss, so the device is idle here.
  if (total > timedFrom)
    s.timedSecondsPerStep = std::chrono::duration<double>(Clock::now() - timedStart).count() /
                            double(total - timedFrom);
  double trainSeconds =
      std::chrono::duration<double>(Clock::now() - loopStart).count() - checkpointSeconds;
  s.steps = total;
  s.wallSeconds = total > start ? trainSeconds : 0;
  s.samplesPerSecond = total > start ? double((total - start) * batch) / trainSeconds : 0;
  if (total == start) {
    s.lossScale = scaleId >= 0 ? scalar(scaleId) : 1.0;
    s.finalLoss = NAN;
  }
  if (!ckptPath.empty())
    saveCheckpoint(exec, ckptPath, total);
  if (!o.save.empty())
    saveCheckpoint(exec, o.save, total);

  if (o.afterTraining)
    o.afterTraining(exec);
  s.eval = evaluate(exec, xId, yId, data.heldOut, batch);
  if (s.data == "nowcast" && data.heldOut.n > 0) // no held-out samples: no baseline to print
    s.eval.persistenceMse = persistenceMse(data.heldOut);
  if (energy) {
    s.energy = std::make_shared<EnergyRun>(energy->run());
    energy->writeFiles(s.model + " (" + s.precision + ", " + s.backend + "): energy");
  }
  if (!o.json.empty())
    writeJson(o.json, o, s);
  return s;
}

TrainOptions parseTrainOptions(int argc, char **argv) {
  TrainOptions o;
  auto need = [&](int &i) -> std::string {
    if (i + 1 >= argc)
      throw Error(std::string(argv[i]) + " needs a value\n" + trainUsage());
    return argv[++i];
  };
  auto integer = [&](int &i) -> int64_t {
    std::string flag = argv[i], v = need(i);
    char *end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0)
      throw Error(flag + " '" + v + "': expected a non-negative integer");
    // strtoll clamps what does not fit; --threads is an int.
    if (errno == ERANGE || (flag == "--threads" && x > std::numeric_limits<int>::max()))
      throw Error(flag + " '" + v + "': too large");
    return x;
  };
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--data") {
      o.data = need(i);
      if (o.data.empty()) // not the default data set: the user meant to name one
        throw Error("--data '': expected digits, nowcast or X.npy,Y.npy");
    }
    else if (a == "--steps") o.steps = integer(i);
    else if (a == "--epochs") o.epochs = integer(i);
    else if (a == "--no-shuffle") o.shuffle = false;
    else if (a == "--seed") o.seed = uint64_t(integer(i));
    else if (a == "--save") o.save = need(i);
    else if (a == "--load") o.load = need(i);
    else if (a == "--checkpoint") o.checkpointDir = need(i);
    else if (a == "--every") {
      o.every = integer(i);
      if (o.every == 0) // not "the default": a checkpoint every 0 steps means nothing
        throw Error("--every '0': expected a number of steps >= 1");
    }
    else if (a == "--resume") o.resume = true;
    else if (a == "--json") o.json = need(i);
    else if (a == "--threads") o.threads = int(integer(i));
    else if (a == "--log-every") o.logEvery = integer(i);
    else if (a == "--backend") o.backend = need(i);
    else if (a == "--train-samples") o.trainSamples = integer(i);
    else if (a == "--held-out-samples") o.heldOutSamples = integer(i);
    else if (a == "--held-out-fraction") {
      std::string v = need(i);
      char *end = nullptr;
      o.heldOutFraction = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(o.heldOutFraction > 0 && o.heldOutFraction < 1))
        throw Error("--held-out-fraction '" + v + "': expected a number in (0, 1)");
    } else if (a == "--inject-nonfinite") o.injectNonFinite = integer(i);
    else if (a == "--fixed-batch") o.fixedBatch = true;
    else if (a == "--quiet" || a == "-q") o.quiet = true;
    else if (a == "--energy") o.energy.table = true;
    else if (a == "--meter") o.energy.meter = need(i);
    else if (a == "--energy-report") o.energy.html = need(i);
    else if (a == "--trace") o.energy.trace = need(i);
    else if (a == "--csv") o.energy.csv = need(i);
    else if (a == "--target-loss") {
      std::string v = need(i);
      char *end = nullptr;
      o.energy.targetLoss = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !std::isfinite(o.energy.targetLoss))
        throw Error("--target-loss '" + v + "': expected a number");
    }
    else if (!a.empty() && a[0] == '-')
      throw Error("train: unknown option '" + a + "'\n" + trainUsage());
    else if (o.plan.empty()) o.plan = a;
    else throw Error("train: unexpected argument '" + a + "'\n" + trainUsage());
  }
  if (o.plan.empty())
    throw Error(std::string("train: which plan?\n") + trainUsage());
  if (o.steps >= 0 && o.epochs >= 0)
    throw Error("train: give --steps or --epochs, not both");
  if (o.every > 0 && o.checkpointDir.empty())
    throw Error("train: --every needs --checkpoint DIR");
  if (!o.checkpointDir.empty() && o.every == 0)
    o.every = 100;
  if (o.resume && !o.load.empty())
    throw Error("train: --resume continues from --checkpoint DIR; it cannot be combined with --load");
  // Written after the whole run: what cannot be written, or would replace an input (the plan,
  // --load, --data's files), is said now, not after training.
  std::vector<std::string> inputs = {o.plan, o.load};
  if (size_t comma = o.data.find(','); comma != std::string::npos)
    inputs.insert(inputs.end(), {o.data.substr(0, comma), o.data.substr(comma + 1)});
  const std::pair<const char *, std::string> outputs[] = {{"--save", o.save},
                                                          {"--json", o.json},
                                                          {"--energy-report", o.energy.html},
                                                          {"--trace", o.energy.trace},
                                                          {"--csv", o.energy.csv}};
  for (const auto &[option, path] : outputs) {
    if (path.empty())
      continue;
    checkOutputPath(option, path);
    for (const std::string &input : inputs) {
      std::error_code ec;
      // --save over --load continues a run in place (an atomic replace, after the load).
      bool inPlace = std::string(option) == "--save" && input == o.load;
      if (!input.empty() && !inPlace && std::filesystem::equivalent(input, path, ec))
        throw Error(std::string(option) + " " + path + " is the input " + input +
                    "; name it differently");
    }
  }
  if (!o.save.empty()) {
    try {
      checkCheckpointFormat(o.save); // saveCheckpoint's own rule, before the run
    } catch (const Error &e) {
      throw Error(std::string("--save ") + e.what());
    }
  }
  return o;
}

const char *trainUsage() {
  return R"(usage: train PLAN [options]
  --data digits|nowcast|X.npy,Y.npy   the data set (default: digits for classifiers, nowcast for regression)
  --steps N | --epochs N              how long to train (default: 1 epoch); global step count
  --no-shuffle                        batches are rows [kB, (k+1)B) in order, wrapping each epoch
  --seed N                            data order and synthetic data (default: the plan's seed)
  --save FILE / --load FILE           parameters, buffers, optimizer and scaler state (.safetensors or .npz)
  --checkpoint DIR --every N          write DIR/checkpoint.safetensors every N steps (atomic; default 100)
  --resume                            continue from DIR/checkpoint.safetensors (an error if there is none)
  --json FILE                         write the summary as JSON
  --threads N                         CPU threads (default: all)
  --log-every N                       progress line interval when stderr is not a terminal
  --backend cpu                       the backend (this build: cpu)
  --train-samples N --held-out-samples N   nowcast data set sizes (default 1024 / 256)
  --held-out-fraction F               .npy data: the last fraction is held out (default 0.2)
  --inject-nonfinite STEP             testing: make step STEP's input infinite
  --fixed-batch                       benchmarking: feed the first batch once and train on it
                                      (no host-to-device copy per step, as PyTorch benchmarks do)
  --quiet                             no progress display
energy (DESIGN.md: windows of >= 1 s, attributed to every step's kernels):
  --energy                            end with the energy table: kernels by energy (launches, time,
                                      joules ± error, share, watts, op class, precision), totals per
                                      step, op class and precision, the idle/gap remainder apart
  --meter nvml|rapl|none|auto         the energy meter (default auto: NVML for cuda, RAPL for cpu);
                                      without one every joule is "not measured"
  --energy-report FILE.html           one self-contained page with plots
  --trace FILE.json                   Chrome/Perfetto trace: step slices and a power counter track
  --csv FILE                          the kernel table as CSV
  --target-loss L                     energy and time until the loss first reaches L (reads the
                                      loss every step)
  (--json then also carries every energy figure; on cuda, measuring runs steps without CUDA
   graphs, with events between them; `mantissa-run profile PLAN` calibrates kernel power)
)";
}

int trainMain(int argc, char **argv) {
  try {
    TrainOptions o = parseTrainOptions(argc, argv);
    TrainSummary s = train(o);
    std::printf("trained %s (%s, loss scaling %s, %s) on %s: %s backend (%s)\n",
                s.model.c_str(), s.precision.c_str(), s.lossScaling.c_str(), s.optimizer.c_str(),
                s.data.c_str(), s.backend.c_str(), s.device.c_str());
    std::printf("  steps            %lld (from %lld; %lld per epoch, batch %lld)\n",
                (long long)s.steps, (long long)s.startStep, (long long)s.stepsPerEpoch,
                (long long)s.batch);
    std::printf("  final loss       %.6g\n", s.finalLoss);
    std::printf("  skipped steps    %lld    loss scale %g\n", (long long)s.skippedSteps,
                s.lossScale);
    std::printf("  throughput       %.1f samples/s (%.2f s in train_step)\n", s.samplesPerSecond,
                s.wallSeconds);
    if (s.eval.accuracy >= 0)
      std::printf("  held-out accuracy %.4f  (%lld samples, loss %.4f)\n", s.eval.accuracy,
                  (long long)s.eval.samples, s.eval.loss);
    if (s.eval.mse >= 0)
      std::printf("  held-out MSE     %.6g  (%lld samples)\n", s.eval.mse,
                  (long long)s.eval.samples);
    if (s.eval.persistenceMse >= 0)
      std::printf("  persistence MSE  %.6g  (repeating the last input frame)\n",
                  s.eval.persistenceMse);
    if (s.energy)
      std::fputs((o.energy.table ? formatEnergyRun(*s.energy) : formatEnergyTarget(*s.energy)).c_str(),
                 stdout);
    return 0;
  } catch (const Error &e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "\nerror: out of memory\n");
    return 1;
  }
}

} // namespace mantissa
