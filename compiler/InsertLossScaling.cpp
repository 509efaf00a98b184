//===- InsertLossScaling.cpp - GradScaler in the training step -------------===//
//
// Scaling the seed of the backward pass scales the loss; the gradients reach
// the updates multiplied by 1/S, one graph.all_finite over them replaces the
// updates' finite flag (so a non-finite step changes no parameter, no optimizer
// state and no step count), and in dynamic mode a graph.loss_scale_update adapts
// S. Everything stays on the device: no value goes back to the host.
//===----------------------------------------------------------------------===//
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"

#include "mantissa/Graph/GraphOps.h"

#include <cmath>

namespace mantissa {
#define GEN_PASS_DEF_INSERTLOSSSCALING
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

/// The gradient operand of an optimizer update, or null for other ops.
OpOperand *gradientOperand(Operation *op) {
  if (auto sgd = dyn_cast<SgdUpdateOp>(op))
    return &sgd.getGradMutable();
  if (auto adam = dyn_cast<AdamUpdateOp>(op))
    return &adam.getGradMutable();
  return nullptr;
}

class InsertLossScalingPass : public mantissa::impl::InsertLossScalingBase<InsertLossScalingPass> {
public:
  using InsertLossScalingBase::InsertLossScalingBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (mode == "none")
      return;
    if (mode != "dynamic" && mode != "static") {
      module.emitError() << "insert-loss-scaling: unknown mode '" << mode
                         << "' (expected dynamic, static or none)";
      return signalPassFailure();
    }
    if (failed(checkOptions(module)))
      return signalPassFailure();
    FailureOr<func::FuncOp> step = getFunction(module, "train_step", "insert-loss-scaling");
    if (failed(step) || failed(insert(*step)))
      return signalPassFailure();
  }

private:
  LogicalResult checkOptions(ModuleOp module) {
    auto invalid = [&](StringRef what) {
      return module.emitError() << "insert-loss-scaling: invalid option: " << what;
    };
    if (!(initScale > 0.0 && std::isfinite(initScale)))
      return invalid("scale must be a finite number > 0");
    if (mode == "dynamic") {
      if (!(growthFactor > 1.0 && std::isfinite(growthFactor)))
        return invalid("growth-factor must be a finite number > 1");
      if (!(backoffFactor > 0.0 && backoffFactor < 1.0))
        return invalid("backoff-factor must be in (0, 1)");
      if (growthInterval < 1)
        return invalid("growth-interval must be >= 1");
    }
    return success();
  }

  LogicalResult insert(func::FuncOp fn) {
    MLIRContext *ctx = fn.getContext();
    Block &body = fn.getBody().front();
    ConstantOp seed, finite;
    for (Operation &op : body) {
      if (auto c = dyn_cast<ConstantOp>(op)) {
        if (c->hasAttr("graph.loss_seed"))
          seed = c;
        if (c->hasAttr("graph.finite_flag"))
          finite = c;
      }
      if (auto buf = dyn_cast<BufferOp>(op); buf && buf.getName().starts_with("scaler."))
        return buf.emitError("insert-loss-scaling: @train_step already has loss-scaler state");
    }
    if (!seed)
      return fn.emitError("insert-loss-scaling: @train_step has no loss seed "
                          "(graph.constant {graph.loss_seed}); run --autodiff first");
    if (!finite)
      return fn.emitError("insert-loss-scaling: @train_step has no finite flag "
                          "(graph.constant {graph.finite_flag}); run --lower-optimizer first");

    // The updates the flag gates, and their gradients, in block order.
    SmallVector<Operation *> updates;
    for (Operation *user : finite->getUsers())
      if (gradientOperand(user) && !llvm::is_contained(updates, user))
        updates.push_back(user);
    llvm::sort(updates, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
    if (updates.empty())
      return fn.emitError("insert-loss-scaling: no optimizer update uses the finite flag");
    Operation *first = updates.front();
    for (Operation *update : updates) {
      Operation *def = gradientOperand(update)->get().getDefiningOp();
      if (def && def->getBlock() == &body && first->isBeforeInBlock(def))
        return update->emitOpError("insert-loss-scaling: its gradient is computed after the first update");
    }

    auto scalar = RankedTensorType::get({}, Float32Type::get(ctx));
    Location loc = fn.getLoc();
    OpBuilder b = OpBuilder::atBlockBegin(&body);
    Value scale = BufferOp::create(b, loc, scalar, "scaler.scale", "value", b.getF64FloatAttr(initScale), "scaler");
    Value tracker;
    if (mode == "dynamic")
      tracker = BufferOp::create(b, loc, scalar, "scaler.growth_tracker", "zeros", FloatAttr(), "scaler");

    // Scaling the backward pass's seed is scaling the loss.
    b.setInsertionPointAfter(seed);
    Value scaledSeed = MulOp::create(b, seed.getLoc(), seed, castToElement(b, loc, scale, seed.getType().getElementType()));
    seed.getResult().replaceAllUsesExcept(scaledSeed, scaledSeed.getDefiningOp());

    // Unscale every gradient, check them all once, and gate the updates.
    b.setInsertionPoint(first);
    Value one = createConstant(b, loc, scalar, 1.0);
    Value inverse = DivOp::create(b, loc, one, scale);
    // The check reads each gradient as it is (before a widening cast, exact) and
    // multiplies inside, so that the unscale is read only by its update and fuses
    // into it: no unscaled copy of the gradients is stored.
    SmallVector<Value> checked, unscaled;
    bool allF32 = true;
    for (Operation *update : updates) {
      OpOperand *grad = gradientOperand(update);
      Value g = grad->get();
      Type element = cast<RankedTensorType>(g.getType()).getElementType();
      Value u = MulOp::create(b, update->getLoc(), g, castToElement(b, loc, inverse, element));
      grad->set(u);
      unscaled.push_back(u);
      allF32 &= element.isF32();
      Value raw = g;
      if (auto widen = g.getDefiningOp<CastOp>()) {
        Type from = cast<RankedTensorType>(widen.getInput().getType()).getElementType();
        if (element.isF32() && (from.isF16() || from.isBF16()))
          raw = widen.getInput();
      }
      checked.push_back(raw);
    }
    // (Updates read fp32 gradients of fp32 masters; were one not fp32, its unscale
    // would round to its type, so the check reads the unscaled values instead.)
    auto found = allF32 ? AllFiniteOp::create(b, loc, scalar, checked, inverse)
                        : AllFiniteOp::create(b, loc, scalar, unscaled, Value());
    found->setAttr("graph.found_finite", b.getUnitAttr());
    finite.getResult().replaceAllUsesWith(found.getResult());
    finite.erase();

    if (mode == "dynamic") {
      b.setInsertionPoint(body.getTerminator());
      auto update = LossScaleUpdateOp::create(b, loc, scale, tracker, found, APFloat(growthFactor.getValue()),
                                              APFloat(backoffFactor.getValue()), uint64_t(growthInterval));
      AssignOp::create(b, loc, "scaler.scale", update.getNewScale());
      AssignOp::create(b, loc, "scaler.growth_tracker", update.getNewGrowthTracker());
    }
    return success();
  }
};

} // namespace
