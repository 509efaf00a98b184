//===- CpuExecutorAdapter.cpp - the CPU executor behind Executor ----------===//
#include "runtime/backend/Executor.h"
#include "runtime/cpu/CpuBackend.h"

#include "common/Error.h"
#include "common/Float16.h"

#include <algorithm>
#include <thread>

namespace mantissa {
namespace {

class CpuExecutorAdapter final : public Executor {
public:
  CpuExecutorAdapter(const LoadedPlan &plan, int threads) : exec_(plan, threads) {}
  const LoadedPlan &plan() const override { return exec_.plan(); }
  std::string backendName() const override { return "cpu"; }
  std::string deviceDescription() const override {
    return "CPU, " + std::to_string(exec_.threads()) + " threads";
  }
  void write(int id, const float *values, size_t n) override {
    std::vector<float> &t = exec_.tensor(id);
    check(id, n, t.size());
    switch (exec_.plan()->tensors()->Get(id)->dtype()) {
    case plan::DType::F16:
      std::transform(values, values + n, t.begin(), [](float v) { return roundToF16(v); });
      break;
    case plan::DType::BF16:
      std::transform(values, values + n, t.begin(), [](float v) { return roundToBF16(v); });
      break;
    default:
      std::copy(values, values + n, t.begin());
    }
  }
  void writeIndices(int id, const int32_t *values, size_t n) override {
    std::vector<int32_t> &t = exec_.indexTensor(id);
    check(id, n, t.size());
    std::copy(values, values + n, t.begin());
  }
  void read(int id, float *values, size_t n) override {
    const std::vector<float> &t = exec_.tensor(id);
    check(id, n, t.size());
    std::copy(t.begin(), t.begin() + long(n), values);
  }
  void run(const std::string &function) override { exec_.run(function); }

private:
  void check(int id, size_t n, size_t size) const {
    if (n != size)
      throw Error("tensor " + std::to_string(id) + " holds " + std::to_string(size) +
                  " elements, not " + std::to_string(n));
  }
  CpuExecutor<float> exec_;
};

} // namespace

std::unique_ptr<Executor> makeCpuExecutor(const LoadedPlan &plan, int threads) {
  return std::make_unique<CpuExecutorAdapter>(plan, threads);
}

} // namespace mantissa
