//===- Checkpoint.cpp - saving and loading training state -----------------===//
#include "runtime/train/Checkpoint.h"

#include "common/Error.h"
#include "runtime/io/Npz.h"
#include "runtime/io/Safetensors.h"

#include <cstdio>
#include <cmath>
#include <map>
#include <set>

namespace mantissa {
namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

enum class Format { Safetensors, Npz };

Format formatOf(const std::string &path) {
  if (endsWith(path, ".safetensors"))
    return Format::Safetensors;
  if (endsWith(path, ".npz"))
    return Format::Npz;
  throw Error(path + ": unknown checkpoint format; name the file *.safetensors or *.npz");
}

bool persistent(plan::Role role) {
  return role == plan::Role::Param || role == plan::Role::Buffer ||
         role == plan::Role::OptState || role == plan::Role::ScalerState;
}

std::vector<int64_t> shapeOf(const plan::Tensor &t) {
  return t.shape() ? std::vector<int64_t>(t.shape()->begin(), t.shape()->end())
                   : std::vector<int64_t>{};
}

} // namespace

void checkCheckpointFormat(const std::string &path) { formatOf(path); }

void saveCheckpoint(Executor &exec, const std::string &path, int64_t step) {
  Format format = formatOf(path);
  std::vector<HostTensor> out;
  const auto *tensors = exec.plan()->tensors();
  for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
    const plan::Tensor *t = tensors->Get(i);
    if (!persistent(t->role()) || !t->name())
      continue;
    std::string name = t->name()->str();
    // PyTorch keeps counters as int64 tensors.
    bool counter = endsWith(name, ".num_batches_tracked") || name == "optimizer.step";
    std::vector<float> values(size_t(exec.plan().numElements(int(i))));
    exec.read(int(i), values.data(), values.size());
    out.push_back(HostTensor::fromFloats(name, shapeOf(*t), values,
                                         counter ? HostTensor::DType::I64
                                                 : HostTensor::DType::F32));
  }
  out.push_back(HostTensor::fromFloats("trainer.step", {}, {float(step)}, HostTensor::DType::I64));
  if (format == Format::Safetensors) {
    std::map<std::string, std::string> meta = {
        {"format", "mantissa-checkpoint"},
        {"model", exec.plan()->model() && exec.plan()->model()->name()
                      ? exec.plan()->model()->name()->str()
                      : ""},
        {"plan", exec.plan().name()}};
    writeSafetensors(path, out, meta);
  } else {
    writeNpz(path, out);
  }
}

int64_t loadCheckpoint(Executor &exec, const std::string &path) {
  Format format = formatOf(path);
  std::vector<HostTensor> file =
      format == Format::Safetensors ? readSafetensors(path).tensors : readNpz(path);
  std::map<std::string, const HostTensor *> byName;
  for (const HostTensor &t : file)
    byName[t.name] = &t;
  std::set<std::string> used;
  const auto *tensors = exec.plan()->tensors();
  for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
    const plan::Tensor *t = tensors->Get(i);
    if (!persistent(t->role()) || !t->name())
      continue;
    std::string name = t->name()->str();
    auto it = byName.find(name);
    if (it == byName.end()) {
      if (t->role() == plan::Role::Param || t->role() == plan::Role::Buffer)
        throw Error(path + ": has no tensor '" + name + "', which the plan's model needs");
      continue; // optimizer/scaler state absent: keep the initial value
    }
    const HostTensor &h = *it->second;
    if (h.shape != shapeOf(*t))
      throw Error(path + ": tensor '" + name + "' has shape " + shapeToString(h.shape) +
                  ", the plan expects " + shapeToString(shapeOf(*t)));
    std::vector<float> values = h.toFloats();
    for (float v : values)
      if (!std::isfinite(v))
        throw Error(path + ": tensor '" + name + "' holds a non-finite value");
    exec.write(int(i), values.data(), values.size());
    used.insert(name);
  }
  int64_t step = 0;
  if (auto it = byName.find("trainer.step"); it != byName.end()) {
    std::vector<double> v = it->second->toDoubles();
    if (v.size() != 1 || v[0] < 0)
      throw Error(path + ": 'trainer.step' must be one non-negative integer");
    step = int64_t(v[0]);
    used.insert("trainer.step");
  }
  for (const HostTensor &t : file)
    if (!used.count(t.name))
      std::fprintf(stderr, "warning: %s: tensor '%s' is not part of this plan; ignored\n",
                   path.c_str(), t.name.c_str());
  return step;
}

} // namespace mantissa
