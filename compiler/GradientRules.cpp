//===- GradientRules.cpp - reverse-mode rules of the graph ops -------------===//
//
// Each rule reads the forward op and the adjoints of its results and appends
// the ops that compute the adjoints of its operands. Backward ops compute in the
// element type of the forward value they differentiate (PyTorch's autocast
// semantics); an adjoint is cast to its operand's type at the end, so the
// gradient of an f16 cast of an f32 parameter comes back as f32.
//===----------------------------------------------------------------------===//
#include "compiler/GradientRules.h"
#include "compiler/PassUtils.h"

#include "mantissa/Graph/GraphOps.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

// Axes that a bias gradient sums over: the batch of [N, C], all but C of NCHW.
constexpr int64_t kBatchAxis[] = {0};
constexpr int64_t kNonChannelAxes[] = {0, 2, 3};

RankedTensorType tensorType(Value v) { return cast<RankedTensorType>(v.getType()); }
Type elementOf(Value v) { return tensorType(v).getElementType(); }

/// `g` (an adjoint of a broadcast result) summed back to the shape of
/// `operand` and cast to its type: reduce_sum over the broadcast axes with
/// keepdim, then a reshape where leading axes were added.
Value sumToOperand(OpBuilder &b, Location loc, Value g, Value operand) {
  RankedTensorType target = tensorType(operand);
  RankedTensorType gType = tensorType(g);
  if (gType.getShape() != target.getShape()) {
    int64_t lead = gType.getRank() - target.getRank();
    SmallVector<int64_t> axes;
    for (int64_t d = 0; d < gType.getRank(); ++d)
      if (d < lead || (target.getDimSize(d - lead) == 1 && gType.getDimSize(d) != 1))
        axes.push_back(d);
    if (!axes.empty())
      g = ReduceSumOp::create(b, loc, g, axes, /*keepdim=*/true);
    if (tensorType(g).getShape() != target.getShape())
      g = ReshapeOp::create(b, loc, withElementType(target, elementOf(g)), g);
  }
  return castToElement(b, loc, g, target.getElementType());
}

/// The gradient rules. `dy` are the result adjoints, `want` the operands that
/// need one, `dx` the operand adjoints to fill in (left null for no contribution).
struct Rules {
  OpBuilder &b;
  Location loc;
  ArrayRef<Value> dy;
  ArrayRef<bool> want;
  SmallVector<Value> &dx;

  void set(unsigned i, function_ref<Value()> make) {
    if (want[i])
      dx[i] = make();
  }

  LogicalResult onlyFirstResult(Operation *op) {
    for (Value g : dy.drop_front())
      if (g)
        return op->emitOpError("autodiff: only the first result of this op can be differentiated");
    if (!dy[0])
      return op->emitOpError("autodiff: its first result has no adjoint");
    return success();
  }

  LogicalResult rule(LinearOp op) {
    Value g = dy[0];
    set(0, [&] { return sumToOperand(b, loc, MatmulOp::create(b, loc, g, op.getWeight()), op.getInput()); });
    set(1, [&] {
      return sumToOperand(b, loc, MatmulOp::create(b, loc, g, op.getInput(), /*transpose_a=*/true), op.getWeight());
    });
    if (op.getBias())
      set(2, [&] { return sumToOperand(b, loc, ReduceSumOp::create(b, loc, g, kBatchAxis), op.getBias()); });
    return success();
  }

  LogicalResult rule(MatmulOp op) {
    Value g = dy[0], a = op.getA(), m = op.getB();
    bool ta = op.getTransposeA(), tb = op.getTransposeB();
    // C = op(A) op(B): dop(A) = dC op(B)ᵀ, dop(B) = op(A)ᵀ dC, transposed back
    // where A or B entered transposed.
    set(0, [&] {
      Value da = ta ? MatmulOp::create(b, loc, m, g, tb, true) : MatmulOp::create(b, loc, g, m, false, !tb);
      return sumToOperand(b, loc, da, a);
    });
    set(1, [&] {
      Value db = tb ? MatmulOp::create(b, loc, g, a, true, ta) : MatmulOp::create(b, loc, a, g, !ta, false);
      return sumToOperand(b, loc, db, m);
    });
    return success();
  }

  LogicalResult rule(Conv2dOp op) {
    Value g = dy[0];
    set(0, [&] {
      return Conv2dBackwardInputOp::create(b, loc, withElementType(op.getInput().getType(), elementOf(g)), g,
                                           op.getWeight(), op.getStride(), op.getPadding());
    });
    set(1, [&] {
      Value dw = Conv2dBackwardWeightOp::create(b, loc, withElementType(op.getWeight().getType(), elementOf(g)),
                                                op.getInput(), g, op.getStride(), op.getPadding());
      return sumToOperand(b, loc, dw, op.getWeight());
    });
    if (op.getBias())
      set(2, [&] { return sumToOperand(b, loc, ReduceSumOp::create(b, loc, g, kNonChannelAxes), op.getBias()); });
    return success();
  }

  LogicalResult rule(ConvTranspose2dOp op) {
    // y = conv_transpose(x, w) is the input gradient of conv2d(·, w) applied to
    // x, so <y, z> = <x, conv2d(z, w)>: dx = conv2d(dy, w), and dw is the weight
    // gradient of that conv2d with dy as its input and x as its output gradient.
    Value g = dy[0];
    set(0, [&] {
      Value d = Conv2dOp::create(b, loc, g, op.getWeight(), Value(), op.getStride(), op.getPadding());
      return sumToOperand(b, loc, d, op.getInput());
    });
    set(1, [&] {
      Value dw = Conv2dBackwardWeightOp::create(b, loc, withElementType(op.getWeight().getType(), elementOf(g)), g,
                                                op.getInput(), op.getStride(), op.getPadding());
      return sumToOperand(b, loc, dw, op.getWeight());
    });
    if (op.getBias())
      set(2, [&] { return sumToOperand(b, loc, ReduceSumOp::create(b, loc, g, kNonChannelAxes), op.getBias()); });
    return success();
  }

  LogicalResult rule(MaxPool2dOp op) {
    if (failed(onlyFirstResult(op)))
      return failure();
    set(0, [&] {
      Value d = MaxPool2dBackwardOp::create(
          b, loc, withElementType(op.getInput().getType(), elementOf(dy[0])), dy[0], op.getInput(),
          op.getResult(), op.getKernel(), op.getStride());
      return sumToOperand(b, loc, d, op.getInput());
    });
    return success();
  }

  LogicalResult rule(BatchNormOp op) {
    if (failed(onlyFirstResult(op)))
      return failure();
    if (!op.getTraining())
      return op.emitOpError("autodiff: eval-mode batch_norm (training = false) has no gradient rule yet");
    if (!want[0] && !want[1] && !want[2])
      return success(); // only the running statistics depend on parameters
    auto grads = BatchNormBackwardOp::create(b, loc, dy[0], op.getInput(), op.getGamma(), op.getSavedMean(),
                                             op.getSavedInvstd(), Value());
    set(0, [&] { return sumToOperand(b, loc, grads.getGradInput(), op.getInput()); });
    set(1, [&] { return sumToOperand(b, loc, grads.getGradGamma(), op.getGamma()); });
    set(2, [&] { return sumToOperand(b, loc, grads.getGradBeta(), op.getBeta()); });
    // The running statistics do not affect the training-mode output.
    return success();
  }

  template <typename GradOp>
  LogicalResult activation(Operation *op) {
    set(0, [&] { return GradOp::create(b, loc, op->getOperand(0), dy[0]).getResult(); });
    return success();
  }
  /// sigmoid and tanh: the derivative is a function of the result, which the gradient
  /// reads (PyTorch's sigmoid_backward/tanh_backward), so the input need not be kept.
  template <typename GradOp>
  LogicalResult fromResult(Operation *op) {
    set(0, [&] { return GradOp::create(b, loc, op->getResult(0), dy[0]).getResult(); });
    return success();
  }

  // relu(x) > 0 exactly when x > 0 (NaN and -0 included), so relu_grad reads
  // the result, as PyTorch's threshold_backward does: the result is usually
  // kept anyway (the next layer's GEMM or convolution reads it again for its
  // weight gradient), and the pre-activation then dies in the forward pass
  // instead of living until the backward one.
  LogicalResult rule(ReluOp op) {
    set(0, [&] { return ReluGradOp::create(b, loc, op.getResult(), dy[0]).getResult(); });
    return success();
  }

  LogicalResult rule(ExpOp op) {
    set(0, [&] { return MulOp::create(b, loc, dy[0], op.getResult()).getResult(); });
    return success();
  }
  LogicalResult rule(LogOp op) {
    set(0, [&] { return DivOp::create(b, loc, dy[0], op.getInput()).getResult(); });
    return success();
  }
  LogicalResult rule(NegOp) {
    set(0, [&] { return NegOp::create(b, loc, dy[0]).getResult(); });
    return success();
  }

  LogicalResult rule(AddOp op) {
    set(0, [&] { return sumToOperand(b, loc, dy[0], op.getLhs()); });
    set(1, [&] { return sumToOperand(b, loc, dy[0], op.getRhs()); });
    return success();
  }
  LogicalResult rule(SubOp op) {
    set(0, [&] { return sumToOperand(b, loc, dy[0], op.getLhs()); });
    set(1, [&] { return NegOp::create(b, loc, sumToOperand(b, loc, dy[0], op.getRhs())).getResult(); });
    return success();
  }
  LogicalResult rule(MulOp op) {
    set(0, [&] { return sumToOperand(b, loc, MulOp::create(b, loc, dy[0], op.getRhs()), op.getLhs()); });
    set(1, [&] { return sumToOperand(b, loc, MulOp::create(b, loc, dy[0], op.getLhs()), op.getRhs()); });
    return success();
  }
  LogicalResult rule(DivOp op) {
    // y = a / b: da = dy / b, db = -dy a / b² = -(dy y) / b.
    set(0, [&] { return sumToOperand(b, loc, DivOp::create(b, loc, dy[0], op.getRhs()), op.getLhs()); });
    set(1, [&] {
      Value t = DivOp::create(b, loc, MulOp::create(b, loc, dy[0], op.getResult()), op.getRhs());
      return NegOp::create(b, loc, sumToOperand(b, loc, t, op.getRhs())).getResult();
    });
    return success();
  }

  LogicalResult rule(CastOp op) {
    set(0, [&] { return castToElement(b, loc, dy[0], elementOf(op.getInput())); });
    return success();
  }
  LogicalResult rule(ReshapeOp op) {
    set(0, [&] {
      return ReshapeOp::create(b, loc, withElementType(op.getInput().getType(), elementOf(dy[0])), dy[0])
          .getResult();
    });
    return success();
  }
  LogicalResult rule(TransposeOp op) {
    set(0, [&] {
      SmallVector<int64_t> inverse(op.getPerm().size());
      for (auto [i, p] : llvm::enumerate(op.getPerm()))
        inverse[p] = i;
      return TransposeOp::create(b, loc, dy[0], inverse).getResult();
    });
    return success();
  }
  LogicalResult rule(BroadcastToOp op) {
    set(0, [&] { return sumToOperand(b, loc, dy[0], op.getInput()); });
    return success();
  }
  LogicalResult rule(ConcatOp op) {
    int64_t axis = op.getAxis(), offset = 0;
    for (auto [i, input] : llvm::enumerate(op.getInputs())) {
      int64_t size = tensorType(input).getDimSize(axis);
      set(i, [&] { return sumToOperand(b, loc, SliceOp::create(b, loc, dy[0], axis, offset, size), input); });
      offset += size;
    }
    return success();
  }
  LogicalResult rule(SliceOp op) {
    // The adjoint padded with zeros back to the input's extent along the axis.
    set(0, [&] {
      RankedTensorType in = tensorType(op.getInput());
      int64_t axis = op.getAxis(), before = op.getOffset();
      int64_t after = in.getDimSize(axis) - before - static_cast<int64_t>(op.getSize());
      auto zeros = [&](int64_t extent) {
        SmallVector<int64_t> shape(in.getShape());
        shape[axis] = extent;
        return createConstant(b, loc, RankedTensorType::get(shape, elementOf(dy[0])), 0.0);
      };
      SmallVector<Value> pieces;
      if (before > 0)
        pieces.push_back(zeros(before));
      pieces.push_back(dy[0]);
      if (after > 0)
        pieces.push_back(zeros(after));
      Value d = pieces.size() == 1 ? dy[0] : ConcatOp::create(b, loc, pieces, axis).getResult();
      return sumToOperand(b, loc, d, op.getInput());
    });
    return success();
  }

  /// dy of a reduction over `axes`, brought back to the input's shape.
  Value unreduce(Value g, Value input, ArrayRef<int64_t> axes, bool keepdim) {
    RankedTensorType in = tensorType(input);
    if (!keepdim) {
      SmallVector<int64_t> kept(in.getShape());
      for (int64_t a : axes)
        kept[a] = 1;
      g = ReshapeOp::create(b, loc, RankedTensorType::get(kept, elementOf(g)), g);
    }
    g = BroadcastToOp::create(b, loc, withElementType(in, elementOf(g)), g);
    return castToElement(b, loc, g, in.getElementType());
  }
  LogicalResult rule(ReduceSumOp op) {
    set(0, [&] { return unreduce(dy[0], op.getInput(), op.getAxes(), op.getKeepdim()); });
    return success();
  }
  LogicalResult rule(ReduceMeanOp op) {
    set(0, [&] {
      int64_t count = 1;
      for (int64_t a : op.getAxes())
        count *= tensorType(op.getInput()).getDimSize(a);
      // Divide by the count, as PyTorch's mean backward does: the count is exact in any
      // float type, its reciprocal is not.
      Value n = createConstant(b, loc, RankedTensorType::get({}, elementOf(dy[0])), double(count));
      return unreduce(DivOp::create(b, loc, dy[0], n), op.getInput(), op.getAxes(), op.getKeepdim());
    });
    return success();
  }

  LogicalResult rule(SoftmaxCrossEntropyOp op) {
    set(0, [&] {
      return SoftmaxCrossEntropyBackwardOp::create(b, loc, op.getLogits().getType(), op.getLogits(), op.getLabels(),
                                                   dy[0])
          .getResult();
    });
    return success();
  }
  LogicalResult rule(MseOp op) {
    // d/dx = 2 (x - t) dloss / N; the target's gradient is its negation (only
    // built when the target itself depends on a parameter).
    Value dInput;
    auto grad = [&] {
      if (!dInput)
        dInput = MseBackwardOp::create(b, loc, op.getInput().getType(), op.getInput(), op.getTarget(), dy[0]);
      return dInput;
    };
    set(0, [&] { return grad(); });
    set(1, [&] { return NegOp::create(b, loc, sumToOperand(b, loc, grad(), op.getTarget())).getResult(); });
    return success();
  }
};

} // namespace

FailureOr<SmallVector<Value>> mantissa::buildOperandGradients(OpBuilder &b, Operation *op,
                                                              ArrayRef<Value> resultGrads,
                                                              ArrayRef<bool> wanted) {
  SmallVector<Value> grads(op->getNumOperands());
  Rules rules{b, op->getLoc(), resultGrads, wanted, grads};
  LogicalResult result =
      llvm::TypeSwitch<Operation *, LogicalResult>(op)
          .Case<LinearOp, MatmulOp, Conv2dOp, ConvTranspose2dOp, MaxPool2dOp, BatchNormOp, ExpOp,
                LogOp, NegOp, AddOp, SubOp, MulOp, DivOp, CastOp, ReshapeOp, TransposeOp,
                BroadcastToOp, ConcatOp, SliceOp, ReduceSumOp, ReduceMeanOp, SoftmaxCrossEntropyOp,
                MseOp, ReluOp>([&](auto concrete) { return rules.rule(concrete); })
          .Case<GeluOp>([&](Operation *o) { return rules.activation<GeluGradOp>(o); })
          .Case<SigmoidOp>([&](Operation *o) { return rules.fromResult<SigmoidGradOp>(o); })
          .Case<TanhOp>([&](Operation *o) { return rules.fromResult<TanhGradOp>(o); })
          .Default([](Operation *o) {
            return o->emitOpError("autodiff: no gradient rule for this op (gradients of backward, "
                                  "optimizer and loss-scaling ops are not supported)");
          });
  if (failed(result))
    return failure();
  return grads;
}
