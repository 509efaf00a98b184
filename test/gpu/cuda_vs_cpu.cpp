// cuda_vs_cpu: runs a plan's train_step N times on the CPU executor (the oracle) and
// on the CUDA executor from the same initial state with the same inputs, then compares
// the loss of every step and every persistent tensor (parameters, buffers, optimizer
// and loss-scaler state). Exit status: 0 when every relative error is within the
// tolerance, 1 when one is not, 2 on a usage or runtime error.
//
//   cuda_vs_cpu model.plan [--steps N] [--tol T] [--atol A] [--loss-tol L] [--seed S] [--x x.npy
//   --y y.npy]
//               [--threads N] [--all] [--no-resync] [--bench K]
//
// Every step is judged, and before each step after the first the CPU executor takes the
// GPU's persistent state, so every comparison is of one step from one state, the second
// and later ones through the captured CUDA graph (--no-resync: the CPU runs on from its
// own state and only the last step is judged, with every earlier step's noise in it).
//
// The relative error of a tensor is normwise: ||gpu - cpu||_2 / ||cpu - start||_2, relative
// to what the step changed (start: its value before the step; a parameter moves by lr x
// its gradient, which a comparison relative to the whole tensor would not see), and
// ||gpu - cpu||_2 / ||cpu||_2 for working copies and temporaries (NaN/inf must sit in the
// same places). The table's "max |ref|" is the largest element of that reference. --all also
// compares every other tensor after the last step, in schedule order, which points at the first
// kernel that diverges. --bench K times K more GPU steps (CUDA graph replay) and prints ms/step.
//
// --truth fp32.plan (the same model compiled in fp32; its parameters start from the
// same seeded initialisers) runs that plan in f64 on the CPU with the same inputs: the
// truth. A tensor beyond --tol then still passes when the CUDA result is at most
// --truth-factor (1.5) times as far from the truth as the CPU's exact fp16/bf16
// emulation is. This is the tolerance for low precision: one summation-order
// difference moves a stored fp16 value by an ulp, and through batch-norm backward's
// cancellations and ReLU kinks such ulps grow into gradient differences of percents
// that are the precision's own noise, not a kernel error; a wrong kernel is farther
// from the truth than the emulation. Where the emulation is farther from the truth
// than the truth is large (relative error > 1: the gradient of a bias right before a
// batch norm, exactly 0), both results are rounding noise of a cancelling sum, two
// draws of one distribution. The ratio of two such noises' norms over 8 channels
// (the ratio of two chi variables with 8 degrees of freedom) exceeds 1.5 with a chance
// of 14 % and 2 with 1 in 30, so with a dozen such tensors in a plan 1.5 fails often;
// there the factor is --noise-factor (4: 1 in 2700).
#include "common/Error.h"
#include "runtime/backend/Executor.h"
#include "runtime/cpu/CpuBackend.h"
#include "runtime/io/Npy.h"
#include "runtime/kernels/Elementwise.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace mantissa;

namespace {

struct Options {
  std::string plan, xPath, yPath;
  int steps = 3;
  double tol = 1e-3;
  double atol = 0;
  double lossTol = -1; // --loss-tol; < 0: tol / 10
  uint64_t seed = 1;
  int threads = 0;
  bool all = false;
  bool resync = true; // --no-resync: the CPU runs on from its own state
  int bench = 0;
  std::string truth;        // --truth: the fp32 plan of the same model, run in f64
  double truthFactor = 1.5; // --truth-factor
  double noiseFactor = 4.0; // --noise-factor: where the truth is below the emulation's noise
};

[[noreturn]] void usage(const char *why) {
  std::fprintf(
      stderr,
      "error: %s\nusage: cuda_vs_cpu model.plan [--steps N] [--tol T] [--atol A] [--loss-tol L] "
      "[--seed S] "
      "[--x x.npy --y y.npy] [--threads N] [--all] [--no-resync] [--bench K] [--truth fp32.plan "
      "[--truth-factor F] [--noise-factor F]]\n",
      why);
  std::exit(2);
}

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--steps")
      o.steps = std::atoi(need().c_str());
    else if (a == "--tol")
      o.tol = std::atof(need().c_str());
    else if (a == "--atol")
      o.atol = std::atof(need().c_str());
    else if (a == "--loss-tol")
      o.lossTol = std::atof(need().c_str());
    else if (a == "--seed")
      o.seed = std::strtoull(need().c_str(), nullptr, 10);
    else if (a == "--x")
      o.xPath = need();
    else if (a == "--y")
      o.yPath = need();
    else if (a == "--threads")
      o.threads = std::atoi(need().c_str());
    else if (a == "--all")
      o.all = true;
    else if (a == "--no-resync")
      o.resync = false;
    else if (a == "--truth")
      o.truth = need();
    else if (a == "--truth-factor")
      o.truthFactor = std::atof(need().c_str());
    else if (a == "--noise-factor")
      o.noiseFactor = std::atof(need().c_str());
    else if (a == "--bench")
      o.bench = std::atoi(need().c_str());
    else if (a == "-h" || a == "--help")
      usage("help");
    else if (!a.empty() && a[0] == '-')
      usage(("unknown option " + a).c_str());
    else if (o.plan.empty())
      o.plan = a;
    else
      usage("more than one plan given");
  }
  if (o.plan.empty())
    usage("no plan given");
  if (o.steps < 1)
    usage("--steps must be at least 1");
  return o;
}

struct Comparison {
  double rel = 0, absMax = 0, refMax = 0;
  double l2rel = 0; // ||gpu - cpu||_2 / ||cpu||_2
  std::string mismatch; // NaN/inf in different places
};

/// With `base`, relative to the reference's change from it (what the steps did), not
/// to the reference itself.
Comparison compare(const std::vector<float> &gpu, const std::vector<float> &cpu,
                   const std::vector<float> *base = nullptr) {
  Comparison c;
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    float g = gpu[i], r = cpu[i];
    bool same = (std::isnan(g) && std::isnan(r)) || (std::isinf(g) && g == r) ||
                (std::isfinite(g) && std::isfinite(r));
    if (!same) {
      if (c.mismatch.empty())
        c.mismatch = "element " + std::to_string(i) + ": gpu " + std::to_string(g) + ", cpu " +
                     std::to_string(r);
      continue;
    }
    if (!std::isfinite(r))
      continue;
    double d = double(g) - double(r);
    double ref = base && std::isfinite((*base)[i]) ? double(r) - double((*base)[i]) : double(r);
    c.absMax = std::max(c.absMax, std::fabs(d));
    c.refMax = std::max(c.refMax, std::fabs(ref));
    diff2 += d * d;
    ref2 += ref * ref;
  }
  c.rel = c.refMax > 0 ? c.absMax / c.refMax : c.absMax;
  c.l2rel = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  if (!c.mismatch.empty())
    c.rel = c.l2rel = INFINITY;
  return c;
}

/// Classes of a labels tensor: the model's num_classes, else the c of a softmax
/// cross-entropy step that reads it.
int64_t classesOf(const LoadedPlan &plan, int labels) {
  if (plan->model() && plan->model()->num_classes() > 0)
    return plan->model()->num_classes();
  for (const plan::Function *fn : *plan->functions())
    if (fn->steps())
      for (const plan::Step *s : *fn->steps())
        if (s->kernel_type() == plan::Kernel::SoftmaxCrossEntropy &&
            s->kernel_as_SoftmaxCrossEntropy()->labels() == labels)
          return s->kernel_as_SoftmaxCrossEntropy()->c();
  return 0;
}

struct Feed {
  int id;
  std::string name;
  int64_t count;
  bool indices;           // an I32 tensor
  int64_t classes;        // > 0: integer labels
  std::vector<float> file; // from --x/--y: batches cycle through it
};

int run(const Options &o) {
  LoadedPlan plan = LoadedPlan::load(o.plan);
  const auto &tensors = *plan->tensors();
  const plan::Function *fn = plan.findFunction("train_step");
  if (!fn)
    throw Error(o.plan + ": no train_step");
  const int lossId = fn->outputs() && fn->outputs()->size() > 0 ? fn->outputs()->Get(0) : -1;

  std::unique_ptr<Executor> gpu = makeCudaExecutor(plan);
  CpuExecutor<float> cpu(plan, o.threads);
  std::unique_ptr<LoadedPlan> truthPlan;
  std::unique_ptr<CpuExecutor<double>> truth;
  std::map<std::string, int> truthIds; // tensor name -> id in the truth plan
  if (!o.truth.empty()) {
    truthPlan = std::make_unique<LoadedPlan>(LoadedPlan::load(o.truth));
    truth = std::make_unique<CpuExecutor<double>>(*truthPlan, o.threads);
    const auto &tt = *(*truthPlan)->tensors();
    for (flatbuffers::uoffset_t id = 0; id < tt.size(); ++id)
      if (tt.Get(id)->name())
        truthIds[tt.Get(id)->name()->str()] = int(id);
  }
  std::printf("plan %s: %u tensors, %u train_step steps\ncuda: %s\ncpu: %d threads\n",
              o.plan.c_str(), tensors.size(), fn->steps() ? fn->steps()->size() : 0,
              gpu->deviceDescription().c_str(), cpu.threads());

  // Inputs: random (seeded) unless files are given.
  std::vector<Feed> feeds;
  for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
    const plan::Tensor *t = tensors.Get(id);
    if (t->role() != plan::Role::Input)
      continue;
    Feed f{int(id), t->name() ? t->name()->str() : "", plan.numElements(int(id)),
           t->dtype() == plan::DType::I32, 0, {}};
    bool isLabels = f.indices || f.name == "y";
    if (isLabels && (!plan->model() || plan->model()->task() == plan::Task::Classification))
      f.classes = classesOf(plan, int(id));
    const std::string &path = f.name == "x" ? o.xPath : f.name == "y" ? o.yPath : std::string();
    if (!path.empty()) {
      f.file = readNpy(path).toFloats();
      if (int64_t(f.file.size()) < f.count)
        throw Error(path + ": " + std::to_string(f.file.size()) + " values, a batch of '" +
                    f.name + "' needs " + std::to_string(f.count));
    }
    feeds.push_back(std::move(f));
  }
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  // Persistent tensors are judged by their change over the run: after a step a
  // parameter differs from its start by lr x its gradient, often far below any
  // tolerance on the whole tensor, so a wrong gradient would pass a comparison of
  // values. Working copies (their masters rounded) are compared as values.
  // The state a step carries to the next: every tensor but temporaries and inputs.
  auto persistent = [](const plan::Tensor *t) {
    return t->role() != plan::Role::Temp && t->role() != plan::Role::Input;
  };
  std::map<int, std::vector<float>> start, truthStart;
  auto snapshot = [&] {
    for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
      const plan::Tensor *t = tensors.Get(id);
      if (!persistent(t) || t->role() == plan::Role::WorkingCopy || t->dtype() == plan::DType::I32)
        continue;
      start[int(id)] = cpu.tensor(int(id));
      if (truth && t->name())
        if (auto it = truthIds.find(t->name()->str()); it != truthIds.end()) {
          const std::vector<double> &tv = truth->tensor(it->second);
          truthStart[int(id)].assign(tv.begin(), tv.end());
        }
    }
  };
  // Before each step after the first (unless --no-resync): the CPU executor (and the
  // truth's masters) take the GPU's state, so that each step is compared from one
  // state. Running on from their own states, the two would differ by every earlier
  // step's rounding noise as well, which the one-step tolerances (and the 1.5 x truth
  // factor) do not allow for.
  auto resync = [&] {
    std::vector<float> v;
    for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
      const plan::Tensor *t = tensors.Get(id);
      if (!persistent(t) || t->dtype() == plan::DType::I32)
        continue;
      v.resize(size_t(plan.numElements(int(id))));
      gpu->read(int(id), v.data(), v.size());
      cpu.tensor(int(id)) = v;
      if (truth && t->role() != plan::Role::WorkingCopy && t->name())
        if (auto it = truthIds.find(t->name()->str());
            it != truthIds.end() && truthPlan->numElements(it->second) == int64_t(v.size()))
          truth->tensor(it->second).assign(v.begin(), v.end());
    }
  };
  snapshot();

  bool ok = true;
  std::vector<float> buf, gbuf;
  // Compares the GPU's tensors with the CPU's after `step`: every row after the last
  // step, only those beyond the tolerance after the others. Returns how many
  // persistent tensors are beyond it, and how many tensors were compared.
  auto judge = [&](int step, bool last) {
    int compared = 0, exceeded = 0;
    bool header = false;
    auto printHeader = [&](int step) {
      std::printf("\nafter step %d:\n%-6s %-40s %-5s %-12s %12s %12s %12s %12s%s\n", step, "id",
                  "tensor", "dtype", "role", "L2 rel err", "max rel", "max |diff|", "max |ref|",
                  truth ? "   cpu-truth   cuda-truth" : "");
      header = true;
    };
    bool firstTempReported = false;
    for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
      const plan::Tensor *t = tensors.Get(id);
      const bool state = persistent(t);
      if (t->dtype() == plan::DType::I32 || (!state && !(o.all && last)))
        continue;
      int64_t n = plan.numElements(int(id));
      if (n == 0)
        continue;
      gbuf.resize(size_t(n));
      gpu->read(int(id), gbuf.data(), gbuf.size());
      auto base = start.find(int(id));
      Comparison c =
          compare(gbuf, cpu.tensor(int(id)), base == start.end() ? nullptr : &base->second);
      // Normwise (L2) relative error, with an absolute floor. Not the largest element
      // error: a ReLU or max-pool input within rounding of its kink takes the other
      // branch on one device (summation order differs), which flips that element's
      // gradient whole and says nothing about the kernels; in L2 such flips weigh as
      // little as they are rare. The floor covers tensors that start at zero (batch-norm
      // shifts), which after one step hold only lr x a heavily cancelling sum.
      bool bad = !(c.l2rel <= o.tol || c.absMax <= o.atol);
      std::string truthText;
      if (truth) {
        // A working copy is its master rounded: it is judged against the master's truth.
        const plan::Tensor *named =
            t->role() == plan::Role::WorkingCopy ? tensors.Get(uint32_t(t->master())) : t;
        auto it = truthIds.find(named->name() ? named->name()->str() : "");
        if (it != truthIds.end() && truthPlan->numElements(it->second) == n) {
          const std::vector<double> &tv = truth->tensor(it->second);
          std::vector<float> tf(tv.begin(), tv.end());
          auto tb = truthStart.find(int(id));
          const std::vector<float> *tbase = tb == truthStart.end() ? nullptr : &tb->second;
          const double eCpu = compare(cpu.tensor(int(id)), tf, tbase).l2rel;
          const double eGpu = compare(gbuf, tf, tbase).l2rel;
          char text[64];
          std::snprintf(text, sizeof text, " %11.3g %12.3g", eCpu, eGpu);
          truthText = text;
          const bool noise = eCpu > 1.0; // the truth is smaller than the emulation's noise
          if (bad && eGpu <= (noise ? o.noiseFactor : o.truthFactor) * eCpu) {
            bad = false;
            truthText +=
                noise ? "  (noise around a truth of ~0, within --noise-factor of the emulation's)"
                      : "  (within the emulation's distance)";
          }
        }
      }
      ++compared;
      if (bad && state)
        ++exceeded;
      if (!last && !bad) // earlier steps: only what exceeds
        continue;
      if (!header)
        printHeader(step);
      std::string name = t->name() ? t->name()->str() : "";
      if (name.size() > 40)
        name = "..." + name.substr(name.size() - 37);
      std::printf("%-6u %-40s %-5s %-12s %12.3g %12.3g %12.3g %12.3g%s%s%s\n", id, name.c_str(),
                  plan::EnumNameDType(t->dtype()), plan::EnumNameRole(t->role()), c.l2rel, c.rel,
                  c.absMax, c.refMax, truthText.c_str(), bad ? "  EXCEEDS" : "",
                  c.mismatch.empty() ? "" : ("  (" + c.mismatch + ")").c_str());
      if (bad && !state && !firstTempReported) {
        firstTempReported = true;
        std::printf("       ^ the first temporary beyond the tolerance (by tensor id)\n");
      }
    }
    return std::make_pair(compared, exceeded);
  };
  int compared = 0, exceeded = 0;
  for (int step = 0; step < o.steps; ++step) {
    if (step > 0 && o.resync) {
      resync();
      snapshot();
    }
    for (Feed &f : feeds) {
      buf.resize(size_t(f.count));
      if (!f.file.empty()) {
        size_t batches = f.file.size() / size_t(f.count);
        size_t start = (size_t(step) % batches) * size_t(f.count);
        std::copy(f.file.begin() + long(start), f.file.begin() + long(start) + f.count, buf.begin());
      } else if (f.classes > 0) {
        std::uniform_int_distribution<int64_t> cls(0, f.classes - 1);
        for (float &v : buf)
          v = float(cls(rng));
      } else {
        for (float &v : buf)
          v = normal(rng);
      }
      if (truth) {
        auto it = truthIds.find(f.name);
        if (it == truthIds.end())
          throw Error(o.truth + ": no input '" + f.name + "'");
        if (f.indices)
          std::copy(buf.begin(), buf.end(), truth->indexTensor(it->second).begin());
        else
          std::copy(buf.begin(), buf.end(), truth->tensor(it->second).begin());
      }
      if (f.indices) {
        std::vector<int32_t> idx(buf.begin(), buf.end());
        std::copy(idx.begin(), idx.end(), cpu.indexTensor(f.id).begin());
        gpu->writeIndices(f.id, idx.data(), idx.size());
      } else {
        std::vector<float> &c = cpu.tensor(f.id);
        std::copy(buf.begin(), buf.end(), c.begin());
        kernels::roundToDType(tensors.Get(f.id)->dtype(), c.data(), int64_t(c.size()));
        gpu->write(f.id, buf.data(), buf.size());
      }
    }
    cpu.run("train_step");
    gpu->run("train_step");
    if (truth)
      truth->run("train_step");
    if (lossId >= 0 && tensors.Get(lossId)->dtype() != plan::DType::I32) {
      float gl;
      gpu->read(lossId, &gl, 1);
      float cl = cpu.tensor(lossId)[0];
      double rel = std::fabs(double(gl) - double(cl)) / std::max(1e-30, std::fabs(double(cl)));
      // The loss is a mean over the batch, which averages its elements' rounding
      // differences: tol / 10 by default (on the emulated GPU, 3 steps of mlp_digits, cnn_digits
      // and a small unet in
      // every precision put the loss within 8.4e-6 of the CPU's). Within tol, a stale loss (a
      // reduction that did not run) would pass: from one step to the next the loss moves by about
      // that much.
      const double lossTol = o.lossTol >= 0 ? o.lossTol : o.tol / 10;
      bool bad = !(rel <= lossTol) && !(std::isnan(gl) && std::isnan(cl));
      std::printf("step %d: loss cpu %.9g  cuda %.9g  rel %.3g%s\n", step, cl, gl, rel,
                  bad ? "  EXCEEDS" : "");
      ok = ok && !bad;
    }
    // With resync every step is judged (the next one starts from the GPU's state, so
    // an error of this one would be carried over, unseen); without, the last only.
    const bool last = step == o.steps - 1;
    if (o.resync || last) {
      auto [n, beyond] = judge(step, last);
      compared = n;
      exceeded += beyond;
    }
  }

  ok = ok && exceeded == 0;
  std::printf("\n%d tensors compared, %d persistent beyond --tol %g --atol %g%s: %s\n", compared,
              exceeded, o.tol, o.atol,
              truth ? (" and " + std::to_string(o.truthFactor) + " x the emulation's distance to the f64 truth").c_str() : "",
              ok ? "OK" : "MISMATCH");

  if (o.bench > 0) {
    // read() synchronises: read a small floating-point tensor before and after.
    int syncId = lossId;
    for (flatbuffers::uoffset_t id = 0; syncId < 0 && id < tensors.size(); ++id)
      if (tensors.Get(id)->dtype() != plan::DType::I32)
        syncId = int(id);
    std::vector<float> sink(syncId >= 0 ? size_t(plan.numElements(syncId)) : 0);
    auto sync = [&] {
      if (syncId >= 0)
        gpu->read(syncId, sink.data(), sink.size());
    };
    sync();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.bench; ++i)
      gpu->run("train_step");
    sync();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("cuda: %d steps in %.1f ms: %.3f ms/step (inputs not rewritten)\n", o.bench, ms,
                ms / o.bench);
  }
  return ok ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
