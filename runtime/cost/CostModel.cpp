//===- CostModel.cpp - modelled time and energy of a plan on a device -----===//
#include "runtime/cost/CostModel.h"

#include "common/Error.h"
#include "plan/DType.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

namespace mantissa {

// The built-in device descriptions (runtime/cost/devices/*.json, embedded by CMake).
extern const char *const kDeviceH100Json;
extern const char *const kDeviceH200Json;

const char *opClassName(OpClass c) {
  switch (c) {
  case OpClass::Tensor:
    return "tensor";
  case OpClass::Fp32:
    return "fp32";
  case OpClass::Memory:
    return "memory";
  }
  return "?";
}

namespace {

const json::Value *member(const json::Value &object, const std::string &key) {
  for (const auto &[name, value] : object.members)
    if (name == key)
      return &value;
  return nullptr;
}

double positiveNumber(const json::Value &object, const std::string &key, const std::string &where) {
  const json::Value *v = member(object, key);
  if (!v || v->kind != json::Value::Kind::Number)
    throw Error(where + ": device description needs a number \"" + key + "\"");
  double x = std::strtod(v->text.c_str(), nullptr);
  if (!(x > 0))
    throw Error(where + ": \"" + key + "\" must be positive, got " + v->text);
  return x;
}

double bytesOf(const LoadedPlan &plan, int id) {
  return double(plan.numElements(id)) * dtypeBytes(plan->tensors()->Get(id)->dtype());
}

int elementSize(const LoadedPlan &plan, int id) { return int(dtypeBytes(plan->tensors()->Get(id)->dtype())); }

/// Tensor cores for half-precision operands; fp32 (or TF32) otherwise.
OpClass matrixClass(const LoadedPlan &plan, int a, int b) {
  if (elementSize(plan, a) == 2 && elementSize(plan, b) == 2)
    return OpClass::Tensor;
  return OpClass::Fp32;
}

/// A memory-bound kernel that reads `in` and writes `out` (tensor ids), one FLOP
/// per element written.
KernelWork memoryWork(const LoadedPlan &plan, std::initializer_list<int> in,
                      std::initializer_list<int> out) {
  KernelWork w;
  for (int id : in)
    if (id >= 0)
      w.bytes += bytesOf(plan, id);
  for (int id : out)
    if (id >= 0) {
      w.bytes += bytesOf(plan, id);
      w.flops += double(plan.numElements(id));
    }
  return w;
}

KernelWork convWork(const LoadedPlan &plan, const plan::Conv2d &k) {
  double p = double((k.h() + 2 * k.pad_h() - k.r()) / k.stride_h() + 1);
  double q = double((k.w() + 2 * k.pad_w() - k.s()) / k.stride_w() + 1);
  // Every kind is the same implicit GEMM of n*p*q x k x c*r*s multiply-adds.
  KernelWork w;
  w.flops = 2.0 * double(k.n()) * p * q * double(k.k()) * double(k.c() * k.r() * k.s());
  w.bytes = bytesOf(plan, k.in0()) + bytesOf(plan, k.in1()) +
            bytesOf(plan, k.out()) * (k.accumulate() ? 2 : 1);
  w.opClass = matrixClass(plan, k.in0(), k.in1());
  return w;
}

KernelWork stepWorkOf(const LoadedPlan &plan, const plan::Step &step);

KernelWork stepWork(const LoadedPlan &plan, const plan::Step &step) {
  KernelWork w = stepWorkOf(plan, step);
  w.costClass = plan::EnumNameKernel(step.kernel_type());
  if (step.kernel_type() == plan::Kernel::Conv2d)
    w.costClass += std::string(".") + plan::EnumNameConvKind(step.kernel_as_Conv2d()->kind());
  if (w.opClass != OpClass::Memory)
    w.costClass += std::string(".") + opClassName(w.opClass);
  return w;
}

KernelWork stepWorkOf(const LoadedPlan &plan, const plan::Step &step) {
  using K = plan::Kernel;
  switch (step.kernel_type()) {
  case K::Gemm: {
    const plan::Gemm &g = *step.kernel_as_Gemm();
    KernelWork w =
        gemmWork(double(g.m()), double(g.n()), double(g.k()), double(g.batch()),
                 elementSize(plan, g.a()), elementSize(plan, g.b()), elementSize(plan, g.c()),
                 g.beta() != 0.0f, matrixClass(plan, g.a(), g.b()));
    // The epilogue reads the bias once; its adds and relu are priced as free beside
    // the 2k FLOPs of each output.
    if (g.bias() >= 0)
      w.bytes += bytesOf(plan, g.bias());
    return w;
  }
  case K::Conv2d:
    return convWork(plan, *step.kernel_as_Conv2d());
  case K::Elementwise: {
    const plan::Elementwise &e = *step.kernel_as_Elementwise();
    double elements = 1, instructions = 0, in = 0, out = 0;
    for (int64_t d : *e.shape())
      elements *= double(d);
    for (const plan::Instr *instr : *e.program())
      instructions += instr->op() > 1; // not Const or Load (common/ScalarOps.def)
    for (const plan::Operand *operand : *e.inputs())
      in += bytesOf(plan, operand->tensor());
    for (int id : *e.outputs())
      out += bytesOf(plan, id);
    return elementwiseWork(elements, instructions, in, out);
  }
  case K::MaxPool2d: {
    const auto &k = *step.kernel_as_MaxPool2d();
    if (k.indices() < 0)
      return memoryWork(plan, {k.x()}, {k.y()});
    return memoryWork(plan, {k.x()}, {k.y(), k.indices()});
  }
  case K::MaxPool2dBackward: {
    const auto &k = *step.kernel_as_MaxPool2dBackward();
    return memoryWork(plan, {k.dy(), k.x(), k.y()}, {k.dx()});
  }
  case K::BatchNorm: {
    const auto &k = *step.kernel_as_BatchNorm();
    return memoryWork(plan, {k.x(), k.x(), k.gamma(), k.beta(), k.input_bias()},
                      {k.y()}); // statistics pass + normalise
  }
  case K::BatchNormBackward: {
    const auto &k = *step.kernel_as_BatchNormBackward();
    return memoryWork(plan, {k.dy(), k.x(), k.dy(), k.x(), k.mask(), k.mask(), k.input_bias()},
                      {k.dx(), k.dgamma(), k.dbeta()});
  }
  case K::SoftmaxCrossEntropy: {
    const auto &k = *step.kernel_as_SoftmaxCrossEntropy();
    return memoryWork(plan, {k.logits(), k.labels()}, {k.loss()});
  }
  case K::SoftmaxCrossEntropyBackward: {
    const auto &k = *step.kernel_as_SoftmaxCrossEntropyBackward();
    return memoryWork(plan, {k.logits(), k.labels(), k.dloss()}, {k.dlogits()});
  }
  case K::MseLoss: {
    const auto &k = *step.kernel_as_MseLoss();
    return memoryWork(plan, {k.a(), k.b()}, {k.loss()});
  }
  case K::MseLossBackward: {
    const auto &k = *step.kernel_as_MseLossBackward();
    return memoryWork(plan, {k.a(), k.b(), k.dloss()}, {k.da()});
  }
  case K::Reduce: {
    const auto &k = *step.kernel_as_Reduce();
    KernelWork w = memoryWork(plan, {k.input()}, {k.output()});
    w.flops = double(plan.numElements(k.input()));
    return w;
  }
  case K::Concat: {
    const auto &k = *step.kernel_as_Concat();
    KernelWork w = memoryWork(plan, {}, {k.output()});
    for (int id : *k.inputs())
      w.bytes += bytesOf(plan, id);
    return w;
  }
  case K::Slice: {
    const auto &k = *step.kernel_as_Slice();
    return memoryWork(plan, {k.output()}, {k.output()}); // reads only what it copies
  }
  case K::Transpose: {
    const auto &k = *step.kernel_as_Transpose();
    return memoryWork(plan, {k.input()}, {k.output()});
  }
  case K::Copy: {
    const auto &k = *step.kernel_as_Copy();
    return memoryWork(plan, {k.input()}, {k.output()});
  }
  case K::AllFinite: {
    const auto &k = *step.kernel_as_AllFinite();
    KernelWork w = memoryWork(plan, {}, {k.output()});
    if (k.multiplier() >= 0)
      w.bytes += bytesOf(plan, k.multiplier());
    for (int id : *k.inputs()) {
      w.bytes += bytesOf(plan, id);
      w.flops += double(plan.numElements(id));
    }
    return w;
  }
  default:
    throw Error(plan.name() + ": step '" + (step.name() ? step.name()->str() : "?") +
                "': the cost model has no rule for its kernel");
  }
}

} // namespace

DeviceSpec parseDeviceSpec(const std::string &text, const std::string &where) {
  json::Value root = json::parse(text, where);
  if (root.kind != json::Value::Kind::Object)
    throw Error(where + ": a device description is a JSON object");
  DeviceSpec d;
  const json::Value *name = member(root, "name");
  if (!name || name->kind != json::Value::Kind::String)
    throw Error(where + ": device description needs a string \"name\"");
  d.name = name->text;
  d.fp32Flops = positiveNumber(root, "fp32_flops", where);
  d.tf32Flops = positiveNumber(root, "tf32_flops", where);
  d.tensorFlops = positiveNumber(root, "tensor_flops", where);
  d.memoryBandwidth = positiveNumber(root, "memory_bandwidth", where);
  d.memoryBytes = positiveNumber(root, "memory_bytes", where);
  d.launchOverhead = positiveNumber(root, "launch_overhead_s", where);
  const json::Value *power = member(root, "power_w");
  if (!power || power->kind != json::Value::Kind::Object)
    throw Error(where + ": device description needs \"power_w\": {\"tensor\", \"fp32\", \"memory\"}");
  d.tensorPower = positiveNumber(*power, "tensor", where + ": power_w");
  d.fp32Power = positiveNumber(*power, "fp32", where + ": power_w");
  d.memoryPower = positiveNumber(*power, "memory", where + ": power_w");
  if (const json::Value *eff = member(root, "efficiency")) {
    if (eff->kind != json::Value::Kind::Object)
      throw Error(where + ": \"efficiency\" is an object of cost class -> fraction of the roofline");
    for (const auto &[costClass, v] : eff->members)
      d.efficiency[costClass] = positiveNumber(*eff, costClass, where + ": efficiency");
  }
  return d;
}

std::string formatDeviceSpec(const DeviceSpec &d, const std::string &note) {
  std::ostringstream o;
  o.precision(6);
  o << "{\n  \"name\": " << json::quote(d.name) << ",\n  \"description\": " << json::quote(note)
    << ",\n  \"fp32_flops\": " << d.fp32Flops << ",\n  \"tf32_flops\": " << d.tf32Flops
    << ",\n  \"tensor_flops\": " << d.tensorFlops << ",\n  \"memory_bandwidth\": " << d.memoryBandwidth
    << ",\n  \"memory_bytes\": " << d.memoryBytes << ",\n  \"launch_overhead_s\": " << d.launchOverhead
    << ",\n  \"power_w\": {\"tensor\": " << d.tensorPower << ", \"fp32\": " << d.fp32Power
    << ", \"memory\": " << d.memoryPower << "}";
  if (!d.efficiency.empty()) {
    o << ",\n  \"efficiency\": {";
    bool first = true;
    for (const auto &[costClass, e] : d.efficiency) {
      o << (first ? "\n    " : ",\n    ") << json::quote(costClass) << ": " << e;
      first = false;
    }
    o << "\n  }";
  }
  o << "\n}\n";
  return o.str();
}

std::map<std::string, double> fitEfficiency(const std::vector<FitSample> &samples,
                                            double launchOverhead) {
  struct Sums {
    double roofline = 0, measured = 0;
    int n = 0;
  };
  std::map<std::string, Sums> sums;
  for (const FitSample &s : samples) {
    Sums &c = sums[s.costClass];
    c.roofline += s.rooflineSeconds;
    c.measured += s.measuredSeconds;
    ++c.n;
  }
  std::map<std::string, double> eff;
  for (const auto &[costClass, c] : sums) {
    const double work = c.measured - c.n * launchOverhead;
    if (work > 0 && c.roofline > 0)
      eff[costClass] = std::clamp(c.roofline / work, 1e-3, 10.0);
  }
  return eff;
}

DeviceSpec loadDeviceSpec(const std::string &nameOrPath) {
  std::string lower = nameOrPath;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "h100")
    return parseDeviceSpec(kDeviceH100Json, "built-in h100");
  if (lower == "h200")
    return parseDeviceSpec(kDeviceH200Json, "built-in h200");
  std::ifstream in(nameOrPath);
  if (!in)
    throw Error("--device '" + nameOrPath + "': neither h100, h200 nor a readable JSON file");
  std::vector<uint8_t> bytes = readFileBytes(nameOrPath); // a directory opens, but is no file
  return parseDeviceSpec(std::string(bytes.begin(), bytes.end()), nameOrPath);
}

KernelWork gemmWork(double m, double n, double k, double batch, int bytesA, int bytesB,
                    int bytesC, bool accumulate, OpClass opClass) {
  KernelWork w;
  w.flops = 2.0 * m * n * k * batch;
  w.bytes = batch * (m * k * bytesA + k * n * bytesB + m * n * bytesC * (accumulate ? 2 : 1));
  w.opClass = opClass;
  return w;
}

KernelWork elementwiseWork(double elements, double instructions, double bytesIn, double bytesOut) {
  KernelWork w;
  w.flops = elements * instructions;
  w.bytes = bytesIn + bytesOut;
  w.opClass = OpClass::Memory;
  return w;
}

const double &opClassPower(const DeviceSpec &device, OpClass c) {
  return c == OpClass::Tensor ? device.tensorPower
         : c == OpClass::Fp32 ? device.fp32Power
                              : device.memoryPower;
}

double &opClassPower(DeviceSpec &device, OpClass c) {
  return const_cast<double &>(opClassPower(std::as_const(device), c));
}

double efficiencyOf(const DeviceSpec &device, const std::string &costClass) {
  auto fitted = device.efficiency.find(costClass);
  return fitted == device.efficiency.end() ? 1.0 : fitted->second;
}

KernelTime roofline(const KernelWork &work, const DeviceSpec &device) {
  double peak = work.opClass == OpClass::Tensor ? device.tensorFlops : device.fp32Flops;
  KernelTime t;
  t.seconds = std::max(work.flops / peak, work.bytes / device.memoryBandwidth) /
                  efficiencyOf(device, work.costClass) +
              device.launchOverhead;
  t.joules = t.seconds * opClassPower(device, work.opClass);
  return t;
}

PlanCost costPlan(const LoadedPlan &plan, const DeviceSpec &device, const std::string &function) {
  const plan::Function *fn = plan.findFunction(function);
  if (!fn)
    throw Error(plan.name() + ": the plan has no function '" + function + "'");
  // fp32 GEMMs of a --tf32 plan run at the TF32 tensor-core rate.
  DeviceSpec d = device;
  if (plan->precision() && plan->precision()->tf32())
    d.fp32Flops = device.tf32Flops;
  PlanCost cost;
  for (const plan::Step *step : *fn->steps()) {
    KernelCost k;
    k.step = step->name() ? step->name()->str() : "";
    k.op = step->op() ? step->op()->str() : "";
    k.kernel = plan::EnumNameKernel(step->kernel_type());
    k.work = stepWork(plan, *step);
    // TF32 applies to matrix work only; elementwise work stays at the fp32 rate.
    k.time = roofline(k.work, k.work.opClass == OpClass::Fp32 ? d : device);
    cost.seconds += k.time.seconds;
    cost.joules += k.time.joules;
    cost.kernels.push_back(std::move(k));
  }
  return cost;
}

} // namespace mantissa
