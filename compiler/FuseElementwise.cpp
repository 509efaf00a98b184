//===- FuseElementwise.cpp - elementwise chains into one kernel -----------===//
//
// Greedy producer-into-consumer fusion of the ops that implement ElementwiseOp
// (arithmetic, activations and their gradients, casts, the optimizer updates,
// the loss-scale update) into graph.fused ops, one per function block, in
// program order. Each graph.fused becomes one Elementwise step of the plan: its
// intermediate values live in registers instead of tensors, so a chain of k ops
// reads and writes memory once instead of k times and launches one kernel.
//===----------------------------------------------------------------------===//
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"

#include "mantissa/Graph/GraphOps.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallPtrSet.h"

namespace mantissa {
#define GEN_PASS_DEF_FUSEELEMENTWISE
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

/// An op that can join a fused kernel: elementwise, with statically shaped
/// tensor results (all of one shape: the verifiers of the ops guarantee it).
bool isFusible(Operation *op) {
  if (!isa<ElementwiseOp>(op) || op->getNumResults() == 0)
    return false;
  return llvm::all_of(op->getResultTypes(), [](Type t) {
    auto ranked = dyn_cast<RankedTensorType>(t);
    return ranked && ranked.hasStaticShape();
  });
}

/// The shape an elementwise op iterates over: that of its results.
ArrayRef<int64_t> iterationShape(Operation *op) {
  return cast<RankedTensorType>(op->getResult(0).getType()).getShape();
}

/// The part of the fused op's name that `op` contributes.
std::string memberName(Operation *op) {
  if (auto name = op->getAttrOfType<StringAttr>("graph.name"))
    return name.str();
  return op->getName().stripDialect().str();
}

/// Where the fusion of `producer` into `consumer` can be placed, or null. The
/// fused op computes the producer's results when the consumer runs, so no op
/// between them may read those results: normally it goes where the consumer
/// is; if an op in between reads a result of the producer, the fused op goes
/// just before the first such reader, provided every other operand of the
/// consumer is defined before that reader (otherwise fusing would close a
/// cycle, e.g. a gradient read by graph.all_finite whose flag the
/// optimizer update reads).
Operation *placement(Operation *producer, Operation *consumer) {
  Operation *firstReader = nullptr;
  for (Operation *user : producer->getUsers()) {
    if (user == consumer || user->getBlock() != consumer->getBlock() ||
        !user->isBeforeInBlock(consumer))
      continue;
    if (!firstReader || user->isBeforeInBlock(firstReader))
      firstReader = user;
  }
  if (!firstReader)
    return consumer;
  for (Value v : consumer->getOperands()) {
    Operation *def = v.getDefiningOp();
    if (def && def != producer && def->getBlock() == consumer->getBlock() &&
        !def->isBeforeInBlock(firstReader))
      return nullptr;
  }
  return firstReader;
}

/// Replaces `producer` and `consumer` (graph.fused ops or single elementwise
/// ops; the producer comes first) by one graph.fused placed before `at`. Its
/// results are the values of the two that something outside them reads.
FusedOp fuse(Operation *producer, Operation *consumer, Operation *at) {
  SmallVector<Operation *, 2> members = {producer, consumer};
  llvm::SmallPtrSet<Operation *, 2> isMember(members.begin(), members.end());

  llvm::SetVector<Value> inputs, outputs;
  for (Operation *m : members) {
    for (Value v : m->getOperands())
      if (!isMember.contains(v.getDefiningOp()))
        inputs.insert(v);
    for (Value r : m->getResults())
      if (llvm::any_of(r.getUsers(), [&](Operation *u) { return !isMember.contains(u); }))
        outputs.insert(r);
  }

  OpBuilder b(at);
  Location loc = b.getFusedLoc({producer->getLoc(), consumer->getLoc()});
  SmallVector<Type> resultTypes;
  for (Value v : outputs)
    resultTypes.push_back(v.getType());
  auto fused = FusedOp::create(b, loc, resultTypes, inputs.getArrayRef());
  std::string name = memberName(producer) + "+" + memberName(consumer);
  fused->setAttr("graph.name", b.getStringAttr(name));

  Block *body = b.createBlock(&fused.getBody());
  IRMapping map;
  for (Value v : inputs)
    map.map(v, body->addArgument(v.getType(), v.getLoc()));
  b.setInsertionPointToEnd(body);
  for (Operation *m : members) {
    auto inner = dyn_cast<FusedOp>(m);
    if (!inner) {
      b.clone(*m, map);
      continue;
    }
    // Inline an earlier fusion: its arguments are what its operands map to.
    Block &innerBody = inner.getBody().front();
    for (auto [arg, operand] : llvm::zip(innerBody.getArguments(), inner.getOperands()))
      map.map(arg, map.lookup(operand));
    for (Operation &op : innerBody.without_terminator())
      b.clone(op, map);
    for (auto [result, yielded] :
         llvm::zip(inner.getResults(), innerBody.getTerminator()->getOperands()))
      map.map(result, map.lookup(yielded));
  }
  SmallVector<Value> yielded;
  for (Value v : outputs)
    yielded.push_back(map.lookup(v));
  YieldOp::create(b, loc, yielded);

  for (auto [i, old] : llvm::enumerate(outputs))
    Value(old).replaceUsesWithIf(
        fused.getResult(i), [&](OpOperand &use) { return !isMember.contains(use.getOwner()); });
  consumer->erase();
  producer->erase();
  return fused;
}

/// Moves a linear's bias, and the relu that alone reads its result, into the GEMM
/// (`graph.epilogue = "bias"` or `"bias_relu"`; emit-plan: Gemm.bias, Gemm.relu;
/// cuBLASLt's BIAS / RELU_BIAS epilogues on the GPU): y = round(relu(x·wᵀ + b)) with
/// the bias added to the fp32 product, one rounding to y's type. Unlike the rest of
/// this pass that is not the unfused plan's bits in fp16/bf16, which round the
/// product before the bias add: it is one rounding fewer, as PyTorch's addmm on CUDA
/// (cuBLASLt's bias epilogue) computes it. In fp32 the product is stored exactly, so
/// the bits are the same. Only where x, w, b and y have one element type (the
/// epilogue's bias is of D's type) and x is a matrix. GELU does not fold: ours is
/// the exact erf GELU, and cuBLASLt documents no formula for its GELU epilogue.
void foldLinearEpilogue(Block &block) {
  for (auto linear : block.getOps<LinearOp>()) {
    Value bias = linear.getBias();
    auto type = cast<RankedTensorType>(linear.getResult().getType());
    auto elementOf = [](Value v) { return cast<RankedTensorType>(v.getType()).getElementType(); };
    if (!bias || linear->hasAttr("graph.epilogue") || type.getRank() != 2 ||
        elementOf(bias) != type.getElementType() ||
        elementOf(linear.getInput()) != type.getElementType() ||
        elementOf(linear.getWeight()) != type.getElementType())
      continue;
    StringRef epilogue = "bias";
    Value result = linear.getResult();
    if (result.hasOneUse())
      if (auto relu = dyn_cast<ReluOp>(*result.getUsers().begin());
          relu && relu.getResult().getType() == type) {
        relu.getResult().replaceAllUsesWith(result);
        relu->erase();
        epilogue = "bias_relu";
      }
    linear->setAttr("graph.epilogue", StringAttr::get(linear.getContext(), epilogue));
  }
}

/// Splits `linear %x, %w, %b` into `linear %x, %w` and `add %y, %b` where an
/// elementwise op of the same shape reads the result, so that the bias add
/// (emit-plan's ".bias_add" step after the GEMM) can join that op's kernel. The
/// GEMM's output is stored in its element type either way, and the add is the
/// same program, so the bits do not change. Only when the bias has the
/// result's element type (otherwise the add would promote).
void splitLinearBias(Block &block) {
  for (auto linear : llvm::make_early_inc_range(block.getOps<LinearOp>())) {
    Value bias = linear.getBias();
    auto type = cast<RankedTensorType>(linear.getResult().getType());
    if (!bias || linear->hasAttr("graph.epilogue") ||
        cast<RankedTensorType>(bias.getType()).getElementType() != type.getElementType())
      continue;
    if (llvm::none_of(linear->getUsers(), [&](Operation *u) {
          return isFusible(u) && iterationShape(u) == type.getShape();
        }))
      continue;
    OpBuilder b(linear);
    auto gemm =
        LinearOp::create(b, linear.getLoc(), linear.getInput(), linear.getWeight(), Value());
    auto add = AddOp::create(b, linear.getLoc(), gemm.getResult(), bias);
    gemm->setDiscardableAttrs(linear->getDiscardableAttrDictionary());
    if (auto name = linear->getAttrOfType<StringAttr>("graph.name"))
      add->setAttr("graph.name", name);
    linear.getResult().replaceAllUsesWith(add.getResult());
    linear->erase();
  }
}

/// Folds `relu` into the batch norm whose normalised result is its only operand
/// and that nothing else reads: the batch norm gets `graph.activation = "relu"`
/// and its result is the relu's (emit-plan: BatchNorm.relu, applied before the
/// one rounding to the result's type; relu commutes with that rounding, NaN and
/// -0 included, so the bits do not change). One pass over the activation fewer.
void foldBatchNormRelu(Block &block) {
  for (auto relu : llvm::make_early_inc_range(block.getOps<ReluOp>())) {
    auto bn = relu.getInput().getDefiningOp<BatchNormOp>();
    if (!bn || !bn.getResult().hasOneUse() || bn->hasAttr("graph.activation") ||
        bn.getResult().getType() != relu.getResult().getType())
      continue;
    bn->setAttr("graph.activation", StringAttr::get(bn.getContext(), "relu"));
    relu.getResult().replaceAllUsesWith(bn.getResult());
    relu->erase();
  }
}

/// Folds `relu_grad %r, %dy` into the batch-norm backward that alone reads it, as
/// its mask (the gradient that flows in is `%r > 0 ? %dy : 0`, computed inside the
/// batch norm's two passes over dy): one pass and one stored tensor fewer. Only where
/// %dy comes from a kernel that is not elementwise (a convolution's input gradient):
/// an elementwise producer (the sum with a skip connection's gradient) fuses with the
/// relu_grad instead, which already saves that pass.
void foldReluGradIntoBatchNormBackward(Block &block) {
  for (auto bb : llvm::make_early_inc_range(block.getOps<BatchNormBackwardOp>())) {
    auto rg = bb.getGrad().getDefiningOp<ReluGradOp>();
    if (bb.getMask() || !rg || !rg.getResult().hasOneUse() ||
        rg->getOperand(0).getType() != rg.getResult().getType())
      continue;
    Operation *producer = rg->getOperand(1).getDefiningOp();
    if (producer && producer->getBlock() == &block && isFusible(producer))
      continue;
    OpBuilder b(bb);
    auto folded = BatchNormBackwardOp::create(b, bb.getLoc(), rg->getOperand(1), bb.getInput(),
                                              bb.getGamma(), bb.getSavedMean(),
                                              bb.getSavedInvstd(), rg->getOperand(0));
    folded->setDiscardableAttrs(bb->getDiscardableAttrDictionary());
    bb->replaceAllUsesWith(folded->getResults());
    bb->erase();
    rg->erase();
  }
}

/// Fuses `consumer` with one of its producers; returns the fused op or null.
Operation *fuseOneProducer(Operation *consumer) {
  for (Value v : consumer->getOperands()) {
    Operation *producer = v.getDefiningOp();
    if (!producer || producer->getBlock() != consumer->getBlock() || !isFusible(producer))
      continue;
    // Only producers that iterate over the consumer's own shape. A producer of
    // a smaller shape that the consumer broadcasts (a bias [C] into [N, C], a
    // scalar such as 1/scale) stays a stored input: fused, it would be
    // recomputed once per element of the larger shape instead of once per
    // element of its own, and the loads with broadcast strides already read it
    // for free. (A graph.fused has one iteration shape for all its values.)
    if (iterationShape(producer) != iterationShape(consumer))
      continue;
    Operation *at = placement(producer, consumer);
    if (!at)
      continue;
    return fuse(producer, consumer, at);
  }
  return nullptr;
}

class FuseElementwisePass : public mantissa::impl::FuseElementwiseBase<FuseElementwisePass> {
public:
  using FuseElementwiseBase::FuseElementwiseBase;

  void runOnOperation() override {
    for (auto fn : getOperation().getOps<func::FuncOp>())
      for (Block &block : fn.getBody()) {
        if (gemmEpilogue)
          foldLinearEpilogue(block);
        if (splitBias)
          splitLinearBias(block);
        foldBatchNormRelu(block);
        foldReluGradIntoBatchNormBackward(block);
        fuseBlock(block);
      }
  }

private:
  /// In program order, each elementwise op absorbs its producers one at a time
  /// (and the fused op then absorbs more) until none can join.
  static void fuseBlock(Block &block) {
    for (Operation *op = block.empty() ? nullptr : &block.front(); op;) {
      Operation *next = op->getNextNode(); // never a member of what op fuses with
      Operation *current = op;
      while (isFusible(current)) {
        Operation *fused = fuseOneProducer(current);
        if (!fused)
          break;
        current = fused;
      }
      op = next;
    }
  }
};

} // namespace
