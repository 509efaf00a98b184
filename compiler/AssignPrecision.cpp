//===- AssignPrecision.cpp - autocast of the forward graph ----------------===//
//
// Walks @forward in order and gives every op the element type its precision
// category (GraphOps.td) or an override asks for, casting operands where they
// differ and re-inferring result types. Parameters, inputs and buffers keep their
// fp32 types; casts are made once per (value, type) and placed before the first
// op that needs them, so they dominate every later use.
//===----------------------------------------------------------------------===//
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"
#include "compiler/PrecisionPolicy.h"

#include "mantissa/Graph/GraphOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"

namespace mantissa {
#define GEN_PASS_DEF_ASSIGNPRECISION
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

/// "fp32", "fp16", "bf16" as an element type, or null.
Type parsePrecision(MLIRContext *ctx, StringRef name) {
  if (name == "fp32")
    return Float32Type::get(ctx);
  if (name == "fp16")
    return Float16Type::get(ctx);
  if (name == "bf16")
    return BFloat16Type::get(ctx);
  return {};
}

/// What the `policy` option says: the precision of `Lower` ops, and overrides per
/// op kind, per op group and per op by `graph.name` (from a policy file,
/// PrecisionPolicy.h).
struct Policy {
  Type lowType;
  llvm::StringMap<Type> byName;
  llvm::StringMap<Type> byGroup;
  llvm::StringMap<Type> byKind; // "conv2d", without the dialect prefix
  std::string file; // empty unless read from a file
};

FailureOr<Policy> readPolicy(ModuleOp module, StringRef option) {
  MLIRContext *ctx = module.getContext();
  Policy policy;
  if ((policy.lowType = parsePrecision(ctx, option)))
    return policy;

  policy.file = option.str();
  if (!llvm::sys::fs::exists(option))
    return module.emitError() << "assign-precision: policy '" << option
                              << "' is neither fp32, fp16, bf16 nor a readable policy file (no such file)";
  llvm::Expected<PolicyFile> file = readPolicyFile(option);
  if (!file)
    return module.emitError() << "assign-precision: " << llvm::toString(file.takeError());
  policy.lowType = parsePrecision(ctx, file->defaultPrecision);
  for (const auto &[name, precision] : file->ops)
    policy.byName[name] = parsePrecision(ctx, precision);
  for (const auto &[name, precision] : file->groups)
    policy.byGroup[name] = parsePrecision(ctx, precision);
  for (const auto &[kind, precision] : file->kinds)
    policy.byKind[kind] = parsePrecision(ctx, precision);
  return policy;
}

/// A cast from `from` to `to` that loses nothing (f16/bf16 -> f32 -> f64).
bool isExactWidening(Type from, Type to) {
  auto width = [](Type t) { return t.isF64() ? 64 : t.isF32() ? 32 : 16; };
  return width(from) < width(to);
}

/// Makes casts once per (value, element type); a cast of an exact widening cast
/// starts from the original value instead.
class CastCache {
public:
  Value get(OpBuilder &b, Value value, Type element) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getElementType() == element)
      return value;
    if (auto inner = value.getDefiningOp<CastOp>())
      if (isExactWidening(inner.getInput().getType().getElementType(), type.getElementType()))
        return get(b, inner.getInput(), element);
    Value &cached = casts[{value, element}];
    if (!cached)
      cached = CastOp::create(b, value.getLoc(), type.clone(element), value);
    return cached;
  }

private:
  llvm::DenseMap<std::pair<Value, Type>, Value> casts;
};

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

/// Operands that keep fp32 whatever the op computes in: batch-norm's
/// per-channel parameters and statistics (mixed precision, as cuDNN and
/// PyTorch's autocast run batch norm).
bool isPerChannelStatistic(Operation *op, unsigned index) {
  if (isa<BatchNormOp>(op))
    return index >= 1;
  if (isa<BatchNormBackwardOp>(op))
    return index >= 2;
  return false;
}

class AssignPrecisionPass : public mantissa::impl::AssignPrecisionBase<AssignPrecisionPass> {
public:
  using AssignPrecisionBase::AssignPrecisionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (module.lookupSymbol<func::FuncOp>("train_step")) {
      module.emitError() << "assign-precision runs before autodiff: @train_step already exists";
      return signalPassFailure();
    }
    auto forward = getFunction(module, "forward", "assign-precision");
    FailureOr<Policy> policy = readPolicy(module, this->policy);
    if (failed(forward) || failed(policy) || failed(checkPolicyNames(*forward, *policy)) ||
        failed(assign(*forward, *policy)))
      return signalPassFailure();
    cleanUpCasts(*forward);
  }

private:
  /// Every op and op group named in a policy file must exist.
  LogicalResult checkPolicyNames(func::FuncOp fn, const Policy &policy) {
    llvm::SmallVector<std::string> knownGroups;
    for (const OpGroup &group : listOpGroups(fn))
      if (group.hasAnchor())
        knownGroups.push_back(group.name);
    for (const auto &entry : policy.byGroup) {
      if (llvm::is_contained(knownGroups, entry.getKey()))
        continue;
      InFlightDiagnostic diag = fn.emitError()
                                << "assign-precision: policy file '" << policy.file << "' names op group \""
                                << entry.getKey() << "\", but @forward has no such group; its groups are: ";
      llvm::interleaveComma(knownGroups, diag);
      if (knownGroups.empty())
        diag << "(none)";
      return diag;
    }
    llvm::SmallVector<StringRef> known;
    fn.walk([&](Operation *op) {
      if (auto name = op->getAttrOfType<StringAttr>("graph.name"))
        known.push_back(name.getValue());
    });
    for (const auto &entry : policy.byName) {
      if (llvm::is_contained(known, entry.getKey()))
        continue;
      InFlightDiagnostic diag = fn.emitError()
                                << "assign-precision: policy file '" << policy.file << "' names op \""
                                << entry.getKey() << "\", but no op of @forward has that graph.name; known names: ";
      llvm::interleaveComma(known, diag);
      if (known.empty())
        diag << "(none)";
      return diag;
    }
    return success();
  }

  /// The precision an override asks of `op` (policy file: op, then op group, then
  /// op kind; then the `graph.precision` attribute), a null type if none, or failure.
  FailureOr<Type> overrideFor(Operation *op, const Policy &policy,
                              const llvm::DenseMap<Operation *, Type> &byGroup) {
    if (auto name = op->getAttrOfType<StringAttr>("graph.name")) {
      auto it = policy.byName.find(name.getValue());
      if (it != policy.byName.end())
        return it->second;
    }
    if (auto it = byGroup.find(op); it != byGroup.end())
      return it->second;
    if (!policy.byKind.empty()) {
      auto it = policy.byKind.find(op->getName().stripDialect());
      if (it != policy.byKind.end())
        return it->second;
    }
    Attribute attr = op->getAttr("graph.precision");
    if (!attr)
      return Type();
    auto str = dyn_cast<StringAttr>(attr);
    Type type = str ? parsePrecision(op->getContext(), str.getValue()) : Type();
    if (!type)
      return op->emitOpError("graph.precision must be \"fp32\", \"fp16\" or \"bf16\", got ") << attr;
    return type;
  }

  LogicalResult assign(func::FuncOp fn, const Policy &policy) {
    MLIRContext *ctx = fn.getContext();
    Type f32 = Float32Type::get(ctx);
    CastCache casts;
    OpBuilder b(ctx);
    // The types values had before this pass, for consumers whose types are fixed.
    llvm::DenseMap<Value, Type> original;

    // A group's precision is its anchor's and that of its members that follow
    // their inputs; members of category Fp32 (losses, exp, log) keep fp32.
    llvm::DenseMap<Operation *, Type> byGroup;
    for (const OpGroup &group : listOpGroups(fn)) {
      auto it = policy.byGroup.find(group.name);
      if (it == policy.byGroup.end() || !group.hasAnchor())
        continue;
      for (Operation *member : group.members)
        if (cast<PrecisionOp>(member).getPrecisionCategory() != PrecisionCategory::Fp32)
          byGroup[member] = it->second;
    }

    llvm::SmallVector<Operation *> ops;
    for (Operation &op : fn.getBody().getOps())
      ops.push_back(&op);

    for (Operation *op : ops) {
      b.setInsertionPoint(op);
      if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        // The signature stays: results go back to the types @forward declares.
        for (auto [i, type] : llvm::enumerate(fn.getResultTypes()))
          if (ret.getOperand(i).getType() != type)
            ret.setOperand(i, casts.get(b, ret.getOperand(i), cast<RankedTensorType>(type).getElementType()));
        continue;
      }
      auto precisionOp = dyn_cast<PrecisionOp>(op);
      if (!precisionOp)
        continue;
      FailureOr<Type> forced = overrideFor(op, policy, byGroup);
      if (failed(forced))
        return failure();
      PrecisionCategory category = precisionOp.getPrecisionCategory();

      if (category == PrecisionCategory::Fixed) {
        if (*forced)
          return op->emitOpError("has a fixed precision; remove its precision override");
        // A cast converts whatever it is given; other fixed ops (assign, updates)
        // get back the type their operand had.
        if (isa<CastOp>(op))
          continue;
        for (OpOperand &operand : op->getOpOperands()) {
          auto it = original.find(operand.get());
          if (it != original.end() && it->second != operand.get().getType())
            operand.set(casts.get(b, operand.get(), cast<RankedTensorType>(it->second).getElementType()));
        }
        continue;
      }

      // The element type the op computes in.
      Type target = *forced;
      bool keepWider = false; // Fp32 ops leave f64 operands alone
      if (!target) {
        switch (category) {
        case PrecisionCategory::Lower:
          target = policy.lowType;
          break;
        case PrecisionCategory::Fp32:
          target = f32;
          keepWider = true;
          break;
        default: // Follow: the widest floating-point input
          for (OpOperand &operand : op->getOpOperands())
            if (isFloatTensor(operand.get()) && !isPerChannelStatistic(op, operand.getOperandNumber()))
              target = target ? promoteFloatTypes(target, cast<RankedTensorType>(operand.get().getType()).getElementType())
                              : cast<RankedTensorType>(operand.get().getType()).getElementType();
          break;
        }
      }
      if (!target)
        continue; // no floating-point input

      for (OpOperand &operand : op->getOpOperands()) {
        if (!isFloatTensor(operand.get()))
          continue;
        Type element = cast<RankedTensorType>(operand.get().getType()).getElementType();
        Type want = isPerChannelStatistic(op, operand.getOperandNumber()) ? f32 : target;
        if (element == want || (keepWider && element.isF64()))
          continue;
        operand.set(casts.get(b, operand.get(), want));
      }

      for (Value result : op->getResults())
        original.try_emplace(result, result.getType());
      if (failed(retypeResults(op, target)))
        return failure();
    }
    return success();
  }

  /// Re-runs type inference, or, for ops whose result types are spelled out
  /// (reshape, backward convolutions), keeps the shape and takes `element`.
  LogicalResult retypeResults(Operation *op, Type element) {
    if (auto infer = dyn_cast<InferTypeOpInterface>(op)) {
      llvm::SmallVector<Type> types;
      if (failed(infer.inferReturnTypes(op->getContext(), op->getLoc(), op->getOperands(),
                                        op->getRawDictionaryAttrs(), op->getPropertiesStorage(),
                                        op->getRegions(), types)))
        return failure();
      for (auto [result, type] : llvm::zip(op->getResults(), types))
        result.setType(type);
      return success();
    }
    for (Value result : op->getResults())
      if (isFloatTensor(result))
        result.setType(withElementType(result.getType(), element));
    return success();
  }

  /// Casts the model itself carried: drop the ones that became identities or
  /// round trips through a wider type, and merge duplicates.
  void cleanUpCasts(func::FuncOp fn) {
    llvm::DenseMap<std::pair<Value, Type>, CastOp> seen;
    llvm::SmallVector<CastOp> casts;
    fn.walk([&](CastOp c) { casts.push_back(c); });
    for (CastOp c : casts) {
      if (auto inner = c.getInput().getDefiningOp<CastOp>())
        if (isExactWidening(inner.getInput().getType().getElementType(),
                            inner.getResult().getType().getElementType()))
          c.getInputMutable().assign(inner.getInput());
      if (c.getInput().getType() == c.getResult().getType()) {
        c.getResult().replaceAllUsesWith(c.getInput());
        continue;
      }
      auto [it, inserted] = seen.try_emplace({c.getInput(), c.getResult().getType()}, c);
      if (!inserted)
        c.getResult().replaceAllUsesWith(it->second.getResult());
    }
    for (CastOp c : llvm::reverse(casts))
      if (c->use_empty())
        c->erase();
  }
};

} // namespace
