//===- SetBatch.cpp - the set-batch pass ----------------------------------===//
//
// Re-types dimension 0 of every graph.input to the new batch and re-infers the
// types downstream, in program order (a value's users come after it).
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"

#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "llvm/ADT/DenseSet.h"

namespace mantissa {
#define GEN_PASS_DEF_SETBATCH
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa::graph;

namespace {

RankedTensorType withDim0(Type type, int64_t dim0) {
  auto t = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape(t.getShape());
  shape[0] = dim0;
  return RankedTensorType::get(shape, t.getElementType());
}

RankedTensorType withShapeOf(Type type, Value like) {
  return RankedTensorType::get(cast<RankedTensorType>(like.getType()).getShape(),
                               cast<RankedTensorType>(type).getElementType());
}

struct SetBatchPass : mantissa::impl::SetBatchBase<SetBatchPass> {
  using SetBatchBase::SetBatchBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (batch <= 0) {
      module.emitError() << "set-batch: the batch must be positive, got " << int64_t(batch);
      return signalPassFailure();
    }
    // The old batch: dimension 0 of every input, which must agree.
    InputOp first;
    bool ok = true;
    module.walk([&](InputOp input) {
      auto type = input.getResult().getType();
      if (type.getRank() == 0) {
        input.emitError() << "set-batch: input \"" << input.getName()
                          << "\" is a scalar; inputs need a batch dimension 0";
        ok = false;
      } else if (!first) {
        first = input;
      } else if (type.getDimSize(0) != first.getResult().getType().getDimSize(0)) {
        input.emitError() << "set-batch: input \"" << input.getName() << "\" has batch "
                          << type.getDimSize(0) << " (dimension 0) but input \"" << first.getName()
                          << "\" has " << first.getResult().getType().getDimSize(0);
        ok = false;
      }
    });
    if (!ok)
      return signalPassFailure();
    if (!first) {
      module.emitError() << "set-batch: the module has no graph.input to re-type";
      return signalPassFailure();
    }
    int64_t old = first.getResult().getType().getDimSize(0);
    if (old == batch)
      return markAllAnalysesPreserved();
    for (auto fn : module.getOps<func::FuncOp>())
      if (failed(retype(fn, old)))
        return signalPassFailure();
  }

  LogicalResult retype(func::FuncOp fn, int64_t old) {
    llvm::DenseSet<Value> changed;
    auto setType = [&](Value v, Type t) {
      if (v.getType() != t) {
        v.setType(t);
        changed.insert(v);
      }
    };
    WalkResult walk = fn.walk([&](Operation *op) {
      if (auto input = dyn_cast<InputOp>(op)) {
        setType(input.getResult(), withDim0(input.getResult().getType(), batch));
        return WalkResult::advance();
      }
      if (llvm::none_of(op->getOperands(), [&](Value v) { return changed.contains(v); }))
        return WalkResult::advance();
      if (auto infer = dyn_cast<InferTypeOpInterface>(op)) {
        SmallVector<Type> types;
        if (failed(infer.inferReturnTypes(op->getContext(), op->getLoc(), op->getOperands(),
                                          op->getRawDictionaryAttrs(), op->getPropertiesStorage(),
                                          op->getRegions(), types))) {
          op->emitError() << "set-batch: cannot re-type this op for batch " << int64_t(batch);
          return WalkResult::interrupt();
        }
        for (auto [r, t] : llvm::zip(op->getResults(), types))
          setType(r, t);
        return WalkResult::advance();
      }
      // Explicit result types.
      if (auto cast = dyn_cast<CastOp>(op))
        setType(cast.getResult(), withShapeOf(cast.getResult().getType(), cast.getInput()));
      else if (auto ce = dyn_cast<SoftmaxCrossEntropyBackwardOp>(op))
        setType(ce.getResult(), withShapeOf(ce.getResult().getType(), ce.getLogits()));
      else if (auto mse = dyn_cast<MseBackwardOp>(op))
        setType(mse.getResult(), withShapeOf(mse.getResult().getType(), mse.getInput()));
      else if (auto bi = dyn_cast<Conv2dBackwardInputOp>(op))
        setType(bi.getResult(),
                withDim0(bi.getResult().getType(), bi.getGrad().getType().getDimSize(0)));
      else if (auto pb = dyn_cast<MaxPool2dBackwardOp>(op))
        setType(pb.getResult(),
                withDim0(pb.getResult().getType(), pb.getGrad().getType().getDimSize(0)));
      else if (isa<Conv2dBackwardWeightOp, AllFiniteOp, func::ReturnOp>(op))
        ;  // shaped like a parameter or a scalar: no batch dimension
      else // reshape, broadcast_to, ...: a leading batch dimension follows
        for (Value r : op->getResults())
          if (auto t = dyn_cast<RankedTensorType>(r.getType());
              t && t.getRank() > 0 && t.getDimSize(0) == old)
            setType(r, withDim0(t, batch));
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return failure();
    // The function's results follow its return.
    for (Block &block : fn.getBody())
      if (auto ret = dyn_cast<func::ReturnOp>(block.getTerminator()))
        fn.setFunctionType(
            FunctionType::get(fn.getContext(), fn.getArgumentTypes(), ret.getOperandTypes()));
    return success();
  }
};

} // namespace
