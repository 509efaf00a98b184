//===- CpuBackend.cpp - the plan executor ----------------------------------===//
#include "runtime/cpu/CpuBackend.h"

#include "common/Error.h"
#include "runtime/kernels/Elementwise.h"
#include "runtime/kernels/Kernels.h"
#include "runtime/kernels/Parallel.h"

#include <algorithm>
#include <limits>
#include <new>

namespace mantissa {

using plan::Kernel;

template <class T> struct CpuExecutor<T>::PreparedFunction {
  // One entry per step: the validated program of an Elementwise step, else null.
  std::vector<std::unique_ptr<kernels::ElementwiseProgram>> programs;
};

template <class T>
CpuExecutor<T>::CpuExecutor(const LoadedPlan &plan, int threads, bool arena)
    : plan_(plan), pool_(std::make_unique<ThreadPool>(threads)) {
  const auto &tensors = *plan_->tensors();
  data_.resize(tensors.size());
  indices_.resize(tensors.size());
  arenaOffset_.assign(tensors.size(), -1);
  if (arena) {
    try {
      arena_.assign(size_t(plan_->arena_bytes()), T(0));
    } catch (const std::bad_alloc &) {
      throw Error(plan_.name() + ": cannot allocate an arena of " +
                  std::to_string(plan_->arena_bytes()) + " elements");
    }
  }
  for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
    const plan::Tensor *t = tensors.Get(id);
    if (t->name())
      byName_.emplace(t->name()->str(), int(id));
    size_t n = size_t(plan_.numElements(int(id)));
    if (arena && t->role() == plan::Role::Temp && t->offset() >= 0 &&
        t->dtype() != plan::DType::I32) {
      arenaOffset_[id] = t->offset(); // the loader checked it lies inside the arena
      continue;
    }
    // A plan can name tensors larger than this machine's memory: say which one.
    try {
      if (t->dtype() == plan::DType::I32)
        indices_[id].reserve(n);
      else
        data_[id].reserve(n);
    } catch (const std::bad_alloc &) {
      throw Error(plan_.name() + ": cannot allocate " + std::to_string(n) +
                  " elements for tensor " + std::to_string(id) + " '" +
                  (t->name() ? t->name()->str() : "") + "'");
    }
    bool persistent = t->role() != plan::Role::Temp && t->role() != plan::Role::Input;
    std::vector<float> init;
    if (persistent || (t->init() && t->init()->size() == n))
      init = plan_.initialValues(int(id));
    if (t->dtype() == plan::DType::I32) {
      indices_[id].assign(n, 0);
      for (size_t i = 0; i < init.size(); ++i)
        indices_[id][i] = int32_t(init[i]);
      continue;
    }
    data_[id].assign(n, T(0));
    if (!init.empty()) {
      std::copy(init.begin(), init.end(), data_[id].begin());
      kernels::roundToDType(t->dtype(), data_[id].data(), int64_t(n));
    }
  }
}

template <class T> CpuExecutor<T>::~CpuExecutor() = default;

template <class T> int CpuExecutor<T>::threads() const { return pool_->size(); }

template <class T> std::vector<T> &CpuExecutor<T>::tensor(int id) {
  return const_cast<std::vector<T> &>(static_cast<const CpuExecutor *>(this)->tensor(id));
}

template <class T> const std::vector<T> &CpuExecutor<T>::tensor(int id) const {
  if (id < 0 || size_t(id) >= data_.size())
    throw Error("no tensor " + std::to_string(id) + " in " + plan_.name());
  if (plan_->tensors()->Get(id)->dtype() == plan::DType::I32)
    throw Error("tensor " + std::to_string(id) + " is I32: use indexTensor");
  if (arenaOffset_[size_t(id)] >= 0)
    throw Error("tensor " + std::to_string(id) + " is a temp in the arena: use data()");
  return data_[size_t(id)];
}

template <class T> const T *CpuExecutor<T>::data(int id) const {
  if (id < 0 || size_t(id) >= data_.size())
    throw Error("no tensor " + std::to_string(id) + " in " + plan_.name());
  if (arenaOffset_[size_t(id)] >= 0)
    return arena_.data() + arenaOffset_[size_t(id)];
  return data_[size_t(id)].data();
}

template <class T> T *CpuExecutor<T>::data(int id) {
  return const_cast<T *>(static_cast<const CpuExecutor *>(this)->data(id));
}

template <class T> size_t CpuExecutor<T>::count(int id) const {
  return size_t(plan_.numElements(id));
}

template <class T> std::vector<int32_t> &CpuExecutor<T>::indexTensor(int id) {
  if (id < 0 || size_t(id) >= data_.size())
    throw Error("no tensor " + std::to_string(id) + " in " + plan_.name());
  if (plan_->tensors()->Get(id)->dtype() != plan::DType::I32)
    throw Error("tensor " + std::to_string(id) + " is not I32: use tensor");
  return indices_[size_t(id)];
}

template <class T> int CpuExecutor<T>::findTensor(const std::string &name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? -1 : it->second;
}

template <class T>
const typename CpuExecutor<T>::PreparedFunction &CpuExecutor<T>::prepare(const plan::Function &fn) {
  auto &slot = prepared_[&fn];
  if (slot)
    return *slot;
  auto pf = std::make_unique<PreparedFunction>();
  if (fn.steps())
    for (const plan::Step *step : *fn.steps()) {
      std::unique_ptr<kernels::ElementwiseProgram> program;
      if (step->kernel_type() == Kernel::Elementwise) {
        const plan::Elementwise &k = *step->kernel_as_Elementwise();
        std::vector<plan::Instr> instrs;
        for (const plan::Instr *in : *k.program())
          instrs.push_back(*in);
        std::vector<int> regs(k.output_regs()->begin(), k.output_regs()->end());
        program = std::make_unique<kernels::ElementwiseProgram>(std::move(instrs), std::move(regs),
                                                                int(k.inputs()->size()));
      }
      pf->programs.push_back(std::move(program));
    }
  slot = std::move(pf);
  return *slot;
}

template <class T> const T *CpuExecutor<T>::labels(int id) {
  if (plan_->tensors()->Get(id)->dtype() != plan::DType::I32)
    return ptr(id);
  // Labels fed as I32: the loss kernels read them as T.
  const std::vector<int32_t> &ints = indices_[size_t(id)];
  labelScratch_.assign(ints.begin(), ints.end());
  return labelScratch_.data();
}

template <class T> void CpuExecutor<T>::roundOutput(int id) {
  if (id < 0)
    return;
  plan::DType dtype = plan_->tensors()->Get(id)->dtype();
  kernels::roundToDType(dtype, data(id), int64_t(count(id)));
}

template <class T>
const T *CpuExecutor<T>::withInputBias(int64_t channels, int64_t hw, int x, int bias,
                                       std::vector<T> &scratch) {
  if (bias < 0)
    return ptr(x);
  const T *in = ptr(x), *b = ptr(bias);
  scratch.resize(count(x));
  const int64_t planes = hw > 0 ? int64_t(scratch.size()) / hw : 0;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < hw; ++i)
      scratch[size_t(p * hw + i)] = in[p * hw + i] + b[p % channels];
  kernels::roundToDType(plan_->tensors()->Get(x)->dtype(), scratch.data(), int64_t(scratch.size()));
  return scratch.data();
}

template <class T>
void CpuExecutor<T>::addBiasRows(T *c, const T *bias, int64_t m, int64_t n, bool relu) {
  for (int64_t i = 0; i < m; ++i) {
    T *row = c + i * n;
    for (int64_t j = 0; j < n; ++j) {
      T v = row[j] + bias[j];
      row[j] = !relu || v > T(0) ? v : (v != v ? v : T(0)); // common/ScalarOps.def's Relu
    }
  }
}

template <class T>
const plan::Function &CpuExecutor<T>::function(const std::string &name) const {
  const plan::Function *fn = plan_.findFunction(name);
  if (!fn) {
    std::string names;
    for (const plan::Function *f : *plan_->functions())
      names += (names.empty() ? "" : ", ") + f->name()->str();
    throw Error(plan_.name() + ": no function '" + name + "' (the plan has: " + names + ")");
  }
  return *fn;
}

template <class T> void CpuExecutor<T>::run(const std::string &name) {
  const plan::Function &fn = function(name);
  runSteps(fn, 0, fn.steps() ? fn.steps()->size() : 0);
}

template <class T> void CpuExecutor<T>::runOneStep(const std::string &name, uint32_t step) {
  const plan::Function &fn = function(name);
  if (!fn.steps() || step >= fn.steps()->size())
    throw Error(plan_.name() + ": " + name + " has no step " + std::to_string(step));
  runSteps(fn, step, step + 1);
}

template <class T>
void CpuExecutor<T>::runSteps(const plan::Function &fn, uint32_t first, uint32_t last) {
  const PreparedFunction &pf = prepare(fn);
  ThreadPoolScope scope(*pool_);
  kernels::setBlasThreads(1); // kernels::gemm splits across our pool instead
  for (uint32_t s = first; s < last; ++s) {
    const plan::Step *step = fn.steps()->Get(s);
    if (poison_ && !arena_.empty())
      poisonArenaAt(fn, s);
    try {
      auto t0 = std::chrono::steady_clock::now();
      runStep(*step, pf.programs[s].get());
      if (observer_)
        observer_(fn, s, t0, std::chrono::steady_clock::now());
    } catch (const Error &e) {
      throw Error(plan_.name() + ": " + fn.name()->str() + " step " + std::to_string(s) + " '" +
                  (step->name() ? step->name()->str() : "") + "' (" +
                  plan::EnumNameKernel(step->kernel_type()) + "): " + e.what());
    }
  }
}

template <class T> void CpuExecutor<T>::poisonArenaAt(const plan::Function &fn, uint32_t step) {
  uint32_t f = 0;
  while (plan_->functions()->Get(f) != &fn)
    ++f;
  // The elements of the temps live at this step (a temp at byte offset o of n elements
  // takes [o, o + n)), by start; NaN everywhere else.
  std::vector<std::pair<size_t, size_t>> live;
  for (const LoadedPlan::ArenaTemp &t : plan_.arenaTemps(f))
    if (t.start <= int64_t(step) && int64_t(step) <= t.end)
      live.push_back({size_t(t.begin), size_t(t.begin) + size_t(plan_.numElements(t.id))});
  std::sort(live.begin(), live.end());
  const T nan = std::numeric_limits<T>::quiet_NaN();
  size_t cursor = 0;
  for (const auto &[begin, end] : live) {
    if (begin > cursor)
      std::fill(arena_.begin() + ptrdiff_t(cursor), arena_.begin() + ptrdiff_t(begin), nan);
    cursor = std::max(cursor, end);
  }
  if (cursor < arena_.size())
    std::fill(arena_.begin() + ptrdiff_t(cursor), arena_.end(), nan);
}

template <class T>
void CpuExecutor<T>::runStep(const plan::Step &step, const kernels::ElementwiseProgram *program) {
  using namespace kernels;
  switch (step.kernel_type()) {
  case Kernel::Elementwise: {
    const plan::Elementwise &k = *step.kernel_as_Elementwise();
    std::vector<int64_t> shape(k.shape()->begin(), k.shape()->end());
    std::vector<ElementwiseInput<T>> inputs;
    for (const plan::Operand *op : *k.inputs())
      inputs.push_back(
          {ptr(op->tensor()), std::vector<int64_t>(op->strides()->begin(), op->strides()->end())});
    std::vector<ElementwiseOutput<T>> outputs;
    for (int id : *k.outputs())
      outputs.push_back({ptr(id), plan_->tensors()->Get(id)->dtype()});
    runElementwise(*program, shape, inputs, outputs); // rounds on store
    return;
  }
  case Kernel::Gemm: {
    const plan::Gemm &k = *step.kernel_as_Gemm();
    gemmStridedBatched<T>(k.trans_a(), k.trans_b(), k.m(), k.n(), k.k(), T(k.alpha()), ptr(k.a()),
                          k.m() * k.k(), ptr(k.b()), k.k() * k.n(), T(k.beta()), ptr(k.c()),
                          k.m() * k.n(), k.batch());
    if (k.bias() >= 0)
      addBiasRows(ptr(k.c()), ptr(k.bias()), k.m(), k.n(), k.relu());
    roundOutput(k.c());
    return;
  }
  case Kernel::Conv2d: {
    const plan::Conv2d &k = *step.kernel_as_Conv2d();
    ConvShape sh{k.n(), k.c(),        k.h(),        k.w(),     k.k(),    k.r(),
                 k.s(), k.stride_h(), k.stride_w(), k.pad_h(), k.pad_w()};
    switch (k.kind()) {
    case plan::ConvKind::Forward:
      conv2dForward<T>(sh, ptr(k.in0()), ptr(k.in1()), ptr(k.out()), k.accumulate());
      break;
    case plan::ConvKind::BackwardInput:
      conv2dBackwardInput<T>(sh, ptr(k.in0()), ptr(k.in1()), ptr(k.out()), k.accumulate());
      break;
    case plan::ConvKind::BackwardWeight:
      conv2dBackwardWeight<T>(sh, ptr(k.in0()), ptr(k.in1()), ptr(k.out()), k.accumulate());
      break;
    }
    roundOutput(k.out());
    return;
  }
  case Kernel::MaxPool2d: {
    const plan::MaxPool2d &k = *step.kernel_as_MaxPool2d();
    PoolShape sh{k.n(), k.c(), k.h(), k.w(), k.kernel(), k.stride()};
    maxPool2dForward<T>(sh, ptr(k.x()), ptr(k.y()),
                        k.indices() >= 0 ? indices_[size_t(k.indices())].data() : nullptr);
    roundOutput(k.y()); // a max of rounded values is already rounded; kept for uniformity
    return;
  }
  case Kernel::MaxPool2dBackward: {
    const plan::MaxPool2dBackward &k = *step.kernel_as_MaxPool2dBackward();
    PoolShape sh{k.n(), k.c(), k.h(), k.w(), k.kernel(), k.stride()};
    maxPool2dBackward<T>(sh, ptr(k.dy()), ptr(k.x()), ptr(k.y()), ptr(k.dx()));
    roundOutput(k.dx());
    return;
  }
  case Kernel::BatchNorm: {
    const plan::BatchNorm &k = *step.kernel_as_BatchNorm();
    BatchNormShape sh{k.n(), k.c(), k.hw()};
    const T *x = withInputBias(k.c(), k.hw(), k.x(), k.input_bias(), biasScratch_);
    if (k.training()) {
      batchNormTrainForward<T>(sh, x, ptr(k.gamma()), ptr(k.beta()), ptr(k.y()),
                               ptr(k.saved_mean()), ptr(k.saved_invstd()), ptr(k.running_mean()),
                               ptr(k.running_var()), double(k.eps()), double(k.momentum()));
      for (int id : {k.saved_mean(), k.saved_invstd(), k.running_mean(), k.running_var()})
        roundOutput(id);
    } else {
      batchNormEvalForward<T>(sh, x, ptr(k.gamma()), ptr(k.beta()), ptr(k.running_mean()),
                              ptr(k.running_var()), ptr(k.y()), double(k.eps()));
    }
    if (k.relu()) { // the elementwise Relu's rule (common/ScalarOps.def): NaN stays
      T *y = ptr(k.y());
      for (size_t i = 0, n = count(k.y()); i < n; ++i)
        y[i] = y[i] > T(0) ? y[i] : (y[i] != y[i] ? y[i] : T(0));
    }
    roundOutput(k.y());
    return;
  }
  case Kernel::BatchNormBackward: {
    const plan::BatchNormBackward &k = *step.kernel_as_BatchNormBackward();
    BatchNormShape sh{k.n(), k.c(), k.hw()};
    const T *x = withInputBias(k.c(), k.hw(), k.x(), k.input_bias(), biasScratch_);
    batchNormBackward<T>(sh, ptr(k.dy()), x, ptr(k.gamma()), ptr(k.saved_mean()),
                         ptr(k.saved_invstd()), ptr(k.dx()), ptr(k.dgamma()), ptr(k.dbeta()),
                         ptr(k.mask()));
    for (int id : {k.dx(), k.dgamma(), k.dbeta()})
      roundOutput(id);
    return;
  }
  case Kernel::SoftmaxCrossEntropy: {
    const plan::SoftmaxCrossEntropy &k = *step.kernel_as_SoftmaxCrossEntropy();
    ptr(k.loss())[0] = softmaxCrossEntropy<T>(k.n(), k.c(), ptr(k.logits()), labels(k.labels()));
    roundOutput(k.loss());
    return;
  }
  case Kernel::SoftmaxCrossEntropyBackward: {
    const plan::SoftmaxCrossEntropyBackward &k = *step.kernel_as_SoftmaxCrossEntropyBackward();
    softmaxCrossEntropyBackward<T>(k.n(), k.c(), ptr(k.logits()), labels(k.labels()),
                                   scalar(k.dloss()), ptr(k.dlogits()));
    roundOutput(k.dlogits());
    return;
  }
  case Kernel::MseLoss: {
    const plan::MseLoss &k = *step.kernel_as_MseLoss();
    ptr(k.loss())[0] = mseLoss<T>(k.count(), ptr(k.a()), ptr(k.b()));
    roundOutput(k.loss());
    return;
  }
  case Kernel::MseLossBackward: {
    const plan::MseLossBackward &k = *step.kernel_as_MseLossBackward();
    mseLossBackward<T>(k.count(), ptr(k.a()), ptr(k.b()), scalar(k.dloss()), ptr(k.da()));
    roundOutput(k.da());
    return;
  }
  case Kernel::Reduce: {
    const plan::Reduce &k = *step.kernel_as_Reduce();
    reduce<T>(std::vector<int64_t>(k.in_shape()->begin(), k.in_shape()->end()),
              std::vector<int64_t>(k.out_shape()->begin(), k.out_shape()->end()), k.mean(),
              ptr(k.input()), ptr(k.output()));
    roundOutput(k.output());
    return;
  }
  case Kernel::Concat: {
    const plan::Concat &k = *step.kernel_as_Concat();
    std::vector<const T *> inputs;
    for (int id : *k.inputs())
      inputs.push_back(ptr(id));
    concat<T>(k.outer(), std::vector<int64_t>(k.row_sizes()->begin(), k.row_sizes()->end()), inputs,
              ptr(k.output()));
    roundOutput(k.output());
    return;
  }
  case Kernel::Slice: {
    const plan::Slice &k = *step.kernel_as_Slice();
    slice<T>(k.outer(), k.in_row(), k.offset(), k.out_row(), ptr(k.input()), ptr(k.output()));
    roundOutput(k.output());
    return;
  }
  case Kernel::Transpose: {
    const plan::Transpose &k = *step.kernel_as_Transpose();
    transpose<T>(std::vector<int64_t>(k.in_shape()->begin(), k.in_shape()->end()),
                 std::vector<int64_t>(k.perm()->begin(), k.perm()->end()), ptr(k.input()),
                 ptr(k.output()));
    roundOutput(k.output());
    return;
  }
  case Kernel::Copy: {
    const plan::Copy &k = *step.kernel_as_Copy();
    copy<T>(k.count(), ptr(k.input()), ptr(k.output()));
    roundOutput(k.output());
    return;
  }
  case Kernel::AllFinite: {
    const plan::AllFinite &k = *step.kernel_as_AllFinite();
    bool finite = true;
    const T *multiplier = k.multiplier() >= 0 ? ptr(k.multiplier()) : nullptr;
    for (int id : *k.inputs())
      finite = finite && allFinite<T>(int64_t(count(id)), ptr(id), multiplier);
    ptr(k.output())[0] = finite ? T(1) : T(0);
    return;
  }
  default:
    throw Error("unknown kernel type"); // the loader rejects these
  }
}

template class CpuExecutor<float>;
template class CpuExecutor<double>;

} // namespace mantissa
