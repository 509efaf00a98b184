//===- PlanPrinter.cpp - a readable listing of a plan ---------------------===//
#include "runtime/inspect/PlanPrinter.h"
#include "plan/DType.h"
#include "plan/PlanIntegrity.h"

#include "common/Error.h"
#include "common/ScalarOp.h"
#include "plan/mantissa_plan_generated.h"
#include "runtime/cpu/PlanLoader.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <vector>

namespace mantissa {

namespace {

using namespace mantissa::plan;



template <class V> std::string list(const V *v, const char *sep = ", ") {
  std::string s = "[";
  if (v)
    for (unsigned i = 0; i < v->size(); ++i)
      s += (i ? sep : "") + std::to_string(v->Get(i));
  return s + "]";
}

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

class Printer {
public:
  /// `loaded`: the same plan through the runtime's checks (its liveness), or null with
  /// `loadError` saying why.
  Printer(const Plan &p, std::ostream &os, const PlanPrintOptions &options,
          const LoadedPlan *loaded, std::string loadError)
      : p_(p), os_(os), options_(options), loaded_(loaded), loadError_(std::move(loadError)) {}

  void print(size_t bytes);

private:
  const Tensor *tensor(int id) const {
    if (!p_.tensors() || id < 0 || id >= int(p_.tensors()->size()))
      return nullptr;
    return p_.tensors()->Get(id);
  }
  std::string shape(const Tensor *t) const {
    return std::string(dtypeName(t->dtype())) + list(t->shape(), "x");
  }
  /// "t3(fc1.bias):f32[128]", "t9:f32[64x128]", "-" for none.
  std::string ref(int id) const {
    if (id == -1)
      return "-";
    const Tensor *t = tensor(id);
    if (!t)
      return "t" + std::to_string(id) + ":<invalid>";
    std::string s = "t" + std::to_string(id);
    if (t->name() && t->name()->size())
      s += "(" + t->name()->str() + ")";
    return s + ":" + shape(t);
  }
  std::string refs(const flatbuffers::Vector<int32_t> *ids) const {
    std::string s = "[";
    if (ids)
      for (unsigned i = 0; i < ids->size(); ++i)
        s += (i ? ", " : "") + ref(ids->Get(i));
    return s + "]";
  }

  void model();
  void config();
  void tensors();
  void kernels();
  void function(const Function &fn);
  void step(unsigned index, const Step &s);
  std::string kernel(const Step &s);
  void elementwise(const Elementwise &k);

  void livePeaks();

  const Plan &p_;
  std::ostream &os_;
  const PlanPrintOptions &options_;
  const LoadedPlan *loaded_;
  std::string loadError_;
};

void Printer::print(size_t bytes) {
  // printPlan checked the checksum before printing anything.
  os_ << "plan version " << p_.version() << ", " << bytes << " bytes, checksum "
      << hex16(p_.checksum()) << " (holds)\n";
  if (!loaded_)
    os_ << "runtime checks: FAIL, mantissa-run refuses this plan: " << loadError_ << "\n";
  model();
  config();
  tensors();
  kernels();
  if (p_.functions())
    for (const Function *fn : *p_.functions())
      function(*fn);
}

std::string sizeText(size_t bytes) {
  std::ostringstream os;
  if (bytes < 10240)
    os << bytes << " B";
  else
    os << (bytes + 512) / 1024 << " KiB";
  return os.str();
}

/// The compiled kernels (Plan.cuda): one line per module with what it fuses, its
/// precision, and the size of each CUBIN and of the PTX.
void Printer::kernels() {
  const CudaCode *code = p_.cuda();
  if (!code || !code->kernels()) {
    os_ << "kernels: none compiled (--arch none): the CUDA backend compiles them with NVRTC "
           "at startup\n";
    return;
  }
  size_t total = 0;
  for (const CudaKernel *k : *code->kernels()) {
    if (k->cubins())
      for (const CudaCubin *c : *k->cubins())
        total += c->image() ? c->image()->size() : 0;
    total += (k->ptx() ? k->ptx()->size() : 0) + (k->source() ? k->source()->size() : 0);
  }
  os_ << "kernels: " << code->kernels()->size() << " modules, " << sizeText(total)
      << " (sources, CUBIN, PTX), " << (code->nvrtc_version() ? code->nvrtc_version()->str() : "?")
      << ", archs";
  if (code->archs())
    for (const flatbuffers::String *a : *code->archs())
      os_ << " " << a->str();
  os_ << ", options";
  if (code->options())
    for (const flatbuffers::String *o : *code->options())
      os_ << " " << o->str();
  os_ << "\n";
  for (unsigned i = 0; i < code->kernels()->size(); ++i) {
    const CudaKernel *k = code->kernels()->Get(i);
    os_ << "  k" << i << " " << (k->name() ? k->name()->str() : "?") << " " << dtypeName(k->precision())
        << " fuses [";
    if (k->fuses())
      for (unsigned f = 0; f < k->fuses()->size(); ++f)
        os_ << (f ? ", " : "") << k->fuses()->Get(f)->str();
    os_ << "]";
    if (k->entries() && k->entries()->size() > 1)
      os_ << ", " << k->entries()->size() << " entry points";
    os_ << "; source " << sizeText(k->source() ? k->source()->size() : 0) << " hash "
        << (k->source_hash() ? k->source_hash()->str() : "?");
    if (k->cubins())
      for (const CudaCubin *c : *k->cubins())
        os_ << "; cubin " << (c->arch() ? c->arch()->str() : "?") << " "
            << sizeText(c->image() ? c->image()->size() : 0);
    if (k->ptx() && k->ptx()->size())
      os_ << "; ptx " << (k->ptx_arch() ? k->ptx_arch()->str() : "?") << " "
          << sizeText(k->ptx()->size());
    else
      os_ << "; no ptx";
    os_ << "\n";
  }
}

/// `--source K` / `--ptx K`: the kernel K is its name or "k<index>" as listed.
std::string printKernelText(const Plan &p, const PlanPrintOptions &options, std::ostream &os) {
  const bool ptx = !options.ptx.empty();
  const std::string &which = ptx ? options.ptx : options.source;
  const CudaCode *code = p.cuda();
  if (!code || !code->kernels())
    return "the plan has no compiled kernels (compiled with --arch none)";
  for (unsigned i = 0; i < code->kernels()->size(); ++i) {
    const CudaKernel *k = code->kernels()->Get(i);
    const std::string name = k->name() ? k->name()->str() : "";
    if (which != name && which != "k" + std::to_string(i))
      continue;
    if (!ptx) {
      os << "// " << name << ": compiled after the plan's prelude (inspect --source prelude)\n"
         << (k->source() ? k->source()->str() : "");
      return "";
    }
    if (!k->ptx() || k->ptx()->size() == 0)
      return "kernel " + name + " has no PTX";
    os << k->ptx()->str();
    return "";
  }
  if (!ptx && which == "prelude" && code->prelude()) {
    os << code->prelude()->str();
    return "";
  }
  return "no kernel '" + which + "' in the plan (names and k<N> as `inspect` lists them)";
}

void Printer::model() {
  const ModelInfo *m = p_.model();
  if (!m) {
    os_ << "model: <missing>\n";
    return;
  }
  os_ << "model: " << (m->name() ? m->name()->str() : "?") << " ("
      << (m->task() == Task::Regression ? "regression" : "classification");
  if (m->task() == Task::Classification)
    os_ << ", " << m->num_classes() << " classes";
  os_ << "), batch " << m->batch() << ", input " << list(m->input_shape(), "x") << ", label "
      << list(m->label_shape(), "x") << ", seed " << m->seed() << "\n";
  if (m->source())
    os_ << "source: " << m->source()->str() << "\n";
}

void Printer::config() {
  if (const plan::Precision *pr = p_.precision())
    os_ << "precision: " << (pr->policy() ? pr->policy()->str() : "?") << ", tf32 "
        << (pr->tf32() ? "on" : "off") << "\n";
  if (const LossScaling *ls = p_.loss_scaling()) {
    os_ << "loss scaling: ";
    switch (ls->mode()) {
    case LossScaleMode::None:
      os_ << "none";
      break;
    case LossScaleMode::Static:
      os_ << "static, scale " << fmt(ls->init_scale());
      break;
    case LossScaleMode::Dynamic:
      os_ << "dynamic, init scale " << fmt(ls->init_scale()) << ", growth x"
          << fmt(ls->growth_factor()) << " after " << ls->growth_interval()
          << " finite steps, backoff x" << fmt(ls->backoff_factor());
      break;
    }
    os_ << "\n";
    if (ls->scale() != -1 || ls->growth_tracker() != -1 || ls->found_finite() != -1)
      os_ << "  scale " << ref(ls->scale()) << ", growth_tracker " << ref(ls->growth_tracker())
          << ", found_finite " << ref(ls->found_finite()) << "\n";
  }
  if (const plan::Optimizer *o = p_.optimizer()) {
    os_ << "optimizer: ";
    switch (o->kind()) {
    case OptimizerKind::SGD:
      os_ << "sgd, lr " << fmt(o->lr()) << ", momentum " << fmt(o->momentum()) << ", weight decay "
          << fmt(o->weight_decay());
      break;
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW:
      os_ << (o->kind() == OptimizerKind::Adam ? "adam" : "adamw") << ", lr " << fmt(o->lr())
          << ", betas (" << fmt(o->beta1()) << ", " << fmt(o->beta2()) << "), eps " << fmt(o->eps())
          << ", weight decay " << fmt(o->weight_decay());
      break;
    }
    os_ << "\n";
  }
}

void Printer::tensors() {
  const auto *ts = p_.tensors();
  if (!ts) {
    os_ << "tensors: <missing>\n";
    return;
  }
  constexpr int kRoles = int(Role::MAX) + 1;
  int64_t count[kRoles] = {}, elements[kRoles] = {}, bytes[kRoles] = {}, totalBytes = 0;
  for (const Tensor *t : *ts) {
    int r = int(t->role());
    if (r < 0 || r >= kRoles)
      continue;
    int64_t n = 1;
    if (t->shape())
      for (int64_t d : *t->shape())
        n *= d;
    ++count[r];
    elements[r] += n;
    bytes[r] += n * dtypeBytes(t->dtype());
    totalBytes += n * dtypeBytes(t->dtype());
  }
  os_ << "tensors: " << ts->size() << ", " << totalBytes << " bytes\n";
  for (int r = 0; r < kRoles; ++r)
    if (count[r])
      os_ << "  " << EnumNameRole(Role(r)) << ": " << count[r] << " tensors, " << elements[r]
          << " elements, " << bytes[r] << " bytes\n";
  os_ << "parameters: " << elements[int(Role::Param)] << "\n";
  // The memory plan: temps share one arena by liveness (sizes at each tensor's dtype).
  int64_t unplanned = 0;
  for (const Tensor *t : *ts)
    if (t->role() == Role::Temp && t->offset() < 0) {
      int64_t n = 1;
      if (t->shape())
        for (int64_t d : *t->shape())
          n *= d;
      unplanned += n * dtypeBytes(t->dtype());
    }
  const uint64_t temp = p_.arena_bytes() + uint64_t(unplanned);
  os_ << "memory: peak " << temp + p_.persistent_bytes() + p_.input_bytes() << " bytes = temps "
      << temp << " + persistent " << p_.persistent_bytes() << " + inputs " << p_.input_bytes()
      << " (plan peak_bytes " << p_.peak_bytes() << ")\n";
  const int64_t planned = bytes[int(Role::Temp)] - unplanned;
  os_ << "  temp arena: " << p_.arena_bytes() << " bytes for " << planned
      << " bytes of temps sharing it by liveness";
  if (planned > 0)
    os_ << " (" << int64_t(std::llround(100.0 * double(p_.arena_bytes()) / double(planned)))
        << "%)";
  if (unplanned)
    os_ << ", " << unplanned << " bytes of temps outside it";
  os_ << "\n";
  livePeaks();
  // What a backend allocates beside the plan's tensors is its own, sized on the device.
  os_ << "  not in the peak: the backend's own (CUDA: cuBLAS's 32 MiB workspace; a step's "
         "scratch -- convolution copies and partials, batch-norm and reduction partials -- goes "
         "into the arena's bytes free at that step, and what finds no room there into one "
         "buffer; MANTISSA_VERBOSE=1 mantissa-run train --backend cuda prints both)\n";
  for (unsigned id = 0; id < ts->size(); ++id) {
    const Tensor *t = ts->Get(id);
    if (t->role() == Role::Temp && !options_.allTensors)
      continue;
    os_ << "  t" << id << " " << EnumNameRole(t->role()) << " "
        << (t->name() ? t->name()->str() : "-") << " " << shape(t);
    if (t->offset() >= 0)
      os_ << " offset " << t->offset();
    if (t->role() == Role::WorkingCopy) {
      const Tensor *m = ts->Get(uint32_t(t->master()));
      os_ << " = t" << t->master() << "(" << (m->name() ? m->name()->str() : "") << ") rounded";
    }
    if (t->init_kind() == InitKind::Uniform)
      os_ << " init uniform +-" << fmt(float(t->init_bound())) << " seed " << t->init_seed();
    else if (t->init_kind() == InitKind::Fill && t->role() != Role::Temp && t->role() != Role::Input)
      os_ << " init fill " << fmt(t->init_fill());
    else if (t->init() && t->init()->size()) {
      os_ << " init [" << fmt(t->init()->Get(0));
      if (t->init()->size() > 1)
        os_ << ", " << fmt(t->init()->Get(1)) << (t->init()->size() > 2 ? ", ..." : "");
      os_ << "]";
    }
    os_ << "\n";
  }
}

void Printer::function(const Function &fn) {
  unsigned n = fn.steps() ? fn.steps()->size() : 0;
  os_ << "function " << (fn.name() ? fn.name()->str() : "?") << ": " << n << " steps, outputs "
      << refs(fn.outputs()) << "\n";
  for (unsigned i = 0; i < n; ++i)
    step(i, *fn.steps()->Get(i));
}

void Printer::step(unsigned index, const Step &s) {
  os_ << "  " << index << " " << (s.name() ? s.name()->str() : "?") << " "
      << (s.op() ? s.op()->str() : "?") << " " << EnumNameKernel(s.kernel_type()) << " "
      << dtypeName(s.precision()) << " " << kernel(s) << "\n";
  if (const Elementwise *k = s.kernel_as_Elementwise())
    elementwise(*k);
}

std::string Printer::kernel(const Step &s) {
  std::ostringstream o;
  auto b = [](bool v) { return v ? "true" : "false"; };
  if (auto *k = s.kernel_as_Elementwise()) {
    o << "shape " << list(k->shape(), "x");
  } else if (auto *k = s.kernel_as_Gemm()) {
    o << "a=" << ref(k->a()) << " b=" << ref(k->b()) << " c=" << ref(k->c()) << " m=" << k->m()
      << " n=" << k->n() << " k=" << k->k() << " trans_a=" << b(k->trans_a())
      << " trans_b=" << b(k->trans_b());
    if (k->batch() != 1)
      o << " batch=" << k->batch();
    if (k->alpha() != 1.0f || k->beta() != 0.0f)
      o << " alpha=" << fmt(k->alpha()) << " beta=" << fmt(k->beta());
    if (k->bias() >= 0)
      o << " epilogue=" << (k->relu() ? "bias+relu" : "bias") << " bias=" << ref(k->bias());
  } else if (auto *k = s.kernel_as_Conv2d()) {
    o << EnumNameConvKind(k->kind()) << " in0=" << ref(k->in0()) << " in1=" << ref(k->in1())
      << " out=" << ref(k->out()) << " nchw=" << k->n() << "x" << k->c() << "x" << k->h() << "x"
      << k->w() << " krs=" << k->k() << "x" << k->r() << "x" << k->s()
      << " stride=" << k->stride_h() << "," << k->stride_w() << " pad=" << k->pad_h() << ","
      << k->pad_w();
    if (k->accumulate())
      o << " accumulate";
  } else if (auto *k = s.kernel_as_MaxPool2d()) {
    o << "x=" << ref(k->x()) << " y=" << ref(k->y());
    if (k->indices() >= 0)
      o << " indices=" << ref(k->indices());
    o << " kernel=" << k->kernel() << " stride=" << k->stride();
  } else if (auto *k = s.kernel_as_MaxPool2dBackward()) {
    o << "dy=" << ref(k->dy()) << " x=" << ref(k->x()) << " y=" << ref(k->y())
      << " dx=" << ref(k->dx()) << " kernel=" << k->kernel() << " stride=" << k->stride();
  } else if (auto *k = s.kernel_as_BatchNorm()) {
    o << (k->training() ? "training" : "eval") << " x=" << ref(k->x())
      << " gamma=" << ref(k->gamma()) << " beta=" << ref(k->beta()) << " y=" << ref(k->y())
      << " saved_mean=" << ref(k->saved_mean()) << " saved_invstd=" << ref(k->saved_invstd())
      << " running_mean=" << ref(k->running_mean()) << " running_var=" << ref(k->running_var())
      << " n=" << k->n() << " c=" << k->c() << " hw=" << k->hw() << " eps=" << fmt(k->eps())
      << " momentum=" << fmt(k->momentum());
    if (k->relu())
      o << " relu";
    if (k->input_bias() >= 0)
      o << " input_bias=" << ref(k->input_bias());
  } else if (auto *k = s.kernel_as_BatchNormBackward()) {
    o << "dy=" << ref(k->dy()) << " x=" << ref(k->x()) << " gamma=" << ref(k->gamma())
      << " saved_mean=" << ref(k->saved_mean()) << " saved_invstd=" << ref(k->saved_invstd())
      << " dx=" << ref(k->dx()) << " dgamma=" << ref(k->dgamma()) << " dbeta=" << ref(k->dbeta())
      << " n=" << k->n() << " c=" << k->c() << " hw=" << k->hw();
    if (k->mask() >= 0)
      o << " mask=" << ref(k->mask());
    if (k->input_bias() >= 0)
      o << " input_bias=" << ref(k->input_bias());
  } else if (auto *k = s.kernel_as_SoftmaxCrossEntropy()) {
    o << "logits=" << ref(k->logits()) << " labels=" << ref(k->labels())
      << " loss=" << ref(k->loss()) << " n=" << k->n() << " c=" << k->c();
  } else if (auto *k = s.kernel_as_SoftmaxCrossEntropyBackward()) {
    o << "logits=" << ref(k->logits()) << " labels=" << ref(k->labels())
      << " dloss=" << ref(k->dloss()) << " dlogits=" << ref(k->dlogits()) << " n=" << k->n()
      << " c=" << k->c();
  } else if (auto *k = s.kernel_as_MseLoss()) {
    o << "a=" << ref(k->a()) << " b=" << ref(k->b()) << " loss=" << ref(k->loss())
      << " count=" << k->count();
  } else if (auto *k = s.kernel_as_MseLossBackward()) {
    o << "a=" << ref(k->a()) << " b=" << ref(k->b()) << " dloss=" << ref(k->dloss())
      << " da=" << ref(k->da()) << " count=" << k->count();
  } else if (auto *k = s.kernel_as_Reduce()) {
    o << (k->mean() ? "mean" : "sum") << " input=" << ref(k->input())
      << " output=" << ref(k->output()) << " in_shape=" << list(k->in_shape(), "x")
      << " out_shape=" << list(k->out_shape(), "x");
  } else if (auto *k = s.kernel_as_Concat()) {
    o << "inputs=" << refs(k->inputs()) << " output=" << ref(k->output()) << " outer=" << k->outer()
      << " row_sizes=" << list(k->row_sizes());
  } else if (auto *k = s.kernel_as_Slice()) {
    o << "input=" << ref(k->input()) << " output=" << ref(k->output()) << " outer=" << k->outer()
      << " in_row=" << k->in_row() << " offset=" << k->offset() << " out_row=" << k->out_row();
  } else if (auto *k = s.kernel_as_Transpose()) {
    o << "input=" << ref(k->input()) << " output=" << ref(k->output())
      << " in_shape=" << list(k->in_shape(), "x") << " perm=" << list(k->perm());
  } else if (auto *k = s.kernel_as_Copy()) {
    o << "input=" << ref(k->input()) << " output=" << ref(k->output()) << " count=" << k->count();
  } else if (auto *k = s.kernel_as_AllFinite()) {
    o << "inputs=" << refs(k->inputs());
    if (k->multiplier() >= 0)
      o << " times=" << ref(k->multiplier());
    o << " output=" << ref(k->output());
  } else {
    o << "<no kernel>";
  }
  return o.str();
}

void Printer::elementwise(const Elementwise &k) {
  if (k.inputs())
    for (unsigned i = 0; i < k.inputs()->size(); ++i) {
      const Operand *in = k.inputs()->Get(i);
      os_ << "      in" << i << " = " << ref(in->tensor()) << " strides " << list(in->strides())
          << "\n";
    }
  if (k.program())
    for (unsigned r = 0; r < k.program()->size(); ++r) {
      const Instr *ins = k.program()->Get(r);
      os_ << "      r" << r << " = ";
      if (ins->op() >= kNumScalarOps) {
        os_ << "<unknown op " << int(ins->op()) << ">\n";
        continue;
      }
      auto op = ScalarOp(ins->op());
      os_ << scalarOpName(op);
      if (op == ScalarOp::Load)
        os_ << " in" << fmt(ins->imm());
      else if (op == ScalarOp::Const)
        os_ << " " << fmt(ins->imm());
      else {
        int regs[3] = {ins->a(), ins->b(), ins->c()};
        for (int a = 0; a < scalarOpArity(op); ++a)
          os_ << (a ? ", r" : " r") << regs[a];
      }
      os_ << "\n";
    }
  if (k.outputs())
    for (unsigned o = 0; o < k.outputs()->size(); ++o) {
      os_ << "      out" << o << " " << ref(k.outputs()->Get(o)) << " = ";
      if (k.output_regs() && o < k.output_regs()->size())
        os_ << "r" << k.output_regs()->Get(o);
      else
        os_ << "?";
      os_ << "\n";
    }
}

/// Per function, the step where the most temps in the arena are live at once (the
/// liveness the runtime verifies the memory plan against): where the peak is, how close
/// the arena's first fit came to it, and what room a backend's scratch finds there.
void Printer::livePeaks() {
  if (!loaded_) {
    os_ << "  live temps per step: not shown (the runtime's checks fail, above)\n";
    return;
  }
  if (!p_.functions())
    return;
  for (uint32_t f = 0; f < p_.functions()->size(); ++f) {
    const Function *fn = p_.functions()->Get(f);
    const int64_t steps = fn->steps() ? int64_t(fn->steps()->size()) : 0;
    const std::vector<LoadedPlan::ArenaTemp> &temps = loaded_->arenaTemps(f);
    if (temps.empty() || steps == 0)
      continue;
    // The bytes the live temps cover: the arena less its free spans (a result written in
    // place of a dying input shares its bytes: counted once).
    std::vector<uint64_t> live(size_t(steps), p_.arena_bytes());
    for (int64_t s = 0; s < steps; ++s)
      for (const auto &[begin, end] : loaded_->freeArenaSpans(f, s))
        live[size_t(s)] -= end - begin;
    const int64_t peak = int64_t(std::max_element(live.begin(), live.end()) - live.begin());
    const Step *step = fn->steps()->Get(uint32_t(peak));
    os_ << "  " << (fn->name() ? fn->name()->str() : "?") << ": at most " << live[size_t(peak)]
        << " bytes of temps live at once, at step " << peak << " '"
        << (step->name() ? step->name()->str() : "") << "'; the largest free span of the arena "
        << "there is " << loaded_->largestFreeArenaSpan(f, peak, 256) << " bytes\n";
  }
}

} // namespace

std::string printPlan(const uint8_t *data, size_t size, std::ostream &os,
                      const PlanPrintOptions &options) {
  if (std::string problem = checkPlanBytes(data, size); !problem.empty())
    return problem;
  if (!options.source.empty() || !options.ptx.empty())
    return printKernelText(*GetPlan(data), options, os);
  // The runtime's checks (and the liveness they compute) on a copy of the bytes.
  std::optional<LoadedPlan> loaded;
  std::string loadError;
  try {
    loaded.emplace(LoadedPlan::fromBytes(std::vector<uint8_t>(data, data + size), "the plan"));
  } catch (const Error &e) {
    loadError = e.what();
  }
  Printer(*GetPlan(data), os, options, loaded ? &*loaded : nullptr, loadError).print(size);
  return "";
}

std::string printPlanFile(const std::string &path, std::ostream &os,
                          const PlanPrintOptions &options) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return path + ": cannot open: " + std::strerror(errno);
  // A directory opens but throws on the first read (libstdc++'s filebuf::underflow).
  std::vector<uint8_t> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure &) {
    return path + ": cannot read: " + std::strerror(errno);
  }
  std::string problem = printPlan(bytes.data(), bytes.size(), os, options);
  return problem.empty() ? "" : path + ": " + problem;
}

int inspectMain(int argc, char **argv) {
  const char *usage = "usage: inspect PLAN [--all-tensors] [--source K | --ptx K]\n"
                      "  --source K   the CUDA C++ of kernel K (its name or k<N> as listed;\n"
                      "               'prelude' for the prelude every kernel is compiled after)\n"
                      "  --ptx K      the PTX of kernel K\n";
  PlanPrintOptions options;
  std::string path;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    }
    if (arg == "--all-tensors") {
      options.allTensors = true;
    } else if (arg == "--source" || arg == "--ptx") {
      if (i + 1 >= argc) {
        std::cerr << "error: " << arg << " needs a kernel name (or k<N>)\n" << usage;
        return 2;
      }
      (arg == "--source" ? options.source : options.ptx) = argv[++i];
    } else if (arg.size() > 1 && arg[0] == '-') {
      std::cerr << "error: unknown option '" << arg << "'\n" << usage;
      return 2;
    } else if (path.empty()) {
      path = arg;
    } else {
      std::cerr << "error: inspect takes one plan, got '" << path << "' and '" << arg << "'\n"
                << usage;
      return 2;
    }
  }
  if (path.empty()) {
    std::cerr << "error: inspect needs a plan file\n" << usage;
    return 2;
  }
  std::string problem = printPlanFile(path, std::cout, options);
  if (!problem.empty()) {
    std::cout.flush();
    std::cerr << "error: " << problem << "\n";
    return 1;
  }
  return 0;
}

} // namespace mantissa
