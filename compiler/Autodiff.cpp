//===- Autodiff.cpp - derive @train_step from @forward by reverse mode -----===//
//
// @train_step is a clone of @forward followed by the backward pass. Only
// values that depend on a parameter (found by a forward sweep) get adjoints;
// the backward sweep visits the forward ops in reverse and applies each op's
// gradient rule (GradientRules.cpp), summing the contributions of values used
// more than once with graph.add.
//===----------------------------------------------------------------------===//
#include "compiler/GradientRules.h"
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"

#include "mantissa/Graph/GraphOps.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"

namespace mantissa {
#define GEN_PASS_DEF_AUTODIFF
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

class AutodiffPass : public mantissa::impl::AutodiffBase<AutodiffPass> {
public:
  using AutodiffBase::AutodiffBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<func::FuncOp> forward = getFunction(module, "forward", "autodiff");
    if (failed(forward))
      return signalPassFailure();
    if (module.lookupSymbol("train_step")) {
      module.emitError("autodiff: the module already has a @train_step");
      return signalPassFailure();
    }
    func::FuncOp fwd = *forward;
    auto lossType = fwd.getNumResults() ? dyn_cast<RankedTensorType>(fwd.getResultTypes()[0]) : nullptr;
    if (!lossType || lossType.getRank() != 0 || !isa<FloatType>(lossType.getElementType())) {
      fwd.emitError("autodiff: the first result of @forward must be the loss, a 0-d float tensor");
      return signalPassFailure();
    }
    if (!fwd.getBody().hasOneBlock()) {
      fwd.emitError("autodiff: @forward must have a single block");
      return signalPassFailure();
    }

    OpBuilder mb(fwd);
    mb.setInsertionPointAfter(fwd);
    auto step = cast<func::FuncOp>(mb.clone(*fwd));
    step.setSymName("train_step");
    if (failed(differentiate(step, fwd)))
      return signalPassFailure();
  }

private:
  LogicalResult differentiate(func::FuncOp step, func::FuncOp fwd) {
    Block &body = step.getBody().front();
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    SmallVector<Operation *> forwardOps;
    for (Operation &op : body.without_terminator())
      forwardOps.push_back(&op);

    // Forward sweep: the values that depend on a parameter.
    llvm::DenseSet<Value> active;
    for (Operation *op : forwardOps) {
      if (isa<ParamOp>(op) ||
          llvm::any_of(op->getOperands(), [&](Value v) { return active.contains(v); }))
        for (Value r : op->getResults())
          if (isFloatTensor(r))
            active.insert(r);
    }

    OpBuilder b(ret);
    llvm::DenseMap<Value, Value> adjoint;
    auto accumulate = [&](Value v, Value g) {
      assert(g.getType() == v.getType() && "an adjoint has its value's type");
      Value &slot = adjoint[v];
      slot = slot ? AddOp::create(b, g.getLoc(), slot, g).getResult() : g;
    };

    Value loss = ret.getOperand(0);
    auto seed = ConstantOp::create(b, loss.getLoc(), loss.getType(), b.getF64FloatAttr(1.0));
    seed->setAttr("graph.loss_seed", b.getUnitAttr());
    if (active.contains(loss))
      adjoint[loss] = seed;

    // Backward sweep.
    for (Operation *op : llvm::reverse(forwardOps)) {
      SmallVector<Value> resultGrads;
      for (Value r : op->getResults())
        resultGrads.push_back(adjoint.lookup(r));
      if (llvm::all_of(resultGrads, [](Value g) { return !g; }))
        continue;
      SmallVector<bool> wanted;
      for (Value operand : op->getOperands())
        wanted.push_back(active.contains(operand));
      if (llvm::none_of(wanted, [](bool w) { return w; }))
        continue;
      FailureOr<SmallVector<Value>> grads = buildOperandGradients(b, op, resultGrads, wanted);
      if (failed(grads))
        return failure();
      for (auto [operand, g] : llvm::zip(op->getOperands(), *grads))
        if (g)
          accumulate(operand, g);
    }

    // One gradient per parameter name, in the order @forward declares them.
    llvm::MapVector<StringRef, SmallVector<ParamOp>> params;
    for (Operation *op : forwardOps)
      if (auto param = dyn_cast<ParamOp>(op))
        params[param.getName()].push_back(param);

    SmallVector<Value> results{loss};
    SmallVector<DictionaryAttr> resultAttrs{fwd.getResultAttrDict(0)
                                                ? fwd.getResultAttrDict(0)
                                                : b.getDictionaryAttr({})};
    for (auto &[name, ops] : params) {
      Value grad;
      for (ParamOp param : ops)
        if (Value g = adjoint.lookup(param.getResult()))
          grad = grad ? AddOp::create(b, param.getLoc(), grad, g).getResult() : g;
      if (!grad) {
        ops.front().emitWarning() << "autodiff: parameter \"" << name
                                  << "\" does not affect the loss; its gradient is zero";
        grad = createConstant(b, ops.front().getLoc(), ops.front().getType(), 0.0);
      }
      results.push_back(grad);
      resultAttrs.push_back(
          b.getDictionaryAttr(b.getNamedAttr("graph.grad_of", b.getStringAttr(name))));
    }

    func::ReturnOp::create(b, ret.getLoc(), results);
    ret.erase();
    step.setType(FunctionType::get(step.getContext(), step.getArgumentTypes(), ValueRange(results).getTypes()));
    step.setAllResultAttrs(resultAttrs);
    return success();
  }
};

} // namespace
