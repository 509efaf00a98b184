//===- PlanBuilder.cpp - lowering graph IR to a plan ----------------------===//
//
// One plan tensor per SSA value (persistent state and inputs shared by name
// between the functions), one or two plan steps per graph op. Steps are first
// collected with their tensor operands in "slots" (read / written), so that the
// assigns at the end of train_step can be resolved by aliasing (the producing
// step writes the persistent tensor directly) where no later step reads the old
// value, and by a Copy at the end otherwise. Then the FlatBuffer is written.
//===----------------------------------------------------------------------===//
#include "compiler/PlanBuilder.h"
#include "plan/DType.h"

#include "compiler/PassUtils.h"
#include "mantissa/Graph/GraphOps.h"
#include "plan/PlanIntegrity.h"
#include "plan/mantissa_plan_generated.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <functional>
#include <numeric>

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;
namespace fb = flatbuffers;

//===----------------------------------------------------------------------===//
// Parameter initialisation
//===----------------------------------------------------------------------===//

// uniformInit and splitmix64 live in common/Init.h: the runtime regenerates the
// same values from a plan's Uniform initialiser.

//===----------------------------------------------------------------------===//
// The lowering
//===----------------------------------------------------------------------===//

namespace {

struct TensorInfo {
  std::string name;
  plan::DType dtype = plan::DType::F32;
  std::vector<int64_t> shape;
  plan::Role role = plan::Role::Temp;
  // The initialiser of a persistent tensor (see InitKind in the schema).
  plan::InitKind initKind = plan::InitKind::Fill;
  double initBound = 0;
  float initFill = 0;
  int master = -1; // a WorkingCopy's Param

  int64_t numElements() const {
    return std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
  }
};

/// A tensor operand of a step: read, written or both. `contiguous` marks an
/// elementwise read with the output's own strides (which may then be written in
/// place: the CPU interpreter and the generated kernels load before they store).
struct Slot {
  int tensor;
  bool read, write;
  bool contiguous = false;
};

using KernelBuilder =
    std::function<fb::Offset<void>(fb::FlatBufferBuilder &, const std::vector<int> &ids)>;

struct PendingStep {
  std::string name, op;
  plan::DType precision;
  plan::Kernel kind;
  std::vector<Slot> slots;
  KernelBuilder build; // gets the final tensor id of every slot, in slot order
};

struct PendingFunction {
  std::string name;
  std::vector<PendingStep> steps;
  std::vector<int> outputs;
};

static Slot in(int t) { return {t, true, false}; }
static Slot out(int t) { return {t, false, true}; }
static Slot inOut(int t) { return {t, true, true}; }

static std::vector<int64_t> toVec(ArrayRef<int64_t> a) { return {a.begin(), a.end()}; }

static int64_t product(ArrayRef<int64_t> dims) {
  return std::accumulate(dims.begin(), dims.end(), int64_t(1), std::multiplies<>());
}

static std::vector<int64_t> contiguousStrides(ArrayRef<int64_t> shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int d = int(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

class PlanLowering {
public:
  PlanLowering(ModuleOp module, const PlanConfig &config) : module(module), config(config) {}

  FailureOr<std::vector<uint8_t>> run();

private:
  // Tensors.
  FailureOr<plan::DType> dtypeOf(Type type, Location loc);
  FailureOr<int> newTemp(Value v);
  FailureOr<int> persistentTensor(Operation *op);
  FailureOr<int> lookup(Value v, Operation *user);
  int64_t numElements(int t) const { return tensors[t].numElements(); }

  // Functions and steps.
  LogicalResult lowerFunction(func::FuncOp fn, bool eval, PendingFunction &out);
  LogicalResult lowerOp(Operation *op, bool eval);
  PendingStep &addStep(Operation *op, plan::Kernel kind, std::vector<Slot> slots,
                       KernelBuilder build, StringRef suffix = "");
  LogicalResult addElementwise(Operation *op, ArrayRef<int64_t> shape, ArrayRef<Value> inputs,
                               ArrayRef<ScalarInstr> program, ArrayRef<int> outputs,
                               ArrayRef<int> outputRegs, StringRef suffix = "");
  LogicalResult addElementwiseTensors(Operation *op, ArrayRef<int64_t> shape,
                                      ArrayRef<std::pair<int, std::vector<int64_t>>> inputs,
                                      ArrayRef<ScalarInstr> program, ArrayRef<int> outputs,
                                      ArrayRef<int> outputRegs, StringRef suffix);
  LogicalResult resolveAssigns(PendingFunction &fn);
  bool canAlias(const PendingFunction &fn, int temp, int state) const;

  // Configuration.
  plan::DType precisionOf(Operation *op);
  std::string inferPolicy();
  LogicalResult readOptimizer(func::FuncOp train, OptimizerConfig &opt);
  LossScalingConfig readLossScaling(func::FuncOp train);

  struct MemoryPlan {
    std::vector<int64_t> offset; // per tensor: its arena offset, -1 for none
    uint64_t arenaBytes = 0, persistentBytes = 0, inputBytes = 0;
  };
  MemoryPlan planMemory(const std::vector<PendingFunction> &fns, const std::vector<bool> &used,
                        int finiteT);
  std::vector<uint8_t> serialize(const std::vector<PendingFunction> &fns,
                                 const LossScalingConfig &ls, const OptimizerConfig &opt,
                                 const std::string &policy);

  ModuleOp module;
  const PlanConfig &config;
  std::vector<TensorInfo> tensors;
  llvm::StringMap<int> named;              // persistent state and inputs, by name
  llvm::StringMap<Operation *> declaredBy; // the first op that declared each name

  // Per function.
  llvm::DenseMap<Value, int> valueTensor;
  /// A convolution result stored without its bias, and the bias tensor that the batch
  /// norms reading it add (PlanConfig::foldConvBias).
  llvm::DenseMap<Value, int> inputBias;
  std::vector<PendingStep> *steps = nullptr;
  struct Assign {
    std::string name;
    int value;
    Location loc;
  };
  std::vector<Assign> assigns;
  int foundFinite = -1;
  std::vector<int> aliasOf; // temp -> the persistent tensor it was merged into
};

} // namespace

FailureOr<plan::DType> PlanLowering::dtypeOf(Type type, Location loc) {
  Type e = cast<ShapedType>(type).getElementType();
  if (e.isF32())
    return plan::DType::F32;
  if (e.isF16())
    return plan::DType::F16;
  if (e.isBF16())
    return plan::DType::BF16;
  if (e.isSignlessInteger(32))
    return plan::DType::I32;
  return emitError(loc) << "emit-plan: element type " << e
                        << " has no plan dtype (plans hold f32, f16, bf16 and i32)";
}

FailureOr<int> PlanLowering::newTemp(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  Location loc = v.getLoc();
  if (!type || !type.hasStaticShape())
    return emitError(loc) << "emit-plan: needs a statically shaped tensor, got " << v.getType();
  auto dtype = dtypeOf(type, loc);
  if (failed(dtype))
    return failure();
  TensorInfo t;
  t.dtype = *dtype;
  t.shape = toVec(type.getShape());
  tensors.push_back(std::move(t));
  aliasOf.push_back(-1);
  int id = int(tensors.size()) - 1;
  valueTensor[v] = id;
  return id;
}

FailureOr<int> PlanLowering::persistentTensor(Operation *op) {
  std::string name;
  TensorInfo t;
  Value result = op->getResult(0);
  auto type = cast<RankedTensorType>(result.getType());
  if (auto p = dyn_cast<ParamOp>(op)) {
    name = p.getName().str();
    t.role = plan::Role::Param;
  } else if (auto b = dyn_cast<BufferOp>(op)) {
    name = b.getName().str();
    StringRef kind = b.getKind();
    t.role = kind == "optimizer" ? plan::Role::OptState
             : kind == "scaler"  ? plan::Role::ScalerState
                                 : plan::Role::Buffer;
  } else if (auto w = dyn_cast<WorkingCopyOp>(op)) {
    name = w.getName().str();
    t.role = plan::Role::WorkingCopy;
    t.initKind = plan::InitKind::Values; // none of its own: the master's, rounded
    auto master = named.find(w.getParam().str());
    if (master == named.end() || tensors[master->second].role != plan::Role::Param)
      return op->emitError() << "emit-plan: \"" << name << "\" is the working copy of \""
                             << w.getParam() << "\", which no graph.param before it declares";
    if (tensors[master->second].shape != toVec(type.getShape()))
      return op->emitError() << "emit-plan: working copy \"" << name
                             << "\" has another shape than its parameter";
    t.master = master->second;
  } else {
    name = cast<InputOp>(op).getName().str();
    t.role = plan::Role::Input;
  }
  auto dtype = dtypeOf(type, op->getLoc());
  if (failed(dtype))
    return failure();
  t.name = name;
  t.dtype = *dtype;
  t.shape = toVec(type.getShape());

  auto it = named.find(name);
  if (it != named.end()) {
    const TensorInfo &prev = tensors[it->second];
    if (prev.shape != t.shape || prev.dtype != t.dtype || prev.role != t.role ||
        op->getName() != declaredBy[name]->getName() ||
        op->getAttrDictionary() != declaredBy[name]->getAttrDictionary()) {
      InFlightDiagnostic diag = op->emitError()
                                << "emit-plan: \"" << name
                                << "\" is declared again with a different type or attributes";
      diag.attachNote(declaredBy[name]->getLoc()) << "first declared here";
      return failure();
    }
    valueTensor[result] = it->second;
    return it->second;
  }

  if (auto p = dyn_cast<ParamOp>(op)) {
    StringRef init = p.getInit();
    if (init == "uniform") {
      t.initKind = plan::InitKind::Uniform;
      t.initBound = p.getBound()->convertToDouble();
    } else {
      t.initFill = init == "ones" ? 1.0f : 0.0f;
    }
  } else if (auto b = dyn_cast<BufferOp>(op)) {
    StringRef init = b.getInit();
    t.initFill = init == "ones"    ? 1.0f
                 : init == "value" ? float(b.getValue()->convertToDouble())
                                   : 0.0f;
  }
  tensors.push_back(std::move(t));
  aliasOf.push_back(-1);
  int id = int(tensors.size()) - 1;
  named[name] = id;
  declaredBy[name] = op;
  valueTensor[result] = id;
  return id;
}

FailureOr<int> PlanLowering::lookup(Value v, Operation *user) {
  auto it = valueTensor.find(v);
  if (it != valueTensor.end())
    return it->second;
  if (isa<BlockArgument>(v))
    return user->emitError() << "emit-plan: function arguments have no plan tensor; read data "
                                "with graph.input and state with graph.param / graph.buffer";
  return user->emitError() << "emit-plan: operand has no plan tensor (defined by an op the "
                              "emitter skipped)";
}

plan::DType PlanLowering::precisionOf(Operation *op) {
  for (Type t : op->getResultTypes())
    if (auto shaped = dyn_cast<ShapedType>(t)) {
      Type e = shaped.getElementType();
      if (e.isF16())
        return plan::DType::F16;
      if (e.isBF16())
        return plan::DType::BF16;
      if (e.isF32())
        return plan::DType::F32;
    }
  return plan::DType::F32;
}

PendingStep &PlanLowering::addStep(Operation *op, plan::Kernel kind, std::vector<Slot> slots,
                                   KernelBuilder build, StringRef suffix) {
  std::string name;
  if (auto attr = op->getAttrOfType<StringAttr>("graph.name"))
    name = attr.str();
  else
    name = (op->getName().stripDialect() + "." + Twine(steps->size())).str();
  name += suffix.str();
  steps->push_back({name, op->getName().getStringRef().str(), precisionOf(op), kind,
                    std::move(slots), std::move(build)});
  return steps->back();
}

/// Strides (in elements of the input) that read `inShape` broadcast to `shape`.
static FailureOr<std::vector<int64_t>> broadcastStrides(ArrayRef<int64_t> inShape,
                                                        ArrayRef<int64_t> shape) {
  if (inShape.size() > shape.size())
    return failure();
  std::vector<int64_t> own = contiguousStrides(inShape);
  std::vector<int64_t> strides(shape.size(), 0);
  size_t lead = shape.size() - inShape.size();
  for (size_t d = 0; d < inShape.size(); ++d) {
    if (inShape[d] == shape[lead + d])
      strides[lead + d] = inShape[d] == 1 ? 0 : own[d];
    else if (inShape[d] != 1)
      return failure();
  }
  return strides;
}

static bool isContiguousRead(ArrayRef<int64_t> strides, ArrayRef<int64_t> shape) {
  std::vector<int64_t> contiguous = contiguousStrides(shape);
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 1 && strides[d] != contiguous[d])
      return false;
  return true;
}

LogicalResult
PlanLowering::addElementwiseTensors(Operation *op, ArrayRef<int64_t> shape,
                                    ArrayRef<std::pair<int, std::vector<int64_t>>> inputs,
                                    ArrayRef<ScalarInstr> program, ArrayRef<int> outputs,
                                    ArrayRef<int> outputRegs, StringRef suffix) {
  if (program.size() > size_t(INT16_MAX))
    return op->emitError() << "emit-plan: elementwise program of " << program.size()
                           << " instructions exceeds the plan's register range";
  std::vector<Slot> slots;
  std::vector<std::vector<int64_t>> strides;
  for (const auto &[tensor, inShape] : inputs) {
    auto s = broadcastStrides(inShape, shape);
    if (failed(s))
      return op->emitError() << "emit-plan: operand shape does not broadcast to the result";
    Slot slot = in(tensor);
    slot.contiguous = product(inShape) == product(shape) && isContiguousRead(*s, shape);
    slots.push_back(slot);
    strides.push_back(std::move(*s));
  }
  for (int o : outputs)
    slots.push_back(out(o));
  std::vector<plan::Instr> instrs;
  for (const ScalarInstr &i : program)
    instrs.emplace_back(uint8_t(i.op), int16_t(i.a), int16_t(i.b), int16_t(i.c), i.imm);
  std::vector<int16_t> regs(outputRegs.begin(), outputRegs.end());
  std::vector<int64_t> iter = toVec(shape);
  size_t numInputs = inputs.size();
  addStep(
      op, plan::Kernel::Elementwise, std::move(slots),
      [iter, strides, instrs, regs, numInputs](fb::FlatBufferBuilder &b,
                                               const std::vector<int> &ids) {
        std::vector<fb::Offset<plan::Operand>> operands;
        for (size_t i = 0; i < numInputs; ++i)
          operands.push_back(plan::CreateOperandDirect(b, ids[i], &strides[i]));
        std::vector<int32_t> outs(ids.begin() + numInputs, ids.end());
        return plan::CreateElementwiseDirect(b, &iter, &operands, &instrs, &outs, &regs).Union();
      },
      suffix);
  return success();
}

LogicalResult PlanLowering::addElementwise(Operation *op, ArrayRef<int64_t> shape,
                                           ArrayRef<Value> inputs, ArrayRef<ScalarInstr> program,
                                           ArrayRef<int> outputs, ArrayRef<int> outputRegs,
                                           StringRef suffix) {
  std::vector<std::pair<int, std::vector<int64_t>>> ins;
  for (Value v : inputs) {
    auto t = lookup(v, op);
    if (failed(t))
      return failure();
    ins.push_back({*t, toVec(cast<RankedTensorType>(v.getType()).getShape())});
  }
  return addElementwiseTensors(op, shape, ins, program, outputs, outputRegs, suffix);
}

static ArrayRef<int64_t> shapeOf(Value v) { return cast<RankedTensorType>(v.getType()).getShape(); }

/// The program of a bias add: out = in0 + in1.
static std::vector<ScalarInstr> addProgram() {
  ScalarProgramBuilder p;
  int a = p.load(0);
  int b = p.load(1);
  p.emit(ScalarOp::Add, a, b);
  return p.instructions();
}

LogicalResult PlanLowering::lowerOp(Operation *op, bool eval) {
  // Values from outside: no step.
  if (isa<ParamOp, BufferOp, InputOp, WorkingCopyOp>(op))
    return failure(failed(persistentTensor(op)));

  // Every result gets its tensor; batch_norm's running statistics are the exception
  // (below), as it updates them in place.
  auto bn = dyn_cast<BatchNormOp>(op);
  for (auto [i, r] : llvm::enumerate(op->getResults())) {
    if (bn && i >= 3)
      continue;
    if (failed(newTemp(r)))
      return failure();
  }
  auto id = [&](Value v) { return valueTensor.lookup(v); };
  // Operands first: each must have a tensor.
  for (Value v : op->getOperands())
    if (failed(lookup(v, op)))
      return failure();

  if (auto c = dyn_cast<ConstantOp>(op)) {
    ScalarProgramBuilder p;
    p.constant(c.getValue().convertToDouble());
    return addElementwise(op, shapeOf(c.getResult()), {}, p.instructions(), {id(c.getResult())},
                          {0});
  }

  if (auto lin = dyn_cast<LinearOp>(op)) {
    int x = id(lin.getInput()), w = id(lin.getWeight()), y = id(lin.getResult());
    int64_t m = shapeOf(lin.getInput())[0], k = shapeOf(lin.getInput())[1],
            n = shapeOf(lin.getWeight())[0];
    // fuse-elementwise's gemm-epilogue: the bias (and relu) inside the GEMM.
    if (auto epilogue = lin->getAttrOfType<StringAttr>("graph.epilogue")) {
      if (!lin.getBias() || (epilogue.getValue() != "bias" && epilogue.getValue() != "bias_relu"))
        return op->emitError() << "emit-plan: linear epilogue '" << epilogue.getValue()
                               << "' (expected \"bias\" or \"bias_relu\", with a bias)";
      const bool relu = epilogue.getValue() == "bias_relu";
      addStep(op, plan::Kernel::Gemm, {in(x), in(w), in(id(lin.getBias())), out(y)},
              [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
                return plan::CreateGemm(b, t[0], t[1], t[3], false, true, m, n, k, 1, 1.0f, 0.0f,
                                        t[2], relu)
                    .Union();
              });
      return success();
    }
    addStep(op, plan::Kernel::Gemm, {in(x), in(w), out(y)},
            [m, n, k](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateGemm(b, t[0], t[1], t[2], false, true, m, n, k).Union();
            });
    if (Value bias = lin.getBias()) {
      std::vector<int64_t> shape = {m, n};
      return addElementwiseTensors(op, shape, {{y, shape}, {id(bias), toVec(shapeOf(bias))}},
                                   addProgram(), {y}, {2}, ".bias_add");
    }
    return success();
  }

  if (auto mm = dyn_cast<MatmulOp>(op)) {
    bool ta = mm.getTransposeA(), tb = mm.getTransposeB();
    ArrayRef<int64_t> a = shapeOf(mm.getA()), bs = shapeOf(mm.getB());
    int64_t m = ta ? a[1] : a[0], k = ta ? a[0] : a[1], n = tb ? bs[0] : bs[1];
    addStep(op, plan::Kernel::Gemm, {in(id(mm.getA())), in(id(mm.getB())), out(id(mm.getResult()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateGemm(b, t[0], t[1], t[2], ta, tb, m, n, k).Union();
            });
    return success();
  }

  // Convolutions: x is [n, c, h, w], w is [k, c, r, s] in the plan's terms.
  auto addConv = [&](plan::ConvKind kind, int in0, int in1, int outT, ArrayRef<int64_t> x,
                     ArrayRef<int64_t> w, ArrayRef<int64_t> stride, ArrayRef<int64_t> pad) {
    int64_t n = x[0], c = x[1], h = x[2], wd = x[3], k = w[0], r = w[2], s = w[3];
    int64_t sh = stride[0], sw = stride[1], ph = pad[0], pw = pad[1];
    addStep(op, plan::Kernel::Conv2d, {in(in0), in(in1), out(outT)},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateConv2d(b, kind, t[0], t[1], t[2], n, c, h, wd, k, r, s, sh, sw, ph,
                                        pw)
                  .Union();
            });
  };
  auto addChannelBias = [&](Value result, Value bias) -> LogicalResult {
    // Per-channel bias of an NCHW result: stride 0 over n, h, w.
    ArrayRef<int64_t> shape = shapeOf(result);
    int y = id(result);
    std::vector<int64_t> biasShape = {shape[1], 1, 1};
    return addElementwiseTensors(op, shape, {{y, toVec(shape)}, {id(bias), biasShape}},
                                 addProgram(), {y}, {2}, ".bias_add");
  };
  if (auto conv = dyn_cast<Conv2dOp>(op)) {
    addConv(plan::ConvKind::Forward, id(conv.getInput()), id(conv.getWeight()),
            id(conv.getResult()), shapeOf(conv.getInput()), shapeOf(conv.getWeight()),
            conv.getStride(), conv.getPadding());
    if (!conv.getBias())
      return success();
    // Read only as the input of batch norms (forward and backward): they add the bias
    // as they read it, rounded as the bias add would store it, so the bias add's pass
    // over the activation goes away.
    auto readsAsInput = [&](OpOperand &use) {
      Operation *user = use.getOwner();
      return (isa<BatchNormOp>(user) && use.getOperandNumber() == 0) ||
             (isa<BatchNormBackwardOp>(user) && use.getOperandNumber() == 1);
    };
    Value result = conv.getResult();
    if (config.foldConvBias && !result.use_empty() &&
        llvm::all_of(result.getUses(), readsAsInput) && shapeOf(conv.getBias()).size() == 1 &&
        cast<RankedTensorType>(conv.getBias().getType()).getElementType() ==
            cast<RankedTensorType>(result.getType()).getElementType()) {
      inputBias[result] = id(conv.getBias());
      return success();
    }
    return addChannelBias(result, conv.getBias());
  }
  if (auto convT = dyn_cast<ConvTranspose2dOp>(op)) {
    // The transposed convolution is the input gradient of the convolution whose
    // input is this op's output and whose output is this op's input.
    addConv(plan::ConvKind::BackwardInput, id(convT.getInput()), id(convT.getWeight()),
            id(convT.getResult()), shapeOf(convT.getResult()), shapeOf(convT.getWeight()),
            convT.getStride(), convT.getPadding());
    return convT.getBias() ? addChannelBias(convT.getResult(), convT.getBias()) : success();
  }
  if (auto bi = dyn_cast<Conv2dBackwardInputOp>(op)) {
    addConv(plan::ConvKind::BackwardInput, id(bi.getGrad()), id(bi.getWeight()), id(bi.getResult()),
            shapeOf(bi.getResult()), shapeOf(bi.getWeight()), bi.getStride(), bi.getPadding());
    return success();
  }
  if (auto bw = dyn_cast<Conv2dBackwardWeightOp>(op)) {
    addConv(plan::ConvKind::BackwardWeight, id(bw.getInput()), id(bw.getGrad()), id(bw.getResult()),
            shapeOf(bw.getInput()), shapeOf(bw.getResult()), bw.getStride(), bw.getPadding());
    return success();
  }

  if (auto pool = dyn_cast<MaxPool2dOp>(op)) {
    ArrayRef<int64_t> x = shapeOf(pool.getInput());
    int64_t n = x[0], c = x[1], h = x[2], w = x[3], k = pool.getKernel(), s = pool.getStride();
    // The indices are stored only when something reads them: the gradient finds the
    // argmax again in the input.
    std::vector<Slot> slots = {in(id(pool.getInput())), out(id(pool.getResult()))};
    bool indices = !pool.getIndices().use_empty();
    if (indices)
      slots.push_back(out(id(pool.getIndices())));
    addStep(op, plan::Kernel::MaxPool2d, std::move(slots),
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateMaxPool2d(b, t[0], t[1], indices ? t[2] : -1, n, c, h, w, k, s)
                  .Union();
            });
    return success();
  }
  if (auto pb = dyn_cast<MaxPool2dBackwardOp>(op)) {
    ArrayRef<int64_t> x = shapeOf(pb.getResult());
    int64_t n = x[0], c = x[1], h = x[2], w = x[3], k = pb.getKernel(), s = pb.getStride();
    addStep(
        op, plan::Kernel::MaxPool2dBackward,
        {in(id(pb.getGrad())), in(id(pb.getInput())), in(id(pb.getPooled())),
         out(id(pb.getResult()))},
        [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
          return plan::CreateMaxPool2dBackward(b, t[0], t[1], t[2], t[3], n, c, h, w, k, s).Union();
        });
    return success();
  }

  if (bn) {
    ArrayRef<int64_t> x = shapeOf(bn.getInput());
    int64_t n = x[0], c = x[1], hw = x.size() == 4 ? x[2] * x[3] : 1;
    float eps = float(bn.getEps().convertToDouble());
    float momentum = float(bn.getMomentum().convertToDouble());
    // eval_step runs @forward's batch norm with the running statistics.
    bool training = eval ? false : bn.getTraining();
    int rm = id(bn.getRunningMean()), rv = id(bn.getRunningVar());
    // The running statistics are updated in place: the new ones are the same tensors.
    valueTensor[bn.getNewRunningMean()] = rm;
    valueTensor[bn.getNewRunningVar()] = rv;
    Slot rmSlot = training ? inOut(rm) : in(rm), rvSlot = training ? inOut(rv) : in(rv);
    auto activation = bn->getAttrOfType<StringAttr>("graph.activation");
    if (activation && activation.getValue() != "relu")
      return op->emitError() << "emit-plan: batch norm activation '" << activation.getValue()
                             << "' (only relu is folded into a batch norm)";
    const bool relu = activation != nullptr;
    std::vector<Slot> slots = {in(id(bn.getInput())),
                               in(id(bn.getGamma())),
                               in(id(bn.getBeta())),
                               out(id(bn.getResult())),
                               out(id(bn.getSavedMean())),
                               out(id(bn.getSavedInvstd())),
                               rmSlot,
                               rvSlot};
    const bool biased = inputBias.count(bn.getInput()) > 0;
    if (biased)
      slots.push_back(in(inputBias.lookup(bn.getInput())));
    addStep(op, plan::Kernel::BatchNorm, std::move(slots),
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateBatchNorm(b, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], n, c,
                                           hw, eps, momentum, training, relu, biased ? t[8] : -1)
                  .Union();
            });
    return success();
  }
  if (auto bb = dyn_cast<BatchNormBackwardOp>(op)) {
    ArrayRef<int64_t> x = shapeOf(bb.getInput());
    int64_t n = x[0], c = x[1], hw = x.size() == 4 ? x[2] * x[3] : 1;
    // dy, x and the mask are read at dx's own index (in place, planMemory), after
    // the per-channel sums have read them all.
    Slot dy = in(id(bb.getGrad())), xs = in(id(bb.getInput()));
    dy.contiguous = xs.contiguous = true;
    std::vector<Slot> slots = {dy, xs, in(id(bb.getGamma())), in(id(bb.getSavedMean())),
                               in(id(bb.getSavedInvstd())), out(id(bb.getGradInput())),
                               out(id(bb.getGradGamma())), out(id(bb.getGradBeta()))};
    const bool mask = bool(bb.getMask());
    if (mask) {
      slots.push_back(in(id(bb.getMask())));
      slots.back().contiguous = true;
    }
    const bool biased = inputBias.count(bb.getInput()) > 0;
    if (biased)
      slots.push_back(in(inputBias.lookup(bb.getInput())));
    addStep(op, plan::Kernel::BatchNormBackward, std::move(slots),
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateBatchNormBackward(b, t[0], t[1], t[2], t[3], t[4], t[5], t[6],
                                                   t[7], n, c, hw, mask ? t[8] : -1,
                                                   biased ? t.back() : -1)
                  .Union();
            });
    return success();
  }

  if (auto r = dyn_cast<ReshapeOp>(op)) {
    int64_t count = product(shapeOf(r.getInput()));
    addStep(op, plan::Kernel::Copy, {in(id(r.getInput())), out(id(r.getResult()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateCopy(b, t[0], t[1], count).Union();
            });
    return success();
  }
  if (auto tr = dyn_cast<TransposeOp>(op)) {
    std::vector<int64_t> inShape = toVec(shapeOf(tr.getInput())), perm = toVec(tr.getPerm());
    addStep(op, plan::Kernel::Transpose, {in(id(tr.getInput())), out(id(tr.getResult()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateTransposeDirect(b, t[0], t[1], &inShape, &perm).Union();
            });
    return success();
  }
  if (auto bc = dyn_cast<BroadcastToOp>(op)) {
    ScalarProgramBuilder p;
    p.load(0);
    return addElementwise(op, shapeOf(bc.getResult()), {bc.getInput()}, p.instructions(),
                          {id(bc.getResult())}, {0});
  }
  if (auto cc = dyn_cast<ConcatOp>(op)) {
    ArrayRef<int64_t> shape = shapeOf(cc.getResult());
    int64_t axis = cc.getAxis();
    int64_t outer = product(shape.take_front(axis)), inner = product(shape.drop_front(axis + 1));
    std::vector<int64_t> rows;
    std::vector<Slot> slots;
    for (Value v : cc.getInputs()) {
      rows.push_back(shapeOf(v)[axis] * inner);
      slots.push_back(in(id(v)));
    }
    slots.push_back(out(id(cc.getResult())));
    addStep(op, plan::Kernel::Concat, std::move(slots),
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              std::vector<int32_t> inputs(t.begin(), t.end() - 1);
              return plan::CreateConcatDirect(b, &inputs, t.back(), outer, &rows).Union();
            });
    return success();
  }
  if (auto sl = dyn_cast<SliceOp>(op)) {
    ArrayRef<int64_t> shape = shapeOf(sl.getInput());
    int64_t axis = sl.getAxis();
    int64_t outer = product(shape.take_front(axis)), inner = product(shape.drop_front(axis + 1));
    int64_t inRow = shape[axis] * inner, offset = sl.getOffset() * inner,
            outRow = sl.getSize() * inner;
    addStep(op, plan::Kernel::Slice, {in(id(sl.getInput())), out(id(sl.getResult()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateSlice(b, t[0], t[1], outer, inRow, offset, outRow).Union();
            });
    return success();
  }

  auto addReduce = [&](Value input, Value result, ArrayRef<int64_t> axes, bool mean) {
    std::vector<int64_t> inShape = toVec(shapeOf(input)), outShape = inShape;
    for (int64_t a : axes)
      outShape[a] = 1;
    addStep(op, plan::Kernel::Reduce, {in(id(input)), out(id(result))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateReduceDirect(b, t[0], t[1], &inShape, &outShape, mean).Union();
            });
    return success();
  };
  if (auto rs = dyn_cast<ReduceSumOp>(op))
    return addReduce(rs.getInput(), rs.getResult(), rs.getAxes(), false);
  if (auto rm = dyn_cast<ReduceMeanOp>(op))
    return addReduce(rm.getInput(), rm.getResult(), rm.getAxes(), true);

  if (auto ce = dyn_cast<SoftmaxCrossEntropyOp>(op)) {
    int64_t n = shapeOf(ce.getLogits())[0], c = shapeOf(ce.getLogits())[1];
    addStep(op, plan::Kernel::SoftmaxCrossEntropy,
            {in(id(ce.getLogits())), in(id(ce.getLabels())), out(id(ce.getLoss()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateSoftmaxCrossEntropy(b, t[0], t[1], t[2], n, c).Union();
            });
    return success();
  }
  if (auto ceb = dyn_cast<SoftmaxCrossEntropyBackwardOp>(op)) {
    int64_t n = shapeOf(ceb.getLogits())[0], c = shapeOf(ceb.getLogits())[1];
    addStep(
        op, plan::Kernel::SoftmaxCrossEntropyBackward,
        {in(id(ceb.getLogits())), in(id(ceb.getLabels())), in(id(ceb.getGrad())),
         out(id(ceb.getResult()))},
        [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
          return plan::CreateSoftmaxCrossEntropyBackward(b, t[0], t[1], t[2], t[3], n, c).Union();
        });
    return success();
  }
  if (auto mse = dyn_cast<MseOp>(op)) {
    int64_t count = product(shapeOf(mse.getInput()));
    addStep(op, plan::Kernel::MseLoss,
            {in(id(mse.getInput())), in(id(mse.getTarget())), out(id(mse.getLoss()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateMseLoss(b, t[0], t[1], t[2], count).Union();
            });
    return success();
  }
  if (auto mb = dyn_cast<MseBackwardOp>(op)) {
    int64_t count = product(shapeOf(mb.getInput()));
    // The input and the target are read at the result's own index (in place, below).
    Slot a = in(id(mb.getInput())), t = in(id(mb.getTarget()));
    a.contiguous = t.contiguous = true;
    addStep(op, plan::Kernel::MseLossBackward,
            {a, t, in(id(mb.getGrad())), out(id(mb.getResult()))},
            [=](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              return plan::CreateMseLossBackward(b, t[0], t[1], t[2], t[3], count).Union();
            });
    return success();
  }
  if (auto af = dyn_cast<AllFiniteOp>(op)) {
    std::vector<Slot> slots;
    for (Value v : af.getInputs())
      slots.push_back(in(id(v)));
    const bool scaled = bool(af.getMultiplier());
    if (scaled)
      slots.push_back(in(id(af.getMultiplier())));
    slots.push_back(out(id(af.getResult())));
    if (op->hasAttr("graph.found_finite") && !eval)
      foundFinite = id(af.getResult());
    addStep(op, plan::Kernel::AllFinite, std::move(slots),
            [scaled](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
              std::vector<int32_t> inputs(t.begin(), t.end() - (scaled ? 2 : 1));
              return plan::CreateAllFiniteDirect(b, &inputs, t.back(),
                                                 scaled ? t[t.size() - 2] : -1)
                  .Union();
            });
    return success();
  }

  // Every elementwise op (arithmetic, activations and their gradients, casts,
  // optimizer updates, the loss-scale update): the program the op declares.
  if (auto ew = dyn_cast<ElementwiseOp>(op)) {
    ArrayRef<int64_t> shape = shapeOf(op->getResult(0));
    for (Value r : op->getResults())
      if (shapeOf(r) != shape)
        return op->emitError() << "emit-plan: elementwise results differ in shape";
    ScalarProgramBuilder p;
    SmallVector<int> loads;
    for (unsigned i = 0; i < op->getNumOperands(); ++i)
      loads.push_back(p.load(int(i)));
    SmallVector<int> regs = ew.buildScalarProgram(p, loads);
    if (regs.size() != op->getNumResults())
      return op->emitError() << "emit-plan: the op's program returns " << regs.size()
                             << " registers for " << op->getNumResults() << " results";
    // A result nothing reads is not stored (plain SGD's unused momentum result): a
    // write per element saved, and no temp that a later step's result could share
    // bytes with.
    // A dead op (no result read) keeps all of its results.
    const bool dead = llvm::all_of(op->getResults(), [](Value r) { return r.use_empty(); });
    std::vector<int> outs, outRegs;
    for (auto [r, reg] : llvm::zip(op->getResults(), regs))
      if (dead || !r.use_empty()) {
        outs.push_back(id(r));
        outRegs.push_back(reg);
      }
    return addElementwise(op, shape, SmallVector<Value>(op->getOperands()), p.instructions(), outs,
                          outRegs);
  }

  return op->emitError() << "emit-plan: no plan lowering for '" << op->getName()
                         << "' (the emitter knows the graph dialect's ops)";
}

LogicalResult PlanLowering::lowerFunction(func::FuncOp fn, bool eval, PendingFunction &result) {
  valueTensor.clear();
  inputBias.clear();
  assigns.clear();
  steps = &result.steps;
  if (!fn.getBody().hasOneBlock())
    return fn.emitError() << "emit-plan: @" << fn.getSymName() << " must have one block";
  // The casts of parameters (the low-precision working copies of the fp32 master
  // weights) come first, together: they read only state, so the order is free, and
  // side by side one multi-tensor launch takes them all (runtime/cuda). Then the rest
  // in program order.
  Block &body = fn.getBody().front();
  llvm::SmallPtrSet<Operation *, 32> early;
  for (Operation &op : body)
    if (auto cast = dyn_cast<CastOp>(op))
      if (cast.getInput().getDefiningOp<ParamOp>())
        early.insert(&op);
  std::vector<Operation *> order;
  for (Operation &op : body)
    if (isa<ParamOp>(op))
      order.push_back(&op);
  for (Operation &op : body)
    if (early.contains(&op))
      order.push_back(&op);
  for (Operation &op : body)
    if (!isa<ParamOp>(op) && !early.contains(&op))
      order.push_back(&op);
  for (Operation *opp : order) {
    Operation &op = *opp;
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (Value v : ret.getOperands()) {
        auto t = lookup(v, &op);
        if (failed(t))
          return failure();
        result.outputs.push_back(*t);
      }
      continue;
    }
    if (auto assign = dyn_cast<AssignOp>(op)) {
      if (eval) // eval_step changes no state
        continue;
      auto t = lookup(assign.getValue(), &op);
      if (failed(t))
        return failure();
      assigns.push_back({assign.getName().str(), *t, op.getLoc()});
      continue;
    }
    if (op.getDialect() && !isa<GraphDialect>(op.getDialect()))
      return op.emitError() << "emit-plan: no plan lowering for '" << op.getName()
                            << "' (the emitter knows the graph dialect's ops)";
    if (failed(lowerOp(&op, eval)))
      return failure();
  }
  return eval ? success() : resolveAssigns(result);
}

/// Whether the producer of `temp` may write `state` directly: no step from the first
/// write of `temp` on reads or writes the old `state`, except the producing step
/// itself reading it elementwise in place.
bool PlanLowering::canAlias(const PendingFunction &fn, int temp, int state) const {
  if (tensors[temp].role != plan::Role::Temp || tensors[temp].dtype != tensors[state].dtype ||
      numElements(temp) != numElements(state))
    return false;
  if (llvm::is_contained(fn.outputs, state))
    return false;
  size_t first = fn.steps.size();
  for (size_t s = 0; s < fn.steps.size() && first == fn.steps.size(); ++s)
    for (const Slot &slot : fn.steps[s].slots)
      if (slot.tensor == temp && slot.write)
        first = s;
  if (first == fn.steps.size())
    return false;
  for (size_t s = first; s < fn.steps.size(); ++s) {
    const PendingStep &step = fn.steps[s];
    for (const Slot &slot : step.slots) {
      if (slot.tensor != state)
        continue;
      if (slot.write)
        return false;
      if (s != first || step.kind != plan::Kernel::Elementwise || !slot.contiguous)
        return false;
    }
  }
  return true;
}

LogicalResult PlanLowering::resolveAssigns(PendingFunction &fn) {
  struct CopyOut {
    int from, to;
    std::string name;
  };
  std::vector<CopyOut> copies;
  llvm::StringMap<Location> assigned;
  llvm::DenseSet<int> readAtEnd; // state tensors whose old value an assign copies
  for (const Assign &a : assigns)
    if (tensors[a.value].role != plan::Role::Temp)
      readAtEnd.insert(a.value);

  for (const Assign &a : assigns) {
    auto it = named.find(a.name);
    if (it == named.end() || tensors[it->second].role == plan::Role::Input)
      return emitError(a.loc) << "emit-plan: assigns \"" << a.name
                              << "\", which no graph.param or graph.buffer declares";
    if (!assigned.try_emplace(a.name, a.loc).second) {
      emitError(a.loc) << "emit-plan: \"" << a.name << "\" is assigned twice in one step";
      return failure();
    }
    int state = it->second;
    int value = a.value;
    if (aliasOf[value] >= 0) // already merged into another state tensor
      value = aliasOf[value];
    if (value == state)
      continue; // e.g. batch-norm running statistics, updated in place
    if (numElements(value) != numElements(state))
      return emitError(a.loc) << "emit-plan: assigns " << numElements(value) << " elements to \""
                              << a.name << "\", which has " << numElements(state);
    if (!readAtEnd.contains(state) && canAlias(fn, value, state)) {
      for (PendingStep &step : fn.steps)
        for (Slot &slot : step.slots)
          if (slot.tensor == value)
            slot.tensor = state;
      for (int &o : fn.outputs)
        if (o == value)
          o = state;
      for (CopyOut &c : copies)
        if (c.from == value)
          c.from = state;
      aliasOf[value] = state;
      if (foundFinite == value)
        foundFinite = state;
      continue;
    }
    copies.push_back({value, state, a.name});
  }

  // Copies happen together at the end: a copy that reads a state tensor another
  // copy overwrites reads a snapshot taken first.
  llvm::DenseSet<int> destinations;
  for (const CopyOut &c : copies)
    destinations.insert(c.to);
  auto copyStep = [&](int from, int to, std::string name) {
    int64_t count = numElements(to);
    fn.steps.push_back({std::move(name),
                        "graph.assign",
                        tensors[to].dtype,
                        plan::Kernel::Copy,
                        {in(from), out(to)},
                        [count](fb::FlatBufferBuilder &b, const std::vector<int> &t) {
                          return plan::CreateCopy(b, t[0], t[1], count).Union();
                        }});
  };
  for (CopyOut &c : copies) {
    if (!destinations.contains(c.from))
      continue;
    TensorInfo snapshot = tensors[c.from];
    snapshot.name.clear();
    snapshot.role = plan::Role::Temp;
    tensors.push_back(std::move(snapshot));
    aliasOf.push_back(-1);
    int tmp = int(tensors.size()) - 1;
    copyStep(c.from, tmp, "assign." + c.name + ".snapshot");
    c.from = tmp;
  }
  for (const CopyOut &c : copies)
    copyStep(c.from, c.to, "assign." + c.name);
  return success();
}

//===----------------------------------------------------------------------===//
// Configuration read from the IR
//===----------------------------------------------------------------------===//

std::string PlanLowering::inferPolicy() {
  bool f16 = false, bf16 = false;
  module.walk([&](Operation *op) {
    for (Type t : op->getResultTypes())
      if (auto s = dyn_cast<ShapedType>(t)) {
        f16 |= s.getElementType().isF16();
        bf16 |= s.getElementType().isBF16();
      }
  });
  return f16 && bf16 ? "mixed" : f16 ? "fp16" : bf16 ? "bf16" : "fp32";
}

LogicalResult PlanLowering::readOptimizer(func::FuncOp train, OptimizerConfig &opt) {
  Operation *first = nullptr;
  WalkResult walk = train.walk([&](Operation *op) {
    OptimizerConfig here;
    if (auto sgd = dyn_cast<SgdUpdateOp>(op)) {
      here.kind = "sgd";
      here.lr = sgd.getLr().convertToDouble();
      here.momentum = sgd.getMomentum().convertToDouble();
      here.weightDecay = sgd.getWeightDecay().convertToDouble();
    } else if (auto adam = dyn_cast<AdamUpdateOp>(op)) {
      here.kind = adam.getDecoupled() ? "adamw" : "adam";
      here.lr = adam.getLr().convertToDouble();
      here.weightDecay = adam.getWeightDecay().convertToDouble();
      here.beta1 = adam.getBeta1().convertToDouble();
      here.beta2 = adam.getBeta2().convertToDouble();
      here.eps = adam.getEps().convertToDouble();
    } else {
      return WalkResult::advance();
    }
    if (!first) {
      first = op;
      opt = here;
      return WalkResult::advance();
    }
    if (here.kind != opt.kind || here.lr != opt.lr || here.momentum != opt.momentum ||
        here.weightDecay != opt.weightDecay || here.beta1 != opt.beta1 || here.beta2 != opt.beta2 ||
        here.eps != opt.eps) {
      op->emitError() << "emit-plan: optimizer updates differ in kind or hyper-parameters "
                         "(the plan records one optimizer configuration)";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  if (!first)
    opt = config.optimizer.value_or(OptimizerConfig{});
  return success();
}

LossScalingConfig PlanLowering::readLossScaling(func::FuncOp train) {
  LossScalingConfig ls = config.lossScaling.value_or(LossScalingConfig{});
  BufferOp scale;
  LossScaleUpdateOp update;
  train.walk([&](Operation *op) {
    if (auto b = dyn_cast<BufferOp>(op); b && b.getName() == "scaler.scale" && !scale)
      scale = b;
    if (auto u = dyn_cast<LossScaleUpdateOp>(op); u && !update)
      update = u;
  });
  if (scale) {
    ls.mode = update ? "dynamic" : "static";
    ls.initScale = scale.getInit() == "value"  ? scale.getValue()->convertToDouble()
                   : scale.getInit() == "ones" ? 1.0
                                               : 0.0;
  }
  if (update) {
    ls.growthFactor = update.getGrowthFactor().convertToDouble();
    ls.backoffFactor = update.getBackoffFactor().convertToDouble();
    ls.growthInterval = update.getGrowthInterval();
  }
  return ls;
}

//===----------------------------------------------------------------------===//
// Serialisation
//===----------------------------------------------------------------------===//

/// Memory planning: every Temp gets a byte offset in one arena, first fit by size
/// (largest first), 256-byte aligned, so that no two temps live at a common step of
/// one function overlap. A temp is live in a function from the first step that refers
/// to it to the last (to the end for the outputs and found_finite). A temp whose first
/// step in some function reads it (its value would have to survive between calls), or
/// that is used in no step, is live throughout every function.
///
/// The one exception is in place: the result of an elementwise step (or of the MSE
/// gradient, elementwise too, or batch norm's dx, whose second pass reads dy, x and
/// the mask at dx's index) takes the bytes of an input that dies at that step,
/// when both have as many elements of one size and the input is read at the result's
/// own index (no broadcast, no transpose). Each element is then read before the same
/// thread writes it, on the CPU and in the generated CUDA kernels alike (the loader
/// checks the same conditions). This is what
/// XLA's buffer assignment does for elementwise ops, and what PyTorch's in-place
/// `relu_` or `mul_` do by hand; a training step's chains of gradient kernels
/// (relu_grad, the unscale) then need one buffer each instead of two.
PlanLowering::MemoryPlan PlanLowering::planMemory(const std::vector<PendingFunction> &fns,
                                                  const std::vector<bool> &used, int finiteT) {
  constexpr uint64_t kAlign = 256;
  MemoryPlan m;
  m.offset.assign(tensors.size(), -1);
  struct Interval {
    size_t fn;
    int64_t start, end;
  };
  std::vector<std::vector<Interval>> live(tensors.size());
  std::vector<bool> pinned(tensors.size(), false), seen(tensors.size(), false);
  for (size_t f = 0; f < fns.size(); ++f) {
    const PendingFunction &fn = fns[f];
    const int64_t n = int64_t(fn.steps.size());
    std::vector<int64_t> first(tensors.size(), -1), last(tensors.size(), -1);
    for (int64_t s = 0; s < n; ++s) {
      const PendingStep &step = fn.steps[size_t(s)];
      for (const Slot &slot : step.slots) {
        int t = slot.tensor;
        if (t < 0 || tensors[t].role != plan::Role::Temp)
          continue;
        if (first[t] < 0) {
          first[t] = s;
          // Its first step must only write it (a read would need the value of an
          // earlier call).
          for (const Slot &other : step.slots)
            if (other.tensor == t && other.read)
              pinned[t] = true;
        }
        last[t] = s;
      }
    }
    auto toEnd = [&](int t) {
      if (t >= 0 && tensors[t].role == plan::Role::Temp && first[t] >= 0)
        last[t] = n;
    };
    for (int o : fn.outputs) {
      toEnd(o);
      if (o >= 0 && tensors[o].role == plan::Role::Temp && first[o] < 0)
        pinned[o] = true;
    }
    toEnd(finiteT);
    for (size_t t = 0; t < tensors.size(); ++t)
      if (first[t] >= 0) {
        live[t].push_back({f, first[t], last[t]});
        seen[t] = true;
      }
  }
  auto bytesOf = [&](int t) {
    return uint64_t(tensors[t].numElements()) * dtypeBytes(tensors[t].dtype);
  };

  // In place (above): `unit[t]` is the temp whose bytes t takes, itself if none.
  std::vector<int> unit(tensors.size());
  for (size_t t = 0; t < tensors.size(); ++t)
    unit[t] = int(t);
  auto single = [&](int t) { // a temp of one function, not pinned
    return t >= 0 && tensors[t].role == plan::Role::Temp && used[t] && live[t].size() == 1 &&
           !pinned[t] && t != finiteT;
  };
  for (size_t f = 0; f < fns.size(); ++f) {
    for (size_t s = 0; s < fns[f].steps.size(); ++s) {
      const PendingStep &step = fns[f].steps[s];
      if (step.kind != plan::Kernel::Elementwise && step.kind != plan::Kernel::MseLossBackward &&
          step.kind != plan::Kernel::BatchNormBackward)
        continue;
      std::vector<int> taken;
      for (const Slot &o : step.slots) {
        int out = o.tensor;
        if (!o.write || o.read || !single(out) || unit[out] != out ||
            live[out][0].start != int64_t(s))
          continue;
        for (const Slot &i : step.slots) {
          int in = i.tensor;
          if (!i.read || i.write || !single(in) || live[in][0].end != int64_t(s) ||
              live[in][0].fn != f || llvm::is_contained(taken, unit[in]) ||
              tensors[in].numElements() != tensors[out].numElements() ||
              dtypeBytes(tensors[in].dtype) != dtypeBytes(tensors[out].dtype))
            continue;
          bool sameIndex = true; // every operand reading `in` at the result's index
          for (const Slot &other : step.slots)
            if (other.tensor == in && (other.write || !other.contiguous))
              sameIndex = false;
          if (!sameIndex)
            continue;
          unit[out] = unit[in];
          taken.push_back(unit[in]);
          // The unit lives on to the result's end.
          live[unit[in]][0].end = live[out][0].end;
          break;
        }
      }
    }
  }

  std::vector<int> temps;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorInfo &info = tensors[t];
    uint64_t bytes = uint64_t(info.numElements()) * dtypeBytes(info.dtype);
    if (!used[t])
      continue;
    if (info.role == plan::Role::Input) {
      m.inputBytes += bytes;
      continue;
    }
    if (info.role != plan::Role::Temp) {
      m.persistentBytes += bytes;
      continue;
    }
    if (!seen[t])
      pinned[t] = true;
    if (pinned[t]) {
      live[t].clear();
      for (size_t f = 0; f < fns.size(); ++f)
        live[t].push_back({f, -1, int64_t(fns[f].steps.size()) + 1});
    }
    if (unit[t] == int(t))
      temps.push_back(int(t));
  }
  std::stable_sort(temps.begin(), temps.end(),
                   [&](int a, int b) { return bytesOf(a) > bytesOf(b); });
  auto intersect = [&](int a, int b) {
    for (const Interval &x : live[a])
      for (const Interval &y : live[b])
        if (x.fn == y.fn && x.start <= y.end && y.start <= x.end)
          return true;
    return false;
  };
  std::vector<int> placed;
  for (int t : temps) {
    uint64_t bytes = bytesOf(t);
    std::vector<std::pair<uint64_t, uint64_t>> busy; // [begin, end) of conflicting temps
    if (bytes > 0)
      for (int p : placed)
        if (intersect(t, p))
          busy.push_back({uint64_t(m.offset[p]), uint64_t(m.offset[p]) + bytesOf(p)});
    std::sort(busy.begin(), busy.end());
    uint64_t at = 0;
    for (const auto &r : busy) {
      if (at + bytes <= r.first)
        break;
      at = std::max(at, (r.second + kAlign - 1) / kAlign * kAlign);
    }
    m.offset[t] = int64_t(at);
    if (bytes > 0) {
      placed.push_back(t);
      m.arenaBytes = std::max(m.arenaBytes, (at + bytes + kAlign - 1) / kAlign * kAlign);
    }
  }
  for (size_t t = 0; t < tensors.size(); ++t)
    if (unit[t] != int(t))
      m.offset[t] = m.offset[size_t(unit[t])];
  return m;
}

std::vector<uint8_t> PlanLowering::serialize(const std::vector<PendingFunction> &fns,
                                             const LossScalingConfig &ls,
                                             const OptimizerConfig &opt,
                                             const std::string &policy) {
  // Keep persistent tensors and inputs, and the temps something refers to.
  std::vector<bool> used(tensors.size(), false);
  for (size_t t = 0; t < tensors.size(); ++t)
    used[t] = tensors[t].role != plan::Role::Temp;
  for (const PendingFunction &fn : fns) {
    for (const PendingStep &s : fn.steps)
      for (const Slot &slot : s.slots)
        used[slot.tensor] = true;
    for (int o : fn.outputs)
      used[o] = true;
  }
  auto resolve = [&](int t) {
    while (t >= 0 && aliasOf[t] >= 0)
      t = aliasOf[t];
    return t;
  };
  int scaleT = named.count("scaler.scale") ? named.lookup("scaler.scale") : -1;
  int trackerT = named.count("scaler.growth_tracker") ? named.lookup("scaler.growth_tracker") : -1;
  int finiteT = resolve(foundFinite);
  if (finiteT >= 0)
    used[finiteT] = true;
  std::vector<int> newId(tensors.size(), -1);
  int next = 0;
  for (size_t t = 0; t < tensors.size(); ++t)
    if (used[t])
      newId[t] = next++;
  auto remap = [&](int t) { return t < 0 ? -1 : newId[t]; };

  MemoryPlan memory = planMemory(fns, used, finiteT);

  fb::FlatBufferBuilder b(1 << 16);
  std::vector<fb::Offset<plan::Tensor>> tensorOffsets;
  for (size_t t = 0; t < tensors.size(); ++t) {
    if (!used[t])
      continue;
    const TensorInfo &info = tensors[t];
    bool persistent = info.role != plan::Role::Temp && info.role != plan::Role::Input;
    tensorOffsets.push_back(plan::CreateTensorDirect(
        b, info.name.empty() ? nullptr : info.name.c_str(), info.dtype, &info.shape, info.role,
        nullptr, persistent ? info.initKind : plan::InitKind::Values, info.initBound, info.initFill,
        config.seed, memory.offset[t], remap(info.master)));
  }

  std::vector<fb::Offset<plan::Function>> fnOffsets;
  for (const PendingFunction &fn : fns) {
    std::vector<fb::Offset<plan::Step>> stepOffsets;
    for (const PendingStep &s : fn.steps) {
      std::vector<int> ids;
      for (const Slot &slot : s.slots)
        ids.push_back(remap(slot.tensor));
      fb::Offset<void> kernel = s.build(b, ids);
      stepOffsets.push_back(
          plan::CreateStepDirect(b, s.name.c_str(), s.op.c_str(), s.precision, s.kind, kernel));
    }
    std::vector<int32_t> outputs;
    for (int o : fn.outputs)
      outputs.push_back(remap(o));
    fnOffsets.push_back(plan::CreateFunctionDirect(b, fn.name.c_str(), &stepOffsets, &outputs));
  }

  // The model.
  std::string name, source = config.source;
  if (source.empty())
    if (auto loc = dyn_cast<FileLineColLoc>(module.getLoc()))
      source = loc.getFilename().str();
  if (auto attr = module->getAttrOfType<StringAttr>("graph.model"))
    name = attr.str();
  else
    name = llvm::sys::path::stem(source).str();
  const TensorInfo &x = tensors[named.lookup("x")];
  std::vector<int64_t> inputShape(x.shape.begin() + 1, x.shape.end()), labelShape;
  bool labelsAreClasses = false;
  if (named.count("y")) {
    const TensorInfo &y = tensors[named.lookup("y")];
    labelShape.assign(y.shape.begin() + std::min<size_t>(1, y.shape.size()), y.shape.end());
    labelsAreClasses = y.dtype == plan::DType::I32;
  }
  plan::Task task = labelsAreClasses ? plan::Task::Classification : plan::Task::Regression;
  if (auto attr = module->getAttrOfType<StringAttr>("graph.task"))
    task = attr.getValue() == "regression" ? plan::Task::Regression : plan::Task::Classification;
  int64_t numClasses = 0;
  if (auto attr = module->getAttrOfType<IntegerAttr>("graph.num_classes"))
    numClasses = attr.getInt();
  auto model = plan::CreateModelInfoDirect(b, name.c_str(), task, x.shape[0], &inputShape,
                                           &labelShape, numClasses, config.seed, source.c_str());
  auto precision = plan::CreatePrecisionDirect(b, policy.c_str(), config.tf32);
  plan::LossScaleMode mode = ls.mode == "dynamic"  ? plan::LossScaleMode::Dynamic
                             : ls.mode == "static" ? plan::LossScaleMode::Static
                                                   : plan::LossScaleMode::None;
  bool scaled = mode != plan::LossScaleMode::None;
  auto lossScaling = plan::CreateLossScaling(
      b, mode, scaled ? float(ls.initScale) : 1.0f, float(ls.growthFactor), float(ls.backoffFactor),
      int32_t(ls.growthInterval), scaled ? remap(scaleT) : -1,
      mode == plan::LossScaleMode::Dynamic ? remap(trackerT) : -1, remap(finiteT));
  plan::OptimizerKind kind = opt.kind == "adam"    ? plan::OptimizerKind::Adam
                             : opt.kind == "adamw" ? plan::OptimizerKind::AdamW
                                                   : plan::OptimizerKind::SGD;
  auto optimizer =
      plan::CreateOptimizer(b, kind, float(opt.lr), float(opt.momentum), float(opt.weightDecay),
                            float(opt.beta1), float(opt.beta2), float(opt.eps));
  auto root = plan::CreatePlanDirect(
      b, kPlanVersion, model, precision, lossScaling, optimizer, &tensorOffsets, &fnOffsets,
      memory.arenaBytes, memory.persistentBytes, memory.inputBytes,
      memory.arenaBytes + memory.persistentBytes + memory.inputBytes,
      config.cuda ? plan::CudaCode::Pack(b, config.cuda) : 0, plan::kChecksumPlaceholder);
  plan::FinishPlanBuffer(b, root);
  return plan::sealedBytes(b);
}

FailureOr<std::vector<uint8_t>> PlanLowering::run() {
  auto train = getFunction(module, "train_step", "emit-plan");
  if (failed(train))
    return failure();
  auto forward = getFunction(module, "forward", "emit-plan");
  if (failed(forward))
    return failure();

  std::vector<PendingFunction> fns(2);
  fns[0].name = "train_step";
  fns[1].name = "eval_step";
  if (failed(lowerFunction(*train, /*eval=*/false, fns[0])) ||
      failed(lowerFunction(*forward, /*eval=*/true, fns[1])))
    return failure();

  auto x = named.find("x");
  if (x == named.end() || tensors[x->second].role != plan::Role::Input ||
      tensors[x->second].shape.empty())
    return module.emitError() << "emit-plan: the model reads no batched graph.input \"x\"";
  int64_t batch = tensors[x->second].shape[0];
  if (config.expectedBatch > 0 && batch != config.expectedBatch)
    return module.emitError() << "emit-plan: the IR has batch " << batch << " but "
                              << config.expectedBatch << " was asked for (run set-batch first)";

  OptimizerConfig opt;
  if (failed(readOptimizer(*train, opt)))
    return failure();
  LossScalingConfig ls = readLossScaling(*train);
  std::string policy = config.policy.empty() ? inferPolicy() : config.policy;
  return serialize(fns, ls, opt, policy);
}

FailureOr<std::vector<uint8_t>> mantissa::emitPlan(ModuleOp module, const PlanConfig &config) {
  return PlanLowering(module, config).run();
}

LogicalResult mantissa::writePlanFile(ModuleOp module, StringRef path,
                                      const std::vector<uint8_t> &bytes) {
  // llvm::writeToOutput writes a temporary file next to `path` and renames it.
  llvm::Error err = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
    os.write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    return llvm::Error::success();
  });
  if (err)
    return module.emitError() << "emit-plan: cannot write " << path << ": "
                              << llvm::toString(std::move(err));
  return success();
}
