//===- PlanLoader.cpp - structural and semantic verification of plans ------===//
#include "runtime/cpu/PlanLoader.h"
#include "plan/DType.h"
#include "plan/PlanIntegrity.h"

#include "common/Hash.h"
#include "common/Init.h"

#include "common/Error.h"
#include "runtime/kernels/Elementwise.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace mantissa {

namespace {

using plan::Kernel;

/// Checks one plan, with the context (function, step) kept for messages.
class Checker {
public:
  Checker(const plan::Plan &p, const std::string &file, std::vector<int64_t> &numElements,
          std::vector<std::vector<LoadedPlan::ArenaTemp>> &arenaTemps)
      : p_(p), file_(file), numElements_(numElements), arenaTemps_(arenaTemps) {}

  void run();

private:
  [[noreturn]] void fail(const std::string &what) const {
    throw Error(file_ + ": " + (context_.empty() ? "" : context_ + ": ") + what);
  }

  int64_t mul(int64_t a, int64_t b) const {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
      fail("element count overflows");
    return r;
  }
  int64_t product(std::initializer_list<int64_t> dims) const {
    int64_t r = 1;
    for (int64_t d : dims)
      r = mul(r, d);
    return r;
  }
  int64_t product(const flatbuffers::Vector<int64_t> *dims) const {
    int64_t r = 1;
    if (dims)
      for (int64_t d : *dims)
        r = mul(r, d);
    return r;
  }

  std::string describe(int id) const {
    const plan::Tensor *t = p_.tensors()->Get(id);
    return "tensor " + std::to_string(id) + " '" + (t->name() ? t->name()->str() : "") + "'";
  }

  /// `operand` must name a tensor; returns it. Inside a step, records the reference
  /// (the liveness of temps for the memory plan's check).
  const plan::Tensor *ref(int id, const std::string &operand) const {
    if (id < 0 || id >= numTensors_)
      fail("operand " + operand + " is tensor " + std::to_string(id) + ", but the plan has " +
           std::to_string(numTensors_) + " tensors");
    if (step_ >= 0) {
      auto &r = live_[size_t(id)];
      if (r.first < 0)
        r.first = step_;
      r.second = step_;
    }
    return p_.tensors()->Get(id);
  }
  /// A float-valued tensor of exactly `expected` elements.
  void data(int id, const std::string &operand, int64_t expected) const {
    const plan::Tensor *t = ref(id, operand);
    if (t->dtype() == plan::DType::I32)
      fail("operand " + operand + " (" + describe(id) +
           ") is I32, expected a floating-point tensor");
    count(id, operand, expected);
  }
  /// Class labels: integers stored either in a floating-point tensor or in I32.
  void labels(int id, int64_t expected) const {
    ref(id, "labels");
    count(id, "labels", expected);
  }
  void optionalData(int id, const std::string &operand, int64_t expected) const {
    if (id != -1)
      data(id, operand, expected);
  }
  void index(int id, const std::string &operand, int64_t expected) const {
    const plan::Tensor *t = ref(id, operand);
    if (t->dtype() != plan::DType::I32)
      fail("operand " + operand + " (" + describe(id) + ") is " + plan::EnumNameDType(t->dtype()) +
           ", expected I32");
    count(id, operand, expected);
  }
  void count(int id, const std::string &operand, int64_t expected) const {
    if (numElements_[id] != expected)
      fail("operand " + operand + " (" + describe(id) + ") has " +
           std::to_string(numElements_[id]) + " elements, expected " + std::to_string(expected));
  }
  void atLeast(int64_t v, int64_t min, const char *param) const {
    if (v < min)
      fail(std::string(param) + " is " + std::to_string(v) + ", expected at least " +
           std::to_string(min));
  }
  template <class V> const V &present(const V *v, const char *field) const {
    if (!v)
      fail(std::string("missing field '") + field + "'");
    return *v;
  }

  void checkTensors();
  void checkCudaCode(const plan::CudaCode &code);
  void checkStep(const plan::Step &step);
  void checkElementwise(const plan::Elementwise &k);
  void checkGemm(const plan::Gemm &k);
  void checkConv(const plan::Conv2d &k);
  void checkBatchNorm(const plan::BatchNorm &k);
  void checkBatchNormBackward(const plan::BatchNormBackward &k);
  void checkReduce(const plan::Reduce &k);
  void checkTranspose(const plan::Transpose &k);
  void checkConcat(const plan::Concat &k);
  bool inPlace(const plan::Function &fn, int64_t s, int in, int out) const;
  void checkMemory(const plan::Function &fn, int64_t steps);

  uint64_t bytesOf(int id) const {
    return uint64_t(numElements_[id]) * dtypeBytes(p_.tensors()->Get(id)->dtype());
  }

  const plan::Plan &p_;
  const std::string &file_;
  std::vector<int64_t> &numElements_;
  std::vector<std::vector<LoadedPlan::ArenaTemp>> &arenaTemps_; // per function: checkMemory's
  std::string context_;
  int numTensors_ = 0;
  // Memory plan: the step being checked (-1 outside steps) and, per tensor, the first
  // and last step of the current function that refer to it.
  int64_t step_ = -1;
  mutable std::vector<std::pair<int64_t, int64_t>> live_;
  // The tensors that steps of the current function add into (a Gemm's c with beta != 0, a
  // convolution's out with accumulate), with the step.
  std::vector<std::pair<int, int64_t>> accumulated_;
};

void Checker::run() {
  checkTensors();
  if (const plan::LossScaling *ls = p_.loss_scaling()) {
    context_ = "loss_scaling";
    if (ls->mode() > plan::LossScaleMode::MAX)
      fail("unknown mode " + std::to_string(int(ls->mode())));
    std::pair<int, const char *> refs[] = {{ls->scale(), "scale"},
                                           {ls->growth_tracker(), "growth_tracker"},
                                           {ls->found_finite(), "found_finite"}};
    for (auto &r : refs)
      if (r.first != -1)
        data(r.first, r.second, 1);
    context_.clear();
  }
  const auto &functions = present(p_.functions(), "functions");
  std::set<std::string> names;
  for (flatbuffers::uoffset_t f = 0; f < functions.size(); ++f) {
    const plan::Function *fn = functions.Get(f);
    context_ = "function " + std::to_string(f);
    std::string name = present(fn->name(), "name").str();
    if (!names.insert(name).second)
      fail("function '" + name + "' appears twice");
    context_ = name;
    if (fn->outputs())
      for (flatbuffers::uoffset_t i = 0; i < fn->outputs()->size(); ++i)
        ref(fn->outputs()->Get(i), "output " + std::to_string(i));
    live_.assign(size_t(numTensors_), {-1, -1});
    accumulated_.clear();
    const int64_t numSteps = fn->steps() ? int64_t(fn->steps()->size()) : 0;
    for (flatbuffers::uoffset_t s = 0; s < uint32_t(numSteps); ++s) {
      step_ = int64_t(s);
      const plan::Step *step = fn->steps()->Get(s);
      context_ = name + " step " + std::to_string(s) + " '" +
                 (step->name() ? step->name()->str() : "") + "'";
      if (step->kernel_type() == Kernel::NONE || step->kernel_type() > Kernel::MAX)
        fail("unknown kernel type " + std::to_string(int(step->kernel_type())));
      context_ += std::string(" (") + plan::EnumNameKernel(step->kernel_type()) + ")";
      if (!step->kernel())
        fail("the kernel table is missing");
      if (step->precision() > plan::DType::MAX)
        fail("unknown precision " + std::to_string(int(step->precision())));
      checkStep(*step);
    }
    step_ = -1;
    context_ = name;
    checkMemory(*fn, numSteps);
  }
  context_.clear();
  if (p_.cuda())
    checkCudaCode(*p_.cuda());
  context_.clear();
}

/// "sm_90" (prefix "sm_") or "compute_80": the prefix and a number.
bool isArchName(const std::string &s, const std::string &prefix) {
  return s.size() > prefix.size() && s.compare(0, prefix.size(), prefix) == 0 &&
         s.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
}

/// The kernels compiled ahead of time (version 4): what the CUDA executor loads
/// without looking further, so every field it relies on is checked here, and each
/// source against its hash (the key of deduplication and of the NVRTC cache).
void Checker::checkCudaCode(const plan::CudaCode &code) {
  context_ = "cuda";
  if (present(code.nvrtc_version(), "nvrtc_version").size() == 0)
    fail("empty nvrtc_version");
  const std::string prelude = present(code.prelude(), "prelude").str();
  std::set<std::string> archs;
  for (const flatbuffers::String *a : present(code.archs(), "archs")) {
    if (!isArchName(a->str(), "sm_"))
      fail("architecture '" + a->str() + "' is not like sm_90");
    if (!archs.insert(a->str()).second)
      fail("architecture " + a->str() + " appears twice");
  }
  std::set<std::string> names;
  const auto &kernels = present(code.kernels(), "kernels");
  for (flatbuffers::uoffset_t i = 0; i < kernels.size(); ++i) {
    const plan::CudaKernel *k = kernels.Get(i);
    context_ = "cuda kernel " + std::to_string(i);
    const std::string name = present(k->name(), "name").str();
    if (name.empty() || !names.insert(name).second)
      fail("kernel name '" + name + "' is empty or appears twice");
    context_ += " '" + name + "'";
    if (present(k->entries(), "entries").size() == 0)
      fail("no entry points");
    for (const flatbuffers::String *e : *k->entries())
      if (e->size() == 0)
        fail("an empty entry point name");
    if (k->precision() > plan::DType::MAX)
      fail("unknown precision " + std::to_string(int(k->precision())));
    const std::string hash = hex16(fnv1a64(prelude + "\n" + present(k->source(), "source").str()));
    if (present(k->source_hash(), "source_hash").str() != hash)
      fail("source_hash " + k->source_hash()->str() + " does not match its source (" + hash + ")");
    std::set<std::string> cubinArchs;
    for (const plan::CudaCubin *c : present(k->cubins(), "cubins")) {
      const std::string arch = present(c->arch(), "arch").str();
      if (!archs.count(arch) || !cubinArchs.insert(arch).second)
        fail("CUBIN for '" + arch + "', which is not one of the plan's architectures or appears twice");
      const auto &image = present(c->image(), "image");
      if (image.size() < 64 || std::memcmp(image.data(), "\x7f" "ELF", 4) != 0)
        fail("the CUBIN for " + arch + " is not an ELF image (" + std::to_string(image.size()) +
             " bytes)");
    }
    if (cubinArchs.size() != archs.size())
      fail("CUBINs for " + std::to_string(cubinArchs.size()) + " of the plan's " +
           std::to_string(archs.size()) + " architectures");
    if (k->ptx()) {
      if (!isArchName(present(k->ptx_arch(), "ptx_arch").str(), "compute_"))
        fail("ptx_arch '" + k->ptx_arch()->str() + "' is not like compute_80");
      if (k->ptx()->str().find(".entry") == std::string::npos)
        fail("the PTX has no .entry (not PTX)");
    }
    if (archs.empty() && !k->ptx())
      fail("neither CUBIN nor PTX");
  }
}

/// Whether temp `out` may take the bytes of temp `in` at step `s`: an elementwise
/// step that reads `in` only at its own index (as many elements as the iteration,
/// contiguous strides) and writes `out`, an element of the same size in the same
/// bytes, so that each element is read before the same thread writes it; or the MSE
/// gradient writing da over a or b; or batch norm's dx over dy, x or the mask (its
/// second pass, after the per-channel sums).
bool Checker::inPlace(const plan::Function &fn, int64_t s, int in, int out) const {
  const plan::Step *step = fn.steps()->Get(uint32_t(s));
  const plan::Tensor *ti = p_.tensors()->Get(in), *to = p_.tensors()->Get(out);
  if (ti->offset() != to->offset() || dtypeBytes(ti->dtype()) != dtypeBytes(to->dtype()) ||
      numElements_[in] != numElements_[out])
    return false;
  if (const plan::MseLossBackward *m = step->kernel_as_MseLossBackward()) // da[i] from a[i], b[i]
    return (in == m->a() || in == m->b()) && out == m->da() && in != m->dloss();
  // dx[i] from dy[i], x[i] and mask[i], once the sums over the channel are taken.
  if (const plan::BatchNormBackward *b = step->kernel_as_BatchNormBackward())
    return (in == b->dy() || in == b->x() || in == b->mask()) && out == b->dx() &&
           out != b->dgamma() && out != b->dbeta();
  if (step->kernel_type() != Kernel::Elementwise)
    return false;
  const plan::Elementwise &k = *step->kernel_as_Elementwise();
  if (numElements_[in] != product(k.shape()))
    return false;
  bool reads = false, writes = false;
  for (const plan::Operand *o : *k.inputs()) {
    if (o->tensor() != in)
      continue;
    reads = true;
    int64_t expected = 1;
    for (int d = int(k.shape()->size()) - 1; d >= 0; --d) {
      int64_t extent = k.shape()->Get(uint32_t(d));
      if (extent > 1 && (!o->strides() || o->strides()->size() != k.shape()->size() ||
                         o->strides()->Get(uint32_t(d)) != expected))
        return false;
      expected *= extent;
    }
  }
  for (int o : *k.outputs()) {
    if (o == in)
      return false;
    writes = writes || o == out;
  }
  return reads && writes;
}

/// The memory plan: within this function, temps live at a common step (from their
/// first to their last reference, to the end for outputs and found_finite) must not
/// share bytes of the arena, except for a result written in place of an input that
/// dies at its step (inPlace).
void Checker::checkMemory(const plan::Function &fn, int64_t steps) {
  auto toEnd = [&](int id) {
    if (id >= 0 && id < numTensors_ && live_[size_t(id)].first >= 0)
      live_[size_t(id)].second = steps;
  };
  if (fn.outputs())
    for (int o : *fn.outputs())
      toEnd(o);
  if (p_.loss_scaling())
    toEnd(p_.loss_scaling()->found_finite());
  // An arena temp has no value before its first step: other temps, and the backend's
  // scratch (CUDA), use its bytes while it is not live. So its first step must write it.
  for (const auto &[id, step] : accumulated_)
    if (p_.tensors()->Get(id)->offset() >= 0 && live_[size_t(id)].first == step)
      fail("memory plan: step " + std::to_string(step) + " adds into " + describe(id) +
           ", an arena temp that holds no value before that step (its bytes are shared by "
           "liveness): write it first, or keep it outside the arena");
  using Live = LoadedPlan::ArenaTemp;
  std::vector<Live> temps;
  for (int id = 0; id < numTensors_; ++id) {
    const plan::Tensor *t = p_.tensors()->Get(id);
    uint64_t bytes = bytesOf(id);
    if (t->offset() < 0 || bytes == 0 || live_[size_t(id)].first < 0)
      continue;
    temps.push_back(
        {live_[size_t(id)].first, live_[size_t(id)].second, uint64_t(t->offset()), bytes, id});
  }
  std::sort(temps.begin(), temps.end(),
            [](const Live &a, const Live &b) { return a.start < b.start; });
  for (size_t i = 0; i < temps.size(); ++i)
    for (size_t j = i + 1; j < temps.size() && temps[j].start <= temps[i].end; ++j) {
      const Live &a = temps[i], &b = temps[j];
      if (a.end == b.start && b.start < steps && inPlace(fn, a.end, a.id, b.id))
        continue;
      if (a.begin < b.begin + b.bytes && b.begin < a.begin + a.bytes)
        fail("memory plan: " + describe(a.id) + " (bytes [" + std::to_string(a.begin) + ", " +
             std::to_string(a.begin + a.bytes) + "), live at steps " + std::to_string(a.start) +
             ".." + std::to_string(a.end) + ") and " + describe(b.id) + " (bytes [" +
             std::to_string(b.begin) + ", " + std::to_string(b.begin + b.bytes) +
             "), live at steps " + std::to_string(b.start) + ".." + std::to_string(b.end) +
             ") overlap in the arena while both are live");
    }
  arenaTemps_.push_back(std::move(temps));
}

void Checker::checkTensors() {
  const auto &tensors = present(p_.tensors(), "tensors");
  numTensors_ = int(tensors.size());
  numElements_.assign(tensors.size(), 0);
  for (int id = 0; id < numTensors_; ++id) {
    const plan::Tensor *t = tensors.Get(id);
    context_ = describe(id);
    if (t->dtype() > plan::DType::MAX)
      fail("unknown dtype " + std::to_string(int(t->dtype())));
    if (t->role() > plan::Role::MAX)
      fail("unknown role " + std::to_string(int(t->role())));
    if (t->shape())
      for (flatbuffers::uoffset_t d = 0; d < t->shape()->size(); ++d)
        if (t->shape()->Get(d) < 0)
          fail("dimension " + std::to_string(d) + " is " + std::to_string(t->shape()->Get(d)));
    numElements_[id] = product(t->shape());
    bool persistent = t->role() != plan::Role::Temp && t->role() != plan::Role::Input;
    int64_t initSize = t->init() ? int64_t(t->init()->size()) : 0;
    if (t->role() == plan::Role::WorkingCopy) {
      // Its value is always its master's, rounded: no initialiser of its own.
      const int m = t->master();
      if (m < 0 || m >= int(tensors.size()) || tensors.Get(m)->role() != plan::Role::Param)
        fail("a WorkingCopy needs a Param as its master, got tensor " + std::to_string(m));
      if (t->dtype() != plan::DType::F16 && t->dtype() != plan::DType::BF16)
        fail(std::string("a WorkingCopy is F16 or BF16, got ") + plan::EnumNameDType(t->dtype()));
      if (tensors.Get(m)->dtype() != plan::DType::F32 ||
          product(tensors.Get(m)->shape()) != numElements_[id])
        fail("a WorkingCopy has the element count of its F32 master (" + describe(m) + ")");
      if (t->init_kind() != plan::InitKind::Values || initSize != 0)
        fail("a WorkingCopy has no initial value of its own (it is its master's)");
      if (!t->name())
        fail("a WorkingCopy needs a name");
    } else if (t->master() != -1) {
      fail("only a WorkingCopy has a master (got tensor " + std::to_string(t->master()) + ")");
    }
    switch (t->init_kind()) {
    case plan::InitKind::Values:
      if (persistent && t->role() != plan::Role::WorkingCopy && initSize != numElements_[id])
        fail(std::string("init has ") + std::to_string(initSize) + " values, expected " +
             std::to_string(numElements_[id]) + " for a " + plan::EnumNameRole(t->role()));
      break;
    case plan::InitKind::Uniform:
      if (!(t->init_bound() > 0) || !std::isfinite(t->init_bound()) || !t->name())
        fail("a Uniform initialiser needs a positive finite bound and a name");
      break;
    case plan::InitKind::Fill:
      if (!std::isfinite(t->init_fill()))
        fail("a Fill initialiser needs a finite value");
      break;
    default:
      fail("unknown initialiser kind " + std::to_string(int(t->init_kind())));
    }
    if (!persistent && initSize != 0 && initSize != numElements_[id])
      fail("init has " + std::to_string(initSize) + " values, expected 0 or " +
           std::to_string(numElements_[id]));
    if (t->offset() != -1) {
      if (t->role() != plan::Role::Temp)
        fail("memory plan: a " + std::string(plan::EnumNameRole(t->role())) +
             " has an arena offset (" + std::to_string(t->offset()) +
             "); only Temp tensors live in the arena");
      if (initSize != 0)
        fail("memory plan: a Temp in the arena cannot have initial values");
      if (numElements_[id] > (int64_t(1) << 56))
        fail("memory plan: a Temp of " + std::to_string(numElements_[id]) +
             " elements cannot be in the arena");
      if (t->offset() < 0 || t->offset() % 256 != 0)
        fail("memory plan: offset " + std::to_string(t->offset()) +
             " is not a non-negative multiple of 256");
      uint64_t end = uint64_t(t->offset()) + bytesOf(id);
      if (end > p_.arena_bytes())
        fail("memory plan: bytes [" + std::to_string(t->offset()) + ", " + std::to_string(end) +
             ") lie outside the arena of " + std::to_string(p_.arena_bytes()) + " bytes");
    }
  }
  context_.clear();
}

void Checker::checkStep(const plan::Step &step) {
  switch (step.kernel_type()) {
  case Kernel::Elementwise:
    return checkElementwise(*step.kernel_as_Elementwise());
  case Kernel::Gemm:
    return checkGemm(*step.kernel_as_Gemm());
  case Kernel::Conv2d:
    return checkConv(*step.kernel_as_Conv2d());
  case Kernel::MaxPool2d:
  case Kernel::MaxPool2dBackward: {
    bool fwd = step.kernel_type() == Kernel::MaxPool2d;
    const auto *f = step.kernel_as_MaxPool2d();
    const auto *b = step.kernel_as_MaxPool2dBackward();
    int64_t n = fwd ? f->n() : b->n(), c = fwd ? f->c() : b->c(), h = fwd ? f->h() : b->h(),
            w = fwd ? f->w() : b->w(), kernel = fwd ? f->kernel() : b->kernel(),
            stride = fwd ? f->stride() : b->stride();
    atLeast(n, 0, "n");
    atLeast(c, 0, "c");
    atLeast(kernel, 1, "kernel");
    atLeast(stride, 1, "stride");
    atLeast(h, kernel, "h");
    atLeast(w, kernel, "w");
    if (mul(h, w) > INT32_MAX)
      fail("a plane of " + std::to_string(h * w) + " elements cannot be indexed by I32");
    int64_t in = product({n, c, h, w});
    int64_t out = product({n, c, (h - kernel) / stride + 1, (w - kernel) / stride + 1});
    if (fwd) {
      data(f->x(), "x", in);
      data(f->y(), "y", out);
      if (f->indices() != -1)
        index(f->indices(), "indices", out);
    } else {
      data(b->dy(), "dy", out);
      data(b->x(), "x", in);
      data(b->y(), "y", out);
      data(b->dx(), "dx", in);
    }
    return;
  }
  case Kernel::BatchNorm:
    return checkBatchNorm(*step.kernel_as_BatchNorm());
  case Kernel::BatchNormBackward:
    return checkBatchNormBackward(*step.kernel_as_BatchNormBackward());
  case Kernel::SoftmaxCrossEntropy: {
    const auto &k = *step.kernel_as_SoftmaxCrossEntropy();
    atLeast(k.n(), 1, "n");
    atLeast(k.c(), 1, "c");
    data(k.logits(), "logits", mul(k.n(), k.c()));
    labels(k.labels(), k.n());
    data(k.loss(), "loss", 1);
    return;
  }
  case Kernel::SoftmaxCrossEntropyBackward: {
    const auto &k = *step.kernel_as_SoftmaxCrossEntropyBackward();
    atLeast(k.n(), 1, "n");
    atLeast(k.c(), 1, "c");
    data(k.logits(), "logits", mul(k.n(), k.c()));
    labels(k.labels(), k.n());
    data(k.dloss(), "dloss", 1);
    data(k.dlogits(), "dlogits", mul(k.n(), k.c()));
    return;
  }
  case Kernel::MseLoss: {
    const auto &k = *step.kernel_as_MseLoss();
    atLeast(k.count(), 1, "count");
    data(k.a(), "a", k.count());
    data(k.b(), "b", k.count());
    data(k.loss(), "loss", 1);
    return;
  }
  case Kernel::MseLossBackward: {
    const auto &k = *step.kernel_as_MseLossBackward();
    atLeast(k.count(), 1, "count");
    data(k.a(), "a", k.count());
    data(k.b(), "b", k.count());
    data(k.dloss(), "dloss", 1);
    data(k.da(), "da", k.count());
    return;
  }
  case Kernel::Reduce:
    return checkReduce(*step.kernel_as_Reduce());
  case Kernel::Concat:
    return checkConcat(*step.kernel_as_Concat());
  case Kernel::Slice: {
    const auto &k = *step.kernel_as_Slice();
    atLeast(k.outer(), 0, "outer");
    atLeast(k.offset(), 0, "offset");
    atLeast(k.out_row(), 0, "out_row");
    atLeast(k.in_row(), k.offset() + k.out_row(), "in_row");
    data(k.input(), "input", mul(k.outer(), k.in_row()));
    data(k.output(), "output", mul(k.outer(), k.out_row()));
    return;
  }
  case Kernel::Transpose:
    return checkTranspose(*step.kernel_as_Transpose());
  case Kernel::Copy: {
    const auto &k = *step.kernel_as_Copy();
    atLeast(k.count(), 0, "count");
    data(k.input(), "input", k.count());
    data(k.output(), "output", k.count());
    return;
  }
  case Kernel::AllFinite: {
    const auto &k = *step.kernel_as_AllFinite();
    const auto &inputs = present(k.inputs(), "inputs");
    for (flatbuffers::uoffset_t i = 0; i < inputs.size(); ++i) {
      int id = inputs.Get(i);
      std::string name = "inputs[" + std::to_string(i) + "]";
      ref(id, name);
      data(id, name, numElements_[id]);
    }
    optionalData(k.multiplier(), "multiplier", 1);
    data(k.output(), "output", 1);
    return;
  }
  default:
    fail("unknown kernel type");
  }
}

void Checker::checkElementwise(const plan::Elementwise &k) {
  const auto &shape = present(k.shape(), "shape");
  const size_t rank = shape.size();
  for (size_t d = 0; d < rank; ++d)
    atLeast(shape.Get(d), 0, ("shape[" + std::to_string(d) + "]").c_str());
  int64_t total = product(&shape);
  const auto &inputs = present(k.inputs(), "inputs");
  for (flatbuffers::uoffset_t i = 0; i < inputs.size(); ++i) {
    const plan::Operand *in = inputs.Get(i);
    std::string name = "inputs[" + std::to_string(i) + "]";
    const plan::Tensor *t = ref(in->tensor(), name);
    if (t->dtype() == plan::DType::I32)
      fail("operand " + name + " (" + describe(in->tensor()) + ") is I32");
    size_t nstrides = in->strides() ? in->strides()->size() : 0;
    if (nstrides != rank)
      fail("operand " + name + " has " + std::to_string(nstrides) + " strides, expected " +
           std::to_string(rank) + " (the rank of the iteration shape)");
    // The furthest element read must lie inside the tensor.
    int64_t last = 0;
    for (size_t d = 0; d < rank; ++d) {
      int64_t st = in->strides()->Get(d);
      if (st < 0)
        fail("operand " + name + " has negative stride " + std::to_string(st));
      if (shape.Get(d) > 0)
        last += mul(shape.Get(d) - 1, st);
    }
    if (total > 0 && last >= numElements_[in->tensor()])
      fail("operand " + name + " (" + describe(in->tensor()) + ") has " +
           std::to_string(numElements_[in->tensor()]) + " elements, but its strides read element " +
           std::to_string(last));
  }
  const auto &outputs = present(k.outputs(), "outputs");
  size_t nregs = k.output_regs() ? k.output_regs()->size() : 0;
  if (nregs != outputs.size())
    fail(std::to_string(outputs.size()) + " outputs but " + std::to_string(nregs) + " output_regs");
  std::vector<int> regs;
  for (flatbuffers::uoffset_t o = 0; o < outputs.size(); ++o) {
    data(outputs.Get(o), "outputs[" + std::to_string(o) + "]", total);
    regs.push_back(k.output_regs()->Get(o));
  }
  const auto &program = present(k.program(), "program");
  std::string problem =
      kernels::ElementwiseProgram::check(reinterpret_cast<const plan::Instr *>(program.Data()),
                                         program.size(), regs, int(inputs.size()));
  if (!problem.empty())
    fail("program " + problem);
}

void Checker::checkGemm(const plan::Gemm &k) {
  atLeast(k.m(), 0, "m");
  atLeast(k.n(), 0, "n");
  atLeast(k.k(), 0, "k");
  atLeast(k.batch(), 1, "batch");
  for (int64_t d : {k.m(), k.n(), k.k()})
    if (d > INT32_MAX)
      fail("dimension " + std::to_string(d) + " exceeds what BLAS can index");
  data(k.a(), "a", product({k.batch(), k.m(), k.k()}));
  data(k.b(), "b", product({k.batch(), k.k(), k.n()}));
  data(k.c(), "c", product({k.batch(), k.m(), k.n()}));
  if (k.beta() != 0.0f)
    accumulated_.push_back({k.c(), step_});
  if (k.bias() == -1) {
    if (k.relu())
      fail("relu without a bias (the epilogue is bias or bias + relu)");
    return;
  }
  // The epilogue (cuBLASLt's BIAS / RELU_BIAS): one matrix, overwritten, one type.
  if (k.batch() != 1 || k.beta() != 0.0f) {
    std::ostringstream got;
    got << "batch " << k.batch() << " and beta " << k.beta();
    fail("a bias epilogue needs batch 1 and beta 0, got " + got.str());
  }
  data(k.bias(), "bias", k.n());
  plan::DType ct = p_.tensors()->Get(k.c())->dtype();
  for (auto [id, operand] : {std::pair{k.a(), "a"}, {k.b(), "b"}, {k.bias(), "bias"}})
    if (p_.tensors()->Get(id)->dtype() != ct)
      fail(std::string("operand ") + operand + " (" + describe(id) + ") is " +
           plan::EnumNameDType(p_.tensors()->Get(id)->dtype()) +
           "; a bias epilogue needs a, b, bias and c of c's type " + plan::EnumNameDType(ct));
}

void Checker::checkConv(const plan::Conv2d &k) {
  if (k.kind() > plan::ConvKind::MAX)
    fail("unknown conv kind " + std::to_string(int(k.kind())));
  atLeast(k.n(), 0, "n");
  atLeast(k.c(), 1, "c");
  atLeast(k.k(), 1, "k");
  atLeast(k.r(), 1, "r");
  atLeast(k.s(), 1, "s");
  atLeast(k.stride_h(), 1, "stride_h");
  atLeast(k.stride_w(), 1, "stride_w");
  atLeast(k.pad_h(), 0, "pad_h");
  atLeast(k.pad_w(), 0, "pad_w");
  atLeast(k.h() + 2 * k.pad_h(), k.r(), "h + 2 * pad_h");
  atLeast(k.w() + 2 * k.pad_w(), k.s(), "w + 2 * pad_w");
  int64_t p = (k.h() + 2 * k.pad_h() - k.r()) / k.stride_h() + 1;
  int64_t q = (k.w() + 2 * k.pad_w() - k.s()) / k.stride_w() + 1;
  int64_t x = product({k.n(), k.c(), k.h(), k.w()});
  int64_t w = product({k.k(), k.c(), k.r(), k.s()});
  int64_t y = product({k.n(), k.k(), p, q});
  switch (k.kind()) {
  case plan::ConvKind::Forward:
    data(k.in0(), "in0 (x)", x);
    data(k.in1(), "in1 (w)", w);
    data(k.out(), "out (y)", y);
    break;
  case plan::ConvKind::BackwardInput:
    data(k.in0(), "in0 (dy)", y);
    data(k.in1(), "in1 (w)", w);
    data(k.out(), "out (dx)", x);
    break;
  case plan::ConvKind::BackwardWeight:
    data(k.in0(), "in0 (x)", x);
    data(k.in1(), "in1 (dy)", y);
    data(k.out(), "out (dw)", w);
    break;
  }
  if (k.accumulate())
    accumulated_.push_back({k.out(), step_});
}

void Checker::checkBatchNorm(const plan::BatchNorm &k) {
  atLeast(k.n(), 0, "n");
  atLeast(k.c(), 0, "c");
  atLeast(k.hw(), 0, "hw");
  if (!(k.eps() >= 0) || !std::isfinite(k.eps()))
    fail("eps is " + std::to_string(k.eps()));
  if (!(k.momentum() >= 0 && k.momentum() <= 1))
    fail("momentum is " + std::to_string(k.momentum()) + ", expected a value in [0, 1]");
  int64_t all = product({k.n(), k.c(), k.hw()});
  data(k.x(), "x", all);
  data(k.y(), "y", all);
  optionalData(k.input_bias(), "input_bias", k.c());
  optionalData(k.gamma(), "gamma", k.c());
  optionalData(k.beta(), "beta", k.c());
  optionalData(k.saved_mean(), "saved_mean", k.c());
  optionalData(k.saved_invstd(), "saved_invstd", k.c());
  if (k.training()) {
    if (k.c() > 0)
      atLeast(mul(k.n(), k.hw()), 2, "n * hw (values per channel in training)");
    optionalData(k.running_mean(), "running_mean", k.c());
    optionalData(k.running_var(), "running_var", k.c());
  } else {
    data(k.running_mean(), "running_mean", k.c());
    data(k.running_var(), "running_var", k.c());
  }
}

void Checker::checkBatchNormBackward(const plan::BatchNormBackward &k) {
  atLeast(k.n(), 0, "n");
  atLeast(k.c(), 0, "c");
  atLeast(k.hw(), 0, "hw");
  int64_t all = product({k.n(), k.c(), k.hw()});
  data(k.dy(), "dy", all);
  data(k.x(), "x", all);
  optionalData(k.gamma(), "gamma", k.c());
  data(k.saved_mean(), "saved_mean", k.c());
  data(k.saved_invstd(), "saved_invstd", k.c());
  optionalData(k.dx(), "dx", all);
  optionalData(k.dgamma(), "dgamma", k.c());
  optionalData(k.dbeta(), "dbeta", k.c());
  optionalData(k.mask(), "mask", all);
  optionalData(k.input_bias(), "input_bias", k.c());
}

void Checker::checkReduce(const plan::Reduce &k) {
  const auto &in = present(k.in_shape(), "in_shape");
  const auto &out = present(k.out_shape(), "out_shape");
  if (in.size() != out.size())
    fail("in_shape has rank " + std::to_string(in.size()) + " but out_shape has rank " +
         std::to_string(out.size()));
  for (flatbuffers::uoffset_t d = 0; d < in.size(); ++d) {
    atLeast(in.Get(d), 0, ("in_shape[" + std::to_string(d) + "]").c_str());
    if (out.Get(d) != in.Get(d) && out.Get(d) != 1)
      fail("out_shape[" + std::to_string(d) + "] is " + std::to_string(out.Get(d)) +
           ", expected 1 or " + std::to_string(in.Get(d)));
  }
  data(k.input(), "input", product(&in));
  data(k.output(), "output", product(&out));
}

void Checker::checkTranspose(const plan::Transpose &k) {
  const auto &in = present(k.in_shape(), "in_shape");
  const auto &perm = present(k.perm(), "perm");
  if (perm.size() != in.size())
    fail("perm has " + std::to_string(perm.size()) + " entries, expected " +
         std::to_string(in.size()));
  std::vector<bool> seen(in.size(), false);
  for (flatbuffers::uoffset_t d = 0; d < perm.size(); ++d) {
    atLeast(in.Get(d), 0, ("in_shape[" + std::to_string(d) + "]").c_str());
    int64_t v = perm.Get(d);
    if (v < 0 || v >= int64_t(in.size()) || seen[v])
      fail("perm is not a permutation of 0.." + std::to_string(int64_t(in.size()) - 1));
    seen[v] = true;
  }
  int64_t total = product(&in);
  data(k.input(), "input", total);
  data(k.output(), "output", total);
}

void Checker::checkConcat(const plan::Concat &k) {
  const auto &inputs = present(k.inputs(), "inputs");
  const auto &rows = present(k.row_sizes(), "row_sizes");
  if (inputs.size() != rows.size())
    fail(std::to_string(inputs.size()) + " inputs but " + std::to_string(rows.size()) +
         " row_sizes");
  atLeast(k.outer(), 0, "outer");
  int64_t outRow = 0;
  for (flatbuffers::uoffset_t i = 0; i < inputs.size(); ++i) {
    atLeast(rows.Get(i), 0, ("row_sizes[" + std::to_string(i) + "]").c_str());
    data(inputs.Get(i), "inputs[" + std::to_string(i) + "]", mul(k.outer(), rows.Get(i)));
    outRow += rows.Get(i);
  }
  data(k.output(), "output", mul(k.outer(), outRow));
}

} // namespace

LoadedPlan LoadedPlan::load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(path + ": cannot open: " + std::strerror(errno));
  // A directory opens but throws on the first read (libstdc++'s filebuf::underflow).
  std::vector<uint8_t> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure &) {
    throw Error(path + ": cannot read: " + std::strerror(errno));
  }
  if (in.bad())
    throw Error(path + ": read error: " + std::strerror(errno));
  return fromBytes(std::move(bytes), path);
}

LoadedPlan LoadedPlan::fromBytes(std::vector<uint8_t> bytes, const std::string &name) {
  LoadedPlan lp;
  lp.bytes_ = std::move(bytes);
  lp.name_ = name;
  lp.verify();
  return lp;
}

void LoadedPlan::verify() {
  // Identifier, FlatBuffers verification, version and checksum, before any value is
  // trusted.
  if (std::string problem = plan::checkPlanBytes(bytes_.data(), bytes_.size()); !problem.empty())
    throw Error(name_ + ": " + problem);
  plan_ = plan::GetPlan(bytes_.data());
  Checker(*plan_, name_, numElements_, arenaTemps_).run();
  for (flatbuffers::uoffset_t id = 0; id < plan_->tensors()->size(); ++id)
    if (plan_->tensors()->Get(id)->role() == plan::Role::WorkingCopy)
      workingCopies_[plan_->tensors()->Get(id)->master()].push_back(int(id));
}

std::vector<float> LoadedPlan::initialValues(int id) const {
  const plan::Tensor *t = plan_->tensors()->Get(flatbuffers::uoffset_t(id));
  if (t->role() == plan::Role::WorkingCopy)
    return initialValues(t->master()); // the executor rounds them to the copy's dtype
  size_t n = size_t(numElements(id));
  switch (t->init_kind()) {
  case plan::InitKind::Uniform:
    return uniformInit(t->init_seed(), t->name()->string_view(), int64_t(n), t->init_bound());
  case plan::InitKind::Fill:
    return std::vector<float>(n, t->init_fill());
  default:
    if (t->init() && t->init()->size() == n)
      return std::vector<float>(t->init()->begin(), t->init()->end());
    return std::vector<float>(n, 0.0f);
  }
}

int64_t LoadedPlan::numElements(int id) const { return numElements_.at(size_t(id)); }

void LoadedPlan::checkWritable(int id) const {
  if (id < 0 || uint32_t(id) >= plan_->tensors()->size())
    return; // the executor reports the bad id
  const plan::Tensor *t = plan_->tensors()->Get(uint32_t(id));
  if (t->role() == plan::Role::WorkingCopy) {
    const plan::Tensor *m = plan_->tensors()->Get(uint32_t(t->master())); // checked on load
    throw Error(name_ + ": tensor " + std::to_string(id) + " '" + t->name()->str() +
                "' is the working copy of '" + (m->name() ? m->name()->str() : "") +
                "': write the parameter, and its copy follows");
  }
}

const std::vector<int> &LoadedPlan::workingCopies(int id) const {
  static const std::vector<int> none;
  auto it = workingCopies_.find(id);
  return it == workingCopies_.end() ? none : it->second;
}

const std::vector<LoadedPlan::ArenaTemp> &LoadedPlan::arenaTemps(uint32_t function) const {
  if (function >= arenaTemps_.size())
    throw Error(name_ + ": no function " + std::to_string(function) + " (the plan has " +
                std::to_string(arenaTemps_.size()) + ")");
  return arenaTemps_[function];
}

namespace {
/// The byte ranges of the arena temps live at `step`, sorted by their start.
std::vector<std::pair<uint64_t, uint64_t>> busyAt(const std::vector<LoadedPlan::ArenaTemp> &temps,
                                                  int64_t step) {
  std::vector<std::pair<uint64_t, uint64_t>> busy;
  for (const LoadedPlan::ArenaTemp &t : temps)
    if (t.start <= step && step <= t.end)
      busy.push_back({t.begin, t.begin + t.bytes});
  std::sort(busy.begin(), busy.end());
  return busy;
}

uint64_t alignUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }
} // namespace

std::vector<std::pair<uint64_t, uint64_t>> LoadedPlan::freeArenaSpans(uint32_t function,
                                                                      int64_t step) const {
  std::vector<std::pair<uint64_t, uint64_t>> free;
  uint64_t cursor = 0;
  for (const auto &[begin, end] : busyAt(arenaTemps(function), step)) {
    if (begin > cursor)
      free.push_back({cursor, begin});
    cursor = std::max(cursor, end);
  }
  if (plan_->arena_bytes() > cursor)
    free.push_back({cursor, plan_->arena_bytes()});
  return free;
}

int64_t LoadedPlan::freeArenaOffset(uint32_t function, int64_t step, uint64_t bytes,
                                    uint64_t align) const {
  for (const auto &[begin, end] : freeArenaSpans(function, step))
    if (alignUp(begin, align) + bytes <= end)
      return int64_t(alignUp(begin, align));
  return -1;
}

uint64_t LoadedPlan::largestFreeArenaSpan(uint32_t function, int64_t step, uint64_t align) const {
  uint64_t best = 0;
  for (const auto &[begin, end] : freeArenaSpans(function, step))
    if (end > alignUp(begin, align))
      best = std::max(best, end - alignUp(begin, align));
  return best;
}

const plan::Function *LoadedPlan::findFunction(const std::string &name) const {
  if (!plan_->functions())
    return nullptr;
  for (const plan::Function *f : *plan_->functions())
    if (f->name() && f->name()->str() == name)
      return f;
  return nullptr;
}

} // namespace mantissa
