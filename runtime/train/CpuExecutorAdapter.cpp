//===- CpuExecutorAdapter.cpp - the CPU executor behind Executor ----------===//
#include "runtime/backend/Executor.h"
#include "runtime/cpu/CpuBackend.h"

#include "common/Error.h"
#include "common/Float16.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

namespace mantissa {
namespace {

class CpuExecutorAdapter final : public Executor {
public:
  // MANTISSA_CPU_ARENA=1: temps at their memory-plan offsets in one arena, as on the
  // GPU (CpuExecutor's arena mode): a check of the memory plan on the CPU. =poison also
  // sets the arena's bytes that no temp live at a step holds to NaN before that step
  // (where the CUDA backend puts the step's scratch).
  CpuExecutorAdapter(const LoadedPlan &plan, int threads, bool keepTemps)
      : exec_(plan, threads, arenaRequested() && !keepTemps) {
    const char *v = std::getenv("MANTISSA_CPU_ARENA");
    exec_.poisonFreeArena(v && std::string(v) == "poison");
  }
  static bool arenaRequested() {
    const char *v = std::getenv("MANTISSA_CPU_ARENA");
    return v && std::string(v) != "0";
  }
  const LoadedPlan &plan() const override { return exec_.plan(); }
  std::string backendName() const override { return "cpu"; }
  std::string deviceDescription() const override {
    return "CPU, " + std::to_string(exec_.threads()) + " threads";
  }
  void store(int id, const float *values, size_t n) override {
    float *t = floats(id);
    check(id, n, exec_.count(id));
    switch (exec_.plan()->tensors()->Get(id)->dtype()) {
    case plan::DType::F16:
      std::transform(values, values + n, t, [](float v) { return roundToF16(v); });
      break;
    case plan::DType::BF16:
      std::transform(values, values + n, t, [](float v) { return roundToBF16(v); });
      break;
    default:
      std::copy(values, values + n, t);
    }
  }
  void writeIndices(int id, const int32_t *values, size_t n) override {
    std::vector<int32_t> &t = exec_.indexTensor(id);
    check(id, n, t.size());
    std::copy(values, values + n, t.begin());
  }
  void read(int id, float *values, size_t n) override {
    const float *t = floats(id);
    check(id, n, exec_.count(id));
    std::copy(t, t + n, values);
  }
  void run(const std::string &function) override { exec_.run(function); }

  // The timeline: each step timed on the host clock as it runs (the CPU executes
  // synchronously, so a step's span is its kernel's span).
  bool enableTimeline(bool on) override {
    if (!on) {
      exec_.setStepObserver(nullptr);
      return true;
    }
    exec_.setStepObserver([this](const plan::Function &fn, uint32_t step,
                                 std::chrono::steady_clock::time_point a,
                                 std::chrono::steady_clock::time_point b) {
      spans_.push_back({functionIndex(fn), step, tag_, seconds(a), seconds(b)});
    });
    return true;
  }
  void setTimelineTag(int64_t tag) override { tag_ = tag; }
  void drainTimeline(std::vector<StepSpan> &out) override {
    out.insert(out.end(), spans_.begin(), spans_.end());
    spans_.clear();
  }
  std::string timelineMethod() const override { return "CPU steady_clock around each step"; }
  std::string timelineName() const override { return "cpu"; }
  bool replayStep(const std::string &function, uint32_t step, int64_t times) override {
    for (int64_t i = 0; i < times; ++i)
      exec_.runOneStep(function, step);
    return true;
  }

private:
  /// The elements of floating-point tensor `id` (in the arena or not).
  float *floats(int id) {
    float *t = exec_.data(id); // throws for a bad id
    if (exec_.plan()->tensors()->Get(id)->dtype() == plan::DType::I32)
      throw Error("tensor " + std::to_string(id) + " is I32: use indexTensor");
    return t;
  }
  void check(int id, size_t n, size_t size) const {
    if (n != size)
      throw Error("tensor " + std::to_string(id) + " holds " + std::to_string(size) +
                  " elements, not " + std::to_string(n));
  }
  static double seconds(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  }
  uint32_t functionIndex(const plan::Function &fn) const {
    const auto *fns = exec_.plan()->functions();
    for (uint32_t i = 0; i < fns->size(); ++i)
      if (fns->Get(i) == &fn)
        return i;
    throw Error("internal: a function not in the plan");
  }

  CpuExecutor<float> exec_;
  std::vector<StepSpan> spans_;
  int64_t tag_ = -1;
};

} // namespace

std::unique_ptr<Executor> makeCpuExecutor(const LoadedPlan &plan, int threads, bool keepTemps) {
  return std::make_unique<CpuExecutorAdapter>(plan, threads, keepTemps);
}

} // namespace mantissa
